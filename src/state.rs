//! The durable state under `state.dir`, in one SQLite database (WAL mode):
//!
//! - `jobs`: the queue. A row is written before `release` returns and deleted only in the
//!   transaction that records the file's outcome, so a crash at any point leaves the job to
//!   be resumed.
//! - `content`: the dedup index, SHA-256 to object.
//! - `catalog`: every backed-up version, path to object.
//! - `files`: the last state of each path the pipeline finished with, which catch-up
//!   compares against the source directory so unchanged files are never re-read.
//! - `legacy_hashes`: hashes imported from a `hashes.json`, treated as already backed up.
//!
//! SQLite because it gives crash-safe transactions in one file that an operator can inspect
//! with the stock `sqlite3` shell. Commits use `synchronous = NORMAL`: they survive the
//! process being killed at any instant; after a power loss the last few may roll back, and
//! catch-up on the next start finds those files again because their `files` row is stale.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

pub use crate::pipeline::upload::Route;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state database {path}: {source}")]
    Db {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "state.dir {path} is in use by another backupfs mount ({holder}); give each mount its \
         own state.dir"
    )]
    Busy { path: PathBuf, holder: String },
}

/// Held by the one daemon that owns a state directory; released when dropped.
pub struct StateLock {
    _file: std::fs::File,
}

/// Makes sure only one daemon at a time uses `dir`: two would hand out the same job and
/// spool names. Commands that only read or retry jobs do not take it.
pub fn lock(dir: &Path) -> Result<StateLock, StateError> {
    use std::io::{Read, Seek, Write};
    let path = dir.join("lock");
    let io_err = |source| StateError::Dir {
        path: path.clone(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StateError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err)?;
    if !crate::sys::try_lock(&file).map_err(io_err)? {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = match holder.trim() {
            "" => "pid unknown".to_string(),
            pid => format!("pid {pid}"),
        };
        return Err(StateError::Busy {
            path: dir.to_path_buf(),
            holder,
        });
    }
    file.set_len(0).map_err(io_err)?;
    file.rewind().map_err(io_err)?;
    writeln!(file, "{}", std::process::id()).map_err(io_err)?;
    Ok(StateLock { _file: file })
}

/// What one backed-up version of a file was stored as.
#[derive(Debug, Clone)]
pub struct Version<'a> {
    pub path: &'a Path,
    pub sha256: &'a [u8; 32],
    pub object: &'a str,
    pub size: u64,
    pub attrs: Attrs,
    pub classification: &'a str,
    /// The prefix and storage class the content object went to.
    pub route: &'a Route,
}

/// The attributes a restore gives back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attrs {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
}

impl Attrs {
    pub fn of(st: &libc::stat) -> Self {
        Self {
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
        }
    }

    /// A directory's attributes. Its mode keeps the file-type bits (`S_IFDIR`): that is
    /// how the catalog tells a directory from a file, whose mode holds permission bits only.
    pub fn of_dir(st: &libc::stat) -> Self {
        Self {
            mode: libc::S_IFDIR | (st.st_mode & 0o7777),
            ..Self::of(st)
        }
    }

    /// [`Attrs::of_dir`] from metadata already read.
    pub fn of_dir_meta(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            mode: libc::S_IFDIR | (meta.mode() & 0o7777),
            uid: meta.uid(),
            gid: meta.gid(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        }
    }

    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }
}

/// The classification a directory's catalog row carries; it has no content to classify.
pub const DIR_CLASS: &str = "directory";

/// A path removed from the source, as the catalog records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// Its id in the destination's catalog (shared with versions: one id space).
    pub id: i64,
    pub path: PathBuf,
    pub removed_ms: i64,
}

/// A catalog row as it is published to the destination: a version of a file, or of a
/// directory (see [`CatalogRow::dir`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogRow {
    /// The version's id in the destination's catalog.
    pub id: i64,
    pub path: PathBuf,
    pub sha256: [u8; 32],
    pub object: String,
    pub size: u64,
    pub attrs: Attrs,
    pub classification: String,
    pub backed_up_ms: i64,
    /// Where the content object went: its prefix and storage class. A directory has none.
    pub route: Route,
}

impl CatalogRow {
    /// A directory's version: its attributes only. It points at no object (`object` is
    /// empty), so nothing may fetch, check or delete one for it.
    pub fn dir(id: i64, path: PathBuf, attrs: Attrs, backed_up_ms: i64) -> Self {
        Self {
            id,
            path,
            sha256: [0; 32],
            object: String::new(),
            size: 0,
            attrs,
            classification: DIR_CLASS.to_string(),
            backed_up_ms,
            route: Route::default(),
        }
    }

