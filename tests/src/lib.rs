//! Shared test harness: a temporary device root, a local-folder cloud behind
//! a fault injector, a simulated device, and a runtime running the real
//! component as an ordinary app.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod servers;
pub mod wasi;

use cloudsync::cloud::{bytes_stream, Cloud, CloudSettings, FaultyCloud, Precondition};
use cloudsync::device::SimulatedDevice;
use cloudsync::{
    CloudFileCache, DownloadProgress, FileSync, Identity, ListenerId, OptimizeSpaceProgress, Runtime, RuntimeBuilder,
    SyncProgress, SyncState,
};

pub const APP: &str = "com.example.notes";

/// The hostile component built by this crate's build script.
pub fn evil_component() -> Vec<u8> {
    std::fs::read(env!("EVIL_COMPONENT_WASM")).expect("the evil component was built")
}

/// Which cloud a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: a local folder.
    Folder,
    /// Apache httpd with mod_dav on loopback.
    WebDav,
    /// s3s-fs on loopback.
    S3,
    /// rclone's WebDAV server on loopback (a second WebDAV implementation).
    RcloneDav,
}

impl Backend {
    /// Starts the backend's server (if any) under `dir` and opens it, with
    /// every endpoint and credential set explicitly (nothing ambient).
    pub fn start(self, dir: &Path) -> (Option<servers::Server>, PathBuf, Arc<dyn Cloud>) {
        let (server, url, settings) = match self {
            Backend::Folder => {
                let folder = dir.join("cloud");
                std::fs::create_dir_all(&folder).unwrap();
                (None, format!("dir://{}", folder.display()), CloudSettings::default())
            }
            Backend::WebDav | Backend::RcloneDav => {
                let s = if self == Backend::WebDav {
                    servers::webdav(dir)
                } else {
                    servers::rclone_webdav(dir)
                };
                let settings = CloudSettings {
                    username: Some(servers::DAV_USER.into()),
                    password: Some(servers::DAV_PASSWORD.into()),
                    ..CloudSettings::default()
                };
                let url = s.url.clone();
                (Some(s), url, settings)
            }
            Backend::S3 => {
                let s = servers::s3(dir);
                let settings = CloudSettings {
                    access_key_id: Some(servers::S3_ACCESS_KEY.into()),
                    secret_access_key: Some(servers::S3_SECRET_KEY.into()),
                    ..CloudSettings::default()
                };
                let url = s.url.clone();
                (Some(s), url, settings)
            }
        };
        let cloud = cloudsync::cloud::open(&url, &settings).expect("the cloud opens");
        let data_dir = server
            .as_ref()
            .map_or_else(|| dir.join("cloud"), |s| s.data_dir.clone());
        (server, data_dir, cloud)
    }
}

/// Fields drop in order: the runtime and the server before the folder.
pub struct Harness {
    pub rt: Runtime,
    pub server: Option<servers::Server>,
    pub backend: Backend,
    /// Where the cloud keeps its objects as plain files.
    pub cloud_dir: PathBuf,
    /// The backend without faults, as another client of the cloud sees it.
    pub raw: Arc<dyn Cloud>,
    pub cloud: Arc<FaultyCloud>,
    pub device: Arc<SimulatedDevice>,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn new() -> Self {
        Self::with(|b| b).await
    }

    /// A harness whose runtime builder is adjusted by `f`.
    pub async fn with(f: impl FnOnce(RuntimeBuilder) -> RuntimeBuilder) -> Self {
        Self::build(Backend::Folder, f).await
    }

    /// A harness on `backend`.
    pub async fn on(backend: Backend) -> Self {
        Self::build(backend, |b| b).await
    }

