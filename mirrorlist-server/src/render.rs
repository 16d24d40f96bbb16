//! Rendering answers in MirrorManager's formats, appended to one output
//! ([`Out`]: the server's write buffer, or a `String` for error texts).
//!
//! # Plain list (`/mirrorlist`)
//!
//! ```text
//! # repo = fedora-42 arch = x86_64 country = DE country = AT country = global
//! https://mirror.example/fedora/linux/releases/42/Everything/x86_64/os/
//! ```
//!
//! The header names how hosts were found, in tier order: `Using preferred
//! netblock `, `Using ASN <n> `, `country = <CC> ` for each country that
//! contributed a host, `country = global ` when the global tier was
//! consulted, and `protocol = <list> ` when `protocol=` was applied. With
//! `time=`, a second comment line `# database creation time: <unix secs>`
//! follows (the form of Fedora's current server; Unix seconds are
//! unambiguous). Then one URL per host: its https URL if it has one, else
//! http, else ftp; directories end in `/` as in MirrorManager's lists.
//!
//! # Metalink (`/metalink`)
//!
//! Metalink 3.0 laid out as MirrorManager serves it (same elements, order,
//! indentation and `generator="mirrormanager"`), describing one file with
//! its size, timestamp, hashes and older versions as `mm0:alternates`, then
//! every URL of every selected host with `preference` from 100 down (one
//! value per host, never below 1). `pubdate` is the cache's build time:
//! that is when the data it states was true, and it keeps the document a
//! function of the cache. Everything inserted is XML-escaped.
//!
//! Text echoed from the request (an unknown repo name) has its control
//! characters replaced, so a `%0A` cannot add a line to a list that clients
//! read line by line. The one piece of the request copied into URLs as
//! given, a `path=` file name, never holds one: the handler refuses such a
//! `path=` with 400.

use mirrorlist_core::model::{Directory, FileDetails, FileEntry, HostSet, Protocol};

use crate::frag::{Frag, CHUNK, SPAN};
use crate::index::{DirSlots, Index, PRIVATE};
use crate::query::ProtocolSet;
use crate::select::{Note, Selection};

/// `Content-Type` of the plain list and of errors outside metalinks.
pub const TEXT: &str = mirrorlist_core::protocol::TEXT_PLAIN;
/// `Content-Type` of metalinks, including their failure documents.
pub const METALINK: &str = mirrorlist_core::protocol::METALINK;

/// What an answer's header line names.
#[derive(Clone, Copy, Debug)]
pub enum Head<'a> {
    /// `# repo = R arch = A `
    Repo {
        /// Repository, after redirects.
        repo: &'a str,
        /// Architecture.
        arch: &'a str,
    },
    /// `# path = P `
    Path(&'a str),
}

/// Where, below a host's category URL, the answer points.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The directory whose subpath is appended.
    pub dir: &'a Directory,
    /// The hosts that carry it.
    pub hosts: &'a HostSet,
    /// Its slot tables.
    pub slots: &'a DirSlots,
    /// Appended after the subpath, e.g. `/repodata` when the cache lacks the
    /// repodata directory itself; usually empty.
    pub extra: &'a str,
    /// A file in the directory; `None` for the directory itself.
    pub file: Option<&'a str>,
}

/// Where text is rendered to: the server renders large bodies straight
/// into a block of the shared region ([`ChunkOut`]), others into the frame
/// it is writing (a `Vec<u8>`), error texts into a `String`. Only UTF-8 is
/// ever appended, so bytes written this way are UTF-8.
pub trait Out {
    /// Appends `s`.
    fn put(&mut self, s: &str);
    /// Appends one ASCII byte.
    fn put_byte(&mut self, b: u8);
    /// Appends a fragment ([`ChunkOut`] copies it in whole chunks).
    fn put_frag(&mut self, f: Frag<'_>);
    /// Appends each of `starts` followed by `end`: the lines of the plain
    /// list ([`ChunkOut`] checks the room for a whole line at once and
    /// keeps its length in a register meanwhile).
    #[inline]
    fn put_lines<'f>(&mut self, starts: impl Iterator<Item = Frag<'f>>, end: Frag<'_>) {
        for start in starts {
            self.put_frag(start);
            self.put_frag(end);
        }
    }
}

