//! Running librepo through Debian's Python (`python3-librepo`) with the
//! script `tests/clients/librepo_repomd.py`: it downloads `repomd.xml`
//! through a metalink, verified against the metalink's hashes, and prints
//! which mirror it used.

use std::process::Command;

use mirrorlist_tests::workspace_root;

/// The Python whose `librepo` module the Debian package installs.
pub const PYTHON: &str = "/usr/bin/python3";

/// What the script reported.
#[derive(Debug)]
pub struct LibrepoRun {
    /// librepo's version.
    pub version: String,
    /// The mirror (base URL) the repository was downloaded from.
    pub used: String,
    /// The mirrors librepo took from the metalink, in its order.
    pub mirrors: Vec<String>,
    /// The downloaded `repomd.xml`.
    pub repomd: Vec<u8>,
}

/// Fails (never skips) when librepo's Python module is missing.
pub fn require() {
    let ok = Command::new(PYTHON)
        .args(["-c", "import librepo"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the librepo test needs `{PYTHON}` with the `librepo` module; run `.ci/run` \
         (it installs it) or `apt-get install --no-install-recommends python3-librepo`"
    );
}

/// Downloads `repomd.xml` through `metalink_url` into `dest`.
pub fn fetch_repomd(case: &str, metalink_url: &str, dest: &std::path::Path) -> LibrepoRun {
    let script = workspace_root().join("tests/clients/librepo_repomd.py");
    let out = Command::new(PYTHON)
        .arg(&script)
        .arg(metalink_url)
        .arg(dest)
        .output()
        .unwrap_or_else(|e| panic!("librepo, case {case:?}: starting {PYTHON}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "librepo, case {case:?}: {}\n--- stdout:\n{stdout}",
        stderr.trim()
    );
    let field = |key: &str| -> Vec<String> {
        stdout
            .lines()
            .filter_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .map(str::to_owned)
            .collect()
    };
    let one = |key: &str| {
        field(key)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("librepo, case {case:?}: no {key}= in\n{stdout}"))
    };
    let repomd_path = one("repomd");
    LibrepoRun {
        version: one("version"),
        used: one("used"),
        mirrors: field("mirror"),
        repomd: std::fs::read(&repomd_path).unwrap_or_else(|e| {
            panic!("librepo, case {case:?}: reading {repomd_path}: {e}\n{stdout}")
        }),
    }
}
