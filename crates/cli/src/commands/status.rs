//! `ironpost status`.

use std::{io::Write, path::Path, time::Duration};

use ironpost_api::path;
use ironpost_core::printable;
use serde_json::Value;

use super::print_json;
use crate::client::Client;

/// A value for a line: strings with their control characters escaped.
fn str_of(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => printable(s).into_owned(),
        other => other.to_string(),
    }
}

/// `ironpost status`.
pub fn status(socket: &Path, json: bool) -> anyhow::Result<()> {
    let v: Value = Client::new(socket).get(path::STATUS)?;
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
    let kept = v["on_exit"] == "keep";
    for i in v["interfaces"].as_array().into_iter().flatten() {
        let pin = match (&i["pinned"], kept) {
            (Value::String(p), true) => {
                format!(
                    ", pinned at {}: stays attached when the daemon stops",
                    printable(p)
                )
            }
            (Value::String(p), false) => {
                format!(
                    ", pinned at {} (removed when the daemon stops)",
                    printable(p)
                )
            }
            _ => ", not pinned: detached when the daemon stops".to_owned(),
        };
        writeln!(
            out,
            "interface {} (ifindex {}): XDP {} mode{pin}",
            str_of(&i["interface"]),
            i["ifindex"],
            str_of(&i["mode"])
        )?;
    }
    for i in v["absent_interfaces"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "interface {}: ABSENT since {}, NOT filtered ({}); attached again when it returns",
            str_of(&i["interface"]),
            str_of(&i["since"]),
            str_of(&i["reason"])
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
