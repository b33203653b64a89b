//! The WIT layer: imports become a [`Platform`], exports call the engine.
//! Nothing here decides anything; it only converts.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::engine::by_itself::{self, CorePorts};
use crate::engine::records::LocalStamp;
use crate::engine::sync::{Report, SyncId};
use crate::engine::{self as e, ApiError, CacheId, Engine, Platform};
use cloudsync_contract::listed::Method;

#[cfg(feature = "native")]
mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "cloudsync",
    });
}
#[cfg(not(feature = "native"))]
mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "cloudsync-core",
    });
}

use bindings::exports::ohos::cloudsync::{engine as engine_export, file_cache, on_demand, sync as sync_export};
use bindings::ohos::cloudsync::{cloud, device, files, identity, metadata, types};
#[cfg(feature = "native")]
use bindings::ohos::cloudsync::{hashing, leases, thumbnails, transfers};

struct Component;

thread_local! {
    /// The areas and buckets the host granted, per bundle: asked for once,
    /// the recently used ones kept.
    static AREAS: RefCell<Grants<files::Area>> = const { RefCell::new(Grants::new()) };
    static BUCKETS: RefCell<Grants<cloud::Bucket>> = const { RefCell::new(Grants::new()) };
    static ENGINE: RefCell<Engine<WitPlatform>> = RefCell::new(Engine::new(WitPlatform::default()));
    /// Events produced since the last tick, which hands them over.
    static EVENTS: RefCell<Vec<engine_export::Event>> = const { RefCell::new(Vec::new()) };
}

fn emit(listener: u64, body: engine_export::EventBody) {
    EVENTS.with(|events| events.borrow_mut().push(engine_export::Event { listener, body }));
}

/// Grants of one kind kept at once: the host holds a row for each, so a
/// manager's instance that meets thousands of bundles keeps the recent ones
/// (a dropped one is asked for again when needed).
const GRANTS_KEPT: usize = 64;

/// The grants of one kind, by bundle, with when each was last used.
struct Grants<T> {
    kept: BTreeMap<String, (Rc<T>, u64)>,
    clock: u64,
}

impl<T> Grants<T> {
    const fn new() -> Self {
        Grants {
            kept: BTreeMap::new(),
            clock: 0,
        }
    }

    /// The grant for `bundle`, opened if not kept (a refusal is not kept:
    /// the next call asks again).
    fn get<E>(&mut self, bundle: &str, open: impl FnOnce() -> Result<T, E>) -> Result<Rc<T>, E> {
        self.clock += 1;
        if let Some((grant, used)) = self.kept.get_mut(bundle) {
            *used = self.clock;
            return Ok(grant.clone());
        }
        let grant = Rc::new(open()?);
        if self.kept.len() >= GRANTS_KEPT {
            let oldest = self
                .kept
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(b, _)| b.clone());
            if let Some(oldest) = oldest {
                self.kept.remove(&oldest);
            }
        }
        self.kept.insert(bundle.to_string(), (grant.clone(), self.clock));
        Ok(grant)
    }
}

/// The area of `bundle`, as the host granted it.
fn area(bundle: &str) -> Result<Rc<files::Area>, e::IoError> {
    AREAS.with(|a| {
        a.borrow_mut()
            .get(bundle, || files::Area::open(bundle).map_err(io_error))
    })
}

/// The cloud bucket of `bundle`, as the host granted it.
fn bucket(bundle: &str) -> Result<Rc<cloud::Bucket>, e::CloudError> {
    BUCKETS.with(|b| {
        b.borrow_mut()
            .get(bundle, || cloud::Bucket::open(bundle).map_err(cloud_error))
    })
}

fn with_engine<R>(f: impl FnOnce(&mut Engine<WitPlatform>) -> R) -> R {
    ENGINE.with(|engine| f(&mut engine.borrow_mut()))
}

impl engine_export::Guest for Component {
    fn init() -> Result<(), types::Error> {
        with_engine(|e| e.init()).map_err(error)
    }

