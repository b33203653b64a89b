//! The sync planner: a pure function from three trees to operations, as in
//! Dropbox's Nucleus.
//!
//! - the **local** tree: what the app's folder holds (size, mtime, inode, and
//!   a content hash where one was computed);
//! - the **remote** tree: what the cloud holds (etag, and a content hash
//!   where the cloud gives one);
//! - the **synced** tree: the last state both sides agreed on (the merge
//!   base). It is what tells "deleted here" from "created there".
//!
//! The planner reads and writes nothing. Every operation names the versions
//! it expects on both sides, so the executor can refuse to act on a file
//! that changed after the scan and simply plan again from fresh
//! observations: a stopped or crashed run resumes by planning again.

use std::collections::{BTreeMap, BTreeSet};

use crate::engine::records::{GuardRecord, LocalStamp};
use crate::engine::SyncAction;

/// A local file as scanned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalFile {
    pub stamp: LocalStamp,
    /// sha256 of the content, where it was computed (new or changed files).
    pub hash: Option<String>,
    /// The stamp matches the synced record but the content does not: an
    /// edit within the clock's resolution, found by hashing.
    pub changed_in_place: bool,
}

/// A cloud object as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    pub etag: String,
    pub size: u64,
    /// sha256 of the content, where known.
    pub hash: Option<String>,
}

/// What both sides agreed on after the last sync of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncedFile {
    pub etag: String,
    pub local: LocalStamp,
    pub hash: Option<String>,
    /// Only the cloud holds the content; the device shows a placeholder
    /// (the gallery's thumbnail). Its absence locally is not a deletion.
    pub cloud_only: bool,
    /// When the path was first recorded in sync (0: long ago).
    pub first_ms: u64,
}

pub type LocalTree = BTreeMap<String, LocalFile>;
pub type RemoteTree = BTreeMap<String, RemoteFile>;
pub type SyncedTree = BTreeMap<String, SyncedFile>;
/// Paths one side holds something unknown at (a symlink, a special file, a
/// name that is not UTF-8, a folder that cannot be read): nothing at or
/// below them is planned, so what cannot be seen is never taken for deleted.
pub type Blocked = BTreeSet<String>;

/// One step. Each names what it expects to find, so that nothing changed
/// after the scan is ever overwritten or deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Send the local file up; `if_match` is the cloud version it replaces
    /// (`None`: there must be no object yet).
    Upload {
        path: String,
        expect_local: LocalStamp,
        if_match: Option<String>,
    },
    /// Bring the cloud version down, replacing `expect_local` (`None`: no
    /// local file may be there). `base_hash`: the content last synced, so
    /// that a cloud change of metadata only (same bytes) moves nothing.
    Download {
        path: String,
        etag: String,
        expect_local: Option<LocalStamp>,
        base_hash: Option<String>,
    },
    /// Delete the local file, only if it is still `expect_local`.
    DeleteLocal { path: String, expect_local: LocalStamp },
    /// Delete the cloud object, only if it is still `etag`.
    DeleteRemote { path: String, etag: String },
    /// Both sides changed differently: the local version moves aside as a
    /// visible conflict copy (uploaded like any new file on the next round),
    /// then the cloud version comes down under the name. If the cloud's
    /// bytes turn out to be `base_hash` (only its metadata changed), the
    /// local edit simply goes up instead.
    KeepBoth {
        path: String,
        expect_local: LocalStamp,
        etag: String,
        base_hash: Option<String>,
    },
    /// Both sides hold the same content: just record it.
    RecordSynced {
        path: String,
        etag: String,
        local: LocalStamp,
        hash: Option<String>,
    },
    /// New or changed in the cloud, and the device keeps cloud files as
    /// placeholders ([`Options::placeholders`]): record it cloud-only.
    Placeholder { path: String, etag: String, size: u64 },
    /// Gone on both sides: forget it.
    ForgetSynced { path: String },
}

/// What the user has confirmed after seeing a [`Refusal`]. Each case is
/// named on its own: confirming deletions never confirms that an empty side
/// may empty the other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Confirm {
    /// Deletions beyond the guard's share.
    pub deletions: bool,
    /// The device's folder is empty (or missing): delete everything in the cloud.
    pub empty_local: bool,
    /// The cloud is empty (or its listing came back empty): delete everything here.
    pub empty_cloud: bool,
}

