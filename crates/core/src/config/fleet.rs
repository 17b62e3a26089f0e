//! The `[fleet]` section: hosts sharing alerts and blocks through NATS
//! JetStream.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Source};

/// How the daemon proves who it is to the NATS servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FleetAuth {
    /// No credentials (a server without authorization).
    None,
    /// A token.
    Token(String),
    /// A user name and password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// An NKey seed (`SU…`), read from a file.
    NKey(String),
}

/// `[fleet]`: the NATS servers, who this host is, what it shares and what
/// it applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetConfig {
    /// Server URLs (`nats://host:port` or `tls://host:port`).
    pub servers: Vec<String>,
    /// Credentials.
    pub auth: FleetAuth,
    /// A CA certificate (PEM) the servers' TLS certificates are checked
    /// against; setting it requires TLS.
    pub tls_ca: Option<PathBuf>,
    /// The fleet's name: the streams and subjects carry it.
    pub name: String,
    /// This host's name in the fleet (default: the host name).
    pub host: String,
    /// Publish this host's alerts.
    pub share_alerts: bool,
    /// Publish this host's automatic blocks.
    pub share_auto_blocks: bool,
    /// Manual lists whose entries are published too.
    pub share_lists: Vec<String>,
    /// Apply the fleet's blocks (into the list `fleet`).
    pub apply: bool,
    /// Replicas of the streams when this host creates them (a cluster's
    /// servers hold that many copies).
    pub replicas: usize,
}

/// The list the fleet's blocks go into.
pub const FLEET_LIST: &str = "fleet";

/// At most this many stream replicas (JetStream's own limit).
pub const MAX_REPLICAS: i64 = 5;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleet {
    servers: Option<Spanned<Vec<String>>>,
    name: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    token_file: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    password_file: Option<Spanned<String>>,
    nkey_seed_file: Option<Spanned<String>>,
    tls_ca: Option<Spanned<String>>,
    share_alerts: Option<bool>,
    share_auto_blocks: Option<bool>,
    share_lists: Option<Spanned<Vec<String>>>,
    apply: Option<bool>,
    replicas: Option<Spanned<i64>>,
}

/// Whether `s` can be a fleet or host name: it becomes one token of a NATS
/// subject and part of a stream's and a consumer's name.
fn is_token(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// This machine's host name as a fleet host name: dots and other
/// characters a subject token cannot hold become `-`.
pub fn default_host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        name = "localhost".into();
    }
    name
}

