//! The only module with `unsafe`: thin, checked wrappers over the `*at()` system calls the
//! passthrough and the pipeline use to stay relative to a directory fd.
//!
//! Every wrapper returns `io::Result` with the raw errno intact, so the FUSE adapter can hand
//! the kernel exactly what the backing filesystem said.

use std::ffi::{CString, OsStr};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

pub type Stat = libc::stat;

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The path through which the kernel reopens an `O_PATH` descriptor with real access flags.
pub fn proc_fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

pub fn openat(dir: BorrowedFd<'_>, name: &OsStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let name = cstr(name)?;
    // SAFETY: `name` is a valid C string for the duration of the call; the returned fd is
    // fresh and owned by nobody else.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode,
        )
    })?;
    // SAFETY: `fd` was just returned by openat and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `path` below `dir` without ever leaving it: no `..` escape, no symlink followed,
/// no crossing into another mount. The pipeline uses this so a symlink planted in the source
/// directory can never make it read a file elsewhere.
pub fn open_beneath(dir: BorrowedFd<'_>, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let cpath = cstr(path.as_os_str())?;
    // SAFETY: open_how is a plain C struct for which all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `how` and `cpath` outlive the call and the size passed matches the struct.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            cpath.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

pub fn fstatat(dir: BorrowedFd<'_>, name: &OsStr, flags: i32) -> io::Result<Stat> {
    let name = cstr(name)?;
    let mut st = MaybeUninit::<Stat>::uninit();
    // SAFETY: `st` is writable memory of the right size; the kernel fills it on success.
    check(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), st.as_mut_ptr(), flags) })?;
    // SAFETY: fstatat succeeded, so `st` is initialised.
    Ok(unsafe { st.assume_init() })
}

/// Stats the file an fd refers to, including `O_PATH` descriptors.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    fstatat(
        fd,
        OsStr::new(""),
        libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
    )
}

pub fn mkdirat(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    let name = cstr(name)?;
    // SAFETY: valid C string, plain syscall.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(drop)
}

pub fn mknodat(dir: BorrowedFd<'_>, name: &OsStr, mode: u32, rdev: u64) -> io::Result<()> {
    let name = cstr(name)?;
    // SAFETY: valid C string, plain syscall.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, rdev) }).map(drop)
}

pub fn symlinkat(target: &OsStr, dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let (target, name) = (cstr(target)?, cstr(name)?);
    // SAFETY: valid C strings, plain syscall.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
}

pub fn unlinkat(dir: BorrowedFd<'_>, name: &OsStr, flags: i32) -> io::Result<()> {
    let name = cstr(name)?;
    // SAFETY: valid C string, plain syscall.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop)
}

pub fn renameat2(
    from_dir: BorrowedFd<'_>,
    from: &OsStr,
    to_dir: BorrowedFd<'_>,
    to: &OsStr,
    flags: u32,
) -> io::Result<()> {
    let (from, to) = (cstr(from)?, cstr(to)?);
    // SAFETY: valid C strings, plain syscall.
    check(unsafe {
        libc::renameat2(
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
            flags,
        )
    })
    .map(drop)
}

/// Makes a new name for the file behind an `O_PATH` fd (which may itself have no name left).
pub fn link_fd(fd: BorrowedFd<'_>, to_dir: BorrowedFd<'_>, to: &OsStr) -> io::Result<()> {
    let from = cstr(proc_fd_path(fd).as_os_str())?;
    let to = cstr(to)?;
    // SAFETY: valid C strings, plain syscall.
    check(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    })
    .map(drop)
}