/// Copies `src` (a fragment's [`Frag::chunks`]) to `dst`, of the same
/// length: the first span in one fixed-size move (most pieces end in it),
/// then whole chunks.
#[inline]
fn copy_chunks(dst: &mut [u8], src: &[u8]) {
    let (head, dst) = dst.split_at_mut(SPAN);
    let (first, src) = src.split_at(SPAN);
    head.copy_from_slice(first);
    let (dst, _) = dst.as_chunks_mut::<CHUNK>();
    let (src, _) = src.as_chunks::<CHUNK>();
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
    }
}

/// Renders into a buffer of fixed size (a block of the shared region),
/// copying fragments in whole [`CHUNK`]s: fixed-size moves instead of a
/// `memcpy` call per URL. The bytes a chunk writes past a fragment's end
/// are overwritten by what comes next, or lie past the body's length.
/// Writing past the buffer's end writes nothing and marks the output
/// overflowed: the caller renders again where there is room.
#[derive(Debug)]
pub struct ChunkOut<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflowed: bool,
}

impl<'a> ChunkOut<'a> {
    /// Output into `buf`, empty.
    pub fn new(buf: &'a mut [u8]) -> ChunkOut<'a> {
        ChunkOut {
            buf,
            len: 0,
            overflowed: false,
        }
    }

    /// The length written, or `None` if something did not fit.
    pub fn finish(self) -> Option<usize> {
        (!self.overflowed).then_some(self.len)
    }
}

impl Out for ChunkOut<'_> {
    #[inline]
    fn put(&mut self, s: &str) {
        match self.buf.get_mut(self.len..self.len + s.len()) {
            Some(dst) => {
                dst.copy_from_slice(s.as_bytes());
                self.len += s.len();
            }
            None => self.overflowed = true,
        }
    }

    #[inline]
    fn put_byte(&mut self, b: u8) {
        debug_assert!(b.is_ascii());
        match self.buf.get_mut(self.len) {
            Some(dst) => {
                *dst = b;
                self.len += 1;
            }
            None => self.overflowed = true,
        }
    }

    #[inline]
    fn put_frag(&mut self, f: Frag<'_>) {
        let src = f.chunks();
        match self.buf.get_mut(self.len..self.len + src.len()) {
            Some(dst) => {
                copy_chunks(dst, src);
                self.len += f.len();
            }
            // Near the end of the buffer: exactly, if it fits at all.
            None => match self.buf.get_mut(self.len..self.len + f.len()) {
                Some(dst) => {
                    dst.copy_from_slice(f.bytes());
                    self.len += f.len();
                }
                None => self.overflowed = true,
            },
        }
    }

    #[inline]
    fn put_lines<'f>(&mut self, starts: impl Iterator<Item = Frag<'f>>, end: Frag<'_>) {
        let from_end = end.chunks();
        let mut len = self.len;
        for start in starts {
            let from_start = start.chunks();
            // `end` goes `start.len()` in, at most `from_start.len()`: room
            // for both sets of chunks is room for its overrun too.
            match self
                .buf
                .get_mut(len..len + from_start.len() + from_end.len())
            {
                Some(dst) => {
                    let (at, upto) = (start.len(), start.len() + from_end.len());
                    copy_chunks(&mut dst[..from_start.len()], from_start);
                    copy_chunks(&mut dst[at..upto], from_end);
                    len += start.len() + end.len();
                }
                // Near the end of the buffer: one piece at a time.
                None => {
                    self.len = len;
                    self.put_frag(start);
                    self.put_frag(end);
                    len = self.len;
                }
            }
        }
        self.len = len;
    }
}

impl Out for String {
    fn put(&mut self, s: &str) {
        self.push_str(s);
    }

    fn put_byte(&mut self, b: u8) {
        debug_assert!(b.is_ascii());
        self.push(char::from(b));
    }

    fn put_frag(&mut self, f: Frag<'_>) {
        self.push_str(f.as_str());
    }
}

impl Out for Vec<u8> {
    fn put(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }

    fn put_byte(&mut self, b: u8) {
        debug_assert!(b.is_ascii());
        self.push(b);
    }

    fn put_frag(&mut self, f: Frag<'_>) {
        self.extend_from_slice(f.bytes());
    }
}

/// Appends `n` in decimal without the formatting machinery.
pub fn put_num(out: &mut impl Out, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put(std::str::from_utf8(&digits[i..]).expect("ASCII digits"));
}

/// Appends `c`.
fn put_char(out: &mut impl Out, c: char) {
    out.put(c.encode_utf8(&mut [0u8; 4]));
}

