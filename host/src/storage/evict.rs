//! Removing a local copy the cloud holds, only when it is safe: the file is
//! still the one the engine checked, and no process has it open.
//!
//! "Not open" is asked of the kernel with a write lease (`F_SETLEASE`),
//! which Linux grants only when no other descriptor of the file is open;
//! where leases are unavailable, `/proc/*/fd` is searched instead (and a
//! process whose descriptors cannot be read counts as having it open). The
//! file is then renamed to the engine's aside name in the staging area and
//! removed only if the renamed file is the very inode that was checked — a
//! save that replaced it by rename in the meantime is put back, never
//! removed. A crash in between leaves the file aside, where the engine's
//! recovery settles it (removed if it is the file checked, else put back).
//!
//! Left open: a process that opens the file in the instant between the
//! check and the removal writes to the removed inode.

use std::os::fd::AsRawFd;

use rustix::fs::{FileType, RenameFlags};

use crate::beneath::{BeneathError, Root, Stamp};

#[derive(Debug, thiserror::Error)]
pub enum EvictError {
    #[error("the file is open in another process")]
    InUse,
    #[error("the file changed")]
    Changed,
    #[error(transparent)]
    Path(#[from] BeneathError),
}

static IGNORE_SIGIO: std::sync::Once = std::sync::Once::new();

/// A lease break is signalled with SIGIO, whose default action ends the
/// process: the host ignores it (it never uses SIGIO otherwise).
fn ignore_sigio() {
    IGNORE_SIGIO.call_once(|| {
        // SAFETY: setting a signal's disposition to SIG_IGN.
        unsafe {
            libc::signal(libc::SIGIO, libc::SIG_IGN);
        }
    });
}

/// A write lease on `file`: `Ok(true)` held, `Ok(false)` refused because
/// another descriptor of the file is open, `Err` where leases do not work.
fn take_lease(file: &std::fs::File) -> std::io::Result<bool> {
    ignore_sigio();
    // SAFETY: fcntl on a descriptor we own; no memory is passed.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) } == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EBUSY) => Ok(false),
        _ => Err(err),
    }
}

/// Gives the lease back; whether it was still whole (nobody opened the
/// file meanwhile: an open breaks it, and waits for this).
fn release_lease(file: &std::fs::File) -> bool {
    // SAFETY: as in `take_lease`.
    let still = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLEASE) } == libc::F_WRLCK;
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
    still
}

/// What [`swap_if_unchanged`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Swap {
    /// Swapped; `from` now names exactly the file checked, which no other
    /// process had or opened from the check to the swap.
    Clean,
    /// Swapped; what `from` names may hold another process's writes.
    InUse,
    /// Not swapped: `to` is no longer `expect`.
    Changed,
}

/// Swaps `from` and `to` (`renameat2(RENAME_EXCHANGE)`) if `to` is still
/// the file `expect` names, holding a write lease on it from the check to
/// the swap: a process that has it open, or opens it in between, is seen
/// (the lease cannot be had, or breaks). A save by rename in between is
/// seen too: the file swapped out is then not the one checked.
pub fn swap_if_unchanged(
    area: &Root,
    from: &str,
    to: &str,
    expect: Stamp,
    durable: bool,
) -> Result<Swap, BeneathError> {
    let st = area.lstat(to)?.ok_or_else(|| {
        BeneathError::io(
            to,
            std::io::Error::new(std::io::ErrorKind::NotFound, "nothing to swap with"),
        )
    })?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || Stamp::of(&st) != expect {
        return Ok(Swap::Changed);
    }
    let file = area.open_read(to)?;
    let stamp_now = |f: &std::fs::File| Stamp::of_file(f).map_err(|e| BeneathError::io(to, e));
    if stamp_now(&file)? != expect {
        return Ok(Swap::Changed);
    }
    let leased = take_lease(&file);
    let mut in_use = match &leased {
        Ok(held) => !held,
        Err(_) => maybe_open_elsewhere(&area.path().join(to)),
    };
    let leased = leased.unwrap_or(false);
    let release = |in_use: &mut bool| {
        if leased && !release_lease(&file) {
            *in_use = true;
        }
    };
    // Written between the open and the lease?
    if stamp_now(&file)? != expect {
        release(&mut in_use);
        return Ok(Swap::Changed);
    }
    let swapped = if durable {
        area.rename_with(from, to, RenameFlags::EXCHANGE)
    } else {
        area.rename_lazily(from, to, RenameFlags::EXCHANGE)
    };
    if let Err(e) = swapped {
        release(&mut in_use);
        return Err(e);
    }
    let out = area.lstat(from)?;
    let same = out.is_some_and(|m| m.st_ino == st.st_ino && m.st_dev == st.st_dev);
    release(&mut in_use);
    Ok(if same && !in_use { Swap::Clean } else { Swap::InUse })
}

