//! Files on demand: `Download` (originals of gallery photos),
//! `startOptimizeSpace` / `stopOptimizeSpace` / `optimizeStorage`, and the
//! list of the files the device knows. `CloudFileCache::clean_cache` is in
//! cache.rs.

use std::sync::Arc;

use crate::api::{
    CloudSyncError, DownloadProgress, FileEntry, FileListing, ListenerId, OptimizeSpaceParam, OptimizeSpaceProgress,
};
use crate::runtime::bindings::ohos::cloudsync::types;
use crate::runtime::{guest_error, Callback, ObjectHandle, ObjectKind, OptimizeEvent, Runtime};
use cloudsync_contract::listed::Method;

/// Downloads the original of a cloud-only gallery photo
/// (`file://media/Photo/<id>/<name>`); a system API (201, 202). Events are
/// `DownloadProgress`, as for `CloudFileCache`; `stop` always deletes the
/// partial file.
///
/// ```no_run
/// # async fn demo(rt: &cloudsync::Runtime) -> Result<(), cloudsync::CloudSyncError> {
/// let download = cloudsync::Download::new(rt);
/// download.on("progress", |p| println!("{:?} {}/{}", p.state, p.processed, p.size))?;
/// download.start("file://media/Photo/1/IMG_0001.jpg").await?;
/// # Ok(()) }
/// ```
pub struct Download {
    obj: ObjectHandle,
}

impl Download {
    /// `new Download()`: never fails; 201 and 202 come from the methods.
    pub fn new(rt: &Runtime) -> Self {
        Download {
            obj: ObjectHandle::create(rt, ObjectKind::Download),
        }
    }

    /// Registers `callback` for `event` (only `"progress"`; else 401); 201, 202.
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

    /// Errors: 401, 13600001, 13900002, 13900025, 14000002.
    pub async fn start(&self, uri: &str) -> Result<(), CloudSyncError> {
        let (id, uri) = (self.obj.id, uri.to_string());
        self.obj
            .rt
            .call(move |d| d.call_download(id, |g, s, r| g.call_start(s, r, &uri)))
            .await
    }

    /// Stops the download of `uri` (STOPPED follows); the partial file is deleted.
    pub async fn stop(&self, uri: &str) -> Result<(), CloudSyncError> {
        let (id, uri) = (self.obj.id, uri.to_string());
        self.obj
            .rt
            .call(move |d| d.call_download(id, |g, s, r| g.call_stop(s, r, &uri)))
            .await
    }
}

/// `startOptimizeSpace(param, callback)`: evicts synced, unmodified files
/// of the caller and the gallery not accessed for `aging_days`, least
/// recently accessed first, until `total_size` bytes are freed. Without a
/// callback: 401 and nothing runs; while one runs: 22400006; 201, 202.
/// RUNNING events carry the percentage, then one COMPLETED (100) / FAILED /
/// STOPPED.
pub async fn start_optimize_space(
    rt: &Runtime,
    param: OptimizeSpaceParam,
    callback: Option<impl Fn(OptimizeSpaceProgress) + Send + Sync + 'static>,
) -> Result<(), CloudSyncError> {
    let listener = callback.map(|cb| {
        rt.listeners().add(Callback::Optimize(Arc::new(move |e| {
            // The seed's callback hears progress only (failures are logged).
            if let OptimizeEvent::Progress(p) = e {
                cb(p)
            }
        })))
    });
    let wit_param = types::OptimizeSpaceParam {
        total_size: param.total_size,
        aging_days: param.aging_days,
    };
    let result = rt
        .call(move |d| {
            d.call(|b, s| {
                b.ohos_cloudsync_on_demand()
                    .call_start_optimize_space(s, wit_param, listener)
            })?
            .map_err(guest_error)
        })
        .await;
    if result.is_err() {
        if let Some(l) = listener {
            rt.listeners().remove(&[l]);
        }
    }
    result
}

/// `stopOptimizeSpace()`: the running `startOptimizeSpace` task ends with
/// STOPPED (an `optimizeStorage` pass runs on: its caller awaits it).
pub fn stop_optimize_space(rt: &Runtime) -> Result<(), CloudSyncError> {
    rt.call_blocking(|d| {
        d.call(|b, s| b.ohos_cloudsync_on_demand().call_stop_optimize_space(s))?
            .map_err(guest_error)
    })
}

/// `optimizeStorage()`: one pass of the engine's aging policy (files not
/// used for 30 days; when less than 2 GiB is then left, files not used for
/// a day, least recently used first, until 2 GiB is free); returns when it
/// is done. While a `startOptimizeSpace` task runs, the pass waits for it.
/// Errors: 201, 202, 13600001 (the service, the cloud or the records
/// failed), 13900042 (the file system failed).
pub async fn optimize_storage(rt: &Runtime) -> Result<(), CloudSyncError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = rt.listeners().add(Callback::Optimize(Arc::new(move |e| {
        let _ = tx.send(e);
    })));
    let started = rt
        .call(move |d| {
            d.call(|b, s| b.ohos_cloudsync_on_demand().call_optimize_storage(s, listener))?
                .map_err(guest_error)
        })
        .await;
    let result = match started {
        Err(e) => Err(e),
        Ok(()) => {
            let mut failure = None;
            loop {
                match rx.recv().await {
                    Some(OptimizeEvent::Failure(e)) => failure = Some(e),
                    Some(OptimizeEvent::Progress(p)) if !p.is_terminal() => {}
                    Some(OptimizeEvent::Progress(p)) => {
                        break match p.state {
                            crate::api::OptimizeState::Completed => Ok(()),
                            other => Err(failure.unwrap_or_else(|| {
                                CloudSyncError::service(format!("the optimisation ended {}", other.name()))
                            })),
                        }
                    }
                    None => break Err(CloudSyncError::service("the engine stopped sending events")),
                }
            }
        }
    };
    rt.listeners().remove(&[listener]);
    result.map_err(|e| e.for_method(Method::OptimizeStorage))
}

/// Every file of the caller's folder (or the gallery's) the device knows,
/// local or cloud-only, with size, state and last access. A system API.
/// The names in its folder that are not synced come too, with why. (It
/// holds them all: [`list_files_page`] reads a folder of any size.)
pub async fn list_files(rt: &Runtime, gallery: bool) -> Result<FileListing, CloudSyncError> {
    let mut all = FileListing::default();
    let mut after = None;
    loop {
        let page = list_files_page(rt, gallery, after, 1024).await?;
        all.files.extend(page.files);
        all.skipped.extend(page.skipped);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(all),
        }
    }
}

/// A page of [`list_files`] in path order: about `max` paths after
/// `after`; its `next` is where the next page goes on (`None`: the end).
pub async fn list_files_page(
    rt: &Runtime,
    gallery: bool,
    after: Option<String>,
    max: u32,
) -> Result<FileListing, CloudSyncError> {
    let listing = rt
        .call(move |d| {
            d.call(|b, s| {
                b.ohos_cloudsync_on_demand()
                    .call_list_files(s, gallery, after.as_deref(), max)
            })?
            .map_err(guest_error)
        })
        .await?;
    Ok(FileListing {
        files: listing
            .files
            .into_iter()
            .map(|f| FileEntry {
                uri: f.uri,
                size: f.size,
                cloud_only: f.cloud_only,
                state: crate::sync::file_sync_state(f.state),
                last_access_ms: f.last_access_ms,
            })
            .collect(),
        skipped: crate::sync::notes(listing.skipped),
        next: listing.next,
    })
}
