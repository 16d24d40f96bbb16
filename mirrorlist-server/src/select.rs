//! Mirror selection: which hosts, in which order, for one directory and one
//! client. A pure function of (index, location, parameters, rng).
//!
//! # Tiers
//!
//! Hosts are gathered in tiers; a host appears once, in the first tier that
//! admits it, and each tier is shuffled on its own, so a better tier always
//! comes first:
//!
//! 1. **netblock**: hosts whose own netblocks cover the client address, most
//!    specific prefix first (each prefix is a sub-tier);
//! 2. **ASN**: hosts that take clients of the client's autonomous system;
//! 3. **country**: hosts in the client's GeoIP country, or in the countries
//!    of `country=` (one tier, `global` meaning every public host);
//! 4. **continent**: hosts in the other countries of the country's continent,
//!    always appended after the country tier (as Fedora's current server
//!    does, so a country with few good mirrors still gets nearby ones);
//! 5. **global**: every public host, while fewer than `minimum` distinct
//!    hosts have been found.
//!
//! Netblock and ASN tiers are skipped with `country=` or `netblock=0`: a
//! client that names a location wants that location. With `country=`, the
//! listed countries form the country tier; only if none of them has a usable
//! host are their continents tried; if that finds a host, the answer stops
//! there (no GeoIP tiers, no global: the client chose a limited list). If
//! neither finds anything, selection falls back to the client's own GeoIP
//! tiers, as Fedora's Rust server does: an empty list helps nobody.
//!
//! # Admission
//!
//! A host is admitted to a tier only if it carries the directory (it is in
//! `by_host`), has a URL of a usable protocol, serves the client's address
//! family, and has not been admitted before. In the country, continent and
//! global tiers it must also be public and, if it restricts its clients to
//! some countries, the client's country must be one of them (a client of
//! unknown country is not sent to restricted hosts). The netblock and ASN
//! tiers are exempt from those two rules: that is what they are for.
//!
//! # Order within a tier
//!
//! A bandwidth-weighted random shuffle in O(n log n): each host draws an
//! exponentially distributed key with rate `bandwidth` (an Exp(1) variate
//! divided by the bandwidth; the same as Efraimidis–Spirakis'
//! `-ln(u) / bandwidth`, drawn with a ziggurat to skip the logarithm), and
//! hosts are sorted by key ([`keysort`]). The probability that a host comes first is its
//! share of the tier's bandwidth, and the same holds for the rest after
//! removing it.
//!
//! # Protocols
//!
//! `protocol=` keeps only hosts with a URL of a listed protocol. If that
//! leaves the whole answer empty, the answer is computed again without the
//! filter: an unfiltered list is more useful than none, and the header then
//! does not claim the filter.

use std::net::IpAddr;

use mirrorlist_core::model::{Country, HostIdx, HostSet};

use crate::asn::AsnTable;
use crate::exp::{self, Ziggurat};
use crate::geo::{geo_address, GeoLookup};
use crate::index::{DirSlots, Index, GATE_FLAGS, NO_IPV4, NO_IPV6, PRIVATE, RESTRICTED};
use crate::keysort;
use crate::query::{Place, ProtocolSet};
use crate::shuffle_rng::ShuffleRng;

/// Where a client is, as far as selection cares.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Location {
    /// The address selected for (`ip=` or the connection's).
    pub ip: Option<IpAddr>,
    /// Its country: the operator's netblock override, else GeoIP.
    pub country: Option<Country>,
    /// Its autonomous system, when looked up.
    pub asn: Option<u32>,
}

/// Locates `ip`: country (netblock overrides first, then GeoIP on the address
/// a 6to4 or Teredo address embeds) and, when `want_asn`, the ASN (of the
/// embedded address too: the ASN of the 6to4 relay prefix says nothing about
/// the client).
pub fn locate(
    index: &Index,
    geo: Option<&dyn GeoLookup>,
    asns: Option<&AsnTable>,
    ip: Option<IpAddr>,
    want_asn: bool,
) -> Location {
    let Some(ip) = ip else {
        return Location::default();
    };
    let located = geo_address(ip);
    let country = index
        .country_override(ip)
        .or_else(|| (located != ip).then(|| index.country_override(located))?)
        .or_else(|| geo?.country(located));
    let asn = if want_asn {
        asns.and_then(|t| t.lookup(located))
    } else {
        None
    };
    Location {
        ip: Some(ip),
        country,
        asn,
    }
}

/// What the request asks of selection.
#[derive(Clone, Copy, Debug)]
pub struct Params<'a> {
    /// `country=`, when given.
    pub places: Option<&'a [Place]>,
    /// Whether the netblock and ASN tiers are on.
    pub netblock: bool,
    /// `protocol=`, when given.
    pub protocols: Option<ProtocolSet>,
    /// Protocols the answer can use at all ([`ProtocolSet::PLAIN`] for the
    /// plain list, [`ProtocolSet::ALL`] for metalinks).
    pub usable: ProtocolSet,
    /// The global tier is added while fewer hosts than this were found.
    pub minimum: usize,
}

/// A note for the answer's header, in the order tiers were used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Note {
    /// Hosts were found by netblock.
    Netblock,
    /// Hosts were found by this ASN.
    Asn(u32),
    /// Hosts of this country were listed.
    Country(Country),
    /// The global tier was consulted.
    Global,
}

/// One selected host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    /// The host.
    pub host: HostIdx,
    /// Its position in the directory's `by_host`, where its URLs are.
    pub slot: u32,
}

