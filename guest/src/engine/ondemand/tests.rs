//! Files on demand on the in-memory platform: eviction's refusals and its
//! crash safety, sync keeping evicted files cloud-only, hydration, and space
//! optimisation's order, budget, events and stop.

use super::*;
use crate::engine::fake::{uri, Fake, APP};
use crate::engine::records::PARTIAL;
use crate::engine::{Engine, SyncProgress, SyncState};

const L: ListenerId = 3;

fn engine() -> Engine<Fake> {
    let mut e = Engine::new(Fake::new());
    e.init().unwrap();
    e
}

fn drain(e: &mut Engine<Fake>) {
    for _ in 0..100_000 {
        if e.tick() == Tick::Idle {
            break;
        }
    }
}

fn sync(e: &mut Engine<Fake>) -> SyncProgress {
    let id = e.syncs.create_file_sync(&e.platform, None).unwrap();
    e.syncs.on(&e.platform, id, "progress", 99).unwrap();
    e.syncs.start(&e.platform, id, false).unwrap();
    drain(e);
    e.syncs.drop_object(id);
    e.platform.take_sync_events().last().unwrap().1
}

fn completed() -> SyncProgress {
    SyncProgress {
        state: SyncState::Completed,
        error: crate::engine::ErrorType::NoError,
    }
}

fn put_local(e: &Engine<Fake>, path: &str, data: &[u8]) {
    e.platform.put_local(&format!("cloud/{path}"), data);
}

fn local(e: &Engine<Fake>, path: &str) -> Option<Vec<u8>> {
    e.platform.local(&format!("cloud/{path}"))
}

fn record(e: &Engine<Fake>, path: &str) -> SyncedRecord {
    records::get(&e.platform, &records::path_key(SYNCED, APP, path))
        .unwrap()
        .unwrap()
}

/// Three synced files: a (5 bytes), b (10), c (20).
fn synced_engine() -> Engine<Fake> {
    let mut e = engine();
    put_local(&e, "a", b"aaaaa");
    put_local(&e, "b", b"bbbbbbbbbb");
    put_local(&e, "c", b"cccccccccccccccccccc");
    assert_eq!(sync(&mut e), completed());
    e
}

#[test]
fn clean_cache_evicts_a_synced_file_and_keeps_it_listed() {
    let mut e = synced_engine();
    e.ondemand.clean_cache(&e.platform, &e.syncs, &uri("b")).unwrap();
    assert_eq!(local(&e, "b"), None);
    assert_eq!(e.platform.cloud("b").unwrap(), b"bbbbbbbbbb", "the cloud holds it");
    assert!(record(&e, "b").cloud_only);
    let files = e
        .ondemand
        .list_files(&e.platform, false, &e.syncs, None, 4096)
        .unwrap()
        .files;
    let b = files.iter().find(|f| f.uri == uri("b")).unwrap();
    assert!(
        b.cloud_only && b.size == 10 && b.state == FileSyncState::Completed,
        "{b:?}"
    );
    assert_eq!(e.file_sync_state(&uri("b")), Ok(FileSyncState::Completed));
    // Idempotent.
    e.ondemand.clean_cache(&e.platform, &e.syncs, &uri("b")).unwrap();
    // A sync keeps it cloud-only: nothing downloaded, nothing deleted.
    assert_eq!(sync(&mut e), completed());
    assert_eq!(local(&e, "b"), None);
    assert!(e.platform.cloud("b").is_some());
    // Changed in the cloud: still cloud-only, the record follows.
    e.platform.put_cloud("b", b"new version");
    assert_eq!(sync(&mut e), completed());
    assert_eq!(local(&e, "b"), None);
    assert_eq!(record(&e, "b").size, 11);
    // Fetched on demand: local again.
    let c = e.downloads.create_cache();
    e.downloads.start(&e.platform, c, &uri("b")).unwrap();
    drain(&mut e);
    assert_eq!(local(&e, "b").unwrap(), b"new version");
    assert!(!record(&e, "b").cloud_only);
    assert_eq!(sync(&mut e), completed());
    assert_eq!(local(&e, "b").unwrap(), b"new version");
}

