//! Every Prometheus collector backupfs exports, registered in one place, and the `/metrics`
//! endpoint that serves them.
//!
//! Names follow the Prometheus conventions: counters end in `_total`, units are seconds and
//! bytes, and labels come from small fixed sets (never a path or a hash).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// What became of a file the pipeline took up; the `outcome` label of `files_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Uploaded,
    Duplicate,
    Rejected,
    Infected,
    NotScanned,
    Failed,
    /// Deleted or replaced by something that is not a regular file before its turn.
    Vanished,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Uploaded,
        Outcome::Duplicate,
        Outcome::Rejected,
        Outcome::Infected,
        Outcome::NotScanned,
        Outcome::Failed,
        Outcome::Vanished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Uploaded => "uploaded",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected => "rejected",
            Outcome::Infected => "infected",
            Outcome::NotScanned => "not-scanned",
            Outcome::Failed => "failed",
            Outcome::Vanished => "vanished",
        }
    }
}

/// The stages timed by `stage_duration_seconds`.
pub const STAGES: [&str; 7] = [
    "dedup", "classify", "gate1", "scan", "seal", "gate2", "upload",
];

pub struct Metrics {
    registry: Registry,
    pub files: IntCounterVec,
    pub stage_seconds: HistogramVec,
    pub job_seconds: Histogram,
    pub queue_depth: IntGauge,
    pub in_flight: IntGauge,
    pub bytes_read: IntCounter,
    pub bytes_uploaded: IntCounter,
    pub retries: IntCounterVec,
    pub clamd_up: IntGauge,
    pub destination_up: IntGauge,
    pub refused_names: IntCounter,
    pub failed_jobs: IntGauge,
    pub requeued: IntCounter,
    pub catchup_running: IntGauge,
    pub catchup_files: IntCounterVec,
    pub classify_partial: IntCounter,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Arc<Self>> {
        let registry = Registry::new();
        let files = IntCounterVec::new(
            Opts::new(
                "backupfs_files_total",
                "Files the pipeline finished, by outcome.",
            ),
            &["outcome"],
        )?;
        let buckets = vec![0.001, 0.005, 0.02, 0.1, 0.5, 2.0, 10.0, 60.0, 300.0];
        let stage_seconds = HistogramVec::new(
            HistogramOpts::new(
                "backupfs_stage_duration_seconds",
                "Time spent in each pipeline stage per file.",
            )
            .buckets(buckets.clone()),
            &["stage"],
        )?;
        let job_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "backupfs_file_duration_seconds",
                "Time from dequeue to outcome for one file.",
            )
            .buckets(buckets),
        )?;
        let queue_depth = IntGauge::new("backupfs_queue_depth", "Files waiting for a worker.")?;
        let in_flight = IntGauge::new("backupfs_in_flight", "Files a worker is processing now.")?;
        let bytes_read = IntCounter::new(
            "backupfs_read_bytes_total",
            "Bytes of source files read by the pipeline.",
        )?;
        let bytes_uploaded = IntCounter::new(
            "backupfs_uploaded_bytes_total",
            "Bytes of sealed objects written to the destination.",
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "backupfs_retries_total",
                "Stage attempts that failed for a reason that can pass and were retried.",
            ),
            &["stage"],
        )?;
        let clamd_up = IntGauge::new(
            "backupfs_clamd_up",
            "1 if the last attempt to reach clamd succeeded, else 0.",
        )?;
        let destination_up = IntGauge::new(
            "backupfs_destination_up",
            "1 if the last attempt to reach the destination succeeded, else 0.",
        )?;
        let refused_names = IntCounter::new(
            "backupfs_refused_names_total",
            "Creates and renames refused at the mount because the name is blacklisted.",
        )?;
        let failed_jobs = IntGauge::new(
            "backupfs_failed_jobs",
            "Jobs that failed for a reason an operator must fix; `backupfs queue retry` re-runs them.",
        )?;
        let requeued = IntCounter::new(
            "backupfs_requeued_total",
            "Jobs put back because the file changed while it was being processed.",
        )?;
        let catchup_running = IntGauge::new(
            "backupfs_catchup_running",
            "1 while the start-up scan of the source directory runs.",
        )?;
        let catchup_files = IntCounterVec::new(
            Opts::new(
                "backupfs_catchup_files_total",
                "Files the start-up scan looked at, by whether they needed a backup.",
            ),
            &["result"],
        )?;
        let classify_partial = IntCounter::new(
            "backupfs_classify_partial_total",
            "Files classified from part of their text only: a cap was hit or a part could not be read.",
        )?;
        registry.register(Box::new(classify_partial.clone()))?;
        registry.register(Box::new(failed_jobs.clone()))?;
        registry.register(Box::new(requeued.clone()))?;
        registry.register(Box::new(catchup_running.clone()))?;
        registry.register(Box::new(catchup_files.clone()))?;
        registry.register(Box::new(files.clone()))?;
        registry.register(Box::new(stage_seconds.clone()))?;
        registry.register(Box::new(job_seconds.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(bytes_read.clone()))?;
        registry.register(Box::new(bytes_uploaded.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(clamd_up.clone()))?;
        registry.register(Box::new(destination_up.clone()))?;
        registry.register(Box::new(refused_names.clone()))?;
        // CPU seconds, resident and virtual memory, open fds, start time.
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        // Export every series from the start, so rates and alerts see zeros, not gaps.
        for outcome in Outcome::ALL {
            files.with_label_values(&[outcome.as_str()]);
        }
        for stage in STAGES {
            stage_seconds.with_label_values(&[stage]);
        }
        for stage in ["dedup", "scan", "seal", "upload"] {
            retries.with_label_values(&[stage]);
        }
        for result in ["queued", "unchanged", "already-queued"] {
            catchup_files.with_label_values(&[result]);
        }
        clamd_up.set(1);
        destination_up.set(1);
        Ok(Arc::new(Self {
            registry,
            files,
            stage_seconds,
            job_seconds,
            queue_depth,
            in_flight,
            bytes_read,
            bytes_uploaded,
            retries,
            clamd_up,
            destination_up,
            refused_names,
            failed_jobs,
            requeued,
            catchup_running,
            catchup_files,
            classify_partial,
        }))
    }

    pub fn count(&self, outcome: Outcome) {
        self.files.with_label_values(&[outcome.as_str()]).inc();
    }

    pub fn count_of(&self, outcome: Outcome) -> u64 {
        self.files.with_label_values(&[outcome.as_str()]).get()
    }

    /// The text exposition format, as `/metrics` serves it.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Serves `GET /metrics` on `addr` from a background thread. Returns the bound address, which
/// differs from `addr` when its port is 0.
pub fn serve(metrics: Arc<Metrics>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(&metrics, stream) {
                    tracing::debug!(error = %e, "metrics request failed");
                }
            }
        })?;
    Ok(bound)
}

fn answer(metrics: &Metrics, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers; nothing in them changes the answer.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, content_type, body) = match path.split('?').next() {
        Some("/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        Some("/") => (
            "200 OK",
            "text/plain",
            "backupfs: see /metrics\n".to_string(),
        ),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_is_exported_from_the_start() {
        let m = Metrics::new().unwrap();
        let text = m.render();
        for outcome in Outcome::ALL {
            let series = format!("backupfs_files_total{{outcome=\"{}\"}} 0", outcome.as_str());
            assert!(text.contains(&series), "missing {series} in\n{text}");
        }
        assert!(text.contains("process_resident_memory_bytes"));
    }

    #[test]
    fn endpoint_serves_counts() {
        let m = Metrics::new().unwrap();
        m.count(Outcome::Infected);
        let addr = serve(m.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        std::io::Read::read_to_string(&mut s, &mut body).unwrap();
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        assert!(
            body.contains("backupfs_files_total{outcome=\"infected\"} 1"),
            "{body}"
        );
    }
}
