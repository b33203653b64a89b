//! The WIT layer: imports become a [`Platform`], exports call the engine.
//! Nothing here decides anything; it only converts.

use std::cell::RefCell;

use crate::engine::sync::{Report, SyncId};
use crate::engine::{self as e, ApiError, CacheId, Engine, Platform};

mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "cloudsync",
    });
}

use bindings::exports::ohos::cloudsync::{engine as engine_export, file_cache, on_demand, sync as sync_export};
use bindings::ohos::cloudsync::{cloud, device, events, media, permission, storage, transfer, types};

struct Component;

thread_local! {
    static ENGINE: RefCell<Engine<WitPlatform>> = RefCell::new(Engine::new(WitPlatform));
}

fn with_engine<R>(f: impl FnOnce(&mut Engine<WitPlatform>) -> R) -> R {
    ENGINE.with(|engine| f(&mut engine.borrow_mut()))
}

impl engine_export::Guest for Component {
    fn init() -> Result<(), types::Error> {
        with_engine(|e| e.init()).map_err(error)
    }

    fn tick() -> engine_export::TickResult {
        match with_engine(|e| e.tick()) {
            e::Tick::Idle => engine_export::TickResult::Idle,
            e::Tick::Waiting => engine_export::TickResult::Waiting,
            e::Tick::More => engine_export::TickResult::More,
        }
    }
}

impl file_cache::Guest for Component {
    type CloudFileCache = CacheHandle;
}

struct CacheHandle(CacheId);

impl file_cache::GuestCloudFileCache for CacheHandle {
    fn new() -> Self {
        CacheHandle(with_engine(|e| e.downloads.create_cache()))
    }

    fn on(&self, event: String, listener: u64) -> Result<(), types::Error> {
        with_engine(|e| e.downloads.on(self.0, &event, listener)).map_err(error)
    }

    fn off(&self, event: String, listener: Option<u64>) -> Result<(), types::Error> {
        with_engine(|e| e.downloads.off(self.0, &event, listener)).map_err(error)
    }

    fn start(&self, uri: String) -> Result<(), types::Error> {
        with_engine(|e| e.downloads.start(&e.platform, self.0, &uri)).map_err(error)
    }

    fn stop(&self, uri: String, need_clean: bool) -> Result<(), types::Error> {
        with_engine(|e| e.downloads.stop(&e.platform, self.0, &uri, need_clean)).map_err(error)
    }

    fn clean_cache(&self, uri: String) -> Result<(), types::Error> {
        with_engine(|e| e.ondemand.clean_cache(&e.platform, &e.syncs, &uri)).map_err(error)
    }
}

impl on_demand::Guest for Component {
    type Download = DownloadHandle;

    fn start_optimize_space(param: types::OptimizeSpaceParam, listener: Option<u64>) -> Result<(), types::Error> {
        with_engine(|e| {
            e.ondemand
                .start_optimize(&e.platform, param.total_size, param.aging_days, listener)
        })
        .map_err(error)
    }

    fn stop_optimize_space() -> Result<(), types::Error> {
        with_engine(|e| e.ondemand.stop_optimize(&e.platform)).map_err(error)
    }

    fn list_files(gallery: bool, after: Option<String>, max: u32) -> Result<on_demand::FileListing, types::Error> {
        let listing = with_engine(|e| {
            e.ondemand
                .list_files(&e.platform, gallery, &e.syncs, after.as_deref(), max as usize)
        })
        .map_err(error)?;
        Ok(on_demand::FileListing {
            files: listing
                .files
                .into_iter()
                .map(|f| on_demand::FileEntry {
                    uri: f.uri,
                    size: f.size,
                    cloud_only: f.cloud_only,
                    state: file_sync_state(f.state),
                    last_access_ms: f.last_access_ms,
                })
                .collect(),
            skipped: notes(listing.skipped),
            next: listing.next,
        })
    }
}

/// A `Download` object: a download instance for gallery originals.
struct DownloadHandle(CacheId);

impl on_demand::GuestDownload for DownloadHandle {
    fn create() -> Result<on_demand::Download, types::Error> {
        let id = with_engine(|e| e.downloads.create_gallery_download(&e.platform)).map_err(error)?;
        Ok(on_demand::Download::new(DownloadHandle(id)))
    }

