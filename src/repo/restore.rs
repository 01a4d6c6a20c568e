//! `backupfs restore`: fetch versions from the catalog in parallel, decrypt, check each
//! SHA-256, then give the file its mode, owner and times and rename it into place.
//! Directories in the catalog are made first, private, and get their own mode and owner
//! only after every file is in place, so a read-only directory never blocks its files.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use super::verify::{fetch, FetchError};
use super::Repo;
use crate::state::CatalogRow;
use crate::sys;

/// What to restore and how.
pub struct Request {
    pub to: PathBuf,
    pub overwrite: bool,
    pub jobs: usize,
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct Summary {
    pub restored: usize,
    /// Directories made (or found in place) and given their mode and owner.
    pub dirs: usize,
    /// Files found in place with the right content (left from an interrupted restore).
    pub already_there: usize,
    pub bytes: u64,
    pub failed: Vec<(PathBuf, String)>,
}

/// Told about each file as it finishes.
pub trait Progress: Sync {
    fn done(&self, path: &Path, size: u64, result: &Result<(), String>);
}

/// Restores `rows` (files and directories) below `req.to`.
pub fn restore(
    repo: &Repo,
    rows: &[&CatalogRow],
    req: &Request,
    progress: &dyn Progress,
) -> Summary {
    let (mut dirs, files): (Vec<&CatalogRow>, Vec<&CatalogRow>) =
        rows.iter().partition(|r| r.is_dir());
    // By bytes, a directory sorts before everything below it.
    dirs.sort_unstable_by(|a, b| path_key(a).cmp(path_key(b)));
    let mut made = Vec::new();
    let mut failed = Vec::new();
    for row in dirs {
        match make_dir(&req.to, &row.path) {
            Ok(()) => made.push(row),
            Err(e) => failed.push((row.path.clone(), e)),
        }
    }
    let mut summary = restore_files(repo, &files, req, progress);
    summary.failed.extend(failed);
    // Deepest first, once nothing more is created inside: modes, owners, then times.
    for row in made.iter().rev() {
        let dir = req.to.join(&row.path);
        match finish_dir(&dir, row) {
            Ok(()) => summary.dirs += 1,
            Err(e) => summary
                .failed
                .push((row.path.clone(), format!("{}: {e}", dir.display()))),
        }
    }
    // One flush of the whole target instead of an fsync per file.
    if let Err(e) = File::open(&req.to).and_then(|dir| sys::syncfs(&dir)) {
        summary.failed.push((
            req.to.clone(),
            format!("cannot flush the restored files to disk: {e}"),
        ));
    }
    summary.failed.sort();
    summary
}

fn path_key(row: &CatalogRow) -> &[u8] {
    row.path.as_os_str().as_bytes()
}

/// Fetches `rows` (files only) in parallel.
fn restore_files(
    repo: &Repo,
    rows: &[&CatalogRow],
    req: &Request,
    progress: &dyn Progress,
) -> Summary {
    let summary = Mutex::new(Summary::default());
    let (tx, rx) = crossbeam_channel::unbounded();
    for row in rows {
        let _ = tx.send(*row);
    }
    drop(tx);
    std::thread::scope(|scope| {
        for _ in 0..req.jobs.max(1) {
            let (rx, summary) = (rx.clone(), &summary);
            scope.spawn(move || {
                for row in rx {
                    let result = restore_one(repo, row, req);
                    let shown = result.as_ref().map(drop).map_err(String::clone);
                    progress.done(&row.path, row.size, &shown);
                    let mut s = summary.lock().unwrap_or_else(|e| e.into_inner());
                    match result {
                        Ok(Done::Restored) => {
                            s.restored += 1;
                            s.bytes += row.size;
                        }
                        Ok(Done::AlreadyThere) => s.already_there += 1,
                        Err(e) => s.failed.push((row.path.clone(), e)),
                    }
                }
            });
        }
    });
    summary.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// The file a half-restored version is written to, removed unless it is renamed.
struct Partial(PathBuf);

impl Drop for Partial {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// How a file ended up in place.
enum Done {
    Restored,
    AlreadyThere,
}

fn same_content(path: &Path, sha256: &[u8; 32]) -> bool {
    File::open(path)
        .and_then(crate::pipeline::dedup::hash)
        .is_ok_and(|(sha, _)| &sha == sha256)
}

/// A catalog entry must name a path inside the target, whatever it says.
fn check_inside(rel: &Path) -> Result<(), String> {
    let inside =
        !rel.as_os_str().is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    match inside {
        true => Ok(()),
        false => Err("the catalog names a path outside the target; skipped".into()),
    }
}

fn restore_one(repo: &Repo, row: &CatalogRow, req: &Request) -> Result<Done, String> {
    check_inside(&row.path)?;
    let dest = req.to.join(&row.path);
    if !req.overwrite {
        if let Ok(meta) = std::fs::symlink_metadata(&dest) {
            // A file a previous, interrupted restore already put there: nothing to do.
            if meta.is_file() && meta.len() == row.size && same_content(&dest, &row.sha256) {
                // The content is right; make the attributes right too.
                let file = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&dest)
                    .and_then(|f| finish_attrs(&f, row).map(|()| f));
                return file
                    .map(|_| Done::AlreadyThere)
                    .map_err(|e| format!("{}: {e}", dest.display()));
            }
            return Err(format!(
                "{} exists with other content; not overwritten without --overwrite",
                dest.display()
            ));
        }
    }
    let parent = make_parents(&req.to, &row.path)?;
    let mut tries = 0;
    let (partial, file) = loop {
        // Short, so that it fits wherever the real name (up to 255 bytes) fits.
        let partial = Partial(parent.join(format!(".bfs-{:016x}.part", rand::random::<u64>())));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(&partial.0)
            .map_err(|e| format!("{}: {e}", partial.0.display()))?;
        match fetch(repo, row, &parent, BufWriter::new(file)) {
            Ok(out) => {
                let file = out
                    .into_inner()
                    .map_err(|e| format!("{}: {}", partial.0.display(), e.error()))?;
                break (partial, file);
            }
            // The destination failed for a moment: try again, a few times.
            Err(FetchError::Other(e)) if tries < RETRIES => {
                tries += 1;
                tracing::warn!(path = ?row.path, error = %e, "fetch failed; trying again");
                std::thread::sleep(Duration::from_secs(1 << tries));
            }
            Err(e @ FetchError::Corrupt { .. }) => return Err(format!("{e}; refused")),
            Err(e) => return Err(e.to_string()),
        }
    };
    finish_attrs(&file, row).map_err(|e| format!("{}: {e}", partial.0.display()))?;
    let (from, to) = (partial.0.as_os_str(), dest.as_os_str());
    let moved = if req.overwrite {
        std::fs::rename(from, to)
    } else {
        sys::renameat2(sys::cwd(), from, sys::cwd(), to, libc::RENAME_NOREPLACE)
    };
    moved.map_err(|e| match e.raw_os_error() {
        Some(libc::EEXIST) => format!(
            "{} appeared meanwhile; not overwritten without --overwrite",
            dest.display()
        ),
        _ => format!("{}: {e}", dest.display()),
    })?;
    Ok(Done::Restored)
}

/// How often a fetch that failed for a passing reason is tried again.
const RETRIES: u32 = 3;

/// Creates the directories between `to` and the file `rel`, refusing to pass through a
/// symbolic link: a link planted in the target must not send the restore elsewhere.
/// Returns the file's directory.
fn make_parents(to: &Path, rel: &Path) -> Result<PathBuf, String> {
    let mut dir = to.to_path_buf();
    let parents: Vec<_> = rel
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    for part in parents {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "{} is a symbolic link; not followed",
                    dir.display()
                ))
            }
            Ok(m) if !m.is_dir() => return Err(format!("{} is not a directory", dir.display())),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("{}: {e}", dir.display())),
            },
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
    }
    Ok(dir)
}

