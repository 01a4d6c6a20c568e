//! Configuration: one TOML file, one serde struct per subsystem, validated at load.
//!
//! Unknown keys are rejected and every error names the key it concerns, so a typo in
//! `/etc/backupfs/config.toml` stops the daemon before it mounts anything. Relative paths
//! resolve against the directory that holds the config file, not the working directory, so a
//! unit started from `/` behaves like a shell started next to the file.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use globset::{GlobSet, GlobSetBuilder};
use serde::Deserialize;

/// Everything that can be wrong with a config file, each naming the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: std::borrow::Cow<'static, str>,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// May be left out altogether when the mount command line gives source and mountpoint.
    #[serde(default)]
    pub mount: MountConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    #[serde(default)]
    pub classify: ClassifyConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    /// `[class.sensitive]`, `[class.personal]`, `[class.general]`.
    #[serde(default)]
    pub class: ClassesConfig,
    #[serde(default)]
    pub scan: ScanConfig,
    pub encrypt: EncryptConfig,
    pub destination: DestinationConfig,
    #[serde(default)]
    pub catalog: CatalogConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MountConfig {
    /// The real directory every operation passes through to. May be left out when the
    /// mount command line gives it (`backupfs SOURCE MOUNTPOINT -o config=FILE`, as mount(8)
    /// runs it from fstab); empty means not set.
    #[serde(default)]
    pub source: PathBuf,
    /// Where the drop folder appears; like `source`, may come from the command line.
    #[serde(default)]
    pub mountpoint: PathBuf,
    /// Let users other than the one who mounted use the folder; turns on the kernel's
    /// permission checks (`default_permissions`) as well.
    #[serde(default)]
    pub allow_other: bool,
    /// Threads reading FUSE requests.
    #[serde(default = "default_fuse_threads")]
    pub threads: usize,
    /// Whether file reads and writes bypass the daemon (kernel FUSE passthrough, Linux 6.9
    /// and CAP_SYS_ADMIN): `auto` uses it where it can, `on` refuses to mount without it.
    #[serde(default)]
    pub passthrough: Passthrough,
    /// How long the kernel may trust names and attributes it was given. Changes made through
    /// the mount, and files the pipeline moves away, are always seen at once; this bounds only
    /// how long a change made directly in the source directory can go unseen.
    #[serde(default = "default_cache_timeout", with = "humantime_serde_compat")]
    pub cache_timeout: std::time::Duration,
}

impl Default for MountConfig {
    fn default() -> Self {
        Self {
            source: PathBuf::new(),
            mountpoint: PathBuf::new(),
            allow_other: false,
            threads: default_fuse_threads(),
            passthrough: Passthrough::default(),
            cache_timeout: default_cache_timeout(),
        }
    }
}

/// `mount.passthrough`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Passthrough {
    #[default]
    Auto,
    On,
    Off,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StateConfig {
    /// Holds the index database and the spool of sealed files awaiting upload.
    pub dir: PathBuf,
    /// Where sealed files wait for upload; `spool` inside `dir` unless set.
    pub spool_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LogConfig {
    pub file: PathBuf,
    /// How `file` lines are written; stderr is always text.
    pub format: LogFormat,
    pub audit: PathBuf,
    pub quarantine_dir: PathBuf,
}

/// `log.format`: text for people reading the file, JSON for a log shipper.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct PipelineConfig {
    pub workers: usize,
    /// How long shutdown waits for queued files before it gives up and reports them.
    #[serde(with = "humantime_serde_compat")]
    pub drain_timeout: std::time::Duration,
    /// First delay before retrying a stage that failed for a reason that can pass
    /// (clamd or the bucket unreachable); it doubles up to `retry-max-delay`.
    #[serde(with = "humantime_serde_compat")]
    pub retry_delay: std::time::Duration,
    #[serde(with = "humantime_serde_compat")]
    pub retry_max_delay: std::time::Duration,
    /// A closed file waits this long for the next close before it is backed up, so a burst
    /// of rewrites yields one backup.
    #[serde(with = "humantime_serde_compat")]
    pub settle_delay: std::time::Duration,
    /// A file that keeps changing is still backed up at least this often.
    #[serde(with = "humantime_serde_compat")]
    pub max_delay: std::time::Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClassifyConfig {
    /// Whole words (ASCII case ignored) that make a file sensitive.
    pub sensitive_keywords: Vec<String>,
    /// Whole words that each count as one personal-data match (e.g. "patient").
    pub personal_keywords: Vec<String>,
    /// Personal-data matches (all detectors together) that make a file personal; raise it
    /// so that a single stray address or number does not.
    pub personal_threshold: u64,
    /// Text examined per file at most, after decompression and decoding (documents,
    /// gzip, UTF-16). A file with more is marked partially classified.
    pub max_bytes: ByteSize,
    /// Time spent classifying one file at most; a file that takes longer is marked
    /// partially classified.
    #[serde(with = "humantime_serde_compat")]
    pub max_time: std::time::Duration,
    /// The class of a partially classified file in which the part read found nothing:
    /// it is not known to be general.
    #[serde(deserialize_with = "class_name")]
    pub partial_class: crate::pipeline::classify::Class,
    /// `[[classify.pattern]]`: detectors of one's own.
    pub pattern: Vec<PatternConfig>,
}

/// `[[classify.pattern]]`: a regular expression whose matches, if they pass the validator,
/// count as personal data or make the file sensitive.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PatternConfig {
    /// The detector's name in the audit record.
    pub name: String,
    /// The `regex` crate's syntax, over the file's text as bytes.
    pub regex: String,
    /// A check the matched text must pass: none, luhn, mod97, iban, payment-card, us-ssn.
    #[serde(default = "PatternConfig::default_validator")]
    pub validator: String,
    /// `personal` (each match counts toward `personal-threshold`) or `sensitive`.
    #[serde(default = "PatternConfig::default_class")]
    pub class: String,
    /// Longest match counted, in bytes; matches are found across reads up to this length.
    #[serde(default = "PatternConfig::default_max_length")]
    pub max_length: usize,
}

