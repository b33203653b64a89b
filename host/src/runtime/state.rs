//! What a Store holds for its instance, and the imports the component calls.
//!
//! Each host function starts with the capability check (may the caller act
//! for this bundle?), then does the work through a backend: the sandboxed
//! app areas, the metadata store, the cloud, the transfers. Time spent here
//! is not counted against the guest's per-call budget.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use wasmtime::component::ResourceTable;
use wasmtime::StoreLimits;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::ohos::cloudsync::{cloud, device, events, media, permission, storage, transfer, types};
use crate::api::{self, DownloadProgress, ListenerId, OptimizeSpaceProgress, SyncProgress};
use crate::beneath::{Root, Stamp};
use crate::cloud as cloud_backend;
use crate::cloud::{bytes_stream, Cloud, CloudError, CloudErrorKind, CloudObject, Precondition};
use crate::device::DeviceStatus;
use crate::identity::Identity;
use crate::storage::{AppAreas, MetaStore, SandboxError};
use crate::transfers::{DownloadJob, Outcome, TransferError, Transfers, UploadJob};

/// A cloud call taking longer than this fails as a network error.
const CLOUD_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Running downloads / sync runs remembered per listener, at most (for the
/// FAILED events a trap sends).
const MAX_IN_FLIGHT: usize = 4096;
/// Largest read or write through the component's memory.
const SMALL_IO_MAX: usize = 1 << 20;

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
    /// The engine component failed (a trap): what it said, for people.
    Fault(String),
}

