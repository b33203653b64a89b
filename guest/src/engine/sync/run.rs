//! The executor: one sync run of one bundle, advanced a bounded slice at a
//! time by `tick`. Pull (cloud → device) first, then push; each operation
//! checks the version the planner expected right before it acts, and each
//! finished step is recorded in the synced tree in the same tick, so a run
//! stopped or crashed at any moment resumes by planning again from what is
//! there. Operations skipped because a file changed after the scan make the
//! run plan another round.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::planner::{self, Confirm, Op, Refusal, RemoteTree, Side};
use super::scan::{self, ScanError};
use super::Report;
use crate::engine::layout::{fnv, thumbnail_path, STAGING_DIR, THUMBNAIL_EDGE};
use crate::engine::place::{verify_and_place, Arrived, Failure, Replaceable};
use crate::engine::records::{
    self, FileStateRecord, GuardRecord, LocalStamp, PartialRecord, SyncedRecord, FILE_STATE, SYNCED, SYNC_PARTIAL,
};
use crate::engine::uri::{uri_of, LOCAL_CLOUD_DIR};
use crate::engine::{
    AppFile, CloudErrorKind, DownloadRequest, ErrorType, FileSyncState, IoErrorKind, Platform, SyncAction,
    SyncDecision, SyncProgress, SyncState, Tick, TransferId, TransferState, UploadRequest, WritePrecondition,
};

/// Transfers one run keeps in flight (the host bounds real concurrency).
const MAX_ACTIVE: usize = 16;
/// Paths a scan merges per tick: a large folder's scan spans ticks, so no
/// call nears the engine's time budget.
/// (A few in tests, so that scans span ticks and the world moves meanwhile.)
const SCAN_PATHS_PER_TICK: usize = if cfg!(test) { 3 } else { 8192 };
/// Ops planned and carried out at a time: a tree with more changes is
/// planned whole for the guards, then carried out a window at a time, each
/// planned afresh after the last, so memory holds one window's ops.
const OPS_PER_WINDOW: usize = if cfg!(test) { 5 } else { 16_384 };
/// Downloads placed as one batch at most (one flush for all their bytes).
const PLACE_BATCH: usize = 64;
/// Operations without a transfer carried out per tick.
const INLINE_PER_TICK: usize = 512;
/// Rounds (scan, plan, apply) one run makes while files change under it.
const MAX_ROUNDS: u32 = 4;
/// Records are committed at least this often (ms) while a run goes, and
/// whenever this many changes wait: one durable write per batch. A crash
/// loses at most that batch of records; the steps themselves stand, and the
/// next run finds them equal by content.
const FLUSH_EVERY_MS: u64 = 250;
const FLUSH_CHANGES: usize = 512;
/// Skipped names and failures a report lists at most (the counts go on).
pub const MAX_LISTED: usize = 1000;
/// Thumbnails made per tick (each reads an image from the cloud).
const THUMBNAILS_PER_TICK: usize = 4;
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Scan,
    Pull,
    Push,
    Finished,
}

struct Job {
    path: String,
    transfer: TransferId,
    kind: JobKind,
    /// Bytes moved so far (downloads: what is already on the disk).
    bytes: u64,
}

/// One download the pull wants.
struct Wanted {
    path: String,
    etag: String,
    /// The local version that may be replaced (`None`: none may be).
    replaceable: Option<LocalStamp>,
    /// What was last synced: if the cloud's bytes are these, nothing moves.
    base_hash: Option<String>,
    /// A conflict: the local version is kept whatever arrives.
    keep_both: bool,
    /// The local version the planner saw (for a conflict, the edited one).
    expect_local: Option<LocalStamp>,
}

enum JobKind {
    Download {
        temp: String,
        etag: String,
        size: u64,
        content_hash: Option<String>,
        replaceable: Option<LocalStamp>,
        base_hash: Option<String>,
        keep_both: bool,
        expect_local: Option<LocalStamp>,
    },
    Upload {
        expect_local: LocalStamp,
    },
}

/// What a run needs from its owner after a tick.
pub enum Step {
    Busy(Tick),
    /// The run ended with this terminal event (already in the outbox).
    Finished(SyncProgress),
}

pub struct Run {
    pub bundle: String,
    /// The gallery: cloud files become placeholders with thumbnails.
    placeholders: bool,
    phase: Phase,
    round: u32,
    confirm: Confirm,
    /// `start` was called while running: one more run follows this one.
    pub again: bool,
    /// ... with what those calls confirmed.
    pub again_confirm: Confirm,
    /// A guard refused the plan: the run ends STOPPED, having changed nothing.
    refused: bool,
    /// A dry run: it plans every window, sends each step as a decision and
    /// does none of them (no file, no record).
    pub dry_run: bool,
    /// Paths already reported as skipped this run.
    reported: std::collections::BTreeSet<String>,
    /// Paths already reported as failed this run.
    failed_paths: std::collections::BTreeSet<String>,
    /// When this round scanned: a path first recorded in it is dated so.
    round_ms: u64,
    /// When each synced path was first recorded (kept across its records).
    first: BTreeMap<String, u64>,
    pull: VecDeque<Op>,
    push: VecDeque<Op>,
    remote: RemoteTree,
    active: Vec<Job>,
    /// Downloads whose bytes are all in their temps, waiting to be placed
    /// as one batch (one flush for the bytes, then lazy renames), with the
    /// hash the transfer computed and when the first arrived.
    arrived: Vec<(Job, Option<String>)>,
    arrived_ms: u64,
    /// Files were placed with lazy renames: a flush must come before the
    /// records that name them are committed.
    placed_lazily: bool,
    /// The round's scan, when it takes more than one tick.
    scanning: Option<scan::ScanState>,
    /// Paths the scan merges per tick.
    pub scan_slice: usize,
    /// Ops per window ([`OPS_PER_WINDOW`]).
    pub window: usize,
    /// The plan goes on after the window being carried out.
    rest: Option<planner::Rest>,
    /// The window being carried out is a later one of its round's plan.
    later_window: bool,
    /// The app's folder as the scan found it (its inode): one that went
    /// away or was replaced meanwhile stops the run.
    folder: Option<u64>,
    changes: Vec<(String, Option<Vec<u8>>)>,
    /// Files whose records wait in `changes`: their in-run state stands
    /// until the records are durable.
    settled: Vec<String>,
    last_flush_ms: u64,
    /// Errors met so far (per-file ones, warnings); the highest is reported.
    errors: Vec<ErrorType>,
    pull_failed: bool,
    push_failed: bool,
    /// The run cannot go on: its terminal state and error.
    fatal: Option<(SyncState, ErrorType)>,
    /// Stop starting new uploads, finish those running, then end (battery low).
    halt: Option<(SyncState, ErrorType)>,
    replan: bool,
    /// The paths of this round that changed under it (or whose two answers
    /// disagreed); said when the run ends with them left for the next.
    unsettled: BTreeSet<String>,
    pub report: Report,
    /// Per-file states of this run (queued, transferring).
    pub files: BTreeMap<String, FileSyncState>,
    /// The last event sent, for listeners that join while it runs.
    pub current: SyncProgress,
    seq: u64,
}

