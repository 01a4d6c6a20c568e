//! Test harness: a real clamd, a real S3 server (s3s-fs) on loopback and a real backupfs
//! mount, all in a temporary directory, all stopped by `Drop` even when a test fails.
//!
//! Tools are found through `BACKUPFS_TEST_CLAMD`, `BACKUPFS_TEST_S3S_FS` and
//! `BACKUPFS_TEST_CONFIG_DIR` (set by scripts/test.sh), falling back to the usual places.

#![allow(dead_code)]

pub mod mount8;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BUCKET: &str = "backups";
pub const PREFIX: &str = "host-a";
pub const ACCESS_KEY: &str = "backupfs-test";
pub const SECRET_KEY: &str = "backupfs-test-secret";

/// EICAR, assembled at run time so the repository holds no copy of it.
pub fn eicar() -> Vec<u8> {
    let head = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$";
    let tail = "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    format!("{head}{tail}").into_bytes()
}

fn tool(var: &str, fallbacks: &[&str]) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    fallbacks
        .iter()
        .map(|f| PathBuf::from(f.replace("~", &home)))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("{var} is not set and none of {fallbacks:?} exists; run scripts/test.sh")
        })
}

fn config_dir() -> PathBuf {
    std::env::var("BACKUPFS_TEST_CONFIG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("config"))
}

/// `n` bytes that do not compress, the same for the same seed (xorshift).
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut x = seed | 1;
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free loopback port")
}

/// Polls `f` every 100 ms until it returns `Some`, or panics with `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops a child we started: SIGTERM, a bounded wait, then SIGKILL.
fn stop(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait().ok()
}

pub struct Clamd {
    pub socket: PathBuf,
    conf: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Clamd {
    /// `max_size` is clamd's MaxScanSize and MaxFileSize: what it reads of one stream.
    pub fn start(dir: &Path, stream_max: &str, max_size: &str) -> Self {
        let db = dir.join("db");
        std::fs::create_dir_all(&db).unwrap();
        for entry in std::fs::read_dir(config_dir().join("clamav")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), db.join(entry.file_name())).unwrap();
        }
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let socket = dir.join("clamd.sock");
        let log = dir.join("clamd.log");
        let conf = dir.join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "Foreground yes\nDatabaseDirectory {}\nLocalSocket {}\nTemporaryDirectory {}\n\
                 LogFile {}\nStreamMaxLength {stream_max}\nMaxScanSize {max_size}\n\
                 MaxFileSize {max_size}\nAlertExceedsMax yes\n",
                db.display(),
                socket.display(),
                tmp.display(),
                log.display()
            ),
        )
        .unwrap();
        let mut clamd = Self {
            socket,
            conf,
            log,
            child: None,
        };
        clamd.resume();
        clamd
    }

    /// Starts clamd (again) with the same socket and waits until it answers PING.
    pub fn resume(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let child = Command::new(tool("BACKUPFS_TEST_CLAMD", &["/usr/sbin/clamd"]))
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start clamd");
        self.child = Some(child);
        wait_for("clamd to answer PING", Duration::from_secs(60), || {
            let mut s = UnixStream::connect(&self.socket).ok()?;
            s.write_all(b"zPING\0").ok()?;
            let mut reply = Vec::new();
            s.read_to_end(&mut reply).ok()?;
            reply.starts_with(b"PONG").then_some(())
        });
    }

    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, Duration::from_secs(10));
        }
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.pause();
    }
}

pub struct S3 {
    pub endpoint: String,
    pub data: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl S3 {
    pub fn start(dir: &Path) -> Self {
        let data = dir.join("s3");
        std::fs::create_dir_all(data.join(BUCKET)).unwrap();
        let port = free_port();
        let mut s3 = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            data,
            port,
            child: None,
        };
        s3.resume();
        s3
    }

    /// Starts the server (again) on the same port and data directory.
    pub fn resume(&mut self) {
        let child = Command::new(tool("BACKUPFS_TEST_S3S_FS", &["~/.cargo/bin/s3s-fs"]))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        self.child = Some(child);
        let port = self.port;
        wait_for("s3s-fs to listen", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    pub fn pause(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, Duration::from_secs(5));
        }
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        self.pause();
    }
}

