//! Process limits both servers set at start.

/// Raises the soft open-file limit to the hard limit, returning the
/// `(old, new)` soft limits when it changed. Every connection is a
/// descriptor, and a burst of thousands of clients must not meet EMFILE
/// because of a conservative default soft limit (often 1024).
pub fn raise_fd_limit() -> std::io::Result<Option<(u64, u64)>> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= hard {
        return Ok(None);
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(Some((soft, hard)))
}
