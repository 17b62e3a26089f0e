//! `ironpost block add | del | list | show | import`.

use std::{
    io::{IsTerminal, Write},
    net::IpAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use hyper::Method;
use ironpost_api::{
    BlockAdd, BlockRow, BlockShow, ChangeLine, Changed, PortRuleRow, Prefixes, path,
};
use ironpost_core::{Prefix, printable};

use super::{cell, entries, notes, print_json, unique};
use crate::{client::Client, netset};

/// How `block list` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    /// A table.
    Table,
    /// One JSON document `{"entries": [...], "port_rules": [...]}`.
    Json,
    /// The API's stream as it comes: one entry per line.
    Ndjson,
}

/// `ironpost block add`.
pub fn add(
    socket: &Path,
    prefixes: Vec<Prefix>,
    ttl: Option<Duration>,
    reason: Option<String>,
    force: bool,
) -> anyhow::Result<()> {
    let prefixes = unique(prefixes);
    let n = prefixes.len();
    let req = BlockAdd {
        prefixes,
        ttl_secs: ttl.map(|t| t.as_secs()),
        reason: reason.unwrap_or_default(),
        import: false,
        force,
    };
    let c: Changed = Client::new(socket).call(Method::POST, path::BLOCKS, Some(&req))?;
    notes(&c.notes);
    let expiry = ttl.map_or(String::new(), |t| {
        format!(", expiring in {}", humantime::format_duration(t))
    });
    println!(
        "blocked {n} {} ({} new, {} updated{expiry})",
        entries(n),
        c.added,
        c.updated
    );
    Ok(())
}

/// `ironpost block del`.
pub fn del(socket: &Path, prefixes: Vec<Prefix>) -> anyhow::Result<()> {
    let c: Changed = Client::new(socket).call(
        Method::DELETE,
        path::BLOCKS,
        Some(&Prefixes {
            prefixes: unique(prefixes),
        }),
    )?;
    println!("removed {} from the block list", c.removed);
    Ok(())
}