    async fn build(backend: Backend, f: impl FnOnce(RuntimeBuilder) -> RuntimeBuilder) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (server, cloud_dir, raw) = backend.start(dir.path());
        let cloud = Arc::new(FaultyCloud::new(raw.clone()));
        let device = Arc::new(SimulatedDevice::default());
        let rt = Self::runtime(dir.path(), cloud.clone(), device.clone(), f).await;
        Harness {
            dir,
            backend,
            cloud_dir,
            raw,
            cloud,
            device,
            rt,
            server,
        }
    }

    async fn runtime(
        root: &Path,
        cloud: Arc<FaultyCloud>,
        device: Arc<SimulatedDevice>,
        f: impl FnOnce(RuntimeBuilder) -> RuntimeBuilder,
    ) -> Runtime {
        let builder = Runtime::builder(root.join("device"))
            .cloud(cloud)
            .device(device)
            .identity(Identity::app(APP));
        f(builder).build().await.expect("the runtime starts")
    }

    /// Stops the runtime as a crash would (no guest code runs, no clean-up)
    /// and starts a new one on the same device root.
    pub async fn crash_and_restart(&mut self) {
        self.rt.shutdown();
        self.rt = Self::runtime(self.dir.path(), self.cloud.clone(), self.device.clone(), |b| b).await;
    }

    pub fn uri(&self, path: &str) -> String {
        self.rt.uri_for(path)
    }

    /// Puts a file in the cloud, as another client of the cloud would: a
    /// plain file in the folder, an HTTP PUT to a server.
    pub fn put_cloud(&self, path: &str, data: &[u8]) {
        if self.backend == Backend::Folder {
            let p = self.cloud_dir.join(APP).join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
            return;
        }
        let key = format!("{APP}/{path}");
        let put = self.raw.put(&key, bytes_stream(data.to_vec()), Precondition::None);
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(put))
            .expect("the cloud takes the file");
    }

    pub fn cloud_file(&self, path: &str) -> PathBuf {
        self.cloud_dir.join(APP).join(path)
    }

    /// Where the app's copy of `path` lives.
    pub fn local(&self, path: &str) -> PathBuf {
        self.rt.app_folder(APP).join(path)
    }

    pub fn area(&self) -> PathBuf {
        self.dir.path().join("device/apps").join(APP)
    }

    /// Files in the staging area (partial downloads).
    pub fn staging(&self) -> Vec<String> {
        list_files(&self.area().join(".staging"))
    }

    /// Every file of the app's local cloud folder, relative, sorted.
    pub fn local_files(&self) -> Vec<String> {
        list_files(&self.rt.app_folder(APP))
    }

    /// No partial data in `bundle`'s staging area.
    pub fn assert_nothing_partial_in(&self, bundle: &str) {
        let staging = self.dir.path().join("device/apps").join(bundle).join(".staging");
        assert_eq!(
            list_files(&staging),
            Vec::<String>::new(),
            "partial data was left behind"
        );
    }

    pub fn assert_nothing_partial(&self) {
        assert_eq!(self.staging(), Vec::<String>::new(), "partial data was left behind");
    }

    pub fn cache(&self) -> CloudFileCache {
        CloudFileCache::new(&self.rt)
    }
}

impl Harness {
    /// Runs a cloud call from synchronous test code.
    fn block<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
    }

    /// Every object of the app in the cloud, as another client reads it.
    pub fn cloud_snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        let prefix = format!("{APP}/");
        let objects = self
            .block(cloudsync::cloud::list_all(&self.raw, &prefix))
            .expect("the cloud lists")
            .objects;
        objects
            .into_iter()
            .filter(|o| !o.key.ends_with('/'))
            .map(|o| {
                let data = self.block(async {
                    let (_, mut stream) = self.raw.open(&o.key, 0, None).await.expect("the object opens");
                    let mut data = Vec::new();
                    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut data)
                        .await
                        .unwrap();
                    data
                });
                (o.key[prefix.len()..].to_string(), data)
            })
            .collect()
    }

    /// Every file of the app's local folder with its content.
    pub fn local_snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.local_files()
            .into_iter()
            .map(|p| {
                let data = std::fs::read(self.local(&p)).unwrap();
                (p, data)
            })
            .collect()
    }

    /// Writes a file in the app's local folder, as the app would.
    pub fn put_local(&self, path: &str, data: &[u8]) {
        let p = self.local(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    /// Deletes an object as another client of the cloud would.
    pub fn remove_cloud(&self, path: &str) {
        self.block(self.raw.delete(&format!("{APP}/{path}"), None))
            .expect("the cloud deletes");
    }
}

/// Records the sync events one listener receives.
#[derive(Clone, Default)]
pub struct SyncRecorder {
    events: Arc<Mutex<Vec<SyncProgress>>>,
    notify: Arc<tokio::sync::Notify>,
}

impl SyncRecorder {
    pub fn callback(&self) -> impl Fn(SyncProgress) + Send + Sync + 'static {
        let (events, notify) = (self.events.clone(), self.notify.clone());
        move |p| {
            events.lock().unwrap().push(p);
            notify.notify_waiters();
        }
    }

    pub fn events(&self) -> Vec<SyncProgress> {
        self.events.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.events.lock().unwrap().clear();
    }

    /// Waits (up to 120 s) for the `n`th terminal event and returns it.
    pub async fn terminal(&self, n: usize) -> SyncProgress {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let notified = self.notify.notified();
            let events = self.events();
            if let Some(t) = events.iter().filter(|p| p.is_terminal()).nth(n - 1) {
                return *t;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for terminal event {n}; events: {events:?}");
            }
        }
    }
}

