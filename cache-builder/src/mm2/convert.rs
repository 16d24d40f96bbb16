//! MirrorManager2's decoded cache → our [`Cache`].
//!
//! Pure: no I/O, so every mapping decision is tested on hand-built messages.
//! The mapping is direct (our model was shaped after MM2's cache); where MM2
//! leaves something open, the decision and its reason are next to the code
//! and listed in the README's "Migrating from MirrorManager2" section.
//!
//! Two kinds of problems are told apart:
//!
//! - **Errors** make the file unusable and refuse the import (exit 64): a
//!   required field missing, a number out of range, a netblock, country or
//!   hash that cannot be read, a directory listed twice. They say which
//!   entry is wrong.
//! - **Warnings** are references that lead nowhere (a directory naming a
//!   host-category URL absent from `HCUrlCache`, a netblock naming an
//!   unknown host). Such a reference can only make one host miss from one
//!   answer, while refusing the file would keep the whole network on
//!   yesterday's data, so the reference is dropped and counted.
//!   `import-mm2 --strict` turns them into errors.

use std::collections::BTreeMap;
use std::path::Path;

use ipnet::IpNet;
// Millions of integer-keyed lookups on a real-size file: SipHash's DoS
// resistance buys nothing on a file we trust and cost half the import time.
use mirrorlist_core::model::{
    Cache, Country, Directory, DirectoryFiles, Families, FileDetails, FileEntry, Host, HostIdx,
    HostSet, HostUrl, Protocol, Repo, RepoRedirect, UrlIdx,
};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::netblock;
use super::proto::{self, MirrorList};
use crate::continents::ContinentTable;
use crate::error::Diagnostic;

/// The country given to a host whose country MM2 does not know (no entry in
/// `HostCountryCache` and none in any directory's `ByCountry`, or a value
/// such as `??`). `ZZ` is the user-assigned ISO code CLDR uses for "unknown
/// region": it matches no client's GeoIP country and has no continent, so
/// such a host is offered through the global, netblock and ASN tiers only,
/// as MM2's servers do.
pub const UNKNOWN_COUNTRY: Country = Country(*b"ZZ");

/// How many errors or warnings are kept with their text; the rest are only
/// counted, so a badly broken file does not print a million lines.
pub const MAX_REPORTED: usize = 20;

/// The result of a conversion.
#[derive(Debug)]
pub struct Converted {
    /// The cache, not yet normalized.
    pub cache: Cache,
    /// What was left out or filled in.
    pub stats: ConvertStats,
    /// Dangling references that were dropped.
    pub warnings: Reported,
}

/// Counts of what the conversion left out or filled in, for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConvertStats {
    /// `HCUrlCache` URLs with a scheme other than https, http, ftp, rsync.
    pub skipped_urls: usize,
    /// Hosts given [`UNKNOWN_COUNTRY`].
    pub unknown_country_hosts: usize,
    /// Hosts whose country came from a directory's `ByCountry` because
    /// `HostCountryCache` had none.
    pub country_from_directories: usize,
    /// Repositories whose directory no host carries (absent from
    /// `MirrorListCache`): kept, with an empty directory.
    pub empty_repo_directories: usize,
}

/// Messages, the first [`MAX_REPORTED`] kept, all counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reported {
    /// The kept messages.
    pub shown: Vec<String>,
    /// How many there were in all.
    pub total: usize,
}

impl Reported {
    fn push(&mut self, message: impl FnOnce() -> String) {
        self.total += 1;
        if self.shown.len() < MAX_REPORTED {
            self.shown.push(message());
        }
    }

    /// Whether there were none.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// As diagnostics naming `path`, with a last line counting the ones not
    /// shown.
    pub fn into_diagnostics(self, path: &Path) -> Vec<Diagnostic> {
        let diag = |message| Diagnostic {
            path: path.to_owned(),
            line: None,
            column: None,
            message,
        };
        let hidden = self.total - self.shown.len();
        let mut out: Vec<Diagnostic> = self.shown.into_iter().map(diag).collect();
        if hidden > 0 {
            out.push(diag(format!("… and {hidden} more")));
        }
        out
    }
}

