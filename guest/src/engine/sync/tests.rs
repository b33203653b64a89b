//! The sync engine on the in-memory platform: golden scenarios through the
//! real executor, then a seeded randomized check in the spirit of Dropbox's
//! CanopyCheck and Trinity — random edits on both sides interleaved with
//! syncs, stops and crashes (a power cut at a random write, the instance
//! thrown away) — after which, with no more edits, the trees converge and
//! no version a user wrote is lost.

use std::collections::BTreeMap;

use super::*;
use crate::engine::access::{CLOUDFILE_SYNC, CLOUDFILE_SYNC_MANAGER};
use crate::engine::fake::{uri, Fake, Keep, APP};
use crate::engine::{CloudError, Engine, ErrorType, SyncAction, SyncState, GALLERY_BUNDLE};

const L: ListenerId = 7;

fn engine() -> Engine<Fake> {
    let mut e = Engine::new(Fake::new());
    e.init().unwrap();
    e
}

fn file_sync(e: &mut Engine<Fake>) -> SyncId {
    let id = e.syncs.create_file_sync(&e.platform, None).unwrap();
    e.syncs.on(&e.platform, id, "progress", L).unwrap();
    id
}

/// Ticks until nothing runs; returns the sync events sent meanwhile.
fn drain(e: &mut Engine<Fake>) -> Vec<SyncProgress> {
    for _ in 0..100_000 {
        if e.tick() == Tick::Idle {
            break;
        }
    }
    e.platform.take_sync_events().into_iter().map(|(_, p)| p).collect()
}

fn sync(e: &mut Engine<Fake>, id: SyncId) -> Vec<SyncProgress> {
    e.syncs.start(&e.platform, id, false).unwrap();
    drain(e)
}

fn terminal(events: &[SyncProgress]) -> SyncProgress {
    *events.last().expect("a terminal event")
}

fn stopped() -> SyncProgress {
    SyncProgress {
        state: SyncState::Stopped,
        error: ErrorType::NoError,
    }
}

fn completed() -> SyncProgress {
    SyncProgress {
        state: SyncState::Completed,
        error: ErrorType::NoError,
    }
}

fn local(e: &Engine<Fake>, path: &str) -> Option<Vec<u8>> {
    e.platform.local(&format!("cloud/{path}"))
}

fn put_local(e: &Engine<Fake>, path: &str, data: &[u8]) {
    e.platform.put_local(&format!("cloud/{path}"), data);
}

fn app_files(e: &Engine<Fake>) -> BTreeMap<String, Vec<u8>> {
    e.platform.app_files()
}

fn cloud_files(e: &Engine<Fake>) -> BTreeMap<String, Vec<u8>> {
    e.platform.cloud_files()
}

#[test]
fn first_sync_makes_both_sides_equal_with_pull_then_push_events() {
    let mut e = engine();
    put_local(&e, "notes/a.txt", b"local a");
    e.platform.put_cloud("b.txt", b"cloud b");
    let id = file_sync(&mut e);
    let events = sync(&mut e, id);
    assert_eq!(app_files(&e), cloud_files(&e));
    assert_eq!(local(&e, "b.txt").unwrap(), b"cloud b");
    assert_eq!(e.platform.cloud("notes/a.txt").unwrap(), b"local a");
    let states: Vec<SyncState> = events.iter().map(|p| p.state).collect();
    let first_up = states.iter().position(|s| *s == SyncState::Uploading).unwrap();
    assert!(
        states[..first_up].iter().all(|s| *s == SyncState::Downloading),
        "{states:?}"
    );
    assert_eq!(states[0], SyncState::Downloading);
    assert_eq!(terminal(&events), completed());
    assert_eq!(events.iter().filter(|p| p.state == SyncState::Completed).count(), 1);
    let r = e.syncs.report(&e.platform, id).unwrap();
    assert_eq!((r.uploaded, r.downloaded, r.failed, r.running), (1, 1, 0, false));
    assert!(e.syncs.last_sync_time(&e.platform, id).unwrap() > 0);
}

#[test]
fn a_resync_with_nothing_changed_moves_and_reads_nothing() {
    let mut e = engine();
    for i in 0..20 {
        put_local(&e, &format!("f{i}"), format!("content {i}").as_bytes());
    }
    let id = file_sync(&mut e);
    sync(&mut e, id);
    // The records are no longer "racily clean" a little later.
    e.platform.0.borrow_mut().now_ms += 10_000;
    sync(&mut e, id);
    let (transfers, reads) = {
        let s = e.platform.0.borrow();
        (s.uploads.len() + s.transfers.len(), s.reads)
    };
    let events = sync(&mut e, id);
    let s = e.platform.0.borrow();
    assert_eq!(s.uploads.len() + s.transfers.len(), transfers, "no transfer");
    assert_eq!(s.reads, reads, "no file content read");
    assert_eq!(terminal(&events), completed());
}

/// Content reads and transfers of a second sync right after a first one
/// that brought 20 files down.
fn second_sync_after_download(fine: bool) -> (u64, usize) {
    let mut e = engine();
    {
        let mut s = e.platform.0.borrow_mut();
        s.fine_stamps = fine;
        // The clock right after the files' stamps: records look recent.
        s.now_ms = 1;
    }
    for i in 0..20 {
        e.platform
            .put_cloud(&format!("f{i}"), format!("content {i}").as_bytes());
    }
    let id = file_sync(&mut e);
    sync(&mut e, id);
    let before = {
        let s = e.platform.0.borrow();
        (s.reads, s.uploads.len() + s.transfers.len())
    };
    assert_eq!(terminal(&sync(&mut e, id)), completed());
    let s = e.platform.0.borrow();
    (s.reads - before.0, s.uploads.len() + s.transfers.len() - before.1)
}

#[test]
fn with_fine_stamps_the_sync_right_after_a_download_reads_nothing() {
    assert_eq!(second_sync_after_download(true), (0, 0));
    // On a coarse clock a file placed in the same tick as an edit keeps
    // every stamp: each is hashed once.
    assert_eq!(second_sync_after_download(false), (20, 0));
}

