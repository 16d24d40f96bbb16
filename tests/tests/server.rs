//! The real `mirrorlist-server` binary on a socket in a temporary directory,
//! driven over the frame protocol: persistent and pipelined connections,
//! reload under load, bad caches, bursts of connections, misbehaving peers,
//! signals, the access log.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use mirrorlist_core::cachefile;
use mirrorlist_core::protocol::{self, Endpoint, PROTOCOL_VERSION};
use mirrorlist_tests::fixtures::{self, ARCH, REPO};
use mirrorlist_tests::{bin, request, FrameClient, Proc};
use nix::sys::signal::Signal;

struct Server {
    proc: Proc,
    dir: tempfile::TempDir,
}

impl Server {
    fn socket(&self) -> PathBuf {
        self.dir.path().join("mirrorlist.sock")
    }
    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache.bin")
    }
    fn access_log(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }
    fn connect(&self) -> FrameClient {
        FrameClient::connect(&self.socket()).expect("connecting to the server")
    }
}

fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(bin("mirrorlist-server"));
    cmd.arg("--cache")
        .arg(dir.join("cache.bin"))
        .arg("--socket")
        .arg(dir.join("mirrorlist.sock"))
        .arg("--access-log")
        .arg(dir.join("access.log"))
        .arg("--pidfile")
        .arg(dir.join("server.pid"));
    cmd
}

fn start() -> Server {
    start_with(&[])
}

/// A server with extra flags.
fn start_with(flags: &[&str]) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    cachefile::write_atomic(&dir.path().join("cache.bin"), &fixtures::cache(1)).expect("cache");
    let mut cmd = command(dir.path());
    cmd.args(flags);
    let mut proc = Proc::spawn(cmd);
    proc.wait_for("ready");
    Server { proc, dir }
}

fn mirrorlist() -> mirrorlist_core::protocol::Request {
    request(
        Endpoint::Mirrorlist,
        "192.0.2.10",
        &[("repo", REPO), ("arch", ARCH)],
    )
}

