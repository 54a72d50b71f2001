//! The Slack adapter against a fake Slack on loopback: signed Events API
//! requests, or Socket Mode envelopes, in; `chat.postMessage` calls out.
//! The fake signs requests as Slack documents (`v0=` HMAC-SHA256 of
//! `v0:TIMESTAMP:BODY` with the signing secret), answers `auth.test` and
//! `apps.connections.open`, serves the Socket Mode WebSocket, and records
//! every message posted and every envelope acknowledged.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;
use warden::adapters::slack::{Slack, post_scheduled};
use warden::{Config, Host};
use warden_tests::*;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const BOT: &str = "UBOT";

/// What the fake Slack saw.
#[derive(Debug, Default)]
struct Seen {
    /// The `chat.postMessage` bodies, in order.
    posted: Vec<Value>,
    /// Each call's method and bearer token.
    tokens: Vec<(&'static str, String)>,
    /// How many `chat.postMessage` calls to refuse with `429` first.
    limit_first: usize,
    /// Whether `chat.postMessage` calls wait (until this turns false).
    stall_posts: bool,
    /// The Socket Mode URL `apps.connections.open` gives.
    socket_url: String,
    /// How many `apps.connections.open` calls to fail first.
    fail_opens: usize,
    /// When each Socket Mode connection was opened, in order.
    opened: Vec<Instant>,
    /// Each Socket Mode connection's commands, in order of opening.
    sockets: Vec<mpsc::UnboundedSender<Command>>,
    /// Which connections have ended.
    ended: Vec<usize>,
    /// The envelope ids acknowledged, with the connection they came on.
    acks: Vec<(usize, String)>,
}

/// What the fake does on a Socket Mode connection.
#[derive(Debug)]
enum Command {
    /// Sends this text.
    Send(String),
    /// Closes with a close frame.
    Close,
    /// Drops the connection with no close frame, reading nothing more.
    Drop,
}

type Fake = Arc<Mutex<Seen>>;

async fn auth_test(State(seen): State<Fake>, headers: HeaderMap) -> Json<Value> {
    record_token(&seen, "auth.test", &headers);
    Json(json!({"ok": true, "user_id": BOT, "user": "warden"}))
}

async fn connections_open(State(seen): State<Fake>, headers: HeaderMap) -> Json<Value> {
    record_token(&seen, "apps.connections.open", &headers);
    let mut seen = seen.lock().unwrap();
    if seen.fail_opens > 0 {
        seen.fail_opens -= 1;
        return Json(json!({"ok": false, "error": "internal_error"}));
    }
    Json(json!({"ok": true, "url": seen.socket_url}))
}

async fn socket(State(seen): State<Fake>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| serve_socket(socket, seen))
}

/// One Socket Mode connection: `hello`, then the test's commands, with
/// every acknowledgement recorded.
async fn serve_socket(mut socket: WebSocket, seen: Fake) {
    let (commands, mut next) = mpsc::unbounded_channel();
    let n = {
        let mut seen = seen.lock().unwrap();
        seen.opened.push(Instant::now());
        seen.sockets.push(commands);
        seen.sockets.len() - 1
    };
    let hello = json!({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}});
    socket.send(Message::text(hello.to_string())).await.unwrap();
    loop {
        tokio::select! {
            command = next.recv() => match command {
                Some(Command::Send(text)) => {
                    if socket.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                Some(Command::Close) => {
                    let _ = socket.send(Message::Close(None)).await;
                }
                Some(Command::Drop) | None => break,
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    let ack: Value = serde_json::from_str(&text).unwrap();
                    let id = ack["envelope_id"].as_str().unwrap().to_owned();
                    seen.lock().unwrap().acks.push((n, id));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
        }
    }
    seen.lock().unwrap().ended.push(n);
}

async fn post_message(
    State(seen): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    record_token(&seen, "chat.postMessage", &headers);
    while seen.lock().unwrap().stall_posts {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut seen = seen.lock().unwrap();
    if seen.limit_first > 0 {
        seen.limit_first -= 1;
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "").into_response();
    }
    seen.posted.push(body);
    Json(json!({"ok": true, "ts": "1.0"})).into_response()
}

fn record_token(seen: &Fake, method: &'static str, headers: &HeaderMap) {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    seen.lock().unwrap().tokens.push((method, token));
}

/// Starts the fake Slack; its Web API's base URL.
async fn fake_slack(seen: Fake) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    seen.lock().unwrap().socket_url = format!("ws://{addr}/socket");
    let app = axum::Router::new()
        .route("/api/auth.test", axum::routing::post(auth_test))
        .route("/api/chat.postMessage", axum::routing::post(post_message))
        .route(
            "/api/apps.connections.open",
            axum::routing::post(connections_open),
        )
        .route("/socket", axum::routing::get(socket))
        .with_state(seen);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/api")
}

