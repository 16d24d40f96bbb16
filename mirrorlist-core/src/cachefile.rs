//! The cache file: a fixed header, then the encoded [`Cache`].
//!
//! ```text
//! offset  size  field
//!      0     8  magic "MIRRLIST"
//!      8     4  format version, u32 little-endian (FORMAT_VERSION)
//!     12     8  build time, Unix seconds, u64 little-endian
//!     20     8  payload length in bytes, u64 little-endian
//!     28    32  SHA-256 of the payload
//!     60     …  payload (see `codec`)
//! ```
//!
//! The header is readable without decoding the payload (`read_header`), so
//! tools can show a file's version and age even when they cannot decode it.
//! Files are replaced atomically: written to a temporary file in the same
//! directory, synced, renamed over the old one, and the directory synced.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::codec;
use crate::model::Cache;

/// The magic string every cache file starts with.
pub const MAGIC: &[u8; 8] = b"MIRRLIST";
/// The version of the payload layout this build reads and writes. Bump it
/// whenever a change to `model` changes the encoding.
pub const FORMAT_VERSION: u32 = 3;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 60;

/// What the fixed header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Format version of the payload.
    pub version: u32,
    /// Build time, Unix seconds.
    pub built_at: u64,
    /// Payload length in bytes.
    pub payload_len: u64,
    /// SHA-256 of the payload.
    pub checksum: [u8; 32],
}

/// Why a cache file was refused.
#[derive(Debug, thiserror::Error)]
pub enum CacheFileError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file does not start with the magic string.
    #[error("not a mirrorlist cache file (bad magic)")]
    BadMagic,
    /// The file is of another format version.
    #[error("cache format version {found} is not supported (this build reads version {supported}); rebuild the cache with a matching cache-builder")]
    Version {
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// The file is shorter than its header says.
    #[error("truncated cache file: {found} bytes, header promises {expected}")]
    Truncated {
        /// Length the header promises (header + payload).
        expected: u64,
        /// Actual length.
        found: u64,
    },
    /// The header's payload length cannot be right: with the header it
    /// exceeds any possible file length.
    #[error("truncated or corrupt cache file: {found} bytes, header promises a payload of {payload_len} bytes, more than any file can hold")]
    ImpossibleLength {
        /// The payload length in the header.
        payload_len: u64,
        /// Actual length of the file.
        found: u64,
    },
    /// The file is longer than its header says.
    #[error("cache file has {extra} unexpected bytes after the payload")]
    TrailingBytes {
        /// How many.
        extra: u64,
    },
    /// The payload does not match the checksum in the header.
    #[error("cache file checksum mismatch: the payload is corrupt")]
    Checksum,
    /// The checksum matched but the payload could not be decoded.
    #[error("cache payload cannot be decoded: {0}")]
    Decode(#[from] codec::DecodeError),
}

/// Encodes a cache into the bytes of a cache file.
pub fn encode(cache: &Cache) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    codec::encode_into(cache, &mut out);
    let payload_len = (out.len() - HEADER_LEN) as u64;
    let checksum: [u8; 32] = Sha256::digest(&out[HEADER_LEN..]).into();
    out[0..8].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[12..20].copy_from_slice(&cache.built_at.to_le_bytes());
    out[20..28].copy_from_slice(&payload_len.to_le_bytes());
    out[28..60].copy_from_slice(&checksum);
    out
}

