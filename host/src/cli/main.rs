//! `cloudsync`: the command line.
//!
//! `cloudsync [--root DIR] [--cloud URL] [--app BUNDLE] [--json] <command> …`
//! with commands `sync`, `status`, `state` and `download`.
//!
//! By default the command line acts for the device's owner: a system app
//! holding every cloud-sync permission. A policy file (`--policy`) or the
//! flags `--permission` / `--not-system-app` say otherwise.
//!
//! A failing command exits non-zero and prints the seed's numeric code and
//! message; with `--json`, every event is one JSON object on stdout.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use cloudsync::cloud::{ConfigFile, RateLimitedCloud};
use cloudsync::identity::Policy;
use cloudsync::{
    CloudFileCache, CloudSyncError, DownloadProgress, FileSync, GallerySync, Identity, Runtime, State, SyncProgress,
    SyncReport, SyncState,
};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "cloudsync",
    version,
    about = "Device-cloud file sync (OpenHarmony @ohos.file.cloudSync)"
)]
struct Cli {
    /// The device side: app folders and the metadata store.
    #[arg(long, env = "CLOUDSYNC_ROOT", global = true)]
    root: Option<PathBuf>,
    /// The cloud: dir:///path, s3://bucket/prefix?endpoint=URL&region=R, or
    /// webdav://host/path. Default: the config file's, else dir://<root>/cloud.
    /// Credentials come from the config file or the environment, never from here.
    #[arg(long, env = "CLOUDSYNC_CLOUD", global = true)]
    cloud: Option<String>,
    /// The app (bundle name) to act for. Default: the config file's, else cloudsync.cli.
    #[arg(long, env = "CLOUDSYNC_APP", global = true)]
    app: Option<String>,
    /// A TOML config file (`root`, `app`, and a `[cloud]` table with `url` and
    /// credentials). Default: ~/.config/cloudsync/config.toml when it exists.
    #[arg(long, env = "CLOUDSYNC_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// One JSON object per event on stdout, and a JSON result.
    #[arg(long, global = true)]
    json: bool,
    /// Limit reads from the cloud to this many bytes per second (units: K, M, G).
    #[arg(long, env = "CLOUDSYNC_BWLIMIT", global = true, value_parser = parse_size)]
    bwlimit: Option<u64>,
    /// A policy file (TOML: `bundle`, `system_app`, `permissions`,
    /// `cloud_switch_off`) saying who calls and what is granted.
    #[arg(long, env = "CLOUDSYNC_POLICY", global = true)]
    policy: Option<PathBuf>,
    /// Act with only these permissions (repeat for several), instead of all.
    #[arg(long = "permission", global = true)]
    permissions: Vec<String>,
    /// Act as an ordinary app, not a system app.
    #[arg(long, global = true)]
    not_system_app: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make the app's folder (or the gallery) and the cloud equal, both ways.
    Sync {
        /// Sync the gallery (file://media/Photo/…) instead of the app's folder.
        #[arg(long)]
        gallery: bool,
        /// Carry out deletions a guard held back (more than half of the
        /// files, or a side that looks empty).
        #[arg(long)]
        yes: bool,
    },
    /// List the app's local files with their FileSyncState.
    Status {
        #[arg(long)]
        gallery: bool,
    },
    /// Print the FileSyncState of files (URIs, or paths in the app's folder).
    State {
        #[arg(required = true)]
        uris: Vec<String>,
    },
    /// Download one cloud file into the app's local folder.
    Download {
        /// `file://<bundle>/data/storage/el2/cloud/<path>`, or a path relative
        /// to the app's cloud folder.
        uri: String,
        /// On Ctrl-C keep the partial data, so that running the command again
        /// resumes (stop with needClean = false).
        #[arg(long)]
        keep_partial: bool,
    },
}

/// How the command failed: exit code and what to print.
enum Failure {
    Api(CloudSyncError),
    Usage(String),
}

