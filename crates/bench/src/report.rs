//! `docs/benchmarks.md`: the figures of one run, their medians and the
//! ratios the targets are stated in.

use std::fmt::Write as _;

use crate::flood::{Receiver, Sample, Scenario};

/// Median of `v` (mean of the middle two for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Everything one run measured.
pub struct Report {
    /// Machine facts (label, value).
    pub machine: Vec<(String, String)>,
    /// The command and its parameters.
    pub command: String,
    /// Rounds per figure.
    pub rounds: usize,
    /// BPF_PROG_TEST_RUN repeat count.
    pub repeat: u32,
    /// Frames per flood.
    pub frames: u32,
    /// Where the floods' generator and receiver ran.
    pub placement: String,
    /// TEST_RUN columns.
    pub subjects: Vec<String>,
    /// TEST_RUN rows.
    pub cases: Vec<String>,
    /// `testrun[subject][case]` = ns per frame, per round.
    pub testrun: Vec<Vec<Vec<f64>>>,
    /// Floods: per receiver and scenario, one sample per round.
    pub floods: Vec<(Receiver, Scenario, Vec<Sample>)>,
    /// Entries, seconds, RSS KiB before and after, of the prefix import.
    pub import: (u32, f64, u64, u64),
    /// What `bpftool prog dump xlated` showed of Ironpost's program.
    pub xlated: Vec<String>,
    /// Peers' verdicts that differ from the policy's.
    pub verdict_notes: Vec<String>,
}

/// A target stated in the issue, checked against the medians.
pub struct Target {
    /// What is compared.
    pub what: String,
    /// Measured ratio.
    pub ratio: f64,
    /// The bound.
    pub bound: f64,
    /// True when the ratio must be at least the bound (rates), false when
    /// at most (costs).
    pub at_least: bool,
}

impl Target {
    /// Whether the median meets it.
    pub fn met(&self) -> bool {
        if self.at_least {
            self.ratio >= self.bound
        } else {
            self.ratio <= self.bound
        }
    }
}

impl Report {
    fn tr(&self, subject: &str, case: &str) -> f64 {
        let s = self.subjects.iter().position(|x| x == subject);
        let c = self.cases.iter().position(|x| x == case);
        match (s, c) {
            (Some(s), Some(c)) => median(&self.testrun[s][c]),
            _ => f64::NAN,
        }
    }

    fn flood(&self, r: Receiver, sc: Scenario) -> Option<&[Sample]> {
        self.floods
            .iter()
            .find(|(rr, ss, _)| *rr == r && *ss == sc)
            .map(|(_, _, v)| v.as_slice())
    }

    fn flood_median(&self, r: Receiver, sc: Scenario, f: impl Fn(&Sample) -> f64) -> f64 {
        self.flood(r, sc)
            .map(|v| median(&v.iter().map(f).collect::<Vec<_>>()))
            .unwrap_or(f64::NAN)
    }

    /// Ironpost's receive rate over xdp-filter's in the same round, round
    /// by round.
    fn paired_rates(&self, sc: Scenario) -> Vec<f64> {
        match (
            self.flood(Receiver::Ironpost, sc),
            self.flood(Receiver::XdpFilter, sc),
        ) {
            (Some(ip), Some(xf)) => ip.iter().zip(xf).map(|(a, b)| a.mpps / b.mpps).collect(),
            _ => Vec::new(),
        }
    }

