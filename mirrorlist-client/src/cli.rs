//! Command-line flags (clap derive) and their resolution into a [`Config`]
//! or an [`AskConfig`]. Everything an operator can get wrong is checked here,
//! so a bad flag is a usage error (exit 64) before any socket is touched.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use ipnet::IpNet;

use crate::config::{AskConfig, Config, INFLIGHT_PER_WORKER};
use crate::forwarded::ClientHeader;

/// HTTP front end of the mirrorlist service.
///
/// Answers `/mirrorlist`, `/metalink` and `/health` over HTTP/1.1 by
/// forwarding each request to `mirrorlist-server` over its Unix socket.
/// Logs to stderr; RUST_LOG overrides -v/-q.
#[derive(Debug, Parser)]
#[command(
    name = "mirrorlist-client",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Run a one-off query instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Serving flags (used when no subcommand is given).
    #[command(flatten)]
    pub serve: ServeArgs,

    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Less log output (-q warnings only, -qq errors only). RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send one request to the server over its socket and print the HTTP
    /// status line, headers and body a client would get.
    ///
    /// Exit status 0 on any answer, 1 if the server cannot be reached or
    /// answers with a malformed frame.
    Ask(AskArgs),
}

/// Flags of the serving mode.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The server's Unix socket.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Address to accept HTTP on; may be repeated.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,

    /// A proxy (CIDR or single address) whose X-Forwarded-For (or, with
    /// --client-header forwarded, Forwarded) is believed; may be repeated.
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    pub trusted_proxy: Vec<IpNet>,

    /// The header the trusted proxies write the client's address into; the
    /// other one is ignored (a client could write it).
    #[arg(long, value_name = "HEADER", value_enum, default_value_t = ClientHeader::XForwardedFor)]
    pub client_header: ClientHeader,

    /// A client (CIDR or single address) that `/metrics` is served to; may
    /// be repeated. Others get 403 [default: 127.0.0.0/8 and ::1].
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    pub metrics_from: Vec<IpNet>,

    /// Requests forwarded to the server at once, for the whole process;
    /// the rest wait, first come first served [default: 64 per worker].
    #[arg(long, value_name = "N")]
    pub max_inflight: Option<usize>,

    /// Requests waiting for an in-flight slot before new ones get 503.
    #[arg(long, value_name = "N", default_value_t = 8192)]
    pub max_queue: usize,

    /// Worker threads, each serving its share of the HTTP connections with
    /// its own connections to the server [default: one per CPU].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Persistent, pipelined connections to the server's socket, per worker.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub upstream_connections: usize,

    /// Bound on a request's whole wait (queue and server) before 503.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_secs)]
    pub request_timeout: Duration,

    /// Bound on reading a request's headers (and on idle keep-alive).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_secs)]
    pub header_timeout: Duration,

    /// Bound on a client's pause in reading a response before its
    /// connection is closed (progress resets it: slow clients are served).
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = parse_secs)]
    pub send_timeout: Duration,

    /// Bound on finishing in-flight requests after SIGTERM/SIGINT.
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_secs)]
    pub shutdown_timeout: Duration,
}

/// Flags of `ask`.
#[derive(Debug, Args)]
pub struct AskArgs {
    /// The server's Unix socket.
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,

    /// The client address to ask for (default: none, as for an unknown client).
    #[arg(long, value_name = "IP")]
    pub ip: Option<IpAddr>,

    /// How long to wait for the answer.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_secs)]
    pub request_timeout: Duration,

    /// Send a HEAD instead of a GET (headers only).
    #[arg(long)]
    pub head: bool,

    /// The request target, e.g. '/mirrorlist?repo=fedora-42&arch=x86_64'.
    #[arg(value_name = "TARGET")]
    pub target: String,
}

