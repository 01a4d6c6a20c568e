//! Restore from the destination alone: disaster recovery, point in time, stock tools,
//! corruption, prune, and what object keys may reveal. Real mount, clamd, S3 server, gpg
//! and zstd, as in the other suites.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};

/// Every regular file below `root`: relative path → (bytes, mode, mtime in ns).
fn tree(root: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                let rel = entry.path().strip_prefix(root).unwrap().to_path_buf();
                let mtime = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
                out.insert(
                    rel,
                    (
                        std::fs::read(entry.path()).unwrap(),
                        meta.mode() & 0o7777,
                        mtime,
                    ),
                );
            }
        }
    }
    out
}

fn write_with_mode(path: &Path, content: &[u8], mode: u32) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(content).unwrap();
}

/// A time (as `--at` takes it) strictly after everything before and strictly before
/// everything after.
fn moment() -> String {
    std::thread::sleep(Duration::from_millis(20));
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    std::thread::sleep(Duration::from_millis(20));
    now
}

fn ok(stack: &Stack, args: &[&str]) -> String {
    let (success, out, err) = stack.cli(args);
    assert!(success, "backupfs {args:?} failed:\n{out}\n{err}");
    out
}

#[test]
fn disaster_recovery_restores_every_file_from_the_bucket_alone() {
    let mut stack = Stack::start();
    let mut names: Vec<PathBuf> = Vec::new();
    for i in 0..190 {
        let name = PathBuf::from(format!("d{}/sub{}/file-{i}.txt", i % 5, i % 3));
        let mode = [0o644, 0o600, 0o755, 0o640][i % 4];
        write_with_mode(
            &stack.mnt.join(&name),
            format!("file {i}\n").repeat(i + 1).as_bytes(),
            mode,
        );
        names.push(name);
    }
    let odd: Vec<PathBuf> = vec![
        PathBuf::from("empty"),
        PathBuf::from("big.bin"),
        PathBuf::from("with space and ünïcödé.txt"),
        PathBuf::from("-leading-dash"),
        PathBuf::from("new\nline"),
        PathBuf::from(OsStr::from_bytes(b"latin1-\xe9t\xe9")),
        PathBuf::from("deep/a/b/c/d/e/f/g/h/leaf"),
        PathBuf::from("quote\"back\\slash"),
        PathBuf::from("star*question?.txt"),
        PathBuf::from("n".repeat(255)),
    ];
    for name in &odd {
        let content = match name.to_str() {
            Some("empty") => Vec::new(),
            Some("big.bin") => random_bytes(50 << 20, 7),
            _ => name.as_os_str().as_bytes().to_vec(),
        };
        write_with_mode(&stack.mnt.join(name), &content, 0o644);
    }
    names.extend(odd);
    assert_eq!(names.len(), 200);
    stack.wait_published(200);
    let before = tree(&stack.source);
    assert_eq!(before.len(), 200);
    stack.stop_daemon();

    // The machine is lost: state and source are gone; config and passphrase remain.
    std::fs::remove_dir_all(stack.dir.path().join("state")).unwrap();
    std::fs::remove_dir_all(&stack.source).unwrap();
    let to = stack.dir.path().join("recovered");
    let out = ok(&stack, &["restore", "--to", to.to_str().unwrap(), "/"]);
    assert!(out.contains("restored 200 of 200 files"), "{out}");
    let after = tree(&to);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (path, (bytes, mode, mtime)) in &before {
        let (b, m, t) = &after[path];
        assert!(b == bytes, "{} differs", path.display());
        assert_eq!(m, mode, "mode of {}", path.display());
        assert_eq!(t, mtime, "mtime of {}", path.display());
    }

    // A second run finds everything in place (as after an interrupted restore); a file
    // with other content is never overwritten without --overwrite, and is with it.
    let out = ok(&stack, &["restore", "--to", to.to_str().unwrap(), "d0"]);
    assert!(
        out.contains("restored 0 of 38 files") && out.contains("38 were there"),
        "{out}"
    );
    std::fs::write(to.join("empty"), b"scribbled").unwrap();
    let (success, out, _) = stack.cli(&["restore", "--to", to.to_str().unwrap(), "empty"]);
    assert!(!success, "{out}");
    assert!(
        out.contains("exists with other content; not overwritten"),
        "{out}"
    );
    assert_eq!(std::fs::read(to.join("empty")).unwrap(), b"scribbled");
    ok(
        &stack,
        &[
            "restore",
            "--overwrite",
            "--to",
            to.to_str().unwrap(),
            "empty",
        ],
    );
    assert_eq!(std::fs::read(to.join("empty")).unwrap(), b"");

    // A restore never writes through a symbolic link planted in the target.
    let elsewhere = stack.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let trap = stack.dir.path().join("trap");
    std::fs::create_dir(&trap).unwrap();
    std::os::unix::fs::symlink(&elsewhere, trap.join("d0")).unwrap();
    let (success, out, _) = stack.cli(&["restore", "--to", trap.to_str().unwrap(), "d0"]);
    assert!(!success, "{out}");
    assert!(out.contains("is a symbolic link; not followed"), "{out}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

    // The local index comes back from the catalog too.
    let out = ok(&stack, &["catalog", "rebuild"]);
    assert!(out.contains("200 versions"), "{out}");
}

/// The lines of `backupfs ls` output that are files (directories end in `/`).
fn files_listed(ls: &str) -> usize {
    ls.lines().filter(|l| !l.ends_with('/')).count()
}

/// Every directory below `root`: relative path → (mode, uid, gid).
fn dirs(root: &Path) -> BTreeMap<PathBuf, (u32, u32, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, (meta.mode() & 0o7777, meta.uid(), meta.gid()));
                stack.push(path);
            }
        }
    }
    out
}

