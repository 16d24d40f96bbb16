//! Command-line flags (clap derive) and their translation into actions.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};

use crate::build::{build, BuildOptions};
use crate::error::Error;
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
        Command::Inspect { file } => print!("{}", inspect(&file, now())?),
    }
    Ok(())
}
