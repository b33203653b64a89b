//! The cloud, behind one small trait: plain objects at relative paths
//! ("keys", `<bundle>/<path>`), with etags for change detection and
//! conditional operations, and streaming reads.

mod dal;
mod faulty;
mod local;
mod ratelimit;
mod settings;
mod webdav;

use std::fs::File;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::AsyncRead;

pub use dal::DalCloud;
pub use faulty::{Faults, FaultyCloud};
pub use local::LocalFolderCloud;
pub use ratelimit::RateLimitedCloud;
pub use settings::{open, parse_url, CloudSettings, CloudUrl, ConfigFile, SettingsError};
pub use webdav::{parse_multistatus, DavEntry, WebDavCloud};

/// Why a cloud operation failed; the engine maps these to the seed's errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloudErrorKind {
    /// No such object.
    NotFound,
    /// The cloud cannot be reached.
    Network,
    /// The cloud asks to slow down (HTTP 429, 503 SlowDown, a request limit).
    Throttled,
    /// The cloud account is full.
    StorageFull,
    /// Not signed in, or the credentials were refused.
    Unauthorized,
    /// The object is not the version the request named (if-match, if-absent).
    PreconditionFailed,
    /// Anything else.
    Other,
}

/// The contract's kinds, as a cloud backend has them (a backend's own
/// failures are never local ones).
impl From<cloudsync_contract::CloudErrorKind> for CloudErrorKind {
    fn from(kind: cloudsync_contract::CloudErrorKind) -> Self {
        use cloudsync_contract::CloudErrorKind as K;
        match kind {
            K::NotFound => Self::NotFound,
            K::Network => Self::Network,
            K::Throttled => Self::Throttled,
            K::StorageFull => Self::StorageFull,
            K::Unauthorized => Self::Unauthorized,
            K::PreconditionFailed => Self::PreconditionFailed,
            K::LocalNoSpace | K::LocalIo | K::Other => Self::Other,
        }
    }
}

/// A failed cloud operation: its kind and a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct CloudError {
    /// What kind of failure, for the engine.
    pub kind: CloudErrorKind,
    /// What went wrong, in the cloud's words.
    pub message: String,
}

impl CloudError {
    /// An error of `kind` with `message`.
    pub fn new(kind: CloudErrorKind, message: impl Into<String>) -> Self {
        CloudError {
            kind,
            message: message.into(),
        }
    }
    /// `NotFound` for `key`.
    pub fn not_found(key: &str) -> Self {
        Self::new(CloudErrorKind::NotFound, format!("{key}: no such object"))
    }
}

/// One object's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudObject {
    /// The object's key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Changes whenever the content changes.
    pub etag: String,
    /// A version id, where the cloud keeps versions.
    pub version: Option<String>,
    /// `sha256:<hex>` where the cloud knows it.
    pub content_hash: Option<String>,
    /// Last modification, epoch ms.
    pub modified_ms: u64,
}

/// Bytes of an object, streamed.
pub type ByteStream = Pin<Box<dyn AsyncRead + Send>>;

/// What a listing found: the objects, and the names below the prefix that
/// are no objects the engine can sync (a symlink in a folder cloud, a name
/// that is not UTF-8), with why. They are never read as deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// The objects, in key order.
    pub objects: Vec<CloudObject>,
    /// (key, why).
    pub skipped: Vec<(String, String)>,
}

/// One name a listing found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listed {
    /// An object the engine can sync.
    Object(CloudObject),
    /// A name below the prefix that is no object the engine can sync, and why.
    Skipped {
        /// The name's key.
        key: String,
        /// Why it is skipped.
        why: String,
    },
}

impl Listed {
    /// The key of the name, object or skipped.
    pub fn key(&self) -> &str {
        match self {
            Listed::Object(o) => &o.key,
            Listed::Skipped { key, .. } => key,
        }
    }
}

/// A listing read a page at a time, so that no one holds a whole cloud:
/// names in byte order of their keys.
#[async_trait]
pub trait ListCursor: Send {
    /// Up to about `max` more names; an empty page is the end.
    async fn next_page(&mut self, max: usize) -> Result<Vec<Listed>, CloudError>;
}

/// The listing of `prefix` after `after` (a key), checked: only keys under
/// the prefix and after `after`, never the engine's own folder unless the
/// prefix is in it, and strictly in byte order, or the page fails (a
/// listing out of order would read as files deleted).
pub fn listing(cloud: Arc<dyn Cloud>, prefix: &str, after: Option<&str>) -> Box<dyn ListCursor> {
    let in_engine_dir = prefix.split('/').next() == Some(ENGINE_DIR);
    Box::new(CheckedListing {
        inner: cloud.list_from(prefix, after),
        prefix: prefix.to_string(),
        last: after.map(str::to_string),
        passed_after: after.is_none(),
        hide_engine_dir: !in_engine_dir,
    })
}

