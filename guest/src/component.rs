//! The WIT layer: imports become a [`Platform`], exports call the engine.
//! Nothing here decides anything; it only converts.

use std::cell::RefCell;

use crate::engine::{self as e, ApiError, CacheId, Engine, Platform};

mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "cloudsync",
    });
}

use bindings::exports::ohos::cloudsync::{engine as engine_export, file_cache};
use bindings::ohos::cloudsync::{cloud, device, events, permission, storage, transfer, types};

struct Component;

thread_local! {
    static ENGINE: RefCell<Engine<WitPlatform>> = RefCell::new(Engine::new(WitPlatform));
}

fn with_engine<R>(f: impl FnOnce(&mut Engine<WitPlatform>) -> R) -> R {
    ENGINE.with(|engine| f(&mut engine.borrow_mut()))
}

impl engine_export::Guest for Component {
    fn init() -> Result<(), types::Error> {
        with_engine(|e| e.init()).map_err(error)
    }

    fn tick() -> bool {
        with_engine(|e| e.tick())
    }
}

impl file_cache::Guest for Component {
    type CloudFileCache = CacheHandle;
}

struct CacheHandle(CacheId);

impl file_cache::GuestCloudFileCache for CacheHandle {
    fn new() -> Self {
        CacheHandle(with_engine(|e| e.downloads.create_cache()))
    }

    fn on(&self, event: String, listener: u64) -> Result<(), types::Error> {
        with_engine(|e| e.downloads.on(self.0, &event, listener)).map_err(error)
    }

    fn off(&self, event: String, listener: Option<u64>) -> Result<(), types::Error> {
        with_engine(|e| e.downloads.off(self.0, &event, listener)).map_err(error)
    }

    fn start(&self, uri: String) -> Result<(), types::Error> {
        with_engine(|e| e.downloads.start(&e.platform, self.0, &uri)).map_err(error)
    }

    fn stop(&self, uri: String, need_clean: bool) -> Result<(), types::Error> {
        with_engine(|e| e.downloads.stop(&e.platform, self.0, &uri, need_clean)).map_err(error)
    }
}

impl Drop for CacheHandle {
    fn drop(&mut self) {
        with_engine(|e| e.downloads.drop_cache(&e.platform, self.0));
    }
}

bindings::export!(Component with_types_in bindings);

fn error(e: ApiError) -> types::Error {
    types::Error {
        code: e.code,
        message: e.message,
    }
}

/// The engine's platform, made of the component's imports.
struct WitPlatform;

impl Platform for WitPlatform {
    fn caller_bundle(&self) -> String {
        permission::caller_bundle()
    }

    fn device_status(&self) -> e::DeviceStatus {
        let s = device::status();
        e::DeviceStatus {
            network_available: s.network_available,
            wifi_available: s.wifi_available,
            battery_percent: s.battery_percent,
            charging: s.charging,
        }
    }

    fn now_ms(&self) -> u64 {
        device::now_ms()
    }

    fn device_name(&self) -> String {
        device::device_name()
    }

    fn stat(&self, bundle: &str, path: &str) -> Result<Option<e::FileStat>, e::IoError> {
        let stat = storage::stat(bundle, path).map_err(io_error)?;
        Ok(stat.map(|s| e::FileStat {
            size: s.size,
            mtime_ns: s.mtime_ns,
            inode: s.inode,
            is_dir: s.is_dir,
        }))
    }

    fn rename(&self, bundle: &str, from: &str, to: &str) -> Result<(), e::IoError> {
        storage::rename(bundle, from, to).map_err(io_error)
    }

    fn remove_file(&self, bundle: &str, path: &str) -> Result<(), e::IoError> {
        storage::remove_file(bundle, path).map_err(io_error)
    }

    fn create_dir_all(&self, bundle: &str, path: &str) -> Result<(), e::IoError> {
        storage::create_dir_all(bundle, path).map_err(io_error)
    }

    fn free_space(&self, bundle: &str) -> Result<u64, e::IoError> {
        storage::free_space(bundle).map_err(io_error)
    }

    fn hash_file(&self, bundle: &str, path: &str) -> Result<String, e::IoError> {
        storage::hash_file(bundle, path, "sha256").map_err(io_error)
    }

    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, e::IoError> {
        storage::meta_get(key).map_err(io_error)
    }

    fn meta_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, e::IoError> {
        storage::meta_scan(prefix).map_err(io_error)
    }