/// Knobs a test may turn before the daemon starts.
pub struct Options {
    pub max_file_size: &'static str,
    /// clamd's own StreamMaxLength.
    pub clamd_stream_max: &'static str,
    /// clamd's MaxScanSize and MaxFileSize. clamd runs with AlertExceedsMax, so a larger
    /// file comes back as `Heuristics.Limits.Exceeded.*`, not clean.
    pub clamd_max_size: &'static str,
    /// `scan.max-stream-size`: what backupfs believes clamd accepts.
    pub max_stream_size: &'static str,
    /// Extra lines for the `[destination]` section.
    pub destination_extra: &'static str,
    /// `destination.allowed`; `None` allows exactly the configured bucket and prefix.
    pub allowed: Option<&'static str>,
    /// Write to a local directory (`kind = "dir"`) instead of the S3 server.
    pub dir_destination: bool,
    /// `pipeline.drain-timeout`.
    pub drain_timeout: &'static str,
    /// Name the passphrase as a systemd credential instead of a file.
    pub passphrase_credential: bool,
    /// `encrypt.passphrase-command` (a TOML array) instead of a file.
    pub passphrase_command: Option<String>,
    /// `pipeline.retry-delay` and `pipeline.retry-max-delay`.
    pub retry_delay: &'static str,
    pub retry_max_delay: &'static str,
    /// `pipeline.settle-delay` and `pipeline.max-delay`.
    pub settle_delay: &'static str,
    pub max_delay: &'static str,
    /// Extra lines for the `[state]` section.
    pub state_extra: String,
    /// The `[catalog]` section's lines.
    pub catalog: &'static str,
    /// `mount.passthrough`: "auto", "on" or "off".
    pub passthrough: &'static str,
    /// `mount.allow-other`: other users may use the mount, with the kernel's permission checks.
    pub allow_other: bool,
    /// `log.format`: "text" or "json".
    pub log_format: &'static str,
    /// Extra lines for the `[policy]` section.
    pub policy_extra: &'static str,
    /// More entries for `destination.allowed`, after the default or `allowed`.
    pub also_allowed: &'static [&'static str],
    /// Extra lines for the `[classify]` section.
    pub classify_extra: &'static str,
    /// Sections appended to the config, such as `[class.personal]`.
    pub config_tail: &'static str,
    /// Put a recording proxy between backupfs and the S3 server, so that a test can see
    /// the requests it sent ([`Recorder::requests`]).
    pub record_s3: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_file_size: "5GiB",
            clamd_stream_max: "64M",
            clamd_max_size: "512M",
            max_stream_size: "64MiB",
            destination_extra: "",
            allowed: None,
            dir_destination: false,
            drain_timeout: "5s",
            passphrase_credential: false,
            passphrase_command: None,
            retry_delay: "200ms",
            retry_max_delay: "1s",
            settle_delay: "200ms",
            max_delay: "5s",
            state_extra: String::new(),
            catalog: "flush-interval = \"300ms\"",
            passthrough: "auto",
            allow_other: false,
            log_format: "text",
            policy_extra: "",
            also_allowed: &[],
            config_tail: "",
            classify_extra: "",
            record_s3: false,
        }
    }
}

/// SQL: the catalog row is a file's version, not a directory's (whose mode holds S_IFDIR).
pub const NOT_DIR: &str = "(mode & 61440) != 16384";

/// A running backupfs mount with its clamd and S3 server.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub source: PathBuf,
    pub mnt: PathBuf,
    pub config: PathBuf,
    pub passphrase: PathBuf,
    pub metrics_port: u16,
    pub clamd: Clamd,
    pub s3: S3,
    /// The recording proxy backupfs talks to instead of `s3`, if the test asked for one.
    pub recorder: Option<Recorder>,
    daemon: Option<Child>,
    env: Vec<(String, String)>,
    rt: tokio::runtime::Runtime,
}

