//! Two-way sync (`FileSync`, `GallerySync`) and per-file states
//! (`getFileSyncState`), in the manner of Dropbox's Nucleus: three trees
//! (local, remote, synced), a pure planner ([`planner`]), and an executor
//! ([`run`]) that applies the plan in batches and records every step.
//!
//! One run at a time per bundle; every `FileSync`/`GallerySync` object of
//! that bundle sees its events.

pub mod planner;
mod run;
mod scan;

pub(crate) use scan::racily_clean;

pub use planner::Confirm;
pub use run::MAX_LISTED;

use std::collections::{BTreeMap, BTreeSet};

use run::{Run, Step};

use super::access::{check_event, check_system_api, CLOUDFILE_SYNC_MANAGER};
use super::records::{self, FileStateRecord, LocalStamp, SyncedRecord, FILE_STATE, RUN, SYNCED};
use super::recovery::recover_bundle;
use super::uri::{is_bundle_name, parse_uri_for, GALLERY_BUNDLE};
use super::{
    codes, ApiError, AppFile, CloudErrorKind, FileSyncState, IoErrorKind, ListenerId, Platform, SyncProgress, Tick,
};

/// `getFileSyncState` takes at most this many URIs.
pub const MAX_STATE_URIS: usize = 100;

pub type SyncId = u64;

/// What a run did (or is doing), for people: the command line's summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Report {
    pub running: bool,
    pub planned: u64,
    pub done: u64,
    pub uploaded: u64,
    pub downloaded: u64,
    pub deleted_local: u64,
    pub deleted_remote: u64,
    pub conflicts: u64,
    pub failed: u64,
    pub bytes_uploaded: u64,
    pub bytes_downloaded: u64,
    /// Why the run refused to apply its plan (a guard tripped).
    pub refusal: Option<String>,
    /// The last failure, in the words of whoever failed.
    pub last_error: Option<String>,
    /// The last event sent.
    pub last: Option<SyncProgress>,
    /// Names not synced, and why (at most [`run::MAX_LISTED`]).
    pub skipped: Vec<(String, String)>,
    pub skipped_total: u64,
    /// Files that failed, and why (at most [`run::MAX_LISTED`]; `failed` counts them all).
    pub failures: Vec<(String, String)>,
    /// Things about the run a person should know (records set aside, ...).
    pub notes: Vec<String>,
    /// When the run ended (epoch ms; 0 while it runs).
    pub ended_ms: u64,
}

impl Report {
    /// What `run/<bundle>/last-run` keeps of an ended run, for `status` in
    /// a later process: the counts and reasons, not the lists.
    fn recorded(&self) -> Report {
        Report {
            running: false,
            skipped: Vec::new(),
            failures: Vec::new(),
            notes: Vec::new(),
            ..self.clone()
        }
    }
}

struct SyncObject {
    bundle: String,
    listeners: Vec<ListenerId>,
}

/// Every FileSync / GallerySync object and the runs they started.
#[derive(Default)]
pub struct Syncs {
    objects: BTreeMap<SyncId, SyncObject>,
    next: SyncId,
    runs: BTreeMap<String, Run>,
    reports: BTreeMap<String, Report>,
    recovered: BTreeSet<String>,
    /// Paths a scan merges per tick (`None`: the engine's own slice).
    pub scan_slice: Option<usize>,
}

impl Syncs {
    /// `FileSync()` (own bundle, no permission) or `FileSync(bundleName)`
    /// (system API: 201, then 202; another bundle needs CLOUDFILE_SYNC_MANAGER).
    pub fn create_file_sync(&mut self, p: &impl Platform, bundle: Option<&str>) -> Result<SyncId, ApiError> {
        let caller = p.caller_bundle();
        let bundle = match bundle {
            None => caller,
            Some(b) => {
                if b.is_empty() {
                    return Err(ApiError::invalid_parameter("bundleName must not be empty"));
                }
                if !is_bundle_name(b) || b == GALLERY_BUNDLE {
                    return Err(ApiError::invalid_parameter(format!("{b:?} is not a bundle name")));
                }
                check_system_api(p, b != caller)?;
                b.to_string()
            }
        };
        Ok(self.add(bundle))
    }

    /// `GallerySync()`: system API (201, then 202).
    pub fn create_gallery_sync(&mut self, p: &impl Platform) -> Result<SyncId, ApiError> {
        check_system_api(p, false)?;
        Ok(self.add(GALLERY_BUNDLE.to_string()))
    }

    fn add(&mut self, bundle: String) -> SyncId {
        self.next += 1;
        self.objects.insert(
            self.next,
            SyncObject {
                bundle,
                listeners: Vec::new(),
            },
        );
        self.next
    }

