//! File operations confined beneath a directory handle, never following a
//! symlink: what keeps both the device's app areas and the folder cloud to
//! their folders, whatever links either holds.
//!
//! A [`Root`] is an opened directory. Every path given to it is relative
//! (no empty, `.` or `..` part) and is resolved by the kernel beneath that
//! handle with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`; on kernels
//! without `openat2` each component is opened in turn with `O_NOFOLLOW`.
//! Operations on the final name use the `*at` calls on its parent's handle
//! with no-follow semantics, so a link swapped in between a check and a use
//! is never followed either: there is no window.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags, Stat};

/// Why a path could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    /// The path is empty or absolute, has an empty, `.` or `..` part, or holds a NUL.
    #[error("{0:?} is not a valid relative path")]
    Invalid(String),
    /// A symlink is on the path (`ELOOP`).
    #[error("{0}: a symlink is in the way (symlinks are never followed)")]
    Symlink(String),
    /// The path crosses into another file system (`EXDEV`).
    #[error("{0}: another file system is mounted there (mount points are never crossed)")]
    Mount(String),
    /// A file stands where a folder of the path must be (`ENOTDIR`).
    #[error("{0}: a file is where a folder must be")]
    NotADir(String),
    /// The path names something other than a regular file (a folder, a FIFO, a device).
    #[error("{0} is not a regular file")]
    NotAFile(String),
    /// Any other failure of the system call.
    #[error("{path}: {source}")]
    Io {
        /// The relative path being used.
        path: String,
        /// The system's error.
        source: io::Error,
    },
}

impl BeneathError {
    /// The error for `source` on `path`, naming a symlink, a mount point or a file in the way as such.
    pub fn io(path: &str, source: impl Into<io::Error>) -> Self {
        let source = source.into();
        match source.raw_os_error() {
            Some(libc::ELOOP) => BeneathError::Symlink(path.to_string()),
            Some(libc::EXDEV) => BeneathError::Mount(path.to_string()),
            Some(libc::ENOTDIR) => BeneathError::NotADir(path.to_string()),
            _ => BeneathError::Io {
                path: path.to_string(),
                source,
            },
        }
    }

    /// The underlying error kind, for mapping to the engine's kinds.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            BeneathError::Io { source, .. } => source.kind(),
            BeneathError::NotADir(_) => io::ErrorKind::NotADirectory,
            _ => io::ErrorKind::InvalidInput,
        }
    }

    /// The OS error number, where the system call gave one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            BeneathError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// Whether nothing is at the path.
    pub fn is_not_found(&self) -> bool {
        self.kind() == io::ErrorKind::NotFound
    }
}

/// A result whose error is a [`BeneathError`].
pub type Result<T> = std::result::Result<T, BeneathError>;

/// A folder's entries: (name bytes, type).
pub type Entries = Vec<(Vec<u8>, FileType)>;

/// `path` is relative, `/`-separated, with no empty, `.` or `..` part, no NUL.
pub fn check(path: &str) -> Result<()> {
    let ok =
        !path.is_empty() && !path.contains('\0') && path.split('/').all(|p| !p.is_empty() && p != "." && p != "..");
    if ok {
        Ok(())
    } else {
        Err(BeneathError::Invalid(path.to_string()))
    }
}

/// `(parent, name)` of a checked relative path; the parent is `""` for a
/// name at the top.
pub fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// Whether `openat2` works here (it may be missing, or blocked by seccomp).
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens `rel` beneath `dir` with `flags` (never following a symlink).
fn open_beneath(dir: BorrowedFd<'_>, rel: &str, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(dir, rel, flags, mode, resolve) {
            // EPERM from a sandbox that forbids openat2, not O_NOATIME's own.
            Err(e)
                if e == rustix::io::Errno::NOSYS
                    || (e == rustix::io::Errno::PERM && !flags.contains(OFlags::NOATIME)) =>
            {
                NO_OPENAT2.store(true, Ordering::Relaxed);
            }
            Err(e) if e == rustix::io::Errno::AGAIN => {} // a racing rename: walk instead
            other => return other.map_err(Into::into),
        }
    }
    open_walk(dir, rel, flags, mode)
}

/// [`open_beneath`] without `openat2`: one component at a time, each
/// opened without following a link (`rel` is checked: no `..`).
fn open_walk(dir: BorrowedFd<'_>, rel: &str, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    let parts: Vec<&str> = rel.split('/').collect();
    let mut cur: Option<OwnedFd> = None;
    for part in &parts[..parts.len() - 1] {
        let at = cur.as_ref().map_or(dir, |f| f.as_fd());
        cur = Some(rustix::fs::openat(at, *part, DIR_FLAGS, Mode::empty())?);
    }
    let at = cur.as_ref().map_or(dir, |f| f.as_fd());
    Ok(rustix::fs::openat(
        at,
        parts[parts.len() - 1],
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        mode,
    )?)
}

