//! Socket Mode: Slack's events over a WebSocket the host opens, for a host
//! without a public address.
//!
//! - `apps.connections.open`, called with the app-level token (`[slack]
//!   app_token`), gives a `wss://` URL; the host connects and waits for
//!   Slack's `hello`.
//! - Each envelope is acknowledged (`{"envelope_id": ...}`) as soon as its
//!   event is taken, and the event is handled after, as on the Events API.
//!   An event that cannot be taken now (too many in flight) is not
//!   acknowledged, so that Slack delivers it again.
//! - When Slack asks for a new connection (a `disconnect` message), one is
//!   opened at once while the old one is still read until Slack closes it,
//!   so that no event falls between the two. An event delivered twice (one
//!   whose acknowledgement was lost with a connection) is handled once, by
//!   its `event_id`.
//! - A connection that drops, or stays silent for [`SILENT_LIMIT`] though
//!   it is pinged every [`PING_EVERY`], is replaced after a backoff: 1 s,
//!   doubling up to a minute, with up to a quarter more at random; it
//!   starts over once a connection has lasted [`STABLE_AFTER`].

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{oneshot, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use super::{Slack, SlackError, Taken};
use crate::Host;

/// How often a connection is pinged.
pub const PING_EVERY: Duration = Duration::from_secs(10);
/// How long a connection may say nothing before it is given up.
pub const SILENT_LIMIT: Duration = Duration::from_secs(30);
/// How long opening a connection, up to Slack's `hello`, may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection Slack asked to replace is still read, at most.
const RETIRE_AFTER: Duration = Duration::from_secs(30);
/// How long a connection must last for the backoff to start over.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The largest message read from Slack (event payloads are far smaller).
const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// What a connection's stream runs on: TCP, or TLS over it.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Socket = WebSocketStream<Box<dyn Io>>;

/// Why a connection is to be replaced.
#[derive(Debug)]
enum End {
    /// Slack asked for a new connection (this one is still read a while).
    Asked(String),
    /// It dropped, or failed.
    Dropped(String),
}

/// Receives Slack's events over Socket Mode for `host` until `shutdown`
/// completes, replacing connections as the module says. Needs `[slack]
/// app_token`.
pub async fn run(
    host: Arc<Host>,
    slack: Arc<Slack>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), SlackError> {
    let token = slack
        .app_token
        .clone()
        .ok_or_else(|| SlackError::Config("[slack] app_token is not set".into()))?;
    tokio::pin!(shutdown);
    let (stop, stopping) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut backoff = Backoff::default();
    loop {
        let opened = tokio::select! {
            opened = tokio::time::timeout(OPEN_TIMEOUT, open(&slack, &token)) => {
                opened.unwrap_or_else(|_| Err("no hello within 30 s".into()))
            }
            () = &mut shutdown => break,
        };
        let wait = match opened {
            Err(why) => {
                let wait = backoff.next();
                tracing::warn!(
                    "Slack Socket Mode: cannot connect: {why}; trying again in {:.1} s",
                    wait.as_secs_f64()
                );
                wait
            }
            Ok(socket) => {
                tracing::info!("Slack Socket Mode: connected");
                let (ended, end) = oneshot::channel();
                let started = Instant::now();
                connections.spawn(connection(
                    socket,
                    host.clone(),
                    slack.clone(),
                    stopping.clone(),
                    ended,
                ));
                let end = tokio::select! {
                    end = end => end.unwrap_or_else(|_| End::Dropped("it ended".into())),
                    () = &mut shutdown => break,
                };
                if started.elapsed() >= STABLE_AFTER {
                    backoff = Backoff::default();
                }
                match end {
                    End::Asked(reason) => {
                        tracing::info!(
                            reason,
                            "Slack Socket Mode: Slack asked for a new connection"
                        );
                        Duration::ZERO
                    }
                    End::Dropped(why) => {
                        let wait = backoff.next();
                        tracing::warn!(
                            "Slack Socket Mode: the connection dropped ({why}); connecting \
                             again in {:.1} s",
                            wait.as_secs_f64()
                        );
                        wait
                    }
                }
            }
        };
        // Connections that ended are reaped as the loop goes.
        while connections.try_join_next().is_some() {}
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = &mut shutdown => break,
        }
    }
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Opens a connection: `apps.connections.open`, the WebSocket, Slack's
/// `hello`.
async fn open(slack: &Slack, token: &str) -> Result<Socket, String> {
    let answer = slack
        .call_as(token, "apps.connections.open", &json!({}))
        .await
        .map_err(|e| e.to_string())?;
    let url = answer["url"]
        .as_str()
        .ok_or("apps.connections.open answered no url")?;
    let mut socket = connect(slack, url).await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                return match message["type"].as_str() {
                    Some("hello") => Ok(socket),
                    // Anything else is left unacknowledged, for Slack to
                    // deliver again.
                    other => Err(format!(
                        "Slack's first message is {} instead of hello",
                        other.unwrap_or("not JSON")
                    )),
                };
            }
            Some(Ok(Message::Close(_))) | None => return Err("closed before hello".into()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("before hello: {e}")),
        }
    }
}

