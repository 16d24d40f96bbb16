//! MirrorManager2's real-size example through the whole stack (issue 7):
//! `cache-builder import-mm2` converts `../shared/data/mm2/mirrorlist_cache.proto`,
//! `cache-builder inspect` reports its counts, `mirrorlist-server` serves it
//! with the bundled GeoIP database and MM2's `global_netblocks.txt`, and
//! `mirrorlist-client` answers real HTTP on loopback.
//!
//! The facts every answer is checked against come from the imported cache,
//! decoded here with `mirrorlist_core::cachefile::load`, and from
//! `global_netblocks.txt` (the client's ASN). For a deterministic sample of
//! repositories and for clients in several countries (their GeoIP country
//! checked once with `mmdblookup` against `data/geo-whois-asn-country.mmdb`),
//! the test computes the tiers README's "Selection" describes (netblock, ASN,
//! country, continent, global) as sets, and checks, through `/mirrorlist`
//! and `/metalink`:
//!
//! - every URL maps back to a host that carries the directory (`host_urls` +
//!   the directory's `by_host` and subpath); the plain list gives each host
//!   once, with its preferred protocol; the metalink gives each host all of
//!   its URLs, its country as `location`, preference 100 down;
//! - the answer is the expected tiers in order (each tier in any order), and
//!   the header line's notes are exactly the expected ones: the client's
//!   country first, then the other countries of its continent;
//! - a client inside a host's netblock gets that host (or one of an equally
//!   or more specific netblock) first, under `Using preferred netblock`; a
//!   client of an ASN host's ASN (in no host netblock) gets that host in the
//!   first tier, under `Using ASN N`;
//! - the metalink's size, timestamp, hashes and alternates are the cache's
//!   file details of `<dir>/repodata/repomd.xml`.
//!
//! Every problem is collected; the test fails once at the end, naming the
//! repository, arch, address and endpoint, with the answer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use mirrorlist_core::cachefile;
use mirrorlist_core::model::{Cache, Country, Directory, HostIdx, Protocol, UrlIdx};
use mirrorlist_tests::{bin, http, start_front_end, workspace_root, HttpResponse, Proc};

/// Clients and their GeoIP country in `data/geo-whois-asn-country.mmdb`
/// (checked with `mmdblookup`). LU has no mirror in the example (continent
/// tier only); NG's continent has mirrors only in ZA (global tier too).
const CLIENTS: [(&str, &str); 10] = [
    ("85.214.0.1", "DE"),
    ("8.8.8.8", "US"),
    ("200.160.2.3", "BR"),
    ("133.11.0.1", "JP"),
    ("81.2.69.160", "GB"),
    ("203.2.218.214", "AU"),
    ("145.97.0.1", "NL"),
    ("158.64.0.1", "LU"),
    ("41.190.0.1", "NG"),
    ("2a01:4f8::1", "DE"),
];

/// How many repo+arch pairs are sampled.
const SAMPLE: usize = 10;

/// The server's default `--minimum`.
const MINIMUM: usize = 5;

/// How much of an answer a failure message shows.
const SHOWN: usize = 6000;

fn mm2_data() -> PathBuf {
    workspace_root().join("../shared/data/mm2")
}

struct Stack {
    _dir: tempfile::TempDir,
    _server: Proc,
    _client: Proc,
    addr: String,
}

impl Stack {
    fn get(&self, target: &str) -> HttpResponse {
        http(&self.addr, "GET", target, &[])
    }
}

// ---------------------------------------------------------------------------
// Facts: the ASN table and the country/continent table, read independently.

/// `global_netblocks.txt`: (is IPv6, prefix length, network) → ASN, plus the
/// entries in file order (for deterministic picks).
struct AsnTable {
    map: HashMap<(bool, u8, u128), u32>,
    entries: Vec<(bool, u8, u128, u32)>,
}

fn bits(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

fn width(v6: bool) -> u8 {
    if v6 {
        128
    } else {
        32
    }
}

fn mask(v6: bool, addr: u128, len: u8) -> u128 {
    let w = width(v6);
    if len == 0 {
        return 0;
    }
    let full = if v6 { u128::MAX } else { u128::from(u32::MAX) };
    addr & (full << (w - len)) & full
}

fn to_ip(v6: bool, addr: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(addr.into())
    } else {
        IpAddr::V4((addr as u32).into())
    }
}

