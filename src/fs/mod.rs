//! The passthrough: every operation applied to the source directory, relative to descriptors.
//!
//! This type knows nothing of FUSE wire types; `fuse.rs` translates callbacks into these
//! methods, so everything here can be tested on a plain directory without a mount. Two things
//! set it apart from a bare passthrough: blacklisted names are refused before they reach the
//! source, and a handle that changed its file reports the path to a [`ChangeSink`] when it is
//! released.
//!
//! Whether a handle changed its file is never decided from the writes seen alone: with kernel
//! passthrough, and through shared mappings, writes go straight to the backing file. A handle
//! opened for writing therefore also compares the file's size and times at release with what
//! they were when it was opened.

pub mod fuse;
mod inode;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirEntryExt, FileExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use inode::InodeTable;
pub use inode::{FileKey, Inode, ROOT};

use crate::pipeline::gate1::Blacklist;
use crate::sys;

/// Hears what the mount did, by path relative to the source. Implementations must return
/// at once: they run on FUSE threads.
pub trait ChangeSink: Send + Sync {
    /// The file's content may have changed.
    fn changed(&self, path: &Path);
    /// A file or directory moved. By default a moved regular file counts as changed under
    /// its new name.
    fn renamed(&self, _from: &Path, to: &Path, regular_file: bool) {
        if regular_file {
            self.changed(to);
        }
    }
    /// A create or rename to this blacklisted path was refused.
    fn refused(&self, _path: &Path) {}
    /// A regular file's name, or a directory, was removed.
    fn removed(&self, _path: &Path) {}
    /// A directory was made, or its mode or owner changed; `st` is how it is now.
    fn dir_changed(&self, _path: &Path, _st: &sys::Stat) {}
}

/// Who is asking, as the kernel reports it.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// A file the kernel now knows, with its attributes.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub ino: u64,
    pub stat: sys::Stat,
}

/// Attribute changes requested by `setattr`; `None` leaves a field alone.
#[derive(Debug, Default, Clone, Copy)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: sys::TimeSpec,
    pub mtime: sys::TimeSpec,
    pub fh: Option<u64>,
}

/// One directory entry as `readdir` hands it out.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: u32,
    pub name: OsString,
}

struct Handle {
    file: File,
    /// The file's inode, kept known while the handle is open.
    inode: Arc<Inode>,
    /// Opened with write access: only such a handle can change the content.
    writable: bool,
    /// Set once a request through this handle changed the file (a write, a truncation).
    changed: AtomicBool,
    /// The file as it was when opened or last reported.
    seen: Mutex<Seen>,
}

/// What tells a changed file from an untouched one without reading it. A write through any
/// path (the daemon, kernel passthrough, a shared mapping) moves the modification and change
/// times; the size catches the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Seen {
    fn of(st: &sys::Stat) -> Self {
        Self {
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }
}

impl Handle {
    /// Whether the file differs from when it was last seen; remembers it as seen now.
    fn moved_on(&self) -> bool {
        let Ok(st) = sys::fstat(self.file.as_fd()) else {
            return false;
        };
        let now = Seen::of(&st);
        let mut seen = lock(&self.seen);
        let moved = *seen != now;
        *seen = now;
        moved
    }
}

pub struct Passthrough {
    source: PathBuf,
    inodes: InodeTable,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    dirs: Mutex<HashMap<u64, Arc<Vec<DirEntry>>>>,
    next_fh: AtomicU64,
    blacklist: Blacklist,
    sink: Arc<dyn ChangeSink>,
    /// Set when the daemon runs as root, so new files can be given to the caller.
    chown_new: bool,
    /// Held (shared) while a changed file's path is read and queued, and (exclusive) while
    /// a rename moves queued work, so that a close racing a rename on another FUSE thread
    /// never queues the name the file just left.
    renaming: std::sync::RwLock<()>,
    /// Files recently closed after being opened for writing, still checked for changes by
    /// [`Passthrough::report_open_writers`]: with kernel passthrough a shared mapping writes
    /// to the source file directly and outlives the release, which then comes before the
    /// writes.
    closed_writers: Mutex<std::collections::VecDeque<ClosedWriter>>,
}