    fn on(&self, event: String, listener: u64) -> Result<(), types::Error> {
        with_engine(|e| e.downloads.on(self.0, &event, listener)).map_err(error)
    }

    fn off(&self, event: String, listener: Option<u64>) -> Result<(), types::Error> {
        with_engine(|e| e.downloads.off(self.0, &event, listener)).map_err(error)
    }

    fn start(&self, uri: String) -> Result<(), types::Error> {
        with_engine(|e| e.downloads.start(&e.platform, self.0, &uri)).map_err(error)
    }

    fn stop(&self, uri: String) -> Result<(), types::Error> {
        with_engine(|e| e.downloads.stop(&e.platform, self.0, &uri, true)).map_err(error)
    }
}

impl Drop for DownloadHandle {
    fn drop(&mut self) {
        with_engine(|e| e.downloads.drop_cache(&e.platform, self.0));
    }
}

impl Drop for CacheHandle {
    fn drop(&mut self) {
        with_engine(|e| e.downloads.drop_cache(&e.platform, self.0));
    }
}

impl sync_export::Guest for Component {
    type FileSync = FileSyncHandle;
    type GallerySync = GalleryHandle;

    fn get_file_sync_states(uris: Vec<String>) -> Result<Vec<types::FileSyncState>, types::Error> {
        let states = with_engine(|e| e.syncs.file_sync_states(&e.platform, &uris)).map_err(error)?;
        Ok(states.into_iter().map(file_sync_state).collect())
    }

    fn get_file_sync_state(uri: String) -> Result<types::FileSyncState, types::Error> {
        with_engine(|e| e.syncs.file_sync_state(&e.platform, &uri))
            .map(file_sync_state)
            .map_err(error)
    }
}

/// A `FileSync` or `GallerySync` object: both are sync objects of the engine.
struct SyncHandle(SyncId);

impl SyncHandle {
    fn on(&self, event: String, listener: u64) -> Result<(), types::Error> {
        with_engine(|e| e.syncs.on(&e.platform, self.0, &event, listener)).map_err(error)
    }
    fn off(&self, event: String, listener: Option<u64>) -> Result<(), types::Error> {
        with_engine(|e| e.syncs.off(self.0, &event, listener)).map_err(error)
    }
    fn start(&self, c: sync_export::Confirmation) -> Result<(), types::Error> {
        let confirm = e::sync::Confirm {
            deletions: c.deletions,
            empty_local: c.empty_device,
            empty_cloud: c.empty_cloud,
        };
        with_engine(|e| e.syncs.start(&e.platform, self.0, confirm)).map_err(error)
    }
    fn stop(&self) -> Result<(), types::Error> {
        with_engine(|e| e.syncs.stop(&e.platform, self.0)).map_err(error)
    }
    fn report(&self) -> Result<sync_export::SyncReport, types::Error> {
        with_engine(|e| e.syncs.report(self.0)).map(sync_report).map_err(error)
    }
}

impl Drop for SyncHandle {
    fn drop(&mut self) {
        with_engine(|e| e.syncs.drop_object(self.0));
    }
}

struct FileSyncHandle(SyncHandle);
struct GalleryHandle(SyncHandle);

impl sync_export::GuestFileSync for FileSyncHandle {
    fn create(bundle_name: Option<String>) -> Result<sync_export::FileSync, types::Error> {
        let id = with_engine(|e| e.syncs.create_file_sync(&e.platform, bundle_name.as_deref())).map_err(error)?;
        Ok(sync_export::FileSync::new(FileSyncHandle(SyncHandle(id))))
    }
    fn on(&self, event: String, listener: u64) -> Result<(), types::Error> {
        self.0.on(event, listener)
    }
    fn off(&self, event: String, listener: Option<u64>) -> Result<(), types::Error> {
        self.0.off(event, listener)
    }
    fn start(&self, confirm: sync_export::Confirmation) -> Result<(), types::Error> {
        self.0.start(confirm)
    }
    fn stop(&self) -> Result<(), types::Error> {
        self.0.stop()
    }
    fn get_last_sync_time(&self) -> Result<u64, types::Error> {
        let id = (self.0).0;
        with_engine(|e| e.syncs.last_sync_time(&e.platform, id)).map_err(error)
    }
    fn report(&self) -> Result<sync_export::SyncReport, types::Error> {
        self.0.report()
    }
}

