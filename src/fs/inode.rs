//! The inode table: one `O_PATH` descriptor per file the kernel currently remembers.
//!
//! Holding a descriptor, rather than a path, is what lets a file that is open but unlinked
//! keep working, and keeps every later `*at()` call relative to the right directory even if
//! the tree is renamed around it.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};

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
    fd: OwnedFd,
}

impl Inode {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
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
}

impl InodeTable {
    pub fn new(root_fd: OwnedFd, root: &sys::Stat) -> Self {
        let inode = Arc::new(Inode {
            ino: ROOT,
            key: FileKey::of(root),
            mode: root.st_mode,
            fd: root_fd,
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
            fd,
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
