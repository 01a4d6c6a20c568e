//! Stage 3, gate 1: type, size and blacklist policy before any costly work.
//!
//! The blacklist is also enforced at the FUSE layer ([`Blacklist::is_blocked`] is the one
//! check both use), so a blacklisted name never even appears in the source directory.

use std::path::Path;

use globset::GlobSet;

use super::classify::Class;

/// Globs on the path inside the mount.
#[derive(Clone, Debug, Default)]
pub struct Blacklist(GlobSet);

impl Blacklist {
    pub fn new(globs: GlobSet) -> Self {
        Self(globs)
    }

    pub fn is_blocked(&self, path: &Path) -> bool {
        self.0.is_match(path)
    }
}

pub struct Gate1 {
    pub max_file_size: u64,
    pub blacklist: Blacklist,
    /// Lower-case extensions without the dot; empty allows every type.
    pub allowed_extensions: Vec<String>,
    /// Lower-case extensions without the dot that are refused; "" refuses names without one.
    pub denied_extensions: Vec<String>,
    /// Type names ([`Detected::name`]) that may pass; empty allows every type.
    pub allowed_types: Vec<String>,
    /// Type names that are refused.
    pub denied_types: Vec<String>,
    /// Refuse a file whose first bytes contradict its extension.
    pub reject_type_mismatch: bool,
    /// Each class's own size limit, checked once classify has told the class.
    pub class_max_file_size: ClassSizes,
}

/// `class.CLASS.max-file-size` of each class, if set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassSizes {
    pub sensitive: Option<u64>,
    pub personal: Option<u64>,
    pub general: Option<u64>,
}

impl ClassSizes {
    pub fn get(&self, class: Class) -> Option<u64> {
        match class {
            Class::Sensitive => self.sensitive,
            Class::Personal => self.personal,
            Class::General => self.general,
        }
    }
}

/// The class a name from the index or the catalog stands for.
pub fn class_named(name: &str) -> Option<Class> {
    [Class::Sensitive, Class::Personal, Class::General]
        .into_iter()
        .find(|c| c.as_str() == name)
}

/// A size for people: whole bytes below 1 KiB, else the largest binary unit, with one
/// decimal unless it is whole (`12 MiB`, `1.5 KiB`). Rounds down, so that a size just over
/// a limit never reads as the limit itself.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut unit = 0;
    while unit + 1 < UNITS.len() && bytes >> (10 * (unit + 2)) > 0 {
        unit += 1;
    }
    let base = 1u64 << (10 * (unit + 1));
    let (whole, tenths) = (bytes / base, (bytes % base) * 10 / base);
    match (tenths, bytes % base) {
        (_, 0) => format!("{whole} {}", UNITS[unit]),
        (0, _) => format!("{whole}.0 {}", UNITS[unit]),
        _ => format!("{whole}.{tenths} {}", UNITS[unit]),
    }
}

/// Bytes of a file's start that type detection looks at: signatures need 16, telling text
/// from other data wants more.
pub const HEAD: usize = 1024;

/// A type told by a file's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Elf,
    WindowsExecutable,
    MachO,
    Pdf,
    Zip,
    Gzip,
    Png,
    Jpeg,
    Gif,
    SevenZip,
    Rar,
    Xz,
    Bzip2,
    Zstd,
    Sqlite,
    /// An OLE compound document: .doc, .xls, .ppt, .msi.
    Ole,
    /// Text starting with `#!`.
    Script,
    /// UTF-8 (or ASCII) text without control characters other than tab, newline, carriage
    /// return, form feed, backspace and escape.
    Text,
    /// None of the above.
    Data,
}

impl Detected {
    /// Every type, in the order the documentation lists them.
    pub const ALL: [Detected; 19] = [
        Detected::Elf,
        Detected::WindowsExecutable,
        Detected::MachO,
        Detected::Script,
        Detected::Pdf,
        Detected::Ole,
        Detected::Zip,
        Detected::Gzip,
        Detected::Bzip2,
        Detected::Xz,
        Detected::Zstd,
        Detected::SevenZip,
        Detected::Rar,
        Detected::Png,
        Detected::Jpeg,
        Detected::Gif,
        Detected::Sqlite,
        Detected::Text,
        Detected::Data,
    ];

