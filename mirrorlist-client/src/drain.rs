//! Graceful shutdown of a worker's HTTP connections: on shutdown every
//! open connection finishes the request it is serving, then closes, and
//! the worker waits for the last one.
//!
//! hyper-util's `GracefulShutdown` does the same with a `watch` channel
//! that each connection polls every time it is polled: ~370 instructions
//! per request under callgrind (the channel's `Notify` takes a lock and
//! checks the waker on every poll), for an event that happens once in a
//! process's life. Here a connection reads one atomic flag per poll and
//! registers its task's waker once (again only if the task's waker
//! changes); shutdown sets the flag and wakes every registered task.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::Notify;

/// The connections of one worker, and the switch that drains them.
#[derive(Debug, Default)]
pub struct Drain {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Set once, by [`Drain::shutdown`].
    stopping: AtomicBool,
    /// Every open connection by id, with its task's waker once polled.
    open: Mutex<HashMap<u64, Option<Waker>>>,
    next_id: AtomicU64,
    /// Signalled when the last connection closes while stopping.
    last_closed: Notify,
}

impl Shared {
    fn open(&self) -> MutexGuard<'_, HashMap<u64, Option<Waker>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drain {
    /// No connections yet.
    pub fn new() -> Drain {
        Drain::default()
    }

    /// `conn`, counted until it ends and shut down gracefully (it answers
    /// what it is serving, then closes) once [`Drain::shutdown`] is called.
    pub fn watch<C: GracefulConnection>(&self, conn: C) -> Watched<C> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        self.shared.open().insert(id, None);
        Watched {
            conn: Box::pin(conn),
            shared: self.shared.clone(),
            id,
            waker: None,
            told: false,
        }
    }

    /// Open connections right now.
    pub fn count(&self) -> usize {
        self.shared.open().len()
    }

    /// Tells every connection, open now or watched later, to finish, and
    /// waits until all have ended.
    pub async fn shutdown(&self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        loop {
            // Registered before the count is read, so a connection that
            // closes in between cannot be missed.
            let closed = self.shared.last_closed.notified();
            let wakers: Vec<Waker> = {
                let open = self.shared.open();
                if open.is_empty() {
                    return;
                }
                open.values().flatten().cloned().collect()
            };
            for waker in wakers {
                waker.wake();
            }
            closed.await;
        }
    }
}

/// A connection under a [`Drain`]; see [`Drain::watch`].
#[derive(Debug)]
pub struct Watched<C> {
    conn: Pin<Box<C>>,
    shared: Arc<Shared>,
    id: u64,
    /// The waker registered for this connection.
    waker: Option<Waker>,
    /// Whether `graceful_shutdown` has been called.
    told: bool,
}

impl<C: GracefulConnection> Future for Watched<C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = &mut *self;
        if !this.told {
            if !this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                // Cloned, and the old one dropped, outside the lock: a
                // waker's own code never runs under it.
                let waker = cx.waker().clone();
                let old = this.shared.open().insert(this.id, Some(waker.clone()));
                drop(old);
                this.waker = Some(waker);
            }
            // Read after the waker is in place: a shutdown that comes
            // later wakes this task, one that came before is seen here.
            if this.shared.stopping.load(Ordering::SeqCst) {
                this.conn.as_mut().graceful_shutdown();
                this.told = true;
            }
        }
        this.conn.as_mut().poll(cx)
    }
}

impl<C> Drop for Watched<C> {
    fn drop(&mut self) {
        let (waker, last) = {
            let mut open = self.shared.open();
            (open.remove(&self.id), open.is_empty())
        };
        // The waker is dropped and the waiter told outside the lock.
        drop(waker);
        if last && self.shared.stopping.load(Ordering::SeqCst) {
            self.shared.last_closed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::sync::Semaphore;

    use super::*;

    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";

    /// Serves one in-memory connection under `drain`; each response waits
    /// for a permit of `gate`. Returns the client's end.
    fn serve(drain: &Drain, gate: &Arc<Semaphore>) -> DuplexStream {
        let (client, server) = tokio::io::duplex(1 << 16);
        let gate = gate.clone();
        let service = service_fn(move |_req| {
            let gate = gate.clone();
            async move {
                gate.acquire().await.expect("open").forget();
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                    b"hello",
                ))))
            }
        });
        let conn =
            drain.watch(http1::Builder::new().serve_connection(TokioIo::new(server), service));
        tokio::spawn(conn);
        client
    }

    /// Reads until the response's body, `hello`, has arrived.
    async fn response(client: &mut DuplexStream) -> String {
        let mut got = Vec::new();
        while !got.ends_with(b"hello") {
            let mut buf = [0u8; 512];
            let n = client.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before the response: {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(got).unwrap()
    }

    /// A hang guard, not a timing check: a connection that is never told
    /// to close would keep these tests waiting forever.
    async fn guard(test: impl Future<Output = ()>) {
        tokio::time::timeout(std::time::Duration::from_secs(60), test)
            .await
            .expect("the test hung: a connection was not shut down");
    }

    #[tokio::test]
    async fn shutdown_lets_requests_finish_and_closes_idle_connections() {
        guard(shutdown_lets_requests_finish()).await;
    }

    async fn shutdown_lets_requests_finish() {
        let drain = Arc::new(Drain::new());
        let gate = Arc::new(Semaphore::new(1));
        // An idle keep-alive connection: answered once, then waiting.
        let mut idle = serve(&drain, &gate);
        idle.write_all(REQUEST).await.unwrap();
        assert!(response(&mut idle).await.starts_with("HTTP/1.1 200"));
        // A connection whose request is held until the gate opens.
        let mut busy = serve(&drain, &gate);
        busy.write_all(REQUEST).await.unwrap();
        tokio::task::yield_now().await;
        assert_eq!(drain.count(), 2);

        let stopping = tokio::spawn({
            let drain = drain.clone();
            async move { drain.shutdown().await }
        });
        // The idle connection is closed without a request.
        let mut rest = Vec::new();
        idle.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{rest:?}");
        // The held request still gets its whole answer, marked as the
        // connection's last; shutdown waits for it.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!stopping.is_finished());
        assert_eq!(drain.count(), 1);
        gate.add_permits(1);
        let answer = response(&mut busy).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        stopping.await.unwrap();
        assert_eq!(drain.count(), 0);
        let mut rest = Vec::new();
        busy.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn a_connection_first_polled_after_shutdown_is_told_at_once() {
        guard(told_at_once()).await;
    }

    async fn told_at_once() {
        let drain = Arc::new(Drain::new());
        let gate = Arc::new(Semaphore::new(1));
        drain.shared.stopping.store(true, Ordering::SeqCst);
        let mut late = serve(&drain, &gate);
        late.write_all(REQUEST).await.unwrap();
        // Told before its first request is read: hyper closes it without
        // reading it.
        let mut rest = Vec::new();
        late.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
        drain.shutdown().await;
        assert_eq!(drain.count(), 0);
    }

    #[tokio::test]
    async fn shutdown_with_nothing_open_returns() {
        Drain::new().shutdown().await;
    }
}
