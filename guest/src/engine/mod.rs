//! The engine in plain Rust types. The WIT layer converts to and from these.

pub mod by_itself;
mod download;
mod error;
pub mod ondemand;
mod place;
mod platform;
pub mod records;
pub mod sync;
mod uri;

#[cfg(test)]
pub(crate) mod fake;

pub use download::{CacheId, Downloads};
pub use error::{codes, ApiError};
pub use platform::*;
pub use uri::{parse_app_uri, parse_uri_for, AppFile, GALLERY_BUNDLE};

/// Download state of one file (seed: `State`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    Completed,
    Failed,
    Stopped,
}

/// Why a download failed (seed: `DownloadErrorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DownloadErrorType {
    NoError,
    UnknownError,
    NetworkUnavailable,
    LocalStorageFull,
    ContentNotFound,
    FrequentUserRequests,
}

/// One download progress event (seed: `DownloadProgress`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadProgress {
    pub state: State,
    pub processed: u64,
    pub size: u64,
    pub uri: String,
    pub error: DownloadErrorType,
}

/// State of a whole sync run (seed: `SyncState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncState {
    Uploading,
    UploadFailed,
    Downloading,
    DownloadFailed,
    Completed,
    Stopped,
}

/// Why a sync run is held back or failed (seed: `ErrorType`), in the
/// seed's order; [`ErrorType::priority`] ranks them for reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorType {
    NoError,
    NetworkUnavailable,
    WifiUnavailable,
    BatteryLevelLow,
    BatteryLevelWarning,
    CloudStorageFull,
    LocalStorageFull,
    DeviceTemperatureTooHigh,
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

/// One sync progress event (seed: `SyncProgress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncProgress {
    pub state: SyncState,
    pub error: ErrorType,
}

/// Per-file sync state (seed: `FileSyncState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FileSyncState {
    Uploading,
    Downloading,
    Completed,
    Stopped,
    ToBeUploaded,
    UploadSuccess,
    UploadFailure,
}

/// The only event name the seed defines.
pub const PROGRESS_EVENT: &str = "progress";

/// What the engine needs after a tick (ordered: the most urgent is greatest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tick {
    /// Nothing is running.
    Idle,
    /// Jobs run, waiting for transfers: tick again when one progresses.
    Waiting,
    /// Work is ready now: tick again at once.
    More,
}

/// The engine: everything the component exports, over one platform.
pub struct Engine<P: Platform> {
    pub platform: P,
    pub downloads: Downloads,
    pub syncs: sync::Syncs,
    pub ondemand: ondemand::OnDemand,
}

impl<P: Platform> Engine<P> {
    pub fn new(platform: P) -> Self {
        Engine {
            platform,
            downloads: Downloads::default(),
            syncs: sync::Syncs::default(),
            ondemand: ondemand::OnDemand::default(),
        }
    }

    /// Recovers after a crash or a trapped instance: partial downloads that
    /// were not explicitly kept are removed, so nothing stray is left.
    pub fn init(&mut self) -> Result<(), ApiError> {
        self.downloads.recover(&self.platform)
    }

    /// Advances every running job; returns whether any job is still running.
    pub fn tick(&mut self) -> Tick {
        let downloads = self.downloads.tick(&self.platform);
        let syncs = self.syncs.tick(&self.platform);
        let optimize = self.ondemand.tick(&self.platform, &self.syncs);
        match syncs.max(optimize) {
            Tick::More => Tick::More,
            Tick::Waiting => Tick::Waiting,
            Tick::Idle if downloads => Tick::Waiting,
            Tick::Idle => Tick::Idle,
        }
    }
}

#[cfg(test)]
mod fuzz_tests;