    /// The issue's targets, as ratios of Ironpost (defaults) to xdp-filter.
    pub fn targets(&self) -> Vec<Target> {
        let (ip, xf) = (crate::IRONPOST_DEFAULTS, crate::XDP_FILTER);
        let rate = |sc| {
            self.flood_median(Receiver::Ironpost, sc, |s| s.mpps)
                / self.flood_median(Receiver::XdpFilter, sc, |s| s.mpps)
        };
        // Ironpost's in-kernel work per frame includes its egress watcher.
        let ns = |sc| {
            self.flood_median(Receiver::Ironpost, sc, Sample::kernel_ns)
                / self.flood_median(Receiver::XdpFilter, sc, Sample::kernel_ns)
        };
        let tr = |case| self.tr(ip, case) / self.tr(xf, case);
        let t = |what: &str, ratio, bound, at_least| Target {
            what: what.to_owned(),
            ratio,
            bound,
            at_least,
        };
        vec![
            t(
                "spoofed SYN flood, receive rate vs xdp-filter",
                rate(Scenario::SpoofedSyn),
                1.0,
                true,
            ),
            t(
                "spoofed SYN flood, in-kernel ns/packet (Ironpost: XDP + egress) vs xdp-filter",
                ns(Scenario::SpoofedSyn),
                1.0,
                false,
            ),
            t(
                "IPv4 TCP SYN pass, TEST_RUN ns vs xdp-filter",
                tr(crate::CASE_SYN_V4),
                1.0,
                false,
            ),
            t(
                "IPv4 exact-address drop, TEST_RUN ns vs xdp-filter",
                tr(crate::CASE_EXACT_V4),
                0.8,
                false,
            ),
            t(
                "IPv4 prefix drop, TEST_RUN ns vs xdp-filter (exact rule)",
                tr(crate::CASE_PREFIX_V4),
                0.8,
                false,
            ),
            t(
                "blocked source, drop rate vs xdp-filter",
                rate(Scenario::Blocked),
                1.0,
                true,
            ),
            t(
                "fragmented UDP vs the same UDP whole, Ironpost TEST_RUN ns",
                self.tr(ip, crate::CASE_FRAG_V4) / self.tr(ip, crate::CASE_UDP_V4),
                1.5,
                false,
            ),
        ]
    }

    /// The Markdown document.
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let _ = writeln!(m, "# Benchmarks\n");
        let _ = writeln!(
            m,
            "Written by `{}`. Every figure below comes from that one run; \
             running the command again replaces this file.\n",
            self.command
        );
        let _ = writeln!(m, "## Machine\n");
        let _ = writeln!(m, "| | |\n|---|---|");
        for (k, v) in &self.machine {
            let _ = writeln!(m, "| {k} | {v} |");
        }
        let _ = writeln!(
            m,
            "\nEach figure is the median of {} rounds. Within a round every \
             program is measured once, and the order of the programs rotates \
             from round to round, so slow drift of the machine touches them \
             all alike.\n",
            self.rounds
        );

        let _ = writeln!(m, "## Targets\n");
        let _ = writeln!(
            m,
            "Ratios of the medians of Ironpost (defaults: detection on) to xdp-filter.\n"
        );
        let _ = writeln!(m, "| target | ratio | bound | met |\n|---|---|---|---|");
        for t in self.targets() {
            let _ = writeln!(
                m,
                "| {} | {:.2} | {} {:.1} | {} |",
                t.what,
                t.ratio,
                if t.at_least { "≥" } else { "≤" },
                t.bound,
                if t.met() { "yes" } else { "**no**" }
            );
        }
        let _ = writeln!(
            m,
            "\nThe receive rates round by round: Ironpost's over xdp-filter's \
             in the same round (seconds apart), so drift of the machine between rounds \
             cancels out.\n"
        );
        for (what, sc) in [
            ("spoofed SYN flood", Scenario::SpoofedSyn),
            ("blocked source", Scenario::Blocked),
        ] {
            let r = self.paired_rates(sc);
            let above = r.iter().filter(|&&x| x >= 1.0).count();
            let list: Vec<String> = r.iter().map(|x| format!("{x:.2}")).collect();
            let _ = writeln!(
                m,
                "- {what}: {} (median {:.2}; at least 1.0 in {above} of {})",
                list.join(" "),
                median(&r),
                r.len()
            );
        }

