//! Client address → country.
//!
//! Selection only needs "which country is this address in?", so the GeoIP
//! database sits behind the one-method [`GeoLookup`] trait: production uses
//! [`MaxmindGeo`] (a memory-mapped MaxMind DB file), tests use [`TableGeo`].
//!
//! Two record schemas are in use and both are read:
//!
//! - MaxMind's GeoIP2/GeoLite2 schema, nested: `country.iso_code`, and
//!   `registered_country.iso_code` for addresses with no physical country
//!   (anycast and some satellite ranges), which is still a better answer
//!   than none;
//! - the flat schema of the bundled `geo-whois-asn-country` database:
//!   `country_code`.
//!
//! IPv4 lookups do not walk the database's tree: at open, every IPv4
//! network is read once into [`V4Table`], a sorted array of range starts
//! with an index by the first 16 bits, so a lookup is a short binary search
//! in a few cache lines instead of a walk of ~24 tree nodes and a record
//! decode (measured: the walk was ~7% of the server's CPU per /mirrorlist).
//! IPv6 lookups still walk the tree.
//!
//! [`geo_address`] maps IPv6 transition addresses (6to4, Teredo) to the IPv4
//! address they embed, since that is where the client really is.
//!
//! # Replacing the database file
//!
//! The file stays mapped for as long as its [`MaxmindGeo`] lives (until a
//! reload has swapped in a new one and the last request on the old one is
//! done), and IPv6 lookups read it there; it is not copied into memory, which would add its size (tens of
//! MB) to the server's RSS. So the file must be replaced by renaming a new
//! one over it, as `geoipupdate` does: the old inode lives on under the
//! mapping. Overwriting it in place truncates the mapped file, and the
//! next IPv6 lookup touching a page past the new end gets SIGBUS.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use mirrorlist_core::model::Country;
use serde::Deserialize;

/// Anything that can place an address in a country.
pub trait GeoLookup {
    /// The country of `ip`, if known.
    fn country(&self, ip: IpAddr) -> Option<Country>;
}

/// Why a GeoIP database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be mapped or is not a MaxMind DB.
    #[error("cannot open GeoIP database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What the reader reported.
        #[source]
        source: maxminddb::MaxMindDbError,
    },
}

/// A MaxMind DB file, memory-mapped (several processes share the page
/// cache), with its IPv4 networks also in a [`V4Table`]. The file must be
/// replaced by rename, never rewritten in place (see the module doc).
pub struct MaxmindGeo {
    reader: maxminddb::Reader<maxminddb::Mmap>,
    v4: V4Table,
    path: PathBuf,
}

impl fmt::Debug for MaxmindGeo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaxmindGeo")
            .field("path", &self.path)
            .field("database_type", &self.reader.metadata.database_type)
            .field("build_epoch", &self.reader.metadata.build_epoch)
            .field("ipv4_ranges", &self.v4.len())
            .finish()
    }
}

/// The fields of either schema that we read; everything else in a record is
/// skipped by the decoder.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country: Option<IsoCode<'a>>,
    #[serde(borrow)]
    registered_country: Option<IsoCode<'a>>,
    country_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct IsoCode<'a> {
    iso_code: Option<&'a str>,
}

impl Record<'_> {
    /// The country, by the first field of either schema that has one.
    fn country(self) -> Option<Country> {
        let nested = self.country.and_then(|c| c.iso_code);
        let registered = self.registered_country.and_then(|c| c.iso_code);
        nested
            .or(self.country_code)
            .or(registered)
            .and_then(Country::parse)
    }
}

/// IPv4 address → country as sorted ranges: entry `i` covers the addresses
/// from `starts[i]` up to the next start. Neighbouring ranges of the same
/// country are merged, so the table is smaller than the database's list
/// of networks.
#[derive(Clone, Debug)]
pub struct V4Table {
    starts: Vec<u32>,
    countries: Vec<Option<Country>>,
    /// For each value of an address's first 16 bits, the first entry that
    /// may cover it (`index[k]..=index[k + 1]` holds the answer).
    index: Vec<u32>,
}

