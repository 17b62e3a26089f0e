//! What the kernel runs of Ironpost's program (`bpftool prog dump xlated`):
//! its size, the verifier's work to accept it, its bpf-to-bpf calls, and
//! whether `memset`/`memcpy`/`memmove` are there as byte-per-iteration
//! subprograms.

use anyhow::{Context as _, Result};

use crate::run;

/// Facts about the loaded `ironpost_xdp`, one sentence each.
pub fn inspect() -> Result<Vec<String>> {
    let mut id = None;
    for info in aya::programs::loaded_programs() {
        let info = info?;
        if info.name_as_str() == Some("ironpost_xdp") {
            id = Some((
                info.id(),
                info.size_translated().unwrap_or(0),
                info.size_jitted(),
                info.verified_instruction_count(),
            ));
        }
    }
    let (id, xlated_bytes, jited_bytes, verified) =
        id.context("no loaded program named ironpost_xdp")?;
    let dump = run(
        "bpftool",
        &["prog", "dump", "xlated", "id", &id.to_string(), "linum"],
    )?;
    let mut facts = vec![format!(
        "{} BPF instructions after the verifier, {} bytes of JIT-compiled code",
        xlated_bytes / 8,
        jited_bytes
    )];
    if let Some(verified) = verified {
        facts.push(format!(
            "the verifier processed {verified} instructions to accept it, of its limit of \
             1,000,000 per program ({:.0}%): what is left for new branches on the packet path",
            f64::from(verified) / 10_000.0
        ));
    }
    let calls = calls(&dump);
    if calls.is_empty() {
        facts.push("no bpf-to-bpf calls: every function is inlined".to_owned());
    }
    for (callee, sites) in &calls {
        let byte_loop = ["memset", "memcpy", "memmove"]
            .iter()
            .any(|m| callee.ends_with(m));
        facts.push(format!(
            "{} call site(s) of `{callee}`{}: {}",
            sites.len(),
            if byte_loop {
                " (a byte-per-iteration loop)"
            } else {
                ""
            },
            sites.join(", ")
        ));
    }
    Ok(facts)
}

/// The bpf-to-bpf calls in a `linum` dump: callee name (without the
/// `bpf_prog_<tag>_` prefix) and the source lines (file name:line) of the
/// statements that make them.
fn calls(dump: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut line = String::from("?");
    for l in dump.lines() {
        if let Some(src) = l.strip_prefix(';') {
            if let (Some(f), Some(n)) = (src.find("[file:"), src.find("line_num:")) {
                let file = src[f + 6..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("?")
                    .rsplit('/')
                    .next()
                    .unwrap_or("?");
                let num = src[n + 9..].split_whitespace().next().unwrap_or("?");
                line = format!("{file}:{num}");
            }
            continue;
        }
        let Some((_, rest)) = l.split_once("call pc") else {
            continue;
        };
        let callee = rest.split_once('#').map_or("(unnamed)", |(_, n)| n.trim());
        let callee = callee
            .strip_prefix("bpf_prog_")
            .and_then(|c| c.split_once('_').map(|(_, name)| name))
            .unwrap_or(callee)
            .to_owned();
        match out.iter_mut().find(|(c, _)| *c == callee) {
            Some((_, sites)) => sites.push(line.clone()),
            None => out.push((callee, vec![line.clone()])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::calls;

    #[test]
    fn names_each_call_with_its_source_line() {
        let dump = "; let x = 1; [file:/a/b/main.rs line_num:12 line_col:5]\n\
                      1: (85) call pc+20#bpf_prog_4f93_memset\n\
                    ; y [file:/a/b/main.rs line_num:40 line_col:1]\n\
                      7: (85) call pc+9#bpf_prog_4f93_memset\n\
                      8: (85) call bpf_map_lookup_elem#1\n";
        assert_eq!(
            calls(dump),
            vec![(
                "memset".to_owned(),
                vec!["main.rs:12".to_owned(), "main.rs:40".to_owned()]
            )]
        );
    }
}
