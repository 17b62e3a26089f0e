//! The responder: decides whether an alert blocks its source, and for how
//! long (repeat offenders get longer blocks), never blocks an address that
//! must stay reachable, and makes at most `max_blocks_per_minute` blocks.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

use ironpost_core::{
    Alert, Condition, DetectorKind, L4Protocol, PortRange, Prefix,
    config::{BlockScope, ResponseConfig},
};
use serde::Serialize;

use ironpost_policy::RuleKey;

/// What to do about an alert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Block `prefix` for `ttl_secs`.
    Block {
        /// The source, as a host prefix.
        prefix: Prefix,
        /// Block length.
        ttl_secs: u64,
        /// 1 for a first offence, then 2, 3, ...
        offence: u32,
        /// The traffic dropped: `None` for all, else the attack's.
        condition: Option<Condition>,
    },
    /// Dry run: report the block that would have been made.
    DryRun {
        /// As in `Block`.
        prefix: Prefix,
        /// As in `Block`.
        ttl_secs: u64,
        /// As in `Block`.
        offence: u32,
        /// As in `Block`.
        condition: Option<Condition>,
    },
    /// Do nothing, for this reason.
    Skip(String),
}

/// What the host depends on, which an automatic block must never hit (an
/// attacker can spoof any of them as the source of an attack).
#[derive(Clone, Debug, Default)]
pub struct Shield {
    /// The allow list in force.
    pub allow: Vec<Prefix>,
    /// This host's addresses.
    pub own: Vec<IpAddr>,
    /// This host's default gateways.
    pub gateways: Vec<IpAddr>,
    /// The resolvers this host uses (`/etc/resolv.conf`).
    pub resolvers: Vec<IpAddr>,
}

/// Why an address must never be blocked automatically, if it must not:
/// loopback and non-unicast addresses, everything in `shield`, and the
/// configured `never_block` prefixes.
pub fn protected(ip: IpAddr, shield: &Shield, never_block: &[Prefix]) -> Option<String> {
    let ip = ip.to_canonical();
    if ip.is_loopback() {
        return Some(format!("{ip} is a loopback address"));
    }
    if ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]) {
        return Some(format!("{ip} is not a unicast source address"));
    }
    let is = |list: &[IpAddr]| list.iter().any(|o| o.to_canonical() == ip);
    if is(&shield.own) {
        return Some(format!("{ip} is an address of this host"));
    }
    if is(&shield.gateways) {
        return Some(format!("{ip} is a default gateway of this host"));
    }
    if is(&shield.resolvers) {
        return Some(format!(
            "{ip} is a resolver of this host (/etc/resolv.conf)"
        ));
    }
    let host = Prefix::host(ip);
    if let Some(a) = shield.allow.iter().find(|a| a.contains(&host)) {
        return Some(format!("{ip} is allow-listed ({a})"));
    }
    if let Some(p) = never_block.iter().find(|p| p.contains(&host)) {
        return Some(format!("{ip} is in response.never_block ({p})"));
    }
    None
}

/// The traffic the attack behind `alert` is made of, as a block
/// condition: bare SYNs, UDP, ICMP, RSTs, or TCP to the port an ACK flood
/// hit (its first sampled port); `None` for a scan (all traffic).
pub fn attack_traffic(alert: &Alert) -> Option<Condition> {
    let tcp = |dst_port: Option<u16>, syn_only, rst_only| Condition {
        protocol: L4Protocol::Tcp,
        dst_port: dst_port.map(PortRange::single),
        syn_only,
        rst_only,
    };
    let other = |protocol| Condition {
        protocol,
        dst_port: None,
        syn_only: false,
        rst_only: false,
    };
    Some(match alert.detector {
        DetectorKind::SynFlood => tcp(None, true, false),
        DetectorKind::RstFlood => tcp(None, false, true),
        DetectorKind::AckFlood => tcp(alert.evidence.sampled_ports.first().copied(), false, false),
        DetectorKind::UdpFlood => other(L4Protocol::Udp),
        DetectorKind::IcmpFlood => other(L4Protocol::Icmp),
        DetectorKind::PortScan | DetectorKind::DecoyScan | DetectorKind::DistributedScan => {
            return None;
        }
    })
}