impl V4Table {
    /// Builds the table from networks as `(first, last, country)`, in any
    /// order. A MaxMind DB's networks never overlap; if some did, the one
    /// that starts first (of two with the same start, the wider) would win
    /// and the other be left out.
    pub fn new(mut ranges: Vec<(u32, u32, Option<Country>)>) -> V4Table {
        ranges.sort_unstable_by_key(|&(first, last, _)| (first, std::cmp::Reverse(last)));
        let mut t = V4Table {
            starts: Vec::new(),
            countries: Vec::new(),
            index: Vec::new(),
        };
        let push = |t: &mut V4Table, start: u32, country: Option<Country>| {
            if t.countries.last() == Some(&country) {
                return;
            }
            if t.starts.last() == Some(&start) {
                t.countries.pop();
                t.starts.pop();
                if t.countries.last() == Some(&country) {
                    return;
                }
            }
            t.starts.push(start);
            t.countries.push(country);
        };
        push(&mut t, 0, None);
        // One past the last address covered so far (u64: may be 2^32).
        let mut covered: u64 = 0;
        for (first, last, country) in ranges {
            if u64::from(first) < covered || last < first {
                continue;
            }
            if u64::from(first) > covered {
                // A gap without data since the previous network.
                push(&mut t, covered as u32, None);
            }
            push(&mut t, first, country);
            covered = u64::from(last) + 1;
            if covered <= u64::from(u32::MAX) {
                // What follows this network is unknown until the next one.
                push(&mut t, covered as u32, None);
            }
        }
        t.index = (0..=1u32 << 16)
            .map(|k| {
                let at = (u64::from(k) << 16).min(u64::from(u32::MAX)) as u32;
                let i = t.starts.partition_point(|&s| s <= at);
                // The entry covering `at` (entry 0 starts at 0).
                (i - 1) as u32
            })
            .collect();
        t
    }

    /// The country of `ip`, if the table has one.
    pub fn country(&self, ip: Ipv4Addr) -> Option<Country> {
        let ip = u32::from(ip);
        let k = (ip >> 16) as usize;
        let lo = self.index[k] as usize;
        let hi = self.index[k + 1] as usize + 1;
        let i = lo + self.starts[lo..hi].partition_point(|&s| s <= ip) - 1;
        self.countries[i]
    }

    /// How many ranges the table holds.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether the table is empty (never, once built: entry 0 is there).
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }
}

impl MaxmindGeo {
    /// Maps the database at `path`, checks its header and reads its IPv4
    /// networks into a [`V4Table`].
    pub fn open(path: &Path) -> Result<MaxmindGeo, GeoError> {
        let error = |source| GeoError::Open {
            path: path.to_path_buf(),
            source,
        };
        let reader = maxminddb::Reader::open_mmap(path).map_err(error)?;
        // The scan reads the whole file through a mapping of its own,
        // unmapped when done, so its pages do not stay in this process's
        // RSS: afterwards only IPv6 lookups touch the file.
        let scan = maxminddb::Reader::open_mmap(path).map_err(error)?;
        let v4 = read_v4(&scan).map_err(error)?;
        drop(scan);
        Ok(MaxmindGeo {
            reader,
            v4,
            path: path.to_path_buf(),
        })
    }

    /// The database's type string from its metadata (e.g. `GeoLite2-Country`).
    pub fn database_type(&self) -> &str {
        &self.reader.metadata.database_type
    }

    /// When the database was built, Unix seconds (from its metadata).
    pub fn build_epoch(&self) -> u64 {
        self.reader.metadata.build_epoch
    }
}

/// Every IPv4 network of the database with its country. A record that
/// fails to decode counts as one without a country, as in lookups.
fn read_v4(
    reader: &maxminddb::Reader<maxminddb::Mmap>,
) -> Result<V4Table, maxminddb::MaxMindDbError> {
    let all = ipnetwork::Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0).expect("/0 is a valid prefix");
    let mut ranges = Vec::new();
    for item in reader.within::<Record<'_>>(ipnetwork::IpNetwork::V4(all))? {
        let item = match item {
            Ok(item) => item,
            // A record that fails to decode is left out: its addresses then
            // have no country, as a lookup of them had. A tree that cannot
            // be read is an error, as a database that cannot be opened.
            Err(maxminddb::MaxMindDbError::Decoding(_)) => continue,
            Err(e) => return Err(e),
        };
        if let ipnetwork::IpNetwork::V4(net) = item.ip_net {
            let first = u32::from(net.network());
            let last = u32::from(net.broadcast());
            ranges.push((first, last, item.info.country()));
        }
    }
    if ranges.is_empty() {
        // `within` lists nothing when all of IPv4 is one record (the tree
        // has no node to descend from); a lookup still finds that record.
        let whole = reader
            .lookup::<Record<'_>>(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            .ok()
            .flatten()
            .and_then(Record::country);
        ranges.push((0, u32::MAX, whole));
    }
    Ok(V4Table::new(ranges))
}

