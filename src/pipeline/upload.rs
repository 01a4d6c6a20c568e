//! Stage 7: put the sealed object in the destination — an S3 bucket, or a local directory
//! with the same layout — under a name derived from the content with a secret key.
//!
//! Object names are `PREFIX/data/XX/HMAC`, where HMAC is keyed by a key derived from the
//! passphrase: equal content gets the same name (so dedup works across hosts sharing the
//! passphrase), yet a name reveals neither the file name nor the plaintext hash. PREFIX is
//! the route of the content's class: `class.CLASS.prefix`, else the shared prefix.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, StorageClass};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::classify::Class;
use crate::config::{join_url, DestinationConfig, DestinationKind};

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Worth retrying: the destination is unreachable, slow or briefly failing.
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help until an operator acts (access denied, no such bucket).
    #[error("{0}")]
    Permanent(String),
    /// The object asked for is not there.
    #[error("{0}")]
    Missing(String),
}

/// One object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
}

/// Where a content object went: the prefix its key starts with and the S3 storage class
/// asked for (none: the bucket's default). Recorded in the catalog and the audit record.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Route {
    pub prefix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

impl Route {
    /// The route of an object recorded without one (an older catalog): the prefix its key
    /// shows, and no storage class.
    pub fn of_object(key: &str) -> Self {
        Self {
            prefix: prefix_of(key).to_string(),
            storage_class: None,
        }
    }
}

/// The prefix a content object's key starts with: the key without `data/XX/NAME`.
pub fn prefix_of(key: &str) -> &str {
    let mut parts = key.rsplitn(4, '/');
    let (name, xx, data) = (parts.next(), parts.next(), parts.next());
    match (name, xx, data, parts.next()) {
        (Some(_), Some(_), Some("data"), rest) => rest.unwrap_or(""),
        _ => "",
    }
}

/// The route of each class: its own (`class.CLASS.prefix`, `class.CLASS.storage-class`)
/// where set, else the default (`destination.shared-prefix` or `prefix`, and
/// `destination.storage-class`).
#[derive(Debug, Clone, Default)]
pub struct Routes {
    pub sensitive: Route,
    pub personal: Route,
    pub general: Route,
    /// The classes whose prefix is their own, not the default.
    pub own_prefix: Vec<Class>,
}

impl Routes {
    pub fn get(&self, class: Class) -> &Route {
        match class {
            Class::Sensitive => &self.sensitive,
            Class::Personal => &self.personal,
            Class::General => &self.general,
        }
    }

    /// The key that routes `class` elsewhere than the default, if one does.
    pub fn routed_by(&self, class: Class) -> Option<&'static str> {
        self.own_prefix.contains(&class).then_some(match class {
            Class::Sensitive => "class.sensitive.prefix",
            Class::Personal => "class.personal.prefix",
            Class::General => "class.general.prefix",
        })
    }
}

/// Where sealed objects go.
pub trait Destination: Send + Sync {
    /// The object's full URL, as gate 2 checks it and the audit log records it.
    fn url(&self, key: &str) -> String;
    /// Stores the file at `sealed` under `key`, in S3 storage class `storage_class` if
    /// given (a directory has none and ignores it); returns the bytes stored.
    fn put(
        &self,
        key: &str,
        sealed: &Path,
        storage_class: Option<&str>,
    ) -> Result<u64, UploadError>;
    /// Checks at start-up that the destination answers, so that a wrong bucket or wrong
    /// credentials show at once rather than at the first file.
    fn probe(&self) -> Result<(), UploadError> {
        Ok(())
    }
    /// Stores `bytes` (a small object: a catalog batch, a marker) under `key`.
    fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<(), UploadError>;
    /// Streams the object into `out`; returns the bytes written.
    fn get(&self, key: &str, out: &mut dyn io::Write) -> Result<u64, UploadError>;
    /// Whether an object exists under `key`.
    fn exists(&self, key: &str) -> Result<bool, UploadError>;
    /// Every object whose key starts with `prefix`, in key order.
    fn list(&self, prefix: &str) -> Result<Vec<Listed>, UploadError>;
    /// Removes the object; removing one that is not there is not an error.
    fn delete(&self, key: &str) -> Result<(), UploadError>;
}

