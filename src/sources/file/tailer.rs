//! The synchronous heart of the file source: which files exist, who they
//! are, how far they were read, and what was acknowledged. It runs one
//! "round" at a time on a blocking thread; the async task around it
//! ([`super::run`]) sends the batches a round produced and feeds back
//! acknowledgements.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use notify::Watcher as _;
use tokio::sync::mpsc::UnboundedSender;

use super::checkpoint::{self, Entry};
use super::config::{FileAttribute, ReadFrom};
use super::discovery::Matcher;
use super::fingerprint::{self, FileKey, Head, HeadCheck, Resume};
use super::multiline::{Aggregator, Rules};
use super::reader::{Line, LineReader, MidLine};
use crate::ack::{AckRef, DeliveryStatus};
use crate::event::{Attribute, Attributes, Context, Event, EventBatch, Origin, Value};
use crate::observe::metrics::{ComponentLabels, FileLabels, metrics};

/// Most bytes read in one round over all files, so a round's batches stay a
/// bounded amount of memory. Files not reached continue next round.
const ROUND_BYTES: usize = 8 * 1024 * 1024;
/// Checkpoint entries of files not seen by any scan for this long are
/// forgotten.
const FORGET_AFTER_SECS: u64 = 24 * 3600;

/// Which of the file source's attributes its lines carry (`file_attributes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineAttributes {
    path: bool,
    name: bool,
    id: bool,
    offset: bool,
}

impl LineAttributes {
    pub const ALL: LineAttributes = LineAttributes {
        path: true,
        name: true,
        id: true,
        offset: true,
    };

    pub fn of(chosen: &[FileAttribute]) -> Self {
        let has = |a| chosen.contains(&a);
        LineAttributes {
            path: has(FileAttribute::Path),
            name: has(FileAttribute::Name),
            id: has(FileAttribute::Id),
            offset: has(FileAttribute::Offset),
        }
    }
}

/// The attributes every line of the file at `path` (`path_str` as text; `id` its file id)
/// carries, of those `chosen`, in the one list its lines share; a line adds its own
/// `tailguard.file.offset` if chosen.
pub fn file_attributes(
    path: &Path,
    path_str: &Arc<str>,
    id: &Arc<str>,
    chosen: LineAttributes,
) -> Arc<[Attribute]> {
    let mut list = Vec::with_capacity(3);
    if chosen.path {
        list.push((
            FileAttribute::Path.key().into(),
            Value::String(Arc::clone(path_str)),
        ));
    }
    if chosen.name {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        list.push((FileAttribute::Name.key().into(), Value::from(name)));
    }
    if chosen.id {
        list.push((
            FileAttribute::Id.key().into(),
            Value::String(Arc::clone(id)),
        ));
    }
    list.into()
}

/// Everything [`Tailer`] needs from the configuration, compiled.
pub(crate) struct Settings {
    pub name: Arc<str>,
    /// `sources.NAME`, the component label of the agent's metrics.
    pub labels: ComponentLabels,
    pub context: Arc<Context>,
    pub matcher: Matcher,
    pub read_from: ReadFrom,
    pub ignore_older: Option<Duration>,
    pub max_line_bytes: usize,
    pub poll_interval: Duration,
    pub trailing_line_timeout: Duration,
    pub multiline: Option<Rules>,
    pub max_open_files: usize,
    pub fingerprint_bytes: usize,
    pub read_batch_bytes: usize,
    pub attributes: LineAttributes,
    /// Use file-system notifications (false: polling only, as when inotify
    /// is unavailable).
    pub notify: bool,
    /// When the source was built, before the agent reported itself started
    /// (nanoseconds since the epoch): with `read_from = "end"`, a file born
    /// after this is new even if the first scan is what finds it.
    pub started_nanos: u128,
}

/// The file was born after `since` (nanoseconds since the epoch); without a
/// birth time, it was modified after it.
fn born_after(birth: Option<u128>, meta: &std::fs::Metadata, since: u128) -> bool {
    let modified = || {
        meta.modified()
            .ok()
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
    };
    birth.or_else(modified).is_some_and(|t| t >= since)
}

/// Now, in nanoseconds since the epoch.
pub(crate) fn unix_nanos_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// An acknowledgement coming back from the sinks.
#[derive(Debug)]
pub(crate) struct AckMsg {
    slot: u64,
    epoch: u32,
    seq: u64,
    status: DeliveryStatus,
}

/// Paths reported by file-system notifications since the last round.
#[derive(Default)]
pub(crate) struct Dirty {
    pub paths: HashSet<PathBuf>,
    pub rescan: bool,
}

/// Counters, logged at shutdown.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stats {
    pub lines: u64,
    pub bytes: u64,
    pub truncated_lines: u64,
    pub errored_batches: u64,
    pub rejected_batches: u64,
    pub files_discovered: u64,
    pub rotations: u64,
    pub truncations: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    /// Known under a path matching the globs.
    Active,
    /// No longer found under any matching path (renamed away, or a symlink
    /// moved): read through the open handle until it has been quiet at its
    /// end for a grace period.
    Orphan { since: Instant },
    /// Deleted (no links left): read to its end, then released.
    Deleted,
    /// Not read any more; kept only until its batches are acknowledged.
    Retired { deleted: bool },
}

struct PendingBatch {
    seq: u64,
    end: u64,
    end_mid: MidLine,
    status: Option<DeliveryStatus>,
}

struct Tracked {
    slot: u64,
    key: FileKey,
    birth: Option<u128>,
    generation: u32,
    id: Arc<str>,
    path: Arc<Path>,
    path_str: Arc<str>,
    /// What every line of this file carries (path, name and file id, those
    /// chosen), held once and shared by the events.
    attributes: Arc<[Attribute]>,
    chosen: LineAttributes,
    /// The events' origin: the source's name, this path and id, shared too.
    origin: Arc<Origin>,
    /// The canonical target when `path` is a symlink.
    target: Option<PathBuf>,
    file: Option<File>,
    /// Size of the file at `path` when a scan last looked (for closed handles).
    path_size: u64,
    /// Modification time when last read (a change with an unchanged size
    /// means the file may have been truncated and rewritten).
    mtime: Option<SystemTime>,
    head: Head,
    reader: LineReader,
    agg: Option<Aggregator>,
    life: Life,
    last_growth: Instant,
    last_used: Instant,
    dirty: bool,
    more: bool,
    seen: bool,
    // Acknowledgements.
    epoch: u32,
    next_seq: u64,
    pending: VecDeque<PendingBatch>,
    committed: u64,
    committed_mid: MidLine,
    /// An errored batch holds the checkpoint back until restart.
    stuck: bool,
    /// Labels of this file's `checkpoint_lag_bytes` gauge, once set.
    lag_labels: Option<FileLabels>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(labels) = self.lag_labels.take() {
            metrics().checkpoint_lag_bytes.remove(&labels);
        }
    }
}

impl Tracked {
    fn entry(&self, seen: u64) -> Entry {
        Entry {
            dev: self.key.dev,
            ino: self.key.ino,
            id: self.id.to_string(),
            generation: self.generation,
            head_len: self.head.len,
            head_crc: self.head.crc,
            offset: self.committed,
            mid_line: self.committed_mid,
            path: self.path.to_path_buf(),
            seen,
        }
    }