impl Run {
    pub fn new(bundle: &str, confirm: Confirm) -> Self {
        Run {
            bundle: bundle.to_string(),
            placeholders: bundle == crate::engine::GALLERY_BUNDLE,
            phase: Phase::Scan,
            round: 0,
            confirm,
            again: false,
            again_confirm: Confirm::default(),
            refused: false,
            dry_run: false,
            reported: Default::default(),
            failed_paths: Default::default(),
            round_ms: 0,
            first: BTreeMap::new(),
            pull: VecDeque::new(),
            push: VecDeque::new(),
            remote: RemoteTree::new(),
            active: Vec::new(),
            arrived: Vec::new(),
            arrived_ms: 0,
            placed_lazily: false,
            scanning: None,
            scan_slice: SCAN_PATHS_PER_TICK,
            window: OPS_PER_WINDOW,
            rest: None,
            later_window: false,
            folder: None,
            changes: Vec::new(),
            settled: Vec::new(),
            last_flush_ms: 0,
            errors: Vec::new(),
            pull_failed: false,
            push_failed: false,
            fatal: None,
            halt: None,
            replan: false,
            unsettled: BTreeSet::new(),
            report: Report {
                running: true,
                ..Report::default()
            },
            files: BTreeMap::new(),
            current: SyncProgress {
                state: SyncState::Downloading,
                error: ErrorType::NoError,
            },
            seq: 0,
        }
    }

    /// The run's first event: pulling starts.
    pub fn announce(&mut self, out: &mut Vec<SyncProgress>) {
        self.send(
            out,
            SyncProgress {
                state: SyncState::Downloading,
                error: ErrorType::NoError,
            },
        );
    }

    /// Advances the run; events to send go to `out`.
    pub fn tick(&mut self, p: &impl Platform, out: &mut Vec<SyncProgress>) -> Step {
        let before = self.phase;
        let step = match self.phase {
            Phase::Scan => self.scan(p, out),
            Phase::Pull | Phase::Push => self.work(p, out),
            Phase::Finished => Tick::More,
        };
        self.flush(p, self.phase != before);
        if self.phase == Phase::Finished {
            self.left_unsettled(p);
            let terminal = self.terminal();
            self.send(out, terminal);
            self.report.running = false;
            return Step::Finished(terminal);
        }
        Step::Busy(step)
    }

    /// Stops now: transfers are cancelled (partial downloads removed), the
    /// files not done are marked STOPPED, and STOPPED is sent.
    pub fn stop(&mut self, p: &impl Platform, out: &mut Vec<SyncProgress>) {
        for (job, _) in std::mem::take(&mut self.arrived) {
            if let JobKind::Download { temp, .. } = &job.kind {
                self.discard_temp(p, &job.path, temp);
            }
            self.mark_stopped(p, &job.path);
        }
        for job in std::mem::take(&mut self.active) {
            p.cancel_transfer(job.transfer);
            p.release_transfer(job.transfer);
            if let JobKind::Download { temp, .. } = &job.kind {
                self.discard_temp(p, &job.path, temp);
            }
            self.mark_stopped(p, &job.path);
        }
        for op in std::mem::take(&mut self.pull)
            .into_iter()
            .chain(std::mem::take(&mut self.push))
        {
            if matches!(op, Op::Upload { .. } | Op::Download { .. } | Op::KeepBoth { .. }) {
                self.mark_stopped(p, op.path());
            }
        }
        self.rest = None;
        self.flush(p, true);
        self.files.clear();
        self.report.running = false;
        self.send(
            out,
            SyncProgress {
                state: SyncState::Stopped,
                error: ErrorType::NoError,
            },
        );
    }

    /// Tells whoever logs what the run does about `path`, and why.
    fn decide(&self, p: &impl Platform, path: &str, action: SyncAction, reason: &str) {
        p.note_decision(SyncDecision {
            bundle: self.bundle.clone(),
            path: path.to_string(),
            action,
            reason: reason.to_string(),
            dry_run: self.dry_run,
        });
    }

    fn mark_stopped(&mut self, p: &impl Platform, path: &str) {
        let stamp = p
            .stat(&self.bundle, &local_path(path))
            .ok()
            .flatten()
            .filter(|s| s.is_file())
            .map(LocalStamp::from);
        self.set_file_state(path, FileSyncState::Stopped, stamp);
    }

