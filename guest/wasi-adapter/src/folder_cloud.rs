//! The `cloud` interface over a folder: objects are plain files at
//! `<cloud>/<bundle>/<path>`; uploads are staged under
//! `<cloud>/.cloudsync/staging/` and moved into place whole and synced, so
//! a reader never sees part of one (the native folder cloud's layout).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};

use crate::area::{walk, IO_MAX};
use crate::paths::beneath;
use crate::{lstat, FileKind, FileStat, IoError};

use crate::cloud::{Cloud, CloudError, CloudErrorKind, Listed, Object, Precondition};

/// A failure of the cloud folder's file system, as the cloud says it.
fn cloud_side(e: IoError) -> CloudError {
    let kind = match e.kind {
        crate::IoErrorKind::NotFound => CloudErrorKind::NotFound,
        _ => CloudErrorKind::Other,
    };
    CloudError::new(kind, e.message)
}

/// Where uploads are staged before they are moved into place.
pub use cloudsync_contract::STAGING_DIR;

struct Upload {
    bundle: String,
    path: String,
    precondition: Precondition,
    staged: String,
    file: std::fs::File,
}

pub struct FolderCloud {
    dir: String,
    /// This device's staging folder, relative to `dir`.
    staging: String,
    uploads: BTreeMap<u64, Upload>,
    next_upload: u64,
    /// The listing being paged out: (bundle and prefix, last path, what is left).
    listing: Option<(String, String, std::vec::IntoIter<Listed>)>,
}

fn etag(s: &FileStat) -> String {
    cloudsync_contract::folder_etag(s.size, s.mtime_ns, s.ctime_ns, s.inode)
}

fn object(path: &str, s: &FileStat) -> Object {
    Object {
        path: path.to_string(),
        size: s.size,
        etag: etag(s),
        version: None,
        content_hash: None,
        modified_ms: s.mtime_ns / 1_000_000,
    }
}

