//! The backup pipeline: a durable queue fed by the mount and by catch-up, and a pool of
//! workers that take each file through the stages in order.
//!
//! ```text
//! release() ─► Queue ─► worker: dedup ─► classify ─► gate1 ─► scan ─► seal ─► gate2 ─► upload
//! ```
//!
//! Each stage streams the file through bounded buffers, so no file is ever held whole in
//! memory. A job leaves the queue only in the transaction that records its outcome; a file
//! that changes under a worker is put back, never stored torn.

pub mod audit;
pub mod catchup;
pub mod classify;
pub mod dedup;
pub mod extract;
pub mod gate1;
pub mod gate2;
pub mod quarantine;
pub mod queue;
pub mod scan;
pub mod seal;
pub mod upload;

use std::fs::File;
use std::io::{self, BufWriter, Seek};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::metrics::{Metrics, Outcome};
use crate::repo::{PassphraseCheck, SharedCondemned};
use crate::state::{Attrs, FileStat, Finish, JobRow, State, Version};
use crate::sys;
use audit::{AuditLog, AuditRecord};
use classify::Classifier;
use gate1::Gate1;
use gate2::Gate2;
use quarantine::Quarantine;
pub use queue::Queue;
use scan::{Scanner, Verdict};
use seal::Sealer;
use upload::{Destination, ObjectNamer, Route, Routes, UploadError};

/// How long to wait between attempts at a stage that failed for a passing reason.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay after `delay`: doubled, capped, with ±25 % jitter so that workers (and
    /// hosts) that failed together do not retry together.
    fn next(&self, delay: Duration) -> Duration {
        let doubled = (delay * 2).min(self.max);
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        doubled.mul_f64(jitter).min(self.max).max(self.first)
    }
}

/// Everything the workers share: one value per stage, plus the places outcomes go.
pub struct Stages {
    pub source: OwnedFd,
    pub spool: PathBuf,
    pub state: Arc<State>,
    pub classifier: Classifier,
    /// How much of each file classification reads.
    pub extract: extract::Limits,
    pub gate1: Gate1,
    pub scanner: Scanner,
    pub quarantine: Quarantine,
    pub sealer: Arc<Sealer>,
    pub gate2: Gate2,
    pub namer: ObjectNamer,
    /// Where each class's content objects go.
    pub routes: Routes,
    pub destination: Arc<dyn Destination>,
    /// Objects a prune in progress may delete: never pointed at by a new version.
    pub condemned: SharedCondemned,
    /// Uploads wait until the passphrase is known to open this host's catalog.
    pub passphrase: Arc<PassphraseCheck>,
    pub audit: AuditLog,
    pub metrics: Arc<Metrics>,
    pub backoff: Backoff,
    /// How long a file that changed under a worker waits before the next try.
    pub settle: Duration,
    /// Told when the pipeline moved a file out of the source, so the mount can forget it.
    pub on_removed: Box<dyn Fn(&Path) + Send + Sync>,
}

/// The running worker pool.
pub struct Pipeline {
    queue: Arc<Queue>,
    /// Set at shutdown: no new job starts.
    closing: Arc<AtomicBool>,
    /// Set when the drain time is up: jobs waiting on a retry give up (and stay queued).
    abort: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    /// Dropped at shutdown, which wakes the gauges thread at once.
    stop_gauges: crossbeam_channel::Sender<()>,
}

