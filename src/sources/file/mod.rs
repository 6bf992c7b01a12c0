//! The `file` source: tails log files matching globs, survives rotation and
//! restarts, and only moves its checkpoint over lines the sinks acknowledged.
//!
//! # Configuration
//!
//! ```toml
//! [sources.build_logs]
//! type = "file"
//! include = ["/var/lib/runner/builds/**/*.log"]   # required, absolute globs
//! exclude = []                        # absolute globs
//! read_from = "beginning"             # or "end": files without checkpoint found at start-up
//! # ignore_older = "1d"               # skip new files not modified within this long
//! max_line_bytes = 102400             # longer lines are cut and flagged
//! poll_interval = "1s"                # glob walk / fallback when notifications miss
//! trailing_line_timeout = "1s"        # quiet time before an unterminated last line is sent
//! min_read_interval = "200ms"         # notified reads at least this far apart (batches small writes)
//! max_open_files = 1024
//! fingerprint_bytes = 1024            # leading bytes checksummed for identity
//! checkpoint_interval = "1s"
//! read_batch_bytes = 65536            # per file per round; also the acknowledged batch size
//! # multiline = { start_pattern = '^\S', condition_pattern = '^\s+at ', mode = "continue_through", timeout = "1s" }
//! ```
//!
//! `multiline.mode` is one of `continue_through`, `continue_past`,
//! `halt_before`, `halt_with` (see [`MultilineMode`]).
//!
//! # Behaviour
//!
//! * **Discovery.** `include`/`exclude` globs (absolute, `**` allowed) are
//!   walked from their literal base directories once per `poll_interval`.
//!   In between, inotify (through `notify`) on the base directories and the
//!   directories of the files being read wakes the source for changed and
//!   new paths. If notifications are unavailable or a watch cannot be added
//!   (watch limit), a warning is logged and polling carries on alone.
//! * **Identity** (see `fingerprint.rs`): device + inode, checked against a
//!   CRC of the first `fingerprint_bytes`. Renames keep the identity;
//!   copytruncate (size below the read offset, or first bytes changed) and
//!   inode reuse start the file over with a new generation of its id.
//! * **Rotation.** A file that disappears from its path while open keeps
//!   being read through its handle: a deleted file until its end, a renamed
//!   one until it has been quiet at its end for `max(poll_interval,
//!   trailing_line_timeout)`. A new file at the old path is read from the
//!   beginning. After a restart, checkpointed files the globs no longer
//!   match are looked up by inode in their last directory and, if they grew
//!   past their checkpoint, read to their end. Symlinks are followed; when
//!   the link is pointed elsewhere the old target is treated like a renamed
//!   file.
//! * **Lines** (see `reader.rs`): split at `\n` (a `\r` before it is
//!   dropped), bytes kept as they are. Lines over `max_line_bytes` are cut
//!   and flagged. An unterminated last line is emitted after
//!   `trailing_line_timeout` of quiet; it is never emitted twice.
//! * **Fairness.** At most `read_batch_bytes` per file per round, rounds
//!   rotating their starting file; one round reads at most 8 MiB in total.
//! * **Handles.** At most `max_open_files`; the handles of the files idle
//!   longest are closed and reopened by path when the file grows, after
//!   checking device, inode and head again.
//!
//! # Delivery guarantee
//!
//! At least once, per file, in file order. Every event carries an
//! acknowledgement; a file's checkpoint moves only over a contiguous prefix
//! of batches that every sink delivered (or rejected permanently; an
//! errored batch holds the file's checkpoint back until the next start).
//! After a restart or crash (SIGKILL), what is read again is what the last
//! checkpoint write did not cover: the unacknowledged lines, the lines after
//! them in the same file, and after a crash at most `checkpoint_interval`
//! worth of recently acknowledged lines (a clean stop waits up to 5 s for
//! outstanding acknowledgements and then writes a final checkpoint).
//! Receivers can drop repeats by (`tailguard.file.id`,
//! `tailguard.file.offset`), unless `file_attributes` leaves them out.
//!
//! Files rotated away (renamed to a name the globs do not match) are read to
//! their end through the open handle; if the agent was stopped meanwhile,
//! they are found again by inode in the directory they were last seen in.
//! Lines are lost only when their file is gone before they were read:
//! deleted (or compressed) while the agent was stopped, truncated by
//! copytruncate before the reader got to them, created and rotated away
//! before any scan or notification showed it, rotated into another directory
//! while its handle was closed for `max_open_files`, or written to a rotated
//! file after it had been quiet for the grace period.
//!
//! # Checkpoints
//!
//! `<data_dir>/<source name>/checkpoints.json`, see `checkpoint.rs`.