/// The generation of the fixture cache that produced a reply body.
fn generation(body: &[u8]) -> u64 {
    let text = std::str::from_utf8(body).expect("utf-8 body");
    let at = text
        .find(".g")
        .unwrap_or_else(|| panic!("no mirror URL in {text:?}"));
    text[at + 2..]
        .split('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no generation in {text:?}"))
}

#[test]
fn persistent_pipelined_connections() {
    let server = start();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let mut c = server.connect();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    // Twenty requests written back to back, then the replies.
                    let ids: Vec<u32> = (0..20).map(|_| c.send(&mirrorlist()).unwrap()).collect();
                    for id in ids {
                        let (got, reply) = c.recv().unwrap();
                        assert_eq!(got, id, "replies come back in order");
                        assert_eq!(reply.status, 200);
                        assert_eq!(generation(&reply.body), 1);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let ping = server
        .connect()
        .call(&request(Endpoint::Ping, "127.0.0.1", &[]))
        .unwrap();
    assert_eq!(ping.status, 200);
    assert!(String::from_utf8_lossy(&ping.body).contains("1700000001"));
}

#[test]
fn a_deep_pipeline_is_answered_in_order_across_several_writes() {
    // More replies than one write batch of the server holds (256 KiB), all
    // requested in one write, read while the requests are still going out.
    use std::io::{Read, Write};
    let server = start();
    let stream = std::os::unix::net::UnixStream::connect(server.socket()).expect("connect");
    let mut writer = stream.try_clone().expect("clone");
    let n = 1500u32;
    let mut out = Vec::new();
    for id in 0..n {
        protocol::encode_request(id, &mirrorlist(), &mut out);
    }
    let sender = std::thread::spawn(move || writer.write_all(&out).expect("writing requests"));
    let mut reader = stream;
    let (mut buf, mut chunk) = (Vec::new(), vec![0u8; 64 * 1024]);
    let (mut next, mut bytes) = (0u32, 0usize);
    while next < n {
        let got = reader.read(&mut chunk).expect("reading replies");
        assert!(got > 0, "connection closed after {next} replies");
        buf.extend_from_slice(&chunk[..got]);
        let mut at = 0;
        while let Some(frame) = protocol::parse_frame(&buf[at..]).expect("frame") {
            assert_eq!(frame.id, next, "replies come back in order");
            let reply = protocol::decode_reply(&frame).expect("reply");
            assert_eq!(reply.status, 200);
            bytes += reply.body.len();
            at += frame.consumed;
            next += 1;
        }
        buf.drain(..at);
    }
    sender.join().expect("sender");
    assert!(bytes > 256 * 1024, "only {bytes} bytes of replies");
}

#[test]
fn sighup_under_load_swaps_without_a_failed_request() {
    let mut server = start();
    let failures = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let reloaded = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (started_tx, started) = mpsc::channel();
    let (saw_new_tx, saw_new) = mpsc::channel();
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let mut c = server.connect();
            let (failures, answered, reloaded, stop) = (
                failures.clone(),
                answered.clone(),
                reloaded.clone(),
                stop.clone(),
            );
            let (started_tx, saw_new_tx) = (started_tx.clone(), saw_new_tx.clone());
            std::thread::spawn(move || {
                let mut first = true;
                let mut reported = false;
                while !stop.load(Ordering::SeqCst) {
                    // Read before sending: a request sent after the reload
                    // was logged must see the new data.
                    let after = reloaded.load(Ordering::SeqCst);
                    match c.call(&mirrorlist()) {
                        Ok(r) if r.status == 200 => {
                            answered.fetch_add(1, Ordering::Relaxed);
                            let g = generation(&r.body);
                            if after && g != 2 {
                                failures.fetch_add(1, Ordering::SeqCst);
                            }
                            if after && !reported {
                                reported = true;
                                saw_new_tx.send(g).unwrap();
                            }
                        }
                        _ => {
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    if first {
                        first = false;
                        started_tx.send(()).unwrap();
                    }
                }
            })
        })
        .collect();
    for _ in 0..50 {
        started.recv().unwrap();
    }
    cachefile::write_atomic(&server.cache(), &fixtures::cache(2)).unwrap();
    server.proc.signal(Signal::SIGHUP);
    let line = server.proc.wait_for("reloaded");
    assert!(line.contains("built_at=1700000002"), "{line}");
    reloaded.store(true, Ordering::SeqCst);
    for _ in 0..50 {
        assert_eq!(saw_new.recv().unwrap(), 2, "new data visible after reload");
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("client thread");
    }
    assert_eq!(failures.load(Ordering::SeqCst), 0, "failed requests");
    assert!(answered.load(Ordering::Relaxed) >= 100);
}

#[test]
fn corrupt_cache_on_sighup_keeps_the_old_data() {
    let mut server = start();
    let mut c = server.connect();
    let mut bytes = cachefile::encode(&fixtures::cache(2));
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    cachefile::write_bytes_atomic(&server.cache(), &bytes).unwrap();
    server.proc.signal(Signal::SIGHUP);
    let line = server.proc.wait_for("reload failed");
    assert!(line.contains("checksum"), "{line}");
    let reply = c.call(&mirrorlist()).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(generation(&reply.body), 1, "the old cache keeps serving");
    // A truncated file too.
    cachefile::write_bytes_atomic(&server.cache(), &bytes[..100]).unwrap();
    server.proc.signal(Signal::SIGHUP);
    let line = server.proc.wait_for("reload failed");
    assert!(line.contains("truncated"), "{line}");
    assert_eq!(generation(&c.call(&mirrorlist()).unwrap().body), 1);
}

#[test]
fn sigterm_removes_socket_and_pidfile_and_exits_zero() {
    let mut server = start();
    let pidfile = server.dir.path().join("server.pid");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, server.proc.pid().as_raw());
    // A connection that stays open does not keep the server alive.
    let _idle = server.connect();
    server.proc.signal(Signal::SIGTERM);
    let status = server.proc.wait_exit();
    assert!(
        status.success(),
        "exit status {status:?}: {}",
        server.proc.log()
    );
    assert!(!server.socket().exists(), "socket file removed");
    assert!(!pidfile.exists(), "pidfile removed");
}

#[test]
fn frames_sent_before_sigterm_are_answered() {
    let mut server = start();
    let mut c = server.connect();
    assert_eq!(c.call(&mirrorlist()).unwrap().status, 200);
    // Sent, not yet answered, perhaps not yet read by the server when the
    // signal arrives: requests in flight, which the shutdown finishes.
    let ids: Vec<u32> = (0..50).map(|_| c.send(&mirrorlist()).unwrap()).collect();
    server.proc.signal(Signal::SIGTERM);
    for id in ids {
        let (got, reply) = c.recv().expect("a reply to every frame sent");
        assert_eq!(got, id);
        assert_eq!(reply.status, 200);
    }
    assert!(server.proc.wait_exit().success(), "{}", server.proc.log());
}

#[test]
fn two_thousand_connections_at_once_are_all_answered() {
    // Started with a soft open-file limit of 256, as conservative systems
    // have: the server raises it to the hard limit itself. This process
    // holds the 2,000 other ends (and other tests' sockets): it raises its
    // own too.
    mirrorlist_core::limits::raise_fd_limit().expect("raising the open-file limit");
    let dir = tempfile::tempdir().expect("tempdir");
    cachefile::write_atomic(&dir.path().join("cache.bin"), &fixtures::cache(1)).expect("cache");
    let server_cmd = command(dir.path());
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -Sn 256 && exec \"$@\"")
        .arg("sh")
        .arg(server_cmd.get_program())
        .args(server_cmd.get_args());
    let mut proc = Proc::spawn(cmd);
    proc.wait_for("ready");
    let server = Server { proc, dir };
    let mut conns: Vec<FrameClient> = (0..2000).map(|_| server.connect()).collect();
    for c in &mut conns {
        c.send(&mirrorlist()).unwrap();
    }
    for c in &mut conns {
        let (_, reply) = c.recv().unwrap();
        assert_eq!(reply.status, 200);
    }
}

