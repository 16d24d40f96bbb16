//! The HTTP side: routing, the local answers (400, 403, 404, 405, 414,
//! `/health`, `/metrics`) and the translation of the server's reply ([`Answer`]) into a response.
//!
//! The pieces are plain functions of the request so that `ask` produces
//! exactly what an HTTP client would get, without a TCP connection.
//!
//! # Statuses chosen here
//!
//! | situation | status |
//! |---|---|
//! | path other than `/mirrorlist`, `/metalink`, `/health`, `/metrics` | 404 |
//! | `/metrics` from a client outside `--metrics-from` | 403 |
//! | method other than GET or HEAD | 405, `Allow: GET, HEAD` |
//! | request target over [`MAX_URI_LEN`] bytes | 414 |
//! | malformed `%` escape, or not UTF-8 once decoded | 400, naming the parameter |
//! | server unreachable, queue full, connection lost, no answer in time | 503, `Retry-After` |
//! | server sent a bad frame, or a status or header that is not valid HTTP | 502 |
//!
//! A timeout is a 503 rather than a 504: to a client it is the same
//! overload, and the answer says when to come back. dnf retries 5xx and
//! timeouts alike; what matters is answering at once, not hanging.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Request as HttpRequest, Response, StatusCode, Uri};
use mirrorlist_core::protocol::{EncodedRequest, Endpoint, METALINK, TEXT_PLAIN};

use crate::forwarded;
use crate::metrics::{self, Metrics, WorkerStats};
use crate::query;
use crate::upstream::{Answer, Upstream, UpstreamError, PINGS_IN_FLIGHT};

/// The response body type: one buffer, sent as it is.
pub type Body = Full<Bytes>;

/// Longest request target (path and query) accepted. MirrorManager-style
/// queries are a few hundred bytes; anything near this is not a real client.
pub const MAX_URI_LEN: usize = 8 * 1024;

/// What a request asks for, once it has passed the local checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// Forward to the server.
    Forward {
        /// `/mirrorlist` or `/metalink`.
        endpoint: Endpoint,
        /// The decoded query, in order, borrowing the URI where nothing
        /// needed decoding.
        query: query::Pairs<'a>,
    },
    /// `/health`: ping the server.
    Health,
    /// `/metrics`: the front end's counters, to the clients allowed them.
    Metrics,
}

/// Everything a request handler needs.
#[derive(Debug)]
pub struct State {
    /// The server connection pool.
    pub upstream: Upstream,
    /// Proxies whose `X-Forwarded-For` (or `Forwarded`) is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Which of the two headers is read.
    pub client_header: forwarded::ClientHeader,
    /// Bound on the health ping.
    pub health_timeout: std::time::Duration,
    /// The process's counters, for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// This worker's share of them, counted into per request.
    pub stats: Arc<WorkerStats>,
    /// Clients `/metrics` is served to.
    pub metrics_from: Vec<ipnet::IpNet>,
}

/// Answers one HTTP request. The body of the request is never read: no
/// endpoint takes one.
pub async fn handle<B>(req: HttpRequest<B>, peer: SocketAddr, state: &State) -> Response<Body> {
    let head = req.method() == Method::HEAD;
    let path = metrics::Path::of(req.uri().path());
    let client_ip = || {
        forwarded::client_ip(
            peer.ip(),
            req.headers(),
            &state.trusted_proxies,
            state.client_header,
        )
    };
    let response = match route(req.method(), req.uri()) {
        Err(refusal) => refusal.response(),
        Ok(Route::Health) => {
            let ping = EncodedRequest::without_query(Endpoint::Ping);
            let answer = state.upstream.ping(ping, state.health_timeout).await;
            health(answer, unix_now())
        }
        Ok(Route::Metrics) => {
            let allowed = client_ip()
                .is_some_and(|ip| state.metrics_from.iter().any(|net| net.contains(&ip)));
            if allowed {
                metrics_response(state.metrics.render())
            } else {
                Refusal::MetricsForbidden.response()
            }
        }
        Ok(Route::Forward { endpoint, query }) => {
            let arrived = Instant::now();
            let request = EncodedRequest::new(endpoint, client_ip(), &query);
            let response = match state.upstream.call(request).await {
                Ok(reply) => from_reply(reply).unwrap_or_else(|e| {
                    state.metrics.invalid_reply();
                    invalid_reply(&e)
                }),
                Err(e) => {
                    state.metrics.failure(&e);
                    upstream_error(&e)
                }
            };
            state.stats.took(path, arrived.elapsed());
            response
        }
    };
    state.stats.response(path, response.status().as_u16());
    tracing::debug!(
        peer = %peer,
        method = %req.method(),
        path = req.uri().path(),
        status = response.status().as_u16(),
        "request"
    );
    if head {
        without_body(response)
    } else {
        response
    }
}

