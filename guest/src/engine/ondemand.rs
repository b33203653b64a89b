//! Files on demand: evicting a synced file's local copy (`cleanCache`), space
//! optimisation (`startOptimizeSpace` / `stopOptimizeSpace` /
//! `optimizeStorage`), and the list of every file the device knows, local
//! or cloud-only.
//!
//! Eviction is safe by construction: a file is evicted only when its local
//! copy is exactly what was last synced and the cloud is checked to still
//! hold that version; the record turns cloud-only *before* the host removes
//! the file (and only if nobody has it open and it is still that file), so
//! there is no moment where neither side holds the bytes. A crash between
//! the two leaves a cloud-only record beside the very file it names, which
//! the next sync recognises by its stamp and records as local again.

use std::collections::{BTreeMap, VecDeque};

use super::access::{check_system_api, CLOUDFILE_SYNC_MANAGER};
use super::layout::{evicted_mark, fnv, pending_mark, thumbnail_path, STAGING_DIR, THUMBNAIL_EDGE};
use super::records::{
    self, EvictingRecord, FileStateRecord, LocalStamp, SyncedRecord, ACCESS, EVICTING, FILE_STATE, SYNCED,
};
use super::recovery::resolve_aside;
use super::sync::stored_state;
use super::uri::{uri_of, LOCAL_CLOUD_DIR};
use super::{
    codes, parse_uri_for, ApiError, AppFile, CloudErrorKind, FileKind, FileSyncState, IoErrorKind, ListenerId,
    Platform, Tick, GALLERY_BUNDLE,
};

const DAY_MS: u64 = 86_400_000;
/// Evictions carried out per tick.
const EVICTIONS_PER_TICK: usize = 64;

pub use cloudsync_contract::{OptimizeSpaceProgress, OptimizeState};

/// The first event of every optimisation (the seed's range starts at 1).
const STARTED: OptimizeSpaceProgress = OptimizeSpaceProgress {
    state: OptimizeState::Running,
    progress: 1,
};

/// A file the device knows: local, or cloud-only (its placeholder).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub uri: String,
    pub size: u64,
    pub cloud_only: bool,
    pub state: FileSyncState,
    /// Epoch ms of the last access seen (API, command line or the file
    /// system's atime); 0 when never.
    pub last_access_ms: u64,
}

struct Candidate {
    file: AppFile,
    record: SyncedRecord,
}

struct OptimizeJob {
    /// Who hears its events: the one caller of `startOptimizeSpace`, or
    /// every caller of `optimizeStorage` that joined it.
    listeners: Vec<ListenerId>,
    /// `optimizeStorage`'s pass (its policy, its callers), not a
    /// `startOptimizeSpace` task.
    storage: bool,
    /// `optimizeStorage`: whether the second step, for low space, began.
    pressed: bool,
    /// Bytes to free at most (`u64::MAX`: everything that qualifies).
    target: u64,
    /// What all candidates hold, for the percentage when the target is "all".
    total: u64,
    freed: u64,
    queue: VecDeque<Candidate>,
    last_percent: u32,
    /// The candidates still being gathered, a slice of records per tick.
    collect: Option<Collect>,
}

/// Candidates gathered from the records a page at a time. With a target,
/// only the least recently used that reach it are kept (a heap whose
/// newest is dropped while the rest still reach the target); with none,
/// every candidate is evicted as it is found, so memory holds a page.
struct Collect {
    /// With no target, a first pass sums what the records hold (no file
    /// looked at), so that the percentage has a goal.
    estimating: bool,
    all_bundles: Vec<String>,
    bundles: VecDeque<String>,
    /// The last path read in the first of `bundles`.
    after: Option<String>,
    /// Accessed at or before this (epoch ms) qualifies.
    aged: u64,
    picked: std::collections::BinaryHeap<Picked>,
    picked_bytes: u64,
    /// Bytes the candidates gathered should reach (`u64::MAX`: all of them).
    budget: u64,
}

impl Collect {
    /// Gathers files of `bundles` not used since `aged` (epoch ms), the
    /// least recently used reaching `budget` bytes.
    fn new(bundles: Vec<String>, aged: u64, budget: u64) -> Self {
        Collect {
            estimating: budget == u64::MAX,
            bundles: bundles.clone().into(),
            all_bundles: bundles,
            after: None,
            aged,
            picked: std::collections::BinaryHeap::new(),
            picked_bytes: 0,
            budget,
        }
    }
}

