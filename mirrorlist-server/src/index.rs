//! The cache, indexed for serving.
//!
//! Everything a request would otherwise search, group or sort is prepared
//! here once, when a cache is loaded, so that per-request work is
//! proportional to the answer:
//!
//! - hash maps for repo+arch, paths, repository redirects and disabled
//!   repositories;
//! - prefix tries for the hosts' own netblocks and for the netblock → country
//!   overrides;
//! - ASN → hosts that take that ASN's clients;
//! - a dense country → continent table (with the overrides applied);
//! - each host's URLs for a directory ordered by protocol preference (https,
//!   http, ftp, rsync), so the plain list takes the first usable one;
//! - per host set (the cache stores each distinct set of carrying hosts
//!   once, with its public lists already as positions among its carrying
//!   hosts, "slots"), a bit mask of the protocols each slot offers and the
//!   plain list's URL of each, so selection scans no URL lists, and its
//!   countries grouped by continent;
//! - per host, a flags byte (private, restricted, address families), so the
//!   admission test reads one byte instead of a `Host`;
//! - each repository directory's `repodata` subdirectory, for metalinks;
//! - the XML fragments of every URL (`<url protocol=… location=…` and the
//!   escaped URL), the metalink `pubdate` and the "available repositories"
//!   listing: a metalink is then mostly copies of prepared strings.
//!
//! Index building also drops references that point outside the cache's
//! tables (a host or URL index past the end), so serving can index slices
//! without a chance of panicking on a damaged cache.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use mirrorlist_core::model::{
    Cache, Country, Directory, Families, FileEntry, HostIdx, HostSet, Protocol,
};
use prefix_trie::PrefixMap;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::frag::{Arena, Frag};
use crate::query::ProtocolSet;

/// Continent ids are small integers; this many are possible.
const NO_CONTINENT: u8 = u8::MAX;

/// A pair of prefix tries, one per address family.
#[derive(Clone)]
struct Netblocks<T> {
    v4: PrefixMap<Ipv4Net, T>,
    v6: PrefixMap<Ipv6Net, T>,
}

impl<T> Default for Netblocks<T> {
    fn default() -> Self {
        Netblocks {
            v4: PrefixMap::new(),
            v6: PrefixMap::new(),
        }
    }
}

impl<T> Netblocks<T> {
    fn entry_or(&mut self, net: IpNet, default: impl FnOnce() -> T) -> &mut T {
        match net {
            IpNet::V4(n) => self.v4.entry(n.trunc()).or_insert_with(default),
            IpNet::V6(n) => self.v6.entry(n.trunc()).or_insert_with(default),
        }
    }

    fn longest(&self, ip: IpAddr) -> Option<&T> {
        match ip {
            IpAddr::V4(a) => self.v4.get_lpm(&Ipv4Net::from(a)).map(|(_, v)| v),
            IpAddr::V6(a) => self.v6.get_lpm(&Ipv6Net::from(a)).map(|(_, v)| v),
        }
    }

