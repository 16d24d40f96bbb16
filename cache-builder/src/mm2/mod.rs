//! Reading MirrorManager2's mirrorlist cache (`mirrorlist_cache.proto`), so
//! that a MirrorManager2 site can put our server in place of its own without
//! changing how the data is produced.
//!
//! - [`proto`]: the protobuf messages (prost derive, written by hand).
//! - [`convert`]: decoded messages → our [`Cache`](mirrorlist_core::model::Cache).
//! - [`netblock`]: the three netblock spellings MM2 stores.
//! - [`global_netblocks`]: checking the prefix → ASN table the server loads.
//!
//! The `import-mm2` pipeline around them is in [`crate::import`].

pub mod convert;
pub mod global_netblocks;
pub mod netblock;
pub mod proto;

use std::path::Path;

use prost::Message;

use crate::error::{ConfigError, Diagnostic};

/// Decodes the bytes of a `mirrorlist_cache.proto`; `path` names it in the
/// error, which carries prost's reason.
pub fn decode(bytes: &[u8], path: &Path) -> Result<proto::MirrorList, ConfigError> {
    let invalid = |message: String| {
        ConfigError::Invalid(vec![Diagnostic {
            path: path.to_owned(),
            line: None,
            column: None,
            message,
        }])
    };
    // Our own cache file given by mistake could decode as protobuf garbage;
    // name the mix-up instead.
    if bytes.starts_with(mirrorlist_core::cachefile::MAGIC) {
        return Err(invalid(
            "this is a mirrorlist cache file (cache-builder's output), not \
             MirrorManager2's mirrorlist_cache.proto"
                .into(),
        ));
    }
    proto::MirrorList::decode(bytes)
        .map_err(|e| invalid(format!("not a valid MirrorManager2 mirrorlist cache: {e}")))
}
