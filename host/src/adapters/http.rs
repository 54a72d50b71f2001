//! The HTTP adapter: messages in and replies out as JSON, the loaded
//! plugins, a health check and metrics.
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/messages` | the replies and errors of every handler the message reached; with a JSON array of messages (at most [`MAX_BATCH`]), an array of answers in order |
//! | `GET /v1/outbox?after=SEQ&wait_ms=MS` | what scheduled handlers said after message `SEQ` (default 0), oldest first, at most 100; waits up to `wait_ms` (at most 30000) for one when there is none |
//! | `GET /v1/plugins` | the loaded plugins: identity, version, file, digest, routes, grant; and the files skipped |
//! | `GET /healthz` | `ok` |
//! | `GET /metrics` | the [`metrics`] in the Prometheus text format |
//! | `POST /slack/events` | with `[slack] signing_secret`, Slack's Events API (see [`slack`](super::slack)) |
//!
//! Errors are JSON, `{"error": "..."}`, with a fitting status: 400 for a
//! body that is not the expected JSON, 404 for an unknown path, 405 for a
//! method the path does not take, 413 for a body over
//! [`HttpConfig::max_body_bytes`](crate::config::HttpConfig::max_body_bytes) or a text over
//! [`RoutingConfig::max_message_bytes`](crate::config::RoutingConfig::max_message_bytes), 415 for a body not sent as
//! `application/json`. Message texts, keys and values are never logged.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::auth::{Scope, Tokens, TokensError, Verdict, scope_name};
use crate::config::{Config, HttpConfig};
use crate::metrics::{HttpRefusal, Metrics};
use crate::storage::SharedAccess;
use crate::{Host, Incoming, PluginInfo, metrics};

/// The `user` of a message that names none.
pub const DEFAULT_USER: &str = "http";
/// The `channel` of a message that names none.
pub const DEFAULT_CHANNEL: &str = "http";

/// What the adapter enforces on every request, shared by its middleware.
struct Guard {
    tokens: Tokens,
    /// One bucket a token, when `[http] rate_limit_per_second` is set.
    buckets: Option<std::sync::Mutex<Vec<Bucket>>>,
    rate: f64,
    in_flight: tokio::sync::Semaphore,
    body_timeout: Duration,
    max_body_bytes: usize,
    metrics: Arc<Metrics>,
}

/// A token bucket: up to `rate` requests at once, refilled at `rate` a
/// second.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The routes, over `host`. The host's configuration gives the grants
/// `GET /v1/plugins` shows, the body limit and deadline (`[http]
/// max_body_bytes`, `body_timeout_ms`), the bound on requests in flight,
/// and the bearer tokens (see [`auth`](super::auth)): with any configured,
/// every route but `/healthz` needs one, `POST /v1/messages` one of scope
/// `messages`, `GET /v1/plugins` and `GET /metrics` one of scope `admin`,
/// each within its `rate_limit_per_second`.
pub fn router(host: Arc<Host>) -> Result<Router, TokensError> {
    router_with(host, None)
}

/// [`router`], with Slack's Events API at `POST /slack/events` when
/// `slack` is given (see [`slack`](super::slack)): that route is verified
/// by Slack's signature instead of a bearer token.
pub fn router_with(
    host: Arc<Host>,
    slack: Option<Arc<super::slack::Slack>>,
) -> Result<Router, TokensError> {
    let http = &host.config().http;
    let tokens = Tokens::from_config(http)?;
    let rate = http.rate_limit_per_second.map_or(0.0, f64::from);
    let buckets = http.rate_limit_per_second.map(|_| {
        let full = Bucket {
            tokens: rate,
            last: Instant::now(),
        };
        std::sync::Mutex::new(vec![full; tokens.len()])
    });
    let guard = Arc::new(Guard {
        tokens,
        buckets,
        rate,
        in_flight: tokio::sync::Semaphore::new(http.max_requests_in_flight),
        body_timeout: Duration::from_millis(http.body_timeout_ms),
        max_body_bytes: http.max_body_bytes,
        metrics: host.metrics().clone(),
    });
    let max_body_bytes = http.max_body_bytes;
    let mut routes = Router::new();
    if let Some(slack) = slack {
        let events = super::slack::Events {
            host: host.clone(),
            slack,
        };
        routes = routes.route(
            "/slack/events",
            post(super::slack::events).with_state(events),
        );
    }
    Ok(routes
        .route("/v1/messages", post(post_message))
        .route("/v1/plugins", get(get_plugins))
        .route("/v1/outbox", get(get_outbox))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(get_metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(guard, guarded))
        .with_state(host))
}

