//! The text of a PDF, read front to back without the cross-reference table: strings shown by
//! page content streams (inflated when Flate-compressed) and strings in the document's
//! dictionaries (title, author). Images and fonts are skipped. Text that cannot be read this
//! way (an encrypted file, CID-keyed fonts, filters other than Flate) marks the file partial.

use std::io::{self, BufRead, Read};

use super::text::latin1_into;
use super::{Sink, Stopped};

/// A PDF token that matters for text.
enum Token<'a> {
    String(&'a [u8]),
    /// A name (`/Encrypt`), operator (`Tj`) or number.
    Word(&'a [u8]),
    ArrayStart,
    ArrayEnd,
}

#[derive(Clone, Copy)]
enum Lex {
    Normal,
    Comment,
    /// After one `<`: a hex string or a dictionary.
    Lt,
    Hex,
    Literal,
    Escape,
    Octal {
        value: u8,
        digits: u8,
    },
}

/// Splits PDF syntax into tokens, one byte at a time, so input can arrive in any pieces.
struct Lexer {
    state: Lex,
    word: Vec<u8>,
    string: Vec<u8>,
    depth: u32,
    nibble: Option<u8>,
}

/// Longest word kept, and the size at which a long string is handed over in pieces.
const MAX_WORD: usize = 128;
const MAX_STRING: usize = 1 << 16;

impl Lexer {
    fn new() -> Self {
        Self {
            state: Lex::Normal,
            word: Vec::with_capacity(MAX_WORD),
            string: Vec::new(),
            depth: 0,
            nibble: None,
        }
    }

    fn end_word(&mut self, emit: &mut impl FnMut(Token)) {
        if !self.word.is_empty() {
            emit(Token::Word(&self.word));
            self.word.clear();
        }
    }

    fn push_string(&mut self, b: u8, emit: &mut impl FnMut(Token)) {
        self.string.push(b);
        if self.string.len() >= MAX_STRING {
            emit(Token::String(&self.string));
            self.string.clear();
        }
    }

    fn push(&mut self, b: u8, emit: &mut impl FnMut(Token)) {
        match self.state {
            Lex::Normal => match b {
                b' ' | b'\t' | b'\r' | b'\n' | b'\x0c' | 0 => self.end_word(emit),
                b'%' => {
                    self.end_word(emit);
                    self.state = Lex::Comment;
                }
                b'(' => {
                    self.end_word(emit);
                    self.depth = 1;
                    self.state = Lex::Literal;
                }
                b'<' => {
                    self.end_word(emit);
                    self.state = Lex::Lt;
                }
                b'>' | b'{' | b'}' => self.end_word(emit),
                b'[' => {
                    self.end_word(emit);
                    emit(Token::ArrayStart);
                }
                b']' => {
                    self.end_word(emit);
                    emit(Token::ArrayEnd);
                }
                b'/' => {
                    self.end_word(emit);
                    self.word.push(b);
                }
                _ => {
                    if self.word.len() < MAX_WORD {
                        self.word.push(b);
                    }
                }
            },
            Lex::Comment => {
                if b == b'\r' || b == b'\n' {
                    self.state = Lex::Normal;
                }
            }
            Lex::Lt => {
                if b == b'<' {
                    self.state = Lex::Normal;
                } else {
                    self.state = Lex::Hex;
                    self.nibble = None;
                    self.push(b, emit);
                }
            }
            Lex::Hex => {
                if b == b'>' {
                    if let Some(high) = self.nibble.take() {
                        self.string.push(high << 4);
                    }
                    emit(Token::String(&self.string));
                    self.string.clear();
                    self.state = Lex::Normal;
                } else if let Some(v) = (b as char).to_digit(16) {
                    match self.nibble.take() {
                        Some(high) => self.push_string((high << 4) | v as u8, emit),
                        None => self.nibble = Some(v as u8),
                    }
                }
            }
            Lex::Literal => match b {
                b'\\' => self.state = Lex::Escape,
                b'(' => {
                    self.depth += 1;
                    self.push_string(b, emit);
                }
                b')' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        emit(Token::String(&self.string));
                        self.string.clear();
                        self.state = Lex::Normal;
                    } else {
                        self.push_string(b, emit);
                    }
                }
                _ => self.push_string(b, emit),
            },
            Lex::Escape => {
                self.state = Lex::Literal;
                let c = match b {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 8,
                    b'f' => 12,
                    b'0'..=b'7' => {
                        self.state = Lex::Octal {
                            value: b - b'0',
                            digits: 1,
                        };
                        return;
                    }
                    // A backslash at the end of a line joins it to the next.
                    b'\r' | b'\n' => return,
                    other => other,
                };
                self.push_string(c, emit);
            }
            Lex::Octal { value, digits } => {
                if digits < 3 && (b'0'..=b'7').contains(&b) {
                    self.state = Lex::Octal {
                        value: value.wrapping_mul(8).wrapping_add(b - b'0'),
                        digits: digits + 1,
                    };
                } else {
                    self.state = Lex::Literal;
                    self.push_string(value, emit);
                    self.push(b, emit);
                }
            }
        }
    }
}

