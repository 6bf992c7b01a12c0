//! The `file` source against real files, through the real binary, with a
//! `file` sink as the receiver: one test per fault. Each asserts the exact
//! multiset of lines received (nothing missing, nothing duplicated), or,
//! after a SIGKILL, that the only duplicates are of lines that were not
//! acknowledged when the agent died, and counts them.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::files::*;
use common::otlp::{flatten, grpc_receiver};
use common::wait_for;

fn ino(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

/// Opens `path` for appending, like a logger holding its file open.
fn open_append(path: &Path) -> std::fs::File {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

fn put(file: &mut std::fs::File, lines: &[String]) {
    file.write_all(joined(lines).as_bytes()).unwrap();
}

#[test]
fn rename_and_create_rotation_loses_and_repeats_nothing() {
    let s = Setup::new("");
    let agent = s.start();
    let path = s.logs.join("app.log");
    let mut expected: Vec<String> = Vec::new();
    let mut writer = open_append(&path);
    for generation in 0..3 {
        // Lines the agent reads from the live file.
        let live = numbered(&format!("gen{generation} live"), 0..200);
        put(&mut writer, &live);
        expected.extend(live);
        s.wait_records(&agent, expected.len());
        // Rotate: rename away (out of the glob), keep writing through the
        // old handle as a logger does until it reopens, then create anew.
        // Names outside the glob and, as with logrotate's `dateext`,
        // names the glob matches too (the file must not be read again).
        let rotated = if generation == 1 {
            s.logs.join("app-20261122.log")
        } else {
            s.logs.join(format!("app.log.{}", generation + 1))
        };
        std::fs::rename(&path, &rotated).unwrap();
        let late = numbered(&format!("gen{generation} after-rename"), 0..50);
        put(&mut writer, &late);
        expected.extend(late);
        writer = open_append(&path);
        let fresh = numbered(&format!("gen{generation} new-file"), 0..30);
        put(&mut writer, &fresh);
        expected.extend(fresh);
    }
    s.wait_records(&agent, expected.len());
    let log = agent.stop();
    let got = s.records();
    assert_same_lines("rename+create rotation", &lines_of(&got), &texts(&expected));
    // Every generation of the file has its own id; lines of one file share it.
    let ids: HashSet<&str> = got.iter().map(|r| r.file_id.as_str()).collect();
    assert_eq!(ids.len(), 4, "four files were read: {ids:?}");
    assert!(log.contains("file rotated away"), "{}", tail(&log, 30));
}

#[test]
fn copytruncate_loses_and_repeats_nothing() {
    let s = Setup::new("");
    let agent = s.start();
    let path = s.logs.join("app.log");
    let mut expected = Vec::new();
    for round in 0..3 {
        // Longer and shorter contents, so both "shrank" and "first bytes
        // changed" are seen.
        let n = if round == 1 { 40 } else { 300 };
        let lines = numbered(&format!("copytruncate round{round}"), 0..n);
        append(&path, joined(&lines));
        expected.extend(lines);
        s.wait_records(&agent, expected.len());
        // copytruncate: copy (to a name outside the glob), then truncate in
        // place; the writer carries on at offset 0 (O_APPEND).
        std::fs::copy(&path, s.logs.join(format!("app.log.{round}"))).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(0).unwrap();
    }
    let last = numbered("after the last truncation", 0..500);
    append(&path, joined(&last));
    expected.extend(last);
    s.wait_records(&agent, expected.len());
    let log = agent.stop();
    let got = s.records();
    assert_same_lines("copytruncate", &lines_of(&got), &texts(&expected));
    assert!(
        log.contains("reading file from the start"),
        "{}",
        tail(&log, 30)
    );
    let ids: HashSet<&str> = got.iter().map(|r| r.file_id.as_str()).collect();
    assert_eq!(
        ids.len(),
        4,
        "a new generation of the id per truncation: {ids:?}"
    );
}

#[test]
fn delete_and_recreate_loses_and_repeats_nothing() {
    let s = Setup::new("");
    let agent = s.start();
    let path = s.logs.join("app.log");
    let mut expected = Vec::new();
    for round in 0..3 {
        let mut writer = open_append(&path);
        let first = numbered(&format!("round{round} seen"), 0..200);
        put(&mut writer, &first);
        expected.extend(first);
        s.wait_records(&agent, expected.len());
        // More lines, then delete at once: they are read through the
        // agent's handle; then a new file at the same path.
        let unread = numbered(&format!("round{round} written just before delete"), 0..100);
        put(&mut writer, &unread);
        expected.extend(unread);
        drop(writer);
        std::fs::remove_file(&path).unwrap();
        let fresh = numbered(&format!("round{round} recreated"), 0..50);
        append(&path, joined(&fresh));
        expected.extend(fresh);
    }
    s.wait_records(&agent, expected.len());
    agent.stop();
    assert_same_lines(
        "delete+recreate",
        &lines_of(&s.records()),
        &texts(&expected),
    );
}

#[test]
fn symlink_retarget_loses_and_repeats_nothing() {
    let s = Setup::new("");
    // The targets live outside the glob; only the link matches it.
    let targets = s.dir.path().join("targets");
    std::fs::create_dir_all(&targets).unwrap();
    let link = s.logs.join("current.log");
    let mut expected = Vec::new();
    let first = targets.join("job-0.txt");
    append(&first, joined(&numbered("job0 before start", 0..100)));
    expected.extend(numbered("job0 before start", 0..100));
    std::os::unix::fs::symlink(&first, &link).unwrap();
    let agent = s.start();
    s.wait_records(&agent, expected.len());
    let mut previous = first;
    for job in 1..4 {
        // More lines in the old target, then point the link at a new file
        // atomically (a new link renamed over the old one).
        let late = numbered(&format!("job{} late", job - 1), 0..80);
        append(&previous, joined(&late));
        expected.extend(late);
        let next = targets.join(format!("job-{job}.txt"));
        let lines = numbered(&format!("job{job} new target"), 0..120);
        append(&next, joined(&lines));
        expected.extend(lines);
        let tmp = s.logs.join("current.tmp");
        std::os::unix::fs::symlink(&next, &tmp).unwrap();
        std::fs::rename(&tmp, &link).unwrap();
        s.wait_records(&agent, expected.len());
        previous = next;
    }
    // The old target keeps being read while it grows within the grace.
    agent.stop();
    let got = s.records();
    assert_same_lines("symlink retarget", &lines_of(&got), &texts(&expected));
    let ids: HashSet<&str> = got.iter().map(|r| r.file_id.as_str()).collect();
    assert_eq!(ids.len(), 4, "one id per target: {ids:?}");
}

/// Deletes `old` and creates files under a name outside the glob until one
/// gets `old`'s inode number, then renames it to `new`. Returns false when
/// the file system did not reuse the inode.
fn recreate_with_same_inode(old: &Path, new: &Path, content: &str) -> bool {
    let wanted = ino(old);
    std::fs::remove_file(old).unwrap();
    let mut misses = Vec::new();
    for attempt in 0..64 {
        let candidate = old.with_extension(format!("candidate{attempt}"));
        std::fs::write(&candidate, content).unwrap();
        if ino(&candidate) == wanted {
            std::fs::rename(&candidate, new).unwrap();
            for m in misses {
                let _ = std::fs::remove_file(m);
            }
            return true;
        }
        misses.push(candidate);
    }
    for m in misses {
        let _ = std::fs::remove_file(m);
    }
    false
}

#[test]
fn inode_reuse_while_stopped_is_read_as_a_new_file() {
    let s = Setup::new("");
    let old_path = s.logs.join("build-1.log");
    // Short enough that the whole file is its fingerprint.
    let old = numbered("old build", 0..5);
    append(&old_path, joined(&old));
    let agent = s.start();
    s.wait_records(&agent, 5);
    agent.stop();
    let old_id = s.records()[0].file_id.clone();
    assert_eq!(
        s.checkpoints("in").get(&old_id),
        Some(&(joined(&old).len() as u64))
    );

    // While the agent is stopped the file is deleted and its inode reused by
    // a new, longer file (longer than the old checkpoint, so only the
    // fingerprint can tell).
    let new = numbered("new build with another first line", 0..40);
    let new_path = s.logs.join("build-2.log");
    if !recreate_with_same_inode(&old_path, &new_path, &joined(&new)) {
        eprintln!("SKIPPED: the file system did not reuse the inode in 64 attempts");
        return;
    }
    let agent = s.start();
    let mut expected = old.clone();
    expected.extend(new.clone());
    s.wait_records(&agent, expected.len());
    // Also the other way round: a shorter file on the reused inode.
    let newer = numbered("third", 0..2);
    let newer_path = s.logs.join("build-3.log");
    let log = agent.stop();
    assert!(log.contains("inode reused"), "{}", tail(&log, 30));
    let mut files_read = 2;
    if recreate_with_same_inode(&new_path, &newer_path, &joined(&newer)) {
        expected.extend(newer);
        files_read += 1;
    }
    let agent = s.start();
    s.wait_records(&agent, expected.len());
    agent.stop();
    let got = s.records();
    assert_same_lines("inode reuse", &lines_of(&got), &texts(&expected));
    let ids: HashSet<&str> = got.iter().map(|r| r.file_id.as_str()).collect();
    assert_eq!(
        ids.len(),
        files_read,
        "one id per file on the reused inode: {ids:?}"
    );
}

#[test]
fn a_one_line_file_is_read_once() {
    let s = Setup::new("");
    append(&s.logs.join("one.log"), "the only line\n");
    let agent = s.start();
    s.wait_records(&agent, 1);
    // A second one-line file appears while running, and a restart must not
    // read either again.
    append(&s.logs.join("two.log"), "another only line\n");
    s.wait_records(&agent, 2);
    agent.stop();
    let agent = s.start();
    append(&s.logs.join("three.log"), "a third\n");
    s.wait_records(&agent, 3);
    agent.stop();
    let got = s.records();
    assert_same_lines(
        "one-line files",
        &lines_of(&got),
        &texts(&["the only line", "another only line", "a third"]),
    );
    assert_eq!(got[0].offset, 0);
}

#[test]
fn an_unterminated_last_line_is_sent_once_and_its_rest_on_its_own() {
    let s = Setup::new("");
    let path = s.logs.join("app.log");
    append(&path, "first\nsecond\nno newline yet");
    let agent = s.start();
    // After trailing_line_timeout of quiet, the unterminated line is sent.
    s.wait_records(&agent, 3);
    // Its newline arriving later adds nothing.
    append(&path, "\n");
    append(&path, "fourth\n");
    s.wait_records(&agent, 4);
    // A line finished later: the rest is a line of its own.
    append(&path, "tail");
    s.wait_records(&agent, 5);
    append(&path, " rest of it\nsixth\n");
    s.wait_records(&agent, 7);
    // Across a restart too: held as `mid_line` in the checkpoint.
    append(&path, "before restart");
    s.wait_records(&agent, 8);
    agent.stop();
    append(&path, "\nafter restart\n");
    let agent = s.start();
    s.wait_records(&agent, 9);
    agent.stop();
    let got = s.records();
    assert_same_lines(
        "no trailing newline",
        &lines_of(&got),
        &texts(&[
            "first",
            "second",
            "no newline yet",
            "fourth",
            "tail",
            " rest of it",
            "sixth",
            "before restart",
            "after restart",
        ]),
    );
    assert_offsets_point_at_lines(&got, false);
}

#[test]
fn a_one_mebibyte_line_is_cut_and_flagged_or_kept_whole() {
    // Two sources: `in` with the default max_line_bytes (100 KiB) and `big`
    // allowing 2 MiB, into one sink.
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let big = dir.path().join("big");
    let out = dir.path().join("out.jsonl");
    let config = format!(
        "[sources.in]\ntype = \"file\"\ninclude = [\"{}/**/*.log\"]\n{FAST}\n\
         [sources.big]\ntype = \"file\"\ninclude = [\"{}/**/*.log\"]\nmax_line_bytes = 2097152\n{FAST}\n{}",
        logs.display(),
        big.display(),
        file_sink(&["in", "big"], &out)
    );
    let s = Setup::with_config(dir, &config);
    let agent = s.start();
    let huge: Vec<u8> = (0..1024 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    for path in [s.logs.join("huge.log"), big.join("huge.log")] {
        let mut f = open_append(&path);
        f.write_all(b"before the huge line\n").unwrap();
        // Written in pieces, as a slow writer would.
        for chunk in huge.chunks(100_000) {
            f.write_all(chunk).unwrap();
        }
        f.write_all(b"\nafter the huge line\n").unwrap();
    }
    s.wait_records(&agent, 6);
    agent.stop();
    let got = s.records();
    let of = |source: &str| -> Vec<Record> {
        got.iter().filter(|r| r.source == source).cloned().collect()
    };
    let cut = of("in");
    assert_same_lines(
        "default max_line_bytes",
        &lines_of(&cut),
        &[
            b"before the huge line".to_vec(),
            huge[..102_400].to_vec(),
            b"after the huge line".to_vec(),
        ],
    );
    for r in &cut {
        assert_eq!(
            r.truncated,
            r.bytes.len() == 102_400,
            "flagged only the cut line"
        );
    }
    let whole = of("big");
    assert_same_lines(
        "max_line_bytes = 2 MiB",
        &lines_of(&whole),
        &[
            b"before the huge line".to_vec(),
            huge.clone(),
            b"after the huge line".to_vec(),
        ],
    );
    assert!(whole.iter().all(|r| !r.truncated));
    assert_offsets_point_at_lines(&got, true);
    let after = whole
        .iter()
        .find(|r| r.bytes.starts_with(b"after"))
        .unwrap();
    assert_eq!(
        after.offset,
        21 + huge.len() as u64 + 1,
        "offsets count every byte"
    );
}

#[test]
fn invalid_utf8_arrives_byte_exact() {
    let s = Setup::new("");
    let lines: Vec<Vec<u8>> = vec![
        b"plain ascii".to_vec(),
        b"latin-1 caf\xe9".to_vec(),
        b"\xff\xfe\x00binary\x80".to_vec(),
        "valid utf-8: grüße, 日本".as_bytes().to_vec(),
        b"truncated sequence \xe2\x82".to_vec(),
        b"\x1b[31mANSI colours\x1b[0m, a tab\there, \"quotes\" and \\ backslash".to_vec(),
        b"a NUL \x00 in valid UTF-8, \x01\x7f and \xe2\x80\xa8".to_vec(),
        b"".to_vec(),
    ];
    let mut content = Vec::new();
    for l in &lines {
        content.extend_from_slice(l);
        content.push(b'\n');
    }
    content.extend_from_slice(b"windows line\r\n");
    append(&s.logs.join("mixed.log"), &content);
    let agent = s.start();
    s.wait_records(&agent, lines.len() + 1);
    agent.stop();
    let got = s.records();
    let mut expected = lines.clone();
    expected.push(b"windows line".to_vec());
    assert_same_lines("invalid UTF-8", &lines_of(&got), &expected);
    assert_offsets_point_at_lines(&got, true);
    for r in &got {
        let valid = std::str::from_utf8(&r.bytes).is_ok();
        assert_eq!(
            r.has_base64, !valid,
            "body_base64 exactly when not UTF-8: {r:?}"
        );
        if valid {
            assert_eq!(r.body.as_bytes(), &r.bytes[..]);
        }
    }
}

/// A writer appending numbered lines to `files` files until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<String>>,
    written: Arc<std::sync::atomic::AtomicUsize>,
}

fn start_writer(logs: &Path, files: usize) -> Writer {
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let paths: Vec<PathBuf> = (0..files)
        .map(|f| logs.join(format!("w{f}/stream-{f}.log")))
        .collect();
    let (stop2, written2) = (Arc::clone(&stop), Arc::clone(&written));
    let handle = std::thread::spawn(move || {
        let mut handles: Vec<_> = paths
            .iter()
            .map(|p| {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                open_append(p)
            })
            .collect();
        let mut all = Vec::new();
        let mut i = 0;
        while !stop2.load(Ordering::Relaxed) {
            for (f, h) in handles.iter_mut().enumerate() {
                let mut chunk = String::new();
                for k in 0..20 {
                    let line = format!("file {f} seq {:07} payload {}", i + k, "x".repeat(40));
                    chunk.push_str(&line);
                    chunk.push('\n');
                    all.push(line);
                }
                h.write_all(chunk.as_bytes()).unwrap();
            }
            i += 20;
            written2.store(all.len(), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2));
        }
        all
    });
    Writer {
        stop,
        handle,
        written,
    }
}

impl Writer {
    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// Checks a SIGKILL run: every written line arrived; lines that arrived
/// more than once are allowed only where `allowed_extra` says (how many
/// extra copies each (file id, offset) may legitimately have); returns the
/// number of duplicates.
fn check_at_least_once(
    what: &str,
    written: &[String],
    received: &[(Vec<u8>, (String, u64))],
    allowed_extra: impl Fn(&(String, u64)) -> usize,
) -> usize {
    let got: HashSet<&[u8]> = received.iter().map(|(b, _)| b.as_slice()).collect();
    let missing: Vec<&String> = written
        .iter()
        .filter(|l| !got.contains(l.as_bytes()))
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} lines lost, e.g. {:?}",
        missing.len(),
        written.len(),
        &missing[..missing.len().min(5)]
    );
    let written_set: HashSet<&[u8]> = written.iter().map(|l| l.as_bytes()).collect();
    let mut copies: HashMap<&(String, u64), (usize, &[u8])> = HashMap::new();
    for (body, key) in received {
        assert!(
            written_set.contains(body.as_slice()),
            "{what}: unexpected line {}",
            show(body)
        );
        let e = copies.entry(key).or_insert((0, body.as_slice()));
        e.0 += 1;
        assert_eq!(
            e.1,
            body.as_slice(),
            "{what}: one (id, offset) {key:?}, two bodies"
        );
    }
    let mut duplicates = 0;
    let mut illegitimate = Vec::new();
    for (key, (n, body)) in &copies {
        let extra = n - 1;
        duplicates += extra;
        if extra > allowed_extra(key) {
            illegitimate.push(format!("{} x{n} at {key:?}", show(body)));
        }
    }
    assert!(
        illegitimate.is_empty(),
        "{what}: {} lines duplicated although acknowledged before the kill, e.g.\n  {}",
        illegitimate.len(),
        illegitimate[..illegitimate.len().min(10)].join("\n  ")
    );
    duplicates
}