/// Serves [`router`] on `listener` until `shutdown` completes, then lets
/// the requests under way finish, with Slack's Events API when `slack` is
/// given (see [`router_with`]). Each connection must send a request's
/// headers within `[http] header_timeout_ms`; beyond `max_connections` open
/// at once a new one is answered `503` and closed. With `[http] tls_cert`
/// and `tls_key` it serves HTTPS. Fails at once if the tokens or the
/// certificate cannot be read.
pub async fn serve(
    listener: tokio::net::TcpListener,
    host: Arc<Host>,
    slack: Option<Arc<super::slack::Slack>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let http = host.config().http.clone();
    let metrics = host.metrics().clone();
    let tls = tls_acceptor(&http)?;
    let router = router_with(host, slack).map_err(std::io::Error::other)?;
    let connections = Arc::new(tokio::sync::Semaphore::new(http.max_connections));
    let header_timeout = Duration::from_millis(http.header_timeout_ms);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait, then go on.
                    tracing::warn!("accepting an HTTP connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Replies go out as soon as they are written: a response is written
        // whole, so Nagle's algorithm would only hold back its last segment.
        let _ = stream.set_nodelay(true);
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            metrics.http_refused(HttpRefusal::Connections);
            tokio::spawn(refuse_connection(stream));
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout);
        let watcher = graceful.watcher();
        let (tls, metrics) = (tls.clone(), metrics.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let served = match tls {
                None => {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    watcher.watch(builder.serve_connection(io, service)).await
                }
                Some(acceptor) => {
                    // The handshake, too, is bounded by the header timeout.
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(header_timeout, acceptor.accept(stream)).await
                    else {
                        metrics.http_refused(HttpRefusal::SlowHeaders);
                        return;
                    };
                    let io = hyper_util::rt::TokioIo::new(stream);
                    watcher.watch(builder.serve_connection(io, service)).await
                }
            };
            if let Err(e) = served
                && e.is_timeout()
            {
                metrics.http_refused(HttpRefusal::SlowHeaders);
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Answers a connection over `[http] max_connections` with `503` and
/// closes it.
async fn refuse_connection(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt as _;
    const BODY: &str = r#"{"error":"too many connections; try again shortly"}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Reads what [`serve`] will need from `http` (the bearer tokens, the TLS
/// certificate and key), so that a bad file fails at start, naming it.
pub fn check(http: &HttpConfig) -> std::io::Result<()> {
    Tokens::from_config(http).map_err(std::io::Error::other)?;
    tls_acceptor(http)?;
    Ok(())
}

/// The TLS acceptor `[http] tls_cert` and `tls_key` make, if they are set.
fn tls_acceptor(http: &HttpConfig) -> std::io::Result<Option<tokio_rustls::TlsAcceptor>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (&http.tls_cert, &http.tls_key) else {
        return Ok(None);
    };
    let bad = |file: &std::path::Path, e: &dyn std::fmt::Display| {
        std::io::Error::other(format!("[http] cannot use {}: {e}", file.display()))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, &e))?;
    if chain.is_empty() {
        return Err(bad(cert, &"no certificate in it"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| bad(key, &e))?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

/// What every request passes before its route, in one step (one layer
/// costs one boxed future a request): the bound on requests in flight,
/// then the bearer token and its rate, then the body, read whole.
async fn guarded(
    State(guard): State<Arc<Guard>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(_permit) = guard.in_flight.try_acquire() else {
        guard.metrics.http_refused(HttpRefusal::Busy);
        return retry_after(
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many requests under way; try again shortly",
            ),
            1,
        );
    };
    if let Some(refused) = guard.refusal(&request) {
        return refused;
    }
    match guard.read_body(request).await {
        Ok(request) => next.run(request).await,
        Err(refused) => refused,
    }
}

impl Guard {
    /// Reads a request's body whole within `[http] body_timeout_ms`: `408`
    /// for a slower client, `413` for a body over the limit. A body that
    /// has arrived with its headers, as almost every one has, is taken
    /// without arming the deadline's timer.
    async fn read_body(
        &self,
        request: axum::extract::Request,
    ) -> Result<axum::extract::Request, Response> {
        use futures::FutureExt as _;
        let (parts, body) = request.into_parts();
        let mut read = std::pin::pin!(axum::body::to_bytes(body, self.max_body_bytes));
        let read = match read.as_mut().now_or_never() {
            Some(read) => Ok(read),
            None => tokio::time::timeout(self.body_timeout, read).await,
        };
        match read {
            Ok(Ok(bytes)) => Ok(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(bytes),
            )),
            Ok(Err(_)) => Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is over the limit of {} bytes",
                    self.max_body_bytes
                ),
            )),
            Err(_) => {
                self.metrics.http_refused(HttpRefusal::SlowBody);
                let mut response = error(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {} ms ([http] body_timeout_ms)",
                        self.body_timeout.as_millis()
                    ),
                );
                response.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
                Err(response)
            }
        }
    }
}

