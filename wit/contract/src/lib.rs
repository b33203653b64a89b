//! The contract every layer shares, written once: the seed's enums and
//! records (`@ohos.file.cloudSync`, with the seed's numbers and names), its
//! error codes, the URI rules' constants, and where things are kept. The
//! engine (`guest`), the Rust host (`host`) and the WASI adapter build it
//! for their own targets; the WIT (`wit/*.wit`) is its twin at the
//! component boundary, converted field by field in each WIT layer.

use serde::{Deserialize, Serialize};

pub mod listed;
#[cfg(feature = "webdav")]
pub mod webdav;

/// Where writers of clouds without atomic conditions keep their locks.
pub const LOCKS_DIR: &str = ".cloudsync/locks";
/// A lock older than this was left by a killed writer.
pub const LOCK_STALE: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a writer waits for another's lock before giving up (the
/// engine tries again on its next round or run).
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(40);
/// A lock of this device's dead process is cleared only this long after it
/// was taken: what the process sent may still be landing on the server (a
/// copy it started, say).
pub const DEAD_WRITER_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// Locks older than this are removed when a device starts (killed writers
/// leave them; a writer only clears the one it meets).
pub const LOCK_SWEEP_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// The seed's numeric error codes.
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
    /// The file system: an interrupted call (EINTR).
    pub const INTERRUPTED: u32 = 13_900_004;
    /// The file system: try again (EAGAIN; the file is busy).
    pub const TRY_AGAIN: u32 = 13_900_010;
    /// The file system refused access (EACCES).
    pub const FS_PERMISSION_DENIED: u32 = 13_900_012;
    /// The file system does not implement the call (ENOSYS).
    pub const NOT_IMPLEMENTED: u32 = 13_900_031;
    /// Any other file-system failure.
    pub const UNKNOWN: u32 = 13_900_042;
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

    /// Every code above.
    pub const ALL: [u32; 17] = [
        PERMISSION_DENIED,
        NOT_SYSTEM_APP,
        INVALID_PARAMETER,
        SERVICE_FAILED,
        NO_SUCH_FILE,
        INTERRUPTED,
        TRY_AGAIN,
        FS_PERMISSION_DENIED,
        NOT_IMPLEMENTED,
        UNKNOWN,
        NO_SPACE,
        INVALID_URI,
        CLOUD_NOT_READY,
        NETWORK_UNAVAILABLE,
        LOW_BATTERY,
        INTERNAL,
        ALREADY_RUNNING,
    ];
}

/// `ohos.permission.CLOUDFILE_SYNC`: the system APIs need it.
pub const CLOUDFILE_SYNC: &str = "ohos.permission.CLOUDFILE_SYNC";
/// `ohos.permission.CLOUDFILE_SYNC_MANAGER`: needed to act for another bundle.
pub const CLOUDFILE_SYNC_MANAGER: &str = "ohos.permission.CLOUDFILE_SYNC_MANAGER";
/// The one event name the seed defines.
pub const PROGRESS_EVENT: &str = "progress";
/// The app's cloud folder inside its sandbox, as its URIs name it.
pub const CLOUD_DIR: &str = "/data/storage/el2/cloud/";
/// The gallery's own area: its items are `file://media/Photo/<id>/<name>`.
pub const GALLERY_BUNDLE: &str = "media";
/// Where an app's cloud files live in its local area.
pub const LOCAL_CLOUD_DIR: &str = "cloud";
/// The cloud's own folder at its top level (hidden from listings).
pub const ENGINE_DIR: &str = ".cloudsync";
/// Uploads being staged, per device: `.cloudsync/staging/<device>/…`.
pub const STAGING_DIR: &str = ".cloudsync/staging";

