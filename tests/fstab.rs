//! mount(8) and fstab: `fuse.backupfs` entries mounted by the real mount(8) and mount.fuse3.
//!
//! mount(8) clears PATH, so mount.fuse3 finds `backupfs` on the shell's default PATH, which
//! starts with /usr/local/sbin. Each test runs mount(8) in a mount namespace of its own with
//! a directory holding the binary under test bound over /usr/local/sbin there; the drop
//! folder is mounted in that namespace only, and reached through nsenter. When the daemon
//! goes, so does the namespace with anything still mounted in it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use common::Stack;

/// Orphans (the daemon, once mount.fuse3 and the helper have returned) become children of
/// this test process, so their exit status can be read.
fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a plain prctl on this process.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
    });
}

/// A stack whose daemon was stopped, with an fstab entry for its source and mountpoint and a
/// config that leaves both to the command line.
struct Fstab {
    stack: Stack,
    fstab: PathBuf,
    bin: PathBuf,
    utab: PathBuf,
}

impl Fstab {
    fn new(options: &str) -> Self {
        become_subreaper();
        let mut stack = Stack::start();
        stack.stop_daemon();
        let root = stack.dir.path().to_path_buf();
        let text = std::fs::read_to_string(&stack.config).unwrap();
        let text = text
            .replace("source = \"source\"\n", "")
            .replace("mountpoint = \"mnt\"\n", "");
        assert!(
            !text.contains("mountpoint ="),
            "the mount dirs come from fstab"
        );
        // mount(8) at boot has no environment to carry S3 keys: they come from a file.
        let keys = root.join("aws-credentials");
        std::fs::write(
            &keys,
            format!(
                "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                common::ACCESS_KEY,
                common::SECRET_KEY
            ),
        )
        .unwrap();
        std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let text = text.replace(
            "[destination]\n",
            &format!("[destination]\ncredentials-file = \"{}\"\n", keys.display()),
        );
        assert!(text.contains("credentials-file"), "{text}");
        let config = root.join("fstab-config.toml");
        std::fs::write(&config, text).unwrap();
        let bin = root.join("sbin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_backupfs"), bin.join("backupfs")).unwrap();
        let fstab = root.join("fstab");
        std::fs::write(
            &fstab,
            format!(
                "# backupfs drop folder\n{} {} fuse.backupfs config={}{options} 0 0\n",
                stack.source.display(),
                stack.mnt.display(),
                config.display()
            ),
        )
        .unwrap();
        Self {
            fstab,
            bin,
            utab: root.join("utab"),
            stack,
        }
    }

    /// Runs mount(8) with `args` in a new mount namespace.
    fn mount(&self, args: &[&str]) -> Output {
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount --bind "$1" /usr/local/sbin && shift && exec mount "$@""#)
            .arg("sh")
            .arg(&self.bin)
            .args(args)
            .env("LIBMOUNT_UTAB", &self.utab)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .stdin(Stdio::null())
            .output()
            .expect("run mount(8)")
    }

    /// The daemon serving this stack's mountpoint, found by its command line.
    fn daemon(&self) -> Daemon {
        let mnt = self.stack.mnt.to_string_lossy().into_owned();
        let pid = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .find(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                args.contains(&b"--detached".as_slice()) && args.contains(&mnt.as_bytes())
            })
            .expect("a backupfs daemon for this mountpoint");
        Daemon {
            pid,
            mnt: self.stack.mnt.clone(),
            utab: self.utab.clone(),
        }
    }
}

/// A daemon started by mount(8): unmounted and stopped on drop if a test left it running.
struct Daemon {
    pid: i32,
    mnt: PathBuf,
    utab: PathBuf,
}

impl Daemon {
    /// Runs a command in the daemon's mount namespace.
    fn nsenter(&self, program: &str, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--target={}", self.pid))
            .arg("--mount")
            .arg("--")
            .arg(program)
            .args(args)
            .env("LIBMOUNT_UTAB", &self.utab)
            .stdin(Stdio::null())
            .output()
            .expect("nsenter")
    }