impl From<bool> for Confirm {
    /// `true` confirms every case (tests, and callers that mean "all").
    fn from(all: bool) -> Self {
        if all {
            Confirm::ALL
        } else {
            Confirm::default()
        }
    }
}

impl Confirm {
    pub const ALL: Confirm = Confirm {
        deletions: true,
        empty_local: true,
        empty_cloud: true,
    };
}

/// How a plan is made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub confirm: Confirm,
    /// Cloud files are not downloaded but kept as placeholders (the gallery).
    pub placeholders: bool,
    /// The deletion guard's count since deletions were last confirmed, so
    /// that many runs each deleting a little cannot erode a folder.
    pub guard: GuardRecord,
    /// At most this many ops are kept (`None`: all); the rest of the tree
    /// is still counted for the guards, and planned again in windows.
    pub window: Option<usize>,
    /// This plan goes on after an earlier window's: the guards passed on
    /// the whole tree then, and these many deletions were counted beyond
    /// it; more than that is refused (a folder vanished meanwhile).
    pub allowance: Option<usize>,
    /// The device folder now (its inode), against the guard's.
    pub folder: Option<u64>,
}

/// Where the tree is planned on after a window, and how many deletions the
/// whole plan counted beyond it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rest {
    pub after: String,
    pub deletes: usize,
}

impl Op {
    pub fn path(&self) -> &str {
        match self {
            Op::Upload { path, .. }
            | Op::Download { path, .. }
            | Op::DeleteLocal { path, .. }
            | Op::DeleteRemote { path, .. }
            | Op::KeepBoth { path, .. }
            | Op::RecordSynced { path, .. }
            | Op::Placeholder { path, .. }
            | Op::ForgetSynced { path } => path,
        }
    }

    /// What the step does and why, for logs and a dry run's plan.
    pub fn decision(&self) -> (SyncAction, &'static str) {
        match self {
            Op::Upload { if_match: None, .. } => (SyncAction::Upload, "new on this device"),
            Op::Upload { .. } => (SyncAction::Upload, "changed on this device"),
            Op::Download { expect_local: None, .. } => (SyncAction::Download, "new in the cloud"),
            Op::Download { .. } => (SyncAction::Download, "changed in the cloud"),
            Op::DeleteLocal { .. } => (SyncAction::DeleteLocal, "deleted in the cloud"),
            Op::DeleteRemote { .. } => (SyncAction::DeleteCloud, "deleted on this device"),
            Op::KeepBoth { .. } => (
                SyncAction::Conflict,
                "changed on both sides: unless the contents are equal, the local version is kept as a conflict copy and the cloud's comes down",
            ),
            Op::RecordSynced { .. } => (SyncAction::Record, "the same content on both sides"),
            Op::Placeholder { .. } => (
                SyncAction::Placeholder,
                "new or changed in the cloud: shown by its placeholder",
            ),
            Op::ForgetSynced { .. } => (SyncAction::Forget, "gone on both sides"),
        }
    }

    pub fn is_delete(&self) -> bool {
        matches!(self, Op::DeleteLocal { .. } | Op::DeleteRemote { .. })
    }
}

/// Which side looks empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Local,
    Cloud,
}

/// Why a plan is refused rather than carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// One side looks empty while the synced tree is not: a missing root or
    /// a failed listing is never read as "everything was deleted".
    SideLooksEmpty { side: Side, synced: usize },
    /// A later window would delete more files than the whole plan counted
    /// when the guards passed: a folder went missing while the run went on.
    DeletionsGrew { counted: usize, now: usize },
    /// The device folder is not the one synced (moved away and made anew,
    /// restored): the files it lacks are not taken as deleted in the cloud.
    FolderReplaced { deletes: usize },
    /// The plan would delete more than half of the synced files (`since`:
    /// none), or bring the files deleted since deletions were last
    /// confirmed to more than half of the `baseline` then (`since`: how many
    /// were deleted before this run).
    MassDeletion {
        deletes: usize,
        synced: usize,
        since: Option<(u64, u64)>,
    },
}

/// Whether `path` or a folder above it is blocked.
pub fn is_blocked(blocked: &Blocked, path: &str) -> bool {
    if blocked.is_empty() {
        return false;
    }
    if blocked.contains(path) {
        return true;
    }
    path.match_indices('/').any(|(i, _)| blocked.contains(&path[..i]))
}