    fn set_path(&mut self, path: &Path) {
        self.path = Arc::from(path);
        self.path_str = Arc::from(path.to_string_lossy().as_ref());
        self.share_attributes();
    }

    /// Makes the attributes and origin the file's lines share anew, after
    /// its path or id changed.
    fn share_attributes(&mut self) {
        self.origin = Arc::new(Origin {
            source: Arc::clone(&self.origin.source),
            path: Some(Arc::clone(&self.path)),
            file_id: Some(Arc::clone(&self.id)),
        });
        self.attributes = file_attributes(&self.path, &self.path_str, &self.id, self.chosen);
    }

    /// Publishes how far reading is ahead of the acknowledged checkpoint.
    fn update_lag(&mut self, s: &Settings) {
        let m = metrics();
        if self
            .lag_labels
            .as_ref()
            .is_none_or(|l| *l.path != *self.path_str)
        {
            if let Some(old) = self.lag_labels.take() {
                m.checkpoint_lag_bytes.remove(&old);
            }
            self.lag_labels = Some(FileLabels {
                component: s.labels.component.clone(),
                path: self.path_str.to_string(),
            });
        }
        let lag = self.reader.offset().saturating_sub(self.committed);
        if let Some(labels) = &self.lag_labels {
            m.checkpoint_lag_bytes
                .get_or_create(labels)
                .set(i64::try_from(lag).unwrap_or(i64::MAX));
        }
    }

    fn timer(&self, s: &Settings) -> Option<Instant> {
        if matches!(self.life, Life::Retired { .. }) {
            return None;
        }
        let mut t: Option<Instant> = None;
        let mut consider = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        if self.reader.has_partial() {
            consider(self.last_growth + s.trailing_line_timeout);
        }
        if let Some(d) = self.agg.as_ref().and_then(Aggregator::deadline) {
            consider(d);
        }
        if let Life::Orphan { since } = self.life {
            consider(since.max(self.last_growth) + orphan_grace(s));
        }
        t
    }
}

/// What [`Tailer::insert_tracked`] needs to start tracking a file.
struct NewTracked<'a> {
    key: FileKey,
    birth: Option<u128>,
    generation: u32,
    id: String,
    path: &'a Path,
    file: File,
    size: u64,
    head: Head,
    offset: u64,
    mid: MidLine,
    life: Life,
}

fn orphan_grace(s: &Settings) -> Duration {
    s.poll_interval.max(s.trailing_line_timeout)
}

/// What one round produced.
pub(crate) struct RoundOutput {
    pub batches: Vec<EventBatch>,
    /// Some file has more to read right away.
    pub more: bool,
}

/// One read asks for at most this much (a round reads up to
/// `read_batch_bytes` per file, in reads of this size).
const MAX_READ_BYTES: usize = 256 * 1024;

pub(crate) struct Tailer {
    s: Settings,
    files: HashMap<u64, Tracked>,
    by_key: HashMap<FileKey, u64>,
    by_path: HashMap<PathBuf, u64>,
    by_target: HashMap<PathBuf, u64>,
    known: HashMap<FileKey, Entry>,
    next_slot: u64,
    open: usize,
    ack_tx: UnboundedSender<AckMsg>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    watch_warned: bool,
    dirty: Arc<Mutex<Dirty>>,
    initial: bool,
    last_scan: Option<Instant>,
    cursor: u64,
    pub(crate) checkpoint_changed: bool,
    /// The last checkpoint write failed (reported to health).
    pub(crate) checkpoint_failing: bool,
    pub(crate) stats: Stats,
}

impl Tailer {
    pub(crate) fn new(
        s: Settings,
        entries: Vec<Entry>,
        ack_tx: UnboundedSender<AckMsg>,
        watcher: Option<notify::RecommendedWatcher>,
        dirty: Arc<Mutex<Dirty>>,
    ) -> Self {
        let known = entries
            .into_iter()
            .map(|e| {
                (
                    FileKey {
                        dev: e.dev,
                        ino: e.ino,
                    },
                    e,
                )
            })
            .collect();
        Self {
            s,
            files: HashMap::new(),
            by_key: HashMap::new(),
            by_path: HashMap::new(),
            by_target: HashMap::new(),
            known,
            next_slot: 0,
            open: 0,
            ack_tx,
            watcher,
            watched: HashSet::new(),
            watch_warned: false,
            dirty,
            initial: true,
            last_scan: None,
            cursor: 0,
            checkpoint_changed: false,
            checkpoint_failing: false,
            stats: Stats::default(),
        }
    }

    pub(crate) fn labels(&self) -> &ComponentLabels {
        &self.s.labels
    }

    /// Batches sent but not yet acknowledged.
    pub(crate) fn pending_batches(&self) -> usize {
        self.files.values().map(|t| t.pending.len()).sum()
    }

    /// When the next round is due even without a notification.
    pub(crate) fn next_deadline(&self) -> Instant {
        let mut next = self
            .last_scan
            .map_or_else(Instant::now, |t| t + self.s.poll_interval);
        for t in self.files.values() {
            if let Some(x) = t.timer(&self.s) {
                next = next.min(x);
            }
        }
        next
    }

    // ----- acknowledgements -------------------------------------------

    pub(crate) fn on_ack(&mut self, msg: AckMsg) {
        let Some(t) = self.files.get_mut(&msg.slot) else {
            return;
        };
        if t.epoch != msg.epoch {
            return;
        }
        let Some(front) = t.pending.front() else {
            return;
        };
        let Some(batch) = msg
            .seq
            .checked_sub(front.seq)
            .and_then(|i| t.pending.get_mut(i as usize))
        else {
            return;
        };
        batch.status = Some(msg.status);
        while let Some(PendingBatch {
            status: Some(status),
            ..
        }) = t.pending.front()
        {
            let status = *status;
            let b = t.pending.pop_front().expect("front exists");
            match status {
                DeliveryStatus::Delivered | DeliveryStatus::Rejected => {
                    if status == DeliveryStatus::Rejected {
                        self.stats.rejected_batches += 1;
                        tracing::warn!(source = %self.s.name, path = %t.path.display(),
                            rejected_batches = self.stats.rejected_batches,
                            "a sink rejected a batch permanently; moving past it");
                    }
                    if !t.stuck {
                        t.committed = b.end;
                        t.committed_mid = b.end_mid;
                        self.checkpoint_changed = true;
                    }
                }
                DeliveryStatus::Errored => {
                    self.stats.errored_batches += 1;
                    if !t.stuck {
                        tracing::warn!(source = %self.s.name, path = %t.path.display(),
                            offset = t.committed, errored_batches = self.stats.errored_batches,
                            "a batch failed delivery; the checkpoint of this file stays before it and it will be read again after a restart");
                    }
                    t.stuck = true;
                }
            }
        }
        t.update_lag(&self.s);
        if matches!(t.life, Life::Retired { .. }) && t.pending.is_empty() {
            let slot = msg.slot;
            self.forget_retired(slot);
        }
    }

