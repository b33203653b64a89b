//! An in-memory platform for the engine's native tests: local files, a
//! cloud, a metadata store and transfers that move `chunk` bytes per poll.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

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

pub struct State_ {
    pub caller: String,
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
            });
        }
        if s.transfers[&id].done {
            return Some(TransferStatus {
                bytes: have,
                state: TransferState::Done,
            });
        }
        let Some((content, etag)) = s.cloud.get(&(req.bundle.clone(), req.cloud_path.clone())).cloned() else {
            let e = CloudError::new(CloudErrorKind::NotFound, "gone");
            s.transfers.get_mut(&id).unwrap().failed = Some(e.clone());
            return Some(TransferStatus {
                bytes: have,
                state: TransferState::Failed(e),
            });
        };
        if req.if_match.as_deref().is_some_and(|m| m != etag) {
            let e = CloudError::new(CloudErrorKind::PreconditionFailed, "changed");
            s.transfers.get_mut(&id).unwrap().failed = Some(e.clone());
            return Some(TransferStatus {
                bytes: have,
                state: TransferState::Failed(e),
            });
        }
        if let Some((after, e)) = s.fail_next.clone() {
            if have >= after {
                s.fail_next = None;
                s.transfers.get_mut(&id).unwrap().failed = Some(e.clone());
                return Some(TransferStatus {
                    bytes: have,
                    state: TransferState::Failed(e),
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
        let done = end == content.len() as u64;
        s.transfers.get_mut(&id).unwrap().done = done;
        Some(TransferStatus {
            bytes: end,
            state: if done {
                TransferState::Done
            } else {
                TransferState::Running
            },
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
        if s.dirs.contains(&(bundle.into(), path.into())) {
            return Ok(Some(FileStat {
                size: 0,
                mtime_ns: 0,
                inode: 0,
                is_dir: true,
            }));
        }
        Ok(s.local.get(&(bundle.into(), path.into())).map(|f| FileStat {
            size: f.data.len() as u64,
            mtime_ns: f.mtime_ns,
            inode: f.inode,
            is_dir: false,
        }))
    }
    fn rename(&self, bundle: &str, from: &str, to: &str) -> Result<(), IoError> {
        let mut s = self.0.borrow_mut();
        let f = s
            .local
            .remove(&(bundle.into(), from.into()))
            .ok_or_else(|| IoError::new(IoErrorKind::NotFound, from))?;
        s.local.insert((bundle.into(), to.into()), f);
        Ok(())
    }
    fn remove_file(&self, bundle: &str, path: &str) -> Result<(), IoError> {
        self.0.borrow_mut().local.remove(&(bundle.into(), path.into()));
        Ok(())
    }
    fn create_dir_all(&self, _bundle: &str, _path: &str) -> Result<(), IoError> {
        Ok(())
    }
    fn free_space(&self, _bundle: &str) -> Result<u64, IoError> {
        Ok(self.0.borrow().free)
    }
    fn hash_file(&self, bundle: &str, path: &str) -> Result<String, IoError> {
        let s = self.0.borrow();
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
        self.advance(id)
    }
    fn cancel_transfer(&self, id: TransferId) {
        if let Some(t) = self.0.borrow_mut().transfers.get_mut(&id) {
            t.cancelled = true;
        }
    }
    fn release_transfer(&self, _id: TransferId) {}
    fn report_failure(&self, uri: &str, reason: &str) {
        self.0.borrow_mut().failures.push((uri.to_string(), reason.to_string()));
    }
    fn emit_download(&self, listener: ListenerId, progress: &DownloadProgress) {
        self.0.borrow_mut().events.push((listener, progress.clone()));
    }
}
