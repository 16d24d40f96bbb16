//! `mirrorlist-client ask`: the operator's "what would this client get?".
//!
//! Sends one request over the server's socket on a fresh connection (no
//! pool: a one-off should not wait for one to come up) and renders the
//! answer through the same routing, decoding and reply translation as the
//! HTTP path, so what it prints is what an HTTP client would receive.

use std::io::{self, Write};

use hyper::{Method, Response, Uri};
use mirrorlist_core::protocol::{self, EncodedRequest, Endpoint, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::config::AskConfig;
use crate::http::{self, Body, Route};
use crate::upstream::UpstreamError;
use crate::Failure;

/// Why `ask` printed no answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// The target is not a request target (a usage error).
    #[error("`{0}` is not a request target like '/mirrorlist?repo=fedora-42&arch=x86_64'")]
    Target(String),
    /// The server could not be reached or did not answer.
    #[error("cannot reach the mirrorlist server at {path}: {source}")]
    Unreachable {
        /// The socket path.
        path: String,
        /// What failed.
        source: io::Error,
    },
    /// The server answered with something that is not a reply.
    #[error("the mirrorlist server sent an invalid reply: {0}")]
    Protocol(String),
}

/// The `ask` subcommand: asks and prints the answer to stdout.
pub async fn main(config: AskConfig) -> Result<(), Failure> {
    let response = ask(&config).await.map_err(|e| match e {
        AskError::Target(_) => Failure::Usage(e.into()),
        _ => Failure::Runtime(e.into()),
    })?;
    print(response, &mut io::stdout().lock())
        .await
        .map_err(|e| Failure::Runtime(anyhow::Error::new(e).context("cannot write the answer")))
}

/// Asks the server and returns the response an HTTP client would get.
pub async fn ask(config: &AskConfig) -> Result<Response<Body>, AskError> {
    let uri: Uri = config
        .target
        .parse()
        .map_err(|_| AskError::Target(config.target.clone()))?;
    if uri.path_and_query().is_none() || !uri.path().starts_with('/') {
        return Err(AskError::Target(config.target.clone()));
    }
    let method = if config.head {
        Method::HEAD
    } else {
        Method::GET
    };
    let response = match http::route(&method, &uri) {
        Err(refusal) => refusal.response(),
        Ok(Route::Health) => {
            let ping = EncodedRequest::without_query(Endpoint::Ping);
            http::health(Ok(exchange(config, &ping).await?.into()), http::unix_now())
        }
        // The counters are a running front end's; this process has none.
        Ok(Route::Metrics) => http::text(
            hyper::StatusCode::NOT_FOUND,
            "not found: /metrics is served by a running front end over HTTP, not by ask\n",
        ),
        Ok(Route::Forward { endpoint, query }) => {
            let request = EncodedRequest::new(endpoint, config.ip, &query);
            let reply = exchange(config, &request).await?;
            http::from_reply(reply.into()).map_err(|e| AskError::Protocol(e.to_string()))?
        }
    };
    Ok(if config.head {
        http::without_body(response)
    } else {
        response
    })
}

/// One request, one reply, on a connection of its own.
async fn exchange(config: &AskConfig, request: &EncodedRequest) -> Result<Reply, AskError> {
    let unreachable = |source: io::Error| AskError::Unreachable {
        path: config.socket.display().to_string(),
        source,
    };
    let timed_out = || {
        unreachable(io::Error::new(
            io::ErrorKind::TimedOut,
            UpstreamError::Timeout(config.request_timeout).to_string(),
        ))
    };
    let work = async {
        let mut stream = UnixStream::connect(&config.socket)
            .await
            .map_err(unreachable)?;
        let mut frame = Vec::new();
        request.frame_into(1, &mut frame);
        stream.write_all(&frame).await.map_err(unreachable)?;
        let mut buf = Vec::with_capacity(64 * 1024);
        loop {
            match protocol::parse_frame(&buf) {
                Ok(Some(frame)) if frame.id != 1 => {
                    return Err(AskError::Protocol(format!(
                        "reply id {} to request 1",
                        frame.id
                    )))
                }
                Ok(Some(frame)) => {
                    return protocol::decode_reply(&frame)
                        .map_err(|e| AskError::Protocol(e.to_string()))
                }
                Ok(None) => {}
                Err(e) => return Err(AskError::Protocol(e.to_string())),
            }
            if stream.read_buf(&mut buf).await.map_err(unreachable)? == 0 {
                return Err(unreachable(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the reply",
                )));
            }
        }
    };
    tokio::time::timeout(config.request_timeout, work)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

/// Writes the response as an HTTP/1.1 message: status line, headers, a
/// blank line, the body. As hyper does on the wire, `Content-Length` comes
/// last among the headers, from the body, unless the response has one.
pub async fn print(response: Response<Body>, out: &mut impl Write) -> io::Result<()> {
    use http_body_util::BodyExt as _;
    use hyper::body::Body as _;
    let (parts, body) = response.into_parts();
    let length = if parts.headers.contains_key(hyper::header::CONTENT_LENGTH) {
        None
    } else {
        body.size_hint().exact()
    };
    let status = parts.status;
    writeln!(
        out,
        "HTTP/1.1 {} {}",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    )?;
    for (name, value) in &parts.headers {
        out.write_all(name.as_str().as_bytes())?;
        out.write_all(b": ")?;
        out.write_all(value.as_bytes())?;
        out.write_all(b"\n")?;
    }
    if let Some(length) = length {
        writeln!(out, "content-length: {length}")?;
    }
    writeln!(out)?;
    // A `Full` body is one buffer, ready at once; its error type is
    // `Infallible`.
    let body = match body.collect().await {
        Ok(body) => body,
        Err(never) => match never {},
    };
    out.write_all(&body.to_bytes())?;
    out.flush()
}
