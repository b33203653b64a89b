//! The ports the engine needs from its host: one method per WIT import, in
//! plain Rust types. The component implements them with the imports; the
//! native tests with an in-memory fake.

pub use cloudsync_contract::{CloudError, CloudErrorKind, CloudObject, FileKind, FileStat, IoError, IoErrorKind};

use cloudsync_contract::OptimizeSpaceProgress;

use super::{ApiError, DownloadProgress, SyncDecision, SyncProgress};

pub type ListenerId = u64;
pub type TransferId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceStatus {
    pub network_available: bool,
    pub wifi_available: bool,
    pub battery_percent: u8,
    pub charging: bool,
    /// The user's setting: sync on Wi-Fi (unmetered networks) only.
    pub wifi_only: bool,
    /// Hotter than the device's thermal limit.
    pub overheated: bool,
}

/// What a [`Platform::move_file`] does with a file at its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoveMode {
    Replace,
    /// `AlreadyExists` if anything is there.
    NoReplace,
}

/// What a [`Platform::swap_if_unchanged`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapOutcome {
    /// Swapped; the old file, now at the source's name, is exactly the one
    /// expected and nobody opened it from the check to the swap.
    Clean,
    /// Swapped; another process had the old file open: it may hold writes.
    InUse,
    /// Not swapped: the target is no longer the expected file.
    Changed,
}

/// A page of a walk: its entries, and where the next starts (`None`: the end).
pub type TreePage = (Vec<TreeEntry>, Option<String>);

/// One name found by [`Platform::scan_tree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    /// Path relative to the scanned folder.
    pub path: String,
    pub stat: FileStat,
    /// Why the host could not use this entry as it is: a name that is not
    /// UTF-8 (`path` then shows it with U+FFFD), a folder it cannot read.
    pub problem: Option<String>,
}