/// The automatic entries to remove, oldest first, so that one more fits
/// within `share_percent` of the block list's `capacity` (at least one
/// automatic entry is always allowed): `autos` automatic entries are held,
/// `oldest_first` gives their keys, oldest first.
pub fn make_room(
    autos: usize,
    oldest_first: impl Iterator<Item = RuleKey>,
    capacity: usize,
    share_percent: u32,
) -> Vec<RuleKey> {
    let limit = (capacity * share_percent as usize / 100).max(1);
    if autos < limit {
        return Vec::new();
    }
    oldest_first.take(autos + 1 - limit).collect()
}

#[derive(Clone, Copy, Debug)]
struct Offender {
    offences: u32,
    last_ms: u64,
}

/// Offence history counts, for status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResponseCounts {
    /// Blocks made.
    pub blocked: u64,
    /// Blocks a dry run reported.
    pub dry_run: u64,
    /// Alerts that blocked nothing.
    pub skipped: u64,
    /// Of those, alerts that would have blocked but for the per-minute cap.
    pub capped: u64,
    /// Sources with offences remembered now.
    pub offenders: usize,
}

/// Owns the response settings and the offence history, bounded by `cap`
/// sources (at the cap the longest-quiet one is forgotten).
pub struct Responder {
    cfg: ResponseConfig,
    offenders: HashMap<IpAddr, Offender>,
    cap: usize,
    counts: ResponseCounts,
    /// When the blocks (and dry-run blocks) of the last minute were made.
    recent_ms: VecDeque<u64>,
}

impl Responder {
    /// A responder remembering at most `cap` offenders.
    pub fn new(cfg: ResponseConfig, cap: usize) -> Self {
        Self {
            cfg,
            offenders: HashMap::new(),
            cap: cap.max(1),
            counts: ResponseCounts::default(),
            recent_ms: VecDeque::new(),
        }
    }

    /// Replaces the settings; the offence history is kept.
    pub fn reconfigure(&mut self, cfg: ResponseConfig, cap: usize) {
        self.cfg = cfg;
        self.cap = cap.max(1);
    }

    /// The settings in force.
    pub fn config(&self) -> &ResponseConfig {
        &self.cfg
    }

    /// Decides about `alert` at `now_ms`. Nothing in `shield` (nor in
    /// `never_block`) is ever blocked. A block (or dry-run block) counts as
    /// an offence of the source and against the per-minute cap.
    pub fn decide(&mut self, alert: &Alert, shield: &Shield, now_ms: u64) -> Decision {
        let d = self.decide_inner(alert, shield, now_ms);
        match &d {
            Decision::Block { .. } => self.counts.blocked += 1,
            Decision::DryRun { .. } => self.counts.dry_run += 1,
            Decision::Skip(_) => self.counts.skipped += 1,
        }
        d
    }

