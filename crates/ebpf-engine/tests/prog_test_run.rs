//! The XDP program on crafted packets through BPF_PROG_TEST_RUN: actions,
//! per-class counters, events and their budget, and fail-open parsing.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use ironpost_core::{
    Direction, EbpfConfig, PacketAction, Prefix, Protocol, RuleAction, RuleConfig,
};
use ironpost_ebpf_engine::{
    EbpfEngine, EngineConfig, TrafficSnapshot,
    common::{CLASS_COUNT, CLASS_ICMP, CLASS_OTHER, CLASS_TCP, CLASS_TOTAL, CLASS_UDP},
};
use ironpost_lab::{
    kernel_tests_enabled,
    packet::{
        ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, Ipv4Opts, SYN, arp_request,
        ethernet, icmp_echo, ipv4, ipv4_with, ipv6, tcp, udp,
    },
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

const DROPPED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const MONITORED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const PASSED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);
const CLEAN: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
const DST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const V6_SRC: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const V6_DST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

fn rule(id: &str, ip: Ipv4Addr, action: RuleAction) -> RuleConfig {
    RuleConfig {
        id: id.into(),
        description: String::new(),
        address: Some((Direction::Src, Prefix::host(IpAddr::V4(ip)))),
        condition: None,
        action,
    }
}

fn engine_with(adjust: impl FnOnce(&mut EbpfConfig)) -> EbpfEngine {
    let mut cfg = EbpfConfig {
        rules: vec![
            rule("drop", DROPPED, RuleAction::Drop),
            rule("monitor", MONITORED, RuleAction::Monitor),
            rule("pass", PASSED, RuleAction::Pass),
        ],
        ..EbpfConfig::default()
    };
    adjust(&mut cfg);
    let mut engine = EbpfEngine::builder()
        .config(EngineConfig::from_core(&cfg))
        .build();
    engine.load().expect("the verifier accepts ironpost_xdp");
    engine.apply_config().unwrap();
    engine
}

fn engine() -> EbpfEngine {
    engine_with(|_| {})
}

fn v4_tcp(src: Ipv4Addr, flags: u8) -> Vec<u8> {
    ethernet(ETH_P_IP, &[], &ipv4(src, DST, 6, &tcp(40000, 22, flags)))
}
fn v4_udp(src: Ipv4Addr) -> Vec<u8> {
    ethernet(ETH_P_IP, &[], &ipv4(src, DST, 17, &udp(5353, 53, b"query")))
}
fn v4_icmp(src: Ipv4Addr) -> Vec<u8> {
    ethernet(ETH_P_IP, &[], &ipv4(src, DST, 1, &icmp_echo(8)))
}

/// Counter changes caused by running `packet` once.
fn run_once(engine: &mut EbpfEngine, packet: &[u8]) -> (u32, [(u64, u64, u64); CLASS_COUNT]) {
    let before = engine.counters().unwrap();
    let out = engine.test_run(packet, 1).unwrap();
    let after = engine.counters().unwrap();
    (out.action, diff(&before, &after))
}

fn diff(a: &TrafficSnapshot, b: &TrafficSnapshot) -> [(u64, u64, u64); CLASS_COUNT] {
    let mut d = [(0, 0, 0); CLASS_COUNT];
    for (i, slot) in d.iter_mut().enumerate() {
        *slot = (
            b.classes[i].packets - a.classes[i].packets,
            b.classes[i].bytes - a.classes[i].bytes,
            b.classes[i].drops - a.classes[i].drops,
        );
    }
    d
}

/// Asserts the action, and that exactly `class` and TOTAL counted the packet.
fn expect(engine: &mut EbpfEngine, name: &str, packet: &[u8], action: u32, class: usize) {
    let (got, d) = run_once(engine, packet);
    assert_eq!(got, action, "{name}: action");
    let len = packet.len() as u64;
    let dropped = u64::from(action == XDP_DROP);
    for (i, delta) in d.iter().enumerate() {
        let want = if i == class || i == CLASS_TOTAL {
            (1, len, dropped)
        } else {
            (0, 0, 0)
        };
        assert_eq!(*delta, want, "{name}: counters of class {i}");
    }
}