impl GeoLookup for MaxmindGeo {
    fn country(&self, ip: IpAddr) -> Option<Country> {
        match ip {
            IpAddr::V4(v4) => self.v4.country(v4),
            // A record that fails to decode is treated like a missing one:
            // one odd record must not turn into an error for the client,
            // who then simply gets the global tier.
            IpAddr::V6(_) => self.reader.lookup::<Record<'_>>(ip).ok()??.country(),
        }
    }
}

/// An in-memory table of networks → country with longest-prefix matching,
/// for tests and small deployments. Lookup is a linear scan.
#[derive(Clone, Debug, Default)]
pub struct TableGeo {
    /// Most specific network first, so the first match is the longest.
    entries: Vec<(IpNet, Country)>,
}

impl TableGeo {
    /// Builds the table from `(network, country)` pairs in any order.
    pub fn new(entries: impl IntoIterator<Item = (IpNet, Country)>) -> TableGeo {
        let mut entries: Vec<(IpNet, Country)> = entries.into_iter().collect();
        entries.sort_by_key(|(net, _)| std::cmp::Reverse(net.prefix_len()));
        TableGeo { entries }
    }
}

impl GeoLookup for TableGeo {
    fn country(&self, ip: IpAddr) -> Option<Country> {
        self.entries
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .map(|(_, c)| *c)
    }
}

