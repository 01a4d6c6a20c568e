//! Accuracy of the classification stage on a labelled corpus in every format the extractor
//! reads, through the `backupfs classify` command a user runs; documents that hold a card
//! number; and decompression bombs, which must stop at the caps in little memory.

#[path = "common/corpus/mod.rs"]
mod corpus;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use corpus::bomb::{self, GIB};
use corpus::{texts, Class, Format, Sample};
use serde_json::Value;

/// Runs `backupfs classify` with `args` on `paths` and returns each file's record by path.
fn classify(args: &[&str], paths: &[PathBuf]) -> HashMap<PathBuf, Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_backupfs"))
        .arg("classify")
        .args(args)
        .args(paths)
        .output()
        .expect("run backupfs classify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "backupfs classify failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let records: HashMap<PathBuf, Value> = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .map(|r| (PathBuf::from(r["path"].as_str().expect("a path")), r))
        .collect();
    for path in paths {
        assert!(
            records.contains_key(path),
            "no record for {}",
            path.display()
        );
    }
    records
}

/// Counts per class: how often it was expected, how often it was given, how often both.
#[derive(Default)]
struct Tally {
    expected: BTreeMap<Class, usize>,
    got: BTreeMap<Class, usize>,
    both: BTreeMap<Class, usize>,
}

impl Tally {
    fn add(&mut self, expected: Class, got: Option<Class>) {
        *self.expected.entry(expected).or_default() += 1;
        if let Some(got) = got {
            *self.got.entry(got).or_default() += 1;
            if got == expected {
                *self.both.entry(got).or_default() += 1;
            }
        }
    }

    /// Precision and recall of `class`, in percent (100 when nothing was given or expected).
    fn rates(&self, class: Class) -> (f64, f64) {
        let both = *self.both.get(&class).unwrap_or(&0) as f64;
        let pct = |n: Option<&usize>| match n.copied().unwrap_or(0) {
            0 => 100.0,
            n => 100.0 * both / n as f64,
        };
        (pct(self.got.get(&class)), pct(self.expected.get(&class)))
    }

    fn table(&self) -> String {
        let mut s = format!(
            "{:<10} {:>8} {:>6} {:>8} {:>10} {:>8}\n",
            "class", "expected", "got", "correct", "precision", "recall"
        );
        for class in Class::ALL {
            let (precision, recall) = self.rates(class);
            let n = |m: &BTreeMap<Class, usize>| *m.get(&class).unwrap_or(&0);
            s += &format!(
                "{:<10} {:>8} {:>6} {:>8} {:>9.1}% {:>7.1}%\n",
                class.as_str(),
                n(&self.expected),
                n(&self.got),
                n(&self.both),
                precision,
                recall
            );
        }
        s
    }
}

