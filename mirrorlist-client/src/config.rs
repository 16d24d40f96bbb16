//! The resolved configuration: what [`crate::run`] and [`crate::ask`] work
//! from, independent of how it was spelled on the command line (tests build
//! it directly from [`Config::default`]).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::forwarded::ClientHeader;

/// Configuration of the serving front end.
#[derive(Clone, Debug)]
pub struct Config {
    /// The server's Unix socket.
    pub socket: PathBuf,
    /// Addresses to accept HTTP on (used by `main`, which binds them; `run`
    /// takes the bound listeners).
    pub listen: Vec<SocketAddr>,
    /// Peers whose `X-Forwarded-For` (or `Forwarded`) is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Which of the two headers they write the client's address into.
    pub client_header: ClientHeader,
    /// Clients `/metrics` is served to (as the trusted proxies name them);
    /// others get 403.
    pub metrics_from: Vec<IpNet>,
    /// Requests forwarded to the server at once, for the whole process
    /// (the command line's default is [`INFLIGHT_PER_WORKER`] per worker).
    pub max_inflight: usize,
    /// Requests allowed to wait for an in-flight slot; beyond that, 503.
    pub max_queue: usize,
    /// Worker threads, each with its own runtime and connections (used by
    /// [`crate::run_workers`]; [`crate::run`] is one worker).
    pub workers: usize,
    /// Persistent connections to the server, per worker.
    pub upstream_connections: usize,
    /// Bound on a request's whole wait (queue and server).
    pub request_timeout: Duration,
    /// Bound on reading request headers, and so on idle keep-alive.
    pub header_timeout: Duration,
    /// Bound on a client's pause in reading a response: a write that makes
    /// no progress for this long closes the connection.
    pub send_timeout: Duration,
    /// Bound on finishing in-flight requests at shutdown.
    pub shutdown_timeout: Duration,
    /// Bound on the server's answer to a `/health` ping. Short, so a proxy's
    /// health check gets an honest answer well inside its own timeout.
    pub health_timeout: Duration,
    /// Listen backlog of the HTTP sockets `main` binds: bursts of thousands
    /// of simultaneous connections (cloud instances on a timer) must wait in
    /// the kernel queue, not be refused. The kernel caps it at somaxconn.
    pub backlog: u32,
}

/// The default in-flight limit per worker thread (the limit itself is one
/// for the whole process). The server answers in tens of microseconds, so
/// 64 requests per worker keep it busy with batches to spare. Beyond that,
/// requests wait in the front end, first come first served across every
/// worker, rather than in the server's socket behind whatever the busier
/// worker forwarded: the workers' shares of the connections are seldom
/// even (379 and 621 of 1,000, say). At 1,000 connections this cut p99 by
/// 9-32% in four A/B runs (BENCHMARKS.md, change 39); below 64 connections
/// per worker the limit is never reached.
pub const INFLIGHT_PER_WORKER: usize = 64;

impl Default for Config {
    fn default() -> Config {
        Config {
            socket: PathBuf::from("/run/mirrorlist/mirrorlist.sock"),
            listen: Vec::new(),
            trusted_proxies: Vec::new(),
            client_header: ClientHeader::XForwardedFor,
            metrics_from: loopback(),
            max_inflight: INFLIGHT_PER_WORKER,
            max_queue: 8192,
            workers: 1,
            upstream_connections: 1,
            request_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(10),
            health_timeout: Duration::from_secs(2),
            backlog: 4096,
        }
    }
}

/// The default of `--metrics-from`: this machine only.
pub fn loopback() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .map(|net| net.parse().expect("a CIDR"))
        .collect()
}

/// Configuration of the `ask` subcommand.
#[derive(Clone, Debug)]
pub struct AskConfig {
    /// The server's Unix socket.
    pub socket: PathBuf,
    /// The client address to ask for.
    pub ip: Option<IpAddr>,
    /// How long to wait for the answer.
    pub request_timeout: Duration,
    /// HEAD instead of GET.
    pub head: bool,
    /// Request target: path and query.
    pub target: String,
}
