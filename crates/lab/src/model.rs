//! A reference model of the datapath's parsing and policy, written from the
//! README ("How a frame is parsed" and "Rules and evaluation order"), not
//! from the eBPF code: the differential tests feed it and the loaded
//! program the same frames and require the same verdicts and counters.
//!
//! It models rules without conditions (conditioned rules are covered by
//! the policy table test) and a FRAGS table that never evicts (the tests
//! keep so few datagrams in flight that no bucket of the kernel's table
//! overflows).

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// What the policy says about a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Let through, not reported.
    Pass,
    /// Dropped.
    Drop,
    /// Let through and reported.
    Monitor,
}

/// Traffic classes, as the datapath counts them.
pub const CLASSES: [&str; 4] = ["tcp", "udp", "icmp", "other"];

/// Fragmented and malformed frames, by kind (the README's names).
pub const NOTES: [&str; 8] = [
    "frag_first",
    "frag_followed",
    "frag_orphan",
    "frag_tiny",
    "frag_bad_offset",
    "l4_malformed",
    "ext_chain_bad",
    "l3_unreadable",
];

/// An address rule: a prefix and what to do with what it matches.
#[derive(Clone, Debug)]
pub struct AddressRule {
    /// The network address.
    pub addr: IpAddr,
    /// Prefix length.
    pub len: u8,
    /// The action.
    pub verdict: Verdict,
}

/// A port rule: protocol class (0 tcp, 1 udp, 2 icmp) and destination port
/// (ignored for ICMP).
#[derive(Clone, Debug)]
pub struct PortRule {
    /// Traffic class index.
    pub class: usize,
    /// Destination port.
    pub port: u16,
    /// The action.
    pub verdict: Verdict,
}

/// The policy the model evaluates.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Allow list (sources).
    pub allow: Vec<AddressRule>,
    /// Source rules.
    pub src: Vec<AddressRule>,
    /// Destination rules.
    pub dst: Vec<AddressRule>,
    /// Port rules.
    pub ports: Vec<PortRule>,
}

/// Which rule decided: (list, index) with list 0 allow, 1 src, 2 dst,
/// 3 ports.
pub type RuleRef = (u8, usize);

/// Counters the model keeps, comparable with the datapath's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Per class: packets, bytes, drops.
    pub classes: [(u64, u64, u64); 4],
    /// Per `NOTES` kind.
    pub notes: [u64; 8],
    /// Hits (packets, bytes) per rule.
    pub hits: HashMap<RuleRef, (u64, u64)>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct FragKey {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    proto: u8,
}

#[derive(Clone, Copy)]
struct FragFields {
    ports: (u16, u16),
    proto: u8,
    drop: bool,
}

/// The model: a policy, the remembered first fragments, and counters.
pub struct Model {
    policy: Policy,
    frags: HashMap<FragKey, FragFields>,
    /// What the model counted so far.
    pub counters: Counters,
}

const TINY: usize = 3;
const BAD_OFFSET: usize = 4;
const L4_MALFORMED: usize = 5;
const EXT_BAD: usize = 6;
const L3_UNREADABLE: usize = 7;

/// What the parser learned.
struct Parsed {
    src: IpAddr,
    dst: IpAddr,
    class: usize,
    proto: u8,
    ports: Option<(u16, u16)>,
    bad: Option<usize>,
    /// 0 none, 1 first, 2 later.
    frag: u8,
    frag_id: u32,
    frag_proto: u8,
}

fn l4_min(proto: u8) -> usize {
    match proto {
        6 => 20,
        17 | 1 | 58 => 8,
        _ => 0,
    }
}

fn class_of(proto: u8, v6: bool) -> usize {
    match proto {
        6 => 0,
        17 => 1,
        1 if !v6 => 2,
        58 if v6 => 2,
        _ => 3,
    }
}