impl Source<'_> {
    fn read_secret(&self, f: &Spanned<String>, field: &str) -> Result<String, ConfigError> {
        let text = std::fs::read_to_string(f.get_ref()).map_err(|e| {
            self.error(f.span(), field, format!("cannot read {}: {e}", f.get_ref()))
        })?;
        let text = text.trim().to_owned();
        if text.is_empty() {
            return Err(self.error(f.span(), field, format!("{} is empty", f.get_ref())));
        }
        Ok(text)
    }

    pub(super) fn fleet(
        &self,
        raw: RawFleet,
        section: std::ops::Range<usize>,
    ) -> Result<FleetConfig, ConfigError> {
        let servers = raw.servers.ok_or_else(|| {
            self.error(
                section.clone(),
                "fleet.servers",
                "missing: the NATS servers, e.g. [\"nats://10.0.0.5:4222\"]".into(),
            )
        })?;
        if servers.get_ref().is_empty() {
            return Err(self.error(
                servers.span(),
                "fleet.servers",
                "is empty: name at least one NATS server".into(),
            ));
        }
        let mut tls = false;
        for s in servers.get_ref() {
            let rest = if let Some(r) = s.strip_prefix("nats://") {
                r
            } else if let Some(r) = s.strip_prefix("tls://") {
                tls = true;
                r
            } else {
                return Err(self.error(
                    servers.span(),
                    "fleet.servers",
                    format!("{s:?} is not a nats:// or tls:// URL"),
                ));
            };
            if rest.is_empty() || rest.contains('@') || rest.contains('/') {
                return Err(self.error(
                    servers.span(),
                    "fleet.servers",
                    format!(
                        "{s:?}: give host and port only (credentials go in token, user and \
                         password, or nkey_seed_file)"
                    ),
                ));
            }
        }
        let name = raw.name.ok_or_else(|| {
            self.error(
                section.clone(),
                "fleet.name",
                "missing: the fleet's name, the same on every host (e.g. \"prod\")".into(),
            )
        })?;
        if !is_token(name.get_ref(), 32) {
            return Err(self.error(
                name.span(),
                "fleet.name",
                format!("{:?}: 1 to 32 letters, digits, '_' or '-'", name.get_ref()),
            ));
        }
        let host = match raw.host {
            Some(h) => {
                if !is_token(h.get_ref(), 64) {
                    return Err(self.error(
                        h.span(),
                        "fleet.host",
                        format!("{:?}: 1 to 64 letters, digits, '_' or '-'", h.get_ref()),
                    ));
                }
                h.into_inner()
            }
            None => default_host_name(),
        };
        let secrets = [
            raw.token.is_some() || raw.token_file.is_some(),
            raw.user.is_some(),
            raw.nkey_seed_file.is_some(),
        ];
        if secrets.iter().filter(|s| **s).count() > 1 {
            return Err(self.error(
                section,
                "fleet",
                "give one kind of credentials: token (or token_file), user and password, or \
                 nkey_seed_file"
                    .into(),
            ));
        }
        let auth = if let Some(t) = raw.token {
            if raw.token_file.is_some() {
                return Err(self.error(
                    t.span(),
                    "fleet.token",
                    "give token or token_file, not both".into(),
                ));
            }
            FleetAuth::Token(t.into_inner())
        } else if let Some(f) = raw.token_file {
            FleetAuth::Token(self.read_secret(&f, "fleet.token_file")?)
        } else if let Some(u) = raw.user {
            let password = match (raw.password, raw.password_file) {
                (Some(p), None) => p.into_inner(),
                (None, Some(f)) => self.read_secret(&f, "fleet.password_file")?,
                (Some(p), Some(_)) => {
                    return Err(self.error(
                        p.span(),
                        "fleet.password",
                        "give password or password_file, not both".into(),
                    ));
                }
                (None, None) => {
                    return Err(self.error(
                        u.span(),
                        "fleet.password",
                        "missing: a user needs a password (or password_file)".into(),
                    ));
                }
            };
            FleetAuth::UserPassword {
                user: u.into_inner(),
                password,
            }
        } else if let Some(f) = raw.nkey_seed_file {
            let seed = self.read_secret(&f, "fleet.nkey_seed_file")?;
            if !seed.starts_with("SU") {
                return Err(self.error(
                    f.span(),
                    "fleet.nkey_seed_file",
                    format!(
                        "{} does not hold a user NKey seed (one starting with SU)",
                        f.get_ref()
                    ),
                ));
            }
            FleetAuth::NKey(seed)
        } else {
            if let Some(p) = raw.password.or(raw.password_file) {
                return Err(self.error(
                    p.span(),
                    "fleet.password",
                    "a password needs a user".into(),
                ));
            }
            FleetAuth::None
        };
        let tls_ca = match raw.tls_ca {
            Some(ca) => {
                if !std::path::Path::new(ca.get_ref()).is_file() {
                    return Err(self.error(
                        ca.span(),
                        "fleet.tls_ca",
                        format!("{} is not a readable file", ca.get_ref()),
                    ));
                }
                if !tls {
                    return Err(self.error(
                        ca.span(),
                        "fleet.tls_ca",
                        "a CA is set but no server is a tls:// URL".into(),
                    ));
                }
                Some(PathBuf::from(ca.into_inner()))
            }
            None => None,
        };
        let share_lists = match raw.share_lists {
            Some(l) => {
                for name in l.get_ref() {
                    let reserved = [FLEET_LIST, "auto", "config"];
                    if reserved.contains(&name.as_str()) {
                        return Err(self.error(
                            l.span(),
                            "fleet.share_lists",
                            format!(
                                "{name:?} cannot be shared this way (automatic blocks: \
                                 share_auto_blocks; the fleet's own list is never published \
                                 again)"
                            ),
                        ));
                    }
                    let list_name = (1..=64).contains(&name.len())
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
                    if !list_name {
                        return Err(self.error(
                            l.span(),
                            "fleet.share_lists",
                            format!("{name:?} is not a list name"),
                        ));
                    }
                }
                l.into_inner()
            }
            None => Vec::new(),
        };
        let replicas = match raw.replicas {
            Some(r) => {
                if !(1..=MAX_REPLICAS).contains(r.get_ref()) {
                    return Err(self.error(
                        r.span(),
                        "fleet.replicas",
                        format!("{} is out of range: 1 to {MAX_REPLICAS}", r.get_ref()),
                    ));
                }
                *r.get_ref() as usize
            }
            None => 1,
        };
        Ok(FleetConfig {
            servers: servers.into_inner(),
            auth,
            tls_ca,
            name: name.into_inner(),
            host,
            share_alerts: raw.share_alerts.unwrap_or(true),
            share_auto_blocks: raw.share_auto_blocks.unwrap_or(true),
            share_lists,
            apply: raw.apply.unwrap_or(true),
            replicas,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, IronpostConfig};

    use super::*;

    fn parse(text: &str) -> Result<IronpostConfig, ConfigError> {
        IronpostConfig::parse(text, "test.toml")
    }

    fn err(text: &str) -> ConfigError {
        parse(text).unwrap_err()
    }

    #[test]
    fn a_minimal_fleet_has_sane_defaults() {
        let c = parse("[fleet]\nservers = [\"nats://10.0.0.5:4222\"]\nname = \"prod\"\n")
            .unwrap()
            .fleet
            .unwrap();
        assert_eq!(c.auth, FleetAuth::None);
        assert!(c.share_alerts && c.share_auto_blocks && c.apply);
        assert!(c.share_lists.is_empty());
        assert_eq!(c.replicas, 1);
        assert!(!c.host.is_empty() && !c.host.contains('.'));
    }

    #[test]
    fn credentials_are_one_kind_and_complete() {
        let base = "[fleet]\nservers = [\"nats://h:4222\"]\nname = \"p\"\n";
        let c = parse(&format!("{base}user = \"u\"\npassword = \"pw\"\n"))
            .unwrap()
            .fleet
            .unwrap();
        assert_eq!(
            c.auth,
            FleetAuth::UserPassword {
                user: "u".into(),
                password: "pw".into()
            }
        );
        let e = err(&format!("{base}user = \"u\"\n"));
        assert_eq!(e.field, "fleet.password");
        let e = err(&format!(
            "{base}token = \"t\"\nuser = \"u\"\npassword = \"p\"\n"
        ));
        assert!(e.message.contains("one kind of credentials"), "{e}");
        let e = err(&format!("{base}token_file = \"/nonexistent/token\"\n"));
        assert_eq!(e.field, "fleet.token_file");
        assert!(e.message.contains("/nonexistent/token"), "{e}");
    }

    #[test]
    fn bad_values_are_named_with_their_place() {
        let e = err("[fleet]\nname = \"p\"\n");
        assert_eq!(e.field, "fleet.servers");
        let e = err("[fleet]\nservers = [\"http://h:4222\"]\nname = \"p\"\n");
        assert_eq!((e.field.as_str(), e.line), ("fleet.servers", 2));
        let e = err("[fleet]\nservers = [\"nats://u:p@h:4222\"]\nname = \"p\"\n");
        assert!(e.message.contains("credentials go in"), "{e}");
        let e = err("[fleet]\nservers = [\"nats://h:4222\"]\nname = \"a.b\"\n");
        assert_eq!((e.field.as_str(), e.line), ("fleet.name", 3));
        let e = err("[fleet]\nservers = [\"nats://h:4222\"]\nname = \"p\"\nhost = \"web 1\"\n");
        assert_eq!(e.field, "fleet.host");
        let e = err("[fleet]\nservers = [\"nats://h:4222\"]\nname = \"p\"\nreplicas = 7\n");
        assert_eq!(e.field, "fleet.replicas");
        let e = err(
            "[fleet]\nservers = [\"nats://h:4222\"]\nname = \"p\"\ntls_ca = \"/etc/hostname\"\n",
        );
        assert!(e.message.contains("no server is a tls:// URL"), "{e}");
    }

    #[test]
    fn the_fleets_own_list_is_never_shared_again() {
        let e = err(
            "[fleet]\nservers = [\"nats://h:4222\"]\nname = \"p\"\nshare_lists = [\"fleet\"]\n",
        );
        assert_eq!(e.field, "fleet.share_lists");
        assert!(e.message.contains("never published again"), "{e}");
    }
}
