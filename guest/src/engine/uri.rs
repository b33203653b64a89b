//! `file://<bundle>/data/storage/el2/cloud/<path>` → the app's file.

use super::ApiError;

pub use cloudsync_contract::{is_bundle_name, CLOUD_DIR, GALLERY_BUNDLE, LOCAL_CLOUD_DIR};

/// One file of an app's cloud folder.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AppFile {
    pub bundle: String,
    /// `/`-separated path relative to the app's cloud folder; never empty,
    /// no `.`/`..`/empty parts.
    pub path: String,
}

impl AppFile {
    /// Path of the file in the bundle's local area.
    pub fn local_path(&self) -> String {
        format!("{LOCAL_CLOUD_DIR}/{}", self.path)
    }
}

// The gallery's items are `file://media/Photo/<id>/<displayName>`, kept at
// `Photo/<id>/<displayName>` in its bundle's cloud folder.
const GALLERY_DIR: &str = "/Photo/";

/// The item id of a gallery URI in the seed's short form, which names an
/// item by its id alone: `file:///media/Photo/<id>` (or
/// `file://media/Photo/<id>`); `None` for any other URI.
pub fn gallery_item_id(uri: &str) -> Option<String> {
    let rest = uri
        .strip_prefix("file:///media/Photo/")
        .or_else(|| uri.strip_prefix("file://media/Photo/"))?;
    let id = percent_decode(&format!("/{rest}"))?.strip_prefix('/')?.to_string();
    (!id.is_empty() && !id.contains('/') && id != "." && id != ".." && !uri.contains(['?', '#'])).then_some(id)
}

/// Parses an app file URI and checks that it names the caller's own bundle.
///
/// Empty → 401; anything that is not a file of the caller's cloud folder → 14000002.
pub fn parse_app_uri(uri: &str, caller_bundle: &str) -> Result<AppFile, ApiError> {
    parse_uri_for(uri, caller_bundle, false, false)
}

/// Parses an app file URI or (with `gallery`) a gallery item URI; with
/// `any_bundle` an app URI may name another bundle (the caller holds
/// CLOUDFILE_SYNC_MANAGER).
pub fn parse_uri_for(uri: &str, caller_bundle: &str, any_bundle: bool, gallery: bool) -> Result<AppFile, ApiError> {
    if gallery {
        if let Some(rest) = uri.strip_prefix("file://media/") {
            let path = percent_decode(&format!("/{rest}"))
                .ok_or_else(|| ApiError::invalid_uri(uri, "bad percent-encoding"))?;
            let item = path
                .strip_prefix(GALLERY_DIR)
                .ok_or_else(|| ApiError::invalid_uri(uri, "a gallery item is file://media/Photo/<id>/<name>"))?;
            if uri.contains(['?', '#']) {
                return Err(ApiError::invalid_uri(uri, "a query or fragment is not allowed"));
            }
            check_relative_path(item).map_err(|why| ApiError::invalid_uri(uri, why))?;
            if item.split('/').count() != 2 {
                return Err(ApiError::invalid_uri(
                    uri,
                    "a gallery item is file://media/Photo/<id>/<name>",
                ));
            }
            return Ok(AppFile {
                bundle: GALLERY_BUNDLE.to_string(),
                path: format!("Photo/{item}"),
            });
        }
    }
    parse_app_uri_inner(uri, caller_bundle, any_bundle)
}

fn parse_app_uri_inner(uri: &str, caller_bundle: &str, any_bundle: bool) -> Result<AppFile, ApiError> {
    if uri.is_empty() {
        return Err(ApiError::invalid_parameter("uri must not be empty"));
    }
    let rest = uri
        .strip_prefix("file://")
        .ok_or_else(|| ApiError::invalid_uri(uri, "the scheme must be file://"))?;
    if rest.contains(['?', '#']) {
        return Err(ApiError::invalid_uri(uri, "a query or fragment is not allowed"));
    }
    let slash = rest
        .find('/')
        .ok_or_else(|| ApiError::invalid_uri(uri, "there is no path"))?;
    let (bundle, path) = rest.split_at(slash);
    if bundle.is_empty() {
        return Err(ApiError::invalid_uri(uri, "there is no bundle name"));
    }
    if bundle != caller_bundle && !(any_bundle && bundle != GALLERY_BUNDLE && is_bundle_name(bundle)) {
        return Err(ApiError::invalid_uri(
            uri,
            &format!("it names bundle {bundle:?}, not the caller's {caller_bundle:?}"),
        ));
    }
    let path = percent_decode(path).ok_or_else(|| ApiError::invalid_uri(uri, "bad percent-encoding"))?;
    let relative = path
        .strip_prefix(CLOUD_DIR)
        .ok_or_else(|| ApiError::invalid_uri(uri, "the path is not under /data/storage/el2/cloud"))?;
    check_relative_path(relative).map_err(|why| ApiError::invalid_uri(uri, why))?;
    Ok(AppFile {
        bundle: bundle.to_string(),
        path: relative.to_string(),
    })
}

