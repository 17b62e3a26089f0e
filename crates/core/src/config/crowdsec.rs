//! The `[crowdsec]` section: the daemon as a CrowdSec remediation
//! component (a "bouncer") following the Local API's decision stream.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Source};

/// `[crowdsec]`: where the Local API is and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrowdsecConfig {
    /// Host and port of the Local API (`http://host:port` in the file).
    pub lapi_host: String,
    /// Its port.
    pub lapi_port: u16,
    /// The bouncer API key (`cscli bouncers add NAME`).
    pub api_key: String,
    /// How often the decision stream is read.
    pub poll_interval: Duration,
}

/// Shortest poll interval accepted.
pub const MIN_POLL_SECS: i64 = 1;
/// Longest poll interval accepted.
pub const MAX_POLL_SECS: i64 = 3600;
/// Default poll interval (CrowdSec's bouncers use 10 s).
pub const DEFAULT_POLL_SECS: i64 = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCrowdsec {
    lapi_url: Option<Spanned<String>>,
    api_key: Option<Spanned<String>>,
    api_key_file: Option<Spanned<String>>,
    poll_interval_secs: Option<Spanned<i64>>,
}

impl Source<'_> {
    pub(super) fn crowdsec(
        &self,
        raw: RawCrowdsec,
        section: std::ops::Range<usize>,
    ) -> Result<CrowdsecConfig, ConfigError> {
        let url = raw.lapi_url.ok_or_else(|| {
            self.error(
                section.clone(),
                "crowdsec.lapi_url",
                "missing: the Local API's address, e.g. \"http://127.0.0.1:8080\"".into(),
            )
        })?;
        let (lapi_host, lapi_port) =
            parse_url(url.get_ref()).map_err(|m| self.error(url.span(), "crowdsec.lapi_url", m))?;
        let api_key = match (raw.api_key, raw.api_key_file) {
            (Some(_), Some(f)) => {
                return Err(self.error(
                    f.span(),
                    "crowdsec.api_key_file",
                    "give api_key or api_key_file, not both".into(),
                ));
            }
            (Some(k), None) => k.get_ref().trim().to_owned(),
            (None, Some(f)) => std::fs::read_to_string(f.get_ref())
                .map_err(|e| {
                    self.error(
                        f.span(),
                        "crowdsec.api_key_file",
                        format!("cannot read {}: {e}", f.get_ref()),
                    )
                })?
                .trim()
                .to_owned(),
            (None, None) => {
                return Err(self.error(
                    section,
                    "crowdsec.api_key",
                    "missing: the key `cscli bouncers add ironpost` prints (or api_key_file)"
                        .into(),
                ));
            }
        };
        if api_key.is_empty() || !api_key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(self.error(
                section,
                "crowdsec.api_key",
                "must be the printable key `cscli bouncers add` prints".into(),
            ));
        }
        let poll = match &raw.poll_interval_secs {
            Some(v) => {
                let n = *v.get_ref();
                if !(MIN_POLL_SECS..=MAX_POLL_SECS).contains(&n) {
                    return Err(self.error(
                        v.span(),
                        "crowdsec.poll_interval_secs",
                        format!(
                            "{n} is out of range: must be between {MIN_POLL_SECS} and \
                             {MAX_POLL_SECS} seconds"
                        ),
                    ));
                }
                n
            }
            None => DEFAULT_POLL_SECS,
        };
        Ok(CrowdsecConfig {
            lapi_host,
            lapi_port,
            api_key,
            poll_interval: Duration::from_secs(poll as u64),
        })
    }
}

/// `http://host[:port][/]` into host and port (80 by default).
fn parse_url(url: &str) -> Result<(String, u16), String> {
    let rest = match url.strip_prefix("http://") {
        Some(r) => r,
        None if url.starts_with("https://") => {
            return Err(format!(
                "{url:?}: https is not supported yet; reach the Local API over http on \
                 loopback or a private network"
            ));
        }
        None => return Err(format!("{url:?} is not an http:// URL")),
    };
    let hostport = rest.strip_suffix('/').unwrap_or(rest);
    if hostport.is_empty() || hostport.contains('/') || hostport.contains('@') {
        return Err(format!(
            "{url:?}: give only the scheme, host and port, e.g. http://127.0.0.1:8080"
        ));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{url:?}: an IPv6 host needs its closing ]"))?;
        (
            h,
            after
                .strip_prefix(':')
                .unwrap_or(if after.is_empty() { "80" } else { after }),
        )
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, p),
            None => (hostport, "80"),
        }
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| format!("{url:?}: the port {port:?} is not a number from 1 to 65535"))?;
    if host.is_empty() {
        return Err(format!("{url:?}: no host"));
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_to_host_and_port() {
        assert_eq!(
            parse_url("http://127.0.0.1:8080/"),
            Ok(("127.0.0.1".into(), 8080))
        );
        assert_eq!(parse_url("http://lapi"), Ok(("lapi".into(), 80)));
        assert_eq!(parse_url("http://[::1]:81"), Ok(("::1".into(), 81)));
        assert!(parse_url("https://x:1").unwrap_err().contains("https"));
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("http://x:0").is_err());
        assert!(parse_url("http://x:1/v1").is_err());
    }
}
