//! A cloud wrapper that injects faults, for tests and for trying the engine
//! under bad conditions: unreachable or throttling clouds, connections that
//! drop mid-read, truncated or corrupted content, slow reads.

use std::fs::File;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::{ByteStream, Cloud, CloudError, CloudErrorKind, CloudObject, FileSource, ListCursor, Listed, Precondition};

/// What to break. Offsets are positions in the object, so they hold across resumes.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Every call fails with this (e.g. `Network`: the cloud is unreachable).
    pub fail_calls: Option<CloudErrorKind>,
    /// Opening an object for reading fails with this (e.g. `Throttled`).
    pub fail_open: Option<CloudErrorKind>,
    /// A read fails like a dropped connection on reaching this offset.
    pub drop_at: Option<u64>,
    /// A read ends early, as if the object were this long.
    pub truncate_at: Option<u64>,
    /// Each read of object content waits this long first.
    pub read_delay: Option<Duration>,
    /// Reads of object content go no faster than this many bytes a second.
    pub bandwidth: Option<u64>,
    /// The byte at this offset is flipped in what reads return.
    pub corrupt_at: Option<u64>,
    /// `stat` and `open` report the content's sha256 (read from the real content).
    pub advertise_sha256: bool,
    /// Writes fail with this (e.g. `StorageFull`: the account is full).
    pub fail_put: Option<CloudErrorKind>,
}

/// A listing whose every page may fail as the faults say.
struct FaultyListing {
    cloud: Arc<FaultyCloud>,
    inner: Box<dyn ListCursor>,
}

#[async_trait]
impl ListCursor for FaultyListing {
    async fn next_page(&mut self, max: usize) -> Result<Vec<Listed>, CloudError> {
        self.cloud.check_calls()?;
        self.inner.next_page(max).await
    }
}

/// Wraps a cloud and breaks it as [`Faults`] say; the faults can be changed at any time.
pub struct FaultyCloud {
    inner: Arc<dyn Cloud>,
    faults: Mutex<Faults>,
    opens: AtomicU64,
    last_open_offset: Mutex<Option<u64>>,
}

impl FaultyCloud {
    /// Wraps `inner`, breaking nothing yet.
    pub fn new(inner: Arc<dyn Cloud>) -> Self {
        FaultyCloud {
            inner,
            faults: Mutex::new(Faults::default()),
            opens: AtomicU64::new(0),
            last_open_offset: Mutex::new(None),
        }
    }

    /// How many reads of object content were asked for.
    pub fn opens(&self) -> u64 {
        self.opens.load(Ordering::Relaxed)
    }

    /// The offset the last read started at.
    pub fn last_open_offset(&self) -> Option<u64> {
        *self.last_open_offset.lock().unwrap()
    }

    /// Replaces the faults.
    pub fn set(&self, faults: Faults) {
        *self.faults.lock().unwrap() = faults;
    }

    /// Changes the faults in place.
    pub fn update(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.faults.lock().unwrap());
    }

    fn faults(&self) -> Faults {
        self.faults.lock().unwrap().clone()
    }

    fn check_calls(&self) -> Result<(), CloudError> {
        match self.faults().fail_calls {
            Some(kind) => Err(CloudError::new(kind, "injected fault")),
            None => Ok(()),
        }
    }

    async fn with_hash(&self, mut object: CloudObject) -> Result<CloudObject, CloudError> {
        if self.faults().advertise_sha256 {
            let (_, mut stream) = self.inner.open(&object.key, 0, None).await?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0; 64 * 1024];
            loop {
                let n = stream
                    .read(&mut buf)
                    .await
                    .map_err(|e| CloudError::new(CloudErrorKind::Network, e.to_string()))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            object.content_hash = Some(format!("sha256:{:x}", hasher.finalize()));
        }
        Ok(object)
    }
}

#[async_trait]
impl Cloud for FaultyCloud {
    fn describe(&self) -> String {
        format!("faulty({})", self.inner.describe())
    }

    async fn stat(&self, key: &str) -> Result<CloudObject, CloudError> {
        self.check_calls()?;
        let object = self.inner.stat(key).await?;
        self.with_hash(object).await
    }

    fn set_device(&self, id: &str) {
        self.inner.set_device(id)
    }

    fn etags_are_md5(&self) -> bool {
        self.inner.etags_are_md5()
    }

