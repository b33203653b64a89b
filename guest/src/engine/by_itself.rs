//! What the engine does itself where the host offers only the core imports
//! (the `cloudsync-core` world: a WASI adapter, a JS host): transfers that
//! move the bytes through the component a step per poll, hashing, and
//! eviction without write leases. A native host does all of it better
//! through the optional interfaces, and the engine then never uses this.

use std::cell::RefCell;
use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::records::LocalStamp;
use super::{
    CloudError, CloudErrorKind, CloudObject, DownloadRequest, FileStat, IoError, IoErrorKind, MoveMode, TransferId,
    TransferState, TransferStatus, UploadRequest, WritePrecondition,
};

/// Bytes one poll of a transfer moves (and one read while hashing).
pub const STEP: u32 = 1 << 20;
/// Steps one poll of a transfer takes: a poll does a bounded slice of work.
const STEPS_PER_POLL: u32 = 4;

/// The core imports the work here is made of.
pub trait CorePorts {
    fn stat(&self, bundle: &str, path: &str) -> Result<Option<FileStat>, IoError>;
    fn read_file(&self, bundle: &str, path: &str, offset: u64, len: u32) -> Result<Vec<u8>, IoError>;
    /// Writes at `offset` after cutting the file to `offset` bytes.
    fn write_file(&self, bundle: &str, path: &str, offset: u64, data: &[u8]) -> Result<(), IoError>;
    fn move_file(&self, bundle: &str, from: &str, to: &str, mode: MoveMode, durable: bool) -> Result<(), IoError>;
    fn remove_file(&self, bundle: &str, path: &str) -> Result<(), IoError>;
    fn flush(&self, bundle: &str) -> Result<(), IoError>;
    fn cloud_stat(&self, bundle: &str, path: &str) -> Result<CloudObject, CloudError>;
    fn cloud_read(
        &self,
        bundle: &str,
        path: &str,
        offset: u64,
        len: u32,
        if_match: Option<&str>,
    ) -> Result<Vec<u8>, CloudError>;
    fn begin_upload(&self, bundle: &str, path: &str, precondition: &WritePrecondition) -> Result<u64, CloudError>;
    fn upload_part(&self, id: u64, data: &[u8]) -> Result<(), CloudError>;
    fn finish_upload(&self, id: u64) -> Result<CloudObject, CloudError>;
    fn abort_upload(&self, id: u64);
}

/// Lower-case hex sha256 of a local file, read a step at a time.
pub fn hash_file(ports: &impl CorePorts, bundle: &str, path: &str) -> Result<String, IoError> {
    let mut hasher = Sha256::new();
    let mut at = 0u64;
    loop {
        let chunk = ports.read_file(bundle, path, at, STEP)?;
        hasher.update(&chunk);
        at += chunk.len() as u64;
        if chunk.len() < STEP as usize {
            return Ok(hex(&hasher.finalize()));
        }
    }
}

/// Removes `path` if it is still `expect`: set aside first, removed only if
/// the file set aside is the one checked, put back otherwise. Without write
/// leases a process holding the file open is not seen (the native host's
/// `leases.evict` sees it).
pub fn evict(ports: &impl CorePorts, bundle: &str, path: &str, expect: LocalStamp, aside: &str) -> Result<(), IoError> {
    let changed = || IoError::new(IoErrorKind::Other, format!("{path} changed"));
    match ports.stat(bundle, path)? {
        Some(st) if st.is_file() && LocalStamp::from(st) == expect => {}
        _ => return Err(changed()),
    }
    ports.move_file(bundle, path, aside, MoveMode::NoReplace, true)?;
    // The move itself gives the file a new ctime: the same file keeps its
    // inode, size and mtime.
    match ports.stat(bundle, aside)? {
        Some(st) if expect.same_file_moved(&st) => ports.remove_file(bundle, aside),
        _ => {
            // Saved anew between the check and the move: back it goes.
            ports.move_file(bundle, aside, path, MoveMode::NoReplace, true)?;
            Err(changed())
        }
    }
}

