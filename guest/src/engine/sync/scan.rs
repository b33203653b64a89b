//! The three trees of one bundle — the local walk, the cloud listing and
//! the synced records — merged as three sorted streams, a page at a time,
//! each path planned as it passes: no tree is ever held whole, so memory
//! does not grow with the number of files (only with the plan's ops).
//!
//! Content is read only where a decision needs it: a file whose stamp
//! (size, mtime, ctime, inode) matches its record is unchanged, unless the
//! record was written within the clock's resolution of the file's last
//! change ("racily clean"), in which case it is hashed once and the record
//! refreshed. A re-sync with nothing changed reads no file content.
//!
//! What is neither a file nor absent — a symlink, a FIFO, a name that is not
//! UTF-8, a folder that cannot be read, on either side — is reported and
//! *blocked*: nothing at or below it is planned, so it is never taken for
//! a deleted file.

use std::collections::{BTreeMap, VecDeque};

use super::planner::{LocalFile, Options, Plan, Planner, Refusal, RemoteFile, SyncedFile};
use crate::engine::layout::{evicted_mark, evicted_marks};
use crate::engine::records::{self, GuardRecord, LocalStamp, SyncedRecord, RUN, SYNCED};
use crate::engine::uri::{check_relative_path, LOCAL_CLOUD_DIR};
use crate::engine::{ApiError, CloudError, FileKind, FileStat, IoError, IoErrorKind, Platform, TreeEntry};

/// A record written this close (ms) after the file's last change may have
/// missed an edit made in the same clock tick; such files are hashed once.
const RACY_MS: u64 = 2_000;

/// The file's last change, as far as its stamps tell (ms).
fn changed_ms(stat: &FileStat) -> u64 {
    stat.mtime_ns.max(stat.ctime_ns) / 1_000_000
}

/// Whether a file whose stamp matches its record may still have been
/// edited unseen: within the clock's resolution of the record being
/// written, or at any time where the host has no ctime. With `fine` stamps
/// (any write after a stat moves ctime) and a ctime, never: every recorded
/// stamp was taken by a stat after the file's last change.
pub fn racily_clean(record: &SyncedRecord, stat: &FileStat, fine: bool) -> bool {
    // A host that cannot tell a file's ctime (0: WASI runtimes give none)
    // cannot show an edit that put the size and mtime back: its stamps never
    // vouch for the content, which is hashed.
    stat.ctime_ns == 0 || (!fine && (record.recorded_ms == 0 || changed_ms(stat) + RACY_MS >= record.recorded_ms))
}

/// `run/<bundle>/guard`: the deletion guard's count ([`GuardRecord`]).
pub fn guard_key(bundle: &str) -> String {
    format!("{RUN}/{bundle}/guard")
}

/// A record to write (`Some`) or remove (`None`), by key.
type MetaChange = (String, Option<Vec<u8>>);

/// What a scan found and planned.
pub struct Scanned {
    /// The plan, or the guard's refusal.
    pub plan: Result<Plan, Refusal>,
    /// What the executor needs of the cloud for the paths with an op.
    pub remote: BTreeMap<String, RemoteFile>,
    /// When each path with an op was first recorded in sync.
    pub first: BTreeMap<String, u64>,
    /// Names not synced, and why (symlinks, special files, empty folders, ...).
    pub skipped: Vec<(String, String)>,
    /// Files that could not be read: they fail, alone.
    pub unreadable: Vec<(String, String)>,
    /// Records that could not be decoded (taken as absent: their files read
    /// as new, which ends in a conflict copy or a download, never a deletion).
    pub bad_records: usize,
    /// The deletion guard's count as stored (`None`: never kept yet).
    pub guard: Option<GuardRecord>,
    /// Records to rewrite: racily clean files found unchanged by hashing.
    pub refresh: Vec<(String, Option<Vec<u8>>)>,
}

#[derive(Debug)]
pub enum ScanError {
    Local(IoError),
    Cloud(CloudError),
    Meta(ApiError),
}

fn kind_reason(kind: FileKind) -> &'static str {
    match kind {
        FileKind::Symlink => "a symlink: never followed, never synced",
        FileKind::Special => "a FIFO, socket or device file: only regular files are synced",
        FileKind::Folder => "a folder",
        FileKind::File => "a file",
    }
}

/// Entries, records or cloud names asked of the host per call: however
/// large the folder, no call moves more than a page through the guest.
const PAGE: u32 = 1024;

