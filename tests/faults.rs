//! Nothing is ever lost: crashes, restarts, outages, renames, rewrites and a full spool,
//! each injected for real against a real mount, clamd and S3 server.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{wait_for, Options, Stack};
use sha2::{Digest, Sha256};

fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A small deterministic generator, so a failing run can be repeated from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn seed() -> u64 {
    let seed = std::env::var("BACKUPFS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| (std::process::id() as u64 * 2654435761) | 1);
    eprintln!("seed {seed} (set BACKUPFS_TEST_SEED to repeat)");
    seed
}

/// Waits until the catalog's newest version of every file has the file's hash.
fn wait_all_backed_up(stack: &Stack, files: &BTreeMap<String, String>, limit: Duration) {
    wait_for("every file's latest content in the catalog", limit, || {
        let catalog = stack.catalog();
        files
            .iter()
            .all(|(path, sha)| catalog.get(path).is_some_and(|(s, _)| s == sha))
            .then_some(())
    });
}

/// Decrypts every object in the bucket with gpg and zstd and checks that each holds
/// exactly the content its catalog entry names.
fn check_objects(stack: &Stack, files: &BTreeMap<String, String>) {
    let catalog = stack.catalog();
    let mut by_object: HashMap<String, String> = HashMap::new();
    for (path, sha) in files {
        let (cat_sha, object) = &catalog[path];
        assert_eq!(cat_sha, sha, "{path}");
        by_object.insert(object.clone(), sha.clone());
    }
    for key in stack.objects() {
        let plain = stack.restore_with_stock_tools(&key);
        if let Some(sha) = by_object.get(&key) {
            assert_eq!(
                &sha_hex(&plain),
                sha,
                "object {key} does not hold its content"
            );
        }
    }
    for object in by_object.keys() {
        assert!(
            stack.objects().contains(object),
            "object {object} is missing"
        );
    }
}

#[test]
/// `BACKUPFS_CRASH_FILES` and `BACKUPFS_CRASH_KILLS` scale this up; scripts/fault-crash.sh
/// runs the long variant (1,000 files, 20 kills).
fn kill_minus_nine_at_random_moments_loses_nothing() {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (count, kills) = (
        env("BACKUPFS_CRASH_FILES", 120),
        env("BACKUPFS_CRASH_KILLS", 5),
    );
    let mut rng = Rng(seed());
    let mut stack = Stack::start();
    let mut files = BTreeMap::new();
    let mut killed_mid_backup = 0;
    // Files are written in as many waves as there are kills, each wave just before its
    // kill, so that every kill meets files still on their way however fast the machine.
    let per_wave = count.div_ceil(kills.max(1));
    for round in 0..kills.max(1) {
        for i in round * per_wave..((round + 1) * per_wave).min(count) {
            let len = match i % 10 {
                0 => 1 << 20 | rng.below(1 << 20) as usize,
                1..=3 => 64 << 10 | rng.below(64 << 10) as usize,
                _ => 1 + rng.below(8 << 10) as usize,
            };
            let data = rng.bytes(len);
            let name = format!("d{}/f{i:03}.bin", i % 7);
            std::fs::create_dir_all(stack.mnt.join(format!("d{}", i % 7))).unwrap();
            stack.put_file(&name, &data);
            files.insert(name, sha_hex(&data));
        }
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        if stack.queued_jobs() > 0 {
            killed_mid_backup += 1;
        }
        eprintln!(
            "kill -9, round {round}: {} of {} files recorded",
            stack.catalog().len(),
            files.len()
        );
        stack.kill9();
        stack.mount();
    }
    wait_all_backed_up(&stack, &files, Duration::from_secs(180 + 2 * count as u64));
    check_objects(&stack, &files);
    wait_for("an empty queue", Duration::from_secs(30), || {
        (stack.queued_jobs() == 0).then_some(())
    });
    assert!(
        killed_mid_backup > 0,
        "no kill landed while files were queued"
    );
    eprintln!(
        "files: {count}, kills: {kills} ({killed_mid_backup} with files queued), files lost: 0"
    );
}

#[test]
fn unmount_with_a_backlog_resumes_at_the_next_start() {
    let mut stack = Stack::with(Options {
        drain_timeout: "1s",
        ..Options::default()
    });
    stack.clamd.pause();
    let mut files = BTreeMap::new();
    for i in 0..3000 {
        let name = format!("n{:02}/{i:04}.txt", i % 30);
        if i < 30 {
            std::fs::create_dir_all(stack.mnt.join(format!("n{i:02}"))).unwrap();
        }
        let data = format!("note {i}\n").into_bytes();
        stack.put_file(&name, &data);
        files.insert(name, sha_hex(&data));
    }
    let status = stack.stop_daemon().expect("daemon exits");
    assert!(status.success(), "{status}");
    assert_eq!(
        stack.queued_jobs(),
        3000,
        "every file is still queued after the stop"
    );
    assert!(stack.log_file().contains("stopped with files still queued"));

    stack.clamd.resume();
    stack.mount();
    wait_all_backed_up(&stack, &files, Duration::from_secs(300));
    assert_eq!(stack.catalog().len(), 3000);
}

#[test]
fn bucket_outage_loses_nothing_and_shows_in_metrics() {
    let mut stack = Stack::start();
    let mut files = BTreeMap::new();
    let mut put = |stack: &Stack, i: usize| {
        let data = format!("record {i}\n").repeat(100).into_bytes();
        let name = format!("r{i:03}.txt");
        stack.put_file(&name, &data);
        files.insert(name, sha_hex(&data));
    };
    for i in 0..10 {
        put(&stack, i);
    }
    wait_for("the first uploads", Duration::from_secs(60), || {
        (stack.catalog().len() >= 3).then_some(())
    });
    stack.s3.pause();
    let outage = Instant::now();
    for i in 10..30 {
        put(&stack, i);
    }
    // Files wait either at the check for content another host stored, or at the upload.
    wait_for("destination retries", Duration::from_secs(30), || {
        let retries = stack.metric("backupfs_retries_total{stage=\"dedup\"}")
            + stack.metric("backupfs_retries_total{stage=\"upload\"}");
        (retries >= 1.0).then_some(())
    });
    assert_eq!(stack.metric("backupfs_destination_up"), 0.0);
    assert!(
        stack.metric("backupfs_queue_depth") > 0.0,
        "the backlog shows"
    );
    std::thread::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed()));
    stack.s3.resume();

    wait_all_backed_up(&stack, &files, Duration::from_secs(120));
    check_objects(&stack, &files);
    assert_eq!(
        stack.metric("backupfs_files_total{outcome=\"failed\"}"),
        0.0
    );
    assert_eq!(stack.metric("backupfs_destination_up"), 1.0);
}

