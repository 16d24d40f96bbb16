//! The harness for the end-to-end tests: find the built binaries, run them
//! as child processes that are killed when dropped, wait for their log
//! lines (never sleep), speak the frame protocol, and make small caches.
//!
//! # Layout
//!
//! - this file: processes, log waiting, frame client;
//! - [`fixtures`]: hand-built caches for server tests.
//!
//! The tests themselves live in `tests/*.rs` of this crate.

#![forbid(unsafe_code)]

pub mod fixtures;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use std::os::fd::AsFd;
use std::sync::Arc;

use mirrorlist_core::protocol::{self, BodyAt, Endpoint, Reply, Request};
use mirrorlist_core::shm::{self, Lease, Region};

/// A safety bound on every wait, so a broken build fails instead of hanging.
/// Waits end as soon as the awaited line or event arrives.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// Path of a binary of the workspace. The first call in a test process
/// runs `cargo build` for the workspace's binaries (a no-op when they are
/// fresh), so `cargo test -p mirrorlist-tests` alone never tests binaries
/// older than the source.
pub fn bin(name: &str) -> PathBuf {
    // The test executable lives in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "-q", "--workspace", "--bins"])
            .current_dir(workspace_root());
        if dir.file_name() == Some("release".as_ref()) {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("running cargo build");
        assert!(status.success(), "building the binaries failed");
    });
    dir.join(name)
}

/// A child process whose stderr is read line by line; killed on drop.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    name: String,
}

impl Proc {
    /// Starts `cmd` with stderr captured (stdout inherited).
    pub fn spawn(mut cmd: Command) -> Proc {
        let name = format!("{:?}", cmd.get_program());
        cmd.stderr(Stdio::piped()).stdin(Stdio::null());
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
            name,
        }
    }

    /// The process id.
    pub fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.child.id() as i32)
    }

    /// Waits for a stderr line containing `needle` that was not returned by
    /// an earlier call; returns it. Panics with the log if the process ends
    /// (or the safety bound passes) first.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(needle);
                    self.seen.push(line.clone());
                    if hit {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "{} never logged {needle:?} ({e}); its log:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Every stderr line read so far.
    pub fn log(&self) -> String {
        self.seen.join("\n")
    }

    /// Sends a signal.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid(), sig).expect("sending a signal");
    }

    /// Waits for the process to exit (within the safety bound) and returns
    /// its status; the rest of stderr is collected into the log.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting") {
                // Up to the pipe's end (it closes with the process), not
                // up to the first pause: a reader thread kept off the CPU
                // a while on a loaded machine must not cut the log short.
                while let Ok(line) = self
                    .lines
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                    self.seen.push(line);
                }
                return status;
            }
            // Blocks until a line arrives or the pipe closes (at exit).
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().expect("waiting");
                    return status;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{} did not exit; its log:\n{}", self.name, self.log())
                }
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `mirrorlist-client` on 127.0.0.1 (a free port) in front of the
/// server socket `socket`, with extra flags; returns it once it logged the
/// address it listens on, with that address.
pub fn start_front_end(socket: &Path, flags: &[&str]) -> (Proc, String) {
    let mut cmd = Command::new(bin("mirrorlist-client"));
    cmd.arg("--socket")
        .arg(socket)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .args(flags);
    let mut client = Proc::spawn(cmd);
    let line = client.wait_for("listening on ");
    let addr = line
        .rsplit("listening on ")
        .next()
        .expect("address")
        .trim()
        .to_owned();
    (client, addr)
}

/// A blocking client of the server's frame protocol.
#[derive(Debug)]
pub struct FrameClient {
    stream: UnixStream,
    next_id: u32,
    buf: Vec<u8>,
    /// The shared region, once [`FrameClient::attach`] got one.
    region: Option<Arc<Region>>,
    /// Whether the last reply's body came through the shared region.
    pub last_shared: bool,
}

impl FrameClient {
    /// Connects to the server's socket.
    pub fn connect(path: &Path) -> std::io::Result<FrameClient> {
        Ok(FrameClient {
            stream: UnixStream::connect(path)?,
            next_id: 1,
            buf: Vec::new(),
            region: None,
            last_shared: false,
        })
    }