/// A candidate by when it was last used (the newest on top of the heap).
struct Picked {
    last: u64,
    candidate: Candidate,
}

impl PartialEq for Picked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Picked {}
impl PartialOrd for Picked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Picked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.last, &self.candidate.file).cmp(&(other.last, &other.candidate.file))
    }
}

/// Records looked at per tick while gathering candidates (each is a stat).
const CANDIDATES_PER_TICK: usize = if cfg!(test) { 2 } else { 1024 };

/// `optimizeStorage`'s aging policy: files not used for 30 days go
/// (api.md); when less than [`LOW_SPACE`] is then left on the device,
/// files not used for a day go too, least recently used first, until that
/// much is free again ("the automatic aging policy according to the
/// remaining local space").
pub const STORAGE_AGING_DAYS: u32 = 30;
/// Below this much free local space, `optimizeStorage` ages harder.
pub const LOW_SPACE: u64 = 2 << 30;
/// How long a file is spared once the space runs low.
pub const PRESSED_AGING_DAYS: u32 = 1;
/// Callers of `optimizeStorage` that may wait for a running task.
const MAX_WAITING: usize = 4096;

#[derive(Default)]
pub struct OnDemand {
    job: Option<OptimizeJob>,
    /// Callers of `optimizeStorage` waiting for a `startOptimizeSpace` task
    /// to end: their pass starts then.
    waiting: Vec<ListenerId>,
}

/// Why a file was not evicted.
#[derive(Debug)]
pub enum Refused {
    /// The caller's mistake or the file's state: the seed's code and message.
    Api(ApiError),
    /// The cloud could not be asked.
    Network(String),
}

impl OnDemand {
    /// `CloudFileCache.cleanCache(uri)`: a system API (201, 202); 14000002
    /// for a bad URI; 13900002 when the file has no synced copy in the cloud
    /// (never synced, or changed since); 13900010 while it is being written.
    /// Idempotent on a file that is already cloud-only.
    pub fn clean_cache(&self, p: &impl Platform, syncs: &super::sync::Syncs, uri: &str) -> Result<(), ApiError> {
        if uri.is_empty() {
            return Err(ApiError::invalid_parameter("uri must not be empty"));
        }
        check_system_api(p, false)?;
        let file = parse_uri_for(uri, &p.caller_bundle(), p.has_permission(CLOUDFILE_SYNC_MANAGER), true)?;
        if syncs.is_running(&file.bundle) {
            // Its records are being written by the run: try again after it.
            return Err(ApiError::new(
                13_900_010,
                format!("{uri}: a sync of its folder is running; try again when it ends"),
            ));
        }
        match evict(p, &file, None) {
            Ok(_) => Ok(()),
            Err(Refused::Api(e)) => Err(e),
            Err(Refused::Network(m)) => Err(ApiError::new(codes::NETWORK_UNAVAILABLE, m)),
        }
    }

    /// `startOptimizeSpace(param, callback)`: without a callback 401 and
    /// nothing runs; while one runs (or an `optimizeStorage` pass)
    /// 22400006; 22400005 when the records cannot be read. Evicts synced,
    /// unmodified files not accessed for `aging_days`, least recently
    /// accessed first, until `total_size` bytes are freed or none is left.
    pub fn start_optimize(
        &mut self,
        p: &impl Platform,
        total_size: u64,
        aging_days: u32,
        listener: Option<ListenerId>,
    ) -> Result<(), ApiError> {
        let listener = listener.ok_or_else(|| ApiError::invalid_parameter("a progress callback is required"))?;
        check_system_api(p, false)?;
        if self.job.is_some() {
            return Err(ApiError::new(
                codes::ALREADY_RUNNING,
                "a space optimisation is already running",
            ));
        }
        probe_records(p)?;
        self.begin(p, vec![listener], false, aging_days, total_size);
        Ok(())
    }