/// Writes a PDF string as UTF-8: UTF-16BE when it starts with a byte-order mark, otherwise
/// its bytes as Latin-1 (close to PDFDocEncoding and WinAnsiEncoding for text).
fn write_string(s: &[u8], out: &mut Vec<u8>) {
    if let Some(units) = s.strip_prefix(b"\xfe\xff") {
        let units = units
            .chunks_exact(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]));
        for c in char::decode_utf16(units) {
            let mut tmp = [0u8; 4];
            let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
            out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
        }
    } else {
        let at = out.len();
        out.resize(at + s.len() * 2, 0);
        let n = latin1_into(s, &mut out[at..]);
        out.truncate(at + n);
    }
}

/// Text-showing operators, turned into the text they show.
struct Content {
    lexer: Lexer,
    in_array: bool,
}

/// A gap in a `TJ` array wider than this (in thousandths of the font size) is a word space.
const WORD_GAP: f64 = 200.0;

impl Content {
    fn new() -> Self {
        Self {
            lexer: Lexer::new(),
            in_array: false,
        }
    }

    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let in_array = &mut self.in_array;
        for &b in bytes {
            self.lexer.push(b, &mut |token| match token {
                Token::String(s) => write_string(s, out),
                Token::ArrayStart => *in_array = true,
                Token::ArrayEnd => *in_array = false,
                Token::Word(w) => {
                    if *in_array {
                        let gap = std::str::from_utf8(w)
                            .ok()
                            .and_then(|n| n.parse::<f64>().ok());
                        if gap.is_some_and(|g| -g > WORD_GAP) {
                            out.push(b' ');
                        }
                    } else if matches!(
                        w,
                        b"T*" | b"Td" | b"TD" | b"Tm" | b"'" | b"\"" | b"ET" | b"BT"
                    ) {
                        out.push(b'\n');
                    }
                }
            });
        }
    }
}

/// A filter a stream's data went through, undone here in the order listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filter {
    Flate,
    Ascii85,
    AsciiHex,
}

/// What the dictionary before a stream says about it.
#[derive(Debug, PartialEq, Eq)]
enum StreamKind {
    /// Page content or other text-bearing data, through these filters (none: stored as is).
    Text(Vec<Filter>),
    /// Images, fonts, cross-reference data, or a filter that cannot be undone here.
    Skip(Option<String>),
}

fn has_name(dict: &[u8], name: &[u8]) -> bool {
    let mut from = 0;
    while let Some(at) = memchr::memmem::find(&dict[from..], name) {
        let end = from + at + name.len();
        match dict.get(end) {
            None => return true,
            Some(b) if !b.is_ascii_alphanumeric() && *b != b'-' && *b != b'.' => return true,
            _ => from = end,
        }
    }
    false
}

