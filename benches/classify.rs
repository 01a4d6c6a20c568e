//! Classification throughput on plain text, against reading the same file in the same run.
//!
//! `cargo bench --bench classify [-- MIB]` (default 256 MiB per text). Two texts:
//! - "mixed": every other line holds numbers, and every eighth an e-mail address and a
//!   phone number, with dates, log lines, code and three languages in between: the hard
//!   case, each number a place where detectors must look;
//! - "prose": sentences as in letters and reports, one in four with a date, a room or an
//!   amount.
//!
//! Each is read once to warm the page cache, then, on one core, five rounds each time
//! reading it, classifying it with the default keywords, and classifying it as the
//! pipeline does (its encoding told first). A round's ratio is its classification rate over
//! its read rate, both measured back to back, so that the machine's speed drifting between
//! rounds moves both; the median of the five is reported (issue #7's goal: at least 0.30).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use backupfs::config::ClassifyConfig;
use backupfs::pipeline::classify::Classifier;
use backupfs::pipeline::extract::{self, Limits};

const LINES: &[&str] = &[
    "The quarterly report was sent to the board on Tuesday afternoon.\n",
    "Order 1234567812345670 shipped in 3 parcels, version 2.14.7 of the firmware.\n",
    "Contact the office at (212) 555-0123 or write to office@example.org for help.\n",
    "fn main() { let total: u64 = items.iter().map(|i| i.price).sum(); }\n",
    "2026-12-05T10:00:00Z INFO request id=9f8e7d6c latency_ms=42 status=200\n",
    "Die Sitzung wurde auf den 12.03.2027 verschoben; bitte Unterlagen mitbringen.\n",
    "Le rapport final sera disponible la semaine prochaine pour tous les membres.\n",
    "Invoice total 4,512.90 EUR due within 30 days of receipt of goods.\n",
];

const PROSE: &[&str] = &[
    "The quarterly report was sent to the board on Tuesday afternoon.\n",
    "Please find attached the minutes of the meeting and the revised budget.\n",
    "Le rapport final sera disponible la semaine prochaine pour tous les membres.\n",
    "The next meeting is on 12 March 2027 in room 204, from ten until noon.\n",
    "We thank everyone who took part in the survey for their time and candour.\n",
    "Die Sitzung wurde verschoben; bitte bringen Sie die Unterlagen mit.\n",
    "Travel costs came to 1,250 euros, a little under the 1,400 planned.\n",
    "Questions about the agenda may be sent to the secretary before Friday.\n",
];

const ROUNDS: usize = 5;

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let mib: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if benching { 256 } else { 4 });
    assert!(mib > 0, "the text size is in MiB and must be at least 1");
    let dir = tempfile::tempdir().expect("temp dir");
    // The default keywords: "confidential", "password", "client data".
    let classifier = Classifier::new(&ClassifyConfig::default()).expect("default classifier");
    println!(
        "classify benchmark, one core, {ROUNDS} rounds, medians (goal: ratio >= 0.30); scan: {}",
        backupfs::pipeline::classify::instructions()
    );
    for (name, lines) in [("mixed", LINES), ("prose", PROSE)] {
        let path = dir.path().join(format!("{name}.txt"));
        let written = write_text(&path, lines, mib << 20);
        let detectors = measure(&classifier, name, &path, written);
        if name == "mixed" {
            assert!(
                detectors.contains_key("email") && detectors.contains_key("phone"),
                "the mixed text holds addresses and phone numbers: {detectors:?}"
            );
        } else {
            assert!(
                detectors.is_empty(),
                "the prose holds no personal data: {detectors:?}"
            );
        }
    }
}

/// Writes `lines`, taken seven apart in turn, to `path` until `size` bytes; returns how many.
fn write_text(path: &Path, lines: &[&str], size: usize) -> usize {
    assert_ne!(lines.len() % 7, 0, "seven apart must reach every line");
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    let (mut written, mut i) = (0, 0);
    while written < size {
        let line = lines[i % lines.len()].as_bytes();
        out.write_all(line).expect("write");
        written += line.len();
        i += 7;
    }
    out.flush().expect("flush");
    written
}

/// Times the rounds on one file and prints its line; returns what the detectors found.
fn measure(
    classifier: &Classifier,
    name: &str,
    path: &Path,
    written: usize,
) -> BTreeMap<String, u64> {
    let read_all = || {
        let mut file = std::fs::File::open(path).expect("open");
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0;
        loop {
            match file.read(&mut buf).expect("read") {
                0 => break n,
                got => n += got,
            }
        }
    };
    assert_eq!(read_all(), written, "warm-up read");
    let limits = Limits::from(&ClassifyConfig::default());
    let timed = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        f();
        started.elapsed().as_secs_f64()
    };
    let (mut rounds, mut detectors) = (Vec::new(), None);
    for _ in 0..ROUNDS {
        let read = timed(&mut || assert_eq!(read_all(), written));
        let mut classified = None;
        let classify = timed(&mut || {
            let file = std::fs::File::open(path).expect("open");
            classified = Some(classifier.classify(file).expect("classify"));
        });
        let mut examined = None;
        let examine = timed(&mut || {
            let file = std::fs::File::open(path).expect("open");
            examined = Some(extract::examine(classifier, &file, &limits).expect("examine"));
        });
        let (classified, examined) = (classified.expect("ran"), examined.expect("ran"));
        assert_eq!(examined.classification.detectors, classified.detectors);
        detectors = Some(classified.detectors);
        rounds.push([read, classify, examine]);
    }
    let mb = written as f64 / 1e6;
    // The median over the rounds of each round's rate, or of its ratio to its own read.
    let median = |f: &dyn Fn(&[f64; 3]) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "  {name:<6} {mb:>4.0} MB   read {:>5.0} MB/s   classify {:>5.0} MB/s, ratio {:.2}   \
         as the pipeline (encoding told first) {:>5.0} MB/s, ratio {:.2}",
        median(&|r| mb / r[0]),
        median(&|r| mb / r[1]),
        median(&|r| r[0] / r[1]),
        median(&|r| mb / r[2]),
        median(&|r| r[0] / r[2]),
    );
    detectors.expect("five rounds")
}
