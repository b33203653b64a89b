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

    /// Transfers started and not released.
    pub fn len(&self) -> usize {
        self.live.len()
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
    let DownloadJob {
        key,
        local: mut file,
        offset,
        if_match,
        durable,
    } = job;
    file.set_len(offset).map_err(local_error)?;
    let (object, hashes) = match cloud.open_file(&key, offset, if_match.as_deref()) {
        Some(opened) => copy_object(shared, device, wake, &key, &file, offset, opened?)?,
        None => {
            stream_object(
                shared,
                cloud,
                device,
                wake,
                &key,
                &mut file,
                offset,
                if_match.as_deref(),
            )
            .await?
        }
    };
    // Flushed if asked, checked against the MD5 the store states, and the
    // object read must still be the version asked for.
    if durable {
        file.sync_all().map_err(local_error)?;
    }
    let (sha, md5) = hashes.finish();
    if let (Some(got), Some(want)) = (md5, etag_md5(&object.etag)) {
        // The store states the content's MD5: what arrived must be it.
        if got != want {
            return Err(CloudError::new(
                CloudErrorKind::Other,
                format!("{key}: the bytes read have MD5 {got}, the store says {want}"),
            )
            .into());
        }
    }
    *shared.sha256.lock().unwrap() = Some(sha);
    if let Some(etag) = if_match.as_deref() {
        // The object must still be the version we started reading: otherwise
        // the bytes may be a mix of two versions.
        let now = cloud.stat(&key).await?;
        if now.etag != etag {
            return Err(CloudError::new(
                CloudErrorKind::PreconditionFailed,
                format!("{key} changed while it was read"),
            )
            .into());
        }
    }
    Ok(())
}

/// Streams the object from `offset` into `file` (kept bytes before it).
#[allow(clippy::too_many_arguments)]
async fn stream_object(
    shared: &Arc<Shared>,
    cloud: &dyn Cloud,
    device: &dyn DeviceStatus,
    wake: &Waker,
    key: &str,
    file: &mut std::fs::File,
    offset: u64,
    if_match: Option<&str>,
) -> Result<(CloudObject, Hashes), TransferError> {
    let (object, mut stream) = cloud.open(key, offset, if_match).await?;
    std::io::Seek::seek(file, std::io::SeekFrom::Start(offset)).map_err(local_error)?;
    // The content is hashed as it is written (resumed bytes first), so the
    // engine never reads the file again to learn it.
    let mut hashes = Hashes::new(cloud.etags_are_md5() && offset == 0 && etag_md5(&object.etag).is_some());
    hash_kept(file, offset, &mut hashes)?;
    let quota = device.write_quota();
    // No bigger than the object: a zeroed 1 MiB for each small file costs
    // more than its bytes.
    let left = object.size.saturating_sub(offset);
    let mut buf = vec![0u8; (left as usize).saturating_add(1).clamp(8 << 10, CHUNK)];
    let mut written = 0u64;
    let mut progress = Progress::new(shared, wake, offset);
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| CloudError::new(CloudErrorKind::Network, format!("reading {key}: {e}")))?;
        if n == 0 {
            break;
        }
        if quota.is_some_and(|q| written + n as u64 > q) {
            return Err(TransferError::LocalNoSpace("the app's write quota is used up".into()));
        }
        file.write_all(&buf[..n]).map_err(local_error)?;
        hashes.update(&buf[..n]);
        written += n as u64;
        progress.copied(n as u64).map_err(local_error)?;
    }
    Ok((object, hashes))
}

/// Copies the object, a local file of the cloud's, from `offset` into
/// `file` in the kernel ([`copy_hashing`]).
fn copy_object(
    shared: &Arc<Shared>,
    device: &dyn DeviceStatus,
    wake: &Waker,
    key: &str,
    file: &std::fs::File,
    offset: u64,
    (object, from): (CloudObject, std::fs::File),
) -> Result<(CloudObject, Hashes), TransferError> {
    let left = object.size.saturating_sub(offset);
    if device.write_quota().is_some_and(|q| left > q) {
        return Err(TransferError::LocalNoSpace("the app's write quota is used up".into()));
    }
    let mut hashes = Hashes::new(false);
    hash_kept(file, offset, &mut hashes)?;
    let mut progress = Progress::new(shared, wake, offset);
    copy_hashing(&from, file, offset, &mut hashes, &mut |n| progress.copied(n)).map_err(|e| {
        if e.to_string() == CHANGED_WHILE_COPIED {
            TransferError::Cloud(CloudError::new(
                CloudErrorKind::PreconditionFailed,
                format!("{key} changed while it was read"),
            ))
        } else {
            local_error(e)
        }
    })?;
    Ok((object, hashes))
}