    /// Every value whose prefix covers `ip`, least specific first.
    fn covering<'a, U: ?Sized>(
        &'a self,
        ip: IpAddr,
        out: &mut Vec<&'a U>,
        f: impl Fn(&'a T) -> &'a U,
    ) {
        match ip {
            IpAddr::V4(a) => out.extend(self.v4.cover(&Ipv4Net::from(a)).map(|(_, v)| f(v))),
            IpAddr::V6(a) => out.extend(self.v6.cover(&Ipv6Net::from(a)).map(|(_, v)| f(v))),
        }
    }

    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// Host flag: private host.
pub const PRIVATE: u8 = 1;
/// Host flag: serves only some client countries.
pub const RESTRICTED: u8 = 2;
/// Host flag: not reachable over IPv4.
pub const NO_IPV4: u8 = 4;
/// Host flag: not reachable over IPv6.
pub const NO_IPV6: u8 = 8;

/// A directory's countries that have a continent: (continent id, position in
/// `by_country`).
pub type ContinentList = [(u8, u16)];

/// Distinct [`ContinentList`]s by [`list_hash`], to share them between
/// directories.
type SharedLists = HashMap<u64, Vec<Arc<ContinentList>>>;

/// A cheap hash of a continent list (FNV-1a over its entries): hashing the
/// lists with SipHash cost more than building them.
fn list_hash(list: &ContinentList) -> u64 {
    list.iter().fold(0xcbf2_9ce4_8422_2325, |h, &(c, i)| {
        (h ^ (u64::from(c) << 16 | u64::from(i))).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Where a host's flags sit in a [`DirSlots::gate`] byte: above the four
/// protocol bits.
pub const GATE_FLAGS: u32 = 4;
const _: () = assert!(((PRIVATE | RESTRICTED | NO_IPV4 | NO_IPV6) as u32) << GATE_FLAGS <= 0xff);

/// What the server adds to a host set: per slot, what admits the host to a
/// tier and the plain list's URL; the countries grouped by continent.
#[derive(Clone, Debug, Default)]
pub struct DirSlots {
    /// Per carrying host, everything selection checks before letting it
    /// into a tier, in one byte: the protocols it offers here (the low
    /// four bits, a [`ProtocolSet`] mask) and its host flags shifted up by
    /// [`GATE_FLAGS`]. One load per host instead of a load of the host's
    /// index, then of its flags, then of its protocols.
    pub gate: Vec<u8>,
    /// The plain list's URL of each carrying host: the first of https,
    /// http, ftp; `u32::MAX` for a host with rsync only (never listed).
    pub plain: Vec<u32>,
    /// The positions among the set's countries of those that have a
    /// continent, with its id, sorted by continent and then position: a
    /// continent's countries are one contiguous run, in country order.
    /// Shared between the sets with the same list (most have the same
    /// countries), so it costs next to no memory.
    pub by_continent: Arc<ContinentList>,
    /// Whether no slot is in two country lists, nor twice in one (true of
    /// every set built from hosts with one country each): then the country
    /// and continent tiers cannot meet a host twice, and selection skips
    /// the "already listed" check there when nothing came before them.
    pub countries_disjoint: bool,
}

/// The serving form of a [`Cache`].
pub struct Index {
    cache: Cache,
    /// repo → (arch → directory). Two levels so that a lookup borrows the
    /// request's strings instead of building a key.
    repos: FxHashMap<Box<str>, Vec<(Box<str>, u32)>>,
    paths: FxHashMap<Box<str>, u32>,
    redirects: FxHashMap<Box<str>, Box<str>>,
    disabled: FxHashSet<Box<str>>,
    host_netblocks: Netblocks<Vec<HostIdx>>,
    country_overrides: Netblocks<Country>,
    asn_hosts: HashMap<u32, Vec<HostIdx>>,
    /// Continent id per country, indexed by [`country_slot`].
    continent: Vec<u8>,
    /// 1 / bandwidth per host: the weighted shuffle multiplies by it.
    inv_bandwidth: Vec<f64>,
    /// [`PRIVATE`] | [`RESTRICTED`] | [`NO_IPV4`] | [`NO_IPV6`] per host.
    flags: Vec<u8>,
    /// Per host set.
    slots: Vec<DirSlots>,
    /// Per host URL: the URL (for plain lists, copied in chunks).
    urls: Arena,
    /// Per host URL: `    <url protocol="P" type="P" location="CC" preference="`.
    url_open: Arena,
    /// Per host URL: `">` and the URL, XML-escaped (what follows the
    /// preference value and any `mm0:private` attribute).
    url_close: Arena,
    /// The longest `url_open` plus the longest `url_close`.
    url_line_max: usize,
    /// Per host URL: its protocol, densely packed for the scans of
    /// rendering.
    url_protocol: Vec<Protocol>,
    /// Directory → its `repodata` subdirectory, if the cache has one.
    repodata: Vec<Option<u32>>,
    /// Directory → position of `<dir>/repodata/repomd.xml` in the file
    /// details (directory entry, file), if recorded.
    repomd: Vec<Option<(u32, u32)>>,
    pubdate: String,
    repo_listing: String,
}

impl fmt::Debug for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Index")
            .field("summary", &self.cache.summary().to_string())
            .field("built_at", &self.cache.built_at)
            .field("host_netblocks", &self.host_netblocks.len())
            .field("asns", &self.asn_hosts.len())
            .finish()
    }
}

/// Position of a country in a dense 26×26 table; `None` for codes that are
/// not two upper-case ASCII letters.
fn country_slot(c: Country) -> Option<usize> {
    let [a, b] = c.0;
    if a.is_ascii_uppercase() && b.is_ascii_uppercase() {
        Some(usize::from(a - b'A') * 26 + usize::from(b - b'A'))
    } else {
        None
    }
}

impl Index {
    /// Indexes `cache`. Never fails: dangling references are dropped.
    pub fn new(mut cache: Cache) -> Index {
        sanitize(&mut cache);

        // Order every host's URLs by protocol preference once, so that
        // serving takes the first usable one.
        let urls = &cache.host_urls;
        for set in &mut cache.host_sets {
            set.sort_urls_by_key(|u| (urls[u as usize].protocol, u));
        }

        // FxHash rather than SipHash, per request: the keys come from the
        // cache, so a client's string can only miss or hit, not crowd a
        // bucket.
        let mut repos: FxHashMap<Box<str>, Vec<(Box<str>, u32)>> = FxHashMap::default();
        for r in &cache.repos {
            repos
                .entry(r.name.as_str().into())
                .or_default()
                .push((r.arch.as_str().into(), r.directory));
        }
        let paths = cache
            .directories
            .iter()
            .enumerate()
            .map(|(i, d)| (d.path.as_str().into(), i as u32))
            .collect::<FxHashMap<Box<str>, u32>>();
        let redirects = cache
            .repo_redirects
            .iter()
            .map(|r| (r.from.as_str().into(), r.to.as_str().into()))
            .collect();
        let disabled = cache
            .disabled_repos
            .iter()
            .map(|r| r.as_str().into())
            .collect();

        let mut host_netblocks: Netblocks<Vec<HostIdx>> = Netblocks::default();
        let mut asn_hosts: HashMap<u32, Vec<HostIdx>> = HashMap::new();
        for (i, h) in cache.hosts.iter().enumerate() {
            for &net in &h.netblocks {
                host_netblocks.entry_or(net, Vec::new).push(i as HostIdx);
            }
            if h.asn_clients {
                for &asn in &h.asns {
                    asn_hosts.entry(asn).or_default().push(i as HostIdx);
                }
            }
        }
        for hosts in host_netblocks
            .v4
            .values_mut()
            .chain(host_netblocks.v6.values_mut())
        {
            hosts.sort_unstable();
            hosts.dedup();
        }
        for hosts in asn_hosts.values_mut() {
            hosts.sort_unstable();
            hosts.dedup();
        }

        let mut country_overrides = Netblocks::default();
        // `netblock_countries` is most specific first; a prefix listed twice
        // keeps its first (most specific-ordered) country.
        for &(net, country) in &cache.netblock_countries {
            country_overrides.entry_or(net, || country);
        }

        let mut continent = vec![NO_CONTINENT; 26 * 26];
        let mut names: Vec<&str> = Vec::new();
        for &(country, _) in cache
            .country_continent
            .iter()
            .chain(&cache.continent_overrides)
        {
            let (Some(slot), Some(name)) = (country_slot(country), cache.continent_of(country))
            else {
                continue;
            };
            let id = match names.iter().position(|n| *n == name) {
                Some(id) => id,
                None => {
                    names.push(name);
                    names.len() - 1
                }
            };
            // More continents than ids would be a nonsensical table; such
            // countries simply get no continent tier.
            if let Ok(id) = u8::try_from(id) {
                if id != NO_CONTINENT {
                    continent[slot] = id;
                }
            }
        }

        let inv_bandwidth = cache
            .hosts
            .iter()
            .map(|h| 1.0 / f64::from(h.bandwidth.max(1)))
            .collect();

        let flags: Vec<u8> = cache
            .hosts
            .iter()
            .map(|h| {
                let mut f = 0;
                if h.private {
                    f |= PRIVATE;
                }
                if !h.allowed_countries.is_empty() {
                    f |= RESTRICTED;
                }
                match h.families {
                    Families::Ipv4 => f |= NO_IPV6,
                    Families::Ipv6 => f |= NO_IPV4,
                    Families::Unknown | Families::Both => {}
                }
                f
            })
            .collect();
        // Continent lists are shared: sets in a row usually have the same
        // countries (compared first, cheaply), else the list is looked up
        // among those built so far.
        let mut shared: SharedLists = HashMap::new();
        let mut prev: Option<(&HostSet, Arc<ContinentList>)> = None;
        let mut scratch = Vec::new();
        let slots = cache
            .host_sets
            .iter()
            .map(|set| {
                let list = match &prev {
                    Some((p, list))
                        if (0..p.country_count())
                            .map(|i| p.country_code(i))
                            .eq((0..set.country_count()).map(|i| set.country_code(i))) =>
                    {
                        Arc::clone(list)
                    }
                    _ => {
                        by_continent(set, &continent, &mut scratch);
                        let bucket = shared.entry(list_hash(&scratch)).or_default();
                        match bucket.iter().find(|l| ***l == *scratch) {
                            Some(l) => Arc::clone(l),
                            None => {
                                let l: Arc<ContinentList> = scratch.as_slice().into();
                                bucket.push(Arc::clone(&l));
                                l
                            }
                        }
                    }
                };
                prev = Some((set, Arc::clone(&list)));
                dir_slots(&cache, &flags, set, list)
            })
            .collect();
        let mut urls = Arena::default();
        let mut url_open = Arena::default();
        let mut url_close = Arena::default();
        let mut scratch = String::new();
        for u in &cache.host_urls {
            urls.push(&u.url);
            let p = u.protocol.as_str();
            scratch.clear();
            scratch.push_str("    <url protocol=\"");
            scratch.push_str(p);
            scratch.push_str("\" type=\"");
            scratch.push_str(p);
            scratch.push_str("\" location=\"");
            let country = cache.hosts.get(u.host as usize).map(|h| h.country.as_str());
            crate::render::push_escaped(&mut scratch, country.unwrap_or(""));
            scratch.push_str("\" preference=\"");
            url_open.push(&scratch);
            scratch.clear();
            scratch.push_str("\">");
            crate::render::push_escaped(&mut scratch, &u.url);
            url_close.push(&scratch);
        }
        let (urls, url_open, url_close) = (urls.finish(), url_open.finish(), url_close.finish());
        let url_line_max = url_open.longest() + url_close.longest();
        let url_protocol = cache.host_urls.iter().map(|u| u.protocol).collect();

        let mut repodata = Vec::with_capacity(cache.directories.len());
        let mut repomd = Vec::with_capacity(cache.directories.len());
        for d in &cache.directories {
            let sub = format!("{}/repodata", d.path);
            repodata.push(paths.get(sub.as_str()).copied());
            let fd = cache
                .file_details
                .binary_search_by(|f| f.directory.as_str().cmp(&sub))
                .ok();
            repomd.push(fd.and_then(|i| {
                let files = &cache.file_details[i].files;
                let f = files
                    .binary_search_by(|f| f.name.as_str().cmp("repomd.xml"))
                    .ok()?;
                Some((i as u32, f as u32))
            }));
        }

        let mut repo_listing = String::new();
        for r in &cache.repos {
            repo_listing.push_str("# repo=");
            repo_listing.push_str(&r.name);
            repo_listing.push_str("&arch=");
            repo_listing.push_str(&r.arch);
            repo_listing.push('\n');
        }

        Index {
            pubdate: crate::render::http_date(cache.built_at),
            cache,
            repos,
            paths,
            redirects,
            disabled,
            host_netblocks,
            country_overrides,
            asn_hosts,
            continent,
            inv_bandwidth,
            flags,
            slots,
            urls,
            url_open,
            url_close,
            url_line_max,
            url_protocol,
            repodata,
            repomd,
            repo_listing,
        }
    }

    /// The underlying cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The name `repo` is answered as, after repository redirects.
    pub fn redirect<'a>(&'a self, repo: &'a str) -> &'a str {
        self.redirects.get(repo).map_or(repo, |to| to)
    }

    /// Whether `repo` (after redirects) is disabled.
    pub fn is_disabled(&self, repo: &str) -> bool {
        self.disabled.contains(repo)
    }

    /// The directory index of a repo+arch pair.
    pub fn repo(&self, repo: &str, arch: &str) -> Option<u32> {
        self.repos
            .get(repo)?
            .iter()
            .find(|(a, _)| &**a == arch)
            .map(|(_, d)| *d)
    }

    /// The directory index of a path (no leading or trailing slash).
    pub fn path(&self, path: &str) -> Option<u32> {
        self.paths.get(path).copied()
    }

    /// Directory by index. Indexes come from this index, so they are valid.
    pub fn directory(&self, dir: u32) -> &Directory {
        &self.cache.directories[dir as usize]
    }

    /// The hosts that carry directory `dir`.
    pub fn hosts(&self, dir: u32) -> &HostSet {
        // `sanitize` left no dangling set index.
        &self.cache.host_sets[self.directory(dir).hosts as usize]
    }

    /// What an answer for directory `dir` points at: the directory itself,
    /// or `extra` appended to it, or `file` in it.
    pub fn target<'a>(
        &'a self,
        dir: u32,
        extra: &'a str,
        file: Option<&'a str>,
    ) -> crate::render::Target<'a> {
        crate::render::Target {
            dir: self.directory(dir),
            hosts: self.hosts(dir),
            slots: self.slots(dir),
            extra,
            file,
        }
    }