impl sync_export::GuestGallerySync for GalleryHandle {
    fn create() -> Result<sync_export::GallerySync, types::Error> {
        let id = with_engine(|e| e.syncs.create_gallery_sync(&e.platform)).map_err(error)?;
        Ok(sync_export::GallerySync::new(GalleryHandle(SyncHandle(id))))
    }
    fn on(&self, event: String, listener: u64) -> Result<(), types::Error> {
        self.0.on(event, listener)
    }
    fn off(&self, event: String, listener: Option<u64>) -> Result<(), types::Error> {
        self.0.off(event, listener)
    }
    fn start(&self, confirm: sync_export::Confirmation) -> Result<(), types::Error> {
        self.0.start(confirm)
    }
    fn stop(&self) -> Result<(), types::Error> {
        self.0.stop()
    }
    fn report(&self) -> Result<sync_export::SyncReport, types::Error> {
        self.0.report()
    }
}

fn sync_report(r: Report) -> sync_export::SyncReport {
    sync_export::SyncReport {
        running: r.running,
        planned: r.planned,
        done: r.done,
        uploaded: r.uploaded,
        downloaded: r.downloaded,
        deleted_local: r.deleted_local,
        deleted_remote: r.deleted_remote,
        conflicts: r.conflicts,
        failed: r.failed,
        bytes_uploaded: r.bytes_uploaded,
        bytes_downloaded: r.bytes_downloaded,
        refusal: r.refusal,
        last_error: r.last_error,
        skipped: notes(r.skipped),
        skipped_total: r.skipped_total,
        failures: notes(r.failures),
        notes: r.notes,
    }
}

fn notes(list: Vec<(String, String)>) -> Vec<types::FileNote> {
    list.into_iter()
        .map(|(path, reason)| types::FileNote { path, reason })
        .collect()
}

fn file_sync_state(s: e::FileSyncState) -> types::FileSyncState {
    match s {
        e::FileSyncState::Uploading => types::FileSyncState::Uploading,
        e::FileSyncState::Downloading => types::FileSyncState::Downloading,
        e::FileSyncState::Completed => types::FileSyncState::Completed,
        e::FileSyncState::Stopped => types::FileSyncState::Stopped,
        e::FileSyncState::ToBeUploaded => types::FileSyncState::ToBeUploaded,
        e::FileSyncState::UploadSuccess => types::FileSyncState::UploadSuccess,
        e::FileSyncState::UploadFailure => types::FileSyncState::UploadFailure,
    }
}

bindings::export!(Component with_types_in bindings);

fn error(e: ApiError) -> types::Error {
    types::Error {
        code: e.code,
        message: e.message,
    }
}

/// The engine's platform, made of the component's imports.
struct WitPlatform;

impl Platform for WitPlatform {
    fn caller_bundle(&self) -> String {
        permission::caller_bundle()
    }

    fn has_permission(&self, name: &str) -> bool {
        permission::has_permission(name)
    }

    fn is_system_app(&self) -> bool {
        permission::is_system_app()
    }

    fn device_status(&self) -> e::DeviceStatus {
        let s = device::status();
        e::DeviceStatus {
            network_available: s.network_available,
            wifi_available: s.wifi_available,
            battery_percent: s.battery_percent,
            charging: s.charging,
        }
    }

    fn now_ms(&self) -> u64 {
        device::now_ms()
    }

    fn device_name(&self) -> String {
        device::device_name()
    }

    fn stat(&self, bundle: &str, path: &str) -> Result<Option<e::FileStat>, e::IoError> {
        let stat = storage::stat(bundle, path).map_err(io_error)?;
        Ok(stat.map(file_stat))
    }

    fn rename(&self, bundle: &str, from: &str, to: &str) -> Result<(), e::IoError> {
        storage::rename(bundle, from, to).map_err(io_error)
    }

    fn remove_file(&self, bundle: &str, path: &str) -> Result<(), e::IoError> {
        storage::remove_file(bundle, path).map_err(io_error)
    }

    fn create_dir_all(&self, bundle: &str, path: &str) -> Result<(), e::IoError> {
        storage::create_dir_all(bundle, path).map_err(io_error)
    }

