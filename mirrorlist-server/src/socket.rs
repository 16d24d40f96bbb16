//! The listening Unix socket: created with an explicit backlog, mode and
//! group; a stale socket file left by a crash is replaced, a live one is
//! never stolen; the file is removed when the server stops, unless another
//! server has replaced it by then.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another process answers on the socket.
    #[error("{0}: another server is listening on this socket; not replacing it")]
    InUse(PathBuf),
    /// Something that is not a socket is in the way.
    #[error("{0}: exists and is not a socket; not removing it")]
    NotASocket(PathBuf),
    /// The group name is unknown.
    #[error("--socket-group {0:?}: no such group")]
    UnknownGroup(String),
    /// A system call failed.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: io::Error,
    },
}

/// The socket file: removed when this guard is dropped. Kept apart from the
/// listener so the listener can be closed (refusing new connections) while
/// in-flight work finishes, and the file removed after.
///
/// Meanwhile a new server may have found the closed socket stale and bound
/// its own at the path: the file is removed only if it is still the one
/// bound here (same device and inode). The guard holds an `O_PATH`
/// descriptor of that inode, so that once unlinked by the new server its
/// number cannot be given to the new server's file.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
    _pin: fs::File,
}

impl SocketFile {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        // Another server could still replace the file between this check
        // and the unlink: a window of microseconds instead of the drain's
        // seconds.
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if file_id(&meta) == self.id => {
                let _ = fs::remove_file(&self.path);
            }
            Ok(_) => tracing::info!(
                path = %self.path.display(),
                "socket file was replaced by another server; leaving it"
            ),
            Err(_) => {}
        }
    }
}

fn file_id(meta: &fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// Resolves a group given by name or number.
pub fn resolve_group(group: &str) -> Result<nix::unistd::Gid, SocketError> {
    if let Ok(n) = group.parse::<u32>() {
        return Ok(nix::unistd::Gid::from_raw(n));
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid),
        _ => Err(SocketError::UnknownGroup(group.to_owned())),
    }
}

/// What is at the socket path before binding.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    Nothing,
    /// A socket file nobody listens on: left over from a crash.
    Stale,
}

/// Looks at `path` without changing anything: refuses a live socket and
/// anything that is not a socket.
fn probe(path: &Path) -> Result<Found, SocketError> {
    let err = |what, source| SocketError::Io {
        path: path.to_owned(),
        what,
        source,
    };
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match StdUnixStream::connect(path) {
            Ok(_) => Err(SocketError::InUse(path.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(Found::Stale),
            Err(e) => Err(err("probing existing socket", e)),
        },
        Ok(_) => Err(SocketError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Found::Nothing),
        Err(e) => Err(err("inspecting socket path", e)),
    }
}

/// Checks, before the seconds a load takes, what [`bind`] would refuse
/// after it: another server on the socket, a file in the way, a directory
/// that does not exist. Changes nothing; `bind` checks again (a server
/// may have started meanwhile).
pub fn preflight(path: &Path) -> Result<(), SocketError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(SocketError::Io {
                path: path.to_owned(),
                what: "the directory for the socket",
                source: io::Error::from(io::ErrorKind::NotADirectory),
            })
        }
        Err(source) => {
            return Err(SocketError::Io {
                path: path.to_owned(),
                what: "the directory for the socket",
                source,
            })
        }
    }
    probe(path).map(|_| ())
}

