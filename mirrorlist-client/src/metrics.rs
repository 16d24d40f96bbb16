//! `/metrics`: the front end's counters and gauges in the Prometheus text
//! format (version 0.0.4), for the operator's monitoring.
//!
//! Counted per request: responses by path and status, and the time each
//! forwarded request took (from its arrival to its response being ready,
//! queue and server included; not the write to the client). Each worker
//! counts into its own [`WorkerStats`], apart from the others' in memory,
//! so counting is one uncontended atomic add and no cache line moves
//! between CPUs per request. Read when scraped: the places in flight and
//! the requests queued ([`Admission::gauges`]), the connections to the
//! server that are up, and the HTTP connections open.
//!
//! Only clients in `--metrics-from` (loopback by default) are answered;
//! others get 403. The address checked is the client's as the trusted
//! proxies name it, so a proxy that forwards every path does not open
//! `/metrics` to the world.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::upstream::{Admission, UpstreamError};

/// The paths responses are counted under; anything else is `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// `/mirrorlist`.
    Mirrorlist,
    /// `/metalink`.
    Metalink,
    /// `/health`.
    Health,
    /// `/metrics`.
    Metrics,
    /// Any other path (answered 404).
    Other,
}

impl Path {
    const ALL: [Path; 5] = [
        Path::Mirrorlist,
        Path::Metalink,
        Path::Health,
        Path::Metrics,
        Path::Other,
    ];

    /// The counted path of a request target's path.
    pub fn of(path: &str) -> Path {
        match path {
            "/mirrorlist" => Path::Mirrorlist,
            "/metalink" => Path::Metalink,
            "/health" => Path::Health,
            "/metrics" => Path::Metrics,
            _ => Path::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Path::Mirrorlist => "/mirrorlist",
            Path::Metalink => "/metalink",
            Path::Health => "/health",
            Path::Metrics => "/metrics",
            Path::Other => "other",
        }
    }
}

/// The statuses counted one by one: every status the front end chooses
/// and the ones the server sends. Any other is counted as `other`.
const CODES: [u16; 10] = [200, 302, 400, 403, 404, 405, 414, 500, 502, 503];

fn code_index(status: u16) -> usize {
    CODES
        .iter()
        .position(|&c| c == status)
        .unwrap_or(CODES.len())
}

/// Upper bounds of the duration histogram's buckets, in microseconds: from
/// an answer straight from the server's memory (~0.1 ms) to a request that
/// waited out a long queue.
const BOUNDS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

#[derive(Debug, Default)]
struct Histogram {
    /// Not cumulative: each bucket counts the durations above the previous
    /// bound and up to its own; the last, those above every bound.
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let at = BOUNDS_US.partition_point(|&bound| bound < us);
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }
}

/// Why a forwarded request got no answer from the server; one counter
/// each (rare events, so shared by the workers).
const FAILURES: [&str; 7] = [
    "unavailable",
    "queue_full",
    "connection_lost",
    "timeout",
    "queue_timeout",
    "protocol",
    "invalid_reply",
];

fn failure_index(e: &UpstreamError) -> usize {
    match e {
        UpstreamError::Unavailable { .. } => 0,
        UpstreamError::Overloaded => 1,
        UpstreamError::ConnectionLost => 2,
        UpstreamError::Timeout(_) => 3,
        UpstreamError::QueueTimeout(_) => 4,
        UpstreamError::Protocol(_) => 5,
    }
}

/// One worker's counters, on cache lines of their own (128 bytes: the
/// adjacent-line prefetcher pairs lines).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerStats {
    responses: [[AtomicU64; CODES.len() + 1]; Path::ALL.len()],
    /// `/mirrorlist`, `/metalink`.
    durations: [Histogram; 2],
    accepted: AtomicU64,
    closed: AtomicU64,
}

impl WorkerStats {
    /// A response with `status` to a request for `path`.
    pub fn response(&self, path: Path, status: u16) {
        self.responses[path as usize][code_index(status)].fetch_add(1, Ordering::Relaxed);
    }

