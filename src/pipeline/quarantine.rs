//! What happens to an infected file: it leaves the source (and so the mount) for the
//! quarantine directory, next to a JSON record of why.

use std::fs;
use std::io::{self, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::sys;

pub struct Quarantine {
    dir: PathBuf,
}

#[derive(Serialize)]
struct Reason<'a> {
    path: String,
    signature: &'a str,
    sha256: &'a str,
    size: u64,
    quarantined_at: String,
}

impl Quarantine {
    /// Creates the directory with mode 0700 (and tightens it if it exists).
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Moves `path` (relative to `source`) into quarantine and writes its reason record.
    /// Returns where the file now is.
    pub fn take(
        &self,
        source: BorrowedFd<'_>,
        path: &Path,
        signature: &str,
        sha256: &str,
        size: u64,
    ) -> io::Result<PathBuf> {
        let name = self.unique_name(path);
        let dest = self.dir.join(&name);
        let parent = path.parent().unwrap_or(Path::new(""));
        let file_name = path
            .file_name()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let dir_fd = if parent.as_os_str().is_empty() {
            None
        } else {
            Some(sys::open_beneath(
                source,
                parent,
                libc::O_PATH | libc::O_DIRECTORY,
            )?)
        };
        let from_dir = dir_fd.as_ref().map_or(source, std::os::fd::AsFd::as_fd);
        let quarantine_dir = sys::open_beneath_root(&self.dir)?;
        match sys::renameat2(
            from_dir,
            file_name,
            std::os::fd::AsFd::as_fd(&quarantine_dir),
            name.as_os_str(),
            0,
        ) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                self.copy_then_unlink(from_dir, file_name, &dest)?;
            }
            Err(e) => return Err(e),
        }
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o600))?;
        self.write_reason(&dest, path, signature, sha256, size)?;
        Ok(dest)
    }

    fn unique_name(&self, path: &Path) -> std::ffi::OsString {
        let base = path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        let mut name = std::ffi::OsString::from(format!("{}-", crate::unix_now_nanos()));
        name.push(base);
        name
    }

    fn copy_then_unlink(
        &self,
        dir: BorrowedFd<'_>,
        name: &std::ffi::OsStr,
        dest: &Path,
    ) -> io::Result<()> {
        let fd = sys::openat(dir, name, libc::O_RDONLY | libc::O_NOFOLLOW, 0)?;
        let mut from = fs::File::from(fd);
        let mut to = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)?;
        io::copy(&mut from, &mut to)?;
        to.sync_all()?;
        sys::unlinkat(dir, name, 0)
    }

    fn write_reason(
        &self,
        dest: &Path,
        path: &Path,
        signature: &str,
        sha256: &str,
        size: u64,
    ) -> io::Result<()> {
        let reason = Reason {
            path: path.to_string_lossy().into_owned(),
            signature,
            sha256,
            size,
            quarantined_at: crate::rfc3339_now(),
        };
        let mut record = dest.as_os_str().to_os_string();
        record.push(".json");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(record)?;
        let mut line = serde_json::to_vec_pretty(&reason).map_err(io::Error::other)?;
        line.push(b'\n');
        f.write_all(&line)?;
        f.sync_all()
    }
}
