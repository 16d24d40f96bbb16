//! The data model: everything `mirrorlist-server` needs to answer a request,
//! as `cache-builder` writes it into the cache file.
//!
//! The model is shaped after MirrorManager's mirrorlist cache so that both our
//! own mirror description and MirrorManager2's `mirrorlist_cache.proto` map
//! onto it without loss: hosts, host-category URLs (a category's top URL on
//! one host), directories with the hosts that carry them grouped the way
//! selection wants them, the repo+arch → directory map, redirects, disabled
//! repositories, file details for metalinks, and the continent table.
//!
//! The carrying hosts are the bulk of a cache (ten thousand directories
//! times hundreds of hosts), so they are kept as [`HostSet`]s: a few flat
//! vectors per set rather than a vector per host, and each distinct set
//! once, referred to by index from every directory with those hosts. A
//! Fedora-scale cache built from a description decodes to about 20 MB
//! instead of about 250 MB with a vector per host.
//!
//! Hosts and host-category URLs are referred to by their index in
//! [`Cache::hosts`] and [`Cache::host_urls`] (a `u32`), not by the operator's
//! ids, so that lookups while serving are plain slice indexing. Every list the
//! server searches is sorted here, at build time, so that the server can use
//! binary search or build its indexes in one pass.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Index of a host in [`Cache::hosts`].
pub type HostIdx = u32;
/// Index of a host-category URL in [`Cache::host_urls`].
pub type UrlIdx = u32;

/// A two-letter country code (ISO 3166-1 alpha-2, upper case), stored inline
/// so that comparisons and map keys cost no allocation.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Country(pub [u8; 2]);

impl Country {
    /// Parses a two-letter code, case-insensitively. Returns `None` for
    /// anything that is not exactly two ASCII letters.
    pub fn parse(s: &str) -> Option<Country> {
        let b = s.as_bytes();
        if b.len() == 2 && b[0].is_ascii_alphabetic() && b[1].is_ascii_alphabetic() {
            Some(Country([
                b[0].to_ascii_uppercase(),
                b[1].to_ascii_uppercase(),
            ]))
        } else {
            None
        }
    }

