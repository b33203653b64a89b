//! The `files` interface: each app's area `<root>/apps/<bundle>/`.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom, Write};

use crate::paths::{beneath, check};
use crate::{lstat, FileKind, FileStat, IoError, IoErrorKind};

/// Largest read or write in one call.
pub const IO_MAX: usize = 4 << 20;

/// One name a walk found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub stat: FileStat,
    pub problem: Option<String>,
}

/// A page of a walk, and where the next starts (`None`: the end).
pub type Page = (Vec<Entry>, Option<String>);

/// The areas, and what a `flush` must still make durable.
pub struct Areas {
    root: String,
    /// Files written and folders renamed in since the last flush.
    unsynced_files: BTreeSet<String>,
    unsynced_dirs: BTreeSet<String>,
    /// The walk being paged out: (folder, last path given, what is left).
    walk: Option<(String, String, std::vec::IntoIter<Entry>)>,
}

impl Areas {
    pub fn new(root: &str) -> Self {
        Areas {
            root: root.to_string(),
            unsynced_files: BTreeSet::new(),
            unsynced_dirs: BTreeSet::new(),
            walk: None,
        }
    }

    /// The folder of `bundle`'s area.
    pub fn area(&self, bundle: &str) -> String {
        format!("{}/apps/{bundle}", self.root)
    }

    /// Resolved from the root itself: `apps` and the area are checked like
    /// every other part (a link there would lead out of the root).
    fn path(&self, bundle: &str, rel: &str) -> Result<String, IoError> {
        check(rel)?;
        let inside = if rel.is_empty() {
            format!("apps/{bundle}")
        } else {
            format!("apps/{bundle}/{rel}")
        };
        let path = beneath(&self.root, &inside)?;
        if rel.is_empty() {
            if let Some(s) = lstat(&path)? {
                if s.kind != FileKind::Folder {
                    return Err(IoError::new(
                        IoErrorKind::EscapesSandbox,
                        format!("{path} is not a folder"),
                    ));
                }
            }
        }
        Ok(path)
    }

    pub fn stat(&self, bundle: &str, rel: &str) -> Result<Option<FileStat>, IoError> {
        lstat(&self.path(bundle, rel)?)
    }

    /// A regular file, never through a link.
    fn regular(&self, bundle: &str, rel: &str) -> Result<String, IoError> {
        let path = self.path(bundle, rel)?;
        match lstat(&path)? {
            Some(s) if s.kind == FileKind::File => Ok(path),
            Some(s) if s.kind == FileKind::Symlink => Err(IoError::new(
                IoErrorKind::EscapesSandbox,
                format!("{rel} is a symlink; links are never followed"),
            )),
            Some(_) => Err(IoError::new(IoErrorKind::NotAFile, format!("{rel} is not a file"))),
            None => Err(IoError::new(IoErrorKind::NotFound, format!("{rel}: no such file"))),
        }
    }

    pub fn read_file(&self, bundle: &str, rel: &str, offset: u64, len: u32) -> Result<Vec<u8>, IoError> {
        let path = self.regular(bundle, rel)?;
        let io = |e| crate::io_error(rel, e);
        let mut file = std::fs::File::open(&path).map_err(io)?;
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        let mut out = Vec::new();
        file.take((len as usize).min(IO_MAX) as u64)
            .read_to_end(&mut out)
            .map_err(io)?;
        Ok(out)
    }

    pub fn write_file(&mut self, bundle: &str, rel: &str, offset: u64, data: &[u8]) -> Result<(), IoError> {
        if data.len() > IO_MAX {
            return Err(IoError::new(
                IoErrorKind::Other,
                format!("{rel}: more than 4 MiB in one write"),
            ));
        }
        let path = self.path(bundle, rel)?;
        match lstat(&path)? {
            None => {
                if let Some((dir, _)) = path.rsplit_once('/') {
                    std::fs::create_dir_all(dir).map_err(|e| crate::io_error(rel, e))?;
                    self.unsynced_dirs.insert(dir.to_string());
                }
            }
            Some(s) if s.kind == FileKind::File => {}
            Some(_) => return Err(IoError::new(IoErrorKind::NotAFile, format!("{rel} is not a file"))),
        }
        let io = |e| crate::io_error(rel, e);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if offset > size {
            return Err(IoError::new(
                IoErrorKind::Other,
                format!("{rel}: a write at {offset} is past its end ({size} bytes)"),
            ));
        }
        file.set_len(offset).map_err(io)?;
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        file.write_all(data).map_err(io)?;
        self.unsynced_files.insert(path);
        Ok(())
    }

