//! Golden cases from the world users have, each one a way an earlier engine
//! lost an edit, stopped syncing or read something it should not: edits that
//! keep size and mtime, symlinks and special files on both sides, names at
//! the limits, a file where the other side has a folder, a disk with room for
//! some downloads only, cloud changes of metadata only, a lost metadata
//! store, deletions that erode a folder run by run, and names that look like
//! the engine's own.

use std::collections::BTreeMap;

use super::*;
use crate::engine::fake::{uri, Fake, Keep, APP};
use crate::engine::{Engine, ErrorType, FileKind, SyncState};

fn engine() -> Engine<Fake> {
    let mut e = Engine::new(Fake::new());
    e.init().unwrap();
    e
}

fn drain(e: &mut Engine<Fake>) -> Vec<SyncProgress> {
    for _ in 0..100_000 {
        if e.tick() == Tick::Idle {
            break;
        }
    }
    e.platform.take_sync_events().into_iter().map(|(_, p)| p).collect()
}

fn sync_with(e: &mut Engine<Fake>, confirm: Confirm) -> (SyncProgress, Report) {
    let id = e.syncs.create_file_sync(&e.platform, None).unwrap();
    e.syncs.on(&e.platform, id, "progress", 1).unwrap();
    e.syncs.start(&e.platform, id, confirm).unwrap();
    let last = *drain(e).last().expect("a terminal event");
    let report = e.syncs.report(&e.platform, id).unwrap();
    e.syncs.drop_object(id);
    (last, report)
}

fn sync(e: &mut Engine<Fake>) -> (SyncProgress, Report) {
    sync_with(e, Confirm::default())
}

fn completed() -> SyncProgress {
    SyncProgress {
        state: SyncState::Completed,
        error: ErrorType::NoError,
    }
}

fn put_local(e: &Engine<Fake>, path: &str, data: &[u8]) {
    e.platform.put_local(&format!("cloud/{path}"), data);
}

fn local(e: &Engine<Fake>, path: &str) -> Option<Vec<u8>> {
    e.platform.local(&format!("cloud/{path}"))
}

fn app_files(e: &Engine<Fake>) -> BTreeMap<String, Vec<u8>> {
    e.platform.app_files()
}

fn cloud_files(e: &Engine<Fake>) -> BTreeMap<String, Vec<u8>> {
    e.platform.cloud_files()
}

/// Synced: the given files on both sides, records no longer racily clean.
fn synced(files: &[(&str, &[u8])]) -> Engine<Fake> {
    let mut e = engine();
    for (p, d) in files {
        put_local(&e, p, d);
    }
    assert_eq!(sync(&mut e).0, completed());
    e.platform.0.borrow_mut().now_ms += 60_000;
    e
}

#[test]
fn an_edit_that_keeps_size_and_mtime_is_found_by_its_ctime_and_goes_up() {
    let mut e = synced(&[("photo.jpg", b"original")]);
    e.platform
        .edit_local_in_place("cloud/photo.jpg", b"retouche", Keep::Mtime);
    let (last, r) = sync(&mut e);
    assert_eq!(last, completed());
    assert_eq!(r.uploaded, 1, "{r:?}");
    assert_eq!(e.platform.cloud("photo.jpg").unwrap(), b"retouche");
    // And a save by rename that puts the old mtime back, likewise.
    e.platform.0.borrow_mut().now_ms += 60_000;
    e.platform.replace_local_by_rename("cloud/photo.jpg", b"third!!!", true);
    assert_eq!(sync(&mut e).1.uploaded, 1);
    assert_eq!(e.platform.cloud("photo.jpg").unwrap(), b"third!!!");
}

#[test]
fn an_edit_that_keeps_size_and_mtime_is_never_evicted() {
    let e = synced(&[("a.txt", b"synced")]);
    e.platform.edit_local_in_place("cloud/a.txt", b"edited", Keep::Mtime);
    let err = e
        .ondemand
        .clean_cache(&e.platform, &e.syncs, &uri("a.txt"))
        .unwrap_err();
    assert_eq!(err.code, codes::NO_SUCH_FILE, "{err:?}");
    assert_eq!(local(&e, "a.txt").unwrap(), b"edited");
}

