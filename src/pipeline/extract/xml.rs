//! The text of an office document's XML part: markup dropped, entities decoded, and a line
//! break or tab where a paragraph, cell or row ends so that words of different paragraphs
//! never run together. Runs inside a paragraph join with nothing between them, as word
//! processors split words across runs freely.

use std::io::{self, Read};

use super::{Sink, Stopped};

/// Element names (without namespace prefix) that end a block of text.
const LINE_BREAKS: &[&[u8]] = &[
    b"p",
    b"br",
    b"cr",
    b"tr",
    b"row",
    b"si",
    b"h",
    b"line-break",
    b"list-item",
    b"table-row",
    b"txBody",
];

/// Element names that separate text on the same line.
const TABS: &[&[u8]] = &[b"tab", b"tc", b"c", b"v", b"table-cell", b"s"];

/// Longest entity or element name kept; longer ones are not real markup and are dropped.
const MAX_NAME: usize = 64;

#[derive(Clone, Copy)]
enum State {
    Text,
    /// After `<` (and any `/`): reading the element name.
    Name {
        closing: bool,
    },
    /// Inside a tag after its name, in or out of a quoted attribute value.
    Tag {
        quote: Option<u8>,
    },
    /// `<!...>` or `<?...?>`: skipped to its `>`.
    Other,
    /// `<!--`: skipped to `-->`, counting the dashes just read.
    Comment {
        dashes: u8,
    },
    Entity,
}

pub fn strip<R: Read>(reader: &mut R, sink: &mut Sink) -> Result<(), Stopped> {
    let mut buf = vec![0u8; 1 << 16];
    let mut out = Vec::with_capacity(1 << 16);
    let mut state = State::Text;
    let mut name: Vec<u8> = Vec::with_capacity(MAX_NAME);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        for &b in &buf[..n] {
            state = match state {
                State::Text => match b {
                    b'<' => {
                        name.clear();
                        State::Name { closing: false }
                    }
                    b'&' => {
                        name.clear();
                        State::Entity
                    }
                    _ => {
                        out.push(b);
                        State::Text
                    }
                },
                State::Name { closing } => match b {
                    b'/' if name.is_empty() => State::Name { closing: true },
                    b'!' | b'?' if name.is_empty() => State::Other,
                    b'>' => {
                        separate(&name, closing, &mut out);
                        State::Text
                    }
                    b'/' | b' ' | b'\t' | b'\r' | b'\n' => {
                        separate(&name, closing, &mut out);
                        State::Tag { quote: None }
                    }
                    _ => {
                        if name.len() < MAX_NAME {
                            name.push(b);
                        }
                        State::Name { closing }
                    }
                },
                State::Tag { quote: None } => match b {
                    b'>' => State::Text,
                    b'"' | b'\'' => State::Tag { quote: Some(b) },
                    _ => State::Tag { quote: None },
                },
                State::Tag { quote: Some(q) } => {
                    if b == q {
                        State::Tag { quote: None }
                    } else {
                        State::Tag { quote: Some(q) }
                    }
                }
                State::Other => match b {
                    b'>' => State::Text,
                    b'-' if name.len() < 2 => {
                        name.push(b);
                        if name.len() == 2 {
                            State::Comment { dashes: 0 }
                        } else {
                            State::Other
                        }
                    }
                    _ => {
                        // Not a comment: mark the start as seen.
                        if name.len() < 2 {
                            name.push(b'.');
                        }
                        State::Other
                    }
                },
                State::Comment { dashes } => match b {
                    b'>' if dashes >= 2 => State::Text,
                    b'-' => State::Comment {
                        dashes: dashes.saturating_add(1),
                    },
                    _ => State::Comment { dashes: 0 },
                },
                State::Entity => {
                    if b == b';' {
                        decode_entity(&name, &mut out);
                        State::Text
                    } else if name.len() >= MAX_NAME || b == b'<' {
                        // Not an entity after all: keep what was read.
                        out.push(b'&');
                        out.extend_from_slice(&name);
                        if b == b'<' {
                            name.clear();
                            State::Name { closing: false }
                        } else {
                            out.push(b);
                            State::Text
                        }
                    } else {
                        name.push(b);
                        State::Entity
                    }
                }
            };
            if out.len() >= 1 << 16 {
                sink.write(&out)?;
                out.clear();
            }
        }
        if sink.stopped() {
            return Err(Stopped);
        }
    }
    sink.write(&out)
}

/// Elements that may sit inside a word: runs, their text and properties, spans, links,
/// tracked changes, bookmarks and fields. Every other element ends what it holds, so
/// the text of neighbouring elements (a title and an author, say) never runs together.
const INLINE: &[&[u8]] = &[
    b"t",
    b"r",
    b"rPr",
    b"span",
    b"a",
    b"hyperlink",
    b"ins",
    b"del",
    b"delText",
    b"moveFrom",
    b"moveTo",
    b"smartTag",
    b"fldSimple",
    b"fldChar",
    b"instrText",
    b"proofErr",
    b"bookmarkStart",
    b"bookmarkEnd",
    b"bookmark",
    b"bookmark-start",
    b"bookmark-end",
    b"sdt",
    b"sdtContent",
    b"customXml",
    b"softHyphen",
    b"noBreakHyphen",
    b"sym",
    b"lastRenderedPageBreak",
    b"soft-page-break",
    b"commentRangeStart",
    b"commentRangeEnd",
    b"dir",
    b"bdo",
    b"ruby",
    b"rubyBase",
    b"rt",
    b"fld",
];

/// The separator an element of this name puts in the text, if any.
fn separate(name: &[u8], closing: bool, out: &mut Vec<u8>) {
    let local = match name.iter().rposition(|b| *b == b':') {
        Some(colon) => &name[colon + 1..],
        None => name,
    };
    if LINE_BREAKS.contains(&local) {
        out.push(b'\n');
    } else if TABS.contains(&local) {
        out.push(b'\t');
    } else if closing && !INLINE.contains(&local) {
        out.push(b'\n');
    }
}

fn decode_entity(name: &[u8], out: &mut Vec<u8>) {
    let c = match name {
        b"lt" => Some('<'),
        b"gt" => Some('>'),
        b"amp" => Some('&'),
        b"quot" => Some('"'),
        b"apos" => Some('\''),
        [b'#', b'x' | b'X', hex @ ..] => std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32),
        [b'#', dec @ ..] => std::str::from_utf8(dec)
            .ok()
            .and_then(|d| d.parse().ok())
            .and_then(char::from_u32),
        _ => None,
    };
    match c {
        Some(c) => {
            let mut tmp = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
        }
        None => {
            out.push(b'&');
            out.extend_from_slice(name);
            out.push(b';');
        }
    }
}
