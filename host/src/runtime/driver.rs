//! The thread that owns the Store. API calls reach it as closures through a
//! channel; transfers wake it when they progress; between calls it drives
//! the engine with `tick`, one bounded slice of work at a time.
//!
//! A trapped instance (a panic, a guest that loops past its time budget or
//! grows past its memory limit) is thrown away: the call gets 13600001,
//! downloads in flight end with FAILED, and the next call gets a fresh
//! instance from the same `InstancePre`, with each object recreated and its
//! listeners registered again.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use wasmtime::component::ResourceAny;
use wasmtime::{Store, StoreLimitsBuilder, UpdateDeadline};

use super::bindings::exports::ohos::cloudsync::engine::TickResult;
use super::bindings::exports::ohos::cloudsync::file_cache::GuestCloudFileCache;
use super::bindings::exports::ohos::cloudsync::on_demand::GuestDownload;
use super::bindings::exports::ohos::cloudsync::sync::GuestSyncObject;
use super::bindings::ohos::cloudsync::types::Error as GuestError;
use super::bindings::{Cloudsync, CloudsyncPre};
use super::state::{Backends, HostEvent, HostState};
use crate::api::{CloudSyncError, DownloadErrorType, ListenerId, State, SyncProgress, SyncState};
use crate::transfers::{Transfers, Waker};

/// A message to the driver.
pub enum Msg {
    Run(Box<dyn FnOnce(&mut Driver) + Send>),
    /// A transfer progressed.
    Wake,
    /// Drop the instance and end the thread (the transfers' wakers hold
    /// senders too, so the channel alone never closes).
    Shutdown,
}

/// Limits every instance runs under.
#[derive(Clone, Copy, Debug)]
pub struct SandboxLimits {
    /// Linear memory an instance may grow to.
    pub memory_bytes: usize,
    /// Guest time one call may take (time in host functions is not counted).
    pub call_budget: Duration,
    /// Wall-clock time one call may take, host functions included: a guest
    /// that keeps the host busy on its behalf is stopped too.
    pub call_wall_limit: Duration,
    /// Transfers running at once.
    pub max_transfers: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            memory_bytes: 64 << 20,
            call_budget: Duration::from_secs(2),
            call_wall_limit: Duration::from_secs(300),
            max_transfers: 8,
        }
    }
}

/// While jobs run, the engine is ticked at least this often even without a wake.
const IDLE_TICK: Duration = Duration::from_millis(100);

pub type ObjectId = u64;

/// Which guest resource a host object stands for (and how to make it again
/// after a restart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    Cache,
    /// `FileSync()` (none) or `FileSync(bundleName)`.
    FileSync(Option<String>),
    GallerySync,
    /// `Download()`: originals of gallery items.
    Download,
}

/// A host-side API object and its guest resource in the current instance.
struct HostObject {
    kind: ObjectKind,
    resource: Option<(u64, ResourceAny)>,
    listeners: Vec<ListenerId>,
}

struct Live {
    store: Store<HostState>,
    bindings: Cloudsync,
}

pub struct Driver {
    pre: CloudsyncPre<HostState>,
    backends: Backends,
    limits: SandboxLimits,
    waker: Waker,
    live: Option<Live>,
    generation: u64,
    objects: HashMap<ObjectId, HostObject>,
    busy: TickResult,
}

impl Driver {
    pub fn new(pre: CloudsyncPre<HostState>, backends: Backends, limits: SandboxLimits, waker: Waker) -> Self {
        Driver {
            pre,
            backends,
            limits,
            waker,
            live: None,
            generation: 0,
            objects: HashMap::new(),
            busy: TickResult::Idle,
        }
    }

