//! The FUSE adapter: translates fuser callbacks into [`Passthrough`] calls and replies.
//!
//! Nothing here decides anything. Every callback replies exactly once, through [`answer`],
//! which is the one place that logs a failure and maps it to an errno.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow, WriteFlags,
};

use super::{Caller, Passthrough, SetAttr};
use crate::sys;

/// How long the kernel may trust attributes and names. Short, because the pipeline moves
/// infected files away behind the kernel's back (it also invalidates them explicitly).
const TTL: Duration = Duration::from_secs(1);

/// Owns the passthrough on behalf of the kernel session.
pub struct FuseAdapter {
    fs: Arc<Passthrough>,
}

impl FuseAdapter {
    pub fn new(fs: Arc<Passthrough>) -> Self {
        Self { fs }
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
                | libc::ERANGE => tracing::debug!(op, error = %e, "fuse op failed"),
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

fn reply_entry(reply: ReplyEntry, e: super::Entry) {
    reply.entry(&TTL, &attr(e.ino, &e.stat), Generation(0));
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Large writes: up to 1 MiB per request where the kernel allows it.
        let _ = config.set_max_write(1 << 20);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        answer("lookup", self.fs.lookup(parent.0, name), reply, reply_entry);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        answer("getattr", self.fs.getattr(ino.0), reply, |r, st| {
            r.attr(&TTL, &attr(ino.0, &st))
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
        answer("setattr", self.fs.setattr(ino.0, set), reply, |r, st| {
            r.attr(&TTL, &attr(ino.0, &st))
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
        answer("mknod", result, reply, reply_entry);
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
        answer("mkdir", result, reply, reply_entry);
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
        answer("symlink", result, reply, reply_entry);
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
        answer(
            "link",
            self.fs.link(ino.0, newparent.0, newname),
            reply,
            reply_entry,
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        answer("open", self.fs.open(ino.0, flags.0), reply, |r, fh| {
            r.opened(FileHandle(fh), FopenFlags::empty())
        });
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
        answer("create", result, reply, |r, (e, fh)| {
            r.created(
                &TTL,
                &attr(e.ino, &e.stat),
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            )
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
}

fn reply_xattr(reply: ReplyXattr, x: sys::Xattr) {
    match x {
        sys::Xattr::Size(n) => reply.size(n as u32),
        sys::Xattr::Data(d) => reply.data(&d),
    }
}
