//! Reading the passphrase: from a file (refused when others could read it too), from a
//! systemd credential, or from the standard output of a command.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The config key of the command, named by every error about it.
const COMMAND_KEY: &str = "encrypt.passphrase-command";
/// More standard output than this is a mistake (the wrong file, a whole vault), not a
/// passphrase; the command is refused rather than its output kept in memory.
const STDOUT_LIMIT: usize = 64 * 1024;
/// How much of a failed command's standard error its error message shows.
const STDERR_SHOWN: usize = 4 * 1024;
/// After a timeout kills the command, how long its standard error may take to close.
const STDERR_GRACE: Duration = Duration::from_millis(500);

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
    #[error("{COMMAND_KEY} is empty: give the program and its arguments")]
    NoCommand,
    #[error(
        "{COMMAND_KEY}: `{program}` was not found; give its full path or install it in a \
         directory on the PATH backupfs runs with"
    )]
    CommandNotFound { program: String },
    #[error("{COMMAND_KEY}: cannot run `{program}`: {source}")]
    CommandStart {
        program: String,
        source: std::io::Error,
    },
    #[error("{COMMAND_KEY}: `{program}` {status}{stderr}")]
    CommandFailed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error(
        "{COMMAND_KEY}: `{program}` did not finish within {timeout}, so it was killed{stderr}"
    )]
    CommandTimeout {
        program: String,
        timeout: humantime::FormattedDuration,
        stderr: String,
    },
    #[error(
        "{COMMAND_KEY}: `{program}` exited, but its standard output was still open after \
         {timeout}: a process it started in the background keeps it open"
    )]
    CommandOutputHeld {
        program: String,
        timeout: humantime::FormattedDuration,
    },
    #[error("{COMMAND_KEY}: `{program}` printed nothing before its first newline")]
    CommandEmpty { program: String },
    #[error(
        "{COMMAND_KEY}: `{program}` printed more than {STDOUT_LIMIT} bytes; only its first \
         line is the passphrase, so this is not the command meant"
    )]
    CommandTooMuch { program: String },
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
    let line = first_line(&bytes);
    if line.is_empty() {
        return Err(SecretError::Empty { path: shown, key });
    }
    Ok(line.to_vec())
}

/// Like gpg, everything up to the first newline: a carriage return before it is part of the
/// passphrase, or backupfs and `gpg --passphrase-file` would derive different keys.
fn first_line(bytes: &[u8]) -> &[u8] {
    bytes.split(|b| *b == b'\n').next().unwrap_or_default()
}

/// The passphrase from the first line a command prints, as `encrypt.passphrase-command`
/// says: `argv[0]` is run directly, without a shell, and must finish within `timeout`.
///
/// Its standard output is never shown, not even when the command fails; its standard error
/// (the first few KiB) is, since that is where tools explain themselves. On timeout only the
/// command itself is killed: a process it started that keeps running is left alone, but one
/// that holds its standard output open past the timeout fails the read.
pub fn run_command(argv: &[String], timeout: Duration) -> Result<Vec<u8>, SecretError> {
    let program = argv
        .first()
        .filter(|p| !p.is_empty())
        .ok_or(SecretError::NoCommand)?;
    let mut child = command(argv).spawn().map_err(|e| spawn_error(program, e))?;
    let run = Running::start(&mut child, program, timeout).inspect_err(|_| stop(&mut child))?;

    match wait_until(&mut child, run.deadline) {
        Ok(Some(status)) => run.finish(status),
        Ok(None) => {
            stop(&mut child);
            Err(run.timed_out())
        }
        Err(e) => {
            stop(&mut child);
            Err(run.error(e))
        }
    }
}

/// The command as backupfs runs it: standard input from /dev/null, so a tool that would
/// prompt there gets end-of-file at once instead of waiting for the timeout; both outputs
/// piped; and the daemon's environment (agents such as gpg-agent are found through it)
/// except `NOTIFY_SOCKET`, since only backupfs may tell systemd that the mount is ready.
fn command(argv: &[String]) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn spawn_error(program: &str, source: io::Error) -> SecretError {
    let program = program.to_string();
    match source.kind() {
        io::ErrorKind::NotFound => SecretError::CommandNotFound { program },
        _ => SecretError::CommandStart { program, source },
    }
}

