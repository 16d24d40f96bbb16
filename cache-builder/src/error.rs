//! Errors, split the way the exit code is: problems with what the operator
//! wrote or gave us (the description, the master tree it points at, the
//! continent table, MirrorManager2's cache and ASN table for `import-mm2`)
//! exit 64; failures of the machine (reading the tree, writing the cache,
//! signalling the server, a corrupt cache file to inspect) exit 1.

use std::fmt;
use std::path::PathBuf;

use mirrorlist_core::cachefile::CacheFileError;

/// Exit code for usage and configuration errors (BSD `EX_USAGE`).
pub const EXIT_CONFIG: u8 = 64;
/// Exit code for runtime failures.
pub const EXIT_RUNTIME: u8 = 1;

/// One problem in an input file, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the problem is in.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong, naming the item.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// The description (or a file it names) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// One or more problems in the content; all of them are reported at
    /// once, so an operator fixes a description in one round.
    #[error("{}", DiagnosticList(.0))]
    Invalid(Vec<Diagnostic>),
}

struct DiagnosticList<'a>(&'a [Diagnostic]);

impl fmt::Display for DiagnosticList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Why signalling the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The pidfile could not be read.
    #[error("cannot read pidfile {}: {source}", path.display())]
    Read {
        /// The pidfile.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The pidfile does not hold a process id.
    #[error("pidfile {} does not hold a process id (found {content:?})", path.display())]
    Garbled {
        /// The pidfile.
        path: PathBuf,
        /// What it holds (trimmed, shortened).
        content: String,
    },
    /// kill(2) failed.
    #[error("cannot send SIGHUP to pid {pid} (from {}): {}", path.display(), describe_errno(*errno))]
    Signal {
        /// The pidfile.
        path: PathBuf,
        /// The process id it holds.
        pid: i32,
        /// Why.
        errno: nix::errno::Errno,
    },
}

fn describe_errno(errno: nix::errno::Errno) -> String {
    match errno {
        nix::errno::Errno::ESRCH => {
            "no such process (is the server running? stale pidfile?)".into()
        }
        other => other.desc().to_owned(),
    }
}

/// Everything `cache-builder` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The description is unusable (exit 64).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file of the master tree, or a cache file to inspect, could not be
    /// read (exit 1).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The cache could not be written; any previous cache is untouched.
    #[error("cannot write the cache (any previous cache file is unchanged): {0}")]
    Write(CacheFileError),
    /// The cache was written but the server could not be told.
    #[error(
        "{summary}\nthe new cache WAS written, but the server was not told to reload: {reason}"
    )]
    Reload {
        /// The build's summary line.
        summary: String,
        /// Why.
        reason: ReloadError,
    },
    /// A cache file given to `inspect` cannot be decoded.
    #[error("{}: {source}", path.display())]
    Inspect {
        /// The file.
        path: PathBuf,
        /// Why.
        source: CacheFileError,
    },
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => EXIT_CONFIG,
            Error::Read { .. } | Error::Write(_) | Error::Reload { .. } | Error::Inspect { .. } => {
                EXIT_RUNTIME
            }
        }
    }
}
