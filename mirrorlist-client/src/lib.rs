//! `mirrorlist-client`: the HTTP front end of the mirrorlist service.
//!
//! It speaks HTTP to dnf, yum, apt and curl (directly or behind a proxy),
//! decodes the query, works out the client's address, and forwards each
//! request over a small pool of persistent, pipelined Unix-socket
//! connections to `mirrorlist-server`, which selects and renders; the reply
//! is sent back as it came. Everything is bounded: header read time, the
//! wait for the server, a client's pause in reading the response, the
//! number of requests (and health pings) in flight and queued.
//!
//! # Layout
//!
//! - [`cli`]: command-line flags (clap) and their checks.
//! - [`config`]: the resolved [`Config`] (serving) and [`AskConfig`].
//! - [`server`]: [`run_workers`] (one thread and runtime per worker, all
//!   accepting on the same sockets), [`run`] (one worker: the accept loop
//!   and graceful shutdown); [`bind`].
//! - [`drain`]: the graceful shutdown of a worker's connections.
//! - [`send_timeout`]: the bound on a client that stops reading.
//! - [`http`]: routing, local answers (400/403/404/405/414, `/health`,
//!   `/metrics`) and the translation of the server's reply into an HTTP
//!   response.
//! - [`metrics`]: the counters and gauges `/metrics` serves, counted per
//!   worker.
//! - [`query`]: query-string decoding (percent-escapes, `+`, UTF-8).
//! - [`forwarded`]: the client address from the peer and trusted
//!   `X-Forwarded-For` or RFC 7239 `Forwarded`.
//! - [`upstream`]: the pipelined connection pool, admission limit, timeouts
//!   and reconnects; the shared region each connection attaches, whose
//!   bodies reach hyper without a copy.
//! - [`ask`]: the `ask` subcommand, one request straight over the socket.
//! - [`signal`]: SIGTERM/SIGINT as the shutdown future (a second one
//!   exits at once).
//!
//! The wire protocol itself is `mirrorlist_core::protocol`.
//!
//! # Running
//!
//! [`run`] takes already-bound listeners and a shutdown future (tests drive
//! it directly); `main` binds the `--listen` addresses with a backlog of
//! 4096, turns SIGTERM/SIGINT into that future and hands both to
//! [`run_workers`], which runs `--workers` copies of [`run`]'s loop on
//! threads of their own, sharing only the listening sockets and the
//! admission limit. Once the pool has made its first connection attempt
//! (which does not wait for a server that is down: requests then get 503
//! until it is back), `run` logs `listening on ADDR:PORT` at info level for
//! each listener: the readiness signal for scripts and tests. The statuses
//! the front end chooses itself are listed in [`http`].

#![forbid(unsafe_code)]

pub mod ask;
pub mod cli;
pub mod config;
pub mod drain;
pub mod forwarded;
pub mod http;
pub mod metrics;
pub mod query;
pub mod send_timeout;
pub mod server;
pub mod signal;
pub mod upstream;

pub use config::{AskConfig, Config};
pub use server::{bind, run, run_workers};

/// How the program failed, deciding its exit status.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Bad flags or configuration: exit 64 (EX_USAGE).
    #[error("{0:#}")]
    Usage(anyhow::Error),
    /// Anything that went wrong while running: exit 1.
    #[error("{0:#}")]
    Runtime(anyhow::Error),
}

impl Failure {
    /// The process exit status for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 64,
            Failure::Runtime(_) => 1,
        }
    }
}

/// Binds the configured addresses, installs the signal handlers and runs
/// until SIGTERM or SIGINT. Must be called inside a tokio runtime.
pub async fn serve(config: Config) -> Result<(), Failure> {
    use anyhow::Context as _;
    match mirrorlist_core::limits::raise_fd_limit() {
        Ok(Some((from, to))) => tracing::debug!(from, to, "raised the open-file limit"),
        Ok(None) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let mut listeners = Vec::with_capacity(config.listen.len());
    for addr in &config.listen {
        let listener = bind(*addr, config.backlog)
            .with_context(|| format!("cannot listen on {addr}"))
            .map_err(Failure::Runtime)?;
        listeners.push(listener);
    }
    let shutdown = signal::shutdown()
        .context("cannot install signal handlers")
        .map_err(Failure::Runtime)?;
    run_workers(config, listeners, shutdown)
        .await
        .map_err(Failure::Runtime)
}
