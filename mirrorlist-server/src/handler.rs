//! One request in, one reply out: query → target directory → client location
//! → selection → rendering. Pure (no I/O): the server drives it from its
//! connections ([`handle_into`], which renders the body straight into the
//! reply frame being written) and the tests call it directly ([`handle`]).
//!
//! # Statuses
//!
//! | case | status | body |
//! |---|---|---|
//! | list or metalink | 200 | the answer, even when no mirror carries it (MirrorManager does so for lists; for metalinks a valid document with no URL makes dnf stop at once instead of retrying a 404 a dozen times, and it still carries the hashes) |
//! | `redirect=1` | 302 | `Location:` the first mirror's https/http URL |
//! | `redirect=1`, no mirror | 404 | the list's header line |
//! | neither `path=` nor `repo=`+`arch=` | 400 | `# either path=, or repo= and arch= must be specified` |
//! | `ip=` not an address | 400 | `# error: ip= is not an IP address: "…"` |
//! | `path=` with a control character | 400 | `# error: path= contains a control character (U+…), which cannot appear in a URL` |
//! | unknown repo or arch | 404 | `# repo = R arch = A error: invalid repo or arch` and the available repositories |
//! | unknown path | 404 | `# path = P error: invalid path` |
//! | disabled repository | 404 | `# repo = R arch = A repo disabled` (MirrorManager says 200; but there is no list for it, and a 404 keeps caches and monitoring from taking it for a served list) |
//! | no file details for a metalink | 404 | `<dir>/<file> not found or has no metalink` |
//!
//! On `/metalink`, error texts are wrapped in MirrorManager's failure
//! document (a metalink holding only a comment).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::net::IpAddr;

use mirrorlist_core::model::{Country, FileEntry};
use mirrorlist_core::protocol::{Endpoint, Reply, Request, RequestRef, SharedBody};
use mirrorlist_core::shm::Ring;

use crate::asn::AsnTable;
use crate::geo::GeoLookup;
use crate::index::Index;
use crate::query::{IpParam, ProtocolSet, Query};
use crate::render::{self, ChunkOut, Head, Target};
use crate::select::{self, Params, Selection};
use crate::shuffle_rng::ShuffleRng;

/// Everything a request is answered from. Built once per cache (re)load.
pub struct State {
    /// The indexed cache.
    pub index: Index,
    /// GeoIP; without it, clients get no country tiers.
    pub geo: Option<Box<dyn GeoLookup + Send + Sync>>,
    /// Prefix → ASN; without it, no ASN tier.
    pub asn: Option<AsnTable>,
    /// The global tier is added while fewer hosts than this were found.
    pub minimum: usize,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("index", &self.index)
            .field("geo", &self.geo.is_some())
            .field("asn", &self.asn)
            .field("minimum", &self.minimum)
            .finish()
    }
}

impl State {
    /// Indexes `cache` and bundles it with the lookups.
    pub fn new(
        cache: mirrorlist_core::model::Cache,
        geo: Option<Box<dyn GeoLookup + Send + Sync>>,
        asn: Option<AsnTable>,
        minimum: usize,
    ) -> State {
        State {
            index: Index::new(cache),
            geo,
            asn,
            minimum,
        }
    }
}

/// What the access log records about an answered repo+arch request,
/// borrowed from the request (no copy per request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRecord<'a> {
    /// The address selected for (`ip=` or the connection's).
    pub ip: Option<IpAddr>,
    /// Its country, if known.
    pub country: Option<Country>,
    /// The repository as requested (with `-version`), before redirects.
    pub repo: Cow<'a, str>,
    /// The architecture.
    pub arch: &'a str,
    /// `countme=` (1..=4), when valid.
    pub countme: Option<u8>,
}

thread_local! {
    /// Selection buffers reused across requests on this thread.
    static SCRATCH: RefCell<Selection> = RefCell::new(Selection::default());
}

/// What a request resolved to.
struct Resolved<'a> {
    head: Head<'a>,
    /// The directory whose hosts are selected.
    dir: u32,
    target: Target<'a>,
    /// For metalinks: the file described.
    file: Option<&'a FileEntry>,
}

/// An answer's status and headers; its body went to the caller's buffer,
/// or to the shared region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// Extra headers, e.g. `Location` for a redirect.
    pub headers: Vec<(String, String)>,
    /// Where the body is in the shared region, if it was rendered there
    /// (then nothing went to the caller's buffer).
    pub shared: Option<SharedBody>,
}

impl Answer {
    fn text(status: u16) -> Answer {
        Answer {
            status,
            content_type: render::TEXT,
            headers: Vec::new(),
            shared: None,
        }
    }
}

/// Bodies that may be at least this large are rendered into the shared
/// region, when the connection has one; smaller ones (error texts,
/// redirects) stay in their frames, where a block and its release would
/// cost more than the bytes.
pub const SHARED_MIN_BODY: usize = 1024;

/// A request that cannot be answered with a list: its status and the text
/// saying why.
type Failure = (u16, String);

/// Writes the error `text` to `out`: as MirrorManager's failure document on
/// `/metalink`, else as a line of text.
fn error(state: &State, metalink: bool, status: u16, text: &str, out: &mut Vec<u8>) -> Answer {
    if metalink {
        out.reserve(512 + text.len());
        render::metalink_failure(out, &state.index, text);
        Answer {
            content_type: render::METALINK,
            ..Answer::text(status)
        }
    } else {
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
        Answer::text(status)
    }
}

/// Trims slashes and collapses repeated ones, as MirrorManager does.
fn normalize_path(path: &str) -> std::borrow::Cow<'_, str> {
    let trimmed = path.trim_matches('/');
    if !trimmed.contains("//") {
        return trimmed.into();
    }
    trimmed
        .split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
        .into()
}