    fn list_from(self: Arc<Self>, prefix: &str, after: Option<&str>) -> Box<dyn ListCursor> {
        let inner = self.inner.clone().list_from(prefix, after);
        Box::new(FaultyListing { cloud: self, inner })
    }

    async fn sweep_staging(&self, device: &str, older_than: Duration) -> Result<usize, CloudError> {
        self.check_calls()?;
        self.inner.sweep_staging(device, older_than).await
    }
    async fn check_root(&self) -> Result<(), CloudError> {
        self.check_calls()?;
        self.inner.check_root().await
    }

    async fn open(
        &self,
        key: &str,
        offset: u64,
        if_match: Option<&str>,
    ) -> Result<(CloudObject, ByteStream), CloudError> {
        self.opens.fetch_add(1, Ordering::Relaxed);
        *self.last_open_offset.lock().unwrap() = Some(offset);
        self.check_calls()?;
        let faults = self.faults();
        if let Some(kind) = faults.fail_open {
            return Err(CloudError::new(kind, "injected fault"));
        }
        let (object, inner) = self.inner.open(key, offset, if_match).await?;
        let object = self.with_hash(object).await?;
        let bandwidth = faults.bandwidth;
        let stream = FaultyStream {
            inner,
            pos: offset,
            faults,
            sleep: None,
        };
        let stream: ByteStream = Box::pin(stream);
        let stream = match bandwidth {
            Some(rate) => super::ratelimit::limit(stream, rate),
            None => stream,
        };
        Ok((object, stream))
    }

    async fn put(&self, key: &str, data: ByteStream, precondition: Precondition) -> Result<CloudObject, CloudError> {
        self.check_calls()?;
        if let Some(kind) = self.faults().fail_put {
            return Err(CloudError::new(kind, "injected fault"));
        }
        self.inner.put(key, data, precondition).await
    }

    async fn put_file(
        &self,
        key: &str,
        source: &dyn FileSource,
        precondition: Precondition,
    ) -> Option<Result<CloudObject, CloudError>> {
        if let Err(e) = self.check_calls() {
            return Some(Err(e));
        }
        if let Some(kind) = self.faults().fail_put {
            return Some(Err(CloudError::new(kind, "injected fault")));
        }
        self.inner.put_file(key, source, precondition).await
    }

    /// Forwarded while no fault of the byte stream is set: those need
    /// the stream ([`Self::open`]).
    fn open_file(
        &self,
        key: &str,
        offset: u64,
        if_match: Option<&str>,
    ) -> Option<Result<(CloudObject, File), CloudError>> {
        let f = self.faults();
        let streamed = f.fail_open.is_some()
            || f.drop_at.is_some()
            || f.truncate_at.is_some()
            || f.read_delay.is_some()
            || f.bandwidth.is_some()
            || f.corrupt_at.is_some()
            || f.advertise_sha256;
        if streamed {
            return None;
        }
        let opened = self.inner.open_file(key, offset, if_match)?;
        self.opens.fetch_add(1, Ordering::Relaxed);
        *self.last_open_offset.lock().unwrap() = Some(offset);
        if let Err(e) = self.check_calls() {
            return Some(Err(e));
        }
        Some(opened)
    }

    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<(), CloudError> {
        self.check_calls()?;
        self.inner.delete(key, if_match).await
    }
}

struct FaultyStream {
    inner: ByteStream,
    pos: u64,
    faults: Faults,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for FaultyStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(delay) = this.faults.read_delay {
            let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        if this.faults.truncate_at.is_some_and(|t| this.pos >= t) {
            return Poll::Ready(Ok(()));
        }
        if this.faults.drop_at.is_some_and(|d| this.pos >= d) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "injected: connection dropped",
            )));
        }
        // Never read past the next fault's offset, so it lands exactly there.
        let limit = [this.faults.truncate_at, this.faults.drop_at]
            .into_iter()
            .flatten()
            .map(|at| (at - this.pos) as usize)
            .min()
            .unwrap_or(usize::MAX)
            .min(buf.remaining());
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(limit));
        match this.inner.as_mut().poll_read(cx, &mut limited) {
            Poll::Ready(Ok(())) => {
                let n = limited.filled().len();
                if let Some(at) = this.faults.corrupt_at {
                    if (this.pos..this.pos + n as u64).contains(&at) {
                        limited.filled_mut()[(at - this.pos) as usize] ^= 0xff;
                    }
                }
                buf.advance(n);
                this.pos += n as u64;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

use std::future::Future;
