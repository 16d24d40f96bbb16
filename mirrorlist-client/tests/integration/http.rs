//! Routing, decoding, client address and reply passthrough.

use mirrorlist_core::protocol::Endpoint;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::client::{self, get, send};
use crate::fake::{expected, Fake};
use crate::{config, dir, guard, Front};

#[tokio::test]
async fn routes_and_methods() {
    guard(async {
        let d = dir();
        let _fake = Fake::start(&d.socket, false);
        let front = Front::start(config(&d)).await;

        let r = get(front.addr, "/").await;
        assert_eq!(r.status, 404);
        let r = get(front.addr, "/mirrorlist/extra?repo=a").await;
        assert_eq!(r.status, 404);

        for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
            let r = send(front.addr, method, "/mirrorlist?repo=a", &[]).await;
            assert_eq!(r.status, 405, "{method}");
            assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
        }
        let r = send(front.addr, "POST", "/health", &[]).await;
        assert_eq!(r.status, 405);

        let r = get(front.addr, "/metalink?repo=a&arch=b").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.text(),
            expected(
                Endpoint::Metalink,
                "127.0.0.1",
                &[("repo", "a"), ("arch", "b")]
            )
        );
    })
    .await;
}

#[tokio::test]
async fn head_has_the_get_length_and_no_body() {
    guard(async {
        let d = dir();
        let _fake = Fake::start(&d.socket, false);
        let front = Front::start(config(&d)).await;
        let target = "/mirrorlist?repo=fedora-42&arch=x86_64";
        let got = get(front.addr, target).await;
        assert_eq!(got.status, 200);
        let head = send(front.addr, "HEAD", target, &[]).await;
        assert_eq!(head.status, 200);
        assert_eq!(
            head.header("content-length"),
            Some(got.body.len().to_string().as_str())
        );
        assert_eq!(head.header("content-type"), got.header("content-type"));
        assert!(head.body.is_empty(), "HEAD sent a body: {:?}", head.text());
        // Local answers too.
        let head = send(front.addr, "HEAD", "/nowhere", &[]).await;
        assert_eq!(head.status, 404);
        assert_ne!(head.header("content-length"), Some("0"));
        assert!(head.body.is_empty());
    })
    .await;
}

#[tokio::test]
async fn query_is_percent_decoded_in_order_with_empty_values() {
    guard(async {
        let d = dir();
        let _fake = Fake::start(&d.socket, false);
        let front = Front::start(config(&d)).await;
        let r = get(
            front.addr,
            "/mirrorlist?repo=fedora%2D42&arch=x86_64&path=pub%2Ffedora%2flinux&q=a+b%2Bc&country=&netblock&&c=%C3%A9",
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.text(),
            expected(
                Endpoint::Mirrorlist,
                "127.0.0.1",
                &[
                    ("repo", "fedora-42"),
                    ("arch", "x86_64"),
                    ("path", "pub/fedora/linux"),
                    ("q", "a b+c"),
                    ("country", ""),
                    ("netblock", ""),
                    ("c", "é"),
                ]
            )
        );
    })
    .await;
}

#[tokio::test]
async fn bad_encoding_and_bad_utf8_are_400_naming_the_parameter() {
    guard(async {
        let d = dir();
        let _fake = Fake::start(&d.socket, false);
        let front = Front::start(config(&d)).await;
        for (target, name) in [
            ("/mirrorlist?repo=a&arch=x86%zz", "arch"),
            ("/mirrorlist?repo=a%4", "repo"),
            ("/metalink?repo=%FF%FE&arch=x", "repo"),
            ("/metalink?repo=a&%C3=1", "%C3"),
        ] {
            let r = get(front.addr, target).await;
            assert_eq!(r.status, 400, "{target}");
            assert!(
                r.text().contains(&format!("\"{name}\"")),
                "{target}: {}",
                r.text()
            );
        }
    })
    .await;
}