impl AsnTable {
    fn load(path: &Path) -> AsnTable {
        let text = std::fs::read_to_string(path).expect("global_netblocks.txt");
        let mut map = HashMap::with_capacity(800_000);
        let mut entries = Vec::with_capacity(800_000);
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(prefix), Some(asn)) = (parts.next(), parts.next()) else {
                panic!("bad global_netblocks line {line:?}");
            };
            let (addr, len) = prefix.split_once('/').expect("prefix/len");
            let ip: IpAddr = addr.parse().expect("prefix address");
            let len: u8 = len.parse().expect("prefix length");
            let asn: u32 = asn.parse().expect("ASN");
            let (v6, b) = bits(ip);
            let net = mask(v6, b, len);
            map.insert((v6, len, net), asn);
            entries.push((v6, len, net, asn));
        }
        AsnTable { map, entries }
    }

    /// Longest-prefix match.
    fn lookup(&self, ip: IpAddr) -> Option<u32> {
        let (v6, b) = bits(ip);
        (0..=width(v6))
            .rev()
            .find_map(|len| self.map.get(&(v6, len, mask(v6, b, len))).copied())
    }
}

/// `data/country_continent.csv` as the bundled table the import uses.
fn bundled_continents() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(workspace_root().join("data/country_continent.csv"))
        .expect("data/country_continent.csv");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(','))
        .map(|(c, k)| (c.trim().to_owned(), k.trim().to_owned()))
        .filter(|(_, k)| k != "--")
        .collect()
}

// ---------------------------------------------------------------------------
// The expected answer, as tiers of hosts.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Endpoint {
    Mirrorlist,
    Metalink,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Mirrorlist => "/mirrorlist",
            Endpoint::Metalink => "/metalink",
        }
    }

    fn usable(self, p: Protocol) -> bool {
        self == Endpoint::Metalink || p != Protocol::Rsync
    }
}

/// Where a client is, as the test knows it.
#[derive(Clone, Debug)]
struct Client {
    ip: IpAddr,
    /// `None`: not known to the test (only the netblock and ASN tiers and the
    /// general rules are checked).
    country: Option<Country>,
    asn: Option<u32>,
}

/// The tiers, the header notes and which tiers are checked exactly.
#[derive(Debug, Default)]
struct Expected {
    tiers: Vec<(String, BTreeSet<HostIdx>)>,
    notes: String,
    /// Only the first `exact` tiers are known (the rest needs the country).
    exact: usize,
    /// Whether the header is known in full.
    full: bool,
}

struct Model<'a> {
    cache: &'a Cache,
    dir: &'a Directory,
    endpoint: Endpoint,
    client: &'a Client,
    seen: BTreeSet<HostIdx>,
}

impl Model<'_> {
    fn urls(&self, h: HostIdx) -> Option<&[UrlIdx]> {
        let set = self.cache.hosts_of(self.dir);
        Some(set.urls(set.host_position(h)?))
    }

    fn admit(&self, h: HostIdx, public: bool) -> bool {
        if self.seen.contains(&h) {
            return false;
        }
        let Some(urls) = self.urls(h) else {
            return false;
        };
        let usable = urls.iter().any(|&u| {
            self.endpoint
                .usable(self.cache.host_urls[u as usize].protocol)
        });
        if !usable {
            return false;
        }
        let host = &self.cache.hosts[h as usize];
        if !host.families.serves(&self.client.ip) {
            return false;
        }
        if public {
            if host.private {
                return false;
            }
            if !host.allowed_countries.is_empty()
                && !self
                    .client
                    .country
                    .is_some_and(|c| host.allowed_countries.contains(&c))
            {
                return false;
            }
        }
        true
    }

    fn gather(&mut self, hosts: &[HostIdx], public: bool, tier: &mut BTreeSet<HostIdx>) -> usize {
        let mut n = 0;
        for &h in hosts {
            if self.admit(h, public) {
                self.seen.insert(h);
                tier.insert(h);
                n += 1;
            }
        }
        n
    }

    fn expect(mut self) -> Expected {
        let cache = self.cache;
        let mut out = Expected::default();
        let ip = self.client.ip;

        // Netblock tiers, most specific prefix first.
        let mut nets: BTreeMap<(std::cmp::Reverse<u8>, String), Vec<HostIdx>> = BTreeMap::new();
        for (i, h) in cache.hosts.iter().enumerate() {
            for net in &h.netblocks {
                if net.contains(&ip) {
                    nets.entry((std::cmp::Reverse(net.prefix_len()), net.to_string()))
                        .or_default()
                        .push(i as HostIdx);
                }
            }
        }
        let mut found = 0;
        for ((_, net), hosts) in nets {
            let mut tier = BTreeSet::new();
            found += self.gather(&hosts, false, &mut tier);
            if !tier.is_empty() {
                out.tiers.push((format!("netblock {net}"), tier));
            }
        }
        if found > 0 {
            out.notes.push_str("Using preferred netblock ");
        }

        if let Some(asn) = self.client.asn {
            let hosts: Vec<HostIdx> = cache
                .hosts
                .iter()
                .enumerate()
                .filter(|(_, h)| h.asn_clients && h.asns.contains(&asn))
                .map(|(i, _)| i as HostIdx)
                .collect();
            let mut tier = BTreeSet::new();
            if self.gather(&hosts, false, &mut tier) > 0 {
                out.notes.push_str(&format!("Using ASN {asn} "));
                out.tiers.push((format!("ASN {asn}"), tier));
            }
        }
        out.exact = out.tiers.len();

        let Some(country) = self.client.country else {
            return out;
        };
        let set = cache.hosts_of(self.dir);
        let by_country = set.by_country();
        if let Some((_, hosts)) = by_country.iter().find(|(c, _)| *c == country) {
            let mut tier = BTreeSet::new();
            if self.gather(hosts, true, &mut tier) > 0 {
                out.notes.push_str(&format!("country = {country} "));
                out.tiers.push((format!("country {country}"), tier));
            }
        }
        if let Some(continent) = cache.continent_of(country) {
            let mut tier = BTreeSet::new();
            for (c, hosts) in &by_country {
                let c = *c;
                if c == country || cache.continent_of(c) != Some(continent) {
                    continue;
                }
                if self.gather(hosts, true, &mut tier) > 0 {
                    out.notes.push_str(&format!("country = {c} "));
                }
            }
            if !tier.is_empty() {
                out.tiers.push((format!("continent {continent}"), tier));
            }
        }
        if self.seen.len() < MINIMUM {
            let mut tier = BTreeSet::new();
            self.gather(&set.global(), true, &mut tier);
            out.notes.push_str("country = global ");
            if !tier.is_empty() {
                out.tiers.push(("global".into(), tier));
            }
        }
        out.exact = out.tiers.len();
        out.full = true;
        out
    }
}

