//! Writers for the text encodings, the office formats (OOXML and ODF, XML written by hand
//! inside a zip) and the archives of the corpus.

use std::io::Write;

use flate2::{Compression, GzBuilder};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::texts::Text;
use super::{pieces, Lcg};

/// The text as a file: one line each, with a final newline.
pub fn plain_text(text: &Text) -> String {
    let mut s = text.lines.join("\n");
    s.push('\n');
    s
}

pub fn utf16(text: &Text, little_endian: bool, bom: bool) -> Vec<u8> {
    let s = plain_text(text);
    let units = std::iter::once(0xFEFF)
        .filter(|_| bom)
        .chain(s.encode_utf16());
    units
        .flat_map(|u| {
            if little_endian {
                u.to_le_bytes()
            } else {
                u.to_be_bytes()
            }
        })
        .collect()
}

/// Latin-1, or rather Windows-1252, which is what "ANSI" files on Windows hold.
pub fn latin1(text: &Text) -> Vec<u8> {
    plain_text(text).chars().map(super::windows_1252).collect()
}

pub fn gzip(text: &Text) -> Vec<u8> {
    let mut gz = GzBuilder::new()
        .filename("notes.txt")
        .mtime(1_700_000_000)
        .write(Vec::new(), Compression::default());
    gz.write_all(plain_text(text).as_bytes()).unwrap();
    gz.finish().unwrap()
}

/// A zip such as a folder sent by mail: the text in a subfolder, and a harmless readme.
pub fn zip_folder(text: &Text) -> Vec<u8> {
    zip_parts(&[
        (
            "README.txt",
            b"Exported from the shared drive.\n".to_vec(),
            true,
        ),
        ("docs/", Vec::new(), true),
        ("docs/notes.txt", plain_text(text).into_bytes(), false),
    ])
}