#[test]
fn ipv4_protocols_and_rule_actions() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut e = engine();
    let cases: &[(&str, Vec<u8>, u32, usize)] = &[
        ("tcp clean", v4_tcp(CLEAN, SYN), XDP_PASS, CLASS_TCP),
        ("tcp dropped", v4_tcp(DROPPED, SYN), XDP_DROP, CLASS_TCP),
        ("tcp monitored", v4_tcp(MONITORED, SYN), XDP_PASS, CLASS_TCP),
        ("tcp pass rule", v4_tcp(PASSED, SYN), XDP_PASS, CLASS_TCP),
        ("udp clean", v4_udp(CLEAN), XDP_PASS, CLASS_UDP),
        ("udp dropped", v4_udp(DROPPED), XDP_DROP, CLASS_UDP),
        ("icmp clean", v4_icmp(CLEAN), XDP_PASS, CLASS_ICMP),
        ("icmp dropped", v4_icmp(DROPPED), XDP_DROP, CLASS_ICMP),
        (
            "gre from dropped source",
            ethernet(ETH_P_IP, &[], &ipv4(DROPPED, DST, 47, &[0; 8])),
            XDP_DROP,
            CLASS_OTHER,
        ),
        (
            "destination match is not a source match",
            ethernet(ETH_P_IP, &[], &ipv4(CLEAN, DROPPED, 6, &tcp(1, 2, SYN))),
            XDP_PASS,
            CLASS_TCP,
        ),
    ];
    for (name, pkt, action, class) in cases {
        expect(&mut e, name, pkt, *action, *class);
    }
}

#[test]
fn ipv6_protocols_pass_and_are_counted() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut e = engine();
    let v6 = |next: u8, l4: &[u8]| ethernet(ETH_P_IPV6, &[], &ipv6(V6_SRC, V6_DST, next, l4));
    expect(
        &mut e,
        "v6 tcp",
        &v6(6, &tcp(1, 443, SYN)),
        XDP_PASS,
        CLASS_TCP,
    );
    expect(
        &mut e,
        "v6 udp",
        &v6(17, &udp(1, 53, b"q")),
        XDP_PASS,
        CLASS_UDP,
    );
    expect(
        &mut e,
        "v6 icmpv6",
        &v6(58, &icmp_echo(128)),
        XDP_PASS,
        CLASS_ICMP,
    );
    // Hop-by-hop options first: walked to the TCP header behind them.
    let mut hbh = vec![6, 0, 0, 0, 0, 0, 0, 0];
    hbh.extend_from_slice(&tcp(1, 443, SYN));
    expect(
        &mut e,
        "v6 hop-by-hop + tcp",
        &v6(0, &hbh),
        XDP_PASS,
        CLASS_TCP,
    );
    // ... and a TCP header cut short behind it is malformed: dropped.
    expect(
        &mut e,
        "v6 hop-by-hop + cut tcp",
        &v6(0, &[6, 0, 0, 0, 0, 0, 0, 0]),
        XDP_DROP,
        CLASS_TCP,
    );
    // ICMP (v4) in IPv6 is not ICMPv6.
    expect(
        &mut e,
        "v6 carrying proto 1",
        &v6(1, &icmp_echo(8)),
        XDP_PASS,
        CLASS_OTHER,
    );
}

#[test]
fn vlan_tags_are_parsed() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut e = engine();
    let inner = ipv4(DROPPED, DST, 17, &udp(1, 53, b"q"));
    let one = ethernet(ETH_P_IP, &[(ETH_P_8021Q, 10)], &inner);
    let two = ethernet(ETH_P_IP, &[(ETH_P_8021AD, 20), (ETH_P_8021Q, 10)], &inner);
    let three = ethernet(
        ETH_P_IP,
        &[(ETH_P_8021AD, 30), (ETH_P_8021AD, 20), (ETH_P_8021Q, 10)],
        &inner,
    );
    expect(&mut e, "one tag", &one, XDP_DROP, CLASS_UDP);
    expect(&mut e, "two tags", &two, XDP_DROP, CLASS_UDP);
    // More tags than parsed: not looked into, so not matched: passed as OTHER.
    expect(&mut e, "three tags", &three, XDP_PASS, CLASS_OTHER);
    let v6 = ethernet(
        ETH_P_IPV6,
        &[(ETH_P_8021Q, 5)],
        &ipv6(V6_SRC, V6_DST, 6, &tcp(1, 2, SYN)),
    );
    expect(&mut e, "tagged ipv6", &v6, XDP_PASS, CLASS_TCP);
}

