//! Documents written by the libraries people produce them with (ReportLab, python-docx,
//! openpyxl, odfpy), classified by `backupfs classify`: each file gets the class a person
//! would give it, and the detector that should fire does.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[test]
fn documents_from_real_producers_are_classified_by_their_text() {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/documents/make.py");
    // The Debian packages (python3-reportlab, python3-docx, python3-openpyxl, python3-odf)
    // install for the system interpreter.
    let made = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(dir.path())
        .output()
        .expect("run /usr/bin/python3");
    assert!(
        made.status.success(),
        "{} failed (scripts/test.sh installs its packages):\n{}",
        script.display(),
        String::from_utf8_lossy(&made.stderr)
    );
    let manifest: Vec<Value> = serde_json::from_slice(&made.stdout).unwrap();
    assert!(manifest.len() >= 20, "{} documents", manifest.len());

    let files: Vec<&str> = manifest
        .iter()
        .map(|m| m["file"].as_str().unwrap())
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_backupfs"))
        .arg("classify")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), manifest.len());

    let mut wrong = Vec::new();
    for (want, got) in manifest.iter().zip(&lines) {
        let file = want["file"].as_str().unwrap();
        assert_eq!(got["path"].as_str(), Some(file));
        let name = Path::new(file).file_name().unwrap().to_string_lossy();
        let extension = name.rsplit('.').next().unwrap();
        println!(
            "{name:<16} {:<10} {:<10} {} {}",
            want["class"].as_str().unwrap(),
            got["class"].as_str().unwrap(),
            got["detectors"],
            got["partial"]
        );
        let mut problems = Vec::new();
        if got["class"] != want["class"] {
            problems.push(format!("class {} (want {})", got["class"], want["class"]));
        }
        if let Some(detector) = want["detector"].as_str() {
            if got["detectors"][detector].as_u64().unwrap_or(0) == 0 {
                problems.push(format!("{detector} did not fire: {}", got["detectors"]));
            }
        }
        if !got["partial"].is_null() {
            problems.push(format!("partial: {}", got["partial"]));
        }
        if got["format"].as_str() != Some(extension) {
            problems.push(format!("read as {}", got["format"]));
        }
        if !problems.is_empty() {
            wrong.push(format!("{name}: {}", problems.join("; ")));
        }
    }
    assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
}

#[test]
fn what_is_not_a_regular_file_is_refused_by_name_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "nothing to see\n").unwrap();
    // No writer ever opens the FIFO: opening it to read would wait for ever.
    let out = Command::new(env!("CARGO_BIN_EXE_backupfs"))
        .arg("classify")
        .args([&fifo, dir.path(), &text])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("{}: not a regular file", fifo.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}: is a directory", dir.path().display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 of 3 files could not be classified"),
        "{stderr}"
    );
    // The regular file among them is still classified.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("\"class\":\"general\""), "{stdout}");
}
