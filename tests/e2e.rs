//! The main job end to end: a real FUSE mount, a real clamd and a real S3 server on
//! loopback, with stock `gpg` and `zstd` reading back what backupfs wrote.

mod common;
#[path = "common/corpus/mod.rs"]
#[allow(dead_code)]
mod corpus;

use std::io::ErrorKind;
use std::process::Command;
use std::time::Duration;

use common::{eicar, Options, Stack};

#[test]
fn copied_file_lands_as_one_object_that_gpg_and_zstd_restore() {
    let stack = Stack::start();
    let original = stack.dir.path().join("report.bin");
    let content: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&original, &content).unwrap();
    let status = Command::new("cp")
        .arg(&original)
        .arg(stack.mnt.join("report.bin"))
        .status()
        .unwrap();
    assert!(status.success());

    let record = stack.wait_audit("report.bin");
    assert_eq!(record["outcome"], "uploaded", "{record}");
    let objects = stack.objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(record["object"], objects[0].as_str());
    assert!(
        !objects[0].contains("report"),
        "object names must not reveal file names"
    );
    assert_eq!(stack.restore_with_stock_tools(&objects[0]), content);
    // The write went through to the source directory too.
    assert_eq!(
        std::fs::read(stack.source.join("report.bin")).unwrap(),
        content
    );
}

#[test]
fn same_bytes_under_a_second_name_is_a_duplicate() {
    let stack = Stack::start();
    stack.put_file("first.txt", b"the same bytes twice\n");
    assert_eq!(stack.wait_audit("first.txt")["outcome"], "uploaded");
    stack.put_file("second.txt", b"the same bytes twice\n");
    let record = stack.wait_audit("second.txt");
    assert_eq!(record["outcome"], "duplicate", "{record}");
    assert_eq!(record["classification"], "general", "{record}");
    assert_eq!(record["object"], stack.wait_audit("first.txt")["object"]);
    assert_eq!(stack.objects().len(), 1);
    assert_eq!(
        stack.metric("backupfs_files_total{outcome=\"duplicate\"}"),
        1.0
    );
}

