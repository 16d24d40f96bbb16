//! The connection pool: pipelining, a server that dies and comes back,
//! protocol errors, admission limits, graceful shutdown.

use std::time::Duration;

use mirrorlist_client::upstream::PINGS_IN_FLIGHT;
use mirrorlist_core::protocol::Endpoint;
use tokio::task::JoinSet;

use crate::client::get;
use crate::fake::{expected, Fake};
use crate::{config, dir, guard, Front};

#[tokio::test]
async fn many_concurrent_requests_are_pipelined_over_few_connections() {
    guard(async {
        let d = dir();
        // Held: no reply goes out until every request has arrived, which
        // only pipelining (many requests outstanding per connection) allows.
        let mut fake = Fake::start(&d.socket, true);
        let mut cfg = config(&d);
        cfg.upstream_connections = 2;
        let front = Front::start(cfg).await;
        const N: usize = 64;
        let mut requests = JoinSet::new();
        for i in 0..N {
            let addr = front.addr;
            requests.spawn(async move {
                (i, get(addr, &format!("/mirrorlist?repo=r{i}&arch=x")).await)
            });
        }
        fake.wait_received(N).await;
        assert!(
            fake.connections() <= 2,
            "{} upstream connections",
            fake.connections()
        );
        fake.release();
        let mut answered = 0;
        while let Some(done) = requests.join_next().await {
            let (i, r) = done.unwrap();
            assert_eq!(r.status, 200);
            // Each client gets its own reply, not a neighbour's.
            assert_eq!(
                r.text(),
                expected(
                    Endpoint::Mirrorlist,
                    "127.0.0.1",
                    &[("repo", &format!("r{i}")), ("arch", "x")]
                )
            );
            answered += 1;
        }
        assert_eq!(answered, N);
        assert!(fake.connections() <= 2);
    })
    .await;
}

#[tokio::test]
async fn server_killed_mid_flight_then_restarted() {
    guard(async {
        let d = dir();
        let mut fake = Fake::start(&d.socket, true);
        let front = Front::start(config(&d)).await;
        const N: usize = 10;
        let mut requests = JoinSet::new();
        for i in 0..N {
            let addr = front.addr;
            requests.spawn(async move { get(addr, &format!("/mirrorlist?n={i}")).await });
        }
        fake.wait_received(N).await;
        fake.kill();
        // Every request in flight is answered (the request timeout is far
        // away, so these answers come from noticing the dead connection).
        while let Some(done) = requests.join_next().await {
            let r = done.unwrap();
            assert_eq!(r.status, 503, "{}", r.text());
            assert!(r.header("retry-after").is_some());
        }
        // While it is down: 503 at once, not a hang.
        let r = get(front.addr, "/mirrorlist?repo=a").await;
        assert_eq!(r.status, 503);
        assert!(r.header("retry-after").is_some());
        assert_eq!(get(front.addr, "/health").await.status, 503);

        // Back on the same path: the front end reconnects by itself.
        let mut fake = Fake::start(&d.socket, false);
        fake.wait_connections(1).await;
        let r = until_ok(front.addr, "/mirrorlist?repo=b").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.text(),
            expected(Endpoint::Mirrorlist, "127.0.0.1", &[("repo", "b")])
        );
        assert_eq!(get(front.addr, "/health").await.status, 200);
    })
    .await;
}

/// Requests until one is answered 200. The fake's accept and the pool
/// publishing the new connection are separate wake-ups, so a request may
/// slip in between and get 503; a few rounds of the runtime settle it.
async fn until_ok(addr: std::net::SocketAddr, target: &str) -> crate::client::Resp {
    let mut r = get(addr, target).await;
    for _ in 0..100 {
        if r.status == 200 {
            break;
        }
        tokio::task::yield_now().await;
        r = get(addr, target).await;
    }
    r
}

#[tokio::test]
async fn bad_frames_from_the_server_are_502_and_the_pool_recovers() {
    guard(async {
        let d = dir();
        let mut fake = Fake::start(&d.socket, false);
        let mut cfg = config(&d);
        cfg.upstream_connections = 1;
        let front = Front::start(cfg).await;
        let mut connections = 1;
        for bad in ["garbage=1", "wrongid=1"] {
            let r = get(front.addr, &format!("/mirrorlist?{bad}")).await;
            assert_eq!(r.status, 502, "{bad}: {}", r.text());
            // The broken connection was closed and a new one made.
            connections += 1;
            fake.wait_connections(connections).await;
            assert_eq!(until_ok(front.addr, "/mirrorlist?repo=a").await.status, 200);
        }
    })
    .await;
}

