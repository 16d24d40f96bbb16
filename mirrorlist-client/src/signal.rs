//! SIGTERM and SIGINT, translated once into the shutdown future that
//! [`crate::run`] takes; nothing else in the crate knows about signals.

use std::future::Future;
use std::io;

use tokio::signal::unix::{signal, SignalKind};

/// Exit status when a second signal cuts the drain short: the requests
/// still open were not answered.
pub const FORCED_EXIT: i32 = 1;

/// Registers the handlers now (so a signal that arrives while starting up is
/// not lost, nor fatal) and returns a future that completes on the first
/// SIGTERM or SIGINT. Must be called inside a tokio runtime.
///
/// A second SIGTERM or SIGINT during the drain (an operator's second
/// Ctrl-C) exits at once, without waiting for open connections.
pub fn shutdown() -> io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!("received {name}; stopping");
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::warn!("received {name} again; exiting without waiting for open connections");
            std::process::exit(FORCED_EXIT);
        });
    })
}