/// A zip of `(name, bytes, stored)` parts, in that order, with a fixed time stamp so that
/// every run writes the same bytes. A name ending in `/` is a directory.
pub fn zip_parts<S: AsRef<str>>(parts: &[(S, Vec<u8>, bool)]) -> Vec<u8> {
    let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let time = DateTime::from_date_and_time(2024, 11, 5, 9, 30, 0).unwrap();
    for (name, bytes, stored) in parts {
        let name = name.as_ref();
        let method = if *stored {
            CompressionMethod::Stored
        } else {
            CompressionMethod::Deflated
        };
        let options = SimpleFileOptions::default()
            .compression_method(method)
            .last_modified_time(time);
        if let Some(dir) = name.strip_suffix('/') {
            zip.add_directory(dir, options).unwrap();
        } else {
            zip.start_file(name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
    }
    zip.finish().unwrap().into_inner()
}

/// Escapes text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const XML_DECL: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#;
const RELS_NS: &str = "http://schemas.openxmlformats.org/package/2006/relationships";
const REL_OFFICE_DOC: &str =
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument";
const W_NS: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";
const R_NS: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";

pub fn content_types(overrides: &[(&str, &str)]) -> Vec<u8> {
    let mut s = format!(
        "{XML_DECL}\n<Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
         <Default Extension=\"rels\" \
         ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\
         <Default Extension=\"xml\" ContentType=\"application/xml\"/>"
    );
    for (part, kind) in overrides {
        s += &format!("<Override PartName=\"{part}\" ContentType=\"{kind}\"/>");
    }
    s += "</Types>";
    s.into_bytes()
}

/// A relationships part: `(id, type, target)` each.
fn rels(list: &[(&str, &str, &str)]) -> Vec<u8> {
    let mut s = format!("{XML_DECL}\n<Relationships xmlns=\"{RELS_NS}\">");
    for (id, kind, target) in list {
        s += &format!("<Relationship Id=\"{id}\" Type=\"{kind}\" Target=\"{target}\"/>");
    }
    s += "</Relationships>";
    s.into_bytes()
}

/// Neutral document properties, as every office suite writes them.
fn core_props() -> Vec<u8> {
    format!(
        "{XML_DECL}\n<cp:coreProperties \
         xmlns:cp=\"http://schemas.openxmlformats.org/package/2006/metadata/core-properties\" \
         xmlns:dc=\"http://purl.org/dc/elements/1.1/\" \
         xmlns:dcterms=\"http://purl.org/dc/terms/\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\
         <dc:title>Notes</dc:title><dc:creator>Office</dc:creator>\
         <dcterms:created xsi:type=\"dcterms:W3CDTF\">2024-11-05T09:30:00Z</dcterms:created>\
         </cp:coreProperties>"
    )
    .into_bytes()
}

/// The segments of a line, split where a cell or tab stop falls.
fn cells(text: &Text, line: &str) -> Vec<String> {
    let sep = text.cells.unwrap_or('\t');
    line.split(sep).map(str::to_string).collect()
}

/// One `<w:t>` run as Word writes it: spaces at either end need `xml:space`.
fn word_run(piece: &str, rng: &mut Lcg) -> String {
    let props = match rng.range(0, 5) {
        0 => "<w:rPr><w:b/></w:rPr>",
        1 => "<w:rPr><w:lang w:val=\"en-GB\"/></w:rPr>",
        _ => "",
    };
    let space = if piece.starts_with(' ') || piece.ends_with(' ') {
        " xml:space=\"preserve\""
    } else {
        ""
    };
    let proof = if rng.range(0, 6) == 0 {
        "<w:proofErr w:type=\"spellStart\"/>"
    } else {
        ""
    };
    format!("{proof}<w:r>{props}<w:t{space}>{}</w:t></w:r>", esc(piece))
}

/// A Word paragraph: the line cut into runs at arbitrary points, as edits and spell
/// checking leave them, with cells separated by tab stops.
fn word_paragraph(text: &Text, line: &str, rng: &mut Lcg) -> String {
    let mut p = String::from("<w:p><w:pPr><w:spacing w:after=\"120\"/></w:pPr>");
    for (i, cell) in cells(text, line).iter().enumerate() {
        if i > 0 {
            p += "<w:r><w:tab/></w:r>";
        }
        for piece in pieces(cell, rng, 2, 11) {
            p += &word_run(&piece, rng);
        }
    }
    p += "</w:p>";
    p
}

pub fn docx(text: &Text) -> Vec<u8> {
    let mut rng = Lcg::new(text.name);
    let mut body = String::new();
    for (i, line) in text.lines.iter().enumerate() {
        if i == 1 {
            body += "<w:bookmarkStart w:id=\"0\" w:name=\"_GoBack\"/><w:bookmarkEnd w:id=\"0\"/>";
        }
        body += &word_paragraph(text, line, &mut rng);
    }
    let document = format!(
        "{XML_DECL}\n<w:document xmlns:w=\"{W_NS}\" xmlns:r=\"{R_NS}\"><w:body>{body}\
         <w:sectPr><w:pgSz w:w=\"11906\" w:h=\"16838\"/></w:sectPr></w:body></w:document>"
    );
    let types = content_types(&[
        (
            "/word/document.xml",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
        ),
        (
            "/docProps/core.xml",
            "application/vnd.openxmlformats-package.core-properties+xml",
        ),
    ]);
    zip_parts(&[
        ("[Content_Types].xml", types, false),
        (
            "_rels/.rels",
            rels(&[
                ("rId1", REL_OFFICE_DOC, "word/document.xml"),
                (
                    "rId2",
                    "http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties",
                    "docProps/core.xml",
                ),
            ]),
            false,
        ),
        ("docProps/core.xml", core_props(), false),
        ("word/document.xml", document.into_bytes(), false),
    ])
}

/// Whether a cell is a number a spreadsheet would store as one.
fn numeric(cell: &str) -> bool {
    let plain = cell.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    plain && cell.parse::<f64>().is_ok() && (cell == "0" || !cell.starts_with('0'))
}

fn column(i: usize) -> char {
    char::from(b'A' + u8::try_from(i).expect("few columns"))
}

/// A shared string: long ones as rich text in two runs, the second bold.
fn shared_string(s: &str, rng: &mut Lcg) -> String {
    let space = " xml:space=\"preserve\"";
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < 24 {
        return format!("<si><t{space}>{}</t></si>", esc(s));
    }
    let cut = rng.range(3, chars.len() - 3);
    let (a, b): (String, String) = (chars[..cut].iter().collect(), chars[cut..].iter().collect());
    format!(
        "<si><r><t{space}>{}</t></r><r><rPr><b/><sz val=\"11\"/></rPr><t{space}>{}</t></r></si>",
        esc(&a),
        esc(&b)
    )
}

pub fn xlsx(text: &Text) -> Vec<u8> {
    let mut rng = Lcg::new(text.name);
    let mut strings: Vec<String> = Vec::new();
    let mut rows = String::new();
    for (r, line) in text.lines.iter().enumerate() {
        rows += &format!("<row r=\"{}\">", r + 1);
        for (c, cell) in cells(text, line).iter().enumerate() {
            let at = format!("{}{}", column(c), r + 1);
            if numeric(cell) {
                rows += &format!("<c r=\"{at}\"><v>{cell}</v></c>");
                continue;
            }
            let index = strings.iter().position(|s| s == cell).unwrap_or_else(|| {
                strings.push(cell.clone());
                strings.len() - 1
            });
            rows += &format!("<c r=\"{at}\" t=\"s\"><v>{index}</v></c>");
        }
        rows += "</row>";
    }
    let main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
    let sst: String = strings.iter().map(|s| shared_string(s, &mut rng)).collect();
    let n = strings.len();
    let shared =
        format!("{XML_DECL}\n<sst xmlns=\"{main}\" count=\"{n}\" uniqueCount=\"{n}\">{sst}</sst>");
    let sheet = format!(
        "{XML_DECL}\n<worksheet xmlns=\"{main}\" xmlns:r=\"{R_NS}\"><dimension ref=\"A1\"/>\
         <sheetData>{rows}</sheetData></worksheet>"
    );
    let workbook = format!(
        "{XML_DECL}\n<workbook xmlns=\"{main}\" xmlns:r=\"{R_NS}\"><sheets>\
         <sheet name=\"Sheet1\" sheetId=\"1\" r:id=\"rId1\"/></sheets></workbook>"
    );
    let ct = "application/vnd.openxmlformats-officedocument.spreadsheetml";
    let types = content_types(&[
        ("/xl/workbook.xml", &format!("{ct}.sheet.main+xml")),
        ("/xl/worksheets/sheet1.xml", &format!("{ct}.worksheet+xml")),
        ("/xl/sharedStrings.xml", &format!("{ct}.sharedStrings+xml")),
    ]);
    let rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
    zip_parts(&[
        ("[Content_Types].xml", types, false),
        (
            "_rels/.rels",
            rels(&[("rId1", REL_OFFICE_DOC, "xl/workbook.xml")]),
            false,
        ),
        ("xl/workbook.xml", workbook.into_bytes(), false),
        (
            "xl/_rels/workbook.xml.rels",
            rels(&[
                ("rId1", &format!("{rel}/worksheet"), "worksheets/sheet1.xml"),
                ("rId2", &format!("{rel}/sharedStrings"), "sharedStrings.xml"),
            ]),
            false,
        ),
        ("xl/sharedStrings.xml", shared.into_bytes(), false),
        ("xl/worksheets/sheet1.xml", sheet.into_bytes(), false),
    ])
}

/// Lines per slide: long texts run over several slides.
const SLIDE_LINES: usize = 15;

fn slide(lines: &[String], rng: &mut Lcg) -> String {
    let a = "http://schemas.openxmlformats.org/drawingml/2006/main";
    let p = "http://schemas.openxmlformats.org/presentationml/2006/main";
    let mut paras = String::new();
    for line in lines {
        paras += "<a:p>";
        for piece in pieces(line, rng, 4, 14) {
            paras += &format!(
                "<a:r><a:rPr lang=\"en-US\" dirty=\"0\"/><a:t>{}</a:t></a:r>",
                esc(&piece)
            );
        }
        paras += "</a:p>";
    }
    format!(
        "{XML_DECL}\n<p:sld xmlns:a=\"{a}\" xmlns:r=\"{R_NS}\" xmlns:p=\"{p}\"><p:cSld><p:spTree>\
         <p:nvGrpSpPr><p:cNvPr id=\"1\" name=\"\"/><p:cNvGrpSpPr/><p:nvPr/></p:nvGrpSpPr>\
         <p:grpSpPr/><p:sp><p:nvSpPr><p:cNvPr id=\"2\" name=\"TextBox 1\"/>\
         <p:cNvSpPr txBox=\"1\"/><p:nvPr/></p:nvSpPr><p:spPr/><p:txBody><a:bodyPr/>\
         <a:lstStyle/>{paras}</p:txBody></p:sp></p:spTree></p:cSld></p:sld>"
    )
}

pub fn pptx(text: &Text) -> Vec<u8> {
    let mut rng = Lcg::new(text.name);
    let slides: Vec<String> = text
        .lines
        .chunks(SLIDE_LINES)
        .map(|chunk| slide(chunk, &mut rng))
        .collect();
    let ct = "application/vnd.openxmlformats-officedocument.presentationml";
    let slide_rel = format!("{R_NS}/slide");
    let mut overrides = vec![(
        "/ppt/presentation.xml".to_string(),
        format!("{ct}.presentation.main+xml"),
    )];
    let (mut ids, mut pres_rels) = (String::new(), Vec::new());
    for i in 1..=slides.len() {
        overrides.push((
            format!("/ppt/slides/slide{i}.xml"),
            format!("{ct}.slide+xml"),
        ));
        ids += &format!("<p:sldId id=\"{}\" r:id=\"rId{i}\"/>", 255 + i);
        pres_rels.push((format!("rId{i}"), format!("slides/slide{i}.xml")));
    }
    let presentation = format!(
        "{XML_DECL}\n<p:presentation \
         xmlns:a=\"http://schemas.openxmlformats.org/drawingml/2006/main\" xmlns:r=\"{R_NS}\" \
         xmlns:p=\"http://schemas.openxmlformats.org/presentationml/2006/main\">\
         <p:sldIdLst>{ids}</p:sldIdLst><p:sldSz cx=\"12192000\" cy=\"6858000\"/>\
         <p:notesSz cx=\"6858000\" cy=\"9144000\"/></p:presentation>"
    );
    let overrides: Vec<(&str, &str)> = overrides
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let pres_rels: Vec<(&str, &str, &str)> = pres_rels
        .iter()
        .map(|(id, target)| (id.as_str(), slide_rel.as_str(), target.as_str()))
        .collect();
    let mut parts = vec![
        ("[Content_Types].xml", content_types(&overrides), false),
        (
            "_rels/.rels",
            rels(&[("rId1", REL_OFFICE_DOC, "ppt/presentation.xml")]),
            false,
        ),
        ("ppt/presentation.xml", presentation.into_bytes(), false),
        ("ppt/_rels/presentation.xml.rels", rels(&pres_rels), false),
    ];
    let names: Vec<String> = (1..=slides.len())
        .map(|i| format!("ppt/slides/slide{i}.xml"))
        .collect();
    for (name, slide) in names.iter().zip(slides) {
        parts.push((name.as_str(), slide.into_bytes(), false));
    }
    zip_parts(&parts)
}

const ODF_NS: &str = "xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" \
     xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\" \
     xmlns:table=\"urn:oasis:names:tc:opendocument:xmlns:table:1.0\" \
     xmlns:style=\"urn:oasis:names:tc:opendocument:xmlns:style:1.0\" office:version=\"1.3\"";

/// Text for an ODF paragraph, where runs of spaces collapse: a space at the start of a
/// paragraph or after another space is written `<text:s/>`, as ODF requires.
/// `after_space` says whether the text before `s` ended in one (or is the start).
fn odf_spaces(s: &str, after_space: &mut bool) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c == ' ' && *after_space {
            out += "<text:s/>";
        } else {
            out += &esc(&c.to_string());
        }
        *after_space = c == ' ';
    }
    out
}

