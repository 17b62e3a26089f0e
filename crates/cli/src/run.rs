//! `ironpost run`: attach, report events and stats as JSON lines, detach on
//! SIGINT/SIGTERM.

use std::{
    io::{self, Write},
    time::Duration,
};

use anyhow::{Context as _, bail};
use ironpost_core::{IronpostConfig, PacketEvent, Pipeline, config::check_interface_name};
use ironpost_ebpf_engine::{Attachment, EbpfEngine, EngineConfig, TrafficStats};
use serde_json::{Value, json};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use crate::{RunArgs, privileges};

/// Runs the datapath until a signal.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let cfg = match &args.config {
        Some(path) => IronpostConfig::load(path)?,
        None => IronpostConfig::default(),
    };
    if !cfg.ebpf.enabled {
        tracing::warn!("ebpf.enabled is false in the configuration: nothing to run");
        return Ok(());
    }
    let interface = args
        .interface
        .clone()
        .or_else(|| cfg.ebpf.interface.clone())
        .context("no interface given: pass --interface IFACE or set ebpf.interface")?;
    check_interface_name(&interface).map_err(anyhow::Error::msg)?;
    if !std::path::Path::new("/sys/class/net")
        .join(&interface)
        .exists()
    {
        bail!("no such network interface: {interface}");
    }
    if !privileges::can_load_xdp() {
        bail!(
            "loading XDP programs needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON): \
             run ironpost as root"
        );
    }
    let mut builder = EbpfEngine::builder()
        .config(EngineConfig::from_core(&cfg.ebpf))
        .interface(&interface);
    if let Some(mode) = args.xdp_mode {
        builder = builder.xdp_mode(mode);
    }
    let engine = builder.build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(engine, args.stats_interval))
}

async fn serve(mut engine: EbpfEngine, stats_interval: u64) -> anyhow::Result<()> {
    // Signals first, so a signal during start-up is not lost.
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    engine.start().await?;
    let attachment = engine
        .attachment()
        .cloned()
        .context("engine started without an attachment")?;
    let (ev_tx, mut ev_rx) = mpsc::channel::<PacketEvent>(4096);
    engine.spawn_event_reader(ev_tx)?;
    let (st_tx, mut st_rx) = mpsc::channel::<TrafficStats>(4);
    if stats_interval > 0 {
        engine.spawn_stats_poller(Duration::from_secs(stats_interval), st_tx)?;
    } else {
        drop(st_tx);
    }
    tracing::info!(
        "ready: reporting events and stats from {} (stop with SIGINT or SIGTERM)",
        attachment.interface
    );
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut stats_open = stats_interval > 0;
    // The latest periodic stats, so the final line's rates continue from them.
    let mut latest = TrafficStats::new();
    let reason = loop {
        tokio::select! {
            _ = sigint.recv() => break "SIGINT",
            _ = sigterm.recv() => break "SIGTERM",
            ev = ev_rx.recv() => match ev {
                Some(ev) => {
                    if emit(&mut out, &event_line(&ev)).is_err() {
                        break "stdout closed";
                    }
                }
                None => break "event reader stopped",
            },
            st = st_rx.recv(), if stats_open => match st {
                Some(st) => {
                    latest = st;
                    if emit(&mut out, &stats_line(&attachment, &latest, false)).is_err() {
                        break "stdout closed";
                    }
                }
                None => stats_open = false,
            },
        }
    };
    tracing::info!("{reason}: stopping");
    // Events already read, then the final counters, then detach.
    while let Ok(ev) = ev_rx.try_recv() {
        let _ = emit(&mut out, &event_line(&ev));
    }
    match engine.counters() {
        Ok(snap) => {
            latest.update(snap, std::time::Instant::now());
            let _ = emit(&mut out, &stats_line(&attachment, &latest, true));
        }
        Err(e) => tracing::warn!("reading the final counters: {e}"),
    }
    engine.stop().await?;
    Ok(())
}

fn emit(out: &mut impl Write, line: &Value) -> io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")?;
    out.flush()
}

fn event_line(ev: &PacketEvent) -> Value {
    let mut v = serde_json::to_value(ev).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut v {
        map.insert("type".into(), json!("event"));
    }
    v
}

fn stats_line(att: &Attachment, st: &TrafficStats, last: bool) -> Value {
    let mut v = json!({
        "type": "stats",
        "time": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        "interface": att.interface,
        "xdp_mode": att.mode,
        "program_id": att.program_id,
        "events": st.events(),
    });
    if let Value::Object(map) = &mut v {
        for (name, m) in st.by_name() {
            map.insert(name.into(), serde_json::to_value(m).unwrap_or(Value::Null));
        }
        map.insert("events_lost".into(), json!(st.events().lost()));
        if last {
            map.insert("final".into(), json!(true));
        }
    }
    v
}
