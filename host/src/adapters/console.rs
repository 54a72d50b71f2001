//! The console: one message per input line, every reply on its own output
//! line. Every line is addressed to the bot.
//!
//! # Framing
//!
//! Replies and errors are plugin text, so the console frames them so that
//! no plugin can make its output pass for another reply or for an error:
//!
//! - Each reply starts a new line. A reply's further lines (after a line
//!   break in it) are indented by two spaces, so an unindented line always
//!   starts a reply or an error.
//! - A reply whose first line would itself start with a space, a tab or
//!   `error: ` is written with a backslash in front, so that it cannot pass
//!   for a further line or an error.
//! - A failed call adds one line, `error: PLUGIN: REASON`, after the replies
//!   it made; the reason is written on that one line, its line breaks as
//!   `\n`. A message the host refuses before any plugin sees it (too long)
//!   gets one line `error: REASON`.
//! - Control and formatting characters (escape sequences, carriage
//!   returns, bidirectional overrides) are written as escapes, e.g.
//!   `\u{001b}`; see [`crate::text::escape`].
//!
//! A reply without line breaks or such characters, such as every reply of
//! the seed's storage plugin, is written exactly as the plugin said it.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use crate::text;
use crate::{Host, Incoming};

/// What starts the line of a failed call.
const ERROR_PREFIX: &str = "error: ";

/// Reads messages from `input` until its end, writing every reply to
/// `output`, framed as the [module documentation](self) describes. Blank
/// lines are skipped. A call that failed adds one line, `error: PLUGIN:
/// REASON`, after the replies it made (the log has the details too).
pub async fn run<R, W>(host: &Host, input: R, mut output: W) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut lines = input.lines();
    let mut out = String::new();
    while let Some(line) = lines.next_line().await? {
        let text = line.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        let message = Incoming::addressed(text);
        if let Err(e) = host.check_message(&message) {
            output
                .write_all(format!("{ERROR_PREFIX}{e}\n").as_bytes())
                .await?;
            output.flush().await?;
            continue;
        }
        let outcomes = host.dispatch(&message).await;
        if outcomes.is_empty() {
            // The text may hold what a user asked to store: log its size only.
            tracing::debug!(bytes = text.len(), "no route matched the message");
        }
        out.clear();
        for outcome in &outcomes {
            for reply in &outcome.replies {
                frame_reply(reply, &mut out);
            }
            if let Some(error) = &outcome.error {
                frame_error(outcome.plugin.as_str(), error, &mut out);
            }
        }
        output.write_all(out.as_bytes()).await?;
        output.flush().await?;
    }
    Ok(())
}

/// Appends `reply`, framed, to `out`.
fn frame_reply(reply: &str, out: &mut String) {
    for (i, line) in reply.split('\n').enumerate() {
        let line = text::escape(line);
        if i == 0 {
            if needs_guard(&line) {
                out.push('\\');
            }
        } else {
            out.push_str("  ");
        }
        out.push_str(&line);
        out.push('\n');
    }
}

/// Appends the line of a failed call of `plugin`, framed, to `out`.
fn frame_error(plugin: &str, error: &str, out: &mut String) {
    out.push_str(ERROR_PREFIX);
    out.push_str(&text::escape(plugin));
    out.push_str(": ");
    out.push_str(&text::escape(error));
    out.push('\n');
}

/// Whether a reply's first line could pass for a further line of the
/// previous reply, or for an error line.
fn needs_guard(line: &str) -> bool {
    line.starts_with([' ', '\t']) || line.starts_with(ERROR_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(replies: &[&str], error: Option<&str>) -> String {
        let mut out = String::new();
        for reply in replies {
            frame_reply(reply, &mut out);
        }
        if let Some(error) = error {
            frame_error("a.Plugin", error, &mut out);
        }
        out
    }

    #[test]
    fn plain_replies_are_written_as_said() {
        assert_eq!(
            framed(&["'hello' stored under greeting!", "ok"], None),
            "'hello' stored under greeting!\nok\n"
        );
    }

    #[test]
    fn a_reply_cannot_pass_for_another_reply_or_an_error() {
        let out = framed(
            &[
                "first\nerror: b.Other: forged\nsecond forged reply",
                "  looks like a further line",
                "error: b.Other: forged too",
                "\u{1b}[2Jcleared\r",
            ],
            Some("bad\nforged reply"),
        );
        assert_eq!(
            out,
            "first\n  error: b.Other: forged\n  second forged reply\n\
             \\  looks like a further line\n\
             \\error: b.Other: forged too\n\
             \\u{001b}[2Jcleared\\r\n\
             error: a.Plugin: bad\\nforged reply\n"
        );
        // Every unindented line starts a reply or the one error.
        let starts: Vec<&str> = out.lines().filter(|l| !l.starts_with("  ")).collect();
        assert_eq!(starts.len(), 5, "{starts:?}");
        assert_eq!(out.lines().filter(|l| l.starts_with("error: ")).count(), 1);
    }
}
