//! Every kind of description error: the message names the file, the line
//! and the item; the exit code is 64; the existing cache is left alone.

use super::*;

/// Builds [`BASE`] once, then `bad`; asserts exit 64, a message at
/// `file:line` naming every one of `items`, and an untouched cache.
fn assert_config_error(bad: &str, line: usize, items: &[&str]) -> String {
    let f = Fixture::new(BASE);
    f.build_ok(1_000);
    let before = std::fs::read(f.output()).unwrap();

    f.write_description(bad);
    let out = f.build(2_000);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(64), "stderr: {err}");
    let location = format!("{}:{line}:", f.config().display());
    assert!(err.contains(&location), "expected {location:?} in: {err}");
    for item in items {
        assert!(err.contains(item), "expected {item:?} in: {err}");
    }
    assert_eq!(
        std::fs::read(f.output()).unwrap(),
        before,
        "a failed build replaced the cache"
    );
    err
}

/// `BASE` with the first occurrence of `from` replaced by `to`.
fn edit(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from:?} not in BASE");
    BASE.replacen(from, to, 1)
}

#[test]
fn unknown_key() {
    let bad = edit("bandwidth = 1000", "bandwith = 1000");
    assert_config_error(
        &bad,
        line_of(&bad, "bandwith"),
        &["unknown field `bandwith`"],
    );
}

#[test]
fn unknown_top_level_key() {
    let bad = format!("max_alternate = 3\n{BASE}");
    assert_config_error(&bad, 1, &["unknown field `max_alternate`"]);
}

#[test]
fn toml_syntax_error() {
    let bad = edit("country = \"DE\"", "country = \"DE");
    assert_config_error(&bad, line_of(&bad, "country = \"DE"), &[]);
}

#[test]
fn bad_cidr() {
    let bad = edit("192.0.2.0/24", "192.0.2.0/33");
    assert_config_error(
        &bad,
        line_of(&bad, "192.0.2.0/33"),
        &["m1.example.org", "\"192.0.2.0/33\" is not a valid CIDR"],
    );
}

#[test]
fn cidr_with_host_bits() {
    let bad = edit("2001:db8:1::/48", "2001:db8:1::1/48");
    assert_config_error(
        &bad,
        line_of(&bad, "2001:db8:1::1/48"),
        &["private.example.net", "host bits", "2001:db8:1::/48"],
    );
}

#[test]
fn unknown_country_code() {
    let bad = edit("country = \"US\"", "country = \"XX\"");
    assert_config_error(
        &bad,
        line_of(&bad, "\"XX\""),
        &["m2.example.edu", "unknown country code \"XX\""],
    );
}

#[test]
fn unknown_allowed_country() {
    let bad = edit(
        "families = \"ipv4\"",
        "families = \"ipv4\"\nallowed_countries = [\"US\", \"QQ\"]",
    );
    assert_config_error(
        &bad,
        line_of(&bad, "\"QQ\""),
        &["m2.example.edu", "allowed_countries", "\"QQ\""],
    );
}

#[test]
fn duplicate_host_name() {
    let bad = edit(
        "name = \"private.example.net\"",
        "name = \"m1.example.org\"",
    );
    let second = nth_line_of(&bad, "name = \"m1.example.org\"", 1);
    let first = line_of(&bad, "name = \"m1.example.org\"");
    assert_config_error(
        &bad,
        second,
        &[
            "duplicate host \"m1.example.org\"",
            &format!("first defined on line {first}"),
        ],
    );
}

#[test]
fn url_without_scheme() {
    let bad = edit("\"https://m1.example.org/epel\"", "\"m1.example.org/epel\"");
    assert_config_error(
        &bad,
        line_of(&bad, "\"m1.example.org/epel\""),
        &["m1.example.org", "\"m1.example.org/epel\"", "no scheme"],
    );
}

#[test]
fn url_with_unsupported_scheme() {
    let bad = edit("rsync://m1.example.org", "gopher://m1.example.org");
    assert_config_error(
        &bad,
        line_of(&bad, "gopher://"),
        &["m1.example.org", "unsupported scheme \"gopher\""],
    );
}

