//! The timer burst: cloud instances polling on a schedule open thousands of
//! connections within the same instant. Every connection is opened at once
//! and sends one `GET` (`Connection: close`); the answer is read to EOF.
//! Prints `burst connections=N ok=N non2xx=N errors=N seconds=S p50_ms=..
//! p99_ms=.. max_ms=..`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

enum Outcome {
    Ok(Duration),
    Status(Duration),
    Error,
}

async fn one(addr: SocketAddr, path: String) -> Outcome {
    let start = Instant::now();
    let result = async {
        let mut s = TcpStream::connect(addr).await?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: libdnf (bench)\r\n\
             Accept: */*\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::with_capacity(32 * 1024);
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    }
    .await;
    let elapsed = start.elapsed();
    match result {
        Ok(buf) => {
            let ok = buf.starts_with(b"HTTP/1.1 2") && full_body(&buf);
            if ok {
                Outcome::Ok(elapsed)
            } else if buf.starts_with(b"HTTP/1.1 ") {
                Outcome::Status(elapsed)
            } else {
                Outcome::Error
            }
        }
        Err(_) => Outcome::Error,
    }
}

/// Whether the whole body announced by `Content-Length` arrived.
fn full_body(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|len| buf.len() - end - 4 == len)
}

/// Runs the burst and prints one result line.
pub async fn run(
    addr: SocketAddr,
    paths: &Path,
    connections: usize,
    timeout: u64,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(paths).with_context(|| format!("reading {}", paths.display()))?;
    let paths: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    anyhow::ensure!(!paths.is_empty(), "no paths");
    let start = Instant::now();
    let handles: Vec<_> = (0..connections)
        .map(|i| tokio::spawn(one(addr, paths[i % paths.len()].to_owned())))
        .collect();
    let (mut ok, mut non2xx, mut errors) = (0u64, 0u64, 0u64);
    let mut lat = Vec::with_capacity(connections);
    let all = async {
        for h in handles {
            match h.await {
                Ok(Outcome::Ok(d)) => {
                    ok += 1;
                    lat.push(d);
                }
                Ok(Outcome::Status(d)) => {
                    non2xx += 1;
                    lat.push(d);
                }
                _ => errors += 1,
            }
        }
    };
    let finished = tokio::time::timeout(Duration::from_secs(timeout), all)
        .await
        .is_ok();
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    let unanswered = connections as u64 - ok - non2xx - errors;
    println!(
        "burst connections={connections} ok={ok} non2xx={non2xx} errors={} seconds={secs:.3} \
         p50_ms={:.1} p99_ms={:.1} max_ms={:.1} finished={finished}",
        errors + unanswered,
        pct(0.5),
        pct(0.99),
        lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
    Ok(())
}