impl Stack {
    pub fn start() -> Self {
        Self::with(Options::default())
    }

    pub fn with(opts: Options) -> Self {
        Self::with_env(opts, &[])
    }

    /// Like [`Stack::with`], with extra environment variables for the daemon.
    pub fn with_env(opts: Options, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("backupfs-test")
            .tempdir()
            .unwrap();
        let root = dir.path().to_path_buf();
        let (source, mnt) = (root.join("source"), root.join("mnt"));
        std::fs::create_dir_all(&source).unwrap();
        std::fs::create_dir_all(&mnt).unwrap();
        let clamd = Clamd::start(
            &root.join("clamd"),
            opts.clamd_stream_max,
            opts.clamd_max_size,
        );
        let s3 = S3::start(&root);
        let recorder = opts.record_s3.then(|| Recorder::start(s3.port));
        let endpoint = recorder
            .as_ref()
            .map_or(s3.endpoint.clone(), |r| r.endpoint.clone());
        let passphrase = root.join("passphrase");
        std::fs::write(&passphrase, "correct horse battery staple\n").unwrap();
        std::fs::set_permissions(&passphrase, std::fs::Permissions::from_mode(0o600)).unwrap();
        let metrics_port = free_port();
        let config = root.join("backupfs.toml");
        std::fs::write(
            &config,
            config_text(&root, &clamd, &endpoint, metrics_port, &opts),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut stack = Self {
            dir,
            source,
            mnt,
            config,
            passphrase,
            metrics_port,
            clamd,
            s3,
            recorder,
            daemon: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            rt,
        };
        stack.mount();
        stack
    }

    /// Starts the daemon and waits until the mount is up.
    pub fn mount(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("daemon.stderr")).unwrap();
        let child = self
            .backupfs(&["mount"])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env(
                "BACKUPFS_LOG",
                "debug,aws_smithy_runtime=info,hyper=info,aws_config=info",
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start backupfs");
        self.daemon = Some(child);
        let started = Instant::now();
        while !is_mounted(&self.mnt) {
            if let Some(status) = self
                .daemon
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "backupfs exited with {status} before mounting:\n{}",
                    self.stderr()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "mount did not appear:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the daemon with SIGKILL, as a crash would, and clears the dead mount.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.clear_mount();
    }

    /// Opens the daemon's state database, read-only, as an operator would with sqlite3.
    pub fn db(&self) -> rusqlite::Connection {
        let path = self.dir.path().join("state/index.sqlite3");
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the state database");
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn
    }

    /// The newest catalog entry for each file's path: (sha256 hex, object). Directories'
    /// versions are left out.
    pub fn catalog(&self) -> std::collections::HashMap<String, (String, String)> {
        let conn = self.db();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT path, sha256, object FROM catalog WHERE {NOT_DIR} ORDER BY id"
            ))
            .unwrap();
        let rows = stmt
            .query_map([], |r| {
                let path: Vec<u8> = r.get(0)?;
                let sha: Vec<u8> = r.get(1)?;
                Ok((
                    String::from_utf8_lossy(&path).into_owned(),
                    (hex::encode(sha), r.get::<_, String>(2)?),
                ))
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// How many versions of `path` the catalog holds.
    pub fn versions(&self, path: &str) -> i64 {
        self.db()
            .query_row(
                "SELECT COUNT(*) FROM catalog WHERE path = ?1",
                [path.as_bytes()],
                |r| r.get(0),
            )
            .unwrap()
    }

    /// `backupfs ARGS --config CONFIG` with the stack's credentials.
    fn backupfs(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_backupfs"));
        cmd.args(args)
            .arg("--config")
            .arg(&self.config)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        cmd
    }

    /// Runs `backupfs ARGS --config CONFIG`; returns whether it succeeded and what it
    /// printed on stdout and on stderr.
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        self.cli_timeout(args, Duration::from_secs(600))
    }

    /// Like [`Stack::cli`] for a command that might not return (such as a mount that should
    /// have refused to start): killed after `limit`, and any mount it made is removed.
    pub fn cli_timeout(&self, args: &[&str], limit: Duration) -> (bool, String, String) {
        let mut child = self
            .backupfs(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run backupfs");
        // Drain the pipes while waiting, so a chatty command never blocks on them.
        let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let out = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text
        });
        let err = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // A mount this command made (it should have refused) must not outlive it; the
        // stack's own mount is left alone.
        if args.first() == Some(&"mount") && self.daemon.is_none() {
            self.clear_mount();
        }
        (
            status.is_some_and(|s| s.success()),
            out.join().unwrap(),
            err.join().unwrap(),
        )
    }

    /// Removes the mount if one is left (after a kill, say).
    fn clear_mount(&self) {
        if is_mounted(&self.mnt) {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.mnt)
                .status();
        }
    }