/// A name the cloud listing holds.
enum Listed {
    Object(crate::engine::CloudObject),
    /// No object the engine can sync, and why.
    Unlisted(String),
}

/// The local walk, a page at a time, in path order.
#[derive(Default)]
struct LocalStream {
    buf: VecDeque<TreeEntry>,
    after: Option<String>,
    done: bool,
    /// The folder exists.
    found: bool,
}

impl LocalStream {
    fn head(&mut self, platform: &impl Platform, bundle: &str) -> Result<Option<&TreeEntry>, IoError> {
        while self.buf.is_empty() && !self.done {
            match platform.walk_page(bundle, LOCAL_CLOUD_DIR, self.after.as_deref(), PAGE)? {
                // The folder went away in the middle of the walk: the rest
                // of it is unknown, not deleted.
                None if self.found || self.after.is_some() => {
                    return Err(IoError {
                        kind: IoErrorKind::NotFound,
                        message: "the app's folder went away while it was read".into(),
                    })
                }
                None => self.done = true,
                Some((page, next)) => {
                    self.found = true;
                    self.buf.extend(page);
                    self.done = next.is_none();
                    self.after = next;
                }
            }
        }
        Ok(self.buf.front())
    }
}

/// The cloud listing, a page at a time, in path order.
#[derive(Default)]
struct RemoteStream {
    buf: VecDeque<(String, Listed)>,
    after: Option<String>,
    done: bool,
}

impl RemoteStream {
    fn head(&mut self, platform: &impl Platform, bundle: &str) -> Result<Option<&str>, CloudError> {
        while self.buf.is_empty() && !self.done {
            let (page, next) = platform.cloud_list_page(bundle, "", self.after.as_deref(), PAGE)?;
            let mut items: Vec<(String, Listed)> = page
                .objects
                .into_iter()
                .map(|o| (o.path.clone(), Listed::Object(o)))
                .chain(page.skipped.into_iter().map(|(p, why)| (p, Listed::Unlisted(why))))
                .collect();
            items.sort_by(|a, b| a.0.cmp(&b.0));
            self.buf.extend(items);
            self.done = next.is_none();
            self.after = next;
        }
        Ok(self.buf.front().map(|(p, _)| p.as_str()))
    }
}

/// The synced records, a page at a time, in path order (undecodable ones
/// counted and left out).
struct SyncedStream {
    prefix: String,
    buf: VecDeque<(String, SyncedRecord)>,
    after: Option<String>,
    done: bool,
    bad: usize,
    seen: usize,
}

impl SyncedStream {
    fn head(&mut self, platform: &impl Platform) -> Result<Option<&str>, ApiError> {
        while self.buf.is_empty() && !self.done {
            let rows = platform
                .meta_scan_page(&self.prefix, self.after.as_deref(), PAGE)
                .map_err(|e| ApiError::service(format!("metadata scan failed: {e}")))?;
            // A host may answer shorter pages than asked: only none is the end.
            if rows.is_empty() {
                self.done = true;
                break;
            }
            self.after = rows.last().map(|(k, _)| k.clone());
            for (key, value) in rows {
                let Some(path) = key.strip_prefix(&self.prefix) else {
                    continue;
                };
                match serde_json::from_slice::<SyncedRecord>(&value) {
                    Ok(r) if check_relative_path(path).is_ok() => {
                        self.seen += 1;
                        self.buf.push_back((path.to_string(), r));
                    }
                    _ => self.bad += 1,
                }
            }
        }
        Ok(self.buf.front().map(|(p, _)| p.as_str()))
    }
}

/// Paths some side holds something unknown at; nothing at or below them is
/// planned. In path order a blocked `b` is followed by what is below it
/// (`b/…`) before anything at or past `b0` (`0` follows `/`), so it is
/// dropped there: only blocked folders still open are held.
#[derive(Default)]
struct Blocks(Vec<String>);

impl Blocks {
    fn add(&mut self, path: String) {
        self.0.push(path);
    }
    /// Whether `path` is blocked, forgetting blocks it is past.
    fn covers(&mut self, path: &str) -> bool {
        self.0.retain(|b| {
            let end = format!("{b}0");
            path < end.as_str()
        });
        self.0
            .iter()
            .any(|b| path == b || (path.starts_with(b.as_str()) && path.as_bytes().get(b.len()) == Some(&b'/')))
    }
}

