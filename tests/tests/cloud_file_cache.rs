//! CloudFileCache through the real component: every method, event sequence
//! and error code, with faults injected by the host.

use std::time::Duration;

use cloudsync::cloud::{CloudErrorKind, Faults};
use cloudsync::{codes, DownloadErrorType, DownloadProgress, State};
use cloudsync_tests::{bytes, list_files, Backend, Harness, Recorder, APP};

fn running(events: &[DownloadProgress]) -> Vec<u64> {
    events
        .iter()
        .filter(|p| p.state == State::Running)
        .map(|p| p.processed)
        .collect()
}

fn terminals(events: &[DownloadProgress]) -> usize {
    events.iter().filter(|p| p.is_terminal()).count()
}

/// Slow reads, so that a download is still running when the test acts.
fn slow() -> Faults {
    Faults {
        read_delay: Some(Duration::from_millis(40)),
        ..Faults::default()
    }
}

async fn downloads_a_file_with_rising_progress_then_one_completion(backend: Backend) {
    let h = Harness::on(backend).await;
    let content = bytes(6 << 20, 1);
    h.put_cloud("docs/report.pdf", &content);
    h.cloud.set(Faults {
        read_delay: Some(Duration::from_millis(5)),
        ..Faults::default()
    });
    let cache = h.cache();
    let (rec, _) = Recorder::attach(&cache);
    let uri = h.uri("docs/report.pdf");

    cache.start(&uri).await.unwrap();
    let last = rec.terminal(&uri).await;
    assert_eq!(
        (last.state, last.error, last.processed, last.size),
        (State::Completed, DownloadErrorType::NoError, 6 << 20, 6 << 20)
    );
    let events = rec.for_uri(&uri);
    let progress = running(&events);
    assert!(progress.len() >= 2, "several RUNNING events: {progress:?}");
    assert!(
        progress.windows(2).all(|w| w[0] < w[1]),
        "processed rises: {progress:?}"
    );
    assert!(events.iter().all(|p| p.size == 6 << 20));
    assert_eq!(terminals(&events), 1);
    assert_eq!(std::fs::read(h.local("docs/report.pdf")).unwrap(), content);
    h.assert_nothing_partial();
    // The cloud is untouched and other clients see the same plain file.
    assert_eq!(std::fs::read(h.cloud_file("docs/report.pdf")).unwrap(), content);
}

async fn names_with_spaces_and_unicode_round_trip(backend: Backend) {
    let h = Harness::on(backend).await;
    h.put_cloud("Fotos/été 2024/plage #1.jpg", b"sand");
    let cache = h.cache();
    let (rec, _) = Recorder::attach(&cache);
    let uri = h.uri("Fotos/été 2024/plage #1.jpg");
    assert!(uri.contains("%20") && uri.contains("%23"), "{uri}");
    cache.start(&uri).await.unwrap();
    assert_eq!(rec.terminal(&uri).await.state, State::Completed);
    assert_eq!(std::fs::read(h.local("Fotos/été 2024/plage #1.jpg")).unwrap(), b"sand");
}

async fn nothing_partial_is_ever_visible_under_the_files_name(backend: Backend) {
    let h = Harness::on(backend).await;
    h.put_cloud("big.bin", &bytes(4 << 20, 2));
    h.cloud.set(slow());
    let cache = h.cache();
    let (rec, _) = Recorder::attach(&cache);
    let uri = h.uri("big.bin");
    cache.start(&uri).await.unwrap();
    rec.wait_for("progress", |ev| running(ev).iter().any(|p| *p > 0)).await;
    assert!(!h.local("big.bin").exists(), "the partial file is not under its name");
    assert_eq!(h.staging().len(), 1, "it is in the staging area");
    h.cloud.set(Faults::default());
    assert_eq!(rec.terminal(&uri).await.state, State::Completed);
    h.assert_nothing_partial();
}

