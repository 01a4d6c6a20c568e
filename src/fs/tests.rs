//! Passthrough tests on a plain directory, without a mount.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;

use super::*;

/// What the passthrough reported: changed paths, removed ones, and directories with their
/// mode.
#[derive(Default)]
struct Collect(
    Mutex<Vec<PathBuf>>,
    Mutex<Vec<PathBuf>>,
    Mutex<Vec<(PathBuf, u32)>>,
);

impl ChangeSink for Collect {
    fn changed(&self, path: &Path) {
        self.0.lock().unwrap().push(path.to_path_buf());
    }

    fn removed(&self, path: &Path) {
        self.1.lock().unwrap().push(path.to_path_buf());
    }

    fn dir_changed(&self, path: &Path, st: &sys::Stat) {
        self.2
            .lock()
            .unwrap()
            .push((path.to_path_buf(), st.st_mode));
    }
}

fn setup() -> (tempfile::TempDir, Passthrough, Arc<Collect>) {
    let dir = tempfile::tempdir().unwrap();
    let mut globs = globset::GlobSetBuilder::new();
    globs.add(
        globset::GlobBuilder::new("**/*.exe")
            .literal_separator(true)
            .build()
            .unwrap(),
    );
    let sink = Arc::new(Collect::default());
    let fs = Passthrough::new(
        dir.path(),
        Blacklist::new(globs.build().unwrap()),
        sink.clone(),
    )
    .unwrap();
    (dir, fs, sink)
}

const ME: Caller = Caller {
    uid: 0,
    gid: 0,
    pid: 1,
};

fn create(fs: &Passthrough, parent: u64, name: &str) -> (Entry, u64) {
    fs.create(
        parent,
        OsStr::new(name),
        0o100644,
        0o022,
        libc::O_WRONLY,
        ME,
    )
    .unwrap()
}

#[test]
fn write_then_release_reports_the_path_once() {
    let (dir, fs, sink) = setup();
    let (entry, fh) = create(&fs, ROOT, "a.txt");
    assert_eq!(fs.write(fh, 0, b"hello").unwrap(), 5);
    assert!(
        sink.0.lock().unwrap().is_empty(),
        "nothing is reported before release"
    );
    fs.release(fh).unwrap();
    assert_eq!(*sink.0.lock().unwrap(), vec![PathBuf::from("a.txt")]);
    assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"hello");
    assert_eq!(fs.getattr(entry.ino).unwrap().st_size, 5);
}

#[test]
fn read_only_open_reports_nothing() {
    let (dir, fs, sink) = setup();
    std::fs::write(dir.path().join("r.txt"), b"data").unwrap();
    let e = fs.lookup(ROOT, OsStr::new("r.txt")).unwrap();
    let fh = fs.open(e.ino, libc::O_RDONLY).unwrap();
    assert_eq!(fs.read(fh, 1, 10).unwrap(), b"ata");
    fs.release(fh).unwrap();
    assert!(sink.0.lock().unwrap().is_empty());
    let fh = fs.open(e.ino, libc::O_WRONLY | libc::O_TRUNC).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(
        *sink.0.lock().unwrap(),
        vec![PathBuf::from("r.txt")],
        "O_TRUNC changes the file"
    );
}

#[test]
fn blacklisted_names_are_refused_and_never_created() {
    let (dir, fs, _) = setup();
    let sub = fs.mkdir(ROOT, OsStr::new("sub"), 0o755, 0, ME).unwrap();
    let refused = |r: io::Result<()>| assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EACCES));
    refused(
        fs.create(sub.ino, OsStr::new("x.exe"), 0o644, 0, libc::O_WRONLY, ME)
            .map(drop),
    );
    refused(
        fs.mknod(ROOT, OsStr::new("y.exe"), libc::S_IFREG | 0o644, 0, 0, ME)
            .map(drop),
    );
    refused(fs.mkdir(ROOT, OsStr::new("d.exe"), 0o755, 0, ME).map(drop));
    refused(
        fs.symlink(ROOT, OsStr::new("l.exe"), Path::new("a"), ME)
            .map(drop),
    );
    let (a, fh) = create(&fs, ROOT, "a.txt");
    fs.release(fh).unwrap();
    refused(fs.link(a.ino, ROOT, OsStr::new("h.exe")).map(drop));
    refused(fs.rename(ROOT, OsStr::new("a.txt"), ROOT, OsStr::new("a.exe"), 0));
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names.iter().all(|n| !n.as_bytes().ends_with(b".exe")),
        "{names:?}"
    );
    assert!(!dir.path().join("sub/x.exe").exists());
}

