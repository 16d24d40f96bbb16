//! The cache file's payload encoding (bincode 2, standard configuration,
//! through serde), named here only. The wire frames use the same encoding
//! but write and read their few fields directly (`protocol`: serde cost
//! more than the rest of the front end's protocol work), and their tests
//! hold those bytes to what these functions make. Both formats carry a
//! version of their own, so either can change without the other.

use serde::{de::DeserializeOwned, Serialize};

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

fn config() -> impl bincode::config::Config {
    // Fixed-width integers would make the cache ~30% larger; varints cost
    // nothing noticeable at load time.
    bincode::config::standard().with_limit::<{ 1 << 30 }>()
}

/// Appends the encoding of `value` to `out`.
pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail, and our types have no serializer that
    // refuses; an error here would be a programming error.
    bincode::serde::encode_into_std_write(value, out, config())
        .expect("encoding into a Vec cannot fail");
}

/// Decodes a whole value from `bytes`; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    whole(
        bincode::serde::decode_from_slice(bytes, config()),
        bytes.len(),
    )
}

/// A decoded value, if it used all `len` bytes: a payload with bytes left
/// over is as corrupt as one cut short.
fn whole<T>(
    decoded: Result<(T, usize), bincode::error::DecodeError>,
    len: usize,
) -> Result<T, DecodeError> {
    let (value, used) = decoded.map_err(|e| DecodeError(e.to_string()))?;
    if used != len {
        return Err(DecodeError(format!(
            "{} trailing bytes after the payload",
            len - used
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = Vec::new();
        encode_into(&(7u32, "x".to_string()), &mut bytes);
        assert_eq!(decode::<(u32, String)>(&bytes).unwrap().0, 7);
        bytes.push(0);
        let err = decode::<(u32, String)>(&bytes).unwrap_err();
        assert_eq!(err.to_string(), "1 trailing bytes after the payload");
    }
}
