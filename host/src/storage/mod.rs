//! The device side: each app's sandboxed local area, and the durable
//! metadata store the engine keeps its records in.

mod evict;
mod meta;
mod sandbox;

pub use evict::{evict, EvictError};
pub use meta::{MetaError, MetaStore};
pub use sandbox::{AppAreas, SandboxError};

use std::os::unix::fs::MetadataExt;

/// Seconds and nanoseconds since the epoch as one count of nanoseconds.
pub(crate) fn epoch_ns(secs: i64, nsec: i64) -> u64 {
    (secs.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(nsec.max(0) as u64)
}

/// What tells whether a local file changed: (size, mtime ns, inode).
pub(crate) fn file_stamp(m: &std::fs::Metadata) -> (u64, u64, u64) {
    (m.len(), epoch_ns(m.mtime(), m.mtime_nsec()), m.ino())
}
