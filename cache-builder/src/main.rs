//! The `cache-builder` binary: parse flags, run, map errors to exit codes.

use std::process::ExitCode;

use cache_builder::cli::{run, Cli};
use cache_builder::error::EXIT_CONFIG;
use clap::Parser;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version are not errors.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One message, every line prefixed, so multi-problem reports
            // stay greppable.
            for line in e.to_string().lines() {
                eprintln!("cache-builder: {line}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
