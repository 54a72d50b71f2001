//! The Slack adapter: Slack's Events API on the HTTP listener, or Socket
//! Mode (see [`socket`]) for a host without a public address; replies
//! through the Web API.
//!
//! - `POST /slack/events` takes Slack's event requests. Each is verified
//!   with the app's signing secret: `X-Slack-Signature` must be `v0=` and
//!   the hex HMAC-SHA256 of `v0:TIMESTAMP:BODY`, compared in constant time,
//!   and `X-Slack-Request-Timestamp` within five minutes of the host's
//!   clock; anything else is `401`. The `url_verification` challenge is
//!   answered. Events are acknowledged at once and handled after, so
//!   Slack's three-second deadline is met whatever the plugins take.
//! - `message` and `app_mention` events reach the plugins as Slack Machine
//!   routes them: a message is addressed to the bot when it starts with the
//!   bot's mention (`<@BOT>`, which is removed before matching) or is a
//!   direct message. The bot's own messages, messages with a subtype
//!   (edits, joins, bots) and a delivery seen before (Slack retries,
//!   `X-Slack-Retry-Num`, and the `message` and `app_mention` events of one
//!   message) are not handled again. At most `[slack]
//!   max_events_in_flight` events are handled at once; beyond that an event is refused (`503`, or not
//!   acknowledged in Socket Mode), so that Slack delivers it again later.
//! - Replies go out with `chat.postMessage`, in order, in the thread the
//!   plugin asked for, `reply` as `<@USER>: text`; a `429` is waited out
//!   as its `Retry-After` says. Scheduled messages go to their channel the
//!   same way. The bot's user id comes from `auth.test` at start.

pub mod socket;

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::config::SlackConfig;
use crate::router::Reply;
use crate::{Host, Incoming};

/// How far a request's timestamp may be from the host's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
/// How many event ids (and message timestamps) are remembered, so that a
/// delivery seen before is not handled again.
const REMEMBERED: usize = 10_000;
/// Most times one `chat.postMessage` is tried after `429`s.
const POST_TRIES: usize = 4;
/// Longest `Retry-After` waited for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Why the adapter could not start.
#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    /// A Web API call failed.
    #[error("Slack's {method} failed: {message}")]
    Api {
        /// The method, e.g. `auth.test`.
        method: &'static str,
        /// Slack's error, or the transport's.
        message: String,
    },
    /// The configuration lacks what the adapter needs.
    #[error("{0}")]
    Config(String),
}

/// The Slack app Warden answers as.
pub struct Slack {
    api_url: String,
    bot_token: String,
    /// For the Events API.
    signing_secret: Option<Vec<u8>>,
    /// For Socket Mode.
    app_token: Option<String>,
    /// The bot's own user id, from `auth.test`.
    bot_user: String,
    tls: Arc<rustls::ClientConfig>,
    client: reqwest::Client,
    seen: Mutex<Seen>,
    in_flight: Arc<tokio::sync::Semaphore>,
    max_in_flight: usize,
}

/// What became of an event Slack delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// It is being handled.
    Handled,
    /// It is not for the plugins, or was handled before.
    Ignored,
    /// Too many events are being handled: Slack should deliver it again.
    Busy,
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slack")
            .field("api_url", &self.api_url)
            .field("bot_user", &self.bot_user)
            .finish_non_exhaustive()
    }
}

