//! Reply bodies in memory shared between the server and the front end.
//!
//! # Why
//!
//! Measured on this service's hardware, carrying a 41 KB metalink over the
//! Unix socket cost the server ~6.5 µs (the kernel copying it into socket
//! buffers) and the front end ~7 µs (reads, and the copy out), about a
//! third of the whole stack's CPU per request. A body written once into
//! memory both processes map costs one copy in user space, and the front
//! end hands it to the HTTP connection from there; the socket carries only
//! the frame head and an 8-byte reference.
//!
//! # Layout
//!
//! A [`Region`] is a `memfd` the server creates for one connection (on the
//! front end's [`Endpoint::Attach`](crate::protocol::Endpoint::Attach)
//! request), maps, and passes to the front end with `SCM_RIGHTS`
//! ([`send_with_fd`], [`recv_with_fd`]). The server fills it as a ring of
//! blocks ([`Ring`]), each aligned to [`BLOCK_ALIGN`] bytes:
//!
//! ```text
//! offset  size  field
//!      0     4  state: 1 while the front end holds the body; when released,
//!               2 + 2 × the CPU the front end read it on (0: unknown)
//!      4     4  the block's length, header and padding included
//!      8     …  the body
//! ```
//!
//! A block that would not fit before the end of the region is placed at the
//! start instead; the rest of the region is left unused until the ring
//! wraps again. The length word is informative: the server keeps where its
//! blocks are in its own memory.
//!
//! # Ownership
//!
//! The server writes a block only while it is not in use: it allocates at
//! the ring's head, sets the state to 1, copies the body, and only then
//! sends the reference. The front end's [`Lease`] is the body's owner; when
//! it is dropped (the HTTP layer has written the body to its client) it
//! stores 0 with release ordering, and the server reclaims blocks from the
//! ring's tail once it reads 0 with acquire ordering. A body the front end
//! holds for long (a client that does not read) is stepped around (see
//! [`Ring`]). When no room is left, [`Ring::put`] returns `None` and the
//! body travels in its frame as before: shared memory speeds things up, it
//! never makes a reply fail.
//! When every block is released the ring starts again at offset 0, so under
//! ordinary load it keeps touching the same few, cache-warm pages.
//!
//! Those pages are warm in the cache of the CPU that last read them: the
//! front end's, which may not be the server's. Writing over lines another
//! CPU has just read waits for each line to be taken from that CPU, and on
//! a VM whose vCPUs the host places far apart that costs several times
//! the write itself. So the front end's release records its CPU, and when
//! the last body reclaimed was read on another CPU than the server's now,
//! [`Ring::put_with`] renders the body into memory of the server's own and
//! copies it into the block with stores that bypass the caches
//! ([`stream_copy`]): no line is read before it is written. When both run
//! on one CPU, the body is written in place, into warm lines.
//!
//! The two processes trust each other (the server's socket admits only the
//! front end's user): the front end checks every reference against the
//! region's bounds and layout, but cannot stop a broken server from writing
//! into a block it has handed out.

// The one module of this crate with unsafe code: mapping memory, and
// reading and writing it through raw pointers.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::protocol::SharedBody;

/// Blocks start at multiples of this (a cache line, so the front end's
/// release of one block and the server's writes to the next do not share
/// one).
pub const BLOCK_ALIGN: usize = 64;
/// Bytes of a block before its body.
pub const BLOCK_HEADER: usize = 8;
/// The smallest region accepted.
pub const MIN_REGION: usize = 64 * 1024;
/// The largest region accepted: offsets are u32 on the wire.
pub const MAX_REGION: usize = 1 << 30;

/// The state word: odd while the front end holds the block; even once
/// released, and then `2 + 2 × CPU` when the front end knew on which CPU
/// it read the body, `0` when it did not.
const RELEASED: u32 = 0;
const IN_USE: u32 = 1;

fn released_on(cpu: Option<u32>) -> u32 {
    cpu.and_then(|c| c.checked_mul(2)?.checked_add(2))
        .unwrap_or(RELEASED)
}

fn is_released(state: u32) -> bool {
    state & 1 == 0
}

fn release_cpu(state: u32) -> Option<u32> {
    (is_released(state) && state != RELEASED).then(|| state / 2 - 1)
}

