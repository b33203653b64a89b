//! Streaming downloads the host runs for the engine: bytes go from the
//! cloud straight to a local file, never through the component's memory.
//! The engine starts, polls and cancels them; a transfer wakes the engine's
//! driver as it progresses.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use crate::cloud::{Cloud, CloudError, CloudErrorKind};
use crate::device::DeviceStatus;

/// How a transfer ended badly.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("{0}")]
    Cloud(#[from] CloudError),
    #[error("local disk full: {0}")]
    LocalNoSpace(String),
    #[error("local write failed: {0}")]
    LocalIo(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Running,
    Done,
    Failed(TransferError),
}

/// Called (from any thread) when a transfer progressed or ended.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Read size: large enough that a local copy runs near `cp` speed.
const CHUNK: usize = 1 << 20;
/// A transfer wakes the driver at most this often while it runs.
const WAKE_EVERY: Duration = Duration::from_millis(50);
/// How long `cancel` waits for the transfer to stop writing.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

struct Shared {
    bytes: AtomicU64,
    outcome: Mutex<Option<Result<(), TransferError>>>,
    cancelled: AtomicBool,
    finished: Mutex<bool>,
    finished_cv: Condvar,
    abort: Mutex<Option<tokio::task::AbortHandle>>,
}

/// Marks the transfer finished however its task ends: completed, failed,
/// aborted, or dropped before it ever ran.
struct FinishGuard {
    shared: Arc<Shared>,
    waker: Waker,
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        *self.shared.finished.lock().unwrap() = true;
        self.shared.finished_cv.notify_all();
        (self.waker)();
    }
}

/// The transfers of one engine instance. Dropping it cancels them all.
pub struct Transfers {
    handle: tokio::runtime::Handle,
    cloud: Arc<dyn Cloud>,
    device: Arc<dyn DeviceStatus>,
    limit: Arc<Semaphore>,
    waker: Waker,
    next: u64,
    live: HashMap<u64, Arc<Shared>>,
}

/// One download: `key` from `offset` into `local`, conditional on `if_match`.
pub struct DownloadJob {
    pub key: String,
    pub local: PathBuf,
    pub offset: u64,
    pub if_match: Option<String>,
}

impl Transfers {
    pub fn new(
        handle: tokio::runtime::Handle,
        cloud: Arc<dyn Cloud>,
        device: Arc<dyn DeviceStatus>,
        max_concurrent: usize,
        waker: Waker,
    ) -> Self {
        Transfers {
            handle,
            cloud,
            device,
            limit: Arc::new(Semaphore::new(max_concurrent.max(1))),
            waker,
            next: 0,
            live: HashMap::new(),
        }
    }

    pub fn start_download(&mut self, job: DownloadJob) -> u64 {
        self.next += 1;
        let id = self.next;
        let shared = Arc::new(Shared {
            bytes: AtomicU64::new(job.offset),
            outcome: Mutex::new(None),
            cancelled: AtomicBool::new(false),
            finished: Mutex::new(false),
            finished_cv: Condvar::new(),
            abort: Mutex::new(None),
        });
        let guard = FinishGuard {
            shared: shared.clone(),
            waker: self.waker.clone(),
        };
        let (cloud, device, limit) = (self.cloud.clone(), self.device.clone(), self.limit.clone());
        let task = self.handle.spawn(async move {
            let guard = guard;
            let Ok(_permit) = limit.acquire_owned().await else {
                return;
            };
            let result = download(&guard.shared, cloud.as_ref(), device.as_ref(), &guard.waker, job).await;
            *guard.shared.outcome.lock().unwrap() = Some(result);
        });
        *shared.abort.lock().unwrap() = Some(task.abort_handle());
        self.live.insert(id, shared);
        id
    }

    /// Bytes now in the local file, and how the transfer stands.
    pub fn poll(&self, id: u64) -> Option<(u64, Outcome)> {
        let shared = self.live.get(&id)?;
        let bytes = shared.bytes.load(Ordering::Acquire);
        let outcome = match &*shared.outcome.lock().unwrap() {
            None if *shared.finished.lock().unwrap() => {
                Outcome::Failed(TransferError::LocalIo("the transfer ended without a result".into()))
            }
            None => Outcome::Running,
            Some(Ok(())) => Outcome::Done,
            Some(Err(e)) => Outcome::Failed(e.clone()),
        };
        Some((bytes, outcome))
    }

    /// Stops a transfer; when this returns it writes nothing more.
    pub fn cancel(&mut self, id: u64) {
        if let Some(shared) = self.live.get(&id) {
            stop(shared);
        }
    }

    /// Forgets a transfer (cancelling it if it still runs).
    pub fn release(&mut self, id: u64) {
        if let Some(shared) = self.live.remove(&id) {
            stop(&shared);
        }
    }
}

impl Drop for Transfers {
    fn drop(&mut self) {
        for shared in self.live.values() {
            stop(shared);
        }
    }
}

fn stop(shared: &Shared) {
    shared.cancelled.store(true, Ordering::Release);
    if let Some(abort) = shared.abort.lock().unwrap().as_ref() {
        abort.abort();
    }
    let finished = shared.finished.lock().unwrap();
    let _ = shared
        .finished_cv
        .wait_timeout_while(finished, CANCEL_WAIT, |done| !*done);
}

async fn download(
    shared: &Shared,
    cloud: &dyn Cloud,
    device: &dyn DeviceStatus,
    wake: &Waker,
    job: DownloadJob,
) -> Result<(), TransferError> {
    let (_, mut stream) = cloud.open(&job.key, job.offset, job.if_match.as_deref()).await?;
    let mut file = open_at(&job.local, job.offset).map_err(local_error)?;
    let quota = device.write_quota();
    let mut buf = vec![0u8; CHUNK];
    let mut written = 0u64;
    let mut last_wake = Instant::now();
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| CloudError::new(CloudErrorKind::Network, format!("reading {}: {e}", job.key)))?;
        if n == 0 {
            break;
        }
        if shared.cancelled.load(Ordering::Acquire) {
            return Err(TransferError::LocalIo("cancelled".into()));
        }
        if quota.is_some_and(|q| written + n as u64 > q) {
            return Err(TransferError::LocalNoSpace("the app's write quota is used up".into()));
        }
        file.write_all(&buf[..n]).map_err(local_error)?;
        written += n as u64;
        shared.bytes.store(job.offset + written, Ordering::Release);
        if last_wake.elapsed() >= WAKE_EVERY {
            last_wake = Instant::now();
            wake();
        }
    }
    file.sync_all().map_err(local_error)?;
    if let Some(etag) = &job.if_match {
        // The object must still be the version we started reading: otherwise
        // the bytes may be a mix of two versions.
        let now = cloud.stat(&job.key).await?;
        if &now.etag != etag {
            return Err(CloudError::new(
                CloudErrorKind::PreconditionFailed,
                format!("{} changed while it was read", job.key),
            )
            .into());
        }
    }
    Ok(())
}

/// Opens `path` for writing at `offset`: what lies beyond is cut off first.
fn open_at(path: &std::path::Path, offset: u64) -> std::io::Result<std::fs::File> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(path)?;
    file.set_len(offset)?;
    file.seek(SeekFrom::Start(offset))?;
    Ok(file)
}

fn local_error(e: std::io::Error) -> TransferError {
    if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
        TransferError::LocalNoSpace(e.to_string())
    } else {
        TransferError::LocalIo(e.to_string())
    }
}
