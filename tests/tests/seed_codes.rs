//! The seed's error tables and the paths other tests leave, through the
//! component: each method's failures carry a code its table lists (a broken
//! metadata store, URIs naming nothing, a gone cloud); `off` with and
//! without a callback on GallerySync, Download and FileSync; GallerySync's
//! refusals and stop; optimisation's FAILED and optimizeStorage's aging by
//! the space left; LOCAL_STORAGE_FULL in a run; and the single
//! getFileSyncState's 201 and 202.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cloudsync::api::listed::Method;
use cloudsync::cloud::{CloudErrorKind, Faults};
use cloudsync::device::DeviceState;
use cloudsync::identity::CLOUDFILE_SYNC;
use cloudsync::{
    codes, get_file_sync_state, get_file_sync_states, optimize_storage, start_optimize_space, stop_optimize_space,
    CloudFileCache, CloudSyncError, Download, ErrorType, FileSync, FileSyncState, GallerySync, Identity, MetaError,
    Metadata, OptimizeSpaceParam, OptimizeState, State, SyncState,
};
use cloudsync_tests::{
    accessed_days_ago, bytes, optimize_recorder, synced, system_app, until_terminal, Harness, Recorder, SyncRecorder,
    APP,
};

/// The root's store, broken on demand (a disk that fails under it).
struct Breakable {
    inner: Arc<dyn Metadata>,
    broken: Arc<AtomicBool>,
}

impl Breakable {
    fn check(&self) -> Result<(), MetaError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(MetaError::new("disk I/O error"));
        }
        Ok(())
    }
}

impl Metadata for Breakable {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, MetaError> {
        self.check()?;
        self.inner.get(key)
    }
    fn scan_page(&self, prefix: &str, after: Option<&str>, max: usize) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        self.check()?;
        self.inner.scan_page(prefix, after, max)
    }
    fn commit(&self, changes: &[(String, Option<Vec<u8>>)]) -> Result<(), MetaError> {
        self.check()?;
        self.inner.commit(changes)
    }
}