impl FolderCloud {
    /// The folder cloud at `dir`, for the device `device` (its uploads are
    /// staged in a folder of its own; what a killed run left there goes).
    pub fn new(dir: &str, device: &str) -> Self {
        let staging = format!("{STAGING_DIR}/wasi-{device}");
        if let Ok(path) = beneath(dir, &format!("{staging}/x")) {
            let folder = &path[..path.len() - 2];
            if lstat(folder).ok().flatten().is_some_and(|s| s.kind == FileKind::Folder) {
                for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        FolderCloud {
            dir: dir.to_string(),
            staging,
            uploads: BTreeMap::new(),
            next_upload: 0,
            listing: None,
        }
    }

    fn file(&self, bundle: &str, path: &str) -> Result<String, CloudError> {
        if path.is_empty() {
            return Err(CloudError::new(CloudErrorKind::Other, "an object needs a path"));
        }
        crate::paths::check(path).map_err(cloud_side)?;
        // From the cloud folder itself: a link at `<bundle>` is refused too.
        beneath(&self.dir, &format!("{bundle}/{path}")).map_err(cloud_side)
    }

    fn object_at(&self, bundle: &str, path: &str) -> Result<Object, CloudError> {
        match lstat(&self.file(bundle, path)?).map_err(cloud_side)? {
            Some(s) if s.kind == FileKind::File => Ok(object(path, &s)),
            _ => Err(CloudError::new(
                CloudErrorKind::NotFound,
                format!("{path}: no such object"),
            )),
        }
    }

    fn read_at(
        &self,
        bundle: &str,
        path: &str,
        offset: u64,
        len: u32,
        if_match: Option<&str>,
    ) -> Result<Vec<u8>, CloudError> {
        let before = self.object_at(bundle, path)?;
        let stale = || {
            CloudError::new(
                CloudErrorKind::PreconditionFailed,
                format!("{path} is not the version asked for"),
            )
        };
        if if_match.is_some_and(|e| e != before.etag) {
            return Err(stale());
        }
        let io = |e| cloud_side(crate::io_error(path, e));
        let mut f = std::fs::File::open(self.file(bundle, path)?).map_err(io)?;
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut out = Vec::new();
        f.take((len as usize).min(IO_MAX) as u64)
            .read_to_end(&mut out)
            .map_err(io)?;
        if self.object_at(bundle, path)?.etag != before.etag {
            return Err(stale());
        }
        Ok(out)
    }

    fn place(&self, u: &Upload) -> Result<Object, CloudError> {
        let io = |e| cloud_side(crate::io_error(&u.path, e));
        u.file.sync_all().map_err(io)?;
        let target = self.file(&u.bundle, &u.path)?;
        let dir = target.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default();
        std::fs::create_dir_all(&dir).map_err(io)?;
        let now = lstat(&target).map_err(cloud_side)?;
        if now.is_some_and(|s| s.kind != FileKind::File) {
            return Err(CloudError::new(
                CloudErrorKind::Other,
                format!(
                    "{}: a folder or link is where the file must be; it was left alone",
                    u.path
                ),
            ));
        }
        match &u.precondition {
            Precondition::None => std::fs::rename(&u.staged, &target).map_err(io)?,
            Precondition::IfMatch(want) => {
                match now {
                    Some(s) if etag(&s) == *want => {}
                    _ => {
                        return Err(CloudError::new(
                            CloudErrorKind::PreconditionFailed,
                            format!("{} changed: it is not {want}", u.path),
                        ))
                    }
                }
                std::fs::rename(&u.staged, &target).map_err(io)?;
            }
            Precondition::IfAbsent => {
                let exists =
                    || CloudError::new(CloudErrorKind::PreconditionFailed, format!("{} already exists", u.path));
                if now.is_some() {
                    return Err(exists());
                }
                // A link fails if anything got there meanwhile.
                match std::fs::hard_link(&u.staged, &target) {
                    // Unlinked before the object is stat'ed: that moves its ctime.
                    Ok(()) => std::fs::remove_file(&u.staged).map_err(io)?,
                    Err(_) if lstat(&target).map_err(cloud_side)?.is_some() => return Err(exists()),
                    Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
                        std::fs::rename(&u.staged, &target).map_err(io)?
                    }
                    Err(e) => return Err(io(e)),
                }
            }
        }
        crate::sync_dir(&dir);
        self.object_at(&u.bundle, &u.path)
    }
}

impl Cloud for FolderCloud {
    fn ready(&mut self) -> Result<(), CloudError> {
        match lstat(&self.dir).map_err(cloud_side)? {
            Some(s) if s.kind == FileKind::Folder => Ok(()),
            _ => Err(CloudError::new(
                CloudErrorKind::Network,
                format!("the cloud folder {} is not there", self.dir),
            )),
        }
    }

    fn stat(&mut self, bundle: &str, path: &str) -> Result<Object, CloudError> {
        self.object_at(bundle, path)
    }

    /// Up to `len` bytes from `offset`, of the version `if_match` names:
    /// an object replaced during the read fails it.
    fn read(
        &mut self,
        bundle: &str,
        path: &str,
        offset: u64,
        len: u32,
        if_match: Option<&str>,
    ) -> Result<Vec<u8>, CloudError> {
        self.read_at(bundle, path, offset, len, if_match)
    }
    fn delete(&mut self, bundle: &str, path: &str, if_match: Option<&str>) -> Result<(), CloudError> {
        let file = self.file(bundle, path)?;
        match lstat(&file).map_err(cloud_side)? {
            None => return Ok(()),
            Some(s) if s.kind != FileKind::File => {
                return Err(CloudError::new(
                    CloudErrorKind::Other,
                    format!("{path} is not a file; it was left alone"),
                ))
            }
            Some(s) if if_match.is_some_and(|e| e != etag(&s)) => {
                return Err(CloudError::new(
                    CloudErrorKind::PreconditionFailed,
                    format!("{path} changed"),
                ))
            }
            Some(_) => {}
        }
        std::fs::remove_file(&file).map_err(|e| cloud_side(crate::io_error(path, e)))?;
        // Folders left empty go too, up to the bundle's.
        let top = format!("{}/{bundle}", self.dir);
        let mut dir = file.rsplit_once('/').map(|(d, _)| d.to_string());
        while let Some(d) = dir.filter(|d| d.len() > top.len()) {
            if std::fs::remove_dir(&d).is_err() {
                break;
            }
            dir = d.rsplit_once('/').map(|(p, _)| p.to_string());
        }
        crate::sync_dir(file.rsplit_once('/').map(|(d, _)| d).unwrap_or(&self.dir));
        Ok(())
    }

