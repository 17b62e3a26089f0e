//! The peers Ironpost is measured against, set up with the bench policy:
//! xdp-filter (Debian xdp-tools, every feature) and an nftables netdev
//! ingress drop rule.

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::packets::{BLOCKED_V4, BLOCKED_V6, DROPPED_PORT, PREFIX_BLOCKED_V4};
use crate::run;

/// xdp-filter loaded in native mode with every feature on `iface`; unloaded
/// on drop.
pub struct XdpFilter {
    iface: String,
}

impl XdpFilter {
    /// Loads it and adds the bench policy. xdp-filter has no prefixes: the
    /// prefix case's source is added as an exact address.
    pub fn load(iface: &str) -> Result<Self> {
        run(
            "xdp-filter",
            &[
                "load",
                "--mode",
                "native",
                "--features",
                "tcp,udp,ipv6,ipv4,ethernet",
                iface,
            ],
        )?;
        let filter = Self {
            iface: iface.to_owned(),
        };
        for addr in [
            BLOCKED_V4.to_string(),
            PREFIX_BLOCKED_V4.to_string(),
            BLOCKED_V6.to_string(),
        ] {
            run("xdp-filter", &["ip", &addr, "--mode", "src"])?;
        }
        run(
            "xdp-filter",
            &[
                "port",
                &DROPPED_PORT.to_string(),
                "--proto",
                "tcp",
                "--mode",
                "dst",
            ],
        )?;
        Ok(filter)
    }
}

impl Drop for XdpFilter {
    fn drop(&mut self) {
        if let Err(e) = run("xdp-filter", &["unload", &self.iface]) {
            eprintln!("warning: {e:#}");
        }
    }
}

const NFT_TABLE: &str = "ironpost_bench";

/// An nftables netdev table whose ingress chain on `iface` drops the
/// blocked source; deleted on drop.
pub struct NftIngress;

impl NftIngress {
    /// Adds the table.
    pub fn load(iface: &str) -> Result<Self> {
        let ruleset = format!(
            "table netdev {NFT_TABLE} {{\n  chain ingress {{\n    \
             type filter hook ingress device \"{iface}\" priority 0; policy accept;\n    \
             ip saddr {BLOCKED_V4} drop\n  }}\n}}\n"
        );
        crate::run_with_stdin("nft", &["-f", "-"], &ruleset)?;
        Ok(Self)
    }
}

impl Drop for NftIngress {
    fn drop(&mut self) {
        if let Err(e) = run("nft", &["delete", "table", "netdev", NFT_TABLE]) {
            eprintln!("warning: {e:#}");
        }
    }
}

/// Id of the XDP program attached to `iface` (in the caller's namespace).
pub fn attached_prog_id(iface: &str) -> Result<u32> {
    let out = run("ip", &["-j", "link", "show", "dev", iface])?;
    let v: Value = serde_json::from_str(&out).context("parsing `ip -j link`")?;
    v[0]["xdp"]["prog"]["id"]
        .as_u64()
        .and_then(|id| u32::try_from(id).ok())
        .with_context(|| format!("no XDP program attached to {iface}"))
}