#[test]
fn a_local_symlink_or_fifo_is_skipped_with_a_word_and_never_read_as_deleted() {
    let mut e = synced(&[("a", b"a"), ("b", b"b"), ("c", b"c"), ("d", b"d")]);
    // The user replaces a synced file by a symlink, and makes a FIFO.
    e.platform.remove_local("cloud/a");
    e.platform.put_local_special("cloud/a", FileKind::Symlink);
    e.platform.put_local_special("cloud/pipe", FileKind::Special);
    let (last, r) = sync(&mut e);
    assert_eq!(last, completed());
    assert_eq!(e.platform.cloud("a").unwrap(), b"a", "not deleted in the cloud");
    assert!(e.platform.cloud("pipe").is_none());
    let skipped: BTreeMap<_, _> = r.skipped.iter().cloned().collect();
    assert!(skipped["a"].contains("symlink"), "{skipped:?}");
    assert!(skipped["pipe"].contains("FIFO"), "{skipped:?}");
    assert_eq!(r.skipped_total, 2);
}

#[test]
fn a_symlinked_folder_in_the_cloud_hides_nothing_and_deletes_nothing() {
    let mut e = synced(&[("docs/a", b"a"), ("docs/b", b"b"), ("x", b"x"), ("y", b"y")]);
    // Someone moves the folder away and leaves a symlink in its place.
    e.platform.remove_cloud("docs/a");
    e.platform.remove_cloud("docs/b");
    e.platform.put_cloud_symlink("docs");
    let (last, r) = sync(&mut e);
    assert_eq!(last, completed(), "{r:?}");
    assert_eq!(local(&e, "docs/a").unwrap(), b"a", "never read as deleted");
    assert_eq!(local(&e, "docs/b").unwrap(), b"b");
    assert!(
        r.skipped.iter().any(|(p, why)| p == "docs" && why.contains("symlink")),
        "{r:?}"
    );
}

#[test]
fn a_name_that_is_not_utf8_is_skipped_with_a_word() {
    let mut e = synced(&[("a", b"a")]);
    e.platform.put_local_bad_name("cloud/caf\u{fffd}.txt", b"latin-1 name");
    let (last, r) = sync(&mut e);
    assert_eq!(last, completed());
    assert!(r.skipped.iter().any(|(_, why)| why.contains("UTF-8")), "{r:?}");
    assert_eq!(cloud_files(&e).len(), 1);
}

#[test]
fn a_conflict_copy_of_a_name_at_the_limit_fits_in_255_bytes() {
    let long = format!("{}.txt", "n".repeat(251));
    let mut e = synced(&[(long.as_str(), b"base")]);
    put_local(&e, &long, b"mine");
    e.platform.put_cloud(&long, b"theirs");
    let (last, r) = sync(&mut e);
    assert_eq!(last, completed(), "{r:?}");
    let files = app_files(&e);
    assert_eq!(files.len(), 2, "{:?}", files.keys());
    let copy = files.keys().find(|p| **p != long).unwrap();
    assert!(copy.len() <= 255, "{} bytes", copy.len());
    assert!(copy.ends_with(").txt") && copy.contains("(conflict testdev "), "{copy}");
    assert_eq!(files[copy], b"mine");
    assert_eq!(files, cloud_files(&e));
}

#[test]
fn a_file_where_the_other_side_has_a_folder_fails_alone() {
    let mut e = engine();
    put_local(&e, "report", b"a file here");
    e.platform.put_cloud("report/page1", b"a folder there");
    put_local(&e, "fine.txt", b"goes up");
    e.platform.put_cloud("also-fine.txt", b"comes down");
    let (last, r) = sync(&mut e);
    assert_eq!(last.state, SyncState::DownloadFailed, "{r:?}");
    assert_eq!(e.platform.cloud("fine.txt").unwrap(), b"goes up");
    assert_eq!(local(&e, "also-fine.txt").unwrap(), b"comes down");
    assert_eq!(local(&e, "report").unwrap(), b"a file here", "kept");
    assert!(r.failures.iter().any(|(p, _)| p == "report/page1"), "{r:?}");
    let once: std::collections::BTreeSet<_> = r.failures.iter().map(|(p, _)| p).collect();
    assert_eq!(
        (once.len(), r.failed as usize),
        (r.failures.len(), r.failures.len()),
        "each once: {r:?}"
    );
}