/// Waits until the source `in` has saved a checkpoint with progress and
/// then until 1,500 more lines arrived, so that the kill falls between
/// checkpoint writes with lines flowing.
fn kill_point(agent: &Agent, data: &Path, mut received: impl FnMut() -> usize) {
    wait_for_agent(agent, "a checkpoint with progress", || {
        checkpoints(data, "in").values().any(|o| *o > 0)
    });
    let then = received();
    wait_for_agent(agent, "more lines", || received() >= then + 1500);
}

/// The file sink's output after a SIGKILL may end in a torn record (its
/// batch was not acknowledged, so its lines are read again): cut it off
/// so the restarted sink appends whole records. Returns whether it did.
fn cut_torn_tail(out: &Path) -> bool {
    let bytes = std::fs::read(out).unwrap_or_default();
    let keep = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if keep == bytes.len() {
        return false;
    }
    let f = std::fs::OpenOptions::new().write(true).open(out).unwrap();
    f.set_len(keep as u64).unwrap();
    true
}

#[test]
fn sigkill_mid_stream_then_restart_loses_nothing_and_repeats_only_unacknowledged_lines() {
    let s = Setup::new("");
    let mut agent = s.start();
    let writer = start_writer(&s.logs, 3);
    kill_point(&agent, &s.data, || count(&s.out));
    assert!(agent.exited().is_none());
    agent.kill();
    // What the agent had recorded as acknowledged when it died.
    let saved = s.checkpoints("in");
    let torn = cut_torn_tail(&s.out);
    let before_restart = s.records().len();
    let agent = s.start();
    let target = writer.written.load(Ordering::Relaxed) + 3000;
    wait_for_agent(&agent, "the writer to go on", || {
        writer.written.load(Ordering::Relaxed) >= target
    });
    let written = writer.finish();
    s.wait_records(&agent, written.len());
    // Settle: nothing more should come; stop cleanly.
    agent.stop();
    let got = s.records();
    let received: Vec<(Vec<u8>, (String, u64))> =
        got.iter().map(|r| (r.bytes.clone(), r.key())).collect();
    let duplicates = check_at_least_once(
        "file sink after SIGKILL",
        &written,
        &received,
        |(id, offset)| {
            // Read again only if past the checkpoint saved before the kill.
            usize::from(saved.get(id).is_none_or(|c| offset >= c))
        },
    );
    assert_offsets_point_at_lines(&got, true);
    let unacknowledged: usize = got[..before_restart]
        .iter()
        .filter(|r| saved.get(&r.file_id).is_none_or(|c| r.offset >= *c))
        .count();
    eprintln!(
        "SIGKILL with file sink: {} lines written, {} received before the kill ({} of them past the saved checkpoint), {} duplicates{}",
        written.len(),
        before_restart,
        unacknowledged,
        duplicates,
        if torn { ", torn last record cut" } else { "" }
    );
    assert!(
        duplicates <= unacknowledged,
        "{duplicates} > {unacknowledged}"
    );
}

