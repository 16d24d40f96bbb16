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
//!   the front end's instructions). Requests still queued for admission
//!   have one timer per worker ([`Admission`]), and fail with
//!   [`UpstreamError::QueueTimeout`].
//!
//! # Admission
//!
//! At most `max_inflight` requests are forwarded at once; up to `max_queue`
//! more wait for a slot, and beyond that [`UpstreamError::Overloaded`] is
//! returned immediately. The limit ([`Admission`]) is one for the whole
//! process: every worker's pool takes its slots from it, and a slot freed
//! on one worker goes to another's waiting request when that one has
//! waited longer by more than [`SLACK`]. A burst of a few thousand
//! simultaneous requests (cloud instances polling on a timer) is thus
//! queued and answered, while a flood that cannot be served is turned
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

/// How much longer a request queued on another worker must have waited
/// than this worker's first before a place freed here goes to it. Within
/// a worker the queue is first come, first served; across workers, this
/// bounds how far the waits may part while a place crosses threads only
/// when that is needed to keep them so (see [`Admission`]).
pub const SLACK: Duration = Duration::from_millis(2);

/// How often a full queue may look for requests whose clients have left.
const PURGE_EVERY: Duration = Duration::from_millis(10);

/// A request and where its answer goes, before it has a place in flight.
#[derive(Debug)]
struct Ask {
    request: EncodedRequest,
    reply: ReplyTx,
    /// When it fails with [`UpstreamError::Timeout`] (or, still queued,
    /// [`UpstreamError::QueueTimeout`]) if not answered, and the bound that
    /// deadline came from (for the message).
    deadline: Instant,
    timeout: Duration,
}

impl Ask {
    /// When it was asked (every deadline is its bound after that).
    fn asked_at(&self) -> Instant {
        self.deadline - self.timeout
    }

    /// Fails it for having waited its whole bound in the queue.
    fn time_out(self) {
        let _ = self
            .reply
            .send(Err(UpstreamError::QueueTimeout(self.timeout)));
    }
}

/// A request on its way to a connection task, with its place in flight.
#[derive(Debug)]
struct Job {
    ask: Ask,
    permit: Permit,
}

/// A request's place in flight, given up when it is dropped: with its
/// reply, or with its connection.
#[derive(Debug)]
enum Permit {
    Request(Admitted),
    /// Held for its release when dropped.
    Ping {
        _held: OwnedSemaphorePermit,
    },
}

/// A place among the requests in flight. Dropped, it goes to the next
/// waiting request (of any worker) or back to the free ones.
#[derive(Debug)]
struct Admitted(Option<Arc<Admission>>);

impl Admitted {
    /// Passes this place on as a connection task of pool `here` reads a
    /// reply: the next waiting request, if it is this pool's, comes back
    /// to be written on the same connection (no wake-up, no channel);
    /// another pool's is sent to that pool.
    fn pass_on(mut self, here: usize) -> Option<Job> {
        self.0.take()?.release(Some(here))
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(admission) = self.0.take() {
            admission.release(None);
        }
    }
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
    /// Requests sent on this slot by their handlers and not yet answered
    /// (for least-loaded). A queued request handed to a connection by
    /// [`Admission`] is not counted: mostly it takes the place of one just
    /// answered on that connection.
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

/// The connections of one worker.
#[derive(Debug)]
struct Pool {
    slots: Vec<Arc<Slot>>,
    /// Round-robin start for the least-loaded search, so ties rotate.
    next: AtomicUsize,
}

impl Pool {
    /// The least-loaded live slot, starting the search at a rotating index.
    fn pick(&self) -> Option<&Arc<Slot>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.slots.len();
        (0..n)
            .map(|i| &self.slots[(start + i) % n])
            .filter(|slot| slot.is_up())
            .min_by_key(|slot| slot.load.load(Ordering::Relaxed))
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