/// Appends `s` with control characters replaced by `?`.
pub fn push_sanitized(out: &mut impl Out, s: &str) {
    if !s.chars().any(char::is_control) {
        out.put(s);
        return;
    }
    for c in s.chars() {
        put_char(out, if c.is_control() { '?' } else { c });
    }
}

/// The bytes [`push_escaped`] replaces (`"`, `&`, `'`, `<`, `>`), all below
/// 64, as a bit mask.
const ESCAPED: u64 = 1 << b'"' | 1 << b'&' | 1 << b'\'' | 1 << b'<' | 1 << b'>';

/// Whether `s` has a byte [`push_escaped`] replaces: a branch-free scan,
/// several times faster than the escaping loop on the hashes and URLs that
/// never need it.
fn needs_escaping(s: &str) -> bool {
    s.bytes().fold(0u64, |acc, b| {
        acc | (u64::from(b < 64) & (ESCAPED >> (b & 63)))
    }) & 1
        != 0
}

/// Appends `s` escaped for XML text and attribute values.
pub fn push_escaped(out: &mut impl Out, s: &str) {
    if !needs_escaping(s) {
        out.put(s);
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let entity = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&apos;",
            _ => continue,
        };
        // The escaped bytes are ASCII, so `i` is a char boundary.
        out.put(&s[start..i]);
        out.put(entity);
        start = i + 1;
    }
    out.put(&s[start..]);
}

/// Writes the header line's opening: `# repo = R arch = A ` or `# path = P `.
pub fn head(out: &mut impl Out, head: &Head<'_>) {
    match head {
        Head::Repo { repo, arch } => {
            out.put("# repo = ");
            push_sanitized(out, repo);
            out.put(" arch = ");
            push_sanitized(out, arch);
            out.put_byte(b' ');
        }
        Head::Path(p) => {
            out.put("# path = ");
            push_sanitized(out, p);
            out.put_byte(b' ');
        }
    }
}

fn notes(out: &mut impl Out, sel: &Selection) {
    for note in &sel.notes {
        match note {
            Note::Netblock => out.put("Using preferred netblock "),
            Note::Asn(n) => {
                out.put("Using ASN ");
                put_num(out, u64::from(*n));
                out.put_byte(b' ');
            }
            Note::Country(c) => {
                out.put("country = ");
                out.put(c.as_str());
                out.put_byte(b' ');
            }
            Note::Global => out.put("country = global "),
        }
    }
    if sel.filtered {
        out.put("protocol = ");
        for (i, p) in sel.protocols.iter().enumerate() {
            if i > 0 {
                out.put_byte(b',');
            }
            out.put(p.as_str());
        }
        out.put_byte(b' ');
    }
}

/// Appends what follows a host's category URL for `target`:
/// `[/subpath][extra]/[file]`.
fn tail(out: &mut impl Out, target: &Target<'_>) {
    if !target.dir.subpath.is_empty() {
        out.put_byte(b'/');
        out.put(&target.dir.subpath);
    }
    out.put(target.extra);
    out.put_byte(b'/');
    if let Some(f) = target.file {
        out.put(f);
    }
}

/// The preferred URL of the host at `slot` among `allowed` protocols.
fn preferred<'a>(
    index: &'a Index,
    target: &Target<'_>,
    slot: u32,
    allowed: ProtocolSet,
) -> Option<Frag<'a>> {
    // `Index` ordered each host's URLs by protocol preference.
    let u = target
        .hosts
        .urls(slot as usize)
        .iter()
        .copied()
        .find(|&u| allowed.contains(index.url_protocol(u)))?;
    index.url(u)
}

/// Appends `n` (at most 100 here) without the formatting machinery, which
/// would cost more than the rest of a metalink line.
fn push_small(out: &mut impl Out, n: u32) {
    if n >= 100 {
        out.put_byte(digit(n / 100));
    }
    if n >= 10 {
        out.put_byte(digit(n / 10 % 10));
    }
    out.put_byte(digit(n % 10));
}

/// The ASCII digit of `d % 10`: pushing one byte is inlined, where a
/// one-byte `put` is a call to `memcpy`.
fn digit(d: u32) -> u8 {
    b'0' + (d % 10) as u8
}