#[test]
fn arp_and_unknown_ethertypes_pass_as_other() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut e = engine();
    expect(
        &mut e,
        "arp",
        &ethernet(ETH_P_ARP, &[], &arp_request()),
        XDP_PASS,
        CLASS_OTHER,
    );
    expect(
        &mut e,
        "lldp",
        &ethernet(0x88cc, &[], &[0; 46]),
        XDP_PASS,
        CLASS_OTHER,
    );
    expect(
        &mut e,
        "bare ethernet header",
        &ethernet(ETH_P_IP, &[], &[]),
        XDP_PASS,
        CLASS_OTHER,
    );
}

#[test]
fn unreadable_ipv4_headers_fail_open() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut e = engine();
    let l4 = tcp(1, 2, SYN);
    let with = |o: Ipv4Opts| ethernet(ETH_P_IP, &[], &ipv4_with(DROPPED, DST, 6, &l4, o));
    for ihl in 0..5 {
        let o = Ipv4Opts {
            ihl,
            ..Default::default()
        };
        expect(
            &mut e,
            &format!("ihl {ihl}"),
            &with(o),
            XDP_PASS,
            CLASS_OTHER,
        );
    }
    // IHL 15 says 60 bytes of header, but the packet ends before that.
    let mut short = ethernet(ETH_P_IP, &[], &ipv4(DROPPED, DST, 6, &[]));
    short[14] = 0x4f;
    expect(&mut e, "ihl past the end", &short, XDP_PASS, CLASS_OTHER);
    // Options present and complete: parsed, matched, dropped.
    let o = Ipv4Opts {
        ihl: 15,
        ..Default::default()
    };
    expect(&mut e, "ihl 15 with options", &with(o), XDP_DROP, CLASS_TCP);
    let o = Ipv4Opts {
        version: 6,
        ..Default::default()
    };
    expect(
        &mut e,
        "version 6 in an IPv4 frame",
        &with(o),
        XDP_PASS,
        CLASS_OTHER,
    );
    // TCP data offset below 5 is invalid: the addresses were read, so the
    // source rule still drops it; from a clean source it is malformed and
    // dropped too.
    let mut bad_doff = v4_tcp(DROPPED, SYN);
    bad_doff[14 + 20 + 12] = 0x40;
    expect(&mut e, "tcp data offset 4", &bad_doff, XDP_DROP, CLASS_TCP);
    let mut bad_doff = v4_tcp(CLEAN, SYN);
    bad_doff[14 + 20 + 12] = 0x40;
    expect(
        &mut e,
        "tcp data offset 4, clean source",
        &bad_doff,
        XDP_DROP,
        CLASS_TCP,
    );
}

#[test]
fn fragments() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut e = engine_with(|_| {});
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let rt = runtime();
    rt.block_on(async { e.spawn_event_reader(tx) }).unwrap();
    // A non-first fragment has no L4 header: its first bytes are data that
    // must not be read as ports, but the source rule still applies.
    let later = Ipv4Opts {
        frag_offset: 185,
        ..Default::default()
    };
    let garbage = [0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0];
    let pkt = ethernet(ETH_P_IP, &[], &ipv4_with(DROPPED, DST, 6, &garbage, later));
    expect(
        &mut e,
        "non-first fragment, blocked",
        &pkt,
        XDP_DROP,
        CLASS_TCP,
    );
    let ev = rt.block_on(recv(&mut rx));
    assert_eq!(ev.protocol, Protocol::Tcp);
    assert_eq!(
        (ev.src_port, ev.dst_port),
        (None, None),
        "no ports in a later fragment"
    );
    // Even a non-first fragment too short for a TCP header is fine.
    let pkt = ethernet(ETH_P_IP, &[], &ipv4_with(CLEAN, DST, 6, &[1], later));
    expect(&mut e, "short later fragment", &pkt, XDP_PASS, CLASS_TCP);
    // The first fragment (MF set, offset 0) carries the ports.
    let first = Ipv4Opts {
        more_fragments: true,
        ..Default::default()
    };
    let pkt = ethernet(
        ETH_P_IP,
        &[],
        &ipv4_with(DROPPED, DST, 17, &udp(7, 9, b"x"), first),
    );
    expect(&mut e, "first fragment", &pkt, XDP_DROP, CLASS_UDP);
    let ev = rt.block_on(recv(&mut rx));
    assert_eq!((ev.src_port, ev.dst_port), (Some(7), Some(9)));
}