    fn write(&self, name: &str, content: &str) {
        let path = self.mnt.join(name);
        let out = self.nsenter(
            "sh",
            &[
                "-c",
                r#"printf %s "$1" > "$2""#,
                "sh",
                content,
                path.to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn read(&self, name: &str) -> String {
        let out = self.nsenter("cat", &[self.mnt.join(name).to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The mount as the daemon's namespace shows it: (source, type, options).
    fn mount_entry(&self) -> Option<(String, String, String)> {
        let info = std::fs::read_to_string(format!("/proc/{}/mountinfo", self.pid)).ok()?;
        let want = self.mnt.to_string_lossy();
        let line = info.lines().find(|l| l.split(' ').nth(4) == Some(&*want))?;
        let options = line.split(' ').nth(5)?.to_string();
        let mut after = line.split(" - ").nth(1)?.split(' ');
        let kind = after.next()?.to_string();
        Some((after.next()?.to_string(), kind, options))
    }

    /// Waits for the daemon to exit and returns its exit code.
    fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let mut status = 0;
            // SAFETY: waitpid on a process this test reaps as subreaper.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if rc == self.pid {
                self.pid = 0;
                return Some(if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.pid == 0 {
            return;
        }
        let _ = self.nsenter("umount", &["-l", self.mnt.to_str().unwrap()]);
        // SAFETY: signalling the daemon this test started.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        if self.wait(Duration::from_secs(30)).is_none() {
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            self.wait(Duration::from_secs(10));
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn an_fstab_entry_mounts_with_mount_a_and_umount_drains() {
    let t = Fstab::new(",_netdev,nofail,noatime,nodev");
    let out = t.mount(&["-T", t.fstab.to_str().unwrap(), "-a"]);
    assert!(out.status.success(), "mount -a: {}", text(&out));
    // mount(8) returned: the mount is there already, served by a daemon in the background.
    let mut daemon = t.daemon();
    let (source, kind, options) = daemon.mount_entry().expect("mounted when mount returned");
    assert_eq!(kind, "fuse.backupfs");
    assert_eq!(Path::new(&source), t.stack.source);
    assert!(
        options.contains("nodev") && options.contains("noatime"),
        "{options}"
    );

    daemon.write("from-fstab.txt", "written through an fstab mount\n");
    let out = daemon.nsenter("umount", &[t.stack.mnt.to_str().unwrap()]);
    assert!(out.status.success(), "umount: {}", text(&out));
    // umount returns at once; the daemon drains the queue and exits 0.
    assert_eq!(
        daemon.wait(Duration::from_secs(60)),
        Some(0),
        "daemon exit code"
    );
    let log = t.stack.log_file();
    assert!(log.contains("mountpoint was unmounted"), "{log}");
    let catalog = t.stack.catalog();
    let (_, object) = catalog
        .get("from-fstab.txt")
        .unwrap_or_else(|| panic!("not in the catalog after the drain: {catalog:?}\n{log}"));
    assert_eq!(
        t.stack.restore_with_stock_tools(object),
        b"written through an fstab mount\n"
    );

    // `mount MOUNTPOINT` finds the same entry; the file is there through the new mount.
    let out = t.mount(&[
        "-T",
        t.fstab.to_str().unwrap(),
        t.stack.mnt.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "mount MOUNTPOINT: {}", text(&out));
    let mut daemon = t.daemon();
    assert_eq!(
        daemon.read("from-fstab.txt"),
        "written through an fstab mount\n"
    );
    let out = daemon.nsenter("umount", &[t.stack.mnt.to_str().unwrap()]);
    assert!(out.status.success(), "umount: {}", text(&out));
    assert_eq!(
        daemon.wait(Duration::from_secs(60)),
        Some(0),
        "daemon exit code"
    );
}

#[test]
fn mount_t_reports_errors_before_returning() {
    let t = Fstab::new("");
    let config = t.stack.dir.path().join("fstab-config.toml");
    let (source, mnt) = (
        t.stack.source.to_str().unwrap(),
        t.stack.mnt.to_str().unwrap(),
    );

    // A mount option backupfs does not know: refused, naming it.
    let bad_option = format!("config={},bogus", config.display());
    let out = t.mount(&["-t", "fuse.backupfs", source, mnt, "-o", &bad_option]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("`bogus` is not known"),
        "{}",
        text(&out)
    );

    // A config with a misspelt key: the daemon's error, naming file and key, reaches the
    // caller of mount(8), and nothing stays mounted or running.
    let broken = t.stack.dir.path().join("broken.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&broken, good.replace("workers = 2", "wokers = 2")).unwrap();
    let started = Instant::now();
    let out = t.mount(&[
        "-t",
        "fuse.backupfs",
        source,
        mnt,
        "-o",
        &format!("config={}", broken.display()),
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains("wokers") && shown.contains(&broken.display().to_string()),
        "{shown}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "returned promptly"
    );

    // A missing config file.
    let out = t.mount(&[
        "-t",
        "fuse.backupfs",
        source,
        mnt,
        "-o",
        "config=/nonexistent/backupfs.toml",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("cannot read config file /nonexistent/backupfs.toml"),
        "{}",
        text(&out)
    );
    // No daemon was left behind by any of them.
    let mnt_bytes = mnt.as_bytes();
    let left = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .split(|b| *b == 0)
                .any(|a| a == mnt_bytes)
        })
        .count();
    assert_eq!(left, 0, "no daemon left running");
}
