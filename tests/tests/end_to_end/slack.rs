//! The Slack adapter against a fake Slack on loopback: signed Events API
//! requests in, `chat.postMessage` calls out. The fake signs requests as
//! Slack documents (`v0=` HMAC-SHA256 of `v0:TIMESTAMP:BODY` with the
//! signing secret), answers `auth.test`, and records every message posted.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use warden::{Config, Host};
use warden_tests::*;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const BOT: &str = "UBOT";

/// What the fake Slack saw.
#[derive(Debug, Default)]
struct Seen {
    /// The `chat.postMessage` bodies, in order.
    posted: Vec<Value>,
    /// The bearer tokens of every call.
    tokens: Vec<String>,
    /// How many `chat.postMessage` calls to refuse with `429` first.
    limit_first: usize,
}

type Fake = Arc<Mutex<Seen>>;

async fn auth_test(State(seen): State<Fake>, headers: HeaderMap) -> Json<Value> {
    record_token(&seen, &headers);
    Json(json!({"ok": true, "user_id": BOT, "user": "warden"}))
}

async fn post_message(
    State(seen): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    record_token(&seen, &headers);
    let mut seen = seen.lock().unwrap();
    if seen.limit_first > 0 {
        seen.limit_first -= 1;
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "").into_response();
    }
    seen.posted.push(body);
    Json(json!({"ok": true, "ts": "1.0"})).into_response()
}

fn record_token(seen: &Fake, headers: &HeaderMap) {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    seen.lock().unwrap().tokens.push(token);
}

/// Starts the fake Slack; its Web API's base URL.
async fn fake_slack(seen: Fake) -> String {
    let app = axum::Router::new()
        .route("/api/auth.test", axum::routing::post(auth_test))
        .route("/api/chat.postMessage", axum::routing::post(post_message))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/api")
}

/// A host with `plugins`, serving HTTP with the Slack adapter pointed at
/// the fake; its address.
async fn warden(
    plugins: &[&str],
    api: &str,
    extra: &str,
) -> (Arc<Host>, SocketAddr, tempfile::TempDir) {
    let dir = plugins_dir(plugins);
    let text = format!(
        "[slack]\nbot_token = \"xoxb-test\"\nsigning_secret = \"{SECRET}\"\napi_url = \"{api}\"\n{extra}"
    );
    let host = Host::builder()
        .config(Config::parse(&text, "t.toml".as_ref()).unwrap())
        .plugins_dir(dir.path())
        .backend(Arc::new(warden::storage::MemoryBackend::new()))
        .build()
        .await
        .unwrap();
    assert!(host.skipped().is_empty(), "{:?}", host.skipped());
    let host = Arc::new(host);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warden::adapters::http::serve(
        listener,
        host.clone(),
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
    assert!(tokens.iter().all(|t| t == "Bearer xoxb-test"), "{tokens:?}");
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
