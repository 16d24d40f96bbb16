//! Integration tests for `cache-builder`: the real binary on real files.
//!
//! One test binary with modules (as ripgrep and hickory do), sharing the
//! fixture helpers below.

mod alternates;
mod atomic;
mod cli;
mod errors;
mod mm2;
mod model;
mod readme;
mod sample;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mirrorlist_core::cachefile;
use mirrorlist_core::model::Cache;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cache-builder");

/// A small valid description: two categories, two repositories, three
/// hosts (one private, one in a site).
pub const BASE: &str = r#"master_tree = "tree"
max_alternates = 4
max_alternate_age_days = 30

[[categories]]
name = "Fedora Linux"
topdir = "fedora/linux"

[[categories]]
name = "EPEL"
topdir = "epel"

[[repositories]]
name = "fedora-42"
arch = "x86_64"
directory = "fedora/linux/releases/42/Everything/x86_64/os"

[[repositories]]
name = "fedora-rawhide"
arch = "x86_64"
directory = "fedora/linux/development/rawhide/Everything/x86_64/os"

[[repositories]]
name = "epel-9"
arch = "x86_64"
directory = "epel/9/Everything/x86_64"

[[hosts]]
name = "m1.example.org"
country = "DE"
bandwidth = 1000
netblocks = ["192.0.2.0/24"]

[[hosts.categories]]
category = "Fedora Linux"
urls = ["https://m1.example.org/fedora/linux", "rsync://m1.example.org/fedora/linux"]

[[hosts.categories]]
category = "EPEL"
urls = ["https://m1.example.org/epel"]

[[sites]]
name = "Example University"

[[sites.hosts]]
name = "m2.example.edu"
country = "US"
families = "ipv4"
categories = [
  { category = "Fedora Linux", urls = ["http://m2.example.edu/pub/fedora/linux"], exclude = ["development"] },
]

[[hosts]]
name = "private.example.net"
country = "FR"
private = true
asns = [64500]
netblocks = ["198.51.100.0/24", "2001:db8:1::/48"]
categories = [
  { category = "EPEL", urls = ["https://private.example.net/epel"] },
]
"#;

/// The repository directories of [`BASE`].
pub const BASE_DIRS: [&str; 3] = [
    "fedora/linux/releases/42/Everything/x86_64/os",
    "fedora/linux/development/rawhide/Everything/x86_64/os",
    "epel/9/Everything/x86_64",
];

/// A temporary directory with a description and a master tree.
#[derive(Debug)]
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// A fixture with `description` and [`BASE_DIRS`], each with a
    /// `repodata/repomd.xml` of its own.
    pub fn new(description: &str) -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        for d in BASE_DIRS {
            f.write_repomd(d, &format!("<repomd>{d} v1</repomd>"));
        }
        f.write_description(description);
        f
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config(&self) -> PathBuf {
        self.path("mirrors.toml")
    }

    pub fn output(&self) -> PathBuf {
        self.path("out/mirrorlist.cache")
    }

    pub fn write_description(&self, text: &str) {
        std::fs::write(self.config(), text).unwrap();
    }

    /// Writes a repository's repomd.xml; returns its path.
    pub fn write_repomd(&self, dir: &str, content: &str) -> PathBuf {
        let repodata = self.path("tree").join(dir).join("repodata");
        std::fs::create_dir_all(&repodata).unwrap();
        let p = repodata.join("repomd.xml");
        std::fs::write(&p, content).unwrap();
        p
    }

    /// Runs `cache-builder build` with a fixed build time.
    pub fn build(&self, build_time: u64) -> Output {
        std::fs::create_dir_all(self.path("out")).unwrap();
        run(&[
            "build",
            "--config",
            self.config().to_str().unwrap(),
            "--output",
            self.output().to_str().unwrap(),
            "--build-time",
            &build_time.to_string(),
        ])
    }

    /// Builds and asserts success.
    pub fn build_ok(&self, build_time: u64) -> Cache {
        let out = self.build(build_time);
        assert_success(&out);
        cachefile::load(&self.output()).unwrap()
    }
}

/// Runs the binary.
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The 1-based line of the first line of `text` containing `needle`.
pub fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the text"))
        + 1
}

/// The 1-based line of the `n`th (0-based) line containing `needle`.
pub fn nth_line_of(text: &str, needle: &str, n: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .nth(n)
        .unwrap_or_else(|| panic!("{needle:?} not {} times in the text", n + 1))
        .0
        + 1
}

/// The SHA-256 of `bytes`, lower-case hex, as the cache records it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The workspace root.
pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}
