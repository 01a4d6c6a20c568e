//! A PDF writer for the corpus: one text line per line of the page, in Helvetica with
//! WinAnsiEncoding, over as many pages as the text needs, with a correct cross-reference
//! table so that stock readers (pdftotext) open the files without repairing them.

use std::io::Write;

use flate2::write::ZlibEncoder;
use flate2::Compression;

use super::{pieces, Lcg};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Flate-compressed content streams; lines shown with `TJ` arrays whose strings are
    /// cut at arbitrary points with small kerning adjustments between them, some of the
    /// strings in hex.
    FlateKerned,
    /// Uncompressed content streams; each line one literal string shown with `Tj`, every
    /// fifth as a hex string.
    Plain,
    /// As office suites export: a subset font with two-byte glyph codes of its own
    /// (Identity-H) that only the font's ToUnicode map turns back into text, shown with
    /// kerned `TJ` arrays in Flate-compressed streams.
    SubsetFont,
    /// As [`Style::SubsetFont`], in a PDF 1.5 file: every object but the streams packed
    /// into a compressed object stream (fonts and page dictionaries included), and a
    /// cross-reference stream instead of the table, as most current producers write.
    ObjectStreams,
}

impl Style {
    fn subset(self) -> bool {
        matches!(self, Style::SubsetFont | Style::ObjectStreams)
    }
}

/// Glyph codes of a subset font: each character gets the next code as it first appears,
/// so the codes say nothing about the characters.
struct Glyphs(Vec<char>);

impl Glyphs {
    fn new(lines: &[String]) -> Self {
        let mut chars: Vec<char> = Vec::new();
        for c in lines.iter().flat_map(|l| l.chars()) {
            if !chars.contains(&c) {
                chars.push(c);
            }
        }
        Glyphs(chars)
    }

    fn code(&self, c: char) -> usize {
        1 + self
            .0
            .iter()
            .position(|&x| x == c)
            .expect("every shown character has a glyph")
    }

    fn show(&self, s: &str) -> String {
        let codes: String = s.chars().map(|c| format!("{:04X}", self.code(c))).collect();
        format!("<{codes}>")
    }

    /// The ToUnicode CMap, at most 100 mappings to a block as the format asks.
    fn to_unicode(&self) -> Vec<u8> {
        let mut cmap = String::from(
            "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n\
             /CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n\
             /CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n\
             1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n",
        );
        let all: Vec<(usize, char)> = self.0.iter().map(|&c| (self.code(c), c)).collect();
        for block in all.chunks(100) {
            cmap += &format!("{} beginbfchar\n", block.len());
            for (code, c) in block {
                let mut utf16 = [0u16; 2];
                let units: String = c
                    .encode_utf16(&mut utf16)
                    .iter()
                    .map(|u| format!("{u:04X}"))
                    .collect();
                cmap += &format!("<{code:04X}> <{units}>\n");
            }
            cmap += "endbfchar\n";
        }
        cmap += "endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n";
        cmap.into_bytes()
    }
}

const LINES_PER_PAGE: usize = 60;
const LEADING: usize = 12;
/// Longest line that fits the page width at 10 pt.
pub const MAX_LINE: usize = 95;

/// The bytes of `s` in WinAnsiEncoding, which is Windows-1252 for every character the
/// corpus uses.
fn win_ansi(s: &str) -> Vec<u8> {
    s.chars().map(super::windows_1252).collect()
}

/// A literal string: `(`, `)` and `\` escaped, bytes past ASCII as octal escapes.
pub fn literal(s: &str) -> String {
    let mut out = String::from("(");
    for b in win_ansi(s) {
        match b {
            b'(' | b')' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => out += &format!("\\{b:03o}"),
        }
    }
    out.push(')');
    out
}

fn hex(s: &str) -> String {
    format!("<{}>", hex::encode_upper(win_ansi(s)))
}

