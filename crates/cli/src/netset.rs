//! Block-list files: one address or prefix per line, `#` or `;` starts a
//! comment (FireHOL netset and Spamhaus DROP files read as they are).

use std::collections::HashSet;

use ironpost_core::Prefix;

/// A line that is not an address or prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// The line as written (trimmed, cut to 80 characters).
    pub text: String,
    /// What is wrong.
    pub message: String,
}

/// What a file holds.
#[derive(Debug, Default)]
pub struct Netset {
    /// Prefixes in file order, without repeats.
    pub prefixes: Vec<Prefix>,
    /// Lines that repeat an earlier prefix.
    pub duplicates: usize,
    /// Lines that could not be read.
    pub bad: Vec<BadLine>,
}

/// Reads a netset from text.
pub fn parse(text: &str) -> Netset {
    let mut out = Netset::default();
    let mut seen = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let content = raw.split(['#', ';']).next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let mut words = content.split_whitespace();
        let first = words.next().unwrap_or("");
        let bad = |message: String| BadLine {
            line: i + 1,
            text: raw.trim().chars().take(80).collect(),
            message,
        };
        if let Some(extra) = words.next() {
            out.bad.push(bad(format!(
                "unexpected \"{extra}\" after the address (one address or prefix per line)"
            )));
            continue;
        }
        match first.parse::<Prefix>() {
            Ok(p) => {
                if seen.insert(p) {
                    out.prefixes.push(p);
                } else {
                    out.duplicates += 1;
                }
            }
            Err(m) => out.bad.push(bad(m)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firehol_and_spamhaus_styles() {
        let text = "\
# FireHOL-style header
#
1.2.3.0/24
5.6.7.8
2001:db8::/32   # trailing comment
; Spamhaus DROP List
10.16.0.0/14 ; SBL256894

5.6.7.8
";
        let n = parse(text);
        assert!(n.bad.is_empty(), "{:?}", n.bad);
        let got: Vec<String> = n.prefixes.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            ["1.2.3.0/24", "5.6.7.8", "2001:db8::/32", "10.16.0.0/14"]
        );
        assert_eq!(n.duplicates, 1);
    }

    #[test]
    fn bad_lines_have_numbers_and_reasons() {
        let n = parse("1.2.3.4\nnot-an-ip\n10.1.2.3/8\n1.2.3.5 1.2.3.6\n\n300.0.0.1\n");
        let lines: Vec<usize> = n.bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [2, 3, 4, 6]);
        assert!(
            n.bad[0].message.contains("not an IP address"),
            "{:?}",
            n.bad[0]
        );
        assert!(n.bad[1].message.contains("host bits"), "{:?}", n.bad[1]);
        assert!(n.bad[2].message.contains("one address or prefix per line"));
        assert_eq!(n.bad[0].text, "not-an-ip");
        assert_eq!(n.prefixes.len(), 1);
    }
}
