//! Stage 2: sort a file into sensitive, personal or general, reading it once in chunks.
//!
//! Sensitive means a configured keyword appears (case-insensitively). Personal means the
//! file holds identifiable data: an e-mail address or a payment card number that passes the
//! Luhn check. Chunks overlap by a small window so a match split across two reads is found.

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

/// The class and the detectors that fired (names only, never the matched values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub class: Class,
    pub detectors: Vec<&'static str>,
}

pub struct Classifier {
    /// All keywords in one automaton, matched ASCII-case-insensitively in a single pass.
    keywords: Option<AhoCorasick>,
    overlap: usize,
}

/// Longest span a personal-data match can take: a 254-byte e-mail address.
const PERSONAL_WINDOW: usize = 256;

impl Classifier {
    pub fn new(keywords: &[String]) -> Self {
        let keywords: Vec<&str> = keywords
            .iter()
            .map(|k| k.trim())
            .filter(|k| !k.is_empty())
            .collect();
        let longest = keywords.iter().map(|k| k.len()).max().unwrap_or(0);
        let automaton = (!keywords.is_empty())
            .then(|| {
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build(&keywords)
            })
            .and_then(Result::ok);
        Self {
            keywords: automaton,
            overlap: longest.max(PERSONAL_WINDOW),
        }
    }

    pub fn classify<R: Read>(&self, mut reader: R) -> io::Result<Classification> {
        let mut window: Vec<u8> = Vec::with_capacity(CHUNK + self.overlap);
        let mut buf = vec![0u8; CHUNK];
        let (mut email, mut card) = (false, false);
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            window.extend_from_slice(&buf[..n]);
            if self.keywords.as_ref().is_some_and(|k| k.is_match(&window)) {
                return Ok(Classification {
                    class: Class::Sensitive,
                    detectors: vec!["keyword"],
                });
            }
            email = email || has_email(&window);
            card = card || has_card_number(&window);
            let keep = window.len().saturating_sub(self.overlap);
            window.drain(..keep);
        }
        let detectors: Vec<&'static str> = [(email, "email"), (card, "payment-card")]
            .into_iter()
            .filter_map(|(hit, name)| hit.then_some(name))
            .collect();
        let class = if detectors.is_empty() {
            Class::General
        } else {
            Class::Personal
        };
        Ok(Classification { class, detectors })
    }
}

fn is_local_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._%+-".contains(&b)
}

fn is_domain_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}

/// An address is `local@domain.tld`: a non-empty local part, a domain with at least one dot,
/// labels that neither start nor end with `-` or `.`, and an alphabetic TLD of 2+ letters.
fn has_email(text: &[u8]) -> bool {
    text.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'@')
        .any(|(at, _)| {
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

/// Finds runs of 13 to 19 digits, optionally grouped by single spaces or dashes, that pass
/// the Luhn check and stand alone (no digit right before or after).
fn has_card_number(text: &[u8]) -> bool {
    let mut i = 0;
    while i < text.len() {
        if !text[i].is_ascii_digit() || (i > 0 && text[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        let (digits, end) = digit_run(&text[i..]);
        if (13..=19).contains(&digits.len()) && luhn_valid(&digits) {
            return true;
        }
        i += end.max(1);
    }
    false
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
        let c = Classifier::new(&[
            "confidential".into(),
            "password".into(),
            "client data".into(),
        ]);
        c.classify(text.as_bytes()).unwrap()
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
        for (text, want) in cases {
            assert_eq!(classify(text).class, want, "{text:?}");
        }
    }

    #[test]
    fn detectors_are_named_not_valued() {
        let c = classify("bob@example.com 4111 1111 1111 1111");
        assert_eq!(c.detectors, vec!["email", "payment-card"]);
    }

    #[test]
    fn matches_across_chunk_boundaries() {
        for keyword_at in [CHUNK - 5, CHUNK - 1, CHUNK, 2 * CHUNK - 3] {
            let mut data = vec![b'x'; 3 * CHUNK];
            data[keyword_at..keyword_at + 12].copy_from_slice(b"Confidential");
            let c = Classifier::new(&["confidential".into()]);
            assert_eq!(
                c.classify(&data[..]).unwrap().class,
                Class::Sensitive,
                "{keyword_at}"
            );
        }
        let mut data = vec![b' '; 2 * CHUNK];
        let card = b"4111 1111 1111 1111";
        data[CHUNK - 7..CHUNK - 7 + card.len()].copy_from_slice(card);
        let c = Classifier::new(&[]);
        assert_eq!(c.classify(&data[..]).unwrap().class, Class::Personal);
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
