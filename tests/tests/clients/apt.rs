//! Running apt with its `mirror+http://` method in isolation: every
//! `Dir::` setting points into the case's directory, so the machine's apt
//! state, sources and keys are neither read nor touched.

use std::path::PathBuf;
use std::process::Command;

use super::world::{tail, World};

/// One apt case: its directories and sources line.
#[derive(Debug)]
pub struct Apt {
    /// The case's name, for messages.
    pub case: String,
    /// The case's directory.
    pub dir: PathBuf,
}

/// What one apt run did.
#[derive(Debug)]
pub struct AptRun {
    /// The apt-get arguments after the common ones.
    pub args: Vec<String>,
    /// Whether it exited 0.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Apt {
    /// Prepares a case whose only source is
    /// `deb [trusted=yes] mirror+http://FRONT_END{target} stable main`.
    pub fn new(world: &World, case: &str, target: &str) -> Apt {
        let dir = world.case_dir("apt", case);
        for sub in [
            "state/lists/partial",
            "cache/archives/partial",
            "etc/sources.list.d",
            "etc/apt.conf.d",
            "etc/preferences.d",
            "etc/trusted.gpg.d",
            "log",
            "download",
        ] {
            std::fs::create_dir_all(dir.join(sub)).expect("apt case dirs");
        }
        std::fs::write(dir.join("state/status"), "").expect("dpkg status");
        std::fs::write(
            dir.join("etc/sources.list"),
            format!(
                "deb [trusted=yes] mirror+{} stable main\n",
                world.url(target)
            ),
        )
        .expect("sources.list");
        Apt {
            case: case.to_owned(),
            dir,
        }
    }

    /// Runs `apt-get <isolating options> ARGS` in the case's `download`
    /// directory (where `apt-get download` puts files).
    pub fn run(&self, args: &[&str]) -> AptRun {
        let d = &self.dir;
        let p = |sub: &str| d.join(sub).display().to_string();
        let opts = [
            format!("Dir::State={}", p("state")),
            format!("Dir::State::status={}", p("state/status")),
            format!("Dir::Cache={}", p("cache")),
            format!("Dir::Etc={}", p("etc")),
            format!("Dir::Etc::sourcelist={}", p("etc/sources.list")),
            format!("Dir::Etc::sourceparts={}", p("etc/sources.list.d")),
            format!("Dir::Etc::parts={}", p("etc/apt.conf.d")),
            format!("Dir::Etc::preferencesparts={}", p("etc/preferences.d")),
            format!("Dir::Etc::trustedparts={}", p("etc/trusted.gpg.d")),
            format!("Dir::Log={}", p("log")),
            "APT::Architecture=amd64".to_owned(),
            "APT::Architectures=amd64".to_owned(),
            "Acquire::Languages=none".to_owned(),
            "Acquire::http::Timeout=10".to_owned(),
            "Acquire::Retries=0".to_owned(),
            // The case directory belongs to root; no _apt sandbox warning.
            "APT::Sandbox::User=root".to_owned(),
        ];
        let mut cmd = Command::new("apt-get");
        for o in &opts {
            cmd.arg("-o").arg(o);
        }
        cmd.args(args)
            .current_dir(d.join("download"))
            .env("LC_ALL", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env_remove("APT_CONFIG");
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("apt, case {}: starting apt-get: {e}", self.case));
        AptRun {
            args: args.iter().map(|s| s.to_string()).collect(),
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl AptRun {
    /// The command, apt's output and what the mirrors served.
    pub fn context(&self, world: &World) -> String {
        format!(
            "apt-get {}\n--- stdout:\n{}\n--- stderr:\n{}\n--- mirrors:\n{}",
            self.args.join(" "),
            tail(&self.stdout, 30),
            tail(&self.stderr, 30),
            world.describe()
        )
    }

    /// Panics unless apt succeeded (and printed no error or warning).
    pub fn expect_ok(&self, world: &World, case: &str) -> &AptRun {
        let complaint = self
            .stderr
            .lines()
            .chain(self.stdout.lines())
            .find(|l| l.starts_with("E:") || l.starts_with("W:") || l.starts_with("Err:"));
        assert!(
            self.ok && complaint.is_none(),
            "apt, case {case:?}: {}\n{}",
            complaint.unwrap_or(self.stderr.trim()),
            self.context(world)
        );
        self
    }
}
