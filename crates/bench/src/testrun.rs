//! Per-packet cost through BPF_PROG_TEST_RUN: every subject runs every case
//! `repeat` times, round after round, in an order that rotates each round.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use aya::programs::{TestRun as _, TestRunOptions, Xdp};
use ironpost_ebpf_engine::EbpfEngine;

use crate::packets::Case;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// Something that runs a frame through BPF_PROG_TEST_RUN.
pub enum Runner<'a> {
    /// A loaded aya program (trivial programs, xdp-filter).
    Xdp(&'a Xdp),
    /// An Ironpost engine.
    Engine(Box<EbpfEngine>),
}

impl Runner<'_> {
    fn run(&mut self, frame: &[u8], repeat: u32) -> Result<(u32, Duration)> {
        match self {
            Self::Xdp(p) => {
                let r = p.test_run(TestRunOptions {
                    data_in: Some(frame),
                    repeat,
                    ..TestRunOptions::default()
                })?;
                Ok((r.return_value, r.duration))
            }
            Self::Engine(e) => {
                let r = e.test_run(frame, repeat)?;
                Ok((r.action, r.duration))
            }
        }
    }
}

/// A column of the TEST_RUN table.
pub struct Subject<'a> {
    /// Column name.
    pub name: String,
    /// How its verdicts are checked against the cases'.
    pub check: Check,
    /// How it runs.
    pub runner: Runner<'a>,
}

/// How a subject's verdicts are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// One action for everything (the trivial programs): not checked.
    None,
    /// A peer: a different verdict is reported, not fatal.
    Report,
    /// Ironpost: a different verdict stops the bench.
    Enforce,
}

/// `samples[subject][case]`: ns per frame, one entry per round.
pub type Samples = Vec<Vec<Vec<f64>>>;

/// Runs every case on every subject for `rounds` rounds. Returns the
/// samples and, once each, the verdicts of peers that differ from the
/// case's.
pub fn measure(
    subjects: &mut [Subject<'_>],
    cases: &[Case],
    rounds: usize,
    repeat: u32,
) -> Result<(Samples, Vec<String>)> {
    let mut notes = Vec::new();
    let mut samples = vec![vec![Vec::with_capacity(rounds); cases.len()]; subjects.len()];
    for round in 0..rounds {
        for k in 0..subjects.len() {
            let s = (k + round) % subjects.len();
            let subject = &mut subjects[s];
            for (c, case) in cases.iter().enumerate() {
                let mut total = 0.0;
                for frame in &case.frames {
                    let (action, d) = subject
                        .runner
                        .run(frame, repeat)
                        .with_context(|| format!("{} on {}", subject.name, case.name))?;
                    let want = if case.dropped { XDP_DROP } else { XDP_PASS };
                    let differs = format!(
                        "{} returned {} on \"{}\" (frame {} of {}), where the policy says {}",
                        subject.name,
                        action_name(action),
                        case.name,
                        frame_no(case, frame),
                        case.frames.len(),
                        action_name(want)
                    );
                    match subject.check {
                        Check::None => {}
                        _ if action == want => {}
                        Check::Report => {
                            if !notes.contains(&differs) {
                                notes.push(differs);
                            }
                        }
                        Check::Enforce => bail!("{differs}: the bench policy is not in place"),
                    }
                    total += d.as_nanos() as f64;
                }
                samples[s][c].push(total / case.frames.len() as f64);
            }
        }
        println!("   TEST_RUN round {}/{rounds} done", round + 1);
    }
    Ok((samples, notes))
}

fn frame_no(case: &Case, frame: &[u8]) -> usize {
    case.frames
        .iter()
        .position(|f| f == frame)
        .map_or(0, |i| i + 1)
}

fn action_name(action: u32) -> String {
    match action {
        0 => "XDP_ABORTED".into(),
        XDP_DROP => "XDP_DROP".into(),
        XDP_PASS => "XDP_PASS".into(),
        3 => "XDP_TX".into(),
        4 => "XDP_REDIRECT".into(),
        n => format!("action {n}"),
    }
}
