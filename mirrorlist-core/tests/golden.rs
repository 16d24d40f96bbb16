//! A cache file written by an earlier build must still decode, or be refused
//! with a clear version error once the format has moved on.
//!
//! `tests/data/golden-vN.cache` was built by `cache-builder` (the one of
//! format version N) from `cache-builder/tests/fixtures/golden/mirrors.toml`
//! with fixed build and file times. To regenerate the current version's file
//! (only when that description changes), run from the workspace root:
//!
//! ```sh
//! sh cache-builder/tests/fixtures/golden/regenerate.sh
//! ```
//!
//! When `FORMAT_VERSION` is bumped, keep the old files as they are (they
//! prove old files are refused, not misread) and add a `golden-vN.cache` and
//! a test for the new version beside them.

use std::path::Path;

use mirrorlist_core::cachefile::{self, CacheFileError, FORMAT_VERSION};
use mirrorlist_core::model::{Country, Families, Protocol};

const GOLDEN_V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden-v1.cache");
const GOLDEN_V2: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden-v2.cache");
const GOLDEN_V3: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden-v3.cache");

fn cc(s: &str) -> Country {
    Country::parse(s).unwrap()
}

/// Version 1 stored every directory's host lists inline; version 2 stored
/// each distinct host set once, its public lists as host indexes; version 3
/// holds those as positions among the set's carrying hosts. Older files
/// are refused by version (not misread), with a hint to rebuild.
#[test]
fn golden_v1_and_v2_are_refused_by_version() {
    for (path, version) in [(GOLDEN_V1, 1), (GOLDEN_V2, 2)] {
        let bytes = std::fs::read(Path::new(path)).unwrap();
        let err = cachefile::decode(&bytes).unwrap_err();
        assert!(
            matches!(err, CacheFileError::Version { found, supported } if found == version && supported == FORMAT_VERSION),
            "{err}"
        );
        assert!(err.to_string().contains("rebuild the cache"), "{err}");
    }
}

#[test]
fn golden_v3_decodes_or_is_refused_by_version() {
    let bytes = std::fs::read(Path::new(GOLDEN_V3)).unwrap();
    if FORMAT_VERSION != 3 {
        let err = cachefile::decode(&bytes).unwrap_err();
        assert!(
            matches!(err, CacheFileError::Version { found: 3, supported } if supported == FORMAT_VERSION),
            "{err}"
        );
        return;
    }

    let header = cachefile::read_header(&bytes).unwrap();
    assert_eq!(header.version, 3);
    assert_eq!(header.built_at, 1_700_000_000);
    let c = cachefile::decode(&bytes).unwrap();
    assert_eq!(c.built_at, 1_700_000_000);
    assert_eq!(c.source, "mirrors.toml");

    // Hosts, in file order, with everything the description said.
    assert_eq!(c.hosts.len(), 2);
    let a = &c.hosts[0];
    assert_eq!(
        (a.id, a.name.as_str(), a.site.as_str()),
        (1, "a.example.org", "")
    );
    assert_eq!(a.country, cc("DE"));
    assert_eq!(a.bandwidth, 1000);
    assert_eq!(a.netblocks, ["192.0.2.0/24".parse().unwrap()]);
    assert_eq!(a.asns, [64500]);
    assert!(a.asn_clients && !a.private);
    assert_eq!(a.families, Families::Both);
    let b = &c.hosts[1];
    assert_eq!(
        (b.id, b.name.as_str(), b.site.as_str()),
        (2, "b.example.net", "Example Site")
    );
    assert!(b.private);
    assert_eq!(b.allowed_countries, [cc("CA"), cc("US")]);
    assert_eq!(b.families, Families::Ipv6);

    let urls: Vec<(u32, &str, Protocol)> = c
        .host_urls
        .iter()
        .map(|u| (u.host, u.url.as_str(), u.protocol))
        .collect();
    assert_eq!(
        urls,
        [
            (0, "https://a.example.org/fedora/linux", Protocol::Https),
            (0, "rsync://a.example.org/fedora/linux", Protocol::Rsync),
            (1, "http://b.example.net/pub/fedora/linux", Protocol::Http),
        ]
    );

    // Directories: b (private, releases only) is in by_host of fedora-42
    // only, never in global.
    let dir = |repo: &str| &c.directories[c.repo(repo, "x86_64").unwrap().directory as usize];
    let f42 = dir("fedora-42");
    assert_eq!(f42.path, "fedora/linux/releases/42/Everything/x86_64/os");
    assert_eq!(f42.subpath, "releases/42/Everything/x86_64/os");
    assert!(f42.ordered);
    let set = c.hosts_of(f42);
    assert_eq!(set.global(), [0]);
    assert_eq!(set.by_country(), [(cc("DE"), vec![0])]);
    assert_eq!(
        set.by_host().collect::<Vec<_>>(),
        [(0, &[0, 1][..]), (1, &[2][..])]
    );
    assert_eq!(
        c.hosts_of(dir("fedora-rawhide"))
            .by_host()
            .collect::<Vec<_>>(),
        [(0, &[0, 1][..])]
    );
    // Two directories with different hosts: two sets.
    assert_eq!(c.host_sets.len(), 2);

    assert_eq!(c.repo_redirects.len(), 1);
    assert_eq!(
        (
            c.repo_redirects[0].from.as_str(),
            c.repo_redirects[0].to.as_str()
        ),
        ("rawhide", "fedora-rawhide")
    );
    assert_eq!(c.disabled_repos, ["fedora-40"]);

    // repomd.xml: the current version and the previous one as an alternate.
    let f = c
        .file(
            "fedora/linux/releases/42/Everything/x86_64/os/repodata",
            "repomd.xml",
        )
        .unwrap();
    let versions: Vec<(u64, u64, &str)> = f
        .versions
        .iter()
        .map(|v| (v.timestamp, v.size, v.sha256.as_str()))
        .collect();
    assert_eq!(
        versions,
        [
            (
                1_700_000_000,
                17,
                "8e8aef1b47857abc725f39e4486321c8ea1201560bfbded956fbb8eeccbe2859"
            ),
            (
                1_699_990_000,
                17,
                "9cf6a00bd613d154c2295d64717bc252819d478f19cd1d7df300b707f41c8d41"
            ),
        ]
    );
    assert_eq!(f.versions[0].md5.len(), 32);
    assert_eq!(f.versions[0].sha1.len(), 40);
    assert_eq!(f.versions[0].sha512.len(), 128);

    assert_eq!(c.continent_of(cc("TR")), Some("EU"));
    assert_eq!(c.continent_of(cc("JP")), Some("AS"));
    assert_eq!(
        c.netblock_countries,
        [("203.0.113.0/24".parse().unwrap(), cc("NL"))]
    );
    assert_eq!(c.categories.len(), 1);
    assert_eq!(c.categories[0].topdir, "fedora/linux");
}
