//! `ironpost`: XDP network threat detection and mitigation.

mod client;
mod commands;
mod logging;
mod netset;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{CommandFactory as _, Parser, Subcommand};
use ironpost_core::{
    IronpostConfig, Prefix, XdpMode,
    config::{DEFAULT_CONFIG, DEFAULT_SOCKET, OnExit},
};
use ironpost_policy::ListName;

/// Ironpost: filters and counts every packet in the driver with XDP,
/// reports what it drops and watches, detects SYN floods, port scans and
/// UDP/ICMP floods, and blocks their sources automatically, with an expiry. `ironpost run` is the daemon; the
/// other commands (block, allow, stats, status, reload) talk to it through
/// its control socket and need root.
#[derive(Parser)]
#[command(name = "ironpost", version, propagate_version = true)]
struct Cli {
    /// Control socket of the daemon [default: daemon.socket from the
    /// config for `run`, else /run/ironpost/ironpost.sock]
    #[arg(long, global = true, value_name = "PATH", env = "IRONPOST_SOCKET")]
    socket: Option<PathBuf>,
    /// Log line format on stderr: text, or json (one object per line).
    /// Under systemd's journal, text lines carry no timestamp.
    #[arg(
        long,
        global = true,
        value_name = "FORMAT",
        value_enum,
        default_value_t = logging::LogFormat::Text,
        env = "IRONPOST_LOG_FORMAT"
    )]
    log_format: logging::LogFormat,
    /// Log level (error, warn, info, debug, trace) or a filter such as
    /// "info,ironpost_daemon=debug" [default: IRONPOST_LOG, else info]
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: attach the XDP datapath and enforce the policy.
    ///
    /// Loads the XDP program, writes the configured rules and the blocks
    /// saved by the last run to the kernel, attaches to every interface,
    /// and opens the control socket. Prints one JSON line per dropped or
    /// monitored packet, one per alert ([detection]; schema in
    /// docs/alerts.md), and one stats line every --stats-interval seconds,
    /// on stdout; logs go to stderr. Alerts block their source for a while
    /// unless [response] says otherwise. SIGHUP re-reads the configuration. On
    /// SIGINT or SIGTERM it prints a final stats line, saves its state and
    /// exits 0, leaving the filter attached (pinned) for the next start to
    /// take over without a gap, unless --on-exit detach. Needs root (or
    /// CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON).
    Run(RunArgs),
    /// Check a configuration file and print what it sets up.
    CheckConfig {
        /// The configuration file.
        #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// A live view of the running daemon: traffic per interface and
    /// protocol, top sources, recent alerts, active blocks, losses.
    ///
    /// Refreshed every second; q (or Esc, or ^C) quits.
    Top {
        /// Seconds between refreshes.
        #[arg(long, value_name = "SECS", default_value_t = 1.0)]
        interval: f64,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// bash: `ironpost completions bash > /etc/bash_completion.d/ironpost`;
    /// the Debian package installs them for bash, zsh and fish.
    Completions {
        /// The shell.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (ironpost(8) and one per command) into DIR.
    #[command(hide = true)]
    Manpages {
        /// The directory (created if missing).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Add, remove, list, import, sync or flush source blocks (in named lists)
    /// in the running daemon.
    #[command(subcommand)]
    Block(BlockCmd),
    /// Add, remove or list allow-list entries (sources never dropped).
    #[command(subcommand)]
    Allow(AllowCmd),
    /// Packets, bytes, drops and their rates per protocol.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Interfaces, XDP mode, program id, map fill levels, uptime, events lost,
    /// detection (signals delivered and lost, alerts, automatic blocks).
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make the daemon re-read its configuration (as SIGHUP does). A bad
    /// configuration is refused with its error and the running policy stays.
    Reload,
    /// Remove the XDP filter that a stopped daemon left attached.
    ///
    /// A daemon that stops (or dies) leaves its program attached through
    /// links pinned in bpffs, still dropping what the policy of that moment
    /// drops, so a restart or an upgrade never leaves a gap. This removes
    /// those pins: the interfaces are unfiltered until the next start.
    /// Refused while the daemon runs.
    Unload {
        /// Only these interfaces (repeat); default: every pinned one.
        #[arg(short, long, value_name = "IFACE")]
        interface: Vec<String>,
        /// The pin directory [default: daemon.pin_dir from --config, else
        /// /sys/fs/bpf/ironpost]
        #[arg(long, value_name = "DIR")]
        pin_dir: Option<PathBuf>,
        /// Read daemon.pin_dir from this configuration.
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BlockCmd {
    /// Drop everything from these sources (added, or updated if present).
    Add {
        /// IPv4 or IPv6 addresses or prefixes, e.g. 192.0.2.7 or 2001:db8::/32.
        #[arg(required = true, value_name = "IP|CIDR", value_parser = parse_prefix)]
        prefixes: Vec<Prefix>,
        /// Remove the block after this long (e.g. 90s, 10m, 2h, 7d); kept
        /// across restarts. Without it the block stays until `block del`.
        #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
        ttl: Option<Duration>,
        /// Why, shown by `block list`.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Allow 0.0.0.0/0 or ::/0, which block every address of a family.
        #[arg(long)]
        force: bool,
        /// The list they go into (one per feeder: a fail2ban jail, a feed).
        /// An address in two lists is blocked until it leaves both.
        #[arg(long, value_name = "NAME", default_value = "manual", value_parser = parse_list)]
        list: ListName,
    },
    /// Remove blocks from a list (configured rules are changed in the
    /// configuration). An address also in other lists stays blocked.
    Del {
        /// Addresses or prefixes exactly as blocked.
        #[arg(required = true, value_name = "IP|CIDR", value_parser = parse_prefix)]
        prefixes: Vec<Prefix>,
        /// The list they leave.
        #[arg(long, value_name = "NAME", default_value = "manual", value_parser = parse_list)]
        list: ListName,
    },
    /// Make a list hold exactly the addresses in FILE: the new ones are
    /// added, the others leave the list, in one change.
    ///
    /// FILE is read as `block import` reads it (`-` is standard input).
    /// Addresses in other lists stay as they are.
    Sync {
        /// The list.
        #[arg(long, value_name = "NAME", value_parser = parse_list)]
        list: ListName,
        /// The file; `-` reads standard input.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Expire the list's entries after this long.
        #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
        ttl: Option<Duration>,
        /// Why (default: "sync FILE").
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Report bad lines and use the good ones.
        #[arg(long)]
        skip_invalid: bool,
        /// Allow 0.0.0.0/0 or ::/0 in the file.
        #[arg(long)]
        force: bool,
    },
    /// Remove every entry of a list.
    Flush {
        /// The list.
        #[arg(long, value_name = "NAME", value_parser = parse_list)]
        list: ListName,
    },
    /// List every block with its hits, expiry, reason and list.
    ///
    /// Entries stream from the daemon page by page and are printed as they
    /// come, ordered by direction then prefix; the configured port rules
    /// follow.
    List {
        /// Print one JSON document: {"entries": [...], "port_rules": [...]}.
        #[arg(long, conflicts_with = "ndjson")]
        json: bool,
        /// Print the API's stream: one JSON entry per line.
        #[arg(long)]
        ndjson: bool,
        /// Only this list's entries.
        #[arg(long, value_name = "NAME", value_parser = parse_list)]
        list: Option<ListName>,
    },
    /// Say what decides traffic from (and to) one address: the allow-list
    /// entry that wins, or the block entries that contain it, longest
    /// prefix first, with their hits.
    Show {
        /// An IPv4 or IPv6 address.
        #[arg(value_name = "IP")]
        addr: std::net::IpAddr,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Block every address or prefix in FILE.
    ///
    /// One address or prefix per line; `#` and `;` start comments, so
    /// FireHOL netsets and the Spamhaus DROP list are read as they are.
    /// The import is all or nothing: any bad line (reported with its line
    /// number) stops it before anything changes, unless --skip-invalid; a
    /// file that does not fit in the block list is refused whole. Entries
    /// the configuration already sets are left as they are.
    Import {
        /// The file; `-` reads standard input.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Expire the imported blocks after this long.
        #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
        ttl: Option<Duration>,
        /// Why (default: "import FILE").
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Report bad lines and import the good ones.
        #[arg(long)]
        skip_invalid: bool,
        /// Allow 0.0.0.0/0 or ::/0 in the file.
        #[arg(long)]
        force: bool,
        /// The list they go into.
        #[arg(long, value_name = "NAME", default_value = "manual", value_parser = parse_list)]
        list: ListName,
    },
}

#[derive(Subcommand)]
enum AllowCmd {
    /// Never drop these sources, whatever the rules and blocks say.
    Add {
        /// IPv4 or IPv6 addresses or prefixes.
        #[arg(required = true, value_name = "IP|CIDR", value_parser = parse_prefix)]
        prefixes: Vec<Prefix>,
        /// Why, shown by `allow list`.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Remove allow-list entries added at run time.
    Del {
        /// Addresses or prefixes exactly as added.
        #[arg(required = true, value_name = "IP|CIDR", value_parser = parse_prefix)]
        prefixes: Vec<Prefix>,
    },
    /// List the allow list with hits.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `ironpost run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Interface to attach to; repeat for several (overrides
    /// ebpf.interfaces in the config).
    #[arg(short, long, value_name = "IFACE")]
    pub interface: Vec<String>,
    /// Configuration file (TOML) [default: /etc/ironpost/ironpost.toml if it
    /// exists, else built-in defaults and no rules]
    #[arg(short, long, value_name = "FILE", env = "IRONPOST_CONFIG")]
    pub config: Option<PathBuf>,
    /// native (in the driver), skb (generic, works everywhere) or auto
    /// (native, falling back to skb); overrides ebpf.xdp_mode.
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub xdp_mode: Option<XdpMode>,
    /// Seconds between stats lines; 0 prints only the final one.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub stats_interval: u64,
    /// State file for manual and automatic blocks (overrides
    /// daemon.state_file) [default: /var/lib/ironpost/state.redb]
    #[arg(long, value_name = "PATH")]
    pub state_file: Option<PathBuf>,
    /// Directory in bpffs where the XDP links are pinned, so the filter
    /// outlives the daemon, or "off" (overrides daemon.pin_dir)
    /// [default: /sys/fs/bpf/ironpost]
    #[arg(long, value_name = "DIR")]
    pub pin_dir: Option<PathBuf>,
    /// On exit, keep the filter attached with the policy in force (the next
    /// start takes it over with no gap) or detach it (overrides
    /// daemon.on_exit) [default: keep]
    #[arg(long, value_name = "keep|detach", value_parser = parse_on_exit)]
    pub on_exit: Option<OnExit>,
    /// Set from the global --socket.
    #[arg(skip)]
    pub socket: Option<PathBuf>,
}

impl From<RunArgs> for ironpost_daemon::RunOptions {
    fn from(a: RunArgs) -> Self {
        Self {
            interface: a.interface,
            config: a.config,
            xdp_mode: a.xdp_mode,
            stats_interval: a.stats_interval,
            state_file: a.state_file,
            pin_dir: a.pin_dir,
            on_exit: a.on_exit,
            socket: a.socket,
        }
    }
}

fn parse_list(s: &str) -> Result<ListName, String> {
    ListName::parse(s)
}

fn parse_on_exit(s: &str) -> Result<OnExit, String> {
    s.parse()
}

fn parse_mode(s: &str) -> Result<XdpMode, String> {
    s.parse()
}

fn parse_prefix(s: &str) -> Result<Prefix, String> {
    s.parse()
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    ironpost_core::parse_ttl(s).map_err(|e| e.to_string())
}

fn check_config(path: &std::path::Path) -> anyhow::Result<()> {
    let cfg = IronpostConfig::load(path)?;
    let e = &cfg.ebpf;
    println!("{}: ok", path.display());
    println!(
        "  ebpf: enabled={} interfaces={} xdp_mode={} ring_buffer_size={} blocklist_max_entries={} allow_max_entries={} event_budget_per_cpu={}",
        e.enabled,
        if e.interfaces.is_empty() {
            "(none)".to_owned()
        } else {
            e.interfaces.join(",")
        },
        e.xdp_mode,
        e.ring_buffer_size,
        e.blocklist_max_entries,
        e.allow_max_entries,
        e.event_budget_per_cpu
    );
    for iface in e
        .interfaces
        .iter()
        .filter(|i| !ironpost_daemon::interface_exists(i))
    {
        eprintln!(
            "warning: {}: ebpf.interfaces: {iface} does not exist on this host now; `ironpost \
             run` with this file fails until it does",
            path.display()
        );
    }
    println!("  rules: {}", e.rules.len());
    for r in &e.rules {
        println!(
            "    {}  {}",
            ironpost_core::printable(&r.to_string()),
            ironpost_core::printable(&r.description)
        );
    }
    let allow: Vec<String> = e.allow.iter().map(ToString::to_string).collect();
    println!(
        "  allow: {}",
        if allow.is_empty() {
            "(none)".into()
        } else {
            allow.join(", ")
        }
    );
    println!(
        "  daemon: socket={} state_file={}",
        cfg.daemon.socket.display(),
        cfg.daemon.state_file.display()
    );
    let d = &cfg.detection;
    if d.enabled {
        println!(
            "  detection: syn_flood {} ({} SYNs/source, {}/target per {} s, ratio {:.3}); \
             port_scan {} ({} ports, {} hosts, {} refused per {} s)",
            on(d.syn_flood.enabled),
            d.syn_flood.source_threshold,
            d.syn_flood.target_threshold,
            d.syn_flood.window_secs,
            f64::from(d.syn_flood.syn_only_permille) / 1000.0,
            on(d.port_scan.enabled),
            d.port_scan.distinct_ports,
            d.port_scan.distinct_hosts,
            d.port_scan.refused_ports,
            d.port_scan.window_secs,
        );
        for (name, f) in [
            ("udp_flood", &d.udp_flood),
            ("icmp_flood", &d.icmp_flood),
            ("ack_flood", &d.ack_flood),
            ("rst_flood", &d.rst_flood),
        ] {
            let target = if f.target_threshold > 0 {
                format!(", {}/target from untracked sources", f.target_threshold)
            } else {
                String::new()
            };
            println!(
                "  detection: {name} {} ({}/source{target} per {} s)",
                on(f.enabled),
                f.threshold,
                f.window_secs
            );
        }
        for g in &d.host_groups {
            let set: Vec<String> = [
                ("syn", g.syn_target_threshold.map(u64::from)),
                ("udp", g.udp_target_threshold.map(u64::from)),
                ("udp bytes", g.udp_target_bytes_threshold),
                ("icmp", g.icmp_target_threshold.map(u64::from)),
                ("icmp bytes", g.icmp_target_bytes_threshold),
                ("rst", g.rst_target_threshold.map(u64::from)),
            ]
            .into_iter()
            .filter_map(|(what, v)| v.map(|v| format!("{what} {v}")))
            .collect();
            let ports = if g.ports.is_empty() {
                String::new()
            } else {
                let p: Vec<String> = g.ports.iter().map(ToString::to_string).collect();
                format!(", ports {}", p.join(" "))
            };
            println!(
                "  host group {}: {} prefixes{ports}; target thresholds: {}",
                g.name,
                g.prefixes.len(),
                if set.is_empty() {
                    "the detectors'".to_owned()
                } else {
                    set.join(", ")
                }
            );
        }
    } else {
        println!("  detection: off");
    }
    let r = &cfg.response;
    println!(
        "  response: auto_block={} dry_run={} ttl={} s x{} up to {} s",
        r.auto_block, r.dry_run, r.block_ttl_secs, r.escalation_factor, r.max_block_ttl_secs
    );
    Ok(())
}

fn on(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// The pin directory `unload` works on.
fn unload_dir(dir: Option<PathBuf>, config: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    if let Some(d) = dir {
        return Ok(d);
    }
    let cfg = match config {
        Some(path) => IronpostConfig::load(path)?,
        None => IronpostConfig::default(),
    };
    match cfg.daemon.pin_dir {
        Some(d) => Ok(d),
        None => anyhow::bail!("daemon.pin_dir is \"off\" in the configuration: nothing is pinned"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run(_)) {
        // A command whose output goes to a pipe that closes (`block list |
        // head`) stops quietly, as other Unix tools do. The daemon keeps
        // ignoring SIGPIPE: its output sinks handle a closed pipe.
        // SAFETY: setting a signal's disposition to its default has no
        // preconditions; no other thread runs yet.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    if let Err(e) = logging::init(cli.log_format, cli.log_level.as_deref()) {
        eprintln!("ironpost: error: {e}");
        return ExitCode::from(ironpost_api::exit::USAGE);
    }
    let socket = cli
        .socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let result = match cli.command {
        Command::Run(mut args) => {
            args.socket = cli.socket;
            if args.config.is_none() && std::path::Path::new(DEFAULT_CONFIG).exists() {
                args.config = Some(PathBuf::from(DEFAULT_CONFIG));
            }
            ironpost_daemon::run(args.into())
        }
        Command::Top { interval } => commands::top::top(&socket, interval),
        Command::Completions { shell } => {
            commands::docs::completions(Cli::command(), shell);
            Ok(())
        }
        Command::Manpages { dir } => commands::docs::manpages(Cli::command(), &dir),
        Command::CheckConfig { config } => check_config(&config),
        Command::Block(BlockCmd::Add {
            prefixes,
            ttl,
            reason,
            force,
            list,
        }) => commands::block::add(&socket, prefixes, ttl, reason, force, Some(list)),
        Command::Block(BlockCmd::Del { prefixes, list }) => {
            commands::block::del(&socket, prefixes, Some(list))
        }
        Command::Block(BlockCmd::Sync {
            list,
            file,
            ttl,
            reason,
            skip_invalid,
            force,
        }) => commands::block::sync(&socket, list, &file, ttl, reason, skip_invalid, force),
        Command::Block(BlockCmd::Flush { list }) => commands::block::flush(&socket, list),
        Command::Block(BlockCmd::List { json, ndjson, list }) => {
            let format = if ndjson {
                commands::block::ListFormat::Ndjson
            } else if json {
                commands::block::ListFormat::Json
            } else {
                commands::block::ListFormat::Table
            };
            commands::block::list(&socket, format, list)
        }
        Command::Block(BlockCmd::Show { addr, json }) => commands::block::show(&socket, addr, json),
        Command::Block(BlockCmd::Import {
            file,
            ttl,
            reason,
            skip_invalid,
            force,
            list,
        }) => commands::block::import(&socket, &file, ttl, reason, skip_invalid, force, Some(list)),
        Command::Allow(AllowCmd::Add { prefixes, reason }) => {
            commands::allow::add(&socket, prefixes, reason)
        }
        Command::Allow(AllowCmd::Del { prefixes }) => commands::allow::del(&socket, prefixes),
        Command::Allow(AllowCmd::List { json }) => commands::allow::list(&socket, json),
        Command::Stats { json } => commands::stats::stats(&socket, json),
        Command::Status { json } => commands::status::status(&socket, json),
        Command::Reload => commands::reload::reload(&socket),
        Command::Unload {
            interface,
            pin_dir,
            config,
        } => unload_dir(pin_dir, config.as_deref())
            .and_then(|dir| commands::unload::unload(&socket, &dir, &interface)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ironpost: error: {e:#}");
            // The daemon's refusals and connection failures have their own
            // codes (README, "Exit codes"); anything else is 1.
            let config = e.chain().any(|c| {
                c.is::<ironpost_core::config::ConfigError>()
                    || c.is::<ironpost_daemon::NotConfigured>()
            });
            let code = if config {
                ironpost_api::exit::CONFIG
            } else {
                e.chain()
                    .find_map(|c| c.downcast_ref::<client::ClientError>())
                    .map_or(ironpost_api::exit::FAILURE, client::ClientError::exit_code)
            };
            ExitCode::from(code)
        }
    }
}
