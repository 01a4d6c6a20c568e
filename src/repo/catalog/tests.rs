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
        sealer: Sealer::new(b"test passphrase", 3).unwrap().into(),
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
        route: Route {
            prefix: "shared".into(),
            storage_class: None,
        },
    }
}

fn dir_row(id: i64, path: &str, perms: u32, at: i64) -> CatalogRow {
    let attrs = Attrs {
        mode: libc::S_IFDIR | perms,
        uid: 3,
        gid: 4,
        mtime_ns: -1_500_000_000,
    };
    CatalogRow::dir(id, PathBuf::from(path), attrs, at)
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

#[test]
fn directories_are_their_own_lines_and_survive_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let mut odd = dir_row(2, "x", 0o2750, 100);
    odd.path = PathBuf::from(OsString::from_vec(b"r\xe9pertoire/sub".to_vec()));
    let rows = [
        row(1, "a", 1, 100),
        odd.clone(),
        dir_row(3, "empty", 0o700, 100),
    ];
    write_batch(&repo, &rows, &[]).unwrap();

    // Written as `dir` lines, so that stock tools selecting `version` lines see files only.
    let key = &repo.dest.list(&repo.layout.catalog_dir()).unwrap()[0].key;
    let mut plain = Vec::new();
    repo.sealer
        .open(&get_bytes(&*repo.dest, key).unwrap()[..], &mut plain)
        .unwrap();
    let lines: Vec<serde_json::Value> = plain
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect();
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["version", "dir", "dir"]);
    assert_eq!(lines[1]["path_hex"], hex::encode(b"r\xe9pertoire/sub"));
    assert_eq!(lines[2]["mode"], libc::S_IFDIR | 0o700);
    assert!(lines[2].get("object").is_none(), "{}", lines[2]);

    for _ in 0..2 {
        let catalog = Catalog::load(&repo).unwrap();
        assert_eq!(catalog.versions.len(), 3);
        assert_eq!(catalog.versions[&2], odd);
        assert!(catalog.versions[&3].is_dir());
        assert_eq!(catalog.versions[&1], rows[0]);
        catalog.compact(&repo).unwrap();
    }
}

#[test]
fn a_dir_line_must_carry_a_directory_mode_and_a_version_line_must_not() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let good = write_batch(&repo, &[dir_row(1, "d", 0o755, 100)], &[]).unwrap();
    // Each line is complete but for its mode: 493 is 0755 without S_IFDIR, 16877 is 040755.
    let sha = "00".repeat(32);
    let bad = [
        r#"{"type":"dir","id":2,"path":"e","mode":493,"uid":0,"gid":0,"mtime_ns":0,"backed_up_ms":1}"#.to_string(),
        format!(r#"{{"type":"version","id":3,"path":"f","object":"o","size":0,"sha256":"{sha}","mode":16877,"uid":0,"gid":0,"mtime_ns":0,"class":"general","backed_up_ms":1}}"#),
    ];
    for (i, line) in bad.iter().enumerate() {
        let key = format!(
            "{}batch-{:013}-0000000{i}.pgp",
            repo.layout.catalog_dir(),
            i
        );
        repo.put_sealed(&key, format!("{line}\n").as_bytes())
            .unwrap();
    }
    let catalog = Catalog::load(&repo).unwrap();
    assert_eq!(catalog.damaged.len(), 2, "{:?}", catalog.damaged);
    let ids: Vec<i64> = catalog.versions.keys().copied().collect();
    assert_eq!(ids, [1], "only {good} reads");
}

#[test]
fn at_shows_a_directory_until_its_removal() {
    let mut catalog = Catalog::default();
    for r in [
        dir_row(1, "gone", 0o755, 100),
        dir_row(2, "kept", 0o700, 100),
        dir_row(3, "kept", 0o750, 150),
        row(4, "kept/f", 4, 100),
    ] {
        catalog.versions.insert(r.id, r);
    }
    catalog.removals.insert(
        5,
        Removal {
            id: 5,
            path: PathBuf::from("gone"),
            removed_ms: 200,
        },
    );
    let listed = |at| -> Vec<(String, i64)> {
        catalog
            .at(at)
            .iter()
            .map(|r| (r.path.display().to_string(), r.id))
            .collect()
    };
    let s = |p: &str, id| (p.to_string(), id);
    assert_eq!(listed(199), [s("gone", 1), s("kept", 3), s("kept/f", 4)]);
    assert_eq!(listed(120), [s("gone", 1), s("kept", 2), s("kept/f", 4)]);
    assert_eq!(listed(200), [s("kept", 3), s("kept/f", 4)]);
    assert_eq!(catalog.history(Path::new("kept")).len(), 2);
    assert_eq!(catalog.removals_of(Path::new("gone")), [200]);
}

/// A destination that remembers every key asked for, to show what a command touched.
struct Watched {
    inner: DirDestination,
    keys: std::sync::Mutex<Vec<String>>,
}