/// Every name under `prefix`, gathered (for small listings and tests).
pub async fn list_all(cloud: &Arc<dyn Cloud>, prefix: &str) -> Result<Listing, CloudError> {
    let mut cursor = listing(cloud.clone(), prefix, None);
    let mut out = Listing::default();
    loop {
        let page = cursor.next_page(1000).await?;
        if page.is_empty() {
            return Ok(out);
        }
        for item in page {
            match item {
                Listed::Object(o) => out.objects.push(o),
                Listed::Skipped { key, why } => out.skipped.push((key, why)),
            }
        }
    }
}

struct CheckedListing {
    inner: Box<dyn ListCursor>,
    prefix: String,
    /// The last key given (or `after`, until one is).
    last: Option<String>,
    /// A key past `after` was given: any key not past the last is disorder.
    passed_after: bool,
    hide_engine_dir: bool,
}

#[async_trait]
impl ListCursor for CheckedListing {
    async fn next_page(&mut self, max: usize) -> Result<Vec<Listed>, CloudError> {
        loop {
            let page = self.inner.next_page(max).await?;
            if page.is_empty() {
                return Ok(page);
            }
            let mut out = Vec::with_capacity(page.len());
            for item in page {
                let key = item.key();
                if !key.starts_with(&self.prefix) || (self.hide_engine_dir && key.split('/').next() == Some(ENGINE_DIR))
                {
                    continue;
                }
                if let Some(last) = self.last.as_deref().filter(|last| key <= *last) {
                    // Keys up to `after` are what a backend that cannot start
                    // there gives first; past it, the listing is out of order.
                    if !self.passed_after {
                        continue;
                    }
                    return Err(CloudError::new(
                        CloudErrorKind::Other,
                        format!("the cloud listed {key} after {last}: its listing is not in key order"),
                    ));
                }
                self.last = Some(key.to_string());
                self.passed_after = true;
                out.push(item);
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }
}
/// Where the engine's own objects live in a cloud (`ENGINE_DIR`: a
/// top-level folder no bundle can be named, so no user's name ever collides
/// with them), and uploads being staged (`STAGING_DIR/<device>/…`).
pub use cloudsync_contract::{ENGINE_DIR, STAGING_DIR};
/// Staging objects of other devices older than this are abandoned: an
/// upload in progress keeps touching its object.
pub const STAGING_SAFE_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Where and how writers of clouds without atomic conditions take locks.
pub use cloudsync_contract::{DEAD_WRITER_GRACE, LOCKS_DIR, LOCK_STALE, LOCK_SWEEP_AGE, LOCK_WAIT};

/// The device id staging names carry (set once by the runtime), and a
/// sequence, so names never repeat.
#[derive(Debug, Default)]
pub struct StagingNames {
    device: std::sync::OnceLock<String>,
    seq: std::sync::atomic::AtomicU64,
}

impl StagingNames {
    /// Sets this device's id (the first call wins).
    pub fn set_device(&self, id: &str) {
        let _ = self.device.set(id.to_string());
    }

    /// This device's id (`unnamed` until set).
    pub fn device(&self) -> &str {
        self.device.get().map_or("unnamed", String::as_str)
    }

    /// A fresh staging key: `.cloudsync/staging/<device>/<ms>-<pid>-<seq>`.
    pub fn next(&self) -> String {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{STAGING_DIR}/{}/{ms}-{}-{seq}", self.device(), std::process::id())
    }
}

/// The MD5 an S3-style ETag states (`"<32 hex>"`, a single-part upload),
/// if it is one.
pub fn etag_md5(etag: &str) -> Option<String> {
    let e = etag.trim_matches('"');
    (e.len() == 32 && e.bytes().all(|b| b.is_ascii_hexdigit())).then(|| e.to_ascii_lowercase())
}

/// A cloud store. Keys are `/`-separated relative paths without `.`/`..`.
#[async_trait]
pub trait Cloud: Send + Sync + 'static {
    /// A short description for messages, e.g. `dir:///srv/cloud`.
    fn describe(&self) -> String;
    /// This device's id, for the names of its staging objects (so that the
    /// next run knows which ones are its own). Set once by the runtime.
    fn set_device(&self, _id: &str) {}
    /// Whether an ETag of the form `"<32 hex>"` is the content's MD5 (S3):
    /// transfers then check what they moved against it.
    fn etags_are_md5(&self) -> bool {
        false
    }
    /// The metadata of `key`; `NotFound` when there is no such object.
    async fn stat(&self, key: &str) -> Result<CloudObject, CloudError>;
    /// The objects under `prefix` (a key prefix), recursively, and the
    /// names below it that are not objects, streamed in byte order of the
    /// keys. It may begin before `after` or give keys beside the prefix:
    /// callers read it through [`listing`], which keeps what was asked for.
    fn list_from(self: Arc<Self>, prefix: &str, after: Option<&str>) -> Box<dyn ListCursor>;
    /// Reads `key` from `offset`; with `if_match`, fails with
    /// `PreconditionFailed` unless the object's etag is that one.
    async fn open(
        &self,
        key: &str,
        offset: u64,
        if_match: Option<&str>,
    ) -> Result<(CloudObject, ByteStream), CloudError>;
    /// Replaces `key` with the bytes of `data`, streamed (large objects go up
    /// in parts where the cloud supports it). Readers never see a partial
    /// object. `precondition` makes the write conditional, atomically
    /// against other writers where the cloud can; where it cannot, a write
    /// found replaced right after it is reported `PreconditionFailed` (its
    /// bytes are then no longer in the cloud). Returns the object as this
    /// write made it.
    async fn put(&self, key: &str, data: ByteStream, precondition: Precondition) -> Result<CloudObject, CloudError>;
    /// [`Self::put`] of a local file's bytes, where this cloud keeps its
    /// objects as files on this machine and can have the kernel copy them
    /// (`source` fills the object's file); `None` where it cannot, and the
    /// caller puts a stream instead.
    async fn put_file(
        &self,
        _key: &str,
        _source: &dyn FileSource,
        _precondition: Precondition,
    ) -> Option<Result<CloudObject, CloudError>> {
        None
    }
    /// The object as an open local file, where this cloud keeps it as one,
    /// for a download that copies it from `offset` in the kernel; `None`
    /// where it does not (read [`Self::open`]). `if_match` as for `open`.
    fn open_file(
        &self,
        _key: &str,
        _offset: u64,
        _if_match: Option<&str>,
    ) -> Option<Result<(CloudObject, File), CloudError>> {
        None
    }
    /// Deletes `key`; with `if_match`, only if the current etag is that one.
    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<(), CloudError>;
    /// Removes staging objects a killed upload left: every one of `device`'s
    /// (no upload of this device runs when this is called) and other
    /// devices' untouched for `older_than`. Returns how many went.
    async fn sweep_staging(&self, _device: &str, _older_than: std::time::Duration) -> Result<usize, CloudError> {
        Ok(0)
    }
    /// Whether the configured place exists (a WebDAV URL whose folder is
    /// missing fails every write with a word that misleads): `Unauthorized`
    /// with the reason when it does not.
    async fn check_root(&self) -> Result<(), CloudError> {
        Ok(())
    }
}

/// What a write requires of the object it replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// Write whatever is there.
    None,
    /// Only if the current etag is this one (no lost update).
    IfMatch(String),
    /// Only if there is no object yet.
    IfAbsent,
}

