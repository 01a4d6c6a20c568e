//! The backup pipeline: a queue fed by the mount, and a pool of workers that take each file
//! through the stages in order.
//!
//! ```text
//! release() ─► Queue ─► worker: dedup ─► classify ─► gate1 ─► scan ─► seal ─► gate2 ─► upload
//! ```
//!
//! Each stage streams the file through bounded buffers, so no file is ever held whole in
//! memory. Every outcome is logged, counted and written to the audit log.

pub mod audit;
pub mod classify;
pub mod dedup;
pub mod gate1;
pub mod gate2;
pub mod quarantine;
pub mod scan;
pub mod seal;
pub mod upload;

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::fs::ChangeSink;
use crate::metrics::{Metrics, Outcome};
use crate::state::{State, Version};
use crate::sys;
use audit::{AuditLog, AuditRecord};
use classify::Classifier;
use gate1::Gate1;
use gate2::Gate2;
use quarantine::Quarantine;
use scan::{Scanner, Verdict};
use seal::Sealer;
use upload::{Destination, ObjectNamer, UploadError};

/// One file to back up, named by its path inside the source directory.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: u64,
    pub path: PathBuf,
}

/// Files waiting for a worker. A path already waiting is not queued twice: one pass reads
/// the newest content anyway.
pub struct Queue {
    tx: Sender<Job>,
    rx: Receiver<Job>,
    waiting: Mutex<HashSet<PathBuf>>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Queue {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        Arc::new(Self {
            tx,
            rx,
            waiting: Mutex::default(),
            next_id: AtomicU64::new(1),
            metrics,
        })
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, path: &Path) {
        if !self.waiting().insert(path.to_path_buf()) {
            return;
        }
        let job = Job {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            path: path.to_path_buf(),
        };
        tracing::debug!(job = job.id, path = %path.display(), "queued");
        self.metrics.queue_depth.inc();
        // The receiver lives as long as the queue, so this cannot fail.
        let _ = self.tx.send(job);
    }

    fn take(&self, timeout: Duration) -> Option<Job> {
        let job = self.rx.recv_timeout(timeout).ok()?;
        self.waiting().remove(&job.path);
        self.metrics.queue_depth.dec();
        Some(job)
    }

    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl ChangeSink for Queue {
    fn changed(&self, path: &Path) {
        self.push(path);
    }

    fn refused(&self, _path: &Path) {
        self.metrics.refused_names.inc();
    }
}

/// How long to wait between attempts at a stage that failed for a passing reason.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

/// Everything the workers share: one value per stage, plus the places outcomes go.
pub struct Stages {
    pub source: OwnedFd,
    pub spool: PathBuf,
    pub state: State,
    pub classifier: Classifier,
    pub gate1: Gate1,
    pub scanner: Scanner,
    pub quarantine: Quarantine,
    pub sealer: Sealer,
    pub gate2: Gate2,
    pub namer: ObjectNamer,
    pub destination: Box<dyn Destination>,
    pub audit: AuditLog,
    pub metrics: Arc<Metrics>,
    pub backoff: Backoff,
    /// Told when the pipeline moved a file out of the source, so the mount can forget it.
    pub on_removed: Box<dyn Fn(&Path) + Send + Sync>,
}

/// The running worker pool.
pub struct Pipeline {
    queue: Arc<Queue>,
    stages: Arc<Stages>,
    /// Set at shutdown: no new job starts.
    closing: Arc<AtomicBool>,
    /// Set when the drain time is up: jobs waiting on a retry give up.
    abort: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl Pipeline {
    pub fn start(stages: Stages, queue: Arc<Queue>, workers: usize) -> io::Result<Self> {
        let stages = Arc::new(stages);
        let closing = Arc::new(AtomicBool::new(false));
        let abort = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::with_capacity(workers);
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
        Ok(Self {
            queue,
            stages,
            closing,
            abort,
            workers: handles,
        })
    }

    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    pub fn stages(&self) -> &Arc<Stages> {
        &self.stages
    }

    /// Waits up to `drain` for queued and running jobs, then stops the workers. Returns the
    /// number of files left unprocessed.
    pub fn shutdown(self, drain: Duration) -> usize {
        let deadline = Instant::now() + drain;
        while Instant::now() < deadline
            && !(self.queue.is_empty() && self.stages.metrics.in_flight.get() == 0)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.closing.store(true, Ordering::SeqCst);
        self.abort.store(true, Ordering::SeqCst);
        let in_flight = self.stages.metrics.in_flight.get().max(0) as usize;
        for handle in self.workers {
            let _ = handle.join();
        }
        self.queue.len() + in_flight
    }
}

struct Worker {
    queue: Arc<Queue>,
    stages: Arc<Stages>,
    closing: Arc<AtomicBool>,
    abort: Arc<AtomicBool>,
}

/// Why a job stopped short of an outcome.
enum Stop {
    /// Recorded with this outcome and reason.
    Outcome(Outcome, String),
    /// Shutdown interrupted a retry; the job has no outcome yet.
    Aborted,
}

impl From<(Outcome, String)> for Stop {
    fn from((outcome, reason): (Outcome, String)) -> Self {
        Stop::Outcome(outcome, reason)
    }
}

fn failed(stage: &str, e: impl std::fmt::Display) -> Stop {
    Stop::Outcome(Outcome::Failed, format!("{stage}: {e}"))
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
            if let Some(job) = self.queue.take(Duration::from_millis(200)) {
                self.run_job(&job);
            }
        }
    }