/// Removes `rel` in `area` if it is still `expect` and nobody has it open,
/// setting it aside at `aside` first. Once the file is removed this
/// succeeds, whatever happens after.
pub fn evict(area: &Root, rel: &str, expect: Stamp, aside: &str) -> Result<(), EvictError> {
    // Only a regular file; never block on a FIFO, never follow a link.
    let st = area.lstat(rel)?.ok_or(EvictError::Changed)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile || Stamp::of(&st) != expect {
        return Err(EvictError::Changed);
    }
    let file = area.open_rw(rel).or_else(|_| area.open_read(rel))?;
    let now = Stamp::of_file(&file).map_err(|e| BeneathError::io(rel, e))?;
    if now != expect {
        return Err(EvictError::Changed);
    }
    ignore_sigio();
    // SAFETY: fcntl on a descriptor we own; no memory is passed.
    let leased = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) } == 0;
    if !leased {
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EBUSY) => return Err(EvictError::InUse),
            // No leases here (some file systems, no CAP_LEASE on another's file).
            _ => {
                if maybe_open_elsewhere(&area.path().join(rel)) {
                    return Err(EvictError::InUse);
                }
            }
        }
    }
    let result = remove_if_same(area, rel, &st, aside);
    if leased {
        // SAFETY: as above.
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
    }
    result
}

/// Renames `rel` aside and removes it if it is the inode checked;
/// otherwise puts it back without replacing anything.
fn remove_if_same(area: &Root, rel: &str, checked: &rustix::fs::Stat, aside: &str) -> Result<(), EvictError> {
    area.rename(rel, aside)?;
    let m = area.lstat(aside)?.ok_or(EvictError::Changed)?;
    if m.st_ino == checked.st_ino && m.st_dev == checked.st_dev {
        area.remove_file(aside)?;
        return Ok(());
    }
    // Replaced in the meantime (a save by rename): back it goes.
    area.rename_with(aside, rel, RenameFlags::NOREPLACE)?;
    Err(EvictError::Changed)
}

