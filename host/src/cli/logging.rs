//! Logs (`tracing`): warnings by default, each decision with `-v`, the
//! records too with `-vv`; on stderr or appended to `--log-file`, as text
//! or JSON lines. `RUST_LOG` overrides the level (`cloudsync=debug`).

use std::path::Path;

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Sets the process's logger up. A log file is opened to append (made if
/// missing, never through a link).
pub fn init(verbose: u8, file: Option<&Path>, format: LogFormat) -> Result<(), String> {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    // Our crates at the level asked; the libraries' own chatter only at -vvv.
    let default = if verbose >= 3 {
        "debug".to_string()
    } else {
        format!("warn,cloudsync={level}")
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let writer = match file {
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))?;
            tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::sync::Mutex::new(f))
        }
        None => tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr),
    };
    let ansi = file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let done = match format {
        LogFormat::Text => builder.with_writer(writer).with_ansi(ansi).try_init(),
        LogFormat::Json => builder.json().with_writer(writer).with_ansi(false).try_init(),
    };
    done.map_err(|e| format!("cannot set the logger up: {e}"))
}