    fn scan(&mut self, p: &impl Platform, out: &mut Vec<SyncProgress>) -> Tick {
        if self.scanning.is_none() {
            // Not even a listing over a network the user did not allow, nor
            // on a device too hot.
            self.check_device(p, false);
            if let Some(stop) = self.fatal.or(self.halt) {
                self.fatal = Some(stop);
                self.phase = Phase::Finished;
                return Tick::More;
            }
        }
        let stepped = match self.scanning.take() {
            Some(state) => Ok(state),
            None => {
                let rest = self.rest.take();
                self.later_window = rest.is_some();
                if rest.is_none() {
                    self.round += 1;
                    self.replan = false;
                    self.unsettled.clear();
                    self.folder = folder_id(p, &self.bundle);
                }
                let options = planner::Options {
                    confirm: self.confirm,
                    placeholders: self.placeholders,
                    guard: GuardRecord::default(),
                    window: Some(self.window.max(1)),
                    allowance: rest.as_ref().map(|r| r.deletes),
                    folder: self.folder,
                };
                scan::ScanState::start(p, &self.bundle, options, rest.as_ref().map(|r| r.after.as_str())).map(
                    |mut state| {
                        state.dry_run = self.dry_run;
                        state
                    },
                )
            }
        }
        .and_then(|mut state| match state.step(p, &self.bundle, self.scan_slice)? {
            Some(scanned) => Ok(Some(scanned)),
            None => {
                // More paths than a tick takes: the merge goes on next tick.
                self.scanning = Some(state);
                Ok(None)
            }
        });
        let scanned = match stepped {
            Ok(Some(t)) => t,
            Ok(None) => return Tick::More,
            Err(e) => {
                let (error, reason) = match e {
                    ScanError::Cloud(c) => (
                        cloud_error_type(p, c.kind),
                        format!("cannot list the cloud: {}", c.message),
                    ),
                    ScanError::Local(io) => (ErrorType::NoError, format!("cannot read the local folder: {io}")),
                    ScanError::Meta(m) => (ErrorType::NoError, m.message),
                };
                self.report.last_error = Some(reason);
                self.fatal = Some((SyncState::DownloadFailed, error));
                self.phase = Phase::Finished;
                return Tick::More;
            }
        };
        // The folder the scan read must be the one there now (a first
        // sync's was just made).
        let now = folder_id(p, &self.bundle);
        if self.folder.is_some() && now != self.folder {
            self.folder_gone();
            self.phase = Phase::Finished;
            return Tick::More;
        }
        self.folder = now;
        if !self.dry_run {
            self.changes.extend(scanned.refresh);
        }
        for (path, why) in scanned.skipped {
            if self.reported.insert(path.clone()) {
                self.decide(p, &path, SyncAction::Skip, &why);
                self.report.skipped_total += 1;
                if self.report.skipped.len() < MAX_LISTED {
                    self.report.skipped.push((path, why));
                }
            }
        }
        for (path, why) in scanned.unreadable {
            self.note_failure(p, &path, &why, true);
        }
        if scanned.bad_records > 0 && self.round == 1 {
            self.report.notes.push(format!(
                "{} sync records could not be read and were set aside: their files are compared afresh \
                 (a difference is kept as a conflict copy or downloaded; nothing is deleted for want of a record)",
                scanned.bad_records
            ));
        }
        let plan = match scanned.plan {
            Ok(plan) => plan,
            Err(refusal) => {
                let why = describe(&refusal, self.report.done > 0);
                self.decide(p, "", SyncAction::Refuse, &why);
                self.report.refusal = Some(why);
                self.refused = true;
                self.phase = Phase::Finished;
                return Tick::More;
            }
        };
        if self.dry_run {
            // The plan is all a dry run makes: each step is told, none done.
            for op in &plan.ops {
                let (action, why) = op.decision();
                self.decide(p, op.path(), action, why);
            }
            self.report.planned += plan.ops.len() as u64;
            self.rest = plan.rest;
            self.phase = if self.rest.is_some() {
                Phase::Scan
            } else {
                Phase::Finished
            };
            return Tick::More;
        }
        // The guard's count: deletions of the files in sync when deletions
        // were last confirmed. A confirmed run (or the first) starts it
        // again from what it leaves; a folder that this run brings to twice
        // its baseline, losing none of those files, counts from its new size.
        // Files first recorded in this round join the baseline next run
        // (the planner's settled guard), so an upload that fails is no deletion.
        // The guard's count is kept from the first window's plan, which
        // counted the whole tree.
        if !self.later_window {
            self.round_ms = p.now_ms();
            let t = plan.tally;
            let held = t.held as u64;
            let deletes = t.deletes as u64;
            let after = held.saturating_sub(deletes);
            // The plan passed the guards with this folder: it is the one
            // synced from now on.
            let folder = self.folder.or(scanned.guard.and_then(|g| g.folder));
            let fresh = GuardRecord {
                since_ms: self.round_ms,
                baseline: after,
                folder,
            };
            let guard = match scanned.guard.map(|_| plan.guard) {
                None => fresh,
                Some(_) if self.confirm.deletions && deletes > 0 => fresh,
                Some(g)
                    if t.baseline_deletes == 0 && after + t.new_files >= 2 * g.baseline.max(planner::MIN_BASELINE) =>
                {
                    fresh
                }
                Some(g) => GuardRecord { folder, ..g },
            };
            if Some(guard) != scanned.guard {
                self.changes
                    .push((scan::guard_key(&self.bundle), Some(records::encode(&guard))));
            }
        }
        self.rest = plan.rest;
        self.first = scanned.first;
        self.remote = scanned.remote;
        let ops = plan.ops;
        for op in ops {
            match op {
                Op::Upload { .. } | Op::DeleteRemote { .. } => {
                    if let Op::Upload { path, .. } = &op {
                        self.files.insert(path.clone(), FileSyncState::ToBeUploaded);
                    }
                    self.push.push_back(op);
                }
                _ => self.pull.push_back(op),
            }
        }
        self.report.planned += (self.pull.len() + self.push.len()) as u64;
        self.phase = Phase::Pull;
        // The first round's DOWNLOADING went out when the run started.
        if self.round > 1 || self.later_window {
            self.send(
                out,
                SyncProgress {
                    state: SyncState::Downloading,
                    error: ErrorType::NoError,
                },
            );
        }
        Tick::More
    }

    fn work(&mut self, p: &impl Platform, out: &mut Vec<SyncProgress>) -> Tick {
        let pushing = self.phase == Phase::Push;
        let done_before = self.report.done;
        // Before anything arrived is placed: a folder gone must not be made
        // anew by the placements (a later run would read it as emptied).
        self.check_sides(p);
        if self.fatal.is_none() {
            self.poll(p);
        }
        // (A phase with nothing left to start is not held back by the
        // device: the next phase's or window's own check says.)
        let to_start = if pushing {
            !self.push.is_empty()
        } else {
            !self.pull.is_empty()
        };
        if self.fatal.is_none() && self.halt.is_none() && to_start {
            self.check_device(p, pushing);
        }
        if self.fatal.is_none() && self.halt.is_none() {
            self.start_ops(p, pushing);
        }
        if self.fatal.is_some() {
            self.cancel_all(p);
        }
        let batch_done = self.report.done > done_before;
        let queue_empty = if pushing {
            self.push.is_empty()
        } else {
            self.pull.is_empty()
        };
        if self.active.is_empty() && (queue_empty || self.fatal.is_some() || self.halt.is_some()) {
            if self.fatal.is_some() || self.halt.is_some() {
                self.fatal = self.fatal.or(self.halt);
                self.phase = Phase::Finished;
            } else if !pushing {
                // Files that failed to come down failed alone: the push goes
                // on (only a failure of the whole pull, above, skips it).
                self.phase = Phase::Push;
                self.send(
                    out,
                    SyncProgress {
                        state: SyncState::Uploading,
                        error: self.warning(),
                    },
                );
            } else if self.rest.is_some() {
                // The next window of this round's plan.
                self.phase = Phase::Scan;
            } else if self.replan && self.round < MAX_ROUNDS {
                self.phase = Phase::Scan;
            } else {
                self.phase = Phase::Finished;
            }
            return Tick::More;
        }
        if batch_done {
            let state = if pushing {
                SyncState::Uploading
            } else {
                SyncState::Downloading
            };
            self.send(
                out,
                SyncProgress {
                    state,
                    error: self.warning(),
                },
            );
        }
        let queue_empty = if pushing {
            self.push.is_empty()
        } else {
            self.pull.is_empty()
        };
        if !queue_empty && self.active.len() < MAX_ACTIVE && self.halt.is_none() {
            Tick::More
        } else {
            Tick::Waiting
        }
    }

