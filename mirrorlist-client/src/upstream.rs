//! The pool of persistent, pipelined connections to `mirrorlist-server`.
//!
//! # Why this shape
//!
//! Measured on this service's hardware, ~85% of the CPU goes to the kernel,
//! so syscalls and wake-ups per request decide throughput. Each connection
//! is therefore driven by one task that owns the stream: it takes every
//! request that is ready from its channel, encodes them all into one buffer
//! and writes it with as few `write`s as the socket allows, and reads
//! replies in large reads, completing the waiting handlers in FIFO order
//! (the server answers in arrival order; the id in each reply is checked
//! against the request it should belong to).
//!
//! # Shared memory
//!
//! Right after connecting, each connection asks the server for a shared
//! region ([`attach`]); the server then writes large bodies there and its
//! frames carry only where they are. Such a body reaches hyper as `Bytes`
//! owning a [`Lease`] on its block, and the block goes back to the server
//! when hyper has written it and drops it. A server that declines (it runs
//! with `--shm-size 0`) is used as before, bodies in the frames.
//!
//! # Failure
//!
//! - While a connection is down, its slot has no sender and requests go to
//!   another slot; with none up, [`Upstream::call`] fails at once with
//!   [`UpstreamError::Unavailable`] rather than queueing behind a reconnect
//!   loop that may take seconds.
//! - A connection that dies (EOF, I/O error) drops its waiting requests'
//!   reply senders: they fail with [`UpstreamError::ConnectionLost`] at
//!   once. A frame that cannot be parsed, or a reply whose id does not match,
//!   fails them with [`UpstreamError::Protocol`] and closes the connection,
//!   since the stream can no longer be trusted.
//! - Reconnecting backs off from 50 ms, doubling, to 2 s.
//! - A request not answered by its deadline fails with
//!   [`UpstreamError::Timeout`]. The connection task keeps the deadlines:
//!   one timer per connection, set to the earliest waiting request's,
//!   instead of a timer armed and cancelled per request (which was ~9% of
//!   the front end's instructions). A request that had to queue for
//!   admission keeps a timer of its own, since the queue counts towards its
//!   time.
//!
//! # Admission
//!
//! At most `max_inflight` requests are forwarded at once; up to `max_queue`
//! more wait for a slot, and beyond that [`UpstreamError::Overloaded`] is
//! returned immediately. The limit ([`Admission`]) is one for the whole
//! process: every worker's pool takes its slots from it. A burst of a few
//! thousand simultaneous requests (cloud instances polling on a timer) is
//! thus queued and answered, while a flood that cannot be served is turned
//! away cheaply.
//!
//! A slot is held until the server's reply arrives (or the connection
//! ends), not until the client stops waiting: a request whose client gave
//! up or timed out is still owed by the server, so clients that send and
//! hang up at once cannot pile unbounded work (and buffers) onto it past
//! the limit. Health pings pass the queue (a proxy that sees a busy backend
//! as dead moves the burst onto the others) but have a small limit of
//! their own, [`PINGS_IN_FLIGHT`].

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::os::fd::AsFd;

use bytes::{Buf, Bytes, BytesMut};
use mirrorlist_core::protocol::{self, BodyAt, EncodedRequest, Endpoint, Reply};
use mirrorlist_core::shm::{self, Lease, Region};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};

/// First reconnect delay.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest reconnect delay: a restarted server is picked up within this.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Size of each read from the server. Large, so a burst of replies costs one
/// syscall; replies larger than this grow the buffer as needed.
const READ_CHUNK: usize = 64 * 1024;
/// How long the server may take to answer an attach request before the
/// connection counts as failed.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(5);
/// The id of the attach request (replies to it are read before any other).
const ATTACH_ID: u32 = u32::MAX;
/// Health pings forwarded at once, for the whole process; more get
/// [`UpstreamError::Overloaded`]. A proxy checks every few seconds, so this
/// only ever turns away a flood of `/health` from elsewhere.
pub const PINGS_IN_FLIGHT: usize = 16;

