//! Logging setup: structured lines to `log.file` (text or JSON) and text to stderr, verbosity
//! from the `BACKUPFS_LOG` variable (env-filter syntax, default `info`).
//!
//! Every formatted event passes through one [`Guard`] before it is written, whatever its call
//! site put in its fields: control characters are escaped, so a file name holding a newline
//! cannot start a line of its own, and the passphrase given to [`redact`] is replaced by
//! `[redacted]` in any form a line could show it in.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer, Registry};

use crate::config::LogFormat;

/// Quiet by default for the chatty dependencies; `BACKUPFS_LOG` overrides everything.
/// fuser's mount module warns when the mount it drops was unmounted already, which is what
/// every `umount` from outside looks like; backupfs reports real unmount failures itself.
const DEFAULT_FILTER: &str = "info,aws_config=warn,aws_smithy_runtime=warn,aws_sdk_s3=warn,\
     hyper=warn,fuser=warn,fuser::mnt=error";

/// What a secret is replaced with.
const REDACTED: &str = "[redacted]";

/// The secrets every log line is cleaned of, for the life of the process.
static SECRETS: Secrets = Secrets::new();

fn filter() -> EnvFilter {
    EnvFilter::try_from_env("BACKUPFS_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// Keeps `secret` (the passphrase) out of every log line from now on, on stderr and in
/// `log.file`, in both formats. Call it as soon as the secret is read, before anything could
/// log it: a file whose name contains the passphrase is logged by its path.
pub fn redact(secret: &[u8]) -> bool {
    if secret.len() < MIN_REDACTED {
        return false;
    }
    SECRETS.add(secret);
    true
}

/// Secrets shorter than this are not hidden: replacing every occurrence of a short word
/// would garble ordinary log text and show the word to anyone who compares.
pub const MIN_REDACTED: usize = 8;

/// `line` with every secret given to [`redact`] hidden, for records written outside tracing
/// (the audit log, JSON lines).
pub fn hide_secrets(line: String) -> String {
    SECRETS.hide(line)
}

/// Logs to stderr only; for commands that run before a config names a log file.
pub fn init_stderr() {
    let _ = tracing_subscriber::registry()
        .with(stderr_layer())
        .try_init();
}

/// Logs to `file` (created with its directory) in `format`, and to stderr as text.
///
/// The file is opened for appending, so every write lands at its current end: after
/// logrotate's `copytruncate` empties it, the next line starts at offset 0 instead of leaving a
/// hole of zeros the size of the old log.
pub fn init_with_file(file: &Path, format: LogFormat) -> io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let out = Arc::new(
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(file)?,
    );
    let _ = tracing_subscriber::registry()
        .with(file_layer(out, format))
        .with(stderr_layer())
        .try_init();
    install_panic_hook();
    Ok(())
}

fn file_layer(
    out: Arc<std::fs::File>,
    format: LogFormat,
) -> Box<dyn Layer<Registry> + Send + Sync> {
    match format {
        LogFormat::Text => fmt::layer()
            .with_ansi(false)
            .with_thread_names(true)
            .with_writer(Guard::new(out, LogFormat::Text, &SECRETS))
            .with_filter(filter())
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .with_thread_names(true)
            .with_writer(Guard::new(out, LogFormat::Json, &SECRETS))
            .with_filter(filter())
            .boxed(),
    }
}

/// Plain text without colours: the escaping below would print colour codes as `\u{1b}[..`,
/// and under systemd stderr goes to the journal, which shows them as noise anyway.
fn stderr_layer<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fmt::layer()
        .with_ansi(false)
        .with_writer(Guard::new(io::stderr, LogFormat::Text, &SECRETS))
        .with_filter(filter())
}

/// Sends panics through tracing, so they land in the log file, not only on a lost stderr.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "panic");
        default(info);
    }));
}

/// A writer maker that cleans each event before it reaches the real writer `M`.
///
/// tracing-subscriber's fmt layer formats an event into one buffer and hands it to a writer
/// made for that event alone (`write_all`, then drop). [`EventWriter`] collects what it is given
/// and cleans and writes it when dropped, so the cleaning sees exactly one whole event, even
/// if a later version of the layer wrote it in pieces.
struct Guard<M> {
    inner: M,
    format: LogFormat,
    secrets: &'static Secrets,
}

