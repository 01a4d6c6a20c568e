//! The repository: what the destination holds besides content objects, and the commands
//! that read it back.
//!
//! ```text
//! SHARED/data/XX/NAME                 content, one object per distinct content
//! ROUTE/data/XX/NAME                  content of a class routed elsewhere (class.CLASS.prefix)
//! SHARED/hosts/p-HEX.json             each host's marker (plain JSON, no file names)
//! SHARED/prune/condemned.json         objects a running prune is about to delete
//! PREFIX/catalog/batch-MS-RAND.pgp    new catalog records, written every flush interval
//! PREFIX/catalog/snapshot-MS-RAND.pgp the catalog merged, written by compaction
//! ```
//!
//! SHARED is `destination.shared-prefix` (by default the host's own `destination.prefix`),
//! PREFIX is `destination.prefix`. Catalog files are sealed like content (zstd, then
//! OpenPGP with the passphrase) and hold JSON lines; docs/FORMAT.md describes them.

pub mod catalog;
pub mod prune;
pub mod publish;
pub mod restore;
pub mod verify;

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use anyhow::Context;

use crate::config::{join_url, Settings};
use crate::pipeline::gate2::Gate2;
use crate::pipeline::seal::Sealer;
use crate::pipeline::upload::{self, get_bytes, Destination, UploadError};

/// Object keys of one repository, as seen from one host.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Where content, host markers and the prune list live.
    pub shared: String,
    /// This host's prefix; its catalog lives below it.
    pub host: String,
    /// The classes' own content prefixes (`class.CLASS.prefix`), besides `shared`.
    pub routes: Vec<String>,
}

impl Layout {
    pub fn new(shared: &str, host: &str) -> Self {
        Self {
            shared: shared.trim_matches('/').to_string(),
            host: host.trim_matches('/').to_string(),
            routes: Vec::new(),
        }
    }

    /// With the classes' own content prefixes.
    pub fn with_routes(mut self, routes: &[String]) -> Self {
        self.routes = routes
            .iter()
            .map(|r| r.trim_matches('/').to_string())
            .collect();
        self
    }

    /// The same repository, seen from another host's prefix.
    pub fn for_host(&self, host: &str) -> Self {
        Self::new(&self.shared, host)
    }

    /// Directories end in `/`, so that they can be listed as prefixes.
    pub fn catalog_dir(&self) -> String {
        join_url(&self.host, "catalog") + "/"
    }

    pub fn data_dir(&self) -> String {
        Self::data_dir_of(&self.shared)
    }

    /// The `data/` directory of content prefix `prefix`.
    pub fn data_dir_of(prefix: &str) -> String {
        join_url(prefix, "data") + "/"
    }

    /// Every `data/` directory this host puts content in: the shared one and each route's.
    pub fn data_dirs(&self) -> Vec<String> {
        let mut out: Vec<String> = std::iter::once(&self.shared)
            .chain(&self.routes)
            .map(|p| Self::data_dir_of(p))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    pub fn hosts_dir(&self) -> String {
        join_url(&self.shared, "hosts") + "/"
    }

    /// This host's marker. The prefix is hex-encoded so that any prefix makes one flat name.
    pub fn marker(&self) -> String {
        format!("{}p-{}.json", self.hosts_dir(), hex::encode(&self.host))
    }

    pub fn condemned(&self) -> String {
        join_url(&self.shared, "prune/condemned.json")
    }
}

/// A destination plus what is needed to read and write sealed records in it.
pub struct Repo {
    pub dest: Arc<dyn Destination>,
    /// Shared with the pipeline in the daemon, so the passphrase is stretched once a run.
    pub sealer: Arc<Sealer>,
    pub gate2: Gate2,
    pub layout: Layout,
}

impl Repo {
    /// Opens the repository a config describes. `rt` drives the S3 client.
    pub fn open(
        settings: &Settings,
        passphrase: &[u8],
        rt: &tokio::runtime::Handle,
    ) -> anyhow::Result<Self> {
        let dest = upload::open(&settings.raw.destination, rt).map_err(anyhow::Error::msg)?;
        let sealer = Sealer::new(passphrase, settings.raw.encrypt.zstd_level)
            .context("cannot prepare encryption")?;
        Ok(Self::with_destination(
            settings,
            Arc::new(sealer),
            dest.into(),
        ))
    }

    /// The repository behind a destination already open.
    pub fn with_destination(
        settings: &Settings,
        sealer: Arc<Sealer>,
        dest: Arc<dyn Destination>,
    ) -> Self {
        let cfg = &settings.raw;
        Self {
            dest,
            sealer,
            gate2: Gate2::new(&cfg.destination.allowed),
            layout: Layout::new(cfg.destination.content_prefix(), &cfg.destination.prefix)
                .with_routes(&cfg.class.prefixes()),
        }
    }

