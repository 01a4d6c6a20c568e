//! `backupfs classify`: what stage 2 would say about files, without backing them up.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

use crate::config::{ByteSize, ClassifyConfig, Config};
use crate::pipeline::extract::{self, Limits};

#[derive(Serialize)]
struct Line<'a> {
    path: String,
    class: &'static str,
    detectors: &'a BTreeMap<String, u64>,
    format: &'static str,
    partial: Option<&'a str>,
}

pub fn run(
    config: Option<&Path>,
    max_bytes: Option<ByteSize>,
    max_time: Option<Duration>,
    paths: &[PathBuf],
) -> anyhow::Result<()> {
    let mut cfg = match config {
        Some(path) => Config::load(path)?.raw.classify,
        None => ClassifyConfig::default(),
    };
    if let Some(ByteSize(0)) = max_bytes {
        anyhow::bail!("--max-bytes must be more than 0");
    }
    if max_time.is_some_and(|t| t.is_zero()) {
        anyhow::bail!("--max-time must be more than 0s");
    }
    cfg.max_bytes = max_bytes.unwrap_or(cfg.max_bytes);
    cfg.max_time = max_time.unwrap_or(cfg.max_time);
    let classifier = crate::daemon::classifier(&cfg)?;
    let limits = Limits::from(&cfg);
    let mut failed = 0;
    for path in paths {
        // Told before opening: opening a FIFO would wait for a writer.
        let result = std::fs::metadata(path)
            .and_then(|meta| match meta.file_type() {
                t if t.is_file() => File::open(path),
                t if t.is_dir() => Err(std::io::Error::other("is a directory")),
                _ => Err(std::io::Error::other(
                    "not a regular file (a FIFO, socket or device)",
                )),
            })
            .and_then(|file| extract::examine(&classifier, &file, &limits))
            .with_context(|| format!("{}", path.display()));
        match result {
            Ok(examined) => {
                let c = &examined.classification;
                let line = Line {
                    path: path.to_string_lossy().into_owned(),
                    class: c.class.as_str(),
                    detectors: &c.detectors,
                    format: examined.format.as_str(),
                    partial: examined.partial.as_deref(),
                };
                println!("{}", serde_json::to_string(&line)?);
            }
            Err(e) => {
                eprintln!("backupfs classify: {e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} files could not be classified", paths.len());
    }
    Ok(())
}
