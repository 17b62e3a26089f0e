//! `cargo xtask demo`: Ironpost on a lab of a network namespace and a veth
//! pair. Three peers send the same traffic; one is blocked, one is watched.
//! The report compares what was sent with what Ironpost counted and reported,
//! and the demo fails if they disagree. Then one peer attacks with an
//! hping3 SYN flood; the demo fails unless Ironpost alerts and blocks it
//! automatically.

use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use ironpost_lab::{Lab, xdp_attached};
use serde_json::Value;

use crate::{Tools, cargo, run_status};

const UDP_PER_PEER: usize = 100;
const UDP_PAYLOAD: usize = 64;
const PINGS_PER_PEER: u32 = 5;

/// Kills the daemon if the demo fails half-way.
pub(crate) struct Child(pub(crate) std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds `target/release/ironpost` and returns its path.
pub(crate) fn build_release(tools: &Tools, root: &Path) -> Result<std::path::PathBuf> {
    println!("== building ironpost (release)");
    run_status(
        cargo()
            .args(["build", "--release", "--package", "ironpost"])
            .env("PATH", tools.path_env())
            .current_dir(root),
    )?;
    Ok(root.join("target/release/ironpost"))
}

/// Starts `ironpost run` as `cmd` says (stdout is the caller's choice),
/// printing its log when `echo`, and waits until it logs "ready:". Returns
/// the daemon and its "attached" log line.
pub(crate) fn start_daemon(cmd: &mut Command, echo: bool) -> Result<(Child, String)> {
    let mut child = Child(
        cmd.stderr(Stdio::piped())
            .spawn()
            .context("starting ironpost")?,
    );
    let stderr = child.0.stderr.take().context("no stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if echo {
                println!("   [ironpost] {line}");
            }
            let _ = tx.send(line);
        }
    });
    let mut attached = String::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("attached ironpost_xdp") => attached = line,
            Ok(line) if line.contains("ready:") => return Ok((child, attached)),
            Ok(_) => {}
            Err(_) => bail!("ironpost was not ready within 30 s (see its output above)"),
        }
    }
}

/// Runs the demo.
pub fn demo(tools: &Tools, root: &Path) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo creates network namespaces and loads XDP programs: run it as root");
    }
    let bin = build_release(tools, root)?;

    println!("== creating the lab: a network namespace and a veth pair");
    let lab = Lab::new(3).context("creating the lab (needs iproute2 and root)")?;
    let peers = [
        (lab.peer_addr(0), "none"),
        (lab.peer_addr(1), "drop"),
        (lab.peer_addr(2), "monitor"),
    ];
    println!(
        "   namespace {} holds {} with {}, {}, {}; the host end {} has {}",
        lab.ns(),
        lab.peer_if(),
        peers[0].0,
        peers[1].0,
        peers[2].0,
        lab.host_if(),
        lab.host_addr()
    );
    let cfg_dir = std::env::temp_dir().join(format!("ironpost-demo-{}", std::process::id()));
    std::fs::create_dir_all(&cfg_dir)?;
    let cfg_path = cfg_dir.join("ironpost.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "[ebpf]\nxdp_mode = \"auto\"\n\n\
             [[ebpf.rules]]\nid = \"demo-blocked\"\ndescription = \"the lab's hostile peer\"\nsrc = \"{}\"\naction = \"drop\"\n\n\
             [[ebpf.rules]]\nid = \"demo-watched\"\ndescription = \"the lab's suspicious peer\"\nsrc = \"{}\"\naction = \"monitor\"\n",
            peers[1].0, peers[2].0
        ),
    )?;
    let result = run_lab(&bin, &lab, &peers, &cfg_path, &cfg_dir)
        .and_then(|()| run_attack(&bin, &lab, &cfg_dir));
    let _ = std::fs::remove_dir_all(&cfg_dir);
    let host_if = lab.host_if().to_owned();
    drop(lab);
    let leftover = Path::new("/sys/class/net").join(&host_if).exists();
    result?;
    ensure!(!leftover, "the lab's interface {host_if} is still there");
    println!("== lab removed: namespace and veth pair are gone");
    Ok(())
}

