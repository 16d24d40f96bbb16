//! The running server: accepts connections on the Unix socket, answers the
//! frames on each one, swaps in new data on reload, and stops cleanly.
//!
//! Connections are served by `--workers` threads, each with a
//! current-thread runtime of its own: a connection stays on the thread it
//! was given (the one serving the fewest connections when it arrived), so
//! a request never crosses threads, and the few pipelined connections of
//! a front end are answered side by side. The first worker is the calling
//! runtime, which also accepts, takes the signals' messages and flushes
//! the log. Loading a new cache is the one slow thing; it runs on a
//! blocking thread and the result is swapped in with one atomic pointer
//! store, so requests already holding the old data finish on it.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use mirrorlist_core::cachefile;
use mirrorlist_core::model::Summary;
use mirrorlist_core::protocol::{self, Endpoint, FrameError, Reply};
use mirrorlist_core::shm::{self, Region, Ring};
use rand::SeedableRng;
use std::os::fd::{AsFd, OwnedFd};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{UnixListener, UnixStream};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinSet;

use crate::accesslog::AccessLog;
use crate::asn::AsnTable;
use crate::config::{Config, Sources};
use crate::geo::{GeoLookup, MaxmindGeo};
use crate::handler::{self, State};
use crate::shuffle_rng::ShuffleRng;

/// What the outside world asks of a running server (signals translated once,
/// at the edge, into these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Load the data files again and swap them in; reopen the access log.
    Reload,
    /// Reopen the access log only.
    ReopenLog,
    /// Stop accepting, finish what is in flight, return.
    Shutdown,
}

/// Facts about a load, for the logs and `--check`.
#[derive(Clone, Debug)]
pub struct LoadInfo {
    /// The cache's build time, Unix seconds.
    pub built_at: u64,
    /// What the cache holds.
    pub summary: Summary,
    /// How long loading took.
    pub took: Duration,
    /// Whether a GeoIP database is loaded.
    pub geoip: bool,
    /// Whether an ASN table is loaded.
    pub asn: bool,
}

/// Loads the cache, the GeoIP database and the ASN table, and builds the
/// indexes: everything a request needs, prepared before any request sees it.
pub fn load_state(src: &Sources) -> anyhow::Result<(State, LoadInfo)> {
    let start = Instant::now();
    let cache = cachefile::load(&src.cache)
        .with_context(|| format!("loading cache {}", src.cache.display()))?;
    let geo = match &src.geoip {
        Some(path) => Some(Box::new(
            MaxmindGeo::open(path)
                .with_context(|| format!("loading GeoIP database {}", path.display()))?,
        ) as Box<dyn GeoLookup + Send + Sync>),
        None => None,
    };
    let asn = match &src.asn_netblocks {
        Some(path) => Some(
            AsnTable::load(path)
                .with_context(|| format!("loading ASN table {}", path.display()))?,
        ),
        None => None,
    };
    let built_at = cache.built_at;
    let summary = cache.summary();
    let info_geo = geo.is_some();
    let info_asn = asn.is_some();
    let state = State::new(cache, geo, asn, src.minimum);
    // The file's bytes and the decoding's scraps are free now.
    release_free_memory();
    Ok((
        state,
        LoadInfo {
            built_at,
            summary,
            took: start.elapsed(),
            geoip: info_geo,
            asn: info_asn,
        },
    ))
}

struct Shared {
    state: ArcSwap<State>,
    log: Option<Mutex<AccessLog>>,
    allow_uid: Vec<u32>,
    shm_size: usize,
}

