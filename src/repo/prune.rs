//! `backupfs prune`: forget old versions by a retention policy, then delete the objects no
//! remaining version of any host points at.
//!
//! Deleting is safe while daemons run. The prune first publishes the objects it means to
//! delete (the condemned list) and waits until every running daemon has seen the list and
//! has published every version it started before seeing it. From then on no daemon points a
//! new version at a condemned object (it stores the content again under a fresh name), and
//! every version an earlier upload or dedup made is in some catalog, so a last read of all
//! catalogs tells exactly which condemned objects are still needed.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::catalog::{self, Catalog};
use super::{now_ms, CondemnedList, Layout, Marker, Repo};
use crate::pipeline::upload::{prefix_of, Listed};
use crate::state::CatalogRow;

/// Which versions to keep. A version is kept if either rule keeps it, and the newest
/// version of every path is always kept: a file that has not changed for a long time is
/// still backed up. Directories' versions are kept and dropped by the same rules.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The newest N versions of each path.
    pub keep_last: Option<usize>,
    /// Every version backed up within this long before now.
    pub keep_within: Option<Duration>,
}

/// The versions `policy` drops from `catalog`, as of `now_ms`.
pub fn plan<'a>(catalog: &'a Catalog, policy: &Policy, now_ms: i64) -> Vec<&'a CatalogRow> {
    let mut by_path: BTreeMap<&Path, Vec<&CatalogRow>> = BTreeMap::new();
    for row in catalog.versions.values() {
        by_path.entry(&row.path).or_default().push(row);
    }
    let since = policy.keep_within.map(|d| now_ms - d.as_millis() as i64);
    let mut dropped = Vec::new();
    for versions in by_path.values_mut() {
        versions.sort_by_key(|r| std::cmp::Reverse((r.backed_up_ms, r.id)));
        for (i, row) in versions.iter().enumerate() {
            let by_count = i == 0 || policy.keep_last.is_some_and(|n| i < n);
            let by_age = since.is_some_and(|t| row.backed_up_ms >= t);
            if !by_count && !by_age {
                dropped.push(*row);
            }
        }
    }
    dropped
}

/// What a prune did, or would do.
#[derive(Debug, Default)]
pub struct Outcome {
    pub versions_dropped: usize,
    pub objects_deleted: usize,
    pub bytes_deleted: u64,
}

/// Every object some version of any host points at, besides `except` of this host.
fn referenced(repo: &Repo, except: &HashSet<i64>) -> anyhow::Result<HashSet<String>> {
    let mut hosts: BTreeSet<String> = repo.markers()?.into_iter().map(|m| m.prefix).collect();
    hosts.insert(repo.layout.host.clone());
    let mut objects = HashSet::new();
    for host in hosts {
        let own = host == repo.layout.host;
        let dir = repo.layout.for_host(&host).catalog_dir();
        let catalog = Catalog::load_dir(repo, &dir)?;
        refuse_damaged(&catalog)?;
        for row in catalog.versions.into_values() {
            let dropped = own && except.contains(&row.id);
            // A directory's version points at no object.
            if !dropped && !row.is_dir() {
                objects.insert(row.object);
            }
        }
    }
    Ok(objects)
}

/// The objects in every `data/` directory this host's content may be in that no version
/// references: the shared one, each configured route's, and that of every object a version
/// of this host (dropped ones included) points at, so that content routed by an earlier
/// config is cleaned too.
fn unreferenced(
    repo: &Repo,
    catalog: &Catalog,
    in_use: &HashSet<String>,
) -> anyhow::Result<Vec<Listed>> {
    let mut dirs: BTreeSet<String> = repo.layout.data_dirs().into_iter().collect();
    for row in catalog.versions.values().filter(|r| !r.is_dir()) {
        dirs.insert(Layout::data_dir_of(prefix_of(&row.object)));
    }
    let mut found = BTreeMap::new();
    for dir in dirs {
        for listed in repo.dest.list(&dir)? {
            if !in_use.contains(&listed.key) {
                found.insert(listed.key.clone(), listed);
            }
        }
    }
    Ok(found.into_values().collect())
}

