//! A labelled synthetic corpus for the classification stage: every labelled text of
//! `texts` written in every file format the extractor reads, generated deterministically
//! into a directory. The writers here build each format by hand (XML, PDF objects) with
//! only `zip` and `flate2` underneath, so the corpus does not depend on the code it tests.

pub mod bomb;
pub mod formats;
pub mod pdf;
pub mod placements;
pub mod texts;

use std::path::{Path, PathBuf};

/// What a person reading the file would call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Sensitive,
    Personal,
    General,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Sensitive, Class::Personal, Class::General];

    /// The name `backupfs classify` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Sensitive => "sensitive",
            Class::Personal => "personal",
            Class::General => "general",
        }
    }
}

/// The file formats of the corpus; each labelled text is written once in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Utf8,
    Utf8Bom,
    Utf16LeBom,
    Utf16Le,
    Utf16Be,
    Latin1,
    Docx,
    Xlsx,
    Pptx,
    Odt,
    Ods,
    PdfFlate,
    PdfPlain,
    PdfSubsetFont,
    PdfObjectStreams,
    Gzip,
    Zip,
}

impl Format {
    pub const ALL: [Format; 17] = [
        Format::Utf8,
        Format::Utf8Bom,
        Format::Utf16LeBom,
        Format::Utf16Le,
        Format::Utf16Be,
        Format::Latin1,
        Format::Docx,
        Format::Xlsx,
        Format::Pptx,
        Format::Odt,
        Format::Ods,
        Format::PdfFlate,
        Format::PdfPlain,
        Format::PdfSubsetFont,
        Format::PdfObjectStreams,
        Format::Gzip,
        Format::Zip,
    ];

    /// The end of the file name: a tag that keeps the variants apart, and the extension.
    pub fn suffix(self) -> &'static str {
        match self {
            Format::Utf8 => "utf8.txt",
            Format::Utf8Bom => "utf8-bom.txt",
            Format::Utf16LeBom => "utf16le-bom.txt",
            Format::Utf16Le => "utf16le.txt",
            Format::Utf16Be => "utf16be.txt",
            Format::Latin1 => "latin1.txt",
            Format::Docx => "docx",
            Format::Xlsx => "xlsx",
            Format::Pptx => "pptx",
            Format::Odt => "odt",
            Format::Ods => "ods",
            Format::PdfFlate => "flate.pdf",
            Format::PdfPlain => "plain.pdf",
            Format::PdfSubsetFont => "subset-font.pdf",
            Format::PdfObjectStreams => "object-streams.pdf",
            Format::Gzip => "txt.gz",
            Format::Zip => "zip",
        }
    }

    /// The format `backupfs classify` should report for `text` written this way: text in
    /// Latin-1 that is all ASCII is plain text too.
    pub fn reported(self, text: &texts::Text) -> &'static str {
        match self {
            Format::Utf8 | Format::Utf8Bom => "text",
            Format::Utf16LeBom | Format::Utf16Le | Format::Utf16Be => "utf16",
            Format::Latin1 if text.lines.iter().all(|l| l.is_ascii()) => "text",
            // Latin-1 and Windows-1252 are one family to the extractor.
            Format::Latin1 => "latin1",
            Format::Docx => "docx",
            Format::Xlsx => "xlsx",
            Format::Pptx => "pptx",
            Format::Odt => "odt",
            Format::Ods => "ods",
            Format::PdfFlate
            | Format::PdfPlain
            | Format::PdfSubsetFont
            | Format::PdfObjectStreams => "pdf",
            Format::Gzip => "gzip",
            Format::Zip => "zip",
        }
    }

    /// Writes `text` in this format to `path`.
    pub fn write(self, path: &Path, text: &texts::Text) {
        let bytes = match self {
            Format::Utf8 => formats::plain_text(text).into_bytes(),
            Format::Utf8Bom => {
                [&b"\xef\xbb\xbf"[..], formats::plain_text(text).as_bytes()].concat()
            }
            Format::Utf16LeBom => formats::utf16(text, true, true),
            Format::Utf16Le => formats::utf16(text, true, false),
            Format::Utf16Be => formats::utf16(text, false, false),
            Format::Latin1 => formats::latin1(text),
            Format::Docx => formats::docx(text),
            Format::Xlsx => formats::xlsx(text),
            Format::Pptx => formats::pptx(text),
            Format::Odt => formats::odt(text),
            Format::Ods => formats::ods(text),
            Format::PdfFlate => pdf::write(&pdf_lines(text), pdf::Style::FlateKerned),
            Format::PdfPlain => pdf::write(&pdf_lines(text), pdf::Style::Plain),
            Format::PdfSubsetFont => pdf::write(&pdf_lines(text), pdf::Style::SubsetFont),
            Format::PdfObjectStreams => pdf::write(&pdf_lines(text), pdf::Style::ObjectStreams),
            Format::Gzip => formats::gzip(text),
            Format::Zip => formats::zip_folder(text),
        };
        std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// The lines as a PDF lays them out: cells of a table stand apart by spaces, since a page
/// has no tab characters.
pub fn pdf_lines(text: &texts::Text) -> Vec<String> {
    let sep = text.cells.unwrap_or('\t');
    text.lines
        .iter()
        .map(|l| {
            if sep == '\t' {
                l.replace(sep, "   ")
            } else {
                l.clone()
            }
        })
        .collect()
}

/// One generated file and its label.
pub struct Sample {
    pub path: PathBuf,
    pub expected: Class,
    /// `None` for the placement samples, written in one format each.
    pub format: Option<Format>,
    /// What `backupfs classify` should report as the format.
    pub reported: &'static str,
}

/// Writes every labelled text in every format into `dir` and returns the labels.
pub fn generate(dir: &Path) -> Vec<Sample> {
    let mut samples = Vec::new();
    for text in texts::all() {
        for format in Format::ALL {
            let name = format!("{}-{}.{}", text.class.as_str(), text.name, format.suffix());
            let path = dir.join(name);
            format.write(&path, &text);
            samples.push(Sample {
                path,
                expected: text.class,
                format: Some(format),
                reported: format.reported(&text),
            });
        }
    }
    samples.extend(placements::generate(dir));
    samples
}

/// The Windows-1252 byte of `c`: Latin-1, plus the typographic quotes, dashes and euro
/// sign that Windows puts where Latin-1 has control codes.
pub fn windows_1252(c: char) -> u8 {
    match c {
        '€' => 0x80,
        '…' => 0x85,
        '‘' => 0x91,
        '’' => 0x92,
        '“' => 0x93,
        '”' => 0x94,
        '–' => 0x96,
        '—' => 0x97,
        '™' => 0x99,
        _ => u8::try_from(u32::from(c))
            .ok()
            .filter(|b| !(0x80..0xa0).contains(b))
            .expect("corpus texts fit in Windows-1252"),
    }
}

/// A small deterministic generator (an LCG), so that run splits and kerning look irregular
/// and yet every run writes the same bytes.
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: &str) -> Self {
        // FNV-1a of the seed.
        let h = seed.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
        Lcg(h)
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + ((self.0 >> 33) as usize) % (hi - lo + 1)
    }
}

/// `s` cut into pieces of `lo..=hi` characters (never inside a character).
pub fn pieces(s: &str, rng: &mut Lcg, lo: usize, hi: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let n = rng.range(lo, hi).min(chars.len() - i);
        out.push(chars[i..i + n].iter().collect());
        i += n;
    }
    out
}