    /// The code as a string slice (two ASCII upper-case letters when made
    /// by [`Country::parse`]; a code built from other bytes reads as what
    /// UTF-8 makes of them, or `??`).
    pub fn as_str(&self) -> &str {
        // Sliced out of a static string of all 676 letter pairs: an answer
        // prints a dozen codes, and a UTF-8 check each cost ~60
        // instructions (bench/callgrind).
        let [a, b] = self.0;
        if a.is_ascii_uppercase() && b.is_ascii_uppercase() {
            let i = 2 * (usize::from(a - b'A') * 26 + usize::from(b - b'A'));
            return &LETTER_PAIRS[i..i + 2];
        }
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

/// "AAABAC…ZZ": every pair of upper-case letters, in order.
const LETTER_PAIRS: &str = match std::str::from_utf8(&letter_pairs()) {
    Ok(s) => s,
    Err(_) => panic!("letters are ASCII"),
};

const fn letter_pairs() -> [u8; 2 * 26 * 26] {
    let mut pairs = [0u8; 2 * 26 * 26];
    let mut i = 0;
    while i < 26 * 26 {
        pairs[2 * i] = b'A' + (i / 26) as u8;
        pairs[2 * i + 1] = b'A' + (i % 26) as u8;
        i += 1;
    }
    pairs
}

impl std::fmt::Debug for Country {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Country {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which address families a host is known to serve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Families {
    /// Not known: the host is offered to every client.
    #[default]
    Unknown,
    /// IPv4 only: not offered to IPv6 clients.
    Ipv4,
    /// IPv6 only: not offered to IPv4 clients.
    Ipv6,
    /// Both families.
    Both,
}

impl Families {
    /// Whether a client reaching us over `addr`'s family may be sent here.
    pub fn serves(self, addr: &IpAddr) -> bool {
        matches!(
            (self, addr),
            (Families::Unknown | Families::Both, _)
                | (Families::Ipv4, IpAddr::V4(_))
                | (Families::Ipv6, IpAddr::V6(_))
        )
    }
}

/// The URL scheme of a host-category URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// `https://`
    Https,
    /// `http://`
    Http,
    /// `ftp://`
    Ftp,
    /// `rsync://`
    Rsync,
}

impl Protocol {
    /// The protocol of a URL, from its scheme; `None` for other schemes.
    pub fn of_url(url: &str) -> Option<Protocol> {
        let (scheme, _) = url.split_once("://")?;
        Protocol::parse(scheme)
    }

    /// Parses a protocol name as used in `protocol=` (case-insensitive).
    pub fn parse(name: &str) -> Option<Protocol> {
        if name.eq_ignore_ascii_case("https") {
            Some(Protocol::Https)
        } else if name.eq_ignore_ascii_case("http") {
            Some(Protocol::Http)
        } else if name.eq_ignore_ascii_case("ftp") {
            Some(Protocol::Ftp)
        } else if name.eq_ignore_ascii_case("rsync") {
            Some(Protocol::Rsync)
        } else {
            None
        }
    }

    /// The lower-case name, as in a metalink's `protocol` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Https => "https",
            Protocol::Http => "http",
            Protocol::Ftp => "ftp",
            Protocol::Rsync => "rsync",
        }
    }
}

/// The whole cache: what one cache file holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cache {
    /// When the cache was built, Unix seconds.
    pub built_at: u64,
    /// Where the data came from, for `inspect` and logs (e.g. the config path).
    pub source: String,
    /// Product categories ("Fedora Linux", "EPEL"), in description order.
    pub categories: Vec<Category>,
    /// All hosts; [`HostIdx`] indexes this list.
    pub hosts: Vec<Host>,
    /// Host-category URLs; [`UrlIdx`] indexes this list.
    pub host_urls: Vec<HostUrl>,
    /// Directories, sorted by `path`.
    pub directories: Vec<Directory>,
    /// The distinct host sets that directories refer to, in order of first
    /// use by `directories` (after [`Cache::normalize`]).
    pub host_sets: Vec<HostSet>,
    /// `(repo, arch)` → directory, sorted by `(repo, arch)`.
    pub repos: Vec<Repo>,
    /// Repository renames, sorted by `from`. Applied before lookup.
    pub repo_redirects: Vec<RepoRedirect>,
    /// Disabled repository names, sorted.
    pub disabled_repos: Vec<String>,
    /// File details for metalinks, sorted by `directory`.
    pub file_details: Vec<DirectoryFiles>,
    /// Country → continent, sorted by country.
    pub country_continent: Vec<(Country, String)>,
    /// Country → continent overrides, applied over `country_continent`.
    pub continent_overrides: Vec<(Country, String)>,
    /// Netblock → country overrides of the GeoIP answer, most specific first.
    pub netblock_countries: Vec<(IpNet, Country)>,
}

/// A product category: a subtree of the master tree mirrored as one unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// Display name, e.g. "Fedora Linux".
    pub name: String,
    /// Top directory in the master tree, e.g. `fedora/linux`; empty when
    /// unknown (an imported MirrorManager2 cache does not say).
    pub topdir: String,
}

/// A mirror host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// The operator's id (MirrorManager's host id, or the position in the
    /// description). Shown in logs and `inspect`, never used for lookups.
    pub id: u32,
    /// Host name as the operator knows it.
    pub name: String,
    /// The site (organisation) that runs the host, if known.
    pub site: String,
    /// Where the host is.
    pub country: Country,
    /// Relative bandwidth: the weight of the shuffle. At least 1.
    pub bandwidth: u32,
    /// Private hosts are offered only to clients matched by netblock or ASN.
    pub private: bool,
    /// When non-empty, the only client countries this host serves (sorted).
    pub allowed_countries: Vec<Country>,
    /// The host's own netblocks: clients inside them get this host first.
    pub netblocks: Vec<IpNet>,
    /// Autonomous systems whose clients get this host (when `asn_clients`).
    pub asns: Vec<u32>,
    /// Whether clients in the host's ASNs are sent here first.
    pub asn_clients: bool,
    /// Address families the host serves.
    pub families: Families,
}

