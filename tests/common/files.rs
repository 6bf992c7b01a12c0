//! Helpers for the `file` source tests: an agent running the real binary
//! with a `file` source and a `file` sink, the sink's records parsed, and
//! multiset comparisons that say exactly what is missing or duplicated.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine;

use super::{collect_stderr, tailguard, write};

/// The options every test's file source uses, so that rotations and
/// unterminated lines settle quickly.
pub const FAST: &str = "poll_interval = \"100ms\"\ntrailing_line_timeout = \"200ms\"\n";

/// One record written by the `file` sink, flattened for assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The line's exact bytes (`body_base64` when present, else `body`).
    pub bytes: Vec<u8>,
    /// The `body` field as written (lossy for invalid UTF-8).
    pub body: String,
    pub has_base64: bool,
    pub source: String,
    pub path: String,
    pub file_id: String,
    pub offset: u64,
    pub truncated: bool,
}

impl Record {
    /// What identifies a line uniquely: its file's id and its offset.
    pub fn key(&self) -> (String, u64) {
        (self.file_id.clone(), self.offset)
    }
}

pub fn parse_record(line: &str) -> Result<Record, String> {
    let json: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line:.200}"))?;
    let attrs = &json["attributes"];
    let body = json["body"]
        .as_str()
        .ok_or_else(|| format!("no body: {line:.200}"))?
        .to_string();
    let b64 = json["body_base64"].as_str();
    let bytes = match b64 {
        Some(b) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| format!("bad body_base64 ({e})"))?,
        None => body.as_bytes().to_vec(),
    };
    let offset = attrs["tailguard.file.offset"]
        .as_u64()
        .ok_or_else(|| format!("no tailguard.file.offset: {line:.200}"))?;
    Ok(Record {
        bytes,
        body,
        has_base64: b64.is_some(),
        source: json["source"].as_str().unwrap_or_default().to_string(),
        path: attrs["log.file.path"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        file_id: attrs["tailguard.file.id"]
            .as_str()
            .ok_or_else(|| format!("no tailguard.file.id: {line:.200}"))?
            .to_string(),
        offset,
        truncated: attrs["tailguard.truncated"].as_bool() == Some(true),
    })
}

/// Every record in a file sink's output; every line must parse.
pub fn records(out: &Path) -> Vec<Record> {
    let Ok(text) = std::fs::read(out) else {
        return Vec::new();
    };
    let text = String::from_utf8(text).expect("the file sink writes UTF-8");
    let mut records = Vec::new();
    // A line still being written (no newline yet) is not a record yet.
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    for line in complete.lines() {
        records.push(parse_record(line).unwrap_or_else(|e| panic!("{e}")));
    }
    records
}

/// The number of complete records in a file sink's output (cheap: counts
/// newlines, for polling).
pub fn count(out: &Path) -> usize {
    std::fs::read(out).map(|b| memchr_count(&b)).unwrap_or(0)
}

fn memchr_count(b: &[u8]) -> usize {
    b.iter().filter(|c| **c == b'\n').count()
}

/// A line as shown in failure messages: long lines are abbreviated.
pub fn show(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() > 80 {
        format!(
            "{}… ({} bytes)",
            text.chars().take(60).collect::<String>(),
            bytes.len()
        )
    } else {
        format!("{text:?}")
    }
}

