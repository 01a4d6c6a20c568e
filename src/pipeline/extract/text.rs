//! Plain text in UTF-8, UTF-16 or Latin-1, decoded to UTF-8; anything else passes as it is.

use std::io::{self, Cursor, Read};

use super::{read_full, Sink, Stopped, Tolerant};

/// How a text's bytes are read, told from its first few KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Utf16Le,
    Utf16Be,
    Latin1,
    /// Not text: classified as raw bytes.
    Binary,
}

/// Bytes looked at to tell the encoding.
const SNIFF: usize = 4096;

/// Tells the encoding from the first bytes, and returns a reader of the text as UTF-8 (a
/// byte-order mark dropped).
pub fn decoder<'a, R: Read + 'a>(mut reader: R) -> io::Result<(Box<dyn Read + 'a>, Encoding)> {
    let mut head = vec![0u8; SNIFF];
    let n = read_full(&mut reader, &mut head)?;
    head.truncate(n);
    let (encoding, bom) = sniff(&head);
    let rest = Cursor::new(head.split_off(bom.min(head.len()))).chain(reader);
    let decoded: Box<dyn Read + 'a> = match encoding {
        Encoding::Utf8 | Encoding::Binary => Box::new(rest),
        Encoding::Utf16Le => Box::new(Utf16::new(rest, false)),
        Encoding::Utf16Be => Box::new(Utf16::new(rest, true)),
        Encoding::Latin1 => Box::new(Latin1::new(rest)),
    };
    Ok((decoded, encoding))
}

/// The encoding of a text starting with `head`, and the length of its byte-order mark.
pub fn sniff(head: &[u8]) -> (Encoding, usize) {
    if head.starts_with(b"\xef\xbb\xbf") {
        return (Encoding::Utf8, 3);
    }
    // UTF-32's marks start like UTF-16's; UTF-32 is not read.
    if head.starts_with(b"\xff\xfe\0\0") || head.starts_with(b"\0\0\xfe\xff") {
        return (Encoding::Binary, 0);
    }
    if let Some(mark) = [&b"\xff\xfe"[..], b"\xfe\xff"]
        .into_iter()
        .find(|m| head.starts_with(m))
    {
        // A mark before plain ASCII (no zero bytes, nothing above 0x7f) is a stray one:
        // real UTF-16 text of that length is never all ASCII bytes.
        let rest = &head[2..];
        if rest.len() >= 16 && rest.iter().all(|b| (1..0x80).contains(b)) {
            return (Encoding::Utf8, 2);
        }
        let encoding = if mark == b"\xff\xfe" {
            Encoding::Utf16Le
        } else {
            Encoding::Utf16Be
        };
        return (encoding, 2);
    }
    // UTF-16 without a mark: mostly-ASCII text has a zero in every other byte.
    let pairs = head.len() / 2;
    if pairs >= 2 {
        let zeros = |offset: usize| {
            head.iter()
                .skip(offset)
                .step_by(2)
                .filter(|b| **b == 0)
                .count()
        };
        let (even, odd) = (zeros(0), zeros(1));
        if odd * 10 >= pairs * 7 && even * 20 <= pairs {
            return (Encoding::Utf16Le, 0);
        }
        if even * 10 >= pairs * 7 && odd * 20 <= pairs {
            return (Encoding::Utf16Be, 0);
        }
    }
    if head.contains(&0) {
        return (Encoding::Binary, 0);
    }
    match std::str::from_utf8(head) {
        Ok(_) => return (Encoding::Utf8, 0),
        // Cut in the middle of a character by the sniff length is still UTF-8.
        Err(e) if e.error_len().is_none() => return (Encoding::Utf8, 0),
        Err(_) => {}
    }
    let controls = head
        .iter()
        .filter(|b| matches!(b, 0x01..=0x08 | 0x0e..=0x1a | 0x1c..=0x1f | 0x7f))
        .count();
    if controls * 100 > head.len() {
        (Encoding::Binary, 0)
    } else {
        (Encoding::Latin1, 0)
    }
}

/// Latin-1 to UTF-8: each byte is the code point of the same value. A byte can become two,
/// so what a small read cannot take is kept for the next one.
struct Latin1<R> {
    inner: R,
    raw: Vec<u8>,
    /// Decoded UTF-8 not yet handed out.
    out: Vec<u8>,
    out_pos: usize,
}

impl<R: Read> Latin1<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            raw: vec![0; 8192],
            out: Vec::with_capacity(2 * 8192),
            out_pos: 0,
        }
    }
}

impl<R: Read> Read for Latin1<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.out_pos == self.out.len() {
            let n = self.inner.read(&mut self.raw)?;
            if n == 0 {
                return Ok(0);
            }
            self.out.resize(2 * n, 0);
            let len = latin1_into(&self.raw[..n], &mut self.out);
            self.out.truncate(len);
            self.out_pos = 0;
        }
        let n = buf.len().min(self.out.len() - self.out_pos);
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

