//! Real clouds through Apache OpenDAL: S3-compatible object stores (AWS S3,
//! Garage, MinIO, Ceph RGW, Huawei OBS's S3 API) and WebDAV (Nextcloud,
//! Apache mod_dav, ...). OpenDAL gives the HTTP clients, signing, multipart
//! uploads, ranged reads, retries with backoff, timeouts and a concurrency
//! limit; this file maps its operations and errors onto [`Cloud`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer};
use opendal::{EntryMode, ErrorKind, Metadata, Operator};
use tokio::io::AsyncReadExt;
use tokio_util::compat::FuturesAsyncReadCompatExt;

use super::{ByteStream, Cloud, CloudError, CloudErrorKind, CloudObject, Precondition};

/// Upload part size: objects larger than this go up as a multipart upload.
const PART_SIZE: usize = 8 << 20;
/// Parts uploaded at once for one object.
const PART_CONCURRENCY: usize = 4;
/// Largest upload to a backend that takes a body in one write (WebDAV).
const ONE_SHOT_MAX: u64 = 256 << 20;
/// Requests in flight at once against one cloud.
const MAX_REQUESTS: usize = 32;
/// Objects being uploaded under a staging name carry this prefix; listings
/// skip them.
const STAGED_PREFIX: &str = ".cloudsync-put-";
static STAGED_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A cloud reached through an OpenDAL operator.
pub struct DalCloud {
    op: Operator,
    describe: String,
    conditional_reads: bool,
    one_shot_writes: bool,
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
                    .with_jitter(),
            )
            .layer(
                TimeoutLayer::new()
                    .with_timeout(Duration::from_secs(60))
                    .with_io_timeout(Duration::from_secs(30)),
            )
            .layer(ConcurrentLimitLayer::new(MAX_REQUESTS));
        DalCloud {
            op,
            describe: describe.into(),
            conditional_reads: true,
            one_shot_writes: false,
        }
    }

    /// Reads stop sending `If-Match`: for WebDAV servers such as Apache,
    /// whose GET `ETag` is not the `getetag` their PROPFIND reports. The
    /// etag is still compared before the first byte and after the last.
    pub fn without_conditional_reads(mut self) -> Self {
        self.conditional_reads = false;
        self
    }

    /// Uploads go in one request (OpenDAL's WebDAV writer takes one body).
    pub fn with_one_shot_writes(mut self) -> Self {
        self.one_shot_writes = true;
        self
    }

    fn object(&self, key: &str, meta: &Metadata) -> CloudObject {
        let modified_ms = meta
            .last_modified()
            .map(SystemTime::from)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        // Every backend here gives an etag; one that did not would still
        // need one, and size + mtime is the weakest that exists.
        // Apache marks an ETag weak (`W/"…"`) while the file's mtime is the
        // current second and strong after, with nothing changed: the weak
        // marker is dropped so that the tag itself is compared.
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

    /// Sends `data` through `writer`: in parts, or gathered into one body
    /// (up to a bound) for one-shot backends (OpenDAL's WebDAV).
    async fn write_body(
        &self,
        key: &str,
        writer: &mut opendal::Writer,
        data: &mut ByteStream,
    ) -> Result<(), CloudError> {
        let source =
            |e: std::io::Error| CloudError::new(CloudErrorKind::Other, format!("reading the upload source: {e}"));
        if self.one_shot_writes {
            let mut body = Vec::new();
            data.take(ONE_SHOT_MAX + 1)
                .read_to_end(&mut body)
                .await
                .map_err(source)?;
            if body.len() as u64 > ONE_SHOT_MAX {
                return Err(CloudError::new(
                    CloudErrorKind::Other,
                    format!("{key}: {} takes uploads of at most {ONE_SHOT_MAX} bytes", self.describe),
                ));
            }
            return writer.write(body).await.map_err(|e| error(key, e));
        }
        let mut buf = vec![0u8; PART_SIZE];
        loop {
            let n = data.read(&mut buf).await.map_err(source)?;
            if n == 0 {
                return Ok(());
            }
            writer.write(buf[..n].to_vec()).await.map_err(|e| error(key, e))?;
        }
    }

    /// A conditional write the server cannot make conditional (WebDAV): the
    /// body goes up under a staging name beside the object, then the
    /// precondition is checked and the staged object moved into place. Only
    /// the instant between that check and the move is unguarded, not the
    /// whole upload.
    async fn put_staged(
        &self,
        key: &str,
        mut data: ByteStream,
        precondition: Precondition,
    ) -> Result<CloudObject, CloudError> {
        let (dir, _) = key.rsplit_once('/').unwrap_or(("", key));
        let seq = STAGED_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{STAGED_PREFIX}{}-{seq}", std::process::id());
        let staged = if dir.is_empty() { name } else { format!("{dir}/{name}") };
        let mut writer = self.op.writer(&staged).await.map_err(|e| error(key, e))?;
        if let Err(e) = self.write_body(key, &mut writer, &mut data).await {
            let _ = writer.abort().await;
            return Err(e);
        }
        let placed = async {
            writer.close().await.map_err(|e| error(key, e))?;
            self.check(key, &precondition).await?;
            self.op.rename(&staged, key).await.map_err(|e| error(key, e))
        }
        .await;
        if let Err(e) = placed {
            let _ = self.op.delete(&staged).await;
            return Err(e);
        }
        self.stat_file(key).await
    }

    /// Checks a precondition by reading the current etag, for backends whose
    /// writes or deletes cannot carry it. A change in the instant between
    /// this check and the write is not caught; everything else is.
    async fn check(&self, key: &str, precondition: &Precondition) -> Result<(), CloudError> {
        match precondition {
            Precondition::None => Ok(()),
            p => p.check(key, self.stat_file(key).await),
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

    async fn stat(&self, key: &str) -> Result<CloudObject, CloudError> {
        self.stat_file(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<CloudObject>, CloudError> {
        // List the folder the prefix names, then keep the keys under it.
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..=i],
            None => "",
        };
        let entries = match self.op.list_with(dir).recursive(true).await {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(error(prefix, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let key = entry.path().trim_start_matches('/');
            if entry.metadata().mode() != EntryMode::FILE || !key.starts_with(prefix) {
                continue;
            }
            if key
                .rsplit('/')
                .next()
                .is_some_and(|name| name.starts_with(STAGED_PREFIX))
            {
                continue; // an upload in progress (or one a crash left)
            }
            let meta = entry.metadata();
            if meta.etag().is_some() {
                out.push(self.object(key, meta));
            } else {
                // Some listings carry no etag: ask for it.
                out.push(self.stat_file(key).await?);
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn open(
        &self,
        key: &str,
        offset: u64,
        if_match: Option<&str>,
    ) -> Result<(CloudObject, ByteStream), CloudError> {
        let object = self.stat_file(key).await?;
        object.expect_etag(if_match)?;
        let mut reader = self.op.reader_with(key);
        if self.conditional_reads && self.op.info().capability().read_with_if_match && !object.etag.starts_with("weak:")
        {
            // The read itself is conditional too: a change between the stat
            // and the first byte is refused by the server.
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
        let caps = self.op.info().capability();
        let emulated = match &precondition {
            Precondition::IfMatch(_) => !caps.write_with_if_match,
            Precondition::IfAbsent => !caps.write_with_if_not_exists,
            Precondition::None => false,
        };
        if emulated && caps.rename {
            return self.put_staged(key, data, precondition).await;
        }
        let mut writer = self.op.writer_with(key);
        if !self.one_shot_writes {
            writer = writer.chunk(PART_SIZE).concurrent(PART_CONCURRENCY);
        }
        match &precondition {
            Precondition::IfMatch(etag) if caps.write_with_if_match => writer = writer.if_match(etag),
            Precondition::IfAbsent if caps.write_with_if_not_exists => writer = writer.if_not_exists(true),
            Precondition::None => {}
            other => self.check(key, other).await?,
        }
        let mut writer = writer.await.map_err(|e| error(key, e))?;
        // Any failure aborts the upload: no partial object is left behind.
        if let Err(e) = self.write_body(key, &mut writer, &mut data).await {
            let _ = writer.abort().await;
            return Err(e);
        }
        writer.close().await.map_err(|e| error(key, e))?;
        self.stat_file(key).await
    }

    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<(), CloudError> {
        if let Some(etag) = if_match {
            self.check(key, &Precondition::IfMatch(etag.to_string())).await?;
        }
        self.op.delete(key).await.map_err(|e| error(key, e))
    }
}