    /// From the first bytes of a file, if they are a known signature.
    pub fn from_head(head: &[u8]) -> Option<Self> {
        const SIGNATURES: &[(&[u8], Detected)] = &[
            (b"\x7fELF", Detected::Elf),
            (b"MZ", Detected::WindowsExecutable),
            (b"\xcf\xfa\xed\xfe", Detected::MachO),
            (b"\xce\xfa\xed\xfe", Detected::MachO),
            (b"\xfe\xed\xfa\xcf", Detected::MachO),
            (b"\xfe\xed\xfa\xce", Detected::MachO),
            (b"%PDF-", Detected::Pdf),
            (b"PK\x03\x04", Detected::Zip),
            (b"PK\x05\x06", Detected::Zip),
            (b"\x1f\x8b", Detected::Gzip),
            (b"\x89PNG\r\n\x1a\n", Detected::Png),
            (b"\xff\xd8\xff", Detected::Jpeg),
            (b"GIF87a", Detected::Gif),
            (b"GIF89a", Detected::Gif),
            (b"7z\xbc\xaf\x27\x1c", Detected::SevenZip),
            (b"Rar!\x1a\x07", Detected::Rar),
            (b"\xfd7zXZ\x00", Detected::Xz),
            (b"\x28\xb5\x2f\xfd", Detected::Zstd),
            (b"SQLite format 3\x00", Detected::Sqlite),
            (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", Detected::Ole),
        ];
        if head.len() >= 4 && head.starts_with(b"BZh") && (b'1'..=b'9').contains(&head[3]) {
            return Some(Detected::Bzip2);
        }
        SIGNATURES
            .iter()
            .find(|(magic, _)| head.starts_with(magic))
            .map(|(_, kind)| *kind)
    }

    /// The type of a file that starts with `head` (up to [`HEAD`] bytes, not empty): its
    /// signature, else script, text or data.
    pub fn of(head: &[u8]) -> Self {
        if let Some(kind) = Self::from_head(head) {
            return kind;
        }
        // UTF-16 and Latin-1 text is text too, told the way classification tells it.
        let decodable = matches!(
            super::extract::sniff(head).0,
            super::extract::Encoding::Utf16Le
                | super::extract::Encoding::Utf16Be
                | super::extract::Encoding::Latin1
        );
        if !is_text(head) && !decodable {
            return Detected::Data;
        }
        if head.starts_with(b"#!") {
            Detected::Script
        } else {
            Detected::Text
        }
    }

    /// The name `policy.allowed-types` and `policy.denied-types` use.
    pub fn name(self) -> &'static str {
        match self {
            Detected::Elf => "elf",
            Detected::WindowsExecutable => "pe",
            Detected::MachO => "macho",
            Detected::Pdf => "pdf",
            Detected::Zip => "zip",
            Detected::Gzip => "gzip",
            Detected::Png => "png",
            Detected::Jpeg => "jpeg",
            Detected::Gif => "gif",
            Detected::SevenZip => "7z",
            Detected::Rar => "rar",
            Detected::Xz => "xz",
            Detected::Bzip2 => "bzip2",
            Detected::Zstd => "zstd",
            Detected::Sqlite => "sqlite",
            Detected::Ole => "ole",
            Detected::Script => "script",
            Detected::Text => "text",
            Detected::Data => "data",
        }
    }

    /// The type a policy list names, if it names one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Every type name, comma-separated, for error messages and documentation.
    pub fn names() -> String {
        Self::ALL.map(Detected::name).join(", ")
    }

    fn description(self) -> &'static str {
        match self {
            Detected::Elf => "an ELF executable",
            Detected::WindowsExecutable => "a Windows executable",
            Detected::MachO => "a Mach-O executable",
            Detected::Pdf => "a PDF document",
            Detected::Zip => "a zip archive",
            Detected::Gzip => "gzip data",
            Detected::Png => "a PNG image",
            Detected::Jpeg => "a JPEG image",
            Detected::Gif => "a GIF image",
            Detected::SevenZip => "a 7-Zip archive",
            Detected::Rar => "a RAR archive",
            Detected::Xz => "xz data",
            Detected::Bzip2 => "bzip2 data",
            Detected::Zstd => "zstd data",
            Detected::Sqlite => "an SQLite database",
            Detected::Ole => "an OLE compound document",
            Detected::Script => "a script",
            Detected::Text => "text",
            Detected::Data => "data",
        }
    }

    fn is_executable(self) -> bool {
        matches!(
            self,
            Detected::Elf | Detected::WindowsExecutable | Detected::MachO
        )
    }
}

/// Whether `head` reads as text: UTF-8 (a character cut off at the end is fine) with no
/// control characters but tab, newline, carriage return, form feed, backspace and escape.
fn is_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        // Cut off inside the last character: the rest is beyond the head.
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    };
    valid
        && head.iter().all(|&b| {
            (b >= 0x20 && b != 0x7f) || matches!(b, b'\t' | b'\n' | b'\r' | 0x0c | 0x08 | 0x1b)
        })
}

