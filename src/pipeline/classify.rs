//! Stage 2: sort a file into sensitive, personal or general, reading it once in chunks.
//!
//! Sensitive means a configured keyword appears as a whole word (ASCII case ignored).
//! Personal means the file holds enough identifiable data that passes a validity check: an
//! e-mail address, a payment card number (issuer range and length, Luhn), an IBAN (country
//! length, mod 97), a dashed US Social Security number in an issued range, a phone number,
//! a real date after a birth-date label, or a personal keyword. `[[classify.pattern]]`
//! adds detectors of one's own: a regular expression and a check on its matches.
//!
//! Each read is looked at once for all detectors: one vector pass (AVX-512BW or AVX2 where
//! the CPU has them, see `marks`) marks the few bytes a match can be anchored on (`@`, `+`
//! before a digit, the start of a run of digits) and where a keyword may start; only there
//! are the detectors' shapes and checks tried, and the keywords compared in full. A date of
//! birth is a date with a label behind it. Without those instructions, or with more keywords
//! than the pass probes, a portable pass marks the anchors and the keywords are found by a
//! multi-pattern search (Teddy, else Aho-Corasick) in an ASCII-lowercased copy of the read.
//! Reads overlap by a window so that a match split across two reads is found, and only
//! matches anchored before the kept tail are counted, so it is found once.

use std::collections::BTreeMap;
use std::io::{self, Read};

use aho_corasick::{packed, AhoCorasick, Span};
use regex::bytes::{Regex, RegexBuilder};
use serde::Serialize;

use super::dedup::CHUNK;
use crate::config::{ClassifyConfig, PatternConfig};
use marks::{Level, Marker, Marks, BLOCK};

mod marks;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Sensitive,
    Personal,
    General,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Sensitive => "sensitive",
            Class::Personal => "personal",
            Class::General => "general",
        }
    }
}

/// The class and the detectors that fired with how many times (never the matched values).
/// A sensitive keyword or pattern stops the reading at once, so it counts 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub class: Class,
    pub detectors: BTreeMap<String, u64>,
}

/// The built-in personal-data detectors, by their names in the audit record.
const DETECTORS: [&str; 6] = [
    "email",
    "payment-card",
    "iban",
    "us-ssn",
    "phone",
    "date-of-birth",
];
const EMAIL: usize = 0;
const CARD: usize = 1;
const IBAN: usize = 2;
const SSN: usize = 3;
const PHONE: usize = 4;
const BIRTH: usize = 5;

/// Longest span a personal-data match can take from its anchor: a 254-byte e-mail address.
const PERSONAL_WINDOW: usize = 256;
/// How far before its anchor a detector looks: a birth-date label ends up to 19 bytes
/// before its date, is up to 19 bytes long and must not follow a word character.
const BEHIND: usize = 64;
/// Bytes of a window marked at a time (a multiple of the block).
const PIECE: usize = 64 * BLOCK;
/// Longest domain an e-mail address can have.
const MAX_DOMAIN: usize = 253;
/// Names the audit record gives keywords; custom patterns cannot take them, nor the
/// detectors' names.
const SENSITIVE_KEYWORD: &str = "sensitive-keyword";
const PERSONAL_KEYWORD: &str = "personal-keyword";
/// Longest `max-length` a custom pattern may have: each read keeps that much for the next.
pub const MAX_PATTERN_LENGTH: usize = 1 << 16;

pub struct Classifier {
    keywords: Option<Keywords>,
    /// `[[classify.pattern]]`, in the order configured.
    patterns: Vec<Pattern>,
    /// Bytes of each read kept for the next one, so that a match anchored before them is
    /// whole in the window that counts it.
    overlap: usize,
    /// Personal-data matches (all detectors together) that make a file personal.
    threshold: u64,
    /// The first look at each window: where detectors and keywords may be.
    marker: Marker,
}

/// The keywords, ASCII-lowercased, and a searcher for where one of them starts.
struct Keywords {
    words: Vec<Vec<u8>>,
    /// Words from this index on are personal keywords, the ones before it sensitive.
    personal_from: usize,
    longest: usize,
    finder: Finder,
}

enum Finder {
    /// Teddy, a SIMD search for up to a few dozen patterns (x86-64 and aarch64). It reports
    /// one pattern per position; the words starting there are then compared one by one.
    Packed(packed::Searcher),
    /// An Aho-Corasick automaton otherwise, reporting every word that matches.
    Automaton(AhoCorasick),
}

impl Keywords {
    fn new(sensitive: &[String], personal: &[String]) -> Option<Self> {
        let add = |words: &mut Vec<Vec<u8>>, list: &[String]| {
            for word in list {
                let word = word.trim().to_ascii_lowercase().into_bytes();
                if !word.is_empty() && !words.contains(&word) {
                    words.push(word);
                }
            }
        };
        let mut words = Vec::new();
        add(&mut words, sensitive);
        let personal_from = words.len();
        add(&mut words, personal);
        let longest = words.iter().map(Vec::len).max()?;
        let finder = match packed::Config::new().builder().extend(&words).build() {
            Some(searcher) => Finder::Packed(searcher),
            None => Finder::Automaton(AhoCorasick::new(&words).ok()?),
        };
        Some(Self {
            words,
            personal_from,
            longest,
            finder,
        })
    }

    /// Looks for keywords starting in `text[from..limit]`, in `lower`, the lowercased
    /// `text[from..]`. None if a sensitive one is there, else how many personal ones.
    fn scan(
        &self,
        text: &[u8],
        lower: &[u8],
        from: usize,
        limit: usize,
        done: bool,
    ) -> Option<u64> {
        let mut personal = 0;
        // Whether word `id` standing at `at` in `lower` makes the file sensitive.
        let mut judge = |id: usize, at: usize| {
            from + at < limit && self.judge(id, text, from + at, done, &mut personal)
        };
        match &self.finder {
            Finder::Packed(searcher) => {
                let mut at = 0;
                while let Some(m) = searcher.find_in(lower, Span::from(at..lower.len())) {
                    let start = m.start();
                    if from + start >= limit {
                        break;
                    }
                    for (id, word) in self.words.iter().enumerate() {
                        if lower[start..].starts_with(word) && judge(id, start) {
                            return None;
                        }
                    }
                    at = start + 1;
                }
            }
            Finder::Automaton(automaton) => {
                for m in automaton.find_overlapping_iter(lower) {
                    if judge(m.pattern().as_usize(), m.start()) {
                        return None;
                    }
                }
            }
        }
        Some(personal)
    }
}

impl Keywords {
    /// Whether word `id`, found at `text[start..]`, makes the file sensitive. A personal
    /// one adds to `personal` instead. Either counts only as a whole word.
    fn judge(&self, id: usize, text: &[u8], start: usize, done: bool, personal: &mut u64) -> bool {
        if !whole_word(text, start, start + self.words[id].len(), done) {
            return false;
        }
        if id < self.personal_from {
            return true;
        }
        *personal += 1;
        false
    }

    /// The words standing at `text[start..]` (ASCII case ignored), judged as above.
    fn judge_at(&self, text: &[u8], start: usize, done: bool, personal: &mut u64) -> bool {
        self.words.iter().enumerate().any(|(id, word)| {
            text.get(start..start + word.len())
                .is_some_and(|here| here.eq_ignore_ascii_case(word))
                && self.judge(id, text, start, done, personal)
        })
    }
}

/// Whether `text[start..end]` is a whole word: no word character touches it on either side.
/// A word at the very end of the window is judged once the next byte is read (`done` says
/// none will be).
fn whole_word(text: &[u8], start: usize, end: usize, done: bool) -> bool {
    let closes = match text.get(end) {
        Some(_) => !word_char_at(text, end),
        None => done,
    };
    !word_char_before(text, start) && closes
}

/// Letters, digits and `_` make up words, ASCII or not: a keyword must not touch one on
/// either side, so "confidentialité" does not hold "confidential".
fn is_word_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// The character UTF-8 encodes at the start of `bytes`, if they start with a valid one.
fn char_at(bytes: &[u8]) -> Option<char> {
    let len = match bytes.first()? {
        0..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    std::str::from_utf8(bytes.get(..len)?).ok()?.chars().next()
}

/// Whether a word character starts at `text[i]`. Bytes that are not UTF-8 (binary data,
/// a Latin-1 letter) are not.
fn word_char_at(text: &[u8], i: usize) -> bool {
    match text[i] {
        b if b.is_ascii() => is_word_byte(b),
        _ => char_at(&text[i..]).is_some_and(is_word_char),
    }
}

/// Whether a word character ends right before `text[i]`.
fn word_char_before(text: &[u8], i: usize) -> bool {
    let Some(last) = i.checked_sub(1) else {
        return false;
    };
    if text[last].is_ascii() {
        return is_word_byte(text[last]);
    }
    // The character's first byte is the nearest one that is not a continuation byte.
    (i.saturating_sub(4)..i)
        .rev()
        .find(|&j| text[j] & 0xc0 != 0x80)
        .and_then(|start| char_at(&text[start..i]).filter(|c| start + c.len_utf8() == i))
        .is_some_and(is_word_char)
}

/// At least `len` bytes of `pieces` picked at random: text for the tests to classify.
#[cfg(test)]
fn text_from_pieces(rng: &mut rand::rngs::StdRng, pieces: &[&[u8]], len: usize) -> Vec<u8> {
    use rand::Rng;
    let mut data = Vec::new();
    while data.len() < len {
        data.extend_from_slice(pieces[rng.gen_range(0..pieces.len())]);
    }
    data
}

/// The instructions the scan's first look at each read runs on this CPU: `avx512bw`,
/// `avx2` or `portable`.
pub fn instructions() -> &'static str {
    marks::Level::best().name()
}

impl Classifier {
    /// The classifier `[classify]` describes: `sensitive-keywords` make a file sensitive;
    /// each of the `personal-keywords` counts as one personal-data match (both whole words,
    /// ASCII case ignored); each `[[classify.pattern]]` is a detector of its own. Fails on a
    /// pattern that does not compile or is misnamed, naming its config key.
    pub fn new(cfg: &ClassifyConfig) -> Result<Self, PatternError> {
        Self::on(cfg, Level::best())
    }

