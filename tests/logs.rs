//! The daemon's own log (`log.file`, text or JSON) and its stderr, read the way an operator
//! or a log shipper reads them: a file name cannot forge a line, the passphrase never shows,
//! and the real `logrotate` with the shipped rules rotates a running mount's logs.
//!
//! logrotate comes from Debian's `logrotate` package (scripts/test.sh installs it);
//! `BACKUPFS_TEST_LOGROTATE` overrides its path.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Options, Stack};
use serde_json::Value;

/// The passphrase tests/common writes for every stack.
const PASSPHRASE: &str = "correct horse battery staple";

/// A name that, printed raw, would add a text line of its own claiming a file was done.
const FORGED_TEXT: &str = "x\n1999-12-31T23:59:59Z  INFO backupfs: file done path=\"evil.txt\"";

/// The same for a JSON log: a second line that parses as a record of its own.
const FORGED_JSON: &str = "x\n{\"timestamp\":\"1999-12-31T23:59:59Z\",\"level\":\"INFO\",\
    \"fields\":{\"message\":\"file done\",\"path\":\"evil.txt\"}}";

fn with_format(log_format: &'static str) -> Stack {
    Stack::with(Options {
        log_format,
        ..Options::default()
    })
}

/// A file named `forged` and one whose name holds the passphrase, written through the
/// mount and backed up (the audit log hides the passphrase as the log does).
fn put_odd_names(stack: &Stack, forged: &str) {
    stack.put_file(forged, b"forged\n");
    stack.put_file(&format!("notes on {PASSPHRASE}.txt"), b"secret name\n");
    assert_eq!(stack.wait_audit(forged)["outcome"], "uploaded");
    let hidden = stack.wait_audit("notes on [redacted].txt");
    assert_eq!(hidden["outcome"], "uploaded");
}

/// Checks a text log (the file or stderr): no line is forged, none holds a control character
/// (colour codes included), the forged name shows in exactly one `file done` record, escaped,
/// and the passphrase shows nowhere.
fn check_text(log: &str, forged: &str, what: &str) {
    // How `path = ?path` shows the name: quoted, newline as `\n`.
    let shown = format!("{forged:?}");
    let inner = &shown[1..shown.len() - 1];
    for line in log.lines() {
        assert!(
            !line.starts_with("1999-12-31"),
            "{what}: forged line {line:?}"
        );
        assert!(!line.starts_with('{'), "{what}: forged line {line:?}");
        assert!(
            !line.chars().any(char::is_control),
            "{what}: control character in {line:?}"
        );
        if line.contains("evil.txt") {
            assert!(
                line.contains(inner),
                "{what}: the name unescaped in {line:?}"
            );
        }
    }
    let done: Vec<&str> = log.lines().filter(|l| is_file_done(l, &shown)).collect();
    assert_eq!(done.len(), 1, "{what}: {done:#?}");
    check_redacted(log, what);
}

/// Whether `line` is the text record of a file done whose path shows as `shown`; the name
/// itself may say "file done", so only the message before the fields counts.
fn is_file_done(line: &str, shown: &str) -> bool {
    let Some((head, fields)) = line.split_once(" path=") else {
        return false;
    };
    head.contains(" file done ") && fields.starts_with(shown)
}

fn check_redacted(log: &str, what: &str) {
    assert!(
        !log.contains(PASSPHRASE),
        "{what}: the passphrase is in the log"
    );
    assert!(
        log.lines()
            .any(|l| is_file_done(l, "\"notes on [redacted].txt\"")),
        "{what}: no redacted record of the file named with the passphrase"
    );
}

#[test]
fn text_log_keeps_a_forged_line_inside_its_record_and_hides_the_passphrase() {
    let stack = with_format("text");
    put_odd_names(&stack, FORGED_TEXT);
    check_text(&stack.log_file(), FORGED_TEXT, "log.file");
    check_text(&stack.stderr(), FORGED_TEXT, "stderr");
}