/// A prune cannot know what a damaged catalog file references, so it deletes nothing.
fn refuse_damaged(catalog: &Catalog) -> anyhow::Result<()> {
    match catalog.damaged.first() {
        Some((key, why)) => bail!(
            "catalog file {key} cannot be read ({why}); nothing is pruned while the objects its \
             versions need are unknown"
        ),
        None => Ok(()),
    }
}

/// Runs a prune. Without `yes`, only prints what it would do.
pub fn prune(
    repo: &Repo,
    policy: &Policy,
    yes: bool,
    wait: Duration,
    say: &mut dyn FnMut(String),
) -> anyhow::Result<Outcome> {
    let catalog = Catalog::load(repo)?;
    refuse_damaged(&catalog)?;
    let dropped = plan(&catalog, policy, now_ms());
    let ids: HashSet<i64> = dropped.iter().map(|r| r.id).collect();
    for row in &dropped {
        say(format!(
            "{} {}{} (backed up {})",
            if yes { "drop" } else { "would drop" },
            super::shown(&row.path),
            if row.is_dir() { "/" } else { "" },
            super::format_ms(row.backed_up_ms)
        ));
    }
    let in_use = referenced(repo, &ids)?;
    let candidates = unreferenced(repo, &catalog, &in_use)?;
    let mut outcome = Outcome {
        versions_dropped: dropped.len(),
        objects_deleted: candidates.len(),
        bytes_deleted: candidates.iter().map(|l| l.size).sum(),
    };
    if !yes {
        say(format!(
            "dry run: would drop {} of {} versions and delete {} objects ({} bytes); \
             run again with --yes to do it",
            outcome.versions_dropped,
            catalog.versions.len(),
            outcome.objects_deleted,
            outcome.bytes_deleted
        ));
        return Ok(outcome);
    }
    if !ids.is_empty() {
        let mut sorted: Vec<i64> = ids.iter().copied().collect();
        sorted.sort_unstable();
        catalog::write_drops(repo, &sorted)?;
    }
    if candidates.is_empty() {
        return Ok(outcome);
    }

    let list = CondemnedList {
        id: now_ms(),
        objects: candidates.iter().map(|l| l.key.clone()).collect(),
    };
    let condemned_key = repo.layout.condemned();
    repo.put_json(&condemned_key, &list)?;
    let settled = wait_for_daemons(repo, list.id, wait, say);
    let deleted = settled.and_then(|()| {
        // Anything a daemon recorded before it saw the list is in a catalog now.
        let in_use = referenced(repo, &ids)?;
        let mut deleted = (0, 0);
        for l in candidates.iter().filter(|l| !in_use.contains(&l.key)) {
            repo.dest.delete(&l.key)?;
            deleted.0 += 1;
            deleted.1 += l.size;
        }
        Ok(deleted)
    });
    if let Err(e) = repo.dest.delete(&condemned_key) {
        say(format!("warning: cannot remove {condemned_key}: {e}"));
    }
    (outcome.objects_deleted, outcome.bytes_deleted) = deleted?;
    Ok(outcome)
}

/// Waits until every running daemon has seen condemned list `id` and published all it
/// started before that.
fn wait_for_daemons(
    repo: &Repo,
    id: i64,
    wait: Duration,
    say: &mut dyn FnMut(String),
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut told = false;
    loop {
        let now = now_ms();
        let waiting: Vec<Marker> = repo
            .markers()?
            .into_iter()
            .filter(|m| m.live(now))
            .filter(|m| {
                m.condemned_seen != Some(id) || m.published_before_ms < m.condemned_seen_at_ms
            })
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = waiting.iter().map(|m| format!("`{}`", m.prefix)).collect();
        if started.elapsed() >= wait {
            bail!(
                "running backupfs daemons ({}) did not confirm the prune within {}; nothing \
                 was deleted (versions already dropped stay dropped; run prune again)",
                names.join(", "),
                humantime::format_duration(wait)
            );
        }
        if !told {
            say(format!(
                "waiting for running daemons ({}) to confirm",
                names.join(", ")
            ));
            told = true;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