    /// `optimizeStorage()`: one pass of the aging policy
    /// ([`STORAGE_AGING_DAYS`], then harder below [`LOW_SPACE`]); its
    /// events go to `listener`, the last COMPLETED, or FAILED after its
    /// reason. A caller while a pass runs joins it; while a
    /// `startOptimizeSpace` task runs, the pass starts when it ends.
    pub fn optimize_storage(&mut self, p: &impl Platform, listener: ListenerId) -> Result<(), ApiError> {
        check_system_api(p, false)?;
        probe_records(p)?;
        match self.job.as_mut() {
            None => self.begin(p, vec![listener], true, STORAGE_AGING_DAYS, u64::MAX),
            Some(job) if job.storage => {
                if !job.listeners.contains(&listener) {
                    job.listeners.push(listener);
                }
                p.emit_optimize(listener, STARTED);
            }
            Some(_) => {
                if self.waiting.len() >= MAX_WAITING {
                    return Err(ApiError::new(
                        codes::ALREADY_RUNNING,
                        format!("{MAX_WAITING} storage optimisations already wait for the running one"),
                    ));
                }
                if !self.waiting.contains(&listener) {
                    self.waiting.push(listener);
                }
                p.emit_optimize(listener, STARTED);
            }
        }
        Ok(())
    }

    /// A new job: its candidates are gathered over the next ticks, so no
    /// call walks every record; RUNNING (1) goes out now.
    fn begin(&mut self, p: &impl Platform, listeners: Vec<ListenerId>, storage: bool, aging_days: u32, target: u64) {
        let aged = p.now_ms().saturating_sub(u64::from(aging_days).saturating_mul(DAY_MS));
        for &l in &listeners {
            p.emit_optimize(l, STARTED);
        }
        self.job = Some(OptimizeJob {
            listeners,
            storage,
            pressed: false,
            target,
            total: 0,
            freed: 0,
            queue: VecDeque::new(),
            last_percent: 1,
            collect: Some(Collect::new(bundles(p), aged, target)),
        });
    }

    /// The job ends: its terminal event (after the failure's reason) to
    /// each of its listeners; an `optimizeStorage` waiting starts now.
    fn end(&mut self, p: &impl Platform, state: OptimizeState, failure: Option<ApiError>) {
        let Some(job) = self.job.take() else { return };
        let progress = match state {
            OptimizeState::Completed => 100,
            _ => job.percent().max(job.last_percent),
        };
        for &l in &job.listeners {
            if let Some(e) = &failure {
                p.emit_optimize_failure(l, e);
            }
            p.emit_optimize(l, OptimizeSpaceProgress { state, progress });
        }
        let waiting = std::mem::take(&mut self.waiting);
        if !waiting.is_empty() {
            self.begin(p, waiting, true, STORAGE_AGING_DAYS, u64::MAX);
        }
    }

    /// `stopOptimizeSpace()`: the running `startOptimizeSpace` task ends
    /// with STOPPED now (an `optimizeStorage` pass is the caller's to
    /// await, and runs on). Nothing here can fail but the permission checks:
    /// the seed's 22400005 cannot arise from it.
    pub fn stop_optimize(&mut self, p: &impl Platform) -> Result<(), ApiError> {
        check_system_api(p, false)?;
        if self.job.as_ref().is_some_and(|j| !j.storage) {
            self.end(p, OptimizeState::Stopped, None);
        }
        Ok(())
    }

