//! Counts karma. Anyone can give it, in any message; the bot tells the
//! score and the leaderboard when asked.
//!
//! ```text
//! rust++                  rust now has 1 karma.
//! bugs--                  bugs now has -1 karma.
//! rust++ and go++         rust now has 2 karma.
//!                         go now has 1 karma.
//! @bot karma rust         rust has 1 karma.
//! @bot top karma          top karma: rust (1), bugs (-1)
//! ```
//!
//! Each score is a counter that the host increments atomically, so
//! simultaneous `++` from many people (on many hosts sharing a store) are
//! all counted. The leaderboard lists the counters' keys.

use warden_sdk::{Message, Plugin, Result};

/// The prefix of every counter's key.
const PREFIX: &str = "karma:";
/// How many entries the leaderboard shows.
const TOP: usize = 10;

/// Every `thing++` (+1) and `thing--` (-1) in `text`, in order: in each
/// word, the text before its first `++` or `--`, which must not be empty or
/// start with `+` or `-`.
fn votes(text: &str) -> Vec<(&str, i64)> {
    text.split_whitespace()
        .filter_map(|word| {
            let at = [word.find("++"), word.find("--")]
                .into_iter()
                .flatten()
                .min()?;
            let thing = &word[..at];
            let delta = if word[at..].starts_with("++") { 1 } else { -1 };
            (!thing.is_empty() && !thing.starts_with(['+', '-'])).then_some((thing, delta))
        })
        .collect()
}

/// The plugin. Scores live in storage.
#[derive(Default)]
pub struct Karma;

impl Karma {
    fn bump(&self, msg: &Message, thing: &str, delta: i64) -> Result<()> {
        let score = self
            .storage()
            .increment(format!("{PREFIX}{thing}"), delta)?;
        msg.say(format!("{thing} now has {score} karma."));
        Ok(())
    }
}

#[warden_sdk::plugin(
    id = "example.karma.Karma",
    description = "Counts karma: thing++, thing--, karma thing, top karma"
)]
impl Karma {
    /// thing++, thing--: gives or takes one karma for every `thing++` and
    /// `thing--` in a message, in order
    #[listen_to(r"[^\s+-][^\s]*?(?:\+\+|--)")]
    fn give(&self, msg: &Message) -> Result<()> {
        for (thing, delta) in votes(msg.text()) {
            self.bump(msg, thing, delta)?;
        }
        Ok(())
    }

    /// karma THING: shows THING's karma
    #[respond_to(r"^karma (?P<thing>\S+)$")]
    fn show(&self, msg: &Message, thing: &str) -> Result<()> {
        let score: i64 = self.storage().get(format!("{PREFIX}{thing}"))?.unwrap_or(0);
        msg.say(format!("{thing} has {score} karma."));
        Ok(())
    }

    /// top karma: shows the leaderboard
    #[respond_to(r"^top karma$")]
    fn top(&self, msg: &Message) -> Result<()> {
        let keys = self.storage().keys(PREFIX)?;
        let mut board = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            let scores: Vec<Option<i64>> = self.storage().get_many(chunk)?;
            for (key, score) in chunk.iter().zip(scores) {
                if let Some(score) = score {
                    board.push((score, key[PREFIX.len()..].to_owned()));
                }
            }
        }
        if board.is_empty() {
            msg.say("nobody has karma yet.");
            return Ok(());
        }
        // Highest first; ties in name order.
        board.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let shown: Vec<String> = board
            .iter()
            .take(TOP)
            .map(|(score, thing)| format!("{thing} ({score})"))
            .collect();
        msg.say(format!("top karma: {}", shown.join(", ")));
        Ok(())
    }
}