/// `backupfs ls` once it lists `name`.
fn ls_once_listed(stack: &Stack, name: &str) -> String {
    wait_for(
        &format!("{name} in the catalog"),
        Duration::from_secs(60),
        || {
            let (success, out, _) = stack.cli(&["ls"]);
            (success && out.lines().any(|l| l.ends_with(&format!(" {name}")))).then_some(out)
        },
    )
}

#[test]
fn a_host_that_lost_its_state_adds_to_its_catalog_without_hiding_anything() {
    let mut stack = Stack::start();
    stack.put_file("one.txt", b"one\n");
    stack.put_file("two.txt", b"two\n");
    stack.wait_published(2);
    // The machine is rebuilt empty: no state, no files. Its new versions must not take
    // the ids of the ones in the catalog.
    stack.stop_daemon();
    std::fs::remove_dir_all(stack.dir.path().join("state")).unwrap();
    std::fs::remove_dir_all(&stack.source).unwrap();
    std::fs::create_dir(&stack.source).unwrap();
    stack.mount();
    stack.put_file("three.txt", b"three\n");
    let ls = ls_once_listed(&stack, "three.txt");
    for name in ["one.txt", "two.txt"] {
        assert!(ls.contains(name), "{name} missing from\n{ls}");
    }
    // Nor does a host whose index was rebuilt from the catalog.
    stack.stop_daemon();
    ok(&stack, &["catalog", "rebuild"]);
    stack.mount();
    stack.put_file("four.txt", b"four\n");
    let ls = ls_once_listed(&stack, "four.txt");
    assert_eq!(ls.lines().count(), 4, "{ls}");
}

#[test]
fn a_mount_with_another_passphrase_refuses_to_start() {
    let mut stack = Stack::start();
    stack.put_file("kept.txt", b"sealed with the first passphrase\n");
    stack.wait_published(1);
    stack.stop_daemon();
    std::fs::write(&stack.passphrase, "a different passphrase\n").unwrap();
    let (success, out, err) = stack.cli_timeout(&["mount"], Duration::from_secs(60));
    assert!(!success, "mounted with the wrong passphrase:\n{out}\n{err}");
    assert!(
        err.contains("encrypt.passphrase-file") && err.contains("does not open the catalog"),
        "{err}"
    );
    assert!(!is_mounted(&stack.mnt));

    // With the bucket down at start the mount cannot check, so it starts; it then
    // uploads nothing and writes no catalog until the check has run, and refuses then.
    stack.s3.pause();
    stack.mount();
    stack.put_file("new.txt", b"written with the wrong passphrase\n");
    std::thread::sleep(Duration::from_secs(2));
    stack.s3.resume();
    let record = stack.wait_audit("new.txt");
    assert_eq!(record["outcome"], "failed", "{record}");
    assert!(
        record["reason"]
            .as_str()
            .unwrap_or("")
            .contains("passphrase"),
        "{record}"
    );
    stack.stop_daemon();
    std::fs::write(&stack.passphrase, "correct horse battery staple\n").unwrap();
    let ls = ok(&stack, &["ls"]);
    assert!(ls.contains("kept.txt") && !ls.contains("new.txt"), "{ls}");
}