/// A cloud listing: the objects, and the names the cloud holds that are
/// not files the engine can sync (symlinks in a folder cloud, invalid keys).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CloudListing {
    pub objects: Vec<CloudObject>,
    /// (path, why): never read as deleted, never touched.
    pub skipped: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadRequest {
    pub bundle: String,
    pub cloud_path: String,
    pub local_path: String,
    pub offset: u64,
    pub if_match: Option<String>,
    /// A download the user asked for: it counts against the app's request limit.
    pub counted: bool,
    /// Done only once the bytes are on disk; otherwise [`Platform::flush`]
    /// must follow before they are relied on.
    pub durable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferState {
    Running,
    Done,
    Failed(CloudError),
}

/// What an upload requires of the cloud object it replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WritePrecondition {
    None,
    IfMatch(String),
    IfAbsent,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRequest {
    pub bundle: String,
    pub local_path: String,
    pub cloud_path: String,
    pub precondition: WritePrecondition,
    /// The local file must be this one from the first byte to the last.
    pub expect: Option<super::records::LocalStamp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferStatus {
    /// Bytes moved so far (for a download: bytes now in the local file).
    pub bytes: u64,
    pub state: TransferState,
    /// For a finished upload: the object as written, with `content_hash`
    /// the sha256 of the bytes sent.
    pub uploaded: Option<CloudObject>,
    /// For a finished transfer: the sha256 of the whole content moved.
    pub sha256: Option<String>,
}

/// Everything the engine asks of its host.
pub trait Platform {
    // permission
    fn caller_bundle(&self) -> String;
    fn has_permission(&self, name: &str) -> bool;
    fn is_system_app(&self) -> bool;

    // device
    fn device_status(&self) -> DeviceStatus;
    fn now_ms(&self) -> u64;
    fn device_name(&self) -> String;

    // storage: paths are relative to the bundle's local area
    fn stat(&self, bundle: &str, path: &str) -> Result<Option<FileStat>, IoError>;
    /// A durable rename that replaces the target.
    fn rename(&self, bundle: &str, from: &str, to: &str) -> Result<(), IoError> {
        self.move_file(bundle, from, to, MoveMode::Replace, true)
    }
    /// An atomic rename as `mode` says; unless `durable`, durable only after
    /// the next [`flush`](Self::flush).
    fn move_file(&self, bundle: &str, from: &str, to: &str, mode: MoveMode, durable: bool) -> Result<(), IoError>;
    /// Swaps `from` and `to` if `to` is still `expect`, seeing any process
    /// that has or opens it from the check to the swap (`NotFound` when `to`
    /// is missing, `NotSupported` where no atomic swap exists).
    fn swap_if_unchanged(
        &self,
        bundle: &str,
        from: &str,
        to: &str,
        expect: super::records::LocalStamp,
        durable: bool,
    ) -> Result<SwapOutcome, IoError>;
    /// Makes every write so far in the area's file system durable.
    fn flush(&self, bundle: &str) -> Result<(), IoError>;
    fn remove_file(&self, bundle: &str, path: &str) -> Result<(), IoError>;
    fn create_dir_all(&self, bundle: &str, path: &str) -> Result<(), IoError>;
    /// Removes a folder if it is empty (an error, changing nothing, if not).
    fn remove_dir(&self, bundle: &str, path: &str) -> Result<(), IoError>;
    fn free_space(&self, bundle: &str) -> Result<u64, IoError>;
    /// Lower-case hex sha256 of a local file's content.
    fn hash_file(&self, bundle: &str, path: &str) -> Result<String, IoError>;
    /// Whether any write after a `stat` of a file gives it a new ctime,
    /// however soon: then a stamp taken after a file's last change vouches
    /// for its content, and no recent file needs hashing.
    fn fine_stamps(&self, bundle: &str) -> bool;
    /// Every name under `dir`, recursively: regular files, symlinks and
    /// special files (never followed), and empty or unreadable folders.
    /// `None` when `dir` is missing.
    fn scan_tree(&self, bundle: &str, dir: &str) -> Result<Option<Vec<TreeEntry>>, IoError> {
        let mut entries = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let Some((page, next)) = self.walk_page(bundle, dir, after.as_deref(), 4096)? else {
                return Ok(None);
            };
            entries.extend(page);
            match next {
                Some(n) => after = Some(n),
                None => return Ok(Some(entries)),
            }
        }
    }
    /// A page of `scan_tree` in path order: at most `max` entries after
    /// `after`, and where the next page starts (`None`: the end).
    fn walk_page(&self, bundle: &str, dir: &str, after: Option<&str>, max: u32) -> Result<Option<TreePage>, IoError>;
    /// Removes a file durably, only if it is still `expect` and no process
    /// has it open (`WouldBlock` then). The file is first renamed to
    /// `aside` (in the staging area); a crash may leave it there.
    fn evict(&self, bundle: &str, path: &str, expect: super::records::LocalStamp, aside: &str) -> Result<(), IoError>;

    // durable metadata
    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, IoError>;
    fn meta_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, IoError> {
        let mut all: Vec<(String, Vec<u8>)> = Vec::new();
        loop {
            let after = all.last().map(|(k, _)| k.clone());
            let page = self.meta_scan_page(prefix, after.as_deref(), 1024)?;
            if page.is_empty() {
                return Ok(all);
            }
            all.extend(page);
        }
    }
    /// At most `max` keys with `prefix` after `after`, in key order.
    fn meta_scan_page(&self, prefix: &str, after: Option<&str>, max: u32) -> Result<Vec<(String, Vec<u8>)>, IoError>;
    fn meta_commit(&self, changes: Vec<(String, Option<Vec<u8>>)>) -> Result<(), IoError>;

    // cloud
    fn cloud_stat(&self, bundle: &str, path: &str) -> Result<CloudObject, CloudError>;
    /// Whether the app may sync now: signed in, the app's cloud switch on.
    fn cloud_ready(&self, bundle: &str) -> Result<(), CloudError>;
    /// A page of the cloud's listing under `prefix`, in path order: at most
    /// `max` names after `after`, and where the next page starts (`None`:
    /// the end).
    fn cloud_list_page(
        &self,
        bundle: &str,
        prefix: &str,
        after: Option<&str>,
        max: u32,
    ) -> Result<(CloudListing, Option<String>), CloudError>;
    fn cloud_delete(&self, bundle: &str, path: &str, if_match: Option<&str>) -> Result<(), CloudError>;

    // media
    /// Makes a JPEG thumbnail (longer side at most `max_edge` pixels) of the
    /// cloud image at `cloud_path`, written atomically to `thumb_path`.
    fn make_thumbnail(&self, bundle: &str, cloud_path: &str, thumb_path: &str, max_edge: u32)
        -> Result<(), CloudError>;

    // transfers
    fn start_download(&self, request: DownloadRequest) -> Result<TransferId, CloudError>;
    fn start_upload(&self, request: UploadRequest) -> Result<TransferId, CloudError>;
    fn poll_transfer(&self, id: TransferId) -> Option<TransferStatus>;
    fn cancel_transfer(&self, id: TransferId);
    fn release_transfer(&self, id: TransferId);

    // events
    fn emit_download(&self, listener: ListenerId, progress: &DownloadProgress);
    fn emit_sync(&self, listener: ListenerId, progress: SyncProgress);
    fn emit_optimize(&self, listener: ListenerId, progress: OptimizeSpaceProgress);
    /// Why an optimisation failed (the code `optimizeStorage` rejects
    /// with); sent to each of its listeners before its FAILED event.
    fn emit_optimize_failure(&self, listener: ListenerId, error: &ApiError);
    /// Why the download of `uri` failed, for people; sent before its FAILED event.
    fn report_failure(&self, uri: &str, reason: &str);
    /// What a sync run decided for a path and why, for whoever logs.
    fn note_decision(&self, decision: SyncDecision);
}