#[test]
fn json_log_is_one_object_per_line_and_a_name_cannot_add_one() {
    let stack = with_format("json");
    put_odd_names(&stack, FORGED_JSON);
    let log = stack.log_file();
    let records: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l:?}")))
        .collect();
    assert!(records.len() > 10, "{log}");
    for r in &records {
        assert!(r.is_object(), "{r}");
        let time = r["timestamp"].as_str().unwrap_or_default();
        assert!(!time.starts_with("1999"), "forged record {r}");
        assert!(r["level"].is_string() && r["fields"].is_object(), "{r}");
    }
    let shown = format!("{FORGED_JSON:?}");
    let done: Vec<&Value> = records
        .iter()
        .filter(|r| r["fields"]["message"] == "file done" && r["fields"]["path"] == *shown)
        .collect();
    assert_eq!(done.len(), 1, "{done:#?}");
    assert_eq!(done[0]["level"], "INFO");
    assert!(!log.contains(PASSPHRASE), "the passphrase is in the log");
    assert!(
        records.iter().any(|r| r["fields"]["message"] == "file done"
            && r["fields"]["path"] == "\"notes on [redacted].txt\""),
        "no redacted record of the file named with the passphrase"
    );
    // stderr stays text, held to the same rules.
    check_text(&stack.stderr(), FORGED_JSON, "stderr");
}

fn logrotate() -> String {
    std::env::var("BACKUPFS_TEST_LOGROTATE").unwrap_or_else(|_| "/usr/sbin/logrotate".into())
}

/// Runs the real logrotate, forced, with the shipped rules pointed at `logs`.
fn rotate(logs: &Path, work: &Path) {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/logrotate/backupfs");
    let rules = std::fs::read_to_string(&shipped).unwrap();
    assert!(rules.contains("/var/log/backupfs/"), "{rules}");
    let conf = work.join("logrotate.conf");
    let here = format!("{}/", logs.display());
    std::fs::write(&conf, rules.replace("/var/log/backupfs/", &here)).unwrap();
    let out = Command::new(logrotate())
        .arg("-f")
        .arg("-v")
        .arg("-s")
        .arg(work.join("logrotate.state"))
        .arg(&conf)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}); install logrotate", logrotate()));
    assert!(
        out.status.success(),
        "logrotate failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn gunzip(path: &Path) -> String {
    let out = Command::new("gzip").arg("-dc").arg(path).output().unwrap();
    assert!(out.status.success(), "gzip -dc {}", path.display());
    String::from_utf8(out.stdout).unwrap()
}

/// `2026-12-05T01:02:03.456789Z ...`: how every text record starts.
fn starts_with_a_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 20 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T'
}

fn done_lines(log: &str, name: &str) -> usize {
    let shown = format!("{name:?}");
    log.lines().filter(|l| is_file_done(l, &shown)).count()
}

#[test]
fn copytruncate_rotation_keeps_every_line_and_the_next_starts_the_emptied_file() {
    let stack = Stack::start();
    let before = ["before-0.txt", "before-1.txt", "before-2.txt"];
    for name in before {
        stack.put_file(name, name.as_bytes());
        stack.wait_audit(name);
    }
    let old = stack.log_file();
    let logs = stack.log_path().parent().unwrap().to_path_buf();

    rotate(&logs, stack.dir.path());

    // The rotated copy holds every line written before, from the first.
    let rotated = gunzip(&logs.join("backup_pipeline.log.1.gz"));
    assert!(rotated.starts_with(&old), "rotated copy lost lines");
    let emptied = std::fs::metadata(stack.log_path()).unwrap().len();
    assert!(
        emptied < old.len() as u64,
        "{emptied} bytes left after rotation"
    );
    assert!(
        logs.join("uploads.jsonl.1.gz").exists(),
        "audit log not rotated"
    );

    let after = ["after-0.txt", "after-1.txt", "after-2.txt"];
    for name in after {
        stack.put_file(name, name.as_bytes());
        // The audit log was emptied too; reading it parses every line, so a hole of zeros at
        // its front would fail here.
        stack.wait_audit(name);
    }
    let new = std::fs::read(stack.log_path()).unwrap();
    assert!(!new.contains(&0), "a hole of zeros in the emptied log");
    let new = String::from_utf8(new).unwrap();
    assert!(
        new.lines().all(starts_with_a_timestamp),
        "every line is a whole record:\n{new}"
    );
    for name in before {
        assert_eq!(done_lines(&rotated, name), 1, "{name} in the rotated copy");
        assert_eq!(done_lines(&new, name), 0, "{name} in the new log");
    }
    for name in after {
        assert_eq!(done_lines(&rotated, name), 0, "{name} in the rotated copy");
        assert_eq!(done_lines(&new, name), 1, "{name} in the new log");
    }
}