/// What we know of a host while converting.
#[derive(Default)]
struct HostDraft {
    country: Option<Country>,
    /// A country seen for it in some directory's `ByCountry`.
    listed_country: Option<Country>,
    bandwidth: Option<u32>,
    allowed: Vec<Country>,
    netblocks: Vec<IpNet>,
    asns: Vec<u32>,
    /// Listed in some directory's `Global` or `ByCountry`.
    public: bool,
    /// Has URLs in some directory's `ByHostId`.
    carries: bool,
}

/// MM2 host ids → our host indexes.
struct Hosts {
    index: HashMap<i64, HostIdx>,
    ids: Vec<u32>,
    drafts: Vec<HostDraft>,
}

impl Hosts {
    fn get(&self, id: i64) -> Option<HostIdx> {
        self.index.get(&id).copied()
    }
}

/// Converts a decoded MM2 cache. `path` names the file in messages and
/// becomes [`Cache::source`]; `continents` fills the country → continent
/// table. On error, every problem found (up to [`MAX_REPORTED`]) is returned.
pub fn convert(
    msg: MirrorList,
    path: &Path,
    continents: &ContinentTable,
) -> Result<Converted, Vec<Diagnostic>> {
    let mut errors = Reported::default();
    let mut warnings = Reported::default();
    let mut stats = ConvertStats::default();

    let built_at = msg.time.unwrap_or_else(|| {
        errors.push(|| "the required field Time (1) is missing".into());
        0
    });
    if msg.mirror_list_cache.is_empty() {
        // MM2 always lists directories; a file without any is a truncated
        // or wrong file, and serving it would answer every request with
        // nothing.
        errors.push(|| "MirrorListCache (16) is empty: the file lists no directories".into());
    }

    let mut hosts = collect_hosts(&msg, &mut errors);
    host_tables(&msg, &mut hosts, &mut errors);
    count_unknown_schemes(&msg.hc_url_cache, &mut stats);
    let (host_urls, url_index) = host_urls(&msg, &hosts, &mut errors, &mut warnings);

    let mut dir_index: HashMap<String, u32> =
        HashMap::with_capacity_and_hasher(msg.mirror_list_cache.len(), Default::default());
    let mut directories = Vec::with_capacity(msg.mirror_list_cache.len());
    // One set per directory here; `Cache::normalize` stores equal ones once.
    let mut host_sets = Vec::with_capacity(msg.mirror_list_cache.len());
    for (i, d) in msg.mirror_list_cache.into_iter().enumerate() {
        let Some((mut dir, set)) = directory(
            i,
            d,
            &mut hosts,
            &host_urls,
            &url_index,
            &mut errors,
            &mut warnings,
        ) else {
            continue;
        };
        if dir_index
            .insert(dir.path.clone(), directories.len() as u32)
            .is_some()
        {
            errors.push(|| format!("MirrorListCache: directory {:?} is listed twice", dir.path));
            continue;
        }
        dir.hosts = host_sets.len() as u32;
        host_sets.push(set);
        directories.push(dir);
    }

    let repos = repos(
        &msg.repo_arch_to_directory_name,
        &mut dir_index,
        &mut directories,
        &mut host_sets,
        &mut stats,
        &mut errors,
    );
    let repo_redirects = string_map(
        &msg.repository_redirect_cache,
        "RepositoryRedirectCache",
        &mut errors,
    )
    .into_iter()
    .map(|(from, to)| RepoRedirect { from, to })
    .collect();
    let disabled_repos = disabled(&msg.disabled_repository_cache, &mut errors);
    host_netblocks(
        &msg.host_netblock_cache,
        &mut hosts,
        &mut errors,
        &mut warnings,
    );
    host_asns(&msg.host_asn_cache, &mut hosts, &mut errors, &mut warnings);
    let netblock_countries = netblock_countries(&msg.netblock_country_cache, &mut errors);
    let continent_overrides =
        continent_overrides(&msg.country_continent_redirect_cache, &mut errors);
    let file_details = file_details(msg.file_details_cache, &mut errors);

    if !errors.is_empty() {
        return Err(errors.into_diagnostics(path));
    }
    let hosts = finish_hosts(hosts, &host_urls, &mut stats);
    Ok(Converted {
        cache: Cache {
            built_at,
            source: path.display().to_string(),
            // MM2's cache does not name categories; nothing selects by them.
            categories: Vec::new(),
            hosts,
            host_urls,
            directories,
            host_sets,
            repos,
            repo_redirects,
            disabled_repos,
            file_details,
            country_continent: continents
                .countries
                .iter()
                .map(|(c, k)| (*c, k.clone()))
                .collect(),
            continent_overrides,
            netblock_countries,
        },
        stats,
        warnings,
    })
}

