//! The mirror description: the TOML file an operator writes, as serde types.
//!
//! This module only parses; [`crate::resolve`] checks what parsing cannot
//! (countries, CIDRs, URLs, cross-references, the master tree) and turns the
//! description into a [`mirrorlist_core::model::Cache`]. Every table denies
//! unknown keys, so a misspelt key is an error with its line, not a silently
//! ignored setting. Values that later checks may refuse are kept
//! [`Spanned`], so those errors can name the line too.
//!
//! The schema (see the README for a full example):
//!
//! ```toml
//! master_tree = "tree"                 # relative to this file's directory
//! country_continent = "cc.csv"         # optional; default: the bundled table
//! max_alternates = 4                   # older repomd.xml versions kept
//! max_alternate_age_days = 30          # ... and for how long
//! continent_overrides = { RU = "EU" }
//! netblock_countries = { "192.0.2.0/24" = "DE" }
//! repository_redirects = { rawhide = "fedora-rawhide" }
//!
//! [[categories]]                       # name, topdir
//! [[repositories]]                     # name, arch, directory, disabled
//! [[sites]]                            # name, hosts = [ ... ]
//! [[hosts]]                            # name, country, bandwidth, ...
//! [[hosts.categories]]                 # category, urls, include | exclude
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::error::{ConfigError, Diagnostic};

/// Default for [`Description::max_alternates`].
pub const DEFAULT_MAX_ALTERNATES: u32 = 4;
/// Default for [`Description::max_alternate_age_days`].
pub const DEFAULT_MAX_ALTERNATE_AGE_DAYS: u32 = 30;
/// Default for [`HostDesc::bandwidth`] (MirrorManager's default too).
pub const DEFAULT_BANDWIDTH: u32 = 100;

/// The whole description file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Description {
    /// The master tree, relative to the description file's directory (or
    /// absolute).
    pub master_tree: Spanned<String>,
    /// A country → continent CSV replacing the bundled table, relative to the
    /// description file's directory.
    #[serde(default)]
    pub country_continent: Option<Spanned<String>>,
    /// Country → continent, applied over the table.
    #[serde(default)]
    pub continent_overrides: BTreeMap<String, Spanned<String>>,
    /// CIDR → country, overriding what GeoIP says for clients inside it.
    #[serde(default)]
    pub netblock_countries: BTreeMap<String, Spanned<String>>,
    /// How many older versions of a file a metalink lists as alternates.
    #[serde(default = "default_max_alternates")]
    pub max_alternates: u32,
    /// Alternates older than this many days are dropped.
    #[serde(default = "default_max_alternate_age_days")]
    pub max_alternate_age_days: u32,
    /// Repository name → the repository name it is answered as.
    #[serde(default)]
    pub repository_redirects: BTreeMap<String, Spanned<String>>,
    /// Product categories.
    #[serde(default)]
    pub categories: Vec<Spanned<CategoryDesc>>,
    /// repo + arch → directory.
    #[serde(default)]
    pub repositories: Vec<Spanned<RepositoryDesc>>,
    /// Hosts grouped by the organisation that runs them.
    #[serde(default)]
    pub sites: Vec<Spanned<SiteDesc>>,
    /// Hosts that belong to no site.
    #[serde(default)]
    pub hosts: Vec<Spanned<HostDesc>>,
}

fn default_max_alternates() -> u32 {
    DEFAULT_MAX_ALTERNATES
}

fn default_max_alternate_age_days() -> u32 {
    DEFAULT_MAX_ALTERNATE_AGE_DAYS
}

fn default_bandwidth() -> Spanned<u32> {
    Spanned::new(0..0, DEFAULT_BANDWIDTH)
}

fn default_true() -> bool {
    true
}

/// A product category: a subtree of the master tree mirrored as one unit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryDesc {
    /// Display name, unique; hosts refer to the category by it.
    pub name: Spanned<String>,
    /// Top directory in the master tree, e.g. `fedora/linux`.
    pub topdir: Spanned<String>,
}

/// One repository name + architecture and the directory that holds it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryDesc {
    /// Repository name as clients ask for it, e.g. `fedora-42`.
    pub name: Spanned<String>,
    /// Architecture, e.g. `x86_64`.
    pub arch: Spanned<String>,
    /// Directory relative to the master tree, under a category's topdir.
    pub directory: Spanned<String>,
    /// Disabled repositories are answered with an error, not mirrors; their
    /// directory may be gone from the master tree (retired releases).
    #[serde(default)]
    pub disabled: bool,
}

/// An organisation running one or more hosts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteDesc {
    /// The site's name, recorded on each of its hosts.
    pub name: Spanned<String>,
    /// Its hosts.
    #[serde(default)]
    pub hosts: Vec<Spanned<HostDesc>>,
}

/// Address families, as written in the description.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FamiliesDesc {
    /// Not known: offered to every client.
    #[default]
    Unknown,
    /// IPv4 only.
    Ipv4,
    /// IPv6 only.
    Ipv6,
    /// Both.
    Both,
}