#[test]
fn half_a_frame_then_disconnect_costs_nothing() {
    let mut server = start();
    {
        let mut c = server.connect();
        let mut frame = Vec::new();
        protocol::encode_request(1, &mirrorlist(), &mut frame);
        use std::io::Write;
        c.stream().write_all(&frame[..frame.len() / 2]).unwrap();
    }
    // An oversized length closes that connection, and only that one.
    let mut good = server.connect();
    {
        let mut bad = server.connect();
        use std::io::{Read, Write};
        bad.stream().write_all(&u32::MAX.to_le_bytes()).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(bad.stream().read(&mut buf).unwrap(), 0, "closed");
    }
    server.proc.wait_for("exceeds the maximum");
    assert_eq!(good.call(&mirrorlist()).unwrap().status, 200);
}

#[test]
fn other_protocol_versions_get_an_error_reply_not_a_hang() {
    let server = start();
    let mut c = server.connect();
    let mut frame = Vec::new();
    protocol::encode_request(7, &mirrorlist(), &mut frame);
    frame[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
    use std::io::Write;
    c.stream().write_all(&frame).unwrap();
    let (id, reply) = c.recv().unwrap();
    assert_eq!(id, 7);
    assert_eq!(reply.status, 500);
    assert!(String::from_utf8_lossy(&reply.body).contains("protocol version"));
    // The connection is still usable.
    assert_eq!(c.call(&mirrorlist()).unwrap().status, 200);
}

#[test]
fn a_request_string_that_is_not_utf8_gets_400_and_the_connection_goes_on() {
    // The server decodes requests borrowing the frame's bytes as strings:
    // they must still be checked.
    let mut server = start();
    let mut c = server.connect();
    let mut req = mirrorlist();
    req.query.push(("note".into(), "zz".into()));
    let mut frame = Vec::new();
    protocol::encode_request(9, &req, &mut frame);
    let at = frame
        .windows(2)
        .rposition(|w| w == b"zz")
        .expect("the value");
    frame[at] = 0xff;
    use std::io::Write;
    c.stream().write_all(&frame).unwrap();
    let (id, reply) = c.recv().unwrap();
    assert_eq!((id, reply.status), (9, 400));
    server.proc.wait_for("bad request frame");
    assert_eq!(c.call(&mirrorlist()).unwrap().status, 200);
}

#[test]
fn a_live_socket_is_not_stolen_and_a_stale_one_is_replaced() {
    let server = start();
    let mut second = Proc::spawn(command(server.dir.path()));
    let status = second.wait_exit();
    assert!(!status.success());
    assert!(
        second.log().contains("another server is listening"),
        "{}",
        second.log()
    );
    // Found before the load, not seconds after it.
    assert!(!second.log().contains("loading"), "{}", second.log());
    assert_eq!(server.connect().call(&mirrorlist()).unwrap().status, 200);

    // A socket file nobody listens on (as after a crash) is replaced.
    let dir = tempfile::tempdir().unwrap();
    cachefile::write_atomic(&dir.path().join("cache.bin"), &fixtures::cache(1)).unwrap();
    drop(std::os::unix::net::UnixListener::bind(dir.path().join("mirrorlist.sock")).unwrap());
    let mut p = Proc::spawn(command(dir.path()));
    p.wait_for("ready");
    let meta = std::fs::metadata(dir.path().join("mirrorlist.sock")).unwrap();
    assert!(meta.file_type().is_socket());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o660, "default mode");
    let mut c = FrameClient::connect(&dir.path().join("mirrorlist.sock")).unwrap();
    assert_eq!(c.call(&mirrorlist()).unwrap().status, 200);
}