fn parse_class(record: &Value) -> Option<Class> {
    Class::ALL
        .into_iter()
        .find(|c| record["class"].as_str() == Some(c.as_str()))
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// What the classifier said about the corpus, against the labels.
#[derive(Default)]
struct Findings {
    tally: Tally,
    /// Files given another class than their label, by text: the file name without the
    /// format's suffix, then the format's suffix and what the classifier said (the format
    /// it read is checked apart).
    wrong: BTreeMap<String, Vec<(String, String)>>,
    /// Files marked partially classified (none is big or nested enough to be).
    partial: Vec<String>,
    /// Files read as another format than the one they were written in.
    formats: Vec<String>,
}

impl Findings {
    /// The misclassified files, one line per text when every format of it went wrong the
    /// same way.
    fn wrong(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (stem, files) in &self.wrong {
            let all_alike = files.iter().all(|(_, said)| *said == files[0].1);
            if files.len() == Format::ALL.len() && all_alike {
                lines.push(format!("  {stem:<48} (all formats) {}", files[0].1));
                continue;
            }
            for (suffix, said) in files {
                let name = match suffix.as_str() {
                    "" => stem.clone(),
                    _ => format!("{stem}.{suffix}"),
                };
                lines.push(format!("  {name:<62} {said}"));
            }
        }
        lines
    }
}

fn compare(samples: &[Sample], records: &HashMap<PathBuf, Value>) -> Findings {
    let mut f = Findings::default();
    for sample in samples {
        let (name, record) = (file_name(&sample.path), &records[&sample.path]);
        let got = parse_class(record);
        f.tally.add(sample.expected, got);
        if got != Some(sample.expected) {
            let suffix = sample.format.map_or("", Format::suffix);
            let stem = name.strip_suffix(&format!(".{suffix}")).unwrap_or(&name);
            let said = format!(
                "expected {:<9} got {} {}",
                sample.expected.as_str(),
                record["class"],
                record["detectors"],
            );
            let files = f.wrong.entry(stem.to_string()).or_default();
            files.push((suffix.to_string(), said));
        }
        if record["format"] != sample.reported {
            let want = sample.reported;
            f.formats.push(format!(
                "  {name}: read as {}, not {want}",
                record["format"]
            ));
        }
        if !record["partial"].is_null() {
            f.partial.push(format!("  {name}: {}", record["partial"]));
        }
    }
    f
}

#[test]
fn corpus_meets_the_precision_and_recall_bar() {
    let dir = tempfile::tempdir().unwrap();
    let samples = corpus::generate(dir.path());
    // Every class in every format.
    for format in Format::ALL {
        for class in Class::ALL {
            assert!(
                samples
                    .iter()
                    .any(|s| s.format == Some(format) && s.expected == class),
                "no {} sample as {format:?}",
                class.as_str()
            );
        }
    }
    let paths: Vec<PathBuf> = samples.iter().map(|s| s.path.clone()).collect();
    let f = compare(&samples, &classify(&[], &paths));

    let placed = samples.iter().filter(|s| s.format.is_none()).count();
    println!(
        "\n{} files: {} texts in {} formats, and {placed} documents with text off the body",
        samples.len(),
        (samples.len() - placed) / Format::ALL.len(),
        Format::ALL.len(),
    );
    println!("{}", f.tally.table());
    let list = |v: &[String]| format!("({}):\n{}", v.len(), v.join("\n"));
    let wrong = f.wrong();
    let misclassified = f.wrong.values().map(Vec::len).sum::<usize>();
    println!(
        "misclassified ({misclassified} files):\n{}",
        wrong.join("\n")
    );
    println!("partially classified {}", list(&f.partial));
    println!("read as another format {}", list(&f.formats));

    let (_, sensitive_recall) = f.tally.rates(Class::Sensitive);
    let (_, personal_recall) = f.tally.rates(Class::Personal);
    let (general_precision, _) = f.tally.rates(Class::General);
    assert!(
        sensitive_recall == 100.0 && personal_recall == 100.0 && general_precision >= 95.0,
        "below the bar (recall 100% on sensitive and personal, precision 95% on general):\n{}\n\
         misclassified ({misclassified} files):\n{}",
        f.tally.table(),
        wrong.join("\n")
    );
    assert!(
        f.partial.is_empty(),
        "partially classified {}",
        list(&f.partial)
    );
    assert!(
        f.formats.is_empty(),
        "read as another format {}",
        list(&f.formats)
    );
}

#[test]
fn docx_and_pdf_with_a_card_number_are_personal() {
    let dir = tempfile::tempdir().unwrap();
    let text = texts::order_confirmation();
    let files = [
        (Format::Docx, "docx"),
        (Format::PdfFlate, "pdf"),
        (Format::PdfPlain, "pdf"),
        (Format::PdfSubsetFont, "pdf"),
        (Format::PdfObjectStreams, "pdf"),
    ];
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|(format, _)| {
            let path = dir.path().join(format!("order.{}", format.suffix()));
            format.write(&path, &text);
            path
        })
        .collect();
    let records = classify(&[], &paths);
    for (path, (_, kind)) in paths.iter().zip(files) {
        let record = &records[path];
        assert_eq!(record["class"], "personal", "{record}");
        assert_eq!(record["detectors"]["payment-card"], 1, "{record}");
        assert_eq!(record["format"], kind, "{record}");
        assert!(record["partial"].is_null(), "{record}");
    }
}