/// A category's top URL on one host, e.g. `https://mirror.example/fedora`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostUrl {
    /// The host that serves this URL.
    pub host: HostIdx,
    /// The URL, without a trailing slash.
    pub url: String,
    /// Its scheme.
    pub protocol: Protocol,
}

/// A directory of the master tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    /// Path relative to the master tree, no leading or trailing slash.
    pub path: String,
    /// Appended (after a `/`) to a host-category URL to reach this directory.
    pub subpath: String,
    /// The hosts that carry it: an index in [`Cache::host_sets`].
    pub hosts: u32,
    /// MirrorManager's "ordered" flag.
    pub ordered: bool,
}

/// The hosts that carry a directory, grouped the way selection wants them.
///
/// Most directories are carried by exactly the same hosts as their
/// neighbours, so directories refer to a set by index and identical sets
/// are stored once ([`Cache::normalize`] merges them). Each set is a handful
/// of flat vectors rather than a vector per host, and the public lists
/// (all, and by country) hold positions among the carrying hosts ("slots")
/// rather than host indexes, so that selection reaches a host's URLs
/// without a search and the server needs no tables of its own for them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostSet {
    /// Every host that carries it (private ones too), sorted, each with the
    /// end of its URLs in `urls` (its start is the previous end).
    hosts: Vec<(HostIdx, u32)>,
    /// The host-category URLs through which each host reaches it.
    urls: Vec<UrlIdx>,
    /// The public carrying hosts, as slots, in host order.
    global: Vec<u32>,
    /// Countries with public carrying hosts, sorted, each with the end of
    /// its run in `country_slots`.
    countries: Vec<(Country, u32)>,
    /// Each country's public carrying hosts, as slots, in host order.
    country_slots: Vec<u32>,
}

/// The empty set: what a directory with a dangling set index gets.
static EMPTY_HOST_SET: HostSet = HostSet {
    hosts: Vec::new(),
    urls: Vec::new(),
    global: Vec::new(),
    countries: Vec::new(),
    country_slots: Vec::new(),
};

/// Run `i` of `items`, whose runs end where `ends` say (each run starts
/// where the previous one ended).
fn run<'a, T, U>(ends: &[(T, u32)], items: &'a [U], i: usize) -> &'a [U] {
    let start = if i == 0 { 0 } else { ends[i - 1].1 };
    &items[start as usize..ends[i].1 as usize]
}

/// Whether `ends` are the rising ends of consecutive runs within `len`.
fn runs_within<T>(ends: &[(T, u32)], len: usize) -> bool {
    let mut prev = 0;
    ends.iter().all(|&(_, end)| {
        let ok = prev <= end && end as usize <= len;
        prev = end;
        ok
    })
}