    /// The object is gone; its bundle's run, if any, goes on.
    pub fn drop_object(&mut self, id: SyncId) {
        self.objects.remove(&id);
    }

    fn object(&mut self, id: SyncId) -> Result<&mut SyncObject, ApiError> {
        self.objects
            .get_mut(&id)
            .ok_or_else(|| ApiError::service("this sync object no longer exists"))
    }

    /// Registers `listener`; while a run is going it gets the current state at once.
    pub fn on(&mut self, p: &impl Platform, id: SyncId, event: &str, listener: ListenerId) -> Result<(), ApiError> {
        check_event(event)?;
        let obj = self.object(id)?;
        if !obj.listeners.contains(&listener) {
            obj.listeners.push(listener);
        }
        let bundle = obj.bundle.clone();
        if let Some(run) = self.runs.get(&bundle) {
            p.emit_sync(listener, run.current);
        }
        Ok(())
    }

    pub fn off(&mut self, id: SyncId, event: &str, listener: Option<ListenerId>) -> Result<(), ApiError> {
        check_event(event)?;
        let obj = self.object(id)?;
        match listener {
            Some(l) => obj.listeners.retain(|x| *x != l),
            None => obj.listeners.clear(),
        }
        Ok(())
    }

    /// Starts a run, after the device checks: no network → 22400002, cloud
    /// not ready → 22400001, battery under 10 % and not charging → 22400003.
    /// While a run is going, one more is queued. `confirm`: what the user
    /// confirmed of what a guard would refuse.
    pub fn start(&mut self, p: &impl Platform, id: SyncId, confirm: impl Into<Confirm>) -> Result<(), ApiError> {
        let confirm = confirm.into();
        let bundle = self.object(id)?.bundle.clone();
        preconditions(p, &bundle)?;
        // (A real run of the bundle was started here, so it is recovered
        // already; a dry run leaves what a crash left alone.)
        if self.recovered.insert(bundle.clone()) && bundle != p.caller_bundle() {
            // The caller's own bundle is recovered at init; another's the
            // first time this instance syncs it.
            recover_bundle(p, &bundle)?;
        }
        if let Some(run) = self.runs.get_mut(&bundle) {
            run.again = true;
            let a = &mut run.again_confirm;
            a.deletions |= confirm.deletions;
            a.empty_local |= confirm.empty_local;
            a.empty_cloud |= confirm.empty_cloud;
            return Ok(());
        }
        self.begin(p, &bundle, confirm, false);
        Ok(())
    }

    /// A dry run: plans as `start` would and sends each step as a decision,
    /// changing nothing (a crash's leftovers are left for a real run too).
    /// While a run of the bundle is going: 22400006.
    pub fn plan(&mut self, p: &impl Platform, id: SyncId, confirm: impl Into<Confirm>) -> Result<(), ApiError> {
        let bundle = self.object(id)?.bundle.clone();
        preconditions(p, &bundle)?;
        if self.runs.contains_key(&bundle) {
            return Err(ApiError::new(
                codes::ALREADY_RUNNING,
                format!("a sync of {bundle} is running: plan when it has ended"),
            ));
        }
        self.begin(p, &bundle, confirm.into(), true);
        Ok(())
    }

    /// A new run: pulling starts (the scan is its first step), so
    /// `{DOWNLOADING}` goes out now.
    fn begin(&mut self, p: &impl Platform, bundle: &str, confirm: Confirm, dry_run: bool) {
        let mut run = Run::new(bundle, confirm);
        run.dry_run = dry_run;
        if let Some(n) = self.scan_slice {
            run.scan_slice = n;
        }
        let mut out = Vec::new();
        run.announce(&mut out);
        self.runs.insert(bundle.to_string(), run);
        self.reports.remove(bundle);
        self.emit(p, bundle, &out);
    }

    /// Stops the bundle's run (STOPPED follows); nothing running is not an error.
    pub fn stop(&mut self, p: &impl Platform, id: SyncId) -> Result<(), ApiError> {
        let bundle = self.object(id)?.bundle.clone();
        if let Some(mut run) = self.runs.remove(&bundle) {
            let mut out = Vec::new();
            run.stop(p, &mut out);
            self.emit(p, &bundle, &out);
            self.ended(p, &bundle, run, Vec::new());
        }
        Ok(())
    }

    /// Epoch ms of the bundle's last run that completed with no error; 0 if never.
    pub fn last_sync_time(&mut self, p: &impl Platform, id: SyncId) -> Result<u64, ApiError> {
        let bundle = self.object(id)?.bundle.clone();
        let key = format!("{RUN}/{bundle}/last-sync");
        Ok(records::get::<u64>(p, &key).map_err(internal)?.unwrap_or(0))
    }