/// The CPU this thread runs on now (it may move at any time: a hint).
fn current_cpu() -> Option<u32> {
    // SAFETY: no arguments, no memory; -1 on failure.
    let cpu = unsafe { libc::sched_getcpu() };
    u32::try_from(cpu).ok()
}

/// Why a region or a reference was refused.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    /// The region's size is outside the accepted range or misaligned.
    #[error(
        "shared region of {0} bytes: must be a multiple of {BLOCK_ALIGN} between {MIN_REGION} and {MAX_REGION}"
    )]
    Size(u64),
    /// A reference points outside the region or not at a block's body.
    #[error("shared body at {offset} ({len} bytes) is not a block of the {size}-byte region")]
    Reference {
        /// The reference's offset.
        offset: u32,
        /// The reference's length.
        len: u32,
        /// The region's size.
        size: usize,
    },
    /// A system call failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Checks a region size for both sides.
pub fn check_size(size: u64) -> Result<usize, ShmError> {
    let ok = size.is_multiple_of(BLOCK_ALIGN as u64)
        && size >= MIN_REGION as u64
        && size <= MAX_REGION as u64;
    if ok {
        Ok(size as usize)
    } else {
        Err(ShmError::Size(size))
    }
}

/// A shared, writable mapping of a memfd, unmapped when dropped.
#[derive(Debug)]
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by this value and valid until it is dropped;
// every concurrent access to it goes through atomics (the block states) or
// through blocks that the protocol gives to one side at a time.
unsafe impl Send for Region {}
// SAFETY: as for Send; `&Region` only reads bodies the caller owns and
// stores block states atomically.
unsafe impl Sync for Region {}

impl Region {
    /// Creates a region of `size` bytes (see [`check_size`]), zero-filled,
    /// and returns it with the descriptor to pass to the other process.
    pub fn create(size: usize) -> Result<(Region, OwnedFd), ShmError> {
        let size = check_size(size as u64)?;
        let fd = memfd_create(
            c"mirrorlist-bodies",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )
        .map_err(io::Error::from)?;
        nix::unistd::ftruncate(&fd, size as i64).map_err(io::Error::from)?;
        // Sealed at its size: the other process cannot shrink it under our
        // mapping (touching a page past the end would kill us with SIGBUS).
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        fcntl(&fd, FcntlArg::F_ADD_SEALS(seals)).map_err(io::Error::from)?;
        let region = Region::map(fd.as_fd(), size)?;
        Ok((region, fd))
    }

    /// Maps a region received from the other process; its size comes from
    /// the descriptor. The descriptor may be closed afterwards.
    pub fn open(fd: BorrowedFd<'_>) -> Result<Region, ShmError> {
        let st = nix::sys::stat::fstat(fd).map_err(io::Error::from)?;
        let size = check_size(u64::try_from(st.st_size).unwrap_or(0))?;
        Region::map(fd, size)
    }

    fn map(fd: BorrowedFd<'_>, size: usize) -> Result<Region, ShmError> {
        let len = NonZeroUsize::new(size).ok_or(ShmError::Size(0))?;
        // SAFETY: a fresh mapping at an address the kernel picks; it aliases
        // no Rust object. The memfd is only ever truncated before mapping.
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )
        }
        .map_err(io::Error::from)?;
        Ok(Region {
            ptr: ptr.cast(),
            len: size,
        })
    }

    /// The region's size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: regions have at least [`MIN_REGION`] bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The header word at `at` (0: state, 4: length) of the block at
    /// `block`.
    fn word(&self, block: usize, at: usize) -> &AtomicU32 {
        assert!(block.is_multiple_of(BLOCK_ALIGN) && block + BLOCK_HEADER <= self.len);
        // SAFETY: in bounds (checked above) and 4-aligned (the mapping is
        // page-aligned, blocks are 64-aligned); headers are only ever
        // accessed as atomics, by both processes.
        unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(block + at).cast()) }
    }

    fn state(&self, block: usize) -> &AtomicU32 {
        self.word(block, 0)
    }

    /// The body of a block the caller holds.
    fn body(&self, offset: usize, len: usize) -> &[u8] {
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.len));
        // SAFETY: in bounds (checked above); the block is in use, so the
        // server does not write it while this borrow lives (see the module
        // documentation).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map` with this length, and no
        // borrow of it outlives `self`. munmap of a whole mapping does not
        // fail; if it did, the mapping would only leak.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

