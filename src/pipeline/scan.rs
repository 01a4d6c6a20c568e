//! Stage 4: scan through clamd. Only a clean `OK` lets a file continue.
//!
//! A file larger than what clamd accepts, a reply of `ERROR`, or a stream clamd cuts off is
//! "not scanned", never clean. clamd being unreachable is an error of its own, so the caller
//! can wait and retry instead of deciding anything about the file.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use clamav_client::{Socket, Tcp};

use crate::config::ClamdAddress;

/// Send the file in 1 MiB chunks; the crate's default of 4 KiB halves throughput.
const CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    Infected(String),
    NotScanned(String),
}

#[derive(Debug, thiserror::Error)]
#[error("clamd at {address} is unreachable: {message}")]
pub struct Unavailable {
    pub address: String,
    pub message: String,
}

pub struct Scanner {
    address: ClamdAddress,
    max_stream_size: u64,
}

impl Scanner {
    pub fn new(address: ClamdAddress, max_stream_size: u64) -> Self {
        Self {
            address,
            max_stream_size,
        }
    }

    /// Checks that clamd answers PING within [`PING_TIMEOUT`]: a clamd that accepts the
    /// connection and then says nothing counts as unreachable, rather than holding the
    /// caller (a worker, or the daemon's start) forever.
    pub fn ping(&self) -> Result<(), Unavailable> {
        let reply = match &self.address {
            ClamdAddress::Unix(p) => UnixStream::connect(p).and_then(|s| {
                s.set_read_timeout(Some(PING_TIMEOUT))?;
                s.set_write_timeout(Some(PING_TIMEOUT))?;
                exchange_ping(s)
            }),
            ClamdAddress::Tcp(a) => a
                .to_socket_addrs()
                .and_then(|mut addrs| {
                    addrs.next().ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, "the name has no address")
                    })
                })
                .and_then(|addr| TcpStream::connect_timeout(&addr, PING_TIMEOUT))
                .and_then(|s| {
                    s.set_read_timeout(Some(PING_TIMEOUT))?;
                    s.set_write_timeout(Some(PING_TIMEOUT))?;
                    exchange_ping(s)
                }),
        };
        match reply {
            Ok(r) if r == clamav_client::PONG => Ok(()),
            Ok(r) => Err(self.unavailable(format!(
                "unexpected reply to PING: {:?}",
                String::from_utf8_lossy(&r)
            ))),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(self.unavailable(format!(
                    "no answer to PING within {}s",
                    PING_TIMEOUT.as_secs()
                )))
            }
            Err(e) => Err(self.unavailable(e.to_string())),
        }
    }

    fn unavailable(&self, message: String) -> Unavailable {
        Unavailable {
            address: self.address.to_string(),
            message,
        }
    }

    /// Streams the file at `path` (for the pipeline, a `/proc/self/fd` link to the file it
    /// holds open) to clamd.
    pub fn scan(&self, path: &Path, size: u64) -> Result<Verdict, Unavailable> {
        if size > self.max_stream_size {
            return Ok(Verdict::NotScanned(format!(
                "size {size} bytes exceeds scan.max-stream-size ({} bytes)",
                self.max_stream_size
            )));
        }
        self.ping()?;
        let reply = match &self.address {
            ClamdAddress::Unix(p) => {
                clamav_client::scan_file(path, Socket { socket_path: p }, Some(CHUNK))
            }
            ClamdAddress::Tcp(a) => clamav_client::scan_file(
                path,
                Tcp {
                    host_address: a.as_str(),
                },
                Some(CHUNK),
            ),
        };
        match reply {
            // clamd always answers a finished stream; silence means it died mid-scan.
            Ok(reply) if reply.iter().all(|b| *b == 0 || b.is_ascii_whitespace()) => {
                Err(self.unavailable("clamd closed the connection without a verdict".into()))
            }
            Ok(reply) => Ok(parse_reply(&reply)),
            Err(e) => {
                // Either clamd went away mid-stream, or it cut the stream off because the
                // file is over one of its limits. A PING tells the two apart.
                self.ping()?;
                Ok(Verdict::NotScanned(format!(
                    "clamd closed the stream ({e}); the file may exceed its StreamMaxLength"
                )))
            }
        }
    }
}

/// How long clamd may take to answer PING (a second in unit tests).
const PING_TIMEOUT: Duration = Duration::from_secs(if cfg!(test) { 1 } else { 10 });