/// A host id as our `u32`, or an error naming where it appeared.
fn host_id(id: i64, place: impl FnOnce() -> String, errors: &mut Reported) -> Option<u32> {
    match u32::try_from(id) {
        Ok(id) => Some(id),
        Err(_) => {
            errors.push(|| format!("{}: host id {id} is out of range", place()));
            None
        }
    }
}

/// Every host id: those with an entry in a host table and those listed by
/// a directory (a host MM2 lists only in directories is still a host).
/// Hosts named only by `HostNetblockCache`, `HostAsnCache`, `LocationCache`
/// or `HostMaxConnectionCache` are not: they carry nothing we could serve.
fn collect_hosts(msg: &MirrorList, errors: &mut Reported) -> Hosts {
    let mut seen: HashSet<i64> = HashSet::default();
    let mut add = |id: i64, place: &dyn Fn() -> String, errors: &mut Reported| {
        // The range check runs once per distinct id, not once per mention.
        if !seen.contains(&id) && host_id(id, place, errors).is_some() {
            seen.insert(id);
        }
    };
    for (i, e) in msg.host_country_cache.iter().enumerate() {
        if let Some(k) = e.key {
            add(k, &|| format!("HostCountryCache entry {i}"), errors);
        }
    }
    for (i, e) in msg.host_bandwidth_cache.iter().enumerate() {
        if let Some(k) = e.key {
            add(k, &|| format!("HostBandwidthCache entry {i}"), errors);
        }
    }
    for (i, e) in msg.host_country_allowed_cache.iter().enumerate() {
        if let Some(k) = e.key {
            add(k, &|| format!("HostCountryAllowedCache entry {i}"), errors);
        }
    }
    for d in &msg.mirror_list_cache {
        let place = || {
            format!(
                "MirrorListCache directory {:?}",
                d.directory.as_deref().unwrap_or("")
            )
        };
        for &id in &d.global {
            add(id, &place, errors);
        }
        for c in &d.by_country {
            for &id in &c.value {
                add(id, &place, errors);
            }
        }
        for h in &d.by_host_id {
            if let Some(k) = h.key {
                add(k, &place, errors);
            }
        }
    }
    let mut ids: Vec<i64> = seen.into_iter().collect();
    ids.sort_unstable();
    Hosts {
        index: ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i as HostIdx))
            .collect(),
        // In range: checked by `add`.
        ids: ids.iter().map(|&id| id as u32).collect(),
        drafts: ids.iter().map(|_| HostDraft::default()).collect(),
    }
}

/// HostCountryCache, HostBandwidthCache, HostCountryAllowedCache. A key
/// repeated in one table: the last entry wins, as for a protobuf map.
fn host_tables(msg: &MirrorList, hosts: &mut Hosts, errors: &mut Reported) {
    for (i, e) in msg.host_country_cache.iter().enumerate() {
        let (Some(id), Some(cc)) = (e.key, e.value.as_deref()) else {
            errors.push(|| missing("HostCountryCache", i, e.key.is_none()));
            continue;
        };
        let Some(h) = hosts.get(id) else { continue };
        // `??` and other non-codes leave the country open for the fallbacks
        // in `finish_hosts`.
        hosts.drafts[h as usize].country = Country::parse(cc);
    }
    for (i, e) in msg.host_bandwidth_cache.iter().enumerate() {
        let (Some(id), Some(bw)) = (e.key, e.value) else {
            errors.push(|| missing("HostBandwidthCache", i, e.key.is_none()));
            continue;
        };
        let Some(h) = hosts.get(id) else { continue };
        // The bandwidth is only a shuffle weight: clamp rather than refuse.
        hosts.drafts[h as usize].bandwidth = Some(bw.clamp(1, i64::from(u32::MAX)) as u32);
    }
    for (i, e) in msg.host_country_allowed_cache.iter().enumerate() {
        let Some(id) = e.key else {
            errors.push(|| missing("HostCountryAllowedCache", i, true));
            continue;
        };
        let Some(h) = hosts.get(id) else { continue };
        let mut allowed = Vec::with_capacity(e.value.len());
        for cc in &e.value {
            match Country::parse(cc) {
                Some(c) => allowed.push(c),
                // Dropping a code would widen the restriction (an empty list
                // means "everyone"), so a bad one refuses the file.
                None => errors.push(|| {
                    format!("HostCountryAllowedCache: host {id}: {cc:?} is not a country code")
                }),
            }
        }
        hosts.drafts[h as usize].allowed = allowed;
    }
}

