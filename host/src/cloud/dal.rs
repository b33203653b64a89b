//! S3-compatible object stores (AWS S3, Garage, MinIO, Ceph RGW, Huawei
//! OBS's S3 API) through Apache OpenDAL, which gives the HTTP client,
//! signing, multipart uploads, ranged reads, retries with backoff, timeouts
//! and a concurrency limit; this file maps its operations and errors onto
//! [`Cloud`].
//!
//! Writes carry their condition to the store (`If-Match`, `If-None-Match:
//! *`), which AWS S3 and MinIO check atomically. Some stores check it only
//! before taking the body (s3s-fs, some gateways): two writers may then both
//! pass. Unless the URL says the store's conditions are atomic
//! (`conditions=atomic`, the default for AWS), cloudsync writers therefore
//! also take a lock object of the key's own (`.cloudsync/locks/<sha256>`,
//! created with `If-None-Match: *` and read back after a moment, so that of
//! racing creators only one believes it holds it), with the body staged
//! first so the lock is held only while the condition is checked and the
//! staged object copied into place. Every write is then followed by a
//! `HEAD`: an object that is no longer the one written was replaced in that
//! instant, and the write reports `PreconditionFailed` (its bytes are not in
//! the cloud) rather than success.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::TryStreamExt;
use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer};
use opendal::{EntryMode, ErrorKind, Metadata, Operator};
use tokio::io::AsyncReadExt;
use tokio_util::compat::FuturesAsyncReadCompatExt;

use super::{
    ByteStream, Cloud, CloudError, CloudErrorKind, CloudObject, ListCursor, Listed, Precondition, StagingNames,
    DEAD_WRITER_GRACE, LOCKS_DIR, LOCK_STALE, LOCK_SWEEP_AGE, LOCK_WAIT, STAGING_DIR,
};

/// Upload part size: objects larger than this go up as a multipart upload.
const PART_SIZE: usize = 8 << 20;
/// Parts uploaded at once for one object.
const PART_CONCURRENCY: usize = 4;
/// Large objects are read in ranges of this size, this many at once: the
/// bytes in flight (16 MiB) stay within the memory budget.
const READ_CHUNK: usize = 4 << 20;
const READ_CONCURRENCY: usize = 4;
/// Requests in flight at once against one cloud.
const MAX_REQUESTS: usize = 32;
/// How long after creating a lock object it is read back: racing creators
/// that all passed the store's check have all written by then.
const LOCK_SETTLE: Duration = Duration::from_millis(40);

/// A store's listing, streamed: S3's ListObjectsV2 is in byte order of
/// the keys, a page of up to 1,000 per request, and starts after a key.
struct DalListing {
    cloud: Arc<DalCloud>,
    prefix: String,
    after: Option<String>,
    lister: Option<opendal::Lister>,
    done: bool,
}

#[async_trait]
impl ListCursor for DalListing {
    async fn next_page(&mut self, max: usize) -> Result<Vec<Listed>, CloudError> {
        let mut page = Vec::new();
        if self.done {
            return Ok(page);
        }
        if self.lister.is_none() {
            // The folder the prefix names; the caller keeps the keys under it.
            let dir = match self.prefix.rfind('/') {
                Some(i) => &self.prefix[..=i],
                None => "",
            };
            let mut list = self.cloud.op.lister_with(dir).recursive(true);
            if let Some(after) = &self.after {
                if self.cloud.op.info().capability().list_with_start_after {
                    list = list.start_after(after);
                }
            }
            match list.await {
                Ok(lister) => self.lister = Some(lister),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    self.done = true;
                    return Ok(page);
                }
                Err(e) => return Err(error(&self.prefix, e)),
            }
        }
        let lister = self.lister.as_mut().expect("made above");
        while page.len() < max {
            let Some(entry) = lister.try_next().await.map_err(|e| error(&self.prefix, e))? else {
                self.done = true;
                break;
            };
            let key = entry.path().trim_start_matches('/');
            if entry.metadata().mode() != EntryMode::FILE {
                continue;
            }
            let object = if entry.metadata().etag().is_some() {
                self.cloud.object(key, entry.metadata())
            } else {
                // Some listings carry no etag: ask for it.
                self.cloud.stat_file(key).await?
            };
            page.push(Listed::Object(object));
        }
        Ok(page)
    }
}

/// An S3-compatible store reached through an OpenDAL operator.
pub struct DalCloud {
    op: Operator,
    describe: String,
    etags_are_md5: bool,
    /// The store's conditions are not trusted to be atomic: writers lock.
    lock_writes: bool,
    names: StagingNames,
}

/// A held lock object: its key and the etag of our write of it.
struct Held {
    key: String,
    etag: Option<String>,
}

