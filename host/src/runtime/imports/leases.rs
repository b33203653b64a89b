use wasmtime::component::Resource;

use crate::beneath::Stamp;
use crate::runtime::bindings::ohos::cloudsync::{leases, types};
use crate::runtime::state::{io_error, path_error, AreaGrant, HostState};

impl leases::Host for HostState {
    fn swap_if_unchanged(
        &mut self,
        area: Resource<AreaGrant>,
        from: String,
        to: String,
        expect: types::LocalStamp,
        durable: bool,
    ) -> Result<leases::SwapOutcome, types::IoError> {
        self.in_area(&area, |s, bundle| {
            let area = s.area_for(&bundle, &[&from, &to], true)?.expect("made");
            let expect = Stamp {
                size: expect.size,
                mtime_ns: expect.mtime_ns,
                ctime_ns: expect.ctime_ns,
                inode: expect.inode,
            };
            match crate::storage::swap_if_unchanged(&area, &from, &to, expect, durable) {
                Ok(crate::storage::Swap::Clean) => Ok(leases::SwapOutcome::Clean),
                Ok(crate::storage::Swap::InUse) => Ok(leases::SwapOutcome::InUse),
                Ok(crate::storage::Swap::Changed) => Ok(leases::SwapOutcome::Changed),
                // A file system without renameat2's exchange.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Err(io_error(
                    types::IoErrorKind::NotSupported,
                    format!("{to}: no atomic swap here"),
                )),
                Err(e) => Err(path_error(e)),
            }
        })
    }

    fn evict(
        &mut self,
        area: Resource<AreaGrant>,
        path: String,
        expect: types::LocalStamp,
        aside: String,
    ) -> Result<(), types::IoError> {
        self.in_area(&area, |s, bundle| {
            let area = s
                .area_for(&bundle, &[&path, &aside], false)?
                .ok_or_else(|| io_error(types::IoErrorKind::NotFound, format!("{path}: no such file")))?;
            let expect = Stamp {
                size: expect.size,
                mtime_ns: expect.mtime_ns,
                ctime_ns: expect.ctime_ns,
                inode: expect.inode,
            };
            crate::storage::evict(&area, &path, expect, &aside).map_err(|e| match e {
                crate::storage::EvictError::InUse => {
                    io_error(types::IoErrorKind::WouldBlock, format!("{path} is open for writing"))
                }
                crate::storage::EvictError::Changed => io_error(types::IoErrorKind::Other, format!("{path} changed")),
                crate::storage::EvictError::Path(e) => path_error(e),
            })
        })
    }
}