/// What the guards need to know of the whole tree, gathered as paths pass
/// (a plan never needs the trees themselves, only these and its ops).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Files in sync and held on the device (not cloud-only, not blocked).
    pub held: usize,
    /// Files in sync, not blocked.
    pub synced_visible: usize,
    /// Some file in sync and held is still on the device.
    pub local_kept: bool,
    /// Some file in sync is still in the cloud.
    pub cloud_kept: bool,
    /// Held files that were in sync when deletions were last confirmed.
    pub in_baseline: u64,
    pub deletes: usize,
    /// Deletions in the cloud of files gone from the device.
    pub remote_deletes: usize,
    /// Deletions of files in sync when deletions were last confirmed.
    pub baseline_deletes: usize,
    /// Files this plan brings into sync that were not.
    pub new_files: u64,
}

/// A plan made path by path, in path order: the merge of the three trees
/// feeds it one path at a time, so no tree is ever held whole.
pub struct Planner {
    o: Options,
    tally: Tally,
    ops: Vec<Op>,
    /// The last path an op was kept for.
    last_kept: Option<String>,
    /// Ops past the window were only counted: some, and their deletions.
    dropped: usize,
    dropped_deletes: usize,
}

/// A plan and what the guards counted.
#[derive(Debug)]
pub struct Plan {
    pub ops: Vec<Op>,
    pub tally: Tally,
    /// The guard as this run sees it ([`settled`]).
    pub guard: GuardRecord,
    /// The tree goes on past this plan's window.
    pub rest: Option<Rest>,
}

impl Planner {
    pub fn new(o: Options) -> Self {
        Planner {
            o,
            tally: Tally::default(),
            ops: Vec::new(),
            last_kept: None,
            dropped: 0,
            dropped_deletes: 0,
        }
    }

    /// One path, as each tree shows it; `blocked` when it or a folder
    /// above is blocked (nothing is planned for it).
    pub fn path(
        &mut self,
        path: &str,
        l: Option<&LocalFile>,
        r: Option<&RemoteFile>,
        s: Option<&SyncedFile>,
        blocked: bool,
    ) {
        if blocked {
            return;
        }
        let t = &mut self.tally;
        if let Some(s) = s {
            t.synced_visible += 1;
            t.cloud_kept |= r.is_some();
            if !s.cloud_only {
                t.held += 1;
                t.local_kept |= l.is_some();
                if s.first_ms <= self.o.guard.since_ms {
                    t.in_baseline += 1;
                }
            }
        }
        let Some(op) = plan_path(path, l, r, s, self.o.placeholders) else {
            return;
        };
        if op.is_delete() {
            t.deletes += 1;
            t.remote_deletes += usize::from(matches!(op, Op::DeleteRemote { .. }));
            if s.is_some_and(|s| s.first_ms <= self.o.guard.since_ms) {
                t.baseline_deletes += 1;
            }
        }
        let brings_in = matches!(
            op,
            Op::Upload { .. } | Op::Download { .. } | Op::RecordSynced { .. } | Op::KeepBoth { .. }
        );
        if brings_in && s.is_none() {
            t.new_files += 1;
        }
        if self.full() {
            self.dropped += 1;
            self.dropped_deletes += usize::from(op.is_delete());
            return;
        }
        self.last_kept = Some(path.to_string());
        self.ops.push(op);
    }

    /// Ops planned so far.
    pub fn op_count(&self) -> usize {
        self.ops.len()
    }

    /// The window holds as many ops as it may.
    pub fn full(&self) -> bool {
        self.o.window.is_some_and(|w| self.ops.len() >= w)
    }

    /// A later window of a plan that passed the guards: the deletions it
    /// may hold, and where the tree goes on (`stopped_at`: the scan
    /// stopped with a full window).
    fn go_on(self, allowance: usize, stopped: bool) -> Result<Plan, Refusal> {
        let t = self.tally;
        if !self.o.confirm.deletions && t.deletes > allowance {
            return Err(Refusal::DeletionsGrew {
                counted: allowance,
                now: t.deletes,
            });
        }
        let rest = match (stopped, self.last_kept) {
            (true, Some(after)) => Some(Rest {
                after,
                deletes: allowance.saturating_sub(t.deletes),
            }),
            _ => None,
        };
        Ok(Plan {
            ops: self.ops,
            tally: t,
            guard: self.o.guard,
            rest,
        })
    }