    /// The running (or last) run's counts: a run of this instance, else
    /// the last one recorded (its lists are not kept).
    pub fn report(&mut self, p: &impl Platform, id: SyncId) -> Result<Report, ApiError> {
        let bundle = self.object(id)?.bundle.clone();
        if let Some(run) = self.runs.get(&bundle) {
            return Ok(run.report.clone());
        }
        if let Some(r) = self.reports.get(&bundle) {
            return Ok(r.clone());
        }
        let key = format!("{RUN}/{bundle}/last-run");
        Ok(records::get::<Report>(p, &key).map_err(internal)?.unwrap_or_default())
    }

    /// A run ended: its report is kept (and, but for a dry run's, recorded
    /// with `more` in one commit).
    fn ended(&mut self, p: &impl Platform, bundle: &str, mut run: Run, mut more: Vec<(String, Option<Vec<u8>>)>) {
        run.report.ended_ms = p.now_ms();
        if !run.dry_run {
            let key = format!("{RUN}/{bundle}/last-run");
            more.push((key, Some(records::encode(&run.report.recorded()))));
        }
        if !more.is_empty() {
            if let Err(e) = p.meta_commit(more) {
                run.report
                    .notes
                    .push(format!("the run's result could not be recorded: {e}"));
            }
        }
        self.reports.insert(bundle.to_string(), run.report);
    }

    /// `getFileSyncState(uris)`: at most 100 (else 401); 201, then 202; one
    /// bad URI fails the whole call.
    pub fn file_sync_states(
        &self,
        p: &impl Platform,
        uris: &[String],
        downloading: impl Fn(&AppFile) -> bool,
    ) -> Result<Vec<FileSyncState>, ApiError> {
        if uris.is_empty() || uris.len() > MAX_STATE_URIS {
            return Err(ApiError::invalid_parameter(format!(
                "between 1 and {MAX_STATE_URIS} URIs, not {}",
                uris.len()
            )));
        }
        if uris.iter().any(String::is_empty) {
            return Err(ApiError::invalid_parameter("a URI must not be empty"));
        }
        check_system_api(p, false)?;
        let files = uris.iter().map(|u| self.parse(p, u)).collect::<Result<Vec<_>, _>>()?;
        files.iter().map(|f| self.state_of(p, f, &downloading)).collect()
    }

    /// `getFileSyncState(uri)`: as the batch form, for one file.
    /// `downloading`: whether a `CloudFileCache` or `Download` fetches it now.
    pub fn file_sync_state(
        &self,
        p: &impl Platform,
        uri: &str,
        downloading: impl Fn(&AppFile) -> bool,
    ) -> Result<FileSyncState, ApiError> {
        if uri.is_empty() {
            return Err(ApiError::invalid_parameter("uri must not be empty"));
        }
        check_system_api(p, false)?;
        let file = self.parse(p, uri)?;
        self.state_of(p, &file, &downloading)
    }

    fn parse(&self, p: &impl Platform, uri: &str) -> Result<AppFile, ApiError> {
        parse_uri_for(uri, &p.caller_bundle(), p.has_permission(CLOUDFILE_SYNC_MANAGER), true)
    }

    /// Whether a run of `bundle` is going (its records are being written).
    pub fn is_running(&self, bundle: &str) -> bool {
        self.runs.contains_key(bundle)
    }

    fn state_of(
        &self,
        p: &impl Platform,
        file: &AppFile,
        downloading: &impl Fn(&AppFile) -> bool,
    ) -> Result<FileSyncState, ApiError> {
        if let Some(state) = self.run_state(&file.bundle, &file.path) {
            return Ok(state);
        }
        // Fetched by a CloudFileCache or Download now (not yet at its name).
        if downloading(file) {
            return Ok(FileSyncState::Downloading);
        }
        let stat = p.stat(&file.bundle, &file.local_path()).map_err(|e| {
            let code = match e.kind {
                IoErrorKind::NotFound => codes::NO_SUCH_FILE,
                IoErrorKind::Interrupted => 13_900_004,
                IoErrorKind::WouldBlock => 13_900_010,
                IoErrorKind::PermissionDenied => 13_900_012,
                IoErrorKind::NotSupported => 13_900_031,
                IoErrorKind::EscapesSandbox => codes::INVALID_URI,
                _ => 13_900_042,
            };
            ApiError::new(code, format!("cannot read the state of {}: {}", file.path, e.message))
        })?;
        let stat = match stat {
            Some(s) if s.is_file() => s,
            Some(s) if !s.is_dir() => {
                return Err(ApiError::new(
                    13_900_042,
                    format!("{} is not a regular file (a symlink or special file)", file.path),
                ))
            }
            Some(_) => {
                return Err(ApiError::new(
                    13_900_042,
                    format!("{} is a directory, not a file", file.path),
                ))
            }
            None => {
                // A cloud-only gallery item is there, as its placeholder.
                let synced = records::get::<SyncedRecord>(p, &records::key(SYNCED, file)).map_err(internal)?;
                if synced.is_some_and(|r| r.cloud_only) {
                    return Ok(FileSyncState::Completed);
                }
                return Err(ApiError::new(
                    codes::NO_SUCH_FILE,
                    format!("{}: no such file", file.path),
                ));
            }
        };
        let filestate = records::get::<FileStateRecord>(p, &records::key(FILE_STATE, file)).map_err(internal)?;
        let synced = records::get::<SyncedRecord>(p, &records::key(SYNCED, file)).map_err(internal)?;
        Ok(stored_state(
            LocalStamp::from(stat),
            synced.as_ref(),
            filestate.as_ref(),
        ))
    }

