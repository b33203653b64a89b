//! `FileSync`, `GallerySync` and `getFileSyncState`: two-way sync of an
//! app's cloud folder or of the gallery, and per-file states.

use std::sync::Arc;

use crate::api::{CloudSyncError, Confirm, FileNote, FileSyncState, ListenerId, SyncProgress, SyncReport};
use crate::runtime::bindings::exports::ohos::cloudsync::sync as wit;
use crate::runtime::bindings::ohos::cloudsync::types;
use crate::runtime::{guest_error, sync_progress, Callback, ObjectHandle, ObjectKind, Runtime};

/// What `FileSync` and `GallerySync` share: the engine's `sync-object`,
/// whose runs sync one bundle's folder (only how it is made differs).
struct SyncObject {
    obj: ObjectHandle,
}

/// Calls one method on the object's resource.
macro_rules! call {
    ($self:ident, |$r:ident, $s:ident| $method:ident ( $($arg:expr),* )) => {{
        let id = $self.obj.id;
        $self.obj.rt.call(move |d| d.call_sync(id, |o, $s, $r| o.$method($s, $r $(, $arg)*))).await
    }};
}

impl SyncObject {
    fn new(rt: &Runtime, kind: ObjectKind) -> Self {
        SyncObject {
            obj: ObjectHandle::create(rt, kind),
        }
    }

    fn on(
        &self,
        event: &str,
        callback: impl Fn(SyncProgress) + Send + Sync + 'static,
    ) -> Result<ListenerId, CloudSyncError> {
        self.obj.on(event, Callback::Sync(Arc::new(callback)))
    }

    fn off(&self, event: &str, listener: Option<ListenerId>) -> Result<(), CloudSyncError> {
        self.obj.off(event, listener)
    }

    async fn start(&self, c: Confirm) -> Result<(), CloudSyncError> {
        let confirm = confirmation(c);
        call!(self, |r, s| call_start(confirm))
    }

    async fn plan(&self, c: Confirm) -> Result<(), CloudSyncError> {
        let confirm = confirmation(c);
        call!(self, |r, s| call_plan(confirm))
    }

    async fn stop(&self) -> Result<(), CloudSyncError> {
        call!(self, |r, s| call_stop())
    }

    async fn report(&self) -> Result<SyncReport, CloudSyncError> {
        let r: wit::SyncReport = call!(self, |r, s| call_report())?;
        Ok(SyncReport {
            running: r.running,
            planned: r.planned,
            done: r.done,
            uploaded: r.uploaded,
            downloaded: r.downloaded,
            deleted_local: r.deleted_local,
            deleted_remote: r.deleted_remote,
            conflicts: r.conflicts,
            failed: r.failed,
            bytes_uploaded: r.bytes_uploaded,
            bytes_downloaded: r.bytes_downloaded,
            refusal: r.refusal,
            last_error: r.last_error,
            skipped: notes(r.skipped),
            skipped_total: r.skipped_total,
            failures: notes(r.failures),
            notes: r.notes,
            last: r.last.map(sync_progress),
            ended_ms: r.ended_ms,
        })
    }
}

fn confirmation(c: Confirm) -> wit::Confirmation {
    wit::Confirmation {
        deletions: c.deletions,
        empty_device: c.empty_device,
        empty_cloud: c.empty_cloud,
    }
}

pub(crate) fn notes(list: Vec<types::FileNote>) -> Vec<FileNote> {
    list.into_iter()
        .map(|n| FileNote {
            path: n.path,
            reason: n.reason,
        })
        .collect()
}

/// Two-way sync of an app's cloud folder (seed: `FileSync`). A run pulls
/// (cloud → device) first, then pushes; progress arrives as `SyncProgress`
/// events. Every `FileSync` of one bundle sees the same runs.
///
/// ```no_run
/// # async fn demo(rt: &cloudsync::Runtime) -> Result<(), cloudsync::CloudSyncError> {
/// use cloudsync::{FileSync, SyncState};
///
/// let sync = FileSync::new(rt);
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// sync.on("progress", move |p| {
///     let _ = tx.send(p);
/// })?;
/// sync.start().await?;
/// while let Some(p) = rx.recv().await {
///     if p.is_terminal() {
///         assert_eq!(p.state, SyncState::Completed);
///         break;
///     }
/// }
/// println!("last synced at {} ms", sync.get_last_sync_time().await?);
/// # Ok(()) }
/// ```
pub struct FileSync(SyncObject);

