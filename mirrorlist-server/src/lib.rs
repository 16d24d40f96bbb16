//! `mirrorlist-server`: loads the cache, listens on a Unix socket, selects
//! and orders mirrors for each request and renders the answer; swaps in a
//! new cache on SIGHUP without failing a request.
//!
//! # Layout
//!
//! Pure logic (no I/O, tested without a socket):
//!
//! - [`index`]: lookup structures built once when a cache is loaded.
//! - [`query`]: the request's parameters, parsed and checked.
//! - [`select`]: the tiers (netblock, ASN, country, continent, global) and
//!   the bandwidth-weighted shuffle.
//! - [`exp`]: the shuffle's Exp(1) draws (a ziggurat of our own).
//! - [`shuffle_rng`]: the random numbers they are drawn from (wyrand).
//! - [`keysort`]: the shuffle's sort of its keys (buckets, then insertion).
//! - [`render`]: the plain list, the Metalink document, redirects, errors.
//! - [`frag`]: the index's URL pieces, kept so rendering copies them in
//!   whole chunks.
//! - [`handler`]: one request in, one reply (and an access record) out.
//! - [`geo`], [`asn`]: client address → country (IPv4 from a flat table
//!   read out of the GeoIP database at load), → autonomous system.
//!
//! The edges:
//!
//! - [`config`]: flags and the resolved configuration.
//! - [`socket`]: the listening socket (backlog, permissions, stale files).
//! - [`server`]: connections, pipelined frames, the shared region a front
//!   end can attach (lists and metalinks rendered into its ring),
//!   reload, shutdown, signals.
//! - [`accesslog`]: MirrorManager-format access log, reopened on signal.
//! - [`app`]: wires the above together for `main`.

#![deny(unsafe_code)] // one exception: `server::release_free_memory`

pub mod accesslog;
pub mod app;
pub mod asn;
pub mod config;
pub mod exp;
pub mod frag;
pub mod geo;
pub mod handler;
pub mod index;
pub mod keysort;
pub mod query;
pub mod render;
pub mod select;
pub mod server;
pub mod shuffle_rng;
pub mod socket;