/// A flag combination that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// A required flag is missing.
    #[error("{0} is required")]
    Missing(&'static str),
    /// A count that must be positive is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

impl ServeArgs {
    /// Checks the flags and resolves them into a [`Config`].
    pub fn into_config(self) -> Result<Config, UsageError> {
        let socket = self.socket.ok_or(UsageError::Missing("--socket"))?;
        if self.listen.is_empty() {
            return Err(UsageError::Missing("--listen"));
        }
        if self.upstream_connections == 0 {
            return Err(UsageError::Zero("--upstream-connections"));
        }
        let workers = match self.workers {
            Some(0) => return Err(UsageError::Zero("--workers")),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let max_inflight = match self.max_inflight {
            Some(0) => return Err(UsageError::Zero("--max-inflight")),
            Some(n) => n,
            None => workers.saturating_mul(INFLIGHT_PER_WORKER),
        };
        Ok(Config {
            socket,
            listen: self.listen,
            trusted_proxies: self.trusted_proxy,
            client_header: self.client_header,
            metrics_from: if self.metrics_from.is_empty() {
                crate::config::loopback()
            } else {
                self.metrics_from
            },
            max_inflight,
            max_queue: self.max_queue,
            workers,
            upstream_connections: self.upstream_connections,
            request_timeout: self.request_timeout,
            header_timeout: self.header_timeout,
            send_timeout: self.send_timeout,
            shutdown_timeout: self.shutdown_timeout,
            ..Config::default()
        })
    }
}

impl AskArgs {
    /// Resolves the flags into an [`AskConfig`].
    pub fn into_config(self) -> AskConfig {
        AskConfig {
            socket: self.socket,
            ip: self.ip,
            request_timeout: self.request_timeout,
            head: self.head,
            target: self.target,
        }
    }
}

impl Cli {
    /// The default log filter the -v/-q counts ask for.
    pub fn log_level(&self) -> &'static str {
        match (self.verbose, self.quiet) {
            (0, 0) => "info",
            (1, _) => "debug",
            (v, _) if v >= 2 => "trace",
            (_, 1) => "warn",
            _ => "error",
        }
    }
}

/// A CIDR, or a bare address meaning just that host.
fn parse_net(s: &str) -> Result<IpNet, String> {
    let net = match s.parse::<IpNet>() {
        // `10.1.2.3/8` is almost certainly meant as the network; normalise
        // so containment checks do what the operator meant.
        Ok(net) => net.trunc(),
        Err(_) => s
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("`{s}` is neither a CIDR (e.g. 10.0.0.0/8) nor an IP address"))?,
    };
    // Peers are compared in canonical form (`::ffff:10.0.0.1` is 10.0.0.1),
    // so an IPv4-mapped network must be too, or it would never match.
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(len)) = (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96))
        {
            return ipnet::Ipv4Net::new(v4, len)
                .map(IpNet::V4)
                .map_err(|e| format!("`{s}`: {e}"));
        }
    }
    Ok(net)
}

/// The longest timeout accepted: a day. Far beyond any sensible bound, and
/// far from where a deadline (now + timeout) would overflow.
const MAX_SECS: f64 = 86_400.0;

