//! What the kernel runs of Ironpost's program (`bpftool prog dump xlated`):
//! its size, its bpf-to-bpf calls, and whether `memset`/`memcpy`/`memmove`
//! are there as byte-per-iteration subprograms.

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
            ));
        }
    }
    let (id, xlated_bytes, jited_bytes) = id.context("no loaded program named ironpost_xdp")?;
    let dump = run(
        "bpftool",
        &["prog", "dump", "xlated", "id", &id.to_string()],
    )?;
    let mut facts = vec![format!(
        "{} BPF instructions after the verifier, {} bytes of JIT-compiled code",
        xlated_bytes / 8,
        jited_bytes
    )];
    let mut callees: Vec<String> = dump
        .lines()
        .filter_map(|l| l.split_once("call pc").map(|(_, rest)| rest))
        .map(|rest| {
            rest.split_once('#')
                .map_or_else(|| "(unnamed)".to_owned(), |(_, n)| n.trim().to_owned())
        })
        .collect();
    callees.sort();
    callees.dedup();
    facts.push(if callees.is_empty() {
        "no bpf-to-bpf calls: every function is inlined".to_owned()
    } else {
        format!("bpf-to-bpf calls to: {}", callees.join(", "))
    });
    let byte_copies: Vec<&String> = callees
        .iter()
        .filter(|c| {
            ["memset", "memcpy", "memmove"]
                .iter()
                .any(|m| c.contains(m))
        })
        .collect();
    facts.push(if byte_copies.is_empty() {
        "no memset, memcpy or memmove subprogram: fixed-size copies and zeroing are inline stores"
            .to_owned()
    } else {
        format!(
            "memory helpers still called as subprograms: {}",
            byte_copies
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    Ok(facts)
}
