//! A hostile plugin: it implements the cloudsync world, and its
//! `CloudFileCache.start` misbehaves as the URI asks, so that the tests can
//! check the host's sandbox promises:
//! - `…/loop`: spins forever (the time budget must stop it);
//! - `…/alloc`: allocates without end (the memory limit must stop it);
//! - `…/panic`: panics (a trap);
//! - `…/probe`: tries the file system, the environment and the network,
//!   and reports what it could reach as the error message;
//! - `…/trespass`: uses its imports against other apps' data (a listing
//!   that climbs out of its cloud folder, another bundle's metadata and
//!   files) and reports what the host allowed;
//! - anything else: succeeds.
#![cfg(target_arch = "wasm32")]

mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "cloudsync" });
}

use bindings::exports::ohos::cloudsync::{engine, file_cache, on_demand, sync};
use bindings::ohos::cloudsync::types::{Error, FileSyncState, LocalStamp, OptimizeSpaceParam, WritePrecondition};
use bindings::ohos::cloudsync::{cloud, files, hashing, identity, leases, metadata, transfers};

struct Evil;

impl engine::Guest for Evil {
    fn init() -> Result<(), Error> {
        Ok(())
    }
    fn tick() -> engine::TickOutcome {
        engine::TickOutcome {
            next: engine::TickResult::Idle,
            events: Vec::new(),
        }
    }
}

/// The sync exports exist only so that the world is complete: a plugin
/// that does not sync says so.
fn no_sync<T>() -> Result<T, Error> {
    Err(Error {
        code: 13_600_001,
        message: "this plugin does not sync".into(),
    })
}

impl sync::Guest for Evil {
    type SyncObject = NoSync;
    fn get_file_sync_states(_uris: Vec<String>) -> Result<Vec<FileSyncState>, Error> {
        no_sync()
    }
    fn get_file_sync_state(_uri: String) -> Result<FileSyncState, Error> {
        no_sync()
    }
}

struct NoSync;

impl sync::GuestSyncObject for NoSync {
    fn file_sync(_bundle: Option<String>) -> Result<sync::SyncObject, Error> {
        no_sync()
    }
    fn gallery_sync() -> Result<sync::SyncObject, Error> {
        no_sync()
    }
    fn on(&self, _event: String, _listener: u64) -> Result<(), Error> {
        no_sync()
    }
    fn off(&self, _event: String, _listener: Option<u64>) -> Result<(), Error> {
        no_sync()
    }
    fn start(&self, _confirm: sync::Confirmation) -> Result<(), Error> {
        no_sync()
    }
    fn plan(&self, _confirm: sync::Confirmation) -> Result<(), Error> {
        no_sync()
    }
    fn stop(&self) -> Result<(), Error> {
        no_sync()
    }
    fn get_last_sync_time(&self) -> Result<u64, Error> {
        no_sync()
    }
    fn report(&self) -> Result<sync::SyncReport, Error> {
        no_sync()
    }
}

impl file_cache::Guest for Evil {
    type CloudFileCache = Cache;
}

struct Cache;

