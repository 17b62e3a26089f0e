//! The control commands: `block`, `allow`, `stats`, `status`, `reload`.
//! Each sends one request to the running daemon and prints its answer, as
//! a table or, with `--json`, as JSON.

use std::{
    io::{IsTerminal, Write},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use ironpost_core::{Prefix, printable};
use serde_json::Value;

use crate::{
    control::{self, Request},
    netset,
};

fn call(socket: &Path, req: &Request) -> anyhow::Result<Value> {
    control::call(socket, req, &mut |_, _| {})
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn notes(v: &Value) {
    for n in v["notes"].as_array().into_iter().flatten() {
        if let Some(n) = n.as_str() {
            eprintln!("note: {}", printable(n));
        }
    }
}

/// `ironpost block add`.
pub fn block_add(
    socket: &Path,
    prefixes: Vec<Prefix>,
    ttl: Option<Duration>,
    reason: Option<String>,
    force: bool,
) -> anyhow::Result<()> {
    let prefixes = unique(prefixes);
    let n = prefixes.len();
    let v = call(
        socket,
        &Request::BlockAdd {
            prefixes,
            ttl_secs: ttl.map(|t| t.as_secs()),
            reason: reason.unwrap_or_else(|| "manual".into()),
            import: false,
            force,
        },
    )?;
    notes(&v);
    let expiry = ttl.map_or(String::new(), |t| {
        format!(", expiring in {}", humantime::format_duration(t))
    });
    println!(
        "blocked {n} {} ({} new, {} updated{expiry})",
        if n == 1 { "entry" } else { "entries" },
        v["added"],
        v["updated"]
    );
    Ok(())
}

/// `prefixes` without repeats, in their first order.
fn unique(prefixes: Vec<Prefix>) -> Vec<Prefix> {
    let mut seen = std::collections::HashSet::with_capacity(prefixes.len());
    prefixes.into_iter().filter(|p| seen.insert(*p)).collect()
}

/// `ironpost block del`.
pub fn block_del(socket: &Path, prefixes: Vec<Prefix>) -> anyhow::Result<()> {
    let v = call(socket, &Request::BlockDel { prefixes })?;
    println!("removed {} from the block list", v["removed"]);
    Ok(())
}

/// `ironpost block import`.
pub fn block_import(
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
    let tty = std::io::stderr().is_terminal();
    let mut last = Instant::now();
    let mut progress = |done: usize, total: usize| {
        if tty && (last.elapsed() >= Duration::from_millis(100) || done == total) {
            last = Instant::now();
            eprint!(
                "\rimporting {}: {done}/{total} ({}%)",
                file.display(),
                done * 100 / total.max(1)
            );
            let _ = std::io::stderr().flush();
        }
    };
    let reason = reason.unwrap_or_else(|| {
        format!(
            "import {}",
            file.file_name().map_or("?".into(), |n| n.to_string_lossy())
        )
    });
    let v = control::call(
        socket,
        &Request::BlockAdd {
            prefixes: set.prefixes,
            ttl_secs: ttl.map(|t| t.as_secs()),
            reason,
            import: true,
            force,
        },
        &mut progress,
    );
    if tty {
        eprintln!();
    }
    let v = v?;
    println!(
        "imported {total} entries from {} in {:.2} s: {} new, {} updated, {} left as the config \
         sets them; {} duplicate lines, {} bad lines skipped",
        file.display(),
        started.elapsed().as_secs_f64(),
        v["added"],
        v["updated"],
        v["skipped_config"],
        set.duplicates,
        set.bad.len()
    );
    Ok(())
}

fn expiry_text(v: &Value) -> String {
    match v["expires_in_secs"].as_f64() {
        Some(s) => {
            let d = humantime::format_duration(Duration::from_secs(s.ceil() as u64));
            format!("in {}", d.to_string().replace(' ', ""))
        }
        None => "never".into(),
    }
}

fn num(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".into(), |n| n.to_string())
}

/// A value for a table cell; strings with their control characters
/// escaped (see [`printable`]).
fn str_of(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => printable(s).into_owned(),
        other => other.to_string(),
    }
}

/// `ironpost block list`.
pub fn block_list(socket: &Path, json: bool) -> anyhow::Result<()> {
    let v = call(socket, &Request::BlockList)?;
    if json {
        return print_json(&v);
    }
    let mut out = std::io::stdout().lock();
    let rows = v["entries"].as_array().cloned().unwrap_or_default();
    writeln!(
        out,
        "{:<3} {:<30} {:<8} {:<7} {:>10} {:>12}  {:<14} ID / REASON",
        "DIR", "MATCH", "ACTION", "ORIGIN", "PACKETS", "BYTES", "EXPIRES"
    )?;
    for r in &rows {
        let mut m = str_of(&r["prefix"]);
        if let Some(c) = r["condition"].as_str() {
            m = format!("{m} {c}");
        }
        let why = match (r["id"].as_str(), r["reason"].as_str()) {
            (Some(id), Some(re)) if !re.is_empty() => format!("{id}: {re}"),
            (Some(id), _) => id.to_owned(),
            (None, Some(re)) => re.to_owned(),
            _ => String::new(),
        };
        let why = printable(&why);
        writeln!(
            out,
            "{:<3} {:<30} {:<8} {:<7} {:>10} {:>12}  {:<14} {}",
            str_of(&r["direction"]),
            m,
            str_of(&r["action"]),
            str_of(&r["origin"]),
            num(&r["packets"]),
            num(&r["bytes"]),
            expiry_text(r),
            why
        )?;
    }
    let ports = v["port_rules"].as_array().cloned().unwrap_or_default();
    if !ports.is_empty() {
        writeln!(out, "port rules:")?;
        for r in &ports {
            writeln!(
                out,
                "    {:<30} {:<8} {:<7} {:>10} {:>12}  {:<14} {}",
                str_of(&r["condition"]),
                str_of(&r["action"]),
                "config",
                num(&r["packets"]),
                num(&r["bytes"]),
                "never",
                str_of(&r["id"])
            )?;
        }
    }
    writeln!(out, "{} entries, {} port rules", rows.len(), ports.len())?;
    Ok(())
}

/// `ironpost allow add`.
pub fn allow_add(
    socket: &Path,
    prefixes: Vec<Prefix>,
    reason: Option<String>,
) -> anyhow::Result<()> {
    let prefixes = unique(prefixes);
    let n = prefixes.len();
    let v = call(
        socket,
        &Request::AllowAdd {
            prefixes,
            reason: reason.unwrap_or_else(|| "manual".into()),
        },
    )?;
    println!(
        "allowed {n} {} ({} new, {} updated, {} left as the config sets them)",
        if n == 1 { "entry" } else { "entries" },
        v["added"],
        v["updated"],
        v["skipped_config"]
    );
    Ok(())
}

/// `ironpost allow del`.
pub fn allow_del(socket: &Path, prefixes: Vec<Prefix>) -> anyhow::Result<()> {
    let v = call(socket, &Request::AllowDel { prefixes })?;
    println!("removed {} from the allow list", v["removed"]);
    Ok(())
}

/// `ironpost allow list`.
pub fn allow_list(socket: &Path, json: bool) -> anyhow::Result<()> {
    let v = call(socket, &Request::AllowList)?;
    if json {
        return print_json(&v);
    }
    let mut out = std::io::stdout().lock();
    let rows = v["entries"].as_array().cloned().unwrap_or_default();
    writeln!(
        out,
        "{:<40} {:<7} {:>10} {:>12}  REASON",
        "PREFIX", "ORIGIN", "PACKETS", "BYTES"
    )?;
    for r in &rows {
        writeln!(
            out,
            "{:<40} {:<7} {:>10} {:>12}  {}",
            str_of(&r["prefix"]),
            str_of(&r["origin"]),
            num(&r["packets"]),
            num(&r["bytes"]),
            str_of(&r["reason"])
        )?;
    }
    writeln!(out, "{} entries", rows.len())?;
    Ok(())
}

/// `ironpost stats`.
pub fn stats(socket: &Path, json: bool) -> anyhow::Result<()> {
    let v = call(socket, &Request::Stats)?;
    if json {
        return print_json(&v);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<6} {:>12} {:>14} {:>10} {:>10} {:>12} {:>8}",
        "CLASS", "PACKETS", "BYTES", "DROPS", "PPS", "BPS", "DPS"
    )?;
    for class in ["tcp", "udp", "icmp", "other", "total"] {
        let c = &v[class];
        let rate = |k: &str| format!("{:.1}", c[k].as_f64().unwrap_or(0.0));
        writeln!(
            out,
            "{:<6} {:>12} {:>14} {:>10} {:>10} {:>12} {:>8}",
            class,
            num(&c["packets"]),
            num(&c["bytes"]),
            num(&c["drops"]),
            rate("pps"),
            rate("bps"),
            rate("dps")
        )?;
    }
    writeln!(
        out,
        "events: {} delivered, {} lost",
        v["events"]["delivered"], v["events_lost"]
    )?;
    Ok(())
}

