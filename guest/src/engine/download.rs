//! `CloudFileCache`: single-file downloads from the cloud into the app's folder.
//!
//! The engine decides and verifies; the host moves the bytes (a transfer the
//! engine starts, polls and cancels). Content is written to a temp file in
//! the staging area and renamed into place only when whole and verified, so
//! nothing partial is ever visible under the file's name.

use std::collections::{BTreeMap, BTreeSet};

use super::access::check_event;
use super::layout::STAGING_DIR;
use super::place::{error_type, verify_and_place, Arrived, Failure, Replaceable};
use super::records::{self, LocalStamp, PartialRecord, SyncedRecord, ACCESS, PARTIAL, SYNCED};
use super::recovery::recover_bundle;
use super::{
    codes, parse_app_uri, ApiError, AppFile, CloudError, CloudErrorKind, DownloadErrorType, DownloadProgress,
    DownloadRequest, IoErrorKind, ListenerId, Platform, State, TransferId, TransferState,
};

/// Where partial downloads live in a bundle's local area (outside `cloud/`,
/// on the same file system so that the final rename is atomic).
/// A download whose cloud object changes under it is restarted this many times.
const MAX_RESTARTS: u32 = 3;

/// One `CloudFileCache` instance of the engine.
pub type CacheId = u64;

/// All `CloudFileCache` instances and the downloads they watch.
#[derive(Default)]
pub struct Downloads {
    caches: BTreeMap<CacheId, Vec<ListenerId>>,
    /// Instances that are `Download` objects: originals of gallery items.
    gallery: BTreeSet<CacheId>,
    next_cache: CacheId,
    /// One transfer per file, whichever instances started it.
    active: BTreeMap<AppFile, Active>,
    temp_seq: u64,
}

struct Active {
    uri: String,
    temp: String,
    size: u64,
    etag: String,
    content_hash: Option<String>,
    transfer: TransferId,
    /// Instances that started this download and have not stopped it.
    subscribers: BTreeSet<CacheId>,
    processed: u64,
    restarts: u32,
    /// The sha256 the finished transfer computed.
    moved_hash: Option<String>,
}

impl Downloads {
    /// Whether a `CloudFileCache` or `Download` is fetching `file` now.
    pub fn is_downloading(&self, file: &AppFile) -> bool {
        self.active.contains_key(file)
    }

    /// `Download()`: a system API (201, then 202) for the originals of
    /// cloud-only gallery photos.
    pub fn create_gallery_download(&mut self, platform: &impl Platform) -> Result<CacheId, ApiError> {
        super::access::check_system_api(platform, false)?;
        let id = self.create_cache();
        self.gallery.insert(id);
        Ok(id)
    }

    /// The file a URI names for this instance: an app file of the caller's
    /// (CloudFileCache), or a gallery item (Download).
    fn parse(&self, platform: &impl Platform, cache: CacheId, uri: &str) -> Result<AppFile, ApiError> {
        if self.gallery.contains(&cache) {
            if let Some(id) = super::uri::gallery_item_id(uri) {
                return gallery_item(platform, uri, &id);
            }
            let file = super::parse_uri_for(uri, &platform.caller_bundle(), false, true)?;
            if file.bundle != super::GALLERY_BUNDLE {
                return Err(ApiError::invalid_uri(
                    uri,
                    "a gallery item is file://media/Photo/<id>/<name>",
                ));
            }
            return Ok(file);
        }
        parse_app_uri(uri, &platform.caller_bundle())
    }

    pub fn create_cache(&mut self) -> CacheId {
        self.next_cache += 1;
        self.caches.insert(self.next_cache, Vec::new());
        self.next_cache
    }