/// A config whose `[classify]` replaces the sensitive keywords, adds a personal keyword
/// and asks for two personal-data matches; the rest is what any config needs.
fn write_classify_config(dir: &Path) -> PathBuf {
    let pass = dir.join("pass");
    std::fs::write(&pass, "a passphrase of some length\n").unwrap();
    std::fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    for sub in ["src", "mnt"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let config = dir.join("backupfs.toml");
    let text = format!(
        "[mount]\nsource = \"src\"\nmountpoint = \"mnt\"\n\
         [encrypt]\npassphrase-file = \"pass\"\n\
         [destination]\nkind = \"dir\"\npath = \"out\"\nallowed = [\"file://{}/out\"]\n\
         [metrics]\nlisten = \"\"\n\
         [classify]\nsensitive-keywords = [\"project falcon\"]\n\
         personal-keywords = [\"patient\"]\npersonal-threshold = 2\n",
        dir.display()
    );
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn a_config_file_sets_keywords_and_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_classify_config(dir.path());
    // (text, class by default, class under the config)
    let cases = [
        (
            "Minutes: Project Falcon starts in May.",
            "general",
            "sensitive",
        ),
        ("This memo is confidential.", "sensitive", "general"),
        (
            "Contact jane.doe@example.com for the keys.",
            "personal",
            "general",
        ),
        (
            "The patient asked for a copy; mail roe@example.org.",
            "personal",
            "personal",
        ),
    ];
    let mut paths = Vec::new();
    for (i, (line, _, _)) in cases.iter().enumerate() {
        let text = texts::Text {
            name: "config-case",
            class: Class::General,
            lines: vec![line.to_string()],
            cells: None,
        };
        for format in [Format::Docx, Format::PdfSubsetFont, Format::Utf16Be] {
            let path = dir.path().join(format!("case{i}.{}", format.suffix()));
            format.write(&path, &text);
            paths.push((path, i));
        }
    }
    let all: Vec<PathBuf> = paths.iter().map(|(p, _)| p.clone()).collect();
    let defaults = classify(&[], &all);
    let configured = classify(&["--config", config.to_str().unwrap()], &all);
    for (path, i) in &paths {
        let (line, by_default, by_config) = cases[*i];
        let name = file_name(path);
        assert_eq!(
            defaults[path]["class"], by_default,
            "{name} {line:?} by default"
        );
        assert_eq!(
            configured[path]["class"], by_config,
            "{name} {line:?} under the config"
        );
    }
}

/// Normalises white space, so a line compares equal however a reader spaces it.
fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text pdftotext reads from `path`, white space normalised.
fn pdftotext(path: &Path) -> String {
    let out = Command::new("pdftotext")
        .args(["-q", "-enc", "UTF-8", "-raw"])
        .arg(path)
        .arg("-")
        .output()
        .unwrap();
    assert!(out.status.success(), "pdftotext {}", path.display());
    words(&String::from_utf8(out.stdout).unwrap())
}

#[test]
fn generated_pdfs_are_read_by_pdftotext() {
    if Command::new("pdftotext").arg("-v").output().is_err() {
        println!("skipped: pdftotext is not installed (package poppler-utils)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for text in texts::all() {
        for format in [
            Format::PdfFlate,
            Format::PdfPlain,
            Format::PdfSubsetFont,
            Format::PdfObjectStreams,
        ] {
            let path = dir
                .path()
                .join(format!("{}.{}", text.name, format.suffix()));
            format.write(&path, &text);
            let got = pdftotext(&path);
            let want = words(&corpus::pdf_lines(&text).join("\n"));
            assert_eq!(got, want, "{}", path.display());
        }
    }
    corpus::placements::generate(dir.path());
    for (name, lines) in corpus::placements::pdf_lines() {
        let path = dir.path().join(corpus::placements::placement_name(name));
        assert_eq!(
            pdftotext(&path),
            words(&lines.join("\n")),
            "{}",
            path.display()
        );
    }
}

/// Checks, with Python's zipfile and XML parser (implementations independent of ours),
/// that each package named on stdin is a sound zip whose XML parts parse, whose content
/// types and relationships name parts that exist, and, for ODF, whose `mimetype` comes first
/// and stored. Prints one line per problem.
const CHECK_PACKAGES: &str = r#"
import posixpath, sys, zipfile, xml.dom.minidom as dom
for path in sys.stdin.read().split("\n"):
    if not path:
        continue
    z = zipfile.ZipFile(path)
    bad = z.testzip()
    if bad:
        print(path, "bad CRC in", bad)
    names = set(z.namelist())
    if path.endswith((".odt", ".ods")):
        first = z.infolist()[0]
        if first.filename != "mimetype" or first.compress_type != zipfile.ZIP_STORED:
            print(path, "mimetype is not first and stored")
    for name in names:
        if not name.endswith((".xml", ".rels")):
            continue
        doc = dom.parseString(z.read(name))
        for o in doc.getElementsByTagName("Override"):
            if o.getAttribute("PartName").lstrip("/") not in names:
                print(path, name, "names a missing part", o.getAttribute("PartName"))
        base = posixpath.dirname(posixpath.dirname(name))
        for r in doc.getElementsByTagName("Relationship"):
            target = posixpath.normpath(posixpath.join(base, r.getAttribute("Target")))
            if target not in names:
                print(path, name, "points at a missing part", target)
"#;

#[test]
fn generated_office_files_are_sound_packages() {
    let dir = tempfile::tempdir().unwrap();
    let samples = corpus::generate(dir.path());
    let packages: Vec<String> = samples
        .iter()
        .map(|s| s.path.to_string_lossy().into_owned())
        .filter(|p| {
            [".docx", ".xlsx", ".pptx", ".odt", ".ods"]
                .iter()
                .any(|e| p.ends_with(e))
        })
        .collect();
    assert!(
        packages.len() >= 5 * texts::all().len(),
        "{}",
        packages.len()
    );
    let mut child = match Command::new("python3")
        .args(["-c", CHECK_PACKAGES])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            println!("skipped: python3 cannot run ({e})");
            return;
        }
    };
    let list = packages.join("\n");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), list.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let problems = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && problems.is_empty(), "{problems}");
    println!("{} office packages checked", packages.len());
}