    fn run_job(&self, job: &Job) {
        let m = &self.stages.metrics;
        m.in_flight.inc();
        let started = Instant::now();
        let mut record = AuditRecord::new(job.id, &job.path);
        let result = self.process(job, &mut record);
        m.in_flight.dec();
        match result {
            Ok(()) => record.outcome = Outcome::Uploaded,
            Err(Stop::Outcome(outcome, reason)) => {
                record.outcome = outcome;
                record.reason = Some(reason);
            }
            Err(Stop::Aborted) => {
                tracing::warn!(job = job.id, path = %job.path.display(), "shutdown interrupted the job; it was not backed up");
                return;
            }
        }
        m.job_seconds.observe(started.elapsed().as_secs_f64());
        self.finish(job, &record);
    }

    /// Logs, counts and audits an outcome.
    fn finish(&self, job: &Job, record: &AuditRecord) {
        let s = &self.stages;
        s.metrics.count(record.outcome);
        let reason = record.reason.as_deref().unwrap_or("");
        let path = job.path.display();
        match record.outcome {
            Outcome::Uploaded | Outcome::Duplicate => {
                tracing::info!(job = job.id, path = %path, outcome = record.outcome.as_str(), object = record.object.as_deref().unwrap_or(""), class = record.classification.as_deref().unwrap_or(""), "file done")
            }
            Outcome::Vanished => {
                tracing::info!(job = job.id, path = %path, reason, "file gone before its turn")
            }
            Outcome::Rejected | Outcome::Infected | Outcome::NotScanned => {
                tracing::warn!(job = job.id, path = %path, outcome = record.outcome.as_str(), reason, "file not uploaded")
            }
            Outcome::Failed => tracing::error!(job = job.id, path = %path, reason, "file failed"),
        }
        if let Err(e) = s.audit.append(record) {
            tracing::error!(job = job.id, error = %e, "cannot write audit record");
        }
    }