fn run_lab(
    bin: &Path,
    lab: &Lab,
    peers: &[(std::net::Ipv4Addr, &str); 3],
    cfg: &Path,
    dir: &Path,
) -> Result<()> {
    let socket = dir.join("ctl.sock");
    println!(
        "== starting: ironpost run --interface {} --config <demo config>",
        lab.host_if()
    );
    let (mut child, attached) = start_daemon(
        Command::new(bin)
            .args([
                "run",
                "--interface",
                lab.host_if(),
                "--stats-interval",
                "1",
                // The demo checks that stopping leaves nothing attached:
                // it asks for that (the default keeps the filter pinned).
                "--on-exit",
                "detach",
                "--pin-dir",
                "off",
                "--config",
            ])
            .arg(cfg)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-file")
            .arg(dir.join("state.json"))
            .stdout(Stdio::piped()),
        true,
    )?;
    let mode = if attached.contains("native mode") {
        "native"
    } else {
        "skb"
    };

    println!(
        "== sending from the namespace: {UDP_PER_PEER} UDP datagrams and {PINGS_PER_PEER} pings per peer"
    );
    let mut replies = Vec::new();
    for (addr, _) in peers {
        lab.send_udp(*addr, 5000, UDP_PER_PEER, UDP_PAYLOAD)?;
        replies.push(lab.ping(*addr, PINGS_PER_PEER)?);
    }
    std::thread::sleep(Duration::from_millis(1200));
    println!("== asking the running daemon: ironpost block list");
    let list = Command::new(bin)
        .arg("--socket")
        .arg(&socket)
        .args(["block", "list"])
        .output()?;
    ensure!(
        list.status.success(),
        "ironpost block list failed: {}",
        String::from_utf8_lossy(&list.stderr)
    );
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        println!("   {line}");
    }
    let list = Command::new(bin)
        .arg("--socket")
        .arg(&socket)
        .args(["block", "list", "--json"])
        .output()?;
    let list: Value = serde_json::from_slice(&list.stdout).context("block list --json")?;
    let per_peer = UDP_PER_PEER as u64 + u64::from(PINGS_PER_PEER);
    for (addr, _) in &peers[1..] {
        let hits = list["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["prefix"] == addr.to_string())
            .and_then(|e| e["packets"].as_u64());
        ensure!(
            hits == Some(per_peer),
            "the rule for {addr} counted {hits:?} hits, expected {per_peer}"
        );
    }
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    let mut out = String::new();
    child
        .0
        .stdout
        .take()
        .context("no stdout")?
        .read_to_string(&mut out)?;
    let status = child.0.wait()?;
    ensure!(status.success(), "ironpost exited with {status}");
    let lines: Vec<Value> = out
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("ironpost printed a line that is not JSON")?;
    let detached = !xdp_attached(lab.host_if());
    report(lab, peers, &replies, &lines, mode, detached)
}

/// A second run with the default configuration: the first peer floods the
/// host end with SYNs; Ironpost must alert and block it.
fn run_attack(bin: &Path, lab: &Lab, dir: &Path) -> Result<()> {
    let socket = dir.join("ctl2.sock");
    let attacker = lab.peer_addr(0);
    println!(
        "== attack: ironpost run --interface {} (default detection), then hping3 -S --flood from {attacker}",
        lab.host_if()
    );
    let (mut child, _) = start_daemon(
        Command::new(bin)
            .args(["run", "--interface", lab.host_if(), "--stats-interval", "0"])
            .args(["--on-exit", "detach", "--pin-dir", "off"])
            .arg("--socket")
            .arg(&socket)
            .arg("--state-file")
            .arg(dir.join("state2.json"))
            .stdout(Stdio::piped()),
        true,
    )?;
    // Stdout is read as it comes: the dropped flood is reported there.
    let stdout = child.0.stdout.take().context("no stdout")?;
    let (tx, alerts) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["type"] == "alert"
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    let mut flood = Child(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                lab.ns(),
                "hping3",
                "-S",
                "--flood",
                "-q",
                "-p",
                "80",
            ])
            .arg(lab.host_addr().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting hping3 (cargo xtask setup installs it)")?,
    );
    let alert = alerts
        .recv_timeout(Duration::from_secs(20))
        .context("no alert within 20 s of the SYN flood")?;
    std::thread::sleep(Duration::from_secs(1));
    let list = Command::new(bin)
        .arg("--socket")
        .arg(&socket)
        .args(["block", "list", "--json"])
        .output()?;
    let list: Value = serde_json::from_slice(&list.stdout).context("block list --json")?;
    let _ = flood.0.kill();
    let _ = flood.0.wait();
    println!("   alert: {alert}");
    let entry = list["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["id"] == alert["id"])
        .cloned()
        .context("the alert's automatic block is not in the block list")?;
    println!(
        "   block list: {} origin {} id {} expires {} — {} packets dropped in the next second",
        entry["prefix"].as_str().unwrap_or("?"),
        entry["origin"].as_str().unwrap_or("?"),
        entry["id"].as_str().unwrap_or("?"),
        entry["expires"].as_str().unwrap_or("?"),
        entry["packets"]
    );
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    let status = child.0.wait()?;
    ensure!(status.success(), "ironpost exited with {status}");
    ensure!(
        alert["detector"] == "syn_flood" && alert["source"] == attacker.to_string(),
        "expected a syn_flood alert from {attacker}, got {alert}"
    );
    ensure!(
        entry["origin"] == "auto" && entry["packets"].as_u64().unwrap_or(0) > 0,
        "the automatic block dropped nothing: {entry}"
    );
    println!("   the SYN flood was detected and its source blocked automatically");
    Ok(())
}

