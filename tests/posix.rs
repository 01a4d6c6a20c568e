//! POSIX behaviour: pjdfstest against the mount and, in the same run, against a plain
//! directory on the filesystem that holds the source. The mount may not fail or skip a test
//! the plain directory passes, except the few listed below with their reason.
//!
//! pjdfstest is found through `BACKUPFS_TEST_PJDFSTEST` or in `~/.cargo/bin` (scripts/test.sh
//! installs it with `cargo install pjdfstest --locked`). It needs two existing unprivileged
//! users; Debian has `nobody:nogroup` and `daemon:daemon`. The mount runs with `allow-other`
//! (and so the kernel's `default_permissions` checks), because the suite switches to those
//! users; without `allow-other` only the user who mounted may use the mount at all.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Options, Stack};

/// Tests that fail on the mount by the nature of FUSE, with the reason. None at present: keep
/// this list short and honest, and remove an entry as soon as it passes.
const EXPECTED_FAILURES: &[(&str, &str)] = &[];

/// Tests that the plain directory runs and the mount cannot, with the reason.
const EXPECTED_SKIPS: &[(&str, &str)] = &[(
    "link::link_count_max",
    "glibc's pathconf(_PC_LINK_MAX) knows the limit only for file systems it recognises by \
     their magic number, and a FUSE mount has none, so pjdfstest cannot learn LINK_MAX",
)];

const CONFIG: &str = r#"
[features]
posix_fallocate = {}
rename_ctime = {}
utimensat = {}
utime_now = {}

[settings]
# 0.001 gives false timestamp failures even on ext4.
naptime = 0.01

[dummy_auth]
entries = [["nobody", "nogroup"], ["daemon", "daemon"]]
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passed,
    Failed,
    Skipped,
}

struct Run {
    outcomes: BTreeMap<String, Outcome>,
    output: String,
}

impl Run {
    fn count(&self, outcome: Outcome) -> usize {
        self.outcomes.values().filter(|&&o| o == outcome).count()
    }

    fn names(&self, outcome: Outcome) -> BTreeSet<&str> {
        self.outcomes
            .iter()
            .filter(|(_, &o)| o == outcome)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// The lines pjdfstest printed about one test, for a failure message.
    fn detail(&self, name: &str) -> String {
        let mut lines = self.output.lines().skip_while(|l| !l.starts_with(name));
        let mut out: Vec<&str> = lines.next().into_iter().collect();
        out.extend(lines.take_while(|l| l.starts_with(['\t', ' '])).take(4));
        out.join("\n")
    }
}

fn pjdfstest() -> PathBuf {
    if let Ok(p) = std::env::var("BACKUPFS_TEST_PJDFSTEST") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let p = Path::new(&home).join(".cargo/bin/pjdfstest");
    assert!(
        p.exists(),
        "pjdfstest not found (BACKUPFS_TEST_PJDFSTEST unset, no {}); run scripts/test.sh",
        p.display()
    );
    p
}

/// Runs the whole suite in `dir`, with `other_fs` (on another filesystem) for the EXDEV tests.
fn run_suite(config: &Path, dir: &Path, other_fs: &Path) -> Run {
    let out = Command::new(pjdfstest())
        .arg("-c")
        .arg(config)
        .arg("-p")
        .arg(dir)
        .arg("-s")
        .arg(other_fs)
        .current_dir(dir)
        .output()
        .expect("run pjdfstest");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut outcomes = BTreeMap::new();
    for line in output.lines() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(word), None) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        if !name.contains("::") {
            continue;
        }
        let outcome = match word {
            "ok" => Outcome::Passed,
            "FAILED" => Outcome::Failed,
            "skipped" => Outcome::Skipped,
            _ => continue,
        };
        outcomes.insert(name.to_string(), outcome);
    }
    Run { outcomes, output }
}