/// Hashes the bytes a resumed download kept (`len` of them).
fn hash_kept(file: &std::fs::File, len: u64, hashes: &mut Hashes) -> Result<(), TransferError> {
    let mut buf = vec![0u8; CHUNK.min(len as usize)];
    let mut at = 0;
    while at < len {
        let want = (len - at).min(CHUNK as u64) as usize;
        let n = file.read_at(&mut buf[..want], at).map_err(local_error)?;
        if n == 0 {
            return Err(TransferError::LocalIo(
                "the kept partial data is shorter than recorded".into(),
            ));
        }
        hashes.update(&buf[..n]);
        at += n as u64;
    }
    Ok(())
}

/// What a transfer hashes as bytes pass: sha256 always (the engine records
/// it), MD5 where the store states one to check against.
struct Hashes {
    sha: Sha256,
    md5: Option<md5::Md5>,
}

impl Hashes {
    fn new(md5: bool) -> Self {
        Hashes {
            sha: Sha256::new(),
            md5: md5.then(<md5::Md5 as md5::Digest>::new),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        if let Some(m) = self.md5.as_mut() {
            md5::Digest::update(m, bytes);
        }
    }

    /// The sha256 and the MD5 (if kept), lower-case hex.
    fn finish(self) -> (String, Option<String>) {
        (
            format!("{:x}", self.sha.finalize()),
            self.md5.map(|m| hex(&md5::Digest::finalize(m))),
        )
    }
}

/// Counts a transfer's bytes and wakes the driver now and then; a
/// cancelled transfer stops at its next chunk.
struct Progress {
    shared: Arc<Shared>,
    wake: Waker,
    last_wake: Instant,
}

impl Progress {
    fn new(shared: &Arc<Shared>, wake: &Waker, start: u64) -> Self {
        shared.bytes.store(start, Ordering::Release);
        Progress {
            shared: shared.clone(),
            wake: wake.clone(),
            last_wake: Instant::now(),
        }
    }

