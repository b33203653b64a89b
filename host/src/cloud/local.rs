//! The embedded default cloud: a local folder holding plain files at their
//! relative paths, so any other program sees the user's files as they are.
//!
//! - Every path is resolved beneath the folder and no symlink is ever
//!   followed ([`crate::beneath`]): a link inside the cloud folder is listed
//!   as a skipped name, never read through, written through or deleted through.
//! - Etags come from (size, mtime, ctime, inode): any write changes them,
//!   even one that puts the mtime back.
//! - Uploads are staged under `.cloudsync/staging/<device>/` (where no
//!   user's name can be) and moved into place under an exclusive lock on the
//!   target's folder, which every cloudsync writer takes: the condition check
//!   and the move are one step for them. Against other programs the move
//!   itself is atomic (`renameat2`: `NOREPLACE` for "must not exist",
//!   `EXCHANGE` for "must still be this version", after which the version
//!   displaced is checked and put back if it was not the one expected), so
//!   nobody's version is lost.

use std::io::{Seek, SeekFrom};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use rustix::fs::{AtFlags, FileType, FlockOperation, RenameFlags, Stat};

use super::{
    check_key, ByteStream, Cloud, CloudError, CloudErrorKind, CloudObject, FileSource, ListCursor, Listed,
    Precondition, StagingNames, STAGING_DIR,
};
use crate::beneath::{self, BeneathError, Root, Stamp};
use crate::storage::walk::{Found, SortedWalk};

/// A folder playing the cloud.
#[derive(Debug)]
pub struct LocalFolderCloud {
    root: Root,
    names: StagingNames,
    barrier: GroupSync,
    /// New files are made unnamed and linked in ([`Self::put_new`]).
    unnamed_ok: std::sync::atomic::AtomicBool,
}

/// What a put writes: a stream, or a local file the kernel copies.
enum Content<'a> {
    Stream(&'a mut ByteStream),
    File(&'a dyn FileSource),
}

impl Content<'_> {
    /// Writes it all into `file` (new and empty).
    async fn fill(&mut self, file: &std::fs::File) -> std::io::Result<()> {
        match self {
            Content::Stream(data) => write_all(file, data).await,
            Content::File(source) => source.copy_into(file),
        }
    }
}

/// Streams `data` into `file`, each write done in place (as the folder's
/// reads are, [`super::FileStream`]).
async fn write_all(file: &std::fs::File, data: &mut ByteStream) -> std::io::Result<()> {
    use std::io::Write;
    use tokio::io::AsyncBufReadExt;
    let mut out = file;
    // 256 KiB: large enough for few writes, small enough that zeroing it
    // for each small file costs little.
    let mut data = tokio::io::BufReader::with_capacity(256 << 10, data);
    loop {
        let chunk = data.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(());
        }
        out.write_all(chunk)?;
        let n = chunk.len();
        data.consume(n);
    }
}

/// Group commit: the writes waiting at once share one `syncfs` rather than
/// an fsync of each file and folder.
#[derive(Debug)]
struct GroupSync {
    /// Tickets taken: a write done before its ticket is covered by any
    /// `syncfs` that starts after it.
    asked: AtomicU64,
    /// The highest ticket a finished `syncfs` covers, or why it failed (a
    /// lost write-back is never reported as durable to anyone after).
    done: tokio::sync::Mutex<Result<u64, String>>,
}

impl Default for GroupSync {
    fn default() -> Self {
        GroupSync {
            asked: AtomicU64::new(0),
            done: tokio::sync::Mutex::new(Ok(0)),
        }
    }
}

impl GroupSync {
    async fn wait(&self, root: &Root) -> Result<(), BeneathError> {
        let ticket = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let mut done = self.done.lock().await;
        match &*done {
            Err(why) => return Err(BeneathError::io("", std::io::Error::other(why.clone()))),
            Ok(upto) if *upto >= ticket => return Ok(()),
            Ok(_) => {}
        }
        let upto = self.asked.load(Ordering::SeqCst);
        match root.flush() {
            Ok(()) => {
                *done = Ok(upto);
                Ok(())
            }
            Err(e) => {
                *done = Err(format!("the cloud folder's file system lost writes: {e}"));
                Err(e)
            }
        }
    }
}

