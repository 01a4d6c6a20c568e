//! Documents whose telling words sit somewhere other than the main body, yet in plain view
//! of a person who opens the file: a page header, a second sheet, speaker notes, a heading,
//! a list, a hyperlink, an inline-string cell, or PDF words set apart by positioning alone.

use std::path::Path;

use super::formats::{content_types, esc, odf_package, zip_parts};
use super::texts::{card, grouped, iban};
use super::{pdf, Class, Sample};

const XML_DECL: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>"#;
const W_NS: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";
const R_NS: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
const PKG_RELS: &str = "http://schemas.openxmlformats.org/package/2006/relationships";
const SML_NS: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
const OFFICE_DOC: &str = "officeDocument/2006/relationships/officeDocument";

fn rels(list: &[(&str, &str, &str)]) -> Vec<u8> {
    let mut s = format!("{XML_DECL}\n<Relationships xmlns=\"{PKG_RELS}\">");
    for (id, kind, target) in list {
        s += &format!(
            "<Relationship Id=\"{id}\" \
             Type=\"http://schemas.openxmlformats.org/{kind}\" Target=\"{target}\"/>"
        );
    }
    s += "</Relationships>";
    s.into_bytes()
}

/// `[Content_Types].xml` for parts whose types are OOXML's own (the common prefix left out).
fn types(overrides: &[(&str, &str)]) -> Vec<u8> {
    let full: Vec<(&str, String)> = overrides
        .iter()
        .map(|(part, kind)| {
            (
                *part,
                format!("application/vnd.openxmlformats-officedocument.{kind}"),
            )
        })
        .collect();
    let pairs: Vec<(&str, &str)> = full.iter().map(|(p, k)| (*p, k.as_str())).collect();
    content_types(&pairs)
}

fn word_paragraph(line: &str) -> String {
    format!(
        "<w:p><w:r><w:t xml:space=\"preserve\">{}</w:t></w:r></w:p>",
        esc(line)
    )
}

/// A Word document part beside the body: its file name under `word/`, its kind (the
/// relationship and content type name it), and its XML.
struct WordPart {
    file: &'static str,
    kind: &'static str,
    xml: String,
}

/// A Word document with the body `body` (paragraph XML), `sect` inside its section
/// properties, and `parts` related to it as rId1, rId2, ...
fn docx_package(body: &str, sect: &str, parts: &[WordPart]) -> Vec<u8> {
    let document = format!(
        "{XML_DECL}\n<w:document xmlns:w=\"{W_NS}\" xmlns:r=\"{R_NS}\"><w:body>{body}\
         <w:sectPr>{sect}</w:sectPr></w:body></w:document>"
    );
    let names: Vec<String> = parts.iter().map(|p| format!("/word/{}", p.file)).collect();
    let kinds: Vec<String> = parts
        .iter()
        .map(|p| format!("wordprocessingml.{}+xml", p.kind))
        .collect();
    let mut overrides = vec![("/word/document.xml", "wordprocessingml.document.main+xml")];
    overrides.extend(
        names
            .iter()
            .map(String::as_str)
            .zip(kinds.iter().map(String::as_str)),
    );
    let ids: Vec<String> = (1..=parts.len()).map(|i| format!("rId{i}")).collect();
    let rel_kinds: Vec<String> = parts
        .iter()
        .map(|p| format!("officeDocument/2006/relationships/{}", p.kind))
        .collect();
    let doc_rels: Vec<(&str, &str, &str)> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| (ids[i].as_str(), rel_kinds[i].as_str(), p.file))
        .collect();
    let mut zip: Vec<(String, Vec<u8>, bool)> = vec![
        ("[Content_Types].xml".into(), types(&overrides), false),
        (
            "_rels/.rels".into(),
            rels(&[("rId1", OFFICE_DOC, "word/document.xml")]),
            false,
        ),
        (
            "word/_rels/document.xml.rels".into(),
            rels(&doc_rels),
            false,
        ),
        ("word/document.xml".into(), document.into_bytes(), false),
    ];
    for part in parts {
        zip.push((
            format!("word/{}", part.file),
            part.xml.clone().into_bytes(),
            false,
        ));
    }
    zip_parts(&zip)
}

