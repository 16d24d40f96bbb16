//! From parsed flags to a running server: load the data, bind the socket,
//! write the pidfile, translate signals, run until told to stop.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::Args;
use crate::server::{self, LoadInfo};
use crate::socket;

/// Removes the pidfile when the server stops, unless it no longer holds
/// this process's pid: a server started during this one's drain (which
/// found the socket closed) has written its own, and `--reload-pidfile`
/// must keep finding it.
struct Pidfile {
    path: PathBuf,
    contents: String,
}

impl Pidfile {
    fn write(path: &Path) -> anyhow::Result<Pidfile> {
        Pidfile::write_pid(path, std::process::id())
    }

    fn write_pid(path: &Path, pid: u32) -> anyhow::Result<Pidfile> {
        let contents = format!("{pid}\n");
        mirrorlist_core::cachefile::write_bytes_atomic(path, contents.as_bytes())
            .with_context(|| format!("writing pidfile {}", path.display()))?;
        Ok(Pidfile {
            path: path.to_owned(),
            contents,
        })
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        match fs::read_to_string(&self.path) {
            Ok(now) if now == self.contents => {
                let _ = fs::remove_file(&self.path);
            }
            Ok(_) => tracing::info!(
                path = %self.path.display(),
                "pidfile now names another process; leaving it"
            ),
            Err(_) => {}
        }
    }
}

fn describe(info: &LoadInfo) -> String {
    format!(
        "cache built at {} (unix), {}; loaded in {} ms; GeoIP {}; ASN table {}",
        info.built_at,
        info.summary,
        info.took.as_millis(),
        if info.geoip { "on" } else { "off" },
        if info.asn { "on" } else { "off" },
    )
}

fn raise_fd_limit() {
    match mirrorlist_core::limits::raise_fd_limit() {
        Ok(Some((from, to))) => tracing::debug!(from, to, "raised the open-file limit"),
        Ok(None) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
}

/// Runs the server as the flags say. Returns when it has stopped.
pub fn start(args: Args) -> anyhow::Result<()> {
    let config = args.config();
    if args.check {
        let (_, info) = server::load_state(&config.sources)?;
        println!("ok: {}", describe(&info));
        return Ok(());
    }
    // Before the load, which takes seconds at Fedora scale: until the
    // handlers are in, SIGHUP and SIGUSR1 (sent by a cache build or
    // logrotate at a bad moment) kill the process, their default action.
    // A signal that arrives during the load waits in the channel: a SIGHUP
    // then makes one more load as soon as the server runs (the cache may
    // have been replaced after this load opened it), a SIGTERM stops the
    // server as soon as it runs.
    let controls = server::spawn_signal_thread().context("installing signal handlers")?;
    // What the socket needs is checked before the load too, so a wrong
    // flag or a server already running is reported at once, not after it.
    let socket_path = args.socket.as_deref().context("--socket is required")?;
    let group = args
        .socket_group
        .as_deref()
        .map(socket::resolve_group)
        .transpose()?;
    socket::preflight(socket_path)?;
    tracing::info!(cache = %config.sources.cache.display(), "loading");
    let (state, info) = server::load_state(&config.sources)?;
    tracing::info!("{}", describe(&info));
    if !info.geoip {
        tracing::warn!("no --geoip database: answering without the country and continent tiers");
    }
    raise_fd_limit();
    let (listener, socket_file) = socket::bind(socket_path, args.backlog, args.socket_mode, group)?;
    let _pidfile = args.pidfile.as_deref().map(Pidfile::write).transpose()?;
    tracing::info!(
        socket = %socket_file.path().display(),
        backlog = args.backlog,
        "listening"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let served = runtime.block_on(async {
        let listener =
            tokio::net::UnixListener::from_std(listener).context("registering the socket")?;
        server::run(config, listener, state, controls).await
    });
    // A reload in progress runs on a blocking thread, which aborting its
    // task does not stop and dropping the runtime would wait for: the
    // seconds a load takes, or for ever on a hung file system. `run` has
    // drained the connections and flushed the log; the load is abandoned.
    runtime.shutdown_background();
    served?;
    drop(socket_file);
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pidfile_is_removed_only_while_it_holds_our_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.pid");
        let ours = Pidfile::write(&path).unwrap();
        let written = fs::read_to_string(&path).unwrap();
        assert_eq!(written, format!("{}\n", std::process::id()));
        drop(ours);
        assert!(!path.exists(), "our own pidfile is removed");

        // A successor rewrote it during our drain.
        let ours = Pidfile::write(&path).unwrap();
        let successor = Pidfile::write_pid(&path, std::process::id() + 1).unwrap();
        drop(ours);
        let left = fs::read_to_string(&path).expect("the successor's pidfile survives");
        assert_eq!(left, format!("{}\n", std::process::id() + 1));
        drop(successor);
        assert!(!path.exists());
    }
}
