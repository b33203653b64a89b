//! The engine's core imports over WASI alone, as a component that exports
//! them (the `wasi-adapter` world): plugged into the engine built for
//! `cloudsync-core`, the pair needs nothing but a WASI runtime.
//!
//! - `files`: the app areas `<root>/apps/<bundle>/`, through wasi:filesystem
//!   (the runtime's preopened folders bound what can be reached at all; on
//!   top, no path with `.`/`..` is taken and no symlink is followed anywhere
//!   in a path).
//! - `metadata`: a journal file, `<root>/meta.journal`: each commit is one
//!   appended, checksummed, synced record, so a crash keeps all of a commit
//!   or none of it.
//! - `cloud`: a folder cloud (`--cloud dir:///path`, default `<root>/cloud`),
//!   objects as plain files at `<bundle>/<path>`, uploads staged under
//!   `.cloudsync/staging/` and moved into place whole, the same layout the
//!   native host's folder cloud keeps; or a WebDAV server
//!   (`--cloud webdav://host/path`) through wasi:http, spoken as the native
//!   host speaks it (its locks included).
//! - `identity` and `device`: from the command's arguments and environment
//!   ([`config::Config`]).
//!
//! Everything but the thin WIT layer (`component`) is plain Rust over
//! `std::fs`, tested natively.

pub mod area;
pub mod cloud;
pub mod config;
pub mod dav_cloud;
pub mod folder_cloud;
pub mod http;
pub mod journal;
pub mod paths;

#[cfg(target_arch = "wasm32")]
mod component;

pub use cloudsync_contract::{FileKind, FileStat, IoError, IoErrorKind};

use std::io::Write;

/// `e`, said of `what`.
pub fn io_error(what: &str, e: std::io::Error) -> IoError {
    use std::io::ErrorKind as E;
    let kind = match e.kind() {
        E::NotFound => IoErrorKind::NotFound,
        E::AlreadyExists => IoErrorKind::AlreadyExists,
        E::PermissionDenied => IoErrorKind::PermissionDenied,
        E::StorageFull | E::QuotaExceeded => IoErrorKind::NoSpace,
        E::Interrupted => IoErrorKind::Interrupted,
        E::WouldBlock => IoErrorKind::WouldBlock,
        E::Unsupported => IoErrorKind::NotSupported,
        E::NotADirectory | E::IsADirectory => IoErrorKind::NotAFile,
        _ => IoErrorKind::Other,
    };
    IoError::new(kind, format!("{what}: {e}"))
}

/// The metadata of `path` itself; `None` when nothing is there.
pub fn lstat(path: &str) -> Result<Option<FileStat>, IoError> {
    let c = std::ffi::CString::new(path)
        .map_err(|_| IoError::new(IoErrorKind::PermissionDenied, format!("{path:?} holds a NUL")))?;
    // SAFETY: `st` is written by lstat before it is read; `c` outlives the call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::lstat(c.as_ptr(), &mut st) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == std::io::ErrorKind::NotFound {
            return Ok(None);
        }
        return Err(crate::io_error(path, e));
    }
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => FileKind::File,
        libc::S_IFDIR => FileKind::Folder,
        libc::S_IFLNK => FileKind::Symlink,
        _ => FileKind::Special,
    };
    // WASI runtimes give no change time (wasmtime reports the birth time as
    // the status-change time): 0 tells the engine that stamps cannot vouch
    // for a file's content, so it hashes instead of trusting them.
    #[cfg(target_os = "wasi")]
    let times = (
        (st.st_mtim.tv_sec, st.st_mtim.tv_nsec as i64),
        (0, 0),
        (st.st_atim.tv_sec, st.st_atim.tv_nsec as i64),
    );
    #[cfg(not(target_os = "wasi"))]
    let times = (
        (st.st_mtime as i64, st.st_mtime_nsec as i64),
        (st.st_ctime as i64, st.st_ctime_nsec as i64),
        (st.st_atime as i64, st.st_atime_nsec as i64),
    );
    let ns = |s: i64, n: i64| {
        (s.max(0) as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(n.max(0) as u64)
    };
    Ok(Some(FileStat {
        kind,
        size: st.st_size.max(0) as u64,
        mtime_ns: ns(times.0 .0, times.0 .1),
        ctime_ns: ns(times.1 .0, times.1 .1),
        atime_ns: ns(times.2 .0, times.2 .1),
        inode: st.st_ino as u64,
    }))
}

/// This device's id, kept in `<root>/wasi-device-id` (made on first use):
/// its uploads are staged apart from every other device's, and its
/// conflict copies carry part of it.
pub fn device_id(root: &str) -> Result<String, IoError> {
    let file = format!("{root}/wasi-device-id");
    match lstat(&file)? {
        Some(s) if s.kind == FileKind::File => {
            let text = std::fs::read_to_string(&file).map_err(|e| crate::io_error(&file, e))?;
            let id = text.trim();
            if !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(id.to_string());
            }
        }
        Some(_) => {
            return Err(IoError::new(
                IoErrorKind::EscapesSandbox,
                format!("{file} is not a regular file (links are never followed)"),
            ))
        }
        None => {}
    }
    use std::hash::{BuildHasher, Hasher};
    // RandomState draws from the runtime's randomness (wasi:random).
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let id = format!("{:016x}", h.finish());
    std::fs::create_dir_all(root).map_err(|e| crate::io_error(root, e))?;
    // A name of this run's own: two first runs at once do not share it.
    let temp = format!("{file}.{id}.new");
    let mut f = fresh_file(&temp)?;
    f.write_all(format!("{id}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| crate::io_error(&temp, e))?;
    std::fs::rename(&temp, &file).map_err(|e| crate::io_error(&file, e))?;
    Ok(id)
}

/// A new, empty regular file at `path`, made there and nowhere else:
/// whatever was at the name (a link, left by someone else, say) is removed
/// first, never followed, and the file is created exclusively.
pub fn fresh_file(path: &str) -> Result<std::fs::File, IoError> {
    match lstat(path)? {
        Some(s) if s.kind == FileKind::Folder => {
            return Err(IoError::new(
                IoErrorKind::NotAFile,
                format!("{path} is a folder; a file must be made there"),
            ))
        }
        Some(_) => std::fs::remove_file(path).map_err(|e| crate::io_error(path, e))?,
        None => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| crate::io_error(path, e))
}

/// Makes a folder's entries durable. Where the runtime cannot open or sync
/// a folder, a rename is as durable as the file system makes it.
pub fn sync_dir(dir: &str) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
