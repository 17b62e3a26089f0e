//! The configuration file (`ironpost.toml`): parsing and validation.
//!
//! Every error names the file, the line and the field, and says what is
//! wrong with the value. Unknown keys are errors, not silently ignored.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    str::FromStr,
};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::net::{L4Protocol, PortRange, Prefix};

mod crowdsec;
mod detection;
mod fleet;

pub use crowdsec::CrowdsecConfig;
pub use detection::{
    AlertFormat, BlockScope, DetectionConfig, DetectorResponse, FloodConfig, HostGroup, MAX_BYTES,
    MAX_HOST_GROUP_PREFIXES, MAX_HOST_GROUPS, MAX_SECS, MAX_TRACKED_SOURCES, PortScanConfig,
    ResponseConfig, SlowScanConfig, SynFloodConfig, host_group_of,
};
pub use fleet::{FLEET_LIST, FleetAuth, FleetConfig, default_host_name};

/// Smallest ring buffer the kernel accepts: one page.
pub const MIN_RING_BUFFER_SIZE: u32 = 4096;
/// Largest ring buffer Ironpost accepts (1 GiB).
pub const MAX_RING_BUFFER_SIZE: u32 = 1 << 30;
/// Largest block list capacity Ironpost accepts.
pub const MAX_BLOCKLIST_ENTRIES: u32 = 16 << 20;
/// Largest allow list capacity Ironpost accepts.
pub const MAX_ALLOW_ENTRIES: u32 = 1 << 20;
/// Port and protocol rules (rules without an address) the datapath holds.
pub const MAX_PORT_RULES: usize = 255;
/// Default control socket of the daemon.
pub const DEFAULT_SOCKET: &str = "/run/ironpost/ironpost.sock";
/// The configuration `ironpost run` reads when `--config` is not given
/// (the Debian package installs a commented one here).
pub const DEFAULT_CONFIG: &str = "/etc/ironpost/ironpost.toml";
/// Default state file of the daemon (manual and automatic blocks).
pub const DEFAULT_STATE_FILE: &str = "/var/lib/ironpost/state.redb";
/// Where earlier versions kept their JSON state file by default: converted
/// into the store when the store does not exist yet.
pub const LEGACY_STATE_FILE: &str = "/var/lib/ironpost/state.json";
/// Largest per-CPU event budget (events per second per CPU).
pub const MAX_EVENT_BUDGET: u32 = 1_000_000;

/// A configuration error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {field}: {message}", self.place())]
pub struct ConfigError {
    /// The file (or a description of the source, such as `<string>`).
    pub file: String,
    /// 1-based line of the offending key or value; 0 when unknown.
    pub line: usize,
    /// 1-based column on that line; 0 when unknown.
    pub column: usize,
    /// Dotted path of the field, e.g. `ebpf.rules[2].src_ip`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// `file:line:column`, as far as they are known.
    fn place(&self) -> String {
        match (self.line, self.column) {
            (0, _) => self.file.clone(),
            (l, 0) => format!("{}:{l}", self.file),
            (l, c) => format!("{}:{l}:{c}", self.file),
        }
    }
}

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// In the driver (fastest); fails where the driver has no XDP support.
    Native,
    /// Generic XDP in the kernel stack; works everywhere, slower.
    Skb,
    /// Native, falling back to skb when native is refused.
    #[default]
    Auto,
}

impl FromStr for XdpMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "native" | "driver" | "drv" => Ok(Self::Native),
            "skb" | "generic" => Ok(Self::Skb),
            "auto" => Ok(Self::Auto),
            other => Err(format!(
                "unknown XDP mode \"{other}\": expected native, skb or auto"
            )),
        }
    }
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Native => "native",
            Self::Skb => "skb",
            Self::Auto => "auto",
        })
    }
}

/// What a rule does with matching packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Drop and report.
    #[default]
    Drop,
    /// Pass and report.
    Monitor,
    /// Pass without reporting.
    Pass,
}

impl FromStr for RuleAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop" => Ok(Self::Drop),
            "monitor" => Ok(Self::Monitor),
            "pass" => Ok(Self::Pass),
            other => Err(format!(
                "unknown action \"{other}\": expected drop, monitor or pass"
            )),
        }
    }
}

impl fmt::Display for RuleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Drop => "drop",
            Self::Monitor => "monitor",
            Self::Pass => "pass",
        })
    }
}

/// The whole configuration file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IronpostConfig {
    /// The `[ebpf]` section.
    pub ebpf: EbpfConfig,
    /// The `[daemon]` section.
    pub daemon: DaemonConfig,
    /// The `[detection]` section.
    pub detection: DetectionConfig,
    /// The `[response]` section.
    pub response: ResponseConfig,
    /// The `[crowdsec]` section, if present.
    pub crowdsec: Option<CrowdsecConfig>,
    /// The `[fleet]` section, if present.
    pub fleet: Option<FleetConfig>,
}

/// The `[daemon]` section: how the running daemon is reached and where it
/// keeps its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Control socket (mode 0600, in a 0700 directory).
    pub socket: PathBuf,
    /// State file: manual and automatic blocks with their expiry, and
    /// allow-list entries added at run time.
    pub state_file: PathBuf,
    /// Where `/metrics` and `/healthz` are served over HTTP; `None` when
    /// turned off (`metrics_listen = "off"`).
    pub metrics_listen: Option<SocketAddr>,
    /// Where the XDP links are pinned in bpffs so the filter outlives the
    /// daemon; `None` when turned off (`pin_dir = "off"`).
    pub pin_dir: Option<PathBuf>,
    /// What a stopping daemon does with the filter.
    pub on_exit: OnExit,
}