impl<M> Guard<M> {
    fn new(inner: M, format: LogFormat, secrets: &'static Secrets) -> Self {
        Self {
            inner,
            format,
            secrets,
        }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Guard<M> {
    type Writer = EventWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter {
            out: self.inner.make_writer(),
            event: Vec::new(),
            format: self.format,
            secrets: self.secrets,
        }
    }
}

struct EventWriter<W: Write> {
    out: W,
    event: Vec<u8>,
    format: LogFormat,
    secrets: &'static Secrets,
}

impl<W: Write> Write for EventWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.event.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for EventWriter<W> {
    fn drop(&mut self) {
        if self.event.is_empty() {
            return;
        }
        let line = escape_controls(&String::from_utf8_lossy(&self.event), self.format);
        let line = self.secrets.hide(line);
        // One write for the whole line, so lines from different threads never interleave
        // (the file is O_APPEND). A failed log write has nowhere left to be reported.
        let _ = self.out.write_all(line.as_bytes());
    }
}

/// Whether `c` could end a line or drive a terminal: C0, DEL, C1, and the Unicode line and
/// paragraph separators some viewers break lines at.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Escapes every unsafe character of one formatted event except its final newline: in text
/// the way Rust's `{:?}` does (`\n`, `\u{1b}`), matching how `path = ?path` fields show them;
/// in JSON as `\u00XX`, since serde leaves DEL and C1 raw and they can only occur in strings.
fn escape_controls(event: &str, format: LogFormat) -> String {
    let (body, end) = match event.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (event, ""),
    };
    let mut out = String::with_capacity(event.len());
    for c in body.chars() {
        match (is_unsafe(c), format) {
            (false, _) => out.push(c),
            (true, LogFormat::Text) => out.extend(c.escape_debug()),
            (true, LogFormat::Json) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
        }
    }
    out.push_str(end);
    out
}

/// Secrets to hide, as one matcher over every form they can take in a line.
struct Secrets {
    state: RwLock<Option<Redactor>>,
}

struct Redactor {
    forms: Vec<String>,
    matcher: AhoCorasick,
}

impl Secrets {
    const fn new() -> Self {
        Self {
            state: RwLock::new(None),
        }
    }

    fn add(&self, secret: &[u8]) {
        if secret.is_empty() {
            return;
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let mut forms = state.take().map(|r| r.forms).unwrap_or_default();
        forms.extend(forms_in_a_line(secret));
        forms.sort();
        forms.dedup();
        // Leftmost-longest, so a longer escaped form wins over a shorter one inside it.
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&forms)
            .expect("a few short literal patterns always build");
        *state = Some(Redactor { forms, matcher });
    }

    fn hide(&self, line: String) -> String {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let Some(redactor) = state.as_ref() else {
            return line;
        };
        if !redactor.matcher.is_match(&line) {
            return line;
        }
        let mut out = String::with_capacity(line.len());
        redactor
            .matcher
            .replace_all_with(&line, &mut out, |_, _, out| {
                out.push_str(REDACTED);
                true
            });
        out
    }
}

/// Every way `secret` can appear in a finished log line. A value reaches a line as Display
/// (lossy UTF-8), as `{:?}` of a string or of a path (invalid bytes as `\xFF`), through
/// tracing's terminal sanitising (messages only), then through [`escape_controls`] in text or
/// JSON string escaping in JSON.
fn forms_in_a_line(secret: &[u8]) -> Vec<String> {
    let display = String::from_utf8_lossy(secret).into_owned();
    let bases = [
        debug_inner(OsStr::from_bytes(secret)),
        debug_inner(display.as_str()),
        display,
    ];
    let mut forms = Vec::new();
    for base in bases {
        forms.push(escape_controls(
            &sanitised_like_tracing(&base),
            LogFormat::Text,
        ));
        forms.push(escape_controls(&base, LogFormat::Text));
        let json = serde_json::to_string(&base).expect("a string always serialises");
        let json = json[1..json.len() - 1].to_string();
        forms.push(escape_controls(&json, LogFormat::Json));
    }
    // The audit log adds a name's bytes in hex when they are not UTF-8.
    forms.push(hex::encode(secret));
    forms.retain(|f| !f.is_empty());
    forms
}

/// `{:?}` of a string or path without its quotes.
fn debug_inner(value: &(impl std::fmt::Debug + ?Sized)) -> String {
    let text = format!("{value:?}");
    let inner = text.strip_prefix('"').and_then(|t| t.strip_suffix('"'));
    inner.unwrap_or(&text).to_string()
}

/// What tracing-subscriber's text formatter makes of a message to keep it from driving a
/// terminal: a few C0 characters and DEL as `\xNN`, C1 as `\u{NN}`.
fn sanitised_like_tracing(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            '\u{80}'..='\u{9f}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
