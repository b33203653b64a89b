//! The embedded default cloud: a local folder holding plain files at their
//! relative paths, so any other program sees the user's files as they are.

use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use tokio::io::AsyncSeekExt;

use super::{check_key, ByteStream, Cloud, CloudError, CloudErrorKind, CloudObject, Precondition};

/// Temp files of in-progress writes start with this; listings skip them.
const TEMP_PREFIX: &str = ".cloudsync-put-";

/// A folder playing the cloud. Etags come from metadata (size, mtime in
/// nanoseconds, inode): any write through a rename or in place changes them.
#[derive(Debug)]
pub struct LocalFolderCloud {
    root: PathBuf,
    seq: AtomicU64,
}

impl LocalFolderCloud {
    /// Uses `root` (created if missing) as the cloud.
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(LocalFolderCloud {
            root: root.canonicalize()?,
            seq: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, CloudError> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    fn object(key: &str, meta: &std::fs::Metadata) -> CloudObject {
        let mtime_ns = (meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128).max(0) as u128;
        CloudObject {
            key: key.to_string(),
            size: meta.len(),
            etag: format!("{:x}-{:x}-{:x}", meta.len(), mtime_ns, meta.ino()),
            version: None,
            content_hash: None,
            modified_ms: (mtime_ns / 1_000_000) as u64,
        }
    }

    fn stat_sync(&self, key: &str) -> Result<CloudObject, CloudError> {
        let path = self.path(key)?;
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Self::object(key, &m)),
            Ok(_) => Err(CloudError::not_found(key)),
            Err(e) => Err(io_error(key, e)),
        }
    }
}

fn io_error(key: &str, e: std::io::Error) -> CloudError {
    match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => CloudError::not_found(key),
        std::io::ErrorKind::StorageFull => CloudError::new(CloudErrorKind::StorageFull, format!("{key}: {e}")),
        _ => CloudError::new(CloudErrorKind::Other, format!("{key}: {e}")),
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<CloudObject>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let meta = std::fs::metadata(entry.path())?;
        if meta.is_dir() {
            walk(root, &entry.path(), out)?;
        } else if meta.is_file() {
            let rel = entry
                .path()
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            out.push(LocalFolderCloud::object(&rel, &meta));
        }
    }
    Ok(())
}

#[async_trait]
impl Cloud for LocalFolderCloud {
    fn describe(&self) -> String {
        format!("dir://{}", self.root.display())
    }

    async fn stat(&self, key: &str) -> Result<CloudObject, CloudError> {
        self.stat_sync(key)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<CloudObject>, CloudError> {
        // List the deepest folder the prefix names, then filter by the prefix.
        let dir = match prefix.rfind('/') {
            Some(i) => {
                check_key(&prefix[..i])?;
                self.root.join(&prefix[..i])
            }
            None => self.root.clone(),
        };
        let mut out = Vec::new();
        walk(&self.root, &dir, &mut out).map_err(|e| io_error(prefix, e))?;
        out.retain(|o| o.key.starts_with(prefix));
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn open(
        &self,
        key: &str,
        offset: u64,
        if_match: Option<&str>,
    ) -> Result<(CloudObject, ByteStream), CloudError> {
        let path = self.path(key)?;
        let file = std::fs::File::open(&path).map_err(|e| io_error(key, e))?;
        let meta = file.metadata().map_err(|e| io_error(key, e))?;
        if !meta.is_file() {
            return Err(CloudError::not_found(key));
        }
        let object = Self::object(key, &meta);
        object.expect_etag(if_match)?;
        let mut file = tokio::fs::File::from_std(file);
        file.seek(SeekFrom::Start(offset)).await.map_err(|e| io_error(key, e))?;
        Ok((object, Box::pin(file)))
    }

    async fn put(
        &self,
        key: &str,
        mut data: ByteStream,
        precondition: Precondition,
    ) -> Result<CloudObject, CloudError> {
        let path = self.path(key)?;
        let dir = path.parent().expect("a key has a parent").to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io_error(key, e))?;
        let temp = dir.join(format!(
            "{TEMP_PREFIX}{}-{}",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        // Stream into a temp file beside the object, then rename: other
        // clients see the old file or the whole new one, never a part.
        let written = async {
            let mut file = tokio::fs::File::create(&temp).await?;
            // Large reads: each one is a hop to tokio's blocking pool.
            let mut data = tokio::io::BufReader::with_capacity(1 << 20, &mut data);
            tokio::io::copy_buf(&mut data, &mut file).await?;
            file.sync_all().await
        }
        .await;
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(io_error(key, e));
        }
        // Checked as late as possible: just before the rename.
        let check = match precondition {
            Precondition::None => Ok(()),
            p => p.check(key, self.stat_sync(key)),
        };
        if let Err(e) = check {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        let placed = std::fs::rename(&temp, &path).and_then(|_| std::fs::File::open(&dir)?.sync_all());
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&temp);
            return Err(io_error(key, e));
        }
        self.stat_sync(key)
    }

    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<(), CloudError> {
        let path = self.path(key)?;
        if if_match.is_some() {
            self.stat_sync(key)?.expect_etag(if_match)?;
        }
        std::fs::remove_file(&path).map_err(|e| io_error(key, e))
    }
}
