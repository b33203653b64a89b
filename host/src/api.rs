//! The seed's types and error codes, as the Rust API shows them.

use serde::Serialize;

/// The seed's numeric error codes (the component has the same table in
/// `guest/src/engine/error.rs`: the two build for different targets).
pub mod codes {
    /// The caller lacks a permission (`ohos.permission.CLOUDFILE_SYNC`, ...).
    pub const PERMISSION_DENIED: u32 = 201;
    /// A system API called by an app that is not a system app.
    pub const NOT_SYSTEM_APP: u32 = 202;
    /// Bad parameters.
    pub const INVALID_PARAMETER: u32 = 401;
    /// The service (the component or its host) failed.
    pub const SERVICE_FAILED: u32 = 13_600_001;
    /// No such file or cloud record.
    pub const NO_SUCH_FILE: u32 = 13_900_002;
    /// Not enough local space.
    pub const NO_SPACE: u32 = 13_900_025;
    /// Invalid URI.
    pub const INVALID_URI: u32 = 14_000_002;
    /// Cloud not ready (no account, or the app's cloud switch is off).
    pub const CLOUD_NOT_READY: u32 = 22_400_001;
    /// No network.
    pub const NETWORK_UNAVAILABLE: u32 = 22_400_002;
    /// Battery below 10 % and not charging.
    pub const LOW_BATTERY: u32 = 22_400_003;
    /// Internal error (metadata store failure and the like).
    pub const INTERNAL: u32 = 22_400_005;
    /// The same task is already running.
    pub const ALREADY_RUNNING: u32 = 22_400_006;
}

/// A failed call: the seed's numeric code and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{message} (error {code})")]
pub struct CloudSyncError {
    pub code: u32,
    pub message: String,
}

impl CloudSyncError {
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
}

/// Download state of one cloud file (seed: `State`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Running = 0,
    Completed = 1,
    Failed = 2,
    Stopped = 3,
}

/// Why a download failed (seed: `DownloadErrorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DownloadErrorType {
    NoError = 0,
    UnknownError = 1,
    NetworkUnavailable = 2,
    LocalStorageFull = 3,
    ContentNotFound = 4,
    FrequentUserRequests = 5,
}

/// One download progress event (seed: `DownloadProgress`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DownloadProgress {
    pub state: State,
    /// Bytes of the file present locally so far.
    pub processed: u64,
    /// Size of the cloud file.
    pub size: u64,
    pub uri: String,
    pub error: DownloadErrorType,
}

impl DownloadProgress {
    /// COMPLETED, FAILED or STOPPED: the last event of a download.
    pub fn is_terminal(&self) -> bool {
        self.state != State::Running
    }
}

/// Identifies a registered listener, for `off`.
pub type ListenerId = u64;

/// The one event name the seed defines.
pub const PROGRESS: &str = "progress";

impl State {
    /// The seed's name, e.g. `RUNNING`.
    pub fn name(self) -> &'static str {
        match self {
            State::Running => "RUNNING",
            State::Completed => "COMPLETED",
            State::Failed => "FAILED",
            State::Stopped => "STOPPED",
        }
    }
}

impl DownloadErrorType {
    /// The seed's name, e.g. `NETWORK_UNAVAILABLE`.
    pub fn name(self) -> &'static str {
        match self {
            DownloadErrorType::NoError => "NO_ERROR",
            DownloadErrorType::UnknownError => "UNKNOWN_ERROR",
            DownloadErrorType::NetworkUnavailable => "NETWORK_UNAVAILABLE",
            DownloadErrorType::LocalStorageFull => "LOCAL_STORAGE_FULL",
            DownloadErrorType::ContentNotFound => "CONTENT_NOT_FOUND",
            DownloadErrorType::FrequentUserRequests => "FREQUENT_USER_REQUESTS",
        }
    }
}

/// State of a whole sync run (seed: `SyncState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncState {
    Uploading = 0,
    UploadFailed = 1,
    Downloading = 2,
    DownloadFailed = 3,
    Completed = 4,
    Stopped = 5,
}

/// Why a sync run is held back or failed (seed: `ErrorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorType {
    NoError = 0,
    NetworkUnavailable = 1,
    WifiUnavailable = 2,
    BatteryLevelLow = 3,
    BatteryLevelWarning = 4,
    CloudStorageFull = 5,
    LocalStorageFull = 6,
    DeviceTemperatureTooHigh = 7,
}

/// One sync progress event (seed: `SyncProgress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SyncProgress {
    pub state: SyncState,
    pub error: ErrorType,
}

impl SyncProgress {
    /// COMPLETED, STOPPED, UPLOAD_FAILED or DOWNLOAD_FAILED: the last event of a run.
    pub fn is_terminal(&self) -> bool {
        !matches!(self.state, SyncState::Uploading | SyncState::Downloading)
    }
}