#[test]
fn infected_file_is_quarantined_not_uploaded() {
    let stack = Stack::start();
    stack.put_file("eicar.com", &eicar());
    let record = stack.wait_audit("eicar.com");
    assert_eq!(record["outcome"], "infected", "{record}");
    assert!(stack.objects().is_empty());

    let entries: Vec<_> = std::fs::read_dir(stack.quarantine_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let held = entries
        .iter()
        .find(|p| p.extension().is_none_or(|e| e != "json"))
        .expect("quarantined file");
    assert_eq!(std::fs::read(held).unwrap(), eicar());
    let reason_path = format!("{}.json", held.display());
    let reason: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&reason_path).unwrap()).unwrap();
    assert_eq!(reason["path"], "eicar.com");
    assert!(
        reason["signature"].as_str().unwrap().contains("EICAR"),
        "{reason}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(stack.quarantine_dir())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);

    assert!(!stack.source.join("eicar.com").exists());
    assert_eq!(
        std::fs::metadata(stack.mnt.join("eicar.com"))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound,
        "gone from the mount"
    );
    let listed: Vec<_> = std::fs::read_dir(&stack.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(listed.is_empty(), "{listed:?}");
    assert_eq!(
        stack.metric("backupfs_files_total{outcome=\"infected\"}"),
        1.0
    );
}

#[test]
fn blacklisted_names_get_eacces_and_never_reach_the_source() {
    let stack = Stack::start();
    let err = std::fs::write(stack.mnt.join("x.exe"), b"MZ").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");

    stack.put_file("a.txt", b"plain text\n");
    let err = std::fs::rename(stack.mnt.join("a.txt"), stack.mnt.join("a.exe")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");
    std::fs::create_dir(stack.mnt.join("sub")).unwrap();
    let err = std::fs::write(stack.mnt.join("sub/y.exe"), b"MZ").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "{err}");

    assert!(!stack.source.join("x.exe").exists());
    assert!(!stack.source.join("a.exe").exists());
    assert!(!stack.source.join("sub/y.exe").exists());
    assert!(stack.source.join("a.txt").exists());
    assert!(stack.log_file().contains("refused blacklisted name"));
    assert_eq!(stack.metric("backupfs_refused_names_total"), 3.0);
}

#[test]
fn file_over_max_size_is_rejected_logged_and_counted() {
    let stack = Stack::with(Options {
        max_file_size: "1KiB",
        ..Options::default()
    });
    stack.put_file("big.log", &vec![b'a'; 2048]);
    stack.put_file("small.log", &vec![b'b'; 1024]);
    let record = stack.wait_audit("big.log");
    assert_eq!(record["outcome"], "rejected", "{record}");
    let reason = record["reason"].as_str().unwrap();
    assert!(reason.contains("max-file-size"), "{reason}");
    assert_eq!(stack.wait_audit("small.log")["outcome"], "uploaded");
    assert_eq!(stack.objects().len(), 1);
    assert!(
        stack.log_file().contains("max-file-size"),
        "the reason is in the pipeline log"
    );
    assert_eq!(
        stack.metric("backupfs_files_total{outcome=\"rejected\"}"),
        1.0
    );
}

#[test]
fn files_are_classified_in_the_audit_log() {
    let stack = Stack::start();
    let cases = [
        (
            "contract.txt",
            &b"This agreement is Confidential.\n"[..],
            "sensitive",
        ),
        (
            "customers.csv",
            b"name,card\nAda,4111 1111 1111 1111\n",
            "personal",
        ),
        ("contacts.txt", b"write to ada@example.org\n", "personal"),
        ("notes.txt", b"buy milk\n", "general"),
    ];
    for (name, content, _) in cases {
        stack.put_file(name, content);
    }
    for (name, _, class) in cases {
        let record = stack.wait_audit(name);
        assert_eq!(record["classification"], class, "{name}: {record}");
        assert_eq!(record["outcome"], "uploaded", "{name}: {record}");
    }
    let card = stack.wait_audit("customers.csv");
    assert!(
        !card.to_string().contains("4111"),
        "audit never holds matched values"
    );
    // Which detectors fired, and how many times.
    assert_eq!(card["detectors"], serde_json::json!({"payment-card": 1}));
    let mail = stack.wait_audit("contacts.txt");
    assert_eq!(mail["detectors"], serde_json::json!({"email": 1}));
}

#[test]
fn nothing_is_uploaded_while_clamd_is_down() {
    let mut stack = Stack::start();
    stack.clamd.pause();
    stack.put_file("waiting.txt", b"must be scanned first\n");
    // Give the pipeline time to try (and retry) the scan.
    common::wait_for("a scan retry", Duration::from_secs(30), || {
        (stack.metric("backupfs_retries_total{stage=\"scan\"}") >= 1.0).then_some(())
    });
    assert_eq!(stack.metric("backupfs_clamd_up"), 0.0);
    assert!(stack.objects().is_empty(), "uploaded without a scan");
    assert!(stack.audit().is_empty(), "no outcome while clamd is down");

    stack.clamd.resume();
    let record = stack.wait_audit("waiting.txt");
    assert_eq!(record["outcome"], "uploaded", "{record}");
    assert_eq!(stack.objects().len(), 1);
    assert_eq!(stack.metric("backupfs_clamd_up"), 1.0);
}

#[test]
fn metrics_pass_promtool_and_show_the_counts() {
    let stack = Stack::with(Options {
        max_file_size: "1KiB",
        ..Options::default()
    });
    stack.put_file("one.txt", b"one\n");
    stack.wait_audit("one.txt");
    stack.put_file("copy.txt", b"one\n");
    stack.wait_audit("copy.txt");
    stack.put_file("eicar.com", &eicar());
    stack.wait_audit("eicar.com");
    stack.put_file("big.txt", &[b'x'; 4096]);
    stack.wait_audit("big.txt");

    let text = stack.metrics();
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(text.as_bytes());
    assert!(
        promtool.0.success(),
        "promtool check metrics:\n{}",
        promtool.1
    );
    promtool.1.clear();

    for (outcome, want) in [
        ("uploaded", 1.0),
        ("duplicate", 1.0),
        ("infected", 1.0),
        ("rejected", 1.0),
        ("failed", 0.0),
    ] {
        let series = format!("backupfs_files_total{{outcome=\"{outcome}\"}}");
        assert_eq!(stack.metric(&series), want, "{series}");
    }
    // The queue gauges are refreshed from the database twice a second.
    common::wait_for("an empty queue gauge", Duration::from_secs(5), || {
        (stack.metric("backupfs_queue_depth") == 0.0).then_some(())
    });
    // Hashed: one.txt, copy.txt and EICAR; big.txt is refused on its size before any read.
    assert_eq!(stack.metric("backupfs_read_bytes_total"), 4.0 + 4.0 + 68.0);
    assert!(stack.metric("backupfs_uploaded_bytes_total") > 0.0);
    assert!(stack.metric("process_resident_memory_bytes") > 0.0);
    assert!(stack.metric("process_cpu_seconds_total") >= 0.0);
    assert!(text.contains("backupfs_stage_duration_seconds_bucket{stage=\"seal\""));
}

#[test]
fn odd_and_long_names_are_backed_up() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let stack = Stack::start();
    let long = "l".repeat(251) + ".txt";
    stack.put_file(&long, b"long name\n");
    let odd = OsStr::from_bytes(b"new\nline \xff\xfe bytes.txt");
    std::fs::write(stack.mnt.join(odd), b"odd name\n").unwrap();
    assert_eq!(stack.wait_audit(&long)["outcome"], "uploaded");
    let lossy = odd.to_string_lossy().into_owned();
    let record = stack.wait_audit(&lossy);
    assert_eq!(record["outcome"], "uploaded");
    assert_eq!(
        record["path_hex"],
        hex::encode(odd.as_bytes()),
        "exact bytes kept"
    );
    assert_eq!(stack.objects().len(), 2);
    assert!(stack.source.join(odd).exists());
    let too_long = "l".repeat(256);
    let err = std::fs::write(stack.mnt.join(too_long), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG), "{err}");
}

