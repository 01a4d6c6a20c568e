//! The FUSE adapter: translates fuser callbacks into [`Passthrough`] calls and replies.
//!
//! Nothing here decides anything about files. Every callback replies exactly once, through
//! [`answer`], which is the one place that logs a failure and maps it to an errno. The one
//! piece of state kept here is FUSE-specific: the kernel passthrough registrations.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use super::{Caller, Passthrough, SetAttr};
use crate::config::Passthrough as Mode;
use crate::sys;

/// How every regular file is opened: no FLUSH request at each close(2). Writes reach the
/// backing file at once, so there is nothing to flush, and the release that follows reports
/// the change.
const OPENED: FopenFlags = FopenFlags::FOPEN_NOFLUSH;

/// Owns the passthrough on behalf of the kernel session.
pub struct FuseAdapter {
    fs: Arc<Passthrough>,
    /// How long the kernel may trust attributes and names. Changes made through the mount
    /// update the kernel's copy as they happen, and the pipeline invalidates what it moves
    /// away, so this only bounds how stale a change made beside the mount can look.
    ttl: Duration,
    mode: Mode,
    /// Kernel passthrough in use: set at `init` when the kernel offers it, cleared in `auto`
    /// mode if registering a backing file is refused.
    direct: AtomicBool,
    backing: Mutex<Backing>,
}

/// Backing files registered with the kernel. The kernel wants one registration per inode,
/// shared by all its open handles, so each is counted and dropped with the last handle.
#[derive(Default)]
struct Backing {
    by_ino: HashMap<u64, (BackingId, usize)>,
    /// Which handle was opened on which inode's registration.
    handles: HashMap<u64, u64>,
}

impl FuseAdapter {
    pub fn new(fs: Arc<Passthrough>, mode: Mode, ttl: Duration) -> Self {
        Self {
            fs,
            ttl,
            mode,
            direct: AtomicBool::new(false),
            backing: Mutex::default(),
        }
    }

    /// Registers (or reuses) the backing file of an open handle and sends the reply through
    /// `send`; `None` when the handle is to be served through the daemon instead.
    fn register(
        &self,
        ino: u64,
        fh: u64,
        open_backing: impl FnOnce(&std::fs::File) -> io::Result<BackingId>,
    ) -> Option<std::sync::MutexGuard<'_, Backing>> {
        if !self.direct.load(Ordering::Relaxed) {
            return None;
        }
        let mut backing = self.backing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, count)) = backing.by_ino.get_mut(&ino) {
            *count += 1;
        } else {
            match self.fs.with_backing_file(fh, open_backing) {
                Ok(Ok(id)) => {
                    backing.by_ino.insert(ino, (id, 1));
                }
                Ok(Err(e)) => {
                    self.refused(&e);
                    return None;
                }
                Err(_) => return None,
            }
        }
        backing.handles.insert(fh, ino);
        Some(backing)
    }

    fn refused(&self, e: &io::Error) {
        if self.mode == Mode::Auto {
            if self.direct.swap(false, Ordering::Relaxed) {
                tracing::info!(error = %e, "kernel passthrough refused; file reads and writes go through the daemon from now on");
            }
        } else {
            tracing::warn!(error = %e, "kernel passthrough refused for a file; it is served through the daemon");
        }
    }

    fn unregister(&self, fh: u64) {
        let mut backing = self.backing.lock().unwrap_or_else(|e| e.into_inner());
        let Some(ino) = backing.handles.remove(&fh) else {
            return;
        };
        if let Some((_, count)) = backing.by_ino.get_mut(&ino) {
            *count -= 1;
            if *count == 0 {
                backing.by_ino.remove(&ino);
            }
        }
    }
}

/// A reply that can carry an errno.
trait ErrorReply {
    fn fail(self, errno: Errno);
}

macro_rules! error_reply {
    ($($t:ty),*) => {$(
        impl ErrorReply for $t {
            fn fail(self, errno: Errno) {
                self.error(errno)
            }
        }
    )*};
}
error_reply!(
    ReplyAttr,
    ReplyCreate,
    ReplyData,
    ReplyDirectory,
    ReplyEmpty,
    ReplyEntry,
    ReplyLseek,
    ReplyOpen,
    ReplyStatfs,
    ReplyWrite,
    ReplyXattr
);