fn missing(table: &str, i: usize, key: bool) -> String {
    let field = if key { "key (1)" } else { "value (2)" };
    format!("{table} entry {i}: the required field {field} is missing")
}

fn count_unknown_schemes(hc_urls: &[proto::IntStringMap], stats: &mut ConvertStats) {
    stats.skipped_urls = hc_urls
        .iter()
        .filter(|e| {
            e.value
                .as_deref()
                .is_some_and(|u| Protocol::of_url(u).is_none())
        })
        .count();
}

/// The host-category URLs that some directory reaches, each with the host
/// whose `ByHostId` lists it, ordered by (host, MM2 id); and MM2 id → our
/// index. A URL id listed under two hosts stays with the first (in file
/// order) and the other reference is dropped with a warning; an id absent
/// from `HCUrlCache` is dropped with a warning; a URL with an unknown scheme
/// is dropped and counted (`skipped_urls`).
fn host_urls(
    msg: &MirrorList,
    hosts: &Hosts,
    errors: &mut Reported,
    warnings: &mut Reported,
) -> (Vec<HostUrl>, HashMap<i64, UrlIdx>) {
    let mut urls: HashMap<i64, &str> =
        HashMap::with_capacity_and_hasher(msg.hc_url_cache.len(), Default::default());
    for (i, e) in msg.hc_url_cache.iter().enumerate() {
        match (e.key, e.value.as_deref()) {
            (Some(k), Some(v)) => {
                urls.insert(k, v);
            }
            _ => errors.push(|| missing("HCUrlCache", i, e.key.is_none())),
        }
    }
    let mut owner: HashMap<i64, HostIdx> =
        HashMap::with_capacity_and_hasher(urls.len(), Default::default());
    let mut reported: HashSet<i64> = HashSet::default();
    for d in &msg.mirror_list_cache {
        for e in &d.by_host_id {
            let Some(h) = e.key.and_then(|k| hosts.get(k)) else {
                continue;
            };
            for &u in &e.value {
                let first = *owner.entry(u).or_insert(h);
                if first != h && reported.insert(u) {
                    warnings.push(|| {
                        format!(
                            "host-category URL id {u} is listed under host {} and host {} \
                             (directory {:?}); kept for host {}",
                            hosts.ids[first as usize],
                            hosts.ids[h as usize],
                            d.directory.as_deref().unwrap_or(""),
                            hosts.ids[first as usize],
                        )
                    });
                }
            }
        }
    }
    let mut listed: Vec<(HostIdx, i64, &str)> = Vec::with_capacity(owner.len());
    for (&u, &h) in &owner {
        match urls.get(&u) {
            Some(url) => listed.push((h, u, url)),
            None => warnings.push(|| {
                format!(
                    "host-category URL id {u} (host {}) is not in HCUrlCache; \
                     the directories that list it do not get that URL",
                    hosts.ids[h as usize]
                )
            }),
        }
    }
    listed.sort_unstable_by_key(|&(h, u, _)| (h, u));
    let mut out = Vec::with_capacity(listed.len());
    let mut index = HashMap::with_capacity_and_hasher(listed.len(), Default::default());
    for (h, u, url) in listed {
        let Some(protocol) = Protocol::of_url(url) else {
            continue;
        };
        index.insert(u, out.len() as UrlIdx);
        out.push(HostUrl {
            host: h,
            // The server joins with "/" + subpath.
            url: url.trim_end_matches('/').to_owned(),
            protocol,
        });
    }
    (out, index)
}

