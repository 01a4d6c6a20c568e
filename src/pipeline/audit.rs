//! The audit log: one JSON line per file outcome, appended after the outcome is committed
//! to the state database.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::metrics::Outcome;

#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub time: String,
    pub job: i64,
    /// Path inside the mount; lossy for names that are not UTF-8.
    pub path: String,
    /// The exact bytes of a path that is not UTF-8, in hex, since `path` cannot hold them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtime: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<String>,
    /// Detector name to matches; never the matched values.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub detectors: std::collections::BTreeMap<String, u64>,
    /// What classification read the file as: text, utf16, docx, pdf, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'static str>,
    /// Why only part of the file could be classified (a cap hit, an encrypted part).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The prefix and storage class of the object's class's route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<super::upload::Route>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl AuditRecord {
    pub fn new(job: i64, path: &Path) -> Self {
        Self {
            time: String::new(),
            job,
            path: path.to_string_lossy().into_owned(),
            path_hex: path
                .to_str()
                .is_none()
                .then(|| hex::encode(path.as_os_str().as_encoded_bytes())),
            outcome: Outcome::Failed,
            sha256: None,
            size: None,
            mtime: None,
            classification: None,
            detectors: Default::default(),
            format: None,
            partial: None,
            object: None,
            destination: None,
            route: None,
            reason: None,
        }
    }
}

pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    pub fn open(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    pub fn append(&self, record: &AuditRecord) -> io::Result<()> {
        let mut record = record.clone();
        record.time = crate::rfc3339_now();
        // A file whose name holds the passphrase is recorded with it hidden, as in the log.
        let line = serde_json::to_string(&record).map_err(io::Error::other)?;
        let mut line = crate::logging::hide_secrets(line).into_bytes();
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        // One write(2) per record, so concurrent records never interleave. Not synced: the
        // state database is the durable record, and an fsync per file would cost more than
        // backing up a small file.
        file.write_all(&line).map_err(|e| {
            io::Error::new(e.kind(), format!("audit log {}: {e}", self.path.display()))
        })
    }
}
