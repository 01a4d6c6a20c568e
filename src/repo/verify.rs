//! Reading objects back and proving they hold what the catalog says: `backupfs verify`,
//! and the check every restored file passes before it is renamed into place.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{self, BufReader, BufWriter, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::catalog::Catalog;
use super::Repo;
use crate::pipeline::dedup::HashingWriter;
use crate::pipeline::upload::UploadError;
use crate::state::CatalogRow;

/// Why an object could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("object {0} is missing from the destination")]
    Missing(String),
    #[error("object {object} is corrupt: {why}")]
    Corrupt { object: String, why: String },
    /// Anything else: the destination or the local disk failed.
    #[error("{0}")]
    Other(String),
}

/// Downloads `row.object` into a fresh file in `scratch_dir` (removed afterwards), decrypts
/// it into `out`, and checks that what came out has the size and SHA-256 the catalog
/// records. `out` may hold plaintext even on error; the caller discards it then.
pub fn fetch<W: Write>(
    repo: &Repo,
    row: &CatalogRow,
    scratch_dir: &Path,
    out: W,
) -> Result<W, FetchError> {
    struct Scratch(PathBuf);
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    // A new name each time, created exclusively and never through a symlink: the
    // directory may be one that others can write to.
    let scratch = scratch_dir.join(format!(".bfs-{:016x}.pgp", rand::random::<u64>()));
    let other = |e: io::Error| FetchError::Other(format!("{}: {e}", scratch.display()));
    let mut sealed = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(&scratch)
        .map_err(other)?;
    let _guard = Scratch(scratch.clone());
    {
        let mut writer = BufWriter::new(&mut sealed);
        repo.dest
            .get(&row.object, &mut writer)
            .map_err(|e| match e {
                UploadError::Missing(_) => FetchError::Missing(row.object.clone()),
                e => FetchError::Other(e.to_string()),
            })?;
        writer.flush().map_err(other)?;
    }
    sealed.rewind().map_err(other)?;
    let mut hashing = HashingWriter::new(out);
    let corrupt = |why: String| FetchError::Corrupt {
        object: row.object.clone(),
        why,
    };
    repo.sealer
        .open(BufReader::new(&sealed), &mut hashing)
        .map_err(|e| match e {
            crate::pipeline::seal::SealError::Io(e) => FetchError::Other(e.to_string()),
            e => corrupt(e.to_string()),
        })?;
    let (sha, size, out) = hashing.finish();
    if size != row.size {
        return Err(corrupt(format!(
            "{size} bytes, the catalog says {}",
            row.size
        )));
    }
    if sha != row.sha256 {
        return Err(corrupt("SHA-256 differs from the catalog".into()));
    }
    Ok(out)
}

/// An object `verify` could not vouch for.
#[derive(Debug)]
pub struct Bad {
    pub object: String,
    pub paths: Vec<PathBuf>,
    /// `MISSING`, `CORRUPT`, or `UNREADABLE` when the destination could not be read (which
    /// says nothing about the object itself).
    pub kind: &'static str,
    pub why: String,
}

impl FetchError {
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Missing(_) => "MISSING",
            FetchError::Corrupt { .. } => "CORRUPT",
            FetchError::Other(_) => "UNREADABLE",
        }
    }
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct Report {
    pub objects_checked: usize,
    pub bytes: u64,
    /// Each bad object, the paths whose versions point at it, and what is wrong.
    pub bad: Vec<Bad>,
}

/// Re-reads objects the catalog points at: all of them, or `sample` chosen at random.
/// Directories point at none.
pub fn verify(
    repo: &Repo,
    catalog: &Catalog,
    sample: Option<usize>,
    scratch_dir: &Path,
    mut progress: impl FnMut(&str, &Result<(), FetchError>),
) -> Report {
    let mut by_object: BTreeMap<&str, Vec<&CatalogRow>> = BTreeMap::new();
    for row in catalog.versions.values().filter(|r| !r.is_dir()) {
        by_object.entry(&row.object).or_default().push(row);
    }
    let mut objects: Vec<_> = by_object.into_iter().collect();
    if let Some(n) = sample {
        use rand::seq::SliceRandom;
        objects.shuffle(&mut rand::thread_rng());
        objects.truncate(n);
        objects.sort_by_key(|(object, _)| *object);
    }
    let mut report = Report::default();
    for (object, rows) in objects {
        let result = fetch(repo, rows[0], scratch_dir, io::sink()).map(drop);
        progress(object, &result);
        report.objects_checked += 1;
        match result {
            Ok(()) => report.bytes += rows[0].size,
            Err(e) => {
                let mut paths: Vec<PathBuf> = rows.iter().map(|r| r.path.clone()).collect();
                paths.sort();
                paths.dedup();
                report.bad.push(Bad {
                    object: object.to_string(),
                    paths,
                    kind: e.kind(),
                    why: e.to_string(),
                });
            }
        }
    }
    report
}
