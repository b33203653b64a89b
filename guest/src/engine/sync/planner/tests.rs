//! Golden cases, then a seeded randomized check in the spirit of Dropbox's
//! CanopyCheck: random edits on both sides, interleaved with partial and
//! shuffled application of plans (a stop or a crash mid-run) and with edits
//! landing between the scan and the apply; then, with no more edits, the
//! trees must converge within a few rounds and no version a user wrote and
//! did not replace may be lost.

use super::*;
use crate::engine::fake::Rng;

fn stamp(n: u64) -> LocalStamp {
    LocalStamp {
        size: n,
        mtime_ns: n,
        ctime_ns: n,
        inode: n,
    }
}

fn local(n: u64, hash: &str) -> LocalFile {
    LocalFile {
        stamp: stamp(n),
        hash: Some(hash.into()),
        changed_in_place: false,
    }
}

fn remote(etag: &str, hash: Option<&str>) -> RemoteFile {
    RemoteFile {
        etag: etag.into(),
        size: 1,
        hash: hash.map(Into::into),
    }
}

fn synced(etag: &str, n: u64, hash: &str) -> SyncedFile {
    SyncedFile {
        etag: etag.into(),
        local: stamp(n),
        hash: Some(hash.into()),
        cloud_only: false,
        first_ms: 0,
    }
}

fn one(l: Option<LocalFile>, r: Option<RemoteFile>, s: Option<SyncedFile>) -> Vec<Op> {
    let mut lt = LocalTree::new();
    let mut rt = RemoteTree::new();
    let mut st = SyncedTree::new();
    // Filler files keep the empty-side guard out of the way.
    for t in 0..8u64 {
        let p = format!("z{t}");
        lt.insert(p.clone(), local(100 + t, "f"));
        rt.insert(p.clone(), remote(&format!("fe{t}"), None));
        st.insert(p, synced(&format!("fe{t}"), 100 + t, "f"));
    }
    if let Some(l) = l {
        lt.insert("a".into(), l);
    }
    if let Some(r) = r {
        rt.insert("a".into(), r);
    }
    if let Some(s) = s {
        st.insert("a".into(), s);
    }
    plan(&lt, &rt, &st, false).unwrap()
}

#[test]
fn golden_cases() {
    let s = || Some(synced("e1", 1, "h1"));
    // unchanged
    assert_eq!(one(Some(local(1, "h1")), Some(remote("e1", None)), s()), vec![]);
    // created on one side
    assert!(matches!(
        &one(Some(local(1, "h1")), None, None)[..],
        [Op::Upload { if_match: None, .. }]
    ));
    assert!(matches!(
        &one(None, Some(remote("e1", None)), None)[..],
        [Op::Download { expect_local: None, .. }]
    ));
    // modified on one side
    assert!(
        matches!(&one(Some(local(2, "h2")), Some(remote("e1", None)), s())[..], [Op::Upload { if_match: Some(e), .. }] if e == "e1")
    );
    assert!(matches!(
        &one(Some(local(1, "h1")), Some(remote("e2", None)), s())[..],
        [Op::Download {
            expect_local: Some(_),
            ..
        }]
    ));
    // deleted on one side
    assert!(matches!(
        &one(None, Some(remote("e1", None)), s())[..],
        [Op::DeleteRemote { .. }]
    ));
    assert!(matches!(
        &one(Some(local(1, "h1")), None, s())[..],
        [Op::DeleteLocal { .. }]
    ));
    // deleted on both
    assert!(matches!(&one(None, None, s())[..], [Op::ForgetSynced { .. }]));
    // an edit beats a delete, either way round
    assert!(matches!(
        &one(None, Some(remote("e2", None)), s())[..],
        [Op::Download { expect_local: None, .. }]
    ));
    assert!(matches!(
        &one(Some(local(2, "h2")), None, s())[..],
        [Op::Upload { if_match: None, .. }]
    ));
    // both changed: content-equal is no conflict; different content keeps both
    assert!(matches!(
        &one(Some(local(2, "h2")), Some(remote("e2", Some("h2"))), s())[..],
        [Op::RecordSynced { .. }]
    ));
    assert!(matches!(
        &one(Some(local(2, "h2")), Some(remote("e2", Some("h3"))), s())[..],
        [Op::KeepBoth { .. }]
    ));
    assert!(matches!(
        &one(Some(local(2, "h2")), Some(remote("e2", None)), None)[..],
        [Op::KeepBoth { .. }]
    ));
    // a same-size edit in the same second still changes the stamp (ns mtime, inode) and the hash
    assert!(matches!(
        &one(Some(local(2, "h9")), Some(remote("e1", None)), s())[..],
        [Op::Upload { .. }]
    ));
    // metadata-only change (touched file, same content): the record is refreshed, nothing moves
    assert!(matches!(
        &one(Some(local(7, "h1")), Some(remote("e1", None)), s())[..],
        [Op::RecordSynced { .. }]
    ));
}

