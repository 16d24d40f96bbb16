//! The client's address: the TCP peer, or, behind trusted proxies, what they
//! wrote into `X-Forwarded-For` or, if the operator says so, into RFC 7239's
//! `Forwarded`.
//!
//! Every proxy appends the address it received the request from, so the
//! header reads left to right from the (claimed) client towards us. Only the
//! entries appended by proxies we trust are believable: walking from the
//! right, each trusted address vouches for the entry before it, and the
//! first address that is not a trusted proxy is the client. Anything further
//! left was written by the client itself and may be forged.
//!
//! Only one of the two headers is read, the one the operator's proxies
//! write: a proxy that appends to one passes the other on as the client
//! sent it, so reading both would let any client choose its address.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use hyper::header::{HeaderMap, HeaderName, FORWARDED};
use ipnet::IpNet;

/// The header proxies append to.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Which header the trusted proxies write the client's address into.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientHeader {
    /// `X-Forwarded-For: 192.0.2.7, 10.0.0.2` (nginx, haproxy, most
    /// load balancers).
    #[default]
    #[value(name = "x-forwarded-for")]
    XForwardedFor,
    /// `Forwarded: for=192.0.2.7, for="[2001:db8::1]:4711"` (RFC 7239).
    #[value(name = "forwarded")]
    Forwarded,
}

/// The client address for a request from `peer` with these headers, or
/// `None` when a trusted proxy says it does not know (e.g. `unknown`, or
/// RFC 7239's obfuscated `for=_hidden`).
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    which: ClientHeader,
) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    // All the fields, in order, as one comma list (RFC 9110 §5.3 makes
    // repeated fields equivalent to one joined with commas). `None` is an
    // entry that names no address.
    let mut walk = Walk::default();
    match which {
        ClientHeader::XForwardedFor => {
            for value in headers.get_all(&X_FORWARDED_FOR) {
                value
                    .as_bytes()
                    .split(|&b| b == b',')
                    .map(|entry| std::str::from_utf8(entry).unwrap_or("").trim())
                    .filter(|entry| !entry.is_empty())
                    .for_each(|entry| walk.step(parse_entry(entry), trusted));
            }
        }
        ClientHeader::Forwarded => {
            for value in headers.get_all(FORWARDED) {
                outside_quotes(value.as_bytes(), b',')
                    .filter(|element| !element.trim_ascii().is_empty())
                    .for_each(|element| walk.step(forwarded_for(element), trusted));
            }
        }
    }
    // The peer itself is the nearest trusted hop; with no header it is the
    // best we know (a proxy's own health check, say).
    walk.client(peer)
}

/// The walk from the right, done in one pass from the left so that no list
/// of entries is kept: the answer is the right-most entry that is not a
/// trusted proxy's address (everything right of it was vouched for), and if
/// every entry is one, the left-most, the furthest hop we know.
#[derive(Default)]
struct Walk {
    /// The left-most entry, once there is one.
    first: Option<Option<IpAddr>>,
    /// The right-most entry seen that is not a trusted address: an
    /// untrusted address (the client), or `None`, an entry a trusted proxy
    /// wrote without one (it did not know the client: say so rather than
    /// believe the client-written entries further left).
    untrusted: Option<Option<IpAddr>>,
}

impl Walk {
    fn step(&mut self, entry: Option<IpAddr>, trusted: &[IpNet]) {
        self.first.get_or_insert(entry);
        if !entry.is_some_and(|addr| is_trusted(addr, trusted)) {
            self.untrusted = Some(entry);
        }
    }

    fn client(self, peer: IpAddr) -> Option<IpAddr> {
        match (self.untrusted, self.first) {
            (Some(entry), _) => entry,
            (None, Some(first)) => first,
            (None, None) => Some(peer),
        }
    }
}

fn is_trusted(addr: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&addr))
}

/// An address as proxies write it: bare, or with a port (`1.2.3.4:5`,
/// `[2001:db8::1]:5`), or a bracketed IPv6 without one.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let addr = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse().ok())
        })?;
    Some(addr.to_canonical())
}