/// An opened directory that paths are confined beneath.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Opens `path` (created if missing): the configured folder itself is
    /// reached however the user configured it.
    pub fn open(path: &Path) -> io::Result<Root> {
        std::fs::create_dir_all(path)?;
        let path = path.canonicalize()?;
        let fd = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd, path })
    }

    /// Opens `path` if it exists (never creating it).
    pub fn open_existing(path: &Path) -> io::Result<Option<Root>> {
        match rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(Root {
                fd,
                path: path.to_path_buf(),
            })),
            Err(e) if e == rustix::io::Errno::NOENT => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The folder's path, as it was opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory handle paths are resolved beneath.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The child folder `name` (one component) as a root of its own,
    /// created when `create`.
    pub fn child(&self, name: &str, create: bool) -> Result<Option<Root>> {
        check(name)?;
        if name.contains('/') {
            return Err(BeneathError::Invalid(name.to_string()));
        }
        let fd = if create {
            self.make_dirs(name)?
        } else {
            match self.dir(name)? {
                Some(fd) => fd,
                None => return Ok(None),
            }
        };
        Ok(Some(Root {
            fd,
            path: self.path.join(name),
        }))
    }

    /// The real path of `rel`, for messages.
    pub fn display(&self, rel: &str) -> String {
        self.path.join(rel).display().to_string()
    }

    /// The folder `rel` (`""`: this one), or `None` when it is missing.
    pub fn dir(&self, rel: &str) -> Result<Option<OwnedFd>> {
        if rel.is_empty() {
            return rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)
                .map(Some)
                .map_err(|e| BeneathError::io(rel, e));
        }
        check(rel)?;
        match open_beneath(self.fd(), rel, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) && self.has_link(rel) => {
                Err(BeneathError::Symlink(rel.to_string()))
            }
            Err(e) => Err(BeneathError::io(rel, e)),
        }
    }

    /// Whether a component of `rel` is a symlink (to word an error rightly).
    fn has_link(&self, rel: &str) -> bool {
        let mut prefix = String::new();
        for part in rel.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            let Ok(Some(parent)) = self.dir(split(&prefix).0) else {
                return false;
            };
            match rustix::fs::statat(&parent, split(&prefix).1, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => return true,
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => continue,
                _ => return false,
            }
        }
        false
    }

    /// Makes the folder `rel` and its parents (never through a symlink)
    /// and opens it.
    pub fn make_dirs(&self, rel: &str) -> Result<OwnedFd> {
        if let Some(fd) = self.dir(rel)? {
            return Ok(fd);
        }
        let mut cur = self.dir("")?.expect("the root itself");
        let mut done = String::new();
        for part in rel.split('/') {
            if !done.is_empty() {
                done.push('/');
            }
            done.push_str(part);
            match rustix::fs::mkdirat(&cur, part, Mode::from_raw_mode(0o755)) {
                Ok(()) => {}
                Err(e) if e == rustix::io::Errno::EXIST => {}
                Err(e) => return Err(BeneathError::io(&done, e)),
            }
            cur = rustix::fs::openat(&cur, part, DIR_FLAGS, Mode::empty()).map_err(|e| BeneathError::io(&done, e))?;
        }
        Ok(cur)
    }

    /// The parent folder of `rel` (made when `create`) and its final name;
    /// `None` when the parent is missing.
    pub fn parent<'a>(&self, rel: &'a str, create: bool) -> Result<Option<(OwnedFd, &'a str)>> {
        check(rel)?;
        let (dir, name) = split(rel);
        let fd = if create {
            Some(self.make_dirs_or_root(dir)?)
        } else {
            self.dir(dir)?
        };
        Ok(fd.map(|fd| (fd, name)))
    }

    fn make_dirs_or_root(&self, dir: &str) -> Result<OwnedFd> {
        if dir.is_empty() {
            Ok(self.dir("")?.expect("the root itself"))
        } else {
            self.make_dirs(dir)
        }
    }

    /// Metadata of `rel` itself (a symlink is reported, not followed);
    /// `None` when nothing is there.
    pub fn lstat(&self, rel: &str) -> Result<Option<Stat>> {
        let Some((dir, name)) = self.parent(rel, false)? else {
            return Ok(None);
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e == rustix::io::Errno::NOENT => Ok(None),
            Err(e) => Err(BeneathError::io(rel, e)),
        }
    }

    /// Opens the regular file `rel` for reading. Never blocks on a FIFO and
    /// never follows a link: anything but a regular file is refused. The
    /// engine's reads (hashing, uploading) leave the file's access time
    /// alone where the file system lets them (O_NOATIME: the owner's files),
    /// so that they never count as a use that spares it from aging.
    pub fn open_read(&self, rel: &str) -> Result<std::fs::File> {
        check(rel)?;
        let flags = OFlags::RDONLY | OFlags::NONBLOCK;
        let fd = match open_beneath(self.fd(), rel, flags | OFlags::NOATIME, Mode::empty()) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => {
                open_beneath(self.fd(), rel, flags, Mode::empty())
            }
            other => other,
        }
        .map_err(|e| BeneathError::io(rel, e))?;
        regular(rel, fd)
    }

    /// Opens the existing regular file `rel` for reading and writing.
    pub fn open_rw(&self, rel: &str) -> Result<std::fs::File> {
        check(rel)?;
        let fd = open_beneath(self.fd(), rel, OFlags::RDWR | OFlags::NONBLOCK, Mode::empty())
            .map_err(|e| BeneathError::io(rel, e))?;
        regular(rel, fd)
    }

    /// Opens (creating it if missing) the file `rel` for writing, making its
    /// folders. `exclusive`: it must not exist yet.
    pub fn open_write(&self, rel: &str, exclusive: bool) -> Result<std::fs::File> {
        let (dir, name) = self.parent(rel, true)?.expect("made");
        let mut flags = OFlags::RDWR | OFlags::CREATE | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        if exclusive {
            flags |= OFlags::EXCL;
        }
        let fd =
            rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(0o644)).map_err(|e| BeneathError::io(rel, e))?;
        let file = regular(rel, fd)?;
        // Writes never block: the flag only kept the open from hanging.
        rustix::fs::fcntl_setfl(&file, OFlags::empty()).map_err(|e| BeneathError::io(rel, e))?;
        Ok(file)
    }

    /// Renames `from` to `to` (both beneath this root), replacing `to`,
    /// and makes both folders' entries durable.
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.rename_with(from, to, RenameFlags::empty())
    }

    /// [`rename`](Self::rename) with `renameat2` flags (`NOREPLACE`,
    /// `EXCHANGE`).
    pub fn rename_with(&self, from: &str, to: &str, flags: RenameFlags) -> Result<()> {
        let (src_dir, src_name) = self.parent(from, false)?.ok_or_else(|| not_found(from))?;
        let (dst_dir, dst_name) = self.parent(to, true)?.expect("made");
        rustix::fs::renameat_with(&src_dir, src_name, &dst_dir, dst_name, flags)
            .map_err(|e| BeneathError::io(from, e))?;
        sync_dir(&dst_dir, to)?;
        if !same_file(&src_dir, &dst_dir) {
            sync_dir(&src_dir, from)?;
        }
        Ok(())
    }

    /// [`rename_with`](Self::rename_with), atomic but not durable:
    /// [`flush`](Self::flush) makes it so (one for a whole batch).
    pub fn rename_lazily(&self, from: &str, to: &str, flags: RenameFlags) -> Result<()> {
        let (src_dir, src_name) = self.parent(from, false)?.ok_or_else(|| not_found(from))?;
        let (dst_dir, dst_name) = self.parent(to, true)?.expect("made");
        rustix::fs::renameat_with(&src_dir, src_name, &dst_dir, dst_name, flags).map_err(|e| BeneathError::io(from, e))
    }

    /// Makes everything written in this file system so far durable (`syncfs`).
    pub fn flush(&self) -> Result<()> {
        rustix::fs::syncfs(&self.fd).map_err(|e| BeneathError::io("", e))
    }

    /// Moves `from` out of the way to `to` (which must not exist): durable
    /// for `from`'s folder only — losing `to`'s entry in a crash leaves
    /// garbage at worst, never a file back under its name.
    pub fn rename_aside(&self, from: &str, to: &str) -> Result<()> {
        let (src_dir, src_name) = self.parent(from, false)?.ok_or_else(|| not_found(from))?;
        let (dst_dir, dst_name) = self.parent(to, true)?.expect("made");
        rustix::fs::renameat_with(&src_dir, src_name, &dst_dir, dst_name, RenameFlags::NOREPLACE)
            .map_err(|e| BeneathError::io(from, e))?;
        sync_dir(&src_dir, from)
    }

    /// Removes garbage (a file set aside, an empty folder) without making
    /// its removal durable: one that comes back is swept again. Whether it
    /// went (a folder that is not empty stays).
    pub fn discard(&self, rel: &str, folder: bool) -> bool {
        let Ok(Some((dir, name))) = self.parent(rel, false) else {
            return false;
        };
        let flags = if folder { AtFlags::REMOVEDIR } else { AtFlags::empty() };
        rustix::fs::unlinkat(&dir, name, flags).is_ok()
    }

    /// Removes the file (or symlink) `rel`, durably; nothing there is fine.
    pub fn remove_file(&self, rel: &str) -> Result<()> {
        let Some((dir, name)) = self.parent(rel, false)? else {
            return Ok(());
        };
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) => sync_dir(&dir, rel),
            Err(e) if e == rustix::io::Errno::NOENT => Ok(()),
            Err(e) => Err(BeneathError::io(rel, e)),
        }
    }

    /// Removes the folder `rel` if it is empty.
    pub fn remove_dir(&self, rel: &str) -> Result<()> {
        let Some((dir, name)) = self.parent(rel, false)? else {
            return Ok(());
        };
        match rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR) {
            Ok(()) => sync_dir(&dir, rel),
            Err(e) if e == rustix::io::Errno::NOENT => Ok(()),
            Err(e) => Err(BeneathError::io(rel, e)),
        }
    }

    /// Bytes an unprivileged writer may still use in this file system.
    pub fn free_space(&self) -> io::Result<u64> {
        let s = rustix::fs::fstatvfs(&self.fd)?;
        Ok(s.f_bavail.saturating_mul(s.f_frsize))
    }

    /// Whether this file system gives every write made after a stat a new
    /// ctime and mtime, however soon (Linux's multigrain timestamps): found
    /// by writing an unnamed temp file (`O_TMPFILE`, nothing is left behind)
    /// and stat'ing it between writes. Where that cannot be tried, no.
    pub fn fine_stamps(&self) -> bool {
        let Ok(fd) = rustix::fs::openat(
            &self.fd,
            ".",
            OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) else {
            return false;
        };
        let stamp =
            |fd: &OwnedFd| rustix::fs::fstat(fd).map(|s| (s.st_ctime, s.st_ctime_nsec, s.st_mtime, s.st_mtime_nsec));
        let mut last = None;
        // On a coarse clock, writes this close together share a tick
        // nearly every time: eight moves in a row do not happen by chance.
        for i in 0..8u8 {
            if rustix::io::pwrite(&fd, &[i], 0).is_err() {
                return false;
            }
            let Ok((c, cn, m, mn)) = stamp(&fd) else { return false };
            if let Some((pc, pcn, pm, pmn)) = last {
                if (c, cn) == (pc, pcn) || (m, mn) == (pm, pmn) {
                    return false;
                }
            }
            last = Some((c, cn, m, mn));
        }
        true
    }

    /// The entries of folder `dir` (`""`: this one), as (name bytes, type).
    pub fn read_dir(&self, dir: &str) -> Result<Option<Entries>> {
        let Some(fd) = self.dir(dir)? else {
            return Ok(None);
        };
        read_dir_fd(&fd, dir).map(Some)
    }
}

