use std::sync::Arc;

use super::*;
use crate::pipeline::gate2::Gate2;
use crate::pipeline::seal::Sealer;
use crate::pipeline::upload::DirDestination;
use crate::repo::prune::{plan, Policy};
use crate::repo::Layout;

fn repo(root: &Path) -> Repo {
    Repo {
        dest: Arc::new(DirDestination::new(root.to_path_buf())),
        sealer: Sealer::new(b"test passphrase", 3).unwrap(),
        gate2: Gate2::new(&[format!("file://{}", root.display())]),
        layout: Layout::new("shared", "host-a"),
    }
}

fn row(id: i64, path: &str, content: u8, at: i64) -> CatalogRow {
    CatalogRow {
        id,
        path: PathBuf::from(path),
        sha256: [content; 32],
        object: format!("shared/data/00/{content:02x}"),
        size: 1,
        attrs: Attrs {
            mode: 0o640,
            uid: 1,
            gid: 2,
            mtime_ns: 1_700_000_000_123_456_789,
        },
        classification: "general".into(),
        backed_up_ms: at,
    }
}

#[test]
fn batches_snapshots_and_drops_read_back_as_one_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    assert!(Catalog::load(&repo).unwrap().versions.is_empty());

    write_batch(&repo, &[row(1, "a", 1, 100), row(2, "b", 2, 100)], &[]).unwrap();
    write_batch(&repo, &[row(3, "a", 3, 200)], &[]).unwrap();
    let catalog = Catalog::load(&repo).unwrap();
    assert_eq!(catalog.versions.len(), 3);
    assert_eq!(catalog.versions[&1], row(1, "a", 1, 100));

    // A removal hides the path from then on, not before, and survives compaction.
    let gone = Removal {
        id: 9,
        path: PathBuf::from("b"),
        removed_ms: 250,
    };
    write_batch(&repo, &[], std::slice::from_ref(&gone)).unwrap();
    let catalog = Catalog::load(&repo).unwrap();
    let paths =
        |c: &Catalog, at| -> Vec<PathBuf> { c.at(at).iter().map(|r| r.path.clone()).collect() };
    assert_eq!(
        paths(&catalog, 249),
        [PathBuf::from("a"), PathBuf::from("b")]
    );
    assert_eq!(paths(&catalog, 250), [PathBuf::from("a")]);

    // Compaction merges everything into one snapshot and removes the batches.
    catalog.compact(&repo).unwrap();
    let listed = repo.dest.list(&repo.layout.catalog_dir()).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].key.contains("/snapshot-"));

    // A later batch and a drop apply on top of the snapshot, before and after compacting.
    write_batch(&repo, &[row(4, "c", 4, 300)], &[]).unwrap();
    write_drops(&repo, &[1]).unwrap();
    for _ in 0..2 {
        let catalog = Catalog::load(&repo).unwrap();
        let ids: Vec<i64> = catalog.versions.keys().copied().collect();
        assert_eq!(ids, [2, 3, 4]);
        assert_eq!(catalog.removals[&9], gone);
        catalog.compact(&repo).unwrap();
    }
}

#[test]
fn a_batch_a_snapshot_covers_is_not_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    // A compaction merged this batch and a drop of its version into a snapshot, then died
    // before deleting the batch. The leftover batch must not bring the version back.
    let leftover = write_batch(&repo, &[row(1, "a", 1, 100)], &[]).unwrap();
    let names = vec![leftover.rsplit('/').next().unwrap().to_string()];
    let snapshot = to_line(&Line::Covers { batches: names });
    repo.put_sealed(
        &file_name(&repo.layout.catalog_dir(), "snapshot"),
        &snapshot,
    )
    .unwrap();
    let catalog = Catalog::load(&repo).unwrap();
    assert!(catalog.versions.is_empty());
    // The next compaction still counts it as merged, so it is deleted then.
    assert_eq!(catalog.merged, [leftover]);
}

#[test]
fn non_utf8_paths_survive_the_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let mut odd = row(1, "x", 1, 100);
    odd.path = PathBuf::from(OsString::from_vec(b"caf\xe9/new\nline".to_vec()));
    write_batch(&repo, std::slice::from_ref(&odd), &[]).unwrap();
    assert_eq!(Catalog::load(&repo).unwrap().versions[&1], odd);
}

#[test]
fn at_picks_the_newest_version_not_after_the_time() {
    let mut catalog = Catalog::default();
    for r in [
        row(1, "a", 1, 100),
        row(2, "a", 2, 200),
        row(3, "b", 3, 150),
    ] {
        catalog.versions.insert(r.id, r);
    }
    let ids = |at| -> Vec<i64> { catalog.at(at).iter().map(|r| r.id).collect() };
    assert_eq!(ids(99), Vec::<i64>::new());
    assert_eq!(ids(100), [1]);
    assert_eq!(ids(199), [1, 3]);
    assert_eq!(ids(i64::MAX), [2, 3]);
    assert_eq!(catalog.history(Path::new("a")).len(), 2);
}

#[test]
fn retention_keeps_the_last_n_or_the_recent_ones() {
    let mut catalog = Catalog::default();
    for r in [
        row(1, "a", 1, 1_000),
        row(2, "a", 2, 2_000),
        row(3, "a", 3, 3_000),
        row(4, "b", 4, 1_000),
    ] {
        catalog.versions.insert(r.id, r);
    }
    let dropped = |policy: Policy| -> Vec<i64> {
        let mut ids: Vec<i64> = plan(&catalog, &policy, 3_500)
            .iter()
            .map(|r| r.id)
            .collect();
        ids.sort();
        ids
    };
    let last = |n| Policy {
        keep_last: Some(n),
        keep_within: None,
    };
    assert_eq!(dropped(last(1)), [1, 2]);
    assert_eq!(dropped(last(2)), [1]);
    let within = Policy {
        keep_last: None,
        keep_within: Some(std::time::Duration::from_millis(2_000)),
    };
    // The newest version of "b" is old, but it is the only one: it stays.
    assert_eq!(dropped(within), [1]);
    let both = Policy {
        keep_last: Some(1),
        keep_within: Some(std::time::Duration::from_millis(2_000)),
    };
    assert_eq!(dropped(both), [1]);
}

#[test]
fn selectors_match_whole_components() {
    let n = |p: &str| normalize(Path::new(p)).unwrap();
    assert!(selected(Path::new("a/b"), &n("/")));
    assert!(selected(Path::new("a/b"), &n("/a")));
    assert!(selected(Path::new("a/b"), &n("./a/b")));
    assert!(!selected(Path::new("ab/c"), &n("a")));
    assert!(normalize(Path::new("a/../b")).is_err());
}
