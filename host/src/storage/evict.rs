//! Removing a local copy the cloud holds, only when it is safe: the file is
//! still the one the engine checked, and no process has it open.
//!
//! "Not open" is asked of the kernel with a write lease (`F_SETLEASE`),
//! which Linux grants only when no other descriptor of the file is open;
//! where leases are unavailable, `/proc/*/fd` is searched instead (and a
//! process whose descriptors cannot be read counts as having it open). The
//! file is then renamed to a private name beside it and removed only if
//! the renamed file is the very inode that was checked — a save that
//! replaced it by rename in the meantime is put back, never removed.
//!
//! Left open: a process that opens the file in the instant between the
//! check and the removal writes to the removed inode.

use super::file_stamp as stamp;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum EvictError {
    #[error("the file is open in another process")]
    InUse,
    #[error("the file changed")]
    Changed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

static SEQ: AtomicU64 = AtomicU64::new(0);
static IGNORE_SIGIO: std::sync::Once = std::sync::Once::new();

/// Removes `path` if it is still `expect` — (size, mtime ns, inode) — and
/// nobody has it open. Once the file is removed this succeeds, whatever
/// happens after (a failed directory flush is only a weaker guarantee).
pub fn evict(path: &Path, expect: (u64, u64, u64)) -> Result<(), EvictError> {
    // Only a regular file; never block on a FIFO or a device.
    let m = std::fs::symlink_metadata(path)?;
    if !m.is_file() || stamp(&m) != expect {
        return Err(EvictError::Changed);
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .or_else(|_| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
                .open(path)
        })?;
    let m = file.metadata()?;
    if !m.is_file() || stamp(&m) != expect {
        return Err(EvictError::Changed);
    }
    // A lease break is signalled with SIGIO, whose default action ends the
    // process: the host ignores it (it never uses SIGIO otherwise).
    IGNORE_SIGIO.call_once(|| {
        // SAFETY: setting a signal's disposition to SIG_IGN.
        unsafe {
            if libc::signal(libc::SIGIO, libc::SIG_IGN) == libc::SIG_ERR {
                // Nothing to do: leases are then simply not taken below.
            }
        }
    });
    // SAFETY: fcntl on a descriptor we own; no memory is passed.
    let leased = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) } == 0;
    if !leased {
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EBUSY) => return Err(EvictError::InUse),
            // No leases here (some file systems, no CAP_LEASE on another's file).
            _ => {
                if maybe_open_elsewhere(path) {
                    return Err(EvictError::InUse);
                }
            }
        }
    }
    let result = remove_if_same(path, m.ino(), m.dev());
    if leased {
        // SAFETY: as above.
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
    }
    drop(file);
    result?;
    if let Some(dir) = path.parent() {
        // Removed already: a failed flush must not read as "still there".
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Renames `path` aside and removes it if it is the inode checked;
/// otherwise puts it back without replacing anything.
fn remove_if_same(path: &Path, ino: u64, dev: u64) -> Result<(), EvictError> {
    let aside = aside_name(path);
    std::fs::rename(path, &aside)?;
    let m = std::fs::symlink_metadata(&aside)?;
    if m.ino() == ino && m.dev() == dev {
        std::fs::remove_file(&aside)?;
        return Ok(());
    }
    // Replaced in the meantime (a save by rename): back it goes.
    put_back(&aside, path)?;
    Err(EvictError::Changed)
}

fn aside_name(path: &Path) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".cloudsync-evict-{}-{n}", std::process::id()))
}

/// Renames `from` to `to` unless something is at `to` already.
fn put_back(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other);
    let (from_c, to_c) = (c(from)?, c(to)?);
    // SAFETY: two valid NUL-terminated paths.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether any process may have `path` open: one that does, or one whose
/// descriptors cannot be read.
fn maybe_open_elsewhere(path: &Path) -> bool {
    let Ok(target) = path.canonicalize() else {
        return true;
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return true;
    };
    for p in procs.flatten() {
        let name = p.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let fds = match std::fs::read_dir(p.path().join("fd")) {
            Ok(fds) => fds,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // ended meanwhile
            Err(_) => return true,
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == target))
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp_of(p: &Path) -> (u64, u64, u64) {
        stamp(&std::fs::metadata(p).unwrap())
    }

    #[test]
    fn evicts_only_an_unchanged_file_nobody_has_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("photo.jpg");
        std::fs::write(&p, b"bytes").unwrap();
        let before = stamp_of(&p);
        std::fs::write(&p, b"other").unwrap();
        let changed = (before.0, before.1.wrapping_sub(1), before.2);
        assert!(matches!(evict(&p, changed), Err(EvictError::Changed)));
        // Open in another process: refused, the file stays.
        let now = stamp_of(&p);
        let mut holder = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec 3<>'{}'; exec sleep 5", p.display()))
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(matches!(evict(&p, now), Err(EvictError::InUse)));
        assert!(p.exists());
        holder.kill().unwrap();
        holder.wait().unwrap();
        evict(&p, now).unwrap();
        assert!(!p.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing left aside");
    }

    #[test]
    fn a_file_saved_over_the_checked_one_is_put_back_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notes.txt");
        std::fs::write(&p, b"checked").unwrap();
        let m = std::fs::metadata(&p).unwrap();
        // A save by rename lands after the check: a new inode at the path.
        std::fs::write(dir.path().join("tmp"), b"the user's new save").unwrap();
        std::fs::rename(dir.path().join("tmp"), &p).unwrap();
        assert!(matches!(remove_if_same(&p, m.ino(), m.dev()), Err(EvictError::Changed)));
        assert_eq!(std::fs::read(&p).unwrap(), b"the user's new save");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // And a FIFO is never opened (no hang): refused as changed.
        let fifo = dir.path().join("pipe");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        assert!(matches!(evict(&fifo, (0, 0, 0)), Err(EvictError::Changed)));
    }
}
