//! What a Store holds for its instance: the backends, the capability checks
//! the imports (`super::imports`) start with, the conversions they share,
//! and the delivery of the events each tick hands back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Resource, ResourceTable};
use wasmtime::StoreLimits;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::exports::ohos::cloudsync::engine;
use super::bindings::ohos::cloudsync::{files, types};
use crate::api::{self, DownloadProgress, ListenerId, OptimizeSpaceProgress, SyncProgress};
use crate::beneath::{Root, Stamp};
use crate::cloud as cloud_backend;
use crate::cloud::{Cloud, CloudError, CloudErrorKind, CloudObject, Precondition};
use crate::device::DeviceStatus;
use crate::storage::{AppAreas, Metadata, SandboxError};
use crate::transfers::{TransferError, Transfers};

/// A cloud call taking longer than this fails as a network error.
const CLOUD_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Running downloads / sync runs remembered per listener, at most (for the
/// FAILED events a trap sends).
const MAX_IN_FLIGHT: usize = 4096;
/// Largest read or write through the component's memory.
pub(crate) const IO_MAX: usize = 4 << 20;
/// Bytes of cloud uploads (`cloud.begin-upload`) one instance may hold at
/// once: a component on the core imports sends whole files through them.
const UPLOAD_BYTES_MAX: usize = 256 << 20;
/// Uploads through the component open at once (each holds a row here).
const MAX_UPLOADS: usize = 64;
/// Host transfers one instance may hold at once: each holds an open file.
pub(crate) const MAX_TRANSFERS: usize = 1024;

/// Areas and buckets one instance may hold at once: each is a row in the
/// host's table, so a guest opening them without end is refused, not fed.
const MAX_GRANTS: usize = 1024;

/// An app's local area, granted by `files.area.open`: the bundle checked
/// there, the only place it is.
pub struct AreaGrant {
    bundle: String,
}

/// An app's part of the cloud, granted by `cloud.bucket.open`.
pub struct BucketGrant {
    bundle: String,
}

/// Where events go: the dispatcher thread that calls the listeners.
pub type EventSink = std::sync::mpsc::Sender<HostEvent>;

/// What the component tells the host's listeners, in order.
pub enum HostEvent {
    Download(ListenerId, DownloadProgress),
    Sync(ListenerId, SyncProgress),
    Optimize(ListenerId, OptimizeSpaceProgress),
    /// Why a download failed; precedes its FAILED events.
    FailureReason {
        uri: String,
        reason: String,
    },
    /// What a sync run decided for a path, and why.
    Decision(crate::api::SyncDecision),
    /// Why an optimisation failed; precedes its FAILED event.
    OptimizeFailure(ListenerId, crate::api::CloudSyncError),
    /// The engine component failed (a trap): what it said, for people.
    Fault(String),
}

/// Backends shared by every instance of one runtime.
#[derive(Clone)]
pub struct Backends {
    pub areas: AppAreas,
    pub meta: Arc<dyn Metadata>,
    pub cloud: Arc<dyn Cloud>,
    pub device: Arc<dyn DeviceStatus>,
    /// A few characters of this root's device id: conflict copies name the
    /// device by its name and these, since two devices may share a name.
    pub device_tag: String,
    /// Who calls, whom it may act for, which apps may sync, download rates.
    pub hooks: Arc<dyn crate::identity::Hooks>,
    pub handle: tokio::runtime::Handle,
    pub events: EventSink,
}

pub struct HostState {
    pub(crate) b: Backends,
    pub(crate) transfers: Transfers,
    /// Downloads that reported RUNNING and no terminal event yet, per
    /// listener: if the instance traps they end with FAILED.
    pub(crate) in_flight: HashMap<(ListenerId, String), DownloadProgress>,
    /// Sync runs that reported progress and no terminal event yet, per
    /// listener: if the instance traps they end as failed.
    pub(crate) syncs_in_flight: HashMap<ListenerId, SyncProgress>,
    /// The running optimisation's listeners (a task's one, or each caller
    /// of `optimizeStorage`) and their last events.
    pub(crate) optimize_in_flight: HashMap<ListenerId, OptimizeSpaceProgress>,
    pub(crate) limits: StoreLimits,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) call_started: Instant,
    pub(crate) host_time: Duration,
    pub(crate) call_budget: Duration,
    /// Wall-clock time one call may take, host functions included.
    pub(crate) call_wall_limit: Duration,
    /// Per bundle: whether its area's file system has fine stamps.
    pub(crate) fine_stamps: HashMap<String, bool>,
    /// The walk and the listing being paged out, so that each page goes on
    /// from the last instead of walking again.
    pub(crate) walk_pages: Pages<crate::storage::SortedWalk>,
    pub(crate) list_pages: Pages<Box<dyn cloud_backend::ListCursor>>,
    /// Cloud uploads the component sends through its memory.
    pub(crate) uploads: Uploads,
    /// Areas and buckets granted and not dropped.
    grants: usize,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    pub fn new(
        b: Backends,
        transfers: Transfers,
        limits: StoreLimits,
        call_budget: Duration,
        call_wall_limit: Duration,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(64 * 1024);
        // Nothing is granted: no directories, no sockets, no environment.
        let wasi = wasmtime_wasi::WasiCtxBuilder::new().stderr(stderr.clone()).build();
        HostState {
            b,
            transfers,
            in_flight: HashMap::new(),
            syncs_in_flight: HashMap::new(),
            optimize_in_flight: HashMap::new(),
            limits,
            stderr,
            call_started: Instant::now(),
            host_time: Duration::ZERO,
            call_budget,
            call_wall_limit,
            fine_stamps: HashMap::new(),
            walk_pages: Pages::default(),
            list_pages: Pages::default(),
            uploads: Uploads::default(),
            grants: 0,
            wasi,
            table: ResourceTable::new(),
        }
    }

    /// Marks the start of a guest call, for the time budget.
    pub fn begin_call(&mut self) {
        self.call_started = Instant::now();
        self.host_time = Duration::ZERO;
    }

    /// Wall time of the current call so far.
    pub fn wall_time(&self) -> Duration {
        self.call_started.elapsed()
    }

    /// Guest time of the current call: wall time less time in host functions.
    pub fn guest_time(&self) -> Duration {
        self.call_started.elapsed().saturating_sub(self.host_time)
    }

    /// What the guest wrote to stderr (a panic message, say).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).trim().to_string()
    }

    /// A fresh listing of `bundle` under `prefix` after `after`, as the
    /// engine names paths.
    pub(crate) fn listing(
        &self,
        bundle: &str,
        prefix: &str,
        after: Option<&str>,
    ) -> Result<Box<dyn cloud_backend::ListCursor>, types::CloudError> {
        // A prefix is a key's beginning: no `.`, `..` or empty parts (a
        // trailing `/` aside), so a listing never leaves the bundle.
        let parts = prefix.strip_suffix('/').unwrap_or(prefix);
        if !parts.is_empty() {
            crate::cloud::check_key(parts).map_err(wit_cloud_error)?;
        }
        let after = after.map(|a| format!("{bundle}/{a}"));
        Ok(cloud_backend::listing(
            self.b.cloud.clone(),
            &format!("{bundle}/{prefix}"),
            after.as_deref(),
        ))
    }

    pub(crate) fn timed<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let start = Instant::now();
        let r = f(self);
        self.host_time += start.elapsed();
        r
    }

    /// Grants the area of `bundle`, if the caller may act for it.
    pub(crate) fn open_area(&mut self, bundle: String) -> Result<Resource<AreaGrant>, types::IoError> {
        self.grant(&bundle)?;
        self.push_grant(AreaGrant { bundle })
            .map_err(|why| io_error(types::IoErrorKind::Other, why))
    }

    /// Grants the cloud bucket of `bundle`, if the caller may act for it.
    pub(crate) fn open_bucket(&mut self, bundle: String) -> Result<Resource<BucketGrant>, types::CloudError> {
        let unauthorized = |e: types::IoError| wit_cloud_error_kind(types::CloudErrorKind::Unauthorized, e.message);
        self.grant(&bundle).map_err(unauthorized)?;
        self.push_grant(BucketGrant { bundle })
            .map_err(|why| wit_cloud_error_kind(types::CloudErrorKind::Other, why))
    }

    fn push_grant<T: Send + 'static>(&mut self, grant: T) -> Result<Resource<T>, String> {
        if self.grants >= MAX_GRANTS {
            return Err(format!("more than {MAX_GRANTS} areas and buckets open at once"));
        }
        let r = self.table.push(grant).map_err(|e| e.to_string())?;
        self.grants += 1;
        Ok(r)
    }

    /// Ends a grant the component dropped.
    pub(crate) fn drop_grant<T: 'static>(&mut self, r: Resource<T>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        self.grants -= 1;
        Ok(())
    }

    /// Runs an area's method, timed, with the bundle it was granted for.
    pub(crate) fn in_area<R>(
        &mut self,
        area: &Resource<AreaGrant>,
        f: impl FnOnce(&mut Self, String) -> Result<R, types::IoError>,
    ) -> Result<R, types::IoError> {
        self.timed(|s| {
            let bundle = s.area_bundle(area)?;
            f(s, bundle)
        })
    }

    /// Runs a bucket's method, timed, with the bundle it was granted for.
    pub(crate) fn in_bucket<R>(
        &mut self,
        bucket: &Resource<BucketGrant>,
        f: impl FnOnce(&mut Self, String) -> Result<R, types::CloudError>,
    ) -> Result<R, types::CloudError> {
        self.timed(|s| {
            let bundle = s.bucket_bundle(bucket)?;
            f(s, bundle)
        })
    }

    /// The bundle `area` was granted for, when it is `bundle`: a transfer
    /// moves bytes between one app's area and its own part of the cloud.
    pub(crate) fn granted_same(&self, area: &Resource<AreaGrant>, bundle: &str) -> Result<String, types::IoError> {
        let granted = self.area_bundle(area)?;
        if granted != bundle {
            return Err(io_error(
                types::IoErrorKind::PermissionDenied,
                format!("the area of {granted} and the cloud of {bundle} belong to different apps"),
            ));
        }
        Ok(granted)
    }

    /// The bundle an area was granted for.
    fn area_bundle(&self, r: &Resource<AreaGrant>) -> Result<String, types::IoError> {
        self.table
            .get(r)
            .map(|g| g.bundle.clone())
            .map_err(|e| io_error(types::IoErrorKind::Other, e.to_string()))
    }

    /// The bundle a bucket was granted for.
    fn bucket_bundle(&self, r: &Resource<BucketGrant>) -> Result<String, types::CloudError> {
        self.table
            .get(r)
            .map(|g| g.bundle.clone())
            .map_err(|e| wit_cloud_error_kind(types::CloudErrorKind::Other, e.to_string()))
    }

    /// Whether the caller may act for `bundle`, a bundle name.
    pub(crate) fn grant(&self, bundle: &str) -> Result<(), types::IoError> {
        if !crate::identity::is_valid_bundle(bundle) {
            return Err(io_error(
                types::IoErrorKind::PermissionDenied,
                format!("{bundle:?} is not a valid bundle name"),
            ));
        }
        if self.b.hooks.may_act_for(bundle) {
            Ok(())
        } else {
            Err(io_error(
                types::IoErrorKind::PermissionDenied,
                format!("{} may not act for {bundle}", self.b.hooks.caller().bundle),
            ))
        }
    }

    /// Metadata keys are `<kind>/<bundle>/…`: the store is shared by every
    /// app on this root, so an app reaches only the records of bundles it
    /// may act for.
    pub(crate) fn grant_key(&self, key: &str) -> Result<(), types::IoError> {
        match key.split('/').nth(1) {
            Some(bundle) if !bundle.is_empty() && key.matches('/').count() >= 2 => self.grant(bundle),
            _ => Err(io_error(
                types::IoErrorKind::PermissionDenied,
                format!("metadata key {key:?} is not <kind>/<bundle>/…"),
            )),
        }
    }

    /// A granted bundle's area: made when `create` (writes), `None` when
    /// missing (reads never make a folder).
    pub(crate) fn area(&self, bundle: &str, create: bool) -> Result<Option<Root>, types::IoError> {
        self.b.areas.area(bundle, create).map_err(sandbox_error)
    }

    /// The area for `paths` (each checked first, whether or not the area
    /// exists yet: a bad path is refused the same way every time).
    pub(crate) fn area_for(&self, bundle: &str, paths: &[&str], create: bool) -> Result<Option<Root>, types::IoError> {
        for p in paths {
            crate::beneath::check(p).map_err(path_error)?;
        }
        self.area(bundle, create)
    }

    /// The area for a write (made if missing).
    pub(crate) fn area_w(&self, bundle: &str) -> Result<Root, types::IoError> {
        Ok(self.area(bundle, true)?.expect("made"))
    }

    pub(crate) fn block<F: std::future::Future<Output = Result<T, CloudError>>, T>(
        &self,
        f: F,
    ) -> Result<T, CloudError> {
        self.b.handle.block_on(async {
            tokio::time::timeout(CLOUD_CALL_TIMEOUT, f).await.unwrap_or_else(|_| {
                Err(CloudError::new(
                    CloudErrorKind::Network,
                    "the cloud did not answer in time",
                ))
            })
        })
    }

    /// Refuses a transfer beyond [`MAX_TRANSFERS`] held at once (a guest
    /// starting them without end would use up the process's files).
    pub(crate) fn room_for_a_transfer(&self) -> Result<(), types::CloudError> {
        if self.transfers.len() >= MAX_TRANSFERS {
            return Err(wit_cloud_error_kind(
                types::CloudErrorKind::Throttled,
                format!("more than {MAX_TRANSFERS} transfers at once"),
            ));
        }
        Ok(())
    }

    /// The cloud key of `path` in a granted bundle's part.
    pub(crate) fn cloud_key(&self, bundle: &str, path: &str) -> Result<String, types::CloudError> {
        let key = format!("{bundle}/{path}");
        crate::cloud::check_key(&key).map_err(wit_cloud_error)?;
        Ok(key)
    }
}