    /// Waits until `n` versions of files are recorded and every record (of files,
    /// directories and removals) is in the catalog in the destination.
    pub fn wait_published(&self, n: i64) {
        wait_for(
            &format!("{n} versions published"),
            Duration::from_secs(120),
            || {
                let (all, unpublished): (i64, i64) = self
                    .db()
                    .query_row(
                        &format!(
                            "SELECT COALESCE(SUM({NOT_DIR}), 0),
                                COALESCE(SUM(published = 0), 0)
                                + (SELECT COUNT(*) FROM removals WHERE published = 0)
                             FROM catalog"
                        ),
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .ok()?;
                (all >= n && unpublished == 0).then_some(())
            },
        );
    }

    /// Rows left in the job queue.
    pub fn queued_jobs(&self) -> i64 {
        self.db()
            .query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get(0))
            .unwrap()
    }

    /// Stops the daemon with SIGTERM and returns its exit status.
    pub fn stop_daemon(&mut self) -> Option<std::process::ExitStatus> {
        let status = self
            .daemon
            .take()
            .and_then(|mut c| stop(&mut c, Duration::from_secs(60)));
        self.clear_mount();
        status
    }

    pub fn daemon_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let child = self.daemon.as_mut()?;
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.daemon = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.stderr")).unwrap_or_default()
    }

    pub fn log_file(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `log.file`.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("logs/backup_pipeline.log")
    }

    pub fn quarantine_dir(&self) -> PathBuf {
        self.dir.path().join("logs/quarantine")
    }

    pub fn audit(&self) -> Vec<Value> {
        let text =
            std::fs::read_to_string(self.dir.path().join("logs/uploads.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
            .collect()
    }

    /// Waits for the audit record of `path` (inside the mount) and returns it.
    pub fn wait_audit(&self, path: &str) -> Value {
        wait_for(
            &format!("an audit record for {path}"),
            Duration::from_secs(60),
            || self.audit().into_iter().find(|r| r["path"] == path),
        )
    }

    pub fn put_file(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.mnt.join(name);
        std::fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// A client of the test S3 server, with the harness's own credentials (the test
    /// process's environment is left alone).
    fn client(&self) -> aws_sdk_s3::Client {
        let creds =
            aws_sdk_s3::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test");
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(creds)
            .endpoint_url(&self.s3.endpoint)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Content object keys in the bucket, listed over the S3 protocol.
    pub fn objects(&self) -> Vec<String> {
        self.keys(&format!("{PREFIX}/data/"))
    }

    /// Every key in the bucket under `prefix`, listed over the S3 protocol.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let client = self.client();
        self.rt.block_on(async {
            let mut keys = Vec::new();
            let mut token = None;
            loop {
                let out = client
                    .list_objects_v2()
                    .bucket(BUCKET)
                    .prefix(prefix)
                    .set_continuation_token(token)
                    .send()
                    .await
                    .expect("ListObjectsV2");
                keys.extend(
                    out.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_string)),
                );
                token = out.next_continuation_token().map(str::to_string);
                if token.is_none() {
                    return keys;
                }
            }
        })
    }

    /// What HeadObject says about an object besides its size and dates: user metadata,
    /// content type, encoding, disposition, tags.
    pub fn head(&self, key: &str) -> String {
        let client = self.client();
        self.rt.block_on(async {
            let out = client
                .head_object()
                .bucket(BUCKET)
                .key(key)
                .send()
                .await
                .expect("HeadObject");
            format!(
                "{:?} {:?} {:?} {:?} {:?}",
                out.metadata(),
                out.content_type(),
                out.content_encoding(),
                out.content_disposition(),
                out.e_tag()
            )
        })
    }

    /// GETs an object over S3 and decrypts it with stock `gpg` and `zstd`.
    pub fn restore_with_stock_tools(&self, key: &str) -> Vec<u8> {
        self.decrypt_with_stock_tools(&self.object_bytes(key))
    }

    /// An object's bytes as stored in the bucket.
    pub fn object_bytes(&self, key: &str) -> Vec<u8> {
        let client = self.client();
        self.rt.block_on(async {
            let out = client
                .get_object()
                .bucket(BUCKET)
                .key(key)
                .send()
                .await
                .expect("GetObject");
            out.body
                .collect()
                .await
                .expect("object body")
                .into_bytes()
                .to_vec()
        })
    }

    /// `gpg -d | zstd -d` of sealed bytes, with the stack's passphrase file.
    pub fn decrypt_with_stock_tools(&self, sealed_bytes: &[u8]) -> Vec<u8> {
        let sealed = self.dir.path().join("fetched.pgp");
        std::fs::write(&sealed, sealed_bytes).unwrap();
        let home = self.dir.path().join("gnupg");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        let script = format!(
            "gpg --homedir '{}' --batch --quiet --no-autostart --pinentry-mode loopback \
             --passphrase-file '{}' -d '{}' | zstd -d -c",
            home.display(),
            self.passphrase.display(),
            sealed.display()
        );
        let out = Command::new("bash")
            .arg("-o")
            .arg("pipefail")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gpg | zstd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    pub fn metrics(&self) -> String {
        let mut s =
            TcpStream::connect(("127.0.0.1", self.metrics_port)).expect("connect to /metrics");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        body
    }

    /// The value of one sample in the metrics text, such as
    /// `backupfs_files_total{outcome="infected"}`.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop_daemon();
        if std::thread::panicking() {
            eprintln!("--- backupfs stderr ---\n{}", self.stderr());
        }
    }
}

