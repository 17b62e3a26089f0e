//! A network namespace joined to the host by a veth pair.
//!
//! The host end gets `10.X.Y.1/24`, the namespace end `.2`, `.3`, ... (one
//! address per peer). IPv6 is off on both ends and neighbours are static, so
//! the only packets arriving on the host end are the ones a test sends: the
//! counters can be checked exactly. Everything is removed on drop, also when
//! a test panics, and labs left behind by dead processes are removed when a
//! new one is made.

use std::{
    fs::File,
    io,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::AsRawFd,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

/// Prefix of the namespaces a lab creates.
const NS_PREFIX: &str = "ipl-";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A command could not be started.
    #[error("could not run `{cmd}`: {source}")]
    Spawn {
        /// The command line.
        cmd: String,
        /// Why.
        source: io::Error,
    },
    /// A command failed.
    #[error("`{cmd}` failed: {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A system call or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: io::Error,
    },
}

fn run(program: &str, args: &[&str]) -> Result<Output, LabError> {
    let cmd = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| LabError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

fn ip(args: &[&str]) -> Result<Output, LabError> {
    run("ip", args)
}

/// A namespace, a veth pair into it, and addresses on both ends.
#[derive(Debug)]
pub struct Lab {
    ns: String,
    host_if: String,
    peer_if: String,
    host_addr: Ipv4Addr,
    peer_addrs: Vec<Ipv4Addr>,
    /// The routing table that keeps everything the host sends from its
    /// lab address inside the lab (see [`Lab::reply_table`]).
    table: u32,
}

impl Lab {
    /// Creates a lab with `peers` addresses (at least one) on the namespace end.
    pub fn new(peers: usize) -> Result<Self, LabError> {
        remove_stale();
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let second = 200 + (pid % 50) as u8;
        let third = (n % 250) as u8;
        let lab = Self {
            ns: format!("{NS_PREFIX}{pid}-{n}"),
            host_if: format!("ipl{pid:x}{n}h"),
            peer_if: format!("ipl{pid:x}{n}p"),
            host_addr: Ipv4Addr::new(10, second, third, 1),
            peer_addrs: (0..peers.clamp(1, 200))
                .map(|i| Ipv4Addr::new(10, second, third, 2 + i as u8))
                .collect(),
            table: reply_table(pid, n),
        };
        // From here on, Drop removes whatever was made.
        lab.build()?;
        Ok(lab)
    }

    fn build(&self) -> Result<(), LabError> {
        ip(&["netns", "add", &self.ns])?;
        // Whatever the host sends from its lab address (its answers to the
        // spoofed sources of a flood: RSTs, ICMP errors) is routed into the
        // lab, never out of the machine, whatever its destination.
        let (table, from) = (self.table.to_string(), self.host_addr.to_string());
        ip(&[
            "rule",
            "add",
            "from",
            &from,
            "lookup",
            &table,
            "priority",
            RULE_PRIORITY,
        ])?;
        self.build_link()
    }

    /// Deletes the veth pair (both ends), as an operator or a network
    /// manager might; the namespace stays.
    pub fn delete_link(&self) -> Result<(), LabError> {
        ip(&["link", "del", &self.host_if]).map(drop)
    }

    /// Creates the veth pair again, with the same names, addresses and
    /// neighbours (the devices get new indexes).
    pub fn restore_link(&self) -> Result<(), LabError> {
        self.build_link()
    }

    fn build_link(&self) -> Result<(), LabError> {
        let (ns, host, peer) = (
            self.ns.as_str(),
            self.host_if.as_str(),
            self.peer_if.as_str(),
        );
        ip(&["link", "add", host, "type", "veth", "peer", "name", peer])?;
        ip(&["link", "set", peer, "netns", ns])?;
        disable_ipv6(host)?;
        ip(&[
            "netns",
            "exec",
            ns,
            "sh",
            "-c",
            &format!(
                "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && echo 1 > /proc/sys/net/ipv6/conf/{peer}/disable_ipv6"
            ),
        ])?;
        let host_cidr = format!("{}/24", self.host_addr);
        ip(&["addr", "add", &host_cidr, "dev", host])?;
        for a in &self.peer_addrs {
            ip(&["-n", ns, "addr", "add", &format!("{a}/24"), "dev", peer])?;
        }
        ip(&["link", "set", host, "up"])?;
        ip(&["-n", ns, "link", "set", peer, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        // The lab address's own table: everything into the namespace (which
        // does not forward: it drops what is not its own), and a blackhole
        // behind it while the link is down.
        let table = self.table.to_string();
        let via = self.peer_addrs[0].to_string();
        let net = format!("{}/24", Ipv4Addr::from(u32::from(self.host_addr) & !0xff));
        ip(&[
            "route",
            "replace",
            &net,
            "dev",
            host,
            "src",
            &self.host_addr.to_string(),
            "table",
            &table,
        ])?;
        ip(&[
            "route", "replace", "default", "via", &via, "dev", host, "table", &table,
        ])?;
        ip(&[
            "route",
            "replace",
            "blackhole",
            "default",
            "table",
            &table,
            "metric",
            "4096",
        ])?;
        // Static neighbours: no ARP on the wire, and no packet waits for it.
        let host_mac = std::fs::read_to_string(format!("/sys/class/net/{host}/address")).map_err(
            |source| LabError::Io {
                what: format!("reading the MAC address of {host}"),
                source,
            },
        )?;
        let peer_mac = String::from_utf8_lossy(
            &ip(&[
                "netns",
                "exec",
                ns,
                "cat",
                &format!("/sys/class/net/{peer}/address"),
            ])?
            .stdout,
        )
        .trim()
        .to_owned();
        let host_addr = self.host_addr.to_string();
        ip(&[
            "-n",
            ns,
            "neigh",
            "replace",
            &host_addr,
            "lladdr",
            host_mac.trim(),
            "dev",
            peer,
            "nud",
            "permanent",
        ])?;
        for a in &self.peer_addrs {
            ip(&[
                "neigh",
                "replace",
                &a.to_string(),
                "lladdr",
                &peer_mac,
                "dev",
                host,
                "nud",
                "permanent",
            ])?;
        }
        Ok(())
    }

    /// Name of the namespace.
    pub fn ns(&self) -> &str {
        &self.ns
    }
    /// The veth end on the host (where Ironpost attaches).
    pub fn host_if(&self) -> &str {
        &self.host_if
    }
    /// The veth end inside the namespace.
    pub fn peer_if(&self) -> &str {
        &self.peer_if
    }
    /// Address of the host end.
    pub fn host_addr(&self) -> Ipv4Addr {
        self.host_addr
    }
    /// The `i`-th address of the namespace end.
    pub fn peer_addr(&self, i: usize) -> Ipv4Addr {
        self.peer_addrs[i]
    }

    /// Runs `f` on a thread that has entered the namespace; sockets it
    /// creates live there.
    pub fn in_ns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, LabError> {
        let path = format!("/var/run/netns/{}", self.ns);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).map_err(|source| LabError::Io {
                    what: format!("opening {path}"),
                    source,
                })?;
                // SAFETY: setns changes the namespace of this thread only,
                // which exists just to run `f`; the fd is valid.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(LabError::Io {
                        what: format!("entering namespace {}", self.ns),
                        source: io::Error::last_os_error(),
                    });
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output, LabError> {
        let mut all = vec!["netns", "exec", self.ns.as_str(), program];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Sends `count` UDP datagrams of `payload` bytes from the peer address
    /// `from` to the host end's `port`; returns how many the socket accepted.
    pub fn send_udp(
        &self,
        from: Ipv4Addr,
        port: u16,
        count: usize,
        payload: usize,
    ) -> Result<usize, LabError> {
        let to = SocketAddrV4::new(self.host_addr, port);
        self.in_ns(move || -> Result<usize, LabError> {
            let io_err = |what: &str| {
                let what = what.to_owned();
                move |source| LabError::Io { what, source }
            };
            let sock = UdpSocket::bind(SocketAddrV4::new(from, 0))
                .map_err(io_err(&format!("binding a UDP socket to {from}")))?;
            let buf = vec![0x5a; payload];
            let mut sent = 0;
            for _ in 0..count {
                sock.send_to(&buf, to)
                    .map_err(io_err(&format!("sending to {to}")))?;
                sent += 1;
            }
            Ok(sent)
        })?
    }

    /// Pings the host end from `from` `count` times; returns the replies.
    pub fn ping(&self, from: Ipv4Addr, count: u32) -> Result<u32, LabError> {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &self.ns, "ping", "-q", "-n", "-i", "0.01", "-W", "1",
            ])
            .args(["-c", &count.to_string(), "-I", &from.to_string()])
            .arg(self.host_addr.to_string())
            .output()
            .map_err(|source| LabError::Spawn {
                cmd: "ip netns exec ... ping".into(),
                source,
            })?;
        // ping exits 1 when some replies are missing; that is an answer too.
        let text = String::from_utf8_lossy(&out.stdout);
        parse_ping_received(&text).ok_or_else(|| LabError::Command {
            cmd: "ping".into(),
            stderr: format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
        })
    }
}

