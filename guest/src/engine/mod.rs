//! The engine in plain Rust types. The WIT layer converts to and from these.

mod access;
pub mod by_itself;
mod download;
mod error;
mod layout;
pub mod ondemand;
mod place;
mod platform;
pub mod records;
mod recovery;
pub mod sync;
mod uri;

#[cfg(test)]
pub(crate) mod fake;

pub use download::{CacheId, Downloads};
pub use error::{codes, ApiError};
pub use platform::*;
pub use uri::{parse_app_uri, parse_uri_for, AppFile, GALLERY_BUNDLE};

pub use cloudsync_contract::{
    DownloadErrorType, DownloadProgress, ErrorType, FileSyncState, State, SyncAction, SyncDecision, SyncProgress,
    SyncState, PROGRESS_EVENT,
};

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

    /// `getFileSyncState(uri)`: a sync run's state of the file, DOWNLOADING
    /// while a `CloudFileCache` or `Download` fetches it, else its records'.
    pub fn file_sync_state(&self, uri: &str) -> Result<FileSyncState, ApiError> {
        self.syncs
            .file_sync_state(&self.platform, uri, |f| self.downloads.is_downloading(f))
    }

    /// `getFileSyncState(uris)`: as [`Self::file_sync_state`], for each.
    pub fn file_sync_states(&self, uris: &[String]) -> Result<Vec<FileSyncState>, ApiError> {
        self.syncs
            .file_sync_states(&self.platform, uris, |f| self.downloads.is_downloading(f))
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
