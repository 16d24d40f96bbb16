//! `cache-builder inspect`: what a cache file holds, for operators.

use std::fmt::Write as _;
use std::path::Path;

use mirrorlist_core::cachefile;
use mirrorlist_core::model::Cache;

use crate::error::Error;

/// Loads the cache file at `path` and describes it; `now` (Unix seconds)
/// is used for the age.
pub fn inspect(path: &Path, now: u64) -> Result<String, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let inspect_err = |source| Error::Inspect {
        path: path.to_owned(),
        source,
    };
    let header = cachefile::read_header(&bytes).map_err(inspect_err)?;
    let cache = cachefile::decode(&bytes).map_err(inspect_err)?;
    Ok(describe(path, header.version, bytes.len(), &cache, now))
}

/// The report for a decoded cache.
pub fn describe(path: &Path, version: u32, size: usize, cache: &Cache, now: u64) -> String {
    let s = cache.summary();
    let mut out = String::new();
    // Writing to a String cannot fail.
    let mut line = |label: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{label:<15} {value}");
    };
    line("file:", &path.display());
    line("format version:", &version);
    line("size:", &format!("{size} bytes"));
    line(
        "built:",
        &format!(
            "{} ({})",
            utc_timestamp(cache.built_at),
            age(now, cache.built_at)
        ),
    );
    line("source:", &cache.source);
    line("hosts:", &s.hosts);
    line("countries:", &s.countries);
    line("categories:", &s.categories);
    line("directories:", &s.directories);
    line("host sets:", &s.host_sets);
    line("repositories:", &s.repos);
    line("file details:", &s.files);
    line("alternates:", &s.alternates);
    let redirects: Vec<String> = cache
        .repo_redirects
        .iter()
        .map(|r| format!("{} -> {}", r.from, r.to))
        .collect();
    line("redirects:", &list_or_none(&redirects));
    line("disabled:", &list_or_none(&cache.disabled_repos));
    let _ = writeln!(out, "repository list:");
    for r in &cache.repos {
        let _ = writeln!(out, "  {} {}", r.name, r.arch);
    }
    out
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// `2025-11-23T05:35:00Z` for Unix seconds (UTC, proleptic Gregorian).
pub fn utc_timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = mirrorlist_core::time::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// "3h 12m ago", "in the future" for clocks that disagree.
pub fn age(now: u64, then: u64) -> String {
    if then > now {
        return format!("{}s in the future", then - now);
    }
    let secs = now - then;
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h ago")
    } else if h > 0 {
        format!("{h}h {m}m ago")
    } else if m > 0 {
        format!("{m}m {}s ago", secs % 60)
    } else {
        format!("{secs}s ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn ages() {
        assert_eq!(age(100, 100), "0s ago");
        assert_eq!(age(100 + 3 * 3600 + 12 * 60, 100), "3h 12m ago");
        assert_eq!(age(100 + 2 * 86_400 + 3600, 100), "2d 1h ago");
        assert_eq!(age(100, 160), "60s in the future");
    }

    #[test]
    fn corrupt_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        std::fs::write(&path, b"MIRRLIST\x01").unwrap();
        let err = inspect(&path, 0).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
    }
}