    fn move_file(
        &self,
        bundle: &str,
        from: &str,
        to: &str,
        mode: e::MoveMode,
        durable: bool,
    ) -> Result<(), e::IoError> {
        let mode = match mode {
            e::MoveMode::Replace => storage::MoveMode::Replace,
            e::MoveMode::NoReplace => storage::MoveMode::NoReplace,
        };
        storage::move_file(bundle, from, to, mode, durable).map_err(io_error)
    }

    fn swap_if_unchanged(
        &self,
        bundle: &str,
        from: &str,
        to: &str,
        expect: crate::engine::records::LocalStamp,
        durable: bool,
    ) -> Result<e::SwapOutcome, e::IoError> {
        let outcome = storage::swap_if_unchanged(bundle, from, to, stamp(expect), durable).map_err(io_error)?;
        Ok(match outcome {
            storage::SwapOutcome::Clean => e::SwapOutcome::Clean,
            storage::SwapOutcome::InUse => e::SwapOutcome::InUse,
            storage::SwapOutcome::Changed => e::SwapOutcome::Changed,
        })
    }

    fn flush(&self, bundle: &str) -> Result<(), e::IoError> {
        storage::flush(bundle).map_err(io_error)
    }

    fn remove_dir(&self, bundle: &str, path: &str) -> Result<(), e::IoError> {
        storage::remove_dir(bundle, path).map_err(io_error)
    }

    fn free_space(&self, bundle: &str) -> Result<u64, e::IoError> {
        storage::free_space(bundle).map_err(io_error)
    }

    fn hash_file(&self, bundle: &str, path: &str) -> Result<String, e::IoError> {
        storage::hash_file(bundle, path, "sha256").map_err(io_error)
    }

    fn fine_stamps(&self, bundle: &str) -> bool {
        storage::fine_stamps(bundle)
    }

    fn walk_page(
        &self,
        bundle: &str,
        dir: &str,
        after: Option<&str>,
        max: u32,
    ) -> Result<Option<e::TreePage>, e::IoError> {
        let page = storage::walk_page(bundle, dir, after, max).map_err(io_error)?;
        Ok(page.map(|page| {
            let entries = page.entries.into_iter().map(tree_entry).collect();
            (entries, page.next)
        }))
    }

    fn scan_tree(&self, bundle: &str, dir: &str) -> Result<Option<Vec<e::TreeEntry>>, e::IoError> {
        let entries = storage::scan_tree(bundle, dir).map_err(io_error)?;
        Ok(entries.map(|list| list.into_iter().map(tree_entry).collect()))
    }

    fn evict(
        &self,
        bundle: &str,
        path: &str,
        expect: crate::engine::records::LocalStamp,
        aside: &str,
    ) -> Result<(), e::IoError> {
        storage::evict(bundle, path, stamp(expect), aside).map_err(io_error)
    }

    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, e::IoError> {
        storage::meta_get(key).map_err(io_error)
    }

    fn meta_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, e::IoError> {
        storage::meta_scan(prefix).map_err(io_error)
    }

    fn meta_scan_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, e::IoError> {
        storage::meta_scan_page(prefix, after, max).map_err(io_error)
    }

    fn meta_commit(&self, changes: Vec<(String, Option<Vec<u8>>)>) -> Result<(), e::IoError> {
        let changes: Vec<storage::MetaChange> = changes
            .into_iter()
            .map(|(key, value)| storage::MetaChange { key, value })
            .collect();
        storage::meta_commit(&changes).map_err(io_error)
    }

    fn cloud_stat(&self, bundle: &str, path: &str) -> Result<e::CloudObject, e::CloudError> {
        cloud::stat(bundle, path).map(cloud_object).map_err(cloud_error)
    }

    fn cloud_ready(&self, bundle: &str) -> Result<(), e::CloudError> {
        cloud::ready(bundle).map_err(cloud_error)
    }

    fn cloud_list_page(
        &self,
        bundle: &str,
        prefix: &str,
        after: Option<&str>,
        max: u32,
    ) -> Result<(e::CloudListing, Option<String>), e::CloudError> {
        let page = cloud::list_page(bundle, prefix, after, max).map_err(cloud_error)?;
        let listing = e::CloudListing {
            objects: page.objects.into_iter().map(cloud_object).collect(),
            skipped: page.skipped.into_iter().map(|u| (u.path, u.reason)).collect(),
        };
        Ok((listing, page.next))
    }