    /// The instance is gone: its downloads that nobody else watches are
    /// cancelled and their partial data removed.
    pub fn drop_cache(&mut self, platform: &impl Platform, cache: CacheId) {
        self.caches.remove(&cache);
        self.gallery.remove(&cache);
        let orphaned: Vec<AppFile> = self
            .active
            .iter_mut()
            .filter_map(|(file, a)| (a.subscribers.remove(&cache) && a.subscribers.is_empty()).then(|| file.clone()))
            .collect();
        for file in orphaned {
            if let Some(a) = self.active.remove(&file) {
                platform.cancel_transfer(a.transfer);
                platform.release_transfer(a.transfer);
                discard_partial(platform, &file, &a.temp);
            }
        }
    }

    pub fn on(&mut self, cache: CacheId, event: &str, listener: ListenerId) -> Result<(), ApiError> {
        check_event(event)?;
        let listeners = self.listeners_mut(cache)?;
        if !listeners.contains(&listener) {
            listeners.push(listener);
        }
        Ok(())
    }

    pub fn off(&mut self, cache: CacheId, event: &str, listener: Option<ListenerId>) -> Result<(), ApiError> {
        check_event(event)?;
        let listeners = self.listeners_mut(cache)?;
        match listener {
            Some(id) => listeners.retain(|l| *l != id),
            None => listeners.clear(),
        }
        Ok(())
    }

    fn listeners_mut(&mut self, cache: CacheId) -> Result<&mut Vec<ListenerId>, ApiError> {
        self.caches
            .get_mut(&cache)
            .ok_or_else(|| ApiError::new(codes::SERVICE_FAILED, "this CloudFileCache no longer exists"))
    }

