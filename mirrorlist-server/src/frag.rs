//! Short strings kept so that rendering can copy them in whole chunks.
//!
//! An answer is a few hundred short pieces (host URLs of 40–100 bytes, the
//! `<url …>` openings of metalinks) appended one after another; copying
//! each with `memcpy` costs a call and its size dispatch per piece, which
//! measured as the largest item of the server's profile. An [`Arena`]
//! keeps its strings back to back with [`SPAN`] bytes of padding after
//! the last, so any of them can be read as a whole number of chunks, and
//! as at least one span (the bytes past its end belong to the next string
//! or the padding), and [`ChunkOut`](crate::render::ChunkOut) writes them
//! with fixed-size moves, overwriting the bytes past the end with the next
//! piece.

/// Pieces are copied this many bytes at a time.
pub const CHUNK: usize = 32;

/// Every piece can be read as at least this many bytes. Nearly all host
/// URLs and path tails are shorter, so one fixed move of a span copies
/// them whole, with no loop to count chunks; output buffers keep this much
/// room past their end for the overrun.
pub const SPAN: usize = 2 * CHUNK;

/// A span of padding.
const PADDING: &str = "                                                                ";
const _: () = assert!(PADDING.len() == SPAN);

/// The bytes readable from the start of a piece of `len` bytes: its
/// length rounded up to whole chunks, and at least a span.
#[inline]
fn readable(len: usize) -> usize {
    len.next_multiple_of(CHUNK).max(SPAN)
}

/// A piece of UTF-8 text and the readable bytes from its start on: at
/// least its length rounded up to a whole [`CHUNK`], and at least a
/// [`SPAN`].
#[derive(Clone, Copy, Debug)]
pub struct Frag<'a> {
    padded: &'a [u8],
    len: usize,
}

impl<'a> Frag<'a> {
    /// A piece of text with padding of its own: `padded` starts with `text`
    /// and goes on for at least a whole chunk past it (see [`Frag::pad`]).
    ///
    /// # Panics
    ///
    /// When `padded` does not start with `text` or is too short.
    pub fn new(text: &'a str, padded: &'a [u8]) -> Frag<'a> {
        assert!(
            padded.len() >= readable(text.len()) && padded.starts_with(text.as_bytes()),
            "a fragment's padding must follow its text"
        );
        Frag {
            padded,
            len: text.len(),
        }
    }

    /// `text` followed by a chunk of padding, for [`Frag::new`].
    pub fn pad(text: &str) -> String {
        let mut padded = String::with_capacity(text.len() + SPAN);
        padded.push_str(text);
        padded.push_str(PADDING);
        padded
    }

    /// The text's bytes.
    #[inline]
    pub fn bytes(&self) -> &'a [u8] {
        &self.padded[..self.len]
    }

    /// The text (checked again: for the rare outputs that need a `str`).
    pub fn as_str(&self) -> &'a str {
        std::str::from_utf8(self.bytes()).expect("fragments are cut from strings")
    }

    /// The text's length.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The text's bytes and what follows them, the length rounded up to
    /// whole chunks and to at least a span.
    #[inline]
    pub fn chunks(&self) -> &'a [u8] {
        &self.padded[..readable(self.len)]
    }
}

/// Strings back to back in one buffer, with a span of padding at the end.
/// Pieces are cut at the strings' own boundaries, so each is UTF-8.
#[derive(Debug, Default)]
pub struct Arena {
    bytes: Vec<u8>,
    /// Start and length of each string.
    spans: Vec<(u32, u32)>,
    longest: usize,
}

impl Arena {
    /// Appends `s`; its index is the number of strings pushed before it.
    pub fn push(&mut self, s: &str) {
        self.spans.push((self.bytes.len() as u32, s.len() as u32));
        self.bytes.extend_from_slice(s.as_bytes());
        self.longest = self.longest.max(s.len());
    }

    /// Ends the arena: adds the padding and trims the buffers.
    pub fn finish(mut self) -> Arena {
        self.bytes.extend_from_slice(PADDING.as_bytes());
        self.bytes.shrink_to_fit();
        self.spans.shrink_to_fit();
        self
    }

    /// String `i`, if there is one. Only on a finished arena (its padding
    /// is what makes the chunks of the last string readable).
    #[inline]
    pub fn get(&self, i: u32) -> Option<Frag<'_>> {
        let &(start, len) = self.spans.get(i as usize)?;
        Some(Frag {
            padded: self.bytes.get(start as usize..)?,
            len: len as usize,
        })
    }

    /// The length of the longest string.
    pub fn longest(&self) -> usize {
        self.longest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_is_readable_in_whole_chunks() {
        let mut arena = Arena::default();
        let strings = [
            "",
            "a",
            &"b".repeat(31),
            &"c".repeat(32),
            &"d".repeat(33),
            &"e".repeat(64),
            &"f".repeat(65),
        ];
        for s in strings {
            arena.push(s);
        }
        let arena = arena.finish();
        assert_eq!(arena.longest(), 65);
        assert!(arena.get(strings.len() as u32).is_none());
        for (i, s) in strings.iter().enumerate() {
            let f = arena.get(i as u32).unwrap();
            assert_eq!(f.as_str(), *s);
            let want = s.len().next_multiple_of(CHUNK).max(SPAN);
            assert_eq!(f.chunks().len(), want);
            assert!(f.chunks().starts_with(s.as_bytes()));
        }
    }

    #[test]
    fn fragments_of_their_own() {
        let padded = Frag::pad("/os/\n");
        let f = Frag::new("/os/\n", padded.as_bytes());
        assert_eq!(f.chunks().len(), SPAN);
        assert_eq!(f.as_str(), "/os/\n");
    }

    #[test]
    #[should_panic(expected = "padding must follow")]
    fn a_fragment_without_padding_is_refused() {
        let _ = Frag::new("/os/\n", b"/os/\n");
    }
}