#[test]
fn with_room_for_some_downloads_those_come_down_and_the_uploads_go_up() {
    let mut e = engine();
    e.platform.put_cloud("big", &[1; 600]);
    e.platform.put_cloud("small1", &[2; 100]);
    e.platform.put_cloud("small2", &[3; 100]);
    put_local(&e, "mine", b"up it goes");
    e.platform.0.borrow_mut().disk = 400;
    let (last, r) = sync(&mut e);
    assert_eq!(
        last,
        SyncProgress {
            state: SyncState::DownloadFailed,
            error: ErrorType::LocalStorageFull
        },
        "{r:?}"
    );
    assert_eq!(local(&e, "small1").unwrap(), vec![2; 100]);
    assert_eq!(local(&e, "small2").unwrap(), vec![3; 100]);
    assert!(local(&e, "big").is_none());
    assert_eq!(e.platform.cloud("mine").unwrap(), b"up it goes");
    assert!(
        r.failures
            .iter()
            .any(|(p, why)| p == "big" && why.contains("600 bytes")),
        "{r:?}"
    );
    // Room made: the next run brings the rest.
    e.platform.0.borrow_mut().disk = u64::MAX;
    assert_eq!(sync(&mut e).0, completed());
    assert_eq!(local(&e, "big").unwrap(), vec![1; 600]);
}

#[test]
fn a_cloud_change_of_metadata_only_is_no_conflict() {
    let mut e = synced(&[("notes.txt", b"base")]);
    // The cloud's copy is touched (same bytes, a new etag) while the user edits.
    e.platform.put_cloud("notes.txt", b"base");
    put_local(&e, "notes.txt", b"my edit");
    let (last, r) = sync(&mut e);
    assert_eq!(last, completed(), "{r:?}");
    assert_eq!(r.conflicts, 0, "{r:?}");
    assert_eq!(app_files(&e).len(), 1);
    assert_eq!(e.platform.cloud("notes.txt").unwrap(), b"my edit");
}

#[test]
fn a_lost_metadata_store_deletes_nothing_on_either_side() {
    let mut e = synced(&[("a", b"a"), ("b", b"b"), ("c", b"c"), ("d", b"d"), ("e", b"e")]);
    e.platform.remove_local("cloud/a"); // deleted here before the loss
    e.platform.remove_cloud("b"); // and there
    put_local(&e, "c", b"c edited here");
    e.platform.put_cloud("d", b"d edited there");
    e.platform.0.borrow_mut().meta.clear();
    let (last, r) = sync(&mut e);
    assert_eq!(last, completed(), "{r:?}");
    assert_eq!((r.deleted_local, r.deleted_remote), (0, 0), "{r:?}");
    let (local, cloud) = (app_files(&e), cloud_files(&e));
    assert_eq!(local, cloud);
    // Every version survives: the deleted ones come back, edits are kept.
    for v in [&b"a"[..], b"b", b"c edited here", b"d edited there", b"e"] {
        assert!(local.values().any(|d| d == v), "{:?} lost", String::from_utf8_lossy(v));
    }
}

#[test]
fn damaged_records_are_set_aside_with_a_word_and_delete_nothing() {
    let mut e = synced(&[("a", b"a"), ("b", b"b"), ("c", b"c"), ("d", b"d")]);
    {
        let mut s = e.platform.0.borrow_mut();
        for (k, v) in s.meta.iter_mut() {
            if k.starts_with("synced/") {
                v.truncate(v.len() / 2);
            }
        }
    }
    e.platform.remove_local("cloud/a");
    let (last, r) = sync(&mut e);
    assert_eq!(last, completed(), "{r:?}");
    assert_eq!(e.platform.cloud("a").unwrap(), b"a", "no record, no deletion");
    assert!(r.notes.iter().any(|n| n.contains("4 sync records")), "{r:?}");
}