#[test]
fn access_log_is_written_and_reopened() {
    let mut server = start();
    let mut c = server.connect();
    let mut req = mirrorlist();
    req.query.push(("countme".into(), "2".into()));
    assert_eq!(c.call(&req).unwrap().status, 200);
    // logrotate moves the file, then signals.
    let rotated = server.dir.path().join("access.log.1");
    std::fs::rename(server.access_log(), &rotated).unwrap();
    server.proc.signal(Signal::SIGUSR1);
    server.proc.wait_for("access log reopened");
    assert_eq!(c.call(&mirrorlist()).unwrap().status, 200);
    server.proc.signal(Signal::SIGTERM);
    assert!(server.proc.wait_exit().success());
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(
        old.starts_with("IP: 192.0.2.10; DATE: ")
            && old.contains("; REPO: fedora-42; ARCH: x86_64; COUNTME: 2\n"),
        "{old:?}"
    );
    let new = std::fs::read_to_string(server.access_log()).unwrap();
    assert_eq!(new.lines().count(), 1, "{new:?}");
    assert!(!new.contains("COUNTME"), "{new:?}");
}

#[test]
fn check_loads_everything_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.bin");
    cachefile::write_atomic(&cache, &fixtures::cache(1)).unwrap();
    let out = Command::new(bin("mirrorlist-server"))
        .arg("--cache")
        .arg(&cache)
        .arg("--check")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("6 hosts"), "{stdout}");

    std::fs::write(&cache, b"MIRRLIST but not really").unwrap();
    let out = Command::new(bin("mirrorlist-server"))
        .arg("--cache")
        .arg(&cache)
        .arg("--check")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cache.bin"), "{stderr}");

    let out = Command::new(bin("mirrorlist-server"))
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "usage errors exit 64");
}