    /// Both sides are still there: the app's folder is the one scanned, and
    /// a cloud the plan deletes local files for is not emptied meanwhile
    /// (a folder moved away, or a cloud folder being removed, in the middle
    /// of a run is never carried on as deletions).
    fn check_sides(&mut self, p: &impl Platform) {
        if self.fatal.is_some() {
            return;
        }
        if self.folder.is_some() && folder_id(p, &self.bundle) != self.folder {
            self.folder_gone();
            return;
        }
        // (An empty cloud confirmed as such is meant to empty this side.)
        if !self.confirm.empty_cloud && self.pull.iter().any(|op| matches!(op, Op::DeleteLocal { .. })) {
            let emptied = match p.cloud_list_page(&self.bundle, "", None, 1) {
                Ok((page, _)) => page.objects.is_empty() && page.skipped.is_empty(),
                Err(_) => false, // a failing cloud fails the deletions themselves
            };
            if emptied {
                self.report.last_error = Some(
                    "the cloud's folder went empty while this sync ran: no local file was deleted for it from \
                     then on. Sync again: an empty cloud is refused unless confirmed (--confirm-empty-cloud)."
                        .into(),
                );
                self.fatal = Some((SyncState::DownloadFailed, ErrorType::NoError));
            }
        }
    }

    fn folder_gone(&mut self) {
        self.report.last_error = Some(
            "the app's folder went away or was replaced while this sync ran: nothing more was changed on \
             either side. Put it back, or sync again to compare afresh."
                .into(),
        );
        self.fatal = Some((SyncState::DownloadFailed, ErrorType::NoError));
    }

    /// The device, checked between batches of either phase: no network,
    /// or only a metered one when the user allows Wi-Fi only, ends the run
    /// at once; heat or a low battery lets the transfers under way finish
    /// and starts no more.
    fn check_device(&mut self, p: &impl Platform, pushing: bool) {
        let failed = if pushing {
            SyncState::UploadFailed
        } else {
            SyncState::DownloadFailed
        };
        let d = p.device_status();
        if !d.network_available {
            self.fatal = Some((failed, ErrorType::NetworkUnavailable));
        } else if d.wifi_only && !d.wifi_available {
            self.report.last_error = Some("only a metered network is up, and syncing is set to Wi-Fi only".into());
            self.fatal = Some((failed, ErrorType::WifiUnavailable));
        } else if d.overheated {
            self.report.last_error = Some("the device is too hot: syncing goes on once it has cooled".into());
            self.halt = Some((failed, ErrorType::DeviceTemperatureTooHigh));
        } else if !d.charging && d.battery_percent < 10 {
            self.halt = Some((failed, ErrorType::BatteryLevelLow));
        } else if !d.charging && d.battery_percent < 15 && !self.errors.contains(&ErrorType::BatteryLevelWarning) {
            self.errors.push(ErrorType::BatteryLevelWarning);
        }
    }

    fn start_ops(&mut self, p: &impl Platform, pushing: bool) {
        let mut inline = 0;
        let mut thumbnails = 0;
        let mut downloads: Vec<Wanted> = Vec::new();
        while self.active.len() + downloads.len() < MAX_ACTIVE && inline < INLINE_PER_TICK && self.fatal.is_none() {
            let queue = if pushing { &mut self.push } else { &mut self.pull };
            if thumbnails >= THUMBNAILS_PER_TICK && matches!(queue.front(), Some(Op::Placeholder { .. })) {
                break;
            }
            let Some(op) = queue.pop_front() else { break };
            inline += 1;
            let (action, why) = op.decision();
            self.decide(p, op.path(), action, why);
            match op {
                Op::Download {
                    path,
                    etag,
                    expect_local,
                    base_hash,
                } => downloads.push(Wanted {
                    path,
                    etag,
                    replaceable: expect_local,
                    base_hash,
                    keep_both: false,
                    expect_local,
                }),
                Op::KeepBoth {
                    path,
                    etag,
                    expect_local,
                    base_hash,
                } => {
                    // Nothing may be replaced: the local version stays as a
                    // conflict copy unless it is byte-identical.
                    downloads.push(Wanted {
                        path,
                        etag,
                        replaceable: None,
                        base_hash,
                        keep_both: true,
                        expect_local: Some(expect_local),
                    })
                }
                Op::DeleteLocal { path, expect_local } => self.delete_local(p, &path, expect_local),
                Op::DeleteRemote { path, etag } => self.delete_remote(p, &path, &etag),
                Op::RecordSynced {
                    path,
                    etag,
                    local,
                    hash,
                } => {
                    let size = self.remote.get(&path).map_or(local.size, |r| r.size);
                    self.record(p, &path, etag, size, local, hash, false);
                }
                Op::ForgetSynced { path } => {
                    if self.placeholders {
                        let _ = p.remove_file(&self.bundle, &thumbnail_path(&path));
                    }
                    self.forget(&path)
                }
                Op::Placeholder { path, etag, size } => {
                    thumbnails += 1;
                    self.placeholder(p, &path, etag, size);
                }
                Op::Upload {
                    path,
                    expect_local,
                    if_match,
                } => self.start_upload(p, &path, expect_local, if_match),
            }
        }
        if !downloads.is_empty() {
            self.start_downloads(p, downloads);
        }
    }