    pub fn is_dir(&self) -> bool {
        self.attrs.is_dir()
    }
}

/// Content already in the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub object: String,
    pub classification: String,
    /// The storage class the object was stored in, if one was asked for.
    pub storage_class: Option<String>,
}

/// The attributes that tell whether a file changed since the pipeline last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl FileStat {
    pub fn of(st: &libc::stat) -> Self {
        Self {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
            ctime_ns: st.st_ctime * 1_000_000_000 + st.st_ctime_nsec,
        }
    }

    pub fn of_meta(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        }
    }
}

/// A queued job as a worker takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub id: i64,
    pub path: PathBuf,
    /// Bumped each time the file is queued again; a job is deleted only if its generation
    /// is still the one the worker started with.
    pub generation: i64,
    /// How often the job was put back because the file changed under a worker.
    pub attempts: i64,
}

/// A job as `backupfs queue list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobInfo {
    pub path: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub queued_at_ms: i64,
}

/// How a job ended, to be recorded in the same transaction that removes it.
pub struct Finish<'a> {
    pub version: Option<(Version<'a>, bool)>,
    /// The file as processed, for catch-up; `None` forgets the path (it vanished).
    pub seen: Option<(FileStat, &'a str)>,
}

pub struct State {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// Columns added to `catalog` after its first release, with their definitions; added to
/// older databases on open.
const CATALOG_COLUMNS: [(&str, &str); 9] = [
    ("mode", "INTEGER NOT NULL DEFAULT 420"),
    ("uid", "INTEGER NOT NULL DEFAULT 0"),
    ("gid", "INTEGER NOT NULL DEFAULT 0"),
    ("mtime_ns", "INTEGER"),
    ("backed_up_ms", "INTEGER"),
    ("published", "INTEGER NOT NULL DEFAULT 0"),
    // The version's id in the destination's catalog: random, so that a host whose state
    // was lost, or rebuilt, never reuses the id of a version already there.
    ("vid", "INTEGER"),
    // The route of the content object: NULL in rows older than routing, whose prefix is
    // the one their object's key shows.
    ("prefix", "TEXT"),
    ("storage_class", "TEXT"),
];

/// Columns added to `content` after its first release.
const CONTENT_COLUMNS: [(&str, &str); 1] = [("storage_class", "TEXT")];

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS content (
        sha256 BLOB PRIMARY KEY,
        object TEXT NOT NULL,
        size INTEGER NOT NULL,
        classification TEXT NOT NULL,
        stored_at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS catalog (
        id INTEGER PRIMARY KEY,
        path BLOB NOT NULL,
        sha256 BLOB NOT NULL,
        object TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime INTEGER NOT NULL,
        classification TEXT NOT NULL,
        backed_up_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS catalog_path ON catalog(path);
    CREATE TABLE IF NOT EXISTS jobs (
        id INTEGER PRIMARY KEY,
        path BLOB NOT NULL UNIQUE,
        generation INTEGER NOT NULL DEFAULT 1,
        state TEXT NOT NULL DEFAULT 'pending',
        queued_at_ms INTEGER NOT NULL,
        not_before_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    );
    CREATE INDEX IF NOT EXISTS jobs_due ON jobs(state, not_before_ms);
    CREATE TABLE IF NOT EXISTS files (
        path BLOB PRIMARY KEY,
        dev INTEGER NOT NULL,
        ino INTEGER NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        ctime_ns INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS removals (
        id INTEGER PRIMARY KEY,
        vid INTEGER NOT NULL UNIQUE,
        path BLOB NOT NULL,
        removed_ms INTEGER NOT NULL,
        published INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS removals_path ON removals(path);
    CREATE INDEX IF NOT EXISTS files_inode ON files(dev, ino);
    CREATE TABLE IF NOT EXISTS legacy_hashes (
        sha256 BLOB PRIMARY KEY,
        path TEXT NOT NULL,
        time TEXT NOT NULL
    );
";

/// Queues `path` to be read once `not_before_ms` has passed; a job already queued for it is
/// brought forward, never later than `max_delay_ms` after it was first queued.
fn enqueue_in(
    conn: &Connection,
    path: &[u8],
    now_ms: i64,
    not_before_ms: i64,
    max_delay_ms: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO jobs (path, queued_at_ms, not_before_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT(path) DO UPDATE SET
            generation = generation + 1,
            state = 'pending',
            not_before_ms = MIN(?3, queued_at_ms + ?4)",
    )?
    .execute(params![path, now_ms, not_before_ms, max_delay_ms])
    .map(drop)
}

/// A file with several names changes under all of them, yet only the name it was written
/// through is reported. Every other name recorded with the same inode whose recorded state
/// no longer matches `st` is queued at once.
fn requeue_other_links(
    tx: &Connection,
    path: &Path,
    st: &FileStat,
    now_ms: i64,
) -> rusqlite::Result<()> {
    let stale: Vec<Vec<u8>> = tx
        .prepare_cached(
            "SELECT path FROM files WHERE dev = ?1 AND ino = ?2 AND path != ?3
               AND (size != ?4 OR mtime_ns != ?5 OR ctime_ns != ?6)",
        )?
        .query_map(
            params![
                st.dev as i64,
                st.ino as i64,
                path_bytes(path),
                st.size as i64,
                st.mtime_ns,
                st.ctime_ns
            ],
            |r| r.get(0),
        )?
        .collect::<rusqlite::Result<_>>()?;
    for other in stale {
        enqueue_in(tx, &other, now_ms, now_ms, 0)?;
    }
    Ok(())
}

fn path_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_encoded_bytes()
}

fn path_from(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes))
}

/// The smallest byte string greater than every path below directory `dir`: `dir` followed
/// by the byte after `/`.
fn below_end(dir: &[u8]) -> Vec<u8> {
    let mut end = dir.to_vec();
    end.push(b'/' + 1);
    end
}

/// When to record a new version of `path`: now, but after every version and removal of the
/// path already recorded. Versions of one path are ordered by time, and a tie would leave
/// the newest to the random ids: a directory made and then given its mode within one
/// millisecond must come back with that mode.
fn next_version_ms(tx: &Connection, path: &[u8], now_ms: i64) -> rusqlite::Result<i64> {
    let last: Option<i64> = tx
        .prepare_cached(
            "SELECT MAX(t) FROM (
                SELECT MAX(backed_up_ms) AS t FROM catalog WHERE path = ?1
                UNION ALL SELECT MAX(removed_ms) FROM removals WHERE path = ?1)",
        )?
        .query_row(params![path], |r| r.get(0))?;
    Ok(last.map_or(now_ms, |t| now_ms.max(t + 1)))
}

/// A fresh version id: random and positive, so ids never collide across a lost or rebuilt
/// state directory.
fn new_version_id() -> i64 {
    (rand::random::<u64>() >> 1) as i64
}

/// Brings a database written by an older release up to the current schema.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    for (table, columns) in [
        ("catalog", &CATALOG_COLUMNS[..]),
        ("content", &CONTENT_COLUMNS[..]),
    ] {
        let existing: Vec<String> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for (name, definition) in columns {
            if !existing.iter().any(|c| c == name) {
                conn.execute_batch(&format!(
                    "ALTER TABLE {table} ADD COLUMN {name} {definition}"
                ))?;
            }
        }
    }
    conn.execute_batch(
        "UPDATE catalog SET mtime_ns = mtime * 1000000000 WHERE mtime_ns IS NULL;
         UPDATE catalog SET backed_up_ms = backed_up_at * 1000 WHERE backed_up_ms IS NULL;
         UPDATE catalog SET vid = id WHERE vid IS NULL;
         CREATE UNIQUE INDEX IF NOT EXISTS catalog_vid ON catalog(vid);
         CREATE INDEX IF NOT EXISTS catalog_unpublished ON catalog(published) WHERE published = 0;",
    )
}

