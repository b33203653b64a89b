use std::os::unix::fs::FileExt;

use crate::runtime::bindings::ohos::cloudsync::{files, types};
use wasmtime::component::Resource;

use crate::runtime::state::{file_stat, io_error, path_error, std_io_error, tree_entry, AreaGrant, HostState, IO_MAX};

impl files::Host for HostState {}

impl files::HostArea for HostState {
    fn open(&mut self, bundle: String) -> Result<Resource<AreaGrant>, types::IoError> {
        self.timed(|s| s.open_area(bundle))
    }

    fn drop(&mut self, area: Resource<AreaGrant>) -> wasmtime::Result<()> {
        self.drop_grant(area)
    }

    fn stat(&mut self, area: Resource<AreaGrant>, path: String) -> Result<Option<types::FileStat>, types::IoError> {
        self.in_area(&area, |s, bundle| {
            let Some(area) = s.area_for(&bundle, &[&path], false)? else {
                return Ok(None);
            };
            Ok(area.lstat(&path).map_err(path_error)?.map(|st| file_stat(&st)))
        })
    }

    fn move_file(
        &mut self,
        area: Resource<AreaGrant>,
        from: String,
        to: String,
        mode: files::MoveMode,
        durable: bool,
    ) -> Result<(), types::IoError> {
        use rustix::fs::RenameFlags;
        self.in_area(&area, |s, bundle| {
            let area = s.area_for(&bundle, &[&from, &to], true)?.expect("made");
            let flags = match mode {
                files::MoveMode::Replace => RenameFlags::empty(),
                files::MoveMode::NoReplace => RenameFlags::NOREPLACE,
            };
            let moved = if durable {
                area.rename_with(&from, &to, flags)
            } else {
                area.rename_lazily(&from, &to, flags)
            };
            moved.map_err(|e| match e.raw_os_error() {
                // A file system without renameat2's flags.
                Some(libc::EINVAL) if !flags.is_empty() => {
                    io_error(types::IoErrorKind::NotSupported, format!("{to}: no such rename here"))
                }
                _ => path_error(e),
            })
        })
    }

    fn flush(&mut self, area: Resource<AreaGrant>) -> Result<(), types::IoError> {
        self.in_area(&area, |s, bundle| s.area_w(&bundle)?.flush().map_err(path_error))
    }

    fn remove_file(&mut self, area: Resource<AreaGrant>, path: String) -> Result<(), types::IoError> {
        self.in_area(&area, |s, bundle| match s.area_for(&bundle, &[&path], false)? {
            Some(area) => area.remove_file(&path).map_err(path_error),
            None => Ok(()),
        })
    }

    fn create_dir_all(&mut self, area: Resource<AreaGrant>, path: String) -> Result<(), types::IoError> {
        self.in_area(&area, |s, bundle| {
            let area = s.area_for(&bundle, &[&path], true)?.expect("made");
            area.make_dirs(&path).map(|_| ()).map_err(path_error)
        })
    }

    fn remove_dir(&mut self, area: Resource<AreaGrant>, path: String) -> Result<(), types::IoError> {
        self.in_area(&area, |s, bundle| match s.area_for(&bundle, &[&path], false)? {
            Some(area) => area.remove_dir(&path).map_err(path_error),
            None => Ok(()),
        })
    }

    fn free_space(&mut self, area: Resource<AreaGrant>) -> Result<Option<u64>, types::IoError> {
        self.in_area(&area, |s, bundle| {
            let area = s.area_w(&bundle)?;
            s.b.device
                .free_space(area.path())
                .map(Some)
                .map_err(|e| std_io_error(&bundle, e))
        })
    }

    fn fine_stamps(&mut self, area: Resource<AreaGrant>) -> bool {
        // An area it cannot probe is coarse: nothing is trusted.
        self.in_area(&area, |s, bundle| {
            if let Some(&fine) = s.fine_stamps.get(&bundle) {
                return Ok(fine);
            }
            let fine = s.area_w(&bundle)?.fine_stamps();
            s.fine_stamps.insert(bundle, fine);
            Ok(fine)
        })
        .unwrap_or(false)
    }

    fn walk_page(
        &mut self,
        area: Resource<AreaGrant>,
        dir: String,
        after: Option<String>,
        max: u32,
    ) -> Result<Option<files::TreePage>, types::IoError> {
        self.in_area(&area, |s, bundle| {
            let key = (bundle.clone(), dir.clone());
            // A walk that goes on is there; a fresh one seeks to `after`.
            let mut walk = match s.walk_pages.resume(&key, after.as_deref()) {
                Some(walk) => walk,
                None => {
                    let Some(area) = s.area_for(&bundle, &[&dir], false)? else {
                        return Ok(None);
                    };
                    let Some(root) = area.dir(&dir).map_err(path_error)? else {
                        return Ok(None);
                    };
                    let mut walk = crate::storage::SortedWalk::new(root).map_err(path_error)?;
                    if let Some(after) = &after {
                        walk.seek(after);
                    }
                    walk
                }
            };
            let max = (max as usize).clamp(1, 65_536);
            let mut entries = Vec::new();
            while entries.len() < max {
                let Some(found) = walk.next_entry().map_err(path_error)? else {
                    return Ok(Some(files::TreePage { entries, next: None }));
                };
                entries.push(tree_entry(found));
            }
            let next = entries.last().map(|e| e.path.clone());
            if let Some(last) = &next {
                s.walk_pages.keep(key, last.clone(), walk);
            }
            Ok(Some(files::TreePage { entries, next }))
        })
    }

    fn read_file(
        &mut self,
        area: Resource<AreaGrant>,
        path: String,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, types::IoError> {
        self.in_area(&area, |s, bundle| {
            let area = s
                .area_for(&bundle, &[&path], false)?
                .ok_or_else(|| io_error(types::IoErrorKind::NotFound, format!("{path}: no such file")))?;
            let file = area.open_read(&path).map_err(path_error)?;
            let mut out = vec![0u8; (len as usize).min(IO_MAX)];
            let mut got = 0;
            while got < out.len() {
                match file.read_at(&mut out[got..], offset + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(std_io_error(&path, e)),
                }
            }
            out.truncate(got);
            Ok(out)
        })
    }

    fn write_file(
        &mut self,
        area: Resource<AreaGrant>,
        path: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<(), types::IoError> {
        self.in_area(&area, |s, bundle| {
            if data.len() > IO_MAX {
                return Err(io_error(
                    types::IoErrorKind::Other,
                    format!("{path}: more than 4 MiB in one write"),
                ));
            }
            let area = s.area_for(&bundle, &[&path], true)?.expect("made");
            let file = area.open_write(&path, false).map_err(path_error)?;
            let size = file.metadata().map_err(|e| std_io_error(&path, e))?.len();
            if offset > size {
                return Err(io_error(
                    types::IoErrorKind::Other,
                    format!("{path}: a write at {offset} is past its end ({size} bytes)"),
                ));
            }
            file.set_len(offset).map_err(|e| std_io_error(&path, e))?;
            file.write_all_at(&data, offset).map_err(|e| std_io_error(&path, e))
        })
    }
}