#[test]
fn every_truncation_gets_the_verdict_its_known_fields_decide() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut e = engine();
    // (name, frame, where the IP addresses end, whole-frame action)
    let frames = [
        ("ipv4 tcp", v4_tcp(DROPPED, SYN), 34, XDP_DROP),
        (
            "ipv4 udp",
            ethernet(ETH_P_IP, &[], &ipv4(DROPPED, DST, 17, &udp(1, 2, b""))),
            34,
            XDP_DROP,
        ),
        ("ipv4 icmp", v4_icmp(DROPPED), 34, XDP_DROP),
        (
            "vlan ipv4 udp",
            ethernet(
                ETH_P_IP,
                &[(ETH_P_8021AD, 1), (ETH_P_8021Q, 2)],
                &ipv4(DROPPED, DST, 17, &udp(1, 2, b"")),
            ),
            42,
            XDP_DROP,
        ),
        (
            "ipv6 tcp",
            ethernet(ETH_P_IPV6, &[], &ipv6(V6_SRC, V6_DST, 6, &tcp(1, 2, SYN))),
            54,
            XDP_PASS,
        ),
        (
            "ipv6 udp",
            ethernet(ETH_P_IPV6, &[], &ipv6(V6_SRC, V6_DST, 17, &udp(1, 2, b""))),
            54,
            XDP_PASS,
        ),
        (
            "ipv6 icmpv6",
            ethernet(ETH_P_IPV6, &[], &ipv6(V6_SRC, V6_DST, 58, &icmp_echo(128))),
            54,
            XDP_PASS,
        ),
    ];
    // Each frame is headers only, so every cut lands inside a header.
    for (name, frame, known, whole) in &frames {
        let (full, _) = run_once(&mut e, frame);
        assert_eq!(full, *whole, "{name}: whole frame");
        for len in 0..frame.len() {
            // Before the addresses nothing is known: pass. After them, the
            // IPv4 frames' source rule drops them, and the IPv6 ones (no
            // rule) have an L4 header cut short: malformed, dropped. (The
            // kernel refuses frames shorter than an Ethernet header.)
            let want = if len < *known { XDP_PASS } else { XDP_DROP };
            match e.test_run(&frame[..len], 1) {
                Ok(out) => assert_eq!(out.action, want, "{name} cut to {len} bytes"),
                Err(err) => assert!(len < 14, "{name} cut to {len} bytes: {err}"),
            }
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn recv(
    rx: &mut tokio::sync::mpsc::Receiver<ironpost_core::PacketEvent>,
) -> ironpost_core::PacketEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an event within 5 s")
        .expect("reader alive")
}

#[test]
fn drops_and_monitors_are_reported_passes_are_not() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut e = engine();
    let rt = runtime();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    rt.block_on(async { e.spawn_event_reader(tx) }).unwrap();
    e.test_run(&v4_tcp(CLEAN, SYN), 1).unwrap();
    e.test_run(&v4_tcp(PASSED, SYN), 1).unwrap();
    e.test_run(&v4_tcp(DROPPED, SYN), 1).unwrap();
    e.test_run(
        &ethernet(
            ETH_P_IP,
            &[(ETH_P_8021Q, 42)],
            &ipv4(MONITORED, DST, 17, &udp(1000, 53, b"q")),
        ),
        1,
    )
    .unwrap();
    let first = rt.block_on(recv(&mut rx));
    assert_eq!(first.action, PacketAction::Drop);
    assert_eq!(first.src, IpAddr::V4(DROPPED));
    assert_eq!(first.dst, IpAddr::V4(DST));
    assert_eq!((first.src_port, first.dst_port), (Some(40000), Some(22)));
    assert_eq!(first.tcp_flags, ["SYN"]);
    assert_eq!(first.len, 54);
    let second = rt.block_on(recv(&mut rx));
    assert_eq!(second.action, PacketAction::Monitor);
    assert_eq!(second.src, IpAddr::V4(MONITORED));
    assert_eq!(second.protocol, Protocol::Udp);
    assert_eq!(second.vlan, Some(42));
    // Nothing else: the clean and pass-rule packets made no event.
    let none =
        rt.block_on(async { tokio::time::timeout(Duration::from_millis(300), rx.recv()).await });
    assert!(none.is_err(), "unexpected event: {none:?}");
    let snap = e.counters().unwrap();
    assert_eq!(snap.events.delivered, 2);
    assert_eq!(snap.events.lost(), 0);
}

