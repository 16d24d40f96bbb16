//! Running dnf 4 in isolation: its own configuration file, installroot,
//! repository directory, cache, persist and log directories, all inside
//! the case's directory, no plugins, short timeouts. What it did is read
//! back from its exit status, its output and its logs (`dnf.librepo.log`
//! names every URL it downloaded and librepo's checksum complaints).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::world::{tail, World};

/// The repository id used in every `.repo` file.
pub const REPO_ID: &str = "t";

/// One dnf case: a directory with a configuration and a `.repo` file.
#[derive(Debug)]
pub struct Dnf {
    /// The case's name, for messages.
    pub case: String,
    /// The case's directory.
    pub dir: PathBuf,
    /// The installroot.
    pub root: PathBuf,
    /// The metalink or mirrorlist URL of the repository.
    pub url: String,
    /// `metalink` or `mirrorlist`.
    kind: String,
}

/// What one dnf run did.
#[derive(Debug)]
pub struct DnfRun {
    /// The command line's arguments after the common ones.
    pub args: Vec<String>,
    /// Whether it exited 0.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// `dnf.librepo.log` (cumulative for the case).
    pub librepo_log: String,
    /// `dnf.log` (cumulative for the case).
    pub dnf_log: String,
}

impl Dnf {
    /// Prepares a case whose repository is reached through `kind`
    /// (`metalink` or `mirrorlist`) at `target` on the front end, with
    /// `countme=0`.
    pub fn new(world: &World, case: &str, kind: &str, target: &str) -> Dnf {
        let dir = world.case_dir("dnf", case);
        let root = dir.join("root");
        for sub in ["repos", "root", "log", "cache", "persist"] {
            std::fs::create_dir_all(dir.join(sub)).expect("dnf case dirs");
        }
        std::fs::write(
            dir.join("dnf.conf"),
            "[main]\ngpgcheck=0\nrepo_gpgcheck=0\nskip_if_unavailable=False\nplugins=0\n\
             install_weak_deps=False\ntimeout=10\nretries=1\nkeepcache=0\n",
        )
        .expect("dnf.conf");
        let dnf = Dnf {
            case: case.to_owned(),
            dir,
            root,
            url: world.url(target),
            kind: kind.to_owned(),
        };
        dnf.write_repo(false);
        dnf
    }

    /// (Re)writes the `.repo` file; `countme` as given. Without it, a
    /// fresh countme cookie would add `countme=N` to a random one of the
    /// first four requests, which the other cases do not want.
    pub fn write_repo(&self, countme: bool) {
        std::fs::write(
            self.dir.join("repos/test.repo"),
            format!(
                "[{REPO_ID}]\nname=mirrorlist test ({})\n{}={}\nenabled=1\n\
                 gpgcheck=0\ncountme={}\n",
                self.case,
                self.kind,
                self.url,
                u8::from(countme)
            ),
        )
        .expect("test.repo");
    }

    /// Runs `dnf -y <common options> ARGS`.
    pub fn run(&self, args: &[&str]) -> DnfRun {
        let d = &self.dir;
        let mut cmd = Command::new("dnf");
        cmd.arg("-y")
            .arg("--noplugins")
            .arg("-c")
            .arg(d.join("dnf.conf"))
            .arg("--installroot")
            .arg(&self.root)
            .arg("--releasever")
            .arg("1")
            .arg(format!("--setopt=reposdir={}", d.join("repos").display()))
            .arg(format!("--setopt=cachedir={}", d.join("cache").display()))
            .arg(format!(
                "--setopt=persistdir={}",
                d.join("persist").display()
            ))
            .arg(format!("--setopt=logdir={}", d.join("log").display()))
            .args(args)
            .env("LC_ALL", "C.UTF-8");
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("dnf, case {}: starting dnf: {e}", self.case));
        DnfRun {
            args: args.iter().map(|s| s.to_string()).collect(),
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            librepo_log: self.log("dnf.librepo.log"),
            dnf_log: self.log("dnf.log"),
        }
    }

    /// A log file of dnf: with `--installroot`, dnf writes its logs to the
    /// logdir *inside* the installroot (hawkey.log goes to the logdir
    /// itself); both places are read.
    fn log(&self, name: &str) -> String {
        let logdir = self.dir.join("log");
        let inside = self
            .root
            .join(logdir.strip_prefix("/").expect("absolute logdir"));
        [inside.join(name), logdir.join(name)]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect()
    }

    /// The countme cookie of the repository: libdnf keeps it in
    /// `<persistdir>/repos/<id>-<first 8 bytes of sha256(metalink URL)>/countme`.
    pub fn countme_cookie(&self) -> PathBuf {
        let hash = hex::encode(&Sha256::digest(self.url.as_bytes())[..8]);
        self.dir
            .join("persist/repos")
            .join(format!("{REPO_ID}-{hash}"))
            .join("countme")
    }

    /// A file inside the installroot.
    pub fn installed(&self, path: &str) -> PathBuf {
        self.root
            .join(Path::new(path).strip_prefix("/").expect("absolute"))
    }
}

impl DnfRun {
    /// Everything needed to understand a failure: the command, dnf's
    /// output and the tails of its logs, and what the mirrors served.
    pub fn context(&self, world: &World) -> String {
        format!(
            "dnf {}\n--- stdout:\n{}\n--- stderr:\n{}\n--- dnf.librepo.log (tail):\n{}\n\
             --- dnf.log (tail):\n{}\n--- mirrors:\n{}",
            self.args.join(" "),
            tail(&self.stdout, 30),
            tail(&self.stderr, 30),
            tail(&self.librepo_log, 30),
            tail(&self.dnf_log, 30),
            world.describe()
        )
    }

    /// Panics unless dnf succeeded.
    pub fn expect_ok(&self, world: &World, case: &str) -> &DnfRun {
        assert!(
            self.ok,
            "dnf, case {case:?}: dnf failed: {}\n{}",
            self.stderr.trim(),
            self.context(world)
        );
        self
    }

    /// The URLs librepo downloaded, in order (`Downloading: URL` lines).
    pub fn downloads(&self) -> Vec<&str> {
        self.librepo_log
            .lines()
            .filter_map(|l| l.split_once("Downloading: ").map(|(_, u)| u.trim()))
            .collect()
    }

    /// The URLs of `repomd.xml` librepo downloaded, in order.
    pub fn repomd_downloads(&self) -> Vec<&str> {
        self.downloads()
            .into_iter()
            .filter(|u| u.ends_with("/repodata/repomd.xml"))
            .collect()
    }

    /// librepo's checksum complaints.
    pub fn checksum_mismatches(&self) -> Vec<&str> {
        self.librepo_log
            .lines()
            .filter(|l| l.contains("checksum doesn't match"))
            .collect()
    }
}
