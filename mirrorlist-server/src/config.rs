//! Command-line flags and the resolved configuration the server runs with.

use std::path::PathBuf;

use clap::Parser;

/// Flags of `mirrorlist-server`.
#[derive(Debug, Parser)]
#[command(
    name = "mirrorlist-server",
    version,
    about = "Answers mirrorlist and metalink requests over a Unix socket"
)]
pub struct Args {
    /// The cache file written by cache-builder.
    #[arg(long, value_name = "FILE")]
    pub cache: PathBuf,
    /// The Unix socket to listen on (required unless --check).
    #[arg(long, value_name = "PATH", required_unless_present = "check")]
    pub socket: Option<PathBuf>,
    /// GeoIP database (MaxMind DB format; GeoIP2/GeoLite2 or flat
    /// `country_code` schema). Without it the country tier is skipped.
    #[arg(long, value_name = "MMDB")]
    pub geoip: Option<PathBuf>,
    /// Prefix → ASN table, one `prefix ASN` per line (global_netblocks.txt).
    #[arg(long, value_name = "FILE")]
    pub asn_netblocks: Option<PathBuf>,
    /// Access log in MirrorManager's statistics format; reopened on SIGHUP
    /// and SIGUSR1.
    #[arg(long, value_name = "FILE")]
    pub access_log: Option<PathBuf>,
    /// Write the process id here (for `cache-builder --reload-pidfile`).
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Listen backlog; the kernel caps it at net.core.somaxconn.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub backlog: i32,
    /// Hosts to find before the global tier is no longer added.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub minimum: usize,
    /// Permissions of the socket file, in octal.
    #[arg(long, default_value = "0660", value_name = "MODE", value_parser = parse_mode)]
    pub socket_mode: u32,
    /// Group owning the socket file (name or number).
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// Accept connections only from these user ids (repeatable). Default:
    /// anyone the socket's permissions let in.
    #[arg(long, value_name = "UID")]
    pub allow_uid: Vec<u32>,
    /// Shared memory per front-end connection for reply bodies, in bytes
    /// (suffixes K, M, G); 0 sends every body over the socket. Bodies that
    /// find the region full (clients slow to take theirs) go over the
    /// socket too.
    #[arg(long, default_value = "8M", value_name = "BYTES", value_parser = parse_shm_size)]
    pub shm_size: usize,
    /// Threads answering requests, each with its own runtime and its share
    /// of the connections (a new connection goes to the thread serving
    /// the fewest) [default: one per two CPUs, at least one].
    #[arg(long, value_name = "N", value_parser = parse_workers)]
    pub workers: Option<usize>,
    /// Seconds to let in-flight requests finish after SIGTERM.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub shutdown_timeout: u64,
    /// Load everything, print a summary and exit.
    #[arg(long)]
    pub check: bool,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less logging (warnings and errors only).
    #[arg(short, long)]
    pub quiet: bool,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!("{s:?} is not an octal file mode such as 0660")),
    }
}

fn parse_workers(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("at least one worker is needed".to_owned()),
        Ok(n) if n <= MAX_WORKERS => Ok(n),
        Ok(_) => Err(format!("at most {MAX_WORKERS} workers")),
        Err(_) => Err(format!("{s:?} is not a number of threads")),
    }
}

/// One worker per two CPUs: the server does under half of a request's
/// work (the front end, one worker per CPU, the rest), and on two CPUs a
/// second worker measured as more CPU per request for the same
/// throughput (BENCHMARKS.md, change 33).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, MAX_WORKERS))
}

/// More threads than this would only add wake-ups: a front end holds a few
/// connections per CPU of its own.
pub const MAX_WORKERS: usize = 256;

fn parse_shm_size(s: &str) -> Result<usize, String> {
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let shift = match unit {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        _ => return Err(format!("{s:?}: the unit must be K, M or G")),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 8M"))?;
    let size = n
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if size == 0 {
        return Ok(0);
    }
    mirrorlist_core::shm::check_size(size as u64).map_err(|e| e.to_string())
}

/// Where the data comes from: what a (re)load reads.
#[derive(Clone, Debug)]
pub struct Sources {
    /// Cache file.
    pub cache: PathBuf,
    /// GeoIP database, if any.
    pub geoip: Option<PathBuf>,
    /// ASN table, if any.
    pub asn_netblocks: Option<PathBuf>,
    /// The `minimum` setting of selection.
    pub minimum: usize,
}

/// How the server runs once its socket is bound.
#[derive(Clone, Debug)]
pub struct Config {
    /// What to load, and reload on SIGHUP.
    pub sources: Sources,
    /// Access log path.
    pub access_log: Option<PathBuf>,
    /// Allowed peer uids; empty means everyone.
    pub allow_uid: Vec<u32>,
    /// Bound on finishing in-flight work at shutdown.
    pub shutdown_timeout: std::time::Duration,
    /// Bytes of shared memory per connection that asks; 0: none.
    pub shm_size: usize,
    /// Threads serving connections (at least 1).
    pub workers: usize,
}

impl Args {
    /// The resolved configuration.
    pub fn config(&self) -> Config {
        Config {
            sources: Sources {
                cache: self.cache.clone(),
                geoip: self.geoip.clone(),
                asn_netblocks: self.asn_netblocks.clone(),
                minimum: self.minimum,
            },
            access_log: self.access_log.clone(),
            allow_uid: self.allow_uid.clone(),
            shutdown_timeout: std::time::Duration::from_secs(self.shutdown_timeout),
            shm_size: self.shm_size,
            workers: self.workers.unwrap_or_else(default_workers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert_eq!(parse_mode("0o600"), Ok(0o600));
        assert!(parse_mode("999").is_err());
        assert!(parse_mode("rw").is_err());
    }

    #[test]
    fn socket_required_unless_check() {
        assert!(Args::try_parse_from(["s", "--cache", "c"]).is_err());
        assert!(Args::try_parse_from(["s", "--cache", "c", "--check"]).is_ok());
        let a = Args::try_parse_from(["s", "--cache", "c", "--socket", "/x"]).unwrap();
        assert_eq!(a.backlog, 4096);
        assert_eq!(a.minimum, 5);
        assert_eq!(a.socket_mode, 0o660);
        assert_eq!(a.shm_size, 8 << 20);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(a.config().workers, (cpus / 2).max(1), "one per two CPUs");
    }

    #[test]
    fn workers() {
        let with = |n: &str| Args::try_parse_from(["s", "--cache", "c", "--check", "--workers", n]);
        assert_eq!(with("3").unwrap().config().workers, 3);
        assert_eq!(with("256").unwrap().config().workers, 256);
        for bad in ["0", "257", "two", ""] {
            let e = with(bad).expect_err(bad).to_string();
            assert!(e.contains("--workers"), "{bad}: {e}");
        }
        assert!(with("0")
            .unwrap_err()
            .to_string()
            .contains("at least one worker"));
    }

    #[test]
    fn shm_sizes() {
        assert_eq!(parse_shm_size("0"), Ok(0));
        assert_eq!(parse_shm_size("64K"), Ok(65536));
        assert_eq!(parse_shm_size("8M"), Ok(8 << 20));
        assert_eq!(parse_shm_size("1g"), Ok(1 << 30));
        assert_eq!(parse_shm_size("1048576"), Ok(1 << 20));
        for bad in [
            "8X",
            "M",
            "-1",
            "4K",
            "2G",
            "65537",
            "99999999999999999999G",
        ] {
            assert!(parse_shm_size(bad).is_err(), "{bad}");
        }
    }
}
