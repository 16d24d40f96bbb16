//! The example description in the README is a valid description.

use super::*;

#[test]
fn readme_example_builds() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let example = &readme[start..start + readme[start..].find("```").unwrap()];
    let f = Fixture::new(example);
    let c = f.build_ok(1_700_000_000);
    assert_eq!(c.hosts.len(), 3);
    assert_eq!(c.repos.len(), 4);
    assert_eq!(c.disabled_repos, ["fedora-40"]);
    assert_eq!(c.hosts[2].site, "Example University");
}