async fn a_second_start_of_a_running_uri_is_not_a_second_transfer(backend: Backend) {
    let h = Harness::on(backend).await;
    h.put_cloud("a.bin", &bytes(2 << 20, 3));
    h.cloud.set(slow());
    let cache = h.cache();
    let other = h.cache();
    let (rec, _) = Recorder::attach(&cache);
    let (rec2, _) = Recorder::attach(&other);
    let uri = h.uri("a.bin");
    cache.start(&uri).await.unwrap();
    cache.start(&uri).await.unwrap();
    other.start(&uri).await.unwrap();
    assert_eq!(rec.terminal(&uri).await.state, State::Completed);
    assert_eq!(rec2.terminal(&uri).await.state, State::Completed);
    assert_eq!(h.cloud.opens(), 1, "one transfer");
    assert_eq!(terminals(&rec.events()), 1);
    assert_eq!(terminals(&rec2.events()), 1);
}

async fn an_up_to_date_file_completes_without_a_transfer(backend: Backend) {
    let h = Harness::on(backend).await;
    h.put_cloud("a.txt", b"v1");
    let cache = h.cache();
    let (rec, _) = Recorder::attach(&cache);
    let uri = h.uri("a.txt");
    cache.start(&uri).await.unwrap();
    rec.terminal(&uri).await;
    cache.start(&uri).await.unwrap();
    rec.wait_for("two completions", |ev| terminals(ev) == 2).await;
    assert_eq!(h.cloud.opens(), 1);
    // A new cloud version is downloaded again and replaces our old copy.
    std::thread::sleep(Duration::from_millis(5));
    h.put_cloud("a.txt", b"version 2");
    cache.start(&uri).await.unwrap();
    rec.wait_for("three completions", |ev| terminals(ev) == 3).await;
    assert_eq!(std::fs::read(h.local("a.txt")).unwrap(), b"version 2");
    assert_eq!(h.local_files(), vec!["a.txt"]);
}

async fn on_and_off_with_and_without_a_callback_and_events_stay_with_their_instance(backend: Backend) {
    let h = Harness::on(backend).await;
    h.put_cloud("a", b"1");
    h.put_cloud("b", b"2");
    h.put_cloud("c", b"3");
    let cache = h.cache();
    let other = h.cache();
    let (first, first_id) = Recorder::attach(&cache);
    let (second, _) = Recorder::attach(&cache);
    let (stranger, _) = Recorder::attach(&other);

    cache.start(&h.uri("a")).await.unwrap();
    first.terminal(&h.uri("a")).await;
    second.terminal(&h.uri("a")).await;

    cache.off("progress", Some(first_id)).unwrap();
    cache.start(&h.uri("b")).await.unwrap();
    second.terminal(&h.uri("b")).await;
    assert!(
        first.for_uri(&h.uri("b")).is_empty(),
        "a removed listener hears nothing"
    );

    cache.off("progress", None).unwrap();
    let (probe, _) = Recorder::attach(&other);
    cache.start(&h.uri("c")).await.unwrap();
    other.start(&h.uri("a")).await.unwrap();
    probe.terminal(&h.uri("a")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        second.for_uri(&h.uri("c")).is_empty(),
        "off without a callback removes them all"
    );
    assert!(
        stranger.for_uri(&h.uri("c")).is_empty(),
        "events reach only the instance's listeners"
    );
    assert!(stranger.for_uri(&h.uri("b")).is_empty());
    assert!(h.local("c").exists());

    for bad in ["", "Progress", "batchDownload"] {
        assert_eq!(
            cache.on(bad, |_| {}).unwrap_err().code,
            codes::INVALID_PARAMETER,
            "{bad:?}"
        );
        assert_eq!(
            cache.off(bad, None).unwrap_err().code,
            codes::INVALID_PARAMETER,
            "{bad:?}"
        );
    }
}

async fn stop_deletes_the_partial_data_by_default(backend: Backend) {
    let h = Harness::on(backend).await;
    h.put_cloud("big.bin", &bytes(8 << 20, 4));
    h.cloud.set(slow());
    let cache = h.cache();
    let (rec, _) = Recorder::attach(&cache);
    let uri = h.uri("big.bin");
    cache.start(&uri).await.unwrap();
    rec.wait_for("progress", |ev| running(ev).iter().any(|p| *p > 0)).await;
    cache.stop_with(&uri, true).await.unwrap();
    let last = rec.terminal(&uri).await;
    assert_eq!(last.state, State::Stopped);
    assert!(last.processed > 0 && last.processed < last.size);
    h.assert_nothing_partial();
    assert!(!h.local("big.bin").exists());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(terminals(&rec.events()), 1, "exactly one terminal event");
    h.assert_nothing_partial();
}

