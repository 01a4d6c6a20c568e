//! Stage 2, first half: the text a file holds, as UTF-8, for the classifier.
//!
//! Plain text is decoded from UTF-8, UTF-16 or Latin-1; office documents (docx, xlsx, pptx,
//! odt, ods, odp) have their XML parts stripped of markup; PDF content streams are inflated
//! and their shown strings kept; gzip is inflated. Everything is streamed through small
//! buffers, and two caps bound the work: bytes of text examined and time spent. A file that
//! hits a cap, or holds something that could not be read (an encrypted part, an archive
//! inside an archive), is marked partially classified with the reason; it is never quietly
//! called general.

mod pdf;
mod text;
mod xml;

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use serde::Serialize;

use super::classify::{Class, Classification, Classifier};

pub use text::{sniff, Encoding};

/// How much of a file classification may examine.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of extracted text (after decompression and decoding).
    pub max_bytes: u64,
    pub max_time: Duration,
    /// The class a partially classified file gets when nothing in the part read decided.
    pub partial_class: Class,
}

impl From<&crate::config::ClassifyConfig> for Limits {
    fn from(c: &crate::config::ClassifyConfig) -> Self {
        Self {
            max_bytes: c.max_bytes.0,
            max_time: c.max_time,
            partial_class: c.partial_class,
        }
    }
}

/// What a file was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Text,
    Utf16,
    Latin1,
    Binary,
    Gzip,
    Zip,
    Docx,
    Xlsx,
    Pptx,
    Odt,
    Ods,
    Odp,
    Pdf,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Utf16 => "utf16",
            Format::Latin1 => "latin1",
            Format::Binary => "binary",
            Format::Gzip => "gzip",
            Format::Zip => "zip",
            Format::Docx => "docx",
            Format::Xlsx => "xlsx",
            Format::Pptx => "pptx",
            Format::Odt => "odt",
            Format::Ods => "ods",
            Format::Odp => "odp",
            Format::Pdf => "pdf",
        }
    }
}

impl From<Encoding> for Format {
    fn from(e: Encoding) -> Self {
        match e {
            Encoding::Utf8 => Format::Text,
            Encoding::Utf16Le | Encoding::Utf16Be => Format::Utf16,
            Encoding::Latin1 => Format::Latin1,
            Encoding::Binary => Format::Binary,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Examined {
    pub classification: Classification,
    pub format: Format,
    /// Why only part of the file could be classified.
    pub partial: Option<String>,
}

/// Classifies the text `file` holds, from its start.
pub fn examine(classifier: &Classifier, file: &File, limits: &Limits) -> io::Result<Examined> {
    let started = Instant::now();
    let mut reader = file;
    reader.seek(SeekFrom::Start(0))?;
    let mut head = [0u8; 8];
    let n = read_full(&mut reader, &mut head)?;
    reader.seek(SeekFrom::Start(0))?;
    let head = &head[..n];

    let budget = Budget::new(limits, started);
    let (classification, format, partial) = if head.starts_with(b"PK\x03\x04") {
        from_zip(classifier, file, budget)?
    } else if head.starts_with(b"%PDF-") {
        let (c, partial) = produced(classifier, budget, |sink| pdf::extract_file(file, sink))?;
        (c, Format::Pdf, partial)
    } else if head.starts_with(b"\x1f\x8b") {
        // What gzip holds may be text, a PDF, or another archive.
        let (c, partial) = produced(classifier, budget, |sink| {
            text::nested(&mut BufReader::new(file), "the gzip data", sink)
        })?;
        (c, Format::Gzip, partial)
    } else if let Some(kind) = text::compressed(head) {
        let reason = format!("{kind}-compressed data is not examined");
        raw_with_reason(classifier, file, budget, Format::Binary, reason)?
    } else {
        from_text(classifier, file, budget)?
    };

    let mut classification = classification;
    if partial.is_some() && classification.class == Class::General {
        classification.class = limits.partial_class;
    }
    Ok(Examined {
        classification,
        format,
        partial,
    })
}

/// Bytes of text still allowed, the deadline, and the first reason the reading stopped short.
struct Budget {
    left: u64,
    max_bytes: u64,
    deadline: Instant,
    max_time: Duration,
    partial: Option<String>,
}

impl Budget {
    fn new(limits: &Limits, started: Instant) -> Self {
        Self {
            left: limits.max_bytes,
            max_bytes: limits.max_bytes,
            deadline: started + limits.max_time,
            max_time: limits.max_time,
            partial: None,
        }
    }

    fn mark(&mut self, reason: String) {
        self.partial.get_or_insert(reason);
    }

    fn out_of_time(&mut self) -> bool {
        if Instant::now() < self.deadline {
            return false;
        }
        let limit = humantime::format_duration(self.max_time);
        self.mark(format!("stopped at classify.max-time ({limit})"));
        true
    }

    fn bytes_hit(&mut self) {
        self.mark(format!(
            "stopped after classify.max-bytes ({} bytes of text)",
            self.max_bytes
        ));
    }
}

/// Feeds the classifier from `inner` until the text ends or the budget runs out.
struct Capped<'a, R> {
    inner: R,
    budget: &'a mut Budget,
}

impl<R: Read> Read for Capped<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.budget.out_of_time() {
            return Ok(0);
        }
        if self.budget.left == 0 {
            // Exactly at the cap: only more text makes it partial.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? > 0 {
                self.budget.bytes_hit();
            }
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.budget.left.try_into().unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.budget.left -= n as u64;
        Ok(n)
    }
}