/// Backends shared by every instance of one runtime.
#[derive(Clone)]
pub struct Backends {
    pub identity: Identity,
    pub areas: AppAreas,
    pub meta: Arc<MetaStore>,
    pub cloud: Arc<dyn Cloud>,
    pub device: Arc<dyn DeviceStatus>,
    /// A few characters of this root's device id: conflict copies name the
    /// device by its name and these, since two devices may share a name.
    pub device_tag: String,
    /// Apps whose cloud switch is off: they may not sync (22400001).
    pub switched_off: Arc<std::collections::BTreeSet<String>>,
    /// Per-app download rates the policy sets.
    pub request_limits: Arc<crate::identity::RequestLimits>,
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
    /// The running space optimisation's listener and last event.
    pub(crate) optimize_in_flight: Option<(ListenerId, OptimizeSpaceProgress)>,
    pub(crate) limits: StoreLimits,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) call_started: Instant,
    pub(crate) host_time: Duration,
    pub(crate) call_budget: Duration,
    /// Wall-clock time one call may take, host functions included.
    pub(crate) call_wall_limit: Duration,
    /// Per bundle: whether its area's file system has fine stamps.
    fine_stamps: HashMap<String, bool>,
    /// The walk and the listing being paged out, so that each page goes on
    /// from the last instead of walking again.
    walk_pages: Pages<crate::storage::SortedWalk>,
    list_pages: Pages<Box<dyn cloud_backend::ListCursor>>,
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
            optimize_in_flight: None,
            limits,
            stderr,
            call_started: Instant::now(),
            host_time: Duration::ZERO,
            call_budget,
            call_wall_limit,
            fine_stamps: HashMap::new(),
            walk_pages: Pages::default(),
            list_pages: Pages::default(),
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
    fn listing(
        &self,
        bundle: &str,
        prefix: &str,
        after: Option<&str>,
    ) -> Result<Box<dyn cloud_backend::ListCursor>, cloud::CloudError> {
        self.grant(bundle)
            .map_err(|e| wit_cloud_error_kind(cloud::CloudErrorKind::Unauthorized, e.message))?;
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

    fn timed<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let start = Instant::now();
        let r = f(self);
        self.host_time += start.elapsed();
        r
    }

    fn grant(&self, bundle: &str) -> Result<(), storage::IoError> {
        if self.b.identity.may_act_for(bundle) {
            Ok(())
        } else {
            Err(io_error(
                storage::IoErrorKind::PermissionDenied,
                format!("{} may not act for {bundle}", self.b.identity.bundle),
            ))
        }
    }

    /// Metadata keys are `<kind>/<bundle>/…`: the store is shared by every
    /// app on this root, so an app reaches only the records of bundles it
    /// may act for.
    fn grant_key(&self, key: &str) -> Result<(), storage::IoError> {
        match key.split('/').nth(1) {
            Some(bundle) if !bundle.is_empty() && key.matches('/').count() >= 2 => self.grant(bundle),
            _ => Err(io_error(
                storage::IoErrorKind::PermissionDenied,
                format!("metadata key {key:?} is not <kind>/<bundle>/…"),
            )),
        }
    }

    /// The bundle's area, after the capability check: made when `create`
    /// (writes), `None` when missing (reads never make a folder).
    fn area(&self, bundle: &str, create: bool) -> Result<Option<Root>, storage::IoError> {
        self.grant(bundle)?;
        self.b.areas.area(bundle, create).map_err(sandbox_error)
    }

    /// The area for `paths` (each checked first, whether or not the area
    /// exists yet: a bad path is refused the same way every time).
    fn area_for(&self, bundle: &str, paths: &[&str], create: bool) -> Result<Option<Root>, storage::IoError> {
        for p in paths {
            crate::beneath::check(p).map_err(path_error)?;
        }
        self.area(bundle, create)
    }

    /// The area for a write (made if missing).
    fn area_w(&self, bundle: &str) -> Result<Root, storage::IoError> {
        Ok(self.area(bundle, true)?.expect("made"))
    }

    fn block<F: std::future::Future<Output = Result<T, CloudError>>, T>(&self, f: F) -> Result<T, CloudError> {
        self.b.handle.block_on(async {
            tokio::time::timeout(CLOUD_CALL_TIMEOUT, f).await.unwrap_or_else(|_| {
                Err(CloudError::new(
                    CloudErrorKind::Network,
                    "the cloud did not answer in time",
                ))
            })
        })
    }

    fn cloud_key(&self, bundle: &str, path: &str) -> Result<String, cloud::CloudError> {
        self.grant(bundle)
            .map_err(|e| wit_cloud_error_kind(cloud::CloudErrorKind::Unauthorized, e.message))?;
        let key = format!("{bundle}/{path}");
        crate::cloud::check_key(&key).map_err(wit_cloud_error)?;
        Ok(key)
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

impl types::Host for HostState {}

impl permission::Host for HostState {
    fn caller_bundle(&mut self) -> String {
        self.b.identity.bundle.clone()
    }
    fn has_permission(&mut self, name: String) -> bool {
        self.b.identity.has_permission(&name)
    }
    fn is_system_app(&mut self) -> bool {
        self.b.identity.system_app
    }
}

impl device::Host for HostState {
    fn status(&mut self) -> device::DeviceStatus {
        let s = self.timed(|s| s.b.device.state());
        device::DeviceStatus {
            network_available: s.network_available,
            wifi_available: s.wifi_available,
            battery_percent: s.battery_percent,
            charging: s.charging,
        }
    }
    fn now_ms(&mut self) -> u64 {
        self.b.device.now_ms()
    }
    fn device_name(&mut self) -> String {
        format!("{}-{}", self.b.device.name(), self.b.device_tag)
    }
}

impl storage::Host for HostState {
    fn stat(&mut self, bundle: String, path: String) -> Result<Option<storage::FileStat>, storage::IoError> {
        self.timed(|s| {
            let Some(area) = s.area_for(&bundle, &[&path], false)? else {
                return Ok(None);
            };
            Ok(area.lstat(&path).map_err(path_error)?.map(|st| file_stat(&st)))
        })
    }

    fn rename(&mut self, bundle: String, from: String, to: String) -> Result<(), storage::IoError> {
        self.timed(|s| {
            let area = s.area_for(&bundle, &[&from, &to], true)?.expect("made");
            area.rename(&from, &to).map_err(path_error)
        })
    }

    fn move_file(
        &mut self,
        bundle: String,
        from: String,
        to: String,
        mode: storage::MoveMode,
        durable: bool,
    ) -> Result<(), storage::IoError> {
        use rustix::fs::RenameFlags;
        self.timed(|s| {
            let area = s.area_for(&bundle, &[&from, &to], true)?.expect("made");
            let flags = match mode {
                storage::MoveMode::Replace => RenameFlags::empty(),
                storage::MoveMode::NoReplace => RenameFlags::NOREPLACE,
            };
            let moved = if durable {
                area.rename_with(&from, &to, flags)
            } else {
                area.rename_lazily(&from, &to, flags)
            };
            moved.map_err(|e| match e.raw_os_error() {
                // A file system without renameat2's flags.
                Some(libc::EINVAL) if !flags.is_empty() => {
                    io_error(storage::IoErrorKind::NotSupported, format!("{to}: no such rename here"))
                }
                _ => path_error(e),
            })
        })
    }

    fn swap_if_unchanged(
        &mut self,
        bundle: String,
        from: String,
        to: String,
        expect: storage::LocalStamp,
        durable: bool,
    ) -> Result<storage::SwapOutcome, storage::IoError> {
        self.timed(|s| {
            let area = s.area_for(&bundle, &[&from, &to], true)?.expect("made");
            let expect = Stamp {
                size: expect.size,
                mtime_ns: expect.mtime_ns,
                ctime_ns: expect.ctime_ns,
                inode: expect.inode,
            };
            match crate::storage::swap_if_unchanged(&area, &from, &to, expect, durable) {
                Ok(crate::storage::Swap::Clean) => Ok(storage::SwapOutcome::Clean),
                Ok(crate::storage::Swap::InUse) => Ok(storage::SwapOutcome::InUse),
                Ok(crate::storage::Swap::Changed) => Ok(storage::SwapOutcome::Changed),
                // A file system without renameat2's exchange.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Err(io_error(
                    storage::IoErrorKind::NotSupported,
                    format!("{to}: no atomic swap here"),
                )),
                Err(e) => Err(path_error(e)),
            }
        })
    }

    fn flush(&mut self, bundle: String) -> Result<(), storage::IoError> {
        self.timed(|s| s.area_w(&bundle)?.flush().map_err(path_error))
    }

    fn remove_file(&mut self, bundle: String, path: String) -> Result<(), storage::IoError> {
        self.timed(|s| match s.area_for(&bundle, &[&path], false)? {
            Some(area) => area.remove_file(&path).map_err(path_error),
            None => Ok(()),
        })
    }

    fn create_dir_all(&mut self, bundle: String, path: String) -> Result<(), storage::IoError> {
        self.timed(|s| {
            let area = s.area_for(&bundle, &[&path], true)?.expect("made");
            area.make_dirs(&path).map(|_| ()).map_err(path_error)
        })
    }

    fn remove_dir(&mut self, bundle: String, path: String) -> Result<(), storage::IoError> {
        self.timed(|s| match s.area_for(&bundle, &[&path], false)? {
            Some(area) => area.remove_dir(&path).map_err(path_error),
            None => Ok(()),
        })
    }

    fn free_space(&mut self, bundle: String) -> Result<u64, storage::IoError> {
        self.timed(|s| {
            let area = s.area_w(&bundle)?;
            s.b.device.free_space(area.path()).map_err(|e| std_io_error(&bundle, e))
        })
    }

    fn hash_file(&mut self, bundle: String, path: String, algorithm: String) -> Result<String, storage::IoError> {
        self.timed(|s| {
            if algorithm != "sha256" {
                return Err(io_error(
                    storage::IoErrorKind::NotSupported,
                    format!("no hash {algorithm:?}; use sha256"),
                ));
            }
            let area = s
                .area_for(&bundle, &[&path], false)?
                .ok_or_else(|| io_error(storage::IoErrorKind::NotFound, format!("{path}: no such file")))?;
            let mut file = area.open_read(&path).map_err(path_error)?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf).map_err(|e| std_io_error(&path, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            Ok(format!("{:x}", hasher.finalize()))
        })
    }

    fn fine_stamps(&mut self, bundle: String) -> bool {
        if let Some(&fine) = self.fine_stamps.get(&bundle) {
            return fine;
        }
        // A bundle it may not act for gets no area: no probe, coarse.
        let fine = self
            .timed(|s| s.area_w(&bundle).map(|a| a.fine_stamps()))
            .unwrap_or(false);
        self.fine_stamps.insert(bundle, fine);
        fine
    }

    fn scan_tree(&mut self, bundle: String, dir: String) -> Result<Option<Vec<storage::TreeEntry>>, storage::IoError> {
        self.timed(|s| {
            let Some(area) = s.area_for(&bundle, &[&dir], false)? else {
                return Ok(None);
            };
            let Some(root) = area.dir(&dir).map_err(path_error)? else {
                return Ok(None);
            };
            let mut walk = crate::storage::SortedWalk::new(root).map_err(path_error)?;
            let mut out = Vec::new();
            while let Some(found) = walk.next_entry().map_err(path_error)? {
                out.push(tree_entry(found));
            }
            Ok(Some(out))
        })
    }

    fn walk_page(
        &mut self,
        bundle: String,
        dir: String,
        after: Option<String>,
        max: u32,
    ) -> Result<Option<storage::TreePage>, storage::IoError> {
        self.timed(|s| {
            let key = (bundle.clone(), dir.clone());
            // A walk that goes on is there; a fresh one seeks to `after`.
            let mut walk = match s.walk_pages.resume(&key, after.as_deref()) {
                Some(walk) => walk,
                None => {
                    let Some(area) = s.area_for(&bundle, &[&dir], false)? else {
                        return Ok(None);
                    };
                    let Some(root) = area.dir(&dir).map_err(path_error)? else {
                        return Ok(None);
                    };
                    let mut walk = crate::storage::SortedWalk::new(root).map_err(path_error)?;
                    if let Some(after) = &after {
                        walk.seek(after);
                    }
                    walk
                }
            };
            let max = (max as usize).clamp(1, 65_536);
            let mut entries = Vec::new();
            while entries.len() < max {
                let Some(found) = walk.next_entry().map_err(path_error)? else {
                    return Ok(Some(storage::TreePage { entries, next: None }));
                };
                entries.push(tree_entry(found));
            }
            let next = entries.last().map(|e| e.path.clone());
            if let Some(last) = &next {
                s.walk_pages.keep(key, last.clone(), walk);
            }
            Ok(Some(storage::TreePage { entries, next }))
        })
    }

    fn evict(
        &mut self,
        bundle: String,
        path: String,
        expect: storage::LocalStamp,
        aside: String,
    ) -> Result<(), storage::IoError> {
        self.timed(|s| {
            let area = s
                .area_for(&bundle, &[&path, &aside], false)?
                .ok_or_else(|| io_error(storage::IoErrorKind::NotFound, format!("{path}: no such file")))?;
            let expect = Stamp {
                size: expect.size,
                mtime_ns: expect.mtime_ns,
                ctime_ns: expect.ctime_ns,
                inode: expect.inode,
            };
            crate::storage::evict(&area, &path, expect, &aside).map_err(|e| match e {
                crate::storage::EvictError::InUse => {
                    io_error(storage::IoErrorKind::WouldBlock, format!("{path} is open for writing"))
                }
                crate::storage::EvictError::Changed => io_error(storage::IoErrorKind::Other, format!("{path} changed")),
                crate::storage::EvictError::Path(e) => path_error(e),
            })
        })
    }

    fn meta_get(&mut self, key: String) -> Result<Option<Vec<u8>>, storage::IoError> {
        self.timed(|s| {
            s.grant_key(&key)?;
            s.b.meta.get(&key).map_err(meta_error)
        })
    }

    fn meta_scan(&mut self, prefix: String) -> Result<Vec<(String, Vec<u8>)>, storage::IoError> {
        self.timed(|s| {
            s.grant_key(&prefix)?;
            s.b.meta.scan(&prefix).map_err(meta_error)
        })
    }

    fn meta_scan_page(
        &mut self,
        prefix: String,
        after: Option<String>,
        max: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, storage::IoError> {
        self.timed(|s| {
            s.grant_key(&prefix)?;
            let max = (max as usize).clamp(1, 65_536);
            s.b.meta.scan_page(&prefix, after.as_deref(), max).map_err(meta_error)
        })
    }

    fn meta_commit(&mut self, changes: Vec<storage::MetaChange>) -> Result<(), storage::IoError> {
        self.timed(|s| {
            for c in &changes {
                s.grant_key(&c.key)?;
            }
            let changes: Vec<(String, Option<Vec<u8>>)> = changes.into_iter().map(|c| (c.key, c.value)).collect();
            s.b.meta.commit(&changes).map_err(meta_error)
        })
    }
}

impl cloud::Host for HostState {
    fn stat(&mut self, bundle: String, path: String) -> Result<cloud::Object, cloud::CloudError> {
        self.timed(|s| {
            let key = s.cloud_key(&bundle, &path)?;
            let object = s.block(s.b.cloud.stat(&key)).map_err(wit_cloud_error)?;
            Ok(wit_object(&bundle, object))
        })
    }

    fn ready(&mut self, bundle: String) -> Result<(), cloud::CloudError> {
        self.timed(|s| {
            s.grant(&bundle)
                .map_err(|e| wit_cloud_error_kind(cloud::CloudErrorKind::Unauthorized, e.message))?;
            if s.b.switched_off.contains(&bundle) {
                return Err(wit_cloud_error_kind(
                    cloud::CloudErrorKind::Unauthorized,
                    format!("the cloud switch of {bundle} is off"),
                ));
            }
            // One cheap request: an answer (even "no such object") means the
            // account works; a refusal means it does not.
            let probe = format!("{}/ready", crate::cloud::ENGINE_DIR);
            let root = s.block(s.b.cloud.check_root());
            match root.and_then(|_| s.block(s.b.cloud.stat(&probe))) {
                Ok(_) => Ok(()),
                Err(e) if e.kind == CloudErrorKind::NotFound => Ok(()),
                Err(e) if matches!(e.kind, CloudErrorKind::Network | CloudErrorKind::Throttled) => {
                    Err(wit_cloud_error_kind(cloud::CloudErrorKind::Network, e.message))
                }
                Err(e) => Err(wit_cloud_error_kind(cloud::CloudErrorKind::Unauthorized, e.message)),
            }
        })
    }

    fn list_page(
        &mut self,
        bundle: String,
        prefix: String,
        after: Option<String>,
        max: u32,
    ) -> Result<cloud::ListingPage, cloud::CloudError> {
        self.timed(|s| {
            let key = (bundle.clone(), prefix.clone());
            let mut cursor = match s.list_pages.resume(&key, after.as_deref()) {
                Some(cursor) => cursor,
                None => s.listing(&bundle, &prefix, after.as_deref())?,
            };
            let max = (max as usize).clamp(1, 65_536);
            let items = s.block(cursor.next_page(max)).map_err(wit_cloud_error)?;
            let mut page = cloud::ListingPage {
                objects: Vec::new(),
                skipped: Vec::new(),
                next: None,
            };
            let Some(last) = items.last().map(|i| i.key().to_string()) else {
                return Ok(page); // the end
            };
            let strip = |k: &str| k.strip_prefix(&format!("{bundle}/")).unwrap_or(k).to_string();
            for item in items {
                match item {
                    cloud_backend::Listed::Object(o) => page.objects.push(wit_object(&bundle, o)),
                    cloud_backend::Listed::Skipped { key, why } => page.skipped.push(cloud::Unlisted {
                        path: strip(&key),
                        reason: why,
                    }),
                }
            }
            let next = strip(&last);
            s.list_pages.keep(key, next.clone(), cursor);
            page.next = Some(next);
            Ok(page)
        })
    }
    fn read(&mut self, bundle: String, path: String, offset: u64, len: u32) -> Result<Vec<u8>, cloud::CloudError> {
        self.timed(|s| {
            let key = s.cloud_key(&bundle, &path)?;
            let len = (len as usize).min(SMALL_IO_MAX);
            let cloud = s.b.cloud.clone();
            s.block(async move {
                let (_, stream) = cloud.open(&key, offset, None).await?;
                let mut out = Vec::with_capacity(len);
                stream
                    .take(len as u64)
                    .read_to_end(&mut out)
                    .await
                    .map_err(|e| CloudError::new(CloudErrorKind::Network, e.to_string()))?;
                Ok(out)
            })
            .map_err(wit_cloud_error)
        })
    }

    fn write(
        &mut self,
        bundle: String,
        path: String,
        data: Vec<u8>,
        if_match: Option<String>,
    ) -> Result<cloud::Object, cloud::CloudError> {
        self.timed(|s| {
            let key = s.cloud_key(&bundle, &path)?;
            if data.len() > SMALL_IO_MAX {
                return Err(wit_cloud_error_kind(
                    cloud::CloudErrorKind::Other,
                    "more than 1 MiB; use a transfer".into(),
                ));
            }
            let precondition = match if_match {
                Some(etag) => Precondition::IfMatch(etag),
                None => Precondition::None,
            };
            let object = s
                .block(s.b.cloud.put(&key, bytes_stream(data), precondition))
                .map_err(wit_cloud_error)?;
            Ok(wit_object(&bundle, object))
        })
    }

    fn delete(&mut self, bundle: String, path: String, if_match: Option<String>) -> Result<(), cloud::CloudError> {
        self.timed(|s| {
            let key = s.cloud_key(&bundle, &path)?;
            s.block(s.b.cloud.delete(&key, if_match.as_deref()))
                .map_err(wit_cloud_error)
        })
    }
}

impl media::Host for HostState {
    fn make_thumbnail(
        &mut self,
        bundle: String,
        cloud_path: String,
        thumb_path: String,
        max_edge: u32,
    ) -> Result<(), cloud::CloudError> {
        self.timed(|s| {
            let key = s.cloud_key(&bundle, &cloud_path)?;
            let local_error = |e: storage::IoError| wit_cloud_error_kind(cloud::CloudErrorKind::LocalIo, e.message);
            let area = s.area_w(&bundle).map_err(local_error)?;
            let cloud = s.b.cloud.clone();
            let image = s
                .block(async move {
                    let (object, stream) = cloud.open(&key, 0, None).await?;
                    if object.size > crate::media::MAX_IMAGE_BYTES {
                        return Err(CloudError::new(
                            CloudErrorKind::Other,
                            format!("{key} is {} bytes, too large for a thumbnail", object.size),
                        ));
                    }
                    let mut data = Vec::with_capacity(object.size as usize);
                    stream
                        .take(crate::media::MAX_IMAGE_BYTES)
                        .read_to_end(&mut data)
                        .await
                        .map_err(|e| CloudError::new(CloudErrorKind::Network, e.to_string()))?;
                    Ok(data)
                })
                .map_err(wit_cloud_error)?;
            let jpeg = crate::media::thumbnail(&image, max_edge)
                .map_err(|e| wit_cloud_error_kind(cloud::CloudErrorKind::Other, e.to_string()))?;
            // Written beside its name (resolved beneath the area, no link
            // followed, made fresh), then renamed: never a half thumbnail.
            let io =
                |e: crate::beneath::BeneathError| wit_cloud_error_kind(cloud::CloudErrorKind::LocalIo, e.to_string());
            let temp = format!("{thumb_path}.part");
            area.remove_file(&temp).map_err(io)?;
            let mut file = area.open_write(&temp, true).map_err(io)?;
            std::io::Write::write_all(&mut file, &jpeg)
                .map_err(|e| wit_cloud_error_kind(cloud::CloudErrorKind::LocalIo, e.to_string()))?;
            drop(file);
            area.rename(&temp, &thumb_path).map_err(io)
        })
    }
}

impl transfer::Host for HostState {
    fn start_download(&mut self, r: transfer::DownloadRequest) -> Result<u64, cloud::CloudError> {
        self.timed(|s| {
            let key = s.cloud_key(&r.bundle, &r.cloud_path)?;
            // The caller's own rate, whichever bundle it downloads for.
            let caller = &s.b.identity.bundle;
            let allowed = if r.counted {
                s.b.request_limits.take(caller)
            } else {
                Ok(())
            };
            if let Err(limit) = allowed {
                return Err(wit_cloud_error_kind(
                    cloud::CloudErrorKind::Throttled,
                    format!(
                        "{caller} may start {} downloads per {:?}; try again later",
                        limit.count, limit.window
                    ),
                ));
            }
            let local_error = |e: storage::IoError| wit_cloud_error_kind(cloud::CloudErrorKind::LocalIo, e.message);
            let area = s.area_w(&r.bundle).map_err(local_error)?;
            let local = area
                .open_write(&r.local_path, false)
                .map_err(|e| local_error(path_error(e)))?;
            Ok(s.transfers.start_download(DownloadJob {
                key,
                local,
                offset: r.offset,
                if_match: r.if_match,
                durable: r.durable,
            }))
        })
    }

    fn start_upload(&mut self, r: transfer::UploadRequest) -> Result<u64, cloud::CloudError> {
        self.timed(|s| {
            let key = s.cloud_key(&r.bundle, &r.cloud_path)?;
            let local_error = |e: storage::IoError| wit_cloud_error_kind(cloud::CloudErrorKind::LocalIo, e.message);
            let area = s.area(&r.bundle, false).map_err(local_error)?.ok_or_else(|| {
                wit_cloud_error_kind(
                    cloud::CloudErrorKind::LocalIo,
                    format!("{}: no such file", r.local_path),
                )
            })?;
            // Opened here, beneath the area, never through a link: the
            // transfer reads this very file.
            let local = area.open_read(&r.local_path).map_err(|e| local_error(path_error(e)))?;
            let precondition = match r.precondition {
                transfer::WritePrecondition::None => Precondition::None,
                transfer::WritePrecondition::IfMatch(etag) => Precondition::IfMatch(etag),
                transfer::WritePrecondition::IfAbsent => Precondition::IfAbsent,
            };
            Ok(s.transfers.start_upload(UploadJob {
                key,
                local,
                precondition,
                expect: r.expect.map(|e| Stamp {
                    size: e.size,
                    mtime_ns: e.mtime_ns,
                    ctime_ns: e.ctime_ns,
                    inode: e.inode,
                }),
            }))
        })
    }

    fn poll(&mut self, id: u64) -> Option<transfer::TransferStatus> {
        let (bytes, outcome) = self.transfers.poll(id)?;
        let (mut uploaded, mut sha256) = (None, None);
        let state = match outcome {
            Outcome::Running => transfer::TransferState::Running,
            Outcome::Done => {
                uploaded = self.transfers.uploaded(id);
                sha256 = self.transfers.sha256(id);
                transfer::TransferState::Done
            }
            Outcome::Failed(e) => transfer::TransferState::Failed(transfer_error(e)),
        };
        let bundle_of = |key: &str| key.split('/').next().unwrap_or_default().to_string();
        let uploaded = uploaded.map(|o| {
            let bundle = bundle_of(&o.key);
            wit_object(&bundle, o)
        });
        Some(transfer::TransferStatus {
            bytes,
            state,
            uploaded,
            sha256,
        })
    }

    fn cancel(&mut self, id: u64) {
        self.timed(|s| s.transfers.cancel(id))
    }

    fn release(&mut self, id: u64) {
        self.timed(|s| s.transfers.release(id))
    }
}

impl events::Host for HostState {
    fn emit_optimize(&mut self, listener: u64, p: types::OptimizeSpaceProgress) {
        let progress = OptimizeSpaceProgress {
            state: match p.state {
                types::OptimizeState::Running => api::OptimizeState::Running,
                types::OptimizeState::Completed => api::OptimizeState::Completed,
                types::OptimizeState::Failed => api::OptimizeState::Failed,
                types::OptimizeState::Stopped => api::OptimizeState::Stopped,
            },
            progress: p.progress.min(100),
        };
        self.optimize_in_flight = (!progress.is_terminal()).then_some((listener, progress));
        let _ = self.b.events.send(HostEvent::Optimize(listener, progress));
    }

    fn emit_sync(&mut self, listener: u64, p: types::SyncProgress) {
        use api::{ErrorType as E, SyncState as S};
        let progress = SyncProgress {
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
        };
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

    fn failure_reason(&mut self, uri: String, reason: String) {
        let _ = self.b.events.send(HostEvent::FailureReason { uri, reason });
    }

    fn emit_download(&mut self, listener: u64, p: types::DownloadProgress) {
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

fn file_stat(st: &rustix::fs::Stat) -> storage::FileStat {
    let stamp = Stamp::of(st);
    storage::FileStat {
        kind: match rustix::fs::FileType::from_raw_mode(st.st_mode) {
            rustix::fs::FileType::RegularFile => storage::FileKind::File,
            rustix::fs::FileType::Directory => storage::FileKind::Folder,
            rustix::fs::FileType::Symlink => storage::FileKind::Symlink,
            _ => storage::FileKind::Special,
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
struct Pages<C> {
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
    fn resume(&mut self, key: &(String, String), after: Option<&str>) -> Option<C> {
        let (k, last, _) = self.open.as_ref()?;
        if k == key && Some(last.as_str()) == after {
            return self.open.take().map(|(_, _, cursor)| cursor);
        }
        None
    }

    fn keep(&mut self, key: (String, String), last: String, cursor: C) {
        self.open = Some((key, last, cursor));
    }
}

fn tree_entry(found: crate::storage::Found) -> storage::TreeEntry {
    storage::TreeEntry {
        path: found.path,
        stat: file_stat(&found.stat),
        problem: found.problem,
    }
}

fn path_error(e: crate::beneath::BeneathError) -> storage::IoError {
    use crate::beneath::BeneathError as B;
    match e {
        B::Symlink(_) | B::Mount(_) => io_error(storage::IoErrorKind::EscapesSandbox, e.to_string()),
        B::NotADir(_) | B::NotAFile(_) => io_error(storage::IoErrorKind::NotAFile, e.to_string()),
        B::Invalid(_) => io_error(storage::IoErrorKind::PermissionDenied, e.to_string()),
        B::Io { path, source } => std_io_error(&path, source),
    }
}

fn io_error(kind: storage::IoErrorKind, message: String) -> storage::IoError {
    storage::IoError { kind, message }
}

fn std_io_error(path: &str, e: std::io::Error) -> storage::IoError {
    use std::io::ErrorKind as E;
    use storage::IoErrorKind as K;
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

fn sandbox_error(e: SandboxError) -> storage::IoError {
    match e {
        SandboxError::InvalidBundle(_) => io_error(storage::IoErrorKind::PermissionDenied, e.to_string()),
        SandboxError::Path(p) => path_error(p),
        SandboxError::Io(io) => std_io_error("", io),
    }
}

fn meta_error(e: crate::storage::MetaError) -> storage::IoError {
    io_error(storage::IoErrorKind::Other, e.to_string())
}

fn wit_cloud_error_kind(kind: cloud::CloudErrorKind, message: String) -> cloud::CloudError {
    cloud::CloudError { kind, message }
}

fn wit_cloud_error(e: CloudError) -> cloud::CloudError {
    use cloud::CloudErrorKind as K;
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

fn transfer_error(e: TransferError) -> cloud::CloudError {
    match e {
        TransferError::Cloud(c) => wit_cloud_error(c),
        TransferError::LocalNoSpace(m) => wit_cloud_error_kind(cloud::CloudErrorKind::LocalNoSpace, m),
        TransferError::LocalIo(m) => wit_cloud_error_kind(cloud::CloudErrorKind::LocalIo, m),
    }
}

fn wit_object(bundle: &str, o: CloudObject) -> cloud::Object {
    let path = o
        .key
        .strip_prefix(bundle)
        .and_then(|k| k.strip_prefix('/'))
        .unwrap_or(&o.key)
        .to_string();
    cloud::Object {
        path,
        size: o.size,
        etag: o.etag,
        version: o.version,
        content_hash: o.content_hash,
        modified_ms: o.modified_ms,
    }
}