/// The WIT's sync progress as the API's.
pub(crate) fn sync_progress(p: types::SyncProgress) -> SyncProgress {
    use api::{ErrorType as E, SyncState as S};
    SyncProgress {
        state: match p.state {
            types::SyncState::Uploading => S::Uploading,
            types::SyncState::UploadFailed => S::UploadFailed,
            types::SyncState::Downloading => S::Downloading,
            types::SyncState::DownloadFailed => S::DownloadFailed,
            types::SyncState::Completed => S::Completed,
            types::SyncState::Stopped => S::Stopped,
        },
        error: match p.error {
            types::ErrorType::NoError => E::NoError,
            types::ErrorType::NetworkUnavailable => E::NetworkUnavailable,
            types::ErrorType::WifiUnavailable => E::WifiUnavailable,
            types::ErrorType::BatteryLevelLow => E::BatteryLevelLow,
            types::ErrorType::BatteryLevelWarning => E::BatteryLevelWarning,
            types::ErrorType::CloudStorageFull => E::CloudStorageFull,
            types::ErrorType::LocalStorageFull => E::LocalStorageFull,
            types::ErrorType::DeviceTemperatureTooHigh => E::DeviceTemperatureTooHigh,
        },
    }
}

fn decision(d: types::SyncDecision) -> crate::api::SyncDecision {
    use crate::api::SyncAction as A;
    use types::SyncAction as W;
    crate::api::SyncDecision {
        bundle: d.bundle,
        path: d.path,
        action: match d.action {
            W::Upload => A::Upload,
            W::Download => A::Download,
            W::DeleteLocal => A::DeleteLocal,
            W::DeleteCloud => A::DeleteCloud,
            W::Conflict => A::Conflict,
            W::Record => A::Record,
            W::Placeholder => A::Placeholder,
            W::Forget => A::Forget,
            W::Skip => A::Skip,
            W::Refuse => A::Refuse,
            W::Fail => A::Fail,
        },
        reason: d.reason,
        dry_run: d.dry_run,
    }
}

