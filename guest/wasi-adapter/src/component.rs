//! The WIT layer: the capability check (may the caller act for this
//! bundle?) when an `area` or `bucket` is opened, or per key for metadata;
//! then the plain-Rust parts, then conversion.

use std::cell::RefCell;

use crate::area::Areas;
use crate::cloud::{self as fc, Cloud};
use crate::config::{CloudAt, Config};
use crate::dav_cloud::DavCloud;
use crate::folder_cloud::FolderCloud;
use crate::journal::{self, Journal};
use crate::paths::is_bundle;

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "wasi-adapter",
    });
}

use bindings::exports::ohos::cloudsync::{cloud, device, files, identity, metadata, types};

struct Adapter;

struct State {
    config: Result<Config, String>,
    areas: Option<Areas>,
    cloud: Option<Box<dyn Cloud>>,
    journal: Option<Journal>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::load());
}

impl State {
    fn load() -> State {
        let args: Vec<String> = std::env::args().collect();
        let mut config = Config::parse(&args, &|k| std::env::var(k).ok());
        // A host that keeps its own device id (Node, which uses only this
        // adapter's cloud) names it; else it is kept in the root.
        let given = std::env::var("CLOUDSYNC_DEVICE_ID")
            .ok()
            .filter(|id| (8..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        let device = match &config {
            _ if given.is_some() => given,
            Ok(Config { root: Some(root), .. }) => match crate::device_id(root) {
                Ok(id) => Some(id),
                Err(e) => {
                    config = Err(format!("cannot keep this device's id: {}", e.message));
                    None
                }
            },
            _ => None,
        };
        if let (Ok(c), Some(id)) = (&mut config, &device) {
            if std::env::var("CLOUDSYNC_DEVICE_NAME").is_err() {
                c.device_name = format!("wasi-{}", &id[..4]);
            }
        }
        let device_id = device.as_deref().unwrap_or("anon");
        let (areas, cloud) = match &config {
            Ok(c) => (c.root.as_deref().map(Areas::new), c.cloud.clone()),
            Err(_) => (None, None),
        };
        let cloud: Option<Box<dyn Cloud>> = match cloud {
            None => None,
            Some(CloudAt::Folder(dir)) => Some(Box::new(FolderCloud::new(&dir, device_id))),
            Some(CloudAt::WebDav { url, user }) => {
                let auth = user.as_ref().map(|(u, p)| crate::http::basic_auth(u, p));
                match DavCloud::new(&url, auth, device_id) {
                    Ok(dav) => Some(Box::new(dav)),
                    Err(why) => {
                        config = Err(why);
                        None
                    }
                }
            }
        };
        State {
            config,
            areas,
            cloud,
            journal: None,
        }
    }

    fn config(&self) -> Result<&Config, String> {
        self.config.as_ref().map_err(|e| e.clone())
    }

    /// May the caller act for `bundle`?
    fn grant(&self, bundle: &str) -> Result<(), String> {
        let c = self.config()?;
        if !is_bundle(bundle) {
            return Err(format!("{bundle:?} is not a bundle name"));
        }
        if !c.may_act_for(bundle) {
            return Err(format!("{} may not act for {bundle}", c.bundle));
        }
        Ok(())
    }

    /// The areas; the bundle was checked when its area was opened.
    fn areas(&mut self) -> Result<&mut Areas, types::IoError> {
        self.areas
            .as_mut()
            .ok_or_else(|| denied("no device folder: pass --root (or set CLOUDSYNC_ROOT)".into()))
    }

    /// The cloud; the bundle was checked when its bucket was opened.
    fn cloud(&mut self) -> Result<&mut (dyn Cloud + 'static), types::CloudError> {
        self.cloud.as_deref_mut().ok_or_else(|| {
            cloud_err(
                types::CloudErrorKind::Unauthorized,
                "no cloud: pass --cloud dir:///path (or --root)".into(),
            )
        })
    }

    fn journal(&mut self, key: &str) -> Result<&mut Journal, types::IoError> {
        self.config().map_err(denied)?;
        let bundle = journal::bundle_of(key).map_err(io_err)?;
        self.grant(bundle).map_err(denied)?;
        if self.journal.is_none() {
            let root = self.config().map_err(denied)?.root.clone();
            let root = root.ok_or_else(|| denied("no device folder: pass --root (or set CLOUDSYNC_ROOT)".into()))?;
            std::fs::create_dir_all(&root).map_err(|e| io_err(crate::io_error(&root, e)))?;
            self.journal = Some(Journal::open(&format!("{root}/meta.journal")).map_err(io_err)?);
        }
        Ok(self.journal.as_mut().expect("opened"))
    }
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

impl identity::Guest for Adapter {
    fn caller_bundle() -> String {
        with(|s| s.config().map(|c| c.bundle.clone()).unwrap_or_default())
    }

    fn has_permission(name: String) -> bool {
        with(|s| s.config().is_ok_and(|c| c.has_permission(&name)))
    }

    fn is_system_app() -> bool {
        with(|s| s.config().is_ok_and(|c| c.system_app))
    }

    /// A command runs one user's requests: no request limit.
    fn admit_download() -> Result<(), String> {
        Ok(())
    }
}

impl device::Guest for Adapter {
    /// WASI tells nothing of networks, batteries or heat: a device that can
    /// sync.
    fn status() -> device::DeviceStatus {
        device::DeviceStatus {
            network_available: true,
            wifi_available: true,
            battery_percent: 100,
            charging: true,
            wifi_only: false,
            overheated: false,
        }
    }

    fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn device_name() -> String {
        with(|s| {
            s.config()
                .map(|c| c.device_name.clone())
                .unwrap_or_else(|_| "wasi".into())
        })
    }
}

impl files::Guest for Adapter {
    type Area = AreaGrant;
}

/// One app's area, granted in `open`: its methods act for `bundle` unasked.
struct AreaGrant {
    bundle: String,
}

impl AreaGrant {
    /// `f` on the areas, for this area's bundle.
    fn run<R>(&self, f: impl FnOnce(&mut Areas, &str) -> Result<R, crate::IoError>) -> Result<R, types::IoError> {
        with(|s| f(s.areas()?, &self.bundle).map_err(io_err))
    }
}

impl files::GuestArea for AreaGrant {
    fn open(bundle: String) -> Result<files::Area, types::IoError> {
        with(|s| {
            s.grant(&bundle).map_err(denied)?;
            s.areas().map(|_| ())
        })?;
        Ok(files::Area::new(AreaGrant { bundle }))
    }

    fn stat(&self, path: String) -> Result<Option<types::FileStat>, types::IoError> {
        self.run(|a, b| a.stat(b, &path)).map(|o| o.map(stat))
    }

    fn move_file(&self, from: String, to: String, mode: files::MoveMode, durable: bool) -> Result<(), types::IoError> {
        let no_replace = mode == files::MoveMode::NoReplace;
        self.run(|a, b| a.move_file(b, &from, &to, no_replace, durable))
    }

    fn flush(&self) -> Result<(), types::IoError> {
        self.run(|a, b| a.flush(b))
    }

    fn remove_file(&self, path: String) -> Result<(), types::IoError> {
        self.run(|a, b| a.remove_file(b, &path))
    }

    fn create_dir_all(&self, path: String) -> Result<(), types::IoError> {
        self.run(|a, b| a.create_dir_all(b, &path))
    }

    fn remove_dir(&self, path: String) -> Result<(), types::IoError> {
        self.run(|a, b| a.remove_dir(b, &path))
    }

    /// WASI has no statvfs.
    fn free_space(&self) -> Result<Option<u64>, types::IoError> {
        Ok(None)
    }

    /// No way to tell: recent files are hashed.
    fn fine_stamps(&self) -> bool {
        false
    }

    fn read_file(&self, path: String, offset: u64, len: u32) -> Result<Vec<u8>, types::IoError> {
        self.run(|a, b| a.read_file(b, &path, offset, len))
    }

    fn write_file(&self, path: String, offset: u64, data: Vec<u8>) -> Result<(), types::IoError> {
        self.run(|a, b| a.write_file(b, &path, offset, &data))
    }

    fn walk_page(
        &self,
        dir: String,
        after: Option<String>,
        max: u32,
    ) -> Result<Option<files::TreePage>, types::IoError> {
        let page = self.run(|a, b| a.walk_page(b, &dir, after.as_deref(), max))?;
        Ok(page.map(|(entries, next)| files::TreePage {
            entries: entries
                .into_iter()
                .map(|e| files::TreeEntry {
                    path: e.path,
                    stat: stat(e.stat),
                    problem: e.problem,
                })
                .collect(),
            next,
        }))
    }
}

impl metadata::Guest for Adapter {
    fn get(key: String) -> Result<Option<Vec<u8>>, types::IoError> {
        with(|s| Ok(s.journal(&key)?.get(&key).cloned()))
    }

    fn scan_page(prefix: String, after: Option<String>, max: u32) -> Result<Vec<(String, Vec<u8>)>, types::IoError> {
        let max = (max as usize).clamp(1, 65_536);
        with(|s| Ok(s.journal(&prefix)?.scan_page(&prefix, after.as_deref(), max)))
    }

    fn commit(changes: Vec<metadata::MetaChange>) -> Result<(), types::IoError> {
        with(|s| {
            let Some(first) = changes.first() else { return Ok(()) };
            let first = first.key.clone();
            for c in &changes {
                s.journal(&c.key)?;
            }
            s.journal(&first)?
                .commit(changes.into_iter().map(|c| (c.key, c.value)).collect())
                .map_err(io_err)
        })
    }
}

impl cloud::Guest for Adapter {
    type Bucket = BucketGrant;

    fn upload_part(id: u64, data: Vec<u8>) -> Result<(), types::CloudError> {
        with(|s| match s.cloud.as_mut() {
            Some(c) => c.upload_part(id, &data).map_err(cloud_error),
            None => Err(cloud_err(types::CloudErrorKind::Other, format!("no upload {id}"))),
        })
    }

    fn finish_upload(id: u64) -> Result<types::Object, types::CloudError> {
        with(|s| match s.cloud.as_mut() {
            Some(c) => c.finish_upload(id).map(object).map_err(cloud_error),
            None => Err(cloud_err(types::CloudErrorKind::Other, format!("no upload {id}"))),
        })
    }

    fn abort_upload(id: u64) {
        with(|s| {
            if let Some(c) = s.cloud.as_mut() {
                c.abort_upload(id)
            }
        })
    }
}

/// One app's bucket, granted in `open`: its methods act for `bundle` unasked.
struct BucketGrant {
    bundle: String,
}

impl BucketGrant {
    /// `f` on the cloud, for this bucket's bundle.
    fn run<R>(
        &self,
        f: impl FnOnce(&mut dyn Cloud, &str) -> Result<R, fc::CloudError>,
    ) -> Result<R, types::CloudError> {
        with(|s| f(s.cloud()?, &self.bundle).map_err(cloud_error))
    }
}

impl cloud::GuestBucket for BucketGrant {
    fn open(bundle: String) -> Result<cloud::Bucket, types::CloudError> {
        with(|s| {
            s.grant(&bundle)
                .map_err(|m| cloud_err(types::CloudErrorKind::Unauthorized, m))?;
            s.cloud().map(|_| ())
        })?;
        Ok(cloud::Bucket::new(BucketGrant { bundle }))
    }

    fn ready(&self) -> Result<(), types::CloudError> {
        self.run(|c, _| c.ready())
    }

    fn stat(&self, path: String) -> Result<types::Object, types::CloudError> {
        self.run(|c, b| c.stat(b, &path)).map(object)
    }

    fn list_page(
        &self,
        prefix: String,
        after: Option<String>,
        max: u32,
    ) -> Result<cloud::ListingPage, types::CloudError> {
        let (items, next) = self.run(|c, b| c.list_page(b, &prefix, after.as_deref(), max))?;
        let mut page = cloud::ListingPage {
            objects: Vec::new(),
            skipped: Vec::new(),
            next,
        };
        for item in items {
            match item {
                fc::Listed::Object(o) => page.objects.push(object(o)),
                fc::Listed::Skipped { path, reason } => page.skipped.push(cloud::Unlisted { path, reason }),
            }
        }
        Ok(page)
    }

    fn read(
        &self,
        path: String,
        offset: u64,
        len: u32,
        if_match: Option<String>,
    ) -> Result<Vec<u8>, types::CloudError> {
        self.run(|c, b| c.read(b, &path, offset, len, if_match.as_deref()))
    }

    fn delete(&self, path: String, if_match: Option<String>) -> Result<(), types::CloudError> {
        self.run(|c, b| c.delete(b, &path, if_match.as_deref()))
    }

    fn begin_upload(&self, path: String, precondition: types::WritePrecondition) -> Result<u64, types::CloudError> {
        let precondition = match precondition {
            types::WritePrecondition::None => fc::Precondition::None,
            types::WritePrecondition::IfMatch(e) => fc::Precondition::IfMatch(e),
            types::WritePrecondition::IfAbsent => fc::Precondition::IfAbsent,
        };
        self.run(|c, b| c.begin_upload(b, &path, precondition))
    }
}

bindings::export!(Adapter with_types_in bindings);

fn stat(s: crate::FileStat) -> types::FileStat {
    types::FileStat {
        kind: match s.kind {
            crate::FileKind::File => types::FileKind::File,
            crate::FileKind::Folder => types::FileKind::Folder,
            crate::FileKind::Symlink => types::FileKind::Symlink,
            crate::FileKind::Special => types::FileKind::Special,
        },
        size: s.size,
        mtime_ns: s.mtime_ns,
        ctime_ns: s.ctime_ns,
        inode: s.inode,
        atime_ns: s.atime_ns,
    }
}

fn object(o: fc::Object) -> types::Object {
    types::Object {
        path: o.path,
        size: o.size,
        etag: o.etag,
        version: o.version,
        content_hash: o.content_hash,
        modified_ms: o.modified_ms,
    }
}

fn denied(message: String) -> types::IoError {
    types::IoError {
        kind: types::IoErrorKind::PermissionDenied,
        message,
    }
}

fn io_err(e: crate::IoError) -> types::IoError {
    use crate::IoErrorKind as K;
    let kind = match e.kind {
        K::NotFound => types::IoErrorKind::NotFound,
        K::AlreadyExists => types::IoErrorKind::AlreadyExists,
        K::PermissionDenied => types::IoErrorKind::PermissionDenied,
        K::NoSpace => types::IoErrorKind::NoSpace,
        K::Interrupted => types::IoErrorKind::Interrupted,
        K::WouldBlock => types::IoErrorKind::WouldBlock,
        K::NotSupported => types::IoErrorKind::NotSupported,
        K::EscapesSandbox => types::IoErrorKind::EscapesSandbox,
        K::NotAFile => types::IoErrorKind::NotAFile,
        K::Other => types::IoErrorKind::Other,
    };
    types::IoError {
        kind,
        message: e.message,
    }
}

fn cloud_err(kind: types::CloudErrorKind, message: String) -> types::CloudError {
    types::CloudError { kind, message }
}

fn cloud_error(e: fc::CloudError) -> types::CloudError {
    let kind = match e.kind {
        fc::CloudErrorKind::NotFound => types::CloudErrorKind::NotFound,
        fc::CloudErrorKind::Network => types::CloudErrorKind::Network,
        fc::CloudErrorKind::Throttled => types::CloudErrorKind::Throttled,
        fc::CloudErrorKind::StorageFull => types::CloudErrorKind::StorageFull,
        fc::CloudErrorKind::Unauthorized => types::CloudErrorKind::Unauthorized,
        fc::CloudErrorKind::PreconditionFailed => types::CloudErrorKind::PreconditionFailed,
        fc::CloudErrorKind::LocalNoSpace => types::CloudErrorKind::LocalNoSpace,
        fc::CloudErrorKind::LocalIo => types::CloudErrorKind::LocalIo,
        fc::CloudErrorKind::Other => types::CloudErrorKind::Other,
    };
    cloud_err(kind, e.message)
}