/// The plain list.
pub fn mirrorlist(
    out: &mut impl Out,
    index: &Index,
    h: &Head<'_>,
    target: &Target<'_>,
    sel: &Selection,
    time: bool,
    priority: bool,
) {
    head(out, h);
    notes(out, sel);
    if time {
        out.put("\n# database creation time: ");
        put_num(out, index.cache().built_at);
    }
    out.put_byte(b'\n');
    let allowed = sel.protocols.intersect(ProtocolSet::PLAIN);
    let mut end = String::with_capacity(target.dir.subpath.len() + 32);
    tail(&mut end, target);
    if !priority {
        end.push('\n');
    }
    let padded = Frag::pad(&end);
    let end = Frag::new(&end, padded.as_bytes());
    if allowed == ProtocolSet::PLAIN && !priority {
        // The usual request (no `protocol=`, whose URL was chosen when the
        // cache was loaded), in a loop of its own: it keeps fewer values
        // live than the general one below, so they stay in registers.
        let plain = &target.slots.plain[..];
        let bases = sel
            .picks
            .iter()
            .filter_map(|pick| plain.get(pick.slot as usize).and_then(|&u| index.url(u)));
        out.put_lines(bases, end);
        return;
    }
    let mut rank = 0u32;
    for pick in &sel.picks {
        // Without `protocol=`, the URL was chosen when the cache was loaded.
        let base = if allowed == ProtocolSet::PLAIN {
            target
                .slots
                .plain
                .get(pick.slot as usize)
                .and_then(|&u| index.url(u))
        } else {
            preferred(index, target, pick.slot, allowed)
        };
        if let Some(base) = base {
            out.put_frag(base);
            out.put_frag(end);
            if priority {
                // apt's mirror method: metadata after a tab; lowest first.
                rank += 1;
                out.put("\tpriority:");
                put_num(out, u64::from(rank));
                out.put_byte(b'\n');
            }
        }
    }
}

/// An upper bound of the size of [`mirrorlist`]'s answer for these
/// arguments (every line counted with the longest host URL), plus a span
/// of room for [`ChunkOut`].
pub fn mirrorlist_capacity(
    index: &Index,
    h: &Head<'_>,
    target: &Target<'_>,
    sel: &Selection,
    time: bool,
    priority: bool,
) -> usize {
    // Sanitizing never lengthens: a control character becomes one `?`.
    let head = match h {
        Head::Repo { repo, arch } => "# repo =  arch =  ".len() + repo.len() + arch.len(),
        Head::Path(p) => "# path =  ".len() + p.len(),
    };
    // "Using preferred netblock " is the longest note; then `protocol = `.
    let notes = sel.notes.len() * 25 + "protocol = https,http,ftp,rsync ".len();
    let time = if time { 48 } else { 0 };
    let tail = 2 + target.dir.subpath.len() + target.extra.len() + target.file.map_or(0, str::len);
    let end = if priority {
        "\tpriority:4294967295\n".len()
    } else {
        1
    };
    head + notes + time + 1 + sel.picks.len() * (index.url_max() + tail + end) + SPAN
}

/// The redirect target: the first selected host's https (else http) URL.
/// Browsers and download tools do not follow a redirect to ftp.
pub fn redirect_location(index: &Index, target: &Target<'_>, sel: &Selection) -> Option<String> {
    let allowed = sel.protocols.intersect(
        ProtocolSet::EMPTY
            .with(Protocol::Https)
            .with(Protocol::Http),
    );
    sel.picks.iter().find_map(|pick| {
        let base = preferred(index, target, pick.slot, allowed)?.as_str();
        let mut s = String::with_capacity(base.len() + target.dir.subpath.len() + 32);
        s.push_str(base);
        tail(&mut s, target);
        Some(s)
    })
}

fn metalink_head(out: &mut impl Out, index: &Index) {
    out.put("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    out.put("<metalink version=\"3.0\" xmlns=\"http://www.metalinker.org/\" type=\"dynamic\" pubdate=\"");
    push_escaped(out, index.pubdate());
    out.put(
        "\" generator=\"mirrormanager\" xmlns:mm0=\"http://fedorahosted.org/mirrormanager\">\n",
    );
}

/// A metalink that carries only a comment, as MirrorManager answers errors
/// on `/metalink`: clients see a metalink and give up at once.
pub fn metalink_failure(out: &mut impl Out, index: &Index, message: &str) {
    metalink_head(out, index);
    out.put("<!-- ");
    // A comment may not contain `--`; and escaping keeps `<`/`&` inert for
    // parsers that are lenient about comments.
    let mut escaped = String::with_capacity(message.len());
    push_escaped(&mut escaped, message);
    let mut prev = '\0';
    for c in escaped.chars() {
        if c == '-' && prev == '-' {
            out.put_byte(b' ');
        }
        put_char(out, if c.is_control() && c != '\n' { '?' } else { c });
        prev = c;
    }
    out.put("\n-->\n</metalink>\n");
}