#[test]
fn clean_cache_refuses_what_the_cloud_does_not_hold_exactly() {
    let mut e = synced_engine();
    let code = |e: &Engine<Fake>, p: &str| e.ondemand.clean_cache(&e.platform, &e.syncs, &uri(p)).unwrap_err().code;
    put_local(&e, "a", b"edited, not synced");
    assert_eq!(code(&e, "a"), codes::NO_SUCH_FILE, "unsynced local changes");
    put_local(&e, "new", b"never synced");
    assert_eq!(code(&e, "new"), codes::NO_SUCH_FILE);
    e.platform.put_cloud("c", b"changed in the cloud");
    assert_eq!(code(&e, "c"), codes::NO_SUCH_FILE, "the cloud holds another version");
    e.platform.0.borrow_mut().open_files.insert("cloud/b".into());
    assert_eq!(code(&e, "b"), 13_900_010, "being written");
    assert!(!record(&e, "b").cloud_only, "the record went back");
    assert_eq!(code(&e, "missing"), codes::NO_SUCH_FILE);
    e.platform.0.borrow_mut().permissions.remove(CLOUDFILE_SYNC_MANAGER);
    assert_eq!(
        e.ondemand
            .clean_cache(&e.platform, &e.syncs, "file://other/data/storage/el2/cloud/x")
            .unwrap_err()
            .code,
        codes::INVALID_URI,
        "another bundle without the manager permission"
    );
    e.platform.0.borrow_mut().device.network_available = false;
    e.platform.0.borrow_mut().cloud_error = Some(crate::engine::CloudError::new(CloudErrorKind::Network, "down"));
    e.platform.0.borrow_mut().open_files.clear();
    assert_eq!(code(&e, "b"), codes::NETWORK_UNAVAILABLE, "not checked, not evicted");
    for p in ["a", "b", "c", "new"] {
        assert!(local(&e, p).is_some(), "{p} kept");
    }
    {
        let mut s = e.platform.0.borrow_mut();
        s.cloud_error = None;
        s.system_app = false;
    }
    assert_eq!(code(&e, "b"), codes::NOT_SYSTEM_APP);
    e.platform.0.borrow_mut().permissions.clear();
    assert_eq!(code(&e, "b"), codes::PERMISSION_DENIED);
    let _ = &mut e;
}

#[test]
fn a_crash_mid_eviction_leaves_the_file_local_or_cloud_only_never_lost() {
    for writes_before_crash in 0..3 {
        let mut e = synced_engine();
        e.platform.0.borrow_mut().crash_countdown = Some(writes_before_crash);
        let _ = e.ondemand.clean_cache(&e.platform, &e.syncs, &uri("b"));
        let platform = std::mem::replace(&mut e.platform, Fake::new());
        platform.0.borrow_mut().crash_countdown = None;
        let mut e = Engine::new(platform);
        e.init().unwrap();
        assert_eq!(sync(&mut e), completed());
        let here = local(&e, "b");
        let r = record(&e, "b");
        assert_eq!(
            e.platform.cloud("b").unwrap(),
            b"bbbbbbbbbb",
            "crash after {writes_before_crash} writes"
        );
        match here {
            Some(data) => assert!(data == b"bbbbbbbbbb" && !r.cloud_only, "local and recorded so"),
            None => assert!(r.cloud_only, "cloud-only and recorded so"),
        }
        assert!(e.platform.meta_scan(&format!("{PARTIAL}/")).unwrap().is_empty());
    }
}

