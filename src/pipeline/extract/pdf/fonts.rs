//! The first pass over a PDF: which font each resource name stands for, and the character
//! map (`/ToUnicode`) that turns that font's codes into text. Writers that subset fonts
//! (office suites, browsers) number the glyphs they use from 1, so without these maps the
//! shown strings are not the text.
//!
//! Resource names are taken document-wide: the first `/F1` found is the one used, which is
//! what writers that number fonts per document produce.

use std::collections::HashMap;
use std::io::BufRead;

use super::{stream_kind, walk, Lexer, StreamKind, Token, Visitor};
use crate::pipeline::extract::{Sink, Stopped};

/// A font's codes and the text each stands for.
#[derive(Debug, Default)]
pub struct CMap {
    /// Bytes per code (1 or 2), from the code space.
    width: usize,
    single: HashMap<u32, Vec<u16>>,
    /// First code, last code, text of the first (later codes add to its last unit).
    ranges: Vec<(u32, u32, Vec<u16>)>,
}

impl CMap {
    pub fn decode(&self, codes: &[u8], out: &mut Vec<u8>) {
        let width = self.width.clamp(1, 4);
        for code in codes.chunks(width) {
            let code = code.iter().fold(0u32, |v, b| (v << 8) | u32::from(*b));
            if let Some(text) = self.single.get(&code) {
                super::push_utf16(text.iter().copied(), out);
            } else if let Some((lo, _, base)) = self
                .ranges
                .iter()
                .find(|(lo, hi, _)| (*lo..=*hi).contains(&code))
            {
                let mut text = base.clone();
                if let Some(last) = text.last_mut() {
                    *last = last.wrapping_add((code - lo) as u16);
                }
                super::push_utf16(text, out);
            }
        }
    }

    fn entries(&self) -> usize {
        self.single.len() + self.ranges.len()
    }

    /// Parses a CMap program's `codespacerange`, `bfchar` and `bfrange` sections.
    fn parse(program: &[u8]) -> Self {
        #[derive(PartialEq)]
        enum Section {
            None,
            CodeSpace,
            Char,
            Range,
        }
        let mut cmap = CMap::default();
        let mut section = Section::None;
        // Strings (and arrays of them, for a bfrange) of the entry being read.
        let mut operands: Vec<Vec<u8>> = Vec::new();
        let mut array: Option<Vec<Vec<u8>>> = None;
        let mut lexer = Lexer::new();
        let units = |s: &[u8]| -> Vec<u16> {
            s.chunks(2)
                .map(|p| u16::from_be_bytes([p[0], *p.get(1).unwrap_or(&0)]))
                .collect()
        };
        let code = |s: &[u8]| s.iter().fold(0u32, |v, b| (v << 8) | u32::from(*b));
        for &b in program {
            lexer.push(b, &mut |token| match token {
                Token::Word(b"begincodespacerange") => section = Section::CodeSpace,
                Token::Word(b"beginbfchar") => section = Section::Char,
                Token::Word(b"beginbfrange") => section = Section::Range,
                Token::Word(w) if w.starts_with(b"end") => {
                    section = Section::None;
                    operands.clear();
                }
                Token::ArrayStart => array = Some(Vec::new()),
                Token::ArrayEnd => {
                    // `<lo> <hi> [<a> <b> ...]`: one text per code.
                    if let (Some(list), [lo, _]) = (array.take(), operands.as_slice()) {
                        let lo = code(lo);
                        for (i, text) in list.iter().enumerate() {
                            cmap.single.insert(lo + i as u32, units(text));
                        }
                    }
                    operands.clear();
                }
                Token::String(s) => {
                    if let Some(list) = &mut array {
                        list.push(s.to_vec());
                        return;
                    }
                    operands.push(s.to_vec());
                    match (&section, operands.len()) {
                        (Section::CodeSpace, 2) => {
                            if cmap.width == 0 {
                                cmap.width = operands[0].len();
                            }
                            operands.clear();
                        }
                        (Section::Char, 2) => {
                            cmap.single.insert(code(&operands[0]), units(&operands[1]));
                            operands.clear();
                        }
                        (Section::Range, 3) => {
                            let (lo, hi) = (code(&operands[0]), code(&operands[1]));
                            if lo <= hi {
                                cmap.ranges.push((lo, hi, units(&operands[2])));
                            }
                            operands.clear();
                        }
                        (Section::None, _) => operands.clear(),
                        _ => {}
                    }
                }
                _ => {}
            });
        }
        if cmap.width == 0 {
            cmap.width = 2;
        }
        cmap
    }
}

