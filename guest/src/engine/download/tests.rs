use super::*;
use crate::engine::fake::{uri, Fake, APP};
use crate::engine::{Engine, FileSyncState};

const L1: ListenerId = 11;
const L2: ListenerId = 22;

fn engine() -> Engine<Fake> {
    let mut e = Engine::new(Fake::new());
    e.init().unwrap();
    e
}

fn run_to_end(e: &mut Engine<Fake>) {
    for _ in 0..10_000 {
        if e.tick() == crate::engine::Tick::Idle {
            return;
        }
    }
    panic!("download did not finish");
}

fn states(events: &[(ListenerId, DownloadProgress)]) -> Vec<(State, u64, DownloadErrorType)> {
    events.iter().map(|(_, p)| (p.state, p.processed, p.error)).collect()
}

/// Nothing of a download is left: no staging file, no partial record.
fn assert_no_partial(e: &Engine<Fake>) {
    assert!(
        e.platform.local_paths().iter().all(|p| !p.starts_with(STAGING_DIR)),
        "{:?}",
        e.platform.local_paths()
    );
    assert!(e.platform.0.borrow().meta.keys().all(|k| !k.starts_with(PARTIAL)));
}

#[test]
fn downloads_with_rising_progress_and_one_completion() {
    let mut e = engine();
    e.platform.put_cloud("docs/a.txt", b"hello, cloud!");
    let c = e.downloads.create_cache();
    e.downloads.on(c, "progress", L1).unwrap();
    e.downloads.start(&e.platform, c, &uri("docs/a.txt")).unwrap();
    run_to_end(&mut e);

    let ev = states(&e.platform.take_events());
    assert_eq!(ev.first().unwrap().0, State::Running);
    assert_eq!(ev.last().unwrap(), &(State::Completed, 13, DownloadErrorType::NoError));
    assert_eq!(ev.iter().filter(|s| s.0 != State::Running).count(), 1);
    let running: Vec<u64> = ev.iter().filter(|s| s.0 == State::Running).map(|s| s.1).collect();
    assert!(running.windows(2).all(|w| w[0] < w[1]), "{running:?}");
    assert_eq!(e.platform.local("cloud/docs/a.txt").unwrap(), b"hello, cloud!");
    assert_no_partial(&e);
}

#[test]
fn nothing_partial_is_visible_under_the_name_while_running() {
    let mut e = engine();
    e.platform.put_cloud("a.bin", &[7; 100]);
    let c = e.downloads.create_cache();
    e.downloads.start(&e.platform, c, &uri("a.bin")).unwrap();
    while e.tick() != crate::engine::Tick::Idle {
        assert!(e.platform.local("cloud/a.bin").is_none());
    }
    assert_eq!(e.platform.local("cloud/a.bin").unwrap(), vec![7; 100]);
}

#[test]
fn a_second_start_is_not_a_second_transfer() {
    let mut e = engine();
    e.platform.put_cloud("a.bin", &[1; 40]);
    let c = e.downloads.create_cache();
    let d = e.downloads.create_cache();
    e.downloads.on(c, "progress", L1).unwrap();
    e.downloads.on(d, "progress", L2).unwrap();
    e.downloads.start(&e.platform, c, &uri("a.bin")).unwrap();
    e.tick();
    e.downloads.start(&e.platform, c, &uri("a.bin")).unwrap();
    e.downloads.start(&e.platform, d, &uri("a.bin")).unwrap();
    run_to_end(&mut e);
    assert_eq!(e.platform.transfers_started(), 1);
    let ev = e.platform.take_events();
    for l in [L1, L2] {
        let done: Vec<_> = ev
            .iter()
            .filter(|(id, p)| *id == l && p.state == State::Completed)
            .collect();
        assert_eq!(done.len(), 1, "listener {l}");
    }
}

#[test]
fn events_reach_only_the_instances_listeners_and_off_removes_them() {
    let mut e = engine();
    e.platform.put_cloud("a", b"x");
    e.platform.put_cloud("b", b"y");
    let c = e.downloads.create_cache();
    let d = e.downloads.create_cache();
    e.downloads.on(c, "progress", L1).unwrap();
    e.downloads.on(d, "progress", L2).unwrap();
    e.downloads.start(&e.platform, c, &uri("a")).unwrap();
    run_to_end(&mut e);
    assert!(e.platform.take_events().iter().all(|(l, _)| *l == L1));

    e.downloads.off(c, "progress", None).unwrap();
    e.downloads.on(c, "progress", L2 + 1).unwrap();
    e.downloads.off(c, "progress", Some(L2 + 1)).unwrap();
    e.downloads.start(&e.platform, c, &uri("b")).unwrap();
    run_to_end(&mut e);
    assert!(e.platform.take_events().is_empty());
}

