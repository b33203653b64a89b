//! `cloudsync`: the command line.
//!
//! `cloudsync [--root DIR] [--cloud URL] [--app BUNDLE] [--json] <command> …`
//!
//! A failing command exits non-zero and prints the seed's numeric code and
//! message; with `--json`, every event is one JSON object on stdout.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use cloudsync::cloud::{ConfigFile, RateLimitedCloud};
use cloudsync::{CloudFileCache, CloudSyncError, DownloadProgress, Identity, Runtime, State};
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    let rt = Runtime::builder(&root)
        .cloud(cloud)
        .identity(Identity::system(&app))
        .build()
        .await
        .map_err(|e| Failure::Api(CloudSyncError::service(e.to_string())))?;
    match cli.command {
        Command::Download { uri, keep_partial } => download(&rt, &uri, keep_partial, cli.json).await,
    }
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
    let uri = if target.starts_with("file://") {
        target.to_string()
    } else {
        rt.uri_for(target.trim_start_matches('/'))
    };
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
