//! The runtime: loads the component once, owns one instance on its own
//! thread, and serves the API objects (`CloudFileCache`, ...) from it.

mod driver;
mod imports;
mod loader;
mod object;
mod state;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use driver::SandboxLimits;
pub(crate) use driver::{guest_error, Driver, Msg, ObjectId, ObjectKind};
pub use loader::{compiled_component, default_cache_dir, embedded_component as engine_component};
pub(crate) use object::ObjectHandle;

use crate::api::{CloudSyncError, DownloadProgress, ListenerId, OptimizeSpaceProgress, SyncDecision, SyncProgress};
use crate::cloud::{Cloud, LocalFolderCloud};
use crate::device::{DeviceStatus, SystemDevice};
use crate::identity::Identity;
use crate::storage::{AppAreas, MetaStore, Metadata};
pub(crate) use state::sync_progress;
use state::{Backends, HostEvent};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "cloudsync",
        with: {
            "ohos:cloudsync/files.area": super::state::AreaGrant,
            "ohos:cloudsync/cloud.bucket": super::state::BucketGrant,
        },
    });
}

/// Why a runtime could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `build` was called outside a tokio runtime.
    #[error("cloudsync must be built inside a tokio runtime")]
    NoTokioRuntime,
    /// The tokio runtime runs on the current thread only: the engine needs a multi-thread one.
    #[error("cloudsync needs a multi-thread tokio runtime (e.g. #[tokio::main] or #[tokio::test(flavor = \"multi_thread\")])")]
    CurrentThreadRuntime,
    /// A folder or file in the root could not be made or used (or is a symlink), or a thread could not start.
    #[error("cannot prepare {path}: {source}")]
    Folder {
        /// The path concerned.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The metadata store could not be opened.
    #[error(transparent)]
    Metadata(#[from] crate::storage::MetaError),
    /// The component could not be loaded or compiled.
    #[error("cannot load the engine component: {0:#}")]
    Component(anyhow::Error),
    /// The component failed to start.
    #[error("the engine component failed to start: {0}")]
    Start(CloudSyncError),
    /// The caller is named as the gallery's area (`media`), which no app may be.
    #[error("{0:?} is the gallery's own area, not an app that may call")]
    ReservedBundle(String),
}

/// What an optimisation tells its listener.
pub(crate) enum OptimizeEvent {
    Progress(OptimizeSpaceProgress),
    /// Why it failed (its FAILED progress follows).
    Failure(CloudSyncError),
}

/// A listener: downloads and sync runs have events of their own types.
#[derive(Clone)]
pub(crate) enum Callback {
    Download(Arc<dyn Fn(DownloadProgress) + Send + Sync>),
    Sync(Arc<dyn Fn(SyncProgress) + Send + Sync>),
    Optimize(Arc<dyn Fn(OptimizeEvent) + Send + Sync>),
    /// Every sync run's decisions (not the seed's: logs and dry runs).
    Decision(DecisionCallback),
}

pub(crate) type DecisionCallback = Arc<dyn Fn(&SyncDecision) + Send + Sync>;

/// Listener callbacks by id; events name the listener they are for.
#[derive(Default)]
pub(crate) struct Listeners {
    map: Mutex<HashMap<ListenerId, Callback>>,
    next: AtomicU64,
    /// The latest failure reason per URI (bounded: the oldest go first).
    reasons: Mutex<(HashMap<String, String>, std::collections::VecDeque<String>)>,
    /// The last time the engine component failed, in its words.
    fault: Mutex<Option<String>>,
}

/// Failure reasons kept at most.
const MAX_REASONS: usize = 1024;

impl Listeners {
    fn set_failure_reason(&self, uri: String, reason: String) {
        let mut guard = self.reasons.lock().unwrap();
        let (map, order) = &mut *guard;
        if map.insert(uri.clone(), reason).is_none() {
            order.push_back(uri);
        }
        while order.len() > MAX_REASONS {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }

    fn failure_reason(&self, uri: &str) -> Option<String> {
        self.reasons.lock().unwrap().0.get(uri).cloned()
    }

    pub(crate) fn add(&self, cb: Callback) -> ListenerId {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.map.lock().unwrap().insert(id, cb);
        id
    }
    pub(crate) fn remove(&self, ids: &[ListenerId]) {
        let mut map = self.map.lock().unwrap();
        for id in ids {
            map.remove(id);
        }
    }
    fn get(&self, id: ListenerId) -> Option<Callback> {
        self.map.lock().unwrap().get(&id).cloned()
    }
    fn decision_listeners(&self) -> Vec<DecisionCallback> {
        let map = self.map.lock().unwrap();
        map.values()
            .filter_map(|cb| match cb {
                Callback::Decision(f) => Some(f.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Logs a sync run's decision: what changes a file at `info` (`-v`),
/// what only records at `debug` (`-vv`), failures and refusals as warnings.
fn log_decision(d: &SyncDecision) {
    use crate::api::SyncAction as A;
    let (bundle, path, action, dry_run) = (d.bundle.as_str(), d.path.as_str(), d.action.name(), d.dry_run);
    match d.action {
        A::Fail | A::Refuse => {
            tracing::warn!(target: "cloudsync::sync", bundle, path, action, dry_run, "{}", d.reason)
        }
        A::Record | A::Forget | A::Skip => {
            tracing::debug!(target: "cloudsync::sync", bundle, path, action, dry_run, "{}", d.reason)
        }
        _ => tracing::info!(target: "cloudsync::sync", bundle, path, action, dry_run, "{}", d.reason),
    }
}

/// Wraps the root's metadata store (see [`RuntimeBuilder::wrap_metadata`]).
type MetadataLayer = Box<dyn FnOnce(Arc<dyn Metadata>) -> Arc<dyn Metadata> + Send>;

/// Configures a [`Runtime`].
pub struct RuntimeBuilder {
    root: PathBuf,
    cloud: Option<Arc<dyn Cloud>>,
    identity: Identity,
    device: Arc<dyn DeviceStatus>,
    limits: SandboxLimits,
    component: Option<Vec<u8>>,
    cache_dir: Option<PathBuf>,
    metadata_layer: Option<MetadataLayer>,
    switched_off: std::collections::BTreeSet<String>,
    request_limits: std::collections::BTreeMap<String, crate::identity::RequestLimit>,
    hooks: Option<Arc<dyn crate::identity::Hooks>>,
}

impl RuntimeBuilder {
    /// Lets `bundle` start at most `limit.count` downloads per
    /// `limit.window`; beyond, a download fails with FREQUENT_USER_REQUESTS.
    pub fn request_limit(mut self, bundle: impl Into<String>, limit: crate::identity::RequestLimit) -> Self {
        self.request_limits.insert(bundle.into(), limit);
        self
    }

    /// Applies a [`Policy`](crate::identity::Policy): its caller (acting as
    /// `default_bundle` when it names none) and the apps whose cloud switch is off.
    pub fn policy(mut self, policy: &crate::identity::Policy, default_bundle: &str) -> Self {
        self.identity = policy.identity(default_bundle);
        self.switched_off.extend(policy.cloud_switch_off.iter().cloned());
        for (bundle, rate) in &policy.request_limits {
            // Checked when the policy was parsed.
            if let Ok(limit) = crate::identity::RequestLimit::parse(rate) {
                self.request_limits.insert(bundle.clone(), limit);
            }
        }
        self
    }

    /// Puts the embedder's own policy in place of the identity, switches and
    /// rates given here: every import consults it first.
    pub fn hooks(mut self, hooks: Arc<dyn crate::identity::Hooks>) -> Self {
        self.hooks = Some(hooks);
        self
    }

    /// Turns `bundle`'s cloud switch off: its sync runs are refused with
    /// 22400001 (cloud not ready), as when a user disables cloud sync for an app.
    pub fn cloud_switch_off(mut self, bundle: impl Into<String>) -> Self {
        self.switched_off.insert(bundle.into());
        self
    }

    /// The cloud (default: the folder `<root>/cloud`).
    pub fn cloud(mut self, cloud: Arc<dyn Cloud>) -> Self {
        self.cloud = Some(cloud);
        self
    }

    /// Who calls the API (default: [`Identity::system`] for `cloudsync.cli`).
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = identity;
        self
    }

    /// The device's status (default: this machine's).
    pub fn device(mut self, device: Arc<dyn DeviceStatus>) -> Self {
        self.device = device;
        self
    }

    /// The limits every engine instance runs under (memory, time per call, transfers at once).
    pub fn limits(mut self, limits: SandboxLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Runs another component implementing the `ohos:cloudsync/cloudsync`
    /// world instead of the embedded engine.
    pub fn component(mut self, wasm: Vec<u8>) -> Self {
        self.component = Some(wasm);
        self
    }

    /// Where precompiled components are kept (`None`: compile every start).
    pub fn cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }

    /// Puts a layer over the root's metadata store (`meta.redb`, which
    /// stays the root's lock): one that mirrors the records elsewhere,
    /// counts them, or fails on purpose to test what callers see when the
    /// store breaks.
    pub fn wrap_metadata(
        mut self,
        layer: impl FnOnce(Arc<dyn Metadata>) -> Arc<dyn Metadata> + Send + 'static,
    ) -> Self {
        self.metadata_layer = Some(Box::new(layer));
        self
    }

    /// Loads the component, opens the metadata store and starts the
    /// engine's instance. Must be called inside a multi-thread tokio
    /// runtime, which then runs the transfers.
    pub async fn build(mut self) -> Result<Runtime, BuildError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoTokioRuntime)?;
        let hooks = match self.hooks.take() {
            Some(hooks) => hooks,
            None => Arc::new(crate::identity::Granted {
                identity: self.identity.clone(),
                switched_off: std::mem::take(&mut self.switched_off),
                limits: crate::identity::RequestLimits::new(std::mem::take(&mut self.request_limits)),
            }),
        };
        // The caller, as the policy in force says.
        self.identity = hooks.caller().clone();
        if self.identity.bundle == crate::identity::GALLERY_BUNDLE {
            // An app named so would own the gallery without any permission.
            return Err(BuildError::ReservedBundle(self.identity.bundle));
        }
        if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
            // The engine thread waits on transfers that only the runtime's
            // own thread could drive.
            return Err(BuildError::CurrentThreadRuntime);
        }
        std::fs::create_dir_all(&self.root).map_err(|source| BuildError::Folder {
            path: self.root.clone(),
            source,
        })?;
        // The root is reached however it was configured; nothing in it is
        // followed: a link at `apps`, the store or the device id would lead
        // every read and write outside it.
        refuse_links(&self.root, &ROOT_ENTRIES).map_err(|source| BuildError::Folder {
            path: self.root.clone(),
            source,
        })?;
        let apps = self.root.join("apps");
        let areas = AppAreas::in_root(&self.root).map_err(|source| BuildError::Folder {
            path: apps.clone(),
            source,
        })?;
        let opened = MetaStore::open_checked(&self.root.join("meta.redb"))?;
        let mut warnings: Vec<String> = opened.warning.into_iter().collect();
        let mut meta: Arc<dyn Metadata> = Arc::new(opened.store);
        if let Some(layer) = self.metadata_layer {
            meta = layer(meta);
        }
        let cloud: Arc<dyn Cloud> = match self.cloud {
            Some(c) => c,
            None => {
                let dir = self.root.join("cloud");
                Arc::new(LocalFolderCloud::create(&dir).map_err(|source| BuildError::Folder { path: dir, source })?)
            }
        };
        // Staging objects carry this device's id: what a killed upload of
        // this device left is removed now (the store's lock says no other
        // process of this root runs), other devices' once they are old.
        let (device_id, copied) = device_id(&self.root).map_err(|source| BuildError::Folder {
            path: self.root.clone(),
            source,
        })?;
        warnings.extend(copied);
        cloud.set_device(&device_id);
        let sweep = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            cloud.sweep_staging(&device_id, crate::cloud::STAGING_SAFE_AGE),
        )
        .await;
        match sweep {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warnings.push(format!("could not clean the cloud's staging area: {e}")),
            Err(_) => warnings.push("cleaning the cloud's staging area timed out".into()),
        }

        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        let (events_tx, events_rx) = std::sync::mpsc::channel::<HostEvent>();
        let listeners = Arc::new(Listeners::default());
        let dispatch = listeners.clone();
        // Listeners run on their own thread, in order, so that a slow
        // callback never stalls the engine.
        std::thread::Builder::new()
            .name("cloudsync-events".into())
            .spawn(move || {
                for event in events_rx {
                    match event {
                        HostEvent::Download(id, progress) => {
                            if let Some(Callback::Download(cb)) = dispatch.get(id) {
                                cb(progress);
                            }
                        }
                        HostEvent::Sync(id, progress) => {
                            if let Some(Callback::Sync(cb)) = dispatch.get(id) {
                                cb(progress);
                            }
                        }
                        HostEvent::Optimize(id, progress) => {
                            if let Some(Callback::Optimize(cb)) = dispatch.get(id) {
                                cb(OptimizeEvent::Progress(progress));
                            }
                        }
                        HostEvent::OptimizeFailure(id, error) => {
                            tracing::warn!(target: "cloudsync::engine", "the optimisation failed: {error}");
                            if let Some(Callback::Optimize(cb)) = dispatch.get(id) {
                                cb(OptimizeEvent::Failure(error));
                            }
                        }
                        HostEvent::FailureReason { uri, reason } => {
                            tracing::warn!(target: "cloudsync::engine", uri, "{reason}");
                            dispatch.set_failure_reason(uri, reason)
                        }
                        HostEvent::Decision(d) => {
                            log_decision(&d);
                            for cb in dispatch.decision_listeners() {
                                cb(&d);
                            }
                        }
                        HostEvent::Fault(message) => {
                            tracing::error!(target: "cloudsync::engine", "the engine component failed: {message}");
                            *dispatch.fault.lock().unwrap() = Some(message)
                        }
                    }
                }
            })
            .map_err(|source| BuildError::Folder {
                path: self.root.clone(),
                source,
            })?;

        let backends = Backends {
            areas: areas.clone(),
            meta,
            cloud,
            device: self.device,
            device_tag: device_id[device_id.len().saturating_sub(4)..].to_string(),
            hooks,
            handle,
            events: events_tx,
        };
        let wasm = self.component;
        let cache_dir = self.cache_dir;
        let limits = self.limits;
        let wake_tx = tx.clone();
        let waker: crate::transfers::Waker = Arc::new(move || {
            let _ = wake_tx.send(Msg::Wake);
        });
        // Compiling (first run) and instantiating are blocking work.
        let driver = tokio::task::spawn_blocking(move || {
            let bytes = wasm.as_deref().unwrap_or(loader::embedded_component());
            let pre = loader::instance_pre(bytes, cache_dir.as_deref()).map_err(BuildError::Component)?;
            let mut driver = Driver::new(pre, backends, limits, waker);
            driver.warm_up().map_err(BuildError::Start)?;
            Ok::<_, BuildError>(driver)
        })
        .await
        .map_err(|e| BuildError::Component(anyhow::anyhow!("start-up panicked: {e}")))??;
        let thread = std::thread::Builder::new()
            .name("cloudsync-engine".into())
            .spawn(move || driver.run(rx))
            .map_err(|source| BuildError::Folder {
                path: self.root.clone(),
                source,
            })?;

        Ok(Runtime {
            inner: Arc::new(Inner {
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                identity: self.identity,
                areas,
                root: self.root,
                listeners,
                next_object: AtomicU64::new(0),
                warnings,
            }),
        })
    }
}

struct Inner {
    tx: Mutex<Option<std::sync::mpsc::Sender<Msg>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    identity: Identity,
    areas: AppAreas,
    root: PathBuf,
    listeners: Arc<Listeners>,
    next_object: AtomicU64,
    warnings: Vec<String>,
}

impl Inner {
    fn shutdown(&self) {
        // Closing the channel ends the driver, which drops the instance
        // (stopping every transfer) and releases the metadata store.
        if let Some(tx) = self.tx.lock().unwrap().take() {
            let _ = tx.send(Msg::Shutdown);
        }
        if let Some(t) = self.thread.lock().unwrap().take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The cloudSync engine, running as a sandboxed component. Cheap to clone;
/// build it once and make API objects from it.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl Runtime {
    /// A runtime keeping its device side (app folders, metadata) under `root`.
    pub fn builder(root: impl Into<PathBuf>) -> RuntimeBuilder {
        RuntimeBuilder {
            root: root.into(),
            cloud: None,
            identity: Identity::system("cloudsync.cli"),
            device: Arc::new(SystemDevice::default()),
            limits: SandboxLimits::default(),
            component: None,
            cache_dir: default_cache_dir(),
            metadata_layer: None,
            switched_off: Default::default(),
            request_limits: Default::default(),
            hooks: None,
        }
    }

    /// The caller, as the policy in force names it.
    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// Stops the engine now, as if the process ended: running downloads stop
    /// where they are (the next runtime on this root cleans or resumes them)
    /// and every object of this runtime fails with 13600001 from then on.
    /// Dropping the last clone of the runtime does the same.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// The root folder holding the device side.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// What a person should know about how the runtime started (a damaged
    /// metadata store made anew, a staging area that could not be cleaned).
    pub fn warnings(&self) -> &[String] {
        &self.inner.warnings
    }

    /// The local folder holding `bundle`'s cloud files (what its URIs name).
    pub fn app_folder(&self, bundle: &str) -> PathBuf {
        self.inner.areas.area_path(bundle).join("cloud")
    }

    /// Where the thumbnail of a cloud-only gallery item
    /// (`file://media/Photo/<id>/<name>`) is kept on the device, made by
    /// the last `GallerySync` run; `None` for any other URI.
    pub fn thumbnail_path(&self, uri: &str) -> Option<PathBuf> {
        // Checked after decoding: `%2F..` must not climb out.
        let item = percent_decode(uri.strip_prefix("file://media/Photo/")?)?;
        let parts: Vec<&str> = item.split('/').collect();
        if parts.len() != 2
            || parts
                .iter()
                .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\0'))
        {
            return None;
        }
        let area = self.inner.areas.area_path(crate::identity::GALLERY_BUNDLE);
        Some(area.join(".thumbs/Photo").join(format!("{item}.jpg")))
    }

    /// The URI of `path` (relative to the caller's cloud folder).
    pub fn uri_for(&self, path: &str) -> String {
        format!(
            "file://{}/data/storage/el2/cloud/{}",
            self.inner.identity.bundle,
            percent_encode(path)
        )
    }

    /// Why the last failed download of `uri` failed, in the words of whoever
    /// failed (the cloud, the file system). Set before its FAILED event is
    /// delivered, so a listener can read it there.
    pub fn failure_reason(&self, uri: &str) -> Option<String> {
        self.inner.listeners.failure_reason(uri)
    }

    /// The last time the engine component failed (a trap: a panic, its
    /// time or memory budget), in its words; the instance was replaced.
    /// Events delivered before this returns carry the failure already.
    pub fn last_fault(&self) -> Option<String> {
        self.inner.listeners.fault.lock().unwrap().clone()
    }

    /// Calls `callback` with every decision of every sync run (what it does
    /// about a path, and why), dry runs' included, in order. Not the seed's:
    /// for logs and plans. Each decision is also logged (`tracing`, target
    /// `cloudsync::sync`).
    pub fn on_decision(&self, callback: impl Fn(&SyncDecision) + Send + Sync + 'static) -> ListenerId {
        self.inner.listeners.add(Callback::Decision(Arc::new(callback)))
    }

    /// Unregisters a callback [`on_decision`](Self::on_decision) returned.
    pub fn off_decision(&self, listener: ListenerId) {
        self.inner.listeners.remove(&[listener]);
    }

    pub(crate) fn listeners(&self) -> &Listeners {
        &self.inner.listeners
    }

    pub(crate) fn next_object_id(&self) -> ObjectId {
        self.inner.next_object.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Runs `f` on the engine's thread and waits for its answer.
    pub(crate) async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Driver) -> Result<R, CloudSyncError> + Send + 'static,
    ) -> Result<R, CloudSyncError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(move |d| {
            let _ = tx.send(f(d));
        })?;
        rx.await
            .map_err(|_| CloudSyncError::service("the engine thread stopped"))?
    }

    /// Runs `f` on the engine's thread and blocks this one for its answer:
    /// the seed's synchronous calls (one short engine call each). Safe from
    /// a listener callback too: the engine never waits on listeners.
    pub(crate) fn call_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Driver) -> Result<R, CloudSyncError> + Send + 'static,
    ) -> Result<R, CloudSyncError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send(move |d| {
            let _ = tx.send(f(d));
        })?;
        rx.recv()
            .map_err(|_| CloudSyncError::service("the engine thread stopped"))?
    }

    /// Queues `f` on the engine's thread without waiting.
    pub(crate) fn send(&self, f: impl FnOnce(&mut Driver) + Send + 'static) -> Result<(), CloudSyncError> {
        let tx = self.inner.tx.lock().unwrap();
        let tx = tx
            .as_ref()
            .ok_or_else(|| CloudSyncError::service("the runtime is shut down"))?;
        tx.send(Msg::Run(Box::new(f)))
            .map_err(|_| CloudSyncError::service("the engine thread stopped"))
    }
}

