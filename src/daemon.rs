//! `backupfs mount`: wires config, pipeline and mount together and runs until told to stop.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context};
use fuser::{MountOption, Notifier, SessionACL};

use crate::config::{Config, Settings};
use crate::fs::fuse::FuseAdapter;
use crate::fs::Passthrough;
use crate::metrics::Metrics;
use crate::pipeline::classify::Classifier;
use crate::pipeline::gate1::{Blacklist, Gate1};
use crate::pipeline::gate2::Gate2;
use crate::pipeline::quarantine::Quarantine;
use crate::pipeline::scan::Scanner;
use crate::pipeline::seal::Sealer;
use crate::pipeline::upload::{self, ObjectNamer};
use crate::pipeline::{self, Backoff, Pipeline, Queue, Stages};
use crate::repo::publish::Publisher;
use crate::repo::{Condemned, PassphraseCheck, Repo};
use crate::state::State;
use crate::sys;

/// What the command line adds to the config's `[mount]` section.
#[derive(Debug, Default)]
pub struct MountArgs {
    /// Instead of `mount.source` and `mount.mountpoint`.
    pub source: Option<std::path::PathBuf>,
    pub mountpoint: Option<std::path::PathBuf>,
    /// Sets `mount.allow-other`.
    pub allow_other: bool,
    /// Flags for the kernel (nodev, noatime, ...).
    pub options: Vec<MountOption>,
    /// Started in the background by the mount(8) form: stdin, stdout and stderr go to
    /// /dev/null once mounted.
    pub detached: bool,
}

