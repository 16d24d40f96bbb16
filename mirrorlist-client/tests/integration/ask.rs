//! The real binary: `ask`, and serving until SIGTERM.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use tokio::io::Lines;
use tokio::process::{Child, ChildStderr};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::client::get;
use crate::fake::{expected, Fake};
use crate::{dir, guard};
use mirrorlist_core::protocol::Endpoint;

const BIN: &str = env!("CARGO_BIN_EXE_mirrorlist-client");

/// Runs the binary off the runtime thread, so the in-test fake keeps
/// answering meanwhile.
async fn run(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || Command::new(BIN).args(args).output().expect("run binary"))
        .await
        .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn ask_prints_status_headers_and_body() {
    guard(async {
        let d = dir();
        let _fake = Fake::start(&d.socket, false);
        let socket = d.socket.to_str().unwrap();
        let out = run(args(&[
            "ask",
            "--socket",
            socket,
            "--ip",
            "192.0.2.7",
            "/mirrorlist?repo=fedora%2D42&arch=x86_64&status=302&location=https://m.example/",
        ]))
        .await;
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let body = expected(
            Endpoint::Mirrorlist,
            "192.0.2.7",
            &[
                ("repo", "fedora-42"),
                ("arch", "x86_64"),
                ("status", "302"),
                ("location", "https://m.example/"),
            ],
        );
        assert_eq!(
            stdout,
            format!(
                "HTTP/1.1 302 Found\ncontent-type: text/plain; charset=utf-8\nlocation: https://m.example/\ncontent-length: {}\n\n{body}",
                body.len()
            )
        );

        // Local answers are what a client would get, too.
        let out = run(args(&["ask", "--socket", socket, "/metalink?repo=%zz"])).await;
        assert_eq!(out.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("HTTP/1.1 400 Bad Request\n"));

        let out = run(args(&["ask", "--socket", socket, "/health"])).await;
        assert_eq!(out.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("HTTP/1.1 200 OK\n"));
    })
    .await;
}

#[tokio::test]
async fn ask_without_a_server_exits_1_and_bad_target_exits_64() {
    guard(async {
        let d = dir();
        let socket = d.socket.to_str().unwrap();
        let out = run(args(&["ask", "--socket", socket, "/mirrorlist?repo=a"])).await;
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stdout.is_empty());
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
        let out = run(args(&["ask", "--socket", socket, "no target"])).await;
        assert_eq!(out.status.code(), Some(64));
        let out = run(args(&["--socket", socket])).await;
        assert_eq!(out.status.code(), Some(64), "--listen missing");
        let out = run(args(&["--socket", socket, "--listen", "nonsense"])).await;
        assert_eq!(out.status.code(), Some(64), "bad --listen");
        let out = run(args(&["--help"])).await;
        assert_eq!(out.status.code(), Some(0));
    })
    .await;
}

/// The binary serving on a free port of 127.0.0.1 in front of `socket`,
/// with its default log level; returns it, the rest of its log, and the
/// address it logged once listening.
async fn serve(
    socket: &Path,
    extra: &[&str],
) -> (Child, Lines<BufReader<ChildStderr>>, SocketAddr) {
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "--socket",
            socket.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next_line().await.unwrap().expect("listening line");
        if let Some((_, addr)) = line.split_once("listening on ") {
            break addr.trim().parse().unwrap();
        }
    };
    (child, lines, addr)
}

#[tokio::test]
async fn binary_logs_readiness_serves_and_exits_0_on_sigterm() {
    guard(async {
        let d = dir();
        let _fake = Fake::start(&d.socket, false);
        let (mut child, mut lines, addr) = serve(&d.socket, &[]).await;
        let r = get(addr, "/mirrorlist?repo=a").await;
        assert_eq!(
            r.text(),
            expected(Endpoint::Mirrorlist, "127.0.0.1", &[("repo", "a")])
        );
        let pid = child.id().unwrap().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        // Drain the log so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        assert_eq!(child.wait().await.unwrap().code(), Some(0));
    })
    .await;
}

#[tokio::test]
async fn a_second_signal_exits_without_waiting_for_open_requests() {
    guard(async {
        let d = dir();
        // Holds every reply: the request below stays in flight, and the
        // drain would wait the whole hour for it.
        let mut fake = Fake::start(&d.socket, true);
        let (mut child, mut lines, addr) = serve(
            &d.socket,
            &[
                "--workers",
                "1",
                "--shutdown-timeout",
                "3600",
                "--request-timeout",
                "3600",
            ],
        )
        .await;
        let mut wait_line = async |needle: &str| loop {
            let line = lines.next_line().await.unwrap().expect("log line");
            if line.contains(needle) {
                break line;
            }
        };
        let held = tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            stream
                .write_all(b"GET /mirrorlist?repo=a HTTP/1.1\r\nHost: test\r\n\r\n")
                .await
                .expect("write");
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            answer
        });
        fake.wait_received(1).await;
        let pid = child.id().unwrap().to_string();
        let term = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(term.success());
        wait_line("waiting for 1 open connection").await;
        let int = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(int.success());
        wait_line("received SIGINT again").await;
        assert_eq!(child.wait().await.unwrap().code(), Some(1));
        // The held request's connection went with the process, unanswered.
        let answer = held.await.unwrap();
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    })
    .await;
}
