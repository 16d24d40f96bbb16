//! `cache-builder build`: description + master tree → cache file.
//!
//! Order matters for safety: everything is checked and computed in memory
//! first, and the output is replaced (atomically) only when all of it
//! succeeded, so a bad description never replaces a good cache.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use mirrorlist_core::cachefile::{self, CacheFileError};
use mirrorlist_core::model::{Cache, Summary};

use crate::alternates::{self, Policy};
use crate::description::Loaded;
use crate::error::Error;
use crate::{reload, resolve, scan};

/// What a build needs.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The mirror description.
    pub config: PathBuf,
    /// The cache file to write (and to read the previous alternates from).
    pub output: PathBuf,
    /// A server pidfile to SIGHUP after a successful write.
    pub reload_pidfile: Option<PathBuf>,
    /// The build time, Unix seconds: stamped in the cache and the reference
    /// for the alternates' age limit.
    pub now: u64,
    /// Whether to show a progress counter on stderr.
    pub progress: bool,
}

/// What a successful build did.
#[derive(Clone, Debug)]
pub struct BuildReport {
    /// The file written.
    pub output: PathBuf,
    /// Counts.
    pub summary: Summary,
    /// The build time stamped in the cache.
    pub built_at: u64,
    /// Size of the cache file.
    pub bytes: usize,
    /// Wall-clock time the build took.
    pub elapsed: std::time::Duration,
    /// The pid sent SIGHUP, if any.
    pub reloaded_pid: Option<i32>,
}

impl std::fmt::Display for BuildReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wrote {}: {}; {} bytes, built at {} in {:.2?}",
            self.output.display(),
            self.summary,
            self.bytes,
            crate::inspect::utc_timestamp(self.built_at),
            self.elapsed
        )?;
        if let Some(pid) = self.reloaded_pid {
            write!(f, "; sent SIGHUP to pid {pid}")?;
        }
        Ok(())
    }
}

/// Checks the description, scans the tree, writes the cache, and signals
/// the server if asked to.
pub fn build(opts: &BuildOptions) -> Result<BuildReport, Error> {
    let started = Instant::now();
    let cache = make_cache(opts)?;
    let bytes = cachefile::encode(&cache);
    cachefile::write_bytes_atomic(&opts.output, &bytes).map_err(Error::Write)?;
    let mut report = BuildReport {
        output: opts.output.clone(),
        summary: cache.summary(),
        built_at: cache.built_at,
        bytes: bytes.len(),
        elapsed: started.elapsed(),
        reloaded_pid: None,
    };
    if let Some(pidfile) = &opts.reload_pidfile {
        report.reloaded_pid =
            Some(
                reload::send_sighup(pidfile).map_err(|reason| Error::Reload {
                    summary: report.to_string(),
                    reason,
                })?,
            );
    }
    Ok(report)
}

/// Everything but the write: the cache `build` would write.
pub fn make_cache(opts: &BuildOptions) -> Result<Cache, Error> {
    let loaded = Loaded::read(&opts.config)?;
    let resolved = resolve::resolve(&loaded)?;
    let mut cache = resolved.cache;
    cache.built_at = opts.now;

    let mut progress = Progress::new(opts.progress);
    let mut files = scan::scan(&resolved.master_tree, &resolved.scan_dirs, &mut |d, t| {
        progress.update(d, t)
    })?;
    progress.finish();

    let previous = previous_cache(&opts.output);
    let policy = Policy {
        max_alternates: resolved.max_alternates as usize,
        max_age_days: resolved.max_alternate_age_days,
        now: opts.now,
    };
    alternates::apply(&mut files, previous.as_ref(), &policy);
    cache.file_details = files;
    cache.normalize();
    Ok(cache)
}

/// The cache currently at `output`, for its alternates. Missing is normal
/// (first build); undecodable is worth a warning but must not stop a build
/// that would replace the bad file with a good one.
fn previous_cache(output: &Path) -> Option<Cache> {
    match cachefile::load(output) {
        Ok(cache) => Some(cache),
        Err(CacheFileError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            None
        }
        Err(e) => {
            eprintln!(
                "cache-builder: warning: cannot read the previous cache {} for its alternates \
                 ({e}); building without alternates",
                output.display()
            );
            None
        }
    }
}

/// A `\r` counter on stderr, only when stderr is a terminal and asked for.
struct Progress {
    enabled: bool,
}

impl Progress {
    fn new(wanted: bool) -> Progress {
        Progress {
            enabled: wanted && std::io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, done: usize, total: usize) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\rscanning repository directories: {done}/{total}");
            let _ = err.flush();
        }
    }

    fn finish(&mut self) {
        if self.enabled {
            // Clear the counter line so the summary starts clean.
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}