/// Kills the command (it alone, through its own handle, which cannot name a reused PID) and
/// reaps it.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Polls rather than blocks, so the deadline holds without a second thread owning the child.
fn wait_until(child: &mut Child, deadline: Instant) -> io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A started command whose outputs are being read.
struct Running<'a> {
    program: &'a str,
    timeout: Duration,
    deadline: Instant,
    stdout: mpsc::Receiver<io::Result<Captured>>,
    stderr: mpsc::Receiver<io::Result<Captured>>,
}

impl<'a> Running<'a> {
    fn start(child: &mut Child, program: &'a str, timeout: Duration) -> Result<Self, SecretError> {
        let deadline = Instant::now() + timeout;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let start = |source| SecretError::CommandStart {
            program: program.to_string(),
            source,
        };
        Ok(Running {
            program,
            timeout,
            deadline,
            stdout: drain(stdout, STDOUT_LIMIT).map_err(start)?,
            stderr: drain(stderr, STDERR_SHOWN).map_err(start)?,
        })
    }

    /// The passphrase once the command has exited: its output up to the first newline, if
    /// it succeeded.
    fn finish(self, status: ExitStatus) -> Result<Vec<u8>, SecretError> {
        let program = self.program.to_string();
        if !status.success() {
            let stderr = self.stderr_note(self.left());
            let status = describe(status);
            return Err(SecretError::CommandFailed {
                program,
                status,
                stderr,
            });
        }
        let out = match self.stdout.recv_timeout(self.left()) {
            Ok(read) => read.map_err(|e| self.error(e))?,
            Err(_) => {
                let timeout = humantime::format_duration(self.timeout);
                return Err(SecretError::CommandOutputHeld { program, timeout });
            }
        };
        if out.total > STDOUT_LIMIT as u64 {
            return Err(SecretError::CommandTooMuch { program });
        }
        let line = first_line(&out.kept);
        if line.is_empty() {
            return Err(SecretError::CommandEmpty { program });
        }
        Ok(line.to_vec())
    }

    /// The error for a command killed at the deadline, with what it said on standard error.
    fn timed_out(&self) -> SecretError {
        SecretError::CommandTimeout {
            program: self.program.to_string(),
            timeout: humantime::format_duration(self.timeout),
            stderr: self.stderr_note(STDERR_GRACE),
        }
    }

    fn error(&self, source: io::Error) -> SecretError {
        SecretError::CommandStart {
            program: self.program.to_string(),
            source,
        }
    }

    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// `; its standard error: "..."`, escaped so that it stays on one line of a log, or nothing
    /// when the command said nothing there (or its standard error stays open too long).
    fn stderr_note(&self, wait: Duration) -> String {
        let Ok(Ok(err)) = self.stderr.recv_timeout(wait) else {
            return String::new();
        };
        let text = String::from_utf8_lossy(&err.kept);
        let text = text.trim();
        if text.is_empty() {
            return String::new();
        }
        let cut = if err.total > err.kept.len() as u64 {
            " (cut short)"
        } else {
            ""
        };
        format!("; its standard error: {text:?}{cut}")
    }
}

/// What a pipe carried: its first bytes, and how many there were in all.
struct Captured {
    kept: Vec<u8>,
    total: u64,
}