pub fn is_mounted(mnt: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = mnt.to_string_lossy();
    mounts.lines().any(|l| l.split(' ').nth(4) == Some(&*want))
}

fn config_text(
    root: &Path,
    clamd: &Clamd,
    endpoint: &str,
    metrics_port: u16,
    opts: &Options,
) -> String {
    format!(
        r#"
[mount]
source = "source"
mountpoint = "mnt"
passthrough = "{passthrough}"
allow-other = {allow_other}
[state]
dir = "state"
{state_extra}
[log]
file = "logs/backup_pipeline.log"
format = "{log_format}"
audit = "logs/uploads.jsonl"
quarantine-dir = "logs/quarantine"
[pipeline]
workers = 2
retry-delay = "{retry}"
retry-max-delay = "{retry_max}"
drain-timeout = "{drain}"
settle-delay = "{settle}"
max-delay = "{max_delay}"
[classify]
sensitive-keywords = ["confidential", "password", "client data"]
{classify_extra}
[policy]
max-file-size = "{max}"
blacklist = ["**/*.exe"]
{policy_extra}
[scan]
clamd = "unix:{sock}"
max-stream-size = "{max_stream}"
[encrypt]
{passphrase}
zstd-level = 3
{destination}
{destination_extra}
[catalog]
{catalog}
[metrics]
listen = "127.0.0.1:{metrics_port}"
{config_tail}
"#,
        max = opts.max_file_size,
        sock = clamd.socket.display(),
        destination_extra = opts.destination_extra,
        drain = opts.drain_timeout,
        settle = opts.settle_delay,
        retry = opts.retry_delay,
        passphrase = match &opts.passphrase_command {
            Some(argv) => format!("passphrase-command = {argv}"),
            None if opts.passphrase_credential => {
                "passphrase-credential = \"backupfs-passphrase\"".to_string()
            }
            None => format!("passphrase-file = \"{}/passphrase\"", root.display()),
        },
        retry_max = opts.retry_max_delay,
        max_delay = opts.max_delay,
        max_stream = opts.max_stream_size,
        state_extra = opts.state_extra,
        catalog = opts.catalog,
        destination = destination_text(root, endpoint, opts),
        policy_extra = opts.policy_extra,
        config_tail = opts.config_tail,
        classify_extra = opts.classify_extra,
        passthrough = opts.passthrough,
        allow_other = opts.allow_other,
        log_format = opts.log_format,
    )
}

