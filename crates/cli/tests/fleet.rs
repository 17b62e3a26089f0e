//! Fleet mode for real: nats-server with JetStream on 127.0.0.1 (scratch
//! store folders) and daemons on labs of their own, sharing blocks.

mod common;

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::*;
use ironpost_lab::{Lab, kernel_tests_enabled};

/// Waits up to `secs` for `f` to hold; returns how long it took.
fn eventually(secs: f64, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs_f64(secs),
            "{what}: not within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A nats-server with JetStream, killed (its store removed) on drop.
struct Nats {
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Nats {
    fn start(name: &str, extra: &[String]) -> Self {
        let dir = std::env::temp_dir().join(format!("ironpost-nats-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut n = Self {
            port: free_port(),
            dir,
            extra: extra.to_vec(),
            child: None,
        };
        n.restart();
        n
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server (setup installs it)");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        eventually(10.0, "nats-server listening", || {
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

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fleet_config(servers: &[String], host: &str, extra: &str) -> String {
    let servers: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "[daemon]\nmetrics_listen = \"127.0.0.1:0\"\n\n[fleet]\nservers = [{}]\nname = \
         \"test\"\nhost = \"{host}\"\nshare_lists = [\"shared\"]\n{extra}",
        servers.join(", ")
    )
}

/// The entry of `addr` in `d`'s block list, if any.
fn entry(d: &Daemon, addr: &str) -> Option<serde_json::Value> {
    let v = d.json(&["block", "list"]);
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["prefix"] == addr)
        .cloned()
}

fn in_fleet_list(d: &Daemon, addr: &str) -> bool {
    entry(d, addr).is_some_and(|e| e["list"] == "fleet")
}

/// Stops the daemons with SIGTERM; each must exit cleanly.
fn stop_all<const N: usize>(daemons: [Daemon; N]) {
    for d in daemons {
        d.signal(libc::SIGTERM);
        assert!(d.finish().0.success(), "the daemon stops cleanly");
    }
}

fn wait_connected(d: &Daemon) {
    eventually(15.0, "the fleet connected", || {
        d.json(&["status"])["fleet"]["connected"] == true
    });
}

#[test]
fn a_flood_on_one_host_is_blocked_by_the_others_and_a_host_that_was_away_catches_up() {
    if !kernel_tests_enabled() {
        return;
    }
    let nats = Nats::start("one", &[]);
    let servers = [nats.url()];
    let (la, lb, lc) = (
        Lab::new(1).unwrap(),
        Lab::new(1).unwrap(),
        Lab::new(1).unwrap(),
    );
    let (a, _ca) = start_on_lab(&la, "fleet-a.toml", &fleet_config(&servers, "a", ""));
    let (b, _cb) = start_on_lab(&lb, "fleet-b.toml", &fleet_config(&servers, "b", ""));
    let cfg_c = fleet_config(&servers, "c", "");
    let (c, cc) = start_on_lab(&lc, "fleet-c.toml", &cfg_c);
    for d in [&a, &b, &c] {
        wait_connected(d);
    }
    // A SYN flood from A's lab peer into A: A blocks it, B and C follow.
    let attacker = la.peer_addr(0).to_string();
    let target = la.host_addr().to_string();
    let flood = la.exec(
        "timeout",
        &["4", "hping3", "-S", "--flood", "-p", "80", "-q", &target],
    );
    drop(flood);
    eventually(10.0, "A's own block", || {
        entry(&a, &attacker).is_some_and(|e| e["list"] == "auto")
    });
    let took_b = eventually(1.0, "B following A's block", || {
        in_fleet_list(&b, &attacker)
    });
    let took_c = eventually(1.0, "C following A's block", || {
        in_fleet_list(&c, &attacker)
    });
    eprintln!("A's block reached B after {took_b:?}, C after {took_c:?} (as the test polls)");
    let eb = entry(&b, &attacker).unwrap();
    assert!(
        eb["reason"].as_str().unwrap().starts_with("fleet host a:"),
        "A as its origin: {eb}"
    );
    // Only the flood's own traffic (bare SYNs), as on A.
    let ea = entry(&a, &attacker).unwrap();
    assert_eq!(eb["condition"], ea["condition"], "{ea} {eb}");
    assert!(eb["expires_in_secs"].as_f64().unwrap() > 0.0, "{eb}");
    // What B learned, B does not publish again: nothing from B in the fleet.
    assert_eq!(b.json(&["status"])["fleet"]["published"], 0);

    // C goes away; A raises two blocks, one of which expires meanwhile.
    c.signal(libc::SIGTERM);
    let (_, c_dir) = c.wait_keeping_dir();
    a.ok(&[
        "block",
        "add",
        "192.0.2.10",
        "--list",
        "shared",
        "--ttl",
        "1h",
    ]);
    a.ok(&[
        "block",
        "add",
        "192.0.2.11",
        "--list",
        "shared",
        "--ttl",
        "1h",
    ]);
    a.ok(&[
        "block",
        "add",
        "192.0.2.12",
        "--list",
        "shared",
        "--ttl",
        "2s",
    ]);
    eventually(2.0, "B following the shared list", || {
        in_fleet_list(&b, "192.0.2.10") && in_fleet_list(&b, "192.0.2.12")
    });
    std::thread::sleep(Duration::from_secs(3));
    let mut args = run_on(&lc).to_vec();
    args.extend_from_slice(&["-c", cc.path()]);
    let c = Daemon::start_in(c_dir, &args);
    c.wait_for_stderr("ready:");
    eventually(10.0, "C catching up", || {
        in_fleet_list(&c, "192.0.2.10") && in_fleet_list(&c, "192.0.2.11")
    });
    assert!(
        entry(&c, "192.0.2.12").is_none(),
        "an expired block is not applied"
    );
    assert!(
        in_fleet_list(&c, &attacker),
        "A's automatic block, read at the start"
    );
    // A withdraws one: the others let it go.
    a.ok(&["block", "del", "192.0.2.10", "--list", "shared"]);
    eventually(2.0, "the withdrawal", || {
        entry(&b, "192.0.2.10").is_none() && entry(&c, "192.0.2.10").is_none()
    });
    stop_all([a, b, c]);
}

#[test]
fn with_nats_down_protection_goes_on_and_the_backlog_is_published_when_it_returns() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut nats = Nats::start("down", &[]);
    let servers = [nats.url()];
    let (la, lb) = (Lab::new(1).unwrap(), Lab::new(1).unwrap());
    let (a, _ca) = start_on_lab(&la, "fleet-down-a.toml", &fleet_config(&servers, "a", ""));
    let (b, _cb) = start_on_lab(&lb, "fleet-down-b.toml", &fleet_config(&servers, "b", ""));
    wait_connected(&a);
    wait_connected(&b);
    nats.stop();
    eventually(15.0, "A seeing the fleet gone", || {
        a.json(&["status"])["fleet"]["connected"] == false
    });
    // Local protection as before: detection and its automatic block, a
    // manual block and its drop.
    let attacker = la.peer_addr(0).to_string();
    let target = la.host_addr().to_string();
    let _ = la.exec(
        "timeout",
        &["4", "hping3", "-S", "--flood", "-p", "80", "-q", &target],
    );
    eventually(10.0, "A's automatic block with NATS down", || {
        entry(&a, &attacker).is_some_and(|e| e["list"] == "auto")
    });
    a.ok(&[
        "block",
        "add",
        "192.0.2.40",
        "--list",
        "shared",
        "--ttl",
        "1h",
    ]);
    assert!(entry(&a, "192.0.2.40").is_some());
    // The automatic block, the alert and the manual block wait.
    eventually(5.0, "the backlog in status", || {
        a.json(&["status"])["fleet"]["backlog"].as_u64().unwrap() >= 3
    });
    let (_, body) = http_get(&a.metrics_addr(), "/metrics");
    assert_eq!(sample(&body, "ironpost_fleet_connected"), Some(0), "{body}");
    // Back: the backlog goes out and B applies it.
    nats.restart();
    eventually(40.0, "B applying A's backlog", || {
        in_fleet_list(&b, &attacker) && in_fleet_list(&b, "192.0.2.40")
    });
    eventually(5.0, "A's backlog empty", || {
        a.json(&["status"])["fleet"]["backlog"] == 0
    });
    stop_all([a, b]);
}

#[test]
fn wrong_credentials_are_said_and_local_protection_goes_on() {
    if !kernel_tests_enabled() {
        return;
    }
    let nats = Nats::start(
        "auth",
        &[
            "--user".into(),
            "ironpost".into(),
            "--pass".into(),
            "right".into(),
        ],
    );
    let lab = Lab::new(1).unwrap();
    let cfg = fleet_config(
        &[nats.url()],
        "a",
        "user = \"ironpost\"\npassword = \"wrong\"\n",
    );
    let (d, _c) = start_on_lab(&lab, "fleet-auth.toml", &cfg);
    d.said("refused the credentials");
    let s = d.json(&["status"]);
    assert_eq!(s["fleet"]["connected"], false, "{s}");
    assert!(
        s["fleet"]["error"]
            .as_str()
            .unwrap()
            .contains("credentials"),
        "{s}"
    );
    let peer = lab.peer_addr(0).to_string();
    d.ok(&["block", "add", &peer]);
    assert_eq!(lab.ping(lab.peer_addr(0), 1).unwrap(), 0);
    stop_all([d]);
}

#[test]
fn a_three_node_jetstream_cluster_carries_blocks_with_one_node_down() {
    if !kernel_tests_enabled() {
        return;
    }
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let route_urls: Vec<String> = routes
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect();
    let mut nodes: Vec<Nats> = (0..3)
        .map(|i| {
            let others: Vec<&str> = route_urls
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, u)| u.as_str())
                .collect();
            Nats::start(
                &format!("node{i}"),
                &[
                    "-n".into(),
                    format!("node{i}"),
                    "--cluster_name".into(),
                    "ironpost-test".into(),
                    "--cluster".into(),
                    route_urls[i].clone(),
                    "--routes".into(),
                    others.join(","),
                ],
            )
        })
        .collect();
    let servers: Vec<String> = nodes.iter().map(Nats::url).collect();
    let (la, lb) = (Lab::new(1).unwrap(), Lab::new(1).unwrap());
    let (a, _ca) = start_on_lab(
        &la,
        "fleet-cluster-a.toml",
        &fleet_config(&servers, "a", "replicas = 3\n"),
    );
    let (b, _cb) = start_on_lab(
        &lb,
        "fleet-cluster-b.toml",
        &fleet_config(&servers, "b", "replicas = 3\n"),
    );
    // The cluster elects its JetStream leader first: the daemons retry.
    eventually(60.0, "both following the cluster", || {
        a.ok(&[
            "block",
            "add",
            "192.0.2.20",
            "--list",
            "shared",
            "--ttl",
            "1h",
        ]);
        in_fleet_list(&b, "192.0.2.20")
    });
    // One node goes; the other two still carry blocks both ways.
    nodes[0].stop();
    a.ok(&[
        "block",
        "add",
        "192.0.2.21",
        "--list",
        "shared",
        "--ttl",
        "1h",
    ]);
    b.ok(&[
        "block",
        "add",
        "192.0.2.22",
        "--list",
        "shared",
        "--ttl",
        "1h",
    ]);
    eventually(30.0, "blocks with a node down", || {
        in_fleet_list(&b, "192.0.2.21") && in_fleet_list(&a, "192.0.2.22")
    });
    stop_all([a, b]);
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (setup installs it)");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn tls_with_a_ca_and_nkey_credentials_carry_blocks() {
    if !kernel_tests_enabled() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("ironpost-fleet-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A CA of the test's own, and a certificate for 127.0.0.1 it signs.
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=ironpost test CA",
        ],
    );
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ],
    );
    // One user, known by its NKey.
    let user = nkeys::KeyPair::new_user();
    let seed_file = dir.join("user.nk");
    std::fs::write(&seed_file, user.seed().unwrap()).unwrap();
    let conf = dir.join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\ntls {{ cert_file: \"{}\", \
             key_file: \"{}\" }}\n",
            user.public_key(),
            dir.join("server.pem").display(),
            dir.join("server.key").display()
        ),
    )
    .unwrap();
    let nats = Nats::start("tls", &["-c".into(), conf.display().to_string()]);
    let servers = [format!("tls://127.0.0.1:{}", nats.port)];
    let secure = format!(
        "nkey_seed_file = \"{}\"\ntls_ca = \"{}\"\n",
        seed_file.display(),
        dir.join("ca.pem").display()
    );
    let (la, lb) = (Lab::new(1).unwrap(), Lab::new(1).unwrap());
    let (a, _ca) = start_on_lab(
        &la,
        "fleet-tls-a.toml",
        &fleet_config(&servers, "a", &secure),
    );
    let (b, _cb) = start_on_lab(
        &lb,
        "fleet-tls-b.toml",
        &fleet_config(&servers, "b", &secure),
    );
    wait_connected(&a);
    wait_connected(&b);
    a.ok(&[
        "block",
        "add",
        "192.0.2.30",
        "--list",
        "shared",
        "--ttl",
        "1h",
    ]);
    eventually(5.0, "the block over TLS", || {
        in_fleet_list(&b, "192.0.2.30")
    });
    // Without the CA the server's certificate is not trusted: said.
    let lc = Lab::new(1).unwrap();
    let (c, _cc) = start_on_lab(
        &lc,
        "fleet-tls-c.toml",
        &fleet_config(
            &servers,
            "c",
            &format!("nkey_seed_file = \"{}\"\n", seed_file.display()),
        ),
    );
    c.said("fleet: cannot connect");
    assert_eq!(c.json(&["status"])["fleet"]["connected"], false);
    stop_all([a, b, c]);
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Publishes `body` on `subject` with the plain NATS protocol, as any
/// client with the fleet's credentials could.
fn raw_publish(nats: &Nats, subject: &str, body: &str) {
    use std::io::{BufRead as _, BufReader, Write as _};
    let s = std::net::TcpStream::connect(("127.0.0.1", nats.port)).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("INFO"), "{line}");
    let mut w = s;
    write!(
        w,
        "CONNECT {{\"verbose\":false}}\r\nPUB {subject} {}\r\n{body}\r\nPING\r\n",
        body.len()
    )
    .unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("PONG"), "{line}");
}

