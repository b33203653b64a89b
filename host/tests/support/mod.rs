//! What the command-line campaigns share: the real servers on loopback (the
//! same helpers as the integration tests), a cloud of each kind, devices
//! (a root each) running the built `cloudsync` binary, versions a user
//! wrote, and a seeded generator.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub mod proxy;
#[path = "../../../tests/src/servers.rs"]
pub mod servers;

pub const APP: &str = "com.example.sim";

/// Which cloud.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Folder,
    WebDav,
    S3,
}

/// A cloud, with what a device needs to reach it and what another client
/// of it uses.
pub struct CloudSide {
    pub kind: Kind,
    pub server: Option<servers::Server>,
    /// The `--cloud` URL.
    pub url: String,
    /// Credentials, as the environment gives them to the command line.
    pub env: Vec<(String, String)>,
    /// Where the cloud keeps its objects as plain files.
    pub data_dir: PathBuf,
    /// Another client of the cloud (not cloudsync's engine).
    pub client: Arc<dyn cloudsync::cloud::Cloud>,
}

impl CloudSide {
    pub fn start(kind: Kind, dir: &Path) -> CloudSide {
        let (server, url, env, data_dir) = match kind {
            Kind::Folder => {
                let d = dir.join("cloud");
                std::fs::create_dir_all(&d).unwrap();
                (None, format!("dir://{}", d.display()), Vec::new(), d)
            }
            Kind::WebDav => {
                let s = servers::webdav(dir);
                let env = vec![
                    ("CLOUDSYNC_WEBDAV_USERNAME".to_string(), servers::DAV_USER.to_string()),
                    (
                        "CLOUDSYNC_WEBDAV_PASSWORD".to_string(),
                        servers::DAV_PASSWORD.to_string(),
                    ),
                ];
                let (url, data) = (s.url.clone(), s.data_dir.clone());
                (Some(s), url, env, data)
            }
            Kind::S3 => {
                let s = servers::s3(dir);
                let env = vec![
                    ("AWS_ACCESS_KEY_ID".to_string(), servers::S3_ACCESS_KEY.to_string()),
                    ("AWS_SECRET_ACCESS_KEY".to_string(), servers::S3_SECRET_KEY.to_string()),
                ];
                let (url, data) = (s.url.clone(), s.data_dir.clone());
                (Some(s), url, env, data)
            }
        };
        let client = Self::client(&url, &env);
        CloudSide {
            kind,
            server,
            url,
            env,
            data_dir,
            client,
        }
    }

    /// A client of the cloud at `url` with these credentials.
    pub fn client(url: &str, env: &[(String, String)]) -> Arc<dyn cloudsync::cloud::Cloud> {
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let settings = cloudsync::cloud::CloudSettings {
            access_key_id: get("AWS_ACCESS_KEY_ID"),
            secret_access_key: get("AWS_SECRET_ACCESS_KEY"),
            username: get("CLOUDSYNC_WEBDAV_USERNAME"),
            password: get("CLOUDSYNC_WEBDAV_PASSWORD"),
            ..Default::default()
        };
        cloudsync::cloud::open(url, &settings).expect("the cloud opens")
    }

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// Writes a file as another client of the cloud would.
    pub fn put(&self, path: &str, data: &[u8]) {
        if self.kind == Kind::Folder {
            let p = self.data_dir.join(APP).join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
            return;
        }
        let key = format!("{APP}/{path}");
        let data = data.to_vec();
        let client = self.client.clone();
        Self::block(async move {
            client
                .put(
                    &key,
                    cloudsync::cloud::bytes_stream(data),
                    cloudsync::cloud::Precondition::None,
                )
                .await
        })
        .expect("the cloud takes it");
    }

    pub fn remove(&self, path: &str) {
        if self.kind == Kind::Folder {
            let _ = std::fs::remove_file(self.data_dir.join(APP).join(path));
            return;
        }
        let key = format!("{APP}/{path}");
        let client = self.client.clone();
        let _ = Self::block(async move { client.delete(&key, None).await });
    }

    /// The app's files in the cloud, as plain files on the server's disk.
    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        files_under(&self.data_dir.join(APP))
    }

    /// What is left in the cloud's staging area (killed uploads).
    pub fn staging(&self) -> Vec<String> {
        files_under(&self.data_dir.join(".cloudsync/staging"))
            .into_keys()
            .collect()
    }
}

