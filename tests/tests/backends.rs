//! The cloud contract, against every backend on a real server: plain files
//! at their relative paths, etags that change with the content (same size,
//! same second too), ranged reads, conditional writes and deletes, streamed
//! multipart uploads, error mapping; and rclone, a third-party client, sees
//! exactly what cloudsync wrote, while cloudsync downloads what rclone put.

use std::process::Command;

use cloudsync::cloud::{bytes_stream, list_all, listing, Cloud, CloudErrorKind, Listed, Precondition};
use cloudsync::State;
use cloudsync_tests::{bytes, Backend, Harness, Recorder, APP};
use tokio::io::AsyncReadExt;

async fn read_all(cloud: &dyn Cloud, key: &str, offset: u64) -> Vec<u8> {
    let (_, mut stream) = cloud.open(key, offset, None).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    out
}

async fn contract(backend: Backend) {
    let h = Harness::on(backend).await;
    let cloud = h.raw.as_ref();
    let key = format!("{APP}/docs/a.txt");

    // Write, stat, read whole and from an offset; the file is plain on disk.
    let v1 = cloud
        .put(&key, bytes_stream(b"hello world".to_vec()), Precondition::IfAbsent)
        .await
        .unwrap();
    assert_eq!(v1.size, 11);
    assert!(!v1.etag.is_empty());
    assert_eq!(cloud.stat(&key).await.unwrap().etag, v1.etag);
    assert_eq!(read_all(cloud, &key, 0).await, b"hello world");
    assert_eq!(read_all(cloud, &key, 6).await, b"world");
    assert_eq!(std::fs::read(h.cloud_file("docs/a.txt")).unwrap(), b"hello world");

    // A same-size edit in the same second changes the etag.
    let v2 = cloud
        .put(
            &key,
            bytes_stream(b"HELLO WORLD".to_vec()),
            Precondition::IfMatch(v1.etag.clone()),
        )
        .await
        .unwrap();
    assert_ne!(v2.etag, v1.etag, "same size, same second, new content: a new etag");

    // Conditional operations refuse a stale etag and leave the object alone.
    let stale = cloud
        .put(
            &key,
            bytes_stream(b"lost update".to_vec()),
            Precondition::IfMatch(v1.etag.clone()),
        )
        .await;
    assert_eq!(stale.unwrap_err().kind, CloudErrorKind::PreconditionFailed);
    let exists = cloud
        .put(&key, bytes_stream(b"x".to_vec()), Precondition::IfAbsent)
        .await;
    assert_eq!(exists.unwrap_err().kind, CloudErrorKind::PreconditionFailed);
    assert_eq!(
        cloud.delete(&key, Some(&v1.etag)).await.unwrap_err().kind,
        CloudErrorKind::PreconditionFailed
    );
    assert_eq!(
        cloud.open(&key, 0, Some(&v1.etag)).await.err().unwrap().kind,
        CloudErrorKind::PreconditionFailed
    );
    assert_eq!(read_all(cloud, &key, 0).await, b"HELLO WORLD");

    // A large object is streamed up (in parts where the cloud has them).
    let big = bytes(20 << 20, 42);
    let big_key = format!("{APP}/big/blob.bin");
    let o = cloud
        .put(&big_key, bytes_stream(big.clone()), Precondition::None)
        .await
        .unwrap();
    assert_eq!(o.size, big.len() as u64);
    assert_eq!(std::fs::read(h.cloud_file("big/blob.bin")).unwrap(), big);
    assert_eq!(read_all(cloud, &big_key, 0).await, big);
    assert_eq!(read_all(cloud, &big_key, (10 << 20) + 3).await, big[(10 << 20) + 3..]);

    // Listing is recursive, keyed by relative path.
    let keys: Vec<String> = list_all(&h.raw, &format!("{APP}/"))
        .await
        .unwrap()
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, vec![format!("{APP}/big/blob.bin"), format!("{APP}/docs/a.txt")]);
    assert!(list_all(&h.raw, &format!("{APP}/nothing/"))
        .await
        .unwrap()
        .objects
        .is_empty());

    // A folder where a file must go is left alone, whatever the condition,
    // and said so (not a race to retry). S3 has no folders.
    if backend != Backend::S3 {
        let folder = format!("{APP}/big");
        for precondition in [
            Precondition::None,
            Precondition::IfAbsent,
            Precondition::IfMatch(o.etag.clone()),
        ] {
            let over = cloud.put(&folder, bytes_stream(b"x".to_vec()), precondition).await;
            assert_eq!(over.unwrap_err().kind, CloudErrorKind::Other, "{backend:?}");
        }
        assert_eq!(std::fs::read(h.cloud_file("big/blob.bin")).unwrap(), big);
    }

    // Errors map onto what the engine understands.
    let missing = format!("{APP}/missing.txt");
    assert_eq!(cloud.stat(&missing).await.unwrap_err().kind, CloudErrorKind::NotFound);
    assert_eq!(
        cloud.open(&missing, 0, None).await.err().unwrap().kind,
        CloudErrorKind::NotFound
    );
    cloud.delete(&key, Some(&v2.etag)).await.unwrap();
    assert_eq!(cloud.stat(&key).await.unwrap_err().kind, CloudErrorKind::NotFound);
    assert!(!h.cloud_file("docs/a.txt").exists());

    listings_stream_in_key_order(&h).await;
}

