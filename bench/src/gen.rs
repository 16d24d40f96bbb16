//! The benchmark data, generated deterministically (fixed seeds, no clock):
//!
//! - `mirrors.toml`: a mirror description shaped like Fedora's network:
//!   600 hosts in 70 countries on six continents (many in the US and
//!   Germany, a long tail with one or two), three categories, host
//!   netblocks (IPv4 and IPv6), 40 ASNs, private and country-restricted
//!   hosts, hosts carrying only part of a category (`include`/`exclude`);
//! - 10,312 repository name+arch entries, each its own directory (40
//!   releases × 16 variants × 4 kinds × 4 arches, plus EPEL), with
//!   `repodata/repomd.xml` in the master tree `tree/` (its content depends
//!   on `revision`, so a second build yields alternates);
//! - `global_netblocks.txt`: a `prefix ASN` table of 100,000 prefixes
//!   covering the hosts' ASNs;
//! - `repos.txt`: the current releases' repositories (`name<TAB>arch`),
//!   the pairs the load rotates over.
//!
//! `--smoke` makes the same shape tiny. `--lagging P` makes every host
//! (but those with an `include` list) skip each repository directory of
//! its categories with probability P%, as `exclude` entries: the shape of
//! a cache fed by a crawler, where hosts lag behind on different
//! directories and nearly every directory has its own set of hosts.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Countries with their mirror count.
const COUNTRIES: &[(&str, u32)] = &[
    ("US", 110),
    ("DE", 60),
    ("FR", 22),
    ("GB", 20),
    ("NL", 18),
    ("CN", 18),
    ("JP", 16),
    ("CA", 14),
    ("SE", 12),
    ("CZ", 12),
    ("IT", 11),
    ("BR", 11),
    ("AU", 10),
    ("CH", 10),
    ("RU", 10),
    ("PL", 9),
    ("AT", 9),
    ("ES", 9),
    ("IN", 9),
    ("KR", 8),
    ("TW", 8),
    ("FI", 7),
    ("DK", 7),
    ("NO", 6),
    ("BE", 6),
    ("SG", 6),
    ("ZA", 6),
    ("GR", 5),
    ("PT", 5),
    ("HU", 5),
    ("RO", 5),
    ("UA", 5),
    ("BG", 4),
    ("IE", 4),
    ("SK", 4),
    ("HK", 4),
    ("ID", 4),
    ("TH", 4),
    ("NZ", 4),
    ("MX", 4),
    ("AR", 4),
    ("CL", 4),
    ("IL", 3),
    ("TR", 3),
    ("VN", 3),
    ("MY", 3),
    ("KZ", 3),
    ("LT", 3),
    ("LV", 3),
    ("EE", 3),
    ("SI", 3),
    ("HR", 3),
    ("RS", 3),
    ("CO", 3),
    ("EC", 2),
    ("KE", 2),
    ("EG", 2),
    ("MA", 2),
    ("NG", 2),
    ("IS", 2),
    ("LU", 2),
    ("MD", 2),
    ("BY", 2),
    ("AM", 2),
    ("GE", 2),
    ("PH", 2),
    ("PK", 2),
    ("BD", 2),
    ("CR", 2),
    ("UY", 2),
];

const VARIANTS: &[&str] = &[
    "Everything",
    "Server",
    "Workstation",
    "Cloud",
    "Container",
    "Silverblue",
    "Kinoite",
    "IoT",
    "CoreOS",
    "Spins",
    "Labs",
    "Modular",
    "KDE",
    "Xfce",
    "Sericea",
    "Onyx",
];
const ARCHES: &[&str] = &["x86_64", "aarch64", "ppc64le", "s390x"];
/// Releases from this one on live in `fedora/linux`, older ones in the
/// archive (carried by fewer hosts).
const CURRENT: u32 = 38;
/// Hosts with their own netblocks: host `i` gets `100.(64+i/4).(i%4*64).0/18`.
const NETBLOCK_HOSTS: u32 = 160;
/// Hosts `ASN_HOSTS.0..ASN_HOSTS.1` take the clients of ASN `64500 + i % 40`,
/// whose prefixes are `198.18.(4k).0/22`.
const ASN_HOSTS: (u32, u32) = (200, 280);