    /// Asks for a shared region, as the front end does; returns the reply
    /// and whether a region came with it (and is now used for bodies).
    pub fn attach(&mut self) -> std::io::Result<(Reply, bool)> {
        let req = Request {
            endpoint: Endpoint::Attach,
            client_ip: None,
            query: Vec::new(),
        };
        let id = self.send(&req)?;
        let mut fd = None;
        loop {
            if let Some(frame) = protocol::parse_frame(&self.buf).map_err(invalid)? {
                assert_eq!(frame.id, id, "reply id");
                let reply = protocol::decode_reply(&frame).map_err(invalid)?;
                let used = frame.consumed;
                self.buf.drain(..used);
                if let (200, Some(fd)) = (reply.status, &fd) {
                    let region = Region::open(std::os::fd::OwnedFd::as_fd(fd)).map_err(invalid)?;
                    self.region = Some(Arc::new(region));
                }
                return Ok((reply, self.region.is_some()));
            }
            let mut chunk = [0u8; 16384];
            let (n, got) = shm::recv_with_fd(self.stream.as_fd(), &mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if got.is_some() {
                fd = got;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a request without waiting for its reply; returns its id.
    pub fn send(&mut self, req: &Request) -> std::io::Result<u32> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let mut out = Vec::new();
        protocol::encode_request(id, req, &mut out);
        self.stream.write_all(&out)?;
        Ok(id)
    }

    /// Reads the next reply and its id.
    pub fn recv(&mut self) -> std::io::Result<(u32, Reply)> {
        loop {
            if let Some(frame) = protocol::parse_frame(&self.buf)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
            {
                let head = protocol::decode_reply_head(&frame).map_err(invalid)?;
                self.last_shared = matches!(head.body, BodyAt::Shared(_));
                let body = match head.body {
                    BodyAt::Frame(range) => self.buf[range].to_vec(),
                    BodyAt::Shared(at) => {
                        let region = self
                            .region
                            .clone()
                            .ok_or_else(|| invalid(protocol::FrameError::SharedBody))?;
                        // Copied out, and the block released (the lease
                        // is dropped) at once.
                        Lease::new(region, at).map_err(invalid)?.as_ref().to_vec()
                    }
                };
                let reply = Reply {
                    status: head.status,
                    content_type: head.content_type.into_owned(),
                    headers: head.headers,
                    body,
                };
                let (id, used) = (frame.id, frame.consumed);
                self.buf.drain(..used);
                return Ok((id, reply));
            }
            let mut chunk = [0u8; 16384];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one request and waits for its reply, checking the id.
    pub fn call(&mut self, req: &Request) -> std::io::Result<Reply> {
        let id = self.send(req)?;
        let (got, reply) = self.recv()?;
        assert_eq!(got, id, "reply id");
        Ok(reply)
    }

    /// The raw stream, for tests that misbehave on purpose.
    pub fn stream(&mut self) -> &mut UnixStream {
        &mut self.stream
    }
}

fn invalid(e: impl std::error::Error + Send + Sync + 'static) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

/// A request for `endpoint` with the given query pairs and client address.
pub fn request(endpoint: Endpoint, ip: &str, query: &[(&str, &str)]) -> Request {
    Request {
        endpoint,
        client_ip: Some(ip.parse().expect("test address")),
        query: query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// An HTTP response as the tests see it.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lower-cased) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header of that (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one HTTP/1.1 request (`Connection: close`) with extra header lines
/// and reads the whole response. A deliberately small client, so the tests
/// control every byte on the wire.
pub fn http(addr: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let mut stream = std::net::TcpStream::connect(addr).expect("connecting to the front end");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .expect("sending the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("reading the response");
    parse_http(&raw, method == "HEAD")
}

fn parse_http(raw: &[u8], head: bool) -> HttpResponse {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head_text = std::str::from_utf8(&raw[..end]).expect("ASCII headers");
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked && !head {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size = usize::from_str_radix(std::str::from_utf8(&data[..nl]).expect("hex").trim(), 16)
            .expect("chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[nl + 2..nl + 2 + size]);
        data = &data[nl + 2 + size + 2..];
    }
}
