//! Where the passphrase comes from: exactly one of a file, a systemd credential or a command.

use std::time::Duration;

use super::EncryptConfig;

/// `encrypt.passphrase-command-timeout`: long enough for an agent to unlock a key or a
/// hardware token to be touched, short enough that a hung command stops the start visibly.
pub(super) fn default_command_timeout() -> Duration {
    Duration::from_secs(30)
}

impl EncryptConfig {
    /// Where the passphrase comes from, as an error's context: the key and its value.
    pub fn passphrase_source(&self) -> String {
        match (
            &self.passphrase_file,
            &self.passphrase_credential,
            &self.passphrase_command,
        ) {
            (Some(file), _, _) => format!("encrypt.passphrase-file {}", file.display()),
            (_, Some(name), _) => format!("encrypt.passphrase-credential {name}"),
            (_, _, Some(argv)) => format!("encrypt.passphrase-command {argv:?}"),
            (None, None, None) => "encrypt.passphrase-file (not set)".into(),
        }
    }

    /// Exactly one source of the passphrase, and a usable one.
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        let set: Vec<&'static str> = [
            ("encrypt.passphrase-file", self.passphrase_file.is_some()),
            (
                "encrypt.passphrase-credential",
                self.passphrase_credential.is_some(),
            ),
            (
                "encrypt.passphrase-command",
                self.passphrase_command.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(key, is_set)| is_set.then_some(key))
        .collect();
        match set[..] {
            [] => {
                return Err((
                    "encrypt.passphrase-file",
                    "is required (or encrypt.passphrase-credential under systemd, or \
                     encrypt.passphrase-command)"
                        .into(),
                ))
            }
            [_] => {}
            [first, second, ..] => {
                return Err((
                    second,
                    format!("set only one of {first} and {second}: the passphrase has one source"),
                ))
            }
        }
        if let Some(name) = &self.passphrase_credential {
            if name.is_empty() || name.contains('/') {
                return Err((
                    "encrypt.passphrase-credential",
                    format!("`{name}` is not a credential name"),
                ));
            }
        }
        if let Some(argv) = &self.passphrase_command {
            if argv.first().is_none_or(|program| program.is_empty()) {
                return Err((
                    "encrypt.passphrase-command",
                    "must name a program, then its arguments, such as [\"pass\", \"show\", \
                     \"backupfs\"]; for a shell, [\"sh\", \"-c\", \"...\"]"
                        .into(),
                ));
            }
        }
        if self.passphrase_command_timeout.is_zero() {
            return Err((
                "encrypt.passphrase-command-timeout",
                "must be longer than 0s".into(),
            ));
        }
        Ok(())
    }
}
