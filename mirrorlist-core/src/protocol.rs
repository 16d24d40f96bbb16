//! The wire protocol between `mirrorlist-client` (the HTTP front end) and
//! `mirrorlist-server`, over a Unix stream socket.
//!
//! # Frames
//!
//! Every message in either direction is one frame:
//!
//! ```text
//! offset  size  field
//!      0     4  length of the rest of the frame, u32 little-endian
//!      4     2  protocol version, u16 little-endian (PROTOCOL_VERSION)
//!      6     4  request id, u32 little-endian
//!     10     …  the payload
//! ```
//!
//! A request's payload is the encoded [`Request`] (see `codec`). A reply's
//! payload is its body first, then the rest:
//!
//! ```text
//!     10     4  body length, u32 little-endian
//!     14     …  the body, as sent to the HTTP client
//!      …     …  the encoded status, content type and headers (see `codec`)
//! ```
//!
//! Requests and reply heads are written and read directly, not through
//! serde: the same bytes `codec` would make (tests hold them to it), at a
//! fraction of the cost per request. They accept each integer only in the
//! shortest of bincode's forms, the one every writer makes, so a frame has
//! exactly one encoding.
//!
//! The body comes first, with a fixed-width length, so that the server can
//! render it straight into its write buffer and fill in the lengths and the
//! head afterwards (a redirect learns its `Location` while rendering): no
//! body is built elsewhere and copied into the frame.
//!
//! When the body length has [`SHARED_BODY`] set, the body is not in the
//! frame: the 8 bytes in its place say where it is in the connection's
//! shared region (offset, then length, both u32 little-endian); see
//! [`crate::shm`]. A connection gets such a region only by asking for one
//! with an [`Endpoint::Attach`] request as its first frame; the reply to it
//! carries the region's file descriptor (`SCM_RIGHTS`).
//!
//! A length above [`MAX_FRAME_LEN`] (or below the 6 bytes of version and id)
//! is a protocol error: the receiver logs it and closes the connection, since
//! it can no longer find the next frame boundary.
//!
//! # Conversation
//!
//! Connections are persistent. The front end writes requests back to back
//! without waiting for replies (pipelining) and the server answers them **in
//! the order they arrived**, each reply carrying its request's id, so a
//! front end may match replies either by order or by id. Many requests per
//! connection and batched reads and writes keep syscalls per request low.
//!
//! # Compatibility
//!
//! The version sits before the payload so that it can be read whatever the
//! payload's encoding. A server that receives a request of another version
//! answers it with a [`Reply`] of status 500 explaining the mismatch (encoded
//! in its own version) instead of hanging or dropping the connection. Bump
//! [`PROTOCOL_VERSION`] whenever the layout, [`Request`] or [`Reply`]
//! change. Version 2 moved the reply body before the head; version 3 added
//! [`Endpoint::Attach`] and bodies in shared memory.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The version of this protocol.
pub const PROTOCOL_VERSION: u16 = 3;
/// The largest frame either side accepts (length field value).
pub const MAX_FRAME_LEN: usize = 8 << 20;
/// Bytes before the payload: length, version, id.
pub const FRAME_HEADER_LEN: usize = 10;
/// Bytes of a reply frame before its body: the frame header and the body
/// length.
pub const REPLY_BODY_OFFSET: usize = FRAME_HEADER_LEN + 4;
/// The flag in a reply's body length saying the body is in the shared
/// region and the frame holds only its [`SharedBody`] reference.
pub const SHARED_BODY: u32 = 1 << 31;

/// What the front end asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Endpoint {
    /// `/mirrorlist`: the plain list (or a redirect).
    Mirrorlist,
    /// `/metalink`: the Metalink document.
    Metalink,
    /// A liveness probe: answered with the cache's build time, no selection.
    Ping,
    /// Asks for a shared region for this connection's reply bodies; valid
    /// only as a connection's first frame. A 200 reply carries the region's
    /// file descriptor; any other status means bodies stay in the frames.
    Attach,
}

/// One request from the front end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The client's address as the front end determined it (peer address or
    /// trusted `X-Forwarded-For`); `None` when unknown.
    pub client_ip: Option<IpAddr>,
    /// Decoded query parameters, in the order the client sent them.
    pub query: Vec<(String, String)>,
}

/// A [`Request`] decoded without copies: its strings borrow the frame
/// (the same encoding; what the server decodes every request into).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRef<'a> {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The client's address, as in [`Request::client_ip`].
    pub client_ip: Option<IpAddr>,
    /// Decoded query parameters, in the order the client sent them.
    pub query: Vec<(&'a str, &'a str)>,
}

impl Request {
    /// The request as a [`RequestRef`] borrowing it.
    pub fn as_request_ref(&self) -> RequestRef<'_> {
        RequestRef {
            endpoint: self.endpoint,
            client_ip: self.client_ip,
            query: self
                .query
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        }
    }
}

/// The server's answer, ready to be sent as HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` of the body.
    pub content_type: String,
    /// Extra headers, e.g. `Location` for a redirect.
    pub headers: Vec<(String, String)>,
    /// The finished body.
    pub body: Vec<u8>,
}

/// A reply decoded without its body, which stays in the frame: for a
/// receiver that can hand out a slice of its read buffer instead of
/// copying every body into a new allocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyHead {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` of the body: borrowed for [`TEXT_PLAIN`] and
    /// [`METALINK`], the server's usual two, so a reply costs no
    /// allocation for it.
    pub content_type: Cow<'static, str>,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Where the body is.
    pub body: BodyAt,
}