    fn tick() -> engine_export::TickOutcome {
        let next = with_engine(|e| match e.tick() {
            e::Tick::Idle => engine_export::TickResult::Idle,
            // Transfers the engine runs itself move on only when polled.
            e::Tick::Waiting if e.platform.moves_bytes_itself() => engine_export::TickResult::More,
            e::Tick::Waiting => engine_export::TickResult::Waiting,
            e::Tick::More => engine_export::TickResult::More,
        });
        let events = EVENTS.with(|events| std::mem::take(&mut *events.borrow_mut()));
        engine_export::TickOutcome { next, events }
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
        with_engine(|e| e.downloads.on(self.0, &event, listener)).map_err(error_for(Method::CacheOn))
    }

    fn off(&self, event: String, listener: Option<u64>) -> Result<(), types::Error> {
        with_engine(|e| e.downloads.off(self.0, &event, listener)).map_err(error_for(Method::CacheOff))
    }

    fn start(&self, uri: String) -> Result<(), types::Error> {
        with_engine(|e| e.downloads.start(&e.platform, self.0, &uri)).map_err(error_for(Method::CacheStart))
    }

    fn stop(&self, uri: String, need_clean: bool) -> Result<(), types::Error> {
        with_engine(|e| e.downloads.stop(&e.platform, self.0, &uri, need_clean)).map_err(error_for(Method::CacheStop))
    }

    fn clean_cache(&self, uri: String) -> Result<(), types::Error> {
        with_engine(|e| e.ondemand.clean_cache(&e.platform, &e.syncs, &uri)).map_err(error_for(Method::CleanCache))
    }
}

impl on_demand::Guest for Component {
    type Download = DownloadHandle;

    fn start_optimize_space(param: types::OptimizeSpaceParam, listener: Option<u64>) -> Result<(), types::Error> {
        with_engine(|e| {
            e.ondemand
                .start_optimize(&e.platform, param.total_size, param.aging_days, listener)
        })
        .map_err(error_for(Method::StartOptimizeSpace))
    }

    fn stop_optimize_space() -> Result<(), types::Error> {
        with_engine(|e| e.ondemand.stop_optimize(&e.platform)).map_err(error_for(Method::StopOptimizeSpace))
    }

    fn optimize_storage(listener: u64) -> Result<(), types::Error> {
        with_engine(|e| e.ondemand.optimize_storage(&e.platform, listener)).map_err(error_for(Method::OptimizeStorage))
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
        let id = with_engine(|e| e.downloads.create_gallery_download(&e.platform))
            .map_err(error_for(Method::DownloadNew))?;
        Ok(on_demand::Download::new(DownloadHandle(id)))
    }

    fn on(&self, event: String, listener: u64) -> Result<(), types::Error> {
        with_engine(|e| e.downloads.on(self.0, &event, listener)).map_err(error_for(Method::DownloadOn))
    }

    fn off(&self, event: String, listener: Option<u64>) -> Result<(), types::Error> {
        with_engine(|e| e.downloads.off(self.0, &event, listener)).map_err(error_for(Method::DownloadOff))
    }

    fn start(&self, uri: String) -> Result<(), types::Error> {
        with_engine(|e| e.downloads.start(&e.platform, self.0, &uri)).map_err(error_for(Method::DownloadStart))
    }