#[test]
fn gate_two_refuses_a_destination_outside_the_allow_list() {
    let stack = Stack::with(Options {
        allowed: Some("s3://backups/host-b"),
        ..Options::default()
    });
    stack.put_file("report.txt", b"nowhere to go\n");
    let record = stack.wait_audit("report.txt");
    assert_eq!(record["outcome"], "failed", "{record}");
    let reason = record["reason"].as_str().unwrap();
    assert!(
        reason.contains("gate2") && reason.contains("destination.allowed"),
        "{reason}"
    );
    assert!(stack.objects().is_empty());
    assert!(stack.log_file().contains("gate 2 refused the upload"));
    assert_eq!(
        stack.metric("backupfs_files_total{outcome=\"failed\"}"),
        1.0
    );
}

#[test]
fn dir_destination_holds_the_same_layout() {
    let stack = Stack::with(Options {
        dir_destination: true,
        ..Options::default()
    });
    stack.put_file("notes.txt", b"kept on local disk\n");
    let record = stack.wait_audit("notes.txt");
    assert_eq!(record["outcome"], "uploaded", "{record}");
    let key = record["object"].as_str().unwrap();
    assert!(key.starts_with("host-a/data/"), "{key}");
    let sealed = std::fs::read(stack.dir.path().join("objects").join(key)).unwrap();
    assert_eq!(
        stack.decrypt_with_stock_tools(&sealed),
        b"kept on local disk\n"
    );
    assert!(stack.objects().is_empty(), "nothing went to the S3 server");
}

/// Bytes zstd cannot shrink, so sizes on the wire stay what the test intends.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// clamd is handed the open file; one over its MaxFileSize is one it did not scan.
#[test]
fn files_over_clamds_own_limits_are_not_scanned_never_clean() {
    let stack = Stack::with(Options {
        clamd_max_size: "1M",
        ..Options::default()
    });
    stack.put_file("large.bin", &noise(3 << 20, 7));
    let record = stack.wait_audit("large.bin");
    assert_eq!(record["outcome"], "not-scanned", "{record}");
    let reason = record["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("Heuristics.Limits.Exceeded"), "{record}");
    assert!(stack.objects().is_empty());
    assert_eq!(
        stack.metric("backupfs_files_total{outcome=\"not-scanned\"}"),
        1.0
    );
    // clamd itself is fine afterwards, and small files still go through.
    stack.put_file("small.txt", b"small\n");
    assert_eq!(stack.wait_audit("small.txt")["outcome"], "uploaded");
}

#[test]
fn large_objects_go_up_in_parts_and_restore() {
    let stack = Stack::with(Options {
        destination_extra: "multipart-threshold = \"5MiB\"\npart-size = \"5MiB\"",
        ..Options::default()
    });
    let content = noise(12 << 20, 11);
    stack.put_file("video.raw", &content);
    let record = stack.wait_audit("video.raw");
    assert_eq!(record["outcome"], "uploaded", "{record}");
    let objects = stack.objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert!(stack.metric("backupfs_uploaded_bytes_total") > (12 << 20) as f64);
    assert!(
        stack.log_file().contains("multipart upload complete"),
        "not sent in parts"
    );
    assert_eq!(stack.restore_with_stock_tools(&objects[0]), content);
}

#[test]
fn sigterm_and_external_umount_both_stop_cleanly() {
    let mut stack = Stack::start();
    stack.put_file("before-stop.txt", b"queued just before the stop\n");
    let status = stack.stop_daemon().expect("daemon exit status");
    assert!(
        status.success(),
        "exit on SIGTERM: {status}\n{}",
        stack.stderr()
    );
    assert!(!common::is_mounted(&stack.mnt));
    // The drain let the queued file finish.
    assert_eq!(stack.wait_audit("before-stop.txt")["outcome"], "uploaded");

    stack.mount();
    let out = Command::new("umount").arg(&stack.mnt).output().unwrap();
    assert!(
        out.status.success(),
        "umount: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = stack
        .daemon_exit(Duration::from_secs(30))
        .expect("daemon exits after umount");
    assert!(status.success(), "exit after umount: {status}");
}

/// Runs a command with `input` on stdin; returns its status and combined output.
trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> (std::process::ExitStatus, String);
}

impl OutputWithStdin for Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> (std::process::ExitStatus, String) {
        use std::io::Write;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status, text)
    }
}

