//! Stage 4: scan through clamd. Only a clean `OK` lets a file continue.
//!
//! A file larger than what clamd accepts, a reply of `ERROR`, or a stream clamd cuts off is
//! "not scanned", never clean. clamd being unreachable is an error of its own, so the caller
//! can wait and retry instead of deciding anything about the file.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use clamav_client::Tcp;

use crate::config::ClamdAddress;
use crate::sys;

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
        // "Connection refused" alone reads as a clamd that is down; say so when the path
        // is something other than a socket (a file, a directory), which no restart fixes.
        let not_a_socket = match &self.address {
            ClamdAddress::Unix(p) => std::fs::metadata(p)
                .ok()
                .filter(|m| !m.file_type().is_socket())
                .map(|_| format!("{} is not a socket; ", p.display())),
            ClamdAddress::Tcp(_) => None,
        };
        Unavailable {
            address: self.address.to_string(),
            message: format!("{}{message}", not_a_socket.unwrap_or_default()),
        }
    }

    /// Scans `file` (the file the worker holds open). On a unix socket clamd is handed the
    /// descriptor itself (`FILDES`) and reads the file in place; over TCP the bytes are
    /// streamed (`INSTREAM`).
    pub fn scan(&self, file: &File, size: u64) -> Result<Verdict, Unavailable> {
        if size > self.max_stream_size {
            return Ok(Verdict::NotScanned(format!(
                "size {size} bytes exceeds scan.max-stream-size ({} bytes)",
                self.max_stream_size
            )));
        }
        let reply = match &self.address {
            // Handing over a descriptor has no size to exceed: a failure is clamd's (gone,
            // restarting, out of threads), and the file waits for another try.
            ClamdAddress::Unix(p) => {
                hand_over(p, file).map_err(|e| self.unavailable(e.to_string()))?
            }
            ClamdAddress::Tcp(a) => match clamav_client::scan_file(
                sys::proc_fd_path(file.as_fd()),
                Tcp {
                    host_address: a.as_str(),
                },
                Some(CHUNK),
            ) {
                Ok(reply) => reply,
                Err(e) => {
                    // Either clamd is not there (or went away mid-stream), or it cut the
                    // stream off because the file is over its StreamMaxLength. A PING
                    // tells them apart.
                    self.ping()?;
                    return Ok(Verdict::NotScanned(format!(
                        "clamd closed the stream ({e}); the file may exceed its StreamMaxLength"
                    )));
                }
            },
        };
        // clamd always answers a request it took; silence means it died mid-scan.
        if reply.iter().all(|b| *b == 0 || b.is_ascii_whitespace()) {
            return Err(self.unavailable("clamd closed the connection without a verdict".into()));
        }
        Ok(parse_reply(&reply))
    }
}

/// Sends `zFILDES` with the descriptor attached and reads clamd's reply up to its NUL.
fn hand_over(socket: &Path, file: &File) -> io::Result<Vec<u8>> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_write_timeout(Some(PING_TIMEOUT))?;
    stream.write_all(b"zFILDES\0")?;
    sys::send_with_fd(stream.as_fd(), &[0], file.as_fd())?;
    read_reply(&mut stream)
}

/// Reads a clamd reply up to its terminating NUL (or the end of the stream).
fn read_reply(stream: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut reply = Vec::new();
    let mut buf = [0u8; 256];
    while !reply.contains(&0) && reply.len() < 4096 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    Ok(reply)
}

/// How long clamd may take to answer PING (a second in unit tests).
const PING_TIMEOUT: Duration = Duration::from_secs(if cfg!(test) { 1 } else { 10 });

/// Sends `zPING` and reads the reply up to its terminating NUL.
fn exchange_ping(mut stream: impl Read + Write) -> io::Result<Vec<u8>> {
    stream.write_all(b"zPING\0")?;
    read_reply(&mut stream)
}