/// One `MirrorListCacheType`. Hosts in `Global` or `ByCountry` without any
/// usable URL in `ByHostId` are left out of those lists (the server could
/// not name a URL for them); if they are missing from `ByHostId`
/// altogether, that is a dangling reference and warned about.
fn directory(
    i: usize,
    d: proto::MirrorListCacheType,
    hosts: &mut Hosts,
    host_urls: &[HostUrl],
    url_index: &HashMap<i64, UrlIdx>,
    errors: &mut Reported,
    warnings: &mut Reported,
) -> Option<(Directory, HostSet)> {
    let Some(raw_path) = d.directory else {
        errors.push(|| {
            format!("MirrorListCache entry {i}: the required field directory (1) is missing")
        });
        return None;
    };
    let path = raw_path.trim_matches('/').to_owned();

    let mut by_host: Vec<(HostIdx, Vec<UrlIdx>)> = Vec::with_capacity(d.by_host_id.len());
    let mut in_by_host: Vec<HostIdx> = Vec::with_capacity(d.by_host_id.len());
    for (j, e) in d.by_host_id.iter().enumerate() {
        let Some(id) = e.key else {
            errors.push(|| missing(&format!("directory {path:?}: ByHostId"), j, true));
            continue;
        };
        // Range errors were reported by `collect_hosts`.
        let Some(h) = hosts.get(id) else { continue };
        in_by_host.push(h);
        let mut urls: Vec<UrlIdx> = e
            .value
            .iter()
            .filter_map(|u| url_index.get(u).copied())
            .filter(|&u| host_urls[u as usize].host == h)
            .collect();
        urls.sort_unstable();
        urls.dedup();
        if !urls.is_empty() {
            by_host.push((h, urls));
        }
    }
    // A host repeated in ByHostId: the last entry wins, as for a map.
    by_host.reverse();
    by_host.sort_by_key(|(h, _)| *h);
    by_host.dedup_by_key(|(h, _)| *h);
    in_by_host.sort_unstable();
    for (h, _) in &by_host {
        hosts.drafts[*h as usize].carries = true;
    }

    let has_urls = |h: HostIdx| by_host.binary_search_by_key(&h, |(x, _)| *x).is_ok();
    let keep = |id: i64, list: &str, hosts: &mut Hosts, warnings: &mut Reported| {
        let h = hosts.get(id)?;
        hosts.drafts[h as usize].public = true;
        if has_urls(h) {
            return Some(h);
        }
        if in_by_host.binary_search(&h).is_err() {
            warnings.push(|| {
                format!("directory {path:?}: host {id} is in {list} but not in ByHostId; left out")
            });
        }
        None
    };
    let global: Vec<HostIdx> = d
        .global
        .iter()
        .filter_map(|&id| keep(id, "Global", hosts, warnings))
        .collect();
    let mut by_country = Vec::with_capacity(d.by_country.len());
    for (j, e) in d.by_country.iter().enumerate() {
        let Some(key) = e.key.as_deref() else {
            errors.push(|| missing(&format!("directory {path:?}: ByCountry"), j, true));
            continue;
        };
        let country = Country::parse(key).unwrap_or(UNKNOWN_COUNTRY);
        let list: Vec<HostIdx> = e
            .value
            .iter()
            .filter_map(|&id| keep(id, "ByCountry", hosts, warnings))
            .collect();
        // A key that is not a country code says nothing about the host.
        if country != UNKNOWN_COUNTRY {
            for &h in &list {
                hosts.drafts[h as usize]
                    .listed_country
                    .get_or_insert(country);
            }
        }
        if !list.is_empty() {
            by_country.push((country, list));
        }
    }
    // MM2 could repeat a country key; `HostSet::new` merges them.
    Some((
        Directory {
            path,
            subpath: d.subpath.unwrap_or_default().trim_matches('/').to_owned(),
            hosts: 0,
            ordered: d.ordered_mirror_list.unwrap_or(false),
        },
        HostSet::new(global, by_country, by_host),
    ))
}