    /// The `repodata` subdirectory of `dir`, if the cache lists it.
    pub fn repodata(&self, dir: u32) -> Option<u32> {
        self.repodata[dir as usize]
    }

    /// The file details of `<dir>/repodata/repomd.xml`, which a metalink
    /// for the repository in `dir` describes.
    pub fn repomd(&self, dir: u32) -> Option<&FileEntry> {
        let (d, f) = self.repomd[dir as usize]?;
        Some(&self.cache.file_details[d as usize].files[f as usize])
    }

    /// Appends the host lists of every host netblock covering `ip`, most
    /// specific prefix first.
    pub fn netblock_hosts<'a>(&'a self, ip: IpAddr, out: &mut Vec<&'a [HostIdx]>) {
        let start = out.len();
        self.host_netblocks.covering(ip, out, Vec::as_slice);
        // The trie yields the least specific prefix first.
        out[start..].reverse();
    }

    /// Hosts that take clients of `asn`.
    pub fn asn_hosts(&self, asn: u32) -> &[HostIdx] {
        self.asn_hosts.get(&asn).map_or(&[], Vec::as_slice)
    }

    /// The operator's country override for `ip` (most specific netblock).
    pub fn country_override(&self, ip: IpAddr) -> Option<Country> {
        self.country_overrides.longest(ip).copied()
    }

    /// The continent id of `country`, comparable with other countries'.
    pub fn continent(&self, country: Country) -> Option<u8> {
        let id = self.continent[country_slot(country)?];
        (id != NO_CONTINENT).then_some(id)
    }

    /// 1 / bandwidth of `host`.
    pub fn inv_bandwidth(&self, host: HostIdx) -> f64 {
        self.inv_bandwidth[host as usize]
    }

    /// The flags byte of `host` ([`PRIVATE`], [`RESTRICTED`], ...).
    pub fn flags(&self, host: HostIdx) -> u8 {
        self.flags[host as usize]
    }

    /// The slot tables of directory `dir`'s host set.
    pub fn slots(&self, dir: u32) -> &DirSlots {
        &self.slots[self.directory(dir).hosts as usize]
    }

    /// Host URL `u` (`None` only for an index out of range).
    pub fn url(&self, u: u32) -> Option<Frag<'_>> {
        self.urls.get(u)
    }

    /// The length of the longest host URL.
    pub fn url_max(&self) -> usize {
        self.urls.longest()
    }

    /// The opening of a metalink `<url>` element for host URL `u`, up to the
    /// preference value.
    pub fn url_open(&self, u: u32) -> Option<Frag<'_>> {
        self.url_open.get(u)
    }

    /// An upper bound of `url_open(u).len() + url_close(u).len()` for every
    /// host URL `u`.
    pub fn url_line_max(&self) -> usize {
        self.url_line_max
    }

    /// The protocol of host URL `u`.
    pub fn url_protocol(&self, u: u32) -> Protocol {
        self.url_protocol[u as usize]
    }

    /// The rest of a metalink `<url>` element's opening for host URL `u`
    /// after the preference value and attributes: `">` and the URL,
    /// XML-escaped.
    pub fn url_close(&self, u: u32) -> Option<Frag<'_>> {
        self.url_close.get(u)
    }

    /// The cache's build time as an RFC 2822 date, for metalinks.
    pub fn pubdate(&self) -> &str {
        &self.pubdate
    }

    /// `# repo=R&arch=A` lines for every repository, sorted.
    pub fn repo_listing(&self) -> &str {
        &self.repo_listing
    }
}

