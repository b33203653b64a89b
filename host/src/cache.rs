//! `CloudFileCache`: download an app's cloud files into its local folder.

use std::sync::Arc;

use crate::api::{CloudSyncError, DownloadProgress, ListenerId};
use crate::runtime::{Callback, ObjectHandle, ObjectKind, Runtime};

/// Downloads the caller's cloud files (seed: `CloudFileCache`). Instances
/// share nothing: events reach only the listeners of the instance whose
/// download they are about. Dropping it stops its downloads and deletes
/// their partial data.
pub struct CloudFileCache {
    obj: ObjectHandle,
}

impl CloudFileCache {
    pub async fn new(rt: &Runtime) -> Result<Self, CloudSyncError> {
        let obj = ObjectHandle::create(rt, ObjectKind::Cache).await?;
        Ok(CloudFileCache { obj })
    }

    /// Registers `callback` for `event` (only `"progress"`; else 401).
    /// Callbacks run in order on the runtime's event thread.
    pub async fn on(
        &self,
        event: &str,
        callback: impl Fn(DownloadProgress) + Send + Sync + 'static,
    ) -> Result<ListenerId, CloudSyncError> {
        self.obj.on(event, Callback::Download(Arc::new(callback))).await
    }

    /// Unregisters `listener`, or every listener of this instance when `None`.
    pub async fn off(&self, event: &str, listener: Option<ListenerId>) -> Result<(), CloudSyncError> {
        self.obj.off(event, listener).await
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

    /// Stops this instance's download of `uri` (a STOPPED event follows).
    /// `need_clean` deletes the partial data (the seed's default); with
    /// `false` it is kept and the next `start` resumes from it.
    /// Errors: 401, 13600001, 13900002, 14000002.
    pub async fn stop(&self, uri: &str, need_clean: bool) -> Result<(), CloudSyncError> {
        let (id, uri) = (self.obj.id, uri.to_string());
        self.obj
            .rt
            .call(move |d| d.call_cache(id, |c, s, r| c.call_stop(s, r, &uri, need_clean)))
            .await
    }

    /// `cleanCache(uri)`: evicts the local copy of a synced file; it stays
    /// listed as cloud-only (`list_files`) and comes back on `start`. A
    /// system API. Errors: 201, 202, 401, 13900002 (no synced copy in the
    /// cloud, or unsynced local changes), 13900010 (being written), 14000002.
    pub async fn clean_cache(&self, uri: &str) -> Result<(), CloudSyncError> {
        let (id, uri) = (self.obj.id, uri.to_string());
        self.obj
            .rt
            .call(move |d| d.call_cache(id, |c, s, r| c.call_clean_cache(s, r, &uri)))
            .await
    }
}