#[test]
fn optimize_evicts_least_recently_used_first_within_the_budget() {
    let mut e = synced_engine();
    let day = 86_400_000;
    let now = e.platform.now_ms();
    for (path, days_ago) in [("a", 40), ("b", 60), ("c", 5)] {
        e.platform
            .meta_commit(vec![(
                records::path_key(ACCESS, APP, path),
                Some(records::encode(&(now - days_ago * day))),
            )])
            .unwrap();
    }
    // The fake's atime is the mtime, long ago: the access records decide.
    assert_eq!(
        e.ondemand.start_optimize(&e.platform, 10, 30, None).unwrap_err().code,
        401
    );
    e.ondemand.start_optimize(&e.platform, 10, 30, Some(L)).unwrap();
    assert_eq!(
        e.ondemand
            .start_optimize(&e.platform, 10, 30, Some(L))
            .unwrap_err()
            .code,
        codes::ALREADY_RUNNING
    );
    drain(&mut e);
    // b (60 days) goes first and frees the 10 bytes asked for; a stays.
    assert_eq!(local(&e, "b"), None);
    assert!(local(&e, "a").is_some() && local(&e, "c").is_some());
    let events = std::mem::take(&mut e.platform.0.borrow_mut().optimize_events);
    assert_eq!(
        events.first().unwrap().1,
        OptimizeSpaceProgress {
            state: OptimizeState::Running,
            progress: 1
        }
    );
    // Every event in the seed's range, 1 to 100.
    assert!(
        events.iter().all(|(_, p)| (1..=100).contains(&p.progress)),
        "{events:?}"
    );
    assert_eq!(
        events.last().unwrap().1,
        OptimizeSpaceProgress {
            state: OptimizeState::Completed,
            progress: 100
        }
    );
    // No budget: every aged file (a); c was used 5 days ago.
    e.ondemand.start_optimize(&e.platform, u64::MAX, 30, Some(L)).unwrap();
    drain(&mut e);
    assert_eq!(local(&e, "a"), None);
    assert!(local(&e, "c").is_some());
    for p in ["a", "b", "c"] {
        assert!(e.platform.cloud(p).is_some());
    }
}

#[test]
fn stop_optimize_ends_with_stopped() {
    let mut e = engine();
    for i in 0..200 {
        put_local(&e, &format!("f{i:03}"), b"0123456789");
    }
    assert_eq!(sync(&mut e), completed());
    e.ondemand.start_optimize(&e.platform, u64::MAX, 0, Some(L)).unwrap();
    // Gathered a page at a time and evicted as found: stopped part way.
    let held = |e: &Engine<Fake>| (0..200).filter(|i| local(e, &format!("f{i:03}")).is_some()).count();
    for _ in 0..1000 {
        if held(&e) < 200 {
            break;
        }
        e.tick();
    }
    e.ondemand.stop_optimize(&e.platform).unwrap();
    assert_eq!(e.tick(), Tick::Idle);
    let events = std::mem::take(&mut e.platform.0.borrow_mut().optimize_events);
    let last = events.last().unwrap().1;
    assert_eq!(last.state, OptimizeState::Stopped);
    assert!(last.progress > 0 && last.progress < 100, "{last:?}");
    let left = (0..200).filter(|i| local(&e, &format!("f{i:03}")).is_some()).count();
    assert!(left > 0 && left < 200, "{left}");
}

#[test]
fn an_eviction_that_fails_after_the_removal_is_recorded_as_done() {
    let mut e = synced_engine();
    e.platform.0.borrow_mut().evict_fails_after_removal = true;
    let _ = e.ondemand.clean_cache(&e.platform, &e.syncs, &uri("b"));
    assert_eq!(local(&e, "b"), None);
    assert!(
        record(&e, "b").cloud_only,
        "the record must say the file is only in the cloud"
    );
    e.platform.0.borrow_mut().evict_fails_after_removal = false;
    assert_eq!(sync(&mut e), completed());
    assert_eq!(
        e.platform.cloud("b").unwrap(),
        b"bbbbbbbbbb",
        "never read as a local delete"
    );
}