/// The text operators of one page.
fn page_content(lines: &[String], style: Style, glyphs: &Glyphs, rng: &mut Lcg) -> Vec<u8> {
    let mut ops = format!("BT\n/F1 10 Tf\n{LEADING} TL\n50 750 Td\n");
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            // Both ways of moving to the next line occur in the wild.
            ops += if i % 2 == 0 { "T*\n" } else { "0 -12 Td\n" };
        }
        match style {
            Style::Plain if i % 5 == 4 => ops += &format!("{} Tj\n", hex(line)),
            Style::Plain => ops += &format!("{} Tj\n", literal(line)),
            Style::FlateKerned | Style::SubsetFont | Style::ObjectStreams => {
                let mut array = String::from("[");
                for (j, piece) in pieces(line, rng, 2, 9).iter().enumerate() {
                    if j > 0 {
                        let kern = rng.range(0, 60) as i64 - 30;
                        array += &format!(" {kern} ");
                    }
                    array += &match style {
                        _ if style.subset() => glyphs.show(piece),
                        _ if rng.range(0, 3) == 0 => hex(piece),
                        _ => literal(piece),
                    };
                }
                ops += &format!("{array}] TJ\n");
            }
        }
    }
    ops += "ET\n";
    ops.into_bytes()
}

/// Serialises numbered objects (1..) with a cross-reference table pointing at each.
fn assemble(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        writeln!(out, "{} 0 obj", i + 1).unwrap();
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    write!(out, "xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).unwrap();
    for offset in offsets {
        // Each entry is exactly 20 bytes, the end of line included.
        writeln!(out, "{offset:010} 00000 n ").unwrap();
    }
    write!(
        out,
        "trailer\n<< /Size {} /Root 1 0 R /Info 3 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    )
    .unwrap();
    out
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    z.write_all(data).unwrap();
    z.finish().unwrap()
}

/// Serialises numbered objects (1..) as PDF 1.5 does: streams as they are, everything else
/// in one compressed object stream, indexed by a compressed cross-reference stream.
fn assemble_packed(objects: &[Vec<u8>]) -> Vec<u8> {
    let is_stream = |body: &Vec<u8>| body.windows(8).any(|w| w == b"\nstream\n");
    let packed_no = objects.len() + 1;
    let xref_no = objects.len() + 2;
    let mut out = b"%PDF-1.5\n%\xe2\xe3\xcf\xd3\n".to_vec();
    // Per object: (type, field 2, field 3) of its cross-reference entry.
    let mut entries = vec![(0u8, 0u32, 65535u16)];
    let (mut index, mut body) = (String::new(), Vec::new());
    for (i, object) in objects.iter().enumerate() {
        if is_stream(object) {
            entries.push((1, u32::try_from(out.len()).unwrap(), 0));
            writeln!(out, "{} 0 obj", i + 1).unwrap();
            out.extend_from_slice(object);
            out.extend_from_slice(b"\nendobj\n");
        } else {
            let at = u16::try_from(index.split(' ').count() / 2).unwrap();
            entries.push((2, u32::try_from(packed_no).unwrap(), at));
            index += &format!("{} {} ", i + 1, body.len());
            body.extend_from_slice(object);
            body.push(b'\n');
        }
    }
    let count = entries.iter().filter(|e| e.0 == 2).count();
    let mut data = index.into_bytes();
    let first = data.len();
    data.extend_from_slice(&body);
    let data = deflate(&data);
    entries.push((1, u32::try_from(out.len()).unwrap(), 0));
    write!(
        out,
        "{packed_no} 0 obj\n<< /Type /ObjStm /N {count} /First {first} /Length {} \
         /Filter /FlateDecode >>\nstream\n",
        data.len()
    )
    .unwrap();
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\nendstream\nendobj\n");

    let xref_at = out.len();
    entries.push((1, u32::try_from(xref_at).unwrap(), 0));
    let table: Vec<u8> = entries
        .iter()
        .flat_map(|(t, a, b)| [&[*t][..], &a.to_be_bytes(), &b.to_be_bytes()].concat())
        .collect();
    let table = deflate(&table);
    write!(
        out,
        "{xref_no} 0 obj\n<< /Type /XRef /Size {} /W [1 4 2] /Root 1 0 R /Info 3 0 R \
         /Length {} /Filter /FlateDecode >>\nstream\n",
        xref_no + 1,
        table.len()
    )
    .unwrap();
    out.extend_from_slice(&table);
    write!(out, "\nendstream\nendobj\nstartxref\n{xref_at}\n%%EOF\n").unwrap();
    out
}

fn stream(content: Vec<u8>, style: Style) -> Vec<u8> {
    let (data, filter) = match style {
        Style::Plain => (content, ""),
        Style::FlateKerned | Style::SubsetFont | Style::ObjectStreams => {
            let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
            z.write_all(&content).unwrap();
            (z.finish().unwrap(), " /Filter /FlateDecode")
        }
    };
    let mut obj = format!("<< /Length {}{filter} >>\nstream\n", data.len()).into_bytes();
    obj.extend_from_slice(&data);
    obj.extend_from_slice(b"\nendstream");
    obj
}

/// A one-page uncompressed PDF whose lines are shown by `shown`, one text-showing operation
/// per line.
pub fn from_operators(shown: &[String]) -> Vec<u8> {
    let ops = format!(
        "BT\n/F1 10 Tf\n{LEADING} TL\n50 750 Td\n{}\nET\n",
        shown.join("\nT*\n")
    );
    assemble(&document(vec![ops.into_bytes()], Style::Plain, None))
}

/// The Type0 font of [`Style::SubsetFont`], its descendant, descriptor and ToUnicode map,
/// numbered from `first` on (the font itself is object 4). The font program is not
/// embedded: readers substitute one, and text extraction needs only the map.
fn subset_font(first: usize, glyphs: &Glyphs) -> (Vec<u8>, Vec<Vec<u8>>) {
    let name = "/AAQXBC+Calibri";
    let font = format!(
        "<< /Type /Font /Subtype /Type0 /BaseFont {name} /Encoding /Identity-H \
         /DescendantFonts [{first} 0 R] /ToUnicode {} 0 R >>",
        first + 2
    );
    let descendant = format!(
        "<< /Type /Font /Subtype /CIDFontType2 /BaseFont {name} /CIDSystemInfo \
         << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> \
         /FontDescriptor {} 0 R /DW 500 /CIDToGIDMap /Identity >>",
        first + 1
    );
    let descriptor = format!(
        "<< /Type /FontDescriptor /FontName {name} /Flags 32 \
         /FontBBox [-503 -307 1240 964] /ItalicAngle 0 /Ascent 750 /Descent -250 \
         /CapHeight 632 /StemV 80 >>"
    );
    let map = stream(glyphs.to_unicode(), Style::FlateKerned);
    (
        font.into_bytes(),
        vec![descendant.into_bytes(), descriptor.into_bytes(), map],
    )
}

/// The objects of a document whose pages have the given content streams.
fn document(contents: Vec<Vec<u8>>, style: Style, glyphs: Option<&Glyphs>) -> Vec<Vec<u8>> {
    // 1 catalog, 2 page tree, 3 info, 4 font, then a page and its content for each page,
    // then the parts of a subset font.
    let kids: Vec<String> = (0..contents.len())
        .map(|i| format!("{} 0 R", 5 + 2 * i))
        .collect();
    let mut objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            contents.len()
        )
        .into_bytes(),
        b"<< /Producer (corpus writer) /CreationDate (D:20241105093000Z) >>".to_vec(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    ];
    let mut font_parts = Vec::new();
    if let Some(glyphs) = glyphs {
        let (font, parts) = subset_font(5 + 2 * contents.len(), glyphs);
        objects[3] = font;
        font_parts = parts;
    }
    for (i, content) in contents.into_iter().enumerate() {
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
                 /Resources << /Font << /F1 4 0 R >> >> /Contents {} 0 R >>",
                6 + 2 * i
            )
            .into_bytes(),
        );
        objects.push(stream(content, style));
    }
    objects.extend(font_parts);
    objects
}

/// A PDF showing `lines`, one per line of the page.
pub fn write(lines: &[String], style: Style) -> Vec<u8> {
    let mut rng = Lcg::new(&lines.concat());
    let glyphs = Glyphs::new(lines);
    let contents = lines
        .chunks(LINES_PER_PAGE)
        .map(|page| {
            assert!(page.iter().all(|l| l.chars().count() <= MAX_LINE));
            page_content(page, style, &glyphs, &mut rng)
        })
        .collect();
    let subset = style.subset().then_some(&glyphs);
    let objects = document(contents, style, subset);
    match style {
        Style::ObjectStreams => assemble_packed(&objects),
        _ => assemble(&objects),
    }
}
