//! Streaming downloads the host runs for the engine: bytes go from the
//! cloud straight to a local file, never through the component's memory.
//! The engine starts, polls and cancels them; a transfer wakes the engine's
//! driver as it progresses.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use crate::beneath::Stamp;
use crate::cloud::{etag_md5, Cloud, CloudError, CloudErrorKind, CloudObject, Precondition};
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
    /// A finished upload: the object written.
    uploaded: Mutex<Option<CloudObject>>,
    /// A finished transfer: the sha256 of the whole content moved.
    sha256: Mutex<Option<String>>,
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

/// One upload: the opened file `local` to `key`, if `precondition` holds
/// and the file is still `expect` from first byte to last.
pub struct UploadJob {
    pub key: String,
    pub local: std::fs::File,
    pub precondition: Precondition,
    pub expect: Option<Stamp>,
}

/// One download: `key` from `offset` into the opened file `local` (read and
/// write), conditional on `if_match`.
pub struct DownloadJob {
    pub key: String,
    pub local: std::fs::File,
    pub offset: u64,
    pub if_match: Option<String>,
    /// Flush the file before reporting done (otherwise the engine flushes
    /// a batch at once).
    pub durable: bool,
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
        let offset = job.offset;
        self.spawn(offset, move |shared, cloud, device, waker| {
            Box::pin(async move { download(&shared, cloud.as_ref(), device.as_ref(), &waker, job).await })
        })
    }

    pub fn start_upload(&mut self, job: UploadJob) -> u64 {
        self.spawn(0, move |shared, cloud, _device, waker| {
            Box::pin(async move {
                let object = upload(&shared, cloud.as_ref(), &waker, job).await?;
                *shared.uploaded.lock().unwrap() = Some(object);
                Ok(())
            })
        })
    }

    /// Runs one transfer as a task, bounded by the concurrency limit.
    fn spawn(
        &mut self,
        start_bytes: u64,
        work: impl FnOnce(Arc<Shared>, Arc<dyn Cloud>, Arc<dyn DeviceStatus>, Waker) -> TransferFuture + Send + 'static,
    ) -> u64 {
        self.next += 1;
        let id = self.next;
        let shared = Arc::new(Shared {
            bytes: AtomicU64::new(start_bytes),
            outcome: Mutex::new(None),
            cancelled: AtomicBool::new(false),
            finished: Mutex::new(false),
            finished_cv: Condvar::new(),
            abort: Mutex::new(None),
            uploaded: Mutex::new(None),
            sha256: Mutex::new(None),
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
            let result = work(guard.shared.clone(), cloud, device, guard.waker.clone()).await;
            *guard.shared.outcome.lock().unwrap() = Some(result);
        });
        *shared.abort.lock().unwrap() = Some(task.abort_handle());
        self.live.insert(id, shared);
        id
    }

    /// The object a finished upload wrote.
    pub fn uploaded(&self, id: u64) -> Option<CloudObject> {
        self.live.get(&id)?.uploaded.lock().unwrap().clone()
    }

    /// The sha256 (lower-case hex) of what a finished transfer moved.
    pub fn sha256(&self, id: u64) -> Option<String> {
        self.live.get(&id)?.sha256.lock().unwrap().clone()
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
        // Every transfer is told first, then waited for under one deadline:
        // a process ending never waits for them one after another.
        for shared in self.live.values() {
            abort(shared);
        }
        let deadline = Instant::now() + CANCEL_WAIT;
        for shared in self.live.values() {
            wait_finished(shared, deadline);
        }
    }
}

fn abort(shared: &Shared) {
    shared.cancelled.store(true, Ordering::Release);
    if let Some(abort) = shared.abort.lock().unwrap().as_ref() {
        abort.abort();
    }
}

fn wait_finished(shared: &Shared, deadline: Instant) {
    let finished = shared.finished.lock().unwrap();
    let left = deadline.saturating_duration_since(Instant::now());
    let _ = shared.finished_cv.wait_timeout_while(finished, left, |done| !*done);
}

fn stop(shared: &Shared) {
    abort(shared);
    wait_finished(shared, Instant::now() + CANCEL_WAIT);
}

