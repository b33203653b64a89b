use wasmtime::component::Resource;

use crate::beneath::Stamp;
use crate::runtime::bindings::ohos::cloudsync::{transfers, types};
use crate::runtime::state::{
    path_error, precondition_of, transfer_error, wit_cloud_error_kind, wit_object, AreaGrant, BucketGrant, HostState,
};
use crate::transfers::{DownloadJob, Outcome, UploadJob};

impl transfers::Host for HostState {
    fn start_download(
        &mut self,
        area: Resource<AreaGrant>,
        bucket: Resource<BucketGrant>,
        r: transfers::DownloadRequest,
    ) -> Result<u64, types::CloudError> {
        self.in_bucket(&bucket, |s, bundle| {
            s.room_for_a_transfer()?;
            let key = s.cloud_key(&bundle, &r.cloud_path)?;
            let local_error = |e: types::IoError| wit_cloud_error_kind(types::CloudErrorKind::LocalIo, e.message);
            let area = s
                .granted_same(&area, &bundle)
                .and_then(|b| s.area_w(&b))
                .map_err(local_error)?;
            let local = area
                .open_write(&r.local_path, false)
                .map_err(|e| local_error(path_error(e)))?;
            Ok(s.transfers.start_download(DownloadJob {
                key,
                local,
                offset: r.offset,
                if_match: r.if_match,
                durable: r.durable,
            }))
        })
    }

    fn start_upload(
        &mut self,
        area: Resource<AreaGrant>,
        bucket: Resource<BucketGrant>,
        r: transfers::UploadRequest,
    ) -> Result<u64, types::CloudError> {
        self.in_bucket(&bucket, |s, bundle| {
            s.room_for_a_transfer()?;
            let key = s.cloud_key(&bundle, &r.cloud_path)?;
            let local_error = |e: types::IoError| wit_cloud_error_kind(types::CloudErrorKind::LocalIo, e.message);
            let area = s
                .granted_same(&area, &bundle)
                .and_then(|b| s.area(&b, false))
                .map_err(local_error)?
                .ok_or_else(|| {
                    wit_cloud_error_kind(
                        types::CloudErrorKind::LocalIo,
                        format!("{}: no such file", r.local_path),
                    )
                })?;
            // Opened here, beneath the area, never through a link: the
            // transfer reads this very file.
            let local = area.open_read(&r.local_path).map_err(|e| local_error(path_error(e)))?;
            let precondition = precondition_of(r.precondition);
            Ok(s.transfers.start_upload(UploadJob {
                key,
                local,
                precondition,
                expect: r.expect.map(|e| Stamp {
                    size: e.size,
                    mtime_ns: e.mtime_ns,
                    ctime_ns: e.ctime_ns,
                    inode: e.inode,
                }),
            }))
        })
    }

    fn poll(&mut self, id: u64) -> Option<transfers::TransferStatus> {
        let (bytes, outcome) = self.transfers.poll(id)?;
        let (mut uploaded, mut sha256) = (None, None);
        let state = match outcome {
            Outcome::Running => transfers::TransferState::Running,
            Outcome::Done => {
                uploaded = self.transfers.uploaded(id);
                sha256 = self.transfers.sha256(id);
                transfers::TransferState::Done
            }
            Outcome::Failed(e) => transfers::TransferState::Failed(transfer_error(e)),
        };
        let bundle_of = |key: &str| key.split('/').next().unwrap_or_default().to_string();
        let uploaded = uploaded.map(|o| {
            let bundle = bundle_of(&o.key);
            wit_object(&bundle, o)
        });
        Some(transfers::TransferStatus {
            bytes,
            state,
            uploaded,
            sha256,
        })
    }

    fn cancel(&mut self, id: u64) {
        self.timed(|s| s.transfers.cancel(id))
    }

    fn release(&mut self, id: u64) {
        self.timed(|s| s.transfers.release(id))
    }
}
