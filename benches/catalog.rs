//! How long reading the catalog takes with many versions, against stock gpg and zstd
//! merely decrypting the same catalog (the floor any reader pays).
//!
//! `cargo bench --bench catalog [-- VERSIONS]` (default 1,000,000). Writes the catalog as
//! the mount does (batches of 20,000), reads it, compacts it into one snapshot, reads it
//! again, and times `gpg -d | zstd -d` of that snapshot in the same run.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use backupfs::pipeline::gate2::Gate2;
use backupfs::pipeline::seal::Sealer;
use backupfs::pipeline::upload::DirDestination;
use backupfs::repo::catalog::{write_batch, Catalog};
use backupfs::repo::{Layout, Repo};
use backupfs::state::{Attrs, CatalogRow};

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this too, without it,
    // and then a small catalog checks that the benchmark still works.
    let benching = std::env::args().any(|a| a == "--bench");
    let versions: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(if benching { 1_000_000 } else { 2_000 });
    let dir = tempfile::tempdir().expect("temp dir");
    let passphrase = b"catalog benchmark passphrase";
    let repo = Repo {
        dest: Arc::new(DirDestination::new(dir.path().to_path_buf())),
        sealer: Sealer::new(passphrase, 3).expect("sealer").into(),
        gate2: Gate2::new(&[format!("file://{}", dir.path().display())]),
        layout: Layout::new("bench", "bench"),
    };

    let started = Instant::now();
    let mut batch = Vec::with_capacity(20_000);
    for id in 0..versions as i64 {
        let mut sha256 = [0u8; 32];
        sha256[..8].copy_from_slice(&id.to_le_bytes());
        batch.push(CatalogRow {
            id,
            path: PathBuf::from(format!(
                "projects/p{:03}/docs/d{:02}/file-{id:07}.txt",
                id % 997,
                id % 31
            )),
            sha256,
            object: format!("bench/data/{:02x}/{}", id % 256, hex::encode(sha256)),
            size: (id as u64 * 7919) % 1_000_000,
            attrs: Attrs {
                mode: 0o644,
                uid: 1000,
                gid: 1000,
                mtime_ns: 1_700_000_000_000_000_000 + id,
            },
            classification: "general".into(),
            backed_up_ms: 1_700_000_000_000 + id,
            route: Default::default(),
        });
        if batch.len() == 20_000 {
            write_batch(&repo, &batch, &[]).expect("write batch");
            batch.clear();
        }
    }
    if !batch.is_empty() {
        write_batch(&repo, &batch, &[]).expect("write batch");
    }
    let write_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let catalog = Catalog::load(&repo).expect("load");
    let listed = catalog.at(i64::MAX).len();
    let batches_s = started.elapsed().as_secs_f64();
    assert_eq!(listed, versions);

    let started = Instant::now();
    let snapshot = catalog.compact(&repo).expect("compact");
    let compact_s = started.elapsed().as_secs_f64();
    drop(catalog);

    let started = Instant::now();
    let catalog = Catalog::load(&repo).expect("load");
    let load_s = started.elapsed().as_secs_f64();
    let listed = catalog.at(i64::MAX).len();
    let snapshot_s = started.elapsed().as_secs_f64();
    assert_eq!(listed, versions);

    let pass_file = dir.path().join("passphrase");
    std::fs::write(&pass_file, passphrase).expect("passphrase file");
    let home = dir.path().join("gnupg");
    std::fs::create_dir_all(&home).expect("gnupg home");
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("gnupg home mode");
    let sealed = dir.path().join(&snapshot);
    let started = Instant::now();
    let status = Command::new("bash")
        .arg("-o")
        .arg("pipefail")
        .arg("-c")
        .arg(format!(
            "gpg --homedir '{}' --batch --quiet --pinentry-mode loopback --passphrase-file '{}' \
             -d '{}' | zstd -d -c > /dev/null",
            home.display(),
            pass_file.display(),
            sealed.display()
        ))
        .status()
        .expect("run gpg and zstd");
    let stock_s = started.elapsed().as_secs_f64();
    assert!(status.success(), "gpg | zstd failed");
    let sealed_bytes = std::fs::metadata(&sealed).map(|m| m.len()).unwrap_or(0);

    println!("catalog of {versions} versions");
    println!("  write as batches:              {write_s:.2} s");
    println!("  read from batches and list:    {batches_s:.2} s");
    println!("  compact into one snapshot:     {compact_s:.2} s ({sealed_bytes} bytes sealed)");
    println!("  read from the snapshot, list:  {snapshot_s:.2} s (reading {load_s:.2} s)");
    println!("  gpg -d | zstd -d of it:        {stock_s:.2} s");
    println!(
        "  ratio, listing / stock decrypt: {:.2}",
        snapshot_s / stock_s
    );
}
