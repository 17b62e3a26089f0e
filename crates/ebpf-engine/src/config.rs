//! The engine's runtime configuration: the validated `[ebpf]` section.

use ironpost_core::{EbpfConfig, Prefix, RuleConfig, config::DetectionConfig};
pub use ironpost_core::{RuleAction, XdpMode};
use ironpost_ebpf_common::DetectConfig;

/// Everything the engine needs to load and run the datapath.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Attach mode.
    pub xdp_mode: XdpMode,
    /// EVENTS ring buffer size in bytes.
    pub ring_buffer_size: u32,
    /// Block list capacity (entries of every origin).
    pub blocklist_max_entries: u32,
    /// Allow list capacity.
    pub allow_max_entries: u32,
    /// Events per second per CPU.
    pub event_budget_per_cpu: u32,
    /// FRAGS capacity.
    pub max_tracked_fragments: u32,
    /// Configured rules, in file order.
    pub rules: Vec<RuleConfig>,
    /// Configured allow list.
    pub allow: Vec<Prefix>,
    /// Detection: what the datapath tracks, and the SIGNALS and SOURCES
    /// sizes.
    pub detection: DetectionConfig,
    /// Where XDP links are pinned so the filter outlives the process (see
    /// [`crate::pin`]); `None`: links die with it.
    pub pin_dir: Option<std::path::PathBuf>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self::from_core(&EbpfConfig::default())
    }
}

impl EngineConfig {
    /// Builds the engine configuration from the validated `[ebpf]` section.
    pub fn from_core(cfg: &EbpfConfig) -> Self {
        Self {
            xdp_mode: cfg.xdp_mode,
            ring_buffer_size: cfg.ring_buffer_size,
            blocklist_max_entries: cfg.blocklist_max_entries,
            allow_max_entries: cfg.allow_max_entries,
            event_budget_per_cpu: cfg.event_budget_per_cpu,
            max_tracked_fragments: cfg.max_tracked_fragments,
            rules: cfg.rules.clone(),
            allow: cfg.allow.clone(),
            detection: DetectionConfig::default(),
            pin_dir: None,
        }
    }

    /// The same, with the `[detection]` section.
    pub fn with_detection(mut self, detection: &DetectionConfig) -> Self {
        self.detection = detection.clone();
        self
    }
}

/// Refusals a second of remotes without per-source state on one CPU from
/// which the slow-scan tier rests on that CPU (measured over windows of
/// about 17 ms): a flood's replies would otherwise cost a SLOW lookup each,
/// and the flood itself is caught by the other detectors. An internet
/// host's background of scanners and stray packets is far below.
pub const SLOW_GATE: u32 = 10_000;
/// New slow-scan entries per second per CPU. At 1,000 a second a bucket of
/// SLOW (16,384 of two slots) gets a new key every 16 s or so, so a slow
/// scanner (one probe every few seconds, the more recent of its bucket)
/// keeps its slot under spoofed churn, and a scanner arriving among 10,000
/// spoofed replies a second still gets a slot within a few probes.
pub const SLOW_PER_SEC: u32 = 1_000;

/// The lowest threshold that is on (not 0) of a detector's `own` and the
/// host groups' (a group that sets none has the detector's); 0 when all
/// are off.
fn lowest<T: Copy + Ord + Default>(own: T, groups: impl Iterator<Item = Option<T>>) -> T {
    let off = T::default();
    groups
        .map(|g| g.unwrap_or(own))
        .chain([own])
        .filter(|v| *v != off)
        .min()
        .unwrap_or(off)
}