/// A positive number of seconds, fractions allowed, at most [`MAX_SECS`].
fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err(format!("`{s}` must be more than 0 seconds"));
    }
    if secs > MAX_SECS {
        return Err(format!("`{s}` is more than a day ({MAX_SECS} seconds)"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{s}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("mirrorlist-client").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_flags_resolve() {
        let cli = parse(&[
            "--socket",
            "/run/m.sock",
            "--listen",
            "127.0.0.1:8080",
            "--listen",
            "[::1]:8080",
            "--trusted-proxy",
            "10.1.2.3/8",
            "--trusted-proxy",
            "192.0.2.1",
            "--request-timeout",
            "0.5",
        ])
        .unwrap();
        let config = cli.serve.into_config().unwrap();
        assert_eq!(config.listen.len(), 2);
        assert_eq!(
            config.trusted_proxies,
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "192.0.2.1/32".parse().unwrap()
            ]
        );
        assert_eq!(config.request_timeout, Duration::from_millis(500));
        assert_eq!(config.upstream_connections, 1);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(config.workers, cpus, "one worker per CPU unless told");
        assert_eq!(config.max_inflight, cpus * 64, "64 in flight per worker");
        assert_eq!(config.max_queue, 8192);
        assert_eq!(config.client_header, ClientHeader::XForwardedFor);
    }

    #[test]
    fn the_client_header_is_one_of_two() {
        let with = |extra: &[&str]| {
            let mut args = vec!["--socket", "/s", "--listen", "127.0.0.1:1"];
            args.extend_from_slice(extra);
            parse(&args)
        };
        let config = with(&["--client-header", "forwarded"])
            .unwrap()
            .serve
            .into_config()
            .unwrap();
        assert_eq!(config.client_header, ClientHeader::Forwarded);
        let config = with(&["--client-header", "x-forwarded-for"])
            .unwrap()
            .serve
            .into_config()
            .unwrap();
        assert_eq!(config.client_header, ClientHeader::XForwardedFor);
        let e = with(&["--client-header", "x-real-ip"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("forwarded"), "{e}");
    }

    #[test]
    fn missing_or_zero_flags_are_usage_errors() {
        let cli = parse(&["--listen", "127.0.0.1:1"]).unwrap();
        assert!(matches!(
            cli.serve.into_config(),
            Err(UsageError::Missing("--socket"))
        ));
        let cli = parse(&["--socket", "/s"]).unwrap();
        assert!(matches!(
            cli.serve.into_config(),
            Err(UsageError::Missing("--listen"))
        ));
        // The required flags, then `extra`.
        let with = |extra: &[&str]| {
            let mut args = vec!["--socket", "/s", "--listen", "127.0.0.1:1"];
            args.extend_from_slice(extra);
            parse(&args).unwrap().serve.into_config()
        };
        assert!(matches!(
            with(&["--upstream-connections", "0"]),
            Err(UsageError::Zero("--upstream-connections"))
        ));
        assert!(matches!(
            with(&["--workers", "0"]),
            Err(UsageError::Zero("--workers"))
        ));
        assert_eq!(with(&["--workers", "3"]).unwrap().workers, 3);
        assert!(matches!(
            with(&["--max-inflight", "0"]),
            Err(UsageError::Zero("--max-inflight"))
        ));
        // The admission limit follows the workers unless it is given.
        assert_eq!(with(&["--workers", "3"]).unwrap().max_inflight, 192);
        let both = with(&["--workers", "3", "--max-inflight", "5"]).unwrap();
        assert_eq!((both.workers, both.max_inflight), (3, 5));
        assert!(parse(&["--request-timeout", "0"]).is_err());
        assert!(parse(&["--request-timeout", "-1"]).is_err());
        assert!(parse(&["--send-timeout", "1e19"]).is_err());
        assert!(parse(&["--header-timeout", "86400"]).is_ok());
        assert!(parse(&["--trusted-proxy", "not-a-net"]).is_err());
        // IPv4-mapped forms become the IPv4 networks peers are compared
        // with.
        assert_eq!(
            parse_net("::ffff:10.1.2.3/104"),
            Ok("10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(
            parse_net("::ffff:192.0.2.1"),
            Ok("192.0.2.1/32".parse().unwrap())
        );
        assert_eq!(
            parse_net("2001:db8::/32"),
            Ok("2001:db8::/32".parse().unwrap())
        );
    }

    #[test]
    fn ask_parses() {
        let cli = parse(&[
            "ask",
            "--socket",
            "/s",
            "--ip",
            "192.0.2.1",
            "/metalink?repo=a",
        ])
        .unwrap();
        let Some(Command::Ask(ask)) = cli.command else {
            panic!("expected ask")
        };
        let ask = ask.into_config();
        assert_eq!(ask.target, "/metalink?repo=a");
        assert_eq!(ask.ip, Some("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn verbosity() {
        assert_eq!(parse(&[]).unwrap().log_level(), "info");
        assert_eq!(parse(&["-v"]).unwrap().log_level(), "debug");
        assert_eq!(parse(&["-vv"]).unwrap().log_level(), "trace");
        assert_eq!(parse(&["-q"]).unwrap().log_level(), "warn");
        assert_eq!(parse(&["-qq"]).unwrap().log_level(), "error");
    }
}