#[test]
fn a_write_landing_between_a_placement_and_its_stat_goes_up() {
    let mut e = engine();
    e.platform.0.borrow_mut().fine_stamps = true;
    e.platform.put_cloud("a.txt", b"cloud v1");
    e.platform.0.borrow_mut().after_rename = Some(("cloud/a.txt".into(), b"users v2".to_vec()));
    let id = file_sync(&mut e);
    sync(&mut e, id);
    assert_eq!(
        local(&e, "a.txt").as_deref(),
        Some(&b"users v2"[..]),
        "the user's write"
    );
    assert_eq!(terminal(&sync(&mut e, id)), completed());
    assert_eq!(cloud_files(&e).get("a.txt").map(Vec::as_slice), Some(&b"users v2"[..]));
}

#[test]
fn a_file_held_open_elsewhere_is_kept_when_the_cloud_replaces_it() {
    let mut e = engine();
    put_local(&e, "f.txt", b"v1");
    let id = file_sync(&mut e);
    sync(&mut e, id);
    e.platform.put_cloud("f.txt", b"v2 from the cloud");
    // An editor has it open: its next write would land in the old file.
    e.platform.0.borrow_mut().open_files.insert("cloud/f.txt".into());
    sync(&mut e, id);
    assert_eq!(local(&e, "f.txt").as_deref(), Some(&b"v2 from the cloud"[..]));
    let copies: Vec<_> = app_files(&e)
        .into_iter()
        .filter(|(p, _)| p.contains("conflict"))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(copies[0].1, b"v1");
}

#[test]
fn a_file_open_elsewhere_is_not_deleted_under_its_writer() {
    let mut e = engine();
    put_local(&e, "f.txt", b"v1");
    put_local(&e, "g.txt", b"stays");
    let id = file_sync(&mut e);
    sync(&mut e, id);
    e.platform.remove_cloud("f.txt");
    e.platform.0.borrow_mut().open_files.insert("cloud/f.txt".into());
    sync(&mut e, id);
    assert_eq!(local(&e, "f.txt").as_deref(), Some(&b"v1"[..]), "kept while open");
    e.platform.0.borrow_mut().open_files.clear();
    sync(&mut e, id);
    assert_eq!(local(&e, "f.txt"), None, "deleted once closed");
    assert!(e.platform.local_paths().iter().all(|p| !p.starts_with(".staging/")));
}

#[test]
fn a_file_saved_the_moment_its_old_version_moves_aside_is_kept() {
    let mut e = engine();
    put_local(&e, "f.txt", b"base");
    let id = file_sync(&mut e);
    sync(&mut e, id);
    put_local(&e, "f.txt", b"local edit");
    e.platform.put_cloud("f.txt", b"cloud edit");
    // The conflict moves the local edit aside; an editor saves right then.
    e.platform.0.borrow_mut().after_move_away = Some(("cloud/f.txt".into(), b"saved meanwhile".to_vec()));
    sync(&mut e, id);
    assert!(e.platform.0.borrow().after_move_away.is_none(), "the save happened");
    let held: Vec<Vec<u8>> = app_files(&e).into_values().collect();
    for version in [&b"local edit"[..], b"cloud edit", b"saved meanwhile"] {
        assert!(
            held.iter().any(|h| h == version),
            "{:?} kept",
            String::from_utf8_lossy(version)
        );
    }
    assert_eq!(local(&e, "f.txt").as_deref(), Some(&b"cloud edit"[..]));
}

#[test]
fn edits_and_deletes_on_either_side_propagate() {
    let mut e = engine();
    for p in ["a", "b", "c", "d", "e", "f", "g", "h", "i"] {
        put_local(&e, p, p.as_bytes());
    }
    let id = file_sync(&mut e);
    sync(&mut e, id);
    put_local(&e, "a", b"a edited here");
    e.platform.put_cloud("b", b"b edited there");
    e.platform.remove_local("cloud/c");
    e.platform.remove_cloud("d");
    // a rename on each side: delete + create
    e.platform.remove_local("cloud/e");
    put_local(&e, "e renamed", b"e");
    e.platform.remove_cloud("f");
    e.platform.put_cloud("f renamed", b"f");
    let events = sync(&mut e, id);
    assert_eq!(terminal(&events), completed());
    let files = app_files(&e);
    assert_eq!(files, cloud_files(&e));
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(names, ["a", "b", "e renamed", "f renamed", "g", "h", "i"]);
    assert_eq!(files["a"], b"a edited here");
    assert_eq!(files["b"], b"b edited there");
}

#[test]
fn different_changes_on_both_sides_keep_both_versions() {
    let mut e = engine();
    put_local(&e, "doc.txt", b"base");
    let id = file_sync(&mut e);
    sync(&mut e, id);
    put_local(&e, "doc.txt", b"mine!");
    e.platform.put_cloud("doc.txt", b"theirs");
    let events = sync(&mut e, id);
    assert_eq!(terminal(&events), completed());
    let files = app_files(&e);
    assert_eq!(files, cloud_files(&e), "the conflict copy went up too");
    assert_eq!(files["doc.txt"], b"theirs");
    let copy = files
        .iter()
        .find(|(p, _)| p.starts_with("doc (conflict testdev "))
        .expect("a conflict copy");
    assert_eq!(copy.1, b"mine!");
    assert!(copy.0.ends_with(").txt"));
    assert_eq!(e.syncs.report(&e.platform, id).unwrap().conflicts, 1);
}

#[test]
fn equal_changes_are_not_conflicts_and_edits_beat_deletes() {
    let mut e = engine();
    for p in ["same", "kept-here", "kept-there", "x1", "x2"] {
        put_local(&e, p, p.as_bytes());
    }
    let id = file_sync(&mut e);
    sync(&mut e, id);
    put_local(&e, "same", b"both wrote this");
    e.platform.put_cloud("same", b"both wrote this");
    put_local(&e, "kept-here", b"edited locally");
    e.platform.remove_cloud("kept-here");
    e.platform.remove_local("cloud/kept-there");
    e.platform.put_cloud("kept-there", b"edited in the cloud");
    sync(&mut e, id);
    let files = app_files(&e);
    assert_eq!(files, cloud_files(&e));
    assert_eq!(files.len(), 5, "no conflict copy: {:?}", files.keys());
    assert_eq!(files["kept-here"], b"edited locally");
    assert_eq!(files["kept-there"], b"edited in the cloud");
}

