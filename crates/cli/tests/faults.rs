//! Faults and hostile input against a daemon on a namespace lab: a stdout
//! nobody reads, a state directory that is full or read-only, TTLs at the
//! edge of what fits, an empty configuration on SIGHUP, an oversized
//! request, and text that would drive the terminal.

mod common;

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use common::{
    Daemon, TempFile, http, http_get, http_head, ironpost, run_on, sample, start_on_lab,
    start_on_lab_with, stderr,
};
use ironpost_lab::{Lab, kernel_tests_enabled};
use serde_json::Value;

/// A raw request's status and JSON body (null when it is not JSON).
fn raw_request(socket: &Path, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, body) = http(socket, method, path, body);
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn listed(d: &Daemon, prefix: &str) -> Option<Value> {
    d.json(&["block", "list"])["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["prefix"] == prefix)
        .cloned()
}

#[test]
fn a_reader_that_stops_reading_stdout_stops_nothing_else() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(2).unwrap();
    let (flooder, other) = (lab.peer_addr(0), lab.peer_addr(1));
    // Events past the default budget, so that there are many more lines
    // than the output queue holds.
    let cfg = TempFile::new("unread.toml", "[ebpf]\nevent_budget_per_cpu = 1000000\n");
    let d = Daemon::start_unread(&[
        "run",
        "-c",
        cfg.path(),
        "-i",
        lab.host_if(),
        "--xdp-mode",
        "skb",
        "--stats-interval",
        "1",
    ]);
    d.wait_for_stderr("ready:");
    // Every dropped datagram is an event line on stdout, which nobody
    // reads: the pipe fills within a fraction of a second.
    d.ok(&["block", "add", &flooder.to_string()]);
    d.ok(&["block", "add", &other.to_string(), "--ttl", "2s"]);
    let added = Instant::now();
    let flood = {
        let lab = &lab;
        std::thread::scope(|s| {
            let h = s.spawn(move || lab.send_udp(flooder, 9, 400_000, 64).unwrap());
            // Control requests keep answering while the flood goes on.
            let mut slowest = Duration::ZERO;
            let mut answered = 0;
            while !h.is_finished() || answered < 20 {
                let t = Instant::now();
                let o = d.ctl(&["status", "--json"]);
                assert!(o.status.success(), "{}", stderr(&o));
                slowest = slowest.max(t.elapsed());
                answered += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            (h.join().unwrap(), answered, slowest)
        })
    };
    let (sent, answered, slowest) = flood;
    assert!(sent > 100_000, "{sent}");
    // A stalled daemon never answers; one that answers at all answers in
    // milliseconds. The bound only tells the two apart.
    assert!(
        slowest < Duration::from_secs(2),
        "status took {slowest:?} (of {answered} calls)"
    );
    // The TTL block expired on time, out of the kernel map too.
    let gone = loop {
        if listed(&d, &other.to_string()).is_none() {
            break added.elapsed();
        }
        assert!(added.elapsed() < Duration::from_secs(10), "never expired");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(gone < Duration::from_secs(5), "expired after {gone:?}");
    assert_eq!(lab.ping(other, 2).unwrap(), 2);
    let status = d.json(&["status"]);
    assert!(
        status["output_lines_dropped"].as_u64().unwrap() > 0,
        "the dropped lines are counted: {status}"
    );
    d.wait_for_stderr("stdout is not being read fast enough");
}

/// A tmpfs of 512 KiB mounted on a fresh directory, unmounted on drop.
struct SmallFs(PathBuf);

impl SmallFs {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ironpost-fs-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=512k,mode=0700", "ironpost-test"])
            .arg(&dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs on {}", dir.display());
        Self(dir)
    }

    fn remount(&self, opt: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{opt}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {opt}");
    }

    /// Fills the file system; returns the filler to remove.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_change_that_cannot_be_saved_never_reaches_the_kernel() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(2).unwrap();
    let (a, b) = (lab.peer_addr(0), lab.peer_addr(1));
    let fs = SmallFs::new("state");
    let d = Daemon::start_in(fs.0.clone(), &run_on(&lab));
    d.wait_for_stderr("ready:");
    d.ok(&["block", "add", &b.to_string()]);
    d.ok(&["allow", "add", "198.51.100.0/24"]);

    // A full disk: the add is refused and not enforced.
    let filler = fs.fill();
    let o = d.ctl(&["block", "add", &a.to_string()]);
    assert_eq!(o.status.code(), Some(15), "not_saved's exit code");
    let err = stderr(&o);
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(listed(&d, &a.to_string()).is_none(), "not listed");
    assert_eq!(lab.ping(a, 3).unwrap(), 3, "not dropped in the kernel");
    // An update of an existing entry is taken back to what it was.
    let o = d.ctl(&["block", "add", &b.to_string(), "--ttl", "1h"]);
    assert!(!o.status.success());
    assert_eq!(listed(&d, &b.to_string()).unwrap()["expires"], Value::Null);
    let o = d.ctl(&["allow", "del", "198.51.100.0/24"]);
    assert!(!o.status.success());
    let allow = d.json(&["allow", "list"]);
    assert_eq!(allow["entries"][0]["prefix"], "198.51.100.0/24", "{allow}");
    // An import large enough to be saved while it is applied: refused as
    // a whole, nothing of it enforced.
    let body = import_body(20_000, u32::from(std::net::Ipv4Addr::new(20, 0, 0, 0)));
    let (code, answer) = raw_request(&d.socket(), "POST", "/v1/blocks", &body);
    assert_eq!(code, 507, "{answer}");
    assert!(
        answer.to_string().contains("nothing was changed"),
        "{answer}"
    );
    assert_eq!(d.json(&["status"])["maps"]["blocks"], 1, "only b");
    std::fs::remove_file(filler).unwrap();

    // A read-only file system: the delete is refused, the block holds.
    fs.remount("ro");
    let o = d.ctl(&["block", "del", &b.to_string()]);
    assert_eq!(o.status.code(), Some(15), "not_saved's exit code");
    assert!(stderr(&o).contains("nothing was changed"), "{}", stderr(&o));
    assert!(listed(&d, &b.to_string()).is_some());
    assert_eq!(lab.ping(b, 2).unwrap(), 0, "still dropped");
    fs.remount("rw");

    // Once the disk takes writes again, the same changes go through.
    d.ok(&["block", "add", &a.to_string()]);
    assert_eq!(lab.ping(a, 2).unwrap(), 0);
    d.ok(&["block", "del", &b.to_string()]);
    assert_eq!(lab.ping(b, 2).unwrap(), 2);
    drop(d);
}

#[test]
fn extreme_ttls_are_refused_or_bounded_never_a_panic() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(1).unwrap();
    // A state file written by hand (or an older version) with expiries
    // past what any clock or RFC 3339 can hold.
    let dir = std::env::temp_dir().join(format!("ironpost-ttl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let entry = |prefix: &str, expires: u64| {
        format!(
            "{{\"direction\":\"src\",\"prefix\":\"{prefix}\",\"action\":\"drop\",\"origin\":\
             \"manual\",\"reason\":\"x\",\"added_ms\":1,\"expires_ms\":{expires}}}"
        )
    };
    std::fs::write(
        dir.join("state.json"),
        format!(
            "{{\"version\":1,\"saved_ms\":1,\"blocks\":[{},{}],\"allow\":[]}}",
            entry("198.51.100.1", u64::MAX),
            entry("198.51.100.2", 1_000_000_000_000_000_000)
        ),
    )
    .unwrap();
    let d = Daemon::start_in(dir.clone(), &run_on(&lab));
    d.wait_for_stderr("ready:");
    let ten_years = 10.0 * 365.0 * 86_400.0;
    for p in ["198.51.100.1", "198.51.100.2"] {
        let row = listed(&d, p).unwrap();
        let left = row["expires_in_secs"].as_f64().unwrap();
        assert!(left > ten_years - 60.0 && left <= ten_years, "{row}");
    }
    assert!(d.ok(&["block", "list"]).contains("198.51.100.1"));

    // Requests that bypass the CLI's checks.
    for ttl in ["1000000000000000", "18446744073709551615", "0"] {
        let body = format!("{{\"prefixes\":[\"198.51.100.9\"],\"ttl_secs\":{ttl}}}");
        let (status, v) = raw_request(&d.socket(), "POST", "/v1/blocks", &body);
        assert_eq!((status, &v["kind"]), (422, &Value::from("invalid")), "{v}");
        let e = v["message"].as_str().unwrap_or_else(|| panic!("{v}"));
        assert!(e.contains("out of range"), "{e}");
    }
    assert!(listed(&d, "198.51.100.9").is_none());
    // The CLI's units: no months, no wrap.
    for (ttl, msg) in [
        ("5M", "write m for minutes"),
        ("600000000y", "longer than the longest TTL"),
        ("18446744073709551615s", "longer than the longest TTL"),
    ] {
        let o = d.ctl(&["block", "add", "198.51.100.9", "--ttl", ttl]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains(msg), "{ttl}: {}", stderr(&o));
    }
    d.ok(&["block", "add", "198.51.100.9", "--ttl", "5m"]);
    let left = listed(&d, "198.51.100.9").unwrap()["expires_in_secs"]
        .as_f64()
        .unwrap();
    assert!(left > 290.0 && left <= 300.0, "{left}");
    // Still alive and answering.
    d.ok(&["block", "list"]);
    d.ok(&["status"]);
}

#[test]
fn a_client_that_goes_away_cancels_its_import() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(1).unwrap();
    let (d, _cfg) = start_on_lab(
        &lab,
        "cancel.toml",
        "[ebpf]\nblocklist_max_entries = 400000\n",
    );
    let mut prefixes = String::new();
    for i in 0..300_000u32 {
        if i > 0 {
            prefixes.push(',');
        }
        prefixes.push_str(&format!(
            "\"10.{}.{}.{}\"",
            i >> 16,
            (i >> 8) & 255,
            i & 255
        ));
    }
    let body = format!("{{\"prefixes\":[{prefixes}],\"reason\":\"import\",\"import\":true}}");
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.write_all(http_head("POST", "/v1/blocks?progress=true", body.len()).as_bytes())
        .unwrap();
    s.write_all(body.as_bytes()).unwrap();
    // Wait for the first progress line, then go away (as ^C does).
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("{\"progress\":") {
        s.read_exact(&mut byte).unwrap();
        seen.push(byte[0]);
        assert!(seen.len() < 4096, "{}", String::from_utf8_lossy(&seen));
    }
    drop(s);
    d.wait_for_stderr("cancelled by its client");
    let status = d.json(&["status"]);
    assert_eq!(status["maps"]["blocks"], 0, "nothing applied: {status}");
    assert!(
        d.json(&["block", "list"])["entries"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // The daemon goes on.
    d.ok(&["block", "add", "10.0.0.1"]);
    // The import's rows, saved while it was being applied, were taken
    // back out of the store: a restart brings back the one block only.
    let cfg = _cfg.path().to_owned();
    d.signal(libc::SIGTERM);
    let (status, dir) = d.wait_keeping_dir();
    assert!(status.success(), "{status}");
    let mut args = run_on(&lab).to_vec();
    args.extend_from_slice(&["-c", &cfg]);
    let d = Daemon::start_in(dir, &args);
    d.wait_for_stderr("ready:");
    let status = d.json(&["status"]);
    assert_eq!(status["maps"]["blocks"], 1, "only 10.0.0.1: {status}");
}

#[test]
fn an_import_larger_than_the_block_list_is_refused_and_never_saved() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(1).unwrap();
    let (d, cfg) = start_on_lab(
        &lab,
        "too-big.toml",
        "[ebpf]\nblocklist_max_entries = 20000\n",
    );
    let body = import_body(30_000, u32::from(std::net::Ipv4Addr::new(20, 0, 0, 0)));
    let (code, answer) = raw_request(&d.socket(), "POST", "/v1/blocks", &body);
    assert_eq!(code, 507, "{answer}");
    assert_eq!(answer["kind"], "capacity", "{answer}");
    assert!(
        answer.to_string().contains("nothing was changed"),
        "{answer}"
    );
    assert_eq!(d.json(&["status"])["maps"]["blocks"], 0);
    // Nothing of it reached the store either.
    d.signal(libc::SIGTERM);
    let (status, dir) = d.wait_keeping_dir();
    assert!(status.success(), "{status}");
    let mut args = run_on(&lab).to_vec();
    args.extend_from_slice(&["-c", cfg.path()]);
    let d = Daemon::start_in(dir, &args);
    let restored = d.wait_for_stderr("restored");
    assert!(restored.contains("restored 0 blocks"), "{restored}");
}

#[test]
fn sighup_on_an_empty_config_keeps_every_rule() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(1).unwrap();
    let peer = lab.peer_addr(0);
    let (d, cfg) = start_on_lab(
        &lab,
        "empty-reload.toml",
        &format!("[[ebpf.rules]]\nid = \"lab-peer\"\nsrc = \"{peer}\"\naction = \"drop\"\n"),
    );
    assert_eq!(lab.ping(peer, 2).unwrap(), 0);
    // An editor that truncates the file before writing it.
    std::fs::write(cfg.path(), "").unwrap();
    d.signal(libc::SIGHUP);
    let line = d.wait_for_stderr("reload refused");
    assert!(line.contains("is empty"), "{line}");
    assert_eq!(lab.ping(peer, 3).unwrap(), 0, "the rule still drops");
    let o = d.ctl(&["reload"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is empty"), "{}", stderr(&o));
    // An unreadable file (a directory in its place) is refused too.
    std::fs::remove_file(cfg.path()).unwrap();
    std::fs::create_dir(cfg.path()).unwrap();
    let o = d.ctl(&["reload"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("the running configuration stays"));
    std::fs::remove_dir(cfg.path()).unwrap();
    assert_eq!(lab.ping(peer, 2).unwrap(), 0);
}

#[test]
fn an_oversized_request_is_refused_and_the_daemon_goes_on() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(1).unwrap();
    let d = start_on_lab_with(&lab, &[]);
    // A declared 257 MiB is refused before it is read.
    let (status, v) = raw_request(&d.socket(), "POST", "/v1/blocks", &"x".repeat(0));
    assert_eq!(status, 400, "an empty body is a bad request: {v}");
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.write_all(http_head("POST", "/v1/blocks", 257 << 20).as_bytes())
        .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("request larger than 256 MiB"), "{text}");
    // 257 MiB of unknown length (chunked) is read up to the limit, then
    // refused.
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.write_all(
        b"POST /v1/blocks HTTP/1.1\r\nHost: ironpost\r\nTransfer-Encoding: chunked\r\n\
          Connection: close\r\n\r\n",
    )
    .unwrap();
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0;
    for _ in 0..257 {
        let ok = s
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .and_then(|()| s.write_all(&chunk))
            .and_then(|()| s.write_all(b"\r\n"));
        if ok.is_err() {
            break;
        }
        sent += 1;
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    assert!(sent >= 256, "the daemon read {sent} MiB");
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    // An unknown request and a body that is not the API's.
    let (status, v) = raw_request(&d.socket(), "POST", "/v1/nothing", "{}");
    assert_eq!(
        (status, &v["kind"]),
        (400, &Value::from("bad_request")),
        "{v}"
    );
    let (status, v) = raw_request(
        &d.socket(),
        "DELETE",
        "/v1/blocks",
        "{\"prefixes\":[\"10.0.0.1/8\"]}",
    );
    assert_eq!(status, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("host bits"), "{v}");
    // Small requests are read while a large one is in progress, and the
    // daemon still answers afterwards.
    d.ok(&["status"]);
}

#[test]
fn operator_input_without_surprises() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(1).unwrap();
    let d = start_on_lab_with(&lab, &[]);
    // The daemon says what it is.
    let status = d.json(&["status"]);
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert!(d.ok(&["status"]).contains(env!("CARGO_PKG_VERSION")));
    // One address twice is one entry.
    let out = d.ok(&["block", "add", "198.51.100.7", "198.51.100.7"]);
    assert!(out.contains("blocked 1 entry (1 new"), "{out}");
    // Every address of a family needs --force.
    for all in ["0.0.0.0/0", "::/0"] {
        let o = d.ctl(&["block", "add", all]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    }
    d.ok(&["block", "add", "::/0", "--force"]);
    d.ok(&["block", "del", "::/0"]);
    let list = TempFile::new("force.netset", "0.0.0.0/0\n");
    let o = d.ctl(&["block", "import", list.path()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    // Escape sequences in a reason reach the table escaped.
    d.ok(&[
        "block",
        "add",
        "198.51.100.8",
        "--reason",
        "x\u{1b}[2J\u{1b}]0;owned\u{7}y",
    ]);
    let table = d.ok(&["block", "list"]);
    assert!(
        !table.contains('\u{1b}') && !table.contains('\u{7}'),
        "{table:?}"
    );
    assert!(table.contains("x\\u{1b}[2J"), "{table}");
    // `block import -` reads standard input.
    let mut lines = String::new();
    for i in 0..5_000u32 {
        lines.push_str(&format!("10.{}.{}.0/24\n", i >> 8, i & 255));
    }
    let mut child = Command::new(common::BIN)
        .arg("--socket")
        .arg(d.socket())
        .args(["block", "import", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("imported 5000 entries from (standard input)"),
        "{out}"
    );
    // A list cut short by `head` ends quietly.
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} --socket {} block list | head -1",
            common::BIN,
            d.socket().display()
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
}

#[test]
fn check_config_names_line_column_and_missing_interfaces() {
    let bad = TempFile::new(
        "syntax.toml",
        "[ebpf]\ninterfaces = [\"lo\"\nxdp_mode = \"skb\"\n",
    );
    let o = ironpost(&["check-config", "-c", bad.path()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains(&format!("{}:3:1: ", bad.path())), "{err}");
    let missing = TempFile::new(
        "missing-if.toml",
        "[ebpf]\ninterfaces = [\"lo\", \"ipnosuch0\"]\n",
    );
    let o = ironpost(&["check-config", "-c", missing.path()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("ipnosuch0 does not exist on this host") && !err.contains("lo does not"),
        "{err}"
    );
}

/// `GET path` over HTTP/1.1 on `addr`; returns the status line and body.
#[test]
fn metrics_pass_promtool_and_count_what_was_sent() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(2).unwrap();
    let (blocked, good) = (lab.peer_addr(0), lab.peer_addr(1));
    let (d, _cfg) = start_on_lab(
        &lab,
        "metrics.toml",
        &format!(
            "[daemon]\nmetrics_listen = \"127.0.0.1:0\"\n\n[[ebpf.rules]]\nid = \"lab-good\"\n\
             src = \"{good}\"\naction = \"monitor\"\n\n[[ebpf.rules]]\nid = \"no-telnet\"\n\
             protocol = \"tcp\"\ndst_port = 23\naction = \"drop\"\n"
        ),
    );
    let addr = d.metrics_addr();
    let (status, body) = http_get(&addr, "/healthz");
    assert!(status.contains("200"), "{status} {body}");

    d.ok(&["block", "add", &blocked.to_string()]);
    assert_eq!(lab.send_udp(blocked, 9, 777, 100).unwrap(), 777);
    assert_eq!(lab.ping(good, 5).unwrap(), 5);
    let host_if = lab.host_if();
    let series = format!("ironpost_drops_total{{interface=\"{host_if}\",class=\"udp\"}}");
    let series = series.as_str();
    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        let (status, body) = http_get(&addr, "/metrics");
        assert!(status.contains("200"), "{status}");
        if sample(&body, series) == Some(777) || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(sample(&body, series), Some(777), "{body}");
    assert_eq!(
        sample(&body, "ironpost_block_entries{origin=\"manual\"}"),
        Some(1)
    );
    let of = |name: &str, class: &str| {
        sample(
            &body,
            &format!("ironpost_{name}{{interface=\"{host_if}\",class=\"{class}\"}}"),
        )
    };
    assert!(of("packets_total", "icmp").unwrap() >= 5, "{body}");
    assert_eq!(of("drops_total", "icmp"), Some(0));
    // Ethernet, IPv4 and UDP headers around each 100-byte payload: the
    // frame as the program sees it.
    assert_eq!(
        of("received_bytes_total", "udp"),
        Some(777 * (14 + 20 + 8 + 100))
    );
    // The configured rules' hits: the monitored peer's 5 echo requests.
    assert_eq!(
        sample(
            &body,
            "ironpost_rule_hits_total{rule=\"lab-good\",kind=\"address\"}"
        ),
        Some(5),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            "ironpost_rule_hits_total{rule=\"no-telnet\",kind=\"port\"}"
        ),
        Some(0)
    );
    assert!(
        sample(
            &body,
            "ironpost_rule_matched_bytes_total{rule=\"lab-good\",kind=\"address\"}"
        )
        .unwrap()
            >= 5 * 84
    );
    assert!(sample(&body, "process_resident_memory_bytes").unwrap() > 0);
    assert!(body.contains(&format!(
        "ironpost_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    // Every series the Grafana dashboard queries is in the scrape.
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/grafana/ironpost.json"
    ))
    .unwrap();
    let dashboard: Value = serde_json::from_str(&dashboard).unwrap();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("ironpost_") || w.starts_with("process_"))
            {
                queried += 1;
                assert!(
                    body.contains(&format!("# TYPE {name} ")),
                    "the dashboard's {name} is not scraped"
                );
            }
        }
    }
    assert!(queried > 15, "{queried}");
    // promtool, Prometheus's own checker, reads the live scrape.
    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(body.as_bytes());
    assert!(
        promtool.status.success(),
        "{}{}",
        String::from_utf8_lossy(&promtool.stdout),
        stderr(&promtool)
    );
}

/// Runs a command with `input` on its stdin.
trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output;
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output {
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }
}

#[test]
fn metrics_can_be_turned_off() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(1).unwrap();
    let (d, _cfg) = start_on_lab(
        &lab,
        "nometrics.toml",
        "[daemon]\nmetrics_listen = \"off\"\n",
    );
    assert_eq!(d.json(&["status"])["metrics"], Value::Null);
}

/// A JSON request body blocking `n` addresses from `base` on.
fn import_body(n: u32, base: u32) -> String {
    let mut prefixes = String::with_capacity(n as usize * 16);
    for i in 0..n {
        if i > 0 {
            prefixes.push(',');
        }
        prefixes.push_str(&format!("\"{}\"", std::net::Ipv4Addr::from(base + i)));
    }
    format!("{{\"prefixes\":[{prefixes}],\"reason\":\"import\",\"import\":true,\"list\":\"feed\"}}")
}

#[test]
fn a_large_import_holds_up_nothing_else() {
    if !kernel_tests_enabled() {
        return;
    }
    const N: u32 = 1_500_000;
    let lab = Lab::new(1).unwrap();
    let peer = lab.peer_addr(0);
    let (d, _cfg) = start_on_lab(
        &lab,
        "large-import.toml",
        "[ebpf]\nblocklist_max_entries = 1600000\n",
    );
    let body = import_body(N, u32::from(std::net::Ipv4Addr::new(20, 0, 0, 0)));
    // Due to expire while the import is being applied (it takes seconds).
    d.ok(&["block", "add", "192.0.2.7", "--ttl", "1s"]);
    d.wait_for_stderr("blocked 192.0.2.7");
    let socket = d.socket();
    let (partial, answer) = std::thread::scope(|s| {
        let import = s.spawn(|| raw_request(&socket, "POST", "/v1/blocks", &body));
        // Requests that only read are answered meanwhile: status sees the
        // import part-way.
        let mut partial = None;
        while !import.is_finished() && partial.is_none() {
            let n = d.json(&["status"])["maps"]["blocks"].as_u64().unwrap();
            partial = Some(n).filter(|n| (2..u64::from(N)).contains(n));
        }
        // A change waits for the import, then goes through.
        d.ok(&["block", "add", &peer.to_string()]);
        (partial, import.join().unwrap())
    });
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(answer.1["added"], N, "{}", answer.1);
    let partial = partial.expect("status answered while the import was part-way");
    eprintln!("status saw {partial} of {N} entries");
    // In the log: the TTL expires before the import ends (when the import
    // was slow to arrive, before it starts: the order of these two is not
    // asserted), the import ends, and only then is the change that waited
    // applied.
    d.wait_for_stderr("block on src 192.0.2.7 expired");
    d.wait_for_stderr(&format!("imported {N} entries"));
    d.wait_for_stderr(&format!("blocked {peer}"));
    assert_eq!(
        lab.ping(peer, 2).unwrap(),
        0,
        "the waiting change is enforced"
    );
    assert_eq!(
        d.json(&["status"])["maps"]["blocks"],
        u64::from(N) + 1,
        "the import and the change, not the expired entry"
    );
    // A sync that keeps 20,000 of them: its removals go the same way.
    let keep = import_body(20_000, u32::from(std::net::Ipv4Addr::new(20, 0, 0, 0)));
    let (code, synced) = raw_request(&d.socket(), "POST", "/v1/blocks/sync", &keep);
    assert_eq!(code, 200, "{synced}");
    assert_eq!(synced["removed"], N - 20_000, "{synced}");
    assert_eq!(synced["updated"], 20_000, "{synced}");
    d.wait_for_stderr(&format!(
        "list feed synced: 0 added, 20000 updated, {} removed",
        N - 20_000
    ));
    assert_eq!(d.json(&["status"])["maps"]["blocks"], 20_001);
    // What is saved is what is enforced.
    let cfg = _cfg.path().to_owned();
    d.signal(libc::SIGTERM);
    let (status, dir) = d.wait_keeping_dir();
    assert!(status.success(), "{status}");
    let mut args = run_on(&lab).to_vec();
    args.extend_from_slice(&["-c", &cfg]);
    let d = Daemon::start_in(dir, &args);
    let restored = d.wait_for_stderr("restored");
    assert!(restored.contains("restored 20001 blocks"), "{restored}");
}

#[test]
fn kill_9_during_an_import_leaves_all_of_it_or_none() {
    if !kernel_tests_enabled() {
        return;
    }
    const N: u32 = 100_000;
    let lab = Lab::new(1).unwrap();
    let cfg = TempFile::new(
        "kill-import.toml",
        "[ebpf]\nblocklist_max_entries = 200000\n",
    );
    let run = {
        let mut r = run_on(&lab).to_vec();
        r.extend_from_slice(&["-c", cfg.path()]);
        r
    };
    let body = import_body(N, u32::from(std::net::Ipv4Addr::new(20, 0, 0, 0)));
    // Kill points spread over the import, from a seed the failure names.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mut x = seed | 1;
    let mut d = Daemon::start(&run);
    d.wait_for_stderr("ready:");
    d.ok(&["block", "add", "192.0.2.1"]);
    let mut outcomes = Vec::new();
    for round in 0..4 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        // The last round waits for the answer: the import is all there.
        let progress_lines = if round == 3 { u32::MAX } else { x % 14 };
        let mut s = UnixStream::connect(d.socket()).unwrap();
        s.write_all(http_head("POST", "/v1/blocks?progress=true", body.len()).as_bytes())
            .unwrap();
        s.write_all(body.as_bytes()).unwrap();
        // Past `progress_lines` lines of progress (or the answer), the
        // daemon dies.
        let mut seen = String::new();
        let mut byte = [0u8; 1];
        while seen.matches("{\"progress\":").count() < progress_lines as usize
            && !seen.contains("\n{\"done\":")
            && s.read_exact(&mut byte).is_ok()
        {
            seen.push(byte[0] as char);
        }
        let dir = d.crash();
        d = Daemon::start_in(dir, &run);
        d.wait_for_stderr("ready:");
        let blocks = d.json(&["status"])["maps"]["blocks"].as_u64().unwrap();
        let listed = d.json(&["block", "list", "--list", "feed"])["entries"]
            .as_array()
            .unwrap()
            .len() as u64;
        assert!(
            blocks == 1 || blocks == u64::from(N) + 1,
            "round {round} (seed {seed}, killed after {progress_lines} progress lines): \
             {blocks} blocks after the restart"
        );
        assert_eq!(listed + 1, blocks, "the store and the kernel agree");
        if round == 3 {
            assert_eq!(
                blocks,
                u64::from(N) + 1,
                "acknowledged, so restored: {seen}"
            );
        }
        outcomes.push(blocks);
        if blocks > 1 {
            d.ok(&["block", "flush", "--list", "feed"]);
        }
    }
    eprintln!("seed {seed}: blocks after each restart {outcomes:?}");
}

