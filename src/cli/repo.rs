//! The commands that read the destination: restore, ls, history, verify, prune, catalog.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::config::{Config, Settings};
use crate::repo::catalog::{normalize, selected, Catalog};
use crate::repo::prune::Policy;
use crate::repo::restore::{self, Request};
use crate::repo::{format_ms, parse_time, shown, Repo};
use crate::state::{CatalogRow, State, DIR_CLASS};

/// A repository opened from a config, with the runtime its S3 client needs.
pub struct Opened {
    pub settings: Settings,
    pub repo: Repo,
    _rt: tokio::runtime::Runtime,
}

/// Opens the destination a config names; `host` reads another host's catalog.
pub fn open(config: &Path, host: Option<&str>) -> anyhow::Result<Opened> {
    let settings = Config::load(config)?;
    let passphrase = settings.passphrase()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut repo = Repo::open(&settings, &passphrase, rt.handle())?;
    if let Some(host) = host {
        repo.layout = repo.layout.for_host(host);
    }
    Ok(Opened {
        settings,
        repo,
        _rt: rt,
    })
}

/// Reads the catalog, warning about each damaged file in it.
fn load(repo: &Repo) -> anyhow::Result<Catalog> {
    let catalog = Catalog::load(repo).with_context(|| {
        format!(
            "cannot read the catalog under {}",
            repo.dest.url(&repo.layout.catalog_dir())
        )
    })?;
    for (key, why) in &catalog.damaged {
        eprintln!(
            "warning: catalog file {} cannot be read ({why}); the versions it holds are missing",
            repo.dest.url(key)
        );
    }
    Ok(catalog)
}

/// After a command did what it could: fails if part of the catalog was unreadable.
fn complete(catalog: &Catalog) -> anyhow::Result<()> {
    match catalog.damaged.len() {
        0 => Ok(()),
        n => bail!("{n} catalog file(s) could not be read; the output above may be incomplete"),
    }
}

fn at_ms(at: Option<&str>) -> anyhow::Result<i64> {
    at.map_or(Ok(i64::MAX), parse_time)
}

pub struct RestoreArgs<'a> {
    pub config: &'a Path,
    pub host: Option<&'a str>,
    pub at: Option<&'a str>,
    pub to: Option<PathBuf>,
    pub overwrite: bool,
    pub jobs: usize,
    pub paths: &'a [PathBuf],
}

pub fn restore(args: RestoreArgs<'_>) -> anyhow::Result<()> {
    let opened = open(args.config, args.host)?;
    let catalog = load(&opened.repo)?;
    let at = at_ms(args.at)?;
    let selectors: Vec<PathBuf> = args
        .paths
        .iter()
        .map(|p| normalize(p))
        .collect::<anyhow::Result<_>>()?;
    let rows: Vec<_> = catalog
        .at(at)
        .into_iter()
        .filter(|r| selectors.iter().any(|s| selected(&r.path, s)))
        .collect();
    let when = args.at.map(|t| format!(" at {t}")).unwrap_or_default();
    for (arg, selector) in args.paths.iter().zip(&selectors) {
        if !rows.iter().any(|r| selected(&r.path, selector)) {
            bail!("{}: nothing in the catalog{when}", shown(arg));
        }
    }
    let source = &opened.settings.raw.mount.source;
    let to = match args.to {
        Some(to) => to,
        None if source.as_os_str().is_empty() => {
            bail!("give --to: the config sets no mount.source to restore into")
        }
        None => source.clone(),
    };
    std::fs::create_dir_all(&to).with_context(|| format!("--to {}", to.display()))?;
    let request = Request {
        to,
        overwrite: args.overwrite,
        jobs: args.jobs,
    };
    let bytes = rows.iter().map(|r| r.size).sum();
    let dirs = rows.iter().filter(|r| r.is_dir()).count();
    let files = rows.len() - dirs;
    let summary = if std::io::stderr().is_terminal() {
        let bar = restore::Bar::new(files, bytes);
        let summary = restore::restore(&opened.repo, &rows, &request, &bar);
        bar.finish();
        summary
    } else {
        restore::restore(&opened.repo, &rows, &request, &restore::Lines)
    };
    println!(
        "restored {} of {files} files ({} bytes) and {} of {dirs} directories to {}{}",
        summary.restored,
        summary.bytes,
        summary.dirs,
        request.to.display(),
        match summary.already_there {
            0 => String::new(),
            n => format!("; {n} were there already with the right content"),
        }
    );
    for (path, why) in &summary.failed {
        println!("FAILED {}: {why}", shown(path));
    }
    if !summary.failed.is_empty() {
        bail!(
            "{} file(s) or directories not restored",
            summary.failed.len()
        );
    }
    complete(&catalog)
}

