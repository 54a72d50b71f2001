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

    /// Who sent the message: the sender's id (as [`Sender::id`]).
    pub fn user(&self) -> &str {
        &self.inner.sender.id
    }

    /// Who sent the message: id, and a name to show where the adapter
    /// knows one (Slack Machine's `msg.sender`).
    pub fn sender(&self) -> Sender<'_> {
        Sender {
            id: &self.inner.sender.id,
            name: self.inner.sender.name.as_deref(),
        }
    }

    /// The message's own id in its channel, where the adapter has one
    /// (Slack's `ts`).
    pub fn id(&self) -> Option<&str> {
        self.inner.id.as_deref()
    }

    /// The thread the message was posted in, if any: the id of the
    /// thread's first message (Slack's `thread_ts`).
    pub fn thread(&self) -> Option<&str> {
        self.inner.thread.as_deref()
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
        chat::say(text.as_ref(), None);
    }

    /// Replies in thread `thread` (a message id, such as [`Message::id`]
    /// or [`Message::thread`]) of the message's channel (Slack Machine's
    /// `msg.say(text, thread_ts=...)`).
    pub fn say_in_thread(&self, thread: &str, text: impl AsRef<str>) {
        chat::say(text.as_ref(), Some(thread));
    }

    /// Answers the sender in the message's channel, mentioning them (Slack
    /// Machine's `msg.reply`).
    pub fn reply(&self, text: impl AsRef<str>) {
        chat::reply(text.as_ref(), false);
    }

    /// Answers the sender in the message's thread, or in a new thread under
    /// the message, without the mention (Slack Machine's
    /// `msg.reply(text, in_thread=True)`).
    pub fn reply_in_thread(&self, text: impl AsRef<str>) {
        chat::reply(text.as_ref(), true);
    }
}

/// Who sent a message (see [`Message::sender`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender<'a> {
    /// The sender's id, as the adapter knows it.
    pub id: &'a str,
    /// A name to show, where the adapter knows one.
    pub name: Option<&'a str>,
}