/// A Word document whose body is harmless and whose page header reads `header`.
fn docx_with_header(header: &str, body: &[&str]) -> Vec<u8> {
    let paras: String = body.iter().map(|l| word_paragraph(l)).collect();
    let hdr = WordPart {
        file: "header1.xml",
        kind: "header",
        xml: format!(
            "{XML_DECL}\n<w:hdr xmlns:w=\"{W_NS}\" xmlns:r=\"{R_NS}\">{}</w:hdr>",
            word_paragraph(header)
        ),
    };
    let sect = "<w:headerReference w:type=\"default\" r:id=\"rId1\"/>";
    docx_package(&paras, sect, &[hdr])
}

/// A Word document with a reviewer's comment `comment` on its one harmless paragraph.
fn docx_with_comment(comment: &str) -> Vec<u8> {
    let body = "<w:p><w:commentRangeStart w:id=\"0\"/><w:r><w:t>Budget for the offsite\
                </w:t></w:r><w:commentRangeEnd w:id=\"0\"/><w:r>\
                <w:commentReference w:id=\"0\"/></w:r></w:p>";
    let comments = WordPart {
        file: "comments.xml",
        kind: "comments",
        xml: format!(
            "{XML_DECL}\n<w:comments xmlns:w=\"{W_NS}\"><w:comment w:id=\"0\" \
             w:author=\"Ana\" w:date=\"2024-11-05T09:30:00Z\" w:initials=\"A\">{}\
             </w:comment></w:comments>",
            word_paragraph(comment)
        ),
    };
    docx_package(body, "", &[comments])
}

/// A Word document with a footnote reading `note`.
fn docx_with_footnote(note: &str) -> Vec<u8> {
    let body = "<w:p><w:r><w:t>The numbers come from the usual source.</w:t></w:r><w:r>\
                <w:rPr><w:rStyle w:val=\"FootnoteReference\"/></w:rPr>\
                <w:footnoteReference w:id=\"1\"/></w:r></w:p>";
    let footnotes = WordPart {
        file: "footnotes.xml",
        kind: "footnotes",
        xml: format!(
            "{XML_DECL}\n<w:footnotes xmlns:w=\"{W_NS}\"><w:footnote w:id=\"1\">{}\
             </w:footnote></w:footnotes>",
            word_paragraph(note)
        ),
    };
    docx_package(body, "", &[footnotes])
}

/// A Word document with tracked changes: `deleted` struck out, still in the file.
fn docx_with_deletion(deleted: &str) -> Vec<u8> {
    let body = format!(
        "<w:p><w:r><w:t xml:space=\"preserve\">Pay the deposit by card </w:t></w:r>\
         <w:del w:id=\"1\" w:author=\"Ana\" w:date=\"2024-11-05T09:30:00Z\"><w:r>\
         <w:delText>{}</w:delText></w:r></w:del><w:ins w:id=\"2\" w:author=\"Ana\" \
         w:date=\"2024-11-05T09:31:00Z\"><w:r><w:t>on file</w:t></w:r></w:ins>\
         <w:r><w:t>.</w:t></w:r></w:p>",
        esc(deleted)
    );
    docx_package(&body, "", &[])
}

/// A cell: a number as a number, anything else as an inline string (as many libraries
/// write them, instead of shared strings).
fn inline_cell(at: &str, value: &str) -> String {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        format!("<c r=\"{at}\"><v>{value}</v></c>")
    } else {
        format!(
            "<c r=\"{at}\" t=\"inlineStr\"><is><t>{}</t></is></c>",
            esc(value)
        )
    }
}

fn sheet(rows: &[&[&str]]) -> Vec<u8> {
    let mut data = String::new();
    for (r, row) in rows.iter().enumerate() {
        data += &format!("<row r=\"{}\">", r + 1);
        for (c, value) in row.iter().enumerate() {
            let at = format!("{}{}", char::from(b'A' + c as u8), r + 1);
            data += &inline_cell(&at, value);
        }
        data += "</row>";
    }
    format!("{XML_DECL}\n<worksheet xmlns=\"{SML_NS}\"><sheetData>{data}</sheetData></worksheet>")
        .into_bytes()
}

