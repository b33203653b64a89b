//! Building the three trees for one bundle: the local folder (one host call
//! that walks it), the cloud listing, and the synced records.
//!
//! Content is read only where a decision needs it: a file whose stamp
//! (size, mtime, inode) matches its record is unchanged, unless the record
//! was written within the clock's resolution of the file's mtime ("racily
//! clean"), in which case it is hashed once and the record refreshed. A
//! re-sync with nothing changed reads no file content.

use std::collections::BTreeMap;

use super::planner::{LocalFile, LocalTree, RemoteFile, RemoteTree, SyncedFile, SyncedTree};
use crate::engine::records::{self, LocalStamp, SyncedRecord, SYNCED};
use crate::engine::uri::{check_relative_path, LOCAL_CLOUD_DIR};
use crate::engine::{ApiError, CloudError, IoError, IoErrorKind, Platform};

/// A record written this close (ms) after the file's mtime may have missed
/// an edit made in the same clock tick; such files are hashed once.
const RACY_MS: u64 = 2_000;

/// Whether a file whose stamp matches its record may still have been
/// edited within the clock's resolution of the record being written.
pub fn racily_clean(record: &SyncedRecord, stat: &crate::engine::FileStat) -> bool {
    record.recorded_ms == 0 || stat.mtime_ns / 1_000_000 + RACY_MS >= record.recorded_ms
}

pub struct Trees {
    pub local: LocalTree,
    pub remote: RemoteTree,
    pub synced: SyncedTree,
    /// Records to rewrite: racily clean files found unchanged by hashing.
    pub refresh: Vec<(String, Option<Vec<u8>>)>,
}

#[derive(Debug)]
pub enum ScanError {
    Local(IoError),
    Cloud(CloudError),
    Meta(ApiError),
}

pub fn scan(platform: &impl Platform, bundle: &str) -> Result<Trees, ScanError> {
    let records: BTreeMap<String, SyncedRecord> = records::scan(platform, SYNCED, bundle)
        .map_err(ScanError::Meta)?
        .into_iter()
        .collect();
    let listed = match platform.scan_tree(bundle, LOCAL_CLOUD_DIR).map_err(ScanError::Local)? {
        Some(files) => files,
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
    let objects = platform.cloud_list(bundle, "").map_err(ScanError::Cloud)?;

    let mut remote = RemoteTree::new();
    for o in objects {
        if o.path.ends_with('/') || check_relative_path(&o.path).is_err() {
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

    let now = platform.now_ms();
    let mut local = LocalTree::new();
    let mut refresh = Vec::new();
    for (path, stat) in listed {
        if stat.is_dir || check_relative_path(&path).is_err() {
            continue;
        }
        let stamp = LocalStamp::from(stat);
        let local_path = format!("{LOCAL_CLOUD_DIR}/{path}");
        let hash_it = || platform.hash_file(bundle, &local_path).map_err(ScanError::Local);
        let record = records.get(&path);
        let mut file = LocalFile {
            stamp,
            hash: None,
            changed_in_place: false,
        };
        match record {
            Some(rec) if rec.local == stamp && !rec.cloud_only => {
                let racy = racily_clean(rec, &stat);
                if racy {
                    let h = match hash_it() {
                        Ok(h) => h,
                        // Gone since the walk: the next scan sees it missing.
                        Err(ScanError::Local(e)) if e.kind == IoErrorKind::NotFound => continue,
                        // Any other failure fails the scan: a file that could
                        // not be read is never taken for a deleted one.
                        Err(e) => return Err(e),
                    };
                    match &rec.hash {
                        Some(known) if !known.eq_ignore_ascii_case(&h) => file.changed_in_place = true,
                        // Never hashed: what the file holds now cannot be
                        // told from what was synced; it goes up again.
                        None => file.changed_in_place = true,
                        Some(_) => {
                            // Unchanged: stop re-hashing once the tick has passed.
                            let mut fresh = rec.clone();
                            fresh.hash = Some(h.clone());
                            if now > stat.mtime_ns / 1_000_000 + RACY_MS {
                                fresh.recorded_ms = now;
                            }
                            if &fresh != rec {
                                let key = records::path_key(SYNCED, bundle, &path);
                                refresh.push((key, Some(records::encode(&fresh))));
                            }
                        }
                    }
                    file.hash = Some(h);
                } else {
                    file.hash = rec.hash.clone();
                }
            }
            // Changed stamp, same size: maybe only touched; the hash tells.
            Some(rec) if rec.hash.is_some() && rec.local.size == stamp.size => file.hash = hash_it().ok(),
            Some(_) => {}
            // New here, and the cloud has one with a known hash: equal content
            // is recorded, not treated as a conflict.
            None => {
                if remote
                    .get(&path)
                    .is_some_and(|r| r.hash.is_some() && r.size == stamp.size)
                {
                    file.hash = hash_it().ok();
                }
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
                },
            )
        })
        .collect();
    Ok(Trees {
        local,
        remote,
        synced,
        refresh,
    })
}
