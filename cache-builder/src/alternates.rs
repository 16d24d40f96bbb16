//! Older versions of files kept as metalink alternates across builds.
//!
//! A mirror that has not synced since the last compose still serves the old
//! `repomd.xml`; dnf accepts it if the metalink lists its hashes as an
//! `mm0:alternate`. So each build carries the versions the previous cache
//! knew, newest first, behind the current one: deduplicated by SHA-256 (a
//! reverted file does not appear twice), at most `max_alternates` of them,
//! none older than `max_age_days`.

use mirrorlist_core::model::{Cache, DirectoryFiles, FileDetails, FileEntry};

/// How many alternates to keep, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Maximum number of alternates per file (not counting the current one).
    pub max_alternates: usize,
    /// Alternates whose timestamp is older than this many days before `now`
    /// are dropped.
    pub max_age_days: u32,
    /// The build time, Unix seconds.
    pub now: u64,
}

impl Policy {
    fn oldest_kept(&self) -> u64 {
        self.now
            .saturating_sub(u64::from(self.max_age_days) * 24 * 60 * 60)
    }
}

/// Adds alternates from `previous` to freshly scanned `files` (whose entries
/// hold only their current version).
pub fn apply(files: &mut [DirectoryFiles], previous: Option<&Cache>, policy: &Policy) {
    for dir in files {
        for file in &mut dir.files {
            let old = previous.and_then(|p| p.file(&dir.directory, &file.name));
            merge(file, old, policy);
        }
    }
}

/// `file.versions` becomes [current, older versions from `previous`…],
/// deduplicated and bounded by `policy`.
pub fn merge(file: &mut FileEntry, previous: Option<&FileEntry>, policy: &Policy) {
    let Some(current) = file.versions.first().cloned() else {
        return;
    };
    let mut versions: Vec<FileDetails> = vec![current];
    let oldest = policy.oldest_kept();
    for v in previous.into_iter().flat_map(|p| &p.versions) {
        if versions.len() > policy.max_alternates {
            break;
        }
        if v.timestamp < oldest || versions.iter().any(|k| k.sha256 == v.sha256) {
            continue;
        }
        versions.push(v.clone());
    }
    file.versions = versions;
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn v(sha: &str, timestamp: u64) -> FileDetails {
        FileDetails {
            timestamp,
            sha256: sha.into(),
            ..FileDetails::default()
        }
    }

    fn entry(versions: Vec<FileDetails>) -> FileEntry {
        FileEntry {
            name: "repomd.xml".into(),
            versions,
        }
    }

    fn shas(e: &FileEntry) -> Vec<&str> {
        e.versions.iter().map(|v| v.sha256.as_str()).collect()
    }

    const POLICY: Policy = Policy {
        max_alternates: 2,
        max_age_days: 30,
        now: 100 * DAY,
    };

    #[test]
    fn changed_file_pushes_the_old_one_to_alternates() {
        let mut e = entry(vec![v("new", 99 * DAY)]);
        merge(&mut e, Some(&entry(vec![v("old", 98 * DAY)])), &POLICY);
        assert_eq!(shas(&e), ["new", "old"]);
    }

    #[test]
    fn unchanged_file_keeps_its_alternates_and_takes_the_new_details() {
        let mut e = entry(vec![v("same", 99 * DAY)]);
        let prev = entry(vec![v("same", 90 * DAY), v("older", 80 * DAY)]);
        merge(&mut e, Some(&prev), &POLICY);
        assert_eq!(shas(&e), ["same", "older"]);
        assert_eq!(e.versions[0].timestamp, 99 * DAY);
    }

    #[test]
    fn count_is_bounded_and_newest_kept() {
        let mut e = entry(vec![v("d", 99 * DAY)]);
        let prev = entry(vec![v("c", 98 * DAY), v("b", 97 * DAY), v("a", 96 * DAY)]);
        merge(&mut e, Some(&prev), &POLICY);
        assert_eq!(shas(&e), ["d", "c", "b"]);
    }

    #[test]
    fn old_alternates_are_dropped_but_never_the_current_version() {
        let mut e = entry(vec![v("cur", 10 * DAY)]);
        let prev = entry(vec![v("recent", 71 * DAY), v("stale", 69 * DAY)]);
        merge(&mut e, Some(&prev), &POLICY);
        assert_eq!(shas(&e), ["cur", "recent"]);
    }

    #[test]
    fn reverted_file_appears_once() {
        let mut e = entry(vec![v("a", 99 * DAY)]);
        let prev = entry(vec![v("b", 98 * DAY), v("a", 97 * DAY)]);
        merge(&mut e, Some(&prev), &POLICY);
        assert_eq!(shas(&e), ["a", "b"]);
    }

    #[test]
    fn zero_alternates_keeps_only_current() {
        let mut e = entry(vec![v("new", 99 * DAY)]);
        let policy = Policy {
            max_alternates: 0,
            ..POLICY
        };
        merge(&mut e, Some(&entry(vec![v("old", 98 * DAY)])), &policy);
        assert_eq!(shas(&e), ["new"]);
    }
}