impl HostSet {
    /// Builds a set from its three lists, in any order: `by_host`, every
    /// carrying host with the URLs that reach the directory (kept in the
    /// order given per host); `global`, the public hosts; `by_country`,
    /// country → public hosts there (a country listed twice is merged).
    /// Public hosts that are not in `by_host` are left out (only carrying
    /// hosts are ever listed), and so are countries left with none.
    pub fn new(
        global: Vec<HostIdx>,
        by_country: impl IntoIterator<Item = (Country, Vec<HostIdx>)>,
        by_host: impl IntoIterator<Item = (HostIdx, Vec<UrlIdx>)>,
    ) -> HostSet {
        let mut by_host: Vec<(HostIdx, Vec<UrlIdx>)> = by_host.into_iter().collect();
        by_host.sort_by_key(|(h, _)| *h);
        let mut hosts = Vec::with_capacity(by_host.len());
        let mut urls = Vec::with_capacity(by_host.iter().map(|(_, u)| u.len()).sum());
        for (h, u) in by_host {
            urls.extend(u);
            hosts.push((h, urls.len() as u32));
        }
        let slot = |h: HostIdx| {
            hosts
                .binary_search_by_key(&h, |(x, _)| *x)
                .ok()
                .map(|s| s as u32)
        };
        let slots_of = |list: &mut dyn Iterator<Item = HostIdx>| {
            let mut slots: Vec<u32> = list.filter_map(slot).collect();
            slots.sort_unstable();
            slots.dedup();
            slots
        };
        let global = slots_of(&mut global.into_iter());
        let mut by_country: Vec<(Country, Vec<HostIdx>)> = by_country.into_iter().collect();
        by_country.sort_by_key(|(c, _)| *c);
        let mut countries: Vec<(Country, u32)> = Vec::with_capacity(by_country.len());
        let mut country_slots = Vec::new();
        let mut i = 0;
        while i < by_country.len() {
            let c = by_country[i].0;
            let same = by_country[i..].iter().take_while(|(x, _)| *x == c).count();
            let run = slots_of(
                &mut by_country[i..i + same]
                    .iter()
                    .flat_map(|(_, l)| l.iter().copied()),
            );
            if !run.is_empty() {
                country_slots.extend(run);
                countries.push((c, country_slots.len() as u32));
            }
            i += same;
        }
        HostSet {
            hosts,
            urls,
            global,
            countries,
            country_slots,
        }
    }

    /// How many hosts carry the directory.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// The carrying host in `slot` (slots are in host order).
    pub fn host(&self, slot: usize) -> HostIdx {
        self.hosts[slot].0
    }

    /// The URLs through which the host in `slot` reaches the directory.
    pub fn urls(&self, slot: usize) -> &[UrlIdx] {
        run(&self.hosts, &self.urls, slot)
    }

    /// The slot of `host`, if it carries the directory.
    pub fn host_position(&self, host: HostIdx) -> Option<usize> {
        self.hosts.binary_search_by_key(&host, |(h, _)| *h).ok()
    }