#[test]
fn rename_reports_the_new_name() {
    let (_dir, fs, sink) = setup();
    let (_, fh) = create(&fs, ROOT, "doc.tmp");
    fs.write(fh, 0, b"x").unwrap();
    fs.release(fh).unwrap();
    fs.rename(ROOT, OsStr::new("doc.tmp"), ROOT, OsStr::new("doc.txt"), 0)
        .unwrap();
    let seen = sink.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![PathBuf::from("doc.tmp"), PathBuf::from("doc.txt")]
    );
}

#[test]
fn unlinked_open_file_keeps_working() {
    let (_dir, fs, _) = setup();
    let (e, fh) = create(&fs, ROOT, "gone.txt");
    fs.unlink(ROOT, OsStr::new("gone.txt")).unwrap();
    fs.write(fh, 0, b"still here").unwrap();
    assert_eq!(fs.getattr(e.ino).unwrap().st_size, 10);
    fs.release(fh).unwrap();
}

#[test]
fn long_and_odd_names() {
    let (dir, fs, _) = setup();
    let long = "n".repeat(255);
    let (_, fh) = create(&fs, ROOT, &long);
    fs.release(fh).unwrap();
    assert!(dir.path().join(&long).exists());
    assert_eq!(
        fs.lookup(ROOT, OsStr::new(&"n".repeat(256)))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::ENAMETOOLONG)
    );
    let odd = OsStr::from_bytes(b"line\nbreak\r\xff.txt");
    let (_, fh) = fs.create(ROOT, odd, 0o644, 0, libc::O_WRONLY, ME).unwrap();
    fs.release(fh).unwrap();
    assert!(dir.path().join(odd).exists());
}

#[test]
fn readdir_lists_dot_entries_and_files() {
    let (_dir, fs, _) = setup();
    for n in ["b", "a"] {
        let (_, fh) = create(&fs, ROOT, n);
        fs.release(fh).unwrap();
    }
    let fh = fs.opendir(ROOT).unwrap();
    let mut names: Vec<_> = fs
        .readdir(fh)
        .unwrap()
        .iter()
        .map(|e| e.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, [".", "..", "a", "b"].map(OsString::from));
    fs.releasedir(fh);
}

#[test]
fn forget_closes_descriptors() {
    let (dir, fs, _) = setup();
    std::fs::write(dir.path().join("f"), b"").unwrap();
    let before = fs.known_inodes();
    let e = fs.lookup(ROOT, OsStr::new("f")).unwrap();
    let again = fs.lookup(ROOT, OsStr::new("f")).unwrap();
    assert_eq!(e.ino, again.ino);
    assert_eq!(fs.known_inodes(), before + 1);
    fs.forget(e.ino, 2);
    assert_eq!(fs.known_inodes(), before);
}

#[test]
fn setattr_changes_mode_size_and_times() {
    let (dir, fs, sink) = setup();
    std::fs::write(dir.path().join("f"), b"123456").unwrap();
    let e = fs.lookup(ROOT, OsStr::new("f")).unwrap();
    let set = SetAttr {
        mode: Some(0o600),
        size: Some(2),
        mtime: Some(Some((1_000_000, 0))),
        ..SetAttr::default()
    };
    let st = fs.setattr(e.ino, set).unwrap();
    assert_eq!(st.st_mode & 0o7777, 0o600);
    assert_eq!(st.st_size, 2);
    assert_eq!(st.st_mtime, 1_000_000);
    assert_eq!(
        *sink.0.lock().unwrap(),
        vec![PathBuf::from("f")],
        "a change by name is reported once"
    );
    // A change of mode alone is reported too: a restore gives the mode back.
    let set = SetAttr {
        mode: Some(0o640),
        ..SetAttr::default()
    };
    fs.setattr(e.ino, set).unwrap();
    assert_eq!(sink.0.lock().unwrap().len(), 2);
}

#[test]
fn unlink_reports_regular_files_only() {
    let (dir, fs, sink) = setup();
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    std::os::unix::fs::symlink("f", dir.path().join("link")).unwrap();
    fs.unlink(ROOT, OsStr::new("f")).unwrap();
    fs.unlink(ROOT, OsStr::new("link")).unwrap();
    assert_eq!(*sink.1.lock().unwrap(), vec![PathBuf::from("f")]);
}

