//! An in-memory platform for the engine's native tests: local files, a
//! cloud, a metadata store and transfers that move `chunk` bytes per poll.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use super::records::LocalStamp;
use super::*;

#[derive(Clone)]
pub struct LocalFile {
    pub data: Vec<u8>,
    pub mtime_ns: u64,
    pub inode: u64,
}

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
    pub optimize_events: Vec<(ListenerId, super::ondemand::OptimizeProgress)>,
    /// A power cut after this many more writes: from then on every write
    /// fails and changes nothing (the instance is then thrown away).
    pub crash_countdown: Option<u32>,
    pub device: DeviceStatus,
    pub now_ms: u64,
    pub clock_ns: u64,
    pub local: BTreeMap<(String, String), LocalFile>,
    pub dirs: BTreeSet<(String, String)>,
    /// Paths (in the caller's area) whose stat reports an escape.
    pub escaping: BTreeSet<String>,
    pub free: u64,
    pub meta: BTreeMap<String, Vec<u8>>,
    pub cloud: BTreeMap<(String, String), (Vec<u8>, String)>,
    pub cloud_error: Option<CloudError>,
    pub transfers: BTreeMap<TransferId, Transfer>,
    pub next_transfer: TransferId,
    pub chunk: u64,
    /// The next transfer fails with this once it has moved `fail_after` bytes.
    pub fail_next: Option<(u64, CloudError)>,
    pub events: Vec<(ListenerId, DownloadProgress)>,
    pub failures: Vec<(String, String)>,
}

pub struct Fake(pub RefCell<State_>);

pub const APP: &str = "com.example.notes";

pub fn uri(path: &str) -> String {
    format!("file://{APP}/data/storage/el2/cloud/{path}")
}

impl Fake {
    pub fn new() -> Self {
        Fake(RefCell::new(State_ {
            caller: APP.into(),
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
            crash_countdown: None,
            device: DeviceStatus {
                network_available: true,
                wifi_available: true,
                battery_percent: 100,
                charging: true,
            },
            now_ms: 1_700_000_000_000,
            clock_ns: 1,
            local: BTreeMap::new(),
            dirs: BTreeSet::new(),
            escaping: BTreeSet::new(),
            free: u64::MAX,
            meta: BTreeMap::new(),
            cloud: BTreeMap::new(),
            cloud_error: None,
            transfers: BTreeMap::new(),
            next_transfer: 0,
            chunk: 4,
            fail_next: None,
            events: Vec::new(),
            failures: Vec::new(),
        }))
    }

    pub fn take_sync_events(&self) -> Vec<(ListenerId, SyncProgress)> {
        std::mem::take(&mut self.0.borrow_mut().sync_events)
    }

    pub fn cloud(&self, path: &str) -> Option<Vec<u8>> {
        self.0
            .borrow()
            .cloud
            .get(&(APP.to_string(), path.to_string()))
            .map(|(d, _)| d.clone())
    }

    pub fn remove_cloud(&self, path: &str) {
        self.0.borrow_mut().cloud.remove(&(APP.to_string(), path.to_string()));
    }

    pub fn remove_local(&self, path: &str) {
        self.0.borrow_mut().local.remove(&(APP.to_string(), path.to_string()));
    }

    /// Rewrites a local file in place: same inode, and with `same_mtime` the
    /// same mtime too (an edit within the clock's resolution).
    pub fn edit_local_in_place(&self, path: &str, data: &[u8], same_mtime: bool) {
        let mut s = self.0.borrow_mut();
        s.clock_ns += 1;
        let clock = s.clock_ns;
        let f = s.local.get_mut(&(APP.to_string(), path.to_string())).expect("exists");
        f.data = data.to_vec();
        if !same_mtime {
            f.mtime_ns = clock;
        }
    }

