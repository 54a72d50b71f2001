//! The message a handler is called for.

use crate::__bindings::warden::plugin::chat;
use crate::__bindings::warden::plugin::types::Message as WitMessage;

/// The message that matched a route, passed to every handler.
///
/// ```no_run
/// use warden_sdk::Message;
///
/// fn greet(msg: &Message) {
///     if msg.is_addressed() {
///         msg.say(format!("hello <@{}>, you wrote {:?} in {}", msg.user(), msg.text(), msg.channel()));
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Message {
    inner: WitMessage,
}

impl Message {
    pub(crate) fn from_wit(inner: WitMessage) -> Self {
        Message { inner }
    }

    /// The text the route's pattern matched. For a message addressed to the
    /// bot this is the text after the mention.
    pub fn text(&self) -> &str {
        &self.inner.text
    }

    /// Who sent the message.
    pub fn user(&self) -> &str {
        &self.inner.user
    }

    /// Where the message was sent.
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Whether the message was addressed to the bot. Always `true` for
    /// `respond_to` routes; for `listen_to` routes it tells whether the bot
    /// was mentioned.
    pub fn is_addressed(&self) -> bool {
        self.inner.addressed
    }

    /// Replies to the message in its channel (Slack Machine's `msg.say`).
    /// A handler may reply any number of times, or not at all.
    pub fn say(&self, text: impl AsRef<str>) {
        chat::say(text.as_ref());
    }
}