#[test]
fn guards_refuse_what_looks_like_mass_deletion() {
    let mut lt = LocalTree::new();
    let mut rt = RemoteTree::new();
    let mut st = SyncedTree::new();
    for t in 0..6u64 {
        let p = format!("f{t}");
        lt.insert(p.clone(), local(t, "h"));
        rt.insert(p.clone(), remote(&format!("e{t}"), None));
        st.insert(p, synced(&format!("e{t}"), t, "h"));
    }
    assert!(matches!(
        plan(&LocalTree::new(), &rt, &st, false),
        Err(Refusal::SideLooksEmpty { side: Side::Local, .. })
    ));
    assert!(matches!(
        plan(&lt, &RemoteTree::new(), &st, false),
        Err(Refusal::SideLooksEmpty { side: Side::Cloud, .. })
    ));
    // One stray new file does not make an emptied side look full, and
    // confirming deletions does not confirm an emptied side.
    let stray_local: LocalTree = [("new".to_string(), local(99, "h99"))].into();
    let stray_remote: RemoteTree = [("new".to_string(), remote("e99", None))].into();
    let deletions_only = Options {
        confirm: Confirm {
            deletions: true,
            ..Confirm::default()
        },
        ..Options::default()
    };
    assert!(matches!(
        plan_with(&stray_local, &rt, &st, &Blocked::new(), deletions_only),
        Err(Refusal::SideLooksEmpty { side: Side::Local, .. })
    ));
    assert!(matches!(
        plan_with(&lt, &stray_remote, &st, &Blocked::new(), deletions_only),
        Err(Refusal::SideLooksEmpty { side: Side::Cloud, .. })
    ));
    let mostly_gone: LocalTree = lt.iter().take(2).map(|(k, v)| (k.clone(), v.clone())).collect();
    assert!(matches!(
        plan(&mostly_gone, &rt, &st, false),
        Err(Refusal::MassDeletion {
            deletes: 4,
            synced: 6,
            ..
        })
    ));
    assert_eq!(
        plan(&mostly_gone, &rt, &st, true).unwrap().len(),
        4,
        "the user confirmed"
    );
    let some_gone: LocalTree = lt.iter().take(4).map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(plan(&some_gone, &rt, &st, false).unwrap().len(), 2);
}

#[test]
fn placeholders_stand_for_cloud_files_and_their_absence_is_no_deletion() {
    let opts = Options {
        placeholders: true,
        ..Options::default()
    };
    let mut rt = RemoteTree::new();
    rt.insert("p".into(), remote("e1", None));
    let mut st = SyncedTree::new();
    let ops = plan_with(&LocalTree::new(), &rt, &st, &Blocked::new(), opts).unwrap();
    assert!(
        matches!(&ops[..], [Op::Placeholder { etag, .. }] if etag == "e1"),
        "{ops:?}"
    );
    // Recorded cloud-only: nothing to do, and an empty device is fine.
    let mut cloud_only = synced("e1", 0, "h");
    cloud_only.cloud_only = true;
    st.insert("p".into(), cloud_only);
    assert_eq!(
        plan_with(&LocalTree::new(), &rt, &st, &Blocked::new(), opts).unwrap(),
        vec![]
    );
    // Changed in the cloud: a new placeholder; gone from the cloud: forgotten.
    rt.insert("p".into(), remote("e2", None));
    assert!(
        matches!(&plan_with(&LocalTree::new(), &rt, &st, &Blocked::new(), opts).unwrap()[..], [Op::Placeholder { etag, .. }] if etag == "e2")
    );
    assert!(matches!(
        &plan_with(
            &LocalTree::new(),
            &RemoteTree::new(),
            &st,
            &Blocked::new(),
            Options {
                confirm: Confirm::ALL,
                ..opts
            }
        )
        .unwrap()[..],
        [Op::ForgetSynced { .. }]
    ));
    // A local file where the placeholder was is new local content.
    let mut lt = LocalTree::new();
    lt.insert("p".into(), local(5, "new"));
    assert!(matches!(
        &plan_with(&lt, &rt, &st, &Blocked::new(), opts).unwrap()[..],
        [Op::KeepBoth { .. }]
    ));
}

