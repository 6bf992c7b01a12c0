//! `type = "credential_watch"`: inotify watches on credential files.
//!
//! Watches the files build jobs can reach that hold long-lived credentials
//! (`~/.aws/credentials`, `~/.docker/config.json`, `~/.kube/config`,
//! `~/.npmrc`, `~/.pypirc`, `~/.git-credentials`, `~/.ssh/id_*`, gcloud
//! application default credentials, the Kubernetes service account token,
//! the GitHub runner's `.credentials` files) in every home directory the
//! `homes` globs name, plus configured `paths`, and emits one event per
//! access: `open`, `read`, `write`, `create` or `delete`.
//!
//! # How
//!
//! The *directories* holding the files are watched (through `notify`'s
//! inotify backend), so a file created later is seen, and a credential file
//! that is a symlink is also watched itself (a watch follows the link). A
//! directory that does not exist yet is covered by a watch on its nearest
//! existing ancestor, and the watches are brought up to date whenever
//! something is created there and every `rescan_interval` (new home
//! directories). A directory we may not read is skipped with one warning.
//!
//! notify 8's inotify backend subscribes to `IN_OPEN`, `IN_MODIFY`,
//! `IN_CLOSE_WRITE`, `IN_CREATE`, `IN_DELETE` and moves, but not to
//! `IN_ACCESS`: a read shows up as the `open` that must precede it (a process
//! that opened the file before the watch existed and reads it later is not
//! seen). The notifications of one path within `coalesce` (an open, several
//! modifications, the close) become one event whose `operation` is the
//! strongest of them (delete > create > write > read > open); all of them are
//! listed in `tailguard.credential.operations`.
//!
//! # Attribution
//!
//! inotify does not say which process touched a file. When `/proc` shows
//! exactly one running `tailguard exec` wrapper, or, with none, exactly one
//! CI job among the processes whose environment we may read
//! (`GITHUB_JOB`, `CI_JOB_ID`, `BUILDKITE_JOB_ID`), the event carries that
//! job's attributes and `tailguard.credential.attribution =
//! "single_running_job"`; otherwise `"unknown"`. This is a hint, not proof:
//! any process on the machine could have opened the file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use globset::{Glob, GlobMatcher, GlobSet, GlobSetBuilder};
use notify::event::{AccessKind, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use serde::Deserialize;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::event::{Event, EventBatch, Origin};
use crate::identity::inventory::{Identity, Inventory};
use crate::topology::component::{ComponentTask, SourceContext};

#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialWatchConfig {
    /// Globs of home directories whose credential files are watched.
    #[serde(default = "default_homes")]
    pub homes: Vec<String>,
    /// More files to watch: absolute paths, `*`/`?`/`[..]` globs allowed in
    /// any component (no `**`).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Runner installation folders (globs) whose `.credentials` and
    /// `.credentials_rsaparams` are watched, besides `<home>/actions-runner`.
    #[serde(default = "default_runner_roots")]
    pub runner_roots: Vec<String>,
    /// Watch the built-in list of credential files; `false` watches only
    /// `paths`.
    #[serde(default = "default_true")]
    pub default_paths: bool,
    /// How often home directories and missing folders are looked for again.
    #[serde(default = "default_rescan_interval")]
    #[schemars(with = "String")]
    pub rescan_interval: crate::config::HumanDuration,
    /// Notifications of one file within this long become one event.
    #[serde(default = "default_coalesce")]
    #[schemars(with = "String")]
    pub coalesce: crate::config::HumanDuration,
}

fn default_homes() -> Vec<String> {
    vec!["/home/*".into(), "/root".into()]
}
fn default_runner_roots() -> Vec<String> {
    crate::identity::ci::GITHUB_RUNNER_ROOTS
        .iter()
        .map(|r| r.to_string())
        .collect()
}
fn default_true() -> bool {
    true
}
fn default_rescan_interval() -> crate::config::HumanDuration {
    crate::config::HumanDuration(Duration::from_secs(10))
}
fn default_coalesce() -> crate::config::HumanDuration {
    crate::config::HumanDuration(Duration::from_millis(200))
}

