//! Matching messages to plugin routes, with Slack Machine's semantics.
//!
//! - A `listen-to` route sees every message; a `respond-to` route sees only
//!   messages addressed to the bot. Both are matched against the text with
//!   the bot mention removed (the adapter removes it).
//! - A pattern matches if it is found anywhere in the text (Python's
//!   `re.search`): anchor it with `^` and `$` to match whole messages.
//! - Every matching route runs, not only the first: `listen-to` routes in
//!   plugin order, then `respond-to` routes in plugin order, each plugin's
//!   routes in the order it declared them.
//! - Routes are case-insensitive unless the plugin declares otherwise
//!   (Slack Machine's default flag is `re.IGNORECASE`).
//! - Named groups become the handler's arguments; a group that did not take
//!   part in the match is passed as `none` (Python's `None`).

use regex::{Regex, RegexBuilder};

use crate::runtime::bindings::warden::plugin::types::Capture;
use crate::runtime::bindings::{Route, RouteKind};

/// Most routes one plugin may declare.
pub const MAX_ROUTES: usize = 256;
/// Longest pattern, in bytes.
pub const MAX_PATTERN_BYTES: usize = 4096;
/// Most memory a compiled pattern may take: patterns come from plugins, so
/// a pathological one must not exhaust the host.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A message as an adapter received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The text, with any bot mention removed.
    pub text: String,
    /// Who sent it.
    pub user: String,
    /// Where it was sent.
    pub channel: String,
    /// Whether it was addressed to the bot.
    pub addressed: bool,
}

impl Incoming {
    /// A message addressed to the bot, as every console line is.
    pub fn addressed(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            user: "console".into(),
            channel: "console".into(),
            addressed: true,
        }
    }

    /// A message the bot overhears.
    pub fn overheard(text: impl Into<String>) -> Self {
        Self {
            addressed: false,
            ..Self::addressed(text)
        }
    }
}

/// Why a plugin's route was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// More routes than [`MAX_ROUTES`].
    #[error("declares {0} routes; at most {MAX_ROUTES} are allowed")]
    TooMany(usize),
    /// The pattern does not compile.
    #[error("route {index} ({handler}) has an invalid pattern {pattern:?}: {message}")]
    BadPattern {
        /// The route's position in the manifest.
        index: usize,
        /// The handler's name.
        handler: String,
        /// The pattern, cut to 200 bytes.
        pattern: String,
        /// Why it does not compile.
        message: String,
    },
}

/// A compiled route of one plugin.
#[derive(Debug, Clone)]
pub struct CompiledRoute {
    /// Index in the plugin's manifest, passed back to its `handle`.
    pub index: u32,
    /// Which messages it sees.
    pub kind: RouteKind,
    /// The handler's name.
    pub handler: String,
    regex: Regex,
}

impl CompiledRoute {
    /// The pattern as declared.
    pub fn pattern(&self) -> &str {
        self.regex.as_str()
    }

    /// The captures if the route matches `msg`.
    pub fn matches(&self, msg: &Incoming) -> Option<Vec<Capture>> {
        if self.kind == RouteKind::RespondTo && !msg.addressed {
            return None;
        }
        let caps = self.regex.captures(&msg.text)?;
        Some(
            self.regex
                .capture_names()
                .enumerate()
                .filter_map(|(i, name)| {
                    name.map(|name| Capture {
                        name: name.to_owned(),
                        value: caps.get(i).map(|m| m.as_str().to_owned()),
                    })
                })
                .collect(),
        )
    }
}

fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Compiles a plugin's declared routes.
pub fn compile(routes: &[Route]) -> Result<Vec<CompiledRoute>, RouteError> {
    if routes.len() > MAX_ROUTES {
        return Err(RouteError::TooMany(routes.len()));
    }
    routes
        .iter()
        .enumerate()
        .map(|(index, route)| {
            let bad = |message: String| RouteError::BadPattern {
                index,
                handler: cut(&route.handler, 100),
                pattern: cut(&route.pattern, 200),
                message,
            };
            if route.pattern.len() > MAX_PATTERN_BYTES {
                return Err(bad(format!("longer than {MAX_PATTERN_BYTES} bytes")));
            }
            let regex = RegexBuilder::new(&route.pattern)
                .case_insensitive(route.ignore_case)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| bad(e.to_string()))?;
            Ok(CompiledRoute {
                index: u32::try_from(index).expect("bounded by MAX_ROUTES"),
                kind: route.kind,
                handler: cut(&route.handler, 100),
                regex,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(kind: RouteKind, pattern: &str) -> Route {
        Route {
            kind,
            pattern: pattern.into(),
            ignore_case: true,
            handler: "h".into(),
        }
    }

    fn one(kind: RouteKind, pattern: &str) -> CompiledRoute {
        compile(&[route(kind, pattern)]).unwrap().remove(0)
    }

    fn args(caps: Vec<Capture>) -> Vec<(String, Option<String>)> {
        caps.into_iter().map(|c| (c.name, c.value)).collect()
    }

    #[test]
    fn named_groups_become_arguments() {
        let r = one(
            RouteKind::RespondTo,
            r"store (?P<text>.*) under (?P<key>\w+)",
        );
        let caps = r
            .matches(&Incoming::addressed("store hello world under greeting"))
            .unwrap();
        assert_eq!(
            args(caps),
            [
                ("text".into(), Some("hello world".into())),
                ("key".into(), Some("greeting".into()))
            ]
        );
    }

    #[test]
    fn search_is_unanchored_and_case_insensitive() {
        let r = one(RouteKind::RespondTo, "size");
        assert!(r.matches(&Incoming::addressed("what SIZE is it")).is_some());
        let exact = compile(&[Route {
            ignore_case: false,
            ..route(RouteKind::RespondTo, "size")
        }])
        .unwrap();
        assert!(exact[0].matches(&Incoming::addressed("SIZE")).is_none());
    }

    #[test]
    fn respond_to_needs_an_addressed_message() {
        let respond = one(RouteKind::RespondTo, "hello");
        let listen = one(RouteKind::ListenTo, "hello");
        assert!(respond.matches(&Incoming::overheard("hello")).is_none());
        assert!(listen.matches(&Incoming::overheard("hello")).is_some());
        assert!(listen.matches(&Incoming::addressed("hello")).is_some());
    }

    #[test]
    fn unmatched_optional_groups_are_none() {
        let r = one(
            RouteKind::RespondTo,
            r"^(?P<shared>shared )?get (?P<key>\S+)$",
        );
        let caps = r.matches(&Incoming::addressed("get k")).unwrap();
        assert_eq!(
            args(caps),
            [("shared".into(), None), ("key".into(), Some("k".into()))]
        );
    }

    #[test]
    fn bad_patterns_name_the_route() {
        let e = compile(&[
            route(RouteKind::ListenTo, "ok"),
            route(RouteKind::ListenTo, "(unclosed"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("route 1") && e.contains("(unclosed"), "{e}");
        let many = vec![route(RouteKind::ListenTo, "x"); MAX_ROUTES + 1];
        assert!(matches!(compile(&many), Err(RouteError::TooMany(_))));
        let huge = "a{1000}{1000}";
        assert!(compile(&[route(RouteKind::ListenTo, huge)]).is_err());
    }
}