/// How a ring is doing, for the logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Bodies placed in the region.
    pub shared: u64,
    /// Bodies that found no room and went in their frames.
    pub full: u64,
    /// Of `shared`, bodies rendered aside and streamed into their block,
    /// because the front end read the ring on another CPU.
    pub streamed: u64,
}

/// How many held blocks (see [`Ring`]) are stepped around at most; with
/// more, the ring counts as full until some are released.
const MAX_HELD: usize = 64;
/// Steps (placing, setting aside, stepping over) one `put` may take before
/// it gives up: the work per reply stays small even when the ring is
/// crowded, and what is not done now is picked up by the next `put`.
const MAX_STEPS: usize = 8;

/// The span of the region the ring prefers to stay in; see
/// [`Ring::candidate`].
const WARM_SPAN: usize = 512 * 1024;

/// A block of the ring: start and length in the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    at: usize,
    len: usize,
    /// Unused space skipped over (the end before a wrap, or the room in
    /// front of a held block), which nobody holds.
    filler: bool,
}

impl Block {
    fn end(&self) -> usize {
        self.at + self.len
    }
}

/// The server's side of a region: allocates blocks at the head, reclaims
/// released ones at the tail. Where the blocks are is kept here, not read
/// back from the shared memory, so nothing the other process writes there
/// can lead the ring astray; only the state words are shared.
///
/// A block the front end holds for long (its HTTP client does not read)
/// would stop the tail, and with it every reuse. So when the ring is full
/// and its oldest block is still held, that block is set aside: the tail
/// moves past it, and allocation steps around it until it is released.
/// Up to [`MAX_HELD`] blocks are set aside so.
#[derive(Debug)]
pub struct Ring {
    region: Region,
    /// Blocks from the tail to the head, in allocation order.
    blocks: VecDeque<Block>,
    /// Blocks still in use that the tail has moved past.
    held: Vec<Block>,
    /// Where the next block goes.
    head: usize,
    /// Where the oldest block of `blocks` starts.
    tail: usize,
    /// The CPU the front end read the last reclaimed body on, if it said.
    reader_cpu: Option<u32>,
    /// Where bodies are rendered before they are streamed into a block.
    scratch: Vec<u8>,
    stats: RingStats,
}

