//! Stage 2: sort a file into sensitive, personal or general, reading it once in chunks.
//!
//! Sensitive means a configured keyword appears (case-insensitively). Personal means the
//! file holds identifiable data that passes a validity check: an e-mail address, a payment
//! card number (issuer range and length, Luhn), an IBAN (country length, mod 97) or a
//! dashed US Social Security number in an issued range. Chunks overlap by a small window so a match split across two reads is found.

use std::collections::BTreeMap;
use std::io::{self, Read};

use aho_corasick::AhoCorasick;
use serde::Serialize;

use super::dedup::CHUNK;

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
/// A keyword stops the reading at once, so it counts 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub class: Class,
    pub detectors: BTreeMap<&'static str, u64>,
}

pub struct Classifier {
    /// Every keyword in one automaton, matched ASCII-case-insensitively in a single pass;
    /// pattern ids from `personal_from` on are personal keywords, the rest sensitive.
    keywords: Option<AhoCorasick>,
    personal_from: usize,
    overlap: usize,
    /// Personal-data matches (all detectors together) that make a file personal.
    threshold: u64,
}

/// The personal-data detectors: a name for the audit record and a counter of matches whose
/// anchor lies before `limit` in the text.
type Counter = fn(&[u8], usize) -> u64;
const DETECTORS: &[(&str, Counter)] = &[
    ("email", count_emails),
    ("payment-card", count_card_numbers),
    ("iban", count_ibans),
    ("us-ssn", count_us_ssns),
    ("phone", count_phone_numbers),
    ("date-of-birth", count_dates_of_birth),
];

/// Longest span a personal-data match can take: a 254-byte e-mail address.
const PERSONAL_WINDOW: usize = 256;

impl Classifier {
    /// `sensitive` keywords make a file sensitive; each `personal` keyword counts as one
    /// personal-data match. Both match whole words only, ignoring ASCII case.
    pub fn new(sensitive: &[String], personal: &[String], threshold: u64) -> Self {
        let clean = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .collect()
        };
        let (sensitive, personal) = (clean(sensitive), clean(personal));
        let personal_from = sensitive.len();
        let keywords: Vec<String> = sensitive.into_iter().chain(personal).collect();
        let longest = keywords.iter().map(String::len).max().unwrap_or(0);
        let automaton = (!keywords.is_empty())
            .then(|| {
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build(&keywords)
            })
            .and_then(Result::ok);
        Self {
            keywords: automaton,
            personal_from,
            // One byte more than the longest keyword, so a keyword that starts in the kept
            // tail always ends inside the window that scans it.
            overlap: (longest + 1).max(PERSONAL_WINDOW),
            threshold: threshold.max(1),
        }
    }

    /// Keywords standing as whole words in `window`: whether a sensitive one is there, and
    /// how many personal ones start before `limit`. `before` is the byte that preceded the
    /// window (none at the start of the file); `done` says nothing follows it.
    fn keywords_in(
        &self,
        window: &[u8],
        before: Option<u8>,
        done: bool,
        limit: usize,
    ) -> (bool, u64) {
        let Some(automaton) = &self.keywords else {
            return (false, 0);
        };
        let mut personal = 0;
        for m in automaton.find_overlapping_iter(window) {
            let (start, end) = (m.start(), m.end());
            let prev = if start == 0 {
                before
            } else {
                Some(window[start - 1])
            };
            let opens = prev.is_none_or(|b| !is_word_byte(b));
            // A keyword at the very end is judged once the next byte is read.
            let closes = match window.get(end) {
                Some(b) => !is_word_byte(*b),
                None => done,
            };
            if !(opens && closes) {
                continue;
            }
            if m.pattern().as_usize() < self.personal_from {
                return (true, 0);
            }
            if start < limit {
                personal += 1;
            }
        }
        (false, personal)
    }

    /// Reads `reader` once. Each pass scans the previous pass's tail plus a new chunk, and
    /// counts only matches anchored before the tail it keeps (all of them at the end), so a
    /// match split across reads is found once.
    pub fn classify<R: Read>(&self, mut reader: R) -> io::Result<Classification> {
        let mut window: Vec<u8> = Vec::with_capacity(CHUNK + self.overlap);
        let mut buf = vec![0u8; CHUNK];
        let mut counts = [0u64; DETECTORS.len()];
        let mut personal_keywords = 0;
        let mut before = None;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            window.extend_from_slice(&buf[..n]);
            let done = n == 0;
            let limit = if done {
                window.len()
            } else {
                window.len().saturating_sub(self.overlap)
            };
            let (sensitive, personal) = self.keywords_in(&window, before, done, limit);
            if sensitive {
                return Ok(Classification {
                    class: Class::Sensitive,
                    detectors: BTreeMap::from([("sensitive-keyword", 1)]),
                });
            }
            personal_keywords += personal;
            for (count, (_, counter)) in counts.iter_mut().zip(DETECTORS) {
                *count += counter(&window, limit);
            }
            if limit > 0 {
                before = Some(window[limit - 1]);
            }
            window.drain(..limit);
            if done {
                break;
            }
        }
        let detectors: BTreeMap<&'static str, u64> = DETECTORS
            .iter()
            .map(|(name, _)| *name)
            .zip(counts)
            .chain([("personal-keyword", personal_keywords)])
            .filter(|(_, n)| *n > 0)
            .collect();
        let class = if detectors.values().sum::<u64>() >= self.threshold {
            Class::Personal
        } else {
            Class::General
        };
        Ok(Classification { class, detectors })
    }
}