impl HostState {
    /// Hands the events a tick gave back to the listeners (through the
    /// dispatcher), remembering what runs in case the instance traps.
    pub(crate) fn deliver(&mut self, events: Vec<engine::Event>) {
        for event in events {
            match event.body {
                engine::EventBody::Download(p) => self.on_download(event.listener, p),
                engine::EventBody::Sync(p) => self.on_sync(event.listener, p),
                engine::EventBody::Optimize(p) => self.on_optimize(event.listener, p),
                engine::EventBody::FailureReason((uri, reason)) => {
                    let _ = self.b.events.send(HostEvent::FailureReason { uri, reason });
                }
                engine::EventBody::Decision(d) => {
                    let _ = self.b.events.send(HostEvent::Decision(decision(d)));
                }
                engine::EventBody::OptimizeFailure(e) => {
                    let error = crate::runtime::guest_error(e);
                    let _ = self.b.events.send(HostEvent::OptimizeFailure(event.listener, error));
                }
            }
        }
    }

    fn on_optimize(&mut self, listener: u64, p: types::OptimizeSpaceProgress) {
        let progress = OptimizeSpaceProgress {
            state: match p.state {
                types::OptimizeState::Running => api::OptimizeState::Running,
                types::OptimizeState::Completed => api::OptimizeState::Completed,
                types::OptimizeState::Failed => api::OptimizeState::Failed,
                types::OptimizeState::Stopped => api::OptimizeState::Stopped,
            },
            progress: p.progress.min(100),
        };
        if progress.is_terminal() {
            self.optimize_in_flight.remove(&listener);
        } else if self.optimize_in_flight.len() < MAX_IN_FLIGHT || self.optimize_in_flight.contains_key(&listener) {
            self.optimize_in_flight.insert(listener, progress);
        }
        let _ = self.b.events.send(HostEvent::Optimize(listener, progress));
    }

