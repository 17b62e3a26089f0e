//! The Debian package, built by `cargo xtask package`, installed on this
//! machine and removed again: its files, lintian, the unit, man pages,
//! completions, the daemon with only the unit's capabilities, and removal
//! leaving no filter and (on purge) no state behind.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use ironpost_lab::{Lab, kernel_tests_enabled, xdp_attached};

const INSTALLED: &str = "/usr/sbin/ironpost";
/// The capabilities the unit grants (CapabilityBoundingSet).
const UNIT_CAPS: &str = "-all,+bpf,+net_admin,+perfmon";

fn output(cmd: &mut Command) -> (bool, String) {
    let o = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// apt-get as an operator runs it, without questions.
fn apt(args: &[&str]) -> String {
    run(Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn run(cmd: &mut Command) -> String {
    let (ok, text) = output(cmd);
    assert!(ok, "{cmd:?}: {text}");
    text
}

/// Purges the package whatever happens to the test.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if Path::new(INSTALLED).exists() {
            let _ = Command::new(INSTALLED).arg("unload").output();
        }
        let _ = Command::new("dpkg").args(["--purge", "ironpost"]).output();
    }
}

/// The installed daemon, started with only the unit's capabilities and
/// the installed defaults (configuration, socket, state, pins).
fn start_installed(lab: &Lab) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new("setpriv")
        .args(["--inh-caps=-all", &format!("--bounding-set={UNIT_CAPS}")])
        .arg(INSTALLED)
        .args(run_on(lab))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            eprintln!("[installed] {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn wait_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let start = Instant::now();
    let mut seen = String::new();
    while start.elapsed() < Duration::from_secs(20) {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&l);
            seen.push('\n');
            if l.contains(needle) {
                return seen;
            }
        }
    }
    panic!("no {needle:?} within 20 s:\n{seen}");
}