#[tokio::test]
async fn server_restarted_while_idle() {
    guard(async {
        let d = dir();
        let fake = Fake::start(&d.socket, false);
        let mut cfg = config(&d);
        cfg.upstream_connections = 1;
        let front = Front::start(cfg).await;
        assert_eq!(get(front.addr, "/mirrorlist?repo=a").await.status, 200);
        fake.kill();
        // The pool notices the idle connection closing by itself and
        // reconnects to the new server without a request to prod it.
        let mut fake = Fake::start(&d.socket, false);
        fake.wait_connections(1).await;
        let r = until_ok(front.addr, "/mirrorlist?repo=b").await;
        assert_eq!(
            r.text(),
            expected(Endpoint::Mirrorlist, "127.0.0.1", &[("repo", "b")])
        );
    })
    .await;
}

#[tokio::test]
async fn beyond_inflight_and_queue_is_503_with_retry_after() {
    guard(async {
        let d = dir();
        let mut fake = Fake::start(&d.socket, true);
        let mut cfg = config(&d);
        cfg.max_inflight = 2;
        cfg.max_queue = 3;
        let front = Front::start(cfg).await;
        // 2 in flight + 3 queued fit; the sixth cannot.
        let mut requests = JoinSet::new();
        for i in 0..6 {
            let addr = front.addr;
            requests.spawn(async move { get(addr, &format!("/mirrorlist?n={i}")).await });
        }
        // Nothing is released yet, so the only answer that can come is the
        // refusal.
        let first = requests.join_next().await.unwrap().unwrap();
        assert_eq!(first.status, 503, "{}", first.text());
        assert_eq!(first.header("retry-after"), Some("1"));
        fake.wait_received(2).await;
        fake.release();
        let mut ok = 0;
        while let Some(done) = requests.join_next().await {
            assert_eq!(done.unwrap().status, 200);
            ok += 1;
        }
        assert_eq!(ok, 5);
    })
    .await;
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight() {
    guard(async {
        let d = dir();
        let mut fake = Fake::start(&d.socket, true);
        let front = Front::start(config(&d)).await;
        let addr = front.addr;
        let request = tokio::spawn(async move { get(addr, "/mirrorlist?repo=a").await });
        fake.wait_received(1).await;
        let run = front.shutdown();
        // New connections are refused once the listener is closed; the
        // held request is still waiting for its reply.
        fake.release();
        let r = request.await.unwrap();
        assert_eq!(r.status, 200);
        run.await.unwrap().expect("run returns Ok");
        assert!(
            nobody_listens(addr).await,
            "{addr} still accepts connections"
        );
    })
    .await;
}

/// Whether a connection to `addr` is refused. A connection to a closed
/// port on loopback can still succeed by connecting to itself (TCP's
/// simultaneous open, when the kernel happens to pick `addr`'s port as
/// the source port): that too means nobody listens.
async fn nobody_listens(addr: std::net::SocketAddr) -> bool {
    match tokio::net::TcpStream::connect(addr).await {
        Err(_) => true,
        Ok(stream) => stream.local_addr().ok() == stream.peer_addr().ok(),
    }
}

#[tokio::test]
async fn unanswered_requests_time_out_and_late_replies_are_dropped() {
    guard(async {
        let d = dir();
        let mut fake = Fake::start(&d.socket, true);
        let mut cfg = config(&d);
        // The fake holds every reply until released, so these time out
        // whatever the machine's speed. With one request in flight at a
        // time, the first is sent and times out waiting for the server;
        // the second waits for a place behind it (which comes only with
        // the first's reply) and times out in the queue, never sent.
        cfg.request_timeout = Duration::from_millis(50);
        cfg.max_inflight = 1;
        let front = Front::start(cfg).await;
        // One worker, one connection (the default configuration).
        fake.wait_connections(1).await;
        let addr = front.addr;
        let first = tokio::spawn(async move { get(addr, "/mirrorlist?repo=a").await });
        fake.wait_received(1).await;
        let b = get(front.addr, "/mirrorlist?repo=b").await;
        let a = first.await.unwrap();
        for r in [&a, &b] {
            assert_eq!(r.status, 503, "{}", r.text());
            assert_eq!(r.header("retry-after"), Some("1"));
        }
        assert!(
            a.text()
                .contains("the mirrorlist server did not answer within 50ms"),
            "{}",
            a.text()
        );
        assert!(
            b.text()
                .contains("too many requests in flight: no place came free within 50ms"),
            "{}",
            b.text()
        );
        // The late reply comes and are dropped; the connection stays in
        // step, so the next request gets its own answer over it.
        fake.release();
        let r = get(front.addr, "/mirrorlist?repo=c").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.text(),
            expected(Endpoint::Mirrorlist, "127.0.0.1", &[("repo", "c")])
        );
        assert_eq!(fake.connections(), 1, "no reconnect");
    })
    .await;
}

