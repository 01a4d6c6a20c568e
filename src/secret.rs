//! Reading the passphrase file, refusing it when others could read it too.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("passphrase file {path} ({key}): cannot read it: {source}")]
    Unreadable {
        path: String,
        key: &'static str,
        source: std::io::Error,
    },
    #[error(
        "passphrase file {path} ({key}) has mode {mode:04o}: it must not be readable or \
         writable by group or others; run chmod 600 {path}"
    )]
    TooOpen {
        path: String,
        key: &'static str,
        mode: u32,
    },
    #[error("passphrase file {path} ({key}): its first line is empty")]
    Empty { path: String, key: &'static str },
    #[error(
        "encrypt.passphrase-credential `{name}`: $CREDENTIALS_DIRECTORY is not set; start \
         backupfs from a systemd unit with LoadCredential={name}:/path/to/passphrase"
    )]
    NoCredentials { name: String },
}

/// The passphrase from a systemd credential: `$CREDENTIALS_DIRECTORY/NAME`, which systemd
/// makes readable by the service alone.
pub fn read_credential(name: &str) -> Result<Vec<u8>, SecretError> {
    let dir =
        std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| SecretError::NoCredentials {
            name: name.to_string(),
        })?;
    read_passphrase(&Path::new(&dir).join(name), "encrypt.passphrase-credential")
}

/// The passphrase: the bytes before the first newline, exactly what
/// `gpg --passphrase-file` uses, so stock GnuPG decrypts with the same file.
pub fn read_passphrase(path: &Path, key: &'static str) -> Result<Vec<u8>, SecretError> {
    let shown = path.display().to_string();
    let unreadable = |source| SecretError::Unreadable {
        path: shown.clone(),
        key,
        source,
    };
    let meta = fs::metadata(path).map_err(unreadable)?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretError::TooOpen {
            path: shown,
            key,
            mode,
        });
    }
    let bytes = fs::read(path).map_err(unreadable)?;
    // Like gpg, take everything up to the first newline: a carriage return before it is
    // part of the passphrase, or the two would decrypt with different keys.
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    if line.is_empty() {
        return Err(SecretError::Empty { path: shown, key });
    }
    Ok(line.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const KEY: &str = "encrypt.passphrase-file";

    fn write(dir: &Path, content: &[u8], mode: u32) -> std::path::PathBuf {
        let p = dir.join("pass");
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn first_line_only() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), b"s3cret\nignored\n", 0o600);
        assert_eq!(read_passphrase(&p, KEY).unwrap(), b"s3cret");
        let p = write(d.path(), b"windows\r\n", 0o400);
        assert_eq!(
            read_passphrase(&p, KEY).unwrap(),
            b"windows\r",
            "as gpg reads it"
        );
    }

    #[test]
    fn refusals_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), b"s3cret\n", 0o644);
        let e = read_passphrase(&p, KEY).unwrap_err().to_string();
        assert!(
            e.contains("0644") && e.contains(&p.display().to_string()),
            "{e}"
        );
        let p = write(d.path(), b"\nsecond", 0o600);
        assert!(read_passphrase(&p, KEY)
            .unwrap_err()
            .to_string()
            .contains("empty"));
        let missing = d.path().join("nope");
        let e = read_passphrase(&missing, KEY).unwrap_err().to_string();
        assert!(
            e.contains("nope") && e.contains("encrypt.passphrase-file"),
            "{e}"
        );
    }
}
