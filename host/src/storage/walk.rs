//! A folder's walk in byte order of the paths it yields, one entry at a
//! time, holding only the listings of the folders it is in: what
//! `storage.walk-page` pages out, however large the tree.
//!
//! Byte order of full paths is not the order a per-folder walk gives when
//! names sort by themselves ("a.txt" < "a/b", but "a" < "a.txt"), so a
//! folder takes two places among its siblings: at its name, where it is
//! opened (an empty or unreadable folder is reported there), and at its
//! name followed by `/`, where its contents come.

use std::collections::HashMap;
use std::os::fd::OwnedFd;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

use crate::beneath::{read_dir_fd, utf8, BeneathError};

/// One name found: its path below the walked folder, its metadata (never
/// followed), and why it cannot be used as it is.
pub struct Found {
    pub path: String,
    pub stat: Stat,
    pub problem: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A name that is not a folder.
    Plain,
    /// A folder, where its own name sorts.
    Head,
    /// A folder's contents, where `name/` sorts.
    Body,
}

struct Item {
    name: Vec<u8>,
    place: Place,
}

impl Item {
    /// What it sorts by: its name, and `/` after a folder's body (kept
    /// implicit: a folder of long names is held once, not twice).
    fn key(&self) -> impl Iterator<Item = u8> + '_ {
        self.name
            .iter()
            .copied()
            .chain((self.place == Place::Body).then_some(b'/'))
    }
}

struct Frame {
    dir: OwnedFd,
    prefix: String,
    items: Vec<Item>,
    at: usize,
    /// Folders opened at their head, waiting for their body.
    opened: HashMap<Vec<u8>, (OwnedFd, Vec<Item>)>,
    /// Where a seek skipped to: folders whose heads it skipped are opened
    /// at their bodies.
    sought: Option<String>,
    /// The folder's file system: a folder on another is a mount point,
    /// never crossed.
    dev: Option<u64>,
}

pub struct SortedWalk {
    stack: Vec<Frame>,
}

/// A folder's names in walk order.
fn items_of(dir: &OwnedFd, what: &str) -> Result<Vec<Item>, BeneathError> {
    let mut items = Vec::new();
    for (name, kind) in read_dir_fd(dir, what)? {
        let is_dir = match kind {
            FileType::Directory => true,
            FileType::Unknown => rustix::fs::statat(dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory),
            _ => false,
        };
        if is_dir {
            items.push(Item {
                name: name.clone(),
                place: Place::Head,
            });
            items.push(Item {
                name,
                place: Place::Body,
            });
        } else {
            items.push(Item {
                name,
                place: Place::Plain,
            });
        }
    }
    items.sort_by(|a, b| a.key().cmp(b.key()));
    items.shrink_to_fit();
    Ok(items)
}

impl Frame {
    fn new(dir: OwnedFd, prefix: String, items: Vec<Item>) -> Self {
        let dev = rustix::fs::fstat(&dir).ok().map(|st| st.st_dev);
        Frame {
            dir,
            prefix,
            items,
            at: 0,
            opened: HashMap::new(),
            sought: None,
            dev,
        }
    }
}

/// A folder of `dir` opened for its contents: its prefix, handle and names.
fn open_body(dir: &OwnedFd, prefix: &str, name: &[u8]) -> Option<(String, OwnedFd, Vec<Item>)> {
    let prefix = format!("{prefix}{}/", utf8(name)?);
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let child = rustix::fs::openat(dir, name, flags, Mode::empty()).ok()?;
    let items = items_of(&child, &prefix).ok()?;
    Some((prefix, child, items))
}

impl SortedWalk {
    pub fn new(root: OwnedFd) -> Result<Self, BeneathError> {
        let items = items_of(&root, "")?;
        Ok(SortedWalk {
            stack: vec![Frame::new(root, String::new(), items)],
        })
    }

