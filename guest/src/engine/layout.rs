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
/// folder named by the file's path and the stamp it had when its bytes went
/// (`.evicted/<path>/<inode>-<size>-<mtime_ns>`). A record rolled back to
/// before the eviction (a store restored, a journal cut short) still says
/// the file is local; the mark, which only that very stamp matches, says it
/// was evicted, not deleted, so its cloud copy is never deleted for it.
pub fn evicted_mark(path: &str, stamp: &super::records::LocalStamp) -> String {
    format!(".evicted/{path}/{}-{}-{}", stamp.inode, stamp.size, stamp.mtime_ns)
}