#[test]
fn stop_cleans_by_default_and_keeps_for_resume_on_request() {
    let mut e = engine();
    let content: Vec<u8> = (0..=255).collect();
    e.platform.put_cloud("big", &content);
    let c = e.downloads.create_cache();
    e.downloads.on(c, "progress", L1).unwrap();

    e.downloads.start(&e.platform, c, &uri("big")).unwrap();
    for _ in 0..5 {
        e.tick();
    }
    e.downloads.stop(&e.platform, c, &uri("big"), true).unwrap();
    assert_eq!(e.platform.take_events().last().unwrap().1.state, State::Stopped);
    assert_eq!(e.tick(), crate::engine::Tick::Idle);
    assert_no_partial(&e);
    assert!(e.platform.local("cloud/big").is_none());

    e.downloads.start(&e.platform, c, &uri("big")).unwrap();
    for _ in 0..10 {
        e.tick();
    }
    e.downloads.stop(&e.platform, c, &uri("big"), false).unwrap();
    let stopped = e.platform.take_events().last().unwrap().1.clone();
    assert_eq!(stopped.state, State::Stopped);
    assert!(stopped.processed > 0);

    e.downloads.start(&e.platform, c, &uri("big")).unwrap();
    let first = e.platform.take_events()[0].1.clone();
    assert_eq!(
        (first.state, first.processed),
        (State::Running, stopped.processed),
        "resumes where it stopped"
    );
    let offset = e.platform.0.borrow().transfers.values().last().unwrap().request.offset;
    assert_eq!(offset, stopped.processed);
    run_to_end(&mut e);
    assert_eq!(e.platform.local("cloud/big").unwrap(), content);
    assert_no_partial(&e);
}

#[test]
fn kept_partial_data_is_dropped_when_the_cloud_file_changed() {
    let mut e = engine();
    e.platform.put_cloud("f", &[1; 64]);
    let c = e.downloads.create_cache();
    e.downloads.start(&e.platform, c, &uri("f")).unwrap();
    e.tick();
    e.tick();
    e.downloads.stop(&e.platform, c, &uri("f"), false).unwrap();
    e.platform.put_cloud("f", &[2; 64]);
    e.downloads.start(&e.platform, c, &uri("f")).unwrap();
    run_to_end(&mut e);
    assert_eq!(e.platform.local("cloud/f").unwrap(), vec![2; 64]);
    assert_no_partial(&e);
}

#[test]
fn stop_of_a_kept_partial_cleans_it_and_stop_of_nothing_is_13900002() {
    let mut e = engine();
    e.platform.put_cloud("f", &[1; 64]);
    let c = e.downloads.create_cache();
    e.downloads.start(&e.platform, c, &uri("f")).unwrap();
    e.tick();
    e.downloads.stop(&e.platform, c, &uri("f"), false).unwrap();
    e.downloads.stop(&e.platform, c, &uri("f"), true).unwrap();
    assert_no_partial(&e);
    let err = e.downloads.stop(&e.platform, c, &uri("f"), true).unwrap_err();
    assert_eq!(err.code, codes::NO_SUCH_FILE);
    // A file the device holds, with nothing running: stopped already.
    e.platform.put_cloud("g", &[2; 64]);
    e.downloads.start(&e.platform, c, &uri("g")).unwrap();
    for _ in 0..20 {
        e.tick();
    }
    assert_eq!(e.platform.local("cloud/g").unwrap(), vec![2; 64], "downloaded");
    e.downloads.stop(&e.platform, c, &uri("g"), true).unwrap();
    e.downloads.stop(&e.platform, c, &uri("g"), false).unwrap();
    assert_eq!(
        e.platform.local("cloud/g").unwrap(),
        vec![2; 64],
        "a stop of nothing touches nothing"
    );
}

#[test]
fn call_errors_follow_the_seed() {
    let mut e = engine();
    e.platform.put_cloud("big", &[0; 1000]);
    let c = e.downloads.create_cache();
    let code = |e: &mut Engine<Fake>, u: &str| e.downloads.start(&e.platform, c, u).unwrap_err().code;
    assert_eq!(code(&mut e, ""), codes::INVALID_PARAMETER);
    assert_eq!(
        code(&mut e, "file://other/data/storage/el2/cloud/big"),
        codes::INVALID_URI
    );
    assert_eq!(code(&mut e, &uri("missing")), codes::NO_SUCH_FILE);
    e.platform.0.borrow_mut().free = 999;
    assert_eq!(code(&mut e, &uri("big")), codes::NO_SPACE);
    e.platform.0.borrow_mut().escaping.insert("cloud/link/x".into());
    assert_eq!(code(&mut e, &uri("link/x")), codes::INVALID_URI);
    assert_eq!(
        e.downloads.on(c, "change", L1).unwrap_err().code,
        codes::INVALID_PARAMETER
    );
    assert_eq!(e.downloads.off(c, "", None).unwrap_err().code, codes::INVALID_PARAMETER);
    assert!(e.platform.take_events().is_empty());
    assert_eq!(e.platform.transfers_started(), 0);
    assert_no_partial(&e);
}