/// The `for=` address of one RFC 7239 element (`for=…;proto=http;by=…`):
/// `None` when it has none, more than one, or one that is no address
/// (`unknown`, an obfuscated `_name`, a broken quoted string).
fn forwarded_for(element: &[u8]) -> Option<IpAddr> {
    let mut found = None;
    for pair in outside_quotes(element, b';') {
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            continue;
        };
        if !pair[..eq].trim_ascii().eq_ignore_ascii_case(b"for") {
            continue;
        }
        if found.is_some() {
            // The parameter may occur once per element (§4); two are a
            // broken or forged element, not an address.
            return None;
        }
        found = Some(unquote(pair[eq + 1..].trim_ascii())?);
    }
    let node = found?;
    // Obfuscated identifiers (§6.3) start with `_`; `unknown` fails to
    // parse like any other non-address.
    if node.starts_with('_') {
        return None;
    }
    parse_entry(&node)
}

/// A token as it is, or a quoted string without its quotes and escapes;
/// `None` for an unterminated quote or text that is not UTF-8.
fn unquote(value: &[u8]) -> Option<Cow<'_, str>> {
    let text = std::str::from_utf8(value).ok()?;
    let Some(inner) = text.strip_prefix('"') else {
        return Some(Cow::Borrowed(text));
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.as_str().is_empty().then_some(Cow::Owned(out)),
            c => out.push(c),
        }
    }
    None
}

