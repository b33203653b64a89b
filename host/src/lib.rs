//! cloudsync: OpenHarmony's `@ohos.file.cloudSync` as a WebAssembly
//! component, and the host that runs it.
//!
//! The component (built from the `guest` crate and embedded here) holds the
//! sync engine; this crate gives it storage, the cloud, permission checks
//! and device status, and exposes the seed's API in Rust:
//!
//! The API follows the seed: what the seed makes synchronous (the
//! constructors, `on`/`off`, the single-file `getFileSyncState`,
//! `cleanCache`, `stopOptimizeSpace`) is a plain call here, what returns a
//! Promise there is `async` here, and errors carry the seed's codes
//! ([`CloudSyncError::code`]), raised by the methods whose tables list them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use cloudsync::{CloudFileCache, Identity, Runtime};
//!
//! let rt = Runtime::builder("/var/lib/cloudsync")
//!     .identity(Identity::app("com.example.notes"))
//!     .build()
//!     .await?;
//! let cache = CloudFileCache::new(&rt);
//! cache.on("progress", |p| println!("{:?} {}/{}", p.state, p.processed, p.size))?;
//! cache.start("file://com.example.notes/data/storage/el2/cloud/report.pdf").await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod api;
pub mod beneath;
mod cache;
pub mod cloud;
pub mod device;
pub mod identity;
pub mod media;
mod ondemand;
mod runtime;
mod storage;
mod sync;

pub use storage::{MetaError, Metadata};
pub mod textfile;
mod transfers;

pub use api::{
    codes, CloudSyncError, Confirm, DownloadErrorType, DownloadProgress, ErrorType, FileEntry, FileListing, FileNote,
    FileSyncState, ListenerId, OptimizeSpaceParam, OptimizeSpaceProgress, OptimizeState, State, SyncAction,
    SyncDecision, SyncProgress, SyncReport, SyncState,
};
pub use cache::CloudFileCache;
pub use identity::Identity;
pub use ondemand::{
    list_files, list_files_page, optimize_storage, start_optimize_space, stop_optimize_space, Download,
};
pub use runtime::{
    compiled_component, default_cache_dir, engine_component, percent_decode, percent_encode, BuildError, Runtime,
    RuntimeBuilder, SandboxLimits,
};
pub use sync::{get_file_sync_state, get_file_sync_states, FileSync, GallerySync};