    fn start_downloads(&mut self, p: &impl Platform, wanted: Vec<Wanted>) {
        // Room on the disk: what is free, less what the downloads already
        // running still have to write. A file that does not fit fails alone
        // (LOCAL_STORAGE_FULL); smaller ones after it may still fit.
        let free = p.free_space(&self.bundle).unwrap_or(u64::MAX);
        let pending: u64 = self
            .active
            .iter()
            .filter_map(|j| match &j.kind {
                JobKind::Download { size, .. } => Some(size.saturating_sub(j.bytes)),
                JobKind::Upload { .. } => None,
            })
            .sum();
        let mut room = free.saturating_sub(pending);
        let mut ready = Vec::new();
        let mut partials = Vec::new();
        for w in wanted {
            let Some(r) = self.remote.get(&w.path).cloned() else {
                continue;
            };
            if r.size > room {
                let reason = format!("it needs {} bytes and the device has {room} bytes free", r.size);
                let failure = Failure {
                    kind: crate::engine::DownloadErrorType::LocalStorageFull,
                    cloud: Some(CloudErrorKind::LocalNoSpace),
                    reason,
                };
                self.file_failed(p, &w.path, &failure, false);
                continue;
            }
            room -= r.size;
            self.seq += 1;
            let temp = format!("{STAGING_DIR}/sync-{:x}-{}-{}.part", fnv(&w.path), p.now_ms(), self.seq);
            let record = PartialRecord {
                temp: temp.clone(),
                etag: w.etag.clone(),
                size: r.size,
                kept: false,
            };
            partials.push((
                records::path_key(SYNC_PARTIAL, &self.bundle, &w.path),
                Some(records::encode(&record)),
            ));
            ready.push((w, r.size, r.hash.map(|h| format!("sha256:{h}")), temp));
        }
        if ready.is_empty() {
            return;
        }
        // The temps are recorded before any byte is written: a crash at any
        // later moment finds (and removes) them.
        if let Err(e) = p
            .create_dir_all(&self.bundle, STAGING_DIR)
            .map_err(|e| e.to_string())
            .and_then(|_| p.meta_commit(partials).map_err(|e| e.to_string()))
        {
            self.report.last_error = Some(format!("cannot prepare downloads: {e}"));
            self.fatal = Some((SyncState::DownloadFailed, ErrorType::NoError));
            return;
        }
        for (w, size, content_hash, temp) in ready {
            let request = DownloadRequest {
                bundle: self.bundle.clone(),
                cloud_path: w.path.clone(),
                local_path: temp.clone(),
                offset: 0,
                if_match: Some(w.etag.clone()),
                counted: false,
                // Made durable a batch at a time, before they are placed.
                durable: false,
            };
            match p.start_download(request) {
                Ok(transfer) => {
                    self.files.insert(w.path.clone(), FileSyncState::Downloading);
                    self.active.push(Job {
                        path: w.path,
                        transfer,
                        bytes: 0,
                        kind: JobKind::Download {
                            temp,
                            etag: w.etag,
                            size,
                            content_hash,
                            replaceable: w.replaceable,
                            base_hash: w.base_hash,
                            keep_both: w.keep_both,
                            expect_local: w.expect_local,
                        },
                    });
                }
                Err(e) => {
                    self.discard_temp(p, &w.path, &temp);
                    self.transfer_failed(p, &w.path, &Failure::cloud(&e), false);
                }
            }
        }
    }

    fn start_upload(&mut self, p: &impl Platform, path: &str, expect_local: LocalStamp, if_match: Option<String>) {
        // Right before acting: the file must still be what the planner saw.
        if !self.local_is(p, path, Some(expect_local)) {
            self.files.remove(path);
            self.changed_under_run(path);
            return;
        }
        let request = UploadRequest {
            bundle: self.bundle.clone(),
            local_path: local_path(path),
            cloud_path: path.to_string(),
            precondition: match if_match {
                Some(etag) => WritePrecondition::IfMatch(etag),
                None => WritePrecondition::IfAbsent,
            },
            expect: Some(expect_local),
        };
        match p.start_upload(request) {
            Ok(transfer) => {
                self.files.insert(path.to_string(), FileSyncState::Uploading);
                self.active.push(Job {
                    path: path.to_string(),
                    transfer,
                    bytes: 0,
                    kind: JobKind::Upload { expect_local },
                });
            }
            Err(e) => self.file_failed(p, path, &Failure::cloud(&e), true),
        }
    }

    fn poll(&mut self, p: &impl Platform) {
        let mut still = Vec::new();
        for job in std::mem::take(&mut self.active) {
            let Some(status) = p.poll_transfer(job.transfer) else {
                if let JobKind::Download { temp, .. } = &job.kind {
                    self.discard_temp(p, &job.path, temp);
                }
                let upload = matches!(job.kind, JobKind::Upload { .. });
                self.file_failed(
                    p,
                    &job.path,
                    &Failure::unknown("the host lost track of the transfer"),
                    upload,
                );
                continue;
            };
            let mut job = job;
            job.bytes = status.bytes;
            match status.state {
                TransferState::Running => {
                    still.push(job);
                    continue;
                }
                TransferState::Done => {
                    p.release_transfer(job.transfer);
                    if matches!(job.kind, JobKind::Download { .. }) {
                        if self.arrived.is_empty() {
                            self.arrived_ms = p.now_ms();
                        }
                        self.arrived.push((job, status.sha256));
                    } else {
                        self.finish_job(p, job, status.uploaded, status.sha256);
                    }
                }
                TransferState::Failed(e) => {
                    p.release_transfer(job.transfer);
                    let upload = matches!(job.kind, JobKind::Upload { .. });
                    if let JobKind::Download { temp, .. } = &job.kind {
                        self.discard_temp(p, &job.path, temp);
                    }
                    self.transfer_failed(p, &job.path, &Failure::cloud(&e), upload);
                }
            }
        }
        // Jobs finished above may have pushed none back; keep the rest.
        still.append(&mut self.active);
        self.active = still;
        if !self.arrived.is_empty() {
            let clock = p.now_ms();
            let downloading = self.active.iter().any(|j| matches!(j.kind, JobKind::Download { .. }));
            if !downloading
                || self.arrived.len() >= PLACE_BATCH
                || clock.saturating_sub(self.arrived_ms) >= FLUSH_EVERY_MS
                || clock < self.arrived_ms
            {
                self.place_arrived(p);
            }
        }
    }

    /// Places the downloads that arrived: their bytes made durable with one
    /// flush first (a rename must never show a torn file after a power
    /// cut), then each verified and renamed lazily; the flush before the
    /// next commit makes the renames durable before any record names them.
    fn place_arrived(&mut self, p: &impl Platform) {
        let arrived = std::mem::take(&mut self.arrived);
        if let Err(e) = p.flush(&self.bundle) {
            for (job, _) in arrived {
                if let JobKind::Download { temp, .. } = &job.kind {
                    self.discard_temp(p, &job.path, temp);
                }
                self.file_failed(p, &job.path, &Failure::io(&e), false);
            }
            return;
        }
        for (job, sha256) in arrived {
            self.finish_job(p, job, None, sha256);
        }
    }

