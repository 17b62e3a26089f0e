//! `ironpost stats`.

use std::{io::Write, path::Path};

use ironpost_api::{StatsLine, path};

use super::print_json;
use crate::client::Client;

/// `ironpost stats`.
pub fn stats(socket: &Path, json: bool) -> anyhow::Result<()> {
    let v: StatsLine = Client::new(socket).get(path::STATS)?;
    if json {
        return print_json(&v);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<6} {:>12} {:>14} {:>10} {:>10} {:>12} {:>8}",
        "CLASS", "PACKETS", "BYTES", "DROPS", "PPS", "BPS", "DPS"
    )?;
    for (class, c) in [
        ("tcp", &v.tcp),
        ("udp", &v.udp),
        ("icmp", &v.icmp),
        ("other", &v.other),
        ("total", &v.total),
    ] {
        writeln!(
            out,
            "{:<6} {:>12} {:>14} {:>10} {:>10.1} {:>12.1} {:>8.1}",
            class, c.packets, c.bytes, c.drops, c.pps, c.bps, c.dps
        )?;
    }
    writeln!(
        out,
        "events: {} delivered, {} lost",
        v.events.delivered, v.events_lost
    )?;
    Ok(())
}
