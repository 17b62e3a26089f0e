//! `ironpost stats`.

use std::{io::Write, path::Path};

use ironpost_api::path;
use serde_json::Value;

use super::print_json;
use crate::client::Client;

fn num(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".into(), |n| n.to_string())
}

/// `ironpost stats`.
pub fn stats(socket: &Path, json: bool) -> anyhow::Result<()> {
    let v: Value = Client::new(socket).get(path::STATS)?;
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
