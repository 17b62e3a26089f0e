//! `ironpost`: XDP network threat detection and mitigation.

mod privileges;
mod run;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use ironpost_core::{IronpostConfig, XdpMode};

/// Ironpost: filters and counts every packet in the driver with XDP, and
/// reports what it drops and watches.
#[derive(Parser)]
#[command(name = "ironpost", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach the XDP datapath to an interface and report what it sees.
    ///
    /// Loads the XDP program, writes the configured rules to the kernel,
    /// attaches to INTERFACE and prints one JSON line per dropped or
    /// monitored packet, and one stats line every --stats-interval seconds,
    /// on stdout. Logs go to stderr. On SIGINT or SIGTERM it prints a final
    /// stats line, detaches and exits 0. Needs root (or CAP_BPF,
    /// CAP_NET_ADMIN and CAP_PERFMON).
    Run(RunArgs),
    /// Check a configuration file and print what it sets up.
    CheckConfig {
        /// The configuration file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
}

/// Arguments of `ironpost run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Interface to attach to (overrides ebpf.interface in the config).
    #[arg(short, long, value_name = "IFACE")]
    pub interface: Option<String>,
    /// Configuration file (TOML); without it, built-in defaults and no rules.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// native (in the driver), skb (generic, works everywhere) or auto
    /// (native, falling back to skb); overrides ebpf.xdp_mode.
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub xdp_mode: Option<XdpMode>,
    /// Seconds between stats lines; 0 prints only the final one.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub stats_interval: u64,
}

fn parse_mode(s: &str) -> Result<XdpMode, String> {
    s.parse()
}

fn check_config(path: &std::path::Path) -> anyhow::Result<()> {
    let cfg = IronpostConfig::load(path)?;
    let e = &cfg.ebpf;
    println!("{}: ok", path.display());
    println!(
        "  ebpf: enabled={} interface={} xdp_mode={} ring_buffer_size={} blocklist_max_entries={} event_budget_per_cpu={}",
        e.enabled,
        e.interface.as_deref().unwrap_or("(none)"),
        e.xdp_mode,
        e.ring_buffer_size,
        e.blocklist_max_entries,
        e.event_budget_per_cpu
    );
    println!("  rules: {}", e.rules.len());
    for r in &e.rules {
        println!("    {} {} {}  {}", r.id, r.action, r.src_ip, r.description);
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IRONPOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::CheckConfig { config } => check_config(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ironpost: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