/// The URI of an app's file (the inverse of [`parse_uri_for`]).
pub fn uri_of(file: &AppFile) -> String {
    if file.bundle == GALLERY_BUNDLE {
        if let Some(item) = file.path.strip_prefix("Photo/") {
            return format!("file://{GALLERY_BUNDLE}/Photo/{}", percent_encode(item));
        }
    }
    format!("file://{}{CLOUD_DIR}{}", file.bundle, percent_encode(&file.path))
}

fn percent_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A path that stays inside its root: no empty, `.` or `..` parts, no NUL.
pub fn check_relative_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("it names the cloud folder itself, not a file");
    }
    if path.contains('\0') {
        return Err("the path contains NUL");
    }
    for part in path.split('/') {
        match part {
            "" => return Err("the path has an empty part"),
            "." | ".." => return Err("the path may not contain . or .."),
            _ => {}
        }
    }
    Ok(())
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::codes;

    const APP: &str = "com.example.notes";

    fn code(uri: &str) -> u32 {
        parse_app_uri(uri, APP).unwrap_err().code
    }

    #[test]
    fn parses_a_file_of_the_callers_cloud_folder() {
        let f = parse_app_uri("file://com.example.notes/data/storage/el2/cloud/a/b%20c.txt", APP).unwrap();
        assert_eq!(f.bundle, APP);
        assert_eq!(f.path, "a/b c.txt");
        assert_eq!(f.local_path(), "cloud/a/b c.txt");
    }

    #[test]
    fn empty_is_a_parameter_error() {
        assert_eq!(code(""), codes::INVALID_PARAMETER);
    }

    #[test]
    fn everything_else_is_an_invalid_uri() {
        for uri in [
            "http://com.example.notes/data/storage/el2/cloud/a",
            "com.example.notes/data/storage/el2/cloud/a",
            "file://other.app/data/storage/el2/cloud/a",
            "file:///data/storage/el2/cloud/a",
            "file://com.example.notes/data/storage/el2/base/a",
            "file://com.example.notes/data/storage/el2/cloud/",
            "file://com.example.notes/data/storage/el2/cloud/../x",
            "file://com.example.notes/data/storage/el2/cloud/a/%2e%2e/%2e%2e/x",
            "file://com.example.notes/data/storage/el2/cloud/a//b",
            "file://com.example.notes/data/storage/el2/cloud/a/./b",
            "file://com.example.notes/data/storage/el2/cloud/a%zz",
            "file://com.example.notes/data/storage/el2/cloud/a?x=1",
            "file://com.example.notes/data/storage/el2/cloud/a%00b",
            "file://com.example.notes",
        ] {
            assert_eq!(code(uri), codes::INVALID_URI, "{uri}");
        }
    }

    #[test]
    fn the_seeds_short_gallery_form_names_an_item_by_its_id() {
        assert_eq!(gallery_item_id("file:///media/Photo/1").as_deref(), Some("1"));
        assert_eq!(gallery_item_id("file://media/Photo/a%20b").as_deref(), Some("a b"));
        for other in [
            "file://media/Photo/1/IMG.jpg",
            "file:///media/Photo/",
            "file:///media/Photo/..",
            "file:///media/Photo/1?x",
            "file://com.a/data/storage/el2/cloud/1",
        ] {
            assert_eq!(gallery_item_id(other), None, "{other}");
        }
    }

    #[test]
    fn gallery_items_and_other_bundles_need_the_right_mode() {
        let g = parse_uri_for("file://media/Photo/12/IMG%201.jpg", APP, false, true).unwrap();
        assert_eq!((g.bundle.as_str(), g.path.as_str()), ("media", "Photo/12/IMG 1.jpg"));
        assert_eq!(uri_of(&g), "file://media/Photo/12/IMG%201.jpg");
        for bad in [
            "file://media/Photo/12",
            "file://media/Video/1/a.mp4",
            "file://media/Photo/1/../a",
        ] {
            assert_eq!(
                parse_uri_for(bad, APP, false, true).unwrap_err().code,
                codes::INVALID_URI,
                "{bad}"
            );
        }
        assert_eq!(code("file://media/Photo/1/a.jpg"), codes::INVALID_URI);
        let other = "file://other.app/data/storage/el2/cloud/a";
        assert_eq!(parse_uri_for(other, APP, true, false).unwrap().bundle, "other.app");
        assert_eq!(
            parse_uri_for(other, APP, false, false).unwrap_err().code,
            codes::INVALID_URI
        );
        let f = parse_app_uri("file://com.example.notes/data/storage/el2/cloud/a%20b", APP).unwrap();
        assert_eq!(uri_of(&f), "file://com.example.notes/data/storage/el2/cloud/a%20b");
    }
}