/// The fonts of a document that have character maps, by resource name.
#[derive(Debug, Default)]
pub struct Fonts {
    by_name: HashMap<Vec<u8>, CMap>,
}

impl Fonts {
    pub fn cmap(&self, name: &[u8]) -> Option<&CMap> {
        self.by_name.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Most character-map entries kept for one document, and most bytes of one map or object
/// stream buffered to read it.
const MAX_ENTRIES: usize = 1 << 18;
const MAX_BUFFERED: usize = 4 << 20;

/// What the first pass gathers before it can tie names to maps.
#[derive(Default)]
struct Collect<'s, 'a> {
    sink: Option<&'s mut Sink<'a>>,
    object: u32,
    /// The last tokens: `/Name N G R` is a reference.
    name: Option<Vec<u8>>,
    numbers: Vec<u32>,
    /// Dictionary depth, and the depth of an open `/Font << ... >>`.
    depth: u32,
    font_dict: Option<u32>,
    /// The previous token was the name `/Font`.
    after_font: bool,
    /// Resource name to font object, from inline `/Font` dictionaries.
    names: HashMap<Vec<u8>, u32>,
    /// Objects that are whole `/Font` resource dictionaries, and the references in each
    /// object.
    font_dicts: Vec<u32>,
    refs: HashMap<u32, Vec<(Vec<u8>, u32)>>,
    /// Font object to its ToUnicode map object.
    to_unicode: HashMap<u32, u32>,
    cmaps: HashMap<u32, CMap>,
    entries: usize,
    /// The stream being read: buffered if it may be a map or an object stream.
    buffer: Vec<u8>,
    buffering: bool,
    object_stream: bool,
}

impl Collect<'_, '_> {
    fn reference(&mut self, name: Vec<u8>, target: u32) {
        if name == b"/ToUnicode" {
            self.to_unicode.insert(self.object, target);
        } else if name == b"/Font" {
            self.font_dicts.push(target);
        } else if self.font_dict.is_some() {
            self.names.entry(name).or_insert(target);
        } else {
            let refs = self.refs.entry(self.object).or_default();
            if refs.len() < 4096 {
                refs.push((name, target));
            }
        }
    }

    /// The objects packed in an object stream: a header of `number offset` pairs, then the
    /// objects from `/First`.
    fn read_object_stream(&mut self, data: &[u8], first: usize) {
        let Some(header) = data.get(..first) else {
            return;
        };
        let numbers: Vec<usize> = String::from_utf8_lossy(header)
            .split_ascii_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        let objects: Vec<(u32, usize)> = numbers
            .chunks_exact(2)
            .map(|p| (p[0] as u32, first + p[1]))
            .collect();
        for (i, (number, start)) in objects.iter().enumerate() {
            let end = objects.get(i + 1).map_or(data.len(), |o| o.1);
            let Some(body) = data.get(*start..end.max(*start)) else {
                continue;
            };
            self.object(*number);
            let mut lexer = Lexer::new();
            for &b in body.iter().chain(b" ") {
                lexer.push(b, &mut |token| self.token(&token));
            }
        }
    }
}

impl Visitor for Collect<'_, '_> {
    fn object(&mut self, number: u32) {
        self.object = number;
        self.name = None;
        self.numbers.clear();
        self.depth = 0;
        self.font_dict = None;
        self.after_font = false;
    }

    fn token(&mut self, token: &Token) {
        let after_font = std::mem::take(&mut self.after_font);
        match token {
            Token::DictStart => {
                self.depth += 1;
                if after_font && self.font_dict.is_none() {
                    self.font_dict = Some(self.depth);
                }
                self.name = None;
            }
            Token::DictEnd => {
                if self.font_dict == Some(self.depth) {
                    self.font_dict = None;
                }
                self.depth = self.depth.saturating_sub(1);
                self.name = None;
            }
            Token::Word(b"R") => {
                if let (Some(name), [target, _]) = (self.name.take(), self.numbers.as_slice()) {
                    let target = *target;
                    self.reference(name, target);
                }
                self.numbers.clear();
            }
            Token::Word(w) if w.starts_with(b"/") => {
                self.after_font = w == b"/Font";
                self.name = Some(w.to_vec());
                self.numbers.clear();
            }
            Token::Word(w) => match std::str::from_utf8(w).ok().and_then(|n| n.parse().ok()) {
                Some(n) if self.numbers.len() < 2 => self.numbers.push(n),
                _ => {
                    self.name = None;
                    self.numbers.clear();
                }
            },
            _ => {
                self.name = None;
                self.numbers.clear();
            }
        }
    }

    fn stream(&mut self, dict: &[u8]) -> StreamKind {
        self.object_stream = super::has_name(dict, b"/ObjStm");
        self.buffer.clear();
        self.buffering = true;
        match stream_kind(dict) {
            // Reasons are the text pass's to give.
            StreamKind::Skip(_) => StreamKind::Skip(None),
            text => text,
        }
    }

    fn data(&mut self, bytes: &[u8]) -> Result<(), Stopped> {
        if self.buffering {
            if self.buffer.len() + bytes.len() > MAX_BUFFERED {
                self.buffering = false;
                self.buffer = Vec::new();
            } else {
                self.buffer.extend_from_slice(bytes);
                // A map says so at its start; anything else need not be kept.
                if !self.object_stream
                    && self.buffer.len() >= 1024
                    && memchr::memmem::find(&self.buffer, b"begincmap").is_none()
                    && memchr::memmem::find(&self.buffer, b"/CIDInit").is_none()
                {
                    self.buffering = false;
                    self.buffer = Vec::new();
                }
            }
        }
        if self.stopped() {
            return Err(Stopped);
        }
        Ok(())
    }

    fn end_stream(&mut self) -> Result<(), Stopped> {
        let data = std::mem::take(&mut self.buffer);
        if !self.buffering {
            return Ok(());
        }
        self.buffering = false;
        if self.object_stream {
            // `/First` is in the dictionary, which the object's references no longer hold:
            // the header ends where the first object's text starts.
            let first = data
                .iter()
                .position(|b| matches!(b, b'<' | b'[' | b'(' | b'/'))
                .unwrap_or(data.len());
            let object = self.object;
            self.read_object_stream(&data, first);
            self.object(object);
        } else if memchr::memmem::find(&data, b"begincmap").is_some() && self.entries < MAX_ENTRIES
        {
            let cmap = CMap::parse(&data);
            self.entries += cmap.entries();
            self.cmaps.insert(self.object, cmap);
        }
        Ok(())
    }

    fn partial(&mut self, _: String) {}

    fn stopped(&self) -> bool {
        self.sink.as_ref().is_some_and(|s| s.stopped())
    }
}

/// The first pass over a PDF.
pub fn collect<R: BufRead>(reader: &mut R, sink: &mut Sink) -> Result<Fonts, Stopped> {
    let mut collect = Collect {
        sink: Some(sink),
        ..Default::default()
    };
    walk(reader, &mut collect)?;
    let Collect {
        mut names,
        font_dicts,
        mut refs,
        to_unicode,
        mut cmaps,
        ..
    } = collect;
    for dict in font_dicts {
        for (name, font) in refs.remove(&dict).unwrap_or_default() {
            names.entry(name).or_insert(font);
        }
    }
    let mut by_name = HashMap::new();
    let mut maps: HashMap<u32, Option<CMap>> = HashMap::new();
    for (name, font) in names {
        let Some(map_object) = to_unicode.get(&font) else {
            continue;
        };
        // Fonts sharing a map get a copy each; maps are small.
        let entry = maps
            .entry(*map_object)
            .or_insert_with(|| cmaps.remove(map_object));
        if let Some(cmap) = entry {
            by_name.insert(
                name,
                CMap {
                    width: cmap.width,
                    single: cmap.single.clone(),
                    ranges: cmap.ranges.clone(),
                },
            );
        }
    }
    Ok(Fonts { by_name })
}