/// A Writer paragraph: pieces alternate between plain text and styled spans.
fn odf_paragraph(text: &Text, line: &str, rng: &mut Lcg) -> String {
    let mut p = String::from("<text:p text:style-name=\"P1\">");
    for (i, cell) in cells(text, line).iter().enumerate() {
        if i > 0 {
            p += "<text:tab/>";
        }
        let mut after_space = true;
        for piece in pieces(cell, rng, 3, 12) {
            let body = odf_spaces(&piece, &mut after_space);
            if rng.range(0, 2) == 0 {
                p += &format!("<text:span text:style-name=\"T1\">{body}</text:span>");
            } else {
                p += &body;
            }
        }
    }
    p += "</text:p>";
    p
}

/// An ODF package: `mimetype` first and stored, as the format requires; `content.xml`,
/// and `styles.xml` (where page headers and footers live) if given.
pub fn odf_package(mimetype: &str, content: String, styles: Option<String>) -> Vec<u8> {
    let styles_entry = if styles.is_some() {
        "<manifest:file-entry manifest:full-path=\"styles.xml\" manifest:media-type=\"text/xml\"/>"
    } else {
        ""
    };
    let manifest = format!(
        "{XML_DECL}\n<manifest:manifest \
         xmlns:manifest=\"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0\" \
         manifest:version=\"1.3\"><manifest:file-entry manifest:full-path=\"/\" \
         manifest:media-type=\"{mimetype}\"/><manifest:file-entry \
         manifest:full-path=\"content.xml\" manifest:media-type=\"text/xml\"/>\
         {styles_entry}</manifest:manifest>"
    );
    let mut parts = vec![
        ("mimetype", mimetype.as_bytes().to_vec(), true),
        ("content.xml", content.into_bytes(), false),
    ];
    if let Some(styles) = styles {
        parts.push(("styles.xml", styles.into_bytes(), false));
    }
    parts.push(("META-INF/manifest.xml", manifest.into_bytes(), false));
    zip_parts(&parts)
}

