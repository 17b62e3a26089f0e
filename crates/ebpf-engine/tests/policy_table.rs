//! The evaluation order of the policy, as a table run through
//! BPF_PROG_TEST_RUN: each crafted packet must get its XDP action and add
//! to exactly the hit counter of the entry that decided it.
//!
//! Order (README, "Rules and evaluation order"): allow list, then source
//! rules (most specific prefix), then destination rules (most specific
//! prefix), then port rules, then pass.

use std::net::{IpAddr, Ipv6Addr};

use ironpost_core::{IronpostConfig, Prefix, RuleAction};
use ironpost_ebpf_engine::{EbpfEngine, EngineConfig, engine::PolicyHits};
use ironpost_lab::{
    kernel_tests_enabled,
    packet::{ETH_P_IP, ETH_P_IPV6, SYN, ethernet, icmp_echo, ipv4, ipv6, tcp, udp},
};
use ironpost_policy::{BlockEntry, OnConfigConflict, Origin};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// What the packet carries above IP.
#[derive(Clone, Copy)]
enum L4 {
    Tcp(u16),
    Udp(u16),
    Icmp,
}

fn packet(src: &str, dst: &str, l4: L4) -> Vec<u8> {
    let (proto, payload) = match l4 {
        L4::Tcp(port) => (6, tcp(40_000, port, SYN)),
        L4::Udp(port) => (17, udp(40_000, port, b"x")),
        L4::Icmp => (1, icmp_echo(8)),
    };
    match (
        src.parse::<IpAddr>().unwrap(),
        dst.parse::<IpAddr>().unwrap(),
    ) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ethernet(ETH_P_IP, &[], &ipv4(s, d, proto, &payload)),
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let (proto, payload) = match l4 {
                L4::Icmp => (58, icmp_echo(128)),
                _ => (proto, payload),
            };
            ethernet(ETH_P_IPV6, &[], &ipv6(s, d, proto, &payload))
        }
        _ => panic!("mixed families"),
    }
}

fn engine(config: &str, manual: &[&str]) -> EbpfEngine {
    let cfg = IronpostConfig::parse(config, "policy_table.toml").unwrap();
    let mut engine = EbpfEngine::builder()
        .config(EngineConfig::from_core(&cfg.ebpf))
        .build();
    engine.load().expect("the verifier accepts ironpost_xdp");
    engine.apply_config().unwrap();
    let entries = manual
        .iter()
        .map(|p| BlockEntry::source(p.parse().unwrap(), RuleAction::Drop, Origin::Manual, 0))
        .collect();
    engine
        .block(entries, OnConfigConflict::Refuse, &mut |_| true)
        .unwrap();
    engine
}

/// Names of the entries whose packet counter moved by exactly one.
fn moved(before: &PolicyHits, after: &PolicyHits) -> Vec<String> {
    let mut out = Vec::new();
    for (k, h) in &after.blocks {
        let b = before.blocks.get(k).map_or(0, |h| h.packets);
        if h.packets != b {
            assert_eq!(h.packets, b + 1, "{} {}", k.0, k.1);
            out.push(format!("{} {}", k.0, k.1));
        }
    }
    for (p, h) in &after.allow {
        let b = before.allow.get(p).map_or(0, |h| h.packets);
        if h.packets != b {
            out.push(format!("allow {p}"));
        }
    }
    for (slot, h) in &after.port_rules {
        let b = before.port_rules.get(slot).map_or(0, |h| h.packets);
        if h.packets != b {
            out.push(format!("port {slot}"));
        }
    }
    out
}

/// (source, destination, L4, expected action, entry that decides or "").
type Case<'a> = (&'a str, &'a str, L4, u32, &'a str);