    /// A later window's plan: `stopped` when the scan stopped at a full
    /// window rather than at the end of the tree.
    pub fn finish_window(self, stopped: bool) -> Result<Plan, Refusal> {
        match self.o.allowance {
            Some(allowance) => self.go_on(allowance, stopped),
            None => self.finish(),
        }
    }

    /// The plan, or why it is refused.
    pub fn finish(self) -> Result<Plan, Refusal> {
        let (o, t) = (self.o, self.tally);
        // A side "looks empty" when it holds none of the files in sync,
        // even if it holds new ones: an unmounted drive an app wrote one
        // file into, a moved cloud folder someone put a file in, are still
        // emptied sides.
        if t.held > 0 && !o.confirm.empty_local && !t.local_kept {
            return Err(Refusal::SideLooksEmpty {
                side: Side::Local,
                synced: t.held,
            });
        }
        if t.synced_visible > 0 && !o.confirm.empty_cloud && !t.cloud_kept {
            return Err(Refusal::SideLooksEmpty {
                side: Side::Cloud,
                synced: t.synced_visible,
            });
        }
        let replaced = matches!((o.guard.folder, o.folder), (Some(was), Some(now)) if was != now);
        if replaced && t.remote_deletes > 0 && !o.confirm.empty_local {
            return Err(Refusal::FolderReplaced {
                deletes: t.remote_deletes,
            });
        }
        // The baseline also counts the files first recorded in the round
        // that set it (a first sync records its files as it goes, so they
        // are only known the run after).
        let g = GuardRecord {
            baseline: o.guard.baseline.max(t.in_baseline),
            ..o.guard
        };
        if !o.confirm.deletions && t.deletes > 0 {
            if t.held >= 4 && t.deletes * 2 > t.held {
                return Err(Refusal::MassDeletion {
                    deletes: t.deletes,
                    synced: t.held,
                    since: None,
                });
            }
            // Counted from what is left, not from what runs planned: a
            // deletion that failed and is planned again counts once.
            let deleted = g.baseline.saturating_sub(t.in_baseline);
            let more = t.baseline_deletes as u64;
            if g.baseline >= MIN_BASELINE && (deleted + more) * 2 > g.baseline {
                return Err(Refusal::MassDeletion {
                    deletes: t.deletes,
                    synced: t.held,
                    since: Some((deleted, g.baseline)),
                });
            }
        }
        let rest = match (self.dropped, self.last_kept) {
            (0, _) | (_, None) => None,
            (_, Some(after)) => Some(Rest {
                after,
                deletes: self.dropped_deletes,
            }),
        };
        Ok(Plan {
            ops: self.ops,
            tally: t,
            guard: g,
            rest,
        })
    }
}

/// Plans one round with nothing blocked; `confirmed` confirms every case.
/// Pure: the same trees always give the same operations, in path order.
pub fn plan(local: &LocalTree, remote: &RemoteTree, synced: &SyncedTree, confirmed: bool) -> Result<Vec<Op>, Refusal> {
    let confirm = if confirmed { Confirm::ALL } else { Confirm::default() };
    plan_with(
        local,
        remote,
        synced,
        &Blocked::new(),
        Options {
            confirm,
            ..Options::default()
        },
    )
}

/// [`plan`], with blocked paths and every option: the trees merged in path
/// order through a [`Planner`], as the scan's streams are.
pub fn plan_with(
    local: &LocalTree,
    remote: &RemoteTree,
    synced: &SyncedTree,
    blocked: &Blocked,
    o: Options,
) -> Result<Vec<Op>, Refusal> {
    let paths: BTreeSet<&String> = local.keys().chain(remote.keys()).chain(synced.keys()).collect();
    let mut planner = Planner::new(o);
    for p in paths {
        planner.path(p, local.get(p), remote.get(p), synced.get(p), is_blocked(blocked, p));
    }
    planner.finish().map(|plan| plan.ops)
}

/// Below this many files in sync at the last confirmation, only the
/// per-run share guards deletions.
pub const MIN_BASELINE: u64 = 10;

/// Content known equal on both sides: hashes that match.
fn same_content(l: &LocalFile, r: &RemoteFile) -> bool {
    matches!((&l.hash, &r.hash), (Some(a), Some(b)) if a == b)
}