pub fn readlink_fd(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    let empty = c"";
    // SAFETY: `buf` is writable for its whole length, which is what we pass.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            empty.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

pub fn fchownat_empty(fd: BorrowedFd<'_>, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    let uid = uid.unwrap_or(u32::MAX);
    let gid = gid.unwrap_or(u32::MAX);
    // SAFETY: empty C string literal; -1 (u32::MAX) leaves an id unchanged.
    check(unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            uid,
            gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

pub fn chmod_path(path: &Path, mode: u32) -> io::Result<()> {
    let p = cstr(path.as_os_str())?;
    // SAFETY: valid C string, plain syscall.
    check(unsafe { libc::chmod(p.as_ptr(), mode) }).map(drop)
}

/// `fchmod` where `fd` allows it; an `O_PATH` descriptor does not, so those go through their
/// `/proc/self/fd` link.
pub fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor we borrow for its duration.
    match check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }) {
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => chmod_path(&proc_fd_path(fd), mode),
        other => other.map(drop),
    }
}

/// `None` leaves a time unchanged; `Some(None)` sets it to now.
pub type TimeSpec = Option<Option<(i64, i64)>>;

pub fn utimens_path(path: &Path, atime: TimeSpec, mtime: TimeSpec) -> io::Result<()> {
    let p = cstr(path.as_os_str())?;
    let to_ts = |t: TimeSpec| match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(None) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(Some((s, ns))) => libc::timespec {
            tv_sec: s,
            tv_nsec: ns,
        },
    };
    let times = [to_ts(atime), to_ts(mtime)];
    // SAFETY: `times` is an array of two timespecs, as utimensat requires.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), 0) }).map(drop)
}

pub fn fallocate(fd: BorrowedFd<'_>, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: plain syscall on an fd we borrow.
    check(unsafe { libc::fallocate(fd.as_raw_fd(), mode, offset as i64, len as i64) }).map(drop)
}

/// Lets a write to a closed pipe end the process quietly, as for any command-line tool
/// (`backupfs ls | head`), instead of failing every later print.
pub fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to the default has no memory effects.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Points stdin, stdout and stderr at /dev/null, for a daemon whose starter has gone.
pub fn stdio_to_dev_null() -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors; `null` stays open until after.
        check(unsafe { libc::dup2(null.as_raw_fd(), fd) })?;
    }
    Ok(())
}

/// Flushes everything written to the filesystem holding `file`.
pub fn syncfs(file: &std::fs::File) -> io::Result<()> {
    // SAFETY: a plain syscall on an open descriptor.
    check(unsafe { libc::syncfs(file.as_raw_fd()) }).map(drop)
}