    /// Evicts the next batch; RUNNING as the percentage grows, then one
    /// terminal event.
    pub fn tick(&mut self, p: &impl Platform, syncs: &super::sync::Syncs) -> Tick {
        let Some(job) = self.job.as_mut() else {
            return Tick::Idle;
        };
        let mut failed: Option<ApiError> = None;
        if job.collect.is_some() {
            if let Err(e) = job.gather(p) {
                failed = Some(e);
            }
        }
        // Checked one by one against the record and the cloud as they are
        // now (the candidates were ranked at the start); removed as one
        // batch (one metadata commit). Bundles being synced wait.
        let mut batch = Vec::new();
        let mut planned = job.freed;
        let mut looked = 0;
        let mut held = false;
        while failed.is_none() && looked < EVICTIONS_PER_TICK && planned < job.target {
            let Some(c) = job.queue.pop_front() else { break };
            looked += 1;
            if syncs.is_running(&c.file.bundle) {
                // Its folder is being synced: the pass waits for the run.
                job.queue.push_front(c);
                held = true;
                break;
            }
            match evictable(p, &c.file, None) {
                Ok(Some(record)) => {
                    planned = planned.saturating_add(record.size);
                    batch.push((c.file, record));
                }
                Ok(None) | Err(Refused::Api(_)) => {} // already evicted, changed, gone: kept
                Err(Refused::Network(m)) => {
                    failed = Some(ApiError::service(m));
                }
            }
        }
        let evicted_any = !batch.is_empty();
        if !batch.is_empty() {
            match evict_batch(p, batch) {
                Ok(results) => {
                    for r in results {
                        match r {
                            Ok(freed) => job.freed += freed,
                            // The file system failed on it: the pass says so.
                            Err(Refused::Api(e)) if e.code == codes::UNKNOWN => {
                                failed.get_or_insert(e);
                            }
                            Err(_) => {} // changed, open, gone: kept
                        }
                    }
                }
                Err(Refused::Api(e)) if e.code == codes::UNKNOWN => failed = Some(e),
                Err(Refused::Api(e)) => failed = Some(ApiError::service(e.message)),
                Err(Refused::Network(m)) => failed = Some(ApiError::service(m)),
            }
        }
        if let Some(e) = failed {
            self.end(p, OptimizeState::Failed, Some(e));
            return Tick::Idle;
        }
        let mut done = job.freed >= job.target || (job.queue.is_empty() && job.collect.is_none());
        if done && job.storage && !job.pressed {
            // The space left decides whether the pass goes on.
            job.pressed = true;
            let free = p.free_space(&p.caller_bundle()).unwrap_or(u64::MAX);
            if free < LOW_SPACE {
                let need = LOW_SPACE - free;
                let aged = p.now_ms().saturating_sub(u64::from(PRESSED_AGING_DAYS) * DAY_MS);
                job.target = job.freed.saturating_add(need);
                job.queue.clear();
                job.collect = Some(Collect::new(bundles(p), aged, need));
                done = false;
            }
        }
        if done {
            self.end(p, OptimizeState::Completed, None);
            return if self.job.is_some() { Tick::More } else { Tick::Idle };
        }
        if held && !evicted_any && job.collect.is_none() {
            return Tick::Waiting;
        }
        // Never backwards: with no target the total grows as candidates are found.
        let percent = job.percent().max(job.last_percent);
        if percent != job.last_percent {
            job.last_percent = percent;
            for &l in &job.listeners {
                p.emit_optimize(
                    l,
                    OptimizeSpaceProgress {
                        state: OptimizeState::Running,
                        progress: percent,
                    },
                );
            }
        }
        Tick::More
    }