/// A bundle name: `[A-Za-z0-9._-]+`, at most 128 bytes, starting with a
/// letter or digit (names starting otherwise, `.cloudsync` say, are the
/// engine's own at the cloud's top level, never an app's).
pub fn is_bundle_name(bundle: &str) -> bool {
    !bundle.is_empty()
        && bundle.len() <= 128
        && bundle.as_bytes()[0].is_ascii_alphanumeric()
        && bundle
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A folder cloud's etag of a file: it changes with any write, even one
/// that puts the size and mtime back (the ctime moves).
pub fn folder_etag(size: u64, mtime_ns: u64, ctime_ns: u64, inode: u64) -> String {
    format!("{size:x}-{mtime_ns:x}-{ctime_ns:x}-{inode:x}")
}

// What the engine and its hosts say to each other of files and the cloud
// (the WIT's `types` interface, in Rust).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoErrorKind {
    NotFound,
    AlreadyExists,
    PermissionDenied,
    NoSpace,
    Interrupted,
    WouldBlock,
    NotSupported,
    EscapesSandbox,
    NotAFile,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoError {
    pub kind: IoErrorKind,
    pub message: String,
}

impl IoError {
    pub fn new(kind: IoErrorKind, message: impl Into<String>) -> Self {
        IoError {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

/// What a name in a folder is. Only regular files are synced; the host
/// never follows a symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    File,
    Folder,
    Symlink,
    /// A FIFO, socket or device.
    Special,
}

/// What the engine compares to tell whether a local file changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    pub kind: FileKind,
    pub size: u64,
    pub mtime_ns: u64,
    /// Status change time: moves on every write, even when a tool puts the
    /// mtime back (`touch -r`, archivers, cameras).
    pub ctime_ns: u64,
    pub inode: u64,
    /// Last access, where the file system keeps it (0 when it does not).
    pub atime_ns: u64,
}

impl FileStat {
    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Folder
    }
    pub fn is_file(&self) -> bool {
        self.kind == FileKind::File
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloudErrorKind {
    NotFound,
    Network,
    Throttled,
    StorageFull,
    Unauthorized,
    PreconditionFailed,
    LocalNoSpace,
    LocalIo,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
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
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudObject {
    pub path: String,
    pub size: u64,
    pub etag: String,
    pub version: Option<String>,
    pub content_hash: Option<String>,
    pub modified_ms: u64,
}

impl CloudError {
    /// Local trouble while moving cloud data: no space, or another failure.
    pub fn local(e: IoError) -> Self {
        let kind = if e.kind == IoErrorKind::NoSpace {
            CloudErrorKind::LocalNoSpace
        } else {
            CloudErrorKind::LocalIo
        };
        CloudError::new(kind, e.message)
    }
}

/// A seed enum: its cases with the seed's numbers, `name()` the seed's
/// name, serialized by that name (and read by the case's Rust name too,
/// as records written before kept them).
macro_rules! seed_enum {
    ($(#[$doc:meta])* $name:ident { $($case:ident = $n:literal $seed:literal $rust:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(
                #[serde(rename = $seed, alias = $rust)]
                $case = $n,
            )+
        }

        impl $name {
            /// Every case, in the seed's order.
            pub const ALL: &'static [$name] = &[$($name::$case),+];

            /// The seed's name, e.g. `RUNNING`.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$case => $seed,)+
                }
            }
        }
    };
}

seed_enum! {
    /// Download state of one cloud file (seed: `State`).
    State { Running = 0 "RUNNING" "Running", Completed = 1 "COMPLETED" "Completed", Failed = 2 "FAILED" "Failed", Stopped = 3 "STOPPED" "Stopped" }
}

seed_enum! {
    /// Why a download failed (seed: `DownloadErrorType`).
    DownloadErrorType {
        NoError = 0 "NO_ERROR" "NoError",
        UnknownError = 1 "UNKNOWN_ERROR" "UnknownError",
        NetworkUnavailable = 2 "NETWORK_UNAVAILABLE" "NetworkUnavailable",
        LocalStorageFull = 3 "LOCAL_STORAGE_FULL" "LocalStorageFull",
        ContentNotFound = 4 "CONTENT_NOT_FOUND" "ContentNotFound",
        FrequentUserRequests = 5 "FREQUENT_USER_REQUESTS" "FrequentUserRequests",
    }
}

seed_enum! {
    /// State of a whole sync run (seed: `SyncState`).
    SyncState {
        Uploading = 0 "UPLOADING" "Uploading",
        UploadFailed = 1 "UPLOAD_FAILED" "UploadFailed",
        Downloading = 2 "DOWNLOADING" "Downloading",
        DownloadFailed = 3 "DOWNLOAD_FAILED" "DownloadFailed",
        Completed = 4 "COMPLETED" "Completed",
        Stopped = 5 "STOPPED" "Stopped",
    }
}

seed_enum! {
    /// Why a sync run is held back or failed (seed: `ErrorType`), in the
    /// seed's order; [`ErrorType::priority`] ranks them for reporting.
    ErrorType {
        NoError = 0 "NO_ERROR" "NoError",
        NetworkUnavailable = 1 "NETWORK_UNAVAILABLE" "NetworkUnavailable",
        WifiUnavailable = 2 "WIFI_UNAVAILABLE" "WifiUnavailable",
        BatteryLevelLow = 3 "BATTERY_LEVEL_LOW" "BatteryLevelLow",
        BatteryLevelWarning = 4 "BATTERY_LEVEL_WARNING" "BatteryLevelWarning",
        CloudStorageFull = 5 "CLOUD_STORAGE_FULL" "CloudStorageFull",
        LocalStorageFull = 6 "LOCAL_STORAGE_FULL" "LocalStorageFull",
        DeviceTemperatureTooHigh = 7 "DEVICE_TEMPERATURE_TOO_HIGH" "DeviceTemperatureTooHigh",
    }
}

seed_enum! {
    /// Per-file sync state (seed: `FileSyncState`).
    FileSyncState {
        Uploading = 0 "UPLOADING" "Uploading",
        Downloading = 1 "DOWNLOADING" "Downloading",
        Completed = 2 "COMPLETED" "Completed",
        Stopped = 3 "STOPPED" "Stopped",
        ToBeUploaded = 4 "TO_BE_UPLOADED" "ToBeUploaded",
        UploadSuccess = 5 "UPLOAD_SUCCESS" "UploadSuccess",
        UploadFailure = 6 "UPLOAD_FAILURE" "UploadFailure",
    }
}

seed_enum! {
    /// State of a space optimisation (seed: `OptimizeState`).
    OptimizeState { Running = 0 "RUNNING" "Running", Completed = 1 "COMPLETED" "Completed", Failed = 2 "FAILED" "Failed", Stopped = 3 "STOPPED" "Stopped" }
}

impl ErrorType {
    /// When several errors happen, the one with the highest priority is
    /// reported: NETWORK > WIFI > BATTERY_WARNING > BATTERY_LOW > CLOUD_FULL > LOCAL_FULL.
    pub fn priority(self) -> u8 {
        match self {
            ErrorType::NetworkUnavailable => 7,
            ErrorType::WifiUnavailable => 6,
            ErrorType::BatteryLevelWarning => 5,
            ErrorType::BatteryLevelLow => 4,
            ErrorType::CloudStorageFull => 3,
            ErrorType::LocalStorageFull => 2,
            ErrorType::DeviceTemperatureTooHigh => 1,
            ErrorType::NoError => 0,
        }
    }
}

/// One download progress event (seed: `DownloadProgress`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DownloadProgress {
    pub state: State,
    /// Bytes of the file present locally so far (resumed bytes included).
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

/// One sync progress event (seed: `SyncProgress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// What a sync run does about one path (or a whole plan), for its logs
/// and for a dry run's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncAction {
    /// The local file goes up.
    Upload,
    /// The cloud's version comes down.
    Download,
    /// The local file is deleted (it was deleted in the cloud).
    DeleteLocal,
    /// The cloud's copy is deleted (it was deleted on this device).
    DeleteCloud,
    /// Both sides changed: the local version is kept as a conflict copy.
    Conflict,
    /// Both sides hold the same: only the record is written.
    Record,
    /// A cloud-only placeholder (the gallery's thumbnail) is made.
    Placeholder,
    /// Gone on both sides: the record is dropped.
    Forget,
    /// The name is not synced.
    Skip,
    /// A guard held the plan back: nothing is changed.
    Refuse,
    /// The step failed.
    Fail,
}

