//! Request and response bodies.

use std::net::IpAddr;

use ironpost_core::{Direction, Prefix, RuleAction};
use ironpost_policy::{ListName, Origin};
use serde::{Deserialize, Serialize};

use crate::ApiError;

/// `POST /v1/blocks`: block sources (add or update).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockAdd {
    /// Addresses and prefixes.
    pub prefixes: Vec<Prefix>,
    /// Seconds until the blocks expire; none for never.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// From `block import`: entries set by the configuration are skipped
    /// rather than refusing the whole change.
    #[serde(default)]
    pub import: bool,
    /// Allow `0.0.0.0/0` and `::/0` (every address of a family).
    #[serde(default)]
    pub force: bool,
    /// The list the entries go into (default `manual`).
    #[serde(default)]
    pub list: Option<ListName>,
}

/// `DELETE /v1/blocks`, `DELETE /v1/allow`: entries to remove.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prefixes {
    /// Addresses and prefixes.
    pub prefixes: Vec<Prefix>,
    /// Blocks only: the list they leave (default `manual`); an address in
    /// other lists stays blocked.
    #[serde(default)]
    pub list: Option<ListName>,
}

/// `POST /v1/blocks/sync`: make a list hold exactly these entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockSync {
    /// The list.
    pub list: ListName,
    /// Every address and prefix it should hold.
    pub prefixes: Vec<Prefix>,
    /// Seconds until the entries expire; none for never.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// Allow `0.0.0.0/0` and `::/0`.
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/blocks/flush`: empty a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockFlush {
    /// The list.
    pub list: ListName,
}

/// `POST /v1/allow`: sources never dropped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowAdd {
    /// Addresses and prefixes.
    pub prefixes: Vec<Prefix>,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

/// What a change did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Changed {
    /// Entries that were not there.
    pub added: usize,
    /// Entries that were there and were updated.
    pub updated: usize,
    /// Entries left alone because the configuration sets them.
    pub skipped_config: usize,
    /// Entries removed.
    pub removed: usize,
    /// Things the operator should know (an allow entry that wins, an
    /// interface attached).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Time the daemon took.
    #[serde(default)]
    pub elapsed_ms: f64,
}

/// One line of a streamed change (`POST /v1/blocks?progress=true`):
/// progress lines, then the result or the error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeLine {
    /// Work in progress: `done` of `total` entries.
    Progress {
        /// Entries done.
        done: usize,
        /// Entries in all.
        total: usize,
    },
    /// The change is applied and saved.
    Done(Changed),
    /// The change was refused; nothing was changed.
    Error(ApiError),
}

/// One block-list entry, as listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockRow {
    /// Address or prefix.
    pub prefix: Prefix,
    /// Source or destination.
    pub direction: Direction,
    /// Protocol and ports the entry is limited to, if any.
    pub condition: Option<String>,
    /// What it does.
    pub action: RuleAction,
    /// Where it came from.
    pub origin: Origin,
    /// The config rule's id.
    pub id: Option<String>,
    /// Why.
    pub reason: String,
    /// When it was added (RFC 3339).
    pub added: String,
    /// When it expires (RFC 3339); none for never.
    pub expires: Option<String>,
    /// Seconds left.
    pub expires_in_secs: Option<f64>,
    /// Packets it matched.
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
    /// The list of the membership in force (the strictest).
    #[serde(default)]
    pub list: ListName,
    /// Other lists the address is in, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also_in: Vec<ListName>,
}

/// One configured port rule, as listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PortRuleRow {
    /// The rule's id.
    pub id: String,
    /// Protocol and ports.
    pub condition: String,
    /// What it does.
    pub action: RuleAction,
    /// Its description.
    pub reason: String,
    /// Packets it matched.
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
}

/// One allow-list entry, as listed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AllowRow {
    /// Address or prefix.
    pub prefix: Prefix,
    /// Where it came from.
    pub origin: Origin,
    /// Why.
    pub reason: String,
    /// When it was added (RFC 3339).
    pub added: String,
    /// Packets it let through.
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
}

/// `GET /v1/blocks/show?addr=ADDR`: what decides traffic from (and to)
/// one address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockShow {
    /// The address asked about.
    pub address: IpAddr,
    /// The allow-list entry that covers it: it wins over every block.
    pub allowed_by: Option<AllowRow>,
    /// Source entries that contain it, longest prefix (the one the
    /// datapath finds first) first.
    pub source: Vec<BlockRow>,
    /// Destination entries that contain it, longest first.
    pub destination: Vec<BlockRow>,
    /// What happens to traffic from the address, in words.
    pub verdict: String,
}

/// `GET /v1/activity`: what `ironpost top` shows besides the counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// The latest alerts, newest first, as the daemon writes them.
    pub alerts: Vec<serde_json::Value>,
    /// The sources of the most packets the datapath reported (drops and
    /// monitored packets) over the last one to two minutes, most first.
    pub sources: Vec<SourceCount>,
    /// The latest blocks still in force, soonest to expire first.
    pub blocks: Vec<BlockRow>,
}

/// One source's reported packets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCount {
    /// The source.
    pub addr: IpAddr,
    /// Packets reported from it (at most this many; the count is an upper
    /// bound once more sources are seen than are counted).
    pub packets: u64,
    /// Of those, dropped.
    pub drops: u64,
}