/// Serves `listener` until a [`Control::Shutdown`] arrives (or the control
/// channel closes), starting with `initial` data.
pub async fn run(
    config: Config,
    listener: UnixListener,
    initial: State,
    mut controls: mpsc::UnboundedReceiver<Control>,
) -> anyhow::Result<()> {
    let log = match &config.access_log {
        Some(path) => {
            Some(Mutex::new(AccessLog::open(path).with_context(|| {
                format!("opening access log {}", path.display())
            })?))
        }
        None => None,
    };
    let shared = Arc::new(Shared {
        state: ArcSwap::from_pointee(initial),
        log,
        allow_uid: config.allow_uid.clone(),
        shm_size: config.shm_size,
    });
    let reload = Arc::new(Notify::new());
    let reloader = tokio::spawn(reload_loop(
        shared.clone(),
        config.sources.clone(),
        reload.clone(),
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    let workers = Workers::start(config.workers).context("starting the worker threads")?;
    tracing::info!(workers = config.workers, "ready");

    // Signals that came during the first load: any number of SIGHUPs make
    // one more load (the cache may have been replaced after that load
    // opened it), a stop signal stops. The access log was opened above.
    let mut early = Vec::new();
    while let Ok(control) = controls.try_recv() {
        early.push(control);
    }
    if early.contains(&Control::Reload) {
        reload.notify_one();
    }
    let mut stopping = early.contains(&Control::Shutdown);

    while !stopping {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Some(stream) = admit(stream, &shared.allow_uid) {
                        workers.serve(&mut conns, stream, &shared, &stop_rx);
                    }
                }
                Err(e) => {
                    // Typically EMFILE: back off briefly instead of spinning.
                    tracing::error!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            control = controls.recv() => match control {
                Some(Control::Reload) => {
                    // Notify keeps one permit: SIGHUPs during a load
                    // coalesce into one more load.
                    reload.notify_one();
                    reopen_log(&shared);
                }
                Some(Control::ReopenLog) => reopen_log(&shared),
                Some(Control::Shutdown) | None => stopping = true,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = flush.tick() => flush_log(&shared),
        }
    }

    tracing::info!(
        connections = conns.len(),
        "shutting down: no longer accepting; finishing requests in flight"
    );
    drop(listener);
    let _ = stop_tx.send(true);
    // A second stop signal (an operator's second Ctrl-C) ends the wait.
    let drained = tokio::time::timeout(config.shutdown_timeout, async {
        let mut listening = true;
        loop {
            tokio::select! {
                next = conns.join_next() => if next.is_none() {
                    return true;
                },
                control = controls.recv(), if listening => match control {
                    Some(Control::Shutdown) => return false,
                    Some(_) => {}
                    None => listening = false,
                },
            }
        }
    })
    .await;
    match drained {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(
                connections = conns.len(),
                "second stop signal; closing remaining connections"
            );
            conns.abort_all();
        }
        Err(_) => {
            tracing::warn!(
                connections = conns.len(),
                "shutdown timeout reached; closing remaining connections"
            );
            conns.abort_all();
        }
    }
    reloader.abort();
    workers.stop();
    flush_log(&shared);
    Ok(())
}

/// The threads connections are served on: the runtime [`run`] is called
/// on (worker 0) and `n - 1` threads with a current-thread runtime each.
struct Workers {
    handles: Vec<Handle>,
    /// Live connections per worker.
    live: Vec<Arc<AtomicUsize>>,
    /// The extra threads, each running until its sender is used or dropped.
    threads: Vec<(oneshot::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Workers {
    /// Worker 0 is the current runtime; starts the other `n - 1`.
    fn start(n: usize) -> io::Result<Workers> {
        let mut workers = Workers {
            handles: vec![Handle::current()],
            live: vec![Arc::default()],
            threads: Vec::new(),
        };
        for i in 1..n.max(1) {
            let (stop, stopped) = oneshot::channel::<()>();
            let (started, handle) = std::sync::mpsc::channel();
            // The runtime is built, and dropped, on its own thread: a
            // runtime dropped on this one (inside `block_on`) would panic.
            let thread = std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = started.send(Err(e));
                            return;
                        }
                    };
                    let _ = started.send(Ok(runtime.handle().clone()));
                    runtime.block_on(async {
                        let _ = stopped.await;
                    });
                })?;
            let handle = handle
                .recv()
                .map_err(|_| io::Error::other("a worker thread ended while starting"))??;
            workers.handles.push(handle);
            workers.live.push(Arc::default());
            workers.threads.push((stop, thread));
        }
        Ok(workers)
    }

    /// Serves `stream` on the worker with the fewest live connections.
    fn serve(
        &self,
        conns: &mut JoinSet<()>,
        stream: UnixStream,
        shared: &Arc<Shared>,
        stop: &watch::Receiver<bool>,
    ) {
        let worker = least_loaded(self.live.iter().map(|c| c.load(Ordering::Acquire)));
        let live = Live::new(self.live[worker].clone());
        let (shared, stop) = (shared.clone(), stop.clone());
        tracing::info!(worker, "connection accepted");
        if worker == 0 {
            conns.spawn(serve_connection(stream, shared, stop, worker, live));
            return;
        }
        // A stream belongs to the runtime whose reactor registered it: move
        // it over as a plain socket and register it again there.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot hand a connection to worker {worker}: {e}");
                return;
            }
        };
        conns.spawn_on(
            async move {
                match UnixStream::from_std(stream) {
                    Ok(stream) => serve_connection(stream, shared, stop, worker, live).await,
                    Err(e) => tracing::warn!("worker {worker} cannot take a connection: {e}"),
                }
            },
            &self.handles[worker],
        );
    }

    /// Ends the extra threads, once their connections are done.
    fn stop(self) {
        for (stop, thread) in self.threads {
            let _ = stop.send(());
            if thread.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
    }
}

