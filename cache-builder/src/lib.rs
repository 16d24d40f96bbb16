//! `cache-builder`: reads a mirror description (TOML) and the master tree,
//! and writes the cache file `mirrorlist-server` serves from; or converts
//! MirrorManager2's `mirrorlist_cache.proto` into one (`import-mm2`).
//!
//! A build checks the whole description first (all problems reported at
//! once, each with file and line), then hashes each repository's
//! `repodata/repomd.xml`, carries older versions over from the previous
//! cache as metalink alternates, and replaces the output atomically. A
//! failed build leaves the previous cache in place.
//!
//! # Layout
//!
//! - [`cli`]: the flags and the subcommands (`build`, `import-mm2`,
//!   `inspect`).
//! - [`description`]: the TOML schema as serde types, and parsing with line
//!   numbers for errors.
//! - [`resolve`]: checks the description against itself, the continent
//!   table and the master tree, and converts it to the cache model.
//! - [`continents`]: the country → continent table (bundled or from a file).
//! - [`scan`]: size, time and hashes of `repomd.xml` files.
//! - [`alternates`]: older file versions carried across builds.
//! - [`mod@build`]: the `build` pipeline and its report.
//! - [`mod@inspect`]: the `inspect` report.
//! - [`mm2`]: MirrorManager2's cache: protobuf messages, conversion to our
//!   model, its netblock spellings, the prefix → ASN table check.
//! - [`import`]: the `import-mm2` pipeline and its report.
//! - [`reload`]: SIGHUP to the server after a write.
//! - [`error`]: error types and their exit codes (64 configuration, 1
//!   runtime).

#![forbid(unsafe_code)]

pub mod alternates;
pub mod build;
pub mod cli;
pub mod continents;
pub mod description;
pub mod error;
pub mod import;
pub mod inspect;
pub mod mm2;
pub mod reload;
pub mod resolve;
pub mod scan;

pub use build::{build, BuildOptions, BuildReport};
pub use error::Error;
pub use import::{import_mm2, ImportOptions, ImportReport};