fn mode_string(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

pub fn ls(
    config: &Path,
    host: Option<&str>,
    at: Option<&str>,
    prefix: &Path,
) -> anyhow::Result<()> {
    let opened = open(config, host)?;
    let catalog = load(&opened.repo)?;
    let selector = normalize(prefix)?;
    let mut listed = 0;
    for row in catalog.at(at_ms(at)?) {
        if selected(&row.path, &selector) {
            listed += 1;
            println!(
                "{} {:>12} {} {}{}",
                mode_string(row.attrs.mode),
                row.size,
                format_ms(row.attrs.mtime_ns.div_euclid(1_000_000)),
                shown(&row.path),
                if row.is_dir() { "/" } else { "" }
            );
        }
    }
    if listed == 0 && !selector.as_os_str().is_empty() {
        bail!("{}: nothing in the catalog", shown(prefix));
    }
    complete(&catalog)
}

pub fn history(config: &Path, host: Option<&str>, path: &Path) -> anyhow::Result<()> {
    let opened = open(config, host)?;
    let catalog = load(&opened.repo)?;
    let path_inside = normalize(path)?;
    let versions = catalog.history(&path_inside);
    if versions.is_empty() {
        bail!("{}: no version in the catalog", shown(path));
    }
    let mut lines: Vec<(i64, String)> = versions
        .iter()
        .map(|row| (row.backed_up_ms, history_line(row)))
        .collect();
    for at in catalog.removals_of(&path_inside) {
        lines.push((at, format!("{} removed", format_ms(at))));
    }
    lines.sort_by_key(|(at, _)| *at);
    println!("backed up                 size         sha256            class      object");
    for (_, line) in lines {
        println!("{line}");
    }
    complete(&catalog)
}

/// One version in `history`: a file's content, or a directory's mode and owner.
fn history_line(row: &CatalogRow) -> String {
    let at = format_ms(row.backed_up_ms);
    if row.is_dir() {
        let (mode, uid, gid) = (mode_string(row.attrs.mode), row.attrs.uid, row.attrs.gid);
        return format!(
            "{at} {:>12} {:<16} {DIR_CLASS:<10} mode {mode}, owner {uid}:{gid}",
            "-", "-"
        );
    }
    format!(
        "{at} {:>12} {} {:<10} {}",
        row.size,
        &hex::encode(row.sha256)[..16],
        row.classification,
        row.object
    )
}

pub fn verify(config: &Path, host: Option<&str>, sample: Option<usize>) -> anyhow::Result<()> {
    let opened = open(config, host)?;
    let catalog = load(&opened.repo)?;
    let scratch = opened.settings.raw.state.dir.clone();
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("state.dir {}", scratch.display()))?;
    if sample == Some(0) {
        bail!("--sample 0 checks nothing; give 1 or more, or --all");
    }
    let report = crate::repo::verify::verify(&opened.repo, &catalog, sample, &scratch, |_, _| {});
    for bad in &report.bad {
        for path in &bad.paths {
            println!("{} {}: {}", bad.kind, shown(path), bad.why);
        }
    }
    println!(
        "checked {} objects ({} bytes): {} bad",
        report.objects_checked,
        report.bytes,
        report.bad.len()
    );
    let unreadable = report.bad.iter().filter(|b| b.kind == "UNREADABLE").count();
    if unreadable > 0 {
        bail!(
            "{unreadable} object(s) could not be read from the destination (not proven bad); \
             {} missing or corrupt",
            report.bad.len() - unreadable
        );
    }
    if !report.bad.is_empty() {
        bail!("{} object(s) missing or corrupt", report.bad.len());
    }
    complete(&catalog)
}

pub fn prune(
    config: &Path,
    policy: Policy,
    yes: bool,
    wait: std::time::Duration,
) -> anyhow::Result<()> {
    if policy.keep_last.is_none() && policy.keep_within.is_none() {
        bail!("say what to keep: --keep-last N and/or --keep-within DURATION");
    }
    if policy.keep_last == Some(0) {
        bail!("--keep-last 0: the newest version of each file is always kept; give 1 or more");
    }
    let opened = open(config, None)?;
    let outcome = crate::repo::prune::prune(&opened.repo, &policy, yes, wait, &mut |line| {
        println!("{line}")
    })?;
    if yes {
        println!(
            "dropped {} versions; deleted {} objects ({} bytes)",
            outcome.versions_dropped, outcome.objects_deleted, outcome.bytes_deleted
        );
    }
    Ok(())
}

/// Rebuilds the local index from this host's catalog in the destination.
pub fn rebuild(config: &Path) -> anyhow::Result<()> {
    let opened = open(config, None)?;
    let dir = &opened.settings.raw.state.dir;
    let _lock = crate::state::lock(dir)?;
    let catalog = load(&opened.repo)?;
    let mut rows: Vec<_> = catalog.versions.into_values().collect();
    rows.sort_by_key(|r| (r.backed_up_ms, r.id));
    let removals: Vec<_> = catalog.removals.into_values().collect();
    let contents = State::open(dir)?.rebuild_catalog(&rows, &removals)?;
    let dirs = rows.iter().filter(|r| r.is_dir()).count();
    println!(
        "rebuilt {}: {} versions, {dirs} directory versions, {} contents",
        dir.display(),
        rows.len() - dirs,
        contents
    );
    Ok(())
}

/// Merges this host's catalog into one snapshot now.
pub fn compact(config: &Path) -> anyhow::Result<()> {
    let opened = open(config, None)?;
    let catalog = load(&opened.repo)?;
    let key = catalog.compact(&opened.repo)?;
    println!(
        "{} versions from {} files merged into {key}",
        catalog.versions.len(),
        catalog.merged.len() + usize::from(catalog.snapshot.is_some())
    );
    Ok(())
}