impl Pipeline {
    pub fn start(stages: Stages, queue: Arc<Queue>, workers: usize) -> io::Result<Self> {
        let stages = Arc::new(stages);
        let closing = Arc::new(AtomicBool::new(false));
        let abort = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::with_capacity(workers + 1);
        for i in 0..workers {
            let worker = Worker {
                queue: queue.clone(),
                stages: stages.clone(),
                closing: closing.clone(),
                abort: abort.clone(),
            };
            handles.push(
                std::thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn(move || worker.run())?,
            );
        }
        let q = queue.clone();
        let (stop_gauges, stopped) = crossbeam_channel::bounded::<()>(0);
        handles.push(
            std::thread::Builder::new()
                .name("gauges".into())
                .spawn(move || loop {
                    q.refresh_gauges();
                    match stopped.recv_timeout(Duration::from_millis(500)) {
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                })?,
        );
        Ok(Self {
            queue,
            closing,
            abort,
            workers: handles,
            stop_gauges,
        })
    }

    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// Waits up to `drain` for queued and running jobs, then stops the workers. Returns the
    /// number of jobs left queued for the next start.
    pub fn shutdown(self, drain: Duration) -> u64 {
        let deadline = Instant::now() + drain;
        while Instant::now() < deadline {
            self.queue.commit();
            let (pending, _) = self.queue.refresh_gauges();
            if pending == 0 && self.queue.in_flight() == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.closing.store(true, Ordering::SeqCst);
        self.abort.store(true, Ordering::SeqCst);
        // Idle workers and the gauges thread stop now rather than at their next poll.
        self.queue.wake_all();
        drop(self.stop_gauges);
        for handle in self.workers {
            let _ = handle.join();
        }
        self.queue.refresh_gauges().0
    }
}

struct Worker {
    queue: Arc<Queue>,
    stages: Arc<Stages>,
    closing: Arc<AtomicBool>,
    abort: Arc<AtomicBool>,
}

/// Why a job stopped short of being stored.
enum Stop {
    /// Ends the job with this outcome and reason.
    Outcome(Outcome, String),
    /// The file changed while it was read; try again once it settles.
    Changed(String),
    /// Shutdown interrupted a retry; the job stays queued.
    Aborted,
}

impl From<(Outcome, String)> for Stop {
    fn from((outcome, reason): (Outcome, String)) -> Self {
        Stop::Outcome(outcome, reason)
    }
}

/// Reads up to `buf.len()` bytes from the start of `file` without moving its offset.
fn read_head(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn failed(stage: &str, e: impl std::fmt::Display) -> Stop {
    Stop::Outcome(Outcome::Failed, format!("{stage}: {e}"))
}

/// What a stored job left in the destination.
struct Stored {
    object: String,
    /// Whether this job uploaded the object (else it was there already).
    uploaded: bool,
    /// Whether the local content index should learn of the object.
    index: bool,
    /// The object's prefix and storage class.
    route: Route,
}

/// One job as it goes through the stages.
struct Ctx {
    job: JobRow,
    record: AuditRecord,
    sha: Option<[u8; 32]>,
    stat: Option<FileStat>,
    attrs: Attrs,
    /// The source file as opened (not a snapshot), to tell at the end whether it was
    /// deleted meanwhile.
    source: Option<File>,
}

/// After this many tries that found the file changing, back up a snapshot instead.
const SNAPSHOT_AFTER: i64 = 3;

/// How often a waiting retry asks whether its service is back.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The service behind a retried stage: its gauge, and a cheap check that it answers.
#[derive(Clone, Copy)]
struct Watch<'a> {
    up: &'a prometheus::IntGauge,
    probe: &'a dyn Fn() -> bool,
}

/// One try at a stage that talks to something outside: try again, or give up.
enum Attempt {
    Retry(String),
    Give(Stop),
}

/// Removes the spool file when a job is done with it, whatever the outcome.
struct SpoolFile(PathBuf);

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Worker {
    fn run(self) {
        while !self.closing.load(Ordering::SeqCst) {
            match self.queue.take(Duration::from_millis(100)) {
                Ok(Some(job)) => {
                    self.run_job(job.clone());
                    self.queue.release(&job);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the queue");
                    self.sleep(Duration::from_secs(1));
                }
            }
        }
    }

    fn run_job(&self, job: JobRow) {
        let started = Instant::now();
        let mut ctx = Ctx {
            record: AuditRecord::new(job.id, &job.path),
            job,
            sha: None,
            stat: None,
            attrs: Attrs::default(),
            source: None,
        };
        let result = self.process(&mut ctx);
        let recorded = match result {
            Ok(stored) => self.store(&mut ctx, stored),
            Err(Stop::Outcome(outcome, reason)) => self.end(&mut ctx, outcome, reason),
            Err(Stop::Changed(why)) => return self.put_back(&ctx, &why),
            Err(Stop::Aborted) => {
                tracing::warn!(job = ctx.job.id, path = ?ctx.job.path, "shutdown interrupted the job; it stays queued");
                return;
            }
        };
        if let Err(e) = recorded {
            // The job stays queued and runs again; uploading the same object twice is
            // harmless, losing the record is not.
            tracing::error!(job = ctx.job.id, error = %e, "cannot record the outcome; the job stays queued");
            return;
        }
        self.stages
            .metrics
            .job_seconds
            .observe(started.elapsed().as_secs_f64());
        self.report(&ctx);
    }

    /// Commits an uploaded or duplicate file: catalog, index, and the job's removal.
    fn store(&self, ctx: &mut Ctx, stored: Stored) -> Result<(), crate::state::StateError> {
        ctx.record.outcome = if stored.uploaded {
            Outcome::Uploaded
        } else {
            ctx.record.reason = Some("content already backed up".into());
            Outcome::Duplicate
        };
        let sha = ctx.sha.unwrap_or_default();
        let version = Version {
            path: &ctx.job.path,
            sha256: &sha,
            object: &stored.object,
            size: ctx.record.size.unwrap_or(0),
            attrs: ctx.attrs,
            classification: ctx
                .record
                .classification
                .as_deref()
                .unwrap_or("unclassified"),
            route: &stored.route,
        };
        let seen = ctx.stat.map(|st| (st, ctx.record.outcome.as_str()));
        let source = ctx.source.take();
        let still_there = || {
            source
                .as_ref()
                .and_then(|f| sys::fstat(f.as_fd()).ok())
                .is_none_or(|st| st.st_nlink > 0)
        };
        let recorded = self.stages.state.finish_if(
            &ctx.job,
            Finish {
                version: Some((version, stored.index)),
                seen,
            },
            &still_there,
        )?;
        if recorded {
            ctx.record.object = Some(stored.object);
            ctx.record.route = Some(stored.route);
        } else {
            ctx.record.outcome = Outcome::Vanished;
            ctx.record.reason = Some("deleted while it was backed up".into());
        }
        Ok(())
    }

    /// Records an outcome that stores nothing. A failure stays queued as `failed`.
    fn end(
        &self,
        ctx: &mut Ctx,
        outcome: Outcome,
        reason: String,
    ) -> Result<(), crate::state::StateError> {
        ctx.record.outcome = outcome;
        let state = &self.stages.state;
        let result = match outcome {
            Outcome::Failed => state.fail(&ctx.job, &reason),
            // The path no longer names this content: forget it.
            Outcome::Vanished | Outcome::Infected => state.finish(
                &ctx.job,
                Finish {
                    version: None,
                    seen: None,
                },
            ),
            _ => {
                let seen = ctx.stat.map(|st| (st, outcome.as_str()));
                state.finish(
                    &ctx.job,
                    Finish {
                        version: None,
                        seen,
                    },
                )
            }
        };
        ctx.record.reason = Some(reason);
        result
    }

    fn put_back(&self, ctx: &Ctx, why: &str) {
        let until = queue::now_ms() + self.stages.settle.as_millis() as i64;
        self.stages.metrics.requeued.inc();
        tracing::info!(job = ctx.job.id, path = ?ctx.job.path, reason = why, "file changed while processed; queued again");
        if let Err(e) = self.stages.state.defer(ctx.job.id, until) {
            tracing::error!(job = ctx.job.id, error = %e, "cannot put the job back");
        }
    }

    /// Logs, counts and audits an outcome.
    fn report(&self, ctx: &Ctx) {
        let s = &self.stages;
        let record = &ctx.record;
        s.metrics.count(record.outcome);
        let (job, path) = (ctx.job.id, &ctx.job.path);
        let reason = record.reason.as_deref().unwrap_or("");
        let outcome = record.outcome.as_str();
        match record.outcome {
            Outcome::Uploaded | Outcome::Duplicate => {
                let object = record.object.as_deref().unwrap_or("");
                let class = record.classification.as_deref().unwrap_or("");
                tracing::info!(job, path = ?path, outcome, object, class, "file done")
            }
            Outcome::Vanished => {
                tracing::info!(job, path = ?path, reason, "file gone before its turn")
            }
            Outcome::Rejected | Outcome::Infected | Outcome::NotScanned => {
                tracing::warn!(job, path = ?path, outcome, reason, "file not uploaded")
            }
            Outcome::Failed => {
                tracing::error!(job, path = ?path, reason, "file failed; it waits in the queue for `backupfs queue retry`")
            }
        }
        if let Err(e) = s.audit.append(record) {
            tracing::error!(job, error = %e, "cannot write audit record");
        }
    }

    /// Runs `f` as stage `stage`, timing it.
    fn timed<T>(&self, stage: &'static str, job: &JobRow, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = f();
        let secs = started.elapsed().as_secs_f64();
        self.stages
            .metrics
            .stage_seconds
            .with_label_values(&[stage])
            .observe(secs);
        tracing::debug!(job = job.id, stage, seconds = secs, "stage finished");
        out
    }

    /// Retries `f` while it fails for a passing reason, with growing, jittered delays, until
    /// it succeeds, fails for good, or shutdown gives up on the job. `watch`, if given,
    /// tracks whether the service behind the stage answers, and a cheap probe of it ends a
    /// long wait as soon as the service is back.
    fn retry<T>(
        &self,
        stage: &'static str,
        job: &JobRow,
        watch: Option<Watch<'_>>,
        mut f: impl FnMut() -> Result<T, Attempt>,
    ) -> Result<T, Stop> {
        let mut delay = self.stages.backoff.first;
        loop {
            match f() {
                Ok(v) => {
                    watch.inspect(|w| w.up.set(1));
                    return Ok(v);
                }
                Err(Attempt::Give(stop)) => return Err(stop),
                Err(Attempt::Retry(e)) => {
                    watch.inspect(|w| w.up.set(0));
                    self.stages
                        .metrics
                        .retries
                        .with_label_values(&[stage])
                        .inc();
                    tracing::error!(job = job.id, path = ?job.path, stage, error = %e, retry_in = ?delay, "stage failed; will retry");
                }
            }
            if !self.wait(delay, watch.map(|w| w.probe)) {
                return Err(Stop::Aborted);
            }
            delay = self.stages.backoff.next(delay);
        }
    }

    /// Sleeps for `total`, or until `probe` (asked once a second) says the service is back.
    /// False if shutdown gave up first.
    fn wait(&self, total: Duration, probe: Option<&dyn Fn() -> bool>) -> bool {
        let started = Instant::now();
        let mut next_probe = started + PROBE_EVERY;
        while started.elapsed() < total {
            if self.abort.load(Ordering::SeqCst) {
                return false;
            }
            if Instant::now() >= next_probe {
                if probe.is_some_and(|p| p()) {
                    break;
                }
                next_probe += PROBE_EVERY;
            }
            std::thread::sleep(Duration::from_millis(50).min(total));
        }
        !self.abort.load(Ordering::SeqCst)
    }

    /// Sleeps unless shutdown gives up first; false if it did.
    fn sleep(&self, total: Duration) -> bool {
        self.wait(total, None)
    }

    fn open_source(&self, path: &Path) -> Result<(File, FileStat, Attrs), Stop> {
        let vanished = |why: String| Stop::Outcome(Outcome::Vanished, why);
        // O_NONBLOCK: a FIFO swapped in under the name must not block the worker on open.
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
        let fd = match sys::open_beneath(self.stages.source.as_fd(), path, flags) {
            Ok(fd) => fd,
            Err(e) => {
                return Err(match e.raw_os_error() {
                    Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP) => {
                        vanished(format!("cannot open: {e}"))
                    }
                    _ => failed("open", e),
                })
            }
        };
        let st = sys::fstat(fd.as_fd()).map_err(|e| failed("open", e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(vanished("no longer a regular file".into()));
        }
        Ok((File::from(fd), FileStat::of(&st), Attrs::of(&st)))
    }

    /// Copies the source file into the spool and opens the copy. Returns the copy, the
    /// source's attributes as they were when the copy began, and the guard that removes it.
    fn snapshot(&self, job: &JobRow) -> Result<(File, FileStat, Attrs, Option<SpoolFile>), Stop> {
        let (mut source, stat, attrs) = self.open_source(&job.path)?;
        let copy = SpoolFile(self.stages.spool.join(format!("{}.snap", job.id)));
        let _ = std::fs::remove_file(&copy.0);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&copy.0)
            .map_err(|e| failed("snapshot", format!("{}: {e}", copy.0.display())))?;
        std::io::copy(&mut source, &mut out).map_err(|e| failed("snapshot", e))?;
        let file = File::open(&copy.0).map_err(|e| failed("snapshot", e))?;
        tracing::info!(
            job = job.id,
            attempts = job.attempts,
            "file keeps changing; backing up a snapshot"
        );
        Ok((file, stat, attrs, Some(copy)))
    }

    /// Fails with `Changed` if the open file is no longer as it was when first stat'ed.
    fn still_same(&self, file: &File, before: &FileStat) -> Result<(), Stop> {
        let now = sys::fstat(file.as_fd()).map_err(|e| failed("stat", e))?;
        if FileStat::of(&now) != *before {
            return Err(Stop::Changed("size or times changed while reading".into()));
        }
        Ok(())
    }

    fn process(&self, ctx: &mut Ctx) -> Result<Stored, Stop> {
        let s = &*self.stages;
        let job = ctx.job.clone();
        // A file that changed under every try so far (an appended log, say) is copied to
        // the spool first and backed up from that copy: consistent with itself, if not
        // with the file a moment later.
        let (mut file, stat, attrs, snapshot) = if job.attempts >= SNAPSHOT_AFTER {
            self.snapshot(&job)?
        } else {
            let (file, stat, attrs) = self.open_source(&job.path)?;
            ctx.source = file.try_clone().ok();
            (file, stat, attrs, None)
        };
        ctx.attrs = attrs;
        // What is actually read: the source itself, or its snapshot.
        let reading = match &snapshot {
            Some(_) => FileStat::of(&sys::fstat(file.as_fd()).map_err(|e| failed("snapshot", e))?),
            None => stat,
        };
        ctx.stat = Some(stat);
        ctx.record.size = Some(reading.size);
        ctx.record.mtime = Some(stat.mtime_ns.div_euclid(1_000_000_000));

        // Gate 1 (blacklist, size, type) needs only the name, the size and the first bytes,
        // so it runs before the file is read: a 10 GiB file over the limit costs no hashing.
        let mut head = [0u8; gate1::HEAD];
        let head_len = read_head(&file, &mut head).map_err(|e| failed("gate1", e))?;
        self.timed("gate1", &job, || {
            s.gate1.check(&job.path, reading.size, &head[..head_len])
        })
        .map_err(|reason| Stop::Outcome(Outcome::Rejected, reason))?;
        tracing::info!(job = job.id, stage = "gate1", "passed gate 1");

        // 1. dedup: hash, and stop here if this content is already stored.
        let (sha, read) = self
            .timed("dedup", &job, || dedup::hash(&file))
            .map_err(|e| failed("dedup", e))?;
        self.still_same(&file, &reading)?;
        s.metrics.bytes_read.inc_by(read);
        ctx.sha = Some(sha);
        ctx.record.sha256 = Some(hex::encode(sha));
        tracing::info!(job = job.id, stage = "dedup", sha256 = %hex::encode(sha), bytes = read, "hashed");
        if let Some(stored) = dedup::known(&s.state, &sha).map_err(|e| failed("dedup", e))? {
            // The content was classified when it was stored. Its class's route wins over
            // dedup: content stored under another prefix (the routes changed since) is
            // stored again, under the route.
            let class = gate1::class_named(&stored.classification);
            let routed = class.map(|c| s.routes.get(c));
            let stored_in = upload::prefix_of(&stored.object);
            if let Some(route) = routed.filter(|r| r.prefix != stored_in) {
                tracing::info!(job = job.id, object = %stored.object, prefix = %route.prefix, "content is stored outside its class's route; storing it again under the route");
            // The index may be older than a prune that removed the object since.
            } else if self.still_stored(&job, &stored.object)? {
                ctx.record.classification = Some(stored.classification);
                // Its class's size limit holds for this version too.
                if let Some(class) = class {
                    self.gate1_for_class(&job, class, reading.size)?;
                }
                ctx.record.destination = Some(s.destination.url(&stored.object));
                return Ok(Stored {
                    route: Route {
                        prefix: stored_in.to_string(),
                        storage_class: stored.storage_class,
                    },
                    object: stored.object,
                    uploaded: false,
                    index: false,
                });
            } else {
                tracing::info!(job = job.id, object = %stored.object, "indexed object is gone or condemned; storing the content again");
            }
        }
        if let Some(path) = s.state.legacy_path(&sha).map_err(|e| failed("dedup", e))? {
            let reason = format!("content backed up before, as {path} (imported hashes.json)");
            return Err((Outcome::Duplicate, reason).into());
        }

        // 2. classify.
        let examined = self
            .timed("classify", &job, || {
                extract::examine(&s.classifier, &file, &s.extract)
            })
            .map_err(|e| failed("classify", e))?;
        let class = &examined.classification;
        ctx.record.classification = Some(class.class.as_str().to_string());
        ctx.record.detectors = class.detectors.clone();
        ctx.record.format = Some(examined.format.as_str());
        ctx.record.partial = examined.partial.clone();
        if let Some(reason) = &examined.partial {
            s.metrics.classify_partial.inc();
            tracing::warn!(job = job.id, stage = "classify", path = ?job.path, reason = %reason, class = class.class.as_str(), "partially classified");
        }
        tracing::info!(job = job.id, stage = "classify", class = class.class.as_str(), format = examined.format.as_str(), detectors = ?class.detectors, "classified");

        // Gate 1 for the class, known only now: its own size limit.
        self.gate1_for_class(&job, class.class, reading.size)?;

        // The class's route: the prefix its content goes under, and its storage class.
        let route = s.routes.get(class.class).clone();
        ctx.record.route = Some(route.clone());

        // Another host sharing the destination and passphrase may have stored this content
        // already, under the same keyed name.
        let mut key = s.namer.key_in(&route.prefix, &sha);
        if s.condemned.contains(&key) {
            key = s.namer.fresh_key_in(&route.prefix, &sha);
        } else if self.still_stored(&job, &key)? {
            ctx.record.destination = Some(s.destination.url(&key));
            return Ok(Stored {
                object: key,
                uploaded: false,
                index: true,
                route,
            });
        }

        // 4. scan: wait for clamd rather than let anything through unscanned.
        let verdict = self.timed("scan", &job, || {
            let watch = Watch {
                up: &s.metrics.clamd_up,
                probe: &|| s.scanner.ping().is_ok(),
            };
            self.retry("scan", &job, Some(watch), || {
                s.scanner
                    .scan(&file, reading.size)
                    .map_err(|e| Attempt::Retry(e.to_string()))
            })
        })?;
        tracing::info!(job = job.id, stage = "scan", verdict = ?verdict, "scanned");
        match verdict {
            Verdict::Clean => {}
            Verdict::Infected(signature) => return Err(self.quarantine(ctx, &signature)),
            Verdict::NotScanned(reason) => return Err((Outcome::NotScanned, reason).into()),
        }

        // 5. seal: zstd, then OpenPGP, into the spool. The bytes sealed must be the bytes
        //    hashed, or the file changed in between.
        let (spool, sealed_sha) = self.timed("seal", &job, || self.seal(&job, &mut file))?;
        self.still_same(&file, &reading)?;
        if sealed_sha != sha {
            return Err(Stop::Changed(
                "content changed between hashing and sealing".into(),
            ));
        }

        // 6. gate 2: the spool file really is sealed, and its destination (the class's
        //    route) is allowed.
        let url = s.destination.url(&key);
        ctx.record.destination = Some(url.clone());
        let routed_by = s
            .routes
            .routed_by(class.class)
            .map(|key| (key, route.prefix.as_str()));
        self.timed("gate2", &job, || {
            s.gate2.check_routed(&s.sealer, &spool.0, &url, routed_by)
        })
        .map_err(|reason| {
            tracing::error!(job = job.id, path = ?job.path, stage = "gate2", reason = %reason, "gate 2 refused the upload");
            failed("gate2", reason)
        })?;
        tracing::info!(job = job.id, stage = "gate2", destination = %url, "passed gate 2");

        // 7. upload; the caller records the object once it is durable.
        let storage_class = route.storage_class.as_deref();
        let stored = self.timed("upload", &job, || {
            self.upload(&job, &key, &spool.0, storage_class)
        })?;
        s.metrics.bytes_uploaded.inc_by(stored);
        tracing::info!(job = job.id, stage = "upload", object = %key, bytes = stored, storage_class = storage_class.unwrap_or(""), "uploaded");
        Ok(Stored {
            object: key,
            uploaded: true,
            index: true,
            route,
        })
    }

    /// Gate 1's check of what depends on the class: `class.CLASS.max-file-size`.
    fn gate1_for_class(&self, job: &JobRow, class: classify::Class, size: u64) -> Result<(), Stop> {
        let s = &*self.stages;
        self.timed("gate1", job, || s.gate1.check_class(class, size))
            .map_err(|reason| Stop::Outcome(Outcome::Rejected, reason))?;
        tracing::info!(
            job = job.id,
            stage = "gate1",
            class = class.as_str(),
            "passed gate 1 for its class"
        );
        Ok(())
    }

    /// Whether `object` is in the destination and no prune is about to remove it.
    fn still_stored(&self, job: &JobRow, object: &str) -> Result<bool, Stop> {
        let s = &*self.stages;
        if s.condemned.contains(object) {
            return Ok(false);
        }
        let watch = Watch {
            up: &s.metrics.destination_up,
            probe: &|| s.destination.probe().is_ok(),
        };
        self.retry("dedup", job, Some(watch), || {
            s.destination.exists(object).map_err(|e| match e {
                UploadError::Transient(e) => Attempt::Retry(e),
                UploadError::Permanent(e) | UploadError::Missing(e) => {
                    Attempt::Give(failed("dedup", e))
                }
            })
        })
    }

    fn quarantine(&self, ctx: &Ctx, signature: &str) -> Stop {
        let s = &*self.stages;
        let sha = ctx.record.sha256.as_deref().unwrap_or("");
        let size = ctx.record.size.unwrap_or(0);
        match s
            .quarantine
            .take(s.source.as_fd(), &ctx.job.path, signature, sha, size)
        {
            Ok(to) => {
                (s.on_removed)(&ctx.job.path);
                let reason = format!("infected ({signature}); moved to {}", to.display());
                (Outcome::Infected, reason).into()
            }
            Err(e) => {
                tracing::error!(job = ctx.job.id, error = %e, "cannot quarantine infected file");
                let reason = format!("infected ({signature}); quarantine failed: {e}");
                (Outcome::Failed, reason).into()
            }
        }
    }

    /// Seals the file into a spool file and returns it with the SHA-256 of the bytes that
    /// went in. A full spool disk is waited out, not fatal.
    fn seal(&self, job: &JobRow, file: &mut File) -> Result<(SpoolFile, [u8; 32]), Stop> {
        let s = &*self.stages;
        let spool = SpoolFile(s.spool.join(format!("{}.pgp", job.id)));
        let sha = self.retry("seal", job, None, || {
            let io_failure = |e: io::Error| match e.raw_os_error() {
                Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
                    Attempt::Retry(format!("spool {}: {e}", spool.0.display()))
                }
                _ => Attempt::Give(failed("seal", format!("spool {}: {e}", spool.0.display()))),
            };
            file.rewind()
                .map_err(|e| Attempt::Give(failed("seal", e)))?;
            let out = File::create(&spool.0).map_err(io_failure)?;
            let mut out = BufWriter::with_capacity(dedup::CHUNK, out);
            let mut input = dedup::HashingReader::new(&*file);
            s.sealer.seal(&mut input, &mut out).map_err(|e| match e {
                seal::SealError::Io(e) => io_failure(e),
                other => Attempt::Give(failed("seal", other)),
            })?;
            // No fsync: the spool only carries the object to its upload, from the page
            // cache, and a restart clears it and redoes the job from the durable queue.
            out.into_inner().map_err(|e| io_failure(e.into_error()))?;
            Ok(input.finish().0)
        })?;
        Ok((spool, sha))
    }

