//! What the engine keeps in the host's durable metadata store.
//!
//! Keys are `<kind>/<bundle>/<path>`; values are JSON so that a person can
//! read them with any redb viewer.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::{ApiError, AppFile, FileStat, Platform};

/// The last state both sides agreed on for one file: the cloud's etag and
/// the local file's identity right after it was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncedRecord {
    pub etag: String,
    pub size: u64,
    pub local: LocalStamp,
    /// sha256 of the content both sides held, where known.
    #[serde(default)]
    pub hash: Option<String>,
    /// The last transfer was an upload (the file reads UPLOAD_SUCCESS).
    #[serde(default)]
    pub uploaded: bool,
    /// When the record was written (epoch ms): a file whose mtime is this
    /// close to it may have been edited again within the clock's resolution
    /// and is hashed on the next scan ("racily clean", as git calls it).
    #[serde(default)]
    pub recorded_ms: u64,
    /// Only the cloud holds the content (a gallery item shown by its
    /// thumbnail); `local` is then meaningless.
    #[serde(default)]
    pub cloud_only: bool,
    /// When the path was first recorded in sync (epoch ms; 0 for records
    /// older than this field): the deletion guard counts deletions of the
    /// files that were in sync when deletions were last confirmed.
    #[serde(default)]
    pub first_ms: u64,
}

/// `run/<bundle>/guard`: the deletion guard's state since deletions were
/// last confirmed (or since the first sync).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardRecord {
    /// When (epoch ms); files first synced up to then are the baseline's.
    pub since_ms: u64,
    /// How many files were in sync then; those of them no longer in sync
    /// are the deletions since.
    pub baseline: u64,
    /// The device folder that was synced (its inode): a folder made anew
    /// since (moved away and re-created, restored) is another folder, and
    /// its missing files are not deletions until confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<u64>,
}

/// A file's state that cannot be derived from the trees: its last upload
/// failed, or its sync was stopped. Holds while the local file is `stamp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStateRecord {
    pub state: super::FileSyncState,
    pub stamp: Option<LocalStamp>,
}

/// (size, mtime, ctime, inode): changes when a local file is replaced or
/// edited — ctime even when a tool puts the mtime back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalStamp {
    pub size: u64,
    pub mtime_ns: u64,
    /// Records written before ctime was kept read as 0: such a file reads
    /// as touched once, is hashed, and its record is refreshed.
    #[serde(default)]
    pub ctime_ns: u64,
    pub inode: u64,
}

impl LocalStamp {
    /// The stamp a cloud-only record carries (no local file).
    pub const NONE: LocalStamp = LocalStamp {
        size: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 0,
    };
}

impl From<FileStat> for LocalStamp {
    fn from(s: FileStat) -> Self {
        LocalStamp {
            size: s.size,
            mtime_ns: s.mtime_ns,
            ctime_ns: s.ctime_ns,
            inode: s.inode,
        }
    }
}

impl LocalStamp {
    /// Whether `st` is the file this stamp was taken of, moved since: a
    /// rename (and a link and an unlink) moves only the ctime.
    pub fn same_file_moved(&self, st: &FileStat) -> bool {
        st.is_file() && st.inode == self.inode && st.size == self.size && st.mtime_ns == self.mtime_ns
    }
}

/// A download's partial data in the staging area. Written before the
/// transfer starts, so a crash can always find (and remove) the temp file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialRecord {
    /// Temp file path in the bundle's local area.
    pub temp: String,
    /// The cloud version the bytes belong to; resuming needs the same one.
    pub etag: String,
    pub size: u64,
    /// Kept on purpose by `stop(uri, false)`; otherwise removed on recovery.
    pub kept: bool,
}

/// A local copy set aside by an eviction, until the eviction is done:
/// recovery removes it (it is the file checked) or puts it back (a save
/// that landed meanwhile).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvictingRecord {
    /// Where the file is set aside, in the bundle's staging area.
    pub aside: String,
    /// The file that was checked (its ctime moves with the rename aside:
    /// identity is inode, size and mtime).
    pub stamp: LocalStamp,
}

