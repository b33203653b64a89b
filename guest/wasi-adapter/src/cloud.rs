//! The cloud the adapter gives the engine, behind one small trait: a
//! folder (`dir:///path`, [`crate::folder_cloud`]) or a WebDAV server
//! (`webdav://host/path`, [`crate::dav_cloud`], over wasi:http). Both keep
//! the native host's layout, so devices on either share one cloud.

pub use cloudsync_contract::{CloudError, CloudErrorKind, CloudObject as Object};

/// What must hold for an upload to replace an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    None,
    IfMatch(String),
    IfAbsent,
}

/// One name of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listed {
    Object(Object),
    Skipped { path: String, reason: String },
}

impl Listed {
    pub fn path(&self) -> &str {
        match self {
            Listed::Object(o) => &o.path,
            Listed::Skipped { path, .. } => path,
        }
    }
}

/// One app's objects are at `<bundle>/<path>`; paths the engine gives are
/// relative, `/`-separated, without `.`/`..` parts (each cloud checks).
pub trait Cloud {
    /// Whether the cloud can be reached and is what it should be.
    fn ready(&mut self) -> Result<(), CloudError>;
    fn stat(&mut self, bundle: &str, path: &str) -> Result<Object, CloudError>;
    /// Up to `len` bytes from `offset`, of the version `if_match` names.
    fn read(
        &mut self,
        bundle: &str,
        path: &str,
        offset: u64,
        len: u32,
        if_match: Option<&str>,
    ) -> Result<Vec<u8>, CloudError>;
    /// Deletes an object (nothing there: done), if it is `if_match`.
    fn delete(&mut self, bundle: &str, path: &str, if_match: Option<&str>) -> Result<(), CloudError>;
    /// A page of the names under `prefix` after `after`, in byte order, and
    /// where the next page starts.
    fn list_page(
        &mut self,
        bundle: &str,
        prefix: &str,
        after: Option<&str>,
        max: u32,
    ) -> Result<(Vec<Listed>, Option<String>), CloudError>;
    fn begin_upload(&mut self, bundle: &str, path: &str, precondition: Precondition) -> Result<u64, CloudError>;
    fn upload_part(&mut self, id: u64, data: &[u8]) -> Result<(), CloudError>;
    fn abort_upload(&mut self, id: u64);
    /// Puts the upload in place whole, as its precondition allows.
    fn finish_upload(&mut self, id: u64) -> Result<Object, CloudError>;
}