/// A workbook of inline-string sheets, named Sheet1, Sheet2, ..., with `note` (a cell and
/// its text) as a note on the first sheet.
fn xlsx_sheets(sheets: &[&[&[&str]]], note: Option<(&str, &str)>) -> Vec<u8> {
    let n = sheets.len();
    let list: String = (1..=n)
        .map(|i| format!("<sheet name=\"Sheet{i}\" sheetId=\"{i}\" r:id=\"rId{i}\"/>"))
        .collect();
    let workbook = format!(
        "{XML_DECL}\n<workbook xmlns=\"{SML_NS}\" xmlns:r=\"{R_NS}\"><sheets>{list}</sheets>\
         </workbook>"
    );
    let names: Vec<String> = (1..=n)
        .map(|i| format!("/xl/worksheets/sheet{i}.xml"))
        .collect();
    let mut overrides = vec![("/xl/workbook.xml", "spreadsheetml.sheet.main+xml")];
    overrides.extend(
        names
            .iter()
            .map(|p| (p.as_str(), "spreadsheetml.worksheet+xml")),
    );
    if note.is_some() {
        overrides.push(("/xl/comments1.xml", "spreadsheetml.comments+xml"));
    }
    let ids: Vec<(String, String)> = (1..=n)
        .map(|i| (format!("rId{i}"), format!("worksheets/sheet{i}.xml")))
        .collect();
    let sheet_rels: Vec<(&str, &str, &str)> = ids
        .iter()
        .map(|(id, t)| {
            (
                id.as_str(),
                "officeDocument/2006/relationships/worksheet",
                t.as_str(),
            )
        })
        .collect();
    let mut parts: Vec<(String, Vec<u8>, bool)> = vec![
        ("[Content_Types].xml".to_string(), types(&overrides), false),
        (
            "_rels/.rels".to_string(),
            rels(&[("rId1", OFFICE_DOC, "xl/workbook.xml")]),
            false,
        ),
        ("xl/workbook.xml".to_string(), workbook.into_bytes(), false),
        (
            "xl/_rels/workbook.xml.rels".to_string(),
            rels(&sheet_rels),
            false,
        ),
    ];
    for (name, rows) in names.iter().zip(sheets) {
        parts.push((name[1..].to_string(), sheet(rows), false));
    }
    if let Some((cell, text)) = note {
        let comments = format!(
            "{XML_DECL}\n<comments xmlns=\"{SML_NS}\"><authors><author>Ana</author></authors>\
             <commentList><comment ref=\"{cell}\" authorId=\"0\"><text><r><t>{}</t></r>\
             </text></comment></commentList></comments>",
            esc(text)
        );
        let kind = "officeDocument/2006/relationships/comments";
        parts.push((
            "xl/worksheets/_rels/sheet1.xml.rels".to_string(),
            rels(&[("rId1", kind, "../comments1.xml")]),
            false,
        ));
        parts.push(("xl/comments1.xml".to_string(), comments.into_bytes(), false));
    }
    zip_parts(&parts)
}

const PML_NS: &str = "http://schemas.openxmlformats.org/presentationml/2006/main";
const DML_NS: &str = "http://schemas.openxmlformats.org/drawingml/2006/main";

fn text_body(lines: &[&str]) -> String {
    let paras: String = lines
        .iter()
        .map(|l| {
            format!(
                "<a:p><a:r><a:rPr lang=\"en-US\"/><a:t>{}</a:t></a:r></a:p>",
                esc(l)
            )
        })
        .collect();
    format!(
        "<p:sp><p:nvSpPr><p:cNvPr id=\"2\" name=\"Body\"/><p:cNvSpPr/><p:nvPr/></p:nvSpPr>\
         <p:spPr/><p:txBody><a:bodyPr/><a:lstStyle/>{paras}</p:txBody></p:sp>"
    )
}

