//! Text from clients, files and the network, made safe for a terminal.

use std::borrow::Cow;

/// `s` with every control character (escape sequences, carriage returns,
/// newlines, tabs, DEL, C1 controls) written as its Rust escape (`\u{1b}`,
/// `\r`, ...), so that a reason or an id cannot move the cursor, recolour
/// or rewrite what an operator sees. Unchanged when there is none.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(printable("plain text, ünïcode"), Cow::Borrowed(_)));
        assert_eq!(printable("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(
            printable("x\r\ny\t\u{7f}\u{9b}"),
            "x\\r\\ny\\t\\u{7f}\\u{9b}"
        );
    }
}