    fn copied(&mut self, n: u64) -> std::io::Result<()> {
        if self.shared.cancelled.load(Ordering::Acquire) {
            return Err(std::io::Error::other("cancelled"));
        }
        self.shared.bytes.fetch_add(n, Ordering::AcqRel);
        if self.last_wake.elapsed() >= WAKE_EVERY {
            self.last_wake = Instant::now();
            (self.wake)();
        }
        Ok(())
    }
}

/// The error [`copy_hashing`] gives when the source changed size under it.
const CHANGED_WHILE_COPIED: &str = "the file changed while it was copied";
/// Each `copy_file_range` call moves at most this much, so progress shows
/// and a cancel stops soon.
const COPY_CHUNK: usize = 8 << 20;
/// Copies this large hash on a second thread while the kernel copies.
const HASH_BESIDE_FROM: u64 = 8 << 20;

/// Copies `from` from `at` to its end into `to` at the same offset, in the
/// kernel (`copy_file_range`; reads and writes where it cannot), and feeds
/// the bytes to `hashes`: large files are hashed on a second thread while
/// the copy runs, read back from the page cache, so the copy costs about
/// what `cp` does. `progress` hears of each chunk and may stop the copy.
/// A source whose size moves during the copy fails it ([`CHANGED_WHILE_COPIED`]);
/// callers check its version to catch same-size changes.
fn copy_hashing(
    from: &std::fs::File,
    to: &std::fs::File,
    at: u64,
    hashes: &mut Hashes,
    progress: &mut dyn FnMut(u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let end = from.metadata()?.len();
    if end < at {
        return Err(std::io::Error::other(CHANGED_WHILE_COPIED));
    }
    let copy = |progress: &mut dyn FnMut(u64) -> std::io::Result<()>| -> std::io::Result<()> {
        let (mut pos_in, mut pos_out) = (at, at);
        while pos_in < end {
            let want = (end - pos_in).min(COPY_CHUNK as u64) as usize;
            let n = match rustix::fs::copy_file_range(from, Some(&mut pos_in), to, Some(&mut pos_out), want) {
                Ok(0) => return Err(std::io::Error::other(CHANGED_WHILE_COPIED)),
                Ok(n) => n,
                Err(e) if pos_in == at && kernel_cannot_copy(e) => {
                    return copy_by_reading(from, to, at, end, progress);
                }
                Err(e) => return Err(e.into()),
            };
            progress(n as u64)?;
        }
        Ok(())
    };
    let stop = AtomicBool::new(false);
    if end - at < HASH_BESIDE_FROM {
        copy(progress)?;
        hash_range(from, at, end, hashes, &stop)?;
    } else {
        std::thread::scope(|scope| {
            let hasher = scope.spawn(|| hash_range(from, at, end, hashes, &stop));
            let copied = copy(progress);
            if copied.is_err() {
                stop.store(true, Ordering::Release);
            }
            let hashed = hasher
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the hashing thread failed")));
            copied.and(hashed)
        })?;
    }
    if from.metadata()?.len() != end {
        return Err(std::io::Error::other(CHANGED_WHILE_COPIED));
    }
    Ok(())
}

/// Errors of a `copy_file_range` the kernel or file systems cannot do
/// (another file system, an old kernel): copy through memory instead.
fn kernel_cannot_copy(e: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    [Errno::XDEV, Errno::INVAL, Errno::NOSYS, Errno::OPNOTSUPP].contains(&e)
}

fn copy_by_reading(
    from: &std::fs::File,
    to: &std::fs::File,
    at: u64,
    end: u64,
    progress: &mut dyn FnMut(u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK.min((end - at) as usize)];
    let mut pos = at;
    while pos < end {
        let want = (end - pos).min(CHUNK as u64) as usize;
        let n = from.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            return Err(std::io::Error::other(CHANGED_WHILE_COPIED));
        }
        to.write_all_at(&buf[..n], pos)?;
        pos += n as u64;
        progress(n as u64)?;
    }
    Ok(())
}

/// Feeds `from`'s bytes `at..end` to `hashes`, until `stop`.
fn hash_range(from: &std::fs::File, at: u64, end: u64, hashes: &mut Hashes, stop: &AtomicBool) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK.min((end - at) as usize)];
    let mut pos = at;
    while pos < end && !stop.load(Ordering::Acquire) {
        let want = (end - pos).min(CHUNK as u64) as usize;
        let n = from.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            return Err(std::io::Error::other(CHANGED_WHILE_COPIED));
        }
        hashes.update(&buf[..n]);
        pos += n as u64;
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
    // MD5 only where the store states one to check it against.
    let hashes: SharedHashes = Arc::new(Mutex::new(Some(Hashes::new(cloud.etags_are_md5()))));
    let copier = LocalCopy {
        file: &file,
        expect: job.expect,
        hashes: &hashes,
        shared,
        wake,
    };
    let put = match cloud.put_file(&job.key, &copier, job.precondition.clone()).await {
        Some(put) => put,
        None => {
            let reader = HashingReader {
                watch: file.try_clone().map_err(local_error)?,
                inner: crate::cloud::FileStream(file),
                expect: job.expect,
                hashes: hashes.clone(),
                progress: Progress::new(shared, wake, 0),
            };
            cloud.put(&job.key, Box::pin(reader), job.precondition).await
        }
    };
    let mut object = put.map_err(|e| {
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
    if let Some(taken) = hashes.lock().unwrap().take() {
        let (hex, md5) = taken.finish();
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
        object.content_hash = Some(format!("sha256:{hex}"));
        *shared.sha256.lock().unwrap() = Some(hex);
    }
    Ok(object)
}

/// What an upload hashes as it reads; taken once the upload ends.
type SharedHashes = Arc<Mutex<Option<Hashes>>>;

/// An upload's file for a cloud that copies it in the kernel: hashed as it
/// is copied, and refused at the end if it changed meanwhile (as
/// [`HashingReader`] does for a stream).
struct LocalCopy<'a> {
    file: &'a std::fs::File,
    expect: Option<Stamp>,
    hashes: &'a SharedHashes,
    shared: &'a Arc<Shared>,
    wake: &'a Waker,
}

impl crate::cloud::FileSource for LocalCopy<'_> {
    fn copy_into(&self, to: &std::fs::File) -> std::io::Result<()> {
        let mut hashes = Hashes::new(self.hashes.lock().unwrap().as_ref().is_some_and(|h| h.md5.is_some()));
        let mut progress = Progress::new(self.shared, self.wake, 0);
        copy_hashing(self.file, to, 0, &mut hashes, &mut |n| progress.copied(n)).map_err(|e| {
            match e.to_string() == CHANGED_WHILE_COPIED {
                true => std::io::Error::other(LOCAL_CHANGE),
                false => e,
            }
        })?;
        let now = Stamp::of_file(self.file)?;
        if self.expect.is_some_and(|expect| now != expect) {
            return Err(std::io::Error::other(LOCAL_CHANGE));
        }
        *self.hashes.lock().unwrap() = Some(hashes);
        Ok(())
    }
}

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
    progress: Progress,
}

