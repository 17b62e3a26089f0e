//! The programs measured: how each peer is configured with the same policy
//! (drop 192.0.2.1, 203.0.113.0/24 and 2001:db8::bad as sources, drop TCP
//! port 8099), and Ironpost's variants.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context as _, Result};
use ironpost_core::{IronpostConfig, Prefix, RuleAction};
use ironpost_ebpf_engine::{EbpfEngine, EngineConfig};
use ironpost_policy::{BlockEntry, OnConfigConflict, Origin};

use crate::packets::{BLOCKED_PREFIX_V4, BLOCKED_V4, BLOCKED_V6, DROPPED_PORT};

/// Ironpost's configuration file for the bench policy, with detection on
/// (the default) or off, room for `capacity` block entries, and the given
/// `xdp_mode`.
pub fn ironpost_toml(detection: bool, capacity: u32, xdp_mode: &str) -> String {
    let detection = if detection {
        String::new()
    } else {
        "\n[detection]\nenabled = false\n".to_owned()
    };
    format!(
        "[ebpf]\nxdp_mode = \"{xdp_mode}\"\nblocklist_max_entries = {capacity}\n\n\
         [[ebpf.rules]]\nid = \"bench-exact-v4\"\nsrc = \"{BLOCKED_V4}\"\naction = \"drop\"\n\n\
         [[ebpf.rules]]\nid = \"bench-prefix-v4\"\nsrc = \"{BLOCKED_PREFIX_V4}\"\naction = \"drop\"\n\n\
         [[ebpf.rules]]\nid = \"bench-exact-v6\"\nsrc = \"{BLOCKED_V6}\"\naction = \"drop\"\n\n\
         [[ebpf.rules]]\nid = \"bench-port\"\nprotocol = \"tcp\"\ndst_port = {DROPPED_PORT}\naction = \"drop\"\n\
         {detection}"
    )
}

/// An Ironpost variant measured through BPF_PROG_TEST_RUN.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    /// Column name.
    pub name: &'static str,
    /// Detection on (the default).
    pub detection: bool,
    /// Extra exact IPv4 source blocks loaded (from 20.0.0.0 up).
    pub exact: u32,
    /// Extra /24 source blocks loaded (from 40.0.0.0 up).
    pub prefixes: u32,
}

/// Loads the program for `v` (not attached) with its policy and extra
/// block entries in the maps.
pub fn ironpost_engine(v: Variant) -> Result<EbpfEngine> {
    let capacity =
        (v.exact + v.prefixes + 16).max(ironpost_core::EbpfConfig::default().blocklist_max_entries);
    let cfg = IronpostConfig::parse(&ironpost_toml(v.detection, capacity, "auto"), "bench")
        .context("the bench's Ironpost configuration")?;
    let mut engine = EbpfEngine::builder()
        .config(EngineConfig::from_core(&cfg.ebpf).with_detection(&cfg.detection))
        .build();
    engine.load().context("loading Ironpost's XDP program")?;
    engine.apply_config()?;
    let now = ironpost_ebpf_engine::engine::now_ms();
    let entry = |p: Prefix| BlockEntry::source(p, RuleAction::Drop, Origin::Manual, now);
    let hosts = (0..v.exact).map(|i| {
        let a = Ipv4Addr::from(u32::from(Ipv4Addr::new(20, 0, 0, 0)) + i);
        Some(Prefix::host(IpAddr::V4(a)))
    });
    let nets = (0..v.prefixes).map(|i| {
        let a = Ipv4Addr::from(u32::from(Ipv4Addr::new(40, 0, 0, 0)) + (i << 8));
        Prefix::new(IpAddr::V4(a), 24)
    });
    let entries: Vec<BlockEntry> = hosts
        .chain(nets)
        .map(|p| p.map(entry).context("a generated prefix is invalid"))
        .collect::<Result<_>>()?;
    if !entries.is_empty() {
        engine
            .block(entries, OnConfigConflict::Refuse, &mut |_| true)
            .context("loading the extra block entries")?;
    }
    Ok(engine)
}
