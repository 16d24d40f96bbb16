//! The query parameters of `/mirrorlist` and `/metalink`.
//!
//! The front end has already percent-decoded them; this module only gives
//! them meaning. Parsing borrows from the request and never fails: a value
//! that makes no sense is ignored (`countme=9`, `protocol=gopher`), except
//! `ip=`, whose garbage the handler answers with 400 (a client that names
//! an address expects it to be used, so silently using another would
//! mislead it).
//!
//! | parameter | meaning |
//! |---|---|
//! | `repo`, `arch` | the repository (`repo` containing `source` forces `arch=source`, as MirrorManager does) |
//! | `version` | appended to `repo` as `repo-version` (CentOS compatibility) |
//! | `path` | a directory or file of the master tree, instead of repo+arch |
//! | `country`, `cc` | comma list of country codes and `global`; `country` wins over `cc` |
//! | `ip` | the client address to select for, instead of the connection's |
//! | `netblock` | `0` turns off the netblock and ASN tiers |
//! | `protocol` | comma list of protocols to keep |
//! | `redirect` | present and not `0`: answer `/mirrorlist` with a 302 |
//! | `time` | present and not `0`: add the cache build time to the header |
//! | `priority` | present and not `0`: tag each plain-list line with apt's `priority:N` |
//! | `countme` | 1..=4, recorded for statistics |
//!
//! A parameter given twice takes its last value. Unknown parameters are
//! ignored.

use std::borrow::Cow;
use std::net::IpAddr;

use mirrorlist_core::model::{Country, Protocol};

/// One entry of `country=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// A country code.
    Country(Country),
    /// `global`: every public mirror.
    Global,
}

/// The `ip=` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpParam<'a> {
    /// Not given: use the connection's address.
    Absent,
    /// A valid address.
    Valid(IpAddr),
    /// Not an address; the raw value, for the error message.
    Invalid(&'a str),
}

/// A set of protocols, as a bit mask. The default is the empty set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProtocolSet(u8);

impl ProtocolSet {
    /// Every protocol: what a metalink may list.
    pub const ALL: ProtocolSet = ProtocolSet(0b1111);
    /// https, http and ftp: what a plain list may list (never rsync, which
    /// yum and dnf cannot use).
    pub const PLAIN: ProtocolSet = ProtocolSet(0b0111);
    /// No protocol.
    pub const EMPTY: ProtocolSet = ProtocolSet(0);

    fn bit(p: Protocol) -> u8 {
        match p {
            Protocol::Https => 1,
            Protocol::Http => 2,
            Protocol::Ftp => 4,
            Protocol::Rsync => 8,
        }
    }

    /// Whether `p` is in the set.
    pub fn contains(self, p: Protocol) -> bool {
        self.0 & Self::bit(p) != 0
    }

    /// The set with `p` added.
    pub fn with(self, p: Protocol) -> ProtocolSet {
        ProtocolSet(self.0 | Self::bit(p))
    }

    /// Protocols in both sets.
    pub fn intersect(self, other: ProtocolSet) -> ProtocolSet {
        ProtocolSet(self.0 & other.0)
    }

    /// The mask itself: https 1, http 2, ftp 4, rsync 8.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The members in preference order (https, http, ftp, rsync).
    pub fn iter(self) -> impl Iterator<Item = Protocol> {
        [
            Protocol::Https,
            Protocol::Http,
            Protocol::Ftp,
            Protocol::Rsync,
        ]
        .into_iter()
        .filter(move |p| self.contains(*p))
    }
}

/// The parsed parameters of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query<'a> {
    /// `repo`, with `-version` appended when `version=` is given.
    pub repo: Option<Cow<'a, str>>,
    /// `arch` (`source` for source repositories).
    pub arch: Option<&'a str>,
    /// `path`, as given.
    pub path: Option<&'a str>,
    /// `country=` (or `cc=`) when given non-empty: the valid entries, in
    /// order, without repeats. `Some(empty)` when every entry was invalid:
    /// the client still asked for a location, which turns off netblocks.
    pub places: Option<Vec<Place>>,
    /// `ip=`.
    pub ip: IpParam<'a>,
    /// Whether netblock and ASN matching are on (`netblock=0` turns off).
    pub netblock: bool,
    /// `protocol=`'s valid entries; `None` when absent or all invalid.
    pub protocols: Option<ProtocolSet>,
    /// `redirect=`.
    pub redirect: bool,
    /// `time=`.
    pub time: bool,
    /// `priority=`: apt's mirror method tries untagged mirrors in random
    /// order; tagged ones lowest number first, so the order we chose holds.
    pub priority: bool,
    /// `countme=` when 1..=4.
    pub countme: Option<u8>,
}

fn flag(value: &str) -> bool {
    // MirrorManager tests for the parameter's presence; `0` reads as "off"
    // to anyone writing a URL by hand, so it is honoured as such.
    value != "0"
}