#[test]
fn no_eviction_while_a_sync_runs_nor_over_a_new_local_file() {
    let mut e = synced_engine();
    let id = e.syncs.create_file_sync(&e.platform, None).unwrap();
    e.syncs.start(&e.platform, id, false).unwrap();
    let err = e.ondemand.clean_cache(&e.platform, &e.syncs, &uri("a")).unwrap_err();
    assert_eq!(err.code, 13_900_010);
    drain(&mut e);
    e.ondemand.clean_cache(&e.platform, &e.syncs, &uri("a")).unwrap();
    put_local(&e, "a", b"a new file where the placeholder is");
    let err = e.ondemand.clean_cache(&e.platform, &e.syncs, &uri("a")).unwrap_err();
    assert_eq!(err.code, codes::NO_SUCH_FILE, "{err:?}");
    assert!(local(&e, "a").is_some());
}

#[test]
fn optimize_checks_each_file_as_it_is_when_evicting() {
    let mut e = synced_engine();
    e.ondemand.start_optimize(&e.platform, u64::MAX, 0, Some(L)).unwrap();
    // After the job ranked its candidates: one changes in the cloud, one here.
    e.platform.put_cloud("a", b"changed in the cloud");
    put_local(&e, "b", b"changed here");
    drain(&mut e);
    assert!(local(&e, "a").is_some(), "the cloud holds another version: kept");
    assert_eq!(local(&e, "b").unwrap(), b"changed here");
    assert_eq!(local(&e, "c"), None, "the unchanged one went");
}

