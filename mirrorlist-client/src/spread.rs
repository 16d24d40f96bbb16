//! Keeps the HTTP connections spread evenly over the workers.
//!
//! Every worker accepts on the same listening sockets, and whichever is
//! awake takes what is waiting. Left at that, connections opened together
//! land unevenly: measured on two CPUs, wrk's 100 connections ended up 96
//! to 4 in one run and 21 to 81 in another, so one thread served nearly
//! everything while the other idled, and at 1,000 connections (379 to 621,
//! say) the clients of the busier worker waited longest, which is what a
//! p99 measures. So a worker that accepts a connection while it already
//! holds more than one connection above the least-loaded worker hands it
//! over, through that worker's channel, before reading from it. With the counts even, the
//! usual case, a connection stays where it was accepted and this costs two
//! atomic operations.
//!
//! A worker's count includes connections handed to it and not yet picked
//! up, so a burst accepted by one worker is spread at once instead of all
//! going to whoever looked least loaded first.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

/// An accepted connection on its way to another worker.
pub type Handed = (std::net::TcpStream, SocketAddr);

/// How far above the least-loaded worker a worker may be and still keep
/// what it accepts: one, so that two workers taking turns at accepting do
/// not hand each other every other connection.
const SLACK: usize = 1;

/// The workers' connection counts and the channels to hand connections on.
#[derive(Debug)]
pub struct Spread {
    live: Box<[AtomicUsize]>,
    to: Box<[mpsc::UnboundedSender<Handed>]>,
}

impl Spread {
    /// A spread over `workers` workers (at least one), with the receiving
    /// end of each worker's channel, in worker order.
    pub fn new(workers: usize) -> (Arc<Spread>, Vec<mpsc::UnboundedReceiver<Handed>>) {
        let (to, from): (Vec<_>, Vec<_>) = (0..workers.max(1))
            .map(|_| mpsc::unbounded_channel())
            .unzip();
        let live = to.iter().map(|_| AtomicUsize::new(0)).collect();
        let spread = Spread {
            live,
            to: to.into_boxed_slice(),
        };
        (Arc::new(spread), from)
    }

    /// The worker that should serve a connection `worker` has just
    /// accepted, counted as that worker's from now on: `worker` itself
    /// unless it already holds more than one connection above the
    /// least-loaded one.
    pub fn assign(&self, worker: usize) -> usize {
        let mine = self.live[worker].load(Ordering::Relaxed);
        let (least, fewest) = self
            .live
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .enumerate()
            .min_by_key(|&(_, count)| count)
            .expect("at least one worker");
        let to = if mine > fewest + SLACK { least } else { worker };
        self.live[to].fetch_add(1, Ordering::Relaxed);
        to
    }

    /// Sends `conn` to worker `to` (as chosen by [`Spread::assign`]). If
    /// that worker has stopped, the connection comes back, counted as
    /// `from`'s, for `from` to serve.
    pub fn hand(&self, from: usize, to: usize, conn: Handed) -> Result<(), Handed> {
        self.to[to].send(conn).map_err(|back| {
            self.moved(to, from);
            back.0
        })
    }

    /// A connection counted as `worker`'s has ended (or never started).
    pub fn left(&self, worker: usize) {
        self.live[worker].fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections counted as `worker`'s right now.
    pub fn count(&self, worker: usize) -> usize {
        self.live[worker].load(Ordering::Relaxed)
    }

    fn moved(&self, from: usize, to: usize) {
        self.live[to].fetch_add(1, Ordering::Relaxed);
        self.left(from);
    }
}

/// Counts a connection as its worker's until dropped (when the connection
/// task ends).
#[derive(Debug)]
pub struct Counted {
    spread: Arc<Spread>,
    worker: usize,
}

impl Counted {
    /// Takes over the count [`Spread::assign`] made for `worker`.
    pub fn new(spread: Arc<Spread>, worker: usize) -> Counted {
        Counted { spread, worker }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.spread.left(self.worker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected pair's server side, as `accept` would give it.
    fn conn(listener: &std::net::TcpListener) -> (Handed, std::net::TcpStream) {
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (listener.accept().unwrap(), client)
    }

    #[test]
    fn a_burst_accepted_by_one_worker_is_shared_out() {
        let (spread, _from) = Spread::new(3);
        let served: Vec<usize> = (0..30).map(|_| spread.assign(0)).collect();
        // It keeps what it accepts while it is at most one above the fewest.
        assert_eq!(&served[..4], &[0, 0, 1, 2]);
        let counts: Vec<usize> = (0..3).map(|w| spread.count(w)).collect();
        assert_eq!(counts.iter().sum::<usize>(), 30);
        assert!(
            counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 2,
            "{counts:?}"
        );
    }

    #[test]
    fn even_counts_keep_connections_where_they_were_accepted() {
        let (spread, _from) = Spread::new(2);
        for _ in 0..10 {
            spread.assign(0);
            spread.assign(1);
        }
        assert_eq!(spread.assign(1), 1, "level");
        assert_eq!(spread.assign(1), 1, "one above is within the slack");
        assert_eq!(spread.assign(1), 0, "two above is not");
        assert_eq!((spread.count(0), spread.count(1)), (11, 12));
        spread.left(0);
        spread.left(0);
        assert_eq!(spread.assign(1), 0);
        assert_eq!((spread.count(0), spread.count(1)), (10, 12));
    }

    #[test]
    fn a_handed_connection_arrives_and_a_refused_one_comes_back() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (spread, mut from) = Spread::new(2);
        let ((stream, peer), _client) = conn(&listener);
        spread.assign(1);
        spread.assign(1);
        let to = spread.assign(1);
        assert_eq!(to, 0);
        spread.hand(1, to, (stream, peer)).unwrap();
        let (got, got_peer) = from[0].try_recv().expect("handed to worker 0");
        assert_eq!(got_peer, peer);
        assert_eq!(got.peer_addr().unwrap(), peer);

        // Worker 0 has stopped: the next one comes back to worker 1.
        drop(from.remove(0));
        let ((stream, peer), _client) = conn(&listener);
        let before = (spread.count(0), spread.count(1));
        let back = spread.hand(1, 0, (stream, peer)).unwrap_err();
        assert_eq!(back.1, peer);
        assert_eq!(
            (spread.count(0), spread.count(1)),
            (before.0 - 1, before.1 + 1)
        );
    }

    #[test]
    fn counted_connections_leave_when_dropped() {
        let (spread, _from) = Spread::new(2);
        let to = spread.assign(0);
        let counted = Counted::new(spread.clone(), to);
        assert_eq!(spread.count(to), 1);
        drop(counted);
        assert_eq!(spread.count(to), 0);
    }
}