/// `ironpost block import`.
pub fn import(
    socket: &Path,
    file: &Path,
    ttl: Option<Duration>,
    reason: Option<String>,
    skip_invalid: bool,
    force: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let stdin = file == Path::new("-");
    let text = if stdin {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let file = if stdin {
        Path::new("(standard input)")
    } else {
        file
    };
    let set = netset::parse(&text);
    for b in set.bad.iter().take(50) {
        eprintln!("{}:{}: {} ({})", file.display(), b.line, b.message, b.text);
    }
    if set.bad.len() > 50 {
        eprintln!(
            "{}: ... and {} more bad lines",
            file.display(),
            set.bad.len() - 50
        );
    }
    if !set.bad.is_empty() && !skip_invalid {
        bail!(
            "{} bad {} in {}; nothing was imported (fix {}, or pass --skip-invalid to import \
             the rest)",
            set.bad.len(),
            if set.bad.len() == 1 { "line" } else { "lines" },
            file.display(),
            if set.bad.len() == 1 { "it" } else { "them" }
        );
    }
    if set.prefixes.is_empty() {
        println!("{} holds no addresses: nothing to import", file.display());
        return Ok(());
    }
    let total = set.prefixes.len();
    let reason = reason.unwrap_or_else(|| {
        format!(
            "import {}",
            file.file_name().map_or("?".into(), |n| n.to_string_lossy())
        )
    });
    let req = BlockAdd {
        prefixes: set.prefixes,
        ttl_secs: ttl.map(|t| t.as_secs()),
        reason,
        import: true,
        force,
    };
    let client = Client::new(socket);
    let mut lines = client.stream(
        Method::POST,
        &format!("{}?progress=true", path::BLOCKS),
        Some(&req),
    )?;
    drop(req);
    let tty = std::io::stderr().is_terminal();
    let mut last = Instant::now();
    let mut result = None;
    while let Some(line) = lines.next::<ChangeLine>() {
        match line? {
            ChangeLine::Progress { done, total } => {
                if tty && (last.elapsed() >= Duration::from_millis(100) || done == total) {
                    last = Instant::now();
                    eprint!(
                        "\rimporting {}: {done}/{total} ({}%)",
                        file.display(),
                        done * 100 / total.max(1)
                    );
                    let _ = std::io::stderr().flush();
                }
            }
            ChangeLine::Done(c) => result = Some(Ok(c)),
            ChangeLine::Error(e) => result = Some(Err(e)),
        }
    }
    if tty {
        eprintln!();
    }
    let c = match result {
        Some(r) => r?,
        None => bail!("the daemon closed the connection without answering (see its log)"),
    };
    println!(
        "imported {total} entries from {} in {:.2} s: {} new, {} updated, {} left as the config \
         sets them; {} duplicate lines, {} bad lines skipped",
        file.display(),
        started.elapsed().as_secs_f64(),
        c.added,
        c.updated,
        c.skipped_config,
        set.duplicates,
        set.bad.len()
    );
    Ok(())
}

fn expiry_text(r: &BlockRow) -> String {
    match r.expires_in_secs {
        Some(s) => {
            let d = humantime::format_duration(Duration::from_secs(s.ceil() as u64));
            format!("in {}", d.to_string().replace(' ', ""))
        }
        None => "never".into(),
    }
}

fn action(a: ironpost_core::RuleAction) -> String {
    format!("{a:?}").to_lowercase()
}

fn row_line(r: &BlockRow) -> String {
    let mut m = r.prefix.to_string();
    if let Some(c) = &r.condition {
        m = format!("{m} {c}");
    }
    let why = match (r.id.as_deref(), r.reason.as_str()) {
        (Some(id), re) if !re.is_empty() => format!("{id}: {re}"),
        (Some(id), _) => id.to_owned(),
        (None, re) => re.to_owned(),
    };
    format!(
        "{:<3} {:<30} {:<8} {:<7} {:>10} {:>12}  {:<14} {}",
        r.direction.to_string(),
        printable(&m),
        action(r.action),
        r.origin.to_string(),
        r.packets,
        r.bytes,
        expiry_text(r),
        printable(&why)
    )
}

/// `ironpost block list`: the entries are printed as they stream in.
pub fn list(socket: &Path, format: ListFormat) -> anyhow::Result<()> {
    let client = Client::new(socket);
    let ports: Vec<PortRuleRow> = client.get(path::PORT_RULES)?;
    let mut lines = client.stream(Method::GET, path::BLOCKS, None::<&()>)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut n = 0usize;
    match format {
        ListFormat::Table => writeln!(
            out,
            "{:<3} {:<30} {:<8} {:<7} {:>10} {:>12}  {:<14} ID / REASON",
            "DIR", "MATCH", "ACTION", "ORIGIN", "PACKETS", "BYTES", "EXPIRES"
        )?,
        ListFormat::Json => write!(out, "{{\"entries\":[")?,
        ListFormat::Ndjson => {}
    }
    while let Some(row) = lines.next::<BlockRow>() {
        let row = row?;
        match format {
            ListFormat::Table => writeln!(out, "{}", row_line(&row))?,
            ListFormat::Json => {
                if n > 0 {
                    write!(out, ",")?;
                }
                serde_json::to_writer(&mut out, &row)?;
            }
            ListFormat::Ndjson => {
                serde_json::to_writer(&mut out, &row)?;
                writeln!(out)?;
            }
        }
        n += 1;
    }
    match format {
        ListFormat::Table => {
            if !ports.is_empty() {
                writeln!(out, "port rules:")?;
                for r in &ports {
                    writeln!(
                        out,
                        "    {:<30} {:<8} {:<7} {:>10} {:>12}  {:<14} {}",
                        printable(&r.condition),
                        action(r.action),
                        "config",
                        r.packets,
                        r.bytes,
                        "never",
                        printable(&r.id)
                    )?;
                }
            }
            writeln!(out, "{n} {}, {} port rules", entries(n), ports.len())?;
        }
        ListFormat::Json => {
            write!(out, "],\"port_rules\":")?;
            serde_json::to_writer(&mut out, &ports)?;
            writeln!(out, "}}")?;
        }
        ListFormat::Ndjson => {}
    }
    out.flush()?;
    Ok(())
}

/// `ironpost block show ADDR`.
pub fn show(socket: &Path, addr: IpAddr, json: bool) -> anyhow::Result<()> {
    let s: BlockShow = Client::new(socket).get(&format!("{}?addr={addr}", path::BLOCK_SHOW))?;
    if json {
        return print_json(&s);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{addr}: {}", printable(&s.verdict))?;
    if let Some(a) = &s.allowed_by {
        writeln!(
            out,
            "allowed by {} ({}, {}): {} packets, {} bytes",
            a.prefix,
            a.origin,
            cell(Some(&a.reason)),
            a.packets,
            a.bytes
        )?;
    }
    for (title, rows) in [("as source", &s.source), ("as destination", &s.destination)] {
        if rows.is_empty() {
            continue;
        }
        writeln!(
            out,
            "entries that match it {title}, the deciding one first:"
        )?;
        for r in rows {
            writeln!(out, "  {}", row_line(r))?;
        }
    }
    Ok(())
}