    fn cloud_delete(&self, bundle: &str, path: &str, if_match: Option<&str>) -> Result<(), e::CloudError> {
        cloud::delete(bundle, path, if_match).map_err(cloud_error)
    }

    fn make_thumbnail(
        &self,
        bundle: &str,
        cloud_path: &str,
        thumb_path: &str,
        max_edge: u32,
    ) -> Result<(), e::CloudError> {
        media::make_thumbnail(bundle, cloud_path, thumb_path, max_edge).map_err(cloud_error)
    }

    fn start_upload(&self, r: e::UploadRequest) -> Result<e::TransferId, e::CloudError> {
        transfer::start_upload(&transfer::UploadRequest {
            bundle: r.bundle,
            local_path: r.local_path,
            cloud_path: r.cloud_path,
            precondition: match r.precondition {
                e::WritePrecondition::None => transfer::WritePrecondition::None,
                e::WritePrecondition::IfMatch(etag) => transfer::WritePrecondition::IfMatch(etag),
                e::WritePrecondition::IfAbsent => transfer::WritePrecondition::IfAbsent,
            },
            expect: r.expect.map(stamp),
        })
        .map_err(cloud_error)
    }

    fn start_download(&self, r: e::DownloadRequest) -> Result<e::TransferId, e::CloudError> {
        transfer::start_download(&transfer::DownloadRequest {
            bundle: r.bundle,
            cloud_path: r.cloud_path,
            local_path: r.local_path,
            offset: r.offset,
            if_match: r.if_match,
            counted: r.counted,
            durable: r.durable,
        })
        .map_err(cloud_error)
    }

    fn poll_transfer(&self, id: e::TransferId) -> Option<e::TransferStatus> {
        transfer::poll(id).map(|s| e::TransferStatus {
            bytes: s.bytes,
            state: match s.state {
                transfer::TransferState::Running => e::TransferState::Running,
                transfer::TransferState::Done => e::TransferState::Done,
                transfer::TransferState::Failed(err) => e::TransferState::Failed(cloud_error(err)),
            },
            uploaded: s.uploaded.map(cloud_object),
            sha256: s.sha256,
        })
    }

    fn cancel_transfer(&self, id: e::TransferId) {
        transfer::cancel(id)
    }

    fn release_transfer(&self, id: e::TransferId) {
        transfer::release(id)
    }

    fn report_failure(&self, uri: &str, reason: &str) {
        events::failure_reason(uri, reason)
    }

    fn emit_optimize(&self, listener: e::ListenerId, p: e::ondemand::OptimizeProgress) {
        use e::ondemand::OptimizeState as S;
        events::emit_optimize(
            listener,
            types::OptimizeSpaceProgress {
                state: match p.state {
                    S::Running => types::OptimizeState::Running,
                    S::Completed => types::OptimizeState::Completed,
                    S::Failed => types::OptimizeState::Failed,
                    S::Stopped => types::OptimizeState::Stopped,
                },
                progress: p.progress,
            },
        )
    }

    fn emit_sync(&self, listener: e::ListenerId, p: e::SyncProgress) {
        events::emit_sync(
            listener,
            types::SyncProgress {
                state: match p.state {
                    e::SyncState::Uploading => types::SyncState::Uploading,
                    e::SyncState::UploadFailed => types::SyncState::UploadFailed,
                    e::SyncState::Downloading => types::SyncState::Downloading,
                    e::SyncState::DownloadFailed => types::SyncState::DownloadFailed,
                    e::SyncState::Completed => types::SyncState::Completed,
                    e::SyncState::Stopped => types::SyncState::Stopped,
                },
                error: match p.error {
                    e::ErrorType::NoError => types::ErrorType::NoError,
                    e::ErrorType::NetworkUnavailable => types::ErrorType::NetworkUnavailable,
                    e::ErrorType::WifiUnavailable => types::ErrorType::WifiUnavailable,
                    e::ErrorType::BatteryLevelLow => types::ErrorType::BatteryLevelLow,
                    e::ErrorType::BatteryLevelWarning => types::ErrorType::BatteryLevelWarning,
                    e::ErrorType::CloudStorageFull => types::ErrorType::CloudStorageFull,
                    e::ErrorType::LocalStorageFull => types::ErrorType::LocalStorageFull,
                    e::ErrorType::DeviceTemperatureTooHigh => types::ErrorType::DeviceTemperatureTooHigh,
                },
            },
        )
    }