fn catalog_row(r: &rusqlite::Row) -> rusqlite::Result<CatalogRow> {
    let sha: Vec<u8> = r.get(2)?;
    let mut sha256 = [0u8; 32];
    if sha.len() == 32 {
        sha256.copy_from_slice(&sha);
    }
    let object: String = r.get(3)?;
    Ok(CatalogRow {
        id: r.get(0)?,
        path: path_from(r.get(1)?),
        sha256,
        size: r.get::<_, i64>(4)? as u64,
        attrs: Attrs {
            mode: r.get(5)?,
            uid: r.get(6)?,
            gid: r.get(7)?,
            mtime_ns: r.get(8)?,
        },
        classification: r.get(9)?,
        backed_up_ms: r.get(10)?,
        route: match r.get::<_, Option<String>>(11)? {
            Some(prefix) => Route {
                prefix,
                storage_class: r.get(12)?,
            },
            None => Route::of_object(&object),
        },
        object,
    })
}

const CATALOG_ROW: &str =
    "vid, path, sha256, object, size, mode, uid, gid, mtime_ns, classification, \
     backed_up_ms, prefix, storage_class";

impl State {
    /// Opens (creating if needed) the state directory and its database.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let dir_err = |source| StateError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        // Paths and content hashes are nobody else's business.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(dir_err)?;
        let path = dir.join("index.sqlite3");
        let db_err = |source| StateError::Db {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        migrate(&conn).map_err(db_err)?;
        Ok(Self {
            path,
            conn: Mutex::new(conn),
        })
    }

