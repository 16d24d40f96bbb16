//! `import-mm2`: MirrorManager2's `mirrorlist_cache.proto` → cache file.
//!
//! The fixtures are built here with the crate's own prost messages and
//! `encode_to_vec`, so no binary file is checked in: each test shows the
//! MM2 entries it is about. The mapping is checked through the library
//! (`convert`), the exit codes and the untouched output through the real
//! binary, and the whole path once on the real-size example in
//! `../shared/data/mm2/` when it is present.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use cache_builder::continents::ContinentTable;
use cache_builder::mm2::convert::{self, Converted, UNKNOWN_COUNTRY};
use cache_builder::mm2::proto::*;
use ipnet::IpNet;
use mirrorlist_core::cachefile;
use mirrorlist_core::model::{Cache, Country, Host, Protocol};
use prost::Message;

use crate::{assert_success, repo_root, run, stderr, stdout};

const DIR41: &str = "pub/fedora/linux/releases/41/Everything/x86_64/os";
const RAWHIDE: &str = "pub/fedora/linux/development/rawhide/Everything/x86_64/os";
const DIR40: &str = "pub/fedora/linux/releases/40/Everything/x86_64/os";
const REPODATA41: &str = "pub/fedora/linux/releases/41/Everything/x86_64/os/repodata";

fn ss(k: &str, v: &str) -> StringStringMap {
    StringStringMap {
        key: Some(k.into()),
        value: Some(v.into()),
    }
}

fn is(k: i64, v: &str) -> IntStringMap {
    IntStringMap {
        key: Some(k),
        value: Some(v.into()),
    }
}

fn ii(k: i64, v: i64) -> IntIntMap {
    IntIntMap {
        key: Some(k),
        value: Some(v),
    }
}

fn iri(k: i64, v: &[i64]) -> IntRepeatedIntMap {
    IntRepeatedIntMap {
        key: Some(k),
        value: v.to_vec(),
    }
}

fn sri(k: &str, v: &[i64]) -> StringRepeatedIntMap {
    StringRepeatedIntMap {
        key: Some(k.into()),
        value: v.to_vec(),
    }
}

fn sb(k: &str, v: bool) -> StringBoolMap {
    StringBoolMap {
        key: Some(k.into()),
        value: Some(v),
    }
}

const SHA256_V2: &str = "5DBB0DE70DA05FFCA359C576FDFA89098BA5DAC203A692791E02F67623E2E62A";
const MD5_V1: &str = "d6d7e1b6764810f1a7302f1b2e61a6f3";

