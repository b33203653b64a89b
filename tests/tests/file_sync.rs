//! FileSync / GallerySync / getFileSyncState through the component, on a
//! local folder, WebDAV and S3: two-way sync, conflicts, guards, per-file
//! states, device preconditions, permissions, and crashes mid-run.

use std::time::Duration;

use cloudsync::cloud::{CloudErrorKind, Faults};
use cloudsync::device::DeviceState;
use cloudsync::identity::{CLOUDFILE_SYNC, CLOUDFILE_SYNC_MANAGER};
use cloudsync::{
    codes, get_file_sync_state, get_file_sync_states, ErrorType, FileSync, FileSyncState, GallerySync, Identity,
    SyncProgress, SyncState,
};
use cloudsync_tests::{bytes, Backend, Harness, SyncRecorder, APP};

const COMPLETED: SyncProgress = SyncProgress {
    state: SyncState::Completed,
    error: ErrorType::NoError,
};

async fn file_sync(h: &Harness) -> (FileSync, SyncRecorder) {
    let sync = FileSync::new(&h.rt);
    let rec = SyncRecorder::default();
    sync.on("progress", rec.callback()).unwrap();
    (sync, rec)
}

/// Runs one sync to its end and returns its terminal event.
async fn run(sync: &FileSync, rec: &SyncRecorder) -> SyncProgress {
    rec.clear();
    sync.start().await.unwrap();
    rec.terminal(1).await
}

async fn two_way_sync_makes_both_sides_equal_and_keeps_plain_files(backend: Backend) {
    let h = Harness::on(backend).await;
    h.put_local("notes/today.txt", b"written on the device");
    h.put_local("photos/big.bin", &bytes(3 << 20, 1));
    h.put_cloud("from the cloud.md", b"# written elsewhere");
    let (sync, rec) = file_sync(&h).await;
    assert_eq!(sync.get_last_sync_time().await.unwrap(), 0, "never synced");
    assert_eq!(run(&sync, &rec).await, COMPLETED);
    // Pull first, then push, then one terminal event.
    let states: Vec<SyncState> = rec.events().iter().map(|p| p.state).collect();
    let first_up = states.iter().position(|s| *s == SyncState::Uploading).expect("a push");
    assert_eq!(states[0], SyncState::Downloading);
    assert!(
        states[..first_up].iter().all(|s| *s == SyncState::Downloading),
        "{states:?}"
    );
    assert_eq!(states.iter().filter(|s| **s == SyncState::Completed).count(), 1);
    // The cloud holds plain files at their relative paths.
    assert_eq!(h.local_snapshot(), h.cloud_snapshot());
    assert_eq!(h.cloud_snapshot()["notes/today.txt"], b"written on the device");
    let report = sync.report().await.unwrap();
    assert_eq!(
        (report.uploaded, report.downloaded, report.failed),
        (2, 1, 0),
        "{report:?}"
    );
    assert!(sync.get_last_sync_time().await.unwrap() > 0);

    // Edits, deletes and renames on each side.
    h.put_local("notes/today.txt", b"edited on the device");
    h.put_cloud("from the cloud.md", b"# edited elsewhere");
    std::fs::rename(h.local("photos/big.bin"), h.local("photos/renamed.bin")).unwrap();
    h.put_local("filler-1", b"1");
    h.put_local("filler-2", b"2");
    assert_eq!(run(&sync, &rec).await, COMPLETED);
    h.remove_cloud("filler-1");
    std::fs::remove_file(h.local("filler-2")).unwrap();
    assert_eq!(run(&sync, &rec).await, COMPLETED);
    let files = h.local_snapshot();
    assert_eq!(files, h.cloud_snapshot());
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(names, ["from the cloud.md", "notes/today.txt", "photos/renamed.bin"]);
    assert_eq!(files["from the cloud.md"], b"# edited elsewhere");
    assert_eq!(files["notes/today.txt"], b"edited on the device");
    h.assert_nothing_partial();
}