    /// A page of the objects under `prefix`, and the names that are none.
    fn list_page(
        &mut self,
        bundle: &str,
        prefix: &str,
        after: Option<&str>,
        max: u32,
    ) -> Result<(Vec<Listed>, Option<String>), CloudError> {
        let key = format!("{bundle}\n{prefix}");
        let mut rest = match self.listing.take() {
            Some((k, last, rest)) if k == key && Some(last.as_str()) == after => rest,
            _ => {
                let parts = prefix.strip_suffix('/').unwrap_or(prefix);
                crate::paths::check(parts).map_err(cloud_side)?;
                let top = format!("{}/{bundle}", self.dir);
                let all = match lstat(&top).map_err(cloud_side)? {
                    Some(s) if s.kind == FileKind::Folder => walk(&top).map_err(cloud_side)?,
                    Some(_) => {
                        return Err(CloudError::new(
                            CloudErrorKind::Other,
                            format!("{top} is not a folder (links are never followed)"),
                        ))
                    }
                    None => Vec::new(),
                };
                let listed: Vec<Listed> = all
                    .into_iter()
                    .filter(|e| e.path.starts_with(prefix) && after.is_none_or(|a| e.path.as_str() > a))
                    .filter(|e| e.stat.kind != FileKind::Folder || e.problem.is_some())
                    .map(|e| match (e.problem, e.stat.kind) {
                        (Some(reason), _) => Listed::Skipped { path: e.path, reason },
                        (None, FileKind::File) => Listed::Object(object(&e.path, &e.stat)),
                        (None, FileKind::Symlink) => Listed::Skipped {
                            path: e.path,
                            reason: "a symlink (links are never followed)".into(),
                        },
                        (None, _) => Listed::Skipped {
                            path: e.path,
                            reason: "not a regular file".into(),
                        },
                    })
                    .collect();
                listed.into_iter()
            }
        };
        let max = (max as usize).clamp(1, 65_536);
        let page: Vec<Listed> = rest.by_ref().take(max).collect();
        if rest.len() == 0 {
            return Ok((page, None));
        }
        let last = page.last().map(|l| l.path().to_string()).expect("a full page");
        self.listing = Some((key, last.clone(), rest));
        Ok((page, Some(last)))
    }

    fn begin_upload(&mut self, bundle: &str, path: &str, precondition: Precondition) -> Result<u64, CloudError> {
        self.file(bundle, path)?;
        // Beneath the cloud folder, through no link.
        let probe = beneath(&self.dir, &format!("{}/x", self.staging)).map_err(cloud_side)?;
        let staging = probe[..probe.len() - 2].to_string();
        std::fs::create_dir_all(&staging).map_err(|e| cloud_side(crate::io_error(&staging, e)))?;
        if lstat(&staging)
            .map_err(cloud_side)?
            .is_none_or(|s| s.kind != FileKind::Folder)
        {
            return Err(CloudError::new(
                CloudErrorKind::Other,
                format!("{staging} is not a folder (links are never followed)"),
            ));
        }
        self.next_upload += 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let staged = format!("{staging}/{now}-{}", self.next_upload);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staged)
            .map_err(|e| cloud_side(crate::io_error(&staged, e)))?;
        self.uploads.insert(
            self.next_upload,
            Upload {
                bundle: bundle.to_string(),
                path: path.to_string(),
                precondition,
                staged,
                file,
            },
        );
        Ok(self.next_upload)
    }

    fn upload_part(&mut self, id: u64, data: &[u8]) -> Result<(), CloudError> {
        let upload = self
            .uploads
            .get_mut(&id)
            .ok_or_else(|| CloudError::new(CloudErrorKind::Other, format!("no upload {id}")))?;
        if let Err(e) = upload.file.write_all(data) {
            let path = upload.path.clone();
            self.abort_upload(id);
            return Err(cloud_side(crate::io_error(&path, e)));
        }
        Ok(())
    }

    fn abort_upload(&mut self, id: u64) {
        if let Some(u) = self.uploads.remove(&id) {
            let _ = std::fs::remove_file(&u.staged);
        }
    }