/// One round's scan and plan of a bundle, under way: the three streams
/// merged in path order, each path's content hashed only where a decision
/// needs it and planned as it passes. It goes a slice of paths per tick,
/// so a folder of any size stays inside the engine's call budget.
pub struct ScanState {
    local: LocalStream,
    remote: RemoteStream,
    synced: SyncedStream,
    planner: Option<Planner>,
    blocks: Blocks,
    skipped: Vec<(String, String)>,
    unreadable: Vec<(String, String)>,
    refresh: Vec<(String, Option<Vec<u8>>)>,
    with_ops: Vec<(String, Option<RemoteFile>, u64)>,
    guard: Option<GuardRecord>,
    now: u64,
    fine: bool,
    /// A later window of a plan (it stops when its window is full).
    windowed: bool,
    /// A dry run's scan: a first sync's folder is not made.
    pub dry_run: bool,
}

impl ScanState {
    /// A scan of the whole tree, or (`after`) of what sorts after a path:
    /// a later window of a plan.
    pub fn start(
        platform: &impl Platform,
        bundle: &str,
        options: Options,
        after: Option<&str>,
    ) -> Result<Self, ScanError> {
        let guard = records::get::<GuardRecord>(platform, &guard_key(bundle)).map_err(ScanError::Meta)?;
        let options = Options {
            guard: guard.unwrap_or_default(),
            ..options
        };
        let prefix = format!("{SYNCED}/{bundle}/");
        Ok(ScanState {
            local: LocalStream {
                after: after.map(str::to_string),
                ..LocalStream::default()
            },
            remote: RemoteStream {
                after: after.map(str::to_string),
                ..RemoteStream::default()
            },
            synced: SyncedStream {
                after: after.map(|a| format!("{prefix}{a}")),
                prefix,
                buf: VecDeque::new(),
                done: false,
                bad: 0,
                seen: 0,
            },
            planner: Some(Planner::new(options)),
            blocks: Blocks::default(),
            skipped: Vec::new(),
            unreadable: Vec::new(),
            refresh: Vec::new(),
            with_ops: Vec::new(),
            guard,
            now: platform.now_ms(),
            fine: platform.fine_stamps(bundle),
            windowed: options.allowance.is_some(),
            dry_run: false,
        })
    }

    /// Merges up to `paths` more paths; the scan, once every stream is done.
    pub fn step(&mut self, platform: &impl Platform, bundle: &str, paths: usize) -> Result<Option<Scanned>, ScanError> {
        for _ in 0..paths {
            if !self.next_path(platform, bundle)? {
                return self.finish(platform, bundle, false).map(Some);
            }
            // A later window stops when it is full; the first scans on,
            // counting, for the guards.
            if self.windowed && self.planner.as_ref().is_some_and(Planner::full) {
                return self.finish(platform, bundle, true).map(Some);
            }
        }
        Ok(None)
    }