async fn stop_keeping_the_partial_data_lets_the_next_start_resume(backend: Backend) {
    let h = Harness::on(backend).await;
    let content = bytes(8 << 20, 5);
    h.put_cloud("big.bin", &content);
    h.cloud.set(slow());
    let cache = h.cache();
    let (rec, _) = Recorder::attach(&cache);
    let uri = h.uri("big.bin");
    cache.start(&uri).await.unwrap();
    rec.wait_for("progress", |ev| running(ev).iter().any(|p| *p > 0)).await;
    cache.stop_with(&uri, false).await.unwrap();
    let stopped = rec.terminal(&uri).await;
    assert_eq!(stopped.state, State::Stopped);
    assert_eq!(h.staging().len(), 1, "the partial data is kept");

    h.cloud.set(Faults::default());
    let again = h.cache();
    let (rec2, _) = Recorder::attach(&again);
    again.start(&uri).await.unwrap();
    let last = rec2.terminal(&uri).await;
    assert_eq!(last.state, State::Completed);
    let first = &rec2.for_uri(&uri)[0];
    assert_eq!(first.state, State::Running);
    assert!(
        first.processed >= stopped.processed && first.processed > 0,
        "resumed at {} after stopping at {}",
        first.processed,
        stopped.processed
    );
    assert_eq!(
        h.cloud.last_open_offset(),
        Some(first.processed),
        "the cloud was read from there on"
    );
    assert_eq!(std::fs::read(h.local("big.bin")).unwrap(), content);
    h.assert_nothing_partial();
}

async fn stop_of_kept_data_cleans_it_and_stop_of_nothing_is_13900002(backend: Backend) {
    let h = Harness::on(backend).await;
    h.put_cloud("big.bin", &bytes(4 << 20, 6));
    h.cloud.set(slow());
    let cache = h.cache();
    let (rec, _) = Recorder::attach(&cache);
    let uri = h.uri("big.bin");
    cache.start(&uri).await.unwrap();
    rec.wait_for("progress", |ev| running(ev).iter().any(|p| *p > 0)).await;
    cache.stop_with(&uri, false).await.unwrap();
    rec.terminal(&uri).await;
    assert_eq!(h.staging().len(), 1);
    cache.stop_with(&uri, true).await.unwrap();
    h.assert_nothing_partial();
    assert_eq!(cache.stop_with(&uri, true).await.unwrap_err().code, codes::NO_SUCH_FILE);
    assert_eq!(
        cache.stop_with("", true).await.unwrap_err().code,
        codes::INVALID_PARAMETER
    );
    assert_eq!(
        cache
            .stop_with("file://other.app/data/storage/el2/cloud/x", true)
            .await
            .unwrap_err()
            .code,
        codes::INVALID_URI
    );
}

