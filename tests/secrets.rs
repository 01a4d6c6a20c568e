//! The passphrase stays secret: a mount made by mount(8), with the passphrase from a command,
//! given files whose names and contents hold the passphrase, never shows it in a command
//! line, an environment, a log, the audit log or `/metrics`; only the backed-up content
//! holds it, and that is encrypted. (Commands an operator runs, such as `status` and `ls`,
//! show file names as they are.)

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::mount8::Fstab;

const SECRET: &str = "correct horse battery staple";

/// What /proc shows of a process: its command line and environment.
fn proc_text(pid: i32) -> String {
    let read = |what: &str| std::fs::read(format!("/proc/{pid}/{what}")).unwrap_or_default();
    let mut text = String::from_utf8_lossy(&read("cmdline")).replace('\0', " ");
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&read("environ")).replace('\0', "\n"));
    text
}

/// Processes whose parent is `pid`.
fn children(pid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            // After the command name in parentheses: state, then the parent's PID.
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.split(' ').nth(1)?.parse::<i32>().ok())
                == Some(pid)
        })
        .collect()
}

fn assert_no_secret(what: &str, text: &str) {
    assert!(
        !text.contains(SECRET),
        "the passphrase appears in {what}:\n{text}"
    );
}

#[test]
fn the_passphrase_appears_in_no_argv_environment_log_or_metric() {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path();
    // A stand-in for a password manager: it records what it was given, then prints the
    // passphrase (the stack's passphrase file) on stdout.
    let command = seen.join("get-passphrase");
    std::fs::write(
        &command,
        format!(
            "#!/bin/sh\ncat /proc/$$/environ > {env}\ncat /proc/$$/cmdline > {argv}\ncat \"$1\"\n",
            env = seen.join("command-environ").display(),
            argv = seen.join("command-cmdline").display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&command, std::fs::Permissions::from_mode(0o700)).unwrap();
    let command_line = |passphrase: &Path| {
        format!(
            "passphrase-command = [\"{}\", \"{}\"]",
            command.display(),
            passphrase.display()
        )
    };
    let t = Fstab::with_config("", |text| {
        let line = text
            .lines()
            .find(|l| l.starts_with("passphrase-file = "))
            .expect("the stack names a passphrase file")
            .to_string();
        let file = line
            .trim_start_matches("passphrase-file = \"")
            .trim_end_matches('"');
        text.replace(&line, &command_line(Path::new(file)))
    });
    assert_eq!(
        std::fs::read_to_string(&t.stack.passphrase).unwrap(),
        format!("{SECRET}\n")
    );

    let out = t.mount(&["-T", t.fstab.to_str().unwrap(), "-a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut mount_output = String::from_utf8_lossy(&out.stdout).into_owned();
    mount_output += &String::from_utf8_lossy(&out.stderr);
    let mut daemon = t.daemon();

    // Names and contents that hold the passphrase: uploaded, refused by the blacklist, and
    // quarantined.
    let named = format!("notes {SECRET}.txt");
    let content = format!("the passphrase is {SECRET}\n");
    daemon.write(&named, &content);
    let out = daemon.nsenter("mkdir", &[t.stack.mnt.join(SECRET).to_str().unwrap()]);
    assert!(out.status.success());
    daemon.write(&format!("{SECRET}/inner.txt"), &content);
    let refused = daemon.nsenter(
        "touch",
        &[t.stack.mnt.join(format!("{SECRET}.exe")).to_str().unwrap()],
    );
    assert!(!refused.status.success(), "the blacklist refuses *.exe");
    // A name that is not UTF-8: the audit log adds its bytes in hex.
    let out = daemon.nsenter(
        "sh",
        &[
            "-c",
            r#"printf %s "$1" > "$2/$(printf '\377') $3.txt""#,
            "sh",
            &content,
            t.stack.mnt.to_str().unwrap(),
            SECRET,
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let eicar = String::from_utf8(common::eicar()).unwrap();
    daemon.write(&format!("infected {SECRET}.txt"), &eicar);

    // The audit log names them with the passphrase hidden, as the log does.
    let uploaded = t.stack.wait_audit("notes [redacted].txt");
    assert_eq!(uploaded["outcome"], "uploaded", "{uploaded}");
    let inner = t.stack.wait_audit("[redacted]/inner.txt");
    assert_eq!(inner["outcome"], "uploaded", "{inner}");
    let odd = t.stack.wait_audit("\u{fffd} [redacted].txt");
    let hex = odd["path_hex"].as_str().unwrap_or_default();
    assert!(
        hex.starts_with("ff20") && hex.contains("[redacted]"),
        "{odd}"
    );
    let infected = t.stack.wait_audit("infected [redacted].txt");
    assert_eq!(infected["outcome"], "infected", "{infected}");

    // While it runs: the daemon's command line and environment, and those of any child.
    assert_no_secret(
        "the daemon's /proc cmdline and environ",
        &proc_text(daemon.pid),
    );
    for child in children(daemon.pid) {
        assert_no_secret("a child's /proc cmdline and environ", &proc_text(child));
    }
    // The command backupfs ran: argv and environment as it saw them.
    for file in ["command-environ", "command-cmdline"] {
        let text = std::fs::read(seen.join(file)).expect("the command ran");
        assert!(!text.is_empty(), "{file}");
        assert_no_secret(file, &String::from_utf8_lossy(&text).replace('\0', "\n"));
    }
    assert_no_secret("/metrics", &t.stack.metrics());
    assert_eq!(daemon.umount_and_wait(), Some(0));

    // What backupfs wrote about itself, with the names in it.
    let log = t.stack.log_file();
    assert!(
        log.contains("notes [redacted].txt") && log.contains("infected [redacted].txt"),
        "the log names the files, without the passphrase:\n{log}"
    );
    assert_no_secret("the log file", &log);
    let audit = std::fs::read_to_string(t.stack.dir.path().join("logs/uploads.jsonl")).unwrap();
    assert_no_secret("the audit log", &audit);
    assert_no_secret("mount(8)'s output", &mount_output);

    // The content holds it, encrypted in the bucket and readable with the passphrase.
    let object = uploaded["object"].as_str().unwrap();
    let sealed = t.stack.object_bytes(object);
    assert!(!String::from_utf8_lossy(&sealed).contains(SECRET));
    assert_eq!(t.stack.restore_with_stock_tools(object), content.as_bytes());
}