impl PatternConfig {
    fn default_validator() -> String {
        "none".into()
    }

    fn default_class() -> String {
        "personal".into()
    }

    fn default_max_length() -> usize {
        256
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicyConfig {
    pub max_file_size: ByteSize,
    /// Globs on the path inside the mount, such as `**/*.exe`.
    pub blacklist: Vec<String>,
    /// File name extensions (without the dot) that may be backed up; empty allows all.
    pub allowed_extensions: Vec<String>,
    /// File name extensions (without the dot) that are never backed up. In both lists, ""
    /// stands for a name without an extension.
    pub denied_extensions: Vec<String>,
    /// Types told by the first bytes (gate 1's names: "elf", "pdf", "text", ...) that may
    /// be backed up; empty allows all.
    pub allowed_types: Vec<String>,
    /// Types told by the first bytes that are never backed up.
    pub denied_types: Vec<String>,
    /// Refuse a file whose first bytes contradict its extension: an executable named
    /// `.txt`, a `.pdf` that is no PDF.
    pub reject_type_mismatch: bool,
}

/// What applies to the files of each class once classify has told it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassesConfig {
    pub sensitive: ClassConfig,
    pub personal: ClassConfig,
    pub general: ClassConfig,
}

/// `[class.CLASS]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClassConfig {
    /// Larger files of this class are rejected (as gate 1, right after classify); unset,
    /// only `policy.max-file-size` applies.
    pub max_file_size: Option<ByteSize>,
    /// Where this class's content objects go (`PREFIX/data/XX/NAME`), relative to the bucket
    /// root like `destination.prefix`; unset, the default content prefix
    /// (`destination.shared-prefix`, else `destination.prefix`). Must be inside
    /// `destination.allowed`.
    pub prefix: Option<String>,
    /// The S3 storage class of this class's content objects (STANDARD_IA, ...); unset,
    /// `destination.storage-class`. A directory destination records it only.
    pub storage_class: Option<String>,
}

/// The config keys of one class's settings, for errors.
struct ClassKeys {
    class: crate::pipeline::classify::Class,
    max_file_size: &'static str,
    prefix: &'static str,
    storage_class: &'static str,
}

impl ClassesConfig {
    pub fn get(&self, class: crate::pipeline::classify::Class) -> &ClassConfig {
        use crate::pipeline::classify::Class;
        match class {
            Class::Sensitive => &self.sensitive,
            Class::Personal => &self.personal,
            Class::General => &self.general,
        }
    }

    /// Each class with its settings and their keys.
    fn each(&self) -> [(&ClassConfig, ClassKeys); 3] {
        use crate::pipeline::classify::Class;
        [
            (
                &self.sensitive,
                ClassKeys {
                    class: Class::Sensitive,
                    max_file_size: "class.sensitive.max-file-size",
                    prefix: "class.sensitive.prefix",
                    storage_class: "class.sensitive.storage-class",
                },
            ),
            (
                &self.personal,
                ClassKeys {
                    class: Class::Personal,
                    max_file_size: "class.personal.max-file-size",
                    prefix: "class.personal.prefix",
                    storage_class: "class.personal.storage-class",
                },
            ),
            (
                &self.general,
                ClassKeys {
                    class: Class::General,
                    max_file_size: "class.general.max-file-size",
                    prefix: "class.general.prefix",
                    storage_class: "class.general.storage-class",
                },
            ),
        ]
    }

