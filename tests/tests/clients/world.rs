//! The world a client test runs in, all on loopback and in one temporary
//! directory: real repositories, three mirrors, a mirror description, a
//! cache built by `cache-builder`, and `mirrorlist-server` +
//! `mirrorlist-client` serving it.
//!
//! # Repositories
//!
//! - an RPM repository in two versions, built with `rpmbuild` and
//!   `createrepo_c`: *old* holds `alpha`, *new* holds `alpha` and `beta`;
//! - a Debian repository (`dpkg-deb`, `apt-ftparchive`) holding
//!   `hello-mirror`, laid out as a repository root (`dists/`, `pool/`).
//!
//! # Mirror tree (master and mirrors), category "Test" with topdir `pub`
//!
//! | directory | repo / arch | master | fresh-a, fresh-b | stale |
//! |---|---|---|---|---|
//! | `pub/el/alt` | `test-alt` / `x86_64` | old, then new (so old is an alternate) | new | old |
//! | `pub/el/noalt` | `test-noalt` / `x86_64` | new (no alternate) | new | old |
//! | `pub/debian` | `debian-test` / `amd64` | the Debian repo | same | same |
//!
//! # Order, forced through `ip=` and netblocks
//!
//! | client (`ip=`) | order |
//! |---|---|
//! | [`FRESH_FIRST`] 192.0.2.1 | fresh-a (/25), fresh-b (/24), stale (global tier) |
//! | [`STALE_FIRST`] 198.51.100.1 | stale (/25), fresh-a (/24), fresh-b (global tier) |

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use mirrorlist_tests::{bin, http, start_front_end, HttpResponse, Proc};
use nix::sys::signal::Signal;

use super::mirror::Mirror;

/// A client address whose answer lists fresh-a, fresh-b, stale.
pub const FRESH_FIRST: &str = "192.0.2.1";
/// A client address whose answer lists stale, fresh-a, fresh-b.
pub const STALE_FIRST: &str = "198.51.100.1";

/// What a test needs built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// The RPM repositories (dnf, librepo).
    Rpm,
    /// The Debian repository (apt).
    Deb,
}

/// Everything running for one test; all of it stops when dropped.
#[derive(Debug)]
pub struct World {
    /// The temporary directory holding all files.
    pub dir: tempfile::TempDir,
    /// The mirrors, in the order fresh-a, fresh-b, stale.
    pub mirrors: Vec<Mirror>,
    /// The mirror server.
    pub server: Proc,
    /// The HTTP front end; held so it stops when the world is dropped.
    #[allow(dead_code)]
    client: Proc,
    /// The front end's `ADDR:PORT`.
    pub addr: String,
}

/// A command-line tool and the Debian package that has it.
pub type Tool = (&'static str, &'static str);

/// Tools for the RPM side.
pub const RPM_TOOLS: [Tool; 3] = [
    ("rpmbuild", "rpm"),
    ("createrepo_c", "createrepo-c"),
    ("dnf", "dnf"),
];
/// Tools for the Debian side.
pub const DEB_TOOLS: [Tool; 3] = [
    ("dpkg-deb", "dpkg"),
    ("apt-ftparchive", "apt-utils"),
    ("apt-get", "apt"),
];

/// Fails (never skips) when a tool is missing, naming what to install.
pub fn require(tools: &[Tool]) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<Tool> = tools
        .iter()
        .copied()
        .filter(|(cmd, _)| !std::env::split_paths(&path).any(|d| d.join(cmd).is_file()))
        .collect();
    assert!(
        missing.is_empty(),
        "the real-client tests need {}; run `.ci/run` (it installs them) or \
         `apt-get install --no-install-recommends {}`",
        missing
            .iter()
            .map(|(c, _)| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", "),
        missing
            .iter()
            .map(|(_, p)| *p)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// Fails unless running as root: dnf installs into an installroot and
/// sends `countme` only as root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the dnf tests must run as root (dnf --installroot install, countme); CI runs them as root"
    );
}

/// Runs a command; panics with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating a directory");
    for entry in std::fs::read_dir(from).expect("reading a directory") {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copying a file");
        }
    }
}

const SPEC: &str = "\
Name: %{pkgname}
Version: 1.0
Release: 1
Summary: %{pkgname}, a test package served through the mirrorlist
License: MIT
BuildArch: noarch
%description
A test package of the mirrorlist client tests.
%install
mkdir -p %{buildroot}/usr/share/%{pkgname}
echo %{pkgname} > %{buildroot}/usr/share/%{pkgname}/hello
%files
/usr/share/%{pkgname}/hello
";