#[test]
fn deletions_that_erode_a_folder_run_by_run_are_stopped() {
    let names: Vec<String> = (0..20).map(|i| format!("f{i:02}")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let mut e = synced(&files);
    // 45 % of what is left, run after run: each run alone is under half.
    let mut left: Vec<String> = names.clone();
    let delete = |e: &Engine<Fake>, left: &mut Vec<String>| {
        let n = left.len() * 45 / 100;
        for p in left.drain(..n) {
            e.platform.remove_local(&format!("cloud/{p}"));
        }
    };
    delete(&e, &mut left);
    assert_eq!(sync(&mut e).0, completed(), "9 of 20: under half");
    assert_eq!(cloud_files(&e).len(), 11);
    delete(&e, &mut left);
    let (last, r) = sync(&mut e);
    assert_eq!(last.state, SyncState::Stopped, "{r:?}");
    let refusal = r.refusal.unwrap();
    assert!(refusal.contains("of the 20"), "{refusal}");
    assert_eq!(cloud_files(&e).len(), 11, "nothing deleted");
    // The user confirms: it goes ahead, and the guard counts from there.
    let (last, _) = sync_with(
        &mut e,
        Confirm {
            deletions: true,
            ..Confirm::default()
        },
    );
    assert_eq!(last, completed());
    assert_eq!(cloud_files(&e).len(), 7);
    delete(&e, &mut left);
    assert_eq!(sync(&mut e).0, completed(), "3 of 7: under half of the confirmed state");
}

#[test]
fn renames_that_replace_a_folder_run_by_run_are_stopped() {
    // What ransomware does: each file replaced by another name and other
    // bytes. The number of files in sync never drops; the originals go.
    let names: Vec<String> = (0..20).map(|i| format!("f{i:02}")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let mut e = synced(&files);
    let rename = |e: &Engine<Fake>, names: &[String]| {
        for p in names {
            e.platform.remove_local(&format!("cloud/{p}"));
            put_local(e, &format!("{p}.locked"), b"scrambled");
        }
    };
    rename(&e, &names[..9]);
    assert_eq!(sync(&mut e).0, completed(), "9 of 20: under half");
    e.platform.0.borrow_mut().now_ms += 60_000;
    rename(&e, &names[9..18]);
    let (last, r) = sync(&mut e);
    assert_eq!(last.state, SyncState::Stopped, "{r:?}");
    assert!(r.refusal.unwrap().contains("9 of the 20"));
    let cloud = cloud_files(&e);
    assert!(
        names[9..].iter().all(|n| cloud.contains_key(n)),
        "the originals left are kept"
    );
}

#[test]
fn a_folder_that_has_grown_counts_deletions_from_its_new_size() {
    let names: Vec<String> = (0..20).map(|i| format!("f{i:02}")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let mut e = synced(&files);
    for i in 0..30 {
        put_local(&e, &format!("new{i:02}"), b"y");
    }
    assert_eq!(sync(&mut e).0, completed());
    e.platform.0.borrow_mut().now_ms += 60_000;
    // 11 of the first 20 would be more than half of them, but the folder now
    // holds 50 and this is its user tidying up.
    for p in &names[..11] {
        e.platform.remove_local(&format!("cloud/{p}"));
    }
    assert_eq!(sync(&mut e).0, completed());
    assert_eq!(cloud_files(&e).len(), 39);
}

#[test]
fn an_empty_cloud_needs_its_own_confirmation() {
    let mut e = synced(&[("a", b"a"), ("b", b"b"), ("c", b"c"), ("d", b"d"), ("e", b"e")]);
    for p in ["a", "b", "c", "d", "e"] {
        e.platform.remove_cloud(p);
    }
    let all_but = Confirm {
        deletions: true,
        empty_local: true,
        empty_cloud: false,
    };
    let (last, r) = sync_with(&mut e, all_but);
    assert_eq!(last.state, SyncState::Stopped);
    assert!(r.refusal.unwrap().contains("--confirm-empty-cloud"));
    assert_eq!(app_files(&e).len(), 5);
    let (last, _) = sync_with(&mut e, Confirm::ALL);
    assert_eq!(last, completed());
    assert_eq!(app_files(&e).len(), 0);
}

#[test]
fn a_folder_deleted_in_the_cloud_goes_here_too() {
    let mut e = synced(&[
        ("trip/a.jpg", b"a"),
        ("trip/day2/b.jpg", b"b"),
        ("keep", b"k"),
        ("k2", b"k"),
    ]);
    e.platform.remove_cloud("trip/a.jpg");
    e.platform.remove_cloud("trip/day2/b.jpg");
    let (last, r) = sync(&mut e);
    assert_eq!(last, completed(), "{r:?}");
    let dirs = e.platform.0.borrow().made_dirs.clone();
    assert!(
        !dirs.iter().any(|(_, d)| d.starts_with("cloud/trip")),
        "the emptied folders went too: {dirs:?}"
    );
    let (_, r) = sync(&mut e);
    assert_eq!(r.skipped_total, 0, "no empty folder left to report: {r:?}");
}

#[test]
fn names_that_look_like_the_engines_own_are_the_users() {
    let names = [".cloudsync-put-123-4", ".cloudsync-evict-9-1", ".staging", "x.part"];
    let mut e = engine();
    for n in names {
        put_local(&e, n, n.as_bytes());
        e.platform.put_cloud(&format!("cloud-{n}"), n.as_bytes());
    }
    let (last, r) = sync(&mut e);
    assert_eq!(last, completed(), "{r:?}");
    assert_eq!(app_files(&e), cloud_files(&e));
    assert_eq!(app_files(&e).len(), 8);
    assert_eq!(sync(&mut e).1.planned, 0, "and they stay put");
}

#[test]
fn a_save_caught_by_an_eviction_cut_short_is_put_back() {
    let mut e = synced(&[("a.txt", b"synced")]);
    // A power cut right after the file was set aside.
    // (The eviction mark is the first write.)
    e.platform.0.borrow_mut().crash_countdown = Some(3);
    let _ = e.ondemand.clean_cache(&e.platform, &e.syncs, &uri("a.txt"));
    let aside = e
        .platform
        .local_paths()
        .into_iter()
        .find(|p| p.starts_with(".staging/evict-"))
        .expect("set aside");
    // What was set aside is not the file checked (a save that landed in
    // that instant): recovery must put it back, never remove it.
    {
        let mut s = e.platform.0.borrow_mut();
        let f = s.local.get_mut(&(APP.to_string(), aside.clone())).unwrap();
        f.data = b"saved!".to_vec();
        f.inode += 1000;
    }
    let platform = std::mem::replace(&mut e.platform, Fake::new()).restarted();
    let mut e = Engine::new(platform);
    e.init().unwrap();
    assert_eq!(local(&e, "a.txt").unwrap(), b"saved!");
    assert!(e.platform.local_paths().iter().all(|p| !p.starts_with(".staging/")));
    let (last, _) = sync(&mut e);
    assert_eq!(last, completed());
    let files = app_files(&e);
    assert!(files.values().any(|d| d == b"saved!"), "{files:?}");
    assert!(cloud_files(&e).values().any(|d| d == b"saved!"));
}

#[test]
fn an_eviction_cut_short_after_setting_aside_completes_at_recovery() {
    let mut e = synced(&[("a.txt", b"synced")]);
    // (The eviction mark is the first write.)
    e.platform.0.borrow_mut().crash_countdown = Some(3);
    let _ = e.ondemand.clean_cache(&e.platform, &e.syncs, &uri("a.txt"));
    let platform = std::mem::replace(&mut e.platform, Fake::new()).restarted();
    let mut e = Engine::new(platform);
    e.init().unwrap();
    assert!(local(&e, "a.txt").is_none());
    assert!(e.platform.local_paths().iter().all(|p| !p.starts_with(".staging/")));
    assert_eq!(e.platform.cloud("a.txt").unwrap(), b"synced");
    assert_eq!(sync(&mut e).0, completed());
    assert!(local(&e, "a.txt").is_none(), "it stays cloud-only");
}
