//! The catalog in the destination: sealed files of JSON lines, one line per record.
//!
//! A batch holds `version` records for files, `dir` records for directories and `removed`
//! records (and, from a prune, `drop` records naming versions to forget). A snapshot starts
//! with a `covers` record listing the batches merged into it, followed by every live record.
//! Reading takes the newest snapshot plus every batch it does not cover; compaction writes a
//! new snapshot and deletes what it covers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::{now_ms, Repo};
use crate::pipeline::upload::get_bytes;
use crate::pipeline::upload::UploadError;
use crate::state::{Attrs, CatalogRow, Removal, Route};

/// One line of a catalog file, as written.
#[derive(Debug, serde::Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Line {
    Version(Record),
    Dir(DirRecord),
    Removed(RemovedRecord),
    Drop { id: i64 },
    Covers { batches: Vec<String> },
}

/// A removal as it is written.
#[derive(Debug, serde::Serialize)]
struct RemovedRecord {
    id: i64,
    #[serde(flatten)]
    path: PathText,
    removed_ms: i64,
}

/// A path as text when it is UTF-8, else as hex.
#[derive(Debug, serde::Serialize)]
struct PathText {
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_hex: Option<String>,
}

impl PathText {
    fn of(path: &Path) -> Self {
        match path.to_str() {
            Some(text) => Self {
                path: Some(text.to_string()),
                path_hex: None,
            },
            None => Self {
                path: None,
                path_hex: Some(hex::encode(path.as_os_str().as_bytes())),
            },
        }
    }
}

#[derive(Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    Version,
    Dir,
    Removed,
    Drop,
    Covers,
}

/// One line of a catalog file, as read: the fields of every kind in one flat struct, which
/// parses several times faster than a tagged enum (serde buffers those).
#[derive(Debug, serde::Deserialize)]
struct ReadLine {
    #[serde(rename = "type")]
    kind: Kind,
    id: Option<i64>,
    path: Option<String>,
    path_hex: Option<String>,
    object: Option<String>,
    size: Option<u64>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    mtime_ns: Option<i64>,
    sha256: Option<String>,
    class: Option<String>,
    route: Option<Route>,
    backed_up_ms: Option<i64>,
    removed_ms: Option<i64>,
    batches: Option<Vec<String>>,
}

/// A version as it is written: the path as text when it is UTF-8, else as hex.
#[derive(Debug, serde::Serialize)]
struct Record {
    id: i64,
    #[serde(flatten)]
    path: PathText,
    object: String,
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i64,
    /// The same time as RFC 3339 with nanoseconds, for tools (`touch -d`, jq 1.6) that
    /// cannot hold a 19-digit integer exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    mtime: Option<String>,
    sha256: String,
    class: String,
    /// Where the content object went: its prefix and storage class.
    route: Route,
    backed_up_ms: i64,
}

/// A directory's version as it is written: attributes only, with the full `st_mode`
/// (file-type bits included).
#[derive(Debug, serde::Serialize)]
struct DirRecord {
    id: i64,
    #[serde(flatten)]
    path: PathText,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtime: Option<String>,
    backed_up_ms: i64,
}

/// `mtime_ns` as RFC 3339 text, for times from 1970 on.
fn mtime_text(mtime_ns: i64) -> Option<String> {
    u64::try_from(mtime_ns).ok().map(|ns| {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
        humantime::format_rfc3339_nanos(t).to_string()
    })
}

/// The line a catalog row is written as: `dir` for a directory, else `version`.
fn row_line(row: &CatalogRow) -> Line {
    if row.is_dir() {
        return Line::Dir(DirRecord {
            id: row.id,
            path: PathText::of(&row.path),
            mode: row.attrs.mode,
            uid: row.attrs.uid,
            gid: row.attrs.gid,
            mtime_ns: row.attrs.mtime_ns,
            mtime: mtime_text(row.attrs.mtime_ns),
            backed_up_ms: row.backed_up_ms,
        });
    }
    Line::Version(Record {
        id: row.id,
        path: PathText::of(&row.path),
        object: row.object.clone(),
        size: row.size,
        mode: row.attrs.mode,
        uid: row.attrs.uid,
        gid: row.attrs.gid,
        mtime_ns: row.attrs.mtime_ns,
        mtime: mtime_text(row.attrs.mtime_ns),
        sha256: hex::encode(row.sha256),
        class: row.classification.clone(),
        route: row.route.clone(),
        backed_up_ms: row.backed_up_ms,
    })
}