    /// Runs until shut down (or every sender is gone).
    pub fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let first = match self.busy {
                TickResult::More => rx.try_recv().ok(),
                TickResult::Waiting => match rx.recv_timeout(IDLE_TICK) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                },
                TickResult::Idle => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => return,
                },
            };
            for msg in first.into_iter().chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                match msg {
                    Msg::Run(f) => f(&mut self),
                    Msg::Wake => {}
                    Msg::Shutdown => return,
                }
            }
            if self.live.is_some() {
                self.busy = self.tick().unwrap_or(TickResult::Idle);
            }
        }
    }

    /// One tick: a slice of work, and the events it hands back delivered.
    fn tick(&mut self) -> Result<TickResult, CloudSyncError> {
        let outcome = self.call(|b, s| b.ohos_cloudsync_engine().call_tick(s))?;
        let live = self.live.as_mut().expect("a tick had an instance");
        live.store.data_mut().deliver(outcome.events);
        Ok(outcome.next)
    }

    /// Starts the instance now (for start-up timing and early errors).
    pub fn warm_up(&mut self) -> Result<(), CloudSyncError> {
        self.live().map(|_| ())
    }

    fn live(&mut self) -> Result<&mut Live, CloudSyncError> {
        if self.live.is_none() {
            let live = self.instantiate()?;
            self.live = Some(live);
            self.generation += 1;
            // Recovery: what a crash or a trapped instance left is cleaned
            // now; an instance that cannot recover is not kept.
            let init = self
                .call(|b, s| b.ohos_cloudsync_engine().call_init(s))
                .and_then(|r| r.map_err(guest_error));
            if let Err(e) = init {
                self.live = None;
                return Err(e);
            }
        }
        Ok(self.live.as_mut().expect("just made"))
    }

    fn instantiate(&mut self) -> Result<Live, CloudSyncError> {
        let transfers = Transfers::new(
            self.backends.handle.clone(),
            self.backends.cloud.clone(),
            self.backends.device.clone(),
            self.limits.max_transfers,
            self.waker.clone(),
        );
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .trap_on_grow_failure(true)
            .instances(4)
            .tables(16)
            .memories(4)
            .build();
        let state = HostState::new(
            self.backends.clone(),
            transfers,
            limits,
            self.limits.call_budget,
            self.limits.call_wall_limit,
        );
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        // Deadline checks every epoch tick; only guest time counts, so a slow
        // cloud call made by the host never trips the guest's budget.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            let s = ctx.data();
            if s.guest_time() > s.call_budget {
                Err(wasmtime::Error::msg(format!(
                    "the component ran for more than {:?} in one call",
                    s.call_budget
                )))
            } else if s.wall_time() > s.call_wall_limit {
                Err(wasmtime::Error::msg(format!(
                    "one call of the component took more than {:?}",
                    s.call_wall_limit
                )))
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
        let bindings = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| CloudSyncError::service(format!("cannot start the engine component: {e:#}")))?;
        Ok(Live { store, bindings })
    }

    /// Calls into the guest. A trap discards the instance (see the module doc).
    pub fn call<R>(
        &mut self,
        f: impl FnOnce(&Cloudsync, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CloudSyncError> {
        if self.live.is_none() {
            self.live()?;
        }
        let live = self.live.as_mut().expect("live");
        live.store.data_mut().begin_call();
        live.store.set_epoch_deadline(1);
        match f(&live.bindings, &mut live.store) {
            Ok(r) => Ok(r),
            Err(trap) => Err(self.discard_instance(trap)),
        }
    }

    fn discard_instance(&mut self, trap: wasmtime::Error) -> CloudSyncError {
        let live = self.live.take().expect("a call had an instance");
        let state = live.store.into_data();
        let stderr = state.stderr_text();
        for (_, uri) in state.in_flight.keys() {
            let reason = format!("the engine component failed: {trap}");
            let _ = self.backends.events.send(HostEvent::FailureReason {
                uri: uri.clone(),
                reason,
            });
        }
        for ((listener, _), mut last) in state.in_flight {
            last.state = State::Failed;
            last.error = DownloadErrorType::UnknownError;
            let _ = self.backends.events.send(HostEvent::Download(listener, last));
        }
        for (listener, mut last) in state.optimize_in_flight {
            let why = CloudSyncError::service(format!("the engine component failed: {trap}"));
            let _ = self.backends.events.send(HostEvent::OptimizeFailure(listener, why));
            last.state = crate::api::OptimizeState::Failed;
            let _ = self.backends.events.send(HostEvent::Optimize(listener, last));
        }
        for (listener, last) in state.syncs_in_flight {
            let failed = SyncProgress {
                state: if last.state == SyncState::Uploading {
                    SyncState::UploadFailed
                } else {
                    SyncState::DownloadFailed
                },
                error: last.error,
            };
            let _ = self.backends.events.send(HostEvent::Sync(listener, failed));
        }
        // `state` (and its transfers) is dropped here: every transfer stops.
        self.busy = TickResult::Idle;
        let mut message = format!(
            "the engine component failed and was restarted: {}",
            trap_cause(&trap, self.limits.memory_bytes)
        );
        if !stderr.is_empty() {
            message.push_str(&format!(" ({stderr})"));
        }
        let _ = self.backends.events.send(HostEvent::Fault(message.clone()));
        CloudSyncError::service(message)
    }

    /// Makes the guest resource of a new object; on failure (a permission,
    /// say) the object is not kept.
    /// Registers object `id`; its guest resource is made on first use, so
    /// what its maker refuses (201, 202) comes from that first method, as
    /// the seed's tables list it, never from a constructor.
    pub fn create_object(&mut self, id: ObjectId, kind: ObjectKind) {
        self.objects.insert(
            id,
            HostObject {
                kind,
                resource: None,
                listeners: Vec::new(),
            },
        );
    }

    /// The object's guest resource in the current instance, made (and its
    /// listeners registered again) after a restart.
    pub fn resource(&mut self, id: ObjectId) -> Result<ResourceAny, CloudSyncError> {
        self.live()?;
        let generation = self.generation;
        let obj = self
            .objects
            .get(&id)
            .ok_or_else(|| CloudSyncError::service("this object was dropped"))?;
        if let Some((g, r)) = obj.resource {
            if g == generation {
                return Ok(r);
            }
        }
        let listeners = obj.listeners.clone();
        let kind = obj.kind.clone();
        let r = match &kind {
            ObjectKind::Cache => {
                self.call(|b, s| b.ohos_cloudsync_file_cache().cloud_file_cache().call_constructor(s))?
            }
            ObjectKind::FileSync(bundle) => self
                .call(|b, s| {
                    b.ohos_cloudsync_sync()
                        .sync_object()
                        .call_file_sync(s, bundle.as_deref())
                })?
                .map_err(guest_error)?,
            ObjectKind::GallerySync => self
                .call(|b, s| b.ohos_cloudsync_sync().sync_object().call_gallery_sync(s))?
                .map_err(guest_error)?,
            ObjectKind::Download => self
                .call(|b, s| b.ohos_cloudsync_on_demand().download().call_create(s))?
                .map_err(guest_error)?,
        };
        for l in listeners {
            self.guest_on(&kind, r, crate::api::PROGRESS, l)?;
        }
        self.objects.get_mut(&id).expect("present").resource = Some((generation, r));
        Ok(r)
    }

    /// `on` of a resource, whichever kind it is.
    fn guest_on(
        &mut self,
        kind: &ObjectKind,
        r: ResourceAny,
        event: &str,
        l: ListenerId,
    ) -> Result<(), CloudSyncError> {
        self.call(|b, s| match kind {
            ObjectKind::Cache => b.ohos_cloudsync_file_cache().cloud_file_cache().call_on(s, r, event, l),
            ObjectKind::FileSync(_) | ObjectKind::GallerySync => {
                b.ohos_cloudsync_sync().sync_object().call_on(s, r, event, l)
            }
            ObjectKind::Download => b.ohos_cloudsync_on_demand().download().call_on(s, r, event, l),
        })?
        .map_err(guest_error)
    }

    /// Registers `listener` with object `id` (its guest resource decides
    /// whether the event is valid) and remembers it for restarts.
    pub fn object_on(&mut self, id: ObjectId, event: &str, listener: ListenerId) -> Result<(), CloudSyncError> {
        let r = self.resource(id)?;
        let kind = self.objects[&id].kind.clone();
        self.guest_on(&kind, r, event, listener)?;
        self.add_listener(id, listener);
        Ok(())
    }

    /// Unregisters `listener` (or all) from object `id`; returns the host
    /// listeners to forget.
    pub fn object_off(
        &mut self,
        id: ObjectId,
        event: &str,
        listener: Option<ListenerId>,
    ) -> Result<Vec<ListenerId>, CloudSyncError> {
        let r = self.resource(id)?;
        let kind = self.objects[&id].kind.clone();
        self.call(|b, s| match &kind {
            ObjectKind::Cache => b
                .ohos_cloudsync_file_cache()
                .cloud_file_cache()
                .call_off(s, r, event, listener),
            ObjectKind::FileSync(_) | ObjectKind::GallerySync => {
                b.ohos_cloudsync_sync().sync_object().call_off(s, r, event, listener)
            }
            ObjectKind::Download => b.ohos_cloudsync_on_demand().download().call_off(s, r, event, listener),
        })?
        .map_err(guest_error)?;
        Ok(self.remove_listeners(id, listener))
    }

    /// Calls a method of object `id`'s `cloud-file-cache` resource; a guest
    /// error becomes the seed's code and message.
    pub fn call_cache<R>(
        &mut self,
        id: ObjectId,
        f: impl FnOnce(&GuestCloudFileCache, &mut Store<HostState>, ResourceAny) -> wasmtime::Result<Result<R, GuestError>>,
    ) -> Result<R, CloudSyncError> {
        let r = self.resource(id)?;
        self.call(|b, s| f(&b.ohos_cloudsync_file_cache().cloud_file_cache(), s, r))?
            .map_err(guest_error)
    }

    /// Calls a method of object `id`'s `sync-object` resource (a FileSync
    /// or a GallerySync).
    pub fn call_sync<R>(
        &mut self,
        id: ObjectId,
        f: impl FnOnce(&GuestSyncObject, &mut Store<HostState>, ResourceAny) -> wasmtime::Result<Result<R, GuestError>>,
    ) -> Result<R, CloudSyncError> {
        let r = self.resource(id)?;
        self.call(|b, s| f(&b.ohos_cloudsync_sync().sync_object(), s, r))?
            .map_err(guest_error)
    }

    /// Calls a method of object `id`'s `download` resource.
    pub fn call_download<R>(
        &mut self,
        id: ObjectId,
        f: impl FnOnce(&GuestDownload, &mut Store<HostState>, ResourceAny) -> wasmtime::Result<Result<R, GuestError>>,
    ) -> Result<R, CloudSyncError> {
        let r = self.resource(id)?;
        self.call(|b, s| f(&b.ohos_cloudsync_on_demand().download(), s, r))?
            .map_err(guest_error)
    }

    fn add_listener(&mut self, id: ObjectId, listener: ListenerId) {
        if let Some(o) = self.objects.get_mut(&id) {
            o.listeners.push(listener);
        }
    }

    fn remove_listeners(&mut self, id: ObjectId, listener: Option<ListenerId>) -> Vec<ListenerId> {
        let Some(o) = self.objects.get_mut(&id) else {
            return Vec::new();
        };
        match listener {
            // Only this object's own listener: an id of another is left alone.
            Some(l) if o.listeners.contains(&l) => {
                o.listeners.retain(|x| *x != l);
                vec![l]
            }
            Some(_) => Vec::new(),
            None => std::mem::take(&mut o.listeners),
        }
    }

    pub fn drop_object(&mut self, id: ObjectId) -> Vec<ListenerId> {
        let Some(obj) = self.objects.remove(&id) else {
            return Vec::new();
        };
        if let (Some((g, r)), Some(live)) = (obj.resource, self.live.as_mut()) {
            if g == self.generation {
                live.store.data_mut().begin_call();
                if let Err(trap) = r.resource_drop(&mut live.store) {
                    self.discard_instance(trap);
                }
            }
        }
        obj.listeners
    }
}

/// What stopped a guest, for people: its limit, its panic, or the trap's
/// own words (not the wasm backtrace).
fn trap_cause(trap: &wasmtime::Error, memory_limit: usize) -> String {
    let root = trap.root_cause().to_string();
    if root.contains("growing memory") {
        format!(
            "it needed more than its {} MiB of memory ({root}); a folder this large needs more than this \
             engine holds at once",
            memory_limit >> 20
        )
    } else if let Some(trap) = trap.downcast_ref::<wasmtime::Trap>() {
        format!("{trap} ({root})")
    } else {
        root
    }
}

/// A guest-reported error (the seed's code and message).
pub(crate) fn guest_error(e: GuestError) -> CloudSyncError {
    CloudSyncError::new(e.code, e.message)
}
