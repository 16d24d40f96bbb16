//! The client's address: the TCP peer, or, behind trusted proxies, what they
//! wrote into `X-Forwarded-For`.
//!
//! Every proxy appends the address it received the request from, so the
//! header reads left to right from the (claimed) client towards us. Only the
//! entries appended by proxies we trust are believable: walking from the
//! right, each trusted address vouches for the entry before it, and the
//! first address that is not a trusted proxy is the client. Anything further
//! left was written by the client itself and may be forged.

use std::net::{IpAddr, SocketAddr};

use hyper::header::{HeaderMap, HeaderName};
use ipnet::IpNet;

/// The header proxies append to.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client address for a request from `peer` with these headers, or
/// `None` when a trusted proxy says it does not know (e.g. `unknown`).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    // All the headers, in order, as one comma list (RFC 9110 §5.3 makes
    // repeated fields equivalent to one joined with commas).
    let entries: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(|entry| std::str::from_utf8(entry).unwrap_or("").trim())
        .filter(|entry| !entry.is_empty())
        .collect();
    // The peer itself is the nearest trusted hop; with no header it is the
    // best we know (a proxy's own health check, say).
    let mut nearest = peer;
    for entry in entries.iter().rev() {
        // A trusted proxy wrote this entry. If it is not an address, that
        // proxy did not know the client: say so rather than believe the
        // client-written entries further left.
        let addr = parse_entry(entry)?;
        if !is_trusted(addr, trusted) {
            return Some(addr);
        }
        nearest = addr;
    }
    // Every hop is a trusted proxy: the left-most is the furthest we know.
    Some(nearest)
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
            client_ip(ip("198.51.100.1"), &h, &nets(&["10.0.0.0/8"])),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(
            client_ip(ip("198.51.100.1"), &h, &[]),
            Some(ip("198.51.100.1"))
        );
    }

    #[test]
    fn rightmost_untrusted_entry_wins() {
        let trusted = nets(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        // The client forged the first entry; the proxies appended the rest.
        let h = headers(&["6.6.6.6, 203.0.113.9, 10.0.0.2"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted),
            Some(ip("203.0.113.9"))
        );
        // Same, spread over several header fields.
        let h = headers(&["6.6.6.6", "203.0.113.9,10.0.0.3", " 10.0.0.2 "]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted),
            Some(ip("203.0.113.9"))
        );
        let h = headers(&["2001:db8::5, 2001:db8:ffff::1"]);
        assert_eq!(
            client_ip(ip("2001:db8:ffff::2"), &h, &trusted),
            Some(ip("2001:db8::5"))
        );
    }

    #[test]
    fn trusted_peer_without_header_is_the_client() {
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &nets(&["10.0.0.0/8"])),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn all_trusted_gives_the_leftmost() {
        let h = headers(&["10.9.9.9, 10.0.0.2"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &nets(&["10.0.0.0/8"])),
            Some(ip("10.9.9.9"))
        );
    }

    #[test]
    fn garbage_from_a_trusted_proxy_means_unknown() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&["203.0.113.9, unknown, 10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), None);
        // Garbage left of the client entry was the client's own doing.
        let h = headers(&["junk, 203.0.113.9"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted),
            Some(ip("203.0.113.9"))
        );
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
                client_ip(ip("10.0.0.1"), &h, &trusted),
                Some(ip("203.0.113.9")),
                "{entry}"
            );
        }
        let h = headers(&["[2001:db8::1]"]);
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &trusted),
            Some(ip("2001:db8::1"))
        );
    }

    #[test]
    fn mapped_peer_is_ipv4_for_trust_and_result() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("::ffff:192.0.2.1"), &HeaderMap::new(), &trusted),
            Some(ip("192.0.2.1"))
        );
        let h = headers(&["203.0.113.9"]);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &h, &trusted),
            Some(ip("203.0.113.9"))
        );
    }
}