#[test]
fn repository_directory_missing_from_master_tree() {
    let bad = edit("releases/42/Everything", "releases/43/Everything");
    assert_config_error(
        &bad,
        line_of(&bad, "releases/43"),
        &[
            "repository fedora-42 (x86_64)",
            "missing from the master tree",
        ],
    );
}

#[test]
fn repository_outside_every_category() {
    let bad = edit("epel/9/Everything/x86_64", "centos/9/x86_64");
    assert_config_error(
        &bad,
        line_of(&bad, "centos/9"),
        &["repository epel-9 (x86_64)", "under no category's topdir"],
    );
}

#[test]
fn duplicate_repository() {
    let bad = edit("name = \"epel-9\"", "name = \"fedora-42\"");
    assert_config_error(
        &bad,
        nth_line_of(&bad, "name = \"fedora-42\"", 1),
        &["duplicate repository fedora-42 (x86_64)"],
    );
}

#[test]
fn unknown_category_referenced() {
    let bad = edit("category = \"EPEL\"", "category = \"Epel\"");
    assert_config_error(
        &bad,
        line_of(&bad, "\"Epel\""),
        &["m1.example.org", "unknown category \"Epel\"", "\"EPEL\""],
    );
}

#[test]
fn include_and_exclude_together() {
    let bad = edit(
        "exclude = [\"development\"]",
        "exclude = [\"development\"], include = [\"releases\"]",
    );
    assert_config_error(
        &bad,
        line_of(&bad, "include = [\"releases\"]"),
        &["m2.example.edu", "not both"],
    );
}

#[test]
fn redirect_to_unknown_repository() {
    let bad = format!("repository_redirects = {{ rawhide = \"fedora-rawhid\" }}\n{BASE}");
    assert_config_error(
        &bad,
        1,
        &["rawhide", "no repository is named \"fedora-rawhid\""],
    );
}

#[test]
fn redirect_cycle() {
    let bad = format!("repository_redirects = {{ a = \"b\", b = \"a\" }}\n{BASE}");
    assert_config_error(&bad, 1, &["cycle a → b → a"]);
}

#[test]
fn unreadable_continent_table() {
    let bad = format!("country_continent = \"nowhere.csv\"\n{BASE}");
    assert_config_error(
        &bad,
        1,
        &["country_continent", "nowhere.csv", "cannot read"],
    );
}

#[test]
fn bad_line_in_continent_table_names_the_csv() {
    let f = Fixture::new(&format!("country_continent = \"cc.csv\"\n{BASE}"));
    std::fs::write(f.path("cc.csv"), "DE,EU\nUS,NA\nFR;EU\n").unwrap();
    let out = f.build(1);
    assert_eq!(out.status.code(), Some(64));
    let want = format!("{}:3: ", f.path("cc.csv").display());
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
}

#[test]
fn custom_continent_table_limits_countries() {
    // With a table that lacks FR, the French host's country is unknown.
    let text = format!("country_continent = \"cc.csv\"\n{BASE}");
    let f = Fixture::new(&text);
    std::fs::write(f.path("cc.csv"), "DE,EU\nUS,NA\n").unwrap();
    let out = f.build(1);
    assert_eq!(out.status.code(), Some(64));
    let want = format!("{}:{}:", f.config().display(), line_of(&text, "\"FR\""));
    assert!(stderr(&out).contains(&want), "{}", stderr(&out));
}

#[test]
fn unreadable_description() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let output = dir.path().join("out.cache");
    let out = run(&[
        "build",
        "--config",
        missing.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains(&format!("{}: cannot read", missing.display())));
    assert!(!output.exists());
}

#[test]
fn all_problems_are_reported_at_once() {
    let bad =
        edit("country = \"US\"", "country = \"XX\"").replacen("192.0.2.0/24", "192.0.2.0/99", 1);
    let err = assert_config_error(&bad, line_of(&bad, "\"XX\""), &["\"XX\""]);
    let cidr_line = format!("{}:", line_of(&bad, "/99"));
    assert!(err.contains(&cidr_line), "{err}");
    // In file order: the CIDR (earlier in the file) first.
    assert!(
        err.find("/99").unwrap() < err.find("\"XX\"").unwrap(),
        "{err}"
    );
}

#[test]
fn usage_error_exits_64() {
    let out = run(&["build", "--config"]);
    assert_eq!(out.status.code(), Some(64));
    let out = run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(64));
}