    fn finish_job(
        &mut self,
        p: &impl Platform,
        job: Job,
        uploaded: Option<crate::engine::CloudObject>,
        moved_hash: Option<String>,
    ) {
        let path = job.path;
        match job.kind {
            JobKind::Download {
                temp,
                etag,
                size,
                content_hash,
                replaceable,
                base_hash,
                keep_both,
                expect_local,
            } => {
                // Only the cloud's metadata changed (a touched file, an
                // identical re-upload): its bytes are what was synced, so
                // nothing is placed. Kept local edits then simply go up.
                if base_hash.is_some() && moved_hash.is_some() && base_hash == moved_hash {
                    self.discard_temp(p, &path, &temp);
                    self.metadata_only_change(p, &path, etag, size, keep_both, expect_local);
                    return;
                }
                let target = local_path(&path);
                let arrived = Arrived {
                    bundle: &self.bundle,
                    temp: &temp,
                    target: &target,
                    size,
                    content_hash: content_hash.as_deref(),
                    moved_hash: moved_hash.as_deref(),
                    lazily: true,
                };
                // The local version the plan saw unchanged holds the base.
                let replaceable = replaceable.map(|stamp| Replaceable {
                    stamp,
                    hash: base_hash.clone(),
                });
                match verify_and_place(p, &arrived, replaceable.as_ref()) {
                    Ok(placed) => {
                        self.placed_lazily = true;
                        if placed.conflict_copy.is_some() {
                            self.report.conflicts += 1;
                            // The copy is a new local file: upload it this run.
                            self.replan = true;
                        }
                        self.report.downloaded += 1;
                        self.report.bytes_downloaded += size;
                        self.changes
                            .push((records::path_key(SYNC_PARTIAL, &self.bundle, &path), None));
                        self.record(p, &path, etag, size, placed.stamp, placed.hash, false);
                    }
                    Err(f) => {
                        self.discard_temp(p, &path, &temp);
                        self.file_failed(p, &path, &f, false);
                    }
                }
            }
            JobKind::Upload { expect_local } => {
                let Some(object) = uploaded else {
                    self.file_failed(p, &path, &Failure::unknown("the host did not say what it wrote"), true);
                    return;
                };
                self.report.uploaded += 1;
                self.report.bytes_uploaded += object.size;
                let hash = object
                    .content_hash
                    .as_deref()
                    .and_then(|h| h.strip_prefix("sha256:"))
                    .map(str::to_ascii_lowercase);
                if self.local_is(p, &path, Some(expect_local)) {
                    self.record(p, &path, object.etag, object.size, expect_local, hash, true);
                } else {
                    // Edited while it went up: what the cloud holds may not be
                    // what the file holds now. Recording the old stamp makes
                    // the next round send the file again.
                    self.record(p, &path, object.etag, object.size, expect_local, None, true);
                    self.changed_under_run(&path);
                }
            }
        }
    }

    /// The cloud's new version holds the bytes last synced: its record takes
    /// the new etag. For a conflict the local edit stays recorded as an edit
    /// (the old stamp and hash), so the next round sends it up.
    fn metadata_only_change(
        &mut self,
        p: &impl Platform,
        path: &str,
        etag: String,
        size: u64,
        keep_both: bool,
        expect_local: Option<LocalStamp>,
    ) {
        self.changes
            .push((records::path_key(SYNC_PARTIAL, &self.bundle, path), None));
        let key = records::path_key(SYNCED, &self.bundle, path);
        let Ok(Some(mut rec)) = records::get::<SyncedRecord>(p, &key) else {
            self.changed_under_run(path);
            return;
        };
        rec.etag = etag;
        rec.size = size;
        if keep_both {
            self.changed_under_run(path);
        } else if let (Some(stamp), true) = (expect_local, self.local_is(p, path, expect_local)) {
            // The local file holds those bytes too: it is in sync as it is.
            rec.local = stamp;
            rec.cloud_only = false;
        } else {
            self.changed_under_run(path);
        }
        self.changes.push((key, Some(records::encode(&rec))));
        self.settled.push(path.to_string());
        self.report.done += 1;
    }

    /// A failure of one file, for the report and for people: once per run,
    /// however many rounds meet it.
    fn note_failure(&mut self, p: &impl Platform, path: &str, reason: &str, upload: bool) {
        if upload {
            self.push_failed = true;
        } else {
            self.pull_failed = true;
        }
        if !self.failed_paths.insert(path.to_string()) {
            return;
        }
        self.report.failed += 1;
        self.decide(p, path, SyncAction::Fail, reason);
        self.report.last_error = Some(format!("{path}: {reason}"));
        if self.report.failures.len() < MAX_LISTED {
            self.report.failures.push((path.to_string(), reason.to_string()));
        }
        let file = AppFile {
            bundle: self.bundle.clone(),
            path: path.to_string(),
        };
        p.report_failure(&uri_of(&file), reason);
    }

    fn transfer_failed(&mut self, p: &impl Platform, path: &str, f: &Failure, upload: bool) {
        match f.cloud {
            // Changed or gone since the scan: the next round sees it as it is.
            Some(CloudErrorKind::PreconditionFailed) | Some(CloudErrorKind::NotFound) => {
                self.files.remove(path);
                self.changed_under_run(path);
            }
            _ => self.file_failed(p, path, f, upload),
        }
    }

    /// One file failed, alone: every other file goes on. Only failures that
    /// every other file would meet too (no network, credentials refused)
    /// end the run.
    fn file_failed(&mut self, p: &impl Platform, path: &str, f: &Failure, upload: bool) {
        let phase_failed = if upload {
            SyncState::UploadFailed
        } else {
            SyncState::DownloadFailed
        };
        let error = match f.cloud {
            Some(CloudErrorKind::Network) => {
                // The run ends only when every other file would meet it too
                // (the device offline, the cloud not answering); a transfer
                // that broke while the cloud still answers fails alone, and
                // the next run tries it again.
                let e = network_error_type(p);
                if !p.device_status().network_available || p.cloud_ready(&self.bundle).is_err() {
                    self.fatal = Some((phase_failed, e));
                }
                e
            }
            Some(CloudErrorKind::Unauthorized) => {
                self.fatal = Some((phase_failed, ErrorType::NoError));
                ErrorType::NoError
            }
            Some(CloudErrorKind::LocalNoSpace) => ErrorType::LocalStorageFull,
            Some(CloudErrorKind::StorageFull) => ErrorType::CloudStorageFull,
            _ => ErrorType::NoError,
        };
        if error != ErrorType::NoError {
            self.errors.push(error);
        }
        self.report.done += 1;
        self.note_failure(p, path, &f.reason, upload);
        self.files.remove(path);
        if upload {
            let stamp = p
                .stat(&self.bundle, &local_path(path))
                .ok()
                .flatten()
                .filter(|s| s.is_file())
                .map(LocalStamp::from);
            self.set_file_state(path, FileSyncState::UploadFailure, stamp);
        }
    }

    /// A cloud file the device shows by its thumbnail: made, then recorded
    /// cloud-only. A file that is no image this device can read is recorded
    /// too (listed without a picture).
    fn placeholder(&mut self, p: &impl Platform, path: &str, etag: String, size: u64) {
        let thumb = thumbnail_path(path);
        let made = if self.placeholders {
            p.make_thumbnail(&self.bundle, path, &thumb, THUMBNAIL_EDGE)
        } else {
            Ok(()) // an app's evicted file: no picture to show
        };
        match made {
            Ok(()) => {}
            Err(e) if matches!(e.kind, CloudErrorKind::Other) => {
                let file = AppFile {
                    bundle: self.bundle.clone(),
                    path: path.to_string(),
                };
                p.report_failure(&uri_of(&file), &format!("no thumbnail: {}", e.message));
            }
            Err(e) => return self.transfer_failed(p, path, &Failure::cloud(&e), false),
        }
        let record = SyncedRecord {
            etag,
            size,
            local: LocalStamp::NONE,
            hash: None,
            uploaded: false,
            recorded_ms: p.now_ms(),
            cloud_only: true,
            first_ms: self.first_ms(path),
        };
        self.changes.push((
            records::path_key(SYNCED, &self.bundle, path),
            Some(records::encode(&record)),
        ));
        self.changes
            .push((records::path_key(FILE_STATE, &self.bundle, path), None));
        self.report.downloaded += 1;
        self.report.done += 1;
    }