#[test]
fn cloud_only_records_do_not_dilute_the_mass_deletion_guard() {
    let mut lt = LocalTree::new();
    let mut rt = RemoteTree::new();
    let mut st = SyncedTree::new();
    for i in 0..10u64 {
        let p = format!("held{i}");
        if i >= 6 {
            lt.insert(p.clone(), local(i, "h"));
        }
        rt.insert(p.clone(), remote(&format!("e{i}"), None));
        st.insert(p, synced(&format!("e{i}"), i, "h"));
    }
    for i in 0..90u64 {
        let p = format!("cloud-only{i}");
        rt.insert(p.clone(), remote(&format!("c{i}"), None));
        let mut s = synced(&format!("c{i}"), 0, "h");
        s.cloud_only = true;
        st.insert(p, s);
    }
    assert!(matches!(
        plan(&lt, &rt, &st, false),
        Err(Refusal::MassDeletion {
            deletes: 6,
            synced: 10,
            ..
        })
    ));
}

/// Both sides and the synced tree, as plain maps of content.
#[derive(Default)]
struct World {
    local: BTreeMap<String, (String, LocalStamp)>,
    remote: BTreeMap<String, (String, String)>,
    synced: SyncedTree,
    clock: u64,
    /// Every version a user wrote.
    written: BTreeSet<String>,
    /// Versions a user replaced or deleted on purpose.
    replaced: BTreeSet<String>,
    remote_hashes: bool,
}

impl World {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn scan(&self) -> (LocalTree, RemoteTree) {
        let lt = self
            .local
            .iter()
            .map(|(p, (c, s))| {
                (
                    p.clone(),
                    LocalFile {
                        stamp: *s,
                        hash: Some(c.clone()),
                        changed_in_place: false,
                    },
                )
            })
            .collect();
        let rt = self
            .remote
            .iter()
            .map(|(p, (c, e))| {
                (
                    p.clone(),
                    RemoteFile {
                        etag: e.clone(),
                        size: c.len() as u64,
                        hash: self.remote_hashes.then(|| c.clone()),
                    },
                )
            })
            .collect();
        (lt, rt)
    }

    fn user_edit(&mut self, rng: &mut Rng, round: u64) {
        let path = format!("p{}", rng.below(5));
        let on_local = rng.below(2) == 0;
        let old = if on_local {
            self.local.get(&path).map(|v| v.0.clone())
        } else {
            self.remote.get(&path).map(|v| v.0.clone())
        };
        let action = rng.below(10);
        if let (true, Some(old)) = (action < 2, old.clone()) {
            // delete
            self.replaced.insert(old);
            if on_local {
                self.local.remove(&path);
            } else {
                self.remote.remove(&path);
            }
            return;
        }
        // write: a new version, or (sometimes) content equal to the other side's
        let other = if on_local {
            self.remote.get(&path).map(|v| v.0.clone())
        } else {
            self.local.get(&path).map(|v| v.0.clone())
        };
        let content = match other {
            Some(c) if action == 9 => c,
            _ => format!("v{round}-{}", rng.next() % 1_000_000),
        };
        if let Some(o) = old {
            self.replaced.insert(o);
        }
        self.written.insert(content.clone());
        let t = self.tick();
        if on_local {
            self.local.insert(
                path,
                (
                    content,
                    LocalStamp {
                        size: 1,
                        mtime_ns: t,
                        ctime_ns: t,
                        inode: t,
                    },
                ),
            );
        } else {
            self.remote.insert(path, (content, format!("e{t}")));
        }
    }