    /// As [`Classifier::new`], its first look at each read running on `level`.
    fn on(cfg: &ClassifyConfig, level: Level) -> Result<Self, PatternError> {
        let keywords = Keywords::new(&cfg.sensitive_keywords, &cfg.personal_keywords);
        let patterns = Pattern::compile_all(&cfg.pattern)?;
        let longest = keywords.as_ref().map_or(0, |k| k.longest);
        let longest_pattern = patterns.iter().map(|p| p.max_length).max().unwrap_or(0);
        Ok(Self {
            patterns,
            // A keyword or pattern starting in the kept tail ends at least a character (up
            // to 4 bytes of UTF-8) before the window does, so the byte after it is seen.
            overlap: (longest.max(longest_pattern) + 4).max(PERSONAL_WINDOW),
            threshold: cfg.personal_threshold.max(1),
            marker: Marker::at(keywords.as_ref().map_or(&[], |k| &k.words), level),
            keywords,
        })
    }

    /// Reads `reader` once, `CHUNK` bytes at a time. Each window is the previous one's tail
    /// plus a new read: `BEHIND` bytes already counted, for the detectors that look back,
    /// then the bytes to scan. Matches anchored in the window's last `overlap` bytes are
    /// left for the next window (except at the end), so a match split across reads is
    /// found once.
    pub fn classify<R: Read>(&self, mut reader: R) -> io::Result<Classification> {
        let mut scan = Scan {
            pattern_counts: vec![0; self.patterns.len()],
            pattern_next: vec![0; self.patterns.len()],
            ..Scan::default()
        };
        let mut window = vec![0u8; BEHIND + self.overlap + CHUNK];
        let (mut filled, mut start) = (0, 0);
        loop {
            let n = match reader.read(&mut window[filled..filled + CHUNK]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            filled += n;
            let done = n == 0;
            let limit = if done {
                filled
            } else {
                filled.saturating_sub(self.overlap).max(start)
            };
            if limit > start || done {
                if let Some(name) = scan.window(self, &window[..filled], start, limit, done) {
                    return Ok(Classification {
                        class: Class::Sensitive,
                        detectors: BTreeMap::from([(name.to_string(), 1)]),
                    });
                }
            }
            if done {
                break;
            }
            let keep = limit.saturating_sub(BEHIND);
            window.copy_within(keep..filled, 0);
            scan.offset += keep as u64;
            filled -= keep;
            start = limit - keep;
        }
        let detectors: BTreeMap<String, u64> = DETECTORS
            .into_iter()
            .zip(scan.counts)
            .chain([(PERSONAL_KEYWORD, scan.personal_keywords)])
            .chain(
                self.patterns
                    .iter()
                    .map(|p| p.name.as_str())
                    .zip(scan.pattern_counts),
            )
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| (name.to_string(), n))
            .collect();
        let class = if detectors.values().sum::<u64>() >= self.threshold {
            Class::Personal
        } else {
            Class::General
        };
        Ok(Classification { class, detectors })
    }
}

/// A config key and what is wrong with it, such as
/// `classify.pattern[0].regex: regex parse error: ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct PatternError {
    pub key: String,
    pub message: String,
}

/// A custom detector, `[[classify.pattern]]`.
struct Pattern {
    /// The detector's name in the audit record.
    name: String,
    regex: Regex,
    validator: Validator,
    /// A match makes the file sensitive rather than counting as personal data.
    sensitive: bool,
    /// Longer matches are not counted; each read keeps this much for the next.
    max_length: usize,
}

impl Pattern {
    fn compile_all(configs: &[PatternConfig]) -> Result<Vec<Self>, PatternError> {
        let mut patterns: Vec<Self> = Vec::with_capacity(configs.len());
        for (i, cfg) in configs.iter().enumerate() {
            let error = |field: &str, message: String| PatternError {
                key: format!("classify.pattern[{i}].{field}"),
                message,
            };
            let name = cfg.name.as_str();
            if name.trim().is_empty() || name.trim() != name {
                return Err(error(
                    "name",
                    format!("{name:?} must be a non-empty name without spaces around it"),
                ));
            }
            if DETECTORS.contains(&name) || [SENSITIVE_KEYWORD, PERSONAL_KEYWORD].contains(&name) {
                return Err(error(
                    "name",
                    format!("{name:?} is the name of a built-in detector"),
                ));
            }
            if let Some(j) = patterns.iter().position(|p| p.name == name) {
                return Err(error(
                    "name",
                    format!("{name:?} is the name of classify.pattern[{j}] too"),
                ));
            }
            let regex = RegexBuilder::new(&cfg.regex)
                .build()
                .map_err(|e| error("regex", e.to_string()))?;
            if regex.is_match(b"") {
                return Err(error(
                    "regex",
                    format!("{:?} matches the empty text", cfg.regex),
                ));
            }
            let validator = Validator::named(&cfg.validator).ok_or_else(|| {
                let names: Vec<&str> = Validator::ALL.iter().map(|(n, _)| *n).collect();
                error(
                    "validator",
                    format!(
                        "unknown validator {:?}; expected one of: {}",
                        cfg.validator,
                        names.join(", ")
                    ),
                )
            })?;
            let sensitive = match cfg.class.as_str() {
                "personal" => false,
                "sensitive" => true,
                other => {
                    return Err(error(
                        "class",
                        format!("unknown class {other:?}; expected personal or sensitive"),
                    ))
                }
            };
            if !(1..=MAX_PATTERN_LENGTH).contains(&cfg.max_length) {
                return Err(error(
                    "max-length",
                    format!("must be between 1 and {MAX_PATTERN_LENGTH}"),
                ));
            }
            patterns.push(Self {
                name: name.to_string(),
                regex,
                validator,
                sensitive,
                max_length: cfg.max_length,
            });
        }
        Ok(patterns)
    }
}

/// A check a custom pattern's match must pass, on its digits or its letters and digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Validator {
    None,
    /// The digits pass the Luhn check (at least two of them).
    Luhn,
    /// The digits and letters (A = 10 ... Z = 35, ASCII case ignored) read as one number
    /// leave 1 modulo 97 (ISO 7064 MOD 97-10).
    Mod97,
    /// The letters and digits are an IBAN: country length, check digits, mod 97.
    Iban,
    /// The digits are a card number: an issuer's prefix and length, and Luhn.
    PaymentCard,
    /// Nine digits in a range the SSA issues.
    UsSsn,
}

impl Validator {
    const ALL: [(&'static str, Validator); 6] = [
        ("none", Validator::None),
        ("luhn", Validator::Luhn),
        ("mod97", Validator::Mod97),
        ("iban", Validator::Iban),
        ("payment-card", Validator::PaymentCard),
        ("us-ssn", Validator::UsSsn),
    ];

    fn named(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    fn accepts(self, text: &[u8]) -> bool {
        let digits: Vec<u8> = text
            .iter()
            .filter(|b| b.is_ascii_digit())
            .map(|b| b - b'0')
            .collect();
        let alphanumerics = || {
            text.iter()
                .filter(|b| b.is_ascii_alphanumeric())
                .map(u8::to_ascii_uppercase)
        };
        match self {
            Validator::None => true,
            Validator::Luhn => digits.len() >= 2 && luhn_valid(&digits),
            Validator::PaymentCard => card_issuer_valid(&digits) && luhn_valid(&digits),
            Validator::UsSsn => {
                let num = |r: std::ops::Range<usize>| {
                    digits[r].iter().fold(0, |acc, &d| acc * 10 + u32::from(d))
                };
                digits.len() == 9 && ssn_issued(num(0..3), num(3..5), num(5..9))
            }
            Validator::Mod97 => {
                let mut count = 0;
                let rest = alphanumerics().fold(0u32, |acc, c| {
                    count += 1;
                    match c {
                        b'0'..=b'9' => (acc * 10 + u32::from(c - b'0')) % 97,
                        _ => (acc * 100 + u32::from(c - b'A') + 10) % 97,
                    }
                });
                count >= 2 && rest == 1
            }
            Validator::Iban => {
                let chars: Vec<u8> = alphanumerics().collect();
                chars.len() >= 5
                    && iban_length(&chars[..2]) == Some(chars.len())
                    && chars[..2].iter().all(u8::is_ascii_uppercase)
                    && chars[2..4].iter().all(u8::is_ascii_digit)
                    && iban_mod97(&chars) == 1
            }
        }
    }
}

/// What one classification has counted so far.
#[derive(Default)]
struct Scan {
    counts: [u64; DETECTORS.len()],
    personal_keywords: u64,
    /// File offset of the window's first byte.
    offset: u64,
    /// File offset where the last phone number counted ends: a number inside it (the
    /// North American one in `+1 212-555-0123`) is not counted again.
    phone_end: u64,
    /// The window from `start` on, ASCII-lowercased, for the keyword search.
    lower: Vec<u8>,
    /// The marks of the piece of a window being scanned.
    marks: Vec<Marks>,
    /// Matches of each custom pattern.
    pattern_counts: Vec<u64>,
    /// File offset where each custom pattern's next match may start: after the last one.
    pattern_next: Vec<u64>,
}

impl Scan {
    /// Counts the matches anchored in `text[from..limit]`. If a sensitive keyword or
    /// pattern is there, returns the name the audit record gives it.
    fn window<'c>(
        &mut self,
        c: &'c Classifier,
        text: &[u8],
        from: usize,
        limit: usize,
        done: bool,
    ) -> Option<&'c str> {
        if let Some(keywords) = c.keywords.as_ref().filter(|_| !c.marker.finds_keywords()) {
            let end = text.len().min(limit + keywords.longest);
            self.lower.clear();
            self.lower
                .extend(text[from..end].iter().map(u8::to_ascii_lowercase));
            match keywords.scan(text, &self.lower, from, limit, done) {
                None => return Some(SENSITIVE_KEYWORD),
                Some(n) => self.personal_keywords += n,
            }
        }
        for (k, pattern) in c.patterns.iter().enumerate() {
            let next = usize::try_from(self.pattern_next[k].saturating_sub(self.offset));
            let mut at = from.max(next.unwrap_or(usize::MAX));
            // Non-overlapping matches, each counted in the window where it starts.
            while at < limit {
                let Some(m) = pattern.regex.find_at(text, at) else {
                    break;
                };
                if m.start() >= limit {
                    break;
                }
                if m.is_empty() {
                    at = m.start() + 1;
                    continue;
                }
                at = m.end();
                self.pattern_next[k] = self.offset + at as u64;
                if m.len() <= pattern.max_length && pattern.validator.accepts(m.as_bytes()) {
                    if pattern.sensitive {
                        return Some(&pattern.name);
                    }
                    self.pattern_counts[k] += 1;
                }
            }
        }
        // A piece at a time, so that its marks stay in the cache.
        let mut marks = std::mem::take(&mut self.marks);
        let mut piece = from;
        while piece < limit {
            let end = limit.min(piece + PIECE);
            marks.clear();
            c.marker.mark(text, piece, end, &mut marks);
            for (k, m) in marks.iter().enumerate() {
                let base = piece + k * BLOCK;
                if let Some(keywords) = &c.keywords {
                    let mut starts = m.starts;
                    while starts != 0 {
                        let i = base + starts.trailing_zeros() as usize;
                        starts &= starts - 1;
                        if keywords.judge_at(text, i, done, &mut self.personal_keywords) {
                            self.marks = marks;
                            return Some(SENSITIVE_KEYWORD);
                        }
                    }
                }
                self.anchors(text, base, m.anchors);
            }
            piece = end;
        }
        self.marks = marks;
        None
    }