    /// The state a running sync of `bundle` gives `path`, if any.
    pub(crate) fn run_state(&self, bundle: &str, path: &str) -> Option<FileSyncState> {
        self.runs.get(bundle).and_then(|r| r.files.get(path)).copied()
    }

    /// Advances every run.
    pub fn tick(&mut self, p: &impl Platform) -> Tick {
        let mut result = Tick::Idle;
        let bundles: Vec<String> = self.runs.keys().cloned().collect();
        for bundle in bundles {
            let mut out = Vec::new();
            let step = self.runs.get_mut(&bundle).expect("present").tick(p, &mut out);
            self.emit(p, &bundle, &out);
            match step {
                Step::Busy(Tick::More) => result = Tick::More,
                Step::Busy(_) => {
                    if result == Tick::Idle {
                        result = Tick::Waiting;
                    }
                }
                Step::Finished(terminal) => {
                    let run = self.runs.remove(&bundle).expect("present");
                    let clean = terminal.state == super::SyncState::Completed
                        && terminal.error == super::ErrorType::NoError
                        && run.report.failed == 0
                        && !run.unsettled()
                        && !run.dry_run;
                    let mut more = Vec::new();
                    if clean {
                        let key = format!("{RUN}/{bundle}/last-sync");
                        more.push((key, Some(records::encode(&p.now_ms()))));
                    }
                    let (again, confirmed) = (run.again, run.again_confirm);
                    self.ended(p, &bundle, run, more);
                    // The queued run starts if the device still allows it.
                    if again && preconditions(p, &bundle).is_ok() {
                        self.begin(p, &bundle, confirmed, false);
                        result = Tick::More;
                    }
                }
            }
        }
        result
    }

    fn emit(&self, p: &impl Platform, bundle: &str, events: &[SyncProgress]) {
        for progress in events {
            for obj in self.objects.values().filter(|o| o.bundle == bundle) {
                for l in &obj.listeners {
                    p.emit_sync(*l, *progress);
                }
            }
        }
    }
}

/// A local file's state from its records (no run touching it): a failed or
/// stopped upload while the file is as it was then; else synced and
/// unchanged (after an upload or not); else to be uploaded.
pub(crate) fn stored_state(
    stamp: LocalStamp,
    synced: Option<&SyncedRecord>,
    filestate: Option<&FileStateRecord>,
) -> FileSyncState {
    match (filestate, synced) {
        (Some(fs), _) if fs.stamp == Some(stamp) => fs.state,
        (_, Some(r)) if r.local == stamp && r.uploaded => FileSyncState::UploadSuccess,
        (_, Some(r)) if r.local == stamp => FileSyncState::Completed,
        _ => FileSyncState::ToBeUploaded,
    }
}

fn preconditions(p: &impl Platform, bundle: &str) -> Result<(), ApiError> {
    let d = p.device_status();
    if !d.network_available {
        return Err(ApiError::new(codes::NETWORK_UNAVAILABLE, "the device has no network"));
    }
    match p.cloud_ready(bundle) {
        Ok(()) => {}
        Err(e) if e.kind == CloudErrorKind::Network => {
            return Err(ApiError::new(
                codes::NETWORK_UNAVAILABLE,
                format!("the cloud cannot be reached: {}", e.message),
            ))
        }
        Err(e) => {
            return Err(ApiError::new(
                codes::CLOUD_NOT_READY,
                format!("the cloud is not ready: {}", e.message),
            ))
        }
    }
    if !d.charging && d.battery_percent < 10 {
        return Err(ApiError::new(
            codes::LOW_BATTERY,
            format!("the battery is at {} % and not charging", d.battery_percent),
        ));
    }
    Ok(())
}

fn internal(e: ApiError) -> ApiError {
    ApiError::new(codes::INTERNAL, e.message)
}

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod world_tests;
