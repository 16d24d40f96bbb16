//! `mlbench`: the helpers of the benchmark harness (`bench/run`, described
//! in `BENCHMARKS.md`). Each subcommand does one thing and prints its
//! results as one `key=value` line the driver script parses.
//!
//! # Layout
//!
//! - [`gen`]: the deterministic Fedora-scale (or smoke-size) mirror
//!   description, master tree, ASN table, and the request paths wrk rotates
//!   over.
//! - [`frames`]: a pipelining load generator speaking the frame protocol
//!   straight to `mirrorlist-server` (the server alone, without HTTP).
//! - [`fixed`]: a minimal hyper server answering a fixed body (the HTTP
//!   ceiling for a body of the same size).
//! - [`burst`]: many HTTP connections opened at once, one request each.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

mod burst;
mod fixed;
mod frames;
mod gen;

/// Benchmark helpers for the mirrorlist stack.
#[derive(Debug, Parser)]
#[command(name = "mlbench")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a mirror description, its master tree, an ASN table and the
    /// repository list into a directory.
    Gen {
        /// Output directory (created).
        #[arg(long)]
        out: PathBuf,
        /// Tiny data for the smoke run.
        #[arg(long)]
        smoke: bool,
        /// Content revision of the repomd.xml files: a second build with
        /// another revision gives the cache alternates.
        #[arg(long, default_value_t = 1)]
        revision: u32,
        /// Each host skips each repository directory of its categories with
        /// this probability, in percent (a crawler-fed cache's shape).
        #[arg(long, default_value_t = 0)]
        lagging: u32,
    },
    /// Write request paths (`/ENDPOINT?repo=..&arch=..&ip=..`) rotating over
    /// the repositories of a `name<TAB>arch[<TAB>...]` file and many client
    /// addresses.
    Paths {
        /// Repository list (`repos.txt` of `gen`, or MirrorManager2's repos.tsv).
        #[arg(long)]
        repos: PathBuf,
        /// `mirrorlist` or `metalink`.
        #[arg(long)]
        endpoint: String,
        /// How many paths.
        #[arg(long, default_value_t = 4096)]
        count: usize,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Load `mirrorlist-server` over its socket with pipelined frames.
    Frames {
        /// The server's socket.
        #[arg(long)]
        socket: PathBuf,
        /// Paths file (from `paths`).
        #[arg(long)]
        paths: PathBuf,
        /// Connections.
        #[arg(long, default_value_t = 2)]
        connections: usize,
        /// Requests in flight per connection.
        #[arg(long, default_value_t = 64)]
        depth: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Send exactly this many requests (shared out evenly among the
        /// connections, each going on through the paths from where it
        /// starts), however long they take, instead of running for
        /// `--duration`.
        #[arg(long)]
        requests: Option<u64>,
    },
    /// Serve a fixed body over HTTP/1.1: `/metalink*` gets `--metalink-size`
    /// bytes, everything else `--mirrorlist-size`.
    FixedHttp {
        /// Address to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Body size for /mirrorlist.
        #[arg(long)]
        mirrorlist_size: usize,
        /// Body size for /metalink.
        #[arg(long)]
        metalink_size: usize,
        /// Rotate over this many different bodies of each size instead of
        /// one, so that, as with the stack's answers, the body a response
        /// copies is not always the same bytes, hot in the cache.
        #[arg(long, default_value_t = 1)]
        distinct: usize,
    },
    /// Open many connections at once, one GET each, and count the answers.
    Burst {
        /// host:port of the HTTP server.
        #[arg(long)]
        addr: std::net::SocketAddr,
        /// Paths file (from `paths`).
        #[arg(long)]
        paths: PathBuf,
        /// Connections opened at once.
        #[arg(long, default_value_t = 2000)]
        connections: usize,
        /// Bound on the whole burst, seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    match cli.command {
        Command::Gen {
            out,
            smoke,
            revision,
            lagging,
        } => gen::generate(&out, smoke, revision, lagging),
        Command::Paths {
            repos,
            endpoint,
            count,
            out,
        } => gen::paths(&repos, &endpoint, count, &out),
        Command::Frames {
            socket,
            paths,
            connections,
            depth,
            duration,
            requests,
        } => {
            let limit = match requests {
                Some(n) => frames::Limit::Requests(n),
                None => frames::Limit::Seconds(duration),
            };
            rt()?.block_on(frames::run(&socket, &paths, connections, depth, limit))
        }
        Command::FixedHttp {
            listen,
            mirrorlist_size,
            metalink_size,
            distinct,
        } => rt()?.block_on(fixed::run(listen, mirrorlist_size, metalink_size, distinct)),
        Command::Burst {
            addr,
            paths,
            connections,
            timeout,
        } => rt()?.block_on(burst::run(addr, &paths, connections, timeout)),
    }
}
