//! Client address → autonomous system number, for the ASN tier.
//!
//! The table is MirrorManager's `global_netblocks.txt`: one `prefix ASN` pair
//! per line, IPv4 and IPv6 mixed, e.g. `194.25.0.0/16 3320`. Fedora's file
//! has about 730,000 lines, so loading is one pass over the file read at
//! once, and lookups are longest-prefix matches in two prefix tries (one per
//! family), a few memory accesses each.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

/// Why the table could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AsnError {
    /// The file could not be read.
    #[error("cannot read ASN table {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `prefix ASN`.
    #[error("{origin}:{line}: {message}")]
    Syntax {
        /// The file (or `<text>` for [`AsnTable::parse`]).
        origin: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// Prefix → ASN, longest match.
#[derive(Clone, Default)]
pub struct AsnTable {
    v4: PrefixMap<Ipv4Net, u32>,
    v6: PrefixMap<Ipv6Net, u32>,
}

impl fmt::Debug for AsnTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hundreds of thousands of entries: show the sizes only.
        f.debug_struct("AsnTable")
            .field("ipv4_prefixes", &self.v4.len())
            .field("ipv6_prefixes", &self.v6.len())
            .finish()
    }
}

impl AsnTable {
    /// Reads a `global_netblocks.txt` file.
    pub fn load(path: &Path) -> Result<AsnTable, AsnError> {
        let text = std::fs::read_to_string(path).map_err(|source| AsnError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_from(&text, &path.display().to_string())
    }

    /// Parses the file's text; errors name the origin `<text>`.
    pub fn parse(text: &str) -> Result<AsnTable, AsnError> {
        Self::parse_from(text, "<text>")
    }

    fn parse_from(text: &str, origin: &str) -> Result<AsnTable, AsnError> {
        let mut table = AsnTable::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            // Blank lines and comments are tolerated so that operators can
            // annotate a hand-made table.
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let syntax = |message: String| AsnError::Syntax {
                origin: origin.to_string(),
                line: n + 1,
                message,
            };
            let mut fields = line.split_ascii_whitespace();
            let (Some(prefix), Some(asn), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(syntax(format!("expected `prefix ASN`, found {line:?}")));
            };
            let net: IpNet = prefix
                .parse()
                .map_err(|_| syntax(format!("invalid prefix {prefix:?}")))?;
            let asn: u32 = asn
                .parse()
                .map_err(|_| syntax(format!("invalid AS number {asn:?}")))?;
            // Host bits beyond the prefix length are dropped (the trie stores
            // the network), as routers would. A prefix listed twice keeps
            // its last ASN, like a later line overriding an earlier one.
            match net {
                IpNet::V4(n) => table.v4.insert(n.trunc(), asn),
                IpNet::V6(n) => table.v6.insert(n.trunc(), asn),
            };
        }
        Ok(table)
    }

    /// The ASN of the most specific prefix covering `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<u32> {
        match ip {
            IpAddr::V4(a) => self.v4.get_lpm(&Ipv4Net::from(a)).map(|(_, asn)| *asn),
            IpAddr::V6(a) => self.v6.get_lpm(&Ipv6Net::from(a)).map(|(_, asn)| *asn),
        }
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether the table has no prefix.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real_table() -> PathBuf {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let local = root.join("../data/mm2/global_netblocks.txt");
        if local.exists() {
            local
        } else {
            root.join("../../shared/data/mm2/global_netblocks.txt")
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let t = AsnTable::parse(
            "# comment\n10.0.0.0/8 1\n\n10.1.0.0/16 2\n2001:db8::/32 3\n2001:db8:1::/48 4\n",
        )
        .unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t.lookup("10.1.2.3".parse().unwrap()), Some(2));
        assert_eq!(t.lookup("10.2.0.1".parse().unwrap()), Some(1));
        assert_eq!(t.lookup("11.0.0.1".parse().unwrap()), None);
        assert_eq!(t.lookup("2001:db8:1::5".parse().unwrap()), Some(4));
        assert_eq!(t.lookup("2001:db8:2::5".parse().unwrap()), Some(3));
        assert_eq!(t.lookup("2001:db9::1".parse().unwrap()), None);
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let cases = [
            ("10.0.0.0/8 1\n10.0.0.0/33 2\n", 2, "invalid prefix"),
            ("10.0.0.0/8 1\n\n10.0.0.0/8 AS2\n", 3, "invalid AS number"),
            ("10.0.0.0/8\n", 1, "expected `prefix ASN`"),
            ("10.0.0.0/8 1 extra\n", 1, "expected `prefix ASN`"),
            ("10.0.0.0/8 99999999999\n", 1, "invalid AS number"),
        ];
        for (text, line, what) in cases {
            match AsnTable::parse(text) {
                Err(AsnError::Syntax {
                    line: l, message, ..
                }) => {
                    assert_eq!(l, line, "{text:?}");
                    assert!(message.contains(what), "{text:?}: {message}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
        let e = AsnTable::parse("x y\n").unwrap_err().to_string();
        assert_eq!(e, "<text>:1: invalid prefix \"x\"");
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let e = AsnTable::load(Path::new("/nonexistent/global_netblocks.txt")).unwrap_err();
        assert!(matches!(e, AsnError::Read { .. }));
        assert!(e.to_string().contains("/nonexistent/global_netblocks.txt"));
    }

    #[test]
    fn real_global_netblocks() {
        let t = AsnTable::load(&real_table()).unwrap();
        // 732,483 lines, one prefix (215.0.0.0/16) listed twice.
        assert_eq!(t.len(), 732_482);
        // Lines of the file: `194.25.0.0/16 3320`, `8.8.8.0/24 15169`,
        // `2003::/23 3320`, `2c0f:fff0::/32 37125`.
        assert_eq!(t.lookup("194.25.0.60".parse().unwrap()), Some(3320));
        assert_eq!(t.lookup("8.8.8.8".parse().unwrap()), Some(15169));
        assert_eq!(t.lookup("2003::1".parse().unwrap()), Some(3320));
        assert_eq!(t.lookup("2c0f:fff0::1".parse().unwrap()), Some(37125));
        assert_eq!(t.lookup("127.0.0.1".parse().unwrap()), None);
        assert_eq!(t.lookup("215.0.1.1".parse().unwrap()), Some(721));
    }
}