/// The listing comes a page at a time in path order, local files and
/// cloud-only ones merged, and the pages together are the whole listing.
#[test]
fn the_file_listing_pages_are_the_whole_listing_in_path_order() {
    let mut e = engine();
    let names: Vec<String> = (0..23).map(|i| format!("d{}/f{i:02}", i % 3)).collect();
    for n in &names {
        put_local(&e, n, n.as_bytes());
    }
    put_local(&e, "d1/new-here", b"not synced yet");
    assert_eq!(sync(&mut e), completed());
    for n in names.iter().step_by(4) {
        e.ondemand.clean_cache(&e.platform, &e.syncs, &uri(n)).unwrap();
    }
    put_local(&e, "d2/unsynced", b"x");
    let whole = e.ondemand.list_files(&e.platform, false, &e.syncs, None, 4096).unwrap();
    assert_eq!(whole.next, None);
    assert_eq!(whole.files.len(), 25);
    assert_eq!(whole.files.iter().filter(|f| f.cloud_only).count(), 6);
    for max in [1, 2, 5] {
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..1000 {
            let page = e
                .ondemand
                .list_files(&e.platform, false, &e.syncs, after.as_deref(), max)
                .unwrap();
            paged.extend(page.files);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(paged, whole.files, "pages of {max}");
    }
}

/// Files synced and last used `days_ago`, `size` bytes each.
fn aged_engine(files: &[(&str, u64, usize)]) -> Engine<Fake> {
    let mut e = engine();
    for (path, _, size) in files {
        put_local(&e, path, &vec![b'x'; *size]);
    }
    assert_eq!(sync(&mut e), completed());
    let now = e.platform.now_ms();
    for (path, days_ago, _) in files {
        e.platform
            .meta_commit(vec![(
                records::path_key(ACCESS, APP, path),
                Some(records::encode(&(now - days_ago * DAY_MS))),
            )])
            .unwrap();
    }
    e
}

fn optimize_events(e: &Engine<Fake>) -> Vec<(ListenerId, OptimizeSpaceProgress)> {
    std::mem::take(&mut e.platform.0.borrow_mut().optimize_events)
}

#[test]
fn optimize_storage_ages_by_thirty_days_while_space_is_plenty() {
    let mut e = aged_engine(&[("old", 40, 100), ("week", 7, 100), ("today", 0, 100)]);
    e.platform.0.borrow_mut().free = LOW_SPACE * 4;
    e.ondemand.optimize_storage(&e.platform, L).unwrap();
    drain(&mut e);
    assert_eq!(local(&e, "old"), None);
    assert!(local(&e, "week").is_some() && local(&e, "today").is_some());
    let events = optimize_events(&e);
    assert_eq!(events.last().unwrap().1.state, OptimizeState::Completed);
    assert!(events.iter().all(|(l, p)| *l == L && (1..=100).contains(&p.progress)));
}

#[test]
fn optimize_storage_ages_harder_when_space_runs_low() {
    // 250 bytes short of 2 GiB after the thirty-day step: the week-old
    // file (the least recently used left) is not enough, the two-day-old
    // one goes too.
    let mut e = aged_engine(&[
        ("old", 40, 100),
        ("week", 7, 100),
        ("two-days", 2, 100),
        ("hours", 0, 100),
    ]);
    e.platform.0.borrow_mut().free = LOW_SPACE - 250;
    e.ondemand.optimize_storage(&e.platform, L).unwrap();
    drain(&mut e);
    assert_eq!(local(&e, "old"), None, "thirty days: always");
    assert_eq!(local(&e, "week"), None, "low space: least recently used first");
    assert_eq!(local(&e, "two-days"), None, "until the space is free again");
    assert!(local(&e, "hours").is_some(), "used within the day: spared");
    assert_eq!(optimize_events(&e).last().unwrap().1.state, OptimizeState::Completed);
    for p in ["old", "week", "two-days"] {
        assert!(record(&e, p).cloud_only && e.platform.cloud(p).is_some());
    }
}

#[test]
fn optimize_storage_waits_for_a_space_task_and_callers_join_a_pass() {
    let mut e = aged_engine(&[("old", 40, 100), ("new", 0, 100)]);
    e.ondemand.start_optimize(&e.platform, u64::MAX, 365, Some(1)).unwrap();
    e.ondemand.optimize_storage(&e.platform, 2).unwrap();
    e.ondemand.optimize_storage(&e.platform, 3).unwrap();
    // A space task may not start beside a waiting or running pass.
    assert_eq!(
        e.ondemand.start_optimize(&e.platform, 1, 0, Some(4)).unwrap_err().code,
        codes::ALREADY_RUNNING
    );
    drain(&mut e);
    assert_eq!(local(&e, "old"), None);
    let events = optimize_events(&e);
    for l in [1, 2, 3] {
        let last = events.iter().rfind(|(x, _)| *x == l).unwrap().1;
        assert_eq!(last.state, OptimizeState::Completed, "listener {l}: {events:?}");
    }
    // The waiting pass began after the task's end.
    let task_end = events
        .iter()
        .position(|(l, p)| *l == 1 && p.state == OptimizeState::Completed);
    let pass_end = events
        .iter()
        .position(|(l, p)| *l == 2 && p.state == OptimizeState::Completed);
    assert!(task_end < pass_end, "{events:?}");
    // stopOptimizeSpace leaves a pass alone.
    e.ondemand.optimize_storage(&e.platform, 5).unwrap();
    e.ondemand.stop_optimize(&e.platform).unwrap();
    drain(&mut e);
    assert_eq!(
        optimize_events(&e).last().unwrap(),
        &(
            5,
            OptimizeSpaceProgress {
                state: OptimizeState::Completed,
                progress: 100
            }
        )
    );
}

#[test]
fn optimize_failures_say_why_with_the_codes_optimize_storage_lists() {
    // The file system fails on a candidate: 13900042, never skipped in silence.
    let mut e = aged_engine(&[("old", 40, 100)]);
    e.platform
        .0
        .borrow_mut()
        .stat_errors
        .insert("cloud/old".into(), IoErrorKind::Other);
    e.ondemand.optimize_storage(&e.platform, L).unwrap();
    drain(&mut e);
    assert_eq!(optimize_events(&e).last().unwrap().1.state, OptimizeState::Failed);
    let failures = std::mem::take(&mut e.platform.0.borrow_mut().optimize_failures);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].1.code, codes::UNKNOWN, "{failures:?}");
    assert!(local(&e, "old").is_some());

    // The cloud cannot be asked: the service failed (13600001).
    let mut e = aged_engine(&[("old", 40, 100)]);
    e.platform.0.borrow_mut().cloud_error = Some(crate::engine::CloudError::new(CloudErrorKind::Network, "down"));
    e.ondemand.start_optimize(&e.platform, u64::MAX, 30, Some(L)).unwrap();
    drain(&mut e);
    assert_eq!(optimize_events(&e).last().unwrap().1.state, OptimizeState::Failed);
    let failures = std::mem::take(&mut e.platform.0.borrow_mut().optimize_failures);
    assert_eq!(failures[0].1.code, codes::SERVICE_FAILED, "{failures:?}");
    assert!(local(&e, "old").is_some(), "nothing evicted unchecked");

    // A broken store refuses the task before it starts (22400005).
    let mut e = aged_engine(&[("old", 40, 100)]);
    e.platform.0.borrow_mut().meta_broken = true;
    let err = e
        .ondemand
        .start_optimize(&e.platform, u64::MAX, 30, Some(L))
        .unwrap_err();
    assert_eq!(err.code, codes::INTERNAL, "{err:?}");
    assert!(e.ondemand.optimize_storage(&e.platform, L).is_err());
    assert_eq!(e.tick(), Tick::Idle);
    assert!(optimize_events(&e).is_empty(), "nothing ran");
}