impl Ring {
    /// A ring over a fresh region.
    pub fn new(region: Region) -> Ring {
        Ring {
            region,
            blocks: VecDeque::new(),
            held: Vec::new(),
            head: 0,
            tail: 0,
            reader_cpu: None,
            scratch: Vec::new(),
            stats: RingStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> RingStats {
        self.stats
    }

    /// Copies `body` into a free block and returns where it is, or `None`
    /// when no block of its size is free right now.
    pub fn put(&mut self, body: &[u8]) -> Option<SharedBody> {
        self.put_with(body.len(), |block| {
            block.copy_from_slice(body);
            Some(body.len())
        })
    }

    /// Lends `fill` `max` bytes to write a body into and places the body
    /// in a free block. `fill` returns the body's length (at most `max`;
    /// what lies beyond it is not sent); `None` gives the block back, and
    /// so does this function when no block is free (then `fill` may not
    /// have been called). When the front end reads on this CPU, `fill`
    /// writes straight into a block of `max` bytes, cut to the body's
    /// length after; when it reads on another, into memory of this
    /// ring's, streamed into a block of the body's length (see the
    /// module's documentation).
    pub fn put_with(
        &mut self,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<SharedBody> {
        self.reclaim();
        if self.reader_cpu.is_some() && self.reader_cpu != current_cpu() {
            return self.put_streamed(max, fill);
        }
        self.put_in_place(max, fill)
    }

    fn put_streamed(
        &mut self,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<SharedBody> {
        let mut scratch = std::mem::take(&mut self.scratch);
        if scratch.len() < max {
            scratch.resize(max, 0);
        }
        let len = fill(&mut scratch[..max]).filter(|&len| len <= max);
        let shared = len.and_then(|len| {
            let body = &scratch[..len];
            self.put_in_place(len, |block| {
                stream_copy(block, body);
                Some(len)
            })
        });
        self.scratch = scratch;
        if shared.is_some() {
            self.stats.streamed += 1;
        }
        shared
    }

    fn put_in_place(
        &mut self,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<SharedBody> {
        let at = self.allocate(max)?;
        // SAFETY: `at + BLOCK_HEADER + max` is within the region (see
        // `allocate`), and the block is free: it overlaps no block in
        // `blocks` or `held`, so the front end released it (or never had
        // it) and keeps no reference to it, and it sends none until this
        // function returned the block's reference. The slice lives only
        // for the call of `fill`.
        let block = unsafe {
            std::slice::from_raw_parts_mut(self.region.ptr.as_ptr().add(at + BLOCK_HEADER), max)
        };
        let used = fill(block).filter(|&len| len <= max);
        let last = self.blocks.back_mut().expect("the block just allocated");
        debug_assert_eq!(last.at, at);
        let Some(len) = used else {
            // Given back: the newest block, so the head steps back over it.
            self.blocks.pop_back();
            self.head = at;
            return None;
        };
        let need = (BLOCK_HEADER + len).next_multiple_of(BLOCK_ALIGN);
        last.len = need;
        self.head = (at + need) % self.region.len;
        self.region
            .word(at, 4)
            .store(need as u32, Ordering::Relaxed);
        self.stats.shared += 1;
        Some(SharedBody {
            offset: (at + BLOCK_HEADER) as u32,
            len: len as u32,
        })
    }

    /// Places a block for a body of up to `max` bytes at the head, marks it
    /// in use and returns where it starts; `None` (counted as full) when no
    /// such block is free.
    fn allocate(&mut self, max: usize) -> Option<usize> {
        let need = (BLOCK_HEADER + max).next_multiple_of(BLOCK_ALIGN);
        // Again after `put_with`'s: on the streamed path a whole render
        // has passed since, and the front end may have released more.
        self.reclaim();
        let mut placed = None;
        if need <= self.region.len {
            for _ in 0..MAX_STEPS {
                match self.candidate(need) {
                    Some(at) => match self.held.iter().find(|h| at < h.end() && h.at < at + need) {
                        Some(h) => {
                            // Skip the room in front of the held block and
                            // the block itself.
                            let end = h.end();
                            self.blocks.push_back(Block {
                                at,
                                len: end - at,
                                filler: true,
                            });
                            self.head = end % self.region.len;
                        }
                        None => {
                            placed = Some(at);
                            break;
                        }
                    },
                    None => {
                        if !self.set_oldest_aside() {
                            break;
                        }
                    }
                }
            }
        }
        let Some(at) = placed else {
            self.stats.full += 1;
            return None;
        };
        // `at + need <= size`: see `candidate`.
        self.region.state(at).store(IN_USE, Ordering::Relaxed);
        self.blocks.push_back(Block {
            at,
            len: need,
            filler: false,
        });
        self.head = (at + need) % self.region.len;
        Some(at)
    }

    /// Where a block of `need` bytes fits between the head and the tail
    /// (ignoring held blocks), wrapping to 0 if the end is too short.
    fn candidate(&mut self, need: usize) -> Option<usize> {
        let size = self.region.len;
        if self.blocks.is_empty() {
            return Some(0);
        }
        if self.head > self.tail {
            // Past WARM_SPAN, start over at 0 as soon as the start is free:
            // the ring then keeps to the same few hundred KB, which stay in
            // the CPU caches of both processes; it reaches further only
            // while more than that is in flight.
            let warm = self.head < WARM_SPAN || need > self.tail;
            if warm && need <= size - self.head {
                Some(self.head)
            } else if need <= self.tail {
                // Leave the end as filler and start over at 0.
                self.blocks.push_back(Block {
                    at: self.head,
                    len: size - self.head,
                    filler: true,
                });
                self.head = 0;
                Some(0)
            } else {
                None
            }
        } else if self.head < self.tail && need <= self.tail - self.head {
            Some(self.head)
        } else {
            // head == tail with blocks in use: full.
            None
        }
    }

    /// Moves the oldest block, still in use, out of the way of the tail.
    /// False when there is none or too many are set aside already.
    fn set_oldest_aside(&mut self) -> bool {
        let Some(&oldest) = self.blocks.front() else {
            return false;
        };
        if !self.released(&oldest) {
            if self.held.len() >= MAX_HELD {
                return false;
            }
            self.held.push(oldest);
        }
        self.blocks.pop_front();
        self.tail = oldest.end() % self.region.len;
        if self.blocks.is_empty() {
            self.head = self.tail;
        }
        true
    }

    fn released(&self, b: &Block) -> bool {
        b.filler || is_released(self.region.state(b.at).load(Ordering::Acquire))
    }

    /// Moves the tail past every released block at it, noting the CPU the
    /// front end read the newest of them on, and forgets the held blocks
    /// that were released.
    fn reclaim(&mut self) {
        while let Some(&oldest) = self.blocks.front() {
            if !oldest.filler {
                let state = self.region.state(oldest.at).load(Ordering::Acquire);
                if !is_released(state) {
                    break;
                }
                self.reader_cpu = release_cpu(state);
            }
            self.blocks.pop_front();
            self.tail = oldest.end() % self.region.len;
        }
        if !self.held.is_empty() {
            let region = &self.region;
            self.held
                .retain(|b| !is_released(region.state(b.at).load(Ordering::Acquire)));
        }
        if self.blocks.is_empty() {
            // Empty: start at the beginning, on warm pages (stepping
            // around held blocks if there are any).
            self.head = 0;
            self.tail = 0;
        }
    }
}

/// Copies `src` into `dst` (of the same length) with non-temporal stores
/// where the CPU has them: the lines go to memory without being read
/// first, so writing over lines the other process's CPU has just read
/// does not wait for that CPU to give them up.
pub fn stream_copy(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len());
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
        let n = src.len();
        // Up to the first 16-byte boundary of `dst` with ordinary stores.
        let head = ((dst.as_ptr() as usize).wrapping_neg() & 15).min(n);
        dst[..head].copy_from_slice(&src[..head]);
        let mut i = head;
        // SAFETY: every access is within `i + 16 <= n`, in both slices;
        // `dst.add(i)` is 16-aligned (after `head`); SSE2 is part of
        // x86_64. The fence orders the streamed stores before whatever
        // publishes the block (the reply's frame).
        unsafe {
            let (d, s) = (dst.as_mut_ptr(), src.as_ptr());
            while i + 16 <= n {
                _mm_stream_si128(
                    d.add(i).cast::<__m128i>(),
                    _mm_loadu_si128(s.add(i).cast::<__m128i>()),
                );
                i += 16;
            }
            _mm_sfence();
        }
        dst[i..].copy_from_slice(&src[i..]);
    }
    #[cfg(not(target_arch = "x86_64"))]
    dst.copy_from_slice(src);
}

/// The front end's hold on one body in a region: the body's owner, handed
/// to the HTTP layer (`Bytes::from_owner`); dropping it releases the block.
#[derive(Debug)]
pub struct Lease {
    region: Arc<Region>,
    offset: usize,
    len: usize,
}

impl Lease {
    /// Takes the body a reply refers to, after checking that the reference
    /// is a block's body inside the region.
    pub fn new(region: Arc<Region>, at: SharedBody) -> Result<Lease, ShmError> {
        let (offset, len) = (at.offset as usize, at.len as usize);
        let fits = offset >= BLOCK_HEADER
            && (offset - BLOCK_HEADER).is_multiple_of(BLOCK_ALIGN)
            && offset.checked_add(len).is_some_and(|end| end <= region.len);
        if !fits {
            return Err(ShmError::Reference {
                offset: at.offset,
                len: at.len,
                size: region.len,
            });
        }
        Ok(Lease {
            region,
            offset,
            len,
        })
    }
}

impl AsRef<[u8]> for Lease {
    fn as_ref(&self) -> &[u8] {
        self.region.body(self.offset, self.len)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Dropped once the body is written to its HTTP client, on the CPU
        // that read it.
        self.region
            .state(self.offset - BLOCK_HEADER)
            .store(released_on(current_cpu()), Ordering::Release);
    }
}

/// Sends `bytes` on a Unix stream socket with `fd` attached; returns how
/// many bytes went (the descriptor goes with the first of them).
pub fn send_with_fd(sock: BorrowedFd<'_>, bytes: &[u8], fd: BorrowedFd<'_>) -> io::Result<usize> {
    let fds = [fd.as_raw_fd()];
    let cmsgs = [ControlMessage::ScmRights(&fds)];
    Ok(sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(bytes)],
        &cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?)
}

/// Reads from a Unix stream socket into `buf`, taking the descriptor that
/// came with the bytes, if any (extra ones are closed).
pub fn recv_with_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut space = nix::cmsg_space!([RawFd; 2]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut got = None;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for raw in fds {
                // SAFETY: the kernel just installed this descriptor in our
                // table for us; nothing else owns it.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                if got.is_none() {
                    got = Some(owned);
                }
            }
        }
    }
    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "more descriptors came than expected",
        ));
    }
    Ok((msg.bytes, got))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    /// A ring and the front end's view of the same memory (a second
    /// mapping, as in the other process).
    fn pair(size: usize) -> (Ring, Arc<Region>) {
        let (region, fd) = Region::create(size).unwrap();
        let other = Arc::new(Region::open(fd.as_fd()).unwrap());
        (Ring::new(region), other)
    }

    fn body(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn bodies_cross_to_the_other_mapping_and_come_back_when_released() {
        let (mut ring, other) = pair(MIN_REGION);
        let a = body(1000, 1);
        let b = body(5000, 2);
        let ra = ring.put(&a).unwrap();
        let rb = ring.put(&b).unwrap();
        assert_eq!(ra.offset as usize, BLOCK_HEADER);
        assert_ne!(ra.offset, rb.offset);
        let la = Lease::new(other.clone(), ra).unwrap();
        let lb = Lease::new(other.clone(), rb).unwrap();
        assert_eq!(la.as_ref(), &a[..]);
        assert_eq!(lb.as_ref(), &b[..]);
        drop(la);
        drop(lb);
        // Everything released: the next body starts at the beginning again.
        let rc = ring.put(&b).unwrap();
        assert_eq!(rc.offset as usize, BLOCK_HEADER);
        // (`streamed` depends on where the scheduler ran this thread.)
        let stats = ring.stats();
        assert_eq!((stats.shared, stats.full), (3, 0));
    }

    #[test]
    fn streamed_copies_are_exact_at_every_alignment_and_length() {
        let src = body(300, 7);
        for start in 0..16 {
            for len in [0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 64, 100, 255, 284] {
                let mut dst = vec![0xEE_u8; 300];
                stream_copy(&mut dst[start..start + len], &src[..len]);
                assert_eq!(
                    &dst[start..start + len],
                    &src[..len],
                    "at {start}, {len} bytes"
                );
                assert!(dst[..start].iter().all(|&b| b == 0xEE), "before {start}");
                assert!(
                    dst[start + len..].iter().all(|&b| b == 0xEE),
                    "after {start}+{len}"
                );
            }
        }
    }

    #[test]
    fn the_state_word_says_released_and_where() {
        assert!(!is_released(IN_USE));
        for cpu in [None, Some(0), Some(1), Some(63), Some(4095)] {
            let state = released_on(cpu);
            assert!(is_released(state));
            assert_eq!(release_cpu(state), cpu);
        }
        // A CPU number too large to encode is recorded as unknown.
        assert_eq!(release_cpu(released_on(Some(u32::MAX))), None);
    }

    #[test]
    fn a_release_records_the_cpu_and_a_body_read_elsewhere_is_streamed() {
        let (mut ring, other) = pair(MIN_REGION);
        let a = body(3000, 3);
        let ra = ring.put(&a).unwrap();
        let state = other.state(ra.offset as usize - BLOCK_HEADER);
        assert_eq!(state.load(Ordering::Relaxed), IN_USE);
        drop(Lease::new(other.clone(), ra).unwrap());
        let released = state.load(Ordering::Relaxed);
        assert!(is_released(released));
        // Some CPU (which, the scheduler may have changed since).
        assert!(release_cpu(released).is_some());

        // Released by a front end on a CPU this thread is never on: the
        // next body is rendered aside and streamed, cut to its length.
        let rb = ring.put(&a).unwrap();
        let block = rb.offset as usize - BLOCK_HEADER;
        other
            .state(block)
            .store(released_on(Some(1 << 20)), Ordering::Release);
        let b = body(2000, 4);
        let before = ring.stats().streamed;
        let rc = ring
            .put_with(8000, |out| {
                out[..b.len()].copy_from_slice(&b);
                Some(b.len())
            })
            .unwrap();
        assert_eq!(ring.stats().streamed, before + 1);
        assert_eq!(Lease::new(other.clone(), rc).unwrap().as_ref(), &b[..]);
        assert_eq!(
            other
                .word(rc.offset as usize - BLOCK_HEADER, 4)
                .load(Ordering::Relaxed) as usize,
            (BLOCK_HEADER + b.len()).next_multiple_of(BLOCK_ALIGN)
        );

        // Released by a front end that did not say where: written in place.
        let (mut ring2, other2) = pair(MIN_REGION);
        let rd = ring2.put(&a).unwrap();
        other2
            .state(rd.offset as usize - BLOCK_HEADER)
            .store(RELEASED, Ordering::Release);
        ring2.put(&b).unwrap();
        assert_eq!(ring2.stats().streamed, 0);
    }

    #[test]
    fn bodies_written_in_place_are_cut_to_their_length() {
        let (mut ring, other) = pair(MIN_REGION);
        let a = body(700, 4);
        // Room for 40,000 bytes lent, 700 used: the block keeps 700.
        let ra = ring
            .put_with(40_000, |block| {
                assert_eq!(block.len(), 40_000);
                block[..a.len()].copy_from_slice(&a);
                Some(a.len())
            })
            .unwrap();
        assert_eq!(ra.len, 700);
        let la = Lease::new(other.clone(), ra).unwrap();
        assert_eq!(la.as_ref(), &a[..]);
        // The next block follows the 700 bytes, not the 40,000 lent.
        let rb = ring.put(&body(100, 5)).unwrap();
        assert_eq!(rb.offset as usize, 768 + BLOCK_HEADER);
        // A block given back (None), or a length over what was lent, is
        // not sent and its room is the next block's.
        assert!(ring.put_with(5000, |_| None).is_none());
        assert!(ring.put_with(5000, |_| Some(5001)).is_none());
        let rc = ring.put(&body(10, 6)).unwrap();
        assert_eq!(rc.offset, rb.offset + 128);
        // More than a whole region is never lent.
        assert!(ring.put_with(MIN_REGION, |_| unreachable!()).is_none());
        // (`streamed` depends on where the scheduler ran this thread.)
        let stats = ring.stats();
        assert_eq!((stats.shared, stats.full), (3, 1));
        drop(la);
    }

    #[test]
    fn a_full_ring_says_so_and_a_held_body_is_stepped_around() {
        let (mut ring, other) = pair(MIN_REGION);
        let big = body(20_000, 3);
        let first = Lease::new(other.clone(), ring.put(&big).unwrap()).unwrap();
        let second = Lease::new(other.clone(), ring.put(&big).unwrap()).unwrap();
        let third = Lease::new(other.clone(), ring.put(&big).unwrap()).unwrap();
        // 3 × 20,032 bytes in use of 65,536: a fourth does not fit.
        assert!(ring.put(&big).is_none());
        assert_eq!(ring.stats().full, 1);
        // The second is released while the first (the oldest) is still
        // held, as by a client that does not read: its room is used anyway.
        drop(second);
        let r = ring.put(&big).unwrap();
        assert_eq!(r.offset as usize, 20_032 + BLOCK_HEADER);
        let fourth = Lease::new(other.clone(), r).unwrap();
        assert_eq!(fourth.as_ref(), &big[..]);
        drop(fourth);
        drop(third);
        // While the first stays held, the ring keeps cycling around it.
        let full_before = ring.stats().full;
        for i in 0..1_000usize {
            let b = body(5_000 + i % 3_000, i as u8);
            let lease = Lease::new(other.clone(), ring.put(&b).expect("room")).unwrap();
            assert_eq!(lease.as_ref(), &b[..]);
        }
        assert_eq!(ring.stats().full, full_before);
        assert_eq!(first.as_ref(), &big[..], "the held body was overwritten");
        drop(first);
        assert!(ring.put(&body(60_000, 6)).is_some());
    }

    #[test]
    fn many_held_bodies_are_never_overwritten() {
        let (mut ring, other) = pair(MIN_REGION);
        let mut held: Vec<(Lease, Vec<u8>)> = Vec::new();
        let mut shared = 0;
        for i in 0..20_000usize {
            let b = body(100 + (i * 7919) % 6000, i as u8);
            if let Some(r) = ring.put(&b) {
                shared += 1;
                let lease = Lease::new(other.clone(), r).unwrap();
                // One body in 50 is held long, the rest released at once.
                if i % 50 == 0 {
                    held.push((lease, b));
                }
            }
            if held.len() > 6 {
                let (lease, want) = held.remove((i * 31) % held.len());
                assert_eq!(lease.as_ref(), &want[..], "held body {i} overwritten");
            }
        }
        for (lease, want) in &held {
            assert_eq!(lease.as_ref(), &want[..]);
        }
        assert!(
            shared > 15_000,
            "only {shared} of 20,000 bodies were shared"
        );
    }

    #[test]
    fn many_bodies_of_mixed_sizes_stay_intact_through_wraps() {
        let (mut ring, other) = pair(MIN_REGION);
        let mut held: std::collections::VecDeque<(Lease, Vec<u8>)> = Default::default();
        let mut placed = 0;
        for i in 0..5_000usize {
            let b = body(1 + (i * 7919) % 9000, i as u8);
            match ring.put(&b) {
                Some(r) => {
                    placed += 1;
                    held.push_back((Lease::new(other.clone(), r).unwrap(), b));
                }
                None => assert!(!held.is_empty(), "an empty ring refused {} bytes", b.len()),
            }
            // Release out of order now and then, usually the oldest.
            if held.len() > 4 || i % 3 == 0 {
                let (lease, want) = if i % 5 == 0 && held.len() > 1 {
                    held.remove(1).unwrap()
                } else {
                    held.pop_front().unwrap()
                };
                assert_eq!(lease.as_ref(), &want[..], "body {i} was overwritten");
            }
        }
        for (lease, want) in &held {
            assert_eq!(lease.as_ref(), &want[..]);
        }
        assert!(placed > 4_000, "only {placed} of 5000 bodies were placed");
    }

    #[test]
    fn references_outside_a_block_are_refused() {
        let (_ring, other) = pair(MIN_REGION);
        for (offset, len) in [(0, 10), (9, 10), (8, MIN_REGION as u32), (u32::MAX, 1)] {
            let err = Lease::new(other.clone(), SharedBody { offset, len }).unwrap_err();
            assert!(matches!(err, ShmError::Reference { .. }), "{offset} {len}");
        }
        assert!(Lease::new(
            other,
            SharedBody {
                offset: 72,
                len: 100
            }
        )
        .is_ok());
    }

    #[test]
    fn bad_sizes_are_refused() {
        for size in [0, 4096, MIN_REGION + 1, MAX_REGION + 64] {
            assert!(
                matches!(Region::create(size), Err(ShmError::Size(_))),
                "{size}"
            );
        }
        // A descriptor of a bad size from the other side.
        let fd = memfd_create(c"t", MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&fd, 1000).unwrap();
        assert!(matches!(
            Region::open(fd.as_fd()),
            Err(ShmError::Size(1000))
        ));
    }

    #[test]
    fn the_region_cannot_be_resized_by_the_other_side() {
        let (_region, fd) = Region::create(MIN_REGION).unwrap();
        assert!(nix::unistd::ftruncate(&fd, 4096).is_err());
        assert!(nix::unistd::ftruncate(&fd, 2 * MIN_REGION as i64).is_err());
        let st = nix::sys::stat::fstat(&fd).unwrap();
        assert_eq!(st.st_size as usize, MIN_REGION);
    }

    #[test]
    fn descriptors_pass_over_a_socket() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut ring, fd) = {
            let (region, fd) = Region::create(MIN_REGION).unwrap();
            (Ring::new(region), fd)
        };
        assert_eq!(send_with_fd(a.as_fd(), b"hello", fd.as_fd()).unwrap(), 5);
        drop(fd);
        let mut buf = [0u8; 16];
        let (n, got) = recv_with_fd(b.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        let region = Arc::new(Region::open(got.expect("a descriptor").as_fd()).unwrap());
        let r = ring.put(b"through the socket").unwrap();
        assert_eq!(
            Lease::new(region, r).unwrap().as_ref(),
            b"through the socket"
        );
        // Plain bytes come without one.
        std::io::Write::write_all(&mut &a, b"more").unwrap();
        let (n, got) = recv_with_fd(b.as_fd(), &mut buf).unwrap();
        assert_eq!((&buf[..n], got.is_none()), (&b"more"[..], true));
    }
}
