//! The configuration file (`ironpost.toml`): parsing and validation.
//!
//! Every error names the file, the line and the field, and says what is
//! wrong with the value. Unknown keys are errors, not silently ignored.

use std::{fmt, net::Ipv4Addr, path::Path, str::FromStr};

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// Smallest ring buffer the kernel accepts: one page.
pub const MIN_RING_BUFFER_SIZE: u32 = 4096;
/// Largest ring buffer Ironpost accepts (1 GiB).
pub const MAX_RING_BUFFER_SIZE: u32 = 1 << 30;
/// Largest BLOCKLIST capacity Ironpost accepts.
pub const MAX_BLOCKLIST_ENTRIES: u32 = 16 << 20;
/// Largest per-CPU event budget (events per second per CPU).
pub const MAX_EVENT_BUDGET: u32 = 1_000_000;

/// A configuration error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {field}: {message}")]
pub struct ConfigError {
    /// The file (or a description of the source, such as `<string>`).
    pub file: String,
    /// 1-based line of the offending key or value; 0 when unknown.
    pub line: usize,
    /// Dotted path of the field, e.g. `ebpf.rules[2].src_ip`.
    pub field: String,
    /// What is wrong.
    pub message: String,
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
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
}

/// The `[ebpf]` section: the XDP datapath.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EbpfConfig {
    /// Whether the datapath runs at all.
    pub enabled: bool,
    /// Interface to attach to (the command line may override it).
    pub interface: Option<String>,
    /// Attach mode.
    pub xdp_mode: XdpMode,
    /// EVENTS ring buffer size in bytes: a power of two, at least one page.
    pub ring_buffer_size: u32,
    /// BLOCKLIST capacity.
    pub blocklist_max_entries: u32,
    /// Events the datapath may report per second per CPU; the rest are
    /// counted as lost.
    pub event_budget_per_cpu: u32,
    /// Rules, in file order.
    pub rules: Vec<RuleConfig>,
}

impl Default for EbpfConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interface: None,
            xdp_mode: XdpMode::Auto,
            ring_buffer_size: 256 * 1024,
            blocklist_max_entries: 10_000,
            event_budget_per_cpu: 2_000,
            rules: Vec::new(),
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
    /// Source address the rule matches.
    pub src_ip: Ipv4Addr,
    /// What to do with matching packets.
    pub action: RuleAction,
}

// The file as written, with the position of every value for error messages.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    ebpf: Option<RawEbpf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEbpf {
    enabled: Option<bool>,
    interface: Option<Spanned<String>>,
    xdp_mode: Option<Spanned<String>>,
    ring_buffer_size: Option<Spanned<i64>>,
    blocklist_max_entries: Option<Spanned<i64>>,
    event_budget_per_cpu: Option<Spanned<i64>>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Option<Spanned<String>>,
    description: Option<String>,
    src_ip: Option<Spanned<String>>,
    action: Option<Spanned<String>>,
}

impl IronpostConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
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
        Ok(Self { ebpf })
    }
}

struct Source<'a> {
    text: &'a str,
    file: &'a str,
}

