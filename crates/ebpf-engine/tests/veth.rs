//! Real traffic through a veth pair from a namespace of the test's own into
//! the engine attached on the host end, in skb and native mode.

use std::{net::IpAddr, time::Duration};

use ironpost_core::{
    Direction, EbpfConfig, PacketAction, Pipeline, Prefix, Protocol, RuleAction, RuleConfig,
};
use ironpost_ebpf_engine::{AttachedMode, EbpfEngine, EngineConfig, XdpMode};
use ironpost_lab::{Lab, kernel_tests_enabled, xdp_attached};
use ironpost_policy::{BlockEntry, OnConfigConflict, Origin};

/// Whether the egress watcher is attached to `iface` (TCX egress).
fn egress_attached(iface: &str) -> bool {
    use aya::programs::{SchedClassifier, TcAttachType};
    SchedClassifier::query_tcx(iface, TcAttachType::Egress).is_ok_and(|(_, progs)| {
        progs
            .iter()
            .any(|p| p.name_as_str() == Some("ironpost_egress"))
    })
}

fn blocked_and_passed(mode: XdpMode, want: AttachedMode) {
    let lab = Lab::new(2).unwrap();
    let (good, bad) = (lab.peer_addr(0), lab.peer_addr(1));
    let cfg = EbpfConfig {
        rules: vec![RuleConfig {
            id: "lab-bad".into(),
            description: "the lab's blocked peer".into(),
            address: Some((Direction::Src, Prefix::host(IpAddr::V4(bad)))),
            condition: None,
            action: RuleAction::Drop,
        }],
        ..EbpfConfig::default()
    };
    let mut engine = EbpfEngine::builder()
        .config(EngineConfig::from_core(&cfg))
        .interface(lab.host_if())
        .xdp_mode(mode)
        .build();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    rt.block_on(async {
        engine.start().await.unwrap();
        engine.spawn_event_reader(tx).unwrap();
    });
    let att = engine.attachment().unwrap().clone();
    assert_eq!(att.mode, want);
    assert_eq!(att.interface, lab.host_if());
    assert!(xdp_attached(lab.host_if()), "ip link shows the program");
    assert!(
        egress_attached(lab.host_if()),
        "bpftool shows the egress watcher"
    );

    const N: usize = 200;
    const M: usize = 50;
    assert_eq!(lab.send_udp(good, 9999, N, 100).unwrap(), N);
    assert_eq!(lab.send_udp(bad, 9999, M, 100).unwrap(), M);
    assert_eq!(
        lab.ping(good, 3).unwrap(),
        3,
        "the good peer gets its replies"
    );
    assert_eq!(lab.ping(bad, 3).unwrap(), 0, "the blocked peer gets none");

    // Counters: exactly what was sent (static neighbours, no IPv6: nothing else).
    let snap = engine.counters().unwrap();
    let frame = 14 + 20 + 8 + 100;
    assert_eq!(snap.udp().packets, (N + M) as u64, "{snap:?}");
    assert_eq!(snap.udp().bytes, ((N + M) * frame) as u64, "{snap:?}");
    assert_eq!(snap.udp().drops, M as u64, "{snap:?}");
    assert_eq!(snap.icmp().packets, 6, "{snap:?}");
    assert_eq!(snap.icmp().drops, 3, "{snap:?}");
    assert_eq!(snap.tcp().packets, 0, "{snap:?}");
    assert_eq!(snap.other().packets, 0, "{snap:?}");
    assert_eq!(snap.total().packets, (N + M + 6) as u64, "{snap:?}");
    assert_eq!(snap.total().drops, (M + 3) as u64, "{snap:?}");

    // An event for each drop, from the blocked peer only.
    let events: Vec<_> = rt.block_on(async {
        let mut v = Vec::new();
        while v.len() < M + 3 {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                Ok(Some(ev)) => v.push(ev),
                _ => break,
            }
        }
        v
    });
    assert_eq!(events.len(), M + 3);
    assert!(
        events
            .iter()
            .all(|e| e.src == IpAddr::V4(bad) && e.action == PacketAction::Drop)
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.protocol == Protocol::Udp)
            .count(),
        M
    );
    assert!(events.iter().all(|e| e.interface == lab.host_if()));
    assert!(
        events
            .iter()
            .filter(|e| e.protocol == Protocol::Udp)
            .all(|e| e.dst_port == Some(9999) && e.dst == IpAddr::V4(lab.host_addr()))
    );

    rt.block_on(engine.stop()).unwrap();
    assert!(!xdp_attached(lab.host_if()), "no program after stop");
    assert!(
        !egress_attached(lab.host_if()),
        "no egress watcher after stop"
    );
    // After stop, the blocked peer gets through again.
    assert_eq!(lab.ping(bad, 2).unwrap(), 2);
}

