//! Command-line interface.

mod classify;
mod mount_helper;
mod repo;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

use crate::config::Config;
use crate::state::State;

/// A FUSE drop folder that backs up every file closed in it.
///
/// Applications write into the mount as into any folder; every write goes through to the
/// source directory. Each file a writer changed is, once closed, deduplicated, classified,
/// checked against policy, scanned by clamd, compressed with zstd, encrypted with OpenPGP
/// (readable by stock GnuPG) and uploaded to S3 or a local directory.
#[derive(Debug, Parser)]
#[command(
    name = "backupfs",
    version,
    about,
    long_about,
    after_help = "As a mount helper (fstab type fuse.backupfs, mount -t fuse.backupfs):\n  \
                  backupfs SOURCE MOUNTPOINT -o config=FILE[,allow_other,nodev,...]\n\
                  returns once mounted, with the daemon in the background (see README)."
)]
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
    /// `pipeline.drain-timeout`, and exits. Files still queued then are kept and resume at
    /// the next start, which also queues every file that changed while unmounted.
    Mount {
        /// The TOML config file (see config/backupfs.example.toml).
        #[arg(long, short)]
        config: PathBuf,
        /// The source directory, instead of mount.source.
        #[arg(long)]
        source: Option<PathBuf>,
        /// Where to mount, instead of mount.mountpoint.
        #[arg(long)]
        mountpoint: Option<PathBuf>,
        /// Mount options as mount(8) writes them: allow_other, default_permissions, nodev,
        /// nosuid, noexec, noatime, sync, dirsync and their opposites.
        #[arg(long, short = 'o', value_name = "OPTIONS")]
        options: Option<String>,
        /// Started by the mount(8) helper form: after the mount is up, stderr goes to
        /// /dev/null (the log file has everything) so that mount(8) can return.
        #[arg(long, hide = true)]
        detached: bool,
    },
    /// Check a config file and read the passphrase it names (running
    /// `encrypt.passphrase-command` if it names one), then exit.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Classify files as the pipeline would, without backing them up: one JSON object per
    /// file with its class, the detectors that fired (counts, never values), the format it
    /// was read as, and why it was only partially classified, if it was.
    Classify {
        /// Take `[classify]` from this config; without it the built-in defaults apply.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Instead of classify.max-bytes (e.g. 64MiB).
        #[arg(long, value_name = "SIZE")]
        max_bytes: Option<crate::config::ByteSize>,
        /// Instead of classify.max-time (e.g. 20s).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        max_time: Option<std::time::Duration>,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Show the queue, failed jobs with their errors, whether clamd and the destination
    /// answer, and the last backup (works while the mount runs).
    Status {
        #[arg(long, short)]
        config: PathBuf,
        /// One JSON object, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Show or retry queued jobs (works while the mount runs).
    Queue {
        #[command(subcommand)]
        action: QueueAction,
    },
    /// Write or read a hashes.json: a JSON map of sha256 to path and time.
    Hashes {
        #[command(subcommand)]
        action: HashesAction,
    },
    /// Restore files from the destination alone (no state directory needed).
    ///
    /// Fetches in parallel, decrypts, checks every SHA-256 against the catalog, and gives
    /// each file its mode, modification time and (as root) owner before renaming it into
    /// place. Exits non-zero if any file could not be restored.
    Restore {
        #[arg(long, short)]
        config: PathBuf,
        /// Restore the files as they were at this time: RFC 3339 (2026-12-04T10:00:00Z, or with
        /// an offset such as +01:00) or @SECONDS since 1970.
        #[arg(long)]
        at: Option<String>,
        /// Directory to restore into; default mount.source.
        #[arg(long)]
        to: Option<PathBuf>,
        /// Replace files that exist already.
        #[arg(long)]
        overwrite: bool,
        /// Files fetched at once.
        #[arg(long, default_value_t = 16)]
        jobs: usize,
        /// Read another host's catalog: its destination.prefix.
        #[arg(long)]
        host: Option<String>,
        /// Paths or directories inside the mount; `/` restores everything.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// List the files backed up (the newest version of each, or as they were at --at).
    Ls {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        at: Option<String>,
        #[arg(long)]
        host: Option<String>,
        /// Only below this directory.
        #[arg(default_value = "/")]
        prefix: PathBuf,
    },
    /// List every backed-up version of one file.
    History {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        host: Option<String>,
        path: PathBuf,
    },
    /// Re-download objects, decrypt them and check each SHA-256 against the catalog.
    /// Exits non-zero, naming the files affected, if any object is missing or corrupt.
    Verify {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        host: Option<String>,
        /// Every object (the default).
        #[arg(long, conflicts_with = "sample")]
        all: bool,
        /// Only N objects, chosen at random.
        #[arg(long, value_name = "N")]
        sample: Option<usize>,
    },
    /// Forget old versions and delete the objects nothing needs any more. Prints what it
    /// would do unless --yes is given. Safe while mounts are running.
    Prune {
        #[arg(long, short)]
        config: PathBuf,
        /// Keep the newest N versions of each file.
        #[arg(long, value_name = "N")]
        keep_last: Option<usize>,
        /// Keep every version backed up within this long (e.g. 30d, 12h).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        keep_within: Option<std::time::Duration>,
        /// Do it.
        #[arg(long)]
        yes: bool,
        /// How long to wait for running mounts to confirm before deleting anything.
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
    },
    /// Work on the catalog kept in the destination.
    Catalog {
        #[command(subcommand)]
        action: CatalogAction,
    },
}

#[derive(Debug, Subcommand)]
enum CatalogAction {
    /// Rebuild the local state (index and catalog) from the destination, e.g. on a new
    /// machine. The mount must not be running.
    Rebuild {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Merge the catalog into one snapshot now (the mount also does this by itself).
    Compact {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum QueueAction {
    /// List queued jobs, pending and failed, one JSON object per line.
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Make failed jobs pending again, after fixing their cause: the given paths (inside
    /// the mount), or all failed jobs.
    Retry {
        #[arg(long, short)]
        config: PathBuf,
        /// Paths inside the mount; none means every failed job.
        paths: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum HashesAction {
    /// Write the content already backed up as hashes.json (to stdout without --output).
    Export {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Treat the contents listed in a hashes.json (from the script backupfs replaces) as
    /// already backed up, so they are not uploaded again.
    Import {
        #[arg(long, short)]
        config: PathBuf,
        file: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if mount_helper::is_helper_call(&args, &Cli::command()) {
        return mount_helper::main(&args);
    }
    let cli = Cli::parse_from(args);
    // The daemon talks to sockets and must see EPIPE; the other commands print.
    if !matches!(cli.command, Command::Mount { .. }) {
        crate::sys::default_sigpipe();
    }
    let result = match cli.command {
        Command::Mount {
            config,
            source,
            mountpoint,
            options,
            detached,
        } => mount_helper::parse_options(options.as_deref().unwrap_or_default(), false).and_then(
            |parsed| {
                crate::daemon::run(
                    &config,
                    crate::daemon::MountArgs {
                        source,
                        mountpoint,
                        allow_other: parsed.allow_other,
                        options: parsed.kernel,
                        detached,
                    },
                )
            },
        ),
        Command::CheckConfig { config } => check_config(&config),
        Command::Classify {
            config,
            max_bytes,
            max_time,
            paths,
        } => classify::run(config.as_deref(), max_bytes, max_time, &paths),
        Command::Status { config, json } => status(&config, json),
        Command::Queue { action } => queue(action),
        Command::Hashes { action } => hashes(action),
        Command::Restore {
            config,
            at,
            to,
            overwrite,
            jobs,
            host,
            paths,
        } => repo::restore(repo::RestoreArgs {
            config: &config,
            host: host.as_deref(),
            at: at.as_deref(),
            to,
            overwrite,
            jobs,
            paths: &paths,
        }),
        Command::Ls {
            config,
            at,
            host,
            prefix,
        } => repo::ls(&config, host.as_deref(), at.as_deref(), &prefix),
        Command::History { config, host, path } => repo::history(&config, host.as_deref(), &path),
        Command::Verify {
            config,
            host,
            all: _,
            sample,
        } => repo::verify(&config, host.as_deref(), sample),
        Command::Prune {
            config,
            keep_last,
            keep_within,
            yes,
            wait,
        } => repo::prune(
            &config,
            crate::repo::prune::Policy {
                keep_last,
                keep_within,
            },
            yes,
            wait,
        ),
        Command::Catalog { action } => match action {
            CatalogAction::Rebuild { config } => repo::rebuild(&config),
            CatalogAction::Compact { config } => repo::compact(&config),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = describe(&e);
            eprintln!("backupfs: {text}");
            tracing::error!(error = %text, "exiting");
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause shown once even when an outer
/// message already quotes it.
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn check_config(path: &Path) -> anyhow::Result<()> {
    let settings = Config::load(path)?;
    let cfg = &settings.raw;
    settings.passphrase()?;
    for (key, dir) in [
        ("mount.source", &cfg.mount.source),
        ("mount.mountpoint", &cfg.mount.mountpoint),
    ] {
        if dir.as_os_str().is_empty() {
            println!("{key}: not set; the mount command line must give it");
        } else if !dir.is_dir() {
            anyhow::bail!("{key} {}: not an existing directory", dir.display());
        }
    }
    crate::pipeline::upload::credentials(&cfg.destination).map_err(anyhow::Error::msg)?;
    for warning in settings.allowed_warnings() {
        eprintln!("warning: {warning}");
    }
    println!("{}: ok", path.display());
    Ok(())
}

#[derive(serde::Serialize)]
struct Status {
    pending: u64,
    failed: u64,
    failed_jobs: Vec<crate::state::JobInfo>,
    clamd: Reachability,
    destination: Reachability,
    last_backup: Option<LastBackup>,
}

#[derive(serde::Serialize)]
struct Reachability {
    address: String,
    ok: bool,
    error: Option<String>,
}

#[derive(serde::Serialize)]
struct LastBackup {
    path: String,
    object: String,
    time: String,
}

fn reach<E: std::fmt::Display>(address: String, result: Result<(), E>) -> Reachability {
    Reachability {
        address,
        ok: result.is_ok(),
        error: result.err().map(|e| e.to_string()),
    }
}

fn status(config: &Path, json: bool) -> anyhow::Result<()> {
    let settings = Config::load(config)?;
    let cfg = &settings.raw;
    let state = State::open(&cfg.state.dir)?;
    let (pending, failed) = state.job_counts()?;
    let failed_jobs: Vec<_> = state
        .list_jobs()?
        .into_iter()
        .filter(|j| j.state == "failed")
        .collect();
    let scanner =
        crate::pipeline::scan::Scanner::new(settings.clamd.clone(), cfg.scan.max_stream_size.0);
    let clamd = reach(settings.clamd.to_string(), scanner.ping());
    // The destination drives its requests with Handle::block_on, which needs runtime
    // worker threads of its own.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let destination = match crate::pipeline::upload::open(&cfg.destination, rt.handle()) {
        Ok(dest) => reach(cfg.destination.base_url(), dest.probe()),
        Err(e) => reach(cfg.destination.base_url(), Err(e)),
    };
    let last_backup = state.last_backup()?.map(|(path, object, secs)| LastBackup {
        path,
        object,
        time: humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64),
        )
        .to_string(),
    });
    let status = Status {
        pending,
        failed,
        failed_jobs,
        clamd,
        destination,
        last_backup,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    println!(
        "queue:        {} pending, {} failed",
        status.pending, status.failed
    );
    for (name, r) in [
        ("clamd", &status.clamd),
        ("destination", &status.destination),
    ] {
        let state = if r.ok {
            "reachable".to_string()
        } else {
            format!("UNREACHABLE: {}", r.error.as_deref().unwrap_or(""))
        };
        println!("{name:<13} {} — {state}", r.address);
    }
    match &status.last_backup {
        Some(b) => println!("last backup:  {} ({}) at {}", b.path, b.object, b.time),
        None => println!("last backup:  none yet"),
    }
    for job in &status.failed_jobs {
        println!(
            "failed:       {:?}: {}",
            job.path,
            job.last_error.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

fn open_state(config: &Path) -> anyhow::Result<State> {
    let settings = Config::load(config)?;
    Ok(State::open(&settings.raw.state.dir)?)
}

fn queue(action: QueueAction) -> anyhow::Result<()> {
    match action {
        QueueAction::List { config } => {
            for job in open_state(&config)?.list_jobs()? {
                println!("{}", serde_json::to_string(&job)?);
            }
        }
        QueueAction::Retry { config, paths } => {
            let settings = Config::load(&config)?;
            // Accept paths as the user sees them too: absolute, under the mountpoint.
            let paths: Vec<PathBuf> = paths
                .into_iter()
                .map(|p| match p.strip_prefix(&settings.raw.mount.mountpoint) {
                    Ok(inside) => inside.to_path_buf(),
                    Err(_) => p,
                })
                .collect();
            let n = State::open(&settings.raw.state.dir)?
                .retry_failed(&paths, crate::pipeline::queue::now_ms())?;
            println!("{n} failed job(s) queued again");
        }
    }
    Ok(())
}

#[derive(serde::Serialize, serde::Deserialize)]
struct HashEntry {
    path: String,
    time: String,
}

fn hashes(action: HashesAction) -> anyhow::Result<()> {
    match action {
        HashesAction::Export { config, output } => {
            let mut map = serde_json::Map::new();
            for (sha, path, secs) in open_state(&config)?.export_hashes()? {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
                let time = humantime::format_rfc3339_seconds(at).to_string();
                map.insert(
                    hex::encode(sha),
                    serde_json::to_value(HashEntry { path, time })?,
                );
            }
            let text = serde_json::to_string_pretty(&map)? + "\n";
            match output {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => print!("{text}"),
            }
        }
        HashesAction::Import { config, file } => {
            let entries = read_hashes(&file)?;
            let n = open_state(&config)?.import_hashes(&entries)?;
            println!(
                "{n} of {} hashes imported from {}",
                entries.len(),
                file.display()
            );
        }
    }
    Ok(())
}

/// Reads a hashes.json; every error names the file and the entry.
fn read_hashes(file: &Path) -> anyhow::Result<Vec<([u8; 32], String, String)>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let map: std::collections::BTreeMap<String, HashEntry> = serde_json::from_str(&text)
        .with_context(|| {
            format!(
                "{}: not a JSON map of sha256 to {{\"path\", \"time\"}}",
                file.display()
            )
        })?;
    map.into_iter()
        .map(|(sha, entry)| {
            let bytes = hex::decode(&sha).ok().filter(|b| b.len() == 32);
            let digest: [u8; 32] = bytes
                .and_then(|b| b.try_into().ok())
                .with_context(|| format!("{}: `{sha}` is not a sha256 in hex", file.display()))?;
            Ok((digest, entry.path, entry.time))
        })
        .collect()
}