/// The WebSocket at `url` (`wss://`, or `ws://` for a test's fake Slack).
async fn connect(slack: &Slack, url: &str) -> Result<Socket, String> {
    let request = url
        .into_client_request()
        .map_err(|e| format!("the URL from apps.connections.open is not valid: {e}"))?;
    let uri = request.uri();
    let secure = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => {
            return Err(format!(
                "the URL from apps.connections.open is not ws(s)://: {url}"
            ));
        }
    };
    let name = uri
        .host()
        .ok_or("the URL from apps.connections.open has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((name.as_str(), port))
        .await
        .map_err(|e| format!("cannot reach {name}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if secure {
        let server = rustls::pki_types::ServerName::try_from(name.clone())
            .map_err(|e| format!("{name}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(slack.tls.clone())
            .connect(server, tcp)
            .await
            .map_err(|e| format!("TLS with {name}: {e}"))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES));
    let (socket, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(|e| format!("the WebSocket handshake with {name} failed: {e}"))?;
    Ok(socket)
}

/// Reads `socket` until it closes, it stays silent too long, it has been
/// replaced for [`RETIRE_AFTER`], or `stop` turns true; says on `ended`
/// when it is to be replaced.
async fn connection(
    mut socket: Socket,
    host: Arc<Host>,
    slack: Arc<Slack>,
    mut stop: watch::Receiver<bool>,
    ended: oneshot::Sender<End>,
) {
    let mut ended = Some(ended);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let mut heard = Instant::now();
    let mut retire_at: Option<tokio::time::Instant> = None;
    let why = loop {
        let retire = async {
            match retire_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            frame = socket.next() => {
                heard = Instant::now();
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    // Pings are answered by the stream itself; a close is
                    // answered, then the stream ends.
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => break e.to_string(),
                    None => break "Slack closed it".to_owned(),
                };
                match envelope(&host, &slack, &text) {
                    Action::Nothing => {}
                    Action::Acknowledge(id) => {
                        let ack = json!({ "envelope_id": id }).to_string();
                        if let Err(e) = socket.send(Message::text(ack)).await {
                            break format!("acknowledging failed: {e}");
                        }
                    }
                    Action::Replace(reason) => {
                        if let Some(ended) = ended.take() {
                            let _ = ended.send(End::Asked(reason));
                        }
                        retire_at.get_or_insert(tokio::time::Instant::now() + RETIRE_AFTER);
                    }
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() > SILENT_LIMIT {
                    break format!("silent for {} s", SILENT_LIMIT.as_secs());
                }
                if let Err(e) = socket.send(Message::Ping(Bytes::new())).await {
                    break format!("pinging failed: {e}");
                }
            }
            () = retire => break "replaced".to_owned(),
            () = stopped(&mut stop) => break "the host is stopping".to_owned(),
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
    if let Some(ended) = ended.take() {
        let _ = ended.send(End::Dropped(why));
    } else {
        tracing::debug!("Slack Socket Mode: a replaced connection ended ({why})");
    }
}

/// Completes when `stop` turns true.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// What to do about a message read from Slack.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    Nothing,
    Acknowledge(String),
    Replace(String),
}

/// Takes the envelope `text` as Socket Mode sends it.
fn envelope(host: &Arc<Host>, slack: &Arc<Slack>, text: &str) -> Action {
    let Ok(message) = serde_json::from_str::<Value>(text) else {
        tracing::warn!("Slack Socket Mode: a message that is not JSON was ignored");
        return Action::Nothing;
    };
    match message["type"].as_str() {
        Some("hello") => return Action::Nothing,
        Some("disconnect") => {
            let reason = message["reason"].as_str().unwrap_or("none given");
            return Action::Replace(reason.to_owned());
        }
        _ => {}
    }
    let Some(id) = message["envelope_id"].as_str() else {
        return Action::Nothing;
    };
    if message["type"].as_str() == Some("events_api")
        && slack.take(host, &message["payload"]) == Taken::Busy
    {
        return Action::Nothing;
    }
    // Slash commands and interactions are not for plugins; acknowledged so
    // that Slack stops sending them.
    Action::Acknowledge(id.to_owned())
}

/// The waits between attempts to connect.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: FIRST_BACKOFF,
        }
    }
}

impl Backoff {
    /// The next wait: the current step and up to a quarter more.
    fn next(&mut self) -> Duration {
        let step = self.next;
        self.next = (step * 2).min(MAX_BACKOFF);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let quarter = step.as_nanos() as u64 / 4;
        step + Duration::from_nanos(u64::from(nanos) % quarter.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_a_minute_with_a_bounded_jitter() {
        let mut backoff = Backoff::default();
        let mut steps = Duration::from_secs(1);
        for _ in 0..10 {
            let wait = backoff.next();
            assert!(wait >= steps && wait <= steps + steps / 4, "{wait:?}");
            steps = (steps * 2).min(MAX_BACKOFF);
        }
        assert_eq!(backoff.next, MAX_BACKOFF);
    }
}