    /// Starts downloading `uri` for `cache`; returns once it is accepted.
    pub fn start(&mut self, platform: &impl Platform, cache: CacheId, uri: &str) -> Result<(), ApiError> {
        self.listeners_mut(cache)?;
        let file = self.parse(platform, cache, uri)?;

        if let Some(a) = self.active.get_mut(&file) {
            // Already downloading: watch the same transfer, never start a second.
            if a.subscribers.insert(cache) {
                let p = progress(&a.uri, State::Running, a.processed, a.size, DownloadErrorType::NoError);
                emit(platform, &self.caches, [cache], &p);
            }
            return Ok(());
        }

        let target = file.local_path();
        let local = stat_target(platform, &file, uri, &target)?;

        let object = match cloud_stat(platform, &file) {
            Ok(object) => object,
            Err(e) => {
                // "Not found" is the file's only where the cloud itself is
                // there; else the cloud failed, and says why.
                let e = match e.kind {
                    CloudErrorKind::NotFound => match platform.cloud_ready(&file.bundle) {
                        Ok(()) => {
                            return Err(ApiError::new(
                                codes::NO_SUCH_FILE,
                                format!("{uri}: no such file in the cloud"),
                            ))
                        }
                        Err(not_there) => not_there,
                    },
                    _ => e,
                };
                // Accepted, then failed: the event says why.
                platform.report_failure(uri, &e.message);
                let p = progress(uri, State::Failed, 0, 0, error_type(&e));
                emit(platform, &self.caches, [cache], &p);
                return Ok(());
            }
        };

        // Already here and unchanged since we wrote it: nothing to move.
        let synced: Option<SyncedRecord> = records::get(platform, &records::key(SYNCED, &file))?;
        if let (Some(rec), Some(local)) = (&synced, local) {
            if rec.etag == object.etag && rec.local == LocalStamp::from(local) {
                let p = progress(
                    uri,
                    State::Completed,
                    object.size,
                    object.size,
                    DownloadErrorType::NoError,
                );
                emit(platform, &self.caches, [cache], &p);
                return Ok(());
            }
        }

        let partial_key = records::key(PARTIAL, &file);
        let kept: Option<PartialRecord> = records::get(platform, &partial_key)?;
        let resumes_kept = kept
            .as_ref()
            .is_some_and(|p| p.kept && p.etag == object.etag && p.size == object.size);
        let (temp, offset) = match kept {
            Some(p) if p.etag == object.etag && p.size == object.size => {
                let have = platform
                    .stat(&file.bundle, &p.temp)
                    .ok()
                    .flatten()
                    .map_or(0, |s| s.size);
                (p.temp, have.min(object.size))
            }
            Some(p) => {
                // The cloud file changed since: the kept bytes are of no use.
                let _ = platform.remove_file(&file.bundle, &p.temp);
                (self.new_temp(platform, &file), 0)
            }
            None => (self.new_temp(platform, &file), 0),
        };

        let needed = object.size - offset;
        let free = platform
            .free_space(&file.bundle)
            .map_err(|e| ApiError::new(codes::SERVICE_FAILED, format!("cannot read free space: {e}")))?;
        if free < needed {
            return Err(ApiError::new(
                codes::NO_SPACE,
                format!("{uri}: {needed} bytes are needed but only {free} are free"),
            ));
        }

        // Record the temp file before any byte is written, so that a crash at
        // any later moment can find it.
        platform
            .create_dir_all(&file.bundle, STAGING_DIR)
            .map_err(|e| ApiError::new(codes::SERVICE_FAILED, format!("cannot create the staging area: {e}")))?;
        let record = PartialRecord {
            temp: temp.clone(),
            etag: object.etag.clone(),
            size: object.size,
            kept: false,
        };
        platform
            .meta_commit(vec![(partial_key.clone(), Some(records::encode(&record)))])
            .map_err(|e| ApiError::service(format!("metadata write failed: {e}")))?;

        let request = DownloadRequest {
            bundle: file.bundle.clone(),
            cloud_path: file.path.clone(),
            local_path: temp.clone(),
            offset,
            if_match: Some(object.etag.clone()),
            counted: true,
            durable: true,
        };
        match platform.start_download(request) {
            Ok(transfer) => {
                let active = Active {
                    uri: uri.to_string(),
                    temp,
                    size: object.size,
                    // Where the cloud gives no hash, the one recorded when
                    // this version was last synced (an evicted file coming
                    // back, say) checks what arrives.
                    content_hash: object.content_hash.clone().or_else(|| {
                        synced
                            .as_ref()
                            .filter(|r| r.etag == object.etag && r.size == object.size)
                            .and_then(|r| r.hash.as_ref())
                            .map(|h| format!("sha256:{h}"))
                    }),
                    etag: object.etag,
                    transfer,
                    subscribers: BTreeSet::from([cache]),
                    processed: offset,
                    restarts: 0,
                    moved_hash: None,
                };
                let p = progress(uri, State::Running, offset, active.size, DownloadErrorType::NoError);
                emit(platform, &self.caches, [cache], &p);
                self.active.insert(file, active);
            }
            Err(e) => {
                if resumes_kept {
                    // Refused (throttled, say): the data kept for a resume stays kept.
                    let kept = PartialRecord {
                        temp: temp.clone(),
                        etag: object.etag.clone(),
                        size: object.size,
                        kept: true,
                    };
                    let _ = platform.meta_commit(vec![(partial_key.clone(), Some(records::encode(&kept)))]);
                } else {
                    discard_partial(platform, &file, &temp);
                }
                platform.report_failure(uri, &e.message);
                let p = progress(uri, State::Failed, offset, object.size, error_type(&e));
                emit(platform, &self.caches, [cache], &p);
            }
        }
        Ok(())
    }