#[test]
fn a_damaged_catalog_file_costs_only_its_own_versions() {
    let stack = Stack::start();
    stack.put_file("early.txt", b"in the first batch\n");
    stack.wait_published(1);
    let first: Vec<String> = stack.keys(&format!("{PREFIX}/catalog/"));
    assert_eq!(first.len(), 1, "{first:?}");
    stack.put_file("late.txt", b"in a later batch\n");
    stack.wait_published(2);

    let stored = stack.s3.data.join(BUCKET).join(&first[0]);
    let mut bytes = std::fs::read(&stored).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&stored, bytes).unwrap();

    let (success, out, err) = stack.cli(&["ls"]);
    assert!(!success, "{out}");
    assert!(
        out.contains("late.txt") && !out.contains("early.txt"),
        "{out}"
    );
    assert!(
        err.contains(&first[0]) && err.contains("cannot be read"),
        "{err}"
    );
    let to = stack.dir.path().join("restored");
    let (success, out, _) = stack.cli(&["restore", "--to", to.to_str().unwrap(), "/"]);
    assert!(!success, "{out}");
    assert_eq!(
        std::fs::read(to.join("late.txt")).unwrap(),
        b"in a later batch\n"
    );
    let (success, out, err) = stack.cli(&["prune", "--keep-last", "1", "--yes"]);
    assert!(!success, "prune ran over a damaged catalog:\n{out}");
    assert!(err.contains("nothing is pruned"), "{err}");
    assert_eq!(stack.objects().len(), 2);
}

#[test]
fn restore_at_a_time_gives_back_that_version() {
    let stack = Stack::start();
    let mut times = Vec::new();
    for v in 1..=3 {
        stack.put_file("report.txt", format!("version {v}\n").as_bytes());
        stack.wait_published(v);
        times.push(moment());
    }
    for (i, at) in times.iter().enumerate() {
        let to = stack.dir.path().join(format!("at-{i}"));
        ok(
            &stack,
            &[
                "restore",
                "--at",
                at,
                "--to",
                to.to_str().unwrap(),
                "report.txt",
            ],
        );
        let got = std::fs::read_to_string(to.join("report.txt")).unwrap();
        assert_eq!(got, format!("version {}\n", i + 1), "--at {at}");
    }
    let history = ok(&stack, &["history", "report.txt"]);
    assert_eq!(history.lines().count(), 4, "{history}");
    let ls = ok(&stack, &["ls", "--at", &times[0]]);
    assert!(ls.contains("report.txt") && ls.contains(" 10 "), "{ls}");
}

#[test]
fn stock_tools_restore_a_file_through_the_catalog() {
    let stack = Stack::start();
    let content = b"quarterly numbers, restored without backupfs\n".repeat(100);
    stack.put_file("report.txt", &content);
    stack.put_file("other.txt", b"something else\n");
    stack.wait_published(2);

    // As docs/FORMAT.md says: list PREFIX/catalog/, decrypt each file with gpg and zstd,
    // read JSON lines, take the newest "version" record for the path, fetch its object.
    let mut newest: Option<serde_json::Value> = None;
    for key in stack.keys(&format!("{PREFIX}/catalog/")) {
        let plain = stack.restore_with_stock_tools(&key);
        for line in plain.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let record: serde_json::Value = serde_json::from_slice(line).unwrap();
            if record["type"] == "version" && record["path"] == "report.txt" {
                let later = newest
                    .as_ref()
                    .is_none_or(|n| record["backed_up_ms"].as_i64() > n["backed_up_ms"].as_i64());
                if later {
                    newest = Some(record);
                }
            }
        }
    }
    let record = newest.expect("a version record for report.txt");
    let restored = stack.restore_with_stock_tools(record["object"].as_str().unwrap());
    assert_eq!(restored, content);
    assert_eq!(
        record["sha256"].as_str().unwrap(),
        hex::encode(Sha256::digest(&restored))
    );
    assert_eq!(record["size"].as_u64().unwrap(), content.len() as u64);
}