/// `response` with `Retry-After: seconds`.
fn retry_after(mut response: Response, seconds: u64) -> Response {
    if let Ok(value) = header::HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The realm of the `WWW-Authenticate` challenge.
const REALM: &str = "Bearer realm=\"warden\"";

impl Guard {
    /// `None` lets a request through: its bearer token grants the scope of
    /// its route (see [`router`]) and its rate allows. Else the refusal.
    fn refusal(&self, request: &axum::extract::Request) -> Option<Response> {
        let scope = match request.uri().path() {
            // Slack signs its requests; the route checks the signature.
            "/healthz" | "/slack/events" => return None,
            "/v1/plugins" | "/metrics" => Scope::Admin,
            _ => Scope::Messages,
        };
        let header = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        match self.tokens.check(header, scope) {
            Verdict::Allowed(token) => match token.and_then(|t| self.spend(t)) {
                None => None,
                Some(wait) => {
                    self.metrics.http_refused(HttpRefusal::RateLimited);
                    Some(retry_after(
                        error(
                            StatusCode::TOO_MANY_REQUESTS,
                            "this token's rate limit is spent ([http] rate_limit_per_second)",
                        ),
                        wait,
                    ))
                }
            },
            Verdict::Unauthenticated => {
                self.metrics.http_refused(HttpRefusal::Unauthorized);
                let message = if header.is_some() {
                    "the bearer token is not valid"
                } else {
                    "this API needs a bearer token: send Authorization: Bearer TOKEN"
                };
                let mut response = error(StatusCode::UNAUTHORIZED, message);
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static(REALM),
                );
                Some(response)
            }
            Verdict::Forbidden(scope) => {
                self.metrics.http_refused(HttpRefusal::Unauthorized);
                Some(error(
                    StatusCode::FORBIDDEN,
                    format!("the token does not have the {} scope", scope_name(scope)),
                ))
            }
        }
    }

    /// Takes one request from token `token`'s bucket; `Some(seconds to
    /// wait)` if it is empty.
    fn spend(&self, token: usize) -> Option<u64> {
        let buckets = self.buckets.as_ref()?;
        // A bucket is two plain numbers: valid whatever a panic left.
        let mut buckets = buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.get_mut(token)?;
        let now = Instant::now();
        let refill = now.duration_since(bucket.last).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + refill).min(self.rate);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            None
        } else {
            Some(((1.0 - bucket.tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// An error answer: `{"error": message}` with `status`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct Body {
        error: String,
    }
    let body = Body {
        error: message.into(),
    };
    (status, axum::Json(body)).into_response()
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}", uri.path()),
    )
}

/// The body of `POST /v1/messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageIn {
    text: String,
    #[serde(default = "default_user")]
    user: String,
    /// The sender's name to show.
    #[serde(default)]
    user_name: Option<String>,
    #[serde(default = "default_channel")]
    channel: String,
    #[serde(default = "addressed_by_default")]
    addressed: bool,
    /// The message's id in its channel.
    #[serde(default)]
    id: Option<String>,
    /// The thread the message is in.
    #[serde(default)]
    thread: Option<String>,
}

fn default_user() -> String {
    DEFAULT_USER.into()
}

fn default_channel() -> String {
    DEFAULT_CHANNEL.into()
}

fn addressed_by_default() -> bool {
    true
}

#[derive(Debug, Serialize)]
struct ReplyOut {
    plugin: String,
    handler: String,
    text: String,
    /// The thread the reply goes to, if the plugin asked for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    thread: Option<String>,
    /// The user the reply mentions (`reply`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    mention: Option<String>,
}

#[derive(Debug, Serialize)]
struct CallError {
    plugin: String,
    handler: String,
    error: String,
}

#[derive(Debug, Serialize)]
struct MessageOut {
    replies: Vec<ReplyOut>,
    errors: Vec<CallError>,
}