    /// Tries the detectors at each byte of `text[base..]` that `mask` marks.
    fn anchors(&mut self, text: &[u8], base: usize, mut mask: u64) {
        while mask != 0 {
            let i = base + mask.trailing_zeros() as usize;
            mask &= mask - 1;
            self.anchor(text, i);
        }
    }

    /// Tries the detectors anchored at `text[i]`.
    fn anchor(&mut self, text: &[u8], i: usize) {
        match text[i] {
            b'@' => self.counts[EMAIL] += u64::from(email_at(text, i)),
            b'+' => {
                if phone_alone(byte_before(text, i, 1)) {
                    self.phone(i, || international_phone(&text[i + 1..]).map(|n| n + 1));
                }
            }
            _ => self.number(text, i),
        }
    }

    /// Counts a phone number at `text[i]`, of the length `len` finds, unless one counted
    /// already covers it.
    fn phone(&mut self, i: usize, len: impl FnOnce() -> Option<usize>) {
        let at = self.offset + i as u64;
        if at < self.phone_end {
            return;
        }
        if let Some(n) = len() {
            self.counts[PHONE] += 1;
            self.phone_end = at + n as u64;
        }
    }

    /// The detectors anchored on a run of digits starting at `text[i]`. Most runs are
    /// too short, or followed by the wrong byte, for any of them: one table look-up tells.
    #[inline(always)]
    fn number(&mut self, text: &[u8], i: usize) {
        let (run, next) = digit_run(text, i);
        let p = byte_before(text, i, 1);
        let shaped = FOLLOWERS[usize::from(next)] >> run.min(5) & 1 != 0
            || (run == 4 && year_after_words(text, i, p))
            || national_start(text[i], run, next);
        // An IBAN's check digits follow its country code.
        let iban = p.is_some_and(|b| b.is_ascii_uppercase());
        if shaped || iban {
            self.shaped_number(text, i, run, next, p);
        }
    }

    fn shaped_number(&mut self, text: &[u8], i: usize, run: usize, next: u8, p: Option<u8>) {
        let pp = byte_before(text, i, 2);
        // A card number is looked at from its first group of four or more digits, not
        // from each group.
        let grouped = matches!(p, Some(b' ' | b'-')) && pp.is_some_and(|b| b.is_ascii_digit());
        if (run >= 5 || (run == 4 && matches!(next, b' ' | b'-')))
            && !grouped
            && (b'2'..=b'6').contains(&text[i])
            && card_at(&text[i..])
        {
            self.counts[CARD] += 1;
        }
        if p.is_some_and(|b| b.is_ascii_uppercase())
            && pp.is_some_and(|b| b.is_ascii_uppercase())
            && byte_before(text, i, 3).is_none_or(|b| !b.is_ascii_alphanumeric())
            && iban_at(&text[i - 2..])
        {
            self.counts[IBAN] += 1;
        }
        // Not a later group of a longer run of numbers.
        let follows_number =
            matches!(p, Some(b' ' | b'.' | b'-')) && pp.is_some_and(|b| b.is_ascii_digit());
        if national_start(text[i], run, next) && phone_alone(p) && !follows_number {
            self.phone(i, || national_phone(&text[i..]));
        }
        match (run, next) {
            // `123-45-6789`, `212-555-0123`.
            (3, b'-') => {
                self.counts[SSN] += u64::from(ssn_at(text, i));
                if phone_alone(p) {
                    self.phone(i, || north_american_phone(&text[i..]));
                }
            }
            // `415.555.0199`.
            (3, b'.') if phone_alone(p) => {
                self.phone(i, || north_american_phone(&text[i..]));
            }
            // `(212) 555-0123`, from its parenthesis.
            (3, b')') if p == Some(b'(') && phone_alone(pp) => {
                self.phone(i - 1, || north_american_phone(&text[i - 1..]));
            }
            (4, b'-') | (2, b'/' | b'.') if date_at(&text[i..]) && birth_label_before(text, i) => {
                self.counts[BIRTH] += 1;
            }
            // `17 March 1984`, `March 17, 1984`: a year of 1900 to 2099, as numeric dates
            // have, after a space or a comma. The cheap checks go first: every other run
            // of four digits gets here too (card groups, the year of a numeric date).
            (4, _)
                if matches!(p, Some(b' ' | b','))
                    && matches!(&text[i..i + 2], b"19" | b"20")
                    && written_date_before(text, i)
                        .is_some_and(|at| birth_label_before(text, at)) =>
            {
                self.counts[BIRTH] += 1;
            }
            _ => {}
        }
    }
}

/// The byte `back` bytes before `text[i]`, if the window has it (it lacks it only at the
/// start of the file).
fn byte_before(text: &[u8], i: usize, back: usize) -> Option<u8> {
    i.checked_sub(back).map(|j| text[j])
}

/// How many digits (up to 8) start `text[i..]`, and the byte after them (0 at the end).
#[inline(always)]
fn digit_run(text: &[u8], i: usize) -> (usize, u8) {
    let run = match text.get(i..i + 8) {
        Some(word) => {
            const ONES: u64 = 0x0101_0101_0101_0101;
            let t = u64::from_le_bytes(word.try_into().expect("8 bytes")) ^ (ONES * b'0' as u64);
            // The top bit of each byte that is not a digit (whose `t` is over 9).
            let other = (((t & (ONES * 0x7f)) + ONES * 0x76) | t) & (ONES * 0x80);
            (other.trailing_zeros() / 8) as usize
        }
        None => text[i..].iter().take_while(|b| b.is_ascii_digit()).count(),
    };
    (run, text.get(i + run).copied().unwrap_or(0))
}

/// For each byte that may follow a run of digits, the run lengths (bits 2 to 5, 5 meaning
/// five or more) at which the run may start a match: `12/` or `12.` a date, `123-` an SSN or
/// a phone number, `123)` or `123.` a phone number, `2026-` a date, `4111 ` a card number, and any
/// five digits or more a card number or IBAN.
const FOLLOWERS: [u8; 256] = {
    let mut table = [1 << 5; 256];
    table[b'/' as usize] |= 1 << 2;
    table[b'.' as usize] |= 1 << 2 | 1 << 3;
    table[b'-' as usize] |= 1 << 3 | 1 << 4;
    table[b')' as usize] |= 1 << 3;
    table[b' ' as usize] |= 1 << 4;
    table
};

/// ASCII letters, digits and `_`.
const fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._%+-".contains(&b)
}

fn is_domain_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

/// An address is `local@domain.tld` around the `@` at `text[at]`: a non-empty local part,
/// a domain of at most 253 bytes with at least one dot, labels that neither start nor end
/// with `-` or `.`, and an alphabetic TLD of 2+ letters. A sentence may end right after an
/// address: "mail bob@example.com."
fn email_at(text: &[u8], at: usize) -> bool {
    if at == 0 || !is_local_char(text[at - 1]) {
        return false;
    }
    let rest = &text[at + 1..];
    let len = rest
        .iter()
        .take(MAX_DOMAIN + 1)
        .take_while(|b| is_domain_char(**b))
        .count();
    let domain = &rest[..len];
    let trimmed = domain.iter().rposition(|b| *b != b'.').map_or(0, |i| i + 1);
    len <= MAX_DOMAIN && valid_domain(&domain[..trimmed])
}

fn valid_domain(domain: &[u8]) -> bool {
    let mut labels = 0;
    for label in domain.split(|b| *b == b'.') {
        if label.first().is_none_or(|b| *b == b'-') || label.last() == Some(&b'-') {
            return false;
        }
        labels += 1;
    }
    let tld = domain.rsplit(|b| *b == b'.').next().unwrap_or_default();
    labels >= 2 && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic)
}

/// Whether a card number starts `text`: 12 to 19 digits, optionally grouped by single
/// spaces or dashes (the caller sees that the first group has four digits or more, and that
/// no digit or group precedes), that start as a known card issuer's numbers do with a
/// length that issuer uses, and pass the Luhn check.
fn card_at(text: &[u8]) -> bool {
    let (mut digits, mut n, mut i) = ([0u8; 20], 0, 0);
    while i < text.len() && n < digits.len() {
        let b = text[i];
        if b.is_ascii_digit() {
            digits[n] = b - b'0';
            n += 1;
        } else if !((b == b' ' || b == b'-') && text.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            break;
        }
        i += 1;
    }
    card_issuer_valid(&digits[..n]) && luhn_valid(&digits[..n])
}

/// Whether `digits` (values 0-9) start with a known issuer's prefix and have a length that
/// issuer uses: Visa, Mastercard, American Express, Discover, JCB, Diners Club, UnionPay
/// and Maestro, at the lengths issued today (and Visa's old 13 digits). An order number of
/// 16 digits that passes Luhn by chance mostly fails here, and so does a 13-digit EAN
/// barcode.
pub fn card_issuer_valid(digits: &[u8]) -> bool {
    let prefix = |n: usize| {
        digits
            .iter()
            .take(n)
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d))
    };
    let len = digits.len();
    if !(12..=19).contains(&len) {
        return false;
    }
    let (p1, p2, p3, p4) = (prefix(1), prefix(2), prefix(3), prefix(4));
    match p1 {
        // A 13-digit number that is a valid EAN-13 is taken for the barcode it more
        // likely is.
        4 => matches!(len, 16 | 19) || (len == 13 && !ean13_valid(digits)),
        3 => match p2 {
            34 | 37 => len == 15,
            36 | 38 | 39 => (14..=19).contains(&len),
            30 => (300..=305).contains(&p3) && (14..=19).contains(&len),
            35 => (3528..=3589).contains(&p4) && (16..=19).contains(&len),
            _ => false,
        },
        2 => (2221..=2720).contains(&p4) && len == 16,
        5 => match p2 {
            51..=55 => len == 16,
            50 | 56..=59 => (16..=19).contains(&len),
            _ => false,
        },
        6 => {
            // Discover, UnionPay and Maestro: all 16 to 19 digits as issued today.
            (16..=19).contains(&len)
        }
        _ => false,
    }
}