/// Whether `ip link` shows an XDP program on `iface` (in this namespace).
pub fn xdp_attached(iface: &str) -> bool {
    Command::new("ip")
        .args(["-d", "link", "show", "dev", iface])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("prog/xdp"))
}

/// The `M` of ping's `N packets transmitted, M received` line.
pub fn parse_ping_received(text: &str) -> Option<u32> {
    let line = text.lines().find(|l| l.contains("packets transmitted"))?;
    let part = line.split(',').nth(1)?;
    part.split_whitespace().next()?.parse().ok()
}

fn disable_ipv6(dev: &str) -> Result<(), LabError> {
    let path = format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
    match std::fs::write(&path, "1") {
        Ok(()) => Ok(()),
        // No IPv6 in this kernel: nothing to disable.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(LabError::Io {
            what: format!("writing {path}"),
            source,
        }),
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        remove_reply_table(self.table);
        // Deleting one end of a veth pair deletes both.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        // The kernel frees the namespace's devices asynchronously.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Priority of the labs' source rules: before the main table (32766).
const RULE_PRIORITY: &str = "1000";
/// Marks the routing tables of labs (bit 30).
const TABLE_MARK: u32 = 1 << 30;

/// The routing table of lab `n` of process `pid`.
fn reply_table(pid: u32, n: u32) -> u32 {
    TABLE_MARK | ((pid & 0x3f_ffff) << 8) | (n & 0xff)
}

