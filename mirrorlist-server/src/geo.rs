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
//! [`geo_address`] maps IPv6 transition addresses (6to4, Teredo) to the IPv4
//! address they embed, since that is where the client really is.

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

/// A MaxMind DB file, memory-mapped: opening costs no read of the data, and
/// several processes share the page cache.
pub struct MaxmindGeo {
    reader: maxminddb::Reader<maxminddb::Mmap>,
    path: PathBuf,
}

impl fmt::Debug for MaxmindGeo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaxmindGeo")
            .field("path", &self.path)
            .field("database_type", &self.reader.metadata.database_type)
            .field("build_epoch", &self.reader.metadata.build_epoch)
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

impl MaxmindGeo {
    /// Maps the database at `path` and checks its header.
    pub fn open(path: &Path) -> Result<MaxmindGeo, GeoError> {
        let reader = maxminddb::Reader::open_mmap(path).map_err(|source| GeoError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(MaxmindGeo {
            reader,
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

impl GeoLookup for MaxmindGeo {
    fn country(&self, ip: IpAddr) -> Option<Country> {
        // A record that fails to decode is treated like a missing one: one
        // odd record must not turn into an error for the client, who then
        // simply gets the global tier.
        let record: Record<'_> = self.reader.lookup(ip).ok()??;
        let nested = record.country.and_then(|c| c.iso_code);
        let registered = record.registered_country.and_then(|c| c.iso_code);
        nested
            .or(record.country_code)
            .or(registered)
            .and_then(Country::parse)
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