/// Whether any process may have `path` open: one that does, or one whose
/// descriptors cannot be read. (Only `/proc` is read: links are compared
/// as text, the file itself is never opened here.)
fn maybe_open_elsewhere(path: &std::path::Path) -> bool {
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
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == path))
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp_of(area: &Root, rel: &str) -> Stamp {
        Stamp::of(&area.lstat(rel).unwrap().unwrap())
    }

    #[test]
    fn swaps_only_an_unchanged_file_and_says_when_another_process_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let area = Root::open(dir.path()).unwrap();
        let (old, new) = (dir.path().join("f"), dir.path().join("t"));
        std::fs::write(&old, b"old").unwrap();
        std::fs::write(&new, b"new").unwrap();
        let checked = stamp_of(&area, "f");
        assert_eq!(swap_if_unchanged(&area, "t", "f", checked, true).unwrap(), Swap::Clean);
        assert_eq!(
            (std::fs::read(&old).unwrap(), std::fs::read(&new).unwrap()),
            (b"new".to_vec(), b"old".to_vec())
        );
        // Changed since it was checked: nothing is swapped.
        let checked = stamp_of(&area, "f");
        std::fs::write(&old, b"edited").unwrap();
        assert_eq!(
            swap_if_unchanged(&area, "t", "f", checked, true).unwrap(),
            Swap::Changed
        );
        assert_eq!(std::fs::read(&old).unwrap(), b"edited");
        // Held open by another process: swapped, but said to be in use.
        let checked = stamp_of(&area, "f");
        let mut holder = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec 3<>'{}'; exec sleep 5", old.display()))
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(swap_if_unchanged(&area, "t", "f", checked, false).unwrap(), Swap::InUse);
        holder.kill().unwrap();
        holder.wait().unwrap();
        assert_eq!(
            std::fs::read(&new).unwrap(),
            b"edited",
            "the held file is at the other name"
        );
        // Nothing to swap with.
        std::fs::remove_file(&old).unwrap();
        assert!(swap_if_unchanged(&area, "t", "f", checked, true)
            .unwrap_err()
            .is_not_found());
    }

    #[test]
    fn evicts_only_an_unchanged_file_nobody_has_open() {
        let dir = tempfile::tempdir().unwrap();
        let area = Root::open(dir.path()).unwrap();
        let p = dir.path().join("photo.jpg");
        std::fs::write(&p, b"bytes").unwrap();
        let before = stamp_of(&area, "photo.jpg");
        std::fs::write(&p, b"other").unwrap();
        let changed = Stamp {
            mtime_ns: before.mtime_ns.wrapping_sub(1),
            ..before
        };
        assert!(matches!(
            evict(&area, "photo.jpg", changed, ".staging/x"),
            Err(EvictError::Changed)
        ));
        // Open in another process: refused, the file stays.
        let now = stamp_of(&area, "photo.jpg");
        let mut holder = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec 3<>'{}'; exec sleep 5", p.display()))
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(matches!(
            evict(&area, "photo.jpg", now, ".staging/x"),
            Err(EvictError::InUse)
        ));
        assert!(p.exists());
        holder.kill().unwrap();
        holder.wait().unwrap();
        evict(&area, "photo.jpg", now, ".staging/x").unwrap();
        assert!(!p.exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join(".staging")).unwrap().count(),
            0,
            "nothing left aside"
        );
    }

    #[test]
    fn an_edit_that_puts_the_mtime_back_is_not_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let area = Root::open(dir.path()).unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, b"synced").unwrap();
        let checked = stamp_of(&area, "a.txt");
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, b"edited").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert!(matches!(
            evict(&area, "a.txt", checked, ".staging/x"),
            Err(EvictError::Changed)
        ));
        assert_eq!(std::fs::read(&p).unwrap(), b"edited");
    }

    #[test]
    fn a_file_saved_over_the_checked_one_is_put_back_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let area = Root::open(dir.path()).unwrap();
        let p = dir.path().join("notes.txt");
        std::fs::write(&p, b"checked").unwrap();
        let checked = area.lstat("notes.txt").unwrap().unwrap();
        // A save by rename lands after the check: a new inode at the path.
        std::fs::write(dir.path().join("tmp"), b"the user's new save").unwrap();
        std::fs::rename(dir.path().join("tmp"), &p).unwrap();
        assert!(matches!(
            remove_if_same(&area, "notes.txt", &checked, ".staging/aside"),
            Err(EvictError::Changed)
        ));
        assert_eq!(std::fs::read(&p).unwrap(), b"the user's new save");
        assert_eq!(std::fs::read_dir(dir.path().join(".staging")).unwrap().count(), 0);
        // And a FIFO is never opened (no hang): refused as changed.
        rustix::fs::mkfifoat(area.fd(), "pipe", rustix::fs::Mode::from_raw_mode(0o644)).unwrap();
        let fifo = stamp_of(&area, "pipe");
        assert!(matches!(
            evict(&area, "pipe", fifo, ".staging/x"),
            Err(EvictError::Changed)
        ));
    }
}