#[tokio::test]
async fn a_timed_out_request_keeps_its_slot_until_the_server_answers() {
    guard(async {
        let d = dir();
        let mut fake = Fake::start(&d.socket, true);
        let mut cfg = config(&d);
        // The fake holds the reply, so the first request times out whatever
        // the machine's speed.
        cfg.request_timeout = Duration::from_millis(50);
        cfg.max_inflight = 1;
        cfg.max_queue = 0;
        let front = Front::start(cfg).await;
        fake.wait_connections(1).await;
        let r = get(front.addr, "/mirrorlist?repo=a").await;
        assert_eq!(r.status, 503);
        assert!(
            r.text().contains("did not answer within 50ms"),
            "{}",
            r.text()
        );
        fake.wait_received(1).await;
        // The server still owes that answer, so the one slot is taken: the
        // next request is refused at once instead of piling onto the server
        // (as it would if the slot had gone with the client's wait).
        let r = get(front.addr, "/mirrorlist?repo=b").await;
        assert_eq!(r.status, 503);
        assert!(
            r.text().contains("too many requests in flight"),
            "{}",
            r.text()
        );
        // The late reply frees it.
        fake.release();
        let r = until_ok(front.addr, "/mirrorlist?repo=c").await;
        assert_eq!(
            r.text(),
            expected(Endpoint::Mirrorlist, "127.0.0.1", &[("repo", "c")])
        );
    })
    .await;
}

#[tokio::test]
async fn health_pings_pass_the_queue_within_a_limit_of_their_own() {
    guard(async {
        let d = dir();
        let mut fake = Fake::start(&d.socket, true);
        let mut cfg = config(&d);
        cfg.max_inflight = 1;
        cfg.max_queue = 0;
        let front = Front::start(cfg).await;
        // The one request slot is taken...
        let addr = front.addr;
        let request = tokio::spawn(async move { get(addr, "/mirrorlist?repo=a").await });
        fake.wait_received(1).await;
        // ...and pings still go through, up to their own limit.
        let mut pings = JoinSet::new();
        for _ in 0..PINGS_IN_FLIGHT {
            pings.spawn(async move { get(addr, "/health").await });
        }
        fake.wait_received(1 + PINGS_IN_FLIGHT).await;
        let r = get(front.addr, "/health").await;
        assert_eq!(r.status, 503);
        assert!(r.text().contains("health checks in flight"), "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("1"));
        fake.release();
        while let Some(done) = pings.join_next().await {
            assert_eq!(done.unwrap().status, 200);
        }
        assert_eq!(request.await.unwrap().status, 200);
    })
    .await;
}

#[tokio::test]
async fn a_request_behind_a_ping_with_a_longer_bound_times_out_on_its_own() {
    guard(async {
        let d = dir();
        let mut fake = Fake::start(&d.socket, true);
        let mut cfg = config(&d);
        // The ping ahead of the request has the later deadline (an hour:
        // past the guard, so a request timed out only with the ping would
        // fail the test instead of answering).
        cfg.request_timeout = Duration::from_millis(50);
        cfg.health_timeout = Duration::from_secs(3600);
        let front = Front::start(cfg).await;
        let addr = front.addr;
        let ping = tokio::spawn(async move { get(addr, "/health").await });
        fake.wait_received(1).await;
        let r = get(front.addr, "/mirrorlist?repo=a").await;
        assert_eq!(r.status, 503);
        assert!(
            r.text().contains("did not answer within 50ms"),
            "{}",
            r.text()
        );
        fake.release();
        assert_eq!(ping.await.unwrap().status, 200);
    })
    .await;
}
