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
use crate::engine::{ApiError, CloudError, FileKind, FileStat, IoError, IoErrorKind, Platform};

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

pub fn scan(platform: &impl Platform, bundle: &str) -> Result<Trees, ScanError> {
    let prefix = format!("{SYNCED}/{bundle}/");
    let rows = platform
        .meta_scan(&prefix)
        .map_err(|e| ScanError::Meta(ApiError::service(format!("metadata scan failed: {e}"))))?;
    let mut bad_records = 0;
    let mut records: BTreeMap<String, SyncedRecord> = BTreeMap::new();
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
    let guard = records::get::<GuardRecord>(platform, &guard_key(bundle)).map_err(ScanError::Meta)?;
    let listed = match platform.scan_tree(bundle, LOCAL_CLOUD_DIR).map_err(ScanError::Local)? {
        Some(entries) => entries,
        None if records.is_empty() => {
            // First sync: the folder is made. With records, a missing
            // folder is left missing and reads as an empty side (refused).
            platform
                .create_dir_all(bundle, LOCAL_CLOUD_DIR)
                .map_err(ScanError::Local)?;
            Vec::new()
        }
        None => Vec::new(),
    };
    let listing = platform.cloud_list(bundle, "").map_err(ScanError::Cloud)?;

    let mut blocked = Blocked::new();
    let mut skipped = Vec::new();
    let mut remote = RemoteTree::new();
    for (path, why) in listing.skipped {
        skipped.push((path.clone(), format!("in the cloud: {why}")));
        blocked.insert(path);
    }
    for o in listing.objects {
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

    let mut files = Vec::new();
    for entry in listed {
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
            FileKind::File => files.push((path, entry.stat)),
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

    let now = platform.now_ms();
    let fine = platform.fine_stamps(bundle);
    let mut local = LocalTree::new();
    let mut refresh = Vec::new();
    let mut unreadable = Vec::new();
    for (path, stat) in files {
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
                Err(e) if e.kind == IoErrorKind::NotFound => continue,
                // Unreadable: it fails alone and is never taken for a
                // deleted file (its path is blocked).
                Err(e) => {
                    unreadable.push((path.clone(), format!("cannot read it: {e}")));
                    blocked.insert(path);
                    continue;
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
                (None, _) => file.hash = rec.hash.clone(),
            }
        }
        local.insert(path, file);
    }

    let synced = records
        .iter()
        .map(|(p, r)| {
            (
                p.clone(),
                SyncedFile {
                    etag: r.etag.clone(),
                    local: r.local,
                    hash: r.hash.clone(),
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
