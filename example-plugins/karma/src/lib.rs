//! Counts karma. Anyone can give it, in any message; the bot tells the
//! score and the leaderboard when asked.
//!
//! ```text
//! rust++                  rust now has 1 karma.
//! bugs--                  bugs now has -1 karma.
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

/// The plugin. Scores live in storage.
#[derive(Default)]
pub struct Karma;

impl Karma {
    fn bump(&self, msg: &Message, thing: &str, delta: i64) -> Result<()> {
        let score = self.storage().increment(format!("{PREFIX}{thing}"), delta)?;
        msg.say(format!("{thing} now has {score} karma."));
        Ok(())
    }
}

#[warden_sdk::plugin(
    id = "example.karma.Karma",
    description = "Counts karma: thing++, thing--, karma thing, top karma"
)]
impl Karma {
    #[listen_to(r"(?P<thing>[^\s+-][^\s]*?)\+\+")]
    fn up(&self, msg: &Message, thing: &str) -> Result<()> {
        self.bump(msg, thing, 1)
    }

    #[listen_to(r"(?P<thing>[^\s+-][^\s]*?)--")]
    fn down(&self, msg: &Message, thing: &str) -> Result<()> {
        self.bump(msg, thing, -1)
    }

    #[respond_to(r"^karma (?P<thing>\S+)$")]
    fn show(&self, msg: &Message, thing: &str) -> Result<()> {
        let score: i64 = self.storage().get(format!("{PREFIX}{thing}"))?.unwrap_or(0);
        msg.say(format!("{thing} has {score} karma."));
        Ok(())
    }

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
        let shown: Vec<String> = board.iter().take(TOP).map(|(score, thing)| format!("{thing} ({score})")).collect();
        msg.say(format!("top karma: {}", shown.join(", ")));
        Ok(())
    }
}