fn plan_path(
    path: &str,
    l: Option<&LocalFile>,
    r: Option<&RemoteFile>,
    s: Option<&SyncedFile>,
    placeholders: bool,
) -> Option<Op> {
    let local_changed = match (l, s) {
        // A file where a placeholder was: new local content.
        // Where a placeholder was, a file with the evicted copy's stamp is
        // that copy (an eviction cut short); anything else is new content.
        (Some(l), Some(s)) => (l.stamp != s.local || l.changed_in_place) && !(l.hash.is_some() && l.hash == s.hash),
        (None, Some(s)) => !s.cloud_only,
        (None, None) => false,
        (Some(_), None) => true,
    };
    // A new local file where only a placeholder was: whoever made it never
    // saw the cloud's version, so the two are in conflict, never replaced.
    // (The evicted copy's own bytes back again are no conflict.)
    let over_placeholder = matches!((l, s), (Some(l), Some(s))
        if s.cloud_only && l.stamp != s.local && !(l.hash.is_some() && l.hash == s.hash));
    let remote_changed = over_placeholder
        || match (r, s) {
            (Some(r), Some(s)) => r.etag != s.etag && !(r.hash.is_some() && r.hash == s.hash),
            (None, None) => false,
            _ => true,
        };
    match (local_changed, remote_changed) {
        (false, false) => {
            // Unchanged, but a metadata-only change (a touched file, a
            // re-uploaded identical object) refreshes the record.
            match (l, r, s) {
                (Some(l), Some(r), Some(s)) if l.stamp != s.local || r.etag != s.etag || s.cloud_only => {
                    Some(Op::RecordSynced {
                        path: path.to_string(),
                        etag: r.etag.clone(),
                        local: l.stamp,
                        hash: l.hash.clone().or_else(|| s.hash.clone()),
                    })
                }
                _ => None,
            }
        }
        // The expectations are always the current observations: an
        // "unchanged" side may differ from the record in metadata only.
        (true, false) => match (l, r) {
            (Some(l), r) => Some(Op::Upload {
                path: path.to_string(),
                expect_local: l.stamp,
                if_match: r.map(|r| r.etag.clone()),
            }),
            (None, Some(r)) => Some(Op::DeleteRemote {
                path: path.to_string(),
                etag: r.etag.clone(),
            }),
            (None, None) => None,
        },
        (false, true) => match (r, l) {
            // A cloud-only file stays cloud-only when the cloud changes it.
            (Some(r), None) if placeholders || s.is_some_and(|s| s.cloud_only) => Some(Op::Placeholder {
                path: path.to_string(),
                etag: r.etag.clone(),
                size: r.size,
            }),
            (Some(r), l) => Some(Op::Download {
                path: path.to_string(),
                etag: r.etag.clone(),
                expect_local: l.map(|l| l.stamp),
                base_hash: s.and_then(|s| s.hash.clone()).filter(|_| l.is_some()),
            }),
            (None, Some(l)) => Some(Op::DeleteLocal {
                path: path.to_string(),
                expect_local: l.stamp,
            }),
            // A placeholder whose cloud file is gone.
            (None, None) => s.map(|_| Op::ForgetSynced { path: path.to_string() }),
        },
        (true, true) => match (l, r) {
            (None, None) => Some(Op::ForgetSynced { path: path.to_string() }),
            // An edit beats a delete, on either side.
            (None, Some(r)) if placeholders => Some(Op::Placeholder {
                path: path.to_string(),
                etag: r.etag.clone(),
                size: r.size,
            }),
            (None, Some(r)) => Some(Op::Download {
                path: path.to_string(),
                etag: r.etag.clone(),
                expect_local: None,
                base_hash: None,
            }),
            (Some(l), None) => Some(Op::Upload {
                path: path.to_string(),
                expect_local: l.stamp,
                if_match: None,
            }),
            (Some(l), Some(r)) if same_content(l, r) => Some(Op::RecordSynced {
                path: path.to_string(),
                etag: r.etag.clone(),
                local: l.stamp,
                hash: l.hash.clone(),
            }),
            (Some(l), Some(r)) => Some(Op::KeepBoth {
                path: path.to_string(),
                expect_local: l.stamp,
                etag: r.etag.clone(),
                // Only a base the local file moved away from: a new file
                // over a placeholder has no base of its own.
                base_hash: s.filter(|s| !s.cloud_only).and_then(|s| s.hash.clone()),
            }),
        },
    }
}

#[cfg(test)]
mod tests;