impl FileSync {
    /// `new FileSync()`: the caller's own folder; no permission needed.
    pub fn new(rt: &Runtime) -> Self {
        FileSync(SyncObject::new(rt, ObjectKind::FileSync(None)))
    }

    /// `new FileSync(bundleName)`, a system API: 401 here (an empty or
    /// invalid name); what the engine refuses, 201 (no CLOUDFILE_SYNC, or
    /// another bundle without CLOUDFILE_SYNC_MANAGER) and 202 (not a system
    /// app), from the methods.
    pub fn for_bundle(rt: &Runtime, bundle_name: &str) -> Result<Self, CloudSyncError> {
        if bundle_name.is_empty() {
            return Err(CloudSyncError::new(
                crate::codes::INVALID_PARAMETER,
                "bundleName must not be empty",
            ));
        }
        if !cloudsync_contract::is_bundle_name(bundle_name) || bundle_name == cloudsync_contract::GALLERY_BUNDLE {
            return Err(CloudSyncError::new(
                crate::codes::INVALID_PARAMETER,
                format!("{bundle_name:?} is not a bundle name"),
            ));
        }
        Ok(FileSync(SyncObject::new(
            rt,
            ObjectKind::FileSync(Some(bundle_name.to_string())),
        )))
    }

    /// Registers `callback` for `event` (only `"progress"`; else 401). While
    /// a run is going, it receives the current state at once.
    pub fn on(
        &self,
        event: &str,
        callback: impl Fn(SyncProgress) + Send + Sync + 'static,
    ) -> Result<ListenerId, CloudSyncError> {
        self.0.on(event, callback)
    }

    /// Unregisters `listener`, or every listener of this object when `None`.
    pub fn off(&self, event: &str, listener: Option<ListenerId>) -> Result<(), CloudSyncError> {
        self.0.off(event, listener)
    }

    /// Starts a run; while one runs, queues one more.
    /// Errors: 22400001 (cloud not ready), 22400002 (no network), 22400003 (battery low).
    pub async fn start(&self) -> Result<(), CloudSyncError> {
        self.0.start(Confirm::default()).await
    }

    /// Starts a run that carries out what the user confirmed of what a guard
    /// held back (see [`Confirm`]): deletions beyond the guard's share, or
    /// emptying one side because the other is empty.
    pub async fn start_with(&self, confirm: Confirm) -> Result<(), CloudSyncError> {
        self.0.start(confirm).await
    }

    /// [`start_with`](Self::start_with) confirming deletions only.
    pub async fn start_confirmed(&self) -> Result<(), CloudSyncError> {
        self.0
            .start(Confirm {
                deletions: true,
                ..Confirm::default()
            })
            .await
    }

    /// A dry run (not the seed's): plans as [`start_with`](Self::start_with)
    /// would, sends each step to [`Runtime::on_decision`]'s callbacks and
    /// ends as a run does (COMPLETED; STOPPED when a guard refuses),
    /// changing nothing on either side. 22400006 while a run is going.
    pub async fn plan(&self, confirm: Confirm) -> Result<(), CloudSyncError> {
        self.0.plan(confirm).await
    }

    /// Stops the run (STOPPED follows); the next `start` resumes.
    pub async fn stop(&self) -> Result<(), CloudSyncError> {
        self.0.stop().await
    }

    /// Epoch ms of the last run that ended COMPLETED with NO_ERROR; 0 if never.
    pub async fn get_last_sync_time(&self) -> Result<u64, CloudSyncError> {
        let this = &self.0;
        call!(this, |r, s| call_get_last_sync_time())
    }

    /// What the running (or last) run did: counts, refusal, last failure.
    pub async fn report(&self) -> Result<SyncReport, CloudSyncError> {
        self.0.report().await
    }
}