    /// Deletes the local file only if it is still the version the plan saw
    /// and no process has it open: the host sets it aside under a write
    /// lease and removes it only if it is the very file checked, so an edit
    /// landing between the check and the removal is never lost.
    fn delete_local(&mut self, p: &impl Platform, path: &str, expect_local: LocalStamp) {
        self.seq += 1;
        let aside = format!("{STAGING_DIR}/delete-{:x}-{}-{}", fnv(path), p.now_ms(), self.seq);
        match p.evict(&self.bundle, &local_path(path), expect_local, &aside) {
            Ok(()) => {
                self.report.deleted_local += 1;
                self.forget(path);
                self.prune_empty_folders(p, path);
            }
            // Changed since the scan, gone, or open in another process:
            // kept, and looked at again.
            Err(e)
                if matches!(
                    e.kind,
                    IoErrorKind::Other | IoErrorKind::NotFound | IoErrorKind::WouldBlock
                ) =>
            {
                self.changed_under_run(path);
            }
            Err(e) => self.file_failed(p, path, &Failure::io(&e), false),
        }
    }

    /// After a local delete, the folders it leaves empty go too (a folder
    /// deleted in the cloud is deleted here); one that is not empty stays.
    fn prune_empty_folders(&self, p: &impl Platform, path: &str) {
        let mut dir = path;
        while let Some((parent, _)) = dir.rsplit_once('/') {
            if p.remove_dir(&self.bundle, &local_path(parent)).is_err() {
                break;
            }
            dir = parent;
        }
    }