fn stop(mut child: Child) {
    // SAFETY: kill(2) on a child of ours; no memory is involved.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn the_package_installs_runs_with_the_units_capabilities_and_removes_cleanly() {
    if !kernel_tests_enabled() {
        return;
    }
    if Path::new(INSTALLED).exists() {
        panic!("{INSTALLED} exists: remove the installed ironpost package before this test");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let built = run(Command::new(env!("CARGO"))
        .args(["xtask", "package"])
        .current_dir(&root));
    let deb = PathBuf::from(
        built
            .lines()
            .find(|l| l.trim().ends_with(".deb"))
            .unwrap_or_else(|| panic!("no package path in:\n{built}"))
            .trim(),
    );
    assert!(deb.is_file(), "{built}");

    let files = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for want in [
        "./usr/sbin/ironpost",
        "./etc/ironpost/ironpost.toml",
        "./usr/lib/systemd/system/ironpost.service",
        "./etc/fail2ban/action.d/ironpost.conf",
        "./usr/share/ironpost/grafana/ironpost.json",
        "./usr/share/man/man8/ironpost.8.gz",
        "./usr/share/man/man8/ironpost-block-add.8.gz",
        "./usr/share/bash-completion/completions/ironpost",
        "./usr/share/zsh/vendor-completions/_ironpost",
        "./usr/share/fish/vendor_completions.d/ironpost.fish",
        "./usr/share/doc/ironpost/copyright",
    ] {
        assert!(
            files.lines().any(|l| l.ends_with(want)),
            "{want} missing:\n{files}"
        );
    }
    let conffiles = run(Command::new("dpkg-deb")
        .arg("-I")
        .arg(&deb)
        .arg("conffiles"));
    assert!(
        conffiles.contains("/etc/ironpost/ironpost.toml"),
        "{conffiles}"
    );

    let (_, lint) = output(Command::new("lintian").arg(&deb));
    let errors: Vec<&str> = lint.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{lint}");

    let _installed = Installed;
    apt(&["install", "-y", deb.to_str().unwrap()]);
    let (ok, verify) = output(
        Command::new("systemd-analyze")
            .args(["verify", "/usr/lib/systemd/system/ironpost.service"]),
    );
    assert!(
        ok && verify.trim().is_empty(),
        "systemd-analyze verify:\n{verify}"
    );
    for page in std::fs::read_dir("/usr/share/man/man8").unwrap() {
        let page = page.unwrap().path();
        let name = page.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("ironpost") {
            continue;
        }
        let text = run(Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANWIDTH", "80"));
        assert!(
            text.contains("NAME") && text.contains("SYNOPSIS"),
            "{name}:\n{text}"
        );
    }
    let complete = run(Command::new("bash").args([
        "-c",
        "source /usr/share/bash-completion/completions/ironpost && complete -p ironpost",
    ]));
    assert!(complete.contains("-F _ironpost ironpost"), "{complete}");
    let words = run(Command::new("bash").args([
        "-c",
        "source /usr/share/bash-completion/completions/ironpost; COMP_WORDS=(ironpost bl); \
         COMP_CWORD=1; _ironpost ironpost bl ironpost; echo ${COMPREPLY[@]}",
    ]));
    assert!(words.split_whitespace().any(|w| w == "block"), "{words}");

    // The shipped configuration attaches to nothing: said, with the
    // configuration error code that stops the unit restarting.
    let o = Command::new(INSTALLED).arg("run").output().unwrap();
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/etc/ironpost/ironpost.toml"),
        "{}",
        stderr(&o)
    );

    let lab = Lab::new(1).unwrap();
    let peer = lab.peer_addr(0);
    let (daemon, log) = start_installed(&lab);
    wait_line(&log, "ready:");
    run(Command::new(INSTALLED).args(["block", "add", &peer.to_string()]));
    assert_eq!(
        lab.ping(peer, 1).unwrap(),
        0,
        "dropped by the installed daemon"
    );
    stop(daemon);
    assert!(
        xdp_attached(lab.host_if()),
        "a stopped service leaves the filter"
    );
    assert_eq!(
        lab.ping(peer, 1).unwrap(),
        0,
        "still enforced while stopped"
    );
    // A restart takes the pinned filter over, still with only those
    // capabilities.
    let (mut daemon, log) = start_installed(&lab);
    wait_line(&log, "replaced in the pinned link");
    wait_line(&log, "ready:");

    // An upgrade (the same package again) keeps the operator's edited
    // configuration and leaves the running daemon and its filter alone.
    let conf = "/etc/ironpost/ironpost.toml";
    let edited = format!(
        "{}\n# edited by the operator\n",
        std::fs::read_to_string(conf).unwrap()
    );
    std::fs::write(conf, &edited).unwrap();
    apt(&["install", "--reinstall", "-y", deb.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(conf).unwrap(), edited);
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the upgrade stopped the daemon"
    );
    assert_eq!(
        lab.ping(peer, 1).unwrap(),
        0,
        "enforced through the upgrade"
    );

    // Removal stops the running daemon and takes its filter out.
    apt(&["remove", "-y", "ironpost"]);
    let start = Instant::now();
    while daemon.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "removal left the daemon running"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !xdp_attached(lab.host_if()),
        "removal leaves no program attached"
    );
    assert_eq!(lab.ping(peer, 1).unwrap(), 1);
    let pins: Vec<_> = std::fs::read_dir("/sys/fs/bpf/ironpost")
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(pins.is_empty(), "pins left: {pins:?}");
    assert!(
        Path::new("/var/lib/ironpost/state.redb").exists(),
        "remove keeps the state"
    );
    assert!(
        Path::new("/etc/ironpost/ironpost.toml").exists(),
        "and the configuration"
    );
    apt(&["purge", "-y", "ironpost"]);
    assert!(
        !Path::new("/var/lib/ironpost").exists(),
        "purge removes the state"
    );
    assert!(
        !Path::new("/etc/ironpost").exists(),
        "and the configuration"
    );
}
