//! What the description becomes in the cache model.

use mirrorlist_core::model::{Country, Families, Protocol};

use super::*;

fn cache() -> Cache {
    let f = Fixture::new(&format!(
        "repository_redirects = {{ rawhide = \"fedora-rawhide\", rh = \"rawhide\" }}\n\
         continent_overrides = {{ TR = \"EU\" }}\n\
         netblock_countries = {{ \"203.0.113.0/24\" = \"DE\" }}\n{BASE}"
    ));
    f.build_ok(1_700_000_000)
}

fn host(c: &Cache, name: &str) -> u32 {
    c.hosts.iter().position(|h| h.name == name).unwrap() as u32
}

#[test]
fn hosts_get_ids_in_file_order_and_their_settings() {
    let c = cache();
    let names: Vec<(u32, &str, &str)> = c
        .hosts
        .iter()
        .map(|h| (h.id, h.name.as_str(), h.site.as_str()))
        .collect();
    // The site's host sits between the two plain hosts in the file.
    assert_eq!(
        names,
        [
            (1, "m1.example.org", ""),
            (2, "m2.example.edu", "Example University"),
            (3, "private.example.net", "")
        ]
    );
    let m2 = &c.hosts[1];
    assert_eq!(m2.families, Families::Ipv4);
    assert_eq!(m2.bandwidth, 100, "default bandwidth");
    let p = &c.hosts[2];
    assert!(p.private);
    assert_eq!(p.asns, [64500]);
    assert!(p.asn_clients);
    assert_eq!(p.netblocks.len(), 2);
    assert_eq!(p.country, Country::parse("FR").unwrap());
}

#[test]
fn directories_group_their_hosts_for_selection() {
    let c = cache();
    let (m1, m2, private) = (
        host(&c, "m1.example.org"),
        host(&c, "m2.example.edu"),
        host(&c, "private.example.net"),
    );
    let (_, f42) = c
        .directory("fedora/linux/releases/42/Everything/x86_64/os")
        .unwrap();
    assert_eq!(f42.subpath, "releases/42/Everything/x86_64/os");
    assert!(f42.ordered);
    let f42 = c.hosts_of(f42);
    assert_eq!(f42.global(), [m1, m2]);
    let de = Country::parse("DE").unwrap();
    let us = Country::parse("US").unwrap();
    assert_eq!(f42.by_country(), [(de, vec![m1]), (us, vec![m2])]);
    // m1 has two Fedora URLs (https and rsync).
    let m1_urls: Vec<(&str, Protocol)> = f42
        .urls(0)
        .iter()
        .map(|&u| {
            let u = &c.host_urls[u as usize];
            assert_eq!(u.host, m1);
            (u.url.as_str(), u.protocol)
        })
        .collect();
    assert_eq!(
        m1_urls,
        [
            ("https://m1.example.org/fedora/linux", Protocol::Https),
            ("rsync://m1.example.org/fedora/linux", Protocol::Rsync)
        ]
    );

    // m2 excludes development/: not on rawhide.
    let (_, rawhide) = c
        .directory("fedora/linux/development/rawhide/Everything/x86_64/os")
        .unwrap();
    assert_eq!(c.hosts_of(rawhide).global(), [m1]);

    // The private host carries EPEL: in by_host, not in global/by_country.
    let (_, epel) = c.directory("epel/9/Everything/x86_64").unwrap();
    assert_eq!(epel.subpath, "9/Everything/x86_64");
    let epel = c.hosts_of(epel);
    assert_eq!(epel.global(), [m1]);
    assert_eq!(epel.by_country(), [(de, vec![m1])]);
    let carriers: Vec<u32> = epel.by_host().map(|(h, _)| h).collect();
    assert_eq!(carriers, [m1, private]);
}

#[test]
fn repositories_redirects_and_tables() {
    let c = cache();
    let r = c.repo("fedora-42", "x86_64").unwrap();
    assert_eq!(
        c.directories[r.directory as usize].path,
        "fedora/linux/releases/42/Everything/x86_64/os"
    );
    // Chains are resolved to their final target.
    let redirects: Vec<(&str, &str)> = c
        .repo_redirects
        .iter()
        .map(|r| (r.from.as_str(), r.to.as_str()))
        .collect();
    assert_eq!(
        redirects,
        [("rawhide", "fedora-rawhide"), ("rh", "fedora-rawhide")]
    );
    let tr = Country::parse("TR").unwrap();
    assert_eq!(c.continent_of(tr), Some("EU"));
    assert_eq!(c.continent_of(Country::parse("JP").unwrap()), Some("AS"));
    assert_eq!(c.netblock_countries.len(), 1);
    assert_eq!(c.categories[0].topdir, "fedora/linux");
    assert!(c.source.ends_with("mirrors.toml"));
    assert_eq!(c.file_details.len(), 3);
    assert!(c
        .file("epel/9/Everything/x86_64/repodata", "repomd.xml")
        .is_some());
}

#[test]
fn disabled_repository_needs_no_directory_and_a_missing_repomd_is_fine() {
    let text = format!(
        "{BASE}\n[[repositories]]\nname = \"fedora-40\"\narch = \"x86_64\"\n\
         directory = \"fedora/linux/releases/40/Everything/x86_64/os\"\ndisabled = true\n"
    );
    let f = Fixture::new(&text);
    std::fs::remove_file(
        f.path("tree")
            .join(BASE_DIRS[2])
            .join("repodata/repomd.xml"),
    )
    .unwrap();
    let c = f.build_ok(1);
    assert_eq!(c.disabled_repos, ["fedora-40"]);
    assert!(c.repo("fedora-40", "x86_64").is_some());
    assert_eq!(c.file_details.len(), 2, "no details for epel or fedora-40");
}
