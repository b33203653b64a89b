//! `cloudsync`: the command line.
//!
//! `cloudsync [--root DIR] [--cloud URL] [--app BUNDLE] [--json] [-v] <command> …`
//! with commands `sync`, `watch`, `stop`, `status`, `state`, `last-sync`,
//! `download`, `clean-cache`, `optimize` and `completions`.
//!
//! By default the command line acts for the device's owner: a system app
//! holding every cloud-sync permission. A policy file (`--policy`) or the
//! flags `--permission` / `--not-system-app` say otherwise.
//!
//! A failing command exits non-zero and prints the seed's numeric code and
//! message; with `--json`, every event is one JSON object on stdout.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand};
use cloudsync::cloud::{ConfigFile, RateLimitedCloud};
use cloudsync::identity::Policy;
use cloudsync::{
    CloudFileCache, CloudSyncError, DownloadProgress, FileSync, GallerySync, Identity, Runtime, State, SyncProgress,
    SyncReport, SyncState,
};
use control::StopSignal;
use indicatif::{ProgressBar, ProgressStyle};

/// stdout may be closed under the command (`… | head -1`) or full: output
/// then stops, said once on stderr, and the work goes on to its end rather
/// than dying half done.
macro_rules! println {
    ($($t:tt)*) => { $crate::print_line(format_args!($($t)*)) };
}

// After the macro: the modules print through it too.
mod control;
mod logging;
mod watch;