/// Asserts that `got` is exactly the multiset `expected`: nothing missing,
/// nothing duplicated, nothing unexpected. The failure lists each kind.
pub fn assert_same_lines(what: &str, got: &[Vec<u8>], expected: &[Vec<u8>]) {
    let mut want: BTreeMap<&[u8], i64> = BTreeMap::new();
    for e in expected {
        *want.entry(e).or_default() += 1;
    }
    let mut have: BTreeMap<&[u8], i64> = BTreeMap::new();
    for g in got {
        *have.entry(g).or_default() += 1;
    }
    let mut missing = Vec::new();
    let mut duplicated = Vec::new();
    let mut unexpected = Vec::new();
    for (line, &n) in &want {
        let h = have.get(line).copied().unwrap_or(0);
        if h < n {
            missing.push(format!("{} (wanted {n}, got {h})", show(line)));
        } else if h > n {
            duplicated.push(format!("{} (wanted {n}, got {h})", show(line)));
        }
    }
    for (line, &h) in &have {
        if !want.contains_key(line) {
            unexpected.push(format!("{} (x{h})", show(line)));
        }
    }
    if missing.is_empty() && duplicated.is_empty() && unexpected.is_empty() {
        return;
    }
    let list = |v: &[String]| {
        let mut s: Vec<String> = v.iter().take(20).cloned().collect();
        if v.len() > 20 {
            s.push(format!("… and {} more", v.len() - 20));
        }
        s.join("\n    ")
    };
    panic!(
        "{what}: received {} lines, expected {}\n  missing ({}):\n    {}\n  duplicated ({}):\n    {}\n  unexpected ({}):\n    {}",
        got.len(),
        expected.len(),
        missing.len(),
        list(&missing),
        duplicated.len(),
        list(&duplicated),
        unexpected.len(),
        list(&unexpected),
    );
}

/// The exact bytes of every record.
pub fn lines_of(records: &[Record]) -> Vec<Vec<u8>> {
    records.iter().map(|r| r.bytes.clone()).collect()
}

/// Text lines as bytes, for [`assert_same_lines`].
pub fn texts<S: AsRef<str>>(lines: &[S]) -> Vec<Vec<u8>> {
    lines
        .iter()
        .map(|l| l.as_ref().as_bytes().to_vec())
        .collect()
}

/// A test's directory: `logs/` for the tailed files, `data/` for the
/// agent's state, `out.jsonl` for the file sink, `agent.toml`.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub logs: PathBuf,
    pub data: PathBuf,
    pub out: PathBuf,
    pub config: PathBuf,
}

impl Setup {
    /// A file source `in` reading `logs/**/*.log` with [`FAST`] timings and
    /// `source_extra` options, into a file sink `out`.
    pub fn new(source_extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let out = dir.path().join("out.jsonl");
        let text = format!(
            "[sources.in]\ntype = \"file\"\ninclude = [\"{}/**/*.log\"]\n{FAST}{source_extra}\n\n{}",
            logs.display(),
            file_sink(&["in"], &out),
        );
        Self::with_config(dir, &text)
    }

    /// A setup with a configuration of the test's own (`logs` and `out` are
    /// still where [`Setup::new`] puts them).
    pub fn with_config(dir: tempfile::TempDir, config: &str) -> Self {
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let out = dir.path().join("out.jsonl");
        let config_path = write(&dir.path().join("agent.toml"), config);
        Self {
            dir,
            logs,
            data,
            out,
            config: config_path,
        }
    }

    pub fn start(&self) -> Agent {
        Agent::start(&self.data, &self.config)
    }

    pub fn records(&self) -> Vec<Record> {
        records(&self.out)
    }

    /// Waits until the sink holds at least `n` records.
    pub fn wait_records(&self, agent: &Agent, n: usize) {
        let mut last = 0;
        let what = format!("{n} records in {}", self.out.display());
        wait_for_agent(agent, &what, || {
            last = count(&self.out);
            last >= n
        });
    }

    /// The source `in`'s checkpoint file, as (id -> offset).
    pub fn checkpoints(&self, source: &str) -> HashMap<String, u64> {
        checkpoints(&self.data, source)
    }
}

/// A `[sinks.out]` file sink reading `inputs`, writing to `out`.
pub fn file_sink(inputs: &[&str], out: &Path) -> String {
    let inputs: Vec<String> = inputs.iter().map(|i| format!("\"{i}\"")).collect();
    format!(
        "[sinks.out]\ntype = \"file\"\ninputs = [{}]\npath = \"{}\"\n",
        inputs.join(", "),
        out.display()
    )
}