/// The entries of an opened folder, as (name bytes, type); `.` and `..` left out.
pub fn read_dir_fd(fd: &OwnedFd, what: &str) -> Result<Entries> {
    let mut out = Vec::new();
    let dir = rustix::fs::Dir::read_from(fd).map_err(|e| BeneathError::io(what, e))?;
    for entry in dir {
        let entry = entry.map_err(|e| BeneathError::io(what, e))?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push((name.to_vec(), entry.file_type()));
    }
    Ok(out)
}

fn not_found(rel: &str) -> BeneathError {
    BeneathError::Io {
        path: rel.to_string(),
        source: io::Error::from(io::ErrorKind::NotFound),
    }
}

/// A just-opened descriptor as a `File`, if it is a regular file.
fn regular(rel: &str, fd: OwnedFd) -> Result<std::fs::File> {
    let st = rustix::fs::fstat(&fd).map_err(|e| BeneathError::io(rel, e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(BeneathError::NotAFile(rel.to_string()));
    }
    Ok(std::fs::File::from(fd))
}

/// Makes a folder's entries durable.
pub fn sync_dir(dir: &OwnedFd, what: &str) -> Result<()> {
    rustix::fs::fsync(dir).map_err(|e| BeneathError::io(what, e))
}

fn same_file(a: &OwnedFd, b: &OwnedFd) -> bool {
    match (rustix::fs::fstat(a), rustix::fs::fstat(b)) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

/// Nanoseconds since the epoch.
pub fn epoch_ns(secs: i64, nsec: i64) -> u64 {
    (secs.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(nsec.max(0) as u64)
}

/// What tells a file's version: it changes on every write, even when a
/// tool sets the mtime back (ctime moves then).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: u64,
    /// Status change time, ns since the epoch (moves on every write).
    pub ctime_ns: u64,
    /// Inode number (a file put in another's place has its own).
    pub inode: u64,
}

impl Stamp {
    /// The stamp of a file's metadata.
    pub fn of(s: &Stat) -> Stamp {
        Stamp {
            size: s.st_size as u64,
            mtime_ns: epoch_ns(s.st_mtime, s.st_mtime_nsec as i64),
            ctime_ns: epoch_ns(s.st_ctime, s.st_ctime_nsec as i64),
            inode: s.st_ino,
        }
    }

    /// The stamp of an open file (`fstat`).
    pub fn of_file(f: &std::fs::File) -> io::Result<Stamp> {
        Ok(Stamp::of(&rustix::fs::fstat(f)?))
    }
}

/// A name as UTF-8, or `None`.
pub fn utf8(name: &[u8]) -> Option<&str> {
    std::str::from_utf8(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_reached_through_a_symlink_anywhere_in_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"secret").unwrap();
        let root = Root::open(&dir.path().join("root")).unwrap();
        std::fs::create_dir_all(root.path().join("in")).unwrap();
        std::fs::write(root.path().join("in/ok"), b"ok").unwrap();
        std::os::unix::fs::symlink(&outside, root.path().join("out")).unwrap();
        std::os::unix::fs::symlink(root.path().join("in"), root.path().join("inner")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.path().join("file-link")).unwrap();

        assert!(root.open_read("in/ok").is_ok());
        for path in ["out/secret", "inner/ok", "file-link"] {
            assert!(root.open_read(path).is_err(), "{path} was read");
        }
        assert!(matches!(
            root.open_write("out/new", false),
            Err(BeneathError::Symlink(_))
        ));
        assert!(!outside.join("new").exists());
        assert!(root.remove_file("out/secret").is_err());
        assert!(outside.join("secret").exists());
        // The link itself is a name of its own: removing it removes the link.
        let st = root.lstat("file-link").unwrap().unwrap();
        assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Symlink);
        root.remove_file("file-link").unwrap();
        assert!(outside.join("secret").exists());
        assert!(root.make_dirs("out/deeper").is_err());
        assert!(!outside.join("deeper").exists());
        for bad in ["", "/etc/passwd", "a/../b", "a//b", "./a"] {
            assert!(matches!(root.open_read(bad), Err(BeneathError::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn fine_stamps_are_claimed_only_where_a_write_after_a_stat_moves_ctime() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let fine = root.fine_stamps();
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "the probe leaves nothing"
        );
        let path = dir.path().join("f");
        let mut same = 0;
        for i in 0..200u32 {
            std::fs::write(&path, i.to_le_bytes()).unwrap();
            let a = std::fs::metadata(&path).unwrap();
            std::fs::write(&path, (i + 1).to_le_bytes()).unwrap();
            let b = std::fs::metadata(&path).unwrap();
            use std::os::unix::fs::MetadataExt;
            same += u32::from((a.ctime(), a.ctime_nsec()) == (b.ctime(), b.ctime_nsec()));
        }
        if fine {
            assert_eq!(same, 0, "a claimed fine file system kept a ctime across a write");
        } else {
            assert!(
                same > 0,
                "a file system whose every write moved ctime was not found fine"
            );
        }
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        rustix::fs::mkfifoat(root.fd(), "pipe", Mode::from_raw_mode(0o644)).unwrap();
        assert!(root.open_read("pipe").is_err());
        assert!(root.open_write("pipe", false).is_err());
    }

    #[test]
    fn the_walk_without_openat2_refuses_links_too() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/f"), b"f").unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("a/up")).unwrap();
        std::os::unix::fs::symlink("f", dir.path().join("a/f-link")).unwrap();
        let walk = |rel| open_walk(root.fd(), rel, OFlags::RDONLY, Mode::empty());
        assert!(walk("a/up/etc/passwd").is_err());
        assert!(walk("a/f-link").is_err());
        assert!(walk("a/f").is_ok());
    }
}
