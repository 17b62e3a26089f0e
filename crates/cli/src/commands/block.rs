//! `ironpost block add | del | list | show | import | sync | flush`.

use std::{
    io::{IsTerminal, Write},
    net::IpAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use hyper::Method;
use ironpost_api::{
    BlockAdd, BlockFlush, BlockRow, BlockShow, BlockSync, ChangeLine, Changed, PortRuleRow,
    Prefixes, path,
};
use ironpost_core::{Prefix, printable};
use ironpost_policy::ListName;

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
    list: Option<ListName>,
) -> anyhow::Result<()> {
    let prefixes = unique(prefixes);
    let n = prefixes.len();
    let req = BlockAdd {
        prefixes,
        ttl_secs: ttl.map(|t| t.as_secs()),
        reason: reason.unwrap_or_default(),
        import: false,
        force,
        list,
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
pub fn del(socket: &Path, prefixes: Vec<Prefix>, list: Option<ListName>) -> anyhow::Result<()> {
    let name = list.clone().unwrap_or_default();
    let c: Changed = Client::new(socket).call(
        Method::DELETE,
        path::BLOCKS,
        Some(&Prefixes {
            prefixes: unique(prefixes),
            list,
        }),
    )?;
    notes(&c.notes);
    println!("removed {} from the list {name}", c.removed);
    Ok(())
}

/// `ironpost block flush --list NAME`.
pub fn flush(socket: &Path, list: ListName) -> anyhow::Result<()> {
    let name = list.clone();
    let c: Changed =
        Client::new(socket).call(Method::POST, path::BLOCK_FLUSH, Some(&BlockFlush { list }))?;
    println!("removed {} from the list {name}", c.removed);
    Ok(())
}

/// The addresses of a netset file (or `-`), its bad lines reported; a bad
/// line stops here unless `skip_invalid`.
fn read_netset(
    file: &Path,
    skip_invalid: bool,
    verb: &str,
) -> anyhow::Result<(String, netset::Netset)> {
    let stdin = file == Path::new("-");
    let text = if stdin {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let name = if stdin {
        "(standard input)".to_owned()
    } else {
        file.display().to_string()
    };
    let set = netset::parse(&text);
    for b in set.bad.iter().take(50) {
        eprintln!("{name}:{}: {} ({})", b.line, b.message, b.text);
    }
    if set.bad.len() > 50 {
        eprintln!("{name}: ... and {} more bad lines", set.bad.len() - 50);
    }
    if !set.bad.is_empty() && !skip_invalid {
        bail!(
            "{} bad {} in {name}; nothing was {verb}ed (fix {}, or pass --skip-invalid to \
             {verb} the rest)",
            set.bad.len(),
            if set.bad.len() == 1 { "line" } else { "lines" },
            if set.bad.len() == 1 { "it" } else { "them" }
        );
    }
    Ok((name, set))
}

/// `ironpost block sync --list NAME FILE`.
pub fn sync(
    socket: &Path,
    list: ListName,
    file: &Path,
    ttl: Option<Duration>,
    reason: Option<String>,
    skip_invalid: bool,
    force: bool,
) -> anyhow::Result<()> {
    let (name, set) = read_netset(file, skip_invalid, "sync")?;
    let reason = reason.unwrap_or_else(|| format!("sync {name}"));
    let req = BlockSync {
        list: list.clone(),
        prefixes: set.prefixes,
        ttl_secs: ttl.map(|t| t.as_secs()),
        reason,
        force,
    };
    let c: Changed = Client::new(socket).call(Method::POST, path::BLOCK_SYNC, Some(&req))?;
    notes(&c.notes);
    println!(
        "list {list} synced with {name}: {} added, {} updated, {} removed, {} left as the config \
         sets them",
        c.added, c.updated, c.removed, c.skipped_config
    );
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
    list: Option<ListName>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (name, set) = read_netset(file, skip_invalid, "import")?;
    let file = Path::new(&name);
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
        list,
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
    let lists = if r.also_in.is_empty() {
        r.list.to_string()
    } else {
        format!("{}+{}", r.list, r.also_in.len())
    };
    format!(
        "{:<3} {:<30} {:<8} {:<12} {:>10} {:>12}  {:<14} {}",
        r.direction.to_string(),
        printable(&m),
        action(r.action),
        printable(&lists),
        r.packets,
        r.bytes,
        expiry_text(r),
        printable(&why)
    )
}

/// `ironpost block list`: the entries are printed as they stream in.
/// With `list`, only that list's memberships (and no port rules).
pub fn list(socket: &Path, format: ListFormat, list: Option<ListName>) -> anyhow::Result<()> {
    let client = Client::new(socket);
    let (ports, url): (Vec<PortRuleRow>, String) = match &list {
        Some(l) => (Vec::new(), format!("{}?list={l}", path::BLOCKS)),
        None => (client.get(path::PORT_RULES)?, path::BLOCKS.to_owned()),
    };
    let mut lines = client.stream(Method::GET, &url, None::<&()>)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut n = 0usize;
    match format {
        ListFormat::Table => writeln!(
            out,
            "{:<3} {:<30} {:<8} {:<12} {:>10} {:>12}  {:<14} ID / REASON",
            "DIR", "MATCH", "ACTION", "LIST", "PACKETS", "BYTES", "EXPIRES"
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
                        "    {:<30} {:<8} {:<12} {:>10} {:>12}  {:<14} {}",
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