/// The result of [`select`]. Reusable: `select` clears it, keeping its
/// allocations.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Hosts, best first.
    pub picks: Vec<Pick>,
    /// Header notes.
    pub notes: Vec<Note>,
    /// Protocols the answer's URLs may use.
    pub protocols: ProtocolSet,
    /// Whether `protocol=` was applied (false when it matched nothing).
    pub filtered: bool,
    seen: Vec<u64>,
    /// The tier being built: packed sort keys with the hosts' slots (see
    /// [`pack`]).
    tier_keys: Vec<u64>,
    sort_scratch: keysort::Scratch,
}

/// Bits of a packed key that hold the host's slot in the directory's host
/// set.
const POS_BITS: u32 = 24;
const POS_MASK: u64 = (1 << POS_BITS) - 1;

/// Packs a shuffle key and a host's slot into one `u64` that sorts by key,
/// so that a tier sorts as a plain integer slice and the slot (hence the
/// host) comes back out of it. The key is a non-negative f64, whose bit
/// pattern orders like its value; its low 24 mantissa bits give way to the
/// slot (a relative precision of 2^-28 remains, far below anything a
/// bandwidth ratio can express).
fn pack(key: f64, slot: u32) -> u64 {
    (key.to_bits() & !POS_MASK) | (u64::from(slot) & POS_MASK)
}

/// Fills `out` with the hosts for directory `dir` and a client at `loc`.
pub fn select(
    index: &Index,
    dir: u32,
    loc: &Location,
    params: &Params<'_>,
    rng: &mut ShuffleRng,
    out: &mut Selection,
) {
    let filter = params.protocols.map(|p| p.intersect(params.usable));
    if let Some(mask) = filter.filter(|m| !m.is_empty()) {
        run(index, dir, loc, params, mask, rng, out);
        out.filtered = true;
        if !out.picks.is_empty() {
            return;
        }
    }
    run(index, dir, loc, params, params.usable, rng, out);
    out.filtered = false;
}

struct Ctx<'a> {
    index: &'a Index,
    hosts: &'a HostSet,
    slots: &'a DirSlots,
    loc: &'a Location,
    /// The usable protocols' bits ([`ProtocolSet::bits`]): a host's gate
    /// must share one of them.
    mask: u8,
    /// The gate bits that rule a host out of a netblock or ASN tier: the
    /// wrong address family for this client.
    reject_private: u8,
    /// The gate bits that rule a host out of a public tier: those, and
    /// being private.
    reject_public: u8,
    /// The Exp(1) tables, fetched once per request rather than per host.
    exp: &'static Ziggurat,
}