/// Per-file sync state (seed: `FileSyncState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FileSyncState {
    Uploading = 0,
    Downloading = 1,
    Completed = 2,
    Stopped = 3,
    ToBeUploaded = 4,
    UploadSuccess = 5,
    UploadFailure = 6,
}

/// What a sync run did, for people (the seed's events carry only states).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    pub running: bool,
    pub planned: u64,
    pub done: u64,
    pub uploaded: u64,
    pub downloaded: u64,
    pub deleted_local: u64,
    pub deleted_remote: u64,
    pub conflicts: u64,
    pub failed: u64,
    pub bytes_uploaded: u64,
    pub bytes_downloaded: u64,
    /// Why the run refused to apply its plan (a guard tripped); the run
    /// then ends STOPPED having changed nothing.
    pub refusal: Option<String>,
    /// The last failure, in the words of whoever failed.
    pub last_error: Option<String>,
    /// Names not synced, and why (at most 1000; `skipped_total` counts all).
    pub skipped: Vec<FileNote>,
    pub skipped_total: u64,
    /// Files that failed, and why (at most 1000; `failed` counts all).
    pub failures: Vec<FileNote>,
    /// What else a person should know about the run.
    pub notes: Vec<String>,
}

/// A file or name, and why it was skipped or failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileNote {
    pub path: String,
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
    pub files: Vec<FileEntry>,
    pub skipped: Vec<FileNote>,
    /// A page's last path: the next page goes on after it (`None`: the end).
    pub next: Option<String>,
}

impl SyncState {
    /// The seed's name, e.g. `UPLOAD_FAILED`.
    pub fn name(self) -> &'static str {
        match self {
            SyncState::Uploading => "UPLOADING",
            SyncState::UploadFailed => "UPLOAD_FAILED",
            SyncState::Downloading => "DOWNLOADING",
            SyncState::DownloadFailed => "DOWNLOAD_FAILED",
            SyncState::Completed => "COMPLETED",
            SyncState::Stopped => "STOPPED",
        }
    }
}

impl ErrorType {
    /// The seed's name, e.g. `BATTERY_LEVEL_LOW`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorType::NoError => "NO_ERROR",
            ErrorType::NetworkUnavailable => "NETWORK_UNAVAILABLE",
            ErrorType::WifiUnavailable => "WIFI_UNAVAILABLE",
            ErrorType::BatteryLevelLow => "BATTERY_LEVEL_LOW",
            ErrorType::BatteryLevelWarning => "BATTERY_LEVEL_WARNING",
            ErrorType::CloudStorageFull => "CLOUD_STORAGE_FULL",
            ErrorType::LocalStorageFull => "LOCAL_STORAGE_FULL",
            ErrorType::DeviceTemperatureTooHigh => "DEVICE_TEMPERATURE_TOO_HIGH",
        }
    }
}

impl FileSyncState {
    /// The seed's name, e.g. `TO_BE_UPLOADED`.
    pub fn name(self) -> &'static str {
        match self {
            FileSyncState::Uploading => "UPLOADING",
            FileSyncState::Downloading => "DOWNLOADING",
            FileSyncState::Completed => "COMPLETED",
            FileSyncState::Stopped => "STOPPED",
            FileSyncState::ToBeUploaded => "TO_BE_UPLOADED",
            FileSyncState::UploadSuccess => "UPLOAD_SUCCESS",
            FileSyncState::UploadFailure => "UPLOAD_FAILURE",
        }
    }
}

/// State of a space optimisation (seed: `OptimizeState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OptimizeState {
    Running = 0,
    Completed = 1,
    Failed = 2,
    Stopped = 3,
}

impl OptimizeState {
    /// The seed's name, e.g. `RUNNING`.
    pub fn name(self) -> &'static str {
        match self {
            OptimizeState::Running => "RUNNING",
            OptimizeState::Completed => "COMPLETED",
            OptimizeState::Failed => "FAILED",
            OptimizeState::Stopped => "STOPPED",
        }
    }
}

/// One space optimisation event (seed: `OptimizeSpaceProgress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct OptimizeSpaceProgress {
    pub state: OptimizeState,
    /// Percent of the bytes to free, 0..=100.
    pub progress: u32,
}

impl OptimizeSpaceProgress {
    /// COMPLETED, FAILED or STOPPED: the last event of an optimisation.
    pub fn is_terminal(&self) -> bool {
        self.state != OptimizeState::Running
    }
}

/// What a space optimisation may evict (seed: `OptimizeSpaceParam`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct OptimizeSpaceParam {
    /// Bytes to free at most (`u64::MAX`: all that qualifies).
    pub total_size: u64,
    /// Only files not accessed for this many days.
    pub aging_days: u32,
}

/// A file the device knows: a local one, or a cloud-only placeholder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    pub uri: String,
    pub size: u64,
    pub cloud_only: bool,
    pub state: FileSyncState,
    /// Last access seen (API, command line, the file's atime), epoch ms; 0 if never.
    pub last_access_ms: u64,
}
