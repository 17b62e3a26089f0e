//! What `ironpost top` shows besides the counters: the latest alerts, the
//! latest blocks, and the sources of the most reported packets. Bounded
//! whatever the traffic: a flood from a million spoofed sources costs at
//! most [`SOURCES`] counters (the space-saving heavy-hitters algorithm,
//! Metwally et al. 2005), so a heavy source is never pushed out by many
//! light ones.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

use ironpost_api::SourceCount;
use ironpost_policy::RuleKey;

/// Alerts kept.
pub(crate) const ALERTS: usize = 20;
/// Block keys kept.
pub(crate) const BLOCKS: usize = 32;
/// Source counters per generation.
pub(crate) const SOURCES: usize = 128;
/// How long a generation of source counters lasts.
pub(crate) const GENERATION_MS: u64 = 60_000;

/// Recent activity.
#[derive(Default)]
pub(crate) struct Activity {
    alerts: VecDeque<serde_json::Value>,
    blocks: VecDeque<RuleKey>,
    current: HeavyHitters,
    previous: HeavyHitters,
    generation_started_ms: u64,
}

impl Activity {
    /// Notes a new alert (serialized as written).
    pub(crate) fn alert(&mut self, alert: serde_json::Value) {
        if self.alerts.len() == ALERTS {
            self.alerts.pop_back();
        }
        self.alerts.push_front(alert);
    }

    /// Notes blocks added (only the last [`BLOCKS`] of a large change).
    pub(crate) fn blocked(&mut self, keys: impl DoubleEndedIterator<Item = RuleKey>) {
        for key in keys
            .rev()
            .take(BLOCKS)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            self.blocks.retain(|k| k != &key);
            if self.blocks.len() == BLOCKS {
                self.blocks.pop_back();
            }
            self.blocks.push_front(key);
        }
    }

    /// Notes a packet the datapath reported.
    pub(crate) fn packet(&mut self, src: IpAddr, dropped: bool, now_ms: u64) {
        if now_ms.saturating_sub(self.generation_started_ms) >= GENERATION_MS {
            self.previous = std::mem::take(&mut self.current);
            self.generation_started_ms = now_ms;
        }
        self.current.count(src, dropped);
    }

    /// The latest alerts, newest first.
    pub(crate) fn alerts(&self) -> Vec<serde_json::Value> {
        self.alerts.iter().cloned().collect()
    }

    /// The latest block keys, newest first.
    pub(crate) fn block_keys(&self) -> impl Iterator<Item = &RuleKey> {
        self.blocks.iter()
    }

    /// The top `n` sources over this generation and the one before.
    pub(crate) fn top_sources(&self, n: usize) -> Vec<SourceCount> {
        let mut all: HashMap<IpAddr, (u64, u64)> = HashMap::new();
        for g in [&self.previous, &self.current] {
            for (addr, c) in &g.counters {
                let e = all.entry(*addr).or_default();
                e.0 += c.packets;
                e.1 += c.drops;
            }
        }
        let mut v: Vec<SourceCount> = all
            .into_iter()
            .map(|(addr, (packets, drops))| SourceCount {
                addr,
                packets,
                drops,
            })
            .collect();
        v.sort_by(|a, b| b.packets.cmp(&a.packets).then(a.addr.cmp(&b.addr)));
        v.truncate(n);
        v
    }
}

#[derive(Clone, Copy, Default)]
struct Counter {
    packets: u64,
    drops: u64,
}

/// At most [`SOURCES`] counters: a new source, when all are taken, takes
/// over the smallest and starts from its count (an overestimate, never an
/// underestimate).
#[derive(Default)]
struct HeavyHitters {
    counters: HashMap<IpAddr, Counter>,
}

impl HeavyHitters {
    fn count(&mut self, src: IpAddr, dropped: bool) {
        if let Some(c) = self.counters.get_mut(&src) {
            c.packets += 1;
            c.drops += u64::from(dropped);
            return;
        }
        let mut c = Counter::default();
        if self.counters.len() >= SOURCES
            && let Some((&victim, &min)) = self.counters.iter().min_by_key(|(_, c)| c.packets)
        {
            self.counters.remove(&victim);
            c = min;
        }
        c.packets += 1;
        c.drops += u64::from(dropped);
        self.counters.insert(src, c);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use ironpost_core::{Direction, Prefix};

    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn a_heavy_source_stays_on_top_through_a_spoofed_flood() {
        let mut a = Activity::default();
        let heavy = ip(0x0a00_0001);
        for i in 0..200_000u32 {
            a.packet(ip(0xc000_0000 + i), false, 1);
            if i % 10 == 0 {
                a.packet(heavy, true, 1);
            }
        }
        let top = a.top_sources(5);
        assert_eq!(top[0].addr, heavy);
        assert!(top[0].packets >= 20_000, "{:?}", top[0]);
        assert!(a.current.counters.len() <= SOURCES);
    }

    #[test]
    fn sources_age_out_after_two_generations() {
        let mut a = Activity::default();
        a.packet(ip(1), false, 0);
        a.packet(ip(2), false, GENERATION_MS);
        assert_eq!(a.top_sources(5).len(), 2);
        a.packet(ip(2), false, 2 * GENERATION_MS);
        let top = a.top_sources(5);
        assert_eq!(top.len(), 1);
        assert_eq!((top[0].addr, top[0].packets), (ip(2), 2));
    }

    #[test]
    fn alerts_and_blocks_keep_the_latest_newest_first() {
        let mut a = Activity::default();
        for i in 0..(ALERTS as u64 + 5) {
            a.alert(serde_json::json!({ "id": i }));
        }
        let alerts = a.alerts();
        assert_eq!(alerts.len(), ALERTS);
        assert_eq!(alerts[0]["id"], ALERTS as u64 + 4);
        let key = |n| (Direction::Src, Prefix::host(ip(n)));
        a.blocked((0..1000).map(key));
        a.blocked(std::iter::once(key(5)));
        let keys: Vec<_> = a.block_keys().cloned().collect();
        assert_eq!(keys.len(), BLOCKS);
        assert_eq!(keys[0], key(5));
        assert_eq!(keys[1], key(999));
    }
}
