//! `mirrorlist-server`: loads the cache, listens on a Unix socket, selects
//! and orders mirrors per request and renders the answer.
#![forbid(unsafe_code)]

pub mod asn;
pub mod geo;
pub mod handler;
pub mod index;
pub mod query;
pub mod render;
pub mod select;
