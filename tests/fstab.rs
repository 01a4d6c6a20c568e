//! mount(8) and fstab: `fuse.backupfs` entries mounted by the real mount(8) and mount.fuse3,
//! each in a mount namespace of its own (see common/mount8.rs).

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::mount8::Fstab;

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
    // umount returns at once; the daemon drains the queue and exits 0.
    assert_eq!(daemon.umount_and_wait(), Some(0), "daemon exit code");
    let log = t.stack.log_file();
    assert!(log.contains("mountpoint was unmounted"), "{log}");
    assert!(
        !log.contains(" WARN ") && !log.contains(" ERROR "),
        "a clean mount and umount warn about nothing:\n{log}"
    );
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
    assert_eq!(daemon.umount_and_wait(), Some(0), "daemon exit code");
}

#[test]
fn mount_t_reports_errors_before_returning() {
    let t = Fstab::new("");
    let config = t.stack.dir.path().join("fstab-config.toml");
    let (source, mnt) = (
        t.stack.source.to_str().unwrap(),
        t.stack.mnt.to_str().unwrap(),
    );

    // Each fails mount(8) promptly, with backupfs's own message, leaving nothing running.
    let refused = |options: &str| {
        let started = Instant::now();
        let out = t.mount(&["-t", "fuse.backupfs", source, mnt, "-o", options]);
        assert!(!out.status.success(), "{}", text(&out));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "returned promptly"
        );
        assert!(t.daemons().is_empty(), "no daemon left running");
        text(&out)
    };

    // A mount option backupfs does not know: refused, naming it.
    let shown = refused(&format!("config={},bogus", config.display()));
    assert!(shown.contains("`bogus` is not known"), "{shown}");

    // A config with a misspelt key: the daemon's error, naming file and key, reaches the
    // caller of mount(8).
    let broken = t.stack.dir.path().join("broken.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&broken, good.replace("workers = 2", "wokers = 2")).unwrap();
    let shown = refused(&format!("config={}", broken.display()));
    assert!(
        shown.contains("wokers") && shown.contains(&broken.display().to_string()),
        "{shown}"
    );

    // A missing config file.
    let shown = refused("config=/nonexistent/backupfs.toml");
    assert!(
        shown.contains("cannot read config file /nonexistent/backupfs.toml"),
        "{shown}"
    );
}