/// Recently seen keys, bounded: the oldest are forgotten first.
#[derive(Debug, Default)]
struct Seen {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl Seen {
    /// Whether `key` is new; remembers it.
    fn first(&mut self, key: &str) -> bool {
        if self.set.contains(key) {
            return false;
        }
        if self.order.len() == REMEMBERED
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(key.to_owned());
        self.order.push_back(key.to_owned());
        true
    }
}

impl Slack {
    /// Connects to the Web API of `config`: checks the bot token with
    /// `auth.test` and learns the bot's user id.
    pub async fn connect(config: &SlackConfig) -> Result<Arc<Self>, SlackError> {
        let bot_token = config
            .bot_token
            .clone()
            .ok_or_else(|| SlackError::Config("[slack] bot_token is not set".into()))?;
        let client_failed = |message| SlackError::Api {
            method: "client",
            message,
        };
        let tls = tls_config().map_err(client_failed)?;
        let client = web_client(&tls).map_err(client_failed)?;
        let mut slack = Slack {
            api_url: config.api_url.trim_end_matches('/').to_owned(),
            bot_token,
            signing_secret: config.signing_secret.clone().map(String::into_bytes),
            app_token: config.app_token.clone(),
            bot_user: String::new(),
            tls: Arc::new(tls),
            client,
            seen: Mutex::default(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.max_events_in_flight)),
            max_in_flight: config.max_events_in_flight,
        };
        let answer = slack.call("auth.test", &json!({})).await?;
        slack.bot_user = answer["user_id"]
            .as_str()
            .ok_or_else(|| SlackError::Api {
                method: "auth.test",
                message: "the answer has no user_id".into(),
            })?
            .to_owned();
        tracing::info!(bot = %slack.bot_user, "Slack: answering as the bot user");
        Ok(Arc::new(slack))
    }

    /// Waits, up to `limit`, until the events being handled are handled
    /// and their replies posted; whether they all were.
    pub async fn finish(&self, limit: Duration) -> bool {
        let all = u32::try_from(self.max_in_flight).unwrap_or(u32::MAX);
        tokio::time::timeout(limit, self.in_flight.acquire_many(all))
            .await
            .is_ok()
    }

    /// The bot's own user id.
    pub fn bot_user(&self) -> &str {
        &self.bot_user
    }

    /// Calls Web API method `method` with `body` as the bot; its answer
    /// when `ok`. A `429` is waited out, up to [`POST_TRIES`] times.
    async fn call(&self, method: &'static str, body: &Value) -> Result<Value, SlackError> {
        self.call_as(&self.bot_token, method, body).await
    }