/// What cloudsync keeps in a root: none of it may be a symlink.
const ROOT_ENTRIES: [&str; 8] = [
    "apps",
    "cloud",
    "meta.redb",
    "meta.redb.id",
    "device-id",
    "device-id.tmp",
    // The command line's: which `sync` or `watch` runs here.
    "cloudsync.pid",
    "cloudsync.pid.tmp",
];

/// An error naming the first of `names` in `root` that is a symlink.
fn refuse_links(root: &Path, names: &[&str]) -> std::io::Result<()> {
    for name in names {
        let path = root.join(name);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(std::io::Error::other(format!(
                "{} is a symlink: cloudsync keeps its own files in the root itself and follows no link there",
                path.display()
            )));
        }
    }
    Ok(())
}

/// This root's device id (`<root>/device-id`, made once, random): the
/// names of its staging objects in the cloud carry it, and a device sweeps
/// all of its own. The file also names the machine and the root folder it
/// was made for: a root copied to another machine or folder (a backup put
/// back, a disk image) would share the id with the one it came from and
/// sweep that device's uploads in progress, so it gets one of its own, and
/// the second value says so.
fn device_id(root: &Path) -> std::io::Result<(String, Option<String>)> {
    let file = root.join("device-id");
    let place = root_place(root)?;
    let mut warning = None;
    if let Ok(text) = std::fs::read_to_string(&file) {
        let mut lines = text.lines();
        let id = lines.next().unwrap_or("").trim();
        let made_for = lines.next().map(str::trim);
        let valid = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        match made_for {
            _ if !valid => {}
            Some(p) if p == place => return Ok((id.to_string(), None)),
            // Made before ids named their place: this is it.
            None => {
                write_device_id(root, id, &place)?;
                return Ok((id.to_string(), None));
            }
            Some(_) => {
                warning = Some(format!(
                    "{} was made on another machine or for another folder (a copy or a restored backup): \
                     this root gets a device id of its own, so that it never takes the other device's uploads \
                     in progress for its own",
                    root.display()
                ));
            }
        }
    }
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(24)
        .collect();
    let id = format!(
        "{}{}",
        if host.is_empty() {
            String::new()
        } else {
            format!("{host}-")
        },
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    write_device_id(root, &id, &place)?;
    Ok((id, warning))
}

/// Where a root is: this machine (its machine id, else its host name) and
/// the root folder's inode (a copy has another; the device number is left
/// out, as some file systems renumber it at each mount).
fn root_place(root: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let machine = std::fs::read_to_string("/etc/machine-id")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let meta = std::fs::metadata(root)?;
    Ok(format!("made for {} {}", machine.trim(), meta.ino()))
}

fn write_device_id(root: &Path, id: &str, place: &str) -> std::io::Result<()> {
    let temp = root.join("device-id.tmp");
    std::fs::write(&temp, format!("{id}\n{place}\n"))?;
    std::fs::rename(&temp, root.join("device-id"))
}

/// Decodes `%XX` escapes; `None` when one is malformed or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes what a URI path may not hold as is (keeps `/`).
pub fn percent_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::device_id;

    #[test]
    fn a_root_copied_elsewhere_gets_a_device_id_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let (id, warning) = device_id(&a).unwrap();
        assert!(warning.is_none());
        assert_eq!(device_id(&a).unwrap(), (id.clone(), None), "kept");

        // The root copied to another folder: a new id, and the user is told.
        std::fs::copy(a.join("device-id"), b.join("device-id")).unwrap();
        let (copied, warning) = device_id(&b).unwrap();
        assert_ne!(copied, id);
        assert!(warning.unwrap().contains("another machine or for another folder"));
        assert_eq!(device_id(&b).unwrap(), (copied, None), "then kept");
        assert_eq!(device_id(&a).unwrap(), (id, None), "the original keeps its own");

        // An id written before ids named their place is kept, and bound now.
        std::fs::write(b.join("device-id"), "host-0011223344556677").unwrap();
        assert_eq!(device_id(&b).unwrap(), ("host-0011223344556677".to_string(), None));
        assert!(std::fs::read_to_string(b.join("device-id"))
            .unwrap()
            .contains("made for "));
    }
}