/// Builds the slot tables of `set`, given every host's flags.
fn dir_slots(
    cache: &Cache,
    flags: &[u8],
    set: &HostSet,
    by_continent: Arc<ContinentList>,
) -> DirSlots {
    let protocol = |u: u32| cache.host_urls[u as usize].protocol;
    DirSlots {
        gate: (0..set.host_count())
            .map(|i| {
                let offered = set
                    .urls(i)
                    .iter()
                    .fold(ProtocolSet::EMPTY, |acc, &u| acc.with(protocol(u)));
                let host_flags = flags.get(set.host(i) as usize).copied().unwrap_or(0);
                offered.bits() | host_flags << GATE_FLAGS
            })
            .collect(),
        plain: (0..set.host_count())
            .map(|i| {
                // URLs are already in protocol preference order.
                set.urls(i)
                    .iter()
                    .copied()
                    .find(|&u| ProtocolSet::PLAIN.contains(protocol(u)))
                    .unwrap_or(u32::MAX)
            })
            .collect(),
        by_continent,
        countries_disjoint: countries_disjoint(set),
    }
}

/// See [`DirSlots::countries_disjoint`].
fn countries_disjoint(set: &HostSet) -> bool {
    let mut seen = vec![false; set.host_count()];
    (0..set.country_count()).all(|i| {
        set.country_slots(i)
            .iter()
            .all(|&slot| match seen.get_mut(slot as usize) {
                Some(seen) => !std::mem::replace(seen, true),
                None => false,
            })
    })
}