/// Reads clamd's reply to a scan: `<who>: OK`, `<who>: <signature> FOUND`, or `... ERROR`,
/// where `<who>` is `stream` for INSTREAM and `fd[N]` for FILDES.
///
/// A file over one of clamd's own limits (size, archive depth, file count) comes back clean
/// unless clamd's `AlertExceedsMax` is on, and then as a `Heuristics.Limits.Exceeded.*`
/// "signature": that is a file clamd did not finish scanning, not an infected one.
pub fn parse_reply(reply: &[u8]) -> Verdict {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end_matches(['\0', '\n', '\r', ' ']);
    let body = text
        .split_once(": ")
        .filter(|(who, _)| *who == "stream" || (who.starts_with("fd[") && who.ends_with(']')))
        .map(|(_, body)| body.trim());
    match body {
        Some("OK") => Verdict::Clean,
        Some(b) if b.ends_with(" FOUND") => {
            let signature = b.trim_end_matches(" FOUND").trim();
            if signature.starts_with("Heuristics.Limits.Exceeded") {
                Verdict::NotScanned(format!("clamd stopped at one of its limits ({signature})"))
            } else {
                Verdict::Infected(signature.to_string())
            }
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
        assert!(!e.contains("not a socket"), "{e}");
        // A path that is not a socket at all is named as such, not as a clamd that is down.
        let file = dir.path().join("clamd.ctl");
        std::fs::write(&file, b"").unwrap();
        let e = Scanner::new(ClamdAddress::Unix(file.clone()), 1 << 20)
            .ping()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("{} is not a socket", file.display())),
            "{e}"
        );
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
            (b"fd[12]: OK\0", Verdict::Clean),
            (
                b"fd[7]: BackupFS.Test.EICAR.UNOFFICIAL FOUND\0",
                Verdict::Infected("BackupFS.Test.EICAR.UNOFFICIAL".into()),
            ),
            (
                b"fd[7]: Heuristics.Limits.Exceeded.MaxFileSize FOUND\0",
                Verdict::NotScanned(
                    "clamd stopped at one of its limits (Heuristics.Limits.Exceeded.MaxFileSize)"
                        .into(),
                ),
            ),
            (
                b"fd[7]: Can't open file or directory ERROR\0",
                Verdict::NotScanned(
                    "clamd replied \"fd[7]: Can't open file or directory ERROR\"".into(),
                ),
            ),
            (
                b"/x/y: OK\0",
                Verdict::NotScanned("clamd replied \"/x/y: OK\"".into()),
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
        let null = File::open("/dev/null").unwrap();
        let v = s.scan(&null, 11).unwrap();
        assert!(matches!(v, Verdict::NotScanned(r) if r.contains("max-stream-size")));
    }

    /// What a fake clamd does with a scan request.
    #[derive(Clone, Copy)]
    enum Fake {
        /// Reads the file through the descriptor it was handed and calls it infected when
        /// it holds `EVIL`: proof that the descriptor, not a path, reached it.
        ReadsTheDescriptor,
        /// Takes the request, then closes without a verdict.
        Dies,
        /// Closes as soon as it has read the command, before the descriptor comes.
        HangsUp,
        /// Takes 1 KiB of an INSTREAM stream, then cuts it off as over its limit.
        CutsTheStream,
    }

    /// Serves `zPING` and one kind of scan request on `conn`.
    fn serve(mut conn: impl Read + Write + AsFd, fake: Fake) {
        let mut command = Vec::new();
        let mut byte = [0u8; 1];
        while conn.read_exact(&mut byte).is_ok() && byte[0] != 0 {
            command.push(byte[0]);
        }
        match (&command[..], fake) {
            (b"zPING", _) => {
                let _ = conn.write_all(b"PONG\0");
            }
            (b"zFILDES", Fake::ReadsTheDescriptor) => {
                let (_, fd) = sys::recv_with_fd(conn.as_fd(), &mut byte).unwrap();
                let mut text = String::new();
                File::from(fd.expect("a descriptor"))
                    .read_to_string(&mut text)
                    .unwrap();
                let verdict = if text.contains("EVIL") {
                    "Fake.Evil FOUND"
                } else {
                    "OK"
                };
                let _ = conn.write_all(format!("fd[9]: {verdict}\0").as_bytes());
            }
            (b"zINSTREAM", Fake::CutsTheStream) => {
                let mut taken = vec![0u8; 1024];
                let _ = conn.read_exact(&mut taken);
                let _ = conn.write_all(b"INSTREAM size limit exceeded. ERROR\0");
            }
            (b"zFILDES", Fake::Dies) => {
                let _ = sys::recv_with_fd(conn.as_fd(), &mut byte);
            }
            (b"zFILDES", Fake::HangsUp) => {}
            (other, _) => panic!("unexpected request {:?}", String::from_utf8_lossy(other)),
        }
    }

    /// A fake clamd on a unix socket in `dir`, serving each connection as `fake` says.
    fn fake_unix(dir: &Path, fake: Fake) -> Scanner {
        let sock = dir.join("clamd.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                serve(conn.unwrap(), fake);
            }
        });
        Scanner::new(ClamdAddress::Unix(sock), 1 << 20)
    }

    fn file_with(dir: &Path, name: &str, content: &[u8]) -> File {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        File::open(path).unwrap()
    }

    #[test]
    fn on_a_unix_socket_clamd_is_handed_the_open_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = fake_unix(dir.path(), Fake::ReadsTheDescriptor);
        let clean = file_with(dir.path(), "clean", b"nothing to see");
        assert_eq!(s.scan(&clean, 14).unwrap(), Verdict::Clean);
        let evil = file_with(dir.path(), "evil", b"some EVIL bytes");
        assert_eq!(
            s.scan(&evil, 15).unwrap(),
            Verdict::Infected("Fake.Evil".into())
        );
    }

    /// A clamd that answers PING but dies during the scan (closes without a word), or hangs
    /// up before it has the descriptor: a scan to try again, never a file not scanned.
    #[test]
    fn clamd_failing_mid_scan_is_retried_not_a_verdict() {
        for (fake, says) in [
            (Fake::Dies, "without a verdict"),
            (Fake::HangsUp, "unreachable"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let s = fake_unix(dir.path(), fake);
            let file = file_with(dir.path(), "data", b"some bytes");
            let err = s.scan(&file, 10).unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
        }
    }

    /// Over TCP the file is streamed; a stream clamd cuts off is not scanned, never clean.
    #[test]
    fn a_stream_clamd_cuts_off_over_tcp_is_not_scanned() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                serve(conn.unwrap(), Fake::CutsTheStream);
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let file = file_with(dir.path(), "large", &vec![b'x'; 1 << 20]);
        let s = Scanner::new(ClamdAddress::Tcp(address), 1 << 20);
        let v = s.scan(&file, 1 << 20).unwrap();
        assert!(
            matches!(&v, Verdict::NotScanned(r) if r.contains("limit exceeded") || r.contains("StreamMaxLength")),
            "{v:?}"
        );
    }

    #[test]
    fn unreachable_clamd_is_an_error_not_a_verdict() {
        let s = Scanner::new(ClamdAddress::Unix("/nonexistent/clamd.sock".into()), 10);
        let null = File::open("/dev/null").unwrap();
        let err = s.scan(&null, 0).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/clamd.sock"), "{err}");
    }
}
