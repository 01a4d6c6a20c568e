//! The mount(8) form: `backupfs SOURCE MOUNTPOINT -o config=FILE[,OPTION...]`.
//!
//! For an fstab entry of type `fuse.backupfs` (or `mount -t fuse.backupfs`), mount(8) runs
//! `mount.fuse3`, which runs `backupfs SOURCE MOUNTPOINT -o OPTIONS` through `/bin/sh`, so
//! the binary must be on the shell's default PATH (mount(8) clears PATH): /usr/local/bin
//! does. This form starts the daemon in the background and returns once the mount is up, or
//! fails with the daemon's own error message when it could not mount.

use std::ffi::OsString;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use fuser::MountOption;

/// Options that only matter to mount(8), fstab or systemd, and atime variants the kernel
/// chooses for FUSE by itself; accepted and left alone.
const IGNORED: &[&str] = &[
    "_netdev",
    "nofail",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "defaults",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "diratime",
    "nodiratime",
];

/// What `-o` asked for.
#[derive(Debug, Default, PartialEq)]
pub struct MountOptions {
    /// `config=FILE`, which only the mount(8) form takes.
    pub config: Option<PathBuf>,
    /// `allow_other`: sets `mount.allow-other`.
    pub allow_other: bool,
    /// Flags handed to the kernel with the mount.
    pub kernel: Vec<MountOption>,
    /// The options to hand on to the daemon: everything but `config=`.
    pub rest: Vec<String>,
}

/// Parses a comma-separated option list as mount(8) writes it. `config=` is refused unless
/// `helper` (the `mount` command takes `--config`).
pub fn parse_options(text: &str, helper: bool) -> anyhow::Result<MountOptions> {
    let mut parsed = MountOptions::default();
    for option in text.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        if let Some(file) = option.strip_prefix("config=") {
            if !helper {
                bail!("mount option `config=`: give the config file with --config");
            }
            if file.is_empty() {
                bail!("mount option `config=` names no file");
            }
            parsed.config = Some(PathBuf::from(file));
            continue;
        }
        parsed.rest.push(option.to_string());
        let flag = match option {
            "allow_other" => {
                parsed.allow_other = true;
                continue;
            }
            "default_permissions" => MountOption::DefaultPermissions,
            "rw" => MountOption::RW,
            "dev" => MountOption::Dev,
            "nodev" => MountOption::NoDev,
            "suid" => MountOption::Suid,
            "nosuid" => MountOption::NoSuid,
            "exec" => MountOption::Exec,
            "noexec" => MountOption::NoExec,
            "atime" => MountOption::Atime,
            "noatime" => MountOption::NoAtime,
            "sync" => MountOption::Sync,
            "async" => MountOption::Async,
            "dirsync" => MountOption::DirSync,
            "remount" => bail!(
                "mount option `remount`: backupfs cannot change options of a running mount; \
                 unmount it and mount it again"
            ),
            "ro" => bail!(
                "mount option `ro`: a drop folder must be writable; backupfs mounts read-write only"
            ),
            o if IGNORED.contains(&o)
                || o.starts_with("x-")
                || o.starts_with("comment=")
                || o.starts_with("fsname=")
                || o.starts_with("subtype=") =>
            {
                parsed.rest.pop();
                continue;
            }
            o => bail!(
                "mount option `{o}` is not known; backupfs takes config=FILE, allow_other, \
                 default_permissions and the flags rw, nodev, nosuid, noexec, noatime, sync, \
                 dirsync (and their opposites); everything else goes in the config file"
            ),
        };
        parsed.kernel.push(flag);
    }
    Ok(parsed)
}

/// True when the arguments are the mount(8) form: called as `mount.backupfs` or
/// `mount.fuse.backupfs`, or with a first argument that is no subcommand and no flag.
pub fn is_helper_call(args: &[OsString], cli: &clap::Command) -> bool {
    let called_as = args
        .first()
        .map(Path::new)
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().starts_with("mount."))
        .unwrap_or(false);
    if called_as {
        return true;
    }
    let Some(first) = args.get(1).and_then(|a| a.to_str()) else {
        // Not valid UTF-8: no subcommand is spelled like that, so it is a source path.
        return args.len() >= 3;
    };
    args.len() >= 3
        && !first.starts_with('-')
        && first != "help"
        && !cli
            .get_subcommands()
            .any(|c| c.get_name() == first || c.get_all_aliases().any(|a| a == first))
}

/// The mount(8) form, parsed.
#[derive(Debug, PartialEq)]
struct HelperArgs {
    source: PathBuf,
    mountpoint: PathBuf,
    options: MountOptions,
    /// `-f`: stay in the foreground (for trying the form by hand).
    foreground: bool,
}