impl LocalFolderCloud {
    /// Uses the folder `root` as the cloud. A missing one is an error, never
    /// made: a drive that is not mounted must not read as an empty cloud
    /// (or fill the mount point).
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        Root::open_existing(&root)?.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "the cloud folder {} does not exist (a drive not mounted?); create it to use it",
                    root.display()
                ),
            )
        })?;
        Ok(LocalFolderCloud {
            barrier: GroupSync::default(),
            unnamed_ok: std::sync::atomic::AtomicBool::new(std::path::Path::new("/proc/self/fd").is_dir()),
            root: Root::open(&root)?,
            names: StagingNames::default(),
        })
    }

    /// Uses `root` as the cloud, made first if missing (the embedded default).
    pub fn create(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Self::new(root)
    }

    /// The cloud folder's path.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    fn object(key: &str, st: &Stat) -> CloudObject {
        let s = Stamp::of(st);
        CloudObject {
            key: key.to_string(),
            size: s.size,
            etag: etag(&s),
            version: None,
            content_hash: None,
            modified_ms: s.mtime_ns / 1_000_000,
        }
    }

    fn stat_sync(&self, key: &str) -> Result<CloudObject, CloudError> {
        check_key(key)?;
        match self.root.lstat(key).map_err(|e| path_error(key, e))? {
            Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => Ok(Self::object(key, &st)),
            _ => Err(CloudError::not_found(key)),
        }
    }

    /// The object as this write made it (a rename or link moved its
    /// ctime), and still there: a writer outside cloudsync replacing it in
    /// the same instant means our bytes are not in the cloud after all.
    fn as_written(&self, key: &str, file: &std::fs::File) -> Result<CloudObject, CloudError> {
        let st = rustix::fs::fstat(file).map_err(|e| io_error(key, e.into()))?;
        let object = Self::object(key, &st);
        match self.stat_sync(key) {
            Ok(now) if now.etag == object.etag => Ok(object),
            _ => Err(CloudError::new(
                CloudErrorKind::PreconditionFailed,
                format!("{key} was replaced right after it was written"),
            )),
        }
    }

    /// A new object written as an unnamed file in its own folder
    /// (`O_TMPFILE`) and linked in under its name when durable: no staging
    /// name, nothing to sweep after a crash, no rename across folders, and
    /// the link fails if the name was taken meanwhile. `None`: this file
    /// system makes no unnamed files (the caller stages instead).
    async fn put_new(&self, key: &str, data: &mut Content<'_>) -> Option<Result<CloudObject, CloudError>> {
        let (parent, name) = match self.root.parent(key, true) {
            Ok(Some(found)) => found,
            Ok(None) => return Some(Err(CloudError::not_found(key))),
            Err(e) => return Some(Err(path_error(key, e))),
        };
        let flags = rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&parent, ".", flags, rustix::fs::Mode::from_raw_mode(0o644)) {
            Ok(fd) => fd,
            // This file system makes no unnamed files: stage from now on.
            Err(e)
                if [
                    rustix::io::Errno::OPNOTSUPP,
                    rustix::io::Errno::ISDIR,
                    rustix::io::Errno::INVAL,
                ]
                .contains(&e) =>
            {
                self.unnamed_ok.store(false, Ordering::Relaxed);
                return None;
            }
            // Anything else (no room, no permission) is this folder's: the
            // staged write meets it too and says so.
            Err(_) => return None,
        };
        let file = std::fs::File::from(fd);
        let put = async {
            data.fill(&file).await.map_err(|e| io_error(key, e))?;
            self.barrier.wait(&self.root).await.map_err(|e| path_error(key, e))?;
            let proc_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
            match rustix::fs::linkat(
                rustix::fs::CWD,
                proc_path.as_str(),
                &parent,
                name,
                AtFlags::SYMLINK_FOLLOW,
            ) {
                Ok(()) => {}
                Err(e) if e == rustix::io::Errno::EXIST => {
                    return Err(match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile => CloudError::new(
                            CloudErrorKind::Other,
                            format!("{key}: a folder or link is where the file must be; it was left alone"),
                        ),
                        _ => already_exists(key),
                    })
                }
                Err(e) => {
                    // No /proc to link through: later writes stage instead.
                    self.unnamed_ok.store(false, Ordering::Relaxed);
                    return Err(io_error(key, e.into()));
                }
            }
            self.barrier.wait(&self.root).await.map_err(|e| path_error(key, e))?;
            self.as_written(key, &file)
        };
        Some(put.await)
    }

    /// A put of either kind of content.
    async fn put_content(
        &self,
        key: &str,
        mut data: Content<'_>,
        precondition: Precondition,
    ) -> Result<CloudObject, CloudError> {
        check_key(key)?;
        if precondition == Precondition::IfAbsent && self.unnamed_ok.load(Ordering::Relaxed) {
            if let Some(put) = self.put_new(key, &mut data).await {
                return put;
            }
        }
        let staged = self.names.next();
        let file = self.root.open_write(&staged, true).map_err(|e| path_error(key, e))?;
        // Stream into the staging area, make it durable, then move it into
        // place and make that durable: other clients see the old file or
        // the whole new one, and a crash leaves one or the other. The
        // puts running at once share each of those two barriers.
        let written = data.fill(&file).await;
        let durable = match written {
            Ok(()) => self.barrier.wait(&self.root).await.map_err(|e| path_error(key, e)),
            Err(e) => Err(io_error(key, e)),
        };
        if let Err(e) = durable {
            self.root.discard(&staged, false);
            return Err(e);
        }
        let placed = self.place(&staged, &file, key, &precondition);
        if let Err(e) = placed {
            self.root.discard(&staged, false);
            return Err(e);
        }
        self.barrier.wait(&self.root).await.map_err(|e| path_error(key, e))?;
        self.as_written(key, &file)
    }
    /// The object's file, opened for reading, if it is the version `if_match` names.
    fn open_object(&self, key: &str, if_match: Option<&str>) -> Result<(CloudObject, std::fs::File), CloudError> {
        check_key(key)?;
        let file = self.root.open_read(key).map_err(|e| match e {
            BeneathError::NotAFile(_) => CloudError::not_found(key),
            e => path_error(key, e),
        })?;
        let st = rustix::fs::fstat(&file).map_err(|e| io_error(key, e.into()))?;
        let object = Self::object(key, &st);
        object.expect_etag(if_match)?;
        Ok((object, file))
    }

    /// Moves the staged file into place as `precondition` allows, under the
    /// target folder's lock. `ours` is the staged file (still open).
    fn place(
        &self,
        staged: &str,
        ours: &std::fs::File,
        key: &str,
        precondition: &Precondition,
    ) -> Result<(), CloudError> {
        let (parent, name) = self
            .root
            .parent(key, true)
            .map_err(|e| path_error(key, e))?
            .expect("made");
        let _lock = DirLock::take(&parent).map_err(|e| io_error(key, e))?;
        let current = match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(st),
            Err(e) if e == rustix::io::Errno::NOENT => None,
            Err(e) => return Err(io_error(key, e.into())),
        };
        let regular = |st: &Stat| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile;
        if current.as_ref().is_some_and(|st| !regular(st)) {
            // A symlink or folder at the name is never replaced, and that is
            // no race to retry but a failure to show.
            return Err(CloudError::new(
                CloudErrorKind::Other,
                format!("{key}: a folder or link is where the file must be; it was left alone"),
            ));
        }
        match precondition {
            Precondition::IfAbsent => {
                if current.is_some() {
                    return Err(already_exists(key));
                }
                self.root
                    .rename_lazily(staged, key, RenameFlags::NOREPLACE)
                    .map_err(|e| match e.raw_os_error() {
                        Some(libc::EEXIST) => already_exists(key),
                        _ => path_error(key, e),
                    })
            }
            Precondition::IfMatch(want) => {
                let Some(checked) = current else {
                    return Err(CloudError::new(
                        CloudErrorKind::PreconditionFailed,
                        format!("{key} is gone"),
                    ));
                };
                let have = etag(&Stamp::of(&checked));
                if &have != want {
                    return Err(changed(key, &have, want));
                }
                self.root
                    .rename_lazily(staged, key, RenameFlags::EXCHANGE)
                    .map_err(|e| path_error(key, e))?;
                // What was displaced must be the version checked (no writer
                // outside cloudsync slipped in); its ctime moved with the
                // exchange, so identity is inode, size and mtime.
                let displaced = self.root.lstat(staged).map_err(|e| path_error(key, e))?;
                let same = |st: &Stat| {
                    st.st_ino == checked.st_ino
                        && st.st_dev == checked.st_dev
                        && st.st_size == checked.st_size
                        && (st.st_mtime, st.st_mtime_nsec) == (checked.st_mtime, checked.st_mtime_nsec)
                };
                if displaced.as_ref().is_some_and(same) {
                    // The old version, garbage now (swept if it comes back).
                    self.root.discard(staged, false);
                    return Ok(());
                }
                // Someone else's version: it goes back under the name, ours
                // is dropped, and the caller learns the precondition failed.
                self.root
                    .rename_with(staged, key, RenameFlags::EXCHANGE)
                    .map_err(|e| path_error(key, e))?;
                let back_is_ours = self
                    .root
                    .lstat(staged)
                    .ok()
                    .flatten()
                    .zip(rustix::fs::fstat(ours).ok())
                    .is_some_and(|(a, b)| a.st_ino == b.st_ino && a.st_dev == b.st_dev);
                if !back_is_ours {
                    // Yet another writer: keep whatever we hold beside the name.
                    let keep = format!("{key} (conflict cloudsync {})", std::process::id());
                    let _ = self.root.rename_with(staged, &keep, RenameFlags::NOREPLACE);
                }
                Err(CloudError::new(
                    CloudErrorKind::PreconditionFailed,
                    format!("{key} changed while it was being replaced"),
                ))
            }
            Precondition::None => self
                .root
                .rename_lazily(staged, key, RenameFlags::empty())
                .map_err(|e| path_error(key, e)),
        }
    }

    /// Removes empty folders left above `key` (never the bundle's own).
    fn prune(&self, key: &str) {
        let mut dir = key;
        while let Some((parent, _)) = dir.rsplit_once('/') {
            if !parent.contains('/') || !self.root.discard(parent, true) {
                break;
            }
            dir = parent;
        }
    }
}