struct Repo {
    name: String,
    arch: &'static str,
    dir: String,
    current: bool,
}

fn repositories(smoke: bool) -> Vec<Repo> {
    let (versions, variants) = if smoke {
        (41..=42, &VARIANTS[..2])
    } else {
        (3..=42, VARIANTS)
    };
    let mut out = Vec::new();
    for v in versions {
        let current = v >= CURRENT;
        let top = if current {
            "fedora/linux"
        } else {
            "archive/fedora/linux"
        };
        for &variant in variants {
            let suffix = if variant == "Everything" {
                String::new()
            } else {
                format!("-{}", variant.to_lowercase())
            };
            for &arch in ARCHES {
                let kinds = [
                    (
                        format!("fedora{suffix}-{v}"),
                        format!("{top}/releases/{v}/{variant}/{arch}/os"),
                    ),
                    (
                        format!("fedora{suffix}-debug-{v}"),
                        format!("{top}/releases/{v}/{variant}/{arch}/debug/tree"),
                    ),
                    (
                        format!("updates-released{suffix}-f{v}"),
                        format!("{top}/updates/{v}/{variant}/{arch}"),
                    ),
                    (
                        format!("updates-testing{suffix}-f{v}"),
                        format!("{top}/updates/testing/{v}/{variant}/{arch}"),
                    ),
                ];
                for (name, dir) in kinds {
                    out.push(Repo {
                        name,
                        arch,
                        dir,
                        current,
                    });
                }
            }
        }
    }
    let epel = if smoke { 9..=9 } else { 5..=10 };
    for v in epel {
        for &arch in ARCHES {
            for (name, dir) in [
                (format!("epel-{v}"), format!("epel/{v}/Everything/{arch}")),
                (
                    format!("epel-testing-{v}"),
                    format!("epel/testing/{v}/Everything/{arch}"),
                ),
                (
                    format!("epel-debug-{v}"),
                    format!("epel/{v}/Everything/{arch}/debug"),
                ),
            ] {
                out.push(Repo {
                    name,
                    arch,
                    dir,
                    current: true,
                });
            }
        }
    }
    out
}