/// Answers one request as a [`Reply`]. Pure: no I/O. `rng` drives the
/// shuffle.
pub fn handle<'r>(
    state: &State,
    req: &'r Request,
    rng: &mut ShuffleRng,
) -> (Reply, Option<AccessRecord<'r>>) {
    let mut body = Vec::new();
    let (answer, record) = handle_into(state, &req.as_request_ref(), rng, &mut body, None);
    let reply = Reply {
        status: answer.status,
        content_type: answer.content_type.to_owned(),
        headers: answer.headers,
        body,
    };
    (reply, record)
}

/// Answers one request, rendering a list or metalink into a block of
/// `ring` when there is one with room ([`Answer::shared`] says where), else
/// appending the body to `out` (and nothing else); returns its status and
/// headers. Pure: no I/O. `rng` drives the shuffle.
pub fn handle_into<'r>(
    state: &State,
    req: &RequestRef<'r>,
    rng: &mut ShuffleRng,
    out: &mut Vec<u8>,
    ring: Option<&mut Ring>,
) -> (Answer, Option<AccessRecord<'r>>) {
    let metalink = match req.endpoint {
        Endpoint::Ping => {
            out.extend_from_slice(b"ok built_at=");
            render::put_num(out, state.index.cache().built_at);
            out.push(b'\n');
            return (Answer::text(200), None);
        }
        Endpoint::Attach => {
            // Answered by the connection (server.rs), which owns the region.
            out.extend_from_slice(b"# attach is answered by the connection, not here\n");
            return (Answer::text(400), None);
        }
        Endpoint::Mirrorlist => false,
        Endpoint::Metalink => true,
    };
    let q = Query::parse(&req.query);
    let index = &state.index;

    let path;
    let resolved = if let Some(p) = q.path {
        path = normalize_path(p);
        resolve_path(state, metalink, &path)
    } else if let (Some(repo), Some(arch)) = (q.repo.as_deref(), q.arch) {
        resolve_repo(state, metalink, repo, arch)
    } else {
        let text = "# either path=, or repo= and arch= must be specified";
        Err((400, text.to_owned()))
    };
    let resolved = match resolved {
        Ok(r) => r,
        Err((status, text)) => return (error(state, metalink, status, &text, out), None),
    };

    let ip = match q.ip {
        IpParam::Absent => req.client_ip.map(|ip| ip.to_canonical()),
        IpParam::Valid(ip) => Some(ip),
        IpParam::Invalid(raw) => {
            let mut text = String::from("# error: ip= is not an IP address: \"");
            render::push_sanitized(&mut text, raw);
            text.push('"');
            return (error(state, metalink, 400, &text, out), None);
        }
    };
    let want_asn = q.netblock && q.places.is_none();
    let loc = select::locate(
        index,
        state.geo.as_deref().map(|g| g as &dyn GeoLookup),
        state.asn.as_ref(),
        ip,
        want_asn,
    );
    let record = match (&q.repo, q.arch, q.path) {
        (Some(repo), Some(arch), None) => Some(AccessRecord {
            ip,
            country: loc.country,
            repo: repo.clone(),
            arch,
            countme: q.countme,
        }),
        _ => None,
    };

    let params = Params {
        places: q.places.as_deref(),
        netblock: q.netblock,
        protocols: q.protocols,
        usable: if metalink {
            ProtocolSet::ALL
        } else {
            ProtocolSet::PLAIN
        },
        minimum: state.minimum,
    };
    let answer = SCRATCH.with(|scratch| {
        // A re-entrant call cannot happen (handle does not recurse), but a
        // fresh buffer is the safe answer if it ever did.
        let mut fresh = None;
        let mut borrowed = scratch.try_borrow_mut().ok();
        let sel: &mut Selection = match borrowed.as_deref_mut() {
            Some(s) => s,
            None => fresh.insert(Selection::default()),
        };
        select::select(index, resolved.dir, &loc, &params, rng, sel);
        answer(state, &resolved, &q, sel, out, ring)
    });
    (answer, record)
}

/// The 400 for a `path=` holding a control character (C0, DEL or C1: the
/// C1 ones are U+0080..U+009F, encoded `C2 80`..`C2 9F`), if it does. Apart
/// from the byte scan above it, so that the rare refusal stays out of the
/// code the usual request runs through.
#[cold]
#[inline(never)]
fn control_character(path: &str) -> Option<Failure> {
    let c = path.chars().find(|c| c.is_control())?;
    Some((
        400,
        format!(
            "# error: path= contains a control character (U+{:04X}), which cannot appear in a URL",
            u32::from(c)
        ),
    ))
}

fn resolve_path<'a>(
    state: &'a State,
    metalink: bool,
    path: &'a str,
) -> Result<Resolved<'a>, Failure> {
    let index = &state.index;
    // A file name is copied from the request into every list line and into
    // `Location` as given: a `%0A` would add a line to each entry, a CR LF
    // break the header. Such names cannot be files of the master tree
    // anyway. The directory part is matched against the cache; checking
    // the whole value makes the answer the same wherever the character is.
    if path.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2) {
        if let Some(refusal) = control_character(path) {
            return Err(refusal);
        }
    }
    let head = Head::Path(path);
    if let Some(d) = index.path(path) {
        if metalink {
            return Err((404, format!("{path}/ not found or has no metalink")));
        }
        return Ok(Resolved {
            head,
            dir: d,
            target: index.target(d, "", None),
            file: None,
        });
    }
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    let Some(d) = index.path(parent) else {
        let mut text = String::new();
        render::head(&mut text, &head);
        text.push_str("error: invalid path");
        return Err((404, text));
    };
    let file = if metalink {
        match index.cache().file(parent, name) {
            Some(f) => Some(f),
            None => return Err((404, format!("{path} not found or has no metalink"))),
        }
    } else {
        None
    };
    Ok(Resolved {
        head,
        dir: d,
        target: index.target(d, "", Some(name)),
        file,
    })
}