/// Credential files relative to a home directory, and their kind.
pub(crate) const HOME_FILES: &[(&str, &str)] = &[
    (".aws/credentials", "aws"),
    (".aws/config", "aws"),
    (".docker/config.json", "docker"),
    (".kube/config", "kube"),
    (".npmrc", "npm"),
    (".pypirc", "pypi"),
    (".git-credentials", "git"),
    (".ssh/id_*", "ssh"),
    (
        ".config/gcloud/application_default_credentials.json",
        "gcloud",
    ),
    (".config/gcloud/credentials.db", "gcloud"),
    ("actions-runner/.credentials", "runner"),
    ("actions-runner/.credentials_rsaparams", "runner"),
];

/// Credential files at fixed places.
pub(crate) const SYSTEM_FILES: &[(&str, &str)] = &[
    (
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "k8s_sa_token",
    ),
    (
        "/run/secrets/kubernetes.io/serviceaccount/token",
        "k8s_sa_token",
    ),
];

/// Files in a runner root.
pub(crate) const RUNNER_FILES: &[&str] = &[".credentials", ".credentials_rsaparams"];

/// The kind of a credential file from its path, for configured paths and
/// audit records: the built-in list's kind when its name matches, `other`
/// otherwise.
pub(crate) fn kind_of(path: &str) -> &'static str {
    for (rel, kind) in HOME_FILES {
        let pattern = format!("**/{rel}");
        if Glob::new(&pattern)
            .map(|g| g.compile_matcher().is_match(path))
            .unwrap_or(false)
        {
            return kind;
        }
    }
    for (abs, kind) in SYSTEM_FILES {
        if path == *abs {
            return kind;
        }
    }
    if RUNNER_FILES
        .iter()
        .any(|f| path.rsplit('/').next() == Some(f))
    {
        return "runner";
    }
    "other"
}

/// One watched file pattern.
#[derive(Clone, Debug)]
struct Target {
    /// Absolute glob of the files.
    pattern: String,
    kind: &'static str,
}

fn glob(pattern: &str) -> Result<GlobMatcher, globset::Error> {
    Ok(globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()?
        .compile_matcher())
}

fn targets(config: &CredentialWatchConfig) -> Vec<Target> {
    let mut out = Vec::new();
    if config.default_paths {
        for home in &config.homes {
            let home = home.trim_end_matches('/');
            for (rel, kind) in HOME_FILES {
                out.push(Target {
                    pattern: format!("{home}/{rel}"),
                    kind,
                });
            }
        }
        for (abs, kind) in SYSTEM_FILES {
            out.push(Target {
                pattern: (*abs).into(),
                kind,
            });
        }
        for root in &config.runner_roots {
            let root = root.trim_end_matches('/');
            for f in RUNNER_FILES {
                out.push(Target {
                    pattern: format!("{root}/{f}"),
                    kind: "runner",
                });
            }
        }
    }
    for p in &config.paths {
        out.push(Target {
            pattern: p.clone(),
            kind: kind_of(p),
        });
    }
    out
}

impl CredentialWatchConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        for (field, list) in [
            ("homes", &self.homes),
            ("paths", &self.paths),
            ("runner_roots", &self.runner_roots),
        ] {
            for p in list {
                if !p.starts_with('/') {
                    return Err(format!("`{field}` entry {p:?} must be an absolute path"));
                }
                if p.contains("**") {
                    return Err(format!("`{field}` entry {p:?}: `**` is not supported"));
                }
                glob(p).map_err(|e| format!("`{field}` entry {p:?} is not a valid glob: {e}"))?;
            }
        }
        if self.rescan_interval.0.is_zero() {
            return Err("`rescan_interval` must be greater than 0".into());
        }
        if targets(self).is_empty() {
            return Err("nothing to watch: `default_paths = false` and no `paths`".into());
        }
        Ok(())
    }
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// Existing paths matching an absolute pattern, component by component.
fn expand(pattern: &str) -> Vec<PathBuf> {
    let mut current = vec![PathBuf::from("/")];
    for component in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        if has_glob(component) {
            let Ok(m) = glob(component) else {
                return Vec::new();
            };
            for dir in &current {
                let Ok(entries) = std::fs::read_dir(dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    if m.is_match(entry.file_name()) {
                        next.push(entry.path());
                    }
                }
            }
        } else {
            for dir in &current {
                let p = dir.join(component);
                if std::fs::symlink_metadata(&p).is_ok() {
                    next.push(p);
                }
            }
        }
        next.sort();
        current = next;
        if current.is_empty() {
            break;
        }
    }
    current
}