    fn forget_retired(&mut self, slot: u64) {
        if let Some(t) = self.files.remove(&slot)
            && t.life == (Life::Retired { deleted: false })
        {
            self.known.insert(t.key, t.entry(checkpoint::unix_now()));
            self.checkpoint_changed = true;
        }
    }

    /// All checkpoint entries to persist.
    pub(crate) fn checkpoint_entries(&self) -> Vec<Entry> {
        let now = checkpoint::unix_now();
        let mut out: Vec<Entry> = self
            .files
            .values()
            .filter(|t| !matches!(t.life, Life::Deleted | Life::Retired { deleted: true }))
            .map(|t| t.entry(now))
            .collect();
        out.extend(self.known.values().cloned());
        out.sort_by_key(|e| (e.dev, e.ino));
        out
    }

    // ----- rounds ------------------------------------------------------

    pub(crate) fn round(&mut self, now: Instant) -> RoundOutput {
        let (paths, rescan) = {
            let mut d = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
            (std::mem::take(&mut d.paths), std::mem::take(&mut d.rescan))
        };
        let full = self
            .last_scan
            .is_none_or(|t| now.duration_since(t) >= self.s.poll_interval);
        if rescan {
            // Notifications were lost (queue overflow): look at every file
            // now; new files wait for the next walk (at most poll_interval).
            for t in self.files.values_mut() {
                t.dirty = true;
            }
        }
        if full {
            self.scan(now);
        } else {
            for p in paths {
                if let Some(&slot) = self.by_target.get(&p)
                    && let Some(t) = self.files.get_mut(&slot)
                {
                    t.dirty = true;
                }
                if self.by_path.contains_key(&p) || self.s.matcher.matches(&p) {
                    self.check_path(&p, now);
                }
            }
        }

        // Which files to look at this round, fairly ordered.
        let mut slots: Vec<u64> = self
            .files
            .values()
            .filter(|t| !matches!(t.life, Life::Retired { .. }))
            .filter(|t| {
                full || t.dirty
                    || t.more
                    || t.life != Life::Active
                    || t.timer(&self.s).is_some_and(|d| d <= now)
            })
            .map(|t| t.slot)
            .collect();
        slots.sort_unstable();
        let split = slots.partition_point(|&s| s < self.cursor);
        slots.rotate_left(split);

        let mut out = RoundOutput {
            batches: Vec::new(),
            more: false,
        };
        let mut budget = ROUND_BYTES.max(self.s.read_batch_bytes);
        let mut finished = Vec::new();
        for slot in slots {
            if budget == 0 {
                // Not reached this round: keep it flagged for the next one.
                if let Some(t) = self.files.get_mut(&slot) {
                    t.more = true;
                }
                out.more = true;
                continue;
            }
            self.cursor = slot + 1;
            let (batch, used, done) = self.read_one(slot, now, budget);
            budget -= used.min(budget);
            if let Some(t) = self.files.get_mut(&slot) {
                t.update_lag(&self.s);
            }
            if let Some(batch) = batch {
                out.batches.push(batch);
            }
            if done {
                finished.push(slot);
            }
            if self.files.get(&slot).is_some_and(|t| t.more) {
                out.more = true;
            }
        }
        for slot in finished {
            self.retire(slot);
        }
        if full {
            self.update_watches();
        }
        self.enforce_open_limit(None);
        metrics()
            .open_files
            .get_or_create(&self.s.labels)
            .set(self.open as i64);
        out
    }

    /// Takes this source's gauges down (it is stopping).
    pub(crate) fn clear_metrics(&mut self) {
        for t in self.files.values_mut() {
            if let Some(labels) = t.lag_labels.take() {
                metrics().checkpoint_lag_bytes.remove(&labels);
            }
        }
        metrics().open_files.remove(&self.s.labels);
    }

    /// Walks the globs and reconciles what was found with what is tracked.
    fn scan(&mut self, now: Instant) {
        let paths = self.s.matcher.scan();
        for t in self.files.values_mut() {
            t.seen = false;
        }
        for path in &paths {
            self.check_path(path, now);
        }
        // Tracked files whose path no longer shows them.
        let unseen: Vec<u64> = self
            .files
            .values()
            .filter(|t| t.life == Life::Active && !t.seen)
            .map(|t| t.slot)
            .collect();
        for slot in unseen {
            self.lose_path(slot, now);
        }
        // Forget checkpoints of files long gone.
        let unix = checkpoint::unix_now();
        let before = self.known.len();
        self.known
            .retain(|_, e| unix.saturating_sub(e.seen) < FORGET_AFTER_SECS);
        if self.known.len() != before {
            self.checkpoint_changed = true;
        }
        if self.initial {
            self.recover_rotated(now);
        }
        self.initial = false;
        self.last_scan = Some(now);
    }

    /// A tracked file is no longer found at its path.
    fn lose_path(&mut self, slot: u64, now: Instant) {
        let Some(t) = self.files.get_mut(&slot) else {
            return;
        };
        if self.by_path.get(&*t.path) == Some(&slot) {
            self.by_path.remove(&*t.path);
        }
        if t.life != Life::Active {
            return;
        }
        if let Some(target) = t.target.take()
            && self.by_target.get(&target) == Some(&slot)
        {
            self.by_target.remove(&target);
        }
        let Some(file) = &t.file else {
            // The handle was closed for `max_open_files`: a rotated file
            // usually stays in its directory, so look for it by inode.
            let (key, head, old) = (t.key, t.head, Arc::clone(&t.path));
            let found = old
                .parent()
                .and_then(|dir| find_by_inode(dir, key))
                .and_then(|p| File::open(&p).ok().map(|f| (p, f)))
                .filter(|(_, f)| {
                    f.metadata().is_ok_and(|m| FileKey::of(&m) == key)
                        && matches!(
                            fingerprint::check_head(f, head, 0, 0),
                            Ok(HeadCheck::Same(_))
                        )
                });
            match found {
                Some((path, file)) => {
                    tracing::info!(source = %self.s.name, path = %old.display(),
                        now_at = %path.display(), "file rotated away; reading it to its end");
                    self.stats.rotations += 1;
                    self.make_room(Some(slot));
                    let t = self.files.get_mut(&slot).expect("exists");
                    t.file = Some(file);
                    t.set_path(&path);
                    t.life = Life::Orphan { since: now };
                    t.dirty = true;
                    self.open += 1;
                }
                None => {
                    tracing::debug!(source = %self.s.name, path = %old.display(),
                        "file gone while its handle was closed; forgetting it");
                    self.retire(slot);
                }
            }
            return;
        };
        let deleted = file.metadata().map(|m| m.nlink() == 0).unwrap_or(true);
        if deleted {
            tracing::debug!(source = %self.s.name, path = %t.path.display(),
                "file deleted; reading it to its end before releasing it");
            t.life = Life::Deleted;
        } else {
            tracing::info!(source = %self.s.name, path = %t.path.display(),
                "file rotated away; reading it to its end");
            self.stats.rotations += 1;
            t.life = Life::Orphan { since: now };
        }
        t.dirty = true;
    }