/// A small cache that uses every field. Hosts:
///
/// - 100: US, three URLs (https, http, rsync) and one `gopher://` URL, the
///   netblocks 192.0.2.0/24 and 2001:db8::/32, AS64500.
/// - 200: DE, restricted to DE and AT, a negative bandwidth, a bare IPv4
///   and a bare IPv6 address as netblocks.
/// - 300: private (only in ByHostId), FR, a dotted-netmask netblock,
///   2001:db8::/32 shared with 100, AS64500.
/// - 400: no HostCountryCache entry; listed under JP in ByCountry.
/// - 500: country `??`, in Global only.
/// - 600: SE in the host tables, in no directory.
fn fixture() -> MirrorList {
    MirrorList {
        time: Some(1_700_000_000),
        netblock_country_cache: vec![ss("198.18.0.0/15", "DE"), ss("203.0.113.5", "fr")],
        location_cache: vec![sri("somewhere", &[100])],
        hc_url_cache: vec![
            is(1, "https://a.example.org/pub/fedora/linux/"),
            is(2, "http://a.example.org/pub/fedora/linux"),
            is(3, "rsync://a.example.org/fedora-linux"),
            is(4, "gopher://a.example.org/fedora"),
            is(10, "https://b.example.de/fedora/linux"),
            is(20, "ftp://p.example.net/fedora/linux"),
            is(40, "https://jp.example.jp/fedora"),
            is(50, "https://zz.example/fedora"),
            // Listed by no directory: no host to attach it to.
            is(99, "https://orphan.example/fedora"),
        ],
        file_details_cache: vec![FileDetailsCacheDirectoryType {
            directory: Some(REPODATA41.into()),
            file_details_cache_files: vec![FileDetailsCacheFilesType {
                filename: Some("repomd.xml".into()),
                file_details: vec![
                    FileDetailsType {
                        time_stamp: Some(2_000),
                        size: Some(13_089),
                        sha1: Some("7abf21c51aea9c2d3437bf9c0e97650b15c02737".into()),
                        md5: None,
                        sha256: Some(SHA256_V2.into()),
                        sha512: None,
                    },
                    FileDetailsType {
                        time_stamp: Some(1_000),
                        size: Some(12_000),
                        sha1: None,
                        md5: Some(MD5_V1.into()),
                        sha256: Some(String::new()),
                        sha512: None,
                    },
                ],
            }],
        }],
        disabled_repository_cache: vec![sb("fedora-40", true), sb("fedora-41", false)],
        country_continent_redirect_cache: vec![ss("TR", "EU"), ss("IL", "eu")],
        repository_redirect_cache: vec![ss("rawhide", "fedora-rawhide")],
        repo_arch_to_directory_name: vec![
            ss("fedora-41+x86_64", DIR41),
            ss("fedora-rawhide+x86_64", RAWHIDE),
            ss("fedora-40+x86_64", DIR40),
            // A `+` in the repository name; no host carries the directory.
            ss("c++tools+aarch64", "pub/extras/c++tools/aarch64"),
        ],
        host_asn_cache: vec![iri(64500, &[300, 100])],
        host_max_connection_cache: vec![ii(100, 5)],
        host_country_cache: vec![
            is(100, "US"),
            is(200, "de"),
            is(300, "FR"),
            is(500, "??"),
            is(600, "SE"),
        ],
        host_bandwidth_cache: vec![ii(100, 1000), ii(200, -5), ii(300, 5_000_000_000)],
        host_country_allowed_cache: vec![IntRepeatedStringMap {
            key: Some(200),
            value: vec!["DE".into(), "at".into()],
        }],
        host_netblock_cache: vec![
            sri("192.0.2.0/24", &[100]),
            sri("198.51.100.7", &[200]),
            sri("203.0.113.0/255.255.255.128", &[300]),
            sri("2001:db8::/32", &[100, 300]),
            sri("2001:db8:1::5", &[200]),
        ],
        mirror_list_cache: vec![
            MirrorListCacheType {
                directory: Some(DIR41.into()),
                global: vec![100, 200, 500],
                subpath: Some("releases/41/Everything/x86_64/os".into()),
                by_country: vec![sri("US", &[100]), sri("DE", &[200]), sri("JP", &[400])],
                by_country_internet2: vec![sri("US", &[100])],
                by_host_id: vec![
                    iri(100, &[1, 2, 3, 4]),
                    iri(200, &[10]),
                    iri(300, &[20]),
                    iri(400, &[40]),
                    iri(500, &[50]),
                ],
                ordered_mirror_list: Some(true),
            },
            MirrorListCacheType {
                directory: Some(RAWHIDE.into()),
                global: vec![100],
                subpath: Some("development/rawhide/Everything/x86_64/os".into()),
                by_country: vec![sri("US", &[100])],
                by_country_internet2: vec![],
                by_host_id: vec![iri(100, &[1])],
                ordered_mirror_list: None,
            },
            MirrorListCacheType {
                directory: Some(DIR40.into()),
                global: vec![],
                subpath: Some("releases/40/Everything/x86_64/os".into()),
                by_country: vec![],
                by_country_internet2: vec![],
                by_host_id: vec![iri(300, &[20])],
                ordered_mirror_list: Some(false),
            },
        ],
    }
}

fn convert_ok(msg: MirrorList) -> Converted {
    convert::convert(msg, Path::new("mm2.proto"), &ContinentTable::bundled())
        .unwrap_or_else(|d| panic!("{d:?}"))
}

fn convert_err(msg: MirrorList) -> String {
    let diags = convert::convert(msg, Path::new("mm2.proto"), &ContinentTable::bundled())
        .expect_err("the conversion should fail");
    diags
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn normalized(msg: MirrorList) -> Cache {
    let mut cache = convert_ok(msg).cache;
    cache.normalize();
    cache
}

fn host(cache: &Cache, id: u32) -> (u32, &Host) {
    let i = cache
        .hosts
        .iter()
        .position(|h| h.id == id)
        .unwrap_or_else(|| panic!("no host {id}"));
    (i as u32, &cache.hosts[i])
}

fn cc(s: &str) -> Country {
    Country::parse(s).unwrap()
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|n| n.parse().unwrap()).collect()
}