/// A one-slide presentation whose speaker notes hold `notes`.
fn pptx_with_notes(slide: &[&str], notes: &[&str]) -> Vec<u8> {
    let tree = |body: String| {
        format!(
            "<p:cSld><p:spTree><p:nvGrpSpPr><p:cNvPr id=\"1\" name=\"\"/><p:cNvGrpSpPr/>\
             <p:nvPr/></p:nvGrpSpPr><p:grpSpPr/>{body}</p:spTree></p:cSld>"
        )
    };
    let ns = format!("xmlns:a=\"{DML_NS}\" xmlns:r=\"{R_NS}\" xmlns:p=\"{PML_NS}\"");
    let slide_xml = format!("{XML_DECL}\n<p:sld {ns}>{}</p:sld>", tree(text_body(slide)));
    let notes_xml = format!(
        "{XML_DECL}\n<p:notes {ns}>{}</p:notes>",
        tree(text_body(notes))
    );
    let presentation = format!(
        "{XML_DECL}\n<p:presentation {ns}><p:sldIdLst><p:sldId id=\"256\" r:id=\"rId1\"/>\
         </p:sldIdLst><p:sldSz cx=\"12192000\" cy=\"6858000\"/>\
         <p:notesSz cx=\"6858000\" cy=\"9144000\"/></p:presentation>"
    );
    let pml = "presentationml";
    zip_parts(&[
        (
            "[Content_Types].xml",
            types(&[
                (
                    "/ppt/presentation.xml",
                    &format!("{pml}.presentation.main+xml"),
                ),
                ("/ppt/slides/slide1.xml", &format!("{pml}.slide+xml")),
                (
                    "/ppt/notesSlides/notesSlide1.xml",
                    &format!("{pml}.notesSlide+xml"),
                ),
            ]),
            false,
        ),
        (
            "_rels/.rels",
            rels(&[("rId1", OFFICE_DOC, "ppt/presentation.xml")]),
            false,
        ),
        ("ppt/presentation.xml", presentation.into_bytes(), false),
        (
            "ppt/_rels/presentation.xml.rels",
            rels(&[(
                "rId1",
                "officeDocument/2006/relationships/slide",
                "slides/slide1.xml",
            )]),
            false,
        ),
        ("ppt/slides/slide1.xml", slide_xml.into_bytes(), false),
        (
            "ppt/slides/_rels/slide1.xml.rels",
            rels(&[(
                "rId1",
                "officeDocument/2006/relationships/notesSlide",
                "../notesSlides/notesSlide1.xml",
            )]),
            false,
        ),
        (
            "ppt/notesSlides/notesSlide1.xml",
            notes_xml.into_bytes(),
            false,
        ),
    ])
}

const ODF_NS: &str = "xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" \
     xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\" \
     xmlns:table=\"urn:oasis:names:tc:opendocument:xmlns:table:1.0\" \
     xmlns:style=\"urn:oasis:names:tc:opendocument:xmlns:style:1.0\" \
     xmlns:xlink=\"http://www.w3.org/1999/xlink\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\" \
     office:version=\"1.3\"";

/// An ODF package with `content.xml` and, if given, `styles.xml` (where page headers and
/// footers live).
fn odf(mimetype: &str, content: &str, styles: Option<&str>) -> Vec<u8> {
    let content = format!(
        "{XML_DECL}\n<office:document-content {ODF_NS}>{content}</office:document-content>"
    );
    let styles = styles.map(|styles| {
        format!("{XML_DECL}\n<office:document-styles {ODF_NS}>{styles}</office:document-styles>")
    });
    odf_package(mimetype, content, styles)
}

const ODT: &str = "application/vnd.oasis.opendocument.text";
const ODS: &str = "application/vnd.oasis.opendocument.spreadsheet";

fn odt_body(inner: &str) -> String {
    format!("<office:body><office:text>{inner}</office:text></office:body>")
}

/// Writer's tracked changes: a deleted paragraph holding `deleted`, kept in the file.
fn odt_deletion(deleted: &str) -> String {
    format!(
        "<text:tracked-changes><text:changed-region text:id=\"ct1\"><text:deletion>\
         <office:change-info><dc:creator>Ana</dc:creator><dc:date>2024-11-05T09:30:00\
         </dc:date></office:change-info><text:p>Account {}</text:p></text:deletion>\
         </text:changed-region></text:tracked-changes><text:p>Payment details\
         <text:change text:change-id=\"ct1\"/> follow by post.</text:p>",
        esc(deleted)
    )
}