    /// Applies one operation as the executor does: only if both sides are
    /// still what the operation expects.
    fn apply(&mut self, op: &Op) {
        let local_is = |w: &World, p: &str, s: Option<LocalStamp>| w.local.get(p).map(|v| v.1) == s;
        let remote_is = |w: &World, p: &str, e: Option<&str>| w.remote.get(p).map(|v| v.1.as_str()) == e;
        match op.clone() {
            Op::Upload {
                path,
                expect_local,
                if_match,
            } => {
                if local_is(self, &path, Some(expect_local)) && remote_is(self, &path, if_match.as_deref()) {
                    let content = self.local[&path].0.clone();
                    let etag = format!("e{}", self.tick());
                    self.remote.insert(path.clone(), (content.clone(), etag.clone()));
                    self.synced.insert(
                        path,
                        SyncedFile {
                            etag,
                            local: expect_local,
                            hash: Some(content),
                            cloud_only: false,
                            first_ms: 0,
                        },
                    );
                }
            }
            Op::Download {
                path,
                etag,
                expect_local,
                ..
            } => {
                if local_is(self, &path, expect_local) && remote_is(self, &path, Some(&etag)) {
                    let content = self.remote[&path].0.clone();
                    let t = self.tick();
                    let s = LocalStamp {
                        size: 1,
                        mtime_ns: t,
                        ctime_ns: t,
                        inode: t,
                    };
                    self.local.insert(path.clone(), (content.clone(), s));
                    self.synced.insert(
                        path,
                        SyncedFile {
                            etag,
                            local: s,
                            hash: Some(content),
                            cloud_only: false,
                            first_ms: 0,
                        },
                    );
                }
            }
            Op::DeleteLocal { path, expect_local } => {
                if local_is(self, &path, Some(expect_local)) {
                    self.local.remove(&path);
                    self.synced.remove(&path);
                }
            }
            Op::DeleteRemote { path, etag } => {
                if remote_is(self, &path, Some(&etag)) {
                    self.remote.remove(&path);
                    self.synced.remove(&path);
                }
            }
            Op::KeepBoth {
                path,
                expect_local,
                etag,
                ..
            } => {
                if local_is(self, &path, Some(expect_local)) && remote_is(self, &path, Some(&etag)) {
                    let (content, _) = self.local.remove(&path).unwrap();
                    let mut n = 1;
                    while self.local.contains_key(&format!("{path} (conflict {n})")) {
                        n += 1;
                    }
                    let t = self.tick();
                    self.local.insert(
                        format!("{path} (conflict {n})"),
                        (
                            content,
                            LocalStamp {
                                size: 1,
                                mtime_ns: t,
                                ctime_ns: t,
                                inode: t,
                            },
                        ),
                    );
                    self.apply(&Op::Download {
                        path,
                        etag,
                        expect_local: None,
                        base_hash: None,
                    });
                }
            }
            Op::RecordSynced {
                path,
                etag,
                local,
                hash,
            } => {
                if local_is(self, &path, Some(local)) && remote_is(self, &path, Some(&etag)) {
                    self.synced.insert(
                        path,
                        SyncedFile {
                            etag,
                            local,
                            hash,
                            cloud_only: false,
                            first_ms: 0,
                        },
                    );
                }
            }
            Op::Placeholder { .. } => unreachable!("no placeholders without the option"),
            Op::ForgetSynced { path } => {
                if !self.local.contains_key(&path) && !self.remote.contains_key(&path) {
                    self.synced.remove(&path);
                }
            }
        }
    }