    /// Every carrying host with its URLs, in host order.
    pub fn by_host(&self) -> impl ExactSizeIterator<Item = (HostIdx, &[UrlIdx])> + '_ {
        (0..self.hosts.len()).map(|i| (self.host(i), self.urls(i)))
    }

    /// The slots of the public carrying hosts.
    pub fn global_slots(&self) -> &[u32] {
        &self.global
    }

    /// The public carrying hosts, sorted (allocates: for tools and tests).
    pub fn global(&self) -> Vec<HostIdx> {
        self.global.iter().map(|&s| self.host(s as usize)).collect()
    }

    /// How many countries have public carrying hosts.
    pub fn country_count(&self) -> usize {
        self.countries.len()
    }

    /// The code of the `i`th country (countries are sorted).
    pub fn country_code(&self, i: usize) -> Country {
        self.countries[i].0
    }

    /// The slots of the `i`th country's public hosts.
    pub fn country_slots(&self, i: usize) -> &[u32] {
        run(&self.countries, &self.country_slots, i)
    }

    /// The position of `country` among the set's countries.
    pub fn country_position(&self, country: Country) -> Option<usize> {
        self.countries
            .binary_search_by_key(&country, |(c, _)| *c)
            .ok()
    }

    /// Every country with its public hosts, sorted (allocates: for tools
    /// and tests).
    pub fn by_country(&self) -> Vec<(Country, Vec<HostIdx>)> {
        (0..self.countries.len())
            .map(|i| {
                let hosts = self
                    .country_slots(i)
                    .iter()
                    .map(|&s| self.host(s as usize))
                    .collect();
                (self.country_code(i), hosts)
            })
            .collect()
    }

    /// Reorders each host's URLs by `key` (the server puts them in protocol
    /// preference order).
    pub fn sort_urls_by_key<K: Ord>(&mut self, mut key: impl FnMut(UrlIdx) -> K) {
        let mut start = 0;
        for &(_, end) in &self.hosts {
            self.urls[start as usize..end as usize].sort_by_key(|&u| key(u));
            start = end;
        }
    }

    /// Whether the runs are well formed (ends rising, within their
    /// vectors) and every slot is a carrying host's, so that the accessors
    /// cannot index out of bounds. Sets built with [`HostSet::new`] always
    /// are; a decoded one is checked.
    pub fn is_well_formed(&self) -> bool {
        let n = self.hosts.len();
        runs_within(&self.hosts, self.urls.len())
            && runs_within(&self.countries, self.country_slots.len())
            && self
                .global
                .iter()
                .chain(&self.country_slots)
                .all(|&s| (s as usize) < n)
    }

    /// Whether the set is well formed and refers to nothing past `hosts`
    /// hosts and `urls` URLs.
    pub fn refers_within(&self, hosts: usize, urls: usize) -> bool {
        self.is_well_formed()
            && self.hosts.iter().all(|&(h, _)| (h as usize) < hosts)
            && self.urls.iter().all(|&u| (u as usize) < urls)
    }

    /// The set without references past `hosts` hosts or `urls` URLs, and
    /// well formed (a malformed set becomes empty).
    pub fn without_dangling(&self, hosts: usize, urls: usize) -> HostSet {
        if !self.is_well_formed() {
            return HostSet::default();
        }
        let host_ok = |h: &HostIdx| (*h as usize) < hosts;
        HostSet::new(
            self.global().into_iter().filter(host_ok).collect(),
            self.by_country()
                .into_iter()
                .map(|(c, list)| (c, list.into_iter().filter(host_ok).collect())),
            self.by_host().filter(|(h, _)| host_ok(h)).map(|(h, list)| {
                (
                    h,
                    list.iter()
                        .copied()
                        .filter(|&u| (u as usize) < urls)
                        .collect(),
                )
            }),
        )
    }

    /// Whether the set has no hosts at all.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.global.is_empty() && self.countries.is_empty()
    }
}

/// A repository name + architecture mapped to a directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repo {
    /// Repository name, e.g. `fedora-42`.
    pub name: String,
    /// Architecture, e.g. `x86_64`.
    pub arch: String,
    /// Index in [`Cache::directories`].
    pub directory: u32,
}

/// A repository rename: requests for `from` are answered as for `to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoRedirect {
    /// The name clients ask for.
    pub from: String,
    /// The name it is answered as.
    pub to: String,
}

/// The files of one directory that metalinks describe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryFiles {
    /// Directory path relative to the master tree (e.g. `…/os/repodata`).
    pub directory: String,
    /// Files, sorted by name.
    pub files: Vec<FileEntry>,
}

/// One file and its known versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name, e.g. `repomd.xml`.
    pub name: String,
    /// Versions, newest first. The first is current; the rest are alternates.
    pub versions: Vec<FileDetails>,
}

/// Size, time and hashes of one version of a file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDetails {
    /// Modification time, Unix seconds.
    pub timestamp: u64,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex digests; empty when unknown.
    pub md5: String,
    /// SHA-1, lower-case hex.
    pub sha1: String,
    /// SHA-256, lower-case hex.
    pub sha256: String,
    /// SHA-512, lower-case hex.
    pub sha512: String,
}

/// Counts shown by `cache-builder inspect` and the server at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Number of hosts.
    pub hosts: usize,
    /// Distinct host countries.
    pub countries: usize,
    /// Categories.
    pub categories: usize,
    /// Directories.
    pub directories: usize,
    /// Distinct host sets the directories share.
    pub host_sets: usize,
    /// repo+arch pairs.
    pub repos: usize,
    /// Files with details (current versions).
    pub files: usize,
    /// Alternate (older) versions kept.
    pub alternates: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} hosts, {} countries, {} categories, {} directories ({} host sets), {} repositories, {} files ({} alternates)",
            self.hosts,
            self.countries,
            self.categories,
            self.directories,
            self.host_sets,
            self.repos,
            self.files,
            self.alternates
        )
    }
}