pub fn lseek(fd: BorrowedFd<'_>, offset: i64, whence: i32) -> io::Result<i64> {
    // SAFETY: plain syscall on a descriptor we borrow for its duration.
    let ret = unsafe { libc::lseek(fd.as_raw_fd(), offset, whence) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Whether this process holds CAP_SYS_ADMIN in its effective set (what registering a backing
/// file for kernel passthrough needs).
pub fn has_cap_sys_admin() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

pub fn fstatvfs(fd: BorrowedFd<'_>) -> io::Result<libc::statvfs> {
    let mut st = MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `st` is writable memory of the right size.
    check(unsafe { libc::fstatvfs(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstatvfs succeeded, so `st` is initialised.
    Ok(unsafe { st.assume_init() })
}

pub fn access_path(path: &Path, mask: i32) -> io::Result<()> {
    let p = cstr(path.as_os_str())?;
    // SAFETY: valid C string, plain syscall.
    check(unsafe { libc::faccessat(libc::AT_FDCWD, p.as_ptr(), mask, 0) }).map(drop)
}

/// The answer to an xattr query: its size when the caller passed size 0, else the bytes.
pub enum Xattr {
    Size(usize),
    Data(Vec<u8>),
}

/// Extended attributes go through the `/proc/self/fd` path, because the `f*xattr` calls
/// refuse `O_PATH` descriptors.
pub fn getxattr(path: &Path, name: &OsStr, size: usize) -> io::Result<Xattr> {
    let (p, n) = (cstr(path.as_os_str())?, cstr(name)?);
    let mut buf = vec![0u8; size];
    // SAFETY: `buf` is writable for `size` bytes; size 0 asks only for the length.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), size) };
    xattr_result(len, size, buf)
}

pub fn listxattr(path: &Path, size: usize) -> io::Result<Xattr> {
    let p = cstr(path.as_os_str())?;
    let mut buf = vec![0u8; size];
    // SAFETY: `buf` is writable for `size` bytes; size 0 asks only for the length.
    let len = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), size) };
    xattr_result(len, size, buf)
}

fn xattr_result(len: isize, size: usize, mut buf: Vec<u8>) -> io::Result<Xattr> {
    if len < 0 {
        return Err(io::Error::last_os_error());
    }
    if size == 0 {
        return Ok(Xattr::Size(len as usize));
    }
    buf.truncate(len as usize);
    Ok(Xattr::Data(buf))
}

pub fn setxattr(path: &Path, name: &OsStr, value: &[u8], flags: i32) -> io::Result<()> {
    let (p, n) = (cstr(path.as_os_str())?, cstr(name)?);
    // SAFETY: `value` is readable for its length.
    check(unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
    .map(drop)
}

pub fn removexattr(path: &Path, name: &OsStr) -> io::Result<()> {
    let (p, n) = (cstr(path.as_os_str())?, cstr(name)?);
    // SAFETY: valid C strings, plain syscall.
    check(unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) }).map(drop)
}

/// Raises the open-file limit as far as the system allows: the passthrough keeps one
/// descriptor per inode the kernel remembers. As root that is `fs.nr_open`, not just the
/// inherited hard limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = MaybeUninit::<libc::rlimit>::uninit();
    // SAFETY: `lim` is writable memory of the right size.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, lim.as_mut_ptr()) })?;
    // SAFETY: getrlimit succeeded.
    let mut lim = unsafe { lim.assume_init() };
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(lim.rlim_max);
    let wanted = lim.rlim_max.max(nr_open);
    let raised = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: wanted,
    };
    // SAFETY: `raised` is a valid rlimit. Raising the hard limit needs CAP_SYS_RESOURCE;
    // without it, fall back to the hard limit we have.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        return Ok(wanted);
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid rlimit.
    check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    Ok(lim.rlim_cur)
}

/// Takes an exclusive, non-blocking lock on an open file; `false` if another process
/// holds it. The lock lasts as long as the file stays open.
pub fn try_lock(file: &std::fs::File) -> io::Result<bool> {
    // SAFETY: plain syscall on a descriptor we borrow.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

pub fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Opens a directory by absolute path as an `O_PATH` anchor for the `*at()` calls.
pub fn open_beneath_root(path: &Path) -> io::Result<OwnedFd> {
    openat(cwd(), path.as_os_str(), libc::O_PATH | libc::O_DIRECTORY, 0)
}

/// The working directory as a dirfd, for calls given an absolute path.
pub fn cwd() -> BorrowedFd<'static> {
    // SAFETY: AT_FDCWD is a permanent sentinel the *at() calls accept; it is never closed.
    unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) }
}

/// Where the kernel says an fd's file lives now (its `/proc/self/fd` link target).
pub fn readlink_fd_proc(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    std::fs::read_link(proc_fd_path(fd)).map(|p| p.into_os_string().into_vec())
}

/// Sets the process umask, returning the old one.
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask) }
}

