//! A release `ironpost run` on the lab's host veth, driven through its
//! control socket.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail, ensure};

/// A running daemon; killed on drop if [`Daemon::stop`] was not called.
pub struct Daemon {
    child: Option<Child>,
    bin: PathBuf,
    socket: PathBuf,
}

impl Daemon {
    /// Writes `config` to `dir` and starts the daemon on `iface`; returns
    /// once it logs "ready:".
    pub fn start(bin: &Path, iface: &str, dir: &Path, config: &str) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let cfg = dir.join("ironpost.toml");
        std::fs::write(&cfg, config).with_context(|| format!("writing {}", cfg.display()))?;
        let socket = dir.join("ctl.sock");
        let state = dir.join("state.json");
        let _ = std::fs::remove_file(&state);
        let mut child = Command::new(bin)
            .args(["run", "--interface", iface, "--stats-interval", "0"])
            // Each receiver leaves the veth bare for the next one.
            .args(["--on-exit", "detach", "--pin-dir", "off"])
            .arg("--config")
            .arg(&cfg)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-file")
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let daemon = Self {
            child: Some(child),
            bin: bin.to_owned(),
            socket,
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut log = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("ready:") => return Ok(daemon),
                Ok(line) => log.push(line),
                Err(_) => bail!(
                    "ironpost was not ready within 60 s; its log:\n{}",
                    log.join("\n")
                ),
            }
        }
    }

    /// Runs `ironpost --socket <socket> ARGS` and returns its stdout.
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        let o = Command::new(&self.bin)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .context("running the ironpost client")?;
        ensure!(
            o.status.success(),
            "ironpost {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// The daemon's resident set size in KiB (VmRSS).
    pub fn rss_kib(&self) -> Result<u64> {
        let pid = self.child.as_ref().context("stopped")?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc/PID/status")
    }

    /// Stops it with SIGINT and checks it exits cleanly.
    pub fn stop(mut self) -> Result<()> {
        let mut child = self.child.take().context("stopped twice")?;
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let status = child.wait()?;
        ensure!(status.success(), "ironpost exited with {status}");
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