impl Source<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn error(&self, span: std::ops::Range<usize>, field: &str, message: String) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            line: self.line_of(span.start),
            field: field.to_owned(),
            message,
        }
    }

    /// A syntax or type error from the TOML parser. The parser's message
    /// names unknown keys; for other errors the key is read off the line.
    fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let (line, field) = match e.span() {
            Some(span) => {
                let line = self.line_of(span.start);
                let text = self.text.lines().nth(line - 1).unwrap_or("");
                let field = text
                    .split_once('=')
                    .map(|(k, _)| k.trim().to_owned())
                    .filter(|k| !k.is_empty() && !k.starts_with('['))
                    .unwrap_or_else(|| text.trim().to_owned());
                (line, field)
            }
            None => (0, String::new()),
        };
        ConfigError {
            file: self.file.to_owned(),
            line,
            field,
            message: e.message().trim().to_owned(),
        }
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
        if let Some(iface) = raw.interface {
            let name = iface.get_ref();
            if let Err(msg) = check_interface_name(name) {
                return Err(self.error(iface.span(), "ebpf.interface", msg));
            }
            cfg.interface = Some(name.clone());
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
        if let Some(n) = raw.event_budget_per_cpu {
            cfg.event_budget_per_cpu =
                self.range(&n, "ebpf.event_budget_per_cpu", 0, MAX_EVENT_BUDGET)?;
        }
        for (i, rule) in raw.rules.into_iter().enumerate() {
            let span = rule.span();
            let rule = self.rule(i, span, rule.into_inner(), &cfg.rules)?;
            cfg.rules.push(rule);
        }
        if cfg.rules.len() > cfg.blocklist_max_entries as usize {
            return Err(ConfigError {
                file: self.file.to_owned(),
                line: 0,
                field: "ebpf.rules".into(),
                message: format!(
                    "{} rules do not fit in blocklist_max_entries = {}",
                    cfg.rules.len(),
                    cfg.blocklist_max_entries
                ),
            });
        }
        Ok(cfg)
    }

    fn rule(
        &self,
        i: usize,
        span: std::ops::Range<usize>,
        raw: RawRule,
        earlier: &[RuleConfig],
    ) -> Result<RuleConfig, ConfigError> {
        let field = |name: &str| format!("ebpf.rules[{i}].{name}");
        let id = raw
            .id
            .ok_or_else(|| self.error(span.clone(), &field("id"), "missing".into()))?;
        if id.get_ref().trim().is_empty() {
            return Err(self.error(id.span(), &field("id"), "must not be empty".into()));
        }
        if earlier.iter().any(|r| &r.id == id.get_ref()) {
            return Err(self.error(
                id.span(),
                &field("id"),
                format!("duplicate rule id \"{}\"", id.get_ref()),
            ));
        }
        let src = raw
            .src_ip
            .ok_or_else(|| self.error(span.clone(), &field("src_ip"), "missing".into()))?;
        let src_ip: Ipv4Addr = src.get_ref().trim().parse().map_err(|_| {
            self.error(
                src.span(),
                &field("src_ip"),
                format!("\"{}\" is not an IPv4 address", src.get_ref()),
            )
        })?;
        if let Some(other) = earlier.iter().find(|r| r.src_ip == src_ip) {
            return Err(self.error(
                src.span(),
                &field("src_ip"),
                format!("{src_ip} is already used by rule \"{}\"", other.id),
            ));
        }
        let action = match raw.action {
            Some(a) => a
                .get_ref()
                .parse()
                .map_err(|m| self.error(a.span(), &field("action"), m))?,
            None => RuleAction::Drop,
        };
        Ok(RuleConfig {
            id: id.into_inner(),
            description: raw.description.unwrap_or_default(),
            src_ip,
            action,
        })
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
        assert_eq!(e.interface.as_deref(), Some("eth0"));
        assert_eq!(e.xdp_mode, XdpMode::Skb);
        assert_eq!(e.ring_buffer_size, 1 << 20);
        assert_eq!(e.blocklist_max_entries, 50_000);
        assert_eq!(e.event_budget_per_cpu, 100);
        assert_eq!(e.rules.len(), 2);
        assert_eq!(e.rules[0].src_ip, Ipv4Addr::new(192, 0, 2, 7));
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
        let err =
            parse("[[ebpf.rules]]\nid = \"a\"\nsrc_ip = \"10.0.0.1\"\nsrc = \"x\"\n").unwrap_err();
        assert_eq!(err.line, 4);
        assert!(err.message.contains("unknown field `src`"), "{err}");
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
            "test.toml:7: ebpf.rules[1].src_ip: \"10.0.0.300\" is not an IPv4 address"
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
        assert_eq!(err.field, "ebpf.rules[0].src_ip");
        assert_eq!(err.message, "missing");
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
    fn syntax_error_has_a_line() {
        let err = parse("[ebpf]\nenabled = \n").unwrap_err();
        assert_eq!(err.line, 2);
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
    }

    #[test]
    fn missing_file_is_named() {
        let err = IronpostConfig::load(Path::new("/nonexistent/ironpost.toml")).unwrap_err();
        assert!(
            err.to_string().starts_with("/nonexistent/ironpost.toml:0:"),
            "{err}"
        );
    }
}