    /// Puts the staged bytes in place, as the precondition allows.
    fn finish_upload(&mut self, id: u64) -> Result<Object, CloudError> {
        let u = self
            .uploads
            .remove(&id)
            .ok_or_else(|| CloudError::new(CloudErrorKind::Other, format!("no upload {id}")))?;
        let result = self.place(&u);
        let _ = std::fs::remove_file(&u.staged);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_land_whole_and_listings_page_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut cloud = FolderCloud::new(dir.path().to_str().unwrap(), "d1");
        cloud.ready().unwrap();
        let up = cloud.begin_upload("app", "a/b", Precondition::IfAbsent).unwrap();
        cloud.upload_part(up, b"hello ").unwrap();
        assert!(cloud.stat("app", "a/b").is_err(), "nothing shows before the end");
        cloud.upload_part(up, b"world").unwrap();
        let o = cloud.finish_upload(up).unwrap();
        assert_eq!((o.path.as_str(), o.size), ("a/b", 11));
        assert_eq!(cloud.read("app", "a/b", 6, 100, Some(&o.etag)).unwrap(), b"world");

        let again = cloud.begin_upload("app", "a/b", Precondition::IfAbsent).unwrap();
        assert_eq!(
            cloud.finish_upload(again).unwrap_err().kind,
            CloudErrorKind::PreconditionFailed
        );
        let stale = cloud
            .begin_upload("app", "a/b", Precondition::IfMatch("nope".into()))
            .unwrap();
        assert_eq!(
            cloud.finish_upload(stale).unwrap_err().kind,
            CloudErrorKind::PreconditionFailed
        );
        let replace = cloud
            .begin_upload("app", "a/b", Precondition::IfMatch(o.etag.clone()))
            .unwrap();
        cloud.upload_part(replace, b"new").unwrap();
        let o2 = cloud.finish_upload(replace).unwrap();
        assert_eq!(cloud.read("app", "a/b", 0, 100, None).unwrap(), b"new");
        assert_eq!(
            cloud.read("app", "a/b", 0, 100, Some(&o.etag)).unwrap_err().kind,
            CloudErrorKind::PreconditionFailed
        );
        let dropped = cloud.begin_upload("app", "c", Precondition::None).unwrap();
        cloud.abort_upload(dropped);
        let staging: Vec<_> = std::fs::read_dir(dir.path().join(".cloudsync/staging/wasi-d1"))
            .unwrap()
            .collect();
        assert!(staging.is_empty(), "nothing staged is left");

        for name in ["a-c", "z"] {
            let u = cloud.begin_upload("app", name, Precondition::None).unwrap();
            cloud.finish_upload(u).unwrap();
        }
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("app/link")).unwrap();
        let (page, next) = cloud.list_page("app", "", None, 2).unwrap();
        let names: Vec<&str> = page.iter().map(|l| l.path()).collect();
        assert_eq!(names, ["a-c", "a/b"]);
        let (page, end) = cloud.list_page("app", "", next.as_deref(), 10).unwrap();
        assert_eq!(end, None);
        assert!(matches!(&page[0], Listed::Skipped { path, .. } if path == "link"));
        assert!(matches!(&page[1], Listed::Object(o) if o.path == "z"));
        assert!(cloud.stat("app", "link").is_err(), "a link is no object");

        assert_eq!(
            cloud.delete("app", "a/b", Some("nope")).unwrap_err().kind,
            CloudErrorKind::PreconditionFailed
        );
        cloud.delete("app", "a/b", Some(&o2.etag)).unwrap();
        assert!(!dir.path().join("app/a").exists(), "the emptied folder goes too");
        assert!(cloud.stat("app", "../x").is_err());

        // A link at the bundle's folder leads nowhere.
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("linked")).unwrap();
        let up = cloud.begin_upload("linked", "x", Precondition::None);
        assert!(up.is_err() || cloud.finish_upload(up.unwrap()).is_err());
        assert!(cloud.list_page("linked", "", None, 10).is_err());
        assert_eq!(
            std::fs::read_dir(outside.path()).unwrap().count(),
            0,
            "nothing written outside"
        );
    }
}