/// Sends `ok` on success; otherwise logs (expected misses at debug, the rest at warn) and
/// replies with the error's errno.
fn answer<R: ErrorReply, T>(
    op: &'static str,
    result: io::Result<T>,
    reply: R,
    ok: impl FnOnce(R, T),
) {
    match result {
        Ok(value) => ok(reply, value),
        Err(e) => {
            let code = e.raw_os_error().unwrap_or(libc::EIO);
            match code {
                libc::ENOENT
                | libc::EEXIST
                | libc::ENODATA
                | libc::ENOTEMPTY
                | libc::EACCES
                | libc::ENOTSUP
                | libc::ERANGE
                | libc::ENAMETOOLONG
                | libc::ENXIO => tracing::debug!(op, error = %e, "fuse op failed"),
                _ => tracing::warn!(op, error = %e, "fuse op failed"),
            }
            reply.fail(Errno::from_i32(code));
        }
    }
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + Duration::from_nanos(nsec as u64)
    }
}

fn kind(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

fn attr(ino: u64, st: &sys::Stat) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime, st.st_atime_nsec),
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        ctime: time(st.st_ctime, st.st_ctime_nsec),
        crtime: UNIX_EPOCH,
        kind: kind(st.st_mode),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

fn time_spec(t: Option<TimeOrNow>) -> sys::TimeSpec {
    t.map(|t| match t {
        TimeOrNow::Now => None,
        TimeOrNow::SpecificTime(at) => Some(match at.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, i64::from(d.subsec_nanos())),
            Err(e) => {
                let d = e.duration();
                (
                    -(d.as_secs() as i64) - 1,
                    1_000_000_000 - i64::from(d.subsec_nanos()),
                )
            }
        }),
    })
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Large writes: up to 1 MiB per request where the kernel allows it.
        let _ = config.set_max_write(1 << 20);
        // Lookups in one directory may run at once; open(O_TRUNC) arrives as one request
        // rather than an open and a truncation; symlink targets never change, so the kernel
        // may keep them. Each is only asked for where the kernel offers it.
        for wanted in [
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            InitFlags::FUSE_CACHE_SYMLINKS,
        ] {
            let _ = config.add_capabilities(wanted);
        }
        if self.mode == Mode::Off {
            tracing::info!("kernel passthrough off (mount.passthrough); file reads and writes go through the daemon");
            return Ok(());
        }
        let why_not = if !sys::has_cap_sys_admin() {
            Some("it needs CAP_SYS_ADMIN (run as root)")
        } else if config
            .add_capabilities(InitFlags::FUSE_PASSTHROUGH)
            .is_err()
        {
            Some("the kernel does not offer it (needs Linux 6.9 or later)")
        } else {
            // Depth 2 lets the source itself sit on a stacked filesystem such as overlayfs.
            let _ = config.set_max_stack_depth(2);
            None
        };
        match (why_not, self.mode) {
            (None, _) => {
                self.direct.store(true, Ordering::Relaxed);
                tracing::info!(
                    "kernel passthrough on: file reads and writes go straight to the source"
                );
                Ok(())
            }
            (Some(why), Mode::On) => Err(io::Error::other(format!(
                "mount.passthrough = \"on\" but kernel passthrough is unavailable: {why}"
            ))),
            (Some(why), _) => {
                tracing::info!("kernel passthrough unavailable: {why}; file reads and writes go through the daemon");
                Ok(())
            }
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let ttl = self.ttl;
        answer("lookup", self.fs.lookup(parent.0, name), reply, |r, e| {
            r.entry(&ttl, &attr(e.ino, &e.stat), Generation(0))
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let ttl = self.ttl;
        answer("getattr", self.fs.getattr(ino.0), reply, |r, st| {
            r.attr(&ttl, &attr(ino.0, &st))
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: time_spec(atime),
            mtime: time_spec(mtime),
            fh: fh.map(|f| f.0),
        };
        let ttl = self.ttl;
        answer("setattr", self.fs.setattr(ino.0, set), reply, |r, st| {
            r.attr(&ttl, &attr(ino.0, &st))
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        answer("readlink", self.fs.readlink(ino.0), reply, |r, d| {
            r.data(&d)
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let result = self
            .fs
            .mknod(parent.0, name, mode, umask, rdev, caller(req));
        self.reply_entry("mknod", result, reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let result = self.fs.mkdir(parent.0, name, mode, umask, caller(req));
        self.reply_entry("mkdir", result, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        answer("unlink", self.fs.unlink(parent.0, name), reply, |r, ()| {
            r.ok()
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        answer("rmdir", self.fs.rmdir(parent.0, name), reply, |r, ()| {
            r.ok()
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let result = self.fs.symlink(parent.0, link_name, target, caller(req));
        self.reply_entry("symlink", result, reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = self
            .fs
            .rename(parent.0, name, newparent.0, newname, flags.bits());
        answer("rename", result, reply, |r, ()| r.ok());
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.reply_entry("link", self.fs.link(ino.0, newparent.0, newname), reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        answer(
            "open",
            self.fs.open(ino.0, flags.0),
            reply,
            |r, fh| match self.register(ino.0, fh, |f| r.open_backing(f)) {
                Some(backing) => {
                    let (id, _) = &backing.by_ino[&ino.0];
                    r.opened_passthrough(FileHandle(fh), OPENED, id)
                }
                None => r.opened(FileHandle(fh), OPENED),
            },
        );
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        answer("read", self.fs.read(fh.0, offset, size), reply, |r, d| {
            r.data(&d)
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        answer("write", self.fs.write(fh.0, offset, data), reply, |r, n| {
            r.written(n)
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lo: LockOwner,
        reply: ReplyEmpty,
    ) {
        answer("flush", self.fs.flush(fh.0), reply, |r, ()| r.ok());
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.unregister(fh.0);
        answer("release", self.fs.release(fh.0), reply, |r, ()| r.ok());
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        answer("fsync", self.fs.fsync(fh.0, datasync), reply, |r, ()| {
            r.ok()
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        answer("opendir", self.fs.opendir(ino.0), reply, |r, fh| {
            r.opened(FileHandle(fh), FopenFlags::empty())
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        answer("readdir", self.fs.readdir(fh.0), reply, |mut r, entries| {
            for (i, e) in entries.iter().enumerate().skip(offset as usize) {
                if r.add(INodeNo(e.ino), (i + 1) as u64, kind(e.kind), &e.name) {
                    break;
                }
            }
            r.ok()
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        answer("statfs", self.fs.statfs(), reply, |r, s| {
            r.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            )
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let result = self.fs.setxattr(ino.0, name, value, flags);
        answer("setxattr", result, reply, |r, ()| r.ok());
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        answer(
            "getxattr",
            self.fs.getxattr(ino.0, name, size),
            reply,
            reply_xattr,
        );
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        answer(
            "listxattr",
            self.fs.listxattr(ino.0, size),
            reply,
            reply_xattr,
        );
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        answer(
            "removexattr",
            self.fs.removexattr(ino.0, name),
            reply,
            |r, ()| r.ok(),
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        answer(
            "access",
            self.fs.access(ino.0, mask.bits()),
            reply,
            |r, ()| r.ok(),
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let result = self
            .fs
            .create(parent.0, name, mode, umask, flags, caller(req));
        let ttl = self.ttl;
        answer("create", result, reply, |r, (e, fh)| {
            let attr = attr(e.ino, &e.stat);
            match self.register(e.ino, fh, |f| r.open_backing(f)) {
                Some(backing) => {
                    let (id, _) = &backing.by_ino[&e.ino];
                    r.created_passthrough(&ttl, &attr, Generation(0), FileHandle(fh), OPENED, id)
                }
                None => r.created(&ttl, &attr, Generation(0), FileHandle(fh), OPENED),
            }
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let result = self.fs.fallocate(fh.0, offset, length, mode);
        answer("fallocate", result, reply, |r, ()| r.ok());
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        // No ioctl is passed through; ENOTTY is what a file that has none answers (isatty
        // asks on every open by many programs), quietly.
        reply.error(Errno::ENOTTY);
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let result = self.fs.lseek(fh.0, offset, whence);
        answer("lseek", result, reply, |r, at| r.offset(at));
    }
}

impl FuseAdapter {
    fn reply_entry(&self, op: &'static str, result: io::Result<super::Entry>, reply: ReplyEntry) {
        let ttl = self.ttl;
        answer(op, result, reply, |r, e| {
            r.entry(&ttl, &attr(e.ino, &e.stat), Generation(0))
        });
    }
}

fn reply_xattr(reply: ReplyXattr, x: sys::Xattr) {
    match x {
        sys::Xattr::Size(n) => reply.size(n as u32),
        sys::Xattr::Data(d) => reply.data(&d),
    }
}