async fn start_errors_come_on_the_call_in_the_seeds_order_and_change_nothing(backend: Backend) {
    let h = Harness::on(backend).await;
    h.put_cloud("big.bin", &bytes(1 << 20, 7));
    std::fs::create_dir_all(h.local("")).unwrap();
    let outside = h.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"do not touch").unwrap();
    std::os::unix::fs::symlink(&outside, h.local("escape")).unwrap();
    h.put_cloud("escape/secret", b"cloud copy");
    let cache = h.cache();
    let (rec, _) = Recorder::attach(&cache);

    let cases = [
        (String::new(), codes::INVALID_PARAMETER),
        (
            "https://com.example.notes/data/storage/el2/cloud/big.bin".into(),
            codes::INVALID_URI,
        ),
        (
            "file://other.app/data/storage/el2/cloud/big.bin".into(),
            codes::INVALID_URI,
        ),
        (
            format!("file://{APP}/data/storage/el2/base/big.bin"),
            codes::INVALID_URI,
        ),
        (
            format!("file://{APP}/data/storage/el2/cloud/../cloud/big.bin"),
            codes::INVALID_URI,
        ),
        (
            format!("file://{APP}/data/storage/el2/cloud/a/%2E%2E/big.bin"),
            codes::INVALID_URI,
        ),
        (h.uri("escape/secret"), codes::INVALID_URI),
        (h.uri("missing.bin"), codes::NO_SUCH_FILE),
    ];
    for (uri, code) in &cases {
        let err = cache.start(uri).await.unwrap_err();
        assert_eq!(err.code, *code, "{uri:?}: {err}");
        assert!(!err.message.is_empty());
    }
    // Not enough space: 13900025, before anything is written.
    h.device.set_free_space(Some(1000));
    assert_eq!(cache.start(&h.uri("big.bin")).await.unwrap_err().code, codes::NO_SPACE);
    h.device.set_free_space(None);

    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"do not touch");
    assert_eq!(h.local_files(), vec!["escape"], "only the symlink the test made");
    h.assert_nothing_partial();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rec.events().is_empty(), "a refused start sends no event");
    assert_eq!(h.cloud.opens(), 0);
}

/// Each injected fault ends the download with the right FAILED event, and
/// leaves nothing partial, no file under the name, and the cloud intact.
async fn faults_end_in_failed_events_and_leave_nothing_behind(backend: Backend) {
    let size = 3 << 20;
    let cases: Vec<(&str, Faults, DownloadErrorType)> = vec![
        (
            "network drop mid-download",
            Faults {
                drop_at: Some(1 << 20),
                ..Faults::default()
            },
            DownloadErrorType::NetworkUnavailable,
        ),
        (
            "unreachable cloud",
            Faults {
                fail_calls: Some(CloudErrorKind::Network),
                ..Faults::default()
            },
            DownloadErrorType::NetworkUnavailable,
        ),
        (
            "throttling cloud",
            Faults {
                fail_open: Some(CloudErrorKind::Throttled),
                ..Faults::default()
            },
            DownloadErrorType::FrequentUserRequests,
        ),
        (
            "throttled stat",
            Faults {
                fail_calls: Some(CloudErrorKind::Throttled),
                ..Faults::default()
            },
            DownloadErrorType::FrequentUserRequests,
        ),
        (
            "object gone after stat",
            Faults {
                fail_open: Some(CloudErrorKind::NotFound),
                ..Faults::default()
            },
            DownloadErrorType::ContentNotFound,
        ),
        (
            "truncated content",
            Faults {
                truncate_at: Some(size as u64 / 2),
                ..Faults::default()
            },
            DownloadErrorType::UnknownError,
        ),
        (
            "corrupted content with a known hash",
            Faults {
                corrupt_at: Some(12345),
                advertise_sha256: true,
                ..Faults::default()
            },
            DownloadErrorType::UnknownError,
        ),
    ];
    for (what, faults, expected) in cases {
        let h = Harness::on(backend).await;
        let content = bytes(size, 8);
        h.put_cloud("f.bin", &content);
        h.put_cloud("other.txt", b"untouched");
        let cache = h.cache();
        let (rec, _) = Recorder::attach(&cache);
        cache.start(&h.uri("other.txt")).await.unwrap();
        rec.terminal(&h.uri("other.txt")).await;

        h.cloud.set(faults);
        let uri = h.uri("f.bin");
        cache
            .start(&uri)
            .await
            .unwrap_or_else(|e| panic!("{what}: start failed: {e}"));
        let last = rec.terminal(&uri).await;
        assert_eq!((last.state, last.error), (State::Failed, expected), "{what}");
        assert_eq!(terminals(&rec.for_uri(&uri)), 1, "{what}");
        let reason = h.rt.failure_reason(&uri).unwrap_or_default();
        assert!(!reason.is_empty(), "{what}: a reason for people is kept");
        assert!(!h.local("f.bin").exists(), "{what}: nothing under the name");
        h.assert_nothing_partial();
        assert_eq!(h.local_files(), vec!["other.txt"], "{what}: no other file touched");
        assert_eq!(std::fs::read(h.local("other.txt")).unwrap(), b"untouched");
        assert_eq!(
            std::fs::read(h.cloud_file("f.bin")).unwrap(),
            content,
            "{what}: the cloud is intact"
        );

        // The fault gone, the same download succeeds.
        h.cloud.set(Faults::default());
        cache.start(&uri).await.unwrap();
        rec.wait_for("a completion", |ev| {
            ev.iter().any(|p| p.uri == uri && p.state == State::Completed)
        })
        .await;
        assert_eq!(std::fs::read(h.local("f.bin")).unwrap(), content, "{what}");
    }
}