// ---------------------------------------------------------------------------
// Reading answers back.

/// One `<url>` line of a metalink.
#[derive(Debug)]
struct MetaUrl {
    protocol: String,
    location: String,
    preference: u32,
    private: bool,
    url: String,
}

fn attr(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = line[start..].find('"')?;
    Some(line[start..start + len].to_owned())
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn meta_urls(text: &str) -> Vec<MetaUrl> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("<url "))
        .map(|l| {
            let open_end = l.find('>').expect("url element");
            let close = l.rfind("</url>").expect("</url>");
            MetaUrl {
                protocol: attr(l, "protocol").unwrap_or_default(),
                location: attr(l, "location").unwrap_or_default(),
                preference: attr(l, "preference")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0),
                private: attr(l, "mm0:private").as_deref() == Some("True"),
                url: unescape(&l[open_end + 1..close]),
            }
        })
        .collect()
}

/// URL as listed → (host, host URL), for one directory and what follows
/// the directory (`/` for lists, `/repodata/repomd.xml` for metalinks).
fn url_map(cache: &Cache, dir: &Directory, tail: &str) -> HashMap<String, (HostIdx, UrlIdx)> {
    let mut map = HashMap::new();
    for (h, urls) in cache.hosts_of(dir).by_host() {
        for &u in urls {
            let base = &cache.host_urls[u as usize].url;
            let url = if dir.subpath.is_empty() {
                format!("{base}{tail}")
            } else {
                format!("{base}/{}{tail}", dir.subpath)
            };
            map.entry(url).or_insert((h, u));
        }
    }
    map
}

// ---------------------------------------------------------------------------
// The checks.

struct Checker<'a> {
    cache: &'a Cache,
    asn: &'a AsnTable,
    stack: &'a Stack,
    failures: Vec<String>,
    requests: usize,
}

fn shown(text: &str) -> String {
    if text.len() <= SHOWN {
        text.to_owned()
    } else {
        let mut end = SHOWN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}\n… ({} more bytes)", &text[..end], text.len() - end)
    }
}

impl<'a> Checker<'a> {
    fn host_name(&self, h: HostIdx) -> String {
        let host = &self.cache.hosts[h as usize];
        format!("{} (id {}, {})", host.name, host.id, host.country)
    }