    /// Where each class's content goes, given the destination's defaults.
    pub fn routes(&self, dest: &DestinationConfig) -> crate::pipeline::upload::Routes {
        use crate::pipeline::upload::Route;
        let mut routes = crate::pipeline::upload::Routes::default();
        for (class, keys) in self.each() {
            let route = Route {
                prefix: class
                    .prefix
                    .as_deref()
                    .unwrap_or(dest.content_prefix())
                    .trim_matches('/')
                    .to_string(),
                storage_class: class
                    .storage_class
                    .clone()
                    .or_else(|| dest.storage_class.clone()),
            };
            if class.prefix.is_some() {
                routes.own_prefix.push(keys.class);
            }
            match keys.class {
                crate::pipeline::classify::Class::Sensitive => routes.sensitive = route,
                crate::pipeline::classify::Class::Personal => routes.personal = route,
                crate::pipeline::classify::Class::General => routes.general = route,
            }
        }
        routes
    }

    /// The classes' own prefixes (trimmed), each once.
    pub fn prefixes(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .each()
            .iter()
            .filter_map(|(c, _)| c.prefix.as_deref())
            .map(|p| p.trim_matches('/').to_string())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The size limits gate 1 applies once the class is known.
    pub fn max_file_sizes(&self) -> crate::pipeline::gate1::ClassSizes {
        crate::pipeline::gate1::ClassSizes {
            sensitive: self.sensitive.max_file_size.map(|b| b.0),
            personal: self.personal.max_file_size.map(|b| b.0),
            general: self.general.max_file_size.map(|b| b.0),
        }
    }

    fn validate(
        &mut self,
        policy: &PolicyConfig,
        dest: &DestinationConfig,
    ) -> Result<(), (&'static str, String)> {
        use crate::pipeline::gate1::human_size;
        for class in [&mut self.sensitive, &mut self.personal, &mut self.general] {
            if let Some(sc) = &mut class.storage_class {
                *sc = sc.trim().to_ascii_uppercase();
            }
        }
        for (class, keys) in self.each() {
            if let Some(prefix) = &class.prefix {
                dest.check_route_prefix(prefix)
                    .map_err(|m| (keys.prefix, m))?;
            }
            if let Some(sc) = &class.storage_class {
                check_storage_class(sc).map_err(|m| (keys.storage_class, m))?;
            }
            match class.max_file_size {
                Some(ByteSize(0)) => {
                    return Err((keys.max_file_size, "must be greater than 0".into()))
                }
                Some(max) if max > policy.max_file_size => {
                    return Err((
                        keys.max_file_size,
                        format!(
                            "{} is over policy.max-file-size ({}), which refuses larger files \
                             of every class first; lower it or raise policy.max-file-size",
                            human_size(max.0),
                            human_size(policy.max_file_size.0)
                        ),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScanConfig {
    /// `unix:/path/to/socket` or `tcp:host:port`.
    pub clamd: String,
    /// Largest file clamd is asked to scan; must not exceed clamd's `MaxFileSize` (nor its
    /// `StreamMaxLength` over TCP). A larger file is recorded as "not scanned" and never
    /// uploaded.
    pub max_stream_size: ByteSize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EncryptConfig {
    /// First line is the passphrase, as with `gpg --passphrase-file`. Mode must deny group
    /// and others.
    pub passphrase_file: Option<PathBuf>,
    /// Instead of a file: the name of a systemd credential (`LoadCredential=NAME:...`), read
    /// from `$CREDENTIALS_DIRECTORY/NAME`.
    pub passphrase_credential: Option<String>,
    /// Instead of a file: a program and its arguments, run directly (no shell) with the
    /// daemon's environment; the first line it prints is the passphrase. A program path with
    /// a slash resolves against the config's directory, a bare name through `PATH`.
    pub passphrase_command: Option<Vec<String>>,
    /// How long the command may take before it is killed and backupfs refuses to start.
    #[serde(
        default = "encrypt::default_command_timeout",
        with = "humantime_serde_compat"
    )]
    pub passphrase_command_timeout: std::time::Duration,
    #[serde(default = "default_zstd_level")]
    pub zstd_level: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DestinationKind {
    S3,
    Dir,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DestinationConfig {
    pub kind: DestinationKind,
    /// S3 bucket (kind = "s3").
    pub bucket: Option<String>,
    /// Local directory standing in for the bucket (kind = "dir").
    pub path: Option<PathBuf>,
    /// This host's prefix: its catalog lives under it.
    #[serde(default)]
    pub prefix: String,
    /// Where content objects go; hosts that share it (and the passphrase) store each content
    /// once. Defaults to `prefix`.
    pub shared_prefix: Option<String>,
    pub endpoint: Option<String>,
    /// An AWS shared-credentials file (`[default]` with `aws_access_key_id` and
    /// `aws_secret_access_key`) to take the S3 keys from instead of the environment: a mount
    /// made by mount(8) from fstab, or at boot, has no environment to carry them. Must not
    /// be readable by group or others.
    pub credentials_file: Option<PathBuf>,
    /// The section of `credentials-file` to use.
    #[serde(default = "default_profile")]
    pub profile: String,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default)]
    pub path_style: bool,
    /// The S3 storage class of content objects (STANDARD_IA, ...) unless their class's
    /// route names one; unset, the bucket's default (STANDARD). Catalog files always use
    /// the default. A directory destination records it only.
    pub storage_class: Option<String>,
    /// Gate 2 refuses any object URL outside these.
    pub allowed: Vec<String>,
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold: ByteSize,
    #[serde(default = "default_part_size")]
    pub part_size: ByteSize,
    /// Send request checksums only when the operation requires them; some S3-compatible
    /// servers reject the chunked checksum trailers that are sent otherwise.
    #[serde(default = "default_true")]
    pub checksum_when_required: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct CatalogConfig {
    /// How often new catalog records are written to the destination.
    #[serde(with = "humantime_serde_compat")]
    pub flush_interval: std::time::Duration,
    /// Merge the catalog into one snapshot once this many batches have piled up.
    pub compact_after: usize,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            flush_interval: std::time::Duration::from_secs(5),
            compact_after: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct MetricsConfig {
    /// Address of the `/metrics` endpoint; empty turns it off.
    pub listen: String,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/backupfs"),
            spool_dir: None,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            file: PathBuf::from("logs/backup_pipeline.log"),
            format: LogFormat::Text,
            audit: PathBuf::from("logs/uploads.jsonl"),
            quarantine_dir: PathBuf::from("logs/quarantine"),
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            drain_timeout: std::time::Duration::from_secs(30),
            retry_delay: std::time::Duration::from_secs(1),
            retry_max_delay: std::time::Duration::from_secs(30),
            settle_delay: std::time::Duration::from_secs(1),
            max_delay: std::time::Duration::from_secs(300),
        }
    }
}

/// `sensitive`, `personal` or `general`.
fn class_name<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<crate::pipeline::classify::Class, D::Error> {
    use crate::pipeline::classify::Class;
    let name = String::deserialize(d)?;
    [Class::Sensitive, Class::Personal, Class::General]
        .into_iter()
        .find(|c| c.as_str() == name)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown class {name:?}: expected sensitive, personal or general"
            ))
        })
}

impl Default for ClassifyConfig {
    fn default() -> Self {
        Self {
            sensitive_keywords: ["confidential", "password", "client data"]
                .map(String::from)
                .to_vec(),
            personal_keywords: Vec::new(),
            personal_threshold: 1,
            max_bytes: ByteSize(1 << 30),
            max_time: std::time::Duration::from_secs(60),
            partial_class: crate::pipeline::classify::Class::Personal,
            pattern: Vec::new(),
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            max_file_size: ByteSize(5 << 30),
            blacklist: Vec::new(),
            allowed_extensions: Vec::new(),
            denied_extensions: Vec::new(),
            allowed_types: Vec::new(),
            denied_types: Vec::new(),
            reject_type_mismatch: true,
        }
    }
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            clamd: "unix:/run/clamav/clamd.ctl".to_string(),
            max_stream_size: ByteSize(25 << 20),
        }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9477".to_string(),
        }
    }
}