        let _ = writeln!(m, "\n## Per-packet cost, BPF_PROG_TEST_RUN\n");
        let _ = writeln!(
            m,
            "Nanoseconds per frame as the kernel reports it for `repeat = {}` \
             runs of the same frame (the fragment row runs the first and the \
             second fragment, `repeat` times each, and gives the mean). The \
             policy is the same everywhere: drop the sources 192.0.2.1, \
             203.0.113.0/24 and 2001:db8::bad, drop TCP port 8099. xdp-filter \
             has no prefixes, so it drops 203.0.113.77 by an exact rule, and \
             its maps hold at most 10,000 addresses. The trivial programs \
             return one action whatever the frame. Median, then (min–max).\n",
            self.repeat
        );
        let _ = write!(m, "| frame |");
        for s in &self.subjects {
            let _ = write!(m, " {s} |");
        }
        let _ = writeln!(m, " Ironpost / xdp-filter |");
        let _ = writeln!(m, "|---|{}---|", "---|".repeat(self.subjects.len()));
        for (c, case) in self.cases.iter().enumerate() {
            let _ = write!(m, "| {case} |");
            for s in 0..self.subjects.len() {
                let v = &self.testrun[s][c];
                let min = v.iter().copied().fold(f64::INFINITY, f64::min);
                let max = v.iter().copied().fold(0.0, f64::max);
                let _ = write!(m, " {:.0} ({min:.0}–{max:.0}) |", median(v));
            }
            let _ = writeln!(
                m,
                " {:.2} |",
                self.tr(crate::IRONPOST_DEFAULTS, case) / self.tr(crate::XDP_FILTER, case)
            );
        }

        if !self.verdict_notes.is_empty() {
            let _ = writeln!(
                m,
                "\nVerdicts that differ from the policy (the figure is still the cost of that verdict):\n"
            );
            for n in &self.verdict_notes {
                let _ = writeln!(m, "- {n}");
            }
        }

        let _ = writeln!(m, "\n## Receive rate on a veth pair, native XDP\n");
        let _ = writeln!(
            m,
            "A live-frames generator (`flood_gen`: BPF_PROG_RUN with \
             BPF_F_TEST_XDP_LIVE_FRAMES, XDP_TX) sends {} frames per flood from \
             the lab namespace's veth end; the receiver is attached in native \
             mode to the host end. *Blocked*: every frame comes from \
             192.0.2.1, which every receiver drops (the trivial row: \
             XDP_DROP). *Spoofed SYN*: TCP SYNs from a random source in \
             100.64.0.0/10 per frame, to a closed port; every receiver passes \
             them and the host answers each with a RST (the trivial row: \
             XDP_PASS). nftables runs behind a trivial XDP_PASS program, \
             without which veth takes no XDP frames. Ironpost is the release \
             daemon with its defaults (its TC egress watcher sees each RST \
             the host sends); the row *trivial XDP_PASS + TC egress* adds a \
             TC program that only returns \"next\" on egress: the floor of \
             any receiver that, like Ironpost, runs a program on both hooks; \
             the row *trivial XDP_PASS + RST tracepoint* instead adds a \
             program that does nothing on the `tcp:tcp_send_reset` \
             tracepoint, which runs on each RST where the host makes it: the \
             floor of a watcher of refusals without the egress hook. \
             Mpps is frames the receiver got per second of \
             wall time, with `kernel.bpf_stats_enabled=0` (accounting costs \
             every program run two clock reads). {} \
             In-kernel ns/packet is `run_time_ns / run_cnt` of the \
             receiver's XDP program in a second flood of the same frames \
             with `kernel.bpf_stats_enabled=1`; for a receiver with a second \
             program (TC egress or the tracepoint), its run time in the flood, divided by \
             the same count, is given beside it (for Ironpost it is added in \
             the targets). \
             Median, then (min–max).\n",
            self.frames, self.placement
        );
        let _ = writeln!(
            m,
            "| flood | receiver | Mpps | in-kernel ns/packet, XDP | + second program (egress watcher, TC or tracepoint) | frames refused by the veth (median) |\n|---|---|---|---|---|---|"
        );
        for (r, sc, v) in &self.floods {
            let rates: Vec<f64> = v.iter().map(|s| s.mpps).collect();
            let ns: Vec<f64> = v.iter().map(|s| s.prog_ns).collect();
            let refused: Vec<f64> = v.iter().map(|s| s.refused as f64).collect();
            let lo = |x: &[f64]| x.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = |x: &[f64]| x.iter().copied().fold(0.0, f64::max);
            let ns_cell = if matches!(r, Receiver::Nftables) {
                format!("{:.0} (the XDP_PASS in front)", median(&ns))
            } else {
                format!("{:.0} ({:.0}–{:.0})", median(&ns), lo(&ns), hi(&ns))
            };
            let egress: Vec<f64> = v.iter().filter_map(|s| s.egress_ns).collect();
            let egress_cell = if egress.is_empty() {
                "—".to_owned()
            } else {
                format!(
                    "{:.0} ({:.0}–{:.0})",
                    median(&egress),
                    lo(&egress),
                    hi(&egress)
                )
            };
            let _ = writeln!(
                m,
                "| {} | {} | {:.2} ({:.2}–{:.2}) | {ns_cell} | {egress_cell} | {:.0} |",
                match sc {
                    Scenario::Blocked => "blocked source",
                    Scenario::SpoofedSyn => "spoofed SYN, passed",
                },
                r.name(),
                median(&rates),
                lo(&rates),
                hi(&rates),
                median(&refused),
            );
        }