#[test]
fn a_million_entries_are_restored_at_start() {
    if !kernel_tests_enabled() {
        return;
    }
    const N: u32 = 1_000_000;
    let lab = Lab::new(1).unwrap();
    let cfg = TempFile::new("million.toml", "[ebpf]\nblocklist_max_entries = 1000016\n");
    let mut run = run_on(&lab).to_vec();
    run.extend_from_slice(&["-c", cfg.path()]);
    let d = Daemon::start(&run);
    d.wait_for_stderr("ready:");
    let t = Instant::now();
    let (status, v) = raw_request(
        &d.socket(),
        "POST",
        "/v1/blocks",
        &import_body(N, u32::from(std::net::Ipv4Addr::new(20, 0, 0, 0))),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["added"], N, "{v}");
    eprintln!("imported {N} in {:?}", t.elapsed());
    d.signal(libc::SIGTERM);
    let (status, dir) = d.wait_keeping_dir();
    assert!(status.success());
    let t = Instant::now();
    let d = Daemon::start_in(dir, &run);
    // (Restoring a million entries takes a while in a debug build.)
    let restored = d.wait_for_stderr_within("restored", Duration::from_secs(300));
    d.wait_for_stderr("ready:");
    eprintln!("restarted in {:?}", t.elapsed());
    assert!(
        restored.contains(&format!("restored {N} blocks")),
        "{restored}"
    );
    assert_eq!(d.json(&["status"])["maps"]["blocks"], N);
    // The restored entries are in the kernel: the last one drops.
    let last = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(20, 0, 0, 0)) + N - 1);
    let shown = d.json(&["block", "show", &last.to_string()]);
    assert!(
        shown["verdict"].as_str().unwrap().contains("drop"),
        "{shown}"
    );
}