/// Makes directory `rel` below `to`, and those above it, never through a symbolic link. A
/// directory it makes is private (0700) until [`finish_dir`] gives it its own mode; one
/// already there is kept, made writable for its owner if this is not root (its mode comes
/// back at the end), so that its files can be restored.
fn make_dir(to: &Path, rel: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    check_inside(rel)?;
    let dir = make_parents(to, rel)?.join(rel.file_name().unwrap_or_default());
    let shown = |e: std::io::Error| format!("{}: {e}", dir.display());
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(shown(e)),
        _ => {}
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(shown)?;
    if meta.file_type().is_symlink() {
        return Err(format!(
            "{} is a symbolic link; not followed",
            dir.display()
        ));
    }
    if !meta.is_dir() {
        return Err(format!("{} exists and is not a directory", dir.display()));
    }
    if sys::geteuid() != 0 && meta.mode() & 0o300 != 0o300 {
        let writable = std::fs::Permissions::from_mode((meta.mode() & 0o7777) | 0o300);
        std::fs::set_permissions(&dir, writable).map_err(shown)?;
    }
    Ok(())
}

/// A directory's owner (when root) and mode, then, as far as it goes, its modification
/// time. Through a descriptor of the directory itself, never through a symbolic link.
fn finish_dir(dir: &Path, row: &CatalogRow) -> std::io::Result<()> {
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    let fd = sys::openat(sys::cwd(), dir.as_os_str(), flags, 0)?;
    if sys::geteuid() == 0 {
        sys::fchownat_empty(fd.as_fd(), Some(row.attrs.uid), Some(row.attrs.gid))?;
    }
    let path = sys::proc_fd_path(fd.as_fd());
    sys::chmod_path(&path, row.attrs.mode & 0o7777)?;
    // The catalog has the time as of the directory's last recorded version, usually older
    // than its last entry change: restored as a best effort, never a failure.
    let ns = row.attrs.mtime_ns;
    let mtime = Some((ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000)));
    if let Err(e) = sys::utimens_path(&path, None, Some(mtime)) {
        tracing::debug!(path = ?row.path, error = %e, "cannot set the directory's time");
    }
    Ok(())
}