fn resolve_repo<'a>(
    state: &'a State,
    metalink: bool,
    repo: &'a str,
    arch: &'a str,
) -> Result<Resolved<'a>, Failure> {
    let index = &state.index;
    let repo = index.redirect(repo);
    let head = Head::Repo { repo, arch };
    // The header line starts every error text (built only for errors).
    let head_text = || {
        let mut text = String::new();
        render::head(&mut text, &head);
        text
    };
    if index.is_disabled(repo) {
        let mut text = head_text();
        text.push_str("repo disabled");
        return Err((404, text));
    }
    let Some(d) = index.repo(repo, arch) else {
        let mut text = head_text();
        text.push_str("error: invalid repo or arch\n# following repositories are available:\n");
        text.push_str(index.repo_listing());
        // `error` adds the final newline.
        text.pop();
        return Err((404, text));
    };
    if !metalink {
        return Ok(Resolved {
            head,
            dir: d,
            target: index.target(d, "", None),
            file: None,
        });
    }
    let Some(file) = index.repomd(d) else {
        let text = format!(
            "{}/repodata/repomd.xml not found or has no metalink",
            index.directory(d).path
        );
        return Err((404, text));
    };
    // Hosts are taken from the repodata directory itself when the cache
    // lists it (its freshness is what the metalink vouches for), else from
    // the repository directory with `/repodata` appended to the URLs.
    let (dir, extra) = match index.repodata(d) {
        Some(rd) => (rd, ""),
        None => (d, "/repodata"),
    };
    Ok(Resolved {
        head,
        dir,
        target: index.target(dir, extra, Some("repomd.xml")),
        file: Some(file),
    })
}