    fn meta_commit(&self, changes: Vec<(String, Option<Vec<u8>>)>) -> Result<(), e::IoError> {
        let changes: Vec<storage::MetaChange> = changes
            .into_iter()
            .map(|(key, value)| storage::MetaChange { key, value })
            .collect();
        storage::meta_commit(&changes).map_err(io_error)
    }

    fn cloud_stat(&self, bundle: &str, path: &str) -> Result<e::CloudObject, e::CloudError> {
        let o = cloud::stat(bundle, path).map_err(cloud_error)?;
        Ok(e::CloudObject {
            path: o.path,
            size: o.size,
            etag: o.etag,
            version: o.version,
            content_hash: o.content_hash,
            modified_ms: o.modified_ms,
        })
    }

    fn start_download(&self, r: e::DownloadRequest) -> Result<e::TransferId, e::CloudError> {
        transfer::start_download(&transfer::DownloadRequest {
            bundle: r.bundle,
            cloud_path: r.cloud_path,
            local_path: r.local_path,
            offset: r.offset,
            if_match: r.if_match,
        })
        .map_err(cloud_error)
    }

    fn poll_transfer(&self, id: e::TransferId) -> Option<e::TransferStatus> {
        transfer::poll(id).map(|s| e::TransferStatus {
            bytes: s.bytes,
            state: match s.state {
                transfer::TransferState::Running => e::TransferState::Running,
                transfer::TransferState::Done => e::TransferState::Done,
                transfer::TransferState::Failed(err) => e::TransferState::Failed(cloud_error(err)),
            },
        })
    }

    fn cancel_transfer(&self, id: e::TransferId) {
        transfer::cancel(id)
    }

    fn release_transfer(&self, id: e::TransferId) {
        transfer::release(id)
    }

    fn report_failure(&self, uri: &str, reason: &str) {
        events::failure_reason(uri, reason)
    }

    fn emit_download(&self, listener: e::ListenerId, p: &e::DownloadProgress) {
        events::emit_download(
            listener,
            &types::DownloadProgress {
                state: match p.state {
                    e::State::Running => types::State::Running,
                    e::State::Completed => types::State::Completed,
                    e::State::Failed => types::State::Failed,
                    e::State::Stopped => types::State::Stopped,
                },
                processed: p.processed,
                size: p.size,
                uri: p.uri.clone(),
                error: match p.error {
                    e::DownloadErrorType::NoError => types::DownloadErrorType::NoError,
                    e::DownloadErrorType::UnknownError => types::DownloadErrorType::UnknownError,
                    e::DownloadErrorType::NetworkUnavailable => types::DownloadErrorType::NetworkUnavailable,
                    e::DownloadErrorType::LocalStorageFull => types::DownloadErrorType::LocalStorageFull,
                    e::DownloadErrorType::ContentNotFound => types::DownloadErrorType::ContentNotFound,
                    e::DownloadErrorType::FrequentUserRequests => types::DownloadErrorType::FrequentUserRequests,
                },
            },
        )
    }
}

fn io_error(err: storage::IoError) -> e::IoError {
    use storage::IoErrorKind as K;
    let kind = match err.kind {
        K::NotFound => e::IoErrorKind::NotFound,
        K::AlreadyExists => e::IoErrorKind::AlreadyExists,
        K::PermissionDenied => e::IoErrorKind::PermissionDenied,
        K::NoSpace => e::IoErrorKind::NoSpace,
        K::Interrupted => e::IoErrorKind::Interrupted,
        K::WouldBlock => e::IoErrorKind::WouldBlock,
        K::NotSupported => e::IoErrorKind::NotSupported,
        K::EscapesSandbox => e::IoErrorKind::EscapesSandbox,
        K::NotAFile => e::IoErrorKind::NotAFile,
        K::Other => e::IoErrorKind::Other,
    };
    e::IoError::new(kind, err.message)
}

fn cloud_error(err: cloud::CloudError) -> e::CloudError {
    use cloud::CloudErrorKind as K;
    let kind = match err.kind {
        K::NotFound => e::CloudErrorKind::NotFound,
        K::Network => e::CloudErrorKind::Network,
        K::Throttled => e::CloudErrorKind::Throttled,
        K::StorageFull => e::CloudErrorKind::StorageFull,
        K::Unauthorized => e::CloudErrorKind::Unauthorized,
        K::PreconditionFailed => e::CloudErrorKind::PreconditionFailed,
        K::LocalNoSpace => e::CloudErrorKind::LocalNoSpace,
        K::LocalIo => e::CloudErrorKind::LocalIo,
        K::Other => e::CloudErrorKind::Other,
    };
    e::CloudError::new(kind, err.message)
}
