//! Where and how the binary logs: text or JSON on stderr, at the level of
//! `--log-level` or `IRONPOST_LOG`, without timestamps or colours when
//! stderr is systemd's journal (which stamps every line itself).

use std::os::fd::AsRawFd as _;

use tracing_subscriber::EnvFilter;

/// The log line format (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (tracing-subscriber's JSON format).
    Json,
}

/// A log level or filter that does not parse.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid log level {given:?} (from {origin}): use error, warn, info, debug or trace, or a filter such as \"info,ironpost_daemon=debug\""
)]
pub struct BadLevel {
    given: String,
    origin: &'static str,
    #[source]
    source: tracing_subscriber::filter::ParseError,
}

/// Installs the global subscriber. `level` (from `--log-level`) wins over
/// `IRONPOST_LOG`; the default is `info`, with the NATS client's own
/// connection chatter (every reconnect attempt) at `warn`: the fleet logs
/// what an operator needs once.
pub fn init(format: LogFormat, level: Option<&str>) -> Result<(), BadLevel> {
    let (given, origin) = match (level, std::env::var("IRONPOST_LOG")) {
        (Some(l), _) => (l.to_owned(), "--log-level"),
        (None, Ok(l)) if !l.trim().is_empty() => (l, "IRONPOST_LOG"),
        _ => ("info,async_nats=warn".to_owned(), "the default"),
    };
    let filter = EnvFilter::builder()
        .parse(&given)
        .map_err(|source| BadLevel {
            given: given.clone(),
            origin,
            source,
        })?;
    let journal = stderr_is_journal();
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false);
    match (format, journal) {
        (LogFormat::Json, _) => builder.json().init(),
        (LogFormat::Text, true) => builder.without_time().with_ansi(false).init(),
        (LogFormat::Text, false) => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    Ok(())
}

/// True when stderr is the stream systemd connected to the journal:
/// `JOURNAL_STREAM` holds its `device:inode` (systemd.exec(5)).
fn stderr_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    let fd = std::io::stderr().as_raw_fd();
    // SAFETY: `st` is a valid buffer for one `struct stat`; fstat writes it
    // only when it returns 0, and it is read only then.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    st.st_dev == dev && st.st_ino == ino
}
