//! Traffic counters: summing the per-CPU values the datapath keeps, and
//! turning successive snapshots into rates.

use std::time::Instant;

use ironpost_ebpf_common::{
    CLASS_COUNT, CLASS_ICMP, CLASS_OTHER, CLASS_TCP, CLASS_TOTAL, CLASS_UDP, DetectCounters,
    EventCounters, ParseCounters, ProtoStats, TrafficCounters, parse,
};
use serde::Serialize;

/// Counters of one traffic class, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClassCounters {
    /// Packets seen.
    pub packets: u64,
    /// Bytes seen.
    pub bytes: u64,
    /// Packets dropped.
    pub drops: u64,
}

impl ClassCounters {
    fn add(&mut self, s: &ProtoStats) {
        self.packets = self.packets.wrapping_add(s.packets);
        self.bytes = self.bytes.wrapping_add(s.bytes);
        self.drops = self.drops.wrapping_add(s.drops);
    }
}

/// What happened to the events the datapath tried to report, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EventTotals {
    /// Written to the ring buffer.
    pub delivered: u64,
    /// Not written: the ring buffer was full.
    pub lost_ring_full: u64,
    /// Not written: the per-CPU budget was spent.
    pub lost_budget: u64,
}

impl EventTotals {
    /// Events the datapath could not deliver, for any reason.
    pub fn lost(&self) -> u64 {
        self.lost_ring_full.wrapping_add(self.lost_budget)
    }
}

/// What the datapath's detection tracking did, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DetectTotals {
    /// Sources that entered the tracking map (once full, each new one
    /// evicts the least recently seen).
    pub sources_new: u64,
    /// Destination ports that entered the target map.
    pub targets_new: u64,
    /// Threshold signals delivered to user space.
    pub signals: u64,
    /// Signals lost because the SIGNALS ring buffer was full.
    pub signals_lost: u64,
    /// Tracked packets whose source had not yet earned per-source state
    /// (the admission sketch).
    pub sources_deferred: u64,
    /// New sources or targets refused because the admission rate was spent.
    pub admit_over_budget: u64,
}

/// Fragmented and malformed frames, summed over CPUs; indexed by the
/// contract's `parse::*` constants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParseTotals(pub [u64; parse::COUNT]);

impl ParseTotals {
    /// The count of one `parse::*` kind.
    pub fn get(&self, index: usize) -> u64 {
        self.0.get(index).copied().unwrap_or(0)
    }
    /// `(name, count)` for every kind.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        parse::NAMES.iter().copied().zip(self.0.iter().copied())
    }
}

impl Serialize for ParseTotals {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut m = s.serialize_map(Some(parse::COUNT))?;
        for (name, v) in self.named() {
            m.serialize_entry(name, &v)?;
        }
        m.end()
    }
}

/// Counters of every class, indexed by the `CLASS_*` constants.
pub type Classes = [ClassCounters; CLASS_COUNT];

/// All counters at one moment, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficSnapshot {
    /// Every interface together, indexed by the `CLASS_*` constants of the
    /// contract.
    pub classes: Classes,
    /// Per STATS slot (see `Attachment::stats_slot`); slot 0 holds frames
    /// of interfaces without a slot of their own.
    pub slots: Vec<Classes>,
    /// Event delivery.
    pub events: EventTotals,
    /// Detection tracking.
    pub detect: DetectTotals,
    /// Fragments and malformed frames.
    pub parse: ParseTotals,
}