/// Every regular file under `dir` (not following links), with its bytes.
pub fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            let p = e.path();
            if t.is_dir() {
                walk(base, &p, out);
            } else if t.is_file() {
                if let Ok(data) = std::fs::read(&p) {
                    out.insert(p.strip_prefix(base).unwrap().to_string_lossy().into_owned(), data);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// One device: a root of its own, running the built binary.
pub struct Device {
    pub root: PathBuf,
    pub url: String,
    pub env: Vec<(String, String)>,
}

impl Device {
    pub fn new(root: PathBuf, cloud: &CloudSide) -> Device {
        Device {
            root,
            url: cloud.url.clone(),
            env: cloud.env.clone(),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cloudsync"));
        c.arg("--root").arg(&self.root);
        c.args(["--cloud", &self.url, "--app", APP]).args(args);
        for k in [
            "CLOUDSYNC_ROOT",
            "CLOUDSYNC_CLOUD",
            "CLOUDSYNC_APP",
            "CLOUDSYNC_CONFIG",
            "CLOUDSYNC_POLICY",
        ] {
            c.env_remove(k);
        }
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub fn folder(&self) -> PathBuf {
        self.root.join("apps").join(APP).join("cloud")
    }

    pub fn files(&self) -> BTreeMap<String, Vec<u8>> {
        files_under(&self.folder())
    }

    pub fn staging(&self) -> Vec<String> {
        files_under(&self.root.join("apps").join(APP).join(".staging"))
            .into_keys()
            .collect()
    }

    pub fn write(&self, path: &str, data: &[u8]) {
        let p = self.folder().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    /// Rewrites a file in place and puts its mtime back (as `touch -r` does).
    pub fn write_keeping_mtime(&self, path: &str, data: &[u8]) {
        let p = self.folder().join(path);
        let Ok(m) = std::fs::metadata(&p) else {
            return self.write(path, data);
        };
        let mtime = m.modified().unwrap();
        std::fs::write(&p, data).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    }

    pub fn remove(&self, path: &str) {
        let _ = std::fs::remove_file(self.folder().join(path));
    }
}

/// The versions users wrote, by their sha256.
#[derive(Default)]
pub struct Versions {
    pub written: BTreeSet<[u8; 32]>,
    pub replaced: BTreeSet<[u8; 32]>,
    next: u64,
}

pub fn digest(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

impl Versions {
    /// A new version of about `len` bytes, unlike any other.
    pub fn new_version(&mut self, rng: &mut Rng, len: usize) -> Vec<u8> {
        self.next += 1;
        let mut data = format!("version {} of the world's files\n", self.next).into_bytes();
        let mut x = rng.next() | 1;
        while data.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        data.truncate(len.max(40));
        self.written.insert(digest(&data));
        data
    }

    /// The user saw `old` and replaced or deleted it.
    pub fn replace(&mut self, old: Option<&[u8]>) {
        if let Some(old) = old {
            self.replaced.insert(digest(old));
        }
    }

    /// I1 and I2: every file holds a whole version a user wrote, and every
    /// version not replaced is somewhere.
    pub fn check(&self, what: &str, places: &[&BTreeMap<String, Vec<u8>>]) {
        let mut present = BTreeSet::new();
        for place in places {
            for (path, data) in place.iter() {
                let d = digest(data);
                assert!(
                    self.written.contains(&d),
                    "{what}: {path} holds no version a user wrote (torn?)"
                );
                present.insert(d);
            }
        }
        let lost: Vec<_> = self
            .written
            .iter()
            .filter(|v| !self.replaced.contains(*v) && !present.contains(*v))
            .collect();
        assert!(lost.is_empty(), "{what}: {} versions lost", lost.len());
    }
}

/// A small deterministic generator (xorshift).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The last JSON object a command printed (its result).
pub fn result(out: &Output) -> serde_json::Value {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// Runs `sync` until a run plans nothing (confirming every case), at most `n` times.
pub fn settle(device: &Device, n: usize) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..n {
        let out = device.run(&[
            "--json",
            "sync",
            "--yes",
            "--confirm-empty-device",
            "--confirm-empty-cloud",
        ]);
        last = result(&out);
        if last["report"]["planned"] == 0 && last["result"]["state"] == "COMPLETED" {
            return last;
        }
    }
    panic!("no convergence after {n} runs: {last}");
}
