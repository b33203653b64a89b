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