/// A request answered locally, without asking the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request target is longer than [`MAX_URI_LEN`].
    #[error("request target of {0} bytes is longer than the limit of {MAX_URI_LEN}")]
    TooLong(usize),
    /// Not one of our paths.
    #[error("not found; this service answers /mirrorlist, /metalink, /health and /metrics")]
    NotFound,
    /// `/metrics` asked by a client outside `--metrics-from`.
    #[error("forbidden: /metrics is served only to the addresses of --metrics-from")]
    MetricsForbidden,
    /// Not GET or HEAD.
    #[error("method {0} not allowed; use GET or HEAD")]
    Method(Method),
    /// The query cannot be decoded.
    #[error("bad request: {0}")]
    Query(#[from] query::QueryError),
}

impl Refusal {
    /// The response for this refusal.
    pub fn response(&self) -> Response<Body> {
        let status = match self {
            Refusal::TooLong(_) => StatusCode::URI_TOO_LONG,
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::MetricsForbidden => StatusCode::FORBIDDEN,
            Refusal::Method(_) => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::Query(_) => StatusCode::BAD_REQUEST,
        };
        let mut response = text(status, format!("{self}\n"));
        if let Refusal::Method(_) = self {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        response
    }
}

/// The local checks, in order: target length, path, method, query.
pub fn route<'a>(method: &Method, uri: &'a Uri) -> Result<Route<'a>, Refusal> {
    let target_len = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if target_len > MAX_URI_LEN {
        return Err(Refusal::TooLong(target_len));
    }
    let endpoint = match uri.path() {
        "/mirrorlist" => Some(Endpoint::Mirrorlist),
        "/metalink" => Some(Endpoint::Metalink),
        "/health" | "/metrics" => None,
        _ => return Err(Refusal::NotFound),
    };
    if method != Method::GET && method != Method::HEAD {
        return Err(Refusal::Method(method.clone()));
    }
    let Some(endpoint) = endpoint else {
        return Ok(if uri.path() == "/health" {
            Route::Health
        } else {
            Route::Metrics
        });
    };
    let query = query::decode(uri.query().unwrap_or(""))?;
    Ok(Route::Forward { endpoint, query })
}

/// The response for the server's answer, or for the reason there is none.
pub fn from_upstream(answer: Result<Answer, UpstreamError>) -> Response<Body> {
    match answer {
        Ok(reply) => from_reply(reply).unwrap_or_else(|e| invalid_reply(&e)),
        Err(e) => upstream_error(&e),
    }
}

/// The 502 for a reply that cannot be sent as HTTP.
fn invalid_reply(e: &InvalidReply) -> Response<Body> {
    tracing::error!("the mirrorlist server sent a reply that is not valid HTTP: {e}");
    text(
        StatusCode::BAD_GATEWAY,
        format!("bad gateway: the mirrorlist server sent an invalid reply ({e})\n"),
    )
}