async fn a_full_disk_mid_download_is_local_storage_full(backend: Backend) {
    let h = Harness::on(backend).await;
    h.put_cloud("f.bin", &bytes(4 << 20, 9));
    h.device.set_write_quota(Some(1 << 20));
    let cache = h.cache();
    let (rec, _) = Recorder::attach(&cache);
    let uri = h.uri("f.bin");
    cache.start(&uri).await.unwrap();
    let last = rec.terminal(&uri).await;
    assert_eq!(
        (last.state, last.error),
        (State::Failed, DownloadErrorType::LocalStorageFull)
    );
    assert!(!h.local("f.bin").exists());
    h.assert_nothing_partial();
}

async fn no_network_on_the_device_fails_after_acceptance(backend: Backend) {
    let h = Harness::on(backend).await;
    h.put_cloud("f.bin", b"x");
    h.device.set_network(false);
    let cache = h.cache();
    let (rec, _) = Recorder::attach(&cache);
    let uri = h.uri("f.bin");
    cache.start(&uri).await.unwrap();
    let last = rec.terminal(&uri).await;
    assert_eq!(
        (last.state, last.error),
        (State::Failed, DownloadErrorType::NetworkUnavailable)
    );
    assert_eq!(h.cloud.opens(), 0);
}

async fn a_cloud_change_during_the_download_restarts_it_on_the_new_version(backend: Backend) {
    let h = Harness::on(backend).await;
    h.put_cloud("f.bin", &bytes(4 << 20, 10));
    h.cloud.set(slow());
    let cache = h.cache();
    let (rec, _) = Recorder::attach(&cache);
    let uri = h.uri("f.bin");
    cache.start(&uri).await.unwrap();
    rec.wait_for("progress", |ev| running(ev).iter().any(|p| *p > 0)).await;
    let newer = bytes(3 << 20, 11);
    h.put_cloud("f.bin", &newer);
    h.cloud.set(Faults::default());
    let last = rec.terminal(&uri).await;
    assert_eq!((last.state, last.size), (State::Completed, 3 << 20));
    assert_eq!(
        std::fs::read(h.local("f.bin")).unwrap(),
        newer,
        "never a mix of two versions"
    );
    h.assert_nothing_partial();
}

async fn a_local_edit_is_kept_as_a_conflict_copy_not_overwritten(backend: Backend) {
    let h = Harness::on(backend).await;
    h.put_cloud("notes/todo.txt", b"cloud version");
    std::fs::create_dir_all(h.local("notes")).unwrap();
    std::fs::write(h.local("notes/todo.txt"), b"my local edit").unwrap();
    let cache = h.cache();
    let (rec, _) = Recorder::attach(&cache);
    let uri = h.uri("notes/todo.txt");
    cache.start(&uri).await.unwrap();
    assert_eq!(rec.terminal(&uri).await.state, State::Completed);
    let files = h.local_files();
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(std::fs::read(h.local("notes/todo.txt")).unwrap(), b"cloud version");
    // Named by the device's name and a few characters of its id.
    let copy = files
        .iter()
        .find(|f| f.contains("(conflict simulated-"))
        .expect("a conflict copy");
    let tag = &copy["notes/todo (conflict simulated-".len()..][..4];
    assert!(tag.bytes().all(|b| b.is_ascii_hexdigit()), "{copy}");
    assert!(
        copy.starts_with("notes/todo (conflict simulated-") && copy.ends_with(").txt"),
        "{copy}"
    );
    assert_eq!(std::fs::read(h.local(copy)).unwrap(), b"my local edit");
}