/// Why a request got no reply from the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No connection to the server is up.
    #[error("the mirrorlist server is not reachable")]
    Unavailable {
        /// Seconds until the next reconnect attempt, for `Retry-After`.
        retry_after: u64,
    },
    /// The in-flight limit and the queue are both full.
    #[error("too many requests in flight")]
    Overloaded,
    /// The connection carrying the request broke before the reply came.
    #[error("the connection to the mirrorlist server was lost")]
    ConnectionLost,
    /// No reply within the request timeout.
    #[error("the mirrorlist server did not answer within {0:?}")]
    Timeout(Duration),
    /// The request timeout passed while the request waited for a place
    /// among those in flight: it never reached the server.
    #[error("too many requests in flight: no place came free within {0:?}")]
    QueueTimeout(Duration),
    /// The server sent something that is not a valid reply.
    #[error("protocol error from the mirrorlist server: {0}")]
    Protocol(String),
}

/// The server's reply to one request. The body is a view of the shared
/// region, or a slice of the buffer the reply was read into, handed to
/// hyper as is: no copy, and no fresh zero-filled allocation per body (for
/// 40-80 KB metalinks the page faults of those were ~9% of the front end's
/// CPU).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` of the body (borrowed for the server's usual two).
    pub content_type: Cow<'static, str>,
    /// Extra headers, e.g. `Location`.
    pub headers: Vec<(String, String)>,
    /// The finished body.
    pub body: Bytes,
}

impl From<Reply> for Answer {
    fn from(r: Reply) -> Answer {
        Answer {
            status: r.status,
            content_type: r.content_type.into(),
            headers: r.headers,
            body: Bytes::from(r.body),
        }
    }
}

/// The reply channel of one request.
type ReplyTx = oneshot::Sender<Result<Answer, UpstreamError>>;

/// A request on its way to a connection task.
#[derive(Debug)]
struct Job {
    request: EncodedRequest,
    reply: ReplyTx,
    /// The admission slot, released when the job is dropped: with its
    /// reply, or with its connection.
    permit: OwnedSemaphorePermit,
    /// When it fails with [`UpstreamError::Timeout`] if not answered, and
    /// the bound that deadline came from (for the message).
    deadline: Instant,
    timeout: Duration,
}

/// What handlers see of one connection.
#[derive(Debug, Default)]
struct Slot {
    /// The live connection's queue; `None` while disconnected. A plain mutex:
    /// it is held for a clone or a swap, never across an await.
    tx: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    /// Whether `tx` is `Some`, readable without the lock: picking a slot
    /// looks at every slot for every request.
    up: AtomicBool,
    /// Requests sent on this slot and not yet answered (for least-loaded).
    load: AtomicUsize,
    /// The current reconnect delay in milliseconds (for `Retry-After`).
    backoff_ms: AtomicU64,
}

impl Slot {
    fn sender(&self) -> Option<mpsc::UnboundedSender<Job>> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn set(&self, tx: Option<mpsc::UnboundedSender<Job>>) {
        let mut slot = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        self.up.store(tx.is_some(), Ordering::Relaxed);
        *slot = tx;
    }
}

/// The admission limit: requests in flight and waiting, counted across
/// every pool that shares it (one per worker thread). A semaphore and a
/// counter: taking a slot is an atomic operation, whichever thread takes it.
#[derive(Debug)]
pub struct Admission {
    inflight: Arc<Semaphore>,
    queued: AtomicUsize,
    max_queue: usize,
    pings: Arc<Semaphore>,
}

impl Admission {
    /// At most `max_inflight` requests forwarded at once, `max_queue` more
    /// waiting.
    pub fn new(max_inflight: usize, max_queue: usize) -> Arc<Admission> {
        Arc::new(Admission {
            inflight: Arc::new(Semaphore::new(
                max_inflight.clamp(1, Semaphore::MAX_PERMITS),
            )),
            queued: AtomicUsize::new(0),
            max_queue,
            pings: Arc::new(Semaphore::new(PINGS_IN_FLIGHT)),
        })
    }

