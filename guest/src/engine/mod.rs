//! The engine in plain Rust types. The WIT layer converts to and from these.

mod download;
mod error;
mod platform;
mod records;
pub mod sync;
mod uri;

#[cfg(test)]
pub(crate) mod fake;

pub use download::{CacheId, Downloads};
pub use error::{codes, ApiError};
pub use platform::*;
pub use uri::{parse_app_uri, AppFile};

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

/// The only event name the seed defines.
pub const PROGRESS_EVENT: &str = "progress";

/// The engine: everything the component exports, over one platform.
pub struct Engine<P: Platform> {
    pub platform: P,
    pub downloads: Downloads,
}

impl<P: Platform> Engine<P> {
    pub fn new(platform: P) -> Self {
        Engine {
            platform,
            downloads: Downloads::default(),
        }
    }

    /// Recovers after a crash or a trapped instance: partial downloads that
    /// were not explicitly kept are removed, so nothing stray is left.
    pub fn init(&mut self) -> Result<(), ApiError> {
        self.downloads.recover(&self.platform)
    }

    /// Advances every running job; returns whether any job is still running.
    pub fn tick(&mut self) -> bool {
        self.downloads.tick(&self.platform)
    }
}