    fn unavailable(&self) -> UpstreamError {
        UpstreamError::Unavailable {
            retry_after: self.retry_after(),
        }
    }
}

/// The admission limit: requests in flight and waiting, counted across
/// every pool that shares it (one per worker thread).
///
/// A request that finds every place taken waits in its worker's queue as
/// a job ready to be written, not as a task to be woken: a place freed by
/// a reply goes straight to the next job, which the connection task that
/// read the reply writes itself when the job is of its own worker. A
/// queued request thus costs no wake-up of its HTTP connection, no timer
/// and no trip through a channel; at 1,000 connections most requests
/// queue (BENCHMARKS.md, change 40).
///
/// Within a worker the queue is first come, first served. A place freed
/// on one worker goes to another's first request only when that one has
/// waited [`SLACK`] longer than this worker's (or this one has none): the
/// waits of the workers stay within that of each other, as with one queue,
/// and a place crosses threads (a wake-up of the other worker) only as
/// often as that needs. Each pool's sweeper fails its requests that reach
/// their deadline still queued.
#[derive(Debug)]
pub struct Admission {
    queues: Mutex<Queues>,
    /// The in-flight limit (what `free` starts at).
    places: usize,
    max_queue: usize,
    pings: Arc<Semaphore>,
}

#[derive(Debug)]
struct Queues {
    /// Places free: above 0 only while every queue is empty, since a
    /// place given up goes to a waiting request first.
    free: usize,
    /// Requests waiting, in all queues.
    waiting: usize,
    /// When a full queue was last rid of requests whose clients left.
    purged: Option<Instant>,
    /// One per pool, by its index; `None` once the pool has stopped.
    pools: Vec<Option<Waiting>>,
}

#[derive(Debug)]
struct Waiting {
    pool: Arc<Pool>,
    asks: VecDeque<Ask>,
}

/// A snapshot of [`Admission`] for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gauges {
    /// Places in flight taken (health pings not counted).
    pub in_flight: u64,
    /// The in-flight limit.
    pub max_inflight: u64,
    /// Requests waiting for a place (with those whose clients left and
    /// that no look has dropped yet).
    pub queued: u64,
    /// The queue's limit.
    pub max_queue: u64,
    /// Connections to the server up, over every pool.
    pub connections_up: u64,
    /// Connections configured, over every pool.
    pub connections: u64,
}

/// How [`Admission::enter`] took a request.
enum Entry {
    /// With a place: to be sent now.
    Admitted(Job),
    /// Waiting: its reply comes when a place has come and gone.
    Queued,
    /// The queue is full.
    Full,
}

impl Queues {
    /// Drops every waiting request whose client has gone. (An `Ask`
    /// holds no place, so dropping one under the lock releases nothing.)
    fn drop_gone(&mut self) {
        for waiting in self.pools.iter_mut().flatten() {
            let before = waiting.asks.len();
            waiting.asks.retain(|a| !a.reply.is_closed());
            self.waiting -= before - waiting.asks.len();
        }
    }

    /// The queue to take the next waiting request from when a place is
    /// freed on pool `here` (or, `None`, elsewhere): `here`'s, unless
    /// another pool's first has waited over [`SLACK`] longer; else the
    /// longest waiting.
    fn next_queue(&self, here: Option<usize>) -> Option<usize> {
        let first = |i: usize| -> Option<Instant> {
            Some(self.pools.get(i)?.as_ref()?.asks.front()?.asked_at())
        };
        let (oldest, since) = (0..self.pools.len())
            .filter_map(|i| Some((i, first(i)?)))
            .min_by_key(|&(_, at)| at)?;
        match here.and_then(|h| Some((h, first(h)?))) {
            Some((h, at)) if at <= since + SLACK => Some(h),
            _ => Some(oldest),
        }
    }
}

impl Admission {
    /// At most `max_inflight` requests forwarded at once, `max_queue` more
    /// waiting.
    pub fn new(max_inflight: usize, max_queue: usize) -> Arc<Admission> {
        Arc::new(Admission {
            queues: Mutex::new(Queues {
                free: max_inflight.max(1),
                waiting: 0,
                purged: None,
                pools: Vec::new(),
            }),
            places: max_inflight.max(1),
            max_queue,
            pings: Arc::new(Semaphore::new(PINGS_IN_FLIGHT)),
        })
    }

