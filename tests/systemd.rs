//! The shipped systemd units, checked by systemd itself, and the daemon's side of them:
//! readiness notification and the passphrase as a credential.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// `systemd-analyze verify` on a copy of each unit whose ExecStart names the binary under
/// test (verify insists the executable exists); for mount units it also insists that the
/// file name matches Where=.
#[test]
fn systemd_analyze_verifies_the_shipped_units() {
    let dir = tempfile::tempdir().unwrap();
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/systemd");
    let mut checked = 0;
    for entry in std::fs::read_dir(&units).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        match path.extension().and_then(|e| e.to_str()) {
            Some("service") => assert!(
                text.contains("Type=notify"),
                "{}: must wait for the mount",
                path.display()
            ),
            Some("mount") => assert!(
                text.contains("Type=fuse.backupfs") && text.contains("Options=config="),
                "{}: must mount through the mount(8) form",
                path.display()
            ),
            _ => continue,
        }
        let copy = dir.path().join(path.file_name().unwrap());
        std::fs::write(
            &copy,
            text.replace("/usr/local/bin/backupfs", env!("CARGO_BIN_EXE_backupfs")),
        )
        .unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .expect("systemd-analyze");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Without systemd as PID 1, verify may still print that it cannot talk to the bus;
        // anything about the unit itself is a failure.
        let unit_name = copy.file_name().unwrap().to_string_lossy().into_owned();
        let complaints: Vec<&str> = stderr.lines().filter(|l| l.contains(&unit_name)).collect();
        assert!(
            out.status.success() && complaints.is_empty(),
            "{unit_name}:\n{stderr}"
        );
        checked += 1;
    }
    assert_eq!(
        checked, 3,
        "both shipped services and the mount unit were verified"
    );
}

#[test]
fn ready_is_sent_to_systemd_only_once_mounted() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut stack = common::Stack::with_env(
        common::Options::default(),
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
    );
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY=1 from the daemon");
    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(message.contains("READY=1"), "{message}");
    assert!(
        common::is_mounted(&stack.mnt),
        "READY came before the mount"
    );
    stack.stop_daemon();
    let n = sock.recv(&mut buf).expect("STOPPING=1 from the daemon");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1"));
}

#[test]
fn passphrase_can_come_from_a_systemd_credential() {
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(
        creds.path().join("backupfs-passphrase"),
        "correct horse battery staple\n",
    )
    .unwrap();
    std::fs::set_permissions(
        creds.path().join("backupfs-passphrase"),
        std::fs::Permissions::from_mode(0o400),
    )
    .unwrap();
    let stack = common::Stack::with_env(
        common::Options {
            passphrase_credential: true,
            ..common::Options::default()
        },
        &[("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())],
    );
    stack.put_file("secret.txt", b"sealed with the credential\n");
    let record = stack.wait_audit("secret.txt");
    assert_eq!(record["outcome"], "uploaded", "{record}");
    let key = record["object"].as_str().unwrap();
    assert_eq!(
        stack.restore_with_stock_tools(key),
        b"sealed with the credential\n"
    );
}
