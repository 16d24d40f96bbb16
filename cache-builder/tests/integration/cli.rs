//! The command line: summary line, `inspect`, runtime errors, SIGHUP.

use std::os::unix::process::ExitStatusExt;

use super::*;

#[test]
fn build_prints_a_summary_line() {
    let f = Fixture::new(BASE);
    let out = f.build(1_700_000_000);
    assert_success(&out);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("3 hosts, 3 countries, 2 categories, 3 directories"),
        "{text}"
    );
    assert!(text.contains("2023-11-14T22:13:20Z"), "{text}");
    let size = std::fs::metadata(f.output()).unwrap().len();
    assert!(text.contains(&format!("{size} bytes")), "{text}");
}

#[test]
fn inspect_reports_counts_and_repositories() {
    let f = Fixture::new(BASE);
    f.build_ok(1_700_000_000);
    let out = run(&["inspect", f.output().to_str().unwrap()]);
    assert_success(&out);
    let text = stdout(&out);
    for want in [
        "format version: 3",
        "2023-11-14T22:13:20Z (",
        "hosts:          3",
        "countries:      3",
        "categories:     2",
        "directories:    3",
        "host sets:      3",
        "repositories:   3",
        "file details:   3",
        "alternates:     0",
        "  epel-9 x86_64",
        "  fedora-42 x86_64",
        "  fedora-rawhide x86_64",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
}

#[test]
fn inspect_refuses_a_corrupt_file() {
    let f = Fixture::new(BASE);
    f.build_ok(1);
    let mut bytes = std::fs::read(f.output()).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(f.output(), &bytes).unwrap();
    let out = run(&["inspect", f.output().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("checksum mismatch"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains(&f.output().display().to_string()));

    let out = run(&["inspect", f.path("nothing").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
}

#[test]
fn unwritable_output_is_a_runtime_error() {
    let f = Fixture::new(BASE);
    let out = run(&[
        "build",
        "--config",
        f.config().to_str().unwrap(),
        "--output",
        f.path("no/such/dir/cache").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot write the cache"),
        "{}",
        stderr(&out)
    );
}

fn build_with_pidfile(f: &Fixture, pidfile: &Path) -> Output {
    run(&[
        "build",
        "--config",
        f.config().to_str().unwrap(),
        "--output",
        f.output().to_str().unwrap(),
        "--reload-pidfile",
        pidfile.to_str().unwrap(),
    ])
}

#[test]
fn reload_sends_sighup_to_the_pid_in_the_pidfile() {
    let f = Fixture::new(BASE);
    std::fs::create_dir_all(f.path("out")).unwrap();
    // A stand-in server: `sleep` dies of SIGHUP, which wait() then reports.
    let mut child = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let pidfile = f.path("server.pid");
    std::fs::write(&pidfile, format!("{}\n", child.id())).unwrap();
    let out = build_with_pidfile(&f, &pidfile);
    let status = child.wait().unwrap();
    assert_success(&out);
    assert_eq!(status.signal(), Some(nix::libc::SIGHUP));
    assert!(stdout(&out).contains(&format!("sent SIGHUP to pid {}", child.id())));
}

#[test]
fn reload_failures_exit_1_but_the_cache_was_written() {
    let f = Fixture::new(BASE);
    std::fs::create_dir_all(f.path("out")).unwrap();

    let missing = f.path("missing.pid");
    let out = build_with_pidfile(&f, &missing);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot read pidfile"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("WAS written"), "{}", stderr(&out));
    assert!(cachefile::load(&f.output()).is_ok());

    let garbled = f.path("garbled.pid");
    std::fs::write(&garbled, "mirrorlist-server\n").unwrap();
    let out = build_with_pidfile(&f, &garbled);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("does not hold a process id"),
        "{}",
        stderr(&out)
    );

    // A process that has exited (and been reaped) no longer exists.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let dead = f.path("dead.pid");
    std::fs::write(&dead, pid.to_string()).unwrap();
    let out = build_with_pidfile(&f, &dead);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no such process"), "{}", stderr(&out));
    assert!(stderr(&out).contains("WAS written"), "{}", stderr(&out));
}