/// Owner (when root), mode and modification time. Not fsynced one by one: the restore
/// syncs the target's filesystem once at the end.
fn finish_attrs(file: &File, row: &CatalogRow) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if sys::geteuid() == 0 {
        // Before the mode: changing the owner clears set-id bits.
        std::os::unix::fs::fchown(file, Some(row.attrs.uid), Some(row.attrs.gid))?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(row.attrs.mode & 0o7777))?;
    let mtime = if row.attrs.mtime_ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(row.attrs.mtime_ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(row.attrs.mtime_ns.unsigned_abs())
    };
    file.set_times(
        std::fs::FileTimes::new()
            .set_modified(mtime)
            .set_accessed(std::time::SystemTime::now()),
    )
}

/// Progress on a terminal: a bar with bytes, files and time left.
pub struct Bar {
    bar: indicatif::ProgressBar,
    files: std::sync::atomic::AtomicUsize,
    total: usize,
}

impl Bar {
    pub fn new(files: usize, bytes: u64) -> Self {
        let bar = indicatif::ProgressBar::new(bytes);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {msg} eta {eta}",
            )
            .expect("the template is valid"),
        );
        bar.set_message(format!("0/{files} files"));
        Self {
            bar,
            files: Default::default(),
            total: files,
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Bar {
    fn done(&self, path: &Path, size: u64, result: &Result<(), String>) {
        self.bar.inc(size);
        let n = 1 + self
            .files
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.bar.set_message(format!("{n}/{} files", self.total));
        if let Err(e) = result {
            self.bar
                .println(format!("failed: {}: {e}", super::shown(path)));
        }
    }
}

/// Progress as plain lines, for logs and pipes.
pub struct Lines;

impl Progress for Lines {
    fn done(&self, path: &Path, size: u64, result: &Result<(), String>) {
        let mut err = std::io::stderr().lock();
        let _ = match result {
            Ok(()) => writeln!(err, "restored {} ({size} bytes)", super::shown(path)),
            Err(e) => writeln!(err, "failed: {}: {e}", super::shown(path)),
        };
    }
}