/// The index of the smallest count, the first of equals (0 if none).
fn least_loaded(counts: impl IntoIterator<Item = usize>) -> usize {
    let mut best = (0, usize::MAX);
    for (i, n) in counts.into_iter().enumerate() {
        if n < best.1 {
            best = (i, n);
        }
    }
    best.0
}

/// One live connection counted against its worker, until dropped (when
/// the connection's task ends, or is aborted).
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(count: Arc<AtomicUsize>) -> Live {
        count.fetch_add(1, Ordering::Relaxed);
        Live(count)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // Release: a connection accepted after this one's "closed" line
        // sees the count without it (the Acquire load in `serve`).
        self.0.fetch_sub(1, Ordering::Release);
    }
}

fn reopen_log(shared: &Shared) {
    if let Some(log) = &shared.log {
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        match log.reopen() {
            Ok(()) => tracing::info!("access log reopened"),
            Err(e) => tracing::error!("reopening access log: {e}"),
        }
    }
}

fn flush_log(shared: &Shared) {
    if let Some(log) = &shared.log {
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = log.flush() {
            tracing::error!("writing access log: {e}");
        }
    }
}

/// Checks the peer's credentials against `--allow-uid`.
fn admit(stream: UnixStream, allow_uid: &[u32]) -> Option<UnixStream> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    match getsockopt(&stream, PeerCredentials) {
        Ok(cred) => {
            tracing::debug!(uid = cred.uid(), pid = cred.pid(), "connection");
            if !allow_uid.is_empty() && !allow_uid.contains(&cred.uid()) {
                tracing::warn!(
                    uid = cred.uid(),
                    pid = cred.pid(),
                    "refusing connection from a uid not in --allow-uid"
                );
                return None;
            }
        }
        Err(e) if !allow_uid.is_empty() => {
            tracing::warn!("refusing connection: peer credentials unavailable: {e}");
            return None;
        }
        Err(_) => {}
    }
    Some(stream)
}

/// Hands the allocator's free pages back to the kernel. glibc keeps what a
/// thread frees in that thread's arena and returns only the top of it, so
/// without this every reload (whose old state is freed on one thread after
/// the new one was built on another) left the previous cache's size in RSS:
/// measured on the MirrorManager2 data, 62 MB after start, 122 MB after
/// one reload, 182 MB after two.
#[allow(unsafe_code)]
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only walks glibc's own
    // arenas, under their locks, and may be called from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How long a reload waits for batches still answering with the old data