#[test]
fn records_rolled_back_past_an_eviction_never_delete_the_cloud_copy() {
    let mut e = synced_engine();
    // The store as it was before the eviction (restored from a backup, or
    // a journal cut short): it says b is a local file.
    let before = e.platform.0.borrow().meta.clone();
    e.ondemand.clean_cache(&e.platform, &e.syncs, &uri("b")).unwrap();
    assert_eq!(local(&e, "b"), None);
    e.platform.0.borrow_mut().meta = before;
    assert_eq!(sync(&mut e), completed());
    assert_eq!(
        e.platform.cloud("b").unwrap(),
        b"bbbbbbbbbb",
        "not read as deleted here"
    );
    assert_eq!(sync(&mut e), completed());
    assert_eq!(e.platform.cloud("b").unwrap(), b"bbbbbbbbbb");
    // A file deleted here (never evicted) still goes from the cloud.
    e.platform.remove_local("cloud/a");
    assert_eq!(sync(&mut e), completed());
    assert!(e.platform.cloud("a").is_none());
}

#[test]
fn an_eviction_the_file_system_refuses_fails_the_pass_with_13900042() {
    let mut e = aged_engine(&[("old", 40, 100)]);
    e.platform.0.borrow_mut().evict_error = Some(IoErrorKind::PermissionDenied);
    e.ondemand.optimize_storage(&e.platform, L).unwrap();
    drain(&mut e);
    assert_eq!(optimize_events(&e).last().unwrap().1.state, OptimizeState::Failed);
    let failures = std::mem::take(&mut e.platform.0.borrow_mut().optimize_failures);
    assert_eq!(failures[0].1.code, codes::UNKNOWN, "{failures:?}");
    assert!(local(&e, "old").is_some());
    assert!(!record(&e, "old").cloud_only, "its record went back");
}

#[test]
fn an_optimisation_waits_for_a_sync_of_its_folder() {
    let mut e = aged_engine(&[("old", 40, 100)]);
    e.platform.put_cloud("new-in-cloud", b"x");
    let id = e.syncs.create_file_sync(&e.platform, None).unwrap();
    e.syncs.start(&e.platform, id, false).unwrap();
    e.ondemand.optimize_storage(&e.platform, L).unwrap();
    drain(&mut e);
    assert_eq!(local(&e, "old"), None, "evicted once the run ended, not skipped");
    assert_eq!(optimize_events(&e).last().unwrap().1.state, OptimizeState::Completed);
}

