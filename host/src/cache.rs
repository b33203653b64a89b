//! `CloudFileCache`: download an app's cloud files into its local folder.

use std::sync::Arc;

use crate::api::{CloudSyncError, DownloadProgress, ListenerId};
use crate::runtime::{Callback, ObjectHandle, ObjectKind, Runtime};

/// Downloads the caller's cloud files (seed: `CloudFileCache`). Instances
/// share nothing: events reach only the listeners of the instance whose
/// download they are about. Dropping it stops its downloads and deletes
/// their partial data.
///
/// ```no_run
/// # async fn demo(rt: &cloudsync::Runtime) -> Result<(), cloudsync::CloudSyncError> {
/// use cloudsync::{CloudFileCache, State};
///
/// let uri = "file://com.example.notes/data/storage/el2/cloud/report.pdf";
/// let cache = CloudFileCache::new(rt);
/// cache.on("progress", |p| {
///     if p.state == State::Completed {
///         println!("{} is here ({} bytes)", p.uri, p.size);
///     }
/// })?;
/// cache.start(uri).await?;
/// // … later, keeping what arrived so that the next start resumes:
/// cache.stop_with(uri, false).await?;
/// # Ok(()) }
/// ```
pub struct CloudFileCache {
    obj: ObjectHandle,
}

impl CloudFileCache {
    /// `new CloudFileCache()`: never fails (what the engine refuses comes
    /// from the methods).
    pub fn new(rt: &Runtime) -> Self {
        CloudFileCache {
            obj: ObjectHandle::create(rt, ObjectKind::Cache),
        }
    }

    /// Registers `callback` for `event` (only `"progress"`; else 401).
    /// Callbacks run in order on the runtime's event thread.
    pub fn on(
        &self,
        event: &str,
        callback: impl Fn(DownloadProgress) + Send + Sync + 'static,
    ) -> Result<ListenerId, CloudSyncError> {
        self.obj.on(event, Callback::Download(Arc::new(callback)))
    }

    /// Unregisters `listener`, or every listener of this instance when `None`.
    pub fn off(&self, event: &str, listener: Option<ListenerId>) -> Result<(), CloudSyncError> {
        self.obj.off(event, listener)
    }

    /// Starts downloading `uri`; returns once the download is accepted.
    /// Progress and the outcome arrive as events.
    /// Errors: 401, 13600001, 13900002, 13900025, 14000002.
    pub async fn start(&self, uri: &str) -> Result<(), CloudSyncError> {
        let (id, uri) = (self.obj.id, uri.to_string());
        self.obj
            .rt
            .call(move |d| d.call_cache(id, |c, s, r| c.call_start(s, r, &uri)))
            .await
    }

    /// `stop(uri)`: stops this instance's download of `uri` (a STOPPED
    /// event follows) and deletes its partial data, the seed's default.
    /// Errors: 401, 13600001, 13900002, 14000002.
    pub async fn stop(&self, uri: &str) -> Result<(), CloudSyncError> {
        self.stop_with(uri, true).await
    }

    /// `stop(uri, needClean)`: as [`stop`](Self::stop); with `need_clean`
    /// false the partial data is kept and the next `start` resumes from it.
    pub async fn stop_with(&self, uri: &str, need_clean: bool) -> Result<(), CloudSyncError> {
        let (id, uri) = (self.obj.id, uri.to_string());
        self.obj
            .rt
            .call(move |d| d.call_cache(id, |c, s, r| c.call_stop(s, r, &uri, need_clean)))
            .await
    }

    /// `cleanCache(uri)`: evicts the local copy of a synced file; it stays
    /// listed as cloud-only (`list_files`) and comes back on `start`. A
    /// system API. Errors: 201, 202, 401, 13900002 (no synced copy in the
    /// cloud, or unsynced local changes), 13600001 (being written, its
    /// folder syncing, the cloud or the records unreachable), 14000002.
    pub fn clean_cache(&self, uri: &str) -> Result<(), CloudSyncError> {
        let (id, uri) = (self.obj.id, uri.to_string());
        self.obj
            .rt
            .call_blocking(move |d| d.call_cache(id, |c, s, r| c.call_clean_cache(s, r, &uri)))
    }
}
