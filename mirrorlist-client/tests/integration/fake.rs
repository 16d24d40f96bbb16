//! A stand-in for `mirrorlist-server`: the real frame protocol on a real Unix
//! socket, echoing each decoded request back in the body so tests can see
//! exactly what the front end forwarded.
//!
//! Query parameters steer it: `status=N` sets the reply status,
//! `location=URL` adds a `Location` header, `badheader=1` adds a header name
//! HTTP does not allow, `garbage=1` answers with an unparseable frame,
//! `wrongid=1` with a reply carrying another request's id, `size=N` pads
//! the body with `.` to N bytes.
//! With `hold` set, replies wait until [`Fake::release`], so tests can hold
//! requests in flight without relying on timing.

use std::path::{Path, PathBuf};

use mirrorlist_core::protocol::{self, Endpoint, Reply, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

/// The build time the fake reports to pings.
pub const BUILT_AT: u64 = 1_700_000_000;

/// A running fake server. Dropping it (or [`Fake::kill`]) closes its socket
/// and every connection.
pub struct Fake {
    path: PathBuf,
    task: JoinHandle<()>,
    gate: watch::Sender<bool>,
    received: watch::Receiver<usize>,
    connections: watch::Receiver<usize>,
}

impl Fake {
    /// Listens on `path`; with `hold`, replies wait for [`Fake::release`].
    pub fn start(path: &Path, hold: bool) -> Fake {
        let listener = UnixListener::bind(path).expect("bind the fake's socket");
        let (gate, gate_rx) = watch::channel(!hold);
        let (received_tx, received) = watch::channel(0usize);
        let (connections_tx, connections) = watch::channel(0usize);
        let task = tokio::spawn(async move {
            // Owned here, so aborting this task drops (and closes) every
            // connection too.
            let mut conns = JoinSet::new();
            loop {
                let (stream, _) = listener.accept().await.expect("accept");
                connections_tx.send_modify(|n| *n += 1);
                conns.spawn(serve(stream, gate_rx.clone(), received_tx.clone()));
            }
        });
        Fake {
            path: path.to_owned(),
            task,
            gate,
            received,
            connections,
        }
    }

    /// Lets held replies (and all later ones) go.
    pub fn release(&self) {
        self.gate.send_replace(true);
    }

    /// Waits until `n` requests have been received in total.
    pub async fn wait_received(&mut self, n: usize) {
        self.received
            .wait_for(|&got| got >= n)
            .await
            .expect("fake alive");
    }

    /// Waits until `n` connections have been accepted in total.
    pub async fn wait_connections(&mut self, n: usize) {
        self.connections
            .wait_for(|&got| got >= n)
            .await
            .expect("fake alive");
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        *self.connections.borrow()
    }

    /// Stops at once, like a crashed server: every connection is closed
    /// with whatever was in flight, and the socket file is removed.
    pub fn kill(self) {
        drop(self);
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve(
    stream: tokio::net::UnixStream,
    mut gate: watch::Receiver<bool>,
    received: watch::Sender<usize>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<(u32, Request)>();
    // Reading and answering run side by side, so held replies do not stop
    // the fake from reading (and counting) further pipelined requests.
    let reader = async move {
        let mut buf = Vec::new();
        loop {
            let mut pos = 0;
            while let Some(frame) = protocol::parse_frame(&buf[pos..]).expect("valid frame") {
                let request = protocol::decode_request(&frame).expect("valid request");
                pos += frame.consumed;
                if request.endpoint != Endpoint::Attach {
                    received.send_modify(|n| *n += 1);
                }
                if tx.send((frame.id, request)).is_err() {
                    return;
                }
            }
            buf.drain(..pos);
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let writer = async move {
        while let Some((id, request)) = rx.recv().await {
            // Declined at once, gate or not, as a server with shared
            // memory off does: the fake's bodies stay in the frames.
            let attach = request.endpoint == Endpoint::Attach;
            if !attach && gate.wait_for(|open| *open).await.is_err() {
                return;
            }
            let mut out = Vec::new();
            if param(&request, "garbage").is_some() {
                out.extend_from_slice(&u32::MAX.to_le_bytes());
            } else if param(&request, "wrongid").is_some() {
                protocol::encode_reply(id.wrapping_add(1000), &reply_to(&request), &mut out);
            } else {
                protocol::encode_reply(id, &reply_to(&request), &mut out);
            }
            if wr.write_all(&out).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(reader, writer);
}

fn param<'a>(request: &'a Request, key: &str) -> Option<&'a str> {
    request
        .query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// What the fake answers: the request itself, see [`echo`].
fn reply_to(request: &Request) -> Reply {
    if request.endpoint == Endpoint::Ping {
        return Reply::text(200, format!("ok built_at={BUILT_AT}\n"));
    }
    if request.endpoint == Endpoint::Attach {
        return Reply::text(501, "shared memory is off\n");
    }
    let mut body = echo(request);
    if let Some(size) = param(request, "size") {
        let size: usize = size.parse().expect("numeric size");
        body.extend(std::iter::repeat_n('.', size.saturating_sub(body.len())));
    }
    let mut reply = Reply::text(200, body);
    if let Some(status) = param(request, "status") {
        reply.status = status.parse().expect("numeric status");
    }
    if let Some(location) = param(request, "location") {
        reply.headers.push(("Location".into(), location.into()));
    }
    if param(request, "badheader").is_some() {
        reply.headers.push(("bad name".into(), "x".into()));
    }
    reply
}

/// The body the fake sends for a request.
pub fn echo(request: &Request) -> String {
    let ip = request
        .client_ip
        .map_or_else(|| "none".to_owned(), |ip| ip.to_string());
    format!(
        "endpoint={:?}\nip={ip}\nquery={:?}\n",
        request.endpoint, request.query
    )
}

/// The body the fake sends for these parts, for assertions.
pub fn expected(endpoint: Endpoint, ip: &str, query: &[(&str, &str)]) -> String {
    echo(&Request {
        endpoint,
        client_ip: if ip == "none" {
            None
        } else {
            Some(ip.parse().unwrap())
        },
        query: query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}
