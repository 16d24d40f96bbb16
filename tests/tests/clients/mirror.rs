//! A static HTTP file server standing in for one mirror: bound to its own
//! loopback address (127.0.0.2, 127.0.0.3, …) on a free port, serving a
//! directory, recording every request so a test can tell which mirror
//! served what.
//!
//! HTTP/1.1 with keep-alive (curl in librepo and apt's http method both
//! reuse connections), `GET` and `HEAD`, `Content-Length` always, 404 for
//! a missing file, 400 for `..`. One thread per connection; the listener is
//! bound before `start` returns, so there is nothing to wait for.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One request a mirror answered.
#[derive(Debug, Clone)]
pub struct Hit {
    /// `GET` or `HEAD`.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The status sent.
    pub status: u16,
}

/// A running mirror; stops accepting when dropped.
#[derive(Debug)]
pub struct Mirror {
    /// Its name in the mirror description.
    pub name: &'static str,
    /// The address it listens on.
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    stop: Arc<AtomicBool>,
}

impl Mirror {
    /// Binds `ip:0` and serves `root` from a background thread.
    pub fn start(name: &'static str, ip: &str, root: &Path) -> Mirror {
        let listener = TcpListener::bind((ip, 0))
            .unwrap_or_else(|e| panic!("mirror {name}: binding {ip}:0: {e}"));
        let addr = listener.local_addr().expect("local address");
        let hits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s, r) = (hits.clone(), stop.clone(), root.to_owned());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (h, r) = (h.clone(), r.clone());
                std::thread::spawn(move || serve(conn, &r, &h));
            }
        });
        Mirror {
            name,
            addr,
            hits,
            stop,
        }
    }

    /// `http://ADDR` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().expect("hits").clone()
    }

    /// Whether this mirror answered a request for a path ending in
    /// `suffix` with `status`.
    pub fn answered(&self, suffix: &str, status: u16) -> bool {
        self.hits()
            .iter()
            .any(|h| h.path.ends_with(suffix) && h.status == status)
    }

    /// Its requests, one per line, for failure messages.
    pub fn describe(&self) -> String {
        let hits = self.hits();
        let mut out = format!(
            "mirror {} ({}): {} requests\n",
            self.name,
            self.addr,
            hits.len()
        );
        for h in hits {
            out.push_str(&format!("  {} {} -> {}\n", h.method, h.path, h.status));
        }
        out
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(conn: TcpStream, root: &Path, hits: &Mutex<Vec<Hit>>) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut close = false;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("connection")
                    && value.trim().eq_ignore_ascii_case("close")
                {
                    close = true;
                }
            }
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let target = parts.next().unwrap_or("");
        let version = parts.next().unwrap_or("HTTP/1.0");
        if version == "HTTP/1.0" {
            close = true;
        }
        let path = target.split(['?', '#']).next().unwrap_or("").to_owned();
        let (status, body) = if method != "GET" && method != "HEAD" {
            (405, Vec::new())
        } else if path.split('/').any(|c| c == "..") || !path.starts_with('/') {
            (400, Vec::new())
        } else {
            match std::fs::read(root.join(&path[1..])) {
                Ok(data) => (200, data),
                Err(_) => (404, b"not found\n".to_vec()),
            }
        };
        hits.lock().expect("hits").push(Hit {
            method: method.clone(),
            path,
            status,
        });
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            _ => "Method Not Allowed",
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {}\r\nConnection: {}\r\n\r\n",
            body.len(),
            if close { "close" } else { "keep-alive" }
        );
        let mut reply = head.into_bytes();
        if method != "HEAD" {
            reply.extend_from_slice(&body);
        }
        if out.write_all(&reply).is_err() {
            return;
        }
        if close {
            // Read what the client may still send, so closing does not
            // reset the connection under its last response.
            let _ = out.shutdown(Shutdown::Write);
            let mut sink = [0u8; 4096];
            while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
            return;
        }
    }
}
