//! The detection matrix: every attack and benign case the README lists, run
//! against a daemon with its defaults on a lab of its own, with what was
//! detected, how long after the tool started, and what was blocked.
//! `cargo xtask matrix` runs it (it is ignored by `cargo test`: a slow scan
//! alone takes two minutes) and writes the table to the file named by
//! `IRONPOST_MATRIX_OUT` (docs/detection-matrix.md).

mod common;

use std::{
    fmt::Write as _,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{Daemon, TempFile};
use ironpost_lab::{Lab, kernel_tests_enabled};

/// One row of the matrix.
struct Case {
    /// What is done.
    name: &'static str,
    /// Lab addresses on the namespace end.
    peers: usize,
    /// The command, run in the lab's namespace through `sh -c`; `{host}`,
    /// `{if}` and `{peerN}` are replaced with the lab's.
    command: &'static str,
    /// The detector that must alert, or `None` for benign traffic.
    expect: Option<&'static str>,
    /// Whether the alert must block its source.
    block: bool,
    /// How long to wait for the alert (benign: how long the traffic runs).
    secs: u64,
}

const CASES: &[Case] = &[
    Case {
        name: "SYN flood, one source",
        peers: 1,
        command: "hping3 -S --flood -q -p 80 {host}",
        expect: Some("syn_flood"),
        block: true,
        secs: 20,
    },
    Case {
        name: "SYN flood, random sources",
        peers: 1,
        command: "hping3 -S --flood --rand-source -q -p 443 {host}",
        expect: Some("syn_flood"),
        block: false,
        secs: 20,
    },
    Case {
        name: "fragmented SYN flood",
        peers: 1,
        command: "hping3 -S --flood -q -d 40 -m 24 -p 80 {host}",
        expect: Some("syn_flood"),
        block: true,
        secs: 20,
    },
    Case {
        name: "UDP flood, one source",
        peers: 1,
        command: "hping3 --udp --flood -q -p 53 {host}",
        expect: Some("udp_flood"),
        block: true,
        secs: 30,
    },
    Case {
        name: "UDP flood, random sources",
        peers: 1,
        command: "hping3 -2 --flood --rand-source -q -p 53 {host}",
        expect: Some("udp_flood"),
        block: false,
        secs: 20,
    },
    Case {
        name: "ICMP flood (ping -f)",
        peers: 1,
        command: "ping -f -q {host}",
        expect: Some("icmp_flood"),
        block: true,
        secs: 30,
    },
    Case {
        name: "ICMP flood, random sources",
        peers: 1,
        command: "hping3 -1 --flood --rand-source -q {host}",
        expect: Some("icmp_flood"),
        block: false,
        secs: 20,
    },
    Case {
        name: "ACK flood",
        peers: 1,
        command: "hping3 -A --flood -q -p 80 {host}",
        expect: Some("ack_flood"),
        block: true,
        secs: 20,
    },
    Case {
        name: "RST flood",
        peers: 1,
        command: "hping3 -R --flood -q -p 80 {host}",
        expect: Some("rst_flood"),
        block: true,
        secs: 20,
    },
    Case {
        name: "ACK flood, random sources",
        peers: 1,
        command: "hping3 -A --flood --rand-source -q -p 80 {host}",
        expect: Some("ack_flood"),
        block: false,
        secs: 20,
    },
    Case {
        name: "RST flood, random sources",
        peers: 1,
        command: "hping3 -R --flood --rand-source -q -p 80 {host}",
        expect: Some("rst_flood"),
        block: false,
        secs: 20,
    },
    Case {
        name: "nmap -sS (SYN scan)",
        peers: 1,
        command: "nmap -sS -Pn -n -T4 -p- {host}",
        expect: Some("port_scan"),
        block: true,
        secs: 30,
    },
    Case {
        name: "nmap -sT (connect scan)",
        peers: 1,
        command: "nmap -sT -Pn -n -T4 -p- {host}",
        expect: Some("port_scan"),
        block: true,
        secs: 30,
    },
    Case {
        name: "nmap -sU (UDP scan)",
        peers: 1,
        command: "nmap -sU -Pn -n -T4 --top-ports 200 {host}",
        expect: Some("port_scan"),
        block: true,
        secs: 60,
    },
    Case {
        name: "nmap -sF (FIN scan)",
        peers: 1,
        command: "nmap -sF -Pn -n -T4 -p- {host}",
        expect: Some("port_scan"),
        block: true,
        secs: 30,
    },
    Case {
        name: "nmap -sX (Xmas scan)",
        peers: 1,
        command: "nmap -sX -Pn -n -T4 -p- {host}",
        expect: Some("port_scan"),
        block: true,
        secs: 30,
    },
    Case {
        name: "nmap -sN (NULL scan)",
        peers: 1,
        command: "nmap -sN -Pn -n -T4 -p- {host}",
        expect: Some("port_scan"),
        block: true,
        secs: 30,
    },
    Case {
        name: "nmap -sA (ACK scan)",
        peers: 1,
        command: "nmap -sA -Pn -n -T4 -p- {host}",
        expect: Some("port_scan"),
        block: true,
        secs: 30,
    },
    Case {
        name: "nmap -sO (IP protocol scan)",
        peers: 1,
        command: "nmap -sO -Pn -n -T4 {host}",
        expect: Some("port_scan"),
        block: true,
        secs: 30,
    },
    Case {
        name: "nmap -sS -f (8-byte fragments)",
        peers: 1,
        command: "nmap -sS -f -Pn -n -T4 -p- {host}",
        expect: Some("port_scan"),
        block: true,
        secs: 30,
    },
    Case {
        name: "nmap -sS --scan-delay 4s (slow scan)",
        peers: 1,
        command: "nmap -sS -Pn -n --scan-delay 4s --max-retries 0 -p 1-100 {host}",
        expect: Some("port_scan"),
        block: true,
        secs: 300,
    },
    Case {
        name: "nmap -D, three decoys",
        peers: 4,
        command: "nmap -sS -Pn -n -T4 -p 1-300 -e {if} -S {peer0} -D {peer1},{peer2},{peer3} {host}",
        expect: Some("decoy_scan"),
        block: false,
        secs: 30,
    },
    Case {
        name: "distributed scan, 10 sources x 5 ports",
        peers: 10,
        command: "for i in 0 1 2 3 4 5 6 7 8 9; do \
                  nmap -sS -Pn -n -e {if} -S $(eval echo \\$P$i) -p $((3000 + 5 * i))-$((3004 + 5 * i)) {host}; \
                  done",
        expect: Some("distributed_scan"),
        block: false,
        secs: 60,
    },
    Case {
        name: "ping at 100/s for 10 s (benign)",
        peers: 1,
        command: "ping -i 0.01 -c 1000 -q {host}",
        expect: None,
        block: false,
        secs: 12,
    },
];

/// What one case came to.
struct Row {
    detected: String,
    latency: Option<Duration>,
    action: String,
    ok: bool,
}

fn expand(command: &str, lab: &Lab, peers: usize) -> String {
    let mut c = command
        .replace("{host}", &lab.host_addr().to_string())
        .replace("{if}", lab.peer_if());
    let mut exports = String::new();
    for i in 0..peers {
        c = c.replace(&format!("{{peer{i}}}"), &lab.peer_addr(i).to_string());
        let _ = write!(exports, "P{i}={}; ", lab.peer_addr(i));
    }
    format!("{exports}{c}")
}

/// Runs one case on a lab and a daemon of its own.
fn run(case: &Case) -> Row {
    let lab = Lab::new(case.peers).unwrap();
    let (d, _cfg): (Daemon, TempFile) = common::start_on_lab(&lab, "matrix.toml", "");
    let script = expand(case.command, &lab, case.peers);
    let started = Instant::now();
    let mut tool: Child = Command::new("ip")
        .args(["netns", "exec", lab.ns(), "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The expected alert (benign: any alert), and the alerts before it.
    let earlier = std::cell::RefCell::new(Vec::new());
    let alert = d.wait_for_stdout(Duration::from_secs(case.secs), |v| {
        if v["type"] != "alert" {
            return false;
        }
        let hit = case.expect.is_none_or(|e| v["detector"] == e);
        if !hit {
            earlier.borrow_mut().push(v.clone());
        }
        hit
    });
    let latency = started.elapsed();
    let earlier = earlier.into_inner();
    // The shell and every tool it started: all processes in the namespace.
    let _ = Command::new("ip")
        .args(["netns", "pids", lab.ns()])
        .output()
        .map(|o| {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        });
    let _ = tool.kill();
    let _ = tool.wait();
    let before: Vec<String> = earlier
        .iter()
        .map(|a| a["detector"].as_str().unwrap_or("?").to_owned())
        .collect();
    let row = match (alert.or_else(|| earlier.first().cloned()), case.expect) {
        (Some(a), _) => {
            let detected = a["detector"].as_str().unwrap_or("?").to_owned();
            let kind = a["action"]["kind"].as_str().unwrap_or("?");
            let action = match kind {
                "blocked" => format!(
                    "blocked ({})",
                    a["action"]["traffic"].as_str().unwrap_or("?")
                ),
                _ => format!(
                    "not blocked: {}",
                    a["action"]["reason"].as_str().unwrap_or("?")
                ),
            };
            let ok = case.expect == Some(detected.as_str()) && (kind == "blocked") == case.block;
            let detected = if before.is_empty() || case.expect != Some(detected.as_str()) {
                detected
            } else {
                format!("{detected} (after {})", before.join(", "))
            };
            Row {
                detected,
                latency: ok.then_some(latency),
                action,
                ok,
            }
        }
        (None, expect) => Row {
            detected: "nothing".into(),
            latency: None,
            action: "—".into(),
            ok: expect.is_none(),
        },
    };
    d.signal(libc::SIGTERM);
    let _ = d.finish();
    row
}

#[test]
#[ignore = "slow: run with `cargo xtask matrix`"]
fn detection_matrix() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut table = String::from(
        "| case | command (in the lab's namespace) | expected | detected | after | response | as expected |\n\
         |---|---|---|---|---|---|---|\n",
    );
    let mut failed = Vec::new();
    for case in CASES {
        let row = run(case);
        let after = row
            .latency
            .map_or("—".to_owned(), |l| format!("{:.2} s", l.as_secs_f64()));
        let expected = match (case.expect, case.block) {
            (Some(d), true) => format!("{d}, blocked"),
            (Some(d), false) => format!("{d}, nobody blocked"),
            (None, _) => "nothing".to_owned(),
        };
        let line = format!(
            "| {} | `{}` | {expected} | {} | {after} | {} | {} |\n",
            case.name,
            case.command
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            row.detected,
            row.action.replace('|', "/"),
            if row.ok { "yes" } else { "**no**" }
        );
        print!("{line}");
        table.push_str(&line);
        if !row.ok {
            failed.push(case.name);
        }
    }
    if let Ok(path) = std::env::var("IRONPOST_MATRIX_OUT") {
        let text = format!(
            "# Detection matrix\n\nWritten by `cargo xtask matrix`: each case runs the command \
             from a lab namespace of its own against `ironpost run` with the default \
             configuration on the host end of a veth pair (skb mode), and records the first \
             alert, how long after the command started it came, and what the response \
             was. Benign cases must raise nothing while they run.\n\n{table}"
        );
        std::fs::write(&path, text).unwrap();
        println!("matrix written to {path}");
    }
    assert!(failed.is_empty(), "not as expected: {failed:?}");
}
