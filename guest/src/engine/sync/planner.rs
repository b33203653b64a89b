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

use crate::engine::records::LocalStamp;

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
}

pub type LocalTree = BTreeMap<String, LocalFile>;
pub type RemoteTree = BTreeMap<String, RemoteFile>;
pub type SyncedTree = BTreeMap<String, SyncedFile>;

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
    /// local file may be there).
    Download {
        path: String,
        etag: String,
        expect_local: Option<LocalStamp>,
    },
    /// Delete the local file, only if it is still `expect_local`.
    DeleteLocal { path: String, expect_local: LocalStamp },
    /// Delete the cloud object, only if it is still `etag`.
    DeleteRemote { path: String, etag: String },
    /// Both sides changed differently: the local version moves aside as a
    /// visible conflict copy (uploaded like any new file on the next round),
    /// then the cloud version comes down under the name.
    KeepBoth {
        path: String,
        expect_local: LocalStamp,
        etag: String,
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

/// How a plan is made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// The user has seen a [`Refusal`] and wants the deletions carried out.
    pub confirmed: bool,
    /// Cloud files are not downloaded but kept as placeholders (the gallery).
    pub placeholders: bool,
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

    fn is_delete(&self) -> bool {
        matches!(self, Op::DeleteLocal { .. } | Op::DeleteRemote { .. })
    }
}

/// Why a plan is refused rather than carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// One side looks empty while the synced tree is not: a missing root or
    /// a failed listing is never read as "everything was deleted".
    SideLooksEmpty { side: &'static str, synced: usize },
    /// The plan would delete more than half of the synced files.
    MassDeletion { deletes: usize, synced: usize },
}

/// Plans one round. Pure: the same trees always give the same operations,
/// in path order. `confirmed`: the user has seen a [`Refusal`] and wants the
/// deletions carried out.
pub fn plan(local: &LocalTree, remote: &RemoteTree, synced: &SyncedTree, confirmed: bool) -> Result<Vec<Op>, Refusal> {
    plan_with(
        local,
        remote,
        synced,
        Options {
            confirmed,
            placeholders: false,
        },
    )
}

/// [`plan`], with every option.
pub fn plan_with(local: &LocalTree, remote: &RemoteTree, synced: &SyncedTree, o: Options) -> Result<Vec<Op>, Refusal> {
    let confirmed = o.confirmed;
    if !synced.is_empty() && !confirmed {
        let held_locally = synced.values().filter(|s| !s.cloud_only).count();
        if local.is_empty() && held_locally > 0 {
            return Err(Refusal::SideLooksEmpty {
                side: "local",
                synced: held_locally,
            });
        }
        if remote.is_empty() {
            return Err(Refusal::SideLooksEmpty {
                side: "cloud",
                synced: synced.len(),
            });
        }
    }
    let paths: BTreeSet<&String> = local.keys().chain(remote.keys()).chain(synced.keys()).collect();
    let ops: Vec<Op> = paths
        .into_iter()
        .filter_map(|p| plan_path(p, local.get(p), remote.get(p), synced.get(p), o.placeholders))
        .collect();
    // Measured against the files held on the device too: cloud-only ones
    // cannot be deleted locally and must not dilute the ratio.
    let held = synced.values().filter(|s| !s.cloud_only).count();
    let deletes = ops.iter().filter(|o| o.is_delete()).count();
    if !confirmed && held >= 4 && deletes * 2 > held {
        return Err(Refusal::MassDeletion { deletes, synced: held });
    }
    Ok(ops)
}

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
    let path = path.to_string();
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
    let over_placeholder = matches!((l, s), (Some(l), Some(s)) if s.cloud_only && l.stamp != s.local);
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
                        path,
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
                path,
                expect_local: l.stamp,
                if_match: r.map(|r| r.etag.clone()),
            }),
            (None, Some(r)) => Some(Op::DeleteRemote {
                path,
                etag: r.etag.clone(),
            }),
            (None, None) => None,
        },
        (false, true) => match (r, l) {
            // A cloud-only file stays cloud-only when the cloud changes it.
            (Some(r), None) if placeholders || s.is_some_and(|s| s.cloud_only) => Some(Op::Placeholder {
                path,
                etag: r.etag.clone(),
                size: r.size,
            }),
            (Some(r), l) => Some(Op::Download {
                path,
                etag: r.etag.clone(),
                expect_local: l.map(|l| l.stamp),
            }),
            (None, Some(l)) => Some(Op::DeleteLocal {
                path,
                expect_local: l.stamp,
            }),
            // A placeholder whose cloud file is gone.
            (None, None) => s.map(|_| Op::ForgetSynced { path }),
        },
        (true, true) => match (l, r) {
            (None, None) => Some(Op::ForgetSynced { path }),
            // An edit beats a delete, on either side.
            (None, Some(r)) if placeholders => Some(Op::Placeholder {
                path,
                etag: r.etag.clone(),
                size: r.size,
            }),
            (None, Some(r)) => Some(Op::Download {
                path,
                etag: r.etag.clone(),
                expect_local: None,
            }),
            (Some(l), None) => Some(Op::Upload {
                path,
                expect_local: l.stamp,
                if_match: None,
            }),
            (Some(l), Some(r)) if same_content(l, r) => Some(Op::RecordSynced {
                path,
                etag: r.etag.clone(),
                local: l.stamp,
                hash: l.hash.clone(),
            }),
            (Some(l), Some(r)) => Some(Op::KeepBoth {
                path,
                expect_local: l.stamp,
                etag: r.etag.clone(),
            }),
        },
    }
}

#[cfg(test)]
mod tests;