    /// Looks at one path that matches the globs (or used to).
    fn check_path(&mut self, path: &Path, now: Instant) {
        let Ok(meta) = fs::metadata(path) else {
            // Gone (deleted, renamed, or a dangling symlink): the tracked
            // file is read on through its handle.
            if let Some(slot) = self.by_path.get(path).copied() {
                self.lose_path(slot, now);
            }
            return;
        };
        if !meta.is_file() {
            return;
        }
        let key = FileKey::of(&meta);
        if let Some(&slot) = self.by_key.get(&key) {
            let previous = self.by_path.get(path).copied();
            let t = self.files.get_mut(&slot).expect("indexed");
            t.seen = true;
            t.dirty = true;
            t.path_size = meta.len();
            if *t.path != *path {
                let old_still_there = self.by_path.get(&*t.path) == Some(&slot)
                    && fs::metadata(&t.path).is_ok_and(|m| FileKey::of(&m) == key);
                if old_still_there {
                    // A second name (hard link, symlink) for a tracked file.
                    return;
                }
                tracing::debug!(source = %self.s.name, from = %t.path.display(),
                    to = %path.display(), "file renamed");
                if self.by_path.get(&*t.path) == Some(&slot) {
                    self.by_path.remove(&*t.path);
                }
                t.set_path(path);
                self.set_target(slot, path);
            }
            let t = self.files.get_mut(&slot).expect("indexed");
            if matches!(t.life, Life::Orphan { .. }) {
                t.life = Life::Active;
            }
            if let Some(prev) = previous
                && prev != slot
            {
                self.by_path.remove(path);
                self.lose_path(prev, now);
            }
            self.by_path.insert(path.to_path_buf(), slot);
            return;
        }

        // A file not tracked yet. If the path showed another file before,
        // that one was rotated away.
        if let Some(prev) = self.by_path.get(path).copied() {
            self.lose_path(prev, now);
        }
        let checkpoint = self.take_checkpoint(key, path);
        if checkpoint.is_none()
            && let Some(max_age) = self.s.ignore_older
        {
            let old = meta
                .modified()
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age > max_age);
            if old {
                return;
            }
        }
        self.make_room(None);
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) => {
                if let Some(entry) = checkpoint {
                    self.known.insert(key, entry);
                }
                tracing::debug!(source = %self.s.name, path = %path.display(), error = %e,
                    "cannot open file yet");
                return;
            }
        };
        let Ok(fmeta) = file.metadata() else { return };
        if FileKey::of(&fmeta) != key {
            // Replaced between stat and open: look again next round.
            if let Some(entry) = checkpoint {
                self.known.insert(key, entry);
            }
            return;
        }
        let size = fmeta.len();
        let limit = self.s.fingerprint_bytes;
        let birth = fingerprint::birth_nanos(&fmeta);
        let (offset, mid, head, generation, id) = match checkpoint {
            Some(e) => {
                let recorded = Head {
                    len: e.head_len,
                    crc: e.head_crc,
                };
                match fingerprint::resume(&file, size, recorded, e.offset, limit) {
                    Ok(Resume::At(head)) => {
                        tracing::debug!(source = %self.s.name, path = %path.display(),
                            offset = e.offset, "resuming file from checkpoint");
                        (e.offset, e.mid_line, head, e.generation, e.id)
                    }
                    Ok(Resume::Truncated) => {
                        self.stats.truncations += 1;
                        tracing::info!(source = %self.s.name, path = %path.display(),
                            "file shrank below its checkpoint (truncated); reading from the start");
                        let generation = e.generation + 1;
                        (
                            0,
                            MidLine::None,
                            Head::default(),
                            generation,
                            fingerprint::file_id(key, birth, generation),
                        )
                    }
                    Ok(Resume::NewFile) | Err(_) => {
                        tracing::info!(source = %self.s.name, path = %path.display(),
                            "device and inode match a checkpoint but the content differs (inode reused); reading as a new file");
                        let generation = e.generation + 1;
                        (
                            0,
                            MidLine::None,
                            Head::default(),
                            generation,
                            fingerprint::file_id(key, birth, generation),
                        )
                    }
                }
            }
            // `read_from = "end"` skips what files held before the agent
            // started; a file created since (between the start and the first
            // scan) is read from its beginning like any later one.
            None if self.initial
                && self.s.read_from == ReadFrom::End
                && !born_after(birth, &fmeta, self.s.started_nanos) =>
            {
                let head = match fingerprint::check_head(&file, Head::default(), limit, size) {
                    Ok(HeadCheck::Same(h)) => h,
                    _ => Head::default(),
                };
                let mut last = [0u8; 1];
                let mid =
                    if size > 0 && file.read_at(&mut last, size - 1).is_ok() && last[0] != b'\n' {
                        MidLine::Continue
                    } else {
                        MidLine::None
                    };
                (size, mid, head, 0, fingerprint::file_id(key, birth, 0))
            }
            None => (
                0,
                MidLine::None,
                Head::default(),
                0,
                fingerprint::file_id(key, birth, 0),
            ),
        };
        self.stats.files_discovered += 1;
        tracing::debug!(source = %self.s.name, path = %path.display(), offset, id = %id,
            "file discovered");
        self.insert_tracked(
            NewTracked {
                key,
                birth,
                generation,
                id,
                path,
                file,
                size,
                head,
                offset,
                mid,
                life: Life::Active,
            },
            now,
        );
    }

    fn insert_tracked(&mut self, n: NewTracked<'_>, now: Instant) {
        let NewTracked {
            key,
            birth,
            generation,
            id,
            path,
            file,
            size,
            head,
            offset,
            mid,
            life,
        } = n;
        let slot = self.next_slot;
        self.next_slot += 1;
        let mut t = Tracked {
            slot,
            key,
            birth,
            generation,
            id: Arc::from(id.as_str()),
            path: Arc::from(path),
            path_str: Arc::from(""),
            attributes: Arc::new([]),
            chosen: self.s.attributes,
            origin: Arc::new(Origin {
                source: Arc::clone(&self.s.name),
                ..Origin::default()
            }),
            target: None,
            file: Some(file),
            path_size: size,
            mtime: None,
            head,
            reader: LineReader::new(offset, mid, self.s.max_line_bytes),
            agg: self
                .s
                .multiline
                .clone()
                .map(|r| Aggregator::new(r, self.s.max_line_bytes)),
            life,
            last_growth: now,
            last_used: now,
            dirty: true,
            more: false,
            seen: true,
            epoch: 0,
            next_seq: 0,
            pending: VecDeque::new(),
            committed: offset,
            committed_mid: mid,
            stuck: false,
            lag_labels: None,
        };
        t.set_path(path);
        self.open += 1;
        self.files.insert(slot, t);
        self.by_key.insert(key, slot);
        if life == Life::Active {
            self.by_path.insert(path.to_path_buf(), slot);
            self.set_target(slot, path);
        }
        self.checkpoint_changed = true;
    }

    /// After the first scan: checkpointed files no glob matches any more may
    /// have been renamed away (rotated) while the agent was stopped, with
    /// lines not yet read or acknowledged. Look for them by inode in the
    /// directory they were last seen in, and read them to their end.
    fn recover_rotated(&mut self, now: Instant) {
        use std::os::unix::fs::DirEntryExt;
        let mut by_dir: HashMap<PathBuf, Vec<FileKey>> = HashMap::new();
        for (key, e) in &self.known {
            if let Some(dir) = e.path.parent() {
                by_dir.entry(dir.to_path_buf()).or_default().push(*key);
            }
        }
        for (dir, keys) in by_dir {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for de in entries.flatten() {
                let ino = de.ino();
                if let Some(key) = keys.iter().find(|k| k.ino == ino).copied() {
                    self.adopt_rotated(key, &de.path(), now);
                }
            }
        }
    }

    fn adopt_rotated(&mut self, key: FileKey, path: &Path, now: Instant) {
        let Ok(file) = File::open(path) else { return };
        let Ok(meta) = file.metadata() else { return };
        if FileKey::of(&meta) != key || !meta.is_file() || self.by_key.contains_key(&key) {
            return;
        }
        let Some(e) = self.known.remove(&key) else {
            return;
        };
        let size = meta.len();
        let recorded = Head {
            len: e.head_len,
            crc: e.head_crc,
        };
        match fingerprint::resume(&file, size, recorded, e.offset, self.s.fingerprint_bytes) {
            Ok(Resume::At(head)) if size > e.offset => {
                tracing::info!(source = %self.s.name, path = %path.display(), was = %e.path.display(),
                    offset = e.offset, "found a file rotated while stopped; reading it to its end");
                self.stats.rotations += 1;
                self.make_room(None);
                self.insert_tracked(
                    NewTracked {
                        key,
                        birth: fingerprint::birth_nanos(&meta),
                        generation: e.generation,
                        id: e.id,
                        path,
                        file,
                        size,
                        head,
                        offset: e.offset,
                        mid: e.mid_line,
                        life: Life::Orphan { since: now },
                    },
                    now,
                );
            }
            _ => {
                self.known.insert(key, e);
            }
        }
    }

    fn set_target(&mut self, slot: u64, path: &Path) {
        let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        let target = if is_link {
            fs::canonicalize(path).ok()
        } else {
            None
        };
        let Some(t) = self.files.get_mut(&slot) else {
            return;
        };
        if let Some(old) = t.target.take()
            && self.by_target.get(&old) == Some(&slot)
        {
            self.by_target.remove(&old);
        }
        if let Some(target) = &target {
            self.by_target.insert(target.clone(), slot);
        }
        t.target = target;
    }

    fn take_checkpoint(&mut self, key: FileKey, path: &Path) -> Option<Entry> {
        if let Some(e) = self.known.remove(&key) {
            return Some(e);
        }
        // The device number can change between boots or remounts (overlay,
        // LVM): the same inode under the same path still counts, if the
        // first bytes agree (checked by the caller like any checkpoint).
        if let Some(old) = self
            .known
            .iter()
            .find(|(k, e)| k.ino == key.ino && e.path == path)
            .map(|(k, _)| *k)
        {
            let mut e = self.known.remove(&old)?;
            tracing::debug!(source = %self.s.name, path = %path.display(),
                old_dev = old.dev, new_dev = key.dev, "device number changed; using checkpoint");
            e.dev = key.dev;
            return Some(e);
        }
        // A retired file coming back before its last acknowledgements.
        let slot = self
            .files
            .values()
            .find(|t| t.key == key && t.life == (Life::Retired { deleted: false }))
            .map(|t| t.slot)?;
        let t = self.files.remove(&slot)?;
        Some(t.entry(checkpoint::unix_now()))
    }

    /// Reads from one file. Returns its batch, the bytes read, and whether
    /// the file is finished (to be retired).
    fn read_one(
        &mut self,
        slot: u64,
        now: Instant,
        budget: usize,
    ) -> (Option<EventBatch>, usize, bool) {
        let limit = self.s.fingerprint_bytes;
        let batch_bytes = self.s.read_batch_bytes.min(budget);
        let mut lines = Vec::new();
        let mut used = 0;
        let mut done = false;

        // Make sure there is a handle, if there is anything to read.
        let needs_handle = {
            let t = &self.files[&slot];
            t.file.is_none() && t.life == Life::Active && t.path_size != t.reader.offset()
        };
        if needs_handle && !self.reopen(slot) {
            return (None, 0, false);
        }
        let t = self.files.get_mut(&slot).expect("slot exists");
        t.dirty = false;
        t.more = false;
        if let Some(file) = &t.file {
            t.last_used = now;
            match file.metadata() {
                Ok(meta) => {
                    let size = meta.len();
                    if meta.nlink() == 0 && t.life == Life::Active {
                        t.life = Life::Deleted;
                    }
                    let mut reset = None;
                    let mtime = meta.modified().ok();
                    let touched = mtime != t.mtime;
                    t.mtime = mtime;
                    if size < t.reader.offset() {
                        reset = Some("file truncated (copytruncate?)");
                    } else if size != t.reader.offset()
                        || touched
                        || u64::from(t.head.len) < (limit as u64).min(size)
                    {
                        match fingerprint::check_head(file, t.head, limit, size) {
                            Ok(HeadCheck::Same(h)) => t.head = h,
                            Ok(HeadCheck::Different) => {
                                reset = Some("file rewritten (first bytes changed)")
                            }
                            Err(_) => {}
                        }
                    }
                    if let Some(reason) = reset {
                        self.stats.truncations += 1;
                        tracing::info!(source = %self.s.name, path = %t.path.display(), reason,
                            "reading file from the start");
                        reset_file(t, &self.s);
                    }
                    // Read up to this file's share.
                    let file = t.file.as_ref().expect("open");
                    let mut remaining = size.saturating_sub(t.reader.offset());
                    while used < batch_bytes {
                        // Each read gets its own buffer, which the lines read
                        // whole from it share (see `LineReader::feed_shared`),
                        // sized to what the file holds: a trickle must not pin
                        // a large buffer per line in flight. A page at least,
                        // for files that do not report their size.
                        let want = (batch_bytes - used)
                            .min(MAX_READ_BYTES)
                            .min(remaining.max(4096) as usize);
                        let mut chunk = BytesMut::zeroed(want);
                        match file.read_at(&mut chunk, t.reader.offset()) {
                            Ok(0) => break,
                            Ok(n) => {
                                used += n;
                                remaining = remaining.saturating_sub(n as u64);
                                chunk.truncate(n);
                                t.reader.feed_shared(&chunk.freeze(), &mut lines);
                            }
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                tracing::warn!(source = %self.s.name, path = %t.path.display(),
                                    error = %e, "read failed; will retry");
                                break;
                            }
                        }
                    }
                    if used > 0 {
                        t.last_growth = now;
                        self.stats.bytes += used as u64;
                    }
                    // The head must cover what was read (up to the limit),
                    // also right after a reset, so that a checkpoint can
                    // always be verified against the file's first bytes.
                    if (t.head.len as usize) < limit
                        && t.reader.offset() > u64::from(t.head.len)
                        && let Ok(HeadCheck::Same(h)) =
                            fingerprint::check_head(file, t.head, limit, t.reader.offset())
                    {
                        t.head = h;
                    }
                    t.more = used >= batch_bytes;
                }
                Err(e) => {
                    tracing::warn!(source = %self.s.name, path = %t.path.display(), error = %e,
                        "cannot stat open file");
                }
            }
        }

        // Decide whether the held tail is final.
        let at_end = !t.more && used == 0;
        let finishing = at_end
            && match t.life {
                Life::Deleted => true,
                Life::Orphan { since } => {
                    now.duration_since(since.max(t.last_growth)) >= orphan_grace(&self.s)
                }
                _ => false,
            };
        if finishing
            || (at_end
                && t.reader.has_partial()
                && now.duration_since(t.last_growth) >= self.s.trailing_line_timeout)
        {
            t.reader.flush_partial(&mut lines);
        }
        let events = match &mut t.agg {
            None => lines,
            Some(agg) => {
                let mut events = Vec::with_capacity(lines.len());
                for line in lines {
                    agg.push(line, now, &mut events);
                }
                if finishing {
                    agg.flush(&mut events);
                } else {
                    agg.flush_idle(now, &mut events);
                }
                events
            }
        };
        if finishing {
            done = true;
        }
        let batch = if events.is_empty() {
            None
        } else {
            Some(make_batch(
                &self.s,
                &self.ack_tx,
                &mut self.stats,
                t,
                events,
            ))
        };
        (batch, used, done)
    }

    /// Reopens a closed handle by path, checking it is still the same file.
    fn reopen(&mut self, slot: u64) -> bool {
        self.make_room(Some(slot));
        let t = self.files.get_mut(&slot).expect("slot exists");
        let file = match File::open(&*t.path) {
            Ok(f) => f,
            Err(_) => return false,
        };
        let Ok(meta) = file.metadata() else {
            return false;
        };
        if FileKey::of(&meta) != t.key {
            // The path shows another file now; the scan sorts it out.
            t.path_size = t.reader.offset();
            return false;
        }
        let size = meta.len();
        match fingerprint::check_head(&file, t.head, self.s.fingerprint_bytes, size) {
            Ok(HeadCheck::Same(h)) => t.head = h,
            _ => {
                self.stats.truncations += 1;
                tracing::info!(source = %self.s.name, path = %t.path.display(),
                    "reopened file has different content (inode reused or rewritten); reading from the start");
                reset_file(t, &self.s);
            }
        }
        tracing::debug!(source = %self.s.name, path = %t.path.display(), "file reopened");
        t.file = Some(file);
        self.open += 1;
        true
    }

    /// Closes idle handles until there is room for one more.
    fn make_room(&mut self, keep: Option<u64>) {
        while self.open >= self.s.max_open_files {
            if !self.close_one(keep) {
                break;
            }
        }
    }

    fn enforce_open_limit(&mut self, keep: Option<u64>) {
        while self.open > self.s.max_open_files {
            if !self.close_one(keep) {
                break;
            }
        }
    }

    /// Closes the handle of the active file idle longest (preferring files
    /// with nothing left to read). Handles of rotated or deleted files are
    /// never closed: they could not be reopened.
    fn close_one(&mut self, keep: Option<u64>) -> bool {
        let victim = self
            .files
            .values()
            .filter(|t| t.file.is_some() && t.life == Life::Active && Some(t.slot) != keep)
            .min_by_key(|t| (t.more || t.dirty, t.last_used))
            .map(|t| t.slot);
        let Some(slot) = victim else {
            return false;
        };
        let t = self.files.get_mut(&slot).expect("exists");
        t.file = None;
        t.path_size = t.path_size.max(t.reader.offset());
        self.open -= 1;
        true
    }

    fn retire(&mut self, slot: u64) {
        let Some(t) = self.files.get_mut(&slot) else {
            return;
        };
        if t.file.take().is_some() {
            self.open -= 1;
        }
        if self.by_key.get(&t.key) == Some(&slot) {
            self.by_key.remove(&t.key);
        }
        if self.by_path.get(&*t.path) == Some(&slot) {
            self.by_path.remove(&*t.path);
        }
        if let Some(target) = t.target.take()
            && self.by_target.get(&target) == Some(&slot)
        {
            self.by_target.remove(&target);
        }
        let deleted = t.life == Life::Deleted;
        tracing::debug!(source = %self.s.name, path = %t.path.display(), deleted,
            "finished with file");
        t.life = Life::Retired { deleted };
        self.checkpoint_changed = true;
        // A deleted file has no checkpoint to advance: forget it at once.
        if deleted || t.pending.is_empty() {
            self.forget_retired(slot);
        }
    }

    /// Watches the directories of the globs and of the files being read.
    /// Failures (e.g. inotify watch exhaustion) leave polling in charge.
    fn update_watches(&mut self) {
        let Some(watcher) = &mut self.watcher else {
            return;
        };
        let mut want: BTreeSet<PathBuf> =
            self.s.matcher.base_dirs().map(Path::to_path_buf).collect();
        for t in self.files.values() {
            if matches!(t.life, Life::Retired { .. }) {
                continue;
            }
            if let Some(p) = t.path.parent() {
                want.insert(p.to_path_buf());
            }
            if let Some(p) = t.target.as_ref().and_then(|t| t.parent()) {
                want.insert(p.to_path_buf());
            }
        }
        let stale: Vec<PathBuf> = self
            .watched
            .iter()
            .filter(|p| !want.contains(*p))
            .cloned()
            .collect();
        for p in stale {
            let _ = watcher.unwatch(&p);
            self.watched.remove(&p);
        }
        for dir in want {
            if self.watched.contains(&dir) || !dir.is_dir() {
                continue;
            }
            match watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(dir);
                }
                Err(e) => {
                    if !self.watch_warned {
                        self.watch_warned = true;
                        tracing::warn!(source = %self.s.name, dir = %dir.display(), error = %e,
                            "cannot watch directory for changes (inotify limit?); falling back to polling every poll_interval for what is not watched");
                    }
                    // Try again on a later scan; give up on this round.
                    break;
                }
            }
        }
    }
}