/// Two-way sync of the gallery (seed: `GallerySync`), a system API: items
/// are `file://media/Photo/<id>/<displayName>`, cloud-only ones shown by
/// thumbnails. Its methods fail with 201 (no CLOUDFILE_SYNC) and 202 (not
/// a system app).
///
/// ```no_run
/// # async fn demo(rt: &cloudsync::Runtime) -> Result<(), cloudsync::CloudSyncError> {
/// let gallery = cloudsync::GallerySync::new(rt);
/// gallery.on("progress", |p| println!("{:?} {:?}", p.state, p.error))?;
/// gallery.start().await?;
/// # Ok(()) }
/// ```
pub struct GallerySync(SyncObject);

impl GallerySync {
    /// `new GallerySync()`: never fails.
    pub fn new(rt: &Runtime) -> Self {
        GallerySync(SyncObject::new(rt, ObjectKind::GallerySync))
    }

    /// As [`FileSync::on`].
    pub fn on(
        &self,
        event: &str,
        callback: impl Fn(SyncProgress) + Send + Sync + 'static,
    ) -> Result<ListenerId, CloudSyncError> {
        self.0.on(event, callback)
    }

    /// As [`FileSync::off`].
    pub fn off(&self, event: &str, listener: Option<ListenerId>) -> Result<(), CloudSyncError> {
        self.0.off(event, listener)
    }

    /// As [`FileSync::start`].
    pub async fn start(&self) -> Result<(), CloudSyncError> {
        self.0.start(Confirm::default()).await
    }

    /// As [`FileSync::start_with`].
    pub async fn start_with(&self, confirm: Confirm) -> Result<(), CloudSyncError> {
        self.0.start(confirm).await
    }

    /// As [`FileSync::start_confirmed`]: deletions only.
    pub async fn start_confirmed(&self) -> Result<(), CloudSyncError> {
        self.0
            .start(Confirm {
                deletions: true,
                ..Confirm::default()
            })
            .await
    }

    /// As [`FileSync::plan`].
    pub async fn plan(&self, confirm: Confirm) -> Result<(), CloudSyncError> {
        self.0.plan(confirm).await
    }

    /// As [`FileSync::stop`].
    pub async fn stop(&self) -> Result<(), CloudSyncError> {
        self.0.stop().await
    }

    /// As [`FileSync::report`].
    pub async fn report(&self) -> Result<SyncReport, CloudSyncError> {
        self.0.report().await
    }
}

/// `getFileSyncState(uris)`: the states of at most 100 files (else 401); a
/// system API (201, 202); one bad URI fails the call (14000002, 13900002).
pub async fn get_file_sync_states(rt: &Runtime, uris: &[&str]) -> Result<Vec<FileSyncState>, CloudSyncError> {
    let uris: Vec<String> = uris.iter().map(|u| u.to_string()).collect();
    let states = rt
        .call(move |d| {
            d.call(|b, s| b.ohos_cloudsync_sync().call_get_file_sync_states(s, &uris))?
                .map_err(guest_error)
        })
        .await?;
    Ok(states.into_iter().map(file_sync_state).collect())
}

/// `getFileSyncState(uri)`, synchronous as the seed's: one file's state;
/// file-system errors map to 13900002 / 13900004 / 13900010 / 13900012 /
/// 13900031 / 13900042.
pub fn get_file_sync_state(rt: &Runtime, uri: &str) -> Result<FileSyncState, CloudSyncError> {
    let uri = uri.to_string();
    let state = rt
        .call_blocking(move |d| {
            d.call(|b, s| b.ohos_cloudsync_sync().call_get_file_sync_state(s, &uri))?
                .map_err(guest_error)
        })
        // The synchronous form lists no 13600001: a trap is 13900042 here.
        .map_err(|e| e.for_method(cloudsync_contract::listed::Method::FileSyncState))?;
    Ok(file_sync_state(state))
}

pub(crate) fn file_sync_state(s: types::FileSyncState) -> FileSyncState {
    match s {
        types::FileSyncState::Uploading => FileSyncState::Uploading,
        types::FileSyncState::Downloading => FileSyncState::Downloading,
        types::FileSyncState::Completed => FileSyncState::Completed,
        types::FileSyncState::Stopped => FileSyncState::Stopped,
        types::FileSyncState::ToBeUploaded => FileSyncState::ToBeUploaded,
        types::FileSyncState::UploadSuccess => FileSyncState::UploadSuccess,
        types::FileSyncState::UploadFailure => FileSyncState::UploadFailure,
    }
}