/// The records the disk buffer of sink `sink` still holds after its cursor:
/// (file id, offset) of each log record, with multiplicity.
fn undelivered_in_disk_buffer(data: &Path, sink: &str) -> HashMap<(String, u64), usize> {
    use prost::Message;
    let dir = data.join("buffers").join(sink);
    let cursor: Option<(u64, u64)> = std::fs::read_to_string(dir.join("cursor")).ok().map(|t| {
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        (
            v["segment"].as_u64().unwrap(),
            v["offset"].as_u64().unwrap(),
        )
    });
    let mut segments: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let seq = name
                .strip_prefix("segment-")?
                .strip_suffix(".tgq")?
                .parse()
                .ok()?;
            Some((seq, e.path()))
        })
        .collect();
    segments.sort();
    let mut out: HashMap<(String, u64), usize> = HashMap::new();
    for (seq, path) in segments {
        let start = match cursor {
            Some((s, _)) if seq < s => continue,
            Some((s, o)) if seq == s => o as usize,
            _ => 4,
        };
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..4], b"TGQ1");
        let mut at = start;
        while at + 12 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            if at + 12 + len > bytes.len() {
                break; // torn tail: never acknowledged
            }
            let payload = &bytes[at + 12..at + 12 + len];
            at += 12 + len;
            if payload.first() != Some(&0) {
                continue;
            }
            let request =
                opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest::decode(
                    &payload[1..],
                )
                .unwrap();
            for r in flatten(&request) {
                let id = r.attribute("tailguard.file.id").unwrap().to_string();
                let offset: u64 = r
                    .attribute("tailguard.file.offset")
                    .unwrap()
                    .parse()
                    .unwrap();
                *out.entry((id, offset)).or_default() += 1;
            }
        }
    }
    out
}