mod checkpoint;
mod config;
mod discovery;
mod fingerprint;
mod multiline;
mod reader;
mod tailer;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

pub use config::{FileAttribute, FileSourceConfig, MultilineConfig, MultilineMode, ReadFrom};
/// The line splitter, public for the `pipeline` benchmark only.
#[doc(hidden)]
pub use reader::{Line, LineReader, MidLine};
pub use tailer::{LineAttributes, file_attributes};

use crate::topology::component::{ComponentTask, SourceContext};
use checkpoint::Store;
use tailer::{Dirty, Settings, Tailer};

/// How long a stopping source waits for outstanding acknowledgements before
/// writing its final checkpoint.
const SHUTDOWN_ACK_WAIT: Duration = Duration::from_secs(5);

/// Builds the source's task. Fails only on an invalid configuration.
/// A file source whose events go into the returned channel instead of
/// downstream, for sources that post-process what a file source reads
/// (runner logs, audit and auth logs). Acknowledgements ride on the events,
/// so the wrapper keeps the same delivery guarantee by passing them on.
pub fn build_into_channel(
    config: &FileSourceConfig,
    cx: &SourceContext,
) -> anyhow::Result<(
    ComponentTask,
    tokio::sync::mpsc::Receiver<crate::event::EventBatch>,
)> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let out = crate::topology::output::Output::named(&format!("sources.{}.reader", cx.name));
    out.rewire(vec![(
        std::sync::Arc::from(format!("sources.{}", cx.name)),
        tx,
    )]);
    let inner = SourceContext {
        name: std::sync::Arc::clone(&cx.name),
        globals: cx.globals.clone(),
        context: std::sync::Arc::clone(&cx.context),
        shutdown: cx.shutdown.clone(),
        out,
    };
    Ok((build(config, inner)?, rx))
}

pub fn build(config: &FileSourceConfig, cx: SourceContext) -> anyhow::Result<ComponentTask> {
    build_with(config, cx, true)
}

fn build_with(
    config: &FileSourceConfig,
    cx: SourceContext,
    notify: bool,
) -> anyhow::Result<ComponentTask> {
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("source `{}`: {e}", cx.name))?;
    let matcher = discovery::Matcher::new(&config.include, &config.exclude)
        .map_err(|e| anyhow::anyhow!("source `{}`: invalid glob: {e}", cx.name))?;
    let multiline = config
        .multiline
        .as_ref()
        .map(multiline::Rules::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!("source `{}`: invalid multiline pattern: {e}", cx.name))?;
    let settings = Settings {
        name: Arc::clone(&cx.name),
        labels: crate::observe::metrics::component(&format!("sources.{}", cx.name)),
        context: Arc::clone(&cx.context),
        matcher,
        read_from: config.read_from,
        ignore_older: config.ignore_older,
        max_line_bytes: config.max_line_bytes,
        poll_interval: config.poll_interval,
        trailing_line_timeout: config.trailing_line_timeout,
        multiline,
        max_open_files: config.max_open_files,
        fingerprint_bytes: config.fingerprint_bytes,
        read_batch_bytes: config.read_batch_bytes,
        attributes: tailer::LineAttributes::of(&config.file_attributes),
        notify,
        started_nanos: tailer::unix_nanos_now(),
    };
    let pacing = Pacing {
        checkpoint_interval: config.checkpoint_interval,
        min_read_interval: config.min_read_interval,
    };
    Ok(Box::pin(run(settings, pacing, cx)))
}

