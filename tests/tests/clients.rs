//! Real clients against the whole stack, on loopback only: dnf 4, librepo
//! (through Debian's Python) and apt's `mirror+http` method fetch real
//! repositories from three local mirrors (two fresh, one stale) through
//! `mirrorlist-client` → `mirrorlist-server`, on a cache `cache-builder`
//! built from a mirror description.
//!
//! Run on its own with `cargo test -p mirrorlist-tests --test clients`.
//! Needs (and fails, naming them, without): `dnf`, `rpmbuild` (rpm),
//! `createrepo_c`, `python3-librepo`, `dpkg-deb`, `apt-ftparchive`
//! (apt-utils), and root (dnf installs into an installroot; libdnf sends
//! `countme` only as root). `.ci/run` installs them.
//!
//! # Layout
//!
//! - [`clients::world`]: repositories, mirror tree, description, cache,
//!   server and front end, and the two client addresses that force an
//!   order (fresh mirror first, stale mirror first);
//! - [`clients::mirror`]: the static HTTP server of one mirror, which
//!   records what it served;
//! - [`clients::dnf`], [`clients::librepo`], [`clients::apt`]: running
//!   each client in isolation and reading back what it did;
//! - this file: the cases.
//!
//! No case sleeps: processes are awaited by their log lines, mirrors are
//! bound before they are used, the access log is read after SIGTERM
//! flushed it.

mod clients {
    pub mod apt;
    pub mod dnf;
    pub mod librepo;
    pub mod mirror;
    pub mod world;
}

use clients::apt::Apt;
use clients::dnf::{Dnf, DnfRun};
use clients::world::{require_root, Needs, World, FRESH_FIRST, STALE_FIRST};
use sha2::{Digest, Sha256};

const NEW_PACKAGE: &str = "beta-1.0-1.noarch.rpm";

fn metalink(repo: &str, ip: &str) -> String {
    format!("/metalink?repo={repo}&arch=x86_64&ip={ip}")
}

fn mirrorlist(repo: &str, ip: &str) -> String {
    format!("/mirrorlist?repo={repo}&arch=x86_64&ip={ip}")
}

/// The mirror a URL belongs to, by name.
fn mirror_name<'a>(world: &'a World, url: &str) -> &'a str {
    world.mirror_of(url).map_or("(not a mirror)", |m| m.name)
}

/// Checks that `repomd.xml` came first (and only) from `mirror`.
fn assert_repomd_from(world: &World, run: &DnfRun, case: &str, mirror: &str) {
    let repomds = run.repomd_downloads();
    let names: Vec<&str> = repomds.iter().map(|u| mirror_name(world, u)).collect();
    assert!(
        names == [mirror],
        "dnf, case {case:?}: repomd.xml was downloaded from {names:?}, expected only {mirror}\n{}",
        run.context(world)
    );
}

/// makecache, then install the package only the new repository has:
/// everything comes from the first (fresh) mirror.
fn install_from_fresh_mirror(kind: &str, target: &str, case: &str) {
    require_root();
    let world = World::start(Needs::Rpm);
    let dnf = Dnf::new(&world, case, kind, target);
    let run = dnf.run(&["makecache"]);
    run.expect_ok(&world, case);
    assert!(
        run.downloads().first() == Some(&dnf.url.as_str()),
        "dnf, case {case:?}: the first download is not our {kind}\n{}",
        run.context(&world)
    );
    assert_repomd_from(&world, &run, case, "fresh-a");

    let run = dnf.run(&["install", "beta"]);
    run.expect_ok(&world, case);
    assert!(
        world.mirror("fresh-a").answered(NEW_PACKAGE, 200),
        "dnf, case {case:?}: {NEW_PACKAGE} did not come from fresh-a\n{}",
        run.context(&world)
    );
    assert!(
        world.mirror("stale").hits().is_empty(),
        "dnf, case {case:?}: the stale mirror (listed last) was used\n{}",
        run.context(&world)
    );
    let file = dnf.installed("/usr/share/beta/hello");
    assert!(
        file.is_file(),
        "dnf, case {case:?}: {} not installed\n{}",
        file.display(),
        run.context(&world)
    );
}