    fn names(&self, hosts: &BTreeSet<HostIdx>) -> String {
        hosts
            .iter()
            .map(|&h| self.host_name(h))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn tiers_text(&self, e: &Expected) -> String {
        e.tiers
            .iter()
            .enumerate()
            .map(|(i, (name, hosts))| {
                let mark = if i < e.exact { "" } else { " (not checked)" };
                format!("  {name}{mark}: {}", self.names(hosts))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The client as the test knows it: country from the cache's netblock
    /// overrides, else the given GeoIP country; ASN from the table.
    fn client(&self, ip: IpAddr, geo: Option<&str>) -> Client {
        let country = self
            .cache
            .netblock_countries
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map(|(_, c)| *c)
            .or_else(|| geo.and_then(Country::parse));
        Client {
            ip,
            country,
            asn: self.asn.lookup(ip),
        }
    }

    /// Asks for `repo`/`arch` at `endpoint` as `client`; checks the answer;
    /// returns the hosts in answer order (empty on failure).
    fn check(
        &mut self,
        endpoint: Endpoint,
        repo: &str,
        arch: &str,
        client: &Client,
    ) -> Vec<HostIdx> {
        let ipq = client.ip.to_string().replace(':', "%3A");
        let target = format!("{}?repo={repo}&arch={arch}&ip={ipq}", endpoint.path());
        let r = self.stack.get(&target);
        self.requests += 1;
        let text = r.text();
        let what = format!(
            "{target} (repo {repo}, arch {arch}, client {} country {} ASN {})",
            client.ip,
            client.country.map_or("unknown".into(), |c| c.to_string()),
            client.asn.map_or("none".into(), |a| a.to_string()),
        );
        let mut problems = Vec::new();
        let hosts = self.check_answer(endpoint, repo, arch, client, &r, &mut problems);
        if !problems.is_empty() {
            self.failures.push(format!(
                "{what}:\n- {}\nanswer ({}):\n{}",
                problems.join("\n- "),
                r.status,
                shown(&text)
            ));
            return Vec::new();
        }
        hosts
    }

    fn check_answer(
        &self,
        endpoint: Endpoint,
        repo: &str,
        arch: &str,
        client: &Client,
        r: &HttpResponse,
        problems: &mut Vec<String>,
    ) -> Vec<HostIdx> {
        let cache = self.cache;
        let text = r.text();
        let Some(rp) = cache.repo(repo, arch) else {
            problems.push("the repository is not in the decoded cache".into());
            return Vec::new();
        };
        let repo_dir = &cache.directories[rp.directory as usize];
        let file = cache.file(&format!("{}/repodata", repo_dir.path), "repomd.xml");
        if r.status != 200 {
            if endpoint == Endpoint::Metalink && file.is_none() && r.status == 404 {
                // The cache has no details: MM2's failure document is right.
                if !text.contains("not found or has no metalink") {
                    problems.push("404 without MM2's failure document".into());
                }
            } else {
                problems.push(format!("status {} (expected 200)", r.status));
            }
            return Vec::new();
        }
        // The directory whose hosts are listed, and what follows its URL.
        let (dir, tail) = match endpoint {
            Endpoint::Mirrorlist => (repo_dir, "/".to_owned()),
            Endpoint::Metalink => match cache.directory(&format!("{}/repodata", repo_dir.path)) {
                Some((_, d)) => (d, "/repomd.xml".to_owned()),
                None => (repo_dir, "/repodata/repomd.xml".to_owned()),
            },
        };
        let urls = url_map(cache, dir, &tail);

        // Map the answer back to hosts.
        let mut order: Vec<HostIdx> = Vec::new();
        match endpoint {
            Endpoint::Mirrorlist => {
                let mut lines = text.lines();
                let header = lines.next().unwrap_or("");
                let prefix = format!("# repo = {repo} arch = {arch} ");
                if !header.starts_with(&prefix) {
                    problems.push(format!("header does not start with {prefix:?}"));
                }
                let notes = header.strip_prefix(&prefix).unwrap_or("");
                self.check_notes(notes, client, problems);
                for line in lines.filter(|l| !l.starts_with('#')) {
                    let Some(&(h, u)) = urls.get(line) else {
                        problems.push(format!(
                            "{line}: no host carrying {} has this URL",
                            dir.path
                        ));
                        continue;
                    };
                    if order.contains(&h) {
                        problems.push(format!("{} listed twice", self.host_name(h)));
                    }
                    order.push(h);
                    let best = self
                        .urls_of(dir, h)
                        .iter()
                        .map(|&u| cache.host_urls[u as usize].protocol)
                        .filter(|&p| p != Protocol::Rsync)
                        .min();
                    let got = cache.host_urls[u as usize].protocol;
                    if best != Some(got) {
                        problems.push(format!(
                            "{line}: {} has a {best:?} URL, preferred over {got:?}",
                            self.host_name(h)
                        ));
                    }
                }
            }
            Endpoint::Metalink => {
                self.check_details(&text, file, problems);
                let mut listed: Vec<(HostIdx, BTreeSet<UrlIdx>, u32)> = Vec::new();
                for m in meta_urls(&text) {
                    let Some(&(h, u)) = urls.get(&m.url) else {
                        problems.push(format!(
                            "{}: no host carrying {} has this URL",
                            m.url, dir.path
                        ));
                        continue;
                    };
                    let host = &cache.hosts[h as usize];
                    let p = cache.host_urls[u as usize].protocol;
                    if m.protocol != p.as_str() {
                        problems.push(format!("{}: protocol=\"{}\"", m.url, m.protocol));
                    }
                    if m.location != host.country.as_str() {
                        problems.push(format!(
                            "{}: location=\"{}\", but {} is in {}",
                            m.url, m.location, host.name, host.country
                        ));
                    }
                    if m.private != host.private {
                        problems.push(format!("{}: mm0:private is {}", m.url, m.private));
                    }
                    match listed.last_mut() {
                        Some((last, set, pref)) if *last == h => {
                            set.insert(u);
                            if *pref != m.preference {
                                problems.push(format!(
                                    "{}: preference {} within a host listed at {}",
                                    m.url, m.preference, pref
                                ));
                            }
                        }
                        _ => listed.push((h, BTreeSet::from([u]), m.preference)),
                    }
                }
                for (i, (h, set, pref)) in listed.iter().enumerate() {
                    if order.contains(h) {
                        problems.push(format!("{} listed in two places", self.host_name(*h)));
                    }
                    order.push(*h);
                    let want = 100u32.saturating_sub(i as u32).max(1);
                    if *pref != want {
                        problems.push(format!(
                            "{}: preference {pref}, expected {want} (host {} of the list)",
                            self.host_name(*h),
                            i + 1
                        ));
                    }
                    let all: BTreeSet<UrlIdx> = self.urls_of(dir, *h).iter().copied().collect();
                    if *set != all {
                        problems.push(format!(
                            "{}: {} of its {} URLs listed",
                            self.host_name(*h),
                            set.len(),
                            all.len()
                        ));
                    }
                }
            }
        }

        // The tiers.
        let model = Model {
            cache,
            dir,
            endpoint,
            client,
            seen: BTreeSet::new(),
        };
        let e = model.expect();
        let mut rest = order.as_slice();
        for (i, (name, tier)) in e.tiers.iter().enumerate() {
            if i >= e.exact {
                break;
            }
            let n = tier.len().min(rest.len());
            let got: BTreeSet<HostIdx> = rest[..n].iter().copied().collect();
            if got != *tier {
                problems.push(format!(
                    "tier {} ({name}) should be {{{}}}, the answer has {{{}}} there\nexpected tiers:\n{}",
                    i + 1,
                    self.names(tier),
                    self.names(&got),
                    self.tiers_text(&e)
                ));
                return order;
            }
            rest = &rest[n..];
        }
        if e.full && !rest.is_empty() {
            problems.push(format!(
                "unexpected hosts after the last tier: {}\nexpected tiers:\n{}",
                self.names(&rest.iter().copied().collect()),
                self.tiers_text(&e)
            ));
        }
        if endpoint == Endpoint::Mirrorlist {
            let header = text.lines().next().unwrap_or("");
            let want = format!("# repo = {repo} arch = {arch} {}", e.notes);
            if e.full && header != want {
                problems.push(format!("header should be {want:?}"));
            } else if !e.full && !header.starts_with(&want) {
                problems.push(format!("header should start with {want:?}"));
            }
        }
        order
    }

    fn urls_of(&self, dir: &Directory, h: HostIdx) -> &'a [UrlIdx] {
        let set = self.cache.hosts_of(dir);
        set.host_position(h).map_or(&[], |i| set.urls(i))
    }

    /// The header's `country = XX` notes: the client's country first when
    /// it has any, all of them on one continent (the cache's, which is the
    /// bundled CSV's with MM2's overrides).
    fn check_notes(&self, notes: &str, client: &Client, problems: &mut Vec<String>) {
        let countries: Vec<&str> = notes
            .split("country = ")
            .skip(1)
            .map(|s| s.trim())
            .filter(|c| *c != "global")
            .collect();
        let continent = |c: &str| Country::parse(c).and_then(|c| self.cache.continent_of(c));
        if let Some(first) = countries.first() {
            let k = continent(first);
            for c in &countries[1..] {
                if continent(c) != k {
                    problems.push(format!(
                        "country {c} ({:?}) is not on {first}'s continent ({k:?})",
                        continent(c)
                    ));
                }
            }
            if let Some(cc) = client.country {
                if *first != cc.as_str() && continent(first) != self.cache.continent_of(cc) {
                    problems.push(format!(
                        "first country {first} is neither the client's {cc} nor on its continent"
                    ));
                }
            }
        }
    }

    /// The metalink's current version and alternates against the cache.
    fn check_details(
        &self,
        text: &str,
        file: Option<&mirrorlist_core::model::FileEntry>,
        problems: &mut Vec<String>,
    ) {
        let Some(file) = file else {
            problems.push("a metalink for a file the cache has no details of".into());
            return;
        };
        let Some(start) = text.find("<file name=\"repomd.xml\">") else {
            problems.push("no <file name=\"repomd.xml\">".into());
            return;
        };
        let body = &text[start..];
        let resources = body.find("<resources").unwrap_or(body.len());
        let body = &body[..resources];
        let (current, alternates) = match body.find("<mm0:alternates>") {
            Some(i) => (&body[..i], &body[i..]),
            None => (body, ""),
        };
        let expect = |part: &str, d: &mirrorlist_core::model::FileDetails, which: &str| {
            let mut missing = Vec::new();
            let mut want = Vec::new();
            if d.timestamp != 0 {
                want.push(format!("<mm0:timestamp>{}</mm0:timestamp>", d.timestamp));
            }
            if d.size != 0 {
                want.push(format!("<size>{}</size>", d.size));
            }
            for (kind, v) in [
                ("md5", &d.md5),
                ("sha1", &d.sha1),
                ("sha256", &d.sha256),
                ("sha512", &d.sha512),
            ] {
                if !v.is_empty() {
                    want.push(format!("<hash type=\"{kind}\">{v}</hash>"));
                }
            }
            for w in want {
                if !part.contains(&w) {
                    missing.push(format!("{which}: {w} missing"));
                }
            }
            missing
        };
        let Some(first) = file.versions.first() else {
            problems.push("the cache's repomd.xml entry has no versions".into());
            return;
        };
        if first.sha256.is_empty() || first.size == 0 {
            problems.push("the cache's current repomd.xml has no size or SHA-256".into());
        }
        problems.extend(expect(current, first, "current version"));
        let blocks: Vec<&str> = alternates.split("<mm0:alternate>").skip(1).collect();
        if blocks.len() != file.versions.len() - 1 {
            problems.push(format!(
                "{} alternates listed, the cache has {}",
                blocks.len(),
                file.versions.len() - 1
            ));
        }
        for (i, (block, d)) in blocks.iter().zip(&file.versions[1..]).enumerate() {
            problems.extend(expect(block, d, &format!("alternate {}", i + 1)));
        }
    }
}

// ---------------------------------------------------------------------------

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn inspect_count(report: &str, key: &str) -> usize {
    report
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("inspect shows no {key:?}:\n{report}"))
}

#[test]
fn mm2_example_through_the_whole_stack() {
    let mm2 = mm2_data();
    let proto = mm2.join("mirrorlist_cache.proto");
    let netblocks = mm2.join("global_netblocks.txt");
    if !proto.exists() || !netblocks.exists() {
        eprintln!(
            "note: {} is absent; the MirrorManager2 end-to-end test does nothing here (it runs on CI)",
            proto.display()
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cache_path = dir.path().join("cache.bin");

    // Import and inspect.
    run(
        Command::new(bin("cache-builder"))
            .arg("import-mm2")
            .arg("--proto")
            .arg(&proto)
            .arg("--global-netblocks")
            .arg(&netblocks)
            .arg("--output")
            .arg(&cache_path),
        "cache-builder import-mm2",
    );
    let report = run(
        Command::new(bin("cache-builder"))
            .arg("inspect")
            .arg(&cache_path),
        "cache-builder inspect",
    );
    assert_eq!(inspect_count(&report, "hosts"), 400, "{report}");
    assert_eq!(inspect_count(&report, "countries"), 60, "{report}");
    assert_eq!(inspect_count(&report, "repositories"), 92, "{report}");
    assert_eq!(inspect_count(&report, "directories"), 3606, "{report}");

    // The stack; the facts are read while the server loads.
    let data = workspace_root().join("data");
    let socket = dir.path().join("mirrorlist.sock");
    let mut server = Proc::spawn({
        let mut cmd = Command::new(bin("mirrorlist-server"));
        cmd.arg("--cache")
            .arg(&cache_path)
            .arg("--socket")
            .arg(&socket)
            .arg("--asn-netblocks")
            .arg(&netblocks)
            .arg("--geoip")
            .arg(data.join("geo-whois-asn-country.mmdb"));
        cmd
    });
    let cache = cachefile::load(&cache_path).expect("decoding the imported cache");
    let asn = AsnTable::load(&netblocks);
    server.wait_for("ready");
    let (client, addr) = start_front_end(&socket, &[]);
    let stack = Stack {
        _dir: dir,
        _server: server,
        _client: client,
        addr,
    };

    // The decoded cache says what inspect said, and its continent table is
    // the bundled CSV.
    let s = cache.summary();
    assert_eq!(
        (s.hosts, s.countries, s.repos, s.directories),
        (400, 60, 92, 3606)
    );
    let csv = bundled_continents();
    let table: BTreeMap<String, String> = cache
        .country_continent
        .iter()
        .map(|(c, k)| (c.to_string(), k.clone()))
        .collect();
    assert_eq!(
        table, csv,
        "the cache's continents are data/country_continent.csv"
    );

    // A deterministic sample of enabled repositories.
    let enabled: Vec<(&str, &str)> = cache
        .repos
        .iter()
        .filter(|r| !cache.disabled_repos.contains(&r.name))
        .map(|r| (r.name.as_str(), r.arch.as_str()))
        .collect();
    let step = (enabled.len() / SAMPLE).max(1);
    let sample: Vec<(&str, &str)> = enabled.iter().step_by(step).take(SAMPLE).copied().collect();
    eprintln!("sampled repositories: {sample:?}");

    let mut checker = Checker {
        cache: &cache,
        asn: &asn,
        stack: &stack,
        failures: Vec::new(),
        requests: 0,
    };

    // Clients by country, and the global checks of every answer. Not
    // vacuous: a client in a country with mirrors gets one of them first
    // for some sampled repository.
    let mut home_first: BTreeMap<&str, usize> = BTreeMap::new();
    for &(repo, arch) in &sample {
        for (ip, cc) in CLIENTS {
            let client = checker.client(ip.parse().expect("client address"), Some(cc));
            for endpoint in [Endpoint::Mirrorlist, Endpoint::Metalink] {
                let order = checker.check(endpoint, repo, arch, &client);
                let home = order
                    .first()
                    .is_some_and(|&h| cache.hosts[h as usize].country.as_str() == cc);
                *home_first.entry(ip).or_default() += usize::from(home);
            }
        }
    }
    for (ip, cc) in CLIENTS {
        let has_hosts = cache.hosts.iter().any(|h| h.country.as_str() == cc);
        assert_eq!(
            home_first[ip] > 0,
            has_hosts,
            "client {ip} ({cc}): answers starting with a host of {cc}: {}",
            home_first[ip]
        );
    }

    // Netblock clients: for hosts with an IPv4 netblock that carry a sampled
    // directory (a public and a private one where the example has them), an
    // address inside the netblock.
    let carries = |h: HostIdx, repo: &str, arch: &str| {
        let d = &cache.directories[cache.repo(repo, arch).expect("sampled").directory as usize];
        cache.hosts_of(d).host_position(h).is_some()
    };
    let mut netblock_cases = Vec::new();
    for private in [false, true] {
        let found = cache.hosts.iter().enumerate().find_map(|(i, h)| {
            if h.private != private {
                return None;
            }
            let net = h
                .netblocks
                .iter()
                .find(|n| matches!(n.addr(), IpAddr::V4(_)))?;
            let (repo, arch) = sample.iter().find(|(r, a)| carries(i as HostIdx, r, a))?;
            let (_, base) = bits(net.network());
            let ip = if net.prefix_len() >= 31 {
                net.network()
            } else {
                to_ip(false, base + 1)
            };
            Some((i as HostIdx, *net, ip, *repo, *arch))
        });
        match found {
            Some(case) => netblock_cases.push(case),
            None => eprintln!(
                "note: no {} host with an IPv4 netblock carries a sampled repository",
                if private { "private" } else { "public" }
            ),
        }
    }
    assert!(
        !netblock_cases.is_empty(),
        "the example has hosts with netblocks"
    );
    for (h, net, ip, repo, arch) in netblock_cases {
        eprintln!(
            "netblock client {ip} in {net} of {} for {repo} {arch}",
            checker.host_name(h)
        );
        let client = checker.client(ip, None);
        for endpoint in [Endpoint::Mirrorlist, Endpoint::Metalink] {
            let before = checker.failures.len();
            let order = checker.check(endpoint, repo, arch, &client);
            if checker.failures.len() > before {
                continue;
            }
            // The host, or one of an equally or more specific netblock, first.
            let first_ok = order.first().is_some_and(|&f| {
                cache.hosts[f as usize]
                    .netblocks
                    .iter()
                    .any(|n| n.contains(&ip) && n.prefix_len() >= net.prefix_len())
            });
            if !first_ok || !order.contains(&h) {
                checker.failures.push(format!(
                    "{endpoint:?} repo {repo} arch {arch} ip {ip}: {} (netblock {net}) should be in the first tier; the answer's hosts: {:?}",
                    checker.host_name(h),
                    order.iter().map(|&x| checker.host_name(x)).collect::<Vec<_>>()
                ));
            }
        }
        // The header names the netblock tier.
        let r = stack.get(&format!("/mirrorlist?repo={repo}&arch={arch}&ip={ip}"));
        let header = r.text().lines().next().unwrap_or("").to_owned();
        if !header.starts_with(&format!(
            "# repo = {repo} arch = {arch} Using preferred netblock "
        )) {
            checker.failures.push(format!(
                "repo {repo} arch {arch} ip {ip} (in {net} of {}): header lacks `Using preferred netblock`:\n{}",
                checker.host_name(h),
                shown(&r.text())
            ));
        }
    }

    // ASN clients: a host that takes its ASN's clients, and an address whose
    // longest prefix in global_netblocks.txt is of that ASN and which is in
    // no host's netblock.
    let in_host_netblock = |ip: IpAddr| {
        cache
            .hosts
            .iter()
            .any(|h| h.netblocks.iter().any(|n| n.contains(&ip)))
    };
    let mut asn_cases: Vec<(HostIdx, IpAddr, u32, &str, &str)> = Vec::new();
    for (i, h) in cache.hosts.iter().enumerate() {
        if asn_cases.len() == 2 || !h.asn_clients || h.asns.is_empty() {
            continue;
        }
        if asn_cases.iter().any(|(_, _, a, ..)| h.asns.contains(a)) {
            continue;
        }
        let Some((repo, arch)) = sample.iter().find(|(r, a)| carries(i as HostIdx, r, a)) else {
            continue;
        };
        let ip = asn
            .entries
            .iter()
            .filter(|(v6, len, _, a)| !v6 && *len <= 30 && h.asns.contains(a))
            .map(|(_, _, net, a)| (to_ip(false, net + 1), *a))
            .take(50)
            .find(|(ip, a)| asn.lookup(*ip) == Some(*a) && !in_host_netblock(*ip));
        if let Some((ip, a)) = ip {
            asn_cases.push((i as HostIdx, ip, a, *repo, *arch));
        }
    }
    assert!(
        !asn_cases.is_empty(),
        "the example has ASN hosts with a usable prefix"
    );
    for (h, ip, a, repo, arch) in asn_cases {
        eprintln!(
            "ASN {a} client {ip} for {} ({repo} {arch})",
            checker.host_name(h)
        );
        let client = checker.client(ip, None);
        assert_eq!(client.asn, Some(a));
        for endpoint in [Endpoint::Mirrorlist, Endpoint::Metalink] {
            let before = checker.failures.len();
            let order = checker.check(endpoint, repo, arch, &client);
            if checker.failures.len() > before {
                continue;
            }
            let tier: Vec<HostIdx> = order
                .iter()
                .copied()
                .take_while(|&x| {
                    cache.hosts[x as usize].asn_clients && cache.hosts[x as usize].asns.contains(&a)
                })
                .collect();
            if !tier.contains(&h) {
                checker.failures.push(format!(
                    "{endpoint:?} repo {repo} arch {arch} ip {ip}: {} (ASN {a}) should be in the first tier; the answer's hosts: {:?}",
                    checker.host_name(h),
                    order.iter().map(|&x| checker.host_name(x)).collect::<Vec<_>>()
                ));
            }
        }
        let r = stack.get(&format!("/mirrorlist?repo={repo}&arch={arch}&ip={ip}"));
        let header = r.text().lines().next().unwrap_or("").to_owned();
        if !header.starts_with(&format!("# repo = {repo} arch = {arch} Using ASN {a} ")) {
            checker.failures.push(format!(
                "repo {repo} arch {arch} ip {ip} (ASN {a} of {}): header lacks `Using ASN {a}`:\n{}",
                checker.host_name(h),
                shown(&r.text())
            ));
        }
    }

    // Disabled repositories answer so.
    for name in &cache.disabled_repos {
        if let Some(r) = cache.repos.iter().find(|r| &r.name == name) {
            let resp = stack.get(&format!(
                "/mirrorlist?repo={name}&arch={}&ip=85.214.0.1",
                r.arch
            ));
            let want = format!("# repo = {name} arch = {} repo disabled", r.arch);
            if resp.status != 404 || !resp.text().starts_with(&want) {
                checker.failures.push(format!(
                    "disabled repo {name} arch {}: expected 404 {want:?}, got {}:\n{}",
                    r.arch,
                    resp.status,
                    shown(&resp.text())
                ));
            }
        }
    }

    let n = checker.failures.len();
    eprintln!("{} requests checked, {n} failed", checker.requests);
    let shown_failures: Vec<&String> = checker.failures.iter().take(8).collect();
    assert!(
        n == 0,
        "{n} of {} answers failed; the first {}:\n\n{}",
        checker.requests,
        shown_failures.len(),
        shown_failures
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}