    fn emit_download(&self, listener: e::ListenerId, p: &e::DownloadProgress) {
        events::emit_download(
            listener,
            &types::DownloadProgress {
                state: match p.state {
                    e::State::Running => types::State::Running,
                    e::State::Completed => types::State::Completed,
                    e::State::Failed => types::State::Failed,
                    e::State::Stopped => types::State::Stopped,
                },
                processed: p.processed,
                size: p.size,
                uri: p.uri.clone(),
                error: match p.error {
                    e::DownloadErrorType::NoError => types::DownloadErrorType::NoError,
                    e::DownloadErrorType::UnknownError => types::DownloadErrorType::UnknownError,
                    e::DownloadErrorType::NetworkUnavailable => types::DownloadErrorType::NetworkUnavailable,
                    e::DownloadErrorType::LocalStorageFull => types::DownloadErrorType::LocalStorageFull,
                    e::DownloadErrorType::ContentNotFound => types::DownloadErrorType::ContentNotFound,
                    e::DownloadErrorType::FrequentUserRequests => types::DownloadErrorType::FrequentUserRequests,
                },
            },
        )
    }
}

fn file_stat(s: storage::FileStat) -> e::FileStat {
    e::FileStat {
        kind: match s.kind {
            storage::FileKind::File => e::FileKind::File,
            storage::FileKind::Folder => e::FileKind::Folder,
            storage::FileKind::Symlink => e::FileKind::Symlink,
            storage::FileKind::Special => e::FileKind::Special,
        },
        size: s.size,
        mtime_ns: s.mtime_ns,
        ctime_ns: s.ctime_ns,
        inode: s.inode,
        atime_ns: s.atime_ns,
    }
}

fn tree_entry(t: storage::TreeEntry) -> e::TreeEntry {
    e::TreeEntry {
        path: t.path,
        stat: file_stat(t.stat),
        problem: t.problem,
    }
}

fn stamp(s: crate::engine::records::LocalStamp) -> storage::LocalStamp {
    storage::LocalStamp {
        size: s.size,
        mtime_ns: s.mtime_ns,
        ctime_ns: s.ctime_ns,
        inode: s.inode,
    }
}

fn cloud_object(o: cloud::Object) -> e::CloudObject {
    e::CloudObject {
        path: o.path,
        size: o.size,
        etag: o.etag,
        version: o.version,
        content_hash: o.content_hash,
        modified_ms: o.modified_ms,
    }
}

fn io_error(err: storage::IoError) -> e::IoError {
    use storage::IoErrorKind as K;
    let kind = match err.kind {
        K::NotFound => e::IoErrorKind::NotFound,
        K::AlreadyExists => e::IoErrorKind::AlreadyExists,
        K::PermissionDenied => e::IoErrorKind::PermissionDenied,
        K::NoSpace => e::IoErrorKind::NoSpace,
        K::Interrupted => e::IoErrorKind::Interrupted,
        K::WouldBlock => e::IoErrorKind::WouldBlock,
        K::NotSupported => e::IoErrorKind::NotSupported,
        K::EscapesSandbox => e::IoErrorKind::EscapesSandbox,
        K::NotAFile => e::IoErrorKind::NotAFile,
        K::Other => e::IoErrorKind::Other,
    };
    e::IoError::new(kind, err.message)
}

fn cloud_error(err: cloud::CloudError) -> e::CloudError {
    use cloud::CloudErrorKind as K;
    let kind = match err.kind {
        K::NotFound => e::CloudErrorKind::NotFound,
        K::Network => e::CloudErrorKind::Network,
        K::Throttled => e::CloudErrorKind::Throttled,
        K::StorageFull => e::CloudErrorKind::StorageFull,
        K::Unauthorized => e::CloudErrorKind::Unauthorized,
        K::PreconditionFailed => e::CloudErrorKind::PreconditionFailed,
        K::LocalNoSpace => e::CloudErrorKind::LocalNoSpace,
        K::LocalIo => e::CloudErrorKind::LocalIo,
        K::Other => e::CloudErrorKind::Other,
    };
    e::CloudError::new(kind, err.message)
}