/// (protocol, url) of a host's URLs in a directory.
fn urls_of(cache: &Cache, dir: &str, id: u32) -> Vec<(Protocol, String)> {
    let (h, _) = host(cache, id);
    let (_, d) = cache.directory(dir).unwrap();
    let Some((_, urls)) = cache.hosts_of(d).by_host().find(|(x, _)| *x == h) else {
        return Vec::new();
    };
    urls.iter()
        .map(|&u| {
            let u = &cache.host_urls[u as usize];
            assert_eq!(u.host, h);
            (u.protocol, u.url.clone())
        })
        .collect()
}

#[test]
fn hosts_and_their_tables() {
    let converted = convert_ok(fixture());
    assert_eq!(converted.stats.unknown_country_hosts, 1);
    assert_eq!(converted.stats.country_from_directories, 1);
    let c = {
        let mut c = converted.cache;
        c.normalize();
        c
    };
    // 600 has no directory but is in the host tables; nothing else.
    let ids: Vec<u32> = c.hosts.iter().map(|h| h.id).collect();
    assert_eq!(ids, [100, 200, 300, 400, 500, 600]);

    let (_, a) = host(&c, 100);
    assert_eq!(a.name, "a.example.org");
    assert_eq!(a.country, cc("US"));
    assert_eq!(a.bandwidth, 1000);
    assert!(!a.private);
    assert!(a.allowed_countries.is_empty());
    assert_eq!(a.netblocks, nets(&["192.0.2.0/24", "2001:db8::/32"]));
    assert_eq!(a.asns, [64500]);
    assert!(a.asn_clients);

    let (_, b) = host(&c, 200);
    assert_eq!(b.country, cc("DE"));
    assert_eq!(b.bandwidth, 1, "negative bandwidth clamps to 1");
    assert_eq!(b.allowed_countries, [cc("AT"), cc("DE")]);
    assert_eq!(
        b.netblocks,
        nets(&["198.51.100.7/32", "2001:db8:1::5/128"]),
        "bare addresses are single hosts"
    );
    assert!(b.asns.is_empty());
    assert!(!b.asn_clients);

    let (_, p) = host(&c, 300);
    assert!(p.private, "only in ByHostId: private");
    assert_eq!(p.country, cc("FR"));
    assert_eq!(p.bandwidth, u32::MAX);
    assert_eq!(p.name, "p.example.net");
    assert_eq!(
        p.netblocks,
        nets(&["203.0.113.0/25", "2001:db8::/32"]),
        "dotted netmask → prefix length"
    );
    assert_eq!(p.asns, [64500]);

    let (_, j) = host(&c, 400);
    assert_eq!(j.country, cc("JP"), "from the directory's ByCountry");
    assert_eq!(j.bandwidth, 1, "no HostBandwidthCache entry");

    let (_, z) = host(&c, 500);
    assert_eq!(z.country, UNKNOWN_COUNTRY, "`??` becomes ZZ");

    let (_, s) = host(&c, 600);
    assert_eq!(s.country, cc("SE"));
    assert_eq!(s.name, "mm2-host-600", "no URL to take a name from");
    assert!(!s.private);
}