#[test]
fn skb_mode_drops_the_blocked_peer_and_counts_everything() {
    if !kernel_tests_enabled() {
        return;
    }
    blocked_and_passed(XdpMode::Skb, AttachedMode::Skb);
}

#[test]
fn native_mode_on_veth() {
    if !kernel_tests_enabled() {
        return;
    }
    blocked_and_passed(XdpMode::Native, AttachedMode::Native);
}

#[test]
fn auto_mode_prefers_native() {
    if !kernel_tests_enabled() {
        return;
    }
    blocked_and_passed(XdpMode::Auto, AttachedMode::Native);
}

#[test]
fn drop_detaches() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(1).unwrap();
    {
        let mut engine = EbpfEngine::builder()
            .interface(lab.host_if())
            .xdp_mode(XdpMode::Skb)
            .build();
        engine.load_and_attach().unwrap();
        assert!(xdp_attached(lab.host_if()));
    }
    assert!(!xdp_attached(lab.host_if()), "dropping the engine detaches");
    assert!(!egress_attached(lab.host_if()));
}

#[test]
fn attach_errors_are_clear() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut engine = EbpfEngine::builder().interface("nosuchif0").build();
    let err = engine.load_and_attach().unwrap_err();
    assert_eq!(err.to_string(), "no such network interface: nosuchif0");

    // A second program on the same interface and mode is refused by name.
    let lab = Lab::new(1).unwrap();
    let mut first = EbpfEngine::builder()
        .interface(lab.host_if())
        .xdp_mode(XdpMode::Skb)
        .build();
    first.load_and_attach().unwrap();
    let mut second = EbpfEngine::builder()
        .interface(lab.host_if())
        .xdp_mode(XdpMode::Skb)
        .build();
    let err = second.load_and_attach().unwrap_err().to_string();
    assert!(err.contains(lab.host_if()), "{err}");
    assert!(err.contains("already attached"), "{err}");
}

#[test]
fn one_engine_on_two_interfaces_shares_its_policy() {
    if !kernel_tests_enabled() {
        return;
    }
    let (a, b) = (Lab::new(1).unwrap(), Lab::new(1).unwrap());
    let mut engine = EbpfEngine::builder()
        .interface(a.host_if())
        .interface(b.host_if())
        .xdp_mode(XdpMode::Skb)
        .build();
    let attached: Vec<String> = engine
        .load_and_attach()
        .unwrap()
        .iter()
        .map(|att| att.interface.clone())
        .collect();
    assert_eq!(attached, [a.host_if(), b.host_if()]);
    assert!(xdp_attached(a.host_if()) && xdp_attached(b.host_if()));
    assert_eq!(a.ping(a.peer_addr(0), 2).unwrap(), 2);
    assert_eq!(b.ping(b.peer_addr(0), 2).unwrap(), 2);
    // One block, in force on both interfaces: block b's whole subnet.
    let o = b.peer_addr(0).octets();
    let net = Prefix::new(IpAddr::V4([o[0], o[1], o[2], 0].into()), 24).unwrap();
    engine
        .block(
            vec![BlockEntry::source(net, RuleAction::Drop, Origin::Manual, 0)],
            OnConfigConflict::Refuse,
            &mut |_| true,
        )
        .unwrap();
    assert_eq!(b.ping(b.peer_addr(0), 2).unwrap(), 0);
    assert_eq!(a.ping(a.peer_addr(0), 2).unwrap(), 2);
    let hits = engine.hits().unwrap().blocks[&(Direction::Src, net)];
    assert!(hits.packets >= 2, "{hits:?}");
    // Detaching one interface leaves the other filtering.
    engine.detach_interface(b.host_if()).unwrap();
    assert!(!xdp_attached(b.host_if()) && xdp_attached(a.host_if()));
    assert_eq!(b.ping(b.peer_addr(0), 2).unwrap(), 2);
    drop(engine);
    assert!(!xdp_attached(a.host_if()));
}