/// Extensions an executable or library may carry (none at all is fine too).
const EXECUTABLE_EXTENSIONS: &[&str] = &[
    "exe", "dll", "sys", "com", "scr", "so", "o", "ko", "a", "bin", "elf", "out", "run",
    "appimage", "dylib", "bundle", "efi", "msi", "mui", "ocx", "cpl", "drv",
];

/// The type a known extension promises, if any.
fn promised_by(ext: &str) -> Option<Detected> {
    Some(match ext {
        "pdf" => Detected::Pdf,
        "zip" | "docx" | "xlsx" | "pptx" | "odt" | "ods" | "odp" | "jar" | "apk" | "epub" => {
            Detected::Zip
        }
        "gz" | "tgz" => Detected::Gzip,
        "png" => Detected::Png,
        "jpg" | "jpeg" => Detected::Jpeg,
        "gif" => Detected::Gif,
        _ => return None,
    })
}

/// Why a file's first bytes contradict its extension, if they do.
fn type_mismatch(ext: &str, head: &[u8]) -> Option<String> {
    let detected = Detected::from_head(head);
    if let Some(kind) = detected.filter(|k| k.is_executable()) {
        if !ext.is_empty() && !EXECUTABLE_EXTENSIONS.contains(&ext) {
            return Some(format!(
                "type mismatch: a `.{ext}` file that is {}",
                kind.description()
            ));
        }
    }
    let promised = promised_by(ext)?;
    match detected {
        Some(kind) if kind == promised => None,
        Some(kind) => Some(format!(
            "type mismatch: a `.{ext}` file that is {}",
            kind.description()
        )),
        None => Some(format!(
            "type mismatch: a `.{ext}` file that does not start as {} does",
            promised.description()
        )),
    }
}

impl Gate1 {
    /// The check that needs the class: `class.CLASS.max-file-size`. Runs right after
    /// classify, still as gate 1; `Err` carries the reason.
    pub fn check_class(&self, class: Class, size: u64) -> Result<(), String> {
        match self.class_max_file_size.get(class) {
            Some(max) if size > max => Err(format!(
                "size {} is over class.{}.max-file-size ({})",
                human_size(size),
                class.as_str(),
                human_size(max)
            )),
            _ => Ok(()),
        }
    }