/// Plain text in whatever encoding it is in.
fn from_text<R: Read>(
    classifier: &Classifier,
    reader: R,
    mut budget: Budget,
) -> io::Result<(Classification, Format, Option<String>)> {
    let (decoded, encoding) = text::decoder(reader)?;
    let classification = classifier.classify(Capped {
        inner: decoded,
        budget: &mut budget,
    })?;
    Ok((classification, encoding.into(), budget.partial))
}

/// A decompressing reader whose corrupt or truncated input ends the text instead of failing
/// the file; the reason is kept so the file is marked partial.
struct Tolerant<R> {
    inner: R,
    error: Option<String>,
}

impl<R> Tolerant<R> {
    fn new(inner: R) -> Self {
        Self { inner, error: None }
    }
}

impl<R: Read> Read for Tolerant<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.error.is_some() {
            return Ok(0);
        }
        loop {
            match self.inner.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.error = Some(e.to_string());
                    return Ok(0);
                }
            }
        }
    }
}

/// Where an extractor running on its own thread puts text: chunks of at most [`SINK_CHUNK`]
/// bytes through a short channel, so at most a few chunks are ever held.
pub struct Sink<'a> {
    tx: Sender<Vec<u8>>,
    buf: Vec<u8>,
    stop: &'a AtomicBool,
    /// Why part of the input could not be read, as the extractor found it.
    partial: Option<String>,
}

/// The classifier stopped reading; the extractor should return.
#[derive(Debug)]
pub struct Stopped;

const SINK_CHUNK: usize = 64 << 10;

impl Sink<'_> {
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), Stopped> {
        // Extractors that read long stretches without text still come here often: the
        // check is what makes them stop at the time cap.
        if self.stop.load(Ordering::Relaxed) {
            return Err(Stopped);
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            let take = rest.len().min(SINK_CHUNK - self.buf.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() == SINK_CHUNK {
                self.flush()?;
            }
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), Stopped> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(Stopped);
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(SINK_CHUNK));
        self.tx.send(chunk).map_err(|_| Stopped)
    }

    /// Whether the classifier has stopped reading (checked by extractors that may read long
    /// stretches without finding text).
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Records the reason that explains all the others (an encrypted PDF's streams all
    /// look corrupt), replacing any given before.
    pub fn partial_instead(&mut self, reason: String) {
        self.partial = Some(reason);
    }

    /// Records why part of the input was not read; the first reason wins.
    pub fn partial(&mut self, reason: String) {
        self.partial.get_or_insert(reason);
    }
}