/// Whether an IBAN starts `text`: a country code, two check digits and the country's
/// account number, all together or in groups of four separated by single spaces, that has
/// the length that country uses and passes the mod-97 check. The caller sees that no
/// letter or digit precedes.
fn iban_at(text: &[u8]) -> bool {
    let Some(want) = text.get(..2).and_then(iban_length) else {
        return false;
    };
    // Collect alphanumerics, allowing a single space after every group of four.
    let (mut chars, mut n, mut i) = ([0u8; 34], 0, 0);
    while i < text.len() && n < want {
        let b = text[i];
        if b.is_ascii_digit() || b.is_ascii_uppercase() {
            chars[n] = b;
            n += 1;
        } else if !(b == b' ' && n % 4 == 0 && n > 0) {
            break;
        }
        i += 1;
    }
    let ends = text.get(i).is_none_or(|b| !b.is_ascii_alphanumeric());
    n == want
        && ends
        && chars[2].is_ascii_digit()
        && chars[3].is_ascii_digit()
        && iban_mod97(&chars[..n]) == 1
}

/// The IBAN's remainder modulo 97 after moving the first four characters to the end and
/// turning letters into 10..35; a valid IBAN gives 1.
fn iban_mod97(chars: &[u8]) -> u32 {
    chars[4..]
        .iter()
        .chain(&chars[..4])
        .fold(0u32, |acc, &c| match c {
            b'0'..=b'9' => (acc * 10 + u32::from(c - b'0')) % 97,
            _ => (acc * 100 + u32::from(c - b'A') + 10) % 97,
        })
}

/// The IBAN length of a country, from the IBAN registry.
fn iban_length(country: &[u8]) -> Option<usize> {
    const LENGTHS: &[(&[u8; 2], usize)] = &[
        (b"AD", 24),
        (b"AE", 23),
        (b"AL", 28),
        (b"AT", 20),
        (b"AZ", 28),
        (b"BA", 20),
        (b"BE", 16),
        (b"BG", 22),
        (b"BH", 22),
        (b"BR", 29),
        (b"BY", 28),
        (b"CH", 21),
        (b"CR", 22),
        (b"CY", 28),
        (b"CZ", 24),
        (b"DE", 22),
        (b"DK", 18),
        (b"DO", 28),
        (b"EE", 20),
        (b"EG", 29),
        (b"ES", 24),
        (b"FI", 18),
        (b"FO", 18),
        (b"FR", 27),
        (b"GB", 22),
        (b"GE", 22),
        (b"GI", 23),
        (b"GL", 18),
        (b"GR", 27),
        (b"GT", 28),
        (b"HR", 21),
        (b"HU", 28),
        (b"IE", 22),
        (b"IL", 23),
        (b"IQ", 23),
        (b"IS", 26),
        (b"IT", 27),
        (b"JO", 30),
        (b"KW", 30),
        (b"KZ", 20),
        (b"LB", 28),
        (b"LC", 32),
        (b"LI", 21),
        (b"LT", 20),
        (b"LU", 20),
        (b"LV", 21),
        (b"MC", 27),
        (b"MD", 24),
        (b"ME", 22),
        (b"MK", 19),
        (b"MR", 27),
        (b"MT", 31),
        (b"MU", 30),
        (b"NL", 18),
        (b"NO", 15),
        (b"PK", 24),
        (b"PL", 28),
        (b"PS", 29),
        (b"PT", 25),
        (b"QA", 29),
        (b"RO", 24),
        (b"RS", 22),
        (b"SA", 24),
        (b"SC", 31),
        (b"SE", 24),
        (b"SI", 19),
        (b"SK", 24),
        (b"SM", 27),
        (b"ST", 25),
        (b"SV", 28),
        (b"TL", 23),
        (b"TN", 24),
        (b"TR", 26),
        (b"UA", 29),
        (b"VA", 22),
        (b"VG", 24),
        (b"XK", 20),
    ];
    LENGTHS
        .iter()
        .find(|(code, _)| code[..] == *country)
        .map(|(_, len)| *len)
}

/// Whether a US Social Security number written AAA-GG-SSSS starts at `text[i]`, standing
/// alone, in a range the SSA issues: area not 000, 666 or 900-999, group not 00, serial
/// not 0000. Nine bare digits are left alone: too many other numbers look like them.
fn ssn_at(text: &[u8], i: usize) -> bool {
    let Some(w) = text.get(i..i + 11) else {
        return false;
    };
    let digits = |r: std::ops::Range<usize>| w[r].iter().all(u8::is_ascii_digit);
    let shaped = w[3] == b'-' && w[6] == b'-' && digits(0..3) && digits(4..6) && digits(7..11);
    let apart = |b: &u8| !b.is_ascii_alphanumeric() && *b != b'-';
    let alone =
        byte_before(text, i, 1).is_none_or(|b| apart(&b)) && text.get(i + 11).is_none_or(apart);
    if !(shaped && alone) {
        return false;
    }
    let num = |r: std::ops::Range<usize>| {
        w[r].iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'))
    };
    ssn_issued(num(0..3), num(4..6), num(7..11))
}

/// Whether the SSA issues numbers with this area, group and serial.
fn ssn_issued(area: u32, group: u32, serial: u32) -> bool {
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// Whether a phone number may start after `before`: not inside a word or number, nor
/// after another `+`.
fn phone_alone(before: Option<u8>) -> bool {
    before.is_none_or(|b| !(b.is_ascii_alphanumeric() || b == b'+'))
}

/// The length of an international number after its `+`, if one starts `text`: 8 to 15
/// digits, the first not 0, in groups split by single spaces, dashes or a parenthesised
/// group. Bare digit runs, dates, version strings and signed decimals (`+48.8566`) do not
/// qualify.
fn international_phone(text: &[u8]) -> Option<usize> {
    let (mut digits, mut i) = (0, 0);
    let mut open = false;
    while i < text.len() && digits <= 15 {
        let b = text[i];
        let next_digit = text.get(i + 1).is_some_and(u8::is_ascii_digit);
        match b {
            b'0'..=b'9' => digits += 1,
            b' ' | b'-' if digits > 0 && next_digit => {}
            b'(' if !open && digits > 0 && next_digit => open = true,
            b')' if open => open = false,
            _ => break,
        }
        i += 1;
    }
    let ends = text.get(i).is_none_or(|b| !b.is_ascii_alphanumeric());
    (text.first() != Some(&b'0') && (8..=15).contains(&digits) && !open && ends).then_some(i)
}

/// Whether a run of `run` digits starting with `first` and followed by `next` may start a
/// French or British national number: a leading 0 and a first group of 2 to 5 digits.
#[inline(always)]
fn national_start(first: u8, run: usize, next: u8) -> bool {
    first == b'0' && (2..=5).contains(&run) && matches!(next, b' ' | b'.')
}

/// The length of a French or British number written with its leading 0, if one starts
/// `text`: France's five pairs (`06 12 34 56 78`, `01.23.45.67.89`, the second digit 1 to
/// 9), and Britain's eleven digits in the groups its numbering plan uses (`020 7946 0958`,
/// `0161 496 0000`, `07700 900123`). Nothing may run on from it.
fn national_phone(text: &[u8]) -> Option<usize> {
    const SHAPES: &[(&[u8], &[u8])] = &[
        (b"0d dd dd dd dd", b"123456789"),
        (b"0d.dd.dd.dd.dd", b"123456789"),
        (b"0dd dddd dddd", b"2"),
        (b"0ddd ddd dddd", b"138"),
        (b"0dddd dddddd", b"17"),
    ];
    SHAPES.iter().find_map(|(shape, second)| {
        let fits = text.len() >= shape.len()
            && shape.iter().zip(text).all(|(s, b)| match s {
                b'd' => b.is_ascii_digit(),
                _ => s == b,
            })
            && second.contains(&text[1]);
        let after = text.get(shape.len()..).unwrap_or_default();
        let ends = after.first().is_none_or(|b| !b.is_ascii_alphanumeric())
            && !(matches!(after.first(), Some(b' ' | b'.' | b'-'))
                && after.get(1).is_some_and(u8::is_ascii_digit));
        (fits && ends).then_some(shape.len())
    })
}

/// The length of a North American number, `(NXX) NXX-XXXX`, `NXX-NXX-XXXX` or
/// `NXX.NXX.XXXX` (area and exchange not starting with 0 or 1), if one starts `text`.
fn north_american_phone(text: &[u8]) -> Option<usize> {
    let shape: &[u8] = if text.first() == Some(&b'(') {
        if text.get(5) == Some(&b' ') {
            b"(ddd) ddd-dddd"
        } else {
            b"(ddd)ddd-dddd"
        }
    } else if text.get(3) == Some(&b'.') {
        b"ddd.ddd.dddd"
    } else {
        b"ddd-ddd-dddd"
    };
    let fits = text.len() >= shape.len()
        && shape.iter().zip(text).all(|(s, b)| match s {
            b'd' => b.is_ascii_digit(),
            _ => s == b,
        });
    if !fits {
        return None;
    }
    // Not part of something longer: `415.555.0199.7` is no phone number.
    let after = &text[shape.len()..];
    let ends = after
        .first()
        .is_none_or(|b| !b.is_ascii_alphanumeric() && *b != b'-')
        && !(matches!(after.first(), Some(b'.' | b'-'))
            && after.get(1).is_some_and(u8::is_ascii_digit));
    let mut digits = text[..shape.len()].iter().filter(|b| b.is_ascii_digit());
    let area = digits.next().copied().unwrap_or(b'0');
    let exchange = digits.nth(2).copied().unwrap_or(b'0');
    (ends && area >= b'2' && exchange >= b'2').then_some(shape.len())
}

/// Labels that introduce a date of birth, lowercase.
const BIRTH_LABELS: &[&[u8]] = &[
    b"date of birth",
    b"birth date",
    b"birthdate",
    b"d.o.b",
    b"dob",
    b"born",
    b"geburtsdatum",
    b"date de naissance",
    b"fecha de nacimiento",
];

/// Whether a birth-date label (above, as a whole word, any ASCII case) ends within the 19
/// bytes before the date at `text[date]`.
fn birth_label_before(text: &[u8], date: usize) -> bool {
    // For each byte: 1 if a label ends in it (either case), 2 if it is a word byte.
    // Timestamps in logs put a date on every line, so most of the bytes before one must
    // be passed over cheaply: two look-ups each.
    const BYTES: [u8; 256] = {
        let mut table = [0; 256];
        let mut b = 0;
        while b < 256 {
            if is_word_byte(b as u8) {
                table[b] = 2;
            }
            b += 1;
        }
        let mut i = 0;
        while i < BIRTH_LABELS.len() {
            let last = BIRTH_LABELS[i][BIRTH_LABELS[i].len() - 1];
            table[last as usize] |= 1;
            table[last.to_ascii_uppercase() as usize] |= 1;
            i += 1;
        }
        table
    };
    // The last two bytes of the labels, each pair once.
    const LAST_PAIRS: [[u8; 2]; 8] = {
        let mut pairs = [[0; 2]; 8];
        let (mut n, mut i) = (0, 0);
        while i < BIRTH_LABELS.len() {
            let label = BIRTH_LABELS[i];
            let pair = [label[label.len() - 2], label[label.len() - 1]];
            let mut k = 0;
            while k < n && (pairs[k][0] != pair[0] || pairs[k][1] != pair[1]) {
                k += 1;
            }
            if k == n {
                pairs[n] = pair;
                n += 1;
            }
            i += 1;
        }
        assert!(
            n == pairs.len(),
            "one slot per pair of bytes a label ends in"
        );
        pairs
    };
    // The labels (as bits) ending in each letter, by its place in the alphabet.
    const ENDING_IN: [u16; 32] = {
        let mut table = [0; 32];
        let mut i = 0;
        while i < BIRTH_LABELS.len() {
            table[(BIRTH_LABELS[i][BIRTH_LABELS[i].len() - 1] & 31) as usize] |= 1 << i;
            i += 1;
        }
        table
    };
    // First, without branches, the word ends whose last letter some label ends in: bit
    // `k` for the end `first + k`.
    let first = date.saturating_sub(19).max(2);
    if date <= first {
        return false;
    }
    let mut ends = match marks::label_ends(text, date, &LAST_PAIRS) {
        Some(ends) => ends >> (first + 32 - date),
        None => {
            let mut ends = 0u32;
            let mut last = BYTES[usize::from(text[first - 1])];
            for (k, &b) in text[first..date].iter().enumerate() {
                let here = BYTES[usize::from(b)];
                ends |= u32::from(last & !here >> 1 & 1) << k;
                last = here;
            }
            ends
        }
    };
    while ends != 0 {
        let end = first + ends.trailing_zeros() as usize;
        ends &= ends - 1;
        let last = text[end - 1].to_ascii_lowercase();
        let mut labels = ENDING_IN[usize::from(last & 31)];
        let labelled = std::iter::from_fn(|| {
            let k = labels.trailing_zeros() as usize;
            labels &= labels.wrapping_sub(1);
            BIRTH_LABELS.get(k)
        })
        .any(|label| {
            // The last two bytes first.
            let n = label.len();
            let start = end.wrapping_sub(n);
            label[n - 1] == last
                && label[n - 2] == text[end - 2].to_ascii_lowercase()
                && n <= end
                && text[start..end - 2].eq_ignore_ascii_case(&label[..n - 2])
                && !word_char_before(text, start)
        });
        if labelled && !word_char_at(text, end) {
            return true;
        }
    }
    false
}

/// Whether the four digits at `text[i]` may be the year of a date written with its month's
/// name: 1900 to 2099, after spaces or a comma (`17 March 1984`, `March 17, 1984`,
/// `March 17,1984`) that follow a word or a dot.
#[inline(always)]
fn year_after_words(text: &[u8], i: usize, p: Option<u8>) -> bool {
    matches!(text.get(i..i + 2), Some(b"19" | b"20"))
        && matches!(p, Some(b' ' | b','))
        && text[i.saturating_sub(8)..i]
            .iter()
            .rev()
            .find(|b| !matches!(b, b' ' | b','))
            .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'.' || !b.is_ascii())
}