impl tokio::io::AsyncRead for HashingReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.progress.shared.cancelled.load(Ordering::Acquire) {
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
            if let Some(hashes) = this.hashes.lock().unwrap().as_mut() {
                hashes.update(new);
            }
            if let Err(e) = this.progress.copied(new.len() as u64) {
                return std::task::Poll::Ready(Err(e));
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

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn a_kernel_copy_hashes_what_it_copies_from_any_offset() {
        let dir = tempfile::tempdir().unwrap();
        // Below and above the size that hashes on a second thread.
        for len in [0, 1, 4096, HASH_BESIDE_FROM as usize + COPY_CHUNK + 12345] {
            let data = pattern(len, 7);
            let from_path = dir.path().join("from");
            std::fs::write(&from_path, &data).unwrap();
            let from = std::fs::File::open(&from_path).unwrap();
            for at in [0, len / 3] {
                let to_path = dir.path().join("to");
                std::fs::write(&to_path, &data[..at]).unwrap();
                let to = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&to_path)
                    .unwrap();
                let mut hashes = Hashes::new(true);
                hashes.update(&data[..at]);
                let mut seen = 0;
                copy_hashing(&from, &to, at as u64, &mut hashes, &mut |n| {
                    seen += n;
                    Ok(())
                })
                .unwrap();
                assert_eq!(seen, (len - at) as u64, "progress heard of every byte");
                assert_eq!(std::fs::read(&to_path).unwrap(), data, "len {len} from {at}");
                let (sha, md5) = hashes.finish();
                assert_eq!(sha, format!("{:x}", Sha256::digest(&data)));
                assert_eq!(md5.unwrap(), hex(&<md5::Md5 as md5::Digest>::digest(&data)));
            }
        }
    }

    #[test]
    fn a_kernel_copy_fails_when_its_source_grows_or_progress_stops_it() {
        let dir = tempfile::tempdir().unwrap();
        let from_path = dir.path().join("from");
        std::fs::write(&from_path, pattern(3 * COPY_CHUNK, 1)).unwrap();
        let from = std::fs::File::open(&from_path).unwrap();
        let to = std::fs::File::create(dir.path().join("to")).unwrap();
        let mut hashes = Hashes::new(false);
        let err = copy_hashing(&from, &to, 0, &mut hashes, &mut |_| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&from_path)?;
            f.write_all(b"more")
        })
        .unwrap_err();
        assert_eq!(err.to_string(), CHANGED_WHILE_COPIED);

        let to = std::fs::File::create(dir.path().join("to2")).unwrap();
        let mut calls = 0;
        let err = copy_hashing(&from, &to, 0, &mut Hashes::new(false), &mut |_| {
            calls += 1;
            Err(std::io::Error::other("cancelled"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "cancelled");
        assert_eq!(calls, 1, "the copy stopped at the first chunk");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transfers_with_the_folder_cloud_copy_in_the_kernel_and_keep_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let cloud: Arc<dyn Cloud> = Arc::new(LocalFolderCloud::create(dir.path().join("cloud")).unwrap());
        let data = pattern(HASH_BESIDE_FROM as usize * 2 + 3, 9);
        let local = dir.path().join("big.bin");
        std::fs::write(&local, &data).unwrap();
        let mut t = Transfers::new(
            tokio::runtime::Handle::current(),
            cloud.clone(),
            Arc::new(SimulatedDevice::default()),
            2,
            Arc::new(|| {}),
        );
        let file = std::fs::File::open(&local).unwrap();
        let expect = Some(Stamp::of_file(&file).unwrap());
        let id = t.start_upload(UploadJob {
            key: "app/big.bin".into(),
            local: file,
            precondition: Precondition::IfAbsent,
            expect,
        });
        assert_eq!(outcome(&t, id), Outcome::Done);
        let want = format!("{:x}", Sha256::digest(&data));
        assert_eq!(t.sha256(id).unwrap(), want);
        assert_eq!(t.poll(id).unwrap().0, data.len() as u64);
        assert_eq!(std::fs::read(dir.path().join("cloud/app/big.bin")).unwrap(), data);

        // Down again, resumed after a kept part.
        let back = dir.path().join("back.bin");
        std::fs::write(&back, &data[..1000]).unwrap();
        let etag = cloud.stat("app/big.bin").await.unwrap().etag;
        let id = t.start_download(DownloadJob {
            key: "app/big.bin".into(),
            local: std::fs::OpenOptions::new().read(true).write(true).open(&back).unwrap(),
            offset: 1000,
            if_match: Some(etag),
            durable: true,
        });
        assert_eq!(outcome(&t, id), Outcome::Done);
        assert_eq!(t.sha256(id).unwrap(), want);
        assert_eq!(std::fs::read(&back).unwrap(), data);
    }
}
