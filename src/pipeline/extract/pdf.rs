//! The text of a PDF, read front to back without the cross-reference table: strings shown by
//! page content streams (inflated when Flate-compressed) and strings in the document's
//! dictionaries (title, author). Images and fonts are skipped. Text that cannot be read this
//! way (an encrypted file, CID-keyed fonts, filters other than Flate) marks the file partial.

use std::io::{self, BufRead, Read};

mod fonts;

use fonts::{CMap, Fonts};

use super::text::latin1_into;
use super::{Sink, Stopped};

/// A PDF token that matters for text.
pub(super) enum Token<'a> {
    String(&'a [u8]),
    /// A name (`/Encrypt`), operator (`Tj`) or number.
    Word(&'a [u8]),
    ArrayStart,
    ArrayEnd,
    DictStart,
    DictEnd,
}

#[derive(Clone, Copy)]
enum Lex {
    Normal,
    Comment,
    /// After one `<`: a hex string or a dictionary.
    Lt,
    /// After one `>` outside a hex string: the end of a dictionary, or nothing.
    Gt,
    Hex,
    Literal,
    Escape,
    Octal {
        value: u8,
        digits: u8,
    },
}

/// Splits PDF syntax into tokens, one byte at a time, so input can arrive in any pieces.
pub(super) struct Lexer {
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
    pub(super) fn new() -> Self {
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

    pub(super) fn push(&mut self, b: u8, emit: &mut impl FnMut(Token)) {
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
                b'>' => {
                    self.end_word(emit);
                    self.state = Lex::Gt;
                }
                b'{' | b'}' => self.end_word(emit),
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
            Lex::Gt => {
                self.state = Lex::Normal;
                if b == b'>' {
                    emit(Token::DictEnd);
                } else {
                    self.push(b, emit);
                }
            }
            Lex::Lt => {
                if b == b'<' {
                    self.state = Lex::Normal;
                    emit(Token::DictStart);
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

/// Writes a PDF string as UTF-8: through the font's character map when it has one,
/// UTF-16BE when it starts with a byte-order mark, otherwise its bytes as Latin-1 (close
/// to PDFDocEncoding and WinAnsiEncoding for text).
fn write_string(s: &[u8], cmap: Option<&CMap>, out: &mut Vec<u8>) {
    if let Some(cmap) = cmap {
        cmap.decode(s, out);
    } else if let Some(units) = s.strip_prefix(b"\xfe\xff") {
        let units = units
            .chunks_exact(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]));
        push_utf16(units, out);
    } else {
        let at = out.len();
        out.resize(at + s.len() * 2, 0);
        let n = latin1_into(s, &mut out[at..]);
        out.truncate(at + n);
    }
}

fn push_utf16(units: impl IntoIterator<Item = u16>, out: &mut Vec<u8>) {
    for c in char::decode_utf16(units) {
        let mut tmp = [0u8; 4];
        let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
        out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
    }
}

/// Text-showing operators, turned into the text they show.
struct Content<'f> {
    lexer: Lexer,
    in_array: bool,
    fonts: &'f Fonts,
    /// The last name seen, the operand of `Tf`.
    name: Vec<u8>,
    font: Option<&'f CMap>,
    /// Numbers since the last operator.
    operands: Vec<f64>,
    at: Position,
}

/// Where text is being shown, roughly: enough to tell whether the next piece continues a
/// word, starts a new word on the same line, or starts a new line. Writers often place
/// each word, or each glyph, on its own.
#[derive(Default)]
struct Position {
    /// Font size and the text matrix's scale.
    size: f64,
    scale: f64,
    /// The start of the current line, and where the text shown so far ends (glyphs taken
    /// as half an em wide). `None` before anything is shown.
    line: (f64, f64),
    end: Option<(f64, f64)>,
    /// The line moved since the last text shown: the separator is chosen when text is
    /// shown there, so that a move that shows nothing (a `T*` closing a block) is none.
    moved: bool,
}

impl Position {
    fn em(&self) -> f64 {
        (self.size * self.scale).abs().max(1.0)
    }

    fn move_to(&mut self, to: (f64, f64)) {
        self.line = to;
        self.moved = true;
    }

    /// Before text is shown after a move: a line break if it is on another line, a space
    /// if it leaves a gap after the text before it, nothing if it continues it.
    fn separate(&mut self, out: &mut Vec<u8>) {
        if !std::mem::take(&mut self.moved) {
            return;
        }
        let to = self.line;
        if let Some((x, y)) = self.end {
            let em = self.em();
            if (to.1 - y).abs() > em / 2.0 {
                out.push(b'\n');
            } else if to.0 - x > em / 4.0 || x - to.0 > em {
                out.push(b' ');
            }
        }
        self.end = Some(to);
    }

    fn shown(&mut self, chars: usize) {
        let (x, y) = self.end.unwrap_or(self.line);
        self.end = Some((x + chars as f64 * self.em() / 2.0, y));
    }
}

/// A gap in a `TJ` array wider than this (in thousandths of the font size) is a word space.
const WORD_GAP: f64 = 200.0;

impl<'f> Content<'f> {
    fn new(fonts: &'f Fonts) -> Self {
        Self {
            lexer: Lexer::new(),
            in_array: false,
            fonts,
            name: Vec::new(),
            font: None,
            operands: Vec::with_capacity(6),
            at: Position {
                size: 12.0,
                scale: 1.0,
                ..Position::default()
            },
        }
    }

    fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let Self {
            lexer,
            in_array,
            fonts,
            name,
            font,
            operands,
            at,
        } = self;
        for &b in bytes {
            lexer.push(b, &mut |token| match token {
                Token::String(s) => {
                    at.separate(out);
                    let before = out.len();
                    write_string(s, *font, out);
                    let chars =
                        std::str::from_utf8(&out[before..]).map_or(s.len(), |t| t.chars().count());
                    at.shown(chars);
                }
                Token::ArrayStart => *in_array = true,
                Token::ArrayEnd => *in_array = false,
                Token::DictStart | Token::DictEnd => {}
                Token::Word(w) if w.starts_with(b"/") => {
                    name.clear();
                    name.extend_from_slice(w);
                }
                Token::Word(w) => {
                    if let Some(n) = std::str::from_utf8(w)
                        .ok()
                        .and_then(|n| n.parse::<f64>().ok())
                    {
                        if *in_array {
                            if -n > WORD_GAP {
                                out.push(b' ');
                            }
                        } else if operands.len() < 6 {
                            operands.push(n);
                        }
                        return;
                    }
                    let line = at.line;
                    match (w, operands.as_slice()) {
                        (b"Tf", [.., size]) => {
                            at.size = *size;
                            *font = fonts.cmap(name);
                        }
                        (b"Tf", _) => *font = fonts.cmap(name),
                        (b"Td" | b"TD", [tx, ty]) => {
                            let k = at.scale;
                            at.move_to((line.0 + tx * k, line.1 + ty * k));
                        }
                        (b"Tm", [a, b, _, _, e, f]) => {
                            at.scale = a.hypot(*b);
                            at.move_to((*e, *f));
                        }
                        // A text object starts at the origin until moved.
                        (b"BT", _) => at.move_to((0.0, 0.0)),
                        (b"T*", _) => at.move_to((line.0, line.1 - at.em())),
                        // These show their string after moving to the next line; the
                        // string came first, so the break follows it.
                        (b"'" | b"\"", _) => {
                            out.push(b'\n');
                            at.line.1 -= at.em();
                            at.end = Some(at.line);
                        }
                        _ => {}
                    }
                    operands.clear();
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

/// What a pass over a PDF does with what the walk finds.
trait Visitor {
    /// `N G obj` begins object N.
    fn object(&mut self, number: u32);
    /// A token outside streams.
    fn token(&mut self, token: &Token);
    /// How to read the stream whose dictionary is `dict`.
    fn stream(&mut self, dict: &[u8]) -> StreamKind;
    /// Decoded data of the stream being read.
    fn data(&mut self, bytes: &[u8]) -> Result<(), Stopped>;
    fn end_stream(&mut self) -> Result<(), Stopped>;
    fn partial(&mut self, reason: String);
    fn stopped(&self) -> bool;
}

/// Reads a PDF front to back, telling `visitor` what it finds.
fn walk<R: BufRead, V: Visitor>(reader: &mut R, visitor: &mut V) -> Result<(), Stopped> {
    let mut body = Lexer::new();
    let mut dict: Vec<u8> = Vec::with_capacity(MAX_DICT);
    // The last two numbers, for `N G obj`.
    let mut numbers: [Option<u32>; 2] = [None, None];
    loop {
        let chunk = match reader.fill_buf() {
            Ok([]) => break,
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                visitor.partial(format!("the PDF could not be read to its end: {e}"));
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
            body.push(b, &mut |token| {
                match &token {
                    Token::Word(b"stream") => event = Some(Event::Stream),
                    Token::Word(b"obj") => {
                        if let [Some(n), Some(_)] = numbers {
                            event = Some(Event::Object(n));
                        }
                    }
                    _ => {}
                }
                numbers = match &token {
                    Token::Word(w) => [
                        numbers[1],
                        std::str::from_utf8(w).ok().and_then(|w| w.parse().ok()),
                    ],
                    _ => [None, None],
                };
                visitor.token(&token);
            });
            match event {
                Some(Event::Stream) => {
                    used = i + 1;
                    stream_starts = Some(b);
                    break;
                }
                Some(Event::Object(n)) => {
                    dict.clear();
                    visitor.object(n);
                }
                None => {}
            }
        }
        reader.consume(used);
        if let Some(delimiter) = stream_starts {
            if delimiter == b'\r' {
                if let Ok([b'\n', ..]) = reader.fill_buf() {
                    reader.consume(1);
                }
            }
            let kind = visitor.stream(&dict);
            read_stream(reader, kind, visitor)?;
            dict.clear();
            body = Lexer::new();
        }
        if visitor.stopped() {
            return Err(Stopped);
        }
    }
    Ok(())
}

enum Event {
    Stream,
    Object(u32),
}

/// Reads one stream's data, from just after `stream` to its end.
fn read_stream<R: BufRead, V: Visitor>(
    reader: &mut R,
    kind: StreamKind,
    visitor: &mut V,
) -> Result<(), Stopped> {
    let filters = match kind {
        StreamKind::Text(filters) if filters.is_empty() => {
            skip_to_end(reader, Some(&mut *visitor))?;
            return visitor.end_stream();
        }
        StreamKind::Text(filters) => filters,
        StreamKind::Skip(reason) => {
            if let Some(reason) = reason {
                visitor.partial(reason);
            }
            return skip_to_end::<R, V>(reader, None);
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
    let failed = loop {
        match decoded.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => visitor.data(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Some(e),
        }
    };
    drop(decoded);
    visitor.end_stream()?;
    match failed {
        None => Ok(()),
        Some(e) => {
            visitor.partial(format!("a compressed PDF stream is corrupt: {e}"));
            skip_to_end::<R, V>(reader, None)
        }
    }
}

/// The second pass: the text, through the fonts' character maps the first pass found.
struct Text<'s, 'a> {
    sink: &'s mut Sink<'a>,
    fonts: &'s Fonts,
    content: Content<'s>,
    out: Vec<u8>,
}

impl Visitor for Text<'_, '_> {
    fn object(&mut self, _: u32) {}

    fn token(&mut self, token: &Token) {
        match token {
            Token::String(s) => {
                write_string(s, None, &mut self.out);
                self.out.push(b'\n');
            }
            Token::Word(b"/Encrypt") => self
                .sink
                .partial_instead("the PDF is encrypted; its text cannot be read".into()),
            Token::Word(b"/Identity-H" | b"/Identity-V") if self.fonts.is_empty() => {
                self.sink.partial(
                    "the PDF uses CID-keyed fonts (Identity encoding) without character maps; \
                     their text is not read"
                        .into(),
                )
            }
            _ => {}
        }
    }

    fn stream(&mut self, dict: &[u8]) -> StreamKind {
        self.content = Content::new(self.fonts);
        stream_kind(dict)
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), Stopped> {
        self.content.feed(bytes, &mut self.out);
        self.sink.write(&self.out)?;
        self.out.clear();
        Ok(())
    }

    fn end_stream(&mut self) -> Result<(), Stopped> {
        self.out.push(b'\n');
        self.sink.write(&self.out)?;
        self.out.clear();
        Ok(())
    }

    fn partial(&mut self, reason: String) {
        self.sink.partial(reason);
    }

    fn stopped(&self) -> bool {
        self.sink.stopped()
    }
}

/// Reads a PDF that cannot be read twice, writing its text to `sink`; fonts with their own
/// character maps are read as Latin-1.
pub fn extract<R: BufRead>(reader: &mut R, sink: &mut Sink) -> Result<(), Stopped> {
    text_pass(reader, &Fonts::default(), sink)
}

/// Reads a PDF file twice: once for its fonts' character maps (ToUnicode), then for its
/// text.
pub fn extract_file(file: &std::fs::File, sink: &mut Sink) -> Result<(), Stopped> {
    use std::io::{Seek, SeekFrom};
    let mut reader = file;
    let fonts = match reader.seek(SeekFrom::Start(0)) {
        Ok(_) => fonts::collect(&mut io::BufReader::with_capacity(1 << 16, file), sink)?,
        Err(_) => Fonts::default(),
    };
    if let Err(e) = reader.seek(SeekFrom::Start(0)) {
        sink.partial(format!("the PDF could not be read again: {e}"));
        return Ok(());
    }
    text_pass(
        &mut io::BufReader::with_capacity(1 << 16, file),
        &fonts,
        sink,
    )
}

fn text_pass<R: BufRead>(reader: &mut R, fonts: &Fonts, sink: &mut Sink) -> Result<(), Stopped> {
    let mut text = Text {
        sink,
        fonts,
        content: Content::new(fonts),
        out: Vec::with_capacity(1 << 16),
    };
    walk(reader, &mut text)?;
    let out = std::mem::take(&mut text.out);
    text.sink.write(&out)
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

/// Reads up to and including `endstream`, passing the bytes to `visitor` if given.
fn skip_to_end<R: BufRead, V: Visitor>(
    reader: &mut R,
    mut visitor: Option<&mut V>,
) -> Result<(), Stopped> {
    const END: &[u8] = b"endstream";
    let mut matched = 0;
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
        if let Some(visitor) = visitor.as_deref_mut() {
            visitor.data(&chunk[..used])?;
        }
        reader.consume(used);
        if found {
            break;
        }
    }
    Ok(())
}
