//! The seed's types and error codes, as the Rust API shows them (the
//! seed's enums, records and codes are `cloudsync_contract`'s).

use serde::Serialize;

pub use cloudsync_contract::{
    codes, DownloadErrorType, DownloadProgress, ErrorType, FileSyncState, OptimizeSpaceParam, OptimizeSpaceProgress,
    OptimizeState, State, SyncAction, SyncDecision, SyncProgress, SyncState,
};

/// Which codes each seed method lists, and where the others go.
pub use cloudsync_contract::listed;

/// The one event name the seed defines.
pub const PROGRESS: &str = cloudsync_contract::PROGRESS_EVENT;

/// A failed call: the seed's numeric code and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{message} (error {code})")]
pub struct CloudSyncError {
    /// The seed's numeric error code (one of [`codes`]).
    pub code: u32,
    /// What went wrong, for people.
    pub message: String,
}

impl CloudSyncError {
    /// An error with the seed's `code` and a message.
    pub fn new(code: u32, message: impl Into<String>) -> Self {
        CloudSyncError {
            code,
            message: message.into(),
        }
    }

    /// The component or its host failed (13600001).
    pub fn service(message: impl Into<String>) -> Self {
        Self::new(codes::SERVICE_FAILED, message)
    }

    /// This error as the seed's `method` gives it: its code the nearest
    /// one the method's table lists (the component maps its own errors;
    /// this maps the host's, a trap's 13600001 say).
    pub fn for_method(self, method: cloudsync_contract::listed::Method) -> Self {
        CloudSyncError {
            code: method.code_for(self.code),
            message: self.message,
        }
    }
}

/// Identifies a registered listener, for `off`.
pub type ListenerId = u64;

/// What a sync run did, for people (the seed's events carry only states).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Whether the run is still going.
    pub running: bool,
    /// Operations the run planned so far.
    pub planned: u64,
    /// Operations done so far, of `planned`.
    pub done: u64,
    /// Files uploaded to the cloud.
    pub uploaded: u64,
    /// Files downloaded to the device.
    pub downloaded: u64,
    /// Files deleted on the device (they were deleted in the cloud).
    pub deleted_local: u64,
    /// Files deleted in the cloud (they were deleted on the device).
    pub deleted_remote: u64,
    /// Files changed on both sides: the local version was kept as a conflict copy.
    pub conflicts: u64,
    /// Files that failed (each counted once a run).
    pub failed: u64,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
    /// Bytes downloaded.
    pub bytes_downloaded: u64,
    /// Why the run refused to apply its plan (a guard tripped); the run
    /// then ends STOPPED having changed nothing.
    pub refusal: Option<String>,
    /// The last failure, in the words of whoever failed.
    pub last_error: Option<String>,
    /// Names not synced, and why (at most 1000; `skipped_total` counts all).
    pub skipped: Vec<FileNote>,
    /// Names not synced, all of them counted.
    pub skipped_total: u64,
    /// Files that failed, and why (at most 1000; `failed` counts all).
    pub failures: Vec<FileNote>,
    /// What else a person should know about the run.
    pub notes: Vec<String>,
    /// The run's last event so far (its end, once it ended).
    pub last: Option<SyncProgress>,
    /// When it ended (epoch ms; 0 while it runs). A new process sees the
    /// last run recorded, without its lists.
    pub ended_ms: u64,
}

/// A file or name, and why it was skipped or failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileNote {
    /// The path, relative to the synced folder.
    pub path: String,
    /// Why, for people.
    pub reason: String,
}

/// What a user confirmed of what a sync's guards hold back; each case is
/// confirmed on its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Confirm {
    /// Deletions beyond the guard's share: more than half of the most files
    /// held in sync since deletions were last confirmed.
    pub deletions: bool,
    /// The device's folder is empty or missing: delete the cloud's copies too.
    pub empty_device: bool,
    /// The cloud is empty: delete the device's copies too.
    pub empty_cloud: bool,
}

/// Every file the device knows, and the names in the folder it does not sync.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileListing {
    /// The files, in path order.
    pub files: Vec<FileEntry>,
    /// Names in the folder that are not synced, and why.
    pub skipped: Vec<FileNote>,
    /// A page's last path: the next page goes on after it (`None`: the end).
    pub next: Option<String>,
}

/// A file the device knows: a local one, or a cloud-only placeholder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// The file's URI (`file://<bundle>/data/storage/el2/cloud/<path>`).
    pub uri: String,
    /// Size in bytes.
    pub size: u64,
    /// Only in the cloud: a placeholder here, its bytes not on the device.
    pub cloud_only: bool,
    /// Its sync state, as `getFileSyncState` gives it.
    pub state: FileSyncState,
    /// Last access seen (API, command line, the file's atime), epoch ms; 0 if never.
    pub last_access_ms: u64,
}