    fn upload(
        &self,
        job: &JobRow,
        key: &str,
        spool: &Path,
        storage_class: Option<&str>,
    ) -> Result<u64, Stop> {
        let s = &*self.stages;
        let watch = Watch {
            up: &s.metrics.destination_up,
            probe: &|| s.destination.probe().is_ok(),
        };
        self.retry("upload", job, Some(watch), || {
            if s.passphrase.refused() {
                return Err(Attempt::Give(failed(
                    "upload",
                    "the passphrase does not open this host's catalog in the destination",
                )));
            }
            if !s.passphrase.accepted() {
                return Err(Attempt::Retry(
                    "waiting to check the passphrase against the catalog in the destination".into(),
                ));
            }
            s.destination
                .put(key, spool, storage_class)
                .map_err(|e| match e {
                    UploadError::Transient(e) => Attempt::Retry(e),
                    UploadError::Permanent(e) | UploadError::Missing(e) => {
                        s.metrics.destination_up.set(0);
                        Attempt::Give(failed("upload", e))
                    }
                })
        })
    }
}

/// Creates the spool directory (mode 0700), clears files a previous run left behind, and
/// proves it is writable.
pub fn prepare_spool(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pgp") {
            std::fs::remove_file(&path)?;
        }
    }
    let probe = dir.join(format!(".writable-{}", std::process::id()));
    let _ = std::fs::remove_file(&probe);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}