fn check(engine: &mut EbpfEngine, cases: &[Case<'_>]) {
    for (src, dst, l4, action, decided_by) in cases {
        let pkt = packet(src, dst, *l4);
        let before = engine.hits().unwrap();
        let got = engine.test_run(&pkt, 1).unwrap().action;
        let after = engine.hits().unwrap();
        let name = format!("{src} -> {dst}");
        assert_eq!(got, *action, "{name}: action");
        let want: Vec<String> = if decided_by.is_empty() {
            vec![]
        } else {
            vec![decided_by.to_string()]
        };
        assert_eq!(moved(&before, &after), want, "{name}: deciding entry");
    }
}

const IPV4_POLICY: &str = r#"
[ebpf]
allow = ["192.0.2.128/25"]

[[ebpf.rules]]
id = "net"
src = "192.0.2.0/24"

[[ebpf.rules]]
id = "watch-host"
src = "198.51.100.7"
action = "monitor"

[[ebpf.rules]]
id = "net2"
src = "198.51.100.0/24"

[[ebpf.rules]]
id = "exception"
src = "203.0.113.0/25"
action = "pass"

[[ebpf.rules]]
id = "wide"
src = "203.0.113.0/24"

[[ebpf.rules]]
id = "ssh-from-admin"
src = "100.64.1.1"
protocol = "tcp"
dst_port = 22
action = "pass"

[[ebpf.rules]]
id = "dns-from-net"
src = "100.65.0.0/16"
protocol = "udp"
dst_port = 53

[[ebpf.rules]]
id = "db"
dst = "10.9.0.5"
protocol = "tcp"
dst_port = 5432

[[ebpf.rules]]
id = "watch-net"
dst = "10.10.0.0/16"
action = "monitor"

[[ebpf.rules]]
id = "telnet"
protocol = "tcp"
dst_port = 23

[[ebpf.rules]]
id = "high-udp"
protocol = "udp"
dst_port = "30000-40000"
action = "monitor"

[[ebpf.rules]]
id = "icmp-watch"
protocol = "icmp"
action = "monitor"
"#;

#[test]
fn ipv4_evaluation_order() {
    if !kernel_tests_enabled() {
        return;
    }
    // A manual block around the conditioned rule gives it a fallback.
    let mut e = engine(IPV4_POLICY, &["100.64.0.0/16"]);
    let d = "10.0.0.1";
    check(
        &mut e,
        &[
            // The allow list wins over the enclosing /24 block.
            (
                "192.0.2.130",
                d,
                L4::Tcp(80),
                XDP_PASS,
                "allow 192.0.2.128/25",
            ),
            (
                "192.0.2.255",
                d,
                L4::Tcp(80),
                XDP_PASS,
                "allow 192.0.2.128/25",
            ),
            // ... and over port rules.
            (
                "192.0.2.200",
                d,
                L4::Tcp(23),
                XDP_PASS,
                "allow 192.0.2.128/25",
            ),
            // Boundaries of the /24 and of the allowed /25.
            ("192.0.2.0", d, L4::Tcp(80), XDP_DROP, "src 192.0.2.0/24"),
            ("192.0.2.127", d, L4::Udp(9), XDP_DROP, "src 192.0.2.0/24"),
            ("192.0.1.255", d, L4::Tcp(80), XDP_PASS, ""),
            ("192.0.3.0", d, L4::Tcp(80), XDP_PASS, ""),
            // The exact /32 entry beats the /24 around it.
            ("198.51.100.7", d, L4::Icmp, XDP_PASS, "src 198.51.100.7"),
            ("198.51.100.6", d, L4::Icmp, XDP_DROP, "src 198.51.100.0/24"),
            ("198.51.100.8", d, L4::Icmp, XDP_DROP, "src 198.51.100.0/24"),
            // A more specific pass beats a wider drop.
            (
                "203.0.113.1",
                d,
                L4::Tcp(80),
                XDP_PASS,
                "src 203.0.113.0/25",
            ),
            (
                "203.0.113.127",
                d,
                L4::Tcp(80),
                XDP_PASS,
                "src 203.0.113.0/25",
            ),
            (
                "203.0.113.128",
                d,
                L4::Tcp(80),
                XDP_DROP,
                "src 203.0.113.0/24",
            ),
            // A rule with a condition: its action when the condition holds,
            // else the action of the block around it.
            ("100.64.1.1", d, L4::Tcp(22), XDP_PASS, "src 100.64.1.1"),
            ("100.64.1.1", d, L4::Tcp(80), XDP_DROP, "src 100.64.1.1"),
            ("100.64.1.1", d, L4::Udp(22), XDP_DROP, "src 100.64.1.1"),
            ("100.64.1.2", d, L4::Tcp(22), XDP_DROP, "src 100.64.0.0/16"),
            // ... and with nothing around it, evaluation goes on.
            ("100.65.9.9", d, L4::Udp(53), XDP_DROP, "src 100.65.0.0/16"),
            ("100.65.9.9", d, L4::Udp(54), XDP_PASS, ""),
            ("100.65.9.9", d, L4::Tcp(53), XDP_PASS, ""),
            ("100.65.9.9", d, L4::Tcp(23), XDP_DROP, "port 1"),
            // Destination rules.
            (
                "1.1.1.1",
                "10.9.0.5",
                L4::Tcp(5432),
                XDP_DROP,
                "dst 10.9.0.5",
            ),
            ("1.1.1.1", "10.9.0.5", L4::Tcp(5433), XDP_PASS, ""),
            ("1.1.1.1", "10.9.0.6", L4::Tcp(5432), XDP_PASS, ""),
            (
                "1.1.1.1",
                "10.10.255.255",
                L4::Udp(1),
                XDP_PASS,
                "dst 10.10.0.0/16",
            ),
            ("1.1.1.1", "10.11.0.0", L4::Udp(1), XDP_PASS, ""),
            // Source rules come before destination rules.
            (
                "192.0.2.9",
                "10.10.0.1",
                L4::Udp(1),
                XDP_DROP,
                "src 192.0.2.0/24",
            ),
            // A destination monitor decides before port rules.
            (
                "1.1.1.1",
                "10.10.0.1",
                L4::Tcp(23),
                XDP_PASS,
                "dst 10.10.0.0/16",
            ),
            // Port rules, with range boundaries.
            ("1.1.1.1", d, L4::Tcp(23), XDP_DROP, "port 1"),
            ("1.1.1.1", d, L4::Tcp(24), XDP_PASS, ""),
            ("1.1.1.1", d, L4::Udp(23), XDP_PASS, ""),
            ("1.1.1.1", d, L4::Udp(29_999), XDP_PASS, ""),
            ("1.1.1.1", d, L4::Udp(30_000), XDP_PASS, "port 2"),
            ("1.1.1.1", d, L4::Udp(40_000), XDP_PASS, "port 2"),
            ("1.1.1.1", d, L4::Udp(40_001), XDP_PASS, ""),
            ("1.1.1.1", d, L4::Icmp, XDP_PASS, "port 3"),
        ],
    );
    // Monitored packets are reported, passed ones are not: the hit counters
    // above tell them apart; the counters also hold bytes.
    let hits = e.hits().unwrap();
    let allow = hits.allow[&"192.0.2.128/25".parse::<Prefix>().unwrap()];
    assert_eq!(allow.packets, 3);
    assert!(allow.bytes >= 3 * 54, "{allow:?}");
}

#[test]
fn ipv6_and_zero_length_prefixes() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut e = engine(
        r#"
[ebpf]
allow = ["2001:db8:1:ff::/64", "192.0.2.1"]

[[ebpf.rules]]
id = "v6-48"
src = "2001:db8:1::/48"

[[ebpf.rules]]
id = "v6-64-pass"
src = "2001:db8:1:2::/64"
action = "pass"

[[ebpf.rules]]
id = "v6-host"
src = "2001:db8:1:2::5/128"

[[ebpf.rules]]
id = "v6-web"
dst = "2001:db8:beef::/64"
protocol = "tcp"
dst_port = 443
action = "monitor"

[[ebpf.rules]]
id = "all-v4"
src = "0.0.0.0/0"
action = "monitor"

[[ebpf.rules]]
id = "all-v6-to"
dst = "::/0"
action = "monitor"
"#,
        &[],
    );
    let d6 = "2001:db8:ffff::1";
    check(
        &mut e,
        &[
            (
                "2001:db8:1:2::5",
                d6,
                L4::Tcp(80),
                XDP_DROP,
                "src 2001:db8:1:2::5",
            ),
            (
                "2001:db8:1:2::4",
                d6,
                L4::Tcp(80),
                XDP_PASS,
                "src 2001:db8:1:2::/64",
            ),
            (
                "2001:db8:1:2::6",
                d6,
                L4::Tcp(80),
                XDP_PASS,
                "src 2001:db8:1:2::/64",
            ),
            (
                "2001:db8:1:3::1",
                d6,
                L4::Tcp(80),
                XDP_DROP,
                "src 2001:db8:1::/48",
            ),
            (
                "2001:db8:1:ffff:ffff:ffff:ffff:ffff",
                d6,
                L4::Udp(1),
                XDP_DROP,
                "src 2001:db8:1::/48",
            ),
            (
                "2001:db8:1:ff::9",
                d6,
                L4::Tcp(80),
                XDP_PASS,
                "allow 2001:db8:1:ff::/64",
            ),
            // Adjacent /48s are not matched by source; ::/0 catches them
            // by destination.
            ("2001:db8:0:ffff::1", d6, L4::Tcp(80), XDP_PASS, "dst ::/0"),
            ("2001:db8:2::1", d6, L4::Icmp, XDP_PASS, "dst ::/0"),
            // A destination rule with a condition inside ::/0: when the
            // condition fails, the /0's action applies (on the same entry).
            (
                "2001:db8:9::1",
                "2001:db8:beef::1",
                L4::Tcp(443),
                XDP_PASS,
                "dst 2001:db8:beef::/64",
            ),
            (
                "2001:db8:9::1",
                "2001:db8:beef::1",
                L4::Tcp(444),
                XDP_PASS,
                "dst 2001:db8:beef::/64",
            ),
            // 0.0.0.0/0 matches every IPv4 source and no IPv6 one.
            (
                "1.2.3.4",
                "10.0.0.1",
                L4::Tcp(80),
                XDP_PASS,
                "src 0.0.0.0/0",
            ),
            (
                "255.255.255.255",
                "10.0.0.1",
                L4::Icmp,
                XDP_PASS,
                "src 0.0.0.0/0",
            ),
            ("0.0.0.0", "10.0.0.1", L4::Udp(1), XDP_PASS, "src 0.0.0.0/0"),
            (
                "192.0.2.1",
                "10.0.0.1",
                L4::Udp(1),
                XDP_PASS,
                "allow 192.0.2.1",
            ),
        ],
    );
    let hits = e.hits().unwrap();
    assert_eq!(hits.blocks.len(), 6);
}

