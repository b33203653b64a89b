//! Files on demand through the component: cleanCache, the placeholder it
//! leaves, fetching it again, space optimisation, Download for gallery
//! originals, and the per-app request limit.

use std::time::Duration;

use cloudsync::identity::{RequestLimit, CLOUDFILE_SYNC};
use cloudsync::{
    codes, get_file_sync_state, get_file_sync_states, list_files, optimize_storage, start_optimize_space,
    stop_optimize_space, CloudFileCache, Download, DownloadErrorType, FileSyncState, GallerySync, Identity,
    OptimizeSpaceParam, OptimizeSpaceProgress, OptimizeState, State,
};
use cloudsync_tests::{
    accessed_days_ago, bytes, optimize_recorder, synced, system_app, until_terminal, Harness, Recorder, SyncRecorder,
    APP,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_cache_leaves_a_placeholder_that_comes_back_on_demand() {
    let h = Harness::with(|b| b.identity(system_app())).await;
    synced(&h, &[("doc.pdf", bytes(300_000, 1)), ("other.txt", b"x".to_vec())]).await;
    let cache = h.cache();
    let uri = h.uri("doc.pdf");
    cache.clean_cache(&uri).unwrap();
    assert!(!h.local("doc.pdf").exists(), "evicted");
    assert_eq!(h.cloud_snapshot()["doc.pdf"], bytes(300_000, 1), "the cloud holds it");
    cache.clean_cache(&uri).unwrap(); // idempotent
    let files = list_files(&h.rt, false).await.unwrap().files;
    let doc = files.iter().find(|f| f.uri == uri).unwrap();
    assert!(
        doc.cloud_only && doc.size == 300_000 && doc.state == FileSyncState::Completed,
        "{doc:?}"
    );
    assert_eq!(get_file_sync_state(&h.rt, &uri).unwrap(), FileSyncState::Completed);
    // A sync leaves it in the cloud and cloud-only.
    synced(&h, &[]).await;
    assert!(!h.local("doc.pdf").exists());
    assert!(h.cloud_snapshot().contains_key("doc.pdf"));
    // On demand: back, whole.
    let (rec, _) = Recorder::attach(&cache);
    cache.start(&uri).await.unwrap();
    assert_eq!(rec.terminal(&uri).await.state, State::Completed);
    assert_eq!(std::fs::read(h.local("doc.pdf")).unwrap(), bytes(300_000, 1));
    let files = list_files(&h.rt, false).await.unwrap().files;
    assert!(files.iter().all(|f| !f.cloud_only), "{files:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_cache_refuses_dirty_open_and_unknown_files_and_needs_the_system_api() {
    let h = Harness::with(|b| b.identity(system_app())).await;
    synced(&h, &[("a.txt", b"synced".to_vec()), ("b.txt", b"synced too".to_vec())]).await;
    let cache = h.cache();
    h.put_local("a.txt", b"edited, not synced yet");
    assert_eq!(
        cache.clean_cache(&h.uri("a.txt")).unwrap_err().code,
        codes::NO_SUCH_FILE
    );
    h.put_local("new.txt", b"never synced");
    assert_eq!(
        cache.clean_cache(&h.uri("new.txt")).unwrap_err().code,
        codes::NO_SUCH_FILE
    );
    assert_eq!(
        cache.clean_cache(&h.uri("gone.txt")).unwrap_err().code,
        codes::NO_SUCH_FILE
    );
    assert_eq!(
        cache
            .clean_cache("file://com.other/data/storage/el2/cloud/x")
            .unwrap_err()
            .code,
        codes::INVALID_URI
    );
    // Open in another process (being written): refused, kept.
    let b = h.local("b.txt");
    let mut writer = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec 3<>'{}'; exec sleep 10", b.display()))
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // (The engine's 13900010, "try again": cleanCache lists 13600001 for it.)
    let busy = cache.clean_cache(&h.uri("b.txt")).unwrap_err();
    assert_eq!(busy.code, codes::SERVICE_FAILED, "{busy}");
    assert!(
        busy.message.contains("try again") || busy.message.contains("being written") || busy.message.contains("open"),
        "{busy}"
    );
    assert!(b.exists());
    writer.kill().unwrap();
    writer.wait().unwrap();
    cache.clean_cache(&h.uri("b.txt")).unwrap();
    assert!(!b.exists());
    assert_eq!(std::fs::read(h.local("a.txt")).unwrap(), b"edited, not synced yet");

    // An ordinary app: 201 (no permission); with it but not a system app: 202.
    let h = Harness::new().await;
    let cache = h.cache();
    assert_eq!(
        cache.clean_cache(&h.uri("a.txt")).unwrap_err().code,
        codes::PERMISSION_DENIED
    );
    let mut id = Identity::app(APP);
    id.permissions = [CLOUDFILE_SYNC.to_string()].into();
    let h = Harness::with(|b| b.identity(id)).await;
    let cache = h.cache();
    assert_eq!(
        cache.clean_cache(&h.uri("a.txt")).unwrap_err().code,
        codes::NOT_SYSTEM_APP
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimize_evicts_the_least_recently_used_within_the_budget() {
    let h = Harness::with(|b| b.identity(system_app())).await;
    synced(
        &h,
        &[
            ("old.bin", bytes(40_000, 1)),
            ("older.bin", bytes(30_000, 2)),
            ("recent.bin", bytes(50_000, 3)),
        ],
    )
    .await;
    accessed_days_ago(&h.local("old.bin"), 40);
    accessed_days_ago(&h.local("older.bin"), 90);
    accessed_days_ago(&h.local("recent.bin"), 2);
    // Without a callback: 401 and nothing runs.
    let none: Option<fn(OptimizeSpaceProgress)> = None;
    let param = OptimizeSpaceParam {
        total_size: 20_000,
        aging_days: 30,
    };
    assert_eq!(start_optimize_space(&h.rt, param, none).await.unwrap_err().code, 401);
    let (cb, mut rx) = optimize_recorder();
    start_optimize_space(&h.rt, param, Some(cb)).await.unwrap();
    let events = until_terminal(&mut rx).await;
    assert_eq!(events.first().unwrap().state, OptimizeState::Running);
    assert_eq!(
        *events.last().unwrap(),
        OptimizeSpaceProgress {
            state: OptimizeState::Completed,
            progress: 100
        }
    );
    // The least recently used (90 days) freed the 20,000 bytes asked for.
    assert!(!h.local("older.bin").exists());
    assert!(h.local("old.bin").exists() && h.local("recent.bin").exists());
    // optimizeStorage: 30 days, no budget, the disk roomy (whatever this
    // machine's is); the recent file stays.
    h.device.set_free_space(Some(64 << 30));
    optimize_storage(&h.rt).await.unwrap();
    assert!(!h.local("old.bin").exists());
    assert!(h.local("recent.bin").exists());
    assert_eq!(h.cloud_snapshot().len(), 3, "every byte is still in the cloud");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_optimisation_is_22400006_and_stop_ends_with_stopped() {
    let h = Harness::with(|b| b.identity(system_app())).await;
    let files: Vec<(String, Vec<u8>)> = (0..400).map(|i| (format!("f{i:03}.bin"), bytes(1000, i))).collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, d)| (p.as_str(), d.clone())).collect();
    synced(&h, &refs).await;
    let param = OptimizeSpaceParam {
        total_size: u64::MAX,
        aging_days: 0,
    };
    // 400 evictions take several ticks (a durable removal each): the second
    // start and the stop land while the first runs.
    let (cb, mut rx) = optimize_recorder();
    start_optimize_space(&h.rt, param, Some(cb)).await.unwrap();
    let (cb2, _rx2) = optimize_recorder();
    let second = start_optimize_space(&h.rt, param, Some(cb2)).await;
    assert_eq!(second.unwrap_err().code, codes::ALREADY_RUNNING);
    stop_optimize_space(&h.rt).unwrap();
    let events = until_terminal(&mut rx).await;
    let last = *events.last().unwrap();
    assert_eq!(last.state, OptimizeState::Stopped, "{events:?}");
    assert!(last.progress < 100, "{events:?}");
    let left = (0..400).filter(|i| h.local(&format!("f{i:03}.bin")).exists()).count();
    assert!(left > 0, "stopped before the end");
    assert_eq!(h.cloud_snapshot().len(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_fetches_a_gallery_original_and_stop_always_cleans() {
    let h = Harness::with(|b| b.identity(system_app())).await;
    let original = bytes(2 << 20, 9);
    let in_cloud = h.cloud_dir.join("media/Photo/5/raw.dng");
    std::fs::create_dir_all(in_cloud.parent().unwrap()).unwrap();
    std::fs::write(&in_cloud, &original).unwrap();
    let gallery = GallerySync::new(&h.rt);
    let rec = SyncRecorder::default();
    gallery.on("progress", rec.callback()).unwrap();
    gallery.start().await.unwrap();
    rec.terminal(1).await;
    let local = h.rt.app_folder("media").join("Photo/5/raw.dng");
    assert!(!local.exists(), "only a placeholder after the sync");

    let uri = "file://media/Photo/5/raw.dng";
    let download = Download::new(&h.rt);
    let events = Recorder::default();
    download.on("progress", events.callback()).unwrap();
    // Stopped part way: the partial file goes, always.
    h.cloud.update(|f| f.bandwidth = Some(256 << 10));
    download.start(uri).await.unwrap();
    events
        .wait_for("some bytes", |ev| ev.iter().any(|p| p.processed > 0))
        .await;
    download.stop(uri).await.unwrap();
    assert_eq!(events.terminal(uri).await.state, State::Stopped);
    h.assert_nothing_partial_in("media");
    h.cloud.set(Default::default());
    let events = Recorder::default();
    download.on("progress", events.callback()).unwrap();
    download.start(uri).await.unwrap();
    assert_eq!(events.terminal(uri).await.state, State::Completed);
    assert_eq!(std::fs::read(&local).unwrap(), original);
    assert_eq!(get_file_sync_state(&h.rt, uri).unwrap(), FileSyncState::Completed);
    // The seed's form names an item by its id alone.
    std::fs::remove_file(&local).unwrap();
    let short = "file:///media/Photo/5";
    let events = Recorder::default();
    download.on("progress", events.callback()).unwrap();
    download.start(short).await.unwrap();
    assert_eq!(events.terminal(short).await.state, State::Completed);
    assert_eq!(std::fs::read(&local).unwrap(), original);
    let missing = download.start("file:///media/Photo/99").await.unwrap_err();
    assert_eq!(missing.code, codes::NO_SUCH_FILE, "{missing}");
    // Not a gallery item: 401 (Download.start lists no 14000002). An ordinary app: 201.
    assert_eq!(
        download.start(&h.uri("x")).await.unwrap_err().code,
        codes::INVALID_PARAMETER
    );
    let h = Harness::new().await;
    // The constructor never fails; its methods say 201.
    let download = Download::new(&h.rt);
    let refused = download.on("progress", |_| {}).unwrap_err();
    assert_eq!(refused.code, codes::PERMISSION_DENIED);
    assert_eq!(download.start(uri).await.unwrap_err().code, codes::PERMISSION_DENIED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_app_request_limit_fails_with_frequent_user_requests_until_the_window_passes() {
    let limit = RequestLimit::parse("2/s").unwrap();
    let h = Harness::with(|b| b.request_limit(APP, limit)).await;
    for i in 0..3 {
        h.put_cloud(&format!("{i}.txt"), b"x");
    }
    let cache: CloudFileCache = h.cache();
    let (rec, _) = Recorder::attach(&cache);
    for i in 0..3 {
        cache.start(&h.uri(&format!("{i}.txt"))).await.unwrap();
    }
    assert_eq!(rec.terminal(&h.uri("0.txt")).await.state, State::Completed);
    assert_eq!(rec.terminal(&h.uri("1.txt")).await.state, State::Completed);
    let third = rec.terminal(&h.uri("2.txt")).await;
    assert_eq!(
        (third.state, third.error),
        (State::Failed, DownloadErrorType::FrequentUserRequests)
    );
    assert!(h
        .rt
        .failure_reason(&h.uri("2.txt"))
        .unwrap()
        .contains("2 downloads per"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rec2 = Recorder::default();
    cache.on("progress", rec2.callback()).unwrap();
    cache.start(&h.uri("2.txt")).await.unwrap();
    assert_eq!(rec2.terminal(&h.uri("2.txt")).await.state, State::Completed);
}

/// An embedder's own policy: one download per run of the app, and the
/// app's cloud switch off.
struct Quota {
    caller: cloudsync::Identity,
    left: std::sync::atomic::AtomicU32,
}

impl cloudsync::identity::Hooks for Quota {
    fn caller(&self) -> &cloudsync::Identity {
        &self.caller
    }
    fn cloud_switch_on(&self, _bundle: &str) -> bool {
        false
    }
    fn admit_download(&self) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        match self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        {
            Ok(_) => Ok(()),
            Err(_) => Err("this app's quota is used up".into()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedders_hooks_decide_rates_and_switches() {
    let hooks = std::sync::Arc::new(Quota {
        caller: cloudsync::Identity::app(APP),
        left: 1.into(),
    });
    let h = Harness::with(|b| b.hooks(hooks)).await;
    h.put_cloud("a.txt", b"first");
    h.put_cloud("b.txt", b"second");
    let cache = h.cache();
    let (rec, _) = Recorder::attach(&cache);
    cache.start(&h.uri("a.txt")).await.unwrap();
    assert_eq!(rec.terminal(&h.uri("a.txt")).await.state, State::Completed);
    cache.start(&h.uri("b.txt")).await.unwrap();
    let refused = rec.terminal(&h.uri("b.txt")).await;
    assert_eq!(
        (refused.state, refused.error),
        (State::Failed, DownloadErrorType::FrequentUserRequests)
    );
    assert!(h
        .rt
        .failure_reason(&h.uri("b.txt"))
        .unwrap_or_default()
        .contains("quota"));
    let sync = cloudsync::FileSync::new(&h.rt);
    assert_eq!(sync.start().await.unwrap_err().code, codes::CLOUD_NOT_READY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_file_sync_state_says_downloading_while_a_cloud_file_cache_fetches_it() {
    let h = Harness::with(|b| b.identity(system_app())).await;
    h.put_cloud("big.bin", &bytes(4 << 20, 3));
    h.cloud.update(|f| f.read_delay = Some(Duration::from_millis(40)));
    let cache = h.cache();
    let (rec, _) = Recorder::attach(&cache);
    let uri = h.uri("big.bin");
    cache.start(&uri).await.unwrap();
    // Not at its name yet: the single form and the batch both say so.
    assert_eq!(get_file_sync_state(&h.rt, &uri).unwrap(), FileSyncState::Downloading);
    assert_eq!(
        get_file_sync_states(&h.rt, &[&uri]).await.unwrap(),
        vec![FileSyncState::Downloading]
    );
    h.cloud.set(Default::default());
    assert_eq!(rec.terminal(&uri).await.state, State::Completed);
    assert_ne!(get_file_sync_state(&h.rt, &uri).unwrap(), FileSyncState::Downloading);
}