    /// Stops `cache`'s download of `uri`. `need_clean` deletes the partial
    /// data; otherwise it is kept and the next `start` resumes from it.
    pub fn stop(
        &mut self,
        platform: &impl Platform,
        cache: CacheId,
        uri: &str,
        need_clean: bool,
    ) -> Result<(), ApiError> {
        self.listeners_mut(cache)?;
        let file = self.parse(platform, cache, uri)?;
        // `Download.stop` always deletes the partial file.
        let need_clean = need_clean || self.gallery.contains(&cache);

        if let Some(a) = self.active.get_mut(&file) {
            if a.subscribers.remove(&cache) {
                let p = progress(&a.uri, State::Stopped, a.processed, a.size, DownloadErrorType::NoError);
                let last = a.subscribers.is_empty();
                emit(platform, &self.caches, [cache], &p);
                if last {
                    let a = self.active.remove(&file).expect("present");
                    platform.cancel_transfer(a.transfer);
                    platform.release_transfer(a.transfer);
                    if need_clean {
                        discard_partial(platform, &file, &a.temp);
                    } else {
                        let record = PartialRecord {
                            temp: a.temp,
                            etag: a.etag,
                            size: a.size,
                            kept: true,
                        };
                        platform
                            .meta_commit(vec![(records::key(PARTIAL, &file), Some(records::encode(&record)))])
                            .map_err(|e| ApiError::service(format!("metadata write failed: {e}")))?;
                    }
                }
                return Ok(());
            }
            return Err(not_downloading(uri));
        }

        // Not running: partial data kept by an earlier stop may be cleaned now.
        match records::get::<PartialRecord>(platform, &records::key(PARTIAL, &file))? {
            Some(p) => {
                if need_clean {
                    discard_partial(platform, &file, &p.temp);
                }
                Ok(())
            }
            // Nothing runs and nothing is kept: stopped already, if the
            // file is one the device knows (else 13900002, no such file).
            None => {
                let known = records::get::<SyncedRecord>(platform, &records::key(SYNCED, &file))?.is_some()
                    || platform
                        .stat(&file.bundle, &file.local_path())
                        .is_ok_and(|s| s.is_some());
                if known {
                    Ok(())
                } else {
                    Err(not_downloading(uri))
                }
            }
        }
    }

    /// Advances every download; returns whether any is still running.
    pub fn tick(&mut self, platform: &impl Platform) -> bool {
        let files: Vec<AppFile> = self.active.keys().cloned().collect();
        for file in files {
            let transfer = self.active[&file].transfer;
            let Some(status) = platform.poll_transfer(transfer) else {
                self.fail(platform, &file, Failure::unknown("the host lost track of the transfer"));
                continue;
            };
            if !matches!(status.state, TransferState::Running) {
                platform.release_transfer(transfer);
            }
            let a = self.active.get_mut(&file).expect("present");
            let advanced = status.bytes.min(a.size) > a.processed;
            a.processed = a.processed.max(status.bytes.min(a.size));
            match status.state {
                TransferState::Running => {
                    if advanced {
                        let p = progress(&a.uri, State::Running, a.processed, a.size, DownloadErrorType::NoError);
                        emit(platform, &self.caches, a.subscribers.iter().copied(), &p);
                    }
                }
                TransferState::Done => {
                    if advanced {
                        // The last bytes are reported as RUNNING too.
                        let p = progress(&a.uri, State::Running, a.processed, a.size, DownloadErrorType::NoError);
                        emit(platform, &self.caches, a.subscribers.iter().copied(), &p);
                    }
                    a.moved_hash = status.sha256.clone();
                    if let Err(failure) = self.finish(platform, &file) {
                        self.fail(platform, &file, failure);
                    }
                }
                TransferState::Failed(e) => {
                    if e.kind == CloudErrorKind::PreconditionFailed && a.restarts < MAX_RESTARTS {
                        self.restart(platform, &file);
                    } else {
                        self.fail(platform, &file, Failure::cloud(&e));
                    }
                }
            }
        }
        !self.active.is_empty()
    }

    /// Removes partial downloads that a crash (or a trapped instance) left
    /// behind; those kept on purpose by `stop(uri, false)` stay.
    pub fn recover(&mut self, platform: &impl Platform) -> Result<(), ApiError> {
        recover_bundle(platform, &platform.caller_bundle())
    }