    /// [`call`](Self::call) with `token`.
    async fn call_as(
        &self,
        token: &str,
        method: &'static str,
        body: &Value,
    ) -> Result<Value, SlackError> {
        let failed = |message: String| SlackError::Api { method, message };
        let url = format!("{}/{method}", self.api_url);
        for _ in 0..POST_TRIES {
            let response = self
                .client
                .post(&url)
                .bearer_auth(token)
                .json(body)
                .send()
                .await
                .map_err(|e| failed(e.without_url().to_string()))?;
            if response.status() == StatusCode::TOO_MANY_REQUESTS {
                let wait = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(Duration::from_secs(1), Duration::from_secs)
                    .min(MAX_RETRY_AFTER);
                tracing::warn!(
                    method,
                    wait_s = wait.as_secs(),
                    "Slack: rate limited; waiting"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            let status = response.status();
            let answer: Value = response
                .json()
                .await
                .map_err(|e| failed(format!("HTTP {status}: {}", e.without_url())))?;
            return if answer["ok"] == Value::Bool(true) {
                Ok(answer)
            } else {
                Err(failed(
                    answer["error"].as_str().unwrap_or("not ok").to_owned(),
                ))
            };
        }
        Err(failed(format!(
            "still rate limited after {POST_TRIES} tries"
        )))
    }

    /// Posts `reply` to `channel` (`chat.postMessage`), logging a failure.
    pub async fn post(&self, channel: &str, reply: &Reply) {
        let text = match &reply.mention {
            Some(user) => format!("<@{user}>: {}", reply.text),
            None => reply.text.clone(),
        };
        let mut body = json!({ "channel": channel, "text": text });
        if let Some(thread) = &reply.thread {
            body["thread_ts"] = Value::String(thread.clone());
        }
        if let Err(e) = self.call("chat.postMessage", &body).await {
            tracing::warn!(channel, "Slack: a reply was not posted: {e}");
        }
    }

    /// Whether a request with `headers` and `body` was signed with the
    /// signing secret within [`MAX_CLOCK_SKEW`] of `now` (Unix seconds).
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now: u64) -> Result<(), &'static str> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let timestamp =
            header("x-slack-request-timestamp").ok_or("no X-Slack-Request-Timestamp")?;
        let signature = header("x-slack-signature").ok_or("no X-Slack-Signature")?;
        let at: u64 = timestamp
            .parse()
            .map_err(|_| "X-Slack-Request-Timestamp is not a number")?;
        if now.abs_diff(at) > MAX_CLOCK_SKEW.as_secs() {
            return Err("the request's timestamp is more than five minutes away");
        }
        let hex = signature
            .strip_prefix("v0=")
            .ok_or("X-Slack-Signature is not v0=...")?;
        let expected = decode_hex(hex).ok_or("X-Slack-Signature is not hex")?;
        let secret = self
            .signing_secret
            .as_deref()
            .ok_or("[slack] signing_secret is not set")?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
        mac.update(b"v0:");
        mac.update(timestamp.as_bytes());
        mac.update(b":");
        mac.update(body);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&expected)
            .map_err(|_| "the signature does not match")
    }

    /// The message an event is, as the host takes it, and the channel to
    /// answer in; `None` for an event the plugins do not see.
    fn incoming(&self, event: &Value) -> Option<(Incoming, String)> {
        let kind = event["type"].as_str()?;
        if kind != "message" && kind != "app_mention" {
            return None;
        }
        if event.get("subtype").is_some() || event.get("bot_id").is_some() {
            return None;
        }
        let user = event["user"].as_str()?;
        if user == self.bot_user {
            return None;
        }
        let channel = event["channel"].as_str()?.to_owned();
        let ts = event["ts"].as_str()?.to_owned();
        // One message may come as a `message` and an `app_mention` event.
        let fresh = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first(&format!("message {channel} {ts}"));
        if !fresh {
            return None;
        }
        let text = event["text"].as_str().unwrap_or("");
        let direct = event["channel_type"].as_str() == Some("im");
        let (addressed, text) = match strip_mention(text, &self.bot_user) {
            Some(rest) => (true, rest.to_owned()),
            None => (direct, text.to_owned()),
        };
        let incoming = Incoming {
            text,
            user: user.to_owned(),
            user_name: None,
            channel: channel.clone(),
            addressed,
            id: Some(ts),
            thread: event["thread_ts"].as_str().map(str::to_owned),
        };
        Some((incoming, channel))
    }

    /// Whether event `id` is delivered for the first time.
    fn first_delivery(&self, id: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .first(&format!("event {id}"))
    }

    /// Takes `payload`, an `event_callback` as the Events API and Socket
    /// Mode deliver it: handles its event after this returns, unless it is
    /// not for the plugins, was delivered before, or too many are in
    /// flight (then it is not remembered, so that a redelivery is taken).
    pub(crate) fn take(self: &Arc<Self>, host: &Arc<Host>, payload: &Value) -> Taken {
        if payload["type"].as_str() != Some("event_callback") {
            return Taken::Ignored;
        }
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            tracing::warn!(
                limit = self.max_in_flight,
                "Slack: too many events in flight; this one is left for Slack to deliver again"
            );
            return Taken::Busy;
        };
        let id = payload["event_id"].as_str().unwrap_or("");
        if !id.is_empty() && !self.first_delivery(id) {
            tracing::debug!(
                event = id,
                "Slack: a delivery seen before; not handled again"
            );
            return Taken::Ignored;
        }
        let Some((incoming, channel)) = self.incoming(&payload["event"]) else {
            return Taken::Ignored;
        };
        let (host, slack) = (host.clone(), self.clone());
        tokio::spawn(async move {
            answer(&host, &slack, incoming, channel).await;
            // The host is let go of before the permit, so that a host
            // shutting down after `finish` holds the last reference.
            drop(host);
            drop(permit);
        });
        Taken::Handled
    }
}

/// The TLS the adapter speaks to Slack with: rustls on ring, verified
/// against the system's roots.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier = rustls_platform_verifier::Verifier::new(provider).map_err(|e| e.to_string())?;
    Ok(tls
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// The Web API client, over `tls`.
fn web_client(tls: &rustls::ClientConfig) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls.clone())
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())
}