/// The whole of a cloud object of at most `max` bytes (`Other` beyond).
pub fn read_object(ports: &impl CorePorts, bundle: &str, path: &str, max: u64) -> Result<Vec<u8>, CloudError> {
    let object = ports.cloud_stat(bundle, path)?;
    if object.size > max {
        return Err(CloudError::new(
            CloudErrorKind::Other,
            format!("{path} is larger than {max} bytes"),
        ));
    }
    let mut bytes = Vec::with_capacity(object.size as usize);
    while (bytes.len() as u64) < object.size {
        let chunk = ports.cloud_read(bundle, path, bytes.len() as u64, STEP, Some(&object.etag))?;
        if chunk.is_empty() {
            return Err(stale(path));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Puts `data` at `path` atomically and durably: written beside it first
/// (at `temp`), then renamed over it.
pub fn write_whole(ports: &impl CorePorts, bundle: &str, path: &str, temp: &str, data: &[u8]) -> Result<(), IoError> {
    let mut at = 0usize;
    loop {
        let end = (at + STEP as usize).min(data.len());
        if let Err(e) = ports.write_file(bundle, temp, at as u64, &data[at..end]) {
            let _ = ports.remove_file(bundle, temp);
            return Err(e);
        }
        at = end;
        if at == data.len() {
            break;
        }
    }
    ports.flush(bundle)?;
    ports.move_file(bundle, temp, path, MoveMode::Replace, true)
}

/// The transfers the engine runs itself.
#[derive(Default)]
pub struct Transfers {
    jobs: RefCell<(TransferId, BTreeMap<TransferId, Job>)>,
}

struct Job {
    kind: Kind,
    bytes: u64,
    hasher: Sha256,
    state: TransferState,
    uploaded: Option<CloudObject>,
    sha256: Option<String>,
}

enum Kind {
    Download {
        request: DownloadRequest,
        /// The object as first seen; none until the first poll.
        object: Option<CloudObject>,
        /// Kept bytes hashed so far (a resumed download hashes them first).
        hashed: u64,
    },
    Upload {
        request: UploadRequest,
        /// The cloud's upload; none until the first poll.
        upload: Option<u64>,
    },
}

impl Transfers {
    pub fn start_download(&self, request: DownloadRequest) -> TransferId {
        let bytes = request.offset;
        self.add(
            Kind::Download {
                request,
                object: None,
                hashed: 0,
            },
            bytes,
        )
    }

    pub fn start_upload(&self, request: UploadRequest) -> TransferId {
        self.add(Kind::Upload { request, upload: None }, 0)
    }

    fn add(&self, kind: Kind, bytes: u64) -> TransferId {
        let mut jobs = self.jobs.borrow_mut();
        jobs.0 += 1;
        let id = jobs.0;
        jobs.1.insert(
            id,
            Job {
                kind,
                bytes,
                hasher: Sha256::new(),
                state: TransferState::Running,
                uploaded: None,
                sha256: None,
            },
        );
        id
    }

    /// Whether a transfer waits for polls to move it on.
    pub fn busy(&self) -> bool {
        self.jobs.borrow().1.values().any(|j| j.state == TransferState::Running)
    }

    /// Moves the transfer on by a bounded slice, then says where it is.
    pub fn poll(&self, ports: &impl CorePorts, id: TransferId) -> Option<TransferStatus> {
        let mut jobs = self.jobs.borrow_mut();
        let job = jobs.1.get_mut(&id)?;
        if job.state == TransferState::Running {
            for _ in 0..STEPS_PER_POLL {
                match job.step(ports) {
                    Ok(Some(())) => {}
                    Ok(None) => break,
                    Err(e) => {
                        job.fail(ports, e);
                        break;
                    }
                }
            }
        }
        Some(TransferStatus {
            bytes: job.bytes,
            state: job.state.clone(),
            uploaded: job.uploaded.clone(),
            sha256: job.sha256.clone(),
        })
    }

    /// Stops a transfer: it writes nothing more, and an upload leaves nothing.
    pub fn cancel(&self, ports: &impl CorePorts, id: TransferId) {
        if let Some(job) = self.jobs.borrow_mut().1.get_mut(&id) {
            if job.state == TransferState::Running {
                job.fail(ports, CloudError::new(CloudErrorKind::Other, "cancelled"));
            }
        }
    }

    pub fn release(&self, ports: &impl CorePorts, id: TransferId) {
        self.cancel(ports, id);
        self.jobs.borrow_mut().1.remove(&id);
    }
}

impl Job {
    fn fail(&mut self, ports: &impl CorePorts, e: CloudError) {
        if let Kind::Upload { upload: Some(u), .. } = &mut self.kind {
            ports.abort_upload(*u);
        }
        self.state = TransferState::Failed(e);
    }

    /// One step: `Some` while there is more to do in this poll.
    fn step(&mut self, ports: &impl CorePorts) -> Result<Option<()>, CloudError> {
        match &mut self.kind {
            Kind::Download {
                request: r,
                object,
                hashed,
            } => {
                let Some(obj) = object.as_ref() else {
                    let found = ports.cloud_stat(&r.bundle, &r.cloud_path)?;
                    if r.if_match.as_ref().is_some_and(|etag| *etag != found.etag) {
                        return Err(stale(&r.cloud_path));
                    }
                    if r.offset > found.size {
                        return Err(CloudError::new(
                            CloudErrorKind::PreconditionFailed,
                            format!("{}: the partial file is longer than the object", r.cloud_path),
                        ));
                    }
                    *object = Some(found);
                    return Ok(Some(()));
                };
                if *hashed < r.offset {
                    let want = STEP.min((r.offset - *hashed) as u32);
                    let kept = ports
                        .read_file(&r.bundle, &r.local_path, *hashed, want)
                        .map_err(CloudError::local)?;
                    if kept.len() != want as usize {
                        return Err(CloudError::new(
                            CloudErrorKind::LocalIo,
                            format!("{}: the partial file is shorter than {} bytes", r.local_path, r.offset),
                        ));
                    }
                    self.hasher.update(&kept);
                    *hashed += kept.len() as u64;
                    return Ok(Some(()));
                }
                let at = self.bytes;
                let chunk = if at < obj.size {
                    ports.cloud_read(&r.bundle, &r.cloud_path, at, STEP, Some(&obj.etag))?
                } else {
                    Vec::new()
                };
                if !chunk.is_empty() || at == 0 {
                    ports
                        .write_file(&r.bundle, &r.local_path, at, &chunk)
                        .map_err(CloudError::local)?;
                }
                self.hasher.update(&chunk);
                self.bytes += chunk.len() as u64;
                if !chunk.is_empty() && self.bytes < obj.size {
                    return Ok(Some(()));
                }
                if self.bytes != obj.size {
                    return Err(stale(&r.cloud_path));
                }
                // Still the version the bytes came from.
                let now = ports.cloud_stat(&r.bundle, &r.cloud_path)?;
                if now.etag != obj.etag {
                    return Err(stale(&r.cloud_path));
                }
                if r.durable {
                    ports.flush(&r.bundle).map_err(CloudError::local)?;
                }
                self.sha256 = Some(hex(&std::mem::take(&mut self.hasher).finalize()));
                self.state = TransferState::Done;
                Ok(None)
            }
            Kind::Upload { request: r, upload } => {
                let id = match upload {
                    Some(id) => *id,
                    None => {
                        check_stamp(ports, r)?;
                        let id = ports.begin_upload(&r.bundle, &r.cloud_path, &r.precondition)?;
                        *upload = Some(id);
                        id
                    }
                };
                let chunk = ports
                    .read_file(&r.bundle, &r.local_path, self.bytes, STEP)
                    .map_err(CloudError::local)?;
                if !chunk.is_empty() {
                    ports.upload_part(id, &chunk)?;
                    self.hasher.update(&chunk);
                    self.bytes += chunk.len() as u64;
                }
                if chunk.len() == STEP as usize {
                    return Ok(Some(()));
                }
                // The last byte read: the file must still be the one checked.
                check_stamp(ports, r)?;
                if r.expect.is_some_and(|e| e.size != self.bytes) {
                    return Err(changed_local(&r.local_path));
                }
                let mut object = ports.finish_upload(id)?;
                *upload = None;
                let sha = hex(&std::mem::take(&mut self.hasher).finalize());
                object.content_hash = Some(format!("sha256:{sha}"));
                self.uploaded = Some(object);
                self.sha256 = Some(sha);
                self.state = TransferState::Done;
                Ok(None)
            }
        }
    }
}

fn check_stamp(ports: &impl CorePorts, r: &UploadRequest) -> Result<(), CloudError> {
    let Some(expect) = r.expect else { return Ok(()) };
    match ports.stat(&r.bundle, &r.local_path).map_err(CloudError::local)? {
        Some(st) if st.is_file() && LocalStamp::from(st) == expect => Ok(()),
        _ => Err(changed_local(&r.local_path)),
    }
}

fn changed_local(path: &str) -> CloudError {
    CloudError::new(
        CloudErrorKind::PreconditionFailed,
        format!("{path} changed while it was uploaded"),
    )
}

fn stale(path: &str) -> CloudError {
    CloudError::new(
        CloudErrorKind::PreconditionFailed,
        format!("{path} changed in the cloud while it was downloaded"),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