/// A host with `plugins`, on the memory backend, whose `[slack]` table has
/// the bot token and `slack` (more fields); the Slack adapter connected to
/// the Web API it names, and the plugins' directory.
async fn slack_host(plugins: &[&str], slack: &str) -> (Arc<Host>, Arc<Slack>, tempfile::TempDir) {
    let dir = plugins_dir(plugins);
    let text = format!("[slack]\nbot_token = \"xoxb-test\"\n{slack}");
    let host = Host::builder()
        .config(Config::parse(&text, "t.toml".as_ref()).unwrap())
        .plugins_dir(dir.path())
        .backend(Arc::new(warden::storage::MemoryBackend::new()))
        .build()
        .await
        .unwrap();
    assert!(host.skipped().is_empty(), "{:?}", host.skipped());
    let host = Arc::new(host);
    let slack = Slack::connect(&host.config().slack).await.unwrap();
    (host, slack, dir)
}

/// A host with `plugins`, serving HTTP with the Slack adapter pointed at
/// the fake; its address.
async fn warden(
    plugins: &[&str],
    api: &str,
    extra: &str,
) -> (Arc<Host>, SocketAddr, tempfile::TempDir) {
    let (host, slack, dir) = slack_host(
        plugins,
        &format!("signing_secret = \"{SECRET}\"\napi_url = \"{api}\"\n{extra}"),
    )
    .await;
    tokio::spawn(post_scheduled(&host, slack.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warden::adapters::http::serve(
        listener,
        host.clone(),
        Some(slack),
        std::future::pending(),
    ));
    (host, addr, dir)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Slack's signature of `body` sent at `timestamp`.
fn sign(secret: &str, timestamp: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("v0={hex}")
}

/// Posts `body` to `/slack/events` as Slack would, with `headers` added.
async fn deliver(
    addr: SocketAddr,
    body: &Value,
    signature: Option<(&str, u64)>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let body = body.to_string();
    use_ring();
    let mut request = reqwest::Client::new()
        .post(format!("http://{addr}/slack/events"))
        .header("content-type", "application/json");
    if let Some((secret, at)) = signature {
        request = request
            .header("x-slack-request-timestamp", at.to_string())
            .header("x-slack-signature", sign(secret, at, &body));
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.body(body).send().await.unwrap()
}

/// A `message` event in channel `C1` from `U1`.
fn message(id: usize, text: &str) -> Value {
    json!({
        "type": "event_callback",
        "event_id": format!("Ev{id}"),
        "event": {"type": "message", "user": "U1", "channel": "C1", "ts": format!("1700000000.{id:06}"), "text": text, "channel_type": "channel"}
    })
}

/// Waits until the fake has `n` posted messages; them.
async fn posted(seen: &Fake, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let posted = seen.lock().unwrap().posted.clone();
        if posted.len() >= n {
            return posted;
        }
        assert!(
            Instant::now() < deadline,
            "{n} messages expected, got {posted:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_transcript_as_signed_slack_events_gets_the_seeds_replies() {
    let seen = Fake::default();
    let api = fake_slack(seen.clone()).await;
    let (_host, addr, _dir) = warden(&[STORAGE], &api, "").await;
    for (i, line) in TRANSCRIPT
        .lines()
        .take(TRANSCRIPT_REPLIES.len())
        .enumerate()
    {
        let started = Instant::now();
        let answer = deliver(
            addr,
            &message(i, &format!("<@{BOT}> {line}")),
            Some((SECRET, now())),
            &[],
        )
        .await;
        assert_eq!(answer.status(), 200);
        // Acknowledged well within Slack's three seconds.
        assert!(started.elapsed() < Duration::from_secs(3));
        posted(&seen, i + 1).await;
    }
    let posted = posted(&seen, TRANSCRIPT_REPLIES.len()).await;
    let texts: Vec<&str> = posted.iter().map(|p| p["text"].as_str().unwrap()).collect();
    assert_eq!(texts, TRANSCRIPT_REPLIES);
    assert!(
        posted
            .iter()
            .all(|p| p["channel"] == "C1" && p.get("thread_ts").is_none())
    );
    let tokens = seen.lock().unwrap().tokens.clone();
    assert!(
        tokens.iter().all(|(_, t)| t == "Bearer xoxb-test"),
        "{tokens:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_mention_and_thread_and_schedules_post_to_their_channel() {
    let seen = Fake::default();
    let api = fake_slack(seen.clone()).await;
    let settings = "[settings.\"warden.tests.Contract\"]\ngreeting = \"hi\"\n[schedules]\nchannel = \"C-general\"\n";
    let (_host, addr, _dir) = warden(&[CONTRACT], &api, settings).await;
    let reply = |seen: &Fake, text: &str| {
        seen.lock()
            .unwrap()
            .posted
            .iter()
            .find(|p| p["text"].as_str().is_some_and(|t| t.contains(text)))
            .cloned()
    };
    deliver(
        addr,
        &message(1, &format!("<@{BOT}>: reply to me")),
        Some((SECRET, now())),
        &[],
    )
    .await;
    let mut thread = message(2, &format!("<@{BOT}> reply in thread"));
    thread["event"]["thread_ts"] = json!("1699999999.000001");
    deliver(addr, &thread, Some((SECRET, now())), &[]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while reply(&seen, "here you are").is_none()
        || reply(&seen, "in the thread").is_none()
        || reply(&seen, "tick ").is_none()
    {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            seen.lock().unwrap().posted
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mention = reply(&seen, "here you are").unwrap();
    assert_eq!(
        mention,
        json!({"channel": "C1", "text": "<@U1>: here you are"})
    );
    let threaded = reply(&seen, "in the thread").unwrap();
    assert_eq!(threaded["thread_ts"], "1699999999.000001");
    assert_eq!(reply(&seen, "tick ").unwrap()["channel"], "C-general");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_stale_requests_retries_and_the_bots_own_messages_are_not_handled() {
    let seen = Fake::default();
    let api = fake_slack(seen.clone()).await;
    let (host, addr, _dir) = warden(&[STORAGE], &api, "").await;
    let store = |i| message(i, &format!("<@{BOT}> store v{i} under k{i}"));

    // Refused: no signature, a wrong secret, a stale or future timestamp.
    for (signature, why) in [
        (None, "no X-Slack-Request-Timestamp"),
        (
            Some(("wrong-secret", now())),
            "the signature does not match",
        ),
        (Some((SECRET, now() - 400)), "more than five minutes"),
        (Some((SECRET, now() + 400)), "more than five minutes"),
    ] {
        let answer = deliver(addr, &store(1), signature, &[]).await;
        assert_eq!(answer.status(), 401);
        let body: Value = answer.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains(why), "{body}");
    }
    // A tampered body fails its signature.
    let body = store(1).to_string();
    let at = now();
    use_ring();
    let answer = reqwest::Client::new()
        .post(format!("http://{addr}/slack/events"))
        .header("x-slack-request-timestamp", at.to_string())
        .header("x-slack-signature", sign(SECRET, at, &body))
        .body(body.replace("v1", "v9"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);

    // The URL verification challenge.
    let challenge = json!({"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "token": "x"});
    let answer: Value = deliver(addr, &challenge, Some((SECRET, now())), &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer,
        json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
    );

    // Handled once: a retry of the same event, and the app_mention event
    // of the same message, are not handled again.
    deliver(addr, &store(1), Some((SECRET, now())), &[]).await;
    deliver(
        addr,
        &store(1),
        Some((SECRET, now())),
        &[
            ("x-slack-retry-num", "1"),
            ("x-slack-retry-reason", "http_timeout"),
        ],
    )
    .await;
    let mut mention = store(1);
    mention["event_id"] = json!("EvMention1");
    mention["event"]["type"] = json!("app_mention");
    deliver(addr, &mention, Some((SECRET, now())), &[]).await;
    // Not handled: the bot's own message, an edit, a message that does not
    // address the bot; a direct message needs no mention.
    let mut own = message(2, &format!("<@{BOT}> store x under own"));
    own["event"]["user"] = json!(BOT);
    deliver(addr, &own, Some((SECRET, now())), &[]).await;
    let mut edit = message(3, &format!("<@{BOT}> store x under edit"));
    edit["event"]["subtype"] = json!("message_changed");
    deliver(addr, &edit, Some((SECRET, now())), &[]).await;
    deliver(
        addr,
        &message(4, "store x under nobody"),
        Some((SECRET, now())),
        &[],
    )
    .await;
    let mut direct = message(5, "store v5 under k5");
    direct["event"]["channel_type"] = json!("im");
    deliver(addr, &direct, Some((SECRET, now())), &[]).await;

    let posted = posted(&seen, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let posted_now = seen.lock().unwrap().posted.clone();
    assert_eq!(posted_now.len(), 2, "{posted_now:?}");
    let texts: Vec<&str> = posted.iter().map(|p| p["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["'v1' stored under k1!", "'v5' stored under k5!"]);
    // The refusals are counted.
    assert!(
        host.metrics()
            .encode()
            .contains("warden_http_refused_total{reason=\"unauthorized\"} 5")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_reply_is_sent_once_after_retry_after() {
    let seen = Fake::default();
    seen.lock().unwrap().limit_first = 1;
    let api = fake_slack(seen.clone()).await;
    let (_host, addr, _dir) = warden(&[STORAGE], &api, "").await;
    let started = Instant::now();
    deliver(
        addr,
        &message(1, &format!("<@{BOT}> store a under b")),
        Some((SECRET, now())),
        &[],
    )
    .await;
    let posted = posted(&seen, 1).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not waited for"
    );
    assert_eq!(posted[0]["text"], "'a' stored under b!");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen.lock().unwrap().posted.len(), 1);
}

/// A host with `plugins` receiving events over Socket Mode from the fake;
/// stopping it is sending on the sender, and the task ends when it has.
async fn socket_warden(
    plugins: &[&str],
    api: &str,
) -> (
    Arc<Host>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), warden::adapters::slack::SlackError>>,
    tempfile::TempDir,
) {
    let (host, slack, dir) = slack_host(
        plugins,
        &format!("app_token = \"xapp-test\"\napi_url = \"{api}\"\n"),
    )
    .await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(warden::adapters::slack::socket::run(
        host.clone(),
        slack,
        async {
            let _ = stopped.await;
        },
    ));
    (host, stop, task, dir)
}

/// The Socket Mode envelope of a [`message`] event.
fn envelope(envelope_id: &str, event: Value, retry: u32) -> String {
    json!({
        "envelope_id": envelope_id,
        "type": "events_api",
        "accepts_response_payload": false,
        "retry_attempt": retry,
        "retry_reason": if retry > 0 { "timeout" } else { "" },
        "payload": event,
    })
    .to_string()
}

/// Waits until `check` holds of what the fake saw.
async fn until(seen: &Fake, what: &str, check: impl Fn(&Seen) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check(&seen.lock().unwrap()) {
        assert!(
            Instant::now() < deadline,
            "waited in vain for {what}: {:?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Has the fake's Socket Mode connection `n` do `command`.
fn on_socket(seen: &Fake, n: usize, command: Command) {
    seen.lock().unwrap().sockets[n].send(command).unwrap();
}

fn acked(seen: &Seen, id: &str) -> bool {
    seen.acks.iter().any(|(_, a)| a == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_transcript_through_socket_mode_gets_the_seeds_replies() {
    let seen = Fake::default();
    let api = fake_slack(seen.clone()).await;
    let (_host, stop, task, _dir) = socket_warden(&[STORAGE], &api).await;
    until(&seen, "a connection", |s| s.sockets.len() == 1).await;
    for (i, line) in TRANSCRIPT
        .lines()
        .take(TRANSCRIPT_REPLIES.len())
        .enumerate()
    {
        let id = format!("env-{i}");
        let event = message(i, &format!("<@{BOT}> {line}"));
        on_socket(&seen, 0, Command::Send(envelope(&id, event, 0)));
        until(&seen, "the acknowledgement", |s| acked(s, &id)).await;
        posted(&seen, i + 1).await;
    }
    let posted = posted(&seen, TRANSCRIPT_REPLIES.len()).await;
    let texts: Vec<&str> = posted.iter().map(|p| p["text"].as_str().unwrap()).collect();
    assert_eq!(texts, TRANSCRIPT_REPLIES);
    assert!(
        posted
            .iter()
            .all(|p| p["channel"] == "C1" && p.get("thread_ts").is_none())
    );
    // The app-level token opens connections, the bot's token posts.
    let tokens = seen.lock().unwrap().tokens.clone();
    for (method, token) in &tokens {
        let expected = match *method {
            "apps.connections.open" => "Bearer xapp-test",
            _ => "Bearer xoxb-test",
        };
        assert_eq!(token, expected, "{method}");
    }
    assert!(tokens.iter().any(|(m, _)| *m == "apps.connections.open"));

    // Stopping closes the connection and ends the task.
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("Socket Mode stops")
        .unwrap()
        .unwrap();
    until(&seen, "the connection's end", |s| s.ended == [0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_reconnects_when_asked_or_dropped_and_handles_each_event_once() {
    let seen = Fake::default();
    let api = fake_slack(seen.clone()).await;
    let (_host, _stop, _task, _dir) = socket_warden(&[STORAGE], &api).await;
    let store = |i: usize| message(i, &format!("<@{BOT}> store v{i} under k{i}"));
    until(&seen, "a connection", |s| s.sockets.len() == 1).await;
    on_socket(&seen, 0, Command::Send(envelope("e1", store(1), 0)));
    until(&seen, "e1's acknowledgement", |s| acked(s, "e1")).await;

    // Slack asks for a new connection: one is opened at once, and the old
    // one is still read until Slack closes it.
    let refresh = json!({"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "applink-1"}});
    on_socket(&seen, 0, Command::Send(refresh.to_string()));
    until(&seen, "a second connection", |s| s.sockets.len() == 2).await;
    on_socket(&seen, 0, Command::Send(envelope("e2", store(2), 0)));
    until(&seen, "e2's acknowledgement on the old connection", |s| {
        s.acks.contains(&(0, "e2".into()))
    })
    .await;
    on_socket(&seen, 0, Command::Close);
    until(&seen, "the old connection's end", |s| s.ended == [0]).await;
    on_socket(&seen, 1, Command::Send(envelope("e3", store(3), 0)));
    until(&seen, "e3's acknowledgement", |s| acked(s, "e3")).await;
    // Slack delivers e3 again (its acknowledgement was late, say): it is
    // acknowledged, not handled again.
    on_socket(&seen, 1, Command::Send(envelope("e3-again", store(3), 1)));
    until(&seen, "the redelivery's acknowledgement", |s| {
        acked(s, "e3-again")
    })
    .await;

    // The connection drops with an event Slack did not see acknowledged:
    // it is delivered again on the next connection, after a backoff, and
    // handled once whether or not the first delivery got through.
    on_socket(&seen, 1, Command::Send(envelope("e4", store(4), 0)));
    on_socket(&seen, 1, Command::Drop);
    let dropped = Instant::now();
    until(&seen, "a third connection", |s| s.sockets.len() == 3).await;
    assert!(
        seen.lock().unwrap().opened[2] >= dropped + Duration::from_millis(900),
        "no backoff after a drop"
    );
    on_socket(&seen, 2, Command::Send(envelope("e4-again", store(4), 1)));
    until(&seen, "the redelivery's acknowledgement", |s| {
        acked(s, "e4-again")
    })
    .await;

    let posted = posted(&seen, 4).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let posted_now = seen.lock().unwrap().posted.clone();
    assert_eq!(posted_now.len(), 4, "{posted_now:?}");
    let texts: Vec<&str> = posted.iter().map(|p| p["text"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        [
            "'v1' stored under k1!",
            "'v2' stored under k2!",
            "'v3' stored under k3!",
            "'v4' stored under k4!"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_retries_a_failed_open_with_a_growing_backoff() {
    let seen = Fake::default();
    seen.lock().unwrap().fail_opens = 2;
    let api = fake_slack(seen.clone()).await;
    let started = Instant::now();
    let (_host, _stop, _task, _dir) = socket_warden(&[STORAGE], &api).await;
    until(&seen, "a connection", |s| s.sockets.len() == 1).await;
    // Waits of 1 s and 2 s (and up to a quarter more each).
    let waited = seen.lock().unwrap().opened[0] - started;
    assert!(waited >= Duration::from_secs(3), "{waited:?}");
    let opens = seen
        .lock()
        .unwrap()
        .tokens
        .iter()
        .filter(|(m, _)| *m == "apps.connections.open")
        .count();
    assert_eq!(opens, 3);
    // A slash command's envelope is acknowledged and not handled; an
    // event after it is.
    let command =
        json!({"envelope_id": "cmd1", "type": "slash_commands", "payload": {"command": "/warden"}});
    on_socket(&seen, 0, Command::Send(command.to_string()));
    on_socket(&seen, 0, Command::Send("not json".into()));
    let event = message(1, &format!("<@{BOT}> store a under b"));
    on_socket(&seen, 0, Command::Send(envelope("e1", event, 0)));
    let posted = posted(&seen, 1).await;
    assert_eq!(posted[0]["text"], "'a' stored under b!");
    until(&seen, "both acknowledgements", |s| {
        acked(s, "cmd1") && acked(s, "e1")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warden_run_with_only_socket_mode_serves_until_sigterm_though_stdin_is_closed() {
    let seen = Fake::default();
    let api = fake_slack(seen.clone()).await;
    let plugins = plugins_dir(&[STORAGE]);
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("warden.toml");
    std::fs::write(
        &config,
        format!("[slack]\nbot_token = \"xoxb-test\"\napi_url = \"{api}\"\n"),
    )
    .unwrap();
    let db = data.path().join("db");
    let mut args = run_args(plugins.path(), &db, &[]);
    args.extend(["--config".as_ref(), config.as_os_str()]);
    // The app-level token comes from the environment.
    let mut child = tokio::process::Command::new(warden_bin!())
        .args(args)
        .env("WARDEN_SLACK_APP_TOKEN", "xapp-test")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    until(&seen, "a connection", |s| s.sockets.len() == 1).await;
    let event = message(1, &format!("<@{BOT}> store a under b"));
    on_socket(&seen, 0, Command::Send(envelope("e1", event, 0)));
    let posted = posted(&seen, 1).await;
    assert_eq!(posted[0]["text"], "'a' stored under b!");
    assert!(child.try_wait().unwrap().is_none(), "warden exited");

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("warden stops after SIGTERM")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        !stderr.contains("xapp-test"),
        "a token was logged: {stderr}"
    );
    assert!(!stderr.contains("reading messages from stdin"), "{stderr}");
    until(&seen, "the connection's end", |s| s.ended == [0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_beyond_the_in_flight_bound_are_refused_for_slack_to_deliver_again() {
    let seen = Fake::default();
    // A slow Slack: replies wait, so the events answered pile up.
    seen.lock().unwrap().stall_posts = true;
    let api = fake_slack(seen.clone()).await;
    let (_host, addr, _dir) = warden(&[STORAGE], &api, "max_events_in_flight = 2\n").await;
    let store = |i| message(i, &format!("<@{BOT}> store v{i} under k{i}"));
    for i in 1..=2 {
        let answer = deliver(addr, &store(i), Some((SECRET, now())), &[]).await;
        assert_eq!(answer.status(), 200);
    }
    until(&seen, "two replies waiting", |s| {
        s.tokens
            .iter()
            .filter(|(m, _)| *m == "chat.postMessage")
            .count()
            == 2
    })
    .await;
    let refused = deliver(addr, &store(3), Some((SECRET, now())), &[]).await;
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("deliver it again"),
        "{body}"
    );

    // Slack delivers it again once the replies went out: it is handled.
    seen.lock().unwrap().stall_posts = false;
    posted(&seen, 2).await;
    let again = deliver(
        addr,
        &store(3),
        Some((SECRET, now())),
        &[("x-slack-retry-num", "1")],
    )
    .await;
    assert_eq!(again.status(), 200);
    let posted = posted(&seen, 3).await;
    assert_eq!(posted[2]["text"], "'v3' stored under k3!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_mode_message_over_4_mib_drops_the_connection_not_the_host() {
    let seen = Fake::default();
    let api = fake_slack(seen.clone()).await;
    let (_host, _stop, _task, _dir) = socket_warden(&[STORAGE], &api).await;
    until(&seen, "a connection", |s| s.sockets.len() == 1).await;
    // A 5 MiB envelope: refused unread, and the connection replaced.
    let huge = envelope(
        "huge",
        message(
            1,
            &format!("<@{BOT}> store {} under k", "x".repeat(5 << 20)),
        ),
        0,
    );
    on_socket(&seen, 0, Command::Send(huge));
    until(&seen, "a second connection", |s| s.sockets.len() == 2).await;
    assert!(!acked(&seen.lock().unwrap(), "huge"));
    let event = message(2, &format!("<@{BOT}> store a under b"));
    on_socket(&seen, 1, Command::Send(envelope("e2", event, 0)));
    let posted = posted(&seen, 1).await;
    assert_eq!(posted[0]["text"], "'a' stored under b!");
}