    /// Whether a write may happen (no power cut yet).
    fn alive(&self) -> bool {
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
    /// then can an edit leave its mtime where it was.
    pub fn written_in_current_tick(&self, path: &str) -> bool {
        let s = self.0.borrow();
        s.local
            .get(&(APP.to_string(), path.to_string()))
            .is_some_and(|f| f.mtime_ns == s.clock_ns)
    }

    fn finish_upload(&self, id: TransferId) -> Option<TransferStatus> {
        let writes_now = {
            let s = self.0.borrow();
            let u = s.uploads.get(&id)?;
            u.result.is_none() && u.polls_left == 0 && !u.cancelled
        };
        let alive = !writes_now || self.alive();
        let mut s = self.0.borrow_mut();
        let fail = s.upload_fail.clone();
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
                let key = (req.bundle.clone(), req.cloud_path.clone());
                let current = s.cloud.get(&key).map(|(_, e)| e.clone());
                match (&req.precondition, &current) {
                    (WritePrecondition::IfMatch(want), Some(have)) if want == have => {}
                    (WritePrecondition::IfAbsent, None) | (WritePrecondition::None, _) => {}
                    _ => return Err(CloudError::new(CloudErrorKind::PreconditionFailed, "changed")),
                }
                let local = s
                    .local
                    .get(&(req.bundle.clone(), req.local_path.clone()))
                    .ok_or_else(|| CloudError::new(CloudErrorKind::LocalIo, "local file gone"))?;
                let now = LocalStamp {
                    size: local.data.len() as u64,
                    mtime_ns: local.mtime_ns,
                    inode: local.inode,
                };
                if req.expect.is_some_and(|e| e != now) {
                    return Err(CloudError::new(
                        CloudErrorKind::PreconditionFailed,
                        "local file changed",
                    ));
                }
                let data = local.data.clone();
                s.clock_ns += 1;
                let etag = format!("e{}", s.clock_ns);
                let object = CloudObject {
                    path: req.cloud_path.clone(),
                    size: data.len() as u64,
                    etag: etag.clone(),
                    version: None,
                    content_hash: Some(format!("sha256:{}", sha(&data))),
                    modified_ms: 0,
                };
                s.cloud.insert(key, (data, etag));
                Ok(object)
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

    pub fn put_cloud(&self, path: &str, data: &[u8]) {
        let mut s = self.0.borrow_mut();
        s.clock_ns += 1;
        let etag = format!("e{}", s.clock_ns);
        s.cloud.insert((APP.into(), path.into()), (data.to_vec(), etag));
    }

    pub fn put_local(&self, path: &str, data: &[u8]) {
        let mut s = self.0.borrow_mut();
        s.clock_ns += 1;
        let f = LocalFile {
            data: data.to_vec(),
            mtime_ns: s.clock_ns,
            inode: s.clock_ns,
        };
        s.local.insert((APP.into(), path.into()), f);
    }

    pub fn local(&self, path: &str) -> Option<Vec<u8>> {
        self.0
            .borrow()
            .local
            .get(&(APP.to_string(), path.to_string()))
            .map(|f| f.data.clone())
    }

    /// Local paths, sorted.
    pub fn local_paths(&self) -> Vec<String> {
        self.0.borrow().local.keys().map(|(_, p)| p.clone()).collect()
    }

    pub fn take_events(&self) -> Vec<(ListenerId, DownloadProgress)> {
        std::mem::take(&mut self.0.borrow_mut().events)
    }

    pub fn transfers_started(&self) -> usize {
        self.0.borrow().transfers.len()
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
        if let Some(e) = s.transfers[&id].failed.clone() {
            return Some(TransferStatus {
                bytes: have,
                state: TransferState::Failed(e),
                uploaded: None,
                sha256: None,
            });
        }
        if s.transfers[&id].done {
            return Some(TransferStatus {
                bytes: have,
                state: TransferState::Done,
                uploaded: None,
                sha256: None,
            });
        }
        let Some((content, etag)) = s.cloud.get(&(req.bundle.clone(), req.cloud_path.clone())).cloned() else {
            let e = CloudError::new(CloudErrorKind::NotFound, "gone");
            s.transfers.get_mut(&id).unwrap().failed = Some(e.clone());
            return Some(TransferStatus {
                bytes: have,
                state: TransferState::Failed(e),
                uploaded: None,
                sha256: None,
            });
        };
        if req.if_match.as_deref().is_some_and(|m| m != etag) {
            let e = CloudError::new(CloudErrorKind::PreconditionFailed, "changed");
            s.transfers.get_mut(&id).unwrap().failed = Some(e.clone());
            return Some(TransferStatus {
                bytes: have,
                state: TransferState::Failed(e),
                uploaded: None,
                sha256: None,
            });
        }
        if let Some((after, e)) = s.fail_next.clone() {
            if have >= after {
                s.fail_next = None;
                s.transfers.get_mut(&id).unwrap().failed = Some(e.clone());
                return Some(TransferStatus {
                    bytes: have,
                    state: TransferState::Failed(e),
                    uploaded: None,
                    sha256: None,
                });
            }
        }
        let end = (have + chunk).min(content.len() as u64);
        s.clock_ns += 1;
        let clock = s.clock_ns;
        let f = s.local.entry(key).or_insert(LocalFile {
            data: Vec::new(),
            mtime_ns: clock,
            inode: clock,
        });
        f.data.truncate(have as usize);
        f.data.extend_from_slice(&content[have as usize..end as usize]);
        f.mtime_ns = clock;
        let f_data = f.data.clone();
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

fn sha(data: &[u8]) -> String {
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
        "testdev".into()
    }
    fn stat(&self, bundle: &str, path: &str) -> Result<Option<FileStat>, IoError> {
        let s = self.0.borrow();
        if s.escaping.contains(path) {
            return Err(IoError::new(IoErrorKind::EscapesSandbox, "symlink"));
        }
        if let Some(kind) = s.stat_errors.get(path) {
            return Err(IoError::new(*kind, "injected"));
        }
        if s.dirs.contains(&(bundle.into(), path.into())) {
            return Ok(Some(FileStat {
                size: 0,
                mtime_ns: 0,
                inode: 0,
                is_dir: true,
                atime_ns: 0,
            }));
        }
        Ok(s.local.get(&(bundle.into(), path.into())).map(|f| FileStat {
            size: f.data.len() as u64,
            mtime_ns: f.mtime_ns,
            inode: f.inode,
            is_dir: false,
            atime_ns: f.mtime_ns,
        }))
    }
    fn rename(&self, bundle: &str, from: &str, to: &str) -> Result<(), IoError> {
        if !self.alive() {
            return Err(IoError::new(IoErrorKind::Other, "power cut"));
        }
        let mut s = self.0.borrow_mut();
        let f = s
            .local
            .remove(&(bundle.into(), from.into()))
            .ok_or_else(|| IoError::new(IoErrorKind::NotFound, from))?;
        s.local.insert((bundle.into(), to.into()), f);
        Ok(())
    }
    fn remove_file(&self, bundle: &str, path: &str) -> Result<(), IoError> {
        if !self.alive() {
            return Err(IoError::new(IoErrorKind::Other, "power cut"));
        }
        self.0.borrow_mut().local.remove(&(bundle.into(), path.into()));
        Ok(())
    }
    fn create_dir_all(&self, bundle: &str, path: &str) -> Result<(), IoError> {
        self.0.borrow_mut().made_dirs.insert((bundle.into(), path.into()));
        Ok(())
    }
    fn evict(&self, bundle: &str, path: &str, expect: LocalStamp) -> Result<(), IoError> {
        if !self.alive() {
            return Err(IoError::new(IoErrorKind::Other, "power cut"));
        }
        let mut s = self.0.borrow_mut();
        if s.open_files.contains(path) {
            return Err(IoError::new(IoErrorKind::WouldBlock, "open for writing"));
        }
        let key = (bundle.to_string(), path.to_string());
        let now = s.local.get(&key).map(|f| LocalStamp {
            size: f.data.len() as u64,
            mtime_ns: f.mtime_ns,
            inode: f.inode,
        });
        if now != Some(expect) {
            return Err(IoError::new(IoErrorKind::Other, "changed"));
        }
        s.local.remove(&key);
        if s.evict_fails_after_removal {
            return Err(IoError::new(IoErrorKind::Other, "flush failed"));
        }
        Ok(())
    }
    fn scan_tree(&self, bundle: &str, dir: &str) -> Result<Option<Vec<(String, FileStat)>>, IoError> {
        let s = self.0.borrow();
        let prefix = format!("{dir}/");
        let files: Vec<(String, FileStat)> = s
            .local
            .iter()
            .filter(|((b, p), _)| b == bundle && p.starts_with(&prefix))
            .map(|((_, p), f)| {
                (
                    p[prefix.len()..].to_string(),
                    FileStat {
                        size: f.data.len() as u64,
                        mtime_ns: f.mtime_ns,
                        inode: f.inode,
                        is_dir: false,
                        atime_ns: f.mtime_ns,
                    },
                )
            })
            .collect();
        if files.is_empty() && !s.made_dirs.contains(&(bundle.into(), dir.into())) {
            return Ok(None);
        }
        Ok(Some(files))
    }
    fn free_space(&self, _bundle: &str) -> Result<u64, IoError> {
        Ok(self.0.borrow().free)
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
        Ok(sha(&f.data))
    }
    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, IoError> {
        Ok(self.0.borrow().meta.get(key).cloned())
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
            return Err(IoError::new(IoErrorKind::Other, "power cut"));
        }
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
        let (data, etag) = s
            .cloud
            .get(&(bundle.into(), path.into()))
            .ok_or_else(|| CloudError::new(CloudErrorKind::NotFound, path))?;
        Ok(CloudObject {
            path: path.into(),
            size: data.len() as u64,
            etag: etag.clone(),
            version: None,
            content_hash: None,
            modified_ms: 0,
        })
    }
    fn cloud_ready(&self, _bundle: &str) -> Result<(), CloudError> {
        if self.0.borrow().cloud_ready {
            Ok(())
        } else {
            Err(CloudError::new(CloudErrorKind::Unauthorized, "not signed in"))
        }
    }
    fn cloud_list(&self, bundle: &str, prefix: &str) -> Result<Vec<CloudObject>, CloudError> {
        let s = self.0.borrow();
        if let Some(e) = &s.cloud_error {
            return Err(e.clone());
        }
        Ok(s.cloud
            .iter()
            .filter(|((b, p), _)| b == bundle && p.starts_with(prefix))
            .map(|((_, p), (data, etag))| CloudObject {
                path: p.clone(),
                size: data.len() as u64,
                etag: etag.clone(),
                version: None,
                content_hash: None,
                modified_ms: 0,
            })
            .collect())
    }
    fn cloud_delete(&self, bundle: &str, path: &str, if_match: Option<&str>) -> Result<(), CloudError> {
        if !self.alive() {
            return Err(CloudError::new(CloudErrorKind::Network, "power cut"));
        }
        let mut s = self.0.borrow_mut();
        if let Some(e) = &s.cloud_error {
            return Err(e.clone());
        }
        let key = (bundle.to_string(), path.to_string());
        match (s.cloud.get(&key), if_match) {
            (None, _) => Err(CloudError::new(CloudErrorKind::NotFound, path)),
            (Some((_, etag)), Some(want)) if etag != want => {
                Err(CloudError::new(CloudErrorKind::PreconditionFailed, "changed"))
            }
            _ => {
                s.cloud.remove(&key);
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
        let data = {
            let s = self.0.borrow();
            let (data, _) = s
                .cloud
                .get(&(bundle.to_string(), cloud_path.to_string()))
                .ok_or_else(|| CloudError::new(CloudErrorKind::NotFound, cloud_path))?;
            data.clone()
        };
        if !data.starts_with(b"IMG") {
            return Err(CloudError::new(CloudErrorKind::Other, "not an image"));
        }
        let mut s = self.0.borrow_mut();
        s.clock_ns += 1;
        let clock = s.clock_ns;
        let thumb = format!("thumb of {}", String::from_utf8_lossy(&data));
        s.local.insert(
            (bundle.to_string(), thumb_path.to_string()),
            LocalFile {
                data: thumb.into_bytes(),
                mtime_ns: clock,
                inode: clock,
            },
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
    fn emit_optimize(&self, listener: ListenerId, progress: super::ondemand::OptimizeProgress) {
        self.0.borrow_mut().optimize_events.push((listener, progress));
    }
    fn emit_sync(&self, listener: ListenerId, progress: SyncProgress) {
        self.0.borrow_mut().sync_events.push((listener, progress));
    }
}