const USAGE: &str = "usage: backupfs SOURCE MOUNTPOINT -o config=FILE[,allow_other,...] [-f]";

fn parse_helper_args(args: &[OsString]) -> anyhow::Result<HelperArgs> {
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let mut foreground = false;
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        match arg.to_str() {
            Some("-o") => {
                let value = rest
                    .next()
                    .with_context(|| format!("-o needs a value; {USAGE}"))?;
                options.push(value.to_str().context("-o: not valid UTF-8")?.to_string());
            }
            Some(o) if o.starts_with("-o") => options.push(o[2..].to_string()),
            // mount(8) hands a direct helper the type, and may add -n (no mtab), -s
            // (sloppy) or -v (verbose); none change what backupfs does.
            Some("-t") => {
                rest.next();
            }
            Some("-n" | "-s" | "-v") => {}
            Some("-f") => foreground = true,
            Some(o) if o.starts_with('-') => bail!("unknown flag `{o}`; {USAGE}"),
            _ => positional.push(PathBuf::from(arg)),
        }
    }
    let [source, mountpoint] = <[PathBuf; 2]>::try_from(positional).map_err(|p| {
        anyhow::anyhow!(
            "expected SOURCE and MOUNTPOINT, got {} paths; {USAGE}",
            p.len()
        )
    })?;
    let options = parse_options(&options.join(","), true)?;
    if options.config.is_none() {
        bail!("no config file: add -o config=/etc/backupfs/config.toml; {USAGE}");
    }
    Ok(HelperArgs {
        source,
        mountpoint,
        options,
        foreground,
    })
}

/// Runs the mount(8) form.
pub fn main(args: &[OsString]) -> ExitCode {
    match helper(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("backupfs: {}", super::describe(&e));
            ExitCode::FAILURE
        }
    }
}

