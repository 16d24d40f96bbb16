//! `cache-builder import-mm2`: MirrorManager2's `mirrorlist_cache.proto` →
//! cache file.
//!
//! Same safety order as `build`: every input is read and checked, and the
//! cache converted in memory, before the output is replaced (atomically);
//! a bad input never replaces a good cache.

use std::path::PathBuf;
use std::time::Instant;

use mirrorlist_core::cachefile;
use mirrorlist_core::model::Summary;

use crate::continents::ContinentTable;
use crate::error::{ConfigError, Error};
use crate::mm2::convert::{self, ConvertStats};
use crate::mm2::global_netblocks::{self, TableStats};
use crate::{mm2, reload};

/// What an import needs.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// MirrorManager2's `mirrorlist_cache.proto`.
    pub proto: PathBuf,
    /// The cache file to write.
    pub output: PathBuf,
    /// A `global_netblocks.txt` to check (not imported: the server loads it).
    pub global_netblocks: Option<PathBuf>,
    /// A `CC,CONTINENT` table instead of the bundled one.
    pub country_continent: Option<PathBuf>,
    /// A server pidfile to SIGHUP after a successful write.
    pub reload_pidfile: Option<PathBuf>,
    /// Refuse the file on dangling references instead of dropping them.
    pub strict: bool,
}

/// What a successful import did.
#[derive(Clone, Debug)]
pub struct ImportReport {
    /// The file read.
    pub proto: PathBuf,
    /// The file written.
    pub output: PathBuf,
    /// Counts.
    pub summary: Summary,
    /// MM2's generation time, stamped in the cache.
    pub built_at: u64,
    /// Size of the cache file.
    pub bytes: usize,
    /// Wall-clock time the import took.
    pub elapsed: std::time::Duration,
    /// What was left out or filled in.
    pub stats: ConvertStats,
    /// Dangling references dropped (each was passed to the warning sink).
    pub warnings: usize,
    /// The checked prefix → ASN table, if one was given.
    pub asn_table: Option<TableStats>,
    /// The pid sent SIGHUP, if any.
    pub reloaded_pid: Option<i32>,
}

impl std::fmt::Display for ImportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "imported {} into {}: {}; {} bytes, generated at {}, in {:.2?}",
            self.proto.display(),
            self.output.display(),
            self.summary,
            self.bytes,
            crate::inspect::utc_timestamp(self.built_at),
            self.elapsed
        )?;
        let s = &self.stats;
        if s.skipped_urls > 0 {
            write!(f, "; skipped {} URLs with unknown schemes", s.skipped_urls)?;
        }
        if s.unknown_country_hosts > 0 {
            write!(
                f,
                "; {} hosts of unknown country (as {})",
                s.unknown_country_hosts,
                convert::UNKNOWN_COUNTRY
            )?;
        }
        if s.country_from_directories > 0 {
            write!(
                f,
                "; {} host countries taken from ByCountry",
                s.country_from_directories
            )?;
        }
        if s.empty_repo_directories > 0 {
            write!(
                f,
                "; {} repository directories carried by no host",
                s.empty_repo_directories
            )?;
        }
        if self.warnings > 0 {
            write!(f, "; {} dangling references dropped", self.warnings)?;
        }
        if let Some(t) = self.asn_table {
            write!(
                f,
                "; ASN table checked ({} IPv4 + {} IPv6 prefixes)",
                t.v4, t.v6
            )?;
        }
        if let Some(pid) = self.reloaded_pid {
            write!(f, "; sent SIGHUP to pid {pid}")?;
        }
        Ok(())
    }
}

/// Reads, checks and converts the MM2 cache, writes ours, and signals the
/// server if asked to. Each dangling reference dropped is passed to `warn`
/// (the first few in full, then a count).
pub fn import_mm2(opts: &ImportOptions, warn: &mut dyn FnMut(&str)) -> Result<ImportReport, Error> {
    let started = Instant::now();
    let continents = match &opts.country_continent {
        None => ContinentTable::bundled(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            ContinentTable::parse(path, &text).map_err(ConfigError::Invalid)?
        }
    };
    let asn_table = opts
        .global_netblocks
        .as_deref()
        .map(global_netblocks::validate)
        .transpose()?;

    let bytes = std::fs::read(&opts.proto).map_err(|source| ConfigError::Read {
        path: opts.proto.clone(),
        source,
    })?;
    let msg = mm2::decode(&bytes, &opts.proto)?;
    drop(bytes);
    let converted =
        convert::convert(msg, &opts.proto, &continents).map_err(ConfigError::Invalid)?;
    let warnings = converted.warnings.total;
    if opts.strict && warnings > 0 {
        return Err(ConfigError::Invalid(converted.warnings.into_diagnostics(&opts.proto)).into());
    }
    for d in converted.warnings.into_diagnostics(&opts.proto) {
        warn(&d.to_string());
    }
    let mut cache = converted.cache;
    cache.normalize();

    let bytes = cachefile::encode(&cache);
    cachefile::write_bytes_atomic(&opts.output, &bytes).map_err(Error::Write)?;
    let mut report = ImportReport {
        proto: opts.proto.clone(),
        output: opts.output.clone(),
        summary: cache.summary(),
        built_at: cache.built_at,
        bytes: bytes.len(),
        elapsed: started.elapsed(),
        stats: converted.stats,
        warnings,
        asn_table,
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