#[test]
fn dnf_metalink_installs_from_a_fresh_mirror() {
    install_from_fresh_mirror(
        "metalink",
        &metalink("test-noalt", FRESH_FIRST),
        "metalink, fresh mirror first",
    );
}

#[test]
fn dnf_mirrorlist_installs_from_a_fresh_mirror() {
    install_from_fresh_mirror(
        "mirrorlist",
        &mirrorlist("test-noalt", FRESH_FIRST),
        "mirrorlist, fresh mirror first",
    );
}

#[test]
fn dnf_accepts_a_stale_mirror_whose_repomd_is_an_alternate() {
    require_root();
    let case = "stale mirror first, its repomd.xml an alternate";
    let world = World::start(Needs::Rpm);
    let target = metalink("test-alt", STALE_FIRST);
    let body = world.get(&target).text();
    assert!(
        body.contains("<mm0:alternate>"),
        "dnf, case {case:?}: the metalink has no alternate:\n{body}"
    );
    let dnf = Dnf::new(&world, "alternates", "metalink", &target);
    let run = dnf.run(&["makecache"]);
    run.expect_ok(&world, case);
    assert_repomd_from(&world, &run, case, "stale");
    assert!(
        run.checksum_mismatches().is_empty(),
        "dnf, case {case:?}: librepo rejected a repomd.xml\n{}",
        run.context(&world)
    );
    // dnf uses the stale mirror's (old) metadata: alpha only.
    let run = dnf.run(&["repoquery", "--available", "--qf", "%{name}"]);
    run.expect_ok(&world, case);
    let names: Vec<&str> = run.stdout.lines().map(str::trim).collect();
    assert!(
        names.contains(&"alpha") && !names.contains(&"beta"),
        "dnf, case {case:?}: expected the old repository (alpha only), got {names:?}\n{}",
        run.context(&world)
    );
}

#[test]
fn dnf_rejects_a_stale_mirror_without_alternate_and_takes_the_next() {
    require_root();
    let case = "stale mirror first, no alternate";
    let world = World::start(Needs::Rpm);
    let dnf = Dnf::new(
        &world,
        "no-alternates",
        "metalink",
        &metalink("test-noalt", STALE_FIRST),
    );
    let run = dnf.run(&["makecache"]);
    run.expect_ok(&world, case);
    let repomds: Vec<&str> = run
        .repomd_downloads()
        .iter()
        .map(|u| mirror_name(&world, u))
        .collect();
    assert!(
        repomds == ["stale", "fresh-a"],
        "dnf, case {case:?}: repomd.xml downloads {repomds:?}, expected stale (rejected) \
         then fresh-a (next in the metalink)\n{}",
        run.context(&world)
    );
    let mismatches = run.checksum_mismatches();
    assert!(
        mismatches.len() == 1,
        "dnf, case {case:?}: expected one checksum complaint (the stale repomd.xml), \
         got {mismatches:?}\n{}",
        run.context(&world)
    );

    let run = dnf.run(&["install", "beta"]);
    run.expect_ok(&world, case);
    let served: Vec<&str> = world
        .mirrors
        .iter()
        .filter(|m| m.answered(NEW_PACKAGE, 200))
        .map(|m| m.name)
        .collect();
    assert!(
        served == ["fresh-a"],
        "dnf, case {case:?}: {NEW_PACKAGE} served by {served:?}, expected fresh-a\n{}",
        run.context(&world)
    );
    assert!(dnf.installed("/usr/share/beta/hello").is_file());
}