/// Builds the old (alpha) and new (alpha, beta) RPM repositories under
/// `build`; returns their paths.
fn build_rpm_repos(build: &Path) -> (PathBuf, PathBuf) {
    let spec = build.join("test.spec");
    std::fs::write(&spec, SPEC).expect("writing the spec");
    let topdir = build.join("rpmbuild");
    for name in ["alpha", "beta"] {
        run(Command::new("rpmbuild")
            .arg("--quiet")
            .arg("--define")
            .arg(format!("_topdir {}", topdir.display()))
            .arg("--define")
            .arg(format!("pkgname {name}"))
            .arg("-bb")
            .arg(&spec));
    }
    let rpms = topdir.join("RPMS/noarch");
    let (old, new) = (build.join("rpm-old"), build.join("rpm-new"));
    for (repo, names) in [(&old, &["alpha"][..]), (&new, &["alpha", "beta"][..])] {
        std::fs::create_dir_all(repo).expect("repo dir");
        for name in names {
            let file = format!("{name}-1.0-1.noarch.rpm");
            std::fs::copy(rpms.join(&file), repo.join(&file)).expect("copying an rpm");
        }
        run(Command::new("createrepo_c").arg("--quiet").arg(repo));
    }
    (old, new)
}

/// Builds the Debian repository root under `build`; returns its path.
fn build_deb_repo(build: &Path) -> PathBuf {
    let pkg = build.join("deb-pkg");
    std::fs::create_dir_all(pkg.join("DEBIAN")).expect("DEBIAN dir");
    std::fs::create_dir_all(pkg.join("usr/share/doc/hello-mirror")).expect("doc dir");
    std::fs::write(
        pkg.join("DEBIAN/control"),
        "Package: hello-mirror\nVersion: 1.0\nArchitecture: all\n\
         Maintainer: Mirrorlist Tests <tests@example.org>\n\
         Description: test package served through the mirrorlist\n",
    )
    .expect("control");
    std::fs::write(pkg.join("usr/share/doc/hello-mirror/README"), "hello\n").expect("README");
    let root = build.join("debian");
    let pool = root.join("pool/main");
    std::fs::create_dir_all(&pool).expect("pool");
    run(Command::new("dpkg-deb")
        .args(["-Zgzip", "--root-owner-group", "--build"])
        .arg(&pkg)
        .arg(pool.join("hello-mirror_1.0_all.deb")));
    let binary = root.join("dists/stable/main/binary-amd64");
    std::fs::create_dir_all(&binary).expect("dists");
    let packages = run(Command::new("apt-ftparchive")
        .args(["packages", "pool"])
        .current_dir(&root));
    std::fs::write(binary.join("Packages"), packages).expect("Packages");
    let release = run(Command::new("apt-ftparchive")
        .args([
            "-o",
            "APT::FTPArchive::Release::Suite=stable",
            "-o",
            "APT::FTPArchive::Release::Codename=stable",
            "-o",
            "APT::FTPArchive::Release::Architectures=amd64",
            "-o",
            "APT::FTPArchive::Release::Components=main",
            "release",
            "dists/stable",
        ])
        .current_dir(&root));
    // Written after generating, or the Release would list itself.
    std::fs::write(root.join("dists/stable/Release"), release).expect("Release");
    root
}