    /// The files of the caller's folder (or the gallery) the device knows,
    /// a page at a time in path order: local files and cloud-only ones,
    /// with size, state and last access, and the names not synced, with
    /// why. At most about `max` paths after `after`; `next` goes on. The
    /// walk and the records are read as streams merged by path, so a page
    /// costs the same in a folder of any size. A system API (201, 202).
    pub fn list_files(
        &self,
        p: &impl Platform,
        gallery: bool,
        syncs: &super::sync::Syncs,
        after: Option<&str>,
        max: usize,
    ) -> Result<FileListing, ApiError> {
        check_system_api(p, false)?;
        let bundle = if gallery {
            GALLERY_BUNDLE.to_string()
        } else {
            p.caller_bundle()
        };
        let max = max.clamp(1, 4096);
        let local_page = p
            .walk_page(&bundle, LOCAL_CLOUD_DIR, after, max as u32)
            .map_err(|e| ApiError::new(codes::INTERNAL, format!("cannot read the local folder: {e}")))?;
        let (local, local_more) = match local_page {
            Some((entries, next)) => (entries, next.is_some()),
            None => (Vec::new(), false),
        };
        let synced_prefix = format!("{SYNCED}/{bundle}/");
        let (records, records_more) = records::page(p, &synced_prefix, after, max)?;
        // This page covers the paths up to the first stream's last one: each
        // stream holds all of its paths up to there.
        let bound: Option<String> = [
            local_more.then(|| local.last().map(|e| e.path.clone())).flatten(),
            records_more,
        ]
        .into_iter()
        .flatten()
        .min();
        let within = |path: &str| bound.as_deref().is_none_or(|b| path <= b);
        let access: BTreeMap<String, u64> = records::range(p, &format!("{ACCESS}/{bundle}/"), after, bound.as_deref())?
            .into_iter()
            .collect();
        let filestates: BTreeMap<String, FileStateRecord> =
            records::range(p, &format!("{FILE_STATE}/{bundle}/"), after, bound.as_deref())?
                .into_iter()
                .collect();
        let records: BTreeMap<String, SyncedRecord> = records.into_iter().filter(|(path, _)| within(path)).collect();
        let mut out = BTreeMap::new();
        let mut skipped = Vec::new();
        for entry in local.into_iter().filter(|e| within(&e.path)) {
            let why = match (&entry.problem, entry.stat.kind) {
                (Some(problem), _) => problem.clone(),
                (None, FileKind::File) => {
                    let (path, stat) = (entry.path, entry.stat);
                    let file = AppFile {
                        bundle: bundle.clone(),
                        path: path.clone(),
                    };
                    // From the records already read: no I/O per file.
                    let state = syncs.run_state(&bundle, &path).unwrap_or_else(|| {
                        stored_state(LocalStamp::from(stat), records.get(&path), filestates.get(&path))
                    });
                    let last = access.get(&path).copied().unwrap_or(0).max(stat.atime_ns / 1_000_000);
                    out.insert(
                        path,
                        FileEntry {
                            uri: uri_of(&file),
                            size: stat.size,
                            cloud_only: false,
                            state,
                            last_access_ms: last,
                        },
                    );
                    continue;
                }
                (None, FileKind::Folder) => "an empty folder (folders are synced through the files in them)".into(),
                (None, FileKind::Symlink) => "a symlink: never followed, never synced".into(),
                (None, FileKind::Special) => "a FIFO, socket or device file: only regular files are synced".into(),
            };
            skipped.push((entry.path, why));
        }
        for (path, r) in records {
            if r.cloud_only && !out.contains_key(&path) {
                let file = AppFile {
                    bundle: bundle.clone(),
                    path: path.clone(),
                };
                let last = access.get(&path).copied().unwrap_or(0);
                out.insert(
                    path,
                    FileEntry {
                        uri: uri_of(&file),
                        size: r.size,
                        cloud_only: true,
                        state: FileSyncState::Completed,
                        last_access_ms: last,
                    },
                );
            }
        }
        Ok(FileListing {
            files: out.into_values().collect(),
            skipped,
            next: bound,
        })
    }
}

/// Every file the device knows, and the names in the folder it does not sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileListing {
    pub files: Vec<FileEntry>,
    /// (path, why).
    pub skipped: Vec<(String, String)>,
    /// The last path this page covers: the next goes on after it (`None`:
    /// the end).
    pub next: Option<String>,
}

impl OptimizeJob {
    /// Gathers candidates from the next page of records: with no target
    /// each goes to the queue at once (evicted in path order); with one,
    /// the heap keeps the least recently used that reach it, queued
    /// oldest first once every record was read.
    fn gather(&mut self, p: &impl Platform) -> Result<(), ApiError> {
        let Some(c) = self.collect.as_mut() else { return Ok(()) };
        let Some(bundle) = c.bundles.front().cloned() else {
            let picked = std::mem::take(&mut c.picked).into_sorted_vec();
            self.total = self.total.saturating_add(c.picked_bytes);
            self.queue.extend(picked.into_iter().map(|p| p.candidate));
            self.collect = None;
            return Ok(());
        };
        let synced_prefix = format!("{SYNCED}/{bundle}/");
        if c.estimating {
            let (records, more) =
                records::page::<SyncedRecord>(p, &synced_prefix, c.after.as_deref(), 8 * CANDIDATES_PER_TICK)?;
            let held = records.iter().filter(|(_, r)| !r.cloud_only).map(|(_, r)| r.size);
            self.total = self.total.saturating_add(held.sum());
            match more {
                Some(last) => c.after = Some(last),
                None => {
                    c.bundles.pop_front();
                    c.after = None;
                    if c.bundles.is_empty() {
                        c.estimating = false;
                        c.bundles = c.all_bundles.clone().into();
                    }
                }
            }
            return Ok(());
        }
        let (records, more) =
            records::page::<SyncedRecord>(p, &synced_prefix, c.after.as_deref(), CANDIDATES_PER_TICK)?;
        let access: BTreeMap<String, u64> =
            records::range(p, &format!("{ACCESS}/{bundle}/"), c.after.as_deref(), more.as_deref())?
                .into_iter()
                .collect();
        match more {
            Some(last) => c.after = Some(last),
            None => {
                c.bundles.pop_front();
                c.after = None;
            }
        }
        for (path, record) in records {
            if record.cloud_only {
                continue;
            }
            let local = format!("{LOCAL_CLOUD_DIR}/{path}");
            let stat = match p.stat(&bundle, &local) {
                Ok(Some(stat)) => stat,
                // Gone, or under a link or a file now: nothing to evict.
                Ok(None) => continue,
                Err(e)
                    if matches!(
                        e.kind,
                        IoErrorKind::NotFound | IoErrorKind::NotAFile | IoErrorKind::EscapesSandbox
                    ) =>
                {
                    continue
                }
                // The file system fails: said, never skipped in silence.
                Err(e) => {
                    return Err(ApiError::new(
                        codes::UNKNOWN,
                        format!("cannot read {bundle}/{local}: {e}"),
                    ))
                }
            };
            if !stat.is_file() || stat.size != record.size {
                continue; // changed since it was synced: never evicted
            }
            if LocalStamp::from(stat) != record.local && record.hash.is_none() {
                continue; // touched, and nothing to prove its content by
            }
            let last = access.get(&path).copied().unwrap_or(0).max(stat.atime_ns / 1_000_000);
            if last > c.aged {
                continue;
            }
            let candidate = Candidate {
                file: AppFile {
                    bundle: bundle.clone(),
                    path,
                },
                record,
            };
            if c.budget == u64::MAX {
                self.queue.push_back(candidate);
                continue;
            }
            c.picked_bytes = c.picked_bytes.saturating_add(candidate.record.size);
            c.picked.push(Picked { last, candidate });
            // The newest is dropped while the older ones still reach the target.
            while let Some(top) = c.picked.peek() {
                if c.picked_bytes - top.candidate.record.size < c.budget {
                    break;
                }
                c.picked_bytes -= top.candidate.record.size;
                c.picked.pop();
            }
        }
        Ok(())
    }

