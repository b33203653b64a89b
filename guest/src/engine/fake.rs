//! An in-memory platform for the engine's native tests: a model of a device
//! (local files with the file system's rules, a metadata store, transfers
//! that move `chunk` bytes per poll) and a cloud that several devices can
//! share, as several phones share one account.
//!
//! The model keeps what real file systems do and earlier fakes did not:
//! ctime moves on every write (even when a tool puts the mtime back),
//! symlinks and special files are names of their own, a file and a folder
//! cannot share a name, a name has at most 255 bytes, and a power cut stops
//! every write at once.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use super::records::LocalStamp;
use super::*;

/// What a folder's stat says in the fake.
const FOLDER: FileStat = FileStat {
    kind: FileKind::Folder,
    size: 0,
    mtime_ns: 0,
    ctime_ns: 0,
    inode: 0,
    atime_ns: 0,
};

/// Longest name (one path component) the file systems here take, in bytes.
pub const NAME_MAX: usize = 255;

#[derive(Clone, Debug)]
pub struct LocalFile {
    pub data: Vec<u8>,
    pub mtime_ns: u64,
    pub ctime_ns: u64,
    pub inode: u64,
    pub kind: FileKind,
    /// The name is not UTF-8 on the real file system (the path shows it lossily).
    pub bad_name: bool,
}

impl LocalFile {
    pub fn file(data: &[u8], clock: u64) -> Self {
        LocalFile {
            data: data.to_vec(),
            mtime_ns: clock,
            ctime_ns: clock,
            inode: clock,
            kind: FileKind::File,
            bad_name: false,
        }
    }

    pub fn stat(&self) -> FileStat {
        FileStat {
            kind: self.kind,
            size: self.data.len() as u64,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            inode: self.inode,
            atime_ns: self.mtime_ns,
        }
    }

    pub fn stamp(&self) -> LocalStamp {
        LocalStamp::from(self.stat())
    }
}

/// One object in the cloud (or, `special`, a symlink in a folder cloud).
#[derive(Clone, Debug)]
pub struct CloudEntry {
    pub data: Vec<u8>,
    pub etag: String,
    pub special: bool,
}

/// The cloud: objects by (bundle, path), shared by every device on it.
#[derive(Default)]
pub struct CloudStore {
    pub objects: BTreeMap<(String, String), CloudEntry>,
    pub seq: u64,
    /// A folder cloud: a file and a folder cannot share a name (S3 allows it).
    pub strict_dirs: bool,
}

impl CloudStore {
    pub fn put(&mut self, bundle: &str, path: &str, data: &[u8]) -> String {
        self.seq += 1;
        let etag = format!("e{}", self.seq);
        self.objects.insert(
            (bundle.to_string(), path.to_string()),
            CloudEntry {
                data: data.to_vec(),
                etag: etag.clone(),
                special: false,
            },
        );
        etag
    }

    /// Why `path` cannot hold a file in this cloud, if it cannot.
    fn in_the_way(&self, bundle: &str, path: &str) -> Option<String> {
        if path.split('/').any(|c| c.len() > NAME_MAX) {
            return Some(format!("{path}: File name too long"));
        }
        if !self.strict_dirs {
            return None;
        }
        let mut prefix = String::new();
        for part in path.split('/').collect::<Vec<_>>().split_last()?.1 {
            prefix.push_str(part);
            if self.objects.contains_key(&(bundle.to_string(), prefix.clone())) {
                return Some(format!("{path}: {prefix} is a file, not a folder"));
            }
            prefix.push('/');
        }
        let below = format!("{path}/");
        if self
            .objects
            .range((bundle.to_string(), below.clone())..)
            .next()
            .is_some_and(|((b, p), _)| b == bundle && p.starts_with(&below))
        {
            return Some(format!("{path}: a folder of that name is in the way"));
        }
        None
    }
}

pub type SharedCloud = Rc<RefCell<CloudStore>>;

pub struct Transfer {
    pub request: DownloadRequest,
    pub failed: Option<CloudError>,
    pub cancelled: bool,
    pub done: bool,
}

/// An upload in the fake: it completes (atomically, reading the local file
/// then) after `polls_left` more polls.
pub struct Upload {
    pub request: UploadRequest,
    pub polls_left: u32,
    pub result: Option<Result<CloudObject, CloudError>>,
    pub cancelled: bool,
}

