//! One device root and a local-folder cloud in a temporary folder, and the
//! built `cloudsync` run on them as a user runs it (what the command-line
//! tests share; `mod`-included by each).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub app: &'static str,
}

impl Setup {
    pub fn new(app: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cloud")).unwrap();
        Setup { dir, app }
    }
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("device")
    }
    /// The cloud folder.
    pub fn cloud(&self) -> PathBuf {
        self.dir.path().join("cloud")
    }
    /// Where the cloud keeps the app's `path`.
    pub fn in_cloud(&self, path: &str) -> PathBuf {
        self.cloud().join(self.app).join(path)
    }
    pub fn put_cloud(&self, path: &str, data: &[u8]) {
        let p = self.in_cloud(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    /// The app's `path` on the device.
    pub fn local(&self, path: &str) -> PathBuf {
        self.root().join("apps").join(self.app).join("cloud").join(path)
    }
    /// Files in the app's staging folder.
    pub fn staging(&self) -> usize {
        std::fs::read_dir(self.root().join("apps").join(self.app).join(".staging")).map_or(0, |d| d.count())
    }
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cloudsync"));
        c.arg("--root").arg(self.root());
        c.arg("--cloud").arg(format!("dir://{}", self.cloud().display()));
        c.args(["--app", self.app]).args(args);
        for v in [
            "CLOUDSYNC_ROOT",
            "CLOUDSYNC_CLOUD",
            "CLOUDSYNC_APP",
            "RUST_LOG",
            "CLOUDSYNC_LOG_FILE",
        ] {
            c.env_remove(v);
        }
        c
    }
    /// The command in the background, its stdout's lines on a channel (the
    /// caller waits on the child).
    #[allow(clippy::zombie_processes)]
    pub fn spawn_lines(&self, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        (child, rx)
    }

    /// Exit code, the JSON lines of stdout, stderr.
    pub fn run(&self, args: &[&str]) -> (i32, Vec<serde_json::Value>, String) {
        let (code, out, err) = self.run_text(args);
        (code, parse_lines(&out), err)
    }
    /// Exit code, stdout, stderr.
    pub fn run_text(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.command(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

pub fn parse_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
