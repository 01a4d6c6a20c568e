//! mount(8) in a mount namespace of its own, for tests of the `fuse.backupfs` form.
//!
//! mount(8) clears PATH, so mount.fuse3 finds `backupfs` on the shell's default PATH, which
//! starts with /usr/local/sbin. mount(8) runs in a new mount namespace with a directory
//! holding the binary under test bound over /usr/local/sbin there; the drop folder is
//! mounted in that namespace only and reached through nsenter. When the daemon goes, so does
//! the namespace with anything still mounted in it.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use super::Stack;

/// Orphans (the daemon, once mount.fuse3 and the helper have returned) become children of
/// this test process, so their exit status can be read.
pub fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a plain prctl on this process.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
    });
}

/// A stack whose daemon was stopped, with an fstab entry for its source and mountpoint and a
/// config that leaves both to the command line.
pub struct Fstab {
    pub stack: Stack,
    pub fstab: PathBuf,
    bin: PathBuf,
    utab: PathBuf,
}

impl Fstab {
    pub fn new(options: &str) -> Self {
        Self::with_config(options, |text| text)
    }

    /// Like [`Fstab::new`], with the config text changed by `edit` first.
    pub fn with_config(options: &str, edit: impl FnOnce(String) -> String) -> Self {
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
                super::ACCESS_KEY,
                super::SECRET_KEY
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
        std::fs::write(&config, edit(text)).unwrap();
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
    pub fn mount(&self, args: &[&str]) -> Output {
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
    pub fn daemon(&self) -> Daemon {
        let pid = *self
            .daemons()
            .first()
            .expect("a backupfs daemon for this mountpoint");
        Daemon {
            pid,
            mnt: self.stack.mnt.clone(),
            utab: self.utab.clone(),
        }
    }

    /// PIDs of processes started in the background for this stack's mountpoint.
    pub fn daemons(&self) -> Vec<i32> {
        let mnt = self.stack.mnt.to_string_lossy().into_owned();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                args.contains(&b"--detached".as_slice()) && args.contains(&mnt.as_bytes())
            })
            .collect()
    }
}

/// A daemon started by mount(8): unmounted and stopped on drop if a test left it running.
pub struct Daemon {
    pub pid: i32,
    mnt: PathBuf,
    utab: PathBuf,
}

impl Daemon {
    /// Runs a command in the daemon's mount namespace.
    pub fn nsenter(&self, program: &str, args: &[&str]) -> Output {
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

    pub fn write(&self, name: &str, content: &str) {
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

    pub fn read(&self, name: &str) -> String {
        let out = self.nsenter("cat", &[self.mnt.join(name).to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The mount as the daemon's namespace shows it: (source, type, options).
    pub fn mount_entry(&self) -> Option<(String, String, String)> {
        let info = std::fs::read_to_string(format!("/proc/{}/mountinfo", self.pid)).ok()?;
        let want = self.mnt.to_string_lossy();
        let line = info.lines().find(|l| l.split(' ').nth(4) == Some(&*want))?;
        let options = line.split(' ').nth(5)?.to_string();
        let mut after = line.split(" - ").nth(1)?.split(' ');
        let kind = after.next()?.to_string();
        Some((after.next()?.to_string(), kind, options))
    }

    /// Unmounts with umount(8), as a user would, and returns the daemon's exit code once it
    /// has drained (`None` if it is still running after a minute).
    pub fn umount_and_wait(&mut self) -> Option<i32> {
        let out = self.nsenter("umount", &[self.mnt.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "umount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.wait(Duration::from_secs(60))
    }

    /// Waits for the daemon to exit and returns its exit code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
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
