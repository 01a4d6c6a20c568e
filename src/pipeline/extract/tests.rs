use std::io::{Read, Write};
use std::time::Duration;

use super::text::{decoder, sniff, Encoding};
use super::*;

const CARD: &str = "4111 1111 1111 1111";

fn classifier() -> Classifier {
    crate::daemon::classifier(&crate::config::ClassifyConfig::default()).unwrap()
}

fn limits(max_bytes: u64) -> Limits {
    Limits {
        max_bytes,
        max_time: Duration::from_secs(60),
        partial_class: Class::Personal,
    }
}

fn examine_bytes(bytes: &[u8], limits: &Limits) -> Examined {
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(bytes).unwrap();
    examine(&classifier(), &file, limits).unwrap()
}

fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    for (name, data) in members {
        zip.start_file(*name, options).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
    out.into_inner()
}

/// Hands out one byte per read, so every decoder meets every possible split.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match (self.0.split_first(), buf.is_empty()) {
            (Some((b, rest)), false) => {
                buf[0] = *b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

fn decode_all(bytes: &[u8]) -> (String, Encoding) {
    let (mut reader, encoding) = decoder(Trickle(bytes)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 3];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    (String::from_utf8(out).unwrap(), encoding)
}

fn utf16(text: &str, big_endian: bool, bom: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let units = bom.then_some(0xfeff).into_iter().chain(text.encode_utf16());
    for u in units {
        out.extend_from_slice(&if big_endian {
            u.to_be_bytes()
        } else {
            u.to_le_bytes()
        });
    }
    out
}

#[test]
fn encodings_are_told_and_decoded_to_utf8() {
    let text = "Zoë paid 4111 1111 1111 1111 — 𝄞 done";
    for (bytes, want) in [
        (text.as_bytes().to_vec(), Encoding::Utf8),
        (
            [b"\xef\xbb\xbf".as_slice(), text.as_bytes()].concat(),
            Encoding::Utf8,
        ),
        (utf16(text, false, true), Encoding::Utf16Le),
        (utf16(text, true, true), Encoding::Utf16Be),
        (utf16(text, false, false), Encoding::Utf16Le),
        (utf16(text, true, false), Encoding::Utf16Be),
    ] {
        let (decoded, encoding) = decode_all(&bytes);
        assert_eq!(encoding, want, "{bytes:?}");
        assert_eq!(decoded, text, "{want:?}");
    }
    let latin1 = b"Soci\xe9t\xe9 g\xe9n\xe9rale, stra\xdfe";
    assert_eq!(
        decode_all(latin1),
        ("Société générale, straße".to_string(), Encoding::Latin1)
    );
    assert_eq!(sniff(b"\x7fELF\x02\x01\x01\0\0\0").0, Encoding::Binary);
    assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").0, Encoding::Binary);
}

#[test]
fn a_card_in_utf16_or_gzip_text_is_personal() {
    for bytes in [
        utf16(&format!("card {CARD} here"), false, true),
        utf16(&format!("card {CARD} here"), true, false),
        {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(format!("lorem\n{}card {CARD}\n", "ipsum ".repeat(50_000)).as_bytes())
                .unwrap();
            gz.finish().unwrap()
        },
    ] {
        let e = examine_bytes(&bytes, &limits(1 << 30));
        assert_eq!(e.classification.class, Class::Personal, "{:?}", e.format);
        assert_eq!(e.classification.detectors.get("payment-card"), Some(&1));
        assert_eq!(e.partial, None);
    }
}

fn strip_xml(xml: &str) -> String {
    let stop = AtomicBool::new(false);
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut sink = Sink {
        tx,
        buf: Vec::new(),
        stop: &stop,
        partial: None,
    };
    xml::strip(&mut Trickle(xml.as_bytes()), &mut sink).unwrap();
    sink.flush().unwrap();
    drop(sink);
    String::from_utf8(rx.iter().flatten().collect()).unwrap()
}

#[test]
fn office_xml_keeps_words_and_separates_paragraphs() {
    let doc = r#"<?xml version="1.0"?><w:document><w:body><w:p><w:r><w:rPr a="x>y"/><w:t>Card 4111 </w:t></w:r><w:r><w:t xml:space="preserve">1111 11</w:t></w:r><w:r><w:t>11 1111</w:t></w:r></w:p><w:p><w:r><w:t>Tom &amp; Jerry &lt;ok&gt; &#233;t&#xE9;</w:t></w:r></w:p><!-- a > comment --></w:body></w:document>"#;
    let text = strip_xml(doc);
    assert!(text.contains("Card 4111 1111 1111 1111"), "{text:?}");
    assert!(text.contains("Tom & Jerry <ok> été"), "{text:?}");
    assert!(
        !text.contains("x>y") && !text.contains("comment"),
        "{text:?}"
    );
    // Two paragraphs never run into one word.
    let two = strip_xml("<w:p><w:t>password</w:t></w:p><w:p><w:t>less</w:t></w:p>");
    assert!(!two.contains("passwordless"), "{two:?}");
    // Spreadsheet cells are apart too.
    let cells = strip_xml("<row><c><v>4111</v></c><c><v>1111</v></c></row>");
    assert!(!cells.contains("41111111"), "{cells:?}");
}

#[test]
fn office_documents_are_read_by_their_text_parts() {
    let docx = zip_of(&[
        ("[Content_Types].xml", b"<Types/>"),
        (
            "word/document.xml",
            format!(
                "<w:p><w:r><w:t>Card {}</w:t></w:r><w:r><w:t>{}</w:t></w:r></w:p>",
                &CARD[..10],
                &CARD[10..]
            )
            .as_bytes(),
        ),
        ("word/styles.xml", b"<w:styles>1234-5678</w:styles>"),
    ]);
    let xlsx = zip_of(&[
        ("xl/workbook.xml", b"<workbook/>"),
        (
            "xl/sharedStrings.xml",
            format!("<sst><si><t>{CARD}</t></si></sst>").as_bytes(),
        ),
        ("xl/worksheets/sheet1.xml", b"<sheetData/>"),
    ]);
    let odt = zip_of(&[
        ("mimetype", b"application/vnd.oasis.opendocument.text"),
        (
            "content.xml",
            format!("<text:p>DOB: 1980-02-29</text:p><text:p>{CARD}</text:p>").as_bytes(),
        ),
    ]);
    for (bytes, format) in [
        (docx, Format::Docx),
        (xlsx, Format::Xlsx),
        (odt, Format::Odt),
    ] {
        let e = examine_bytes(&bytes, &limits(1 << 30));
        assert_eq!(e.format, format);
        assert_eq!(e.classification.class, Class::Personal, "{format:?}");
        assert_eq!(
            e.classification.detectors.get("payment-card"),
            Some(&1),
            "{format:?}"
        );
        assert_eq!(e.partial, None);
    }
    // Text only in a part that holds no document text does not count.
    let styles_only = zip_of(&[
        ("word/document.xml", b"<w:p><w:t>hello</w:t></w:p>"),
        (
            "word/styles.xml",
            format!("<w:style>{CARD}</w:style>").as_bytes(),
        ),
    ]);
    assert_eq!(
        examine_bytes(&styles_only, &limits(1 << 30))
            .classification
            .class,
        Class::General
    );
}

#[test]
fn a_zip_bomb_stops_at_the_byte_cap_and_is_not_general() {
    let zeros = vec![b'a'; 64 << 20];
    let bomb = zip_of(&[("word/document.xml", &zeros), ("word/footer1.xml", &zeros)]);
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    let e = examine_bytes(&bomb, &limits(8 << 20));
    let reason = e.partial.expect("the cap is reported");
    assert!(reason.contains("classify.max-bytes"), "{reason}");
    assert_eq!(e.classification.class, Class::Personal);
    // With room for all of it, the same file is fully read and general.
    let e = examine_bytes(&bomb, &limits(1 << 30));
    assert_eq!((e.partial, e.classification.class), (None, Class::General));
}

#[test]
fn the_time_cap_marks_a_file_partial() {
    let text = "lorem ipsum ".repeat(100_000);
    let e = examine_bytes(
        text.as_bytes(),
        &Limits {
            max_time: Duration::from_nanos(1),
            partial_class: Class::Sensitive,
            ..limits(1 << 30)
        },
    );
    assert!(e.partial.unwrap().contains("classify.max-time"));
    assert_eq!(e.classification.class, Class::Sensitive);
}

#[test]
fn every_encoding_is_marked_partial_at_any_byte_cap_never_failed() {
    let text = "Caf\u{e9} cr\u{e8}me, na\u{ef}ve fa\u{e7}ade, \u{fc}ber Stra\u{df}e. ".repeat(3);
    let latin1: Vec<u8> = text.chars().map(|c| c as u8).collect();
    let samples = [
        ("utf-8", text.as_bytes().to_vec()),
        ("latin-1", latin1),
        ("utf-16le", utf16(&text, false, true)),
        ("utf-16be", utf16(&text, true, true)),
    ];
    // The cap counts the text as UTF-8, whatever the file's encoding.
    let decoded = text.len() as u64;
    for (what, bytes) in samples {
        for cap in 1..=decoded + 2 {
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(&bytes).unwrap();
            let e = examine(&classifier(), &file, &limits(cap))
                .unwrap_or_else(|err| panic!("{what}, cap {cap}: {err}"));
            assert_eq!(e.partial.is_some(), cap < decoded, "{what}, cap {cap}");
            if e.partial.is_some() {
                assert_eq!(e.classification.class, Class::Personal, "{what}, cap {cap}");
            }
        }
    }
}

#[test]
fn text_exactly_at_the_byte_cap_is_complete() {
    let text = b"nothing to see";
    let e = examine_bytes(text, &limits(text.len() as u64));
    assert_eq!(e.partial, None);
    let e = examine_bytes(text, &limits(text.len() as u64 - 1));
    assert!(e.partial.is_some());
}

#[test]
fn archives_inside_archives_and_encrypted_or_broken_parts_are_partial() {
    let inner = zip_of(&[("a.txt", b"hello")]);
    let outer = zip_of(&[("inner.zip", &inner), ("note.txt", b"nothing here")]);
    let e = examine_bytes(&outer, &limits(1 << 30));
    assert_eq!(e.format, Format::Zip);
    assert!(e.partial.unwrap().contains("inner.zip"));
    assert_eq!(e.classification.class, Class::Personal);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(format!("card {CARD}\n").as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let e = examine_bytes(&zip_of(&[("x.gz", &gz)]), &limits(1 << 30));
    assert_eq!((e.partial, e.classification.class), (None, Class::Personal));

    // A gzip cut short is read as far as it goes.
    let mut long = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    long.write_all(format!("card {CARD}\n{}", "x".repeat(1 << 20)).as_bytes())
        .unwrap();
    let long = long.finish().unwrap();
    let e = examine_bytes(&long[..long.len() - 100], &limits(1 << 30));
    assert_eq!(e.classification.class, Class::Personal);
    assert!(e.partial.unwrap().contains("corrupt"), "truncated gzip");

    // Not a zip after all: its bytes are still classified, and the file is marked.
    let e = examine_bytes(
        format!("PK\x03\x04 junk {CARD}").as_bytes(),
        &limits(1 << 30),
    );
    assert_eq!(e.format, Format::Zip);
    assert!(e.partial.unwrap().contains("not a readable zip"));
    assert_eq!(e.classification.detectors.get("payment-card"), Some(&1));
}

/// A minimal PDF with the given objects (numbered from 1, the first the catalog) and a
/// correct cross-reference table.
fn pdf_of(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

fn stream(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut s = format!("<< /Length {} {dict} >>\nstream\r\n", data.len()).into_bytes();
    s.extend_from_slice(data);
    s.extend_from_slice(b"\nendstream");
    s
}

fn pdf_with_content(content: &[u8], flate: bool) -> Vec<u8> {
    let (dict, data) = if flate {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(content).unwrap();
        ("/Filter /FlateDecode", z.finish().unwrap())
    } else {
        ("", content.to_vec())
    };
    pdf_of(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>".to_vec(),
        stream(dict, &data),
        stream(
            "/Subtype /Image /Filter /DCTDecode",
            b"\xff\xd8 4111 1111 1111 1111",
        ),
    ])
}

#[test]
fn pdf_text_is_read_from_plain_and_compressed_content() {
    let shows: [&[u8]; 4] = [
        b"BT /F1 12 Tf 72 700 Td (Card: 4111 1111 1111 1111) Tj ET",
        b"BT [(Card: 4111 11) 20 (11 1111 1111)] TJ ET",
        b"BT <436172643a20343131312031313131203131313120313131> Tj (1) Tj ET",
        b"BT (Card: \\0641\\0611 1111 1111 1111 \\(ok\\) \\\n) Tj ET",
    ];
    for content in shows {
        for flate in [false, true] {
            let e = examine_bytes(&pdf_with_content(content, flate), &limits(1 << 30));
            let what = String::from_utf8_lossy(content);
            assert_eq!(e.format, Format::Pdf);
            assert_eq!(e.partial, None, "{what}");
            assert_eq!(
                e.classification.detectors.get("payment-card"),
                Some(&1),
                "{what} flate={flate}"
            );
        }
    }
    // A wide gap in a TJ array is a space between words.
    let e = examine_bytes(
        &pdf_with_content(b"BT [(pass) 10 (word) -800 (reset)] TJ ET", true),
        &limits(1 << 30),
    );
    assert_eq!(e.classification.class, Class::Sensitive);
    // A card number only in an image's bytes is not text.
    let e = examine_bytes(
        &pdf_with_content(b"BT (hello) Tj ET", true),
        &limits(1 << 30),
    );
    assert_eq!(e.classification.class, Class::General);
}

#[test]
fn unreadable_pdf_text_is_partial() {
    let encrypted = pdf_of(&[
        b"<< /Type /Catalog >>".to_vec(),
        b"<< /Filter /Standard /V 2 /R 3 >>".to_vec(),
        b"<< /Encrypt 2 0 R >>".to_vec(),
    ]);
    let e = examine_bytes(&encrypted, &limits(1 << 30));
    assert!(e.partial.unwrap().contains("encrypted"));
    assert_eq!(e.classification.class, Class::Personal);

    let rle = pdf_of(&[
        b"<< /Type /Catalog >>".to_vec(),
        stream("/Filter /RunLengthDecode", b"\x02abc\x80"),
    ]);
    assert!(examine_bytes(&rle, &limits(1 << 30))
        .partial
        .unwrap()
        .contains("RunLengthDecode"));

    let corrupt = pdf_of(&[
        b"<< /Type /Catalog >>".to_vec(),
        stream("/Filter /FlateDecode", b"\x78\x9cnot deflate at all"),
        b"<< /Author (Card 4111 1111 1111 1111) >>".to_vec(),
    ]);
    let e = examine_bytes(&corrupt, &limits(1 << 30));
    assert!(e.partial.unwrap().contains("corrupt"));
    // The dictionaries after the broken stream are still read.
    assert_eq!(e.classification.detectors.get("payment-card"), Some(&1));
}

#[test]
fn a_pdf_inflating_without_end_stops_at_the_cap() {
    let content = format!("BT ({}) Tj ET", "lorem ipsum ".repeat(4 << 20));
    let pdf = pdf_with_content(content.as_bytes(), true);
    assert!(pdf.len() < 1 << 20);
    let e = examine_bytes(&pdf, &limits(4 << 20));
    assert!(e.partial.unwrap().contains("classify.max-bytes"));
}

/// ASCII85 as PDF writers produce it, ending with `~>`.
fn ascii85(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in data.chunks(4) {
        let mut word = [0u8; 4];
        word[..chunk.len()].copy_from_slice(chunk);
        let mut value = u32::from_be_bytes(word);
        if value == 0 && chunk.len() == 4 {
            out.push(b'z');
            continue;
        }
        let mut digits = [0u8; 5];
        for d in digits.iter_mut().rev() {
            *d = (value % 85) as u8 + b'!';
            value /= 85;
        }
        out.extend_from_slice(&digits[..chunk.len() + 1]);
        if out.len() % 76 < 5 {
            out.push(b'\n');
        }
    }
    out.extend_from_slice(b"~>");
    out
}

#[test]
fn pdf_filter_chains_are_undone_in_order() {
    let content = b"BT (Card: 4111 1111 1111 1111) Tj ET\n\0\0\0\0 padding";
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(content).unwrap();
    let deflated = z.finish().unwrap();
    let hex: String = content.iter().map(|b| format!("{b:02x} ")).collect();
    for (dict, data) in [
        ("/Filter [/ASCII85Decode /FlateDecode]", ascii85(&deflated)),
        ("/Filter [ /A85 /Fl ]", ascii85(&deflated)),
        ("/Filter /ASCII85Decode", ascii85(content)),
        ("/Filter/ASCIIHexDecode", format!("{hex}>").into_bytes()),
    ] {
        let pdf = pdf_of(&[
            b"<< /Type /Catalog >>".to_vec(),
            stream(dict, &data),
            b"<< /Title (after the stream) >>".to_vec(),
        ]);
        let e = examine_bytes(&pdf, &limits(1 << 30));
        assert_eq!(e.partial, None, "{dict}");
        assert_eq!(
            e.classification.detectors.get("payment-card"),
            Some(&1),
            "{dict}"
        );
    }
    let lzw = pdf_of(&[
        b"<< /Type /Catalog >>".to_vec(),
        stream("/Filter [/LZWDecode]", b"\x80\x0b\x60\x50"),
    ]);
    let reason = examine_bytes(&lzw, &limits(1 << 30)).partial.unwrap();
    assert!(reason.contains("LZWDecode"), "{reason}");
}

/// A CMap program mapping each code (of `width` bytes, from 1) to one character of
/// `alphabet`, as font-subsetting writers number glyphs.
fn to_unicode(alphabet: &str, width: usize) -> Vec<u8> {
    let mut entries = String::new();
    for (i, c) in alphabet.chars().enumerate() {
        entries.push_str(&format!(
            "<{:0w$x}> <{:04x}>\n",
            i + 1,
            c as u32,
            w = width * 2
        ));
    }
    let digits = format!("<{:0w$x}> <{:0w$x}>", 0x60, 0x69, w = width * 2);
    format!(
        "/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n\
         1 begincodespacerange <{lo}> <{hi}> endcodespacerange\n\
         {n} beginbfchar\n{entries}endbfchar\n\
         1 beginbfrange {digits} <0030> endbfrange\n\
         endcmap CMapName currentdict /CMap defineresource pop end end",
        lo = "00".repeat(width),
        hi = "ff".repeat(width),
        n = alphabet.chars().count(),
    )
    .into_bytes()
}

/// Codes for `text` under [`to_unicode`]`(alphabet)`, as a hex string; digits use the range
/// from 0x60.
fn encode(alphabet: &str, text: &str, width: usize) -> String {
    let codes: String = text
        .chars()
        .map(|c| {
            let code = match c.to_digit(10) {
                Some(d) => 0x60 + d as usize,
                None => alphabet.chars().position(|a| a == c).unwrap() + 1,
            };
            format!("{code:0w$x}", w = width * 2)
        })
        .collect();
    format!("<{codes}>")
}

#[test]
fn pdf_fonts_with_their_own_codes_are_read_through_their_maps() {
    let alphabet = "Card :pswo";
    for width in [1, 2] {
        let content = format!(
            "BT /F1 12 Tf {} Tj ET BT /F2 9 Tf (Card 4111) Tj ET",
            encode(alphabet, "Card 4111 1111 1111 1111 password", width)
        );
        let font = if width == 2 {
            "<< /Type /Font /Subtype /Type0 /Encoding /Identity-H /ToUnicode 6 0 R >>"
        } else {
            "<< /Type /Font /Subtype /TrueType /ToUnicode 6 0 R >>"
        };
        let pdf = pdf_of(&[
            b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
            b"<< /Type /Page /Resources << /Font << /F1 5 0 R /F2 7 0 R >> >> /Contents 4 0 R >>"
                .to_vec(),
            b"<< >>".to_vec(),
            stream("", content.as_bytes()),
            font.as_bytes().to_vec(),
            stream("", &to_unicode(alphabet, width)),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
        ]);
        let e = examine_bytes(&pdf, &limits(1 << 30));
        assert_eq!(e.partial, None, "width {width}");
        assert_eq!(e.classification.class, Class::Sensitive, "width {width}");
    }
    // Without the map the codes are no text, and an Identity font says so.
    let content = format!("BT /F1 12 Tf {} Tj ET", encode(alphabet, "password", 2));
    let pdf = pdf_of(&[
        b"<< /Type /Catalog >>".to_vec(),
        b"<< /Font << /F1 3 0 R >> >>".to_vec(),
        b"<< /Type /Font /Subtype /Type0 /Encoding /Identity-H >>".to_vec(),
        stream("", content.as_bytes()),
    ]);
    let e = examine_bytes(&pdf, &limits(1 << 30));
    assert!(e.partial.unwrap().contains("Identity"));
    assert_eq!(e.classification.class, Class::Personal);
}

#[test]
fn pdf_fonts_inside_object_streams_are_found() {
    let alphabet = "Card ";
    let content = format!(
        "BT /F7 12 Tf {} Tj ET",
        encode(alphabet, "Card 4111 1111 1111 1111", 2)
    );
    // Objects 5 (resources) and 6 (the font) packed in object stream 8.
    let packed_objects = [
        "<< /Font << /F7 6 0 R >> >>",
        "<< /Type /Font /Subtype /Type0 /Encoding /Identity-H /ToUnicode 7 0 R >>",
    ];
    let mut header = String::new();
    let mut body = String::new();
    for (i, o) in packed_objects.iter().enumerate() {
        header.push_str(&format!("{} {} ", 5 + i, body.len()));
        body.push_str(o);
        body.push('\n');
    }
    let packed = format!("{header}{body}");
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(packed.as_bytes()).unwrap();
    let packed = z.finish().unwrap();
    let pdf = pdf_of(&[
        b"<< /Type /Catalog >>".to_vec(),
        b"<< /Type /Page /Resources 5 0 R /Contents 4 0 R >>".to_vec(),
        b"<< >>".to_vec(),
        stream("", content.as_bytes()),
        b"null".to_vec(),
        b"null".to_vec(),
        stream("", &to_unicode(alphabet, 2)),
        stream(
            &format!(
                "/Type /ObjStm /N 2 /First {} /Filter /FlateDecode",
                header.len()
            ),
            &packed,
        ),
    ]);
    let e = examine_bytes(&pdf, &limits(1 << 30));
    assert_eq!(e.partial, None);
    assert_eq!(e.classification.detectors.get("payment-card"), Some(&1));
}

#[test]
fn every_part_of_an_office_package_is_read_but_its_layout() {
    let card = format!("John,{CARD}");
    // A package that claims to be a document cannot hide files beside its document part.
    let dummy = zip_of(&[
        ("word/document.xml", b"<x/>"),
        ("customers.csv", card.as_bytes()),
    ]);
    let odt = zip_of(&[
        ("mimetype", b"application/vnd.oasis.opendocument.text"),
        ("content.xml", b"<office:text/>"),
        ("Pictures/notes.txt", card.as_bytes()),
    ]);
    let custom = zip_of(&[
        ("word/document.xml", b"<w:p><w:t>hello</w:t></w:p>"),
        (
            "docProps/custom.xml",
            format!("<Properties><property><vt:lpwstr>{CARD}</vt:lpwstr></property></Properties>")
                .as_bytes(),
        ),
    ]);
    for (bytes, format) in [
        (dummy, Format::Docx),
        (odt, Format::Odt),
        (custom, Format::Docx),
    ] {
        let e = examine_bytes(&bytes, &limits(1 << 30));
        assert_eq!(e.format, format);
        assert_eq!(
            e.classification.detectors.get("payment-card"),
            Some(&1),
            "{format:?}"
        );
    }
    // Layout parts are not read: a number in a style or theme is no card.
    let layout = zip_of(&[
        ("word/document.xml", b"<w:p><w:t>hello</w:t></w:p>"),
        (
            "word/styles.xml",
            format!("<w:style>{CARD}</w:style>").as_bytes(),
        ),
        (
            "word/theme/theme1.xml",
            format!("<a:theme>{CARD}</a:theme>").as_bytes(),
        ),
        (
            "word/_rels/document.xml.rels",
            format!("<r>{CARD}</r>").as_bytes(),
        ),
    ]);
    let e = examine_bytes(&layout, &limits(1 << 30));
    assert_eq!((e.classification.class, e.partial), (Class::General, None));
    // An embedded workbook is an archive inside the archive.
    let embedded = zip_of(&[
        ("word/document.xml", b"<w:p><w:t>hello</w:t></w:p>"),
        (
            "word/embeddings/Sheet1.xlsx",
            &zip_of(&[("xl/sharedStrings.xml", b"<t/>")]),
        ),
    ]);
    let e = examine_bytes(&embedded, &limits(1 << 30));
    assert!(e.partial.unwrap().contains("Sheet1.xlsx"));
}

#[test]
fn neighbouring_metadata_fields_do_not_run_together() {
    let core = format!(
        "<cp:coreProperties><dc:title>Card {CARD}</dc:title><cp:revision>1</cp:revision>\
         <dc:creator>confidential</dc:creator><cp:lastModifiedBy>python-docx</cp:lastModifiedBy>\
         </cp:coreProperties>"
    );
    let text = strip_xml(&core);
    assert!(text.contains(&format!("Card {CARD}\n")), "{text:?}");
    assert!(text.contains("confidential\n"), "{text:?}");
    // Runs still join into words, whatever properties they carry.
    let runs = strip_xml(
        "<w:p><w:r><w:rPr><w:b/></w:rPr><w:t>pass</w:t></w:r><w:r><w:t>word</w:t></w:r></w:p>",
    );
    assert!(runs.contains("password"), "{runs:?}");
}

#[test]
fn compressed_data_that_is_not_opened_is_partial() {
    let gz = |data: &[u8]| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    };
    let card = format!("card {CARD}\n");
    // gzip inside gzip is opened.
    let e = examine_bytes(&gz(&gz(card.as_bytes())), &limits(1 << 30));
    assert_eq!((e.format, e.partial), (Format::Gzip, None));
    assert_eq!(e.classification.detectors.get("payment-card"), Some(&1));
    // A zip inside gzip, or xz and bzip2 anywhere, is not, and says so.
    for (bytes, kind) in [
        (gz(&zip_of(&[("card.txt", card.as_bytes())])), "archive"),
        (b"\xfd7zXZ\0\0\x04\xe6\xd6\xb4\x46".to_vec(), "xz"),
        (b"BZh91AY&SY\x00\x00".to_vec(), "bzip2"),
        (zip_of(&[("a.txt.bz2", b"BZh91AY&SY")]), "bzip2"),
    ] {
        let e = examine_bytes(&bytes, &limits(1 << 30));
        let reason = e.partial.unwrap_or_default();
        assert!(reason.contains(kind), "{kind}: {reason:?}");
        assert_ne!(e.classification.class, Class::General);
    }
}

#[test]
fn a_stray_byte_order_mark_does_not_hide_plain_text() {
    let e = examine_bytes(
        b"\xff\xfeCard 4111 1111 1111 1111 and this is confidential\n",
        &limits(1 << 30),
    );
    assert_eq!(e.classification.class, Class::Sensitive);
    assert_eq!(sniff(b"\xff\xfe\0\0A\0\0\0").0, Encoding::Binary);
}

#[test]
fn an_encrypted_pdf_says_it_is_encrypted() {
    let pdf = pdf_of(&[
        b"<< /Type /Catalog >>".to_vec(),
        stream("/Filter [/ASCII85Decode /FlateDecode]", b"\x01\x02 garbage"),
        b"<< /Filter /Standard /V 2 /R 3 >>".to_vec(),
        b"<< /Encrypt 3 0 R >>".to_vec(),
    ]);
    let reason = examine_bytes(&pdf, &limits(1 << 30)).partial.unwrap();
    assert!(reason.contains("encrypted"), "{reason}");
}

#[test]
fn pdf_text_placed_in_pieces_is_joined_by_where_it_is_placed() {
    let glyphs: String = "4111111111111111"
        .chars()
        .map(|d| format!("({d}) Tj 6.672 0 Td "))
        .collect();
    for (content, want) in [
        // Two pieces of one line, the second placed where the first ends; each block
        // closed with T* as some writers do.
        (
            "BT /F1 12 Tf 1 0 0 1 72 700 Tm (Card: 4111 1111) Tj T* ET \
             BT /F1 12 Tf 1 0 0 1 161.4 700 Tm ( 1111 1111) Tj T* ET"
                .to_string(),
            Class::Personal,
        ),
        // One glyph at a time.
        (
            format!("BT /F1 12 Tf 72 700 Td {glyphs}ET"),
            Class::Personal,
        ),
        // Pieces of one word, and two words apart on a line or on two lines.
        (
            "BT /F1 12 Tf 72 700 Td (pass) Tj 24 0 Td (word) Tj ET".to_string(),
            Class::Sensitive,
        ),
        (
            "BT /F1 12 Tf 72 700 Td (pass) Tj 40 0 Td (word) Tj ET".to_string(),
            Class::General,
        ),
        (
            "BT /F1 12 Tf 72 700 Td (pass) Tj 0 -14 Td (word) Tj ET".to_string(),
            Class::General,
        ),
    ] {
        let e = examine_bytes(
            &pdf_with_content(content.as_bytes(), true),
            &limits(1 << 30),
        );
        assert_eq!(e.classification.class, want, "{content}");
    }
}