    /// Seals `plain` and stores it under `key`, after gate 2 has checked both.
    pub fn put_sealed(&self, key: &str, plain: &[u8]) -> Result<(), UploadError> {
        let mut sealed = Vec::new();
        self.sealer
            .seal(plain, &mut sealed)
            .map_err(|e| UploadError::Permanent(format!("sealing {key}: {e}")))?;
        self.gate2
            .destination_allowed(&self.dest.url(key))
            .and_then(|()| {
                self.sealer
                    .verify_sealed(&sealed[..])
                    .map_err(|e| format!("sealed output failed inspection: {e}"))
            })
            .map_err(|e| UploadError::Permanent(format!("gate 2 refused {key}: {e}")))?;
        self.dest.put_bytes(key, &sealed)
    }

    /// Reads a plain JSON object, `None` if it is not there.
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> anyhow::Result<Option<T>> {
        match get_bytes(&*self.dest, key) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{key}: not the JSON backupfs writes")),
            Err(UploadError::Missing(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn put_json<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), UploadError> {
        let bytes = serde_json::to_vec_pretty(value).expect("plain structs serialise");
        self.dest.put_bytes(key, &bytes)
    }

    /// Checks the passphrase against catalog files already in this host's catalog: fails
    /// if the newest ones all refuse it (a mount with the wrong passphrase would write a
    /// catalog the right one cannot read). Ok(false) when the destination could not be
    /// read, so nothing is known yet.
    pub fn check_passphrase(&self) -> anyhow::Result<bool> {
        let listed = match self.dest.list(&self.layout.catalog_dir()) {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the catalog to check the passphrase yet");
                return Ok(false);
            }
        };
        let mut refused = Vec::new();
        // The newest few: one damaged file must not stop the mount.
        for l in listed.iter().rev().take(3) {
            let sealed = match get_bytes(&*self.dest, &l.key) {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::warn!(key = %l.key, error = %e, "cannot read a catalog file to check the passphrase yet");
                    return Ok(false);
                }
            };
            match self.sealer.open(&sealed[..], std::io::sink()) {
                Ok(_) => return Ok(true),
                Err(e) => refused.push(format!("{}: {e}", l.key)),
            }
        }
        if refused.is_empty() {
            return Ok(true);
        }
        anyhow::bail!(
            "the passphrase does not open the catalog already in the destination ({}); is it \
             the passphrase this host used before?",
            refused.join("; ")
        )
    }

    /// Every host that has written a marker here, and its marker.
    pub fn markers(&self) -> anyhow::Result<Vec<Marker>> {
        let mut out = Vec::new();
        for listed in self.dest.list(&self.layout.hosts_dir())? {
            if let Some(marker) = self.get_json::<Marker>(&listed.key)? {
                out.push(marker);
            }
        }
        Ok(out)
    }
}

/// Whether this run's passphrase opens the host's catalog: unknown until the destination
/// could be read, then accepted or refused for good.
#[derive(Debug, Default)]
pub struct PassphraseCheck(std::sync::atomic::AtomicU8);

impl PassphraseCheck {
    const ACCEPTED: u8 = 1;
    const REFUSED: u8 = 2;

    fn get(&self) -> u8 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn accepted(&self) -> bool {
        self.get() == Self::ACCEPTED
    }

    pub fn refused(&self) -> bool {
        self.get() == Self::REFUSED
    }

    /// Runs the check unless it has an answer already; returns the error once refused.
    pub fn run(&self, repo: &Repo) -> anyhow::Result<()> {
        if self.get() != 0 {
            return Ok(());
        }
        match repo.check_passphrase() {
            Ok(true) => self
                .0
                .store(Self::ACCEPTED, std::sync::atomic::Ordering::SeqCst),
            Ok(false) => {}
            Err(e) => {
                self.0
                    .store(Self::REFUSED, std::sync::atomic::Ordering::SeqCst);
                return Err(e);
            }
        }
        Ok(())
    }
}

/// What a running daemon tells a prune through the destination.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Marker {
    /// The host's `destination.prefix`.
    pub prefix: String,
    /// Every file whose processing started before this time (ms since the epoch) is in
    /// the catalog in the destination.
    pub published_before_ms: i64,
    /// The condemned list this host has seen (its `id`), if any.
    pub condemned_seen: Option<i64>,
    /// When this host first saw that list.
    pub condemned_seen_at_ms: i64,
    /// When this marker was written, and how often the host writes it.
    pub written_ms: i64,
    pub flush_interval_ms: i64,
    /// Set by a daemon that stopped cleanly.
    #[serde(default)]
    pub stopped: bool,
}

