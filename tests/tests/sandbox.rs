//! The sandbox promise, checked with a hostile component: a guest that
//! loops, allocates without end or traps is stopped and reported as
//! 13600001, the host goes on with a fresh instance, and the guest reaches
//! nothing but its imports.

use std::time::{Duration, Instant};

use cloudsync::{codes, CloudFileCache, SandboxLimits};
use cloudsync_tests::{evil_component, Harness, APP};

async fn evil() -> Harness {
    Harness::with(|b| {
        b.component(evil_component()).limits(SandboxLimits {
            memory_bytes: 32 << 20,
            call_budget: Duration::from_millis(500),
            ..SandboxLimits::default()
        })
    })
    .await
}

fn uri(what: &str) -> String {
    format!("file://{APP}/data/storage/el2/cloud/{what}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_guest_is_stopped_and_the_host_goes_on() {
    let h = evil().await;
    let cache = CloudFileCache::new(&h.rt);
    let started = Instant::now();
    let err = cache.start(&uri("loop")).await.unwrap_err();
    assert_eq!(err.code, codes::SERVICE_FAILED, "{err}");
    assert!(err.message.contains("ran for more than"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "stopped, not waited out");
    // A fresh instance serves the same object.
    cache.start(&uri("fine")).await.unwrap();
    cache.on("progress", |_| {}).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_allocating_without_end_is_stopped_at_its_memory_limit() {
    let h = evil().await;
    let cache = CloudFileCache::new(&h.rt);
    let err = cache.start(&uri("alloc")).await.unwrap_err();
    assert_eq!(err.code, codes::SERVICE_FAILED, "{err}");
    cache.start(&uri("fine")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_guest_is_reported_with_its_message_and_replaced() {
    let h = evil().await;
    let cache = CloudFileCache::new(&h.rt);
    let other = CloudFileCache::new(&h.rt);
    let err = cache.start(&uri("panic")).await.unwrap_err();
    assert_eq!(err.code, codes::SERVICE_FAILED);
    assert!(
        err.message.contains("deliberate panic"),
        "the guest's panic message is kept: {err}"
    );
    // Every object of the old instance is recreated in the new one.
    other.start(&uri("fine")).await.unwrap();
    cache.start(&uri("fine")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_reaches_no_files_no_environment_and_no_network() {
    let h = evil().await;
    std::env::set_var("CLOUDSYNC_SECRET_FOR_TEST", "x");
    let cache = CloudFileCache::new(&h.rt);
    let err = cache.start(&uri("probe")).await.unwrap_err();
    assert_eq!(err.message, "fs=denied env=0 args=0 net=denied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_keep_a_component_to_its_own_bundle() {
    let h = evil().await;
    let cache = CloudFileCache::new(&h.rt);
    let err = cache.start(&uri("trespass")).await.unwrap_err();
    assert_eq!(
        err.message,
        "list-up=refused list-deep=refused meta-other=refused meta-write=refused \
         bare-key=refused files-other=refused own=allowed scan-other=refused scan-up=refused \
         upload-other=refused ready-other=refused evict-other=refused evict-up=refused read-other=refused \
         write-other=refused write-up=refused put-other=refused read-cloud-up=refused \
         grant-flood=refused after-flood=allowed upload-flood=refused transfer-flood=refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_import_reaches_outside_the_area_through_a_symlink() {
    let h = evil().await;
    let outside = h.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"not the app's").unwrap();
    let folder = h.local("");
    std::fs::create_dir_all(&folder).unwrap();
    std::os::unix::fs::symlink(&outside, folder.join("out")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), folder.join("file-link")).unwrap();
    std::fs::write(folder.join("mine"), b"the app's").unwrap();
    h.put_cloud("x", b"cloud bytes");
    let cache = CloudFileCache::new(&h.rt);
    let err = cache.start(&uri("links")).await.unwrap_err();
    assert_eq!(
        err.message,
        "read-through=refused read-link=refused stat-through=refused mkdir-through=refused \
         remove-through=refused rename-through=refused rename-into=refused lazy-into=refused scan-through=refused \
         write-through=refused upload-link=refused read-file-link=refused write-file-through=refused"
    );
    let names: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["secret"], "nothing written, made or removed outside");
    assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"not the app's");
    assert!(!h.cloud_snapshot().contains_key("exfiltrated"));
}