    /// Goes on after `after` (a path below the walked folder), skipping
    /// what sorts before it without looking at it: only the folders on the
    /// way to it are read.
    pub fn seek(&mut self, after: &str) {
        loop {
            let Some(frame) = self.stack.last_mut() else { return };
            let mut enter = None;
            while let Some(item) = frame.items.get(frame.at) {
                let mut full = frame.prefix.as_bytes().to_vec();
                full.extend(item.key());
                if item.place == Place::Body && after.as_bytes().starts_with(&full) {
                    enter = Some(item.name.clone());
                    frame.at += 1;
                    break;
                }
                if full.as_slice() > after.as_bytes() {
                    frame.sought = Some(after.to_string());
                    return;
                }
                frame.at += 1;
            }
            // `after` lies inside this folder: its names before it are skipped
            // likewise (one that cannot be read holds nothing to give).
            frame.sought = Some(after.to_string());
            let Some(name) = enter else { return };
            let Some((prefix, dir, items)) = open_body(&frame.dir, &frame.prefix, &name) else {
                return;
            };
            self.stack.push(Frame::new(dir, prefix, items));
        }
    }

    /// The next name in path order; `None` at the end.
    pub fn next_entry(&mut self) -> Result<Option<Found>, BeneathError> {
        loop {
            let Some(frame) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(item) = frame.items.get(frame.at) else {
                self.stack.pop();
                continue;
            };
            frame.at += 1;
            let (name, place) = (item.name.clone(), item.place);
            let (rel, problem) = match utf8(&name) {
                Some(n) => (format!("{}{n}", frame.prefix), None),
                None => (
                    format!("{}{}", frame.prefix, String::from_utf8_lossy(&name)),
                    Some("the name is not valid UTF-8".to_string()),
                ),
            };
            if place == Place::Body {
                let head_skipped = || {
                    let head = [frame.prefix.as_bytes(), &name].concat();
                    frame.sought.as_deref().is_some_and(|a| head.as_slice() <= a.as_bytes())
                };
                let body = match frame.opened.remove(&name) {
                    Some((dir, items)) => Some((format!("{rel}/"), dir, items)),
                    None if head_skipped() => open_body(&frame.dir, &frame.prefix, &name),
                    None => None,
                };
                if let Some((prefix, dir, items)) = body {
                    self.stack.push(Frame::new(dir, prefix, items));
                }
                continue;
            }
            let st = match rustix::fs::statat(&frame.dir, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(e) if e == rustix::io::Errno::NOENT => continue, // gone meanwhile
                Err(e) => return Err(BeneathError::io(&rel, e)),
            };
            let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            let problem = match problem {
                None if is_dir && frame.dev.is_some_and(|dev| dev != st.st_dev) => {
                    Some("another file system is mounted here (mount points are never crossed)".to_string())
                }
                p => p,
            };
            if place == Place::Plain || problem.is_some() || !is_dir {
                return Ok(Some(Found {
                    path: rel,
                    stat: st,
                    problem,
                }));
            }
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let child = match rustix::fs::openat(&frame.dir, name.as_slice(), flags, Mode::empty()) {
                Ok(child) => child,
                Err(e) if e == rustix::io::Errno::NOENT => continue,
                // Unreadable: reported (and so never read as deleted).
                Err(e) => {
                    return Ok(Some(Found {
                        path: rel,
                        stat: st,
                        problem: Some(format!("this folder cannot be read: {e}")),
                    }))
                }
            };
            let items = match items_of(&child, &rel) {
                Ok(items) => items,
                Err(e) => {
                    return Ok(Some(Found {
                        path: rel,
                        stat: st,
                        problem: Some(format!("this folder cannot be read: {e}")),
                    }))
                }
            };
            if items.is_empty() {
                // An empty folder: reported, so that it is not skipped in silence.
                return Ok(Some(Found {
                    path: rel,
                    stat: st,
                    problem: None,
                }));
            }
            frame.opened.insert(name, (child, items));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::SortedWalk;

    fn open_dir(root: &std::path::Path) -> rustix::fd::OwnedFd {
        rustix::fs::open(
            root,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .unwrap()
    }

    /// The streaming walk yields what a plain recursive walk does, in byte
    /// order of the paths, on names that sort between a folder and its
    /// contents.
    #[test]
    fn the_sorted_walk_is_the_whole_walk_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "a", "a.txt", "a-b", "a b", "a0", "A", "é", "日本/x", "d/c", "d/e/f", "d.txt", "d-x/y", "e/", "z/z/z/z",
        ] {
            let p = root.join(f);
            if f.ends_with('/') {
                std::fs::create_dir_all(&p).unwrap(); // an empty folder
                continue;
            }
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, f).unwrap();
        }
        std::fs::create_dir_all(root.join("q/empty")).unwrap();
        std::os::unix::fs::symlink("/", root.join("link")).unwrap();
        std::os::unix::fs::symlink("/", root.join("d/link")).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            root.join("fifo").as_path(),
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .unwrap();
        std::fs::write(root.join(std::ffi::OsStr::from_bytes(b"bad\xffname")), b"x").unwrap();
        let open = || open_dir(root);
        // What a plain recursive walk finds, sorted: files, links and FIFOs
        // as they are, empty folders themselves, names that are not UTF-8
        // with their problem.
        fn reference(dir: &std::path::Path, prefix: &str, out: &mut Vec<(String, Option<String>)>) {
            let entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
            if entries.is_empty() && !prefix.is_empty() {
                out.push((prefix.trim_end_matches('/').to_string(), None));
            }
            for e in entries {
                let name = e.file_name();
                let (rel, problem) = match name.to_str() {
                    Some(n) => (format!("{prefix}{n}"), None),
                    None => (
                        format!("{prefix}{}", name.to_string_lossy()),
                        Some("the name is not valid UTF-8".to_string()),
                    ),
                };
                if problem.is_none() && e.file_type().unwrap().is_dir() {
                    reference(&e.path(), &format!("{rel}/"), out);
                } else {
                    out.push((rel, problem));
                }
            }
        }
        let mut want = Vec::new();
        reference(root, "", &mut want);
        want.sort();
        let mut walk = SortedWalk::new(open()).unwrap();
        let mut got = Vec::new();
        while let Some(f) = walk.next_entry().unwrap() {
            got.push((f.path, f.problem));
        }
        let paths: Vec<&String> = got.iter().map(|(p, _)| p).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted, "in byte order of the paths");
        assert_eq!(got, want);
        // A walk that seeks goes on after any path, there or not.
        // (Not after a name that is not UTF-8: its path is a lossy copy.)
        let mut points: Vec<String> = want
            .iter()
            .filter(|(_, why)| why.is_none())
            .map(|(p, _)| p.clone())
            .collect();
        points.extend(["", "a/", "d/d", "d/e/", "d/e/g", "q/", "zz", "日本"].map(String::from));
        for after in points {
            let mut walk = SortedWalk::new(open()).unwrap();
            walk.seek(&after);
            let mut rest = Vec::new();
            while let Some(f) = walk.next_entry().unwrap() {
                rest.push((f.path, f.problem));
            }
            let expect: Vec<_> = want
                .iter()
                .filter(|(p, _)| p.as_str() > after.as_str())
                .cloned()
                .collect();
            assert_eq!(rest, expect, "after {after:?}");
        }
    }

    /// A file system mounted inside is reported, never walked into.
    #[test]
    fn a_mount_point_is_reported_and_not_crossed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("m")).unwrap();
        std::fs::write(root.join("n.txt"), "n").unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(root.join("m"))
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: mounting a tmpfs needs root");
            return;
        }
        std::fs::write(root.join("m/inside.txt"), "x").unwrap();
        let open = || open_dir(root);
        let mut walk = SortedWalk::new(open()).unwrap();
        let mut found = Vec::new();
        while let Some(f) = walk.next_entry().unwrap() {
            found.push((f.path, f.problem));
        }
        let _ = std::process::Command::new("umount").arg(root.join("m")).status();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, "m");
        assert!(found[0].1.as_deref().unwrap().contains("mounted"), "{found:?}");
        assert_eq!(found[1], ("n.txt".to_string(), None));
    }
}
