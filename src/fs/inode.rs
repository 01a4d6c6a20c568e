//! The inode table: every file the kernel currently remembers, by a reference that survives
//! renames.
//!
//! Each file and directory keeps only its kernel file handle and is opened by it when
//! needed (an `O_PATH` descriptor, so every `*at()` call stays relative to the right
//! directory even if the tree is renamed around it): the kernel may remember far more files
//! than a process may hold open (a git repository is tens of thousands), and running out of
//! descriptors would fail the applications' calls. Where the filesystem has no file handles
//! (or the daemon lacks CAP_DAC_READ_SEARCH to open them), the descriptor is kept instead,
//! and the open-file limit bounds how many files the kernel can know at once. A file whose
//! last name is removed through the mount (or a removed directory) cannot be opened by
//! handle any more, so it is given a descriptor first; that is what keeps a file that is
//! open but unlinked working.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, OnceLock};

use crate::sys;

/// The FUSE inode number of the mount's root, fixed by the protocol.
pub const ROOT: u64 = 1;

/// Identity of a backing file: device and inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
}

impl FileKey {
    pub fn of(st: &sys::Stat) -> Self {
        Self {
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

#[derive(Debug)]
pub struct Inode {
    pub ino: u64,
    pub key: FileKey,
    pub mode: u32,
    reference: Reference,
    /// A descriptor taken before the file's last name was removed.
    pinned: OnceLock<OwnedFd>,
}

#[derive(Debug)]
enum Reference {
    Fd(OwnedFd),
    /// The file handle, and a descriptor on the same filesystem to open it from.
    Handle(sys::FileHandle, Arc<OwnedFd>),
}

/// An `O_PATH` descriptor of an inode: its own, or one opened for this use.
pub enum InodeFd<'a> {
    Kept(BorrowedFd<'a>),
    Opened(OwnedFd),
}

impl AsFd for InodeFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Kept(fd) => *fd,
            Self::Opened(fd) => fd.as_fd(),
        }
    }
}

impl Inode {
    /// An `O_PATH` descriptor of this file. Fails with `ESTALE` if the file is gone.
    pub fn fd(&self) -> io::Result<InodeFd<'_>> {
        if let Some(fd) = self.pinned.get() {
            return Ok(InodeFd::Kept(fd.as_fd()));
        }
        match &self.reference {
            Reference::Fd(fd) => Ok(InodeFd::Kept(fd.as_fd())),
            Reference::Handle(handle, mount) => Ok(InodeFd::Opened(sys::open_by_handle(
                mount.as_fd(),
                handle,
                libc::O_PATH | libc::O_NOFOLLOW,
            )?)),
        }
    }

    /// An `O_PATH` descriptor of a directory, for the `*at()` calls made in it.
    pub fn dir_fd(&self) -> io::Result<InodeFd<'_>> {
        if !self.is_dir() {
            return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
        }
        self.fd()
    }

    /// Opens the file itself with `flags` (no creation flags).
    pub fn open(&self, flags: i32) -> io::Result<OwnedFd> {
        let fd = match (&self.reference, self.pinned.get()) {
            (Reference::Handle(handle, mount), None) => {
                return sys::open_by_handle(mount.as_fd(), handle, flags);
            }
            (_, Some(fd)) | (Reference::Fd(fd), None) => fd,
        };
        sys::openat(
            sys::cwd(),
            sys::proc_fd_path(fd.as_fd()).as_os_str(),
            flags,
            0,
        )
    }

    /// Keeps `fd` (an `O_PATH` descriptor of this file) for as long as the inode is known:
    /// called before the file's last name (or the directory) is removed.
    pub fn pin(&self, fd: OwnedFd) {
        if matches!(self.reference, Reference::Handle(..)) {
            let _ = self.pinned.set(fd);
        }
    }

    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }

    pub fn is_symlink(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }
}

struct Slot {
    inode: Arc<Inode>,
    lookups: u64,
}

#[derive(Default)]
struct Table {
    by_ino: HashMap<u64, Slot>,
    by_key: HashMap<FileKey, u64>,
    next: u64,
}