/// With kernel passthrough (or a shared mapping) writes reach the backing file without the
/// daemon seeing them: here they are made on the source directly.
#[test]
fn writes_the_daemon_never_saw_are_reported_at_release() {
    let (dir, fs, sink) = setup();
    let path = dir.path().join("direct.txt");
    std::fs::write(&path, b"before").unwrap();
    let e = fs.lookup(ROOT, OsStr::new("direct.txt")).unwrap();

    let untouched = fs.open(e.ino, libc::O_RDWR).unwrap();
    fs.release(untouched).unwrap();
    assert!(
        sink.0.lock().unwrap().is_empty(),
        "a writable handle that changed nothing reports nothing"
    );

    let fh = fs.open(e.ino, libc::O_WRONLY).unwrap();
    // Same size: only the times tell.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(b"AFTER!", 0)
        .unwrap();
    fs.release(fh).unwrap();
    assert_eq!(*sink.0.lock().unwrap(), vec![PathBuf::from("direct.txt")]);

    // A read-only handle is never the writer, whatever happened meanwhile.
    let ro = fs.open(e.ino, libc::O_RDONLY).unwrap();
    std::fs::write(&path, b"third").unwrap();
    fs.release(ro).unwrap();
    assert_eq!(sink.0.lock().unwrap().len(), 1);
}

#[test]
fn open_writers_are_reported_once_per_change() {
    let (dir, fs, sink) = setup();
    let path = dir.path().join("log.txt");
    std::fs::write(&path, b"").unwrap();
    let e = fs.lookup(ROOT, OsStr::new("log.txt")).unwrap();
    let fh = fs.open(e.ino, libc::O_WRONLY | libc::O_APPEND).unwrap();
    fs.report_open_writers();
    assert!(sink.0.lock().unwrap().is_empty(), "nothing changed yet");

    fs.write(fh, 0, b"line 1\n").unwrap();
    fs.report_open_writers();
    fs.report_open_writers();
    assert_eq!(sink.0.lock().unwrap().len(), 1, "one change, one report");

    fs.release(fh).unwrap();
    assert_eq!(
        sink.0.lock().unwrap().len(),
        1,
        "nothing changed since the last report"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"line 1\n");
}

#[test]
fn directories_are_reported_when_made_changed_and_removed() {
    let (dir, fs, sink) = setup();
    let a = fs.mkdir(ROOT, OsStr::new("a"), 0o777, 0o022, ME).unwrap();
    let b = fs.mkdir(a.ino, OsStr::new("b"), 0o700, 0, ME).unwrap();
    let d = libc::S_IFDIR;
    assert_eq!(
        *sink.2.lock().unwrap(),
        [
            (PathBuf::from("a"), d | 0o755),
            (PathBuf::from("a/b"), d | 0o700)
        ]
    );
    // Mode and owner changes are reported; a new time is not, nor anything on the root.
    let chmod = |mode| SetAttr {
        mode: Some(mode),
        ..SetAttr::default()
    };
    fs.setattr(b.ino, chmod(0o1750)).unwrap();
    let touch = SetAttr {
        mtime: Some(Some((1_000, 0))),
        ..SetAttr::default()
    };
    fs.setattr(b.ino, touch).unwrap();
    fs.setattr(ROOT, chmod(0o755)).unwrap();
    let owner = SetAttr {
        uid: Some(0),
        ..SetAttr::default()
    };
    fs.setattr(a.ino, owner).unwrap();
    let dirs = sink.2.lock().unwrap().clone();
    assert_eq!(
        dirs[2..],
        [
            (PathBuf::from("a/b"), d | 0o1750),
            (PathBuf::from("a"), d | 0o755)
        ]
    );
    assert!(sink.0.lock().unwrap().is_empty(), "no directory is queued");

    fs.rmdir(a.ino, OsStr::new("b")).unwrap();
    assert!(!dir.path().join("a/b").exists());
    assert_eq!(*sink.1.lock().unwrap(), [PathBuf::from("a/b")]);
    // A failed rmdir reports nothing.
    std::fs::write(dir.path().join("a/f"), b"x").unwrap();
    assert!(fs.rmdir(ROOT, OsStr::new("a")).is_err());
    assert_eq!(sink.1.lock().unwrap().len(), 1);
}