impl TrafficSnapshot {
    /// Sums the per-CPU values of STATS (every slot's: `stats[slot]` holds
    /// one value per CPU), EVENT_COUNTERS, DETECT_COUNTERS and
    /// PARSE_COUNTERS.
    pub fn from_per_cpu(
        stats: &[Vec<TrafficCounters>],
        events: &[EventCounters],
        detect: &[DetectCounters],
        parsed: &[ParseCounters],
    ) -> Self {
        let mut snap = Self::default();
        for slot in stats {
            let mut classes = Classes::default();
            for cpu in slot.iter() {
                for (sum, s) in classes.iter_mut().zip(cpu.classes.iter()) {
                    sum.add(s);
                }
            }
            for (sum, s) in snap.classes.iter_mut().zip(classes.iter()) {
                sum.packets = sum.packets.wrapping_add(s.packets);
                sum.bytes = sum.bytes.wrapping_add(s.bytes);
                sum.drops = sum.drops.wrapping_add(s.drops);
            }
            snap.slots.push(classes);
        }
        for cpu in events {
            snap.events.delivered = snap.events.delivered.wrapping_add(cpu.delivered);
            snap.events.lost_ring_full =
                snap.events.lost_ring_full.wrapping_add(cpu.lost_ring_full);
            snap.events.lost_budget = snap.events.lost_budget.wrapping_add(cpu.lost_budget);
        }
        for cpu in detect {
            let d = &mut snap.detect;
            d.sources_new = d.sources_new.wrapping_add(cpu.sources_new);
            d.targets_new = d.targets_new.wrapping_add(cpu.targets_new);
            d.signals = d.signals.wrapping_add(cpu.signals);
            d.signals_lost = d.signals_lost.wrapping_add(cpu.signals_lost);
            d.sources_deferred = d.sources_deferred.wrapping_add(cpu.sources_deferred);
            d.admit_over_budget = d.admit_over_budget.wrapping_add(cpu.admit_over_budget);
        }
        for cpu in parsed {
            for (sum, v) in snap.parse.0.iter_mut().zip(cpu.counts.iter()) {
                *sum = sum.wrapping_add(*v);
            }
        }
        snap
    }

    /// Counters of TCP.
    pub fn tcp(&self) -> ClassCounters {
        self.classes[CLASS_TCP]
    }
    /// Counters of UDP.
    pub fn udp(&self) -> ClassCounters {
        self.classes[CLASS_UDP]
    }
    /// Counters of ICMP and ICMPv6.
    pub fn icmp(&self) -> ClassCounters {
        self.classes[CLASS_ICMP]
    }
    /// Counters of everything else.
    pub fn other(&self) -> ClassCounters {
        self.classes[CLASS_OTHER]
    }
    /// Counters of all packets.
    pub fn total(&self) -> ClassCounters {
        self.classes[CLASS_TOTAL]
    }
}

/// Counters and rates of one class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ClassMetrics {
    /// Packets seen since the program was loaded.
    pub packets: u64,
    /// Bytes seen.
    pub bytes: u64,
    /// Packets dropped.
    pub drops: u64,
    /// Packets per second over the last interval.
    pub pps: f64,
    /// Bytes per second over the last interval.
    pub bps: f64,
    /// Drops per second over the last interval.
    pub dps: f64,
}

/// Class names in `CLASS_*` order, as they appear in output.
pub const CLASS_NAMES: [&str; CLASS_COUNT] = ["tcp", "udp", "icmp", "other", "total"];

/// Metrics of every class, indexed by the `CLASS_*` constants.
pub type ClassesMetrics = [ClassMetrics; CLASS_COUNT];

/// Counters with rates, updated from successive snapshots.
#[derive(Clone, Debug, Default)]
pub struct TrafficStats {
    last: Option<(Instant, TrafficSnapshot)>,
    metrics: ClassesMetrics,
    slots: Vec<ClassesMetrics>,
    events: EventTotals,
    detect: DetectTotals,
    parse: ParseTotals,
}

impl TrafficStats {
    /// Empty statistics: no snapshot yet, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes a new snapshot taken at `now`; rates are the change since the
    /// previous one divided by the time between them. A counter that went
    /// down (the program was reloaded) counts from zero.
    pub fn update(&mut self, snap: TrafficSnapshot, now: Instant) {
        let elapsed = self
            .last
            .as_ref()
            .map(|(t, _)| now.saturating_duration_since(*t).as_secs_f64());
        let secs = elapsed.filter(|s| *s > 0.0);
        let prev = self.last.as_ref().map(|(_, p)| p);
        self.metrics = rates(&snap.classes, prev.map(|p| &p.classes), secs);
        self.slots = snap
            .slots
            .iter()
            .enumerate()
            .map(|(i, cur)| rates(cur, prev.and_then(|p| p.slots.get(i)), secs))
            .collect();
        self.events = snap.events;
        self.detect = snap.detect;
        self.parse = snap.parse;
        self.last = Some((now, snap));
    }