/// Watches with inotify and marks what changed in `dirty`.
///
/// A writer appending line by line makes an event per write, and notify's
/// thread woke for each (about a tenth of the agent's CPU at 1 MiB/s in
/// 10 ms writes). The source reads no more often than `min_read_interval`
/// anyway, so after passing on a write, the thread pauses that long (at most
/// [`MAX_WATCH_PAUSE`]): the kernel merges a file's repeated modify events
/// while no one reads them, and the next read hands over one. Events already
/// read are handled before pausing again: a pause that ended moments ago
/// means this is the backlog. Only writes pause the thread: notify answers
/// `watch` calls on this same thread, and a new directory's create event is
/// followed at once by a rescan that watches it.
fn make_watcher(
    dirty: Arc<Mutex<Dirty>>,
    wake: Arc<Notify>,
    min_read_interval: Duration,
) -> Option<notify::RecommendedWatcher> {
    use notify::event::{EventKind, ModifyKind};
    const BACKLOG: Duration = Duration::from_millis(5);
    let pause = min_read_interval.min(MAX_WATCH_PAUSE);
    let mut last_pause_end: Option<std::time::Instant> = None;
    let handler = move |res: notify::Result<notify::Event>| {
        let mut write = false;
        {
            let mut d = dirty.lock().unwrap_or_else(|p| p.into_inner());
            match res {
                Ok(ev) => {
                    if matches!(ev.kind, EventKind::Access(_)) {
                        return;
                    }
                    write = matches!(
                        ev.kind,
                        EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any)
                    );
                    if ev.need_rescan() {
                        d.rescan = true;
                    }
                    d.paths.extend(ev.paths);
                }
                Err(_) => d.rescan = true,
            }
        }
        wake.notify_one();
        if !write || pause.is_zero() || last_pause_end.is_some_and(|t| t.elapsed() < BACKLOG) {
            return;
        }
        std::thread::sleep(pause);
        last_pause_end = Some(std::time::Instant::now());
    };
    match notify::recommended_watcher(handler) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e,
                "file notifications unavailable; the file source polls every poll_interval");
            None
        }
    }
}

async fn save(store: &Arc<Store>, tailer: &mut Tailer) {
    let entries = tailer.checkpoint_entries();
    tailer.checkpoint_changed = false;
    let st = Arc::clone(store);
    let result = tokio::task::spawn_blocking(move || st.save(entries)).await;
    let component = tailer.labels().component.clone();
    let component = component.as_str();
    match result {
        Ok(Ok(())) => {
            if tailer.checkpoint_failing {
                tailer.checkpoint_failing = false;
                tracing::info!(path = %store.path().display(), "checkpoints written again");
                crate::observe::health::recover(component);
            }
        }
        Ok(Err(e)) => {
            tailer.checkpoint_changed = true;
            if !tailer.checkpoint_failing {
                tracing::error!(path = %store.path().display(), error = %e,
                    "cannot write checkpoints; lines will be read again after a restart");
            }
            tailer.checkpoint_failing = true;
            crate::observe::health::degrade(
                component,
                format!(
                    "cannot write checkpoints to {}: {e}",
                    store.path().display()
                ),
            );
        }
        Err(e) => {
            tailer.checkpoint_changed = true;
            tracing::error!(error = %e, "checkpoint writer panicked");
        }
    }
}

/// The longest the inotify thread pauses after a write (see [`make_watcher`]),
/// whatever `min_read_interval` is: a `watch` call waits for the pause.
const MAX_WATCH_PAUSE: Duration = Duration::from_millis(200);

