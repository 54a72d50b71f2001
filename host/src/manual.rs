//! The help manual: what every loaded plugin answers to, written by the
//! host to the shared key [`MANUAL_KEY`] whenever the set of plugins
//! changes, so that a help plugin with a read grant for it can show it.
//! While no loaded plugin may read the key, the host does not write it.
//!
//! The value is JSON in the shape of Slack Machine's manual, so that its
//! built-in `help` plugin reads it unchanged:
//!
//! ```json
//! {
//!   "human": {
//!     "Storing things": {
//!       "example.storage.StoragePlugin.store": {"command": "store", "help": "keeps a text"}
//!     }
//!   },
//!   "robot": {
//!     "Storing things": ["@botname store (?P<text>.*) under (?P<key>\\w+)"]
//!   }
//! }
//! ```
//!
//! - Plugins are keyed by their description (Slack Machine's class
//!   docstring), or by their identity where the description is empty, in
//!   the order they loaded; their handlers in the order they declared them.
//! - `human` holds the routes and schedules with a doc line, keyed by
//!   `IDENTITY.HANDLER`. A doc line `command: what it does` splits at its
//!   first colon into `command` and `help`; one without a colon has
//!   command `??`, as in Slack Machine.
//! - `robot` lists every route's pattern, `respond-to` ones after
//!   `@botname `.

use serde_json::{Map, Value, json};

use crate::plugins::PluginInfo;
use crate::router::RouteKind;

/// The shared key the manual is written to.
pub const MANUAL_KEY: &str = "manual";

/// The manual of `plugins`.
pub fn of<'a>(plugins: impl IntoIterator<Item = &'a PluginInfo>) -> Value {
    let mut human = Map::new();
    let mut robot = Map::new();
    for plugin in plugins {
        let title = if plugin.description.trim().is_empty() {
            plugin.id.to_string()
        } else {
            plugin.description.clone()
        };
        let docs = plugin
            .routes
            .iter()
            .map(|r| (&r.handler, &r.doc))
            .chain(plugin.schedules.iter().map(|s| (&s.handler, &s.doc)));
        let entries = human
            .entry(title.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        for (handler, doc) in docs {
            if doc.trim().is_empty() {
                continue;
            }
            if let Value::Object(entries) = entries {
                entries.insert(format!("{}.{handler}", plugin.id), human_help(doc));
            }
        }
        let patterns = robot
            .entry(title)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(patterns) = patterns {
            for route in &plugin.routes {
                patterns.push(Value::String(match route.kind {
                    RouteKind::RespondTo => format!("@botname {}", route.pattern()),
                    RouteKind::ListenTo => route.pattern().to_owned(),
                }));
            }
        }
    }
    json!({ "human": human, "robot": robot })
}

/// A doc line as Slack Machine reads a handler's docstring.
fn human_help(doc: &str) -> Value {
    let line = doc.lines().next().unwrap_or("");
    let mut parts = line.split(':');
    let first = parts.next().unwrap_or("");
    match parts.next() {
        Some(help) => json!({ "command": first.trim(), "help": help.trim() }),
        None => json!({ "command": "??", "help": first.trim() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_doc_line_splits_at_its_colon_as_slack_machine_does() {
        assert_eq!(
            human_help("help: display this help text"),
            json!({"command": "help", "help": "display this help text"})
        );
        assert_eq!(
            human_help("shows the time"),
            json!({"command": "??", "help": "shows the time"})
        );
        // Slack Machine keeps only what lies between the first two colons.
        assert_eq!(
            human_help("at: 10:30 sharp"),
            json!({"command": "at", "help": "10"})
        );
    }
}