fn odt_header(header: &str, body: &str) -> Vec<u8> {
    let styles = format!(
        "<office:master-styles><style:master-page style:name=\"Standard\" \
         style:page-layout-name=\"pm1\"><style:header><text:p text:style-name=\"Header\">{}\
         </text:p></style:header></style:master-page></office:master-styles>",
        esc(header)
    );
    let content = odt_body(&format!("<text:p>{}</text:p>", esc(body)));
    odf(ODT, &content, Some(&styles))
}

fn ods_tables(tables: &[&[&[&str]]]) -> Vec<u8> {
    let mut inner = String::new();
    for (i, rows) in tables.iter().enumerate() {
        inner += &format!("<table:table table:name=\"Sheet{}\">", i + 1);
        for row in rows.iter() {
            inner += "<table:table-row>";
            for cell in row.iter() {
                inner += &format!(
                    "<table:table-cell office:value-type=\"string\"><text:p>{}</text:p>\
                     </table:table-cell>",
                    esc(cell)
                );
            }
            inner += "</table:table-row>";
        }
        inner += "</table:table>";
    }
    let content =
        format!("<office:body><office:spreadsheet>{inner}</office:spreadsheet></office:body>");
    odf(ODS, &content, None)
}

/// A PDF line whose words are set apart by positioning alone, with no space characters,
/// as many PDF producers write them: a `TJ` array with a word-sized gap between words.
fn pdf_spaced_by_kerning(lines: &[&str]) -> Vec<u8> {
    let shown: Vec<String> = lines
        .iter()
        .map(|l| {
            let words: Vec<String> = l.split(' ').map(pdf::literal).collect();
            format!("[{}] TJ", words.join(" -300 "))
        })
        .collect();
    pdf::from_operators(&shown)
}

const PDF_SENSITIVE: &[&str] = &["Quarterly report", "Client data export for the auditors"];
const PDF_GENERAL: &[&str] = &["Quarterly report", "Export for the auditors"];

