//! Telling a running server to load the new cache: SIGHUP to the pid in its
//! pidfile.

use std::path::Path;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::ReloadError;

/// Reads the pid from `pidfile` and sends it SIGHUP.
pub fn send_sighup(pidfile: &Path) -> Result<i32, ReloadError> {
    let text = std::fs::read_to_string(pidfile).map_err(|source| ReloadError::Read {
        path: pidfile.to_owned(),
        source,
    })?;
    let pid = parse_pid(&text).ok_or_else(|| ReloadError::Garbled {
        path: pidfile.to_owned(),
        content: text.trim().chars().take(40).collect(),
    })?;
    kill(Pid::from_raw(pid), Signal::SIGHUP).map_err(|errno| ReloadError::Signal {
        path: pidfile.to_owned(),
        pid,
        errno,
    })?;
    Ok(pid)
}

/// A positive pid, alone on the first line. Zero and negative numbers are
/// refused: kill(2) would signal a whole process group.
fn parse_pid(text: &str) -> Option<i32> {
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    (pid > 0).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_parsing() {
        assert_eq!(parse_pid("123\n"), Some(123));
        assert_eq!(parse_pid(" 42 "), Some(42));
        assert_eq!(parse_pid("0"), None);
        assert_eq!(parse_pid("-1"), None);
        assert_eq!(parse_pid("abc"), None);
        assert_eq!(parse_pid(""), None);
    }

    #[test]
    fn garbled_and_missing_pidfiles_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.pid");
        assert!(matches!(
            send_sighup(&missing),
            Err(ReloadError::Read { .. })
        ));
        let garbled = dir.path().join("bad.pid");
        std::fs::write(&garbled, "not a pid\n").unwrap();
        let err = send_sighup(&garbled).unwrap_err();
        assert!(err.to_string().contains("not a pid"), "{err}");
    }
}