fn details(out: &mut impl Out, d: &FileDetails, indent: &str) {
    if d.timestamp != 0 {
        out.put(indent);
        out.put(" <mm0:timestamp>");
        put_num(out, d.timestamp);
        out.put("</mm0:timestamp>\n");
    }
    if d.size != 0 {
        out.put(indent);
        out.put(" <size>");
        put_num(out, d.size);
        out.put("</size>\n");
    }
    out.put(indent);
    out.put(" <verification>\n");
    for (kind, value) in [
        ("md5", &d.md5),
        ("sha1", &d.sha1),
        ("sha256", &d.sha256),
        ("sha512", &d.sha512),
    ] {
        if !value.is_empty() {
            out.put(indent);
            out.put("  <hash type=\"");
            out.put(kind);
            out.put("\">");
            push_escaped(out, value);
            out.put("</hash>\n");
        }
    }
    out.put(indent);
    out.put(" </verification>\n");
}

/// `mm0:private` attribute of a private host's URLs, after `preference`.
const PRIVATE_ATTR: &str = "\" mm0:private=\"True";

/// What follows each host URL in a metalink for `target`: the escaped
/// `[/subpath][extra]/[file]` and `</url>`. Built once per answer, before
/// [`metalink_capacity`], which counts it at its true length.
pub fn metalink_url_end(target: &Target<'_>) -> String {
    let mut raw = String::with_capacity(target.dir.subpath.len() + 32);
    tail(&mut raw, target);
    let mut end = String::with_capacity(raw.len() + 8);
    push_escaped(&mut end, &raw);
    end.push_str("</url>\n");
    end
}

/// An upper bound of the size of [`metalink`]'s document for these
/// arguments (every URL of every pick counted at the longest URL line's
/// length: no pass over the URLs), so that the body is allocated once
/// instead of growing (and being copied) while `<url>` lines are appended.
/// `end` is [`metalink_url_end`]'s, counted as it is: counting it escaped
/// at worst (six bytes a byte) made the bound over twice the body, and
/// the shared region, which must find the whole bound free, was crowded
/// by bounds rather than bodies (BENCHMARKS.md, change 42).
pub fn metalink_capacity(
    index: &Index,
    file: &FileEntry,
    end: &str,
    target: &Target<'_>,
    sel: &Selection,
) -> usize {
    let line = index.url_line_max() + 3 + PRIVATE_ATTR.len() + end.len();
    let mut n = 1024 + file.name.len() * 6 + file.versions.len() * 1024;
    for d in &file.versions {
        n += (d.md5.len() + d.sha1.len() + d.sha256.len() + d.sha512.len()) * 5;
    }
    let urls: usize = sel
        .picks
        .iter()
        .map(|p| target.hosts.urls(p.slot as usize).len())
        .sum();
    n + urls * line + SPAN
}

/// The metalink for `file` (found in the cache's file details) with the
/// selected hosts' URLs. `target.file` is the file's name; `end` is
/// [`metalink_url_end`]'s for `target`.
pub fn metalink(
    out: &mut impl Out,
    index: &Index,
    file: &FileEntry,
    end: &str,
    target: &Target<'_>,
    sel: &Selection,
) {
    metalink_head(out, index);
    out.put(" <files>\n  <file name=\"");
    push_escaped(out, &file.name);
    out.put("\">\n");
    if let Some(current) = file.versions.first() {
        details(out, current, "  ");
    }
    if file.versions.len() > 1 {
        out.put("   <mm0:alternates>\n");
        for alt in &file.versions[1..] {
            out.put("    <mm0:alternate>\n");
            details(out, alt, "     ");
            out.put("    </mm0:alternate>\n");
        }
        out.put("   </mm0:alternates>\n");
    }
    out.put("   <resources maxconnections=\"1\">\n");
    // Everything after the host's URL is the same on every line: built
    // once, escaped.
    let padded = Frag::pad(end);
    let end = Frag::new(end, padded.as_bytes());
    let mut preference = 100u32;
    for pick in &sel.picks {
        let private = index.flags(pick.host) & PRIVATE != 0;
        for &u in target.hosts.urls(pick.slot as usize) {
            if !sel.protocols.contains(index.url_protocol(u)) {
                continue;
            }
            let (Some(open), Some(close)) = (index.url_open(u), index.url_close(u)) else {
                continue;
            };
            out.put_frag(open);
            push_small(out, preference);
            if private {
                out.put(PRIVATE_ATTR);
            }
            out.put_frag(close);
            out.put_frag(end);
        }
        preference = preference.saturating_sub(1).max(1);
    }
    out.put("   </resources>\n  </file>\n </files>\n</metalink>\n");
}