#[test]
fn a_same_size_edit_in_the_same_clock_tick_is_found() {
    let mut e = engine();
    // The clock says the record was written right after the file's mtime.
    e.platform.0.borrow_mut().now_ms = 1;
    put_local(&e, "n.txt", b"1234");
    let id = file_sync(&mut e);
    sync(&mut e, id);
    e.platform.edit_local_in_place("cloud/n.txt", b"abcd", Keep::SameTick);
    sync(&mut e, id);
    assert_eq!(e.platform.cloud("n.txt").unwrap(), b"abcd");
}

#[test]
fn where_the_host_tells_no_ctime_an_edit_that_puts_the_mtime_back_is_found() {
    // A host without ctime (WASI runtimes) says 0 for every file.
    let no_ctime = |e: &Engine<Fake>| {
        for f in e.platform.0.borrow_mut().local.values_mut() {
            f.ctime_ns = 0;
        }
    };
    let mut e = engine();
    put_local(&e, "n.txt", b"1234");
    no_ctime(&e);
    let id = file_sync(&mut e);
    // (The fake's clock puts every record long after the file's last change: no racy window.)
    sync(&mut e, id);
    e.platform.edit_local_in_place("cloud/n.txt", b"abcd", Keep::Mtime);
    no_ctime(&e);
    sync(&mut e, id);
    assert_eq!(e.platform.cloud("n.txt").unwrap(), b"abcd");
}

#[test]
fn a_missing_root_or_failed_listing_is_never_everything_deleted() {
    let mut e = engine();
    for i in 0..6 {
        put_local(&e, &format!("f{i}"), b"x");
    }
    let id = file_sync(&mut e);
    sync(&mut e, id);
    // The folder disappears (an unmounted card, say).
    for i in 0..6 {
        e.platform.remove_local(&format!("cloud/f{i}"));
    }
    {
        let mut s = e.platform.0.borrow_mut();
        s.made_dirs.clear();
        s.dirs.clear();
    }
    let events = sync(&mut e, id);
    assert_eq!(
        terminal(&events),
        stopped(),
        "a refusal changes nothing and fails nothing"
    );
    assert!(e
        .syncs
        .report(&e.platform, id)
        .unwrap()
        .refusal
        .unwrap()
        .contains("looks empty"));
    // Confirming deletions does not confirm that an empty side empties the other.
    e.syncs
        .start(
            &e.platform,
            id,
            Confirm {
                deletions: true,
                ..Confirm::default()
            },
        )
        .unwrap();
    assert_eq!(terminal(&drain(&mut e)), stopped());
    assert_eq!(cloud_files(&e).len(), 6);
    assert_eq!(cloud_files(&e).len(), 6, "nothing deleted in the cloud");
    // A failed listing is a failed run, not an empty cloud.
    for i in 0..6 {
        put_local(&e, &format!("f{i}"), b"x");
    }
    e.platform.0.borrow_mut().list_error = Some(CloudError::new(CloudErrorKind::Network, "reset"));
    let events = sync(&mut e, id);
    assert_eq!(
        terminal(&events),
        SyncProgress {
            state: SyncState::DownloadFailed,
            error: ErrorType::NetworkUnavailable
        }
    );
    assert_eq!(app_files(&e).len(), 6, "nothing deleted locally");
}

#[test]
fn deleting_more_than_half_stops_and_says_so_until_confirmed() {
    let mut e = engine();
    for i in 0..10 {
        put_local(&e, &format!("f{i}"), b"x");
    }
    let id = file_sync(&mut e);
    sync(&mut e, id);
    for i in 0..6 {
        e.platform.remove_local(&format!("cloud/f{i}"));
    }
    let events = sync(&mut e, id);
    assert_eq!(terminal(&events), stopped());
    let refusal = e.syncs.report(&e.platform, id).unwrap().refusal.unwrap();
    assert!(refusal.contains("6 of 10"), "{refusal}");
    assert_eq!(cloud_files(&e).len(), 10);
    e.syncs.start(&e.platform, id, true).unwrap();
    let events = drain(&mut e);
    assert_eq!(terminal(&events), completed());
    assert_eq!(cloud_files(&e).len(), 4);
}

#[test]
fn start_checks_network_then_cloud_then_battery() {
    let mut e = engine();
    let id = file_sync(&mut e);
    let code = |e: &mut Engine<Fake>| e.syncs.start(&e.platform, id, false).unwrap_err().code;
    {
        let mut s = e.platform.0.borrow_mut();
        s.device.network_available = false;
        s.cloud_ready = false;
        s.device.battery_percent = 5;
        s.device.charging = false;
    }
    assert_eq!(code(&mut e), codes::NETWORK_UNAVAILABLE);
    e.platform.0.borrow_mut().device.network_available = true;
    assert_eq!(code(&mut e), codes::CLOUD_NOT_READY);
    e.platform.0.borrow_mut().cloud_ready = true;
    assert_eq!(code(&mut e), codes::LOW_BATTERY);
    e.platform.0.borrow_mut().device.charging = true;
    e.syncs.start(&e.platform, id, false).unwrap();
}