    /// The seed's range, 1 to 100: an optimisation under way has begun.
    fn percent(&self) -> u32 {
        if self.collect.as_ref().is_some_and(|c| c.estimating) {
            return 1; // no goal yet
        }
        let goal = if self.target == u64::MAX {
            self.total
        } else {
            self.target
        };
        if goal == 0 {
            return 100;
        }
        ((u128::from(self.freed) * 100 / u128::from(goal)).clamp(1, 100)) as u32
    }
}

/// The bundles the caller's space optimisation covers: its own, and the
/// gallery's.
fn bundles(p: &impl Platform) -> Vec<String> {
    vec![p.caller_bundle(), GALLERY_BUNDLE.to_string()]
}

/// Evicts one file's local copy; returns the bytes freed. `known`: the
/// record as already read (and the cloud already checked) by the caller.
fn evict(p: &impl Platform, file: &AppFile, known: Option<&SyncedRecord>) -> Result<u64, Refused> {
    match evictable(p, file, known)? {
        None => Ok(0), // already only in the cloud
        Some(record) => {
            let mut results = evict_batch(p, vec![(file.clone(), record)])?;
            results.pop().expect("one result per file")
        }
    }
}

/// Checks that `file` may be evicted: its record (`None` when it is
/// already cloud-only), or why not.
fn evictable(p: &impl Platform, file: &AppFile, known: Option<&SyncedRecord>) -> Result<Option<SyncedRecord>, Refused> {
    let refuse = |code: u32, why: String| Err(Refused::Api(ApiError::new(code, format!("{}: {why}", uri_of(file)))));
    let key = records::key(SYNCED, file);
    let record = match known {
        Some(r) => r.clone(),
        None => match records::get::<SyncedRecord>(p, &key).map_err(|e| Refused::Api(internal(e)))? {
            Some(r) => r,
            None => return refuse(codes::NO_SUCH_FILE, "no synced copy of it is in the cloud".into()),
        },
    };
    if record.cloud_only {
        return match p.stat(&file.bundle, &file.local_path()) {
            // A new file where the placeholder is: not synced, not evicted.
            Ok(Some(_)) => refuse(codes::NO_SUCH_FILE, "a new local file is there, not synced yet".into()),
            _ => Ok(None),
        };
    }
    let local = file.local_path();
    let stat = match p.stat(&file.bundle, &local) {
        Ok(Some(s)) if s.is_file() => s,
        Ok(Some(_)) => return refuse(codes::NO_SUCH_FILE, "it is not a regular file".into()),
        Ok(None) => return refuse(codes::NO_SUCH_FILE, "no such file".into()),
        Err(e) if e.kind == IoErrorKind::EscapesSandbox => {
            return Err(Refused::Api(ApiError::invalid_uri(
                &uri_of(file),
                "it leads out of the app's folder",
            )))
        }
        Err(e) => return refuse(codes::NO_SUCH_FILE, e.to_string()),
    };
    let stamp = LocalStamp::from(stat);
    let mut record = record;
    if stamp != record.local || super::sync::racily_clean(&record, &stat, p.fine_stamps(&file.bundle)) {
        // Its stamp moved (touched, its times set) or is too recent to vouch
        // for the content: only the hash of what was synced proves the
        // cloud holds these bytes.
        let same_size = stamp.size == record.size;
        let now = same_size
            .then(|| p.hash_file(&file.bundle, &local).ok())
            .flatten()
            .map(|h| h.to_ascii_lowercase());
        if now.is_none() || now != record.hash {
            let why = if stamp != record.local {
                "it has changes the cloud does not hold yet"
            } else {
                "it may have changes the cloud does not hold yet"
            };
            return refuse(codes::NO_SUCH_FILE, why.into());
        }
        record.local = stamp;
    }
    if known.is_none() {
        // Checked, not assumed: the cloud must hold exactly this version.
        match p.cloud_stat(&file.bundle, &file.path) {
            Ok(o) if o.etag == record.etag && o.size == record.size => {}
            Ok(_) => return refuse(codes::NO_SUCH_FILE, "the cloud holds another version of it".into()),
            // Not there, or no cloud there at all (its folder gone): asked.
            Err(e) if e.kind == CloudErrorKind::NotFound && p.cloud_ready(&file.bundle).is_ok() => {
                return refuse(codes::NO_SUCH_FILE, "the cloud does not hold it".into())
            }
            Err(e) => return Err(Refused::Network(format!("cannot check the cloud: {}", e.message))),
        }
    }
    Ok(Some(record))
}