/// The address to locate for `ip`: the embedded IPv4 address of a 6to4
/// (`2002::/16`) or Teredo (`2001::/32`) address, else `ip` itself.
///
/// A 6to4 address carries the site's public IPv4 address in bits 16..48. A
/// Teredo address carries the client's public (NAT) IPv4 address in its last
/// 32 bits, inverted (RFC 4380 §4). The IPv6 prefixes themselves say nothing
/// about where the client is.
pub fn geo_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if s[0] == 0x2002 {
                let [a, b] = s[1].to_be_bytes();
                let [c, d] = s[2].to_be_bytes();
                IpAddr::V4(Ipv4Addr::new(a, b, c, d))
            } else if s[0] == 0x2001 && s[1] == 0 {
                let raw = (u32::from(s[6]) << 16) | u32::from(s[7]);
                IpAddr::V4(Ipv4Addr::from(raw ^ 0xffff_ffff))
            } else {
                ip
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data file shipped in the workspace's `data/`, or in the shared
    /// folder beside the checkout while `data/` is being filled.
    fn data_file(name: &str) -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let local = root.join("../data").join(name);
        if local.exists() {
            local
        } else {
            root.join("../../shared/data").join(name)
        }
    }

    fn cc(s: &str) -> Country {
        Country::parse(s).unwrap()
    }

    #[test]
    fn six_to_four_and_teredo_are_unwrapped() {
        // 6to4 of 194.25.0.60 (c219:003c).
        assert_eq!(
            geo_address("2002:c219:3c::1".parse().unwrap()),
            "194.25.0.60".parse::<IpAddr>().unwrap()
        );
        // Teredo: server 65.54.227.120, client 194.25.0.60 stored inverted
        // (0x3de6ffc3).
        assert_eq!(
            geo_address("2001:0:4136:e378:8000:63bf:3de6:ffc3".parse().unwrap()),
            "194.25.0.60".parse::<IpAddr>().unwrap()
        );
        let native: IpAddr = "2003::1".parse().unwrap();
        assert_eq!(geo_address(native), native);
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(geo_address(v4), v4);
        // 2001:db8::/32 is not Teredo (second group non-zero).
        let doc: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(geo_address(doc), doc);
    }

    #[test]
    fn table_geo_longest_match() {
        let t = TableGeo::new([
            ("10.0.0.0/8".parse().unwrap(), cc("US")),
            ("10.1.0.0/16".parse().unwrap(), cc("DE")),
        ]);
        assert_eq!(t.country("10.1.2.3".parse().unwrap()), Some(cc("DE")));
        assert_eq!(t.country("10.2.2.3".parse().unwrap()), Some(cc("US")));
        assert_eq!(t.country("11.0.0.1".parse().unwrap()), None);
    }

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_table_gaps_merges_and_edges() {
        let n = |a: &str, b: &str, c: Option<&str>| (u32::from(v4(a)), u32::from(v4(b)), c.map(cc));
        let t = V4Table::new(vec![
            n("10.1.0.0", "10.1.255.255", Some("DE")),
            n("10.0.0.0", "10.0.255.255", Some("DE")),
            n("10.2.0.0", "10.2.0.255", None),
            n("10.3.0.0", "10.3.0.0", Some("AT")),
            // Overlaps the first network: left out.
            n("10.0.128.0", "10.0.128.255", Some("FR")),
            n("255.255.255.0", "255.255.255.255", Some("US")),
        ]);
        assert_eq!(t.country(v4("0.0.0.0")), None);
        assert_eq!(t.country(v4("9.255.255.255")), None);
        assert_eq!(t.country(v4("10.0.0.0")), Some(cc("DE")));
        assert_eq!(t.country(v4("10.0.128.1")), Some(cc("DE")));
        assert_eq!(t.country(v4("10.1.255.255")), Some(cc("DE")));
        assert_eq!(t.country(v4("10.2.0.1")), None);
        assert_eq!(t.country(v4("10.2.1.0")), None);
        assert_eq!(t.country(v4("10.3.0.0")), Some(cc("AT")));
        assert_eq!(t.country(v4("10.3.0.1")), None);
        assert_eq!(t.country(v4("255.255.254.255")), None);
        assert_eq!(t.country(v4("255.255.255.255")), Some(cc("US")));
        // The two German networks are one range; the no-data network and
        // the gaps around it are another.
        assert_eq!(t.len(), 6, "{t:?}");

        let everything = V4Table::new(vec![(0, u32::MAX, Some(cc("SE")))]);
        assert_eq!(everything.len(), 1, "the leading None entry is replaced");
        assert_eq!(everything.country(v4("0.0.0.0")), Some(cc("SE")));
        assert_eq!(everything.country(v4("255.255.255.255")), Some(cc("SE")));
        let empty = V4Table::new(Vec::new());
        assert_eq!(empty.country(v4("1.2.3.4")), None);
    }

    /// The table answers exactly what a walk of the database's tree does:
    /// at every range boundary, just before it, and at pseudo-random
    /// addresses.
    fn table_matches_tree(file: &str) {
        let g = MaxmindGeo::open(&data_file(file)).unwrap();
        assert!(g.v4.len() > 1000, "{}", g.v4.len());
        let tree = |ip: u32| -> Option<Country> {
            g.reader
                .lookup::<Record<'_>>(IpAddr::V4(Ipv4Addr::from(ip)))
                .ok()
                .flatten()
                .and_then(Record::country)
        };
        let mut probes: Vec<u32> =
            g.v4.starts
                .iter()
                .flat_map(|&s| [s, s.wrapping_sub(1), s.wrapping_add(1)])
                .collect();
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..100_000 {
            // xorshift32
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            probes.push(x);
        }
        probes.extend([0, u32::MAX]);
        let mut with_country = 0;
        for ip in probes {
            let want = tree(ip);
            with_country += usize::from(want.is_some());
            assert_eq!(
                g.country(IpAddr::V4(Ipv4Addr::from(ip))),
                want,
                "{}",
                Ipv4Addr::from(ip)
            );
        }
        assert!(with_country > 10_000, "{with_country}");
    }

    #[test]
    fn v4_table_matches_the_tree_flat_schema() {
        table_matches_tree("geo-whois-asn-country.mmdb");
    }

    #[test]
    fn v4_table_matches_the_tree_nested_schema() {
        table_matches_tree("geo-whois-asn-country-maxmind-schema.mmdb");
    }

    #[test]
    fn maxmind_flat_schema() {
        let g = MaxmindGeo::open(&data_file("geo-whois-asn-country.mmdb")).unwrap();
        // Deutsche Telekom, IPv4 and IPv6; a British address.
        assert_eq!(g.country("194.25.0.60".parse().unwrap()), Some(cc("DE")));
        assert_eq!(g.country("2003::1".parse().unwrap()), Some(cc("DE")));
        assert_eq!(g.country("81.2.69.160".parse().unwrap()), Some(cc("GB")));
        assert_eq!(g.country("127.0.0.1".parse().unwrap()), None);
        assert!(format!("{g:?}").contains("MaxmindGeo"));
    }

    #[test]
    fn maxmind_nested_schema() {
        let g = MaxmindGeo::open(&data_file("geo-whois-asn-country-maxmind-schema.mmdb")).unwrap();
        assert_eq!(g.country("194.25.0.60".parse().unwrap()), Some(cc("DE")));
        assert_eq!(g.country("2003::1".parse().unwrap()), Some(cc("DE")));
        assert_eq!(g.country("81.2.69.160".parse().unwrap()), Some(cc("GB")));
        assert_eq!(g.country("::1".parse().unwrap()), None);
    }

    #[test]
    fn maxmind_open_errors_name_the_file() {
        let err = MaxmindGeo::open(Path::new("/nonexistent/geo.mmdb")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/geo.mmdb"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let bogus = dir.path().join("bogus.mmdb");
        std::fs::write(&bogus, b"not a maxmind database").unwrap();
        assert!(MaxmindGeo::open(&bogus).is_err());
    }
}