/// Month names (English, German, French, Spanish; full and common abbreviations), lowercase,
/// with their numbers.
const MONTHS: &[(&str, u32)] = &[
    ("january", 1),
    ("jan", 1),
    ("januar", 1),
    ("janvier", 1),
    ("enero", 1),
    ("february", 2),
    ("feb", 2),
    ("februar", 2),
    ("février", 2),
    ("fevrier", 2),
    ("febrero", 2),
    ("march", 3),
    ("mar", 3),
    ("märz", 3),
    ("maerz", 3),
    ("mars", 3),
    ("marzo", 3),
    ("april", 4),
    ("apr", 4),
    ("avril", 4),
    ("abril", 4),
    ("may", 5),
    ("mai", 5),
    ("mayo", 5),
    ("june", 6),
    ("jun", 6),
    ("juni", 6),
    ("juin", 6),
    ("junio", 6),
    ("july", 7),
    ("jul", 7),
    ("juli", 7),
    ("juillet", 7),
    ("julio", 7),
    ("august", 8),
    ("aug", 8),
    ("août", 8),
    ("aout", 8),
    ("agosto", 8),
    ("september", 9),
    ("sep", 9),
    ("sept", 9),
    ("septembre", 9),
    ("septiembre", 9),
    ("october", 10),
    ("oct", 10),
    ("oktober", 10),
    ("octobre", 10),
    ("octubre", 10),
    ("november", 11),
    ("nov", 11),
    ("novembre", 11),
    ("noviembre", 11),
    ("december", 12),
    ("dec", 12),
    ("dezember", 12),
    ("décembre", 12),
    ("decembre", 12),
    ("diciembre", 12),
];

/// Where a date written with its month's name starts, if the four digits at `text[year]`
/// end one: `17 March 1984`, `17. März 1984`, `17 de marzo de 1984`, `March 17, 1984`,
/// `Mar 17th 1984`. The day and month must make a real date in that year.
fn written_date_before(text: &[u8], year: usize) -> Option<usize> {
    let y = text[year..year + 4]
        .iter()
        .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
    if text.get(year + 4).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    // The words before the year, last first, with where each starts: up to four, from
    // the 32 bytes before it.
    let from = year.saturating_sub(32);
    let mut found = [(0, &text[..0]); 4];
    let mut n = 0;
    let mut end = year;
    // Two words make a date, unless the nearest is the `de` of `17 de marzo de 1984`.
    while n < 2 || (n < found.len() && found[0].1.eq_ignore_ascii_case(b"de")) {
        while end > from && matches!(text[end - 1], b' ' | b',') {
            end -= 1;
        }
        let mut start = end;
        while start > from && !matches!(text[start - 1], b' ' | b',' | b'\n' | b'\t') {
            start -= 1;
        }
        if start == end || (start == from && from > 0) {
            break;
        }
        found[n] = (start, &text[start..end]);
        n += 1;
        end = start;
    }
    let words = &found[..n];
    // Without the dots after it: `Mar.`, `17.`.
    let bare = |w: &[u8]| -> usize { w.iter().rposition(|&b| b != b'.').map_or(0, |i| i + 1) };
    let month = |w: &[u8]| -> Option<u32> {
        let w = &w[..bare(w)];
        // Month names start with a letter and are 3 to 10 bytes long.
        if !(3..=10).contains(&w.len()) || !w[0].is_ascii_alphabetic() {
            return None;
        }
        let mut lower = [0u8; 16];
        let lower = lowercase_latin(w, &mut lower)?;
        // The first byte and the length turn most words away before any comparison.
        MONTHS
            .iter()
            .find(|(name, _)| {
                let name = name.as_bytes();
                name.len() == lower.len() && name[0] == lower[0] && name == lower
            })
            .map(|(_, n)| *n)
    };
    let day = |w: &[u8]| -> Option<u32> {
        let w = &w[..bare(w)];
        let digits = w.iter().take_while(|b| b.is_ascii_digit()).count();
        let suffix = &w[digits..];
        let ordinal = [&b"st"[..], b"nd", b"rd", b"th"]
            .iter()
            .any(|s| suffix.eq_ignore_ascii_case(s));
        ((1..=2).contains(&digits) && (suffix.is_empty() || ordinal)).then(|| {
            w[..digits]
                .iter()
                .fold(0, |acc, &d| acc * 10 + u32::from(d - b'0'))
        })
    };
    let (start, m, d) = match words {
        // `17 de marzo de 1984`
        [(_, de2), (_, m), (_, de1), (at, d), ..]
            if de1.eq_ignore_ascii_case(b"de") && de2.eq_ignore_ascii_case(b"de") =>
        {
            (*at, month(m)?, day(d)?)
        }
        // `March 17, 1984`
        [(_, d), (at, m), ..] if day(d).is_some() && month(m).is_some() => {
            (*at, month(m)?, day(d)?)
        }
        // `17 March 1984`
        [(_, m), (at, d), ..] => (*at, month(m)?, day(d)?),
        _ => return None,
    };
    let days = match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    (1..=days).contains(&d).then_some(start)
}

/// `word` lowercased into `buf`, if it fits: ASCII letters, and the Latin-1 capitals
/// (`É`, `Ä`, `Û`, ...) that month names are written with. Other bytes are kept.
fn lowercase_latin<'b>(word: &[u8], buf: &'b mut [u8; 16]) -> Option<&'b [u8]> {
    let out = buf.get_mut(..word.len())?;
    for (k, (o, &b)) in out.iter_mut().zip(word).enumerate() {
        // In UTF-8, À to Þ (less ×) are 0xC3 then 0x80 to 0x9E; their small letters are
        // 0x20 further on.
        let capital = k > 0 && word[k - 1] == 0xc3 && (0x80..=0x9e).contains(&b) && b != 0x97;
        *o = if capital {
            b + 0x20
        } else {
            b.to_ascii_lowercase()
        };
    }
    Some(out)
}

