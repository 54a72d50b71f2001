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
//!
//! # Mentions and threads
//!
//! The console is one conversation with one sender, `console`. A reply that
//! mentions the sender (Slack Machine's `msg.reply`) starts with
//! `@console: `; a message sent to a thread starts with `[thread ID] `.
//! Console lines have no message id, so `reply(..., in_thread=True)` has
//! no thread to answer in and shows as a plain line.
//!
//! A scheduled handler's message, which answers no line, is written as
//! it is sent while the console is open: `[CHANNEL] text`.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use crate::outbox::Outgoing;
use crate::text;
use crate::{Host, Incoming, Reply};

/// What starts the line of a failed call.
const ERROR_PREFIX: &str = "error: ";

/// Reads messages from `input` until its end, writing every reply to
/// `output`, framed as the [module documentation](self) describes. Blank
/// lines are skipped. A call that failed adds one line, `error: PLUGIN:
/// REASON`, after the replies it made (the log has the details too).
///
/// Replies are written as each message is answered, and flushed at once:
/// for the process's own standard input, [`run_stdio`] reads and writes in
/// large chunks instead.
pub async fn run<R, W>(host: &Host, input: R, mut output: W) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut lines = input.lines();
    let mut out = String::new();
    while let Some(line) = lines.next_line().await? {
        out.clear();
        answer(host, &line, &mut out).await;
        output.write_all(out.as_bytes()).await?;
        output.flush().await?;
    }
    Ok(())
}

/// How much input the reading thread takes at once, and how much output is
/// gathered before it is written.
const CHUNK: usize = 64 * 1024;

/// Batches of input lines on their way from the reading thread.
const BATCHES_IN_FLIGHT: usize = 4;

/// [`run`] on the process's standard input and output, at the host's
/// speed: a thread of its own reads the input in chunks of 64 KiB (off the
/// async runtime), and replies are gathered in a buffer that is written out
/// whenever no further input is waiting, so that a person typing sees each
/// reply at once, and a piped transcript is written in large chunks.
pub async fn run_stdio(host: &Host) -> std::io::Result<()> {
    run_batches(host, stdin_lines()?, tokio::io::stdout()).await
}

/// Answers every line of `batches` as it comes, writing the replies to
/// `output` through a buffer that is flushed once no batch is waiting.
async fn run_batches<W>(
    host: &Host,
    mut batches: tokio::sync::mpsc::Receiver<std::io::Result<Vec<String>>>,
    output: W,
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut output = tokio::io::BufWriter::with_capacity(CHUNK, output);
    let mut out = String::new();
    let mut scheduled = host.outbox().subscribe();
    loop {
        tokio::select! {
            batch = batches.recv() => {
                let Some(batch) = batch else { break };
                for line in batch? {
                    out.clear();
                    answer(host, &line, &mut out).await;
                    output.write_all(out.as_bytes()).await?;
                }
            }
            sent = scheduled.recv() => match sent {
                Ok(sent) => {
                    out.clear();
                    frame_scheduled(&sent, &mut out);
                    output.write_all(out.as_bytes()).await?;
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(lost)) => {
                    tracing::warn!(lost, "the console fell behind the schedules' messages");
                }
                // The host holds the sender as long as it lives.
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
            },
        }
        if batches.is_empty() {
            output.flush().await?;
        }
    }
    output.flush().await
}

/// Appends a scheduled handler's message, framed, to `out`: `[CHANNEL] `
/// before the reply as [`shown`] writes it.
fn frame_scheduled(sent: &Outgoing, out: &mut String) {
    let mut line = String::from("[");
    line.push_str(&sent.channel);
    line.push_str("] ");
    line.push_str(&shown(&sent.reply));
    // The bracket starts the line, so it cannot pass for a reply's further
    // line or an error.
    frame_reply(&line, out);
}

