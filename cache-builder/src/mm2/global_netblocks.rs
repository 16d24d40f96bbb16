//! Checking a prefix → ASN table (`global_netblocks.txt`).
//!
//! `mirrorlist-server` loads this table itself at start and on reload
//! (`--asn-netblocks`); nothing of it goes into the cache file. `import-mm2`
//! only checks it, so that a broken table is caught by the same cron job that
//! imports the cache instead of by a server that then refuses to reload. The
//! rules are the server's: one `prefix ASN` per line, separated by
//! whitespace; the prefix is IPv4 or IPv6 CIDR; the ASN a 32-bit number;
//! blank lines and `#` comments are allowed.

use std::path::Path;

use ipnet::IpNet;

use crate::error::{ConfigError, Diagnostic};

/// How many bad lines are reported before the rest are only counted; a
/// wrong file (say, a CSV) would otherwise print every one of its lines.
const MAX_REPORTED: usize = 20;

/// What a good table holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// IPv4 prefixes.
    pub v4: usize,
    /// IPv6 prefixes.
    pub v6: usize,
}

/// Reads and checks the table at `path`.
pub fn validate(path: &Path) -> Result<TableStats, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        ConfigError::Invalid(vec![Diagnostic {
            path: path.to_owned(),
            line: Some(bytes[..e.valid_up_to()].split(|&b| b == b'\n').count()),
            column: None,
            message: "not UTF-8 text: expected `prefix ASN` lines".into(),
        }])
    })?;
    check(path, text).map_err(ConfigError::Invalid)
}

/// Checks table text; `path` names it in diagnostics, which carry line
/// numbers.
pub fn check(path: &Path, text: &str) -> Result<TableStats, Vec<Diagnostic>> {
    let mut stats = TableStats::default();
    let mut diags = Vec::new();
    let mut bad = 0usize;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match check_line(line) {
            Ok(IpNet::V4(_)) => stats.v4 += 1,
            Ok(IpNet::V6(_)) => stats.v6 += 1,
            Err(message) => {
                bad += 1;
                if diags.len() < MAX_REPORTED {
                    diags.push(Diagnostic {
                        path: path.to_owned(),
                        line: Some(i + 1),
                        column: None,
                        message,
                    });
                }
            }
        }
    }
    if bad > diags.len() {
        diags.push(Diagnostic {
            path: path.to_owned(),
            line: None,
            column: None,
            message: format!("… and {} more bad lines", bad - diags.len()),
        });
    }
    if diags.is_empty() && stats.v4 + stats.v6 == 0 {
        // An empty table is almost certainly a failed download; the server
        // would silently lose its ASN tier.
        diags.push(Diagnostic {
            path: path.to_owned(),
            line: None,
            column: None,
            message: "the prefix → ASN table has no entries".into(),
        });
    }
    if diags.is_empty() {
        Ok(stats)
    } else {
        Err(diags)
    }
}

fn check_line(line: &str) -> Result<IpNet, String> {
    let mut fields = line.split_ascii_whitespace();
    let (Some(prefix), Some(asn), None) = (fields.next(), fields.next(), fields.next()) else {
        return Err(format!("expected `prefix ASN`, found {line:?}"));
    };
    let net: IpNet = prefix
        .parse()
        .map_err(|_| format!("{prefix:?} is not an IPv4 or IPv6 prefix (CIDR)"))?;
    asn.parse::<u32>()
        .map_err(|_| format!("{asn:?} is not an AS number (0 to 4294967295)"))?;
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_table() {
        let text = "# made by hand\n1.0.0.0/24 13335\n\n2001:db8::/32\t64496\n";
        assert_eq!(
            check(Path::new("t"), text).unwrap(),
            TableStats { v4: 1, v6: 1 }
        );
    }

    #[test]
    fn bad_lines_are_reported_with_line_numbers() {
        let text = "1.0.0.0/24 13335\n1.0.0.0/24\n1.0.0.0/33 1\n10.0.0.0/8 AS5\n1.0.0.0/24 1 2\n";
        let diags = check(Path::new("g.txt"), text).unwrap_err();
        let lines: Vec<_> = diags.iter().map(|d| d.line.unwrap()).collect();
        assert_eq!(lines, [2, 3, 4, 5]);
        assert!(diags[2]
            .to_string()
            .starts_with("g.txt:4: \"AS5\" is not an AS number"));
    }

    #[test]
    fn many_bad_lines_are_capped() {
        let text = "x\n".repeat(100);
        let diags = check(Path::new("g"), &text).unwrap_err();
        assert_eq!(diags.len(), MAX_REPORTED + 1);
        assert!(diags[MAX_REPORTED].message.contains("80 more"));
    }

    #[test]
    fn empty_table_is_refused() {
        assert!(check(Path::new("g"), "# nothing\n").is_err());
    }
}