/// Letters, digits and `_` make up words; a keyword must not touch one on either side.
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._%+-".contains(&b)
}

fn is_domain_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

/// An address is `local@domain.tld`: a non-empty local part, a domain with at least one dot,
/// labels that neither start nor end with `-` or `.`, and an alphabetic TLD of 2+ letters.
fn count_emails(text: &[u8], limit: usize) -> u64 {
    text[..limit]
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'@')
        .filter(|(at, _)| {
            let at = *at;
            let local = text[..at]
                .iter()
                .rev()
                .take_while(|b| is_local_char(**b))
                .count();
            let domain_len = text[at + 1..]
                .iter()
                .take_while(|b| is_domain_char(**b))
                .count();
            let domain = text[at + 1..at + 1 + domain_len].trim_ascii_end_dots();
            local > 0 && valid_domain(domain)
        })
        .count() as u64
}

trait TrimDots {
    fn trim_ascii_end_dots(&self) -> &[u8];
}

impl TrimDots for [u8] {
    /// A sentence may end right after an address: "mail bob@example.com."
    fn trim_ascii_end_dots(&self) -> &[u8] {
        let end = self.iter().rposition(|b| *b != b'.').map_or(0, |i| i + 1);
        &self[..end]
    }
}

fn valid_domain(domain: &[u8]) -> bool {
    let labels: Vec<&[u8]> = domain.split(|b| *b == b'.').collect();
    let tld = labels.last().copied().unwrap_or_default();
    labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l[0] != b'-' && l[l.len() - 1] != b'-')
        && tld.len() >= 2
        && tld.iter().all(u8::is_ascii_alphabetic)
}

/// Finds runs of 12 to 19 digits, optionally grouped by single spaces or dashes, that stand
/// alone (no digit right before or after), start as a known card issuer's numbers do with a
/// length that issuer uses, and pass the Luhn check.
fn count_card_numbers(text: &[u8], limit: usize) -> u64 {
    let (mut i, mut found) = (0, 0);
    while i < limit {
        if !text[i].is_ascii_digit() || (i > 0 && text[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        let (digits, end) = digit_run(&text[i..]);
        if card_issuer_valid(&digits) && luhn_valid(&digits) {
            found += 1;
        }
        i += end.max(1);
    }
    found
}

/// Collects digits from the start of `text`, allowing one separator between digits.
fn digit_run(text: &[u8]) -> (Vec<u8>, usize) {
    let mut digits = Vec::new();
    let mut i = 0;
    while i < text.len() && digits.len() <= 19 {
        let b = text[i];
        if b.is_ascii_digit() {
            digits.push(b - b'0');
            i += 1;
        } else if (b == b' ' || b == b'-') && text.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
        } else {
            break;
        }
    }
    (digits, i)
}

/// Whether `digits` (values 0-9) start with a known issuer's prefix and have a length that
/// issuer uses: Visa, Mastercard, American Express, Discover, JCB, Diners Club, UnionPay
/// and Maestro. An order number of 16 digits that passes Luhn by chance mostly fails here.
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
        4 => matches!(len, 13 | 16 | 19),
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
            50 | 56..=59 => len >= 12,
            _ => false,
        },
        6 => {
            let discover = p4 == 6011 || (644..=649).contains(&p3) || p2 == 65;
            let unionpay = p2 == 62;
            ((discover || unionpay) && (16..=19).contains(&len)) || len >= 12
        }
        _ => false,
    }
}

