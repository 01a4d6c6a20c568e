use super::*;

fn open() -> (tempfile::TempDir, State) {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    (dir, state)
}

fn paths(state: &State) -> Vec<PathBuf> {
    state
        .due_jobs(i64::MAX, 100)
        .unwrap()
        .into_iter()
        .map(|j| j.path)
        .collect()
}

const STAT: FileStat = FileStat {
    dev: 1,
    ino: 2,
    size: 3,
    mtime_ns: 4,
    ctime_ns: 5,
};

#[test]
fn index_and_catalog_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let sha = [7u8; 32];
    {
        let state = State::open(dir.path()).unwrap();
        assert_eq!(state.object_for(&sha).unwrap(), None);
        state.enqueue(Path::new("a/b.txt"), 0, 0, 0).unwrap();
        let job = state.due_jobs(0, 1).unwrap().remove(0);
        let version = Version {
            path: Path::new("a/b.txt"),
            sha256: &sha,
            object: "host/data/ab/cd",
            size: 3,
            attrs: crate::state::Attrs::default(),
            classification: "general",
            route: &crate::state::Route {
                prefix: "host".into(),
                storage_class: Some("ONEZONE_IA".into()),
            },
        };
        let done = Finish {
            version: Some((version, true)),
            seen: Some((STAT, "uploaded")),
        };
        state.finish(&job, done).unwrap();
    }
    let state = State::open(dir.path()).unwrap();
    let stored = state.object_for(&sha).unwrap().unwrap();
    assert_eq!(stored.object, "host/data/ab/cd");
    assert_eq!(stored.classification, "general");
    assert_eq!(stored.storage_class.as_deref(), Some("ONEZONE_IA"));
    let row = state.unpublished(1).unwrap().remove(0);
    assert_eq!(row.route.prefix, "host");
    assert_eq!(row.route.storage_class.as_deref(), Some("ONEZONE_IA"));
    assert_eq!(state.content_count().unwrap(), 1);
    assert_eq!(state.job_counts().unwrap(), (0, 0));
    assert_eq!(state.seen_files().unwrap()[Path::new("a/b.txt")], STAT);
}

#[test]
fn queueing_again_coalesces_and_settles_within_the_max_delay() {
    let (_d, state) = open();
    state
        .enqueue(Path::new("log.txt"), 1_000, 100, 500)
        .unwrap();
    state
        .enqueue(Path::new("log.txt"), 1_300, 100, 500)
        .unwrap();
    assert_eq!(
        state.next_due_ms().unwrap(),
        Some(1_400),
        "settles after the last close"
    );
    state
        .enqueue(Path::new("log.txt"), 1_450, 100, 500)
        .unwrap();
    assert_eq!(
        state.next_due_ms().unwrap(),
        Some(1_500),
        "but never past queued + max delay"
    );
    let jobs = state.due_jobs(2_000, 10).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].generation, 3);
    assert!(state.due_jobs(1_499, 10).unwrap().is_empty());
}

#[test]
fn a_job_changed_while_processed_stays_queued() {
    let (_d, state) = open();
    state.enqueue(Path::new("f"), 0, 0, 0).unwrap();
    let job = state.due_jobs(0, 1).unwrap().remove(0);
    state.enqueue(Path::new("f"), 0, 0, 0).unwrap();
    let done = Finish {
        version: None,
        seen: Some((STAT, "rejected")),
    };
    state.finish(&job, done).unwrap();
    assert_eq!(paths(&state), [PathBuf::from("f")]);
}

#[test]
fn renames_carry_jobs_along() {
    let (_d, state) = open();
    for p in ["doc.tmp", "dir/a", "dir/sub/b", "dirx/c", "other"] {
        state.enqueue(Path::new(p), 0, 0, 0).unwrap();
    }
    assert!(state
        .rename_jobs(Path::new("doc.tmp"), Path::new("doc.txt"))
        .unwrap());
    assert!(state
        .rename_jobs(Path::new("dir"), Path::new("moved"))
        .unwrap());
    assert!(!state
        .rename_jobs(Path::new("absent"), Path::new("x"))
        .unwrap());
    let mut got = paths(&state);
    got.sort();
    let want = ["dirx/c", "doc.txt", "moved/a", "moved/sub/b", "other"].map(PathBuf::from);
    assert_eq!(got, want);
    // Renaming onto a queued name leaves one job.
    assert!(state
        .rename_jobs(Path::new("other"), Path::new("doc.txt"))
        .unwrap());
    assert_eq!(paths(&state).len(), 4);
}