#[tokio::test]
async fn long_targets_are_414() {
    guard(async {
        let d = dir();
        let _fake = Fake::start(&d.socket, false);
        let front = Front::start(config(&d)).await;
        // Just over our limit: refused by the handler.
        let target = format!("/mirrorlist?repo={}", "a".repeat(9 * 1024));
        assert_eq!(get(front.addr, &target).await.status, 414);
        // Over hyper's own request-line limit (64 KiB): refused by hyper,
        // which must still say 414 rather than drop the connection.
        let target = format!("/mirrorlist?repo={}", "a".repeat(70 * 1024));
        assert_eq!(get(front.addr, &target).await.status, 414);
        // Just under: served.
        let target = format!("/mirrorlist?repo={}", "a".repeat(8 * 1024 - 20));
        assert_eq!(get(front.addr, &target).await.status, 200);
    })
    .await;
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_peer_gives_the_rightmost_untrusted() {
    guard(async {
        let d = dir();
        let _fake = Fake::start(&d.socket, false);
        let mut cfg = config(&d);
        cfg.trusted_proxies = vec![
            "127.0.0.0/8".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let front = Front::start(cfg).await;
        let r = send(
            front.addr,
            "GET",
            "/mirrorlist?repo=a",
            &[
                ("X-Forwarded-For", "6.6.6.6, 203.0.113.9"),
                ("X-Forwarded-For", "10.1.1.1"),
            ],
        )
        .await;
        assert_eq!(
            r.text(),
            expected(Endpoint::Mirrorlist, "203.0.113.9", &[("repo", "a")])
        );
        // A trusted proxy that does not know the client: unknown, not forged.
        let r = send(
            front.addr,
            "GET",
            "/mirrorlist?repo=a",
            &[("X-Forwarded-For", "6.6.6.6, unknown")],
        )
        .await;
        assert_eq!(
            r.text(),
            expected(Endpoint::Mirrorlist, "none", &[("repo", "a")])
        );
    })
    .await;
}

#[tokio::test]
async fn rfc_7239_forwarded_when_the_proxies_write_it() {
    guard(async {
        let d = dir();
        let _fake = Fake::start(&d.socket, false);
        let mut cfg = config(&d);
        cfg.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        cfg.client_header = mirrorlist_client::forwarded::ClientHeader::Forwarded;
        let front = Front::start(cfg).await;
        let r = send(
            front.addr,
            "GET",
            "/mirrorlist?repo=a",
            &[
                ("Forwarded", "for=6.6.6.6"),
                ("Forwarded", "for=\"[2001:db8:cafe::17]:4711\";proto=http"),
                // What a client could write, and a proxy writing only
                // X-Forwarded-For would pass on: not read.
                ("X-Forwarded-For", "198.51.100.7"),
            ],
        )
        .await;
        assert_eq!(
            r.text(),
            expected(Endpoint::Mirrorlist, "2001:db8:cafe::17", &[("repo", "a")])
        );
        // A proxy hiding the client: unknown.
        let r = send(
            front.addr,
            "GET",
            "/mirrorlist?repo=a",
            &[("Forwarded", "for=6.6.6.6, for=_hidden")],
        )
        .await;
        assert_eq!(
            r.text(),
            expected(Endpoint::Mirrorlist, "none", &[("repo", "a")])
        );
    })
    .await;
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    guard(async {
        let d = dir();
        let _fake = Fake::start(&d.socket, false);
        let mut cfg = config(&d);
        cfg.trusted_proxies = vec!["192.0.2.0/24".parse().unwrap()];
        let front = Front::start(cfg).await;
        let r = send(
            front.addr,
            "GET",
            "/mirrorlist?repo=a",
            &[("X-Forwarded-For", "203.0.113.9")],
        )
        .await;
        assert_eq!(
            r.text(),
            expected(Endpoint::Mirrorlist, "127.0.0.1", &[("repo", "a")])
        );
    })
    .await;
}

#[tokio::test]
async fn status_and_headers_pass_through() {
    guard(async {
        let d = dir();
        let _fake = Fake::start(&d.socket, false);
        let front = Front::start(config(&d)).await;
        let r = get(
            front.addr,
            "/mirrorlist?repo=a&redirect=1&status=302&location=https%3A%2F%2Fmirror.example%2Fpub%2F",
        )
        .await;
        assert_eq!(r.status, 302);
        assert_eq!(r.header("location"), Some("https://mirror.example/pub/"));
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.header("content-length"), Some(r.body.len().to_string().as_str()));

        let r = get(front.addr, "/metalink?repo=nope&status=404").await;
        assert_eq!(r.status, 404);
        assert!(r.text().starts_with("endpoint=Metalink"));
    })
    .await;
}

#[tokio::test]
async fn invalid_reply_header_is_502() {
    guard(async {
        let d = dir();
        let _fake = Fake::start(&d.socket, false);
        let front = Front::start(config(&d)).await;
        let r = get(front.addr, "/mirrorlist?repo=a&badheader=1").await;
        assert_eq!(r.status, 502);
        // The connection is fine; the next request is served.
        assert_eq!(get(front.addr, "/mirrorlist?repo=a").await.status, 200);
    })
    .await;
}

#[tokio::test]
async fn keep_alive_serves_several_requests_per_connection() {
    guard(async {
        let d = dir();
        let _fake = Fake::start(&d.socket, false);
        let front = Front::start(config(&d)).await;
        let mut stream = TcpStream::connect(front.addr).await.unwrap();
        // Two requests in one write: HTTP/1.1 pipelining from the client.
        stream
            .write_all(
                b"GET /mirrorlist?n=1 HTTP/1.1\r\nHost: t\r\n\r\nGET /metalink?n=2 HTTP/1.1\r\nHost: t\r\n\r\n",
            )
            .await
            .unwrap();
        let mut reader = BufReader::new(stream);
        let first = client::read_response(&mut reader).await;
        let second = client::read_response(&mut reader).await;
        assert_eq!(first.text(), expected(Endpoint::Mirrorlist, "127.0.0.1", &[("n", "1")]));
        assert_eq!(second.text(), expected(Endpoint::Metalink, "127.0.0.1", &[("n", "2")]));
        // And a third, later, on the same connection.
        reader
            .get_mut()
            .write_all(b"GET /mirrorlist?n=3 HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let third = client::read_response(&mut reader).await;
        assert_eq!(third.text(), expected(Endpoint::Mirrorlist, "127.0.0.1", &[("n", "3")]));
    })
    .await;
}

/// The header read timeout closes a connection that sends half a request
/// head and stops (slowloris), and one that stays idle after its answer.
/// Only the outcome is checked: the guard, not a clock, bounds the wait.
#[tokio::test]
async fn half_sent_heads_and_idle_connections_are_closed() {
    guard(async {
        let d = dir();
        let _fake = Fake::start(&d.socket, false);
        let mut cfg = config(&d);
        cfg.header_timeout = std::time::Duration::from_millis(100);
        let front = Front::start(cfg).await;

        let mut slow = TcpStream::connect(front.addr).await.unwrap();
        slow.write_all(b"GET /mirrorlist?n=1 HTTP/1.1\r\nHost: t\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        slow.read_to_end(&mut rest).await.unwrap();
        assert!(
            !String::from_utf8_lossy(&rest).contains("200 OK"),
            "a half-sent head was answered: {:?}",
            String::from_utf8_lossy(&rest)
        );

        let stream = TcpStream::connect(front.addr).await.unwrap();
        let mut reader = BufReader::new(stream);
        reader
            .get_mut()
            .write_all(b"GET /mirrorlist?n=2 HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let answer = client::read_response(&mut reader).await;
        assert_eq!(
            answer.text(),
            expected(Endpoint::Mirrorlist, "127.0.0.1", &[("n", "2")])
        );
        // Idle after the answer: closed, with nothing more sent.
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    })
    .await;
}

#[tokio::test]
async fn health_reports_build_time_with_a_live_server() {
    guard(async {
        let d = dir();
        let _fake = Fake::start(&d.socket, false);
        let front = Front::start(config(&d)).await;
        let r = get(front.addr, "/health").await;
        assert_eq!(r.status, 200);
        let text = r.text();
        assert!(
            text.starts_with(&format!("ok built_at={} age=", crate::fake::BUILT_AT)),
            "{text}"
        );
        assert_eq!(r.header("cache-control"), Some("no-store"));
    })
    .await;
}

#[tokio::test]
async fn health_is_503_without_a_server() {
    guard(async {
        let d = dir();
        let front = Front::start(config(&d)).await;
        let r = get(front.addr, "/health").await;
        assert_eq!(r.status, 503);
        // And requests fail fast with Retry-After instead of hanging.
        let r = get(front.addr, "/mirrorlist?repo=a").await;
        assert_eq!(r.status, 503);
        assert!(r.header("retry-after").is_some());
    })
    .await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_after_the_send_timeout() {
    guard(async {
        let d = dir();
        let mut fake = Fake::start(&d.socket, false);
        let mut cfg = config(&d);
        cfg.send_timeout = std::time::Duration::from_millis(100);
        // Shutdown waits for a response being written for as long as this
        // (past the guard): only the send timeout can end that connection.
        cfg.shutdown_timeout = std::time::Duration::from_secs(3600);
        let front = Front::start(cfg).await;
        // A small receive buffer and a body far beyond every socket
        // buffer, so the front end's writes must wait for the reader.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(front.addr).await.expect("connect");
        const SIZE: usize = 4 << 20;
        stream
            .write_all(format!("GET /metalink?size={SIZE} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .await
            .unwrap();
        fake.wait_received(1).await;
        // Graceful shutdown lets the response finish; it returns only once
        // the stalled write has failed and its connection is gone.
        front.shutdown().await.unwrap().expect("run returns Ok");
        // What the kernel had taken still arrives; the rest never does.
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got).await;
        assert!(
            got.starts_with(b"HTTP/1.1 200"),
            "{:?}",
            &got[..got.len().min(40)]
        );
        assert!(
            got.len() < SIZE,
            "the whole response arrived ({} bytes)",
            got.len()
        );
    })
    .await;
}