fn default_fuse_threads() -> usize {
    2
}
fn default_cache_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(1)
}
fn default_zstd_level() -> i32 {
    3
}
fn default_profile() -> String {
    "default".into()
}

fn default_region() -> String {
    "us-east-1".to_string()
}
fn default_multipart_threshold() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_part_size() -> ByteSize {
    ByteSize(16 << 20)
}
fn default_true() -> bool {
    true
}

/// A size written as `5GiB`, `64 MiB`, `10MB` or a bare number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let number: u64 = digits
            .parse()
            .map_err(|_| format!("`{s}` is not a size such as 5GiB, 64MiB or 1048576"))?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            other => return Err(format!("unknown size unit `{other}` in `{s}`")),
        };
        number
            .checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("size `{s}` is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        let raw = Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a size such as \"5GiB\" or 1048576"))?;
        match raw {
            Raw::Number(n) if n < 0 => Err(serde::de::Error::custom("a size must not be negative")),
            Raw::Number(n) => Ok(ByteSize(n as u64)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

/// Durations written the humantime way: `30s`, `5m`, `1h 30m`.
mod humantime_serde_compat {
    use serde::Deserialize;
    use std::time::Duration;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!("`{text}` is not a duration such as 30s: {e}"))
        })
    }
}

/// How to reach clamd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddress {
    Unix(PathBuf),
    Tcp(String),
}