/// Where a reply's body is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyAt {
    /// In the frame, in bytes from its start (its length prefix), so
    /// `frame[range]` is the body.
    Frame(std::ops::Range<usize>),
    /// In the connection's shared region.
    Shared(SharedBody),
}

/// Where a body is in a connection's shared region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedBody {
    /// Offset of the body's first byte in the region.
    pub offset: u32,
    /// The body's length.
    pub len: u32,
}

/// The `Content-Type` of plain lists and messages.
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
/// The `Content-Type` of Metalink documents.
pub const METALINK: &str = "application/metalink+xml";

impl Reply {
    /// A plain-text reply.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type: TEXT_PLAIN.into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length field exceeds [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the maximum of {MAX_FRAME_LEN}")]
    TooBig {
        /// The announced length.
        len: usize,
    },
    /// The length field is too small to hold version and id.
    #[error("frame of {len} bytes is too short to hold a version and an id")]
    TooShort {
        /// The announced length.
        len: usize,
    },
    /// The frame is of another protocol version.
    #[error("protocol version {found} is not supported (this side speaks {PROTOCOL_VERSION})")]
    Version {
        /// The version in the frame.
        found: u16,
    },
    /// A reply's payload is too short to hold its body length.
    #[error("reply payload of {len} bytes is too short to hold a body length")]
    ShortReply {
        /// The payload's length.
        len: usize,
    },
    /// A reply's body length field points past the end of its frame.
    #[error("reply body of {len} bytes does not fit in the {room} bytes of its frame")]
    BodyLength {
        /// The announced body length.
        len: usize,
        /// The bytes the frame has for body and head.
        room: usize,
    },
    /// A reply's body is in a shared region the receiver has not attached.
    #[error("reply body is in shared memory, which this connection did not ask for")]
    SharedBody,
    /// A shared body's reference is not 8 bytes long.
    #[error("shared body reference of {len} bytes (must be 8)")]
    SharedRef {
        /// The announced length.
        len: usize,
    },
    /// A reply's status, content type or headers could not be decoded.
    #[error("malformed reply head: {0}")]
    Head(&'static str),
    /// A request's payload could not be decoded.
    #[error("malformed request: {0}")]
    Request(&'static str),
}

/// A complete frame found at the front of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawFrame<'a> {
    /// Protocol version in the frame.
    pub version: u16,
    /// Request id.
    pub id: u32,
    /// The encoded message.
    pub payload: &'a [u8],
    /// Bytes of the buffer the whole frame takes.
    pub consumed: usize,
}

/// Looks for one complete frame at the start of `buf`. `Ok(None)` means more
/// bytes are needed; an error means the stream is unusable.
pub fn parse_frame(buf: &[u8]) -> Result<Option<RawFrame<'_>>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooBig { len });
    }
    if len < FRAME_HEADER_LEN - 4 {
        return Err(FrameError::TooShort { len });
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    Ok(Some(RawFrame {
        version: u16::from_le_bytes(buf[4..6].try_into().expect("2 bytes")),
        id: u32::from_le_bytes(buf[6..10].try_into().expect("4 bytes")),
        payload: &buf[FRAME_HEADER_LEN..4 + len],
        consumed: 4 + len,
    }))
}

/// Appends a frame header: the length field (`len`, or 0 for the caller
/// to fill in), the version, the id.
fn put_header(id: u32, len: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
}

/// Appends a request frame to `out`.
pub fn encode_request(id: u32, req: &Request, out: &mut Vec<u8>) {
    EncodedRequest::from(req).frame_into(id, out);
}

/// A request's payload, encoded before its frame: the front end encodes it
/// on the handler's task straight from the borrowed query pairs (no owned
/// string per pair), and the connection task, which alone knows the id,
/// only frames it. The same bytes as [`encode_request`] writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedRequest(Vec<u8>);