#[test]
fn a_forged_block_on_every_address_or_on_the_hosts_own_is_not_applied() {
    if !kernel_tests_enabled() {
        return;
    }
    let nats = Nats::start("forged", &[]);
    let lab = Lab::new(1).unwrap();
    let (b, _cb) = start_on_lab(
        &lab,
        "fleet-forged.toml",
        &fleet_config(&[nats.url()], "b", ""),
    );
    wait_connected(&b);
    let own = lab.host_addr().to_string();
    for (token, prefix) in [
        ("0_0_0_0/0", "0.0.0.0/0"),
        (own.replace('.', "_").as_str(), own.as_str()),
        ("192_0_2_50", "192.0.2.50"),
    ] {
        raw_publish(
            &nats,
            &format!("ironpost.test.blocks.evil.{token}"),
            &format!(
                "{{\"v\":1,\"host\":\"evil\",\"prefix\":\"{prefix}\",\"block\":{{\"reason\":\"forged\"}}}}"
            ),
        );
    }
    // Absurd values: not JSON, an expiry at the end of time, a reason of
    // 200 KB with escape sequences.
    raw_publish(&nats, "ironpost.test.blocks.evil.junk", "\u{0}not json");
    raw_publish(
        &nats,
        "ironpost.test.blocks.evil.192_0_2_51",
        &format!(
            "{{\"v\":1,\"host\":\"evil\",\"prefix\":\"192.0.2.51\",\"block\":{{\"reason\":\"{}\",\
             \"expires_ms\":18446744073709551615}}}}",
            "\\u001b[31m".repeat(20_000)
        ),
    );
    eventually(5.0, "the ordinary block", || {
        in_fleet_list(&b, "192.0.2.50")
    });
    eventually(5.0, "the absurd but valid block", || {
        in_fleet_list(&b, "192.0.2.51")
    });
    let e = entry(&b, "192.0.2.51").unwrap();
    assert!(
        e["reason"].as_str().unwrap().len() < 1024,
        "reason kept short"
    );
    assert!(entry(&b, "0.0.0.0/0").is_none(), "every address");
    assert!(entry(&b, &own).is_none(), "the host's own address");
    assert_eq!(
        lab.ping(lab.peer_addr(0), 1).unwrap(),
        1,
        "traffic still passes"
    );
    stop_all([b]);
}