async fn dropping_an_instance_stops_its_downloads_and_cleans_up(backend: Backend) {
    let h = Harness::on(backend).await;
    h.put_cloud("big.bin", &bytes(8 << 20, 12));
    h.cloud.set(slow());
    let cache = h.cache();
    let (rec, _) = Recorder::attach(&cache);
    let uri = h.uri("big.bin");
    cache.start(&uri).await.unwrap();
    rec.wait_for("progress", |ev| running(ev).iter().any(|p| *p > 0)).await;
    drop(cache);
    // The next call through the runtime runs after the drop was processed.
    let probe = h.cache();
    probe.off("progress", None).unwrap();
    h.assert_nothing_partial();
    assert!(!h.local("big.bin").exists());
}

async fn a_crash_mid_download_leaves_nothing_and_kept_data_survives_a_restart(backend: Backend) {
    let mut h = Harness::on(backend).await;
    let content = bytes(8 << 20, 13);
    h.put_cloud("lost.bin", &content);
    h.put_cloud("kept.bin", &content);
    h.cloud.set(slow());
    let cache = h.cache();
    let (rec, _) = Recorder::attach(&cache);
    let (lost, kept) = (h.uri("lost.bin"), h.uri("kept.bin"));
    cache.start(&kept).await.unwrap();
    rec.wait_for("progress", |ev| ev.iter().any(|p| p.uri == kept && p.processed > 0))
        .await;
    cache.stop_with(&kept, false).await.unwrap();
    cache.start(&lost).await.unwrap();
    rec.wait_for("progress", |ev| ev.iter().any(|p| p.uri == lost && p.processed > 0))
        .await;
    assert_eq!(h.staging().len(), 2);

    h.crash_and_restart().await;
    assert_eq!(
        cache.start(&lost).await.unwrap_err().code,
        codes::SERVICE_FAILED,
        "the old runtime is gone"
    );
    assert_eq!(
        h.staging().len(),
        1,
        "the crashed download's partial data is removed on restart"
    );
    assert!(!h.local("lost.bin").exists());

    h.cloud.set(Faults::default());
    let cache = h.cache();
    let (rec, _) = Recorder::attach(&cache);
    cache.start(&kept).await.unwrap();
    assert_eq!(rec.terminal(&kept).await.state, State::Completed);
    assert!(rec.for_uri(&kept)[0].processed > 0, "resumed after the restart");
    assert_eq!(std::fs::read(h.local("kept.bin")).unwrap(), content);
    h.assert_nothing_partial();
    let _ = list_files(h.dir.path());
}

// Every scenario runs against the local folder, WebDAV (Apache) and S3 (s3s-fs).
cloudsync_tests::on_every_backend!(
    faults_end_in_failed_events_and_leave_nothing_behind,
    downloads_a_file_with_rising_progress_then_one_completion,
    names_with_spaces_and_unicode_round_trip,
    nothing_partial_is_ever_visible_under_the_files_name,
    a_second_start_of_a_running_uri_is_not_a_second_transfer,
    an_up_to_date_file_completes_without_a_transfer,
    on_and_off_with_and_without_a_callback_and_events_stay_with_their_instance,
    stop_deletes_the_partial_data_by_default,
    stop_keeping_the_partial_data_lets_the_next_start_resume,
    stop_of_kept_data_cleans_it_and_stop_of_nothing_is_13900002,
    start_errors_come_on_the_call_in_the_seeds_order_and_change_nothing,
    a_full_disk_mid_download_is_local_storage_full,
    no_network_on_the_device_fails_after_acceptance,
    a_cloud_change_during_the_download_restarts_it_on_the_new_version,
    a_local_edit_is_kept_as_a_conflict_copy_not_overwritten,
    dropping_an_instance_stops_its_downloads_and_cleans_up,
    a_crash_mid_download_leaves_nothing_and_kept_data_survives_a_restart,
);