/// Evicts checked files: their records turn cloud-only in one commit
/// first (with a note of where each file is set aside), then the host
/// removes each file (only if unchanged and not open, renaming it aside
/// first); the records of files it kept go back in one more commit. A crash
/// between leaves cloud-only records beside the very files they name, which
/// the next sync records as local again, or a file set aside, which
/// recovery removes or puts back ([`recover_evictions`]). Returns per file
/// the bytes freed or why it was kept.
fn evict_batch(p: &impl Platform, files: Vec<(AppFile, SyncedRecord)>) -> Result<Vec<Result<u64, Refused>>, Refused> {
    let now = p.now_ms();
    // Each file's mark first (durable before its record turns): one that
    // cannot be made is not evicted, and the file system's failure is said.
    let mut results_early = Vec::new();
    let files: Vec<(AppFile, SyncedRecord)> = files
        .into_iter()
        .filter_map(
            |(file, record)| match p.create_dir_all(&file.bundle, &pending_mark(&file.path, &record.etag)) {
                Ok(()) => Some((file, record)),
                Err(e) => {
                    results_early.push(Err(Refused::Api(ApiError::new(
                        codes::UNKNOWN,
                        format!("{}: not evicted: cannot mark it evicted: {}", uri_of(&file), e.message),
                    ))));
                    None
                }
            },
        )
        .collect();
    let marked: std::collections::BTreeSet<&str> = files.iter().map(|(f, _)| f.bundle.as_str()).collect();
    for bundle in marked {
        if let Err(e) = p.flush(bundle) {
            return Err(Refused::Api(ApiError::new(
                codes::UNKNOWN,
                format!("cannot make the eviction marks durable: {}", e.message),
            )));
        }
    }
    let notes: Vec<EvictingRecord> = files
        .iter()
        .enumerate()
        .map(|(i, (file, record))| EvictingRecord {
            aside: format!("{STAGING_DIR}/evict-{:016x}-{now}-{i}", fnv(&file.path)),
            stamp: record.local,
        })
        .collect();
    let mut turned: Vec<(String, Option<Vec<u8>>)> = Vec::with_capacity(files.len() * 2);
    for ((file, record), note) in files.iter().zip(&notes) {
        let mut cloud_only = record.clone();
        cloud_only.cloud_only = true;
        turned.push((records::key(SYNCED, file), Some(records::encode(&cloud_only))));
        turned.push((records::key(EVICTING, file), Some(records::encode(note))));
    }
    let bundles: std::collections::BTreeSet<&str> = files.iter().map(|(f, _)| f.bundle.as_str()).collect();
    for bundle in bundles {
        let _ = p.create_dir_all(bundle, STAGING_DIR);
    }
    if let Err(e) = p.meta_commit(turned) {
        // Nothing turned: no mark may stand for these files.
        for (file, record) in &files {
            let _ = p.remove_dir(&file.bundle, &pending_mark(&file.path, &record.etag));
        }
        return Err(Refused::Api(ApiError::new(
            codes::INTERNAL,
            format!("metadata write failed: {e}"),
        )));
    }
    let mut results = results_early;
    let mut back = Vec::new();
    for ((file, record), note) in files.iter().zip(&notes) {
        match p.evict(&file.bundle, &file.local_path(), record.local, &note.aside) {
            Ok(()) => {
                complete_mark(p, file, record);
                if file.bundle == GALLERY_BUNDLE {
                    // The photo still shows, as its thumbnail.
                    let thumb = thumbnail_path(&file.path);
                    let _ = p.make_thumbnail(&file.bundle, &file.path, &thumb, THUMBNAIL_EDGE);
                }
                back.push((records::key(EVICTING, file), None));
                results.push(Ok(record.size));
            }
            // The failure came after the file left its name: whatever was
            // set aside is settled now (removed, or put back if it was not
            // the file checked), and the record says what happened.
            Err(_) if matches!(p.stat(&file.bundle, &file.local_path()), Ok(None)) => {
                let _ = resolve_aside(p, file, note);
                if matches!(p.stat(&file.bundle, &file.local_path()), Ok(None)) {
                    complete_mark(p, file, record);
                    results.push(Ok(record.size));
                } else {
                    let _ = p.remove_dir(&file.bundle, &pending_mark(&file.path, &record.etag));
                    back.push((records::key(SYNCED, file), Some(records::encode(record))));
                    results.push(Err(Refused::Api(ApiError::new(
                        codes::NO_SUCH_FILE,
                        format!("{}: not evicted: it changed meanwhile", uri_of(file)),
                    ))));
                }
            }
            Err(e) => {
                // Not removed (changed, or being written): the record goes back.
                back.push((records::key(SYNCED, file), Some(records::encode(record))));
                back.push((records::key(EVICTING, file), None));
                let code = match e.kind {
                    IoErrorKind::WouldBlock => codes::TRY_AGAIN,
                    // The file system refused: said, never taken for a change.
                    IoErrorKind::PermissionDenied
                    | IoErrorKind::NoSpace
                    | IoErrorKind::NotSupported
                    | IoErrorKind::Interrupted => codes::UNKNOWN,
                    // Changed or gone since it was checked: kept, as it is.
                    _ => codes::NO_SUCH_FILE,
                };
                let _ = p.remove_dir(&file.bundle, &pending_mark(&file.path, &record.etag));
                let why = format!("{}: not evicted: {}", uri_of(file), e.message);
                results.push(Err(Refused::Api(ApiError::new(code, why))));
            }
        }
    }
    if !back.is_empty() {
        let _ = p.meta_commit(back);
    }
    Ok(results)
}

/// The file is gone: its mark now stands (see [`evicted_mark`]).
fn complete_mark(p: &impl Platform, file: &AppFile, record: &SyncedRecord) {
    if p.create_dir_all(&file.bundle, &evicted_mark(&file.path, &record.etag))
        .is_ok()
    {
        let _ = p.remove_dir(&file.bundle, &pending_mark(&file.path, &record.etag));
    }
}

fn internal(e: ApiError) -> ApiError {
    ApiError::new(codes::INTERNAL, e.message)
}

/// A task about to start checks that the records can be read (22400005
/// when not), so that a broken store refuses it rather than fail it later.
fn probe_records(p: &impl Platform) -> Result<(), ApiError> {
    let prefix = format!("{SYNCED}/{}/", p.caller_bundle());
    records::page::<SyncedRecord>(p, &prefix, None, 1)
        .map(|_| ())
        .map_err(|e| ApiError::new(codes::INTERNAL, format!("the records cannot be read: {}", e.message)))
}

#[cfg(test)]
mod tests;
