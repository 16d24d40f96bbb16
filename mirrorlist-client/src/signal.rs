//! SIGTERM and SIGINT, translated once into the shutdown future that
//! [`crate::run`] takes; nothing else in the crate knows about signals.

use std::future::Future;
use std::io;

use tokio::signal::unix::{signal, SignalKind};

/// Registers the handlers now (so a signal that arrives while starting up is
/// not lost, nor fatal) and returns a future that completes on the first
/// SIGTERM or SIGINT. Must be called inside a tokio runtime.
pub fn shutdown() -> io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("received {name}; stopping");
    })
}