/// The folder cloud's listing: a sorted walk of the folder the prefix
/// names, holding only the listings of the folders it is in.
struct FolderListing {
    walk: Option<SortedWalk>,
    /// The walked folder's key with its `/` (`""` for the top).
    dir: String,
    /// What is said before the walk (the folder is a symlink).
    first: Vec<Listed>,
    error: Option<CloudError>,
}

impl FolderListing {
    fn listed(&self, found: Found) -> Option<Listed> {
        let key = format!("{}{}", self.dir, found.path);
        let skipped = |why: &str| {
            Some(Listed::Skipped {
                key: key.clone(),
                why: why.to_string(),
            })
        };
        if let Some(problem) = &found.problem {
            return skipped(problem);
        }
        match FileType::from_raw_mode(found.stat.st_mode) {
            FileType::RegularFile => Some(Listed::Object(LocalFolderCloud::object(&key, &found.stat))),
            // An empty folder holds no object.
            FileType::Directory => None,
            FileType::Symlink => skipped("a symlink in the cloud folder (never followed)"),
            _ => skipped("a FIFO, socket or device file in the cloud folder"),
        }
    }
}

#[async_trait]
impl ListCursor for FolderListing {
    async fn next_page(&mut self, max: usize) -> Result<Vec<Listed>, CloudError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut page = std::mem::take(&mut self.first);
        while page.len() < max {
            let Some(walk) = self.walk.as_mut() else { break };
            match walk.next_entry() {
                Ok(Some(found)) => page.extend(self.listed(found)),
                Ok(None) => {
                    self.walk = None;
                    break;
                }
                // A name that cannot be looked at is said, and the walk goes on.
                Err(BeneathError::Io { path, source }) => page.push(Listed::Skipped {
                    key: format!("{}{path}", self.dir),
                    why: format!("cannot be read: {source}"),
                }),
                Err(e) => return Err(path_error(&self.dir, e)),
            }
        }
        Ok(page)
    }
}