impl Ctx<'_> {
    /// Whether the host in `slot` may join a tier. `public` tiers are
    /// country, continent and global. `seen` is a bit set of slots, looked
    /// at only if `CHECK_SEEN`.
    #[inline]
    fn admit<const CHECK_SEEN: bool>(&self, slot: u32, public: bool, seen: &[u64]) -> bool {
        let s = slot as usize;
        let Some(&gate) = self.slots.gate.get(s) else {
            return false;
        };
        if CHECK_SEEN && seen[s / 64] & (1 << (s % 64)) != 0 {
            return false;
        }
        let reject = if public {
            self.reject_public
        } else {
            self.reject_private
        };
        if gate & reject != 0 || gate & self.mask == 0 {
            return false;
        }
        if public && gate & (RESTRICTED << GATE_FLAGS) != 0 {
            // A restricted host serves only clients known to be in one of
            // its countries.
            let h = self.hosts.host(s);
            let allowed = &self.index.cache().hosts[h as usize].allowed_countries;
            return self
                .loc
                .country
                .is_some_and(|c| allowed.binary_search(&c).is_ok());
        }
        true
    }

    /// Adds the admissible hosts among `slots` that are not listed yet
    /// to the tier being built, and notes them as listed; returns how
    /// many.
    fn gather(
        &self,
        slots: &[u32],
        public: bool,
        rng: &mut ShuffleRng,
        out: &mut Selection,
    ) -> usize {
        self.gather_as::<true>(slots, public, rng, out)
    }

    /// [`Ctx::gather`], or, without `CHECK_SEEN`, the same without the
    /// "already listed" set: for tiers that cannot meet a listed host (the
    /// caller knows), which then must [`Ctx::note_listed`] before the next
    /// tier that checks.
    fn gather_as<const CHECK_SEEN: bool>(
        &self,
        slots: &[u32],
        public: bool,
        rng: &mut ShuffleRng,
        out: &mut Selection,
    ) -> usize {
        let before = out.tier_keys.len();
        out.tier_keys.reserve(slots.len());
        // A local copy of the generator can stay in a register through the
        // loop; through `rng` it would be stored on every draw.
        let mut local = rng.clone();
        for &slot in slots {
            if u64::from(slot) > POS_MASK {
                // A set of over 16 million hosts: slots would alias.
                continue;
            }
            if self.admit::<CHECK_SEEN>(slot, public, &out.seen) {
                let s = slot as usize;
                if CHECK_SEEN {
                    out.seen[s / 64] |= 1 << (s % 64);
                }
                let h = self.hosts.host(s);
                // An Exp(1) variate (ziggurat: no logarithm in the common
                // case) scaled by 1/bandwidth is Exp(bandwidth): finite
                // and >= 0.
                let e = self.exp.sample(&mut local);
                let key = e * self.index.inv_bandwidth(h);
                out.tier_keys.push(pack(key, slot));
            }
        }
        *rng = local;
        out.tier_keys.len() - before
    }

    /// Like [`Ctx::gather`] for host indexes (netblock and ASN tiers, whose
    /// hosts may or may not carry the directory).
    fn gather_hosts(&self, hosts: &[HostIdx], rng: &mut ShuffleRng, out: &mut Selection) {
        for &h in hosts {
            if let Some(slot) = self.hosts.host_position(h) {
                self.gather(&[slot as u32], false, rng, out);
            }
        }
    }

    /// Shuffles the gathered tier into the answer; returns its size.
    fn close_tier(&self, out: &mut Selection) -> usize {
        keysort::sort(&mut out.tier_keys, &mut out.sort_scratch);
        out.picks.extend(out.tier_keys.iter().map(|&k| {
            let slot = (k & POS_MASK) as u32;
            Pick {
                host: self.hosts.host(slot as usize),
                slot,
            }
        }));
        let n = out.tier_keys.len();
        out.tier_keys.clear();
        n
    }

    /// Marks the hosts picked from `from` on as listed (after gathers
    /// without the check).
    fn note_listed(&self, from: usize, out: &mut Selection) {
        for p in &out.picks[from..] {
            let s = p.slot as usize;
            out.seen[s / 64] |= 1 << (s % 64);
        }
    }

    /// The slots of the public hosts of country `c`.
    fn country_slots(&self, c: Country) -> &[u32] {
        self.hosts
            .country_position(c)
            .map_or(&[], |i| self.hosts.country_slots(i))
    }

    /// Gathers the countries of the directory whose continent is in
    /// `continents` (a bit set of continent ids), noting each that adds.
    fn gather_continents(
        &self,
        continents: &[u64; 4],
        skip: Option<Country>,
        rng: &mut ShuffleRng,
        out: &mut Selection,
    ) {
        for i in 0..self.hosts.country_count() {
            let c = self.hosts.country_code(i);
            if Some(c) == skip {
                continue;
            }
            let Some(id) = self.index.continent(c) else {
                continue;
            };
            if continents[usize::from(id) / 64] & (1 << (id % 64)) == 0 {
                continue;
            }
            if self.gather(self.hosts.country_slots(i), true, rng, out) > 0 {
                out.notes.push(Note::Country(c));
            }
        }
    }

    /// [`Ctx::gather_continents`] for the one continent `id`, through the
    /// directory's countries grouped by continent: the same countries in
    /// the same order, without visiting the other continents' countries.
    fn gather_continent<const CHECK_SEEN: bool>(
        &self,
        id: u8,
        skip: Country,
        rng: &mut ShuffleRng,
        out: &mut Selection,
    ) {
        let list = &self.slots.by_continent;
        let start = list.partition_point(|&(c, _)| c < id);
        let end = start + list[start..].partition_point(|&(c, _)| c == id);
        for &(_, i) in &list[start..end] {
            let c = self.hosts.country_code(usize::from(i));
            if c == skip {
                continue;
            }
            let slots = self.hosts.country_slots(usize::from(i));
            if self.gather_as::<CHECK_SEEN>(slots, true, rng, out) > 0 {
                out.notes.push(Note::Country(c));
            }
        }
    }
}