#[test]
fn failed_jobs_wait_for_a_retry() {
    let (_d, state) = open();
    state.enqueue(Path::new("f"), 0, 0, 0).unwrap();
    let job = state.due_jobs(0, 1).unwrap().remove(0);
    state.fail(&job, "access denied").unwrap();
    assert!(paths(&state).is_empty());
    assert_eq!(state.job_counts().unwrap(), (0, 1));
    let listed = state.list_jobs().unwrap();
    assert_eq!(listed[0].state, "failed");
    assert_eq!(listed[0].last_error.as_deref(), Some("access denied"));
    assert_eq!(state.retry_failed(&[], 0).unwrap(), 1);
    assert_eq!(paths(&state), [PathBuf::from("f")]);
}

#[test]
fn a_vanished_file_is_forgotten() {
    let (_d, state) = open();
    state.enqueue(Path::new("f"), 0, 0, 0).unwrap();
    let job = state.due_jobs(0, 1).unwrap().remove(0);
    state
        .finish(
            &job,
            Finish {
                version: None,
                seen: Some((STAT, "rejected")),
            },
        )
        .unwrap();
    state.enqueue(Path::new("f"), 0, 0, 0).unwrap();
    let job = state.due_jobs(0, 1).unwrap().remove(0);
    state
        .finish(
            &job,
            Finish {
                version: None,
                seen: None,
            },
        )
        .unwrap();
    assert!(state.seen_files().unwrap().is_empty());
}

#[test]
fn hashes_round_trip() {
    let (_d, state) = open();
    let entries = vec![(
        [1u8; 32],
        "a.txt".to_string(),
        "2024-01-01T00:00:00Z".to_string(),
    )];
    assert_eq!(state.import_hashes(&entries).unwrap(), 1);
    assert_eq!(state.import_hashes(&entries).unwrap(), 0);
    assert_eq!(
        state.legacy_path(&[1u8; 32]).unwrap().as_deref(),
        Some("a.txt")
    );
    assert_eq!(state.legacy_path(&[2u8; 32]).unwrap(), None);
}

