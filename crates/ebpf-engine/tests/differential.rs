//! Differential test of the datapath: the loaded program (through
//! BPF_PROG_TEST_RUN) and the host-side reference model
//! (`ironpost_lab::model`, written from the README) get the same seed-fixed
//! random and mutated frames and must agree on every verdict and on every
//! counter: traffic classes, fragment and malformed-frame counters, and
//! each rule's hits.
//!
//! `IRONPOST_DIFFERENTIAL_FRAMES` (default 100,000) and
//! `IRONPOST_DIFFERENTIAL_SEED` (default 1) set the run; `cargo xtask soak`
//! runs 10,000,000.

use std::net::IpAddr;

use ironpost_core::{Direction, IronpostConfig};
use ironpost_ebpf_engine::{EbpfEngine, EngineConfig, TrafficSnapshot, common::parse};
use ironpost_lab::{
    frames::FrameGen,
    kernel_tests_enabled,
    model::{AddressRule, Counters, Model, Policy, PortRule, Verdict},
};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// (direction or "allow" or protocol, address or port, action)
const RULES: &[(&str, &str, &str)] = &[
    ("allow", "192.0.2.77/32", "pass"),
    ("allow", "2001:db8:ff::/48", "pass"),
    ("src", "10.0.0.0/8", "drop"),
    ("src", "10.1.2.3/32", "pass"),
    ("src", "10.0.0.2/32", "monitor"),
    ("src", "2001:db8:1::/48", "drop"),
    ("dst", "203.0.113.50/32", "drop"),
    ("dst", "198.51.100.0/24", "monitor"),
    ("dst", "2001:db8::2/128", "monitor"),
    ("tcp", "8099", "drop"),
    ("tcp", "22", "monitor"),
    ("udp", "53", "drop"),
    ("icmp", "", "monitor"),
];

fn verdict(action: &str) -> Verdict {
    match action {
        "drop" => Verdict::Drop,
        "monitor" => Verdict::Monitor,
        _ => Verdict::Pass,
    }
}

fn address(prefix: &str, action: &str) -> AddressRule {
    let (addr, len) = prefix.split_once('/').unwrap();
    AddressRule {
        addr: addr.parse().unwrap(),
        len: len.parse().unwrap(),
        verdict: verdict(action),
    }
}

/// The same policy as the engine's TOML and as the model's.
fn policy() -> (String, Policy) {
    // FRAGS far larger than the datagrams in flight (2^20 buckets of 2 for
    // at most 1,068 keys, see `FrameGen::fragments`): a 2-way table evicts
    // when three keys meet in one bucket, which the model does not model.
    let mut toml = String::from("[ebpf]\nmax_tracked_fragments = 2097152\nallow = [");
    let mut model = Policy::default();
    let mut rules = String::new();
    for (i, (kind, what, action)) in RULES.iter().enumerate() {
        match *kind {
            "allow" => {
                toml.push_str(&format!("\"{what}\", "));
                model.allow.push(address(what, action));
            }
            "src" | "dst" => {
                rules.push_str(&format!(
                    "[[ebpf.rules]]\nid = \"r{i}\"\n{kind} = \"{what}\"\naction = \"{action}\"\n"
                ));
                let list = if *kind == "src" {
                    &mut model.src
                } else {
                    &mut model.dst
                };
                list.push(address(what, action));
            }
            proto => {
                let (class, port) = match proto {
                    "tcp" => (0, what.parse().unwrap()),
                    "udp" => (1, what.parse().unwrap()),
                    _ => (2, 0),
                };
                let port_line = if class == 2 {
                    String::new()
                } else {
                    format!("dst_port = {port}\n")
                };
                rules.push_str(&format!(
                    "[[ebpf.rules]]\nid = \"r{i}\"\nprotocol = \"{proto}\"\n{port_line}action = \"{action}\"\n"
                ));
                model.ports.push(PortRule {
                    class,
                    port,
                    verdict: verdict(action),
                });
            }
        }
    }
    toml.push_str("]\n");
    toml.push_str(&rules);
    (toml, model)
}

/// The datapath's counters in the model's shape.
fn kernel_counters(e: &mut EbpfEngine, model: &Policy) -> Counters {
    let snap: TrafficSnapshot = e.counters().unwrap();
    let mut c = Counters::default();
    for (i, slot) in c.classes.iter_mut().enumerate() {
        let k = snap.classes[i];
        *slot = (k.packets, k.bytes, k.drops);
    }
    for (i, n) in c.notes.iter_mut().enumerate() {
        *n = snap.parse.get(i);
    }
    let hits = e.hits().unwrap();
    let same = |r: &AddressRule, addr: IpAddr, len: u8| r.addr == addr && r.len == len;
    for (key, h) in &hits.blocks {
        let (dir, p) = (key.0, key.1);
        let (list, rules) = match dir {
            Direction::Src => (1u8, &model.src),
            Direction::Dst => (2u8, &model.dst),
        };
        let i = rules
            .iter()
            .position(|r| same(r, p.addr(), p.len()))
            .unwrap();
        if h.packets > 0 {
            c.hits.insert((list, i), (h.packets, h.bytes));
        }
    }
    for (p, h) in &hits.allow {
        let i = model
            .allow
            .iter()
            .position(|r| same(r, p.addr(), p.len()))
            .unwrap();
        if h.packets > 0 {
            c.hits.insert((0, i), (h.packets, h.bytes));
        }
    }
    for (slot, h) in &hits.port_rules {
        if h.packets > 0 {
            c.hits.insert((3, *slot as usize - 1), (h.packets, h.bytes));
        }
    }
    c
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn the_datapath_agrees_with_the_reference_model() {
    if !kernel_tests_enabled() {
        return;
    }
    let frames = env_u64("IRONPOST_DIFFERENTIAL_FRAMES", 100_000);
    let seed = env_u64("IRONPOST_DIFFERENTIAL_SEED", 1);
    let (toml, policy) = policy();
    let cfg = IronpostConfig::parse(&toml, "differential.toml").unwrap();
    let mut engine = EbpfEngine::builder()
        .config(EngineConfig::from_core(&cfg.ebpf).with_detection(&cfg.detection))
        .build();
    engine.load().expect("the verifier accepts ironpost_xdp");
    engine.apply_config().unwrap();
    let mut model = Model::new(policy.clone());
    let mut frames_gen = FrameGen::new(seed);
    let mut seen_notes = [0u64; parse::COUNT];
    for n in 0..frames {
        let frame = frames_gen.next_frame();
        let got = engine.test_run(&frame, 1).unwrap().action;
        let want = match model.run(&frame) {
            Verdict::Drop => XDP_DROP,
            Verdict::Pass | Verdict::Monitor => XDP_PASS,
        };
        assert_eq!(
            got, want,
            "frame {n} (seed {seed}): kernel {got}, model {want}: {frame:02x?}"
        );
        if n % 20_000 == 19_999 || n + 1 == frames {
            let k = kernel_counters(&mut engine, &policy);
            assert_eq!(
                k, model.counters,
                "counters after frame {n} (seed {seed}): kernel, then model"
            );
            seen_notes = k.notes;
        }
    }
    // The run must have exercised every kind of fragment and malformed
    // frame, or agreeing would prove little.
    for (i, name) in parse::NAMES.iter().enumerate() {
        assert!(
            seen_notes[i] > 0 || frames < 50_000,
            "no {name} frame in {frames}"
        );
    }
    eprintln!("{frames} frames agree (seed {seed}); notes {seen_notes:?}");
}
