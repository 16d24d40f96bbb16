//! MirrorManager2's netblock spellings.
//!
//! Mirror administrators type netblocks into MirrorManager's web form, and
//! it stores them as typed. Three spellings occur: CIDR (`192.0.2.0/24`,
//! `2001:db8::/32`), a bare address (a single host: `/32` or `/128`), and an
//! IPv4 address with a dotted netmask (`192.0.2.0/255.255.255.0`). All three
//! become an [`IpNet`] with the host bits cleared, because the server's
//! prefix trie stores networks and a form entry like `192.0.2.7/24` means
//! the network around that address.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

/// Parses one netblock in any of the three spellings; the error says why,
/// for a message that names the entry.
pub fn parse(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let Some((addr, mask)) = text.split_once('/') else {
        let addr: IpAddr = text
            .parse()
            .map_err(|_| format!("{text:?} is neither an address nor a netblock"))?;
        return Ok(IpNet::from(addr));
    };
    if let Ok(len) = mask.parse::<u8>() {
        return text.parse::<IpNet>().map(|n| n.trunc()).map_err(|_| {
            match addr.parse::<IpAddr>() {
                Ok(_) => format!("{text:?}: prefix length {len} is too long for the address"),
                Err(_) => format!("{text:?}: {addr:?} is not an IP address"),
            }
        });
    }
    let mask: Ipv4Addr = mask
        .parse()
        .map_err(|_| format!("{text:?}: {mask:?} is neither a prefix length nor a netmask"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("{text:?}: a dotted netmask needs an IPv4 address, found {addr:?}"))?;
    let len =
        netmask_len(mask).ok_or_else(|| format!("{text:?}: netmask {mask} is not contiguous"))?;
    let net = Ipv4Net::new(addr, len).expect("a contiguous netmask has at most 32 bits");
    Ok(IpNet::V4(net.trunc()))
}

/// The prefix length of a contiguous netmask (ones, then zeros).
fn netmask_len(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let len = bits.leading_ones();
    // Contiguous means nothing is set after the leading ones.
    (bits.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn cidr() {
        assert_eq!(parse("192.0.2.0/24").unwrap(), net("192.0.2.0/24"));
        assert_eq!(parse("2001:db8::/32").unwrap(), net("2001:db8::/32"));
        // Host bits are cleared, as the server's trie would.
        assert_eq!(parse("192.0.2.77/24").unwrap(), net("192.0.2.0/24"));
        assert_eq!(parse(" 10.0.0.0/8 ").unwrap(), net("10.0.0.0/8"));
    }

    #[test]
    fn bare_addresses_are_single_hosts() {
        assert_eq!(parse("192.0.2.7").unwrap(), net("192.0.2.7/32"));
        assert_eq!(parse("2001:db8::7").unwrap(), net("2001:db8::7/128"));
    }

    #[test]
    fn dotted_netmasks() {
        assert_eq!(
            parse("192.0.2.0/255.255.255.0").unwrap(),
            net("192.0.2.0/24")
        );
        assert_eq!(parse("10.1.2.3/255.0.0.0").unwrap(), net("10.0.0.0/8"));
        assert_eq!(parse("0.0.0.0/0.0.0.0").unwrap(), net("0.0.0.0/0"));
        assert_eq!(
            parse("192.0.2.1/255.255.255.255").unwrap(),
            net("192.0.2.1/32")
        );
        assert_eq!(
            parse("192.0.2.0/255.255.254.0").unwrap(),
            net("192.0.2.0/23")
        );
    }

    #[test]
    fn bad_spellings_say_why() {
        let err = parse("192.0.2.0/255.0.255.0").unwrap_err();
        assert!(err.contains("not contiguous"), "{err}");
        let err = parse("192.0.2.0/33").unwrap_err();
        assert!(err.contains("too long"), "{err}");
        let err = parse("2001:db8::/255.255.0.0").unwrap_err();
        assert!(err.contains("needs an IPv4 address"), "{err}");
        assert!(parse("mirror.example.org").is_err());
        assert!(parse("192.0.2.0/abc").is_err());
        assert!(parse("300.0.0.0/8")
            .unwrap_err()
            .contains("not an IP address"));
        assert!(parse("").is_err());
    }
}
