//! Real applications on the mount: git, rsync, SQLite, tar, cp -a, concurrent appends, a
//! shared mmap, a sparse file, hard links and unusual names. Each test checks what the
//! application left in the source directory and what `backupfs restore` gives back, against
//! the same real clamd, S3 server and mount as the other suites.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr, OsString};
use std::fs::{File, FileTimes};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::*;
use rusqlite::OptionalExtension;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------
// Trees and files as the tests compare them.

/// A regular file as a backup must give it back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileState {
    sha256: String,
    size: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i64,
}

/// One entry of a tree. Symbolic links, and directories' times, are compared in the source
/// and on the mount only: restore does not keep them (README, "What is not done yet").
/// Directories' modes and owners are compared in the restore too.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
        mtime_ns: i64,
    },
    File(FileState),
    Symlink(PathBuf),
}

fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
}

fn sha256_file(path: &Path) -> String {
    let mut file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            return hex::encode(hasher.finalize());
        }
        hasher.update(&buf[..n]);
    }
}

fn node(path: &Path) -> Node {
    let meta = std::fs::symlink_metadata(path).unwrap();
    let (mode, uid, gid) = (meta.mode() & 0o7777, meta.uid(), meta.gid());
    if meta.is_symlink() {
        Node::Symlink(std::fs::read_link(path).unwrap())
    } else if meta.is_dir() {
        let mtime_ns = mtime_ns(&meta);
        Node::Dir {
            mode,
            uid,
            gid,
            mtime_ns,
        }
    } else {
        Node::File(FileState {
            sha256: sha256_file(path),
            size: meta.size(),
            mode,
            uid,
            gid,
            mtime_ns: mtime_ns(&meta),
        })
    }
}

/// Every entry below `root` (not `root` itself), by path relative to it.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let found = node(&path);
            if matches!(found, Node::Dir { .. }) {
                dirs.push(path.clone());
            }
            out.insert(path.strip_prefix(root).unwrap().to_path_buf(), found);
        }
    }
    out
}

/// The regular files of a snapshot.
fn files(tree: &BTreeMap<PathBuf, Node>) -> BTreeMap<PathBuf, FileState> {
    tree.iter()
        .filter_map(|(p, n)| match n {
            Node::File(f) => Some((p.clone(), f.clone())),
            _ => None,
        })
        .collect()
}

/// The directories of a snapshot, with their mode and owner.
fn dirs(tree: &BTreeMap<PathBuf, Node>) -> BTreeMap<PathBuf, (u32, u32, u32)> {
    tree.iter()
        .filter_map(|(p, n)| match n {
            Node::Dir { mode, uid, gid, .. } => Some((p.clone(), (*mode, *uid, *gid))),
            _ => None,
        })
        .collect()
}

/// Panics with every difference between two maps, not just the first.
fn assert_same<T: PartialEq + std::fmt::Debug>(
    what: &str,
    want: &BTreeMap<PathBuf, T>,
    got: &BTreeMap<PathBuf, T>,
) {
    let keys: BTreeSet<&PathBuf> = want.keys().chain(got.keys()).collect();
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| want.get(*k) != got.get(*k))
        .map(|k| {
            format!(
                "  {k:?}: want {:?}\n  {k:?}:  got {:?}",
                want.get(k),
                got.get(k)
            )
        })
        .collect();
    assert!(diffs.is_empty(), "{what} differs:\n{}", diffs.join("\n"));
}

fn set_mtime(path: &Path, secs: u64, nanos: u32) {
    let at = UNIX_EPOCH + Duration::new(secs, nanos);
    File::open(path)
        .unwrap()
        .set_times(FileTimes::new().set_modified(at).set_accessed(at))
        .unwrap();
}

fn write_file(path: &Path, content: &[u8], mode: u32) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// Runs a command to success and returns its standard output.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------
// The backup: wait until it holds the source, restore it, compare.