#[test]
fn sigkill_mid_export_with_a_disk_buffer_loses_nothing_and_repeats_only_unacknowledged_batches() {
    let receiver = grpc_receiver();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let config = format!(
        "[sources.in]\ntype = \"file\"\ninclude = [\"{}/**/*.log\"]\n{FAST}\n\
         [sinks.out]\ntype = \"otlp\"\ninputs = [\"in\"]\nprotocol = \"grpc\"\nendpoint = \"{}\"\n\
         batch = {{ max_events = 200, timeout = \"50ms\" }}\n\
         buffer = {{ type = \"disk\", max_size = \"64MiB\" }}\n",
        logs.display(),
        receiver.grpc_url()
    );
    let s = Setup::with_config(dir, &config);
    let mut agent = s.start();
    let writer = start_writer(&s.logs, 3);
    let received_now = || receiver.log.lock().unwrap().records.len();
    // Two kills: the first while lines flow, the second soon after the
    // restart, while the backlog of the first is being sent again.
    let mut resendable: HashMap<(String, u64), usize> = HashMap::new();
    let mut unacknowledged = 0;
    for kill in 0..2 {
        if kill == 0 {
            kill_point(&agent, &s.data, received_now);
        } else {
            let then = received_now();
            wait_for_agent(&agent, "lines after the restart", || {
                received_now() >= then + 300
            });
        }
        assert!(agent.exited().is_none());
        agent.kill();
        // What was acknowledged at the kill: the source's checkpoint and
        // the buffer's cursor; the rest may come again.
        let saved = s.checkpoints("in");
        let buffered = undelivered_in_disk_buffer(&s.data, "out");
        let mut read_again = HashSet::new();
        for r in receiver.records() {
            let key = otlp_key(&r);
            if saved.get(&key.0).is_none_or(|c| key.1 >= *c) {
                read_again.insert(key);
            }
        }
        eprintln!(
            "SIGKILL {} with otlp disk buffer: {} received so far, {} records undelivered in the buffer, {} received lines past the saved checkpoint",
            kill + 1,
            received_now(),
            buffered.values().sum::<usize>(),
            read_again.len()
        );
        unacknowledged += read_again.len() + buffered.values().sum::<usize>();
        for key in read_again {
            *resendable.entry(key).or_default() += 1;
        }
        for (key, n) in buffered {
            *resendable.entry(key).or_default() += n;
        }
        agent = s.start();
    }
    let target = writer.written.load(Ordering::Relaxed) + 3000;
    wait_for_agent(&agent, "the writer to go on", || {
        writer.written.load(Ordering::Relaxed) >= target
    });
    let written = writer.finish();
    let want: HashSet<&[u8]> = written.iter().map(|l| l.as_bytes()).collect();
    wait_for_agent(&agent, "every line at the receiver", || {
        let got: HashSet<Vec<u8>> = receiver.records().into_iter().map(|r| r.body).collect();
        want.iter().all(|l| got.contains(*l))
    });
    agent.stop();
    let received: Vec<(Vec<u8>, (String, u64))> = receiver
        .records()
        .iter()
        .map(|r| (r.body.clone(), otlp_key(r)))
        .collect();
    let duplicates = check_at_least_once(
        "otlp disk buffer after SIGKILL",
        &written,
        &received,
        |key| resendable.get(key).copied().unwrap_or(0),
    );
    eprintln!(
        "SIGKILL with otlp disk buffer: {} lines written, {} received, {duplicates} duplicates, {unacknowledged} unacknowledged at the kills",
        written.len(),
        received.len(),
    );
    assert!(
        duplicates <= unacknowledged,
        "{duplicates} > {unacknowledged}"
    );
}

