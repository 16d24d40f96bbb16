//! MirrorManager2's `mirrorlist_cache.proto` messages, written by hand with
//! prost's derive macros (no `protoc`, no build script).
//!
//! Field numbers and types follow MirrorManager2's schema (proto2, package
//! `mirrormanager`); see `MM2-CACHE.md` for what each field means. Two
//! deliberate departures from a generated binding:
//!
//! - Fields the schema marks `required` are `optional` here (an `Option`).
//!   prost does not enforce `required` on decode; it would silently fill in
//!   a zero or an empty string. Keeping the `Option` lets the converter
//!   refuse a message that lacks one, naming the entry.
//! - `repeated` scalars are declared unpacked, the proto2 default MM2 writes.
//!   The decoder accepts both encodings either way; this only makes the test
//!   fixtures byte-for-byte what MirrorManager2 would produce.
//!
//! The wire is the same with either labelling, so files written by MM2 decode
//! unchanged.

/// The whole cache: one message, no framing.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MirrorList {
    /// When the cache was generated, Unix seconds (required).
    #[prost(uint64, optional, tag = "1")]
    pub time: Option<u64>,
    /// Netblock (CIDR text) → country code, overriding GeoIP.
    #[prost(message, repeated, tag = "2")]
    pub netblock_country_cache: Vec<StringStringMap>,
    /// Location name → host ids (unused by any mirrorlist server).
    #[prost(message, repeated, tag = "3")]
    pub location_cache: Vec<StringRepeatedIntMap>,
    /// Host-category-URL id → URL.
    #[prost(message, repeated, tag = "4")]
    pub hc_url_cache: Vec<IntStringMap>,
    /// Directory → file → versions.
    #[prost(message, repeated, tag = "5")]
    pub file_details_cache: Vec<FileDetailsCacheDirectoryType>,
    /// Repository name → disabled.
    #[prost(message, repeated, tag = "6")]
    pub disabled_repository_cache: Vec<StringBoolMap>,
    /// Country → continent, overriding the CSV.
    #[prost(message, repeated, tag = "7")]
    pub country_continent_redirect_cache: Vec<StringStringMap>,
    /// Repository name → the name it redirects to.
    #[prost(message, repeated, tag = "8")]
    pub repository_redirect_cache: Vec<StringStringMap>,
    /// `"repo+arch"` → directory.
    #[prost(message, repeated, tag = "9")]
    pub repo_arch_to_directory_name: Vec<StringStringMap>,
    /// ASN → host ids.
    #[prost(message, repeated, tag = "10")]
    pub host_asn_cache: Vec<IntRepeatedIntMap>,
    /// Host id → max connections (unused by any mirrorlist server).
    #[prost(message, repeated, tag = "11")]
    pub host_max_connection_cache: Vec<IntIntMap>,
    /// Host id → country code.
    #[prost(message, repeated, tag = "12")]
    pub host_country_cache: Vec<IntStringMap>,
    /// Host id → bandwidth.
    #[prost(message, repeated, tag = "13")]
    pub host_bandwidth_cache: Vec<IntIntMap>,
    /// Host id → the client countries it may serve.
    #[prost(message, repeated, tag = "14")]
    pub host_country_allowed_cache: Vec<IntRepeatedStringMap>,
    /// Netblock → host ids.
    #[prost(message, repeated, tag = "15")]
    pub host_netblock_cache: Vec<StringRepeatedIntMap>,
    /// One entry per directory.
    #[prost(message, repeated, tag = "16")]
    pub mirror_list_cache: Vec<MirrorListCacheType>,
}

/// One directory and the hosts that carry it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MirrorListCacheType {
    /// Directory path relative to the master tree (required).
    #[prost(string, optional, tag = "1")]
    pub directory: Option<String>,
    /// Public host ids that carry it.
    #[prost(int64, repeated, packed = "false", tag = "2")]
    pub global: Vec<i64>,
    /// Appended to a host-category URL to reach the directory.
    #[prost(string, optional, tag = "3")]
    pub subpath: Option<String>,
    /// Country → host ids.
    #[prost(message, repeated, tag = "4")]
    pub by_country: Vec<StringRepeatedIntMap>,
    /// Country → host ids reachable over Internet2 (not imported).
    #[prost(message, repeated, tag = "5")]
    pub by_country_internet2: Vec<StringRepeatedIntMap>,
    /// Host id → host-category-URL ids.
    #[prost(message, repeated, tag = "6")]
    pub by_host_id: Vec<IntRepeatedIntMap>,
    /// MirrorManager's "ordered" flag.
    #[prost(bool, optional, tag = "7")]
    pub ordered_mirror_list: Option<bool>,
}

/// The files of one directory.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FileDetailsCacheDirectoryType {
    /// Directory path (required).
    #[prost(string, optional, tag = "1")]
    pub directory: Option<String>,
    /// Its files.
    #[prost(message, repeated, tag = "2")]
    pub file_details_cache_files: Vec<FileDetailsCacheFilesType>,
}

/// One file and its versions, newest first.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FileDetailsCacheFilesType {
    /// File name (required).
    #[prost(string, optional, tag = "1")]
    pub filename: Option<String>,
    /// Versions; the first is current, the rest are alternates.
    #[prost(message, repeated, tag = "2")]
    pub file_details: Vec<FileDetailsType>,
}

/// One version of a file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FileDetailsType {
    /// Modification time, Unix seconds (required).
    #[prost(uint64, optional, tag = "1")]
    pub time_stamp: Option<u64>,
    /// Size in bytes (required).
    #[prost(uint64, optional, tag = "2")]
    pub size: Option<u64>,
    /// SHA-1, hex.
    #[prost(string, optional, tag = "3")]
    pub sha1: Option<String>,
    /// MD5, hex.
    #[prost(string, optional, tag = "4")]
    pub md5: Option<String>,
    /// SHA-256, hex.
    #[prost(string, optional, tag = "5")]
    pub sha256: Option<String>,
    /// SHA-512, hex.
    #[prost(string, optional, tag = "6")]
    pub sha512: Option<String>,
}

/// `string → string`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringStringMap {
    /// Key (required).
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    /// Value (required).
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// `string → [int64]`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringRepeatedIntMap {
    /// Key (required).
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    /// Values.
    #[prost(int64, repeated, packed = "false", tag = "2")]
    pub value: Vec<i64>,
}

/// `int64 → [string]`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IntRepeatedStringMap {
    /// Key (required).
    #[prost(int64, optional, tag = "1")]
    pub key: Option<i64>,
    /// Values.
    #[prost(string, repeated, tag = "2")]
    pub value: Vec<String>,
}

/// `int64 → string`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IntStringMap {
    /// Key (required).
    #[prost(int64, optional, tag = "1")]
    pub key: Option<i64>,
    /// Value (required).
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// `int64 → int64`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IntIntMap {
    /// Key (required).
    #[prost(int64, optional, tag = "1")]
    pub key: Option<i64>,
    /// Value (required).
    #[prost(int64, optional, tag = "2")]
    pub value: Option<i64>,
}

/// `int64 → [int64]`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IntRepeatedIntMap {
    /// Key (required).
    #[prost(int64, optional, tag = "1")]
    pub key: Option<i64>,
    /// Values.
    #[prost(int64, repeated, packed = "false", tag = "2")]
    pub value: Vec<i64>,
}

/// `string → bool`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StringBoolMap {
    /// Key (required).
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    /// Value (required).
    #[prost(bool, optional, tag = "2")]
    pub value: Option<bool>,
}