    /// Plans the next path in order; `false` when there is none.
    fn next_path(&mut self, platform: &impl Platform, bundle: &str) -> Result<bool, ScanError> {
        // The smallest head, and which streams hold it (no path is copied:
        // the one taken from its stream is the path from then on).
        let (has_l, has_r, has_s) = {
            let l = self
                .local
                .head(platform, bundle)
                .map_err(ScanError::Local)?
                .map(|e| e.path.as_str());
            let r = self.remote.head(platform, bundle).map_err(ScanError::Cloud)?;
            let s = self.synced.head(platform).map_err(ScanError::Meta)?;
            let Some(min) = [l, r, s].into_iter().flatten().min() else {
                return Ok(false);
            };
            (l == Some(min), r == Some(min), s == Some(min))
        };
        let entry = has_l.then(|| self.local.buf.pop_front().expect("a head"));
        let listed = has_r.then(|| self.remote.buf.pop_front().expect("a head"));
        let record = has_s.then(|| self.synced.buf.pop_front().expect("a head"));
        let path = match (&entry, &listed, &record) {
            (Some(e), _, _) => e.path.clone(),
            (None, Some((p, _)), _) => p.clone(),
            (None, None, Some((p, _))) => p.clone(),
            (None, None, None) => unreachable!("some stream held the smallest head"),
        };
        let listed = listed.map(|(_, l)| l);
        let record = record.map(|(_, r)| r);

        // What the cloud holds here.
        let mut remote_file = None;
        match listed {
            Some(Listed::Unlisted(why)) => {
                self.skipped.push((path.clone(), format!("in the cloud: {why}")));
                self.blocks.add(path.clone());
            }
            // A folder marker (S3): no file of its own.
            Some(Listed::Object(o)) if o.path.ends_with('/') => {}
            Some(Listed::Object(o)) => match check_relative_path(&o.path) {
                Err(why) => self
                    .skipped
                    .push((o.path.clone(), format!("in the cloud: not a usable file name: {why}"))),
                Ok(()) => {
                    let hash = o
                        .content_hash
                        .as_deref()
                        .and_then(|h| h.strip_prefix("sha256:"))
                        .map(str::to_ascii_lowercase);
                    remote_file = Some(RemoteFile {
                        etag: o.etag,
                        size: o.size,
                        hash,
                    });
                }
            },
            None => {}
        }
        // What the device holds here.
        let mut file_stat = None;
        if let Some(entry) = entry {
            if let Some(problem) = entry.problem {
                self.skipped.push((path.clone(), format!("on the device: {problem}")));
                self.blocks.add(path.clone());
            } else if check_relative_path(&path).is_err() {
                self.skipped
                    .push((path.clone(), "on the device: not a usable file name".into()));
                self.blocks.add(path.clone());
            } else {
                match entry.stat.kind {
                    FileKind::File => file_stat = Some(entry.stat),
                    FileKind::Folder => self.skipped.push((
                        path.clone(),
                        "on the device: an empty folder (folders are synced through the files in them)".into(),
                    )),
                    kind => {
                        self.skipped
                            .push((path.clone(), format!("on the device: {}", kind_reason(kind))));
                        self.blocks.add(path.clone());
                    }
                }
            }
        }
        let blocked = self.blocks.covers(&path);
        let local_file = match file_stat {
            Some(stat) if !blocked => {
                let looked = look_at(
                    platform,
                    bundle,
                    &path,
                    stat,
                    record.as_ref(),
                    remote_file.as_ref(),
                    self.fine,
                    self.now,
                );
                match looked {
                    Ok((file, fresh)) => {
                        self.refresh.extend(fresh);
                        Some(file)
                    }
                    // Gone since the walk: nothing is planned for it now
                    // (a folder moved away mid-scan is no deletion); the
                    // next scan sees what is there.
                    Err(e) if e.kind == IoErrorKind::NotFound => {
                        self.blocks.add(path);
                        return Ok(true);
                    }
                    // Unreadable: it fails alone and is never taken for a
                    // deleted file (its path is blocked).
                    Err(e) => {
                        self.unreadable.push((path.clone(), format!("cannot read it: {e}")));
                        self.blocks.add(path);
                        return Ok(true);
                    }
                }
            }
            _ => None,
        };
        let first_ms = record.as_ref().map_or(0, |r| r.first_ms);
        // Missing here though its record says local: a mark of its eviction
        // at that very stamp says it went to the cloud only (the record
        // was rolled back past the eviction), never that it was deleted.
        let evicted = local_file.is_none()
            && record.as_ref().is_some_and(|r| {
                !r.cloud_only
                    && matches!(platform.stat(bundle, &evicted_mark(&path, &r.etag)), Ok(Some(m)) if m.is_dir())
            });
        if let (true, Some(r)) = (evicted, &record) {
            // Recorded as what it is again: cloud-only, listed as such.
            let mut only = r.clone();
            only.cloud_only = true;
            self.refresh
                .push((records::path_key(SYNCED, bundle, &path), Some(records::encode(&only))));
        }
        if let (Some(_), Some(r), false) = (&local_file, &record, self.dry_run) {
            if r.cloud_only {
                // Back here (fetched, or put back by hand): its mark no
                // longer stands, so a later deletion is one.
                let _ = platform.remove_dir(bundle, &evicted_mark(&path, &r.etag));
                let _ = platform.remove_dir(bundle, &evicted_marks(&path));
            }
        }
        let synced_file = record.map(|r| SyncedFile {
            etag: r.etag,
            local: r.local,
            hash: r.hash,
            cloud_only: r.cloud_only || evicted,
            first_ms: r.first_ms,
        });
        let planner = self.planner.as_mut().expect("until finished");
        let ops_before = planner.op_count();
        planner.path(
            &path,
            local_file.as_ref(),
            remote_file.as_ref(),
            synced_file.as_ref(),
            blocked,
        );
        if planner.op_count() > ops_before {
            self.with_ops.push((path, remote_file, first_ms));
        }
        Ok(true)
    }