impl Cache {
    /// Counts of what the cache holds.
    pub fn summary(&self) -> Summary {
        let mut countries: Vec<Country> = self.hosts.iter().map(|h| h.country).collect();
        countries.sort_unstable();
        countries.dedup();
        let files = self.file_details.iter().map(|d| d.files.len()).sum();
        let alternates = self
            .file_details
            .iter()
            .flat_map(|d| &d.files)
            .map(|f| f.versions.len().saturating_sub(1))
            .sum();
        Summary {
            hosts: self.hosts.len(),
            countries: countries.len(),
            categories: self.categories.len(),
            directories: self.directories.len(),
            host_sets: self.host_sets.len(),
            repos: self.repos.len(),
            files,
            alternates,
        }
    }

    /// Finds a directory by path (binary search; `directories` is sorted).
    pub fn directory(&self, path: &str) -> Option<(u32, &Directory)> {
        let i = self
            .directories
            .binary_search_by(|d| d.path.as_str().cmp(path))
            .ok()?;
        Some((i as u32, &self.directories[i]))
    }

    /// Finds the directory of a repo+arch pair.
    pub fn repo(&self, name: &str, arch: &str) -> Option<&Repo> {
        let i = self
            .repos
            .binary_search_by(|r| (r.name.as_str(), r.arch.as_str()).cmp(&(name, arch)))
            .ok()?;
        Some(&self.repos[i])
    }

    /// The file details of `directory`/`name`, if recorded.
    pub fn file(&self, directory: &str, name: &str) -> Option<&FileEntry> {
        let d = self
            .file_details
            .binary_search_by(|d| d.directory.as_str().cmp(directory))
            .ok()?;
        let files = &self.file_details[d].files;
        let f = files.binary_search_by(|f| f.name.as_str().cmp(name)).ok()?;
        Some(&files[f])
    }