/// Reads standard input on a thread of its own, in chunks of [`CHUNK`]
/// bytes, and sends its lines in batches: each batch holds the lines the
/// last read brought in whole, so a batch ends where no more input was
/// waiting. Invalid UTF-8 is replaced (U+FFFD).
fn stdin_lines() -> std::io::Result<tokio::sync::mpsc::Receiver<std::io::Result<Vec<String>>>> {
    use std::io::BufRead as _;
    let (tx, rx) = tokio::sync::mpsc::channel(BATCHES_IN_FLIGHT);
    std::thread::Builder::new()
        .name("warden-console".into())
        .spawn(move || {
            let mut input = std::io::BufReader::with_capacity(CHUNK, std::io::stdin().lock());
            let mut batch = Vec::new();
            let mut line = Vec::new();
            loop {
                line.clear();
                match input.read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(_) => {
                        if line.last() == Some(&b'\n') {
                            line.pop();
                        }
                        batch.push(String::from_utf8_lossy(&line).into_owned());
                        // Nothing more read ahead: the next read may wait,
                        // so the lines so far go now.
                        if input.buffer().is_empty()
                            && tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err()
                        {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.blocking_send(Ok(batch));
            }
        })?;
    Ok(rx)
}

/// Answers one input line: appends its replies and errors, framed, to
/// `out` (nothing for a blank line).
async fn answer(host: &Host, line: &str, out: &mut String) {
    let text = line.trim_end_matches('\r');
    if text.trim().is_empty() {
        return;
    }
    let message = Incoming::addressed(text);
    if let Err(e) = host.check_message(&message) {
        out.push_str(ERROR_PREFIX);
        out.push_str(&e.to_string());
        out.push('\n');
        return;
    }
    let outcomes = host.dispatch(&message).await;
    if outcomes.is_empty() {
        // The text may hold what a user asked to store: log its size only.
        tracing::debug!(bytes = text.len(), "no route matched the message");
    }
    for outcome in &outcomes {
        for reply in &outcome.replies {
            frame_reply(&shown(reply), out);
        }
        if let Some(error) = &outcome.error {
            frame_error(outcome.plugin.as_str(), error, out);
        }
    }
}

/// A reply as the console shows it: a mention as `@user: ` before the
/// text, a thread as `[thread ID] ` before that.
fn shown(reply: &Reply) -> std::borrow::Cow<'_, str> {
    match (&reply.thread, &reply.mention) {
        (None, None) => std::borrow::Cow::Borrowed(&reply.text),
        (thread, _) => {
            let mut shown = String::new();
            if let Some(thread) = thread {
                shown.push_str("[thread ");
                shown.push_str(thread);
                shown.push_str("] ");
            }
            shown.push_str(&reply.to_string());
            std::borrow::Cow::Owned(shown)
        }
    }
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
    use tokio::io::AsyncReadExt as _;

    #[tokio::test]
    async fn replies_are_flushed_when_no_more_input_is_waiting() {
        let host = Host::builder()
            .backend(std::sync::Arc::new(crate::storage::MemoryBackend::new()))
            .build()
            .await
            .unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (writer, mut reader) = tokio::io::duplex(1 << 20);
        let console = tokio::spawn(async move { run_batches(&host, rx, writer).await });
        // A message the host refuses answers without any plugin.
        let long = "x".repeat(5000);
        for round in 0..2 {
            tx.send(Ok(vec![long.clone(), String::new()]))
                .await
                .unwrap();
            let mut reply = vec![0; 4096];
            let n =
                tokio::time::timeout(std::time::Duration::from_secs(10), reader.read(&mut reply))
                    .await
                    .unwrap_or_else(|_| panic!("round {round}: the reply was not flushed"))
                    .unwrap();
            let reply = String::from_utf8_lossy(&reply[..n]);
            assert!(
                reply.starts_with("error: the message is 5000 bytes long") && reply.ends_with('\n'),
                "{reply}"
            );
            assert_eq!(reply.lines().count(), 1, "the blank line has no answer");
        }
        drop(tx);
        console.await.unwrap().unwrap();
    }

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