#[test]
fn a_corrupt_object_is_named_by_verify_and_refused_by_restore() {
    let stack = Stack::start();
    stack.put_file("good-1.txt", b"first good file\n");
    stack.put_file("good-2.txt", b"second good file\n");
    stack.put_file("damaged.txt", &b"this one will rot\n".repeat(1000));
    stack.wait_published(3);
    let (_, object) = stack.catalog()["damaged.txt"].clone();

    let out = ok(&stack, &["verify", "--all"]);
    assert!(
        out.contains("checked 3 objects") && out.contains(": 0 bad"),
        "{out}"
    );

    // Flip one byte in the middle of the stored object, on the S3 server's disk.
    let stored = stack.s3.data.join(BUCKET).join(&object);
    let mut bytes = std::fs::read(&stored).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&stored, bytes).unwrap();

    let (success, out, _) = stack.cli(&["verify", "--all"]);
    assert!(!success, "verify passed a corrupt object:\n{out}");
    assert!(out.contains("CORRUPT damaged.txt"), "{out}");
    assert!(
        !out.contains("good-1.txt") && !out.contains("good-2.txt"),
        "{out}"
    );

    let to = stack.dir.path().join("restored");
    let (success, out, _) = stack.cli(&["restore", "--to", to.to_str().unwrap(), "/"]);
    assert!(!success, "restore succeeded with a corrupt object:\n{out}");
    assert!(out.contains("restored 2 of 3 files"), "{out}");
    assert!(out.contains("FAILED damaged.txt"), "{out}");
    assert!(!to.join("damaged.txt").exists());
    assert_eq!(
        std::fs::read(to.join("good-1.txt")).unwrap(),
        b"first good file\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&to)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.as_bytes().starts_with(b"."))
        .collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
}

#[test]
fn prune_keeps_the_last_version_and_deletes_the_rest_while_mounted() {
    let stack = Stack::start();
    let mut objects = Vec::new();
    for v in 1..=3 {
        stack.put_file("a.txt", format!("a, version {v}\n").as_bytes());
        stack.wait_published(v);
        objects.push(stack.catalog()["a.txt"].1.clone());
    }
    stack.put_file("b.txt", b"b, only version\n");
    stack.wait_published(4);
    let b_object = stack.catalog()["b.txt"].1.clone();
    assert_eq!(stack.objects().len(), 4);

    let out = ok(&stack, &["prune", "--keep-last", "1"]);
    assert!(
        out.contains("would drop 2 of 4 versions and delete 2 objects"),
        "{out}"
    );
    assert_eq!(stack.objects().len(), 4, "a dry run deleted something");

    let out = ok(&stack, &["prune", "--keep-last", "1", "--yes"]);
    assert!(
        out.contains("dropped 2 versions; deleted 2 objects"),
        "{out}"
    );
    let left = stack.objects();
    assert!(
        !left.contains(&objects[0]) && !left.contains(&objects[1]),
        "{left:?}"
    );
    assert!(
        left.contains(&objects[2]) && left.contains(&b_object),
        "{left:?}"
    );
    assert!(stack.keys(&format!("{PREFIX}/prune/")).is_empty());

    let history = ok(&stack, &["history", "a.txt"]);
    assert_eq!(history.lines().count(), 2, "{history}");
    let to = stack.dir.path().join("restored");
    ok(&stack, &["restore", "--to", to.to_str().unwrap(), "/"]);
    assert_eq!(std::fs::read(to.join("a.txt")).unwrap(), b"a, version 3\n");
    assert_eq!(
        std::fs::read(to.join("b.txt")).unwrap(),
        b"b, only version\n"
    );
    ok(&stack, &["verify"]);

    // Content whose object was pruned is stored again when it comes back.
    stack.put_file("a-again.txt", b"a, version 1\n");
    stack.wait_published(5);
    let again = stack.catalog()["a-again.txt"].1.clone();
    assert!(stack.objects().contains(&again));
    let to = stack.dir.path().join("restored-again");
    ok(
        &stack,
        &["restore", "--to", to.to_str().unwrap(), "a-again.txt"],
    );
    assert_eq!(
        std::fs::read(to.join("a-again.txt")).unwrap(),
        b"a, version 1\n"
    );
}