/// (`tailguard.file.id`, `tailguard.file.offset`) of a received record.
fn otlp_key(r: &common::otlp::Received) -> (String, u64) {
    let id = r.attribute("tailguard.file.id").unwrap().to_string();
    let offset = r
        .attribute("tailguard.file.offset")
        .unwrap()
        .parse()
        .unwrap();
    (id, offset)
}

#[test]
fn two_thousand_files_in_a_double_star_glob() {
    // More files than max_open_files, so handles are closed and reopened.
    let s = Setup::new("max_open_files = 500\n");
    let path_of = |i: usize| -> PathBuf {
        s.logs
            .join(format!("runner-{}", i % 10))
            .join(format!("job-{}", (i / 10) % 20))
            .join(format!("step-{i:04}.log"))
    };
    let mut expected = Vec::new();
    // Half exist at start, half appear while running (in new directories
    // too), and files the glob does not match are ignored.
    for i in 0..1000 {
        let lines = vec![format!("file {i:04} first"), format!("file {i:04} second")];
        append(&path_of(i), joined(&lines));
        expected.extend(lines);
        append(&path_of(i).with_extension("txt"), "not matched\n");
    }
    let started = Instant::now();
    let agent = s.start();
    for i in 1000..2000 {
        let lines = vec![format!("file {i:04} first"), format!("file {i:04} second")];
        let path = s
            .logs
            .join(format!("late-{}", i % 7))
            .join(format!("step-{i:04}.log"));
        append(&path, joined(&lines));
        expected.extend(lines);
    }
    s.wait_records(&agent, expected.len());
    // One more line in every other file of the first half: the closed
    // handles are reopened and read on from their offsets.
    for i in (0..1000).step_by(2) {
        let line = format!("file {i:04} appended");
        append(&path_of(i), format!("{line}\n"));
        expected.push(line);
    }
    s.wait_records(&agent, expected.len());
    // Rotate 300 of them, most with their handles closed: a last line, then
    // renamed within their directory (out of the glob), then a new file.
    for i in (1..1000).step_by(3).take(300) {
        let path = path_of(i);
        let last = format!("file {i:04} last before rotation");
        append(&path, format!("{last}\n"));
        expected.push(last);
        std::fs::rename(&path, path.with_extension("log.1")).unwrap();
        let fresh = format!("file {i:04} rotated anew");
        append(&path, format!("{fresh}\n"));
        expected.push(fresh);
    }
    // And copytruncate 100 others, most with their handles closed.
    for i in (2..1000).step_by(3).take(100) {
        let path = path_of(i);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        let fresh = format!("file {i:04} truncated anew");
        append(&path, format!("{fresh}\n"));
        expected.push(fresh);
    }
    s.wait_records(&agent, expected.len());
    agent.stop();
    let got = s.records();
    assert_same_lines("2,000 files", &lines_of(&got), &texts(&expected));
    let ids: HashSet<&str> = got.iter().map(|r| r.file_id.as_str()).collect();
    assert_eq!(ids.len(), 2400, "one id per file and per truncation");
    // Files still in place and not truncated: offsets point at their lines.
    let in_place: Vec<Record> = got
        .iter()
        .filter(|r| !r.body.contains("rotat") && !r.body.contains("truncated anew"))
        .filter(|r| {
            let i: usize = r.body[5..9].parse().unwrap();
            !(i < 1000 && (i % 3 == 1 || (i % 3 == 2 && i < 300)))
        })
        .cloned()
        .collect();
    assert_offsets_point_at_lines(&in_place, true);
    eprintln!("2,000 files read in {:?}", started.elapsed());
}

