//! The whole stack on the bundled sample data: `cache-builder` builds the
//! cache from `data/sample/mirrors.toml`, `mirrorlist-server` serves it with
//! the bundled GeoIP database, `mirrorlist-client` answers real HTTP on
//! loopback. Clients in Germany, Brazil, Japan and the US (and a German IPv6
//! client) ask through `ip=` and through a trusted `X-Forwarded-For`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use mirrorlist_tests::{bin, http, start_front_end, workspace_root, HttpResponse, Proc};
use nix::sys::signal::Signal;
use sha2::{Digest, Sha256, Sha512};

const CLIENTS: [(&str, &str); 5] = [
    ("85.214.0.1", "DE"),
    ("200.160.2.3", "BR"),
    ("133.11.0.1", "JP"),
    ("8.8.8.8", "US"),
    ("2a01:4f8::1", "DE"),
];

/// Sample repositories and their directories in the sample master tree.
const REPOS: [(&str, &str, &str); 7] = [
    (
        "fedora-41",
        "x86_64",
        "fedora/linux/releases/41/Everything/x86_64/os",
    ),
    (
        "fedora-41",
        "aarch64",
        "fedora/linux/releases/41/Everything/aarch64/os",
    ),
    (
        "fedora-42",
        "x86_64",
        "fedora/linux/releases/42/Everything/x86_64/os",
    ),
    (
        "fedora-42",
        "aarch64",
        "fedora/linux/releases/42/Everything/aarch64/os",
    ),
    (
        "fedora-rawhide",
        "x86_64",
        "fedora/linux/development/rawhide/Everything/x86_64/os",
    ),
    ("epel-9", "x86_64", "epel/9/Everything/x86_64"),
    ("epel-9", "aarch64", "epel/9/Everything/aarch64"),
];

struct Stack {
    dir: tempfile::TempDir,
    server: Proc,
    client: Proc,
    addr: String,
}

fn build_sample_cache(out: &Path) {
    let status = Command::new(bin("cache-builder"))
        .arg("build")
        .arg("--config")
        .arg(workspace_root().join("data/sample/mirrors.toml"))
        .arg("--output")
        .arg(out)
        .status()
        .expect("running cache-builder");
    assert!(status.success(), "cache-builder failed");
}

fn server_command(dir: &Path) -> Command {
    let data = workspace_root().join("data");
    let mut cmd = Command::new(bin("mirrorlist-server"));
    cmd.arg("--cache")
        .arg(dir.join("cache.bin"))
        .arg("--socket")
        .arg(dir.join("mirrorlist.sock"))
        .arg("--geoip")
        .arg(data.join("geo-whois-asn-country.mmdb"))
        .arg("--asn-netblocks")
        .arg(data.join("sample/global_netblocks.txt"));
    cmd
}

impl Stack {
    fn start(client_flags: &[&str]) -> Stack {
        Stack::start_with(&[], client_flags)
    }

    fn start_with(server_flags: &[&str], client_flags: &[&str]) -> Stack {
        let dir = tempfile::tempdir().expect("tempdir");
        build_sample_cache(&dir.path().join("cache.bin"));
        let mut cmd = server_command(dir.path());
        cmd.args(server_flags);
        let mut server = Proc::spawn(cmd);
        server.wait_for("ready");
        let (client, addr) = start_front_end(&dir.path().join("mirrorlist.sock"), client_flags);
        Stack {
            dir,
            server,
            client,
            addr,
        }
    }

    fn get(&self, target: &str) -> HttpResponse {
        http(&self.addr, "GET", target, &[])
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("mirrorlist.sock")
    }
}

fn tree_file(dir: &str) -> Vec<u8> {
    std::fs::read(
        workspace_root()
            .join("data/sample/tree")
            .join(dir)
            .join("repodata/repomd.xml"),
    )
    .expect("sample repomd.xml")
}

/// Checks a plain list answer for a client of country `cc`.
fn check_list(r: &HttpResponse, repo: &str, arch: &str, cc: &str) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = r.text();
    let mut lines = text.lines();
    let header = lines.next().expect("header line");
    assert!(
        header.starts_with(&format!("# repo = {repo} arch = {arch} ")),
        "{header}"
    );
    assert!(
        header.contains(&format!("country = {cc} ")),
        "{cc}: {header}"
    );
    let urls: Vec<&str> = lines.filter(|l| !l.starts_with('#')).collect();
    assert!(urls.len() >= 5, "at least `minimum` mirrors: {text}");
    for u in &urls {
        assert!(
            u.starts_with("https://") || u.starts_with("http://") || u.starts_with("ftp://"),
            "{u}"
        );
    }
}