/// What a stopping daemon does with its XDP program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnExit {
    /// Leave it attached (pinned) with the policy in force, for the next
    /// start to take over without a gap.
    #[default]
    Keep,
    /// Detach it: the interfaces are unfiltered until the next start.
    Detach,
}

impl std::str::FromStr for OnExit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "keep" => Ok(Self::Keep),
            "detach" => Ok(Self::Detach),
            other => Err(format!("\"{other}\" is not keep or detach")),
        }
    }
}

/// Default pin directory (bpffs).
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/ironpost";

/// Default address of the metrics listener: loopback only.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9477";

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(DEFAULT_SOCKET),
            state_file: PathBuf::from(DEFAULT_STATE_FILE),
            metrics_listen: DEFAULT_METRICS_LISTEN.parse().ok(),
            pin_dir: Some(PathBuf::from(DEFAULT_PIN_DIR)),
            on_exit: OnExit::Keep,
        }
    }
}

/// The `[ebpf]` section: the XDP datapath.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EbpfConfig {
    /// Whether the datapath runs at all.
    pub enabled: bool,
    /// Interfaces to attach to (the command line may override them).
    pub interfaces: Vec<String>,
    /// Attach mode.
    pub xdp_mode: XdpMode,
    /// EVENTS ring buffer size in bytes: a power of two, at least one page.
    pub ring_buffer_size: u32,
    /// Block list capacity: address and prefix entries, all origins.
    pub blocklist_max_entries: u32,
    /// Allow list capacity.
    pub allow_max_entries: u32,
    /// Events the datapath may report per second per CPU; the rest are
    /// counted as lost.
    pub event_budget_per_cpu: u32,
    /// Datagrams whose first fragment the datapath remembers at once (a
    /// tracking table: under more fragmented traffic than this, later
    /// fragments of the older datagrams get only the address rules).
    pub max_tracked_fragments: u32,
    /// Rules, in file order.
    pub rules: Vec<RuleConfig>,
    /// Allow list: sources that are never dropped.
    pub allow: Vec<Prefix>,
}

impl Default for EbpfConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interfaces: Vec::new(),
            xdp_mode: XdpMode::Auto,
            ring_buffer_size: 256 * 1024,
            blocklist_max_entries: 10_000,
            allow_max_entries: 10_000,
            event_budget_per_cpu: 2_000,
            max_tracked_fragments: 8_192,
            rules: Vec::new(),
            allow: Vec::new(),
        }
    }
}

/// Which address of a packet a rule looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The source address.
    Src,
    /// The destination address.
    Dst,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Src => "src",
            Self::Dst => "dst",
        })
    }
}

/// A protocol, and for TCP and UDP optionally a destination port range,
/// that a packet must have for a rule to match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Condition {
    /// Protocol.
    pub protocol: L4Protocol,
    /// Destination ports (TCP and UDP only); `None` is every port.
    pub dst_port: Option<PortRange>,
    /// TCP only: bare SYNs (SYN without ACK) only, the packets of a SYN
    /// flood; established connections do not match. Set by automatic
    /// blocks of SYN floods, not by configuration.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub syn_only: bool,
    /// TCP only: RSTs only, the packets of a RST flood. Set by automatic
    /// blocks of RST floods, not by configuration.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rst_only: bool,
}

impl Condition {
    /// The port range the condition covers (every port when none is set).
    pub fn ports(&self) -> PortRange {
        self.dst_port.unwrap_or(PortRange::ALL)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.protocol)?;
        if self.syn_only {
            f.write_str("-syn")?;
        }
        if self.rst_only {
            f.write_str("-rst")?;
        }
        match self.dst_port {
            Some(p) => write!(f, "/{p}"),
            None => Ok(()),
        }
    }
}

/// One `[[ebpf.rules]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleConfig {
    /// Unique id.
    pub id: String,
    /// Free text for operators.
    pub description: String,
    /// The address the rule matches and which one (source or destination);
    /// `None` for a port rule, which matches any address.
    pub address: Option<(Direction, Prefix)>,
    /// Protocol and port condition; required when there is no address.
    pub condition: Option<Condition>,
    /// What to do with matching packets.
    pub action: RuleAction,
}

impl fmt::Display for RuleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.id, self.action)?;
        if let Some((dir, p)) = &self.address {
            write!(f, " {dir} {p}")?;
        }
        if let Some(c) = &self.condition {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}

// The file as written, with the position of every value for error messages.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    ebpf: Option<RawEbpf>,
    #[serde(default)]
    daemon: Option<RawDaemon>,
    #[serde(default)]
    detection: Option<detection::RawDetection>,
    #[serde(default)]
    response: Option<detection::RawResponse>,
    #[serde(default)]
    crowdsec: Option<Spanned<crowdsec::RawCrowdsec>>,
    #[serde(default)]
    fleet: Option<Spanned<fleet::RawFleet>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    socket: Option<Spanned<String>>,
    state_file: Option<Spanned<String>>,
    metrics_listen: Option<Spanned<String>>,
    pin_dir: Option<Spanned<String>>,
    on_exit: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEbpf {
    enabled: Option<bool>,
    interface: Option<Spanned<String>>,
    interfaces: Option<Spanned<Vec<Spanned<String>>>>,
    xdp_mode: Option<Spanned<String>>,
    ring_buffer_size: Option<Spanned<i64>>,
    blocklist_max_entries: Option<Spanned<i64>>,
    allow_max_entries: Option<Spanned<i64>>,
    event_budget_per_cpu: Option<Spanned<i64>>,
    max_tracked_fragments: Option<Spanned<i64>>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
    #[serde(default)]
    allow: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Option<Spanned<String>>,
    description: Option<String>,
    /// Accepted as another name for `src`.
    src_ip: Option<Spanned<String>>,
    src: Option<Spanned<String>>,
    dst: Option<Spanned<String>>,
    protocol: Option<Spanned<String>>,
    dst_port: Option<Spanned<toml::Value>>,
    action: Option<Spanned<String>>,
}

