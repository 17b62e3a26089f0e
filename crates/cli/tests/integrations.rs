//! The peers Ironpost ships integrations for, run for real against a
//! daemon on a lab: fail2ban with the shipped action, CrowdSec's Local API
//! (unpacked by setup into .tools/crowdsec), and `ironpost top` in tmux.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use ironpost_lab::{Lab, kernel_tests_enabled};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Waits up to `secs` for `f` to hold.
fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The lists holding `addr`, as `block list --json` shows them.
fn lists_of(d: &Daemon, addr: &str) -> Vec<String> {
    let v = d.json(&["block", "list"]);
    let mut lists = Vec::new();
    for e in v["entries"].as_array().unwrap() {
        if e["prefix"] == addr {
            lists.push(e["list"].as_str().unwrap().to_owned());
            for l in e["also_in"].as_array().into_iter().flatten() {
                lists.push(l.as_str().unwrap().to_owned());
            }
        }
    }
    lists.sort();
    lists
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A fail2ban server on a scratch configuration, stopped on drop.
struct Fail2ban {
    dir: PathBuf,
}

impl Fail2ban {
    fn client(&self) -> Command {
        let mut c = Command::new("fail2ban-client");
        c.arg("-c").arg(&self.dir);
        c
    }
}

impl Drop for Fail2ban {
    fn drop(&mut self) {
        let _ = self.client().arg("stop").output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn fail2ban_bans_in_xdp_into_the_jails_list_and_unbans_from_it_only() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(1).unwrap();
    let peer = lab.peer_addr(0).to_string();
    let d = start_on_lab_with(&lab, &[]);
    // The address is also in another list: fail2ban's unban must not free it.
    d.ok(&["block", "add", &peer, "--list", "feed"]);
    d.ok(&["block", "del", &peer, "--list", "feed"]);
    let dir = std::env::temp_dir().join(format!("ironpost-f2b-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["action.d", "filter.d"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let f2b = Fail2ban { dir: dir.clone() };
    let log = dir.join("auth.log");
    std::fs::write(&log, "").unwrap();
    std::fs::write(
        dir.join("fail2ban.conf"),
        format!(
            "[Definition]\nloglevel = INFO\nlogtarget = {d}/fail2ban.log\nsocket = \
             {d}/f2b.sock\npidfile = {d}/f2b.pid\ndbfile = :memory:\n",
            d = dir.display()
        ),
    )
    .unwrap();
    // The shipped action as it is, and a local file pointing it at this
    // test's daemon (as an operator's action.d/ironpost.local would).
    std::fs::copy(
        workspace().join("packaging/fail2ban/ironpost.conf"),
        dir.join("action.d/ironpost.conf"),
    )
    .unwrap();
    std::fs::write(
        dir.join("action.d/ironpost.local"),
        format!(
            "[Init]\nironpost = {BIN} --socket {}\n",
            d.socket().display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("filter.d/lab-login.conf"),
        "[Definition]\nfailregex = ^FAILED login from <HOST>$\nignoreregex =\ndatepattern = {NONE}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("jail.conf"),
        format!(
            "[DEFAULT]\nbackend = polling\n\n[lablogin]\nenabled = true\nfilter = lab-login\n\
             logpath = {}\nmaxretry = 3\nfindtime = 600\nbantime = 900\nbanaction = ironpost\n\
             action = %(banaction)s\n",
            log.display()
        ),
    )
    .unwrap();
    run(f2b.client().args(["-x", "start"]));
    eventually(10, "fail2ban answering", || {
        f2b.client()
            .args(["status", "lablogin"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert_eq!(lab.ping(lab.peer_addr(0), 1).unwrap(), 1, "not blocked yet");
    let mut text = String::new();
    for _ in 0..3 {
        text.push_str(&format!("FAILED login from {peer}\n"));
    }
    std::fs::write(&log, text).unwrap();
    eventually(15, "fail2ban's ban in list f2b-lablogin", || {
        lists_of(&d, &peer) == ["f2b-lablogin"]
    });
    let v = d.json(&["block", "list", "--list", "f2b-lablogin"]);
    let e = &v["entries"][0];
    let left = e["expires_in_secs"].as_f64().unwrap();
    assert!(left > 800.0 && left <= 900.0, "bantime as TTL: {e}");
    assert!(
        e["reason"].as_str().unwrap().contains("fail2ban lablogin"),
        "{e}"
    );
    assert_eq!(lab.ping(lab.peer_addr(0), 2).unwrap(), 0, "dropped in XDP");
    // Another list holds it too; unbanning leaves that one.
    d.ok(&["block", "add", &peer, "--list", "feed"]);
    run(f2b.client().args(["unban", &peer]));
    eventually(10, "the unban", || lists_of(&d, &peer) == ["feed"]);
    assert_eq!(
        lab.ping(lab.peer_addr(0), 1).unwrap(),
        0,
        "still blocked by feed"
    );
    d.ok(&["block", "del", &peer, "--list", "feed"]);
    assert_eq!(lab.ping(lab.peer_addr(0), 1).unwrap(), 1);
    drop(f2b);
    d.signal(libc::SIGTERM);
    assert!(d.finish().0.success(), "the daemon stops cleanly");
}

/// A CrowdSec Local API alone (`crowdsec -no-cs`) on 127.0.0.1 with a
/// scratch configuration and SQLite database; killed on drop.
struct Lapi {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

const BOUNCER_KEY: &str = "ironposttestkey0123456789abcdef0";

impl Lapi {
    fn bin(name: &str) -> PathBuf {
        workspace().join(".tools/crowdsec/usr/bin").join(name)
    }

    fn new() -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ironpost-lapi-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["data", "hub", "etc"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.display();
        std::fs::write(dir.join("hub/.index.json"), "{}").unwrap();
        std::fs::write(dir.join("etc/simulation.yaml"), "simulation: false\n").unwrap();
        std::fs::write(
            dir.join("etc/profiles.yaml"),
            "name: default_ip_remediation\nfilters:\n - Alert.Remediation == true && \
             Alert.GetScope() == \"Ip\"\ndecisions:\n - type: ban\n   duration: 4h\non_success: \
             break\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("etc/config.yaml"),
            format!(
                "common:\n  daemonize: false\n  log_media: stdout\n  log_level: info\n  \
                 working_dir: .\nconfig_paths:\n  config_dir: {d}/etc/\n  data_dir: {d}/data/\n  \
                 simulation_path: {d}/etc/simulation.yaml\n  hub_dir: {d}/hub/\n  index_path: \
                 {d}/hub/.index.json\n  notification_dir: {d}/etc/notifications/\n  plugin_dir: \
                 {d}/plugins/\ndb_config:\n  log_level: info\n  type: sqlite\n  db_path: \
                 {d}/data/crowdsec.db\napi:\n  client:\n    credentials_path: \
                 {d}/etc/local_api_credentials.yaml\n  server:\n    log_level: info\n    \
                 listen_uri: 127.0.0.1:{port}\n    profiles_path: {d}/etc/profiles.yaml\n    \
                 trusted_ips:\n      - 127.0.0.1\nprometheus:\n  enabled: false\n"
            ),
        )
        .unwrap();
        let mut lapi = Self {
            dir,
            port,
            child: None,
        };
        run(lapi
            .cscli()
            .args(["bouncers", "add", "ironpost-test", "-k", BOUNCER_KEY]));
        run(lapi.cscli().args([
            "machines",
            "add",
            "test",
            "--auto",
            "--force",
            "-f",
            &format!("{}/etc/local_api_credentials.yaml", lapi.dir.display()),
            "--url",
            &format!("http://127.0.0.1:{port}"),
        ]));
        lapi.start();
        lapi
    }

    fn cscli(&self) -> Command {
        let mut c = Command::new(Self::bin("cscli"));
        c.arg("-c").arg(self.dir.join("etc/config.yaml"));
        c
    }

    fn start(&mut self) {
        let child = Command::new(Self::bin("crowdsec"))
            .arg("-c")
            .arg(self.dir.join("etc/config.yaml"))
            .arg("-no-cs")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        eventually(20, "the Local API listening", || {
            std::net::TcpStream::connect(&addr).is_ok()
        });
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Lapi {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn crowdsec_decisions_are_followed_into_the_crowdsec_list() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(1).unwrap();
    let peer = lab.peer_addr(0).to_string();
    let mut lapi = Lapi::new();
    // One decision before the daemon starts: the start-up stream has it.
    run(lapi.cscli().args([
        "decisions",
        "add",
        "--range",
        "198.51.100.0/24",
        "--duration",
        "2h",
    ]));
    let (d, _cfg) = start_on_lab(
        &lab,
        "crowdsec.toml",
        &format!(
            "[daemon]\nmetrics_listen = \"127.0.0.1:0\"\n\n[crowdsec]\nlapi_url = \
             \"http://127.0.0.1:{}\"\napi_key = \"{BOUNCER_KEY}\"\npoll_interval_secs = 1\n",
            lapi.port
        ),
    );
    eventually(10, "the start-up decision", || {
        lists_of(&d, "198.51.100.0/24") == ["crowdsec"]
    });
    assert_eq!(lab.ping(lab.peer_addr(0), 1).unwrap(), 1);
    run(lapi
        .cscli()
        .args(["decisions", "add", "--ip", &peer, "--duration", "1h"]));
    // Within a poll interval (1 s), with room for a loaded machine.
    eventually(8, "the new decision", || {
        lists_of(&d, &peer) == ["crowdsec"]
    });
    let v = d.json(&["block", "list", "--list", "crowdsec"]);
    let e = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["prefix"] == peer.as_str())
        .unwrap()
        .clone();
    let left = e["expires_in_secs"].as_f64().unwrap();
    assert!(
        left > 3500.0 && left <= 3660.0,
        "the decision's duration: {e}"
    );
    assert_eq!(lab.ping(lab.peer_addr(0), 2).unwrap(), 0, "dropped in XDP");
    // The follower counts once the change is applied: soon after.
    eventually(8, "status counting both decisions", || {
        let s = d.json(&["status"]);
        s["crowdsec"]["connected"] == true && s["crowdsec"]["decisions"] == 2
    });
    // Deleted in CrowdSec: let through.
    run(lapi.cscli().args(["decisions", "delete", "--ip", &peer]));
    eventually(8, "the deletion", || lists_of(&d, &peer).is_empty());
    assert_eq!(lab.ping(lab.peer_addr(0), 1).unwrap(), 1);
    // The Local API goes away: the blocks stay, and status and the log say so.
    run(lapi
        .cscli()
        .args(["decisions", "add", "--ip", &peer, "--duration", "1h"]));
    eventually(8, "the decision again", || {
        lists_of(&d, &peer) == ["crowdsec"]
    });
    lapi.stop();
    d.wait_for_stderr("crowdsec: cannot reach the Local API");
    let status = d.json(&["status"]);
    assert_eq!(status["crowdsec"]["connected"], false, "{status}");
    assert_eq!(lists_of(&d, &peer), ["crowdsec"]);
    assert_eq!(lab.ping(lab.peer_addr(0), 2).unwrap(), 0, "still dropped");
    let (_, body) = http_get(&d.metrics_addr(), "/metrics");
    assert_eq!(
        sample(&body, "ironpost_crowdsec_connected"),
        Some(0),
        "{body}"
    );
    d.signal(libc::SIGTERM);
    assert!(d.finish().0.success(), "the daemon stops cleanly");
}

#[test]
fn a_wrong_crowdsec_key_is_said_and_protection_goes_on_until_a_reload_fixes_it() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(1).unwrap();
    let lapi = Lapi::new();
    let config = |key: &str| {
        format!(
            "[daemon]\nmetrics_listen = \"127.0.0.1:0\"\n\n[crowdsec]\nlapi_url = \
             \"http://127.0.0.1:{}\"\napi_key = \"{key}\"\npoll_interval_secs = 1\n",
            lapi.port
        )
    };
    let (d, cfg) = start_on_lab(&lab, "crowdsec-bad.toml", &config("wrong"));
    d.said("refused the bouncer key (HTTP 403)");
    let peer = lab.peer_addr(0).to_string();
    d.ok(&["block", "add", &peer]);
    assert_eq!(lab.ping(lab.peer_addr(0), 1).unwrap(), 0);
    let status = d.json(&["status"]);
    assert_eq!(status["crowdsec"]["connected"], false, "{status}");
    // The right key, reloaded: followed from then on, without a restart.
    run(lapi
        .cscli()
        .args(["decisions", "add", "--ip", "192.0.2.77", "--duration", "1h"]));
    std::fs::write(cfg.path(), config(BOUNCER_KEY)).unwrap();
    let said = d.ok(&["reload"]);
    assert!(said.contains("crowdsec: following"), "{said}");
    eventually(8, "the decision after the reload", || {
        lists_of(&d, "192.0.2.77") == ["crowdsec"]
    });
    eventually(8, "status saying connected", || {
        d.json(&["status"])["crowdsec"]["connected"] == true
    });
    // [crowdsec] taken out: no longer followed, the list kept.
    std::fs::write(cfg.path(), "[daemon]\nmetrics_listen = \"127.0.0.1:0\"\n").unwrap();
    let said = d.ok(&["reload"]);
    assert!(said.contains("crowdsec: no longer followed"), "{said}");
    assert!(d.json(&["status"])["crowdsec"].is_null());
    assert_eq!(lists_of(&d, "192.0.2.77"), ["crowdsec"]);
    d.signal(libc::SIGTERM);
    assert!(d.finish().0.success(), "the daemon stops cleanly");
}

/// A tmux session, killed on drop.
struct Tmux(String);

impl Tmux {
    fn capture(&self) -> String {
        run(Command::new("tmux").args(["capture-pane", "-p", "-t", &self.0]))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

#[test]
fn top_shows_traffic_sources_and_blocks_and_quits_on_q() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(2).unwrap();
    let blocked = lab.peer_addr(1).to_string();
    let d = start_on_lab_with(&lab, &[]);
    d.ok(&[
        "block", "add", &blocked, "--ttl", "1h", "--reason", "top test",
    ]);
    let session = format!("ironpost-top-{}", std::process::id());
    let status_file = std::env::temp_dir().join(format!("{session}.rc"));
    let _ = std::fs::remove_file(&status_file);
    let tmux = Tmux(session.clone());
    run(Command::new("tmux").args([
        "new-session",
        "-d",
        "-x",
        "160",
        "-y",
        "50",
        "-s",
        &session,
        &format!(
            "{BIN} --socket {} top; echo $? > {}; sleep 30",
            d.socket().display(),
            status_file.display()
        ),
    ]));
    // Traffic from both peers while top watches: one passes, one is dropped.
    let start = Instant::now();
    let mut screen = String::new();
    while start.elapsed() < Duration::from_secs(15) {
        let _ = lab.ping(lab.peer_addr(0), 3);
        let _ = lab.ping(lab.peer_addr(1), 3);
        screen = tmux.capture();
        let pps = screen.lines().any(|l| {
            l.contains(lab.host_if())
                && l.contains("total")
                && l.split_whitespace()
                    .nth(2)
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v > 0.0)
        });
        if pps && screen.contains(&blocked) && screen.contains("top test") {
            break;
        }
    }
    assert!(screen.contains(lab.host_if()), "{screen}");
    assert!(screen.contains("latest blocks in force"), "{screen}");
    assert!(
        screen
            .lines()
            .any(|l| l.contains(&blocked) && l.contains("manual")),
        "the blocked source with its list: {screen}"
    );
    assert!(
        screen.lines().any(|l| l.contains(lab.host_if())
            && l.contains("total")
            && l.split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)),
        "non-zero packets/s on the lab interface: {screen}"
    );
    // Dropped packets are reported: the blocked peer is a top source.
    assert!(
        screen.contains("top sources")
            && screen.lines().filter(|l| l.contains(&blocked)).count() >= 2,
        "{screen}"
    );
    // A small window, then a large one again: redrawn, still running.
    for (x, y) in [("60", "12"), ("20", "5"), ("160", "50")] {
        run(Command::new("tmux").args(["resize-window", "-t", &session, "-x", x, "-y", y]));
        std::thread::sleep(Duration::from_millis(1500));
        assert!(!status_file.exists(), "top ended on a resize to {x}x{y}");
        let s = tmux.capture();
        let width: usize = x.parse().unwrap();
        assert!(
            s.lines().all(|l| l.chars().count() <= width)
                && s.lines().count() <= y.parse().unwrap(),
            "drawn within {x}x{y}: {s}"
        );
    }
    eventually(5, "the redraw at full size", || {
        let s = tmux.capture();
        s.contains(lab.host_if()) && s.contains("latest blocks in force")
    });
    run(Command::new("tmux").args(["send-keys", "-t", &session, "q"]));
    eventually(5, "top exiting", || status_file.exists());
    assert_eq!(std::fs::read_to_string(&status_file).unwrap().trim(), "0");
    let _ = std::fs::remove_file(&status_file);
    drop(tmux);
    // No daemon: said plainly, before the screen is taken.
    let o = ironpost(&["--socket", "/nonexistent/ironpost.sock", "top"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("no ironpost daemon is running"),
        "{}",
        stderr(&o)
    );
    d.signal(libc::SIGTERM);
    assert!(d.finish().0.success(), "the daemon stops cleanly");
}