/// Key/value pairs of a `StringStringMap` list, last entry winning.
fn string_map(
    entries: &[proto::StringStringMap],
    table: &str,
    errors: &mut Reported,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        match (&e.key, &e.value) {
            (Some(k), Some(v)) => {
                out.insert(k.clone(), v.clone());
            }
            _ => errors.push(|| missing(table, i, e.key.is_none())),
        }
    }
    out
}

/// `"repo+arch"` → directory. The key is split at its last `+`: repository
/// names may contain `+` (MM2 does not forbid it), architecture names never
/// do. A directory absent from `MirrorListCache` (no host carries it yet) is
/// added empty, so the repository stays known and the server answers "no
/// mirrors" rather than "invalid repo".
fn repos(
    entries: &[proto::StringStringMap],
    dir_index: &mut HashMap<String, u32>,
    directories: &mut Vec<Directory>,
    host_sets: &mut Vec<HostSet>,
    stats: &mut ConvertStats,
    errors: &mut Reported,
) -> Vec<Repo> {
    let mut out = Vec::with_capacity(entries.len());
    for (key, dir) in string_map(entries, "RepoArchToDirectoryName", errors) {
        let Some((name, arch)) = key
            .rsplit_once('+')
            .filter(|(n, a)| !n.is_empty() && !a.is_empty())
        else {
            errors.push(|| {
                format!("RepoArchToDirectoryName: key {key:?} is not of the form \"repo+arch\"")
            });
            continue;
        };
        let path = dir.trim_matches('/');
        let directory = match dir_index.get(path) {
            Some(&d) => d,
            None => {
                stats.empty_repo_directories += 1;
                let d = directories.len() as u32;
                dir_index.insert(path.to_owned(), d);
                directories.push(Directory {
                    path: path.to_owned(),
                    subpath: String::new(),
                    hosts: host_sets.len() as u32,
                    ordered: false,
                });
                host_sets.push(HostSet::default());
                d
            }
        };
        out.push(Repo {
            name: name.to_owned(),
            arch: arch.to_owned(),
            directory,
        });
    }
    out
}

/// DisabledRepositoryCache: the names whose (last) value is true.
fn disabled(entries: &[proto::StringBoolMap], errors: &mut Reported) -> Vec<String> {
    let mut map = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        match (&e.key, e.value) {
            (Some(k), Some(v)) => {
                map.insert(k.as_str(), v);
            }
            _ => errors.push(|| missing("DisabledRepositoryCache", i, e.key.is_none())),
        }
    }
    map.into_iter()
        .filter(|&(_, disabled)| disabled)
        .map(|(name, _)| name.to_owned())
        .collect()
}

fn host_netblocks(
    entries: &[proto::StringRepeatedIntMap],
    hosts: &mut Hosts,
    errors: &mut Reported,
    warnings: &mut Reported,
) {
    for (i, e) in entries.iter().enumerate() {
        let Some(key) = e.key.as_deref() else {
            errors.push(|| missing("HostNetblockCache", i, true));
            continue;
        };
        let net = match netblock::parse(key) {
            Ok(net) => net,
            Err(why) => {
                errors.push(|| format!("HostNetblockCache entry {i}: {why}"));
                continue;
            }
        };
        for &id in &e.value {
            match hosts.get(id) {
                Some(h) => hosts.drafts[h as usize].netblocks.push(net),
                None => warnings.push(|| {
                    format!("HostNetblockCache: netblock {key:?} names host {id}, which no host table or directory lists; ignored")
                }),
            }
        }
    }
}

/// HostAsnCache: MM2 lists there only the hosts that serve their ASN's
/// clients, so each listed host gets the ASN and `asn_clients`.
fn host_asns(
    entries: &[proto::IntRepeatedIntMap],
    hosts: &mut Hosts,
    errors: &mut Reported,
    warnings: &mut Reported,
) {
    for (i, e) in entries.iter().enumerate() {
        let Some(key) = e.key else {
            errors.push(|| missing("HostAsnCache", i, true));
            continue;
        };
        let Ok(asn) = u32::try_from(key) else {
            errors.push(|| format!("HostAsnCache entry {i}: AS number {key} is out of range"));
            continue;
        };
        for &id in &e.value {
            match hosts.get(id) {
                Some(h) => hosts.drafts[h as usize].asns.push(asn),
                None => warnings.push(|| {
                    format!("HostAsnCache: AS{asn} names host {id}, which no host table or directory lists; ignored")
                }),
            }
        }
    }
}