impl IronpostConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            column: 0,
            field: "(file)".into(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &file)
    }

    /// Parses and validates configuration text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let src = Source { text, file };
        let raw: RawFile = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
        let ebpf = match raw.ebpf {
            Some(raw) => src.ebpf(raw)?,
            None => EbpfConfig::default(),
        };
        let daemon = match raw.daemon {
            Some(raw) => src.daemon(raw)?,
            None => DaemonConfig::default(),
        };
        let detection = match raw.detection {
            Some(raw) => src.detection(raw)?,
            None => DetectionConfig::default(),
        };
        let response = match raw.response {
            Some(raw) => src.response(raw)?,
            None => ResponseConfig::default(),
        };
        let crowdsec = match raw.crowdsec {
            Some(raw) => {
                let span = raw.span();
                Some(src.crowdsec(raw.into_inner(), span)?)
            }
            None => None,
        };
        let fleet = match raw.fleet {
            Some(raw) => {
                let span = raw.span();
                Some(src.fleet(raw.into_inner(), span)?)
            }
            None => None,
        };
        Ok(Self {
            ebpf,
            daemon,
            detection,
            response,
            crowdsec,
            fleet,
        })
    }
}

struct Source<'a> {
    text: &'a str,
    file: &'a str,
}

impl Source<'_> {
    /// 1-based line and column (in characters) of a byte offset.
    fn place_of(&self, offset: usize) -> (usize, usize) {
        let end = offset.min(self.text.len());
        let before = self.text.get(..end).unwrap_or(self.text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        (line, before[line_start..].chars().count() + 1)
    }

    fn error(&self, span: std::ops::Range<usize>, field: &str, message: String) -> ConfigError {
        let (line, column) = self.place_of(span.start);
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            field: field.to_owned(),
            message,
        }
    }

    /// A syntax or type error from the TOML parser. The parser's message
    /// names unknown keys; for other errors the key is read off the line.
    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let (line, column, field) = match e.span() {
            Some(span) => {
                let (line, column) = self.place_of(span.start);
                let text = self.text.lines().nth(line - 1).unwrap_or("");
                let field = text
                    .split_once('=')
                    .map(|(k, _)| k.trim().to_owned())
                    .filter(|k| !k.is_empty() && !k.starts_with('['))
                    .unwrap_or_else(|| text.trim().to_owned());
                (line, column, field)
            }
            None => (0, 0, String::new()),
        };
        let message: Vec<&str> = e.message().lines().map(str::trim).collect();
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            field,
            message: message.join("; "),
        }
    }

    /// A list of prefixes (`field[i]` named in errors), none twice.
    fn prefix_list(
        &self,
        entries: &[Spanned<String>],
        field: &str,
    ) -> Result<Vec<Prefix>, ConfigError> {
        let mut out: Vec<Prefix> = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let field = format!("{field}[{i}]");
            let prefix: Prefix = entry
                .get_ref()
                .parse()
                .map_err(|m| self.error(entry.span(), &field, m))?;
            if out.contains(&prefix) {
                return Err(self.error(entry.span(), &field, format!("{prefix} is listed twice")));
            }
            out.push(prefix);
        }
        Ok(out)
    }

    fn range(&self, v: &Spanned<i64>, field: &str, min: u32, max: u32) -> Result<u32, ConfigError> {
        let n = *v.get_ref();
        if n < i64::from(min) || n > i64::from(max) {
            return Err(self.error(
                v.span(),
                field,
                format!("{n} is out of range: must be between {min} and {max}"),
            ));
        }
        Ok(n as u32)
    }

    fn ebpf(&self, raw: RawEbpf) -> Result<EbpfConfig, ConfigError> {
        let mut cfg = EbpfConfig::default();
        if let Some(enabled) = raw.enabled {
            cfg.enabled = enabled;
        }
        if let (Some(_), Some(list)) = (&raw.interface, &raw.interfaces) {
            return Err(self.error(
                list.span(),
                "ebpf.interfaces",
                "set either interface or interfaces, not both".into(),
            ));
        }
        if let Some(iface) = raw.interface {
            let name = iface.get_ref();
            if let Err(msg) = check_interface_name(name) {
                return Err(self.error(iface.span(), "ebpf.interface", msg));
            }
            cfg.interfaces = vec![name.clone()];
        }
        if let Some(list) = raw.interfaces {
            for (i, iface) in list.into_inner().into_iter().enumerate() {
                let field = format!("ebpf.interfaces[{i}]");
                if let Err(msg) = check_interface_name(iface.get_ref()) {
                    return Err(self.error(iface.span(), &field, msg));
                }
                if cfg.interfaces.contains(iface.get_ref()) {
                    return Err(self.error(
                        iface.span(),
                        &field,
                        format!("\"{}\" is listed twice", iface.get_ref()),
                    ));
                }
                cfg.interfaces.push(iface.into_inner());
            }
        }
        if let Some(mode) = raw.xdp_mode {
            cfg.xdp_mode = mode
                .get_ref()
                .parse()
                .map_err(|m| self.error(mode.span(), "ebpf.xdp_mode", m))?;
        }
        if let Some(size) = raw.ring_buffer_size {
            let n = self.range(
                &size,
                "ebpf.ring_buffer_size",
                MIN_RING_BUFFER_SIZE,
                MAX_RING_BUFFER_SIZE,
            )?;
            if !n.is_power_of_two() {
                return Err(self.error(
                    size.span(),
                    "ebpf.ring_buffer_size",
                    format!("{n} is not a power of two (e.g. 262144 for 256 KiB)"),
                ));
            }
            cfg.ring_buffer_size = n;
        }
        if let Some(n) = raw.blocklist_max_entries {
            cfg.blocklist_max_entries =
                self.range(&n, "ebpf.blocklist_max_entries", 1, MAX_BLOCKLIST_ENTRIES)?;
        }
        if let Some(n) = raw.allow_max_entries {
            cfg.allow_max_entries =
                self.range(&n, "ebpf.allow_max_entries", 1, MAX_ALLOW_ENTRIES)?;
        }
        if let Some(n) = raw.max_tracked_fragments {
            cfg.max_tracked_fragments =
                self.range(&n, "ebpf.max_tracked_fragments", 64, 1 << 22)?;
        }
        if let Some(n) = raw.event_budget_per_cpu {
            cfg.event_budget_per_cpu =
                self.range(&n, "ebpf.event_budget_per_cpu", 0, MAX_EVENT_BUDGET)?;
        }
        let mut earlier = RuleIndex::default();
        for (i, rule) in raw.rules.into_iter().enumerate() {
            let span = rule.span();
            let rule = self.rule(i, span, rule.into_inner(), &earlier, &cfg.rules)?;
            earlier.add(&rule, cfg.rules.len());
            cfg.rules.push(rule);
        }
        let address_rules = cfg.rules.iter().filter(|r| r.address.is_some()).count();
        if address_rules > cfg.blocklist_max_entries as usize {
            return Err(ConfigError {
                file: self.file.to_owned(),
                line: 0,
                column: 0,
                field: "ebpf.rules".into(),
                message: format!(
                    "{address_rules} address rules do not fit in blocklist_max_entries = {}",
                    cfg.blocklist_max_entries
                ),
            });
        }
        let port_rules = cfg.rules.len() - address_rules;
        if port_rules > MAX_PORT_RULES {
            return Err(ConfigError {
                file: self.file.to_owned(),
                line: 0,
                column: 0,
                field: "ebpf.rules".into(),
                message: format!(
                    "{port_rules} port rules (rules without src or dst): at most {MAX_PORT_RULES}"
                ),
            });
        }
        cfg.allow = self.prefix_list(&raw.allow, "ebpf.allow")?;
        if cfg.allow.len() > cfg.allow_max_entries as usize {
            return Err(ConfigError {
                file: self.file.to_owned(),
                line: 0,
                column: 0,
                field: "ebpf.allow".into(),
                message: format!(
                    "{} entries do not fit in allow_max_entries = {}",
                    cfg.allow.len(),
                    cfg.allow_max_entries
                ),
            });
        }
        Ok(cfg)
    }

    fn daemon(&self, raw: RawDaemon) -> Result<DaemonConfig, ConfigError> {
        let mut cfg = DaemonConfig::default();
        let path = |v: Spanned<String>, field: &str| {
            let p = PathBuf::from(v.get_ref());
            if p.as_os_str().is_empty() || !p.is_absolute() {
                return Err(self.error(
                    v.span(),
                    field,
                    format!("\"{}\" must be an absolute path", v.get_ref()),
                ));
            }
            Ok(p)
        };
        if let Some(v) = raw.socket {
            cfg.socket = path(v, "daemon.socket")?;
        }
        if let Some(v) = raw.state_file {
            cfg.state_file = path(v, "daemon.state_file")?;
        }
        if let Some(v) = raw.pin_dir {
            cfg.pin_dir = if v.get_ref().trim() == "off" {
                None
            } else {
                Some(path(v, "daemon.pin_dir")?)
            };
        }
        if let Some(v) = raw.on_exit {
            cfg.on_exit = v
                .get_ref()
                .parse()
                .map_err(|e| self.error(v.span(), "daemon.on_exit", e))?;
        }
        if let Some(v) = raw.metrics_listen {
            let text = v.get_ref().trim();
            cfg.metrics_listen = if text.is_empty() || text == "off" {
                None
            } else {
                Some(text.parse().map_err(|_| {
                    self.error(
                        v.span(),
                        "daemon.metrics_listen",
                        format!(
                            "\"{text}\" is not an address and port such as 127.0.0.1:9477 \
                             (or \"off\")"
                        ),
                    )
                })?)
            };
        }
        Ok(cfg)
    }

    fn rule(
        &self,
        i: usize,
        span: std::ops::Range<usize>,
        raw: RawRule,
        index: &RuleIndex,
        earlier: &[RuleConfig],
    ) -> Result<RuleConfig, ConfigError> {
        let field = |name: &str| format!("ebpf.rules[{i}].{name}");
        let id = raw
            .id
            .ok_or_else(|| self.error(span.clone(), &field("id"), "missing".into()))?;
        if id.get_ref().trim().is_empty() {
            return Err(self.error(id.span(), &field("id"), "must not be empty".into()));
        }
        if index.ids.contains(id.get_ref()) {
            return Err(self.error(
                id.span(),
                &field("id"),
                format!("duplicate rule id \"{}\"", id.get_ref()),
            ));
        }
        if raw.src.is_some() && raw.src_ip.is_some() {
            let s = raw.src.as_ref().map(Spanned::span).unwrap_or_default();
            return Err(self.error(
                s,
                &field("src"),
                "src and src_ip are the same key: set one".into(),
            ));
        }
        let src = raw
            .src
            .map(|v| ("src", v))
            .or(raw.src_ip.map(|v| ("src_ip", v)));
        let address = match (src, raw.dst) {
            (Some(_), Some(d)) => {
                return Err(self.error(
                    d.span(),
                    &field("dst"),
                    "a rule matches src or dst, not both: write two rules".into(),
                ));
            }
            (Some((name, v)), None) => Some((Direction::Src, name, v)),
            (None, Some(v)) => Some((Direction::Dst, "dst", v)),
            (None, None) => None,
        };
        let address = match address {
            Some((dir, name, v)) => {
                let prefix: Prefix = v
                    .get_ref()
                    .parse()
                    .map_err(|m| self.error(v.span(), &field(name), m))?;
                Some((dir, prefix, name, v.span()))
            }
            None => None,
        };
        let protocol = match &raw.protocol {
            Some(p) => Some(
                p.get_ref()
                    .parse::<L4Protocol>()
                    .map_err(|m| self.error(p.span(), &field("protocol"), m))?,
            ),
            None => None,
        };
        let dst_port = match &raw.dst_port {
            Some(v) => {
                let range = match v.get_ref() {
                    toml::Value::Integer(n) => u16::try_from(*n)
                        .map(|p| PortRange { first: p, last: p })
                        .map_err(|_| format!("{n} is not a port number (0 to 65535)")),
                    toml::Value::String(s) => s.parse::<PortRange>(),
                    other => Err(format!("{other} is not a port: write 22 or \"1000-2000\"")),
                }
                .map_err(|m| self.error(v.span(), &field("dst_port"), m))?;
                match protocol {
                    Some(p) if p.has_ports() => {}
                    Some(p) => {
                        return Err(self.error(
                            v.span(),
                            &field("dst_port"),
                            format!(
                                "{p} has no ports: dst_port needs protocol = \"tcp\" or \"udp\""
                            ),
                        ));
                    }
                    None => {
                        return Err(self.error(
                            v.span(),
                            &field("dst_port"),
                            "dst_port needs protocol = \"tcp\" or \"udp\"".into(),
                        ));
                    }
                }
                Some(range)
            }
            None => None,
        };
        let condition = protocol.map(|protocol| Condition {
            protocol,
            dst_port,
            syn_only: false,
            rst_only: false,
        });
        let action = match raw.action {
            Some(a) => a
                .get_ref()
                .parse()
                .map_err(|m| self.error(a.span(), &field("action"), m))?,
            None => RuleAction::Drop,
        };
        match &address {
            Some((dir, prefix, name, pspan)) => self.check_overlap(
                *dir,
                prefix,
                condition.is_some(),
                name,
                pspan,
                &field,
                index,
                earlier,
            )?,
            None => {
                let Some(cond) = condition else {
                    return Err(self.error(
                        span,
                        &field("src"),
                        "missing: a rule needs src, dst or protocol".into(),
                    ));
                };
                if let Some(other) = index.port_rules.iter().map(|&i| &earlier[i]).find(|r| {
                    r.address.is_none()
                        && r.condition.is_some_and(|c| {
                            c.protocol == cond.protocol && c.ports().overlaps(&cond.ports())
                        })
                }) {
                    let s = raw
                        .dst_port
                        .as_ref()
                        .map(Spanned::span)
                        .or(raw.protocol.as_ref().map(Spanned::span))
                        .unwrap_or(span);
                    return Err(self.error(
                        s,
                        &field("dst_port"),
                        format!("{cond} overlaps port rule \"{}\"", other.id),
                    ));
                }
            }
        }
        Ok(RuleConfig {
            id: id.into_inner(),
            description: raw.description.unwrap_or_default(),
            address: address.map(|(d, p, _, _)| (d, p)),
            condition,
            action,
        })
    }

    /// One rule per address and direction; a rule with a condition may not
    /// nest in or around another rule with a condition (see the docs on
    /// evaluation order).
    #[allow(clippy::too_many_arguments)]
    fn check_overlap(
        &self,
        dir: Direction,
        prefix: &Prefix,
        conditioned: bool,
        name: &str,
        span: &std::ops::Range<usize>,
        field: &dyn Fn(&str) -> String,
        index: &RuleIndex,
        earlier: &[RuleConfig],
    ) -> Result<(), ConfigError> {
        if let Some(&i) = index.addresses.get(&(dir, *prefix)) {
            return Err(self.error(
                span.clone(),
                &field(name),
                format!(
                    "{dir} {prefix} is already used by rule \"{}\"",
                    earlier[i].id
                ),
            ));
        }
        if !conditioned {
            return Ok(());
        }
        // Conditioned rules around this prefix (its parents), then inside
        // it (an ordered range query).
        let mut around = prefix.parent();
        while let Some(p) = around {
            if let Some(&i) = index.conditioned.get(&(dir, p)) {
                return Err(self.nested(dir, prefix, p, &earlier[i].id, span, field(name)));
            }
            around = p.parent();
        }
        let (first, last) = prefix.range_bounds();
        if let Some((&(_, p), &i)) = index.conditioned.range((dir, first)..=(dir, last)).next() {
            return Err(self.nested(dir, prefix, p, &earlier[i].id, span, field(name)));
        }
        Ok(())
    }

    fn nested(
        &self,
        dir: Direction,
        prefix: &Prefix,
        other: Prefix,
        id: &str,
        span: &std::ops::Range<usize>,
        field: String,
    ) -> ConfigError {
        self.error(
            span.clone(),
            &field,
            format!(
                "{dir} {prefix} overlaps {other} of rule \"{id}\"; rules with a protocol or port \
                 must not nest inside one another"
            ),
        )
    }
}

