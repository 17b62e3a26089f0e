//! `ironpost stats`.

use std::{io::Write, path::Path};

use ironpost_api::{StatsLine, Traffic, path};
use ironpost_core::printable;

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
        "{:<16} {:<6} {:>12} {:>14} {:>10} {:>10} {:>12} {:>8}",
        "INTERFACE", "CLASS", "PACKETS", "BYTES", "DROPS", "PPS", "BPS", "DPS"
    )?;
    let mut rows: Vec<(String, &Traffic)> = vec![("all".into(), &v.traffic)];
    rows.extend(
        v.by_interface
            .iter()
            .map(|i| (printable(&i.interface).into_owned(), &i.traffic)),
    );
    for (interface, traffic) in rows {
        for (class, c) in traffic.classes() {
            // Per interface, a class that saw nothing is left out.
            if interface != "all" && class != "total" && c.packets == 0 {
                continue;
            }
            writeln!(
                out,
                "{:<16} {:<6} {:>12} {:>14} {:>10} {:>10.1} {:>12.1} {:>8.1}",
                interface, class, c.packets, c.bytes, c.drops, c.pps, c.bps, c.dps
            )?;
        }
    }
    writeln!(
        out,
        "events: {} delivered, {} lost",
        v.events.delivered, v.events_lost
    )?;
    Ok(())
}
