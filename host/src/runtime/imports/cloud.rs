use tokio::io::AsyncReadExt;

use crate::cloud as cloud_backend;
use crate::cloud::{bytes_stream, CloudError, CloudErrorKind};
use crate::runtime::bindings::ohos::cloudsync::{cloud, types};
use wasmtime::component::Resource;

use crate::runtime::state::{
    precondition_of, wit_cloud_error, wit_cloud_error_kind, wit_object, BucketGrant, HostState, IO_MAX,
};

impl cloud::HostBucket for HostState {
    fn open(&mut self, bundle: String) -> Result<Resource<BucketGrant>, types::CloudError> {
        self.timed(|s| s.open_bucket(bundle))
    }

    fn drop(&mut self, bucket: Resource<BucketGrant>) -> wasmtime::Result<()> {
        self.drop_grant(bucket)
    }

    fn stat(&mut self, bucket: Resource<BucketGrant>, path: String) -> Result<types::Object, types::CloudError> {
        self.in_bucket(&bucket, |s, bundle| {
            let key = s.cloud_key(&bundle, &path)?;
            let object = s.block(s.b.cloud.stat(&key)).map_err(wit_cloud_error)?;
            Ok(wit_object(&bundle, object))
        })
    }

    fn ready(&mut self, bucket: Resource<BucketGrant>) -> Result<(), types::CloudError> {
        self.in_bucket(&bucket, |s, bundle| {
            if !s.b.hooks.cloud_switch_on(&bundle) {
                return Err(wit_cloud_error_kind(
                    types::CloudErrorKind::Unauthorized,
                    format!("the cloud switch of {bundle} is off"),
                ));
            }
            // One cheap request: an answer (even "no such object") means the
            // account works; a refusal means it does not.
            let probe = format!("{}/ready", crate::cloud::ENGINE_DIR);
            let root = s.block(s.b.cloud.check_root());
            match root.and_then(|_| s.block(s.b.cloud.stat(&probe))) {
                Ok(_) => Ok(()),
                Err(e) if e.kind == CloudErrorKind::NotFound => Ok(()),
                Err(e) if matches!(e.kind, CloudErrorKind::Network | CloudErrorKind::Throttled) => {
                    Err(wit_cloud_error_kind(types::CloudErrorKind::Network, e.message))
                }
                Err(e) => Err(wit_cloud_error_kind(types::CloudErrorKind::Unauthorized, e.message)),
            }
        })
    }

    fn list_page(
        &mut self,
        bucket: Resource<BucketGrant>,
        prefix: String,
        after: Option<String>,
        max: u32,
    ) -> Result<cloud::ListingPage, types::CloudError> {
        self.in_bucket(&bucket, |s, bundle| {
            let key = (bundle.clone(), prefix.clone());
            let mut cursor = match s.list_pages.resume(&key, after.as_deref()) {
                Some(cursor) => cursor,
                None => s.listing(&bundle, &prefix, after.as_deref())?,
            };
            let max = (max as usize).clamp(1, 65_536);
            let items = s.block(cursor.next_page(max)).map_err(wit_cloud_error)?;
            let mut page = cloud::ListingPage {
                objects: Vec::new(),
                skipped: Vec::new(),
                next: None,
            };
            let Some(last) = items.last().map(|i| i.key().to_string()) else {
                return Ok(page); // the end
            };
            let strip = |k: &str| k.strip_prefix(&format!("{bundle}/")).unwrap_or(k).to_string();
            for item in items {
                match item {
                    cloud_backend::Listed::Object(o) => page.objects.push(wit_object(&bundle, o)),
                    cloud_backend::Listed::Skipped { key, why } => page.skipped.push(cloud::Unlisted {
                        path: strip(&key),
                        reason: why,
                    }),
                }
            }
            let next = strip(&last);
            s.list_pages.keep(key, next.clone(), cursor);
            page.next = Some(next);
            Ok(page)
        })
    }

    fn delete(
        &mut self,
        bucket: Resource<BucketGrant>,
        path: String,
        if_match: Option<String>,
    ) -> Result<(), types::CloudError> {
        self.in_bucket(&bucket, |s, bundle| {
            let key = s.cloud_key(&bundle, &path)?;
            s.block(s.b.cloud.delete(&key, if_match.as_deref()))
                .map_err(wit_cloud_error)
        })
    }

    fn read(
        &mut self,
        bucket: Resource<BucketGrant>,
        path: String,
        offset: u64,
        len: u32,
        if_match: Option<String>,
    ) -> Result<Vec<u8>, types::CloudError> {
        self.in_bucket(&bucket, |s, bundle| {
            let key = s.cloud_key(&bundle, &path)?;
            let len = (len as usize).min(IO_MAX);
            let cloud = s.b.cloud.clone();
            s.block(async move {
                let (_, stream) = cloud.open(&key, offset, if_match.as_deref()).await?;
                let mut out = Vec::with_capacity(len);
                stream
                    .take(len as u64)
                    .read_to_end(&mut out)
                    .await
                    .map_err(|e| CloudError::new(CloudErrorKind::Network, e.to_string()))?;
                Ok(out)
            })
            .map_err(wit_cloud_error)
        })
    }

    fn begin_upload(
        &mut self,
        bucket: Resource<BucketGrant>,
        path: String,
        precondition: types::WritePrecondition,
    ) -> Result<u64, types::CloudError> {
        self.in_bucket(&bucket, |s, bundle| {
            let key = s.cloud_key(&bundle, &path)?;
            s.uploads.begin(bundle, key, precondition_of(precondition))
        })
    }
}

impl cloud::Host for HostState {
    fn upload_part(&mut self, id: u64, data: Vec<u8>) -> Result<(), types::CloudError> {
        self.uploads.append(id, data)
    }

    fn finish_upload(&mut self, id: u64) -> Result<types::Object, types::CloudError> {
        self.timed(|s| {
            let upload = s.uploads.take(id)?;
            let object = s
                .block(
                    s.b.cloud
                        .put(&upload.key, bytes_stream(upload.data), upload.precondition),
                )
                .map_err(wit_cloud_error)?;
            Ok(wit_object(&upload.bundle, object))
        })
    }

    fn abort_upload(&mut self, id: u64) {
        let _ = self.uploads.take(id);
    }
}