/// A mounted `allow-other` stack whose directory `nobody` and `daemon` can reach.
fn shared_stack(passthrough: &'static str) -> Stack {
    let mut stack = Stack::with(Options {
        allow_other: true,
        passthrough,
        ..Options::default()
    });
    stack.mount();
    std::fs::set_permissions(stack.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    stack
}

/// The suite's timestamp checks wait only `naptime`: two runs at once on a loaded 2-core
/// machine can miss them, so runs take turns.
static ONE_SUITE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn suite_matches_native(passthrough: &'static str) {
    let _turn = ONE_SUITE_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    // The suite runs as `nobody` and `daemon` too: they must be able to reach both trees.
    let stack = shared_stack(passthrough);
    let native = stack.dir.path().join("native");
    std::fs::create_dir(&native).unwrap();
    let config = stack.dir.path().join("pjdfstest.toml");
    std::fs::write(&config, CONFIG).unwrap();
    // /dev/shm is a tmpfs: another filesystem, for the cross-device rename tests.
    let other = tempfile::Builder::new()
        .prefix("backupfs-pjdfstest")
        .tempdir_in("/dev/shm")
        .unwrap();
    std::fs::set_permissions(other.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let base = run_suite(&config, &native, other.path());
    let mount = run_suite(&config, &stack.mnt, other.path());

    println!("pjdfstest, mount.passthrough = {passthrough:?}");
    println!("               passed  failed  skipped");
    for (label, run) in [("plain dir", &base), ("mount", &mount)] {
        println!(
            "{label:<14} {:>6}  {:>6}  {:>7}",
            run.count(Outcome::Passed),
            run.count(Outcome::Failed),
            run.count(Outcome::Skipped)
        );
    }
    assert!(
        base.count(Outcome::Passed) > 300,
        "pjdfstest did not run on the plain directory:\n{}",
        base.output
    );
    assert_eq!(
        base.outcomes.keys().collect::<Vec<_>>(),
        mount.outcomes.keys().collect::<Vec<_>>(),
        "both runs list the same tests"
    );

    let expected_failures: BTreeSet<&str> = EXPECTED_FAILURES.iter().map(|(n, _)| *n).collect();
    let expected_skips: BTreeSet<&str> = EXPECTED_SKIPS.iter().map(|(n, _)| *n).collect();
    let mut problems = Vec::new();
    for (name, &outcome) in &mount.outcomes {
        let native = base.outcomes[name];
        let allowed = outcome == native
            || native != Outcome::Passed
            || (outcome == Outcome::Failed && expected_failures.contains(name.as_str()))
            || (outcome == Outcome::Skipped && expected_skips.contains(name.as_str()));
        if !allowed {
            problems.push(format!(
                "{name}: {outcome:?} on the mount, {native:?} on the plain directory\n{}",
                mount.detail(name)
            ));
        }
    }
    // An expected failure or skip that no longer happens is a stale entry.
    for name in expected_failures.difference(&mount.names(Outcome::Failed)) {
        problems.push(format!(
            "{name} is listed as an expected failure but did not fail"
        ));
    }
    for name in expected_skips.difference(&mount.names(Outcome::Skipped)) {
        problems.push(format!(
            "{name} is listed as an expected skip but was not skipped"
        ));
    }
    assert!(
        problems.is_empty(),
        "the mount differs from the plain directory:\n{}",
        problems.join("\n")
    );
}

#[test]
fn pjdfstest_with_kernel_passthrough_matches_the_plain_directory() {
    suite_matches_native("on");
}

#[test]
fn pjdfstest_through_the_daemon_matches_the_plain_directory() {
    suite_matches_native("off");
}

/// Runs `cmd` as `nobody:nogroup` with no supplementary groups.
fn as_nobody(cmd: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(cmd)
        .output()
        .expect("run setpriv")
}

/// Runs shell `script` as `nobody` with `$1` set to `arg`; it must succeed.
fn sh_as_nobody(script: &str, arg: &Path) {
    let out = as_nobody(&["sh", "-c", script, "sh", arg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Acceptance: the kernel checks permissions on an `allow-other` mount, so the daemon
/// running as root never reads a file for a user who may not.
#[test]
fn nobody_cannot_read_another_users_private_file() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let stack = shared_stack("auto");
    std::fs::set_permissions(&stack.mnt, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let private = stack.put_file("private.txt", b"only for daemon\n");
    // Owned by the `daemon` user (uid 1), readable by it alone.
    std::os::unix::fs::chown(&private, Some(1), Some(1)).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    let meta = std::fs::metadata(stack.source.join("private.txt")).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (1, 0o600));

    let cat = as_nobody(&["cat", private.to_str().unwrap()]);
    assert!(
        !cat.status.success(),
        "nobody read a 0600 file of another user"
    );
    let err = String::from_utf8_lossy(&cat.stderr);
    assert!(
        err.contains("Permission denied"),
        "expected EACCES, got: {err}"
    );
    assert!(cat.stdout.is_empty());

    // The same user can read a file that allows it, so the refusal above is the permission
    // check and not a mount nobody can use at all.
    let public = stack.put_file("public.txt", b"for everyone\n");
    let cat = as_nobody(&["cat", public.to_str().unwrap()]);
    assert!(
        cat.status.success(),
        "{}",
        String::from_utf8_lossy(&cat.stderr)
    );
    assert_eq!(cat.stdout, b"for everyone\n");

    // A file nobody creates through the mount is nobody's, as on any filesystem, although
    // the daemon that creates it in the source runs as root.
    let made = stack.mnt.join("made-by-nobody.txt");
    sh_as_nobody("umask 027; echo mine > \"$1\"; mkdir \"$1.d\"", &made);
    for (name, mode) in [
        ("made-by-nobody.txt", 0o640),
        ("made-by-nobody.txt.d", 0o750),
    ] {
        let meta = std::fs::symlink_metadata(stack.source.join(name)).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (65534, 65534, mode),
            "{name} in the source"
        );
    }
}

/// In a set-group-ID directory, what any user makes takes the directory's group, as on a
/// plain filesystem, although the daemon makes it as root.
#[test]
fn a_set_group_id_directory_gives_its_group() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let stack = shared_stack("auto");
    let shared = stack.mnt.join("shared");
    std::fs::create_dir(&shared).unwrap();
    // Group `daemon` (gid 1), writable by all, set-group-ID.
    std::os::unix::fs::chown(&shared, None, Some(1)).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o2777)).unwrap();
    sh_as_nobody(
        "cd \"$1\" && echo a > f && mkdir sub && mkfifo p && ln -s f l",
        &shared,
    );
    for name in ["f", "sub", "p", "l"] {
        let meta = std::fs::symlink_metadata(stack.source.join("shared").join(name)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 1), "{name}");
    }
    let sub = std::fs::metadata(stack.source.join("shared/sub")).unwrap();
    assert_ne!(
        sub.mode() & 0o2000,
        0,
        "a new directory inherits set-group-ID"
    );
}