/// The `/metrics` response: the exposition text, never cached.
fn metrics_response(body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Why a server reply cannot be sent as HTTP.
#[derive(Debug, thiserror::Error)]
pub enum InvalidReply {
    /// Not a status code a final response may have.
    #[error("status {0} is not a valid final status")]
    Status(u16),
    /// A header name or value that HTTP does not allow.
    #[error("invalid header {0:?}")]
    Header(String),
    /// A header that decides message framing, which is ours to set.
    #[error("header {0:?} is reserved to the front end")]
    Reserved(String),
}

/// Status, `Content-Type`, the extra headers and the body exactly as the
/// server gave them (hyper adds `Content-Length` from the body). The body is moved into
/// `Bytes` without a copy.
pub fn from_reply(reply: Answer) -> Result<Response<Body>, InvalidReply> {
    let status = StatusCode::from_u16(reply.status)
        .ok()
        .filter(|s| !s.is_informational())
        .ok_or(InvalidReply::Status(reply.status))?;
    let mut headers = HeaderMap::with_capacity(1 + reply.headers.len());
    if !reply.content_type.is_empty() {
        let value = content_type(&reply.content_type)
            .map_err(|_| InvalidReply::Header(format!("content-type: {}", reply.content_type)))?;
        headers.insert(header::CONTENT_TYPE, value);
    }
    for (name, value) in &reply.headers {
        let bad = || InvalidReply::Header(format!("{name}: {value}"));
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value).map_err(|_| bad())?;
        // A second Content-Length or a Transfer-Encoding from the server
        // would make the response ambiguous to every proxy in between.
        if is_framing(&name) {
            return Err(InvalidReply::Reserved(name.to_string()));
        }
        headers.append(name, value);
    }
    // No Content-Length here: hyper writes it from the body's exact size
    // (no header value to allocate and hash), and `without_body` adds it
    // for HEAD.
    let mut response = Response::new(Full::new(reply.body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// The `Content-Type` value for `text`: the server's usual two without a
/// copy or a check per response, anything else checked.
fn content_type(text: &str) -> Result<HeaderValue, header::InvalidHeaderValue> {
    match text {
        TEXT_PLAIN => Ok(HeaderValue::from_static(TEXT_PLAIN)),
        METALINK => Ok(HeaderValue::from_static(METALINK)),
        _ => HeaderValue::from_str(text),
    }
}

fn is_framing(name: &HeaderName) -> bool {
    [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
        header::UPGRADE,
        header::TE,
        header::TRAILER,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
}

/// The answer when the server gave none.
pub fn upstream_error(e: &UpstreamError) -> Response<Body> {
    let retry_after = match e {
        UpstreamError::Protocol(_) => {
            return text(StatusCode::BAD_GATEWAY, format!("bad gateway: {e}\n"));
        }
        UpstreamError::Unavailable { retry_after } => *retry_after,
        UpstreamError::Overloaded
        | UpstreamError::ConnectionLost
        | UpstreamError::Timeout(_)
        | UpstreamError::QueueTimeout(_) => 1,
    };
    match e {
        UpstreamError::Timeout(_) | UpstreamError::ConnectionLost => tracing::warn!("{e}"),
        // Overload, like `Overloaded`: a line per request would flood.
        _ => tracing::debug!("{e}"),
    }
    let mut response = text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("service unavailable: {e}; retry in {retry_after} s\n"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// `/health`: 200 with the cache's build time and age when the server
/// answered the ping with a 2xx, 503 otherwise.
pub fn health(answer: Result<Answer, UpstreamError>, now: u64) -> Response<Body> {
    let mut response = match answer {
        Ok(reply) if (200..300).contains(&reply.status) => {
            let body = match built_at(&reply.body) {
                Some(built) => format!("ok built_at={built} age={}\n", now.saturating_sub(built)),
                None => "ok built_at=unknown\n".to_owned(),
            };
            text(StatusCode::OK, body)
        }
        Ok(reply) => {
            let first_line = String::from_utf8_lossy(&reply.body);
            let first_line = first_line.lines().next().unwrap_or("").trim();
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "unhealthy: the server answered {}: {first_line}\n",
                    reply.status
                ),
            )
        }
        Err(UpstreamError::Overloaded) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("busy: more than {PINGS_IN_FLIGHT} health checks in flight\n"),
        ),
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {e}\n")),
    };
    let healthy = response.status() == StatusCode::OK;
    let headers = response.headers_mut();
    // A cached health answer is a lie.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if !healthy {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// The `built_at=<unix seconds>` token of a ping reply, wherever it is.
fn built_at(body: &[u8]) -> Option<u64> {
    String::from_utf8_lossy(body)
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .find_map(|token| token.strip_prefix("built_at="))
        .and_then(|v| v.parse().ok())
}

/// A plain-text response with its length.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let body = body.into();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
    response
}

/// The same response without its body. `Content-Length` still gives the
/// length of the GET body, as HEAD requires (hyper keeps an explicit one).
pub fn without_body(response: Response<Body>) -> Response<Body> {
    use hyper::body::Body as _;
    let (mut parts, body) = response.into_parts();
    if !parts.headers.contains_key(header::CONTENT_LENGTH) {
        let len = body.size_hint().exact().unwrap_or(0);
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Response::from_parts(parts, Full::new(Bytes::new()))
}

/// Seconds since the epoch, for the cache age in `/health`.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirrorlist_core::protocol::Reply;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    fn status(r: Result<Route, Refusal>) -> StatusCode {
        r.map_or_else(|refusal| refusal.response().status(), |_| StatusCode::OK)
    }

    #[test]
    fn routing() {
        assert_eq!(
            route(&Method::GET, &uri("/mirrorlist?repo=a&arch=b")).unwrap(),
            Route::Forward {
                endpoint: Endpoint::Mirrorlist,
                query: vec![("repo".into(), "a".into()), ("arch".into(), "b".into())]
            }
        );
        assert_eq!(
            route(&Method::HEAD, &uri("/metalink")).unwrap(),
            Route::Forward {
                endpoint: Endpoint::Metalink,
                query: vec![]
            }
        );
        assert_eq!(route(&Method::GET, &uri("/health")).unwrap(), Route::Health);
        assert_eq!(
            route(&Method::HEAD, &uri("/metrics")).unwrap(),
            Route::Metrics
        );
        assert_eq!(
            status(route(&Method::POST, &uri("/metrics"))),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            status(route(&Method::GET, &uri("/metrics/x"))),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(route(&Method::GET, &uri("/"))),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(route(&Method::GET, &uri("/mirrorlist/"))),
            StatusCode::NOT_FOUND
        );
        let resp = route(&Method::POST, &uri("/mirrorlist"))
            .unwrap_err()
            .response();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[header::ALLOW], "GET, HEAD");
        assert_eq!(
            status(route(&Method::GET, &uri("/metalink?repo=%FF"))),
            StatusCode::BAD_REQUEST
        );
        let long = format!("/mirrorlist?repo={}", "a".repeat(MAX_URI_LEN));
        assert_eq!(
            status(route(&Method::GET, &uri(&long))),
            StatusCode::URI_TOO_LONG
        );
    }

    fn reply(status: u16, headers: &[(&str, &str)]) -> Answer {
        Answer {
            status,
            content_type: "text/plain".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Bytes::from_static(b"body"),
        }
    }

    #[test]
    fn reply_passes_through() {
        let resp = from_reply(reply(302, &[("Location", "https://m.example/x")])).unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND);
        assert_eq!(resp.headers()[header::LOCATION], "https://m.example/x");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/plain");
        // The length is hyper's to write from the body's exact size; HEAD
        // states it too.
        use hyper::body::Body as _;
        assert_eq!(resp.body().size_hint().exact(), Some(4));
        assert!(!resp.headers().contains_key(header::CONTENT_LENGTH));
        assert_eq!(without_body(resp).headers()[header::CONTENT_LENGTH], "4");
    }

    #[test]
    fn the_usual_content_types_pass_as_they_are() {
        for ct in [
            "text/plain; charset=utf-8",
            "application/metalink+xml",
            "text/x-other",
        ] {
            let mut r = reply(200, &[]);
            r.content_type = ct.into();
            assert_eq!(from_reply(r).unwrap().headers()[header::CONTENT_TYPE], ct);
        }
    }

    #[test]
    fn invalid_replies_are_refused() {
        assert!(from_reply(reply(99, &[])).is_err());
        assert!(from_reply(reply(1000, &[])).is_err());
        assert!(from_reply(reply(100, &[])).is_err());
        assert!(from_reply(reply(200, &[("bad name", "x")])).is_err());
        assert!(from_reply(reply(200, &[("X-A", "line\nbreak")])).is_err());
        assert!(from_reply(reply(200, &[("Content-Length", "9")])).is_err());
        assert!(from_reply(reply(200, &[("transfer-encoding", "chunked")])).is_err());
        let mut r = reply(200, &[]);
        r.content_type = "text/\r\nplain".into();
        assert!(from_reply(r).is_err());
        assert_eq!(
            from_upstream(Ok(reply(200, &[("bad name", "x")]))).status(),
            StatusCode::BAD_GATEWAY
        );
    }

    #[test]
    fn upstream_errors() {
        let r = upstream_error(&UpstreamError::Unavailable { retry_after: 2 });
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        for e in [
            UpstreamError::Overloaded,
            UpstreamError::ConnectionLost,
            UpstreamError::Timeout(std::time::Duration::from_secs(5)),
            UpstreamError::QueueTimeout(std::time::Duration::from_secs(5)),
        ] {
            let r = upstream_error(&e);
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{e}");
            assert_eq!(r.headers()[header::RETRY_AFTER], "1", "{e}");
        }
        let r = upstream_error(&UpstreamError::Protocol("x".into()));
        assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn health_parses_built_at_leniently() {
        let ping = |body: &str| Answer::from(Reply::text(200, body));
        assert_eq!(built_at(b"ok built_at=1700000000\n"), Some(1_700_000_000));
        assert_eq!(built_at(b"built_at=5"), Some(5));
        assert_eq!(built_at(b"ok\nversion=1 built_at=7;x"), Some(7));
        assert_eq!(built_at(b"ok"), None);
        assert_eq!(built_at(b"ok built_at=soon"), None);
        assert_eq!(
            health(Ok(ping("ok built_at=100\n")), 142).status(),
            StatusCode::OK
        );
        assert_eq!(
            health(Ok(ping("ok")), 142).status(),
            StatusCode::OK,
            "an answer without a build time is still an answer"
        );
        assert_eq!(
            health(Ok(Reply::text(503, "no cache loaded\n").into()), 1).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            health(Err(UpstreamError::ConnectionLost), 1).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn head_keeps_the_length() {
        let r = without_body(text(StatusCode::OK, "12345"));
        assert_eq!(r.headers()[header::CONTENT_LENGTH], "5");
        use hyper::body::Body as _;
        assert_eq!(r.body().size_hint().exact(), Some(0));
    }
}
