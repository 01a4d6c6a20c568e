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
}

impl Gate1 {
    /// `Err` carries the reason the file is refused, for the log and the audit record.
    pub fn check(&self, path: &Path, size: u64) -> Result<(), String> {
        if self.blacklist.is_blocked(path) {
            return Err("path is blacklisted".into());
        }
        if size > self.max_file_size {
            return Err(format!(
                "size {size} bytes exceeds policy.max-file-size ({} bytes)",
                self.max_file_size
            ));
        }
        if !self.allowed_extensions.is_empty() {
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            if !self
                .allowed_extensions
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&ext))
            {
                return Err(format!(
                    "file type `.{ext}` is not in policy.allowed-extensions"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let got = gate(exts).check(Path::new(path), *size);
            match want {
                None => assert!(got.is_ok(), "{path}: {got:?}"),
                Some(part) => assert!(got.unwrap_err().contains(part), "{path}"),
            }
        }
    }
}