/// How often the source loop saves checkpoints and reads on notifications.
struct Pacing {
    checkpoint_interval: Duration,
    min_read_interval: Duration,
}

async fn run(settings: Settings, pacing: Pacing, cx: SourceContext) -> anyhow::Result<()> {
    let Pacing {
        checkpoint_interval,
        min_read_interval,
    } = pacing;
    let SourceContext {
        name,
        globals,
        context: _,
        shutdown,
        mut out,
    } = cx;
    let store = Arc::new(Store::new(globals.data_dir.join(&*name)));
    let loader = Arc::clone(&store);
    let entries = tokio::task::spawn_blocking(move || loader.load())
        .await?
        .with_context(|| format!("cannot create checkpoint directory for source `{name}`"))?;

    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel();
    let wake = Arc::new(Notify::new());
    let dirty = Arc::new(Mutex::new(Dirty::default()));
    let watcher = if settings.notify {
        make_watcher(Arc::clone(&dirty), Arc::clone(&wake), min_read_interval)
    } else {
        None
    };
    let mut tailer = Tailer::new(settings, entries, ack_tx, watcher, dirty);
    let mut last_save = Instant::now();

    'main: loop {
        while let Ok(msg) = ack_rx.try_recv() {
            tailer.on_ack(msg);
        }
        if shutdown.is_cancelled() {
            break;
        }
        let now = std::time::Instant::now();
        let round_started = Instant::from_std(now);
        let (t, round) = tokio::task::spawn_blocking(move || {
            let round = tailer.round(now);
            (tailer, round)
        })
        .await
        .context("file source round panicked")?;
        tailer = t;
        for batch in round.batches {
            if out.send(batch).await.is_err() {
                tracing::warn!(source = %name, "no downstream component is running; stopping");
                break 'main;
            }
        }
        if round.more {
            tokio::task::yield_now().await;
            if tailer.checkpoint_changed && last_save.elapsed() >= checkpoint_interval {
                save(&store, &mut tailer).await;
                last_save = Instant::now();
            }
            continue;
        }
        // Acknowledgements do not move the round's timers: compute once.
        let round_deadline = Instant::from_std(tailer.next_deadline());
        // A notification is acted on no sooner than this: each write of a
        // steady trickle costs a round (a thread hop, a read, a batch
        // through every component), and at 1 MiB/s in small writes those
        // rounds were most of the agent's CPU.
        let notified_read_at = round_started + min_read_interval;
        let mut notified = false;
        loop {
            if tailer.checkpoint_changed && last_save.elapsed() >= checkpoint_interval {
                save(&store, &mut tailer).await;
                last_save = Instant::now();
            }
            let mut read_at = round_deadline;
            if notified {
                read_at = read_at.min(notified_read_at);
            }
            let mut deadline = read_at;
            if tailer.checkpoint_changed {
                deadline = deadline.min(last_save + checkpoint_interval);
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break 'main,
                msg = ack_rx.recv() => {
                    if let Some(msg) = msg {
                        tailer.on_ack(msg);
                    }
                }
                _ = wake.notified(), if !notified => {
                    if Instant::now() >= notified_read_at {
                        break;
                    }
                    notified = true;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if deadline < read_at {
                        // Only the checkpoint was due.
                        continue;
                    }
                    break;
                }
            }
        }
    }

    // Stop: let downstream finish with what it has, collect the
    // acknowledgements that come back, then record progress.
    drop(out);
    let give_up = Instant::now() + SHUTDOWN_ACK_WAIT;
    while tailer.pending_batches() > 0 {
        tokio::select! {
            msg = ack_rx.recv() => match msg {
                Some(msg) => tailer.on_ack(msg),
                None => break,
            },
            _ = tokio::time::sleep_until(give_up) => {
                tracing::warn!(source = %name, pending_batches = tailer.pending_batches(),
                    "stopping without all acknowledgements; unacknowledged lines will be read again");
                break;
            }
        }
    }
    save(&store, &mut tailer).await;
    tailer.clear_metrics();
    let s = &tailer.stats;
    tracing::info!(source = %name, lines = s.lines, bytes = s.bytes,
        truncated_lines = s.truncated_lines, errored_batches = s.errored_batches,
        rejected_batches = s.rejected_batches, files_discovered = s.files_discovered,
        rotations = s.rotations, truncations = s.truncations, "file source stopped");
    Ok(())
}