    /// `Err` carries the reason the file is refused, for the log and the audit record.
    /// `head` is the file's first bytes (up to [`HEAD`]).
    pub fn check(&self, path: &Path, size: u64, head: &[u8]) -> Result<(), String> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if self.blacklist.is_blocked(path) {
            return Err("path is blacklisted".into());
        }
        if size > self.max_file_size {
            return Err(format!(
                "size {size} bytes exceeds policy.max-file-size ({} bytes)",
                self.max_file_size
            ));
        }
        if !self.allowed_extensions.is_empty()
            && !self
                .allowed_extensions
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&ext))
        {
            return Err(format!(
                "file type `.{ext}` is not in policy.allowed-extensions"
            ));
        }
        if self.denied_extensions.contains(&ext) {
            return Err(match ext.is_empty() {
                true => "a name without an extension (\"\") is in policy.denied-extensions".into(),
                false => format!("extension \".{ext}\" is in policy.denied-extensions"),
            });
        }
        // An empty file has no type: the type lists and the mismatch check pass it.
        if size == 0 {
            return Ok(());
        }
        let kind = Detected::of(head).name();
        if self.denied_types.iter().any(|t| t == kind) {
            return Err(format!("type \"{kind}\" is in policy.denied-types"));
        }
        if !self.allowed_types.is_empty() && !self.allowed_types.iter().any(|t| t == kind) {
            return Err(format!("type \"{kind}\" is not in policy.allowed-types"));
        }
        if self.reject_type_mismatch {
            if let Some(reason) = type_mismatch(&ext, head) {
                return Err(format!("{reason} (policy.reject-type-mismatch)"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_must_agree_with_the_extension() {
        let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0";
        let cases: &[(&str, &[u8], Option<&str>)] = &[
            (
                "notes.txt",
                elf,
                Some("type mismatch: a `.txt` file that is an ELF executable"),
            ),
            (
                "report.pdf",
                elf,
                Some("type mismatch: a `.pdf` file that is an ELF executable"),
            ),
            ("tool", elf, None),
            ("lib.so", elf, None),
            ("setup.msi", b"MZ\x90\0", None),
            ("photo.jpg", b"MZ\x90\0", Some("Windows executable")),
            ("report.pdf", b"%PDF-1.7\n", None),
            (
                "report.pdf",
                b"hello",
                Some("does not start as a PDF document does"),
            ),
            ("letter.docx", b"PK\x03\x04\x14\0", None),
            (
                "letter.docx",
                b"%PDF-1.4",
                Some("a `.docx` file that is a PDF document"),
            ),
            ("notes.txt", b"plain words", None),
            ("data.csv", b"PK\x03\x04", None),
        ];
        for (name, head, want) in cases {
            let got = gate(&[]).check(Path::new(name), 64, head);
            match want {
                None => assert!(got.is_ok(), "{name}: {got:?}"),
                Some(part) => {
                    let e = got.unwrap_err();
                    assert!(
                        e.contains(part) && e.contains("reject-type-mismatch"),
                        "{name}: {e}"
                    )
                }
            }
        }
        let lenient = Gate1 {
            reject_type_mismatch: false,
            ..gate(&[])
        };
        assert!(lenient.check(Path::new("notes.txt"), 64, elf).is_ok());
        assert!(gate(&[]).check(Path::new("empty.pdf"), 0, b"").is_ok());
    }

    fn gate(exts: &[&str]) -> Gate1 {
        let mut b = globset::GlobSetBuilder::new();
        b.add(
            globset::GlobBuilder::new("**/*.exe")
                .literal_separator(true)
                .build()
                .unwrap(),
        );
        Gate1 {
            max_file_size: 100,
            blacklist: Blacklist::new(b.build().unwrap()),
            allowed_extensions: exts.iter().map(|s| s.to_string()).collect(),
            denied_extensions: Vec::new(),
            allowed_types: Vec::new(),
            denied_types: Vec::new(),
            reject_type_mismatch: true,
            class_max_file_size: ClassSizes::default(),
        }
    }

    #[test]
    fn each_class_has_its_own_size_limit() {
        let g = Gate1 {
            class_max_file_size: ClassSizes {
                personal: Some(10 << 20),
                sensitive: Some(1000),
                general: None,
            },
            ..gate(&[])
        };
        assert_eq!(
            g.check_class(Class::Personal, 12 << 20),
            Err("size 12 MiB is over class.personal.max-file-size (10 MiB)".into())
        );
        assert_eq!(
            g.check_class(Class::Personal, (10 << 20) + 1),
            Err("size 10.0 MiB is over class.personal.max-file-size (10 MiB)".into())
        );
        assert!(g.check_class(Class::Personal, 10 << 20).is_ok());
        assert_eq!(
            g.check_class(Class::Sensitive, 1001),
            Err("size 1001 bytes is over class.sensitive.max-file-size (1000 bytes)".into())
        );
        assert!(g.check_class(Class::General, u64::MAX).is_ok());
        assert_eq!(class_named("personal"), Some(Class::Personal));
        assert_eq!(class_named("directory"), None);
    }

    #[test]
    fn sizes_read_for_people() {
        let cases = [
            (0, "0 bytes"),
            (1023, "1023 bytes"),
            (1024, "1 KiB"),
            (1536, "1.5 KiB"),
            ((5 << 30) + (1 << 29), "5.5 GiB"),
            (3 << 40, "3 TiB"),
            (5000 << 40, "5000 TiB"),
        ];
        for (bytes, text) in cases {
            assert_eq!(human_size(bytes), text, "{bytes}");
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn types_are_told_by_the_first_bytes() {
        let cases: &[(&[u8], &str)] = &[
            (b"\x7fELF\x02\x01", "elf"),
            (b"MZ\x90\0", "pe"),
            (b"\xcf\xfa\xed\xfe\x07", "macho"),
            (b"#!/bin/sh\necho hi\n", "script"),
            (b"%PDF-1.7\n", "pdf"),
            (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\0", "ole"),
            (b"PK\x03\x04\x14\0", "zip"),
            (b"\x1f\x8b\x08\0", "gzip"),
            (b"BZh91AY&SY", "bzip2"),
            (b"\xfd7zXZ\0\0", "xz"),
            (b"\x28\xb5\x2f\xfd\x04", "zstd"),
            (b"7z\xbc\xaf\x27\x1c\0\x04", "7z"),
            (b"Rar!\x1a\x07\x01\0", "rar"),
            (b"\x89PNG\r\n\x1a\n\0", "png"),
            (b"\xff\xd8\xff\xe0", "jpeg"),
            (b"GIF89a\x01\0", "gif"),
            (b"SQLite format 3\0\x10\0", "sqlite"),
            (b"plain words\r\n\tand a tab\n", "text"),
            ("grüße, 東京\n".as_bytes(), "text"),
            // A character cut off by the end of the head is still text.
            (&"aé".as_bytes()[..2], "text"),
            (b"BZh as a word", "text"),
            (b"nul\0inside", "data"),
            (b"\xff\xfe\x00\x00", "data"),
            (b"\x01\x02\x03", "data"),
        ];
        for (head, want) in cases {
            assert_eq!(Detected::of(head).name(), *want, "{head:?}");
        }
        for t in Detected::ALL {
            assert_eq!(Detected::from_name(t.name()), Some(t));
        }
        assert_eq!(Detected::from_name("exe"), None);
        assert!(Detected::names().starts_with("elf, pe, macho, script"));
    }

    #[test]
    fn type_and_extension_lists_name_the_rule() {
        let elf: &[u8] = b"\x7fELF\x02\x01\x01\0";
        let denying = Gate1 {
            denied_types: names(&["elf", "pe"]),
            denied_extensions: names(&["iso", "vmdk"]),
            ..gate(&[])
        };
        let allowing = Gate1 {
            allowed_types: names(&["pdf", "text"]),
            ..gate(&[])
        };
        let cases: &[(&Gate1, &str, &[u8], Option<&str>)] = &[
            (
                &denying,
                "tool",
                elf,
                Some("type \"elf\" is in policy.denied-types"),
            ),
            (
                &denying,
                "lib.so",
                elf,
                Some("type \"elf\" is in policy.denied-types"),
            ),
            (
                &denying,
                "setup.msi",
                b"MZ\x90\0",
                Some("type \"pe\" is in policy.denied-types"),
            ),
            (&denying, "notes.txt", b"plain", None),
            (
                &denying,
                "disk.ISO",
                b"plain",
                Some("extension \".iso\" is in policy.denied-extensions"),
            ),
            (&denying, "iso", b"plain", None),
            (
                &Gate1 {
                    denied_extensions: names(&[""]),
                    ..gate(&[])
                },
                "Makefile",
                b"all:\n",
                Some("a name without an extension (\"\") is in policy.denied-extensions"),
            ),
            (&allowing, "report.pdf", b"%PDF-1.4", None),
            (&allowing, "notes.md", b"# notes\n", None),
            (
                &allowing,
                "photo.png",
                b"\x89PNG\r\n\x1a\n",
                Some("type \"png\" is not in policy.allowed-types"),
            ),
            (
                &allowing,
                "blob",
                b"\0\x01\x02",
                Some("type \"data\" is not in policy.allowed-types"),
            ),
            (
                &allowing,
                "run.sh",
                b"#!/bin/sh\n",
                Some("type \"script\" is not in policy.allowed-types"),
            ),
        ];
        for (g, name, head, want) in cases {
            let got = g.check(Path::new(name), 64, head);
            match want {
                None => assert!(got.is_ok(), "{name}: {got:?}"),
                Some(reason) => assert_eq!(got.unwrap_err(), *reason, "{name}"),
            }
        }
        // An empty file has no type to allow or deny.
        assert!(allowing.check(Path::new("empty.bin"), 0, b"").is_ok());
        // The type lists come before the mismatch check: an ELF named notes.txt is named
        // by the rule that denies its type.
        let e = denying.check(Path::new("notes.txt"), 64, elf).unwrap_err();
        assert!(e.contains("policy.denied-types"), "{e}");
    }

    #[test]
    fn decisions() {
        let cases: &[(&[&str], &str, u64, Option<&str>)] = &[
            (&[], "a.txt", 10, None),
            (&[], "a.txt", 100, None),
            (&[], "a.txt", 101, Some("max-file-size")),
            (&[], "x.exe", 1, Some("blacklisted")),
            (&[], "deep/dir/x.exe", 1, Some("blacklisted")),
            (&["txt", "pdf"], "a.TXT", 1, None),
            (&["txt", "pdf"], "a.doc", 1, Some("allowed-extensions")),
            (&["txt"], "noext", 1, Some("allowed-extensions")),
        ];
        for (exts, path, size, want) in cases {
            let got = gate(exts).check(Path::new(path), *size, b"plain text");
            match want {
                None => assert!(got.is_ok(), "{path}: {got:?}"),
                Some(part) => assert!(got.unwrap_err().contains(part), "{path}"),
            }
        }
    }
}
