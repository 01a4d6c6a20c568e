//! Command-line interface.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

/// A FUSE drop folder that backs up every file closed in it.
///
/// Applications write into the mount as into any folder; every write goes through to the
/// source directory. Each file a writer changed is, once closed, deduplicated, classified,
/// checked against policy, scanned by clamd, compressed with zstd, encrypted with OpenPGP
/// (readable by stock GnuPG) and uploaded to S3 or a local directory.
#[derive(Debug, Parser)]
#[command(name = "backupfs", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mount the drop folder and run the backup pipeline in the foreground.
    ///
    /// Runs until SIGINT or SIGTERM, or until the mountpoint is unmounted from outside
    /// (umount), then unmounts, lets queued files finish for up to
    /// `pipeline.drain-timeout`, and exits.
    Mount {
        /// The TOML config file (see config/backupfs.example.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config file and the passphrase file it names, then exit.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mount { config } => crate::daemon::run(&config),
        Command::CheckConfig { config } => check_config(&config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backupfs: {e:#}");
            tracing::error!(error = %format!("{e:#}"), "exiting");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: &std::path::Path) -> anyhow::Result<()> {
    let settings = Config::load(path)?;
    crate::secret::read_passphrase(&settings.raw.encrypt.passphrase_file)?;
    println!("{}: ok", path.display());
    Ok(())
}