/// Creates the socket at `path`: probes and removes a stale file, binds,
/// sets `mode` and `group`, listens with `backlog`. The listener is
/// non-blocking, ready for tokio.
pub fn bind(
    path: &Path,
    backlog: i32,
    mode: u32,
    group: Option<nix::unistd::Gid>,
) -> Result<(std::os::unix::net::UnixListener, SocketFile), SocketError> {
    let err = |what, source| SocketError::Io {
        path: path.to_owned(),
        what,
        source,
    };
    if probe(path)? == Found::Stale {
        tracing::info!(path = %path.display(), "removing stale socket file");
        fs::remove_file(path).map_err(|e| err("removing stale socket", e))?;
    }

    let socket =
        Socket::new(Domain::UNIX, Type::STREAM, None).map_err(|e| err("creating socket", e))?;
    let addr = SockAddr::unix(path).map_err(|e| err("socket address", e))?;
    socket.bind(&addr).map_err(|e| err("binding", e))?;
    let pinned = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(path)
        .and_then(|pin| Ok((pin.metadata()?, pin)));
    let (meta, pin) = match pinned {
        Ok(pinned) => pinned,
        Err(e) => {
            // Without its identity the file cannot be removed safely later.
            let _ = fs::remove_file(path);
            return Err(err("opening the new socket file (O_PATH)", e));
        }
    };
    // From here on the file exists: the guard removes it on any error.
    let file = SocketFile {
        path: path.to_owned(),
        id: file_id(&meta),
        _pin: pin,
    };
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| err("setting permissions", e))?;
    if let Some(gid) = group {
        nix::unistd::chown(path, None, Some(gid))
            .map_err(|e| err("setting group", io::Error::from(e)))?;
    }
    // The kernel silently caps the backlog at net.core.somaxconn.
    socket.listen(backlog).map_err(|e| err("listening", e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| err("setting non-blocking", e))?;
    let listener = std::os::unix::net::UnixListener::from(std::os::fd::OwnedFd::from(socket));
    Ok((listener, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_socket_is_replaced_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        // A stale socket file: bound, then its listener closed without
        // removing the file.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let (_listener, live) = bind(&path, 16, 0o600, None).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        match bind(&path, 16, 0o600, None) {
            Err(SocketError::InUse(_)) => {}
            other => panic!("live socket was not protected: {other:?}"),
        }
        drop(_listener);
        drop(live);
        assert!(!path.exists(), "socket file removed on drop");
    }

    #[test]
    fn a_successors_socket_file_survives_the_guard() {
        // A stopping server's listener is closed while its guard lives on
        // (the drain); a new server takes the path over meanwhile.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let (listener, old) = bind(&path, 16, 0o600, None).unwrap();
        drop(listener);
        let (_successor, new) = bind(&path, 16, 0o600, None).unwrap();
        drop(old);
        assert!(path.exists(), "the successor's socket file was removed");
        StdUnixStream::connect(&path).expect("the successor still answers");
        drop(new);
        assert!(!path.exists(), "the successor's guard removes its own file");
    }

    #[test]
    fn other_files_are_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        fs::write(&path, b"data").unwrap();
        assert!(matches!(
            bind(&path, 16, 0o600, None),
            Err(SocketError::NotASocket(_))
        ));
        assert_eq!(fs::read(&path).unwrap(), b"data");
    }

    #[test]
    fn preflight_refuses_what_bind_would_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        preflight(&path).expect("a free path");
        // A stale socket passes and is left for bind to replace.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        preflight(&path).expect("a stale socket");
        assert!(path.exists());
        let (listener, file) = bind(&path, 16, 0o600, None).unwrap();
        assert!(matches!(preflight(&path), Err(SocketError::InUse(_))));
        drop((listener, file));
        fs::write(&path, b"data").unwrap();
        assert!(matches!(preflight(&path), Err(SocketError::NotASocket(_))));
        assert_eq!(fs::read(&path).unwrap(), b"data");
        let missing = dir.path().join("no-such-dir/s.sock");
        let e = preflight(&missing).unwrap_err().to_string();
        assert!(e.contains("the directory for the socket"), "{e}");
        let under_a_file = path.join("s.sock");
        let e = preflight(&under_a_file).unwrap_err().to_string();
        assert!(e.contains("the directory for the socket"), "{e}");
    }

    #[test]
    fn groups_resolve() {
        assert_eq!(resolve_group("0").unwrap().as_raw(), 0);
        assert_eq!(resolve_group("root").unwrap().as_raw(), 0);
        assert!(resolve_group("no-such-group-here").is_err());
    }
}