    /// Verifies the temp file and renames it into place.
    fn finish(&mut self, platform: &impl Platform, file: &AppFile) -> Result<(), Failure> {
        let a = &self.active[file];
        let bundle = &file.bundle;
        let synced_key = records::key(SYNCED, file);
        // Overwrite only what we wrote ourselves and nobody changed since.
        let previous = records::get::<SyncedRecord>(platform, &synced_key).ok().flatten();
        let first_ms = previous.as_ref().map_or(platform.now_ms(), |r| r.first_ms);
        // An evicted file coming back: its mark (of the version evicted) goes.
        let mark = previous
            .as_ref()
            .filter(|r| r.cloud_only)
            .map(|r| super::layout::evicted_mark(&file.path, &r.etag));
        let ours = previous.filter(|r| !r.cloud_only).map(|r| Replaceable {
            stamp: r.local,
            hash: r.hash,
        });
        let target = file.local_path();
        let arrived = Arrived {
            bundle,
            temp: &a.temp,
            target: &target,
            size: a.size,
            content_hash: a.content_hash.as_deref(),
            moved_hash: a.moved_hash.as_deref(),
            lazily: false,
        };
        let placed = verify_and_place(platform, &arrived, ours.as_ref())?;
        let record = SyncedRecord {
            etag: a.etag.clone(),
            size: a.size,
            local: placed.stamp,
            hash: placed.hash,
            uploaded: false,
            recorded_ms: platform.now_ms(),
            cloud_only: false,
            first_ms,
        };
        // The file is whole in place even if this write fails; a later start
        // then finds it unknown, hashes it and sees it is equal.
        // Fetched on demand: it counts as an access (space optimisation
        // evicts the least recently used first).
        let _ = platform.meta_commit(vec![
            (synced_key, Some(records::encode(&record))),
            (records::key(PARTIAL, file), None),
            (records::key(ACCESS, file), Some(records::encode(&platform.now_ms()))),
        ]);
        if let Some(mark) = mark {
            let _ = platform.remove_dir(bundle, &mark);
            let _ = platform.remove_dir(bundle, &super::layout::evicted_marks(&file.path));
        }
        let a = self.active.remove(file).expect("present");
        let p = progress(&a.uri, State::Completed, a.size, a.size, DownloadErrorType::NoError);
        emit(platform, &self.caches, a.subscribers.iter().copied(), &p);
        Ok(())
    }

    /// The cloud object changed under the download: start over from its new version.
    fn restart(&mut self, platform: &impl Platform, file: &AppFile) {
        let object = match cloud_stat(platform, file) {
            Ok(o) => o,
            Err(e) => return self.fail(platform, file, Failure::cloud(&e)),
        };
        let a = self.active.get_mut(file).expect("present");
        let _ = platform.remove_file(&file.bundle, &a.temp);
        a.restarts += 1;
        a.size = object.size;
        a.etag = object.etag.clone();
        a.content_hash = object.content_hash;
        a.processed = 0;
        let record = PartialRecord {
            temp: a.temp.clone(),
            etag: object.etag.clone(),
            size: object.size,
            kept: false,
        };
        if platform
            .meta_commit(vec![(records::key(PARTIAL, file), Some(records::encode(&record)))])
            .is_err()
        {
            return self.fail(platform, file, Failure::unknown("the metadata store refused a write"));
        }
        let request = DownloadRequest {
            bundle: file.bundle.clone(),
            cloud_path: file.path.clone(),
            local_path: a.temp.clone(),
            offset: 0,
            if_match: Some(object.etag),
            counted: false,
            durable: true,
        };
        match platform.start_download(request) {
            Ok(id) => a.transfer = id,
            Err(e) => self.fail(platform, file, Failure::cloud(&e)),
        }
    }

    /// Ends a download with FAILED: its partial data is removed.
    fn fail(&mut self, platform: &impl Platform, file: &AppFile, failure: Failure) {
        let Some(a) = self.active.remove(file) else {
            return;
        };
        platform.cancel_transfer(a.transfer);
        platform.release_transfer(a.transfer);
        discard_partial(platform, file, &a.temp);
        platform.report_failure(&a.uri, &failure.reason);
        let p = progress(&a.uri, State::Failed, a.processed, a.size, failure.kind);
        emit(platform, &self.caches, a.subscribers.iter().copied(), &p);
    }