    /// The places taken and requests queued now, and the connections of
    /// every pool that shares this limit (for `/metrics`).
    pub fn gauges(&self) -> Gauges {
        let queues = self.lock();
        let pools = || queues.pools.iter().flatten().map(|w| &w.pool.slots);
        Gauges {
            in_flight: (self.places - queues.free) as u64,
            max_inflight: self.places as u64,
            queued: queues.waiting as u64,
            max_queue: self.max_queue as u64,
            connections_up: pools().flatten().filter(|s| s.is_up()).count() as u64,
            connections: pools().map(Vec::len).sum::<usize>() as u64,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        // Nothing panics while holding it; a poisoned lock's data is whole.
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A queue for `pool`; its index.
    fn join(&self, pool: Arc<Pool>) -> usize {
        let mut queues = self.lock();
        queues.pools.push(Some(Waiting {
            pool,
            asks: VecDeque::new(),
        }));
        queues.pools.len() - 1
    }

    /// Pool `id` has stopped: its waiting requests are dropped (their
    /// handlers see [`UpstreamError::ConnectionLost`]).
    fn leave(&self, id: usize) {
        let gone = {
            let mut queues = self.lock();
            let gone = queues.pools.get_mut(id).and_then(Option::take);
            queues.waiting -= gone.as_ref().map_or(0, |w| w.asks.len());
            gone
        };
        drop(gone);
    }

    /// A place for `ask` if one is free, else a place in pool `pool`'s queue.
    fn enter(self: &Arc<Self>, pool: usize, ask: Ask) -> Entry {
        let mut queues = self.lock();
        if queues.free > 0 {
            queues.free -= 1;
            drop(queues);
            return Entry::Admitted(Job {
                ask,
                permit: Permit::Request(Admitted(Some(self.clone()))),
            });
        }
        if queues.waiting >= self.max_queue {
            // Requests whose clients have gone wait until a place or the
            // sweeper reaches them; a full queue makes room by dropping
            // them first, so they cannot crowd out live ones. At most once
            // per PURGE_EVERY: a flood against a full queue must stay
            // cheap to refuse, and a look costs the whole queue.
            let now = Instant::now();
            if queues.purged.is_none_or(|at| now >= at + PURGE_EVERY) {
                queues.purged = Some(now);
                queues.drop_gone();
            }
            if queues.waiting >= self.max_queue {
                return Entry::Full;
            }
        }
        let Some(Some(waiting)) = queues.pools.get_mut(pool) else {
            return Entry::Full;
        };
        waiting.asks.push_back(ask);
        queues.waiting += 1;
        Entry::Queued
    }

    /// A place given up on pool `here` (or, `None`, elsewhere) goes to the
    /// next waiting request ([`Queues::next_queue`]) that still wants it:
    /// returned if it is `here`'s, sent to its own pool if not, and back
    /// to the free places if none waits. Requests whose client has gone are
    /// dropped on the way, and those past their deadline fail.
    fn release(self: Arc<Self>, here: Option<usize>) -> Option<Job> {
        let admission = self;
        loop {
            let mut queues = admission.lock();
            let Some(at) = queues.next_queue(here) else {
                queues.free += 1;
                return None;
            };
            let waiting = queues.pools[at]
                .as_mut()
                .expect("next_queue picks a live pool");
            let ask = waiting
                .asks
                .pop_front()
                .expect("next_queue picks a queue with a request");
            let pool = (Some(at) != here).then(|| waiting.pool.clone());
            queues.waiting -= 1;
            drop(queues);
            if ask.reply.is_closed() {
                continue;
            }
            if ask.deadline <= Instant::now() {
                ask.time_out();
                continue;
            }
            let Some(pool) = pool else {
                return Some(Job {
                    ask,
                    permit: Permit::Request(Admitted(Some(admission))),
                });
            };
            let Some(tx) = pool.pick().and_then(|slot| slot.sender()) else {
                // Its pool has no connection up: it fails as it would have
                // on arrival, and the place goes on to the next.
                let _ = ask.reply.send(Err(pool.unavailable()));
                continue;
            };
            // Should that connection have ended since, the job comes back
            // and is dropped, which passes the place on once more.
            let _ = tx.send(Job {
                ask,
                permit: Permit::Request(Admitted(Some(admission))),
            });
            return None;
        }
    }

    /// Fails pool `id`'s requests still queued at their deadline (`now`
    /// or before); returns the next deadline in its queue, if any.
    fn expire(&self, id: usize, now: Instant) -> Option<Instant> {
        let mut late = Vec::new();
        let next = {
            let mut queues = self.lock();
            let waiting = queues.pools.get_mut(id)?.as_mut()?;
            let before = waiting.asks.len();
            while let Some(first) = waiting.asks.front() {
                if first.reply.is_closed() {
                    waiting.asks.pop_front();
                } else if first.deadline <= now {
                    late.extend(waiting.asks.pop_front());
                } else {
                    break;
                }
            }
            let next = waiting.asks.front().map(|a| a.deadline);
            queues.waiting -= before - waiting.asks.len();
            next
        };
        late.into_iter().for_each(Ask::time_out);
        next
    }

    /// A ping's slot, if one is free.
    fn try_ping(&self) -> Option<OwnedSemaphorePermit> {
        self.pings.clone().try_acquire_owned().ok()
    }
}

/// Fails pool `id`'s queued requests at their deadlines: one timer per
/// pool, not one per queued request. The queue is in order of deadline
/// (every request of a pool has the same bound), so the first one's is
/// the next to wait for; with the queue empty, any request queued later
/// has a deadline at least `timeout` after now, so that is how long the
/// sweeper may sleep without looking.
async fn sweep(admission: Arc<Admission>, id: usize, timeout: Duration) {
    let mut wake = Instant::now() + timeout;
    loop {
        tokio::time::sleep_until(wake).await;
        let now = Instant::now();
        wake = admission.expire(id, now).unwrap_or(now + timeout);
    }
}

/// The connection pool of one worker, and its share of the admission limit.
/// Dropping it stops the connection tasks.
#[derive(Debug)]
pub struct Upstream {
    pool: Arc<Pool>,
    /// Its queue's index in `admission`.
    id: usize,
    tasks: Vec<JoinHandle<()>>,
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
        let pool = Arc::new(Pool {
            slots: (0..connections.max(1))
                .map(|_| Arc::new(Slot::default()))
                .collect(),
            next: AtomicUsize::new(0),
        });
        let id = admission.join(pool.clone());
        let (attempted_tx, attempted) = watch::channel(0);
        let attempted_tx = Arc::new(attempted_tx);
        let mut tasks: Vec<JoinHandle<()>> = pool
            .slots
            .iter()
            .enumerate()
            .map(|(index, slot)| {
                tokio::spawn(supervise(
                    socket.to_path_buf(),
                    index,
                    id,
                    slot.clone(),
                    attempted_tx.clone(),
                ))
            })
            .collect();
        tasks.push(tokio::spawn(sweep(admission.clone(), id, timeout)));
        Upstream {
            pool,
            id,
            tasks,
            admission,
            timeout,
            attempted,
        }
    }

    /// Completes once every connection has been tried once, successfully or
    /// not. Accepting before that would answer the first requests with 503
    /// only because the pool had not had a chance to connect.
    pub async fn first_attempts(&self) {
        let n = self.pool.slots.len();
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
        let slot = self.pool.pick().ok_or_else(|| self.pool.unavailable())?;
        let (reply, answer) = oneshot::channel();
        let ask = Ask {
            request,
            reply,
            deadline: Instant::now() + self.timeout,
            timeout: self.timeout,
        };
        match self.admission.enter(self.id, ask) {
            // The usual case: admitted at once, to the slot just picked.
            Entry::Admitted(job) => self.send_on(slot, job, answer).await,
            // A connection task sends it when a place comes free, or the
            // sweeper fails it at its deadline.
            Entry::Queued => receive(answer).await,
            Entry::Full => Err(UpstreamError::Overloaded),
        }
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
        let slot = self.pool.pick().ok_or_else(|| self.pool.unavailable())?;
        let (reply, answer) = oneshot::channel();
        // The connection's timer keeps the deadline, earlier than those of
        // the requests ahead of it or not.
        let job = Job {
            ask: Ask {
                request,
                reply,
                deadline: Instant::now() + timeout,
                timeout,
            },
            permit: Permit::Ping { _held: permit },
        };
        self.send_on(slot, job, answer).await
    }

    /// How many connections are up right now.
    pub fn connected(&self) -> usize {
        self.pool.slots.iter().filter(|s| s.is_up()).count()
    }

    /// Hands `job` to `slot`'s connection and waits for the reply, which
    /// fails with [`UpstreamError::Timeout`] past its deadline.
    async fn send_on(
        &self,
        slot: &Slot,
        job: Job,
        answer: oneshot::Receiver<Result<Answer, UpstreamError>>,
    ) -> Result<Answer, UpstreamError> {
        let Some(tx) = slot.sender() else {
            return Err(self.pool.unavailable());
        };
        slot.load.fetch_add(1, Ordering::Relaxed);
        let _load = Decrement(&slot.load);
        if tx.send(job).is_err() {
            // The connection task ended between `pick` and now.
            return Err(UpstreamError::ConnectionLost);
        }
        receive(answer).await
    }
}

/// The reply, once it comes.
async fn receive(
    answer: oneshot::Receiver<Result<Answer, UpstreamError>>,
) -> Result<Answer, UpstreamError> {
    match answer.await {
        Ok(result) => result,
        // The sender was dropped: its connection (or its pool) is gone.
        Err(_) => Err(UpstreamError::ConnectionLost),
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.admission.leave(self.id);
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
    pool: usize,
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
                let (result, answered) = drive(stream, region, pool, &slot, &mut rx).await;
                // `drive` has unpublished the slot, so new requests go
                // elsewhere (or fail fast) instead of into a dead queue.
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
    permit: Permit,
    deadline: Instant,
    timeout: Duration,
}

/// Runs one connection until it fails or the pool is dropped. `Ok(())`
/// means the server closed an idle connection (e.g. it is restarting); the
/// flag says whether any reply came back over it.
async fn drive(
    stream: UnixStream,
    region: Option<Arc<Region>>,
    pool: usize,
    slot: &Slot,
    rx: &mut mpsc::UnboundedReceiver<Job>,
) -> (Result<(), DriveError>, bool) {
    let mut conn = Conn {
        stream,
        region,
        pool,
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
    // Unpublished before the places of the pending requests are given up
    // (below, or as `conn` is dropped): else each would hand a queued
    // request to this dead connection.
    slot.set(None);
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
    /// The index of its pool's queue in the admission limit.
    pool: usize,
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
                    // Queued requests that took the places of the replies
                    // just read: written now, as below.
                    self.flush()?;
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
        let Job { ask, permit } = job;
        if ask.reply.is_closed() {
            // Its client gave up (timeout) before we got to it.
            return;
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        ask.request.frame_into(id, &mut self.wbuf);
        // Deadlines mostly rise along the queue; a ping's shorter bound (or
        // a shorter request timeout than the ping's) may not.
        if !self.timer_set || ask.deadline < self.timer.deadline() {
            self.timer.as_mut().reset(ask.deadline);
            self.timer_set = true;
        }
        self.pending.push_back(Pending {
            id,
            reply: Some(ask.reply),
            permit,
            deadline: ask.deadline,
            timeout: ask.timeout,
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
                    // Its place goes to the next queued request; if that
                    // is this worker's, it is written on this connection.
                    if let Permit::Request(place) = pending.permit {
                        if let Some(next) = place.pass_on(self.pool) {
                            self.enqueue(next);
                        }
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

#[cfg(test)]
mod tests {
    use super::*;

    type AnswerRx = oneshot::Receiver<Result<Answer, UpstreamError>>;

    const BOUND: Duration = Duration::from_secs(5);

    /// A request asked `ago` before `now`, with [`BOUND`].
    fn ask(now: Instant, ago: Duration) -> (Ask, AnswerRx) {
        let (reply, rx) = oneshot::channel();
        let ask = Ask {
            request: EncodedRequest::without_query(Endpoint::Mirrorlist),
            reply,
            deadline: now - ago + BOUND,
            timeout: BOUND,
        };
        (ask, rx)
    }

    /// A pool of one connection; with `up`, its queue is returned.
    fn pool(up: bool) -> (Arc<Pool>, Option<mpsc::UnboundedReceiver<Job>>) {
        let slot = Arc::new(Slot::default());
        let rx = up.then(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            slot.set(Some(tx));
            rx
        });
        let pool = Arc::new(Pool {
            slots: vec![slot],
            next: AtomicUsize::new(0),
        });
        (pool, rx)
    }

    /// An admission limit of `places`, all taken, with two pools and room
    /// for `max_queue` waiting.
    fn full(places: usize, max_queue: usize) -> (Arc<Admission>, Vec<Admitted>, [usize; 2]) {
        let admission = Admission::new(places, max_queue);
        let ids = [admission.join(pool(true).0), admission.join(pool(true).0)];
        let taken = (0..places).map(|_| admit(&admission, ids[0])).collect();
        (admission, taken, ids)
    }

    /// A free place, taken by a request of `pool`.
    fn admit(admission: &Arc<Admission>, pool: usize) -> Admitted {
        let (a, _) = ask(Instant::now(), Duration::ZERO);
        match admission.enter(pool, a) {
            Entry::Admitted(Job {
                permit: Permit::Request(place),
                ..
            }) => place,
            _ => panic!("a free place"),
        }
    }

    fn queue(admission: &Arc<Admission>, pool: usize, a: Ask) {
        assert!(matches!(admission.enter(pool, a), Entry::Queued));
    }

    /// Whether `job` is the request `rx` waits on: an answer sent through
    /// it arrives there. Its place is kept.
    fn is_for(job: Job, rx: &mut AnswerRx) -> Permit {
        let Job { ask, permit } = job;
        let _ = ask.reply.send(Err(UpstreamError::Overloaded));
        assert_eq!(rx.try_recv(), Ok(Err(UpstreamError::Overloaded)));
        permit
    }

    #[test]
    fn a_place_goes_to_this_workers_first_request_unless_another_waited_longer_by_the_slack() {
        let now = Instant::now();
        let mut queues = Queues {
            free: 0,
            waiting: 0,
            purged: None,
            pools: Vec::new(),
        };
        for ago in [Duration::from_millis(10), Duration::from_millis(10) + SLACK] {
            let (a, _) = ask(now, ago);
            queues.pools.push(Some(Waiting {
                pool: pool(false).0,
                asks: VecDeque::from([a]),
            }));
        }
        // Pool 1's first waited exactly the slack longer: pool 0 keeps it.
        assert_eq!(queues.next_queue(Some(0)), Some(0));
        assert_eq!(queues.next_queue(Some(1)), Some(1));
        // Freed elsewhere (or past the slack): the longest waiting.
        assert_eq!(queues.next_queue(None), Some(1));
        queues.pools[1].as_mut().unwrap().asks[0].deadline -= Duration::from_micros(1);
        assert_eq!(queues.next_queue(Some(0)), Some(1));
        // A pool with nothing waiting takes from the others; a stopped one
        // is skipped.
        queues.pools[0].as_mut().unwrap().asks.clear();
        assert_eq!(queues.next_queue(Some(0)), Some(1));
        queues.pools[1] = None;
        assert_eq!(queues.next_queue(Some(0)), None);
        assert_eq!(queues.next_queue(None), None);
    }

    #[test]
    fn a_freed_place_goes_to_the_waiting_request_of_the_same_worker_in_order() {
        let (admission, mut taken, [here, _]) = full(1, 100);
        let now = Instant::now();
        let (first, mut first_rx) = ask(now, Duration::from_millis(2));
        let (second, mut second_rx) = ask(now, Duration::from_millis(1));
        queue(&admission, here, first);
        queue(&admission, here, second);
        let job = taken.pop().unwrap().pass_on(here).expect("handed over");
        let Permit::Request(place) = is_for(job, &mut first_rx) else {
            panic!("a request's place");
        };
        let job = place.pass_on(here).expect("handed over");
        drop(is_for(job, &mut second_rx));
        // Nobody waits now: the place is free again.
        assert_eq!(admission.lock().free, 1);
        assert_eq!(admission.lock().waiting, 0);
    }

    #[test]
    fn a_place_crosses_to_another_worker_whose_request_waited_longer() {
        let admission = Admission::new(1, 100);
        let (here_pool, here_rx) = pool(true);
        let (there_pool, there_rx) = pool(true);
        let here = admission.join(here_pool);
        let there = admission.join(there_pool);
        let place = admit(&admission, here);
        let now = Instant::now();
        let (old, mut old_rx) = ask(now, SLACK * 3);
        let (young, _young_rx) = ask(now, Duration::ZERO);
        queue(&admission, there, old);
        queue(&admission, here, young);
        // Not handed back to this connection: sent to the other pool's.
        assert!(place.pass_on(here).is_none());
        let mut there_rx = there_rx.unwrap();
        let job = there_rx.try_recv().expect("sent to the other worker");
        let place = is_for(job, &mut old_rx);
        assert_eq!(admission.lock().waiting, 1);
        // Given up there, with nothing from there waiting, it comes to the
        // request here.
        drop(place);
        assert!(here_rx.unwrap().try_recv().is_ok());
        assert_eq!(admission.lock().waiting, 0);
    }

    #[test]
    fn requests_gone_or_late_are_passed_over_and_a_pool_without_a_connection_fails_its_own() {
        let admission = Admission::new(1, 100);
        let (down, _) = pool(false);
        let (up, _up_queue) = pool(true);
        let down = admission.join(down);
        let here = admission.join(up);
        let place = admit(&admission, here);
        let now = Instant::now();
        // Oldest first: one whose client left, one past its deadline, one
        // on a pool with no connection, then this pool's own.
        let (gone, gone_rx) = ask(now, BOUND * 4);
        drop(gone_rx);
        let (late, mut late_rx) = ask(now, BOUND * 3);
        let (stranded, mut stranded_rx) = ask(now, BOUND / 2);
        let (own, mut own_rx) = ask(now, Duration::ZERO);
        queue(&admission, here, gone);
        queue(&admission, here, late);
        queue(&admission, down, stranded);
        queue(&admission, here, own);
        let job = place.pass_on(here).expect("this pool's request");
        drop(is_for(job, &mut own_rx));
        assert_eq!(
            late_rx.try_recv().unwrap(),
            Err(UpstreamError::QueueTimeout(BOUND))
        );
        assert!(matches!(
            stranded_rx.try_recv().unwrap(),
            Err(UpstreamError::Unavailable { .. })
        ));
        assert_eq!(admission.lock().waiting, 0);
    }

    #[test]
    fn the_sweep_fails_queued_requests_at_their_deadline_and_names_the_next() {
        let (admission, _taken, [here, other]) = full(1, 100);
        let now = Instant::now();
        let (late, mut late_rx) = ask(now, BOUND);
        let (early, mut early_rx) = ask(now, BOUND / 2);
        let (elsewhere, mut elsewhere_rx) = ask(now, BOUND * 2);
        queue(&admission, here, late);
        queue(&admission, here, early);
        queue(&admission, other, elsewhere);
        assert_eq!(admission.expire(here, now), Some(now + BOUND / 2));
        assert_eq!(
            late_rx.try_recv().unwrap(),
            Err(UpstreamError::QueueTimeout(BOUND))
        );
        // The one still in time, and the other pool's, stay queued.
        assert!(early_rx.try_recv().is_err());
        assert!(elsewhere_rx.try_recv().is_err());
        assert_eq!(admission.lock().waiting, 2);
        assert_eq!(admission.expire(here, now + BOUND), None);
        assert_eq!(admission.lock().waiting, 1);
    }

    #[test]
    fn requests_whose_clients_left_do_not_hold_places_in_a_full_queue() {
        let (admission, _taken, [here, other]) = full(1, 2);
        let (gone, gone_rx) = ask(Instant::now(), Duration::ZERO);
        let (live, mut live_rx) = ask(Instant::now(), Duration::ZERO);
        queue(&admission, here, gone);
        queue(&admission, other, live);
        drop(gone_rx);
        // Full by count, but one of the two has gone: room is made.
        let (new, _new_rx) = ask(Instant::now(), Duration::ZERO);
        queue(&admission, here, new);
        assert_eq!(admission.lock().waiting, 2);
        assert!(live_rx.try_recv().is_err(), "the live one still waits");
        let (more, _) = ask(Instant::now(), Duration::ZERO);
        assert!(matches!(admission.enter(here, more), Entry::Full));
    }

    #[test]
    fn the_sweep_also_drops_requests_whose_clients_left() {
        let (admission, _taken, [here, _]) = full(1, 100);
        let now = Instant::now();
        let (gone, gone_rx) = ask(now, Duration::ZERO);
        let (live, _live_rx) = ask(now, Duration::ZERO);
        queue(&admission, here, gone);
        queue(&admission, here, live);
        drop(gone_rx);
        // Neither is late; the one in front has gone and is dropped.
        assert_eq!(admission.expire(here, now), Some(now + BOUND));
        assert_eq!(admission.lock().waiting, 1);
    }

    #[test]
    fn a_full_queue_refuses_and_a_stopped_pool_drops_its_queue() {
        let admission = Admission::new(1, 2);
        let here = admission.join(pool(true).0);
        let (a, _) = ask(Instant::now(), Duration::ZERO);
        let _place = admission.enter(here, a);
        let (first, mut first_rx) = ask(Instant::now(), Duration::ZERO);
        let (second, _second_rx) = ask(Instant::now(), Duration::ZERO);
        queue(&admission, here, first);
        queue(&admission, here, second);
        let (third, _) = ask(Instant::now(), Duration::ZERO);
        assert!(matches!(admission.enter(here, third), Entry::Full));
        admission.leave(here);
        assert_eq!(admission.lock().waiting, 0);
        assert!(matches!(
            first_rx.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
    }
}
