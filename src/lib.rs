//! backupfs: a FUSE drop folder that backs up every file closed in it.
//!
//! Writes pass through to a real source directory ([`fs`]). When a handle that changed a
//! file is released, the file is queued, and a pool of workers takes it through the
//! [`pipeline`]: dedup, classify, gate 1, scan, seal, gate 2, upload.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod fs;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod repo;
pub mod secret;
pub mod state;
mod sys;

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Nanoseconds since the Unix epoch; unique enough to name quarantined files.
pub fn unix_now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The current time as RFC 3339 in UTC, for log and audit records.
pub fn rfc3339_now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
