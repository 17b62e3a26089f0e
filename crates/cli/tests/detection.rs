//! Detection and automatic response against real attack tools, from a
//! namespace of the test's own onto the daemon's veth: hping3 SYN floods
//! (one source, and random sources), nmap TCP SYN and UDP scans, a ping
//! flood; and ordinary traffic (an HTTP-like load loop, a DNS-like UDP
//! exchange) that must not alert.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use common::{Daemon, TempFile};
use ironpost_lab::{Lab, kernel_tests_enabled};
use serde_json::Value;

/// The floods share two cores: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// An attack tool running in the lab's namespace, killed on drop.
struct Tool(Child);

impl Tool {
    fn start(lab: &Lab, program: &str, args: &[&str]) -> Self {
        let child = Command::new("ip")
            .args(["netns", "exec", lab.ns(), program])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        Self(child)
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(lab: &Lab, name: &str, config: &str) -> (Daemon, TempFile) {
    common::start_on_lab(lab, name, config)
}

fn wait_alert(d: &Daemon, detector: &str, secs: u64) -> Value {
    d.wait_for_stdout(Duration::from_secs(secs), |v| {
        v["type"] == "alert" && v["detector"] == detector
    })
    .unwrap_or_else(|| panic!("no {detector} alert within {secs} s"))
}

/// The auto entry of `alert`, from `block list`.
fn auto_entry(d: &Daemon, alert: &Value) -> Value {
    let list = d.json(&["block", "list"]);
    list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == alert["id"])
        .cloned()
        .unwrap_or_else(|| panic!("no entry with id {} in {list}", alert["id"]))
}

/// Asserts the attacker named in `alert` is blocked: an auto entry with
/// the alert id, whose drop counter moves within a second of the alert.
/// The alert's block is in the kernel within a second: the attacker's own
/// packets are dropped, or, when the tool has already stopped sending (a
/// fast scan can end before its alert), a ping sent from its address half
/// a second after the alert is.
fn assert_blocked_within_a_second(d: &Daemon, lab: &Lab, alert: &Value, src: &str, seen: Instant) {
    assert_eq!(alert["source"], src, "{alert}");
    assert_eq!(alert["action"]["kind"], "blocked", "{alert}");
    assert_eq!(alert["action"]["block"], src, "{alert}");
    let e = auto_entry(d, alert);
    assert_eq!(e["origin"], "auto", "{e}");
    assert_eq!(e["prefix"], src, "{e}");
    assert!(e["expires"].is_string(), "{e}");
    let mut probed = false;
    loop {
        let e = auto_entry(d, alert);
        if e["packets"].as_u64().unwrap() > 0 {
            break;
        }
        // (A block limited to some traffic is left to the tool's packets.)
        if !probed && e["condition"].is_null() && seen.elapsed() >= Duration::from_millis(500) {
            probed = true;
            let replies = lab.ping(src.parse().unwrap(), 1).unwrap();
            assert_eq!(replies, 0, "a ping from {src} was answered after its block");
            continue;
        }
        assert!(
            probed || seen.elapsed() < Duration::from_secs(1),
            "no packet of {src} dropped within 1 s of the alert: {e}"
        );
        assert!(
            !probed,
            "the ping from {src} was not counted by its block: {e}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tool attacking from the lab's first peer, against a daemon of its own.
/// Fields drop in order: the tool stops first, the lab goes last.
struct Attack {
    _tool: Tool,
    d: Daemon,
    _cfg: TempFile,
    lab: Lab,
    alert: Value,
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// Starts a daemon with `config` on a new lab, runs `program` with `args`
/// and then the host address from the namespace, waits up to `secs` for an
/// alert of `detector`, and asserts the attacker was blocked within a
/// second of it.
fn attack_is_blocked(
    name: &str,
    config: &str,
    program: &str,
    args: &[&str],
    detector: &str,
    secs: u64,
) -> Attack {
    let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::new(1).unwrap();
    let (d, cfg) = start(&lab, name, config);
    let attacker = lab.peer_addr(0).to_string();
    let host = lab.host_addr().to_string();
    let mut all = args.to_vec();
    all.push(&host);
    let tool = Tool::start(&lab, program, &all);
    let alert = wait_alert(&d, detector, secs);
    let seen = Instant::now();
    assert_blocked_within_a_second(&d, &lab, &alert, &attacker, seen);
    Attack {
        _tool: tool,
        d,
        _cfg: cfg,
        lab,
        alert,
        _serial: serial,
    }
}

fn status(d: &Daemon) -> Value {
    d.json(&["status"])
}

/// Asserts the block list is empty, stops the daemon, and returns the
/// alerts it wrote other than those of `but` (a detector name).
fn no_block_then_alerts(d: Daemon, but: &str) -> Vec<Value> {
    let list = d.json(&["block", "list"]);
    assert!(list["entries"].as_array().unwrap().is_empty(), "{list}");
    d.signal(libc::SIGTERM);
    let (_, lines) = d.finish();
    lines
        .into_iter()
        .filter(|l| l["type"] == "alert" && l["detector"] != but)
        .collect()
}

/// After the traffic: no signal reached the detectors, nothing is
/// blocked, and the daemon wrote no alert by the time it stopped.
fn assert_no_alert(d: Daemon) {
    std::thread::sleep(Duration::from_millis(1200));
    let s = status(&d);
    assert_eq!(s["detection"]["detectors"]["signals"], 0, "{s}");
    let alerts = no_block_then_alerts(d, "");
    assert!(alerts.is_empty(), "{alerts:?}");
}

#[test]
fn hping3_syn_flood_from_one_source_is_blocked() {
    if !kernel_tests_enabled() {
        return;
    }
    let at = attack_is_blocked(
        "syn.toml",
        "",
        "hping3",
        &["-S", "--flood", "-p", "80", "-q"],
        "syn_flood",
        20,
    );
    let (d, a) = (&at.d, &at.alert);
    assert_eq!(a["target"], at.lab.host_addr().to_string(), "{a}");
    assert!(
        a["evidence"]["syn_only_ratio"].as_f64().unwrap() >= 0.7,
        "{a}"
    );
    assert!(a["evidence"]["syn"].as_u64().unwrap() >= 5000, "{a}");
    assert!(
        a["severity"] == "high" || a["severity"] == "critical",
        "{a}"
    );
    // While blocked, the flood is dropped and not re-alerted.
    std::thread::sleep(Duration::from_secs(1));
    let s = status(d);
    assert_eq!(
        s["detection"]["detectors"]["detectors"]["syn_flood"]["alerts"], 1,
        "{s}"
    );
    assert_eq!(s["detection"]["response"]["blocked"], 1, "{s}");
}

#[test]
fn hping3_syn_flood_from_random_sources_alerts_on_the_target() {
    if !kernel_tests_enabled() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::new(1).unwrap();
    let (d, _cfg) = start(&lab, "rand.toml", "");
    let host = lab.host_addr().to_string();
    let _t = Tool::start(
        &lab,
        "hping3",
        &["-S", "--flood", "--rand-source", "-p", "443", "-q", &host],
    );
    let a = wait_alert(&d, "syn_flood", 20);
    assert_eq!(a["source"], Value::Null, "{a}");
    assert_eq!(a["target"], format!("{host}:443"), "{a}");
    assert!(
        a["evidence"]["distinct_sources"].as_u64().unwrap() > 1000,
        "{a}"
    );
    assert_eq!(a["action"]["kind"], "none", "{a}");
    assert!(
        a["action"]["reason"].as_str().unwrap().contains("spoofed"),
        "{a}"
    );
    // Nothing was blocked, and the spoofed sources earned no per-source
    // state: they were counted and deferred by the admission sketch.
    let list = d.json(&["block", "list"]);
    assert!(list["entries"].as_array().unwrap().is_empty(), "{list}");
    std::thread::sleep(Duration::from_millis(1200));
    let s = status(&d);
    let k = &s["detection"]["kernel"];
    let deferred = k["sources_deferred"].as_u64().unwrap();
    assert!(deferred > 10_000, "{s}");
    assert!(k["sources_new"].as_u64().unwrap() < deferred / 100, "{s}");
    assert!(k["signals_lost"].is_u64(), "{s}");
}

#[test]
fn nmap_syn_scan_is_blocked() {
    if !kernel_tests_enabled() {
        return;
    }
    let at = attack_is_blocked(
        "nmap.toml",
        "",
        "nmap",
        &["-sS", "-Pn", "-n", "-T4", "-p", "1-65535"],
        "port_scan",
        30,
    );
    let a = &at.alert;
    assert!(
        a["summary"].as_str().unwrap().contains("TCP port scan"),
        "{a}"
    );
    assert!(
        a["evidence"]["distinct_ports"].as_u64().unwrap() >= 20,
        "{a}"
    );
    assert!(
        !a["evidence"]["sampled_ports"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{a}"
    );
    assert_eq!(a["evidence"]["window_secs"], 60, "{a}");
}

#[test]
fn nmap_udp_scan_is_blocked_and_written_to_the_alerts_file() {
    if !kernel_tests_enabled() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("ironpost-alerts-{}", std::process::id()));
    let file = dir.join("alerts.jsonl");
    let _ = std::fs::remove_dir_all(&dir);
    let at = attack_is_blocked(
        "udp.toml",
        &format!(
            "[daemon]\nmetrics_listen = \"127.0.0.1:0\"\n\n[detection]\nalerts_file = \"{}\"\n",
            file.display()
        ),
        "nmap",
        &[
            "-sU",
            "-Pn",
            "-n",
            "-T4",
            "--max-retries",
            "0",
            "-p",
            "1-500",
        ],
        "port_scan",
        40,
    );
    let a = &at.alert;
    assert!(
        a["summary"].as_str().unwrap().contains("UDP port scan"),
        "{a}"
    );
    // The file holds the same alert, without the stdout "type" key.
    let text = std::fs::read_to_string(&file).unwrap();
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["id"], a["id"]);
    assert!(line.get("type").is_none(), "{line}");
    // The metrics count it by detector and by severity.
    let (_, body) = common::http_get(&at.d.metrics_addr(), "/metrics");
    let severity = a["severity"].as_str().unwrap();
    let series = format!("ironpost_alerts_by_severity_total{{severity=\"{severity}\"}}");
    assert!(common::sample(&body, &series).unwrap() >= 1, "{body}");
    assert!(
        common::sample(&body, "ironpost_alerts_total{detector=\"port_scan\"}").unwrap() >= 1,
        "{body}"
    );
    drop(at);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ping_flood_is_blocked_expires_and_a_repeat_gets_a_longer_block() {
    if !kernel_tests_enabled() {
        return;
    }
    let at = attack_is_blocked(
        "ping.toml",
        "[detection.icmp_flood]\nwindow_secs = 2\nthreshold = 400\n\
         [response]\nblock_ttl_secs = 2\nescalation_factor = 2\n",
        "ping",
        &["-f", "-q", "-w", "60"],
        "icmp_flood",
        20,
    );
    let (d, first) = (&at.d, &at.alert);
    assert_eq!(first["action"]["ttl_secs"], 2, "{first}");
    assert_eq!(first["action"]["offence"], 1, "{first}");
    // The block expires; the flood resumes and is caught again, for
    // twice as long.
    let second = wait_alert(d, "icmp_flood", 20);
    assert_ne!(second["id"], first["id"]);
    assert_eq!(second["action"]["kind"], "blocked", "{second}");
    assert_eq!(second["action"]["offence"], 2, "{second}");
    assert_eq!(second["action"]["ttl_secs"], 4, "{second}");
    let list = d.json(&["block", "list"]);
    let autos: Vec<&Value> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["origin"] == "auto")
        .collect();
    assert_eq!(autos.len(), 1, "the first block expired: {list}");
    assert_eq!(autos[0]["id"], second["id"]);
}

#[test]
fn http_load_loop_and_dns_exchange_do_not_alert() {
    if !kernel_tests_enabled() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::new(1).unwrap();
    // Low SYN thresholds, so the load loop is well past them and only the
    // SYN-only ratio tells it from a flood.
    let (d, _cfg) = start(
        &lab,
        "benign.toml",
        "[detection.syn_flood]\nsource_threshold = 300\ntarget_threshold = 300\n\
         [detection.udp_flood]\nthreshold = 5000\n",
    );
    let host = lab.host_addr();
    let client = lab.peer_addr(0);

    // An HTTP-like server on the host end.
    let listener = TcpListener::bind(SocketAddrV4::new(host, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        for s in listener.incoming().take(CONNECTIONS) {
            let mut s = s.unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok");
        }
    });
    const CONNECTIONS: usize = 2000;
    let done = lab
        .in_ns(move || {
            let mut ok = 0;
            for _ in 0..CONNECTIONS {
                let mut c = TcpStream::connect(SocketAddrV4::new(host, port)).unwrap();
                c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
                let mut body = Vec::new();
                c.read_to_end(&mut body).unwrap();
                ok += usize::from(body.ends_with(b"ok"));
            }
            ok
        })
        .unwrap();
    server.join().unwrap();
    assert_eq!(done, CONNECTIONS);

    // A DNS-like exchange: queries from fresh ephemeral ports to one port,
    // answers back.
    let dns = UdpSocket::bind(SocketAddrV4::new(host, 0)).unwrap();
    let dns_port = dns.local_addr().unwrap().port();
    let responder = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        for _ in 0..QUERIES {
            let (n, from) = dns.recv_from(&mut buf).unwrap();
            dns.send_to(&buf[..n], from).unwrap();
        }
    });
    const QUERIES: usize = 2000;
    let answered = lab
        .in_ns(move || {
            let mut ok = 0;
            for i in 0..QUERIES {
                let s = UdpSocket::bind(SocketAddrV4::new(client, 0)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let q = format!("query {i} A example.test");
                s.send_to(q.as_bytes(), SocketAddrV4::new(host, dns_port))
                    .unwrap();
                let mut buf = [0u8; 512];
                if let Ok(n) = s.recv(&mut buf) {
                    ok += usize::from(&buf[..n] == q.as_bytes());
                }
            }
            ok
        })
        .unwrap();
    responder.join().unwrap();
    assert_eq!(answered, QUERIES);

    std::thread::sleep(Duration::from_millis(1200));
    let s = status(&d);
    assert_eq!(s["detection"]["kernel"]["signals"], 0, "{s}");
    assert_eq!(s["detection"]["detectors"]["signals"], 0, "{s}");
    assert!(
        s["detection"]["kernel"]["sources_new"].as_u64().unwrap() >= 1,
        "tracked: {s}"
    );
    d.signal(libc::SIGTERM);
    let (_, lines) = d.finish();
    let alerts: Vec<&Value> = lines.iter().filter(|l| l["type"] == "alert").collect();
    assert!(alerts.is_empty(), "{alerts:?}");
}

#[test]
fn hping3_udp_flood_is_blocked() {
    if !kernel_tests_enabled() {
        return;
    }
    let at = attack_is_blocked(
        "udpflood.toml",
        "",
        "hping3",
        &["--udp", "--flood", "-p", "53", "-q"],
        "udp_flood",
        20,
    );
    assert!(
        at.alert["evidence"]["count"].as_u64().unwrap() >= 10_000,
        "{}",
        at.alert
    );
}

#[test]
fn spoofed_scans_cannot_fill_the_block_list_nor_pass_the_cap() {
    if !kernel_tests_enabled() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::new(1).unwrap();
    // Room for 20 entries, half of it for automatic blocks; 15 automatic
    // blocks a minute at most.
    let (d, _cfg) = start(
        &lab,
        "spoofed-scans.toml",
        "[ebpf]\nblocklist_max_entries = 20\n[detection]\nadmit_after_packets = 1\n\
         [detection.port_scan]\ndistinct_ports = 5\n[response]\nmax_blocks_per_minute = 15\n",
    );
    let host = lab.host_addr().to_string();
    // 30 sources nobody owns, 8 SYNs each to 8 ports of their own: 30
    // port scans, sent side by side (hping3 lingers a second after its last
    // packet). Scans of the same ports at once would be one decoy scan.
    const SOURCES: usize = 30;
    let scans: Vec<Tool> = (1..=SOURCES)
        .map(|i| {
            let src = format!("10.99.0.{i}");
            let ports = format!("++{}", 2000 + 100 * i);
            let args = [
                "-q", "-S", "-a", &src, "-p", &ports, "-c", "8", "-i", "u2000", &host,
            ];
            Tool::start(&lab, "hping3", &args)
        })
        .collect();
    let alerts = std::cell::RefCell::new(Vec::new());
    d.wait_for_stdout(Duration::from_secs(20), |v| {
        if v["type"] == "alert" && v["detector"] == "port_scan" {
            alerts.borrow_mut().push(v.clone());
        }
        alerts.borrow().len() == SOURCES
    })
    .unwrap_or_else(|| panic!("{} of {SOURCES} port scan alerts", alerts.borrow().len()));
    drop(scans);
    let alerts = alerts.into_inner();
    let kind = |a: &Value| a["action"]["kind"].as_str().unwrap().to_owned();
    let blocked = alerts.iter().filter(|a| kind(a) == "blocked").count();
    assert_eq!(blocked, 15, "the cap: {alerts:?}");
    for a in alerts.iter().filter(|a| kind(a) != "blocked") {
        let reason = a["action"]["reason"].as_str().unwrap();
        assert!(reason.contains("cap reached"), "{a}");
    }
    // Of the 15 blocks, 10 remain (half of the 20 entries): the oldest went
    // (blocks made within one millisecond are equally old), never the
    // newest.
    let autos = |d: &Daemon| {
        d.json(&["block", "list"])["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["origin"] == "auto")
            .map(|e| e["prefix"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let left = autos(&d);
    assert_eq!(left.len(), 10, "{left:?}");
    let made: Vec<String> = alerts
        .iter()
        .filter(|a| kind(a) == "blocked")
        .map(|a| a["source"].as_str().unwrap().to_owned())
        .collect();
    assert!(left.iter().all(|p| made.contains(p)), "{left:?} / {made:?}");
    assert!(left.contains(&made[14]), "the newest block went: {left:?}");
    // The operator's own entries still fit.
    let manual: Vec<String> = (1..=10).map(|i| format!("192.0.2.{i}")).collect();
    let mut args = vec!["block", "add"];
    args.extend(manual.iter().map(String::as_str));
    d.ok(&args);
    let s = status(&d);
    assert_eq!(s["detection"]["response"]["capped"], 15, "{s}");
}

#[test]
fn a_syn_flood_in_a_clients_name_leaves_its_connection_alone() {
    if !kernel_tests_enabled() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::new(1).unwrap();
    let (d, _cfg) = start(&lab, "syn-in-a-name.toml", "");
    let host = lab.host_addr();
    let client = lab.peer_addr(0).to_string();
    // An echo service on the host and one connection from the client.
    let listener = TcpListener::bind(SocketAddrV4::new(host, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let (go, stop) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let echoes = scope.spawn(|| {
            lab.in_ns(move || {
                let mut c = TcpStream::connect(SocketAddrV4::new(host, port)).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let (mut sent, mut echoed) = (0, 0);
                while stop.recv_timeout(Duration::from_millis(50)).is_err() {
                    sent += 1;
                    let mut buf = [0u8; 4];
                    if c.write_all(b"ping").is_ok() && c.read_exact(&mut buf).is_ok() {
                        echoed += 1;
                    }
                }
                (sent, echoed)
            })
            .unwrap()
        });
        // Somebody floods the host with SYNs in the client's name.
        let flood = Tool::start(
            &lab,
            "hping3",
            &[
                "-S",
                "--flood",
                "-q",
                "-p",
                "80",
                "-a",
                &client,
                &host.to_string(),
            ],
        );
        let alert = wait_alert(&d, "syn_flood", 20);
        assert_eq!(alert["source"], client, "{alert}");
        assert_eq!(alert["action"]["kind"], "blocked", "{alert}");
        assert_eq!(alert["action"]["traffic"], "tcp-syn", "{alert}");
        let e = auto_entry(&d, &alert);
        assert_eq!(e["condition"], "tcp-syn", "{e}");
        // The flood's SYNs are dropped; the connection keeps echoing.
        std::thread::sleep(Duration::from_secs(2));
        drop(flood);
        assert!(auto_entry(&d, &alert)["packets"].as_u64().unwrap() > 0);
        go.send(()).unwrap();
        let (sent, echoed) = echoes.join().unwrap();
        assert!(sent > 20 && echoed == sent, "{echoed} of {sent} echoes");
    });
    // A new connection from the client is a bare SYN: dropped while the
    // block lasts.
    let refused = lab
        .in_ns(move || {
            let to = std::net::SocketAddr::from(SocketAddrV4::new(host, port));
            TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_err()
        })
        .unwrap();
    assert!(refused, "a new connection got through the SYN block");
}

/// FIN, Xmas, NULL, Maimon and ACK scans carry no bare SYN: only the host's
/// RSTs, seen on egress, give them away.
#[test]
fn nmap_scans_without_syns_are_caught_by_what_the_host_refuses() {
    if !kernel_tests_enabled() {
        return;
    }
    for scan in ["-sF", "-sX", "-sN", "-sM", "-sA"] {
        let at = attack_is_blocked(
            "stealth.toml",
            "",
            "nmap",
            &[scan, "-Pn", "-n", "-T4", "-p", "1-65535"],
            "port_scan",
            30,
        );
        let a = &at.alert;
        let summary = a["summary"].as_str().unwrap();
        assert!(summary.contains("refused"), "{scan}: {a}");
        assert!(
            a["evidence"]["distinct_ports"].as_u64().unwrap() >= 20,
            "{scan}: {a}"
        );
        let s = status(&at.d);
        assert_eq!(s["detection"]["kernel"]["signals_lost"], 0, "{scan}: {s}");
    }
}

/// A client that uses 25 services of the host (each connection accepted)
/// probes more than 20 ports, but the host's SYN-ACKs, seen on egress,
/// say it is a client: no alert, no block.
#[test]
fn a_client_of_25_services_is_not_a_scanner() {
    if !kernel_tests_enabled() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::new(1).unwrap();
    let (d, _cfg) = start(&lab, "services.toml", "");
    let host = lab.host_addr();
    let ports: Vec<u16> = (0..25)
        .map(|_| {
            let l = TcpListener::bind(SocketAddrV4::new(host, 0)).unwrap();
            let port = l.local_addr().unwrap().port();
            std::thread::spawn(move || {
                for s in l.incoming() {
                    let Ok(mut s) = s else { return };
                    let mut buf = [0u8; 16];
                    if let Ok(n) = s.read(&mut buf) {
                        let _ = s.write_all(&buf[..n]);
                    }
                }
            });
            port
        })
        .collect();
    // Three rounds of sessions to every service.
    let answered = lab
        .in_ns(move || {
            let mut ok = 0;
            for _ in 0..3 {
                for &port in &ports {
                    // Short timeouts: a blocked client fails fast.
                    let to = std::net::SocketAddr::from(SocketAddrV4::new(host, port));
                    let Ok(mut c) = TcpStream::connect_timeout(&to, Duration::from_secs(2)) else {
                        continue;
                    };
                    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut buf = [0u8; 5];
                    ok += usize::from(
                        c.write_all(b"hello").is_ok() && c.read_exact(&mut buf).is_ok(),
                    );
                }
            }
            ok
        })
        .unwrap();
    assert_eq!(answered, 75);
    assert_no_alert(d);
}

/// Echo requests at 100 a second for 15 s, as a monitoring system may send
/// them, with the default thresholds: no alert.
#[test]
fn ping_at_100_per_second_is_not_a_flood() {
    if !kernel_tests_enabled() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::new(1).unwrap();
    let (d, _cfg) = start(&lab, "ping100.toml", "");
    let host = lab.host_addr().to_string();
    let out = Command::new("ip")
        .args(["netns", "exec", lab.ns(), "ping", "-q", "-n", "-i", "0.01"])
        .args(["-c", "1500", &host])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1500 received"), "{text}");
    let s = status(&d);
    assert_eq!(s["detection"]["detectors"]["signals"], 0, "{s}");
    d.signal(libc::SIGTERM);
    let (_, lines) = d.finish();
    let alerts: Vec<&Value> = lines.iter().filter(|l| l["type"] == "alert").collect();
    assert!(alerts.is_empty(), "{alerts:?}");
}

/// ACK segments that no connection knows are answered with RSTs without
/// ACK: the egress watcher counts them, and the block drops the source's
/// TCP to the port it flooded, nothing else.
#[test]
fn hping3_ack_flood_is_blocked_on_the_port_it_hit() {
    if !kernel_tests_enabled() {
        return;
    }
    let at = attack_is_blocked(
        "ackflood.toml",
        "",
        "hping3",
        &["-A", "--flood", "-p", "8080", "-q"],
        "ack_flood",
        20,
    );
    let a = &at.alert;
    assert!(a["evidence"]["count"].as_u64().unwrap() >= 5000, "{a}");
    assert_eq!(a["action"]["traffic"], "tcp/8080", "{a}");
    assert_eq!(auto_entry(&at.d, a)["condition"], "tcp/8080");
}

#[test]
fn hping3_rst_flood_is_blocked_by_its_rsts() {
    if !kernel_tests_enabled() {
        return;
    }
    let at = attack_is_blocked(
        "rstflood.toml",
        "",
        "hping3",
        &["-R", "--flood", "-p", "80", "-q"],
        "rst_flood",
        20,
    );
    let a = &at.alert;
    assert!(a["evidence"]["count"].as_u64().unwrap() >= 5000, "{a}");
    assert_eq!(auto_entry(&at.d, a)["condition"], "tcp-rst");
}

/// ACK and RST floods from random sources: no source earns state, so each
/// shows on the address it hits (the ACKs by the RSTs the host sends back,
/// seen on egress; the RSTs on ingress), as one alert that blocks nobody.
#[test]
fn hping3_spoofed_ack_and_rst_floods_alert_on_their_target_and_block_nobody() {
    if !kernel_tests_enabled() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::new(1).unwrap();
    let (d, _cfg) = start(&lab, "spoofed-ack-rst.toml", "");
    let host = lab.host_addr().to_string();
    for (flag, detector) in [("-A", "ack_flood"), ("-R", "rst_flood")] {
        let t = Tool::start(
            &lab,
            "hping3",
            &[flag, "--flood", "--rand-source", "-p", "8080", "-q", &host],
        );
        let a = wait_alert(&d, detector, 20);
        drop(t);
        assert_eq!(a["source"], Value::Null, "{a}");
        assert_eq!(a["target"], host, "{a}");
        assert!(a["evidence"]["count"].as_u64().unwrap() >= 50_000, "{a}");
        assert!(
            a["evidence"]["distinct_sources"].as_u64().unwrap() > 1000,
            "{a}"
        );
        assert_eq!(a["action"]["kind"], "none", "{a}");
    }
    let list = d.json(&["block", "list"]);
    assert!(list["entries"].as_array().unwrap().is_empty(), "{list}");
}

/// A host group lowers the UDP target threshold of the lab host's address
/// to 1,000 (the detector's stays at 100,000): 3,000 spoofed datagrams are
/// one alert naming the group; nobody is blocked.
#[test]
fn a_host_group_sets_its_address_target_threshold() {
    if !kernel_tests_enabled() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::new(1).unwrap();
    let host = lab.host_addr().to_string();
    let (d, _cfg) = start(
        &lab,
        "groups.toml",
        &format!(
            "[[detection.host_groups]]\nname = \"dns\"\nprefixes = [\"{host}\"]\n\
             udp_target_threshold = 1000\n"
        ),
    );
    let mut t = Tool::start(
        &lab,
        "hping3",
        &[
            "-2",
            "--rand-source",
            "-c",
            "3000",
            "-i",
            "u200",
            "-p",
            "53",
            "-q",
            &host,
        ],
    );
    let a = wait_alert(&d, "udp_flood", 20);
    let _ = t.0.wait();
    assert_eq!(a["source"], Value::Null, "{a}");
    assert_eq!(a["target"], host, "{a}");
    assert_eq!(a["evidence"]["threshold"], 1000, "{a}");
    assert!(a["evidence"]["count"].as_u64().unwrap() >= 1000, "{a}");
    assert!(
        a["summary"].as_str().unwrap().contains("(host group dns)"),
        "{a}"
    );
    let list = d.json(&["block", "list"]);
    assert!(list["entries"].as_array().unwrap().is_empty(), "{list}");
}

/// A UDP flood from random sources: each source sends one packet and earns
/// no state; the flood shows on its target, which is named in one alert,
/// and nobody is blocked.
#[test]
fn hping3_spoofed_udp_flood_alerts_on_its_target_and_blocks_nobody() {
    if !kernel_tests_enabled() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::new(1).unwrap();
    let (d, _cfg) = start(&lab, "udprand.toml", "");
    let host = lab.host_addr().to_string();
    let _t = Tool::start(
        &lab,
        "hping3",
        &["-2", "--flood", "--rand-source", "-p", "53", "-q", &host],
    );
    let a = wait_alert(&d, "udp_flood", 20);
    assert_eq!(a["source"], Value::Null, "{a}");
    assert_eq!(a["target"], host, "{a}");
    assert!(a["evidence"]["count"].as_u64().unwrap() >= 100_000, "{a}");
    assert!(
        a["evidence"]["distinct_sources"].as_u64().unwrap() > 1000,
        "{a}"
    );
    assert_eq!(a["action"]["kind"], "none", "{a}");
    let list = d.json(&["block", "list"]);
    assert!(list["entries"].as_array().unwrap().is_empty(), "{list}");
    // One alert for the window, however long the flood goes on.
    std::thread::sleep(Duration::from_secs(2));
    let s = status(&d);
    assert_eq!(
        s["detection"]["detectors"]["detectors"]["udp_flood"]["alerts"], 1,
        "{s}"
    );
}

/// With the defaults: a request/response client at 5,000 queries a second
/// and an iperf3 UDP test at 1 Gbit/s (with its TCP control connection)
/// raise nothing and lose nothing to Ironpost.
#[test]
fn busy_udp_clients_are_not_floods() {
    if !kernel_tests_enabled() {
        return;
    }
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::new(1).unwrap();
    let (d, _cfg) = start(&lab, "busyudp.toml", "");
    let host = lab.host_addr();
    let client = lab.peer_addr(0);

    // 5,000 queries a second for 4 s, paced, one socket, each answered.
    let server = UdpSocket::bind(SocketAddrV4::new(host, 0)).unwrap();
    let port = server.local_addr().unwrap().port();
    server
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let responder = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        let mut n_answered = 0u32;
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            if server.send_to(&buf[..n], from).is_ok() {
                n_answered += 1;
            }
        }
        n_answered
    });
    const RATE: u32 = 5_000;
    const QUERIES: u32 = RATE * 4;
    let answered = lab
        .in_ns(move || {
            let s = UdpSocket::bind(SocketAddrV4::new(client, 0)).unwrap();
            s.connect(SocketAddrV4::new(host, port)).unwrap();
            s.set_nonblocking(true).unwrap();
            let start = Instant::now();
            let (mut sent, mut got) = (0u32, 0u32);
            let mut buf = [0u8; 512];
            while got < QUERIES && start.elapsed() < Duration::from_secs(10) {
                // Send what the schedule says is due, then read answers.
                let due = (start.elapsed().as_micros() as u64 * u64::from(RATE) / 1_000_000)
                    .min(u64::from(QUERIES)) as u32;
                while sent < due {
                    if s.send(format!("query {sent}").as_bytes()).is_err() {
                        break;
                    }
                    sent += 1;
                }
                while s.recv(&mut buf).is_ok() {
                    got += 1;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            (sent, got, start.elapsed())
        })
        .unwrap();
    let (sent, got, took) = answered;
    assert_eq!(sent, QUERIES);
    assert!(
        got >= QUERIES * 99 / 100,
        "{got} of {sent} queries answered in {took:?}"
    );
    assert!(responder.join().unwrap() >= got);

    // iperf3: a UDP test at 1 Gbit/s for 3 s, its control over TCP.
    let mut server = Command::new("iperf3")
        .args(["-s", "-1", "-B", &host.to_string(), "-p", "5201"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 (cargo xtask setup installs it)");
    std::thread::sleep(Duration::from_millis(500));
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            lab.ns(),
            "iperf3",
            "-u",
            "-b",
            "1G",
            "-t",
            "3",
        ])
        .args(["-c", &host.to_string(), "-p", "5201", "--json"])
        .output()
        .unwrap();
    let _ = server.wait();
    assert!(
        out.status.success(),
        "iperf3 failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sum = &report["end"]["sum"];
    eprintln!(
        "iperf3 UDP: {:.0} Mbit/s, {} datagrams, {} lost",
        sum["bits_per_second"].as_f64().unwrap_or(0.0) / 1e6,
        sum["packets"],
        sum["lost_packets"]
    );

    assert_no_alert(d);
}

/// `nmap -D`: every probe comes from the scanner and from three decoys
/// (here real addresses of the lab, which answer the host's SYN-ACKs with
/// RSTs as real decoy hosts would). One decoy_scan alert lists the four
/// sources; none is blocked, and no other alert is raised.
#[test]
fn nmap_decoy_scan_is_one_alert_that_blocks_nobody() {
    if !kernel_tests_enabled() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::new(4).unwrap();
    let (d, _cfg) = start(&lab, "decoy.toml", "");
    let me = lab.peer_addr(0).to_string();
    let decoys: Vec<String> = (1..4).map(|i| lab.peer_addr(i).to_string()).collect();
    let host = lab.host_addr().to_string();
    let out = lab
        .exec(
            "nmap",
            &[
                "-sS",
                "-Pn",
                "-n",
                "-T4",
                "-p",
                "1-300",
                "-e",
                lab.peer_if(),
                "-S",
                &me,
                "-D",
                &decoys.join(","),
                &host,
            ],
        )
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let a = wait_alert(&d, "decoy_scan", 10);
    assert_eq!(a["source"], Value::Null, "{a}");
    assert_eq!(a["target"], host, "{a}");
    assert_eq!(a["action"]["kind"], "none", "{a}");
    assert!(
        a["action"]["reason"].as_str().unwrap().contains("decoy"),
        "{a}"
    );
    let listed: Vec<&str> = a["evidence"]["sampled_sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for src in decoys.iter().chain([&me]) {
        assert!(listed.contains(&src.as_str()), "{src} not in {a}");
    }
    std::thread::sleep(Duration::from_secs(1));
    let others = no_block_then_alerts(d, "decoy_scan");
    assert!(others.is_empty(), "{others:?}");
}

/// A slow scan: one probe every 1.5 s never earns per-source tracking (it
/// takes 4 packets within an admission epoch of about 4.3 s), so the fast
/// tiers never see it; the slow tier counts the host's refusals over its
/// long window (threshold shortened to 8 ports for the test).
#[test]
fn a_slow_scan_is_caught_by_the_long_horizon_tier() {
    if !kernel_tests_enabled() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::new(1).unwrap();
    let (d, _cfg) = start(
        &lab,
        "slow.toml",
        "[detection.slow_scan]\ndistinct_ports = 8\n",
    );
    let attacker = lab.peer_addr(0).to_string();
    let host = lab.host_addr().to_string();
    let started = Instant::now();
    let _scan = Tool::start(
        &lab,
        "nmap",
        &[
            "-sS",
            "-Pn",
            "-n",
            "--scan-delay",
            "1500ms",
            "--max-retries",
            "0",
            "-p",
            "1-60",
            &host,
        ],
    );
    let a = wait_alert(&d, "port_scan", 60);
    let took = started.elapsed();
    let summary = a["summary"].as_str().unwrap();
    assert!(summary.starts_with("slow TCP port scan"), "{a}");
    assert_eq!(a["source"], attacker, "{a}");
    assert_eq!(a["evidence"]["window_secs"], 600, "{a}");
    assert!(a["evidence"]["count"].as_u64().unwrap() >= 8, "{a}");
    assert_eq!(a["action"]["kind"], "blocked", "{a}");
    // Eight probes 1.5 s apart: about 11 s, never the 60 s of a fast
    // window.
    assert!(took < Duration::from_secs(30), "caught after {took:?}");
    // The next probe, 1.5 s later, is dropped.
    let seen = Instant::now();
    while auto_entry(&d, &a)["packets"].as_u64().unwrap() == 0 {
        assert!(
            seen.elapsed() < Duration::from_secs(4),
            "no probe dropped after the block"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = status(&d);
    assert_eq!(s["detection"]["kernel"]["sources_new"], 0, "{s}");
}

/// Ten addresses probe five ports of the host each: none is a port scan on
/// its own; together they are one distributed_scan alert on the host,
/// with a sample of the sources, and nobody is blocked.
#[test]
fn ten_sources_five_ports_each_are_one_distributed_scan() {
    if !kernel_tests_enabled() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::new(10).unwrap();
    let (d, _cfg) = start(&lab, "distributed.toml", "");
    let host = lab.host_addr().to_string();
    for i in 0..10u16 {
        let src = lab.peer_addr(usize::from(i)).to_string();
        let first = 3000 + i * 5;
        let ports = format!("{}-{}", first, first + 4);
        let out = lab
            .exec(
                "nmap",
                &[
                    "-sS",
                    "-Pn",
                    "-n",
                    "-e",
                    lab.peer_if(),
                    "-S",
                    &src,
                    "-p",
                    &ports,
                    &host,
                ],
            )
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let a = wait_alert(&d, "distributed_scan", 10);
    assert_eq!(a["source"], Value::Null, "{a}");
    assert_eq!(a["target"], host, "{a}");
    assert_eq!(a["action"]["kind"], "none", "{a}");
    assert!(
        a["evidence"]["distinct_ports"].as_u64().unwrap() >= 30,
        "{a}"
    );
    let sampled = a["evidence"]["sampled_sources"].as_array().unwrap();
    assert!(!sampled.is_empty(), "{a}");
    let peers: Vec<String> = (0..10).map(|i| lab.peer_addr(i).to_string()).collect();
    assert!(
        sampled
            .iter()
            .all(|s| peers.contains(&s.as_str().unwrap().to_owned())),
        "{a}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let others = no_block_then_alerts(d, "distributed_scan");
    assert!(others.is_empty(), "{others:?}");
}

/// `nmap -sO` probes IP protocols: the host's protocol unreachables are
/// rate-limited by the kernel (about one a second), so the count is the
/// probes' distinct protocols besides TCP, UDP and ICMP, on ingress.
#[test]
fn nmap_ip_protocol_scan_is_blocked() {
    if !kernel_tests_enabled() {
        return;
    }
    let at = attack_is_blocked(
        "protoscan.toml",
        "",
        "nmap",
        &["-sO", "-Pn", "-n", "-T4"],
        "port_scan",
        30,
    );
    let a = &at.alert;
    assert!(
        a["summary"]
            .as_str()
            .unwrap()
            .starts_with("IP protocol scan"),
        "{a}"
    );
    assert!(a["evidence"]["count"].as_u64().unwrap() >= 8, "{a}");
}

/// An HTTP-like load from 30 client addresses, 100 connections each, with
/// the default thresholds: no alert, no block.
#[test]
fn http_load_from_30_clients_does_not_alert() {
    if !kernel_tests_enabled() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    const CLIENTS: usize = 30;
    const EACH: usize = 100;
    let lab = Lab::new(CLIENTS).unwrap();
    let (d, _cfg) = start(&lab, "http30.toml", "");
    let host = lab.host_addr();
    let listener = TcpListener::bind(SocketAddrV4::new(host, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        for s in listener.incoming().take(CLIENTS * EACH) {
            let mut s = s.unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok");
        }
    });
    let clients: Vec<std::net::Ipv4Addr> = (0..CLIENTS).map(|i| lab.peer_addr(i)).collect();
    let done = lab
        .in_ns(move || {
            let to = socket2::SockAddr::from(SocketAddrV4::new(host, port));
            let mut ok = 0;
            // Round-robin over the clients, as a load generator would.
            for _ in 0..EACH {
                for &client in &clients {
                    let sock =
                        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                            .unwrap();
                    sock.bind(&SocketAddrV4::new(client, 0).into()).unwrap();
                    sock.connect(&to).unwrap();
                    let mut c: TcpStream = sock.into();
                    c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
                    let mut body = Vec::new();
                    c.read_to_end(&mut body).unwrap();
                    ok += usize::from(body.ends_with(b"ok"));
                }
            }
            ok
        })
        .unwrap();
    server.join().unwrap();
    assert_eq!(done, CLIENTS * EACH);
    assert_no_alert(d);
}

/// `nmap -f` splits each probe's TCP header over 8-byte fragments: the
/// datapath drops the tiny first fragments (the ports rule never sees a
/// header), and counts them against their source: a scan hidden in
/// fragments is a port scan, blocked.
#[test]
fn nmap_fragmented_scan_is_blocked() {
    if !kernel_tests_enabled() {
        return;
    }
    let at = attack_is_blocked(
        "fragscan.toml",
        "",
        "nmap",
        &["-sS", "-f", "-Pn", "-n", "-T4", "-p", "1-65535"],
        "port_scan",
        30,
    );
    let a = &at.alert;
    assert!(
        a["summary"]
            .as_str()
            .unwrap()
            .contains("hidden in fragments"),
        "{a}"
    );
    assert!(a["evidence"]["count"].as_u64().unwrap() >= 20, "{a}");
}

/// A bytes threshold: with UDP floods at 100,000 packets or 2 MB per
/// source per window, a client sending 2.8 MB in 2,000 datagrams is a
/// flood by its bytes; one sending 500 small datagrams is nothing.
#[test]
fn a_udp_flood_is_also_counted_in_bytes() {
    if !kernel_tests_enabled() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::new(2).unwrap();
    let host = lab.host_addr();
    let (d, _cfg) = start(
        &lab,
        "udpbytes.toml",
        "[detection.udp_flood]\nthreshold = 100000\nbytes_threshold = 2000000\n",
    );
    let (small, bulk) = (lab.peer_addr(0), lab.peer_addr(1));
    let send = |from: std::net::Ipv4Addr, count: usize, size: usize| {
        lab.in_ns(move || {
            let sock = UdpSocket::bind(SocketAddrV4::new(from, 0)).unwrap();
            let payload = vec![0x5a; size];
            for i in 0..count {
                sock.send_to(&payload, SocketAddrV4::new(host, 9999))
                    .unwrap();
                if i % 100 == 99 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        })
        .unwrap();
    };
    send(small, 500, 32);
    send(bulk, 2000, 1400);
    let b = d
        .wait_for_stdout(Duration::from_secs(10), |v| {
            v["type"] == "alert" && v["source"] == bulk.to_string()
        })
        .expect("no alert for the bulk sender");
    assert_eq!(b["detector"], "udp_flood", "{b}");
    assert_eq!(b["evidence"]["threshold"], 2_000_000, "{b}");
    let bytes = b["evidence"]["bytes"].as_u64().unwrap();
    assert!(bytes >= 2_000_000, "{b}");
    assert_eq!(b["evidence"]["count"], bytes, "{b}");
    d.signal(libc::SIGTERM);
    let (_, lines) = d.finish();
    let stray: Vec<&Value> = lines
        .iter()
        .filter(|l| l["type"] == "alert" && l["source"] == small.to_string())
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}
