//! `/metrics`: what it counts, who may read it, and, through its gauges,
//! what becomes of queued requests when the server's connection dies.

use std::net::SocketAddr;

use tokio::task::JoinSet;

use crate::client::{get, send, Resp};
use crate::fake::Fake;
use crate::{config, dir, guard, Front};

/// The value of the sample `series` (name and labels exactly), if shown.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn metrics(addr: SocketAddr) -> String {
    let r = get(addr, "/metrics").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

/// Scrapes until `series` reads `want`: the gauges are the only sign of a
/// request waiting in the queue. Bounded by the test's guard.
async fn wait_for(addr: SocketAddr, series: &str, want: u64) -> String {
    loop {
        let text = metrics(addr).await;
        if sample(&text, series) == Some(want) {
            return text;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn responses_are_counted_by_path_and_status() {
    guard(async {
        let d = dir();
        let _fake = Fake::start(&d.socket, false);
        let front = Front::start(config(&d)).await;
        for _ in 0..3 {
            assert_eq!(
                get(front.addr, "/mirrorlist?repo=a&arch=b").await.status,
                200
            );
        }
        assert_eq!(
            get(front.addr, "/metalink?repo=x&status=404").await.status,
            404
        );
        assert_eq!(get(front.addr, "/nowhere").await.status, 404);
        assert_eq!(
            send(front.addr, "POST", "/mirrorlist", &[]).await.status,
            405
        );
        assert_eq!(get(front.addr, "/health").await.status, 200);

        let r = get(front.addr, "/metrics").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let text = r.text();
        let responses = |labels: &str| {
            sample(
                &text,
                &format!("mirrorlist_http_responses_total{{{labels}}}"),
            )
        };
        assert_eq!(responses(r#"path="/mirrorlist",code="200""#), Some(3));
        assert_eq!(responses(r#"path="/mirrorlist",code="405""#), Some(1));
        assert_eq!(responses(r#"path="/metalink",code="404""#), Some(1));
        assert_eq!(responses(r#"path="/metalink",code="200""#), Some(0));
        assert_eq!(responses(r#"path="other",code="404""#), Some(1));
        assert_eq!(responses(r#"path="/health",code="200""#), Some(1));
        // A scrape is counted once it is answered.
        assert_eq!(responses(r#"path="/metrics",code="200""#), None);
        // Only forwarded requests are timed: not the 405.
        let count = r#"mirrorlist_request_duration_seconds_count{path="/mirrorlist"}"#;
        assert_eq!(sample(&text, count), Some(3));
        let inf = r#"mirrorlist_request_duration_seconds_bucket{path="/metalink",le="+Inf"}"#;
        assert_eq!(sample(&text, inf), Some(1));
        assert_eq!(sample(&text, "mirrorlist_upstream_connections_up"), Some(1));
        assert_eq!(sample(&text, "mirrorlist_upstream_connections"), Some(1));
        assert_eq!(sample(&text, "mirrorlist_requests_in_flight"), Some(0));
        // Every request above came on a connection of its own, and only
        // the scrape's is open.
        assert_eq!(
            sample(&text, "mirrorlist_http_connections_accepted_total"),
            Some(8)
        );
        assert_eq!(sample(&text, "mirrorlist_http_connections_open"), Some(1));

        let text = metrics(front.addr).await;
        let scrapes = r#"mirrorlist_http_responses_total{path="/metrics",code="200"}"#;
        assert_eq!(sample(&text, scrapes), Some(1));
    })
    .await;
}

#[tokio::test]
async fn only_clients_in_metrics_from_are_answered() {
    guard(async {
        let d = dir();
        let _fake = Fake::start(&d.socket, false);
        let mut cfg = config(&d);
        cfg.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        let front = Front::start(cfg.clone()).await;
        // Loopback by default, judged by the client a trusted proxy names:
        // a proxy on this machine does not open it to the world.
        let forwarded = |ip: &'static str| async move {
            send(front.addr, "GET", "/metrics", &[("X-Forwarded-For", ip)]).await
        };
        let r: Resp = forwarded("203.0.113.9").await;
        assert_eq!(r.status, 403);
        assert!(r.text().contains("--metrics-from"), "{}", r.text());
        assert_eq!(forwarded("127.0.0.5").await.status, 200);
        assert_eq!(forwarded("::1").await.status, 200);

        cfg.metrics_from = vec!["192.0.2.0/24".parse().unwrap()];
        let other = Front::start(cfg).await;
        assert_eq!(get(other.addr, "/metrics").await.status, 403);
        let r = send(
            other.addr,
            "GET",
            "/metrics",
            &[("X-Forwarded-For", "192.0.2.1")],
        )
        .await;
        assert_eq!(r.status, 200);
        let forbidden = r#"mirrorlist_http_responses_total{path="/metrics",code="403"}"#;
        assert_eq!(sample(&r.text(), forbidden), Some(1));
    })
    .await;
}

#[tokio::test]
async fn queued_requests_fail_at_once_when_the_connection_dies_and_no_place_is_lost() {
    guard(async {
        let d = dir();
        let mut fake = Fake::start(&d.socket, true);
        let mut cfg = config(&d);
        cfg.max_inflight = 2;
        let front = Front::start(cfg).await;
        let mut in_flight = JoinSet::new();
        for i in 0..2 {
            let addr = front.addr;
            in_flight.spawn(async move { get(addr, &format!("/mirrorlist?n={i}")).await });
        }
        fake.wait_received(2).await;
        let mut queued = JoinSet::new();
        for i in 2..5 {
            let addr = front.addr;
            queued.spawn(async move { get(addr, &format!("/mirrorlist?n={i}")).await });
        }
        let text = wait_for(front.addr, "mirrorlist_requests_queued", 3).await;
        assert_eq!(sample(&text, "mirrorlist_requests_in_flight"), Some(2));

        fake.kill();
        // The two sent are lost with their connection; the three queued
        // never reached it: they fail at once as a server that is down
        // does, rather than being handed to the dying connection.
        while let Some(done) = in_flight.join_next().await {
            let r = done.unwrap();
            assert_eq!(r.status, 503);
            assert!(
                r.text()
                    .contains("connection to the mirrorlist server was lost"),
                "{}",
                r.text()
            );
        }
        while let Some(done) = queued.join_next().await {
            let r = done.unwrap();
            assert_eq!(r.status, 503);
            assert!(r.text().contains("server is not reachable"), "{}", r.text());
        }
        let text = metrics(front.addr).await;
        assert_eq!(sample(&text, "mirrorlist_requests_in_flight"), Some(0));
        assert_eq!(sample(&text, "mirrorlist_requests_queued"), Some(0));
        let failures = |reason: &str| {
            sample(
                &text,
                &format!("mirrorlist_upstream_failures_total{{reason=\"{reason}\"}}"),
            )
        };
        assert_eq!(failures("connection_lost"), Some(2));
        assert_eq!(failures("unavailable"), Some(3));
        assert_eq!(sample(&text, "mirrorlist_upstream_connections_up"), Some(0));

        // Both places are free again: with the server back, as many
        // requests as the limit allows are in flight at once.
        let mut fake = Fake::start(&d.socket, true);
        wait_for(front.addr, "mirrorlist_upstream_connections_up", 1).await;
        let mut again = JoinSet::new();
        for i in 0..2 {
            let addr = front.addr;
            again.spawn(async move { get(addr, &format!("/mirrorlist?again={i}")).await });
        }
        fake.wait_received(2).await;
        fake.release();
        while let Some(done) = again.join_next().await {
            assert_eq!(done.unwrap().status, 200);
        }
    })
    .await;
}