/// The names given as `/Filter`: one name, or an array of them.
fn filter_names(dict: &[u8]) -> Vec<&[u8]> {
    let mut from = 0;
    while let Some(at) = memchr::memmem::find(&dict[from..], b"/Filter") {
        let rest = &dict[from + at + b"/Filter".len()..];
        from += at + 1;
        let rest = rest.trim_ascii_start();
        let (list, single) = match rest.first() {
            Some(b'[') => (
                &rest[1..rest.iter().position(|b| *b == b']').unwrap_or(rest.len())],
                false,
            ),
            Some(b'/') => (rest, true),
            _ => continue,
        };
        let mut names = Vec::new();
        for word in
            list.split(|b| b.is_ascii_whitespace() || *b == b'/' || *b == b'>' || *b == b'<')
        {
            if !word.is_empty() {
                names.push(word);
                if single {
                    break;
                }
            }
        }
        return names;
    }
    Vec::new()
}

fn stream_kind(dict: &[u8]) -> StreamKind {
    const NOT_TEXT: &[&[u8]] = &[
        b"/Image",
        b"/Length1",
        b"/Length2",
        b"/Length3",
        b"/FontFile",
        b"/FontFile2",
        b"/FontFile3",
        b"/XRef",
        b"/Type1C",
        b"/CIDFontType0C",
        b"/OpenType",
        b"/ICCBased",
        b"/Alternate",
    ];
    if NOT_TEXT.iter().any(|n| has_name(dict, n)) {
        return StreamKind::Skip(None);
    }
    let mut filters = Vec::new();
    for name in filter_names(dict) {
        filters.push(match name {
            b"FlateDecode" | b"Fl" => Filter::Flate,
            b"ASCII85Decode" | b"A85" => Filter::Ascii85,
            b"ASCIIHexDecode" | b"AHx" => Filter::AsciiHex,
            other => {
                return StreamKind::Skip(Some(format!(
                    "a PDF stream uses the {} filter, which is not read",
                    String::from_utf8_lossy(other)
                )))
            }
        });
    }
    StreamKind::Text(filters)
}

/// Raw bytes kept before a `stream` keyword to read its dictionary from.
const MAX_DICT: usize = 4096;

/// Reads a whole PDF, writing its text to `sink`.
pub fn extract<R: BufRead>(reader: &mut R, sink: &mut Sink) -> Result<(), Stopped> {
    let mut body = Lexer::new();
    let mut dict: Vec<u8> = Vec::with_capacity(MAX_DICT);
    let mut out: Vec<u8> = Vec::with_capacity(1 << 16);
    loop {
        let chunk = match reader.fill_buf() {
            Ok([]) => break,
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                sink.partial(format!("the PDF could not be read to its end: {e}"));
                break;
            }
        };
        let mut used = chunk.len();
        let mut stream_starts = None;
        for (i, &b) in chunk.iter().enumerate() {
            if dict.len() == MAX_DICT {
                dict.drain(..MAX_DICT / 2);
            }
            dict.push(b);
            let mut event = None;
            body.push(b, &mut |token| match token {
                Token::String(s) => {
                    write_string(s, &mut out);
                    out.push(b'\n');
                }
                Token::Word(b"stream") => event = Some(Event::Stream),
                Token::Word(b"obj") => event = Some(Event::Object),
                Token::Word(b"/Encrypt") => event = Some(Event::Encrypted),
                Token::Word(b"/Identity-H" | b"/Identity-V") => event = Some(Event::CidFont),
                _ => {}
            });
            match event {
                Some(Event::Stream) => {
                    used = i + 1;
                    stream_starts = Some(b);
                    break;
                }
                Some(Event::Object) => dict.clear(),
                Some(Event::Encrypted) => {
                    sink.partial("the PDF is encrypted; its text cannot be read".into())
                }
                Some(Event::CidFont) => sink.partial(
                    "the PDF uses CID-keyed fonts (Identity encoding), whose text is not read"
                        .into(),
                ),
                None => {}
            }
        }
        reader.consume(used);
        if out.len() >= 1 << 15 {
            sink.write(&out)?;
            out.clear();
        }
        if let Some(delimiter) = stream_starts {
            sink.write(&out)?;
            out.clear();
            if delimiter == b'\r' {
                if let Ok([b'\n', ..]) = reader.fill_buf() {
                    reader.consume(1);
                }
            }
            read_stream(reader, stream_kind(&dict), sink)?;
            dict.clear();
            body = Lexer::new();
        }
        if sink.stopped() {
            return Err(Stopped);
        }
    }
    sink.write(&out)
}

