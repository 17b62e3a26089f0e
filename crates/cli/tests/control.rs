//! The control commands against a daemon running on a namespace lab: block,
//! see the drop, unblock, see the pass; TTL expiry; import; allow list;
//! status and stats; reload; persistence across `kill -9`; and every bad
//! input giving its clear error.

mod common;

use std::{
    os::unix::fs::PermissionsExt,
    time::{Duration, Instant},
};

use common::{Daemon, TempFile, http_get, ironpost, sample, start_on_lab_with, stderr};
use ironpost_lab::parse_ping_received;
use ironpost_lab::{Lab, kernel_tests_enabled, xdp_attached};
use serde_json::Value;

fn entries(d: &Daemon) -> Vec<Value> {
    d.json(&["block", "list"])["entries"]
        .as_array()
        .unwrap()
        .clone()
}

fn find<'a>(rows: &'a [Value], prefix: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["prefix"] == prefix)
        .unwrap_or_else(|| panic!("{prefix} not in {rows:?}"))
}

#[test]
fn block_see_the_drop_unblock_see_the_pass() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(2).unwrap();
    let (good, bad) = (lab.peer_addr(0), lab.peer_addr(1));
    let d = start_on_lab_with(&lab, &[]);
    // The socket is root's alone.
    let mode = std::fs::metadata(d.socket()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(lab.ping(bad, 2).unwrap(), 2);

    let out = d.ok(&["block", "add", &bad.to_string(), "--reason", "test block"]);
    assert!(out.contains("blocked 1 entry"), "{out}");
    assert_eq!(lab.ping(bad, 3).unwrap(), 0, "blocked at once");
    assert_eq!(lab.ping(good, 2).unwrap(), 2);
    let rows = entries(&d);
    let row = find(&rows, &bad.to_string());
    assert_eq!(row["origin"], "manual");
    assert_eq!(row["action"], "drop");
    assert_eq!(row["reason"], "test block");
    assert_eq!(row["expires"], Value::Null);
    assert_eq!(row["packets"], 3, "per-entry hit counter: {row}");
    let table = d.ok(&["block", "list"]);
    assert!(
        table.contains(&bad.to_string()) && table.contains("never") && table.contains("manual"),
        "{table}"
    );

    let out = d.ok(&["block", "del", &bad.to_string()]);
    assert!(out.contains("removed 1"), "{out}");
    assert_eq!(lab.ping(bad, 2).unwrap(), 2, "passes again");
    assert!(entries(&d).is_empty());

    // Deleting what is not there changes nothing and says so.
    let o = d.ctl(&["block", "del", &bad.to_string()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is not in the block list"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn ttl_blocks_expire_within_a_second() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(1).unwrap();
    let peer = lab.peer_addr(0);
    let d = start_on_lab_with(&lab, &[]);
    let added = Instant::now();
    d.ok(&["block", "add", &peer.to_string(), "--ttl", "2s"]);
    assert_eq!(lab.ping(peer, 1).unwrap(), 0);
    let row = find(&entries(&d), &peer.to_string()).clone();
    let left = row["expires_in_secs"].as_f64().unwrap();
    assert!(left > 0.0 && left <= 2.0, "{row}");
    // Poll until the entry is gone; it must go within a second of expiry.
    let gone = loop {
        if entries(&d).is_empty() {
            break added.elapsed();
        }
        assert!(
            added.elapsed() < Duration::from_secs(4),
            "still listed 4 s after a 2 s TTL"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(gone <= Duration::from_millis(3_000), "gone after {gone:?}");
    assert_eq!(lab.ping(peer, 2).unwrap(), 2, "out of the kernel map too");
    d.wait_for_stderr("expired");
}

#[test]
fn import_reports_bad_lines_and_is_all_or_nothing() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(2).unwrap();
    let bad_peer = lab.peer_addr(1);
    let d = start_on_lab_with(&lab, &[]);
    let text = format!(
        "# a FireHOL-style list\n198.51.100.0/24\nnot-an-address\n{bad_peer}   # the lab peer\n\
         10.1.2.3/8\n2001:db8::/32 ; spamhaus style\n198.51.100.0/24\n"
    );
    let file = TempFile::new("list.netset", &text);
    let o = d.ctl(&["block", "import", file.path()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains(&format!("{}:3: ", file.path())), "{err}");
    assert!(err.contains(&format!("{}:5: ", file.path())), "{err}");
    assert!(err.contains("host bits"), "{err}");
    assert!(
        err.contains("2 bad lines") && err.contains("nothing was imported"),
        "{err}"
    );
    assert!(entries(&d).is_empty(), "nothing applied");
    assert_eq!(lab.ping(bad_peer, 1).unwrap(), 1);

    let out = d.ok(&[
        "block",
        "import",
        file.path(),
        "--skip-invalid",
        "--ttl",
        "1h",
    ]);
    assert!(out.contains("imported 3 entries"), "{out}");
    assert!(
        out.contains("1 duplicate lines, 2 bad lines skipped"),
        "{out}"
    );
    let rows = entries(&d);
    assert_eq!(rows.len(), 3);
    assert!(
        find(&rows, "2001:db8::/32")["reason"]
            .as_str()
            .unwrap()
            .starts_with("import ")
    );
    assert!(
        find(&rows, "198.51.100.0/24")["expires_in_secs"]
            .as_f64()
            .unwrap()
            > 3000.0
    );
    assert_eq!(lab.ping(bad_peer, 2).unwrap(), 0);
}

#[test]
fn over_capacity_is_refused_whole() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(1).unwrap();
    let cfg = TempFile::new("small.toml", "[ebpf]\nblocklist_max_entries = 3\n");
    let d = start_on_lab_with(&lab, &["--config", cfg.path()]);
    d.ok(&["block", "add", "192.0.2.1", "192.0.2.2"]);
    let list = TempFile::new("three.txt", "198.51.100.1\n198.51.100.2\n198.51.100.3\n");
    let o = d.ctl(&["block", "import", list.path()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("3 new entries do not fit") && err.contains("1 free"),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(entries(&d).len(), 2);
    let st = d.json(&["status"]);
    assert_eq!(st["maps"]["blocks"], 2);
    assert_eq!(st["maps"]["blocks_capacity"], 3);
}

#[test]
fn allow_list_wins_and_status_and_stats_report() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(2).unwrap();
    let (a, b) = (lab.peer_addr(0), lab.peer_addr(1));
    let second = Lab::new(1).unwrap();
    let d = Daemon::start(&[
        "run",
        "-i",
        lab.host_if(),
        "-i",
        second.host_if(),
        "--xdp-mode",
        "skb",
        "--stats-interval",
        "0",
    ]);
    d.wait_for_stderr("ready:");
    assert!(xdp_attached(lab.host_if()) && xdp_attached(second.host_if()));
    let o = lab.host_addr().octets();
    let subnet = format!("{}.{}.{}.0/24", o[0], o[1], o[2]);
    d.ok(&["allow", "add", &a.to_string(), "--reason", "trusted"]);
    let out = d.ok(&["block", "add", &subnet]);
    assert!(out.contains("blocked 1 entry"), "{out}");
    let o = d.ctl(&["block", "add", &a.to_string()]);
    assert!(stderr(&o).contains("allow list wins"), "{}", stderr(&o));
    d.ok(&["block", "del", &a.to_string()]);
    assert_eq!(lab.ping(a, 2).unwrap(), 2, "allowed despite the /24 block");
    assert_eq!(lab.ping(b, 2).unwrap(), 0, "the rest of the /24 is blocked");
    let allow = d.json(&["allow", "list"]);
    let row = &allow["entries"][0];
    assert_eq!(row["prefix"], a.to_string());
    assert!(row["packets"].as_u64().unwrap() >= 2, "{row}");

    let st = d.json(&["status"]);
    let ifaces: Vec<&str> = st["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["interface"].as_str().unwrap())
        .collect();
    assert_eq!(ifaces, [lab.host_if(), second.host_if()]);
    assert_eq!(st["interfaces"][0]["mode"], "skb");
    assert!(st["program_id"].as_u64().unwrap() > 0);
    assert_eq!(st["maps"]["allow"], 1);
    assert_eq!(st["maps"]["blocks"], 1);
    assert!(st["uptime_secs"].is_u64());
    assert!(st["events_lost"].is_u64());
    let text = d.ok(&["status"]);
    assert!(text.contains("block list: 1 of 10000"), "{text}");

    // Stats are polled every second.
    std::thread::sleep(Duration::from_millis(1_200));
    let stats = d.json(&["stats"]);
    assert!(stats["icmp"]["packets"].as_u64().unwrap() >= 4, "{stats}");
    assert!(stats["icmp"]["drops"].as_u64().unwrap() >= 2, "{stats}");
    for class in ["tcp", "udp", "icmp", "other", "total"] {
        assert!(stats[class]["pps"].is_number(), "{stats}");
    }
    let text = d.ok(&["stats"]);
    assert!(text.contains("icmp") && text.contains("PPS"), "{text}");
    // Counted per interface: the two dropped pings came in on the first
    // lab's interface, none on the second's.
    let per: Vec<&serde_json::Value> = stats["by_interface"].as_array().unwrap().iter().collect();
    assert_eq!(per.len(), 2, "{stats}");
    assert_eq!(per[0]["interface"], lab.host_if());
    assert_eq!(per[1]["interface"], second.host_if());
    assert_eq!(per[0]["icmp"]["drops"], 2, "{stats}");
    assert!(per[0]["icmp"]["packets"].as_u64().unwrap() >= 4, "{stats}");
    assert_eq!(per[1]["icmp"]["drops"], 0, "{stats}");
    assert_eq!(per[1]["total"]["drops"], 0, "{stats}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(lab.host_if()) && l.contains(" icmp ")),
        "{text}"
    );
    let st = d.json(&["status"]);
    assert_eq!(st["interfaces"][0]["traffic"]["icmp"]["drops"], 2, "{st}");
    assert_eq!(st["interfaces"][1]["traffic"]["icmp"]["drops"], 0, "{st}");

    let o = d.ctl(&["allow", "del", "203.0.113.1"]);
    assert!(
        stderr(&o).contains("not in the allow list"),
        "{}",
        stderr(&o)
    );
    d.ok(&["allow", "del", &a.to_string()]);
    assert_eq!(lab.ping(a, 1).unwrap(), 0);
}

#[test]
fn reload_applies_a_good_config_and_refuses_a_bad_one() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(2).unwrap();
    let (a, b) = (lab.peer_addr(0), lab.peer_addr(1));
    let cfg = TempFile::new(
        "reload.toml",
        &format!("[[ebpf.rules]]\nid = \"a\"\nsrc = \"{a}\"\n"),
    );
    let d = start_on_lab_with(&lab, &["--config", cfg.path()]);
    assert_eq!(lab.ping(a, 1).unwrap(), 0);
    assert_eq!(lab.ping(b, 1).unwrap(), 1);
    // A configured entry cannot be removed from the command line.
    let o = d.ctl(&["block", "del", &a.to_string()]);
    assert!(stderr(&o).contains("config rule \"a\""), "{}", stderr(&o));
    d.ok(&["block", "add", "192.0.2.9"]);

    std::fs::write(
        cfg.path(),
        format!("[[ebpf.rules]]\nid = \"b\"\nsrc = \"{b}\"\n"),
    )
    .unwrap();
    let out = d.ok(&["reload"]);
    assert!(
        out.contains("1 added") && out.contains("1 removed"),
        "{out}"
    );
    assert_eq!(lab.ping(a, 1).unwrap(), 1);
    assert_eq!(lab.ping(b, 1).unwrap(), 0);
    assert!(
        entries(&d).iter().any(|r| r["prefix"] == "192.0.2.9"),
        "manual entry kept"
    );

    std::fs::write(
        cfg.path(),
        "[[ebpf.rules]]\nid = \"c\"\n\nsrc = \"10.0.0.0/33\"\n",
    )
    .unwrap();
    let o = d.ctl(&["reload"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains(":4:7: ebpf.rules[0].src:"), "{err}");
    assert_eq!(lab.ping(b, 1).unwrap(), 0, "the running policy stays");

    // SIGHUP does the same. A file that says "no rules" removes them (an
    // empty one is refused: see tests/faults.rs).
    std::fs::write(cfg.path(), "# no rules any more\n").unwrap();
    d.signal(libc::SIGHUP);
    d.wait_for_stderr("configuration reloaded");
    assert_eq!(lab.ping(b, 1).unwrap(), 1);
    std::fs::write(cfg.path(), "[ebpf]\nblocklist_max_entries = 7\n").unwrap();
    let o = d.ctl(&["reload"]);
    assert!(
        stderr(&o).contains("blocklist_max_entries changed") && stderr(&o).contains("restart"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn blocks_survive_kill_9_and_the_restart_takes_over() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(2).unwrap();
    let (a, b) = (lab.peer_addr(0), lab.peer_addr(1));
    let d = start_on_lab_with(&lab, &[]);
    d.ok(&[
        "block",
        "add",
        &a.to_string(),
        "--ttl",
        "1h",
        "--reason",
        "kept",
    ]);
    d.ok(&["block", "add", "2001:db8::/48"]);
    d.ok(&["allow", "add", &b.to_string()]);
    assert_eq!(lab.ping(a, 1).unwrap(), 0);
    let socket = d.socket();
    let dir = d.crash();
    // The link is pinned: the filter outlives the process, with the policy
    // it had (fail closed), until the next start takes it over.
    assert!(xdp_attached(lab.host_if()));
    assert_eq!(lab.ping(a, 1).unwrap(), 0, "still dropped with no daemon");
    assert_eq!(lab.ping(b, 1).unwrap(), 1);
    let o = ironpost(&["--socket", socket.to_str().unwrap(), "status"]);
    assert!(
        stderr(&o).contains("no ironpost daemon is running"),
        "{}",
        stderr(&o)
    );

    // The same socket and state file: the stale socket is replaced.
    let d = Daemon::start_in(
        dir,
        &[
            "run",
            "-i",
            lab.host_if(),
            "--xdp-mode",
            "skb",
            "--stats-interval",
            "0",
        ],
    );
    let restored = d.wait_for_stderr("restored");
    assert!(
        restored.contains("restored 2 blocks") && restored.contains("1 allow"),
        "{restored}"
    );
    let adopted = d.wait_for_stderr("attached ironpost_xdp");
    assert!(adopted.contains("replaced in the pinned link"), "{adopted}");
    d.wait_for_stderr("ready:");
    assert_eq!(lab.ping(a, 1).unwrap(), 0, "the block is back");
    let rows = entries(&d);
    let row = find(&rows, &a.to_string());
    assert_eq!(row["reason"], "kept");
    let left = row["expires_in_secs"].as_f64().unwrap();
    assert!(left > 3500.0 && left < 3600.0, "remaining TTL kept: {row}");
    assert!(rows.iter().any(|r| r["prefix"] == "2001:db8::/48"));
    assert_eq!(
        d.json(&["allow", "list"])["entries"][0]["prefix"],
        b.to_string()
    );

    // A second daemon on the same socket is refused, leaving this one be.
    let o = ironpost(&[
        "--socket",
        d.socket().to_str().unwrap(),
        "run",
        "-i",
        lab.host_if(),
    ]);
    assert!(
        stderr(&o).contains("another ironpost daemon is running"),
        "{}",
        stderr(&o)
    );
    assert_eq!(lab.ping(a, 1).unwrap(), 0);
}

#[test]
fn bad_input_gives_clear_errors() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["block", "add", "10.1.2.3/8"],
            "host bits set: the network is 10.0.0.0/8",
        ),
        (
            &["block", "add", "example.com"],
            "is not an IP address or prefix",
        ),
        (&["block", "add", "10.0.0.0/40"], "0 to 32"),
        (
            &["block", "add", "10.0.0.1", "--ttl", "5 parsecs"],
            "is not a duration",
        ),
        (
            &["block", "add", "10.0.0.1", "--ttl", "0s"],
            "shorter than one second",
        ),
        (&["block", "add"], "required"),
        (&["allow", "add", "2001:db8::/129"], "0 to 128"),
    ];
    for (args, needle) in cases {
        let o = ironpost(args);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
    // Against no daemon.
    let sock = std::env::temp_dir().join(format!("ironpost-none-{}.sock", std::process::id()));
    for args in [
        &["block", "list"][..],
        &["block", "add", "192.0.2.1"],
        &["stats"],
        &["status"],
        &["reload"],
        &["allow", "list"],
    ] {
        let o = ironpost(&[&["--socket", sock.to_str().unwrap()], args].concat());
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(
            err.trim()
                .starts_with("ironpost: error: no ironpost daemon is running")
                && err.contains("ironpost run"),
            "{args:?}: {err}"
        );
    }
    // A missing import file is named before any daemon is asked.
    let o = ironpost(&[
        "--socket",
        sock.to_str().unwrap(),
        "block",
        "import",
        "/nonexistent/list",
    ]);
    assert!(
        stderr(&o).contains("reading /nonexistent/list"),
        "{}",
        stderr(&o)
    );
}

/// Polls `status` until `done` holds (at most `limit`); the last status.
fn status_until(d: &Daemon, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let s = d.json(&["status"]);
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn attached_to(status: &Value, iface: &str) -> Option<u64> {
    status["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["interface"] == iface)
        .map(|i| i["ifindex"].as_u64().unwrap())
}

#[test]
fn an_interface_that_goes_away_is_reported_and_attached_again_when_it_returns() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(2).unwrap();
    let (a, b) = (lab.peer_addr(0), lab.peer_addr(1));
    let iface = lab.host_if().to_owned();
    let cfg = TempFile::new(
        "links.toml",
        &format!(
            "[daemon]\nmetrics_listen = \"127.0.0.1:0\"\n\n[[ebpf.rules]]\nid = \"a\"\n\
             src = \"{a}\"\n"
        ),
    );
    let d = start_on_lab_with(&lab, &["--config", cfg.path()]);
    let metrics = d.metrics_addr();
    let first = attached_to(&d.json(&["status"]), &iface).expect("attached at start");
    assert_eq!(lab.ping(a, 1).unwrap(), 0);
    assert_eq!(lab.ping(b, 1).unwrap(), 1);

    // The device goes away: status stops showing the program on it and
    // says it is absent, the metrics and /healthz say so too.
    lab.delete_link().unwrap();
    let s = status_until(&d, Duration::from_secs(3), |s| {
        s["absent_interfaces"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    assert_eq!(attached_to(&s, &iface), None, "{s}");
    assert_eq!(
        s["absent_interfaces"][0]["interface"],
        iface.as_str(),
        "{s}"
    );
    assert_eq!(s["absent_interfaces"][0]["last_ifindex"], first, "{s}");
    let text = d.ok(&["status"]);
    assert!(
        text.contains(&format!("interface {iface}: ABSENT")),
        "{text}"
    );
    let (status, body) = http_get(&metrics, "/healthz");
    assert!(
        status.contains("503") && body.contains(&iface),
        "{status} {body}"
    );
    let (_, body) = http_get(&metrics, "/metrics");
    let attached = format!("ironpost_interface_attached{{interface=\"{iface}\"}}");
    let losses = format!("ironpost_interface_losses_total{{interface=\"{iface}\"}}");
    assert_eq!(sample(&body, &attached), Some(0), "{body}");
    assert_eq!(sample(&body, &losses), Some(1), "{body}");
    d.wait_for_stderr("NOT filtered");

    // Reload works while it is absent (now b is the blocked one).
    std::fs::write(
        cfg.path(),
        format!(
            "[daemon]\nmetrics_listen = \"127.0.0.1:0\"\n\n[[ebpf.rules]]\nid = \"b\"\n\
             src = \"{b}\"\n"
        ),
    )
    .unwrap();
    let out = d.ok(&["reload"]);
    assert!(out.contains("still absent"), "{out}");

    // It comes back (a new device, a new index): attached within a second,
    // with the policy reloaded meanwhile.
    lab.restore_link().unwrap();
    let back = Instant::now();
    let s = status_until(&d, Duration::from_secs(5), |s| {
        attached_to(s, &iface).is_some()
    });
    let took = back.elapsed();
    let second = attached_to(&s, &iface).expect("attached again");
    assert!(
        took < Duration::from_secs(1),
        "attached again after {took:?}"
    );
    assert_ne!(second, first, "a new device");
    assert_eq!(s["absent_interfaces"], Value::Array(vec![]), "{s}");
    assert!(xdp_attached(&iface));
    assert_eq!(lab.ping(a, 1).unwrap(), 1);
    assert_eq!(lab.ping(b, 1).unwrap(), 0);
    let (status, _) = http_get(&metrics, "/healthz");
    assert!(status.contains("200"), "{status}");
    let (_, body) = http_get(&metrics, "/metrics");
    assert_eq!(sample(&body, &attached), Some(1), "{body}");
    d.wait_for_stderr("is back");
}

/// Pings the host from `from` every 10 ms for `secs` seconds, in the
/// background; the handle gives the replies received.
fn ping_for(lab: &Lab, from: std::net::Ipv4Addr, secs: u32) -> std::thread::JoinHandle<u32> {
    let (ns, host) = (lab.ns().to_owned(), lab.host_addr().to_string());
    std::thread::spawn(move || {
        let out = std::process::Command::new("ip")
            .args([
                "netns", "exec", &ns, "ping", "-q", "-n", "-i", "0.01", "-W", "1",
            ])
            .args(["-w", &secs.to_string(), "-I", &from.to_string(), &host])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        parse_ping_received(&text).unwrap_or_else(|| panic!("no ping summary: {text}"))
    })
}

#[test]
fn restarts_and_upgrades_never_open_the_filter() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(2).unwrap();
    let (a, b) = (lab.peer_addr(0), lab.peer_addr(1));
    let mut run = common::run_on(&lab).to_vec();
    run.extend_from_slice(&["--on-exit", "keep"]);
    let d = Daemon::start(&run);
    d.wait_for_stderr("ready:");
    let pins = Daemon::pin_dir_of(d.socket().parent().unwrap());
    let status = d.json(&["status"]);
    let pinned = status["interfaces"][0]["pinned"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(pinned.starts_with(pins.to_str().unwrap()), "{status}");
    assert_eq!(status["on_exit"], "keep");
    let text = d.ok(&["status"]);
    assert!(
        text.contains("stays attached when the daemon stops"),
        "{text}"
    );
    d.ok(&["block", "add", &a.to_string()]);
    assert_eq!(lab.ping(a, 1).unwrap(), 0);
    // Another build of the binary, as an upgrade brings (a different file
    // that runs the same).
    let upgrade = d.socket().parent().unwrap().join("ironpost-upgraded");
    let mut bytes = std::fs::read(common::BIN).unwrap();
    bytes.extend_from_slice(b"upgrade");
    std::fs::write(&upgrade, bytes).unwrap();
    std::fs::set_permissions(&upgrade, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (blocked, open) = (ping_for(&lab, a, 8), ping_for(&lab, b, 8));
    std::thread::sleep(Duration::from_millis(300));

    // A stop and a start of the same binary, then of the upgraded one.
    d.signal(libc::SIGTERM);
    let (status, dir) = d.wait_keeping_dir();
    assert!(status.success());
    assert!(xdp_attached(lab.host_if()), "kept attached after the stop");
    let d = Daemon::start_in(dir, &run);
    let line = d.wait_for_stderr("attached ironpost_xdp");
    assert!(line.contains("replaced in the pinned link"), "{line}");
    d.wait_for_stderr("ready:");
    d.signal(libc::SIGTERM);
    let (status, dir) = d.wait_keeping_dir();
    assert!(status.success());
    let d = Daemon::start_bin(&upgrade, dir, &run);
    let line = d.wait_for_stderr("attached ironpost_xdp");
    assert!(line.contains("replaced in the pinned link"), "{line}");
    d.wait_for_stderr("ready:");

    let (blocked, open) = (blocked.join().unwrap(), open.join().unwrap());
    assert_eq!(
        blocked, 0,
        "the blocked source got replies during the restarts"
    );
    assert!(open > 300, "the other source got {open} replies in 8 s");
    assert_eq!(lab.ping(a, 1).unwrap(), 0);

    // `unload` is refused while a daemon runs; after a stop it removes the
    // filter for good.
    let unload = |socket: &std::path::Path| {
        ironpost(&[
            "--socket",
            socket.to_str().unwrap(),
            "unload",
            "--pin-dir",
            pins.to_str().unwrap(),
        ])
    };
    let o = unload(&d.socket());
    assert!(
        !o.status.success() && stderr(&o).contains("daemon is running"),
        "{}",
        stderr(&o)
    );
    let socket = d.socket();
    d.signal(libc::SIGTERM);
    let (status, dir) = d.wait_keeping_dir();
    assert!(status.success());
    assert!(xdp_attached(lab.host_if()));
    let o = unload(&socket);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("filter removed"),
        "{o:?}"
    );
    assert!(!xdp_attached(lab.host_if()));
    assert_eq!(lab.ping(a, 1).unwrap(), 1);
    let _ = std::fs::remove_dir_all(&pins);
    let _ = std::fs::remove_dir_all(dir);
}

fn list_prefixes(d: &Daemon, list: &str) -> Vec<String> {
    let v = d.json(&["block", "list", "--list", list]);
    let mut p: Vec<String> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["prefix"].as_str().unwrap().to_owned())
        .collect();
    p.sort();
    p
}

#[test]
fn a_configured_rule_over_a_listed_address_never_unblocks_it_when_it_goes() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(1).unwrap();
    let a = lab.peer_addr(0);
    let cfg = TempFile::new("held.toml", "");
    let run = {
        let mut r = common::run_on(&lab).to_vec();
        r.extend_from_slice(&["--config", cfg.path()]);
        r
    };
    let d = Daemon::start(&run);
    d.wait_for_stderr("ready:");
    d.ok(&["block", "add", &a.to_string(), "--list", "feed"]);
    assert_eq!(lab.ping(a, 1).unwrap(), 0);
    // A rule that only watches the address takes it over: it passes.
    std::fs::write(
        cfg.path(),
        format!("[[ebpf.rules]]\nid = \"watch\"\nsrc = \"{a}\"\naction = \"monitor\"\n"),
    )
    .unwrap();
    d.ok(&["reload"]);
    assert_eq!(
        lab.ping(a, 2).unwrap(),
        2,
        "the rule decides while it is there"
    );
    let held = d.json(&["block", "list", "--list", "feed"]);
    assert_eq!(held["entries"][0]["prefix"], a.to_string(), "{held}");
    // It is saved: a restart keeps it beside the rule.
    d.signal(libc::SIGTERM);
    let (status, dir) = d.wait_keeping_dir();
    assert!(status.success(), "{status}");
    let d = Daemon::start_in(dir, &run);
    d.wait_for_stderr("ready:");
    assert_eq!(lab.ping(a, 1).unwrap(), 1);
    // The rule goes: the feed's block is back in force.
    std::fs::write(cfg.path(), "# no rules\n").unwrap();
    d.ok(&["reload"]);
    assert_eq!(lab.ping(a, 2).unwrap(), 0, "the feed's block again");
    let row = find(&entries(&d), &a.to_string()).clone();
    assert_eq!(row["list"], "feed", "{row}");
}

#[test]
fn named_lists_keep_each_feeders_entries_apart() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(3).unwrap();
    let (a, b, c) = (lab.peer_addr(0), lab.peer_addr(1), lab.peer_addr(2));
    let d = start_on_lab_with(&lab, &[]);
    // The same address from two feeders is two memberships; the longest
    // one is in force.
    d.ok(&[
        "block",
        "add",
        &a.to_string(),
        "--list",
        "f2b-sshd",
        "--ttl",
        "10m",
    ]);
    d.ok(&["block", "add", &a.to_string(), "--list", "crowdsec"]);
    let rows = entries(&d);
    let row = find(&rows, &a.to_string());
    assert_eq!(row["list"], "crowdsec", "the one that never expires: {row}");
    assert_eq!(row["also_in"], serde_json::json!(["f2b-sshd"]), "{row}");
    assert_eq!(row["expires"], Value::Null);
    assert_eq!(lab.ping(a, 1).unwrap(), 0);
    // One feeder's unban leaves the other's block.
    let out = d.ok(&["block", "del", &a.to_string(), "--list", "crowdsec"]);
    assert!(out.contains("removed 1 from the list crowdsec"), "{out}");
    assert_eq!(lab.ping(a, 1).unwrap(), 0, "still blocked by f2b-sshd");
    let row = find(&entries(&d), &a.to_string()).clone();
    assert_eq!(row["list"], "f2b-sshd");
    assert!(row["expires_in_secs"].as_f64().unwrap() > 500.0, "{row}");
    // Not in a list: an error naming the lists it is in.
    let o = d.ctl(&["block", "del", &a.to_string()]);
    assert_eq!(o.status.code(), Some(12), "not_found");
    assert!(stderr(&o).contains("it is in: f2b-sshd"), "{}", stderr(&o));
    d.ok(&["block", "del", &a.to_string(), "--list", "f2b-sshd"]);
    assert_eq!(lab.ping(a, 1).unwrap(), 1);

    // sync replaces one list: only the difference changes, other lists
    // are untouched.
    d.ok(&["block", "add", &c.to_string(), "--list", "manual"]);
    let feed = TempFile::new("feed.netset", &format!("{a}\n{b}\n192.0.2.0/24\n"));
    let out = d.ok(&["block", "sync", "--list", "feed", feed.path()]);
    assert!(
        out.contains("3 added") && out.contains("0 removed"),
        "{out}"
    );
    std::fs::write(feed.path(), format!("{b}\n192.0.2.0/24\n198.51.100.0/24\n")).unwrap();
    let out = d.ok(&["block", "sync", "--list", "feed", feed.path()]);
    assert!(
        out.contains("1 added") && out.contains("2 updated") && out.contains("1 removed"),
        "{out}"
    );
    assert_eq!(
        list_prefixes(&d, "feed"),
        [
            b.to_string(),
            "192.0.2.0/24".into(),
            "198.51.100.0/24".into()
        ]
    );
    assert_eq!(list_prefixes(&d, "manual"), [c.to_string()]);
    assert_eq!(lab.ping(a, 1).unwrap(), 1, "left the feed");
    assert_eq!(lab.ping(b, 1).unwrap(), 0);
    // An empty file (a failed download) does not empty the list.
    let empty = TempFile::new("empty.netset", "# nothing\n");
    let o = d.ctl(&["block", "sync", "--list", "feed", empty.path()]);
    assert_eq!(o.status.code(), Some(11), "{}", stderr(&o));
    assert!(stderr(&o).contains("block flush"), "{}", stderr(&o));
    assert_eq!(
        list_prefixes(&d, "feed").len(),
        3,
        "the list is left as it was"
    );
    // flush empties one list.
    let out = d.ok(&["block", "flush", "--list", "feed"]);
    assert!(out.contains("removed 3 from the list feed"), "{out}");
    assert!(list_prefixes(&d, "feed").is_empty());
    assert_eq!(lab.ping(b, 1).unwrap(), 1);
    assert_eq!(lab.ping(c, 1).unwrap(), 0, "manual untouched");
    // The daemon's own lists take no manual entries; bad names are refused.
    let o = d.ctl(&["block", "add", "192.0.2.9", "--list", "auto"]);
    assert_eq!(o.status.code(), Some(11), "{}", stderr(&o));
    let o = d.ctl(&["block", "add", "192.0.2.9", "--list", "no such"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a list name"), "{}", stderr(&o));

    // Memberships survive a restart.
    d.ok(&["block", "add", &a.to_string(), "--list", "one"]);
    d.ok(&[
        "block",
        "add",
        &a.to_string(),
        "--list",
        "two",
        "--ttl",
        "1h",
    ]);
    let socket_dir = d.crash();
    let d = Daemon::start_in(socket_dir, &common::run_on(&lab));
    d.wait_for_stderr("ready:");
    let row = find(&entries(&d), &a.to_string()).clone();
    assert_eq!(row["list"], "one", "{row}");
    assert_eq!(row["also_in"], serde_json::json!(["two"]), "{row}");
    d.ok(&["block", "del", &a.to_string(), "--list", "one"]);
    assert_eq!(lab.ping(a, 1).unwrap(), 0, "still in two");
}