impl From<CloudSyncError> for Failure {
    fn from(e: CloudSyncError) -> Self {
        Failure::Api(e)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli).await {
        Ok(code) => code,
        Err(Failure::Api(e)) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "error": { "code": e.code, "message": e.message } })
                );
            }
            eprintln!("cloudsync: error {}: {}", e.code, e.message);
            ExitCode::from(1)
        }
        Err(Failure::Usage(message)) => {
            eprintln!("cloudsync: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let config = match cli.config.clone().or_else(default_config) {
        Some(path) => ConfigFile::load(&path).map_err(|e| Failure::Usage(e.to_string()))?,
        None => ConfigFile::default(),
    };
    let root = match cli.root.clone().or(config.root.as_ref().map(PathBuf::from)) {
        Some(r) => r,
        None => default_root().ok_or_else(|| Failure::Usage("no --root given and no HOME to default to".into()))?,
    };
    let app = cli
        .app
        .clone()
        .or(config.app.clone())
        .unwrap_or_else(|| "cloudsync.cli".into());
    let url = cli
        .cloud
        .clone()
        .or(config.cloud.url.clone())
        .unwrap_or_else(|| format!("dir://{}", root.join("cloud").display()));
    let mut cloud =
        cloudsync::cloud::open(&url, &config.cloud.clone().with_env()).map_err(|e| Failure::Usage(e.to_string()))?;
    if let Some(rate) = cli.bwlimit {
        cloud = Arc::new(RateLimitedCloud::new(cloud, rate));
    }
    // Who calls: the policy file's caller, else the device's owner (a
    // system app holding every permission); the flags narrow either.
    let mut policy = match &cli.policy {
        Some(path) => Policy::load(path).map_err(|e| Failure::Usage(e.to_string()))?,
        None => Policy {
            bundle: None,
            system_app: true,
            permissions: Identity::system(&app).permissions.into_iter().collect(),
            cloud_switch_off: Vec::new(),
        },
    };
    if cli.app.is_some() {
        policy.bundle = None;
    }
    if !cli.permissions.is_empty() {
        policy.permissions = cli.permissions.clone();
    }
    if cli.not_system_app {
        policy.system_app = false;
    }
    Policy::parse(&policy_toml(&policy)).map_err(Failure::Usage)?;
    let builder = Runtime::builder(&root).cloud(cloud).policy(&policy, &app);
    let rt = builder
        .build()
        .await
        .map_err(|e| Failure::Api(CloudSyncError::service(e.to_string())))?;
    match cli.command {
        Command::Download { uri, keep_partial } => download(&rt, &uri, keep_partial, cli.json).await,
        Command::Sync { gallery, yes } => sync(&rt, gallery, yes, cli.json).await,
        Command::Status { gallery } => status(&rt, gallery, cli.json).await,
        Command::State { uris } => state(&rt, &uris, cli.json).await,
    }
}

/// A policy as TOML, to check flags with the same rules as a policy file.
fn policy_toml(p: &Policy) -> String {
    let list = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    let mut out = String::new();
    if let Some(b) = &p.bundle {
        out.push_str(&format!("bundle = {b:?}\n"));
    }
    out.push_str(&format!(
        "system_app = {}\npermissions = [{}]\ncloud_switch_off = [{}]\n",
        p.system_app,
        list(&p.permissions),
        list(&p.cloud_switch_off)
    ));
    out
}

/// One FileSync or GallerySync, whichever the command asked for.
enum Syncer {
    App(FileSync),
    Gallery(GallerySync),
}

impl Syncer {
    async fn on(&self, cb: impl Fn(SyncProgress) + Send + Sync + 'static) -> Result<(), CloudSyncError> {
        match self {
            Syncer::App(s) => s.on("progress", cb).await.map(|_| ()),
            Syncer::Gallery(s) => s.on("progress", cb).await.map(|_| ()),
        }
    }
    async fn start(&self, confirmed: bool) -> Result<(), CloudSyncError> {
        match (self, confirmed) {
            (Syncer::App(s), false) => s.start().await,
            (Syncer::App(s), true) => s.start_confirmed().await,
            (Syncer::Gallery(s), false) => s.start().await,
            (Syncer::Gallery(s), true) => s.start_confirmed().await,
        }
    }
    async fn stop(&self) -> Result<(), CloudSyncError> {
        match self {
            Syncer::App(s) => s.stop().await,
            Syncer::Gallery(s) => s.stop().await,
        }
    }
    async fn report(&self) -> Result<SyncReport, CloudSyncError> {
        match self {
            Syncer::App(s) => s.report().await,
            Syncer::Gallery(s) => s.report().await,
        }
    }
}