#[test]
fn an_access_acl_on_a_directory_reports_its_new_mode() {
    let (_dir, fs, sink) = setup();
    let d = fs.mkdir(ROOT, OsStr::new("d"), 0o700, 0, ME).unwrap();
    // What `cp -a` sets: version 2; owner rwx, group r-x, others r-x (that is, 0755).
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm) in [(0x01u16, 7u16), (0x04, 5), (0x20, 5)] {
        acl.extend(tag.to_le_bytes());
        acl.extend(perm.to_le_bytes());
        acl.extend(u32::MAX.to_le_bytes());
    }
    let name = OsStr::new("system.posix_acl_access");
    fs.setxattr(d.ino, name, &acl, 0).unwrap();
    fs.setxattr(d.ino, OsStr::new("user.note"), b"x", 0)
        .unwrap();
    let want = [
        (PathBuf::from("d"), libc::S_IFDIR | 0o700),
        (PathBuf::from("d"), libc::S_IFDIR | 0o755),
    ];
    assert_eq!(*sink.2.lock().unwrap(), want);
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The kernel may remember far more files and directories than the daemon may hold open:
/// they are kept by handle.
#[test]
fn known_files_hold_no_descriptors() {
    let (dir, fs, _) = setup();
    for i in 0..300 {
        std::fs::write(dir.path().join(format!("f{i}")), b"x").unwrap();
        std::fs::create_dir(dir.path().join(format!("d{i}"))).unwrap();
    }
    let before = open_descriptors();
    let entries: Vec<Entry> = (0..300)
        .map(|i| fs.lookup(ROOT, OsStr::new(&format!("f{i}"))).unwrap())
        .collect();
    for i in 0..300 {
        let d = fs.lookup(ROOT, OsStr::new(&format!("d{i}"))).unwrap();
        fs.mkdir(d.ino, OsStr::new("inner"), 0o755, 0o022, ME)
            .unwrap();
    }
    assert_eq!(fs.known_inodes(), 901);
    assert!(
        open_descriptors() < before + 10,
        "{} descriptors for 900 known files and directories",
        open_descriptors() - before
    );
    // A directory removed while known still answers (as a process's working directory
    // would).
    let gone = fs.lookup(ROOT, OsStr::new("d7")).unwrap();
    fs.rmdir(gone.ino, OsStr::new("inner")).unwrap();
    fs.rmdir(ROOT, OsStr::new("d7")).unwrap();
    assert_eq!(fs.getattr(gone.ino).unwrap().st_nlink, 0);
    // Each still works: attributes, open, and a change through a fresh handle.
    let e = entries[123];
    assert_eq!(fs.getattr(e.ino).unwrap().st_ino, e.stat.st_ino);
    let fh = fs.open(e.ino, libc::O_RDWR).unwrap();
    fs.write(fh, 1, b"yz").unwrap();
    fs.release(fh).unwrap();
    assert_eq!(std::fs::read(dir.path().join("f123")).unwrap(), b"xyz");
}

/// A known file whose last name is removed through the mount still answers, as it would on
/// any filesystem for a process that has it open.
#[test]
fn a_known_file_keeps_answering_after_its_last_name_goes() {
    let (dir, fs, _) = setup();
    std::fs::write(dir.path().join("gone.txt"), b"still here").unwrap();
    let e = fs.lookup(ROOT, OsStr::new("gone.txt")).unwrap();
    let fh = fs.open(e.ino, libc::O_RDONLY).unwrap();
    fs.unlink(ROOT, OsStr::new("gone.txt")).unwrap();
    let st = fs.getattr(e.ino).unwrap();
    assert_eq!((st.st_nlink, st.st_size), (0, 10));
    assert_eq!(fs.read(fh, 0, 64).unwrap(), b"still here");
    fs.release(fh).unwrap();

    // The same when a rename replaces it.
    std::fs::write(dir.path().join("old.txt"), b"old").unwrap();
    std::fs::write(dir.path().join("new.txt"), b"new").unwrap();
    let old = fs.lookup(ROOT, OsStr::new("old.txt")).unwrap();
    fs.rename(ROOT, OsStr::new("new.txt"), ROOT, OsStr::new("old.txt"), 0)
        .unwrap();
    assert_eq!(fs.getattr(old.ino).unwrap().st_nlink, 0);
}

/// With kernel passthrough a shared mapping writes to the source file itself and outlives
/// the handle, whose release then comes before the writes: the periodic check still sees
/// them.
#[test]
fn writes_after_the_release_are_reported_by_the_periodic_check() {
    let (dir, fs, sink) = setup();
    let (_, fh) = create(&fs, ROOT, "mapped.bin");
    fs.write(fh, 0, b"first").unwrap();
    fs.release(fh).unwrap();
    assert_eq!(sink.0.lock().unwrap().len(), 1);
    fs.report_open_writers();
    assert_eq!(
        sink.0.lock().unwrap().len(),
        1,
        "nothing changed since the release"
    );

    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("mapped.bin"))
        .unwrap()
        .write_all_at(b"FIRST", 0)
        .unwrap();
    fs.report_open_writers();
    fs.report_open_writers();
    assert_eq!(
        *sink.0.lock().unwrap(),
        vec![PathBuf::from("mapped.bin"), PathBuf::from("mapped.bin")]
    );
}