    /// Whether the per-minute cap allows one more block now (and counts
    /// it when it does).
    fn within_cap(&mut self, now_ms: u64) -> bool {
        while self
            .recent_ms
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= 60_000)
        {
            self.recent_ms.pop_front();
        }
        let cap = self.cfg.max_blocks_per_minute as usize;
        if cap != 0 && self.recent_ms.len() >= cap {
            return false;
        }
        self.recent_ms.push_back(now_ms);
        true
    }

    fn decide_inner(&mut self, alert: &Alert, shield: &Shield, now_ms: u64) -> Decision {
        let per = self.cfg.detector(alert.detector);
        if !self.cfg.auto_block {
            return Decision::Skip("auto-block is off ([response] auto_block = false)".into());
        }
        if !per.auto_block {
            return Decision::Skip(format!(
                "auto-block is off for {} ([response.{}] auto_block = false)",
                alert.detector, alert.detector
            ));
        }
        if alert.severity < per.min_severity {
            return Decision::Skip(format!(
                "severity {} is below the minimum for blocking ({})",
                alert.severity, per.min_severity
            ));
        }
        let Some(src) = alert.source else {
            return Decision::Skip(if alert.detector == DetectorKind::DecoyScan {
                "decoy scan: the sources probed the same ports at once and any of them may be \
                 spoofed, so none is blocked"
                    .into()
            } else {
                "no single source to block (many, likely spoofed, sources)".into()
            });
        };
        let src = src.to_canonical();
        if let Some(why) = protected(src, shield, &self.cfg.never_block) {
            return Decision::Skip(format!("{why}: never blocked"));
        }
        if !self.within_cap(now_ms) {
            self.counts.capped += 1;
            return Decision::Skip(format!(
                "cap reached: {} automatic blocks in the last minute \
                 ([response] max_blocks_per_minute)",
                self.cfg.max_blocks_per_minute
            ));
        }
        let offence = self.record(src, now_ms);
        let ttl_secs = self.ttl(offence);
        let prefix = Prefix::host(src);
        let condition = match per.block {
            BlockScope::Attack => attack_traffic(alert),
            BlockScope::All => None,
        };
        if self.cfg.dry_run {
            Decision::DryRun {
                prefix,
                ttl_secs,
                offence,
                condition,
            }
        } else {
            Decision::Block {
                prefix,
                ttl_secs,
                offence,
                condition,
            }
        }
    }

    /// The TTL of the `offence`-th block: the base TTL times the factor
    /// for each earlier offence, at most the maximum.
    pub fn ttl(&self, offence: u32) -> u64 {
        let mut ttl = self.cfg.block_ttl_secs;
        for _ in 1..offence {
            ttl = ttl.saturating_mul(u64::from(self.cfg.escalation_factor));
            if ttl >= self.cfg.max_block_ttl_secs {
                break;
            }
        }
        ttl.min(self.cfg.max_block_ttl_secs)
    }

    fn record(&mut self, src: IpAddr, now_ms: u64) -> u32 {
        let forget_ms = self.cfg.forget_after_secs * 1000;
        if let Some(o) = self.offenders.get_mut(&src) {
            if now_ms.saturating_sub(o.last_ms) >= forget_ms {
                o.offences = 0;
            }
            o.offences = o.offences.saturating_add(1);
            o.last_ms = now_ms;
            return o.offences;
        }
        if self.offenders.len() >= self.cap
            && let Some(oldest) = self
                .offenders
                .iter()
                .min_by_key(|(_, o)| o.last_ms)
                .map(|(ip, _)| *ip)
        {
            self.offenders.remove(&oldest);
        }
        self.offenders.insert(
            src,
            Offender {
                offences: 1,
                last_ms: now_ms,
            },
        );
        1
    }

    /// Forgets the offenders quiet for `forget_after_secs`; returns how many.
    pub fn cleanup(&mut self, now_ms: u64) -> usize {
        let forget_ms = self.cfg.forget_after_secs * 1000;
        let before = self.offenders.len();
        self.offenders
            .retain(|_, o| now_ms.saturating_sub(o.last_ms) < forget_ms);
        before - self.offenders.len()
    }

    /// Counts so far.
    pub fn counts(&self) -> ResponseCounts {
        ResponseCounts {
            offenders: self.offenders.len(),
            ..self.counts
        }
    }
}

#[cfg(test)]
mod tests {
    use ironpost_core::{AlertAction, DetectorKind, Evidence, IronpostConfig, Severity};

    use super::*;

    fn responder(text: &str) -> Responder {
        Responder::new(
            IronpostConfig::parse(text, "t.toml").unwrap().response,
            1000,
        )
    }

    fn alert(src: Option<&str>, detector: DetectorKind, severity: Severity) -> Alert {
        Alert {
            id: "t-1".into(),
            time: String::new(),
            detector,
            severity,
            source: src.map(|s| s.parse().unwrap()),
            target: "10.0.0.1".into(),
            interface: "eth0".into(),
            summary: String::new(),
            evidence: Evidence::default(),
            action: AlertAction::None {
                reason: "pending".into(),
            },
        }
    }

    fn ttl_of(d: Decision) -> u64 {
        match d {
            Decision::Block { ttl_secs, .. } | Decision::DryRun { ttl_secs, .. } => ttl_secs,
            Decision::Skip(why) => panic!("skipped: {why}"),
        }
    }

    #[test]
    fn repeat_offenders_get_doubled_blocks_up_to_the_maximum() {
        let mut r = responder("[response]\nblock_ttl_secs = 60\nmax_block_ttl_secs = 300\n");
        let a = alert(Some("198.51.100.9"), DetectorKind::SynFlood, Severity::High);
        let ttls: Vec<u64> = (0..5)
            .map(|i| ttl_of(r.decide(&a, &Shield::default(), i * 1000)))
            .collect();
        assert_eq!(ttls, [60, 120, 240, 300, 300]);
        // Another source starts at the base TTL.
        let b = alert(
            Some("198.51.100.10"),
            DetectorKind::SynFlood,
            Severity::High,
        );
        assert_eq!(ttl_of(r.decide(&b, &Shield::default(), 5000)), 60);
    }