/// An exclusive lock on a folder, held by every cloudsync writer while it
/// checks a condition and moves a file into it.
struct DirLock<'a>(&'a OwnedFd);

impl<'a> DirLock<'a> {
    fn take(dir: &'a OwnedFd) -> std::io::Result<Self> {
        rustix::fs::flock(dir, FlockOperation::LockExclusive)?;
        Ok(DirLock(dir))
    }
}

impl Drop for DirLock<'_> {
    fn drop(&mut self) {
        let _ = rustix::fs::flock(self.0.as_fd(), FlockOperation::Unlock);
    }
}

fn etag(s: &Stamp) -> String {
    cloudsync_contract::folder_etag(s.size, s.mtime_ns, s.ctime_ns, s.inode)
}

fn already_exists(key: &str) -> CloudError {
    CloudError::new(CloudErrorKind::PreconditionFailed, format!("{key} already exists"))
}

fn changed(key: &str, have: &str, want: &str) -> CloudError {
    CloudError::new(
        CloudErrorKind::PreconditionFailed,
        format!("{key} changed: etag {have} is not {want}"),
    )
}

fn io_error(key: &str, e: std::io::Error) -> CloudError {
    match e.kind() {
        std::io::ErrorKind::NotFound => CloudError::not_found(key),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            CloudError::new(CloudErrorKind::StorageFull, format!("{key}: {e}"))
        }
        _ => CloudError::new(CloudErrorKind::Other, format!("{key}: {e}")),
    }
}