#[test]
fn private_files_stay_private_and_new_files_get_the_callers_mode() {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let stack = Stack::start();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o664)
        .open(stack.mnt.join("shared.txt"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"group-writable\n").unwrap();
    drop(f);
    std::fs::DirBuilder::new()
        .mode(0o775)
        .create(stack.mnt.join("team"))
        .unwrap();
    // The test process's umask applies first, as on any filesystem.
    let umask = unsafe { libc::umask(0o022) };
    unsafe { libc::umask(umask) };
    assert_eq!(mode(&stack.source.join("shared.txt")), 0o664 & !umask);
    assert_eq!(mode(&stack.source.join("team")), 0o775 & !umask);
    stack.wait_audit("shared.txt");

    let root = stack.dir.path();
    assert_eq!(mode(&root.join("state")) & 0o077, 0, "state dir");
    assert_eq!(mode(&root.join("state/spool")), 0o700, "spool dir");
    assert_eq!(
        mode(&root.join("logs/uploads.jsonl")) & 0o007,
        0,
        "audit log"
    );
    assert_eq!(
        mode(&root.join("logs/backup_pipeline.log")) & 0o007,
        0,
        "pipeline log"
    );
}

#[test]
fn a_second_daemon_cannot_share_the_state_or_mount_over_the_first() {
    let stack = Stack::start();
    let out = Command::new(env!("CARGO_BIN_EXE_backupfs"))
        .args(["mount", "--config"])
        .arg(&stack.config)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("state.dir") && text.contains("in use"),
        "{text}"
    );
    // The first mount still works.
    stack.put_file("still.txt", b"first daemon\n");
    assert_eq!(stack.wait_audit("still.txt")["outcome"], "uploaded");
}

#[test]
fn a_newline_in_a_file_name_cannot_forge_a_log_line() {
    let stack = Stack::start();
    let name = "evil\n2026-01-01T00:00:00.000000Z  INFO worker-0 backupfs::pipeline: forged.txt";
    stack.put_file(name, b"innocent\n");
    assert_eq!(stack.wait_audit(name)["outcome"], "uploaded");
    let log = stack.log_file();
    assert!(
        !log.lines().any(|l| l.starts_with("2026-01-01T00:00:00")),
        "a forged line reached the log"
    );
    let done: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("file done") && l.contains("evil"))
        .collect();
    assert_eq!(done.len(), 1, "{done:?}");
    assert!(
        done[0].contains("evil\\n2026"),
        "the newline is escaped: {}",
        done[0]
    );
}