impl Watched {
    fn saw(&self, key: &str) {
        self.keys.lock().unwrap().push(key.to_string());
    }
}

impl crate::pipeline::upload::Destination for Watched {
    fn url(&self, key: &str) -> String {
        self.inner.url(key)
    }
    fn put(
        &self,
        key: &str,
        sealed: &Path,
        storage_class: Option<&str>,
    ) -> Result<u64, UploadError> {
        self.saw(key);
        self.inner.put(key, sealed, storage_class)
    }
    fn put_bytes(&self, key: &str, bytes: &[u8]) -> Result<(), UploadError> {
        self.saw(key);
        self.inner.put_bytes(key, bytes)
    }
    fn get(&self, key: &str, out: &mut dyn io::Write) -> Result<u64, UploadError> {
        self.saw(key);
        self.inner.get(key, out)
    }
    fn exists(&self, key: &str) -> Result<bool, UploadError> {
        self.saw(key);
        self.inner.exists(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<crate::pipeline::upload::Listed>, UploadError> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), UploadError> {
        self.saw(&format!("delete {key}"));
        self.inner.delete(key)
    }
}

#[test]
fn prune_keeps_the_newest_directory_and_never_touches_an_empty_object() {
    let dir = tempfile::tempdir().unwrap();
    let watched = Arc::new(Watched {
        inner: DirDestination::new(dir.path().to_path_buf()),
        keys: Default::default(),
    });
    let repo = Repo {
        dest: watched.clone(),
        ..repo(dir.path())
    };
    for content in [1u8, 2] {
        let key = row(0, "a", content, 0).object;
        repo.dest.put_bytes(&key, b"sealed content").unwrap();
    }
    let rows = [
        row(1, "a", 1, 100),
        row(2, "a", 2, 200),
        dir_row(3, "d", 0o755, 100),
        dir_row(4, "d", 0o700, 200),
        dir_row(5, "old", 0o755, 50),
    ];
    write_batch(&repo, &rows, &[]).unwrap();
    let outcome = prune_keeping_last_one(&repo);
    assert_eq!((outcome.versions_dropped, outcome.objects_deleted), (2, 1));
    let ids: Vec<i64> = Catalog::load(&repo).unwrap().versions.into_keys().collect();
    assert_eq!(ids, [2, 4, 5], "the newest version of each path stays");
    let keys = watched.keys.lock().unwrap();
    let deleted: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("delete shared/data/"))
        .collect();
    assert_eq!(deleted, [&format!("delete {}", rows[0].object)]);
    assert!(
        !keys.iter().any(|k| k.is_empty() || k == "delete "),
        "{keys:?}"
    );
}

#[test]
fn a_mount_checks_only_files_objects_before_it_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let watched = Arc::new(Watched {
        inner: DirDestination::new(dir.path().join("dest")),
        keys: Default::default(),
    });
    let repo = Repo {
        dest: watched.clone(),
        ..repo(&dir.path().join("dest"))
    };
    let state = Arc::new(crate::state::State::open(&dir.path().join("state")).unwrap());
    let attrs = dir_row(0, "d", 0o700, 0).attrs;
    state.record_dir(Path::new("d"), attrs, 1).unwrap();
    // A file's version whose object a prune removed before it was published.
    state.enqueue(Path::new("d/f"), 0, 0, 0).unwrap();
    let job = state.due_jobs(0, 1).unwrap().remove(0);
    let gone = row(0, "d/f", 9, 0);
    let version = crate::state::Version {
        path: &gone.path,
        sha256: &gone.sha256,
        object: &gone.object,
        size: 1,
        attrs: gone.attrs,
        classification: "general",
        route: &gone.route,
    };
    let done = crate::state::Finish {
        version: Some((version, true)),
        seen: None,
    };
    state.finish(&job, done).unwrap();

    let metrics = crate::metrics::Metrics::new().unwrap();
    let zero = std::time::Duration::ZERO;
    let publisher = crate::repo::publish::Publisher {
        repo: Arc::new(repo),
        state: state.clone(),
        queue: crate::pipeline::Queue::new(state.clone(), metrics, zero, zero),
        condemned: Default::default(),
        interval: std::time::Duration::from_secs(1),
        compact_after: 10,
        passphrase: Default::default(),
    };
    assert_eq!(publisher.check_unpublished().unwrap(), 1);
    let left = state.unpublished(10).unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].is_dir(), "the directory stays: {left:?}");
    let keys = watched.keys.lock().unwrap();
    assert!(keys.contains(&gone.object), "{keys:?}");
    assert!(!keys.iter().any(String::is_empty), "{keys:?}");
}

/// A version routed to `prefix`, in storage class `class`.
fn routed(id: i64, path: &str, content: u8, prefix: &str, class: Option<&str>) -> CatalogRow {
    CatalogRow {
        object: format!("{prefix}/data/00/{content:02x}"),
        classification: "personal".into(),
        route: Route {
            prefix: prefix.into(),
            storage_class: class.map(str::to_string),
        },
        ..row(id, path, content, 100)
    }
}