fn repomd(rng: &mut SmallRng, dir: &str, revision: u32) -> String {
    let mut s = String::with_capacity(2048);
    let _ = writeln!(s, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(s, "<repomd xmlns=\"http://linux.duke.edu/metadata/repo\">");
    let _ = writeln!(s, "  <revision>{}</revision>", 1_700_000_000 + revision);
    for kind in ["primary", "filelists", "other", "group", "updateinfo"] {
        let sum: String = (0..64)
            .map(|_| char::from(b"0123456789abcdef"[rng.random_range(0..16)]))
            .collect();
        let _ = writeln!(
            s,
            "  <data type=\"{kind}\"><checksum type=\"sha256\">{sum}</checksum>\
             <location href=\"{dir}/repodata/{sum}-{kind}.xml.zst\"/></data>"
        );
    }
    s.push_str("</repomd>\n");
    s
}

fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Writes the description, the tree, the ASN table and `repos.txt`.
pub fn generate(out: &Path, smoke: bool, revision: u32, lagging: u32) -> anyhow::Result<()> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let repos = repositories(smoke);
    // Repository directories relative to each category's topdir, for
    // `--lagging`.
    let under = |topdir: &str| -> Vec<String> {
        repos
            .iter()
            .filter_map(|r| r.dir.strip_prefix(topdir)?.strip_prefix('/'))
            .map(str::to_owned)
            .collect()
    };
    let (fedora_dirs, archive_dirs, epel_dirs) = (
        under("fedora/linux"),
        under("archive/fedora/linux"),
        under("epel"),
    );
    let mut rng = SmallRng::seed_from_u64(2026);

    let mut t = String::with_capacity(4 << 20);
    t.push_str("# Generated by `mlbench gen` (bench/src/gen.rs); deterministic.\n");
    t.push_str("master_tree = \"tree\"\nmax_alternates = 4\nmax_alternate_age_days = 30\n");
    t.push_str("continent_overrides = { TR = \"EU\" }\n");
    t.push_str("netblock_countries = { \"198.51.100.0/24\" = \"AT\" }\n");
    t.push_str("repository_redirects = { rawhide = \"fedora-42\" }\n\n");
    for (name, topdir) in [
        ("Fedora Linux", "fedora/linux"),
        ("Fedora Archive", "archive/fedora/linux"),
        ("EPEL", "epel"),
    ] {
        let _ = writeln!(t, "[[categories]]\nname = {name:?}\ntopdir = {topdir:?}\n");
    }
    for r in &repos {
        let _ = writeln!(
            t,
            "[[repositories]]\nname = {:?}\narch = {:?}\ndirectory = {:?}\n",
            r.name, r.arch, r.dir
        );
    }

    let mut i: u32 = 0;
    for &(country, count) in COUNTRIES
        .iter()
        .take(if smoke { 8 } else { COUNTRIES.len() })
    {
        let count = if smoke { count.min(3) } else { count };
        for _ in 0..count {
            let name = format!("mirror{i}.{}.example.org", country.to_lowercase());
            let _ = writeln!(t, "[[hosts]]\nname = {name:?}\ncountry = {country:?}");
            let _ = writeln!(t, "bandwidth = {}", rng.random_range(10..10_000));
            if i % 30 == 29 {
                t.push_str("private = true\n");
            }
            if i % 45 == 44 {
                let _ = writeln!(t, "allowed_countries = [{country:?}]");
            }
            let mut nets = Vec::new();
            if i < NETBLOCK_HOSTS {
                nets.push(format!("100.{}.{}.0/18", 64 + i / 4, (i % 4) * 64));
                if i.is_multiple_of(4) {
                    nets.push(format!("2001:db8:{i:x}::/48"));
                }
            }
            if !nets.is_empty() {
                let _ = writeln!(t, "netblocks = {}", toml_list(&nets));
            }
            if (ASN_HOSTS.0..ASN_HOSTS.1).contains(&i) {
                let _ = writeln!(t, "asns = [{}]", 64_500 + i % 40);
            }
            let families = match rng.random_range(0..10) {
                0..=1 => "ipv4",
                2..=5 => "both",
                _ => "unknown",
            };
            let _ = writeln!(t, "families = {families:?}");
            let https = rng.random_bool(0.9);
            let http = !https || rng.random_bool(0.6);
            let rsync = rng.random_bool(0.4);
            let ftp = rng.random_bool(0.05);
            let urls = |path: &str| {
                let mut u = Vec::new();
                if https {
                    u.push(format!("https://{name}/pub/{path}"));
                }
                if http {
                    u.push(format!("http://{name}/pub/{path}"));
                }
                if ftp {
                    u.push(format!("ftp://{name}/pub/{path}"));
                }
                if rsync {
                    u.push(format!("rsync://{name}/{path}"));
                }
                toml_list(&u)
            };
            // Directories this host lags behind on (none by default; its
            // own seed, so the rest of the data does not change).
            let mut lag_rng = SmallRng::seed_from_u64(99_000 + u64::from(i));
            let mut lag = |dirs: &[String], mut exclude: Vec<String>| {
                if lagging > 0 {
                    let p = f64::from(lagging.min(100)) / 100.0;
                    exclude.extend(dirs.iter().filter(|_| lag_rng.random_bool(p)).cloned());
                }
                if exclude.is_empty() {
                    String::new()
                } else {
                    format!(", exclude = {}", toml_list(&exclude))
                }
            };
            // What the host carries: most carry all of Fedora Linux, some
            // only the newest release, some skip updates-testing.
            let _ = write!(
                t,
                "categories = [\n  {{ category = \"Fedora Linux\", urls = {}",
                urls("fedora/linux")
            );
            match rng.random_range(0..10) {
                0 => t.push_str(", include = [\"releases/42\", \"updates/42\"]"),
                1 => t.push_str(&lag(&fedora_dirs, vec!["updates/testing".into()])),
                _ => t.push_str(&lag(&fedora_dirs, Vec::new())),
            }
            t.push_str(" },\n");
            if rng.random_bool(0.25) {
                let _ = writeln!(
                    t,
                    "  {{ category = \"Fedora Archive\", urls = {}{} }},",
                    urls("archive/fedora/linux"),
                    lag(&archive_dirs, Vec::new())
                );
            }
            if rng.random_bool(0.6) {
                let _ = writeln!(
                    t,
                    "  {{ category = \"EPEL\", urls = {}{} }},",
                    urls("epel"),
                    lag(&epel_dirs, Vec::new())
                );
            }
            t.push_str("]\n\n");
            i += 1;
        }
    }
    fs::write(out.join("mirrors.toml"), &t)?;

    // The master tree: one repomd.xml per repository directory.
    let mut rng = SmallRng::seed_from_u64(7 + u64::from(revision));
    for r in &repos {
        let dir = out.join("tree").join(&r.dir).join("repodata");
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::write(dir.join("repomd.xml"), repomd(&mut rng, &r.dir, revision))?;
    }

    // The ASN table: the hosts' ASNs, then random other prefixes.
    let mut f = std::io::BufWriter::new(fs::File::create(out.join("global_netblocks.txt"))?);
    for k in 0..40u32 {
        writeln!(f, "198.18.{}.0/22 {}", k * 4, 64_500 + k)?;
    }
    let mut rng = SmallRng::seed_from_u64(99);
    let prefixes = if smoke { 1_000 } else { 100_000 };
    let mut seen = std::collections::HashSet::new();
    while seen.len() < prefixes {
        let a: u32 = rng.random_range(1..224);
        if matches!(a, 10 | 100 | 127 | 198) {
            continue;
        }
        let net = (a << 24) | (rng.random_range(0..1u32 << 16) << 8);
        if seen.insert(net) {
            let ip = std::net::Ipv4Addr::from(net);
            writeln!(f, "{ip}/24 {}", rng.random_range(1..400_000u32))?;
        }
    }
    f.flush()?;

    let mut list = String::new();
    for r in repos.iter().filter(|r| r.current) {
        let _ = writeln!(list, "{}\t{}", r.name, r.arch);
    }
    fs::write(out.join("repos.txt"), list)?;
    println!(
        "generated repositories={} current={} hosts={i} countries={} revision={revision} lagging={lagging}%",
        repos.len(),
        repos.iter().filter(|r| r.current).count(),
        if smoke { 8 } else { COUNTRIES.len() },
    );
    Ok(())
}

