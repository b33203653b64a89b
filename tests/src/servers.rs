//! Real cloud servers on loopback, started per test and stopped on drop:
//! Apache httpd with mod_dav (WebDAV, from Debian's packages) and s3s-fs
//! (an S3-compatible server, installed by `make test`). Each keeps the
//! user's files as plain files at their relative paths in `data_dir`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const S3_ACCESS_KEY: &str = "cloudsync-test-key";
pub const S3_SECRET_KEY: &str = "cloudsync-test-secret";
pub const S3_BUCKET: &str = "cloudsync";
pub const DAV_USER: &str = "alice";
pub const DAV_PASSWORD: &str = "wonderland";

/// A server process and where it keeps its files.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    /// The folder holding the cloud's objects as plain files.
    pub data_dir: PathBuf,
    /// The `--cloud` URL naming it.
    pub url: String,
    /// The rclone remote reaching it (`:webdav,url=…:` style, with credentials).
    pub rclone_remote: String,
    apache_pid: Option<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Apache forks; its pid file names the parent of the workers.
        if let Some(pid) = self.apache_pid.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        // Gone only once it no longer answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_listening(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    panic!("{what} did not start on port {port}: {log}");
}

fn tool(name: &str, hint: &str) -> PathBuf {
    let candidates = [
        std::env::var_os("CLOUDSYNC_TOOLS").map(|d| PathBuf::from(d).join("bin").join(name)),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/cloudsync-tools/bin").join(name)),
        Some(PathBuf::from("/usr/sbin").join(name)),
        Some(PathBuf::from("/usr/bin").join(name)),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is not installed: {hint}"))
}

/// s3s-fs serving `dir` (the bucket is a folder in it).
pub fn s3(dir: &Path) -> Server {
    let bin = tool(
        "s3s-fs",
        "`make test` installs it (cargo install s3s-fs --features binary)",
    );
    let data_dir = dir.join("s3");
    std::fs::create_dir_all(data_dir.join(S3_BUCKET)).unwrap();
    let port = free_port();
    let log = dir.join("s3s.log");
    let child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
        .arg(&data_dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_listening(port, "s3s-fs", &log);
    let endpoint = format!("http://127.0.0.1:{port}");
    Server {
        child: Some(child),
        port,
        data_dir: data_dir.join(S3_BUCKET),
        url: format!("s3://{S3_BUCKET}/?endpoint={endpoint}&region=us-east-1"),
        // s3s-fs answers rclone's ListObjectsV2 with a 500: list with V1.
        rclone_remote: format!(
            ":s3,provider=Other,access_key_id={S3_ACCESS_KEY},secret_access_key={S3_SECRET_KEY},endpoint='{endpoint}',force_path_style=true,list_version=1:{S3_BUCKET}"
        ),
        apache_pid: None,
    }
}

/// Apache httpd with mod_dav serving `dir/dav` at `/dav/`, behind basic auth.
pub fn webdav(dir: &Path) -> Server {
    let apache = tool("apache2", "`make test` installs it (apt-get install apache2)");
    let htpasswd = tool("htpasswd", "`make test` installs it (apt-get install apache2-utils)");
    let modules = Path::new("/usr/lib/apache2/modules");
    let port = free_port();
    let conf_dir = dir.join("apache");
    let www = dir.join("www");
    let data_dir = www.join("dav");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::create_dir_all(&data_dir).unwrap();
    // The workers run as www-data: they must reach and own the served folder.
    let _ = Command::new("chmod").arg("755").arg(dir).status();
    let _ = Command::new("chown")
        .args(["-R", "www-data:www-data"])
        .arg(&www)
        .arg(&conf_dir)
        .status();
    let users = conf_dir.join("users");
    let ok = Command::new(htpasswd)
        .arg("-bcB")
        .arg(&users)
        .args([DAV_USER, DAV_PASSWORD])
        .output()
        .unwrap();
    assert!(ok.status.success(), "htpasswd failed");
    let pid = conf_dir.join("httpd.pid");
    let log = conf_dir.join("error.log");
    let load = |m: &str, file: &str| format!("LoadModule {m} {}\n", modules.join(file).display());
    let conf = format!(
        "ServerRoot {root}\nServerName 127.0.0.1\nListen 127.0.0.1:{port}\nPidFile {pid}\nErrorLog {log}\n\
         User www-data\nGroup www-data\n\
         {mpm}{authz}{authn}{authn_file}{basic}{user}{dav}{dav_fs}\
         DAVLockDB {root}/davlock\nDocumentRoot {www}\n\
         <Directory {data}>\n  Dav On\n  AuthType Basic\n  AuthName cloudsync\n  AuthUserFile {users}\n  Require valid-user\n</Directory>\n\
",
        root = conf_dir.display(),
        pid = pid.display(),
        log = log.display(),
        data = data_dir.display(),
        www = www.display(),
        users = users.display(),
        mpm = load("mpm_event_module", "mod_mpm_event.so"),
        authz = load("authz_core_module", "mod_authz_core.so"),
        authn = load("authn_core_module", "mod_authn_core.so"),
        authn_file = load("authn_file_module", "mod_authn_file.so"),
        basic = load("auth_basic_module", "mod_auth_basic.so"),
        user = load("authz_user_module", "mod_authz_user.so"),
        dav = load("dav_module", "mod_dav.so"),
        dav_fs = load("dav_fs_module", "mod_dav_fs.so"),
    );
    let conf_file = conf_dir.join("httpd.conf");
    std::fs::write(&conf_file, conf).unwrap();
    let _ = Command::new("chown")
        .args(["-R", "www-data:www-data"])
        .arg(&conf_dir)
        .status();
    let out = Command::new(apache)
        .arg("-f")
        .arg(&conf_file)
        .args(["-k", "start"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "apache2 did not start: {}{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    wait_listening(port, "apache2", &log);
    let endpoint = format!("http://127.0.0.1:{port}/dav");
    Server {
        child: None,
        port,
        data_dir,
        url: format!("webdav://127.0.0.1:{port}/dav"),
        rclone_remote: format!(
            ":webdav,url='{endpoint}',vendor=other,user={DAV_USER},pass={}:",
            rclone_obscure(DAV_PASSWORD)
        ),
        apache_pid: Some(pid),
    }
}

/// rclone's own WebDAV server (`rclone serve webdav`) serving `dir/rdav`,
/// behind basic auth: a second, unrelated WebDAV implementation.
pub fn rclone_webdav(dir: &Path) -> Server {
    let data_dir = dir.join("rdav");
    std::fs::create_dir_all(&data_dir).unwrap();
    let port = free_port();
    let log = dir.join("rclone-dav.log");
    let child = Command::new("rclone")
        .args(["serve", "webdav"])
        .arg(&data_dir)
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .args(["--user", DAV_USER, "--pass", DAV_PASSWORD])
        .args(["--config", "/dev/null"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("rclone is installed");
    wait_listening(port, "rclone serve webdav", &log);
    let endpoint = format!("http://127.0.0.1:{port}");
    Server {
        child: Some(child),
        port,
        data_dir,
        url: format!("webdav://127.0.0.1:{port}"),
        rclone_remote: format!(
            ":webdav,url='{endpoint}',vendor=other,user={DAV_USER},pass={}:",
            rclone_obscure(DAV_PASSWORD)
        ),
        apache_pid: None,
    }
}

/// rclone takes passwords obscured.
fn rclone_obscure(password: &str) -> String {
    let out = Command::new("rclone")
        .args(["obscure", password])
        .output()
        .expect("rclone is installed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