#[test]
fn failures_are_events_with_the_mapped_error_and_leave_nothing() {
    let cases = [
        (CloudErrorKind::Network, DownloadErrorType::NetworkUnavailable),
        (CloudErrorKind::LocalNoSpace, DownloadErrorType::LocalStorageFull),
        (CloudErrorKind::NotFound, DownloadErrorType::ContentNotFound),
        (CloudErrorKind::Throttled, DownloadErrorType::FrequentUserRequests),
        (CloudErrorKind::Other, DownloadErrorType::UnknownError),
    ];
    for (kind, expected) in cases {
        let mut e = engine();
        e.platform.put_cloud("f", &[3; 50]);
        e.platform.0.borrow_mut().fail_next = Some((20, CloudError::new(kind, "injected")));
        let c = e.downloads.create_cache();
        e.downloads.on(c, "progress", L1).unwrap();
        e.downloads.start(&e.platform, c, &uri("f")).unwrap();
        run_to_end(&mut e);
        let ev = e.platform.take_events();
        let last = &ev.last().unwrap().1;
        assert_eq!((last.state, last.error), (State::Failed, expected));
        assert!(last.processed >= 20);
        let failures = e.platform.0.borrow().failures.clone();
        assert_eq!(
            failures,
            vec![(uri("f"), "injected".to_string())],
            "the reason is reported"
        );
        assert!(e.platform.local("cloud/f").is_none());
        assert_no_partial(&e);
    }
}

#[test]
fn no_network_or_a_throttling_cloud_fail_after_acceptance() {
    let mut e = engine();
    e.platform.put_cloud("f", b"x");
    let c = e.downloads.create_cache();
    e.downloads.on(c, "progress", L1).unwrap();
    e.platform.0.borrow_mut().device.network_available = false;
    e.downloads.start(&e.platform, c, &uri("f")).unwrap();
    e.platform.0.borrow_mut().device.network_available = true;
    e.platform.0.borrow_mut().cloud_error = Some(CloudError::new(CloudErrorKind::Throttled, "429"));
    e.downloads.start(&e.platform, c, &uri("f")).unwrap();
    let ev = states(&e.platform.take_events());
    assert_eq!(
        ev,
        vec![
            (State::Failed, 0, DownloadErrorType::NetworkUnavailable),
            (State::Failed, 0, DownloadErrorType::FrequentUserRequests)
        ]
    );
}

#[test]
fn a_cloud_change_mid_download_restarts_from_the_new_version() {
    let mut e = engine();
    e.platform.put_cloud("f", &[1; 40]);
    let c = e.downloads.create_cache();
    e.downloads.on(c, "progress", L1).unwrap();
    e.downloads.start(&e.platform, c, &uri("f")).unwrap();
    e.tick();
    e.platform.put_cloud("f", &[9; 30]);
    run_to_end(&mut e);
    assert_eq!(e.platform.local("cloud/f").unwrap(), vec![9; 30]);
    let last = e.platform.take_events().last().unwrap().1.clone();
    assert_eq!((last.state, last.size), (State::Completed, 30));
}

#[test]
fn a_local_file_we_did_not_write_is_kept_as_a_conflict_copy() {
    let mut e = engine();
    e.platform.put_cloud("notes/todo.txt", b"cloud version");
    e.platform.put_local("cloud/notes/todo.txt", b"local edit");
    let c = e.downloads.create_cache();
    e.downloads.start(&e.platform, c, &uri("notes/todo.txt")).unwrap();
    run_to_end(&mut e);
    assert_eq!(e.platform.local("cloud/notes/todo.txt").unwrap(), b"cloud version");
    let copy = "cloud/notes/todo (conflict testdev 2023-11-14 221320).txt";
    assert_eq!(
        e.platform.local(copy).as_deref(),
        Some(&b"local edit"[..]),
        "{:?}",
        e.platform.local_paths()
    );
}

#[test]
fn an_identical_local_file_is_not_a_conflict_and_our_own_copy_is_replaced() {
    let mut e = engine();
    e.platform.put_cloud("a", b"same");
    e.platform.put_local("cloud/a", b"same");
    let c = e.downloads.create_cache();
    e.downloads.start(&e.platform, c, &uri("a")).unwrap();
    run_to_end(&mut e);
    e.platform.put_cloud("a", b"newer");
    e.downloads.start(&e.platform, c, &uri("a")).unwrap();
    run_to_end(&mut e);
    assert_eq!(e.platform.local_paths(), vec!["cloud/a".to_string()]);
    assert_eq!(e.platform.local("cloud/a").unwrap(), b"newer");
}