impl ReadLine {
    fn path(&mut self, id: i64) -> Result<PathBuf, String> {
        match (self.path.take(), self.path_hex.take()) {
            (Some(text), _) => Ok(PathBuf::from(text)),
            (None, Some(h)) => Ok(PathBuf::from(OsString::from_vec(
                hex::decode(&h).map_err(|_| format!("record {id}: bad path_hex"))?,
            ))),
            (None, None) => Err(format!("record {id}: no path")),
        }
    }

    /// The removal a `removed` line describes.
    fn into_removal(mut self) -> Result<Removal, String> {
        let id = self.id.ok_or("a removal without an id")?;
        Ok(Removal {
            id,
            path: self.path(id)?,
            removed_ms: self
                .removed_ms
                .ok_or_else(|| format!("removal {id}: no removed_ms"))?,
        })
    }

    /// The directory a `dir` line describes; every field is required, and the mode must
    /// be a directory's.
    fn into_dir_row(mut self) -> Result<CatalogRow, String> {
        let id = self.id.ok_or("a directory without an id")?;
        let missing = |field: &str| format!("directory {id}: no {field}");
        let path = self.path(id)?;
        let attrs = Attrs {
            mode: self.mode.ok_or_else(|| missing("mode"))?,
            uid: self.uid.ok_or_else(|| missing("uid"))?,
            gid: self.gid.ok_or_else(|| missing("gid"))?,
            mtime_ns: self.mtime_ns.ok_or_else(|| missing("mtime_ns"))?,
        };
        if !attrs.is_dir() {
            return Err(format!(
                "directory {id}: mode {:o} is not a directory's",
                attrs.mode
            ));
        }
        let backed_up_ms = self.backed_up_ms.ok_or_else(|| missing("backed_up_ms"))?;
        Ok(CatalogRow::dir(id, path, attrs, backed_up_ms))
    }

    /// The version a `version` line describes; every field is required.
    fn into_row(mut self) -> Result<CatalogRow, String> {
        let id = self.id.ok_or("a version without an id")?;
        let missing = |field: &str| format!("version {id}: no {field}");
        if self.mode.is_some_and(|m| m & !0o7777 != 0) {
            // Only `dir` lines carry file-type bits; a version with them would be taken
            // for a directory and its content never fetched.
            return Err(format!(
                "version {id}: mode holds more than permission bits"
            ));
        }
        let path = self.path(id)?;
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(self.sha256.ok_or_else(|| missing("sha256"))?, &mut sha256)
            .map_err(|_| format!("version {id}: bad sha256"))?;
        let object = self.object.ok_or_else(|| missing("object"))?;
        Ok(CatalogRow {
            id,
            path,
            sha256,
            // A version written before routing: its object's key shows its prefix.
            route: self.route.unwrap_or_else(|| Route::of_object(&object)),
            object,
            size: self.size.ok_or_else(|| missing("size"))?,
            attrs: Attrs {
                mode: self.mode.ok_or_else(|| missing("mode"))?,
                uid: self.uid.ok_or_else(|| missing("uid"))?,
                gid: self.gid.ok_or_else(|| missing("gid"))?,
                mtime_ns: self.mtime_ns.ok_or_else(|| missing("mtime_ns"))?,
            },
            classification: self.class.ok_or_else(|| missing("class"))?,
            backed_up_ms: self.backed_up_ms.ok_or_else(|| missing("backed_up_ms"))?,
        })
    }
}

fn to_line(line: &Line) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(line).expect("catalog records serialise");
    bytes.push(b'\n');
    bytes
}

/// A catalog file name: kind, time, and a random part so two writers never collide.
fn file_name(dir: &str, kind: &str) -> String {
    format!(
        "{dir}{kind}-{:013}-{:08x}.pgp",
        now_ms(),
        rand::random::<u32>()
    )
}

fn removed_line(r: &Removal) -> Line {
    Line::Removed(RemovedRecord {
        id: r.id,
        path: PathText::of(&r.path),
        removed_ms: r.removed_ms,
    })
}

/// Writes `rows` and `removals` as a new batch; returns its key.
pub fn write_batch(
    repo: &Repo,
    rows: &[CatalogRow],
    removals: &[Removal],
) -> Result<String, UploadError> {
    let mut plain = Vec::new();
    for row in rows {
        plain.extend(to_line(&row_line(row)));
    }
    for r in removals {
        plain.extend(to_line(&removed_line(r)));
    }
    let key = file_name(&repo.layout.catalog_dir(), "batch");
    repo.put_sealed(&key, &plain)?;
    Ok(key)
}