pub fn list_files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            // Symlinks are listed, not followed: they may lead out of the folder.
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Records the events one listener receives.
#[derive(Clone, Default)]
pub struct Recorder {
    events: Arc<Mutex<Vec<DownloadProgress>>>,
    notify: Arc<tokio::sync::Notify>,
}

impl Recorder {
    /// A recorder registered on `cache`.
    pub fn attach(cache: &CloudFileCache) -> (Recorder, ListenerId) {
        let r = Recorder::default();
        let id = cache.on("progress", r.callback()).unwrap();
        (r, id)
    }

    pub fn callback(&self) -> impl Fn(DownloadProgress) + Send + Sync + 'static {
        let (events, notify) = (self.events.clone(), self.notify.clone());
        move |p| {
            events.lock().unwrap().push(p);
            notify.notify_waiters();
        }
    }

    pub fn events(&self) -> Vec<DownloadProgress> {
        self.events.lock().unwrap().clone()
    }

    pub fn for_uri(&self, uri: &str) -> Vec<DownloadProgress> {
        self.events().into_iter().filter(|p| p.uri == uri).collect()
    }

    /// Waits (up to 60 s) until `pred` holds for the events so far.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[DownloadProgress]) -> bool) -> Vec<DownloadProgress> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let notified = self.notify.notified();
            let events = self.events();
            if pred(&events) {
                return events;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for {what}; events: {events:#?}");
            }
        }
    }

    /// Waits for the terminal event of `uri` and returns it.
    pub async fn terminal(&self, uri: &str) -> DownloadProgress {
        let events = self
            .wait_for("a terminal event", |ev| {
                ev.iter().any(|p| p.uri == uri && p.is_terminal())
            })
            .await;
        events.into_iter().find(|p| p.uri == uri && p.is_terminal()).unwrap()
    }
}

/// Deterministic pseudo-random bytes (xorshift), so failures replay.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `len` deterministic pseudo-random bytes to `path`, streaming (for
/// files too large to hold in memory).
pub fn write_pattern_file(path: &Path, len: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
}

/// Runs each named `async fn name(backend: Backend)` of the calling test
/// file as three tests: on the local folder, WebDAV and S3.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod folder {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Backend::Folder).await })*
        }
        mod webdav {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Backend::WebDav).await })*
        }
        mod s3 {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Backend::S3).await })*
        }
    };
}

/// The app as a system app holding CLOUDFILE_SYNC (the system APIs' caller).
pub fn system_app() -> Identity {
    let mut id = Identity::app(APP);
    id.permissions = [cloudsync::identity::CLOUDFILE_SYNC.to_string()].into();
    id.system_app = true;
    id
}

/// Puts `files` in the app's folder and syncs them to the cloud.
pub async fn synced(h: &Harness, files: &[(&str, Vec<u8>)]) {
    for (p, data) in files {
        h.put_local(p, data);
    }
    let sync = FileSync::new(&h.rt);
    let rec = SyncRecorder::default();
    sync.on("progress", rec.callback()).unwrap();
    sync.start().await.unwrap();
    assert_eq!(rec.terminal(1).await.state, SyncState::Completed);
}

/// Sets a file's last access `days` ago (as the file system keeps it).
pub fn accessed_days_ago(path: &Path, days: u32) {
    let ok = std::process::Command::new("touch")
        .arg("-a")
        .arg("-d")
        .arg(format!("{days} days ago"))
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// An optimisation's callback and the events it received.
pub fn optimize_recorder() -> (
    impl Fn(OptimizeSpaceProgress) + Send + Sync + 'static,
    tokio::sync::mpsc::UnboundedReceiver<OptimizeSpaceProgress>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (
        move |p| {
            let _ = tx.send(p);
        },
        rx,
    )
}

/// The events up to the terminal one (within 60 s), each in the seed's 1..=100.
pub async fn until_terminal(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<OptimizeSpaceProgress>,
) -> Vec<OptimizeSpaceProgress> {
    let mut events = Vec::new();
    while let Ok(Some(p)) = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
        assert!((1..=100).contains(&p.progress), "{p:?}");
        events.push(p);
        if p.is_terminal() {
            return events;
        }
    }
    panic!("no terminal event: {events:?}");
}