/// The folder pattern of a file pattern and the nearest existing ancestor
/// of a missing folder.
fn parent_pattern(pattern: &str) -> &str {
    match pattern.rfind('/') {
        Some(0) => "/",
        Some(i) => &pattern[..i],
        None => "/",
    }
}

/// Splits a folder pattern into the part up to its last globbed component
/// and the literal rest: `/home/*/.aws` -> (`/home/*`, `/.aws`).
fn split_at_last_glob(pattern: &str) -> (&str, &str) {
    let mut cut = 0;
    let mut at = 0;
    for component in pattern.split('/') {
        at += component.len();
        if has_glob(component) {
            cut = at;
        }
        at += 1;
    }
    let cut = cut.min(pattern.len());
    (&pattern[..cut], &pattern[cut..])
}

/// Every ancestor folder pattern of the targets' folders: a path created
/// or removed there may change which folders exist.
fn ancestor_set(targets: &[Target]) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for t in targets {
        let mut p = parent_pattern(&t.pattern);
        while p != "/" {
            if let Ok(g) = globset::GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
            {
                b.add(g);
            }
            p = parent_pattern(p);
        }
    }
    b.build().unwrap_or_else(|_| GlobSet::empty())
}

/// What a notification did to a file, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Open,
    Read,
    Write,
    Create,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Open => "open",
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Create => "create",
            Operation::Delete => "delete",
        }
    }
    fn verb(self) -> &'static str {
        match self {
            Operation::Open => "opened",
            Operation::Read => "read",
            Operation::Write => "written",
            Operation::Create => "created",
            Operation::Delete => "deleted",
        }
    }
}

/// The operation a notification stands for, if any.
pub fn operation(kind: &EventKind) -> Option<Operation> {
    match kind {
        EventKind::Access(AccessKind::Open(_)) => Some(Operation::Open),
        EventKind::Access(AccessKind::Read) => Some(Operation::Read),
        EventKind::Access(AccessKind::Close(notify::event::AccessMode::Write)) => {
            Some(Operation::Write)
        }
        EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => Some(Operation::Write),
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => Some(Operation::Delete),
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Some(Operation::Create),
        EventKind::Create(_) => Some(Operation::Create),
        EventKind::Remove(_) => Some(Operation::Delete),
        _ => None,
    }
}

/// What the watcher thread hands the source.
enum Notice {
    Access(PathBuf, Operation),
    /// Something that may change which folders exist.
    Structure(PathBuf),
    Error(String),
}

pub fn build(config: &CredentialWatchConfig, cx: SourceContext) -> anyhow::Result<ComponentTask> {
    config.check().map_err(anyhow::Error::msg)?;
    let targets = targets(config);
    let mut set = GlobSetBuilder::new();
    for t in &targets {
        set.add(
            globset::GlobBuilder::new(&t.pattern)
                .literal_separator(true)
                .backslash_escape(true)
                .build()?,
        );
    }
    let set = Arc::new(set.build()?);
    let identities = identity_matchers(&cx.globals.inventory, &config.homes);
    let rescan = config.rescan_interval.0;
    let coalesce = config.coalesce.0;
    Ok(Box::pin(run(
        targets, set, identities, rescan, coalesce, cx,
    )))
}

