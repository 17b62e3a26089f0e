//! The IPv4 source summary (`SRC16_V4`): one bit per /16 of the IPv4 space,
//! set when an IPv4 source rule (exact or prefix) or allow-list entry covers
//! any address in that /16. The datapath looks at the source-keyed maps
//! only for a source whose bit is set, so traffic from the rest of the
//! address space costs one array read instead of a hash and a trie lookup.
//!
//! A set bit only costs a lookup; a clear bit over a rule would let its
//! traffic through. So bits are set *before* the entries they cover are
//! written ([`SourceSummary::widen`]) and cleared only after the last entry
//! under them is gone ([`SourceSummary::settle`]).

use std::ops::RangeInclusive;

use ironpost_core::Prefix;
use ironpost_ebpf_common::SRC16_V4_WORDS;

use crate::{EngineError, policy::PolicyMaps};

/// /16s in the IPv4 space.
const SLASH16S: usize = 1 << 16;

/// Reference counts per /16 and the summary words as the kernel holds them.
#[derive(Debug)]
pub struct SourceSummary {
    /// Entries covering (part of) each /16.
    refs: Vec<u32>,
    /// `SRC16_V4` as last written.
    written: Vec<u64>,
}

impl Default for SourceSummary {
    fn default() -> Self {
        Self {
            refs: vec![0; SLASH16S],
            written: vec![0; SRC16_V4_WORDS as usize],
        }
    }
}

/// The /16s an IPv4 prefix covers (part of); `None` for IPv6.
fn slash16s(prefix: &Prefix) -> Option<RangeInclusive<usize>> {
    let std::net::IpAddr::V4(a) = prefix.addr() else {
        return None;
    };
    let first = (u32::from(a) >> 16) as usize;
    let span = if prefix.len() >= 16 {
        1
    } else {
        1usize << (16 - prefix.len())
    };
    Some(first..=first + span - 1)
}

impl SourceSummary {
    /// Counts an entry for `prefix` (IPv6 prefixes are ignored).
    pub fn add(&mut self, prefix: &Prefix) {
        if let Some(r) = slash16s(prefix) {
            for n in &mut self.refs[r] {
                *n += 1;
            }
        }
    }

    /// Uncounts an entry for `prefix`.
    pub fn remove(&mut self, prefix: &Prefix) {
        if let Some(r) = slash16s(prefix) {
            for n in &mut self.refs[r] {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// The word the counts call for.
    fn wanted(&self, word: usize) -> u64 {
        self.refs[word * 64..(word + 1) * 64]
            .iter()
            .enumerate()
            .fold(0, |w, (bit, n)| if *n > 0 { w | (1 << bit) } else { w })
    }

    /// Sets the bits of `prefixes` in the kernel on top of what is there,
    /// before entries under them are written.
    pub fn widen<'a>(
        &mut self,
        maps: &mut dyn PolicyMaps,
        prefixes: impl Iterator<Item = &'a Prefix>,
    ) -> Result<(), EngineError> {
        let mut words = self.written.clone();
        for r in prefixes.filter_map(slash16s) {
            for i in r {
                words[i / 64] |= 1 << (i % 64);
            }
        }
        self.write(maps, &words)
    }

    /// Makes the kernel's words match the counts: clears the bits of /16s
    /// no entry covers any more (and sets any missing one).
    pub fn settle(&mut self, maps: &mut dyn PolicyMaps) -> Result<(), EngineError> {
        let words: Vec<u64> = (0..self.written.len()).map(|w| self.wanted(w)).collect();
        self.write(maps, &words)
    }

    /// Forgets what the kernel holds: the next [`settle`](Self::settle)
    /// writes every word with a bit set (fresh, zeroed maps).
    pub fn forget_written(&mut self) {
        self.written.fill(0);
    }

    fn write(&mut self, maps: &mut dyn PolicyMaps, words: &[u64]) -> Result<(), EngineError> {
        for (i, (have, want)) in self.written.iter_mut().zip(words).enumerate() {
            if have != want {
                maps.set_summary(i as u32, *want)?;
                *have = *want;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::policy::tests::FakeMaps;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn words(m: &FakeMaps) -> BTreeMap<u32, u64> {
        m.summary
            .iter()
            .filter(|(_, w)| **w != 0)
            .map(|(i, w)| (*i, *w))
            .collect()
    }

    #[test]
    fn prefixes_cover_their_slash16s() {
        assert_eq!(slash16s(&p("10.1.2.3/32")), Some(0x0a01..=0x0a01));
        assert_eq!(slash16s(&p("10.0.0.0/8")), Some(0x0a00..=0x0aff));
        assert_eq!(slash16s(&p("0.0.0.0/0")), Some(0..=0xffff));
        assert_eq!(slash16s(&p("2001:db8::/32")), None);
    }

    #[test]
    fn bits_are_set_before_and_cleared_after_the_last_entry() {
        let mut s = SourceSummary::default();
        let mut m = FakeMaps::default();
        let host = p("10.1.2.3/32");
        let net = p("10.1.0.0/16");
        // widen: the bit is in the kernel before any entry is counted.
        s.widen(&mut m, [host].iter()).unwrap();
        assert_eq!(
            words(&m),
            BTreeMap::from([(0x0a01 / 64, 1 << (0x0a01 % 64))])
        );
        // settle without the entry counted clears it again.
        s.settle(&mut m).unwrap();
        assert!(words(&m).is_empty());
        s.add(&host);
        s.add(&net);
        s.settle(&mut m).unwrap();
        assert_eq!(
            words(&m),
            BTreeMap::from([(0x0a01 / 64, 1 << (0x0a01 % 64))])
        );
        // One of two entries under the /16 goes: the bit stays.
        s.remove(&host);
        s.settle(&mut m).unwrap();
        assert_eq!(words(&m).len(), 1);
        s.remove(&net);
        s.settle(&mut m).unwrap();
        assert!(words(&m).is_empty());
    }

    #[test]
    fn a_short_prefix_sets_every_slash16_under_it_and_ipv6_sets_none() {
        let mut s = SourceSummary::default();
        let mut m = FakeMaps::default();
        s.add(&p("10.0.0.0/8"));
        s.add(&p("2001:db8::/32"));
        s.settle(&mut m).unwrap();
        // 10.0.0.0/8 is /16s 0x0a00..=0x0aff: words 40..=43, all ones.
        assert_eq!(
            words(&m),
            (40..=43).map(|w| (w, u64::MAX)).collect::<BTreeMap<_, _>>()
        );
        s.forget_written();
        let mut fresh = FakeMaps::default();
        s.settle(&mut fresh).unwrap();
        assert_eq!(words(&fresh), words(&m));
    }
}