    /// Renames atomically; `no_replace` fails with `AlreadyExists` when
    /// anything is at `to` (a hard link then an unlink: WASI has no
    /// renameat2; `NotSupported` where the file system has no links).
    pub fn move_file(
        &mut self,
        bundle: &str,
        from: &str,
        to: &str,
        no_replace: bool,
        durable: bool,
    ) -> Result<(), IoError> {
        let src = self.path(bundle, from)?;
        let dst = self.path(bundle, to)?;
        if lstat(&src)?.is_none() {
            return Err(IoError::new(IoErrorKind::NotFound, format!("{from}: no such file")));
        }
        let dst_dir = dst.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default();
        std::fs::create_dir_all(&dst_dir).map_err(|e| crate::io_error(to, e))?;
        if no_replace {
            if let Err(e) = std::fs::hard_link(&src, &dst) {
                return Err(match e.kind() {
                    std::io::ErrorKind::AlreadyExists => {
                        IoError::new(IoErrorKind::AlreadyExists, format!("{to} exists"))
                    }
                    _ if lstat(&dst)?.is_some() => IoError::new(IoErrorKind::AlreadyExists, format!("{to} exists")),
                    _ => IoError::new(
                        IoErrorKind::NotSupported,
                        format!("{to}: no rename without replacing here ({e})"),
                    ),
                });
            }
            std::fs::remove_file(&src).map_err(|e| crate::io_error(from, e))?;
        } else {
            std::fs::rename(&src, &dst).map_err(|e| crate::io_error(to, e))?;
        }
        let src_dir = src.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default();
        if durable {
            crate::sync_dir(&dst_dir);
            if src_dir != dst_dir {
                crate::sync_dir(&src_dir);
            }
        } else {
            self.unsynced_dirs.insert(dst_dir);
            self.unsynced_dirs.insert(src_dir);
        }
        Ok(())
    }

    /// Makes every write and rename so far durable.
    pub fn flush(&mut self, _bundle: &str) -> Result<(), IoError> {
        for path in std::mem::take(&mut self.unsynced_files) {
            match std::fs::OpenOptions::new().write(true).open(&path) {
                Ok(f) => f.sync_all().map_err(|e| crate::io_error(&path, e))?,
                // Moved or removed since: its new name's folder is synced below.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(crate::io_error(&path, e)),
            }
        }
        for dir in std::mem::take(&mut self.unsynced_dirs) {
            crate::sync_dir(&dir);
        }
        Ok(())
    }

    pub fn remove_file(&mut self, bundle: &str, rel: &str) -> Result<(), IoError> {
        let path = self.path(bundle, rel)?;
        match lstat(&path)? {
            None => Ok(()),
            Some(s) if s.kind == FileKind::Folder => {
                Err(IoError::new(IoErrorKind::NotAFile, format!("{rel} is a folder")))
            }
            Some(_) => {
                std::fs::remove_file(&path).map_err(|e| crate::io_error(rel, e))?;
                self.unsynced_files.remove(&path);
                Ok(())
            }
        }
    }

    pub fn create_dir_all(&self, bundle: &str, rel: &str) -> Result<(), IoError> {
        let path = self.path(bundle, rel)?;
        std::fs::create_dir_all(&path).map_err(|e| crate::io_error(rel, e))
    }

    pub fn remove_dir(&self, bundle: &str, rel: &str) -> Result<(), IoError> {
        let path = self.path(bundle, rel)?;
        match lstat(&path)? {
            None => Ok(()),
            Some(s) if s.kind == FileKind::Folder => std::fs::remove_dir(&path).map_err(|e| crate::io_error(rel, e)),
            Some(_) => Err(IoError::new(IoErrorKind::NotAFile, format!("{rel} is not a folder"))),
        }
    }