impl World {
    /// Builds the repositories, starts the mirrors, builds the cache and
    /// starts the server and the front end.
    pub fn start(needs: Needs) -> World {
        match needs {
            Needs::Rpm => require(&RPM_TOOLS),
            Needs::Deb => require(&DEB_TOOLS),
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let build = d.join("build");
        std::fs::create_dir_all(&build).expect("build dir");

        // (master, fresh-a, fresh-b, stale) trees.
        let trees = ["master", "fresh-a", "fresh-b", "stale"].map(|n| d.join(n).join("pub"));
        let mut repositories = String::new();
        let mut alt_new = None;
        match needs {
            Needs::Rpm => {
                let (old, new) = build_rpm_repos(&build);
                for (i, tree) in trees.iter().enumerate() {
                    // The master starts with the old alt; it gets the new
                    // one after the first cache build.
                    let alt = if i == 0 || i == 3 { &old } else { &new };
                    let noalt = if i == 3 { &old } else { &new };
                    copy_tree(alt, &tree.join("el/alt"));
                    copy_tree(noalt, &tree.join("el/noalt"));
                }
                alt_new = Some(new);
                repositories.push_str(
                    "[[repositories]]\nname = \"test-alt\"\narch = \"x86_64\"\ndirectory = \"pub/el/alt\"\n\n\
                     [[repositories]]\nname = \"test-noalt\"\narch = \"x86_64\"\ndirectory = \"pub/el/noalt\"\n\n",
                );
            }
            Needs::Deb => {
                let deb = build_deb_repo(&build);
                for tree in &trees {
                    copy_tree(&deb, &tree.join("debian"));
                }
                repositories.push_str(
                    "[[repositories]]\nname = \"debian-test\"\narch = \"amd64\"\ndirectory = \"pub/debian\"\n\n",
                );
            }
        }

        let mirrors = vec![
            Mirror::start("fresh-a", "127.0.0.2", &d.join("fresh-a")),
            Mirror::start("fresh-b", "127.0.0.3", &d.join("fresh-b")),
            Mirror::start("stale", "127.0.0.4", &d.join("stale")),
        ];
        // See the module documentation: FRESH_FIRST is in 192.0.2.0/24,
        // STALE_FIRST in 198.51.100.0/24; the longer prefix comes first.
        let netblocks = [
            r#""192.0.2.0/25", "198.51.100.0/24""#,
            r#""192.0.2.0/24""#,
            r#""198.51.100.0/25""#,
        ];
        let mut toml = format!(
            "master_tree = \"master\"\n\n[[categories]]\nname = \"Test\"\ntopdir = \"pub\"\n\n{repositories}"
        );
        for (m, nb) in mirrors.iter().zip(&netblocks) {
            let _ = write!(
                toml,
                "[[hosts]]\nname = \"{}\"\ncountry = \"DE\"\nnetblocks = [{}]\n\
                 categories = [{{ category = \"Test\", urls = [\"{}/pub\"] }}]\n\n",
                m.name,
                nb,
                m.url()
            );
        }
        std::fs::write(d.join("mirrors.toml"), &toml).expect("writing the description");

        let cache = d.join("cache.bin");
        build_cache(d, &cache);
        if let Some(new) = alt_new {
            // The master moves on: the old alt becomes an alternate.
            let alt = trees[0].join("el/alt");
            std::fs::remove_dir_all(&alt).expect("removing the old alt");
            copy_tree(&new, &alt);
            build_cache(d, &cache);
        }

        let mut cmd = Command::new(bin("mirrorlist-server"));
        cmd.arg("--cache")
            .arg(&cache)
            .arg("--socket")
            .arg(d.join("mirrorlist.sock"))
            .arg("--access-log")
            .arg(d.join("access.log"));
        let mut server = Proc::spawn(cmd);
        server.wait_for("ready");
        let (client, addr) = start_front_end(&d.join("mirrorlist.sock"), &[]);
        World {
            dir,
            mirrors,
            server,
            client,
            addr,
        }
    }

    /// The temporary directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh directory for one client case (named after it, with
    /// anything but letters and digits replaced: dnf splits paths at `,`).
    pub fn case_dir(&self, client: &str, case: &str) -> PathBuf {
        let slug: String = case
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dir = self.path().join("cases").join(format!("{client}-{slug}"));
        std::fs::create_dir_all(&dir).expect("case dir");
        dir
    }

    /// `http://ADDR/PATH_AND_QUERY` on the front end.
    pub fn url(&self, target: &str) -> String {
        format!("http://{}{target}", self.addr)
    }

    /// A GET on the front end.
    pub fn get(&self, target: &str) -> HttpResponse {
        http(&self.addr, "GET", target, &[])
    }

    /// A mirror by name.
    pub fn mirror(&self, name: &str) -> &Mirror {
        self.mirrors
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no mirror {name}"))
    }

    /// The mirror whose URL starts `url`, if any.
    pub fn mirror_of(&self, url: &str) -> Option<&Mirror> {
        self.mirrors
            .iter()
            .find(|m| url.starts_with(&format!("{}/", m.url())))
    }

    /// Every mirror's requests, for failure messages.
    pub fn describe(&self) -> String {
        self.mirrors.iter().map(Mirror::describe).collect()
    }

    /// Stops the server with SIGTERM (which flushes the access log) and
    /// returns the access log.
    pub fn stop_server_and_read_access_log(&mut self) -> String {
        self.server.signal(Signal::SIGTERM);
        let status = self.server.wait_exit();
        assert!(
            status.success(),
            "server exit {status}:\n{}",
            self.server.log()
        );
        std::fs::read_to_string(self.path().join("access.log")).expect("reading the access log")
    }
}

fn build_cache(dir: &Path, cache: &Path) {
    run(Command::new(bin("cache-builder"))
        .arg("build")
        .arg("--config")
        .arg(dir.join("mirrors.toml"))
        .arg("--output")
        .arg(cache));
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
