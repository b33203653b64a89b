//! A bandwidth limit on reads from a cloud (the command line's `--bwlimit`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::{ByteStream, Cloud, CloudError, CloudObject, ListCursor, Precondition};

/// Reads of object content go no faster than `bytes_per_sec`, each stream.
pub struct RateLimitedCloud {
    inner: Arc<dyn Cloud>,
    bytes_per_sec: u64,
}

impl RateLimitedCloud {
    /// Wraps `inner`, each read stream limited to `bytes_per_sec` (at least 1).
    pub fn new(inner: Arc<dyn Cloud>, bytes_per_sec: u64) -> Self {
        RateLimitedCloud {
            inner,
            bytes_per_sec: bytes_per_sec.max(1),
        }
    }
}

#[async_trait]
impl Cloud for RateLimitedCloud {
    fn describe(&self) -> String {
        format!("{} (at most {} B/s)", self.inner.describe(), self.bytes_per_sec)
    }
    async fn stat(&self, key: &str) -> Result<CloudObject, CloudError> {
        self.inner.stat(key).await
    }
    fn set_device(&self, id: &str) {
        self.inner.set_device(id)
    }
    fn etags_are_md5(&self) -> bool {
        self.inner.etags_are_md5()
    }
    fn list_from(self: Arc<Self>, prefix: &str, after: Option<&str>) -> Box<dyn ListCursor> {
        self.inner.clone().list_from(prefix, after)
    }
    async fn sweep_staging(&self, device: &str, older_than: Duration) -> Result<usize, CloudError> {
        self.inner.sweep_staging(device, older_than).await
    }
    async fn check_root(&self) -> Result<(), CloudError> {
        self.inner.check_root().await
    }
    async fn open(
        &self,
        key: &str,
        offset: u64,
        if_match: Option<&str>,
    ) -> Result<(CloudObject, ByteStream), CloudError> {
        let (object, inner) = self.inner.open(key, offset, if_match).await?;
        let stream = Limited {
            inner,
            rate: self.bytes_per_sec,
            start: Instant::now(),
            read: 0,
            sleep: None,
        };
        Ok((object, Box::pin(stream)))
    }
    async fn put(&self, key: &str, data: ByteStream, precondition: Precondition) -> Result<CloudObject, CloudError> {
        self.inner.put(key, data, precondition).await
    }
    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<(), CloudError> {
        self.inner.delete(key, if_match).await
    }
}

/// `inner`, read no faster than `bytes_per_sec`.
pub(crate) fn limit(inner: ByteStream, bytes_per_sec: u64) -> ByteStream {
    Box::pin(Limited {
        inner,
        rate: bytes_per_sec.max(1),
        start: Instant::now(),
        read: 0,
        sleep: None,
    })
}

struct Limited {
    inner: ByteStream,
    rate: u64,
    start: Instant,
    read: u64,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl AsyncRead for Limited {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Ahead of schedule: wait until the bytes read so far are due.
        let due = this.start + Duration::from_secs_f64(this.read as f64 / this.rate as f64);
        if due > Instant::now() {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        this.sleep = None;
        // Small reads (a tenth of a second's worth) keep the pace smooth.
        let max = ((this.rate / 10).max(1) as usize).min(buf.remaining());
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(max));
        match this.inner.as_mut().poll_read(cx, &mut limited) {
            Poll::Ready(Ok(())) => {
                let n = limited.filled().len();
                buf.advance(n);
                this.read += n as u64;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

use std::future::Future;