/// The path of the entry of `dir` with `key`'s inode and device, if any.
fn find_by_inode(dir: &Path, key: FileKey) -> Option<PathBuf> {
    use std::os::unix::fs::DirEntryExt;
    fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|de| de.ino() == key.ino)
        .map(|de| de.path())
        .find(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_file() && FileKey::of(&m) == key))
}

/// Forgets all progress of a file whose content was replaced in place.
fn reset_file(t: &mut Tracked, s: &Settings) {
    t.epoch += 1;
    t.generation += 1;
    t.id = Arc::from(fingerprint::file_id(t.key, t.birth, t.generation).as_str());
    t.share_attributes();
    t.head = Head::default();
    t.reader = LineReader::new(0, MidLine::None, s.max_line_bytes);
    t.agg = s
        .multiline
        .clone()
        .map(|r| Aggregator::new(r, s.max_line_bytes));
    t.pending.clear();
    t.next_seq = 0;
    t.committed = 0;
    t.committed_mid = MidLine::None;
    t.stuck = false;
}

fn make_batch(
    s: &Settings,
    ack_tx: &UnboundedSender<AckMsg>,
    stats: &mut Stats,
    t: &mut Tracked,
    events: Vec<Line>,
) -> EventBatch {
    let last = events.last().expect("non-empty");
    let seq = t.next_seq;
    t.next_seq += 1;
    t.pending.push_back(PendingBatch {
        seq,
        end: last.end,
        end_mid: last.end_mid,
        status: None,
    });
    let tx = ack_tx.clone();
    let (slot, epoch) = (t.slot, t.epoch);
    let mut ack = Some(AckRef::new(move |status| {
        let _ = tx.send(AckMsg {
            slot,
            epoch,
            seq,
            status,
        });
    }));
    let n = events.len();
    let mut batch = Vec::with_capacity(n);
    // The lines of a batch were read together.
    let observed_at = SystemTime::now();
    for (i, line) in events.into_iter().enumerate() {
        stats.lines += 1;
        let mut ev = Event::observed(
            line.body,
            Arc::clone(&t.origin),
            Arc::clone(&s.context),
            observed_at,
        );
        ev.attributes = Attributes::with_shared(Arc::clone(&t.attributes));
        if t.chosen.offset {
            ev.attributes
                .insert(FileAttribute::Offset.key(), line.start);
        }
        if line.truncated {
            stats.truncated_lines += 1;
            metrics().truncated_lines.get_or_create(&s.labels).inc();
            ev.attributes.insert("tailguard.truncated", true);
            tracing::debug!(source = %s.name, path = %t.path.display(), offset = line.start,
                truncated_lines = stats.truncated_lines, "line longer than max_line_bytes truncated");
        }
        ev.ack = if i + 1 == n { ack.take() } else { ack.clone() };
        batch.push(ev);
    }
    batch
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::sync::mpsc::UnboundedReceiver;

    #[test]
    fn file_attributes_list_what_was_chosen_in_order() {
        let path = Path::new("/var/log/job.log");
        let path_str: Arc<str> = Arc::from("/var/log/job.log");
        let id: Arc<str> = Arc::from("fe00-1");
        // every subset of the four, in any order
        for bits in 0..16u32 {
            let mut chosen: Vec<FileAttribute> = FileAttribute::ALL
                .into_iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, a)| a)
                .collect();
            chosen.reverse();
            let which = LineAttributes::of(&chosen);
            assert_eq!(which.offset, chosen.contains(&FileAttribute::Offset));
            let list = file_attributes(path, &path_str, &id, which);
            let got: Vec<(&str, String)> =
                list.iter().map(|(k, v)| (&**k, v.to_string())).collect();
            let want: Vec<(&str, String)> = [
                (FileAttribute::Path, "/var/log/job.log"),
                (FileAttribute::Name, "job.log"),
                (FileAttribute::Id, "fe00-1"),
            ]
            .into_iter()
            .filter(|(a, _)| chosen.contains(a))
            .map(|(a, v)| (a.key(), v.to_string()))
            .collect();
            assert_eq!(got, want, "{chosen:?}");
        }
    }

    pub(crate) fn settings(dir: &Path, max_open_files: usize) -> Settings {
        Settings {
            name: Arc::from("t"),
            labels: crate::observe::metrics::component("sources.t"),
            context: Arc::default(),
            matcher: Matcher::new(&[format!("{}/**/*.log", dir.display())], &[]).unwrap(),
            read_from: ReadFrom::Beginning,
            ignore_older: None,
            max_line_bytes: 1000,
            poll_interval: Duration::from_millis(1),
            trailing_line_timeout: Duration::from_secs(3600),
            multiline: None,
            max_open_files,
            fingerprint_bytes: 64,
            read_batch_bytes: 1 << 20,
            attributes: LineAttributes::ALL,
            notify: false,
            started_nanos: unix_nanos_now(),
        }
    }

    fn tailer(dir: &Path, max_open_files: usize) -> (Tailer, UnboundedReceiver<AckMsg>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let t = Tailer::new(
            settings(dir, max_open_files),
            Vec::new(),
            tx,
            None,
            Arc::default(),
        );
        (t, rx)
    }

    /// Runs rounds until one reads nothing; returns all line bodies.
    fn drain(
        (t, acks): &mut (Tailer, UnboundedReceiver<AckMsg>),
        clock: &mut Instant,
    ) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            *clock += Duration::from_millis(10);
            let round = t.round(*clock);
            if round.batches.is_empty() && !round.more {
                return out;
            }
            for mut batch in round.batches {
                for ev in &batch {
                    out.push(String::from_utf8(ev.body.to_vec()).unwrap());
                }
                crate::event::settle_all(&mut batch, DeliveryStatus::Delivered);
            }
            while let Ok(msg) = acks.try_recv() {
                t.on_ack(msg);
            }
            assert!(t.open <= t.s.max_open_files, "open {} > limit", t.open);
        }
    }

    /// `read_from = "end"`: a file that was there before the source started
    /// is read from its end, one created after the start from its beginning,
    /// even when the first scan is what finds both.
    #[test]
    fn read_from_end_reads_files_born_after_the_start_from_their_beginning() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("old.log"), "history\n").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let mut s = settings(dir.path(), 8);
        s.read_from = ReadFrom::End;
        s.started_nanos = unix_nanos_now();
        std::thread::sleep(Duration::from_millis(20));
        fs::write(dir.path().join("new.log"), "first line\n").unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut t = (Tailer::new(s, Vec::new(), tx, None, Arc::default()), rx);
        let mut clock = Instant::now();
        assert_eq!(drain(&mut t, &mut clock), vec!["first line"]);
    }

    /// A checkpoint taken under another device number (remount) is used
    /// when inode, path and first bytes agree; one whose first bytes differ
    /// is not.
    #[test]
    fn checkpoint_survives_device_number_change() {
        for (content_same, want) in [(true, vec!["two"]), (false, vec!["ONE", "two"])] {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("a.log");
            fs::write(
                &p,
                if content_same {
                    "one\ntwo\n"
                } else {
                    "ONE\ntwo\n"
                },
            )
            .unwrap();
            let meta = fs::metadata(&p).unwrap();
            let entry = Entry {
                dev: meta.dev() + 1,
                ino: meta.ino(),
                id: "old-id".into(),
                generation: 0,
                head_len: 4,
                head_crc: crc32fast::hash(b"one\n"),
                offset: 4,
                mid_line: MidLine::None,
                path: p.clone(),
                seen: checkpoint::unix_now(),
            };
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let t = Tailer::new(
                settings(dir.path(), 8),
                vec![entry],
                tx,
                None,
                Arc::default(),
            );
            let mut ta = (t, rx);
            let got = drain(&mut ta, &mut Instant::now());
            assert_eq!(got, want);
            let entries = ta.0.checkpoint_entries();
            assert_eq!(entries.len(), 1, "the old entry is replaced");
            assert_eq!(entries[0].dev, meta.dev());
            assert_eq!(entries[0].id == "old-id", content_same);
        }
    }

    /// After a truncation is noticed and the new content read in the same
    /// round, the checkpoint's head covers that content: a restart that
    /// finds the file rewritten again (longer) must not resume mid-file.
    #[test]
    fn head_covers_content_read_right_after_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        fs::write(&p, "aaaa\n".repeat(10)).unwrap();
        let mut ta = tailer(dir.path(), 8);
        let mut clock = Instant::now();
        assert_eq!(drain(&mut ta, &mut clock).len(), 10);
        // Truncate in place (same inode) and write less than before.
        let rewrite = |content: String| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&p)
                .unwrap();
            std::io::Write::write_all(&mut f, content.as_bytes()).unwrap();
        };
        rewrite("bb\n".repeat(5));
        // Exactly one round: notices the truncation and reads the new lines.
        clock += Duration::from_millis(10);
        let round = ta.0.round(clock);
        let mut lines = Vec::new();
        for mut batch in round.batches {
            lines.extend(batch.iter().map(|e| e.body.to_vec()));
            crate::event::settle_all(&mut batch, DeliveryStatus::Delivered);
        }
        while let Ok(msg) = ta.1.try_recv() {
            ta.0.on_ack(msg);
        }
        assert_eq!(lines, vec![b"bb".to_vec(); 5]);
        let entries = ta.0.checkpoint_entries();
        assert_eq!((entries[0].offset, entries[0].head_len), (15, 15));
        assert_eq!(
            entries[0].head_crc,
            crc32fast::hash("bb\n".repeat(5).as_bytes())
        );
        // Rewritten again while "stopped", longer than the checkpoint.
        rewrite("cc\n".repeat(8));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let t = Tailer::new(settings(dir.path(), 8), entries, tx, None, Arc::default());
        let got = drain(&mut (t, rx), &mut Instant::now());
        assert_eq!(
            got,
            vec!["cc"; 8],
            "read from the start, not from offset 15"
        );
    }

    /// A file whose handle was closed (handle limit) gets lines and is then
    /// renamed away before the next round: found by inode, read to its end.
    #[test]
    fn rotated_file_with_closed_handle_is_found_by_inode() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.log"), "a1\n").unwrap();
        fs::write(dir.path().join("b.log"), "b1\n").unwrap();
        let mut ta = tailer(dir.path(), 1);
        let mut clock = Instant::now();
        let mut got = drain(&mut ta, &mut clock);
        got.sort();
        assert_eq!(got, ["a1", "b1"]);
        let closed =
            ta.0.files
                .values()
                .find(|t| t.file.is_none())
                .map(|t| t.path.to_path_buf())
                .expect("one handle was closed");
        let mut f = fs::OpenOptions::new().append(true).open(&closed).unwrap();
        std::io::Write::write_all(&mut f, b"late\n").unwrap();
        let rotated = closed.with_extension("log.1");
        fs::rename(&closed, &rotated).unwrap();
        std::io::Write::write_all(&mut f, b"later\n").unwrap();
        drop(f);
        assert_eq!(drain(&mut ta, &mut clock), ["late", "later"]);
        // After the grace period it is let go, its checkpoint kept.
        clock += Duration::from_secs(7200);
        assert!(drain(&mut ta, &mut clock).is_empty());
        assert!(ta.0.files.values().all(|t| *t.path != *rotated));
        let entries = ta.0.checkpoint_entries();
        let e = entries.iter().find(|e| e.path == rotated).unwrap();
        assert_eq!(e.offset, fs::metadata(&rotated).unwrap().len());
    }

    /// The agent's metrics: truncated lines, open files, and the per-file
    /// gap between what was read and what was acknowledged.
    #[test]
    fn metrics_are_recorded_and_removed() {
        use crate::observe::metrics::{component, encode};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.log");
        fs::write(&p, format!("{}\nshort\n", "x".repeat(2000))).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut s = settings(dir.path(), 8);
        s.labels = component("sources.metrics-test");
        let mut t = Tailer::new(s, Vec::new(), tx, None, Arc::default());
        let labels = component("sources.metrics-test");
        let lag = || {
            metrics()
                .checkpoint_lag_bytes
                .get_or_create(&FileLabels {
                    component: "sources.metrics-test".into(),
                    path: p.to_string_lossy().into_owned(),
                })
                .get()
        };
        let round = t.round(Instant::now());
        assert_eq!(metrics().truncated_lines.get_or_create(&labels).get(), 1);
        assert_eq!(metrics().open_files.get_or_create(&labels).get(), 1);
        assert_eq!(lag(), 2007, "read, not acknowledged");
        for mut batch in round.batches {
            crate::event::settle_all(&mut batch, DeliveryStatus::Delivered);
        }
        while let Ok(msg) = rx.try_recv() {
            t.on_ack(msg);
        }
        assert_eq!(lag(), 0);
        // Deleted and read to its end: its gauge goes away.
        fs::remove_file(&p).unwrap();
        t.round(Instant::now() + Duration::from_secs(1));
        assert!(t.files.is_empty());
        assert_eq!(metrics().open_files.get_or_create(&labels).get(), 0);
        let text = encode();
        assert!(!text.contains(&*p.to_string_lossy()), "{text}");
    }

    #[test]
    fn open_handles_stay_within_limit_and_deleted_files_are_released() {
        let dir = tempfile::tempdir().unwrap();
        let mut want = Vec::new();
        for i in 0..50 {
            let p = dir.path().join(format!("d{}/f{i}.log", i % 5));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, format!("f{i}-a\n")).unwrap();
            want.push(format!("f{i}-a"));
        }
        let mut ta = tailer(dir.path(), 8);
        let mut clock = Instant::now();
        let mut got = drain(&mut ta, &mut clock);
        let t = &ta.0;
        assert!(t.open <= 8);
        assert_eq!(t.files.len(), 50);
        // Grow every file: closed handles are reopened (and re-identified).
        for i in 0..50 {
            let p = dir.path().join(format!("d{}/f{i}.log", i % 5));
            let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
            std::io::Write::write_all(&mut f, format!("f{i}-b\n").as_bytes()).unwrap();
            want.push(format!("f{i}-b"));
        }
        got.extend(drain(&mut ta, &mut clock));
        got.sort();
        want.sort();
        assert_eq!(got, want);

        // A deleted file is read to its end, then its handle is released.
        let victim = dir.path().join("d0/f0.log");
        let mut f = fs::OpenOptions::new().append(true).open(&victim).unwrap();
        let t = &mut ta.0;
        let open_before = t.open;
        let had_handle = t
            .files
            .values()
            .any(|x| *x.path == *victim && x.file.is_some());
        std::io::Write::write_all(&mut f, b"f0-c\n").unwrap();
        drop(f);
        // Make sure it is open when deleted (as a file being tailed is).
        let slot = t.by_path[&victim];
        if !had_handle {
            assert!(t.reopen(slot));
        }
        let open_with_victim = t.open;
        fs::remove_file(&victim).unwrap();
        let got = drain(&mut ta, &mut clock);
        let t = &ta.0;
        assert_eq!(got, vec!["f0-c".to_string()]);
        assert!(!t.files.contains_key(&slot), "deleted file forgotten");
        assert_eq!(t.open, open_with_victim - 1);
        assert!(t.open <= open_before);
        assert!(
            t.checkpoint_entries().iter().all(|e| e.path != victim),
            "no checkpoint for a deleted file"
        );
    }
}