/// Reads and checks the fixed header only (magic, version, length).
pub fn read_header(bytes: &[u8]) -> Result<Header, CacheFileError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        // A file shorter than the magic that is a prefix of it was truncated;
        // anything else is not ours.
        if !bytes.is_empty() && bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) {
            return Err(CacheFileError::Truncated {
                expected: HEADER_LEN as u64,
                found: bytes.len() as u64,
            });
        }
        return Err(CacheFileError::BadMagic);
    }
    if bytes.len() < HEADER_LEN {
        return Err(CacheFileError::Truncated {
            expected: HEADER_LEN as u64,
            found: bytes.len() as u64,
        });
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
    let header = Header {
        version: u32_at(8),
        built_at: u64_at(12),
        payload_len: u64_at(20),
        checksum: bytes[28..60].try_into().expect("32 bytes"),
    };
    if header.version != FORMAT_VERSION {
        return Err(CacheFileError::Version {
            found: header.version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(header)
}

/// Decodes the bytes of a cache file, refusing anything not exactly right.
pub fn decode(bytes: &[u8]) -> Result<Cache, CacheFileError> {
    let header = read_header(bytes)?;
    let found = bytes.len() as u64;
    // A corrupt length near u64::MAX would wrap around and pass for a
    // short file with trailing bytes.
    let expected = (HEADER_LEN as u64).checked_add(header.payload_len).ok_or(
        CacheFileError::ImpossibleLength {
            payload_len: header.payload_len,
            found,
        },
    )?;
    if found < expected {
        return Err(CacheFileError::Truncated { expected, found });
    }
    if found > expected {
        return Err(CacheFileError::TrailingBytes {
            extra: found - expected,
        });
    }
    let payload = &bytes[HEADER_LEN..];
    let checksum: [u8; 32] = Sha256::digest(payload).into();
    if checksum != header.checksum {
        return Err(CacheFileError::Checksum);
    }
    Ok(codec::decode(payload)?)
}

/// Reads and decodes a cache file.
pub fn load(path: &Path) -> Result<Cache, CacheFileError> {
    let bytes = fs::read(path).map_err(|source| CacheFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    decode(&bytes)
}

/// Writes a cache file atomically: a reader sees the whole old file or the
/// whole new one, never a mixture, and a failure leaves the old one in place.
pub fn write_atomic(path: &Path, cache: &Cache) -> Result<(), CacheFileError> {
    write_bytes_atomic(path, &encode(cache))
}

/// Writes `bytes` to `path` atomically (temporary file in the same
/// directory, fsync, rename, fsync of the directory).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheFileError> {
    let io = |source| CacheFileError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io(std::io::Error::other("the output path names no file")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);

    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // The rename is durable only once the directory is synced.
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    fn sample() -> Cache {
        let mut c = Cache {
            built_at: 1_700_000_000,
            source: "test".into(),
            categories: vec![Category {
                name: "Fedora Linux".into(),
                topdir: "fedora/linux".into(),
            }],
            hosts: vec![Host {
                id: 7,
                name: "mirror.example".into(),
                site: "Example".into(),
                country: Country::parse("DE").unwrap(),
                bandwidth: 1000,
                private: false,
                allowed_countries: vec![],
                netblocks: vec!["192.0.2.0/24".parse().unwrap()],
                asns: vec![64500],
                asn_clients: true,
                families: Families::Both,
            }],
            host_urls: vec![HostUrl {
                host: 0,
                url: "https://mirror.example/fedora".into(),
                protocol: Protocol::Https,
            }],
            directories: vec![Directory {
                path: "fedora/linux/releases/42".into(),
                subpath: "releases/42".into(),
                hosts: 0,
                ordered: true,
            }],
            host_sets: vec![HostSet::new(
                vec![0],
                [(Country::parse("DE").unwrap(), vec![0])],
                [(0, vec![0])],
            )],
            repos: vec![Repo {
                name: "fedora-42".into(),
                arch: "x86_64".into(),
                directory: 0,
            }],
            repo_redirects: vec![RepoRedirect {
                from: "fedora-old".into(),
                to: "fedora-42".into(),
            }],
            disabled_repos: vec!["fedora-10".into()],
            file_details: vec![DirectoryFiles {
                directory: "fedora/linux/releases/42/repodata".into(),
                files: vec![FileEntry {
                    name: "repomd.xml".into(),
                    versions: vec![FileDetails {
                        timestamp: 1,
                        size: 2,
                        md5: "aa".into(),
                        sha1: "bb".into(),
                        sha256: "cc".into(),
                        sha512: "dd".into(),
                    }],
                }],
            }],
            country_continent: vec![(Country::parse("DE").unwrap(), "EU".into())],
            continent_overrides: vec![],
            netblock_countries: vec![(
                "198.51.100.0/24".parse().unwrap(),
                Country::parse("FR").unwrap(),
            )],
        };
        c.normalize();
        c
    }

    #[test]
    fn round_trip() {
        let c = sample();
        let bytes = encode(&c);
        assert_eq!(decode(&bytes).unwrap(), c);
        assert_eq!(read_header(&bytes).unwrap().built_at, 1_700_000_000);
    }

    #[test]
    fn flipped_byte_is_a_checksum_error() {
        let mut bytes = encode(&sample());
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        assert!(matches!(decode(&bytes), Err(CacheFileError::Checksum)));
    }

    #[test]
    fn truncation_is_reported() {
        let bytes = encode(&sample());
        for cut in [3, 20, HEADER_LEN, bytes.len() - 1] {
            let err = decode(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, CacheFileError::Truncated { .. }),
                "cut at {cut}: {err}"
            );
        }
        assert!(matches!(decode(&[]), Err(CacheFileError::BadMagic)));
    }

    #[test]
    fn a_payload_length_that_overflows_is_refused_not_wrapped() {
        let mut bytes = encode(&sample());
        bytes[20..28].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = decode(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                CacheFileError::ImpossibleLength { payload_len: u64::MAX, found }
                    if found == bytes.len() as u64
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("more than any file can hold"),
            "{err}"
        );
        // The largest length that does not overflow is an ordinary truncation.
        bytes[20..28].copy_from_slice(&(u64::MAX - HEADER_LEN as u64).to_le_bytes());
        assert!(matches!(
            decode(&bytes),
            Err(CacheFileError::Truncated {
                expected: u64::MAX,
                ..
            })
        ));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&sample());
        bytes.push(0);
        assert!(matches!(
            decode(&bytes),
            Err(CacheFileError::TrailingBytes { extra: 1 })
        ));
    }

    #[test]
    fn wrong_magic_is_refused() {
        let mut bytes = encode(&sample());
        bytes[0] = b'X';
        assert!(matches!(decode(&bytes), Err(CacheFileError::BadMagic)));
    }

    #[test]
    fn other_versions_are_refused() {
        for v in [FORMAT_VERSION - 1, FORMAT_VERSION + 1] {
            let mut bytes = encode(&sample());
            bytes[8..12].copy_from_slice(&v.to_le_bytes());
            let err = decode(&bytes).unwrap_err();
            assert!(
                matches!(err, CacheFileError::Version { found, .. } if found == v),
                "{err}"
            );
            assert!(err.to_string().contains(&v.to_string()));
        }
    }

    #[test]
    fn garbage_payload_with_valid_checksum_is_a_decode_error() {
        let payload = vec![0xffu8; 16];
        let mut bytes = vec![0u8; HEADER_LEN];
        bytes[0..8].copy_from_slice(MAGIC);
        bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes[20..28].copy_from_slice(&(payload.len() as u64).to_le_bytes());
        let sum: [u8; 32] = Sha256::digest(&payload).into();
        bytes[28..60].copy_from_slice(&sum);
        bytes.extend_from_slice(&payload);
        assert!(matches!(decode(&bytes), Err(CacheFileError::Decode(_))));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.bin");
        let mut c = sample();
        write_atomic(&path, &c).unwrap();
        c.built_at += 1;
        write_atomic(&path, &c).unwrap();
        assert_eq!(load(&path).unwrap().built_at, c.built_at);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary file left behind");
    }

    #[test]
    fn failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.bin");
        write_atomic(&path, &sample()).unwrap();
        // A directory where the output should go cannot be replaced.
        let bad = dir.path().join("sub");
        fs::create_dir(&bad).unwrap();
        fs::write(bad.join("x"), b"x").unwrap();
        assert!(write_atomic(&bad, &sample()).is_err());
        assert!(load(&path).is_ok());
    }
}
