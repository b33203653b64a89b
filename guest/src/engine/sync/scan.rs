//! Building the three trees for one bundle: the local folder (one host call
//! that walks it), the cloud listing, and the synced records.
//!
//! Content is read only where a decision needs it: a file whose stamp
//! (size, mtime, ctime, inode) matches its record is unchanged, unless the
//! record was written within the clock's resolution of the file's last
//! change ("racily clean"), in which case it is hashed once and the record
//! refreshed. A re-sync with nothing changed reads no file content.
//!
//! What is neither a file nor absent — a symlink, a FIFO, a name that is not
//! UTF-8, a folder that cannot be read, on either side — is reported and
//! *blocked*: nothing at or below it is planned, so it is never taken for
//! a deleted file.

use std::collections::BTreeMap;

use super::planner::{Blocked, LocalFile, LocalTree, RemoteFile, RemoteTree, SyncedFile, SyncedTree};
use crate::engine::records::{self, GuardRecord, LocalStamp, SyncedRecord, RUN, SYNCED};
use crate::engine::uri::{check_relative_path, LOCAL_CLOUD_DIR};
use crate::engine::{
    ApiError, CloudError, CloudListing, FileKind, FileStat, IoError, IoErrorKind, Platform, TreeEntry,
};

/// A record written this close (ms) after the file's last change may have
/// missed an edit made in the same clock tick; such files are hashed once.
const RACY_MS: u64 = 2_000;

/// The file's last change, as far as its stamps tell (ms).
fn changed_ms(stat: &FileStat) -> u64 {
    stat.mtime_ns.max(stat.ctime_ns) / 1_000_000
}

/// Whether a file whose stamp matches its record may still have been
/// edited within the clock's resolution of the record being written. With
/// `fine` stamps (any write after a stat moves ctime) never: every recorded
/// stamp was taken by a stat after the file's last change.
pub fn racily_clean(record: &SyncedRecord, stat: &FileStat, fine: bool) -> bool {
    !fine && (record.recorded_ms == 0 || changed_ms(stat) + RACY_MS >= record.recorded_ms)
}

/// `run/<bundle>/guard`: the deletion guard's count ([`GuardRecord`]).
pub fn guard_key(bundle: &str) -> String {
    format!("{RUN}/{bundle}/guard")
}

pub struct Trees {
    pub local: LocalTree,
    pub remote: RemoteTree,
    pub synced: SyncedTree,
    pub blocked: Blocked,
    /// Names not synced, and why (symlinks, special files, empty folders, ...).
    pub skipped: Vec<(String, String)>,
    /// Files that could not be read: they fail, alone.
    pub unreadable: Vec<(String, String)>,
    /// Records that could not be decoded (taken as absent: their files read
    /// as new, which ends in a conflict copy or a download, never a deletion).
    pub bad_records: usize,
    /// The deletion guard's count as stored (`None`: never kept yet).
    pub guard: Option<GuardRecord>,
    /// Records to rewrite: racily clean files found unchanged by hashing.
    pub refresh: Vec<(String, Option<Vec<u8>>)>,
}

#[derive(Debug)]
pub enum ScanError {
    Local(IoError),
    Cloud(CloudError),
    Meta(ApiError),
}

fn kind_reason(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Symlink => "a symlink: never followed, never synced",
        FileKind::Special => "a FIFO, socket or device file: only regular files are synced",
        FileKind::Folder => "a folder",
        FileKind::File => "a file",
    }
}

/// Entries, records or cloud names asked of the host per call: however
/// large the folder, no call moves more than a page through the guest.
const PAGE: u32 = 1024;

/// Visits the local walk of `dir` a page at a time; `false` when there is
/// no such folder.
fn walk_pages(
    platform: &impl Platform,
    bundle: &str,
    dir: &str,
    mut visit: impl FnMut(Vec<TreeEntry>),
) -> Result<bool, IoError> {
    let mut after: Option<String> = None;
    loop {
        let Some((page, next)) = platform.walk_page(bundle, dir, after.as_deref(), PAGE)? else {
            return Ok(false);
        };
        visit(page);
        match next {
            Some(n) => after = Some(n),
            None => return Ok(true),
        }
    }
}

/// Visits the cloud's listing of `bundle` a page at a time.
fn list_pages(platform: &impl Platform, bundle: &str, mut visit: impl FnMut(CloudListing)) -> Result<(), CloudError> {
    let mut after: Option<String> = None;
    loop {
        let (page, next) = platform.cloud_list_page(bundle, "", after.as_deref(), PAGE)?;
        visit(page);
        match next {
            Some(n) => after = Some(n),
            None => return Ok(()),
        }
    }
}

