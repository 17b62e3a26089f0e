//! The control commands, one module each: they call the daemon's API
//! ([`crate::client`]) and print its answer as a table or, with `--json`,
//! as JSON.

pub mod allow;
pub mod block;
pub mod docs;
pub mod reload;
pub mod stats;
pub mod status;
pub mod top;
pub mod unload;

use std::io::Write;

use ironpost_core::{Prefix, printable};
use serde::Serialize;

/// Prints `v` as pretty JSON.
fn print_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// Prints the daemon's notes on stderr.
fn notes(notes: &[String]) {
    for n in notes {
        eprintln!("note: {}", printable(n));
    }
}

/// `prefixes` without repeats, in their first order.
fn unique(prefixes: Vec<Prefix>) -> Vec<Prefix> {
    let mut seen = std::collections::HashSet::with_capacity(prefixes.len());
    prefixes.into_iter().filter(|p| seen.insert(*p)).collect()
}

/// A table cell: "-" for nothing, control characters escaped.
fn cell(s: Option<&str>) -> String {
    match s {
        None | Some("") => "-".into(),
        Some(s) => printable(s).into_owned(),
    }
}

/// "entry" or "entries".
fn entries(n: usize) -> &'static str {
    if n == 1 { "entry" } else { "entries" }
}