#[test]
fn clamd_outage_mid_run_uploads_nothing_unscanned() {
    let mut stack = Stack::start();
    let mut files = BTreeMap::new();
    for i in 0..40 {
        if i == 15 {
            stack.clamd.pause();
        }
        let data = format!("scan me {i}\n").into_bytes();
        let name = format!("s{i:02}.txt");
        stack.put_file(&name, &data);
        files.insert(name, sha_hex(&data));
    }
    wait_for("a scan retry", Duration::from_secs(30), || {
        (stack.metric("backupfs_retries_total{stage=\"scan\"}") >= 1.0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    stack.clamd.resume();
    wait_all_backed_up(&stack, &files, Duration::from_secs(120));

    // Every upload in the log follows a clean scan of the same job.
    let log = stack.log_file();
    let uploaded: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("stage=\"upload\"") && l.contains(" uploaded "))
        .collect();
    assert_eq!(uploaded.len(), 40);
    for line in uploaded {
        let job = line
            .split("job=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap();
        let scanned = format!("scanned job={job} stage=\"scan\" verdict=Clean");
        assert!(
            log.contains(&scanned),
            "job {job} was uploaded without a clean scan"
        );
    }
}

#[test]
fn a_long_backoff_ends_as_soon_as_clamd_is_back() {
    let mut stack = Stack::with(Options {
        retry_delay: "60s",
        retry_max_delay: "60s",
        ..Options::default()
    });
    stack.clamd.pause();
    stack.put_file("waits.txt", b"scanned once clamd is back\n");
    wait_for("a scan retry", Duration::from_secs(30), || {
        (stack.metric("backupfs_retries_total{stage=\"scan\"}") >= 1.0).then_some(())
    });
    // The retry's log line names the file as well as the cause.
    let retried = stack
        .log_file()
        .lines()
        .find(|l| l.contains("will retry"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(
        retried.contains("waits.txt") && retried.contains("unreachable"),
        "{retried:?}"
    );
    stack.clamd.resume();
    // The next retry is due in 45-60 s; the once-a-second probe must not wait for it.
    let back = Instant::now();
    let record = stack.wait_audit("waits.txt");
    assert_eq!(record["outcome"], "uploaded", "{record}");
    assert!(
        back.elapsed() < Duration::from_secs(30),
        "waited {:?} for the backoff",
        back.elapsed()
    );
}

#[test]
fn temp_then_rename_backs_up_the_final_name_only() {
    let stack = Stack::start();
    stack.put_file("doc.tmp", b"draft, final version\n");
    std::fs::rename(stack.mnt.join("doc.tmp"), stack.mnt.join("doc.txt")).unwrap();
    stack.put_file("scratch.txt", b"gone at once\n");
    std::fs::remove_file(stack.mnt.join("scratch.txt")).unwrap();
    std::fs::create_dir(stack.mnt.join("tmpdir")).unwrap();
    stack.put_file("tmpdir/inner.txt", b"moved with its directory\n");
    std::fs::rename(stack.mnt.join("tmpdir"), stack.mnt.join("final")).unwrap();

    let record = stack.wait_audit("doc.txt");
    assert_eq!(record["outcome"], "uploaded", "{record}");
    assert_eq!(stack.wait_audit("final/inner.txt")["outcome"], "uploaded");
    // The deleted file was either dropped as vanished or never queued (its release came
    // after the unlink); either way the queue empties and nothing is stored for it.
    wait_for("an empty queue", Duration::from_secs(30), || {
        (stack.queued_jobs() == 0).then_some(())
    });
    let catalog = stack.catalog();
    let mut paths: Vec<&String> = catalog.keys().collect();
    paths.sort();
    assert_eq!(paths, ["doc.txt", "final/inner.txt"]);
    assert!(stack
        .audit()
        .iter()
        .all(|r| r["path"] != "doc.tmp" && r["path"] != "tmpdir/inner.txt"));
    assert_eq!(
        stack.objects().len(),
        2,
        "no object for the temp name or the deleted file"
    );
    assert_eq!(
        stack.queued_jobs(),
        0,
        "the dropped job is not retried forever"
    );
}

#[test]
fn a_burst_of_rewrites_is_backed_up_once_settled() {
    let stack = Stack::with(Options {
        settle_delay: "1s",
        max_delay: "30s",
        ..Options::default()
    });
    for i in 0..20 {
        stack.put_file("draft.txt", format!("draft number {i}\n").as_bytes());
        std::thread::sleep(Duration::from_millis(20));
    }
    let files = BTreeMap::from([("draft.txt".to_string(), sha_hex(b"draft number 19\n"))]);
    wait_all_backed_up(&stack, &files, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        stack.versions("draft.txt"),
        1,
        "one backup of the settled version"
    );
    assert_eq!(stack.objects().len(), 1);
}

#[test]
fn a_file_that_never_settles_is_still_backed_up_every_max_delay() {
    let stack = Stack::with(Options {
        settle_delay: "1s",
        max_delay: "2s",
        ..Options::default()
    });
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(7) {
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(stack.mnt.join("app.log"))
            .unwrap();
        writeln!(log, "line {i}").unwrap();
        drop(log);
        i += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let versions = stack.versions("app.log");
    assert!(
        versions >= 2,
        "only {versions} backups while the log kept changing for 7 s"
    );
    assert!(
        versions < 10,
        "{versions} backups: the settle delay did not coalesce"
    );
}

#[test]
fn a_log_held_open_is_backed_up_while_it_stays_open() {
    use std::io::Write;
    let stack = Stack::with(Options {
        settle_delay: "500ms",
        max_delay: "2s",
        ..Options::default()
    });
    let mut log = std::fs::File::create(stack.mnt.join("held.log")).unwrap();
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(8) {
        writeln!(log, "line {i}").unwrap();
        log.flush().unwrap();
        i += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    let versions = stack.versions("held.log");
    drop(log);
    assert!(
        versions >= 1,
        "nothing backed up while the log stayed open for 8 s"
    );
}

#[test]
fn a_file_appended_faster_than_it_is_read_is_backed_up_from_a_snapshot() {
    use std::io::Write;
    let stack = Stack::with(Options {
        settle_delay: "200ms",
        max_delay: "1s",
        ..Options::default()
    });
    let mut rng = Rng(seed());
    stack.put_file("busy.log", &rng.bytes(24 << 20));
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) && stack.versions("busy.log") == 0 {
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(stack.mnt.join("busy.log"))
            .unwrap();
        log.write_all(&rng.bytes(4096)).unwrap();
        drop(log);
        std::thread::sleep(Duration::from_millis(30));
    }
    assert!(
        stack.versions("busy.log") >= 1,
        "never backed up while appended to"
    );
    assert!(stack.log_file().contains("backing up a snapshot"));
    // The stored object holds exactly the bytes its catalog hash names.
    let (sha, object) = stack.catalog()["busy.log"].clone();
    assert_eq!(sha_hex(&stack.restore_with_stock_tools(&object)), sha);
}

#[test]
fn rewrite_during_upload_stores_the_final_bytes() {
    let stack = Stack::with(Options {
        clamd_stream_max: "300M",
        max_stream_size: "300MiB",
        ..Options::default()
    });
    let mut rng = Rng(seed());
    let first = rng.bytes(200 << 20);
    let second = rng.bytes(200 << 20);
    stack.put_file("big.bin", &first);
    wait_for("the upload to start", Duration::from_secs(300), || {
        stack.log_file().contains("passed gate 2").then_some(())
    });
    stack.put_file("big.bin", &second);
    let want = sha_hex(&second);
    let files = BTreeMap::from([("big.bin".to_string(), want)]);
    wait_all_backed_up(&stack, &files, Duration::from_secs(600));
    let (_, object) = &stack.catalog()["big.bin"];
    assert_eq!(
        sha_hex(&stack.restore_with_stock_tools(object)),
        files["big.bin"]
    );
    // Whatever else was stored holds exactly what its catalog entry says.
    let conn = stack.db();
    let mut stmt = conn.prepare("SELECT sha256, object FROM content").unwrap();
    let rows: Vec<(Vec<u8>, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (sha, object) in rows {
        assert_eq!(
            sha_hex(&stack.restore_with_stock_tools(&object)),
            hex::encode(sha),
            "torn object {object}"
        );
    }
}

#[test]
fn files_written_while_unmounted_are_caught_up() {
    let mut stack = Stack::start();
    stack.put_file("kept.txt", b"unchanged while unmounted\n");
    stack.put_file("edited.txt", b"first version\n");
    stack.wait_audit("kept.txt");
    stack.wait_audit("edited.txt");
    stack.stop_daemon();

    std::fs::create_dir(stack.source.join("offline")).unwrap();
    std::fs::write(
        stack.source.join("offline/new.txt"),
        b"written straight into the source\n",
    )
    .unwrap();
    std::fs::write(
        stack.source.join("edited.txt"),
        b"second version, edited offline\n",
    )
    .unwrap();
    stack.mount();

    let files = BTreeMap::from([
        (
            "offline/new.txt".to_string(),
            sha_hex(b"written straight into the source\n"),
        ),
        (
            "edited.txt".to_string(),
            sha_hex(b"second version, edited offline\n"),
        ),
        (
            "kept.txt".to_string(),
            sha_hex(b"unchanged while unmounted\n"),
        ),
    ]);
    wait_all_backed_up(&stack, &files, Duration::from_secs(60));
    assert_eq!(
        stack.metric("backupfs_catchup_files_total{result=\"unchanged\"}"),
        1.0
    );
    assert_eq!(
        stack.metric("backupfs_catchup_files_total{result=\"queued\"}"),
        2.0
    );
    assert_eq!(stack.metric("backupfs_catchup_running"), 0.0);
    assert!(stack.log_file().contains("catch-up finished"));
}

/// A tmpfs the test mounts, unmounted again whatever happens.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs");
        Self(dir.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(ok.success(), "remount tmpfs");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_spool_waits_with_a_clear_error_then_lands() {
    let spool_root = tempfile::tempdir().unwrap();
    let spool = Tmpfs::mount(&spool_root.path().join("spool"), "1m");
    let stack = Stack::with(Options {
        state_extra: format!("spool-dir = \"{}\"", spool.0.display()),
        ..Options::default()
    });
    let data = Rng(seed()).bytes(3 << 20);
    stack.put_file("large.bin", &data);
    wait_for("a spool error", Duration::from_secs(60), || {
        (stack.metric("backupfs_retries_total{stage=\"seal\"}") >= 1.0).then_some(())
    });
    let log = stack.log_file();
    assert!(
        log.contains("No space left on device") && log.contains(&spool.0.display().to_string()),
        "the error names the spool"
    );
    assert!(stack.objects().is_empty());

    spool.resize("64m");
    let files = BTreeMap::from([("large.bin".to_string(), sha_hex(&data))]);
    wait_all_backed_up(&stack, &files, Duration::from_secs(120));
    check_objects(&stack, &files);
    drop(stack);
}

#[test]
fn a_full_source_disk_reaches_the_writer_as_enospc() {
    let stack = Stack::start();
    std::fs::create_dir(stack.source.join("small")).unwrap();
    let _tiny = Tmpfs::mount(&stack.source.join("small"), "1m");
    stack.put_file("small/fits.txt", b"fits\n");
    let data = vec![7u8; 2 << 20];
    let err = std::fs::write(stack.mnt.join("small/too-big.bin"), &data).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert_eq!(stack.wait_audit("small/fits.txt")["outcome"], "uploaded");
}

#[test]
fn failed_jobs_wait_for_an_operator_then_retry() {
    let mut stack = Stack::with(Options {
        allowed: Some("s3://backups/elsewhere"),
        ..Options::default()
    });
    stack.put_file("report.txt", b"needs an allowed destination\n");
    assert_eq!(stack.wait_audit("report.txt")["outcome"], "failed");
    wait_for("the failed-jobs gauge", Duration::from_secs(10), || {
        (stack.metric("backupfs_failed_jobs") == 1.0).then_some(())
    });
    let status: serde_json::Value =
        serde_json::from_str(&backupfs(&["status", "--json", "--config"], &stack.config)).unwrap();
    assert_eq!(status["failed"], 1, "{status}");
    assert_eq!(status["failed_jobs"][0]["path"], "report.txt", "{status}");
    assert!(status["failed_jobs"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("destination.allowed"));
    assert_eq!(status["clamd"]["ok"], true, "{status}");
    assert_eq!(status["destination"]["ok"], true, "{status}");
    assert!(status["last_backup"].is_null(), "{status}");
    let list = backupfs(&["queue", "list", "--config"], &stack.config);
    assert!(
        list.contains("\"state\":\"failed\"") && list.contains("destination.allowed"),
        "{list}"
    );

    // The operator fixes the config and restarts: the job still waits for them.
    stack.stop_daemon();
    let fixed = std::fs::read_to_string(&stack.config)
        .unwrap()
        .replace("s3://backups/elsewhere", "s3://backups/host-a");
    std::fs::write(&stack.config, fixed).unwrap();
    stack.mount();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        stack.objects().is_empty(),
        "a failed job is not retried on its own"
    );

    let out = backupfs(&["queue", "retry", "--config"], &stack.config);
    assert!(out.contains("1 failed job"), "{out}");
    let files = BTreeMap::from([(
        "report.txt".to_string(),
        sha_hex(b"needs an allowed destination\n"),
    )]);
    wait_all_backed_up(&stack, &files, Duration::from_secs(60));
    assert_eq!(stack.queued_jobs(), 0);
    stack.clamd.pause();
    let text = backupfs(&["status", "--config"], &stack.config);
    assert!(
        text.contains("0 pending, 0 failed") && text.contains("last backup:  report.txt"),
        "{text}"
    );
    assert!(
        text.contains("clamd") && text.contains("UNREACHABLE"),
        "{text}"
    );
}

#[test]
fn hashes_json_round_trips_and_marks_content_as_backed_up() {
    let stack = Stack::start();
    stack.put_file("old.txt", b"backed up by the old script\n");
    stack.wait_audit("old.txt");
    let exported = backupfs(&["hashes", "export", "--config"], &stack.config);
    let map: serde_json::Value = serde_json::from_str(&exported).unwrap();
    let sha = sha_hex(b"backed up by the old script\n");
    assert_eq!(map[&sha]["path"], "old.txt", "{exported}");

    let mut other = Stack::start();
    let file = other.dir.path().join("hashes.json");
    std::fs::write(&file, &exported).unwrap();
    other.stop_daemon();
    let out = backupfs_args(&[
        "hashes",
        "import",
        "--config",
        other.config.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(out.contains("1 of 1"), "{out}");
    other.mount();
    other.put_file("copy.txt", b"backed up by the old script\n");
    let record = other.wait_audit("copy.txt");
    assert_eq!(record["outcome"], "duplicate", "{record}");
    assert!(other.objects().is_empty());
    let bad = other.dir.path().join("bad.json");
    std::fs::write(&bad, "{\"nothex\": {\"path\": \"a\", \"time\": \"t\"}}").unwrap();
    let out = backupfs_args(&[
        "hashes",
        "import",
        "--config",
        other.config.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert!(out.contains("nothex") && out.contains("bad.json"), "{out}");
}

fn backupfs(args: &[&str], config: &Path) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.push(config.to_str().unwrap());
    backupfs_args(&all)
}

fn backupfs_args(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_backupfs"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", common::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", common::SECRET_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn malware_written_into_a_file_mid_job_is_caught_not_uploaded() {
    use std::os::unix::fs::FileExt;
    let stack = Stack::with(Options {
        clamd_stream_max: "300M",
        max_stream_size: "300MiB",
        ..Options::default()
    });
    let clean = Rng(seed()).bytes(150 << 20);
    stack.put_file("tool.bin", &clean);
    wait_for("the job to pass gate 1", Duration::from_secs(120), || {
        stack.log_file().contains("passed gate 1").then_some(())
    });
    // Overwrite the head in place while the job reads the file.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(stack.mnt.join("tool.bin"))
        .unwrap();
    f.write_all_at(&common::eicar(), 0).unwrap();
    drop(f);

    wait_for(
        "the infected version to be caught",
        Duration::from_secs(300),
        || {
            stack
                .audit()
                .iter()
                .any(|r| r["path"] == "tool.bin" && r["outcome"] == "infected")
                .then_some(())
        },
    );
    // Whatever reached the bucket holds exactly what was scanned and hashed: never EICAR.
    for key in stack.objects() {
        let plain = stack.restore_with_stock_tools(&key);
        assert!(
            !plain.starts_with(&common::eicar()),
            "object {key} holds the malware"
        );
        assert_eq!(plain, clean, "object {key} holds neither version");
    }
    assert!(
        !stack.source.join("tool.bin").exists(),
        "the infected file left the source"
    );
}

#[test]
fn a_fifo_swapped_in_does_not_stall_a_worker() {
    let mut stack = Stack::with(Options {
        settle_delay: "1s",
        ..Options::default()
    });
    stack.put_file("pipe.txt", b"soon a fifo\n");
    // The kernel sends release after close(2) returns; swap the file only once it is queued.
    wait_for("pipe.txt to be queued", Duration::from_secs(30), || {
        (stack.queued_jobs() == 1).then_some(())
    });
    std::fs::remove_file(stack.mnt.join("pipe.txt")).unwrap();
    let ok = Command::new("mkfifo")
        .arg(stack.mnt.join("pipe.txt"))
        .status()
        .unwrap();
    assert!(ok.success());
    let record = stack.wait_audit("pipe.txt");
    assert_eq!(record["outcome"], "vanished", "{record}");
    stack.put_file("after.txt", b"workers still run\n");
    assert_eq!(stack.wait_audit("after.txt")["outcome"], "uploaded");
    let status = stack.stop_daemon().expect("exit status");
    assert!(status.success(), "{status}");
}