impl<'a> Query<'a> {
    /// Gives meaning to the decoded `name=value` pairs of a request.
    pub fn parse(pairs: &[(&'a str, &'a str)]) -> Query<'a> {
        let mut repo = None;
        let mut version = None;
        let mut arch = None;
        let mut country = None;
        let mut cc = None;
        let mut q = Query {
            repo: None,
            arch: None,
            path: None,
            places: None,
            ip: IpParam::Absent,
            netblock: true,
            protocols: None,
            redirect: false,
            time: false,
            priority: false,
            countme: None,
        };
        for &(name, value) in pairs {
            match name {
                "repo" => repo = Some(value),
                "arch" => arch = Some(value),
                "version" => version = Some(value),
                "path" => q.path = Some(value),
                "country" => country = Some(value),
                "cc" => cc = Some(value),
                "ip" => {
                    q.ip = match value.trim().parse::<IpAddr>() {
                        Ok(ip) => IpParam::Valid(ip.to_canonical()),
                        Err(_) => IpParam::Invalid(value),
                    }
                }
                "netblock" => q.netblock = value != "0",
                "protocol" => q.protocols = parse_protocols(value),
                "redirect" => q.redirect = flag(value),
                "time" => q.time = flag(value),
                "priority" => q.priority = flag(value),
                "countme" => q.countme = value.parse().ok().filter(|n| (1..=4).contains(n)),
                _ => {}
            }
        }
        q.places = country.or(cc).filter(|v| !v.is_empty()).map(parse_places);
        q.repo = repo.map(|r| match version {
            Some(v) if !v.is_empty() => Cow::Owned(format!("{r}-{v}")),
            _ => Cow::Borrowed(r),
        });
        q.arch = match &q.repo {
            // MirrorManager serves source repositories under arch `source`
            // whatever the client sends (yum sends its basearch).
            Some(r) if r.contains("source") && arch.is_some() => Some("source"),
            _ => arch,
        };
        q
    }
}

fn parse_places(value: &str) -> Vec<Place> {
    let mut places = Vec::new();
    for item in value.split(',') {
        let item = item.trim();
        let place = if item.eq_ignore_ascii_case("global") {
            Place::Global
        } else if let Some(c) = Country::parse(item) {
            Place::Country(c)
        } else {
            continue;
        };
        if !places.contains(&place) {
            places.push(place);
        }
    }
    places
}

fn parse_protocols(value: &str) -> Option<ProtocolSet> {
    let set = value
        .split(',')
        .filter_map(|p| Protocol::parse(p.trim()))
        .fold(ProtocolSet::EMPTY, ProtocolSet::with);
    (!set.is_empty()).then_some(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs<'a>(q: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        q.to_vec()
    }

    #[test]
    fn defaults() {
        let p = pairs(&[("repo", "fedora-42"), ("arch", "x86_64"), ("unknown", "x")]);
        let q = Query::parse(&p);
        assert_eq!(q.repo.as_deref(), Some("fedora-42"));
        assert_eq!(q.arch, Some("x86_64"));
        assert_eq!(q.path, None);
        assert_eq!(q.places, None);
        assert_eq!(q.ip, IpParam::Absent);
        assert!(q.netblock && !q.redirect && !q.time);
        assert_eq!(q.protocols, None);
        assert_eq!(q.countme, None);
    }

    #[test]
    fn version_is_appended() {
        let p = pairs(&[("version", "8"), ("repo", "BaseOS"), ("arch", "x86_64")]);
        assert_eq!(Query::parse(&p).repo.as_deref(), Some("BaseOS-8"));
        let p = pairs(&[("repo", "BaseOS"), ("version", "")]);
        assert_eq!(Query::parse(&p).repo.as_deref(), Some("BaseOS"));
    }

    #[test]
    fn source_repos_force_arch_source() {
        let p = pairs(&[("repo", "fedora-source-42"), ("arch", "x86_64")]);
        assert_eq!(Query::parse(&p).arch, Some("source"));
    }

    #[test]
    fn countries_and_cc() {
        let p = pairs(&[("country", "de, AT,global,de,xyz"), ("cc", "fr")]);
        let c = |s| Place::Country(Country::parse(s).unwrap());
        assert_eq!(
            Query::parse(&p).places,
            Some(vec![c("DE"), c("AT"), Place::Global])
        );
        let p = pairs(&[("cc", "fr")]);
        assert_eq!(Query::parse(&p).places, Some(vec![c("FR")]));
        let p = pairs(&[("country", "1,2")]);
        assert_eq!(Query::parse(&p).places, Some(vec![]));
        let p = pairs(&[("country", "")]);
        assert_eq!(Query::parse(&p).places, None);
    }

    #[test]
    fn ip_parameter() {
        let p = pairs(&[("ip", "192.0.2.7")]);
        assert_eq!(
            Query::parse(&p).ip,
            IpParam::Valid("192.0.2.7".parse().unwrap())
        );
        let p = pairs(&[("ip", "::ffff:192.0.2.7")]);
        assert_eq!(
            Query::parse(&p).ip,
            IpParam::Valid("192.0.2.7".parse().unwrap())
        );
        let p = pairs(&[("ip", "300.1.1.1")]);
        assert_eq!(Query::parse(&p).ip, IpParam::Invalid("300.1.1.1"));
    }

    #[test]
    fn flags_protocols_countme() {
        let p = pairs(&[
            ("netblock", "0"),
            ("redirect", "1"),
            ("time", ""),
            ("protocol", "HTTPS,gopher,rsync"),
            ("countme", "3"),
        ]);
        let q = Query::parse(&p);
        assert!(!q.netblock && q.redirect && q.time);
        let set = q.protocols.unwrap();
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![Protocol::Https, Protocol::Rsync]
        );
        assert_eq!(q.countme, Some(3));
        for bad in ["0", "5", "x", "-1", "300"] {
            let p = pairs(&[("countme", bad), ("protocol", "gopher"), ("redirect", "0")]);
            let q = Query::parse(&p);
            assert_eq!(q.countme, None, "{bad}");
            assert_eq!(q.protocols, None);
            assert!(!q.redirect);
        }
    }

    #[test]
    fn last_value_wins() {
        let p = pairs(&[("repo", "a"), ("repo", "b")]);
        assert_eq!(Query::parse(&p).repo.as_deref(), Some("b"));
    }
}