fn netblock_countries(
    entries: &[proto::StringStringMap],
    errors: &mut Reported,
) -> Vec<(IpNet, Country)> {
    let mut out = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let (Some(key), Some(cc)) = (e.key.as_deref(), e.value.as_deref()) else {
            errors.push(|| missing("NetblockCountryCache", i, e.key.is_none()));
            continue;
        };
        match (netblock::parse(key), Country::parse(cc)) {
            (Ok(net), Some(country)) => out.push((net, country)),
            (Err(why), _) => errors.push(|| format!("NetblockCountryCache entry {i}: {why}")),
            (_, None) => errors.push(|| {
                format!("NetblockCountryCache entry {i} ({key}): {cc:?} is not a country code")
            }),
        }
    }
    out
}

/// CountryContinentRedirectCache; `--` (no continent) entries are skipped
/// as in the CSV.
fn continent_overrides(
    entries: &[proto::StringStringMap],
    errors: &mut Reported,
) -> Vec<(Country, String)> {
    let mut out = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        let (Some(cc), Some(continent)) = (e.key.as_deref(), e.value.as_deref()) else {
            errors.push(|| missing("CountryContinentRedirectCache", i, e.key.is_none()));
            continue;
        };
        let continent = continent.trim();
        if continent == "--" {
            continue;
        }
        let Some(country) = Country::parse(cc) else {
            errors.push(|| {
                format!("CountryContinentRedirectCache entry {i}: {cc:?} is not a country code")
            });
            continue;
        };
        if continent.len() != 2 || !continent.bytes().all(|b| b.is_ascii_alphabetic()) {
            errors.push(|| {
                format!("CountryContinentRedirectCache: country {country}: {continent:?} is not a continent code")
            });
            continue;
        }
        out.insert(country, continent.to_ascii_uppercase());
    }
    out.into_iter().collect()
}

/// FileDetailsCache. Versions keep MM2's order (newest first: the first is
/// current, the rest alternates). A file without versions describes
/// nothing and is left out; a file name repeated in a directory: the last
/// wins.
fn file_details(
    entries: Vec<proto::FileDetailsCacheDirectoryType>,
    errors: &mut Reported,
) -> Vec<DirectoryFiles> {
    let mut seen: HashSet<String> =
        HashSet::with_capacity_and_hasher(entries.len(), Default::default());
    let mut out = Vec::with_capacity(entries.len());
    for (i, d) in entries.into_iter().enumerate() {
        let Some(directory) = d.directory else {
            errors.push(|| {
                format!("FileDetailsCache entry {i}: the required field directory (1) is missing")
            });
            continue;
        };
        let directory = directory.trim_matches('/').to_owned();
        if !seen.insert(directory.clone()) {
            errors.push(|| format!("FileDetailsCache: directory {directory:?} is listed twice"));
            continue;
        }
        let mut files: BTreeMap<String, FileEntry> = BTreeMap::new();
        for (j, f) in d.file_details_cache_files.into_iter().enumerate() {
            let Some(name) = f.filename else {
                errors.push(|| format!("FileDetailsCache: directory {directory:?}, file {j}: the required field filename (1) is missing"));
                continue;
            };
            let place = |v: usize| format!("FileDetailsCache: {directory}/{name}, version {v}");
            let mut versions = Vec::with_capacity(f.file_details.len());
            for (v, fd) in f.file_details.into_iter().enumerate() {
                let (Some(timestamp), Some(size)) = (fd.time_stamp, fd.size) else {
                    let field = if fd.time_stamp.is_none() {
                        "TimeStamp (1)"
                    } else {
                        "Size (2)"
                    };
                    errors.push(|| format!("{}: the required field {field} is missing", place(v)));
                    continue;
                };
                let mut hash = |value: Option<String>, algo: &str, len: usize| {
                    hex_digest(value, len).unwrap_or_else(|found| {
                        errors.push(|| {
                            format!("{}: {algo} {found:?} is not {len} hex digits", place(v))
                        });
                        String::new()
                    })
                };
                versions.push(FileDetails {
                    timestamp,
                    size,
                    md5: hash(fd.md5, "MD5", 32),
                    sha1: hash(fd.sha1, "SHA1", 40),
                    sha256: hash(fd.sha256, "SHA256", 64),
                    sha512: hash(fd.sha512, "SHA512", 128),
                });
            }
            if !versions.is_empty() {
                files.insert(name.clone(), FileEntry { name, versions });
            }
        }
        out.push(DirectoryFiles {
            directory,
            files: files.into_values().collect(),
        });
    }
    out
}

