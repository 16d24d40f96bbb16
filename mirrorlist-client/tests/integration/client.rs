//! A tiny HTTP/1.1 client on raw TCP, so tests control every byte sent
//! (over-long targets, broken escapes, repeated headers) and see every byte
//! received (a HEAD response must carry no body).

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET target` on a fresh connection.
pub async fn get(addr: SocketAddr, target: &str) -> Resp {
    send(addr, "GET", target, &[]).await
}

/// One request with `Connection: close`; the body is everything up to EOF,
/// so a HEAD response that wrongly carried a body would show it.
pub async fn send(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Resp {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut reader = BufReader::new(stream);
    let mut resp = read_head(&mut reader).await;
    reader.read_to_end(&mut resp.body).await.expect("read body");
    resp
}

/// Reads a status line and headers.
pub async fn read_head(reader: &mut BufReader<TcpStream>) -> Resp {
    let mut line = String::new();
    reader.read_line(&mut line).await.expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.expect("header line");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').expect("header colon");
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    Resp {
        status,
        headers,
        body: Vec::new(),
    }
}

/// Reads one response on a kept-alive connection, its body by Content-Length.
pub async fn read_response(reader: &mut BufReader<TcpStream>) -> Resp {
    let mut resp = read_head(reader).await;
    let len: usize = resp
        .header("content-length")
        .expect("content-length")
        .parse()
        .unwrap();
    resp.body.resize(len, 0);
    reader.read_exact(&mut resp.body).await.expect("body");
    resp
}
