//! Checks a parsed description and turns it into the cache model.
//!
//! Everything the description says is checked here, before any file of the
//! master tree is hashed: country codes against the continent table, CIDRs,
//! URLs, names and cross-references (categories, repositories, redirects),
//! and that every enabled repository's directory exists in the master tree.
//! All problems are collected and reported together, each with its line.
//!
//! The conversion follows MirrorManager's mirrorlist cache: a directory is
//! carried by a host when the host has URLs for the directory's category and
//! its include/exclude lists allow the directory; public hosts go into the
//! directory's `global` and `by_country` lists, every carrying host (private
//! ones too) into `by_host` with the URLs of that category.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use mirrorlist_core::model::{
    Cache, Category, Country, Directory, Families, Host, HostIdx, HostSet, HostUrl, Protocol, Repo,
    RepoRedirect, UrlIdx,
};
use toml::Spanned;

use crate::continents::ContinentTable;
use crate::description::{FamiliesDesc, HostCategoryDesc, HostDesc, Loaded};
use crate::error::{ConfigError, Diagnostic};

/// A checked description: the cache without file details, and what the
/// scan needs.
#[derive(Debug)]
pub struct Resolved {
    /// The cache model; `built_at` and `file_details` are the caller's.
    pub cache: Cache,
    /// The master tree, resolved against the description's directory.
    pub master_tree: PathBuf,
    /// Repository directories present in the master tree, to scan.
    pub scan_dirs: Vec<String>,
    /// Alternates kept per file.
    pub max_alternates: u32,
    /// Maximum age of an alternate, in days.
    pub max_alternate_age_days: u32,
}

/// Checks `loaded` and converts it.
pub fn resolve(loaded: &Loaded) -> Result<Resolved, ConfigError> {
    let mut r = Resolver {
        loaded,
        diags: Vec::new(),
    };
    let resolved = r.run();
    if r.diags.is_empty() {
        Ok(resolved)
    } else {
        let mut diags = r.diags;
        // Report in file order (the continent table's own errors first).
        diags.sort_by_key(|d| (d.path != loaded.path, d.line));
        Err(ConfigError::Invalid(diags))
    }
}

struct Resolver<'a> {
    loaded: &'a Loaded,
    diags: Vec<Diagnostic>,
}

/// A host as collected from `[[hosts]]` and `[[sites]]`.
struct HostRef<'a> {
    site: &'a str,
    desc: &'a Spanned<HostDesc>,
}