pub struct State_ {
    pub caller: String,
    pub device_name: String,
    pub permissions: BTreeSet<String>,
    pub system_app: bool,
    /// The cloud refuses the account (22400001 at sync start).
    pub cloud_ready: bool,
    pub uploads: BTreeMap<TransferId, Upload>,
    /// Polls an upload takes.
    pub upload_polls: u32,
    /// The next upload fails with this.
    pub upload_fail: Option<CloudError>,
    /// Folders made with `create_dir_all` (a scan of one that has no files is not "missing").
    pub made_dirs: BTreeSet<(String, String)>,
    pub sync_events: Vec<(ListenerId, SyncProgress)>,
    /// Files whose content was read (hashed).
    pub reads: u64,
    /// Local paths whose reading fails (an I/O error, not "not found").
    pub unreadable: BTreeSet<String>,
    /// Local paths whose stat fails with this kind.
    pub stat_errors: BTreeMap<String, IoErrorKind>,
    /// Local paths some process has open for writing.
    pub open_files: BTreeSet<String>,
    /// `evict` removes the file, then reports a failure (a failed flush).
    pub evict_fails_after_removal: bool,
    /// `evict` refuses with this, removing nothing (an immutable folder, say).
    pub evict_error: Option<IoErrorKind>,
    pub optimize_events: Vec<(ListenerId, super::ondemand::OptimizeSpaceProgress)>,
    pub optimize_failures: Vec<(ListenerId, super::ApiError)>,
    /// A power cut after this many more writes: from then on every write
    /// fails and changes nothing (the instance is then thrown away).
    pub crash_countdown: Option<u32>,
    pub device: DeviceStatus,
    pub now_ms: u64,
    pub clock_ns: u64,
    /// Multigrain stamps: a write after a stat always moves ctime, so a
    /// same-tick edit is only possible on a file nobody stat'ed since its
    /// last change (`queried`).
    pub fine_stamps: bool,
    /// A write that lands right after the next rename onto this path, in
    /// the same clock tick (ctime stays the rename's, mtime takes it).
    pub after_rename: Option<(String, Vec<u8>)>,
    /// A cloud path another writer rewrites whenever a download of it
    /// starts (it never settles while this is set).
    pub churn: Option<String>,
    /// A file saved at this path right after the next rename away from it
    /// (an editor saving the moment sync moves the old one aside).
    pub after_move_away: Option<(String, Vec<u8>)>,
    /// What `after_move_away` saved, once it did.
    pub saved_meanwhile: Vec<Vec<u8>>,
    /// Lazy moves since the last flush: a power cut may undo them.
    pub unflushed_renames: Vec<Unflushed>,
    /// Files (inodes) non-durable downloads wrote since the last flush: a
    /// power cut leaves them torn (empty), under whichever name they have.
    pub unflushed_data: BTreeSet<u64>,
    /// Pages the host answers are at most this long (a host may page as it
    /// likes; small pages test the callers' paging).
    pub page_cap: Option<u32>,
    /// How many flushes were asked for.
    pub flushes: u64,
    /// The ctime each local file had when it was last stat'ed.
    pub queried: BTreeMap<(String, String), u64>,
    pub local: BTreeMap<(String, String), LocalFile>,
    /// Folders put in the way on purpose.
    pub dirs: BTreeSet<(String, String)>,
    /// Paths (in the caller's area) whose stat reports an escape.
    pub escaping: BTreeSet<String>,
    /// What `free_space` answers at most.
    pub free: u64,
    /// The disk's size: writes past it fail (no space left), and
    /// `free_space` is what the local files leave of it.
    pub disk: u64,
    pub meta: BTreeMap<String, Vec<u8>>,
    /// Every metadata call fails (a broken store).
    pub meta_broken: bool,
    pub cloud: SharedCloud,
    /// Every cloud call of this device fails with this (its network).
    pub cloud_error: Option<CloudError>,
    /// Listings alone fail with this (the cloud answers otherwise).
    pub list_error: Option<CloudError>,
    pub transfers: BTreeMap<TransferId, Transfer>,
    pub next_transfer: TransferId,
    pub chunk: u64,
    /// The next transfer fails with this once it has moved `fail_after` bytes.
    pub fail_next: Option<(u64, CloudError)>,
    /// When `fail_next` fires, every later cloud call fails with it too
    /// (the network went, rather than one connection).
    pub fail_next_stays: bool,
    pub events: Vec<(ListenerId, DownloadProgress)>,
    pub failures: Vec<(String, String)>,
    /// Every decision sync runs sent.
    pub decisions: Vec<SyncDecision>,
}

pub struct Fake(pub RefCell<State_>);

/// A lazy move not yet flushed.
pub struct Unflushed {
    bundle: String,
    from: String,
    to: String,
    /// What `to` held (replaced by the move).
    displaced: Option<LocalFile>,
    /// The ctime the move gave the files it moved.
    ctime: u64,
    /// The two were swapped.
    exchanged: bool,
}

pub const APP: &str = "com.example.notes";

pub fn uri(path: &str) -> String {
    format!("file://{APP}/data/storage/el2/cloud/{path}")
}

fn power_cut() -> IoError {
    IoError::new(IoErrorKind::Other, "power cut")
}

impl Fake {
    pub fn new() -> Self {
        Self::on_cloud(Rc::new(RefCell::new(CloudStore::default())), "testdev")
    }

    /// Another device (its own files, metadata and clock) on the same cloud.
    pub fn sharing(&self, device_name: &str) -> Self {
        Self::on_cloud(self.0.borrow().cloud.clone(), device_name)
    }