impl ClamdAddress {
    fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:").filter(|p| !p.is_empty()) {
            return Ok(ClamdAddress::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = text.strip_prefix("tcp:") {
            if addr
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            {
                return Ok(ClamdAddress::Tcp(addr.to_string()));
            }
        }
        Err(format!(
            "`{text}` is neither unix:/path/to/socket nor tcp:host:port"
        ))
    }
}

impl fmt::Display for ClamdAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClamdAddress::Unix(p) => write!(f, "unix:{}", p.display()),
            ClamdAddress::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// The config after validation: paths absolute, globs compiled, addresses parsed.
#[derive(Debug, Clone)]
pub struct Settings {
    pub raw: Config,
    pub config_path: PathBuf,
    pub blacklist: GlobSet,
    pub clamd: ClamdAddress,
    pub metrics_listen: Option<SocketAddr>,
}

impl Settings {
    /// Reads the passphrase from wherever the config says it is.
    pub fn passphrase(&self) -> Result<Vec<u8>, crate::secret::SecretError> {
        let enc = &self.raw.encrypt;
        if let Some(file) = &enc.passphrase_file {
            return crate::secret::read_passphrase(file, "encrypt.passphrase-file");
        }
        if let Some(argv) = &enc.passphrase_command {
            return crate::secret::run_command(argv, enc.passphrase_command_timeout);
        }
        let name = enc.passphrase_credential.as_deref().unwrap_or_default();
        crate::secret::read_credential(name)
    }

    /// Warnings about `destination.allowed`: when it does not cover the destination itself
    /// (gate 2 would then refuse every upload), or a class's route (gate 2 would refuse
    /// every file of that class).
    pub fn allowed_warnings(&self) -> Vec<String> {
        let dest = &self.raw.destination;
        let gate2 = crate::pipeline::gate2::Gate2::new(&dest.allowed);
        let mut out: Vec<String> = [dest.content_url(), dest.base_url()]
            .into_iter()
            .find(|url| gate2.destination_allowed(url).is_err())
            .map(|url| {
                format!(
                    "destination.allowed {:?} does not include the destination {url}: gate 2 \
                     will refuse every upload there",
                    dest.allowed
                )
            })
            .into_iter()
            .collect();
        for (class, keys) in self.raw.class.each() {
            let Some(prefix) = &class.prefix else {
                continue;
            };
            let url = join_url(&dest.root_url(), prefix);
            if gate2.destination_allowed(&url).is_err() {
                out.push(format!(
                    "{} routes {} files to {url}, outside destination.allowed {:?}: gate 2 \
                     will refuse to upload every one of them",
                    keys.prefix,
                    keys.class.as_str(),
                    dest.allowed
                ));
            }
        }
        out
    }