impl DalCloud {
    /// Wraps an operator with the retry (exponential backoff with jitter for
    /// transient errors), timeout and concurrency-limit layers.
    pub fn new(op: Operator, describe: impl Into<String>) -> Self {
        let op = op
            .layer(
                RetryLayer::new()
                    .with_max_times(4)
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(5))
                    .with_jitter()
                    .with_notify(|e: opendal::layers::RetryEvent<'_>| {
                        tracing::info!(
                            target: "cloudsync::cloud",
                            op = %e.op,
                            attempt = e.attempt,
                            wait_ms = e.retry_after.as_millis() as u64,
                            "retrying: {}",
                            e.err
                        )
                    }),
            )
            .layer(
                TimeoutLayer::new()
                    .with_timeout(Duration::from_secs(30))
                    .with_io_timeout(Duration::from_secs(20)),
            )
            .layer(ConcurrentLimitLayer::new(MAX_REQUESTS));
        DalCloud {
            op,
            describe: describe.into(),
            etags_are_md5: true,
            lock_writes: true,
            names: StagingNames::default(),
        }
    }

    /// The store checks `If-Match` / `If-None-Match` atomically (AWS S3,
    /// MinIO): writers need no lock objects.
    pub fn with_atomic_conditions(mut self) -> Self {
        self.lock_writes = false;
        self
    }

    fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// Takes the lock object of `key`, waiting while another writer holds it.
    async fn lock(&self, key: &str) -> Result<Held, CloudError> {
        use sha2::Digest;
        let lock_key = format!("{LOCKS_DIR}/{:x}", sha2::Sha256::digest(key.as_bytes()));
        let deadline = tokio::time::Instant::now() + LOCK_WAIT;
        let mut delay = Duration::from_millis(20);
        // A lock names its writer: `<staging name of this attempt> <ms>`,
        // the staging name holding this device's id and this process's.
        let me = format!("{STAGING_DIR}/{}/", self.names.device());
        let pid = format!("-{}-", std::process::id());
        loop {
            // Unique to this attempt: the staging sequence never repeats.
            let mine = format!("{} {}", self.names.next(), Self::now_ms());
            let written = self.op.write_with(&lock_key, mine.clone()).if_not_exists(true).await;
            let ours = match &written {
                Ok(_) => true,
                // Refused, or the answer lost and the write retried: the
                // lock may be this very attempt's.
                Err(e) => {
                    let now = self
                        .op
                        .read(&lock_key)
                        .await
                        .ok()
                        .map(|b| String::from_utf8_lossy(&b.to_vec()).to_string());
                    match now {
                        Some(held) if held == mine => true,
                        Some(held) => {
                            let since = held.rsplit(' ').next().and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
                            let age = Self::now_ms().saturating_sub(since);
                            let dead_here = held.starts_with(&me)
                                && !held.contains(&pid)
                                && age > DEAD_WRITER_GRACE.as_millis() as u64;
                            let stale = age > LOCK_STALE.as_millis() as u64;
                            if dead_here || stale {
                                // Left by a killed process (of this device, or long ago).
                                let _ = self.op.delete(&lock_key).await;
                                continue;
                            }
                            false
                        }
                        None if e.kind() != ErrorKind::ConditionNotMatch => {
                            return Err(error(key, written.err().unwrap()))
                        }
                        None => false,
                    }
                }
            };
            if ours {
                // Racing creators that all passed the store's check have all
                // written by now: the one whose bytes stand holds the lock.
                tokio::time::sleep(LOCK_SETTLE).await;
                if let Ok(now) = self.op.read(&lock_key).await {
                    if now.to_vec() == mine.as_bytes() {
                        let etag = self
                            .op
                            .stat(&lock_key)
                            .await
                            .ok()
                            .and_then(|m| m.etag().map(str::to_string));
                        return Ok(Held { key: lock_key, etag });
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CloudError::new(
                    CloudErrorKind::Throttled,
                    format!("{key}: another writer holds it; try again later"),
                ));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }

    async fn unlock(&self, held: Held) {
        let mut d = self.op.delete_with(&held.key);
        if let Some(etag) = &held.etag {
            if self.op.info().capability().delete_with_if_match {
                d = d.if_match(etag);
            }
        }
        let _ = d.await;
    }

    /// Streams `data` to `key` (in parts for large objects), conditional
    /// as the store supports; returns the etag the store gave the write.
    async fn put_direct(
        &self,
        key: &str,
        data: &mut ByteStream,
        precondition: &Precondition,
    ) -> Result<Option<String>, CloudError> {
        let mut writer = self.op.writer_with(key).chunk(PART_SIZE).concurrent(PART_CONCURRENCY);
        match precondition {
            Precondition::IfMatch(etag) => writer = writer.if_match(etag),
            Precondition::IfAbsent => writer = writer.if_not_exists(true),
            Precondition::None => {}
        }
        let mut writer = writer.await.map_err(|e| error(key, e))?;
        // Any failure aborts the upload: no partial object is left behind.
        if let Err(e) = self.write_body(key, &mut writer, data).await {
            let _ = writer.abort().await;
            return Err(e);
        }
        let written = writer.close().await.map_err(|e| error(key, e))?;
        Ok(written.etag().map(|e| e.strip_prefix("W/").unwrap_or(e).to_string()))
    }

    /// The object at `key` must be the one this write made.
    async fn verify(&self, key: &str, ours: Option<&str>) -> Result<CloudObject, CloudError> {
        let now = self.stat_file(key).await?;
        if ours.is_some_and(|e| e != now.etag) {
            return Err(CloudError::new(
                CloudErrorKind::PreconditionFailed,
                format!("{key} was replaced right after it was written"),
            ));
        }
        Ok(now)
    }

    /// The store's single-part ETags are not the content's MD5 (AWS with
    /// SSE-KMS, some gateways): transfers then do not check them.
    pub fn without_md5_etags(mut self) -> Self {
        self.etags_are_md5 = false;
        self
    }

    fn object(&self, key: &str, meta: &Metadata) -> CloudObject {
        let modified_ms = meta
            .last_modified()
            .map(SystemTime::from)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        // Every store here gives an etag; one that did not would still
        // need one, and size + mtime is the weakest that exists.
        let etag = meta
            .etag()
            .map(|e| e.strip_prefix("W/").unwrap_or(e).to_string())
            .or_else(|| meta.version().map(|v| format!("version:{v}")))
            .unwrap_or_else(|| format!("weak:{}-{modified_ms}", meta.content_length()));
        CloudObject {
            key: key.to_string(),
            size: meta.content_length(),
            etag,
            version: meta.version().map(str::to_string),
            content_hash: None,
            modified_ms,
        }
    }

    async fn stat_file(&self, key: &str) -> Result<CloudObject, CloudError> {
        let meta = self.op.stat(key).await.map_err(|e| error(key, e))?;
        if meta.mode() != EntryMode::FILE {
            return Err(CloudError::not_found(key));
        }
        Ok(self.object(key, &meta))
    }

    /// Sends `data` through `writer` in parts.
    async fn write_body(
        &self,
        key: &str,
        writer: &mut opendal::Writer,
        data: &mut ByteStream,
    ) -> Result<(), CloudError> {
        let source =
            |e: std::io::Error| CloudError::new(CloudErrorKind::Other, format!("reading the upload source: {e}"));
        let mut buf = vec![0u8; PART_SIZE];
        loop {
            let n = data.read(&mut buf).await.map_err(source)?;
            if n == 0 {
                return Ok(());
            }
            writer.write(buf[..n].to_vec()).await.map_err(|e| error(key, e))?;
        }
    }
}

/// Maps OpenDAL's errors onto the kinds the engine understands.
fn error(key: &str, e: opendal::Error) -> CloudError {
    let message = format!("{key}: {e}");
    let kind = match e.kind() {
        ErrorKind::NotFound | ErrorKind::IsADirectory | ErrorKind::NotADirectory => CloudErrorKind::NotFound,
        ErrorKind::ConditionNotMatch => CloudErrorKind::PreconditionFailed,
        ErrorKind::RateLimited => CloudErrorKind::Throttled,
        ErrorKind::PermissionDenied => CloudErrorKind::Unauthorized,
        _ if is_quota(&message) => CloudErrorKind::StorageFull,
        _ if e.is_temporary() || is_unreachable(&message) => CloudErrorKind::Network,
        _ => CloudErrorKind::Other,
    };
    CloudError::new(kind, message)
}

/// HTTP 507 (WebDAV) and the S3 family's quota errors.
fn is_quota(message: &str) -> bool {
    [
        "507",
        "Insufficient Storage",
        "QuotaExceeded",
        "EntityTooLarge",
        "InsufficientStorage",
    ]
    .iter()
    .any(|m| message.contains(m))
}

/// Connection-level failures that OpenDAL reports as unexpected.
fn is_unreachable(message: &str) -> bool {
    [
        "error sending request",
        "connection refused",
        "Connection refused",
        "dns error",
        "timed out",
        "connect",
    ]
    .iter()
    .any(|m| message.contains(m))
}

#[async_trait]
impl Cloud for DalCloud {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn etags_are_md5(&self) -> bool {
        self.etags_are_md5
    }

    fn set_device(&self, id: &str) {
        self.names.set_device(id)
    }

    async fn stat(&self, key: &str) -> Result<CloudObject, CloudError> {
        self.stat_file(key).await
    }

    fn list_from(self: Arc<Self>, prefix: &str, after: Option<&str>) -> Box<dyn ListCursor> {
        Box::new(DalListing {
            cloud: self,
            prefix: prefix.to_string(),
            after: after.map(str::to_string),
            lister: None,
            done: false,
        })
    }

    async fn open(
        &self,
        key: &str,
        offset: u64,
        if_match: Option<&str>,
    ) -> Result<(CloudObject, ByteStream), CloudError> {
        let object = self.stat_file(key).await?;
        object.expect_etag(if_match)?;
        let mut reader = self.op.reader_with(key).content_length_hint(object.size);
        if object.size - offset.min(object.size) > READ_CHUNK as u64 {
            // Large objects come in ranged requests running at once.
            reader = reader.chunk(READ_CHUNK).concurrent(READ_CONCURRENCY);
        }
        if self.op.info().capability().read_with_if_match && !object.etag.starts_with("weak:") {
            // The read itself is conditional too: a change between the stat
            // and the first byte is refused by the store.
            reader = reader.if_match(&object.etag);
        }
        let reader = reader.await.map_err(|e| error(key, e))?;
        let stream = reader
            .into_futures_async_read(offset..object.size)
            .await
            .map_err(|e| error(key, e))?;
        Ok((object, Box::pin(stream.compat())))
    }

    async fn put(
        &self,
        key: &str,
        mut data: ByteStream,
        precondition: Precondition,
    ) -> Result<CloudObject, CloudError> {
        if !self.lock_writes || precondition == Precondition::None {
            let ours = self.put_direct(key, &mut data, &precondition).await?;
            return self.verify(key, ours.as_deref()).await;
        }
        // Staged first, so that the lock is held only for the check and
        // the copy (a server-side copy, however large the object).
        let staged = self.names.next();
        self.put_direct(&staged, &mut data, &Precondition::None).await?;
        let placed = async {
            let held = self.lock(key).await?;
            let done = async {
                precondition.check(key, self.stat_file(key).await)?;
                let copied = self.op.copy(&staged, key).await.map_err(|e| error(key, e))?;
                self.verify(key, copied.etag()).await
            }
            .await;
            self.unlock(held).await;
            done
        }
        .await;
        let _ = self.op.delete(&staged).await;
        placed
    }

    async fn sweep_staging(&self, device: &str, older_than: Duration) -> Result<usize, CloudError> {
        let now = Self::now_ms();
        let listing = match self.op.list_with(&format!("{STAGING_DIR}/")).recursive(true).await {
            Ok(l) => l,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(error(STAGING_DIR, e)),
        };
        let mut removed = 0;
        for entry in listing {
            if entry.metadata().mode() != EntryMode::FILE {
                continue;
            }
            let key = entry.path().trim_start_matches('/').to_string();
            let own = key.starts_with(&format!("{STAGING_DIR}/{device}/"));
            let modified = self.object(&key, entry.metadata()).modified_ms;
            let abandoned = modified > 0 && now.saturating_sub(modified) > older_than.as_millis() as u64;
            if (own || abandoned) && self.op.delete(&key).await.is_ok() {
                removed += 1;
            }
        }
        // Lock objects killed writers left, by the time each says it was
        // taken (`<name> <ms>`).
        if let Ok(locks) = self.op.list(&format!("{LOCKS_DIR}/")).await {
            for entry in locks.iter().filter(|e| e.metadata().mode() == EntryMode::FILE) {
                let key = entry.path().trim_start_matches('/');
                let Ok(held) = self.op.read(key).await else { continue };
                let since = String::from_utf8_lossy(&held.to_vec())
                    .rsplit(' ')
                    .next()
                    .and_then(|t| t.parse::<u64>().ok());
                if since.is_some_and(|t| now.saturating_sub(t) > LOCK_SWEEP_AGE.as_millis() as u64) {
                    let _ = self.op.delete(key).await;
                }
            }
        }
        Ok(removed)
    }

    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<(), CloudError> {
        let Some(etag) = if_match else {
            return self.op.delete(key).await.map_err(|e| error(key, e));
        };
        let held = if self.lock_writes {
            Some(self.lock(key).await?)
        } else {
            None
        };
        let deleted = async {
            // Checked here too, for stores that do not check it themselves.
            Precondition::IfMatch(etag.to_string()).check(key, self.stat_file(key).await)?;
            let mut d = self.op.delete_with(key);
            if self.op.info().capability().delete_with_if_match {
                d = d.if_match(etag);
            }
            d.await.map_err(|e| error(key, e))
        }
        .await;
        if let Some(held) = held {
            self.unlock(held).await;
        }
        deleted
    }
}