#[test]
fn permission_matrix() {
    let e = engine();
    let set = |perms: &[&str], system: bool| {
        let mut s = e.platform.0.borrow_mut();
        s.permissions = perms.iter().map(|p| p.to_string()).collect();
        s.system_app = system;
    };
    let mut syncs = Syncs::default();
    let p = &e.platform;
    let fs = |syncs: &mut Syncs, b: Option<&str>| syncs.create_file_sync(p, b).map(|_| ()).map_err(|e| e.code);
    let gallery = |syncs: &mut Syncs| syncs.create_gallery_sync(p).map(|_| ()).map_err(|e| e.code);
    let states = |syncs: &Syncs, n: usize| {
        let uris: Vec<String> = (0..n).map(|i| uri(&format!("f{i}"))).collect();
        syncs
            .file_sync_states(p, &uris, |_| false)
            .map(|_| ())
            .map_err(|e| e.code)
    };
    put_local(&e, "f0", b"x");

    set(&[], false);
    assert_eq!(fs(&mut syncs, None), Ok(()), "public FileSync needs nothing");
    assert_eq!(fs(&mut syncs, Some(APP)), Err(201));
    assert_eq!(gallery(&mut syncs), Err(201));
    assert_eq!(states(&syncs, 1), Err(201));
    assert_eq!(states(&syncs, 101), Err(401), "parameters come first");
    assert_eq!(fs(&mut syncs, Some("")), Err(401));

    set(&[CLOUDFILE_SYNC], false);
    assert_eq!(fs(&mut syncs, Some(APP)), Err(202));
    assert_eq!(gallery(&mut syncs), Err(202));
    assert_eq!(states(&syncs, 1), Err(202));

    set(&[CLOUDFILE_SYNC], true);
    assert_eq!(fs(&mut syncs, Some(APP)), Ok(()));
    assert_eq!(
        fs(&mut syncs, Some("com.other")),
        Err(201),
        "another bundle needs the manager permission"
    );
    assert_eq!(gallery(&mut syncs), Ok(()));
    assert_eq!(states(&syncs, 1), Ok(()));
    let other = "file://com.other/data/storage/el2/cloud/x".to_string();
    assert_eq!(
        syncs
            .file_sync_states(p, std::slice::from_ref(&other), |_| false)
            .unwrap_err()
            .code,
        14_000_002
    );

    set(&[CLOUDFILE_SYNC, CLOUDFILE_SYNC_MANAGER], true);
    assert_eq!(fs(&mut syncs, Some("com.other")), Ok(()));
    assert_eq!(
        syncs.file_sync_states(p, &[other], |_| false).unwrap_err().code,
        13_900_002
    );
}

#[test]
fn file_sync_states_follow_each_file() {
    let mut e = engine();
    put_local(&e, "up", b"up");
    e.platform.put_cloud("down", b"down");
    put_local(&e, "fails", b"x");
    let id = file_sync(&mut e);
    sync(&mut e, id);
    let state = |e: &Engine<Fake>, p: &str| e.file_sync_state(&uri(p));
    assert_eq!(state(&e, "up"), Ok(FileSyncState::UploadSuccess));
    assert_eq!(state(&e, "down"), Ok(FileSyncState::Completed));
    assert_eq!(state(&e, "missing").unwrap_err().code, codes::NO_SUCH_FILE);
    put_local(&e, "up", b"changed");
    assert_eq!(state(&e, "up"), Ok(FileSyncState::ToBeUploaded));
    // A full cloud fails that file, and the run says so.
    put_local(&e, "fails", b"bigger now");
    e.platform.0.borrow_mut().upload_fail = Some(CloudError::new(CloudErrorKind::StorageFull, "quota"));
    let events = sync(&mut e, id);
    assert_eq!(
        terminal(&events),
        SyncProgress {
            state: SyncState::UploadFailed,
            error: ErrorType::CloudStorageFull
        }
    );
    assert_eq!(state(&e, "fails"), Ok(FileSyncState::UploadFailure));
    // While it goes up, and after a stop.
    e.platform.0.borrow_mut().upload_fail = None;
    e.platform.0.borrow_mut().upload_polls = 1_000;
    e.syncs.start(&e.platform, id, false).unwrap();
    for _ in 0..5 {
        e.tick();
    }
    assert_eq!(state(&e, "fails"), Ok(FileSyncState::Uploading));
    let batch = e.file_sync_states(&[uri("fails"), uri("down")]).unwrap();
    assert_eq!(batch, [FileSyncState::Uploading, FileSyncState::Completed]);
    e.syncs.stop(&e.platform, id).unwrap();
    assert_eq!(state(&e, "fails"), Ok(FileSyncState::Stopped));
    assert_eq!(
        e.platform.take_sync_events().last().unwrap().1,
        SyncProgress {
            state: SyncState::Stopped,
            error: ErrorType::NoError
        }
    );
    // stop then start resumes
    e.platform.0.borrow_mut().upload_polls = 1;
    let events = sync(&mut e, id);
    assert_eq!(terminal(&events), completed());
    assert_eq!(state(&e, "fails"), Ok(FileSyncState::UploadSuccess));
    assert_eq!(e.platform.cloud("fails").unwrap(), b"bigger now");
}

#[test]
fn start_while_running_queues_one_more_run_and_late_listeners_get_the_state() {
    let mut e = engine();
    put_local(&e, "a", b"a");
    let id = file_sync(&mut e);
    e.syncs.start(&e.platform, id, false).unwrap();
    e.tick();
    e.syncs.start(&e.platform, id, false).unwrap();
    e.syncs.start(&e.platform, id, false).unwrap();
    let other = e.syncs.create_file_sync(&e.platform, None).unwrap();
    e.syncs.on(&e.platform, other, "progress", 99).unwrap();
    let joined = e.platform.0.borrow().sync_events.last().copied().unwrap();
    assert_eq!(joined.0, 99, "the new listener got the current state at once");
    let events = drain(&mut e);
    let terminals = events.iter().filter(|p| p.state == SyncState::Completed).count();
    assert_eq!(terminals, 2 * 2, "two runs, each seen by two listeners");
}

