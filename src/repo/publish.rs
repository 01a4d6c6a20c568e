//! The daemon's side of the catalog: every flush interval, write the versions recorded
//! since the last flush as a batch, tell prunes how far that goes (the host marker), pick up
//! a prune's condemned list, and compact the catalog when batches pile up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::catalog::{self, Catalog};
use super::{now_ms, CondemnedList, Marker, PassphraseCheck, Repo, SharedCondemned};
use crate::pipeline::Queue;
use crate::state::State;

/// Rows per batch; bounds the memory one flush takes.
const BATCH_ROWS: usize = 20_000;

/// How often the marker is rewritten when nothing else changed, so prunes see the daemon
/// is alive.
const HEARTBEAT: Duration = Duration::from_secs(30);

pub struct Publisher {
    pub repo: Arc<Repo>,
    pub state: Arc<State>,
    pub queue: Arc<Queue>,
    pub condemned: SharedCondemned,
    pub interval: Duration,
    pub compact_after: usize,
    /// Nothing is published until the passphrase is known to open this host's catalog.
    pub passphrase: Arc<PassphraseCheck>,
}

struct Progress {
    marker: Marker,
    marker_written: Option<Instant>,
    /// Batches in the destination not yet merged into a snapshot, once counted.
    batches: Option<usize>,
}

impl Publisher {
    /// Before the workers start: versions recorded but not yet published by an earlier
    /// run may point at objects a prune removed meanwhile. Those are withdrawn and their
    /// files queued again. Directories' versions point at no object and stay.
    pub fn check_unpublished(&self) -> anyhow::Result<usize> {
        self.refresh_condemned(&mut Marker::default());
        let mut withdrawn = 0;
        let rows = self.state.unpublished(usize::MAX)?;
        for row in rows.into_iter().filter(|r| !r.is_dir()) {
            if self.condemned.contains(&row.object) || !self.repo.dest.exists(&row.object)? {
                tracing::warn!(path = ?row.path, object = %row.object, "object of an unpublished version is gone; backing the file up again");
                self.state.withdraw(&row, now_ms())?;
                withdrawn += 1;
            }
        }
        Ok(withdrawn)
    }

    /// Runs until `stop` is disconnected (its sender dropped), then flushes once more.
    pub fn run(&self, stop: &crossbeam_channel::Receiver<()>) {
        let mut progress = Progress {
            marker: Marker {
                prefix: self.repo.layout.host.clone(),
                flush_interval_ms: self.interval.as_millis() as i64,
                ..Marker::default()
            },
            marker_written: None,
            batches: None,
        };
        let mut stopping = false;
        loop {
            if let Err(e) = self.tick(&mut progress) {
                tracing::error!(error = %format!("{e:#}"), "cannot update the catalog in the destination; will try again");
            }
            if stopping {
                let last = Marker {
                    stopped: true,
                    written_ms: now_ms(),
                    ..progress.marker
                };
                if let Err(e) = self.repo.put_json(&self.repo.layout.marker(), &last) {
                    tracing::warn!(error = %e, "cannot mark this host stopped in the destination");
                }
                return;
            }
            stopping = !matches!(
                stop.recv_timeout(self.interval),
                Err(crossbeam_channel::RecvTimeoutError::Timeout)
            );
        }
    }

    /// One round: condemned list, batches, marker, compaction.
    fn tick(&self, progress: &mut Progress) -> anyhow::Result<()> {
        if let Err(e) = self.passphrase.run(&self.repo) {
            tracing::error!(error = %format!("{e:#}"), "nothing is uploaded or written to the catalog with this passphrase; stop backupfs and fix the passphrase its config names");
        }
        if !self.passphrase.accepted() {
            return Ok(());
        }
        let (seen, seen_at) = self.refresh_condemned(&mut progress.marker);
        // Everything that started before `before` has finished by now, so its record is
        // among the rows read below.
        let started = now_ms();
        let before = self
            .queue
            .oldest_in_flight_ms()
            .unwrap_or(started)
            .min(started);
        let (published, batches) = self.publish()?;
        let marker = Marker {
            published_before_ms: before,
            condemned_seen: seen,
            condemned_seen_at_ms: seen_at,
            written_ms: now_ms(),
            ..progress.marker.clone()
        };
        // While a prune waits on this host, every round tells it how far things are.
        let changed = published > 0 || seen.is_some();
        let due = progress
            .marker_written
            .is_none_or(|t| t.elapsed() >= HEARTBEAT);
        if changed || due {
            self.repo.put_json(&self.repo.layout.marker(), &marker)?;
            progress.marker_written = Some(Instant::now());
        }
        progress.marker = marker;
        let pending = match progress.batches {
            Some(n) => n + batches,
            None => self.count_batches()?,
        };
        progress.batches = Some(pending);
        if pending >= self.compact_after {
            // Whatever happens, the next try waits for another round of batches.
            progress.batches = Some(0);
            let catalog = Catalog::load(&self.repo)?;
            let key = catalog.compact(&self.repo)?;
            tracing::info!(versions = catalog.versions.len(), merged = catalog.merged.len(), snapshot = %key, "catalog compacted");
        }
        Ok(())
    }

    /// Writes every version unpublished when it is called; returns how many, and in how
    /// many batches. Versions recorded meanwhile wait for the next round: chasing them
    /// while workers keep recording wrote hundreds of tiny batches a minute, and every 64
    /// batches cost a compaction of the whole catalog.
    fn publish(&self) -> anyhow::Result<(usize, usize)> {
        let (mut records, mut batches) = (0, 0);
        loop {
            let rows = self.state.unpublished(BATCH_ROWS)?;
            let removals = self.state.unpublished_removals(BATCH_ROWS)?;
            if rows.is_empty() && removals.is_empty() {
                return Ok((records, batches));
            }
            let key = catalog::write_batch(&self.repo, &rows, &removals)?;
            let ids: Vec<i64> = rows
                .iter()
                .map(|r| r.id)
                .chain(removals.iter().map(|r| r.id))
                .collect();
            self.state.mark_published(&ids)?;
            records += ids.len();
            batches += 1;
            tracing::info!(versions = rows.len(), removals = removals.len(), batch = %key, "catalog batch written");
            if rows.len() < BATCH_ROWS && removals.len() < BATCH_ROWS {
                return Ok((records, batches));
            }
        }
    }

    /// Loads the condemned list; returns its id and when this host first saw it.
    fn refresh_condemned(&self, marker: &mut Marker) -> (Option<i64>, i64) {
        match self
            .repo
            .get_json::<CondemnedList>(&self.repo.layout.condemned())
        {
            Ok(list) => {
                let id = list.as_ref().map(|l| l.id);
                if id != self.condemned.id() {
                    if let Some(l) = &list {
                        match self.state.forget_objects(&l.objects) {
                            Ok(n) => tracing::info!(
                                objects = l.objects.len(),
                                forgotten = n,
                                "a prune is running; its objects will not be reused"
                            ),
                            Err(e) => tracing::error!(error = %e, "cannot update the index"),
                        }
                    }
                    self.condemned.replace(list);
                    marker.condemned_seen_at_ms = now_ms();
                }
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot read the prune list"),
        }
        (self.condemned.id(), marker.condemned_seen_at_ms)
    }

    fn count_batches(&self) -> anyhow::Result<usize> {
        let dir = self.repo.layout.catalog_dir();
        Ok(self
            .repo
            .dest
            .list(&dir)?
            .iter()
            .filter(|l| l.key[dir.len()..].starts_with("batch-"))
            .count())
    }
}
