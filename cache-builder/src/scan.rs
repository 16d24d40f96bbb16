//! The master tree scan: size, time and hashes of each repository's
//! `repodata/repomd.xml`, the file metalinks describe.
//!
//! A repository directory without `repodata/repomd.xml` is allowed (a
//! repository being composed, or one served by plain mirrorlist only): it
//! just gets no file details. That the directories exist was checked with
//! the description, so a missing one here is a race and reported as such.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;
use std::time::UNIX_EPOCH;

use md5::Md5;
use mirrorlist_core::model::{DirectoryFiles, FileDetails, FileEntry};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use crate::error::Error;

/// The directory under a repository that holds its metadata.
pub const REPODATA: &str = "repodata";
/// The file whose details metalinks carry.
pub const REPOMD: &str = "repomd.xml";

/// Scans `dirs` (relative to `tree`), calling `progress(done, total)` after
/// each. Returns one entry per directory that has a `repomd.xml`, with only
/// the current version (alternates come later).
pub fn scan(
    tree: &Path,
    dirs: &[String],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<DirectoryFiles>, Error> {
    let mut out = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let path = tree.join(dir).join(REPODATA).join(REPOMD);
        if let Some(details) = file_details(&path)? {
            out.push(DirectoryFiles {
                directory: format!("{dir}/{REPODATA}"),
                files: vec![FileEntry {
                    name: REPOMD.to_owned(),
                    versions: vec![details],
                }],
            });
        }
        progress(i + 1, dirs.len());
    }
    Ok(out)
}

/// Size, modification time and the four digests of a file, read once;
/// `None` when the file does not exist.
pub fn file_details(path: &Path) -> Result<Option<FileDetails>, Error> {
    let err = |source| Error::Read {
        path: path.to_owned(),
        source,
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    let meta = file.metadata().map_err(err)?;
    let timestamp = meta
        .modified()
        .map_err(err)?
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (mut md5, mut sha1, mut sha256, mut sha512) =
        (Md5::new(), Sha1::new(), Sha256::new(), Sha512::new());
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(err(e)),
        };
        let chunk = &buf[..n];
        md5.update(chunk);
        sha1.update(chunk);
        sha256.update(chunk);
        sha512.update(chunk);
        size += n as u64;
    }
    Ok(Some(FileDetails {
        timestamp,
        size,
        md5: hex::encode(md5.finalize()),
        sha1: hex::encode(sha1.finalize()),
        sha256: hex::encode(sha256.finalize()),
        sha512: hex::encode(sha512.finalize()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_known_digests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let d = file_details(&path).unwrap().unwrap();
        assert_eq!(d.size, 3);
        assert_eq!(d.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(d.sha1, "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(d.sha512.starts_with("ddaf35a193617aba"));
        assert!(d.timestamp > 0);
    }

    #[test]
    fn missing_repomd_gives_no_details() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/repodata")).unwrap();
        std::fs::create_dir_all(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("a/repodata/repomd.xml"), b"<x/>").unwrap();
        let mut calls = Vec::new();
        let files = scan(dir.path(), &["a".into(), "b".into()], &mut |d, t| {
            calls.push((d, t))
        })
        .unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].directory, "a/repodata");
        assert_eq!(files[0].files[0].name, "repomd.xml");
        assert_eq!(calls, [(1, 2), (2, 2)]);
    }
}