    /// A slot at once, if one is free.
    fn try_admit(&self) -> Option<OwnedSemaphorePermit> {
        self.inflight.clone().try_acquire_owned().ok()
    }

    async fn admit(&self) -> Result<OwnedSemaphorePermit, UpstreamError> {
        if let Some(permit) = self.try_admit() {
            return Ok(permit);
        }
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.max_queue {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(UpstreamError::Overloaded);
        }
        // Leave the queue however this future ends (also when the timeout
        // drops it).
        let _queued = Decrement(&self.queued);
        self.inflight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| UpstreamError::ConnectionLost)
    }

    /// A ping's slot, if one is free.
    fn try_ping(&self) -> Option<OwnedSemaphorePermit> {
        self.pings.clone().try_acquire_owned().ok()
    }
}

/// The connection pool of one worker, and its share of the admission limit.
/// Dropping it stops the connection tasks.
#[derive(Debug)]
pub struct Upstream {
    slots: Vec<Arc<Slot>>,
    tasks: Vec<JoinHandle<()>>,
    /// Round-robin start for the least-loaded search, so ties rotate.
    next: AtomicUsize,
    admission: Arc<Admission>,
    timeout: Duration,
    /// How many slots have made their first connection attempt.
    attempted: watch::Receiver<usize>,
}

impl Upstream {
    /// Starts `connections` connection tasks towards `socket` (they connect
    /// in the background; until then requests fail fast), admitting
    /// requests through `admission`. Must be called inside a tokio runtime:
    /// the connections belong to it.
    pub fn start(
        socket: &Path,
        connections: usize,
        admission: Arc<Admission>,
        timeout: Duration,
    ) -> Upstream {
        let slots: Vec<Arc<Slot>> = (0..connections.max(1))
            .map(|_| Arc::new(Slot::default()))
            .collect();
        let (attempted_tx, attempted) = watch::channel(0);
        let attempted_tx = Arc::new(attempted_tx);
        let tasks = slots
            .iter()
            .enumerate()
            .map(|(index, slot)| {
                tokio::spawn(supervise(
                    socket.to_path_buf(),
                    index,
                    slot.clone(),
                    attempted_tx.clone(),
                ))
            })
            .collect();
        Upstream {
            slots,
            tasks,
            next: AtomicUsize::new(0),
            admission,
            timeout,
            attempted,
        }
    }

    /// Completes once every connection has been tried once, successfully or
    /// not. Accepting before that would answer the first requests with 503
    /// only because the pool had not had a chance to connect.
    pub async fn first_attempts(&self) {
        let n = self.slots.len();
        let mut attempted = self.attempted.clone();
        // An error means every supervisor is gone, so none is left to wait for.
        let _ = attempted.wait_for(|&done| done >= n).await;
    }

    /// Forwards a request and waits for its reply, within the admission
    /// limits and the request timeout (which covers the queue too, so no
    /// client waits longer than that in total).
    pub async fn call(&self, request: EncodedRequest) -> Result<Answer, UpstreamError> {
        // Fail fast before queueing: a request admitted while the server is
        // down would only wait to be refused.
        let slot = self.pick()?;
        let deadline = Instant::now() + self.timeout;
        // The usual case: admitted at once (to the slot just picked), and
        // the connection task keeps the deadline.
        if let Some(permit) = self.admission.try_admit() {
            return self
                .send_on(slot, request, permit, deadline, self.timeout)
                .await;
        }
        // One deadline for both waits, and the error says which ran out.
        // Once admitted, the connection task keeps the deadline, as above:
        // one timer per request, not two.
        let permit = match tokio::time::timeout_at(deadline, self.admission.admit()).await {
            Ok(permit) => permit?,
            Err(_) => return Err(UpstreamError::QueueTimeout(self.timeout)),
        };
        self.send(request, permit, deadline, self.timeout).await
    }