/// Reads a whole (small) object into memory.
pub fn get_bytes(dest: &dyn Destination, key: &str) -> Result<Vec<u8>, UploadError> {
    let mut out = Vec::new();
    dest.get(key, &mut out)?;
    Ok(out)
}

/// Turns a content hash into an object key.
pub struct ObjectNamer {
    key: [u8; 32],
    prefix: String,
}

type HmacSha256 = Hmac<Sha256>;

impl ObjectNamer {
    pub fn new(passphrase: &[u8], prefix: &str) -> Self {
        let mut mac =
            HmacSha256::new_from_slice(passphrase).expect("HMAC takes keys of any length");
        mac.update(b"backupfs object names v1");
        Self {
            key: mac.finalize().into_bytes().into(),
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    /// The object name of this content: the same on every host with this passphrase.
    pub fn key_for(&self, sha256: &[u8; 32]) -> String {
        self.key_in(&self.prefix, sha256)
    }

    /// The object name of this content under `prefix` (a class's route) instead.
    pub fn key_in(&self, prefix: &str, sha256: &[u8; 32]) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(sha256);
        let name = hex::encode(mac.finalize().into_bytes());
        join_url(prefix, &format!("data/{}/{name}", &name[..2]))
    }

    /// A fresh name for this content under `prefix`, for when its usual name is condemned
    /// by a prune in progress and must not be written again.
    pub fn fresh_key_in(&self, prefix: &str, sha256: &[u8; 32]) -> String {
        format!(
            "{}-{:016x}",
            self.key_in(prefix, sha256),
            rand::random::<u64>()
        )
    }
}

/// Builds the destination a config describes.
pub fn open(
    config: &DestinationConfig,
    rt: &tokio::runtime::Handle,
) -> Result<Box<dyn Destination>, String> {
    match config.kind {
        DestinationKind::S3 => {
            let keys = credentials(config)?;
            Ok(Box::new(S3Destination::new(config, keys, rt.clone())))
        }
        DestinationKind::Dir => {
            let root = config.path.clone().ok_or("destination.path is required")?;
            fs::create_dir_all(&root)
                .map_err(|e| format!("destination.path {}: {e}", root.display()))?;
            Ok(Box::new(DirDestination::new(root)))
        }
    }
}

/// How long the start-up check of the bucket may take.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The keys `destination.credentials-file` gives, if it is set; the error names the key
/// and the file.
pub fn credentials(config: &DestinationConfig) -> Result<Option<Credentials>, String> {
    let Some(file) = &config.credentials_file else {
        return Ok(None);
    };
    read_credentials_file(file, &config.profile)
        .map(Some)
        .map_err(|e| format!("destination.credentials-file {}: {e}", file.display()))
}

/// The keys in section `profile` of an AWS shared-credentials file; refuses a file others
/// may read, or one without both keys, at start rather than at the first upload.
fn read_credentials_file(file: &Path, profile: &str) -> Result<Credentials, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(file).map_err(|e| format!("cannot read it: {e}"))?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "has mode {:04o}: it holds secret keys and must not be readable or writable by \
             group or others; run chmod 600 {}",
            meta.mode() & 0o7777,
            file.display()
        ));
    }
    let text = fs::read_to_string(file).map_err(|e| format!("cannot read it: {e}"))?;
    let mut section = None;
    let (mut key, mut secret, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim().to_string());
            continue;
        }
        if section.as_deref() != Some(profile) {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let value = Some(value.trim().to_string()).filter(|v| !v.is_empty());
        match name.trim() {
            "aws_access_key_id" => key = value,
            "aws_secret_access_key" => secret = value,
            "aws_session_token" => token = value,
            _ => {}
        }
    }
    match (key, secret) {
        (Some(key), Some(secret)) => Ok(Credentials::new(
            key,
            secret,
            token,
            None,
            "destination.credentials-file",
        )),
        _ => Err(format!(
            "no [{profile}] section with aws_access_key_id and aws_secret_access_key \
             (destination.profile = \"{profile}\")"
        )),
    }
}