#[test]
fn a_run_that_fails_as_a_whole_names_every_file_it_gives_up_on() {
    let mut e = engine();
    e.platform.0.borrow_mut().chunk = 2;
    for name in ["a", "b", "c"] {
        e.platform.put_cloud(name, b"0123456789");
    }
    put_local(&e, "up", b"to go up");
    lose_network_after(&e, 4);
    let id = file_sync(&mut e);
    sync(&mut e, id);
    let r = e.syncs.report(&e.platform, id).unwrap();
    let named: Vec<&str> = r.failures.iter().map(|(p, _)| p.as_str()).collect();
    for name in ["a", "b", "c"] {
        assert!(named.contains(&name), "{name} not named: {:?}", r.failures);
    }
    // Each says why: the cut itself, or the run's end while it was moving.
    assert!(
        r.failures
            .iter()
            .all(|(_, why)| why.contains("cut") || why.contains("the run ended")),
        "{:?}",
        r.failures
    );
    // The push never started: the upload is counted as not made.
    assert!(
        r.notes.iter().any(|n| n.contains("1 more changes were not made")),
        "{:?}",
        r.notes
    );
}

/// The network goes once a transfer has moved `bytes`, and stays gone.
fn lose_network_after(e: &Engine<Fake>, bytes: u64) {
    let mut s = e.platform.0.borrow_mut();
    s.fail_next = Some((bytes, CloudError::new(CloudErrorKind::Network, "cut")));
    s.fail_next_stays = true;
}

#[test]
fn one_file_whose_reads_break_fails_alone_while_the_cloud_answers() {
    let mut e = engine();
    e.platform.0.borrow_mut().chunk = 2;
    for name in ["a", "b", "c"] {
        e.platform.put_cloud(name, b"0123456789");
    }
    put_local(&e, "up", b"to go up");
    // One connection resets; the cloud still answers.
    e.platform.0.borrow_mut().fail_next = Some((4, CloudError::new(CloudErrorKind::Network, "reset")));
    let id = file_sync(&mut e);
    let events = sync(&mut e, id);
    let r = e.syncs.report(&e.platform, id).unwrap();
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
    assert!(r.failures[0].1.contains("reset"), "{:?}", r.failures);
    let failed = r.failures[0].0.clone();
    for name in ["a", "b", "c"] {
        if name != failed {
            assert_eq!(local(&e, name).unwrap(), b"0123456789", "{name} came");
        }
    }
    // It says why at the end (the network's failure), having done the rest.
    assert_eq!(
        terminal(&events),
        SyncProgress {
            state: SyncState::DownloadFailed,
            error: ErrorType::NetworkUnavailable
        }
    );
    // The next run brings the one left.
    assert_eq!(terminal(&sync(&mut e, id)), completed());
    assert_eq!(local(&e, &failed).unwrap(), b"0123456789");
    assert_eq!(e.platform.cloud("up").unwrap(), b"to go up");
}

#[test]
fn a_failed_pull_skips_the_push() {
    let mut e = engine();
    put_local(&e, "local-only", b"stay");
    e.platform.put_cloud("remote", b"0123456789");
    lose_network_after(&e, 4);
    let id = file_sync(&mut e);
    let events = sync(&mut e, id);
    assert_eq!(
        terminal(&events),
        SyncProgress {
            state: SyncState::DownloadFailed,
            error: ErrorType::NetworkUnavailable
        }
    );
    assert!(events.iter().all(|p| p.state != SyncState::Uploading));
    assert!(e.platform.cloud("local-only").is_none());
    assert!(
        e.platform.local_paths().iter().all(|p| !p.starts_with(".staging/")),
        "no partial file left"
    );
}

/// A plan larger than a window is carried out a window at a time; a later
/// window that would delete more than the whole plan counted (the folder
/// went missing meanwhile) is refused, and nothing is deleted.
fn name(i: usize) -> String {
    format!("f{i:02}")
}

/// Twenty files in sync (more than a window), the first twelve edited
/// here, and a sync started that runs until `f{upto}`'s edit is in the cloud.
fn twelve_edits_under_way(upto: usize) -> (Engine<Fake>, SyncId) {
    let mut e = engine();
    for i in 0..20 {
        put_local(&e, &name(i), b"v1");
    }
    let id = file_sync(&mut e);
    assert_eq!(terminal(&sync(&mut e, id)), completed(), "more files than a window");
    assert_eq!(cloud_files(&e).len(), 20);
    for i in 0..12 {
        put_local(&e, &name(i), b"v2");
    }
    e.syncs.start(&e.platform, id, false).unwrap();
    let mut ticks = 0;
    while cloud_files(&e).get(&name(upto)).map(Vec::as_slice) != Some(b"v2".as_slice()) {
        e.tick();
        ticks += 1;
        assert!(ticks < 10_000, "the uploads land");
    }
    (e, id)
}

#[test]
fn a_folder_that_vanishes_between_windows_deletes_nothing() {
    // The first window's uploads land; then the rest of the folder goes.
    let (mut e, id) = twelve_edits_under_way(4);
    assert_ne!(
        cloud_files(&e).get(&name(11)).map(Vec::as_slice),
        Some(b"v2".as_slice()),
        "one window at a time"
    );
    for i in 12..20 {
        e.platform.remove_local(&format!("cloud/{}", name(i)));
    }
    let events = drain(&mut e);
    assert_eq!(terminal(&events), stopped());
    assert!(
        e.syncs
            .report(&e.platform, id)
            .unwrap()
            .refusal
            .unwrap()
            .contains("gone missing"),
        "said why"
    );
    let cloud = cloud_files(&e);
    assert_eq!(cloud.len(), 20, "nothing deleted in the cloud");
    assert!((12..20).all(|i| cloud[&name(i)] == b"v1"));
}

/// The app's folder moved away in the middle of a run (between windows
/// here) is never carried on as deletions: the run stops, saying why.
#[test]
fn a_folder_moved_away_mid_run_stops_it_and_deletes_nothing() {
    let (mut e, id) = twelve_edits_under_way(0);
    {
        let mut s = e.platform.0.borrow_mut();
        s.local.clear();
        s.dirs.clear();
        s.made_dirs.clear();
    }
    let events = drain(&mut e);
    assert_eq!(terminal(&events).state, SyncState::DownloadFailed);
    assert!(
        e.syncs
            .report(&e.platform, id)
            .unwrap()
            .last_error
            .unwrap()
            .contains("went away"),
        "said why"
    );
    assert_eq!(cloud_files(&e).len(), 20, "nothing deleted in the cloud");
    assert!(app_files(&e).is_empty(), "and nothing put in a new folder");
}