/// Writes the UTF-8 form of Latin-1 `raw` into `out` (at least twice as long), returning
/// the bytes written.
pub fn latin1_into(raw: &[u8], out: &mut [u8]) -> usize {
    let mut at = 0;
    for &b in raw {
        if b < 0x80 {
            out[at] = b;
            at += 1;
        } else {
            out[at] = 0xc0 | (b >> 6);
            out[at + 1] = 0x80 | (b & 0x3f);
            at += 2;
        }
    }
    at
}

/// UTF-16 to UTF-8, carrying a byte or a surrogate split by a read to the next one.
struct Utf16<R> {
    inner: R,
    big_endian: bool,
    raw: Vec<u8>,
    /// Decoded UTF-8 not yet handed out.
    out: Vec<u8>,
    out_pos: usize,
    done: bool,
}

impl<R: Read> Utf16<R> {
    fn new(inner: R, big_endian: bool) -> Self {
        Self {
            inner,
            big_endian,
            raw: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            done: false,
        }
    }

    fn refill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 8192];
        let n = loop {
            match self.inner.read(&mut chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            self.done = true;
        }
        self.raw.extend_from_slice(&chunk[..n]);
        let mut units: Vec<u16> = self
            .raw
            .chunks_exact(2)
            .map(|p| {
                let pair = [p[0], p[1]];
                if self.big_endian {
                    u16::from_be_bytes(pair)
                } else {
                    u16::from_le_bytes(pair)
                }
            })
            .collect();
        let used = units.len() * 2;
        self.raw.drain(..used);
        // Keep a leading surrogate whose partner has not been read yet.
        let mut held = None;
        if !self.done {
            if let Some(&last) = units.last() {
                if (0xd800..0xdc00).contains(&last) {
                    held = units.pop();
                }
            }
        }
        self.out.clear();
        self.out_pos = 0;
        for c in char::decode_utf16(units) {
            let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
            let mut tmp = [0u8; 4];
            self.out
                .extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
        }
        if let Some(unit) = held {
            let bytes = if self.big_endian {
                unit.to_be_bytes()
            } else {
                unit.to_le_bytes()
            };
            self.raw.splice(0..0, bytes);
        }
        Ok(())
    }
}

impl<R: Read> Read for Utf16<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.out_pos == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = buf.len().min(self.out.len() - self.out_pos);
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

/// Compressed or archive formats told by their first bytes, other than gzip and zip.
pub fn compressed(head: &[u8]) -> Option<&'static str> {
    const KINDS: &[(&[u8], &str)] = &[
        (b"BZh", "bzip2"),
        (b"\xfd7zXZ\0", "xz"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"7z\xbc\xaf\x27\x1c", "7z"),
        (b"Rar!\x1a\x07", "rar"),
        (b"\x5d\0\0", "lzma"),
    ];
    KINDS
        .iter()
        .find(|(magic, _)| head.starts_with(magic))
        .map(|(_, kind)| *kind)
}

/// How many gzip layers are opened one inside another.
const MAX_DEPTH: usize = 3;

/// A stream inside a container (an archive member, the data inside gzip): gzip and PDF are
/// read through, text decoded, and an archive or compressed data that is not opened here
/// is noted as not examined.
pub fn nested<R: Read>(member: &mut R, name: &str, sink: &mut Sink) -> Result<(), Stopped> {
    nested_at(member, name, sink, 1)
}

fn nested_at(
    member: &mut dyn Read,
    name: &str,
    sink: &mut Sink,
    depth: usize,
) -> Result<(), Stopped> {
    let mut head = [0u8; 8];
    let n = read_full(&mut &mut *member, &mut head).unwrap_or(0);
    let mut whole = Cursor::new(head[..n].to_vec()).chain(member);
    let head = &head[..n];
    if head.starts_with(b"PK\x03\x04") {
        sink.partial(format!(
            "archive {name:?} inside the archive was not examined"
        ));
        return Ok(());
    }
    if let Some(kind) = compressed(head) {
        sink.partial(format!("{kind} data in {name:?} was not examined"));
        return Ok(());
    }
    if head.starts_with(b"%PDF-") {
        return super::pdf::extract(&mut io::BufReader::new(whole), sink);
    }
    if head.starts_with(b"\x1f\x8b") {
        if depth >= MAX_DEPTH {
            sink.partial(format!("gzip inside gzip in {name:?} was not examined"));
            return Ok(());
        }
        let mut inflated = Tolerant::new(flate2::read::MultiGzDecoder::new(&mut whole));
        nested_at(&mut inflated, name, sink, depth + 1)?;
        if let Some(e) = inflated.error {
            sink.partial(format!("{name:?} is corrupt gzip: {e}"));
        }
        return Ok(());
    }
    pump(whole, sink)
}

/// Decodes `reader` as text and writes it all to `sink`.
fn pump<R: Read>(reader: R, sink: &mut Sink) -> Result<(), Stopped> {
    let Ok((mut decoded, _)) = decoder(reader) else {
        return Ok(());
    };
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match decoded.read(&mut buf) {
            Ok(0) | Err(_) => return Ok(()),
            Ok(n) => sink.write(&buf[..n])?,
        }
    }
}