static STDOUT_GONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn print_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if STDOUT_GONE.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out
        .write_fmt(args)
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush())
    {
        if !STDOUT_GONE.swap(true, std::sync::atomic::Ordering::Relaxed) {
            eprintln!("cloudsync: standard output failed ({e}); the command goes on without it");
        }
    }
}

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
    /// Sync only while an unmetered network (Wi-Fi, wired) is up: on a
    /// metered one (a mobile modem) runs fail with WIFI_UNAVAILABLE.
    #[arg(long, env = "CLOUDSYNC_WIFI_ONLY", global = true)]
    wifi_only: bool,
    /// Log each decision (-v), and what is only recorded too (-vv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Append the log to this file instead of stderr.
    #[arg(long, env = "CLOUDSYNC_LOG_FILE", global = true)]
    log_file: Option<PathBuf>,
    /// The log's format: text, or one JSON object per line.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make the app's folder (or the gallery) and the cloud equal, both ways.
    Sync {
        #[command(flatten)]
        target: Target,
        /// Print what the sync would do (up, down, deleted on which side,
        /// conflicts) and change nothing on either side.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        confirm: ConfirmFlags,
    },
    /// Keep the folder in sync: local changes as they happen, the cloud's
    /// by polling; one run at a time, until Ctrl-C or `cloudsync stop`.
    Watch {
        #[command(flatten)]
        target: Target,
        /// Look for cloud changes this often, in seconds (backing off to
        /// 16 times that while the cloud cannot be reached).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        interval: u64,
        /// Wait for this many milliseconds of quiet after a local change.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=60_000))]
        debounce_ms: u64,
        #[command(flatten)]
        confirm: ConfirmFlags,
    },
    /// Stop the `sync` or `watch` running on this root (from another terminal).
    Stop,
    /// When the folder last synced completely (FileSync.getLastSyncTime).
    LastSync {
        /// Another app's folder (needs CLOUDFILE_SYNC_MANAGER).
        #[arg(long)]
        bundle: Option<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
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
    /// Evict a synced file's local copy: it stays listed, only in the cloud.
    CleanCache {
        /// A URI, or a path in the app's folder.
        uri: String,
    },
    /// Free space: evict synced files not used for a while, least recently
    /// used first (startOptimizeSpace). With neither option: the aging
    /// policy (optimizeStorage): files not used for 30 days, and when less
    /// than 2 GiB is then free, files not used for a day until 2 GiB is.
    Optimize {
        /// Only files not accessed for this many days (default 30).
        #[arg(long)]
        aging_days: Option<u32>,
        /// Free at most this much (500M, 2G).
        #[arg(long, value_parser = parse_size)]
        total_size: Option<u64>,
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

/// Which folder a sync command works on.
#[derive(clap::Args, Clone)]
struct Target {
    /// Sync the gallery (file://media/Photo/…) instead of the app's folder.
    #[arg(long, conflicts_with = "bundle")]
    gallery: bool,
    /// Sync another app's folder (FileSync(bundleName): needs
    /// CLOUDFILE_SYNC_MANAGER).
    #[arg(long)]
    bundle: Option<String>,
}

/// What the user confirmed of what a sync's guards hold back.
#[derive(clap::Args, Clone, Copy)]
struct ConfirmFlags {
    /// Carry out deletions a guard held back: more than half of the
    /// most files held in sync since deletions were last confirmed.
    #[arg(long)]
    yes: bool,
    /// The device's folder is empty (or missing) on purpose: delete the
    /// cloud's copies too. (`--yes` never implies this.)
    #[arg(long)]
    confirm_empty_device: bool,
    /// The cloud is empty on purpose: delete the device's copies too.
    /// (`--yes` never implies this.)
    #[arg(long)]
    confirm_empty_cloud: bool,
}

impl From<ConfirmFlags> for cloudsync::Confirm {
    fn from(f: ConfirmFlags) -> Self {
        cloudsync::Confirm {
            deletions: f.yes,
            empty_device: f.confirm_empty_device,
            empty_cloud: f.confirm_empty_cloud,
        }
    }
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
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "cloudsync", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = logging::init(cli.verbose, cli.log_file.as_deref(), cli.log_format) {
        eprintln!("cloudsync: {e}");
        return ExitCode::from(2);
    }
    control::listen_for_signals();
    match run(cli).await {
        Ok(code) => code,
        Err(Failure::Api(e)) => {
            tracing::error!(code = e.code, "{}", e.message);
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
    let config_path = cli.config.clone().or_else(default_config);
    let config = match &config_path {
        Some(path) => ConfigFile::load(path).map_err(|e| Failure::Usage(e.to_string()))?,
        None => ConfigFile::default(),
    };
    // A relative root in a config file is the file's neighbour, wherever
    // the command runs from.
    let config_root = config.root.as_ref().map(|r| match &config_path {
        Some(file) => file.parent().unwrap_or(Path::new(".")).join(r),
        None => PathBuf::from(r),
    });
    let root = match cli.root.clone().or(config_root) {
        Some(r) => r,
        None => default_root().ok_or_else(|| Failure::Usage("no --root given and no HOME to default to".into()))?,
    };
    if let Command::Stop = cli.command {
        return stop(&root, cli.json);
    }
    let app = cli
        .app
        .clone()
        .or(config.app.clone())
        .unwrap_or_else(|| "cloudsync.cli".into());
    if !cloudsync::identity::is_valid_bundle(&app) {
        return Err(Failure::Usage(format!(
            "--app {app:?} is not a bundle name: letters, digits, '.', '_' and '-', starting with a letter or digit"
        )));
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
            request_limits: Default::default(),
        },
    };
    if let (Some(named), Some(b)) = (&cli.app, &policy.bundle) {
        if named != b {
            return Err(Failure::Usage(format!(
                "--app {named:?} is not the policy's caller {b:?}: name one of them"
            )));
        }
    }
    // Checked below like a policy's own: the gallery's area is no app.
    policy.bundle.get_or_insert_with(|| app.clone());
    if !cli.permissions.is_empty() {
        policy.permissions = cli.permissions.clone();
    }
    if cli.not_system_app {
        policy.system_app = false;
    }
    Policy::parse(&policy_toml(&policy)).map_err(Failure::Usage)?;
    let url = match cli.cloud.clone().or(config.cloud.url.clone()) {
        Some(url) => url,
        None => {
            // The embedded default is made on first use; a folder cloud
            // named explicitly must exist (a drive not mounted is no cloud).
            let folder = root.join("cloud");
            std::fs::create_dir_all(&folder)
                .map_err(|e| Failure::Usage(format!("cannot create the cloud folder {}: {e}", folder.display())))?;
            format!("dir://{}", folder.display())
        }
    };
    let opener = Opener {
        root: root.clone(),
        url,
        settings: config.cloud.clone().with_env(),
        bwlimit: cli.bwlimit,
        policy,
        app,
        wifi_only: cli.wifi_only || config.wifi_only,
        json: cli.json,
    };
    if let Command::Watch {
        target,
        interval,
        debounce_ms,
        confirm,
    } = &cli.command
    {
        let options = watch::Options {
            interval: std::time::Duration::from_secs(*interval),
            debounce: std::time::Duration::from_millis(*debounce_ms),
            confirm: (*confirm).into(),
            json: cli.json,
        };
        return watch::watch(&opener, target, options).await;
    }
    let rt = match opener.open().await {
        Ok(rt) => rt,
        // `state` of one file is the seed's synchronous form, whose table
        // has no 13600001: a runtime that cannot start is its 13900042.
        Err(Failure::Api(e)) if matches!(&cli.command, Command::State { uris } if uris.len() == 1) => {
            return Err(Failure::Api(
                e.for_method(cloudsync::api::listed::Method::FileSyncState),
            ));
        }
        Err(e) => return Err(e),
    };
    match cli.command {
        Command::Download { uri, keep_partial } => download(&rt, &uri, keep_partial, cli.json).await,
        Command::Sync {
            target,
            dry_run,
            confirm,
        } => {
            let syncer = Syncer::open(&rt, &target)?;
            if dry_run {
                return plan(&rt, &syncer, confirm.into(), cli.json).await;
            }
            let _running = pid_file(&root, "sync");
            sync(&rt, &syncer, confirm.into(), cli.json).await
        }
        Command::LastSync { bundle } => last_sync(&rt, bundle.as_deref(), cli.json).await,
        Command::Status { gallery } => status(&rt, gallery, cli.json).await,
        Command::State { uris } => state(&rt, &uris, cli.json).await,
        Command::CleanCache { uri } => clean_cache(&rt, &uri, cli.json).await,
        Command::Optimize { aging_days, total_size } => optimize(&rt, aging_days, total_size, cli.json).await,
        Command::Stop | Command::Completions { .. } | Command::Watch { .. } => {
            unreachable!("handled before the runtime is built")
        }
    }
}

/// What opens the runtime: once for a command, again whenever a `watch`
/// needs the cloud opened afresh (its folder replaced, a drive remounted).
struct Opener {
    root: PathBuf,
    url: String,
    settings: cloudsync::cloud::CloudSettings,
    bwlimit: Option<u64>,
    policy: Policy,
    app: String,
    wifi_only: bool,
    json: bool,
}

impl Opener {
    async fn open(&self) -> Result<Runtime, Failure> {
        let mut cloud = cloudsync::cloud::open(&self.url, &self.settings).map_err(|e| Failure::Usage(e.to_string()))?;
        if let Some(rate) = self.bwlimit {
            cloud = Arc::new(RateLimitedCloud::new(cloud, rate));
        }
        let device = cloudsync::device::SystemDevice::wifi_only(self.wifi_only);
        let rt = Runtime::builder(&self.root)
            .cloud(cloud)
            .policy(&self.policy, &self.app)
            .device(Arc::new(device))
            .build()
            .await
            .map_err(|e| Failure::Api(CloudSyncError::service(e.to_string())))?;
        for w in rt.warnings() {
            if self.json {
                println!("{}", serde_json::json!({ "warning": w }));
            }
            eprintln!("cloudsync: warning: {w}");
        }
        Ok(rt)
    }

    /// The folder a target syncs on this device.
    fn folder(&self, rt: &Runtime, target: &Target) -> PathBuf {
        match (&target.bundle, target.gallery) {
            (Some(b), _) => rt.app_folder(b),
            (None, true) => rt.app_folder(cloudsync::identity::GALLERY_BUNDLE),
            (None, false) => rt.app_folder(&rt.identity().bundle),
        }
    }
}

/// Says which command runs on the root, for `cloudsync stop`; one that
/// cannot be written is said, and the command goes on.
fn pid_file(root: &Path, what: &str) -> Option<control::PidFile> {
    control::PidFile::write(root, what)
        .map_err(|e| {
            tracing::warn!(
                "cannot write {}: {e}; `cloudsync stop` will not find this {what}",
                control::PID_FILE
            )
        })
        .ok()
}

fn stop(root: &Path, json: bool) -> Result<ExitCode, Failure> {
    let stopped = control::stop(root, std::time::Duration::from_secs(60))
        .map_err(|e| Failure::Usage(format!("cannot stop what runs on {}: {e}", root.display())))?;
    let (said, code) = match &stopped {
        control::Stopped::NothingRunning => (format!("nothing runs on {}", root.display()), 1),
        control::Stopped::Ended(what) => (format!("stopped the {what} running on {}", root.display()), 0),
        control::Stopped::StillRunning(what) => (
            format!(
                "asked the {what} on {} to stop; it still runs after a minute",
                root.display()
            ),
            1,
        ),
    };
    if json {
        println!("{}", serde_json::json!({ "stop": said, "stopped": code == 0 }));
    } else {
        println!("{said}");
    }
    Ok(ExitCode::from(code))
}

async fn last_sync(rt: &Runtime, bundle: Option<&str>, json: bool) -> Result<ExitCode, Failure> {
    let sync = match bundle {
        Some(b) => FileSync::for_bundle(rt, b)?,
        None => FileSync::new(rt),
    };
    let ms = sync.get_last_sync_time().await?;
    if json {
        println!("{}", serde_json::json!({ "last_sync_ms": ms }));
    } else if ms == 0 {
        println!("never synced completely");
    } else {
        println!("{}", timestamp(ms));
    }
    Ok(ExitCode::SUCCESS)
}

/// Epoch ms in the local time zone, for people.
fn timestamp(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        })
        .unwrap_or_else(|_| ms.to_string())
}

/// Whatever fetches one file: a `CloudFileCache` or a `Download`.
enum Fetcher {
    App(CloudFileCache),
    Gallery(cloudsync::Download),
}

impl Fetcher {
    fn on(&self, event: &str, cb: impl Fn(DownloadProgress) + Send + Sync + 'static) -> Result<(), CloudSyncError> {
        match self {
            Fetcher::App(c) => c.on(event, cb).map(|_| ()),
            Fetcher::Gallery(d) => d.on(event, cb).map(|_| ()),
        }
    }
    async fn start(&self, uri: &str) -> Result<(), CloudSyncError> {
        match self {
            Fetcher::App(c) => c.start(uri).await,
            Fetcher::Gallery(d) => d.start(uri).await,
        }
    }
    /// `Download.stop` always deletes the partial file.
    async fn stop(&self, uri: &str, need_clean: bool) -> Result<(), CloudSyncError> {
        match self {
            Fetcher::App(c) => c.stop_with(uri, need_clean).await,
            Fetcher::Gallery(d) => d.stop(uri).await,
        }
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
    fn open(rt: &Runtime, target: &Target) -> Result<Self, CloudSyncError> {
        Ok(match (&target.bundle, target.gallery) {
            (Some(b), _) => Syncer::App(FileSync::for_bundle(rt, b)?),
            (None, true) => Syncer::Gallery(GallerySync::new(rt)),
            (None, false) => Syncer::App(FileSync::new(rt)),
        })
    }
    async fn plan(&self, confirm: cloudsync::Confirm) -> Result<(), CloudSyncError> {
        match self {
            Syncer::App(s) => s.plan(confirm).await,
            Syncer::Gallery(s) => s.plan(confirm).await,
        }
    }
    fn on(&self, cb: impl Fn(SyncProgress) + Send + Sync + 'static) -> Result<(), CloudSyncError> {
        match self {
            Syncer::App(s) => s.on("progress", cb).map(|_| ()),
            Syncer::Gallery(s) => s.on("progress", cb).map(|_| ()),
        }
    }
    async fn start(&self, confirm: cloudsync::Confirm) -> Result<(), CloudSyncError> {
        match self {
            Syncer::App(s) => s.start_with(confirm).await,
            Syncer::Gallery(s) => s.start_with(confirm).await,
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

/// Items of a list printed in a summary, at most.
const SHOWN: usize = 20;

/// How one run ended.
struct Outcome {
    last: SyncProgress,
    report: SyncReport,
    /// A guard held the plan back: nothing was changed.
    refused: bool,
    /// The user asked it to stop (Ctrl-C, `cloudsync stop`).
    stopped: bool,
    elapsed: std::time::Duration,
}

impl Outcome {
    fn exit_code(&self) -> ExitCode {
        match self.last.state {
            SyncState::Completed => ExitCode::SUCCESS,
            SyncState::Stopped if self.refused => ExitCode::from(3),
            SyncState::Stopped => ExitCode::from(130),
            _ => ExitCode::from(1),
        }
    }

    /// `COMPLETED: 3 uploaded, …` and what went wrong, for people, the
    /// first line after `prefix`.
    fn print(&self, prefix: &str) {
        let (last, report) = (&self.last, &self.report);
        let error = if last.error == cloudsync::ErrorType::NoError {
            String::new()
        } else {
            format!(" ({})", last.error.name())
        };
        let state = if self.refused { "REFUSED" } else { last.state.name() };
        println!(
            "{prefix}{state}{error}: {} uploaded, {} downloaded, {} deleted here, {} deleted in the cloud, {} conflicts, {} failed, {} skipped in {:.1?}",
            report.uploaded,
            report.downloaded,
            report.deleted_local,
            report.deleted_remote,
            report.conflicts,
            report.failed,
            report.skipped_total,
            self.elapsed
        );
        if let Some(refusal) = &report.refusal {
            println!("  refused, nothing was changed: {refusal}");
        }
        for f in report.failures.iter().take(SHOWN) {
            println!("  failed: {}: {}", f.path, f.reason);
        }
        if report.failed as usize > SHOWN.min(report.failures.len()) {
            println!("  … {} failed in all", report.failed);
        }
        for f in report.skipped.iter().take(SHOWN) {
            println!("  skipped: {}: {}", f.path, f.reason);
        }
        if report.skipped_total as usize > SHOWN.min(report.skipped.len()) {
            println!("  … {} skipped in all (`--json` lists them)", report.skipped_total);
        }
        for n in &report.notes {
            println!("  note: {n}");
        }
        if let Some(e) = &report.last_error {
            if last.state != SyncState::Completed && report.failures.is_empty() {
                println!("  last failure: {e}");
            }
        }
    }

    fn log(&self) {
        let r = &self.report;
        let (state, error) = (self.last.state.name(), self.last.error.name());
        let fields = (
            r.uploaded,
            r.downloaded,
            r.deleted_local,
            r.deleted_remote,
            r.conflicts,
            r.failed,
        );
        if self.last.state == SyncState::Completed || self.refused || self.stopped {
            tracing::info!(state, error, refused = self.refused, counts = ?fields, "the run ended");
        } else {
            tracing::warn!(state, error, counts = ?fields, last_error = r.last_error.as_deref(), "the run failed");
        }
    }
}

/// Runs `run` (a `start` or a `plan`) and waits for its end, with a
/// progress bar on a terminal; a stop asked for stops the run.
async fn run_once(
    syncer: &Syncer,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<SyncProgress>,
    json: bool,
    show_bar: bool,
    run: impl std::future::Future<Output = Result<(), CloudSyncError>>,
) -> Result<Outcome, Failure> {
    let started = std::time::Instant::now();
    // A stop asked for from here on stops this run.
    let mut stop = StopSignal::claim();
    run.await?;
    let bar = (show_bar && !json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} files {elapsed}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar
    });
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
    let mut stopped = false;
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
            _ = stop.stopped(), if !stopped => {
                stopped = true;
                syncer.stop().await?;
            }
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = syncer.report().await?;
    let refused = report.refusal.is_some() && last.state == SyncState::Stopped;
    Ok(Outcome {
        last,
        report,
        refused,
        stopped,
        elapsed: started.elapsed(),
    })
}

/// Listens to the syncer's progress events.
fn progress_events(syncer: &Syncer) -> Result<tokio::sync::mpsc::UnboundedReceiver<SyncProgress>, Failure> {
    let (tx, events) = tokio::sync::mpsc::unbounded_channel::<SyncProgress>();
    syncer.on(move |p| {
        let _ = tx.send(p);
    })?;
    Ok(events)
}

async fn sync(rt: &Runtime, syncer: &Syncer, confirm: cloudsync::Confirm, json: bool) -> Result<ExitCode, Failure> {
    let mut events = progress_events(syncer)?;
    // Logs on stderr and a bar there would mix: a bar only without -v.
    let show_bar = !tracing::enabled!(tracing::Level::INFO);
    let mut outcome = run_once(syncer, &mut events, json, show_bar, syncer.start(confirm)).await?;
    if let Some(fault) = rt.last_fault() {
        // The engine failed mid-run: its instance (and the run's counts)
        // went with it; what it said is the reason.
        outcome.report.last_error.get_or_insert(fault);
    }
    outcome.log();
    if json {
        println!(
            "{}",
            serde_json::json!({ "result": outcome.last, "refused": outcome.refused, "report": outcome.report })
        );
    } else {
        outcome.print("");
    }
    Ok(outcome.exit_code())
}

/// `sync --dry-run`: the plan, step by step, and nothing changed.
async fn plan(rt: &Runtime, syncer: &Syncer, confirm: cloudsync::Confirm, json: bool) -> Result<ExitCode, Failure> {
    let mut events = progress_events(syncer)?;
    let (tx, mut steps) = tokio::sync::mpsc::unbounded_channel::<cloudsync::SyncDecision>();
    let listener = rt.on_decision(move |d| {
        if d.dry_run {
            let _ = tx.send(d.clone());
        }
    });
    let outcome = run_once(syncer, &mut events, json, false, syncer.plan(confirm)).await;
    rt.off_decision(listener);
    let outcome = outcome?;
    let mut counts: std::collections::BTreeMap<&'static str, u64> = Default::default();
    while let Ok(d) = steps.try_recv() {
        *counts.entry(d.action.name()).or_default() += 1;
        if json {
            println!(
                "{}",
                serde_json::json!({ "plan": d.action, "path": d.path, "reason": d.reason })
            );
        } else if d.action.changes_files()
            || matches!(
                d.action,
                cloudsync::SyncAction::Refuse | cloudsync::SyncAction::Skip | cloudsync::SyncAction::Fail
            )
            || tracing::enabled!(tracing::Level::DEBUG)
        {
            // A name with a newline or a tab in it stays on its line.
            let path = if d.path.is_empty() {
                "(the whole plan)".to_string()
            } else if d.path.chars().any(char::is_control) {
                format!("{:?}", d.path)
            } else {
                d.path.clone()
            };
            println!("{:<12} {path}  ({})", d.action.name(), d.reason);
        }
    }
    let n = |a: &str| counts.get(a).copied().unwrap_or(0);
    if json {
        println!(
            "{}",
            serde_json::json!({ "dry_run": outcome.last, "refused": outcome.refused, "planned": counts })
        );
    } else if let Some(refusal) = &outcome.report.refusal {
        println!("dry run: refused, a real run would change nothing: {refusal}");
    } else {
        println!(
            "dry run: {} to upload, {} to download, {} to delete here, {} to delete in the cloud, {} conflicts; nothing was changed",
            n("upload"),
            n("download") + n("placeholder"),
            n("delete-local"),
            n("delete-cloud"),
            n("conflict")
        );
        if outcome.last.state != SyncState::Completed {
            if let Some(e) = &outcome.report.last_error {
                println!("  the plan is not whole: {e}");
            }
        }
    }
    Ok(outcome.exit_code())
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
    // Page by page, so a folder of any size is listed in the same memory.
    let (mut files, mut cloud_only, mut skipped) = (0usize, 0usize, 0usize);
    let mut by_state: std::collections::BTreeMap<cloudsync::FileSyncState, usize> = Default::default();
    let mut after = None;
    loop {
        let page = cloudsync::list_files_page(rt, gallery, after.take(), 1024).await?;
        for f in &page.files {
            files += 1;
            cloud_only += usize::from(f.cloud_only);
            *by_state.entry(f.state).or_default() += 1;
            if json {
                println!("{}", serde_json::to_string(f).expect("entries serialize"));
                continue;
            }
            let place = if f.cloud_only { "cloud-only" } else { "local" };
            println!(
                "{:<15} {place:<10} {:>10}  {}",
                f.state.name(),
                human(f.size),
                uri_path(&f.uri)
            );
        }
        for n in &page.skipped {
            skipped += 1;
            if json {
                println!("{}", serde_json::json!({ "skipped": n.path, "reason": n.reason }));
            } else {
                println!("{:<15} {:<10} {:>10}  {}: {}", "SKIPPED", "local", "", n.path, n.reason);
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    // The last run, as the engine recorded it (in this process or before).
    let syncer = Syncer::open(rt, &Target { gallery, bundle: None })?;
    let last = syncer.report().await?;
    let last_sync_ms = match &syncer {
        Syncer::App(s) => s.get_last_sync_time().await?,
        Syncer::Gallery(_) => 0,
    };
    let counts: std::collections::BTreeMap<&str, usize> = by_state.iter().map(|(s, n)| (s.name(), *n)).collect();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "summary": { "files": files, "cloud_only": cloud_only, "skipped": skipped, "states": counts },
                "last_run": (last.ended_ms > 0).then_some(&last),
                "last_sync_ms": last_sync_ms,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{files} files ({cloud_only} only in the cloud, {skipped} names skipped) in {}",
        folder.display()
    );
    if !counts.is_empty() {
        let list: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        println!("  {}", list.join(", "));
    }
    match last.last {
        Some(end) if last.ended_ms > 0 => {
            let error = if end.error == cloudsync::ErrorType::NoError {
                String::new()
            } else {
                format!(" ({})", end.error.name())
            };
            println!(
                "last run: {}{error} at {}: {} uploaded, {} downloaded, {} deleted here, {} deleted in the cloud, {} conflicts, {} failed",
                if last.refusal.is_some() { "REFUSED" } else { end.state.name() },
                timestamp(last.ended_ms),
                last.uploaded,
                last.downloaded,
                last.deleted_local,
                last.deleted_remote,
                last.conflicts,
                last.failed
            );
            if let Some(why) = last.refusal.as_ref().or(last.last_error.as_ref()) {
                println!("  {why}");
            }
        }
        _ => println!("last run: none recorded"),
    }
    if last_sync_ms > 0 {
        println!("last complete sync: {}", timestamp(last_sync_ms));
    }
    Ok(ExitCode::SUCCESS)
}

/// The path a URI names, for people (`notes/a.txt`, `Photo/1/x.jpg`).
fn uri_path(uri: &str) -> String {
    let rest = uri
        .strip_prefix("file://media/")
        .or_else(|| uri.split_once("/data/storage/el2/cloud/").map(|(_, p)| p))
        .unwrap_or(uri);
    cloudsync::percent_decode(rest).unwrap_or_else(|| rest.to_string())
}

/// `1.5 MiB`, `320 B`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

async fn clean_cache(rt: &Runtime, target: &str, json: bool) -> Result<ExitCode, Failure> {
    let uri = to_uri(rt, target);
    let cache = CloudFileCache::new(rt);
    cache.clean_cache(&uri)?;
    if json {
        println!("{}", serde_json::json!({ "evicted": uri }));
    } else {
        println!("{uri} is now only in the cloud (run `cloudsync download` to fetch it again)");
    }
    Ok(ExitCode::SUCCESS)
}

async fn optimize(
    rt: &Runtime,
    aging_days: Option<u32>,
    total_size: Option<u64>,
    json: bool,
) -> Result<ExitCode, Failure> {
    if aging_days.is_none() && total_size.is_none() {
        return optimize_storage(rt, json).await;
    }
    let param = cloudsync::OptimizeSpaceParam {
        total_size: total_size.unwrap_or(u64::MAX),
        aging_days: aging_days.unwrap_or(30),
    };
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel::<cloudsync::OptimizeSpaceProgress>();
    let started = std::time::Instant::now();
    cloudsync::start_optimize_space(
        rt,
        param,
        Some(move |p| {
            let _ = tx.send(p);
        }),
    )
    .await?;
    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(100);
        bar.set_style(
            ProgressStyle::with_template("optimizing [{bar:40}] {pos}% {elapsed}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar
    });
    let mut stop = StopSignal::claim();
    let mut stopping = false;
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
                    bar.set_position(u64::from(p.progress));
                }
                if p.is_terminal() {
                    break p;
                }
            }
            _ = stop.stopped(), if !stopping => {
                stopping = true;
                cloudsync::stop_optimize_space(rt)?;
            }
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if !json {
        println!(
            "{} ({}%) in {:.1?}",
            last.state.name(),
            last.progress,
            started.elapsed()
        );
    }
    Ok(match last.state {
        cloudsync::OptimizeState::Completed => ExitCode::SUCCESS,
        cloudsync::OptimizeState::Stopped => ExitCode::from(130),
        _ => ExitCode::from(1),
    })
}

/// `optimizeStorage`: one pass of the engine's aging policy. Ctrl-C ends the
/// process (a pass has no stop; what it evicted stays evicted, safely).
async fn optimize_storage(rt: &Runtime, json: bool) -> Result<ExitCode, Failure> {
    let started = std::time::Instant::now();
    let mut stop = StopSignal::claim();
    tokio::select! {
        done = cloudsync::optimize_storage(rt) => done?,
        _ = stop.stopped() => return Ok(ExitCode::from(130)),
    }
    if json {
        println!("{}", serde_json::json!({ "state": "COMPLETED", "progress": 100 }));
    } else {
        println!("COMPLETED (100%) in {:.1?}", started.elapsed());
    }
    Ok(ExitCode::SUCCESS)
}

async fn state(rt: &Runtime, targets: &[String], json: bool) -> Result<ExitCode, Failure> {
    let uris: Vec<String> = targets.iter().map(|t| to_uri(rt, t)).collect();
    let refs: Vec<&str> = uris.iter().map(String::as_str).collect();
    // One file: the seed's single form (its own file-system codes).
    let states = match refs.as_slice() {
        [one] => vec![cloudsync::get_file_sync_state(rt, one)?],
        many => cloudsync::get_file_sync_states(rt, many).await?,
    };
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
    // A gallery item's original comes through `Download`; an app file
    // through `CloudFileCache`.
    let cache = if uri.starts_with("file://media/") {
        Fetcher::Gallery(cloudsync::Download::new(rt))
    } else {
        Fetcher::App(CloudFileCache::new(rt))
    };
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel::<DownloadProgress>();
    cache.on("progress", move |p| {
        let _ = tx.send(p);
    })?;
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
    // One signal for the whole wait: a Ctrl-C is never missed.
    let mut stop = StopSignal::claim();
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
            _ = stop.stopped(), if !stopping => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(parse_size("500K"), Ok(500 << 10));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("10 MiB"), Ok(10 << 20));
        for bad in ["", "0", "-1", "1X", "K", "99999999999999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_size_text_is_read_or_refused(text in "\\PC{0,24}") {
            if let Ok(n) = parse_size(&text) {
                proptest::prop_assert!(n > 0);
            }
            let _ = uri_path(&text);
        }
    }
}