#[test]
fn battery_rules_mid_run() {
    let mut e = engine();
    for i in 0..40 {
        put_local(&e, &format!("f{i}"), b"x");
    }
    let id = file_sync(&mut e);
    e.syncs.start(&e.platform, id, false).unwrap();
    // Low battery arrives once uploads are under way.
    let mut seen = Vec::new();
    while !seen.iter().any(|p: &SyncProgress| p.state == SyncState::Uploading) {
        e.tick();
        seen.extend(e.platform.take_sync_events().into_iter().map(|(_, p)| p));
    }
    {
        let mut s = e.platform.0.borrow_mut();
        s.device.battery_percent = 8;
        s.device.charging = false;
    }
    let events = drain(&mut e);
    assert_eq!(
        terminal(&events),
        SyncProgress {
            state: SyncState::UploadFailed,
            error: ErrorType::BatteryLevelLow
        }
    );
    assert!(cloud_files(&e).len() < 40, "it stopped after the batch in flight");
    {
        let mut s = e.platform.0.borrow_mut();
        s.device.battery_percent = 12;
    }
    let events = sync(&mut e, id);
    assert_eq!(
        terminal(&events),
        SyncProgress {
            state: SyncState::Completed,
            error: ErrorType::BatteryLevelWarning
        }
    );
    assert_eq!(cloud_files(&e).len(), 40);
    assert_eq!(e.syncs.last_sync_time(&e.platform, id).unwrap(), 0, "not a clean run");
}

#[test]
fn a_file_that_cannot_be_read_is_never_taken_for_a_deleted_one_and_fails_alone() {
    let mut e = engine();
    e.platform.0.borrow_mut().now_ms = 1; // every record racily clean: the scan hashes
    for i in 0..4 {
        put_local(&e, &format!("f{i}"), b"data");
    }
    let id = file_sync(&mut e);
    sync(&mut e, id);
    e.platform.0.borrow_mut().unreadable.insert("cloud/f1".into());
    put_local(&e, "new", b"goes up anyway");
    let events = sync(&mut e, id);
    assert_eq!(terminal(&events).state, SyncState::UploadFailed);
    let r = e.syncs.report(&e.platform, id).unwrap();
    assert_eq!(r.failures.len(), 1, "{r:?}");
    assert_eq!(r.failures[0].0, "f1");
    assert!(r.failures[0].1.contains("input/output error"), "{r:?}");
    assert_eq!(
        cloud_files(&e).len(),
        5,
        "nothing deleted in the cloud; the new file went up"
    );
}

#[test]
fn a_file_that_fails_to_come_down_fails_alone_and_the_push_goes_on() {
    let mut e = engine();
    put_local(&e, "local-only", b"goes up");
    e.platform.put_cloud("blocked", b"cloud");
    e.platform.put_cloud("fine", b"comes down");
    // A folder where the file should go: that download fails, alone.
    e.platform
        .0
        .borrow_mut()
        .dirs
        .insert((APP.to_string(), "cloud/blocked".to_string()));
    let id = file_sync(&mut e);
    let events = sync(&mut e, id);
    assert_eq!(terminal(&events).state, SyncState::DownloadFailed);
    assert!(events.iter().any(|p| p.state == SyncState::Uploading), "{events:?}");
    assert_eq!(e.platform.cloud("local-only").unwrap(), b"goes up");
    assert_eq!(local(&e, "fine").unwrap(), b"comes down");
    let r = e.syncs.report(&e.platform, id).unwrap();
    assert_eq!((r.failed, r.uploaded, r.downloaded), (1, 1, 1), "{r:?}");
    assert!(r.failures[0].1.contains("folder is in the way"), "{r:?}");
    assert_eq!(e.syncs.last_sync_time(&e.platform, id).unwrap(), 0);
}

#[test]
fn file_system_errors_map_to_the_seeds_codes() {
    let e = engine();
    for (kind, code) in [
        (IoErrorKind::NotFound, 13_900_002),
        (IoErrorKind::Interrupted, 13_900_004),
        (IoErrorKind::WouldBlock, 13_900_010),
        (IoErrorKind::PermissionDenied, 13_900_012),
        (IoErrorKind::NotSupported, 13_900_031),
        (IoErrorKind::Other, 13_900_042),
        (IoErrorKind::EscapesSandbox, 14_000_002),
    ] {
        e.platform.0.borrow_mut().stat_errors.insert("cloud/x".into(), kind);
        let err = e.file_sync_state(&uri("x")).unwrap_err();
        assert_eq!(err.code, code, "{kind:?}");
        let batch = e.file_sync_states(&[uri("x")]).unwrap_err();
        assert_eq!(batch.code, code, "{kind:?} in a batch");
    }
}