#[test]
fn passphrase_can_come_from_a_command() {
    // A stand-in for `pass show backupfs`: prints the passphrase, then a line that is not part
    // of it. The shell is asked for explicitly; backupfs runs the argv as given.
    let secrets = tempfile::tempdir().unwrap();
    let vault = secrets.path().join("vault");
    std::fs::write(&vault, "from a command\nusername: backup\n").unwrap();
    let argv = format!(
        r#"["sh", "-c", "echo looking it up >&2; cat \"$1\"", "get-passphrase", "{}"]"#,
        vault.display()
    );
    let mut stack = Stack::with(Options {
        passphrase_command: Some(argv),
        ..Options::default()
    });
    stack.put_file("secret.txt", b"sealed with a command's passphrase\n");
    let record = stack.wait_audit("secret.txt");
    assert_eq!(record["outcome"], "uploaded", "{record}");

    // Stock gpg, reading the first line of the same file, opens what backupfs sealed.
    stack.passphrase = vault;
    let object = record["object"].as_str().unwrap();
    assert_eq!(
        stack.restore_with_stock_tools(object),
        b"sealed with a command's passphrase\n"
    );
    // So do the repository commands, which run the command too.
    stack.wait_published(1);
    let to = stack.dir.path().join("restored");
    let (ok, out, err) = stack.cli(&["restore", "--to", to.to_str().unwrap(), "/"]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        std::fs::read(to.join("secret.txt")).unwrap(),
        b"sealed with a command's passphrase\n"
    );
    // The passphrase appears nowhere backupfs writes about itself.
    let logs = stack.log_file() + &stack.stderr() + &stack.metrics();
    assert!(!logs.contains("from a command"), "{logs}");
}

#[test]
fn an_executable_renamed_to_txt_is_rejected_by_gate_1_as_a_type_mismatch() {
    let stack = Stack::start();
    let elf = std::fs::read("/bin/true").expect("an ELF executable to rename");
    stack.put_file("notes.txt", &elf);
    stack.put_file("true", &elf);
    let renamed = stack.wait_audit("notes.txt");
    assert_eq!(renamed["outcome"], "rejected", "{renamed}");
    let reason = renamed["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("type mismatch") && reason.contains("ELF executable"),
        "{renamed}"
    );
    // The same bytes under a name that does not pretend otherwise are backed up.
    let plain = stack.wait_audit("true");
    assert_eq!(plain["outcome"], "uploaded", "{plain}");
}

#[test]
fn docx_and_pdf_holding_a_card_number_are_backed_up_as_personal() {
    let stack = Stack::start();
    let text = corpus::texts::order_confirmation();
    let files = [
        ("statement.docx", corpus::Format::Docx),
        ("statement.pdf", corpus::Format::PdfFlate),
    ];
    for (name, format) in files {
        format.write(&stack.mnt.join(name), &text);
    }
    for (name, _) in files {
        let record = stack.wait_audit(name);
        assert_eq!(record["outcome"], "uploaded", "{name}: {record}");
        assert_eq!(record["classification"], "personal", "{name}: {record}");
        assert_eq!(record["detectors"]["payment-card"], 1, "{name}: {record}");
        let card = corpus::texts::order_card();
        let shown = corpus::texts::grouped(&card, &[4, 4, 4, 4], " ");
        let line = record.to_string();
        assert!(
            !line.contains(&card) && !line.contains(&shown),
            "audit never holds matched values"
        );
    }
}

#[test]
fn a_document_over_the_classification_cap_is_uploaded_marked_partially_classified() {
    let stack = Stack::with(Options {
        classify_extra: "max-bytes = \"1MiB\"",
        ..Options::default()
    });
    // A Word document with 3 MiB of harmless prose: more text than classification may read.
    let paragraph =
        "<w:p><w:r><w:t>The quarterly report lists no figures of note.</w:t></w:r></w:p>";
    let body = paragraph.repeat((3 << 20) / paragraph.len());
    let mut docx = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut docx);
    let deflated = zip::write::SimpleFileOptions::default();
    zip.start_file("word/document.xml", deflated).unwrap();
    std::io::Write::write_all(
        &mut zip,
        format!("<w:document><w:body>{body}</w:body></w:document>").as_bytes(),
    )
    .unwrap();
    zip.finish().unwrap();
    std::fs::write(stack.mnt.join("long.docx"), docx.into_inner()).unwrap();
    // The same prose, short enough to be read whole.
    std::fs::write(
        stack.mnt.join("short.txt"),
        "The quarterly report lists no figures of note.\n",
    )
    .unwrap();

    let long = stack.wait_audit("long.docx");
    assert_eq!(long["outcome"], "uploaded", "{long}");
    assert_eq!(long["format"], "docx", "{long}");
    let reason = long["partial"].as_str().expect("marked partial");
    assert!(reason.contains("classify.max-bytes"), "{long}");
    // Not known to be general: classify.partial-class, personal by default.
    assert_eq!(long["classification"], "personal", "{long}");

    let short = stack.wait_audit("short.txt");
    assert_eq!(short["classification"], "general", "{short}");
    assert!(short.get("partial").is_none(), "{short}");
    assert!(
        stack
            .metrics()
            .contains("backupfs_classify_partial_total 1\n"),
        "one file counted as partially classified"
    );
}