/// Whether `text` starts with a valid date written YYYY-MM-DD, DD/MM/YYYY, MM/DD/YYYY or
/// DD.MM.YYYY, with a year from 1900 to 2099.
fn date_at(text: &[u8]) -> bool {
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(r)?;
        part.iter().all(u8::is_ascii_digit).then(|| {
            part.iter()
                .fold(0, |acc, &d| acc * 10 + u32::from(d - b'0'))
        })
    };
    let sep = |i: usize, set: &[u8]| text.get(i).is_some_and(|b| set.contains(b));
    let ends = |n: usize| text.get(n).is_none_or(|b| !b.is_ascii_digit());
    let valid = |y: u32, m: u32, d: u32| {
        let days = match m {
            2 if y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400)) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            1..=12 => 31,
            _ => 0,
        };
        (1900..=2099).contains(&y) && (1..=days).contains(&d)
    };
    if sep(4, b"-") && sep(7, b"-") && ends(10) {
        if let (Some(y), Some(m), Some(d)) = (num(0..4), num(5..7), num(8..10)) {
            return valid(y, m, d);
        }
    }
    if sep(2, b"/.") && text.get(5) == text.get(2) && ends(10) {
        if let (Some(a), Some(b), Some(y)) = (num(0..2), num(3..5), num(6..10)) {
            return valid(y, b, a) || (text[2] == b'/' && valid(y, a, b));
        }
    }
    false
}

/// The EAN-13 check: digits weighted 1 and 3 alternately sum to a multiple of 10.
fn ean13_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(i, &d)| u32::from(d) * if i % 2 == 1 { 3 } else { 1 })
        .sum();
    digits.len() == 13 && sum.is_multiple_of(10)
}