#[test]
fn unwritable_dir_names_the_path() {
    let err = State::open(Path::new("/proc/backupfs-no-such"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("/proc/backupfs-no-such"), "{err}");
}

fn dir_attrs(perms: u32, uid: u32) -> Attrs {
    Attrs {
        mode: libc::S_IFDIR | perms,
        uid,
        gid: 7,
        mtime_ns: 1_700_000_000_000_000_001,
    }
}

/// Every catalog row of `path`, oldest first: (mode, backed_up_ms).
fn rows_of(state: &State, path: &str) -> Vec<(u32, i64)> {
    let conn = state.conn();
    let mut stmt = conn
        .prepare("SELECT mode, backed_up_ms FROM catalog WHERE path = ?1 ORDER BY id")
        .unwrap();
    let rows = stmt
        .query_map(params![path.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    rows.map(Result::unwrap).collect()
}

#[test]
fn a_directory_is_recorded_once_per_mode_and_owner() {
    let (_d, state) = open();
    let dir = Path::new("a/private");
    assert!(state.record_dir(dir, dir_attrs(0o700, 1), 1_000).unwrap());
    // Only its time moved (an entry was added inside): nothing new to record.
    let touched = Attrs {
        mtime_ns: 5,
        ..dir_attrs(0o700, 1)
    };
    assert!(!state.record_dir(dir, touched, 2_000).unwrap());
    assert!(state.record_dir(dir, dir_attrs(0o750, 1), 3_000).unwrap());
    assert!(state.record_dir(dir, dir_attrs(0o750, 2), 4_000).unwrap());
    let d = libc::S_IFDIR;
    assert_eq!(
        rows_of(&state, "a/private"),
        [(d | 0o700, 1_000), (d | 0o750, 3_000), (d | 0o750, 4_000)]
    );

    let rows = state.unpublished(10).unwrap();
    assert_eq!(rows.len(), 3);
    let first = &rows[0];
    assert!(first.is_dir());
    assert_eq!(
        (first.object.as_str(), first.size, first.sha256),
        ("", 0, [0; 32])
    );
    assert_eq!(first.classification, DIR_CLASS);
    assert_eq!(first.attrs, dir_attrs(0o700, 1));
    // A directory is no backup of content.
    assert_eq!(state.last_backup().unwrap(), None);
    assert!(state.export_hashes().unwrap().is_empty());
}

#[test]
fn a_directory_made_again_after_its_removal_is_recorded_after_it() {
    let (_d, state) = open();
    let dir = Path::new("tmp");
    state.record_dir(dir, dir_attrs(0o755, 0), 1_000).unwrap();
    assert_eq!(
        state.record_removal(dir, None, 2_000).unwrap(),
        [PathBuf::from("tmp")]
    );
    // Same attributes, but removed since: recorded again, after the removal even within
    // the same millisecond.
    assert!(state.record_dir(dir, dir_attrs(0o755, 0), 2_000).unwrap());
    let rows = rows_of(&state, "tmp");
    assert_eq!(rows.last().unwrap().1, 2_001);
    assert!(!state.record_dir(dir, dir_attrs(0o755, 0), 3_000).unwrap());
}

#[test]
fn renaming_a_directory_moves_its_own_versions_and_its_files() {
    let (_d, state) = open();
    state
        .record_dir(Path::new("proj"), dir_attrs(0o700, 3), 100)
        .unwrap();
    state
        .record_dir(Path::new("proj/empty"), dir_attrs(0o2775, 3), 100)
        .unwrap();
    state.enqueue(Path::new("proj/f.txt"), 0, 0, 0).unwrap();
    let job = state.due_jobs(0, 1).unwrap().remove(0);
    let version = Version {
        path: Path::new("proj/f.txt"),
        sha256: &[9; 32],
        object: "data/f",
        size: 1,
        attrs: Attrs::default(),
        classification: "general",
        route: &crate::state::Route {
            prefix: "".into(),
            storage_class: Some("STANDARD_IA".into()),
        },
    };
    let done = Finish {
        version: Some((version, true)),
        seen: Some((STAT, "uploaded")),
    };
    state.finish(&job, done).unwrap();

    let mut moved = state
        .record_removal(Path::new("proj"), Some(Path::new("work")), 5_000)
        .unwrap();
    moved.sort();
    assert_eq!(
        moved,
        ["proj", "proj/empty", "proj/f.txt"].map(PathBuf::from)
    );
    let rows = state.unpublished(100).unwrap();
    let at_new = |p: &str| {
        rows.iter()
            .find(|r| r.path == Path::new(p) && r.backed_up_ms == 5_000)
            .unwrap_or_else(|| panic!("no version of {p} at the rename"))
    };
    assert_eq!(at_new("work").attrs, dir_attrs(0o700, 3));
    assert_eq!(at_new("work/empty").attrs, dir_attrs(0o2775, 3));
    assert!(!at_new("work/f.txt").is_dir());
    assert_eq!(at_new("work/f.txt").object, "data/f");
    assert_eq!(
        at_new("work/f.txt").route.storage_class.as_deref(),
        Some("STANDARD_IA"),
        "a rename keeps the route"
    );
    // The new name is live: the same directory is not recorded there again.
    assert!(!state
        .record_dir(Path::new("work/empty"), dir_attrs(0o2775, 3), 6_000)
        .unwrap());
    let removed: Vec<PathBuf> = state
        .unpublished_removals(10)
        .unwrap()
        .into_iter()
        .map(|r| r.path)
        .collect();
    assert_eq!(removed.len(), 3);
    assert!(removed.contains(&PathBuf::from("proj/empty")));
}

#[test]
fn rows_from_before_routing_take_their_prefix_from_the_object() {
    let dir = tempfile::tempdir().unwrap();
    {
        let state = State::open(dir.path()).unwrap();
        state.enqueue(Path::new("old.txt"), 0, 0, 0).unwrap();
        let job = state.due_jobs(0, 1).unwrap().remove(0);
        let version = Version {
            path: Path::new("old.txt"),
            sha256: &[5; 32],
            object: "host-a/data/ab/cd",
            size: 1,
            attrs: Attrs::default(),
            classification: "general",
            route: &crate::state::Route::default(),
        };
        let done = Finish {
            version: Some((version, true)),
            seen: None,
        };
        state.finish(&job, done).unwrap();
        // As an older release left it: no route recorded.
        state
            .conn()
            .execute_batch("UPDATE catalog SET prefix = NULL, storage_class = NULL")
            .unwrap();
    }
    let state = State::open(dir.path()).unwrap();
    let row = state.unpublished(1).unwrap().remove(0);
    assert_eq!(
        row.route,
        crate::state::Route::of_object("host-a/data/ab/cd")
    );
    assert_eq!(row.route.prefix, "host-a");
}

#[test]
fn a_rebuilt_catalog_keeps_directories_and_indexes_only_content() {
    let (_d, state) = open();
    let file = CatalogRow {
        id: 1,
        path: PathBuf::from("d/f"),
        sha256: [4; 32],
        object: "data/4".into(),
        size: 3,
        attrs: Attrs::default(),
        classification: "general".into(),
        backed_up_ms: 10,
        route: crate::state::Route {
            prefix: "personal".into(),
            storage_class: Some("STANDARD_IA".into()),
        },
    };
    let dir = CatalogRow::dir(2, PathBuf::from("d"), dir_attrs(0o1777, 5), 10);
    let contents = state
        .rebuild_catalog(&[file.clone(), dir.clone()], &[])
        .unwrap();
    assert_eq!(contents, 1, "a directory is no content");
    assert_eq!(state.object_for(&[0; 32]).unwrap(), None);
    // The rebuilt directory is known: the next mount does not record it again.
    assert!(!state.record_dir(Path::new("d"), dir.attrs, 20).unwrap());
    assert!(state.unpublished(10).unwrap().is_empty());
    let conn = state.conn();
    let back: Vec<CatalogRow> = conn
        .prepare(&format!("SELECT {CATALOG_ROW} FROM catalog ORDER BY vid"))
        .unwrap()
        .query_map([], catalog_row)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(back, [file, dir]);
}

#[test]
fn versions_and_removals_of_a_path_within_one_millisecond_stay_in_order() {
    let (_d, state) = open();
    let dir = Path::new("made");
    // mkdir, chmod, rmdir, mkdir: all at 1 000 ms by the clock.
    state.record_dir(dir, dir_attrs(0o755, 0), 1_000).unwrap();
    state.record_dir(dir, dir_attrs(0o710, 0), 1_000).unwrap();
    let d = libc::S_IFDIR;
    assert_eq!(
        rows_of(&state, "made"),
        [(d | 0o755, 1_000), (d | 0o710, 1_001)]
    );
    state.record_removal(dir, None, 1_000).unwrap();
    let removed = state.unpublished_removals(10).unwrap();
    assert_eq!(
        removed[0].removed_ms, 1_001,
        "not before the version it ends"
    );
    state.record_dir(dir, dir_attrs(0o710, 0), 1_000).unwrap();
    assert_eq!(rows_of(&state, "made").last(), Some(&(d | 0o710, 1_002)));

    // A rename onto a name recorded a moment ahead comes after it too.
    state
        .record_dir(Path::new("other"), dir_attrs(0o700, 0), 1_000)
        .unwrap();
    state
        .record_removal(Path::new("other"), Some(dir), 1_000)
        .unwrap();
    assert_eq!(rows_of(&state, "made").last(), Some(&(d | 0o700, 1_003)));
}