    /// Forwards a health ping past the admission queue, within its own
    /// bound and [`PINGS_IN_FLIGHT`]: pings must not queue behind a burst
    /// (a proxy that sees a busy backend as dead moves the burst onto the
    /// others).
    pub async fn ping(
        &self,
        request: EncodedRequest,
        timeout: Duration,
    ) -> Result<Answer, UpstreamError> {
        let permit = self.admission.try_ping().ok_or(UpstreamError::Overloaded)?;
        // The connection's timer keeps the deadline, earlier than those of
        // the requests ahead of it or not.
        self.send(request, permit, Instant::now() + timeout, timeout)
            .await
    }

    /// How many connections are up right now.
    pub fn connected(&self) -> usize {
        self.slots.iter().filter(|s| s.is_up()).count()
    }

    /// The least-loaded live slot, starting the search at a rotating index.
    fn pick(&self) -> Result<&Arc<Slot>, UpstreamError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.slots.len();
        (0..n)
            .map(|i| &self.slots[(start + i) % n])
            .filter(|slot| slot.is_up())
            .min_by_key(|slot| slot.load.load(Ordering::Relaxed))
            .ok_or_else(|| UpstreamError::Unavailable {
                retry_after: self.retry_after(),
            })
    }

    /// Whole seconds until the soonest reconnect attempt, at least 1.
    fn retry_after(&self) -> u64 {
        let ms = self
            .slots
            .iter()
            .map(|s| s.backoff_ms.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        ms.div_ceil(1000).max(1)
    }

    /// Hands `request` to the least-loaded connection and waits for the
    /// reply, which fails with [`UpstreamError::Timeout`] past `deadline`.
    async fn send(
        &self,
        request: EncodedRequest,
        permit: OwnedSemaphorePermit,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Answer, UpstreamError> {
        self.send_on(self.pick()?, request, permit, deadline, timeout)
            .await
    }

    /// [`Upstream::send`] on `slot`.
    async fn send_on(
        &self,
        slot: &Slot,
        request: EncodedRequest,
        permit: OwnedSemaphorePermit,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Answer, UpstreamError> {
        let Some(tx) = slot.sender() else {
            return Err(UpstreamError::Unavailable {
                retry_after: self.retry_after(),
            });
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        slot.load.fetch_add(1, Ordering::Relaxed);
        let _load = Decrement(&slot.load);
        if tx
            .send(Job {
                request,
                reply: reply_tx,
                permit,
                deadline,
                timeout,
            })
            .is_err()
        {
            // The connection task ended between `pick` and now.
            return Err(UpstreamError::ConnectionLost);
        }
        match reply_rx.await {
            Ok(result) => result,
            // The connection task dropped the sender: connection gone.
            Err(_) => Err(UpstreamError::ConnectionLost),
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Decrements a counter when dropped.
struct Decrement<'a>(&'a AtomicUsize);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps one slot connected for as long as the pool lives.
async fn supervise(
    socket: PathBuf,
    index: usize,
    slot: Arc<Slot>,
    attempted: Arc<watch::Sender<usize>>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut failures: u32 = 0;
    let mut attempted = Some(attempted);
    loop {
        let connected = match UnixStream::connect(&socket).await {
            Ok(mut stream) => match tokio::time::timeout(ATTACH_TIMEOUT, attach(&mut stream)).await
            {
                Ok(Ok(region)) => Ok((stream, region)),
                Ok(Err(e)) => Err(io::Error::new(
                    e.kind(),
                    format!("asking for a shared region: {e}"),
                )),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer to the shared-region request within {ATTACH_TIMEOUT:?}"),
                )),
            },
            Err(e) => Err(e),
        };
        match connected {
            Ok((stream, region)) => {
                if failures > 0 {
                    tracing::info!(conn = index, socket = %socket.display(), "reconnected to the mirrorlist server");
                } else {
                    tracing::debug!(conn = index, socket = %socket.display(), "connected to the mirrorlist server");
                }
                slot.backoff_ms.store(0, Ordering::Relaxed);
                let (tx, mut rx) = mpsc::unbounded_channel();
                slot.set(Some(tx));
                // Reported after the slot is published, so whoever waits in
                // `first_attempts` finds it up.
                report_first_attempt(&mut attempted);
                let (result, answered) = drive(stream, region, &mut rx).await;
                // Unpublish before `rx` is dropped, so new requests go
                // elsewhere (or fail fast) instead of into a dead queue.
                slot.set(None);
                drop(rx);
                match result {
                    Ok(()) => {
                        tracing::info!(conn = index, "the mirrorlist server closed the connection")
                    }
                    Err(e) => tracing::warn!(
                        conn = index,
                        "connection to the mirrorlist server failed: {e}"
                    ),
                }
                if answered {
                    // A server restart closes every working connection at
                    // once; try again straight away.
                    failures = 0;
                    backoff = BACKOFF_MIN;
                    continue;
                }
                // A connection that answered nothing counts as a failed
                // attempt, so a server that accepts and closes at once is
                // not hammered in a tight loop.
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(conn = index, socket = %socket.display(), "cannot connect to the mirrorlist server: {e}; retrying");
                } else {
                    tracing::debug!(
                        conn = index,
                        "reconnect failed: {e}; next try in {backoff:?}"
                    );
                }
            }
        }
        failures = failures.saturating_add(1);
        slot.backoff_ms.store(
            u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        report_first_attempt(&mut attempted);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn report_first_attempt(attempted: &mut Option<Arc<watch::Sender<usize>>>) {
    if let Some(attempted) = attempted.take() {
        attempted.send_modify(|n| *n += 1);
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum DriveError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("connection closed with {0} request(s) unanswered")]
    Eof(usize),
    #[error("{0}")]
    Protocol(String),
}

/// One request written and not yet answered.
#[derive(Debug)]
struct Pending {
    id: u32,
    /// `None` once it has timed out: its reply is still to come, and is
    /// dropped when it does.
    reply: Option<ReplyTx>,
    /// Held until the reply comes: the server still owes it.
    _permit: OwnedSemaphorePermit,
    deadline: Instant,
    timeout: Duration,
}

/// Runs one connection until it fails or the pool is dropped. `Ok(())`
/// means the server closed an idle connection (e.g. it is restarting); the
/// flag says whether any reply came back over it.
async fn drive(
    stream: UnixStream,
    region: Option<Arc<Region>>,
    rx: &mut mpsc::UnboundedReceiver<Job>,
) -> (Result<(), DriveError>, bool) {
    let mut conn = Conn {
        stream,
        region,
        wbuf: Vec::with_capacity(READ_CHUNK),
        wpos: 0,
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        pending: VecDeque::new(),
        next_id: 0,
        answered: false,
        timer: Box::pin(tokio::time::sleep_until(Instant::now())),
        timer_set: false,
    };
    let result = conn.run(rx).await;
    if let Err(DriveError::Protocol(msg)) = &result {
        for reply in conn.pending.drain(..).filter_map(|p| p.reply) {
            let _ = reply.send(Err(UpstreamError::Protocol(msg.clone())));
        }
    }
    // Any other ending drops the pending senders: ConnectionLost.
    (result, conn.answered)
}

struct Conn {
    stream: UnixStream,
    /// The shared region the server writes large bodies into, if any.
    region: Option<Arc<Region>>,
    /// Encoded frames not yet written, from `wpos` on.
    wbuf: Vec<u8>,
    wpos: usize,
    /// Bytes read and not yet parsed.
    rbuf: BytesMut,
    pending: VecDeque<Pending>,
    next_id: u32,
    /// Whether any reply has been read.
    answered: bool,
    /// Set to the earliest deadline of the waiting requests while
    /// `timer_set`.
    timer: Pin<Box<Sleep>>,
    timer_set: bool,
}

impl Conn {
    async fn run(&mut self, rx: &mut mpsc::UnboundedReceiver<Job>) -> Result<(), DriveError> {
        loop {
            let interest = if self.wpos < self.wbuf.len() {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            tokio::select! {
                // Replies first: they complete waiting clients.
                biased;
                ready = self.stream.ready(interest) => {
                    let ready = ready?;
                    if ready.is_writable() {
                        self.flush()?;
                    }
                    if (ready.is_readable() || ready.is_read_closed()) && !self.read()? {
                        // Closed cleanly between requests.
                        return Ok(());
                    }
                }
                () = &mut self.timer, if self.timer_set => self.expire(),
                job = rx.recv() => {
                    let Some(job) = job else {
                        // The pool is gone.
                        return Ok(());
                    };
                    self.enqueue(job);
                    // Everything else already waiting goes into the same write.
                    while let Ok(job) = rx.try_recv() {
                        self.enqueue(job);
                    }
                    // Optimistic: the socket is nearly always writable, so
                    // write now instead of waiting a reactor turn to be told.
                    self.flush()?;
                }
            }
        }
    }

    fn enqueue(&mut self, job: Job) {
        if job.reply.is_closed() {
            // Its client gave up (timeout) before we got to it.
            return;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        job.request.frame_into(id, &mut self.wbuf);
        // Deadlines mostly rise along the queue; a ping's shorter bound (or
        // a shorter request timeout than the ping's) may not.
        if !self.timer_set || job.deadline < self.timer.deadline() {
            self.timer.as_mut().reset(job.deadline);
            self.timer_set = true;
        }
        self.pending.push_back(Pending {
            id,
            reply: Some(job.reply),
            _permit: job.permit,
            deadline: job.deadline,
            timeout: job.timeout,
        });
    }

    /// The timer fired: fails the waiting requests whose deadline has
    /// passed and sets the timer to the earliest one still in time. The
    /// whole queue is looked at (deadlines need not rise along it), which
    /// is cheap: the timer fires about once per request timeout, and the
    /// queue is bounded by the admission limit.
    fn expire(&mut self) {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        for p in self.pending.iter_mut().filter(|p| p.reply.is_some()) {
            if p.deadline > now {
                next = Some(next.map_or(p.deadline, |n| n.min(p.deadline)));
            } else if let Some(reply) = p.reply.take() {
                let _ = reply.send(Err(UpstreamError::Timeout(p.timeout)));
            }
        }
        self.timer_set = next.is_some();
        if let Some(next) = next {
            self.timer.as_mut().reset(next);
        }
    }

    /// Writes as much of the buffer as the socket takes without blocking.
    fn flush(&mut self) -> Result<(), DriveError> {
        while self.wpos < self.wbuf.len() {
            match self.stream.try_write(&self.wbuf[self.wpos..]) {
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        Ok(())
    }

    /// One read, then every complete frame in the buffer. `Ok(false)` when
    /// the server closed the connection with nothing outstanding.
    fn read(&mut self) -> Result<bool, DriveError> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        match self.stream.try_read_buf(&mut self.rbuf) {
            Ok(0) => {
                return if self.pending.is_empty() && self.rbuf.is_empty() {
                    Ok(false)
                } else {
                    Err(DriveError::Eof(self.pending.len()))
                };
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(true);
            }
            Err(e) => return Err(e.into()),
        }
        loop {
            let (id, consumed, head) = match protocol::parse_frame(&self.rbuf) {
                Ok(Some(frame)) => (
                    frame.id,
                    frame.consumed,
                    protocol::decode_reply_head(&frame),
                ),
                Ok(None) => break,
                Err(e) => return Err(DriveError::Protocol(e.to_string())),
            };
            let Some(pending) = self.pending.pop_front() else {
                return Err(DriveError::Protocol(format!("reply {id} to no request")));
            };
            if id != pending.id {
                let msg = format!("reply id {id} where {} was expected", pending.id);
                self.pending.push_front(pending);
                return Err(DriveError::Protocol(msg));
            }
            match head {
                Ok(head) => {
                    self.answered = true;
                    let body = match head.body {
                        BodyAt::Frame(range) => {
                            // The frame leaves the buffer; the body is a
                            // view of it.
                            self.rbuf.split_to(consumed).freeze().slice(range)
                        }
                        BodyAt::Shared(at) => {
                            // Nothing of the frame is kept: step over it.
                            self.rbuf.advance(consumed);
                            let lease = self
                                .region
                                .as_ref()
                                .ok_or(protocol::FrameError::SharedBody)
                                .map_err(|e| e.to_string())
                                .and_then(|r| Lease::new(r.clone(), at).map_err(|e| e.to_string()));
                            match lease {
                                Ok(lease) => Bytes::from_owner(lease),
                                Err(msg) => {
                                    self.pending.push_front(pending);
                                    return Err(DriveError::Protocol(msg));
                                }
                            }
                        }
                    };
                    let answer = Answer {
                        status: head.status,
                        content_type: head.content_type,
                        headers: head.headers,
                        body,
                    };
                    // The client may have gone or timed out; the answer
                    // (and its block of the region) is dropped then.
                    if let Some(reply) = pending.reply {
                        let _ = reply.send(Ok(answer));
                    }
                }
                Err(e) => {
                    self.pending.push_front(pending);
                    return Err(DriveError::Protocol(e.to_string()));
                }
            }
        }
        // A large frame was announced: make room for all of it at once
        // rather than growing by doubling over many reads.
        if self.rbuf.len() >= 4 {
            let len = u32::from_le_bytes([self.rbuf[0], self.rbuf[1], self.rbuf[2], self.rbuf[3]])
                as usize;
            let need = 4 + len;
            if need > self.rbuf.capacity() {
                self.rbuf.reserve(need - self.rbuf.len());
            }
        }
        Ok(true)
    }
}

/// Asks the server for a shared region for this connection's bodies, as the
/// connection's first request. `Ok(None)`: the server declined (the reason
/// is logged) and bodies come in the frames. An error means the connection
/// is unusable.
pub async fn attach(stream: &mut UnixStream) -> io::Result<Option<Arc<Region>>> {
    let mut out = Vec::new();
    EncodedRequest::without_query(Endpoint::Attach).frame_into(ATTACH_ID, &mut out);
    stream.write_all(&out).await?;

    // Nothing else is in flight, so the next frame is the reply; the
    // descriptor comes with its first bytes.
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    let mut fd = None;
    let frame_len = loop {
        if len == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        stream.readable().await?;
        let got = stream.try_io(Interest::READABLE, || {
            shm::recv_with_fd(stream.as_fd(), &mut buf[len..])
        });
        let (n, got_fd) = match got {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        len += n;
        if got_fd.is_some() {
            fd = got_fd;
        }
        match protocol::parse_frame(&buf[..len]) {
            Ok(Some(frame)) => break frame.consumed,
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    };
    if frame_len != len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the server sent more than the reply to the shared-region request",
        ));
    }
    let frame = protocol::parse_frame(&buf[..len])
        .ok()
        .flatten()
        .expect("parsed above");
    if frame.id != ATTACH_ID {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "reply id {} to the shared-region request {ATTACH_ID}",
                frame.id
            ),
        ));
    }
    let reply = match protocol::decode_reply(&frame) {
        Ok(reply) => reply,
        Err(e) => {
            // E.g. a server of another protocol version: its requests will
            // fail with the reason; the connection itself is fine.
            tracing::warn!("no shared region: {e}");
            return Ok(None);
        }
    };
    let text = String::from_utf8_lossy(&reply.body);
    let text = text.trim_end();
    match (reply.status, fd) {
        (200, Some(fd)) => match Region::open(fd.as_fd()) {
            Ok(region) => {
                tracing::info!(bytes = region.len(), "shared region attached");
                Ok(Some(Arc::new(region)))
            }
            Err(e) => {
                tracing::warn!(
                    "cannot map the server's shared region: {e}; bodies come over the socket"
                );
                Ok(None)
            }
        },
        (200, None) => {
            tracing::warn!("the server's shared region came without its descriptor; bodies come over the socket");
            Ok(None)
        }
        (status, _) => {
            tracing::info!(
                status,
                "the server declined a shared region ({text}); bodies come over the socket"
            );
            Ok(None)
        }
    }
}