pub fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    !digits.is_empty() && sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classifier with these keywords and threshold and no custom patterns.
    fn keywords(sensitive: &[String], personal: &[String], threshold: u64) -> Classifier {
        Classifier::new(&ClassifyConfig {
            sensitive_keywords: sensitive.to_vec(),
            personal_keywords: personal.to_vec(),
            personal_threshold: threshold,
            ..ClassifyConfig::default()
        })
        .unwrap()
    }

    /// Detector counts as `Classification::detectors` has them.
    fn named(counts: &[(&str, u64)]) -> BTreeMap<String, u64> {
        counts.iter().map(|(k, n)| (k.to_string(), *n)).collect()
    }

    fn classify(text: &str) -> Classification {
        let c = keywords(
            &[
                "confidential".into(),
                "password".into(),
                "client data".into(),
            ],
            &["patient".into()],
            1,
        );
        c.classify(text.as_bytes()).unwrap()
    }

    fn expect_classes(cases: &[(&str, Class)]) {
        for (text, want) in cases {
            assert_eq!(classify(text).class, *want, "{text:?}");
        }
    }

    #[test]
    fn classes() {
        let cases = [
            ("quarterly numbers attached", Class::General),
            ("This is CONFIDENTIAL.", Class::Sensitive),
            ("the Client Data export", Class::Sensitive),
            ("mail bob@example.com.", Class::Personal),
            ("card 4111 1111 1111 1111 exp 12/29", Class::Personal),
            ("card 4111-1111-1111-1111", Class::Personal),
            ("card 4111111111111112 (bad check digit)", Class::General),
            ("order 1234567890123456789012", Class::General),
            ("version 1.2.3 at host@localhost", Class::General),
            ("user@@example", Class::General),
            ("password: hunter2, mail bob@example.com", Class::Sensitive),
        ];
        expect_classes(&cases);
    }

    #[test]
    fn detectors_are_named_not_valued() {
        let c = classify("bob@example.com 4111 1111 1111 1111, ann@example.org");
        assert_eq!(c.detectors, named(&[("email", 2), ("payment-card", 1)]));
    }

    #[test]
    fn matches_across_chunk_boundaries() {
        for keyword_at in [CHUNK - 5, CHUNK - 1, CHUNK, 2 * CHUNK - 3] {
            let mut data = vec![b' '; 3 * CHUNK];
            data[keyword_at..keyword_at + 12].copy_from_slice(b"Confidential");
            let c = keywords(&["confidential".into()], &[], 1);
            assert_eq!(
                c.classify(&data[..]).unwrap().class,
                Class::Sensitive,
                "{keyword_at}"
            );
        }
        let mut data = vec![b' '; 2 * CHUNK];
        let card = b"4111 1111 1111 1111";
        data[CHUNK - 7..CHUNK - 7 + card.len()].copy_from_slice(card);
        let c = keywords(&[], &[], 1);
        assert_eq!(c.classify(&data[..]).unwrap().class, Class::Personal);
    }

    #[test]
    fn validated_detectors_take_real_numbers_and_leave_look_alikes() {
        let cases = [
            // Payment cards: issuer range and length, then Luhn.
            ("amex 3782 822463 10005", Class::Personal),
            ("mastercard 5555555555554444", Class::Personal),
            ("mastercard 2223003122003222", Class::Personal),
            ("discover 6011111111111117", Class::Personal),
            ("jcb 3530111333300000", Class::Personal),
            // Luhn-valid, but no issuer starts with 1 or 9.
            ("order 1234567812345670", Class::General),
            ("ticket 9999999999999995", Class::General),
            // IBAN: country length and mod 97.
            ("pay to GB82 WEST 1234 5698 7654 32 today", Class::Personal),
            ("IBAN DE89370400440532013000", Class::Personal),
            ("pay to GB82 WEST 1234 5698 7654 33 today", Class::General),
            ("GB82WEST123456987654", Class::General),
            ("XX82WEST12345698765432", Class::General),
            // US SSN: dashed, in an issued range.
            ("ssn 123-45-6789", Class::Personal),
            ("ssn 000-12-3456", Class::General),
            ("ssn 666-12-3456", Class::General),
            ("ssn 912-34-5678", Class::General),
            ("ssn 123-00-4567", Class::General),
            ("ssn 123-45-0000", Class::General),
            ("phone 555-123-45-6789-1", Class::General),
            ("part 123456789", Class::General),
        ];
        expect_classes(&cases);
        assert_eq!(
            classify("GB82 WEST 1234 5698 7654 32, 123-45-6789").detectors,
            named(&[("iban", 1), ("us-ssn", 1)])
        );
    }

    #[test]
    fn matches_are_counted_once_across_reads_and_weighed_against_the_threshold() {
        // Addresses every 100 bytes over several reads, some straddling a read boundary.
        let mut data = Vec::new();
        while data.len() < 3 * CHUNK {
            data.extend_from_slice(b"mail ann@example.org ");
            data.resize(data.len() + 79, b' ');
        }
        let emails = data.windows(4).filter(|w| w == b"ann@").count() as u64;
        let c = keywords(&[], &[], 1).classify(&data[..]).unwrap();
        assert_eq!(c.detectors, named(&[("email", emails)]));
        let one = b"only bob@example.com here";
        let strict = keywords(&[], &[], 2);
        assert_eq!(strict.classify(&one[..]).unwrap().class, Class::General);
        let two = b"bob@example.com and 4111 1111 1111 1111";
        assert_eq!(strict.classify(&two[..]).unwrap().class, Class::Personal);
    }

    #[test]
    fn keywords_match_whole_words_only_wherever_the_reads_split_them() {
        let cases = [
            ("Password: hunter2", Class::Sensitive),
            ("(confidential)", Class::Sensitive),
            ("«confidential»", Class::Sensitive),
            ("client  data", Class::General),
            ("passwords_list and passwordless login", Class::General),
            ("nonconfidential notes", Class::General),
            ("the patient was seen", Class::Personal),
            ("outpatients only", Class::General),
        ];
        expect_classes(&cases);
        assert_eq!(
            classify("patient one, patient two").detectors,
            named(&[("personal-keyword", 2)])
        );
        // A word glued to the keyword across a read boundary, on either side.
        let c = keywords(&["password".into()], &[], 1);
        let tail = CHUNK - PERSONAL_WINDOW;
        for (at, glue) in [
            (CHUNK - 8, b'x'),
            (CHUNK - 4, b'x'),
            (CHUNK - 1, b'_'),
            (tail, b'7'),
        ] {
            for before in [true, false] {
                let mut data = vec![b' '; 2 * CHUNK + 300];
                data[at..at + 8].copy_from_slice(b"PASSWORD");
                if before {
                    data[at - 1] = glue;
                } else {
                    data[at + 8] = glue;
                }
                assert_eq!(c.classify(&data[..]).unwrap().class, Class::General, "{at}");
            }
        }
        // A personal keyword starting exactly where a read's kept tail begins counts once.
        let p = keywords(&[], &["patient".into()], 1);
        for at in [
            CHUNK - PERSONAL_WINDOW - 1,
            CHUNK - PERSONAL_WINDOW,
            CHUNK - 3,
        ] {
            let mut data = vec![b' '; 3 * CHUNK];
            data[at..at + 7].copy_from_slice(b"patient");
            let c = p.classify(&data[..]).unwrap();
            assert_eq!(c.detectors, named(&[("personal-keyword", 1)]), "{at}");
        }
    }

    #[test]
    fn phone_numbers_and_dates_of_birth_need_their_shape() {
        let cases = [
            ("call +44 20 7946 0018 today", Class::Personal),
            ("call +1 (212) 555-0123", Class::Personal),
            ("tel +49-30-123456", Class::Personal),
            ("office (212) 555-0123", Class::Personal),
            ("office 212-555-0123.", Class::Personal),
            ("sum +1234567", Class::General),
            ("build 1.2.3.4567 released", Class::General),
            ("id 112-555-0123", Class::General),
            ("order 212-555-01234", Class::General),
            ("2026-12-05 10:00 started", Class::General),
            ("Date of birth: 1984-02-29", Class::Personal),
            ("DOB 31/12/1990", Class::Personal),
            ("born on 12/31/1990 in Leeds", Class::Personal),
            ("Geburtsdatum 03.04.1975", Class::Personal),
            ("D.O.B.: 17/03/1984", Class::Personal),
            ("date of birth: 1985-02-29", Class::General),
            ("DOB 32/01/1990", Class::General),
            ("reborn 12/05/1990", Class::General),
            ("released 1990-05-12", Class::General),
        ];
        expect_classes(&cases);
    }

    #[test]
    fn letters_beyond_ascii_are_part_of_words() {
        let cases = [
            ("confidentialité des données", Class::General),
            ("Inconfidential", Class::General),
            ("éconfidential", Class::General),
            ("ßpassword", Class::General),
            ("пароль password", Class::Sensitive),
            ("passwordЖ", Class::General),
            ("password日本", Class::General),
            ("password٣", Class::General),
            ("«confidential»", Class::Sensitive),
            ("confidential—draft", Class::Sensitive),
            ("confidential\u{a0}draft", Class::Sensitive),
            ("\u{2003}confidential", Class::Sensitive),
            ("client data€", Class::Sensitive),
            ("Geburtsdatum 03.04.1975", Class::Personal),
            ("Neugeburtsdatum 03.04.1975", Class::General),
            ("éDOB 31/12/1990", Class::General),
        ];
        expect_classes(&cases);
        // Bytes that are not UTF-8 (binary, a stray Latin-1 letter) are no word characters.
        let c = keywords(&["confidential".into()], &[], 1);
        for data in [
            &b"\xffconfidential\xfe"[..],
            b"\xe9confidential",
            b"confidential\xe9",
            b"confidential\xc3",
            b"\xa9confidential",
            b"\x80\x80\x80\x80confidential",
        ] {
            assert_eq!(
                c.classify(data).unwrap().class,
                Class::Sensitive,
                "{data:?}"
            );
        }
        // A letter split across two reads still touches the keyword.
        for at in [
            CHUNK - 13,
            CHUNK - 12,
            CHUNK - 11,
            CHUNK - PERSONAL_WINDOW - 12,
        ] {
            for (glue, before) in [("é", false), ("é", true), ("日", false), ("日", true)] {
                let mut data = vec![b' '; 2 * CHUNK];
                data[at..at + 12].copy_from_slice(b"confidential");
                let glue = glue.as_bytes();
                let from = if before { at - glue.len() } else { at + 12 };
                data[from..from + glue.len()].copy_from_slice(glue);
                let class = c.classify(&data[..]).unwrap().class;
                assert_eq!(class, Class::General, "{at} {glue:?} before: {before}");
            }
        }
    }

    /// A custom pattern's `(name, regex, validator, class)`.
    type Spec<'a> = (&'a str, &'a str, &'a str, &'a str);

    fn pattern_config((name, regex, validator, class): Spec, max_length: usize) -> PatternConfig {
        PatternConfig {
            name: name.to_string(),
            regex: regex.to_string(),
            validator: validator.to_string(),
            class: class.to_string(),
            max_length,
        }
    }

    /// A classifier with no keywords and these patterns.
    fn patterns(list: &[Spec]) -> Result<Classifier, PatternError> {
        let pattern = list.iter().map(|spec| pattern_config(*spec, 256)).collect();
        Classifier::new(&ClassifyConfig {
            sensitive_keywords: Vec::new(),
            pattern,
            ..ClassifyConfig::default()
        })
    }

    const EMPLOYEE_ID: Spec = ("employee-id", r"\bEMP-[0-9]{6}\b", "none", "personal");

    #[test]
    fn custom_patterns_count_their_matches() {
        let c = patterns(&[EMPLOYEE_ID]).unwrap();
        let text = b"EMP-123456 and emp-654321 EMP-654321, not EMP-1234567, XEMP-123456, EMP-12345";
        let got = c.classify(&text[..]).unwrap();
        assert_eq!(got.detectors, named(&[("employee-id", 2)]));
        assert_eq!(got.class, Class::Personal);
        // They count toward the threshold with the built-in detectors.
        let c = Classifier::new(&ClassifyConfig {
            personal_threshold: 3,
            pattern: vec![pattern_config(EMPLOYEE_ID, 256)],
            ..ClassifyConfig::default()
        })
        .unwrap();
        let got = c.classify(&b"EMP-123456, bob@example.com"[..]).unwrap();
        assert_eq!(got.class, Class::General);
        let got = c
            .classify(&b"EMP-123456, EMP-123457, bob@example.com"[..])
            .unwrap();
        assert_eq!(got.class, Class::Personal);
        assert_eq!(got.detectors, named(&[("email", 1), ("employee-id", 2)]));
        // A sensitive pattern makes the file sensitive at its first match.
        let c = patterns(&[
            EMPLOYEE_ID,
            ("project", r"(?i)\bproject (?:x|y)\b", "none", "sensitive"),
        ])
        .unwrap();
        let got = c
            .classify(&b"EMP-123456 on Project X, EMP-123457"[..])
            .unwrap();
        assert_eq!(
            (got.class, got.detectors),
            (Class::Sensitive, named(&[("project", 1)]))
        );
    }

    #[test]
    fn validators_take_valid_matches_and_leave_the_rest() {
        let iban = r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b";
        let cases: &[(&str, &str, &str, u64)] = &[
            ("none", r"ref [0-9]+", "ref 1 ref 22", 2),
            ("luhn", r"[0-9]{16}", "4111111111111111", 1),
            ("luhn", r"[0-9]{16}", "4111111111111112", 0),
            ("luhn", r"No\. [0-9 ]+", "No. 7992 7398 713", 1),
            ("luhn", r"No\. [0-9]", "No. 0", 0),
            ("payment-card", r"[0-9]{16}", "4111111111111111", 1),
            // Luhn-valid, but no issuer starts with 1.
            ("payment-card", r"[0-9]{16}", "1234567812345670", 0),
            ("mod97", r"\b[0-9]{10}\b", "account 1000000064", 1),
            ("mod97", r"\b[0-9]{10}\b", "account 1000000065", 0),
            // Letters count as 10 to 35, whatever their case.
            ("mod97", r"\b[A-Za-z]{2}[0-9]{8}\b", "ref AB10000096", 1),
            ("mod97", r"\b[A-Za-z]{2}[0-9]{8}\b", "ref ab10000096", 1),
            ("mod97", r"\b[A-Za-z]{2}[0-9]{8}\b", "ref AC10000096", 0),
            ("iban", iban, "GB82 WEST 1234 5698 7654 32", 1),
            ("iban", iban, "GB82WEST12345698765432", 1),
            ("iban", iban, "GB82 WEST 1234 5698 7654 33", 0),
            ("iban", iban, "XX82 WEST 1234 5698 7654 32", 0),
            ("us-ssn", r"[0-9]{3} [0-9]{2} [0-9]{4}", "123 45 6789", 1),
            ("us-ssn", r"[0-9]{3} [0-9]{2} [0-9]{4}", "666 45 6789", 0),
            ("us-ssn", r"[0-9]{3} [0-9]{2} [0-9]{4}", "123 00 6789", 0),
        ];
        for (validator, regex, text, want) in cases {
            let c = patterns(&[("custom", regex, validator, "personal")]).unwrap();
            let got = c.classify(text.as_bytes()).unwrap();
            let count = got.detectors.get("custom").copied().unwrap_or(0);
            assert_eq!(count, *want, "{validator} on {text:?}");
        }
    }

    #[test]
    fn custom_matches_are_found_once_across_reads_up_to_their_length() {
        let c = patterns(&[EMPLOYEE_ID]).unwrap();
        for at in [
            CHUNK - 270,
            CHUNK - 261,
            CHUNK - 260,
            CHUNK - 259,
            CHUNK - 10,
            CHUNK - 5,
            CHUNK - 1,
            CHUNK,
        ] {
            let mut data = vec![b' '; 3 * CHUNK];
            data[at..at + 10].copy_from_slice(b"EMP-123456");
            let got = c.classify(&data[..]).unwrap();
            assert_eq!(got.detectors, named(&[("employee-id", 1)]), "at {at}");
            // Glued to a letter on either side across the read boundary, it is no match.
            for glue in [at - 1, at + 10] {
                let mut glued = data.clone();
                glued[glue] = b'x';
                let got = c.classify(&glued[..]).unwrap();
                assert!(got.detectors.is_empty(), "at {at}, glued at {glue}");
            }
        }
        let text = "EMP-000001 EMP-000002EMP-000003 (EMP-000004) ".repeat(300);
        for step in [1, 7, 100, CHUNK] {
            let got = c
                .classify(Trickle {
                    data: text.as_bytes(),
                    step,
                })
                .unwrap();
            assert_eq!(got.detectors, named(&[("employee-id", 600)]), "{step}");
        }
        // A match longer than max-length is not counted, wherever the reads fall.
        let c = Classifier::new(&ClassifyConfig {
            pattern: vec![pattern_config(
                ("ticket", r"T-[0-9]+", "none", "personal"),
                600,
            )],
            ..ClassifyConfig::default()
        })
        .unwrap();
        for (digits, want) in [(598, 1), (599, 0), (5000, 0)] {
            let text = format!("  T-{}  ", "7".repeat(digits)).repeat(2000);
            for step in [CHUNK, 1000] {
                let got = c
                    .classify(Trickle {
                        data: text.as_bytes(),
                        step,
                    })
                    .unwrap();
                let count = got.detectors.get("ticket").copied().unwrap_or(0);
                assert_eq!(count, 2000 * want, "{digits} digits, reads of {step}");
            }
        }
    }

    #[test]
    fn bad_patterns_are_refused_naming_their_key() {
        let cases: &[(&[Spec], &str, &str)] = &[
            (
                &[("id", r"EMP-[0-9", "none", "personal")],
                "classify.pattern[0].regex",
                "unclosed character class",
            ),
            (
                &[("id", r"x*", "none", "personal")],
                "classify.pattern[0].regex",
                "empty text",
            ),
            (
                &[("id", r"x", "crc32", "personal")],
                "classify.pattern[0].validator",
                "unknown validator \"crc32\"; expected one of: none, luhn, mod97",
            ),
            (
                &[("id", r"x", "none", "secret")],
                "classify.pattern[0].class",
                "expected personal or sensitive",
            ),
            (
                &[("", r"x", "none", "personal")],
                "classify.pattern[0].name",
                "non-empty",
            ),
            (
                &[(" id", r"x", "none", "personal")],
                "classify.pattern[0].name",
                "non-empty",
            ),
            (
                &[("email", r"x", "none", "personal")],
                "classify.pattern[0].name",
                "built-in",
            ),
            (
                &[("sensitive-keyword", r"x", "none", "personal")],
                "classify.pattern[0].name",
                "built-in",
            ),
            (
                &[EMPLOYEE_ID, ("x", "x", "none", "personal"), EMPLOYEE_ID],
                "classify.pattern[2].name",
                "classify.pattern[0] too",
            ),
        ];
        for (list, key, message) in cases {
            let e = patterns(list).err().expect(key);
            assert_eq!(e.key, *key, "{e}");
            assert!(e.message.contains(message), "{key}: {e}");
        }
        let e = Classifier::new(&ClassifyConfig {
            pattern: vec![pattern_config(("id", "x", "none", "personal"), 0)],
            ..ClassifyConfig::default()
        })
        .err()
        .expect("max-length 0");
        assert_eq!(e.key, "classify.pattern[0].max-length");
    }

    /// Hands out at most `step` bytes per read.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    const EVERY_DETECTOR: &str = "mail ann@example.org, card 4111 1111 1111 1111, \
        IBAN GB82 WEST 1234 5698 7654 32, ssn 123-45-6789, call +44 20 7946 0018, \
        +1 212-555-0199 or (212) 555-0123 or 212-555-0124, DOB 31/12/1990, the patient. ";

    /// Text of about `len` bytes made of pieces of every detector's matches and near
    /// misses, keywords in mixed case, punctuation and bytes beyond ASCII.
    fn random_text(rng: &mut rand::rngs::StdRng, len: usize) -> Vec<u8> {
        let pieces: &[&[u8]] = &[
            b" ",
            b"  ",
            b"\n",
            b"a",
            b"Z",
            b"@",
            b"+",
            b"(",
            b")",
            b"-",
            b".",
            b"/",
            b",",
            b"0",
            b"1",
            b"2",
            b"4",
            b"9",
            b"4111 1111 1111 1111",
            b"bob@example.com",
            b"GB82 WEST 1234 5698 7654 32",
            b"123-45-6789",
            b"+44 20 7946 0018",
            b"(212) 555-0123",
            b"212-555-0124",
            b"415.555.0199",
            b"DOB ",
            b"born ",
            b"31/12/1990",
            b"1984-02-29",
            b"17 March 1984",
            b"March 17, 1984",
            b"de ",
            b"patient",
            b"EMP-123456",
            b"\xc3\xa9",
            b"\xe6\x97\xa5",
            b"\xff",
            b"PaTiEnt",
            b"client data",
            b"Client  Data",
        ];
        text_from_pieces(rng, pieces, len)
    }

    #[test]
    fn random_text_gives_the_same_result_whatever_the_reads() {
        use rand::{Rng, SeedableRng};
        let c = Classifier::new(&ClassifyConfig {
            sensitive_keywords: vec!["never-there".into()],
            personal_keywords: vec!["patient".into()],
            pattern: vec![pattern_config(EMPLOYEE_ID, 256)],
            ..ClassifyConfig::default()
        })
        .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..40 {
            let len = match round % 10 {
                0 => 3 * CHUNK,
                _ => rng.gen_range(0..20_000),
            };
            let data = random_text(&mut rng, len);
            let whole = c.classify(&data[..]).unwrap();
            for step in [1, 3, 64, 1000, 4093, CHUNK] {
                if step < 64 && data.len() > CHUNK {
                    continue;
                }
                let got = c.classify(Trickle { data: &data, step }).unwrap();
                assert_eq!(got, whole, "round {round}, reads of {step} bytes");
            }
        }
    }

    #[test]
    fn every_instruction_level_gives_the_same_result() {
        use rand::{Rng, SeedableRng};
        let few = ClassifyConfig {
            sensitive_keywords: vec!["never-there".into()],
            personal_keywords: vec!["patient".into(), "client data".into()],
            pattern: vec![pattern_config(EMPLOYEE_ID, 256)],
            ..ClassifyConfig::default()
        };
        // More keywords than the vector pass probes: they are searched for apart.
        let many = ClassifyConfig {
            personal_keywords: (0..12)
                .map(|k| format!("word{k}"))
                .chain(["patient".into()])
                .collect(),
            ..few.clone()
        };
        let sensitive = ClassifyConfig {
            sensitive_keywords: vec!["client data".into()],
            ..few.clone()
        };
        let levels = Level::available();
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for cfg in [few, many, sensitive] {
            let classifiers: Vec<_> = levels
                .iter()
                .map(|&level| Classifier::on(&cfg, level).unwrap())
                .collect();
            for round in 0..30 {
                let len = match round % 10 {
                    0 => CHUNK + 5_000,
                    _ => rng.gen_range(0..20_000),
                };
                let data = random_text(&mut rng, len);
                let want = classifiers[0].classify(&data[..]).unwrap();
                for (c, level) in classifiers.iter().zip(&levels).skip(1) {
                    let got = c
                        .classify(Trickle {
                            data: &data,
                            step: 4093,
                        })
                        .unwrap();
                    assert_eq!(
                        got,
                        want,
                        "{} against portable, round {round}",
                        level.name()
                    );
                }
            }
        }
    }

    #[test]
    fn a_date_at_the_very_start_is_looked_at_without_a_label() {
        // Dates with no byte before them, and dates of birth whose label is near the start
        // (looked for byte by byte) or further in (looked for 32 bytes at a time).
        for (text, births) in [
            ("2026-12-05T10:00:00Z INFO started", 0),
            ("1984-03-17", 0),
            ("12/03/1984 was a Monday", 0),
            ("DOB 12/03/1984", 1),
            ("Date of birth: 1984-03-17", 1),
            (
                "The form was filled in on Tuesday. Date of birth: 1984-03-17",
                1,
            ),
            (
                "The form was filled in on Tuesday, and then: born 17/03/1984",
                1,
            ),
            (
                "The form was filled in on Tuesday, and then: stubborn 17/03/1984",
                0,
            ),
        ] {
            let got = classify(text).detectors.get("date-of-birth").copied();
            assert_eq!(got.unwrap_or(0), births, "{text}");
        }
    }

    #[test]
    fn every_detector_counts_once_however_the_reads_fall() {
        let per_sample = [
            ("date-of-birth", 1),
            ("email", 1),
            ("iban", 1),
            ("payment-card", 1),
            ("personal-keyword", 1),
            ("phone", 4),
            ("us-ssn", 1),
        ];
        let want = |samples: u64| -> BTreeMap<String, u64> {
            per_sample
                .iter()
                .map(|(k, n)| (k.to_string(), n * samples))
                .collect()
        };
        let c = keywords(&["confidential".into()], &["patient".into()], 1);
        let small = EVERY_DETECTOR.repeat(5);
        for step in [1, 2, 3, 7, 63, 64, 65, 200, CHUNK] {
            let got = c
                .classify(Trickle {
                    data: small.as_bytes(),
                    step,
                })
                .unwrap();
            assert_eq!(got.detectors, want(5), "reads of {step} bytes");
        }
        // Over several full reads, every item straddles a read boundary somewhere.
        let samples = 3 * CHUNK / EVERY_DETECTOR.len() + 1;
        let big = EVERY_DETECTOR.repeat(samples);
        for step in [4093, CHUNK, CHUNK + 1] {
            let got = c
                .classify(Trickle {
                    data: big.as_bytes(),
                    step,
                })
                .unwrap();
            assert_eq!(got.detectors, want(samples as u64), "reads of {step} bytes");
        }
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid(&[
            4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
        ]));
        assert!(!luhn_valid(&[
            4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2
        ]));
        assert!(!luhn_valid(&[]));
    }

    #[test]
    fn birth_dates_with_month_names_dotted_numbers_and_look_alikes() {
        use Class::{General, Personal};
        expect_classes(&[
            ("Born March 17, 1984 in Ohio.", Personal),
            ("Date of birth: 17 March 1984", Personal),
            ("DOB: Mar 7th 1984", Personal),
            ("Geburtsdatum: 3. März 1975", Personal),
            ("Date de naissance : 12 février 1990", Personal),
            ("Fecha de nacimiento: 14 de febrero de 1988", Personal),
            ("D.O.B.: 17/03/1984", Personal),
            // Control bytes are no dots, though they match one once folded like letters.
            ("D.O\x0eB 17/03/1984", General),
            ("D\x0eO.B 17/03/1984", General),
            // Capitals, accented ones too, abbreviations with their dot, ordinals.
            ("GEBURTSDATUM: 3. MÄRZ 1975", Personal),
            ("DATE DE NAISSANCE : 12 FÉVRIER 1990", Personal),
            ("DOB: Aug. 3RD, 1984", Personal),
            ("born 17.. March.. 1984", Personal),
            ("born 117 March 1984", General),
            // However the year is set off: a comma alone, two spaces, then an end.
            ("Date of birth: March 17,1984", Personal),
            ("Date of birth: March 17,1984.", Personal),
            ("Date of birth: March 17,1984\n", Personal),
            ("Date of birth: 17 March  1984", Personal),
            ("Date of birth: 17  March 1984 ", Personal),
            ("born 3x March 1984", General),
            // A month name and a year without a label, or a date that does not exist.
            ("In March 2023 we shipped 17 items.", General),
            ("Released 17 March 1984 to stores.", General),
            ("born 31 February 1984", General),
            // North American numbers written with dots; not when they run on.
            ("Call the desk at 415.555.0199 after nine.", Personal),
            ("Build 415.555.0199.7 is out.", General),
            ("Version 100.200.3000 ships today.", General),
            // Signed decimals are no international numbers.
            ("Location: +48.856613, +2.352222 (Paris office).", General),
            ("Avogadro: +6.02214076e23 per mole.", General),
            // 13 digits, all three Luhn-valid: a valid EAN-13 is a barcode, a Visa number that is not
            // an EAN-13 is a card.
            ("EAN 4000000000006 toner", General),
            ("Old Visa 4222222222222 on file", Personal),
            ("Maestro 5018 0000 0000 7", General),
        ]);
    }

    #[test]
    fn french_and_british_numbers_written_nationally() {
        use Class::{General, Personal};
        expect_classes(&[
            ("Portable : 06 12 34 56 78", Personal),
            ("Bureau 01.23.45.67.89, merci", Personal),
            ("Call 020 7946 0958 today", Personal),
            ("Manchester office 0161 496 0000.", Personal),
            ("Mobile 07700 900123", Personal),
            // Six pairs, a leading 00, a group that runs on, or groups the plan has not.
            ("Tirage 01 02 03 04 05 06", General),
            ("Code 00 12 34 56 78", General),
            ("Ref 020 7946 09581", General),
            ("Lot 0555 12 3456 done", General),
            ("Bin 012 3456 7890", General),
        ]);
    }
}