/// A listing comes a page at a time in byte order of the keys, also where
/// a folder's name sorts differently from its contents ("d.txt" < "d/x"
/// but "d" < "d.txt"), and goes on after any key.
async fn listings_stream_in_key_order(h: &Harness) {
    let names = [
        "order/a",
        "order/a b",
        "order/a-b",
        "order/a.txt",
        "order/a/b",
        "order/a/b/c",
        "order/a0",
        "order/A",
        "order/d.txt",
        "order/d/x",
        "order/d-x/y",
        "order/z/z/z/z",
        "order/é",
        "order/日本/x",
    ];
    let mut want: Vec<String> = names
        .iter()
        .filter(|n| **n != "order/a" && **n != "order/a/b") // folders here
        .map(|n| format!("{APP}/{n}"))
        .collect();
    want.sort();
    for key in &want {
        h.raw
            .put(key, bytes_stream(key.as_bytes().to_vec()), Precondition::IfAbsent)
            .await
            .unwrap();
    }
    let pages = |after: Option<String>, max: usize| {
        let mut cursor = listing(h.raw.clone(), &format!("{APP}/order/"), after.as_deref());
        async move {
            let mut got = Vec::new();
            loop {
                let page = cursor.next_page(max).await.unwrap();
                if page.is_empty() {
                    return got;
                }
                assert!(page.len() <= max);
                got.extend(page.into_iter().map(|l| match l {
                    Listed::Object(o) => o.key,
                    Listed::Skipped { key, why } => panic!("{key} skipped: {why}"),
                }));
            }
        }
    };
    for max in [1, 3, 1000] {
        assert_eq!(pages(None, max).await, want, "pages of {max}");
    }
    for (i, after) in want.iter().enumerate() {
        assert_eq!(pages(Some(after.clone()), 2).await, want[i + 1..], "after {after}");
    }
    // A key that is not there: what sorts after it.
    let mid = format!("{APP}/order/d.u");
    let rest: Vec<String> = want.iter().filter(|k| **k > mid).cloned().collect();
    assert_eq!(pages(Some(mid), 4).await, rest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_keeps_the_contract() {
    contract(Backend::Folder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webdav_keeps_the_contract() {
    contract(Backend::WebDav).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_keeps_the_contract() {
    contract(Backend::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_network_error() {
    for backend in [Backend::WebDav, Backend::S3] {
        let mut h = Harness::on(backend).await;
        let key = format!("{APP}/a.txt");
        h.server.take(); // stop the server
        let err = h.raw.stat(&key).await.unwrap_err();
        assert_eq!(err.kind, CloudErrorKind::Network, "{backend:?}: {err}");
    }
}

fn rclone(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("rclone");
    cmd.args(args)
        .args(["--config", "/dev/null", "--low-level-retries", "2", "--retries", "1"]);
    // Only what the test sets: machines here export AWS_* variables.
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("RCLONE_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("rclone is installed (make test installs it)");
    assert!(
        out.status.success(),
        "rclone {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

async fn third_party_client(backend: Backend) {
    let h = Harness::on(backend).await;
    let remote = &h.server.as_ref().unwrap().rclone_remote;
    // cloudsync writes; rclone lists and reads exactly that.
    h.raw
        .put(
            &format!("{APP}/notes/ours.txt"),
            bytes_stream(b"written by cloudsync".to_vec()),
            Precondition::None,
        )
        .await
        .unwrap();
    // (Listed folder by folder: s3s-fs cannot serve rclone's recursive listing.)
    let top = rclone(&["lsf", &format!("{remote}/{APP}")]);
    assert_eq!(String::from_utf8_lossy(&top.stdout).trim(), "notes/");
    let listing = rclone(&["lsf", &format!("{remote}/{APP}/notes")]);
    assert_eq!(String::from_utf8_lossy(&listing.stdout).trim(), "ours.txt");
    let cat = rclone(&["cat", &format!("{remote}/{APP}/notes/ours.txt")]);
    assert_eq!(cat.stdout, b"written by cloudsync");

    // rclone puts a file; cloudsync downloads it through CloudFileCache.
    let dir = tempfile::tempdir().unwrap();
    let theirs = bytes(3 << 20, 7);
    std::fs::write(dir.path().join("theirs.bin"), &theirs).unwrap();
    rclone(&[
        "copyto",
        dir.path().join("theirs.bin").to_str().unwrap(),
        &format!("{remote}/{APP}/photos/theirs.bin"),
    ]);
    let cache = h.cache();
    let (rec, _) = Recorder::attach(&cache);
    let uri = h.uri("photos/theirs.bin");
    cache.start(&uri).await.unwrap();
    assert_eq!(rec.terminal(&uri).await.state, State::Completed);
    assert_eq!(std::fs::read(h.local("photos/theirs.bin")).unwrap(), theirs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_sees_our_files_on_webdav_and_we_download_its() {
    third_party_client(Backend::WebDav).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclone_sees_our_files_on_s3_and_we_download_its() {
    third_party_client(Backend::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rclones_webdav_server_keeps_the_contract() {
    contract(Backend::RcloneDav).await;
}

/// Writers racing on one object, as devices on one cloud do: of those
/// conditional on the same version at most one succeeds, and a success is
/// what the cloud then holds (a lost update would be a success whose bytes
/// are gone).
async fn concurrent_conditional_writes(backend: Backend) {
    let h = Harness::on(backend).await;
    let cloud = h.raw.clone();
    let mut wins = 0;
    let rounds: u32 = std::env::var("RACE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(8);
    for round in 0..rounds {
        let key = format!("{APP}/race/{round}.txt");
        let base = cloud
            .put(&key, bytes_stream(b"base".to_vec()), Precondition::IfAbsent)
            .await
            .unwrap();
        let writers: Vec<_> = (0..6)
            .map(|i| {
                let (cloud, key, etag) = (cloud.clone(), key.clone(), base.etag.clone());
                tokio::spawn(async move {
                    let data = format!("round {round} writer {i}").into_bytes();
                    let r = cloud
                        .put(&key, bytes_stream(data.clone()), Precondition::IfMatch(etag))
                        .await;
                    (data, r)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for w in writers {
            let (data, r) = w.await.unwrap();
            match r {
                Ok(o) => winners.push((data, o)),
                Err(e) => assert_eq!(e.kind, CloudErrorKind::PreconditionFailed, "{backend:?}: {e}"),
            }
        }
        assert!(winners.len() <= 1, "{backend:?}: {} writers all won", winners.len());
        let now = read_all(cloud.as_ref(), &key, 0).await;
        match winners.first() {
            Some((data, o)) => {
                wins += 1;
                assert_eq!(&now, data, "{backend:?}: the winner's bytes are what the cloud holds");
                assert_eq!(cloud.stat(&key).await.unwrap().etag, o.etag);
            }
            None => assert_eq!(now, b"base"),
        }
        // Creating the same new name at once: at most one creator.
        let fresh = format!("{APP}/race/new-{round}.txt");
        let creators: Vec<_> = (0..6)
            .map(|i| {
                let (cloud, key) = (cloud.clone(), fresh.clone());
                tokio::spawn(async move {
                    let data = format!("creator {i}").into_bytes();
                    (
                        data.clone(),
                        cloud.put(&key, bytes_stream(data), Precondition::IfAbsent).await,
                    )
                })
            })
            .collect();
        let mut made = Vec::new();
        for c in creators {
            let (data, r) = c.await.unwrap();
            if r.is_ok() {
                made.push(data);
            }
        }
        assert!(made.len() <= 1, "{backend:?}: {} creators all won", made.len());
        if let Some(data) = made.first() {
            assert_eq!(&read_all(cloud.as_ref(), &fresh, 0).await, data);
        }
    }
    assert!(wins > 0, "{backend:?}: some round had a winner");
    // Nothing of the staging is left for other clients to see.
    let listing = list_all(&h.raw, &format!("{APP}/")).await.unwrap();
    assert!(listing
        .objects
        .iter()
        .all(|o| o.key.starts_with(&format!("{APP}/race/"))));
    // Every lock taken was released: none is left for the next writer to
    // wait out.
    let locks = h.cloud_dir.join(".cloudsync/locks");
    let left: Vec<_> = std::fs::read_dir(&locks)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{backend:?}: locks left: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_on_the_folder_cloud_lose_nothing() {
    concurrent_conditional_writes(Backend::Folder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_on_webdav_lose_nothing() {
    concurrent_conditional_writes(Backend::WebDav).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_on_rclones_webdav_lose_nothing() {
    concurrent_conditional_writes(Backend::RcloneDav).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_on_s3_lose_nothing() {
    concurrent_conditional_writes(Backend::S3).await;
}

/// What a killed upload left in the staging area goes: this device's at
/// once, other devices' once abandoned; a fresh one of another device stays.
async fn staging_is_swept(backend: Backend) {
    let h = Harness::on(backend).await;
    let cloud = h.raw.clone();
    for (key, data) in [
        (".cloudsync/staging/me/1-1-0", "mine, killed"),
        (".cloudsync/staging/other/1-1-0", "theirs, in progress"),
    ] {
        cloud
            .put(key, bytes_stream(data.as_bytes().to_vec()), Precondition::None)
            .await
            .unwrap();
    }
    let removed = cloud
        .sweep_staging("me", std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(removed, 1, "{backend:?}");
    assert!(cloud.stat(".cloudsync/staging/me/1-1-0").await.is_err());
    assert!(cloud.stat(".cloudsync/staging/other/1-1-0").await.is_ok());
    let removed = cloud.sweep_staging("me", std::time::Duration::ZERO).await.unwrap();
    assert_eq!(removed, 1, "{backend:?}: abandoned by its age");
    // The engine's folder is nobody's bundle: listings never show it.
    assert!(list_all(&h.raw, "")
        .await
        .unwrap()
        .objects
        .iter()
        .all(|o| !o.key.starts_with(".cloudsync")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_is_swept_on_every_backend_that_stages() {
    for backend in [Backend::Folder, Backend::WebDav, Backend::RcloneDav] {
        staging_is_swept(backend).await;
    }
}

/// Locks killed writers left are removed when a device starts, once old;
/// a fresh one (a writer at work) is kept.
async fn old_locks_are_swept(backend: Backend) {
    let h = Harness::on(backend).await;
    let cloud = h.raw.clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (old, fresh) = (now - 3_600_000, now);
    // What each backend's writers leave: a marker in a lock folder
    // (WebDAV), a lock object naming its writer and time (S3).
    let planted = match backend {
        Backend::S3 => [
            (
                format!(".cloudsync/locks/{:064x}", 1),
                format!(".cloudsync/staging/d/1-1-0 {old}"),
            ),
            (
                format!(".cloudsync/locks/{:064x}", 2),
                format!(".cloudsync/staging/d/1-1-1 {fresh}"),
            ),
        ],
        _ => [
            (format!(".cloudsync/locks/a01/d~1~{old}~0"), String::new()),
            (format!(".cloudsync/locks/a02/d~1~{fresh}~0"), String::new()),
        ],
    };
    for (key, data) in &planted {
        cloud
            .put(key, bytes_stream(data.as_bytes().to_vec()), Precondition::None)
            .await
            .unwrap();
    }
    cloud
        .sweep_staging("me", std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    let locks = h.cloud_dir.join(".cloudsync/locks");
    let left: Vec<String> = std::fs::read_dir(&locks)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let name = |key: &str| key.split('/').nth(2).unwrap().to_string();
    assert_eq!(left, [name(&planted[1].0)], "{backend:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_locks_are_swept_on_every_backend_that_locks() {
    for backend in [Backend::WebDav, Backend::RcloneDav, Backend::S3] {
        old_locks_are_swept(backend).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_in_the_folder_cloud_are_listed_as_skipped_and_never_followed() {
    let h = Harness::on(Backend::Folder).await;
    let outside = h.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"not the cloud's").unwrap();
    let bundle = h.cloud_dir.join(APP);
    std::fs::create_dir_all(&bundle).unwrap();
    std::os::unix::fs::symlink(&outside, bundle.join("docs")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), bundle.join("file-link")).unwrap();
    std::os::unix::fs::symlink(bundle.join("nowhere"), bundle.join("dangling")).unwrap();
    std::os::unix::fs::symlink("loop", bundle.join("loop")).unwrap();
    std::fs::write(bundle.join("plain.txt"), b"plain").unwrap();
    let cloud = h.raw.as_ref();
    let listing = list_all(&h.raw, &format!("{APP}/")).await.unwrap();
    let keys: Vec<&str> = listing.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, [format!("{APP}/plain.txt")]);
    let skipped: Vec<&str> = listing.skipped.iter().map(|(k, _)| k.as_str()).collect();
    for name in ["dangling", "docs", "file-link", "loop"] {
        assert!(skipped.contains(&format!("{APP}/{name}").as_str()), "{skipped:?}");
    }
    for key in ["docs/secret", "file-link"] {
        let key = format!("{APP}/{key}");
        assert!(cloud.open(&key, 0, None).await.is_err(), "{key} was read");
        assert!(cloud.stat(&key).await.is_err());
        assert!(cloud.delete(&key, None).await.is_err());
    }
    let planted = cloud
        .put(
            &format!("{APP}/docs/planted"),
            bytes_stream(b"x".to_vec()),
            Precondition::None,
        )
        .await;
    assert!(planted.is_err());
    assert!(cloud
        .put(
            &format!("{APP}/file-link"),
            bytes_stream(b"x".to_vec()),
            Precondition::None
        )
        .await
        .is_err());
    let names: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["secret"]);
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"not the cloud's");
    // Another program's file with the staging prefix is just a file now.
    std::fs::write(bundle.join(".cloudsync-put-123-4"), b"a user's").unwrap();
    let listing = list_all(&h.raw, &format!("{APP}/")).await.unwrap();
    assert!(listing.objects.iter().any(|o| o.key.ends_with(".cloudsync-put-123-4")));
}
