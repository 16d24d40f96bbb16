//! The server alone: a load generator speaking the frame protocol over the
//! Unix socket, the way the front end does (a few persistent connections,
//! many requests pipelined on each, one write per batch, large reads).
//!
//! Each connection first asks for a shared region for bodies, as the front
//! end does (so large bodies come through it, and are released as soon as
//! their reply is counted). Each connection keeps `depth` requests in flight: it writes a batch,
//! reads until every reply of the batch is in, and repeats, for a time or
//! for a number of requests ([`Limit`]). Prints
//! `frames requests=N seconds=S rps=R avg_body=B non2xx=E errors=E`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use mirrorlist_core::protocol::{self, BodyAt, Endpoint, Request};
use mirrorlist_core::shm::Lease;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Turns `/mirrorlist?a=b&c=d` into a request from 127.0.0.1 (the `ip=`
/// parameter carries the client address, as through the front end).
fn request(path: &str) -> anyhow::Result<Request> {
    let (p, q) = path.split_once('?').unwrap_or((path, ""));
    let endpoint = match p {
        "/mirrorlist" => Endpoint::Mirrorlist,
        "/metalink" => Endpoint::Metalink,
        _ => anyhow::bail!("unknown endpoint in {path}"),
    };
    let query = q
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    Ok(Request {
        endpoint,
        client_ip: Some("127.0.0.1".parse().expect("address")),
        query,
    })
}

/// How long the load goes on.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    /// For this many seconds.
    Seconds(f64),
    /// For exactly this many requests in all. With a multiple of twice
    /// the paths' count spread over two connections, every path is asked
    /// equally often: an instruction count that does not depend on where
    /// a time limit cut the rotation.
    Requests(u64),
}

/// Connection `c` of `n`'s share of `total` requests (the first ones take
/// the remainder).
fn share(total: u64, c: usize, n: usize) -> u64 {
    let (n, c) = (n as u64, c as u64);
    total / n + u64::from(c < total % n)
}

#[derive(Default)]
struct Tally {
    requests: u64,
    body_bytes: u64,
    non2xx: u64,
    errors: u64,
}

async fn connection(
    socket: &Path,
    frames: &[Vec<u8>],
    offset: usize,
    depth: usize,
    until: Instant,
    quota: Option<u64>,
) -> Tally {
    let mut tally = Tally::default();
    let mut stream = match UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(_) => {
            tally.errors += 1;
            return tally;
        }
    };
    let region = match mirrorlist_client::upstream::attach(&mut stream).await {
        Ok(region) => region,
        Err(_) => {
            tally.errors += 1;
            return tally;
        }
    };
    let mut next = offset;
    let mut wbuf = Vec::with_capacity(64 * 1024);
    let mut rbuf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut sent = 0u64;
    loop {
        let batch = match quota {
            Some(q) => (q - sent).min(depth as u64) as usize,
            None if Instant::now() < until => depth,
            None => 0,
        };
        if batch == 0 {
            break;
        }
        sent += batch as u64;
        wbuf.clear();
        for _ in 0..batch {
            wbuf.extend_from_slice(&frames[next % frames.len()]);
            next += 1;
        }
        if stream.write_all(&wbuf).await.is_err() {
            tally.errors += 1;
            return tally;
        }
        let mut answered = 0;
        while answered < batch {
            let mut consumed = 0;
            loop {
                match protocol::parse_frame(&rbuf[consumed..]) {
                    Ok(Some(frame)) => {
                        consumed += frame.consumed;
                        answered += 1;
                        let head = match protocol::decode_reply_head(&frame) {
                            Ok(head) => head,
                            Err(_) => {
                                tally.errors += 1;
                                continue;
                            }
                        };
                        let len = match (head.body, &region) {
                            (BodyAt::Frame(range), _) => range.len(),
                            // Taken and released at once.
                            (BodyAt::Shared(at), Some(region)) => {
                                match Lease::new(region.clone(), at) {
                                    Ok(lease) => lease.as_ref().len(),
                                    Err(_) => {
                                        tally.errors += 1;
                                        continue;
                                    }
                                }
                            }
                            (BodyAt::Shared(_), None) => {
                                tally.errors += 1;
                                continue;
                            }
                        };
                        tally.requests += 1;
                        tally.body_bytes += len as u64;
                        if !(200..300).contains(&head.status) {
                            tally.non2xx += 1;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        tally.errors += 1;
                        return tally;
                    }
                }
            }
            rbuf.drain(..consumed);
            if answered >= batch {
                break;
            }
            if rbuf.capacity() - rbuf.len() < 256 * 1024 {
                rbuf.reserve(1 << 20);
            }
            match stream.read_buf(&mut rbuf).await {
                Ok(0) | Err(_) => {
                    tally.errors += 1;
                    return tally;
                }
                Ok(_) => {}
            }
        }
    }
    tally
}

/// Runs the load and prints one result line.
pub async fn run(
    socket: &Path,
    paths: &Path,
    connections: usize,
    depth: usize,
    limit: Limit,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(paths).with_context(|| format!("reading {}", paths.display()))?;
    let mut frames = Vec::new();
    for (i, line) in text.lines().filter(|l| !l.is_empty()).enumerate() {
        let mut f = Vec::new();
        protocol::encode_request(i as u32, &request(line)?, &mut f);
        frames.push(f);
    }
    anyhow::ensure!(!frames.is_empty(), "no paths in {}", paths.display());
    let start = Instant::now();
    let (until, total) = match limit {
        Limit::Seconds(s) => (start + Duration::from_secs_f64(s), None),
        Limit::Requests(n) => (start, Some(n)),
    };
    let connections = connections.max(1);
    let local = tokio::task::LocalSet::new();
    let frames = std::rc::Rc::new(frames);
    let socket = socket.to_path_buf();
    let tallies = local
        .run_until(async {
            let handles: Vec<_> = (0..connections)
                .map(|c| {
                    let frames = frames.clone();
                    let socket = socket.clone();
                    let offset = c * frames.len() / connections;
                    let quota = total.map(|n| share(n, c, connections));
                    tokio::task::spawn_local(async move {
                        connection(&socket, &frames, offset, depth.max(1), until, quota).await
                    })
                })
                .collect();
            let mut all = Vec::new();
            for h in handles {
                all.push(h.await);
            }
            all
        })
        .await;
    let secs = start.elapsed().as_secs_f64();
    let mut t = Tally::default();
    for r in tallies {
        let r = r.context("connection task")?;
        t.requests += r.requests;
        t.body_bytes += r.body_bytes;
        t.non2xx += r.non2xx;
        t.errors += r.errors;
    }
    println!(
        "frames requests={} seconds={secs:.2} rps={:.0} avg_body={} non2xx={} errors={}",
        t.requests,
        t.requests as f64 / secs,
        t.body_bytes.checked_div(t.requests).unwrap_or(0),
        t.non2xx,
        t.errors
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for (total, n) in [(0, 1), (10, 1), (10, 3), (65536, 2), (7, 8)] {
            let shares: Vec<u64> = (0..n).map(|c| share(total, c, n)).collect();
            assert_eq!(shares.iter().sum::<u64>(), total, "{total} over {n}");
            let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
            assert!(hi - lo <= 1, "{shares:?}");
        }
    }
}