fn path_error(key: &str, e: BeneathError) -> CloudError {
    match e {
        BeneathError::Io { source, .. } => io_error(key, source),
        BeneathError::Symlink(_) | BeneathError::Mount(_) => CloudError::new(CloudErrorKind::Other, format!("{e}")),
        BeneathError::NotADir(_) => CloudError::new(CloudErrorKind::Other, format!("{e}")),
        BeneathError::Invalid(_) | BeneathError::NotAFile(_) => CloudError::new(CloudErrorKind::Other, format!("{e}")),
    }
}

#[async_trait]
impl Cloud for LocalFolderCloud {
    fn describe(&self) -> String {
        format!("dir://{}", self.root.path().display())
    }

    /// The folder held open is still the one at its path: one moved away,
    /// replaced or removed (a drive unmounted and mounted again) since it
    /// was opened is refused, never written to where it went.
    async fn check_root(&self) -> Result<(), CloudError> {
        let path = self.root.path();
        let held = rustix::fs::fstat(self.root.fd()).map_err(|e| io_error(".", e.into()))?;
        let same = std::fs::metadata(path).is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.dev() == held.st_dev && m.ino() == held.st_ino
        });
        if same {
            Ok(())
        } else {
            Err(CloudError::new(
                CloudErrorKind::Unauthorized,
                format!(
                    "the cloud folder {} was moved, replaced or removed since it was opened: open it again",
                    path.display()
                ),
            ))
        }
    }

    fn set_device(&self, id: &str) {
        self.names.set_device(id)
    }

    async fn stat(&self, key: &str) -> Result<CloudObject, CloudError> {
        self.stat_sync(key)
    }

    fn list_from(self: Arc<Self>, prefix: &str, after: Option<&str>) -> Box<dyn ListCursor> {
        // Walk the deepest folder the prefix names, in key order; what is
        // beside the prefix is left to the caller.
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..=i],
            None => "",
        };
        let mut listing = FolderListing {
            walk: None,
            dir: dir.to_string(),
            first: Vec::new(),
            error: None,
        };
        let folder = dir.trim_end_matches('/');
        match self.root.dir(folder) {
            Ok(Some(fd)) => match SortedWalk::new(fd) {
                Ok(mut walk) => {
                    if let Some(rest) = after.and_then(|a| a.strip_prefix(dir)) {
                        walk.seek(rest);
                    }
                    listing.walk = Some(walk);
                }
                Err(e) => listing.error = Some(path_error(prefix, e)),
            },
            Ok(None) => {}
            Err(BeneathError::Symlink(_)) => listing.first.push(Listed::Skipped {
                key: folder.to_string(),
                why: "a symlink in the cloud folder (never followed)".into(),
            }),
            Err(BeneathError::Mount(_)) => listing.first.push(Listed::Skipped {
                key: folder.to_string(),
                why: "another file system mounted in the cloud folder (never crossed)".into(),
            }),
            Err(e) => listing.error = Some(path_error(prefix, e)),
        }
        Box::new(listing)
    }

    async fn open(
        &self,
        key: &str,
        offset: u64,
        if_match: Option<&str>,
    ) -> Result<(CloudObject, ByteStream), CloudError> {
        let (object, mut file) = self.open_object(key, if_match)?;
        file.seek(SeekFrom::Start(offset)).map_err(|e| io_error(key, e))?;
        Ok((object, Box::pin(super::FileStream(file))))
    }

    async fn put(
        &self,
        key: &str,
        mut data: ByteStream,
        precondition: Precondition,
    ) -> Result<CloudObject, CloudError> {
        self.put_content(key, Content::Stream(&mut data), precondition).await
    }

    async fn put_file(
        &self,
        key: &str,
        source: &dyn FileSource,
        precondition: Precondition,
    ) -> Option<Result<CloudObject, CloudError>> {
        Some(self.put_content(key, Content::File(source), precondition).await)
    }

    fn open_file(
        &self,
        key: &str,
        _offset: u64,
        if_match: Option<&str>,
    ) -> Option<Result<(CloudObject, std::fs::File), CloudError>> {
        Some(self.open_object(key, if_match))
    }

    async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<(), CloudError> {
        check_key(key)?;
        let (parent, name) = self
            .root
            .parent(key, false)
            .map_err(|e| path_error(key, e))?
            .ok_or_else(|| CloudError::not_found(key))?;
        let lock = DirLock::take(&parent).map_err(|e| io_error(key, e))?;
        let checked = match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => st,
            Ok(_) => return Err(CloudError::not_found(key)),
            Err(e) if e == rustix::io::Errno::NOENT => return Err(CloudError::not_found(key)),
            Err(e) => return Err(io_error(key, e.into())),
        };
        if let Some(want) = if_match {
            let have = etag(&Stamp::of(&checked));
            if have != want {
                return Err(changed(key, &have, want));
            }
        }
        // Set aside first, and removed only if it is the version checked.
        let aside = self.names.next();
        self.root.rename_aside(key, &aside).map_err(|e| path_error(key, e))?;
        let moved = self.root.lstat(&aside).map_err(|e| path_error(key, e))?;
        let same = moved.is_some_and(|st| {
            st.st_ino == checked.st_ino
                && st.st_size == checked.st_size
                && (st.st_mtime, st.st_mtime_nsec) == (checked.st_mtime, checked.st_mtime_nsec)
        });
        if !same {
            let back = self.root.rename_with(&aside, key, RenameFlags::NOREPLACE);
            if back.is_err() {
                let keep = format!("{key} (conflict cloudsync {})", std::process::id());
                let _ = self.root.rename_with(&aside, &keep, RenameFlags::NOREPLACE);
            }
            return Err(CloudError::new(
                CloudErrorKind::PreconditionFailed,
                format!("{key} changed while it was being deleted"),
            ));
        }
        self.root.discard(&aside, false);
        drop(lock);
        self.prune(key);
        Ok(())
    }

    async fn sweep_staging(&self, device: &str, older_than: std::time::Duration) -> Result<usize, CloudError> {
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        let devices = self
            .root
            .read_dir(STAGING_DIR)
            .map_err(|e| path_error(STAGING_DIR, e))?
            .unwrap_or_default();
        for (dev, _) in devices {
            let Some(dev) = beneath::utf8(&dev) else { continue };
            let dir = format!("{STAGING_DIR}/{dev}");
            let Ok(Some(files)) = self.root.read_dir(&dir) else {
                continue;
            };
            for (name, _) in files {
                let Some(name) = beneath::utf8(&name) else { continue };
                let rel = format!("{dir}/{name}");
                let old = dev == device
                    || self.root.lstat(&rel).ok().flatten().is_some_and(|st| {
                        let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(Stamp::of(&st).mtime_ns);
                        now.duration_since(mtime).unwrap_or_default() > older_than
                    });
                if old && self.root.remove_file(&rel).is_ok() {
                    removed += 1;
                }
            }
            let _ = self.root.remove_dir(&dir);
        }
        Ok(removed)
    }
}