    /// Runs `f` as stage `stage`, timing it.
    fn timed<T>(&self, stage: &'static str, job: &Job, f: impl FnOnce() -> T) -> T {
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

    /// Retries `f` while it fails for a passing reason, with doubling delays, until it
    /// succeeds, fails for good, or shutdown gives up on the job. `up` tracks whether the
    /// service behind the stage answers.
    fn retry<T>(
        &self,
        stage: &'static str,
        job: &Job,
        up: Option<&prometheus::IntGauge>,
        mut f: impl FnMut() -> Result<T, Attempt>,
    ) -> Result<T, Stop> {
        let mut delay = self.stages.backoff.first;
        loop {
            match f() {
                Ok(v) => {
                    up.inspect(|g| g.set(1));
                    return Ok(v);
                }
                Err(Attempt::Give(stop)) => return Err(stop),
                Err(Attempt::Retry(e)) => {
                    up.inspect(|g| g.set(0));
                    self.stages
                        .metrics
                        .retries
                        .with_label_values(&[stage])
                        .inc();
                    tracing::error!(job = job.id, stage, error = %e, retry_in = ?delay, "stage failed; will retry");
                }
            }
            if !self.sleep(delay) {
                return Err(Stop::Aborted);
            }
            delay = (delay * 2).min(self.stages.backoff.max);
        }
    }

    /// Sleeps unless shutdown gives up first; false if it did.
    fn sleep(&self, total: Duration) -> bool {
        let deadline = Instant::now() + total;
        while Instant::now() < deadline {
            if self.abort.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50).min(total));
        }
        !self.abort.load(Ordering::SeqCst)
    }

    fn open_source(&self, path: &Path) -> Result<(File, sys::Stat), Stop> {
        let vanished = |why: String| Stop::Outcome(Outcome::Vanished, why);
        let fd = match sys::open_beneath(self.stages.source.as_fd(), path, libc::O_RDONLY) {
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
        Ok((File::from(fd), st))
    }

    fn process(&self, job: &Job, record: &mut AuditRecord) -> Result<(), Stop> {
        let s = &*self.stages;
        let (mut file, st) = self.open_source(&job.path)?;
        let size = st.st_size as u64;
        record.size = Some(size);
        record.mtime = Some(st.st_mtime);

        // 1. dedup: hash, and stop here if this content is already stored.
        let (sha, read) = self
            .timed("dedup", job, || dedup::hash(&file))
            .map_err(|e| failed("dedup", e))?;
        s.metrics.bytes_read.inc_by(read);
        record.sha256 = Some(hex::encode(sha));
        tracing::info!(job = job.id, stage = "dedup", sha256 = %hex::encode(sha), bytes = read, "hashed");
        if let Some(stored) = dedup::known(&s.state, &sha).map_err(|e| failed("dedup", e))? {
            record.destination = Some(s.destination.url(&stored.object));
            record.classification = Some(stored.classification);
            self.record_version(job, record, &sha, &stored.object, false)?;
            record.object = Some(stored.object);
            return Err((Outcome::Duplicate, "content already backed up".to_string()).into());
        }

        // 2. classify.
        file.rewind().map_err(|e| failed("classify", e))?;
        let class = self
            .timed("classify", job, || s.classifier.classify(&file))
            .map_err(|e| failed("classify", e))?;
        record.classification = Some(class.class.as_str().to_string());
        record.detectors = class.detectors.clone();
        tracing::info!(job = job.id, stage = "classify", class = class.class.as_str(), detectors = ?class.detectors, "classified");

        // 3. gate 1: blacklist, size and type policy.
        self.timed("gate1", job, || s.gate1.check(&job.path, size))
            .map_err(|reason| Stop::Outcome(Outcome::Rejected, reason))?;
        tracing::info!(job = job.id, stage = "gate1", "passed gate 1");

        // 4. scan: wait for clamd rather than let anything through unscanned.
        let fd_path = sys::proc_fd_path(file.as_fd());
        let verdict = self.timed("scan", job, || {
            self.retry("scan", job, Some(&s.metrics.clamd_up), || {
                s.scanner
                    .scan(&fd_path, size)
                    .map_err(|e| Attempt::Retry(e.to_string()))
            })
        })?;
        tracing::info!(job = job.id, stage = "scan", verdict = ?verdict, "scanned");
        match verdict {
            Verdict::Clean => {}
            Verdict::Infected(signature) => return Err(self.quarantine(job, record, &signature)),
            Verdict::NotScanned(reason) => return Err((Outcome::NotScanned, reason).into()),
        }

        // 5. seal: zstd, then OpenPGP, into the spool.
        let spool = self.timed("seal", job, || self.seal(job, &mut file))?;

        // 6. gate 2: the spool file really is sealed, and its destination is allowed.
        let key = s.namer.key_for(&sha);
        let url = s.destination.url(&key);
        record.destination = Some(url.clone());
        self.timed("gate2", job, || s.gate2.check(&s.sealer, &spool.0, &url))
            .map_err(|reason| {
                tracing::error!(job = job.id, stage = "gate2", reason = %reason, "gate 2 refused the upload");
                failed("gate2", reason)
            })?;
        tracing::info!(job = job.id, stage = "gate2", destination = %url, "passed gate 2");

        // 7. upload, then record the object in the index and the catalog.
        let stored = self.timed("upload", job, || self.upload(job, &key, &spool.0))?;
        s.metrics.bytes_uploaded.inc_by(stored);
        tracing::info!(job = job.id, stage = "upload", object = %key, bytes = stored, "uploaded");
        record.object = Some(key.clone());
        self.record_version(job, record, &sha, &key, true)
    }

    fn record_version(
        &self,
        job: &Job,
        record: &AuditRecord,
        sha: &[u8; 32],
        object: &str,
        new_content: bool,
    ) -> Result<(), Stop> {
        let version = Version {
            path: &job.path,
            sha256: sha,
            object,
            size: record.size.unwrap_or(0),
            mtime: record.mtime.unwrap_or(0),
            classification: record.classification.as_deref().unwrap_or("unclassified"),
        };
        self.stages
            .state
            .record(&version, new_content)
            .map_err(|e| failed("record", e))
    }

    fn quarantine(&self, job: &Job, record: &AuditRecord, signature: &str) -> Stop {
        let s = &*self.stages;
        let sha = record.sha256.as_deref().unwrap_or("");
        let size = record.size.unwrap_or(0);
        match s
            .quarantine
            .take(s.source.as_fd(), &job.path, signature, sha, size)
        {
            Ok(to) => {
                (s.on_removed)(&job.path);
                let reason = format!("infected ({signature}); moved to {}", to.display());
                (Outcome::Infected, reason).into()
            }
            Err(e) => {
                tracing::error!(job = job.id, error = %e, "cannot quarantine infected file");
                let reason = format!("infected ({signature}); quarantine failed: {e}");
                (Outcome::Infected, reason).into()
            }
        }
    }

    /// Seals the file into a spool file; a full spool disk is waited out, not fatal.
    fn seal(&self, job: &Job, file: &mut File) -> Result<SpoolFile, Stop> {
        let s = &*self.stages;
        let spool = SpoolFile(s.spool.join(format!("{}.pgp", job.id)));
        self.retry("seal", job, None, || {
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
            s.sealer.seal(&*file, &mut out).map_err(|e| match e {
                seal::SealError::Io(e) => io_failure(e),
                other => Attempt::Give(failed("seal", other)),
            })?;
            let out = out.into_inner().map_err(|e| io_failure(e.into_error()))?;
            out.sync_all().map_err(io_failure)
        })?;
        Ok(spool)
    }

    fn upload(&self, job: &Job, key: &str, spool: &Path) -> Result<u64, Stop> {
        let s = &*self.stages;
        self.retry("upload", job, Some(&s.metrics.destination_up), || {
            s.destination.put(key, spool).map_err(|e| match e {
                UploadError::Transient(e) => Attempt::Retry(e),
                UploadError::Permanent(e) => {
                    s.metrics.destination_up.set(0);
                    Attempt::Give(failed("upload", e))
                }
            })
        })
    }
}

/// One try at a stage that talks to something outside: try again, or give up.
enum Attempt {
    Retry(String),
    Give(Stop),
}

/// Creates the spool directory and clears files a previous run left behind.
pub fn prepare_spool(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pgp") {
            std::fs::remove_file(&path)?;
        }
    }
    let mut marker = File::create(dir.join(".writable"))?;
    marker.write_all(b"")?;
    Ok(())
}