impl file_cache::GuestCloudFileCache for Cache {
    fn new() -> Self {
        Cache
    }
    fn on(&self, _event: String, _listener: u64) -> Result<(), Error> {
        Ok(())
    }
    fn off(&self, _event: String, _listener: Option<u64>) -> Result<(), Error> {
        Ok(())
    }
    fn start(&self, uri: String) -> Result<(), Error> {
        if uri.ends_with("/loop") {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        if uri.ends_with("/alloc") {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        if uri.ends_with("/panic") {
            panic!("deliberate panic in the evil guest");
        }
        if uri.ends_with("/trespass") {
            let me = identity::caller_bundle();
            let allowed = |ok: bool| if ok { "allowed" } else { "refused" };
            let mine = files::Area::open(&me).expect("its own area");
            let my_cloud = cloud::Bucket::open(&me).expect("its own bucket");
            // Another app's area or bucket is refused when asked for; every
            // use of it below is then refused too.
            let other = files::Area::open("other.app");
            let other_cloud = cloud::Bucket::open("other.app");
            let in_other = |f: &dyn Fn(&files::Area) -> bool| other.as_ref().is_ok_and(f);
            let in_other_cloud = |f: &dyn Fn(&cloud::Bucket) -> bool| other_cloud.as_ref().is_ok_and(f);
            let list_up = allowed(my_cloud.list_page("../", None, 100).is_ok());
            let list_deep = allowed(my_cloud.list_page("a/../../", None, 100).is_ok());
            let meta_other = allowed(metadata::get("partial/other.app/x").is_ok());
            let change = metadata::MetaChange {
                key: "partial/other.app/x".into(),
                value: Some(b"{}".to_vec()),
            };
            let meta_write = allowed(metadata::commit(&[change]).is_ok());
            let bare_key = allowed(metadata::get("no-bundle").is_ok());
            let files_other = allowed(in_other(&|a| a.stat("cloud/x").is_ok()));
            let own = allowed(metadata::get(&format!("partial/{me}/x")).is_ok());
            let scan_other = allowed(in_other(&|a| a.walk_page("cloud", None, 100).is_ok()));
            let scan_up = allowed(mine.walk_page("..", None, 100).is_ok());
            let upload = transfers::UploadRequest {
                local_path: "cloud/x".into(),
                cloud_path: "x".into(),
                precondition: WritePrecondition::None,
                expect: None,
            };
            let upload_other = allowed(in_other(&|a| transfers::start_upload(a, &my_cloud, &upload).is_ok()));
            let ready_other = allowed(in_other_cloud(&|b| b.ready().is_ok()));
            let nothing = LocalStamp {
                size: 0,
                mtime_ns: 0,
                ctime_ns: 0,
                inode: 0,
            };
            let evict_other = allowed(in_other(&|a| {
                leases::evict(a, "cloud/x", nothing, ".staging/a").is_ok()
            }));
            let evict_up = allowed(leases::evict(&mine, "../other.app/cloud/x", nothing, ".staging/a").is_ok());
            let read_other = allowed(in_other(&|a| a.read_file("cloud/x", 0, 10).is_ok()));
            let write_other = allowed(in_other(&|a| a.write_file("cloud/x", 0, b"mine").is_ok()));
            let write_up = allowed(mine.write_file("../other.app/cloud/x", 0, b"mine").is_ok());
            let put_other = allowed(in_other_cloud(&|b| {
                b.begin_upload("x", &WritePrecondition::None).is_ok()
            }));
            let read_cloud_up = allowed(my_cloud.read("../other.app/x", 0, 10, None).is_ok());
            // Grants without end: the host's table is bounded.
            let mut hoard = Vec::new();
            let flood = loop {
                match files::Area::open(&me) {
                    Ok(area) if hoard.len() < 100_000 => hoard.push(area),
                    Ok(_) => break "allowed",
                    Err(_) => break "refused",
                }
            };
            drop(hoard);
            let after_flood = allowed(files::Area::open(&me).is_ok());
            // Uploads and transfers without end: bounded too.
            let mut uploads = Vec::new();
            let upload_flood = loop {
                match my_cloud.begin_upload(&format!("flood/{}", uploads.len()), &WritePrecondition::None) {
                    Ok(id) if uploads.len() < 10_000 => uploads.push(id),
                    Ok(_) => break "allowed",
                    Err(_) => break "refused",
                }
            };
            for id in uploads {
                cloud::abort_upload(id);
            }
            let mut started = Vec::new();
            let transfer_flood = loop {
                let request = transfers::DownloadRequest {
                    cloud_path: "no-such-object".into(),
                    local_path: format!("flood/{}", started.len() % 8),
                    offset: 0,
                    if_match: None,
                    durable: false,
                };
                match transfers::start_download(&mine, &my_cloud, &request) {
                    Ok(id) if started.len() < 5_000 => started.push(id),
                    Ok(_) => break "allowed",
                    Err(_) => break "refused",
                }
            };
            for id in started {
                transfers::cancel(id);
                transfers::release(id);
            }
            return Err(Error {
                code: 1,
                message: format!(
                    "list-up={list_up} list-deep={list_deep} meta-other={meta_other} meta-write={meta_write} \
                     bare-key={bare_key} files-other={files_other} own={own} scan-other={scan_other} \
                     scan-up={scan_up} upload-other={upload_other} ready-other={ready_other} \
                     evict-other={evict_other} evict-up={evict_up} read-other={read_other} \
                     write-other={write_other} write-up={write_up} put-other={put_other} read-cloud-up={read_cloud_up} \
                     grant-flood={flood} after-flood={after_flood} upload-flood={upload_flood} \
                     transfer-flood={transfer_flood}"
                ),
            });
        }
        if uri.ends_with("/links") {
            // The test put `cloud/out` (a link to a folder outside) and
            // `cloud/file-link` (a link to a file outside) in the area.
            let me = identity::caller_bundle();
            let mine = files::Area::open(&me).expect("its own area");
            let my_cloud = cloud::Bucket::open(&me).expect("its own bucket");
            let allowed = |ok: bool| if ok { "allowed" } else { "refused" };
            let read_through = allowed(hashing::hash_file(&mine, "cloud/out/secret", "sha256").is_ok());
            let read_link = allowed(hashing::hash_file(&mine, "cloud/file-link", "sha256").is_ok());
            let stat_through = allowed(matches!(mine.stat("cloud/out/secret"), Ok(Some(_))));
            let mkdir_through = allowed(mine.create_dir_all("cloud/out/new").is_ok());
            let remove_through = allowed(mine.remove_file("cloud/out/secret").is_ok());
            let rename_through = allowed(
                mine.move_file("cloud/out/secret", "cloud/stolen", files::MoveMode::Replace, true)
                    .is_ok(),
            );
            let rename_into = allowed(
                mine.move_file("cloud/mine", "cloud/out/planted", files::MoveMode::Replace, true)
                    .is_ok(),
            );
            let lazy_into = allowed(
                mine.move_file("cloud/mine", "cloud/out/planted", files::MoveMode::NoReplace, false)
                    .is_ok(),
            );
            let scan_through = allowed(matches!(mine.walk_page("cloud/out", None, 100), Ok(Some(_))));
            let download = transfers::DownloadRequest {
                cloud_path: "x".into(),
                local_path: "cloud/out/written".into(),
                offset: 0,
                if_match: None,
                durable: false,
            };
            let write_through = allowed(transfers::start_download(&mine, &my_cloud, &download).is_ok());
            let upload = transfers::UploadRequest {
                local_path: "cloud/file-link".into(),
                cloud_path: "exfiltrated".into(),
                precondition: WritePrecondition::None,
                expect: None,
            };
            let upload_link = allowed(transfers::start_upload(&mine, &my_cloud, &upload).is_ok());
            let read_file_link = allowed(mine.read_file("cloud/file-link", 0, 100).is_ok());
            let write_file_through = allowed(mine.write_file("cloud/out/written2", 0, b"x").is_ok());
            return Err(Error {
                code: 1,
                message: format!(
                    "read-through={read_through} read-link={read_link} stat-through={stat_through} \
                     mkdir-through={mkdir_through} remove-through={remove_through} rename-through={rename_through} \
                     rename-into={rename_into} lazy-into={lazy_into} scan-through={scan_through} write-through={write_through} \
                     upload-link={upload_link} read-file-link={read_file_link} write-file-through={write_file_through}"
                ),
            });
        }
        if uri.ends_with("/probe") {
            let fs = match std::fs::read_dir("/") {
                Ok(_) => "reachable",
                Err(_) => "denied",
            };
            let env = std::env::vars().count();
            let args = std::env::args().count();
            let net = match std::net::TcpStream::connect("127.0.0.1:1") {
                Ok(_) => "reachable",
                Err(_) => "denied",
            };
            return Err(Error {
                code: 1,
                message: format!("fs={fs} env={env} args={args} net={net}"),
            });
        }
        Ok(())
    }
    fn stop(&self, _uri: String, _need_clean: bool) -> Result<(), Error> {
        Ok(())
    }
    fn clean_cache(&self, _uri: String) -> Result<(), Error> {
        no_sync()
    }
}

impl on_demand::Guest for Evil {
    type Download = NoSync;
    fn start_optimize_space(_param: OptimizeSpaceParam, _listener: Option<u64>) -> Result<(), Error> {
        no_sync()
    }
    fn stop_optimize_space() -> Result<(), Error> {
        no_sync()
    }
    fn optimize_storage(_listener: u64) -> Result<(), Error> {
        no_sync()
    }
    fn list_files(_gallery: bool, _after: Option<String>, _max: u32) -> Result<on_demand::FileListing, Error> {
        no_sync()
    }
}

impl on_demand::GuestDownload for NoSync {
    fn create() -> Result<on_demand::Download, Error> {
        no_sync()
    }
    fn on(&self, _event: String, _listener: u64) -> Result<(), Error> {
        no_sync()
    }
    fn off(&self, _event: String, _listener: Option<u64>) -> Result<(), Error> {
        no_sync()
    }
    fn start(&self, _uri: String) -> Result<(), Error> {
        no_sync()
    }
    fn stop(&self, _uri: String) -> Result<(), Error> {
        no_sync()
    }
}

bindings::export!(Evil with_types_in bindings);