/// The lines a person sees in each placement PDF, for checking them with pdftotext.
pub fn pdf_lines() -> [(&'static str, &'static [&'static str]); 2] {
    [
        ("sensitive-words-by-position.pdf", PDF_SENSITIVE),
        ("general-words-by-position.pdf", PDF_GENERAL),
    ]
}

/// Every placement sample, written into `dir`.
pub fn generate(dir: &Path) -> Vec<Sample> {
    let visa = grouped(&card("4485", 16, 31, true), &[4, 4, 4, 4], " ");
    let ch = iban("CH", "00762011623852957", true, true);
    let samples: Vec<(&str, Class, &str, Vec<u8>)> =
        vec![
        (
            "sensitive-header.docx",
            Class::Sensitive,
            "docx",
            docx_with_header(
                "CONFIDENTIAL",
                &[
                    "Quarterly figures are in the attached tables.",
                    "See page 2.",
                ],
            ),
        ),
        (
            "general-header.docx",
            Class::General,
            "docx",
            docx_with_header(
                "Draft 3",
                &["Quarterly figures are in the attached tables."],
            ),
        ),
        (
            "personal-second-sheet.xlsx",
            Class::Personal,
            "xlsx",
            xlsx_sheets(&[
                &[
                    &["Month", "Revenue"],
                    &["January", "1200"],
                    &["February", "1350"],
                ],
                &[&["Holder", "Card"], &["P. Lindqvist", &visa]],
            ], None),
        ),
        (
            "personal-inline-strings.xlsx",
            Class::Personal,
            "xlsx",
            xlsx_sheets(&[&[
                &["Name", "Mail"],
                &["Ana Souza", "ana.souza@example.com.br"],
            ]], None),
        ),
        (
            "general-inline-strings.xlsx",
            Class::General,
            "xlsx",
            xlsx_sheets(&[&[&["Item", "Count"], &["Chairs", "12"], &["Desks", "4"]]], None),
        ),
        (
            "sensitive-speaker-notes.pptx",
            Class::Sensitive,
            "pptx",
            pptx_with_notes(
                &["Demo of the new portal"],
                &["The demo account password is on the whiteboard."],
            ),
        ),
        (
            "sensitive-heading-and-list.odt",
            Class::Sensitive,
            "odt",
            odf(
                ODT,
                &odt_body(
                    "<text:h text:outline-level=\"1\">Strictly Confidential</text:h>\
                     <text:list><text:list-item><text:p>Budget</text:p></text:list-item>\
                     <text:list-item><text:p>Hiring plan</text:p></text:list-item></text:list>",
                ),
                None,
            ),
        ),
        (
            "personal-hyperlink.odt",
            Class::Personal,
            "odt",
            odf(
                ODT,
                &odt_body(
                    "<text:p>Questions to <text:a xlink:type=\"simple\" \
                     xlink:href=\"mailto:k.tanaka@example.jp\">k.tanaka@example.jp</text:a>.\
                     </text:p>",
                ),
                None,
            ),
        ),
        (
            "sensitive-comment.docx",
            Class::Sensitive,
            "docx",
            docx_with_comment("The password for the booking site is in the safe."),
        ),
        (
            "general-comment.docx",
            Class::General,
            "docx",
            docx_with_comment("Check the venue's cancellation terms first."),
        ),
        (
            "sensitive-footnote.docx",
            Class::Sensitive,
            "docx",
            docx_with_footnote("Source: the client data export of March."),
        ),
        (
            "personal-tracked-deletion.docx",
            Class::Personal,
            "docx",
            docx_with_deletion(&visa),
        ),
        (
            "personal-note-on-a-cell.xlsx",
            Class::Personal,
            "xlsx",
            xlsx_sheets(
                &[&[&["Supplier", "Contact"], &["Nordlicht GmbH", "see note"]]],
                Some(("B2", "Call Mrs Berg on +49 40 3070 8112.")),
            ),
        ),
        (
            "sensitive-footnote.odt",
            Class::Sensitive,
            "odt",
            odf(
                ODT,
                &odt_body(
                    "<text:p>The numbers come from the usual source<text:note text:id=\"ftn1\" \
                     text:note-class=\"footnote\"><text:note-citation>1</text:note-citation>\
                     <text:note-body><text:p>Source: the client data export of March.\
                     </text:p></text:note-body></text:note>.</text:p>",
                ),
                None,
            ),
        ),
        (
            "personal-tracked-deletion.odt",
            Class::Personal,
            "odt",
            odf(ODT, &odt_body(&odt_deletion(&ch)), None),
        ),
        (
            "sensitive-page-header.odt",
            Class::Sensitive,
            "odt",
            odt_header(
                "CONFIDENTIAL",
                "Quarterly figures are in the attached tables.",
            ),
        ),
        (
            "general-page-header.odt",
            Class::General,
            "odt",
            odt_header("Draft 3", "Quarterly figures are in the attached tables."),
        ),
        (
            "personal-second-table.ods",
            Class::Personal,
            "ods",
            ods_tables(&[
                &[&["Month", "Revenue"], &["January", "1200"]],
                &[&["Supplier", "IBAN"], &["Bergmann AG", &ch]],
            ]),
        ),
        (
            "sensitive-words-by-position.pdf",
            Class::Sensitive,
            "pdf",
            pdf_spaced_by_kerning(PDF_SENSITIVE),
        ),
        (
            "general-words-by-position.pdf",
            Class::General,
            "pdf",
            pdf_spaced_by_kerning(PDF_GENERAL),
        ),
    ];
    samples
        .into_iter()
        .map(|(name, expected, reported, bytes)| {
            let path = dir.join(placement_name(name));
            std::fs::write(&path, bytes).unwrap();
            Sample {
                path,
                expected,
                format: None,
                reported,
            }
        })
        .collect()
}

/// The file name of a placement sample.
pub fn placement_name(name: &str) -> String {
    format!("placement-{name}")
}