/// Maps FUSE inode numbers to backing descriptors, with the kernel's lookup counts.
pub struct InodeTable {
    table: Mutex<Table>,
    /// A descriptor of the source directory, to open file handles from.
    mount: Option<Arc<OwnedFd>>,
    dev: u64,
}

impl InodeTable {
    pub fn new(root_fd: OwnedFd, root: &sys::Stat) -> Self {
        // open_by_handle_at wants a real descriptor, not an O_PATH one.
        let mount = sys::openat(
            root_fd.as_fd(),
            std::ffi::OsStr::new("."),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )
        .ok()
        .filter(|fd| {
            // Handles need CAP_DAC_READ_SEARCH to open: try the root's own.
            sys::file_handle(fd.as_fd())
                .and_then(|h| sys::open_by_handle(fd.as_fd(), &h, libc::O_PATH))
                .is_ok()
        })
        .map(Arc::new);
        if mount.is_none() {
            tracing::info!("file handles unavailable; the mount keeps a descriptor per file the kernel remembers");
        }
        let inode = Arc::new(Inode {
            ino: ROOT,
            key: FileKey::of(root),
            mode: root.st_mode,
            reference: Reference::Fd(root_fd),
            pinned: OnceLock::new(),
        });
        let mut table = Table {
            next: ROOT + 1,
            ..Table::default()
        };
        table.by_key.insert(inode.key, ROOT);
        // The root is never forgotten: give it a count the kernel can never bring to zero.
        table.by_ino.insert(
            ROOT,
            Slot {
                inode,
                lookups: u64::MAX / 2,
            },
        );
        Self {
            table: Mutex::new(table),
            mount,
            dev: root.st_dev,
        }
    }

    /// How a newly known file is referred to: by handle where handles work, else by its
    /// descriptor.
    fn reference(&self, fd: OwnedFd, st: &sys::Stat) -> Reference {
        match &self.mount {
            Some(mount) if st.st_dev == self.dev => match sys::file_handle(fd.as_fd()) {
                Ok(handle) => Reference::Handle(handle, mount.clone()),
                Err(_) => Reference::Fd(fd),
            },
            _ => Reference::Fd(fd),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding this lock leaves plain maps behind, still consistent enough
        // to keep serving; poisoning would turn one bug into a dead mount.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, ino: u64) -> Option<Arc<Inode>> {
        self.lock().by_ino.get(&ino).map(|s| s.inode.clone())
    }

    /// The inode already known for a backing file, if any, without counting a lookup.
    pub fn find(&self, key: FileKey) -> Option<Arc<Inode>> {
        let table = self.lock();
        let ino = table.by_key.get(&key)?;
        table.by_ino.get(ino).map(|s| s.inode.clone())
    }

    /// Counts one kernel lookup of the file `fd` refers to, adding it if new. When the file
    /// is already known, the new descriptor is dropped and the old one kept.
    pub fn remember(&self, fd: OwnedFd, st: &sys::Stat) -> Arc<Inode> {
        let key = FileKey::of(st);
        let mut table = self.lock();
        if let Some(&ino) = table.by_key.get(&key) {
            if let Some(slot) = table.by_ino.get_mut(&ino) {
                slot.lookups += 1;
                return slot.inode.clone();
            }
        }
        let ino = table.next;
        table.next += 1;
        let inode = Arc::new(Inode {
            ino,
            key,
            mode: st.st_mode,
            reference: self.reference(fd, st),
            pinned: OnceLock::new(),
        });
        table.by_key.insert(key, ino);
        table.by_ino.insert(
            ino,
            Slot {
                inode: inode.clone(),
                lookups: 1,
            },
        );
        inode
    }

    /// Drops `n` kernel lookups; the descriptor closes when none remain.
    pub fn forget(&self, ino: u64, n: u64) {
        let mut table = self.lock();
        let Some(slot) = table.by_ino.get_mut(&ino) else {
            return;
        };
        slot.lookups = slot.lookups.saturating_sub(n);
        if slot.lookups == 0 {
            let key = slot.inode.key;
            table.by_ino.remove(&ino);
            if table.by_key.get(&key) == Some(&ino) {
                table.by_key.remove(&key);
            }
        }
    }

    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.lock().by_ino.len()
    }
}