/// Why the backup does not yet hold `want` (paths relative to the source); empty once it
/// does: the newest catalog version of every file has its content, mode, owner and mtime,
/// the queue is empty and everything is published to the destination.
fn not_yet_backed_up(stack: &Stack, want: &BTreeMap<PathBuf, FileState>) -> Vec<String> {
    let db = stack.db();
    let mut missing = Vec::new();
    let pending: i64 = db
        .query_row(
            "SELECT (SELECT COUNT(*) FROM jobs) \
             + (SELECT COUNT(*) FROM catalog WHERE published = 0) \
             + (SELECT COUNT(*) FROM removals WHERE published = 0)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if pending > 0 {
        missing.push(format!("{pending} jobs or unpublished records"));
    }
    for (path, file) in want {
        let newest = newest_version(&db, path);
        if newest.as_ref() != Some(file) {
            missing.push(format!("{path:?}: want {file:?}, catalog has {newest:?}"));
        }
    }
    missing
}

/// The newest catalog version of `path`, as a restore of it would give it back.
fn newest_version(db: &rusqlite::Connection, path: &Path) -> Option<FileState> {
    db.query_row(
        "SELECT sha256, size, mode, uid, gid, mtime_ns FROM catalog WHERE path = ?1 \
         ORDER BY id DESC LIMIT 1",
        [path.as_os_str().as_bytes()],
        |r| {
            Ok(FileState {
                sha256: hex::encode(r.get::<_, Vec<u8>>(0)?),
                size: r.get(1)?,
                mode: r.get::<_, u32>(2)? & 0o7777,
                uid: r.get(3)?,
                gid: r.get(4)?,
                mtime_ns: r.get::<_, Option<i64>>(5)?.unwrap_or(i64::MIN),
            })
        },
    )
    .optional()
    .unwrap()
}

fn wait_backed_up(stack: &Stack, want: &BTreeMap<PathBuf, FileState>, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let missing = not_yet_backed_up(stack, want);
        if missing.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let (_, queue, _) = stack.cli(&["queue", "list"]);
            panic!(
                "not backed up after {limit:?}:\n{}\nqueue:\n{queue}",
                missing.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `backupfs restore --to <new dir> /` and the regular files it gave back.
fn restore_all(stack: &Stack, name: &str) -> (PathBuf, BTreeMap<PathBuf, FileState>) {
    let to = stack.dir.path().join(name);
    let (success, out, err) = stack.cli(&["restore", "--to", to.to_str().unwrap(), "/"]);
    assert!(success, "restore failed:\n{out}\n{err}");
    let restored = files(&snapshot(&to));
    (to, restored)
}

/// Waits until the backup holds every regular file of the source as it is now, restores
/// everything into `name` and checks that the restore equals the source: the same names,
/// bytes, mode, owner and mtime, and nothing else; and the same directories, with the same
/// mode and owner.
fn check_backup(stack: &Stack, name: &str, limit: Duration) -> PathBuf {
    let source = snapshot(&stack.source);
    let want = files(&source);
    assert!(!want.is_empty(), "the source holds no files");
    wait_backed_up(stack, &want, limit);
    let (to, restored) = restore_all(stack, name);
    assert_same("the restore against the source", &want, &restored);
    assert_same(
        "the restored directories against the source",
        &dirs(&source),
        &dirs(&snapshot(&to)),
    );
    to
}

const BACKUP_WAIT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------
// 1. git

fn git(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Backup Tester"])
        .args(["-c", "user.email=tester@example.invalid"])
        .args(["-c", "init.defaultBranch=main"])
        .args(["-c", "gc.autoDetach=false", "-c", "maintenance.auto=false"])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CEILING_DIRECTORIES", dir.parent().unwrap())
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
    cmd
}

fn assert_git_repo(repo: &Path) {
    run(git(repo).args(["fsck", "--strict", "--no-progress"]));
    let log = run(git(repo).args(["log", "--format=%s"]));
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        ["commit 3", "commit 2", "commit 1"],
        "git log in {}",
        repo.display()
    );
}

#[test]
fn git_commits_gc_and_fsck_on_the_mount_and_from_the_backup() {
    let stack = Stack::start();
    run(git(&stack.mnt).args(["init", "-q", "repo"]));
    let repo = stack.mnt.join("repo");
    for i in 1..=3 {
        let readme = format!("# project\n{}", "a line of history\n".repeat(i));
        std::fs::write(repo.join("README.md"), readme).unwrap();
        write_file(
            &repo.join(format!("src/part{i}.bin")),
            &random_bytes(10_000 * i, i as u64),
            0o644,
        );
        run(git(&repo).args(["add", "-A"]));
        run(git(&repo).args(["commit", "-q", "-m", &format!("commit {i}")]));
    }
    run(git(&repo).args(["gc", "-q"]));
    assert_git_repo(&repo);
    assert_git_repo(&stack.source.join("repo"));

    let restored = check_backup(&stack, "restored", BACKUP_WAIT);
    assert_git_repo(&restored.join("repo"));
}

// ---------------------------------------------------------------------------------------
// 2. rsync

/// A small tree: nested directories, files from empty to a few MiB, several modes, and
/// mtimes with nanoseconds, all in the past.
fn make_tree(root: &Path) {
    let files: [(&str, Vec<u8>, u32); 6] = [
        ("top.txt", b"at the top\n".to_vec(), 0o644),
        ("empty", Vec::new(), 0o600),
        ("a/run.sh", b"#!/bin/sh\necho hello\n".to_vec(), 0o755),
        ("a/b/notes.txt", b"nested notes\n".repeat(300), 0o640),
        ("a/b/c/deep.bin", random_bytes(200 << 10, 3), 0o400),
        ("a/b/big.bin", random_bytes((3 << 20) + 17, 4), 0o600),
    ];
    for (i, (name, content, mode)) in files.iter().enumerate() {
        let path = root.join(name);
        write_file(&path, content, *mode);
        set_mtime(
            &path,
            1_000_000_000 + i as u64 * 86_400,
            123_456_789 + i as u32,
        );
    }
    for (i, dir) in ["a/b/c", "a/b", "a"].iter().enumerate() {
        let path = root.join(dir);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o750))
            .unwrap();
        set_mtime(&path, 1_200_000_000 + i as u64, 987_654_321);
    }
}