    fn finish(&mut self, platform: &impl Platform, bundle: &str, stopped: bool) -> Result<Scanned, ScanError> {
        if !self.windowed && !self.local.found && self.synced.seen == 0 && !self.dry_run {
            // First sync: the folder is made. With records, a missing
            // folder is left missing and reads as an empty side (refused).
            platform
                .create_dir_all(bundle, LOCAL_CLOUD_DIR)
                .map_err(ScanError::Local)?;
        }
        let mut remote = BTreeMap::new();
        let mut first = BTreeMap::new();
        for (path, r, first_ms) in std::mem::take(&mut self.with_ops) {
            if first_ms > 0 {
                first.insert(path.clone(), first_ms);
            }
            if let Some(r) = r {
                remote.insert(path, r);
            }
        }
        Ok(Scanned {
            plan: self.planner.take().expect("finished once").finish_window(stopped),
            remote,
            first,
            skipped: std::mem::take(&mut self.skipped),
            unreadable: std::mem::take(&mut self.unreadable),
            bad_records: self.synced.bad,
            guard: self.guard,
            refresh: std::mem::take(&mut self.refresh),
        })
    }
}

/// A local file as the planner needs it: its stamp, and its hash where a
/// decision needs one (an unchanged stamp vouches for the record's); and
/// the record to rewrite when a racily clean file proves unchanged.
#[allow(clippy::too_many_arguments)]
fn look_at(
    platform: &impl Platform,
    bundle: &str,
    path: &str,
    stat: FileStat,
    record: Option<&SyncedRecord>,
    remote: Option<&RemoteFile>,
    fine: bool,
    now: u64,
) -> Result<(LocalFile, Option<MetaChange>), IoError> {
    let stamp = LocalStamp::from(stat);
    let mut file = LocalFile {
        stamp,
        hash: None,
        changed_in_place: false,
    };
    let needs_hash = match record {
        Some(rec) if rec.local == stamp && !rec.cloud_only => racily_clean(rec, &stat, fine),
        // Changed stamp, same size: maybe only touched; the hash tells.
        Some(rec) => rec.hash.is_some() && rec.local.size == stamp.size,
        // New here, and the cloud has one with a known hash: equal content
        // is recorded, not treated as a conflict.
        None => remote.is_some_and(|r| r.hash.is_some() && r.size == stamp.size),
    };
    if needs_hash {
        file.hash = Some(platform.hash_file(bundle, &format!("{LOCAL_CLOUD_DIR}/{path}"))?);
    }
    let mut fresh_record = None;
    if let Some(rec) = record.filter(|r| r.local == stamp && !r.cloud_only) {
        match (&file.hash, &rec.hash) {
            (Some(now_hash), Some(known)) if !known.eq_ignore_ascii_case(now_hash) => file.changed_in_place = true,
            // Never hashed: what the file holds now cannot be told from
            // what was synced; it goes up again.
            (Some(_), None) => file.changed_in_place = true,
            (Some(h), Some(_)) => {
                // Unchanged: stop re-hashing once the tick has passed.
                let mut fresh = rec.clone();
                fresh.hash = Some(h.clone());
                if now > changed_ms(&stat) + RACY_MS {
                    fresh.recorded_ms = now;
                }
                if &fresh != rec {
                    let key = records::path_key(SYNCED, bundle, path);
                    fresh_record = Some((key, Some(records::encode(&fresh))));
                }
            }
            // Unchanged by its stamp: the planner needs no hash of it (the
            // record's is the base), so none is copied.
            (None, _) => {}
        }
    }
    Ok((file, fresh_record))
}

#[cfg(test)]
mod tests {
    use super::Blocks;

    #[test]
    fn a_block_covers_its_folder_past_names_that_sort_between() {
        let mut b = Blocks::default();
        b.add("d".into());
        // In path order "d-x" and "d.txt" come between "d" and "d/…".
        let seen: Vec<bool> = ["d", "d-x", "d.txt", "d/c", "d/e/f", "d0", "d/late"]
            .iter()
            .map(|p| b.covers(p))
            .collect();
        assert_eq!(seen, [true, false, false, true, true, false, false]);
        assert!(b.0.is_empty(), "forgotten once passed");
    }
}