impl Resolver<'_> {
    fn err(&mut self, span: Range<usize>, message: String) {
        self.diags.push(self.loaded.diag(span, message));
    }

    fn line(&self, span: Range<usize>) -> String {
        self.loaded
            .line_of(span)
            .map_or_else(|| "?".to_owned(), |l| l.to_string())
    }

    fn run(&mut self) -> Resolved {
        let d = &self.loaded.description;
        let base = self.loaded.base_dir();

        let table = self.continent_table(&base);
        let country = |r: &mut Self, s: &Spanned<String>, what: &str| -> Option<Country> {
            match Country::parse(s.get_ref()) {
                Some(c) if table.knows(c) => Some(c),
                Some(_) => {
                    r.err(
                        s.span(),
                        format!(
                            "{what}: unknown country code {:?} (not in the country/continent table)",
                            s.get_ref()
                        ),
                    );
                    None
                }
                None => {
                    r.err(
                        s.span(),
                        format!("{what}: {:?} is not a two-letter country code", s.get_ref()),
                    );
                    None
                }
            }
        };

        // Continent overrides and netblock → country overrides.
        let continents = table.continents();
        let mut continent_overrides = Vec::new();
        for (cc, continent) in &d.continent_overrides {
            let key = Spanned::new(continent.span(), cc.clone());
            let Some(c) = country(self, &key, "continent_overrides") else {
                continue;
            };
            if continents.contains(continent.get_ref().as_str()) {
                continent_overrides.push((c, continent.get_ref().clone()));
            } else {
                self.err(
                    continent.span(),
                    format!(
                        "continent_overrides: {cc} = {:?} is not a continent code (one of {})",
                        continent.get_ref(),
                        continents.iter().copied().collect::<Vec<_>>().join(" ")
                    ),
                );
            }
        }
        let mut netblock_countries = Vec::new();
        for (cidr, cc) in &d.netblock_countries {
            let net = self.netblock(cidr, cc.span(), "netblock_countries");
            let c = country(self, cc, &format!("netblock_countries: {cidr}"));
            if let (Some(net), Some(c)) = (net, c) {
                netblock_countries.push((net, c));
            }
        }

        // Categories.
        let mut categories: Vec<Category> = Vec::new();
        let mut category_index: HashMap<&str, (usize, Range<usize>)> = HashMap::new();
        for cat in &d.categories {
            let c = cat.get_ref();
            let name = c.name.get_ref();
            if name.trim().is_empty() {
                self.err(c.name.span(), "category with an empty name".into());
                continue;
            }
            if let Some((_, first)) = category_index.get(name.as_str()) {
                let first = self.line(first.clone());
                self.err(
                    c.name.span(),
                    format!("duplicate category {name:?} (first defined on line {first})"),
                );
                continue;
            }
            let topdir = self
                .rel_path(&c.topdir, &format!("category {name:?}: topdir"))
                .unwrap_or_default();
            category_index.insert(name, (categories.len(), c.name.span()));
            categories.push(Category {
                name: name.clone(),
                topdir,
            });
        }

        // The master tree.
        let master_tree = base.join(d.master_tree.get_ref());
        let tree_ok = master_tree.is_dir();
        if !tree_ok {
            self.err(
                d.master_tree.span(),
                format!("master_tree: {} is not a directory", master_tree.display()),
            );
        }

        // Repositories and their directories.
        let mut dir_index: BTreeMap<String, usize> = BTreeMap::new();
        let mut dir_category: Vec<usize> = Vec::new();
        let mut repos: Vec<Repo> = Vec::new();
        let mut repo_seen: HashMap<(&str, &str), Range<usize>> = HashMap::new();
        let mut repo_disabled: HashMap<&str, (bool, Range<usize>)> = HashMap::new();
        let mut scan_dirs = Vec::new();
        for repo in &d.repositories {
            let rd = repo.get_ref();
            let (name, arch) = (rd.name.get_ref().as_str(), rd.arch.get_ref().as_str());
            let what = format!("repository {name} ({arch})");
            let mut ok = true;
            for (field, value) in [("name", &rd.name), ("arch", &rd.arch)] {
                if value.get_ref().is_empty() || value.get_ref().contains(char::is_whitespace) {
                    self.err(
                        value.span(),
                        format!("{what}: {field} must be non-empty and without spaces"),
                    );
                    ok = false;
                }
            }
            if let Some(first) = repo_seen.get(&(name, arch)) {
                let first = self.line(first.clone());
                self.err(
                    rd.name.span(),
                    format!("duplicate {what} (first defined on line {first})"),
                );
                continue;
            }
            repo_seen.insert((name, arch), rd.name.span());
            match repo_disabled.get(name) {
                Some((disabled, first)) if *disabled != rd.disabled => {
                    let first = self.line(first.clone());
                    self.err(
                        repo.span(),
                        format!(
                            "{what}: `disabled` differs from the entry on line {first}; \
                             a repository is disabled for all architectures or none"
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    repo_disabled.insert(name, (rd.disabled, repo.span()));
                }
            }
            let Some(dir) = self.rel_path(&rd.directory, &format!("{what}: directory")) else {
                continue;
            };
            let Some(cat) = longest_topdir(&categories, &dir) else {
                let topdirs: Vec<_> = categories.iter().map(|c| c.topdir.as_str()).collect();
                self.err(
                    rd.directory.span(),
                    format!(
                        "{what}: directory {dir:?} is under no category's topdir ({})",
                        if topdirs.is_empty() {
                            "no categories are defined".to_owned()
                        } else {
                            topdirs.join(", ")
                        }
                    ),
                );
                continue;
            };
            let exists = tree_ok && master_tree.join(&dir).is_dir();
            if tree_ok && !exists && !rd.disabled {
                self.err(
                    rd.directory.span(),
                    format!(
                        "{what}: directory {dir:?} is missing from the master tree {}",
                        master_tree.display()
                    ),
                );
                continue;
            }
            if !ok {
                continue;
            }
            let next = dir_index.len();
            let idx = *dir_index.entry(dir.clone()).or_insert_with(|| {
                dir_category.push(cat);
                if exists {
                    scan_dirs.push(dir.clone());
                }
                next
            });
            repos.push(Repo {
                name: name.to_owned(),
                arch: arch.to_owned(),
                directory: idx as u32,
            });
        }
        let repo_names: BTreeMap<&str, ()> = repo_seen.keys().map(|(n, _)| (*n, ())).collect();
        let mut disabled_repos: Vec<String> = repo_disabled
            .iter()
            .filter(|(_, (disabled, _))| *disabled)
            .map(|(name, _)| (*name).to_owned())
            .collect();
        disabled_repos.sort();

        let repo_redirects = self.redirects(&repo_names);

        // Hosts, in file order whether in a site or not (their ids are
        // their positions).
        let mut host_refs: Vec<HostRef> = d
            .hosts
            .iter()
            .map(|desc| HostRef { site: "", desc })
            .collect();
        let mut site_seen: HashMap<&str, Range<usize>> = HashMap::new();
        for site in &d.sites {
            let s = site.get_ref();
            let name = s.name.get_ref().as_str();
            if name.trim().is_empty() {
                self.err(s.name.span(), "site with an empty name".into());
            } else if let Some(first) = site_seen.get(name) {
                let first = self.line(first.clone());
                self.err(
                    s.name.span(),
                    format!("duplicate site {name:?} (first defined on line {first})"),
                );
            } else {
                site_seen.insert(name, s.name.span());
            }
            host_refs.extend(s.hosts.iter().map(|desc| HostRef { site: name, desc }));
        }
        host_refs.sort_by_key(|h| h.desc.span().start);

        let mut hosts: Vec<Host> = Vec::new();
        let mut host_urls: Vec<HostUrl> = Vec::new();
        // Per host: category index → (URLs, include, exclude).
        let mut carried: Vec<Vec<(usize, Vec<UrlIdx>, Carries)>> = Vec::new();
        let mut host_seen: HashMap<&str, Range<usize>> = HashMap::new();
        for (pos, href) in host_refs.iter().enumerate() {
            let h = href.desc.get_ref();
            let name = h.name.get_ref().as_str();
            let what = format!("host {name:?}");
            if name.is_empty() || name.contains(char::is_whitespace) {
                self.err(
                    h.name.span(),
                    format!("{what}: name must be non-empty and without spaces"),
                );
            }
            if let Some(first) = host_seen.get(name) {
                let first = self.line(first.clone());
                self.err(
                    h.name.span(),
                    format!("duplicate {what} (first defined on line {first})"),
                );
            } else {
                host_seen.insert(name, h.name.span());
            }
            let host_country = country(self, &h.country, &format!("{what}: country"));
            if *h.bandwidth.get_ref() == 0 {
                self.err(
                    h.bandwidth.span(),
                    format!("{what}: bandwidth must be at least 1"),
                );
            }
            let mut allowed_countries = Vec::new();
            for cc in &h.allowed_countries {
                if let Some(c) = country(self, cc, &format!("{what}: allowed_countries")) {
                    allowed_countries.push(c);
                }
            }
            let mut netblocks = Vec::new();
            for nb in &h.netblocks {
                if let Some(net) = self.netblock(nb.get_ref(), nb.span(), &what) {
                    netblocks.push(net);
                }
            }
            let mut asns = Vec::new();
            for asn in &h.asns {
                if *asn == 0 {
                    self.err(
                        href.desc.span(),
                        format!("{what}: ASN 0 is reserved and matches no client"),
                    );
                } else {
                    asns.push(*asn);
                }
            }
            asns.sort_unstable();
            asns.dedup();
            let idx = hosts.len() as HostIdx;
            let mut host_carried: Vec<(usize, Vec<UrlIdx>, Carries)> = Vec::new();
            for hc in &h.categories {
                if let Some((cat, urls, carries)) =
                    self.host_category(&what, hc, &category_index, &host_carried)
                {
                    let first = host_urls.len() as UrlIdx;
                    host_urls.extend(urls.into_iter().map(|(url, protocol)| HostUrl {
                        host: idx,
                        url,
                        protocol,
                    }));
                    let url_idxs = (first..host_urls.len() as UrlIdx).collect();
                    host_carried.push((cat, url_idxs, carries));
                }
            }
            hosts.push(Host {
                id: pos as u32 + 1,
                name: name.to_owned(),
                site: href.site.to_owned(),
                country: host_country.unwrap_or(Country(*b"ZZ")),
                bandwidth: *h.bandwidth.get_ref(),
                private: h.private,
                allowed_countries,
                netblocks,
                asns,
                asn_clients: h.asn_clients,
                families: match h.families {
                    FamiliesDesc::Unknown => Families::Unknown,
                    FamiliesDesc::Ipv4 => Families::Ipv4,
                    FamiliesDesc::Ipv6 => Families::Ipv6,
                    FamiliesDesc::Both => Families::Both,
                },
            });
            carried.push(host_carried);
        }

        // Directories and the hosts that carry them.
        // One set per directory; `Cache::normalize` stores equal ones (most
        // directories') once.
        let mut directories: Vec<Directory> = Vec::with_capacity(dir_index.len());
        let mut host_sets: Vec<HostSet> = Vec::with_capacity(dir_index.len());
        let mut by_index: Vec<(&String, usize)> = dir_index.iter().map(|(p, &i)| (p, i)).collect();
        by_index.sort_by_key(|&(_, i)| i);
        for (path, i) in by_index {
            let cat = dir_category[i];
            let subpath = strip_topdir(&categories[cat].topdir, path).to_owned();
            let mut global = Vec::new();
            let mut by_host = Vec::new();
            let mut by_country: BTreeMap<Country, Vec<HostIdx>> = BTreeMap::new();
            for (h, host) in hosts.iter().enumerate() {
                let Some((_, urls, _)) = carried[h]
                    .iter()
                    .find(|(c, _, carries)| *c == cat && carries.carries(&subpath))
                else {
                    continue;
                };
                let h = h as HostIdx;
                by_host.push((h, urls.clone()));
                if !host.private {
                    global.push(h);
                    by_country.entry(host.country).or_default().push(h);
                }
            }
            directories.push(Directory {
                path: path.clone(),
                subpath,
                hosts: host_sets.len() as u32,
                ordered: true,
            });
            host_sets.push(HostSet::new(global, by_country, by_host));
        }

        Resolved {
            cache: Cache {
                built_at: 0,
                source: self.loaded.path.display().to_string(),
                categories,
                hosts,
                host_urls,
                directories,
                host_sets,
                repos,
                repo_redirects,
                disabled_repos,
                file_details: Vec::new(),
                country_continent: table.countries.into_iter().collect(),
                continent_overrides,
                netblock_countries,
            },
            master_tree,
            scan_dirs,
            max_alternates: d.max_alternates,
            max_alternate_age_days: d.max_alternate_age_days,
        }
    }

    /// The bundled table, or the one the description names.
    fn continent_table(&mut self, base: &Path) -> ContinentTable {
        let Some(file) = &self.loaded.description.country_continent else {
            return ContinentTable::bundled();
        };
        let path = base.join(file.get_ref());
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                self.err(
                    file.span(),
                    format!("country_continent: cannot read {}: {e}", path.display()),
                );
                return ContinentTable::bundled();
            }
        };
        match ContinentTable::parse(&path, &text) {
            Ok(table) => table,
            Err(diags) => {
                self.diags.extend(diags);
                ContinentTable::bundled()
            }
        }
    }

    /// A CIDR, refusing host bits (a likely typo for another network).
    fn netblock(&mut self, text: &str, span: Range<usize>, what: &str) -> Option<IpNet> {
        match text.trim().parse::<IpNet>() {
            Ok(net) if net.trunc() == net => Some(net),
            Ok(net) => {
                self.err(
                    span,
                    format!(
                        "{what}: netblock {text:?} has host bits set (did you mean {}?)",
                        net.trunc()
                    ),
                );
                None
            }
            Err(e) => {
                self.err(
                    span,
                    format!("{what}: {text:?} is not a valid CIDR netblock ({e})"),
                );
                None
            }
        }
    }

    /// A path relative to the master tree or a topdir: no leading slash, no
    /// empty, `.` or `..` components; a trailing slash is dropped.
    fn rel_path(&mut self, p: &Spanned<String>, what: &str) -> Option<String> {
        let text = p.get_ref().trim_end_matches('/');
        let problem = if text.is_empty() {
            Some("is empty")
        } else if text.starts_with('/') {
            Some("must be relative, not start with '/'")
        } else if text
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            Some("must not contain empty, '.' or '..' components")
        } else {
            None
        };
        match problem {
            Some(problem) => {
                self.err(p.span(), format!("{what} {:?} {problem}", p.get_ref()));
                None
            }
            None => Some(text.to_owned()),
        }
    }

    /// Repository redirects, with chains resolved to their final target.
    fn redirects(&mut self, repo_names: &BTreeMap<&str, ()>) -> Vec<RepoRedirect> {
        let table = &self.loaded.description.repository_redirects;
        let mut out = Vec::new();
        for (from, to) in table {
            if from.is_empty() || from.contains(char::is_whitespace) {
                self.err(
                    to.span(),
                    format!("repository_redirects: {from:?} is not a repository name"),
                );
                continue;
            }
            if repo_names.contains_key(from.as_str()) {
                self.err(
                    to.span(),
                    format!(
                        "repository_redirects: {from:?} is also a repository; \
                         a redirect would hide it"
                    ),
                );
                continue;
            }
            // Follow the chain; each step must be a redirect or a repository.
            let mut chain = vec![from.as_str()];
            let mut target = to.get_ref().as_str();
            loop {
                if repo_names.contains_key(target) {
                    out.push(RepoRedirect {
                        from: from.clone(),
                        to: target.to_owned(),
                    });
                    break;
                }
                if chain.contains(&target) {
                    chain.push(target);
                    self.err(
                        to.span(),
                        format!("repository_redirects: cycle {}", chain.join(" → ")),
                    );
                    break;
                }
                chain.push(target);
                match table.get(target) {
                    Some(next) => target = next.get_ref().as_str(),
                    None => {
                        self.err(
                            to.span(),
                            format!(
                                "repository_redirects: {from} → {:?}: no repository is named {target:?}",
                                to.get_ref()
                            ),
                        );
                        break;
                    }
                }
            }
        }
        out
    }

    /// One `[[hosts.categories]]` entry: its category, URLs and what it
    /// carries.
    fn host_category(
        &mut self,
        host: &str,
        hc: &Spanned<HostCategoryDesc>,
        categories: &HashMap<&str, (usize, Range<usize>)>,
        earlier: &[(usize, Vec<UrlIdx>, Carries)],
    ) -> Option<CheckedHostCategory> {
        let c = hc.get_ref();
        let name = c.category.get_ref().as_str();
        let Some(&(cat, _)) = categories.get(name) else {
            let mut known: Vec<&str> = categories.keys().copied().collect();
            known.sort_unstable();
            self.err(
                c.category.span(),
                format!(
                    "{host}: unknown category {name:?} (known: {})",
                    known
                        .iter()
                        .map(|k| format!("{k:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            return None;
        };
        let what = format!("{host}, category {name:?}");
        if earlier.iter().any(|(e, _, _)| *e == cat) {
            self.err(
                c.category.span(),
                format!("{what}: the category is listed twice for this host"),
            );
            return None;
        }
        let mut ok = true;
        if c.urls.is_empty() {
            self.err(hc.span(), format!("{what}: `urls` is empty"));
            ok = false;
        }
        let mut urls: Vec<(String, Protocol)> = Vec::new();
        for u in &c.urls {
            match check_url(u.get_ref()) {
                Ok((url, protocol)) => {
                    if urls.iter().any(|(seen, _)| *seen == url) {
                        self.err(u.span(), format!("{what}: URL {url:?} is listed twice"));
                        ok = false;
                    } else {
                        urls.push((url, protocol));
                    }
                }
                Err(problem) => {
                    self.err(u.span(), format!("{what}: URL {:?} {problem}", u.get_ref()));
                    ok = false;
                }
            }
        }
        let mut list = |r: &mut Self, l: &Option<Vec<Spanned<String>>>, key: &str| {
            let mut out = Vec::new();
            for p in l.iter().flatten() {
                match r.rel_path(p, &format!("{what}: {key}")) {
                    Some(p) => out.push(p),
                    None => ok = false,
                }
            }
            out
        };
        let carries = match (&c.include, &c.exclude) {
            (Some(_), Some(_)) => {
                self.err(
                    hc.span(),
                    format!("{what}: give `include` or `exclude`, not both"),
                );
                return None;
            }
            (Some(inc), None) if inc.is_empty() => {
                self.err(
                    hc.span(),
                    format!("{what}: `include` is empty, so nothing would be carried; remove the category instead"),
                );
                return None;
            }
            (Some(_), None) => Carries::Only(sorted(list(self, &c.include, "include"))),
            (None, Some(_)) => Carries::AllBut(sorted(list(self, &c.exclude, "exclude"))),
            (None, None) => Carries::AllBut(Vec::new()),
        };
        ok.then_some((cat, urls, carries))
    }
}

/// A checked host-category entry: category index, URLs with their
/// protocols, and what of the category the host carries.
type CheckedHostCategory = (usize, Vec<(String, Protocol)>, Carries);

/// What part of a category a host carries; paths relative to the topdir,
/// sorted.
#[derive(Debug)]
enum Carries {
    /// Only directories under these.
    Only(Vec<String>),
    /// Everything but directories under these.
    AllBut(Vec<String>),
}

fn sorted(mut paths: Vec<String>) -> Vec<String> {
    paths.sort_unstable();
    paths.dedup();
    paths
}

impl Carries {
    fn carries(&self, subpath: &str) -> bool {
        match self {
            Carries::Only(inc) => under_any(inc, subpath),
            Carries::AllBut(exc) => !under_any(exc, subpath),
        }
    }
}

/// Whether `path` is one of the sorted `prefixes` or below one, by whole
/// components. Each ancestor of `path` is looked up by binary search, so
/// a host that excludes hundreds of directories (one lagging behind on
/// some repositories) costs a few lookups per directory, not a scan.
fn under_any(prefixes: &[String], path: &str) -> bool {
    let found = |p: &str| prefixes.binary_search_by(|x| x.as_str().cmp(p)).is_ok();
    found("")
        || path
            .match_indices('/')
            .map(|(i, _)| &path[..i])
            .chain(std::iter::once(path))
            .any(found)
}

/// Whether `prefix` is `path` or one of its ancestors, by whole components
/// (`releases/4` is not a prefix of `releases/42`).
fn is_path_prefix(prefix: &str, path: &str) -> bool {
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// The category whose topdir is the longest component prefix of `dir`.
fn longest_topdir(categories: &[Category], dir: &str) -> Option<usize> {
    categories
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.topdir.is_empty() && is_path_prefix(&c.topdir, dir))
        .max_by_key(|(_, c)| c.topdir.len())
        .map(|(i, _)| i)
}

/// `dir` relative to `topdir` (which is a component prefix of it).
fn strip_topdir<'a>(topdir: &str, dir: &'a str) -> &'a str {
    dir[topdir.len()..].trim_start_matches('/')
}

/// Checks a host-category URL; returns it without a trailing slash.
fn check_url(url: &str) -> Result<(String, Protocol), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("has no scheme (expected https://, http://, ftp:// or rsync://)".into());
    };
    let Some(protocol) = Protocol::parse(scheme) else {
        return Err(format!(
            "has the unsupported scheme {scheme:?} (expected https, http, ftp or rsync)"
        ));
    };
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err("has no host name".into());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains white space".into());
    }
    if url.contains(['?', '#']) {
        return Err("must not have a query or fragment (it is a directory URL)".into());
    }
    // Keep the scheme as written but lower-case, so `HTTPS://` renders the
    // same as `https://`.
    let url = format!("{}://{}", protocol.as_str(), rest.trim_end_matches('/'));
    Ok((url, protocol))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prefix_is_by_components() {
        assert!(is_path_prefix("releases", "releases/42/x"));
        assert!(is_path_prefix("releases/42", "releases/42"));
        assert!(!is_path_prefix("releases/4", "releases/42"));
        assert!(!is_path_prefix("releases/42/x", "releases/42"));
    }

    #[test]
    fn under_any_matches_whole_components_only() {
        let list = sorted(vec![
            "updates/testing".into(),
            "releases/4".into(),
            "releases/42/Server".into(),
        ]);
        assert!(under_any(&list, "releases/42/Server/x86_64/os"));
        assert!(under_any(&list, "releases/4"));
        assert!(under_any(&list, "updates/testing/42"));
        assert!(!under_any(&list, "releases/42/Everything/x86_64/os"));
        assert!(!under_any(&list, "releases/41"));
        assert!(!under_any(&list, "updates"));
        assert!(under_any(&sorted(vec![String::new()]), "anything/at/all"));
        assert!(!under_any(&[], "releases"));
    }

    #[test]
    fn carries_include_and_exclude() {
        let only = Carries::Only(vec!["releases/42".into()]);
        assert!(only.carries("releases/42/Everything/x86_64/os"));
        assert!(!only.carries("releases/41/Everything/x86_64/os"));
        let but = Carries::AllBut(vec!["development".into()]);
        assert!(!but.carries("development/rawhide/Everything/x86_64/os"));
        assert!(but.carries("releases/42/Everything/x86_64/os"));
        assert!(Carries::AllBut(vec![]).carries("anything"));
    }

    #[test]
    fn url_checks() {
        assert_eq!(
            check_url("HTTPS://m.example/fedora/").unwrap(),
            ("https://m.example/fedora".into(), Protocol::Https)
        );
        assert!(check_url("m.example/fedora")
            .unwrap_err()
            .contains("no scheme"));
        assert!(check_url("gopher://m.example/")
            .unwrap_err()
            .contains("unsupported scheme"));
        assert!(check_url("http:///fedora").unwrap_err().contains("no host"));
        assert!(check_url("http://m/x?y=1").unwrap_err().contains("query"));
    }

    #[test]
    fn longest_topdir_wins() {
        let cat = |t: &str| Category {
            name: t.into(),
            topdir: t.into(),
        };
        let cats = [cat("fedora"), cat("fedora/linux"), cat("epel")];
        assert_eq!(longest_topdir(&cats, "fedora/linux/releases/42"), Some(1));
        assert_eq!(longest_topdir(&cats, "fedora/secondary"), Some(0));
        assert_eq!(longest_topdir(&cats, "fedoralinux"), None);
        assert_eq!(
            strip_topdir("fedora/linux", "fedora/linux/releases/42"),
            "releases/42"
        );
    }
}
