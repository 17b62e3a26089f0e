//! Fragments and IPv6 extension headers against a running daemon, with the
//! real tools an attacker would use: nmap's and hping3's fragmented SYNs
//! must meet the port and address rules as whole datagrams would, and
//! scapy-built IPv6 frames with each extension header must meet the port
//! rules and the detectors as plain TCP would.

mod common;

use std::{net::TcpListener, process::Command, sync::Mutex, time::Duration};

use common::{Daemon, TempFile};
use ironpost_lab::{Lab, kernel_tests_enabled};
use serde_json::Value;

/// The tools share two cores: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const PORT_RULE: &str =
    "[[ebpf.rules]]\nid = \"no-8099\"\nprotocol = \"tcp\"\ndst_port = 8099\naction = \"drop\"\n";

fn start(lab: &Lab, name: &str, config: &str) -> (Daemon, TempFile) {
    common::start_on_lab(lab, name, config)
}

/// Runs `program` in the lab's namespace; its stdout.
fn in_lab(lab: &Lab, program: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", lab.ns(), program])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// nmap's verdict on one port of the host.
fn nmap_state(lab: &Lab, extra: &[&str], port: u16) -> String {
    let host = lab.host_addr().to_string();
    let port = port.to_string();
    let mut args = vec!["-sS", "-Pn", "-n", "--max-retries", "1", "-p", &port];
    args.extend_from_slice(extra);
    args.push(&host);
    let out = in_lab(lab, "nmap", &args);
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("{port}/tcp")))
        .unwrap_or_else(|| panic!("no port line in nmap output:\n{out}"));
    line.split_whitespace().nth(1).unwrap_or("").to_string()
}