    fn stop(&self, uri: String) -> Result<(), types::Error> {
        with_engine(|e| e.downloads.stop(&e.platform, self.0, &uri, true)).map_err(error_for(Method::DownloadStop))
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
    type SyncObject = SyncHandle;

    fn get_file_sync_states(uris: Vec<String>) -> Result<Vec<types::FileSyncState>, types::Error> {
        let states = with_engine(|e| e.file_sync_states(&uris)).map_err(error_for(Method::FileSyncStates))?;
        Ok(states.into_iter().map(file_sync_state).collect())
    }

    fn get_file_sync_state(uri: String) -> Result<types::FileSyncState, types::Error> {
        with_engine(|e| e.file_sync_state(&uri))
            .map(file_sync_state)
            .map_err(error_for(Method::FileSyncState))
    }
}

/// A `FileSync` or `GallerySync` object: both are sync objects of the
/// engine; which one it is decides its methods' error tables.
struct SyncHandle {
    id: SyncId,
    gallery: bool,
}

impl SyncHandle {
    /// The seed's method: the GallerySync's or the FileSync's.
    fn method(&self, gallery: Method, file_sync: Method) -> Method {
        if self.gallery {
            gallery
        } else {
            file_sync
        }
    }
}

impl sync_export::GuestSyncObject for SyncHandle {
    fn file_sync(bundle_name: Option<String>) -> Result<sync_export::SyncObject, types::Error> {
        let id = with_engine(|e| e.syncs.create_file_sync(&e.platform, bundle_name.as_deref()))
            .map_err(error_for(Method::FileSyncNew))?;
        Ok(sync_export::SyncObject::new(SyncHandle { id, gallery: false }))
    }
    fn gallery_sync() -> Result<sync_export::SyncObject, types::Error> {
        let id = with_engine(|e| e.syncs.create_gallery_sync(&e.platform)).map_err(error_for(Method::GalleryNew))?;
        Ok(sync_export::SyncObject::new(SyncHandle { id, gallery: true }))
    }
    fn on(&self, event: String, listener: u64) -> Result<(), types::Error> {
        with_engine(|e| e.syncs.on(&e.platform, self.id, &event, listener))
            .map_err(error_for(self.method(Method::GalleryOn, Method::FileSyncOn)))
    }
    fn off(&self, event: String, listener: Option<u64>) -> Result<(), types::Error> {
        with_engine(|e| e.syncs.off(self.id, &event, listener))
            .map_err(error_for(self.method(Method::GalleryOff, Method::FileSyncOff)))
    }
    fn start(&self, c: sync_export::Confirmation) -> Result<(), types::Error> {
        with_engine(|e| e.syncs.start(&e.platform, self.id, confirm(c)))
            .map_err(error_for(self.method(Method::GalleryStart, Method::FileSyncStart)))
    }
    fn plan(&self, c: sync_export::Confirmation) -> Result<(), types::Error> {
        // Not the seed's: its codes as the engine gives them.
        with_engine(|e| e.syncs.plan(&e.platform, self.id, confirm(c))).map_err(error)
    }
    fn stop(&self) -> Result<(), types::Error> {
        with_engine(|e| e.syncs.stop(&e.platform, self.id))
            .map_err(error_for(self.method(Method::GalleryStop, Method::FileSyncStop)))
    }
    fn get_last_sync_time(&self) -> Result<u64, types::Error> {
        with_engine(|e| e.syncs.last_sync_time(&e.platform, self.id)).map_err(error_for(Method::GetLastSyncTime))
    }
    fn report(&self) -> Result<sync_export::SyncReport, types::Error> {
        with_engine(|e| e.syncs.report(&e.platform, self.id))
            .map(sync_report)
            .map_err(error)
    }
}

impl Drop for SyncHandle {
    fn drop(&mut self) {
        with_engine(|e| e.syncs.drop_object(self.id));
    }
}

fn sync_progress(p: e::SyncProgress) -> types::SyncProgress {
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
    }
}