async fn download(
    shared: &Arc<Shared>,
    cloud: &dyn Cloud,
    device: &dyn DeviceStatus,
    wake: &Waker,
    job: DownloadJob,
) -> Result<(), TransferError> {
    let (object, mut stream) = cloud.open(&job.key, job.offset, job.if_match.as_deref()).await?;
    let mut file = job.local;
    file.set_len(job.offset).map_err(local_error)?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(job.offset)).map_err(local_error)?;
    // The content is hashed as it is written (resumed bytes first), so the
    // engine never reads the file again to learn it.
    let mut hasher = Sha256::new();
    let check_md5 = cloud.etags_are_md5() && job.offset == 0 && etag_md5(&object.etag).is_some();
    let mut md5 = check_md5.then(<md5::Md5 as md5::Digest>::new);
    if job.offset > 0 {
        let mut buf = vec![0u8; CHUNK];
        let mut at = 0;
        while at < job.offset {
            let want = (job.offset - at).min(CHUNK as u64) as usize;
            let n = file.read_at(&mut buf[..want], at).map_err(local_error)?;
            if n == 0 {
                return Err(TransferError::LocalIo(
                    "the kept partial data is shorter than recorded".into(),
                ));
            }
            hasher.update(&buf[..n]);
            at += n as u64;
        }
    }
    let quota = device.write_quota();
    // No bigger than the object: a zeroed 1 MiB for each small file costs
    // more than its bytes.
    let left = object.size.saturating_sub(job.offset);
    let mut buf = vec![0u8; (left as usize).saturating_add(1).clamp(8 << 10, CHUNK)];
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
        hasher.update(&buf[..n]);
        if let Some(m) = md5.as_mut() {
            md5::Digest::update(m, &buf[..n]);
        }
        written += n as u64;
        shared.bytes.store(job.offset + written, Ordering::Release);
        if last_wake.elapsed() >= WAKE_EVERY {
            last_wake = Instant::now();
            wake();
        }
    }
    if job.durable {
        file.sync_all().map_err(local_error)?;
    }
    if let (Some(m), Some(want)) = (md5, etag_md5(&object.etag)) {
        // The store states the content's MD5: what arrived must be it.
        let got = hex(&md5::Digest::finalize(m));
        if got != want {
            return Err(CloudError::new(
                CloudErrorKind::Other,
                format!("{}: the bytes read have MD5 {got}, the store says {want}", job.key),
            )
            .into());
        }
    }
    *shared.sha256.lock().unwrap() = Some(format!("{:x}", hasher.finalize()));
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

type TransferFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), TransferError>> + Send>>;

/// Streams a local file to the cloud, hashing what it sends (sha256), so the
/// engine learns the content it recorded without reading the file again;
/// where the store states the content's MD5 it must be what was sent.
async fn upload(
    shared: &Arc<Shared>,
    cloud: &dyn Cloud,
    wake: &Waker,
    job: UploadJob,
) -> Result<CloudObject, TransferError> {
    let file = job.local;
    if let Some(expect) = job.expect {
        if Stamp::of_file(&file).map_err(local_error)? != expect {
            return Err(changed_locally(&job.key));
        }
    }
    let watch = file.try_clone().map_err(local_error)?;
    // MD5 only where the store states one to check it against.
    let md5 = cloud.etags_are_md5().then(md5::Md5::default);
    let hashes: SharedHashes = Arc::new(Mutex::new(Some((sha2::Sha256::default(), md5))));
    let reader = HashingReader {
        inner: crate::cloud::FileStream(file),
        watch,
        expect: job.expect,
        hashes: hashes.clone(),
        shared: shared.clone(),
        wake: wake.clone(),
        last_wake: Instant::now(),
    };
    let mut object = cloud
        .put(&job.key, Box::pin(reader), job.precondition)
        .await
        .map_err(|e| {
            // The reader refused to end because the file changed under it: the
            // write was aborted, nothing half-written reached the cloud.
            if e.message.contains(LOCAL_CHANGE) {
                changed_locally(&job.key)
            } else {
                TransferError::Cloud(e)
            }
        })?;
    if shared.cancelled.load(Ordering::Acquire) {
        return Err(TransferError::LocalIo("cancelled".into()));
    }
    if let Some((sha, md5)) = hashes.lock().unwrap().take() {
        let md5 = md5.map(|m| hex(&md5::Digest::finalize(m)));
        if let (Some(stated), Some(md5)) = (etag_md5(&object.etag), md5) {
            if stated != md5 {
                return Err(CloudError::new(
                    CloudErrorKind::Other,
                    format!(
                        "{}: the store holds other bytes than were sent (MD5 {stated}, sent {md5})",
                        job.key
                    ),
                )
                .into());
            }
        }
        let hex = format!("{:x}", sha.finalize());
        object.content_hash = Some(format!("sha256:{hex}"));
        *shared.sha256.lock().unwrap() = Some(hex);
    }
    Ok(object)
}

