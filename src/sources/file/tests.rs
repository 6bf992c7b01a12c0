//! Library-level tests: the real source task, real files, a test sink that
//! settles acknowledgements. Every wait is on a condition with a generous
//! deadline; every test checks the exact multiset of lines received.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::ack::DeliveryStatus;
use crate::event::{Event, EventBatch, Value};
use crate::topology::component::{Globals, SourceContext};
use crate::topology::output::Output;

const DEADLINE: Duration = Duration::from_secs(30);

fn config(include: &[String]) -> FileSourceConfig {
    let mut c = FileSourceConfig::new(include.to_vec());
    c.poll_interval = Duration::from_millis(100);
    c.trailing_line_timeout = Duration::from_millis(200);
    c.checkpoint_interval = Duration::from_millis(50);
    c
}

fn glob(dir: &Path, pattern: &str) -> String {
    format!("{}/{pattern}", dir.display())
}

/// One received line, with what the tests look at.
#[derive(Clone, Debug)]
struct Got {
    body: Vec<u8>,
    path: PathBuf,
    offset: u64,
    file_id: String,
    truncated: bool,
}

/// Where the line starts in its file, as the event says it.
fn offset_of(ev: &Event) -> u64 {
    match ev.attributes.get("tailguard.file.offset") {
        Some(Value::Int(offset)) => u64::try_from(*offset).expect("an offset is not negative"),
        other => panic!("tailguard.file.offset is {other:?}"),
    }
}

impl Got {
    fn of(ev: &Event) -> Self {
        let attr = |k: &str| ev.attributes.get(k).cloned();
        // The origin and the attributes must agree.
        let id = ev.origin.file_id.as_deref().unwrap().to_string();
        assert_eq!(attr("tailguard.file.id"), Some(Value::from(id.as_str())));
        let path = ev.origin.path.as_deref().unwrap().to_path_buf();
        assert_eq!(
            attr("log.file.path"),
            Some(Value::from(path.to_string_lossy().as_ref()))
        );
        assert_eq!(
            attr("log.file.name"),
            Some(Value::from(
                path.file_name().unwrap().to_string_lossy().as_ref()
            ))
        );
        assert_eq!(&*ev.origin.source, "logs");
        assert!(ev.ack.is_some());
        Got {
            body: ev.body.to_vec(),
            path,
            offset: offset_of(ev),
            file_id: id,
            truncated: attr("tailguard.truncated") == Some(Value::Bool(true)),
        }
    }
}

struct Running {
    rx: mpsc::Receiver<EventBatch>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn start(config: &FileSourceConfig, data: &Path) -> Running {
    start_with(config, data, true)
}

fn start_with(config: &FileSourceConfig, data: &Path, notify: bool) -> Running {
    let (tx, rx) = mpsc::channel(8);
    let mut out = Output::new();
    out.connect(Arc::from("sink"), tx);
    let shutdown = CancellationToken::new();
    let cx = SourceContext {
        name: Arc::from("logs"),
        globals: Globals {
            data_dir: data.to_path_buf(),
            ..Globals::default()
        },
        context: Arc::default(),
        shutdown: shutdown.clone(),
        out,
    };
    let task = tokio::spawn(build_with(config, cx, notify).expect("valid config"));
    Running { rx, shutdown, task }
}

impl Running {
    /// Receives batches, settling each as `policy` says (`None` = keep it
    /// unsettled in `held`), until `done` holds for everything received.
    async fn collect_with(
        &mut self,
        got: &mut Vec<Got>,
        held: &mut Vec<EventBatch>,
        mut policy: impl FnMut(&EventBatch) -> Option<DeliveryStatus>,
        done: impl Fn(&[Got]) -> bool,
    ) {
        let give_up = tokio::time::Instant::now() + DEADLINE;
        while !done(got) {
            let batch = tokio::time::timeout_at(give_up, self.rx.recv()).await;
            let Ok(Some(mut batch)) = batch else {
                panic!(
                    "condition not met; received {} lines: {:?}",
                    got.len(),
                    got.iter()
                        .map(|g| String::from_utf8_lossy(&g.body).into_owned())
                        .collect::<Vec<_>>()
                );
            };
            got.extend(batch.iter().map(Got::of));
            match policy(&batch) {
                Some(status) => crate::event::settle_all(&mut batch, status),
                None => held.push(batch),
            }
        }
    }

    async fn collect(&mut self, got: &mut Vec<Got>, done: impl Fn(&[Got]) -> bool) {
        let mut held = Vec::new();
        self.collect_with(got, &mut held, |_| Some(DeliveryStatus::Delivered), done)
            .await;
    }

    /// Receives (and acknowledges) for `quiet`, so that extra lines a bug
    /// would send show up in the exact comparison.
    async fn settle(&mut self, got: &mut Vec<Got>, quiet: Duration) {
        let until = tokio::time::Instant::now() + quiet;
        while let Ok(Some(mut batch)) = tokio::time::timeout_at(until, self.rx.recv()).await {
            got.extend(batch.iter().map(Got::of));
            crate::event::settle_all(&mut batch, DeliveryStatus::Delivered);
        }
    }

    /// Clean stop: cancel, deliver whatever is still sent, wait for the task.
    async fn stop(mut self, got: &mut Vec<Got>) {
        self.shutdown.cancel();
        while let Some(mut batch) = tokio::time::timeout(DEADLINE, self.rx.recv())
            .await
            .expect("source closes its output")
        {
            got.extend(batch.iter().map(Got::of));
            crate::event::settle_all(&mut batch, DeliveryStatus::Delivered);
        }
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("source stops")
            .unwrap()
            .unwrap();
    }
}

fn counts<I: IntoIterator<Item = Vec<u8>>>(lines: I) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in lines {
        *m.entry(String::from_utf8_lossy(&l).into_owned())
            .or_insert(0) += 1;
    }
    m
}

fn bodies(got: &[Got]) -> BTreeMap<String, usize> {
    counts(got.iter().map(|g| g.body.clone()))
}

fn strings(lines: &[String]) -> BTreeMap<String, usize> {
    counts(lines.iter().map(|s| s.as_bytes().to_vec()))
}

