//! Integration tests of the front end: real HTTP over TCP on 127.0.0.1, a
//! fake server speaking the real frame protocol on a real Unix socket.
//!
//! Nothing here waits for time to pass: held replies, counters the fake
//! publishes and completion of requests are the synchronisation. The only
//! clock is [`guard`], which turns a hang into a failure.

mod ask;
mod client;
mod fake;
mod http;
mod metrics;
mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mirrorlist_client::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A temporary directory holding the server socket path.
#[derive(Debug)]
pub struct Dir {
    _dir: tempfile::TempDir,
    pub socket: PathBuf,
}

pub fn dir() -> Dir {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("mirrorlist.sock");
    Dir { _dir: dir, socket }
}

/// A configuration whose timeouts never fire during a test, so every
/// outcome comes from what the test arranged.
pub fn config(dir: &Dir) -> Config {
    Config {
        socket: dir.socket.clone(),
        request_timeout: Duration::from_secs(600),
        health_timeout: Duration::from_secs(600),
        ..Config::default()
    }
}

/// The front end, running `mirrorlist_client::run` on a port of its own.
#[derive(Debug)]
pub struct Front {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Front {
    pub async fn start(config: Config) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(mirrorlist_client::run(config, vec![listener], async move {
            let _ = stopped.await;
        }));
        Front {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Triggers shutdown; the returned handle completes when `run` returns.
    pub fn shutdown(mut self) -> JoinHandle<anyhow::Result<()>> {
        let _ = self.stop.take().expect("running").send(());
        self.task
    }
}

/// Runs a test body, failing instead of hanging if it never completes.
pub async fn guard<F: Future>(body: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), body)
        .await
        .expect("test did not finish: something hangs")
}