/// The text after a leading mention of `bot` (`<@BOT>`, then an optional
/// `:` and spaces), as Slack Machine strips it; `None` if the text does not
/// start with one.
fn strip_mention<'a>(text: &'a str, bot: &str) -> Option<&'a str> {
    let rest = text.trim_start().strip_prefix("<@")?;
    let (user, rest) = rest.split_once('>')?;
    // A mention may carry a name: `<@U123|warden>`.
    let user = user.split('|').next().unwrap_or(user);
    if user != bot {
        return None;
    }
    let rest = rest.strip_prefix(':').unwrap_or(rest);
    Some(rest.trim_start())
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The state of `POST /slack/events`.
#[derive(Debug, Clone)]
pub(crate) struct Events {
    pub(crate) host: Arc<Host>,
    pub(crate) slack: Arc<Slack>,
}

/// `POST /slack/events`.
pub(crate) async fn events(State(app): State<Events>, headers: HeaderMap, body: Bytes) -> Response {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if let Err(why) = app.slack.verify(&headers, &body, now) {
        app.host
            .metrics()
            .http_refused(crate::metrics::HttpRefusal::Unauthorized);
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "error": format!("not a request from Slack: {why}") })),
        )
            .into_response();
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "the body is not JSON" })),
        )
            .into_response();
    };
    if payload["type"].as_str() == Some("url_verification") {
        return axum::Json(json!({ "challenge": payload["challenge"] })).into_response();
    }
    // Acknowledged now, handled after: Slack waits 3 s at most.
    match app.slack.take(&app.host, &payload) {
        Taken::Handled | Taken::Ignored => StatusCode::OK.into_response(),
        Taken::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "error": "too many events in flight; deliver it again" })),
        )
            .into_response(),
    }
}

/// Dispatches `incoming` and posts its replies to `channel`, in order.
async fn answer(host: &Host, slack: &Slack, incoming: Incoming, channel: String) {
    if host.check_message(&incoming).is_err() {
        tracing::debug!(
            bytes = incoming.text.len(),
            "Slack: a message over the limit was not matched"
        );
        return;
    }
    for outcome in host.dispatch(&incoming).await {
        for reply in &outcome.replies {
            slack.post(&channel, reply).await;
        }
        if let Some(error) = &outcome.error {
            tracing::warn!(plugin = %outcome.plugin, handler = %outcome.handler,
                "Slack: a handler failed: {error}");
        }
    }
}

/// Posts what scheduled handlers say to their channels, until the host's
/// outbox closes (when the host is dropped: the future holds no reference
/// to it).
pub fn post_scheduled(host: &Host, slack: Arc<Slack>) -> impl Future<Output = ()> + Send + 'static {
    let mut sent = host.outbox().subscribe();
    async move {
        loop {
            match sent.recv().await {
                Ok(message) => slack.post(&message.channel, &message.reply).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(lost)) => {
                    tracing::warn!(
                        lost,
                        "Slack: scheduled messages were lost while posting was slow"
                    );
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_mention_of_the_bot_is_stripped() {
        assert_eq!(
            strip_mention("<@UBOT> store x under y", "UBOT"),
            Some("store x under y")
        );
        assert_eq!(strip_mention("<@UBOT>: size", "UBOT"), Some("size"));
        assert_eq!(
            strip_mention("  <@UBOT|warden>   size", "UBOT"),
            Some("size")
        );
        assert_eq!(strip_mention("<@UOTHER> size", "UBOT"), None);
        assert_eq!(strip_mention("size <@UBOT>", "UBOT"), None);
    }

    #[test]
    fn seen_keys_are_bounded() {
        let mut seen = Seen::default();
        assert!(seen.first("a"));
        assert!(!seen.first("a"));
        for i in 0..REMEMBERED {
            seen.first(&i.to_string());
        }
        assert_eq!(seen.order.len(), REMEMBERED);
        assert!(seen.first("a"), "the oldest key is forgotten");
    }

    #[test]
    fn hex_decodes() {
        assert_eq!(decode_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("zz"), None);
    }
}