/// `result` failed with `want`, a code `method`'s table allows.
#[track_caller]
fn fails_with<T: std::fmt::Debug>(method: Method, result: Result<T, CloudSyncError>, want: u32) {
    let err = result.expect_err(method.name());
    assert_eq!(err.code, want, "{}: {err}", method.name());
    assert!(method.allows(err.code), "{} may not give {}", method.name(), err.code);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_metadata_store_fails_each_method_with_a_code_its_table_lists() {
    let broken = Arc::new(AtomicBool::new(false));
    let layer = broken.clone();
    let h = Harness::with(move |b| {
        b.identity(system_app())
            .wrap_metadata(move |inner| Arc::new(Breakable { inner, broken: layer }))
    })
    .await;
    synced(&h, &[("a.txt", b"hello".to_vec())]).await;
    h.put_cloud("b.txt", b"in the cloud only");
    let sync = FileSync::new(&h.rt);
    sync.on("progress", |_| {}).unwrap();
    let cache = CloudFileCache::new(&h.rt);
    cache.on("progress", |_| {}).unwrap();
    let before = h.local_snapshot();
    let state = get_file_sync_state(&h.rt, &h.uri("a.txt")).unwrap();
    broken.store(true, Ordering::SeqCst);

    let a = h.uri("a.txt");
    // The engine's 22400005, where the table lists 13600001 ...
    fails_with(
        Method::FileSyncStates,
        get_file_sync_states(&h.rt, &[&a]).await,
        codes::SERVICE_FAILED,
    );
    fails_with(Method::CleanCache, cache.clean_cache(&a), codes::SERVICE_FAILED);
    fails_with(
        Method::GetLastSyncTime,
        sync.get_last_sync_time().await,
        codes::SERVICE_FAILED,
    );
    fails_with(
        Method::CacheStart,
        cache.start(&h.uri("b.txt")).await,
        codes::SERVICE_FAILED,
    );
    fails_with(
        Method::OptimizeStorage,
        optimize_storage(&h.rt).await,
        codes::SERVICE_FAILED,
    );
    // ... and where it lists neither: the single form's "unknown error".
    fails_with(Method::FileSyncState, get_file_sync_state(&h.rt, &a), codes::UNKNOWN);
    // startOptimizeSpace lists 22400005 itself: a task refused before it runs.
    let (cb, mut rx) = optimize_recorder();
    let param = OptimizeSpaceParam {
        total_size: u64::MAX,
        aging_days: 0,
    };
    fails_with(
        Method::StartOptimizeSpace,
        start_optimize_space(&h.rt, param, Some(cb)).await,
        codes::INTERNAL,
    );
    // stopOptimizeSpace reads nothing: the 22400005 it lists cannot arise.
    stop_optimize_space(&h.rt).unwrap();
    assert!(rx.try_recv().is_err(), "nothing ran");

    // Nothing was lost or half written: mended, everything goes on.
    broken.store(false, Ordering::SeqCst);
    assert_eq!(h.local_snapshot(), before);
    assert_eq!(get_file_sync_state(&h.rt, &a).unwrap(), state);
    assert!(sync.get_last_sync_time().await.unwrap() > 0);
    h.assert_nothing_partial();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_stop_and_start_give_401_for_a_uri_naming_nothing_they_can_act_on() {
    let h = Harness::with(|b| b.identity(system_app())).await;
    let download = Download::new(&h.rt);
    download.on("progress", |_| {}).unwrap();
    // Not a gallery URI (14000002 elsewhere); no such item (13900002).
    fails_with(
        Method::DownloadStop,
        download.stop(&h.uri("x.txt")).await,
        codes::INVALID_PARAMETER,
    );
    fails_with(
        Method::DownloadStop,
        download.stop("file:///media/Photo/99").await,
        codes::INVALID_PARAMETER,
    );
    fails_with(
        Method::DownloadStart,
        download.start(&h.uri("x.txt")).await,
        codes::INVALID_PARAMETER,
    );
    // Download.start lists 13900002 itself.
    fails_with(
        Method::DownloadStart,
        download.start("file:///media/Photo/99").await,
        codes::NO_SUCH_FILE,
    );
    // CloudFileCache.stop lists both, and keeps them.
    let cache = CloudFileCache::new(&h.rt);
    fails_with(
        Method::CacheStop,
        cache.stop("file://other.app/x").await,
        codes::INVALID_URI,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_with_and_without_a_callback_on_file_sync_gallery_sync_and_download() {
    let h = Harness::with(|b| b.identity(system_app())).await;
    h.put_local("notes.txt", b"a note");

    // FileSync: off(callback) silences that one; off() every one.
    let sync = FileSync::new(&h.rt);
    let (a, b) = (SyncRecorder::default(), SyncRecorder::default());
    let id_a = sync.on("progress", a.callback()).unwrap();
    sync.on("progress", b.callback()).unwrap();
    sync.off("progress", Some(id_a)).unwrap();
    sync.start().await.unwrap();
    assert_eq!(b.terminal(1).await.state, SyncState::Completed);
    assert!(a.events().is_empty(), "{:?}", a.events());
    sync.off("progress", None).unwrap();
    sync.start().await.unwrap();
    let probe = SyncRecorder::default();
    let other = FileSync::new(&h.rt);
    other.on("progress", probe.callback()).unwrap();
    other.start().await.unwrap();
    probe.terminal(2).await; // both runs over (the first, then the queued one)
    assert_eq!(
        b.events().iter().filter(|p| p.is_terminal()).count(),
        1,
        "{:?}",
        b.events()
    );
    assert_eq!(sync.off("download", None).unwrap_err().code, codes::INVALID_PARAMETER);

    // GallerySync: the same, on the gallery's runs.
    let photo = h.cloud_dir.join("media/Photo/5/sea.jpg");
    std::fs::create_dir_all(photo.parent().unwrap()).unwrap();
    std::fs::write(&photo, bytes(64 << 10, 5)).unwrap();
    let gallery = GallerySync::new(&h.rt);
    let (a, b) = (SyncRecorder::default(), SyncRecorder::default());
    let id_a = gallery.on("progress", a.callback()).unwrap();
    gallery.on("progress", b.callback()).unwrap();
    gallery.off("progress", Some(id_a)).unwrap();
    gallery.start().await.unwrap();
    assert_eq!(b.terminal(1).await.state, SyncState::Completed);
    assert!(a.events().is_empty(), "{:?}", a.events());
    gallery.off("progress", None).unwrap();
    b.clear();
    gallery.start().await.unwrap();
    let probe = SyncRecorder::default();
    let other = GallerySync::new(&h.rt);
    other.on("progress", probe.callback()).unwrap();
    other.start().await.unwrap();
    probe.terminal(1).await;
    assert!(b.events().is_empty(), "{:?}", b.events());
    assert_eq!(gallery.off("bogus", None).unwrap_err().code, codes::INVALID_PARAMETER);

    // Download: the same, on a gallery original's events.
    let uri = "file:///media/Photo/5";
    let download = Download::new(&h.rt);
    let (a, b) = (Recorder::default(), Recorder::default());
    let id_a = download.on("progress", a.callback()).unwrap();
    download.on("progress", b.callback()).unwrap();
    download.off("progress", Some(id_a)).unwrap();
    download.start(uri).await.unwrap();
    assert_eq!(b.terminal(uri).await.state, State::Completed);
    assert!(a.events().is_empty(), "{:?}", a.events());
    download.off("progress", None).unwrap();
    let before = b.events().len();
    std::fs::remove_file(h.rt.app_folder("media").join("Photo/5/sea.jpg")).unwrap();
    download.start(uri).await.unwrap();
    let probe = Download::new(&h.rt);
    let seen = Recorder::default();
    probe.on("progress", seen.callback()).unwrap();
    probe.start(uri).await.unwrap();
    seen.terminal(uri).await;
    assert_eq!(b.events().len(), before, "{:?}", b.events());
    assert_eq!(download.off("bogus", None).unwrap_err().code, codes::INVALID_PARAMETER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gallery_sync_start_refuses_with_22400001_2_3_and_stop_ends_a_run_stopped() {
    let h = Harness::with(|b| b.identity(system_app())).await;
    let gallery = GallerySync::new(&h.rt);
    let rec = SyncRecorder::default();
    gallery.on("progress", rec.callback()).unwrap();
    h.device.set_network(false);
    fails_with(Method::GalleryStart, gallery.start().await, codes::NETWORK_UNAVAILABLE);
    h.device.set_network(true);
    h.cloud.update(|f| f.fail_calls = Some(CloudErrorKind::Unauthorized));
    fails_with(Method::GalleryStart, gallery.start().await, codes::CLOUD_NOT_READY);
    h.cloud.set(Faults::default());
    h.device.set_state(DeviceState {
        battery_percent: 9,
        charging: false,
        ..DeviceState::default()
    });
    fails_with(Method::GalleryStart, gallery.start().await, codes::LOW_BATTERY);
    h.device.set_state(DeviceState::default());
    assert!(rec.events().is_empty(), "refused runs send nothing: {:?}", rec.events());

    // A run whose photos are slow to read, stopped part way.
    for i in 0..3 {
        let photo = h.cloud_dir.join(format!("media/Photo/{i}/p.jpg"));
        std::fs::create_dir_all(photo.parent().unwrap()).unwrap();
        std::fs::write(&photo, bytes(32 << 10, i)).unwrap();
    }
    h.cloud.update(|f| f.read_delay = Some(Duration::from_secs(3)));
    gallery.start().await.unwrap();
    gallery.stop().await.unwrap();
    let end = rec.terminal(1).await;
    assert_eq!(end.state, SyncState::Stopped, "{:?}", rec.events());
    // Stopping what does not run is no error; the next run finishes.
    gallery.stop().await.unwrap();
    h.cloud.set(Faults::default());
    gallery.start().await.unwrap();
    assert_eq!(rec.terminal(2).await.state, SyncState::Completed);

    // The switch of the gallery off: 22400001.
    let h = Harness::with(|b| b.identity(system_app()).cloud_switch_off("media")).await;
    let gallery = GallerySync::new(&h.rt);
    fails_with(Method::GalleryStart, gallery.start().await, codes::CLOUD_NOT_READY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optimisation_whose_cloud_is_gone_fails_and_evicts_nothing() {
    let h = Harness::with(|b| b.identity(system_app())).await;
    synced(&h, &[("a.bin", bytes(10_000, 1)), ("b.bin", bytes(10_000, 2))]).await;
    accessed_days_ago(&h.local("a.bin"), 60);
    accessed_days_ago(&h.local("b.bin"), 60);
    h.cloud.update(|f| f.fail_calls = Some(CloudErrorKind::Network));
    let (cb, mut rx) = optimize_recorder();
    let param = OptimizeSpaceParam {
        total_size: u64::MAX,
        aging_days: 30,
    };
    start_optimize_space(&h.rt, param, Some(cb)).await.unwrap();
    assert_eq!(
        until_terminal(&mut rx).await.last().unwrap().state,
        OptimizeState::Failed
    );
    fails_with(
        Method::OptimizeStorage,
        optimize_storage(&h.rt).await,
        codes::SERVICE_FAILED,
    );
    assert!(
        h.local("a.bin").exists() && h.local("b.bin").exists(),
        "nothing evicted unchecked"
    );
    // The cloud back: the same pass evicts both.
    h.cloud.set(Faults::default());
    optimize_storage(&h.rt).await.unwrap();
    assert!(!h.local("a.bin").exists() && !h.local("b.bin").exists());
    assert_eq!(h.cloud_snapshot().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimize_storage_ages_harder_when_local_space_runs_low_and_waits_for_a_running_task() {
    let h = Harness::with(|b| b.identity(system_app())).await;
    synced(
        &h,
        &[
            ("month.bin", bytes(20_000, 1)),
            ("week.bin", bytes(20_000, 2)),
            ("today.bin", bytes(20_000, 3)),
        ],
    )
    .await;
    accessed_days_ago(&h.local("month.bin"), 45);
    accessed_days_ago(&h.local("week.bin"), 7);
    // Plenty of space: thirty days only.
    h.device.set_free_space(Some(64 << 30));
    optimize_storage(&h.rt).await.unwrap();
    assert!(!h.local("month.bin").exists());
    assert!(h.local("week.bin").exists() && h.local("today.bin").exists());
    // Under 2 GiB left: what was not used today goes too; today's stays.
    h.device.set_free_space(Some(1 << 30));
    optimize_storage(&h.rt).await.unwrap();
    assert!(!h.local("week.bin").exists());
    assert!(h.local("today.bin").exists());
    assert_eq!(h.cloud_snapshot().len(), 3, "every byte is still in the cloud");
    assert_eq!(
        get_file_sync_state(&h.rt, &h.uri("week.bin")).unwrap(),
        FileSyncState::Completed,
        "cloud-only"
    );

    // While a startOptimizeSpace task runs, optimizeStorage waits for it
    // (not 22400006, which its table does not list).
    let files: Vec<(String, Vec<u8>)> = (0..300).map(|i| (format!("f{i:03}.bin"), bytes(1000, i))).collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, d)| (p.as_str(), d.clone())).collect();
    synced(&h, &refs).await;
    h.device.set_free_space(None);
    let (cb, mut rx) = optimize_recorder();
    let param = OptimizeSpaceParam {
        total_size: u64::MAX,
        aging_days: 0,
    };
    start_optimize_space(&h.rt, param, Some(cb)).await.unwrap();
    optimize_storage(&h.rt).await.unwrap();
    assert_eq!(
        until_terminal(&mut rx).await.last().unwrap().state,
        OptimizeState::Completed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_that_cannot_fit_a_download_fails_with_local_storage_full_and_keeps_going() {
    let h = Harness::new().await;
    h.put_cloud("big.bin", &bytes(1 << 20, 1));
    h.put_cloud("small.txt", b"fits");
    h.device.set_free_space(Some(64 << 10));
    let sync = FileSync::new(&h.rt);
    let rec = SyncRecorder::default();
    sync.on("progress", rec.callback()).unwrap();
    sync.start().await.unwrap();
    let end = rec.terminal(1).await;
    assert_eq!(end.state, SyncState::DownloadFailed, "{:?}", rec.events());
    assert_eq!(end.error, ErrorType::LocalStorageFull);
    assert!(!h.local("big.bin").exists(), "no partial file at the name");
    assert_eq!(
        std::fs::read(h.local("small.txt")).unwrap(),
        b"fits",
        "what fits still came"
    );
    h.assert_nothing_partial();
    h.device.set_free_space(None);
    sync.start().await.unwrap();
    assert_eq!(rec.terminal(2).await.state, SyncState::Completed);
    assert_eq!(std::fs::read(h.local("big.bin")).unwrap(), bytes(1 << 20, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_single_get_file_sync_state_refuses_with_201_then_202() {
    let h = Harness::with(|b| b.identity(system_app())).await;
    synced(&h, &[("a.txt", b"x".to_vec())]).await;
    let uri = h.uri("a.txt");
    assert_eq!(get_file_sync_state(&h.rt, &uri).unwrap(), FileSyncState::UploadSuccess);
    for (permitted, system_app, want) in [
        (false, true, codes::PERMISSION_DENIED),
        (false, false, codes::PERMISSION_DENIED),
        (true, false, codes::NOT_SYSTEM_APP),
    ] {
        let mut id = Identity::app(APP);
        if permitted {
            id.permissions = [CLOUDFILE_SYNC.to_string()].into();
        }
        id.system_app = system_app;
        let h = Harness::with(move |b| b.identity(id)).await;
        h.put_local("a.txt", b"x");
        let uri = h.uri("a.txt");
        fails_with(Method::FileSyncState, get_file_sync_state(&h.rt, &uri), want);
        fails_with(Method::FileSyncStates, get_file_sync_states(&h.rt, &[&uri]).await, want);
    }
}