async fn sync(rt: &Runtime, gallery: bool, confirmed: bool, json: bool) -> Result<ExitCode, Failure> {
    let syncer = if gallery {
        Syncer::Gallery(GallerySync::new(rt).await?)
    } else {
        Syncer::App(FileSync::new(rt).await?)
    };
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel::<SyncProgress>();
    syncer
        .on(move |p| {
            let _ = tx.send(p);
        })
        .await?;
    let started = std::time::Instant::now();
    syncer.start(confirmed).await?;

    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} files {elapsed}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar
    });
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut stopping = false;
    let mut current = SyncState::Downloading;
    let last = loop {
        tokio::select! {
            event = events.recv() => {
                let Some(p) = event else {
                    return Err(CloudSyncError::service("the engine stopped sending events").into());
                };
                if json {
                    println!("{}", serde_json::to_string(&p).expect("events serialize"));
                }
                current = p.state;
                if p.is_terminal() {
                    break p;
                }
            }
            _ = tick.tick(), if bar.is_some() => {
                if let (Some(bar), Ok(r)) = (&bar, syncer.report().await) {
                    bar.set_length(r.planned);
                    bar.set_position(r.done);
                    bar.set_message(current.name().to_lowercase());
                }
            }
            _ = &mut ctrl_c, if !stopping => {
                stopping = true;
                syncer.stop().await?;
            }
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = syncer.report().await?;
    if json {
        println!("{}", serde_json::json!({ "result": last, "report": report }));
    } else {
        let error = if last.error == cloudsync::ErrorType::NoError {
            String::new()
        } else {
            format!(" ({})", last.error.name())
        };
        println!(
            "{}{error}: {} uploaded, {} downloaded, {} deleted here, {} deleted in the cloud, {} conflicts, {} failed in {:.1?}",
            last.state.name(),
            report.uploaded,
            report.downloaded,
            report.deleted_local,
            report.deleted_remote,
            report.conflicts,
            report.failed,
            started.elapsed()
        );
        if let Some(refusal) = &report.refusal {
            println!("  refused: {refusal}\n  run `cloudsync sync --yes` to go ahead");
        }
        if let Some(e) = &report.last_error {
            if last.state != SyncState::Completed {
                println!("  last failure: {e}");
            }
        }
    }
    Ok(match last.state {
        SyncState::Completed => ExitCode::SUCCESS,
        SyncState::Stopped => ExitCode::from(130),
        _ => ExitCode::from(1),
    })
}

fn to_uri(rt: &Runtime, target: &str) -> String {
    if target.starts_with("file://") {
        target.to_string()
    } else {
        rt.uri_for(target.trim_start_matches('/'))
    }
}

async fn status(rt: &Runtime, gallery: bool, json: bool) -> Result<ExitCode, Failure> {
    let folder = if gallery {
        rt.app_folder("media")
    } else {
        rt.app_folder(&rt.identity().bundle)
    };
    let uri_of = |p: &str| {
        if gallery {
            format!("file://media/{}", cloudsync::percent_encode(p))
        } else {
            rt.uri_for(p)
        }
    };
    let mut files = Vec::new();
    list_files(&folder, &folder, &mut files);
    if gallery {
        // Cloud-only photos are on the device as their thumbnails.
        let thumbs = folder.parent().map(|area| area.join(".thumbs")).unwrap_or_default();
        let mut cloud_only = Vec::new();
        list_files(&thumbs, &thumbs, &mut cloud_only);
        files.extend(
            cloud_only
                .into_iter()
                .filter_map(|t| t.strip_suffix(".jpg").map(String::from)),
        );
    }
    files.sort();
    files.dedup();
    let mut rows = Vec::new();
    for chunk in files.chunks(100) {
        let uris: Vec<String> = chunk.iter().map(|p| uri_of(p)).collect();
        let refs: Vec<&str> = uris.iter().map(String::as_str).collect();
        let states = cloudsync::get_file_sync_states(rt, &refs).await?;
        rows.extend(chunk.iter().cloned().zip(states));
    }
    if json {
        for (p, s) in &rows {
            println!("{}", serde_json::json!({ "path": p, "uri": uri_of(p), "state": s }));
        }
    } else {
        for (path, state) in &rows {
            println!("{:<15} {path}", state.name());
        }
        println!("{} files in {}", rows.len(), folder.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn list_files(base: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        let path = entry.path();
        if meta.is_dir() {
            list_files(base, &path, out);
        } else if meta.is_file() {
            if let Some(rel) = path.strip_prefix(base).ok().and_then(|p| p.to_str()) {
                out.push(rel.to_string());
            }
        }
    }
}

async fn state(rt: &Runtime, targets: &[String], json: bool) -> Result<ExitCode, Failure> {
    let uris: Vec<String> = targets.iter().map(|t| to_uri(rt, t)).collect();
    let refs: Vec<&str> = uris.iter().map(String::as_str).collect();
    let states = cloudsync::get_file_sync_states(rt, &refs).await?;
    for (uri, s) in uris.iter().zip(states) {
        if json {
            println!("{}", serde_json::json!({ "uri": uri, "state": s }));
        } else {
            println!("{:<15} {uri}", s.name());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn default_root() -> Option<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
    Some(data.join("cloudsync"))
}

/// `~/.config/cloudsync/config.toml`, when it exists.
fn default_config() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("cloudsync/config.toml")).filter(|p| p.exists())
}

async fn download(rt: &Runtime, target: &str, keep_partial: bool, json: bool) -> Result<ExitCode, Failure> {
    let uri = to_uri(rt, target);
    let cache = CloudFileCache::new(rt).await?;
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel::<DownloadProgress>();
    cache
        .on("progress", move |p| {
            let _ = tx.send(p);
        })
        .await?;
    cache.start(&uri).await?;

    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_message(short_name(&uri));
        bar
    });
    let mut stopping = false;
    // One signal future for the whole wait: a Ctrl-C is never missed.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let last = loop {
        tokio::select! {
            event = events.recv() => {
                let Some(p) = event else {
                    return Err(CloudSyncError::service("the engine stopped sending events").into());
                };
                if json {
                    println!("{}", serde_json::to_string(&p).expect("events serialize"));
                }
                if let Some(bar) = &bar {
                    bar.set_length(p.size);
                    bar.set_position(p.processed);
                }
                if p.is_terminal() {
                    break p;
                }
            }
            _ = &mut ctrl_c, if !stopping => {
                stopping = true;
                match cache.stop(&uri, !keep_partial).await {
                    // Finished in the meantime: its own terminal event follows.
                    Err(e) if e.code == cloudsync::codes::NO_SUCH_FILE => {}
                    other => other?,
                }
            }
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if !json {
        let local = rt.app_folder(&rt.identity().bundle);
        match last.state {
            State::Completed => println!("COMPLETED {uri} ({} bytes) in {}", last.size, local.display()),
            State::Stopped if keep_partial => {
                println!(
                    "STOPPED {uri} at {}/{} bytes; partial data kept: run again to resume",
                    last.processed, last.size
                )
            }
            State::Stopped => println!(
                "STOPPED {uri} at {}/{} bytes; partial data deleted",
                last.processed, last.size
            ),
            State::Failed => {
                println!(
                    "FAILED {uri}: {} after {}/{} bytes",
                    last.error.name(),
                    last.processed,
                    last.size
                );
                if let Some(reason) = rt.failure_reason(&uri) {
                    println!("  reason: {reason}");
                }
            }
            State::Running => unreachable!("the loop ends on a terminal event"),
        }
    }
    Ok(match last.state {
        State::Completed => ExitCode::SUCCESS,
        State::Stopped => ExitCode::from(130),
        _ => ExitCode::from(1),
    })
}

fn short_name(uri: &str) -> String {
    uri.rsplit('/').next().unwrap_or(uri).to_string()
}

/// `1500`, `64K`, `10M`, `2G` (powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 500K, 10M or 2G"))?;
    let factor: u64 = match unit.trim().to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use K, M, G or T)")),
    };
    n.checked_mul(factor)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?} is out of range"))
}
