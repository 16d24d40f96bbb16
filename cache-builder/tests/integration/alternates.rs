//! Older repomd.xml versions carried across builds as alternates.

use std::fs::File;
use std::time::{Duration, UNIX_EPOCH};

use super::*;

const DAY: u64 = 86_400;
const T0: u64 = 1_700_000_000;
const REPODATA: &str = "fedora/linux/releases/42/Everything/x86_64/os/repodata";

/// Writes fedora-42's repomd.xml with `content` and modification time `mtime`.
fn set_repomd(f: &Fixture, content: &str, mtime: u64) {
    let p = f.write_repomd(BASE_DIRS[0], content);
    File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(mtime))
        .unwrap();
}

fn versions(cache: &Cache) -> Vec<(String, u64)> {
    cache
        .file(REPODATA, "repomd.xml")
        .expect("fedora-42 has file details")
        .versions
        .iter()
        .map(|v| (v.sha256.clone(), v.timestamp))
        .collect()
}

#[test]
fn changed_repomd_keeps_the_old_hashes_as_an_alternate() {
    let f = Fixture::new(BASE);
    set_repomd(&f, "v1", T0);
    let first = f.build_ok(T0);
    assert_eq!(versions(&first), [(sha256_hex(b"v1"), T0)]);
    let d = &first.file(REPODATA, "repomd.xml").unwrap().versions[0];
    assert_eq!(d.size, 2);
    assert_eq!(d.md5, "6654c734ccab8f440ff0825eb443dc7f");
    assert_eq!(d.sha512.len(), 128);

    set_repomd(&f, "v2!", T0 + DAY);
    let second = f.build_ok(T0 + DAY);
    assert_eq!(
        versions(&second),
        [(sha256_hex(b"v2!"), T0 + DAY), (sha256_hex(b"v1"), T0)]
    );
    assert_eq!(second.summary().alternates, 1);

    // An unchanged rebuild keeps the alternate.
    let third = f.build_ok(T0 + 2 * DAY);
    assert_eq!(versions(&third), versions(&second));
}

#[test]
fn alternates_are_bounded_by_count() {
    let f = Fixture::new(&BASE.replace("max_alternates = 4", "max_alternates = 2"));
    for i in 0..5u64 {
        set_repomd(&f, &format!("version {i}"), T0 + i * 3600);
        f.build_ok(T0 + i * 3600);
    }
    let cache = cachefile::load(&f.output()).unwrap();
    let shas: Vec<String> = versions(&cache).into_iter().map(|v| v.0).collect();
    assert_eq!(
        shas,
        [
            sha256_hex(b"version 4"),
            sha256_hex(b"version 3"),
            sha256_hex(b"version 2")
        ]
    );
}

#[test]
fn alternates_older_than_the_age_limit_are_dropped() {
    let f = Fixture::new(BASE);
    set_repomd(&f, "old", T0);
    f.build_ok(T0);
    set_repomd(&f, "new", T0 + 10 * DAY);
    let cache = f.build_ok(T0 + 10 * DAY);
    assert_eq!(versions(&cache).len(), 2);

    // 31 days after the old version was made: it is past the 30-day limit.
    // The current version is kept whatever its age.
    let cache = f.build_ok(T0 + 31 * DAY);
    assert_eq!(versions(&cache), [(sha256_hex(b"new"), T0 + 10 * DAY)]);
}

#[test]
fn undecodable_previous_cache_warns_and_builds_without_alternates() {
    let f = Fixture::new(BASE);
    std::fs::create_dir_all(f.path("out")).unwrap();
    std::fs::write(f.output(), b"MIRRLIST garbage").unwrap();
    let out = f.build(T0);
    assert_success(&out);
    assert!(stderr(&out).contains("warning"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("without alternates"),
        "{}",
        stderr(&out)
    );
    let cache = cachefile::load(&f.output()).unwrap();
    assert_eq!(cache.summary().alternates, 0);
}