#[test]
fn rsync_archive_with_a_temp_dir_inside_the_mount() {
    let stack = Stack::start();
    let orig = stack.dir.path().join("rsync-orig");
    make_tree(&orig);
    let temp = stack.mnt.join(".rsync-tmp");
    std::fs::create_dir(&temp).unwrap();
    run(Command::new("rsync")
        .arg("-a")
        .arg(format!("--temp-dir={}", temp.display()))
        .arg(format!("{}/", orig.display()))
        .arg(stack.mnt.join("tree")));

    let want = snapshot(&orig);
    assert_eq!(want.len(), 9);
    assert_same(
        "the tree on the mount",
        &want,
        &snapshot(&stack.mnt.join("tree")),
    );
    assert_same(
        "the tree in the source",
        &want,
        &snapshot(&stack.source.join("tree")),
    );
    assert_eq!(
        std::fs::read_dir(stack.source.join(".rsync-tmp"))
            .unwrap()
            .count(),
        0
    );

    let restored = check_backup(&stack, "restored", BACKUP_WAIT);
    assert_same(
        "the restored tree",
        &files(&want),
        &files(&snapshot(&restored.join("tree"))),
    );
}

// ---------------------------------------------------------------------------------------
// 3. SQLite

fn integrity_and_rows(conn: &rusqlite::Connection) -> (String, i64) {
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
        .unwrap();
    (check, rows)
}