    /// How long a forwarded request took until its response was ready.
    pub fn took(&self, path: Path, took: Duration) {
        let histogram = match path {
            Path::Mirrorlist => &self.durations[0],
            Path::Metalink => &self.durations[1],
            _ => return,
        };
        histogram.record(took);
    }

    /// An HTTP connection accepted; the guard counts it closed when dropped.
    pub fn connection(self: &Arc<Self>) -> OpenConnection {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone())
    }
}

/// Counts its connection as closed when dropped.
#[derive(Debug)]
pub struct OpenConnection(Arc<WorkerStats>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.closed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything `/metrics` reports, for the whole process.
#[derive(Debug)]
pub struct Metrics {
    workers: Vec<Arc<WorkerStats>>,
    failures: [AtomicU64; FAILURES.len()],
    admission: Arc<Admission>,
    /// Unix seconds when the front end started.
    started: u64,
}

impl Metrics {
    /// Counters for `workers` workers sharing `admission`.
    pub fn new(workers: usize, admission: Arc<Admission>, started: u64) -> Arc<Metrics> {
        Arc::new(Metrics {
            workers: (0..workers.max(1))
                .map(|_| Arc::new(WorkerStats::default()))
                .collect(),
            failures: Default::default(),
            admission,
            started,
        })
    }

    /// Worker `worker`'s counters (each worker counts into its own).
    pub fn worker(&self, worker: usize) -> Arc<WorkerStats> {
        self.workers[worker % self.workers.len()].clone()
    }

    /// A forwarded request that got no answer, and why.
    pub fn failure(&self, e: &UpstreamError) {
        self.failures[failure_index(e)].fetch_add(1, Ordering::Relaxed);
    }

    /// A reply the server sent that is not valid HTTP (answered 502).
    pub fn invalid_reply(&self) {
        self.failures[FAILURES.len() - 1].fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text. Counters are summed over the workers; each
    /// worker's are read one by one, so a scrape taken under load may mix
    /// instants a few microseconds apart, as any such scrape does.
    pub fn render(&self) -> String {
        let sum = |f: &dyn Fn(&WorkerStats) -> &AtomicU64| -> u64 {
            self.workers
                .iter()
                .map(|w| f(w).load(Ordering::Relaxed))
                .sum()
        };
        let mut out = String::with_capacity(4096);
        family(
            &mut out,
            "mirrorlist_http_responses_total",
            "counter",
            "HTTP responses sent, by request path and status code.",
        );
        for path in Path::ALL {
            for index in 0..=CODES.len() {
                let count = sum(&|w| &w.responses[path as usize][index]);
                // Series appear once they count something, except the two
                // every dashboard plots from the start.
                let always = index == 0 && matches!(path, Path::Mirrorlist | Path::Metalink);
                if count == 0 && !always {
                    continue;
                }
                let code = CODES.get(index).map_or("other".to_owned(), u16::to_string);
                let _ = writeln!(
                    out,
                    "mirrorlist_http_responses_total{{path=\"{}\",code=\"{code}\"}} {count}",
                    path.label()
                );
            }
        }
        family(
            &mut out,
            "mirrorlist_request_duration_seconds",
            "histogram",
            "Time from a forwarded request's arrival to its response being ready (queue and server included).",
        );
        for (h, path) in [Path::Mirrorlist, Path::Metalink].into_iter().enumerate() {
            let mut cumulative = 0;
            for (index, bound) in BOUNDS_US.iter().map(Some).chain([None]).enumerate() {
                cumulative += sum(&|w| &w.durations[h].buckets[index]);
                let le = bound.map_or("+Inf".to_owned(), |&us| seconds(us));
                let _ = writeln!(
                    out,
                    "mirrorlist_request_duration_seconds_bucket{{path=\"{}\",le=\"{le}\"}} {cumulative}",
                    path.label()
                );
            }
            let sum_us = sum(&|w| &w.durations[h].sum_us);
            let _ = writeln!(
                out,
                "mirrorlist_request_duration_seconds_sum{{path=\"{}\"}} {}\n\
                 mirrorlist_request_duration_seconds_count{{path=\"{}\"}} {cumulative}",
                path.label(),
                seconds(sum_us),
                path.label()
            );
        }
        family(
            &mut out,
            "mirrorlist_upstream_failures_total",
            "counter",
            "Forwarded requests the mirrorlist server gave no usable answer to, by reason (each answered 503, or 502 for protocol and invalid_reply).",
        );
        for (index, reason) in FAILURES.iter().enumerate() {
            let count = self.failures[index].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "mirrorlist_upstream_failures_total{{reason=\"{reason}\"}} {count}"
            );
        }
        let gauges = self.admission.gauges();
        let accepted = sum(&|w| &w.accepted);
        let closed = sum(&|w| &w.closed);
        for (name, kind, help, value) in [
            (
                "mirrorlist_requests_in_flight",
                "gauge",
                "Requests forwarded to the mirrorlist server and not yet answered.",
                gauges.in_flight,
            ),
            (
                "mirrorlist_requests_in_flight_limit",
                "gauge",
                "The most requests forwarded at once (--max-inflight).",
                gauges.max_inflight,
            ),
            (
                "mirrorlist_requests_queued",
                "gauge",
                "Requests waiting for a place in flight.",
                gauges.queued,
            ),
            (
                "mirrorlist_requests_queue_limit",
                "gauge",
                "The most requests waiting before new ones get 503 (--max-queue).",
                gauges.max_queue,
            ),
            (
                "mirrorlist_upstream_connections_up",
                "gauge",
                "Connections to the mirrorlist server's socket that are up.",
                gauges.connections_up,
            ),
            (
                "mirrorlist_upstream_connections",
                "gauge",
                "Connections to the mirrorlist server's socket configured (workers x --upstream-connections).",
                gauges.connections,
            ),
        ] {
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        for (name, kind, help, value) in [
            (
                "mirrorlist_http_connections_accepted_total",
                "counter",
                "HTTP connections accepted.",
                accepted,
            ),
            (
                "mirrorlist_http_connections_open",
                "gauge",
                "HTTP connections open now.",
                accepted.saturating_sub(closed),
            ),
            (
                "process_start_time_seconds",
                "gauge",
                "When the front end started, in Unix seconds.",
                self.started,
            ),
        ] {
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

/// The `# HELP` and `# TYPE` lines that open a family of samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// Microseconds as decimal seconds, exactly (`2500` → `0.0025`).
fn seconds(us: u64) -> String {
    let (whole, frac) = (us / 1_000_000, us % 1_000_000);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:06}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the one line that starts with `series ` (the name and
    /// labels exactly).
    fn value(text: &str, series: &str) -> Option<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn responses_are_summed_over_the_workers_by_path_and_code() {
        let metrics = Metrics::new(2, Admission::new(8, 100), 1_700_000_000);
        let (a, b) = (metrics.worker(0), metrics.worker(1));
        a.response(Path::Mirrorlist, 200);
        b.response(Path::Mirrorlist, 200);
        b.response(Path::Mirrorlist, 503);
        a.response(Path::Other, 404);
        a.response(Path::Metalink, 299);
        let text = metrics.render();
        let responses = |labels: &str| {
            value(
                &text,
                &format!("mirrorlist_http_responses_total{{{labels}}}"),
            )
        };
        assert_eq!(responses(r#"path="/mirrorlist",code="200""#), Some(2));
        assert_eq!(responses(r#"path="/mirrorlist",code="503""#), Some(1));
        assert_eq!(responses(r#"path="other",code="404""#), Some(1));
        assert_eq!(responses(r#"path="/metalink",code="other""#), Some(1));
        // Shown at 0 from the start; other empty series are left out.
        assert_eq!(responses(r#"path="/metalink",code="200""#), Some(0));
        assert_eq!(responses(r#"path="/health",code="200""#), None);
        assert_eq!(
            value(&text, "process_start_time_seconds"),
            Some(1_700_000_000)
        );
        // Every family is declared once, before its samples.
        for name in [
            "mirrorlist_http_responses_total",
            "mirrorlist_request_duration_seconds",
            "mirrorlist_requests_queued",
        ] {
            let declared = format!("# TYPE {name} ");
            assert_eq!(text.matches(&declared).count(), 1, "{name}");
            let first_sample = text.find(&format!("\n{name}")).unwrap();
            assert!(text.find(&declared).unwrap() < first_sample, "{name}");
        }
    }

    #[test]
    fn durations_fill_cumulative_buckets() {
        let metrics = Metrics::new(1, Admission::new(8, 100), 0);
        let w = metrics.worker(0);
        w.took(Path::Mirrorlist, Duration::from_micros(100)); // on the first bound
        w.took(Path::Mirrorlist, Duration::from_micros(101));
        w.took(Path::Mirrorlist, Duration::from_millis(3));
        w.took(Path::Mirrorlist, Duration::from_secs(60));
        w.took(Path::Health, Duration::from_secs(1)); // not a forwarded path
        let text = metrics.render();
        let bucket = |le: &str| {
            value(
                &text,
                &format!("mirrorlist_request_duration_seconds_bucket{{path=\"/mirrorlist\",le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("0.0001"), Some(1));
        assert_eq!(bucket("0.00025"), Some(2));
        assert_eq!(bucket("0.0025"), Some(2));
        assert_eq!(bucket("0.005"), Some(3));
        assert_eq!(bucket("5"), Some(3));
        assert_eq!(bucket("+Inf"), Some(4));
        let count = r#"mirrorlist_request_duration_seconds_count{path="/mirrorlist"}"#;
        assert_eq!(value(&text, count), Some(4));
        assert!(text
            .contains("mirrorlist_request_duration_seconds_sum{path=\"/mirrorlist\"} 60.003201\n"));
        let metalink = r#"mirrorlist_request_duration_seconds_count{path="/metalink"}"#;
        assert_eq!(value(&text, metalink), Some(0));
    }

    #[test]
    fn failures_gauges_and_connections() {
        let admission = Admission::new(8, 100);
        let metrics = Metrics::new(2, admission, 0);
        metrics.failure(&UpstreamError::Overloaded);
        metrics.failure(&UpstreamError::Overloaded);
        metrics.failure(&UpstreamError::QueueTimeout(Duration::from_secs(5)));
        metrics.invalid_reply();
        let w = metrics.worker(1);
        let closed = w.connection();
        let _open = [w.connection(), metrics.worker(0).connection()];
        drop(closed);
        let text = metrics.render();
        let failures = |reason: &str| {
            value(
                &text,
                &format!("mirrorlist_upstream_failures_total{{reason=\"{reason}\"}}"),
            )
        };
        assert_eq!(failures("queue_full"), Some(2));
        assert_eq!(failures("queue_timeout"), Some(1));
        assert_eq!(failures("invalid_reply"), Some(1));
        assert_eq!(failures("timeout"), Some(0));
        assert_eq!(
            value(&text, "mirrorlist_http_connections_accepted_total"),
            Some(3)
        );
        assert_eq!(value(&text, "mirrorlist_http_connections_open"), Some(2));
        assert_eq!(value(&text, "mirrorlist_requests_in_flight"), Some(0));
        assert_eq!(value(&text, "mirrorlist_requests_in_flight_limit"), Some(8));
        assert_eq!(value(&text, "mirrorlist_requests_queued"), Some(0));
        assert_eq!(value(&text, "mirrorlist_requests_queue_limit"), Some(100));
        assert_eq!(value(&text, "mirrorlist_upstream_connections"), Some(0));
    }

    #[test]
    fn seconds_are_exact_decimals() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(100), "0.0001");
        assert_eq!(seconds(2_500), "0.0025");
        assert_eq!(seconds(1_000_000), "1");
        assert_eq!(seconds(60_003_201), "60.003201");
    }
}