struct ClosedWriter {
    inode: Arc<Inode>,
    seen: Seen,
    until: std::time::Instant,
}

/// How long a file closed after writing is still watched, and how many at most.
const WATCH_CLOSED_FOR: std::time::Duration = std::time::Duration::from_secs(15 * 60);
const WATCH_CLOSED_MAX: usize = 4096;

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

fn check_name(name: &OsStr) -> io::Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.as_bytes().contains(&b'/') {
        return Err(errno(libc::EINVAL));
    }
    Ok(())
}

/// Flags that make sense when creating a file by name but not when reopening an existing
/// file through its `/proc/self/fd` link.
const CREATION_FLAGS: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_NOFOLLOW;

impl Passthrough {
    /// Opens the source directory. `source` must be an existing directory.
    pub fn new(source: &Path, blacklist: Blacklist, sink: Arc<dyn ChangeSink>) -> io::Result<Self> {
        let source = source.canonicalize()?;
        let cwd = sys::open_beneath_root(&source)?;
        let st = sys::fstat(cwd.as_fd())?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", source.display()),
            ));
        }
        Ok(Self {
            source,
            inodes: InodeTable::new(cwd, &st),
            handles: Mutex::default(),
            dirs: Mutex::default(),
            next_fh: AtomicU64::new(1),
            blacklist,
            sink,
            chown_new: sys::geteuid() == 0,
            renaming: std::sync::RwLock::default(),
            closed_writers: Mutex::default(),
        })
    }

    /// Reports every file that a still-open handle changed since it was opened or last
    /// reported, so that a log held open for days is backed up without waiting for its close.
    /// The daemon calls this periodically.
    pub fn report_open_writers(&self) {
        let open: Vec<Arc<Handle>> = lock(&self.handles)
            .values()
            .filter(|h| h.writable)
            .cloned()
            .collect();
        for handle in open {
            if handle.moved_on() {
                handle.changed.store(false, Ordering::Relaxed);
                self.notify_changed(handle.file.as_fd());
            }
        }
        // Checked outside the lock, which releases on FUSE threads take.
        let now = std::time::Instant::now();
        let watched: Vec<(Arc<Inode>, Seen)> = {
            let mut closed = lock(&self.closed_writers);
            closed.retain(|w| w.until > now);
            closed.iter().map(|w| (w.inode.clone(), w.seen)).collect()
        };
        for (inode, seen) in watched {
            let Ok(fd) = inode.fd() else { continue };
            let Ok(st) = sys::fstat(fd.as_fd()) else {
                continue;
            };
            let now_seen = Seen::of(&st);
            if now_seen == seen {
                continue;
            }
            if let Some(w) = lock(&self.closed_writers)
                .iter_mut()
                .find(|w| w.inode.ino == inode.ino)
            {
                w.seen = now_seen;
            }
            self.notify_changed(fd.as_fd());
        }
    }

    pub fn source(&self) -> &Path {
        &self.source
    }

    fn inode(&self, ino: u64) -> io::Result<Arc<Inode>> {
        self.inodes.get(ino).ok_or_else(|| errno(libc::ESTALE))
    }

    fn handle(&self, fh: u64) -> io::Result<Arc<Handle>> {
        lock(&self.handles)
            .get(&fh)
            .cloned()
            .ok_or_else(|| errno(libc::EBADF))
    }

    /// The path of a file inside the source, read back from the kernel so that it is right
    /// even after renames. `None` for a file that no longer has a name.
    pub fn path_of(&self, fd: BorrowedFd<'_>) -> Option<PathBuf> {
        let st = sys::fstat(fd).ok()?;
        if st.st_nlink == 0 && st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return None;
        }
        let target = PathBuf::from(OsString::from_vec(sys::readlink_fd_proc(fd).ok()?));
        target
            .strip_prefix(&self.source)
            .ok()
            .map(Path::to_path_buf)
    }

    fn child_path(&self, parent: &Inode, name: &OsStr) -> io::Result<PathBuf> {
        let dir = self
            .path_of(parent.dir_fd()?.as_fd())
            .ok_or_else(|| errno(libc::ENOENT))?;
        Ok(dir.join(name))
    }

    /// Refuses to create a name the blacklist covers, before anything reaches the source.
    fn admit(&self, parent: &Inode, name: &OsStr) -> io::Result<()> {
        check_name(name)?;
        let path = self.child_path(parent, name)?;
        if self.blacklist.is_blocked(&path) {
            tracing::warn!(path = ?path, "refused blacklisted name");
            self.sink.refused(&path);
            return Err(errno(libc::EACCES));
        }
        Ok(())
    }

    fn notify_changed(&self, fd: BorrowedFd<'_>) {
        let _names = self.renaming.read().unwrap_or_else(|e| e.into_inner());
        if let Some(path) = self.path_of(fd) {
            self.sink.changed(&path);
        }
    }

    /// Reports a directory's attributes, by its name now; the source root is not reported.
    fn notify_dir(&self, fd: BorrowedFd<'_>, st: &sys::Stat) {
        let _names = self.renaming.read().unwrap_or_else(|e| e.into_inner());
        if let Some(path) = self.path_of(fd).filter(|p| !p.as_os_str().is_empty()) {
            self.sink.dir_changed(&path, st);
        }
    }

    fn entry_for(&self, fd: OwnedFd) -> io::Result<Entry> {
        let stat = sys::fstat(fd.as_fd())?;
        let inode = self.inodes.remember(fd, &stat);
        Ok(Entry {
            ino: inode.ino,
            stat,
        })
    }

    fn lookup_fd(&self, parent: &Inode, name: &OsStr) -> io::Result<OwnedFd> {
        sys::openat(
            parent.dir_fd()?.as_fd(),
            name,
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
        )
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> io::Result<Entry> {
        let parent = self.inode(parent)?;
        if name.len() > 255 {
            return Err(errno(libc::ENAMETOOLONG));
        }
        let fd = self.lookup_fd(&parent, name)?;
        self.entry_for(fd)
    }

    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.forget(ino, n);
    }

    pub fn getattr(&self, ino: u64) -> io::Result<sys::Stat> {
        sys::fstat(self.inode(ino)?.fd()?.as_fd())
    }

    pub fn setattr(&self, ino: u64, set: SetAttr) -> io::Result<sys::Stat> {
        let inode = self.inode(ino)?;
        let fd = inode.fd()?;
        let path = sys::proc_fd_path(fd.as_fd());
        if let Some(mode) = set.mode {
            sys::chmod_path(&path, mode & 0o7777)?;
        }
        if set.uid.is_some() || set.gid.is_some() {
            sys::fchownat_empty(fd.as_fd(), set.uid, set.gid)?;
        }
        if let Some(size) = set.size {
            self.truncate(&inode, set.fh, size)?;
        }
        if set.atime.is_some() || set.mtime.is_some() {
            sys::utimens_path(&path, set.atime, set.mtime)?;
        }
        // Besides the size, mode, owner and modification time are part of what a restore
        // gives back, so a change to them is a change to back up (as a new version of the
        // same content). With an open handle, its release reports it; else no release will
        // follow, so it is reported now.
        let changed = set.size.is_some()
            || set.mode.is_some()
            || set.uid.is_some()
            || set.gid.is_some()
            || set.mtime.is_some();
        if changed && !inode.is_dir() && !inode.is_symlink() {
            match set.fh.and_then(|fh| self.handle(fh).ok()) {
                Some(handle) => handle.changed.store(true, Ordering::Relaxed),
                None => self.notify_changed(fd.as_fd()),
            }
        }
        let st = sys::fstat(fd.as_fd())?;
        if inode.is_dir() && (set.mode.is_some() || set.uid.is_some() || set.gid.is_some()) {
            self.notify_dir(fd.as_fd(), &st);
        }
        Ok(st)
    }

    /// Truncates through the open handle if there is one, else by name. The caller reports
    /// the change.
    fn truncate(&self, inode: &Inode, fh: Option<u64>, size: u64) -> io::Result<()> {
        if let Some(handle) = fh.and_then(|fh| self.handle(fh).ok()) {
            return handle.file.set_len(size);
        }
        File::from(inode.open(libc::O_WRONLY)?).set_len(size)
    }

    pub fn readlink(&self, ino: u64) -> io::Result<Vec<u8>> {
        sys::readlink_fd(self.inode(ino)?.fd()?.as_fd())
    }

    /// Gives a new file to the calling user, as a normal filesystem would, when the daemon
    /// runs as root, with the permission bits the caller asked for (`mode`, already masked
    /// by the caller's umask): the daemon's own umask keeps its private files private and
    /// must not narrow the caller's.
    fn give_to_caller(
        &self,
        fd: BorrowedFd<'_>,
        parent: BorrowedFd<'_>,
        caller: Caller,
        mode: Option<u32>,
    ) -> io::Result<()> {
        if self.chown_new && (caller.uid != 0 || caller.gid != 0) {
            // In a set-group-ID directory the new entry takes the directory's group, which
            // the kernel already gave it.
            let setgid_dir = sys::fstat(parent)?.st_mode & libc::S_ISGID != 0;
            let gid = (!setgid_dir).then_some(caller.gid);
            sys::fchownat_empty(fd, Some(caller.uid), gid)?;
        }
        if let Some(mode) = mode {
            let st = sys::fstat(fd)?;
            if st.st_mode & 0o777 != mode & 0o777 {
                // Only permission bits: special bits stay as the kernel set them.
                let wanted = (st.st_mode & 0o7000) | (mode & 0o777);
                sys::chmod_fd(fd, wanted)?;
            }
        }
        Ok(())
    }

    /// Looks up a name just created and hands it to the caller; undoes the creation if that
    /// fails, so a half-made entry never stays behind.
    fn finish_create(
        &self,
        parent: &Inode,
        name: &OsStr,
        caller: Caller,
        mode: Option<u32>,
        dir: bool,
    ) -> io::Result<Entry> {
        let made = self.lookup_fd(parent, name).and_then(|fd| {
            self.give_to_caller(fd.as_fd(), parent.dir_fd()?.as_fd(), caller, mode)?;
            Ok(fd)
        });
        match made {
            Ok(fd) => self.entry_for(fd),
            Err(e) => {
                let flag = if dir { libc::AT_REMOVEDIR } else { 0 };
                if let Ok(dir) = parent.dir_fd() {
                    let _ = sys::unlinkat(dir.as_fd(), name, flag);
                }
                Err(e)
            }
        }
    }

    pub fn mknod(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        caller: Caller,
    ) -> io::Result<Entry> {
        let parent = self.inode(parent)?;
        self.admit(&parent, name)?;
        sys::mknodat(
            parent.dir_fd()?.as_fd(),
            name,
            mode & !umask,
            u64::from(rdev),
        )?;
        let entry = self.finish_create(&parent, name, caller, Some(mode & !umask), false)?;
        if mode & libc::S_IFMT == libc::S_IFREG {
            self.sink.changed(&self.child_path(&parent, name)?);
        }
        Ok(entry)
    }

    pub fn mkdir(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        caller: Caller,
    ) -> io::Result<Entry> {
        let parent = self.inode(parent)?;
        self.admit(&parent, name)?;
        sys::mkdirat(parent.dir_fd()?.as_fd(), name, mode & !umask & 0o7777)?;
        let entry = self.finish_create(&parent, name, caller, Some(mode & !umask), true)?;
        if let Ok(dir) = self.inode(entry.ino) {
            if let Ok(fd) = dir.dir_fd() {
                self.notify_dir(fd.as_fd(), &entry.stat);
            }
        }
        Ok(entry)
    }

    pub fn symlink(
        &self,
        parent: u64,
        name: &OsStr,
        target: &Path,
        caller: Caller,
    ) -> io::Result<Entry> {
        let parent = self.inode(parent)?;
        self.admit(&parent, name)?;
        sys::symlinkat(target.as_os_str(), parent.dir_fd()?.as_fd(), name)?;
        self.finish_create(&parent, name, caller, None, false)
    }

    pub fn unlink(&self, parent: u64, name: &OsStr) -> io::Result<()> {
        let parent = self.inode(parent)?;
        let _names = self.renaming.read().unwrap_or_else(|e| e.into_inner());
        let dir_fd = parent.dir_fd()?;
        let dir = dir_fd.as_fd();
        let st = sys::fstatat(dir, name, libc::AT_SYMLINK_NOFOLLOW);
        if let Ok(st) = &st {
            self.before_last_name_goes(dir, name, st);
        }
        let path = self.child_path(&parent, name);
        sys::unlinkat(dir, name, 0)?;
        if let (Ok(st), Ok(path)) = (st, path) {
            if st.st_mode & libc::S_IFMT == libc::S_IFREG {
                self.sink.removed(&path);
            }
        }
        Ok(())
    }

    /// A known file whose last name is about to go (or a known directory about to be
    /// removed) can no longer be opened by its handle afterwards, yet may still be open or a
    /// process's working directory: it keeps a descriptor from now on.
    fn before_last_name_goes(&self, dir: BorrowedFd<'_>, name: &OsStr, st: &sys::Stat) {
        if st.st_nlink > 1 && st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return;
        }
        if let Some(inode) = self.inodes.find(FileKey::of(st)) {
            if let Ok(fd) = sys::openat(dir, name, libc::O_PATH | libc::O_NOFOLLOW, 0) {
                inode.pin(fd);
            }
        }
    }

    pub fn rmdir(&self, parent: u64, name: &OsStr) -> io::Result<()> {
        let parent = self.inode(parent)?;
        let _names = self.renaming.read().unwrap_or_else(|e| e.into_inner());
        let path = self.child_path(&parent, name);
        let dir_fd = parent.dir_fd()?;
        if let Ok(st) = sys::fstatat(dir_fd.as_fd(), name, libc::AT_SYMLINK_NOFOLLOW) {
            self.before_last_name_goes(dir_fd.as_fd(), name, &st);
        }
        sys::unlinkat(dir_fd.as_fd(), name, libc::AT_REMOVEDIR)?;
        if let Ok(path) = path {
            self.sink.removed(&path);
        }
        Ok(())
    }

    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: u32,
    ) -> io::Result<()> {
        let from = self.inode(parent)?;
        let to = self.inode(new_parent)?;
        self.admit(&to, new_name)?;
        let _names = self.renaming.write().unwrap_or_else(|e| e.into_inner());
        let old_path = self.child_path(&from, name);
        let (from_fd, to_fd) = (from.dir_fd()?, to.dir_fd()?);
        let (from_dir, to_dir) = (from_fd.as_fd(), to_fd.as_fd());
        if flags & libc::RENAME_EXCHANGE == 0 {
            if let Ok(st) = sys::fstatat(to_dir, new_name, libc::AT_SYMLINK_NOFOLLOW) {
                self.before_last_name_goes(to_dir, new_name, &st);
            }
        }
        sys::renameat2(from_dir, name, to_dir, new_name, flags)?;
        // Queued work follows the file to its new name.
        let st = sys::fstatat(to_dir, new_name, libc::AT_SYMLINK_NOFOLLOW);
        if let (Ok(old), Ok(new), Ok(st)) = (old_path, self.child_path(&to, new_name), st) {
            let regular = st.st_mode & libc::S_IFMT == libc::S_IFREG;
            if flags & libc::RENAME_EXCHANGE != 0 {
                // Two files swapped names: both names now hold different content.
                self.sink.changed(&new);
                self.sink.changed(&old);
            } else {
                self.sink.renamed(&old, &new, regular);
            }
        }
        Ok(())
    }

    pub fn link(&self, ino: u64, new_parent: u64, new_name: &OsStr) -> io::Result<Entry> {
        let inode = self.inode(ino)?;
        let to = self.inode(new_parent)?;
        self.admit(&to, new_name)?;
        sys::link_fd(inode.fd()?.as_fd(), to.dir_fd()?.as_fd(), new_name)?;
        let entry = self.entry_for(self.lookup_fd(&to, new_name)?)?;
        if !inode.is_dir() && !inode.is_symlink() {
            self.sink.changed(&self.child_path(&to, new_name)?);
        }
        Ok(entry)
    }

    fn add_handle(
        &self,
        file: File,
        ino: Arc<Inode>,
        flags: i32,
        changed: bool,
        st: Option<&sys::Stat>,
    ) -> io::Result<u64> {
        let seen = match st {
            Some(st) => Seen::of(st),
            None => Seen::of(&sys::fstat(file.as_fd())?),
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(Handle {
            file,
            inode: ino,
            writable: flags & libc::O_ACCMODE != libc::O_RDONLY,
            changed: AtomicBool::new(changed),
            seen: Mutex::new(seen),
        });
        lock(&self.handles).insert(fh, handle);
        Ok(fh)
    }

    pub fn open(&self, ino: u64, flags: i32) -> io::Result<u64> {
        let inode = self.inode(ino)?;
        let fd = inode.open(flags & !CREATION_FLAGS)?;
        let truncates = flags & libc::O_TRUNC != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY;
        self.add_handle(File::from(fd), inode, flags, truncates, None)
    }

    pub fn create(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        caller: Caller,
    ) -> io::Result<(Entry, u64)> {
        let parent_inode = self.inode(parent)?;
        self.admit(&parent_inode, name)?;
        let mode = mode & !umask & 0o7777;
        let flags = flags | libc::O_CREAT | libc::O_NOFOLLOW;
        // Only a file this call really created is handed to the caller: if the name appeared
        // in the source meanwhile, open it as open(2) would, and leave its owner alone.
        let dir_fd = parent_inode.dir_fd()?;
        let dir = dir_fd.as_fd();
        let fd = match sys::openat(dir, name, flags | libc::O_EXCL, mode) {
            Ok(fd) => {
                if let Err(e) = self.give_to_caller(fd.as_fd(), dir, caller, Some(mode)) {
                    let _ = sys::unlinkat(dir, name, 0);
                    return Err(e);
                }
                fd
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && flags & libc::O_EXCL == 0 => {
                sys::openat(dir, name, flags & !libc::O_CREAT, 0)?
            }
            Err(e) => return Err(e),
        };
        let path_fd = sys::openat(
            sys::cwd(),
            sys::proc_fd_path(fd.as_fd()).as_os_str(),
            libc::O_PATH,
            0,
        )?;
        let entry = self.entry_for(path_fd)?;
        let inode = self.inode(entry.ino)?;
        let fh = self.add_handle(File::from(fd), inode, flags, true, Some(&entry.stat))?;
        Ok((entry, fh))
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> io::Result<Vec<u8>> {
        let handle = self.handle(fh)?;
        let mut buf = vec![0u8; size as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match handle
                .file
                .read_at(&mut buf[filled..], offset + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> io::Result<u32> {
        let handle = self.handle(fh)?;
        handle.changed.store(true, Ordering::Relaxed);
        handle.file.write_all_at(data, offset)?;
        Ok(data.len() as u32)
    }

    pub fn flush(&self, fh: u64) -> io::Result<()> {
        // Reports errors a close(2) of the backing file would report, such as a full disk on
        // network filesystems, without closing it: the kernel may flush a handle many times.
        let handle = self.handle(fh)?;
        let dup = handle.file.try_clone()?;
        drop(dup);
        Ok(())
    }

    pub fn fsync(&self, fh: u64, datasync: bool) -> io::Result<()> {
        let handle = self.handle(fh)?;
        if datasync {
            handle.file.sync_data()
        } else {
            handle.file.sync_all()
        }
    }

    /// Closes a handle; if it changed its file, reports the file for backup.
    pub fn release(&self, fh: u64) -> io::Result<()> {
        let handle = lock(&self.handles)
            .remove(&fh)
            .ok_or_else(|| errno(libc::EBADF))?;
        // Both checks run: `moved_on` also catches writes that never reached the daemon.
        let moved = handle.writable && handle.moved_on();
        if handle.changed.load(Ordering::Relaxed) || moved {
            self.notify_changed(handle.file.as_fd());
        }
        if handle.writable && !handle.inode.is_dir() {
            let mut closed = lock(&self.closed_writers);
            closed.retain(|w| w.inode.ino != handle.inode.ino);
            if closed.len() >= WATCH_CLOSED_MAX {
                closed.pop_front();
            }
            closed.push_back(ClosedWriter {
                inode: handle.inode.clone(),
                seen: *lock(&handle.seen),
                until: std::time::Instant::now() + WATCH_CLOSED_FOR,
            });
        }
        Ok(())
    }

    /// Lends an open handle's backing file, e.g. for the kernel to read and write it directly.
    pub fn with_backing_file<R>(&self, fh: u64, f: impl FnOnce(&File) -> R) -> io::Result<R> {
        Ok(f(&self.handle(fh)?.file))
    }

    /// `lseek` on the backing file, for `SEEK_DATA` and `SEEK_HOLE`: the offset of the next
    /// data or hole at or after `offset`.
    pub fn lseek(&self, fh: u64, offset: i64, whence: i32) -> io::Result<i64> {
        sys::lseek(self.handle(fh)?.file.as_fd(), offset, whence)
    }

    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> io::Result<()> {
        let handle = self.handle(fh)?;
        sys::fallocate(handle.file.as_fd(), mode, offset, length)?;
        handle.changed.store(true, Ordering::Relaxed);
        Ok(())
    }

    pub fn opendir(&self, ino: u64) -> io::Result<u64> {
        let inode = self.inode(ino)?;
        let dir_fd = inode.dir_fd()?;
        let dir = dir_fd.as_fd();
        let path = sys::proc_fd_path(dir);
        let parent_ino = sys::fstatat(dir, OsStr::new(".."), 0)
            .map(|st| st.st_ino)
            .unwrap_or(0);
        let mut entries = vec![
            dir_entry(inode.key.ino, libc::S_IFDIR, "."),
            dir_entry(parent_ino, libc::S_IFDIR, ".."),
        ];
        for item in std::fs::read_dir(path)? {
            let item = item?;
            let kind = item.file_type().map(file_type_bits).unwrap_or(0);
            entries.push(DirEntry {
                ino: item.ino(),
                kind,
                name: item.file_name(),
            });
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.dirs).insert(fh, Arc::new(entries));
        Ok(fh)
    }

    /// Entries from `offset` on; the offset of entry `i` is `i + 1`.
    pub fn readdir(&self, fh: u64) -> io::Result<Arc<Vec<DirEntry>>> {
        lock(&self.dirs)
            .get(&fh)
            .cloned()
            .ok_or_else(|| errno(libc::EBADF))
    }

    pub fn releasedir(&self, fh: u64) {
        lock(&self.dirs).remove(&fh);
    }

    pub fn statfs(&self) -> io::Result<libc::statvfs> {
        sys::fstatvfs(self.inode(ROOT)?.dir_fd()?.as_fd())
    }

    pub fn access(&self, ino: u64, mask: i32) -> io::Result<()> {
        let inode = self.inode(ino)?;
        if inode.is_symlink() {
            return Ok(());
        }
        let fd = inode.fd()?;
        sys::access_path(&sys::proc_fd_path(fd.as_fd()), mask)
    }

    /// Runs `f` on a path through which the file's extended attributes can be reached.
    fn with_xattr_path<R>(
        &self,
        ino: u64,
        f: impl FnOnce(&Path) -> io::Result<R>,
    ) -> io::Result<R> {
        let inode = self.inode(ino)?;
        if inode.is_symlink() {
            // The /proc link would follow the symlink; user xattrs on symlinks are not
            // allowed on Linux anyway.
            return Err(errno(libc::ENOTSUP));
        }
        let fd = inode.fd()?;
        f(&sys::proc_fd_path(fd.as_fd()))
    }

    pub fn getxattr(&self, ino: u64, name: &OsStr, size: u32) -> io::Result<sys::Xattr> {
        self.with_xattr_path(ino, |p| sys::getxattr(p, name, size as usize))
    }

    pub fn listxattr(&self, ino: u64, size: u32) -> io::Result<sys::Xattr> {
        self.with_xattr_path(ino, |p| sys::listxattr(p, size as usize))
    }

    pub fn setxattr(&self, ino: u64, name: &OsStr, value: &[u8], flags: i32) -> io::Result<()> {
        self.with_xattr_path(ino, |p| sys::setxattr(p, name, value, flags))?;
        self.acl_changed(ino, name);
        Ok(())
    }

    pub fn removexattr(&self, ino: u64, name: &OsStr) -> io::Result<()> {
        self.with_xattr_path(ino, |p| sys::removexattr(p, name))?;
        self.acl_changed(ino, name);
        Ok(())
    }

    /// An access ACL holds a directory's permission bits too: `cp -a` and `setfacl` set a
    /// mode this way, without a setattr.
    fn acl_changed(&self, ino: u64, name: &OsStr) {
        if name != "system.posix_acl_access" {
            return;
        }
        if let Some(dir) = self.inode(ino).ok().filter(|i| i.is_dir()) {
            if let Ok(fd) = dir.dir_fd() {
                if let Ok(st) = sys::fstat(fd.as_fd()) {
                    self.notify_dir(fd.as_fd(), &st);
                }
            }
        }
    }

    /// The kernel's name for a file given by its path in the source: the inode of its
    /// directory, if the kernel knows it, and its name. Used to drop cached entries for files
    /// the pipeline moved away.
    pub fn kernel_entry(&self, path: &Path) -> Option<(u64, OsString)> {
        let name = path.file_name()?.to_os_string();
        let root = self.inode(ROOT).ok()?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => {
                let fd = sys::open_beneath(root.dir_fd().ok()?.as_fd(), p, libc::O_PATH).ok()?;
                let st = sys::fstat(fd.as_fd()).ok()?;
                self.inodes.find(FileKey::of(&st))?.ino
            }
            _ => ROOT,
        };
        Some((dir, name))
    }

    /// Number of inodes the kernel holds; for tests and metrics.
    pub fn known_inodes(&self) -> usize {
        self.inodes.len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn dir_entry(ino: u64, kind: u32, name: &str) -> DirEntry {
    DirEntry {
        ino,
        kind,
        name: OsString::from(name),
    }
}

fn file_type_bits(ft: std::fs::FileType) -> u32 {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        libc::S_IFDIR
    } else if ft.is_symlink() {
        libc::S_IFLNK
    } else if ft.is_fifo() {
        libc::S_IFIFO
    } else if ft.is_socket() {
        libc::S_IFSOCK
    } else if ft.is_char_device() {
        libc::S_IFCHR
    } else if ft.is_block_device() {
        libc::S_IFBLK
    } else {
        libc::S_IFREG
    }
}

#[cfg(test)]
mod tests;
