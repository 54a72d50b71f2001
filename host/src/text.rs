//! Plugin-controlled text on its way to people: log lines, error messages,
//! console output. Everything here keeps such text from passing for
//! something the host wrote.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` is escaped by [`escape`]: control characters (line breaks,
/// carriage returns, escape sequences, tabs; C0, DEL and C1) and the
/// Unicode formatting characters that reorder or hide text (bidirectional
/// overrides and isolates, zero-width marks), which could make one line
/// read as another.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}'   // zero-width space, joiners, LRM, RLM
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202a}'..='\u{202e}' // bidirectional embeddings and overrides
            | '\u{2066}'..='\u{2069}' // bidirectional isolates
            | '\u{feff}')
}

/// `text` with every character [`needs_escape`] names written as an
/// escape: `\n`, `\r`, `\t`, or `\u{XXXX}`. Other text, including a
/// backslash, is kept as it is, so a plugin can write something that
/// looks like an escape but never a real line break.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` cut to at most `max` bytes at a character boundary. A cut text
/// ends with a marker saying how long the whole was, so that a reader knows
/// something is missing.
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… [cut: {} bytes in all]",
        &text[..end],
        text.len()
    ))
}

/// [`truncate`] then [`escape`]: plugin text made safe to log on one line.
pub fn for_log(text: &str, max: usize) -> String {
    escape(&truncate(text, max)).into_owned()
}

/// `text` on one line: every run of whitespace, line breaks included,
/// becomes one space. For messages of libraries that spread a value over
/// lines (a byte array printed with `{:#?}`), before they reach a log line
/// or a one-line error.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_and_controls_are_escaped() {
        assert_eq!(escape("plain text, é ✓"), "plain text, é ✓");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\nb\r\tc\u{1b}[2J\u{202e}d\u{7f}\u{85}"),
            "a\\nb\\r\\tc\\u{001b}[2J\\u{202e}d\\u{007f}\\u{0085}"
        );
        assert!(!escape("x\ny\u{2028}z").contains(['\n', '\u{2028}']));
    }

    #[test]
    fn messages_spread_over_lines_are_put_on_one() {
        assert_eq!(
            one_line("bad magic number - expected=[\n    0x0,\n    0x61,\n]"),
            "bad magic number - expected=[ 0x0, 0x61, ]"
        );
    }

    #[test]
    fn long_text_is_cut_with_a_marker() {
        assert_eq!(truncate("short", 5), "short");
        assert_eq!(truncate("abcdef", 3), "abc… [cut: 6 bytes in all]");
        // Never inside a character.
        assert_eq!(truncate("ééé", 3), "é… [cut: 6 bytes in all]");
        let cut = for_log(&"x\n".repeat(1000), 10);
        assert!(cut.starts_with("x\\nx\\nx\\nx\\nx\\n…"), "{cut}");
        assert!(!cut.contains('\n'));
    }
}
