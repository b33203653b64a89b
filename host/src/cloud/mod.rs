//! The cloud, behind one small trait: plain objects at relative paths
//! ("keys", `<bundle>/<path>`), with etags for change detection and
//! conditional operations, and streaming reads.

mod dal;
mod faulty;
mod local;
mod ratelimit;
mod settings;

use std::pin::Pin;

use async_trait::async_trait;
use tokio::io::AsyncRead;

pub use dal::DalCloud;
pub use faulty::{Faults, FaultyCloud};
pub use local::LocalFolderCloud;
pub use ratelimit::RateLimitedCloud;
pub use settings::{open, CloudSettings, ConfigFile, SettingsError};

/// Why a cloud operation failed; the engine maps these to the seed's errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloudErrorKind {
    NotFound,
    Network,
    Throttled,
    StorageFull,
    Unauthorized,
    PreconditionFailed,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct CloudError {
    pub kind: CloudErrorKind,
    pub message: String,
}

impl CloudError {
    pub fn new(kind: CloudErrorKind, message: impl Into<String>) -> Self {
        CloudError {
            kind,
            message: message.into(),
        }
    }
    pub fn not_found(key: &str) -> Self {
        Self::new(CloudErrorKind::NotFound, format!("{key}: no such object"))
    }
}

/// One object's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudObject {
    /// The object's key.
    pub key: String,
    pub size: u64,
    /// Changes whenever the content changes.
    pub etag: String,
    pub version: Option<String>,
    /// `sha256:<hex>` where the cloud knows it.
    pub content_hash: Option<String>,
    pub modified_ms: u64,
}

/// Bytes of an object, streamed.
pub type ByteStream = Pin<Box<dyn AsyncRead + Send>>;

/// A cloud store. Keys are `/`-separated relative paths without `.`/`..`.
#[async_trait]
pub trait Cloud: Send + Sync + 'static {
    /// A short description for messages, e.g. `dir:///srv/cloud`.
    fn describe(&self) -> String;
    async fn stat(&self, key: &str) -> Result<CloudObject, CloudError>;
    /// Every object under `prefix` (a key prefix), recursively.
    async fn list(&self, prefix: &str) -> Result<Vec<CloudObject>, CloudError>;
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
    /// object. `precondition` makes the write conditional.
    async fn put(&self, key: &str, data: ByteStream, precondition: Precondition) -> Result<CloudObject, CloudError>;
    /// Deletes `key`; with `if_match`, only if the current etag is that one.
    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<(), CloudError>;
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