#[test]
fn blocks_take_effect_at_once_and_leave_no_trace() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut e = engine("", &[]);
    let pkt = packet("198.18.0.1", "10.0.0.1", L4::Udp(9));
    assert_eq!(e.test_run(&pkt, 1).unwrap().action, XDP_PASS);
    let key = (
        ironpost_core::Direction::Src,
        "198.18.0.0/15".parse().unwrap(),
    );
    e.block(
        vec![BlockEntry::source(
            key.1,
            RuleAction::Drop,
            Origin::Manual,
            0,
        )],
        OnConfigConflict::Refuse,
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(e.test_run(&pkt, 1).unwrap().action, XDP_DROP);
    e.unblock(&[key]).unwrap();
    assert_eq!(e.test_run(&pkt, 1).unwrap().action, XDP_PASS);
    assert!(e.hits().unwrap().blocks.is_empty());
    // A v6 host next to it is unaffected throughout.
    let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    let pkt6 = packet(&v6.to_string(), "2001:db8::2", L4::Tcp(1));
    assert_eq!(e.test_run(&pkt6, 1).unwrap().action, XDP_PASS);
}

#[test]
fn a_syn_only_block_drops_bare_syns_and_nothing_else() {
    if !kernel_tests_enabled() {
        return;
    }
    use ironpost_core::{Condition, L4Protocol};
    use ironpost_lab::packet::{ACK, FIN, RST};
    let mut e = engine("", &[]);
    let src: std::net::Ipv4Addr = "198.51.100.9".parse().unwrap();
    let dst: std::net::Ipv4Addr = "10.0.0.1".parse().unwrap();
    let mut entry = BlockEntry::source(
        Prefix::host(IpAddr::V4(src)),
        RuleAction::Drop,
        Origin::Auto,
        0,
    );
    entry.condition = Some(Condition {
        protocol: L4Protocol::Tcp,
        dst_port: None,
        syn_only: true,
        rst_only: false,
    });
    e.block(vec![entry], OnConfigConflict::Refuse, &mut |_| true)
        .unwrap();
    let tcp_pkt = |flags: u8| ethernet(ETH_P_IP, &[], &ipv4(src, dst, 6, &tcp(40_000, 443, flags)));
    for (flags, want, what) in [
        (SYN, XDP_DROP, "bare SYN"),
        (SYN | ACK, XDP_PASS, "SYN-ACK"),
        (ACK, XDP_PASS, "ACK"),
        (ACK | FIN, XDP_PASS, "FIN-ACK"),
        (RST, XDP_PASS, "RST"),
    ] {
        assert_eq!(
            e.test_run(&tcp_pkt(flags), 1).unwrap().action,
            want,
            "{what}"
        );
    }
    let udp_pkt = ethernet(ETH_P_IP, &[], &ipv4(src, dst, 17, &udp(40_000, 53, b"q")));
    assert_eq!(e.test_run(&udp_pkt, 1).unwrap().action, XDP_PASS, "UDP");
    let hits = e.hits().unwrap();
    assert_eq!(
        hits.blocks.values().map(|h| h.packets).sum::<u64>(),
        1,
        "only the SYN counted"
    );
}