#[test]
fn dnf_fails_on_an_unknown_repository_with_the_servers_error() {
    require_root();
    let world = World::start(Needs::Rpm);
    for kind in ["metalink", "mirrorlist"] {
        let case = format!("unknown repository through {kind}=");
        let target = format!("/{kind}?repo=no-such-repo&arch=x86_64");
        // What our server answers…
        let answer = world.get(&target);
        assert!(
            answer.status == 404 && answer.text().contains("error: invalid repo or arch"),
            "{case}: the server answered {}: {}",
            answer.status,
            answer.text()
        );
        // …is what dnf reports (it does not show the body).
        let dnf = Dnf::new(&world, &case, kind, &target);
        let run = dnf.run(&["makecache"]);
        let expected = format!("Status code: 404 for {}", dnf.url);
        let failed = format!(
            "Failed to download metadata for repo '{}'",
            clients::dnf::REPO_ID
        );
        assert!(
            !run.ok && run.stderr.contains(&expected) && run.stderr.contains(&failed),
            "dnf, case {case:?}: expected a failure with {expected:?}\n{}",
            run.context(&world)
        );
        assert!(
            world.mirrors.iter().all(|m| m.hits().is_empty()),
            "dnf, case {case:?}: a mirror was contacted\n{}",
            run.context(&world)
        );
    }
}

#[test]
fn dnf_countme_reaches_the_access_log() {
    require_root();
    let case = "countme";
    let mut world = World::start(Needs::Rpm);
    let dnf = Dnf::new(
        &world,
        "countme",
        "metalink",
        &metalink("test-noalt", FRESH_FIRST),
    );
    // libdnf's cookie: "VERSION EPOCH WINDOW BUDGET". Window 0 is long
    // past, so this run is in a new window; a budget of 1 is spent by this
    // request, which then carries the flag; epoch 1 (first counted at the
    // dawn of time) puts the system in the oldest age bucket, 4.
    dnf.write_repo(true);
    let cookie = dnf.countme_cookie();
    std::fs::create_dir_all(cookie.parent().expect("cookie dir")).expect("cookie dir");
    std::fs::write(&cookie, "0 1 0 1").expect("countme cookie");
    let run = dnf.run(&["makecache"]);
    run.expect_ok(&world, case);
    let flagged = format!("{}&countme=4", dnf.url);
    assert!(
        run.downloads().contains(&flagged.as_str()),
        "dnf, case {case:?}: no request with countme=4 (cookie now {:?})\n{}",
        std::fs::read_to_string(&cookie).unwrap_or_default(),
        run.context(&world)
    );
    let log = world.stop_server_and_read_access_log();
    let line = format!("IP: {FRESH_FIRST}; ");
    assert!(
        log.lines()
            .any(|l| l.starts_with(&line)
                && l.ends_with("REPO: test-noalt; ARCH: x86_64; COUNTME: 4")),
        "dnf, case {case:?}: countme not in the access log:\n{log}\n{}",
        run.context(&world)
    );
}

#[test]
fn librepo_uses_the_first_mirror_of_the_metalink() {
    clients::librepo::require();
    let world = World::start(Needs::Rpm);
    let master = std::fs::read(world.path().join("master/pub/el/noalt/repodata/repomd.xml"))
        .expect("master repomd.xml");
    for (case, ip, first, used) in [
        ("fresh mirror first", FRESH_FIRST, "fresh-a", "fresh-a"),
        (
            "stale mirror first, no alternate",
            STALE_FIRST,
            "stale",
            "fresh-a",
        ),
    ] {
        let url = world.url(&metalink("test-noalt", ip));
        let dest = world.case_dir("librepo", case);
        let r = clients::librepo::fetch_repomd(case, &url, &dest);
        let order: Vec<&str> = r.mirrors.iter().map(|m| mirror_name(&world, m)).collect();
        let ctx = format!(
            "librepo {}, case {case:?}: mirrors {order:?}, used {}\n{}",
            r.version,
            r.used,
            world.describe()
        );
        // librepo's mirror order is the metalink's.
        let listed: Vec<String> = world
            .get(&metalink("test-noalt", ip))
            .text()
            .lines()
            .filter_map(|l| l.split_once("\">").map(|(_, rest)| rest))
            .filter_map(|l| l.strip_suffix("repodata/repomd.xml</url>"))
            .map(str::to_owned)
            .collect();
        assert_eq!(order.first(), Some(&first), "{ctx}");
        assert_eq!(r.mirrors.first(), listed.first(), "{ctx}");
        assert_eq!(mirror_name(&world, &r.used), used, "{ctx}");
        assert!(
            world
                .mirror(used)
                .answered("/pub/el/noalt/repodata/repomd.xml", 200),
            "{ctx}"
        );
        assert_eq!(
            hex::encode(Sha256::digest(&r.repomd)),
            hex::encode(Sha256::digest(&master)),
            "the verified repomd.xml is the master's; {ctx}"
        );
    }
}