    /// A temp name of this file's own: two files never share one, whatever
    /// the clock does (one transfer per file at a time).
    fn new_temp(&mut self, platform: &impl Platform, file: &AppFile) -> String {
        self.temp_seq += 1;
        let h = super::layout::fnv(&format!("{}/{}", file.bundle, file.path));
        format!("{STAGING_DIR}/{h:016x}-{}-{}.part", platform.now_ms(), self.temp_seq)
    }
}

fn not_downloading(uri: &str) -> ApiError {
    ApiError::new(
        codes::NO_SUCH_FILE,
        format!("{uri}: no such file here, and no download of it to stop"),
    )
}

/// The local target must stay inside the sandbox and not be a directory.
fn stat_target(
    platform: &impl Platform,
    file: &AppFile,
    uri: &str,
    target: &str,
) -> Result<Option<super::FileStat>, ApiError> {
    match platform.stat(&file.bundle, target) {
        Ok(Some(s)) if s.is_dir() => Err(ApiError::invalid_uri(uri, "it names a directory")),
        Ok(Some(s)) if !s.is_file() => Err(ApiError::invalid_uri(uri, "it is a symlink or special file")),
        Ok(s) => Ok(s),
        Err(e) if e.kind == IoErrorKind::EscapesSandbox => {
            Err(ApiError::invalid_uri(uri, "it leads out of the app's folder"))
        }
        Err(e) if e.kind == IoErrorKind::NotAFile => Err(ApiError::invalid_uri(uri, "a parent is not a directory")),
        Err(e) => Err(ApiError::new(
            codes::SERVICE_FAILED,
            format!("cannot inspect {uri}: {e}"),
        )),
    }
}

fn cloud_stat(platform: &impl Platform, file: &AppFile) -> Result<super::CloudObject, CloudError> {
    if !platform.device_status().network_available {
        return Err(CloudError::new(CloudErrorKind::Network, "the device has no network"));
    }
    platform.cloud_stat(&file.bundle, &file.path)
}

fn discard_partial(platform: &impl Platform, file: &AppFile, temp: &str) {
    // Temp first, then its record: a crash in between leaves a record whose
    // temp is gone, which recovery handles; never an unrecorded temp.
    let _ = platform.remove_file(&file.bundle, temp);
    let _ = platform.meta_commit(vec![(records::key(PARTIAL, file), None)]);
}

fn progress(uri: &str, state: State, processed: u64, size: u64, error: DownloadErrorType) -> DownloadProgress {
    DownloadProgress {
        state,
        processed,
        size,
        uri: uri.to_string(),
        error,
    }
}

fn emit(
    platform: &impl Platform,
    caches: &BTreeMap<CacheId, Vec<ListenerId>>,
    to: impl IntoIterator<Item = CacheId>,
    p: &DownloadProgress,
) {
    for cache in to {
        for listener in caches.get(&cache).into_iter().flatten() {
            platform.emit_download(*listener, p);
        }
    }
}

/// The gallery item `id` (the seed's `file:///media/Photo/<id>`): the one
/// item the gallery holds under `Photo/<id>/`.
fn gallery_item(platform: &impl Platform, uri: &str, id: &str) -> Result<AppFile, ApiError> {
    let prefix = records::path_key(SYNCED, super::GALLERY_BUNDLE, &format!("Photo/{id}/"));
    let rows = platform
        .meta_scan_page(&prefix, None, 2)
        .map_err(|e| ApiError::service(format!("metadata scan failed: {e}")))?;
    match rows.as_slice() {
        [(key, _)] => Ok(AppFile {
            bundle: super::GALLERY_BUNDLE.to_string(),
            path: key[format!("{SYNCED}/{}/", super::GALLERY_BUNDLE).len()..].to_string(),
        }),
        [] => Err(ApiError::new(
            codes::NO_SUCH_FILE,
            format!("{uri}: the gallery has no item {id}"),
        )),
        _ => Err(ApiError::invalid_uri(
            uri,
            "the gallery holds several files under this id; name one: file://media/Photo/<id>/<name>",
        )),
    }
}

#[cfg(test)]
mod tests;