    /// Sets `mount.source` and `mount.mountpoint` from the command line (relative to the
    /// working directory), then requires both and checks where they lie.
    pub fn set_mount_dirs(
        &mut self,
        source: Option<&Path>,
        mountpoint: Option<&Path>,
    ) -> Result<(), ConfigError> {
        let mount = &mut self.raw.mount;
        for (dir, given) in [
            (&mut mount.source, source),
            (&mut mount.mountpoint, mountpoint),
        ] {
            if let Some(given) = given {
                *dir = std::path::absolute(given).unwrap_or_else(|_| given.to_path_buf());
            }
        }
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: self.config_path.clone(),
            key: key.into(),
            message,
        };
        for (key, dir, what) in [
            ("mount.source", &mount.source, "SOURCE"),
            ("mount.mountpoint", &mount.mountpoint, "MOUNTPOINT"),
        ] {
            if dir.as_os_str().is_empty() {
                return Err(invalid(
                    key,
                    format!(
                        "is not set; set it in [mount] or give it on the command line \
                         (backupfs SOURCE MOUNTPOINT -o config=FILE, as {what})"
                    ),
                ));
            }
        }
        self.raw
            .check_placement()
            .map_err(|(key, message)| invalid(key, message))
    }

    /// Where sealed files wait for upload.
    pub fn spool_dir(&self) -> PathBuf {
        let state = &self.raw.state;
        state
            .spool_dir
            .clone()
            .unwrap_or_else(|| state.dir.join("spool"))
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses config text as if it had been read from `path`.
    pub fn from_toml(text: &str, path: &Path) -> Result<Settings, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: parse_message(text, &e),
        })?;
        config.validate(path)
    }

    fn validate(mut self, path: &Path) -> Result<Settings, ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.into(),
            message,
        };
        let base = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = std::path::absolute(&base).unwrap_or(base);
        self.resolve_paths(&base);

        if self.classify.max_bytes.0 == 0 {
            return Err(invalid("classify.max-bytes", "must be more than 0".into()));
        }
        if self.classify.max_time.is_zero() {
            return Err(invalid("classify.max-time", "must be more than 0s".into()));
        }
        if self.classify.personal_threshold == 0 {
            return Err(invalid(
                "classify.personal-threshold",
                "must be at least 1".into(),
            ));
        }
        // Compiles the custom patterns, as the daemon will.
        crate::pipeline::classify::Classifier::new(&self.classify).map_err(|e| {
            ConfigError::Invalid {
                path: path.to_path_buf(),
                key: e.key.into(),
                message: e.message,
            }
        })?;
        if self.pipeline.workers == 0 {
            return Err(invalid("pipeline.workers", "must be at least 1".into()));
        }
        if self.pipeline.max_delay < self.pipeline.settle_delay {
            return Err(invalid(
                "pipeline.max-delay",
                "must not be shorter than pipeline.settle-delay".into(),
            ));
        }
        if self.mount.threads == 0 {
            return Err(invalid("mount.threads", "must be at least 1".into()));
        }
        if self.catalog.compact_after < 2 {
            return Err(invalid(
                "catalog.compact-after",
                "must be at least 2".into(),
            ));
        }
        if self.catalog.flush_interval.is_zero() {
            return Err(invalid(
                "catalog.flush-interval",
                "must be longer than 0s".into(),
            ));
        }
        if !(1..=22).contains(&self.encrypt.zstd_level) {
            return Err(invalid(
                "encrypt.zstd-level",
                "must be between 1 and 22".into(),
            ));
        }
        self.encrypt
            .validate()
            .map_err(|(key, message)| invalid(key, message))?;
        if self.policy.max_file_size.0 == 0 {
            return Err(invalid(
                "policy.max-file-size",
                "must be greater than 0".into(),
            ));
        }
        self.check_placement()
            .map_err(|(key, message)| invalid(key, message))?;
        self.policy
            .normalize()
            .map_err(|(key, message)| invalid(key, message))?;
        if let Some(sc) = &mut self.destination.storage_class {
            *sc = sc.trim().to_ascii_uppercase();
        }
        self.destination
            .validate()
            .map_err(|(key, message)| invalid(key, message))?;
        self.class
            .validate(&self.policy, &self.destination)
            .map_err(|(key, message)| invalid(key, message))?;
        let blacklist = compile_globs(&self.policy.blacklist)
            .map_err(|message| invalid("policy.blacklist", message))?;
        let clamd = ClamdAddress::parse(&self.scan.clamd).map_err(|m| invalid("scan.clamd", m))?;
        let metrics_listen = match self.metrics.listen.trim() {
            "" => None,
            text => Some(text.parse().map_err(|_| {
                invalid(
                    "metrics.listen",
                    format!("`{text}` is not an address such as 127.0.0.1:9477"),
                )
            })?),
        };
        Ok(Settings {
            raw: self,
            config_path: path.to_path_buf(),
            blacklist,
            clamd,
            metrics_listen,
        })
    }

    /// Directories that must not nest: the mount inside its own source deadlocks, and
    /// state, spool or quarantine inside the source or the mount would be backed up or
    /// seen by applications.
    fn check_placement(&self) -> Result<(), (&'static str, String)> {
        let (source, mnt) = (&self.mount.source, &self.mount.mountpoint);
        // Not set here: checked once the command line has given them.
        if source.as_os_str().is_empty() || mnt.as_os_str().is_empty() {
            return Ok(());
        }
        if mnt == source {
            return Err(("mount.mountpoint", "must differ from mount.source".into()));
        }
        if mnt.starts_with(source) {
            return Err((
                "mount.mountpoint",
                format!(
                    "must not be inside mount.source ({}): the mount would contain itself",
                    source.display()
                ),
            ));
        }
        if source.starts_with(mnt) {
            return Err((
                "mount.source",
                format!("must not be inside mount.mountpoint ({})", mnt.display()),
            ));
        }
        let inside = |p: &Path| p.starts_with(source) || p.starts_with(mnt);
        let spool = self
            .state
            .spool_dir
            .clone()
            .unwrap_or_else(|| self.state.dir.join("spool"));
        for (key, dir) in [
            ("state.dir", &self.state.dir),
            ("state.spool-dir", &spool),
            ("log.quarantine-dir", &self.log.quarantine_dir),
        ] {
            if inside(dir) {
                return Err((
                    key,
                    format!(
                        "{} must not be inside mount.source or mount.mountpoint: its files would be \
                         visible in the drop folder and backed up",
                        dir.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.mount.source, &mut self.mount.mountpoint] {
            if !p.as_os_str().is_empty() {
                *p = base.join(&*p);
            }
        }
        for p in [
            &mut self.state.dir,
            &mut self.log.file,
            &mut self.log.audit,
            &mut self.log.quarantine_dir,
        ] {
            *p = base.join(&*p);
        }
        for p in [
            self.destination.path.as_mut(),
            self.destination.credentials_file.as_mut(),
            self.state.spool_dir.as_mut(),
            self.encrypt.passphrase_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            *p = base.join(&*p);
        }
        // A program path such as `bin/get-passphrase` is relative like any other path here; a
        // bare name is left for PATH. (A config directory that is not UTF-8 yields a path
        // that is not found, which the error then shows.)
        let command = self.encrypt.passphrase_command.as_mut();
        if let Some(program) = command.and_then(|argv| argv.first_mut()) {
            if program.contains('/') && !program.starts_with('/') {
                *program = base.join(&*program).to_string_lossy().into_owned();
            }
        }
    }
}

impl PolicyConfig {
    /// Lower-cases the lists and takes the dot off extensions; refuses names gate 1 could
    /// never match and lists that contradict each other.
    fn normalize(&mut self) -> Result<(), (&'static str, String)> {
        for (key, list) in [
            ("policy.allowed-extensions", &mut self.allowed_extensions),
            ("policy.denied-extensions", &mut self.denied_extensions),
        ] {
            for ext in list.iter_mut() {
                *ext = ext.trim().trim_start_matches('.').to_ascii_lowercase();
                if ext.contains(['.', '/']) {
                    return Err((
                        key,
                        format!(
                            "`{ext}` is not an extension such as \"pdf\": gate 1 compares \
                             only what follows the last dot of a name"
                        ),
                    ));
                }
            }
        }
        if let Some(ext) = self
            .denied_extensions
            .iter()
            .find(|e| self.allowed_extensions.contains(e))
        {
            return Err((
                "policy.denied-extensions",
                format!("`{ext}` is in policy.allowed-extensions too"),
            ));
        }
        for (key, list) in [
            ("policy.allowed-types", &mut self.allowed_types),
            ("policy.denied-types", &mut self.denied_types),
        ] {
            for name in list.iter_mut() {
                *name = name.trim().to_ascii_lowercase();
                if crate::pipeline::gate1::Detected::from_name(name).is_none() {
                    return Err((
                        key,
                        format!(
                            "unknown type \"{name}\"; the types gate 1 tells are: {}",
                            crate::pipeline::gate1::Detected::names()
                        ),
                    ));
                }
            }
        }
        if let Some(name) = self
            .denied_types
            .iter()
            .find(|t| self.allowed_types.contains(t))
        {
            return Err((
                "policy.denied-types",
                format!("\"{name}\" is in policy.allowed-types too"),
            ));
        }
        Ok(())
    }
}

impl DestinationConfig {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        match self.kind {
            DestinationKind::S3 if self.bucket.as_deref().unwrap_or("").is_empty() => {
                return Err((
                    "destination.bucket",
                    "is required when kind = \"s3\"".into(),
                ))
            }
            DestinationKind::Dir if self.path.is_none() => {
                return Err(("destination.path", "is required when kind = \"dir\"".into()))
            }
            DestinationKind::Dir if self.credentials_file.is_some() => {
                return Err((
                    "destination.credentials-file",
                    "is for kind = \"s3\"; a directory needs no keys".into(),
                ))
            }
            _ => {}
        }
        let prefixes = [
            ("destination.prefix", Some(&self.prefix)),
            ("destination.shared-prefix", self.shared_prefix.as_ref()),
        ];
        for (key, prefix) in prefixes {
            let Some(prefix) = prefix else { continue };
            if prefix.starts_with('/') || prefix.split('/').any(|c| c == "..") {
                return Err((key, "must be relative and must not contain `..`".into()));
            }
        }
        if self.allowed.is_empty() {
            return Err((
                "destination.allowed",
                format!(
                    "is empty, so gate 2 would refuse every upload; add \"{}\"",
                    self.base_url()
                ),
            ));
        }
        if let Some(endpoint) = &self.endpoint {
            let scheme_ok = endpoint.starts_with("http://") || endpoint.starts_with("https://");
            if !scheme_ok || endpoint.split("://").nth(1).is_none_or(str::is_empty) {
                return Err((
                    "destination.endpoint",
                    format!("`{endpoint}` is not a URL such as http://127.0.0.1:9000"),
                ));
            }
        }
        if self.part_size.0 < 5 << 20 {
            return Err(("destination.part-size", "must be at least 5MiB".into()));
        }
        if let Some(sc) = &self.storage_class {
            check_storage_class(sc).map_err(|m| ("destination.storage-class", m))?;
        }
        Ok(())
    }

    /// A class's own prefix must be relative, without `..`, and must not lie where the
    /// repository keeps other things: the catalog, the host markers, the prune list, or
    /// the default `data/` directory.
    fn check_route_prefix(&self, prefix: &str) -> Result<(), String> {
        if prefix.starts_with('/') || prefix.split('/').any(|c| c == "..") {
            return Err("must be relative and must not contain `..`".into());
        }
        let prefix = prefix.trim_matches('/');
        let shared = self.content_prefix();
        let reserved = [
            join_url(&self.prefix, "catalog"),
            join_url(shared, "hosts"),
            join_url(shared, "prune"),
            join_url(shared, "data"),
        ];
        match reserved
            .iter()
            .find(|r| prefix == r.as_str() || prefix.starts_with(&format!("{r}/")))
        {
            Some(r) => Err(format!(
                "`{prefix}` is inside `{r}/`, where backupfs keeps other objects; choose a \
                 prefix of its own, such as \"personal\""
            )),
            None => Ok(()),
        }
    }

    /// Where content objects go: `shared-prefix`, or else `prefix`.
    pub fn content_prefix(&self) -> &str {
        self.shared_prefix.as_deref().unwrap_or(&self.prefix)
    }

    /// The URL this host's catalog objects start with, as gate 2 compares it.
    pub fn base_url(&self) -> String {
        join_url(&self.root_url(), &self.prefix)
    }

    /// The URL content objects start with.
    pub fn content_url(&self) -> String {
        join_url(&self.root_url(), self.content_prefix())
    }

    fn root_url(&self) -> String {
        match self.kind {
            DestinationKind::S3 => format!("s3://{}", self.bucket.as_deref().unwrap_or("")),
            DestinationKind::Dir => format!(
                "file://{}",
                self.path.as_deref().unwrap_or(Path::new("")).display()
            ),
        }
    }
}

/// One line for a TOML error: where it is, which key, and what is wrong.
fn parse_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    let Some(span) = e.span() else {
        return message.to_string();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    match key_at(text, line) {
        Some(key) => format!("line {line}, column {column}: key `{key}`: {message}"),
        None => format!("line {line}, column {column}: {message}"),
    }
}

/// The dotted key assigned on line `line` (1-based), with its `[section]`.
fn key_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let (name, _) = lines.get(line - 1)?.split_once('=')?;
    let name = name.trim();
    let section = lines[..line - 1]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(['[', ']']).trim());
    Some(match section {
        Some(section) => format!("{section}.{name}"),
        None => name.to_string(),
    })
}