#[test]
fn apt_mirror_method_updates_and_downloads_through_the_mirrorlist() {
    let case = "mirror+http update and download";
    let world = World::start(Needs::Deb);
    let target = "/mirrorlist?repo=debian-test&arch=amd64&ip=192.0.2.1";
    let apt = Apt::new(&world, "mirror-method", target);
    let run = apt.run(&["update"]);
    run.expect_ok(&world, case);
    assert!(
        run.stdout.contains("Mirrorlist"),
        "apt, case {case:?}: the mirror list was not fetched\n{}",
        run.context(&world)
    );
    // apt tries the listed mirrors in random order (no `priority`
    // metadata in the list), so any of them may serve.
    let release: Vec<&str> = world
        .mirrors
        .iter()
        .filter(|m| m.answered("/pub/debian/dists/stable/Release", 200))
        .map(|m| m.name)
        .collect();
    assert!(
        !release.is_empty(),
        "apt, case {case:?}: no mirror served dists/stable/Release\n{}",
        run.context(&world)
    );

    let run = apt.run(&["download", "hello-mirror"]);
    run.expect_ok(&world, case);
    let deb = "pool/main/hello-mirror_1.0_all.deb";
    let served = world
        .mirrors
        .iter()
        .any(|m| m.answered(&format!("/pub/debian/{deb}"), 200));
    assert!(
        served,
        "apt, case {case:?}: no mirror served {deb}\n{}",
        run.context(&world)
    );
    let got = std::fs::read(apt.dir.join("download/hello-mirror_1.0_all.deb"))
        .unwrap_or_else(|e| panic!("apt, case {case:?}: {e}\n{}", run.context(&world)));
    let want = std::fs::read(world.path().join("master/pub/debian").join(deb)).expect("master deb");
    assert!(got == want, "apt, case {case:?}: downloaded .deb differs");
}

#[test]
fn apt_follows_our_order_with_priority_metadata() {
    let case = "mirror+http with priority=1";
    let world = World::start(Needs::Deb);
    // 192.0.2.1 lists fresh-a, fresh-b, stale; `priority=1` tags the lines
    // with apt's `priority:N`, so apt must not pick at random.
    let target = "/mirrorlist?repo=debian-test&arch=amd64&ip=192.0.2.1&priority=1";
    let list = world.get(target);
    assert!(
        list.text().contains("\tpriority:1\n"),
        "apt, case {case:?}: list without priorities: {}",
        list.text()
    );
    let apt = Apt::new(&world, "mirror-priority", target);
    apt.run(&["update"]).expect_ok(&world, case);
    let run = apt.run(&["download", "hello-mirror"]);
    run.expect_ok(&world, case);
    for m in &world.mirrors {
        let served = m.answered("/pub/debian/dists/stable/Release", 200)
            || m.answered("/pub/debian/pool/main/hello-mirror_1.0_all.deb", 200);
        assert_eq!(
            served,
            m.name == "fresh-a",
            "apt, case {case:?}: {} served {}; only the first listed mirror should\n{}",
            m.name,
            if served { "files" } else { "nothing" },
            run.context(&world)
        );
    }
}
