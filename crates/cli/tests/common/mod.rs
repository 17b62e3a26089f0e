//! Helpers shared by the end-to-end tests: temporary files, and a daemon
//! with a control socket and state file of its own.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

use ironpost_lab::Lab;
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_ironpost");

pub fn ironpost(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The head of a raw HTTP/1.1 request to the control API.
pub fn http_head(method: &str, path: &str, len: usize) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: ironpost\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n"
    )
}

/// Sends one raw HTTP request to the control socket, past every check of
/// the CLI; returns the answer's status and body.
pub fn http(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = UnixStream::connect(socket).unwrap();
    let mut request = http_head(method, path, body.len()).into_bytes();
    request.extend_from_slice(body.as_bytes());
    // The daemon may answer and close before reading a body it refuses
    // (an unknown path, a declared length over the limit): the write then
    // fails with a broken pipe, and what was read is the answer.
    let _ = s.write_all(&request);
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status: {text}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// `GET path` on the metrics listener at `addr`: the status line and the
/// body.
pub fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// The value of one series (name and labels, exactly) in a scrape.
pub fn sample(body: &str, series: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse::<f64>().unwrap() as u64)
}

/// A file in a fresh temporary folder, removed on drop.
pub struct TempFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TempFile {
    pub fn new(name: &str, text: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ironpost-cli-{}-{}",
            std::process::id(),
            name.replace('.', "-")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        Self { dir, path }
    }
    pub fn path(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running `ironpost run` with a control socket and state file of its
/// own, killed if the test fails before stopping it.
pub struct Daemon {
    child: Child,
    stderr_lines: mpsc::Receiver<String>,
    /// Stdout lines, read as they come so the daemon never blocks on a
    /// full pipe.
    stdout_lines: mpsc::Receiver<String>,
    /// Stdout lines already taken off the channel by `wait_for_stdout`.
    seen_stdout: std::cell::RefCell<Vec<String>>,
    /// Stderr lines already read by a wait.
    seen_stderr: std::cell::RefCell<Vec<String>>,
    dir: PathBuf,
    /// The stdout pipe of a daemon started by [`Daemon::start_unread`],
    /// held open and never read.
    _unread: Option<std::process::ChildStdout>,
}

static DAEMONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Daemon {
    pub fn start(args: &[&str]) -> Self {
        let n = DAEMONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ironpost-d-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self::start_in(dir, args)
    }

    /// Starts a daemon whose stdout is a pipe nobody reads: a consumer
    /// that stopped reading.
    pub fn start_unread(args: &[&str]) -> Self {
        let n = DAEMONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ironpost-d-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self::spawn(dir, args, false)
    }

    /// Starts a daemon using the socket and state file in `dir`.
    pub fn start_in(dir: PathBuf, args: &[&str]) -> Self {
        Self::spawn(dir, args, true)
    }

    /// Starts `bin` (another build of ironpost) as [`Self::start_in`] does.
    pub fn start_bin(bin: &Path, dir: PathBuf, args: &[&str]) -> Self {
        Self::spawn_bin(bin, dir, args, true)
    }

    /// The pin directory of the daemons whose files are in `dir`: one per
    /// test, so that no test takes over or removes another's filter.
    pub fn pin_dir_of(dir: &Path) -> PathBuf {
        Path::new("/sys/fs/bpf/ironpost-tests").join(dir.file_name().expect("a named dir"))
    }

    fn spawn(dir: PathBuf, args: &[&str], read_stdout: bool) -> Self {
        Self::spawn_bin(Path::new(BIN), dir, args, read_stdout)
    }

    fn spawn_bin(bin: &Path, dir: PathBuf, args: &[&str], read_stdout: bool) -> Self {
        // `run` gets this test's own pin directory, and detaches on exit
        // unless the test says otherwise (the default, keep, is tested
        // where it is asked for).
        let mut extra: Vec<std::ffi::OsString> = Vec::new();
        if args.first() == Some(&"run") {
            if !args.contains(&"--pin-dir") {
                extra.push("--pin-dir".into());
                extra.push(Self::pin_dir_of(&dir).into());
            }
            if !args.contains(&"--on-exit") {
                extra.push("--on-exit".into());
                extra.push("detach".into());
            }
        }
        let mut child = Command::new(bin)
            .args(args)
            .args(extra)
            .arg("--socket")
            .arg(dir.join("ctl.sock"))
            .arg("--state-file")
            .arg(dir.join("state.json"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[ironpost] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let out = child.stdout.take().unwrap();
        let (otx, orx) = mpsc::channel();
        let unread = if read_stdout {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if otx.send(line).is_err() {
                        break;
                    }
                }
            });
            None
        } else {
            Some(out)
        };
        Self {
            child,
            stderr_lines: rx,
            stdout_lines: orx,
            seen_stdout: std::cell::RefCell::new(Vec::new()),
            seen_stderr: std::cell::RefCell::new(Vec::new()),
            dir,
            _unread: unread,
        }
    }

    /// Waits up to `timeout` for a stdout JSON line `pred` accepts.
    pub fn wait_for_stdout(
        &self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.stdout_lines.recv_timeout(left).ok()?;
            self.seen_stdout.borrow_mut().push(line.clone());
            let v: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
            if pred(&v) {
                return Some(v);
            }
        }
    }