/// Inventory identities whose `secrets.files` name a path (`~/` stands for
/// every home directory).
fn identity_matchers(inventory: &Inventory, homes: &[String]) -> Vec<(GlobMatcher, Arc<Identity>)> {
    let mut out = Vec::new();
    for identity in inventory.identities() {
        for file in &identity.config.secrets.files {
            let patterns: Vec<String> = match file.strip_prefix("~/") {
                Some(rel) => homes
                    .iter()
                    .map(|h| format!("{}/{rel}", h.trim_end_matches('/')))
                    .collect(),
                None => vec![file.clone()],
            };
            for p in patterns {
                if let Ok(m) = glob(&p) {
                    out.push((m, Arc::clone(identity)));
                }
            }
        }
    }
    out
}

struct Pending {
    first: Instant,
    ops: Vec<Operation>,
    kind: &'static str,
    at: SystemTime,
}

async fn run(
    targets: Vec<Target>,
    set: Arc<GlobSet>,
    identities: Vec<(GlobMatcher, Arc<Identity>)>,
    rescan_every: Duration,
    coalesce: Duration,
    mut cx: SourceContext,
) -> anyhow::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Notice>(4096);
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ancestors = ancestor_set(&targets);
    let handler = {
        let set = Arc::clone(&set);
        let dropped = Arc::clone(&dropped);
        move |res: notify::Result<notify::Event>| {
            let notices: Vec<Notice> = match res {
                Ok(ev) => {
                    let op = operation(&ev.kind);
                    let structural = matches!(
                        ev.kind,
                        EventKind::Create(_)
                            | EventKind::Remove(_)
                            | EventKind::Modify(ModifyKind::Name(_))
                    );
                    ev.paths
                        .into_iter()
                        .filter_map(|p| match op {
                            Some(op) if set.is_match(&p) => Some(Notice::Access(p, op)),
                            _ if structural && ancestors.is_match(&p) => Some(Notice::Structure(p)),
                            _ => None,
                        })
                        .collect()
                }
                Err(e) => vec![Notice::Error(e.to_string())],
            };
            for n in notices {
                if tx.try_send(n).is_err() {
                    dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    };
    let mut watcher = notify::recommended_watcher(handler)
        .map_err(|e| anyhow::anyhow!("cannot start inotify: {e}"))?;
    let mut watches = Watches::default();
    let classify = |path: &Path| -> &'static str {
        set.matches(path)
            .first()
            .map_or("other", |i| targets[*i].kind)
    };
    let (dirs, files) = watches.sync(&mut watcher, &targets, &set);
    watches.added.clear();
    info!(
        source = %cx.name,
        directories = dirs,
        files = files,
        "watching credential files"
    );
    let mut pending: BTreeMap<PathBuf, Pending> = BTreeMap::new();
    let mut ready: Vec<(PathBuf, Pending)> = Vec::new();
    let mut rescan_tick = tokio::time::interval(rescan_every);
    rescan_tick.tick().await;
    let mut flush_tick = tokio::time::interval(coalesce.max(Duration::from_millis(20)) / 2);
    let mut rescan_soon: Option<Instant> = None;
    let mut attribution = AttributionCache::default();
    let mut warned_drop = false;
    loop {
        tokio::select! {
            () = cx.shutdown.cancelled() => break,
            notice = rx.recv() => {
                let Some(notice) = notice else { break };
                match notice {
                    Notice::Access(path, op) => {
                        let kind = classify(&path);
                        note(&mut pending, &mut ready, path, op, kind);
                        if matches!(op, Operation::Create | Operation::Delete) {
                            rescan_soon.get_or_insert(Instant::now());
                        }
                    }
                    Notice::Structure(path) => {
                        watches.forget_if_gone(&path);
                        rescan_soon.get_or_insert(Instant::now());
                    }
                    Notice::Error(e) => debug!(error = %e, "inotify error"),
                }
            }
            _ = flush_tick.tick() => {
                let due: Vec<PathBuf> = pending
                    .iter()
                    .filter(|(_, p)| p.first.elapsed() >= coalesce)
                    .map(|(k, _)| k.clone())
                    .collect();
                ready.extend(due.into_iter().filter_map(|k| pending.remove(&k).map(|p| (k, p))));
                if !ready.is_empty() {
                    let jobs = attribution.get().await;
                    let batch: EventBatch = std::mem::take(&mut ready)
                        .into_iter()
                        .map(|(path, p)| to_event(&cx, &path, p, &jobs, &identities))
                        .collect();
                    cx.out.send(batch).await?;
                }
                if rescan_soon.is_some_and(|t| t.elapsed() >= Duration::from_millis(50)) {
                    rescan_soon = None;
                    watches.sync(&mut watcher, &targets, &set);
                    // Files created in a folder before its watch existed.
                    for dir in std::mem::take(&mut watches.added) {
                        for path in std::fs::read_dir(&dir)
                            .into_iter()
                            .flatten()
                            .flatten()
                            .map(|e| e.path())
                            .filter(|p| set.is_match(p))
                        {
                            let kind = classify(&path);
                            note(&mut pending, &mut ready, path, Operation::Create, kind);
                        }
                    }
                }
                let n = dropped.load(std::sync::atomic::Ordering::Relaxed);
                if n > 0 && !warned_drop {
                    warned_drop = true;
                    warn!(source = %cx.name, dropped = n,
                        "credential notifications arrive faster than they are handled; some were dropped");
                }
            }
            _ = rescan_tick.tick() => {
                rescan_soon.get_or_insert(Instant::now());
            }
        }
    }
    drop(watcher);
    ready.extend(std::mem::take(&mut pending));
    if !ready.is_empty() {
        let jobs = attribution.get().await;
        let batch: EventBatch = ready
            .into_iter()
            .map(|(path, p)| to_event(&cx, &path, p, &jobs, &identities))
            .collect();
        cx.out.send(batch).await?;
    }
    Ok(())
}

/// Records a notification of `path` in the access it belongs to. One
/// access is an open with the reads and writes through it, or a creation
/// with the writes that fill the file, or a deletion; a notification that
/// starts another access completes the one before (into `ready`).
fn note(
    pending: &mut BTreeMap<PathBuf, Pending>,
    ready: &mut Vec<(PathBuf, Pending)>,
    path: PathBuf,
    op: Operation,
    kind: &'static str,
) {
    if let Some(p) = pending.get(&path) {
        let new_access = match op {
            Operation::Create | Operation::Delete => true,
            Operation::Open => {
                p.ops.contains(&Operation::Open) || p.ops.contains(&Operation::Delete)
            }
            Operation::Read | Operation::Write => p.ops.contains(&Operation::Delete),
        };
        if new_access && let Some(done) = pending.remove(&path) {
            ready.push((path.clone(), done));
        }
    }
    let p = pending.entry(path).or_insert_with(|| Pending {
        first: Instant::now(),
        ops: Vec::new(),
        kind,
        at: SystemTime::now(),
    });
    if !p.ops.contains(&op) {
        p.ops.push(op);
    }
}

fn to_event(
    cx: &SourceContext,
    path: &Path,
    mut p: Pending,
    jobs: &[Candidate],
    identities: &[(GlobMatcher, Arc<Identity>)],
) -> Event {
    p.ops.sort();
    let op = *p.ops.last().expect("at least one operation");
    let shown = path.display().to_string();
    let mut event = Event::new(
        format!("credential file {}: {shown}", op.verb()).into_bytes(),
        Origin {
            source: Arc::clone(&cx.name),
            path: Some(Arc::from(path)),
            ..Origin::default()
        },
        Arc::clone(&cx.context),
    );
    event.timestamp = Some(p.at);
    let a = &mut event.attributes;
    a.insert("tailguard.credential.path", shown.as_str());
    a.insert("tailguard.credential.kind", p.kind);
    a.insert("tailguard.credential.operation", op.as_str());
    a.insert(
        "tailguard.credential.operations",
        p.ops
            .iter()
            .map(|o| o.as_str())
            .collect::<Vec<_>>()
            .join(","),
    );
    a.insert("file.path", shown.as_str());
    match decide(jobs, path) {
        Some(job) => {
            a.insert("tailguard.credential.attribution", "single_running_job");
            a.insert("tailguard.credential.job.pid", u64::from(job.pid));
            for (k, v) in &job.attributes {
                a.insert(k.clone(), v.as_str());
            }
        }
        None => a.insert("tailguard.credential.attribution", "unknown"),
    }
    if let Some((_, identity)) = identities.iter().find(|(m, _)| m.is_match(path)) {
        for (k, v) in identity.attributes().iter() {
            a.insert(k.to_string(), v.clone());
        }
    }
    event
}

/// The inotify watches in place, brought up to date by [`Watches::sync`].
#[derive(Default)]
struct Watches {
    watched: HashSet<PathBuf>,
    /// Watched since the last look; their files may predate the watch.
    added: Vec<PathBuf>,
    warned: HashSet<PathBuf>,
}

impl Watches {
    /// Watches every existing folder of a target (or the nearest existing
    /// ancestor of a missing one) and every matching symlink; drops watches
    /// no longer needed. Returns (folders, files) watched.
    fn sync(
        &mut self,
        watcher: &mut notify::RecommendedWatcher,
        targets: &[Target],
        set: &GlobSet,
    ) -> (usize, usize) {
        let mut wanted: HashSet<PathBuf> = HashSet::new();
        let mut files = 0;
        for t in targets {
            let (globbed, literal) = split_at_last_glob(parent_pattern(&t.pattern));
            let bases = if globbed.is_empty() {
                vec![PathBuf::from("/")]
            } else {
                expand(globbed)
            };
            for base in bases {
                if !base.is_dir() {
                    continue;
                }
                let literal = literal.trim_start_matches('/');
                let dir = if literal.is_empty() {
                    base
                } else {
                    base.join(literal)
                };
                if dir.is_dir() {
                    if let Ok(entries) = std::fs::read_dir(&dir) {
                        for entry in entries.flatten() {
                            let path = entry.path();
                            if set.is_match(&path)
                                && entry.file_type().is_ok_and(|t| t.is_symlink())
                            {
                                wanted.insert(path);
                                files += 1;
                            }
                        }
                    }
                    wanted.insert(dir);
                    continue;
                }
                // Missing: watch its nearest existing ancestor (never `/`)
                // to see it appear.
                let mut up = dir.parent();
                while let Some(p) = up {
                    if p == Path::new("/") {
                        break;
                    }
                    if p.is_dir() {
                        wanted.insert(p.to_path_buf());
                        break;
                    }
                    up = p.parent();
                }
            }
        }
        for gone in self
            .watched
            .iter()
            .filter(|p| !wanted.contains(*p))
            .cloned()
            .collect::<Vec<_>>()
        {
            let _ = watcher.unwatch(&gone);
            self.watched.remove(&gone);
        }
        for path in wanted {
            if self.watched.contains(&path) {
                continue;
            }
            match watcher.watch(&path, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.added.push(path.clone());
                    self.watched.insert(path);
                }
                Err(e) => {
                    if self.warned.insert(path.clone()) {
                        warn!(path = %path.display(), error = %e,
                            "cannot watch for credential file access (permission denied or watch limit); skipping it");
                    }
                }
            }
        }
        (self.watched.len().saturating_sub(files), files)
    }

    /// A watched path that was removed or renamed loses its watch.
    fn forget_if_gone(&mut self, path: &Path) {
        if self.watched.contains(path) && std::fs::symlink_metadata(path).is_err() {
            self.watched.remove(path);
        }
    }
}

