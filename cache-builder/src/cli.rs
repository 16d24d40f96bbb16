//! Command-line flags (clap derive) and their translation into actions.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};

use crate::build::{build, BuildOptions};
use crate::error::Error;
use crate::import::{import_mm2, ImportOptions};
use crate::inspect::inspect;

/// Builds and inspects mirrorlist cache files.
#[derive(Debug, Parser)]
#[command(name = "cache-builder", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a mirror description, scan the master tree, write the cache.
    Build {
        /// The mirror description (TOML).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The cache file to write; its previous content supplies the
        /// alternates.
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        /// After writing, send SIGHUP to the pid in this file.
        #[arg(long, value_name = "FILE")]
        reload_pidfile: Option<PathBuf>,
        /// Build time to record, Unix seconds (default: now); for
        /// reproducible builds and tests.
        #[arg(long, value_name = "SECONDS")]
        build_time: Option<u64>,
    },
    /// Convert MirrorManager2's mirrorlist cache (mirrorlist_cache.proto)
    /// into a cache file, as a drop-in for MirrorManager2 sites.
    #[command(name = "import-mm2")]
    ImportMm2 {
        /// MirrorManager2's mirrorlist_cache.proto.
        #[arg(long, value_name = "FILE")]
        proto: PathBuf,
        /// The cache file to write (replaced atomically, only on success).
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        /// MirrorManager2's global_netblocks.txt (`prefix ASN` lines): only
        /// checked, every line, since mirrorlist-server loads this table
        /// itself at start and on reload (--asn-netblocks); nothing of it is
        /// written to the cache.
        #[arg(long, value_name = "FILE")]
        global_netblocks: Option<PathBuf>,
        /// Country → continent table (`CC,CONTINENT` lines, `#` comments,
        /// `--` for no continent) instead of the bundled
        /// data/country_continent.csv.
        #[arg(long, value_name = "FILE")]
        country_continent: Option<PathBuf>,
        /// After writing, send SIGHUP to the pid in this file.
        #[arg(long, value_name = "FILE")]
        reload_pidfile: Option<PathBuf>,
        /// Refuse the file when it has dangling references (ids that point
        /// nowhere) instead of dropping them with a warning.
        #[arg(long)]
        strict: bool,
    },
    /// Show what a cache file holds.
    Inspect {
        /// The cache file.
        file: PathBuf,
    },
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs a parsed command line; what it prints goes to stdout.
pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Build {
            config,
            output,
            reload_pidfile,
            build_time,
        } => {
            let report = build(&BuildOptions {
                config,
                output,
                reload_pidfile,
                now: build_time.unwrap_or_else(now),
                progress: true,
            })?;
            println!("{report}");
        }
        Command::ImportMm2 {
            proto,
            output,
            global_netblocks,
            country_continent,
            reload_pidfile,
            strict,
        } => {
            let report = import_mm2(
                &ImportOptions {
                    proto,
                    output,
                    global_netblocks,
                    country_continent,
                    reload_pidfile,
                    strict,
                },
                &mut |w| eprintln!("cache-builder: warning: {w}"),
            )?;
            println!("{report}");
        }
        Command::Inspect { file } => print!("{}", inspect(&file, now())?),
    }
    Ok(())
}