enum Event {
    Stream,
    Object,
    Encrypted,
    CidFont,
}

/// Reads one stream's data, from just after `stream` to its end.
fn read_stream<R: BufRead>(
    reader: &mut R,
    kind: StreamKind,
    sink: &mut Sink,
) -> Result<(), Stopped> {
    let mut content = Content::new();
    let filters = match kind {
        StreamKind::Text(filters) if filters.is_empty() => {
            return skip_to_end(reader, Some(&mut content), sink)
        }
        StreamKind::Text(filters) => filters,
        StreamKind::Skip(reason) => {
            if let Some(reason) = reason {
                sink.partial(reason);
            }
            return skip_to_end(reader, None, sink);
        }
    };
    // Every filter read here marks its own end, so the first one stops at the end of the
    // data and the body can be read on from there.
    let mut decoded: Box<dyn Read + '_> = match filters[0] {
        Filter::Flate => Box::new(flate2::bufread::ZlibDecoder::new(&mut *reader)),
        Filter::Ascii85 => Box::new(Ascii85::new(&mut *reader)),
        Filter::AsciiHex => Box::new(AsciiHex::new(&mut *reader)),
    };
    for filter in &filters[1..] {
        let inner = io::BufReader::new(decoded);
        decoded = match filter {
            Filter::Flate => Box::new(flate2::bufread::ZlibDecoder::new(inner)),
            Filter::Ascii85 => Box::new(Ascii85::new(inner)),
            Filter::AsciiHex => Box::new(AsciiHex::new(inner)),
        };
    }
    let mut buf = vec![0u8; 1 << 15];
    let mut out = Vec::with_capacity(1 << 16);
    let failed = loop {
        match decoded.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => {
                content.feed(&buf[..n], &mut out);
                sink.write(&out)?;
                out.clear();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Some(e),
        }
    };
    drop(decoded);
    sink.write(b"\n")?;
    match failed {
        None => Ok(()),
        Some(e) => {
            sink.partial(format!("a compressed PDF stream is corrupt: {e}"));
            skip_to_end(reader, None, sink)
        }
    }
}

/// ASCII85 (`/ASCII85Decode`): groups of five characters for four bytes, `z` for four zero
/// bytes, ending at `~>`.
struct Ascii85<R> {
    inner: R,
    group: [u8; 5],
    filled: usize,
    done: bool,
}

impl<R: BufRead> Ascii85<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            group: [0; 5],
            filled: 0,
            done: false,
        }
    }
}

/// The bytes of a group of `filled` ASCII85 digits, padded with `u` as the end of data is.
fn ascii85_group(group: &[u8; 5], filled: &mut usize, out: &mut Vec<u8>) -> io::Result<()> {
    if *filled == 0 {
        return Ok(());
    }
    if *filled == 1 {
        return Err(io::Error::other("ASCII85 data ends with a lone character"));
    }
    let mut value: u64 = 0;
    for (i, digit) in group.iter().enumerate() {
        let digit = if i < *filled { digit - b'!' } else { 84 };
        value = value * 85 + u64::from(digit);
    }
    let value = u32::try_from(value).map_err(|_| io::Error::other("ASCII85 group out of range"))?;
    out.extend_from_slice(&value.to_be_bytes()[..*filled - 1]);
    *filled = 0;
    Ok(())
}

