//! The binary's answers to bad input: each error names what is wrong and where.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn backupfs(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_backupfs"))
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn write_config(dir: &Path, extra_mount: &str, pass_mode: u32) -> String {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("mnt")).unwrap();
    let pass = dir.join("pass");
    std::fs::write(&pass, "secret\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(pass_mode)).unwrap();
    let config = dir.join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[mount]\nsource = \"src\"\nmountpoint = \"mnt\"\n{extra_mount}\n\
             [encrypt]\npassphrase-file = \"pass\"\n\
             [destination]\nkind = \"dir\"\npath = \"out\"\nallowed = [\"file://{}/out\"]\n\
             [metrics]\nlisten = \"\"\n",
            dir.display()
        ),
    )
    .unwrap();
    config.display().to_string()
}

#[test]
fn help_explains_every_command() {
    let (ok, text) = backupfs(&["--help"]);
    assert!(ok, "{text}");
    for word in ["mount", "check-config"] {
        assert!(text.contains(word), "{word} missing from --help:\n{text}");
    }
    let (ok, text) = backupfs(&["mount", "--help"]);
    assert!(
        ok && text.contains("--config") && text.contains("SIGTERM"),
        "{text}"
    );
}

#[test]
fn good_config_checks_ok() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", 0o600);
    let (ok, text) = backupfs(&["check-config", "--config", &config]);
    assert!(ok, "{text}");
}

#[test]
fn unknown_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "allow_other = true", 0o600);
    let (ok, text) = backupfs(&["mount", "--config", &config]);
    assert!(!ok);
    assert!(
        text.contains("allow_other") && text.contains(&config),
        "{text}"
    );
}

#[test]
fn open_passphrase_file_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", 0o644);
    let (ok, text) = backupfs(&["mount", "--config", &config]);
    assert!(!ok);
    assert!(
        text.contains("passphrase") && text.contains("0644") && text.contains("chmod 600"),
        "{text}"
    );
}

#[test]
fn missing_config_file_is_named() {
    let (ok, text) = backupfs(&["mount", "--config", "/nonexistent/backupfs.toml"]);
    assert!(!ok);
    assert!(text.contains("/nonexistent/backupfs.toml"), "{text}");
}

#[test]
fn missing_source_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", 0o600);
    std::fs::remove_dir(dir.path().join("src")).unwrap();
    let (ok, text) = backupfs(&["mount", "--config", &config]);
    assert!(!ok);
    assert!(text.contains("mount.source"), "{text}");
}

/// The config of `write_config` with `encrypt.passphrase-command = ARGV` instead of the file.
fn with_passphrase_command(config: &str, argv: &str) {
    let text = std::fs::read_to_string(config).unwrap().replace(
        "passphrase-file = \"pass\"",
        &format!("passphrase-command = {argv}"),
    );
    std::fs::write(config, text).unwrap();
}

#[test]
fn passphrase_command_path_is_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", 0o600);
    let script = dir.path().join("get-pass");
    std::fs::write(&script, "#!/bin/sh\necho from-a-script\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    with_passphrase_command(&config, r#"["./get-pass"]"#);
    let (ok, text) = backupfs(&["check-config", "--config", &config]);
    assert!(ok, "{text}");
}

#[test]
fn failing_passphrase_command_shows_its_stderr_never_its_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", 0o600);
    with_passphrase_command(
        &config,
        r#"["sh", "-c", "echo half-a-secret; echo 'gpg: decryption failed: No secret key' >&2; exit 2"]"#,
    );
    for command in ["check-config", "mount"] {
        let (ok, text) = backupfs(&[command, "--config", &config]);
        assert!(!ok, "{command}: {text}");
        assert!(
            text.contains("encrypt.passphrase-command")
                && text.contains("`sh` exited with status 2")
                && text.contains("No secret key"),
            "{command}: {text}"
        );
        assert!(!text.contains("half-a-secret"), "{command}: {text}");
    }
}

#[test]
fn check_config_refuses_the_credentials_file_the_mount_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", 0o600);
    let keys = dir.path().join("aws-credentials");
    std::fs::write(
        &keys,
        "[default]\naws_access_key_id = a\naws_secret_access_key = b\n",
    )
    .unwrap();
    let dir_destination = std::fs::read_to_string(&config).unwrap();
    for (mode, profile, wanted) in [
        (0o644, "default", "chmod 600"),
        (0o600, "prod", "no [prod] section"),
    ] {
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(mode)).unwrap();
        let s3 = format!(
            "kind = \"s3\"\nbucket = \"b\"\ncredentials-file = \"{}\"\nprofile = \"{profile}\"\n\
             allowed = [\"s3://b\", ",
            keys.display()
        );
        let text = dir_destination.replace("kind = \"dir\"\npath = \"out\"\nallowed = [", &s3);
        assert_ne!(text, dir_destination);
        std::fs::write(&config, text).unwrap();
        let (ok, text) = backupfs(&["check-config", "--config", &config]);
        assert!(
            !ok && text.contains("destination.credentials-file") && text.contains(wanted),
            "{text}"
        );
    }
}
