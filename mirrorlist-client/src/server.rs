//! The serving loop: accept on every listener, serve each connection with
//! hyper's HTTP/1.1 server, stop on the shutdown future and let in-flight
//! requests finish within a bound.
//!
//! HTTP/1.1 only, on purpose: dnf, yum, librepo, apt and curl speak HTTP/1.1
//! to a plain-HTTP mirrorlist, and proxies in front of it do too. hyper's
//! HTTP/2 server has no header-read or idle timeout, and hyper-util's
//! version sniffing waits for the preface without one, so serving
//! cleartext HTTP/2 would let idle clients pin connections.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};

use crate::config::Config;
use crate::http::{self, State};
use crate::upstream::Upstream;

/// Binds `addr` with the configured backlog, ready for [`run`].
///
/// tokio's own `bind` uses a backlog of 1024; a burst of thousands of
/// simultaneous connections must wait in the kernel queue, not be refused.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // A restarted front end must not wait out TIME_WAIT of the old one.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // `[::]:80` and `0.0.0.0:80` may both be given; keep them apart.
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    TcpListener::from_std(socket.into())
}

/// Serves HTTP on `listeners` until `shutdown` completes, then stops
/// accepting and gives open connections `config.shutdown_timeout` to finish
/// what they are doing.
pub async fn run(
    config: Config,
    listeners: Vec<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    anyhow::ensure!(!listeners.is_empty(), "no address to listen on");
    let state = Arc::new(State {
        upstream: Upstream::start(
            &config.socket,
            config.upstream_connections,
            config.max_inflight,
            config.max_queue,
            config.request_timeout,
        ),
        trusted_proxies: config.trusted_proxies.clone(),
        health_timeout: config.health_timeout,
    });

    // Give the pool its chance to connect before the first request arrives
    // (a refused or missing socket fails at once, so this does not wait for
    // a server that is down).
    state.upstream.first_attempts().await;

    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Also bounds idle keep-alive: hyper starts this timer whenever it
        // waits for the next request head.
        .header_read_timeout(config.header_timeout)
        // Not `pipeline_flush`: with it, hyper leaves its own error
        // responses (414 for a request line over 64 KiB, 431) unflushed and
        // closes the connection without an answer.
        .keep_alive(true);

    for listener in &listeners {
        tracing::info!("listening on {}", listener.local_addr()?);
    }
    tracing::info!(
        socket = %config.socket.display(),
        connections = config.upstream_connections,
        max_inflight = config.max_inflight,
        max_queue = config.max_queue,
        "forwarding to the mirrorlist server"
    );

    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut start = 0;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept_any(&listeners, &mut start) => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors or memory: the error repeats at
                // once, so pause instead of spinning; connections waiting in
                // the backlog are accepted once some close.
                tracing::error!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Responses are written whole; do not let Nagle hold the last bit.
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(http::handle(req, peer, &state).await) }
        });
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(peer = %peer, "connection ended: {e}");
            }
        });
    }

    // Stop accepting: closing the sockets makes new connections fail at
    // once (or go to another instance) instead of waiting in our backlog.
    drop(listeners);
    tracing::info!(
        "shutting down; waiting for {} open connection(s)",
        graceful.count()
    );
    match tokio::time::timeout(config.shutdown_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!(
            "connections still open after {:?}; closing them",
            config.shutdown_timeout
        ),
    }
    Ok(())
}

/// The next connection on any listener; `start` rotates which is polled
/// first so one busy listener cannot starve the others.
async fn accept_any(
    listeners: &[TcpListener],
    start: &mut usize,
) -> io::Result<(TcpStream, SocketAddr)> {
    std::future::poll_fn(|cx| {
        let n = listeners.len();
        for i in 0..n {
            let index = (*start + i) % n;
            if let Poll::Ready(result) = listeners[index].poll_accept(cx) {
                *start = (index + 1) % n;
                return Poll::Ready(result);
            }
        }
        Poll::Pending
    })
    .await
}