    /// Puts every list into the order the lookups above and the server rely
    /// on. Builders call this once before writing; it is idempotent.
    pub fn normalize(&mut self) {
        // Directories are referred to by index from `repos`: sort them and
        // remap the indexes.
        let mut order: Vec<u32> = (0..self.directories.len() as u32).collect();
        order.sort_by(|&a, &b| {
            self.directories[a as usize]
                .path
                .cmp(&self.directories[b as usize].path)
        });
        let mut new_index = vec![0u32; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old as usize] = new as u32;
        }
        let mut old_dirs: Vec<Option<Directory>> = std::mem::take(&mut self.directories)
            .into_iter()
            .map(Some)
            .collect();
        self.directories = order
            .iter()
            .map(|&old| old_dirs[old as usize].take().expect("each index once"))
            .collect();
        for r in &mut self.repos {
            r.directory = new_index[r.directory as usize];
        }
        self.share_host_sets();
        self.repos
            .sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
        self.repo_redirects.sort_by(|a, b| a.from.cmp(&b.from));
        self.disabled_repos.sort();
        self.disabled_repos.dedup();
        self.file_details
            .sort_by(|a, b| a.directory.cmp(&b.directory));
        for d in &mut self.file_details {
            d.files.sort_by(|a, b| a.name.cmp(&b.name));
        }
        self.country_continent.sort_by_key(|(c, _)| *c);
        self.continent_overrides.sort_by_key(|(c, _)| *c);
        // Most specific first, so the first match is the best one.
        self.netblock_countries
            .sort_by(|a, b| b.0.prefix_len().cmp(&a.0.prefix_len()).then(a.0.cmp(&b.0)));
        for h in &mut self.hosts {
            h.allowed_countries.sort_unstable();
            h.allowed_countries.dedup();
            h.bandwidth = h.bandwidth.max(1);
        }
    }

    /// The host set of `dir` (the empty set if its index is dangling).
    pub fn hosts_of(&self, dir: &Directory) -> &HostSet {
        self.host_sets
            .get(dir.hosts as usize)
            .unwrap_or(&EMPTY_HOST_SET)
    }

    /// Appends `set` and returns its index, for [`Directory::hosts`].
    /// Duplicates are fine: [`Cache::normalize`] merges them.
    pub fn push_host_set(&mut self, set: HostSet) -> u32 {
        self.host_sets.push(set);
        (self.host_sets.len() - 1) as u32
    }

    /// Stores each distinct host set once, in order of first use by the
    /// (sorted) directories, and drops the unused ones; a dangling index
    /// gets the empty set. Deterministic, so equal inputs give equal files.
    fn share_host_sets(&mut self) {
        use std::hash::{BuildHasher, BuildHasherDefault};
        // FxHash, and sets compared only on a hash match: the server
        // normalizes every cache it loads, and SipHash over a million host
        // entries (plus a clone of every set as a map key) cost 20 ms there.
        let hasher = BuildHasherDefault::<rustc_hash::FxHasher>::default();
        let mut old: Vec<Option<HostSet>> = std::mem::take(&mut self.host_sets)
            .into_iter()
            .map(Some)
            .collect();
        // Old index → new index, once known; content hash → new indexes.
        let mut remap: Vec<Option<u32>> = vec![None; old.len()];
        let mut by_hash: rustc_hash::FxHashMap<u64, Vec<u32>> = Default::default();
        for d in &mut self.directories {
            let i = d.hosts as usize;
            if let Some(Some(new)) = remap.get(i) {
                d.hosts = *new;
                continue;
            }
            let set = old.get_mut(i).and_then(Option::take).unwrap_or_default();
            let candidates = by_hash.entry(hasher.hash_one(&set)).or_default();
            let new = match candidates
                .iter()
                .find(|&&n| self.host_sets[n as usize] == set)
            {
                Some(&n) => n,
                None => {
                    let n = self.host_sets.len() as u32;
                    self.host_sets.push(set);
                    candidates.push(n);
                    n
                }
            };
            if let Some(slot) = remap.get_mut(i) {
                *slot = Some(new);
            }
            d.hosts = new;
        }
    }

    /// The continent of a country, honouring the overrides.
    pub fn continent_of(&self, country: Country) -> Option<&str> {
        fn lookup(table: &[(Country, String)], country: Country) -> Option<&str> {
            table
                .binary_search_by_key(&country, |(c, _)| *c)
                .ok()
                .map(|i| table[i].1.as_str())
        }
        lookup(&self.continent_overrides, country)
            .or_else(|| lookup(&self.country_continent, country))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_codes_read_as_their_bytes() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let c = Country([a, b]);
                let want = std::str::from_utf8(&[a, b]).map_or("??".to_owned(), str::to_owned);
                assert_eq!(c.as_str(), want, "{a} {b}");
            }
        }
        assert_eq!(Country::parse("de").unwrap().as_str(), "DE");
        assert_eq!(Country::parse("ZZ").unwrap().as_str(), "ZZ");
    }

    #[test]
    fn country_parse() {
        assert_eq!(Country::parse("de").unwrap().as_str(), "DE");
        assert!(Country::parse("D").is_none());
        assert!(Country::parse("DEU").is_none());
        assert!(Country::parse("1E").is_none());
    }

    #[test]
    fn protocol_of_url() {
        assert_eq!(Protocol::of_url("https://a/b"), Some(Protocol::Https));
        assert_eq!(Protocol::of_url("rsync://a/b"), Some(Protocol::Rsync));
        assert_eq!(Protocol::of_url("gopher://a"), None);
        assert_eq!(Protocol::of_url("no-scheme"), None);
    }

    #[test]
    fn families() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(Families::Ipv4.serves(&v4));
        assert!(!Families::Ipv4.serves(&v6));
        assert!(!Families::Ipv6.serves(&v4));
        assert!(Families::Unknown.serves(&v6));
    }

    #[test]
    fn normalize_remaps_directory_indexes() {
        let dir = |p: &str| Directory {
            path: p.into(),
            subpath: p.into(),
            hosts: 0,
            ordered: false,
        };
        let mut c = Cache {
            directories: vec![dir("b"), dir("a")],
            repos: vec![Repo {
                name: "r".into(),
                arch: "x".into(),
                directory: 0,
            }],
            ..Cache::default()
        };
        c.normalize();
        assert_eq!(
            c.directories[c.repo("r", "x").unwrap().directory as usize].path,
            "b"
        );
        assert_eq!(c.directory("a").unwrap().0, 0);
    }

    #[test]
    fn host_sets_are_sorted_merged_and_shared() {
        let de = Country::parse("DE").unwrap();
        let fr = Country::parse("FR").unwrap();
        let us = Country::parse("US").unwrap();
        let set = HostSet::new(
            vec![3, 1, 3, 8],
            vec![
                (fr, vec![3]),
                (de, vec![2, 1]),
                (fr, vec![1]),
                (us, vec![8]),
            ],
            vec![(3, vec![5]), (2, vec![4]), (1, vec![2, 1])],
        );
        assert!(set.is_well_formed());
        // 8 carries nothing: left out, and US with it.
        assert_eq!(set.global(), [1, 3]);
        assert_eq!(set.global_slots(), [0, 2]);
        assert_eq!(set.by_country(), [(de, vec![1, 2]), (fr, vec![1, 3])]);
        assert_eq!(set.country_slots(1), [0, 2]);
        assert_eq!(
            set.by_host().collect::<Vec<_>>(),
            [(1, &[2, 1][..]), (2, &[4][..]), (3, &[5][..])]
        );
        assert_eq!(set.country_position(fr), Some(1));
        assert_eq!(set.country_position(us), None);
        assert_eq!(set.host_position(3), Some(2));
        assert_eq!(set.host_position(8), None);

        let dir = |p: &str, hosts: u32| Directory {
            path: p.into(),
            subpath: p.into(),
            hosts,
            ordered: false,
        };
        let mut c = Cache {
            directories: vec![dir("c", 0), dir("b", 1), dir("a", 2), dir("d", 9)],
            host_sets: vec![set.clone(), HostSet::default(), set.clone(), set.clone()],
            ..Cache::default()
        };
        c.normalize();
        // a (old 2) first, then b (old 1, empty), c (old 0, equal to a's),
        // d (dangling: empty).
        assert_eq!(c.host_sets, [set.clone(), HostSet::default()]);
        let ids: Vec<u32> = c.directories.iter().map(|d| d.hosts).collect();
        assert_eq!(ids, [0, 1, 0, 1]);
        let again = c.clone();
        c.normalize();
        assert_eq!(c, again);
    }

    #[test]
    fn malformed_host_sets_are_emptied() {
        let de = Country::parse("DE").unwrap();
        let mut set = HostSet::new(
            vec![0, 7],
            vec![(de, vec![0, 8])],
            vec![(0, vec![1, 9]), (8, vec![0])],
        );
        let clean = set.without_dangling(2, 5);
        assert_eq!(clean.global(), [0]);
        assert_eq!(clean.by_country(), [(de, vec![0])]);
        assert_eq!(clean.by_host().collect::<Vec<_>>(), [(0, &[1][..])]);
        assert!(set.refers_within(9, 10) && !set.refers_within(2, 10));
        set.hosts[0].1 = 40;
        assert!(!set.is_well_formed());
        assert!(set.without_dangling(2, 5).is_empty());
        let mut bad_slot = HostSet::new(vec![0], vec![], vec![(0, vec![])]);
        bad_slot.global[0] = 3;
        assert!(!bad_slot.is_well_formed());
    }
}