/// Renders a body of at most `capacity` bytes into a free block of `ring`
/// (in place, or aside and streamed there: [`Ring::put_with`]); `None`
/// when there is no ring, the body
/// is small or no block is free (then nothing was rendered), or the body
/// outgrew its bound (a bug the debug assertion catches): the caller then
/// renders it into the frame.
fn in_region(
    ring: Option<&mut Ring>,
    capacity: usize,
    render: impl FnOnce(&mut ChunkOut<'_>),
) -> Option<SharedBody> {
    let ring = ring.filter(|_| capacity >= SHARED_MIN_BODY)?;
    ring.put_with(capacity, |block| {
        let mut out = ChunkOut::new(block);
        render(&mut out);
        let len = out.finish();
        debug_assert!(len.is_some(), "a body outgrew its bound of {capacity}");
        len
    })
}

fn answer(
    state: &State,
    r: &Resolved<'_>,
    q: &Query<'_>,
    sel: &Selection,
    out: &mut Vec<u8>,
    ring: Option<&mut Ring>,
) -> Answer {
    let index = &state.index;
    if let Some(file) = r.file {
        let end = render::metalink_url_end(&r.target);
        let capacity = render::metalink_capacity(index, file, &end, &r.target, sel);
        let shared = in_region(ring, capacity, |o| {
            render::metalink(o, index, file, &end, &r.target, sel)
        });
        if shared.is_none() {
            out.reserve(capacity);
            let start = out.len();
            render::metalink(out, index, file, &end, &r.target, sel);
            debug_assert!(
                out.len() - start <= capacity,
                "{} > {capacity}",
                out.len() - start
            );
        }
        return Answer {
            content_type: render::METALINK,
            shared,
            ..Answer::text(200)
        };
    }
    if q.redirect {
        if let Some(location) = render::redirect_location(index, &r.target, sel) {
            let mut answer = Answer::text(302);
            answer.headers.push(("Location".into(), location));
            return answer;
        }
        // No mirror to redirect to: the list's header says what was asked.
        render::head(out, &r.head);
        out.push(b'\n');
        return Answer::text(404);
    }
    let capacity = render::mirrorlist_capacity(index, &r.head, &r.target, sel, q.time, q.priority);
    let shared = in_region(ring, capacity, |o| {
        render::mirrorlist(o, index, &r.head, &r.target, sel, q.time, q.priority)
    });
    if shared.is_none() {
        out.reserve(capacity);
        let start = out.len();
        render::mirrorlist(out, index, &r.head, &r.target, sel, q.time, q.priority);
        debug_assert!(
            out.len() - start <= capacity,
            "{} > {capacity}",
            out.len() - start
        );
    }
    Answer {
        shared,
        ..Answer::text(200)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::TableGeo;
    use crate::select::tests::{cc, World};
    use mirrorlist_core::model::{DirectoryFiles, FileDetails, RepoRedirect};
    use rand::SeedableRng;

    fn req(endpoint: Endpoint, ip: Option<&str>, q: &[(&str, &str)]) -> Request {
        Request {
            endpoint,
            client_ip: ip.map(|s| s.parse().unwrap()),
            query: q
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        }
    }

    fn state(w: &World) -> State {
        let geo = TableGeo::new([
            ("194.25.0.0/16".parse().unwrap(), cc("DE")),
            ("2003::/19".parse().unwrap(), cc("DE")),
            ("81.2.69.0/24".parse().unwrap(), cc("GB")),
            ("62.0.0.0/8".parse().unwrap(), cc("AT")),
        ]);
        let asn = AsnTable::parse("194.25.0.0/16 3320\n").unwrap();
        State::new(w.built(), Some(Box::new(geo)), Some(asn), 5)
    }

    fn call<'r>(s: &State, r: &'r Request) -> (Reply, Option<AccessRecord<'r>>) {
        let mut rng = ShuffleRng::seed_from_u64(42);
        handle(s, r, &mut rng)
    }

    fn body(r: &Reply) -> &str {
        std::str::from_utf8(&r.body).unwrap()
    }

    fn details(tag: &str, ts: u64) -> FileDetails {
        FileDetails {
            timestamp: ts,
            size: 4321,
            md5: format!("md5-{tag}"),
            sha1: format!("sha1-{tag}"),
            sha256: format!("sha256-{tag}"),
            sha512: format!("sha512-{tag}"),
        }
    }

    /// One German https+rsync host, one Austrian http host, one private
    /// host reached by netblock; repodata details with one alternate.
    fn world() -> World {
        let mut w = World::new();
        w.add(
            "DE",
            &["rsync://de.example/pub", "https://de.example/pub"],
            |_| {},
        );
        w.add("AT", &["http://at.example/pub"], |h| h.bandwidth = 50);
        w.add("DE", &["https://private.example/pub"], |h| {
            h.private = true;
            h.netblocks = vec!["10.0.0.0/8".parse().unwrap()];
        });
        w.cache.file_details = vec![DirectoryFiles {
            directory: "pub/os/repodata".into(),
            files: vec![mirrorlist_core::model::FileEntry {
                name: "repomd.xml".into(),
                versions: vec![details("new", 1_700_000_100), details("old", 1_699_000_000)],
            }],
        }];
        w.cache.repo_redirects = vec![RepoRedirect {
            from: "fedora-old".into(),
            to: "fedora-42".into(),
        }];
        w.cache.disabled_repos = vec!["fedora-gone".into()];
        w.cache.repos.push(mirrorlist_core::model::Repo {
            name: "fedora-gone".into(),
            arch: "x86_64".into(),
            directory: 0,
        });
        w
    }

    const REPO: [(&str, &str); 2] = [("repo", "fedora-42"), ("arch", "x86_64")];

    #[test]
    fn bodies_rendered_into_the_region_equal_those_in_frames() {
        use mirrorlist_core::shm::{Lease, Region};
        use std::os::fd::AsFd;
        // Enough hosts for lists over SHARED_MIN_BODY, with URLs of every
        // length around the chunk and span sizes (and some to escape in
        // metalinks).
        let mut w = world();
        for i in 0..70 {
            let cc = ["DE", "AT", "FR"][i % 3];
            let pad = "x".repeat(i);
            let https = format!("https://m{i}.example/{pad}");
            let http = format!("http://m{i}.example/a&b{pad}");
            w.add(cc, &[&https, &http], |h| h.bandwidth = 1 + i as u32);
        }
        let s = state(&w);
        let (region, fd) = Region::create(1 << 20).unwrap();
        let other = std::sync::Arc::new(Region::open(fd.as_fd()).unwrap());
        let mut ring = Ring::new(region);
        let queries: [&[(&str, &str)]; 4] = [
            &REPO,
            &[
                ("repo", "fedora-42"),
                ("arch", "x86_64"),
                ("time", "1"),
                ("priority", "1"),
            ],
            &[
                ("repo", "fedora-42"),
                ("arch", "x86_64"),
                ("protocol", "http"),
            ],
            &[("path", "pub/os"), ("country", "FR,global")],
        ];
        let mut shared = 0;
        for endpoint in [Endpoint::Mirrorlist, Endpoint::Metalink] {
            for q in queries {
                for ip in [Some("194.25.0.60"), Some("10.1.2.3"), None] {
                    let r = req(endpoint, ip, q);
                    let mut framed = Vec::new();
                    let mut rng = ShuffleRng::seed_from_u64(9);
                    let (a, _) = handle_into(&s, &r.as_request_ref(), &mut rng, &mut framed, None);
                    let mut rest = Vec::new();
                    let mut rng = ShuffleRng::seed_from_u64(9);
                    let (b, _) = handle_into(
                        &s,
                        &r.as_request_ref(),
                        &mut rng,
                        &mut rest,
                        Some(&mut ring),
                    );
                    assert_eq!((a.status, a.content_type), (b.status, b.content_type));
                    assert_eq!(a.shared, None);
                    match b.shared {
                        Some(at) => {
                            assert!(rest.is_empty(), "a body in the region and the frame");
                            let lease = Lease::new(other.clone(), at).unwrap();
                            assert_eq!(
                                std::str::from_utf8(lease.as_ref()).unwrap(),
                                std::str::from_utf8(&framed).unwrap(),
                                "{endpoint:?} {q:?} {ip:?}"
                            );
                            shared += 1;
                        }
                        None => assert_eq!(rest, framed),
                    }
                }
            }
        }
        // Metalinks and the long lists went into the region.
        assert!(shared >= 16, "{shared} bodies in the region");
    }

    #[test]
    fn golden_plain_list() {
        let s = state(&world());
        // Single-host tiers make the order deterministic: DE, then AT.
        let r = req(Endpoint::Mirrorlist, Some("194.25.0.60"), &REPO);
        let (reply, rec) = call(&s, &r);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type, render::TEXT);
        assert_eq!(
            body(&reply),
            "# repo = fedora-42 arch = x86_64 country = DE country = AT country = global \n\
             https://de.example/pub/os/\n\
             http://at.example/pub/os/\n"
        );
        assert_eq!(
            rec,
            Some(AccessRecord {
                ip: Some("194.25.0.60".parse().unwrap()),
                country: Some(cc("DE")),
                repo: "fedora-42".into(),
                arch: "x86_64",
                countme: None,
            })
        );
    }

    #[test]
    fn answers_are_appended_after_what_the_buffer_holds() {
        // The server renders into a buffer that already holds earlier
        // replies and this reply's frame header: they must stay untouched,
        // and the body must be the one `handle` gives.
        let s = state(&world());
        let asks = [
            req(Endpoint::Mirrorlist, Some("194.25.0.60"), &REPO),
            req(Endpoint::Metalink, Some("194.25.0.60"), &REPO),
            req(
                Endpoint::Mirrorlist,
                None,
                &[("repo", "nope"), ("arch", "x86_64")],
            ),
            req(Endpoint::Metalink, None, &[("path", "no/such")]),
            req(
                Endpoint::Mirrorlist,
                None,
                &[("repo", "fedora-42"), ("arch", "x86_64"), ("redirect", "1")],
            ),
            req(Endpoint::Ping, None, &[]),
        ];
        for ask in &asks {
            let (reply, _) = call(&s, ask);
            let mut out = b"earlier bytes".to_vec();
            let mut rng = ShuffleRng::seed_from_u64(42);
            let (answer, _) = handle_into(&s, &ask.as_request_ref(), &mut rng, &mut out, None);
            assert_eq!(&out[..13], b"earlier bytes", "{ask:?}");
            assert_eq!(&out[13..], &reply.body[..], "{ask:?}");
            assert_eq!(answer.status, reply.status, "{ask:?}");
            assert_eq!(answer.content_type, reply.content_type, "{ask:?}");
            assert_eq!(answer.headers, reply.headers, "{ask:?}");
            assert!(!reply.body.is_empty() || reply.status == 302, "{ask:?}");
        }
    }

    #[test]
    fn golden_plain_list_with_apt_priorities() {
        let s = state(&world());
        let q = [("repo", "fedora-42"), ("arch", "x86_64"), ("priority", "1")];
        let (reply, _) = call(&s, &req(Endpoint::Mirrorlist, Some("194.25.0.60"), &q));
        assert_eq!(
            body(&reply),
            "# repo = fedora-42 arch = x86_64 country = DE country = AT country = global \n\
             https://de.example/pub/os/\tpriority:1\n\
             http://at.example/pub/os/\tpriority:2\n"
        );
    }

    #[test]
    fn golden_plain_list_netblock_time_protocol() {
        let s = state(&world());
        let q = [
            ("repo", "fedora-42"),
            ("arch", "x86_64"),
            ("time", "1"),
            ("protocol", "https"),
            ("countme", "2"),
        ];
        let r = req(Endpoint::Mirrorlist, Some("10.1.1.1"), &q);
        let (reply, rec) = call(&s, &r);
        assert_eq!(
            body(&reply),
            "# repo = fedora-42 arch = x86_64 Using preferred netblock country = global protocol = https \n\
             # database creation time: 1700000000\n\
             https://private.example/pub/os/\n\
             https://de.example/pub/os/\n"
        );
        assert_eq!(rec.unwrap().countme, Some(2));
    }

    #[test]
    fn golden_metalink() {
        let s = state(&world());
        let (reply, _) = call(&s, &req(Endpoint::Metalink, Some("194.25.0.60"), &REPO));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type, "application/metalink+xml");
        let expected = r#"<?xml version="1.0" encoding="utf-8"?>
<metalink version="3.0" xmlns="http://www.metalinker.org/" type="dynamic" pubdate="Tue, 14 Nov 2023 22:13:20 GMT" generator="mirrormanager" xmlns:mm0="http://fedorahosted.org/mirrormanager">
 <files>
  <file name="repomd.xml">
   <mm0:timestamp>1700000100</mm0:timestamp>
   <size>4321</size>
   <verification>
    <hash type="md5">md5-new</hash>
    <hash type="sha1">sha1-new</hash>
    <hash type="sha256">sha256-new</hash>
    <hash type="sha512">sha512-new</hash>
   </verification>
   <mm0:alternates>
    <mm0:alternate>
      <mm0:timestamp>1699000000</mm0:timestamp>
      <size>4321</size>
      <verification>
       <hash type="md5">md5-old</hash>
       <hash type="sha1">sha1-old</hash>
       <hash type="sha256">sha256-old</hash>
       <hash type="sha512">sha512-old</hash>
      </verification>
    </mm0:alternate>
   </mm0:alternates>
   <resources maxconnections="1">
    <url protocol="https" type="https" location="DE" preference="100">https://de.example/pub/os/repodata/repomd.xml</url>
    <url protocol="rsync" type="rsync" location="DE" preference="100">rsync://de.example/pub/os/repodata/repomd.xml</url>
    <url protocol="http" type="http" location="AT" preference="99">http://at.example/pub/os/repodata/repomd.xml</url>
   </resources>
  </file>
 </files>
</metalink>
"#;
        assert_eq!(body(&reply), expected);
    }

    #[test]
    fn metalink_private_hosts_and_repodata_directory() {
        let mut w = world();
        // The cache lists the repodata directory with only the private host.
        let hosts = w.cache.push_host_set(mirrorlist_core::model::HostSet::new(
            vec![],
            [],
            [(2, vec![3])],
        ));
        w.cache.directories.push(mirrorlist_core::model::Directory {
            path: "pub/os/repodata".into(),
            subpath: "os/repodata".into(),
            hosts,
            ordered: true,
        });
        let s = state(&w);
        let (reply, _) = call(&s, &req(Endpoint::Metalink, Some("10.0.0.1"), &REPO));
        let b = body(&reply);
        assert!(b.contains(
            r#"<url protocol="https" type="https" location="DE" preference="100" mm0:private="True">https://private.example/pub/os/repodata/repomd.xml</url>"#
        ), "{b}");
        assert_eq!(b.matches("<url ").count(), 1, "{b}");
    }

    #[test]
    fn metalink_parses_with_hostile_characters() {
        let mut w = World::new();
        let hostile = "https://evil.example/a&b<c>d\"e'f";
        w.add("DE", &[hostile], |_| {});
        w.cache.file_details = vec![DirectoryFiles {
            directory: "pub/os/repodata".into(),
            files: vec![mirrorlist_core::model::FileEntry {
                name: "repomd.xml".into(),
                versions: vec![details("a", 1), details("b", 2), details("c", 3)],
            }],
        }];
        let s = state(&w);
        let (reply, _) = call(&s, &req(Endpoint::Metalink, Some("194.25.0.60"), &REPO));
        assert_eq!(reply.status, 200);

        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_str(body(&reply));
        let mut text = String::new();
        let mut hash_type = String::new();
        let mut hashes: Vec<(String, String)> = Vec::new();
        let mut urls = Vec::new();
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Start(e) => {
                    text.clear();
                    if e.name().as_ref() == b"hash" {
                        let t = e.try_get_attribute("type").unwrap().unwrap();
                        hash_type = t.unescape_value().unwrap().into_owned();
                    }
                }
                Event::Text(t) => text.push_str(&t.decode().unwrap()),
                // quick-xml reports entity references as events of their own.
                Event::GeneralRef(r) => {
                    let resolved = match &*r.decode().unwrap() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        other => panic!("unexpected entity {other}"),
                    };
                    text.push_str(resolved);
                }
                Event::End(e) => match e.name().as_ref() {
                    b"hash" => hashes.push((hash_type.clone(), text.clone())),
                    b"url" => urls.push(text.clone()),
                    _ => {}
                },
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(urls, vec![format!("{hostile}/os/repodata/repomd.xml")]);
        let expect: Vec<(String, String)> = ["a", "b", "c"]
            .iter()
            .flat_map(|t| {
                let d = details(t, 0);
                [
                    ("md5".to_string(), d.md5),
                    ("sha1".to_string(), d.sha1),
                    ("sha256".to_string(), d.sha256),
                    ("sha512".to_string(), d.sha512),
                ]
            })
            .collect();
        assert_eq!(hashes, expect);
    }

    /// A metalink for `pub/os/NAME` from `hosts` German hosts, and the
    /// bound `answer` reserved for it.
    fn metalink_and_its_bound(name: &str, hosts: usize) -> (String, usize) {
        let mut w = World::new();
        for _ in 0..hosts {
            w.simple("DE");
        }
        w.cache.file_details = vec![DirectoryFiles {
            directory: "pub/os".into(),
            files: vec![mirrorlist_core::model::FileEntry {
                name: name.to_owned(),
                versions: vec![details("a", 1)],
            }],
        }];
        let s = state(&w);
        let path = format!("pub/os/{name}");
        let r = req(Endpoint::Metalink, Some("194.25.0.60"), &[("path", &path)]);
        let normalized = normalize_path(&path);
        let resolved = resolve_path(&s, true, &normalized).unwrap();
        let (reply, _) = call(&s, &r);
        assert_eq!(reply.status, 200);
        let b = body(&reply);

        let (index, file) = (&s.index, resolved.file.unwrap());
        let mut rng = ShuffleRng::seed_from_u64(42);
        let mut sel = Selection::default();
        let geo = s.geo.as_deref().map(|g| g as &dyn GeoLookup);
        let loc = select::locate(index, geo, s.asn.as_ref(), r.client_ip, true);
        let params = Params {
            places: None,
            netblock: true,
            protocols: None,
            usable: ProtocolSet::ALL,
            minimum: s.minimum,
        };
        select::select(index, resolved.dir, &loc, &params, &mut rng, &mut sel);
        assert_eq!(sel.picks.len(), hosts);
        let end = render::metalink_url_end(&resolved.target);
        let bound = render::metalink_capacity(index, file, &end, &resolved.target, &sel);
        (b.to_owned(), bound)
    }

    #[test]
    fn a_metalink_with_a_long_file_name_and_many_urls_fits_its_bound() {
        // The escaped file name ends every `<url>` line: 50 apostrophes
        // are 300 bytes there. Before the bound counted it, 40 such lines
        // outgrew it and tripped the debug assertion in `answer`.
        let name = format!("{}.iso", "'".repeat(50));
        let (b, bound) = metalink_and_its_bound(&name, 40);
        let end = format!("/os/{}.iso</url>\n", "&apos;".repeat(50));
        assert_eq!(b.matches(end.as_str()).count(), 40, "{b}");
        assert!(b.len() <= bound, "{} bytes > bound {bound}", b.len());
    }

    #[test]
    fn a_metalinks_bound_is_near_its_size() {
        // The shared region must find the whole bound free for a body, so
        // a loose bound fills it long before the bodies do. Counting each
        // line's end escaped at worst, as before, made this one 2.3 times
        // the body.
        let (b, bound) = metalink_and_its_bound("repomd.xml", 300);
        assert!(b.len() <= bound, "{} bytes > bound {bound}", b.len());
        assert!(
            bound * 4 <= b.len() * 5,
            "bound {bound} for {} bytes",
            b.len()
        );
    }

    #[test]
    fn metalink_without_mirrors_is_a_valid_empty_document() {
        let mut w = World::new();
        w.cache.file_details = world().cache.file_details;
        let s = state(&w);
        let r = req(Endpoint::Metalink, Some("194.25.0.60"), &REPO);
        let (reply, rec) = call(&s, &r);
        assert_eq!(reply.status, 200);
        let b = body(&reply);
        assert!(
            b.contains("<resources maxconnections=\"1\">\n   </resources>"),
            "{b}"
        );
        assert!(rec.is_some());
    }

    #[test]
    fn metalink_without_file_details() {
        let mut w = world();
        w.cache.file_details.clear();
        let s = state(&w);
        let (reply, _) = call(&s, &req(Endpoint::Metalink, None, &REPO));
        assert_eq!(reply.status, 404);
        assert_eq!(reply.content_type, render::METALINK);
        assert_eq!(
            body(&reply),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
             <metalink version=\"3.0\" xmlns=\"http://www.metalinker.org/\" type=\"dynamic\" pubdate=\"Tue, 14 Nov 2023 22:13:20 GMT\" generator=\"mirrormanager\" xmlns:mm0=\"http://fedorahosted.org/mirrormanager\">\n\
             <!-- pub/os/repodata/repomd.xml not found or has no metalink\n\
             -->\n\
             </metalink>\n"
        );
    }

    #[test]
    fn missing_parameters() {
        let s = state(&world());
        for q in [
            &[][..],
            &[("repo", "fedora-42")][..],
            &[("arch", "x86_64")][..],
        ] {
            let r = req(Endpoint::Mirrorlist, None, q);
            let (reply, rec) = call(&s, &r);
            assert_eq!(reply.status, 400);
            assert_eq!(
                body(&reply),
                "# either path=, or repo= and arch= must be specified\n"
            );
            assert!(rec.is_none());
        }
        let (reply, _) = call(&s, &req(Endpoint::Metalink, None, &[]));
        assert_eq!(reply.status, 400);
        assert!(
            body(&reply).contains("<!-- # either path=, or repo= and arch= must be specified\n-->")
        );
    }

    #[test]
    fn invalid_repo_lists_the_available_ones() {
        let s = state(&world());
        let q = [("repo", "nope\nhttps://evil/"), ("arch", "x86_64")];
        let r = req(Endpoint::Mirrorlist, None, &q);
        let (reply, rec) = call(&s, &r);
        assert_eq!(reply.status, 404);
        assert_eq!(
            body(&reply),
            "# repo = nope?https://evil/ arch = x86_64 error: invalid repo or arch\n\
             # following repositories are available:\n\
             # repo=fedora-42&arch=x86_64\n\
             # repo=fedora-gone&arch=x86_64\n"
        );
        assert!(rec.is_none());
        let (reply, _) = call(&s, &req(Endpoint::Metalink, None, &q));
        assert_eq!(reply.status, 404);
        assert!(body(&reply).contains("# repo=fedora-42&amp;arch=x86_64"));
    }

    #[test]
    fn redirects_and_disabled_repositories() {
        let s = state(&world());
        let q = [("repo", "fedora-old"), ("arch", "x86_64")];
        let r = req(Endpoint::Mirrorlist, Some("194.25.0.60"), &q);
        let (reply, rec) = call(&s, &r);
        assert_eq!(reply.status, 200);
        assert!(
            body(&reply).starts_with("# repo = fedora-42 arch = x86_64 "),
            "{}",
            body(&reply)
        );
        // The log keeps the name the client asked for.
        assert_eq!(rec.unwrap().repo, "fedora-old");
        let q = [("repo", "fedora-gone"), ("arch", "x86_64")];
        let r = req(Endpoint::Mirrorlist, None, &q);
        let (reply, rec) = call(&s, &r);
        assert_eq!(reply.status, 404);
        assert_eq!(
            body(&reply),
            "# repo = fedora-gone arch = x86_64 repo disabled\n"
        );
        assert!(rec.is_none());
    }

    #[test]
    fn version_and_cc() {
        let s = state(&world());
        let q = [
            ("repo", "fedora"),
            ("version", "42"),
            ("arch", "x86_64"),
            ("cc", "at"),
        ];
        let r = req(Endpoint::Mirrorlist, Some("194.25.0.60"), &q);
        let (reply, rec) = call(&s, &r);
        assert_eq!(
            body(&reply),
            "# repo = fedora-42 arch = x86_64 country = AT \nhttp://at.example/pub/os/\n"
        );
        assert_eq!(rec.unwrap().repo, "fedora-42");
    }

    #[test]
    fn country_global() {
        let s = state(&world());
        let q = [
            ("repo", "fedora-42"),
            ("arch", "x86_64"),
            ("country", "global"),
        ];
        let (reply, _) = call(&s, &req(Endpoint::Mirrorlist, Some("194.25.0.60"), &q));
        let b = body(&reply);
        assert!(
            b.starts_with("# repo = fedora-42 arch = x86_64 country = global \n"),
            "{b}"
        );
        assert_eq!(b.lines().count(), 3, "{b}");
    }

    #[test]
    fn ip_parameter_and_transition_addresses() {
        let s = state(&world());
        let with_ip = |ip: &str| {
            let q = [("repo", "fedora-42"), ("arch", "x86_64"), ("ip", ip)];
            let r = req(Endpoint::Mirrorlist, Some("81.2.69.160"), &q);
            let (reply, rec) = call(&s, &r);
            (reply, rec.map(|rec| rec.country))
        };
        // 6to4 and Teredo addresses of a German client.
        for ip in [
            "2002:c219:3c::1",
            "2001:0:4136:e378:8000:63bf:3de6:ffc3",
            "194.25.0.60",
        ] {
            let (reply, rec) = with_ip(ip);
            assert!(
                body(&reply).contains("country = DE"),
                "{ip}: {}",
                body(&reply)
            );
            assert_eq!(rec, Some(Some(cc("DE"))));
        }
        let (reply, rec) = with_ip("not-an-ip\n");
        assert_eq!(reply.status, 400);
        assert_eq!(
            body(&reply),
            "# error: ip= is not an IP address: \"not-an-ip?\"\n"
        );
        assert!(rec.is_none());
    }

    #[test]
    fn redirect() {
        let s = state(&world());
        let q = [("repo", "fedora-42"), ("arch", "x86_64"), ("redirect", "1")];
        let (reply, _) = call(&s, &req(Endpoint::Mirrorlist, Some("194.25.0.60"), &q));
        assert_eq!(reply.status, 302);
        assert_eq!(
            reply.headers,
            vec![(
                "Location".to_string(),
                "https://de.example/pub/os/".to_string()
            )]
        );
        let empty = state(&World::new());
        let (reply, _) = call(&empty, &req(Endpoint::Mirrorlist, Some("194.25.0.60"), &q));
        assert_eq!(reply.status, 404);
        assert_eq!(body(&reply), "# repo = fedora-42 arch = x86_64 \n");
    }

    #[test]
    fn empty_list_is_200_with_header() {
        let s = state(&World::new());
        let (reply, _) = call(&s, &req(Endpoint::Mirrorlist, Some("194.25.0.60"), &REPO));
        assert_eq!(reply.status, 200);
        assert_eq!(
            body(&reply),
            "# repo = fedora-42 arch = x86_64 country = global \n"
        );
    }

    #[test]
    fn paths() {
        let s = state(&world());
        let q = [("path", "//pub//os/")];
        let r = req(Endpoint::Mirrorlist, Some("194.25.0.60"), &q);
        let (reply, rec) = call(&s, &r);
        assert_eq!(
            body(&reply),
            "# path = pub/os country = DE country = AT country = global \n\
             https://de.example/pub/os/\n\
             http://at.example/pub/os/\n"
        );
        assert!(rec.is_none(), "MirrorManager logs repo+arch requests only");
        let q = [("path", "pub/os/file.iso")];
        let (reply, _) = call(&s, &req(Endpoint::Mirrorlist, Some("194.25.0.60"), &q));
        assert!(body(&reply).contains("https://de.example/pub/os/file.iso\n"));
        let q = [("path", "pub/os/repodata/repomd.xml")];
        let (reply, _) = call(&s, &req(Endpoint::Mirrorlist, None, &q));
        assert_eq!(reply.status, 404);
        assert_eq!(
            body(&reply),
            "# path = pub/os/repodata/repomd.xml error: invalid path\n"
        );
        let q = [("path", "pub/os")];
        let (reply, _) = call(&s, &req(Endpoint::Metalink, None, &q));
        assert_eq!(reply.status, 404);
        assert!(body(&reply).contains("pub/os/ not found or has no metalink"));
    }

    #[test]
    fn a_path_with_control_characters_is_refused_not_copied_into_urls() {
        let s = state(&world());
        // `%0A%23injected`, `%0D%0ALocation:` and a C1 control, decoded.
        for (bad, code) in [
            ("pub/os/x\n#injected", "000A"),
            ("pub/os/x\r\nSet-Cookie: a=b", "000D"),
            ("pub/os/x\u{85}y", "0085"),
            ("pub/os\t/x", "0009"),
        ] {
            for extra in [None, Some(("redirect", "1"))] {
                let mut q = vec![("path", bad)];
                q.extend(extra);
                let (reply, _) = call(&s, &req(Endpoint::Mirrorlist, Some("194.25.0.60"), &q));
                assert_eq!(reply.status, 400, "{bad:?} {extra:?}");
                assert!(reply.headers.is_empty(), "{bad:?}: {:?}", reply.headers);
                assert_eq!(
                    body(&reply),
                    format!(
                        "# error: path= contains a control character (U+{code}), \
                         which cannot appear in a URL\n"
                    )
                );
            }
            let (reply, _) = call(&s, &req(Endpoint::Metalink, None, &[("path", bad)]));
            assert_eq!(reply.status, 400, "{bad:?}");
            assert!(body(&reply).contains("path= contains a control character"));
        }
        // Other unusual characters are still copied as given.
        let q = [("path", "pub/os/a b#c?d")];
        let (reply, _) = call(&s, &req(Endpoint::Mirrorlist, Some("194.25.0.60"), &q));
        assert_eq!(reply.status, 200);
        assert!(body(&reply).contains("https://de.example/pub/os/a b#c?d\n"));
    }

    #[test]
    fn ping() {
        let s = state(&world());
        let r = req(Endpoint::Ping, None, &[]);
        let (reply, rec) = call(&s, &r);
        assert_eq!(
            (reply.status, body(&reply)),
            (200, "ok built_at=1700000000\n")
        );
        assert!(rec.is_none());
    }

    #[test]
    fn ipv6_clients_get_no_ipv4_only_hosts() {
        let mut w = World::new();
        w.add("DE", &["https://v4.example/pub"], |h| {
            h.families = mirrorlist_core::model::Families::Ipv4
        });
        w.add("DE", &["https://v6.example/pub"], |h| {
            h.families = mirrorlist_core::model::Families::Ipv6
        });
        let s = state(&w);
        let (reply, _) = call(&s, &req(Endpoint::Mirrorlist, Some("2003::1"), &REPO));
        assert_eq!(
            body(&reply),
            "# repo = fedora-42 arch = x86_64 country = DE country = global \nhttps://v6.example/pub/os/\n"
        );
        let (reply, _) = call(
            &s,
            &req(Endpoint::Mirrorlist, Some("::ffff:194.25.0.60"), &REPO),
        );
        assert_eq!(
            body(&reply),
            "# repo = fedora-42 arch = x86_64 country = DE country = global \nhttps://v4.example/pub/os/\n"
        );
    }

    #[test]
    fn state_without_geo_or_asn() {
        let mut c = world().cache;
        c.normalize();
        let s = State::new(c, None, None, 5);
        assert!(format!("{s:?}").contains("State"));
        let r = req(Endpoint::Mirrorlist, Some("194.25.0.60"), &REPO);
        let (reply, rec) = call(&s, &r);
        assert_eq!(reply.status, 200);
        assert!(body(&reply).starts_with("# repo = fedora-42 arch = x86_64 country = global \n"));
        assert_eq!(rec.unwrap().country, None);
    }
}
