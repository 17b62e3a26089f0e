//! `ironpost status`.

use std::{io::Write, path::Path, time::Duration};

use ironpost_api::{Status, path};
use ironpost_core::printable;

use super::print_json;
use crate::client::Client;

/// A value for a line: control characters escaped, `-` for nothing.
fn text(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        printable(s).into_owned()
    }
}

/// A path for a line.
fn path_text(p: Option<&std::path::Path>) -> String {
    p.map_or_else(|| "-".into(), |p| text(&p.display().to_string()))
}

/// `ironpost status`.
pub fn status(socket: &Path, json: bool) -> anyhow::Result<()> {
    let v: Status = Client::new(socket).get(path::STATUS)?;
    if json {
        return print_json(&v);
    }
    let mut out = std::io::stdout().lock();
    let up = Duration::from_secs(v.uptime_secs);
    writeln!(
        out,
        "ironpost daemon {}, pid {}, up {}",
        text(&v.version),
        v.pid,
        humantime::format_duration(up)
    )?;
    writeln!(
        out,
        "program id: {}",
        v.program_id.map_or("-".into(), |id| id.to_string())
    )?;
    let kept = v.on_exit == "keep";
    for i in &v.interfaces {
        let pin = match (&i.pinned, kept) {
            (Some(p), true) => format!(
                ", pinned at {}: stays attached when the daemon stops",
                path_text(Some(p))
            ),
            (Some(p), false) => format!(
                ", pinned at {} (removed when the daemon stops)",
                path_text(Some(p))
            ),
            (None, _) => ", not pinned: detached when the daemon stops".to_owned(),
        };
        writeln!(
            out,
            "interface {} (ifindex {}): XDP {} mode{pin}",
            text(&i.interface),
            i.ifindex,
            text(&i.mode)
        )?;
        let t = &i.traffic.total;
        writeln!(
            out,
            "  {} packets ({:.0}/s), {} bytes, {} dropped ({:.0}/s); tcp {}, udp {}, icmp {}, other {}",
            t.packets,
            t.pps,
            t.bytes,
            t.drops,
            t.dps,
            i.traffic.tcp.packets,
            i.traffic.udp.packets,
            i.traffic.icmp.packets,
            i.traffic.other.packets
        )?;
    }
    for i in &v.absent_interfaces {
        writeln!(
            out,
            "interface {}: ABSENT since {}, NOT filtered ({}); attached again when it returns",
            text(&i.interface),
            text(&i.since),
            text(&i.reason)
        )?;
    }
    let m = &v.maps;
    writeln!(
        out,
        "block list: {} of {} entries; allow list: {} of {}; port rules: {} of {}",
        m.blocks, m.blocks_capacity, m.allow, m.allow_capacity, m.port_rules, m.port_rules_capacity
    )?;
    let by_map: Vec<String> = m
        .by_map
        .iter()
        .map(|(name, n)| format!("{} {n}", text(name)))
        .collect();
    writeln!(out, "  by map: {}", by_map.join(", "))?;
    writeln!(
        out,
        "events: {} delivered, {} lost; output lines dropped (stdout not read): {}",
        v.events.delivered, v.events_lost, v.output_lines_dropped
    )?;
    let d = &v.detection;
    if d.enabled {
        let k = &d.kernel;
        let mode = if !d.auto_block {
            "auto-block off"
        } else if d.dry_run {
            "dry run"
        } else {
            "auto-block on"
        };
        let alerts: Vec<String> = d
            .detectors
            .detectors
            .iter()
            .map(|(name, c)| format!("{} {} (+{} repeats)", text(name), c.alerts, c.repeats))
            .collect();
        writeln!(
            out,
            "detection: {mode}; signals {} delivered, {} lost; sources tracked since start {}",
            k.signals, k.signals_lost, k.sources_new
        )?;
        writeln!(
            out,
            "  alerts: {}; blocks made {} (not made, cap reached: {}), offenders remembered {}",
            if alerts.is_empty() {
                "none".to_owned()
            } else {
                alerts.join(", ")
            },
            d.response.blocked,
            d.response.capped,
            d.response.offenders
        )?;
    } else {
        writeln!(out, "detection: off")?;
    }
    writeln!(out, "config: {}", path_text(v.config.as_deref()))?;
    writeln!(out, "state file: {}", path_text(Some(&v.state_file)))?;
    writeln!(out, "control socket: {}", path_text(Some(&v.socket)))?;
    if let Some(c) = &v.crowdsec {
        writeln!(
            out,
            "crowdsec: {} {}; {} IPs and ranges banned (list crowdsec); {} failed reads; last read {}",
            c.lapi,
            if c.connected {
                "connected"
            } else {
                "NOT CONNECTED"
            },
            c.decisions,
            c.failures,
            c.last_success.as_deref().unwrap_or("never")
        )?;
    }
    if let Some(f) = &v.fleet {
        writeln!(
            out,
            "fleet: host {} of {}, {}; {} waiting to be published; {} addresses blocked by \
             other hosts (list fleet); {} messages behind",
            f.host,
            f.name,
            if f.connected {
                "connected".to_owned()
            } else {
                format!(
                    "NOT CONNECTED ({})",
                    f.error.as_deref().unwrap_or("connecting")
                )
            },
            f.backlog,
            f.applied,
            f.behind
        )?;
    }
    Ok(())
}