/// Finds an IBAN: a country code, two check digits and the country's account number, all
/// together or in groups of four separated by single spaces, that has the length that
/// country uses and passes the mod-97 check.
fn count_ibans(text: &[u8], limit: usize) -> u64 {
    let last = limit.min(text.len().saturating_sub(14));
    (0..last)
        .filter(|&i| {
            let starts = text[i].is_ascii_uppercase()
                && text[i + 1].is_ascii_uppercase()
                && (i == 0 || !text[i - 1].is_ascii_alphanumeric());
            starts && iban_at(&text[i..])
        })
        .count() as u64
}

fn iban_at(text: &[u8]) -> bool {
    let Some(want) = iban_length(&text[..2]) else {
        return false;
    };
    // Collect alphanumerics, allowing a single space after every group of four.
    let mut chars = Vec::with_capacity(34);
    let mut i = 0;
    while i < text.len() && chars.len() < want {
        let b = text[i];
        if b.is_ascii_digit() || b.is_ascii_uppercase() {
            chars.push(b);
            i += 1;
        } else if b == b' ' && chars.len() % 4 == 0 && !chars.is_empty() {
            i += 1;
        } else {
            break;
        }
    }
    let ends = text.get(i).is_none_or(|b| !b.is_ascii_alphanumeric());
    chars.len() == want
        && ends
        && chars[2].is_ascii_digit()
        && chars[3].is_ascii_digit()
        && iban_mod97(&chars) == 1
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

/// Finds a US Social Security number written AAA-GG-SSSS, standing alone, in a range the
/// SSA issues: area not 000, 666 or 900-999, group not 00, serial not 0000. Nine bare
/// digits are left alone: too many other numbers look like them.
fn count_us_ssns(text: &[u8], limit: usize) -> u64 {
    text.windows(11)
        .enumerate()
        .take(limit)
        .filter(|(i, w)| {
            let (i, w) = (*i, *w);
            let digits = |r: std::ops::Range<usize>| w[r].iter().all(u8::is_ascii_digit);
            let shaped =
                digits(0..3) && w[3] == b'-' && digits(4..6) && w[6] == b'-' && digits(7..11);
            let alone = (i == 0 || !text[i - 1].is_ascii_alphanumeric() && text[i - 1] != b'-')
                && text
                    .get(i + 11)
                    .is_none_or(|b| !b.is_ascii_alphanumeric() && *b != b'-');
            if !(shaped && alone) {
                return false;
            }
            let num = |r: std::ops::Range<usize>| {
                w[r].iter()
                    .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'))
            };
            let (area, group, serial) = (num(0..3), num(4..6), num(7..11));
            area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
        })
        .count() as u64
}

/// Finds phone numbers: international ones (`+` and 8 to 15 digits, the first not 0, in
/// groups split by single spaces, dashes, dots or a parenthesised group) and North American
/// ones written `(212) 555-0123` or `212-555-0123` (area and exchange not starting with 0
/// or 1). Bare digit runs, dates and version strings do not qualify.
fn count_phone_numbers(text: &[u8], limit: usize) -> u64 {
    let mut found = 0;
    let mut i = 0;
    while i < limit {
        let alone = i == 0 || !(text[i - 1].is_ascii_alphanumeric() || text[i - 1] == b'+');
        let len = if !alone {
            None
        } else if text[i] == b'+' {
            international_phone(&text[i + 1..]).map(|n| n + 1)
        } else if text[i] == b'(' || text[i].is_ascii_digit() {
            north_american_phone(&text[i..])
        } else {
            None
        };
        match len {
            Some(n) => {
                found += 1;
                i += n;
            }
            None => i += 1,
        }
    }
    found
}

/// The length of an international number after its `+`, if one starts `text`.
fn international_phone(text: &[u8]) -> Option<usize> {
    let (mut digits, mut i) = (0, 0);
    let mut open = false;
    while i < text.len() {
        let b = text[i];
        let next_digit = text.get(i + 1).is_some_and(u8::is_ascii_digit);
        match b {
            b'0'..=b'9' => digits += 1,
            b' ' | b'-' | b'.' if digits > 0 && next_digit => {}
            b'(' if !open && digits > 0 && next_digit => open = true,
            b')' if open => open = false,
            _ => break,
        }
        i += 1;
    }
    let ends = text.get(i).is_none_or(|b| !b.is_ascii_alphanumeric());
    (text.first() != Some(&b'0') && (8..=15).contains(&digits) && !open && ends).then_some(i)
}

/// The length of a North American number, `(NXX) NXX-XXXX` or `NXX-NXX-XXXX`, if one starts
/// `text`.
fn north_american_phone(text: &[u8]) -> Option<usize> {
    let shape: &[u8] = if text.first() == Some(&b'(') {
        if text.get(5) == Some(&b' ') {
            b"(ddd) ddd-dddd"
        } else {
            b"(ddd)ddd-dddd"
        }
    } else {
        b"ddd-ddd-dddd"
    };
    let fits = text.len() >= shape.len()
        && shape.iter().zip(text).all(|(s, b)| match s {
            b'd' => b.is_ascii_digit(),
            _ => s == b,
        });
    let ends = text
        .get(shape.len())
        .is_none_or(|b| !b.is_ascii_alphanumeric() && *b != b'-');
    let digits: Vec<u8> = text[..shape.len().min(text.len())]
        .iter()
        .filter(|b| b.is_ascii_digit())
        .copied()
        .collect();
    (fits && ends && digits[0] >= b'2' && digits[3] >= b'2').then_some(shape.len())
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

/// Finds a date of birth: a label (above, as a whole word) followed within 20 bytes by a
/// real calendar date written YYYY-MM-DD, DD/MM/YYYY, MM/DD/YYYY or DD.MM.YYYY, with a
/// year from 1900 to 2099.
fn count_dates_of_birth(text: &[u8], limit: usize) -> u64 {
    (0..limit)
        .filter(|&i| {
            // Every label starts with one of these; most bytes stop here.
            matches!(text[i] | 0x20, b'd' | b'b' | b'g' | b'f')
                && (i == 0 || !is_word_byte(text[i - 1]))
                && BIRTH_LABELS.iter().any(|label| {
                    let end = i + label.len();
                    text.len() >= end
                        && text[i..end].eq_ignore_ascii_case(label)
                        && text.get(end).is_none_or(|b| !is_word_byte(*b))
                        && (end..(end + 20).min(text.len()))
                            .any(|j| !text[j - 1].is_ascii_digit() && date_at(&text[j..]))
                })
        })
        .count() as u64
}

/// Whether `text` starts with a valid date in one of the accepted layouts.
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
            2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
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
    !digits.is_empty() && sum % 10 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(text: &str) -> Classification {
        let c = Classifier::new(
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
        assert_eq!(
            c.detectors,
            BTreeMap::from([("email", 2), ("payment-card", 1)])
        );
    }

    #[test]
    fn matches_across_chunk_boundaries() {
        for keyword_at in [CHUNK - 5, CHUNK - 1, CHUNK, 2 * CHUNK - 3] {
            let mut data = vec![b' '; 3 * CHUNK];
            data[keyword_at..keyword_at + 12].copy_from_slice(b"Confidential");
            let c = Classifier::new(&["confidential".into()], &[], 1);
            assert_eq!(
                c.classify(&data[..]).unwrap().class,
                Class::Sensitive,
                "{keyword_at}"
            );
        }
        let mut data = vec![b' '; 2 * CHUNK];
        let card = b"4111 1111 1111 1111";
        data[CHUNK - 7..CHUNK - 7 + card.len()].copy_from_slice(card);
        let c = Classifier::new(&[], &[], 1);
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
            BTreeMap::from([("iban", 1), ("us-ssn", 1)])
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
        let c = Classifier::new(&[], &[], 1).classify(&data[..]).unwrap();
        assert_eq!(c.detectors, BTreeMap::from([("email", emails)]));
        let one = b"only bob@example.com here";
        let strict = Classifier::new(&[], &[], 2);
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
            BTreeMap::from([("personal-keyword", 2)])
        );
        // A word glued to the keyword across a read boundary, on either side.
        let c = Classifier::new(&["password".into()], &[], 1);
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
        let p = Classifier::new(&[], &["patient".into()], 1);
        for at in [
            CHUNK - PERSONAL_WINDOW - 1,
            CHUNK - PERSONAL_WINDOW,
            CHUNK - 3,
        ] {
            let mut data = vec![b' '; 3 * CHUNK];
            data[at..at + 7].copy_from_slice(b"patient");
            let c = p.classify(&data[..]).unwrap();
            assert_eq!(
                c.detectors,
                BTreeMap::from([("personal-keyword", 1)]),
                "{at}"
            );
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
            ("date of birth: 1985-02-29", Class::General),
            ("DOB 32/01/1990", Class::General),
            ("reborn 12/05/1990", Class::General),
            ("released 1990-05-12", Class::General),
        ];
        expect_classes(&cases);
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
}
