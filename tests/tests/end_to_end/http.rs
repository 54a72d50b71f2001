//! The HTTP adapter, driven with a real HTTP client against `warden run
//! --listen` on a loopback port.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use warden_tests::server::Server;
use warden_tests::*;

const STORAGE_ID: &str = "example.storage.StoragePlugin";
const NOTES_ID: &str = "example.notes.NotesPlugin";
const PROBE_ID: &str = "warden.tests.Probe";

fn client() -> Client {
    use_ring();
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// `warden run --listen 127.0.0.1:0` over `plugins`, on sled in `data`,
/// with `extra` arguments.
fn serve(plugins: &Path, data: &Path, extra: &[&str]) -> Server {
    let mut args: Vec<&OsStr> = run_args(
        plugins,
        data,
        &["--listen".as_ref(), "127.0.0.1:0".as_ref()],
    );
    args.extend(extra.iter().map(OsStr::new));
    Server::start(warden_bin!(), args, &[])
}

fn post(server: &Server, body: Value) -> Value {
    let response = client()
        .post(server.url("/v1/messages"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().unwrap()
}

/// The JSON error of a failed request, checking its status.
fn error_of(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "errors are JSON"
    );
    let body: Value = response.json().unwrap();
    body["error"].as_str().expect("an error message").to_owned()
}

/// The value of the metric sample `series` (name and labels, as written).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn messages_get_the_replies_and_errors_of_every_handler() {
    let plugins = plugins_dir(&[STORAGE, NOTES, PROBE]);
    let data = tempfile::tempdir().unwrap();
    let server = serve(plugins.path(), data.path(), &[]);

    assert_eq!(
        post(
            &server,
            json!({"text": "store hello world under greeting", "user": "ann", "channel": "general"})
        ),
        json!({
            "replies": [{
                "plugin": STORAGE_ID,
                "handler": "store",
                "text": "'hello world' stored under greeting!"
            }],
            "errors": []
        })
    );
    assert_eq!(
        post(&server, json!({"text": "retrieve greeting"}))["replies"],
        json!([{
            "plugin": STORAGE_ID,
            "handler": "retrieve",
            "text": "'hello world' retrieved from <greeting>!"
        }])
    );
    // respond-to routes see only messages addressed to the bot.
    assert_eq!(
        post(
            &server,
            json!({"text": "retrieve greeting", "addressed": false})
        ),
        json!({"replies": [], "errors": []})
    );
    // A handler's failure is reported with its plugin and handler; its own
    // text stays in the log, under the reference the answer gives.
    let answer = post(&server, json!({"text": "fail"}));
    assert_eq!(answer["replies"], json!([]));
    assert_eq!(answer["errors"][0]["plugin"], PROBE_ID);
    assert_eq!(answer["errors"][0]["handler"], "fail");
    let error = answer["errors"][0]["error"].as_str().unwrap();
    let reference = error
        .strip_prefix("failed; see the host log (reference ")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{error}"));
    server.log_line(Duration::from_secs(10), |l| {
        l.contains(&format!("reference={reference}")) && l.contains("probe asked to fail")
    });

    let stopped = server.terminate();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(stopped.stderr.contains("terminated; shutting down"));

    // The store was closed cleanly: the data is there for the next run.
    let out = run_warden(
        warden_bin!(),
        run_args(plugins.path(), data.path(), &[]),
        "retrieve greeting\n",
    );
    assert!(out.status.success(), "{}", stderr_text(&out));
    assert_eq!(
        stdout_lines(&out),
        ["'hello world' retrieved from <greeting>!"]
    );
}

#[test]
fn plugins_are_listed_with_their_digest_routes_and_grant() {
    let plugins = plugins_dir(&[STORAGE, NOTES, BAD_IDENTITY]);
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("warden.toml");
    std::fs::write(
        &config,
        format!("[grants.\"{NOTES_ID}\"]\nshared = \"read-write\"\nwrite = [\"notes:\"]\n"),
    )
    .unwrap();
    let server = serve(
        plugins.path(),
        &data.path().join("db"),
        &["--config", config.to_str().unwrap()],
    );

    let response = client().get(server.url("/v1/plugins")).send().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().unwrap();
    let listed = body["plugins"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{body:#}");
    let notes = &listed[0];
    let storage = &listed[1];
    assert_eq!(notes["id"], NOTES_ID);
    assert_eq!(
        notes["grant"],
        json!({"shared": "read-write", "read": [], "write": ["notes:"]})
    );
    assert_eq!(
        storage["grant"],
        json!({"shared": "none", "read": [], "write": []})
    );

    assert_eq!(storage["id"], STORAGE_ID);
    assert_eq!(storage["version"], "0.1.0");
    assert_eq!(
        storage["description"],
        "Stores, retrieves and deletes text by key"
    );
    let file = plugins.path().join(STORAGE);
    assert_eq!(storage["file"], file.display().to_string());
    let digest: String = Sha256::digest(std::fs::read(&file).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(storage["digest"], digest);
    assert_eq!(
        storage["routes"][0],
        json!({
            "kind": "respond-to",
            "pattern": r"store (?P<text>.*) under (?P<key>\w+)",
            "handler": "store"
        })
    );
    assert_eq!(storage["routes"].as_array().unwrap().len(), 5);

    let skipped = body["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{body:#}");
    assert!(
        skipped[0]
            .as_str()
            .unwrap()
            .contains("bad_identity.wasm: invalid plugin identity"),
        "{body:#}"
    );
}

#[test]
fn health_and_metrics_report_what_happened() {
    let plugins = plugins_dir(&[STORAGE, NOTES]);
    let data = tempfile::tempdir().unwrap();
    let server = serve(plugins.path(), data.path(), &[]);

    let health = client().get(server.url("/healthz")).send().unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().unwrap(), "ok");

    let scrape = || {
        let response = client().get(server.url("/metrics")).send().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4"),
        );
        response.text().unwrap()
    };
    let before = scrape();
    assert_eq!(metric(&before, "warden_messages_received_total"), Some(0.0));
    assert_eq!(metric(&before, "warden_plugins_loaded"), Some(2.0));
    let calls = format!("warden_handler_calls_total{{plugin=\"{STORAGE_ID}\"}}");
    assert_eq!(metric(&before, &calls), Some(0.0), "{before}");

    post(
        &server,
        json!({"text": "store s3cretvalue under s3cretkey"}),
    );
    post(&server, json!({"text": "retrieve s3cretkey"}));
    // Without a grant, the notes plugin's shared write is denied.
    post(
        &server,
        json!({"text": "publish s3cretnote as s3cretshared"}),
    );
    post(&server, json!({"text": "nothing matches this"}));

    let after = scrape();
    assert_eq!(
        metric(&after, "warden_messages_received_total"),
        Some(4.0),
        "{after}"
    );
    assert_eq!(metric(&after, &calls), Some(2.0), "{after}");
    let errors = format!("warden_handler_errors_total{{plugin=\"{STORAGE_ID}\"}}");
    assert_eq!(metric(&after, &errors), Some(0.0), "{after}");
    let count = format!("warden_handler_duration_seconds_count{{plugin=\"{STORAGE_ID}\"}}");
    assert_eq!(metric(&after, &count), Some(2.0), "{after}");
    let inf =
        format!("warden_handler_duration_seconds_bucket{{plugin=\"{STORAGE_ID}\",le=\"+Inf\"}}");
    assert_eq!(metric(&after, &inf), Some(2.0), "{after}");
    for (op, n) in [("set", 1.0), ("get", 1.0), ("delete", 0.0)] {
        let series =
            format!("warden_storage_operations_total{{plugin=\"{STORAGE_ID}\",op=\"{op}\"}}");
        assert_eq!(metric(&after, &series), Some(n), "{series}\n{after}");
    }
    let denied = format!(
        "warden_storage_errors_total{{plugin=\"{NOTES_ID}\",op=\"set\",error=\"access-denied\"}}"
    );
    assert_eq!(metric(&after, &denied), Some(1.0), "{after}");
    // Keys and values never appear in metrics.
    assert!(!after.contains("s3cret"), "{after}");
}

#[test]
fn bad_requests_get_json_errors_with_fitting_status() {
    let plugins = plugins_dir(&[STORAGE]);
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("warden.toml");
    std::fs::write(&config, "[http]\nmax_body_bytes = 2048\n").unwrap();
    let server = serve(
        plugins.path(),
        &data.path().join("db"),
        &["--config", config.to_str().unwrap()],
    );
    let post_raw = |body: &str| {
        client()
            .post(server.url("/v1/messages"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .unwrap()
    };

    let e = error_of(post_raw("{\"text\": "), StatusCode::BAD_REQUEST);
    assert!(e.contains("invalid JSON") && e.contains("EOF"), "{e}");
    let e = error_of(post_raw("{\"user\": \"ann\"}"), StatusCode::BAD_REQUEST);
    assert!(e.contains("missing field `text`"), "{e}");
    let e = error_of(post_raw("{\"txt\": \"hi\"}"), StatusCode::BAD_REQUEST);
    assert!(e.contains("unknown field `txt`"), "{e}");
    let e = error_of(post_raw("{\"text\": 5}"), StatusCode::BAD_REQUEST);
    assert!(e.contains("invalid type: integer `5`"), "{e}");
    let e = error_of(post_raw("{\"text\": \"  \"}"), StatusCode::BAD_REQUEST);
    assert!(e.contains("text"), "{e}");

    // Over the limit: refused whole. At the limit: accepted.
    let long = format!("{{\"text\": \"{}\"}}", "a".repeat(8 * 1024));
    let e = error_of(post_raw(&long), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(e.contains("2048 bytes"), "{e}");
    let padding = 2048 - "{\"text\": \"store x under k\"}".len();
    let fits = format!("{{\"text\": \"store x under k\"}}{}", " ".repeat(padding));
    assert_eq!(fits.len(), 2048);
    assert_eq!(post_raw(&fits).status(), StatusCode::OK);

    let not_json = client()
        .post(server.url("/v1/messages"))
        .header("content-type", "text/plain")
        .body("{\"text\": \"store x under k\"}")
        .send()
        .unwrap();
    let e = error_of(not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(e.contains("application/json"), "{e}");

    let e = error_of(
        client().get(server.url("/v2/nothing")).send().unwrap(),
        StatusCode::NOT_FOUND,
    );
    assert!(e.contains("/v2/nothing"), "{e}");
    let wrong_method = client().get(server.url("/v1/messages")).send().unwrap();
    assert_eq!(wrong_method.headers()["allow"], "POST");
    let e = error_of(wrong_method, StatusCode::METHOD_NOT_ALLOWED);
    assert!(e.contains("GET"), "{e}");
    let e = error_of(
        client().delete(server.url("/v1/plugins")).send().unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
    );
    assert!(e.contains("DELETE"), "{e}");

    // The server still serves after all that.
    assert_eq!(
        client()
            .get(server.url("/healthz"))
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[test]
fn console_and_http_run_together_until_sigterm() {
    let plugins = plugins_dir(&[STORAGE]);
    let data = tempfile::tempdir().unwrap();
    let mut server = serve(plugins.path(), data.path(), &["--console"]);
    let wait = Duration::from_secs(60);

    server.write_stdin("store from the console under k\n");
    assert_eq!(
        server.stdout_line(wait).as_deref(),
        Some("'from the console' stored under k!")
    );
    assert_eq!(
        post(&server, json!({"text": "retrieve k"}))["replies"][0]["text"],
        "'from the console' retrieved from <k>!"
    );
    post(&server, json!({"text": "store from HTTP under k"}));
    server.write_stdin("retrieve k\n");
    assert_eq!(
        server.stdout_line(wait).as_deref(),
        Some("'from HTTP' retrieved from <k>!")
    );

    // The end of the console's input leaves HTTP serving.
    server.close_stdin();
    let started = std::time::Instant::now();
    while !server.stderr().contains("end of console input") {
        assert!(started.elapsed() < wait, "{}", server.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.is_running());
    assert_eq!(
        post(&server, json!({"text": "retrieve k"}))["replies"][0]["text"],
        "'from HTTP' retrieved from <k>!"
    );

    let stopped = server.terminate();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

#[test]
fn a_taken_address_fails_at_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let plugins = plugins_dir(&[STORAGE]);
    let data = tempfile::tempdir().unwrap();
    let out = run_warden(
        warden_bin!(),
        run_args(
            plugins.path(),
            data.path(),
            &["--listen".as_ref(), OsStr::new(&addr)],
        ),
        "",
    );
    assert!(!out.status.success());
    let err = stderr_text(&out);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

/// The texts of the replies `text` gets.
fn replies_to(server: &Server, text: &str) -> Vec<String> {
    let answer = post(server, json!({ "text": text }));
    answer["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["text"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls until `check` holds, for at most ten seconds; returns how long.
fn within_seconds(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = std::time::Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not within 10 s: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

#[test]
fn a_plugin_dropped_into_a_running_host_answers_over_http_then_is_replaced_and_removed() {
    let plugins = plugins_dir(&[STORAGE]);
    let data = tempfile::tempdir().unwrap();
    let server = serve(plugins.path(), data.path(), &[]);
    assert!(replies_to(&server, "remember hi as k").is_empty());

    // Dropped in: written under another name, then renamed into place.
    let dest = plugins.path().join(NOTES);
    let stage = |bytes: &[u8]| {
        let tmp = plugins.path().join("notes.partial");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &dest).unwrap();
    };
    let original = std::fs::read(wasm(NOTES)).unwrap();
    stage(&original);
    let took = within_seconds("the new plugin answers", || {
        replies_to(&server, "remember hi as k") == ["noted 'hi' as <k>."]
    });
    assert!(took < Duration::from_secs(5), "{took:?}");

    // Replaced by a new build (a custom section appended): same identity,
    // same data.
    let digest_of = |server: &Server| -> String {
        let listed: Value = client()
            .get(server.url("/v1/plugins"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let notes = listed["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == NOTES_ID)
            .cloned();
        notes
            .map(|p| p["digest"].as_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let before = digest_of(&server);
    let mut rebuilt = original.clone();
    rebuilt.extend_from_slice(&[0, 3, 1, b't', 9]);
    stage(&rebuilt);
    let expected = format!("{:x}", Sha256::digest(&rebuilt));
    within_seconds("the new build is loaded", || digest_of(&server) == expected);
    assert_ne!(before, expected);
    assert_eq!(replies_to(&server, "recall k"), ["<k> is 'hi'."]);

    // Removed: it stops answering; the other plugin goes on.
    std::fs::remove_file(&dest).unwrap();
    within_seconds("the removed plugin is gone", || {
        replies_to(&server, "recall k").is_empty()
    });
    assert_eq!(
        replies_to(&server, "store v under k"),
        ["'v' stored under k!"]
    );
}

#[test]
fn bearer_tokens_guard_every_route_but_the_health_check() {
    let plugins = plugins_dir(&[STORAGE]);
    let data = tempfile::tempdir().unwrap();
    let hashed: String = Sha256::digest(b"admin-t0ken")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tokens = data.path().join("tokens");
    std::fs::write(&tokens, format!("messages-t0ken\nsha256:{hashed} admin\n")).unwrap();
    let args: Vec<&OsStr> = run_args(
        plugins.path(),
        data.path(),
        &["--listen".as_ref(), "127.0.0.1:0".as_ref()],
    );
    let server = Server::start(
        warden_bin!(),
        args,
        &[
            ("WARDEN_HTTP_TOKENS_FILE", tokens.to_str().unwrap()),
            ("WARDEN_HTTP_TOKEN", "env-t0ken"),
        ],
    );
    let http = client();
    let message = json!({"text": "store hello under greeting"});
    let send = |token: Option<&str>| {
        let mut request = http.post(server.url("/v1/messages")).json(&message);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().unwrap()
    };
    // No token, or a wrong one: 401 with a challenge.
    for token in [None, Some("wrong"), Some("")] {
        let response = send(token);
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"warden\""
        );
        let e = error_of(response, StatusCode::UNAUTHORIZED);
        assert!(e.contains("bearer token"), "{e}");
    }
    assert_eq!(send(Some("messages-t0ken")).status(), StatusCode::OK);
    assert_eq!(send(Some("env-t0ken")).status(), StatusCode::OK);
    // The admin routes take an admin token only.
    for path in ["/v1/plugins", "/metrics"] {
        let get = |token: &str| {
            http.get(server.url(path))
                .bearer_auth(token)
                .send()
                .unwrap()
        };
        let e = error_of(get("messages-t0ken"), StatusCode::FORBIDDEN);
        assert!(e.contains("admin scope"), "{e}");
        assert_eq!(get("admin-t0ken").status(), StatusCode::OK, "{path}");
        assert_eq!(get("env-t0ken").status(), StatusCode::OK, "{path}");
        assert_eq!(
            http.get(server.url(path)).send().unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let e = error_of(send(Some("admin-t0ken")), StatusCode::FORBIDDEN);
    assert!(e.contains("messages scope"), "{e}");
    // Unknown paths reveal nothing without a token.
    assert_eq!(
        http.get(server.url("/nowhere")).send().unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let health = http.get(server.url("/healthz")).send().unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    // Tokens never reach the log or the metrics.
    let metrics = http
        .get(server.url("/metrics"))
        .bearer_auth("admin-t0ken")
        .send()
        .unwrap()
        .text()
        .unwrap();
    let stopped = server.terminate();
    for secret in ["messages-t0ken", "admin-t0ken", "env-t0ken", "wrong"] {
        assert!(!stopped.stderr.contains(secret), "{secret} logged");
        assert!(!metrics.contains(secret), "{secret} in the metrics");
    }
}

#[test]
fn without_a_token_only_loopback_is_served() {
    let plugins = plugins_dir(&[STORAGE]);
    let data = tempfile::tempdir().unwrap();
    let args = |extra: &[&str]| {
        let mut args: Vec<String> = ["run", "--plugins"].iter().map(|s| s.to_string()).collect();
        args.push(plugins.path().display().to_string());
        args.extend(["--data".into(), data.path().display().to_string()]);
        args.extend(["--listen".into(), "0.0.0.0:0".into()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let out = run_warden(warden_bin!(), args(&[]), "");
    assert!(!out.status.success());
    let e = stderr_text(&out);
    assert!(
        e.contains("refusing to serve HTTP on 0.0.0.0") && e.contains("--insecure-no-auth"),
        "{e}"
    );
    // Asked for, it serves, and says so.
    let server = Server::start(warden_bin!(), args(&["--insecure-no-auth"]), &[]);
    let health = client().get(server.url("/healthz")).send().unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let stopped = server.terminate();
    assert!(
        stopped.stderr.contains("with no bearer token"),
        "{}",
        stopped.stderr
    );
}

/// A raw connection to `server`, for clients a real HTTP client will not
/// imitate.
fn raw(server: &Server) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Everything `stream` sends until it closes (or 20 s pass).
fn read_all(stream: &mut std::net::TcpStream) -> String {
    use std::io::Read as _;
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn slow_and_excess_clients_are_cut_off_while_others_are_served() {
    use std::io::Write as _;
    let plugins = plugins_dir(&[STORAGE]);
    let data = tempfile::tempdir().unwrap();
    let args: Vec<&OsStr> = run_args(
        plugins.path(),
        data.path(),
        &["--listen".as_ref(), "127.0.0.1:0".as_ref()],
    );
    let server = Server::start(
        warden_bin!(),
        args,
        &[
            ("WARDEN_HTTP_HEADER_TIMEOUT_MS", "3000"),
            ("WARDEN_HTTP_BODY_TIMEOUT_MS", "3000"),
            ("WARDEN_HTTP_MAX_CONNECTIONS", "3"),
        ],
    );
    // Headers that never end: the connection is closed after the timeout.
    let mut slow_headers = raw(&server);
    slow_headers
        .write_all(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // A body that never comes whole: 408.
    let mut slow_body = raw(&server);
    slow_body
        .write_all(
            b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"text\":",
        )
        .unwrap();
    // Meanwhile another client is served at once.
    let started = std::time::Instant::now();
    let reply = post(&server, json!({"text": "store fast under k"}));
    assert_eq!(reply["replies"][0]["text"], "'fast' stored under k!");
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    let cut = std::time::Instant::now();
    let headers_answer = read_all(&mut slow_headers);
    assert!(
        cut.elapsed() < Duration::from_secs(10),
        "the slow client was not cut off"
    );
    assert!(!headers_answer.contains("200 OK"), "{headers_answer}");
    let body_answer = read_all(&mut slow_body);
    assert!(body_answer.starts_with("HTTP/1.1 408"), "{body_answer}");
    assert!(body_answer.contains("body_timeout_ms"), "{body_answer}");

    // Three connections open, each served once and kept alive: a fourth
    // is answered 503 and closed.
    let held: Vec<_> = (0..3)
        .map(|_| {
            use std::io::Read as _;
            let mut stream = raw(&server);
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut answer = Vec::new();
            let mut byte = [0u8; 1];
            while !answer.ends_with(b"\r\n\r\nok") {
                assert_eq!(stream.read(&mut byte).unwrap(), 1, "the answer ended early");
                answer.push(byte[0]);
            }
            stream
        })
        .collect();
    let mut excess = raw(&server);
    let answer = read_all(&mut excess);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Retry-After: 1"), "{answer}");
    drop(held);
    // Once they close, clients are served again.
    let served = within_seconds("a connection slot to free up", || {
        client()
            .get(server.url("/healthz"))
            .send()
            .is_ok_and(|r| r.status() == StatusCode::OK)
    });
    assert!(served < Duration::from_secs(10));
    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for reason in ["slow-headers", "slow-body", "connections"] {
        let series = format!("warden_http_refused_total{{reason=\"{reason}\"}}");
        assert!(
            metric(&metrics, &series).is_some_and(|n| n >= 1.0),
            "{series} in {metrics}"
        );
    }
}

#[test]
fn each_token_is_held_to_its_rate() {
    let plugins = plugins_dir(&[STORAGE]);
    let data = tempfile::tempdir().unwrap();
    let tokens = data.path().join("tokens");
    std::fs::write(&tokens, "first\nsecond\n").unwrap();
    let args: Vec<&OsStr> = run_args(
        plugins.path(),
        data.path(),
        &["--listen".as_ref(), "127.0.0.1:0".as_ref()],
    );
    let server = Server::start(
        warden_bin!(),
        args,
        &[
            ("WARDEN_HTTP_TOKENS_FILE", tokens.to_str().unwrap()),
            ("WARDEN_HTTP_RATE_LIMIT_PER_SECOND", "3"),
        ],
    );
    let http = client();
    let send = |token: &str| {
        http.post(server.url("/v1/messages"))
            .bearer_auth(token)
            .json(&json!({"text": "retrieve nothing"}))
            .send()
            .unwrap()
    };
    // Twenty requests at once from one token: no more get through than the
    // burst and what the time they took refilled, and the rest get 429.
    let started = std::time::Instant::now();
    let answers: Vec<_> = (0..20).map(|_| send("first")).collect();
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = answers
        .iter()
        .filter(|a| a.status() == StatusCode::OK)
        .count();
    let limited: Vec<_> = answers
        .iter()
        .filter(|a| a.status() == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(allowed + limited.len(), 20);
    assert!(
        allowed >= 3,
        "the burst of the rate gets through: {allowed}"
    );
    let most = 3.0 + (elapsed * 3.0).ceil();
    assert!(
        allowed as f64 <= most,
        "{allowed} allowed in {elapsed:.2} s at 3 a second"
    );
    assert!(
        !limited.is_empty(),
        "none of 20 requests in {elapsed:.2} s was limited"
    );
    assert!(
        limited
            .iter()
            .all(|a| a.headers().contains_key("retry-after"))
    );
    // Another token has a bucket of its own.
    assert_eq!(send("second").status(), StatusCode::OK);
}

#[test]
fn https_is_served_with_the_configured_certificate() {
    use std::io::{Read as _, Write as _};
    let plugins = plugins_dir(&[STORAGE]);
    let data = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_file, key_file) = (data.path().join("cert.pem"), data.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
    let args: Vec<&OsStr> = run_args(
        plugins.path(),
        data.path(),
        &["--listen".as_ref(), "127.0.0.1:0".as_ref()],
    );
    let server = Server::start(
        warden_bin!(),
        args,
        &[
            ("WARDEN_HTTP_TLS_CERT", cert_file.to_str().unwrap()),
            ("WARDEN_HTTP_TLS_KEY", key_file.to_str().unwrap()),
        ],
    );
    server.log_line(Duration::from_secs(10), |l| {
        l.contains("HTTP listening on https://")
    });
    // A TLS client that trusts the certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, raw(&server));
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = tls.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
    // Plain HTTP on the same port gets no answer.
    let mut plain = raw(&server);
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(!read_all(&mut plain).contains("200 OK"));
}

#[test]
fn a_batch_of_messages_is_answered_in_order() {
    let plugins = plugins_dir(&[STORAGE]);
    let data = tempfile::tempdir().unwrap();
    let server = serve(plugins.path(), data.path(), &[]);
    let answers = client()
        .post(server.url("/v1/messages"))
        .json(&json!([
            {"text": "store one under a"},
            {"text": "store two under a"},
            {"text": "retrieve a"},
        ]))
        .send()
        .unwrap();
    assert_eq!(answers.status(), StatusCode::OK);
    let answers: Value = answers.json().unwrap();
    let texts: Vec<&str> = answers
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["replies"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "'one' stored under a!",
            "'two' stored under a!",
            "'two' retrieved from <a>!"
        ]
    );
    // A bad message refuses the whole batch, before any is dispatched.
    let refused = client()
        .post(server.url("/v1/messages"))
        .json(&json!([{"text": "store three under a"}, {"text": " "}]))
        .send()
        .unwrap();
    let e = error_of(refused, StatusCode::BAD_REQUEST);
    assert!(e.contains("message 1 of the batch"), "{e}");
    assert_eq!(
        replies_to(&server, "retrieve a"),
        ["'two' retrieved from <a>!"]
    );
    let too_many: Vec<Value> = (0..101).map(|_| json!({"text": "retrieve a"})).collect();
    let refused = client()
        .post(server.url("/v1/messages"))
        .json(&too_many)
        .send()
        .unwrap();
    let e = error_of(refused, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(e.contains("at most 100"), "{e}");
}