/// The CI job a credential access is attributed to.
#[derive(Debug, PartialEq)]
pub(crate) struct JobAttribution {
    pub pid: u32,
    pub attributes: Vec<(String, String)>,
}

/// A process that may be the job: a `tailguard exec` wrapper, or a process
/// whose environment names a CI job.
#[derive(Debug)]
pub(crate) struct Candidate {
    pid: u32,
    wrapper: bool,
    /// The job variables' values, to tell jobs apart.
    job_key: String,
    env: HashMap<String, String>,
}

/// `/proc` scans are cached briefly: a burst of accesses scans once.
#[derive(Default)]
struct AttributionCache {
    last: Option<(Instant, Arc<Vec<Candidate>>)>,
}

impl AttributionCache {
    async fn get(&mut self) -> Arc<Vec<Candidate>> {
        if let Some((at, jobs)) = &self.last
            && at.elapsed() < Duration::from_millis(250)
        {
            return Arc::clone(jobs);
        }
        let jobs = tokio::task::spawn_blocking(|| {
            Arc::new(candidates(Path::new("/proc"), std::process::id()))
        })
        .await
        .unwrap_or_default();
        self.last = Some((Instant::now(), Arc::clone(&jobs)));
        jobs
    }
}

const JOB_VARIABLES: &[&str] = &["GITHUB_JOB", "CI_JOB_ID", "BUILDKITE_JOB_ID"];