fn report(
    lab: &Lab,
    peers: &[(std::net::Ipv4Addr, &str); 3],
    replies: &[u32],
    lines: &[Value],
    mode: &str,
    detached: bool,
) -> Result<()> {
    let last = lines
        .iter()
        .rev()
        .find(|l| l["type"] == "stats" && l["final"] == true)
        .context("no final stats line")?;
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    println!();
    println!("Ironpost demo report ({} in {mode} mode)", lab.host_if());
    println!();
    println!("  peer            rule      sent (UDP + ping)   ping replies   events");
    let mut problems = Vec::new();
    for (i, (addr, rule)) in peers.iter().enumerate() {
        let events: Vec<&Value> = lines
            .iter()
            .filter(|l| l["type"] == "event" && l["src"] == addr.to_string())
            .collect();
        let kinds = match events.first() {
            Some(e) => format!("{} x {}", events.len(), e["action"].as_str().unwrap_or("?")),
            None => "none".into(),
        };
        println!(
            "  {:<15} {:<9} {:>3} + {:<14} {:>2}/{:<11} {}",
            addr.to_string(),
            rule,
            UDP_PER_PEER,
            PINGS_PER_PEER,
            replies[i],
            PINGS_PER_PEER,
            kinds
        );
        let expect_events = if *rule == "none" {
            0
        } else {
            UDP_PER_PEER + PINGS_PER_PEER as usize
        };
        let expect_replies = if *rule == "drop" { 0 } else { PINGS_PER_PEER };
        if events.len() != expect_events {
            problems.push(format!(
                "{addr}: {} events, expected {expect_events}",
                events.len()
            ));
        }
        if replies[i] != expect_replies {
            problems.push(format!(
                "{addr}: {} ping replies, expected {expect_replies}",
                replies[i]
            ));
        }
    }
    println!();
    println!("  What Ironpost counted (final stats line):");
    println!("  class      packets      bytes    dropped");
    for class in ["tcp", "udp", "icmp", "other", "total"] {
        let c = &last[class];
        println!(
            "  {:<7} {:>10} {:>10} {:>10}",
            class,
            n(&c["packets"]),
            n(&c["bytes"]),
            n(&c["drops"])
        );
    }
    let lost = n(&last["events_lost"]);
    println!(
        "  events delivered {}, lost {lost}",
        n(&last["events"]["delivered"])
    );
    println!(
        "  after SIGINT: {}",
        if detached {
            "detached (ip link shows no XDP program)"
        } else {
            "STILL ATTACHED"
        }
    );
    let sent_udp = (3 * UDP_PER_PEER) as u64;
    let sent_icmp = u64::from(3 * PINGS_PER_PEER);
    if n(&last["udp"]["packets"]) != sent_udp {
        problems.push(format!(
            "UDP packets counted {} != sent {sent_udp}",
            n(&last["udp"]["packets"])
        ));
    }
    if n(&last["icmp"]["packets"]) != sent_icmp {
        problems.push(format!(
            "ICMP packets counted {} != sent {sent_icmp}",
            n(&last["icmp"]["packets"])
        ));
    }
    let want_drops = UDP_PER_PEER as u64 + u64::from(PINGS_PER_PEER);
    if n(&last["total"]["drops"]) != want_drops {
        problems.push(format!(
            "drops counted {} != {want_drops}",
            n(&last["total"]["drops"])
        ));
    }
    if lost != 0 {
        problems.push(format!("{lost} events lost"));
    }
    if !detached {
        problems.push("the program is still attached".into());
    }
    println!();
    if problems.is_empty() {
        println!("  Everything Ironpost counted and reported matches what was sent.");
        Ok(())
    } else {
        bail!("the demo found mismatches: {}", problems.join("; "))
    }
}
