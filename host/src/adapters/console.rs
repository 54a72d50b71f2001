//! The console: one message per input line, every reply on its own output
//! line. Every line is addressed to the bot.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use crate::{Host, Incoming};

/// Reads messages from `input` until its end, writing every reply to
/// `output`. Blank lines are skipped. A call that failed adds one line,
/// `error: PLUGIN: REASON`, after the replies it made (the log has the
/// details too).
pub async fn run<R, W>(host: &Host, input: R, mut output: W) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut lines = input.lines();
    while let Some(line) = lines.next_line().await? {
        let text = line.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        let outcomes = host.dispatch(&Incoming::addressed(text)).await;
        if outcomes.is_empty() {
            // The text may hold what a user asked to store: log its size only.
            tracing::debug!(bytes = text.len(), "no route matched the message");
        }
        for outcome in &outcomes {
            for reply in &outcome.replies {
                output.write_all(reply.as_bytes()).await?;
                output.write_all(b"\n").await?;
            }
            if let Some(error) = &outcome.error {
                let line = format!("error: {}: {error}\n", outcome.plugin);
                output.write_all(line.as_bytes()).await?;
            }
        }
        output.flush().await?;
    }
    Ok(())
}