/// [`DirSlots::by_continent`] of `set`, given the continent table, into
/// `out`.
fn by_continent(set: &HostSet, continent: &[u8], out: &mut Vec<(u8, u16)>) {
    out.clear();
    out.extend((0..set.country_count()).filter_map(|i| {
        let id = continent[country_slot(set.country_code(i))?];
        // Positions past u16 cannot occur (26×26 country codes).
        (id != NO_CONTINENT).then_some((id, u16::try_from(i).ok()?))
    }));
    out.sort_unstable();
}

/// Drops every reference to a host, URL or directory that does not exist.
fn sanitize(cache: &mut Cache) {
    let hosts = cache.hosts.len();
    let urls = cache.host_urls.len();
    let dirs = cache.directories.len();
    for set in &mut cache.host_sets {
        if !set.refers_within(hosts, urls) {
            *set = set.without_dangling(hosts, urls);
        }
    }
    cache.repos.retain(|r| (r.directory as usize) < dirs);
    // Lookups below rely on the orders `normalize` establishes; it is
    // idempotent, so a cache that is already normalized costs one pass. It
    // also points directories with a dangling set index at an empty set.
    cache.normalize();
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mirrorlist_core::model::{Host, Repo};

    pub(crate) fn host(country: &str) -> Host {
        Host {
            id: 0,
            name: format!("h-{country}"),
            site: String::new(),
            country: Country::parse(country).unwrap(),
            bandwidth: 100,
            private: false,
            allowed_countries: vec![],
            netblocks: vec![],
            asns: vec![],
            asn_clients: false,
            families: Default::default(),
        }
    }

    #[test]
    fn dangling_references_are_dropped() {
        let de = Country::parse("DE").unwrap();
        let cache = Cache {
            hosts: vec![host("DE")],
            directories: vec![
                Directory {
                    path: "a".into(),
                    subpath: "a".into(),
                    hosts: 0,
                    ordered: false,
                },
                Directory {
                    path: "b".into(),
                    subpath: "b".into(),
                    hosts: 8,
                    ordered: false,
                },
            ],
            host_sets: vec![HostSet::new(
                vec![0, 7],
                [(de, vec![0, 9])],
                [(0, vec![3]), (5, vec![])],
            )],
            repos: vec![
                Repo {
                    name: "r".into(),
                    arch: "x".into(),
                    directory: 0,
                },
                Repo {
                    name: "bad".into(),
                    arch: "x".into(),
                    directory: 4,
                },
            ],
            ..Cache::default()
        };
        let idx = Index::new(cache);
        let set = idx.hosts(0);
        assert_eq!(set.global(), [0]);
        assert_eq!(set.by_country(), [(de, vec![0])]);
        assert_eq!(set.by_host().collect::<Vec<_>>(), [(0, &[][..])]);
        assert!(idx.hosts(1).is_empty());
        assert!(idx.slots(1).plain.is_empty());
        assert_eq!(idx.repo("r", "x"), Some(0));
        assert_eq!(idx.repo("bad", "x"), None);
    }

    #[test]
    fn netblocks_most_specific_first() {
        let mut a = host("DE");
        a.netblocks = vec!["10.0.0.0/8".parse().unwrap()];
        let mut b = host("DE");
        b.netblocks = vec![
            "10.1.0.0/16".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let idx = Index::new(Cache {
            hosts: vec![a, b],
            ..Cache::default()
        });
        let mut out = Vec::new();
        idx.netblock_hosts("10.1.2.3".parse().unwrap(), &mut out);
        assert_eq!(out, vec![&[1][..], &[0, 1][..]]);
        out.clear();
        idx.netblock_hosts("10.2.0.1".parse().unwrap(), &mut out);
        assert_eq!(out, vec![&[0, 1][..]]);
        out.clear();
        idx.netblock_hosts("2001:db8::1".parse().unwrap(), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn continents_honour_overrides() {
        let c = |s: &str| Country::parse(s).unwrap();
        let idx = Index::new(Cache {
            country_continent: vec![
                (c("DE"), "EU".into()),
                (c("FR"), "EU".into()),
                (c("TR"), "AS".into()),
                (c("US"), "NA".into()),
            ],
            continent_overrides: vec![(c("TR"), "EU".into())],
            ..Cache::default()
        });
        assert_eq!(idx.continent(c("DE")), idx.continent(c("TR")));
        assert_ne!(idx.continent(c("DE")), idx.continent(c("US")));
        assert!(idx.continent(c("DE")).is_some());
        assert_eq!(idx.continent(c("ZZ")), None);
    }
}
