//! `mirrorlist-core`: what every part of the mirrorlist service shares.
//!
//! # Layout
//!
//! - [`model`]: the data model: hosts, host-category URLs, directories and
//!   the host sets they share (the carrying hosts grouped for selection,
//!   each distinct set stored once, in flat vectors), repositories,
//!   redirects, file details for metalinks, the continent table.
//! - [`cachefile`]: the cache file (magic, format version, build time,
//!   checksum, payload); atomic writing and strict decoding.
//! - [`protocol`]: the frames the HTTP front end and the server exchange over
//!   a Unix socket (length-prefixed, versioned, pipelined).
//! - [`shm`]: the region of shared memory a connection's reply bodies can
//!   travel in instead of the socket: the server's ring of blocks, the
//!   front end's leases on them, and passing the region's descriptor.
//! - [`time`]: calendar dates from Unix time.
//! - [`limits`]: the open-file limit both servers raise at start.
//! - `codec`: the cache file's payload encoding (bincode through serde),
//!   which the frames write and read by hand.
//!
//! Nothing here needs an async runtime. The only socket I/O is
//! [`shm::send_with_fd`] and [`shm::recv_with_fd`], one `sendmsg` or
//! `recvmsg` each on a Unix socket the caller owns; connecting, accepting
//! and waiting for readiness are left to the server, the front end and the
//! builder, which bring their own runtimes.

// Unsafe code is refused everywhere but in `shm`, which maps memory.
#![deny(unsafe_code)]

pub mod cachefile;
mod codec;
pub mod limits;
pub mod model;
pub mod protocol;
pub mod shm;
pub mod time;

pub use codec::DecodeError;
