//! Small hand-built caches for server tests. `generation` goes into every
//! mirror URL (`https://de1.g<generation>.example/…`) and the build time, so
//! a test can tell which cache answered.

use mirrorlist_core::model::*;

/// The repository every fixture carries.
pub const REPO: &str = "fedora-42";
/// Its architecture.
pub const ARCH: &str = "x86_64";
/// Its directory.
pub const DIR: &str = "fedora/linux/releases/42/Everything/x86_64/os";

/// A cache with hosts in DE, FR, US, JP and BR carrying one repository.
pub fn cache(generation: u64) -> Cache {
    let hosts = [
        ("de1", "DE"),
        ("de2", "DE"),
        ("fr1", "FR"),
        ("us1", "US"),
        ("jp1", "JP"),
        ("br1", "BR"),
    ];
    let mut c = Cache {
        built_at: 1_700_000_000 + generation,
        source: format!("test fixture generation {generation}"),
        categories: vec![Category {
            name: "Fedora Linux".into(),
            topdir: "fedora/linux".into(),
        }],
        ..Cache::default()
    };
    let mut global = Vec::new();
    let mut by_country = Vec::new();
    let mut by_host = Vec::new();
    for (i, (name, cc)) in hosts.iter().enumerate() {
        let country = Country::parse(cc).expect("fixture country");
        c.hosts.push(Host {
            id: i as u32 + 1,
            name: format!("{name}.example"),
            site: String::new(),
            country,
            bandwidth: 100,
            private: false,
            allowed_countries: vec![],
            netblocks: vec![],
            asns: vec![],
            asn_clients: false,
            families: Families::Unknown,
        });
        c.host_urls.push(HostUrl {
            host: i as u32,
            url: format!("https://{name}.g{generation}.example/fedora/linux"),
            protocol: Protocol::Https,
        });
        global.push(i as u32);
        by_host.push((i as u32, vec![i as u32]));
        by_country.push((country, vec![i as u32]));
    }
    let hosts = c.push_host_set(HostSet::new(global, by_country, by_host));
    c.directories.push(Directory {
        path: DIR.into(),
        subpath: "releases/42/Everything/x86_64/os".into(),
        hosts,
        ordered: true,
    });
    c.repos.push(Repo {
        name: REPO.into(),
        arch: ARCH.into(),
        directory: 0,
    });
    c.file_details.push(DirectoryFiles {
        directory: format!("{DIR}/repodata"),
        files: vec![FileEntry {
            name: "repomd.xml".into(),
            versions: vec![FileDetails {
                timestamp: 1_700_000_000,
                size: 3_000 + generation,
                md5: "0".repeat(32),
                sha1: "1".repeat(40),
                sha256: format!("{:064x}", generation),
                sha512: "5".repeat(128),
            }],
        }],
    });
    for (cc, cont) in [
        ("DE", "EU"),
        ("FR", "EU"),
        ("AT", "EU"),
        ("US", "NA"),
        ("JP", "AS"),
        ("BR", "SA"),
    ] {
        c.country_continent
            .push((Country::parse(cc).expect("cc"), cont.into()));
    }
    c.normalize();
    c
}