/// Formats Unix seconds as an RFC 2822 date in GMT, e.g.
/// `Tue, 14 Nov 2023 22:13:20 GMT`.
pub fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = mirrorlist_core::time::civil_from_days(days as i64);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frag::Arena;

    #[test]
    fn dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 GMT");
        // 2100 is not a leap year.
        assert_eq!(http_date(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT");
    }

    #[test]
    fn chunked_output_fits_or_says_it_did_not() {
        let padded = Frag::pad("https://m.example/pub");
        let url = Frag::new("https://m.example/pub", padded.as_bytes());
        // Room for the text but not a whole chunk past it: copied exactly.
        let mut buf = [0u8; 26];
        let mut out = ChunkOut::new(&mut buf);
        out.put_frag(url);
        out.put_byte(b'/');
        out.put("os\n");
        assert_eq!(out.finish(), Some(25));
        assert_eq!(&buf[..25], b"https://m.example/pub/os\n");
        // Room for a whole span: copied in one move, the overrun past the
        // text overwritten by what follows.
        let mut buf = [0u8; SPAN + 4];
        let mut out = ChunkOut::new(&mut buf);
        out.put_frag(url);
        out.put("/os\n");
        assert_eq!(out.finish(), Some(25));
        assert_eq!(&buf[..25], b"https://m.example/pub/os\n");
        // No room: nothing is claimed.
        let mut small = [0u8; 8];
        let mut out = ChunkOut::new(&mut small);
        out.put_frag(url);
        assert_eq!(out.finish(), None);
        let mut out = ChunkOut::new(&mut small);
        out.put("123456789");
        assert_eq!(out.finish(), None);
    }

    /// Lines of the plain list into buffers of every size from too small
    /// to roomy: the bytes a `String` gets, or an overflow, never a line
    /// cut or lost unsaid; pieces longer than a span and empty ones too.
    #[test]
    fn lines_fit_exactly_or_say_they_did_not() {
        let mut arena = Arena::default();
        let bases = [
            "https://m.example/pub".to_owned(),
            format!("https://{}.example/pub", "long".repeat(20)),
            String::new(),
            "rsync://r.example/fedora".to_owned(),
        ];
        for b in &bases {
            arena.push(b);
        }
        let arena = arena.finish();
        for tail in ["/os/\n", &format!("/{}/os/\n", "deep".repeat(30))] {
            let padded = Frag::pad(tail);
            let end = Frag::new(tail, padded.as_bytes());
            let starts = || (0..bases.len() as u32).map(|i| arena.get(i).unwrap());
            let mut want = String::new();
            want.put_lines(starts(), end);
            assert_eq!(
                want,
                bases
                    .iter()
                    .map(|b| format!("{b}{tail}"))
                    .collect::<String>()
            );
            for size in 0..want.len() + 2 * SPAN + tail.len() {
                let mut buf = vec![0u8; size];
                let mut out = ChunkOut::new(&mut buf);
                out.put_lines(starts(), end);
                match out.finish() {
                    Some(len) => assert_eq!(&buf[..len], want.as_bytes(), "size {size}"),
                    None => assert!(size < want.len(), "size {size} holds {}", want.len()),
                }
            }
        }
    }

    #[test]
    fn small_numbers() {
        for n in [0, 1, 9, 10, 42, 99, 100] {
            let mut s = String::new();
            push_small(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        push_escaped(&mut s, "a&b<c>d\"e'fé&");
        assert_eq!(s, "a&amp;b&lt;c&gt;d&quot;e&apos;fé&amp;");
        s.clear();
        for b in 0..=127u8 {
            let one = char::from(b).to_string();
            let mut e = String::new();
            push_escaped(&mut e, &one);
            assert_eq!(needs_escaping(&one), e != one, "{b}");
        }
        s.clear();
        push_sanitized(&mut s, "x\ny\r\tz");
        assert_eq!(s, "x?y??z");
    }
}
