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