#[test]
fn event_budget_caps_a_flood_and_counts_the_rest() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut e = engine_with(|c| c.event_budget_per_cpu = 5);
    // 1000 drops in one burst, well within one second.
    let out = e.test_run(&v4_udp(DROPPED), 1000).unwrap();
    assert_eq!(out.action, XDP_DROP);
    let snap = e.counters().unwrap();
    assert_eq!(snap.udp().packets, 1000);
    assert_eq!(snap.udp().drops, 1000);
    // The budget is per CPU; the kernel may move a long test run to another
    // CPU, which has a budget of its own.
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    let d = snap.events.delivered;
    assert!((5..=5 * cpus).contains(&d), "{snap:?}");
    assert_eq!(d + snap.events.lost_budget, 1000, "{snap:?}");
    assert_eq!(snap.events.lost_ring_full, 0);
}

#[test]
fn a_full_ring_buffer_is_counted() {
    if !kernel_tests_enabled() {
        return;
    }
    // One page of ring buffer holds at most 4096 / (64 + 8) records.
    let mut e = engine_with(|c| {
        c.ring_buffer_size = 4096;
        c.event_budget_per_cpu = 1_000_000;
    });
    e.test_run(&v4_udp(DROPPED), 1000).unwrap();
    let snap = e.counters().unwrap();
    assert!(
        snap.events.delivered > 0 && snap.events.delivered <= 4096 / 72,
        "{snap:?}"
    );
    assert_eq!(
        snap.events.delivered + snap.events.lost_ring_full,
        1000,
        "{snap:?}"
    );
    assert_eq!(snap.events.lost_budget, 0);
}

#[test]
fn zero_budget_turns_events_off() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut e = engine_with(|c| c.event_budget_per_cpu = 0);
    assert_eq!(e.test_run(&v4_udp(DROPPED), 10).unwrap().action, XDP_DROP);
    let snap = e.counters().unwrap();
    assert_eq!((snap.events.delivered, snap.events.lost_budget), (0, 10));
}

#[test]
fn blocklist_sync_follows_the_config() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut e = engine();
    let mut entries: Vec<(Prefix, RuleAction)> =
        e.policy().blocks().map(|b| (b.prefix, b.action)).collect();
    entries.sort_by_key(|(p, _)| *p);
    let host = |ip| Prefix::host(IpAddr::V4(ip));
    assert_eq!(
        entries,
        [
            (host(DROPPED), RuleAction::Drop),
            (host(MONITORED), RuleAction::Monitor),
            (host(PASSED), RuleAction::Pass)
        ]
    );
    // The kernel holds the same three entries.
    assert_eq!(e.hits().unwrap().blocks.len(), 3);
    // Rules that do not fit are refused before the map changes.
    let mut cfg = EbpfConfig {
        blocklist_max_entries: 2,
        rules: vec![
            rule("a", DROPPED, RuleAction::Drop),
            rule("b", MONITORED, RuleAction::Drop),
            rule("c", PASSED, RuleAction::Drop),
        ],
        ..EbpfConfig::default()
    };
    let mut small = EbpfEngine::builder()
        .config(EngineConfig::from_core(&cfg))
        .build();
    small.load().unwrap();
    let err = small.apply_config().unwrap_err().to_string();
    assert!(
        err.contains("do not fit") && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(small.hits().unwrap().blocks.is_empty());
    // Two fit exactly.
    cfg.rules.pop();
    let mut fits = EbpfEngine::builder()
        .config(EngineConfig::from_core(&cfg))
        .build();
    fits.load().unwrap();
    fits.apply_config().unwrap();
    assert_eq!(fits.hits().unwrap().blocks.len(), 2);
}