#[test]
fn a_cloud_that_is_not_there_is_never_taken_for_a_file_it_lacks() {
    let e = synced_engine();
    // The whole cloud gone (its folder removed): every file reads missing,
    // and the cloud itself answers that it is not there.
    e.platform.remove_cloud("b");
    e.platform.0.borrow_mut().cloud_ready = false;
    let err = e.ondemand.clean_cache(&e.platform, &e.syncs, &uri("b")).unwrap_err();
    assert_eq!(err.code, codes::NETWORK_UNAVAILABLE, "{err:?}");
    // With the cloud there, a file it lacks is 13900002.
    e.platform.0.borrow_mut().cloud_ready = true;
    let err = e.ondemand.clean_cache(&e.platform, &e.syncs, &uri("b")).unwrap_err();
    assert_eq!(err.code, codes::NO_SUCH_FILE, "{err:?}");
    assert!(local(&e, "b").is_some());
}

#[test]
fn a_rollback_past_an_eviction_of_a_touched_file_deletes_nothing_and_lists_it_cloud_only() {
    let mut e = synced_engine();
    let before = e.platform.0.borrow().meta.clone();
    // Touched (same bytes, a new stamp) before it is evicted: the mark is
    // of the cloud's version, which the rolled-back record names too.
    let data = local(&e, "b").unwrap();
    e.platform.remove_local("cloud/b");
    put_local(&e, "b", &data);
    e.ondemand.clean_cache(&e.platform, &e.syncs, &uri("b")).unwrap();
    assert_eq!(local(&e, "b"), None);
    e.platform.0.borrow_mut().meta = before;
    assert_eq!(sync(&mut e), completed());
    assert_eq!(e.platform.cloud("b").unwrap(), b"bbbbbbbbbb");
    assert!(record(&e, "b").cloud_only, "recorded cloud-only again, so it is listed");
}

#[test]
fn a_mark_left_by_an_eviction_that_never_happened_shields_no_real_deletion() {
    let mut e = synced_engine();
    // The store refuses the eviction's commit (a full disk): the file stays.
    e.platform.0.borrow_mut().meta_broken = true;
    assert!(e.ondemand.clean_cache(&e.platform, &e.syncs, &uri("b")).is_err());
    e.platform.0.borrow_mut().meta_broken = false;
    assert!(local(&e, "b").is_some());
    // A power cut after the commit, before the file went: also no mark.
    e.platform.0.borrow_mut().crash_countdown = Some(2);
    let _ = e.ondemand.clean_cache(&e.platform, &e.syncs, &uri("c"));
    let platform = std::mem::replace(&mut e.platform, Fake::new()).restarted();
    let mut e = Engine::new(platform);
    e.init().unwrap();
    assert_eq!(sync(&mut e), completed());
    // The user deletes both: the deletions go to the cloud.
    for p in ["b", "c"] {
        if local(&e, p).is_some() {
            e.platform.remove_local(&format!("cloud/{p}"));
        }
    }
    assert_eq!(sync(&mut e), completed());
    assert!(e.platform.cloud("b").is_none(), "b's deletion went up");
    assert!(e.platform.cloud("c").is_none(), "c's deletion went up");
}

#[test]
fn a_file_put_back_by_hand_over_its_placeholder_loses_its_mark() {
    let mut e = synced_engine();
    let data = local(&e, "b").unwrap();
    let stamp = e.platform.0.borrow().local[&(APP.to_string(), "cloud/b".to_string())].clone();
    e.ondemand.clean_cache(&e.platform, &e.syncs, &uri("b")).unwrap();
    // The very file back (a hard link kept elsewhere): same stamp, same bytes.
    e.platform
        .0
        .borrow_mut()
        .local
        .insert((APP.to_string(), "cloud/b".to_string()), stamp);
    assert_eq!(local(&e, "b").unwrap(), data);
    assert_eq!(sync(&mut e), completed());
    assert!(!record(&e, "b").cloud_only);
    // Deleted by the user now: the deletion goes to the cloud.
    e.platform.remove_local("cloud/b");
    assert_eq!(sync(&mut e), completed());
    assert!(e.platform.cloud("b").is_none());
}
