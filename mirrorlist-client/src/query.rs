//! Query-string decoding, as browsers and dnf encode it
//! (`application/x-www-form-urlencoded`): pairs split on `&`, key and value
//! on the first `=`, `+` is a space, `%XX` is a byte, and the bytes must be
//! UTF-8.
//!
//! Fedora's Rust server passed `%2F` and `+` through raw, so
//! `path=pub%2Ffedora` never matched; the Python server decoded fully. We
//! decode fully, but unlike a lenient decoder we refuse a malformed `%`
//! escape instead of guessing, so a broken client learns it at once.

use std::borrow::Cow;
use std::fmt;

use percent_encoding::percent_decode;

/// Why a query string was refused. The message names the parameter so the
/// 400 body tells the client what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding in the {0}")]
    BadEscape(Part),
    /// The decoded bytes are not UTF-8.
    #[error("the {0} is not valid UTF-8 once decoded")]
    NotUtf8(Part),
}

/// Which part of which parameter was bad, for the error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// The name of a parameter (given raw, as the client sent it).
    Key(String),
    /// The value of the named parameter.
    Value(String),
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Key(raw) => write!(f, "name of query parameter {raw:?}"),
            Part::Value(key) => write!(f, "value of query parameter {key:?}"),
        }
    }
}

/// Decoded query pairs, in order; each part borrows the raw query where
/// it needed no decoding.
pub type Pairs<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

/// Decodes a raw query string (without the `?`) into pairs, in order.
///
/// Empty values are kept (`country=` is meaningful) and a key without `=`
/// has an empty value; empty segments (`a=1&&b=2`, a trailing `&`) carry
/// nothing and are skipped. A component with nothing to decode (nearly
/// all of dnf's) borrows from `query`.
pub fn decode(query: &str) -> Result<Pairs<'_>, QueryError> {
    // One pass over the bytes finds the separators and whether anything
    // needs decoding: cheaper than splitting on `&`, then on `=`, then
    // scanning each part again for `%` and `+`.
    let bytes = query.as_bytes();
    let mut pairs = Vec::with_capacity(4);
    let mut start = 0;
    while start < bytes.len() {
        let mut eq = None;
        let mut encoded = [false; 2];
        let mut end = start;
        while let Some(&b) = bytes.get(end) {
            match b {
                b'&' => break,
                b'=' if eq.is_none() => eq = Some(end),
                b'%' | b'+' => encoded[usize::from(eq.is_some())] = true,
                _ => {}
            }
            end += 1;
        }
        if end > start {
            let (raw_key, raw_value) = match eq {
                Some(at) => (&query[start..at], &query[at + 1..end]),
                None => (&query[start..end], ""),
            };
            let key =
                component(raw_key, encoded[0]).map_err(|e| e.at(Part::Key(raw_key.to_owned())))?;
            let value =
                component(raw_value, encoded[1]).map_err(|e| e.at(Part::Value(key.to_string())))?;
            pairs.push((key, value));
        }
        start = end + 1;
    }
    Ok(pairs)
}

/// `raw`, borrowed as it is unless the scan in [`decode`] saw a `%` or a
/// `+` in it.
fn component(raw: &str, encoded: bool) -> Result<Cow<'_, str>, ComponentError> {
    if encoded {
        decode_component(raw).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(raw))
    }
}

/// What went wrong in one component, before we know which part it was.
enum ComponentError {
    BadEscape,
    NotUtf8,
}

impl ComponentError {
    fn at(self, part: Part) -> QueryError {
        match self {
            ComponentError::BadEscape => QueryError::BadEscape(part),
            ComponentError::NotUtf8 => QueryError::NotUtf8(part),
        }
    }
}