fn helper(args: &[OsString]) -> anyhow::Result<ExitCode> {
    let parsed = parse_helper_args(args)?;
    let absolute = |p: &Path| std::path::absolute(p).with_context(|| format!("{}", p.display()));
    let config = absolute(parsed.options.config.as_deref().unwrap_or(Path::new("")))?;
    let source = absolute(&parsed.source)?;
    let mountpoint = absolute(&parsed.mountpoint)?;
    if parsed.foreground {
        crate::daemon::run(
            &config,
            crate::daemon::MountArgs {
                source: Some(source),
                mountpoint: Some(mountpoint),
                allow_other: parsed.options.allow_other,
                options: parsed.options.kernel,
                detached: false,
            },
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut daemon_args: Vec<OsString> = vec!["mount".into(), "--config".into(), config.into()];
    daemon_args.extend(["--source".into(), source.into_os_string()]);
    daemon_args.extend(["--mountpoint".into(), mountpoint.into_os_string()]);
    if !parsed.options.rest.is_empty() {
        daemon_args.extend(["--options".into(), parsed.options.rest.join(",").into()]);
    }
    daemon_args.push("--detached".into());
    start_in_background(&daemon_args)
}

/// How long the mount(8) form waits for the daemon to say the mount is up. Startup checks
/// clamd and the destination; a service that accepts connections and then says nothing must
/// not hold mount(8), or a boot, forever.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A directory only root can enter, holding the socket the daemon reports readiness on, so
/// no other user can send READY=1 in its place. Removed on drop.
struct PrivateSocket {
    dir: PathBuf,
    socket: UnixDatagram,
}

impl PrivateSocket {
    fn bind() -> io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("backupfs-mount-{}-{nonce}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        match UnixDatagram::bind(dir.join("ready")) {
            Ok(socket) => Ok(Self { dir, socket }),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }
}

impl Drop for PrivateSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("ready"));
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Starts `backupfs mount ...` in a session of its own and waits for its READY=1 (the
/// same notification systemd gets) or its exit. Its stderr is passed on until then, so
/// mount(8) shows why a mount failed.
fn start_in_background(args: &[OsString]) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("cannot find the backupfs binary")?;
    let ready =
        PrivateSocket::bind().context("cannot open the socket the daemon reports readiness on")?;
    ready
        .socket
        .set_read_timeout(Some(Duration::from_millis(200)))?;

    let mut command = Command::new(exe);
    command
        .args(args)
        .env("NOTIFY_SOCKET", ready.dir.join("ready"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .current_dir("/");
    // SAFETY: setsid and close_range are async-signal-safe and touch no memory of the
    // parent. Descriptors mount(8)'s caller left open (a lock, a pipe) are not the daemon's
    // to keep; stdin, stdout and stderr are set up already.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            libc::close_range(3, libc::c_uint::MAX, 0);
            Ok(())
        });
    }
    let mut child = command.spawn().context("cannot start the daemon")?;
    let relay = child.stderr.take().map(|mut from| {
        std::thread::spawn(move || {
            let _ = io::copy(&mut from, &mut io::stderr());
        })
    });
    let finish = |relay: Option<std::thread::JoinHandle<()>>| {
        if let Some(relay) = relay {
            let _ = relay.join();
        }
    };
    let started = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match ready.socket.recv(&mut buf) {
            Ok(n) if buf[..n].split(|b| *b == b'\n').any(|l| l == b"READY=1") => {
                // The daemon let go of its stderr before it said ready, so the relay ends.
                finish(relay);
                return Ok(ExitCode::SUCCESS);
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e).context("waiting for the daemon to mount"),
        }
        if let Some(status) = child.try_wait()? {
            finish(relay);
            eprintln!("backupfs: the daemon stopped before the mount was up ({status})");
            let code = status.code().filter(|c| *c != 0).unwrap_or(1);
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
        }
        if started.elapsed() > READY_TIMEOUT {
            // Before it mounts, SIGTERM ends the daemon at once; if it mounted meanwhile,
            // SIGTERM unmounts it cleanly. Either way the caller is told the mount failed,
            // so nothing may stay mounted behind its back.
            // SAFETY: signalling the child this process started and has not reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while child.try_wait()?.is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            finish(relay);
            bail!(
                "the daemon did not report the mount ready within {}s (is clamd or the \
                 destination accepting connections without answering?); it was stopped",
                READY_TIMEOUT.as_secs()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_mount_fuse3_form_is_recognised_and_subcommands_are_not() {
        let cli = <super::super::Cli as clap::CommandFactory>::command();
        let helper = args(&["backupfs", "/srv/data", "/mnt", "-o", "config=/c.toml"]);
        assert!(is_helper_call(&helper, &cli));
        assert!(is_helper_call(
            &args(&["/sbin/mount.fuse.backupfs", "/srv", "/mnt"]),
            &cli
        ));
        for not in [
            &["backupfs", "mount", "--config", "/c.toml"][..],
            &["backupfs", "status", "-c", "/c.toml"],
            &["backupfs", "--help"],
            &["backupfs", "help", "mount"],
            &["backupfs", "/srv"],
        ] {
            assert!(!is_helper_call(&args(not), &cli), "{not:?}");
        }
    }

    #[test]
    fn what_mount_fuse3_passes_is_understood() {
        // What mount.fuse3 hands over for `config=/c.toml,allow_other,_netdev,noatime` as root.
        let parsed = parse_helper_args(&args(&[
            "backupfs",
            "/srv/data",
            "/data/to-backup",
            "-o",
            "rw,noatime,config=/c.toml,allow_other,dev,suid",
        ]))
        .unwrap();
        assert_eq!(parsed.source, Path::new("/srv/data"));
        assert_eq!(parsed.mountpoint, Path::new("/data/to-backup"));
        assert!(!parsed.foreground);
        let o = &parsed.options;
        assert_eq!(o.config.as_deref(), Some(Path::new("/c.toml")));
        assert!(o.allow_other);
        assert_eq!(
            o.kernel,
            [
                MountOption::RW,
                MountOption::NoAtime,
                MountOption::Dev,
                MountOption::Suid
            ]
        );
        assert_eq!(o.rest, ["rw", "noatime", "allow_other", "dev", "suid"]);
    }

    #[test]
    fn fstab_only_options_are_ignored_and_unknown_ones_refused() {
        let o = parse_options(
            "config=/c,_netdev,nofail,x-systemd.automount,relatime",
            true,
        )
        .unwrap();
        assert!(o.kernel.is_empty() && o.rest.is_empty(), "{o:?}");
        let e = parse_options("config=/c,allow_root", true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`allow_root` is not known"), "{e}");
        let e = parse_options("ro", false).unwrap_err().to_string();
        assert!(e.contains("`ro`") && e.contains("writable"), "{e}");
        let e = parse_options("config=/c", false).unwrap_err().to_string();
        assert!(e.contains("--config"), "{e}");
    }

    #[test]
    fn a_missing_config_or_path_says_what_to_add() {
        let e = parse_helper_args(&args(&["backupfs", "/srv", "/mnt", "-o", "allow_other"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("config=/etc/backupfs/config.toml"), "{e}");
        let e = parse_helper_args(&args(&["backupfs", "/srv", "-o", "config=/c"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("SOURCE and MOUNTPOINT"), "{e}");
        let joined = parse_helper_args(&args(&[
            "mount.backupfs",
            "/srv",
            "/mnt",
            "-oconfig=/c",
            "-o",
            "nodev",
            "-t",
            "fuse.backupfs",
            "-n",
        ]))
        .unwrap();
        assert_eq!(joined.options.kernel, [MountOption::NoDev]);
    }
}