        let _ = writeln!(m, "\n## Daemon\n");
        let rss: Vec<f64> = self
            .floods
            .iter()
            .filter(|(r, _, _)| *r == Receiver::Ironpost)
            .flat_map(|(_, _, v)| v.iter().filter_map(|s| s.rss_kib.map(|k| k as f64)))
            .collect();
        let (entries, secs, before, after) = self.import;
        let _ = writeln!(m, "| figure | value |\n|---|---|");
        let _ = writeln!(
            m,
            "| RSS after a flood (defaults, 65,536-entry block list), median | {:.1} MiB |",
            median(&rss) / 1024.0
        );
        let _ = writeln!(
            m,
            "| `ironpost block import` of {entries} /24 prefixes, end to end | {secs:.2} s ({:.0} prefixes/s) |",
            f64::from(entries) / secs
        );
        let _ = writeln!(
            m,
            "| RSS before / after that import | {:.1} / {:.1} MiB |",
            before as f64 / 1024.0,
            after as f64 / 1024.0
        );

        let _ = writeln!(m, "\n## Ironpost's program as the kernel runs it\n");
        let _ = writeln!(
            m,
            "From `bpftool prog dump xlated` of the loaded program:\n"
        );
        for line in &self.xlated {
            let _ = writeln!(m, "- {line}");
        }

        let _ = writeln!(m, "\n## Raw figures\n");
        let _ = writeln!(m, "TEST_RUN ns per frame, one value per round:\n\n```");
        for (s, subject) in self.subjects.iter().enumerate() {
            for (c, case) in self.cases.iter().enumerate() {
                let v: Vec<String> = self.testrun[s][c]
                    .iter()
                    .map(|x| format!("{x:.0}"))
                    .collect();
                let _ = writeln!(m, "{subject} | {case} | {}", v.join(" "));
            }
        }
        let _ = writeln!(
            m,
            "```\n\nFloods, one value per round (Mpps / XDP ns per packet / egress ns per packet / refused):\n\n```"
        );
        for (r, sc, v) in &self.floods {
            let vals: Vec<String> = v
                .iter()
                .map(|s| {
                    let egress = s.egress_ns.map_or("-".to_owned(), |e| format!("{e:.0}"));
                    format!("{:.3}/{:.0}/{egress}/{}", s.mpps, s.prog_ns, s.refused)
                })
                .collect();
            let _ = writeln!(m, "{} | {sc:?} | {}", r.name(), vals.join(" "));
        }
        let _ = writeln!(m, "```");
        m
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