    fn db_err(&self, source: rusqlite::Error) -> StateError {
        StateError::Db {
            path: self.path.clone(),
            source,
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` in one transaction.
    fn tx<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<T>,
    ) -> Result<T, StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.db_err(e))?;
        let out = f(&tx).map_err(|e| self.db_err(e))?;
        tx.commit().map_err(|e| self.db_err(e))?;
        Ok(out)
    }

    /// The object already holding this content, if any, and how that content was
    /// classified.
    pub fn object_for(&self, sha256: &[u8; 32]) -> Result<Option<Stored>, StateError> {
        self.conn()
            .query_row(
                "SELECT object, classification, storage_class FROM content WHERE sha256 = ?1",
                params![&sha256[..]],
                |row| {
                    Ok(Stored {
                        object: row.get(0)?,
                        classification: row.get(1)?,
                        storage_class: row.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.db_err(e))
    }

    /// The path a `hashes.json` import recorded for this content, if any.
    pub fn legacy_path(&self, sha256: &[u8; 32]) -> Result<Option<String>, StateError> {
        self.conn()
            .query_row(
                "SELECT path FROM legacy_hashes WHERE sha256 = ?1",
                params![&sha256[..]],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.db_err(e))
    }

    /// Queues `path`, or, if it is queued already, pushes it back by `settle_ms` (but never
    /// past `max_delay_ms` after it was first queued) and marks it as changed again.
    pub fn enqueue(
        &self,
        path: &Path,
        now_ms: i64,
        settle_ms: i64,
        max_delay_ms: i64,
    ) -> Result<(), StateError> {
        enqueue_in(
            &self.conn(),
            path_bytes(path),
            now_ms,
            now_ms + settle_ms,
            max_delay_ms,
        )
        .map_err(|e| self.db_err(e))
    }

    /// Queues many files in one transaction: each `(path, pushed_ms, not_before_ms)` as
    /// [`State::enqueue`] would.
    pub fn enqueue_all(
        &self,
        batch: &[(PathBuf, i64, i64)],
        max_delay_ms: i64,
    ) -> Result<(), StateError> {
        self.tx(|tx| {
            for (path, at_ms, not_before_ms) in batch {
                enqueue_in(tx, path_bytes(path), *at_ms, *not_before_ms, max_delay_ms)?;
            }
            Ok(())
        })
    }

    /// Moves queued jobs with a file or directory: `from` itself and everything below it.
    /// Returns whether any job moved. A job already queued under the new name absorbs the
    /// moved one.
    pub fn rename_jobs(&self, from: &Path, to: &Path) -> Result<bool, StateError> {
        let (from, to) = (path_bytes(from).to_vec(), path_bytes(to).to_vec());
        self.tx(|tx| {
            let mut moved = false;
            let rows: Vec<(i64, Vec<u8>)> = {
                let mut stmt = tx.prepare(
                    "SELECT id, path FROM jobs WHERE path = ?1 OR (path > ?2 AND path < ?3)",
                )?;
                let mut prefix = from.clone();
                prefix.push(b'/');
                let rows = stmt.query_map(params![from, prefix, below_end(&from)], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for (id, old) in rows {
                let mut new = to.clone();
                new.extend_from_slice(&old[from.len()..]);
                tx.execute(
                    "DELETE FROM jobs WHERE path = ?1 AND id != ?2",
                    params![new, id],
                )?;
                tx.execute(
                    "UPDATE jobs SET path = ?1, generation = generation + 1 WHERE id = ?2",
                    params![new, id],
                )?;
                moved = true;
            }
            Ok(moved)
        })
    }

    /// Pending jobs that are due, oldest first.
    pub fn due_jobs(&self, now_ms: i64, limit: usize) -> Result<Vec<JobRow>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, path, generation, attempts FROM jobs
                 WHERE state = 'pending' AND not_before_ms <= ?1
                 ORDER BY not_before_ms LIMIT ?2",
            )
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map(params![now_ms, limit as i64], |r| {
                Ok(JobRow {
                    id: r.get(0)?,
                    path: path_from(r.get(1)?),
                    generation: r.get(2)?,
                    attempts: r.get(3)?,
                })
            })
            .map_err(|e| self.db_err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.db_err(e))
    }

    /// When the next pending job becomes due, if any is pending.
    pub fn next_due_ms(&self) -> Result<Option<i64>, StateError> {
        self.conn()
            .query_row(
                "SELECT MIN(not_before_ms) FROM jobs WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.db_err(e))
    }

    /// Puts a job back to wait until `until_ms` (the file changed under the worker).
    pub fn defer(&self, id: i64, until_ms: i64) -> Result<(), StateError> {
        self.conn()
            .execute(
                "UPDATE jobs SET not_before_ms = MAX(not_before_ms, ?2), attempts = attempts + 1
                 WHERE id = ?1",
                params![id, until_ms],
            )
            .map(drop)
            .map_err(|e| self.db_err(e))
    }

    /// Marks a job failed, to wait for an operator, unless the file changed meanwhile (a
    /// newer version deserves its own try).
    pub fn fail(&self, job: &JobRow, error: &str) -> Result<(), StateError> {
        self.conn()
            .execute(
                "UPDATE jobs SET state = 'failed', last_error = ?3, attempts = attempts + 1
                 WHERE id = ?1 AND generation = ?2",
                params![job.id, job.generation, error],
            )
            .map(drop)
            .map_err(|e| self.db_err(e))
    }

    /// Records how a job ended and removes it from the queue, in one transaction. If the
    /// file was queued again while the worker ran, the job stays for the newer version.
    pub fn finish(&self, job: &JobRow, done: Finish<'_>) -> Result<(), StateError> {
        self.finish_if(job, done, &|| true).map(drop)
    }

    /// Like [`State::finish`], but the version is recorded only if `still_there()` says,
    /// inside the transaction, that the file still has its name. A removal of the path is
    /// recorded in a transaction of its own after the unlink, so either it sees this
    /// version and records the removal after it, or this sees the unlink and records no
    /// version: a file deleted while it was backed up never comes back. Returns false when
    /// the version was not recorded.
    pub fn finish_if(
        &self,
        job: &JobRow,
        mut done: Finish<'_>,
        still_there: &dyn Fn() -> bool,
    ) -> Result<bool, StateError> {
        let now_ms = crate::pipeline::queue::now_ms();
        let now = now_ms / 1000;
        self.tx(|tx| {
            let recorded = done.version.is_none() || still_there();
            if !recorded {
                done.version = None;
                done.seen = None;
            }
            if let Some((v, new_content)) = &done.version {
                if *new_content {
                    tx.execute(
                        "INSERT OR REPLACE INTO content (sha256, object, size, classification, stored_at,
                            storage_class)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![
                            &v.sha256[..],
                            v.object,
                            v.size as i64,
                            v.classification,
                            now,
                            v.route.storage_class
                        ],
                    )?;
                }
                tx.execute(
                    "INSERT INTO catalog (path, sha256, object, size, mtime, classification,
                        backed_up_at, mode, uid, gid, mtime_ns, backed_up_ms, vid, prefix,
                        storage_class)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                    params![
                        path_bytes(v.path),
                        &v.sha256[..],
                        v.object,
                        v.size as i64,
                        v.attrs.mtime_ns.div_euclid(1_000_000_000),
                        v.classification,
                        now,
                        v.attrs.mode,
                        v.attrs.uid,
                        v.attrs.gid,
                        v.attrs.mtime_ns,
                        now_ms,
                        new_version_id(),
                        v.route.prefix,
                        v.route.storage_class
                    ],
                )?;
            }
            match done.seen {
                Some((st, outcome)) => tx.execute(
                    "INSERT OR REPLACE INTO files (path, dev, ino, size, mtime_ns, ctime_ns, outcome, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![
                        path_bytes(&job.path),
                        st.dev as i64,
                        st.ino as i64,
                        st.size as i64,
                        st.mtime_ns,
                        st.ctime_ns,
                        outcome,
                        now
                    ],
                )?,
                None => tx.execute("DELETE FROM files WHERE path = ?1", params![path_bytes(&job.path)])?,
            };
            if let Some((st, _)) = done.seen {
                requeue_other_links(tx, &job.path, &st, now_ms)?;
            }
            tx.execute(
                "DELETE FROM jobs WHERE id = ?1 AND generation = ?2",
                params![job.id, job.generation],
            )?;
            Ok(recorded)
        })
    }

    /// Number of pending and failed jobs.
    pub fn job_counts(&self) -> Result<(u64, u64), StateError> {
        self.conn()
            .query_row(
                "SELECT COALESCE(SUM(state = 'pending'), 0), COALESCE(SUM(state = 'failed'), 0) FROM jobs",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(|e| self.db_err(e))
    }

    pub fn list_jobs(&self) -> Result<Vec<JobInfo>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT path, state, attempts, last_error, queued_at_ms FROM jobs ORDER BY id")
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(JobInfo {
                    path: path_from(r.get(0)?).to_string_lossy().into_owned(),
                    state: r.get(1)?,
                    attempts: r.get(2)?,
                    last_error: r.get(3)?,
                    queued_at_ms: r.get(4)?,
                })
            })
            .map_err(|e| self.db_err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.db_err(e))
    }

    /// Makes failed jobs pending again: all of them, or those for `paths`. Returns how many.
    pub fn retry_failed(&self, paths: &[PathBuf], now_ms: i64) -> Result<usize, StateError> {
        self.tx(|tx| {
            if paths.is_empty() {
                return tx.execute(
                    "UPDATE jobs SET state = 'pending', not_before_ms = ?1 WHERE state = 'failed'",
                    params![now_ms],
                );
            }
            let mut n = 0;
            for p in paths {
                n += tx.execute(
                    "UPDATE jobs SET state = 'pending', not_before_ms = ?2
                     WHERE state = 'failed' AND path = ?1",
                    params![path_bytes(p), now_ms],
                )?;
            }
            Ok(n)
        })
    }

    /// The newest version of a file in the catalog: (path, object, backup time in seconds).
    pub fn last_backup(&self) -> Result<Option<(String, String, i64)>, StateError> {
        self.conn()
            .query_row(
                "SELECT path, object, backed_up_at FROM catalog WHERE object != ''
                 ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    let path: Vec<u8> = r.get(0)?;
                    Ok((
                        path_from(path).to_string_lossy().into_owned(),
                        r.get(1)?,
                        r.get(2)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.db_err(e))
    }

    /// Paths with a job, pending or failed.
    pub fn job_paths(&self) -> Result<std::collections::HashSet<PathBuf>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT path FROM jobs")
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map([], |r| Ok(path_from(r.get(0)?)))
            .map_err(|e| self.db_err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.db_err(e))
    }

    /// Every path the pipeline finished with, and the file as it was then.
    pub fn seen_files(&self) -> Result<HashMap<PathBuf, FileStat>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT path, dev, ino, size, mtime_ns, ctime_ns FROM files")
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    path_from(r.get(0)?),
                    FileStat {
                        dev: r.get::<_, i64>(1)? as u64,
                        ino: r.get::<_, i64>(2)? as u64,
                        size: r.get::<_, i64>(3)? as u64,
                        mtime_ns: r.get(4)?,
                        ctime_ns: r.get(5)?,
                    },
                ))
            })
            .map_err(|e| self.db_err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.db_err(e))
    }

    /// Newest backed-up version of each content: (sha256, path, backup time in seconds).
    pub fn export_hashes(&self) -> Result<Vec<([u8; 32], String, i64)>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT sha256, path, MAX(backed_up_at) FROM catalog WHERE object != ''
                 GROUP BY sha256 ORDER BY sha256",
            )
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let sha: Vec<u8> = r.get(0)?;
                let mut digest = [0u8; 32];
                if sha.len() == 32 {
                    digest.copy_from_slice(&sha);
                }
                Ok((
                    digest,
                    path_from(r.get(1)?).to_string_lossy().into_owned(),
                    r.get(2)?,
                ))
            })
            .map_err(|e| self.db_err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.db_err(e))
    }

    /// Records hashes from a `hashes.json` as already backed up. Returns how many were new.
    pub fn import_hashes(
        &self,
        entries: &[([u8; 32], String, String)],
    ) -> Result<usize, StateError> {
        self.tx(|tx| {
            let mut n = 0;
            for (sha, path, time) in entries {
                n += tx.execute(
                    "INSERT OR IGNORE INTO legacy_hashes (sha256, path, time) VALUES (?1, ?2, ?3)",
                    params![&sha[..], path, time],
                )?;
            }
            Ok(n)
        })
    }

    /// Catalog rows not yet written to the destination, oldest first.
    pub fn unpublished(&self, limit: usize) -> Result<Vec<CatalogRow>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {CATALOG_ROW} FROM catalog WHERE published = 0 ORDER BY id LIMIT ?1"
            ))
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map(params![limit as i64], catalog_row)
            .map_err(|e| self.db_err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.db_err(e))
    }

    /// Records that `path` is gone from the source, and so is everything below it if it was
    /// a directory: each path under it that has a version, of a file or a directory (and is
    /// not recorded as removed since), gets a removal. Returns those paths.
    ///
    /// With `moved_to` (a rename), each of those paths also gets a version under its new
    /// name at once: the same object and attributes as its newest version, since a rename
    /// changes neither. Directories move with their files this way. Queued work for the new
    /// names still runs as usual.
    pub fn record_removal(
        &self,
        path: &Path,
        moved_to: Option<&Path>,
        now_ms: i64,
    ) -> Result<Vec<PathBuf>, StateError> {
        let from = path_bytes(path).to_vec();
        let mut below = from.clone();
        below.push(b'/');
        self.tx(|tx| {
            // Each live path, with its newest version's time.
            let live: Vec<(Vec<u8>, i64)> = {
                let mut stmt = tx.prepare(
                    "SELECT c.path, MAX(c.backed_up_ms) FROM catalog c
                     WHERE (c.path = ?1 OR (c.path > ?2 AND c.path < ?3))
                     GROUP BY c.path
                     HAVING MAX(c.backed_up_ms) > COALESCE(
                        (SELECT MAX(r.removed_ms) FROM removals r WHERE r.path = c.path), -1)",
                )?;
                let rows = stmt.query_map(params![from, below, below_end(&from)], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for (p, newest_ms) in &live {
                // Never before the version it ends (recorded a moment ahead, maybe).
                tx.execute(
                    "INSERT INTO removals (vid, path, removed_ms) VALUES (?1, ?2, ?3)",
                    params![new_version_id(), p, now_ms.max(*newest_ms)],
                )?;
                let Some(to) = moved_to else { continue };
                let mut new = path_bytes(to).to_vec();
                new.extend_from_slice(&p[from.len()..]);
                let at = next_version_ms(tx, &new, now_ms)?;
                tx.execute(
                    "INSERT INTO catalog (path, sha256, object, size, mtime, classification,
                        backed_up_at, mode, uid, gid, mtime_ns, backed_up_ms, vid, prefix,
                        storage_class)
                     SELECT ?2, sha256, object, size, mtime, classification, ?3, mode, uid, gid,
                        mtime_ns, ?4, ?5, prefix, storage_class
                     FROM catalog WHERE path = ?1 ORDER BY backed_up_ms DESC, id DESC LIMIT 1",
                    params![p, new, at.div_euclid(1000), at, new_version_id()],
                )?;
                tx.execute(
                    "UPDATE OR REPLACE files SET path = ?2 WHERE path = ?1",
                    params![p, new],
                )?;
            }
            tx.execute(
                "DELETE FROM files WHERE path = ?1 OR (path > ?2 AND path < ?3)",
                params![from, below, below_end(&from)],
            )?;
            Ok(live.into_iter().map(|(p, _)| path_from(p)).collect())
        })
    }

    /// Records a version of directory `path` (`attrs` from [`Attrs::of_dir`]), unless the
    /// catalog has it already: its newest row there is a directory with the same mode and
    /// owner, not removed since. Returns whether a row was added. Cheap when nothing
    /// changed: two indexed lookups and no write.
    pub fn record_dir(&self, path: &Path, attrs: Attrs, now_ms: i64) -> Result<bool, StateError> {
        debug_assert!(attrs.is_dir(), "record_dir wants Attrs::of_dir");
        let p = path_bytes(path);
        self.tx(|tx| {
            let newest: Option<(u32, u32, u32, i64)> = tx
                .prepare_cached(
                    "SELECT mode, uid, gid, backed_up_ms FROM catalog WHERE path = ?1
                     ORDER BY backed_up_ms DESC, id DESC LIMIT 1",
                )?
                .query_row(params![p], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            let removed_ms: Option<i64> = tx
                .prepare_cached("SELECT MAX(removed_ms) FROM removals WHERE path = ?1")?
                .query_row(params![p], |r| r.get(0))?;
            if let Some((mode, uid, gid, at)) = newest {
                let same = (mode, uid, gid) == (attrs.mode, attrs.uid, attrs.gid);
                if same && removed_ms.is_none_or(|r| r < at) {
                    return Ok(false);
                }
            }
            let at = next_version_ms(tx, p, now_ms)?;
            tx.prepare_cached(
                "INSERT INTO catalog (path, sha256, object, size, mtime, classification,
                    backed_up_at, mode, uid, gid, mtime_ns, backed_up_ms, vid)
                 VALUES (?1, ?2, '', 0, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                p,
                &[0u8; 32][..],
                attrs.mtime_ns.div_euclid(1_000_000_000),
                DIR_CLASS,
                at.div_euclid(1000),
                attrs.mode,
                attrs.uid,
                attrs.gid,
                attrs.mtime_ns,
                at,
                new_version_id()
            ])?;
            Ok(true)
        })
    }

    /// Removals not yet written to the destination.
    pub fn unpublished_removals(&self, limit: usize) -> Result<Vec<Removal>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT vid, path, removed_ms FROM removals WHERE published = 0 ORDER BY id LIMIT ?1",
            )
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok(Removal {
                    id: r.get(0)?,
                    path: path_from(r.get(1)?),
                    removed_ms: r.get(2)?,
                })
            })
            .map_err(|e| self.db_err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.db_err(e))
    }

    /// Marks catalog rows (by version id) as written to the destination.
    pub fn mark_published(&self, ids: &[i64]) -> Result<(), StateError> {
        self.tx(|tx| {
            let mut stmt = tx.prepare_cached("UPDATE catalog SET published = 1 WHERE vid = ?1")?;
            let mut removals =
                tx.prepare_cached("UPDATE removals SET published = 1 WHERE vid = ?1")?;
            for id in ids {
                if stmt.execute(params![id])? == 0 {
                    removals.execute(params![id])?;
                }
            }
            Ok(())
        })
    }

    /// Drops an unpublished version whose object turned out to be gone, and queues its
    /// path again so the file is backed up anew.
    pub fn withdraw(&self, row: &CatalogRow, now_ms: i64) -> Result<(), StateError> {
        self.tx(|tx| {
            tx.execute("DELETE FROM catalog WHERE vid = ?1", params![row.id])?;
            tx.execute("DELETE FROM content WHERE object = ?1", params![row.object])?;
            tx.execute(
                "DELETE FROM files WHERE path = ?1",
                params![path_bytes(&row.path)],
            )?;
            tx.execute(
                "INSERT INTO jobs (path, queued_at_ms, not_before_ms) VALUES (?1, ?2, ?2)
                 ON CONFLICT(path) DO UPDATE SET generation = generation + 1, state = 'pending'",
                params![path_bytes(&row.path), now_ms],
            )?;
            Ok(())
        })
    }

    /// Forgets that these objects hold content, so that the next file with that content
    /// is stored anew rather than pointed at an object a prune may remove.
    pub fn forget_objects(&self, objects: &[String]) -> Result<usize, StateError> {
        self.tx(|tx| {
            let mut stmt = tx.prepare_cached("DELETE FROM content WHERE object = ?1")?;
            let mut n = 0;
            for object in objects {
                n += stmt.execute(params![object])?;
            }
            Ok(n)
        })
    }

    /// Replaces the local catalog and content index with `rows` (read back from the
    /// destination), all marked as published. Returns the number of contents indexed.
    pub fn rebuild_catalog(
        &self,
        rows: &[CatalogRow],
        removals: &[Removal],
    ) -> Result<usize, StateError> {
        self.tx(|tx| {
            tx.execute_batch(
                "DELETE FROM catalog; DELETE FROM content; DELETE FROM files; DELETE FROM removals;",
            )?;
            for r in removals {
                tx.execute(
                    "INSERT INTO removals (vid, path, removed_ms, published) VALUES (?1, ?2, ?3, 1)",
                    params![r.id, path_bytes(&r.path), r.removed_ms],
                )?;
            }
            let mut version = tx.prepare(&format!(
                "INSERT INTO catalog ({CATALOG_ROW}, mtime, backed_up_at, published)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, 1)"
            ))?;
            let mut content = tx.prepare(
                "INSERT OR REPLACE INTO content (sha256, object, size, classification, stored_at,
                    storage_class)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for r in rows {
                version.execute(params![
                    r.id,
                    path_bytes(&r.path),
                    &r.sha256[..],
                    r.object,
                    r.size as i64,
                    r.attrs.mode,
                    r.attrs.uid,
                    r.attrs.gid,
                    r.attrs.mtime_ns,
                    r.classification,
                    r.backed_up_ms,
                    (!r.is_dir()).then_some(&r.route.prefix),
                    r.route.storage_class,
                    r.attrs.mtime_ns.div_euclid(1_000_000_000),
                    r.backed_up_ms.div_euclid(1000)
                ])?;
                if r.is_dir() {
                    continue;
                }
                content.execute(params![
                    &r.sha256[..],
                    r.object,
                    r.size as i64,
                    r.classification,
                    r.backed_up_ms.div_euclid(1000),
                    r.route.storage_class
                ])?;
            }
            tx.query_row("SELECT COUNT(*) FROM content", [], |r| r.get::<_, i64>(0))
                .map(|n| n as usize)
        })
    }

    /// Number of distinct contents stored; for tests and status.
    pub fn content_count(&self) -> Result<u64, StateError> {
        self.conn()
            .query_row("SELECT COUNT(*) FROM content", [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(|e| self.db_err(e))
    }
}

#[cfg(test)]
mod tests;
