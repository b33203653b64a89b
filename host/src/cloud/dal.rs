//! S3-compatible object stores (AWS S3, Garage, MinIO, Ceph RGW, Huawei
//! OBS's S3 API) through Apache OpenDAL, which gives the HTTP client,
//! signing, multipart uploads, ranged reads, retries with backoff, timeouts
//! and a concurrency limit; this file maps its operations and errors onto
//! [`Cloud`].
//!
//! Writes carry their condition to the store (`If-Match`, `If-None-Match:
//! *`), which AWS S3, MinIO and Garage check atomically. Some stores check it
//! only before taking the body (s3s-fs), so every write is followed by a
//! `HEAD`: an object that is no longer the one written was replaced in that
//! instant, and the write reports `PreconditionFailed` (its bytes are not
//! in the cloud) rather than success.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer};
use opendal::{EntryMode, ErrorKind, Metadata, Operator};
use tokio::io::AsyncReadExt;
use tokio_util::compat::FuturesAsyncReadCompatExt;

use super::{ByteStream, Cloud, CloudError, CloudErrorKind, CloudObject, Listing, Precondition, ENGINE_DIR};

/// Upload part size: objects larger than this go up as a multipart upload.
const PART_SIZE: usize = 8 << 20;
/// Parts uploaded at once for one object.
const PART_CONCURRENCY: usize = 4;
/// Requests in flight at once against one cloud.
const MAX_REQUESTS: usize = 32;

/// An S3-compatible store reached through an OpenDAL operator.
pub struct DalCloud {
    op: Operator,
    describe: String,
    etags_are_md5: bool,
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
            etags_are_md5: true,
        }
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

    async fn stat(&self, key: &str) -> Result<CloudObject, CloudError> {
        self.stat_file(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Listing, CloudError> {
        // List the folder the prefix names, then keep the keys under it.
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..=i],
            None => "",
        };
        let entries = match self.op.list_with(dir).recursive(true).await {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Listing::default()),
            Err(e) => return Err(error(prefix, e)),
        };
        let mut out = Listing::default();
        for entry in entries {
            let key = entry.path().trim_start_matches('/');
            if entry.metadata().mode() != EntryMode::FILE || !key.starts_with(prefix) {
                continue;
            }
            if dir.is_empty() && key.split('/').next() == Some(ENGINE_DIR) {
                continue; // the engine's own objects
            }
            let meta = entry.metadata();
            if meta.etag().is_some() {
                out.objects.push(self.object(key, meta));
            } else {
                // Some listings carry no etag: ask for it.
                out.objects.push(self.stat_file(key).await?);
            }
        }
        out.objects.sort_by(|a, b| a.key.cmp(&b.key));
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
        let mut writer = self.op.writer_with(key).chunk(PART_SIZE).concurrent(PART_CONCURRENCY);
        match &precondition {
            Precondition::IfMatch(etag) => writer = writer.if_match(etag),
            Precondition::IfAbsent => writer = writer.if_not_exists(true),
            Precondition::None => {}
        }
        let mut writer = writer.await.map_err(|e| error(key, e))?;
        // Any failure aborts the upload: no partial object is left behind.
        if let Err(e) = self.write_body(key, &mut writer, &mut data).await {
            let _ = writer.abort().await;
            return Err(e);
        }
        let written = writer.close().await.map_err(|e| error(key, e))?;
        // The object must still be the one written (see the module doc).
        let now = self.stat_file(key).await?;
        if let Some(etag) = written.etag() {
            let ours = etag.strip_prefix("W/").unwrap_or(etag);
            if now.etag != ours {
                return Err(CloudError::new(
                    CloudErrorKind::PreconditionFailed,
                    format!("{key} was replaced right after it was written"),
                ));
            }
        }
        Ok(now)
    }

    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<(), CloudError> {
        match if_match {
            Some(etag) => {
                // Checked here too, for stores that do not check it themselves.
                Precondition::IfMatch(etag.to_string()).check(key, self.stat_file(key).await)?;
                let caps = self.op.info().capability();
                let mut d = self.op.delete_with(key);
                if caps.delete_with_if_match {
                    d = d.if_match(etag);
                }
                d.await.map_err(|e| error(key, e))
            }
            None => self.op.delete(key).await.map_err(|e| error(key, e)),
        }
    }
}