#[test]
fn an_up_to_date_file_completes_at_once() {
    let mut e = engine();
    e.platform.put_cloud("a", b"data");
    let c = e.downloads.create_cache();
    e.downloads.on(c, "progress", L1).unwrap();
    e.downloads.start(&e.platform, c, &uri("a")).unwrap();
    run_to_end(&mut e);
    e.platform.take_events();
    e.downloads.start(&e.platform, c, &uri("a")).unwrap();
    assert_eq!(e.tick(), crate::engine::Tick::Idle);
    assert_eq!(
        states(&e.platform.take_events()),
        vec![(State::Completed, 4, DownloadErrorType::NoError)]
    );
    assert_eq!(e.platform.transfers_started(), 1);
}

#[test]
fn recovery_removes_unkept_partials_and_orphans_and_keeps_kept_ones() {
    let e = engine();
    let kept = PartialRecord {
        temp: ".staging/1.part".into(),
        etag: "e".into(),
        size: 9,
        kept: true,
    };
    let lost = PartialRecord {
        temp: ".staging/2.part".into(),
        etag: "e".into(),
        size: 9,
        kept: false,
    };
    e.platform.put_local(".staging/1.part", b"abc");
    e.platform.put_local(".staging/2.part", b"abc");
    // A temp no record names (a power cut before its record was written).
    e.platform.put_local(".staging/orphan.part", b"abc");
    e.platform
        .meta_commit(vec![
            (format!("{PARTIAL}/{APP}/k"), Some(records::encode(&kept))),
            (format!("{PARTIAL}/{APP}/l"), Some(records::encode(&lost))),
        ])
        .unwrap();
    let mut e2 = Engine::new(e.platform);
    e2.init().unwrap();
    assert_eq!(e2.platform.local_paths(), vec![".staging/1.part".to_string()]);
    assert_eq!(e2.platform.0.borrow().meta.len(), 1);
}

#[test]
fn dropping_an_instance_cancels_and_cleans_its_downloads() {
    let mut e = engine();
    e.platform.put_cloud("a", &[0; 100]);
    let c = e.downloads.create_cache();
    e.downloads.start(&e.platform, c, &uri("a")).unwrap();
    e.tick();
    e.downloads.drop_cache(&e.platform, c);
    assert_eq!(e.tick(), crate::engine::Tick::Idle);
    assert_no_partial(&e);
}

#[test]
fn a_directory_in_the_way_is_refused() {
    let mut e = engine();
    e.platform.put_cloud("d", b"x");
    e.platform.0.borrow_mut().dirs.insert((APP.into(), "cloud/d".into()));
    let c = e.downloads.create_cache();
    assert_eq!(
        e.downloads.start(&e.platform, c, &uri("d")).unwrap_err().code,
        codes::INVALID_URI
    );
}

#[test]
fn utc_formatting() {
    assert_eq!(crate::engine::place::format_utc(0), "1970-01-01 000000");
    assert_eq!(crate::engine::place::format_utc(1_700_000_000_000), "2023-11-14 221320");
    assert_eq!(crate::engine::place::format_utc(951_782_400_000), "2000-02-29 000000");
}

#[test]
fn a_file_being_fetched_reads_downloading_then_its_state_after() {
    let mut e = engine();
    e.platform.put_cloud("new.bin", &[5; 3000]);
    e.platform.put_cloud("update.bin", &[6; 3000]);
    // One already here, in sync; one only in the cloud.
    e.platform.put_local("cloud/update.bin", &[6; 3000]);
    let c = e.downloads.create_cache();
    for name in ["new.bin", "update.bin"] {
        e.downloads.start(&e.platform, c, &uri(name)).unwrap();
        assert_eq!(
            e.file_sync_state(&uri(name)).unwrap(),
            FileSyncState::Downloading,
            "{name}"
        );
    }
    let batch = e.file_sync_states(&[uri("new.bin"), uri("update.bin")]).unwrap();
    assert_eq!(batch, vec![FileSyncState::Downloading; 2]);
    run_to_end(&mut e);
    assert_ne!(e.file_sync_state(&uri("new.bin")).unwrap(), FileSyncState::Downloading);
    // Stopped, it reads as it is again.
    e.downloads.start(&e.platform, c, &uri("update.bin")).unwrap();
    e.downloads.stop(&e.platform, c, &uri("update.bin"), true).unwrap();
    assert_ne!(
        e.file_sync_state(&uri("update.bin")).unwrap(),
        FileSyncState::Downloading
    );
}