impl Precondition {
    /// Checks the precondition against `current`, the object as it is now
    /// (or the error that looking it up gave).
    pub fn check(&self, key: &str, current: Result<CloudObject, CloudError>) -> Result<(), CloudError> {
        match (self, current) {
            (Precondition::None, _) => Ok(()),
            (Precondition::IfMatch(etag), current) => current?.expect_etag(Some(etag)),
            (Precondition::IfAbsent, Ok(_)) => Err(CloudError::new(
                CloudErrorKind::PreconditionFailed,
                format!("{key} already exists"),
            )),
            (Precondition::IfAbsent, Err(e)) if e.kind == CloudErrorKind::NotFound => Ok(()),
            (Precondition::IfAbsent, Err(e)) => Err(e),
        }
    }
}

impl CloudObject {
    /// `PreconditionFailed` unless the object is the version `if_match` names.
    pub fn expect_etag(&self, if_match: Option<&str>) -> Result<(), CloudError> {
        match if_match {
            Some(etag) if etag != self.etag => Err(CloudError::new(
                CloudErrorKind::PreconditionFailed,
                format!("{} changed: etag {} is not {etag}", self.key, self.etag),
            )),
            _ => Ok(()),
        }
    }
}

/// A local file read as a byte stream, each read done in place: reads of a
/// local disk take microseconds, where handing each to a blocking thread
/// (as `tokio::fs` does) costs more than the read.
pub struct FileStream(pub std::fs::File);

impl AsyncRead for FileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::io::Read;
        let n = loop {
            match self.0.read(buf.initialize_unfilled()) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        buf.advance(n);
        std::task::Poll::Ready(Ok(()))
    }
}

/// A local file's bytes, for a cloud that copies them itself
/// ([`Cloud::put_file`]).
pub trait FileSource: Send + Sync {
    /// Fills `to` (a new, empty file) with all the bytes, or fails.
    fn copy_into(&self, to: &File) -> std::io::Result<()>;
}

/// A byte stream over a buffer in memory.
pub fn bytes_stream(data: Vec<u8>) -> ByteStream {
    Box::pin(std::io::Cursor::new(data))
}

/// Keys are relative, `/`-separated, with no empty, `.` or `..` parts.
pub fn check_key(key: &str) -> Result<(), CloudError> {
    let ok = !key.is_empty() && !key.contains('\0') && key.split('/').all(|p| !p.is_empty() && p != "." && p != "..");
    if ok {
        Ok(())
    } else {
        Err(CloudError::new(
            CloudErrorKind::Other,
            format!("{key:?} is not a valid object key"),
        ))
    }
}