    fn delete_remote(&mut self, p: &impl Platform, path: &str, etag: &str) {
        // Right before acting: the local file must still be gone.
        if !self.local_is(p, path, None) {
            self.changed_under_run(path);
            return;
        }
        match p.cloud_delete(&self.bundle, path, Some(etag)) {
            Ok(()) => {
                self.report.deleted_remote += 1;
                self.forget(path);
            }
            Err(e) if e.kind == CloudErrorKind::NotFound => self.forget(path),
            Err(e) => self.transfer_failed(p, path, &Failure::cloud(&e), true),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        p: &impl Platform,
        path: &str,
        etag: String,
        size: u64,
        local: LocalStamp,
        hash: Option<String>,
        uploaded: bool,
    ) {
        let record = SyncedRecord {
            etag,
            size,
            local,
            hash,
            uploaded,
            recorded_ms: p.now_ms(),
            cloud_only: false,
            first_ms: self.first_ms(path),
        };
        self.changes.push((
            records::path_key(SYNCED, &self.bundle, path),
            Some(records::encode(&record)),
        ));
        self.changes
            .push((records::path_key(FILE_STATE, &self.bundle, path), None));
        self.settled.push(path.to_string());
        self.report.done += 1;
    }

    fn first_ms(&self, path: &str) -> u64 {
        self.first.get(path).copied().unwrap_or(self.round_ms)
    }

    fn forget(&mut self, path: &str) {
        self.changes.push((records::path_key(SYNCED, &self.bundle, path), None));
        self.changes
            .push((records::path_key(FILE_STATE, &self.bundle, path), None));
        self.settled.push(path.to_string());
        self.report.done += 1;
    }

    fn set_file_state(&mut self, path: &str, state: FileSyncState, stamp: Option<LocalStamp>) {
        let record = FileStateRecord { state, stamp };
        self.changes.push((
            records::path_key(FILE_STATE, &self.bundle, path),
            Some(records::encode(&record)),
        ));
    }

    fn discard_temp(&mut self, p: &impl Platform, path: &str, temp: &str) {
        let _ = p.remove_file(&self.bundle, temp);
        self.changes
            .push((records::path_key(SYNC_PARTIAL, &self.bundle, path), None));
    }

    /// Ends every transfer and drops what was still to do, because the run
    /// as a whole failed: each file given up on is named with the reason,
    /// the changes not even started are counted.
    fn cancel_all(&mut self, p: &impl Platform) {
        let why = match &self.report.last_error {
            Some(e) => format!("not synced: the run ended ({e})"),
            None => "not synced: the run ended".to_string(),
        };
        let arrived = std::mem::take(&mut self.arrived)
            .into_iter()
            .map(|(job, _)| (job, false));
        let active = std::mem::take(&mut self.active).into_iter().map(|job| (job, true));
        for (job, running) in arrived.chain(active).collect::<Vec<_>>() {
            if running {
                p.cancel_transfer(job.transfer);
                p.release_transfer(job.transfer);
            }
            let upload = matches!(job.kind, JobKind::Upload { .. });
            if let JobKind::Download { temp, .. } = &job.kind {
                self.discard_temp(p, &job.path, temp);
            }
            self.note_failure(p, &job.path, &why, upload);
            self.files.remove(&job.path);
        }
        let left = self.pull.len() + self.push.len();
        if left > 0 {
            self.report
                .notes
                .push(format!("{left} more changes were not made: {why}"));
        }
        self.pull.clear();
        self.push.clear();
        self.files.clear();
    }

    /// Commits the waiting records at once (one durable write per batch):
    /// when `now`, when enough wait, or when the last commit is old enough.
    fn flush(&mut self, p: &impl Platform, now: bool) {
        if self.changes.is_empty() {
            return;
        }
        let clock = p.now_ms();
        let due = now
            || self.changes.len() >= FLUSH_CHANGES
            || clock.saturating_sub(self.last_flush_ms) >= FLUSH_EVERY_MS
            || clock < self.last_flush_ms;
        if !due {
            return;
        }
        self.last_flush_ms = clock;
        for path in std::mem::take(&mut self.settled) {
            self.files.remove(&path);
        }
        if self.placed_lazily {
            // The renames the records name must be durable first.
            if let Err(e) = p.flush(&self.bundle) {
                self.report.last_error = Some(format!("cannot make the placed files durable: {e}"));
                self.fatal
                    .get_or_insert((SyncState::DownloadFailed, ErrorType::NoError));
                return;
            }
            self.placed_lazily = false;
        }
        let changes = std::mem::take(&mut self.changes);
        if let Err(e) = p.meta_commit(changes) {
            // The steps stand on disk and in the cloud; unrecorded ones are
            // found equal (or kept as copies) by the next run.
            self.report.last_error = Some(format!("metadata write failed: {e}"));
            self.fatal
                .get_or_insert((SyncState::DownloadFailed, ErrorType::NoError));
        }
    }

    fn local_is(&self, p: &impl Platform, path: &str, expect: Option<LocalStamp>) -> bool {
        match p.stat(&self.bundle, &local_path(path)) {
            Ok(Some(s)) if s.is_file() => Some(LocalStamp::from(s)) == expect,
            Ok(None) => expect.is_none(),
            _ => false,
        }
    }

    fn warning(&self) -> ErrorType {
        if self.errors.contains(&ErrorType::BatteryLevelWarning) {
            ErrorType::BatteryLevelWarning
        } else {
            ErrorType::NoError
        }
    }

    /// Files changed under the run and were left for the next one.
    pub fn unsettled(&self) -> bool {
        self.replan
    }

    /// `path` changed between the scan and its step (or the cloud's listing
    /// and its own answer disagree): the next round looks again.
    fn changed_under_run(&mut self, path: &str) {
        self.replan = true;
        if self.unsettled.len() < MAX_LISTED {
            self.unsettled.insert(path.to_string());
        }
    }

    /// The run ends with files still changing after its last round: each is
    /// said (a decision and a note), never left in silence.
    fn left_unsettled(&mut self, p: &impl Platform) {
        if !self.replan || self.unsettled.is_empty() {
            return;
        }
        let why = "it kept changing during the run (or the cloud's listing and its own answer disagree): left for the next run";
        for path in std::mem::take(&mut self.unsettled) {
            self.decide(p, &path, SyncAction::Skip, why);
            if self.report.notes.len() < MAX_LISTED {
                self.report.notes.push(format!("{path}: {why}"));
            }
        }
    }

    fn terminal(&self) -> SyncProgress {
        if self.refused {
            // A refusal is no failure: nothing was changed on either side.
            return SyncProgress {
                state: SyncState::Stopped,
                error: ErrorType::NoError,
            };
        }
        let highest = |extra: ErrorType| {
            self.errors
                .iter()
                .copied()
                .chain([extra])
                .max_by_key(|e| e.priority())
                .unwrap_or(ErrorType::NoError)
        };
        if let Some((state, error)) = self.fatal {
            return SyncProgress {
                state,
                error: highest(error),
            };
        }
        if self.pull_failed || self.push_failed {
            let state = if self.pull_failed {
                SyncState::DownloadFailed
            } else {
                SyncState::UploadFailed
            };
            return SyncProgress {
                state,
                error: highest(ErrorType::NoError),
            };
        }
        SyncProgress {
            state: SyncState::Completed,
            error: self.warning(),
        }
    }

    fn send(&mut self, out: &mut Vec<SyncProgress>, progress: SyncProgress) {
        self.current = progress;
        self.report.last = Some(progress);
        out.push(progress);
    }
}

/// The app's folder's identity (its inode), `None` when it is not there.
fn folder_id(p: &impl Platform, bundle: &str) -> Option<u64> {
    p.stat(bundle, LOCAL_CLOUD_DIR)
        .ok()
        .flatten()
        .filter(|s| s.is_dir())
        .map(|s| s.inode)
}

fn local_path(path: &str) -> String {
    format!("{LOCAL_CLOUD_DIR}/{path}")
}

/// The network failed: NETWORK_UNAVAILABLE, or WIFI_UNAVAILABLE when only
/// a metered network is left.
fn network_error_type(p: &impl Platform) -> ErrorType {
    let d = p.device_status();
    if d.network_available && !d.wifi_available {
        ErrorType::WifiUnavailable
    } else {
        ErrorType::NetworkUnavailable
    }
}

fn cloud_error_type(p: &impl Platform, kind: CloudErrorKind) -> ErrorType {
    match kind {
        CloudErrorKind::Network => network_error_type(p),
        CloudErrorKind::StorageFull => ErrorType::CloudStorageFull,
        CloudErrorKind::LocalNoSpace => ErrorType::LocalStorageFull,
        _ => ErrorType::NoError,
    }
}

/// Why a plan was refused, for people; `after_work`: this run already
/// synced files in an earlier round or window.
fn describe(r: &Refusal, after_work: bool) -> String {
    let (unchanged, undeleted) = if after_work {
        (
            "What this run synced before stands; nothing more was changed.",
            "nothing more was deleted",
        )
    } else {
        ("Nothing was changed.", "nothing was deleted")
    };
    match r {
        Refusal::SideLooksEmpty {
            side: Side::Local,
            synced,
        } => format!(
            "the device's folder looks empty (or is missing): none of the {synced} files in sync is still at its \
             path; a missing folder is never taken as \"everything was deleted\". {unchanged} If you \
             emptied it, or moved its files elsewhere in it, on purpose, confirm that the cloud copies at the old \
             paths are to be deleted (--confirm-empty-device, with --yes as that deletes more than half)."
        ),
        Refusal::SideLooksEmpty {
            side: Side::Cloud,
            synced,
        } => format!(
            "the cloud looks empty: none of the {synced} files in sync is still at its path; a moved folder or a \
             failed listing is never taken as \"everything was deleted\". {unchanged} If you emptied it, \
             or moved its files elsewhere in it, on purpose, confirm that the device's copies at the old paths \
             are to be deleted (--confirm-empty-cloud, with --yes as that deletes more than half)."
        ),
        Refusal::FolderReplaced { deletes } => format!(
            "the device's folder is not the one that was synced (it was moved away and made anew, or restored): \
             {deletes} files in sync are not in it, and their absence is not taken as \"deleted\". {unchanged} \
             If the cloud copies are to be deleted, confirm it (--confirm-empty-device, with --yes as that deletes \
             more than half)."
        ),
        Refusal::MassDeletion {
            deletes,
            since: Some((deleted, baseline)),
            ..
        } => format!(
            "since deletions were last confirmed, {deleted} of the {baseline} files then in sync were deleted; \
             this run would delete {deletes} more, more than half in all; {undeleted}. Confirm to go \
             ahead (--yes)."
        ),
        Refusal::DeletionsGrew { counted, now } => format!(
            "this run counted {counted} deletions still to make when it began, but the files left to sync \
             would now delete {now}: a folder may have gone missing while it ran. It stopped there; what it \
             synced before stands, and nothing more was deleted. Sync again to plan afresh."
        ),
        Refusal::MassDeletion { deletes, synced, .. } => format!(
            "this run would delete {deletes} of {synced} synced files (more than half); {undeleted}. \
             Confirm to go ahead (--yes)."
        ),
    }
}
