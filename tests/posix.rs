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

fn suite_matches_native(passthrough: &'static str) {
    let mut stack = Stack::with(Options {
        allow_other: true,
        passthrough,
        ..Options::default()
    });
    stack.mount();
    // The suite runs as `nobody` and `daemon` too: they must be able to reach both trees.
    std::fs::set_permissions(stack.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
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