#[test]
fn allow_uid_refuses_other_peers() {
    let dir = tempfile::tempdir().expect("tempdir");
    cachefile::write_atomic(&dir.path().join("cache.bin"), &fixtures::cache(1)).expect("cache");
    let me = nix::unistd::getuid().as_raw();
    // Only a uid that is not ours may connect.
    let mut cmd = command(dir.path());
    cmd.arg("--allow-uid").arg((me + 4242).to_string());
    let mut proc = Proc::spawn(cmd);
    proc.wait_for("ready");
    let mut c = FrameClient::connect(&dir.path().join("mirrorlist.sock")).unwrap();
    assert!(c.call(&mirrorlist()).is_err(), "the connection is closed");
    let line = proc.wait_for("refusing connection");
    assert!(line.contains(&format!("uid={me}")), "{line}");

    // Our own uid is let in.
    let dir = tempfile::tempdir().expect("tempdir");
    cachefile::write_atomic(&dir.path().join("cache.bin"), &fixtures::cache(1)).expect("cache");
    let mut cmd = command(dir.path());
    cmd.arg("--allow-uid").arg(me.to_string());
    let mut proc = Proc::spawn(cmd);
    proc.wait_for("ready");
    let mut c = FrameClient::connect(&dir.path().join("mirrorlist.sock")).unwrap();
    assert_eq!(c.call(&mirrorlist()).unwrap().status, 200);
}

fn metalink() -> mirrorlist_core::protocol::Request {
    request(
        Endpoint::Metalink,
        "192.0.2.10",
        &[("repo", REPO), ("arch", ARCH)],
    )
}

fn check_metalink(body: &[u8]) {
    let text = std::str::from_utf8(body).expect("utf-8 body");
    assert!(text.starts_with("<?xml"), "{text}");
    assert!(text.ends_with("</metalink>\n"), "{text}");
}

