//! The durable state under `state.dir`: the content index that dedup consults and the
//! catalog of which path was backed up as which object.
//!
//! SQLite in WAL mode: one file, crash-safe transactions, and inspectable with the stock
//! `sqlite3` shell when an operator needs to look.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

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
}

/// What one backed-up version of a file was stored as.
#[derive(Debug, Clone)]
pub struct Version<'a> {
    pub path: &'a Path,
    pub sha256: &'a [u8; 32],
    pub object: &'a str,
    pub size: u64,
    pub mtime: i64,
    pub classification: &'a str,
}

/// Content already in the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub object: String,
    pub classification: String,
}

pub struct State {
    path: PathBuf,
    conn: Mutex<Connection>,
}

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
";

impl State {
    /// Opens (creating if needed) the state directory and its database.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let dir_err = |source| StateError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(dir_err)?;
        let path = dir.join("index.sqlite3");
        let db_err = |source| StateError::Db {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
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

    /// The object already holding this content, if any, and how that content was
    /// classified.
    pub fn object_for(&self, sha256: &[u8; 32]) -> Result<Option<Stored>, StateError> {
        self.conn()
            .query_row(
                "SELECT object, classification FROM content WHERE sha256 = ?1",
                params![&sha256[..]],
                |row| {
                    Ok(Stored {
                        object: row.get(0)?,
                        classification: row.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.db_err(e))
    }

    /// Records a version; with `new_content`, also records that its object now exists.
    /// Both land in one transaction, so the index never names an object the catalog lacks.
    pub fn record(&self, v: &Version<'_>, new_content: bool) -> Result<(), StateError> {
        let now = crate::unix_now();
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.db_err(e))?;
        if new_content {
            tx.execute(
                "INSERT OR REPLACE INTO content (sha256, object, size, classification, stored_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    &v.sha256[..],
                    v.object,
                    v.size as i64,
                    v.classification,
                    now
                ],
            )
            .map_err(|e| self.db_err(e))?;
        }
        tx.execute(
            "INSERT INTO catalog (path, sha256, object, size, mtime, classification, backed_up_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                v.path.as_os_str().as_encoded_bytes(),
                &v.sha256[..],
                v.object,
                v.size as i64,
                v.mtime,
                v.classification,
                now
            ],
        )
        .map_err(|e| self.db_err(e))?;
        tx.commit().map_err(|e| self.db_err(e))
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
mod tests {
    use super::*;

    #[test]
    fn index_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let sha = [7u8; 32];
        let version = Version {
            path: Path::new("a/b.txt"),
            sha256: &sha,
            object: "host/data/ab/cd",
            size: 3,
            mtime: 1,
            classification: "general",
        };
        {
            let state = State::open(dir.path()).unwrap();
            assert_eq!(state.object_for(&sha).unwrap(), None);
            state.record(&version, true).unwrap();
        }
        let state = State::open(dir.path()).unwrap();
        let stored = state.object_for(&sha).unwrap().unwrap();
        assert_eq!(stored.object, "host/data/ab/cd");
        assert_eq!(stored.classification, "general");
        assert_eq!(state.content_count().unwrap(), 1);
    }

    #[test]
    fn unwritable_dir_names_the_path() {
        let err = State::open(Path::new("/proc/backupfs-no-such"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/proc/backupfs-no-such"), "{err}");
    }
}