fn read_nul_separated(path: &Path) -> Option<Vec<String>> {
    let bytes = std::fs::read(path).ok()?;
    Some(
        bytes
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

fn environ(proc_root: &Path, pid: u32) -> Option<HashMap<String, String>> {
    let vars = read_nul_separated(&proc_root.join(pid.to_string()).join("environ"))?;
    Some(
        vars.into_iter()
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect(),
    )
}

/// Whether a command line is `tailguard [options] exec ...`.
fn is_exec_wrapper(argv: &[String]) -> bool {
    let Some(first) = argv.first() else {
        return false;
    };
    first.rsplit('/').next() == Some("tailguard")
        && argv[1..]
            .iter()
            .take_while(|a| *a != "--")
            .any(|a| a == "exec")
}

/// The wrappers and job processes `/proc` shows (environments we may not
/// read are skipped; a wrapper is kept without one).
pub(crate) fn candidates(proc_root: &Path, own_pid: u32) -> Vec<Candidate> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return out;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own_pid {
            continue;
        }
        let Some(argv) = read_nul_separated(&entry.path().join("cmdline")) else {
            continue;
        };
        let wrapper = is_exec_wrapper(&argv);
        let env = environ(proc_root, pid);
        let is_job = env
            .as_ref()
            .is_some_and(|e| JOB_VARIABLES.iter().any(|v| e.contains_key(*v)));
        if !wrapper && !is_job {
            continue;
        }
        let env = env.unwrap_or_default();
        let job_key = JOB_VARIABLES
            .iter()
            .chain(&["GITHUB_RUN_ID"])
            .filter_map(|v| env.get(*v).map(|x| format!("{v}={x}")))
            .collect::<Vec<_>>()
            .join(";");
        out.push(Candidate {
            pid,
            wrapper,
            job_key,
            env,
        });
    }
    out
}