/// Text read from the other end of a [`Sink`], waiting no longer than the deadline.
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
    deadline: Instant,
    timed_out: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            let wait = self.deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(wait) {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(0),
                Err(RecvTimeoutError::Timeout) => {
                    self.timed_out = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Runs `extract` on a thread of its own, classifying the text it writes as it comes.
fn produced<F>(
    classifier: &Classifier,
    mut budget: Budget,
    extract: F,
) -> io::Result<(Classification, Option<String>)>
where
    F: FnOnce(&mut Sink) -> Result<(), Stopped> + Send,
{
    let stop = AtomicBool::new(false);
    let (tx, rx) = crossbeam_channel::bounded(2);
    std::thread::scope(|scope| {
        let producer = scope.spawn(|| {
            let mut sink = Sink {
                tx,
                buf: Vec::with_capacity(SINK_CHUNK),
                stop: &stop,
                partial: None,
            };
            let finished = extract(&mut sink).and_then(|()| sink.flush()).is_ok();
            finished.then_some(sink.partial).flatten()
        });
        let mut reader = ChannelReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
            deadline: budget.deadline,
            timed_out: false,
        };
        let result = classifier.classify(Capped {
            inner: &mut reader,
            budget: &mut budget,
        });
        // Stop the extractor: its next check or send fails once the receiver is gone.
        stop.store(true, Ordering::Relaxed);
        if reader.timed_out {
            budget.out_of_time();
        }
        drop(reader);
        let extractor_partial = producer
            .join()
            .map_err(|_| io::Error::other("text extraction panicked"))?;
        let classification = result?;
        Ok((classification, budget.partial.or(extractor_partial)))
    })
}

/// Largest central directory read; more is an archive with too many members to list.
const MAX_CENTRAL_DIRECTORY: u64 = 4 << 20;

/// A zip container: an office document, an OpenDocument file or a plain archive.
fn from_zip(
    classifier: &Classifier,
    file: &File,
    budget: Budget,
) -> io::Result<(Classification, Format, Option<String>)> {
    let unreadable = |e: &dyn std::fmt::Display| format!("not a readable zip archive: {e}");
    let opened = zip_directory_size(file)
        .map_err(|e| unreadable(&e))
        .and_then(|size| {
            if size <= MAX_CENTRAL_DIRECTORY {
                Ok(())
            } else {
                Err(format!(
                    "the archive's member list is {size} bytes, over {MAX_CENTRAL_DIRECTORY}"
                ))
            }
        })
        .and_then(|()| zip::ZipArchive::new(BufReader::new(file)).map_err(|e| unreadable(&e)));
    let mut archive = match opened {
        Ok(archive) => archive,
        Err(reason) => return raw_with_reason(classifier, file, budget, Format::Zip, reason),
    };
    let names: Vec<String> = archive.file_names().map(str::to_string).collect();
    let format = zip_format(&mut archive, &names);
    let (classification, partial) = produced(classifier, budget, |sink| {
        for (index, name) in names.iter().enumerate() {
            let Some(kind) = member_kind(format, name) else {
                continue;
            };
            let member = match archive.by_index(index) {
                Ok(m) => m,
                Err(e) => {
                    sink.partial(format!("member {name:?} could not be read: {e}"));
                    continue;
                }
            };
            if member.is_dir() {
                continue;
            }
            let mut member = Tolerant::new(member);
            match kind {
                Member::Markup => xml::strip(&mut member, sink)?,
                Member::Any => text::nested(&mut member, name, sink)?,
            }
            if let Some(e) = member.error.take() {
                sink.partial(format!("member {name:?} is corrupt: {e}"));
            }
            sink.write(b"\n")?;
        }
        Ok(())
    })?;
    Ok((classification, format, partial))
}

/// The whole file as raw bytes, marked partial for `reason`.
fn raw_with_reason(
    classifier: &Classifier,
    file: &File,
    mut budget: Budget,
    format: Format,
    reason: String,
) -> io::Result<(Classification, Format, Option<String>)> {
    budget.mark(reason);
    let mut reader = file;
    reader.seek(SeekFrom::Start(0))?;
    let classification = classifier.classify(Capped {
        inner: reader,
        budget: &mut budget,
    })?;
    Ok((classification, format, budget.partial))
}

/// The size of a zip's central directory, from its end record (zip64 included), read
/// before the archive library lists every member into memory.
fn zip_directory_size(file: &File) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let tail_len = len.min(22 + 65535 + 20);
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact_at(&mut tail, len - tail_len)?;
    let at = tail
        .windows(4)
        .rposition(|w| w == b"PK\x05\x06")
        .ok_or_else(|| io::Error::other("no end of central directory record"))?;
    let end = &tail[at..];
    if end.len() < 22 {
        return Err(io::Error::other(
            "truncated end of central directory record",
        ));
    }
    let size = u32::from_le_bytes(end[12..16].try_into().unwrap());
    if size != u32::MAX {
        return Ok(size.into());
    }
    // zip64: the locator sits just before the end record and points at the zip64 record.
    let locator = at
        .checked_sub(20)
        .map(|l| &tail[l..at])
        .filter(|l| l.starts_with(b"PK\x06\x07"))
        .ok_or_else(|| io::Error::other("zip64 locator missing"))?;
    let offset = u64::from_le_bytes(locator[8..16].try_into().unwrap());
    let mut record = [0u8; 56];
    file.read_exact_at(&mut record, offset)?;
    if !record.starts_with(b"PK\x06\x06") {
        return Err(io::Error::other("zip64 end record missing"));
    }
    Ok(u64::from_le_bytes(record[40..48].try_into().unwrap()))
}