#[test]
fn directories_urls_and_subpaths() {
    let converted = convert_ok(fixture());
    assert_eq!(converted.stats.skipped_urls, 1, "the gopher:// URL");
    assert!(converted.warnings.is_empty(), "{:?}", converted.warnings);
    let mut c = converted.cache;
    c.normalize();

    assert_eq!(
        urls_of(&c, DIR41, 100),
        [
            (
                Protocol::Https,
                "https://a.example.org/pub/fedora/linux".into()
            ),
            (
                Protocol::Http,
                "http://a.example.org/pub/fedora/linux".into()
            ),
            (Protocol::Rsync, "rsync://a.example.org/fedora-linux".into()),
        ],
        "trailing slash trimmed, gopher:// skipped"
    );
    assert_eq!(
        urls_of(&c, DIR41, 300),
        [(Protocol::Ftp, "ftp://p.example.net/fedora/linux".into())]
    );
    // The orphan URL (no host lists it) is not kept.
    assert!(c.host_urls.iter().all(|u| !u.url.contains("orphan")));
    assert_eq!(c.host_urls.len(), 7);

    let (_, d) = c.directory(DIR41).unwrap();
    assert_eq!(d.subpath, "releases/41/Everything/x86_64/os");
    assert!(d.ordered);
    let idx = |id| host(&c, id).0;
    let s = c.hosts_of(d);
    assert_eq!(s.global(), [idx(100), idx(200), idx(500)]);
    assert_eq!(
        s.by_country(),
        [
            (cc("DE"), vec![idx(200)]),
            (cc("JP"), vec![idx(400)]),
            (cc("US"), vec![idx(100)]),
        ]
    );
    let by_host: Vec<u32> = s.by_host().map(|(h, _)| h).collect();
    assert_eq!(by_host, [idx(100), idx(200), idx(300), idx(400), idx(500)]);

    let (_, raw) = c.directory(RAWHIDE).unwrap();
    assert!(!raw.ordered, "OrderedMirrorList absent → false");
    let (_, old) = c.directory(DIR40).unwrap();
    let old = c.hosts_of(old);
    assert!(old.global().is_empty() && old.country_count() == 0);
    assert_eq!(old.host_count(), 1);
}

#[test]
fn repos_redirects_disabled_and_tables() {
    let converted = convert_ok(fixture());
    assert_eq!(converted.stats.empty_repo_directories, 1);
    let mut c = converted.cache;
    c.normalize();
    assert_eq!(c.built_at, 1_700_000_000);
    assert_eq!(c.source, "mm2.proto");

    let dir_of = |name: &str, arch: &str| {
        let r = c
            .repo(name, arch)
            .unwrap_or_else(|| panic!("{name} {arch}"));
        c.directories[r.directory as usize].path.clone()
    };
    assert_eq!(dir_of("fedora-41", "x86_64"), DIR41);
    assert_eq!(dir_of("fedora-rawhide", "x86_64"), RAWHIDE);
    // Split at the last `+`; the directory no host carries is kept, empty.
    assert_eq!(dir_of("c++tools", "aarch64"), "pub/extras/c++tools/aarch64");
    assert!(c
        .hosts_of(c.directory("pub/extras/c++tools/aarch64").unwrap().1)
        .is_empty());
    assert_eq!(c.directories.len(), 4);

    assert_eq!(c.repo_redirects.len(), 1);
    assert_eq!(
        (
            c.repo_redirects[0].from.as_str(),
            c.repo_redirects[0].to.as_str()
        ),
        ("rawhide", "fedora-rawhide")
    );
    assert_eq!(
        c.disabled_repos,
        ["fedora-40"],
        "false values are not disabled"
    );

    assert_eq!(
        c.netblock_countries,
        [
            ("203.0.113.5/32".parse().unwrap(), cc("FR")),
            ("198.18.0.0/15".parse().unwrap(), cc("DE")),
        ]
    );
    assert_eq!(
        c.continent_overrides,
        [(cc("IL"), "EU".to_owned()), (cc("TR"), "EU".to_owned())]
    );
    assert_eq!(c.continent_of(cc("TR")), Some("EU"));
    assert_eq!(c.continent_of(cc("JP")), Some("AS"), "the bundled table");
    assert!(c.categories.is_empty());
}

#[test]
fn file_details_with_alternates() {
    let c = normalized(fixture());
    let f = c.file(REPODATA41, "repomd.xml").unwrap();
    assert_eq!(f.versions.len(), 2, "current + one alternate");
    let (v2, v1) = (&f.versions[0], &f.versions[1]);
    assert_eq!((v2.timestamp, v2.size), (2_000, 13_089));
    assert_eq!(v2.sha256, SHA256_V2.to_ascii_lowercase(), "lower-case hex");
    assert_eq!(v2.sha1, "7abf21c51aea9c2d3437bf9c0e97650b15c02737");
    assert_eq!(v2.md5, "", "missing hash → empty");
    assert_eq!(v2.sha512, "");
    assert_eq!((v1.timestamp, v1.size), (1_000, 12_000));
    assert_eq!(v1.md5, MD5_V1);
    assert_eq!(v1.sha256, "", "empty hash → empty");
    assert_eq!(c.summary().alternates, 1);
}