/// Splits `bytes` at every `sep` that is not inside a quoted string.
fn outside_quotes(bytes: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let s = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, &b) in s.iter().enumerate() {
            if quoted {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    quoted = false;
                }
            } else if b == b'"' {
                quoted = true;
            } else if b == sep {
                rest = Some(&s[i + 1..]);
                return Some(&s[..i]);
            }
        }
        rest = None;
        Some(s)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn xff(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
        client_ip(peer, headers, trusted, ClientHeader::XForwardedFor)
    }

    fn fwd(peer: &str, values: &[&str], trusted: &[IpNet]) -> Option<IpAddr> {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(FORWARDED, HeaderValue::from_str(v).unwrap());
        }
        client_ip(ip(peer), &map, trusted, ClientHeader::Forwarded)
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(&X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn untrusted_peer_header_is_ignored() {
        let h = headers(&["203.0.113.9"]);
        assert_eq!(
            xff(ip("198.51.100.1"), &h, &nets(&["10.0.0.0/8"])),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(xff(ip("198.51.100.1"), &h, &[]), Some(ip("198.51.100.1")));
    }

    #[test]
    fn rightmost_untrusted_entry_wins() {
        let trusted = nets(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        // The client forged the first entry; the proxies appended the rest.
        let h = headers(&["6.6.6.6, 203.0.113.9, 10.0.0.2"]);
        assert_eq!(xff(ip("10.0.0.1"), &h, &trusted), Some(ip("203.0.113.9")));
        // Same, spread over several header fields.
        let h = headers(&["6.6.6.6", "203.0.113.9,10.0.0.3", " 10.0.0.2 "]);
        assert_eq!(xff(ip("10.0.0.1"), &h, &trusted), Some(ip("203.0.113.9")));
        let h = headers(&["2001:db8::5, 2001:db8:ffff::1"]);
        assert_eq!(
            xff(ip("2001:db8:ffff::2"), &h, &trusted),
            Some(ip("2001:db8::5"))
        );
    }

    #[test]
    fn trusted_peer_without_header_is_the_client() {
        assert_eq!(
            xff(ip("10.0.0.1"), &HeaderMap::new(), &nets(&["10.0.0.0/8"])),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn all_trusted_gives_the_leftmost() {
        let h = headers(&["10.9.9.9, 10.0.0.2"]);
        assert_eq!(
            xff(ip("10.0.0.1"), &h, &nets(&["10.0.0.0/8"])),
            Some(ip("10.9.9.9"))
        );
    }

    #[test]
    fn garbage_from_a_trusted_proxy_means_unknown() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&["203.0.113.9, unknown, 10.0.0.2"]);
        assert_eq!(xff(ip("10.0.0.1"), &h, &trusted), None);
        // Garbage left of the client entry was the client's own doing.
        let h = headers(&["junk, 203.0.113.9"]);
        assert_eq!(xff(ip("10.0.0.1"), &h, &trusted), Some(ip("203.0.113.9")));
    }

    #[test]
    fn ports_brackets_and_mapped_addresses() {
        let trusted = nets(&["10.0.0.0/8"]);
        for entry in [
            "203.0.113.9:4711",
            "::ffff:203.0.113.9",
            "[::ffff:203.0.113.9]:80",
        ] {
            let h = headers(&[entry]);
            assert_eq!(
                xff(ip("10.0.0.1"), &h, &trusted),
                Some(ip("203.0.113.9")),
                "{entry}"
            );
        }
        let h = headers(&["[2001:db8::1]"]);
        assert_eq!(xff(ip("10.0.0.1"), &h, &trusted), Some(ip("2001:db8::1")));
    }

    #[test]
    fn mapped_peer_is_ipv4_for_trust_and_result() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            xff(ip("::ffff:192.0.2.1"), &HeaderMap::new(), &trusted),
            Some(ip("192.0.2.1"))
        );
        let h = headers(&["203.0.113.9"]);
        assert_eq!(
            xff(ip("::ffff:10.0.0.1"), &h, &trusted),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn forwarded_elements_walk_like_x_forwarded_for() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            fwd(
                "10.0.0.1",
                &["for=6.6.6.6, for=203.0.113.9;proto=https;by=10.0.0.2, for=10.0.0.2"],
                &trusted
            ),
            Some(ip("203.0.113.9"))
        );
        // Spread over fields; names are case-insensitive; spaces around.
        assert_eq!(
            fwd(
                "10.0.0.1",
                &["For=203.0.113.9", " proto=http ; FOR = 10.0.0.3 "],
                &trusted
            ),
            Some(ip("203.0.113.9"))
        );
        // An untrusted peer's header is ignored.
        assert_eq!(
            fwd("198.51.100.1", &["for=203.0.113.9"], &trusted),
            Some(ip("198.51.100.1"))
        );
        // Every hop trusted: the left-most.
        assert_eq!(
            fwd("10.0.0.1", &["for=10.9.9.9, for=10.0.0.2"], &trusted),
            Some(ip("10.9.9.9"))
        );
    }

    #[test]
    fn forwarded_quoted_ports_and_ipv6() {
        let trusted = nets(&["10.0.0.0/8"]);
        for (value, want) in [
            ("for=\"203.0.113.9:4711\"", "203.0.113.9"),
            ("for=\"[2001:db8:cafe::17]\"", "2001:db8:cafe::17"),
            ("for=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
            ("for=\"[::ffff:203.0.113.9]\"", "203.0.113.9"),
            // A comma and a semicolon inside a quoted value do not split.
            ("by=\"a,b;c\";for=203.0.113.9", "203.0.113.9"),
            // An escaped character inside quotes.
            ("for=\"203.0.113.\\9\"", "203.0.113.9"),
        ] {
            assert_eq!(
                fwd("10.0.0.1", &[value], &trusted),
                Some(ip(want)),
                "{value}"
            );
        }
    }

    #[test]
    fn forwarded_without_an_address_from_a_trusted_proxy_means_unknown() {
        let trusted = nets(&["10.0.0.0/8"]);
        for value in [
            "for=203.0.113.9, for=unknown",
            "for=203.0.113.9, for=_hidden",
            "for=203.0.113.9, for=\"_SEVKISEK\"",
            "for=203.0.113.9, proto=https",
            "for=203.0.113.9, for=\"10.0.0.2",
            "for=203.0.113.9, for=10.0.0.2;for=10.0.0.3",
            "for=203.0.113.9, for=\"10.0.0.2\"x",
        ] {
            assert_eq!(fwd("10.0.0.1", &[value], &trusted), None, "{value}");
        }
        // Garbage left of the client entry was the client's own doing.
        assert_eq!(
            fwd("10.0.0.1", &["for=junk, for=203.0.113.9"], &trusted),
            Some(ip("203.0.113.9"))
        );
        // Empty list elements are no entries.
        assert_eq!(
            fwd("10.0.0.1", &["for=203.0.113.9, , "], &trusted),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn only_the_chosen_header_is_read() {
        let trusted = nets(&["10.0.0.0/8"]);
        let mut map = headers(&["203.0.113.9"]);
        map.append(FORWARDED, HeaderValue::from_static("for=198.51.100.7"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), &map, &trusted, ClientHeader::XForwardedFor),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &map, &trusted, ClientHeader::Forwarded),
            Some(ip("198.51.100.7"))
        );
    }
}