/// Mounts and runs until SIGINT, SIGTERM or an external unmount.
pub fn run(config_path: &Path, args: MountArgs) -> anyhow::Result<()> {
    let mut settings = Config::load(config_path)?;
    settings.set_mount_dirs(args.source.as_deref(), args.mountpoint.as_deref())?;
    settings.raw.mount.allow_other |= args.allow_other;
    let settings = settings;
    let cfg = &settings.raw;
    let passphrase = settings.passphrase()?;
    let hidden = crate::logging::redact(&passphrase);
    // Everything backupfs itself creates (state, spool, logs, local objects) is private to
    // root and its group. Files created through the mount get the caller's mode explicitly.
    sys::set_umask(0o027);
    let _state_lock = crate::state::lock(&cfg.state.dir)?;
    refuse_mounted(&cfg.mount.mountpoint)?;
    crate::logging::init_with_file(&cfg.log.file, cfg.log.format)
        .with_context(|| format!("log.file {}", cfg.log.file.display()))?;
    tracing::info!(config = %config_path.display(), version = env!("CARGO_PKG_VERSION"), "starting");
    if !hidden {
        tracing::warn!(
            "the passphrase is shorter than {} bytes: it is weak, and too short to be hidden \
             in the logs",
            crate::logging::MIN_REDACTED
        );
    }

    match sys::raise_nofile_limit() {
        Ok(n) => tracing::info!(limit = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    for warning in settings.allowed_warnings() {
        tracing::warn!("{warning}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("io")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;

    let metrics = Metrics::new().context("cannot register metrics")?;
    if let Some(addr) = settings.metrics_listen {
        let bound = crate::metrics::serve(metrics.clone(), addr)
            .with_context(|| format!("metrics.listen {addr}: cannot listen"))?;
        tracing::info!(address = %bound, "serving /metrics");
    }

    let state = Arc::new(State::open(&cfg.state.dir)?);
    let queue = Queue::new(
        state.clone(),
        metrics.clone(),
        cfg.pipeline.settle_delay,
        cfg.pipeline.max_delay,
    );
    let blacklist = Blacklist::new(settings.blacklist.clone());
    let fs = Passthrough::new(&cfg.mount.source, blacklist.clone(), queue.clone())
        .with_context(|| format!("mount.source {}", cfg.mount.source.display()))?;
    let fs = Arc::new(fs);
    start_open_writer_reports(&fs, cfg.pipeline.max_delay);
    let notifier: Arc<OnceLock<Notifier>> = Arc::new(OnceLock::new());

    let destination: Arc<dyn upload::Destination> = upload::open(&cfg.destination, rt.handle())
        .map_err(anyhow::Error::msg)?
        .into();
    let condemned = Arc::new(Condemned::default());
    let passphrase_check = Arc::new(PassphraseCheck::default());
    // One passphrase stretch serves the pipeline and the catalog.
    let sealer = Arc::new(
        Sealer::new(&passphrase, cfg.encrypt.zstd_level).context("cannot prepare encryption")?,
    );
    let publisher = Publisher {
        repo: Arc::new(Repo::with_destination(
            &settings,
            sealer.clone(),
            destination.clone(),
        )),
        state: state.clone(),
        queue: queue.clone(),
        condemned: condemned.clone(),
        interval: cfg.catalog.flush_interval,
        compact_after: cfg.catalog.compact_after,
        passphrase: passphrase_check.clone(),
    };
    let stages = build_stages(
        &settings,
        state,
        &passphrase,
        sealer,
        (destination, condemned, passphrase_check),
        metrics.clone(),
        blacklist,
        &fs,
        &notifier,
    )?;
    if let Err(e) = stages.destination.probe() {
        tracing::error!(error = %e, "the destination does not answer as expected; files wait in the queue");
        metrics.destination_up.set(0);
    }
    if let Ok((_, failed)) = stages.state.job_counts() {
        if failed > 0 {
            tracing::warn!(
                failed,
                "failed jobs wait for `backupfs queue retry` once their cause is fixed"
            );
        }
    }
    if let Err(e) = stages.scanner.ping() {
        tracing::error!(error = %e, "clamd is unreachable; files will wait for it and nothing is uploaded unscanned");
        metrics.clamd_up.set(0);
    }
    // Refused now if the destination answers; otherwise uploads and the catalog wait
    // until the check could run.
    publisher
        .passphrase
        .run(&publisher.repo)
        .with_context(|| cfg.encrypt.passphrase_source())?;
    match publisher.check_unpublished() {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            versions = n,
            "files whose objects a prune removed are queued again"
        ),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot check unpublished catalog records against the destination")
        }
    }
    let pipeline =
        Pipeline::start(stages, queue, cfg.pipeline.workers).context("cannot start the workers")?;
    // Dropping `publishing` tells the catalog writer to flush once more and end.
    let (publishing, stop) = crossbeam_channel::bounded::<()>(0);
    let publisher = std::thread::Builder::new()
        .name("catalog".into())
        .spawn(move || publisher.run(&stop))
        .context("cannot start the catalog writer")?;

    let session = match mount(&settings, &args.options, fs) {
        Ok(session) => session,
        Err(e) => {
            // Stop the workers and the catalog writer before the runtime they use goes.
            pipeline.shutdown(Duration::ZERO);
            drop(publishing);
            let _ = publisher.join();
            return Err(e);
        }
    };
    let _ = notifier.set(session.notifier());
    tracing::info!(source = %cfg.mount.source.display(), mountpoint = %cfg.mount.mountpoint.display(), workers = cfg.pipeline.workers, "mounted");
    start_catchup(&cfg.mount.source, pipeline.queue().clone(), metrics.clone());
    if args.detached {
        // Whoever started us in the background waits for READY=1 and then goes; nothing
        // may write to its pipe after that. The log file keeps everything.
        if let Err(e) = sys::stdio_to_dev_null() {
            tracing::warn!(error = %e, "cannot detach from the terminal");
        }
    }
    notify_systemd("READY=1\nSTATUS=mounted");

    let unmounted_outside = rt.block_on(wait_for_stop(&session));
    if unmounted_outside {
        tracing::info!("mountpoint was unmounted; stopping");
        if let Err(e) = session.join() {
            tracing::warn!(error = %e, "fuse session ended with an error");
        }
    } else if let Err(e) = session.umount_and_join() {
        tracing::error!(error = %e, mountpoint = %cfg.mount.mountpoint.display(), "unmount failed");
    } else {
        tracing::info!("unmounted");
    }

    if !args.detached {
        // Detached, the socket belonged to the mount(8) form, which went at READY=1.
        notify_systemd("STOPPING=1\nSTATUS=draining the queue");
    }
    let (waiting, failed) = pipeline.queue().refresh_gauges();
    tracing::info!(waiting, failed, drain = ?cfg.pipeline.drain_timeout, "draining the queue");
    let left = pipeline.shutdown(cfg.pipeline.drain_timeout);
    if left > 0 {
        tracing::warn!(
            left,
            "stopped with files still queued; they resume at the next start"
        );
    }
    drop(publishing);
    if publisher.join().is_err() {
        tracing::error!(
            "the catalog writer panicked; unwritten records are written at the next start"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn build_stages(
    settings: &Settings,
    state: Arc<State>,
    passphrase: &[u8],
    sealer: Arc<Sealer>,
    (destination, condemned, passphrase_check): (
        Arc<dyn upload::Destination>,
        Arc<Condemned>,
        Arc<PassphraseCheck>,
    ),
    metrics: Arc<Metrics>,
    blacklist: Blacklist,
    fs: &Arc<Passthrough>,
    notifier: &Arc<OnceLock<Notifier>>,
) -> anyhow::Result<Stages> {
    let cfg = &settings.raw;
    let spool = settings.spool_dir();
    pipeline::prepare_spool(&spool).with_context(|| format!("spool {}", spool.display()))?;
    let quarantine = Quarantine::open(&cfg.log.quarantine_dir)
        .with_context(|| format!("log.quarantine-dir {}", cfg.log.quarantine_dir.display()))?;
    let audit = pipeline::audit::AuditLog::open(&cfg.log.audit)
        .with_context(|| format!("log.audit {}", cfg.log.audit.display()))?;
    let source = sys::open_beneath_root(fs.source())
        .with_context(|| format!("mount.source {}", fs.source().display()))?;

    let on_removed = {
        let fs = fs.clone();
        let notifier = notifier.clone();
        Box::new(move |path: &Path| {
            let (Some(n), Some((parent, name))) = (notifier.get(), fs.kernel_entry(path)) else {
                return;
            };
            if let Err(e) = n.inval_entry(fuser::INodeNo(parent), &name) {
                tracing::debug!(error = %e, "cannot invalidate kernel entry");
            }
        })
    };
    Ok(Stages {
        source,
        spool,
        state,
        classifier: classifier(&cfg.classify)?,
        extract: crate::pipeline::extract::Limits::from(&cfg.classify),
        gate1: Gate1 {
            max_file_size: cfg.policy.max_file_size.0,
            blacklist,
            allowed_extensions: cfg.policy.allowed_extensions.clone(),
            denied_extensions: cfg.policy.denied_extensions.clone(),
            allowed_types: cfg.policy.allowed_types.clone(),
            denied_types: cfg.policy.denied_types.clone(),
            reject_type_mismatch: cfg.policy.reject_type_mismatch,
            class_max_file_size: cfg.class.max_file_sizes(),
        },
        scanner: Scanner::new(settings.clamd.clone(), cfg.scan.max_stream_size.0),
        quarantine,
        sealer,
        gate2: Gate2::new(&cfg.destination.allowed),
        namer: ObjectNamer::new(passphrase, cfg.destination.content_prefix()),
        routes: cfg.class.routes(&cfg.destination),
        destination,
        condemned,
        passphrase: passphrase_check,
        audit,
        metrics,
        backoff: Backoff {
            first: cfg.pipeline.retry_delay,
            max: cfg.pipeline.retry_max_delay,
        },
        settle: cfg.pipeline.settle_delay,
        on_removed,
    })
}

fn mount(
    settings: &Settings,
    flags: &[MountOption],
    fs: Arc<Passthrough>,
) -> anyhow::Result<fuser::BackgroundSession> {
    let cfg = &settings.raw;
    let mountpoint = &cfg.mount.mountpoint;
    if !mountpoint.is_dir() {
        bail!(
            "mount.mountpoint {}: not an existing directory",
            mountpoint.display()
        );
    }
    if cfg.mount.passthrough == crate::config::Passthrough::On {
        if !crate::sys::has_cap_sys_admin() {
            bail!("mount.passthrough = \"on\": kernel passthrough needs CAP_SYS_ADMIN (run as root), or set it to \"auto\"");
        }
        if let Some(release) = kernel_release().filter(|&(major, minor)| (major, minor) < (6, 9)) {
            bail!(
                "mount.passthrough = \"on\": kernel passthrough needs Linux 6.9 or later, this is {}.{}; set it to \"auto\"",
                release.0,
                release.1
            );
        }
    }
    let mut options = fuser::Config::default();
    options.mount_options = vec![
        MountOption::FSName(cfg.mount.source.display().to_string()),
        MountOption::Subtype("backupfs".into()),
        // The kernel takes the subtype too when the daemon mounts by itself (as root), so
        // the mount shows as `fuse.backupfs`, as mount(8) and fstab name it.
        MountOption::CUSTOM("subtype=backupfs".into()),
    ];
    options.mount_options.extend(flags.iter().cloned());
    if cfg.mount.allow_other {
        options.acl = SessionACL::All;
        if !flags.contains(&MountOption::DefaultPermissions) {
            options.mount_options.push(MountOption::DefaultPermissions);
        }
    }
    options.n_threads = Some(cfg.mount.threads);
    options.clone_fd = true;
    let adapter = FuseAdapter::new(fs, cfg.mount.passthrough, cfg.mount.cache_timeout);
    let session = fuser::Session::new(adapter, mountpoint, &options).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied && crate::sys::geteuid() != 0 {
            " (as a user other than root, mounting needs read and write access to /dev/fuse and the set-user-ID fusermount3 from the fuse3 package)"
        } else {
            ""
        };
        anyhow::anyhow!(
            "mount.mountpoint {}: cannot mount: {e}{hint}",
            mountpoint.display()
        )
    })?;
    session
        .spawn()
        .with_context(|| format!("mount.mountpoint {}: cannot start", mountpoint.display()))
}

/// The running kernel's major and minor version.
fn kernel_release() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Every `every`, reports files that handles still open have changed (a log kept open for
/// days), whether the writes passed through the daemon or went straight to the file. Stops
/// with the passthrough.
fn start_open_writer_reports(fs: &Arc<Passthrough>, every: std::time::Duration) {
    if every.is_zero() {
        return;
    }
    let fs = Arc::downgrade(fs);
    let _ = std::thread::Builder::new()
        .name("open-writers".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            match fs.upgrade() {
                Some(fs) => fs.report_open_writers(),
                None => return,
            }
        });
}

/// Refuses a mountpoint that already has something mounted on it: mounting over it would
/// silently hide that mount and send writes elsewhere.
fn refuse_mounted(mountpoint: &Path) -> anyhow::Result<()> {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Ok(());
    };
    let target = std::path::absolute(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
    let target = target.to_string_lossy();
    // Field 5 is the mount point (with spaces as \040), field after " - " is the type.
    let found = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(&*target.replace(' ', "\\040")));
    if let Some(line) = found {
        let kind = line
            .split(" - ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap_or("?");
        let dead = std::fs::metadata(mountpoint)
            .err()
            .and_then(|e| e.raw_os_error())
            == Some(libc::ENOTCONN);
        if kind.starts_with("fuse") && dead {
            // A daemon that crashed leaves its mount behind, answering nothing; clear it so
            // that a restart (by systemd, say) just works.
            eprintln!(
                "backupfs: clearing the dead mount a previous run left at {}",
                mountpoint.display()
            );
            sys::detach(mountpoint).with_context(|| {
                format!(
                    "mount.mountpoint {}: cannot clear the dead mount",
                    mountpoint.display()
                )
            })?;
            return Ok(());
        }
        bail!(
            "mount.mountpoint {}: something is already mounted there ({kind}); unmount it first",
            mountpoint.display()
        );
    }
    Ok(())
}

/// Tells systemd (a `Type=notify` unit) about the daemon's state; does nothing when not
/// started by systemd.
fn notify_systemd(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = target.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(Path::new(&target)),
    };
    let sent = UnixDatagram::unbound().and_then(|sock| {
        let addr = addr?;
        sock.send_to_addr(state.as_bytes(), &addr)
    });
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Queues, in the background, every file that changed while nothing was watching.
fn start_catchup(source: &Path, queue: Arc<Queue>, metrics: Arc<Metrics>) {
    let source = source
        .canonicalize()
        .unwrap_or_else(|_| source.to_path_buf());
    let spawned = std::thread::Builder::new().name("catch-up".into()).spawn(move || {
        if let Err(e) = crate::pipeline::catchup::run(&source, &queue, &metrics) {
            tracing::error!(error = %e, "catch-up failed; changed files are backed up when next closed");
            metrics.catchup_running.set(0);
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start catch-up");
    }
}

/// Waits for SIGINT, SIGTERM or the session ending by itself. True for the last.
async fn wait_for_stop(session: &fuser::BackgroundSession) -> bool {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop by unmounting");
        while !session.guard.is_finished() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        return true;
    };
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received"); return false; }
            _ = int.recv() => { tracing::info!("SIGINT received"); return false; }
            _ = tick.tick() => if session.guard.is_finished() { return true; },
        }
    }
}

/// The classifier `[classify]` describes.
pub fn classifier(cfg: &crate::config::ClassifyConfig) -> anyhow::Result<Classifier> {
    Ok(Classifier::new(cfg)?)
}