/// Whether the request says its body is JSON. Requiring it keeps web pages
/// from posting messages across origins: a browser sends a cross-origin
/// `application/json` POST only after a CORS preflight, which this server
/// never approves.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let mime = value.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
        || mime
            .rsplit_once('+')
            .is_some_and(|(ty, suffix)| ty.starts_with("application/") && suffix == "json")
}

async fn post_message(
    State(host): State<Arc<Host>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is over the limit of {} bytes",
                    host.config().http.max_body_bytes
                ),
            );
        }
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    if !is_json(&headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the message as JSON, with Content-Type: application/json",
        );
    }
    // An array is a batch; anything else one message, so that its errors
    // name the field at fault.
    let batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let messages = if batch {
        serde_json::from_slice(&body).map(Messages::Many)
    } else {
        serde_json::from_slice(&body).map(Messages::One)
    };
    let messages = match messages {
        Ok(messages) => messages,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")),
    };
    match messages {
        Messages::One(message) => match incoming(&host, message) {
            Ok(message) => axum::Json(answer(&host, &message).await).into_response(),
            Err((status, why)) => error(status, why),
        },
        Messages::Many(batch) => {
            if batch.len() > MAX_BATCH {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "a batch of {} messages; at most {MAX_BATCH} are taken at once",
                        batch.len()
                    ),
                );
            }
            // Every message is checked before any is dispatched.
            let mut checked = Vec::with_capacity(batch.len());
            for (i, message) in batch.into_iter().enumerate() {
                match incoming(&host, message) {
                    Ok(message) => checked.push(message),
                    Err((status, why)) => {
                        return error(status, format!("message {i} of the batch: {why}"));
                    }
                }
            }
            let mut out = Vec::with_capacity(checked.len());
            for message in &checked {
                out.push(answer(&host, message).await);
            }
            axum::Json(out).into_response()
        }
    }
}

/// Most messages one batch request may carry.
pub const MAX_BATCH: usize = 100;

/// The body of `POST /v1/messages`: one message, or a batch, answered in
/// order.
#[derive(Debug)]
enum Messages {
    One(MessageIn),
    Many(Vec<MessageIn>),
}

/// `message` as the host takes it, or the status and reason refusing it.
fn incoming(host: &Host, message: MessageIn) -> Result<Incoming, (StatusCode, String)> {
    if message.text.trim().is_empty() {
        return Err((StatusCode::BAD_REQUEST, "\"text\" is empty".into()));
    }
    let incoming = Incoming {
        text: message.text,
        user: message.user,
        user_name: message.user_name,
        channel: message.channel,
        addressed: message.addressed,
        id: message.id,
        thread: message.thread,
    };
    if let Err(e) = host.check_message(&incoming) {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, e.to_string()));
    }
    Ok(incoming)
}

/// The replies and errors of every handler `message` reaches.
async fn answer(host: &Host, message: &Incoming) -> MessageOut {
    let outcomes = host.dispatch(message).await;
    if outcomes.is_empty() {
        tracing::debug!(bytes = message.text.len(), "no route matched the message");
    }
    let mut out = MessageOut {
        replies: Vec::new(),
        errors: Vec::new(),
    };
    for outcome in outcomes {
        let plugin = outcome.plugin.to_string();
        for reply in outcome.replies {
            out.replies.push(ReplyOut {
                plugin: plugin.clone(),
                handler: outcome.handler.clone(),
                text: reply.text,
                thread: reply.thread,
                mention: reply.mention,
            });
        }
        if let Some(error) = outcome.error {
            out.errors.push(CallError {
                plugin,
                handler: outcome.handler,
                error,
            });
        }
    }
    out
}

#[derive(Debug, Serialize)]
struct RouteOut {
    kind: &'static str,
    pattern: String,
    handler: String,
}

#[derive(Debug, Serialize)]
struct PluginOut {
    id: String,
    version: String,
    description: String,
    file: String,
    digest: String,
    /// The contract it was built against, e.g. `warden:plugin@0.2.0`.
    contract: &'static str,
    routes: Vec<RouteOut>,
    /// Its `[grants."ID"]`, as configured.
    grant: SharedAccess,
}

#[derive(Debug, Serialize)]
struct PluginsOut {
    plugins: Vec<PluginOut>,
    /// Files that did not load, and why.
    skipped: Vec<String>,
}