/// Appends `n` as bincode's standard configuration writes every integer
/// wider than a byte (lengths, enum variant indexes): below 251 as one
/// byte, else a marker byte and the value in 2, 4 or 8 bytes.
fn put_varint(n: u64, out: &mut Vec<u8>) {
    if n < 251 {
        out.push(n as u8);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(251);
        out.extend_from_slice(&n.to_le_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(252);
        out.extend_from_slice(&n.to_le_bytes());
    } else {
        out.push(253);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

/// Appends a string as serde and bincode write one: length, bytes.
fn put_str(s: &str, out: &mut Vec<u8>) {
    put_varint(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

impl EncodedRequest {
    /// Encodes a request from its parts: the bytes serde and bincode make
    /// of the [`Request`] with these fields (a test holds the two to it),
    /// written directly, which costs a sixth of going through serde.
    pub fn new<K: AsRef<str>, V: AsRef<str>>(
        endpoint: Endpoint,
        client_ip: Option<IpAddr>,
        query: &[(K, V)],
    ) -> EncodedRequest {
        let strings: usize = query
            .iter()
            .map(|(k, v)| k.as_ref().len() + v.as_ref().len() + 2)
            .sum();
        let mut p = Vec::with_capacity(strings + 24);
        // A unit variant: its index.
        put_varint(endpoint as u64, &mut p);
        // An option: 0 or 1 and the value; an address: the variant's index
        // and the octets as a tuple of bytes (serde's compact form).
        match client_ip {
            None => p.push(0),
            Some(IpAddr::V4(a)) => {
                p.extend_from_slice(&[1, 0]);
                p.extend_from_slice(&a.octets());
            }
            Some(IpAddr::V6(a)) => {
                p.extend_from_slice(&[1, 1]);
                p.extend_from_slice(&a.octets());
            }
        }
        // A sequence: its length, then each pair as a tuple of two strings.
        put_varint(query.len() as u64, &mut p);
        for (k, v) in query {
            put_str(k.as_ref(), &mut p);
            put_str(v.as_ref(), &mut p);
        }
        EncodedRequest(p)
    }

    /// A request without query parameters (a ping, an attach).
    pub fn without_query(endpoint: Endpoint) -> EncodedRequest {
        EncodedRequest::new::<&str, &str>(endpoint, None, &[])
    }

    /// Appends the request's frame, with id `id`, to `out`.
    pub fn frame_into(&self, id: u32, out: &mut Vec<u8>) {
        put_header(id, (FRAME_HEADER_LEN - 4 + self.0.len()) as u32, out);
        out.extend_from_slice(&self.0);
    }
}

impl From<&Request> for EncodedRequest {
    fn from(req: &Request) -> EncodedRequest {
        EncodedRequest::new(req.endpoint, req.client_ip, &req.query)
    }
}

/// Where a reply being written into a buffer starts; see [`begin_reply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a begun reply must be finished with `finish_reply`"]
pub struct ReplyStart {
    at: usize,
    id: u32,
    shared: bool,
}

impl ReplyStart {
    /// How many body bytes have been appended since the reply was begun.
    pub fn body_len(&self, out: &[u8]) -> usize {
        out.len() - self.at - REPLY_BODY_OFFSET
    }
}

/// Begins a reply frame at the end of `out`: the caller appends the body
/// to `out`, then calls [`finish_reply`]. Nothing else may be written to
/// `out` in between.
pub fn begin_reply(id: u32, out: &mut Vec<u8>) -> ReplyStart {
    let at = out.len();
    put_header(id, 0, out);
    // The body length, filled in by `finish_reply`.
    out.extend_from_slice(&[0u8; 4]);
    ReplyStart {
        at,
        id,
        shared: false,
    }
}

/// Moves the body appended since `start` out of the frame: `put` gets it
/// and returns where it placed a copy in the shared region (or `None`
/// when there is no room, and the body stays where it is). Returns whether
/// the body moved. Call it at most once per reply, before [`finish_reply`].
pub fn share_body(
    start: &mut ReplyStart,
    out: &mut Vec<u8>,
    put: impl FnOnce(&[u8]) -> Option<SharedBody>,
) -> bool {
    let body_at = start.at + REPLY_BODY_OFFSET;
    let Some(shared) = put(&out[body_at..]) else {
        return false;
    };
    out.truncate(body_at);
    body_in_region(start, out, shared);
    true
}

/// Says that the body of the reply begun at `start` is in the shared
/// region at `at` (it was written there, not into the frame: nothing may
/// have been appended since [`begin_reply`]). Call it at most once per
/// reply, before [`finish_reply`].
pub fn body_in_region(start: &mut ReplyStart, out: &mut Vec<u8>, at: SharedBody) {
    assert_eq!(start.body_len(out), 0, "a body is in the frame already");
    out.extend_from_slice(&at.offset.to_le_bytes());
    out.extend_from_slice(&at.len.to_le_bytes());
    start.shared = true;
}

/// Completes the reply begun at `start`: appends the head after the body
/// and fills in the lengths. A reply too large for a frame is replaced by a
/// 500 reply saying so, so the stream stays usable.
pub fn finish_reply(
    start: ReplyStart,
    status: u16,
    content_type: &str,
    headers: &[(String, String)],
    out: &mut Vec<u8>,
) {
    let body_len = start.body_len(out);
    put_head(status, content_type, headers, out);
    let len = out.len() - start.at - 4;
    if len > MAX_FRAME_LEN {
        out.truncate(start.at);
        let msg = format!("reply of {body_len} bytes exceeds the maximum frame size\n");
        encode_reply(start.id, &Reply::text(500, msg), out);
        return;
    }
    let at = start.at;
    out[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
    let field = if start.shared {
        body_len as u32 | SHARED_BODY
    } else {
        body_len as u32
    };
    out[at + FRAME_HEADER_LEN..at + REPLY_BODY_OFFSET].copy_from_slice(&field.to_le_bytes());
}

/// Appends a reply frame to `out`. A reply too large for a frame is replaced
/// by a 500 reply saying so, so the stream stays usable.
pub fn encode_reply(id: u32, reply: &Reply, out: &mut Vec<u8>) {
    let start = begin_reply(id, out);
    out.extend_from_slice(&reply.body);
    finish_reply(
        start,
        reply.status,
        &reply.content_type,
        &reply.headers,
        out,
    );
}

fn check_version(frame: &RawFrame<'_>) -> Result<(), FrameError> {
    if frame.version != PROTOCOL_VERSION {
        return Err(FrameError::Version {
            found: frame.version,
        });
    }
    Ok(())
}

/// Decodes a request frame's payload, checking its version.
pub fn decode_request(frame: &RawFrame<'_>) -> Result<Request, FrameError> {
    let r = decode_request_ref(frame)?;
    Ok(Request {
        endpoint: r.endpoint,
        client_ip: r.client_ip,
        query: r
            .query
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    })
}

/// [`decode_request`] without copies: the strings borrow the frame. Read
/// directly, as [`EncodedRequest::new`] writes it.
pub fn decode_request_ref<'a>(frame: &RawFrame<'a>) -> Result<RequestRef<'a>, FrameError> {
    check_version(frame)?;
    read_request(&mut Reader(frame.payload)).map_err(FrameError::Request)
}

fn read_request<'a>(r: &mut Reader<'a>) -> Result<RequestRef<'a>, &'static str> {
    let endpoint = match r.varint()? {
        0 => Endpoint::Mirrorlist,
        1 => Endpoint::Metalink,
        2 => Endpoint::Ping,
        3 => Endpoint::Attach,
        _ => return Err("unknown endpoint"),
    };
    let client_ip = match r.byte()? {
        0 => None,
        1 => Some(match r.varint()? {
            0 => IpAddr::from(<[u8; 4]>::try_from(r.take(4)?).expect("4 bytes")),
            1 => IpAddr::from(<[u8; 16]>::try_from(r.take(16)?).expect("16 bytes")),
            _ => return Err("unknown address family"),
        }),
        _ => return Err("client address neither absent nor present"),
    };
    let count = r.pairs()?;
    // Bounded by the bytes left, but a pair takes 32 bytes in memory and
    // 2 in the frame: a made-up count reserves no more than a real query.
    let mut query = Vec::with_capacity(count.min(PAIRS_RESERVED));
    for _ in 0..count {
        let k = r.str()?;
        let v = r.str()?;
        query.push((k, v));
    }
    r.end()?;
    Ok(RequestRef {
        endpoint,
        client_ip,
        query,
    })
}

/// Decodes a reply frame's payload, checking its version.
pub fn decode_reply(frame: &RawFrame<'_>) -> Result<Reply, FrameError> {
    let head = decode_reply_head(frame)?;
    let BodyAt::Frame(range) = head.body else {
        return Err(FrameError::SharedBody);
    };
    let body = &frame.payload[range.start - FRAME_HEADER_LEN..range.end - FRAME_HEADER_LEN];
    Ok(Reply {
        status: head.status,
        content_type: head.content_type.into_owned(),
        headers: head.headers,
        body: body.to_vec(),
    })
}

/// Decodes a reply frame's payload except the body, checking its version;
/// see [`ReplyHead`].
pub fn decode_reply_head(frame: &RawFrame<'_>) -> Result<ReplyHead, FrameError> {
    check_version(frame)?;
    let p = frame.payload;
    let room = p.len().saturating_sub(4);
    let field = match p.get(..4) {
        Some(b) => u32::from_le_bytes(b.try_into().expect("4 bytes")),
        None => return Err(FrameError::ShortReply { len: p.len() }),
    };
    let len = (field & !SHARED_BODY) as usize;
    if len > room {
        return Err(FrameError::BodyLength { len, room });
    }
    let body = if field & SHARED_BODY != 0 {
        if len != 8 {
            return Err(FrameError::SharedRef { len });
        }
        let word = |i: usize| u32::from_le_bytes(p[i..i + 4].try_into().expect("4 bytes"));
        BodyAt::Shared(SharedBody {
            offset: word(4),
            len: word(8),
        })
    } else {
        BodyAt::Frame(REPLY_BODY_OFFSET..REPLY_BODY_OFFSET + len)
    };
    read_head(&mut Reader(&p[4 + len..]), body).map_err(FrameError::Head)
}

fn read_head(head: &mut Reader<'_>, body: BodyAt) -> Result<ReplyHead, &'static str> {
    let status = u16::try_from(head.varint()?).map_err(|_| "status above 65535")?;
    // The usual two are recognised by their bytes, before (and instead
    // of) a UTF-8 check.
    let content_type = match head.bytes()? {
        b if b == TEXT_PLAIN.as_bytes() => Cow::Borrowed(TEXT_PLAIN),
        b if b == METALINK.as_bytes() => Cow::Borrowed(METALINK),
        b => Cow::Owned(utf8(b)?.to_owned()),
    };
    let count = head.pairs()?;
    let mut headers = Vec::with_capacity(count.min(PAIRS_RESERVED));
    for _ in 0..count {
        let name = head.str()?.to_owned();
        let value = head.str()?.to_owned();
        headers.push((name, value));
    }
    head.end()?;
    Ok(ReplyHead {
        status,
        content_type,
        headers,
        body,
    })
}

/// Appends a reply's head as bincode (standard configuration) and serde
/// encode a `(u16, &str, &[(String, String)])`: written directly, as
/// [`EncodedRequest::new`] writes a request (a test holds both to serde's
/// bytes).
fn put_head(status: u16, content_type: &str, headers: &[(String, String)], out: &mut Vec<u8>) {
    put_varint(u64::from(status), out);
    put_str(content_type, out);
    put_varint(headers.len() as u64, out);
    for (name, value) in headers {
        put_str(name, out);
        put_str(value, out);
    }
}

/// How many query pairs or headers a reader reserves room for before
/// it has read them; more grow the vector as they come.
const PAIRS_RESERVED: usize = 64;

fn utf8(bytes: &[u8]) -> Result<&str, &'static str> {
    std::str::from_utf8(bytes).map_err(|_| "a string is not UTF-8")
}

/// Reads what [`put_varint`] and [`put_str`] write, from the front of
/// its slice; an error says what was wrong.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.0.len() {
            return Err("cut short");
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    /// An integer as [`put_varint`] writes it, and only so: a value in a
    /// wider form than it needs is refused, so that every frame has one
    /// encoding (a peer writing such forms is not speaking this protocol).
    fn varint(&mut self) -> Result<u64, &'static str> {
        let first = self.byte()?;
        let wide = |bytes: &[u8]| {
            let mut word = [0u8; 8];
            word[..bytes.len()].copy_from_slice(bytes);
            u64::from_le_bytes(word)
        };
        let (n, least) = match first {
            0..=250 => return Ok(u64::from(first)),
            251 => (wide(self.take(2)?), 251),
            252 => (wide(self.take(4)?), 1 << 16),
            253 => (wide(self.take(8)?), 1 << 32),
            _ => return Err("integer wider than 64 bits"),
        };
        if n < least {
            return Err("integer not in its shortest form");
        }
        Ok(n)
    }

    /// A string as [`put_str`] writes it, borrowed.
    fn str(&mut self) -> Result<&'a str, &'static str> {
        utf8(self.bytes()?)
    }

    /// The bytes of a string as [`put_str`] writes it, unchecked.
    fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let len = usize::try_from(self.varint()?).map_err(|_| "cut short")?;
        self.take(len)
    }

    /// A count of pairs of strings: each takes at least two bytes, so no
    /// count beyond that is believed (nor allocated for).
    fn pairs(&mut self) -> Result<usize, &'static str> {
        let count = self.varint()?;
        if count > self.0.len() as u64 / 2 {
            return Err("more pairs than bytes left");
        }
        Ok(count as usize)
    }

    fn end(&self) -> Result<(), &'static str> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err("bytes left at the end")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    fn req() -> Request {
        Request {
            endpoint: Endpoint::Metalink,
            client_ip: Some("2001:db8::1".parse().unwrap()),
            query: vec![
                ("repo".into(), "fedora-42".into()),
                ("arch".into(), "x86_64".into()),
            ],
        }
    }

    #[test]
    fn pipelined_round_trip() {
        let mut buf = Vec::new();
        encode_request(1, &req(), &mut buf);
        encode_request(2, &req(), &mut buf);
        let f1 = parse_frame(&buf).unwrap().unwrap();
        assert_eq!(f1.id, 1);
        assert_eq!(decode_request(&f1).unwrap(), req());
        assert_eq!(decode_request_ref(&f1).unwrap(), req().as_request_ref());
        let rest = &buf[f1.consumed..];
        let f2 = parse_frame(rest).unwrap().unwrap();
        assert_eq!(f2.id, 2);
        assert_eq!(f2.consumed, rest.len());
    }

    #[test]
    fn requests_encoded_ahead_are_the_request_itself_framed() {
        let mut want = Vec::new();
        let mut got = Vec::new();
        for r in [
            req(),
            Request {
                endpoint: Endpoint::Metalink,
                client_ip: Some("2001:db8::1".parse().unwrap()),
                query: vec![("path".into(), "pub/f\u{e9}dora/a b".into())],
            },
            Request {
                endpoint: Endpoint::Ping,
                client_ip: None,
                query: Vec::new(),
            },
            // Lengths on both sides of each varint width (250/251 bytes,
            // 65,535/65,536), and more pairs than fit in one byte.
            Request {
                endpoint: Endpoint::Attach,
                client_ip: Some("203.0.113.9".parse().unwrap()),
                query: [250, 251, 65_535, 65_536]
                    .iter()
                    .map(|&n| ("k".repeat(n), "v".repeat(n + 1)))
                    .chain((0..300).map(|i| (i.to_string(), String::new())))
                    .collect(),
            },
        ] {
            // What serde makes of the `Request` itself, framed by hand.
            let mut payload = Vec::new();
            codec::encode_into(&r, &mut payload);
            want.extend_from_slice(&((6 + payload.len()) as u32).to_le_bytes());
            want.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
            want.extend_from_slice(&7u32.to_le_bytes());
            want.extend_from_slice(&payload);
            EncodedRequest::from(&r).frame_into(7, &mut got);
            // Borrowed pairs of another string type encode the same.
            let pairs: Vec<(&str, std::borrow::Cow<'_, str>)> = r
                .query
                .iter()
                .map(|(k, v)| (k.as_str(), v.into()))
                .collect();
            let mut one = Vec::new();
            EncodedRequest::new(r.endpoint, r.client_ip, &pairs).frame_into(7, &mut one);
            let frame = parse_frame(&one).unwrap().unwrap();
            assert_eq!((frame.id, frame.consumed), (7, one.len()));
            assert_eq!(decode_request(&frame).unwrap(), r);
        }
        assert_eq!(got, want);
    }

    /// What serde made of a reply's head before `put_head`: the bytes it
    /// must keep writing.
    #[derive(Serialize)]
    struct MetaRef<'a> {
        status: u16,
        content_type: &'a str,
        headers: &'a [(String, String)],
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Meta {
        status: u16,
        content_type: String,
        headers: Vec<(String, String)>,
    }

    fn head_cases() -> Vec<Reply> {
        let reply = |status, content_type: String, headers| Reply {
            status,
            content_type,
            headers,
            body: b"body".to_vec(),
        };
        vec![
            reply(200, TEXT_PLAIN.into(), Vec::new()),
            reply(200, METALINK.into(), Vec::new()),
            reply(
                302,
                "text/plain".into(),
                vec![("Location".into(), "https://m/x".into())],
            ),
            // Statuses and lengths on both sides of each varint width, and
            // more headers than fit in one byte.
            reply(250, String::new(), Vec::new()),
            reply(
                251,
                "t".repeat(250),
                vec![("a".repeat(251), "b".repeat(65_536))],
            ),
            reply(
                u16::MAX,
                "t".repeat(65_535),
                (0..300)
                    .map(|i| (i.to_string(), "v\u{e9}".into()))
                    .collect(),
            ),
        ]
    }

    #[test]
    fn reply_heads_are_the_bytes_serde_wrote_and_decode_back() {
        for reply in head_cases() {
            let mut ours = Vec::new();
            put_head(reply.status, &reply.content_type, &reply.headers, &mut ours);
            let mut serde = Vec::new();
            let meta = MetaRef {
                status: reply.status,
                content_type: &reply.content_type,
                headers: &reply.headers,
            };
            codec::encode_into(&meta, &mut serde);
            assert_eq!(ours, serde, "status {}", reply.status);
            let back: Meta = codec::decode(&ours).unwrap();
            assert_eq!(
                (back.status, &back.content_type, &back.headers),
                (reply.status, &reply.content_type, &reply.headers)
            );

            let mut buf = Vec::new();
            encode_reply(9, &reply, &mut buf);
            let frame = parse_frame(&buf).unwrap().unwrap();
            let head = decode_reply_head(&frame).unwrap();
            assert_eq!(
                (head.status, &*head.content_type, &head.headers),
                (reply.status, reply.content_type.as_str(), &reply.headers)
            );
            // The usual two borrow their text instead of allocating.
            let usual = reply.content_type == TEXT_PLAIN || reply.content_type == METALINK;
            assert_eq!(matches!(head.content_type, Cow::Borrowed(_)), usual);
            assert_eq!(decode_reply(&frame).unwrap(), reply);
        }
    }

    /// A head cut at any byte, with a byte too many, with a string that
    /// is not UTF-8, an integer marker beyond 64 bits, a status beyond
    /// u16 or a header count beyond what the bytes can hold: each is an
    /// error, never a panic or an allocation of the count.
    #[test]
    fn malformed_reply_heads_are_errors() {
        let frame_of = |head: &[u8]| {
            let mut buf = Vec::new();
            buf.extend_from_slice(&((10 + head.len()) as u32).to_le_bytes());
            buf.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
            buf.extend_from_slice(&3u32.to_le_bytes());
            buf.extend_from_slice(&0u32.to_le_bytes());
            buf.extend_from_slice(head);
            buf
        };
        let head_error = |head: &[u8]| {
            let buf = frame_of(head);
            let frame = parse_frame(&buf).unwrap().unwrap();
            match decode_reply_head(&frame) {
                Err(FrameError::Head(why)) => why,
                other => panic!("{head:?} decoded as {other:?}"),
            }
        };
        let mut good = Vec::new();
        put_head(
            302,
            "text/plain",
            &[("Location".into(), "https://m/\u{e9}".into())],
            &mut good,
        );
        for cut in 0..good.len() {
            head_error(&good[..cut]);
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(head_error(&long), "bytes left at the end");
        // Status 302 takes bytes 0-2 (marker, u16), the content type's
        // length byte 3: 0xff where its first letter was.
        let mut bad = good.clone();
        bad[4] = 0xff;
        assert_eq!(head_error(&bad), "a string is not UTF-8");
        assert_eq!(head_error(&[254]), "integer wider than 64 bits");
        // The least value of each width is accepted, one less is not.
        let shortest = "integer not in its shortest form";
        assert_eq!(head_error(&[251, 250, 0, 0, 0]), shortest);
        assert_eq!(head_error(&[252, 0xff, 0xff, 0, 0, 0, 0]), shortest);
        assert_eq!(
            head_error(&[200, 0, 253, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]),
            shortest
        );
        let mut wide = Vec::new();
        put_head(251, "", &[], &mut wide);
        assert_eq!(wide, [251, 251, 0, 0, 0]);
        assert_eq!(head_error(&[252, 0, 0, 1, 0, 0, 0]), "status above 65535");
        // 2^40 headers announced in a head of a few bytes.
        assert_eq!(
            head_error(&[200, 0, 253, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
            "more pairs than bytes left"
        );
        assert!(FrameError::Head("cut short")
            .to_string()
            .contains("malformed reply head: cut short"));
    }

    #[test]
    fn partial_frames_need_more() {
        let mut buf = Vec::new();
        encode_request(1, &req(), &mut buf);
        for cut in 0..buf.len() {
            assert!(parse_frame(&buf[..cut]).unwrap().is_none(), "cut {cut}");
        }
    }

    #[test]
    fn oversized_and_undersized_frames_are_errors() {
        let big = ((MAX_FRAME_LEN + 1) as u32).to_le_bytes();
        assert!(matches!(parse_frame(&big), Err(FrameError::TooBig { .. })));
        assert!(matches!(
            parse_frame(&2u32.to_le_bytes()),
            Err(FrameError::TooShort { len: 2 })
        ));
    }

    #[test]
    fn version_mismatch_is_reported() {
        let mut buf = Vec::new();
        encode_request(9, &req(), &mut buf);
        buf[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
        let f = parse_frame(&buf).unwrap().unwrap();
        assert_eq!(
            f.id, 9,
            "the id stays readable so the error can be answered"
        );
        assert!(matches!(
            decode_request(&f),
            Err(FrameError::Version { .. })
        ));
    }

    #[test]
    fn garbage_payload_is_an_error() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&9u32.to_le_bytes());
        buf.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&[0xff, 0xff, 0xff]);
        let f = parse_frame(&buf).unwrap().unwrap();
        assert!(matches!(
            decode_request(&f),
            Err(FrameError::Request("integer wider than 64 bits"))
        ));
    }

    /// A request cut at any byte, with a byte too many, an unknown
    /// endpoint, option tag or address family, a string that is not
    /// UTF-8 or a pair count beyond what the bytes can hold: each is an
    /// error naming what was wrong, never a panic.
    #[test]
    fn malformed_requests_are_errors() {
        let error = |payload: &[u8]| {
            let mut buf = Vec::new();
            buf.extend_from_slice(&((6 + payload.len()) as u32).to_le_bytes());
            buf.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
            buf.extend_from_slice(&5u32.to_le_bytes());
            buf.extend_from_slice(payload);
            let frame = parse_frame(&buf).unwrap().unwrap();
            match decode_request_ref(&frame) {
                Err(FrameError::Request(why)) => why,
                other => panic!("{payload:?} decoded as {other:?}"),
            }
        };
        for ip in ["192.0.2.1", "2001:db8::7"] {
            let good =
                EncodedRequest::new(Endpoint::Metalink, ip.parse().ok(), &[("repo", "r\u{e9}")]);
            for cut in 0..good.0.len() {
                error(&good.0[..cut]);
            }
            let mut long = good.0.clone();
            long.push(0);
            assert_eq!(error(&long), "bytes left at the end");
        }
        let good = EncodedRequest::new(Endpoint::Mirrorlist, None, &[("repo", "x")]).0;
        // endpoint 0, no address, one pair: "repo" (length at 3), "x".
        assert_eq!(good, [0, 0, 1, 4, b'r', b'e', b'p', b'o', 1, b'x']);
        let with = |i: usize, b: u8| {
            let mut p = good.clone();
            p[i] = b;
            p
        };
        assert_eq!(error(&with(0, 4)), "unknown endpoint");
        assert_eq!(
            error(&with(1, 2)),
            "client address neither absent nor present"
        );
        assert_eq!(error(&[0, 1, 2, 1, 2, 3, 4, 0]), "unknown address family");
        assert_eq!(error(&with(4, 0xff)), "a string is not UTF-8");
        assert_eq!(error(&with(2, 250)), "more pairs than bytes left");
        // Each integer has one form: the endpoint, the pair count and a
        // length, each written wider than it needs.
        let shortest = "integer not in its shortest form";
        assert_eq!(error(&[251, 0, 0, 0, 0]), shortest);
        assert_eq!(error(&[0, 0, 252, 1, 0, 0, 0, 1, b'k', 1, b'v']), shortest);
        assert_eq!(
            error(&[0, 0, 1, 253, 1, 0, 0, 0, 0, 0, 0, 0, b'k', 1, b'v']),
            shortest
        );
        assert_eq!(
            FrameError::Request("cut short").to_string(),
            "malformed request: cut short"
        );
    }

    #[test]
    fn reply_layout_is_body_then_head() {
        let r = Reply {
            status: 200,
            content_type: "text/plain".into(),
            headers: vec![],
            body: b"abc".to_vec(),
        };
        let mut buf = Vec::new();
        encode_reply(7, &r, &mut buf);
        assert_eq!(&buf[4..6], &PROTOCOL_VERSION.to_le_bytes());
        assert_eq!(&buf[6..10], &7u32.to_le_bytes());
        assert_eq!(&buf[10..14], &3u32.to_le_bytes());
        assert_eq!(&buf[14..17], b"abc");
        let len = u32::from_le_bytes(buf[0..4].try_into().unwrap()) as usize;
        assert_eq!(len + 4, buf.len());
    }

    #[test]
    fn replies_written_in_place_match_encoded_ones() {
        let r = Reply {
            status: 302,
            content_type: "text/plain".into(),
            headers: vec![("Location".into(), "https://m/x".into())],
            body: (0..70_000u32).map(|i| (i % 251) as u8).collect(),
        };
        // The frame built by hand from the documented layout.
        let mut meta = Vec::new();
        codec::encode_into(
            &(r.status, r.content_type.as_str(), r.headers.as_slice()),
            &mut meta,
        );
        let mut a = b"prefix".to_vec();
        let len = 2 + 4 + 4 + r.body.len() + meta.len();
        a.extend_from_slice(&(len as u32).to_le_bytes());
        a.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        a.extend_from_slice(&3u32.to_le_bytes());
        a.extend_from_slice(&(r.body.len() as u32).to_le_bytes());
        a.extend_from_slice(&r.body);
        a.extend_from_slice(&meta);
        let mut b = b"prefix".to_vec();
        let start = begin_reply(3, &mut b);
        b.extend_from_slice(&r.body[..1000]);
        assert_eq!(start.body_len(&b), 1000);
        b.extend_from_slice(&r.body[1000..]);
        finish_reply(start, r.status, &r.content_type, &r.headers, &mut b);
        assert_eq!(a, b);
        let f = parse_frame(&a[6..]).unwrap().unwrap();
        assert_eq!(decode_reply(&f).unwrap(), r);
    }

    #[test]
    fn oversized_reply_becomes_a_500() {
        let mut buf = Vec::new();
        let start = begin_reply(4, &mut buf);
        buf.resize(buf.len() + MAX_FRAME_LEN, b'x');
        finish_reply(start, 200, "text/plain", &[], &mut buf);
        let f = parse_frame(&buf).unwrap().unwrap();
        assert_eq!(f.consumed, buf.len());
        let reply = decode_reply(&f).unwrap();
        assert_eq!((f.id, reply.status), (4, 500));
        assert!(String::from_utf8_lossy(&reply.body).contains("exceeds the maximum frame size"));
    }

    #[test]
    fn bad_body_lengths_are_errors() {
        let mut buf = Vec::new();
        encode_reply(1, &Reply::text(200, "hello"), &mut buf);
        buf[10..14].copy_from_slice(&1000u32.to_le_bytes());
        let f = parse_frame(&buf).unwrap().unwrap();
        assert!(matches!(
            decode_reply_head(&f),
            Err(FrameError::BodyLength { len: 1000, .. })
        ));
        // One byte short of the head: the head no longer decodes.
        buf[10..14].copy_from_slice(&6u32.to_le_bytes());
        let f = parse_frame(&buf).unwrap().unwrap();
        assert!(matches!(decode_reply_head(&f), Err(FrameError::Head(_))));
        let mut short = Vec::new();
        short.extend_from_slice(&8u32.to_le_bytes());
        short.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        short.extend_from_slice(&[0u8; 6]);
        let f = parse_frame(&short).unwrap().unwrap();
        assert!(matches!(
            decode_reply_head(&f),
            Err(FrameError::ShortReply { len: 2 })
        ));
    }

    #[test]
    fn reply_head_locates_the_body_in_the_frame() {
        let r = Reply {
            status: 302,
            content_type: "text/plain".into(),
            headers: vec![("Location".into(), "https://m/x".into())],
            body: b"the body".to_vec(),
        };
        let mut buf = vec![7u8; 3];
        let start = buf.len();
        encode_reply(5, &r, &mut buf);
        let f = parse_frame(&buf[start..]).unwrap().unwrap();
        let head = decode_reply_head(&f).unwrap();
        assert_eq!(
            (head.status, &*head.content_type),
            (302, r.content_type.as_str())
        );
        assert_eq!(head.headers, r.headers);
        let BodyAt::Frame(range) = head.body else {
            panic!("body not in the frame: {:?}", head.body);
        };
        assert_eq!(&buf[start..][range.clone()], b"the body");
        assert_eq!(range.start, REPLY_BODY_OFFSET);
    }

    #[test]
    fn a_shared_body_leaves_only_its_reference_in_the_frame() {
        let mut buf = Vec::new();
        let mut start = begin_reply(4, &mut buf);
        buf.extend_from_slice(&[b'x'; 5000]);
        let mut seen = 0;
        let moved = share_body(&mut start, &mut buf, |body| {
            seen = body.len();
            Some(SharedBody {
                offset: 640,
                len: body.len() as u32,
            })
        });
        assert!(moved);
        assert_eq!(seen, 5000);
        let headers = vec![("Location".to_string(), "https://m/x".to_string())];
        finish_reply(start, 200, "text/plain", &headers, &mut buf);
        assert!(
            buf.len() < 100,
            "the body stayed in the frame: {}",
            buf.len()
        );
        let f = parse_frame(&buf).unwrap().unwrap();
        assert_eq!(f.consumed, buf.len());
        let head = decode_reply_head(&f).unwrap();
        assert_eq!(
            head.body,
            BodyAt::Shared(SharedBody {
                offset: 640,
                len: 5000
            })
        );
        assert_eq!((head.status, head.headers), (200, headers));
        // A receiver that did not attach a region cannot take it.
        assert!(matches!(decode_reply(&f), Err(FrameError::SharedBody)));

        // No room in the region: the body stays in the frame.
        let mut buf = Vec::new();
        let mut start = begin_reply(5, &mut buf);
        buf.extend_from_slice(b"inline");
        assert!(!share_body(&mut start, &mut buf, |_| None));
        finish_reply(start, 200, "text/plain", &[], &mut buf);
        let f = parse_frame(&buf).unwrap().unwrap();
        assert_eq!(decode_reply(&f).unwrap().body, b"inline");

        // A body written straight into the region: the same frame as one
        // moved there.
        let mut direct = Vec::new();
        let mut start = begin_reply(4, &mut direct);
        let at = SharedBody {
            offset: 640,
            len: 5000,
        };
        body_in_region(&mut start, &mut direct, at);
        finish_reply(start, 200, "text/plain", &[], &mut direct);
        let f = parse_frame(&direct).unwrap().unwrap();
        assert_eq!(decode_reply_head(&f).unwrap().body, BodyAt::Shared(at));
    }

    #[test]
    #[should_panic(expected = "a body is in the frame already")]
    fn a_body_cannot_be_in_the_frame_and_the_region() {
        let mut buf = Vec::new();
        let mut start = begin_reply(1, &mut buf);
        buf.push(b'x');
        let at = SharedBody { offset: 64, len: 1 };
        body_in_region(&mut start, &mut buf, at);
    }

    #[test]
    fn a_shared_reference_of_the_wrong_size_is_an_error() {
        let mut buf = Vec::new();
        encode_reply(1, &Reply::text(200, "0123456789"), &mut buf);
        buf[10..14].copy_from_slice(&(SHARED_BODY | 10).to_le_bytes());
        let f = parse_frame(&buf).unwrap().unwrap();
        assert!(matches!(
            decode_reply_head(&f),
            Err(FrameError::SharedRef { len: 10 })
        ));
    }

    #[test]
    fn reply_round_trip() {
        let r = Reply {
            status: 302,
            content_type: "text/plain".into(),
            headers: vec![("Location".into(), "https://m/x".into())],
            body: b"hello".to_vec(),
        };
        let mut buf = Vec::new();
        encode_reply(5, &r, &mut buf);
        let f = parse_frame(&buf).unwrap().unwrap();
        assert_eq!(decode_reply(&f).unwrap(), r);
    }
}