/// 500 commits, one row each, in `journal_mode`; checked before and after closing.
fn sqlite_commits(path: &Path, journal_mode: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mode: String = conn
        .query_row(&format!("PRAGMA journal_mode = {journal_mode}"), [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(mode, journal_mode);
    conn.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
        [],
    )
    .unwrap();
    for i in 0..500 {
        let body = format!("row {i} {}", "x".repeat(i * 37 % 500));
        conn.execute("INSERT INTO t (body) VALUES (?1)", [body])
            .unwrap();
    }
    assert_eq!(integrity_and_rows(&conn), ("ok".to_string(), 500));
    if journal_mode == "wal" {
        // Move every committed page into the main file and empty the log, so the main
        // file alone is the whole database.
        let busy: i64 = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .unwrap();
        assert_eq!(busy, 0, "the checkpoint was blocked");
    }
    conn.close().unwrap();
    let again = rusqlite::Connection::open(path).unwrap();
    assert_eq!(integrity_and_rows(&again), ("ok".to_string(), 500));
}

fn assert_database(path: &Path) {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    assert_eq!(
        integrity_and_rows(&conn),
        ("ok".to_string(), 500),
        "{}",
        path.display()
    );
}

#[test]
fn sqlite_rollback_journal_and_wal_databases() {
    let stack = Stack::start();
    std::fs::create_dir(stack.mnt.join("db")).unwrap();
    sqlite_commits(&stack.mnt.join("db/rollback.db"), "delete");
    sqlite_commits(&stack.mnt.join("db/wal.db"), "wal");

    // Closed cleanly, both leave only their main file: the -journal, -wal and -shm files
    // are gone from the source.
    let names: BTreeSet<OsString> = std::fs::read_dir(stack.source.join("db"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let expected: BTreeSet<OsString> = ["rollback.db", "wal.db"].map(OsString::from).into();
    assert_eq!(names, expected);
    assert_database(&stack.source.join("db/rollback.db"));
    assert_database(&stack.source.join("db/wal.db"));

    // The backup holds the two main files as they were after the last close (for WAL,
    // after the checkpoint, so the main file is complete). The -journal, -wal and -shm
    // files may have been backed up while they existed (a file held open is backed up every
    // max-delay), but they were removed, so a restore of the present leaves them out:
    // check_backup compares the restore with the source, which no longer has them.
    let restored = check_backup(&stack, "restored", BACKUP_WAIT);
    assert_database(&restored.join("db/rollback.db"));
    assert_database(&restored.join("db/wal.db"));
}

// ---------------------------------------------------------------------------------------
// 4. tar

#[test]
fn tar_extracts_symlinks_and_hard_links() {
    let stack = Stack::start();
    let orig = stack.dir.path().join("tar-orig");
    write_file(&orig.join("data.txt"), b"shared by two names\n", 0o640);
    write_file(
        &orig.join("sub2/x.txt"),
        b"behind a directory link\n",
        0o644,
    );
    std::fs::create_dir(orig.join("sub")).unwrap();
    std::fs::hard_link(orig.join("data.txt"), orig.join("sub/hard.txt")).unwrap();
    let links = [
        ("link-rel", "data.txt"),
        ("sub/link-up", "../data.txt"),
        ("sub/dir-link", "../sub2"),
        ("dangling", "/nonexistent/target"),
    ];
    for (name, target) in links {
        std::os::unix::fs::symlink(target, orig.join(name)).unwrap();
    }
    set_mtime(&orig.join("data.txt"), 1_100_000_000, 5);
    for dir in ["sub", "sub2"] {
        set_mtime(&orig.join(dir), 1_100_000_100, 0);
    }
    // The POSIX (pax) format keeps mtimes to the nanosecond; the GNU default keeps seconds.
    let archive = stack.dir.path().join("tree.tar");
    run(Command::new("tar")
        .arg("--format=posix")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&orig)
        .arg("."));
    std::fs::create_dir(stack.mnt.join("x")).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(stack.mnt.join("x")));

    let want = snapshot(&orig);
    assert_eq!(want.len(), 9);
    for root in [stack.mnt.join("x"), stack.source.join("x")] {
        assert_same(&format!("{}", root.display()), &want, &snapshot(&root));
        let a = std::fs::metadata(root.join("data.txt")).unwrap();
        let b = std::fs::metadata(root.join("sub/hard.txt")).unwrap();
        assert_eq!(a.ino(), b.ino(), "hard links in {}", root.display());
        assert_eq!((a.nlink(), b.nlink()), (2, 2), "in {}", root.display());
    }

    let restored = check_backup(&stack, "restored", BACKUP_WAIT);
    for name in ["x/data.txt", "x/sub/hard.txt"] {
        assert_eq!(
            std::fs::read(restored.join(name)).unwrap(),
            b"shared by two names\n",
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 5. cp -a with extended attributes

/// The user.* extended attributes of `path`, as getfattr dumps them (values in hex).
fn xattrs(path: &Path) -> String {
    let out = run(Command::new("getfattr")
        .args(["--absolute-names", "--no-dereference", "-d", "-e", "hex"])
        .args(["-m", "^user\\."])
        .arg(path));
    out.lines()
        .filter(|l| !l.starts_with("# file:"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn setfattr(path: &Path, name: &str, value: &str) {
    run(Command::new("setfattr")
        .args(["-n", name, "-v", value])
        .arg(path));
}

#[test]
fn cp_archive_keeps_modes_times_owners_and_xattrs() {
    let stack = Stack::start();
    let orig = stack.dir.path().join("cp-orig");
    write_file(&orig.join("a.txt"), b"with attributes\n", 0o640);
    write_file(&orig.join("sub/b.bin"), &random_bytes(100 << 10, 9), 0o600);
    write_file(&orig.join("sub/tool"), b"#!/bin/sh\n", 0o755);
    setfattr(&orig.join("a.txt"), "user.comment", "drop folder");
    setfattr(&orig.join("a.txt"), "user.binary", "0x00ff10");
    setfattr(&orig.join("a.txt"), "user.empty", "");
    setfattr(
        &orig.join("sub/b.bin"),
        "user.origin",
        "\"line one\nline two\"",
    );
    setfattr(&orig.join("sub"), "user.dirnote", "on a directory");
    std::os::unix::fs::chown(orig.join("sub/b.bin"), Some(1234), Some(5678)).unwrap();
    std::os::unix::fs::symlink("b.bin", orig.join("sub/link")).unwrap();
    set_mtime(&orig.join("a.txt"), 1_300_000_000, 1);
    set_mtime(&orig.join("sub/b.bin"), 1_300_000_001, 999_999_999);
    set_mtime(&orig.join("sub"), 1_300_000_002, 42);
    run(Command::new("cp")
        .arg("-a")
        .arg(&orig)
        .arg(stack.mnt.join("copy")));

    // Access times are left out: reading the original for the copy may update its atime.
    let want = snapshot(&orig);
    assert!(xattrs(&orig.join("a.txt")).contains("user.comment=0x"));
    for root in [stack.mnt.join("copy"), stack.source.join("copy")] {
        assert_same(&format!("{}", root.display()), &want, &snapshot(&root));
        for (path, kind) in &want {
            if !matches!(kind, Node::Symlink(_)) {
                let (a, b) = (xattrs(&orig.join(path)), xattrs(&root.join(path)));
                assert_eq!(a, b, "xattrs of {}", root.join(path).display());
            }
        }
    }

    check_backup(&stack, "restored", BACKUP_WAIT);
}

// ---------------------------------------------------------------------------------------
// 6. Two processes appending at once

/// One line of writer `w`: numbered, with a length that varies, so a torn or interleaved
/// write cannot look like a whole line.
fn append_line(w: u8, i: usize) -> Vec<u8> {
    let filler = char::from(b'a' + (i % 26) as u8)
        .to_string()
        .repeat(i * 13 % 180);
    format!("{} {i:05} {filler} end\n", char::from(w)).into_bytes()
}

/// Forks a child that waits until `gate` reports end of file, then opens `path` with
/// O_APPEND and writes each line with one write(2). The child makes only system calls:
/// everything it needs is prepared before the fork.
fn fork_appender(path: &CString, lines: &[Vec<u8>], gate: [i32; 2]) -> libc::pid_t {
    // SAFETY: the child runs only async-signal-safe calls (close, read, open, write,
    // _exit) on memory that existed before the fork, and never returns.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid > 0 {
            return pid;
        }
        libc::close(gate[1]);
        let mut byte = 0u8;
        while libc::read(gate[0], (&mut byte as *mut u8).cast(), 1) > 0 {}
        let fd = libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC,
            0o644,
        );
        if fd < 0 {
            libc::_exit(2);
        }
        for line in lines {
            if libc::write(fd, line.as_ptr().cast(), line.len()) != line.len() as isize {
                libc::_exit(3);
            }
        }
        libc::_exit(if libc::close(fd) == 0 { 0 } else { 4 });
    }
}

fn concurrent_appends(passthrough: &'static str) {
    let stack = Stack::with(Options {
        passthrough,
        ..Options::default()
    });
    let path = stack.mnt.join("appended.log");
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let writers = [b'A', b'B'];
    let lines: Vec<Vec<Vec<u8>>> = writers
        .iter()
        .map(|w| (0..2000).map(|i| append_line(*w, i)).collect())
        .collect();

    // The appenders start together when the gate's write end is closed everywhere. Another
    // test forking its own appenders meanwhile would hand them this gate too, and each
    // test's appenders would wait for the other's: so one test at a time opens a gate and
    // forks. Close-on-exec keeps it from the servers other tests spawn meanwhile.
    static FORKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let forking = FORKING.lock().unwrap_or_else(|e| e.into_inner());
    let mut gate = [0i32; 2];
    // SAFETY: `gate` has room for the two descriptors pipe2(2) fills in.
    assert_eq!(
        unsafe { libc::pipe2(gate.as_mut_ptr(), libc::O_CLOEXEC) },
        0
    );
    let pids: Vec<_> = lines
        .iter()
        .map(|l| fork_appender(&c_path, l, gate))
        .collect();
    // SAFETY: closing our own pipe ends; the children now see end of file and start.
    unsafe {
        libc::close(gate[0]);
        libc::close(gate[1]);
    }
    drop(forking);
    for pid in pids {
        let mut status = 0;
        // SAFETY: waiting for a child we forked.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "appender {pid} ended with status {status:#x}"
        );
    }

    let content = std::fs::read(&path).unwrap();
    check_appended(&content, &writers, &lines);
    assert!(std::fs::read(stack.source.join("appended.log")).unwrap() == content);
    let restored = check_backup(&stack, "restored", BACKUP_WAIT);
    assert!(std::fs::read(restored.join("appended.log")).unwrap() == content);
}

/// Every line exactly once, none torn, each writer's lines in the order it wrote them.
fn check_appended(content: &[u8], writers: &[u8], lines: &[Vec<Vec<u8>>]) {
    assert!(content.ends_with(b"\n"), "the file ends in a partial line");
    let mut next = vec![0usize; writers.len()];
    for (n, line) in content.split_inclusive(|b| *b == b'\n').enumerate() {
        let w = writers.iter().position(|w| line.first() == Some(w));
        let ok = w.is_some_and(|w| lines[w].get(next[w]).is_some_and(|l| l == line));
        assert!(
            ok,
            "line {n} is torn, repeated or out of order: {:?} (next expected: {next:?})",
            String::from_utf8_lossy(line)
        );
        next[w.unwrap()] += 1;
    }
    let expected: Vec<usize> = lines.iter().map(Vec::len).collect();
    assert_eq!(next, expected, "lines missing");
}

#[test]
fn concurrent_appends_with_passthrough_on() {
    concurrent_appends("on");
}

#[test]
fn concurrent_appends_with_passthrough_off() {
    concurrent_appends("off");
}

// ---------------------------------------------------------------------------------------
// 7. A writer that closes its descriptor and writes through a shared mapping

/// Writes `bytes` into `path` as some databases and loggers do: open, size the file (when
/// `resize`), map it shared, close the descriptor, then write only through the mapping,
/// msync and munmap. The daemon sees the open and the close; the writes reach the file
/// through the page cache (or straight, with kernel passthrough) while no descriptor is
/// open.
fn write_through_shared_mmap(path: &Path, bytes: &[u8], resize: bool) {
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let os_error = std::io::Error::last_os_error;
    // SAFETY: the mapping is `bytes.len()` long, backed by a file at least that long,
    // written only inside its bounds, and unmapped before returning.
    unsafe {
        let fd = libc::open(
            c_path.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC,
            0o644,
        );
        assert!(fd >= 0, "open: {}", os_error());
        if resize {
            assert_eq!(
                libc::ftruncate(fd, bytes.len() as libc::off_t),
                0,
                "{}",
                os_error()
            );
        }
        let map = libc::mmap(
            std::ptr::null_mut(),
            bytes.len(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        assert!(map != libc::MAP_FAILED, "mmap: {}", os_error());
        assert_eq!(libc::close(fd), 0, "close: {}", os_error());
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), map.cast::<u8>(), bytes.len());
        assert_eq!(
            libc::msync(map, bytes.len(), libc::MS_SYNC),
            0,
            "msync: {}",
            os_error()
        );
        assert_eq!(libc::munmap(map, bytes.len()), 0, "munmap: {}", os_error());
    }
}

fn shared_mmap_writer(passthrough: &'static str) {
    let stack = Stack::with(Options {
        passthrough,
        ..Options::default()
    });
    let path = stack.mnt.join("mapped.bin");
    let first = random_bytes(3 * 4096 + 123, 11);
    write_through_shared_mmap(&path, &first, true);
    assert!(std::fs::read(stack.source.join("mapped.bin")).unwrap() == first);
    let restored = check_backup(&stack, "restored-1", BACKUP_WAIT);
    assert!(std::fs::read(restored.join("mapped.bin")).unwrap() == first);

    // Again in place, without resizing: now nothing but open and close reaches the daemon
    // as a request on this file besides the writes themselves (none, with passthrough).
    let second = random_bytes(first.len(), 12);
    write_through_shared_mmap(&path, &second, false);
    assert!(std::fs::read(stack.source.join("mapped.bin")).unwrap() == second);
    let restored = check_backup(&stack, "restored-2", BACKUP_WAIT);
    assert!(std::fs::read(restored.join("mapped.bin")).unwrap() == second);
}

#[test]
fn shared_mmap_writer_with_passthrough_on() {
    shared_mmap_writer("on");
}

#[test]
fn shared_mmap_writer_with_passthrough_off() {
    shared_mmap_writer("off");
}

// ---------------------------------------------------------------------------------------
// 8. A sparse file of 1 GiB

const GIB: u64 = 1 << 30;

/// (offset, length) of the data written into the sparse file; the rest is holes.
const SPARSE_EXTENTS: [(u64, usize); 4] = [
    (0, 4096),
    (256 << 20, 8192),
    ((700 << 20) + 4096, 3000),
    (GIB - (64 << 10), 5000),
];

fn extent_bytes(i: usize) -> Vec<u8> {
    random_bytes(SPARSE_EXTENTS[i].1, 100 + i as u64)
}

/// The SHA-256 of the sparse file's content, computed one MiB at a time.
fn sparse_sha256() -> String {
    let chunk = 1u64 << 20;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; chunk as usize];
    for start in (0..GIB).step_by(chunk as usize) {
        buf.fill(0);
        for (i, (off, len)) in SPARSE_EXTENTS.iter().enumerate() {
            let (lo, hi) = (*off.max(&start), (off + *len as u64).min(start + chunk));
            if lo < hi {
                let data = extent_bytes(i);
                buf[(lo - start) as usize..(hi - start) as usize]
                    .copy_from_slice(&data[(lo - off) as usize..(hi - off) as usize]);
            }
        }
        hasher.update(&buf);
    }
    hex::encode(hasher.finalize())
}

/// The data regions `[start, end)` that SEEK_DATA and SEEK_HOLE report for `path`.
fn data_regions(path: &Path) -> Vec<(i64, i64)> {
    let file = File::open(path).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    let mut regions = Vec::new();
    let mut at = 0;
    loop {
        // SAFETY: lseek on a descriptor we own.
        let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
        if data < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(
                e.raw_os_error(),
                Some(libc::ENXIO),
                "SEEK_DATA on {path:?}: {e}"
            );
            return regions;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        assert!(hole > data, "SEEK_HOLE on {path:?} from {data}: {hole}");
        regions.push((data, hole));
        at = hole;
    }
}

// A 1 GiB file is over the harness's default limits: clamd's StreamMaxLength (64M) and
// backupfs's scan.max-stream-size (64MiB) would record it as not-scanned and not upload it,
// and clamd's MaxFileSize/MaxScanSize (512M) would let clamd accept the stream but skip
// scanning it. All three are raised above 1 GiB so the file is scanned whole and uploaded.
#[test]
fn sparse_file_of_one_gib_keeps_its_holes() {
    let stack = Stack::with(Options {
        clamd_stream_max: "1100M",
        clamd_max_size: "1100M",
        max_stream_size: "1100MiB",
        ..Options::default()
    });
    let path = stack.mnt.join("sparse.img");
    let file = File::create(&path).unwrap();
    for (i, (off, _)) in SPARSE_EXTENTS.iter().enumerate() {
        file.write_all_at(&extent_bytes(i), *off).unwrap();
    }
    file.set_len(GIB).unwrap();
    drop(file);

    let source = stack.source.join("sparse.img");
    let meta = std::fs::metadata(&source).unwrap();
    assert_eq!(meta.size(), GIB);
    assert!(
        meta.blocks() * 512 <= 1 << 20,
        "holes filled: {} blocks",
        meta.blocks()
    );
    let on_mount = std::fs::metadata(&path).unwrap();
    assert_eq!(on_mount.size(), GIB);
    assert!(
        on_mount.blocks() * 512 <= 1 << 20,
        "{} blocks",
        on_mount.blocks()
    );
    let regions = data_regions(&source);
    for (off, len) in SPARSE_EXTENTS {
        let (start, end) = (off as i64, off as i64 + len as i64);
        assert!(
            regions.iter().any(|(a, b)| *a <= start && end <= *b),
            "{off}+{len} not in the source's data regions {regions:?}"
        );
    }
    assert!(
        regions.iter().map(|(a, b)| b - a).sum::<i64>() <= 1 << 20,
        "{regions:?}"
    );
    assert_eq!(
        data_regions(&path),
        regions,
        "SEEK_DATA/SEEK_HOLE through the mount"
    );

    let sha = sparse_sha256();
    assert_eq!(sha256_file(&source), sha);
    let restored = check_backup(&stack, "restored", Duration::from_secs(240));
    assert_eq!(sha256_file(&restored.join("sparse.img")), sha);
}

// ---------------------------------------------------------------------------------------
// 9. Hard links

#[test]
fn hard_links_are_backed_up_under_both_names() {
    let stack = Stack::start();
    let first = stack.put_file("first.txt", b"one file, two names\n");
    run(Command::new("ln")
        .arg(&first)
        .arg(stack.mnt.join("second.txt")));
    for root in [&stack.mnt, &stack.source] {
        let a = std::fs::metadata(root.join("first.txt")).unwrap();
        let b = std::fs::metadata(root.join("second.txt")).unwrap();
        assert_eq!(
            (a.ino(), a.nlink(), b.nlink()),
            (b.ino(), 2, 2),
            "{}",
            root.display()
        );
    }
    let restored = check_backup(&stack, "restored-1", BACKUP_WAIT);
    for name in ["first.txt", "second.txt"] {
        assert_eq!(
            std::fs::read(restored.join(name)).unwrap(),
            b"one file, two names\n"
        );
    }

    // A change made through one name is a change to both: the backup must follow both.
    std::fs::write(&first, b"rewritten through the first name\n").unwrap();
    assert_eq!(
        std::fs::read(stack.source.join("second.txt")).unwrap(),
        b"rewritten through the first name\n"
    );
    let restored = check_backup(&stack, "restored-2", BACKUP_WAIT);
    for name in ["first.txt", "second.txt"] {
        assert_eq!(
            std::fs::read(restored.join(name)).unwrap(),
            b"rewritten through the first name\n",
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 10. Names

fn names_under_test() -> Vec<OsString> {
    let raw: [&[u8]; 5] = [
        b"line\nbreak.txt",
        b"carriage\rreturn.txt",
        b"latin1-\xe9t\xe9-\xff\xfe.bin",
        b"\x01control\x7f",
        b" leading and trailing space ",
    ];
    let mut names: Vec<OsString> = raw
        .iter()
        .map(|b| OsStr::from_bytes(b).to_os_string())
        .collect();
    names.push(OsString::from(format!("{}.txt", "n".repeat(251))));
    names.push(OsString::from(format!("{}x", "é".repeat(127))));
    for name in &names[names.len() - 2..] {
        assert_eq!(name.len(), 255);
    }
    names
}

fn listing(dir: &Path) -> BTreeSet<OsString> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect()
}

#[test]
fn long_and_unusual_names_work_and_are_backed_up_exactly() {
    let stack = Stack::start();
    let names = names_under_test();
    let content = |name: &OsStr| [name.as_bytes(), b"\n"].concat();
    for name in &names {
        std::fs::write(stack.mnt.join(name), content(name))
            .unwrap_or_else(|e| panic!("create {name:?}: {e}"));
    }
    let expected: BTreeSet<OsString> = names.iter().cloned().collect();
    for root in [&stack.mnt, &stack.source] {
        assert_eq!(listing(root), expected, "names in {}", root.display());
        for name in &names {
            assert_eq!(
                std::fs::read(root.join(name)).unwrap(),
                content(name),
                "{name:?}"
            );
        }
    }

    // One byte more than NAME_MAX is refused, whatever the operation.
    let long = stack.mnt.join("m".repeat(256));
    let too_long = |r: std::io::Result<()>, op: &str| {
        let e = r.expect_err(op);
        assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG), "{op}: {e}");
    };
    too_long(std::fs::write(&long, b"x"), "create");
    too_long(std::fs::create_dir(&long), "mkdir");
    too_long(std::fs::metadata(&long).map(drop), "stat");
    too_long(std::fs::rename(stack.mnt.join(&names[0]), &long), "rename");
    too_long(std::os::unix::fs::symlink("target", &long), "symlink");
    assert_eq!(listing(&stack.source), expected, "after the refusals");

    let restored = check_backup(&stack, "restored", BACKUP_WAIT);
    assert_eq!(listing(&restored), expected);
}
