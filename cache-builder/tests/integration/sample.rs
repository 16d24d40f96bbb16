//! The bundled sample description builds, and is as big as promised.

use super::*;

#[test]
fn sample_builds_and_inspect_reports_it() {
    let sample = repo_root().join("data/sample/mirrors.toml");
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("sample.cache");
    let out = run(&[
        "build",
        "--config",
        sample.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert_success(&out);

    let out = run(&["inspect", output.to_str().unwrap()]);
    assert_success(&out);
    let text = stdout(&out);
    let count = |label: &str| -> usize {
        let line = text
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} line in:\n{text}"));
        line[label.len()..].trim().parse().unwrap()
    };
    assert!(count("hosts:") >= 300, "{text}");
    assert!(count("countries:") >= 50, "{text}");
    assert_eq!(count("categories:"), 2);
    // Every enabled repository has its repomd.xml details.
    assert_eq!(count("file details:"), 7);
    for repo in [
        "fedora-41 x86_64",
        "fedora-41 aarch64",
        "fedora-42 x86_64",
        "fedora-42 aarch64",
        "fedora-rawhide x86_64",
        "epel-9 x86_64",
        "epel-9 aarch64",
        "fedora-40 x86_64",
    ] {
        assert!(
            text.lines().any(|l| l.trim() == repo),
            "{repo} missing from:\n{text}"
        );
    }
    assert!(text.contains("rawhide -> fedora-rawhide"), "{text}");
    assert!(text.contains("disabled:       fedora-40"), "{text}");

    // The sample exercises what the schema can express.
    let cache = cachefile::load(&output).unwrap();
    assert!(cache.hosts.iter().filter(|h| h.private).count() >= 3);
    assert!(cache.hosts.iter().any(|h| !h.allowed_countries.is_empty()));
    assert!(cache
        .hosts
        .iter()
        .any(|h| h.netblocks.iter().any(|n| matches!(n, ipnet::IpNet::V6(_)))));
    assert!(cache.hosts.iter().any(|h| !h.site.is_empty()));
    let (_, rawhide) = cache
        .directory("fedora/linux/development/rawhide/Everything/x86_64/os")
        .unwrap();
    let (_, f42) = cache
        .directory("fedora/linux/releases/42/Everything/x86_64/os")
        .unwrap();
    let (_, f41) = cache
        .directory("fedora/linux/releases/41/Everything/x86_64/os")
        .unwrap();
    let (_, epel) = cache.directory("epel/9/Everything/x86_64").unwrap();
    // Some hosts exclude development/, some include only releases/42, some
    // carry only EPEL.
    let n = |d| cache.hosts_of(d).host_count();
    assert!(n(rawhide) < n(f41));
    assert!(n(f41) < n(f42));
    assert!(n(epel) < cache.hosts.len());
    assert!(n(f42) < cache.hosts.len());
}