#[test]
fn a_route_survives_the_catalog_and_older_lines_take_it_from_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo(dir.path());
    let card = routed(1, "cards.csv", 1, "personal", Some("STANDARD_IA"));
    write_batch(&repo, &[card.clone(), row(2, "notes", 2, 100)], &[]).unwrap();
    // A line as a release before routing wrote it.
    let old = r#"{"type":"version","id":3,"path":"old","object":"shared/data/00/03","size":1,"mode":420,"uid":1,"gid":2,"mtime_ns":5,"sha256":"0303030303030303030303030303030303030303030303030303030303030303","class":"general","backed_up_ms":50}"#;
    repo.put_sealed(
        &format!(
            "{}batch-0000000000001-00000000.pgp",
            repo.layout.catalog_dir()
        ),
        format!("{old}\n").as_bytes(),
    )
    .unwrap();
    let catalog = Catalog::load(&repo).unwrap();
    assert_eq!(catalog.versions[&1], card);
    assert_eq!(catalog.versions[&2].route.prefix, "shared");
    assert_eq!(
        catalog.versions[&3].route,
        Route {
            prefix: "shared".into(),
            storage_class: None
        }
    );
    // The route is in the sealed line as written, for tools reading the catalog by hand.
    let key = repo
        .dest
        .list(&repo.layout.catalog_dir())
        .unwrap()
        .into_iter()
        .map(|l| l.key)
        .find(|k| !k.contains("-0000000000001-"))
        .unwrap();
    let mut plain = Vec::new();
    repo.sealer
        .open(
            &crate::pipeline::upload::get_bytes(&*repo.dest, &key).unwrap()[..],
            &mut plain,
        )
        .unwrap();
    let text = String::from_utf8(plain).unwrap();
    assert!(
        text.contains(r#""route":{"prefix":"personal","storage_class":"STANDARD_IA"}"#),
        "{text}"
    );
    assert!(text.contains(r#""route":{"prefix":"shared"}"#), "{text}");
}

#[test]
fn prune_cleans_routed_objects_no_version_needs_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo {
        layout: Layout::new("shared", "host-a").with_routes(&["personal".into()]),
        ..repo(dir.path())
    };
    let rows = [
        // Two versions of one path, the older under the route: dropped, its object goes.
        routed(1, "cards.csv", 1, "personal", Some("STANDARD_IA")),
        routed(2, "cards.csv", 2, "personal", Some("STANDARD_IA")),
        // Under a route the config no longer has: its object is found through the version.
        routed(3, "old.csv", 3, "retired", None),
        routed(4, "old.csv", 4, "retired", None),
        row(5, "notes", 5, 100),
    ];
    for r in &rows {
        repo.dest.put_bytes(&r.object, b"sealed").unwrap();
    }
    // Left by an upload whose version was never recorded: no version needs it.
    let orphans = ["personal/data/00/99", "shared/data/00/98"];
    for key in orphans {
        repo.dest.put_bytes(key, b"sealed").unwrap();
    }
    // A later version of each path, so the routed ones above are not the newest.
    let newer = [
        CatalogRow {
            backed_up_ms: 200,
            ..routed(6, "cards.csv", 2, "personal", Some("STANDARD_IA"))
        },
        CatalogRow {
            backed_up_ms: 200,
            ..routed(7, "old.csv", 4, "retired", None)
        },
    ];
    write_batch(&repo, &rows, &[]).unwrap();
    write_batch(&repo, &newer, &[]).unwrap();
    let outcome = prune_keeping_last_one(&repo);
    assert_eq!(outcome.versions_dropped, 4);
    let left = |prefix: &str| -> Vec<String> {
        repo.dest
            .list(prefix)
            .unwrap()
            .into_iter()
            .map(|l| l.key)
            .collect()
    };
    assert_eq!(left("personal/data/"), ["personal/data/00/02"]);
    assert_eq!(left("retired/data/"), ["retired/data/00/04"]);
    assert_eq!(left("shared/data/"), ["shared/data/00/05"]);
    assert_eq!(outcome.objects_deleted, 4, "01, 03 and the two orphans");
    // Every object a remaining version needs is still there, routed or not.
    let catalog = Catalog::load(&repo).unwrap();
    let needed: std::collections::BTreeSet<&str> = catalog
        .versions
        .values()
        .map(|r| r.object.as_str())
        .collect();
    assert_eq!(
        needed.into_iter().collect::<Vec<_>>(),
        [
            "personal/data/00/02",
            "retired/data/00/04",
            "shared/data/00/05"
        ]
    );
}

/// Prunes `repo` for real, keeping the newest version of each file.
fn prune_keeping_last_one(repo: &Repo) -> crate::repo::prune::Outcome {
    let policy = Policy {
        keep_last: Some(1),
        keep_within: None,
    };
    crate::repo::prune::prune(
        repo,
        &policy,
        true,
        std::time::Duration::from_secs(5),
        &mut |_| {},
    )
    .unwrap()
}