    fn on_cloud(cloud: SharedCloud, device_name: &str) -> Self {
        Fake(RefCell::new(State_ {
            caller: APP.into(),
            device_name: device_name.into(),
            permissions: [
                "ohos.permission.CLOUDFILE_SYNC",
                "ohos.permission.CLOUDFILE_SYNC_MANAGER",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            system_app: true,
            cloud_ready: true,
            uploads: BTreeMap::new(),
            upload_polls: 1,
            upload_fail: None,
            made_dirs: BTreeSet::new(),
            sync_events: Vec::new(),
            reads: 0,
            unreadable: BTreeSet::new(),
            stat_errors: BTreeMap::new(),
            open_files: BTreeSet::new(),
            evict_fails_after_removal: false,
            optimize_events: Vec::new(),
            optimize_failures: Vec::new(),
            evict_error: None,
            meta_broken: false,
            crash_countdown: None,
            device: DeviceStatus {
                network_available: true,
                wifi_available: true,
                battery_percent: 100,
                charging: true,
                wifi_only: false,
                overheated: false,
            },
            now_ms: 1_700_000_000_000,
            clock_ns: 1,
            fine_stamps: false,
            after_rename: None,
            after_move_away: None,
            saved_meanwhile: Vec::new(),
            unflushed_renames: Vec::new(),
            unflushed_data: BTreeSet::new(),
            flushes: 0,
            page_cap: None,
            queried: BTreeMap::new(),
            local: BTreeMap::new(),
            dirs: BTreeSet::new(),
            escaping: BTreeSet::new(),
            free: u64::MAX,
            disk: u64::MAX,
            meta: BTreeMap::new(),
            cloud,
            cloud_error: None,
            list_error: None,
            transfers: BTreeMap::new(),
            next_transfer: 0,
            chunk: 4,
            fail_next: None,
            fail_next_stays: false,
            churn: None,
            events: Vec::new(),
            failures: Vec::new(),
            decisions: Vec::new(),
        }))
    }

    /// The same device after a restart: its files, metadata and cloud, and
    /// nothing of the instance that ran before (transfers, events).
    pub fn restarted(self) -> Self {
        let mut old = self.0.into_inner();
        // What was not flushed may be gone: some lazy renames are undone
        // (of files nobody touched since; a user's own write and fsync
        // would have made them durable), others stand; non-durable bytes
        // are torn whatever their name.
        for u in std::mem::take(&mut old.unflushed_renames).into_iter().rev() {
            let undone = u.to.len() % 2 == 0;
            let to = (u.bundle.clone(), u.to);
            let from = (u.bundle, u.from);
            let untouched = |k: &(String, String)| old.local.get(k).is_some_and(|f| f.ctime_ns == u.ctime);
            if !undone || !untouched(&to) {
                continue;
            }
            if u.exchanged {
                if untouched(&from) {
                    let a = old.local.remove(&to).expect("checked");
                    let b = old.local.remove(&from).expect("checked");
                    old.local.insert(to, b);
                    old.local.insert(from, a);
                }
                continue;
            }
            let f = old.local.remove(&to).expect("checked");
            if let Some(d) = u.displaced {
                old.local.insert(to, d);
            }
            old.local.insert(from, f);
        }
        let torn = std::mem::take(&mut old.unflushed_data);
        for f in old.local.values_mut().filter(|f| torn.contains(&f.inode)) {
            f.data.clear();
        }
        let new = Fake::on_cloud(old.cloud.clone(), &old.device_name);
        {
            let mut s = new.0.borrow_mut();
            s.caller = old.caller;
            s.permissions = old.permissions;
            s.system_app = old.system_app;
            s.device = old.device;
            s.now_ms = old.now_ms;
            s.clock_ns = old.clock_ns + 1;
            s.local = old.local;
            s.dirs = old.dirs;
            s.made_dirs = old.made_dirs;
            s.meta = old.meta;
            s.free = old.free;
            s.disk = old.disk;
            s.chunk = old.chunk;
            s.upload_polls = old.upload_polls;
            s.next_transfer = old.next_transfer;
        }
        new
    }

    pub fn take_decisions(&self) -> Vec<SyncDecision> {
        std::mem::take(&mut self.0.borrow_mut().decisions)
    }

    pub fn take_sync_events(&self) -> Vec<(ListenerId, SyncProgress)> {
        std::mem::take(&mut self.0.borrow_mut().sync_events)
    }

    pub fn cloud_store(&self) -> SharedCloud {
        self.0.borrow().cloud.clone()
    }

    pub fn cloud(&self, path: &str) -> Option<Vec<u8>> {
        self.cloud_in(APP, path)
    }

    pub fn cloud_in(&self, bundle: &str, path: &str) -> Option<Vec<u8>> {
        let cloud = self.cloud_store();
        let c = cloud.borrow();
        c.objects
            .get(&(bundle.to_string(), path.to_string()))
            .filter(|o| !o.special)
            .map(|o| o.data.clone())
    }

    pub fn remove_cloud(&self, path: &str) {
        self.cloud_store()
            .borrow_mut()
            .objects
            .remove(&(APP.to_string(), path.to_string()));
    }

    pub fn remove_local(&self, path: &str) {
        self.0.borrow_mut().local.remove(&(APP.to_string(), path.to_string()));
    }

    /// Notes a lazy move, which a power cut may undo until a flush.
    fn unflushed(&self, bundle: &str, from: &str, to: &str, displaced: Option<LocalFile>, exchanged: bool) {
        let mut s = self.0.borrow_mut();
        let ctime = s.local[&(bundle.to_string(), to.to_string())].ctime_ns;
        s.unflushed_renames.push(Unflushed {
            bundle: bundle.into(),
            from: from.into(),
            to: to.into(),
            displaced,
            ctime,
            exchanged,
        });
    }

    fn tick_clock(&self) -> u64 {
        let mut s = self.0.borrow_mut();
        s.clock_ns += 1;
        s.clock_ns
    }

    /// Rewrites a local file in place (same inode). `keep` says which
    /// stamps stay as they were.
    pub fn edit_local_in_place(&self, path: &str, data: &[u8], keep: Keep) {
        let clock = match keep {
            Keep::SameTick => self.0.borrow().clock_ns,
            _ => self.tick_clock(),
        };
        let mut s = self.0.borrow_mut();
        let f = s.local.get_mut(&(APP.to_string(), path.to_string())).expect("exists");
        f.data = data.to_vec();
        match keep {
            Keep::Nothing => {
                f.mtime_ns = clock;
                f.ctime_ns = clock;
            }
            // `touch -r`, an archiver, a camera setting mtime from EXIF.
            Keep::Mtime => f.ctime_ns = clock,
            Keep::SameTick => {}
        }
    }

    /// Saves a new version by writing a temp file and renaming it over the
    /// old one (a new inode), optionally putting the old mtime back.
    pub fn replace_local_by_rename(&self, path: &str, data: &[u8], keep_mtime: bool) {
        let clock = self.tick_clock();
        let mut s = self.0.borrow_mut();
        let key = (APP.to_string(), path.to_string());
        let old_mtime = s.local.get(&key).map(|f| f.mtime_ns);
        let mut f = LocalFile::file(data, clock);
        if keep_mtime {
            f.mtime_ns = old_mtime.unwrap_or(clock);
        }
        s.local.insert(key, f);
    }

    /// A broken store fails every metadata call.
    fn meta_ok(&self) -> Result<(), IoError> {
        if self.0.borrow().meta_broken {
            return Err(IoError::new(IoErrorKind::Other, "the metadata store is broken"));
        }
        Ok(())
    }

    /// Whether a write may happen (no power cut yet).
    pub fn alive(&self) -> bool {
        let mut s = self.0.borrow_mut();
        match s.crash_countdown {
            Some(0) => false,
            Some(n) => {
                s.crash_countdown = Some(n - 1);
                true
            }
            None => true,
        }
    }

    /// Whether nothing has happened since `path` was last written: only
    /// then can an edit leave both its mtime and ctime where they were.
    /// With fine stamps, nobody may have stat'ed it since either.
    pub fn written_in_current_tick(&self, path: &str) -> bool {
        let s = self.0.borrow();
        let key = (APP.to_string(), path.to_string());
        s.local
            .get(&key)
            .is_some_and(|f| f.ctime_ns == s.clock_ns && !(s.fine_stamps && s.queried.get(&key) == Some(&f.ctime_ns)))
    }

    fn finish_upload(&self, id: TransferId) -> Option<TransferStatus> {
        let writes_now = {
            let s = self.0.borrow();
            let u = s.uploads.get(&id)?;
            u.result.is_none() && u.polls_left == 0 && !u.cancelled
        };
        let alive = !writes_now || self.alive();
        let mut s = self.0.borrow_mut();
        let fail = s.upload_fail.clone().or_else(|| s.cloud_error.clone());
        let cloud = s.cloud.clone();
        let u = s.uploads.get_mut(&id)?;
        if u.cancelled {
            return None;
        }
        if u.result.is_none() {
            if u.polls_left > 0 {
                u.polls_left -= 1;
                return Some(TransferStatus {
                    bytes: 0,
                    state: TransferState::Running,
                    uploaded: None,
                    sha256: None,
                });
            }
            let req = u.request.clone();
            let result = (|| {
                if !alive {
                    return Err(CloudError::new(CloudErrorKind::Network, "power cut"));
                }
                if let Some(e) = fail {
                    return Err(e);
                }
                let mut cloud = cloud.borrow_mut();
                let key = (req.bundle.clone(), req.cloud_path.clone());
                let current = cloud.objects.get(&key);
                if current.is_some_and(|o| o.special) {
                    return Err(CloudError::new(
                        CloudErrorKind::PreconditionFailed,
                        "a symlink is there",
                    ));
                }
                let current = current.map(|o| o.etag.clone());
                match (&req.precondition, &current) {
                    (WritePrecondition::IfMatch(want), Some(have)) if want == have => {}
                    (WritePrecondition::IfAbsent, None) | (WritePrecondition::None, _) => {}
                    _ => return Err(CloudError::new(CloudErrorKind::PreconditionFailed, "changed")),
                }
                if let Some(why) = cloud.in_the_way(&req.bundle, &req.cloud_path) {
                    return Err(CloudError::new(CloudErrorKind::Other, why));
                }
                let local = s
                    .local
                    .get(&(req.bundle.clone(), req.local_path.clone()))
                    .filter(|f| f.kind == FileKind::File)
                    .ok_or_else(|| CloudError::new(CloudErrorKind::LocalIo, "local file gone"))?;
                if req.expect.is_some_and(|e| e != local.stamp()) {
                    return Err(CloudError::new(
                        CloudErrorKind::PreconditionFailed,
                        "local file changed",
                    ));
                }
                let data = local.data.clone();
                let etag = cloud.put(&req.bundle, &req.cloud_path, &data);
                Ok(CloudObject {
                    path: req.cloud_path.clone(),
                    size: data.len() as u64,
                    etag,
                    version: None,
                    content_hash: Some(format!("sha256:{}", sha(&data))),
                    modified_ms: 0,
                })
            })();
            s.uploads.get_mut(&id).unwrap().result = Some(result);
        }
        let u = &s.uploads[&id];
        Some(match u.result.clone().expect("set") {
            Ok(o) => TransferStatus {
                bytes: o.size,
                state: TransferState::Done,
                sha256: o
                    .content_hash
                    .as_deref()
                    .and_then(|h| h.strip_prefix("sha256:"))
                    .map(String::from),
                uploaded: Some(o),
            },
            Err(e) => TransferStatus {
                bytes: 0,
                state: TransferState::Failed(e),
                uploaded: None,
                sha256: None,
            },
        })
    }

    /// Puts a file in the cloud as another client would (a new etag).
    pub fn put_cloud(&self, path: &str, data: &[u8]) {
        self.cloud_store().borrow_mut().put(APP, path, data);
    }

    /// Puts a symlink into the folder cloud at `path`.
    pub fn put_cloud_symlink(&self, path: &str) {
        let cloud = self.cloud_store();
        let mut c = cloud.borrow_mut();
        c.seq += 1;
        let etag = format!("e{}", c.seq);
        c.objects.insert(
            (APP.to_string(), path.to_string()),
            CloudEntry {
                data: Vec::new(),
                etag,
                special: true,
            },
        );
    }

    pub fn put_local(&self, path: &str, data: &[u8]) {
        let clock = self.tick_clock();
        self.0
            .borrow_mut()
            .local
            .insert((APP.into(), path.into()), LocalFile::file(data, clock));
    }

    /// Puts a name that is not a regular file (a symlink, a FIFO) at `path`.
    pub fn put_local_special(&self, path: &str, kind: FileKind) {
        let clock = self.tick_clock();
        let mut f = LocalFile::file(b"", clock);
        f.kind = kind;
        self.0.borrow_mut().local.insert((APP.into(), path.into()), f);
    }

    /// A file whose name the host cannot give as UTF-8.
    pub fn put_local_bad_name(&self, path: &str, data: &[u8]) {
        let clock = self.tick_clock();
        let mut f = LocalFile::file(data, clock);
        f.bad_name = true;
        self.0.borrow_mut().local.insert((APP.into(), path.into()), f);
    }

    pub fn local(&self, path: &str) -> Option<Vec<u8>> {
        self.0
            .borrow()
            .local
            .get(&(APP.to_string(), path.to_string()))
            .filter(|f| f.kind == FileKind::File)
            .map(|f| f.data.clone())
    }

    /// Local paths, sorted (every kind of name).
    pub fn local_paths(&self) -> Vec<String> {
        self.0.borrow().local.keys().map(|(_, p)| p.clone()).collect()
    }

    pub fn take_events(&self) -> Vec<(ListenerId, DownloadProgress)> {
        std::mem::take(&mut self.0.borrow_mut().events)
    }

    pub fn transfers_started(&self) -> usize {
        self.0.borrow().transfers.len()
    }

    /// Why a file cannot be written at `path` on this device, if it cannot:
    /// a name too long, a file or symlink where a folder must be, a folder
    /// where the file must be.
    fn local_in_the_way(s: &State_, bundle: &str, path: &str) -> Option<IoError> {
        if path.split('/').any(|c| c.len() > NAME_MAX) {
            return Some(IoError::new(IoErrorKind::Other, format!("{path}: File name too long")));
        }
        let parts: Vec<&str> = path.split('/').collect();
        let mut prefix = String::new();
        for part in &parts[..parts.len() - 1] {
            prefix.push_str(part);
            if let Some(f) = s.local.get(&(bundle.to_string(), prefix.clone())) {
                let e = match f.kind {
                    FileKind::Symlink => IoError::new(IoErrorKind::EscapesSandbox, format!("{prefix} is a symlink")),
                    _ => IoError::new(IoErrorKind::NotAFile, format!("{prefix} is not a folder")),
                };
                return Some(e);
            }
            prefix.push('/');
        }
        if Self::is_local_dir(s, bundle, path) {
            return Some(IoError::new(IoErrorKind::NotAFile, format!("{path} is a folder")));
        }
        None
    }

    fn is_local_dir(s: &State_, bundle: &str, path: &str) -> bool {
        let key = (bundle.to_string(), path.to_string());
        s.dirs.contains(&key) || s.made_dirs.contains(&key) || Self::has_children(s, bundle, path)
    }

    fn advance(&self, id: TransferId) -> Option<TransferStatus> {
        let mut s = self.0.borrow_mut();
        let chunk = s.chunk;
        let t = s.transfers.get(&id)?;
        if t.cancelled {
            return None;
        }
        let req = t.request.clone();
        let key = (req.bundle.clone(), req.local_path.clone());
        let have = s.local.get(&key).map_or(req.offset, |f| f.data.len() as u64);
        let status = |bytes, state| TransferStatus {
            bytes,
            state,
            uploaded: None,
            sha256: None,
        };
        if let Some(e) = s.transfers[&id].failed.clone() {
            return Some(status(have, TransferState::Failed(e)));
        }
        if s.transfers[&id].done {
            return Some(status(have, TransferState::Done));
        }
        let fail = |s: &mut State_, e: CloudError| {
            s.transfers.get_mut(&id).unwrap().failed = Some(e.clone());
            Some(status(have, TransferState::Failed(e)))
        };
        if let Some(e) = s.cloud_error.clone() {
            return fail(&mut s, e);
        }
        let object = s
            .cloud
            .borrow()
            .objects
            .get(&(req.bundle.clone(), req.cloud_path.clone()))
            .filter(|o| !o.special)
            .cloned();
        let Some(object) = object else {
            return fail(&mut s, CloudError::new(CloudErrorKind::NotFound, "gone"));
        };
        if req.if_match.as_deref().is_some_and(|m| m != object.etag) {
            return fail(&mut s, CloudError::new(CloudErrorKind::PreconditionFailed, "changed"));
        }
        if let Some((after, e)) = s.fail_next.clone() {
            if have >= after {
                s.fail_next = None;
                if s.fail_next_stays {
                    s.cloud_error = Some(e.clone());
                }
                return fail(&mut s, e);
            }
        }
        let content = object.data;
        let end = (have + chunk).min(content.len() as u64);
        if Self::used(&s).saturating_add(end - have) > s.disk {
            return fail(
                &mut s,
                CloudError::new(CloudErrorKind::LocalNoSpace, "No space left on device"),
            );
        }
        s.clock_ns += 1;
        let clock = s.clock_ns;
        let f = s.local.entry(key).or_insert(LocalFile::file(b"", clock));
        let inode = f.inode;
        f.data.truncate(have as usize);
        f.data.extend_from_slice(&content[have as usize..end as usize]);
        f.mtime_ns = clock;
        f.ctime_ns = clock;
        let f_data = f.data.clone();
        if !req.durable {
            s.unflushed_data.insert(inode);
        }
        let done = end == content.len() as u64;
        s.transfers.get_mut(&id).unwrap().done = done;
        Some(TransferStatus {
            bytes: end,
            state: if done {
                TransferState::Done
            } else {
                TransferState::Running
            },
            uploaded: None,
            sha256: done.then(|| sha(&f_data)),
        })
    }
}

/// A small deterministic generator (xorshift), so that a failing seed replays.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded so that nearby seeds give unrelated streams.
    pub fn seeded(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

impl Fake {
    /// The app's local files (regular ones), by path in its cloud folder.
    pub fn app_files(&self) -> BTreeMap<String, Vec<u8>> {
        let s = self.0.borrow();
        s.local
            .iter()
            .filter(|((b, p), f)| b == APP && p.starts_with("cloud/") && f.kind == FileKind::File && !f.bad_name)
            .map(|((_, p), f)| (p["cloud/".len()..].to_string(), f.data.clone()))
            .collect()
    }

    /// The app's objects in the cloud (no symlinks).
    pub fn cloud_files(&self) -> BTreeMap<String, Vec<u8>> {
        let cloud = self.cloud_store();
        let c = cloud.borrow();
        c.objects
            .iter()
            .filter(|((b, _), o)| b == APP && !o.special)
            .map(|((_, p), o)| (p.clone(), o.data.clone()))
            .collect()
    }
}

/// Which stamps an in-place edit leaves as they were.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    Nothing,
    /// The tool puts the mtime back; ctime still moves.
    Mtime,
    /// Within the same clock tick as the last write: mtime and ctime alike.
    SameTick,
}

/// A number a test reads from the environment (how many seeds, files…),
/// or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn sha(data: &[u8]) -> String {
    // Not a real sha256: the fake only needs equal content ↔ equal digest.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    format!("{h:016x}{}", data.len())
}