#[test]
fn gallery_cloud_photos_become_thumbnails_and_local_photos_go_up() {
    let mut e = engine();
    let media = |p: &str| (GALLERY_BUNDLE.to_string(), p.to_string());
    {
        let mut s = e.platform.0.borrow_mut();
        let mut c = s.cloud.borrow_mut();
        c.put(GALLERY_BUNDLE, "Photo/1/beach.jpg", b"IMG beach");
        c.put(GALLERY_BUNDLE, "Photo/2/notes.txt", b"not a picture");
        drop(c);
        s.local.insert(
            media("cloud/Photo/3/mine.jpg"),
            crate::engine::fake::LocalFile::file(b"IMG mine", 5),
        );
    }
    let id = e.syncs.create_gallery_sync(&e.platform).unwrap();
    e.syncs.on(&e.platform, id, "progress", L).unwrap();
    e.syncs.start(&e.platform, id, false).unwrap();
    assert_eq!(terminal(&drain(&mut e)), completed());
    {
        let s = e.platform.0.borrow();
        assert!(
            !s.local.contains_key(&media("cloud/Photo/1/beach.jpg")),
            "the original stays in the cloud"
        );
        assert_eq!(
            s.local[&media(".thumbs/Photo/1/beach.jpg.jpg")].data,
            b"thumb of IMG beach"
        );
        assert_eq!(
            e.platform.cloud_in(GALLERY_BUNDLE, "Photo/3/mine.jpg").unwrap(),
            b"IMG mine"
        );
    }
    let state = |e: &Engine<Fake>, uri: &str| e.file_sync_state(uri);
    assert_eq!(
        state(&e, "file://media/Photo/1/beach.jpg"),
        Ok(FileSyncState::Completed)
    );
    assert_eq!(
        state(&e, "file://media/Photo/2/notes.txt"),
        Ok(FileSyncState::Completed)
    );
    assert_eq!(
        state(&e, "file://media/Photo/3/mine.jpg"),
        Ok(FileSyncState::UploadSuccess)
    );
    // Nothing changed: nothing happens; a photo deleted in the cloud loses its thumbnail.
    e.syncs.start(&e.platform, id, false).unwrap();
    drain(&mut e);
    assert_eq!(e.syncs.report(&e.platform, id).unwrap().planned, 0);
    e.platform
        .cloud_store()
        .borrow_mut()
        .objects
        .remove(&media("Photo/1/beach.jpg"));
    e.syncs.start(&e.platform, id, false).unwrap();
    assert_eq!(terminal(&drain(&mut e)), completed());
    assert!(!e
        .platform
        .0
        .borrow()
        .local
        .contains_key(&media(".thumbs/Photo/1/beach.jpg.jpg")));
    assert_eq!(
        state(&e, "file://media/Photo/1/beach.jpg").unwrap_err().code,
        codes::NO_SUCH_FILE
    );
}

/// A million files in sync on both sides: the re-sync merges them in
/// slices without holding any tree (the engine's part of it is a page of
/// each stream and the counts), and moves and reads nothing.
#[test]
fn a_million_files_in_sync_rescan_in_slices_and_move_nothing() {
    use crate::engine::fake::{CloudEntry, LocalFile};
    let n: usize = crate::engine::fake::env_or("MILLION_FILES", 1_000_000);
    let mut e = engine();
    {
        let mut s = e.platform.0.borrow_mut();
        s.fine_stamps = true;
        let cloud = s.cloud.clone();
        let mut cloud = cloud.borrow_mut();
        for i in 0..n {
            let path = format!("d{:03}/f{i:07}", i % 997);
            let f = LocalFile::file(b"x", 1 + i as u64);
            let etag = format!("e{i}");
            let record = records::SyncedRecord {
                etag: etag.clone(),
                size: 1,
                local: f.stamp(),
                hash: None,
                uploaded: true,
                recorded_ms: 1_600_000_000_000,
                cloud_only: false,
                first_ms: 1,
            };
            s.meta
                .insert(records::path_key(records::SYNCED, APP, &path), records::encode(&record));
            cloud.objects.insert(
                (APP.to_string(), path.clone()),
                CloudEntry {
                    data: b"x".to_vec(),
                    etag,
                    special: false,
                },
            );
            s.local.insert((APP.to_string(), format!("cloud/{path}")), f);
        }
        s.clock_ns = 10 * n as u64;
    }
    e.syncs.scan_slice = Some(8192);
    let id = file_sync(&mut e);
    let ticks_before = std::time::Instant::now();
    e.syncs.start(&e.platform, id, false).unwrap();
    let mut ticks = 0;
    while e.tick() != Tick::Idle {
        ticks += 1;
        assert!(ticks < 10 * n / 8192 + 100, "the scan must end");
    }
    let r = e.syncs.report(&e.platform, id).unwrap();
    assert_eq!((r.planned, r.uploaded, r.downloaded, r.failed), (0, 0, 0, 0), "{r:?}");
    assert!(ticks >= n / 8192, "in slices: {ticks} ticks");
    assert_eq!(e.platform.0.borrow().reads, 0, "no content read");
    eprintln!("{n} files re-scanned in {ticks} ticks, {:?}", ticks_before.elapsed());
}

#[test]
fn battery_rules_hold_while_pulling_too() {
    let mut e = engine();
    for i in 0..400 {
        e.platform.put_cloud(&format!("f{i:03}"), b"x");
    }
    let id = file_sync(&mut e);
    e.syncs.start(&e.platform, id, false).unwrap();
    while app_files(&e).is_empty() {
        e.tick();
    }
    {
        let mut s = e.platform.0.borrow_mut();
        s.device.battery_percent = 8;
        s.device.charging = false;
    }
    let events = drain(&mut e);
    assert_eq!(
        terminal(&events),
        SyncProgress {
            state: SyncState::DownloadFailed,
            error: ErrorType::BatteryLevelLow
        }
    );
    assert!(app_files(&e).len() < 400, "it stopped after the batch in flight");
    e.platform.0.borrow_mut().device.charging = true;
    assert_eq!(terminal(&sync(&mut e, id)), completed());
    assert_eq!(app_files(&e).len(), 400);
}

#[test]
fn a_hot_device_or_a_metered_network_when_wifi_only_stops_a_run_with_the_seeds_error() {
    let mut e = engine();
    e.platform.put_cloud("a.txt", b"a");
    put_local(&e, "b.txt", b"b");
    let id = file_sync(&mut e);
    e.platform.0.borrow_mut().device.overheated = true;
    let events = sync(&mut e, id);
    assert_eq!(
        terminal(&events),
        SyncProgress {
            state: SyncState::DownloadFailed,
            error: ErrorType::DeviceTemperatureTooHigh
        }
    );
    assert!(local(&e, "a.txt").is_none() && !cloud_files(&e).contains_key("b.txt"));
    {
        let mut s = e.platform.0.borrow_mut();
        s.device.overheated = false;
        s.device.wifi_only = true;
        s.device.wifi_available = false;
    }
    let events = sync(&mut e, id);
    assert_eq!(
        terminal(&events),
        SyncProgress {
            state: SyncState::DownloadFailed,
            error: ErrorType::WifiUnavailable
        }
    );
    assert!(local(&e, "a.txt").is_none());
    // Metered is fine without the setting; so is Wi-Fi with it.
    e.platform.0.borrow_mut().device.wifi_only = false;
    assert_eq!(terminal(&sync(&mut e, id)), completed());
    assert_eq!(local(&e, "a.txt").as_deref(), Some(&b"a"[..]));
}