fn confirm(c: sync_export::Confirmation) -> e::sync::Confirm {
    e::sync::Confirm {
        deletions: c.deletions,
        empty_local: c.empty_device,
        empty_cloud: c.empty_cloud,
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
        last: r.last.map(sync_progress),
        ended_ms: r.ended_ms,
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

/// A failure of the seed's `method`: its code the nearest its table lists.
fn error_for(method: Method) -> impl Fn(ApiError) -> types::Error {
    move |e| types::Error {
        code: method.code_for(e.code),
        message: e.message,
    }
}

/// The engine's platform, made of the component's imports; where the world
/// has no optional imports, of the engine's own work (`by_itself`).
#[derive(Default)]
struct WitPlatform {
    #[cfg(not(feature = "native"))]
    transfers: by_itself::Transfers,
}

/// The core imports, as the engine's own work needs them.
struct Core;

/// Largest picture a thumbnail is made of.
const MAX_IMAGE_BYTES: u64 = 64 << 20;

impl WitPlatform {
    /// Whether transfers run here, moving on only when polled.
    fn moves_bytes_itself(&self) -> bool {
        #[cfg(not(feature = "native"))]
        return self.transfers.busy();
        #[cfg(feature = "native")]
        false
    }
}

impl Platform for WitPlatform {
    fn caller_bundle(&self) -> String {
        identity::caller_bundle()
    }

    fn has_permission(&self, name: &str) -> bool {
        identity::has_permission(name)
    }

    fn is_system_app(&self) -> bool {
        identity::is_system_app()
    }

    fn device_status(&self) -> e::DeviceStatus {
        let s = device::status();
        e::DeviceStatus {
            network_available: s.network_available,
            wifi_available: s.wifi_available,
            battery_percent: s.battery_percent,
            wifi_only: s.wifi_only,
            overheated: s.overheated,
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
        Core.stat(bundle, path)
    }

    fn remove_file(&self, bundle: &str, path: &str) -> Result<(), e::IoError> {
        Core.remove_file(bundle, path)
    }

    fn create_dir_all(&self, bundle: &str, path: &str) -> Result<(), e::IoError> {
        area(bundle)?.create_dir_all(path).map_err(io_error)
    }

    fn move_file(
        &self,
        bundle: &str,
        from: &str,
        to: &str,
        mode: e::MoveMode,
        durable: bool,
    ) -> Result<(), e::IoError> {
        Core.move_file(bundle, from, to, mode, durable)
    }

    #[cfg(feature = "native")]
    fn swap_if_unchanged(
        &self,
        bundle: &str,
        from: &str,
        to: &str,
        expect: LocalStamp,
        durable: bool,
    ) -> Result<e::SwapOutcome, e::IoError> {
        let outcome = leases::swap_if_unchanged(&*area(bundle)?, from, to, stamp(expect), durable).map_err(io_error)?;
        Ok(match outcome {
            leases::SwapOutcome::Clean => e::SwapOutcome::Clean,
            leases::SwapOutcome::InUse => e::SwapOutcome::InUse,
            leases::SwapOutcome::Changed => e::SwapOutcome::Changed,
        })
    }

    /// No write leases: the engine checks, then renames (see `place`).
    #[cfg(not(feature = "native"))]
    fn swap_if_unchanged(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: LocalStamp,
        _: bool,
    ) -> Result<e::SwapOutcome, e::IoError> {
        Err(e::IoError::new(
            e::IoErrorKind::NotSupported,
            "this host has no write leases",
        ))
    }

    fn flush(&self, bundle: &str) -> Result<(), e::IoError> {
        Core.flush(bundle)
    }

    fn remove_dir(&self, bundle: &str, path: &str) -> Result<(), e::IoError> {
        area(bundle)?.remove_dir(path).map_err(io_error)
    }

    fn free_space(&self, bundle: &str) -> Result<u64, e::IoError> {
        // A host that cannot tell: no space check before a download.
        Ok(area(bundle)?.free_space().map_err(io_error)?.unwrap_or(u64::MAX))
    }

    #[cfg(feature = "native")]
    fn hash_file(&self, bundle: &str, path: &str) -> Result<String, e::IoError> {
        hashing::hash_file(&*area(bundle)?, path, "sha256").map_err(io_error)
    }

    #[cfg(not(feature = "native"))]
    fn hash_file(&self, bundle: &str, path: &str) -> Result<String, e::IoError> {
        by_itself::hash_file(&Core, bundle, path)
    }

    fn fine_stamps(&self, bundle: &str) -> bool {
        // An area it may not use: coarse, so that nothing is trusted.
        area(bundle).map(|a| a.fine_stamps()).unwrap_or(false)
    }

    fn walk_page(
        &self,
        bundle: &str,
        dir: &str,
        after: Option<&str>,
        max: u32,
    ) -> Result<Option<e::TreePage>, e::IoError> {
        let page = area(bundle)?.walk_page(dir, after, max).map_err(io_error)?;
        Ok(page.map(|page| {
            let entries = page.entries.into_iter().map(tree_entry).collect();
            (entries, page.next)
        }))
    }

    #[cfg(feature = "native")]
    fn evict(&self, bundle: &str, path: &str, expect: LocalStamp, aside: &str) -> Result<(), e::IoError> {
        leases::evict(&*area(bundle)?, path, stamp(expect), aside).map_err(io_error)
    }

    #[cfg(not(feature = "native"))]
    fn evict(&self, bundle: &str, path: &str, expect: LocalStamp, aside: &str) -> Result<(), e::IoError> {
        by_itself::evict(&Core, bundle, path, expect, aside)
    }

    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, e::IoError> {
        metadata::get(key).map_err(io_error)
    }

    fn meta_scan_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, e::IoError> {
        metadata::scan_page(prefix, after, max).map_err(io_error)
    }

    fn meta_commit(&self, changes: Vec<(String, Option<Vec<u8>>)>) -> Result<(), e::IoError> {
        let changes: Vec<metadata::MetaChange> = changes
            .into_iter()
            .map(|(key, value)| metadata::MetaChange { key, value })
            .collect();
        metadata::commit(&changes).map_err(io_error)
    }

    fn cloud_stat(&self, bundle: &str, path: &str) -> Result<e::CloudObject, e::CloudError> {
        Core.cloud_stat(bundle, path)
    }

    fn cloud_ready(&self, bundle: &str) -> Result<(), e::CloudError> {
        bucket(bundle)?.ready().map_err(cloud_error)
    }

    fn cloud_list_page(
        &self,
        bundle: &str,
        prefix: &str,
        after: Option<&str>,
        max: u32,
    ) -> Result<(e::CloudListing, Option<String>), e::CloudError> {
        let page = bucket(bundle)?.list_page(prefix, after, max).map_err(cloud_error)?;
        let listing = e::CloudListing {
            objects: page.objects.into_iter().map(cloud_object).collect(),
            skipped: page.skipped.into_iter().map(|u| (u.path, u.reason)).collect(),
        };
        Ok((listing, page.next))
    }

    fn cloud_delete(&self, bundle: &str, path: &str, if_match: Option<&str>) -> Result<(), e::CloudError> {
        bucket(bundle)?.delete(path, if_match).map_err(cloud_error)
    }

    #[cfg(feature = "native")]
    fn make_thumbnail(
        &self,
        bundle: &str,
        cloud_path: &str,
        thumb_path: &str,
        max_edge: u32,
    ) -> Result<(), e::CloudError> {
        let image = by_itself::read_object(&Core, bundle, cloud_path, MAX_IMAGE_BYTES)?;
        let jpeg = thumbnails::make_thumbnail(&image, max_edge)
            .map_err(|why| e::CloudError::new(e::CloudErrorKind::Other, format!("{cloud_path}: {why}")))?;
        drop(image);
        let temp = format!("{thumb_path}.part");
        by_itself::write_whole(&Core, bundle, thumb_path, &temp, &jpeg).map_err(e::CloudError::local)
    }

    /// No image tools: the item is listed without a picture.
    #[cfg(not(feature = "native"))]
    fn make_thumbnail(&self, _: &str, cloud_path: &str, _: &str, _: u32) -> Result<(), e::CloudError> {
        let _ = MAX_IMAGE_BYTES;
        Err(e::CloudError::new(
            e::CloudErrorKind::Other,
            format!("{cloud_path}: this host makes no thumbnails"),
        ))
    }

    fn start_upload(&self, r: e::UploadRequest) -> Result<e::TransferId, e::CloudError> {
        #[cfg(not(feature = "native"))]
        return Ok(self.transfers.start_upload(r));
        #[cfg(feature = "native")]
        transfers::start_upload(
            &*area(&r.bundle).map_err(e::CloudError::local)?,
            &*bucket(&r.bundle)?,
            &transfers::UploadRequest {
                local_path: r.local_path,
                cloud_path: r.cloud_path,
                precondition: wit_precondition(r.precondition),
                expect: r.expect.map(stamp),
            },
        )
        .map_err(cloud_error)
    }

    fn start_download(&self, r: e::DownloadRequest) -> Result<e::TransferId, e::CloudError> {
        if r.counted {
            identity::admit_download().map_err(|why| e::CloudError::new(e::CloudErrorKind::Throttled, why))?;
        }
        #[cfg(not(feature = "native"))]
        return Ok(self.transfers.start_download(r));
        #[cfg(feature = "native")]
        transfers::start_download(
            &*area(&r.bundle).map_err(e::CloudError::local)?,
            &*bucket(&r.bundle)?,
            &transfers::DownloadRequest {
                cloud_path: r.cloud_path,
                local_path: r.local_path,
                offset: r.offset,
                if_match: r.if_match,
                durable: r.durable,
            },
        )
        .map_err(cloud_error)
    }

    fn poll_transfer(&self, id: e::TransferId) -> Option<e::TransferStatus> {
        #[cfg(not(feature = "native"))]
        return self.transfers.poll(&Core, id);
        #[cfg(feature = "native")]
        transfers::poll(id).map(|s| e::TransferStatus {
            bytes: s.bytes,
            state: match s.state {
                transfers::TransferState::Running => e::TransferState::Running,
                transfers::TransferState::Done => e::TransferState::Done,
                transfers::TransferState::Failed(err) => e::TransferState::Failed(cloud_error(err)),
            },
            uploaded: s.uploaded.map(cloud_object),
            sha256: s.sha256,
        })
    }

    fn cancel_transfer(&self, id: e::TransferId) {
        #[cfg(not(feature = "native"))]
        self.transfers.cancel(&Core, id);
        #[cfg(feature = "native")]
        transfers::cancel(id)
    }

    fn release_transfer(&self, id: e::TransferId) {
        #[cfg(not(feature = "native"))]
        self.transfers.release(&Core, id);
        #[cfg(feature = "native")]
        transfers::release(id)
    }

    fn report_failure(&self, uri: &str, reason: &str) {
        emit(
            0,
            engine_export::EventBody::FailureReason((uri.to_string(), reason.to_string())),
        )
    }

    fn note_decision(&self, d: e::SyncDecision) {
        use e::SyncAction as A;
        let action = match d.action {
            A::Upload => types::SyncAction::Upload,
            A::Download => types::SyncAction::Download,
            A::DeleteLocal => types::SyncAction::DeleteLocal,
            A::DeleteCloud => types::SyncAction::DeleteCloud,
            A::Conflict => types::SyncAction::Conflict,
            A::Record => types::SyncAction::Record,
            A::Placeholder => types::SyncAction::Placeholder,
            A::Forget => types::SyncAction::Forget,
            A::Skip => types::SyncAction::Skip,
            A::Refuse => types::SyncAction::Refuse,
            A::Fail => types::SyncAction::Fail,
        };
        let decision = types::SyncDecision {
            bundle: d.bundle,
            path: d.path,
            action,
            reason: d.reason,
            dry_run: d.dry_run,
        };
        emit(0, engine_export::EventBody::Decision(decision))
    }

    fn emit_optimize(&self, listener: e::ListenerId, p: e::ondemand::OptimizeSpaceProgress) {
        use e::ondemand::OptimizeState as S;
        let progress = types::OptimizeSpaceProgress {
            state: match p.state {
                S::Running => types::OptimizeState::Running,
                S::Completed => types::OptimizeState::Completed,
                S::Failed => types::OptimizeState::Failed,
                S::Stopped => types::OptimizeState::Stopped,
            },
            progress: p.progress,
        };
        emit(listener, engine_export::EventBody::Optimize(progress))
    }

    fn emit_optimize_failure(&self, listener: e::ListenerId, err: &ApiError) {
        let err = error_for(Method::OptimizeStorage)(err.clone());
        emit(listener, engine_export::EventBody::OptimizeFailure(err))
    }

    fn emit_sync(&self, listener: e::ListenerId, p: e::SyncProgress) {
        emit(listener, engine_export::EventBody::Sync(sync_progress(p)))
    }

    fn emit_download(&self, listener: e::ListenerId, p: &e::DownloadProgress) {
        let progress = types::DownloadProgress {
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
        };
        emit(listener, engine_export::EventBody::Download(progress))
    }
}

impl by_itself::CorePorts for Core {
    fn stat(&self, bundle: &str, path: &str) -> Result<Option<e::FileStat>, e::IoError> {
        let stat = area(bundle)?.stat(path).map_err(io_error)?;
        Ok(stat.map(file_stat))
    }

    fn read_file(&self, bundle: &str, path: &str, offset: u64, len: u32) -> Result<Vec<u8>, e::IoError> {
        area(bundle)?.read_file(path, offset, len).map_err(io_error)
    }

    fn write_file(&self, bundle: &str, path: &str, offset: u64, data: &[u8]) -> Result<(), e::IoError> {
        area(bundle)?.write_file(path, offset, data).map_err(io_error)
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
            e::MoveMode::Replace => files::MoveMode::Replace,
            e::MoveMode::NoReplace => files::MoveMode::NoReplace,
        };
        area(bundle)?.move_file(from, to, mode, durable).map_err(io_error)
    }

    fn remove_file(&self, bundle: &str, path: &str) -> Result<(), e::IoError> {
        area(bundle)?.remove_file(path).map_err(io_error)
    }

    fn flush(&self, bundle: &str) -> Result<(), e::IoError> {
        area(bundle)?.flush().map_err(io_error)
    }

    fn cloud_stat(&self, bundle: &str, path: &str) -> Result<e::CloudObject, e::CloudError> {
        bucket(bundle)?.stat(path).map(cloud_object).map_err(cloud_error)
    }

    fn cloud_read(
        &self,
        bundle: &str,
        path: &str,
        offset: u64,
        len: u32,
        if_match: Option<&str>,
    ) -> Result<Vec<u8>, e::CloudError> {
        bucket(bundle)?.read(path, offset, len, if_match).map_err(cloud_error)
    }

    fn begin_upload(
        &self,
        bundle: &str,
        path: &str,
        precondition: &e::WritePrecondition,
    ) -> Result<u64, e::CloudError> {
        bucket(bundle)?
            .begin_upload(path, &wit_precondition(precondition.clone()))
            .map_err(cloud_error)
    }

    fn upload_part(&self, id: u64, data: &[u8]) -> Result<(), e::CloudError> {
        cloud::upload_part(id, data).map_err(cloud_error)
    }

    fn finish_upload(&self, id: u64) -> Result<e::CloudObject, e::CloudError> {
        cloud::finish_upload(id).map(cloud_object).map_err(cloud_error)
    }

    fn abort_upload(&self, id: u64) {
        cloud::abort_upload(id)
    }
}

fn wit_precondition(p: e::WritePrecondition) -> types::WritePrecondition {
    match p {
        e::WritePrecondition::None => types::WritePrecondition::None,
        e::WritePrecondition::IfMatch(etag) => types::WritePrecondition::IfMatch(etag),
        e::WritePrecondition::IfAbsent => types::WritePrecondition::IfAbsent,
    }
}

fn file_stat(s: types::FileStat) -> e::FileStat {
    e::FileStat {
        kind: match s.kind {
            types::FileKind::File => e::FileKind::File,
            types::FileKind::Folder => e::FileKind::Folder,
            types::FileKind::Symlink => e::FileKind::Symlink,
            types::FileKind::Special => e::FileKind::Special,
        },
        size: s.size,
        mtime_ns: s.mtime_ns,
        ctime_ns: s.ctime_ns,
        inode: s.inode,
        atime_ns: s.atime_ns,
    }
}

fn tree_entry(t: files::TreeEntry) -> e::TreeEntry {
    e::TreeEntry {
        path: t.path,
        stat: file_stat(t.stat),
        problem: t.problem,
    }
}

#[cfg(feature = "native")]
fn stamp(s: LocalStamp) -> types::LocalStamp {
    types::LocalStamp {
        size: s.size,
        mtime_ns: s.mtime_ns,
        ctime_ns: s.ctime_ns,
        inode: s.inode,
    }
}

fn cloud_object(o: types::Object) -> e::CloudObject {
    e::CloudObject {
        path: o.path,
        size: o.size,
        etag: o.etag,
        version: o.version,
        content_hash: o.content_hash,
        modified_ms: o.modified_ms,
    }
}

fn io_error(err: types::IoError) -> e::IoError {
    use types::IoErrorKind as K;
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

fn cloud_error(err: types::CloudError) -> e::CloudError {
    use types::CloudErrorKind as K;
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
