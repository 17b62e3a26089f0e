//! `ironpost run` end to end, as an operator runs it.

mod common;

use std::{process::Command, time::Duration};

use common::{BIN, Daemon, TempFile, ironpost, stderr};
use ironpost_lab::{Lab, kernel_tests_enabled, xdp_attached};

#[test]
fn run_reports_drops_and_detaches_on_sigint() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(2).unwrap();
    let (good, bad) = (lab.peer_addr(0), lab.peer_addr(1));
    let cfg = TempFile::new(
        "ironpost.toml",
        &format!(
            "[ebpf]\nxdp_mode = \"skb\"\n\n[[ebpf.rules]]\nid = \"lab-bad\"\nsrc_ip = \"{bad}\"\naction = \"drop\"\n"
        ),
    );
    let d = Daemon::start(&[
        "run",
        "--interface",
        lab.host_if(),
        "--config",
        cfg.path(),
        "--stats-interval",
        "1",
    ]);
    let line = d.wait_for_stderr("attached");
    assert!(line.contains("skb mode"), "{line}");
    d.wait_for_stderr("ready:");
    assert!(xdp_attached(lab.host_if()));

    assert_eq!(lab.send_udp(good, 7000, 40, 64).unwrap(), 40);
    assert_eq!(lab.send_udp(bad, 7000, 10, 64).unwrap(), 10);
    assert_eq!(lab.ping(bad, 2).unwrap(), 0);
    std::thread::sleep(Duration::from_millis(1500));
    d.signal(libc::SIGINT);
    let (status, lines) = d.finish();
    assert!(status.success(), "exit status {status}");
    assert!(!xdp_attached(lab.host_if()), "detached after SIGINT");

    let events: Vec<_> = lines.iter().filter(|l| l["type"] == "event").collect();
    assert_eq!(events.len(), 12, "10 UDP + 2 ICMP drops: {lines:?}");
    for e in &events {
        assert_eq!(e["action"], "drop");
        assert_eq!(e["src"], bad.to_string());
        assert_eq!(e["interface"], lab.host_if());
        assert!(e["time"].as_str().unwrap().ends_with('Z'));
    }
    let udp: Vec<_> = events.iter().filter(|e| e["protocol"] == "udp").collect();
    assert_eq!(udp.len(), 10);
    assert!(udp.iter().all(|e| e["dst_port"] == 7000));

    let stats: Vec<_> = lines.iter().filter(|l| l["type"] == "stats").collect();
    assert!(
        stats.len() >= 2,
        "periodic and final stats lines: {stats:?}"
    );
    let last = stats.last().unwrap();
    assert_eq!(last["final"], true);
    assert_eq!(last["udp"]["packets"], 50);
    assert_eq!(last["udp"]["drops"], 10);
    assert_eq!(last["icmp"]["drops"], 2);
    assert_eq!(last["total"]["packets"], 52);
    assert_eq!(last["xdp_mode"], "skb");
    assert_eq!(last["events_lost"], 0);
    // Rates: the final line continues from the last periodic one, and the
    // traffic (52 packets in about 1.5 s) shows in some line's rate.
    assert!(stats.iter().all(|s| s["total"]["pps"].is_number()));
    assert!(
        stats
            .iter()
            .any(|s| s["total"]["pps"].as_f64().unwrap() > 0.0),
        "{stats:?}"
    );
}

#[test]
fn sigterm_detaches_and_exits_zero() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(1).unwrap();
    let d = Daemon::start(&["run", "-i", lab.host_if(), "--stats-interval", "0"]);
    d.wait_for_stderr("ready:");
    assert!(xdp_attached(lab.host_if()));
    d.signal(libc::SIGTERM);
    let (status, lines) = d.finish();
    assert!(status.success(), "exit status {status}");
    assert!(!xdp_attached(lab.host_if()));
    assert_eq!(lines.len(), 1, "only the final stats line: {lines:?}");
    assert_eq!(lines[0]["final"], true);
}

#[test]
fn no_such_interface_is_one_clear_line() {
    let o = ironpost(&["run", "--interface", "nosuchif0"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(
        err.trim(),
        "ironpost: error: no such network interface: nosuchif0"
    );
    assert!(o.stdout.is_empty());
}

#[test]
fn missing_interface_is_explained() {
    let o = ironpost(&["run"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("pass --interface IFACE or set ebpf.interfaces"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_config_names_file_line_and_field() {
    let cfg = TempFile::new(
        "bad.toml",
        "[ebpf]\nxdp_mode = \"skb\"\n\n[[ebpf.rules]]\nid = \"x\"\nsrc_ip = \"10.0.0.999\"\n",
    );
    let o = ironpost(&["run", "--interface", "lo", "--config", cfg.path()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(
        err.trim(),
        format!(
            "ironpost: error: {}:6:10: ebpf.rules[0].src_ip: \"10.0.0.999\" is not an IP address or prefix",
            cfg.path()
        )
    );
    let o = ironpost(&["check-config", "--config", cfg.path()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains(":6:10: ebpf.rules[0].src_ip"));
}

#[test]
fn unknown_key_in_config_is_rejected() {
    let cfg = TempFile::new(
        "unknown.toml",
        "[ebpf]\nenabled = true\nxdp_moed = \"skb\"\n",
    );
    let o = ironpost(&["check-config", "-c", cfg.path()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(":3:1: xdp_moed: unknown field `xdp_moed`"),
        "{err}"
    );
}

#[test]
fn missing_config_file_is_named() {
    let o = ironpost(&["run", "-i", "lo", "-c", "/nonexistent/ironpost.toml"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("/nonexistent/ironpost.toml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_xdp_mode_flag_is_rejected() {
    let o = ironpost(&["run", "-i", "lo", "--xdp-mode", "turbo"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("expected native, skb or auto"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn not_root_is_one_clear_line() {
    if !kernel_tests_enabled() {
        return;
    }
    // Run as nobody: no euid 0, no capabilities.
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .args([BIN, "run", "--interface", "lo"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.trim()
            .starts_with("ironpost: error: loading XDP programs needs root"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn example_config_checks_out() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ironpost.example.toml");
    let o = ironpost(&["check-config", "--config", path]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("rules: 4"), "{out}");
    assert!(out.contains("doc-example-drop drop src 192.0.2.1"), "{out}");
    assert!(out.contains("doc-example-telnet drop tcp/23"), "{out}");
}

#[test]
fn help_explains_every_command() {
    let o = ironpost(&["--help"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    for cmd in [
        "run",
        "check-config",
        "block",
        "allow",
        "stats",
        "status",
        "reload",
    ] {
        assert!(out.contains(cmd), "{cmd} in {out}");
    }
    for cmd in ["run", "check-config"] {
        let o = ironpost(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd} --help");
        assert!(String::from_utf8_lossy(&o.stdout).contains("--config"));
    }
    let o = ironpost(&["run", "--help"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("SIGINT") && out.contains("--xdp-mode") && out.contains("SIGHUP"),
        "{out}"
    );
    let o = ironpost(&["block", "import", "--help"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("all or nothing") && out.contains("--skip-invalid"),
        "{out}"
    );
    let o = ironpost(&["block", "add", "--help"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("--ttl") && out.contains("--reason"), "{out}");
}

#[test]
fn disabled_datapath_exits_cleanly() {
    let cfg = TempFile::new("disabled.toml", "[ebpf]\nenabled = false\n");
    let o = ironpost(&["run", "-i", "lo", "-c", cfg.path()]);
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("ebpf.enabled is false"),
        "{}",
        stderr(&o)
    );
}