#[test]
fn bombs_inflate_to_what_their_headers_say() {
    let unit = bomb::unit(b"bla ");
    let d = bomb::deflate_repeated(b"<head>", &unit, 3, b"</head>");
    let mut want = b"<head>".to_vec();
    (0..3).for_each(|_| want.extend_from_slice(&unit));
    want.extend_from_slice(b"</head>");
    assert_eq!(d.size, want.len() as u64);

    let mut gz = Vec::new();
    flate2::read::GzDecoder::new(&bomb::gzip(&d)[..])
        .read_to_end(&mut gz)
        .expect("gzip checks CRC and size");
    assert!(gz == want, "gzip content");

    let zip = bomb::zip(&[("a.txt", &d), ("b/c.txt", &d)]);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    for i in 0..2 {
        let mut member = Vec::new();
        archive
            .by_index(i)
            .unwrap()
            .read_to_end(&mut member)
            .expect("zip checks the CRC");
        assert!(member == want, "zip member {i}");
    }
}

/// Runs `backupfs classify ARGS PATH` under GNU time and returns its record and its peak
/// resident set size in KiB.
///
/// `ru_maxrss` from our own `wait4` would not do: std starts children with vfork, and at
/// `execve` Linux folds the peak of the memory the child shared with us, this whole test
/// process, into the child's `ru_maxrss`. GNU time forks from a process of a few hundred
/// KiB, so what its `wait4` reads is the classifier's own peak.
fn classify_measured(args: &[&str], path: &Path) -> (Value, u64) {
    let rss_file = path.with_extension("rss");
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg(env!("CARGO_BIN_EXE_backupfs"))
        .arg("classify")
        .args(args)
        .arg(path)
        .output()
        .expect("run /usr/bin/time (package time)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "backupfs classify {} failed: {}\n{stdout}\n{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let record = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let rss = std::fs::read_to_string(&rss_file).unwrap();
    let rss = rss
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {rss:?}"));
    (record, rss)
}

/// The bombs: a docx whose document inflates to 3 GiB of text, a zip of four 1 GiB text
/// members and a zip holding that zip, a gzip of 6 GiB of text, and a gzip of 6 GiB of
/// zeros. Each comes with whether it is text (and so must be marked partial).
fn write_bombs(dir: &Path) -> Vec<(PathBuf, bool)> {
    let text = bomb::unit(b"bla ");
    let mut written = Vec::new();
    let mut put = |name: &str, bytes: Vec<u8>, text: bool| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        written.push((path, text));
    };

    let head = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<w:document \
                xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\">\
                <w:body><w:p><w:r><w:t xml:space=\"preserve\">";
    let tail = "</w:t></w:r></w:p></w:body></w:document>";
    let document =
        bomb::deflate_repeated(head.as_bytes(), &text, 3 * GIB / bomb::MIB, tail.as_bytes());
    let types = "<?xml version=\"1.0\"?><Types \
                 xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
                 <Override PartName=\"/word/document.xml\" ContentType=\"application/\
                 vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/></Types>";
    let types = bomb::deflate_repeated(types.as_bytes(), b"", 0, b"");
    put(
        "bomb.docx",
        bomb::zip(&[
            ("[Content_Types].xml", &types),
            ("word/document.xml", &document),
        ]),
        true,
    );

    let member = bomb::deflate_repeated(b"", &text, GIB / bomb::MIB, b"");
    let names = ["part1.txt", "part2.txt", "part3.txt", "part4.txt"];
    let members: Vec<(&str, &bomb::Deflated)> = names.iter().map(|n| (*n, &member)).collect();
    let zip = bomb::zip(&members);
    // The classic: the bomb inside another archive.
    let nested = corpus::formats::zip_parts(&[
        ("README.txt", b"Monthly export.\n".to_vec(), false),
        ("export/inner.zip", zip.clone(), true),
    ]);
    put("bomb.zip", zip, true);
    put("nested.zip", nested, true);

    let long = bomb::deflate_repeated(b"", &text, 6 * GIB / bomb::MIB, b"");
    put("bomb.txt.gz", bomb::gzip(&long), true);
    let zeros = bomb::deflate_repeated(b"", &vec![0; bomb::MIB as usize], 6 * GIB / bomb::MIB, b"");
    put("zeros.gz", bomb::gzip(&zeros), false);
    written
}

/// Prints one bomb's outcome and returns what is wrong with it.
fn judge_bomb(path: &Path, text: bool, what: &str, record: &Value, rss_kib: u64) -> Vec<String> {
    let on_disk = std::fs::metadata(path).unwrap().len();
    let name = file_name(path);
    println!(
        "{name:<12} {:>5.1} MiB on disk, {what}: peak RSS {:>5.1} MiB, class {}, partial {}",
        on_disk as f64 / 1048576.0,
        rss_kib as f64 / 1024.0,
        record["class"],
        record["partial"]
    );
    let mut failures = Vec::new();
    if rss_kib >= 64 * 1024 {
        failures.push(format!("{name} ({what}): peak RSS {rss_kib} KiB"));
    }
    // Text past the caps was never looked at, so the file cannot be called general.
    if text && (record["partial"].is_null() || record["class"] == "general") {
        failures.push(format!("{name} ({what}): not marked partial: {record}"));
    }
    failures
}

#[test]
fn bombs_stop_at_the_caps_in_little_memory() {
    let dir = tempfile::tempdir().unwrap();
    let bombs = write_bombs(dir.path());
    let mut failures = Vec::new();
    for (path, text) in &bombs {
        let caps = ["--max-bytes", "64MiB", "--max-time", "20s"];
        let (record, rss_kib) = classify_measured(&caps, path);
        failures.extend(judge_bomb(path, *text, "64MiB/20s", &record, rss_kib));
    }
    // The byte cap out of the way, the time cap stops the 6 GiB of text; and the built-in
    // caps stop it too.
    let (path, _) = bombs
        .iter()
        .find(|(p, _)| p.ends_with("bomb.txt.gz"))
        .unwrap();
    let start = std::time::Instant::now();
    let caps = ["--max-bytes", "1TiB", "--max-time", "2s"];
    let (record, rss_kib) = classify_measured(&caps, path);
    let took = start.elapsed();
    failures.extend(judge_bomb(path, true, "1TiB/2s", &record, rss_kib));
    println!("  the 2 s time cap stopped it after {took:.1?}");
    if took > std::time::Duration::from_secs(20) {
        failures.push(format!("the 2 s time cap took {took:?}"));
    }
    let (record, rss_kib) = classify_measured(&[], path);
    failures.extend(judge_bomb(path, true, "defaults", &record, rss_kib));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_pdf_stream_inflating_to_gibs_without_text_stops_at_the_time_cap() {
    // 4 GiB of drawing operators in one Flate stream: nothing for the byte cap to count,
    // so only the time cap can stop it. (The zlib check value at the end is never reached.)
    let ops = bomb::deflate_repeated(
        b"",
        &bomb::unit(b"0 0 m 10 10 l S\n"),
        4 * GIB / bomb::MIB,
        b"",
    );
    let mut stream = vec![0x78, 0x9c];
    stream.extend_from_slice(&ops.data);
    stream.extend_from_slice(&[0; 4]);
    let mut pdf = format!(
        "%PDF-1.4\n1 0 obj\n<< /Length {} /Filter /FlateDecode >>\nstream\n",
        stream.len()
    )
    .into_bytes();
    pdf.extend_from_slice(&stream);
    pdf.extend_from_slice(b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drawing.pdf");
    std::fs::write(&path, pdf).unwrap();

    let start = std::time::Instant::now();
    let (record, rss_kib) = classify_measured(&["--max-time", "2s"], &path);
    let took = start.elapsed();
    let failures = judge_bomb(&path, true, "2s", &record, rss_kib);
    println!("  the 2 s time cap stopped the PDF after {took:.1?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        record["partial"]
            .as_str()
            .unwrap()
            .contains("classify.max-time"),
        "{record}"
    );
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
}
