//! The HTTP adapter: messages in and replies out as JSON, the loaded
//! plugins, a health check and metrics.
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/messages` | the replies and errors of every handler the message reached |
//! | `GET /v1/plugins` | the loaded plugins: identity, version, file, digest, routes, grant; and the files skipped |
//! | `GET /healthz` | `ok` |
//! | `GET /metrics` | the [`metrics`] in the Prometheus text format |
//!
//! Errors are JSON, `{"error": "..."}`, with a fitting status: 400 for a
//! body that is not the expected JSON, 404 for an unknown path, 405 for a
//! method the path does not take, 413 for a body over
//! [`HttpConfig::max_body_bytes`](crate::config::HttpConfig::max_body_bytes) or a text over
//! [`RoutingConfig::max_message_bytes`](crate::config::RoutingConfig::max_message_bytes), 415 for a body not sent as
//! `application/json`. Message texts, keys and values are never logged.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::auth::{Scope, Tokens, TokensError, Verdict, scope_name};
use crate::config::Config;
use crate::storage::SharedAccess;
use crate::{Host, Incoming, PluginInfo, metrics};

/// The `user` of a message that names none.
pub const DEFAULT_USER: &str = "http";
/// The `channel` of a message that names none.
pub const DEFAULT_CHANNEL: &str = "http";

/// The routes, over `host`. The host's configuration gives the grants
/// `GET /v1/plugins` shows, the body limit (`[http] max_body_bytes`) and
/// the bearer tokens (see [`auth`](super::auth)): with any configured,
/// every route but `/healthz` needs one, `POST /v1/messages` one of scope
/// `messages`, `GET /v1/plugins` and `GET /metrics` one of scope `admin`.
pub fn router(host: Arc<Host>) -> Result<Router, TokensError> {
    let max_body_bytes = host.config().http.max_body_bytes;
    let tokens = Arc::new(Tokens::from_config(&host.config().http)?);
    Ok(Router::new()
        .route("/v1/messages", post(post_message))
        .route("/v1/plugins", get(get_plugins))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(get_metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(tokens, authenticate))
        .with_state(host))
}

/// Serves [`router`] on `listener` until `shutdown` completes, then lets
/// the requests under way finish. Fails at once if the tokens cannot be
/// read.
pub async fn serve(
    listener: tokio::net::TcpListener,
    host: Arc<Host>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router(host).map_err(std::io::Error::other)?;
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The realm of the `WWW-Authenticate` challenge.
const REALM: &str = "Bearer realm=\"warden\"";

/// Lets a request through if its bearer token grants the scope of its
/// route (see [`router`]).
async fn authenticate(
    State(tokens): State<Arc<Tokens>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let scope = match request.uri().path() {
        "/healthz" => return next.run(request).await,
        "/v1/plugins" | "/metrics" => Scope::Admin,
        _ => Scope::Messages,
    };
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match tokens.check(header, scope) {
        Verdict::Allowed => next.run(request).await,
        Verdict::Unauthenticated => {
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
            response
        }
        Verdict::Forbidden(scope) => error(
            StatusCode::FORBIDDEN,
            format!("the token does not have the {} scope", scope_name(scope)),
        ),
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
    #[serde(default = "default_channel")]
    channel: String,
    #[serde(default = "addressed_by_default")]
    addressed: bool,
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
struct Reply {
    plugin: String,
    handler: String,
    text: String,
}

#[derive(Debug, Serialize)]
struct CallError {
    plugin: String,
    handler: String,
    error: String,
}

#[derive(Debug, Serialize)]
struct MessageOut {
    replies: Vec<Reply>,
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
    let message: MessageIn = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")),
    };
    if message.text.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "\"text\" is empty");
    }
    let incoming = Incoming {
        text: message.text,
        user: message.user,
        channel: message.channel,
        addressed: message.addressed,
    };
    if let Err(e) = host.check_message(&incoming) {
        return error(StatusCode::PAYLOAD_TOO_LARGE, e.to_string());
    }
    let outcomes = host.dispatch(&incoming).await;
    if outcomes.is_empty() {
        tracing::debug!(bytes = incoming.text.len(), "no route matched the message");
    }
    let mut out = MessageOut {
        replies: Vec::new(),
        errors: Vec::new(),
    };
    for outcome in outcomes {
        let plugin = outcome.plugin.to_string();
        for text in outcome.replies {
            out.replies.push(Reply {
                plugin: plugin.clone(),
                handler: outcome.handler.clone(),
                text,
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
    axum::Json(out).into_response()
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
        version: info.version,
        description: info.description,
    }
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