/// Reads a pipe to its end on a thread of its own, keeping only the first `keep` bytes, so a
/// chatty command neither blocks on a full pipe nor fills memory.
fn drain(
    mut pipe: impl Read + Send + 'static,
    keep: usize,
) -> io::Result<mpsc::Receiver<io::Result<Captured>>> {
    let (tx, rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("passphrase-cmd".into())
        .spawn(move || {
            let mut kept = Vec::new();
            let read = (&mut pipe)
                .take(keep as u64)
                .read_to_end(&mut kept)
                .and_then(|_| io::copy(&mut pipe, &mut io::sink()));
            let _ = tx.send(read.map(|rest| Captured {
                total: kept.len() as u64 + rest,
                kept,
            }));
        })?;
    Ok(rx)
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => format!("ended with {status}"),
    }
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

    /// `argv` as owned strings.
    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    fn run(words: &[&str]) -> Result<Vec<u8>, SecretError> {
        run_command(&argv(words), Duration::from_secs(10))
    }

    #[test]
    fn command_gives_its_first_line_as_gpg_would_read_it() {
        let cases: &[(&[&str], &[u8])] = &[
            (&["sh", "-c", "printf 's3cret\\nsecond line\\n'"], b"s3cret"),
            (&["sh", "-c", "printf 'no newline'"], b"no newline"),
            (&["sh", "-c", "printf 'windows\\r\\n'"], b"windows\r"),
            // No shell in between: the arguments arrive as written.
            (&["printf", "%s\\n", "a b; $HOME `id`"], b"a b; $HOME `id`"),
            // Standard input is /dev/null: a tool that reads it gets end-of-file at once.
            (&["sh", "-c", "read -r line || echo eof"], b"eof"),
        ];
        for (words, want) in cases {
            assert_eq!(run(words).unwrap(), *want, "{words:?}");
        }
    }

    #[test]
    fn command_printing_no_passphrase_is_refused() {
        for words in [&["true"][..], &["printf", "\\nsecond line\\n"]] {
            let e = run(words).unwrap_err().to_string();
            assert!(
                e.contains(COMMAND_KEY) && e.contains("printed nothing"),
                "{e}"
            );
        }
        let e = run(&["head", "-c", "100000", "/dev/zero"]).unwrap_err();
        assert!(matches!(e, SecretError::CommandTooMuch { .. }), "{e}");
    }

    #[test]
    fn failed_command_shows_its_stderr_never_its_stdout() {
        let script = "echo leaked-passphrase; echo 'vault is sealed' >&2; exit 3";
        let e = run(&["sh", "-c", script]).unwrap_err().to_string();
        assert!(
            e.contains(COMMAND_KEY) && e.contains("`sh`") && e.contains("exited with status 3"),
            "{e}"
        );
        assert!(e.contains("vault is sealed"), "{e}");
        assert!(!e.contains("leaked-passphrase"), "{e}");

        let e = run(&["sh", "-c", "kill -TERM $$"]).unwrap_err().to_string();
        assert!(e.contains("killed by signal 15"), "{e}");

        // A flood on stderr is cut to a few KiB and stays on one line.
        let flood = "head -c 100000 /dev/zero | tr '\\0' x >&2; echo >&2; exit 1";
        let e = run(&["sh", "-c", flood]).unwrap_err().to_string();
        assert!(
            e.len() < STDERR_SHOWN + 200 && e.contains("cut short"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn missing_program_is_named() {
        for program in ["backupfs-no-such-program", "/nonexistent/get-passphrase"] {
            let e = run(&[program]).unwrap_err().to_string();
            assert!(
                e.contains(COMMAND_KEY) && e.contains(program) && e.contains("not found"),
                "{e}"
            );
        }
        let e = run(&["/dev/null"]).unwrap_err().to_string();
        assert!(e.contains("cannot run `/dev/null`"), "{e}");
        assert!(matches!(run(&[]), Err(SecretError::NoCommand)));
    }

    #[test]
    fn slow_command_is_killed_at_the_timeout() {
        let d = tempfile::tempdir().unwrap();
        let pid_file = d.path().join("pid");
        let script = format!(
            "echo $$ > '{}'; echo waiting for a touch >&2; exec sleep 60",
            pid_file.display()
        );
        let started = Instant::now();
        let e = run_command(&argv(&["sh", "-c", &script]), Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() < Duration::from_secs(5), "{e}");
        assert!(e.contains(COMMAND_KEY) && e.contains("300ms"), "{e}");
        assert!(e.contains("waiting for a touch"), "{e}");
        // Killed and reaped: its PID names no process any more.
        let pid = fs::read_to_string(&pid_file).unwrap();
        assert!(!Path::new(&format!("/proc/{}", pid.trim())).exists(), "{e}");
    }

    #[test]
    fn background_process_holding_stdout_is_not_waited_for() {
        let d = tempfile::tempdir().unwrap();
        let pid_file = d.path().join("pid");
        let script = format!("echo s3cret; sleep 60 & echo $! > '{}'", pid_file.display());
        let e = run_command(&argv(&["sh", "-c", &script]), Duration::from_millis(300))
            .unwrap_err()
            .to_string();
        let pid = fs::read_to_string(&pid_file).unwrap();
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
        assert!(e.contains("standard output was still open"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn command_gets_the_environment_but_not_the_notify_socket() {
        let cmd = command(&argv(&["env"]));
        let envs: Vec<_> = cmd.get_envs().collect();
        assert_eq!(
            envs,
            [(std::ffi::OsStr::new("NOTIFY_SOCKET"), None)],
            "all else is inherited"
        );
    }
}