/// Sends `zPING` and reads the reply up to its terminating NUL.
fn exchange_ping(mut stream: impl Read + Write) -> io::Result<Vec<u8>> {
    stream.write_all(b"zPING\0")?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 64];
    while !reply.contains(&0) && reply.len() < 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    Ok(reply)
}

/// Reads clamd's INSTREAM reply: `stream: OK`, `stream: <signature> FOUND`, or `... ERROR`.
pub fn parse_reply(reply: &[u8]) -> Verdict {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end_matches(['\0', '\n', '\r', ' ']);
    let body = text.strip_prefix("stream:").map(str::trim);
    match body {
        Some("OK") => Verdict::Clean,
        Some(b) if b.ends_with(" FOUND") => {
            Verdict::Infected(b.trim_end_matches(" FOUND").trim().to_string())
        }
        _ => Verdict::NotScanned(format!("clamd replied {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clamd_that_accepts_and_never_answers_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("clamd.sock");
        // Listening, so connections are accepted by the kernel, but nothing ever replies.
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let scanner = Scanner::new(ClamdAddress::Unix(sock.clone()), 1 << 20);
        let started = std::time::Instant::now();
        let e = scanner.ping().unwrap_err().to_string();
        assert!(e.contains("no answer to PING within 1s"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let gone = Scanner::new(ClamdAddress::Unix(dir.path().join("none")), 1 << 20);
        let e = gone.ping().unwrap_err().to_string();
        assert!(e.contains("unreachable") && e.contains("none"), "{e}");
    }

    #[test]
    fn replies() {
        let cases = [
            (&b"stream: OK\0"[..], Verdict::Clean),
            (
                b"stream: Eicar-Test-Signature FOUND\0",
                Verdict::Infected("Eicar-Test-Signature".into()),
            ),
            (
                b"INSTREAM size limit exceeded. ERROR\0",
                Verdict::NotScanned("clamd replied \"INSTREAM size limit exceeded. ERROR\"".into()),
            ),
            (b"", Verdict::NotScanned("clamd replied \"\"".into())),
            (
                b"stream: OK but odd FOUND\0",
                Verdict::Infected("OK but odd".into()),
            ),
        ];
        for (reply, want) in cases {
            assert_eq!(
                parse_reply(reply),
                want,
                "{:?}",
                String::from_utf8_lossy(reply)
            );
        }
    }

    #[test]
    fn oversized_files_are_not_scanned_without_contacting_clamd() {
        let s = Scanner::new(ClamdAddress::Unix("/nonexistent/clamd.sock".into()), 10);
        let v = s.scan(Path::new("/dev/null"), 11).unwrap();
        assert!(matches!(v, Verdict::NotScanned(r) if r.contains("max-stream-size")));
    }

    /// A clamd that answers PING but dies (closes without a word) during the scan.
    #[test]
    fn clamd_dying_mid_scan_is_retried_not_a_verdict() {
        use std::io::{Read, Write};
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("clamd.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(3) {
                let mut conn = conn.unwrap();
                let mut head = [0u8; 6];
                if conn.read_exact(&mut head).is_err() {
                    continue;
                }
                if &head == b"zPING\0" {
                    let _ = conn.write_all(b"PONG\0");
                    continue;
                }
                // zINSTREAM\0: take the whole stream, then vanish without a verdict.
                let mut rest = [0u8; 4];
                let _ = conn.read_exact(&mut rest);
                loop {
                    let mut len = [0u8; 4];
                    if conn.read_exact(&mut len).is_err() || u32::from_be_bytes(len) == 0 {
                        break;
                    }
                    let mut chunk = vec![0u8; u32::from_be_bytes(len) as usize];
                    if conn.read_exact(&mut chunk).is_err() {
                        break;
                    }
                }
            }
        });
        let file = dir.path().join("data");
        std::fs::write(&file, b"some bytes").unwrap();
        let s = Scanner::new(ClamdAddress::Unix(sock), 1 << 20);
        let err = s.scan(&file, 10).unwrap_err();
        assert!(err.to_string().contains("without a verdict"), "{err}");
    }

    #[test]
    fn unreachable_clamd_is_an_error_not_a_verdict() {
        let s = Scanner::new(ClamdAddress::Unix("/nonexistent/clamd.sock".into()), 10);
        let err = s.scan(Path::new("/dev/null"), 0).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/clamd.sock"), "{err}");
    }
}