pub const SYNCED: &str = "synced";
/// `evicting/<bundle>/<path>`: an eviction under way ([`EvictingRecord`]).
pub const EVICTING: &str = "evicting";
pub const PARTIAL: &str = "partial";
/// A sync run's partial download: kept apart from `CloudFileCache`'s, so
/// that neither ever replaces the other's record.
pub const SYNC_PARTIAL: &str = "syncpartial";
pub const FILE_STATE: &str = "filestate";
/// `access/<bundle>/<path>`: epoch ms of the file's last access through the API.
pub const ACCESS: &str = "access";
/// `run/<bundle>/last-sync`: epoch ms of the last run that completed cleanly.
pub const RUN: &str = "run";

pub fn key(kind: &str, file: &AppFile) -> String {
    path_key(kind, &file.bundle, &file.path)
}

pub fn path_key(kind: &str, bundle: &str, path: &str) -> String {
    format!("{kind}/{bundle}/{path}")
}

/// Every record of `kind` for `bundle`, by path, skipping any that do not parse.
pub fn scan<T: DeserializeOwned>(
    platform: &impl Platform,
    kind: &str,
    bundle: &str,
) -> Result<Vec<(String, T)>, ApiError> {
    range(platform, &format!("{kind}/{bundle}/"), None, None)
}

/// Records by path, and the last path read when there may be more.
pub type Page<T> = (Vec<(String, T)>, Option<String>);

/// Up to `max` records of `prefix` after the path `after`, decoded (those
/// that do not decode are left out), by path; and the last path read when
/// there may be more.
pub fn page<T: DeserializeOwned>(
    p: &impl Platform,
    prefix: &str,
    after: Option<&str>,
    max: usize,
) -> Result<Page<T>, ApiError> {
    let mut out = Vec::new();
    let mut from = after.map(|a| format!("{prefix}{a}"));
    let mut seen = 0;
    // A host may answer shorter pages than asked: only none is the end.
    while seen < max {
        let rows = p
            .meta_scan_page(prefix, from.as_deref(), (max - seen) as u32)
            .map_err(|e| ApiError::service(format!("metadata scan failed: {e}")))?;
        let Some((last, _)) = rows.last() else {
            return Ok((out, None));
        };
        from = Some(last.clone());
        seen += rows.len();
        out.extend(rows.into_iter().filter_map(|(k, v)| {
            let path = k.strip_prefix(prefix)?.to_string();
            Some((path, serde_json::from_slice(&v).ok()?))
        }));
    }
    let last = from.and_then(|k| k.strip_prefix(prefix).map(str::to_string));
    Ok((out, last))
}

/// The records of `prefix` after the path `after` up to `until` (none: to
/// the end), a page at a time, so the host never gathers them all at once.
pub fn range<T: DeserializeOwned>(
    p: &impl Platform,
    prefix: &str,
    after: Option<&str>,
    until: Option<&str>,
) -> Result<Vec<(String, T)>, ApiError> {
    let mut out = Vec::new();
    let mut from = after.map(str::to_string);
    loop {
        let (rows, more) = page(p, prefix, from.as_deref(), 1024)?;
        for (path, value) in rows {
            if until.is_some_and(|u| path.as_str() > u) {
                return Ok(out);
            }
            out.push((path, value));
        }
        match more {
            Some(last) => from = Some(last),
            None => return Ok(out),
        }
    }
}

pub fn get<T: DeserializeOwned>(platform: &impl Platform, key: &str) -> Result<Option<T>, ApiError> {
    match platform
        .meta_get(key)
        .map_err(|e| ApiError::service(format!("metadata read failed: {e}")))?
    {
        None => Ok(None),
        // A record that does not parse is treated as absent: the engine then
        // falls back to the safe path (no resume, no trusted local copy).
        Some(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
    }
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records always serialize")
}