/// Writes a batch that forgets the versions `ids`; returns its key.
pub fn write_drops(repo: &Repo, ids: &[i64]) -> Result<String, UploadError> {
    let mut plain = Vec::new();
    for &id in ids {
        plain.extend(to_line(&Line::Drop { id }));
    }
    let key = file_name(&repo.layout.catalog_dir(), "batch");
    repo.put_sealed(&key, &plain)?;
    Ok(key)
}

/// One host's catalog as read from the destination.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Every live version, of files and directories ([`CatalogRow::is_dir`]), by id.
    pub versions: BTreeMap<i64, CatalogRow>,
    /// Every recorded removal, by id.
    pub removals: BTreeMap<i64, Removal>,
    /// The snapshot read, if any.
    pub snapshot: Option<String>,
    /// Every batch that is now merged into `versions`: those the snapshot covers that still
    /// exist, and those read.
    pub merged: Vec<String>,
    /// Catalog files that did not decrypt or parse, with why; their versions are missing.
    pub damaged: Vec<(String, String)>,
}

/// Passes each complete line written into it to `f`.
struct Lines<F: FnMut(&[u8]) -> Result<(), String>> {
    partial: Vec<u8>,
    f: F,
}

impl<F: FnMut(&[u8]) -> Result<(), String>> Write for Lines<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.partial.extend_from_slice(buf);
        let mut start = 0;
        while let Some(n) = memchr::memchr(b'\n', &self.partial[start..]) {
            (self.f)(&self.partial[start..start + n]).map_err(io::Error::other)?;
            start += n + 1;
        }
        self.partial.drain(..start);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Catalog {
    /// Reads this host's catalog.
    pub fn load(repo: &Repo) -> anyhow::Result<Self> {
        Self::load_dir(repo, &repo.layout.catalog_dir())
    }

    /// Reads the catalog kept under `dir` (some host's `PREFIX/catalog/`).
    pub fn load_dir(repo: &Repo, dir: &str) -> anyhow::Result<Self> {
        // A compaction running elsewhere may delete a batch between listing and reading;
        // the next listing then finds the snapshot that replaced it.
        let mut tries = 0;
        loop {
            match Self::try_load(repo, dir) {
                Err(e)
                    if tries < 5
                        && e.downcast_ref::<UploadError>()
                            .is_some_and(|e| matches!(e, UploadError::Missing(_))) =>
                {
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    fn try_load(repo: &Repo, dir: &str) -> anyhow::Result<Self> {
        let listed = repo.dest.list(dir)?;
        let name = |key: &str| key.rsplit('/').next().unwrap_or(key).to_string();
        let snapshot = listed
            .iter()
            .filter(|l| name(&l.key).starts_with("snapshot-"))
            .map(|l| l.key.clone())
            .next_back();
        let mut catalog = Catalog::default();
        let mut drops = HashSet::new();
        let mut covered = HashSet::new();
        if let Some(key) = &snapshot {
            catalog.read(repo, key, &mut drops, Some(&mut covered))?;
        }
        for l in &listed {
            if !name(&l.key).starts_with("batch-") {
                continue;
            }
            if !covered.contains(&name(&l.key)) {
                catalog.read(repo, &l.key, &mut drops, None)?;
            }
            catalog.merged.push(l.key.clone());
        }
        catalog.versions.retain(|id, _| !drops.contains(id));
        catalog.removals.retain(|id, _| !drops.contains(id));
        catalog.snapshot = snapshot;
        Ok(catalog)
    }

    /// Reads one catalog file. Its records count only once the whole file has decrypted
    /// and parsed (OpenPGP releases plaintext before the integrity check at the end); a
    /// file that does not is listed in `damaged` and the rest of the catalog still reads.
    /// Failing to fetch it is an error.
    fn read(
        &mut self,
        repo: &Repo,
        key: &str,
        drops: &mut HashSet<i64>,
        covered: Option<&mut HashSet<String>>,
    ) -> anyhow::Result<()> {
        let sealed = get_bytes(&*repo.dest, key)?;
        let mut rows = Vec::new();
        let mut removals = Vec::new();
        let mut dropped = Vec::new();
        let mut covers = Vec::new();
        let mut lines = Lines {
            partial: Vec::new(),
            f: |line: &[u8]| {
                if line.is_empty() {
                    return Ok(());
                }
                let parsed: ReadLine = serde_json::from_slice(line).map_err(|e| e.to_string())?;
                match parsed.kind {
                    Kind::Version => rows.push(parsed.into_row()?),
                    Kind::Dir => rows.push(parsed.into_dir_row()?),
                    Kind::Removed => removals.push(parsed.into_removal()?),
                    Kind::Drop => dropped.push(parsed.id.ok_or("a drop without an id")?),
                    Kind::Covers => covers.extend(parsed.batches.unwrap_or_default()),
                }
                Ok(())
            },
        };
        let opened = repo.sealer.open(&sealed[..], &mut lines);
        if let Err(e) = opened {
            self.damaged.push((key.to_string(), e.to_string()));
            return Ok(());
        }
        for row in rows {
            self.versions.insert(row.id, row);
        }
        for r in removals {
            self.removals.insert(r.id, r);
        }
        drops.extend(dropped);
        if let Some(c) = covered {
            c.extend(covers);
        }
        Ok(())
    }

    /// Writes everything read as one snapshot, then deletes the files it replaces. Refuses
    /// while any file is damaged: merging would delete it, and with it any chance to
    /// recover its records.
    pub fn compact(&self, repo: &Repo) -> anyhow::Result<String> {
        if let Some((key, why)) = self.damaged.first() {
            anyhow::bail!("not compacting: catalog file {key} cannot be read ({why})");
        }
        let names: Vec<String> = self
            .merged
            .iter()
            .map(|k| k.rsplit('/').next().unwrap_or(k).to_string())
            .collect();
        let mut plain = to_line(&Line::Covers { batches: names });
        for row in self.versions.values() {
            plain.extend(to_line(&row_line(row)));
        }
        for r in self.removals.values() {
            plain.extend(to_line(&removed_line(r)));
        }
        let key = file_name(&repo.layout.catalog_dir(), "snapshot");
        repo.put_sealed(&key, &plain)?;
        for old in self.merged.iter().chain(&self.snapshot) {
            repo.dest.delete(old)?;
        }
        Ok(key)
    }

    /// The newest version of each path at or before `at_ms`, ordered by the path's bytes:
    /// files and directories.
    pub fn at(&self, at_ms: i64) -> Vec<&CatalogRow> {
        // Keyed by bytes: comparing `Path`s component by component is many times slower,
        // and this runs over every version.
        let mut newest: HashMap<&[u8], &CatalogRow> = HashMap::new();
        for row in self.versions.values() {
            if row.backed_up_ms > at_ms {
                continue;
            }
            let key = row.path.as_os_str().as_bytes();
            let newer = newest
                .get(key)
                .is_none_or(|have| (row.backed_up_ms, row.id) > (have.backed_up_ms, have.id));
            if newer {
                newest.insert(key, row);
            }
        }
        // A path removed after its newest version (and by `at_ms`) is not there at `at_ms`.
        for r in self.removals.values() {
            if r.removed_ms > at_ms {
                continue;
            }
            let key = r.path.as_os_str().as_bytes();
            if newest
                .get(key)
                .is_some_and(|v| v.backed_up_ms <= r.removed_ms)
            {
                newest.remove(key);
            }
        }
        let mut out: Vec<&CatalogRow> = newest.into_values().collect();
        out.sort_unstable_by(|a, b| {
            a.path
                .as_os_str()
                .as_bytes()
                .cmp(b.path.as_os_str().as_bytes())
        });
        out
    }

    /// When `path` was removed, oldest first.
    pub fn removals_of(&self, path: &Path) -> Vec<i64> {
        let mut out: Vec<i64> = self
            .removals
            .values()
            .filter(|r| r.path == path)
            .map(|r| r.removed_ms)
            .collect();
        out.sort_unstable();
        out
    }

    /// Every version of `path`, oldest first.
    pub fn history(&self, path: &Path) -> Vec<&CatalogRow> {
        let mut out: Vec<_> = self.versions.values().filter(|r| r.path == path).collect();
        out.sort_by_key(|r| (r.backed_up_ms, r.id));
        out
    }
}

/// A path as given on the command line, relative to the mount: `/`, `` and `.` mean all.
/// `..` is refused rather than guessed at.
pub fn normalize(arg: &Path) -> anyhow::Result<PathBuf> {
    if arg
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        anyhow::bail!(
            "{}: `..` is not allowed in a path inside the mount",
            arg.display()
        );
    }
    Ok(arg
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect())
}

/// Whether `path` is `selector` or lies below it.
pub fn selected(path: &Path, selector: &Path) -> bool {
    selector.as_os_str().is_empty() || path.starts_with(selector)
}

#[cfg(test)]
mod tests;