impl Marker {
    /// Whether a daemon is running behind this marker: it did not say it stopped, and it
    /// wrote recently (a daemon rewrites its marker at least every 30 s).
    pub fn live(&self, now_ms: i64) -> bool {
        !self.stopped && now_ms - self.written_ms < 3 * self.flush_interval_ms.max(60_000)
    }
}

/// The list a prune writes before deleting, so that running daemons stop pointing new
/// versions at those objects.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CondemnedList {
    pub id: i64,
    pub objects: Vec<String>,
}

/// The objects a prune in progress may delete, as the workers consult it.
#[derive(Debug, Default)]
pub struct Condemned {
    inner: RwLock<(Option<i64>, HashSet<String>)>,
}

impl Condemned {
    pub fn contains(&self, object: &str) -> bool {
        self.inner
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .contains(object)
    }

    pub fn id(&self) -> Option<i64> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).0
    }

    pub fn replace(&self, list: Option<CondemnedList>) {
        let value = match list {
            Some(l) => (Some(l.id), l.objects.into_iter().collect()),
            None => (None, HashSet::new()),
        };
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = value;
    }
}

pub type SharedCondemned = Arc<Condemned>;

pub use crate::pipeline::queue::now_ms;

/// A time given on the command line: RFC 3339 in UTC (`2026-12-04T10:00:00Z`,
/// `2026-12-04 10:00:00`), with an offset (`2026-12-04T11:00:00+01:00`), or `@SECONDS`
/// since the epoch. Returns milliseconds since the epoch.
pub fn parse_time(text: &str) -> anyhow::Result<i64> {
    let bad = || {
        anyhow::anyhow!(
            "--at `{text}`: not a time such as 2026-12-04T10:00:00Z, \
             2026-12-04T11:00:00+01:00 or @1796400000"
        )
    };
    if let Some(secs) = text.strip_prefix('@') {
        let secs: f64 = secs.parse().map_err(|_| bad())?;
        // Within a few thousand years of 1970 either way.
        if !secs.is_finite() || secs.abs() > 1e11 {
            return Err(bad());
        }
        return Ok((secs * 1000.0).round() as i64);
    }
    let upper = text.to_ascii_uppercase();
    let text = upper.as_str();
    // humantime reads UTC only; apply a trailing ±HH:MM offset by hand.
    let split = text
        .len()
        .checked_sub(6)
        .filter(|&at| text.is_char_boundary(at))
        .map(|at| text.split_at(at))
        .filter(|(_, tail)| tail.is_ascii());
    let (utc, offset_ms) = match split {
        Some((head, tail)) if head.contains('T') || head.contains(' ') => {
            match (
                tail.as_bytes()[0],
                tail[1..3].parse::<i64>(),
                &tail[3..4],
                tail[4..].parse::<i64>(),
            ) {
                (sign @ (b'+' | b'-'), Ok(h), ":", Ok(m)) if h < 24 && m < 60 => {
                    let ms = (h * 60 + m) * 60_000;
                    (head, if sign == b'+' { ms } else { -ms })
                }
                _ => (text, 0),
            }
        }
        _ => (text, 0),
    };
    let t = humantime::parse_rfc3339_weak(utc.trim_end_matches('Z')).map_err(|_| bad())?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Ok(ms - offset_ms)
}

/// Formats milliseconds since the epoch as RFC 3339 in UTC.
pub fn format_ms(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// A path for one line of output: control characters and bytes that are not UTF-8 are
/// shown as `\xNN`, so every name stays on its line and can be told apart.
pub fn shown(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\\' {
                for b in c.to_string().bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_parse_in_utc_with_offsets_and_as_seconds() {
        let utc = parse_time("2026-12-04T10:00:00Z").unwrap();
        assert_eq!(utc, 1_796_378_400_000);
        assert_eq!(parse_time("2026-12-04T10:00:00").unwrap(), utc);
        assert_eq!(parse_time("2026-12-04 10:00:00").unwrap(), utc);
        assert_eq!(parse_time("2026-12-04T11:00:00+01:00").unwrap(), utc);
        assert_eq!(parse_time("2026-12-04T08:30:00-01:30").unwrap(), utc);
        assert_eq!(parse_time("2026-12-04T10:00:00.250Z").unwrap(), utc + 250);
        assert_eq!(parse_time("@1796378400").unwrap(), utc);
        assert_eq!(parse_time("2026-12-04t10:00:00z").unwrap(), utc);
        for bad in [
            "1796378400",
            "yesterday",
            "2026-13-04T10:00:00Z",
            "@x",
            "2026-12-04Tüüü",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