#[test]
fn keys_and_metadata_reveal_no_names_hashes_or_classes() {
    let stack = Stack::start();
    let files: [(&str, &[u8]); 3] = [
        ("payroll-confidential.txt", b"confidential: salaries\n"),
        ("contacts.csv", b"jane@example.com\n"),
        ("notes.txt", b"plain notes\n"),
    ];
    for (name, content) in files {
        stack.put_file(name, content);
    }
    stack.wait_published(3);
    let mut secrets: Vec<String> = vec![
        "sensitive".into(),
        "personal".into(),
        "general".into(),
        "payroll".into(),
        "contacts".into(),
        "notes".into(),
    ];
    for (_, content) in files {
        secrets.push(hex::encode(Sha256::digest(content)));
    }
    let keys = stack.keys("");
    assert!(keys.len() >= 5, "{keys:?}");
    for key in &keys {
        let meta = stack.head(key);
        for secret in &secrets {
            assert!(!key.contains(secret.as_str()), "{key} reveals {secret}");
            assert!(
                !meta.contains(secret.as_str()),
                "{key} metadata {meta} reveals {secret}"
            );
        }
    }
}

#[test]
fn removals_renames_and_attribute_changes_reach_the_catalog() {
    let mut stack = Stack::start();
    stack.put_file("gone.txt", b"deleted later\n");
    stack.put_file("old-name.txt", b"renamed later\n");
    std::fs::create_dir(stack.mnt.join("dir")).unwrap();
    stack.put_file("dir/inner.txt", b"moved with its directory\n");
    stack.wait_published(3);
    let before = moment();

    // No scanning is needed for any of this: with clamd stopped the catalog still follows
    // (renames are recorded at once; new attributes are a duplicate of known content).
    stack.clamd.pause();
    std::fs::remove_file(stack.mnt.join("gone.txt")).unwrap();
    std::fs::rename(
        stack.mnt.join("old-name.txt"),
        stack.mnt.join("new-name.txt"),
    )
    .unwrap();
    std::fs::rename(stack.mnt.join("dir"), stack.mnt.join("dir2")).unwrap();
    let inner = stack.mnt.join("dir2/inner.txt");
    std::fs::set_permissions(&inner, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mtime = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    std::fs::File::open(&inner)
        .unwrap()
        .set_modified(mtime)
        .unwrap();

    let now = wait_for("the catalog to follow", Duration::from_secs(60), || {
        let (success, out, _) = stack.cli(&["ls"]);
        let want = success
            && files_listed(&out) == 2
            && out.lines().any(|l| l.ends_with(" dir2/"))
            && out.contains(" new-name.txt")
            && out.contains("0600")
            && out.contains("2001-09-09T01:46:40")
            && out.contains(" dir2/inner.txt");
        want.then_some(out)
    });
    assert!(
        !now.contains("gone.txt") && !now.contains("old-name") && !now.contains(" dir/"),
        "{now}"
    );

    let then = ok(&stack, &["ls", "--at", &before]);
    assert_eq!(files_listed(&then), 3, "{then}");
    for name in ["gone.txt", "old-name.txt", "dir/inner.txt", "dir/"] {
        assert!(then.contains(name), "{name} missing from\n{then}");
    }
    let history = ok(&stack, &["history", "gone.txt"]);
    assert!(
        history.lines().last().unwrap().ends_with("removed"),
        "{history}"
    );

    let to = stack.dir.path().join("restored");
    ok(&stack, &["restore", "--to", to.to_str().unwrap(), "/"]);
    let restored = tree(&to);
    let names: Vec<_> = restored.keys().map(|p| p.display().to_string()).collect();
    assert_eq!(names, ["dir2/inner.txt", "new-name.txt"]);
    let (_, mode, mtime_ns) = &restored[Path::new("dir2/inner.txt")];
    assert_eq!(*mode, 0o600);
    assert_eq!(*mtime_ns, 1_000_000_000 * 1_000_000_000);
}

#[test]
fn a_file_deleted_while_it_is_backed_up_does_not_come_back() {
    let mut stack = Stack::start();
    stack.put_file("kept.txt", b"stays\n");
    stack.wait_published(1);
    // The worker opens the file, then waits for clamd; the file is deleted meanwhile.
    stack.clamd.pause();
    stack.put_file("doomed.txt", b"deleted while its backup waits for clamd\n");
    wait_for(
        "the worker to take the file",
        Duration::from_secs(30),
        || (stack.metric("backupfs_retries_total{stage=\"scan\"}") >= 1.0).then_some(()),
    );
    std::fs::remove_file(stack.mnt.join("doomed.txt")).unwrap();
    stack.clamd.resume();
    let record = stack.wait_audit("doomed.txt");
    assert_eq!(record["outcome"], "vanished", "{record}");
    let ls = ls_once_listed(&stack, "kept.txt");
    assert!(!ls.contains("doomed.txt"), "{ls}");
}

#[test]
fn directories_come_back_with_their_modes_and_owners_even_when_empty() {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let stack = Stack::start();
    let m = &stack.mnt;
    std::fs::create_dir(m.join("empty")).unwrap();
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(m.join("private"))
        .unwrap();
    write_with_mode(&m.join("private/secret.txt"), b"only for me\n", 0o600);
    std::fs::create_dir_all(m.join("nested/deeper/deepest")).unwrap();
    std::os::unix::fs::chown(m.join("nested/deeper"), Some(1234), Some(5678)).unwrap();
    // A directory that cannot be written into once its mode is restored.
    std::fs::create_dir(m.join("readonly")).unwrap();
    write_with_mode(&m.join("readonly/inside.txt"), b"inside\n", 0o644);
    let chmod = |p: &str, mode| {
        std::fs::set_permissions(m.join(p), std::fs::Permissions::from_mode(mode)).unwrap()
    };
    chmod("readonly", 0o555);
    chmod("nested", 0o2750);
    std::fs::create_dir(m.join("doomed")).unwrap();
    chmod("doomed", 0o710);
    stack.wait_published(2);
    let before_rmdir = moment();
    std::fs::remove_dir(m.join("doomed")).unwrap();
    stack.wait_published(2);

    let want = dirs(&stack.source);
    let names: Vec<String> = want.keys().map(|p| p.display().to_string()).collect();
    assert_eq!(
        names,
        [
            "empty",
            "nested",
            "nested/deeper",
            "nested/deeper/deepest",
            "private",
            "readonly"
        ]
    );
    assert_eq!(want[Path::new("nested/deeper")].1, 1234);

    let ls = ok(&stack, &["ls"]);
    for name in ["empty/", "nested/deeper/deepest/", "private/", "readonly/"] {
        assert!(
            ls.lines().any(|l| l.ends_with(&format!(" {name}"))),
            "{name} missing from\n{ls}"
        );
    }
    assert!(ls.lines().any(|l| l.starts_with("0555 ")), "{ls}");
    assert!(!ls.contains("doomed"), "{ls}");
    let history = ok(&stack, &["history", "doomed"]);
    let lines: Vec<&str> = history.lines().collect();
    assert_eq!(lines.len(), 4, "{history}");
    assert!(lines[1].contains("directory"), "{history}");
    assert!(lines[2].contains("mode 0710, owner 0:0"), "{history}");
    assert!(lines[3].ends_with("removed"), "{history}");

    let to = stack.dir.path().join("restored");
    let out = ok(&stack, &["restore", "--to", to.to_str().unwrap(), "/"]);
    assert!(
        out.contains("restored 2 of 2 files") && out.contains("and 6 of 6 directories"),
        "{out}"
    );
    assert_eq!(dirs(&to), want);
    assert_eq!(tree(&to), tree(&stack.source));

    // Before the rmdir, the removed directory was there, with its mode.
    let then = stack.dir.path().join("then");
    let at = [
        "restore",
        "--at",
        &before_rmdir,
        "--to",
        then.to_str().unwrap(),
    ];
    ok(&stack, &[&at[..], &["/"]].concat());
    let mut want_then = want.clone();
    want_then.insert(PathBuf::from("doomed"), (0o710, 0, 0));
    assert_eq!(dirs(&then), want_then);
    // Selected alone, an empty directory is something to restore.
    let alone = stack.dir.path().join("alone");
    let out = ok(
        &stack,
        &["restore", "--to", alone.to_str().unwrap(), "empty"],
    );
    assert!(out.contains("1 of 1 directories"), "{out}");
    assert!(alone.join("empty").is_dir());
}