/// A local directory laid out like the bucket: `ROOT/PREFIX/data/XX/NAME`.
pub struct DirDestination {
    root: PathBuf,
}

impl DirDestination {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }
}

impl Destination for DirDestination {
    fn url(&self, key: &str) -> String {
        join_url(&format!("file://{}", self.root.display()), key)
    }

    fn put(
        &self,
        key: &str,
        sealed: &Path,
        _storage_class: Option<&str>,
    ) -> Result<u64, UploadError> {
        let dest = self.root.join(key);
        let fail = |e: io::Error| dir_error(&dest, e);
        let dir = dest.parent().expect("object keys always have a directory");
        fs::create_dir_all(dir).map_err(fail)?;
        let tmp = dest.with_extension(format!("tmp-{}", std::process::id()));
        let written = fs::copy(sealed, &tmp).map_err(fail)?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(fail)?;
        fs::rename(&tmp, &dest).map_err(fail)?;
        File::open(dir).and_then(|f| f.sync_all()).map_err(fail)?;
        Ok(written)
    }

    fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<(), UploadError> {
        let dest = self.root.join(key);
        let tmp = dest.with_extension(format!("tmp-{}", std::process::id()));
        let result = fs::create_dir_all(dest.parent().expect("keys have a directory"))
            .and_then(|()| fs::write(&tmp, bytes))
            .and_then(|()| File::open(&tmp)?.sync_all())
            .and_then(|()| fs::rename(&tmp, &dest));
        result.map_err(|e| dir_error(&dest, e))
    }

    fn get(&self, key: &str, out: &mut dyn io::Write) -> Result<u64, UploadError> {
        let path = self.root.join(key);
        let mut file = File::open(&path).map_err(|e| dir_error(&path, e))?;
        io::copy(&mut file, out).map_err(|e| UploadError::Transient(format!("{key}: {e}")))
    }

