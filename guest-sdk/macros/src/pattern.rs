//! Reading the named groups of a route's regular expression.
//!
//! The host compiles patterns with Rust's `regex` syntax; this module only
//! needs to find the groups, so it understands escapes, character classes
//! (nested ones and POSIX ones too) and the two spellings of a named group,
//! `(?P<name>...)` and `(?<name>...)`. Anything else is left to the host.

/// The names of the named groups of `pattern`, in order of appearance, or
/// why the groups cannot be read (an unclosed or empty group name, or a
/// name used twice).
pub fn capture_names(pattern: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut names: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '[' => i = skip_class(&chars, i),
            '(' => match group_name_start(&chars, i) {
                Some(start) => {
                    let Some(len) = chars[start..].iter().position(|&c| c == '>') else {
                        let rest: String = chars[i..].iter().collect();
                        return Err(format!("the group name in `{rest}` is not closed with `>`"));
                    };
                    let name: String = chars[start..start + len].iter().collect();
                    if name.is_empty() {
                        return Err("a named group has an empty name".to_owned());
                    }
                    if names.contains(&name) {
                        return Err(format!("the group name `{name}` is used twice"));
                    }
                    names.push(name);
                    i = start + len + 1;
                }
                None => i += 1,
            },
            _ => i += 1,
        }
    }
    Ok(names)
}

/// If a named group opens at `open` (a `(`), the index of its name's first
/// character. Look-behind assertions, `(?<=` and `(?<!`, are not groups.
fn group_name_start(chars: &[char], open: usize) -> Option<usize> {
    let rest = &chars[open + 1..];
    if rest.starts_with(&['?', 'P', '<']) {
        Some(open + 4)
    } else if rest.starts_with(&['?', '<']) && !matches!(rest.get(2), Some('=' | '!')) {
        Some(open + 3)
    } else {
        None
    }
}

/// The index just after the character class that opens at `open` (a `[`),
/// or the end of the pattern if the class is not closed.
fn skip_class(chars: &[char], open: usize) -> usize {
    let mut depth = 0;
    let mut i = open;
    while i < chars.len() {
        match chars[i] {
            '[' if chars.get(i + 1) == Some(&':') && depth > 0 => {
                // A POSIX class such as `[:alpha:]` inside a class.
                match find(chars, i + 2, &[':', ']']) {
                    Some(end) => i = end + 2,
                    None => i += 1,
                }
            }
            '[' => {
                depth += 1;
                i += 1;
                // `^` negates; a `]` right at the start is a literal.
                if chars.get(i) == Some(&'^') {
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    i += 1;
                }
            }
            ']' => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return i;
                }
            }
            '\\' => i += 2,
            _ => i += 1,
        }
    }
    chars.len()
}

fn find(chars: &[char], from: usize, needle: &[char]) -> Option<usize> {
    (from..chars.len()).find(|&i| chars[i..].starts_with(needle))
}

#[cfg(test)]
mod tests {
    use super::capture_names;

    fn names(pattern: &str) -> Vec<String> {
        capture_names(pattern).unwrap_or_else(|error| panic!("{pattern:?}: {error}"))
    }

    #[test]
    fn finds_python_style_groups_in_order() {
        assert_eq!(
            names(r"store (?P<text>.*) under (?P<key>\w+)"),
            ["text", "key"]
        );
        assert_eq!(names(r"retrieve (?P<key>\w+)"), ["key"]);
    }

    #[test]
    fn finds_groups_without_the_p() {
        assert_eq!(names(r"(?<word>\w+) and (?P<other>\d)"), ["word", "other"]);
    }

    #[test]
    fn patterns_without_groups_have_no_names() {
        assert!(names("size").is_empty());
        assert!(names(r"^(a|b)+(?:c)(?i:d)$").is_empty());
        assert!(names("").is_empty());
    }

    #[test]
    fn nested_and_optional_groups_are_found() {
        assert_eq!(
            names(r"^(?P<shared>shared )?set (?P<key>\S+) = (?P<value>.*)$"),
            ["shared", "key", "value"]
        );
        assert_eq!(
            names(r"perhaps(?: (?P<word>(?P<first>\w)\w*))?"),
            ["word", "first"]
        );
    }

    #[test]
    fn escaped_parentheses_open_no_group() {
        assert!(names(r"\(?P<not>x\)").is_empty());
        assert_eq!(names(r"\\(?P<yes>x)"), ["yes"]);
    }

    #[test]
    fn groups_inside_character_classes_are_literal_text() {
        assert!(names(r"[(?P<x>)]").is_empty());
        assert!(names(r"[]a(?P<x>b)]").is_empty());
        assert_eq!(names(r"[^]](?P<x>b)"), ["x"]);
        assert_eq!(names(r"[[:alpha:]](?P<x>.)"), ["x"]);
        assert_eq!(names(r"[a[b]](?P<x>.)"), ["x"]);
        assert_eq!(names(r"[\]](?P<x>.)"), ["x"]);
        assert!(names(r"[(?P<x>.)").is_empty());
    }

    #[test]
    fn look_behind_is_not_a_group() {
        assert_eq!(names(r"(?<=a)(?<!b)(?P<x>c)"), ["x"]);
    }

    #[test]
    fn non_ascii_text_is_fine() {
        assert_eq!(names(r"café (?P<crème>.+) ☕"), ["crème"]);
    }

    #[test]
    fn unclosed_names_are_errors() {
        let error = capture_names(r"a (?P<key\w+").unwrap_err();
        assert!(error.contains("not closed"), "{error}");
    }

    #[test]
    fn empty_names_are_errors() {
        assert!(
            capture_names(r"(?P<>x)")
                .unwrap_err()
                .contains("empty name")
        );
    }

    #[test]
    fn duplicate_names_are_errors() {
        let error = capture_names(r"(?P<key>a)|(?P<key>b)").unwrap_err();
        assert_eq!(error, "the group name `key` is used twice");
    }
}