/// What an upload hashes as it reads: sha256, and MD5 where the store
/// states one; taken once the upload ends.
type SharedHashes = Arc<Mutex<Option<(sha2::Sha256, Option<md5::Md5>)>>>;

const LOCAL_CHANGE: &str = "the local file changed while it was read";

fn changed_locally(key: &str) -> TransferError {
    TransferError::Cloud(CloudError::new(
        CloudErrorKind::PreconditionFailed,
        format!("{key}: {LOCAL_CHANGE}"),
    ))
}

/// Counts and hashes the bytes read through it; a cancelled transfer reads
/// nothing more.
struct HashingReader {
    inner: crate::cloud::FileStream,
    /// The same open file, to check at the end that it did not change.
    watch: std::fs::File,
    expect: Option<Stamp>,
    hashes: SharedHashes,
    shared: Arc<Shared>,
    wake: Waker,
    last_wake: Instant,
}

impl tokio::io::AsyncRead for HashingReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use sha2::Digest;
        if self.shared.cancelled.load(Ordering::Acquire) {
            // Never `Interrupted`: read loops retry that kind forever.
            return std::task::Poll::Ready(Err(std::io::Error::other("the upload was cancelled")));
        }
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &poll {
            let new = &buf.filled()[before..];
            if new.is_empty() {
                // The end: the file must be what it was when the upload
                // started, or the bytes sent may mix two versions.
                let now = Stamp::of_file(&this.watch).ok();
                if let (Some(expect), Some(now)) = (this.expect, now) {
                    if now != expect {
                        return std::task::Poll::Ready(Err(std::io::Error::other(LOCAL_CHANGE)));
                    }
                }
            }
            if let Some((sha, md5)) = this.hashes.lock().unwrap().as_mut() {
                sha.update(new);
                if let Some(md5) = md5 {
                    md5::Digest::update(md5, new);
                }
            }
            this.shared.bytes.fetch_add(new.len() as u64, Ordering::AcqRel);
            if this.last_wake.elapsed() >= WAKE_EVERY {
                this.last_wake = Instant::now();
                (this.wake)();
            }
        }
        poll
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn local_error(e: std::io::Error) -> TransferError {
    if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
        TransferError::LocalNoSpace(e.to_string())
    } else {
        TransferError::LocalIo(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::LocalFolderCloud;
    use crate::device::SimulatedDevice;

    fn outcome(t: &Transfers, id: u64) -> Outcome {
        for _ in 0..500 {
            match t.poll(id) {
                Some((_, Outcome::Running)) => std::thread::sleep(Duration::from_millis(10)),
                Some((_, o)) => return o,
                None => panic!("unknown transfer"),
            }
        }
        panic!("the transfer did not end");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_upload_of_a_file_that_is_not_the_one_planned_sends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cloud: Arc<dyn Cloud> = Arc::new(LocalFolderCloud::create(dir.path().join("cloud")).unwrap());
        let local = dir.path().join("note.txt");
        std::fs::write(&local, b"version one").unwrap();
        let stamp = |p: &std::path::Path| Stamp::of_file(&std::fs::File::open(p).unwrap()).unwrap();
        let planned = stamp(&local);
        let mut t = Transfers::new(
            tokio::runtime::Handle::current(),
            cloud.clone(),
            Arc::new(SimulatedDevice::default()),
            2,
            Arc::new(|| {}),
        );
        let job = |expect| UploadJob {
            key: "app/note.txt".into(),
            local: std::fs::File::open(&local).unwrap(),
            precondition: Precondition::None,
            expect: Some(expect),
        };
        // Replaced since it was planned: refused, the cloud untouched.
        std::fs::write(dir.path().join("other"), b"version two!").unwrap();
        std::fs::rename(dir.path().join("other"), &local).unwrap();
        let id = t.start_upload(job(planned));
        let Outcome::Failed(TransferError::Cloud(e)) = outcome(&t, id) else {
            panic!("the upload went ahead");
        };
        assert_eq!(e.kind, CloudErrorKind::PreconditionFailed, "{e}");
        assert!(cloud.stat("app/note.txt").await.is_err(), "nothing reached the cloud");
        // The file as it is now goes up, with its hash.
        let now = stamp(&local);
        let id = t.start_upload(job(now));
        assert_eq!(outcome(&t, id), Outcome::Done);
        let sent = t.sha256(id).unwrap();
        assert_eq!(sent, format!("{:x}", Sha256::digest(b"version two!")));
        assert_eq!(t.uploaded(id).unwrap().size, 12);
    }
}
