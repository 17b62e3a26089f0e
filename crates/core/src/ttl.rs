//! Block lifetimes: how an operator writes one (`90s`, `10m`, `2h`, `7d`,
//! `1h30m`) and the longest one Ironpost keeps.
//!
//! The units are lowercase and mean one thing each: `s` seconds, `m`
//! minutes, `h` hours, `d` days, `w` weeks, `y` years of 365 days. There is
//! no month (an `M` is refused rather than read as months or minutes).

use std::time::Duration;

/// The longest block lifetime: ten years of 365 days. Longer TTLs are
/// refused wherever they come from (the command line, a request, the
/// configuration); a saved block that claims a later expiry is brought
/// back to this bound.
pub const MAX_TTL_SECS: u64 = 10 * 365 * 86_400;

/// The longest lifetime, as written in messages.
pub const MAX_TTL_TEXT: &str = "10y (3650d)";

/// A TTL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    /// Not a duration in the accepted units.
    #[error(
        "\"{text}\" is not a duration: {why} (write a number and a unit, e.g. 90s, 10m, 2h, 7d, \
         1h30m; units: s, m = minutes, h, d, w, y)"
    )]
    Syntax {
        /// What was written.
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// Shorter than one second.
    #[error("\"{0}\" is shorter than one second")]
    TooShort(String),
    /// Longer than [`MAX_TTL_SECS`].
    #[error("\"{text}\" is longer than the longest TTL, {MAX_TTL_TEXT}")]
    TooLong {
        /// What was written.
        text: String,
    },
}

/// Parses a TTL such as `90s`, `10m`, `2h`, `7d`, `1h30m` or a bare number
/// of seconds; at least one second, at most [`MAX_TTL_SECS`].
pub fn parse_ttl(text: &str) -> Result<Duration, TtlError> {
    let syntax = |why: String| TtlError::Syntax {
        text: text.to_owned(),
        why,
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(syntax("it is empty".into()));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return check(text, s.parse::<u128>().unwrap_or(u128::MAX));
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(syntax(format!("expected a number at \"{rest}\"")));
        }
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit())
            .map_or(tail.len(), |(i, _)| i);
        let (unit, tail) = tail.split_at(unit_len);
        let secs: u128 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "y" => 365 * 86_400,
            "" => return Err(syntax(format!("{number} has no unit"))),
            "M" => return Err(syntax("M is not a unit: write m for minutes".into())),
            other => return Err(syntax(format!("unknown unit \"{other}\""))),
        };
        let n = number.parse::<u128>().unwrap_or(u128::MAX);
        total = total.saturating_add(n.saturating_mul(secs));
        rest = tail;
    }
    check(text, total)
}

fn check(text: &str, secs: u128) -> Result<Duration, TtlError> {
    if secs == 0 {
        return Err(TtlError::TooShort(text.to_owned()));
    }
    if secs > u128::from(MAX_TTL_SECS) {
        return Err(TtlError::TooLong {
            text: text.to_owned(),
        });
    }
    Ok(Duration::from_secs(secs as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: &str) -> u64 {
        parse_ttl(s).unwrap().as_secs()
    }

    #[test]
    fn units_mean_one_thing_each() {
        assert_eq!(secs("90s"), 90);
        assert_eq!(secs("5m"), 300);
        assert_eq!(secs("2h"), 7_200);
        assert_eq!(secs("7d"), 604_800);
        assert_eq!(secs("1w"), 604_800);
        assert_eq!(secs("1h30m"), 5_400);
        assert_eq!(secs("600"), 600);
        assert_eq!(secs("10y"), MAX_TTL_SECS);
    }

    #[test]
    fn surprises_are_refused_with_the_reason() {
        let e = parse_ttl("5M").unwrap_err().to_string();
        assert!(e.contains("write m for minutes"), "{e}");
        let e = parse_ttl("5 minutes").unwrap_err().to_string();
        assert!(e.contains("unknown unit"), "{e}");
        let e = parse_ttl("1h30").unwrap_err().to_string();
        assert!(e.contains("30 has no unit"), "{e}");
        assert!(matches!(parse_ttl("0s"), Err(TtlError::TooShort(_))));
        assert!(matches!(parse_ttl(""), Err(TtlError::Syntax { .. })));
        assert!(matches!(parse_ttl("-5s"), Err(TtlError::Syntax { .. })));
    }

    #[test]
    fn huge_values_are_too_long_not_wrapped() {
        for s in [
            "600000000y",
            "11y",
            "18446744073709551615",
            "18446744073709551615s",
            "99999999999999999999999999999999999999999h",
        ] {
            let e = parse_ttl(s).unwrap_err();
            assert!(matches!(e, TtlError::TooLong { .. }), "{s}: {e}");
            assert!(e.to_string().contains("10y (3650d)"), "{e}");
        }
    }
}
