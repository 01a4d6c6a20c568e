//! The job queue: durable rows in the state database, plus which jobs workers hold now.
//!
//! The mount pushes a path when a handle that changed it is released. Pushes are committed
//! in batches by a thread of their own, so a burst of small files costs one transaction per
//! batch rather than per file, and a FUSE thread never waits for the database. A crash
//! before a batch is committed loses nothing: catch-up at the next start finds those files,
//! whose recorded state is stale. A path closed again while it waits is not queued twice: its
//! settle time moves on, bounded by the maximum delay, so a file rewritten in a burst is
//! backed up once per settled version and a file that never stops changing is still backed
//! up at least every `pipeline.max-delay`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use crate::fs::ChangeSink;
use crate::metrics::Metrics;
use crate::state::{Attrs, JobRow, State, StateError};

pub struct Queue {
    state: Arc<State>,
    metrics: Arc<Metrics>,
    settle_ms: i64,
    max_delay_ms: i64,
    /// Jobs a worker holds now, with when it took them; never handed to a second worker.
    claimed: Mutex<HashMap<i64, i64>>,
    wake: Condvar,
    /// Pushes not yet committed: path, when pushed, and from when it may run (ms).
    pending: Mutex<Vec<(PathBuf, i64, i64)>>,
    pushed: Condvar,
    /// Held while a batch is taken and committed, so batches land in push order.
    committing: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Queue {
    pub fn new(
        state: Arc<State>,
        metrics: Arc<Metrics>,
        settle: Duration,
        max_delay: Duration,
    ) -> Arc<Self> {
        let queue = Arc::new(Self {
            state,
            metrics,
            settle_ms: settle.as_millis() as i64,
            max_delay_ms: max_delay.as_millis() as i64,
            claimed: Mutex::default(),
            wake: Condvar::new(),
            pending: Mutex::default(),
            pushed: Condvar::new(),
            committing: Mutex::default(),
        });
        let weak = Arc::downgrade(&queue);
        if let Err(e) = std::thread::Builder::new()
            .name("queue".into())
            .spawn(move || commit_pushes(weak))
        {
            // Pushes are then committed by whoever needs them: renames, removals, the
            // drain, and workers looking for work.
            tracing::error!(error = %e, "cannot start the queue writer");
        }
        queue
    }

    /// Commits every push made so far. Returns once they are in the database.
    pub fn commit(&self) {
        let _order = lock(&self.committing);
        let batch = std::mem::take(&mut *lock(&self.pending));
        if batch.is_empty() {
            return;
        }
        match self.state.enqueue_all(&batch, self.max_delay_ms) {
            Ok(()) => {
                drop(_order);
                self.wake.notify_all();
            }
            // Catch-up finds these files at the next start: their recorded state is stale.
            Err(e) => tracing::error!(files = batch.len(), error = %e, "cannot queue files"),
        }
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    fn claimed(&self) -> std::sync::MutexGuard<'_, HashMap<i64, i64>> {
        self.claimed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a changed file to be backed up once it settles.
    pub fn push(&self, path: &Path) {
        self.push_after(path, self.settle_ms);
    }

    /// Queues a file found changed by catch-up: it has long settled.
    pub fn push_now(&self, path: &Path) {
        self.push_after(path, 0);
    }

    fn push_after(&self, path: &Path, settle_ms: i64) {
        tracing::debug!(path = ?path, "queued");
        let now = now_ms();
        lock(&self.pending).push((path.to_path_buf(), now, now + settle_ms));
        self.pushed.notify_one();
    }

    /// Records a directory's version in the catalog at once, unless it is recorded already
    /// with these attributes; returns whether it was. Directories never go through the
    /// workers: they have no content.
    pub fn record_dir(&self, path: &Path, attrs: Attrs) -> bool {
        match self.state.record_dir(path, attrs, now_ms()) {
            Ok(recorded) => {
                if recorded {
                    tracing::debug!(path = ?path, "directory recorded");
                }
                recorded
            }
            // Catch-up at the next start records it.
            Err(e) => {
                tracing::error!(path = ?path, error = %e, "cannot record the directory");
                false
            }
        }
    }

    /// Takes the oldest due job no other worker holds, waiting up to `timeout` for one.
    pub fn take(&self, timeout: Duration) -> Result<Option<JobRow>, StateError> {
        self.commit();
        let mut claimed = self.claimed();
        let due = self.state.due_jobs(now_ms(), claimed.len() + 1)?;
        if let Some(job) = due.into_iter().find(|j| !claimed.contains_key(&j.id)) {
            claimed.insert(job.id, now_ms());
            self.metrics.in_flight.set(claimed.len() as i64);
            return Ok(Some(job));
        }
        let _ = self.wake.wait_timeout(claimed, timeout);
        Ok(None)
    }

    /// Lets go of a job, whatever became of it.
    pub fn release(&self, job: &JobRow) {
        let mut claimed = self.claimed();
        claimed.remove(&job.id);
        self.metrics.in_flight.set(claimed.len() as i64);
    }

    /// When the longest-running job still held was taken.
    pub fn oldest_in_flight_ms(&self) -> Option<i64> {
        self.claimed().values().min().copied()
    }

    /// Number of jobs workers hold now.
    /// Wakes every worker waiting in [`Queue::take`], to look at its stop flag.
    pub fn wake_all(&self) {
        let _claimed = self.claimed();
        self.wake.notify_all();
    }

    pub fn in_flight(&self) -> usize {
        self.claimed().len()
    }

    /// Refreshes the queue gauges from the database; returns (pending, failed).
    pub fn refresh_gauges(&self) -> (u64, u64) {
        match self.state.job_counts() {
            Ok((pending, failed)) => {
                self.metrics.queue_depth.set(pending as i64);
                self.metrics.failed_jobs.set(failed as i64);
                (pending, failed)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot count queued jobs");
                (0, 0)
            }
        }
    }
}

/// The queue's writer thread: commits pushes as they come, in batches; ends with the queue.
fn commit_pushes(queue: Weak<Queue>) {
    loop {
        let Some(queue) = queue.upgrade() else {
            return;
        };
        let pending = lock(&queue.pending);
        let (pending, _) = queue
            .pushed
            .wait_timeout_while(pending, Duration::from_secs(1), |p| p.is_empty())
            .unwrap_or_else(|e| e.into_inner());
        let any = !pending.is_empty();
        drop(pending);
        if any {
            queue.commit();
        }
    }
}

impl ChangeSink for Queue {
    fn changed(&self, path: &Path) {
        self.push(path);
    }

    fn renamed(&self, from: &Path, to: &Path, regular_file: bool) {
        // Jobs pushed before the rename must be in the database to move with it.
        self.commit();
        // The old names are gone, and every file below them that was backed up is recorded
        // under its new name at once (a rename changes no content).
        let moved = match self.state.record_removal(from, Some(to), now_ms()) {
            Ok(paths) => paths,
            Err(e) => {
                tracing::error!(from = ?from, error = %e, "cannot record the rename");
                Vec::new()
            }
        };
        match self.state.rename_jobs(from, to) {
            Ok(true) => {
                tracing::debug!(from = ?from, to = ?to, "queued job follows rename")
            }
            Ok(false) if regular_file && moved.is_empty() => self.push(to),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(from = ?from, to = ?to, error = %e, "cannot move queued job");
                if regular_file {
                    self.push(to);
                }
            }
        }
    }

    fn removed(&self, path: &Path) {
        self.commit();
        if let Err(e) = self.state.record_removal(path, None, now_ms()) {
            tracing::error!(path = ?path, error = %e, "cannot record the removal");
        }
    }

    fn refused(&self, _path: &Path) {
        self.metrics.refused_names.inc();
    }

    fn dir_changed(&self, path: &Path, st: &crate::sys::Stat) {
        // A directory has no content to read: its attributes go straight into the catalog.
        self.record_dir(path, Attrs::of_dir(st));
    }
}
