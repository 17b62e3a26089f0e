//! The IPv4 source summary (`SRC16_V4`): four bits per /16 of the IPv4
//! space, one per source-keyed map (allow list, exact addresses, source
//! prefixes), set when that map has an entry covering any address in the
//! /16. The datapath looks a source up only in the maps whose bit is set
//! for its /16, so traffic from the rest of the address space costs one
//! array read, and a source under a prefix rule skips the exact-address
//! hash.
//!
//! A set bit only costs a lookup; a clear bit over an entry would let its
//! traffic through. So bits are set *before* the entries they cover are
//! written ([`SourceSummary::widen`]) and cleared only after the last entry
//! under them is gone ([`SourceSummary::settle`]).

use std::ops::RangeInclusive;

use ironpost_core::Prefix;
use ironpost_ebpf_common::{SRC16_V4_WORDS, SUMMARY_ALLOW, SUMMARY_EXACT, SUMMARY_PREFIX};

use crate::{PolicyError, PolicyMaps};

/// /16s in the IPv4 space.
const SLASH16S: usize = 1 << 16;
/// /16s per summary word (four bits each).
const PER_WORD: usize = 16;

/// Which list an entry is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listed {
    /// The allow list.
    Allow,
    /// A source rule: BLOCKLIST for an IPv4 address, SRC_V4 for a shorter
    /// prefix.
    Source,
}

impl Listed {
    /// The summary bit of an entry for `prefix` in this list.
    fn bit(self, prefix: &Prefix) -> u64 {
        match self {
            Self::Allow => SUMMARY_ALLOW,
            Self::Source if prefix.is_host() => SUMMARY_EXACT,
            Self::Source => SUMMARY_PREFIX,
        }
    }
}

/// Reference counts per /16 and kind, and the summary words as the kernel
/// holds them.
#[derive(Debug)]
pub struct SourceSummary {
    /// Entries covering (part of) each /16: allow, exact, prefix.
    refs: Vec<[u32; 3]>,
    /// `SRC16_V4` as last written.
    written: Vec<u64>,
}

impl Default for SourceSummary {
    fn default() -> Self {
        Self {
            refs: vec![[0; 3]; SLASH16S],
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

/// The index of a kind's count in `refs`.
fn slot(bit: u64) -> usize {
    bit.trailing_zeros() as usize
}

/// Where the bits of a /16 are: its word, and the shift of its four bits.
fn place(slash16: usize) -> (usize, u32) {
    (slash16 / PER_WORD, (slash16 % PER_WORD) as u32 * 4)
}

impl SourceSummary {
    /// Counts an entry for `prefix` in `list` (IPv6 prefixes are ignored).
    pub fn add(&mut self, list: Listed, prefix: &Prefix) {
        let k = slot(list.bit(prefix));
        if let Some(r) = slash16s(prefix) {
            for n in &mut self.refs[r] {
                n[k] += 1;
            }
        }
    }

    /// Uncounts an entry for `prefix` in `list`.
    pub fn remove(&mut self, list: Listed, prefix: &Prefix) {
        let k = slot(list.bit(prefix));
        if let Some(r) = slash16s(prefix) {
            for n in &mut self.refs[r] {
                n[k] = n[k].saturating_sub(1);
            }
        }
    }

    /// The word the counts call for.
    fn wanted(&self, word: usize) -> u64 {
        self.refs[word * PER_WORD..(word + 1) * PER_WORD]
            .iter()
            .enumerate()
            .fold(0, |w, (i, n)| {
                let bits = n
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| **c > 0)
                    .fold(0u64, |b, (k, _)| b | 1 << k);
                w | bits << (i * 4)
            })
    }

    /// Sets the bits of `prefixes` (entries of `list`) in the kernel on top
    /// of what is there, before entries under them are written.
    pub fn widen<'a>(
        &mut self,
        maps: &mut dyn PolicyMaps,
        list: Listed,
        prefixes: impl Iterator<Item = &'a Prefix>,
    ) -> Result<(), PolicyError> {
        let mut words = self.written.clone();
        for p in prefixes {
            let bit = list.bit(p);
            for i in slash16s(p).into_iter().flatten() {
                let (word, shift) = place(i);
                words[word] |= bit << shift;
            }
        }
        self.write(maps, &words)
    }

    /// Makes the kernel's words match the counts: clears the bits of /16s
    /// no entry covers any more (and sets any missing one).
    pub fn settle(&mut self, maps: &mut dyn PolicyMaps) -> Result<(), PolicyError> {
        let words: Vec<u64> = (0..self.written.len()).map(|w| self.wanted(w)).collect();
        self.write(maps, &words)
    }

    /// Forgets what the kernel holds: the next [`settle`](Self::settle)
    /// writes every word with a bit set (fresh, zeroed maps).
    pub fn forget_written(&mut self) {
        self.written.fill(0);
    }

    fn write(&mut self, maps: &mut dyn PolicyMaps, words: &[u64]) -> Result<(), PolicyError> {
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
    use crate::tests::FakeMaps;

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

    /// The four bits of /16 `n` in the words written.
    fn bits(m: &FakeMaps, n: usize) -> u64 {
        let (word, shift) = place(n);
        m.summary
            .get(&(word as u32))
            .map_or(0, |w| (w >> shift) & 0xf)
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
        s.widen(&mut m, Listed::Source, [host].iter()).unwrap();
        assert_eq!(bits(&m, 0x0a01), SUMMARY_EXACT);
        assert_eq!(words(&m).len(), 1);
        // settle without the entry counted clears it again.
        s.settle(&mut m).unwrap();
        assert!(words(&m).is_empty());
        s.add(Listed::Source, &host);
        s.add(Listed::Source, &net);
        s.settle(&mut m).unwrap();
        assert_eq!(bits(&m, 0x0a01), SUMMARY_EXACT | SUMMARY_PREFIX);
        // The address goes: the prefix's bit stays, the exact one goes.
        s.remove(Listed::Source, &host);
        s.settle(&mut m).unwrap();
        assert_eq!(bits(&m, 0x0a01), SUMMARY_PREFIX);
        s.remove(Listed::Source, &net);
        s.settle(&mut m).unwrap();
        assert!(words(&m).is_empty());
    }

    #[test]
    fn a_short_prefix_sets_every_slash16_under_it_and_ipv6_sets_none() {
        let mut s = SourceSummary::default();
        let mut m = FakeMaps::default();
        s.add(Listed::Allow, &p("10.0.0.0/8"));
        s.add(Listed::Source, &p("2001:db8::/32"));
        s.settle(&mut m).unwrap();
        // 10.0.0.0/8 is /16s 0x0a00..=0x0aff: words 160..=175, the allow
        // bit of each of their sixteen /16s.
        let allow_bits = (0..16).fold(0u64, |w, i| w | SUMMARY_ALLOW << (4 * i));
        assert_eq!(
            words(&m),
            (160..=175)
                .map(|w| (w, allow_bits))
                .collect::<BTreeMap<_, _>>()
        );
        assert_eq!(bits(&m, 0x0a7f), SUMMARY_ALLOW);
        assert_eq!(bits(&m, 0x0b00), 0);
        s.forget_written();
        let mut fresh = FakeMaps::default();
        s.settle(&mut fresh).unwrap();
        assert_eq!(words(&fresh), words(&m));
    }
}