fn plugin_out(info: PluginInfo, config: &Config) -> PluginOut {
    PluginOut {
        id: info.id.to_string(),
        file: info.file.display().to_string(),
        digest: info.digest,
        routes: info
            .routes
            .iter()
            .map(|r| RouteOut {
                kind: r.kind.name(),
                pattern: r.pattern().to_owned(),
                handler: r.handler.clone(),
            })
            .collect(),
        grant: config.grant(&info.id),
        contract: info.contract.package(),
        version: info.version,
        description: info.description,
    }
}

/// The query of `GET /v1/outbox`.
#[derive(Debug, Default)]
struct OutboxQuery {
    after: u64,
    wait_ms: u64,
}

impl OutboxQuery {
    /// `after=SEQ&wait_ms=MS`, both optional.
    fn parse(query: Option<&str>) -> Result<Self, String> {
        let mut parsed = OutboxQuery::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{name} must be a whole number, not {value:?}"))
            };
            match name {
                "after" => parsed.after = number()?,
                "wait_ms" => parsed.wait_ms = number()?,
                _ => {
                    return Err(format!(
                        "unknown query parameter {name:?}: expected after or wait_ms"
                    ));
                }
            }
        }
        Ok(parsed)
    }
}

/// Longest wait of `GET /v1/outbox`.
const MAX_OUTBOX_WAIT_MS: u64 = 30_000;
/// Most messages one `GET /v1/outbox` answer carries.
const OUTBOX_PAGE: usize = 100;

#[derive(Debug, Serialize)]
struct OutgoingOut {
    seq: u64,
    plugin: String,
    handler: String,
    channel: String,
    fired_at: i64,
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mention: Option<String>,
}

async fn get_outbox(State(host): State<Arc<Host>>, uri: Uri) -> Response {
    let query = match OutboxQuery::parse(uri.query()) {
        Ok(query) => query,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    let outbox = host.outbox();
    // Subscribed before looking, so that a message sent in between is not
    // missed.
    let mut sent = outbox.subscribe();
    let mut messages = outbox.since(query.after, OUTBOX_PAGE);
    if messages.is_empty() && query.wait_ms > 0 {
        let wait = Duration::from_millis(query.wait_ms.min(MAX_OUTBOX_WAIT_MS));
        let _ = tokio::time::timeout(wait, async {
            loop {
                match sent.recv().await {
                    Ok(message) if message.seq > query.after => break,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        })
        .await;
        messages = outbox.since(query.after, OUTBOX_PAGE);
    }
    let out: Vec<OutgoingOut> = messages
        .into_iter()
        .map(|m| OutgoingOut {
            seq: m.seq,
            plugin: m.plugin.to_string(),
            handler: m.handler,
            channel: m.channel,
            fired_at: m.fired_at,
            text: m.reply.text,
            thread: m.reply.thread,
            mention: m.reply.mention,
        })
        .collect();
    axum::Json(serde_json::json!({ "messages": out })).into_response()
}

async fn get_plugins(State(host): State<Arc<Host>>) -> Response {
    let plugins = host
        .plugins()
        .into_iter()
        .map(|info| plugin_out(info, host.config()))
        .collect();
    let skipped = host.skipped().iter().map(ToString::to_string).collect();
    axum::Json(PluginsOut { plugins, skipped }).into_response()
}

async fn get_metrics(State(host): State<Arc<Host>>) -> Response {
    let metrics = host.metrics();
    let plugins = host.plugins();
    for info in &plugins {
        // Every loaded plugin has its series, at zero until it is called.
        metrics.plugin(&info.id);
    }
    metrics.set_plugins_loaded(plugins.len());
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics.encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        h
    }

    #[test]
    fn json_content_types_are_recognised() {
        assert!(is_json(&headers("application/json")));
        assert!(is_json(&headers("Application/JSON; charset=utf-8")));
        assert!(is_json(&headers("application/vnd.warden+json")));
        assert!(!is_json(&headers("text/plain")));
        assert!(!is_json(&headers("application/x-www-form-urlencoded")));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn messages_take_defaults_and_refuse_unknown_fields() {
        let m: MessageIn = serde_json::from_str(r#"{"text":"hi"}"#).unwrap();
        assert_eq!(
            (m.user.as_str(), m.channel.as_str(), m.addressed),
            (DEFAULT_USER, DEFAULT_CHANNEL, true)
        );
        let e = serde_json::from_str::<MessageIn>(r#"{"txt":"hi"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("txt"), "{e}");
    }
}