fn has_all(want: &BTreeMap<String, usize>) -> impl Fn(&[Got]) -> bool + '_ {
    move |got| {
        let have = bodies(got);
        want.iter()
            .all(|(k, n)| have.get(k).copied().unwrap_or(0) >= *n)
    }
}

fn append(path: &Path, lines: &[String]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        f.write_all(l.as_bytes()).unwrap();
        f.write_all(b"\n").unwrap();
    }
}

fn lines(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i:05}")).collect()
}

fn checkpoint_text(data: &Path) -> String {
    fs::read_to_string(data.join("logs").join("checkpoints.json")).unwrap_or_default()
}

type MtTest = ();

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_create_rotation_loses_nothing() -> MtTest {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let app = logs.path().join("app.log");
    let mut src = start(&config(&[glob(logs.path(), "*.log")]), data.path());
    let mut got = Vec::new();
    let mut all = lines("a", 0..50);
    append(&app, &all);
    src.collect(&mut got, has_all(&strings(&all))).await;

    // The writer keeps its handle: lines written just before and just after
    // the rename go to the rotated file, which is not matched by the glob.
    let mut writer = OpenOptions::new().append(true).open(&app).unwrap();
    for l in lines("b", 0..30) {
        writeln!(writer, "{l}").unwrap();
    }
    fs::rename(&app, logs.path().join("app.log.1")).unwrap();
    for l in lines("c", 0..30) {
        writeln!(writer, "{l}").unwrap();
    }
    drop(writer);
    append(&app, &lines("d", 0..40));
    all.extend(lines("b", 0..30));
    all.extend(lines("c", 0..30));
    all.extend(lines("d", 0..40));
    src.collect(&mut got, has_all(&strings(&all))).await;
    src.settle(&mut got, Duration::from_millis(500)).await;
    src.stop(&mut got).await;
    assert_eq!(bodies(&got), strings(&all));
    // The rotated lines kept their file's id; the new file has another.
    let id_of = |s: &str| {
        got.iter()
            .find(|g| g.body == s.as_bytes())
            .unwrap()
            .file_id
            .clone()
    };
    assert_eq!(id_of("a-00000"), id_of("c-00029"));
    assert_ne!(id_of("a-00000"), id_of("d-00000"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_restarts_from_zero() -> MtTest {
    for longer in [false, true] {
        let logs = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let app = logs.path().join("app.log");
        let mut src = start(&config(&[glob(logs.path(), "*.log")]), data.path());
        let mut got = Vec::new();
        let mut all = lines("old", 0..20);
        append(&app, &all);
        src.collect(&mut got, has_all(&strings(&all))).await;
        fs::copy(&app, logs.path().join("app.log.copy")).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&app)
            .unwrap()
            .set_len(0)
            .unwrap();
        // More bytes than before when `longer`: only the changed first
        // bytes can reveal the truncation then.
        let new = lines(
            if longer {
                "new-and-much-longer-line"
            } else {
                "n"
            },
            0..25,
        );
        append(&app, &new);
        all.extend(new);
        src.collect(&mut got, has_all(&strings(&all))).await;
        src.settle(&mut got, Duration::from_millis(500)).await;
        src.stop(&mut got).await;
        assert_eq!(bodies(&got), strings(&all), "longer = {longer}");
        let first_new = got.iter().find(|g| g.body.starts_with(b"n")).unwrap();
        assert_eq!(first_new.offset, 0);
        let old = got.iter().find(|g| g.body.starts_with(b"old")).unwrap();
        assert_ne!(first_new.file_id, old.file_id, "new generation");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_recreate() -> MtTest {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let app = logs.path().join("app.log");
    let mut src = start(&config(&[glob(logs.path(), "*.log")]), data.path());
    let mut got = Vec::new();
    let mut all = lines("first", 0..30);
    append(&app, &all);
    src.collect(&mut got, has_all(&strings(&all))).await;
    // Written and deleted right away: read to the end through the handle.
    let tail = lines("last-words", 0..30);
    append(&app, &tail);
    fs::remove_file(&app).unwrap();
    all.extend(tail);
    let second = lines("second", 0..30);
    append(&app, &second);
    all.extend(second);
    src.collect(&mut got, has_all(&strings(&all))).await;
    src.settle(&mut got, Duration::from_millis(500)).await;
    src.stop(&mut got).await;
    assert_eq!(bodies(&got), strings(&all));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_is_followed_and_retargeted() -> MtTest {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let targets = root.path().join("targets");
    let links = root.path().join("links");
    fs::create_dir_all(&targets).unwrap();
    fs::create_dir_all(&links).unwrap();
    let a = targets.join("a.txt");
    let b = targets.join("b.txt");
    let link = links.join("current.log");
    std::os::unix::fs::symlink(&a, &link).unwrap();
    let mut all = lines("a", 0..20);
    append(&a, &all);
    let mut src = start(&config(&[glob(&links, "*.log")]), data.path());
    let mut got = Vec::new();
    src.collect(&mut got, has_all(&strings(&all))).await;
    // Appends to the target are seen through the link.
    let more_a = lines("a2", 0..10);
    append(&a, &more_a);
    all.extend(more_a);
    src.collect(&mut got, has_all(&strings(&all))).await;
    // Retarget atomically (ln -sfn style): new link, renamed over the old.
    let b_lines = lines("b", 0..20);
    append(&b, &b_lines);
    let tmp = links.join(".current.tmp");
    std::os::unix::fs::symlink(&b, &tmp).unwrap();
    fs::rename(&tmp, &link).unwrap();
    all.extend(b_lines);
    src.collect(&mut got, has_all(&strings(&all))).await;
    let more_b = lines("b2", 0..10);
    append(&b, &more_b);
    all.extend(more_b);
    src.collect(&mut got, has_all(&strings(&all))).await;
    src.settle(&mut got, Duration::from_millis(500)).await;
    src.stop(&mut got).await;
    assert_eq!(bodies(&got), strings(&all));
    assert!(
        got.iter().all(|g| g.path == link),
        "reported under the link"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_file_after_delete_is_not_resumed_across_restart() -> MtTest {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let app = logs.path().join("app.log");
    let cfg = config(&[glob(logs.path(), "*.log")]);
    let old = lines("old-content", 0..40);
    append(&app, &old);
    let mut src = start(&cfg, data.path());
    let mut got = Vec::new();
    src.collect(&mut got, has_all(&strings(&old))).await;
    src.stop(&mut got).await;
    let old_id = got[0].file_id.clone();
    let old_ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&app).unwrap());
    // Delete and create: the inode may well be reused.
    fs::remove_file(&app).unwrap();
    let new = lines("NEW", 0..60);
    append(&app, &new);
    let new_ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&app).unwrap());
    let mut src = start(&cfg, data.path());
    let mut got2 = Vec::new();
    src.collect(&mut got2, has_all(&strings(&new))).await;
    src.settle(&mut got2, Duration::from_millis(500)).await;
    src.stop(&mut got2).await;
    assert_eq!(bodies(&got), strings(&old));
    assert_eq!(
        bodies(&got2),
        strings(&new),
        "inode reused: {}",
        old_ino == new_ino
    );
    assert_eq!(got2[0].offset, 0);
    assert_ne!(got2[0].file_id, old_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_empty_and_unterminated_files() -> MtTest {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    fs::write(logs.path().join("one.log"), b"only line\n").unwrap();
    fs::write(logs.path().join("empty.log"), b"").unwrap();
    fs::write(logs.path().join("nonl.log"), b"first\r\nno newline").unwrap();
    let mut src = start(&config(&[glob(logs.path(), "*.log")]), data.path());
    let mut got = Vec::new();
    let mut all: Vec<String> = ["only line", "first", "no newline"]
        .map(String::from)
        .to_vec();
    src.collect(&mut got, has_all(&strings(&all))).await;
    // The newline arriving later does not repeat the line; more text after
    // an emitted partial line is a line of its own.
    let mut f = OpenOptions::new()
        .append(true)
        .open(logs.path().join("nonl.log"))
        .unwrap();
    f.write_all(b"\nafter\npart").unwrap();
    all.extend(["after", "part"].map(String::from));
    src.collect(&mut got, has_all(&strings(&all))).await;
    f.write_all(b" two\n").unwrap();
    fs::write(logs.path().join("empty.log"), b"was empty\n").unwrap();
    all.extend([" two", "was empty"].map(String::from));
    src.collect(&mut got, has_all(&strings(&all))).await;
    src.settle(&mut got, Duration::from_millis(600)).await;
    src.stop(&mut got).await;
    assert_eq!(bodies(&got), strings(&all));

    // A restart does not send anything again: the checkpoint remembers
    // that the offset is inside an already emitted line.
    let mut src = start(&config(&[glob(logs.path(), "*.log")]), data.path());
    let mut got = Vec::new();
    f.write_all(b"x").unwrap();
    src.collect(&mut got, has_all(&strings(&["x".to_string()])))
        .await;
    src.settle(&mut got, Duration::from_millis(600)).await;
    src.stop(&mut got).await;
    assert_eq!(bodies(&got), strings(&["x".to_string()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_line_is_truncated_and_flagged() -> MtTest {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(&[glob(logs.path(), "*.log")]);
    cfg.max_line_bytes = 4096;
    let mut content = b"before\n".to_vec();
    let huge: Vec<u8> = (0..1024 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    content.extend_from_slice(&huge);
    content.extend_from_slice(b"\nafter\n");
    fs::write(logs.path().join("big.log"), &content).unwrap();
    let mut src = start(&cfg, data.path());
    let mut got = Vec::new();
    src.collect(&mut got, |g| g.iter().any(|g| g.body == b"after"))
        .await;
    src.settle(&mut got, Duration::from_millis(500)).await;
    src.stop(&mut got).await;
    let want = counts([b"before".to_vec(), huge[..4096].to_vec(), b"after".to_vec()]);
    assert_eq!(bodies(&got), want);
    let flagged: Vec<_> = got.iter().filter(|g| g.truncated).collect();
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0].offset, 7);
    assert_eq!(
        got.iter().find(|g| g.body == b"after").unwrap().offset,
        7 + huge.len() as u64 + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_kept_byte_exact() -> MtTest {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let raw: Vec<Vec<u8>> = vec![
        b"\xff\xfe\xfd".to_vec(),
        b"ok \xc3\x28 broken".to_vec(),
        b"\x00nul\x00".to_vec(),
        "caf\u{e9}".as_bytes().to_vec(),
    ];
    let mut content = Vec::new();
    for r in &raw {
        content.extend_from_slice(r);
        content.push(b'\n');
    }
    fs::write(logs.path().join("bin.log"), &content).unwrap();
    let mut src = start(&config(&[glob(logs.path(), "*.log")]), data.path());
    let mut got = Vec::new();
    src.collect(&mut got, |g| g.len() >= raw.len()).await;
    src.settle(&mut got, Duration::from_millis(300)).await;
    src.stop(&mut got).await;
    let have: Vec<Vec<u8>> = got.iter().map(|g| g.body.clone()).collect();
    assert_eq!(have, raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiline_stack_traces() -> MtTest {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(&[glob(logs.path(), "*.log")]);
    cfg.multiline = Some(MultilineConfig {
        start_pattern: r"^\S".into(),
        condition_pattern: r"^\s+at ".into(),
        mode: MultilineMode::ContinueThrough,
        timeout: Duration::from_millis(200),
    });
    fs::write(
        logs.path().join("app.log"),
        "start\nError: boom\n  at f (a.js:1)\n  at g (b.js:2)\nnext\nError: again\n  at h (c.js:3)\n",
    )
    .unwrap();
    let mut src = start(&cfg, data.path());
    let mut got = Vec::new();
    let want = strings(&[
        "start".into(),
        "Error: boom\n  at f (a.js:1)\n  at g (b.js:2)".into(),
        "next".into(),
        "Error: again\n  at h (c.js:3)".into(),
    ]);
    src.collect(&mut got, has_all(&want)).await;
    src.settle(&mut got, Duration::from_millis(500)).await;
    src.stop(&mut got).await;
    assert_eq!(bodies(&got), want);
}

/// Acknowledges the first `acked` batches, holds the rest unsettled, stops
/// (dropping them: they count as errored), restarts, and expects exactly the
/// lines of the held batches again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resends_only_unacknowledged_lines() -> MtTest {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(&[glob(logs.path(), "*.log")]);
    cfg.read_batch_bytes = 300; // many small batches
    let all = lines("line", 0..300);
    append(&logs.path().join("app.log"), &all);
    let mut src = start(&cfg, data.path());
    let mut got = Vec::new();
    let mut held = Vec::new();
    let mut n = 0;
    src.collect_with(
        &mut got,
        &mut held,
        |_| {
            n += 1;
            (n <= 5).then_some(DeliveryStatus::Delivered)
        },
        has_all(&strings(&all)),
    )
    .await;
    let resend: Vec<String> = held
        .iter()
        .flatten()
        .map(|e| String::from_utf8(e.body.to_vec()).unwrap())
        .collect();
    assert!(!resend.is_empty());
    src.shutdown.cancel();
    drop(held);
    src.stop(&mut got).await;
    assert_eq!(bodies(&got), strings(&all));

    let mut src = start(&cfg, data.path());
    let mut again = Vec::new();
    src.collect(&mut again, has_all(&strings(&resend))).await;
    src.settle(&mut again, Duration::from_millis(500)).await;
    src.stop(&mut again).await;
    assert_eq!(bodies(&again), strings(&resend));
}

/// Errored holds the checkpoint back (even over later delivered batches);
/// rejected moves it forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errored_blocks_and_rejected_advances() -> MtTest {
    for (first, resent) in [
        (DeliveryStatus::Errored, true),
        (DeliveryStatus::Rejected, false),
    ] {
        let logs = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let mut cfg = config(&[glob(logs.path(), "*.log")]);
        cfg.read_batch_bytes = 100;
        let all = lines("l", 0..40);
        append(&logs.path().join("app.log"), &all);
        let mut src = start(&cfg, data.path());
        let mut got = Vec::new();
        let mut held = Vec::new();
        let mut n = 0;
        let mut first_batch = Vec::new();
        src.collect_with(
            &mut got,
            &mut held,
            |b| {
                n += 1;
                if n == 1 {
                    first_batch = b.iter().map(|e| e.body.to_vec()).collect();
                    Some(first)
                } else {
                    Some(DeliveryStatus::Delivered)
                }
            },
            has_all(&strings(&all)),
        )
        .await;
        src.stop(&mut got).await;
        let mut src = start(&cfg, data.path());
        let mut again = Vec::new();
        if resent {
            src.collect(&mut again, has_all(&strings(&all))).await;
        }
        src.settle(&mut again, Duration::from_millis(500)).await;
        src.stop(&mut again).await;
        if resent {
            assert_eq!(
                bodies(&again),
                strings(&all),
                "everything from the errored batch on"
            );
        } else {
            assert!(again.is_empty(), "{first:?}");
        }
        assert!(!first_batch.is_empty());
    }
}

/// A crash (the task is aborted, no final checkpoint): once the periodic
/// checkpoint covers the acknowledged prefix, only the rest comes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_resends_only_what_the_checkpoint_does_not_cover() -> MtTest {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(&[glob(logs.path(), "*.log")]);
    cfg.read_batch_bytes = 256;
    let all = lines("crash", 0..200);
    append(&logs.path().join("app.log"), &all);
    let mut src = start(&cfg, data.path());
    let mut got = Vec::new();
    let mut held = Vec::new();
    let mut n = 0;
    src.collect_with(
        &mut got,
        &mut held,
        |_| {
            n += 1;
            (n <= 3).then_some(DeliveryStatus::Delivered)
        },
        has_all(&strings(&all)),
    )
    .await;
    let first_held = offset_of(&held[0][0]);
    let want = format!("\"offset\":{first_held},");
    let give_up = std::time::Instant::now() + DEADLINE;
    while !checkpoint_text(data.path()).contains(&want) {
        assert!(
            std::time::Instant::now() < give_up,
            "{}",
            checkpoint_text(data.path())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    src.task.abort();
    let _ = src.task.await;
    let resend: Vec<String> = held
        .iter()
        .flatten()
        .map(|e| String::from_utf8(e.body.to_vec()).unwrap())
        .collect();
    drop(held);
    let mut src = start(&cfg, data.path());
    let mut again = Vec::new();
    src.collect(&mut again, has_all(&strings(&resend))).await;
    src.settle(&mut again, Duration::from_millis(500)).await;
    src.stop(&mut again).await;
    assert_eq!(bodies(&again), strings(&resend));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_files_under_double_star() -> MtTest {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(&[glob(logs.path(), "**/*.log")]);
    cfg.exclude = vec![glob(logs.path(), "**/skip-*.log")];
    cfg.max_open_files = 100;
    cfg.poll_interval = Duration::from_millis(250);
    let mut paths = Vec::new();
    let mut all = Vec::new();
    for i in 0..2000 {
        let dir = logs.path().join(format!("job-{}/step-{}", i % 20, i % 7));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!("f{i}.log"));
        let ls = lines(&format!("f{i}"), 0..3);
        append(&p, &ls);
        all.extend(ls);
        paths.push(p);
        fs::write(dir.join(format!("skip-{i}.log")), "never\n").unwrap();
    }
    let mut src = start(&cfg, data.path());
    let mut got = Vec::new();
    src.collect(&mut got, |g| g.len() >= all.len()).await;
    // Every file grows again: idle handles were closed and get reopened.
    for (i, p) in paths.iter().enumerate() {
        let ls = lines(&format!("f{i}"), 3..4);
        append(p, &ls);
        all.extend(ls);
    }
    src.collect(&mut got, |g| g.len() >= all.len()).await;
    src.settle(&mut got, Duration::from_millis(800)).await;
    src.stop(&mut got).await;
    assert_eq!(bodies(&got), strings(&all));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_checkpoint_is_moved_aside() -> MtTest {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    fs::create_dir_all(data.path().join("logs")).unwrap();
    fs::write(
        data.path().join("logs/checkpoints.json"),
        b"{\"version\":1,\"fil",
    )
    .unwrap();
    let all = lines("fresh", 0..10);
    append(&logs.path().join("app.log"), &all);
    let mut src = start(&config(&[glob(logs.path(), "*.log")]), data.path());
    let mut got = Vec::new();
    src.collect(&mut got, has_all(&strings(&all))).await;
    src.settle(&mut got, Duration::from_millis(300)).await;
    src.stop(&mut got).await;
    assert_eq!(bodies(&got), strings(&all));
    let names: Vec<String> = fs::read_dir(data.path().join("logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("checkpoints.json.corrupt-")),
        "{names:?}"
    );
    let text = checkpoint_text(data.path());
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["files"][0]["offset"], 10 * 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_from_end_skips_history_but_not_new_files() -> MtTest {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(&[glob(logs.path(), "*.log")]);
    cfg.read_from = ReadFrom::End;
    append(&logs.path().join("old.log"), &lines("history", 0..10));
    let mut src = start(&cfg, data.path());
    let mut got = Vec::new();
    // Wait for the first scan to have registered the file.
    let give_up = std::time::Instant::now() + DEADLINE;
    while !checkpoint_text(data.path()).contains("old.log") {
        assert!(std::time::Instant::now() < give_up);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut all = lines("live", 0..5);
    append(&logs.path().join("old.log"), &all);
    let newer = lines("newfile", 0..5);
    append(&logs.path().join("new.log"), &newer);
    all.extend(newer);
    src.collect(&mut got, has_all(&strings(&all))).await;
    src.settle(&mut got, Duration::from_millis(300)).await;
    src.stop(&mut got).await;
    assert_eq!(bodies(&got), strings(&all));
}

/// One file with a lot to read does not hold up another: each round reads
/// at most `read_batch_bytes` from every file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_file_does_not_starve_others() -> MtTest {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(&[glob(logs.path(), "*.log")]);
    cfg.read_batch_bytes = 4096;
    let big = lines("big", 0..20_000);
    append(&logs.path().join("a-big.log"), &big);
    let small = lines("small", 0..3);
    append(&logs.path().join("b-small.log"), &small);
    let mut src = start(&cfg, data.path());
    let mut order = Vec::new();
    let give_up = tokio::time::Instant::now() + DEADLINE;
    let mut got = Vec::new();
    while !has_all(&strings(&small))(&got) {
        let mut batch = tokio::time::timeout_at(give_up, src.rx.recv())
            .await
            .unwrap()
            .unwrap();
        order.push(batch[0].origin.path.as_deref().unwrap().to_path_buf());
        got.extend(batch.iter().map(Got::of));
        crate::event::settle_all(&mut batch, DeliveryStatus::Delivered);
    }
    assert!(
        order.len() <= 3,
        "small file waited {} batches",
        order.len()
    );
    let mut all = big;
    all.extend(small);
    src.collect(&mut got, has_all(&strings(&all))).await;
    src.settle(&mut got, Duration::from_millis(300)).await;
    src.stop(&mut got).await;
    assert_eq!(bodies(&got), strings(&all));
}

/// Without notifications (inotify unavailable or out of watches) polling
/// alone finds appends, new files and rotations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_only_still_works() -> MtTest {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let app = logs.path().join("app.log");
    let mut src = start_with(&config(&[glob(logs.path(), "*.log")]), data.path(), false);
    let mut got = Vec::new();
    let mut all = lines("p", 0..10);
    append(&app, &all);
    src.collect(&mut got, has_all(&strings(&all))).await;
    fs::rename(&app, logs.path().join("app.log.1")).unwrap();
    let more = lines("q", 0..10);
    append(&logs.path().join("app.log.1"), &more);
    all.extend(more);
    let new = lines("r", 0..10);
    append(&app, &new);
    all.extend(new);
    src.collect(&mut got, has_all(&strings(&all))).await;
    src.settle(&mut got, Duration::from_millis(400)).await;
    src.stop(&mut got).await;
    assert_eq!(bodies(&got), strings(&all));
}

/// With a poll interval far beyond the test deadline, only notifications
/// can deliver these lines in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_wake_reading_and_discovery() -> MtTest {
    if notify::recommended_watcher(|_: notify::Result<notify::Event>| {}).is_err() {
        eprintln!("skipped: no file-system notifications here (inotify instances exhausted?)");
        return;
    }
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(&[glob(logs.path(), "*.log")]);
    cfg.poll_interval = Duration::from_secs(3600);
    let app = logs.path().join("app.log");
    let mut all = lines("n", 0..5);
    append(&app, &all);
    let mut src = start(&cfg, data.path());
    let mut got = Vec::new();
    // Watches are set up in the round that produced the first batch.
    src.collect(&mut got, has_all(&strings(&all))).await;
    let more = lines("m", 0..5);
    append(&app, &more);
    all.extend(more);
    src.collect(&mut got, has_all(&strings(&all))).await;
    let other = lines("o", 0..5);
    append(&logs.path().join("other.log"), &other);
    all.extend(other);
    src.collect(&mut got, has_all(&strings(&all))).await;
    fs::write(logs.path().join("third.log"), b"partial").unwrap();
    all.push("partial".into());
    src.collect(&mut got, has_all(&strings(&all))).await;
    src.settle(&mut got, Duration::from_millis(300)).await;
    src.stop(&mut got).await;
    assert_eq!(bodies(&got), strings(&all));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_older_skips_stale_files() -> MtTest {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(&[glob(logs.path(), "*.log")]);
    cfg.ignore_older = Some(Duration::from_secs(3600));
    let stale = logs.path().join("stale.log");
    append(&stale, &lines("stale", 0..3));
    let day_ago = std::time::SystemTime::now() - Duration::from_secs(86_400);
    File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(day_ago)
        .unwrap();
    let fresh = lines("fresh", 0..3);
    append(&logs.path().join("fresh.log"), &fresh);
    let mut src = start(&cfg, data.path());
    let mut got = Vec::new();
    src.collect(&mut got, has_all(&strings(&fresh))).await;
    src.settle(&mut got, Duration::from_millis(400)).await;
    src.stop(&mut got).await;
    assert_eq!(bodies(&got), strings(&fresh));
}

/// A writer thread appending as fast as it can, rotating (rename + create,
/// the rotated names not matched) every 700 lines and writing one more line
/// to the old handle after the rename; some lines are split over two
/// writes. A file renamed away before the source ever saw it cannot be
/// read, so the writer waits, after creating each file, until the source
/// delivered that file's first line; everything else runs at full speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writer_with_rotations() -> MtTest {
    use std::sync::atomic::{AtomicI64, Ordering};
    const N: usize = 6000;
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(&[glob(logs.path(), "*.log")]);
    cfg.read_batch_bytes = 1024;
    let line = |i: usize| format!("w-{i:06}-{}", "x".repeat(i % 50));
    let mut written: Vec<String> = (0..N).map(line).collect();
    written.extend((699..N).step_by(700).map(|i| format!("late-{i}")));
    let want = strings(&written);
    // Highest `w-` index delivered so far.
    let seen = Arc::new(AtomicI64::new(-1));

    let mut src = start(&cfg, data.path());
    let dir = logs.path().to_path_buf();
    let seen_w = Arc::clone(&seen);
    let writer = std::thread::spawn(move || {
        let app = dir.join("app.log");
        let wait_seen = |i: usize| {
            let give_up = std::time::Instant::now() + DEADLINE;
            while seen_w.load(Ordering::Acquire) < i as i64 {
                assert!(
                    std::time::Instant::now() < give_up,
                    "line {i} never delivered"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        let mut f = File::create(&app).unwrap();
        for i in 0..N {
            let l = line(i);
            if i % 97 == 0 {
                let (a, b) = l.split_at(3);
                f.write_all(a.as_bytes()).unwrap();
                f.write_all(format!("{b}\n").as_bytes()).unwrap();
            } else {
                writeln!(f, "{l}").unwrap();
            }
            if i % 700 == 0 {
                wait_seen(i);
            }
            if i % 700 == 699 {
                fs::rename(&app, dir.join(format!("app.{i}.rotated"))).unwrap();
                writeln!(f, "late-{i}").unwrap();
                f = File::create(&app).unwrap();
            }
        }
    });
    let mut got = Vec::new();
    let mut held = Vec::new();
    src.collect_with(
        &mut got,
        &mut held,
        |b| {
            for e in b {
                if let Some(i) = e
                    .body
                    .strip_prefix(b"w-")
                    .and_then(|r| std::str::from_utf8(&r[..6]).ok())
                    .and_then(|n| n.parse::<i64>().ok())
                {
                    seen.fetch_max(i, Ordering::AcqRel);
                }
            }
            Some(DeliveryStatus::Delivered)
        },
        has_all(&want),
    )
    .await;
    tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    src.settle(&mut got, Duration::from_millis(500)).await;
    src.stop(&mut got).await;
    assert_eq!(bodies(&got), want);
}

/// With one handle for two files the idle one is closed; it is then
/// deleted and a new file created under its name (often reusing the inode).
/// The new content must be read from its start, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreated_file_behind_closed_handle() -> MtTest {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(&[glob(logs.path(), "*.log")]);
    cfg.max_open_files = 1;
    let x = logs.path().join("x.log");
    let y = logs.path().join("y.log");
    let mut all = lines("x-old-content", 0..20);
    append(&x, &all);
    let mut src = start(&cfg, data.path());
    let mut got = Vec::new();
    src.collect(&mut got, has_all(&strings(&all))).await;
    let ys = lines("y", 0..5);
    append(&y, &ys);
    all.extend(ys);
    src.collect(&mut got, has_all(&strings(&all))).await;
    let old_ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&x).unwrap());
    fs::remove_file(&x).unwrap();
    let new = lines("X", 0..3);
    append(&x, &new);
    all.extend(new);
    let new_ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&x).unwrap());
    src.collect(&mut got, has_all(&strings(&all))).await;
    src.settle(&mut got, Duration::from_millis(500)).await;
    src.stop(&mut got).await;
    assert_eq!(
        bodies(&got),
        strings(&all),
        "inode reused: {}",
        old_ino == new_ino
    );
    let first_new = got.iter().find(|g| g.body == b"X-00000").unwrap();
    assert_eq!(first_new.offset, 0);
}

/// Rotated (renamed to a name the globs do not match) while the agent was
/// stopped, with lines unacknowledged and lines not yet read: on restart
/// the file is found again by inode in its directory and read to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_rotated_while_stopped_is_read_to_its_end() -> MtTest {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(&[glob(logs.path(), "*.log")]);
    cfg.read_batch_bytes = 100;
    let app = logs.path().join("app.log");
    let first = lines("first", 0..30);
    append(&app, &first);
    let mut src = start(&cfg, data.path());
    let mut got = Vec::new();
    let mut held = Vec::new();
    let mut n = 0;
    src.collect_with(
        &mut got,
        &mut held,
        |_| {
            n += 1;
            (n <= 2).then_some(DeliveryStatus::Delivered)
        },
        has_all(&strings(&first)),
    )
    .await;
    let resend: Vec<String> = held
        .iter()
        .flatten()
        .map(|e| String::from_utf8(e.body.to_vec()).unwrap())
        .collect();
    assert!(!resend.is_empty());
    src.shutdown.cancel();
    drop(held);
    src.stop(&mut got).await;
    assert_eq!(bodies(&got), strings(&first));

    // logrotate while stopped: rename, the writer adds a few more lines to
    // its old handle, a new file appears.
    let rotated = logs.path().join("app.log.1");
    fs::rename(&app, &rotated).unwrap();
    let late = lines("late", 0..5);
    append(&rotated, &late);
    let new = lines("new", 0..5);
    append(&app, &new);

    let mut src = start(&cfg, data.path());
    let mut again = Vec::new();
    let mut want = resend.clone();
    want.extend(late);
    want.extend(new);
    src.collect(&mut again, has_all(&strings(&want))).await;
    src.settle(&mut again, Duration::from_millis(500)).await;
    src.stop(&mut again).await;
    assert_eq!(bodies(&again), strings(&want));
    assert!(
        again
            .iter()
            .filter(|g| g.body.starts_with(b"late"))
            .all(|g| g.path == rotated)
    );
}

#[test]
fn build_rejects_invalid_config() {
    let cx = SourceContext {
        name: Arc::from("logs"),
        globals: Globals {
            data_dir: PathBuf::from("/nonexistent"),
            ..Globals::default()
        },
        context: Arc::default(),
        shutdown: CancellationToken::new(),
        out: Output::new(),
    };
    let err = build(&FileSourceConfig::new(vec![]), cx).err().unwrap();
    assert!(err.to_string().contains("`include`"), "{err}");
}

mod model {
    //! Random interleavings of appends, rename rotations, copytruncates and
    //! restarts (with a random part of the batches left unacknowledged),
    //! against a model of exactly which lines must arrive how often.

    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Append(usize),
        /// The writer still holds the rotated file: append to the newest one.
        AppendRotated(usize),
        Rotate,
        /// Rename to a name the glob does not match (read to its end
        /// through the open handle, or found by inode after a restart).
        RotateAway,
        CopyTruncate,
        /// Restart, acknowledging only the first `n` batches received from
        /// now on until every line so far has arrived.
        Restart(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1usize..40).prop_map(Op::Append),
            1 => (1usize..10).prop_map(Op::AppendRotated),
            2 => Just(Op::Rotate),
            1 => Just(Op::RotateAway),
            1 => Just(Op::CopyTruncate),
            2 => (0usize..4).prop_map(Op::Restart),
        ]
    }

    /// Everything received so far (earlier runs plus `got`) covers `want`.
    fn covered(history: &[Got], got: &[Got], want: &BTreeMap<String, usize>) -> bool {
        let mut have = bodies(history);
        for (k, n) in bodies(got) {
            *have.entry(k).or_insert(0) += n;
        }
        want.iter()
            .all(|(k, n)| have.get(k).copied().unwrap_or(0) >= *n)
    }

    async fn run(ops: Vec<Op>) {
        let logs = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let app = logs.path().join("app.log");
        // Rotated files stay matched (`app.log.N`), so unacknowledged lines
        // in them are found again after a restart; copies are not matched.
        let mut cfg = config(&[glob(logs.path(), "app.log*")]);
        cfg.read_batch_bytes = 200;
        // Few handles: closing and reopening by identity is exercised too.
        cfg.max_open_files = 2;
        let mut expected: BTreeMap<String, usize> = BTreeMap::new();
        let mut next = 0usize;
        let mut rotations = 0;
        let mut away = 0;
        // The first line of the current `app.log`, until it was seen.
        let mut current_first: Option<String> = None;
        let mut src = start(&cfg, data.path());
        // Lines received by earlier runs of the source, and by this one.
        let mut history: Vec<Got> = Vec::new();
        let mut got: Vec<Got> = Vec::new();
        for op in ops {
            match op {
                Op::Append(n) => {
                    let ls = lines("m", next..next + n);
                    current_first.get_or_insert_with(|| ls[0].clone());
                    next += n;
                    append(&app, &ls);
                    for l in ls {
                        *expected.entry(l).or_insert(0) += 1;
                    }
                }
                Op::AppendRotated(n) => {
                    if rotations > 0 {
                        let ls = lines("r", next..next + n);
                        next += n;
                        append(&logs.path().join(format!("app.log.{rotations}")), &ls);
                        for l in ls {
                            *expected.entry(l).or_insert(0) += 1;
                        }
                    }
                }
                Op::RotateAway => {
                    // A file renamed away before the source ever saw it
                    // cannot be read (inherent): wait until its first line
                    // arrived, then rename with the rest possibly unread.
                    if let Some(first) = current_first.take() {
                        let mut held = Vec::new();
                        src.collect_with(
                            &mut got,
                            &mut held,
                            |_| Some(DeliveryStatus::Delivered),
                            |g| {
                                g.iter().any(|g| g.body == first.as_bytes())
                                    || history.iter().any(|g| g.body == first.as_bytes())
                            },
                        )
                        .await;
                    }
                    if app.exists() {
                        away += 1;
                        fs::rename(&app, logs.path().join(format!("away.{away}"))).unwrap();
                    }
                }
                Op::Rotate => {
                    current_first = None;
                    if app.exists() {
                        rotations += 1;
                        fs::rename(&app, logs.path().join(format!("app.log.{rotations}"))).unwrap();
                    }
                }
                Op::CopyTruncate => {
                    // Copytruncate loses what was not read before the
                    // truncation (inherent); the model waits for it.
                    let mut held = Vec::new();
                    src.collect_with(
                        &mut got,
                        &mut held,
                        |_| Some(DeliveryStatus::Delivered),
                        |g| covered(&history, g, &expected),
                    )
                    .await;
                    current_first = None;
                    if app.exists() {
                        fs::copy(&app, logs.path().join("copy.txt")).unwrap();
                        OpenOptions::new()
                            .write(true)
                            .open(&app)
                            .unwrap()
                            .set_len(0)
                            .unwrap();
                    }
                }
                Op::Restart(acked) => {
                    let mut held = Vec::new();
                    let mut n = 0;
                    src.collect_with(
                        &mut got,
                        &mut held,
                        |_| {
                            n += 1;
                            (n <= acked).then_some(DeliveryStatus::Delivered)
                        },
                        |g| covered(&history, g, &expected),
                    )
                    .await;
                    // Per file, everything from the first unacknowledged
                    // batch on is read again.
                    let mut from: BTreeMap<String, u64> = BTreeMap::new();
                    for b in &held {
                        let id = b[0].origin.file_id.as_deref().unwrap().to_string();
                        let off = offset_of(&b[0]);
                        let e = from.entry(id).or_insert(off);
                        *e = (*e).min(off);
                    }
                    src.shutdown.cancel();
                    drop(held);
                    src.stop(&mut got).await;
                    for g in &got {
                        if from.get(&g.file_id).is_some_and(|f| g.offset >= *f) {
                            *expected
                                .entry(String::from_utf8(g.body.clone()).unwrap())
                                .or_insert(0) += 1;
                        }
                    }
                    history.append(&mut got);
                    src = start(&cfg, data.path());
                }
            }
        }
        let mut held = Vec::new();
        src.collect_with(
            &mut got,
            &mut held,
            |_| Some(DeliveryStatus::Delivered),
            |g| covered(&history, g, &expected),
        )
        .await;
        src.settle(&mut got, Duration::from_millis(300)).await;
        src.stop(&mut got).await;
        history.append(&mut got);
        assert_eq!(bodies(&history), expected);
    }

    proptest! {
        // PROPTEST_CASES=200 for a longer hunt.
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(16),
            max_shrink_iters: 20,
            ..ProptestConfig::default()
        })]
        #[test]
        fn random_rotations_truncations_and_restarts(ops in proptest::collection::vec(op(), 1..12)) {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(run(ops));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_small_writes_is_read_in_rounds_min_read_interval_apart() -> MtTest {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let app = logs.path().join("app.log");
    let mut c = config(&[glob(logs.path(), "*.log")]);
    // Only notifications wake the source, and the interval is far longer
    // than the whole stream of writes below takes.
    c.poll_interval = Duration::from_secs(3600);
    c.min_read_interval = Duration::from_secs(2);
    append(&app, &lines("a", 0..1));
    let mut src = start(&c, data.path());
    let mut got = Vec::new();
    src.collect(&mut got, has_all(&strings(&lines("a", 0..1))))
        .await;
    // Quiet for longer than the interval: the next write is read at once.
    tokio::time::sleep(c.min_read_interval + Duration::from_millis(200)).await;
    let stream = lines("b", 0..20);
    let writer = {
        let (app, stream) = (app.clone(), stream.clone());
        std::thread::spawn(move || {
            for line in stream {
                append(&app, &[line]);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let mut batch_sizes = Vec::new();
    let mut held = Vec::new();
    src.collect_with(
        &mut got,
        &mut held,
        |batch| {
            batch_sizes.push(batch.len());
            Some(DeliveryStatus::Delivered)
        },
        has_all(&strings(&stream)),
    )
    .await;
    writer.join().unwrap();
    src.stop(&mut got).await;
    // The first write's round, then one round for everything written
    // during the interval that followed it.
    assert!(batch_sizes.len() <= 2, "batches: {batch_sizes:?}");
    let mut all = lines("a", 0..1);
    all.extend(stream);
    let in_order: Vec<String> = got
        .iter()
        .map(|g| String::from_utf8_lossy(&g.body).into_owned())
        .collect();
    assert_eq!(in_order, all);
}

/// `file_attributes` chooses what every line carries; acknowledgements and the
/// checkpoint do not depend on the attributes, so a restart still resends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_carry_only_the_chosen_file_attributes() -> MtTest {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = logs.path().join("job.log");
    let mut cfg = config(&[glob(logs.path(), "*.log")]);
    cfg.file_attributes = vec![FileAttribute::Name];
    let mut received = Vec::new();
    for (round, want) in [lines("first", 0..50), lines("second", 0..5)]
        .into_iter()
        .enumerate()
    {
        append(&path, &want);
        let mut src = start(&cfg, data.path());
        let mut bodies_seen = Vec::new();
        let give_up = tokio::time::Instant::now() + DEADLINE;
        while bodies_seen.len() < want.len() {
            let mut batch = tokio::time::timeout_at(give_up, src.rx.recv())
                .await
                .expect("the lines arrive")
                .unwrap();
            for ev in batch.iter() {
                let keys: Vec<&str> = ev.attributes.iter().map(|(k, _)| k).collect();
                assert_eq!(keys, ["log.file.name"], "round {round}");
                assert_eq!(
                    ev.attributes.get("log.file.name"),
                    Some(&Value::from("job.log"))
                );
                // the origin still names the file, for findings and the checkpoint
                assert_eq!(ev.origin.path.as_deref(), Some(path.as_path()));
                bodies_seen.push(String::from_utf8(ev.body.to_vec()).unwrap());
            }
            crate::event::settle_all(&mut batch, DeliveryStatus::Delivered);
        }
        src.shutdown.cancel();
        while let Some(mut batch) = tokio::time::timeout(DEADLINE, src.rx.recv())
            .await
            .expect("source closes its output")
        {
            bodies_seen.extend(
                batch
                    .iter()
                    .map(|e| String::from_utf8(e.body.to_vec()).unwrap()),
            );
            crate::event::settle_all(&mut batch, DeliveryStatus::Delivered);
        }
        src.task.await.unwrap().unwrap();
        assert_eq!(bodies_seen, want, "round {round}: each line once, in order");
        received.extend(bodies_seen);
    }
    assert_eq!(received.len(), 55);
}

#[test]
fn file_attributes_are_checked_by_name() {
    use serde::Deserialize;
    let parse = |text: &str| {
        let table: toml::Table = toml::from_str(text).unwrap();
        FileSourceConfig::deserialize(toml::Value::Table(table))
    };
    let ok = parse(
        "include = ['/x/*.log']\nfile_attributes = ['log.file.path', 'tailguard.file.offset']",
    )
    .unwrap();
    assert_eq!(
        ok.file_attributes,
        [FileAttribute::Path, FileAttribute::Offset]
    );
    assert_eq!(
        parse("include = ['/x/*.log']").unwrap().file_attributes,
        FileAttribute::ALL
    );
    let err = parse("include = ['/x/*.log']\nfile_attributes = ['log.file.nme']")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("log.file.nme") && err.contains("log.file.name"),
        "{err}"
    );
    let mut twice = FileSourceConfig::new(vec!["/x/*.log".into()]);
    twice.file_attributes = vec![FileAttribute::Id, FileAttribute::Id];
    let err = twice.validate().unwrap_err();
    assert!(
        err.contains("`file_attributes` lists \"tailguard.file.id\" twice"),
        "{err}"
    );
}
