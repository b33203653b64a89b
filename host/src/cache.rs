//! `CloudFileCache`: download an app's cloud files into its local folder.

use std::sync::Arc;

use crate::api::{CloudSyncError, DownloadProgress, ListenerId};
use crate::runtime::{Callback, ObjectId, ObjectKind, Runtime};

/// Downloads the caller's cloud files (seed: `CloudFileCache`). Instances
/// share nothing: events reach only the listeners of the instance whose
/// download they are about. Dropping it stops its downloads and deletes
/// their partial data.
pub struct CloudFileCache {
    rt: Runtime,
    id: ObjectId,
}

impl CloudFileCache {
    pub async fn new(rt: &Runtime) -> Result<Self, CloudSyncError> {
        let id = rt.next_object_id();
        rt.call(move |d| d.create_object(id, ObjectKind::Cache)).await?;
        Ok(CloudFileCache { rt: rt.clone(), id })
    }

    /// Registers `callback` for `event` (only `"progress"`; else 401).
    /// Callbacks run in order on the runtime's event thread.
    pub async fn on(
        &self,
        event: &str,
        callback: impl Fn(DownloadProgress) + Send + Sync + 'static,
    ) -> Result<ListenerId, CloudSyncError> {
        let listener = self.rt.listeners().add(Callback::Download(Arc::new(callback)));
        let (id, event) = (self.id, event.to_string());
        let result = self
            .rt
            .call(move |d| {
                d.call_cache(id, |c, s, r| c.call_on(s, r, &event, listener))?;
                d.add_listener(id, listener);
                Ok(())
            })
            .await;
        if result.is_err() {
            self.rt.listeners().remove(&[listener]);
        }
        result.map(|()| listener)
    }

    /// Unregisters `listener`, or every listener of this instance when `None`.
    pub async fn off(&self, event: &str, listener: Option<ListenerId>) -> Result<(), CloudSyncError> {
        let (id, event) = (self.id, event.to_string());
        let removed = self
            .rt
            .call(move |d| {
                d.call_cache(id, |c, s, r| c.call_off(s, r, &event, listener))?;
                Ok(d.remove_listeners(id, listener))
            })
            .await?;
        self.rt.listeners().remove(&removed);
        Ok(())
    }

    /// Starts downloading `uri`; returns once the download is accepted.
    /// Progress and the outcome arrive as events.
    /// Errors: 401, 13600001, 13900002, 13900025, 14000002.
    pub async fn start(&self, uri: &str) -> Result<(), CloudSyncError> {
        let (id, uri) = (self.id, uri.to_string());
        self.rt
            .call(move |d| d.call_cache(id, |c, s, r| c.call_start(s, r, &uri)))
            .await
    }

    /// Stops this instance's download of `uri` (a STOPPED event follows).
    /// `need_clean` deletes the partial data (the seed's default); with
    /// `false` it is kept and the next `start` resumes from it.
    /// Errors: 401, 13600001, 13900002, 14000002.
    pub async fn stop(&self, uri: &str, need_clean: bool) -> Result<(), CloudSyncError> {
        let (id, uri) = (self.id, uri.to_string());
        self.rt
            .call(move |d| d.call_cache(id, |c, s, r| c.call_stop(s, r, &uri, need_clean)))
            .await
    }
}

impl CloudFileCache {
    /// `cleanCache(uri)`: evicts the local copy of a synced file; it stays
    /// listed as cloud-only (`list_files`) and comes back on `start`. A
    /// system API. Errors: 201, 202, 401, 13900002 (no synced copy in the
    /// cloud, or unsynced local changes), 13900010 (being written), 14000002.
    pub async fn clean_cache(&self, uri: &str) -> Result<(), CloudSyncError> {
        let (id, uri) = (self.id, uri.to_string());
        self.rt
            .call(move |d| d.call_cache(id, |c, s, r| c.call_clean_cache(s, r, &uri)))
            .await
    }
}

impl Drop for CloudFileCache {
    fn drop(&mut self) {
        let id = self.id;
        let rt = self.rt.clone();
        let _ = self.rt.send(move |d| {
            let listeners = d.drop_object(id);
            rt.listeners().remove(&listeners);
        });
    }
}
