//! `cargo xtask bench-fleet`: fleet mode measured on this machine. One
//! nats-server with JetStream on 127.0.0.1 and N release daemons, each on a
//! lab veth of its own:
//! - latency: a block added on the first host (a shared list, the path an
//!   automatic block takes after its alert) until each other host has
//!   written it to its kernel maps, from the daemons' own log timestamps
//!   (one clock), median and p99;
//! - throughput: an import of M addresses into the shared list on the first
//!   host until every other host holds all of them, in blocks per second.

use std::{
    fmt::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};
use ironpost_lab::Lab;
use serde_json::Value;

use crate::{Tools, demo};

/// Runs the measurement with `hosts` daemons, `samples` latency samples
/// and an import of `blocks` addresses.
pub fn bench_fleet(
    tools: &Tools,
    root: &Path,
    hosts: usize,
    samples: usize,
    blocks: u32,
) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark loads XDP programs: run it as root");
    }
    ensure!(
        hosts >= 2,
        "--hosts: at least 2 (one publishes, the others follow)"
    );
    let bin = demo::build_release(tools, root)?;
    let dir = std::env::temp_dir().join(format!("ironpost-bench-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // The daemons' pins, removed however the run ends (a pin left behind
    // would hold a program and its maps in memory).
    let pins =
        Path::new("/sys/fs/bpf").join(format!("ironpost-bench-fleet-{}", std::process::id()));
    let result = run(&bin, &dir, &pins, hosts, samples, blocks);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&pins);
    result
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Host {
    name: String,
    socket: PathBuf,
    log: PathBuf,
    _child: demo::Child,
    lab: Lab,
}

impl Host {
    fn ctl(&self, bin: &Path, args: &[&str]) -> Result<String> {
        let o = Command::new(bin)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()?;
        ensure!(
            o.status.success(),
            "ironpost {args:?} on {}: {}",
            self.name,
            String::from_utf8_lossy(&o.stderr)
        );
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    fn status(&self, bin: &Path) -> Result<Value> {
        Ok(serde_json::from_str(
            &self.ctl(bin, &["status", "--json"])?,
        )?)
    }

    /// (timestamp in µs since the epoch, message) of every log line.
    fn log_lines(&self) -> Result<Vec<(i64, String)>> {
        let text = std::fs::read_to_string(&self.log)?;
        let mut out = Vec::new();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let (Some(ts), Some(msg)) = (v["timestamp"].as_str(), v["fields"]["message"].as_str())
            else {
                continue;
            };
            out.push((parse_rfc3339_us(ts)?, msg.to_owned()));
        }
        Ok(out)
    }
}

/// `2026-11-24T22:23:30.695830Z` in µs since the epoch.
fn parse_rfc3339_us(ts: &str) -> Result<i64> {
    let bad = || anyhow::anyhow!("not a log timestamp: {ts}");
    let (date, time) = ts.split_once('T').ok_or_else(bad)?;
    let time = time.strip_suffix('Z').ok_or_else(bad)?;
    let d: Vec<i64> = date.split('-').map(str::parse).collect::<Result<_, _>>()?;
    ensure!(d.len() == 3, "not a log timestamp: {ts}");
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(str::parse).collect::<Result<_, _>>()?;
    ensure!(t.len() == 3, "not a log timestamp: {ts}");
    // Days since the epoch (civil from days, Howard Hinnant's algorithm).
    let (y, m, day) = (d[0] - i64::from(d[1] <= 2), d[1], d[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut us: i64 = format!("{frac:0<6}")[..6].parse()?;
    us += (days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1_000_000;
    Ok(us)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn run(
    bin: &Path,
    dir: &Path,
    pins: &Path,
    hosts: usize,
    samples: usize,
    blocks: u32,
) -> Result<()> {
    let port = free_port()?;
    let monitor = free_port()?;
    let store = dir.join("jetstream");
    println!("== nats-server with JetStream on 127.0.0.1:{port}");
    let _nats = demo::Child(
        Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &monitor.to_string(), "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nats-server (cargo xtask setup installs it)")?,
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "nats-server did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let capacity = blocks as usize + samples + 64;
    let mut fleet = Vec::new();
    for i in 0..hosts {
        let name = format!("h{i}");
        let lab = Lab::new(1).context("creating a lab (needs iproute2 and root)")?;
        let cfg = dir.join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[ebpf]\nblocklist_max_entries = {capacity}\n\n[daemon]\nmetrics_listen = \
                 \"127.0.0.1:0\"\n\n[fleet]\nservers = [\"nats://127.0.0.1:{port}\"]\nname = \
                 \"bench\"\nhost = \"{name}\"\nshare_lists = [\"bench\"]\n"
            ),
        )?;
        let socket = dir.join(format!("{name}.sock"));
        let log = dir.join(format!("{name}.log"));
        let pins = pins.join(&name);
        let child = demo::Child(
            Command::new(bin)
                .args(["--log-format", "json", "run", "--interface", lab.host_if()])
                .args(["--stats-interval", "0", "--on-exit", "detach", "--pin-dir"])
                .arg(&pins)
                .arg("--config")
                .arg(&cfg)
                .arg("--socket")
                .arg(&socket)
                .arg("--state-file")
                .arg(dir.join(format!("{name}.redb")))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .spawn()
                .context("starting ironpost")?,
        );
        fleet.push(Host {
            name,
            socket,
            log,
            _child: child,
            lab,
        });
    }
    for h in &fleet {
        let t = Instant::now();
        loop {
            if let Ok(s) = h.status(bin)
                && s["fleet"]["connected"] == true
            {
                break;
            }
            ensure!(
                t.elapsed() < Duration::from_secs(30),
                "{} did not connect to the fleet; its log: {}",
                h.name,
                std::fs::read_to_string(&h.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    println!("== {hosts} daemons connected; latency: {samples} blocks added on h0, 20 ms apart");
    let addr = |i: u32, base: Ipv4Addr| Ipv4Addr::from(u32::from(base) + i).to_string();
    let sample_base = Ipv4Addr::new(198, 18, 0, 0);
    for i in 0..samples as u32 {
        fleet[0].ctl(
            bin,
            &[
                "block",
                "add",
                &addr(i, sample_base),
                "--list",
                "bench",
                "--ttl",
                "1h",
            ],
        )?;
        std::thread::sleep(Duration::from_millis(20));
    }
    let wait_applied = |n: u64, secs: u64| -> Result<f64> {
        let t = Instant::now();
        for h in &fleet[1..] {
            loop {
                let s = h.status(bin)?;
                if s["fleet"]["applied"].as_u64().unwrap_or(0) >= n {
                    break;
                }
                ensure!(
                    t.elapsed() < Duration::from_secs(secs),
                    "{} holds {} of the fleet's {n} blocks after {secs} s",
                    h.name,
                    s["fleet"]["applied"]
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(t.elapsed().as_secs_f64())
    };
    wait_applied(samples as u64, 60)?;
    let added: std::collections::HashMap<String, i64> = fleet[0]
        .log_lines()?
        .into_iter()
        .filter_map(|(t, m)| {
            let rest = m.strip_prefix("blocked ")?;
            let (a, _) = rest.split_once(" in list bench")?;
            Some((a.to_owned(), t))
        })
        .collect();
    let mut lat_ms = Vec::new();
    for h in &fleet[1..] {
        for (t, m) in h.log_lines()? {
            let Some(rest) = m.strip_prefix("fleet: blocked ") else {
                continue;
            };
            let a = rest.split_whitespace().next().unwrap_or("");
            let a = a.strip_suffix("/32").unwrap_or(a);
            if let Some(t0) = added.get(a) {
                lat_ms.push((t - t0) as f64 / 1000.0);
            }
        }
    }
    ensure!(
        lat_ms.len() == samples * (hosts - 1),
        "{} latency samples found in the logs, expected {}",
        lat_ms.len(),
        samples * (hosts - 1)
    );
    let median = percentile(&mut lat_ms, 0.5);
    let p99 = percentile(&mut lat_ms, 0.99);
    let max = percentile(&mut lat_ms, 1.0);

    // A real alert: a SYN flood from h0's lab peer, until the others hold
    // its automatic block (from h0's alert line to their fleet lines).
    println!("== an alert: hping3 SYN flood into h0 for 3 s");
    let attacker = fleet[0].lab.peer_addr(0).to_string();
    let target = fleet[0].lab.host_addr().to_string();
    let _ = fleet[0].lab.exec(
        "timeout",
        &["3", "hping3", "-S", "--flood", "-p", "80", "-q", &target],
    );
    wait_applied(samples as u64 + 1, 30)?;
    let alert_at = fleet[0]
        .log_lines()?
        .into_iter()
        .find(|(_, m)| m.starts_with("alert ") && m.contains(&format!("from {attacker}")))
        .map(|(t, _)| t)
        .context("no alert on h0 for the SYN flood")?;
    let mut alert_ms = Vec::new();
    for h in &fleet[1..] {
        let t = h
            .log_lines()?
            .into_iter()
            .find(|(_, m)| m.starts_with(&format!("fleet: blocked {attacker} ")))
            .map(|(t, _)| t)
            .with_context(|| format!("{} did not log the fleet's block", h.name))?;
        alert_ms.push((t - alert_at) as f64 / 1000.0);
    }

    println!("== throughput: {blocks} addresses imported into the shared list on h0");
    let file = dir.join("bulk.netset");
    let mut text = String::with_capacity(blocks as usize * 16);
    let bulk_base = Ipv4Addr::new(100, 64, 0, 0);
    for i in 0..blocks {
        let _ = writeln!(text, "{}", addr(i, bulk_base));
    }
    std::fs::write(&file, text)?;
    let t = Instant::now();
    fleet[0].ctl(
        bin,
        &[
            "block",
            "import",
            file.to_str().context("path")?,
            "--list",
            "bench",
            "--ttl",
            "1h",
        ],
    )?;
    let import_secs = t.elapsed().as_secs_f64();
    let spread = wait_applied(samples as u64 + 1 + u64::from(blocks), 600)?;
    let total = import_secs + spread;
    let published = fleet[0].status(bin)?["fleet"]["published"].clone();
    // What JetStream stores for it (nats-server's monitoring endpoint).
    let jsz = jetstream_totals(monitor)?;
    let (stored_msgs, stored_bytes) = (
        jsz["messages"].as_u64().unwrap_or(0),
        jsz["bytes"].as_u64().unwrap_or(0),
    );
    println!();
    println!("fleet: {hosts} daemons, one nats-server (JetStream, file storage), this machine");
    println!(
        "  block on h0 to the kernel maps of the {} others ({} samples): median {median:.1} ms, \
         p99 {p99:.1} ms, max {max:.1} ms",
        hosts - 1,
        lat_ms.len()
    );
    println!(
        "  a SYN flood's alert on h0 to its block in the kernel maps of the others: {}",
        alert_ms
            .iter()
            .map(|ms| format!("{ms:.1} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  {blocks} blocks imported on h0 ({import_secs:.2} s) until all {} others held them: \
         {total:.2} s, {:.0} blocks/s to each, {:.0} applied/s in all (h0 published {published} \
         messages)",
        hosts - 1,
        f64::from(blocks) / total,
        f64::from(blocks) * (hosts - 1) as f64 / total
    );
    println!(
        "  JetStream holds {stored_msgs} messages (blocks, one per host and address, and alerts) \
         in {stored_bytes} bytes: {:.0} bytes each",
        stored_bytes as f64 / stored_msgs.max(1) as f64
    );
    Ok(())
}

/// nats-server's `/jsz`: JetStream's totals (messages, bytes).
fn jetstream_totals(monitor: u16) -> Result<Value> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", monitor))?;
    s.write_all(b"GET /jsz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .context("no body in nats-server's /jsz answer")?;
    Ok(serde_json::from_str(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_timestamps_are_read_to_the_microsecond() {
        assert_eq!(
            parse_rfc3339_us("1970-01-01T00:00:01.5Z").unwrap(),
            1_500_000
        );
        assert_eq!(
            parse_rfc3339_us("2026-11-24T22:23:30.695830Z").unwrap(),
            1_795_559_010_695_830
        );
    }
}