/// `status`'s `parse.NAME` once it reaches `at_least` (the daemon reads the
/// kernel counters once a second), or what it was after 5 s.
fn parse_counter(d: &Daemon, name: &str, at_least: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = d.json(&["status"]);
        let n = s["parse"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no parse.{name} in {s}"));
        if n >= at_least || std::time::Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn fragmented_syns_meet_the_port_and_address_rules() {
    if !kernel_tests_enabled() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new(1).unwrap();
    let _open = TcpListener::bind((lab.host_addr(), 8099)).unwrap();
    let (d, _cfg) = start(&lab, "frag-rules.toml", PORT_RULE);

    // Whole SYNs and nmap's 8-byte fragments: the same verdict.
    assert_eq!(nmap_state(&lab, &[], 8099), "filtered");
    assert_eq!(nmap_state(&lab, &["-f"], 8099), "filtered");
    assert!(parse_counter(&d, "frag_tiny", 1) >= 1);
    assert!(parse_counter(&d, "frag_bad_offset", 1) >= 1);

    // hping3's fragmented SYNs get no answer either.
    let host = lab.host_addr().to_string();
    let out = in_lab(
        &lab,
        "hping3",
        &["-S", "-f", "-p", "8099", "-c", "3", "-i", "u100000", &host],
    );
    assert!(
        out.contains("3 packets transmitted, 0 packets received"),
        "{out}"
    );

    // A port without a rule answers (closed: RST), fragmented or not ...
    assert_eq!(nmap_state(&lab, &[], 8098), "closed");
    // ... tiny first fragments are dropped whatever their port ...
    assert_eq!(nmap_state(&lab, &["-f"], 8098), "filtered");
    // ... and fragments of a blocked source are dropped by its address.
    let peer = lab.peer_addr(0).to_string();
    d.ok(&["block", "add", &peer]);
    assert_eq!(nmap_state(&lab, &["--mtu", "24"], 8098), "filtered");
    let list = d.json(&["block", "list"]);
    let entry = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["prefix"].as_str() == Some(peer.as_str()))
        .cloned()
        .unwrap_or_else(|| panic!("no entry for {peer} in {list}"));
    assert!(entry["packets"].as_u64().unwrap() >= 1, "{entry}");
}

#[test]
fn a_fragmented_syn_flood_is_detected_and_blocked() {
    if !kernel_tests_enabled() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new(1).unwrap();
    let (d, _cfg) = start(&lab, "frag-flood.toml", "");
    let host = lab.host_addr().to_string();
    // 60-byte TCP segments cut into 24-byte fragments: each first fragment
    // holds the whole TCP header, so the datagrams are valid SYNs.
    let mut flood = Command::new("ip")
        .args(["netns", "exec", lab.ns(), "hping3", "-S", "-p", "80"])
        .args(["-d", "40", "-m", "24", "--flood", &host])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let alert = d.wait_for_stdout(Duration::from_secs(20), |v: &Value| {
        v["type"] == "alert" && v["detector"] == "syn_flood"
    });
    let _ = flood.kill();
    let _ = flood.wait();
    let alert = alert.expect("no syn_flood alert for a fragmented SYN flood");
    assert_eq!(alert["source"], lab.peer_addr(0).to_string(), "{alert}");
    assert!(parse_counter(&d, "frag_first", 5_000) >= 5_000);
    assert!(parse_counter(&d, "frag_followed", 5_000) >= 5_000);
}

/// scapy, run in the lab's namespace, sending `frames` (Python
/// expressions over `IPv6`, `TCP`, the extension header classes, `SRC` and
/// `DST`) to the host's MAC address.
fn scapy_send(lab: &Lab, frames: &str) {
    let mac = std::fs::read_to_string(format!("/sys/class/net/{}/address", lab.host_if()))
        .unwrap()
        .trim()
        .to_string();
    let script = format!(
        "from scapy.all import *\n\
         SRC='2001:db8:7::7'\nDST='2001:db8:7::1'\n\
         frames = [{frames}]\n\
         sendp([Ether(dst='{mac}')/f for f in frames], iface='{}', verbose=False)\n",
        lab.peer_if()
    );
    let out = Command::new("ip")
        .args(["netns", "exec", lab.ns(), "/usr/bin/python3", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scapy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ipv6_extension_headers_do_not_hide_tcp() {
    if !kernel_tests_enabled() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new(1).unwrap();
    let (d, _cfg) = start(&lab, "v6-ext.toml", PORT_RULE);
    let drops = |d: &Daemon| d.json(&["stats"])["tcp"]["drops"].as_u64().unwrap();
    let before = drops(&d);
    // A SYN to the dropped port behind each extension header, a first
    // fragment, and a later fragment of the same datagram.
    scapy_send(
        &lab,
        "IPv6(src=SRC,dst=DST)/IPv6ExtHdrHopByHop()/TCP(dport=8099,flags='S'),\
         IPv6(src=SRC,dst=DST)/IPv6ExtHdrDestOpt()/TCP(dport=8099,flags='S'),\
         IPv6(src=SRC,dst=DST)/IPv6ExtHdrRouting()/TCP(dport=8099,flags='S'),\
         IPv6(src=SRC,dst=DST)/AH(nh=6,payloadlen=4)/TCP(dport=8099,flags='S'),\
         IPv6(src=SRC,dst=DST)/IPv6ExtHdrHopByHop()/IPv6ExtHdrDestOpt()/IPv6ExtHdrFragment(m=1,id=9)/TCP(dport=8099,flags='S')/Raw(b'x'*16),\
         IPv6(src=SRC,dst=DST,nh=44)/IPv6ExtHdrFragment(nh=6,offset=5,m=0,id=9)/Raw(b'y'*16)",
    );
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(drops(&d) - before, 6, "each frame must meet the port rule");
    assert_eq!(parse_counter(&d, "frag_followed", 1), 1);

    // A port scan behind a Destination Options header is a port scan.
    scapy_send(
        &lab,
        "*[IPv6(src=SRC,dst=DST)/IPv6ExtHdrDestOpt()/TCP(sport=40000,dport=p,flags='S') for p in range(1000,1060)]",
    );
    let alert = d
        .wait_for_stdout(Duration::from_secs(10), |v: &Value| {
            v["type"] == "alert" && v["detector"] == "port_scan"
        })
        .expect("no port_scan alert behind a Destination Options header");
    assert_eq!(alert["source"], "2001:db8:7::7", "{alert}");
}