    #[test]
    fn offences_are_forgotten_after_a_quiet_period() {
        let mut r = responder("[response]\nblock_ttl_secs = 60\nforget_after_secs = 100\n");
        let a = alert(
            Some("198.51.100.9"),
            DetectorKind::PortScan,
            Severity::Medium,
        );
        assert_eq!(ttl_of(r.decide(&a, &Shield::default(), 0)), 60);
        assert_eq!(ttl_of(r.decide(&a, &Shield::default(), 50_000)), 120);
        assert_eq!(ttl_of(r.decide(&a, &Shield::default(), 150_000)), 60);
        assert_eq!(r.cleanup(250_000), 1);
        assert_eq!(r.counts().offenders, 0);
    }

    #[test]
    fn protected_addresses_are_never_blocked() {
        let mut r = responder("[response]\nnever_block = [\"203.0.113.0/24\"]\n");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let shield = Shield {
            allow: vec!["192.0.2.0/24".parse().unwrap()],
            own: vec![ip("10.0.0.1")],
            gateways: vec![ip("10.0.0.254"), ip("fe80::1")],
            resolvers: vec![ip("198.51.100.53")],
        };
        for (src, needle) in [
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.5", "loopback"),
            ("10.0.0.1", "this host"),
            ("10.0.0.254", "default gateway"),
            ("::ffff:10.0.0.254", "default gateway"),
            ("fe80::1", "default gateway"),
            ("198.51.100.53", "resolver"),
            ("192.0.2.77", "allow-listed"),
            ("203.0.113.9", "never_block"),
            ("0.0.0.0", "unicast"),
        ] {
            let a = alert(Some(src), DetectorKind::SynFlood, Severity::Critical);
            match r.decide(&a, &shield, 0) {
                Decision::Skip(why) => assert!(why.contains(needle), "{src}: {why}"),
                d => panic!("{src} was not protected: {d:?}"),
            }
        }
        assert_eq!(r.counts().blocked, 0);
        let other = alert(
            Some("198.51.100.54"),
            DetectorKind::SynFlood,
            Severity::Critical,
        );
        assert!(matches!(
            r.decide(&other, &shield, 0),
            Decision::Block { .. }
        ));
    }

    #[test]
    fn automatic_entries_make_room_oldest_first_within_their_share() {
        use ironpost_core::RuleAction;
        use ironpost_policy::Origin;
        let entry = |i: u64| {
            ironpost_policy::BlockEntry::source(
                Prefix::host(format!("198.51.100.{i}").parse().unwrap()),
                RuleAction::Drop,
                Origin::Auto,
                1_000 - i,
            )
        };
        // Entry 4 was added first.
        let oldest = || (0..5).rev().map(|i| entry(i).key());
        // Capacity 100, share 10%: room for 10, 5 used: nothing to evict.
        assert!(make_room(5, oldest(), 100, 10).is_empty());
        // Capacity 10, share 50%: room for 5, all used: the oldest goes.
        assert_eq!(make_room(5, oldest(), 10, 50), vec![entry(4).key()]);
        // Share shrunk to 20% (2): four go, oldest first.
        let gone = make_room(5, oldest(), 10, 20);
        assert_eq!(
            gone,
            (1..5).rev().map(|i| entry(i).key()).collect::<Vec<_>>()
        );
        // A tiny list still takes one automatic entry.
        assert_eq!(make_room(0, oldest(), 1, 1), Vec::<RuleKey>::new());
    }