    /// One run: scan, plan, then apply a shuffled prefix of the plan (all of
    /// it when `complete`), with `edits` user edits landing after the scan.
    fn run(&mut self, rng: &mut Rng, complete: bool, edits: u64, round: u64, confirmed: bool) -> usize {
        let (lt, rt) = self.scan();
        let Ok(mut ops) = plan(&lt, &rt, &self.synced, confirmed) else {
            return 0;
        };
        for _ in 0..edits {
            self.user_edit(rng, round);
        }
        for i in (1..ops.len()).rev() {
            ops.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let n = if complete {
            ops.len()
        } else {
            rng.below(ops.len() as u64 + 1) as usize
        };
        for op in &ops[..n] {
            self.apply(op);
        }
        ops.len()
    }

    fn check_nothing_lost(&self, seed: u64) {
        let present: BTreeSet<&String> = self
            .local
            .values()
            .map(|v| &v.0)
            .chain(self.remote.values().map(|v| &v.0))
            .collect();
        for v in &self.written {
            if !self.replaced.contains(v) {
                assert!(present.contains(v), "seed {seed}: version {v} was lost");
            }
        }
    }
}

fn random_run(seed: u64) {
    let mut rng = Rng::seeded(seed);
    let mut w = World {
        remote_hashes: seed.is_multiple_of(2),
        ..World::default()
    };
    for round in 0..30 {
        for _ in 0..rng.below(4) {
            w.user_edit(&mut rng, round);
        }
        let edits_mid_run = if rng.below(4) == 0 { 1 } else { 0 };
        let complete = rng.below(3) != 0;
        w.run(&mut rng, complete, edits_mid_run, round, false);
        w.check_nothing_lost(seed);
    }
    // No more edits: converge within a bounded number of complete runs (the
    // user confirming any deletions the guards held back).
    let mut rounds = 0;
    while w.run(&mut rng, true, 0, 1000, true) > 0 {
        rounds += 1;
        assert!(rounds <= 10, "seed {seed}: no convergence after 10 runs");
    }
    w.check_nothing_lost(seed);
    let local: BTreeMap<&String, &String> = w.local.iter().map(|(p, v)| (p, &v.0)).collect();
    let remote: BTreeMap<&String, &String> = w.remote.iter().map(|(p, v)| (p, &v.0)).collect();
    assert_eq!(local, remote, "seed {seed}: both sides hold the same files");
    assert_eq!(
        w.synced.keys().collect::<Vec<_>>(),
        local.keys().copied().collect::<Vec<_>>(),
        "seed {seed}: the synced tree agrees"
    );
}

#[test]
fn thousands_of_random_histories_converge_and_lose_nothing() {
    let seeds: u64 = crate::engine::fake::env_or("PLANNER_SEEDS", 3000);
    for seed in 1..=seeds {
        random_run(seed);
    }
}

/// A plan larger than its window keeps the window's ops and counts the rest
/// for the guards; a later window may delete no more than was counted.
#[test]
fn a_plan_past_its_window_is_counted_whole_and_goes_on_after_the_window() {
    let window = |allowance| Options {
        window: Some(2),
        allowance,
        ..Options::default()
    };
    // Five in sync, two deleted here (4th and 5th), two new here.
    let mut planner = Planner::new(window(None));
    for (i, path) in ["a", "b", "c", "d", "e", "f", "g"].iter().enumerate() {
        let n = i as u64;
        let s = synced(&format!("e{n}"), n, "h");
        let l = local(n, "h");
        let r = remote(&format!("e{n}"), None);
        match i {
            0 | 1 => planner.path(path, Some(&l), None, None, false), // new here
            2 => planner.path(path, Some(&l), Some(&r), Some(&s), false),
            3 | 4 => planner.path(path, None, Some(&r), Some(&s), false), // deleted here
            _ => planner.path(path, Some(&l), Some(&r), Some(&s), false),
        }
    }
    let plan = planner.finish().unwrap();
    assert_eq!(plan.ops.len(), 2);
    assert_eq!(plan.tally.deletes, 2, "the rest is counted");
    assert_eq!(
        plan.rest,
        Some(Rest {
            after: "b".into(),
            deletes: 2
        })
    );
    // The next window: within what was counted it goes; past it, refused.
    let go = |deletes: usize| {
        let mut planner = Planner::new(window(Some(2)));
        for i in 0..deletes {
            let n = i as u64;
            planner.path(
                &format!("x{i}"),
                None,
                Some(&remote("e", None)),
                Some(&synced("e", n, "h")),
                false,
            );
        }
        let stopped = planner.full();
        planner.finish_window(stopped)
    };
    assert_eq!(go(1).unwrap().rest, None, "the end of the tree");
    let full = go(2).unwrap();
    assert_eq!(
        full.rest,
        Some(Rest {
            after: "x1".into(),
            deletes: 0
        })
    );
    assert_eq!(go(3).unwrap_err(), Refusal::DeletionsGrew { counted: 2, now: 3 });
}