impl Platform for Fake {
    fn caller_bundle(&self) -> String {
        self.0.borrow().caller.clone()
    }
    fn has_permission(&self, name: &str) -> bool {
        self.0.borrow().permissions.contains(name)
    }
    fn is_system_app(&self) -> bool {
        self.0.borrow().system_app
    }
    fn device_status(&self) -> DeviceStatus {
        self.0.borrow().device
    }
    fn now_ms(&self) -> u64 {
        self.0.borrow().now_ms
    }
    fn device_name(&self) -> String {
        self.0.borrow().device_name.clone()
    }
    fn stat(&self, bundle: &str, path: &str) -> Result<Option<FileStat>, IoError> {
        let mut s = self.0.borrow_mut();
        let key = (bundle.to_string(), path.to_string());
        if let Some(ctime) = s.local.get(&key).map(|f| f.ctime_ns) {
            s.queried.insert(key.clone(), ctime);
        }
        if s.escaping.contains(path) {
            return Err(IoError::new(IoErrorKind::EscapesSandbox, "symlink"));
        }
        if let Some(kind) = s.stat_errors.get(path) {
            return Err(IoError::new(*kind, "injected"));
        }
        if let Some(f) = s.local.get(&(bundle.into(), path.into())) {
            return Ok(Some(f.stat()));
        }
        if Self::is_local_dir(&s, bundle, path) {
            // A folder seen stays until it is removed, as on a disk (its
            // last file going does not take it along).
            s.dirs.insert(key);
            return Ok(Some(FOLDER));
        }
        match Self::local_in_the_way(&s, bundle, path) {
            Some(e) if e.kind != IoErrorKind::Other => Err(e),
            _ => Ok(None),
        }
    }
    fn rename(&self, bundle: &str, from: &str, to: &str) -> Result<(), IoError> {
        if !self.alive() {
            return Err(power_cut());
        }
        let clock = self.tick_clock();
        let mut s = self.0.borrow_mut();
        if let Some(e) = Self::local_in_the_way(&s, bundle, to) {
            return Err(e);
        }
        let mut f = s
            .local
            .remove(&(bundle.into(), from.into()))
            .ok_or_else(|| IoError::new(IoErrorKind::NotFound, from))?;
        f.ctime_ns = clock;
        if s.after_rename.as_ref().is_some_and(|(p, _)| p == to) {
            let (_, data) = s.after_rename.take().expect("checked");
            f.data = data;
            f.mtime_ns = clock;
        }
        s.local.insert((bundle.into(), to.into()), f);
        if s.after_move_away.as_ref().is_some_and(|(p, _)| p == from) {
            let (_, data) = s.after_move_away.take().expect("checked");
            s.saved_meanwhile.push(data.clone());
            s.local
                .insert((bundle.into(), from.into()), LocalFile::file(&data, clock + 1));
            s.clock_ns += 1;
        }
        Ok(())
    }
    fn move_file(&self, bundle: &str, from: &str, to: &str, mode: MoveMode, durable: bool) -> Result<(), IoError> {
        let to_key = (bundle.to_string(), to.to_string());
        let (displaced, folder_there) = {
            let s = self.0.borrow();
            (s.local.get(&to_key).cloned(), Self::is_local_dir(&s, bundle, to))
        };
        if mode == MoveMode::NoReplace && (displaced.is_some() || folder_there) {
            return Err(IoError::new(IoErrorKind::AlreadyExists, format!("{to} exists")));
        }
        self.rename(bundle, from, to)?;
        if !durable {
            self.unflushed(bundle, from, to, displaced, false);
        }
        Ok(())
    }
    fn swap_if_unchanged(
        &self,
        bundle: &str,
        from: &str,
        to: &str,
        expect: LocalStamp,
        durable: bool,
    ) -> Result<SwapOutcome, IoError> {
        if !self.alive() {
            return Err(power_cut());
        }
        let to_key = (bundle.to_string(), to.to_string());
        let from_key = (bundle.to_string(), from.to_string());
        let in_use = {
            let s = self.0.borrow();
            match s.local.get(&to_key) {
                None if Self::is_local_dir(&s, bundle, to) => return Ok(SwapOutcome::Changed),
                None => {
                    return Err(IoError::new(
                        IoErrorKind::NotFound,
                        format!("{to}: nothing to swap with"),
                    ))
                }
                Some(f) if f.kind != FileKind::File || f.stamp() != expect => return Ok(SwapOutcome::Changed),
                Some(_) => s.open_files.contains(to),
            }
        };
        let clock = self.tick_clock();
        {
            let mut s = self.0.borrow_mut();
            let mut f = s
                .local
                .remove(&from_key)
                .ok_or_else(|| IoError::new(IoErrorKind::NotFound, from))?;
            let mut old = s.local.remove(&to_key).expect("checked");
            f.ctime_ns = clock;
            old.ctime_ns = clock;
            s.local.insert(from_key, old);
            s.local.insert(to_key.clone(), f);
            if s.after_rename.as_ref().is_some_and(|(p, _)| p == to) {
                let (_, data) = s.after_rename.take().expect("checked");
                let f = s.local.get_mut(&to_key).expect("placed");
                f.data = data;
                f.mtime_ns = clock;
            }
        }
        if !durable {
            self.unflushed(bundle, from, to, None, true);
        }
        Ok(if in_use { SwapOutcome::InUse } else { SwapOutcome::Clean })
    }
    fn flush(&self, _bundle: &str) -> Result<(), IoError> {
        if !self.alive() {
            return Err(power_cut());
        }
        let mut s = self.0.borrow_mut();
        s.flushes += 1;
        s.unflushed_renames.clear();
        s.unflushed_data.clear();
        Ok(())
    }
    fn remove_file(&self, bundle: &str, path: &str) -> Result<(), IoError> {
        if !self.alive() {
            return Err(power_cut());
        }
        let mut s = self.0.borrow_mut();
        let key = (bundle.to_string(), path.to_string());
        if !s.local.contains_key(&key) && Self::is_local_dir(&s, bundle, path) {
            return Err(IoError::new(IoErrorKind::NotAFile, format!("{path} is a folder")));
        }
        s.local.remove(&key);
        Ok(())
    }
    fn remove_dir(&self, bundle: &str, path: &str) -> Result<(), IoError> {
        if !self.alive() {
            return Err(power_cut());
        }
        let mut s = self.0.borrow_mut();
        if Self::has_children(&s, bundle, path) {
            return Err(IoError::new(IoErrorKind::Other, format!("{path}: Directory not empty")));
        }
        let key = (bundle.to_string(), path.to_string());
        s.made_dirs.remove(&key);
        s.dirs.remove(&key);
        Ok(())
    }
    fn create_dir_all(&self, bundle: &str, path: &str) -> Result<(), IoError> {
        let mut s = self.0.borrow_mut();
        if s.local.contains_key(&(bundle.to_string(), path.to_string())) {
            return Err(IoError::new(IoErrorKind::NotAFile, format!("{path} is a file")));
        }
        if let Some(e) = Self::local_in_the_way(&s, bundle, &format!("{path}/x")) {
            if e.kind != IoErrorKind::Other {
                return Err(e);
            }
        }
        let mut prefix = String::new();
        for part in path.split('/') {
            prefix.push_str(part);
            s.made_dirs.insert((bundle.into(), prefix.clone()));
            prefix.push('/');
        }
        Ok(())
    }
    fn evict(&self, bundle: &str, path: &str, expect: LocalStamp, aside: &str) -> Result<(), IoError> {
        if !self.alive() {
            return Err(power_cut());
        }
        {
            let s = self.0.borrow();
            if s.open_files.contains(path) {
                return Err(IoError::new(IoErrorKind::WouldBlock, "open for writing"));
            }
            if let Some(kind) = s.evict_error {
                return Err(IoError::new(kind, "operation not permitted"));
            }
            let key = (bundle.to_string(), path.to_string());
            let now = s
                .local
                .get(&key)
                .filter(|f| f.kind == FileKind::File)
                .map(LocalFile::stamp);
            if now != Some(expect) {
                return Err(IoError::new(IoErrorKind::Other, "changed"));
            }
        }
        {
            let mut s = self.0.borrow_mut();
            let f = s
                .local
                .remove(&(bundle.to_string(), path.to_string()))
                .expect("checked");
            s.local.insert((bundle.to_string(), aside.to_string()), f);
        }
        // A power cut here leaves the file set aside.
        if !self.alive() {
            return Err(power_cut());
        }
        let mut s = self.0.borrow_mut();
        s.local.remove(&(bundle.to_string(), aside.to_string()));
        if s.evict_fails_after_removal {
            return Err(IoError::new(IoErrorKind::Other, "flush failed"));
        }
        Ok(())
    }
    fn scan_tree(&self, bundle: &str, dir: &str) -> Result<Option<Vec<TreeEntry>>, IoError> {
        // The pages, all of them: one way of walking.
        let mut entries = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let Some((page, next)) = self.walk_page(bundle, dir, after.as_deref(), u32::MAX)? else {
                return Ok(None);
            };
            entries.extend(page);
            match next {
                Some(n) => after = Some(n),
                None => return Ok(Some(entries)),
            }
        }
    }
    fn walk_page(&self, bundle: &str, dir: &str, after: Option<&str>, max: u32) -> Result<Option<TreePage>, IoError> {
        use std::ops::Bound;
        let max = self.0.borrow().page_cap.map_or(max, |c| c.min(max)) as usize;
        let prefix = format!("{dir}/");
        let mut s = self.0.borrow_mut();
        // A range of the (sorted) files, so that paging a large folder costs
        // what a page holds; the few empty folders are looked at whole.
        let start = match after {
            Some(a) => Bound::Excluded((bundle.to_string(), format!("{prefix}{a}"))),
            None => Bound::Included((bundle.to_string(), prefix.clone())),
        };
        let files: Vec<(String, LocalFile)> = s
            .local
            .range((start, Bound::Unbounded))
            .take_while(|((b, p), _)| b == bundle && p.starts_with(&prefix))
            .take(max + 1)
            .map(|((_, p), f)| (p.clone(), f.clone()))
            .collect();
        for (p, f) in &files {
            s.queried.insert((bundle.to_string(), p.clone()), f.ctime_ns);
        }
        let mut entries: Vec<TreeEntry> = files
            .into_iter()
            .map(|(p, f)| TreeEntry {
                path: p[prefix.len()..].to_string(),
                stat: f.stat(),
                problem: f.bad_name.then(|| "the name is not valid UTF-8".to_string()),
            })
            .collect();
        for (b, d) in s.dirs.iter().chain(s.made_dirs.iter()) {
            if b == bundle && d.starts_with(&prefix) && !Self::has_children(&s, bundle, d) {
                let path = d[prefix.len()..].to_string();
                if after.is_none_or(|a| path.as_str() > a) {
                    entries.push(TreeEntry {
                        path,
                        stat: FOLDER,
                        problem: None,
                    });
                }
            }
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries.dedup_by(|a, b| a.path == b.path);
        let exists = after.is_some()
            || !entries.is_empty()
            || s.made_dirs.contains(&(bundle.into(), dir.into()))
            || Self::has_children(&s, bundle, dir);
        if !exists {
            return Ok(None);
        }
        let more = entries.len() > max;
        entries.truncate(max);
        let next = more.then(|| entries.last().map(|e| e.path.clone())).flatten();
        Ok(Some((entries, next)))
    }
    fn fine_stamps(&self, _bundle: &str) -> bool {
        self.0.borrow().fine_stamps
    }
    fn free_space(&self, _bundle: &str) -> Result<u64, IoError> {
        let s = self.0.borrow();
        Ok(s.free.min(s.disk.saturating_sub(Self::used(&s))))
    }
    fn hash_file(&self, bundle: &str, path: &str) -> Result<String, IoError> {
        self.0.borrow_mut().reads += 1;
        let s = self.0.borrow();
        if s.unreadable.contains(path) {
            return Err(IoError::new(IoErrorKind::Other, "input/output error"));
        }
        let f = s
            .local
            .get(&(bundle.into(), path.into()))
            .ok_or_else(|| IoError::new(IoErrorKind::NotFound, path))?;
        if f.kind != FileKind::File {
            return Err(IoError::new(
                IoErrorKind::NotAFile,
                format!("{path} is not a regular file"),
            ));
        }
        Ok(sha(&f.data))
    }
    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, IoError> {
        self.meta_ok()?;
        Ok(self.0.borrow().meta.get(key).cloned())
    }
    fn meta_scan_page(&self, prefix: &str, after: Option<&str>, max: u32) -> Result<Vec<(String, Vec<u8>)>, IoError> {
        use std::ops::Bound;
        self.meta_ok()?;
        let max = self.0.borrow().page_cap.map_or(max, |c| c.min(max));
        let s = self.0.borrow();
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        Ok(s.meta
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(max as usize)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
    fn meta_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, IoError> {
        let s = self.0.borrow();
        Ok(s.meta
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
    fn meta_commit(&self, changes: Vec<(String, Option<Vec<u8>>)>) -> Result<(), IoError> {
        if !self.alive() {
            return Err(power_cut());
        }
        self.meta_ok()?;
        let mut s = self.0.borrow_mut();
        for (k, v) in changes {
            match v {
                Some(v) => s.meta.insert(k, v),
                None => s.meta.remove(&k),
            };
        }
        Ok(())
    }
    fn cloud_stat(&self, bundle: &str, path: &str) -> Result<CloudObject, CloudError> {
        let s = self.0.borrow();
        if let Some(e) = &s.cloud_error {
            return Err(e.clone());
        }
        let cloud = s.cloud.borrow();
        let o = cloud
            .objects
            .get(&(bundle.into(), path.into()))
            .filter(|o| !o.special)
            .ok_or_else(|| CloudError::new(CloudErrorKind::NotFound, path))?;
        Ok(CloudObject {
            path: path.into(),
            size: o.data.len() as u64,
            etag: o.etag.clone(),
            version: None,
            content_hash: None,
            modified_ms: 0,
        })
    }
    fn cloud_ready(&self, _bundle: &str) -> Result<(), CloudError> {
        if let Some(e) = &self.0.borrow().cloud_error {
            return Err(e.clone());
        }
        if self.0.borrow().cloud_ready {
            Ok(())
        } else {
            Err(CloudError::new(CloudErrorKind::Unauthorized, "not signed in"))
        }
    }
    fn cloud_list_page(
        &self,
        bundle: &str,
        prefix: &str,
        after: Option<&str>,
        max: u32,
    ) -> Result<(CloudListing, Option<String>), CloudError> {
        use std::ops::Bound;
        let max = self.0.borrow().page_cap.map_or(max, |c| c.min(max)) as usize;
        let s = self.0.borrow();
        if let Some(e) = s.cloud_error.as_ref().or(s.list_error.as_ref()) {
            return Err(e.clone());
        }
        let cloud = s.cloud.borrow();
        // What a link in the cloud hides (a folder cloud never follows one):
        // a path below a special object, looked up folder by folder.
        let under_link = |p: &str| {
            p.match_indices('/').any(|(i, _)| {
                cloud
                    .objects
                    .get(&(bundle.to_string(), p[..i].to_string()))
                    .is_some_and(|o| o.special)
            })
        };
        let start = match after {
            Some(a) => Bound::Excluded((bundle.to_string(), a.to_string())),
            None => Bound::Included((bundle.to_string(), prefix.to_string())),
        };
        let mut page = CloudListing::default();
        let mut taken = 0;
        let mut last = None;
        let mut more = false;
        for ((b, p), o) in cloud.objects.range((start, Bound::Unbounded)) {
            if b != bundle || !p.starts_with(prefix) {
                break;
            }
            if under_link(p) {
                continue;
            }
            if taken == max {
                more = true;
                break;
            }
            taken += 1;
            last = Some(p.clone());
            if o.special {
                page.skipped
                    .push((p.clone(), "a symlink in the cloud folder (never followed)".into()));
                continue;
            }
            page.objects.push(CloudObject {
                path: p.clone(),
                size: o.data.len() as u64,
                etag: o.etag.clone(),
                version: None,
                content_hash: None,
                modified_ms: 0,
            });
        }
        Ok((page, if more { last } else { None }))
    }
    fn cloud_delete(&self, bundle: &str, path: &str, if_match: Option<&str>) -> Result<(), CloudError> {
        if !self.alive() {
            return Err(CloudError::new(CloudErrorKind::Network, "power cut"));
        }
        let s = self.0.borrow();
        if let Some(e) = &s.cloud_error {
            return Err(e.clone());
        }
        let mut cloud = s.cloud.borrow_mut();
        let key = (bundle.to_string(), path.to_string());
        match (cloud.objects.get(&key), if_match) {
            (None, _) => Err(CloudError::new(CloudErrorKind::NotFound, path)),
            (Some(o), _) if o.special => Err(CloudError::new(CloudErrorKind::NotFound, path)),
            (Some(o), Some(want)) if o.etag != want => {
                Err(CloudError::new(CloudErrorKind::PreconditionFailed, "changed"))
            }
            _ => {
                cloud.objects.remove(&key);
                Ok(())
            }
        }
    }
    fn make_thumbnail(
        &self,
        bundle: &str,
        cloud_path: &str,
        thumb_path: &str,
        _max_edge: u32,
    ) -> Result<(), CloudError> {
        let data = self
            .cloud_in(bundle, cloud_path)
            .ok_or_else(|| CloudError::new(CloudErrorKind::NotFound, cloud_path))?;
        if !data.starts_with(b"IMG") {
            return Err(CloudError::new(CloudErrorKind::Other, "not an image"));
        }
        let clock = self.tick_clock();
        let thumb = format!("thumb of {}", String::from_utf8_lossy(&data));
        self.0.borrow_mut().local.insert(
            (bundle.to_string(), thumb_path.to_string()),
            LocalFile::file(thumb.as_bytes(), clock),
        );
        Ok(())
    }
    fn start_upload(&self, request: UploadRequest) -> Result<TransferId, CloudError> {
        let mut s = self.0.borrow_mut();
        if let Some(e) = &s.cloud_error {
            return Err(e.clone());
        }
        s.next_transfer += 1;
        let id = s.next_transfer;
        let polls_left = s.upload_polls;
        s.uploads.insert(
            id,
            Upload {
                request,
                polls_left,
                result: None,
                cancelled: false,
            },
        );
        Ok(id)
    }
    fn start_download(&self, request: DownloadRequest) -> Result<TransferId, CloudError> {
        let churned = self.0.borrow().churn.clone().filter(|c| *c == request.cloud_path);
        if let Some(path) = churned {
            let next = self.now_ms().to_string();
            self.put_cloud(&path, next.as_bytes());
        }
        let mut s = self.0.borrow_mut();
        s.next_transfer += 1;
        let id = s.next_transfer;
        let key = (request.bundle.clone(), request.local_path.clone());
        if request.offset == 0 {
            s.local.remove(&key);
        }
        s.transfers.insert(
            id,
            Transfer {
                request,
                failed: None,
                cancelled: false,
                done: false,
            },
        );
        Ok(id)
    }
    fn poll_transfer(&self, id: TransferId) -> Option<TransferStatus> {
        if self.0.borrow().uploads.contains_key(&id) {
            return self.finish_upload(id);
        }
        self.advance(id)
    }
    fn cancel_transfer(&self, id: TransferId) {
        let mut s = self.0.borrow_mut();
        if let Some(t) = s.transfers.get_mut(&id) {
            t.cancelled = true;
        }
        if let Some(u) = s.uploads.get_mut(&id) {
            u.cancelled = true;
        }
    }
    fn release_transfer(&self, _id: TransferId) {}
    fn report_failure(&self, uri: &str, reason: &str) {
        self.0.borrow_mut().failures.push((uri.to_string(), reason.to_string()));
    }
    fn emit_download(&self, listener: ListenerId, progress: &DownloadProgress) {
        self.0.borrow_mut().events.push((listener, progress.clone()));
    }
    fn emit_optimize(&self, listener: ListenerId, progress: super::ondemand::OptimizeSpaceProgress) {
        self.0.borrow_mut().optimize_events.push((listener, progress));
    }
    fn emit_optimize_failure(&self, listener: ListenerId, error: &super::ApiError) {
        self.0.borrow_mut().optimize_failures.push((listener, error.clone()));
    }
    fn emit_sync(&self, listener: ListenerId, progress: SyncProgress) {
        self.0.borrow_mut().sync_events.push((listener, progress));
    }
    fn note_decision(&self, decision: SyncDecision) {
        self.0.borrow_mut().decisions.push(decision);
    }
}

impl Fake {
    /// Bytes the local files take.
    fn used(s: &State_) -> u64 {
        s.local.values().map(|f| f.data.len() as u64).sum()
    }

    fn has_children(s: &State_, bundle: &str, dir: &str) -> bool {
        let below = format!("{dir}/");
        s.local
            .range((bundle.to_string(), below.clone())..)
            .next()
            .is_some_and(|((b, p), _)| b == bundle && p.starts_with(&below))
            || s.dirs
                .iter()
                .chain(s.made_dirs.iter())
                .any(|(b, p)| b == bundle && p.starts_with(&below))
    }
}