    /// A page of the names under `dir` in byte order of their paths.
    pub fn walk_page(
        &mut self,
        bundle: &str,
        dir: &str,
        after: Option<&str>,
        max: u32,
    ) -> Result<Option<Page>, IoError> {
        check(dir)?;
        let key = format!("{bundle}\n{dir}");
        let mut rest = match self.walk.take() {
            Some((k, last, rest)) if k == key && Some(last.as_str()) == after => rest,
            _ => {
                let base = self.path(bundle, dir)?;
                match lstat(&base)? {
                    Some(s) if s.kind == FileKind::Folder => {}
                    Some(s) if s.kind == FileKind::Symlink => {
                        return Err(IoError::new(IoErrorKind::EscapesSandbox, format!("{dir} is a symlink")))
                    }
                    Some(_) => return Err(IoError::new(IoErrorKind::NotAFile, format!("{dir} is not a folder"))),
                    None => return Ok(None),
                }
                let mut all = walk(&base)?;
                if let Some(after) = after {
                    all.retain(|e| e.path.as_str() > after);
                }
                all.into_iter()
            }
        };
        let max = (max as usize).clamp(1, 65_536);
        let page: Vec<Entry> = rest.by_ref().take(max).collect();
        if rest.len() == 0 {
            return Ok(Some((page, None)));
        }
        let last = page.last().map(|e| e.path.clone()).expect("a full page");
        self.walk = Some((key, last.clone(), rest));
        Ok(Some((page, Some(last))))
    }
}

/// What is known of a name whose metadata cannot be read.
const UNKNOWN: FileStat = FileStat {
    kind: FileKind::Special,
    size: 0,
    mtime_ns: 0,
    ctime_ns: 0,
    atime_ns: 0,
    inode: 0,
};