    fn on_sync(&mut self, listener: u64, p: types::SyncProgress) {
        let progress = sync_progress(p);
        if progress.is_terminal() {
            self.syncs_in_flight.remove(&listener);
        } else {
            // Bounded: a guest naming listeners at random cannot grow it.
            if self.syncs_in_flight.len() < MAX_IN_FLIGHT || self.syncs_in_flight.contains_key(&listener) {
                self.syncs_in_flight.insert(listener, progress);
            }
        }
        let _ = self.b.events.send(HostEvent::Sync(listener, progress));
    }

    fn on_download(&mut self, listener: u64, p: types::DownloadProgress) {
        let progress = DownloadProgress {
            state: match p.state {
                types::State::Running => api::State::Running,
                types::State::Completed => api::State::Completed,
                types::State::Failed => api::State::Failed,
                types::State::Stopped => api::State::Stopped,
            },
            processed: p.processed,
            size: p.size,
            uri: p.uri,
            error: match p.error {
                types::DownloadErrorType::NoError => api::DownloadErrorType::NoError,
                types::DownloadErrorType::UnknownError => api::DownloadErrorType::UnknownError,
                types::DownloadErrorType::NetworkUnavailable => api::DownloadErrorType::NetworkUnavailable,
                types::DownloadErrorType::LocalStorageFull => api::DownloadErrorType::LocalStorageFull,
                types::DownloadErrorType::ContentNotFound => api::DownloadErrorType::ContentNotFound,
                types::DownloadErrorType::FrequentUserRequests => api::DownloadErrorType::FrequentUserRequests,
            },
        };
        let key = (listener, progress.uri.clone());
        if progress.is_terminal() {
            self.in_flight.remove(&key);
        } else {
            if self.in_flight.len() < MAX_IN_FLIGHT || self.in_flight.contains_key(&key) {
                self.in_flight.insert(key, progress.clone());
            }
        }
        let _ = self.b.events.send(HostEvent::Download(listener, progress));
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

pub(crate) fn file_stat(st: &rustix::fs::Stat) -> types::FileStat {
    let stamp = Stamp::of(st);
    types::FileStat {
        kind: match rustix::fs::FileType::from_raw_mode(st.st_mode) {
            rustix::fs::FileType::RegularFile => types::FileKind::File,
            rustix::fs::FileType::Directory => types::FileKind::Folder,
            rustix::fs::FileType::Symlink => types::FileKind::Symlink,
            _ => types::FileKind::Special,
        },
        size: stamp.size,
        mtime_ns: stamp.mtime_ns,
        ctime_ns: stamp.ctime_ns,
        inode: stamp.inode,
        atime_ns: crate::beneath::epoch_ns(st.st_atime, st.st_atime_nsec as i64),
    }
}

/// A walk or listing being paged out: a page asked for after the last one
/// given goes on from there; any other starts afresh.
pub(crate) struct Pages<C> {
    /// (bundle, folder or prefix), the last path given, and the cursor.
    open: Option<((String, String), String, C)>,
}

impl<C> Default for Pages<C> {
    fn default() -> Self {
        Pages { open: None }
    }
}

impl<C> Pages<C> {
    /// The cursor that goes on after `after` for `key`, if it is kept
    /// (taken: it is kept again with the page it gives).
    pub(crate) fn resume(&mut self, key: &(String, String), after: Option<&str>) -> Option<C> {
        let (k, last, _) = self.open.as_ref()?;
        if k == key && Some(last.as_str()) == after {
            return self.open.take().map(|(_, _, cursor)| cursor);
        }
        None
    }

    pub(crate) fn keep(&mut self, key: (String, String), last: String, cursor: C) {
        self.open = Some((key, last, cursor));
    }
}

pub(crate) fn tree_entry(found: crate::storage::Found) -> files::TreeEntry {
    files::TreeEntry {
        path: found.path,
        stat: file_stat(&found.stat),
        problem: found.problem,
    }
}

pub(crate) fn path_error(e: crate::beneath::BeneathError) -> types::IoError {
    use crate::beneath::BeneathError as B;
    match e {
        B::Symlink(_) | B::Mount(_) => io_error(types::IoErrorKind::EscapesSandbox, e.to_string()),
        B::NotADir(_) | B::NotAFile(_) => io_error(types::IoErrorKind::NotAFile, e.to_string()),
        B::Invalid(_) => io_error(types::IoErrorKind::PermissionDenied, e.to_string()),
        B::Io { path, source } => std_io_error(&path, source),
    }
}

pub(crate) fn io_error(kind: types::IoErrorKind, message: String) -> types::IoError {
    types::IoError { kind, message }
}

pub(crate) fn std_io_error(path: &str, e: std::io::Error) -> types::IoError {
    use std::io::ErrorKind as E;
    use types::IoErrorKind as K;
    let kind = match e.kind() {
        E::NotFound => K::NotFound,
        E::AlreadyExists => K::AlreadyExists,
        E::PermissionDenied => K::PermissionDenied,
        E::StorageFull | E::QuotaExceeded => K::NoSpace,
        E::Interrupted => K::Interrupted,
        E::WouldBlock => K::WouldBlock,
        E::Unsupported => K::NotSupported,
        E::NotADirectory | E::IsADirectory => K::NotAFile,
        _ => K::Other,
    };
    io_error(kind, format!("{path}: {e}"))
}

pub(crate) fn sandbox_error(e: SandboxError) -> types::IoError {
    match e {
        SandboxError::InvalidBundle(_) => io_error(types::IoErrorKind::PermissionDenied, e.to_string()),
        SandboxError::Path(p) => path_error(p),
        SandboxError::Io(io) => std_io_error("", io),
    }
}

pub(crate) fn meta_error(e: crate::storage::MetaError) -> types::IoError {
    io_error(types::IoErrorKind::Other, e.to_string())
}

pub(crate) fn wit_cloud_error_kind(kind: types::CloudErrorKind, message: String) -> types::CloudError {
    types::CloudError { kind, message }
}

pub(crate) fn wit_cloud_error(e: CloudError) -> types::CloudError {
    use types::CloudErrorKind as K;
    let kind = match e.kind {
        CloudErrorKind::NotFound => K::NotFound,
        CloudErrorKind::Network => K::Network,
        CloudErrorKind::Throttled => K::Throttled,
        CloudErrorKind::StorageFull => K::StorageFull,
        CloudErrorKind::Unauthorized => K::Unauthorized,
        CloudErrorKind::PreconditionFailed => K::PreconditionFailed,
        CloudErrorKind::Other => K::Other,
    };
    wit_cloud_error_kind(kind, e.message)
}

pub(crate) fn transfer_error(e: TransferError) -> types::CloudError {
    match e {
        TransferError::Cloud(c) => wit_cloud_error(c),
        TransferError::LocalNoSpace(m) => wit_cloud_error_kind(types::CloudErrorKind::LocalNoSpace, m),
        TransferError::LocalIo(m) => wit_cloud_error_kind(types::CloudErrorKind::LocalIo, m),
    }
}

pub(crate) fn wit_object(bundle: &str, o: CloudObject) -> types::Object {
    let path = o
        .key
        .strip_prefix(bundle)
        .and_then(|k| k.strip_prefix('/'))
        .unwrap_or(&o.key)
        .to_string();
    types::Object {
        path,
        size: o.size,
        etag: o.etag,
        version: o.version,
        content_hash: o.content_hash,
        modified_ms: o.modified_ms,
    }
}

pub(crate) fn precondition_of(p: types::WritePrecondition) -> Precondition {
    match p {
        types::WritePrecondition::None => Precondition::None,
        types::WritePrecondition::IfMatch(etag) => Precondition::IfMatch(etag),
        types::WritePrecondition::IfAbsent => Precondition::IfAbsent,
    }
}

/// One cloud upload the component sends a part at a time.
pub(crate) struct Upload {
    pub bundle: String,
    pub key: String,
    pub precondition: Precondition,
    pub data: Vec<u8>,
}

/// The uploads in progress, bounded in bytes.
#[derive(Default)]
pub(crate) struct Uploads {
    next: u64,
    open: HashMap<u64, Upload>,
    /// Bytes the open uploads hold together.
    held: usize,
}

impl Uploads {
    pub fn begin(&mut self, bundle: String, key: String, precondition: Precondition) -> Result<u64, types::CloudError> {
        if self.open.len() >= MAX_UPLOADS {
            return Err(wit_cloud_error_kind(
                types::CloudErrorKind::Throttled,
                format!("more than {MAX_UPLOADS} uploads through the component at once"),
            ));
        }
        self.next += 1;
        self.open.insert(
            self.next,
            Upload {
                bundle,
                key,
                precondition,
                data: Vec::new(),
            },
        );
        Ok(self.next)
    }

    pub fn append(&mut self, id: u64, data: Vec<u8>) -> Result<(), types::CloudError> {
        let held = self.held;
        let Some(upload) = self.open.get_mut(&id) else {
            return Err(wit_cloud_error_kind(
                types::CloudErrorKind::Other,
                format!("no upload {id}"),
            ));
        };
        if data.len() > IO_MAX || held + data.len() > UPLOAD_BYTES_MAX {
            let _ = self.take(id);
            return Err(wit_cloud_error_kind(
                types::CloudErrorKind::Other,
                format!("uploads through the component hold at most {UPLOAD_BYTES_MAX} bytes here; this host's transfers move larger files"),
            ));
        }
        upload.data.extend_from_slice(&data);
        self.held += data.len();
        Ok(())
    }

    pub fn take(&mut self, id: u64) -> Result<Upload, types::CloudError> {
        let upload = self
            .open
            .remove(&id)
            .ok_or_else(|| wit_cloud_error_kind(types::CloudErrorKind::Other, format!("no upload {id}")))?;
        self.held -= upload.data.len();
        Ok(upload)
    }
}