/// `ironpost status`.
pub fn status(socket: &Path, json: bool) -> anyhow::Result<()> {
    let v = call(socket, &Request::Status)?;
    if json {
        return print_json(&v);
    }
    let mut out = std::io::stdout().lock();
    let up = Duration::from_secs(v["uptime_secs"].as_u64().unwrap_or(0));
    writeln!(
        out,
        "ironpost daemon {}, pid {}, up {}",
        str_of(&v["version"]),
        v["pid"],
        humantime::format_duration(up)
    )?;
    writeln!(out, "program id: {}", v["program_id"])?;
    for i in v["interfaces"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "interface {} (ifindex {}): XDP {} mode",
            str_of(&i["interface"]),
            i["ifindex"],
            str_of(&i["mode"])
        )?;
    }
    let m = &v["maps"];
    writeln!(
        out,
        "block list: {} of {} entries; allow list: {} of {}; port rules: {} of {}",
        m["blocks"],
        m["blocks_capacity"],
        m["allow"],
        m["allow_capacity"],
        m["port_rules"],
        m["port_rules_capacity"]
    )?;
    let by_map: Vec<String> = m["by_map"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("{} {}", str_of(&p[0]), p[1]))
        .collect();
    writeln!(out, "  by map: {}", by_map.join(", "))?;
    writeln!(
        out,
        "events: {} delivered, {} lost; output lines dropped (stdout not read): {}",
        v["events"]["delivered"], v["events_lost"], v["output_lines_dropped"]
    )?;
    let d = &v["detection"];
    if d["enabled"] == true {
        let k = &d["kernel"];
        let mode = if d["auto_block"] != true {
            "auto-block off"
        } else if d["dry_run"] == true {
            "dry run"
        } else {
            "auto-block on"
        };
        let alerts: Vec<String> = d["detectors"]["detectors"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, c)| format!("{name} {} (+{} repeats)", c["alerts"], c["repeats"]))
            .collect();
        writeln!(
            out,
            "detection: {mode}; signals {} delivered, {} lost; sources tracked since start {}",
            k["signals"], k["signals_lost"], k["sources_new"]
        )?;
        writeln!(
            out,
            "  alerts: {}; blocks made {} (not made, cap reached: {}), offenders remembered {}",
            if alerts.is_empty() {
                "none".to_owned()
            } else {
                alerts.join(", ")
            },
            d["response"]["blocked"],
            d["response"]["capped"],
            d["response"]["offenders"]
        )?;
    } else {
        writeln!(out, "detection: off")?;
    }
    writeln!(out, "config: {}", str_of(&v["config"]))?;
    writeln!(out, "state file: {}", str_of(&v["state_file"]))?;
    writeln!(out, "control socket: {}", str_of(&v["socket"]))?;
    Ok(())
}

/// `ironpost reload`.
pub fn reload(socket: &Path) -> anyhow::Result<()> {
    let v = call(socket, &Request::Reload)?;
    for n in v["notes"].as_array().into_iter().flatten() {
        if let Some(n) = n.as_str() {
            println!("{}", printable(n));
        }
    }
    println!(
        "configuration reloaded: {} added, {} updated, {} removed",
        v["added"], v["updated"], v["removed"]
    );
    Ok(())
}
