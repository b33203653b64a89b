//! Where the engine keeps its own files in an app's area (beside the synced
//! folder, never in it).

/// Temp files of downloads under way, and files set aside while evicted.
pub const STAGING_DIR: &str = ".staging";

/// The longer side of a gallery thumbnail, in pixels.
pub const THUMBNAIL_EDGE: u32 = 256;
/// Where a cloud-only gallery item's thumbnail lives in the bundle's area
/// (outside the synced folder).
pub fn thumbnail_path(path: &str) -> String {
    format!(".thumbs/{path}.jpg")
}

/// Where an evicted file leaves its mark, beside the synced folder: a
/// folder named by the file's path and the cloud version it was evicted at
/// (`.evicted/<path>/<hash of the etag>`), made (as `….pending`) before its
/// record turns and completed once the file is gone. A record rolled back
/// to before the eviction (a store restored, a journal cut short) still
/// says the file is local; a completed mark of the record's version says it
/// was evicted, not deleted, so its cloud copy is never deleted for it.
pub fn evicted_mark(path: &str, etag: &str) -> String {
    format!("{}/{:016x}", evicted_marks(path), fnv(etag))
}

/// [`evicted_mark`] while the eviction is under way (never honoured: the
/// file may still be there).
pub fn pending_mark(path: &str, etag: &str) -> String {
    format!("{}.pending", evicted_mark(path, etag))
}

/// The folder of `path`'s marks.
pub fn evicted_marks(path: &str) -> String {
    format!(".evicted/{path}")
}

/// A short stable hash of a name (FNV-1a), for the engine's own file names.
pub fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}