#[test]
fn repeated_keys_last_wins() {
    let mut m = fixture();
    m.host_country_cache.push(is(100, "CA"));
    m.disabled_repository_cache.push(sb("fedora-40", false));
    m.repository_redirect_cache.push(ss("rawhide", "fedora-42"));
    let c = normalized(m);
    assert_eq!(host(&c, 100).1.country, cc("CA"));
    assert!(c.disabled_repos.is_empty());
    assert_eq!(c.repo_redirects[0].to, "fedora-42");
}

#[test]
fn dangling_references_are_dropped_with_warnings() {
    let mut m = fixture();
    // URL 77 is not in HCUrlCache; host 700 is only in Global; host 800
    // only in HostNetblockCache; URL 10 (host 200's) also under host 300.
    m.mirror_list_cache[0].by_host_id[0].value.push(77);
    m.mirror_list_cache[0].by_host_id[2].value.push(10);
    m.mirror_list_cache[1].global.push(700);
    m.host_netblock_cache.push(sri("10.0.0.0/8", &[800]));
    let converted = convert_ok(m);
    let w = converted.warnings.shown.join("\n");
    assert_eq!(converted.warnings.total, 4, "{w}");
    assert!(
        w.contains("URL id 77 (host 100) is not in HCUrlCache"),
        "{w}"
    );
    assert!(
        w.contains("host 700 is in Global but not in ByHostId"),
        "{w}"
    );
    assert!(w.contains("names host 800"), "{w}");
    assert!(
        w.contains("URL id 10 is listed under host 200 and host 300"),
        "{w}"
    );
    let mut c = converted.cache;
    c.normalize();
    // 700 is a host (a directory lists it) but is left out of that list.
    let (h700, _) = host(&c, 700);
    assert!(!c
        .hosts_of(c.directory(RAWHIDE).unwrap().1)
        .global()
        .contains(&h700));
    assert_eq!(urls_of(&c, DIR41, 100).len(), 3);
    assert_eq!(urls_of(&c, DIR41, 200).len(), 1);
    assert_eq!(urls_of(&c, DIR41, 300).len(), 1);
}

#[test]
fn a_host_whose_only_url_is_unknown_is_left_out_of_the_lists() {
    let mut m = fixture();
    m.hc_url_cache.push(is(60, "gopher://g.example/fedora"));
    m.mirror_list_cache[1].global.push(900);
    m.mirror_list_cache[1].by_host_id.push(iri(900, &[60]));
    let converted = convert_ok(m);
    assert!(converted.warnings.is_empty(), "{:?}", converted.warnings);
    assert_eq!(converted.stats.skipped_urls, 2);
    let mut c = converted.cache;
    c.normalize();
    let (h, _) = host(&c, 900);
    let d = c.hosts_of(c.directory(RAWHIDE).unwrap().1);
    assert!(!d.global().contains(&h));
    assert!(d.by_host().all(|(x, _)| x != h));
}

#[test]
fn structural_errors_name_the_entry() {
    let mut m = fixture();
    m.time = None;
    assert!(convert_err(m).contains("the required field Time (1) is missing"));

    let mut m = fixture();
    m.host_netblock_cache
        .push(sri("192.0.2.0/255.0.255.0", &[100]));
    let e = convert_err(m);
    assert!(e.contains("HostNetblockCache entry 5"), "{e}");
    assert!(e.contains("netmask 255.0.255.0 is not contiguous"), "{e}");

    let mut m = fixture();
    m.mirror_list_cache[0].global.push(-3);
    assert!(convert_err(m).contains("host id -3 is out of range"));

    let mut m = fixture();
    m.repo_arch_to_directory_name.push(ss("noarch", DIR41));
    assert!(convert_err(m).contains("key \"noarch\" is not of the form \"repo+arch\""));

    let mut m = fixture();
    m.mirror_list_cache.push(m.mirror_list_cache[1].clone());
    assert!(convert_err(m).contains(&format!("directory {RAWHIDE:?} is listed twice")));

    let mut m = fixture();
    m.hc_url_cache[0].value = None;
    assert!(convert_err(m).contains("HCUrlCache entry 0: the required field value (2) is missing"));

    let mut m = fixture();
    m.file_details_cache[0].file_details_cache_files[0].file_details[1].md5 =
        Some("not-hex".into());
    let e = convert_err(m);
    assert!(
        e.contains("repomd.xml, version 1: MD5 \"not-hex\" is not 32 hex digits"),
        "{e}"
    );

    let mut m = fixture();
    m.host_country_allowed_cache[0].value.push("Germany".into());
    assert!(convert_err(m).contains("\"Germany\" is not a country code"));

    let mut m = fixture();
    m.mirror_list_cache.clear();
    assert!(convert_err(m).contains("MirrorListCache (16) is empty"));
}