/// S3's storage classes that backupfs can read back directly.
pub const STORAGE_CLASSES: [&str; 10] = [
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "REDUCED_REDUNDANCY",
    "EXPRESS_ONEZONE",
    "OUTPOSTS",
    "SNOW",
    "FSX_OPENZFS",
];

/// A storage class must be one of S3's, and one whose objects can be read at once:
/// restore, verify and `ls` read objects back, and an archived one must be restored
/// first.
fn check_storage_class(name: &str) -> Result<(), String> {
    if STORAGE_CLASSES.contains(&name) {
        return Ok(());
    }
    if ["GLACIER", "DEEP_ARCHIVE"].contains(&name) {
        return Err(format!(
            "\"{name}\" objects cannot be read until they are restored, so restore and verify \
             would fail; use GLACIER_IR, or a bucket lifecycle rule that moves old objects to \
             {name}"
        ));
    }
    Err(format!(
        "\"{name}\" is not an S3 storage class; use one of {}",
        STORAGE_CLASSES.join(", ")
    ))
}

/// Joins URL segments with exactly one slash between them.
pub fn join_url(base: &str, rest: &str) -> String {
    let rest = rest.trim_matches('/');
    if base.is_empty() {
        return rest.to_string();
    }
    if rest.is_empty() {
        return base.trim_end_matches('/').to_string();
    }
    format!("{}/{rest}", base.trim_end_matches('/'))
}

fn compile_globs(patterns: &[String]) -> Result<GlobSet, String> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        // Case-insensitive: `*.exe` must also stop `SETUP.EXE`.
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .case_insensitive(true)
            .build()
            .map_err(|e| format!("bad glob `{pattern}`: {e}"))?;
        builder.add(glob);
    }
    // An empty builder still yields a set that matches nothing.
    builder.build().map_err(|e| e.to_string())
}

mod encrypt;
#[cfg(test)]
mod tests;