async fn a_resync_with_nothing_changed_moves_nothing(backend: Backend) {
    let h = Harness::on(backend).await;
    for i in 0..30 {
        h.put_local(&format!("f{i}.txt"), format!("file {i}").as_bytes());
    }
    let (sync, rec) = file_sync(&h).await;
    assert_eq!(run(&sync, &rec).await, COMPLETED, "{:?}", sync.report().await);
    let opens = h.cloud.opens();
    assert_eq!(run(&sync, &rec).await, COMPLETED, "{:?}", sync.report().await);
    let r = sync.report().await.unwrap();
    assert_eq!((r.planned, r.uploaded, r.downloaded), (0, 0, 0), "{r:?}");
    assert_eq!(h.cloud.opens(), opens, "no cloud content read");
}

async fn different_edits_on_both_sides_keep_both_versions(backend: Backend) {
    let h = Harness::on(backend).await;
    h.put_local("plan.txt", b"base");
    let (sync, rec) = file_sync(&h).await;
    assert_eq!(run(&sync, &rec).await, COMPLETED);
    h.put_local("plan.txt", b"the device's version");
    h.put_cloud("plan.txt", b"the cloud's version");
    assert_eq!(run(&sync, &rec).await, COMPLETED);
    let files = h.local_snapshot();
    assert_eq!(files, h.cloud_snapshot(), "the conflict copy is in the cloud too");
    assert_eq!(files["plan.txt"], b"the cloud's version");
    let (copy, data) = files
        .iter()
        .find(|(p, _)| p.starts_with("plan (conflict "))
        .expect("a conflict copy");
    assert_eq!(data, b"the device's version");
    assert!(copy.ends_with(").txt"), "{copy}");
    assert_eq!(sync.report().await.unwrap().conflicts, 1);
}

async fn a_crash_mid_sync_loses_nothing_and_the_next_run_finishes(backend: Backend) {
    let mut h = Harness::on(backend).await;
    for i in 0..8 {
        h.put_cloud(&format!("down/{i}.bin"), &bytes(256 << 10, i));
        h.put_local(&format!("up/{i}.bin"), &bytes(64 << 10, 100 + i));
    }
    // Slow reads (about 2 s a file), so the crash lands mid-run.
    h.cloud.update(|f| f.bandwidth = Some(128 << 10));
    let (sync, rec) = file_sync(&h).await;
    sync.start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    drop(sync);
    h.crash_and_restart().await;
    h.cloud.set(Faults::default());
    assert!(
        rec.events().iter().all(|p| p.state != SyncState::Completed),
        "it was mid-run"
    );
    let (sync, rec) = file_sync(&h).await;
    assert_eq!(run(&sync, &rec).await, COMPLETED);
    let files = h.local_snapshot();
    assert_eq!(files.len(), 16, "{:?}", files.keys());
    assert_eq!(files, h.cloud_snapshot());
    for i in 0..8u64 {
        assert_eq!(files[&format!("down/{i}.bin")], bytes(256 << 10, i));
        assert_eq!(files[&format!("up/{i}.bin")], bytes(64 << 10, 100 + i));
    }
    h.assert_nothing_partial();
}

