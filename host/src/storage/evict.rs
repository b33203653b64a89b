//! Removing a local copy the cloud holds, only when it is safe: the file is
//! still the one the engine checked, and no process has it open.
//!
//! "Not open" is asked of the kernel with a write lease (`F_SETLEASE`),
//! which Linux grants only when no other descriptor of the file is open;
//! where leases are unavailable, `/proc/*/fd` is searched instead. While the
//! lease is held nobody can open the file unnoticed, and it is unlinked.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum EvictError {
    #[error("the file is open in another process")]
    InUse,
    #[error("the file changed")]
    Changed,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Removes `path` durably if it is still `expect` — (size, mtime ns,
/// inode) — and nobody has it open.
pub fn evict(path: &Path, expect: (u64, u64, u64)) -> Result<(), EvictError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .or_else(|_| std::fs::File::open(path))?;
    let m = file.metadata()?;
    let mtime = (m.mtime().max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(m.mtime_nsec().max(0) as u64);
    if !m.is_file() || (m.len(), mtime, m.ino()) != expect {
        return Err(EvictError::Changed);
    }
    // SAFETY: fcntl on a descriptor we own; no memory is passed.
    let leased = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) } == 0;
    if !leased {
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EBUSY) => return Err(EvictError::InUse),
            // No leases here (some file systems, no CAP_LEASE on another's file).
            _ => {
                if open_elsewhere(path) {
                    return Err(EvictError::InUse);
                }
            }
        }
    }
    let removed = std::fs::remove_file(path);
    if leased {
        // SAFETY: as above.
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
    }
    drop(file);
    removed?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Whether any process but this one has `path` open.
fn open_elsewhere(path: &Path) -> bool {
    let Ok(target) = path.canonicalize() else {
        return false;
    };
    let me = std::process::id().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    for p in procs.flatten() {
        let name = p.file_name();
        let name = name.to_string_lossy();
        if name == me || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
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

    fn stamp(p: &Path) -> (u64, u64, u64) {
        let m = std::fs::metadata(p).unwrap();
        let mtime = m.mtime() as u64 * 1_000_000_000 + m.mtime_nsec() as u64;
        (m.len(), mtime, m.ino())
    }

    #[test]
    fn evicts_only_an_unchanged_file_nobody_has_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("photo.jpg");
        std::fs::write(&p, b"bytes").unwrap();
        let before = stamp(&p);
        std::fs::write(&p, b"other").unwrap();
        let changed = (before.0, before.1.wrapping_sub(1), before.2);
        assert!(matches!(evict(&p, changed), Err(EvictError::Changed)));
        // Open in another process: refused, the file stays.
        let now = stamp(&p);
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
    }
}
