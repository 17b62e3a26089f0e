//! `ironpost allow add | del | list`.

use std::{io::Write, path::Path};

use hyper::Method;
use ironpost_api::{AllowAdd, AllowRow, Changed, Prefixes, path};
use ironpost_core::Prefix;

use super::{cell, entries, print_json, unique};
use crate::client::Client;

/// `ironpost allow add`.
pub fn add(socket: &Path, prefixes: Vec<Prefix>, reason: Option<String>) -> anyhow::Result<()> {
    let prefixes = unique(prefixes);
    let n = prefixes.len();
    let c: Changed = Client::new(socket).call(
        Method::POST,
        path::ALLOW,
        Some(&AllowAdd {
            prefixes,
            reason: reason.unwrap_or_default(),
        }),
    )?;
    println!(
        "allowed {n} {} ({} new, {} updated, {} left as the config sets them)",
        entries(n),
        c.added,
        c.updated,
        c.skipped_config
    );
    Ok(())
}

/// `ironpost allow del`.
pub fn del(socket: &Path, prefixes: Vec<Prefix>) -> anyhow::Result<()> {
    let c: Changed = Client::new(socket).call(
        Method::DELETE,
        path::ALLOW,
        Some(&Prefixes {
            list: None,
            prefixes: unique(prefixes),
        }),
    )?;
    println!("removed {} from the allow list", c.removed);
    Ok(())
}

/// `ironpost allow list`.
pub fn list(socket: &Path, json: bool) -> anyhow::Result<()> {
    let rows: Vec<AllowRow> = Client::new(socket).get(path::ALLOW)?;
    if json {
        return print_json(&serde_json::json!({ "entries": rows }));
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<40} {:<7} {:>10} {:>12}  REASON",
        "PREFIX", "ORIGIN", "PACKETS", "BYTES"
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:<40} {:<7} {:>10} {:>12}  {}",
            r.prefix.to_string(),
            r.origin.to_string(),
            r.packets,
            r.bytes,
            cell(Some(&r.reason))
        )?;
    }
    writeln!(out, "{} {}", rows.len(), entries(rows.len()))?;
    Ok(())
}
