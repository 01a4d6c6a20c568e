//! Catch-up on start: find every file that changed while nothing was watching (the daemon
//! was stopped, crashed, or someone wrote straight into the source directory) and queue it.
//!
//! Each regular file's device, inode, size, mtime and ctime are compared with what the
//! pipeline recorded when it last finished with that path; only files that differ are
//! queued, so an unchanged tree is never re-read. Each directory below the source root is
//! recorded in the catalog unless its newest version there has the same mode and owner.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::queue::Queue;
use crate::metrics::Metrics;
use crate::state::{Attrs, FileStat, StateError};

/// How many files catch-up looked at, and how many it queued.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub files: u64,
    pub queued: u64,
    pub unreadable_dirs: u64,
    /// Directories walked, and how many of those got a new catalog version.
    pub dirs: u64,
    pub dirs_recorded: u64,
}

const PROGRESS_EVERY: u64 = 10_000;

/// Walks `source` (never following symlinks) and queues what changed.
pub fn run(source: &Path, queue: &Queue, metrics: &Metrics) -> Result<Summary, StateError> {
    let started = Instant::now();
    metrics.catchup_running.set(1);
    let seen = queue.state().seen_files()?;
    let queued = queue.state().job_paths()?;
    tracing::info!(
        known = seen.len(),
        queued = queued.len(),
        "catch-up started"
    );
    let mut walk = Walk {
        source,
        seen,
        queued,
        queue,
        metrics,
        summary: Summary::default(),
    };
    walk.dir(source);
    queue.commit();
    metrics.catchup_running.set(0);
    let s = walk.summary;
    tracing::info!(
        files = s.files,
        queued = s.queued,
        dirs = s.dirs,
        dirs_recorded = s.dirs_recorded,
        unreadable_dirs = s.unreadable_dirs,
        seconds = started.elapsed().as_secs_f64(),
        "catch-up finished"
    );
    Ok(s)
}

struct Walk<'a> {
    source: &'a Path,
    seen: HashMap<PathBuf, FileStat>,
    /// Paths with a job already: pending ones run anyway, failed ones wait for an operator.
    queued: HashSet<PathBuf>,
    queue: &'a Queue,
    metrics: &'a Metrics,
    summary: Summary,
}

impl Walk<'_> {
    fn dir(&mut self, dir: &Path) {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = ?dir, error = %e, "catch-up cannot read directory");
                self.summary.unreadable_dirs += 1;
                return;
            }
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let path = entry.path();
            if meta.is_dir() {
                self.record_dir(&path, &meta);
                self.dir(&path);
            } else if meta.is_file() {
                self.file(&path, &meta);
            }
        }
    }

    /// A directory found in the tree (never the root): recorded unless the catalog has it.
    fn record_dir(&mut self, path: &Path, meta: &fs::Metadata) {
        let Ok(rel) = path.strip_prefix(self.source) else {
            return;
        };
        self.summary.dirs += 1;
        if self.queue.record_dir(rel, Attrs::of_dir_meta(meta)) {
            self.summary.dirs_recorded += 1;
        }
    }

    fn file(&mut self, path: &Path, meta: &fs::Metadata) {
        let Ok(rel) = path.strip_prefix(self.source) else {
            return;
        };
        let now = FileStat::of_meta(meta);
        self.summary.files += 1;
        let result = if self.queued.contains(rel) {
            "already-queued"
        } else if self.seen.get(rel) == Some(&now) {
            "unchanged"
        } else {
            self.queue.push_now(rel);
            self.summary.queued += 1;
            "queued"
        };
        self.metrics
            .catchup_files
            .with_label_values(&[result])
            .inc();
        if self.summary.files.is_multiple_of(PROGRESS_EVERY) {
            tracing::info!(
                files = self.summary.files,
                queued = self.summary.queued,
                "catch-up progress"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// A state database in `dir` and a queue over it that runs jobs at once.
    fn queue_in(dir: &Path) -> (Arc<crate::state::State>, Arc<Metrics>, Arc<Queue>) {
        let state = Arc::new(crate::state::State::open(&dir.join("state")).unwrap());
        let metrics = Metrics::new().unwrap();
        let queue = Queue::new(
            state.clone(),
            metrics.clone(),
            Duration::ZERO,
            Duration::ZERO,
        );
        (state, metrics, queue)
    }

    #[test]
    fn queues_new_and_changed_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("src");
        fs::create_dir_all(source.join("sub")).unwrap();
        fs::write(source.join("a.txt"), b"a").unwrap();
        fs::write(source.join("sub/b.txt"), b"b").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", source.join("link")).unwrap();
        let (state, metrics, queue) = queue_in(dir.path());

        let first = run(&source, &queue, &metrics).unwrap();
        assert_eq!(
            (first.files, first.queued),
            (2, 2),
            "symlinks are not followed"
        );

        // Record both as processed, then change one.
        for job in state.due_jobs(i64::MAX, 10).unwrap() {
            let st = FileStat::of_meta(&fs::metadata(source.join(&job.path)).unwrap());
            let done = crate::state::Finish {
                version: None,
                seen: Some((st, "uploaded")),
            };
            state.finish(&job, done).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        fs::write(source.join("sub/b.txt"), b"changed").unwrap();
        let second = run(&source, &queue, &metrics).unwrap();
        assert_eq!((second.files, second.queued), (2, 1));
        let queued: Vec<_> = state
            .due_jobs(i64::MAX, 10)
            .unwrap()
            .into_iter()
            .map(|j| j.path)
            .collect();
        assert_eq!(queued, [PathBuf::from("sub/b.txt")]);
    }

    #[test]
    fn records_directories_below_the_root_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("src");
        fs::create_dir_all(source.join("a/empty")).unwrap();
        fs::create_dir_all(dir.path().join("elsewhere/hidden")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), source.join("link")).unwrap();
        fs::set_permissions(source.join("a"), fs::Permissions::from_mode(0o750)).unwrap();
        fs::set_permissions(source.join("a/empty"), fs::Permissions::from_mode(0o755)).unwrap();
        let (state, metrics, queue) = queue_in(dir.path());

        let first = run(&source, &queue, &metrics).unwrap();
        assert_eq!((first.dirs, first.dirs_recorded), (2, 2));
        let mut rows = state.unpublished(10).unwrap();
        rows.sort_by(|a, b| a.path.cmp(&b.path));
        let recorded: Vec<(PathBuf, u32)> = rows
            .iter()
            .map(|r| (r.path.clone(), r.attrs.mode))
            .collect();
        let d = libc::S_IFDIR;
        assert_eq!(
            recorded,
            [
                (PathBuf::from("a"), d | 0o750),
                (PathBuf::from("a/empty"), d | 0o755)
            ],
            "not the root, not through a symlink"
        );

        let again = run(&source, &queue, &metrics).unwrap();
        assert_eq!((again.dirs, again.dirs_recorded), (2, 0));
        fs::set_permissions(source.join("a/empty"), fs::Permissions::from_mode(0o700)).unwrap();
        let changed = run(&source, &queue, &metrics).unwrap();
        assert_eq!((changed.dirs, changed.dirs_recorded), (2, 1));
    }
}
