use std::path::PathBuf;
use std::sync::Mutex;

use super::*;

#[test]
fn escape_controls_keeps_only_the_final_newline() {
    let cases: &[(&str, LogFormat, &str)] = &[
        ("plain line\n", LogFormat::Text, "plain line\n"),
        ("no newline", LogFormat::Text, "no newline"),
        ("a\nb\n", LogFormat::Text, "a\\nb\n"),
        ("a\r\nb\n\n", LogFormat::Text, "a\\r\\nb\\n\n"),
        ("\x1b[31mred\n", LogFormat::Text, "\\u{1b}[31mred\n"),
        (
            "tab\there\x00\x7f\n",
            LogFormat::Text,
            "tab\\there\\0\\u{7f}\n",
        ),
        (
            "c1 \u{9b}2J nel\u{85}\n",
            LogFormat::Text,
            "c1 \\u{9b}2J nel\\u{85}\n",
        ),
        (
            "ls\u{2028}ps\u{2029}\n",
            LogFormat::Text,
            "ls\\u{2028}ps\\u{2029}\n",
        ),
        (
            "quotes \" and \\ stay\n",
            LogFormat::Text,
            "quotes \" and \\ stay\n",
        ),
        (
            "{\"m\":\"del\u{7f}\"}\n",
            LogFormat::Json,
            "{\"m\":\"del\\u007f\"}\n",
        ),
        (
            "{\"m\":\"c1\u{85}\"}\n",
            LogFormat::Json,
            "{\"m\":\"c1\\u0085\"}\n",
        ),
        (
            "{\"m\":\"\u{2028}\"}\n",
            LogFormat::Json,
            "{\"m\":\"\\u2028\"}\n",
        ),
        ("{\"m\":\"é ok\"}\n", LogFormat::Json, "{\"m\":\"é ok\"}\n"),
    ];
    for (input, format, want) in cases {
        assert_eq!(
            escape_controls(input, *format),
            *want,
            "{input:?} {format:?}"
        );
    }
}

fn secrets(secret: &[u8]) -> &'static Secrets {
    let secrets: &'static Secrets = Box::leak(Box::new(Secrets::new()));
    secrets.add(secret);
    secrets
}

#[test]
fn redaction_covers_raw_debug_and_json_forms() {
    let cases: &[(&[u8], &str)] = &[
        // (secret, a line showing it in some form)
        (b"correct horse", "path=\"a/correct horse.txt\""),
        (b"correct horse", "error=cannot open a/correct horse.txt"),
        (b"correct horse", "{\"path\":\"\\\"correct horse\\\"\"}"),
        (b"say \"hi\"", "error=open say \"hi\": gone"),
        (b"say \"hi\"", "path=\"say \\\"hi\\\"\""),
        (b"say \"hi\"", "{\"error\":\"say \\\"hi\\\"\"}"),
        (
            b"say \"hi\"",
            "{\"path\":\"\\\"say \\\\\\\"hi\\\\\\\"\\\"\"}",
        ),
        (b"back\\slash", "path=\"back\\\\slash\""),
        (b"back\\slash", "{\"path\":\"\\\"back\\\\\\\\slash\\\"\"}"),
        (b"trailing\r", "error=trailing\\r seen"),
        (b"trailing\r", "{\"error\":\"trailing\\r seen\"}"),
        (b"bytes\xff\xfe", "path=\"bytes\\xFF\\xFE\""),
        (b"bytes\xff\xfe", "error=bytes\u{fffd}\u{fffd}"),
        (b"esc\x1b", "message esc\\x1b"),
        (b"esc\x1b", "field=esc\\u{1b}"),
        // The audit log's path_hex of a name that is not UTF-8.
        (
            b"correct horse",
            "\"path_hex\":\"ff20636f727265637420686f7273652e747874\"",
        ),
    ];
    for (secret, line) in cases {
        let hidden = secrets(secret).hide(line.to_string());
        assert!(
            hidden.contains(REDACTED),
            "{:?} not found in {line:?}",
            String::from_utf8_lossy(secret)
        );
    }
}

#[test]
fn redaction_leaves_other_lines_alone() {
    let secrets = secrets(b"correct horse");
    for line in ["correct", "horse correct", "correct  horse", ""] {
        assert_eq!(secrets.hide(line.to_string()), line);
    }
    assert_eq!(
        secrets.hide("a correct horse, two correct horses".into()),
        "a [redacted], two [redacted]s"
    );
    let empty: &'static Secrets = Box::leak(Box::new(Secrets::new()));
    empty.add(b"");
    assert_eq!(empty.hide("anything".into()), "anything");
}

/// A shared in-memory log a fmt layer writes to through a [`Guard`].
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Logs a few events naming `name` the ways call sites do, through a real fmt layer in
/// `format` behind a [`Guard`], and returns what was written.
fn log_events(name: &str, secret: &[u8], format: LogFormat) -> String {
    let sink = Sink::default();
    let writer = {
        let sink = sink.clone();
        Guard::new(move || sink.clone(), format, secrets(secret))
    };
    let layer = fmt::layer().with_ansi(false).with_writer(writer);
    let subscriber: Box<dyn tracing::Subscriber + Send + Sync> = match format {
        LogFormat::Text => Box::new(tracing_subscriber::registry().with(layer)),
        LogFormat::Json => Box::new(tracing_subscriber::registry().with(layer.json())),
    };
    let path = PathBuf::from("dir").join(name);
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(path = ?path, "file done");
        let e = format!("cannot open {}: gone", path.display());
        tracing::error!(error = %e, "stage failed");
        tracing::warn!(reason = e.as_str(), "file not uploaded");
        tracing::warn!("refused {}", path.display());
    });
    let out = sink.0.lock().unwrap().clone();
    String::from_utf8(out).unwrap()
}

#[test]
fn a_name_cannot_forge_a_line_or_show_the_passphrase() {
    let name = "x\n1999-12-31T23:59:59Z  INFO backupfs: file done \x1b[2K\r\u{2028}pw: hunter2";
    for format in [LogFormat::Text, LogFormat::Json] {
        let log = log_events(name, b"hunter2", format);
        assert_eq!(log.lines().count(), 4, "{format:?}:\n{log}");
        for line in log.lines() {
            assert!(!line.starts_with("1999-12-31"), "{format:?}: {line}");
            assert!(!line.contains("hunter2"), "{format:?}: {line}");
            assert!(line.contains(REDACTED), "{format:?}: {line}");
            assert!(!line.chars().any(is_unsafe), "{format:?}: {line:?}");
            if format == LogFormat::Json {
                let record: serde_json::Value = serde_json::from_str(line).unwrap();
                assert!(record.is_object(), "{line}");
            }
        }
    }
}

#[test]
fn short_secrets_are_not_hidden_but_reported() {
    assert!(
        !redact(b"upload"),
        "a 6-byte passphrase would blank every \"upload\""
    );
    assert!(redact(b"long enough secret"));
}