    #[test]
    fn floods_block_their_attack_traffic_and_scans_everything_by_default() {
        let condition = |r: &mut Responder, kind: DetectorKind| match r.decide(
            &alert(Some("198.51.100.9"), kind, Severity::High),
            &Shield::default(),
            0,
        ) {
            Decision::Block { condition, .. } => condition.map(|c| c.to_string()),
            d => panic!("{d:?}"),
        };
        let mut r = responder("");
        assert_eq!(
            condition(&mut r, DetectorKind::SynFlood).as_deref(),
            Some("tcp-syn")
        );
        assert_eq!(
            condition(&mut r, DetectorKind::UdpFlood).as_deref(),
            Some("udp")
        );
        assert_eq!(
            condition(&mut r, DetectorKind::IcmpFlood).as_deref(),
            Some("icmp")
        );
        assert_eq!(
            condition(&mut r, DetectorKind::RstFlood).as_deref(),
            Some("tcp-rst")
        );
        // An ACK flood's block drops TCP to the port it hit, and nothing
        // else of the source.
        let mut ack = alert(Some("198.51.100.9"), DetectorKind::AckFlood, Severity::High);
        ack.evidence.sampled_ports = vec![8080];
        match r.decide(&ack, &Shield::default(), 0) {
            Decision::Block { condition, .. } => {
                assert_eq!(
                    condition.map(|c| c.to_string()).as_deref(),
                    Some("tcp/8080")
                )
            }
            d => panic!("{d:?}"),
        }
        assert_eq!(condition(&mut r, DetectorKind::PortScan), None);
        let mut all = responder("[response.syn_flood]\nblock = \"all\"\n");
        assert_eq!(condition(&mut all, DetectorKind::SynFlood), None);
        let mut scans = responder("[response.port_scan]\nblock = \"attack\"\n");
        assert_eq!(condition(&mut scans, DetectorKind::PortScan), None);
    }

    #[test]
    fn blocks_per_minute_are_capped() {
        let mut r = responder("[response]\nmax_blocks_per_minute = 3\n");
        let decide = |r: &mut Responder, i: u64, at_ms: u64| {
            let a = alert(
                Some(&format!("198.51.100.{i}")),
                DetectorKind::PortScan,
                Severity::High,
            );
            r.decide(&a, &Shield::default(), at_ms)
        };
        for i in 0..3 {
            assert!(matches!(
                decide(&mut r, i, i * 1000),
                Decision::Block { .. }
            ));
        }
        match decide(&mut r, 3, 10_000) {
            Decision::Skip(why) => assert!(why.contains("cap reached"), "{why}"),
            d => panic!("past the cap: {d:?}"),
        }
        assert_eq!((r.counts().blocked, r.counts().capped), (3, 1));
        // A minute after the first block, there is room for one more.
        assert!(matches!(decide(&mut r, 4, 60_000), Decision::Block { .. }));
        assert!(matches!(decide(&mut r, 5, 60_500), Decision::Skip(_)));
        // 0: no cap.
        let mut free = responder("[response]\nmax_blocks_per_minute = 0\n");
        for i in 0..200 {
            assert!(matches!(decide(&mut free, i, 0), Decision::Block { .. }));
        }
    }

    #[test]
    fn switches_severity_and_dry_run() {
        let a = alert(
            Some("198.51.100.9"),
            DetectorKind::IcmpFlood,
            Severity::Medium,
        );
        let skip = |r: &mut Responder, a: &Alert| match r.decide(a, &Shield::default(), 0) {
            Decision::Skip(why) => why,
            d => panic!("{d:?}"),
        };
        assert!(skip(&mut responder("[response]\nauto_block = false\n"), &a).contains("off"));
        assert!(
            skip(
                &mut responder("[response.icmp_flood]\nauto_block = false\n"),
                &a
            )
            .contains("icmp_flood")
        );
        assert!(
            skip(
                &mut responder("[response.icmp_flood]\nmin_severity = \"high\"\n"),
                &a
            )
            .contains("below")
        );
        let mut dry = responder("[response]\ndry_run = true\n");
        assert!(matches!(
            dry.decide(&a, &Shield::default(), 0),
            Decision::DryRun { offence: 1, .. }
        ));
        assert_eq!(dry.counts().dry_run, 1);
        let none = alert(None, DetectorKind::SynFlood, Severity::Critical);
        assert!(skip(&mut responder(""), &none).contains("spoofed"));
    }

    #[test]
    fn offender_history_is_capped() {
        let mut r = Responder::new(ironpost_core::config::ResponseConfig::default(), 3);
        for i in 0..10u64 {
            let a = alert(
                Some(&format!("198.51.100.{i}")),
                DetectorKind::SynFlood,
                Severity::High,
            );
            r.decide(&a, &Shield::default(), i);
        }
        assert_eq!(r.counts().offenders, 3);
        assert_eq!(r.counts().blocked, 10);
    }
}