/// to finish before dropping its reference anyway (the last worker to let
/// go then frees it). A batch takes milliseconds.
const OLD_STATE_PATIENCE: Duration = Duration::from_secs(10);

async fn reload_loop(shared: Arc<Shared>, sources: Sources, notify: Arc<Notify>) {
    loop {
        notify.notified().await;
        tracing::info!(cache = %sources.cache.display(), "reloading");
        let src = sources.clone();
        match tokio::task::spawn_blocking(move || load_state(&src)).await {
            Ok(Ok((state, info))) => {
                let old = shared.state.swap(Arc::new(state));
                // Freeing a large cache takes a while: not on this thread,
                // nor on a worker still answering a batch with it (whose
                // glibc arena would keep the pages): wait until this is the
                // last reference, then free and trim here.
                tokio::task::spawn_blocking(move || {
                    let deadline = Instant::now() + OLD_STATE_PATIENCE;
                    while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    drop(old);
                    release_free_memory();
                });
                tracing::info!(
                    built_at = info.built_at,
                    load_ms = info.took.as_millis() as u64,
                    "reloaded: {}",
                    info.summary
                );
            }
            Ok(Err(e)) => {
                tracing::error!("reload failed, still serving the previous data: {e:#}")
            }
            Err(e) => tracing::error!("reload failed, still serving the previous data: {e}"),
        }
    }
}

/// Replies are written once this many bytes are buffered, even if more
/// complete requests are waiting. Without a bound, one read of many
/// pipelined requests for large metalinks (40–80 KB each) built a reply
/// buffer of megabytes that was grown by doubling (copying it each time,
/// in freshly mapped, zero-filled pages) and thrown away after every batch;
/// measured, that made the server's CPU per request grow with the front
/// end's concurrency. 256 KiB still carries dozens of plain lists per write
/// and matches what a Unix socket buffer takes at once.
const WRITE_BATCH: usize = 256 * 1024;

/// The replies to the first this many frames of a read go out before the
/// rest are answered. A read of many frames (the front end forwards each
/// of its wake-ups' requests in one write) would otherwise keep every
/// reply back until the last is rendered, and the front end, which has
/// nothing else to do, would sit idle for that long: the stack left 12–18%
/// of this two-CPU machine idle at 100 connections. Measured with
/// `bench/ab` (Fedora-scale /mirrorlist, c=100, 10 rounds): +10.9% req/s,
/// -1.1% CPU per request; 12 and 24 do as well as 16, 4 and 8 less well,
/// and early writes at 16, 32, 64, … frames gain nothing more, at 1,000
/// connections either.
const FIRST_WRITE: usize = 16;

/// What [`answer_frames`] left behind.
#[derive(Debug)]
enum Answered {
    /// Every complete frame in the read buffer is answered.
    All,
    /// The reply buffer reached [`WRITE_BATCH`], or the frame limit was
    /// reached; complete frames may remain.
    More,
    /// The stream is unusable (a frame boundary can no longer be found).
    Broken,
    /// `wbuf` holds the reply to an attach request, which must go with the
    /// new region's descriptor; frames after it are not answered yet.
    Attached(OwnedFd),
}

/// One connection's state beyond its buffers.
#[derive(Default)]
struct Conn {
    /// Frames read so far (an attach is valid only as the first).
    frames: u64,
    /// The shared region for bodies, once the front end attached one.
    ring: Option<Ring>,
}

