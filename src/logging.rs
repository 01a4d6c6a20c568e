//! Logging setup: structured lines to `log.file` (text or JSON) and text to stderr, verbosity
//! from the `BACKUPFS_LOG` variable (env-filter syntax, default `info`).

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer, Registry};

use crate::config::LogFormat;

/// Quiet by default for the chatty dependencies; `BACKUPFS_LOG` overrides everything.
const DEFAULT_FILTER: &str =
    "info,aws_config=warn,aws_smithy_runtime=warn,aws_sdk_s3=warn,hyper=warn,fuser=warn";

fn filter() -> EnvFilter {
    EnvFilter::try_from_env("BACKUPFS_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// Logs to stderr only; for commands that run before a config names a log file.
pub fn init_stderr() {
    let _ = tracing_subscriber::registry()
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter()),
        )
        .try_init();
}

/// Logs to `file` (created with its directory) in `format`, and to stderr as text.
///
/// The file is opened for appending, so every write lands at its current end: after
/// logrotate's `copytruncate` empties it, the next line starts at offset 0 instead of leaving a
/// hole of zeros the size of the old log.
pub fn init_with_file(file: &Path, format: LogFormat) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let out = Arc::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(file)?,
    );
    let _ = tracing_subscriber::registry()
        .with(file_layer(out, format))
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter()),
        )
        .try_init();
    install_panic_hook();
    Ok(())
}

fn file_layer(
    out: Arc<std::fs::File>,
    format: LogFormat,
) -> Box<dyn Layer<Registry> + Send + Sync> {
    match format {
        LogFormat::Text => fmt::layer()
            .with_ansi(false)
            .with_thread_names(true)
            .with_writer(out)
            .with_filter(filter())
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_thread_names(true)
            .with_writer(out)
            .with_filter(filter())
            .boxed(),
    }
}

/// Sends panics through tracing, so they land in the log file, not only on a lost stderr.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "panic");
        default(info);
    }));
}
