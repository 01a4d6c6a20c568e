//! Stage 3, gate 1: type, size and blacklist policy before any costly work.
//!
//! The blacklist is also enforced at the FUSE layer ([`Blacklist::is_blocked`] is the one
//! check both use), so a blacklisted name never even appears in the source directory.

use std::path::Path;

use globset::GlobSet;

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
    /// Refuse a file whose first bytes contradict its extension.
    pub reject_type_mismatch: bool,
}

/// Bytes of a file's start that type detection looks at.
pub const HEAD: usize = 16;

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
}

impl Detected {
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
        ];
        SIGNATURES
            .iter()
            .find(|(magic, _)| head.starts_with(magic))
            .map(|(_, kind)| *kind)
    }

    fn name(self) -> &'static str {
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
        }
    }

    fn is_executable(self) -> bool {
        matches!(
            self,
            Detected::Elf | Detected::WindowsExecutable | Detected::MachO
        )
    }
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
                kind.name()
            ));
        }
    }
    let promised = promised_by(ext)?;
    match detected {
        Some(kind) if kind == promised => None,
        Some(kind) => Some(format!(
            "type mismatch: a `.{ext}` file that is {}",
            kind.name()
        )),
        None => Some(format!(
            "type mismatch: a `.{ext}` file that does not start as {} does",
            promised.name()
        )),
    }
}

impl Gate1 {
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
        if self.reject_type_mismatch && size > 0 {
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
            reject_type_mismatch: true,
        }
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