fn run(
    index: &Index,
    dir: u32,
    loc: &Location,
    params: &Params<'_>,
    mask: ProtocolSet,
    rng: &mut ShuffleRng,
    out: &mut Selection,
) {
    out.picks.clear();
    out.notes.clear();
    out.tier_keys.clear();
    out.protocols = mask;
    let hosts = index.hosts(dir);
    // Hosts already listed, by slot in the directory's set.
    out.seen.clear();
    out.seen.resize(hosts.host_count().div_ceil(64).max(1), 0);
    let wrong_family = match loc.ip {
        Some(IpAddr::V4(_)) => NO_IPV4,
        Some(IpAddr::V6(_)) => NO_IPV6,
        None => 0,
    };
    let ctx = Ctx {
        index,
        hosts,
        slots: index.slots(dir),
        loc,
        mask: mask.bits(),
        reject_private: wrong_family << GATE_FLAGS,
        reject_public: (wrong_family | PRIVATE) << GATE_FLAGS,
        exp: exp::ziggurat(),
    };

    if params.netblock && params.places.is_none() {
        if let Some(ip) = loc.ip {
            let mut lists = Vec::new();
            index.netblock_hosts(ip, &mut lists);
            let mut found = 0;
            for hosts in lists {
                ctx.gather_hosts(hosts, rng, out);
                found += ctx.close_tier(out);
            }
            if found > 0 {
                out.notes.push(Note::Netblock);
            }
        }
        if let Some(asn) = loc.asn {
            ctx.gather_hosts(index.asn_hosts(asn), rng, out);
            if ctx.close_tier(out) > 0 {
                out.notes.push(Note::Asn(asn));
            }
        }
    }

    if let Some(places) = params.places {
        for place in places {
            match place {
                Place::Country(c) => {
                    if ctx.gather(ctx.country_slots(*c), true, rng, out) > 0 {
                        out.notes.push(Note::Country(*c));
                    }
                }
                Place::Global => {
                    ctx.gather(ctx.hosts.global_slots(), true, rng, out);
                    out.notes.push(Note::Global);
                }
            }
        }
        let mut found = ctx.close_tier(out);
        if found == 0 {
            let mut continents = [0u64; 4];
            for place in places {
                if let Place::Country(c) = place {
                    if let Some(id) = index.continent(*c) {
                        continents[usize::from(id) / 64] |= 1 << (id % 64);
                    }
                }
            }
            ctx.gather_continents(&continents, None, rng, out);
            found = ctx.close_tier(out);
        }
        if found > 0 {
            return;
        }
    }

    if let Some(country) = loc.country {
        // With nothing listed before them, and each host in one country
        // list at most, the country and continent tiers cannot meet a
        // host twice: they skip the "already listed" set, and fill it in
        // afterwards for the global tier.
        let unchecked = out.picks.is_empty() && ctx.slots.countries_disjoint;
        let from = out.picks.len();
        let slots = ctx.country_slots(country);
        let found = if unchecked {
            ctx.gather_as::<false>(slots, true, rng, out)
        } else {
            ctx.gather(slots, true, rng, out)
        };
        if found > 0 {
            out.notes.push(Note::Country(country));
        }
        ctx.close_tier(out);
        if let Some(id) = index.continent(country) {
            if unchecked {
                ctx.gather_continent::<false>(id, country, rng, out);
            } else {
                ctx.gather_continent::<true>(id, country, rng, out);
            }
            ctx.close_tier(out);
        }
        if unchecked {
            ctx.note_listed(from, out);
        }
    }

    if out.picks.len() < params.minimum {
        ctx.gather(ctx.hosts.global_slots(), true, rng, out);
        out.notes.push(Note::Global);
        ctx.close_tier(out);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::index::tests::host;
    use mirrorlist_core::model::{Cache, Families, HostUrl, Protocol};
    use rand::SeedableRng;

    pub(crate) fn cc(s: &str) -> Country {
        Country::parse(s).unwrap()
    }

    /// A cache builder for tests: hosts with one https URL each, all
    /// carrying directory `d` (index 0), whose host set (index 0) is kept
    /// as plain lists until [`World::built`].
    pub(crate) struct World {
        pub cache: Cache,
        pub global: Vec<HostIdx>,
        pub by_country: Vec<(Country, Vec<HostIdx>)>,
        pub by_host: Vec<(HostIdx, Vec<u32>)>,
    }

    impl World {
        pub fn new() -> World {
            let continents = [
                ("DE", "EU"),
                ("AT", "EU"),
                ("FR", "EU"),
                ("CH", "EU"),
                ("US", "NA"),
                ("CA", "NA"),
                ("JP", "AS"),
                ("BR", "SA"),
            ];
            World {
                cache: Cache {
                    built_at: 1_700_000_000,
                    directories: vec![mirrorlist_core::model::Directory {
                        path: "pub/os".into(),
                        subpath: "os".into(),
                        hosts: 0,
                        ordered: true,
                    }],
                    host_sets: vec![HostSet::default()],
                    repos: vec![mirrorlist_core::model::Repo {
                        name: "fedora-42".into(),
                        arch: "x86_64".into(),
                        directory: 0,
                    }],
                    country_continent: continents
                        .iter()
                        .map(|(c, k)| (cc(c), k.to_string()))
                        .collect(),
                    ..Cache::default()
                },
                global: Vec::new(),
                by_country: Vec::new(),
                by_host: Vec::new(),
            }
        }

        /// The cache, with directory 0's host set built and normalized.
        pub fn built(&self) -> Cache {
            let mut c = self.cache.clone();
            c.host_sets[0] = HostSet::new(
                self.global.clone(),
                self.by_country.clone(),
                self.by_host.clone(),
            );
            c.normalize();
            c
        }

        /// Adds a host in `country` serving `urls` for directory 0; returns
        /// its index.
        pub fn add(
            &mut self,
            country: &str,
            urls: &[&str],
            f: impl FnOnce(&mut mirrorlist_core::model::Host),
        ) -> HostIdx {
            let idx = self.cache.hosts.len() as HostIdx;
            let mut h = host(country);
            h.name = format!("h{idx}");
            f(&mut h);
            let mut url_idx = Vec::new();
            for u in urls {
                url_idx.push(self.cache.host_urls.len() as u32);
                self.cache.host_urls.push(HostUrl {
                    host: idx,
                    url: u.to_string(),
                    protocol: Protocol::of_url(u).unwrap(),
                });
            }
            self.by_host.push((idx, url_idx));
            if !h.private {
                self.global.push(idx);
                self.by_country.push((h.country, vec![idx]));
            }
            self.cache.hosts.push(h);
            idx
        }

        /// A simple host: `https://h<idx>.<cc>/pub`.
        pub fn simple(&mut self, country: &str) -> HostIdx {
            let n = self.cache.hosts.len();
            let url = format!("https://h{n}.{}/pub", country.to_lowercase());
            self.add(country, &[&url], |_| {})
        }

        pub fn index(&self) -> Index {
            Index::new(self.built())
        }
    }

    pub(crate) struct Ask<'a> {
        pub ip: Option<&'a str>,
        pub country: Option<&'a str>,
        pub asn: Option<u32>,
        pub places: Option<Vec<Place>>,
        pub netblock: bool,
        pub protocols: Option<ProtocolSet>,
        pub usable: ProtocolSet,
        pub minimum: usize,
    }

    impl Default for Ask<'_> {
        fn default() -> Self {
            Ask {
                ip: None,
                country: None,
                asn: None,
                places: None,
                netblock: true,
                protocols: None,
                usable: ProtocolSet::PLAIN,
                minimum: 5,
            }
        }
    }

    fn run_with(index: &Index, ask: &Ask<'_>, seed: u64) -> Selection {
        let loc = Location {
            ip: ask.ip.map(|s| s.parse().unwrap()),
            country: ask.country.map(cc),
            asn: ask.asn,
        };
        let params = Params {
            places: ask.places.as_deref(),
            netblock: ask.netblock,
            protocols: ask.protocols,
            usable: ask.usable,
            minimum: ask.minimum,
        };
        let mut rng = ShuffleRng::seed_from_u64(seed);
        let mut out = Selection::default();
        select(index, 0, &loc, &params, &mut rng, &mut out);
        out
    }

    fn hosts(index: &Index, ask: &Ask<'_>) -> Vec<HostIdx> {
        picked(index, ask, 7)
    }

    /// The hosts picked for `ask` with the generator seeded by `seed`.
    fn picked(index: &Index, ask: &Ask<'_>, seed: u64) -> Vec<HostIdx> {
        run_with(index, ask, seed)
            .picks
            .iter()
            .map(|p| p.host)
            .collect()
    }

    fn sorted(mut v: Vec<HostIdx>) -> Vec<HostIdx> {
        v.sort_unstable();
        v
    }

    #[test]
    fn tiers_in_order() {
        let mut w = World::new();
        let global_us = w.simple("US");
        let continent_fr = w.simple("FR");
        let country_de = w.simple("DE");
        let asn_host = w.add("JP", &["https://asn.jp/pub"], |h| {
            h.asns = vec![64500];
            h.asn_clients = true;
        });
        let nb_host = w.add("BR", &["https://nb.br/pub"], |h| {
            h.netblocks = vec!["192.0.2.0/24".parse().unwrap()];
        });
        let idx = w.index();
        let ask = Ask {
            ip: Some("192.0.2.10"),
            country: Some("DE"),
            asn: Some(64500),
            ..Ask::default()
        };
        let sel = run_with(&idx, &ask, 1);
        let got: Vec<HostIdx> = sel.picks.iter().map(|p| p.host).collect();
        assert_eq!(
            got,
            vec![nb_host, asn_host, country_de, continent_fr, global_us]
        );
        assert_eq!(
            sel.notes,
            vec![
                Note::Netblock,
                Note::Asn(64500),
                Note::Country(cc("DE")),
                Note::Country(cc("FR")),
                Note::Global
            ]
        );
    }

    #[test]
    fn netblock_specificity() {
        let mut w = World::new();
        let wide = w.add("DE", &["https://wide/pub"], |h| {
            h.netblocks = vec!["10.1.0.0/16".parse().unwrap()];
            h.bandwidth = 1_000_000;
        });
        let narrow = w.add("DE", &["https://narrow/pub"], |h| {
            h.netblocks = vec!["10.1.2.0/24".parse().unwrap()];
            h.bandwidth = 1;
        });
        let idx = w.index();
        for seed in 0..50 {
            let ask = Ask {
                ip: Some("10.1.2.3"),
                minimum: 0,
                ..Ask::default()
            };
            let got = picked(&idx, &ask, seed);
            assert_eq!(got, vec![narrow, wide], "seed {seed}");
        }
    }

    #[test]
    fn netblock_and_asn_skipped_with_country_or_netblock_0() {
        let mut w = World::new();
        let nb = w.add("JP", &["https://nb/pub"], |h| {
            h.netblocks = vec!["10.0.0.0/8".parse().unwrap()];
            h.asns = vec![1];
            h.asn_clients = true;
        });
        let de = w.simple("DE");
        let idx = w.index();
        let base = Ask {
            ip: Some("10.0.0.1"),
            country: Some("DE"),
            asn: Some(1),
            minimum: 0,
            ..Ask::default()
        };
        assert_eq!(hosts(&idx, &base), vec![nb, de]);
        let off = Ask {
            netblock: false,
            ..base
        };
        assert_eq!(hosts(&idx, &off), vec![de]);
        let with_country = Ask {
            ip: Some("10.0.0.1"),
            country: Some("DE"),
            asn: Some(1),
            minimum: 0,
            places: Some(vec![Place::Country(cc("DE"))]),
            ..Ask::default()
        };
        assert_eq!(hosts(&idx, &with_country), vec![de]);
    }

    #[test]
    fn asn_needs_asn_clients() {
        let mut w = World::new();
        w.add("JP", &["https://a/pub"], |h| h.asns = vec![7]);
        let idx = w.index();
        let ask = Ask {
            asn: Some(7),
            minimum: 0,
            ..Ask::default()
        };
        assert!(hosts(&idx, &ask).is_empty());
    }

    #[test]
    fn minimum_and_global_fallback() {
        let mut w = World::new();
        let de: Vec<HostIdx> = (0..3).map(|_| w.simple("DE")).collect();
        let us: Vec<HostIdx> = (0..4).map(|_| w.simple("US")).collect();
        let idx = w.index();
        // 3 < 5: the global tier adds the US hosts after the German ones.
        let ask = Ask {
            country: Some("DE"),
            ..Ask::default()
        };
        let sel = run_with(&idx, &ask, 3);
        let got: Vec<HostIdx> = sel.picks.iter().map(|p| p.host).collect();
        assert_eq!(sorted(got[..3].to_vec()), de);
        assert_eq!(sorted(got[3..].to_vec()), us);
        assert_eq!(sel.notes.last(), Some(&Note::Global));
        // With a minimum of 3, the country is enough.
        let ask = Ask {
            country: Some("DE"),
            minimum: 3,
            ..Ask::default()
        };
        let sel = run_with(&idx, &ask, 3);
        assert_eq!(sorted(sel.picks.iter().map(|p| p.host).collect()), de);
        assert_eq!(sel.notes, vec![Note::Country(cc("DE"))]);
        // Unknown client: only the global tier.
        let sel = run_with(&idx, &Ask::default(), 3);
        assert_eq!(sel.picks.len(), 7);
        assert_eq!(sel.notes, vec![Note::Global]);
    }

    #[test]
    fn continent_always_appended() {
        let mut w = World::new();
        let de: Vec<HostIdx> = (0..6).map(|_| w.simple("DE")).collect();
        let at = w.simple("AT");
        let ch = w.simple("CH");
        w.simple("US");
        let idx = w.index();
        let ask = Ask {
            country: Some("DE"),
            ..Ask::default()
        };
        let sel = run_with(&idx, &ask, 11);
        let got: Vec<HostIdx> = sel.picks.iter().map(|p| p.host).collect();
        assert_eq!(sorted(got[..6].to_vec()), de);
        assert_eq!(sorted(got[6..].to_vec()), vec![at, ch]);
        assert_eq!(
            sel.notes,
            vec![
                Note::Country(cc("DE")),
                Note::Country(cc("AT")),
                Note::Country(cc("CH"))
            ]
        );
    }

    #[test]
    fn country_restriction() {
        let mut w = World::new();
        let only_at = w.add("DE", &["https://r/pub"], |h| {
            h.allowed_countries = vec![cc("AT")]
        });
        let nb_only_at = w.add("DE", &["https://n/pub"], |h| {
            h.allowed_countries = vec![cc("AT")];
            h.netblocks = vec!["10.0.0.0/8".parse().unwrap()];
        });
        let idx = w.index();
        let from = |country: Option<&'static str>, ip| Ask {
            country,
            ip,
            minimum: 10,
            ..Ask::default()
        };
        // A German client gets neither by country/continent/global...
        assert!(hosts(&idx, &from(Some("DE"), None)).is_empty());
        // ...nor does a client of unknown country...
        assert!(hosts(&idx, &from(None, None)).is_empty());
        // ...an Austrian client gets both (through the continent tier)...
        assert_eq!(
            sorted(hosts(&idx, &from(Some("AT"), None))),
            vec![only_at, nb_only_at]
        );
        // ...and the netblock tier ignores the restriction.
        assert_eq!(
            hosts(&idx, &from(Some("DE"), Some("10.9.9.9"))),
            vec![nb_only_at]
        );
        // country= does not lift it either.
        let ask = Ask {
            country: Some("DE"),
            places: Some(vec![Place::Country(cc("DE"))]),
            ..Ask::default()
        };
        assert!(hosts(&idx, &ask).is_empty());
    }

    #[test]
    fn private_hosts_only_by_netblock_or_asn() {
        let mut w = World::new();
        let private = w.add("DE", &["https://p/pub"], |h| {
            h.private = true;
            h.netblocks = vec!["10.0.0.0/8".parse().unwrap()];
            h.asns = vec![9];
            h.asn_clients = true;
        });
        let public = w.simple("DE");
        let idx = w.index();
        let ask = |ip, asn| Ask {
            country: Some("DE"),
            ip,
            asn,
            ..Ask::default()
        };
        assert_eq!(hosts(&idx, &ask(None, None)), vec![public]);
        assert_eq!(
            hosts(&idx, &ask(Some("10.0.0.1"), None)),
            vec![private, public]
        );
        assert_eq!(
            hosts(&idx, &ask(Some("192.0.2.1"), Some(9))),
            vec![private, public]
        );
        // Even a country= or global request does not reveal it.
        let global = Ask {
            places: Some(vec![Place::Global]),
            ..ask(None, None)
        };
        assert_eq!(hosts(&idx, &global), vec![public]);
    }

    #[test]
    fn protocol_filter_and_fallback() {
        let mut w = World::new();
        let both = w.add("DE", &["http://b/pub", "https://b/pub"], |_| {});
        let ftp = w.add("DE", &["ftp://f/pub"], |_| {});
        let rsync = w.add("DE", &["rsync://r/pub"], |_| {});
        let idx = w.index();
        let ask = |protocols, usable| Ask {
            country: Some("DE"),
            protocols,
            usable,
            ..Ask::default()
        };
        let https = Some(ProtocolSet::EMPTY.with(Protocol::Https));
        let sel = run_with(&idx, &ask(https, ProtocolSet::PLAIN), 1);
        assert_eq!(
            sel.picks.iter().map(|p| p.host).collect::<Vec<_>>(),
            vec![both]
        );
        assert!(sel.filtered);
        // The rsync-only host never appears in a plain list...
        let all = sorted(hosts(&idx, &ask(None, ProtocolSet::PLAIN)));
        assert_eq!(all, vec![both, ftp]);
        // ...so protocol=rsync there matches nothing: unfiltered answer.
        let rs = Some(ProtocolSet::EMPTY.with(Protocol::Rsync));
        let sel = run_with(&idx, &ask(rs, ProtocolSet::PLAIN), 1);
        assert_eq!(sel.picks.len(), 2);
        assert!(!sel.filtered);
        assert_eq!(sel.protocols, ProtocolSet::PLAIN);
        // In a metalink it does match.
        let sel = run_with(&idx, &ask(rs, ProtocolSet::ALL), 1);
        assert_eq!(
            sel.picks.iter().map(|p| p.host).collect::<Vec<_>>(),
            vec![rsync]
        );
        assert!(sel.filtered);
        // A filter no host matches falls back too.
        let w2 = {
            let mut w = World::new();
            w.simple("DE");
            w
        };
        let sel = run_with(
            &w2.index(),
            &ask(
                Some(ProtocolSet::EMPTY.with(Protocol::Ftp)),
                ProtocolSet::PLAIN,
            ),
            1,
        );
        assert_eq!(sel.picks.len(), 1);
        assert!(!sel.filtered);
    }

    #[test]
    fn country_parameter() {
        let mut w = World::new();
        let de = w.simple("DE");
        let at = w.simple("AT");
        let us = w.simple("US");
        let jp = w.simple("JP");
        let idx = w.index();
        let ask = |places: Vec<Place>| Ask {
            country: Some("JP"),
            places: Some(places),
            ..Ask::default()
        };
        // The listed countries only: no GeoIP country, no global.
        let sel = run_with(
            &idx,
            &ask(vec![Place::Country(cc("DE")), Place::Country(cc("US"))]),
            2,
        );
        assert_eq!(
            sorted(sel.picks.iter().map(|p| p.host).collect()),
            vec![de, us]
        );
        assert_eq!(
            sel.notes,
            vec![Note::Country(cc("DE")), Note::Country(cc("US"))]
        );
        // A country without mirrors: its continent.
        let sel = run_with(&idx, &ask(vec![Place::Country(cc("FR"))]), 2);
        assert_eq!(
            sorted(sel.picks.iter().map(|p| p.host).collect()),
            vec![de, at]
        );
        assert_eq!(
            sel.notes,
            vec![Note::Country(cc("AT")), Note::Country(cc("DE"))]
        );
        // Nothing even on its continent (or an unknown code): the client's
        // own tiers (JP, then global since 1 < 5).
        for place in [cc("BR"), cc("ZZ")] {
            let sel = run_with(&idx, &ask(vec![Place::Country(place)]), 2);
            let got: Vec<HostIdx> = sel.picks.iter().map(|p| p.host).collect();
            assert_eq!(got[0], jp);
            assert_eq!(got.len(), 4);
            assert_eq!(sel.notes, vec![Note::Country(cc("JP")), Note::Global]);
        }
        // global: everything, one tier.
        let sel = run_with(&idx, &ask(vec![Place::Global]), 2);
        assert_eq!(sel.picks.len(), 4);
        assert_eq!(sel.notes, vec![Note::Global]);
    }

    #[test]
    fn address_families() {
        let mut w = World::new();
        let v4 = w.add("DE", &["https://v4/pub"], |h| h.families = Families::Ipv4);
        let v6 = w.add("DE", &["https://v6/pub"], |h| h.families = Families::Ipv6);
        let both = w.add("DE", &["https://both/pub"], |h| h.families = Families::Both);
        let unknown = w.simple("DE");
        let idx = w.index();
        let ask = |ip| Ask {
            country: Some("DE"),
            ip: Some(ip),
            ..Ask::default()
        };
        assert_eq!(
            sorted(hosts(&idx, &ask("192.0.2.1"))),
            vec![v4, both, unknown]
        );
        assert_eq!(
            sorted(hosts(&idx, &ask("2001:db8::1"))),
            vec![v6, both, unknown]
        );
    }

    #[test]
    fn only_hosts_carrying_the_directory() {
        let mut w = World::new();
        let carrier = w.simple("DE");
        let other = w.simple("DE");
        // Listed by country but not in by_host: a damaged or stale grouping.
        w.by_host.retain(|(h, _)| *h != other);
        w.cache.hosts[other as usize].netblocks = vec!["10.0.0.0/8".parse().unwrap()];
        let idx = w.index();
        let ask = Ask {
            country: Some("DE"),
            ip: Some("10.0.0.1"),
            ..Ask::default()
        };
        assert_eq!(hosts(&idx, &ask), vec![carrier]);
    }

    #[test]
    fn empty_directory() {
        let w = World::new();
        let idx = w.index();
        let sel = run_with(
            &idx,
            &Ask {
                country: Some("DE"),
                ..Ask::default()
            },
            1,
        );
        assert!(sel.picks.is_empty());
        assert_eq!(sel.notes, vec![Note::Global]);
    }

    #[test]
    fn a_host_appears_once() {
        let mut w = World::new();
        let h = w.add("DE", &["https://x/pub"], |h| {
            h.netblocks = vec![
                "10.0.0.0/8".parse().unwrap(),
                "10.1.0.0/16".parse().unwrap(),
            ];
            h.asns = vec![5];
            h.asn_clients = true;
        });
        let idx = w.index();
        let ask = Ask {
            country: Some("DE"),
            ip: Some("10.1.0.1"),
            asn: Some(5),
            ..Ask::default()
        };
        let sel = run_with(&idx, &ask, 1);
        assert_eq!(
            sel.picks.iter().map(|p| p.host).collect::<Vec<_>>(),
            vec![h]
        );
        assert_eq!(sel.notes, vec![Note::Netblock, Note::Global]);
    }

    /// The country and continent tiers skip the "already listed" check
    /// when nothing came before them; the global tier after them still
    /// lists each host once.
    #[test]
    fn the_global_tier_does_not_repeat_country_or_continent_hosts() {
        let mut w = World::new();
        let de = [w.simple("DE"), w.simple("DE")];
        let fr = w.simple("FR");
        let us = w.simple("US");
        let idx = w.index();
        assert!(idx.slots(0).countries_disjoint);
        for seed in 0..20 {
            let ask = Ask {
                country: Some("DE"),
                minimum: 10,
                ..Ask::default()
            };
            let got = picked(&idx, &ask, seed);
            assert_eq!(got.len(), 4, "{got:?}");
            assert_eq!(sorted(got[..2].to_vec()), sorted(de.to_vec()));
            assert_eq!(got[2..], [fr, us]);
        }
    }

    /// A set whose country lists share a host (not made from hosts of one
    /// country each, but possible in a cache) keeps the check, so the host
    /// is listed once.
    #[test]
    fn a_host_in_two_country_lists_is_listed_once() {
        let mut w = World::new();
        let both = w.simple("DE");
        let at = w.simple("AT");
        w.by_country.push((cc("AT"), vec![both]));
        let idx = w.index();
        assert!(!idx.slots(0).countries_disjoint);
        for seed in 0..20 {
            let ask = Ask {
                country: Some("DE"),
                ..Ask::default()
            };
            let got = picked(&idx, &ask, seed);
            assert_eq!(got[0], both);
            assert_eq!(sorted(got), sorted(vec![both, at]));
        }
    }

    #[test]
    fn packed_keys_sort_by_key_then_keep_slots() {
        let keys = [3.5, 0.0, 1e-9, 2.0, 1e300];
        let mut packed: Vec<u64> = (0u32..).zip(keys).map(|(i, k)| pack(k, i)).collect();
        packed.sort_unstable();
        let order: Vec<u64> = packed.iter().map(|k| k & POS_MASK).collect();
        assert_eq!(order, vec![1, 2, 3, 0, 4]);
    }

    #[test]
    fn weighted_shuffle_statistics() {
        let mut w = World::new();
        let fast = w.add("DE", &["https://fast/pub"], |h| h.bandwidth = 10_000);
        let slow = w.add("DE", &["https://slow/pub"], |h| h.bandwidth = 100);
        let idx = w.index();
        let ask = Ask {
            country: Some("DE"),
            minimum: 0,
            ..Ask::default()
        };
        let loc = Location {
            ip: None,
            country: Some(cc("DE")),
            asn: None,
        };
        let params = Params {
            places: None,
            netblock: ask.netblock,
            protocols: None,
            usable: ProtocolSet::PLAIN,
            minimum: 0,
        };
        let mut rng = ShuffleRng::seed_from_u64(20_260_101);
        let mut out = Selection::default();
        let (mut first_fast, mut first_slow) = (0u32, 0u32);
        for _ in 0..20_000 {
            select(&idx, 0, &loc, &params, &mut rng, &mut out);
            assert_eq!(out.picks.len(), 2);
            if out.picks[0].host == fast {
                first_fast += 1;
            } else {
                assert_eq!(out.picks[0].host, slow);
                first_slow += 1;
            }
        }
        // Expected 100:1, i.e. about 19,802 : 198.
        let ratio = f64::from(first_fast) / f64::from(first_slow.max(1));
        assert!(
            (60.0..170.0).contains(&ratio),
            "{first_fast}:{first_slow} = {ratio}"
        );
    }

    #[test]
    fn weighted_shuffle_is_fair_among_equals() {
        let mut w = World::new();
        let n = 4;
        for _ in 0..n {
            w.simple("DE");
        }
        let idx = w.index();
        let loc = Location {
            ip: None,
            country: Some(cc("DE")),
            asn: None,
        };
        let params = Params {
            places: None,
            netblock: true,
            protocols: None,
            usable: ProtocolSet::PLAIN,
            minimum: 0,
        };
        let mut rng = ShuffleRng::seed_from_u64(5);
        let mut out = Selection::default();
        let mut first = [0u32; 4];
        for _ in 0..8_000 {
            select(&idx, 0, &loc, &params, &mut rng, &mut out);
            first[out.picks[0].host as usize] += 1;
        }
        for c in first {
            assert!((1_700..2_300).contains(&c), "{first:?}");
        }
    }

    #[test]
    fn locate_uses_overrides_geo_and_transition_addresses() {
        let mut w = World::new();
        w.cache.netblock_countries = vec![("198.51.100.0/24".parse().unwrap(), cc("AT"))];
        let idx = w.index();
        let geo = crate::geo::TableGeo::new([("194.25.0.0/16".parse().unwrap(), cc("DE"))]);
        let asns = AsnTable::parse("194.25.0.0/16 3320\n2002::/16 6939\n").unwrap();
        let at = |ip: &str| {
            locate(
                &idx,
                Some(&geo),
                Some(&asns),
                Some(ip.parse().unwrap()),
                true,
            )
        };
        assert_eq!(at("194.25.0.60").country, Some(cc("DE")));
        assert_eq!(at("194.25.0.60").asn, Some(3320));
        assert_eq!(at("198.51.100.1").country, Some(cc("AT")));
        // 6to4 and Teredo forms of 194.25.0.60.
        let six = at("2002:c219:3c::1");
        assert_eq!((six.country, six.asn), (Some(cc("DE")), Some(3320)));
        let teredo = at("2001:0:4136:e378:8000:63bf:3de6:ffc3");
        assert_eq!(teredo.country, Some(cc("DE")));
        assert_eq!(at("203.0.113.1").country, None);
        assert_eq!(
            locate(&idx, Some(&geo), Some(&asns), None, true),
            Location::default()
        );
        let no_asn = locate(
            &idx,
            Some(&geo),
            Some(&asns),
            Some("194.25.0.60".parse().unwrap()),
            false,
        );
        assert_eq!(no_asn.asn, None);
    }
}