/// A digest as lower-case hex; missing or empty → empty. Err holds the
/// offending text.
fn hex_digest(value: Option<String>, len: usize) -> Result<String, String> {
    let Some(v) = value else {
        return Ok(String::new());
    };
    let t = v.trim();
    if t.is_empty() {
        return Ok(String::new());
    }
    if t.len() == len && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(t.to_ascii_lowercase())
    } else {
        Err(v)
    }
}

/// Drafts → hosts. The name is the host part of the host's first URL (MM2's
/// cache carries no host names); a host without URLs is named `mm2-host-ID`.
/// A host is private when it carries directories (ByHostId) but is never in
/// a Global or ByCountry list: that is how MM2 leaves private hosts out of
/// everything but netblock and ASN answers.
fn finish_hosts(hosts: Hosts, host_urls: &[HostUrl], stats: &mut ConvertStats) -> Vec<Host> {
    let mut names: Vec<Option<&str>> = vec![None; hosts.ids.len()];
    for u in host_urls {
        names[u.host as usize].get_or_insert_with(|| authority(&u.url));
    }
    hosts
        .drafts
        .into_iter()
        .zip(hosts.ids)
        .zip(names)
        .map(|((d, id), name)| {
            let country = match (d.country, d.listed_country) {
                (Some(c), _) => c,
                (None, Some(c)) => {
                    stats.country_from_directories += 1;
                    c
                }
                _ => {
                    stats.unknown_country_hosts += 1;
                    UNKNOWN_COUNTRY
                }
            };
            let mut netblocks = d.netblocks;
            netblocks.sort_unstable();
            netblocks.dedup();
            let mut asns = d.asns;
            asns.sort_unstable();
            asns.dedup();
            Host {
                id,
                name: name.map_or_else(|| format!("mm2-host-{id}"), str::to_owned),
                site: String::new(),
                country,
                bandwidth: d.bandwidth.unwrap_or(1),
                private: d.carries && !d.public,
                allowed_countries: d.allowed,
                netblocks,
                asn_clients: !asns.is_empty(),
                asns,
                // MM2 does not record address families.
                families: Families::Unknown,
            }
        })
        .collect()
}

/// `mirror.example.org` from `https://user@mirror.example.org/pub`.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let auth = rest.split('/').next().unwrap_or(rest);
    auth.rsplit_once('@').map_or(auth, |(_, a)| a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_of_urls() {
        assert_eq!(authority("https://m.example/pub/fedora"), "m.example");
        assert_eq!(authority("ftp://anon@m.example:21/pub"), "m.example:21");
        assert_eq!(authority("rsync://m.example"), "m.example");
    }

    #[test]
    fn hex_digests() {
        assert_eq!(hex_digest(None, 4), Ok(String::new()));
        assert_eq!(hex_digest(Some(" ".into()), 4), Ok(String::new()));
        assert_eq!(hex_digest(Some("AbCd".into()), 4), Ok("abcd".into()));
        assert_eq!(hex_digest(Some("abcg".into()), 4), Err("abcg".into()));
        assert_eq!(hex_digest(Some("abc".into()), 4), Err("abc".into()));
    }

    #[test]
    fn reported_caps_and_counts() {
        let mut r = Reported::default();
        for i in 0..MAX_REPORTED + 5 {
            r.push(|| format!("m{i}"));
        }
        let d = r.into_diagnostics(Path::new("f"));
        assert_eq!(d.len(), MAX_REPORTED + 1);
        assert_eq!(d[MAX_REPORTED].message, "… and 5 more");
    }
}