impl SyncAction {
    /// The name logs and `--json` use: `upload`, `delete-cloud`, ...
    pub fn name(self) -> &'static str {
        match self {
            SyncAction::Upload => "upload",
            SyncAction::Download => "download",
            SyncAction::DeleteLocal => "delete-local",
            SyncAction::DeleteCloud => "delete-cloud",
            SyncAction::Conflict => "conflict",
            SyncAction::Record => "record",
            SyncAction::Placeholder => "placeholder",
            SyncAction::Forget => "forget",
            SyncAction::Skip => "skip",
            SyncAction::Refuse => "refuse",
            SyncAction::Fail => "fail",
        }
    }

    /// Whether the step changes a file on either side.
    pub fn changes_files(self) -> bool {
        matches!(
            self,
            SyncAction::Upload
                | SyncAction::Download
                | SyncAction::DeleteLocal
                | SyncAction::DeleteCloud
                | SyncAction::Conflict
                | SyncAction::Placeholder
        )
    }
}

/// One decision of a sync run: what it does about `path` (empty for the
/// whole plan), and why. A dry run's decisions are its plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SyncDecision {
    pub bundle: String,
    pub path: String,
    pub action: SyncAction,
    pub reason: String,
    /// Planned by a dry run: nothing was done.
    pub dry_run: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_numbers_and_names() {
        assert_eq!(State::Stopped as u32, 3);
        assert_eq!(SyncState::Completed as u32, 4);
        assert_eq!(ErrorType::DeviceTemperatureTooHigh as u32, 7);
        assert_eq!(FileSyncState::UploadFailure as u32, 6);
        assert_eq!(DownloadErrorType::ALL.len(), 6);
        assert_eq!(FileSyncState::ToBeUploaded.name(), "TO_BE_UPLOADED");
        for (i, s) in SyncState::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
        assert!(is_bundle_name("com.a-b_c") && !is_bundle_name(".cloudsync") && !is_bundle_name("a/b"));
        assert_eq!(folder_etag(16, 255, 1, 2), "10-ff-1-2");
    }

    #[test]
    fn written_by_the_seeds_name_and_read_by_either() {
        assert_eq!(
            serde_json::to_string(&FileSyncState::UploadFailure).unwrap(),
            "\"UPLOAD_FAILURE\""
        );
        // Records written before the contract named cases as Rust does.
        let old: FileSyncState = serde_json::from_str("\"UploadFailure\"").unwrap();
        let new: FileSyncState = serde_json::from_str("\"UPLOAD_FAILURE\"").unwrap();
        assert_eq!((old, new), (FileSyncState::UploadFailure, FileSyncState::UploadFailure));
    }
}