#[test]
fn a_symlink_to_a_file_the_glob_also_matches_is_read_once() {
    let s = Setup::new("");
    let real = s.logs.join("job-1.log");
    let link = s.logs.join("latest.log");
    let first = numbered("job1", 0..100);
    append(&real, joined(&first));
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let agent = s.start();
    let mut expected = first;
    s.wait_records(&agent, expected.len());
    // Growth is read once, and retargeting the link to a second file the
    // glob matches as well changes nothing either.
    let more = numbered("job1 more", 0..100);
    append(&real, joined(&more));
    expected.extend(more);
    let second = s.logs.join("job-2.log");
    let lines = numbered("job2", 0..100);
    append(&second, joined(&lines));
    expected.extend(lines);
    let tmp = s.logs.join("latest.tmp");
    std::os::unix::fs::symlink(&second, &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    s.wait_records(&agent, expected.len());
    let more = numbered("job2 more", 0..100);
    append(&second, joined(&more));
    expected.extend(more);
    s.wait_records(&agent, expected.len());
    agent.stop();
    assert_same_lines(
        "symlink to a matched file",
        &lines_of(&s.records()),
        &texts(&expected),
    );
}

#[test]
fn rotation_while_the_agent_is_stopped_reads_the_rest_of_the_old_file() {
    let s = Setup::new("");
    let path = s.logs.join("app.log");
    let first = numbered("before stop", 0..300);
    append(&path, joined(&first));
    let agent = s.start();
    let mut expected = first;
    s.wait_records(&agent, expected.len());
    agent.stop();
    // While stopped: the file grows, is renamed away and a new one created.
    let unread = numbered("written while stopped", 0..200);
    append(&path, joined(&unread));
    expected.extend(unread);
    std::fs::rename(&path, s.logs.join("app.log.1")).unwrap();
    let fresh = numbered("new file while stopped", 0..50);
    append(&path, joined(&fresh));
    expected.extend(fresh);
    let agent = s.start();
    s.wait_records(&agent, expected.len());
    let log = agent.stop();
    assert_same_lines(
        "rotated while stopped",
        &lines_of(&s.records()),
        &texts(&expected),
    );
    assert!(
        log.contains("found a file rotated while stopped"),
        "{}",
        tail(&log, 30)
    );
}

#[test]
fn truncation_while_the_agent_is_stopped_is_read_from_the_start() {
    let s = Setup::new("");
    let path = s.logs.join("app.log");
    let first = numbered("first content", 0..300);
    append(&path, joined(&first));
    let agent = s.start();
    let mut expected = first;
    s.wait_records(&agent, expected.len());
    agent.stop();
    // Truncated and rewritten with less while stopped; and another file
    // truncated and rewritten with more than before (only the changed
    // first bytes tell).
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(0).unwrap();
    let second = numbered("second content", 0..20);
    append(&path, joined(&second));
    expected.extend(second);
    let agent = s.start();
    s.wait_records(&agent, expected.len());
    agent.stop();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(0).unwrap();
    let third = numbered("third content, longer than the second", 0..100);
    append(&path, joined(&third));
    expected.extend(third);
    let agent = s.start();
    s.wait_records(&agent, expected.len());
    agent.stop();
    assert_same_lines(
        "truncated while stopped",
        &lines_of(&s.records()),
        &texts(&expected),
    );
}

#[test]
fn the_rest_of_a_cut_unterminated_line_is_dropped() {
    let s = Setup::new("max_line_bytes = 1000\n");
    let path = s.logs.join("app.log");
    let long = "y".repeat(5000);
    append(&path, format!("start\n{long}"));
    let agent = s.start();
    s.wait_records(&agent, 2);
    // The rest of the cut line is dropped with it, also across a restart.
    append(&path, &long);
    agent.stop();
    append(&path, format!("{long}\nnext\n"));
    let agent = s.start();
    s.wait_records(&agent, 3);
    agent.stop();
    let got = s.records();
    assert_same_lines(
        "cut unterminated line",
        &lines_of(&got),
        &texts(&["start", &long[..1000], "next"]),
    );
    assert!(
        got.iter()
            .find(|r| r.bytes.len() == 1000)
            .unwrap()
            .truncated
    );
}

/// A CRLF line whose `\n` arrives after `trailing_line_timeout`: the
/// unterminated part is sent when the file goes quiet; the `\r` belongs to
/// the terminator and, as for every other CRLF line, should not be part of
/// the body (it once arrived as `"windows\r"`).
#[test]
fn a_crlf_line_whose_newline_comes_late_is_sent_without_its_carriage_return() {
    let s = Setup::new("");
    let path = s.logs.join("app.log");
    append(&path, "first\r\nwindows\r");
    let agent = s.start();
    s.wait_records(&agent, 2);
    append(&path, "\nlast\r\n");
    s.wait_records(&agent, 3);
    agent.stop();
    assert_same_lines(
        "late \\n of a CRLF line",
        &lines_of(&s.records()),
        &texts(&["first", "windows", "last"]),
    );
}

#[test]
fn a_file_moved_to_another_matched_directory_is_not_read_again() {
    let s = Setup::new("");
    let path = s.logs.join("current/app.log");
    let first = numbered("before move", 0..200);
    append(&path, joined(&first));
    let agent = s.start();
    let mut expected = first;
    s.wait_records(&agent, expected.len());
    let archive = s.logs.join("archive/2026/app.log");
    std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
    std::fs::rename(&path, &archive).unwrap();
    let more = numbered("after move", 0..100);
    append(&archive, joined(&more));
    expected.extend(more);
    s.wait_records(&agent, expected.len());
    agent.stop();
    // And across a restart.
    let agent = s.start();
    let later = numbered("after restart", 0..10);
    append(&archive, joined(&later));
    expected.extend(later);
    s.wait_records(&agent, expected.len());
    agent.stop();
    let got = s.records();
    assert_same_lines("moved within the glob", &lines_of(&got), &texts(&expected));
    let ids: HashSet<&str> = got.iter().map(|r| r.file_id.as_str()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

#[test]
fn unterminated_last_lines_of_deleted_and_rotated_files_are_sent() {
    let s = Setup::new("");
    let deleted = s.logs.join("deleted.log");
    let rotated = s.logs.join("rotated.log");
    append(&deleted, "d1\n");
    append(&rotated, "r1\n");
    let agent = s.start();
    s.wait_records(&agent, 2);
    // Lines the agent has not read yet, the last one unterminated; then the
    // files go away at once.
    append(&deleted, "d2\nd3 unterminated");
    append(&rotated, "r2\nr3 unterminated");
    std::fs::remove_file(&deleted).unwrap();
    std::fs::rename(&rotated, s.logs.join("rotated.log.1")).unwrap();
    s.wait_records(&agent, 6);
    agent.stop();
    assert_same_lines(
        "unterminated last lines of files gone",
        &lines_of(&s.records()),
        &texts(&["d1", "d2", "d3 unterminated", "r1", "r2", "r3 unterminated"]),
    );
}

#[test]
fn a_symlink_pointed_back_at_an_earlier_target_resumes_it() {
    let s = Setup::new("");
    let targets = s.dir.path().join("targets");
    let (a, b) = (targets.join("a.txt"), targets.join("b.txt"));
    let link = s.logs.join("current.log");
    let retarget = |to: &Path| {
        let tmp = s.logs.join("current.tmp");
        std::os::unix::fs::symlink(to, &tmp).unwrap();
        std::fs::rename(&tmp, &link).unwrap();
    };
    let mut expected = Vec::new();
    let mut add = |path: &Path, lines: Vec<String>| {
        append(path, joined(&lines));
        expected.extend(lines);
    };
    add(&a, numbered("a first", 0..100));
    retarget(&a);
    let agent = s.start();
    s.wait_records(&agent, 100);
    add(&b, numbered("b first", 0..100));
    retarget(&b);
    s.wait_records(&agent, 200);
    // Back to a, which grew meanwhile: only the new lines.
    add(&a, numbered("a second", 0..50));
    retarget(&a);
    s.wait_records(&agent, 250);
    agent.stop();
    // And back to b across a restart.
    add(&b, numbered("b second", 0..50));
    retarget(&b);
    let agent = s.start();
    s.wait_records(&agent, 300);
    agent.stop();
    assert_same_lines(
        "A -> B -> A -> B",
        &lines_of(&s.records()),
        &texts(&expected),
    );
}

#[test]
fn sigkill_then_rotation_before_the_restart_loses_nothing() {
    let s = Setup::new("");
    let mut agent = s.start();
    let writer = start_writer(&s.logs, 3);
    kill_point(&agent, &s.data, || count(&s.out));
    assert!(agent.exited().is_none());
    agent.kill();
    let saved = s.checkpoints("in");
    cut_torn_tail(&s.out);
    let before_restart = s.records().len();
    // While the agent is dead the writer goes on, then the files are
    // rotated (renamed out of the glob) and new ones started.
    let target = writer.written.load(Ordering::Relaxed) + 1500;
    wait_for("the writer to go on", || {
        writer.written.load(Ordering::Relaxed) >= target
    });
    let mut written = writer.finish();
    for f in 0..3 {
        let path = s.logs.join(format!("w{f}/stream-{f}.log"));
        std::fs::rename(&path, path.with_extension("log.1")).unwrap();
        let fresh = numbered(&format!("file {f} after rotation"), 0..100);
        append(&path, joined(&fresh));
        written.extend(fresh);
    }
    let agent = s.start();
    s.wait_records(&agent, written.len());
    let log = agent.stop();
    let got = s.records();
    let received: Vec<(Vec<u8>, (String, u64))> =
        got.iter().map(|r| (r.bytes.clone(), r.key())).collect();
    let duplicates = check_at_least_once(
        "SIGKILL, rotation, restart",
        &written,
        &received,
        |(id, offset)| usize::from(saved.get(id).is_none_or(|c| offset >= c)),
    );
    let unacknowledged = got[..before_restart]
        .iter()
        .filter(|r| saved.get(&r.file_id).is_none_or(|c| r.offset >= *c))
        .count();
    eprintln!(
        "SIGKILL then rotation: {} lines, {duplicates} duplicates, {unacknowledged} unacknowledged at the kill",
        written.len()
    );
    assert!(duplicates <= unacknowledged);
    assert!(
        log.contains("found a file rotated while stopped"),
        "{}",
        tail(&log, 30)
    );
}

#[test]
fn file_names_with_spaces_unicode_and_glob_characters_are_read() {
    use std::os::unix::ffi::OsStrExt;
    let s = Setup::new("");
    let names: Vec<std::ffi::OsString> = vec![
        "step 1 - build.log".into(),
        "日本語.log".into(),
        "[brackets] {braces} *star* ?.log".into(),
        std::ffi::OsStr::from_bytes(b"latin-1 \xe9.log").to_os_string(),
    ];
    let mut expected = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let line = format!("line in file {i}");
        append(
            &s.logs.join("dir with space").join(name),
            format!("{line}\n"),
        );
        expected.push(line);
    }
    let agent = s.start();
    s.wait_records(&agent, expected.len());
    agent.stop();
    assert_same_lines("file names", &lines_of(&s.records()), &texts(&expected));
}