cloudsync_tests::on_every_backend!(
    two_way_sync_makes_both_sides_equal_and_keeps_plain_files,
    a_resync_with_nothing_changed_moves_nothing,
    different_edits_on_both_sides_keep_both_versions,
    a_crash_mid_sync_loses_nothing_and_the_next_run_finishes,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_checks_network_then_cloud_then_battery() {
    let h = Harness::with(|b| b.cloud_switch_off("com.switched.off")).await;
    let (sync, _rec) = file_sync(&h).await;
    h.device.set_network(false);
    assert_eq!(sync.start().await.unwrap_err().code, codes::NETWORK_UNAVAILABLE);
    h.device.set_network(true);
    h.cloud.update(|f| f.fail_calls = Some(CloudErrorKind::Unauthorized));
    let e = sync.start().await.unwrap_err();
    assert_eq!(e.code, codes::CLOUD_NOT_READY, "{e}");
    h.cloud.set(Faults::default());
    h.device.set_state(DeviceState {
        battery_percent: 9,
        charging: false,
        ..DeviceState::default()
    });
    assert_eq!(sync.start().await.unwrap_err().code, codes::LOW_BATTERY);
    h.device.set_state(DeviceState::default());
    sync.start().await.unwrap();

    // The app's cloud switch, off: 22400001.
    let h = Harness::with(|b| b.cloud_switch_off(APP)).await;
    let (sync, _rec) = file_sync(&h).await;
    let e = sync.start().await.unwrap_err();
    assert_eq!(e.code, codes::CLOUD_NOT_READY);
    assert!(e.message.contains("switch"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mid_run_errors_end_the_run_with_the_seeds_states() {
    let h = Harness::new().await;
    h.put_local("a.txt", b"a");
    let (sync, rec) = file_sync(&h).await;
    h.cloud.update(|f| f.fail_put = Some(CloudErrorKind::StorageFull));
    assert_eq!(
        run(&sync, &rec).await,
        SyncProgress {
            state: SyncState::UploadFailed,
            error: ErrorType::CloudStorageFull
        }
    );
    let uri = h.uri("a.txt");
    let rt = Harness::with(|b| b).await;
    drop(rt);
    assert!(sync.report().await.unwrap().last_error.unwrap().contains("a.txt"));
    h.cloud.set(Faults::default());
    // Reads break while the cloud still answers: the file fails alone, the
    // push goes on, and the run says the network failed. (A pull that fails
    // as a whole skips the push: the engine's a_failed_pull_skips_the_push.)
    h.put_cloud("b.txt", b"b");
    h.cloud.update(|f| f.fail_open = Some(CloudErrorKind::Network));
    assert_eq!(
        run(&sync, &rec).await,
        SyncProgress {
            state: SyncState::DownloadFailed,
            error: ErrorType::NetworkUnavailable
        }
    );
    assert!(!h.local("b.txt").exists());
    assert_eq!(h.cloud_snapshot()["a.txt"], b"a", "the push went on");
    h.cloud.set(Faults::default());
    assert_eq!(run(&sync, &rec).await, COMPLETED);
    assert_eq!(h.local_snapshot(), h.cloud_snapshot());
    let _ = uri;
    h.assert_nothing_partial();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guards_refuse_mass_deletion_and_an_empty_side_until_confirmed() {
    let h = Harness::new().await;
    for i in 0..10 {
        h.put_local(&format!("f{i}"), b"x");
    }
    let (sync, rec) = file_sync(&h).await;
    assert_eq!(run(&sync, &rec).await, COMPLETED);
    for i in 0..6 {
        std::fs::remove_file(h.local(&format!("f{i}"))).unwrap();
    }
    // A refusal changes nothing and ends STOPPED, its reason in the report.
    assert_eq!(run(&sync, &rec).await.state, SyncState::Stopped);
    let refusal = sync.report().await.unwrap().refusal.unwrap();
    assert!(refusal.contains("6 of 10"), "{refusal}");
    assert_eq!(h.cloud_snapshot().len(), 10, "nothing deleted");
    // The whole folder gone (an unmounted disk): never "everything deleted",
    // and confirming deletions does not confirm that either.
    std::fs::remove_dir_all(h.rt.app_folder(APP)).unwrap();
    assert_eq!(run(&sync, &rec).await.state, SyncState::Stopped);
    assert!(sync.report().await.unwrap().refusal.unwrap().contains("looks empty"));
    rec.clear();
    sync.start_confirmed().await.unwrap();
    assert_eq!(rec.terminal(1).await.state, SyncState::Stopped);
    assert_eq!(h.cloud_snapshot().len(), 10);
    // Confirmed by the user, naming the case: the deletions go ahead.
    rec.clear();
    sync.start_with(cloudsync::Confirm {
        deletions: true,
        empty_device: true,
        empty_cloud: false,
    })
    .await
    .unwrap();
    assert_eq!(rec.terminal(1).await, COMPLETED);
    assert_eq!(h.cloud_snapshot().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_then_start_resumes_and_start_while_running_queues_one_more() {
    let h = Harness::new().await;
    for i in 0..6 {
        h.put_cloud(&format!("{i}.bin"), &bytes(512 << 10, i));
    }
    h.cloud.update(|f| f.bandwidth = Some(1 << 20));
    let (sync, rec) = file_sync(&h).await;
    sync.start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A listener that joins now gets the current state at once.
    let late = SyncRecorder::default();
    let other = FileSync::new(&h.rt);
    other.on("progress", late.callback()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(late.events().first().map(|p| p.state), Some(SyncState::Downloading));
    sync.stop().await.unwrap();
    assert_eq!(
        rec.terminal(1).await,
        SyncProgress {
            state: SyncState::Stopped,
            error: ErrorType::NoError
        }
    );
    h.assert_nothing_partial();
    h.cloud.set(Faults::default());
    rec.clear();
    sync.start().await.unwrap();
    sync.start().await.unwrap();
    assert_eq!(rec.terminal(1).await, COMPLETED);
    assert_eq!(rec.terminal(2).await, COMPLETED, "the queued run");
    assert_eq!(h.local_snapshot(), h.cloud_snapshot());
    assert_eq!(h.local_files().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sync_states_through_the_component() {
    let h = Harness::with(|b| b.identity(identity(&[CLOUDFILE_SYNC], true))).await;
    h.put_local("up.txt", b"up");
    h.put_cloud("down.txt", b"down");
    let (sync, rec) = file_sync(&h).await;
    assert_eq!(
        get_file_sync_state(&h.rt, &h.uri("up.txt")).unwrap(),
        FileSyncState::ToBeUploaded
    );
    assert_eq!(run(&sync, &rec).await, COMPLETED);
    let (up, down) = (h.uri("up.txt"), h.uri("down.txt"));
    assert_eq!(
        get_file_sync_states(&h.rt, &[&up, &down]).await.unwrap(),
        [FileSyncState::UploadSuccess, FileSyncState::Completed]
    );
    h.put_local("down.txt", b"edited");
    assert_eq!(get_file_sync_state(&h.rt, &down).unwrap(), FileSyncState::ToBeUploaded);
    let missing = h.uri("missing.txt");
    assert_eq!(
        get_file_sync_state(&h.rt, &missing).unwrap_err().code,
        codes::NO_SUCH_FILE
    );
    assert_eq!(
        get_file_sync_states(&h.rt, &[&up, &missing]).await.unwrap_err().code,
        codes::NO_SUCH_FILE,
        "one bad URI fails the batch"
    );
    let many: Vec<String> = (0..101).map(|i| h.uri(&format!("{i}"))).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        get_file_sync_states(&h.rt, &many).await.unwrap_err().code,
        codes::INVALID_PARAMETER
    );
    assert_eq!(
        get_file_sync_state(&h.rt, "file://com.other/data/storage/el2/cloud/x")
            .unwrap_err()
            .code,
        codes::INVALID_URI
    );
    // An upload that fails leaves UPLOAD_FAILURE.
    h.cloud.update(|f| f.fail_put = Some(CloudErrorKind::StorageFull));
    assert_eq!(run(&sync, &rec).await.state, SyncState::UploadFailed);
    assert_eq!(get_file_sync_state(&h.rt, &down).unwrap(), FileSyncState::UploadFailure);
}

fn identity(perms: &[&str], system: bool) -> Identity {
    let mut id = Identity::app(APP);
    id.permissions = perms.iter().map(|p| p.to_string()).collect();
    id.system_app = system;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_matrix_201_then_202() {
    for (perms, system, file_sync_named, other_bundle, gallery) in [
        (&[][..], false, Some(201), Some(201), Some(201)),
        (&[][..], true, Some(201), Some(201), Some(201)),
        (&[CLOUDFILE_SYNC][..], false, Some(202), Some(201), Some(202)),
        (&[CLOUDFILE_SYNC][..], true, None, Some(201), None),
        (
            &[CLOUDFILE_SYNC, CLOUDFILE_SYNC_MANAGER][..],
            false,
            Some(202),
            Some(202),
            Some(202),
        ),
        (&[CLOUDFILE_SYNC, CLOUDFILE_SYNC_MANAGER][..], true, None, None, None),
    ] {
        let h = Harness::with(|b| b.identity(identity(perms, system))).await;
        let case = format!("{perms:?} system={system}");
        let code = |r: Result<(), cloudsync::CloudSyncError>| r.err().map(|e| e.code);
        // The constructors never fail (but for a bad name, 401): what the
        // engine refuses comes from the first method, as the seed lists it.
        let on = |s: &dyn Fn() -> Result<u64, cloudsync::CloudSyncError>| code(s().map(|_| ()));
        let public = FileSync::new(&h.rt);
        assert_eq!(on(&|| public.on("progress", |_| {})), None, "{case}: public FileSync");
        let own = FileSync::for_bundle(&h.rt, APP).unwrap();
        assert_eq!(
            on(&|| own.on("progress", |_| {})),
            file_sync_named,
            "{case}: FileSync(own bundle)"
        );
        let other = FileSync::for_bundle(&h.rt, "com.other.app").unwrap();
        assert_eq!(
            code(other.start().await),
            other_bundle,
            "{case}: FileSync(other bundle).start"
        );
        assert_eq!(
            on(&|| other.on("progress", |_| {})),
            other_bundle,
            "{case}: FileSync(other bundle).on"
        );
        let gallery_sync = GallerySync::new(&h.rt);
        assert_eq!(
            on(&|| gallery_sync.on("progress", |_| {})),
            gallery,
            "{case}: GallerySync"
        );
        h.put_local("x", b"x");
        let states = get_file_sync_states(&h.rt, &[&h.uri("x")]).await.map(|_| ());
        assert_eq!(code(states), gallery, "{case}: getFileSyncState");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_syncs_another_bundles_folder() {
    let h = Harness::with(|b| b.identity(Identity::system("com.example.manager"))).await;
    h.put_local("shared.txt", b"the app's file");
    let sync = FileSync::for_bundle(&h.rt, APP).unwrap();
    let rec = SyncRecorder::default();
    sync.on("progress", rec.callback()).unwrap();
    sync.start().await.unwrap();
    assert_eq!(rec.terminal(1).await, COMPLETED);
    assert_eq!(h.cloud_snapshot()["shared.txt"], b"the app's file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_that_meets_thousands_of_bundles_still_syncs() {
    // Each bundle an instance meets is a grant the host holds: the engine
    // keeps the recent ones, so they never fill the host's table.
    let h = Harness::with(|b| b.identity(Identity::system("com.example.manager"))).await;
    let uris: Vec<String> = (0..1100)
        .map(|i| format!("file://com.example.app{i}/data/storage/el2/cloud/a.txt"))
        .collect();
    for chunk in uris.chunks(100) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let states = get_file_sync_states(&h.rt, &chunk).await;
        assert!(
            !matches!(&states, Err(e) if e.message.contains("at once")),
            "{states:?}"
        );
    }
    h.put_local("shared.txt", b"the app's file");
    let sync = FileSync::for_bundle(&h.rt, APP).unwrap();
    let rec = SyncRecorder::default();
    sync.on("progress", rec.callback()).unwrap();
    sync.start().await.unwrap();
    assert_eq!(rec.terminal(1).await, COMPLETED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gallery_sync_uploads_local_photos_and_shows_cloud_ones_as_thumbnails() {
    let h = Harness::with(|b| b.identity(identity(&[CLOUDFILE_SYNC], true))).await;
    let gallery_dir = h.rt.app_folder("media");
    std::fs::create_dir_all(gallery_dir.join("Photo/1")).unwrap();
    std::fs::write(gallery_dir.join("Photo/1/IMG_0001.jpg"), b"jpeg bytes").unwrap();
    // A photo taken on another device: only in the cloud.
    let photo = image::RgbImage::from_fn(1200, 900, |x, y| image::Rgb([(x / 5) as u8, (y / 4) as u8, 128]));
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(photo)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let in_cloud = h.cloud_dir.join("media/Photo/2/IMG 0002.png");
    std::fs::create_dir_all(in_cloud.parent().unwrap()).unwrap();
    std::fs::write(&in_cloud, &png).unwrap();

    let sync = GallerySync::new(&h.rt);
    let rec = SyncRecorder::default();
    sync.on("progress", rec.callback()).unwrap();
    sync.start().await.unwrap();
    assert_eq!(rec.terminal(1).await, COMPLETED);
    assert_eq!(
        std::fs::read(h.cloud_dir.join("media/Photo/1/IMG_0001.jpg")).unwrap(),
        b"jpeg bytes"
    );
    assert_eq!(
        get_file_sync_state(&h.rt, "file://media/Photo/1/IMG_0001.jpg").unwrap(),
        FileSyncState::UploadSuccess
    );
    // The cloud photo shows as a thumbnail; its original stays in the cloud.
    let uri = "file://media/Photo/2/IMG%200002.png";
    assert!(!gallery_dir.join("Photo/2/IMG 0002.png").exists());
    let thumb = h.rt.thumbnail_path(uri).unwrap();
    assert_eq!(h.rt.thumbnail_path("file://media/Photo/..%2F..%2F..%2Fx/y"), None);
    let small = image::open(&thumb).expect("a thumbnail");
    assert_eq!((small.width(), small.height()), (256, 192));
    assert_eq!(get_file_sync_state(&h.rt, uri).unwrap(), FileSyncState::Completed);
    // Nothing changed: nothing moves. Deleted in the cloud: the thumbnail goes.
    rec.clear();
    sync.start().await.unwrap();
    assert_eq!(rec.terminal(1).await, COMPLETED);
    assert_eq!(sync.report().await.unwrap().planned, 0);
    std::fs::remove_file(&in_cloud).unwrap();
    rec.clear();
    sync.start().await.unwrap();
    assert_eq!(rec.terminal(1).await, COMPLETED);
    assert!(!thumb.exists());
    assert_eq!(get_file_sync_state(&h.rt, uri).unwrap_err().code, codes::NO_SUCH_FILE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_file_whose_reads_keep_breaking_fails_alone_while_the_cloud_answers() {
    let h = Harness::new().await;
    // First in line, and more behind it than run at once.
    h.put_cloud("0big.bin", &bytes(1 << 20, 1));
    for i in 0..300 {
        h.put_cloud(&format!("small{i}.txt"), format!("small {i}").as_bytes());
    }
    h.put_local("mine.txt", b"goes up");
    // Every read of the big file breaks past 64 KiB; the cloud answers.
    h.cloud.update(|f| f.drop_at = Some(64 << 10));
    let (sync, rec) = file_sync(&h).await;
    let end = run(&sync, &rec).await;
    assert_eq!(end.state, SyncState::DownloadFailed, "{:?}", rec.events());
    assert_eq!(end.error, ErrorType::NetworkUnavailable);
    for i in 0..300 {
        assert_eq!(
            std::fs::read(h.local(&format!("small{i}.txt"))).unwrap(),
            format!("small {i}").as_bytes(),
            "the other files came"
        );
    }
    assert!(!h.local("0big.bin").exists(), "no partial file at its name");
    let report = sync.report().await.unwrap();
    assert_eq!(report.failed, 1, "{report:?}");
    h.assert_nothing_partial();
    // Mended: the next run brings it, and sends what the failed pull held back.
    h.cloud.set(Faults::default());
    assert_eq!(run(&sync, &rec).await, COMPLETED);
    assert_eq!(std::fs::read(h.local("0big.bin")).unwrap(), bytes(1 << 20, 1));
    assert_eq!(h.cloud_snapshot()["mine.txt"], b"goes up");
}