/// `data_dir/<source>/checkpoints.json` as (file id -> acknowledged offset).
pub fn checkpoints(data: &Path, source: &str) -> HashMap<String, u64> {
    let path = data.join(source).join("checkpoints.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return HashMap::new();
    };
    let doc: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {text}", path.display()));
    doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["offset"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The real agent, running until stopped or killed (killed when dropped).
pub struct Agent {
    child: Option<Child>,
    pub log: Arc<Mutex<String>>,
}

impl Agent {
    /// Starts `tailguard run --config CONFIG` with state in `data`, and
    /// waits until its topology has started.
    pub fn start(data: &Path, config: &Path) -> Agent {
        let mut child = tailguard(data)
            .args([
                "run",
                "--log-level",
                "info,tailguard::sources=debug",
                "--config",
            ])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = collect_stderr(&mut child);
        let agent = Agent {
            child: Some(child),
            log,
        };
        wait_for_agent(&agent, "the agent to start", || {
            agent.log().contains("\"started\"")
        });
        agent
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Exited already (crashed)?
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    /// SIGTERM, then waits; asserts a clean exit (0: everything read was
    /// delivered). Returns the agent's log.
    pub fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        super::signal(&child, "TERM");
        let status = child.wait().unwrap();
        // Let the stderr thread catch up with the last lines.
        let log = self.log();
        assert_eq!(status.code(), Some(0), "agent exit status; log:\n{log}");
        log
    }

    /// SIGKILL, then waits for the process to be gone.
    pub fn kill(mut self) -> String {
        let mut child = self.child.take().unwrap();
        super::signal(&child, "KILL");
        let _ = child.wait();
        self.log()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// [`wait_for`], but failing at once (with the agent's log) if the agent
/// died, and showing the log when the deadline passes.
pub fn wait_for_agent(agent: &Agent, what: &str, mut done: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    let deadline = std::time::Duration::from_secs(60);
    loop {
        if done() {
            return;
        }
        if started.elapsed() > deadline {
            panic!(
                "timed out waiting for {what}; agent log:\n{}",
                tail(&agent.log(), 40)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The last `n` lines of a log.
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Appends `text` to `path` (creating it and its directories).
pub fn append(path: &Path, text: impl AsRef<[u8]>) {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_ref()).unwrap();
}

/// `n` numbered lines tagged `tag`, each with a newline.
pub fn numbered(tag: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{tag} line {i:06}")).collect()
}

/// The lines joined, each followed by `\n`.
pub fn joined<S: AsRef<str>>(lines: &[S]) -> String {
    let mut s = String::new();
    for l in lines {
        s.push_str(l.as_ref());
        s.push('\n');
    }
    s
}

/// Asserts that each record's `tailguard.file.offset` points at its bytes in
/// the file named by its `log.file.path` (for files still in place); with
/// `whole_lines`, also that each record not cut at `max_line_bytes` ends
/// where its line does (not so for lines sent in parts after a pause).
pub fn assert_offsets_point_at_lines(records: &[Record], whole_lines: bool) {
    let mut files: HashMap<String, Vec<u8>> = HashMap::new();
    for r in records {
        let content = files.entry(r.path.clone()).or_insert_with(|| {
            std::fs::read(&r.path).unwrap_or_else(|e| panic!("{}: {e}", r.path))
        });
        let start = r.offset as usize;
        let end = start + r.bytes.len();
        assert!(
            end <= content.len() && content[start..end] == r.bytes[..],
            "{} at offset {} of {} is not what the file holds there",
            show(&r.bytes),
            r.offset,
            r.path
        );
        if whole_lines && !r.truncated {
            let next = content.get(end).copied();
            assert!(
                matches!(next, None | Some(b'\n') | Some(b'\r')),
                "{} at offset {} of {} is not a whole line (next byte {next:?})",
                show(&r.bytes),
                r.offset,
                r.path
            );
        }
    }
}