/// The datapath's DETECT_CONFIG for a `[detection]` section: a detector
/// that is off has its thresholds at 0 (no signal).
pub fn detect_params(d: &DetectionConfig) -> DetectConfig {
    const NS: u64 = 1_000_000_000;
    let on = |b: bool, v: u32| if b { v } else { 0 };
    let on64 = |b: bool, v: u64| if b { v } else { 0 };
    let syn = d.syn_flood.enabled;
    let scan = d.port_scan.enabled;
    let mut c = DetectConfig {
        enabled: u32::from(d.enabled),
        replies: 0,
        syn_ratio_permille: d.syn_flood.syn_only_permille,
        syn_window_ns: d.syn_flood.window_secs * NS,
        scan_window_ns: d.port_scan.window_secs * NS,
        udp_window_ns: d.udp_flood.window_secs * NS,
        icmp_window_ns: d.icmp_flood.window_secs * NS,
        syn_threshold: on(syn, d.syn_flood.source_threshold),
        target_syn_threshold: on(syn, d.syn_flood.target_threshold),
        port_threshold: on(scan, d.port_scan.distinct_ports),
        host_threshold: on(scan, d.port_scan.distinct_hosts),
        udp_threshold: on(d.udp_flood.enabled, d.udp_flood.threshold),
        icmp_threshold: on(d.icmp_flood.enabled, d.icmp_flood.threshold),
        admit_packets: d.admit_after_packets,
        admit_per_sec: d.admit_per_sec_per_cpu,
        refused_threshold: on(scan, d.port_scan.refused_ports),
        ack_threshold: on(d.ack_flood.enabled, d.ack_flood.threshold),
        ack_window_ns: d.ack_flood.window_secs * NS,
        rst_window_ns: d.rst_flood.window_secs * NS,
        rst_threshold: on(d.rst_flood.enabled, d.rst_flood.threshold),
        slow_threshold: on(scan && d.slow_scan.enabled, d.slow_scan.distinct_ports),
        slow_window_ns: d.slow_scan.window_secs * NS,
        slow_gate: SLOW_GATE,
        slow_per_sec: SLOW_PER_SEC,
        distributed_ports: on(scan, d.port_scan.distributed_ports),
        distributed_sources: d.port_scan.distributed_sources,
        protocol_threshold: on(scan, d.port_scan.distinct_protocols),
        ack_target_threshold: on(d.ack_flood.enabled, d.ack_flood.target_threshold),
        udp_bytes_threshold: on64(d.udp_flood.enabled, d.udp_flood.bytes_threshold),
        icmp_bytes_threshold: on64(d.icmp_flood.enabled, d.icmp_flood.bytes_threshold),
        // The first count that signals: the lowest threshold of the
        // detector's and the host groups' (user space, which knows which
        // group a target is in, decides; the datapath signals again at
        // twice each count that signalled).
        target_threshold: [
            lowest(
                on(d.rst_flood.enabled, d.rst_flood.target_threshold),
                d.host_groups.iter().map(|g| g.rst_target_threshold),
            ),
            lowest(
                on(d.udp_flood.enabled, d.udp_flood.target_threshold),
                d.host_groups.iter().map(|g| g.udp_target_threshold),
            ),
            lowest(
                on(d.icmp_flood.enabled, d.icmp_flood.target_threshold),
                d.host_groups.iter().map(|g| g.icmp_target_threshold),
            ),
            0,
            lowest(
                on(syn, d.syn_flood.target_threshold),
                d.host_groups.iter().map(|g| g.syn_target_threshold),
            ),
            0,
            0,
            0,
        ],
        target_bytes_threshold: [
            0,
            lowest(
                on64(d.udp_flood.enabled, d.udp_flood.target_bytes_threshold),
                d.host_groups.iter().map(|g| g.udp_target_bytes_threshold),
            ),
            lowest(
                on64(d.icmp_flood.enabled, d.icmp_flood.target_bytes_threshold),
                d.host_groups.iter().map(|g| g.icmp_target_bytes_threshold),
            ),
            0,
        ],
        target_window_ns: [
            d.rst_flood.window_secs * NS,
            d.udp_flood.window_secs * NS,
            d.icmp_flood.window_secs * NS,
            0,
        ],
        reserved: 0,
    };
    c.replies = u32::from(
        c.enabled != 0
            && (c.refused_threshold != 0
                || c.ack_threshold != 0
                || c.ack_target_threshold != 0
                || c.slow_threshold != 0
                || c.distributed_ports != 0),
    );
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_thresholds_are_the_lowest_of_the_detector_and_the_groups() {
        let core = ironpost_core::IronpostConfig::parse(
            "[detection.udp_flood]\ntarget_threshold = 200\n\
             [[detection.host_groups]]\nname = \"a\"\nprefixes = [\"10.0.0.0/8\"]\n\
             udp_target_threshold = 50\nrst_target_threshold = 0\n\
             [[detection.host_groups]]\nname = \"b\"\nprefixes = [\"11.0.0.0/8\"]\n\
             udp_target_threshold = 0\nsyn_target_threshold = 90000\n",
            "t.toml",
        )
        .unwrap();
        let p = detect_params(&core.detection);
        use ironpost_ebpf_common::{CLASS_TCP, CLASS_UDP, LIMIT_SYN};
        assert_eq!(p.target_threshold[CLASS_UDP], 50, "a's 50; b's 0 is off");
        assert_eq!(p.target_threshold[CLASS_TCP], 50_000, "a's 0 is off");
        assert_eq!(
            p.target_threshold[LIMIT_SYN], 10_000,
            "the detector's is lower"
        );
        assert_eq!(p.target_syn_threshold, 10_000);
        assert_eq!(lowest(0u32, [Some(0), None].into_iter()), 0, "all off");
    }

    #[test]
    fn from_core_keeps_rules_and_sizes() {
        let core = ironpost_core::IronpostConfig::parse(
            "[ebpf]\nblocklist_max_entries = 5\nallow = [\"10.0.0.0/8\"]\n[[ebpf.rules]]\nid = \"a\"\nsrc_ip = \"10.1.2.3\"\naction = \"monitor\"\n",
            "t.toml",
        )
        .unwrap();
        let cfg = EngineConfig::from_core(&core.ebpf);
        assert_eq!(cfg.blocklist_max_entries, 5);
        assert_eq!(cfg.rules.len(), 1);
        assert_eq!(cfg.allow.len(), 1);
        assert_eq!(cfg.rules[0].action, RuleAction::Monitor);
    }

    #[test]
    fn detect_params_turn_off_what_is_off() {
        let core = ironpost_core::IronpostConfig::parse(
            "[detection.port_scan]\nenabled = false\n[detection.syn_flood]\nwindow_secs = 3\n",
            "t.toml",
        )
        .unwrap();
        let p = detect_params(&core.detection);
        assert_eq!(p.enabled, 1);
        assert_eq!(p.syn_window_ns, 3_000_000_000);
        assert_eq!(p.syn_ratio_permille, 700);
        assert_eq!((p.port_threshold, p.host_threshold), (0, 0));
        assert_eq!(p.syn_threshold, 5_000);
        let mut off = core.detection.clone();
        off.enabled = false;
        assert_eq!(detect_params(&off).enabled, 0);
    }
}