fn check_metalink(r: &HttpResponse, dir: &str) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/metalink+xml"));
    let text = r.text();
    let file = tree_file(dir);
    let sha256 = hex::encode(Sha256::digest(&file));
    let sha512 = hex::encode(Sha512::digest(&file));
    assert!(
        text.contains(&format!("<hash type=\"sha256\">{sha256}</hash>")),
        "sha256 of {dir}: {text}"
    );
    assert!(text.contains(&format!("<hash type=\"sha512\">{sha512}</hash>")));
    assert!(text.contains(&format!("<size>{}</size>", file.len())));
    assert!(text.contains("/repodata/repomd.xml</url>"), "{text}");
    assert!(text.contains("preference=\"100\""), "best mirror first");
}

#[test]
fn countries_through_ip_parameter() {
    let stack = Stack::start(&[]);
    for (ip, cc) in CLIENTS {
        let ipq = ip.replace(':', "%3A");
        let r = stack.get(&format!("/mirrorlist?repo=fedora-42&arch=x86_64&ip={ipq}"));
        check_list(&r, "fedora-42", "x86_64", cc);
        let r = stack.get(&format!("/metalink?repo=fedora-42&arch=x86_64&ip={ipq}"));
        check_metalink(&r, REPOS[2].2);
        let loc = format!("location=\"{cc}\"");
        assert!(r.text().contains(&loc), "{cc} mirror listed in metalink");
    }
}

#[test]
fn countries_through_trusted_forwarded_for() {
    let stack = Stack::start(&["--trusted-proxy", "127.0.0.0/8"]);
    for (ip, cc) in CLIENTS {
        // The right-most address that is not a trusted proxy is the client.
        let xff = format!("203.0.113.9, {ip}, 127.0.0.5");
        let r = http(
            &stack.addr,
            "GET",
            "/mirrorlist?repo=fedora-42&arch=x86_64",
            &[("X-Forwarded-For", &xff)],
        );
        check_list(&r, "fedora-42", "x86_64", cc);
        let r = http(
            &stack.addr,
            "GET",
            "/metalink?repo=fedora-42&arch=x86_64",
            &[("X-Forwarded-For", ip)],
        );
        check_metalink(&r, REPOS[2].2);
    }
}

#[test]
fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let stack = Stack::start(&["--trusted-proxy", "192.0.2.0/24"]);
    let r = http(
        &stack.addr,
        "GET",
        "/mirrorlist?repo=fedora-42&arch=x86_64",
        &[("X-Forwarded-For", "85.214.0.1")],
    );
    assert_eq!(r.status, 200);
    let header = r.text().lines().next().unwrap().to_owned();
    assert!(!header.contains("country = DE"), "{header}");
}

/// Whether a process maps a shared region of reply bodies.
fn maps_shared_region(proc: &Proc) -> bool {
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", proc.pid())).expect("maps");
    maps.contains("memfd:mirrorlist-bodies")
}

#[test]
fn every_metalink_hash_equals_the_master_tree() {
    let stack = Stack::start(&[]);
    // The bodies below travel in the shared region (both sides map it; the
    // front end attaches before it listens).
    assert!(stack.client.log().contains("shared region attached"));
    assert!(maps_shared_region(&stack.client));
    assert!(maps_shared_region(&stack.server));
    for (repo, arch, dir) in REPOS {
        let r = stack.get(&format!("/metalink?repo={repo}&arch={arch}&ip=85.214.0.1"));
        check_metalink(&r, dir);
        let r = stack.get(&format!(
            "/mirrorlist?repo={repo}&arch={arch}&ip=85.214.0.1"
        ));
        check_list(&r, repo, arch, "DE");
    }
}