/// Every name under `base` that the engine sees: files, links and special
/// files (never followed), empty folders and folders that cannot be read,
/// sorted by their paths' bytes.
pub fn walk(base: &str) -> Result<Vec<Entry>, IoError> {
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() {
            base.to_string()
        } else {
            format!("{base}/{rel}")
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if !rel.is_empty() => {
                let stat = lstat(&dir)?.expect("just listed");
                out.push(Entry {
                    path: rel,
                    stat,
                    problem: Some(format!("the folder cannot be read: {e}")),
                });
                continue;
            }
            Err(e) => return Err(crate::io_error(base, e)),
        };
        // A folder's names are kept only once all were read: a runtime that
        // cannot give one name (WASI's names are UTF-8) ends the listing
        // there, and a folder read in part would look as if the rest were
        // deleted. Such a folder is reported as unreadable, whole.
        let mut found: Vec<Entry> = Vec::new();
        let mut folders: Vec<String> = Vec::new();
        let mut unreadable = None;
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    unreadable = Some(e);
                    break;
                }
            };
            let raw = entry.file_name();
            let (name, problem) = match raw.to_str() {
                Some(n) => (n.to_string(), None),
                None => (
                    raw.to_string_lossy().into_owned(),
                    Some("the name is not UTF-8".to_string()),
                ),
            };
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let stat = match problem {
                // Not UTF-8: no path reaches it; what the entry tells is all.
                Some(_) => FileStat {
                    kind: match entry.file_type() {
                        Ok(t) if t.is_dir() => FileKind::Folder,
                        Ok(t) if t.is_file() => FileKind::File,
                        Ok(t) if t.is_symlink() => FileKind::Symlink,
                        _ => FileKind::Special,
                    },
                    ..UNKNOWN
                },
                None => match lstat(&format!("{dir}/{name}"))? {
                    Some(stat) => stat,
                    None => continue,
                },
            };
            if stat.kind == FileKind::Folder && problem.is_none() {
                folders.push(path);
            } else {
                found.push(Entry { path, stat, problem });
            }
        }
        if let Some(e) = unreadable {
            let why = format!("a name in this folder cannot be read here ({e}); the folder is left alone");
            if rel.is_empty() {
                return Err(IoError::new(IoErrorKind::Other, format!("{base}: {why}")));
            }
            let stat = lstat(&dir)?.expect("just listed");
            out.push(Entry {
                path: rel,
                stat,
                problem: Some(why),
            });
            continue;
        }
        let empty = found.is_empty() && folders.is_empty();
        out.extend(found);
        stack.extend(folders);
        if empty && !rel.is_empty() {
            let stat = lstat(&dir)?.expect("just listed");
            out.push(Entry {
                path: rel,
                stat,
                problem: None,
            });
        }
    }
    out.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_reads_moves_and_walks_in_an_area() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let mut areas = Areas::new(root);
        areas.write_file("app", "cloud/a-b", 0, b"x").unwrap();
        areas.write_file("app", "cloud/a/1", 0, b"hello").unwrap();
        areas.write_file("app", "cloud/a/1", 2, b"LP").unwrap();
        assert_eq!(areas.read_file("app", "cloud/a/1", 0, 100).unwrap(), b"heLP");
        assert!(areas.write_file("app", "cloud/a/1", 9, b"!").is_err(), "past the end");
        areas.create_dir_all("app", "cloud/empty").unwrap();
        areas.flush("app").unwrap();

        let walked: Vec<String> = walk(&areas.area("app")).unwrap().into_iter().map(|e| e.path).collect();
        assert_eq!(
            walked,
            ["cloud/a-b", "cloud/a/1", "cloud/empty"],
            "byte order of the paths"
        );
        let (first, next) = areas.walk_page("app", "cloud", None, 2).unwrap().unwrap();
        assert_eq!(first.len(), 2);
        let (rest, end) = areas.walk_page("app", "cloud", next.as_deref(), 2).unwrap().unwrap();
        assert_eq!((rest.len(), end), (1, None));
        assert!(areas.walk_page("app", "nothing", None, 2).unwrap().is_none());

        areas.write_file("app", "cloud/b", 0, b"b").unwrap();
        let taken = areas.move_file("app", "cloud/b", "cloud/a-b", true, true).unwrap_err();
        assert_eq!(taken.kind, IoErrorKind::AlreadyExists);
        areas.move_file("app", "cloud/b", "cloud/c/d", true, false).unwrap();
        areas.move_file("app", "cloud/c/d", "cloud/a-b", false, true).unwrap();
        assert_eq!(areas.read_file("app", "cloud/a-b", 0, 9).unwrap(), b"b");

        std::os::unix::fs::symlink("/etc", dir.path().join("apps/app/cloud/link")).unwrap();
        assert_eq!(
            areas.read_file("app", "cloud/link/passwd", 0, 9).unwrap_err().kind,
            IoErrorKind::EscapesSandbox
        );
        assert_eq!(
            areas.read_file("app", "cloud/link", 0, 9).unwrap_err().kind,
            IoErrorKind::EscapesSandbox
        );
        assert!(areas.write_file("app", "cloud/link/x", 0, b"x").is_err());
        assert!(!std::path::Path::new("/etc/x").exists());
        areas.remove_file("app", "cloud/a-b").unwrap();
        areas.remove_file("app", "cloud/a-b").unwrap();
        assert!(areas.remove_dir("app", "cloud/a").is_err(), "not empty");

        // A link at `apps` (or at an area) leads nowhere.
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(other.path().join("app/cloud")).unwrap();
        std::fs::write(other.path().join("app/cloud/o.txt"), b"outside").unwrap();
        let root2 = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(other.path(), root2.path().join("apps")).unwrap();
        let mut linked = Areas::new(root2.path().to_str().unwrap());
        assert_eq!(
            linked.read_file("app", "cloud/o.txt", 0, 9).unwrap_err().kind,
            IoErrorKind::EscapesSandbox
        );
        assert!(linked.write_file("app", "cloud/new", 0, b"x").is_err());
        assert!(linked.walk_page("app", "cloud", None, 10).is_err());
        assert!(!other.path().join("app/cloud/new").exists());
    }
}