// ---- through the binary ----

/// A temporary directory with an MM2 cache and an output path.
struct Mm2Fixture {
    dir: tempfile::TempDir,
}

impl Mm2Fixture {
    fn new(proto_bytes: &[u8]) -> Mm2Fixture {
        let f = Mm2Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(f.proto(), proto_bytes).unwrap();
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn proto(&self) -> PathBuf {
        self.path("mirrorlist_cache.proto")
    }

    fn output(&self) -> PathBuf {
        self.path("mirrorlist.cache")
    }

    fn import(&self, extra: &[&str]) -> Output {
        let proto = self.proto();
        let output = self.output();
        let mut args = vec![
            "import-mm2",
            "--proto",
            proto.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run(&args)
    }

    /// Imports expecting exit 64 and the previous output untouched.
    fn import_refused(&self, extra: &[&str]) -> String {
        let before = b"previous cache, must survive".to_vec();
        std::fs::write(self.output(), &before).unwrap();
        let out = self.import(extra);
        assert_eq!(out.status.code(), Some(64), "stderr: {}", stderr(&out));
        assert_eq!(std::fs::read(self.output()).unwrap(), before);
        stderr(&out)
    }
}

#[test]
fn binary_imports_and_inspect_reports() {
    let f = Mm2Fixture::new(&fixture().encode_to_vec());
    let out = f.import(&[]);
    assert_success(&out);
    let summary = stdout(&out);
    assert!(summary.starts_with("imported "), "{summary}");
    assert!(summary.contains("6 hosts"), "{summary}");
    assert!(
        summary.contains("skipped 1 URLs with unknown schemes"),
        "{summary}"
    );
    assert!(
        summary.contains("1 hosts of unknown country (as ZZ)"),
        "{summary}"
    );
    assert_eq!(summary.lines().count(), 1);
    let cache = cachefile::load(&f.output()).unwrap();
    assert_eq!(cache, normalized(fixture()).with_source(&f.proto()));

    let out = run(&["inspect", f.output().to_str().unwrap()]);
    assert_success(&out);
    let report = stdout(&out);
    assert!(report.contains("rawhide -> fedora-rawhide"), "{report}");
    assert!(report.contains("disabled:       fedora-40"), "{report}");
}

trait WithSource {
    fn with_source(self, path: &Path) -> Cache;
}

impl WithSource for Cache {
    fn with_source(mut self, path: &Path) -> Cache {
        self.source = path.display().to_string();
        self
    }
}

#[test]
fn truncated_input_is_refused_and_the_output_kept() {
    let bytes = fixture().encode_to_vec();
    // Cut inside the last MirrorListCache entry (the last field written):
    // its length prefix promises bytes that are not there.
    for cut in [bytes.len() - 1, bytes.len() - 10] {
        let f = Mm2Fixture::new(&bytes[..cut]);
        let err = f.import_refused(&[]);
        assert!(err.contains(&f.proto().display().to_string()), "{err}");
        assert!(
            err.contains("not a valid MirrorManager2 mirrorlist cache"),
            "{err}"
        );
        assert!(err.contains("failed to decode Protobuf message"), "{err}");
    }
}

#[test]
fn random_bytes_are_refused() {
    // xorshift64: deterministic noise without a dependency.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..8 {
        let bytes: Vec<u8> = (0..(1000 + round * 997))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let f = Mm2Fixture::new(&bytes);
        let err = f.import_refused(&[]);
        assert!(err.contains(&f.proto().display().to_string()), "{err}");
    }
    // Empty and text files too.
    for bytes in [&b""[..], b"fedora-42 x86_64\n"] {
        let f = Mm2Fixture::new(bytes);
        f.import_refused(&[]);
    }
}

#[test]
fn wrong_files_are_refused_with_a_reason() {
    let f = Mm2Fixture::new(b"");
    let err = f.import_refused(&[]);
    assert!(
        err.contains("the required field Time (1) is missing"),
        "{err}"
    );

    // Our own cache file given as the MM2 cache.
    let good = Mm2Fixture::new(&fixture().encode_to_vec());
    assert_success(&good.import(&[]));
    let ours = std::fs::read(good.output()).unwrap();
    let f = Mm2Fixture::new(&ours);
    let err = f.import_refused(&[]);
    assert!(err.contains("(cache-builder's output), not"), "{err}");

    let f = Mm2Fixture::new(b"");
    std::fs::remove_file(f.proto()).unwrap();
    let err = f.import_refused(&[]);
    assert!(err.contains("cannot read"), "{err}");

    let mut m = fixture();
    m.host_netblock_cache
        .push(sri("192.0.2.0/255.255.0.255", &[100]));
    let f = Mm2Fixture::new(&m.encode_to_vec());
    let err = f.import_refused(&[]);
    assert!(
        err.contains("netmask 255.255.0.255 is not contiguous"),
        "{err}"
    );
    assert!(err.starts_with("cache-builder: "), "{err}");
}

#[test]
fn strict_refuses_dangling_references() {
    let mut m = fixture();
    m.mirror_list_cache[0].by_host_id[0].value.push(77);
    let f = Mm2Fixture::new(&m.encode_to_vec());
    let out = f.import(&[]);
    assert_success(&out);
    assert!(
        stderr(&out).contains("warning: ") && stderr(&out).contains("URL id 77"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("1 dangling references dropped"));

    let err = f.import_refused(&["--strict"]);
    assert!(err.contains("URL id 77"), "{err}");
}

#[test]
fn global_netblocks_are_checked_not_imported() {
    let f = Mm2Fixture::new(&fixture().encode_to_vec());
    let table = f.path("global_netblocks.txt");
    std::fs::write(&table, "1.0.0.0/24 13335\n2001:db8::/32 64496\n").unwrap();
    let out = f.import(&["--global-netblocks", table.to_str().unwrap()]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("ASN table checked (1 IPv4 + 1 IPv6 prefixes)"),
        "{}",
        stdout(&out)
    );

    std::fs::write(&table, "1.0.0.0/24 13335\n1.0.4.0/22 AS38803\n").unwrap();
    let err = f.import_refused(&["--global-netblocks", table.to_str().unwrap()]);
    assert!(
        err.contains(&format!(
            "{}:2: \"AS38803\" is not an AS number",
            table.display()
        )),
        "{err}"
    );
}

#[test]
fn country_continent_file() {
    let f = Mm2Fixture::new(&fixture().encode_to_vec());
    let csv = f.path("country_continent.csv");
    // MirrorManager's own table has `--` lines for GeoIP pseudo-countries.
    std::fs::write(&csv, "# cc,continent\nUS,NA\nDE,EU\nA1,--\nO1,--\n").unwrap();
    let out = f.import(&["--country-continent", csv.to_str().unwrap()]);
    assert_success(&out);
    let cache = cachefile::load(&f.output()).unwrap();
    assert_eq!(
        cache.country_continent,
        [(cc("DE"), "EU".to_owned()), (cc("US"), "NA".to_owned())]
    );

    std::fs::write(&csv, "US,NA\nDE,Europe\n").unwrap();
    let err = f.import_refused(&["--country-continent", csv.to_str().unwrap()]);
    assert!(err.contains(":2: country DE"), "{err}");
}

#[test]
fn reload_pidfile_sends_sighup() {
    let f = Mm2Fixture::new(&fixture().encode_to_vec());
    // A stand-in server: `sleep` dies of SIGHUP, which wait() then reports.
    let mut child = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let pidfile = f.path("server.pid");
    std::fs::write(&pidfile, format!("{}\n", child.id())).unwrap();
    let out = f.import(&["--reload-pidfile", pidfile.to_str().unwrap()]);
    let status = child.wait().unwrap();
    assert_success(&out);
    assert_eq!(status.signal(), Some(nix::libc::SIGHUP));
    assert!(stdout(&out).contains(&format!("sent SIGHUP to pid {}", child.id())));
}

// ---- the real-size example ----

/// `../shared/data/mm2/` relative to the workspace root.
fn example_dir() -> Option<PathBuf> {
    let dir = repo_root().join("../shared/data/mm2");
    if dir.join("mirrorlist_cache.proto").is_file() {
        Some(dir)
    } else {
        println!(
            "note: {} is absent; skipping the real-size MirrorManager2 import",
            dir.display()
        );
        None
    }
}

#[test]
fn real_example_imports_with_the_expected_counts() {
    let Some(dir) = example_dir() else { return };
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("mirrorlist.cache");
    let out = run(&[
        "import-mm2",
        "--proto",
        dir.join("mirrorlist_cache.proto").to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--country-continent",
        dir.join("country_continent.csv").to_str().unwrap(),
    ]);
    assert_success(&out);
    assert!(stderr(&out).is_empty(), "no warnings: {}", stderr(&out));

    let report = stdout(&run(&["inspect", output.to_str().unwrap()]));
    for line in [
        "hosts:          400",
        "countries:      60",
        "directories:    3606",
        "repositories:   92",
    ] {
        assert!(report.contains(line), "{line:?} not in\n{report}");
    }

    let cache = cachefile::load(&output).unwrap();
    // Every host of hosts.tsv: id, name, country, ASN, netblocks.
    let hosts = std::fs::read_to_string(dir.join("hosts.tsv")).unwrap();
    let by_id: BTreeMap<u32, &Host> = cache.hosts.iter().map(|h| (h.id, h)).collect();
    let (mut rows, mut unnamed) = (0, 0);
    for line in hosts.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let id: u32 = cols[0].parse().unwrap();
        let h = by_id[&id];
        // MM2's cache has no host names: they come from the host's URLs,
        // and the hosts that carry no directory have none.
        if h.name.starts_with("mm2-host-") {
            unnamed += 1;
        } else {
            assert_eq!(h.name, cols[1], "host {id}");
        }
        assert_eq!(h.country.as_str(), cols[2], "host {id}");
        if !h.asns.is_empty() {
            assert_eq!(h.asns, [cols[3].parse::<u32>().unwrap()], "host {id}");
        }
        let mut expected: Vec<IpNet> = cols
            .get(4)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.split(',')
                    .map(|n| n.parse::<IpNet>().unwrap().trunc())
                    .collect()
            })
            .unwrap_or_default();
        expected.sort_unstable();
        assert_eq!(h.netblocks, expected, "host {id}");
        rows += 1;
    }
    assert_eq!(rows, 400);
    assert_eq!(unnamed, 9, "the hosts in no directory");
    // A spot fact, spelled out.
    let am = by_id[&8];
    assert_eq!(
        (am.name.as_str(), am.country.as_str(), am.asns.as_slice()),
        ("ftp.am.debian.org", "AM", &[23591][..])
    );
    assert!(am.netblocks.contains(&"118.130.135.0/24".parse().unwrap()));
    assert_eq!(cache.hosts.iter().filter(|h| h.asn_clients).count(), 64);

    // Every repository of repos.tsv maps to its directory.
    let repos = std::fs::read_to_string(dir.join("repos.tsv")).unwrap();
    for line in repos.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let r = cache
            .repo(cols[0], cols[1])
            .unwrap_or_else(|| panic!("{} {}", cols[0], cols[1]));
        assert_eq!(cache.directories[r.directory as usize].path, cols[2]);
    }
    let r = cache.repo("fedora-38", "x86_64").unwrap();
    let d = &cache.directories[r.directory as usize];
    assert_eq!(d.path, "pub/fedora/linux/releases/38/Everything/x86_64/os");
    assert!(!cache.hosts_of(d).global().is_empty());
    assert!(cache
        .file(&format!("{}/repodata", d.path), "repomd.xml")
        .is_some());
}

#[test]
fn sample_asn_table_is_valid_and_covers_the_sample_asns() {
    let dir = repo_root().join("data/sample");
    let table = dir.join("global_netblocks.txt");
    let stats = cache_builder::mm2::global_netblocks::validate(&table).unwrap();
    assert!(stats.v4 > 0 && stats.v6 > 0);
    let text = std::fs::read_to_string(&table).unwrap();
    let listed: std::collections::BTreeSet<u32> = text
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect();
    let sample = std::fs::read_to_string(dir.join("mirrors.toml")).unwrap();
    for line in sample.lines().filter(|l| l.starts_with("asns = [")) {
        let asn: u32 = line
            .trim_start_matches("asns = [")
            .trim_end_matches(']')
            .parse()
            .unwrap();
        assert!(
            listed.contains(&asn),
            "AS{asn} has no prefix in {}",
            table.display()
        );
    }
}