impl<R: BufRead> Read for Ascii85<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut out = Vec::with_capacity(buf.len() + 4);
        while !self.done && out.len() + 4 <= buf.len() {
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() {
                return Err(io::Error::other("ASCII85 data without its ~> end"));
            }
            let mut used = 0;
            for &b in chunk {
                used += 1;
                match b {
                    b'~' => {
                        self.done = true;
                        break;
                    }
                    b'z' if self.filled == 0 => out.extend_from_slice(&[0; 4]),
                    b'!'..=b'u' => {
                        self.group[self.filled] = b;
                        self.filled += 1;
                        if self.filled == 5 {
                            ascii85_group(&self.group, &mut self.filled, &mut out)?;
                        }
                    }
                    b if b.is_ascii_whitespace() || b == 0 => {}
                    _ => return Err(io::Error::other("not ASCII85 data")),
                }
                if out.len() + 4 > buf.len() {
                    break;
                }
            }
            self.inner.consume(used);
        }
        if self.done {
            ascii85_group(&self.group, &mut self.filled, &mut out)?;
            // The `>` after `~`.
            if let Ok([b'>', ..]) = self.inner.fill_buf() {
                self.inner.consume(1);
            }
        }
        buf[..out.len()].copy_from_slice(&out);
        Ok(out.len())
    }
}

/// ASCIIHex (`/ASCIIHexDecode`): two hex digits a byte, ending at `>`.
struct AsciiHex<R> {
    inner: R,
    high: Option<u8>,
    done: bool,
}

impl<R: BufRead> AsciiHex<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            high: None,
            done: false,
        }
    }
}

impl<R: BufRead> Read for AsciiHex<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while !self.done && n < buf.len() {
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() {
                return Err(io::Error::other("ASCIIHex data without its > end"));
            }
            let mut used = 0;
            for &b in chunk {
                if n == buf.len() {
                    break;
                }
                used += 1;
                if b == b'>' {
                    if let Some(high) = self.high.take() {
                        buf[n] = high << 4;
                        n += 1;
                    }
                    self.done = true;
                    break;
                }
                if let Some(v) = (b as char).to_digit(16) {
                    match self.high.take() {
                        Some(high) => {
                            buf[n] = (high << 4) | v as u8;
                            n += 1;
                        }
                        None => self.high = Some(v as u8),
                    }
                } else if !b.is_ascii_whitespace() {
                    return Err(io::Error::other("not ASCIIHex data"));
                }
            }
            self.inner.consume(used);
        }
        Ok(n)
    }
}

/// Reads up to and including `endstream`, passing the bytes to `content` if given.
fn skip_to_end<R: BufRead>(
    reader: &mut R,
    mut content: Option<&mut Content>,
    sink: &mut Sink,
) -> Result<(), Stopped> {
    const END: &[u8] = b"endstream";
    let mut matched = 0;
    let mut out = Vec::new();
    loop {
        let chunk = match reader.fill_buf() {
            Ok([]) => break,
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut used = chunk.len();
        let mut found = false;
        for (i, &b) in chunk.iter().enumerate() {
            matched = if b == END[matched] {
                matched + 1
            } else if b == END[0] {
                1
            } else {
                0
            };
            if matched == END.len() {
                used = i + 1;
                found = true;
                break;
            }
        }
        if let Some(content) = content.as_deref_mut() {
            content.feed(&chunk[..used], &mut out);
            sink.write(&out)?;
            out.clear();
        }
        reader.consume(used);
        if found || sink.stopped() {
            break;
        }
    }
    if sink.stopped() {
        return Err(Stopped);
    }
    sink.write(b"\n")
}