pub fn scan(platform: &impl Platform, bundle: &str) -> Result<Trees, ScanError> {
    let prefix = format!("{SYNCED}/{bundle}/");
    let mut bad_records = 0;
    let mut records: BTreeMap<String, SyncedRecord> = BTreeMap::new();
    // Decoded a page at a time: the raw records of a large folder never
    // sit in memory all at once.
    let mut after: Option<String> = None;
    loop {
        let rows = platform
            .meta_scan_page(&prefix, after.as_deref(), PAGE)
            .map_err(|e| ScanError::Meta(ApiError::service(format!("metadata scan failed: {e}"))))?;
        // A host may answer shorter pages than asked: only none is the end.
        if rows.is_empty() {
            break;
        }
        after = rows.last().map(|(k, _)| k.clone());
        for (key, value) in rows {
            let Some(path) = key.strip_prefix(&prefix) else {
                continue;
            };
            match serde_json::from_slice::<SyncedRecord>(&value) {
                Ok(r) if check_relative_path(path).is_ok() => {
                    records.insert(path.to_string(), r);
                }
                _ => bad_records += 1,
            }
        }
    }
    let guard = records::get::<GuardRecord>(platform, &guard_key(bundle)).map_err(ScanError::Meta)?;

    let mut blocked = Blocked::new();
    let mut skipped = Vec::new();
    let mut remote = RemoteTree::new();
    list_pages(platform, bundle, |page| {
        for (path, why) in page.skipped {
            skipped.push((path.clone(), format!("in the cloud: {why}")));
            blocked.insert(path);
        }
        for o in page.objects {
            if o.path.ends_with('/') {
                continue; // a folder marker (S3): no file of its own
            }
            if let Err(why) = check_relative_path(&o.path) {
                skipped.push((o.path.clone(), format!("in the cloud: not a usable file name: {why}")));
                continue;
            }
            let hash = o
                .content_hash
                .as_deref()
                .and_then(|h| h.strip_prefix("sha256:"))
                .map(str::to_ascii_lowercase);
            remote.insert(
                o.path,
                RemoteFile {
                    etag: o.etag,
                    size: o.size,
                    hash,
                },
            );
        }
    })
    .map_err(ScanError::Cloud)?;

    let now = platform.now_ms();
    let fine = platform.fine_stamps(bundle);
    let mut local = LocalTree::new();
    let mut refresh = Vec::new();
    let mut unreadable = Vec::new();
    // Each file is looked at as its page comes: a large folder's walk is
    // never held whole.
    let mut file_seen = |path: String, stat: FileStat, blocked: &mut Blocked| {
        let stamp = LocalStamp::from(stat);
        let local_path = format!("{LOCAL_CLOUD_DIR}/{path}");
        let hash_it = || platform.hash_file(bundle, &local_path);
        let record = records.get(&path);
        let mut file = LocalFile {
            stamp,
            hash: None,
            changed_in_place: false,
        };
        let needs_hash = match record {
            Some(rec) if rec.local == stamp && !rec.cloud_only => racily_clean(rec, &stat, fine),
            // Changed stamp, same size: maybe only touched; the hash tells.
            Some(rec) => rec.hash.is_some() && rec.local.size == stamp.size,
            // New here, and the cloud has one with a known hash: equal
            // content is recorded, not treated as a conflict.
            None => remote
                .get(&path)
                .is_some_and(|r| r.hash.is_some() && r.size == stamp.size),
        };
        if needs_hash {
            match hash_it() {
                Ok(h) => file.hash = Some(h),
                // Gone since the walk: the next scan sees it missing.
                Err(e) if e.kind == IoErrorKind::NotFound => return,
                // Unreadable: it fails alone and is never taken for a
                // deleted file (its path is blocked).
                Err(e) => {
                    unreadable.push((path.clone(), format!("cannot read it: {e}")));
                    blocked.insert(path);
                    return;
                }
            }
        }
        if let Some(rec) = record.filter(|r| r.local == stamp && !r.cloud_only) {
            match (&file.hash, &rec.hash) {
                (Some(now_hash), Some(known)) if !known.eq_ignore_ascii_case(now_hash) => file.changed_in_place = true,
                // Never hashed: what the file holds now cannot be told
                // from what was synced; it goes up again.
                (Some(_), None) => file.changed_in_place = true,
                (Some(h), Some(_)) => {
                    // Unchanged: stop re-hashing once the tick has passed.
                    let mut fresh = rec.clone();
                    fresh.hash = Some(h.clone());
                    if now > changed_ms(&stat) + RACY_MS {
                        fresh.recorded_ms = now;
                    }
                    if &fresh != rec {
                        let key = records::path_key(SYNCED, bundle, &path);
                        refresh.push((key, Some(records::encode(&fresh))));
                    }
                }
                // Unchanged by its stamp: the planner needs no hash of it
                // (the record's is the base), so none is copied.
                (None, _) => {}
            }
        }
        local.insert(path, file);
    };
    let found = walk_pages(platform, bundle, LOCAL_CLOUD_DIR, |page| {
        for entry in page {
            let path = entry.path;
            if let Some(problem) = entry.problem {
                skipped.push((path.clone(), format!("on the device: {problem}")));
                blocked.insert(path);
                continue;
            }
            if check_relative_path(&path).is_err() {
                skipped.push((path.clone(), "on the device: not a usable file name".into()));
                blocked.insert(path);
                continue;
            }
            match entry.stat.kind {
                FileKind::File => file_seen(path, entry.stat, &mut blocked),
                FileKind::Folder => skipped.push((
                    path,
                    "on the device: an empty folder (folders are synced through the files in them)".into(),
                )),
                kind => {
                    skipped.push((path.clone(), format!("on the device: {}", kind_reason(kind))));
                    blocked.insert(path);
                }
            }
        }
    })
    .map_err(ScanError::Local)?;
    if !found && records.is_empty() {
        // First sync: the folder is made. With records, a missing folder
        // is left missing and reads as an empty side (refused).
        platform
            .create_dir_all(bundle, LOCAL_CLOUD_DIR)
            .map_err(ScanError::Local)?;
    }

    // Moved, not copied: a large folder's records are held once.
    let synced = records
        .into_iter()
        .map(|(p, r)| {
            (
                p,
                SyncedFile {
                    etag: r.etag,
                    local: r.local,
                    hash: r.hash,
                    cloud_only: r.cloud_only,
                    first_ms: r.first_ms,
                },
            )
        })
        .collect();
    Ok(Trees {
        local,
        remote,
        synced,
        blocked,
        skipped,
        unreadable,
        bad_records,
        guard,
        refresh,
    })
}