#[cfg(test)]
mod health_tests {
    use super::*;

    /// A checkpoint that cannot be written degrades the agent's health
    /// (naming the file, never event content) until a write succeeds.
    #[tokio::test]
    async fn failing_checkpoint_writes_degrade_health() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::new(dir.path().join("s")));
        store.load().unwrap();
        // A directory where the temporary file should go: writes fail.
        let tmp = dir.path().join("s").join("checkpoints.json.tmp");
        std::fs::create_dir(&tmp).unwrap();
        let mut s = tailer::tests::settings(dir.path(), 8);
        s.labels = crate::observe::metrics::component("sources.health-test");
        let (tx, _rx) = mpsc::unbounded_channel();
        let mut tailer = Tailer::new(s, Vec::new(), tx, None, Arc::default());
        let reason = || {
            crate::observe::health::report()
                .reasons
                .get("sources.health-test")
                .cloned()
        };
        save(&store, &mut tailer).await;
        let why = reason().expect("degraded");
        assert!(why.contains("checkpoints.json"), "{why}");
        assert!(tailer.checkpoint_changed, "retried later");
        std::fs::remove_dir(&tmp).unwrap();
        save(&store, &mut tailer).await;
        assert_eq!(reason(), None);
        assert!(store.path().exists());
    }
}

#[cfg(test)]
mod watcher_tests {
    use super::*;
    use std::io::Write;

    /// Counts the times a watcher passes on a change while one open file is
    /// written 20 times, 20 ms apart, polling faster than the writes come.
    /// `None` where inotify is unavailable.
    fn changes_seen(min_read_interval: Duration) -> Option<usize> {
        use notify::Watcher;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut file = std::fs::File::create(&path).unwrap();
        let dirty = Arc::new(Mutex::new(Dirty::default()));
        let mut watcher = make_watcher(
            Arc::clone(&dirty),
            Arc::new(Notify::new()),
            min_read_interval,
        )?;
        watcher
            .watch(dir.path(), notify::RecursiveMode::NonRecursive)
            .unwrap();
        let mut seen = 0;
        // Takes what the watcher passed on every 2 ms for `how_long`.
        let mut poll_for = |how_long: Duration| {
            let until = std::time::Instant::now() + how_long;
            while std::time::Instant::now() < until {
                let mut d = dirty.lock().unwrap();
                if !d.paths.is_empty() {
                    d.paths.clear();
                    seen += 1;
                }
                drop(d);
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        for _ in 0..20 {
            file.write_all(b"a line\n").unwrap();
            poll_for(Duration::from_millis(20));
        }
        poll_for(min_read_interval.min(MAX_WATCH_PAUSE) + Duration::from_millis(300));
        Some(seen)
    }

    /// A writer's repeated writes reach the source as a change per pause,
    /// not a change per write, and the writes after the first are not lost:
    /// they arrive merged once the pause ends.
    #[test]
    fn the_watcher_merges_a_writers_events_between_reads() {
        let Some(unpaused) = changes_seen(Duration::ZERO) else {
            eprintln!("skipped: inotify unavailable");
            return;
        };
        assert!(
            unpaused >= 8,
            "without a pause each write is seen: {unpaused}"
        );
        // The pause is capped at MAX_WATCH_PAUSE (200 ms); 20 writes take 400 ms.
        let paused = changes_seen(Duration::from_secs(1)).expect("inotify worked a moment ago");
        assert!(
            (2..=6).contains(&paused),
            "20 writes in 400 ms, 200 ms pauses: {paused} changes"
        );
    }
}