/// Symlinks in the source are served as symlinks: changing one through the mount changes the
/// link, never its target outside the source, and the pipeline never backs up a target.
#[test]
fn symlinks_in_the_source_never_lead_outside_it() {
    use std::os::unix::fs::MetadataExt;
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, b"must never be backed up\n").unwrap();
    let before = std::fs::metadata(&secret).unwrap();

    let mut stack = Stack::start();
    std::os::unix::fs::symlink(&secret, stack.source.join("file-link")).unwrap();
    std::os::unix::fs::symlink(outside.path(), stack.source.join("dir-link")).unwrap();
    stack.mount();

    let link = stack.mnt.join("file-link");
    let status = Command::new("touch")
        .args(["-h", "-d", "2001-02-03 04:05:06"])
        .arg(&link)
        .status()
        .unwrap();
    assert!(status.success());
    std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
    let link_meta = std::fs::symlink_metadata(stack.source.join("file-link")).unwrap();
    assert_eq!(
        link_meta.mtime(),
        981_173_106,
        "the link itself took the time"
    );
    assert_eq!(link_meta.uid(), 65534, "the link itself took the owner");
    let after = std::fs::metadata(&secret).unwrap();
    assert_eq!(
        (after.mtime(), after.mtime_nsec(), after.uid()),
        (before.mtime(), before.mtime_nsec(), before.uid()),
        "the target outside the source was touched"
    );
    // Extended attributes cannot be set on a symlink (Linux allows no user.* there), and
    // setting one must not land on the target either.
    let out = Command::new("setfattr")
        .args(["-h", "-n", "user.x", "-v", "1"])
        .arg(&link)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let xattr = Command::new("getfattr")
        .args(["-n", "user.x"])
        .arg(&secret)
        .output()
        .unwrap();
    assert!(!xattr.status.success(), "the target got the attribute");

    // A real file next to them is backed up; neither link nor anything behind them is.
    stack.put_file("real.txt", b"a real file\n");
    stack.wait_audit("real.txt");
    stack.stop_daemon();
    let catalog = stack.catalog();
    assert!(catalog.contains_key("real.txt"));
    for path in catalog.keys() {
        assert!(
            !path.contains("link") && !path.contains("secret"),
            "backed up {path}"
        );
    }
    let log = stack.log_file();
    assert!(
        !log.contains("secret.txt"),
        "the pipeline looked at the target"
    );
}