/// Reads frames from one connection and answers them in order. Replies to
/// the frames that arrived in one read go out in two writes (the first
/// [`FIRST_WRITE`] frames', then the rest), up to [`WRITE_BATCH`] bytes
/// per write.
async fn serve_connection(
    mut stream: UnixStream,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    worker: usize,
    live: Live,
) {
    let mut conn = Conn::default();
    serve(&mut stream, &shared, stop, &mut conn).await;
    // Counted off before the line below, so a new connection that follows
    // the line sees this worker's count without it.
    drop(live);
    let stats = conn.ring.as_ref().map(Ring::stats).unwrap_or_default();
    tracing::info!(
        worker,
        frames = conn.frames,
        shared_bodies = stats.shared,
        region_full = stats.full,
        streamed_bodies = stats.streamed,
        "connection closed"
    );
}

async fn serve(
    stream: &mut UnixStream,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
    conn: &mut Conn,
) {
    let mut rbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut wbuf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut rng = ShuffleRng::from_rng(&mut rand::rng());
    // Once the server is shutting down, frames the peer has already sent
    // are still answered (they are requests in flight), and the
    // connection ends when nothing more has arrived; the shutdown timeout
    // bounds a peer that keeps sending.
    let mut stopping = false;
    loop {
        if rbuf.capacity() - rbuf.len() < 16 * 1024 {
            rbuf.reserve(64 * 1024);
        }
        let read = if stopping {
            match read_arrived(stream, &mut rbuf).await {
                Some(r) => r,
                None => return,
            }
        } else {
            tokio::select! {
                biased;
                r = stream.read_buf(&mut rbuf) => r,
                _ = stop.changed() => {
                    stopping = true;
                    continue;
                }
            }
        };
        match read {
            Ok(0) => {
                if !rbuf.is_empty() {
                    tracing::debug!(bytes = rbuf.len(), "peer closed in the middle of a frame");
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("connection read error: {e}");
                return;
            }
        }
        let mut limit = FIRST_WRITE;
        loop {
            let answered = answer_frames(shared, conn, &mut rbuf, &mut wbuf, &mut rng, limit);
            let written = match &answered {
                Answered::Attached(fd) => send_with_fd(stream, &wbuf, fd).await,
                _ if !wbuf.is_empty() => stream.write_all(&wbuf).await,
                _ => Ok(()),
            };
            if let Err(e) = written {
                tracing::debug!("connection write error: {e}");
                return;
            }
            wbuf.clear();
            limit = usize::MAX;
            match answered {
                Answered::All => break,
                Answered::More | Answered::Attached(_) => continue,
                Answered::Broken => return,
            }
        }
        // A burst of large replies can leave big buffers behind; give the
        // memory back so a long-lived connection stays small.
        if wbuf.capacity() > 1 << 20 {
            wbuf = Vec::with_capacity(64 * 1024);
        }
    }
}

/// Reads what has already arrived on `stream`, without waiting for more:
/// `None` if nothing has. The runtime learns that a socket became readable
/// only when its driver turns, so a shutdown noticed first would otherwise
/// miss frames that arrived with it; `yield_now` lets the driver turn once.
async fn read_arrived(stream: &mut UnixStream, rbuf: &mut Vec<u8>) -> Option<io::Result<usize>> {
    tokio::task::yield_now().await;
    let mut read = std::pin::pin!(stream.read_buf(rbuf));
    std::future::poll_fn(|cx| match std::future::Future::poll(read.as_mut(), cx) {
        std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

/// Writes `bytes` with `fd` attached to the first of them.
async fn send_with_fd(stream: &mut UnixStream, bytes: &[u8], fd: &OwnedFd) -> io::Result<()> {
    let sent = loop {
        stream.writable().await?;
        match stream.try_io(Interest::WRITABLE, || {
            shm::send_with_fd(stream.as_fd(), bytes, fd.as_fd())
        }) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    };
    stream.write_all(&bytes[sent..]).await
}

/// Answers an attach request: a new region for this connection, or why not.
fn attach(size: usize, first: bool, conn: &mut Conn) -> (Reply, Option<OwnedFd>) {
    let refuse = |status, text: &str| {
        (
            Reply::text(status, format!("mirrorlist-server: {text}\n")),
            None,
        )
    };
    if conn.ring.is_some() {
        return refuse(409, "this connection already has a shared region");
    }
    if !first {
        return refuse(400, "attach must be a connection's first request");
    }
    if size == 0 {
        return refuse(501, "shared memory is off (--shm-size 0)");
    }
    match Region::create(size) {
        Ok((region, fd)) => {
            conn.ring = Some(Ring::new(region));
            tracing::debug!(bytes = size, "shared region attached");
            let text = format!("shared region of {size} bytes\n");
            (Reply::text(200, text), Some(fd))
        }
        Err(e) => {
            tracing::warn!(
                "cannot create a shared region ({e}); this connection's bodies go over the socket"
            );
            refuse(503, &format!("cannot create a shared region: {e}"))
        }
    }
}

/// Answers the complete frames in `rbuf` until `wbuf` holds
/// [`WRITE_BATCH`] bytes or `limit` frames are answered, appending
/// replies to `wbuf`, and removes the frames it consumed. Never inlined:
/// `bench/callgrind` counts the instructions inside this function by its
/// name.
#[inline(never)]
fn answer_frames(
    shared: &Shared,
    conn: &mut Conn,
    rbuf: &mut Vec<u8>,
    wbuf: &mut Vec<u8>,
    rng: &mut ShuffleRng,
    limit: usize,
) -> Answered {
    let state = shared.state.load();
    let mut offset = 0;
    let mut answered = Answered::All;
    let mut n = 0;
    loop {
        if wbuf.len() >= WRITE_BATCH || n >= limit {
            answered = Answered::More;
            break;
        }
        let frame = match protocol::parse_frame(&rbuf[offset..]) {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("closing connection: {e}");
                answered = Answered::Broken;
                break;
            }
        };
        offset += frame.consumed;
        n += 1;
        let first = conn.frames == 0;
        conn.frames += 1;
        match protocol::decode_request_ref(&frame) {
            Ok(req) if req.endpoint == Endpoint::Attach => {
                let (reply, fd) = attach(shared.shm_size, first, conn);
                protocol::encode_reply(frame.id, &reply, wbuf);
                if let Some(fd) = fd {
                    answered = Answered::Attached(fd);
                    break;
                }
            }
            Ok(req) => {
                // Lists and metalinks are rendered into the shared region
                // (in place, or aside and streamed there; see shm.rs) if
                // there is one with room, everything else into
                // the frame (and a large body there is moved to the region
                // if it has room by now).
                let mut start = protocol::begin_reply(frame.id, wbuf);
                let (answer, record) =
                    handler::handle_into(&state, &req, rng, wbuf, conn.ring.as_mut());
                if let Some(at) = answer.shared {
                    protocol::body_in_region(&mut start, wbuf, at);
                } else if let Some(ring) = conn.ring.as_mut() {
                    if start.body_len(wbuf) >= handler::SHARED_MIN_BODY {
                        protocol::share_body(&mut start, wbuf, |body| ring.put(body));
                    }
                }
                protocol::finish_reply(
                    start,
                    answer.status,
                    answer.content_type,
                    &answer.headers,
                    wbuf,
                );
                if let (Some(log), Some(record)) = (&shared.log, record) {
                    // Locked per record, not per batch: the workers share
                    // the log, and would otherwise take turns answering.
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(e) = log.record(&record) {
                        tracing::error!("writing access log: {e}");
                    }
                }
            }
            Err(e) => {
                // The frame boundary is intact: answer the error and go on.
                let status = if matches!(e, FrameError::Version { .. }) {
                    500
                } else {
                    400
                };
                tracing::warn!("bad request frame: {e}");
                let reply = Reply::text(status, format!("mirrorlist-server: {e}\n"));
                protocol::encode_reply(frame.id, &reply, wbuf);
            }
        }
    }
    rbuf.drain(..offset);
    answered
}

/// Translates SIGHUP, SIGUSR1, SIGTERM and SIGINT into [`Control`] messages,
/// on a thread of its own (signal-hook's iterator).
pub fn spawn_signal_thread() -> io::Result<mpsc::UnboundedReceiver<Control>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let mut signals = signal_hook::iterator::Signals::new([SIGHUP, SIGUSR1, SIGTERM, SIGINT])?;
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let (control, name) = match sig {
                    SIGHUP => (Control::Reload, "SIGHUP"),
                    SIGUSR1 => (Control::ReopenLog, "SIGUSR1"),
                    SIGTERM => (Control::Shutdown, "SIGTERM"),
                    _ => (Control::Shutdown, "SIGINT"),
                };
                tracing::info!("received {name}");
                if tx.send(control).is_err() {
                    break;
                }
            }
        })?;
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_goes_to_the_least_loaded_worker_first_of_equals() {
        assert_eq!(least_loaded([0]), 0);
        assert_eq!(least_loaded([0, 0]), 0);
        assert_eq!(least_loaded([1, 0]), 1);
        assert_eq!(least_loaded([1, 1, 0, 0]), 2);
        assert_eq!(least_loaded([3, 2, 2, 5]), 1);
    }

    #[test]
    fn live_connections_are_counted_until_dropped() {
        let count = Arc::new(AtomicUsize::new(0));
        let a = Live::new(count.clone());
        let b = Live::new(count.clone());
        assert_eq!(count.load(Ordering::Relaxed), 2);
        drop(a);
        assert_eq!(count.load(Ordering::Relaxed), 1);
        drop(b);
        assert_eq!(count.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_first_replies_of_a_read_can_go_out_before_the_rest() {
        let shared = Shared {
            state: ArcSwap::from_pointee(State::new(Default::default(), None, None, 5)),
            log: None,
            allow_uid: Vec::new(),
            shm_size: 0,
        };
        let request = protocol::Request {
            endpoint: Endpoint::Mirrorlist,
            client_ip: None,
            query: vec![
                ("repo".into(), "none".into()),
                ("arch".into(), "x86_64".into()),
            ],
        };
        let mut rbuf = Vec::new();
        for id in 0..40 {
            protocol::encode_request(id, &request, &mut rbuf);
        }
        let (mut conn, mut wbuf) = (Conn::default(), Vec::new());
        let mut rng = ShuffleRng::seed_from_u64(1);
        let ids = |wbuf: &[u8]| {
            let mut ids = Vec::new();
            let mut at = 0;
            while let Some(frame) = protocol::parse_frame(&wbuf[at..]).unwrap() {
                ids.push(frame.id);
                at += frame.consumed;
            }
            assert_eq!(at, wbuf.len(), "whole frames only");
            ids
        };
        let answered = answer_frames(&shared, &mut conn, &mut rbuf, &mut wbuf, &mut rng, 16);
        assert!(matches!(answered, Answered::More), "{answered:?}");
        assert_eq!(ids(&wbuf), (0..16).collect::<Vec<u32>>());
        wbuf.clear();
        let answered = answer_frames(
            &shared,
            &mut conn,
            &mut rbuf,
            &mut wbuf,
            &mut rng,
            usize::MAX,
        );
        assert!(matches!(answered, Answered::All), "{answered:?}");
        assert_eq!(ids(&wbuf), (16..40).collect::<Vec<u32>>());
        assert!(rbuf.is_empty());
        assert_eq!(conn.frames, 40);
    }

    #[test]
    fn workers_start_and_stop() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let workers = Workers::start(3).unwrap();
            assert_eq!(workers.handles.len(), 3);
            // Each extra worker runs tasks on a thread of its own.
            let mut names = Vec::new();
            for h in &workers.handles[1..] {
                let name = h
                    .spawn(async { std::thread::current().name().map(str::to_owned) })
                    .await
                    .unwrap();
                names.push(name.unwrap());
            }
            assert_eq!(names, ["worker-1", "worker-2"]);
            workers.stop();
        });
    }
}