pub fn odt(text: &Text) -> Vec<u8> {
    let mut rng = Lcg::new(text.name);
    let paras: String = text
        .lines
        .iter()
        .map(|l| odf_paragraph(text, l, &mut rng))
        .collect();
    let content = format!(
        "{XML_DECL}\n<office:document-content {ODF_NS}><office:automatic-styles>\
         <style:style style:name=\"T1\" style:family=\"text\"/></office:automatic-styles>\
         <office:body><office:text>{paras}</office:text></office:body>\
         </office:document-content>"
    );
    odf_package("application/vnd.oasis.opendocument.text", content, None)
}

pub fn ods(text: &Text) -> Vec<u8> {
    let mut rows = String::new();
    for line in &text.lines {
        rows += "<table:table-row>";
        for cell in cells(text, line) {
            if numeric(&cell) {
                rows += &format!(
                    "<table:table-cell office:value-type=\"float\" office:value=\"{cell}\">\
                     <text:p>{cell}</text:p></table:table-cell>"
                );
            } else {
                rows += &format!(
                    "<table:table-cell office:value-type=\"string\"><text:p>{}</text:p>\
                     </table:table-cell>",
                    odf_spaces(&cell, &mut true)
                );
            }
        }
        rows += "</table:table-row>";
    }
    let content = format!(
        "{XML_DECL}\n<office:document-content {ODF_NS}><office:body><office:spreadsheet>\
         <table:table table:name=\"Sheet1\">{rows}</table:table></office:spreadsheet>\
         </office:body></office:document-content>"
    );
    odf_package(
        "application/vnd.oasis.opendocument.spreadsheet",
        content,
        None,
    )
}