/// Removes a lab's source rule and its table's routes.
fn remove_reply_table(table: u32) {
    let table = table.to_string();
    while Command::new("ip")
        .args(["rule", "del", "lookup", &table])
        .output()
        .is_ok_and(|o| o.status.success())
    {}
    let _ = Command::new("ip")
        .args(["route", "flush", "table", &table])
        .output();
}

/// Removes labs whose creating process is gone.
fn remove_stale() {
    if let Ok(out) = Command::new("ip").args(["rule", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(table) = line
                .split_whitespace()
                .skip_while(|w| *w != "lookup")
                .nth(1)
                .and_then(|t| t.parse::<u32>().ok())
            else {
                continue;
            };
            let pid = (table & !TABLE_MARK) >> 8;
            if table & TABLE_MARK != 0 && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                remove_reply_table(table);
            }
        }
    }
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ping_summary() {
        let text = "PING 10.0.0.1 (10.0.0.1) from 10.0.0.2 : 56(84) bytes of data.\n\n--- 10.0.0.1 ping statistics ---\n5 packets transmitted, 3 received, 40% packet loss, time 41ms\n";
        assert_eq!(parse_ping_received(text), Some(3));
        assert_eq!(parse_ping_received("nothing"), None);
    }

    #[test]
    fn lab_is_created_and_removed() {
        if !crate::kernel_tests_enabled() {
            return;
        }
        let lab = Lab::new(2).unwrap();
        let (ns, host) = (lab.ns().to_owned(), lab.host_if().to_owned());
        assert!(host.len() <= 15);
        assert!(std::path::Path::new(&format!("/sys/class/net/{host}")).exists());
        assert_eq!(lab.ping(lab.peer_addr(1), 2).unwrap(), 2);
        assert_eq!(lab.send_udp(lab.peer_addr(0), 9, 3, 10).unwrap(), 3);
        drop(lab);
        assert!(!std::path::Path::new(&format!("/sys/class/net/{host}")).exists());
        let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&list.stdout).contains(&ns));
    }
}