/// The names of a process's threads, sorted.
fn thread_names(proc: &Proc) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", proc.pid()))
        .expect("task dir")
        .map(|t| {
            let path = t.expect("task").path().join("comm");
            std::fs::read_to_string(path)
                .expect("comm")
                .trim()
                .to_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn workers_each_connect_serve_and_stop_together() {
    let mut stack = Stack::start(&["--workers", "3", "--upstream-connections", "1"]);
    // Each worker has a connection of its own to the server, with a region.
    wait_attached(&mut stack, 3);
    // Only now are the names sure: a new thread names itself once it runs,
    // and each worker attaches its region from its own thread.
    let workers: Vec<String> = thread_names(&stack.client)
        .into_iter()
        .filter(|n| n.starts_with("worker-"))
        .collect();
    assert_eq!(workers, ["worker-0", "worker-1", "worker-2"]);
    assert_eq!(stack.client.log().matches("listening on").count(), 1);
    // Concurrent clients on one port, whichever worker takes them.
    concurrent_lists(&stack, 6, 10);
    // SIGTERM stops every worker, each after its own graceful shutdown.
    stack.client.signal(Signal::SIGTERM);
    assert!(stack.client.wait_exit().success(), "{}", stack.client.log());
    let log = stack.client.log();
    assert_eq!(log.matches("all connections closed").count(), 3, "{log}");
}

/// Waits until `n` of the front end's connections have their shared
/// region (worker 0 announces the port once its own pool is up; the
/// others may still be attaching).
fn wait_attached(stack: &mut Stack, n: usize) {
    let mut attached = stack.client.log().matches("shared region attached").count();
    while attached < n {
        stack.client.wait_for("shared region attached");
        attached += 1;
    }
}

/// `clients` threads each asking for `each` lists at once, every answer
/// checked.
fn concurrent_lists(stack: &Stack, clients: usize, each: usize) {
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let addr = stack.addr.clone();
            std::thread::spawn(move || {
                (0..each)
                    .map(|_| {
                        http(
                            &addr,
                            "GET",
                            "/mirrorlist?repo=fedora-42&arch=x86_64&ip=85.214.0.1",
                            &[],
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        for r in t.join().expect("client thread") {
            check_list(&r, "fedora-42", "x86_64", "DE");
        }
    }
}

#[test]
fn one_place_in_flight_is_passed_between_the_workers() {
    // Every request but one at a time waits in its worker's queue, and
    // each place freed goes on to the next, on whichever worker it waits:
    // none is left to time out in a queue (which would be a 503).
    let mut stack = Stack::start(&["--workers", "3", "--max-inflight", "1"]);
    // Logged by worker 0 right after the port.
    let limits = stack.client.wait_for("forwarding to the mirrorlist server");
    assert!(limits.contains("max_inflight=1"), "{limits}");
    wait_attached(&mut stack, 3);
    concurrent_lists(&stack, 9, 20);
}

#[test]
fn without_shared_memory_bodies_come_over_the_socket() {
    let stack = Stack::start_with(&["--shm-size", "0"], &[]);
    let log = stack.client.log();
    assert!(log.contains("declined a shared region"), "{log}");
    assert!(log.contains("--shm-size 0"), "{log}");
    assert!(!maps_shared_region(&stack.client));
    for (repo, arch, dir) in REPOS {
        let r = stack.get(&format!("/metalink?repo={repo}&arch={arch}&ip=85.214.0.1"));
        check_metalink(&r, dir);
    }
}

#[test]
fn redirects_errors_and_methods() {
    let stack = Stack::start(&[]);
    let r = stack.get("/mirrorlist?repo=fedora-42&arch=x86_64&ip=85.214.0.1&redirect=1");
    assert_eq!(r.status, 302);
    let location = r.header("location").expect("Location");
    assert!(
        location.starts_with("http")
            && location
                .trim_end_matches('/')
                .ends_with("releases/42/Everything/x86_64/os"),
        "{location}"
    );

    let r = stack.get("/mirrorlist?repo=no-such-repo&arch=x86_64");
    assert_eq!(r.status, 404);
    assert!(
        r.text().contains("error: invalid repo or arch"),
        "{}",
        r.text()
    );
    assert!(
        r.text().contains("fedora-42"),
        "lists the available repositories"
    );

    let r = stack.get("/mirrorlist?arch=x86_64");
    assert_eq!(r.status, 400);
    assert!(r
        .text()
        .contains("# either path=, or repo= and arch= must be specified"));

    // GET: the length of the body, not chunked; HEAD: the same length (the
    // same hosts, in another order), no body.
    let content_length = |r: &HttpResponse| -> usize {
        r.header("content-length")
            .expect("Content-Length")
            .parse()
            .unwrap()
    };
    let r = stack.get("/mirrorlist?repo=fedora-42&arch=x86_64");
    assert_eq!(r.status, 200);
    let len = content_length(&r);
    assert_eq!(len, r.body.len());
    assert!(r.header("transfer-encoding").is_none());
    let r = http(
        &stack.addr,
        "HEAD",
        "/mirrorlist?repo=fedora-42&arch=x86_64",
        &[],
    );
    assert_eq!(r.status, 200);
    assert_eq!(content_length(&r), len);
    assert!(r.body.is_empty(), "HEAD has no body");

    let r = http(
        &stack.addr,
        "POST",
        "/mirrorlist?repo=fedora-42&arch=x86_64",
        &[],
    );
    assert_eq!(r.status, 405);

    let long = format!(
        "/mirrorlist?repo=fedora-42&arch=x86_64&pad={}",
        "x".repeat(9000)
    );
    assert_eq!(stack.get(&long).status, 414);

    let r = stack.get("/mirrorlist?repo=fedora%zz42&arch=x86_64");
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("repo"),
        "names the parameter: {}",
        r.text()
    );

    assert_eq!(stack.get("/no/such/route").status, 404);

    let r = stack.get("/mirrorlist?repo=fedora-42&arch=x86_64&ip=not-an-address");
    assert_eq!(r.status, 400);
}

#[test]
fn health_reports_the_cache() {
    let mut stack = Stack::start(&[]);
    let r = stack.get("/health");
    assert_eq!(r.status, 200, "{}", r.text());
    let header = std::fs::read(stack.dir.path().join("cache.bin")).unwrap();
    let built_at = mirrorlist_core::cachefile::read_header(&header)
        .unwrap()
        .built_at;
    assert!(
        r.text().contains(&format!("built_at={built_at}")),
        "{}",
        r.text()
    );
    // Without a server, health is honest.
    stack.server.signal(Signal::SIGTERM);
    assert!(stack.server.wait_exit().success());
    assert_eq!(stack.get("/health").status, 503);
    let _ = &stack.client;
}

#[test]
fn ask_prints_what_http_returns() {
    let stack = Stack::start(&[]);
    let ask = |target: &str| {
        let out = Command::new(bin("mirrorlist-client"))
            .arg("ask")
            .arg("--socket")
            .arg(stack.socket())
            .arg("--ip")
            .arg("85.214.0.1")
            .arg(target)
            .output()
            .expect("running ask");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    // Deterministic answer: the same bytes.
    let target = "/mirrorlist?repo=no-such-repo&arch=x86_64";
    let body = stack.get(target).text();
    let printed = ask(target);
    assert!(printed.contains("404"), "{printed}");
    assert!(printed.ends_with(&body), "ask:\n{printed}\nhttp:\n{body}");

    // A shuffled answer: the same header and the same set of mirrors.
    let target = "/mirrorlist?repo=fedora-42&arch=x86_64";
    let http_body = stack.get(&format!("{target}&ip=85.214.0.1")).text();
    let printed = ask(target);
    let header = http_body.lines().next().unwrap();
    assert!(printed.contains(header), "{printed}");
    let urls = |s: &str| -> BTreeSet<String> {
        s.lines()
            .filter(|l| l.contains("://"))
            .map(str::to_owned)
            .collect()
    };
    let (a, b) = (urls(&printed), urls(&http_body));
    // The global tier's random part may differ; the country tier may not.
    assert!(!a.is_empty() && a.len() == b.len(), "{a:?} vs {b:?}");
}

#[test]
fn server_killed_while_clients_send_then_restarted() {
    let mut stack = Stack::start(&["--request-timeout", "5"]);
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let (event_tx, events) = mpsc::channel::<(usize, u16)>();
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let (addr, stop, failures, event_tx) = (
                stack.addr.clone(),
                stop.clone(),
                failures.clone(),
                event_tx.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let r = http(
                        &addr,
                        "GET",
                        "/mirrorlist?repo=fedora-42&arch=x86_64&ip=85.214.0.1",
                        &[],
                    );
                    match r.status {
                        200 => {}
                        503 => assert!(r.header("retry-after").is_some(), "503 says when to retry"),
                        s => {
                            failures.fetch_add(1, Ordering::SeqCst);
                            eprintln!("unexpected status {s}: {}", r.text());
                        }
                    }
                    if event_tx.send((i, r.status)).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    // Wait until every client has been answered, then kill the server.
    let wait_all = |want: u16| {
        let mut seen = [false; 20];
        while !seen.iter().all(|s| *s) {
            let (i, status) = events.recv().expect("client events");
            if status == want {
                seen[i] = true;
            }
        }
    };
    wait_all(200);
    stack.server.signal(Signal::SIGKILL);
    stack.server.wait_exit();
    wait_all(503);
    // Started again on the same (now stale) socket path: answers resume
    // without restarting the front end.
    let mut server = Proc::spawn(server_command(stack.dir.path()));
    server.wait_for("ready");
    wait_all(200);
    stop.store(true, Ordering::SeqCst);
    drop(events);
    for t in threads {
        t.join().expect("client thread");
    }
    assert_eq!(failures.load(Ordering::SeqCst), 0);
}