#[test]
fn a_dry_run_tells_every_step_and_changes_no_file_and_no_record() {
    let mut e = engine();
    put_local(&e, "same.txt", b"same");
    put_local(&e, "gone-here.txt", b"x");
    e.platform.put_cloud("gone-there.txt", b"y");
    let id = file_sync(&mut e);
    assert_eq!(terminal(&sync(&mut e, id)), completed());
    put_local(&e, "new-here.txt", b"1");
    e.platform.put_cloud("new-there.txt", b"2");
    e.platform.remove_local("cloud/gone-here.txt");
    e.platform.remove_cloud("gone-there.txt");
    put_local(&e, "same.txt", b"edited here");
    e.platform.put_cloud("same.txt", b"edited there");
    // Many windows (5 ops each in tests): a plan larger than one.
    for i in 0..12 {
        put_local(&e, &format!("bulk/{i:02}"), b"b");
    }
    let files = app_files(&e);
    let cloud = cloud_files(&e);
    let meta = e.platform.0.borrow().meta.clone();
    e.platform.take_decisions();
    e.syncs.plan(&e.platform, id, false).unwrap();
    let events = drain(&mut e);
    assert_eq!(terminal(&events), completed());
    assert_eq!((app_files(&e), cloud_files(&e)), (files, cloud), "a file changed");
    assert_eq!(e.platform.0.borrow().meta, meta, "a record changed");
    let plan: Vec<(SyncAction, String)> = e
        .platform
        .take_decisions()
        .into_iter()
        .inspect(|d| assert!(d.dry_run && d.bundle == APP))
        .map(|d| (d.action, d.path))
        .collect();
    for (action, path) in [
        (SyncAction::Upload, "new-here.txt"),
        (SyncAction::Download, "new-there.txt"),
        (SyncAction::DeleteCloud, "gone-here.txt"),
        (SyncAction::DeleteLocal, "gone-there.txt"),
        (SyncAction::Conflict, "same.txt"),
        (SyncAction::Upload, "bulk/11"),
    ] {
        assert!(
            plan.contains(&(action, path.to_string())),
            "{action:?} {path}: {plan:?}"
        );
    }
    assert_eq!(plan.len(), 17, "{plan:?}");
    assert!(e.syncs.last_sync_time(&e.platform, id).unwrap() > 0);
    // While a run goes, no plan; the real run does what the plan said, and
    // tells it as it goes.
    e.syncs.start(&e.platform, id, false).unwrap();
    assert_eq!(
        e.syncs.plan(&e.platform, id, false).unwrap_err().code,
        codes::ALREADY_RUNNING
    );
    assert_eq!(terminal(&drain(&mut e)), completed());
    let done: Vec<(SyncAction, String)> = e
        .platform
        .take_decisions()
        .into_iter()
        // (The conflict copy goes up in a round after.)
        .filter(|d| d.action != SyncAction::Record && !d.path.starts_with("same (conflict"))
        .map(|d| (d.action, d.path))
        .collect();
    assert!(done.iter().all(|step| plan.contains(step)), "{done:?} vs {plan:?}");
    assert_eq!(done.len(), plan.len());
    assert_eq!(local(&e, "new-there.txt").as_deref(), Some(&b"2"[..]));
    assert!(cloud_files(&e).contains_key("bulk/11"));
}

#[test]
fn the_last_run_is_recorded_for_a_later_instance() {
    let mut e = engine();
    put_local(&e, "a.txt", b"a");
    let id = file_sync(&mut e);
    assert_eq!(terminal(&sync(&mut e, id)), completed());
    // A new instance over the same platform: the record tells the run.
    let platform = std::mem::replace(&mut e.platform, Fake::new()).restarted();
    let mut again = Engine::new(platform);
    again.init().unwrap();
    let id = again.syncs.create_file_sync(&again.platform, None).unwrap();
    let r = again.syncs.report(&again.platform, id).unwrap();
    assert_eq!((r.uploaded, r.last, r.running), (1, Some(completed()), false));
    assert!(r.ended_ms > 0);
}

#[test]
fn a_file_that_keeps_changing_under_the_run_is_said_when_the_run_leaves_it() {
    let mut e = engine();
    e.platform.put_cloud("hot", b"v0");
    e.platform.put_cloud("calm", b"ok");
    e.platform.0.borrow_mut().churn = Some("hot".into());
    let id = file_sync(&mut e);
    sync(&mut e, id);
    assert_eq!(local(&e, "calm").unwrap(), b"ok");
    assert!(local(&e, "hot").is_none());
    let r = e.syncs.report(&e.platform, id).unwrap();
    assert!(
        r.notes.iter().any(|n| n.starts_with("hot: it kept changing")),
        "{:?}",
        r.notes
    );
    let skipped = e
        .platform
        .0
        .borrow()
        .decisions
        .iter()
        .any(|d| d.path == "hot" && d.action == SyncAction::Skip);
    assert!(skipped, "said as a decision too");
    assert_eq!(
        e.syncs.last_sync_time(&e.platform, id).unwrap(),
        0,
        "not a complete sync"
    );
    // The writer stops: the next run brings it.
    e.platform.0.borrow_mut().churn = None;
    assert_eq!(terminal(&sync(&mut e, id)), completed());
    assert!(local(&e, "hot").is_some());
    let r = e.syncs.report(&e.platform, id).unwrap();
    assert!(r.notes.iter().all(|n| !n.contains("kept changing")), "{:?}", r.notes);
}