/// Those of `list` whose `HOME` holds `path`, if any; else all of them.
fn narrow<'a>(list: Vec<&'a Candidate>, path: &Path) -> Vec<&'a Candidate> {
    let at_home: Vec<&Candidate> = list
        .iter()
        .copied()
        .filter(|c| {
            c.env
                .get("HOME")
                .is_some_and(|h| h.len() > 1 && path.starts_with(h))
        })
        .collect();
    if at_home.is_empty() { list } else { at_home }
}

/// The job an access to `path` is attributed to: the one running
/// `tailguard exec` wrapper, or with none the one job among the processes
/// whose environment names one. When several are running, those whose
/// `HOME` holds `path` are preferred.
pub(crate) fn decide(candidates: &[Candidate], path: &Path) -> Option<JobAttribution> {
    let wrappers = narrow(candidates.iter().filter(|c| c.wrapper).collect(), path);
    let chosen = if wrappers.is_empty() {
        let jobs = narrow(candidates.iter().filter(|c| !c.wrapper).collect(), path);
        let mut keys: BTreeMap<&str, &Candidate> = BTreeMap::new();
        for c in jobs {
            let slot = keys.entry(c.job_key.as_str()).or_insert(c);
            if c.pid < slot.pid {
                *slot = c;
            }
        }
        if keys.len() != 1 {
            return None;
        }
        *keys.values().next().expect("one job")
    } else if wrappers.len() == 1 {
        wrappers[0]
    } else {
        return None;
    };
    let lookup = |name: &str| chosen.env.get(name).cloned();
    let attributes = crate::identity::ci::detect(&lookup, &|_| None)
        .map(|job| {
            job.attributes
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect()
        })
        .unwrap_or_default();
    Some(JobAttribution {
        pid: chosen.pid,
        attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, RemoveKind};

    fn fake_proc(dir: &Path, pid: u32, argv: &[&str], env: &[&str]) {
        let p = dir.join(pid.to_string());
        std::fs::create_dir_all(&p).unwrap();
        let join = |parts: &[&str]| parts.iter().map(|s| format!("{s}\0")).collect::<String>();
        std::fs::write(p.join("cmdline"), join(argv)).unwrap();
        std::fs::write(p.join("environ"), join(env)).unwrap();
    }

    #[test]
    fn one_exec_wrapper_names_the_job() {
        let dir = tempfile::tempdir().unwrap();
        fake_proc(dir.path(), 10, &["/usr/bin/bash"], &["HOME=/root"]);
        fake_proc(
            dir.path(),
            20,
            &["/usr/bin/tailguard", "exec", "--", "make"],
            &[
                "GITHUB_ACTIONS=true",
                "GITHUB_JOB=build",
                "GITHUB_RUN_ID=77",
                "GITHUB_REPOSITORY=acme/app",
            ],
        );
        let job = decide(&candidates(dir.path(), 1), Path::new("/x")).unwrap();
        assert_eq!(job.pid, 20);
        assert!(
            job.attributes
                .iter()
                .any(|(k, v)| k == "cicd.pipeline.run.id" && v == "77"),
            "{job:?}"
        );
    }

    #[test]
    fn two_jobs_or_none_are_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let job = |path: &str| decide(&candidates(dir.path(), 1), Path::new(path));
        assert_eq!(job("/x"), None);
        fake_proc(dir.path(), 10, &["sh"], &["CI_JOB_ID=1"]);
        fake_proc(dir.path(), 11, &["sh"], &["CI_JOB_ID=1"]);
        assert_eq!(job("/x").unwrap().pid, 10);
        fake_proc(dir.path(), 12, &["sh"], &["CI_JOB_ID=2", "HOME=/home/b"]);
        assert_eq!(job("/x"), None);
        assert_eq!(job("/home/b/.npmrc").unwrap().pid, 12, "the job at home");
    }

    #[test]
    fn kinds_and_operations() {
        assert_eq!(kind_of("/home/x/.aws/credentials"), "aws");
        assert_eq!(kind_of("/home/x/.ssh/id_ed25519"), "ssh");
        assert_eq!(kind_of("/opt/actions-runner/.credentials"), "runner");
        assert_eq!(kind_of("/etc/other"), "other");
        assert_eq!(
            operation(&EventKind::Access(AccessKind::Open(
                notify::event::AccessMode::Any
            ))),
            Some(Operation::Open)
        );
        assert_eq!(
            operation(&EventKind::Remove(RemoveKind::File)),
            Some(Operation::Delete)
        );
        assert_eq!(
            operation(&EventKind::Create(CreateKind::File)),
            Some(Operation::Create)
        );
    }

    #[test]
    fn expands_globs_component_by_component() {
        let dir = tempfile::tempdir().unwrap();
        for u in ["a", "b"] {
            std::fs::create_dir_all(dir.path().join("home").join(u).join(".aws")).unwrap();
        }
        let found = expand(&format!("{}/home/*/.aws", dir.path().display()));
        assert_eq!(found.len(), 2);
        assert_eq!(split_at_last_glob("/home/*/.aws"), ("/home/*", "/.aws"));
        assert_eq!(split_at_last_glob("/var/run/x"), ("", "/var/run/x"));
        assert_eq!(split_at_last_glob("/a/*"), ("/a/*", ""));
    }
}