/// A client address: mostly random public IPv4 (the GeoIP database sorts
/// them into countries), some IPv6, some inside hosts' netblocks or the
/// hosts' ASN prefixes (so every selection tier is exercised).
fn client_ip(rng: &mut SmallRng) -> String {
    match rng.random_range(0..20) {
        0 => format!(
            "100.{}.{}.{}",
            64 + rng.random_range(0..NETBLOCK_HOSTS / 4),
            rng.random_range(0..=255),
            rng.random_range(1..255)
        ),
        1 => format!(
            "198.18.{}.{}",
            rng.random_range(0..160),
            rng.random_range(1..255)
        ),
        2 | 3 => format!(
            "2a0{}:{:x}:{:x}::1",
            rng.random_range(0..10),
            rng.random_range(0..0xffff),
            rng.random_range(0..0xffff)
        ),
        _ => loop {
            let a: u8 = rng.random_range(1..224);
            if matches!(a, 10 | 100 | 127) {
                continue;
            }
            break format!(
                "{a}.{}.{}.{}",
                rng.random_range(0..=255),
                rng.random_range(0..=255),
                rng.random_range(1..255)
            );
        },
    }
}

/// Writes `count` request paths for `endpoint`, one a line.
pub fn paths(repos: &Path, endpoint: &str, count: usize, out: &Path) -> anyhow::Result<()> {
    let text = fs::read_to_string(repos).with_context(|| format!("reading {}", repos.display()))?;
    let pairs: Vec<(&str, &str)> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?, f.next()?))
        })
        .collect();
    anyhow::ensure!(!pairs.is_empty(), "no repositories in {}", repos.display());
    let mut rng = SmallRng::seed_from_u64(42);
    let mut s = String::new();
    for _ in 0..count {
        let (repo, arch) = pairs[rng.random_range(0..pairs.len())];
        let ip = client_ip(&mut rng);
        let _ = writeln!(s, "/{endpoint}?repo={repo}&arch={arch}&ip={ip}");
    }
    fs::write(out, s)?;
    Ok(())
}