    /// Zeroes everything, as if no snapshot had been taken.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Metrics of a class (`CLASS_*` index).
    pub fn class(&self, class: usize) -> ClassMetrics {
        self.metrics[class]
    }

    /// Metrics of every class in STATS slot `slot` (an interface's
    /// `stats_slot`; 0: unattributed frames), zero before the first
    /// snapshot.
    pub fn slot(&self, slot: u32) -> ClassesMetrics {
        self.slots.get(slot as usize).copied().unwrap_or_default()
    }

    /// Metrics of all classes, by name.
    pub fn by_name(&self) -> impl Iterator<Item = (&'static str, ClassMetrics)> + '_ {
        CLASS_NAMES
            .iter()
            .copied()
            .zip(self.metrics.iter().copied())
    }

    /// Event delivery totals.
    pub fn events(&self) -> EventTotals {
        self.events
    }

    /// Detection tracking totals.
    pub fn detect(&self) -> DetectTotals {
        self.detect
    }

    /// Fragments and malformed frames, from the latest snapshot.
    pub fn parse(&self) -> ParseTotals {
        self.parse
    }

    /// The latest snapshot, if any.
    pub fn snapshot(&self) -> Option<TrafficSnapshot> {
        self.last.as_ref().map(|(_, s)| s.clone())
    }
}

/// Counters and rates of every class: the change from `prev` over `secs`
/// (no rates without either).
fn rates(cur: &Classes, prev: Option<&Classes>, secs: Option<f64>) -> ClassesMetrics {
    let mut out = ClassesMetrics::default();
    for (i, m) in out.iter_mut().enumerate() {
        let c = cur[i];
        let (pps, bps, dps) = match (prev, secs) {
            (Some(p), Some(secs)) => {
                let p = p[i];
                (
                    delta(p.packets, c.packets) as f64 / secs,
                    delta(p.bytes, c.bytes) as f64 / secs,
                    delta(p.drops, c.drops) as f64 / secs,
                )
            }
            _ => (0.0, 0.0, 0.0),
        };
        *m = ClassMetrics {
            packets: c.packets,
            bytes: c.bytes,
            drops: c.drops,
            pps,
            bps,
            dps,
        };
    }
    out
}

fn delta(prev: u64, cur: u64) -> u64 {
    if cur >= prev { cur - prev } else { cur }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cpu(tcp: (u64, u64, u64), total: (u64, u64, u64)) -> TrafficCounters {
        let mut c = TrafficCounters::default();
        c.classes[CLASS_TCP] = ProtoStats {
            packets: tcp.0,
            bytes: tcp.1,
            drops: tcp.2,
        };
        c.classes[CLASS_TOTAL] = ProtoStats {
            packets: total.0,
            bytes: total.1,
            drops: total.2,
        };
        c
    }

    #[test]
    fn sums_over_cpus() {
        let stats = [cpu((1, 100, 0), (2, 160, 0)), cpu((3, 300, 2), (5, 500, 2))];
        let events = [
            EventCounters {
                delivered: 4,
                lost_ring_full: 1,
                lost_budget: 0,
                ..Default::default()
            },
            EventCounters {
                delivered: 6,
                lost_ring_full: 0,
                lost_budget: 7,
                ..Default::default()
            },
        ];
        let snap = TrafficSnapshot::from_per_cpu(&[stats.to_vec()], &events, &[], &[]);
        assert_eq!(
            snap.tcp(),
            ClassCounters {
                packets: 4,
                bytes: 400,
                drops: 2
            }
        );
        assert_eq!(snap.total().packets, 7);
        assert_eq!(snap.total().bytes, 660);
        assert_eq!(snap.udp(), ClassCounters::default());
        assert_eq!(snap.events.delivered, 10);
        assert_eq!(snap.events.lost(), 8);
    }

    #[test]
    fn no_cpus_is_zero() {
        let snap = TrafficSnapshot::from_per_cpu(&[], &[], &[], &[]);
        assert_eq!(snap, TrafficSnapshot::default());
    }

    #[test]
    fn slots_are_summed_alone_and_together() {
        let slot0 = vec![cpu((1, 10, 0), (1, 10, 0))];
        let slot1 = vec![cpu((2, 20, 1), (3, 30, 1)), cpu((4, 40, 0), (4, 40, 0))];
        let snap = TrafficSnapshot::from_per_cpu(&[slot0, slot1], &[], &[], &[]);
        assert_eq!(snap.slots.len(), 2);
        assert_eq!(snap.slots[0][CLASS_TCP].packets, 1);
        assert_eq!(
            snap.slots[1][CLASS_TCP],
            ClassCounters {
                packets: 6,
                bytes: 60,
                drops: 1
            }
        );
        assert_eq!(snap.slots[1][CLASS_TOTAL].packets, 7);
        assert_eq!(snap.total().packets, 8);
        assert_eq!(snap.tcp().bytes, 70);

        let mut st = TrafficStats::new();
        let t0 = Instant::now();
        st.update(snap.clone(), t0);
        let mut later = snap;
        later.slots[1][CLASS_TCP].packets += 50;
        st.update(later, t0 + Duration::from_secs(5));
        assert!((st.slot(1)[CLASS_TCP].pps - 10.0).abs() < 1e-9);
        assert_eq!(st.slot(0)[CLASS_TCP].pps, 0.0);
        assert_eq!(st.slot(9), ClassesMetrics::default());
    }

    fn snap(packets: u64, bytes: u64, drops: u64) -> TrafficSnapshot {
        let mut s = TrafficSnapshot::default();
        s.classes[CLASS_UDP] = ClassCounters {
            packets,
            bytes,
            drops,
        };
        s
    }

    #[test]
    fn first_update_has_no_rate() {
        let mut st = TrafficStats::new();
        st.update(snap(10, 1000, 1), Instant::now());
        let m = st.class(CLASS_UDP);
        assert_eq!((m.packets, m.bytes, m.drops), (10, 1000, 1));
        assert_eq!((m.pps, m.bps, m.dps), (0.0, 0.0, 0.0));
    }

    #[test]
    fn rates_are_delta_over_elapsed() {
        let mut st = TrafficStats::new();
        let t0 = Instant::now();
        st.update(snap(10, 1000, 0), t0);
        st.update(snap(30, 5000, 4), t0 + Duration::from_secs(2));
        let m = st.class(CLASS_UDP);
        assert_eq!(m.packets, 30);
        assert!((m.pps - 10.0).abs() < 1e-9, "{m:?}");
        assert!((m.bps - 2000.0).abs() < 1e-9, "{m:?}");
        assert!((m.dps - 2.0).abs() < 1e-9, "{m:?}");
        assert_eq!(st.class(CLASS_TCP).pps, 0.0);
    }

    #[test]
    fn zero_elapsed_gives_zero_rate_not_infinity() {
        let mut st = TrafficStats::new();
        let t0 = Instant::now();
        st.update(snap(10, 1000, 0), t0);
        st.update(snap(20, 2000, 0), t0);
        assert_eq!(st.class(CLASS_UDP).pps, 0.0);
    }

    #[test]
    fn counter_reset_counts_from_zero() {
        let mut st = TrafficStats::new();
        let t0 = Instant::now();
        st.update(snap(1000, 100_000, 0), t0);
        st.update(snap(50, 5000, 0), t0 + Duration::from_secs(1));
        assert!((st.class(CLASS_UDP).pps - 50.0).abs() < 1e-9);
    }

    #[test]
    fn reset_clears_everything() {
        let mut st = TrafficStats::new();
        st.update(snap(1, 2, 3), Instant::now());
        st.reset();
        assert!(st.snapshot().is_none());
        assert_eq!(st.class(CLASS_UDP).packets, 0);
    }

    #[test]
    fn names_follow_class_order() {
        let st = TrafficStats::new();
        let names: Vec<_> = st.by_name().map(|(n, _)| n).collect();
        assert_eq!(names, ["tcp", "udp", "icmp", "other", "total"]);
    }
}