/// Lazily unmounts `path` (MNT_DETACH).
pub fn detach(path: &Path) -> io::Result<()> {
    let p = cstr(path.as_os_str())?;
    // SAFETY: valid C string, plain syscall.
    check(unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

/// A kernel file handle: names an inode on its filesystem without holding it open.
#[derive(Debug, Clone)]
pub struct FileHandle {
    handle_type: i32,
    bytes: Vec<u8>,
}

/// Room for the handle header plus the largest handle any filesystem returns.
const HANDLE_BUF: usize = std::mem::size_of::<libc::file_handle>() + libc::MAX_HANDLE_SZ as usize;

/// The file handle of the file `fd` refers to (an `O_PATH` descriptor will do). Fails with
/// `EOPNOTSUPP` on filesystems that have none.
pub fn file_handle(fd: BorrowedFd<'_>) -> io::Result<FileHandle> {
    // u32 words keep the buffer aligned for the header.
    let mut buf = [0u32; HANDLE_BUF.div_ceil(4)];
    let header = buf.as_mut_ptr().cast::<libc::file_handle>();
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `header` points at a buffer of HANDLE_BUF bytes, enough for a file_handle
    // header followed by MAX_HANDLE_SZ bytes, as handle_bytes tells the kernel.
    unsafe {
        (*header).handle_bytes = libc::MAX_HANDLE_SZ as libc::c_uint;
        check(libc::name_to_handle_at(
            fd.as_raw_fd(),
            c"".as_ptr(),
            header,
            &mut mount_id,
            libc::AT_EMPTY_PATH,
        ))?;
        let len = ((*header).handle_bytes as usize).min(libc::MAX_HANDLE_SZ as usize);
        let start = std::mem::size_of::<libc::file_handle>();
        let bytes = std::slice::from_raw_parts(buf.as_ptr().cast::<u8>().add(start), len);
        Ok(FileHandle {
            handle_type: (*header).handle_type,
            bytes: bytes.to_vec(),
        })
    }
}

/// Opens the file `handle` names, on the filesystem `mount_fd` is on (needs
/// CAP_DAC_READ_SEARCH). Fails with `ESTALE` once the file is gone.
pub fn open_by_handle(
    mount_fd: BorrowedFd<'_>,
    handle: &FileHandle,
    flags: i32,
) -> io::Result<OwnedFd> {
    let mut buf = [0u32; HANDLE_BUF.div_ceil(4)];
    let header = buf.as_mut_ptr().cast::<libc::file_handle>();
    // SAFETY: as in `file_handle`; the handle bytes fit, being at most MAX_HANDLE_SZ long.
    let fd = unsafe {
        (*header).handle_bytes = handle.bytes.len() as libc::c_uint;
        (*header).handle_type = handle.handle_type;
        let start = std::mem::size_of::<libc::file_handle>();
        std::ptr::copy_nonoverlapping(
            handle.bytes.as_ptr(),
            buf.as_mut_ptr().cast::<u8>().add(start),
            handle.bytes.len(),
        );
        check(libc::open_by_handle_at(
            mount_fd.as_raw_fd(),
            header,
            flags | libc::O_CLOEXEC,
        ))?
    };
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `data` on the unix socket `sock` with `fd` attached (`SCM_RIGHTS`), so the peer
/// receives its own descriptor of the same open file: how clamd is handed a file to scan
/// without the bytes crossing the socket.
pub fn send_with_fd(sock: BorrowedFd<'_>, data: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
    // Room for one control message carrying one descriptor, aligned as `cmsghdr` needs.
    let mut control = [0u64; 4];
    // SAFETY: CMSG_SPACE and CMSG_LEN are pure arithmetic.
    let (space, len) = unsafe {
        let n = std::mem::size_of::<RawFd>() as u32;
        (libc::CMSG_SPACE(n) as usize, libc::CMSG_LEN(n) as usize)
    };
    assert!(space <= std::mem::size_of_val(&control));
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the sendmsg call,
    // and the control message written lies within `control` (checked above).
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = len as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd.as_raw_fd());
        loop {
            let n = libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL);
            if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                break n;
            }
        }
    };
    match sent {
        n if n < 0 => Err(io::Error::last_os_error()),
        n if (n as usize) < data.len() => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the socket took only part of the message",
        )),
        _ => Ok(()),
    }
}

/// Receives what [`send_with_fd`] sent: the bytes into `buf`, and the descriptor if one came.
#[cfg(test)]
pub fn recv_with_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut control = [0u64; 4];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as in send_with_fd; the kernel writes at most msg_controllen bytes of control
    // data, and a descriptor it passed is ours to own.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        let fd = (!cmsg.is_null()
            && (*cmsg).cmsg_level == libc::SOL_SOCKET
            && (*cmsg).cmsg_type == libc::SCM_RIGHTS)
            .then(|| OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast())));
        Ok((n as usize, fd))
    }
}