fn destination_text(root: &Path, endpoint: &str, opts: &Options) -> String {
    let allowed = |first: String| {
        std::iter::once(first)
            .chain(opts.also_allowed.iter().map(|a| a.to_string()))
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if opts.dir_destination {
        let allowed = allowed(
            opts.allowed
                .map(str::to_string)
                .unwrap_or_else(|| format!("file://{}/objects/{PREFIX}", root.display())),
        );
        return format!(
            "[destination]\nkind = \"dir\"\npath = \"objects\"\nprefix = \"{PREFIX}\"\nallowed = [{allowed}]\n"
        );
    }
    let allowed = allowed(
        opts.allowed
            .map(str::to_string)
            .unwrap_or_else(|| format!("s3://{BUCKET}/{PREFIX}")),
    );
    format!(
        "[destination]\nkind = \"s3\"\nbucket = \"{BUCKET}\"\nprefix = \"{PREFIX}\"\n\
         endpoint = \"{endpoint}\"\nregion = \"us-east-1\"\npath-style = true\nallowed = [{allowed}]\n"
    )
}

/// What each connection through the [`Recorder`] sent, one buffer per connection.
type Sent = std::sync::Arc<std::sync::Mutex<Vec<std::sync::Arc<std::sync::Mutex<Vec<u8>>>>>>;

/// A loopback TCP proxy in front of the S3 server that keeps every byte the client sent,
/// so that a test can read the requests (method, path, headers) backupfs made.
pub struct Recorder {
    pub endpoint: String,
    /// What the client sent, one buffer per connection.
    sent: Sent,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Recorder {
    pub fn start(upstream_port: u16) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the recording proxy");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let sent: Sent = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (conns, stopping) = (sent.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    continue;
                };
                let log = Arc::new(Mutex::new(Vec::new()));
                conns.lock().unwrap().push(log.clone());
                let (mut from_client, mut to_server) = (client.try_clone().unwrap(), server);
                let (mut from_server, mut to_client) = (to_server.try_clone().unwrap(), client);
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(n) = from_client.read(&mut buf) {
                        if n == 0 || to_server.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        log.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                    let _ = to_server.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from_server, &mut to_client);
                    let _ = to_client.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Self {
            endpoint,
            sent,
            stop,
        }
    }

    /// The head (request line and headers, names in lower case) of every request whose
    /// path starts with `/BUCKET/`, in the order each connection sent them.
    pub fn requests(&self) -> Vec<String> {
        let mut out = Vec::new();
        for conn in self.sent.lock().unwrap().iter() {
            let bytes = conn.lock().unwrap().clone();
            // Bodies are sealed (random-looking) bytes: a request line cannot hide in them
            // by chance, so searching the whole stream finds exactly the requests.
            for method in ["PUT", "POST", "GET", "HEAD", "DELETE"] {
                let needle = format!("{method} /{BUCKET}/");
                let mut at = 0;
                while let Some(i) = find(&bytes[at..], needle.as_bytes()) {
                    let start = at + i;
                    let end = find(&bytes[start..], b"\r\n\r\n").map_or(bytes.len(), |e| start + e);
                    out.push(String::from_utf8_lossy(&bytes[start..end]).to_lowercase());
                    at = end;
                }
            }
        }
        out
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