/// Decodes a component that has a `%` or a `+` (the caller has looked).
fn decode_component(raw: &str) -> Result<String, ComponentError> {
    let bytes = raw.as_bytes();
    // `percent_decode` leaves a malformed escape as it is; check first so
    // "%zz" or a truncated "%4" is an error rather than a literal.
    let mut i = 0;
    while let Some(pos) = bytes[i..].iter().position(|&b| b == b'%') {
        let at = i + pos;
        match bytes.get(at + 1..at + 3) {
            Some([h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i = at + 3,
            _ => return Err(ComponentError::BadEscape),
        }
    }
    // `+` means space only in the encoded form, so replace it before
    // decoding (a `%2B` stays a plus).
    let plus_free: Cow<'_, [u8]> = if bytes.contains(&b'+') {
        Cow::Owned(
            bytes
                .iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(bytes)
    };
    let decoded = percent_decode(&plus_free)
        .decode_utf8()
        .map_err(|_| ComponentError::NotUtf8)?;
    Ok(decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&'static str, &'static str)]) -> Pairs<'static> {
        list.iter()
            .map(|&(k, v)| (Cow::Borrowed(k), Cow::Borrowed(v)))
            .collect()
    }

    #[test]
    fn plain_pairs_in_order() {
        assert_eq!(
            decode("repo=fedora-42&arch=x86_64&countme=1").unwrap(),
            pairs(&[("repo", "fedora-42"), ("arch", "x86_64"), ("countme", "1")])
        );
        // Nothing to decode: borrowed; an escape or a plus: decoded.
        let decoded = decode("repo=f&q=a+b&p=%2F").unwrap();
        assert!(matches!(
            decoded[0],
            (Cow::Borrowed("repo"), Cow::Borrowed("f"))
        ));
        assert!(matches!(decoded[1].1, Cow::Owned(_)));
        assert!(matches!(decoded[2].1, Cow::Owned(_)));
    }

    #[test]
    fn percent_and_plus() {
        assert_eq!(
            decode("path=pub%2Ffedora%2flinux&q=a+b&plus=%2B&sp=%20").unwrap(),
            pairs(&[
                ("path", "pub/fedora/linux"),
                ("q", "a b"),
                ("plus", "+"),
                ("sp", " ")
            ])
        );
        assert_eq!(decode("k%3Dx=v%26w").unwrap(), pairs(&[("k=x", "v&w")]));
        assert_eq!(decode("c=%C3%A9t%C3%A9").unwrap(), pairs(&[("c", "été")]));
    }

    #[test]
    fn empty_values_and_bare_keys_are_kept_empty_segments_skipped() {
        assert_eq!(
            decode("country=&netblock&&a=1=2&").unwrap(),
            pairs(&[("country", ""), ("netblock", ""), ("a", "1=2")])
        );
        assert_eq!(decode("").unwrap(), pairs(&[]));
        assert_eq!(decode("=v").unwrap(), pairs(&[("", "v")]));
    }

    #[test]
    fn duplicates_stay_duplicated() {
        assert_eq!(
            decode("country=DE&country=AT").unwrap(),
            pairs(&[("country", "DE"), ("country", "AT")])
        );
    }

    #[test]
    fn bad_escapes_name_the_parameter() {
        let err = decode("repo=ok&arch=x%zz").unwrap_err();
        assert_eq!(err, QueryError::BadEscape(Part::Value("arch".into())));
        assert_eq!(
            err.to_string(),
            "invalid percent-encoding in the value of query parameter \"arch\""
        );
        assert_eq!(
            decode("arch=x86%4").unwrap_err(),
            QueryError::BadEscape(Part::Value("arch".into()))
        );
        assert_eq!(
            decode("arch=%").unwrap_err(),
            QueryError::BadEscape(Part::Value("arch".into()))
        );
        assert_eq!(
            decode("re%xpo=1").unwrap_err(),
            QueryError::BadEscape(Part::Key("re%xpo".into()))
        );
    }

    #[test]
    fn invalid_utf8_names_the_parameter() {
        let err = decode("repo=%FF%FE").unwrap_err();
        assert_eq!(err, QueryError::NotUtf8(Part::Value("repo".into())));
        assert_eq!(
            err.to_string(),
            "the value of query parameter \"repo\" is not valid UTF-8 once decoded"
        );
        assert_eq!(
            decode("%C3=1").unwrap_err(),
            QueryError::NotUtf8(Part::Key("%C3".into()))
        );
    }
}