#[test]
fn shared_memory_carries_large_bodies_and_is_given_once_per_connection() {
    let server = start();
    let mut c = server.connect();
    let (reply, attached) = c.attach().unwrap();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(attached, "a 200 reply brings the region's descriptor");

    // Pipelined, as the front end sends them; every body comes through the
    // region, whole (the client releases each block as it reads it).
    for _ in 0..50 {
        let ids: Vec<u32> = (0..20).map(|_| c.send(&metalink()).unwrap()).collect();
        for id in ids {
            let (got, reply) = c.recv().unwrap();
            assert_eq!(got, id);
            assert_eq!(reply.status, 200);
            assert!(
                c.last_shared,
                "a {}-byte body in the frame",
                reply.body.len()
            );
            check_metalink(&reply.body);
        }
    }
    // A short body stays in its frame.
    let ping = c.call(&request(Endpoint::Ping, "127.0.0.1", &[])).unwrap();
    assert!(!c.last_shared);
    assert!(ping.body.starts_with(b"ok built_at="));
    // One region per connection; the connection goes on after the refusal.
    let (again, _) = c.attach().unwrap();
    assert_eq!(
        again.status,
        409,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    assert_eq!(c.call(&metalink()).unwrap().status, 200);

    // Only as the first request of a connection.
    let mut late = server.connect();
    assert_eq!(late.call(&mirrorlist()).unwrap().status, 200);
    let (reply, attached) = late.attach().unwrap();
    assert_eq!(
        reply.status,
        400,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(!attached);
    let r = late.call(&metalink()).unwrap();
    assert!(!late.last_shared, "no region, so the body is in the frame");
    check_metalink(&r.body);
}

#[test]
fn a_full_region_sends_bodies_in_the_frames() {
    let mut server = start_with(&["--shm-size", "64K"]);
    let mut c = server.connect();
    assert!(c.attach().unwrap().1);

    // Nothing is read (so nothing released) until every request is sent:
    // the 64 KiB region fills up and the rest travel in their frames.
    let ids: Vec<u32> = (0..200).map(|_| c.send(&metalink()).unwrap()).collect();
    let (mut shared, mut inline) = (0, 0);
    for id in ids {
        let (got, reply) = c.recv().unwrap();
        assert_eq!(got, id);
        assert_eq!(reply.status, 200);
        assert!(
            reply.body.len() > 1024,
            "bodies of {} bytes",
            reply.body.len()
        );
        check_metalink(&reply.body);
        if c.last_shared {
            shared += 1;
        } else {
            inline += 1;
        }
    }
    assert!(shared > 0 && inline > 0, "{shared} shared, {inline} inline");
    // Once read, the blocks are free again: the region is used again.
    let r = c.call(&metalink()).unwrap();
    assert!(c.last_shared);
    check_metalink(&r.body);
    drop(c);
    let line = server.proc.wait_for("connection closed");
    assert!(line.contains("region_full="), "{line}");
    assert!(!line.contains("region_full=0"), "{line}");
}

#[test]
fn shared_memory_can_be_turned_off() {
    let server = start_with(&["--shm-size", "0"]);
    let mut c = server.connect();
    let (reply, attached) = c.attach().unwrap();
    assert_eq!(reply.status, 501);
    assert!(String::from_utf8_lossy(&reply.body).contains("--shm-size 0"));
    assert!(!attached);
    let r = c.call(&metalink()).unwrap();
    assert!(!c.last_shared);
    check_metalink(&r.body);
}

#[test]
fn connections_are_spread_over_the_workers_and_counted_off_when_closed() {
    let mut server = start_with(&["--workers", "2"]);
    assert!(
        server.proc.log().contains("workers=2"),
        "{}",
        server.proc.log()
    );
    // The second worker is a thread of its own.
    assert!(
        thread_named(&server, "worker-1").is_some(),
        "no worker-1 among {:?}",
        threads(&server)
    );
    let mut a = connect_on(&mut server, "worker=0");
    let b = connect_on(&mut server, "worker=1");
    // Equal counts: the first worker.
    let mut c = connect_on(&mut server, "worker=0");
    drop(b);
    let closed = server.proc.wait_for("connection closed");
    assert!(closed.contains("worker=1"), "{closed}");
    // Two against none: the second worker, twice (had the closed one
    // still counted, the second would go to the first worker).
    let mut d = connect_on(&mut server, "worker=1");
    let mut e = connect_on(&mut server, "worker=1");
    // All of them answer, pipelined, side by side.
    let ids: Vec<_> = [&mut a, &mut c, &mut d, &mut e]
        .into_iter()
        .map(|conn| {
            let ids: Vec<u32> = (0..10).map(|_| conn.send(&mirrorlist()).unwrap()).collect();
            ids
        })
        .collect();
    for (conn, ids) in [&mut a, &mut c, &mut d, &mut e].into_iter().zip(ids) {
        for id in ids {
            let (got, reply) = conn.recv().unwrap();
            assert_eq!(got, id);
            assert_eq!(reply.status, 200);
            assert_eq!(generation(&reply.body), 1);
        }
    }
}

/// A new connection, answered once, that the log says went to `want`
/// (`worker=N`).
fn connect_on(server: &mut Server, want: &str) -> FrameClient {
    let mut c = server.connect();
    assert_eq!(c.call(&mirrorlist()).unwrap().status, 200);
    let line = server.proc.wait_for("connection accepted");
    assert!(line.contains(want), "wanted {want}: {line}");
    c
}

/// The server's threads: each one's `/proc` directory and name.
fn threads(server: &Server) -> Vec<(PathBuf, String)> {
    let tasks = format!("/proc/{}/task", server.proc.pid());
    std::fs::read_dir(&tasks)
        .expect("the server's threads")
        .map(|t| {
            let dir = t.unwrap().path();
            let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            (dir, name.trim().to_owned())
        })
        .collect()
}

fn thread_named(server: &Server, name: &str) -> Option<PathBuf> {
    threads(server)
        .into_iter()
        .find_map(|(dir, n)| (n == name).then_some(dir))
}

/// How long a thread has run so far, in nanoseconds (the first field of
/// its `/proc/…/schedstat`). A thread parked with nothing to do does not
/// move it at all.
fn run_time(thread: &Path) -> u64 {
    let stat = std::fs::read_to_string(thread.join("schedstat")).expect("the thread's schedstat");
    stat.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no run time in {stat:?}"))
}

#[test]
fn a_second_workers_connection_is_answered_on_its_own_thread() {
    let mut server = start_with(&["--workers", "2"]);
    let mut on_zero = connect_on(&mut server, "worker=0");
    let mut on_one = connect_on(&mut server, "worker=1");
    let worker = thread_named(&server, "worker-1").expect("a worker-1 thread");
    let calls = |conn: &mut FrameClient| {
        let before = run_time(&worker);
        for _ in 0..200 {
            assert_eq!(conn.call(&metalink()).unwrap().status, 200);
        }
        run_time(&worker) - before
    };
    // Worker 1's thread runs while its connection is answered, and not
    // (or next to nothing: a stray wake-up) while worker 0's is; had
    // both connections been served on one thread, the two would be alike.
    let answering = calls(&mut on_one);
    let idle = calls(&mut on_zero);
    assert!(answering > 0, "worker-1 did not run while answering");
    assert!(
        answering > 10 * idle,
        "worker-1 ran {answering} ns answering its connection and {idle} ns while worker 0 answered"
    );
}

#[test]
fn a_reload_reaches_every_worker() {
    let mut server = start_with(&["--workers", "3"]);
    let mut conns: Vec<FrameClient> = (0..3)
        .map(|_| {
            let mut c = server.connect();
            assert_eq!(generation(&c.call(&mirrorlist()).unwrap().body), 1);
            c
        })
        .collect();
    for want in ["worker=0", "worker=1", "worker=2"] {
        let line = server.proc.wait_for("connection accepted");
        assert!(line.contains(want), "wanted {want}: {line}");
    }
    cachefile::write_atomic(&server.cache(), &fixtures::cache(2)).expect("new cache");
    server.proc.signal(Signal::SIGHUP);
    server.proc.wait_for("reloaded");
    for c in &mut conns {
        assert_eq!(generation(&c.call(&mirrorlist()).unwrap().body), 2);
    }
    server.proc.signal(Signal::SIGTERM);
    assert!(server.proc.wait_exit().success(), "{}", server.proc.log());
}

/// Writes metalink requests on `c` until its socket takes no more, reading
/// no reply; returns the bytes written.
fn flood_unread(c: &mut FrameClient) -> usize {
    let mut block = Vec::new();
    for i in 0..64 {
        protocol::encode_request(1000 + i, &metalink(), &mut block);
    }
    let s = c.stream();
    s.set_nonblocking(true).unwrap();
    let mut sent = 0usize;
    loop {
        match std::io::Write::write(s, &block[sent % block.len()..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return sent,
            Err(e) => panic!("writing requests: {e}"),
        }
    }
}

#[test]
fn sigterm_ends_a_connection_stuck_in_a_write_on_another_worker() {
    let mut server = start_with(&["--workers", "2", "--shutdown-timeout", "1"]);
    let _idle = connect_on(&mut server, "worker=0");
    let mut stuck = connect_on(&mut server, "worker=1");

    // Metalink requests written until the socket takes no more, and no
    // reply read: the queued requests' replies are many times what the
    // socket buffers, so the second worker ends up waiting in a write,
    // where it does not watch for shutdown; the timeout must end it.
    let sent = flood_unread(&mut stuck);
    assert!(sent > 64 * 1024, "only {sent} bytes of requests taken");
    server.proc.signal(Signal::SIGTERM);
    assert!(server.proc.wait_exit().success(), "{}", server.proc.log());
    let log = server.proc.log();
    // Ended by the timeout: the worker, blocked in that write, never
    // looks at the shutdown signal itself.
    assert!(log.contains("shutdown timeout reached"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(!server.socket().exists(), "socket left behind");
}

#[test]
fn a_second_stop_signal_ends_the_drain() {
    let mut server = start_with(&["--shutdown-timeout", "3600"]);
    let mut stuck = server.connect();
    // Answered: the server has accepted the connection.
    assert_eq!(stuck.call(&mirrorlist()).unwrap().status, 200);
    // As above: replies the connection does not read keep the server in
    // a write, and the drain would wait the whole hour for it.
    flood_unread(&mut stuck);
    server.proc.signal(Signal::SIGTERM);
    let line = server.proc.wait_for("shutting down");
    assert!(line.contains("connections=1"), "{line}");
    server.proc.signal(Signal::SIGINT);
    assert!(server.proc.wait_exit().success(), "{}", server.proc.log());
    let log = server.proc.log();
    assert!(log.contains("second stop signal"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(!server.socket().exists(), "socket left behind");
}

#[test]
fn a_missing_socket_directory_is_reported_before_the_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache.bin");
    // The load would wait on this pipe for ever: the server must fail
    // without opening it.
    cache_fifo(&cache);
    let mut cmd = Command::new(bin("mirrorlist-server"));
    cmd.arg("--cache")
        .arg(&cache)
        .arg("--socket")
        .arg(dir.path().join("no-such-dir/mirrorlist.sock"));
    let mut proc = Proc::spawn(cmd);
    assert!(!proc.wait_exit().success());
    let log = proc.log();
    assert!(log.contains("the directory for the socket"), "{log}");
    assert!(!log.contains("loading"), "{log}");
}

/// Makes `path` a named pipe: the server's load of it then waits until the
/// test writes a cache into it, so signals can be sent while a load is
/// certainly in progress, with no timing involved.
fn cache_fifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

/// Writes a cache into the named pipe at `path` (blocks until the server
/// opens it for reading).
fn feed_fifo(path: &Path, generation: u64) {
    std::fs::write(path, cachefile::encode(&fixtures::cache(generation)))
        .expect("feeding the pipe");
}

#[test]
fn sighup_and_sigusr1_during_the_first_load_do_not_kill_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache.bin");
    cache_fifo(&cache);
    let mut proc = Proc::spawn(command(dir.path()));
    // Logged once the handlers are in, before the cache is opened; the
    // load then waits on the pipe until it is fed below.
    proc.wait_for("loading");
    // Two SIGHUPs, each seen before the next is sent (the kernel merges a
    // signal sent while the same one is pending).
    proc.signal(Signal::SIGHUP);
    proc.wait_for("received SIGHUP");
    proc.signal(Signal::SIGHUP);
    proc.wait_for("received SIGHUP");
    proc.signal(Signal::SIGUSR1);
    proc.wait_for("received SIGUSR1");
    // Fed from a thread: if the signals killed the server, nobody opens
    // the pipe to read, and `wait_for` below fails on the closed log.
    let feeder = {
        let cache = cache.clone();
        std::thread::spawn(move || feed_fifo(&cache, 1))
    };
    proc.wait_for("ready");
    feeder.join().expect("feeder");
    let mut server = Server { proc, dir };
    assert_eq!(
        generation(&server.connect().call(&mirrorlist()).unwrap().body),
        1
    );

    // The SIGHUPs that came during the first load make one more load.
    server.proc.wait_for("reloading");
    feed_fifo(&cache, 2);
    let line = server.proc.wait_for("reloaded");
    assert!(line.contains("built_at=1700000002"), "{line}");
    assert_eq!(
        generation(&server.connect().call(&mirrorlist()).unwrap().body),
        2
    );

    server.proc.signal(Signal::SIGTERM);
    assert!(server.proc.wait_exit().success(), "{}", server.proc.log());
    let log = server.proc.log();
    assert_eq!(
        log.matches("reloading").count(),
        1,
        "SIGHUPs during the first load, one reload: {log}"
    );
}

#[test]
fn sigterm_during_a_reload_does_not_wait_for_the_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache.bin");
    cache_fifo(&cache);
    let mut proc = Proc::spawn(command(dir.path()));
    proc.wait_for("loading");
    feed_fifo(&cache, 1);
    proc.wait_for("ready");
    // The reload opens the pipe, which nobody will write to: it never ends.
    proc.signal(Signal::SIGHUP);
    proc.wait_for("reloading");
    proc.signal(Signal::SIGTERM);
    let status = proc.wait_exit();
    assert!(status.success(), "exit status {status:?}: {}", proc.log());
    let log = proc.log();
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains("reloaded"), "{log}");
    assert!(
        !dir.path().join("mirrorlist.sock").exists(),
        "socket left behind"
    );
}