fn zip_format<R: Read + Seek>(archive: &mut zip::ZipArchive<R>, names: &[String]) -> Format {
    let has = |n: &str| names.iter().any(|m| m == n);
    let under = |p: &str| names.iter().any(|m| m.starts_with(p));
    if has("word/document.xml") {
        return Format::Docx;
    }
    if has("xl/workbook.xml") || under("xl/worksheets/") {
        return Format::Xlsx;
    }
    if has("ppt/presentation.xml") || under("ppt/slides/") {
        return Format::Pptx;
    }
    if has("mimetype") && has("content.xml") {
        let mut kind = String::new();
        if let Ok(m) = archive.by_name("mimetype") {
            let _ = m.take(100).read_to_string(&mut kind);
        }
        match kind.trim() {
            "application/vnd.oasis.opendocument.text" => return Format::Odt,
            "application/vnd.oasis.opendocument.spreadsheet" => return Format::Ods,
            "application/vnd.oasis.opendocument.presentation" => return Format::Odp,
            _ => {}
        }
    }
    Format::Zip
}

enum Member {
    /// XML whose text is what matters.
    Markup,
    /// Anything: decoded as text if it is text.
    Any,
}

/// Parts of office packages that hold layout, not text.
fn layout_part(name: &str) -> bool {
    const FILES: &[&str] = &[
        "[Content_Types].xml",
        "mimetype",
        "docProps/app.xml",
        "word/styles.xml",
        "word/stylesWithEffects.xml",
        "word/settings.xml",
        "word/webSettings.xml",
        "word/fontTable.xml",
        "word/numbering.xml",
        "xl/styles.xml",
        "xl/calcChain.xml",
        "ppt/presProps.xml",
        "ppt/viewProps.xml",
        "ppt/tableStyles.xml",
        "settings.xml",
        "manifest.rdf",
    ];
    const DIRS: &[&str] = &[
        "_rels/",
        "theme/",
        "fonts/",
        "media/",
        "printerSettings/",
        "slideLayouts/",
        "slideMasters/",
        "META-INF/",
        "Thumbnails/",
        "Configurations2/",
    ];
    FILES.contains(&name)
        || name.ends_with(".rels")
        || DIRS
            .iter()
            .any(|d| name.starts_with(d) || name.contains(&format!("/{d}")))
}

/// How a container's member is read. An office package's parts are all read but for its
/// layout parts: text hides in comments, notes, headers, custom properties, embedded files
/// and in any file someone added, and a part not read would be a part not classified.
fn member_kind(format: Format, name: &str) -> Option<Member> {
    let office = matches!(
        format,
        Format::Docx | Format::Xlsx | Format::Pptx | Format::Odt | Format::Ods | Format::Odp
    );
    if !office {
        return Some(Member::Any);
    }
    if layout_part(name) {
        return None;
    }
    Some(if name.ends_with(".xml") {
        Member::Markup
    } else {
        Member::Any
    })
}

/// Reads until `buf` is full or the input ends.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests;
