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
use tokio::net::{TcpListener, TcpStream};

use anyhow::Context as _;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::drain::Drain;
use crate::http::{self, State};
use crate::metrics::Metrics;
use crate::send_timeout::SendTimeout;
use crate::upstream::{Admission, Upstream};

/// Binds `addr` with the configured backlog, non-blocking, ready for
/// [`run_workers`] (or, through `TcpListener::from_std`, [`run`]).
///
/// tokio's own `bind` uses a backlog of 1024; a burst of thousands of
/// simultaneous connections must wait in the kernel queue, not be refused.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
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
    Ok(socket.into())
}

/// Serves HTTP on `listeners` with one worker on the current runtime
/// until `shutdown` completes, then stops accepting and gives open
/// connections `config.shutdown_timeout` to finish what they are doing.
/// (`config.workers` is for [`run_workers`]; this is one worker.)
pub async fn run(
    config: Config,
    listeners: Vec<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let admission = Admission::new(config.max_inflight, config.max_queue);
    let metrics = Metrics::new(1, admission.clone(), http::unix_now());
    run_worker(config, listeners, admission, metrics, 0, shutdown).await
}

/// Runs `config.workers` workers until `shutdown` completes, then shuts
/// them all down gracefully; a worker that fails stops the others.
///
/// Each worker is a thread with a current-thread runtime of its own, its
/// own connections to the server and its own share of the HTTP
/// connections: all accept on the same listening sockets (whichever is
/// free takes the next connection), and nothing but the admission limit
/// is shared: a request is always forwarded on its own worker's
/// connections (its place in the queue may be handed to it by another). One single-threaded
/// process doing all of the HTTP side kept the front end and the server
/// on one core while the load generator had the other, idle a fifth of
/// the time; see BENCHMARKS.md.
pub async fn run_workers(
    config: Config,
    listeners: Vec<std::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    anyhow::ensure!(!listeners.is_empty(), "no address to listen on");
    let admission = Admission::new(config.max_inflight, config.max_queue);
    let metrics = Metrics::new(config.workers.max(1), admission.clone(), http::unix_now());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut threads = Vec::with_capacity(config.workers);
    for worker in 0..config.workers.max(1) {
        let listeners = listeners
            .iter()
            .map(std::net::TcpListener::try_clone)
            .collect::<io::Result<Vec<_>>>()
            .context("cannot share the listening sockets with a worker")?;
        let (config, admission, done) = (config.clone(), admission.clone(), done_tx.clone());
        let metrics = metrics.clone();
        let mut stop = stop_rx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("worker-{worker}"))
            .spawn(move || {
                // A worker that panics must still report, or the others
                // would serve on without it and nobody would know.
                let run = || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("cannot start a worker's runtime")
                        .and_then(|runtime| {
                            runtime.block_on(async move {
                                let listeners = listeners
                                    .into_iter()
                                    .map(TcpListener::from_std)
                                    .collect::<io::Result<Vec<_>>>()?;
                                let stopped = async move {
                                    // An error means the sender is gone: stop too.
                                    let _ = stop.wait_for(|&stop| stop).await;
                                };
                                run_worker(config, listeners, admission, metrics, worker, stopped)
                                    .await
                            })
                        })
                };
                let _ = done.send((worker, unwound(run)));
            })
            .context("cannot start a worker thread")?;
        threads.push(thread);
    }
    drop(done_tx);
    drop(listeners);

    let mut failure = None;
    tokio::select! {
        () = shutdown => {}
        Some((worker, result)) = done_rx.recv() => {
            // Workers end only when told to; one that ends early failed.
            let e = result.err().unwrap_or_else(|| anyhow::anyhow!("stopped on its own"));
            failure = Some(e.context(format!("worker {worker}")));
        }
    }
    let _ = stop_tx.send(true);
    while let Some((worker, result)) = done_rx.recv().await {
        if let (Err(e), None) = (result, &failure) {
            failure = Some(e.context(format!("worker {worker}")));
        }
    }
    for thread in threads {
        // Every worker has reported, so each thread is at its end.
        let _ = thread.join();
    }
    failure.map_or(Ok(()), Err)
}

/// One worker: serves `listeners` on the current runtime until `shutdown`.
async fn run_worker(
    config: Config,
    listeners: Vec<TcpListener>,
    admission: Arc<Admission>,
    metrics: Arc<Metrics>,
    worker: usize,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    anyhow::ensure!(!listeners.is_empty(), "no address to listen on");
    let state = Arc::new(State {
        upstream: Upstream::start(
            &config.socket,
            config.upstream_connections,
            admission,
            config.request_timeout,
        ),
        trusted_proxies: config.trusted_proxies.clone(),
        client_header: config.client_header,
        health_timeout: config.health_timeout,
        stats: metrics.worker(worker),
        metrics,
        metrics_from: config.metrics_from.clone(),
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

    // The listening sockets are shared: worker 0 speaks for all of them.
    if worker == 0 {
        for listener in &listeners {
            tracing::info!("listening on {}", listener.local_addr()?);
        }
        tracing::info!(
            socket = %config.socket.display(),
            workers = config.workers,
            connections_per_worker = config.upstream_connections,
            max_inflight = config.max_inflight,
            max_queue = config.max_queue,
            "forwarding to the mirrorlist server"
        );
    }

    let drain = Drain::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut start = 0;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept_any(&listeners, &mut start) => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if out_of_resources(&e) => {
                // The error repeats at once, so pause instead of spinning;
                // connections waiting in the backlog are accepted once some
                // close.
                tracing::error!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => {
                // About that one connection (reset before it was accepted,
                // say): the next one is fine, and a burst must not wait.
                tracing::debug!("accept failed: {e}");
                continue;
            }
        };
        // Responses are written whole; do not let Nagle hold the last bit.
        let _ = stream.set_nodelay(true);
        let open = state.stats.connection();
        let state = state.clone();
        let service = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(http::handle(req, peer, &state).await) }
        });
        let io = TokioIo::new(SendTimeout::new(stream, config.send_timeout));
        let conn = drain.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            let _open = open;
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
        drain.count()
    );
    match tokio::time::timeout(config.shutdown_timeout, drain.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!(
            "connections still open after {:?}; no longer waiting for them",
            config.shutdown_timeout
        ),
    }
    Ok(())
}

/// Runs `f`, turning a panic into an error with the panic's message (the
/// panic hook has printed it in full already).
fn unwound(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let text = panic
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        Err(anyhow::anyhow!("panicked: {text}"))
    })
}

/// Whether an accept failed for want of descriptors or memory, rather than
/// because of the connection it was taking.
fn out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_running_out_of_resources_pauses_accepting() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(out_of_resources(&io::Error::from_raw_os_error(errno)));
        }
        for errno in [libc::ECONNABORTED, libc::EPROTO, libc::EPERM, libc::EINTR] {
            assert!(!out_of_resources(&io::Error::from_raw_os_error(errno)));
        }
    }

    #[test]
    fn a_panic_is_reported_as_an_error() {
        let e = unwound(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(e.to_string(), "panicked: boom 1");
        let e = unwound(|| std::panic::panic_any(7_u8)).unwrap_err();
        assert_eq!(e.to_string(), "panicked: (no message)");
        assert!(unwound(|| Ok(())).is_ok());
    }
}