    fn exists(&self, key: &str) -> Result<bool, UploadError> {
        match fs::metadata(self.root.join(key)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(dir_error(&self.root.join(key), e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<Listed>, UploadError> {
        // Walk the directory the prefix names (or its parent, for a partial last segment).
        let (dir, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let mut out = Vec::new();
        let mut stack = vec![self.root.join(dir)];
        while let Some(at) = stack.pop() {
            let entries = match fs::read_dir(&at) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(dir_error(&at, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| dir_error(&at, e))?;
                let meta = entry.metadata().map_err(|e| dir_error(&entry.path(), e))?;
                if meta.is_dir() {
                    stack.push(entry.path());
                    continue;
                }
                let Ok(rel) = entry.path().strip_prefix(&self.root).map(Path::to_path_buf) else {
                    continue;
                };
                let key = rel.to_string_lossy().into_owned();
                if key.starts_with(prefix) && !key.contains(".tmp-") {
                    out.push(Listed {
                        key,
                        size: meta.len(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), UploadError> {
        let path = self.root.join(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(dir_error(&path, e)),
        }
    }
}

fn dir_error(path: &Path, e: io::Error) -> UploadError {
    let text = format!("{}: {e}", path.display());
    match e.raw_os_error() {
        Some(libc::ENOENT) => UploadError::Missing(text),
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EIO) => UploadError::Transient(text),
        _ => UploadError::Permanent(text),
    }
}

pub struct S3Destination {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Multipart uploads whose abort failed (the server was down); aborted again before the
    /// next upload so that no orphan parts stay behind.
    unaborted: std::sync::Mutex<Vec<(String, String)>>,
    multipart_threshold: u64,
    part_size: u64,
    rt: tokio::runtime::Handle,
}

impl S3Destination {
    /// `keys` from `destination.credentials-file`; `None` for the AWS chain.
    pub fn new(
        config: &DestinationConfig,
        keys: Option<Credentials>,
        rt: tokio::runtime::Handle,
    ) -> Self {
        let client = rt.block_on(client(config, keys));
        Self {
            client,
            bucket: config.bucket.clone().unwrap_or_default(),
            unaborted: std::sync::Mutex::default(),
            multipart_threshold: config.multipart_threshold.0,
            part_size: config.part_size.0,
            rt,
        }
    }
}

/// An S3 client for this destination. Credentials are `keys` (from
/// `destination.credentials-file`) when given, else from the standard AWS chain (environment
/// first); the region, endpoint and addressing style from the config. With an
/// explicit endpoint (an S3-compatible server, not AWS) the chain stops at the environment
/// and the profile files: asking the EC2 instance metadata service there would only send
/// requests to an address that has nothing to do with this server.
pub async fn client(config: &DestinationConfig, keys: Option<Credentials>) -> aws_sdk_s3::Client {
    use aws_config::meta::credentials::CredentialsProviderChain;
    let region = Region::new(config.region.clone());
    let credentials: aws_sdk_s3::config::SharedCredentialsProvider = if let Some(keys) = keys {
        aws_sdk_s3::config::SharedCredentialsProvider::new(keys)
    } else if config.endpoint.is_some() {
        let env =
            aws_config::environment::credentials::EnvironmentVariableCredentialsProvider::new();
        let profile = aws_config::profile::ProfileFileCredentialsProvider::builder().build();
        aws_sdk_s3::config::SharedCredentialsProvider::new(
            CredentialsProviderChain::first_try("environment", env).or_else("profile", profile),
        )
    } else {
        aws_sdk_s3::config::SharedCredentialsProvider::new(
            aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                .region(region.clone())
                .build()
                .await,
        )
    };
    // A server that accepts a connection and then says nothing must not hold a worker
    // forever: each attempt gets a bounded time (generous, since parts are up to part-size).
    let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .operation_attempt_timeout(std::time::Duration::from_secs(600))
        .build();
    let mut builder = aws_sdk_s3::config::Builder::new()
        .timeout_config(timeouts)
        .behavior_version(BehaviorVersion::latest())
        .region(region)
        .credentials_provider(credentials)
        .force_path_style(config.path_style);
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    if config.checksum_when_required {
        builder = builder
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// An error and its causes on one line, each shown once, without the debug dumps the SDK's
/// own context formatter adds.
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Server errors and throttling pass; other refusals (403, 404 bucket) need an operator.
fn classify<E>(what: &str, err: SdkError<E, HttpResponse>) -> UploadError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("no error code");
            let detail = se.err().message().unwrap_or("");
            let message = format!("{what}: HTTP {status} {code} {detail}")
                .trim_end()
                .to_string();
            // RequestTimeout (400) is S3 giving up on a slow body: worth another try.
            if status == 404 && code != "NoSuchBucket" {
                UploadError::Missing(message)
            } else if status >= 500 || status == 429 || code == "RequestTimeout" {
                UploadError::Transient(message)
            } else {
                UploadError::Permanent(message)
            }
        }
        SdkError::ConstructionFailure(_) => {
            UploadError::Permanent(format!("{what}: {}", causes(&err)))
        }
        _ => UploadError::Transient(format!("{what}: {}", causes(&err))),
    }
}

impl Destination for S3Destination {
    fn url(&self, key: &str) -> String {
        join_url(&format!("s3://{}", self.bucket), key)
    }

    fn probe(&self) -> Result<(), UploadError> {
        self.rt.block_on(async {
            // A server that accepts connections and then says nothing is reported as
            // unreachable here, at start, instead of holding it for a whole attempt.
            let head = self.client.head_bucket().bucket(&self.bucket).send();
            match tokio::time::timeout(PROBE_TIMEOUT, head).await {
                Ok(reply) => reply
                    .map(drop)
                    .map_err(|e| classify(&format!("HeadBucket {}", self.bucket), e)),
                Err(_) => Err(UploadError::Transient(format!(
                    "HeadBucket {}: no answer within {}s",
                    self.bucket,
                    PROBE_TIMEOUT.as_secs()
                ))),
            }
        })
    }

    fn put(
        &self,
        key: &str,
        sealed: &Path,
        storage_class: Option<&str>,
    ) -> Result<u64, UploadError> {
        let storage_class = storage_class.map(StorageClass::from);
        let len = fs::metadata(sealed)
            .map_err(|e| UploadError::Transient(format!("spool file {}: {e}", sealed.display())))?
            .len();
        self.rt.block_on(async {
            self.abort_leftovers().await;
            if len > self.multipart_threshold {
                self.put_multipart(key, sealed, len, storage_class).await
            } else {
                self.put_single(key, sealed, len, storage_class).await
            }
        })?;
        Ok(len)
    }

    fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<(), UploadError> {
        self.rt.block_on(async {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .body(ByteStream::from(bytes.to_vec()))
                .send()
                .await
                .map(drop)
                .map_err(|e| classify(&format!("PutObject {key}"), e))
        })
    }

    fn get(&self, key: &str, out: &mut dyn io::Write) -> Result<u64, UploadError> {
        self.rt.block_on(async {
            let what = format!("GetObject {key}");
            let got = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| classify(&what, e))?;
            let mut body = got.body;
            let mut written = 0u64;
            while let Some(chunk) = body
                .try_next()
                .await
                .map_err(|e| UploadError::Transient(format!("{what}: {}", causes(&e))))?
            {
                out.write_all(&chunk)
                    .map_err(|e| UploadError::Permanent(format!("{what}: writing: {e}")))?;
                written += chunk.len() as u64;
            }
            Ok(written)
        })
    }

    fn exists(&self, key: &str) -> Result<bool, UploadError> {
        let head = self.rt.block_on(
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send(),
        );
        match head.map_err(|e| classify(&format!("HeadObject {key}"), e)) {
            Ok(_) => Ok(true),
            Err(UploadError::Missing(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<Listed>, UploadError> {
        self.rt.block_on(async {
            let mut out = Vec::new();
            let mut token = None;
            loop {
                let page = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .set_continuation_token(token)
                    .send()
                    .await
                    .map_err(|e| classify(&format!("ListObjectsV2 {prefix}"), e))?;
                for object in page.contents() {
                    if let Some(key) = object.key() {
                        out.push(Listed {
                            key: key.to_string(),
                            size: object.size().unwrap_or(0).max(0) as u64,
                        });
                    }
                }
                token = page.next_continuation_token().map(str::to_string);
                if token.is_none() || page.is_truncated() != Some(true) {
                    break;
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
    }

    fn delete(&self, key: &str) -> Result<(), UploadError> {
        let deleted = self.rt.block_on(
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send(),
        );
        match deleted.map_err(|e| classify(&format!("DeleteObject {key}"), e)) {
            Ok(_) | Err(UploadError::Missing(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl S3Destination {
    async fn body(sealed: &Path, offset: u64, len: u64) -> Result<ByteStream, UploadError> {
        ByteStream::read_from()
            .path(sealed)
            .offset(offset)
            .length(Length::Exact(len))
            .build()
            .await
            .map_err(|e| UploadError::Transient(format!("spool file {}: {e}", sealed.display())))
    }

    async fn put_single(
        &self,
        key: &str,
        sealed: &Path,
        len: u64,
        storage_class: Option<StorageClass>,
    ) -> Result<(), UploadError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .set_storage_class(storage_class)
            .content_length(len as i64)
            .body(Self::body(sealed, 0, len).await?)
            .send()
            .await
            .map_err(|e| classify("PutObject", e))?;
        Ok(())
    }

    async fn put_multipart(
        &self,
        key: &str,
        sealed: &Path,
        len: u64,
        storage_class: Option<StorageClass>,
    ) -> Result<(), UploadError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_storage_class(storage_class)
            .send()
            .await
            .map_err(|e| classify("CreateMultipartUpload", e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| {
                UploadError::Transient("CreateMultipartUpload returned no upload id".into())
            })?
            .to_string();
        let result = self.upload_parts(key, sealed, len, &upload_id).await;
        if result.is_err() && !self.abort(key, &upload_id).await {
            self.lock_unaborted().push((key.to_string(), upload_id));
        }
        result
    }

    fn lock_unaborted(&self) -> std::sync::MutexGuard<'_, Vec<(String, String)>> {
        self.unaborted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Aborts a multipart upload; false if that failed too.
    async fn abort(&self, key: &str, upload_id: &str) -> bool {
        let aborted = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
        match aborted {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(key, error = %causes(&e), "cannot abort multipart upload yet; will try again");
                false
            }
        }
    }

    async fn abort_leftovers(&self) {
        let leftovers = std::mem::take(&mut *self.lock_unaborted());
        for (key, upload_id) in leftovers {
            if self.abort(&key, &upload_id).await {
                tracing::info!(key, "aborted a multipart upload left by an earlier failure");
            } else {
                self.lock_unaborted().push((key, upload_id));
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &str,
        sealed: &Path,
        len: u64,
        upload_id: &str,
    ) -> Result<(), UploadError> {
        let mut parts = Vec::new();
        let mut offset = 0u64;
        let mut number = 1i32;
        while offset < len {
            let size = self.part_size.min(len - offset);
            let part = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(size as i64)
                .body(Self::body(sealed, offset, size).await?)
                .send()
                .await
                .map_err(|e| classify("UploadPart", e))?;
            parts.push(
                CompletedPart::builder()
                    .set_e_tag(part.e_tag().map(str::to_string))
                    .part_number(number)
                    .build(),
            );
            offset += size;
            number += 1;
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("CompleteMultipartUpload", e))?;
        tracing::debug!(key, parts = number - 1, "multipart upload complete");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_file_gives_the_profile_keys_or_says_what_is_wrong() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        let text = "[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n\n\
                    [other]\naws_access_key_id=AK2\naws_secret_access_key=SK2\naws_session_token=T\n";
        fs::write(&file, text).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let keys = read_credentials_file(&file, "other").unwrap();
        assert_eq!(
            (
                keys.access_key_id(),
                keys.secret_access_key(),
                keys.session_token()
            ),
            ("AK2", "SK2", Some("T"))
        );
        let e = read_credentials_file(&file, "missing").unwrap_err();
        assert!(e.contains("[missing]"), "{e}");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_credentials_file(&file, "default").unwrap_err();
        assert!(e.contains("0644") && e.contains("chmod 600"), "{e}");
        let e = read_credentials_file(&dir.path().join("nope"), "default").unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn names_are_keyed_and_stable() {
        let a = ObjectNamer::new(b"secret one", "host-a");
        let b = ObjectNamer::new(b"secret two", "host-a");
        let sha = [1u8; 32];
        let key = a.key_for(&sha);
        assert!(key.starts_with("host-a/data/"), "{key}");
        assert_eq!(key, a.key_for(&sha));
        assert_ne!(key, b.key_for(&sha));
        assert!(!key.contains(&hex::encode(sha)));
        let bare = ObjectNamer::new(b"secret one", "").key_for(&sha);
        assert!(bare.starts_with("data/"), "{bare}");
        // A route keeps the name and changes only the prefix.
        let routed = a.key_in("personal/", &sha);
        assert_eq!(routed, key.replacen("host-a/", "personal/", 1));
        let fresh = a.fresh_key_in("personal", &sha);
        assert!(fresh.starts_with(&format!("{routed}-")), "{fresh}");
    }

    #[test]
    fn the_prefix_of_an_object_is_its_key_without_data_xx_name() {
        let cases = [
            ("host-a/data/ab/abcdef", "host-a"),
            (
                "a/b/personal/data/ab/abcdef-0123456789abcdef",
                "a/b/personal",
            ),
            ("data/ab/abcdef", ""),
            ("host-a/catalog/batch-1.pgp", ""),
            ("", ""),
        ];
        for (key, prefix) in cases {
            assert_eq!(prefix_of(key), prefix, "{key}");
            assert_eq!(Route::of_object(key).prefix, prefix, "{key}");
        }
    }

    #[test]
    fn dir_destination_writes_the_layout() {
        let root = tempfile::tempdir().unwrap();
        let spool = root.path().join("spool.pgp");
        fs::write(&spool, b"sealed bytes").unwrap();
        let dest = DirDestination {
            root: root.path().join("bucket"),
        };
        let n = dest
            .put("host-a/data/ab/abcdef", &spool, Some("STANDARD_IA"))
            .unwrap();
        assert_eq!(n, 12);
        let stored = fs::read(root.path().join("bucket/host-a/data/ab/abcdef")).unwrap();
        assert_eq!(stored, b"sealed bytes");
        assert!(dest.url("host-a/data/ab/abcdef").starts_with("file:///"));
    }
}