/// The rules read so far, indexed for the checks of the next one: a
/// configuration of 100,000 rules is checked in one pass, not in
/// 100,000 scans of the ones before.
#[derive(Default)]
struct RuleIndex {
    /// Every id.
    ids: HashSet<String>,
    /// Address rules by direction and prefix (their position).
    addresses: HashMap<(Direction, Prefix), usize>,
    /// Address rules with a protocol or port condition.
    conditioned: BTreeMap<(Direction, Prefix), usize>,
    /// Rules without an address (port rules), by position.
    port_rules: Vec<usize>,
}

impl RuleIndex {
    fn add(&mut self, rule: &RuleConfig, at: usize) {
        self.ids.insert(rule.id.clone());
        match rule.address {
            Some(key) => {
                self.addresses.insert(key, at);
                if rule.condition.is_some() {
                    self.conditioned.insert(key, at);
                }
            }
            None => self.port_rules.push(at),
        }
    }
}

/// Checks a Linux interface name (1 to 15 bytes, no '/', no white space).
pub fn check_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!(
            "\"{name}\" is not a valid interface name (1 to 15 characters)"
        ));
    }
    if name.contains('/') || name.chars().any(char::is_whitespace) || name == "." || name == ".." {
        return Err(format!("\"{name}\" is not a valid interface name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<IronpostConfig, ConfigError> {
        IronpostConfig::parse(text, "test.toml")
    }

    #[test]
    fn empty_file_gives_defaults() {
        let cfg = parse("").unwrap();
        assert_eq!(cfg.ebpf, EbpfConfig::default());
        assert_eq!(cfg.ebpf.xdp_mode, XdpMode::Auto);
    }

    #[test]
    fn full_section_parses() {
        let cfg = parse(
            r#"
[ebpf]
enabled = true
interface = "eth0"
xdp_mode = "skb"
ring_buffer_size = 1048576
blocklist_max_entries = 50000
event_budget_per_cpu = 100

[[ebpf.rules]]
id = "block-scanner"
description = "known scanner"
src_ip = "192.0.2.7"
action = "drop"

[[ebpf.rules]]
id = "watch"
src_ip = "198.51.100.1"
action = "monitor"
"#,
        )
        .unwrap();
        let e = &cfg.ebpf;
        assert_eq!(e.interfaces, vec!["eth0".to_owned()]);
        assert_eq!(e.xdp_mode, XdpMode::Skb);
        assert_eq!(e.ring_buffer_size, 1 << 20);
        assert_eq!(e.blocklist_max_entries, 50_000);
        assert_eq!(e.event_budget_per_cpu, 100);
        assert_eq!(e.rules.len(), 2);
        assert_eq!(
            e.rules[0].address,
            Some((Direction::Src, "192.0.2.7".parse().unwrap()))
        );
        assert_eq!(e.rules[0].description, "known scanner");
        assert_eq!(e.rules[1].action, RuleAction::Monitor);
    }

    #[test]
    fn action_defaults_to_drop() {
        let cfg = parse("[[ebpf.rules]]\nid = \"a\"\nsrc_ip = \"10.0.0.1\"\n").unwrap();
        assert_eq!(cfg.ebpf.rules[0].action, RuleAction::Drop);
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = parse("[ebpf]\nenabled = true\nringbuffer = 4096\n").unwrap_err();
        assert_eq!(err.file, "test.toml");
        assert_eq!(err.line, 3);
        assert_eq!(err.field, "ringbuffer");
        assert!(err.message.contains("unknown field `ringbuffer`"), "{err}");
    }

    #[test]
    fn unknown_section_is_rejected() {
        let err = parse("[ebpff]\nenabled = true\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.message.contains("unknown field `ebpff`"), "{err}");
    }

    #[test]
    fn unknown_rule_key_is_rejected() {
        let err = parse("[[ebpf.rules]]\nid = \"a\"\nsrc_ip = \"10.0.0.1\"\nsource = \"x\"\n")
            .unwrap_err();
        assert_eq!(err.line, 4);
        assert!(err.message.contains("unknown field `source`"), "{err}");
    }

    #[test]
    fn bad_address_names_rule_and_line() {
        let err = parse(
            "[[ebpf.rules]]\nid = \"ok\"\nsrc_ip = \"10.0.0.1\"\n\n[[ebpf.rules]]\nid = \"bad\"\nsrc_ip = \"10.0.0.300\"\n",
        )
        .unwrap_err();
        assert_eq!(err.line, 7);
        assert_eq!(err.field, "ebpf.rules[1].src_ip");
        assert!(err.message.contains("10.0.0.300"), "{err}");
        assert_eq!(
            err.to_string(),
            "test.toml:7:10: ebpf.rules[1].src_ip: \"10.0.0.300\" is not an IP address or prefix"
        );
    }

    #[test]
    fn duplicate_id_is_rejected() {
        let err = parse(
            "[[ebpf.rules]]\nid = \"x\"\nsrc_ip = \"10.0.0.1\"\n[[ebpf.rules]]\nid = \"x\"\nsrc_ip = \"10.0.0.2\"\n",
        )
        .unwrap_err();
        assert_eq!(err.line, 5);
        assert_eq!(err.field, "ebpf.rules[1].id");
        assert!(err.message.contains("duplicate rule id \"x\""), "{err}");
    }

    #[test]
    fn duplicate_address_is_rejected() {
        let err = parse(
            "[[ebpf.rules]]\nid = \"x\"\nsrc_ip = \"10.0.0.1\"\n[[ebpf.rules]]\nid = \"y\"\nsrc_ip = \"10.0.0.1\"\n",
        )
        .unwrap_err();
        assert_eq!(err.line, 6);
        assert!(err.message.contains("already used by rule \"x\""), "{err}");
    }

    #[test]
    fn missing_fields_are_named() {
        let err = parse("[[ebpf.rules]]\nid = \"x\"\n").unwrap_err();
        assert_eq!(err.field, "ebpf.rules[0].src");
        assert!(err.message.starts_with("missing"), "{err}");
        let err = parse("[[ebpf.rules]]\nsrc_ip = \"10.0.0.1\"\n").unwrap_err();
        assert_eq!(err.field, "ebpf.rules[0].id");
    }

    #[test]
    fn out_of_range_sizes_are_rejected() {
        let err = parse("[ebpf]\nring_buffer_size = 1024\n").unwrap_err();
        assert_eq!((err.line, err.field.as_str()), (2, "ebpf.ring_buffer_size"));
        assert!(err.message.contains("out of range"), "{err}");
        let err = parse("[ebpf]\nring_buffer_size = 300000\n").unwrap_err();
        assert!(err.message.contains("power of two"), "{err}");
        let err = parse("[ebpf]\n\nblocklist_max_entries = 0\n").unwrap_err();
        assert_eq!(
            (err.line, err.field.as_str()),
            (3, "ebpf.blocklist_max_entries")
        );
        let err = parse("[ebpf]\nblocklist_max_entries = -5\n").unwrap_err();
        assert!(err.message.contains("-5 is out of range"), "{err}");
        let err = parse("[ebpf]\nevent_budget_per_cpu = 99999999\n").unwrap_err();
        assert_eq!(err.field, "ebpf.event_budget_per_cpu");
    }

    #[test]
    fn wrong_types_name_the_key() {
        let err = parse("[ebpf]\nenabled = \"yes\"\n").unwrap_err();
        assert_eq!((err.line, err.field.as_str()), (2, "enabled"));
        let err = parse("[ebpf]\nring_buffer_size = \"big\"\n").unwrap_err();
        assert_eq!((err.line, err.field.as_str()), (2, "ring_buffer_size"));
    }

    #[test]
    fn bad_mode_and_action_are_rejected() {
        let err = parse("[ebpf]\nxdp_mode = \"fast\"\n").unwrap_err();
        assert_eq!(err.field, "ebpf.xdp_mode");
        assert!(err.message.contains("native, skb or auto"), "{err}");
        let err = parse("[[ebpf.rules]]\nid = \"a\"\nsrc_ip = \"10.0.0.1\"\naction = \"reject\"\n")
            .unwrap_err();
        assert_eq!((err.line, err.field.as_str()), (4, "ebpf.rules[0].action"));
    }

    #[test]
    fn too_many_rules_for_capacity() {
        let err = parse(
            "[ebpf]\nblocklist_max_entries = 1\n[[ebpf.rules]]\nid = \"a\"\nsrc_ip = \"10.0.0.1\"\n[[ebpf.rules]]\nid = \"b\"\nsrc_ip = \"10.0.0.2\"\n",
        )
        .unwrap_err();
        assert!(err.message.contains("do not fit"), "{err}");
    }

    #[test]
    fn syntax_error_has_a_line_and_column() {
        let err = parse("[ebpf]\nenabled = \n").unwrap_err();
        assert_eq!(err.line, 2);
        let err = parse("[ebpf]\ninterfaces = [\"lo\"\nxdp_mode = \"skb\"\n").unwrap_err();
        assert_eq!((err.line, err.column), (3, 1), "{err}");
        assert!(err.to_string().starts_with("test.toml:3:1: "), "{err}");
        assert!(!err.to_string().contains('\n'), "one line: {err}");
    }

    #[test]
    fn bad_interface_names() {
        assert!(parse("[ebpf]\ninterface = \"a-very-long-interface-name\"\n").is_err());
        assert!(parse("[ebpf]\ninterface = \"\"\n").is_err());
        assert!(parse("[ebpf]\ninterface = \"eth0\"\n").is_ok());
    }

    #[test]
    fn shipped_example_config_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ironpost.example.toml");
        let cfg = IronpostConfig::load(Path::new(path)).unwrap();
        assert!(!cfg.ebpf.rules.is_empty());
        assert!(!cfg.ebpf.allow.is_empty());
    }

    #[test]
    fn prefixes_destinations_ports_and_ipv6() {
        let cfg = parse(
            r#"
[[ebpf.rules]]
id = "net"
src = "203.0.113.0/24"
[[ebpf.rules]]
id = "v6"
src = "2001:db8::/32"
action = "monitor"
[[ebpf.rules]]
id = "to-db"
dst = "10.9.0.5"
protocol = "tcp"
dst_port = 5432
[[ebpf.rules]]
id = "ssh"
protocol = "tcp"
dst_port = "22"
[[ebpf.rules]]
id = "high-udp"
protocol = "udp"
dst_port = "30000-40000"
action = "monitor"
[[ebpf.rules]]
id = "icmp"
protocol = "icmp"
action = "monitor"
"#,
        )
        .unwrap();
        let r = &cfg.ebpf.rules;
        assert_eq!(r[0].address.unwrap().1.len(), 24);
        assert!(!r[1].address.unwrap().1.is_ipv4());
        assert_eq!(r[2].address.unwrap().0, Direction::Dst);
        assert_eq!(r[2].condition.unwrap().to_string(), "tcp/5432");
        assert!(r[3].address.is_none());
        assert_eq!(
            r[4].condition.unwrap().ports(),
            "30000-40000".parse().unwrap()
        );
        assert_eq!(r[5].condition.unwrap().ports(), PortRange::ALL);
    }

    #[test]
    fn bad_rule_shapes_are_explained() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "src = \"10.0.0.0/8\"\ndst = \"10.0.0.1\"",
                "dst",
                "not both",
            ),
            ("src = \"10.1.2.3/8\"", "src", "host bits"),
            ("dst = \"10.0.0.0/40\"", "dst", "0 to 32"),
            ("protocol = \"sctp\"", "protocol", "tcp, udp or icmp"),
            ("protocol = \"icmp\"\ndst_port = 1", "dst_port", "no ports"),
            (
                "src = \"10.0.0.1\"\ndst_port = 80",
                "dst_port",
                "needs protocol",
            ),
            (
                "protocol = \"tcp\"\ndst_port = 70000",
                "dst_port",
                "not a port",
            ),
            (
                "protocol = \"tcp\"\ndst_port = \"90-80\"",
                "dst_port",
                "empty",
            ),
            ("src = \"1.2.3.4\"\nsrc_ip = \"1.2.3.4\"", "src", "same key"),
        ];
        for (body, field, needle) in cases {
            let err = parse(&format!("[[ebpf.rules]]\nid = \"r\"\n{body}\n")).unwrap_err();
            assert_eq!(err.field, format!("ebpf.rules[0].{field}"), "{body}: {err}");
            assert!(err.message.contains(needle), "{body}: {err}");
            assert!(err.line >= 3, "{body}: {err}");
        }
    }

    #[test]
    fn overlapping_rules_are_refused() {
        let two = |a: &str, b: &str| {
            parse(&format!(
                "[[ebpf.rules]]\nid = \"a\"\n{a}\n[[ebpf.rules]]\nid = \"b\"\n{b}\n"
            ))
        };
        let err = two(
            "protocol = \"tcp\"\ndst_port = \"20-30\"",
            "protocol = \"tcp\"\ndst_port = 25",
        )
        .unwrap_err();
        assert!(err.message.contains("overlaps port rule \"a\""), "{err}");
        assert!(
            two(
                "protocol = \"tcp\"\ndst_port = 25",
                "protocol = \"udp\"\ndst_port = 25"
            )
            .is_ok()
        );
        let err = two(
            "src = \"10.0.0.0/8\"\nprotocol = \"tcp\"",
            "src = \"10.1.0.0/16\"\nprotocol = \"udp\"",
        )
        .unwrap_err();
        assert!(err.message.contains("must not nest"), "{err}");
        // Nesting is found both ways and across the address space: the
        // later rule around the earlier one, IPv6, and not across
        // families or directions.
        let err = two(
            "src = \"10.1.2.0/24\"\nprotocol = \"tcp\"",
            "src = \"10.0.0.0/8\"\nprotocol = \"udp\"",
        )
        .unwrap_err();
        assert!(err.message.contains("overlaps 10.1.2.0/24"), "{err}");
        let err = two(
            "src = \"2001:db8:ffff::/48\"\nprotocol = \"tcp\"",
            "src = \"2001:db8::/32\"\nprotocol = \"tcp\"",
        )
        .unwrap_err();
        assert!(err.message.contains("must not nest"), "{err}");
        for (a, b) in [
            ("src = \"10.1.2.0/24\"", "src = \"10.1.3.0/24\""),
            ("src = \"10.0.0.0/8\"", "src = \"11.0.0.0/8\""),
            ("src = \"0.0.0.0/8\"", "src = \"::/8\""),
            ("src = \"10.0.0.0/8\"", "dst = \"10.1.0.0/16\""),
        ] {
            let tcp = "\nprotocol = \"tcp\"";
            assert!(
                two(&format!("{a}{tcp}"), &format!("{b}{tcp}")).is_ok(),
                "{a} {b}"
            );
        }
        // An unconditioned rule may nest in a conditioned one, and the
        // same prefix may be used once per direction.
        assert!(
            two(
                "src = \"10.0.0.0/8\"\nprotocol = \"tcp\"",
                "src = \"10.1.0.0/16\""
            )
            .is_ok()
        );
        assert!(two("src = \"10.0.0.0/8\"", "dst = \"10.0.0.0/8\"").is_ok());
        let err = two("src = \"2001:db8::/32\"", "src = \"2001:db8::/32\"").unwrap_err();
        assert_eq!(err.line, 6);
        assert!(err.message.contains("already used by rule \"a\""), "{err}");
    }

    #[test]
    fn allow_list_interfaces_and_daemon() {
        let cfg = parse(
            "[ebpf]\ninterfaces = [\"a0\", \"b0\"]\nallow = [\"10.0.0.0/8\", \"::1\"]\nallow_max_entries = 5\n[daemon]\nsocket = \"/tmp/x.sock\"\nstate_file = \"/tmp/s.json\"\n",
        )
        .unwrap();
        assert_eq!(cfg.ebpf.interfaces, ["a0", "b0"]);
        assert_eq!(cfg.ebpf.allow.len(), 2);
        assert_eq!(cfg.daemon.socket, PathBuf::from("/tmp/x.sock"));
        let err = parse("[ebpf]\nallow = [\"10.0.0.0/8\",\n \"10.0.0.300\"]\n").unwrap_err();
        assert_eq!((err.line, err.field.as_str()), (3, "ebpf.allow[1]"));
        let err = parse("[ebpf]\nallow = [\"10.0.0.1\", \"10.0.0.1\"]\n").unwrap_err();
        assert!(err.message.contains("twice"), "{err}");
        let err = parse("[ebpf]\nallow_max_entries = 1\nallow = [\"10.0.0.1\", \"10.0.0.2\"]\n")
            .unwrap_err();
        assert!(err.message.contains("do not fit"), "{err}");
        let err = parse("[ebpf]\ninterface = \"a\"\ninterfaces = [\"b\"]\n").unwrap_err();
        assert!(err.message.contains("not both"), "{err}");
        let err = parse("[ebpf]\ninterfaces = [\"a\", \"a\"]\n").unwrap_err();
        assert_eq!(err.field, "ebpf.interfaces[1]");
        let err = parse("[daemon]\nsocket = \"relative.sock\"\n").unwrap_err();
        assert_eq!((err.line, err.field.as_str()), (2, "daemon.socket"));
    }

    #[test]
    fn missing_file_is_named() {
        let err = IronpostConfig::load(Path::new("/nonexistent/ironpost.toml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/ironpost.toml: (file): cannot read"),
            "{err}"
        );
    }
}