fn in_prefix(rule: &AddressRule, a: IpAddr) -> bool {
    match (rule.addr, a) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if rule.len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(rule.len))
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if rule.len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(rule.len))
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// The most specific rule of `rules` matching `a`.
fn longest(rules: &[AddressRule], a: IpAddr) -> Option<usize> {
    rules
        .iter()
        .enumerate()
        .filter(|(_, r)| in_prefix(r, a))
        .max_by_key(|(_, r)| r.len)
        .map(|(i, _)| i)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads the L4 header at `off`: Ok(ports) (ICMP: (0, 0)), Err(()) when
/// cut short or invalid, Ok(None)-like `None` for other protocols.
fn l4(f: &[u8], off: usize, proto: u8, icmp: u8) -> Option<Result<(u16, u16), ()>> {
    if proto == 6 {
        if f.len() < off + 20 || f[off + 12] >> 4 < 5 {
            return Some(Err(()));
        }
        Some(Ok((be16(f, off), be16(f, off + 2))))
    } else if proto == 17 {
        if f.len() < off + 8 {
            return Some(Err(()));
        }
        Some(Ok((be16(f, off), be16(f, off + 2))))
    } else if proto == icmp {
        if f.len() < off + 8 {
            return Some(Err(()));
        }
        Some(Ok((0, 0)))
    } else {
        None
    }
}

fn parse(f: &[u8]) -> Result<Parsed, Option<usize>> {
    if f.len() < 14 {
        return Err(None);
    }
    let mut et = be16(f, 12);
    let mut off = 14;
    for _ in 0..2 {
        if et != 0x8100 && et != 0x88a8 {
            break;
        }
        if f.len() < off + 4 {
            return Err(None);
        }
        et = be16(f, off + 2);
        off += 4;
    }
    match et {
        0x0800 => parse_v4(f, off),
        0x86dd => parse_v6(f, off),
        _ => Err(None),
    }
}

fn with_l4(mut p: Parsed, f: &[u8], off: usize, icmp: u8) -> Parsed {
    match l4(f, off, p.proto, icmp) {
        Some(Ok(ports)) => p.ports = Some(ports),
        Some(Err(())) => p.bad = Some(if p.frag == 1 { TINY } else { L4_MALFORMED }),
        None => {}
    }
    p
}

fn parse_v4(f: &[u8], off: usize) -> Result<Parsed, Option<usize>> {
    if f.len() < off + 20 {
        return Err(Some(L3_UNREADABLE));
    }
    let ihl = usize::from(f[off] & 0x0f) * 4;
    if f[off] >> 4 != 4 || ihl < 20 || f.len() < off + ihl {
        return Err(Some(L3_UNREADABLE));
    }
    let proto = f[off + 9];
    let b = |i: usize| -> [u8; 4] { [f[i], f[i + 1], f[i + 2], f[i + 3]] };
    let mut p = Parsed {
        src: IpAddr::V4(Ipv4Addr::from(b(off + 12))),
        dst: IpAddr::V4(Ipv4Addr::from(b(off + 16))),
        class: class_of(proto, false),
        proto,
        ports: None,
        bad: None,
        frag: 0,
        frag_id: 0,
        frag_proto: 0,
    };
    let field = be16(f, off + 6);
    let offset = usize::from(field & 0x1fff);
    if offset != 0 || field & 0x2000 != 0 {
        p.frag_id = u32::from(be16(f, off + 4));
        p.frag_proto = proto;
        if offset != 0 {
            p.frag = 2;
            if offset * 8 < l4_min(proto) {
                p.bad = Some(BAD_OFFSET);
            }
            return Ok(p);
        }
        p.frag = 1;
    }
    Ok(with_l4(p, f, off + ihl, 1))
}

fn is_ext(nh: u8) -> bool {
    matches!(nh, 0 | 43 | 44 | 51 | 60)
}

fn parse_v6(f: &[u8], off: usize) -> Result<Parsed, Option<usize>> {
    if f.len() < off + 40 || f[off] >> 4 != 6 {
        return Err(Some(L3_UNREADABLE));
    }
    let a = |i: usize| -> IpAddr {
        let mut o = [0u8; 16];
        o.copy_from_slice(&f[i..i + 16]);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    let mut p = Parsed {
        src: a(off + 8),
        dst: a(off + 24),
        class: 3,
        proto: 0,
        ports: None,
        bad: None,
        frag: 0,
        frag_id: 0,
        frag_proto: 0,
    };
    let mut nh = f[off + 6];
    let mut at = off + 40;
    // At most 8 extension headers; one cut short ends the walk.
    for _ in 0..8 {
        if !is_ext(nh) {
            break;
        }
        if nh == 44 {
            if f.len() < at + 8 {
                break;
            }
            let next = f[at];
            let field = be16(f, at + 2);
            let id = u32::from_be_bytes([f[at + 4], f[at + 5], f[at + 6], f[at + 7]]);
            nh = next;
            at += 8;
            let offset = usize::from(field >> 3);
            if offset == 0 && field & 1 == 0 {
                continue; // atomic fragment
            }
            p.frag_id = id;
            p.frag_proto = next;
            if offset != 0 {
                p.proto = next;
                p.class = class_of(next, true);
                p.frag = 2;
                if offset * 8 < l4_min(next) {
                    p.bad = Some(BAD_OFFSET);
                }
                return Ok(p);
            }
            p.frag = 1;
        } else {
            if f.len() < at + 2 {
                break;
            }
            let len = if nh == 51 {
                (usize::from(f[at + 1]) + 2) * 4
            } else {
                (usize::from(f[at + 1]) + 1) * 8
            };
            nh = f[at];
            at += len;
        }
    }
    p.proto = nh;
    if is_ext(nh) {
        p.bad = Some(EXT_BAD);
        return Ok(p);
    }
    p.class = class_of(nh, true);
    Ok(with_l4(p, f, at, 58))
}

impl Model {
    /// A model of the datapath loaded with `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            frags: HashMap::new(),
            counters: Counters::default(),
        }
    }

    fn hit(&mut self, r: RuleRef, len: u64) {
        let h = self.counters.hits.entry(r).or_default();
        h.0 += 1;
        h.1 += len;
    }

    /// The address stages: allow, source, destination. `Some(None)` is
    /// "allowed" (pass, no further stage).
    fn address_stage(&mut self, p: &Parsed, len: u64) -> Option<Option<Verdict>> {
        if let Some(i) = longest(&self.policy.allow, p.src) {
            self.hit((0, i), len);
            return Some(None);
        }
        if let Some(i) = longest(&self.policy.src, p.src) {
            self.hit((1, i), len);
            return Some(Some(self.policy.src[i].verdict));
        }
        if let Some(i) = longest(&self.policy.dst, p.dst) {
            self.hit((2, i), len);
            return Some(Some(self.policy.dst[i].verdict));
        }
        None
    }

    /// Runs one frame: its verdict, with every counter updated.
    pub fn run(&mut self, f: &[u8]) -> Verdict {
        let len = f.len() as u64;
        let mut p = match parse(f) {
            Ok(p) => p,
            Err(note) => {
                if let Some(n) = note {
                    self.counters.notes[n] += 1;
                }
                self.count(3, len, false);
                return Verdict::Pass;
            }
        };
        let v6 = p.src.is_ipv6();
        let key = FragKey {
            src: p.src,
            dst: p.dst,
            id: p.frag_id,
            proto: p.frag_proto,
        };
        // A later fragment takes its first fragment's L4 fields.
        let mut followed = false;
        if p.frag == 2
            && p.bad.is_none()
            && let Some(first) = self.frags.get(&key).copied()
        {
            followed = true;
            if first.drop {
                p.bad = Some(TINY);
            } else {
                p.proto = first.proto;
                p.class = class_of(first.proto, v6);
                p.ports = (p.class != 3).then_some(first.ports);
            }
        }
        let verdict = match self.address_stage(&p, len) {
            Some(None) => Verdict::Pass,
            Some(Some(Verdict::Monitor)) if p.bad.is_some() => Verdict::Drop,
            Some(Some(v)) => v,
            None if p.bad.is_some() => Verdict::Drop,
            None => self.port_stage(&p, len),
        };
        if p.frag == 1 {
            self.frags.insert(
                key,
                FragFields {
                    ports: p.ports.unwrap_or((0, 0)),
                    proto: p.proto,
                    drop: p.bad.is_some(),
                },
            );
        }
        let note = match (p.bad, p.frag) {
            (Some(n), _) => Some(n),
            (None, 1) => Some(0),
            (None, 2) => Some(if followed { 1 } else { 2 }),
            _ => None,
        };
        if let Some(n) = note {
            self.counters.notes[n] += 1;
        }
        self.count(p.class, len, verdict == Verdict::Drop);
        verdict
    }

    fn port_stage(&mut self, p: &Parsed, len: u64) -> Verdict {
        let Some((_, dport)) = p.ports else {
            return Verdict::Pass;
        };
        if p.class > 2 {
            return Verdict::Pass;
        }
        let found = self
            .policy
            .ports
            .iter()
            .position(|r| r.class == p.class && (p.class == 2 || r.port == dport));
        match found {
            Some(i) => {
                self.hit((3, i), len);
                self.policy.ports[i].verdict
            }
            None => Verdict::Pass,
        }
    }

    fn count(&mut self, class: usize, len: u64, dropped: bool) {
        let c = &mut self.counters.classes[class];
        c.0 += 1;
        c.1 += len;
        c.2 += u64::from(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{ETH_P_IP, Ipv4Opts, SYN, ethernet, ipv4, ipv4_with, tcp};

    fn port_drop(port: u16) -> Policy {
        Policy {
            ports: vec![PortRule {
                class: 0,
                port,
                verdict: Verdict::Drop,
            }],
            ..Policy::default()
        }
    }

    const S: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const D: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

    #[test]
    fn port_rule_and_remembered_fragments() {
        let mut m = Model::new(port_drop(8099));
        let whole = ethernet(ETH_P_IP, &[], &ipv4(S, D, 6, &tcp(1, 8099, SYN)));
        assert_eq!(m.run(&whole), Verdict::Drop);
        let first = Ipv4Opts {
            more_fragments: true,
            ..Ipv4Opts::default()
        };
        let mut seg = tcp(1, 8099, SYN);
        seg.extend_from_slice(&[0; 4]);
        let f1 = ethernet(ETH_P_IP, &[], &ipv4_with(S, D, 6, &seg, first));
        assert_eq!(m.run(&f1), Verdict::Drop);
        let later = Ipv4Opts {
            frag_offset: 3,
            ..Ipv4Opts::default()
        };
        let f2 = ethernet(ETH_P_IP, &[], &ipv4_with(S, D, 6, &[0; 8], later));
        assert_eq!(m.run(&f2), Verdict::Drop);
        assert_eq!(m.counters.notes[1], 1, "followed");
        assert_eq!(m.counters.hits[&(3, 0)].0, 3);
    }

    #[test]
    fn tiny_first_fragment_drops_its_datagram() {
        let mut m = Model::new(Policy::default());
        let first = Ipv4Opts {
            more_fragments: true,
            ..Ipv4Opts::default()
        };
        let f1 = ethernet(ETH_P_IP, &[], &ipv4_with(S, D, 6, &[0; 8], first));
        assert_eq!(m.run(&f1), Verdict::Drop);
        let overlap = Ipv4Opts {
            frag_offset: 1,
            ..Ipv4Opts::default()
        };
        let f2 = ethernet(ETH_P_IP, &[], &ipv4_with(S, D, 6, &[0; 8], overlap));
        assert_eq!(m.run(&f2), Verdict::Drop);
        let later = Ipv4Opts {
            frag_offset: 3,
            ..Ipv4Opts::default()
        };
        let f3 = ethernet(ETH_P_IP, &[], &ipv4_with(S, D, 6, &[0; 8], later));
        assert_eq!(m.run(&f3), Verdict::Drop);
        assert_eq!(m.counters.notes[TINY], 2);
        assert_eq!(m.counters.notes[BAD_OFFSET], 1);
    }
}