/// A mirror host.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostDesc {
    /// Host name, unique across the description.
    pub name: Spanned<String>,
    /// Where the host is: ISO 3166-1 alpha-2.
    pub country: Spanned<String>,
    /// Relative bandwidth, the weight of the shuffle; at least 1.
    #[serde(default = "default_bandwidth")]
    pub bandwidth: Spanned<u32>,
    /// Private hosts are offered only to clients in their netblocks or ASNs.
    #[serde(default)]
    pub private: bool,
    /// When non-empty, the only client countries this host serves.
    #[serde(default)]
    pub allowed_countries: Vec<Spanned<String>>,
    /// The host's own networks, IPv4 or IPv6 CIDR.
    #[serde(default)]
    pub netblocks: Vec<Spanned<String>>,
    /// Autonomous systems of the host.
    #[serde(default)]
    pub asns: Vec<u32>,
    /// Whether clients in `asns` are sent here first (MirrorManager's
    /// default: yes).
    #[serde(default = "default_true")]
    pub asn_clients: bool,
    /// Address families the host serves.
    #[serde(default)]
    pub families: FamiliesDesc,
    /// What the host carries, per category.
    #[serde(default)]
    pub categories: Vec<Spanned<HostCategoryDesc>>,
}

/// What a host carries of one category, and where.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostCategoryDesc {
    /// The category's name.
    pub category: Spanned<String>,
    /// The category's top directory on this host, one URL per protocol
    /// (`https`, `http`, `ftp`, `rsync`).
    pub urls: Vec<Spanned<String>>,
    /// Carry only these directories (relative to the category's topdir;
    /// a directory is carried when one entry is a prefix of it, by path
    /// components).
    #[serde(default)]
    pub include: Option<Vec<Spanned<String>>>,
    /// Carry everything but these directories (same matching).
    #[serde(default)]
    pub exclude: Option<Vec<Spanned<String>>>,
}

/// A parsed description and what is needed to report errors against it.
#[derive(Debug)]
pub struct Loaded {
    /// The description file, as given.
    pub path: PathBuf,
    /// Its text, to turn byte offsets into line numbers.
    pub source: String,
    /// The parsed description.
    pub description: Description,
}

impl Loaded {
    /// Reads and parses a description file.
    pub fn read(path: &Path) -> Result<Loaded, ConfigError> {
        let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Loaded::parse(path, source)
    }

    /// Parses description text; `path` is used for error messages and to
    /// resolve relative paths.
    pub fn parse(path: &Path, source: String) -> Result<Loaded, ConfigError> {
        match toml::from_str::<Description>(&source) {
            Ok(description) => Ok(Loaded {
                path: path.to_owned(),
                source,
                description,
            }),
            Err(e) => {
                let (line, column) = match e.span() {
                    Some(span) => {
                        let (l, c) = line_col(&source, span.start);
                        (Some(l), Some(c))
                    }
                    None => (None, None),
                };
                Err(ConfigError::Invalid(vec![Diagnostic {
                    path: path.to_owned(),
                    line,
                    column,
                    message: e.message().trim_end().to_owned(),
                }]))
            }
        }
    }

    /// The directory relative paths in the description are resolved from.
    pub fn base_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        }
    }

    /// The 1-based line of a byte offset (`None` for the empty spans of
    /// defaulted values).
    pub fn line_of(&self, span: std::ops::Range<usize>) -> Option<usize> {
        if span.is_empty() && span.start == 0 {
            return None;
        }
        Some(line_col(&self.source, span.start).0)
    }

    /// A diagnostic at `span` of this file.
    pub fn diag(&self, span: std::ops::Range<usize>, message: String) -> Diagnostic {
        let (line, column) = if span.is_empty() && span.start == 0 {
            (None, None)
        } else {
            let (l, c) = line_col(&self.source, span.start);
            (Some(l), Some(c))
        };
        Diagnostic {
            path: self.path.clone(),
            line,
            column,
            message,
        }
    }
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_col(source: &str, at: usize) -> (usize, usize) {
    let at = at.min(source.len());
    let before = &source[..at];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = source[line_start..at].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Loaded, ConfigError> {
        Loaded::parse(Path::new("m.toml"), text.to_owned())
    }

    #[test]
    fn minimal_description_takes_defaults() {
        let l = parse("master_tree = \"t\"\n").unwrap();
        let d = &l.description;
        assert_eq!(d.max_alternates, DEFAULT_MAX_ALTERNATES);
        assert_eq!(d.max_alternate_age_days, DEFAULT_MAX_ALTERNATE_AGE_DAYS);
        assert!(d.country_continent.is_none());
        assert!(d.hosts.is_empty());
    }

    #[test]
    fn host_defaults() {
        let l = parse("master_tree = \"t\"\n[[hosts]]\nname = \"a\"\ncountry = \"DE\"\n").unwrap();
        let h = l.description.hosts[0].get_ref();
        assert_eq!(*h.bandwidth.get_ref(), DEFAULT_BANDWIDTH);
        assert!(h.asn_clients);
        assert!(!h.private);
        assert_eq!(h.families, FamiliesDesc::Unknown);
    }

    #[test]
    fn unknown_key_in_nested_table_names_line_and_key() {
        let text = "master_tree = \"t\"\n[[hosts]]\nname = \"a\"\ncountry = \"DE\"\n\
                    [[hosts.categories]]\ncategory = \"x\"\nurls = []\nexlude = []\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with("m.toml:8:1: "), "{err}");
        assert!(err.contains("unknown field `exlude`"), "{err}");
    }

    #[test]
    fn bad_families_value_is_refused() {
        let text =
            "master_tree = \"t\"\n[[hosts]]\nname = \"a\"\ncountry = \"DE\"\nfamilies = \"ipv5\"\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with("m.toml:5:"), "{err}");
        assert!(err.contains("ipv5"), "{err}");
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 3), (2, 1));
    }
}