    /// Where the daemon serves its metrics (`host:port`), from `status`.
    pub fn metrics_addr(&self) -> String {
        let url = self.json(&["status"])["metrics"]
            .as_str()
            .expect("metrics are on")
            .to_owned();
        url.strip_prefix("http://")
            .and_then(|u| u.strip_suffix("/metrics"))
            .expect("a metrics URL")
            .to_owned()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("ctl.sock")
    }

    /// Runs an `ironpost` control command against this daemon.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a control command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.ctl(args);
        assert!(o.status.success(), "ironpost {args:?}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs a control command with `--json` and parses its output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// A stderr line with `needle` since the daemon started, including the
    /// lines an earlier wait read (what a background task says may come
    /// before "ready:").
    pub fn said(&self, needle: &str) -> String {
        if let Some(l) = self
            .seen_stderr
            .borrow()
            .iter()
            .find(|l| l.contains(needle))
        {
            return l.clone();
        }
        self.wait_for_stderr(needle)
    }

    pub fn wait_for_stderr(&self, needle: &str) -> String {
        self.wait_for_stderr_within(needle, Duration::from_secs(20))
    }

    /// As [`Self::wait_for_stderr`], with at most `quiet` between lines.
    pub fn wait_for_stderr_within(&self, needle: &str, quiet: Duration) -> String {
        loop {
            match self.stderr_lines.recv_timeout(quiet) {
                Ok(line) if line.contains(needle) => {
                    self.seen_stderr.borrow_mut().push(line.clone());
                    return line;
                }
                Ok(line) => self.seen_stderr.borrow_mut().push(line),
                Err(e) => panic!("no stderr line with {needle:?}: {e}"),
            }
        }
    }

    /// Kills the daemon with SIGKILL and returns its folder, which is kept
    /// (socket file and state) for a restart with [`Daemon::start_in`].
    pub fn crash(mut self) -> PathBuf {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
        std::mem::take(&mut self.dir)
    }

    /// Waits for the daemon to exit (after a signal) and hands its
    /// directory, socket, state file and pins to the next daemon.
    pub fn wait_keeping_dir(mut self) -> (std::process::ExitStatus, PathBuf) {
        let status = self.child.wait().unwrap();
        (status, std::mem::take(&mut self.dir))
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    pub fn finish(mut self) -> (std::process::ExitStatus, Vec<Value>) {
        let status = self.child.wait().unwrap();
        let mut all = std::mem::take(&mut *self.seen_stdout.borrow_mut());
        // The reader thread ends at EOF, which follows the exit.
        while let Ok(l) = self.stdout_lines.recv_timeout(Duration::from_secs(5)) {
            all.push(l);
        }
        let lines = all
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
            .collect();
        (status, lines)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The filter a killed daemon leaves pinned goes with its test (not
        // after `crash`, which hands the directory to the next daemon).
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(Self::pin_dir_of(&self.dir));
        }
        if !std::thread::panicking() && !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A daemon on the lab's host interface (skb mode, no stats lines) with the
/// configuration `config`, once it is ready.
pub fn start_on_lab(lab: &Lab, name: &str, config: &str) -> (Daemon, TempFile) {
    let cfg = TempFile::new(name, config);
    let d = start_on_lab_with(lab, &["-c", cfg.path()]);
    (d, cfg)
}

/// A daemon on the lab's host interface (skb mode, no stats lines) with
/// the extra `run` arguments `extra`, once it is ready.
pub fn start_on_lab_with(lab: &Lab, extra: &[&str]) -> Daemon {
    let mut args = run_on(lab).to_vec();
    args.extend_from_slice(extra);
    let d = Daemon::start(&args);
    d.wait_for_stderr("ready:");
    d
}

/// `ironpost run` on the lab's host interface, skb mode, no stats lines.
pub fn run_on(lab: &Lab) -> [&str; 7] {
    [
        "run",
        "-i",
        lab.host_if(),
        "--xdp-mode",
        "skb",
        "--stats-interval",
        "0",
    ]
}
