//! Reading the systemd journal through `journalctl --follow --output=json`,
//! as Vector's `journald` source does: `journalctl` is the journal's stable
//! interface (the file format is not), and it is on every systemd host.
//!
//! Entries come in journal order. Each is handed to the caller, which turns
//! it into an event or drops it. The journal cursor of an entry is recorded
//! in `data_dir/journal/<source>.cursor` once that entry and every entry
//! before it are settled (delivered, dropped, or refused), so a restart
//! resumes after the last settled entry: nothing is lost, and at most the
//! unsettled entries are sent again.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::mpsc;

use crate::ack::{AckRef, DeliveryStatus};
use crate::event::Event;
use crate::topology::component::SourceContext;

/// Where `journalctl` reads from.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// The `journalctl` program (default: `journalctl` on `PATH`).
    pub journalctl: Option<PathBuf>,
    /// A journal directory instead of the system journal (`--directory`).
    pub directory: Option<PathBuf>,
    /// Journal files instead of the system journal (`--file`).
    #[serde(default)]
    pub files: Vec<PathBuf>,
}

/// One journal entry: its text fields (binary fields are skipped).
pub type Entry = BTreeMap<String, String>;

/// The longest JSON line taken from `journalctl`; longer entries are skipped.
const MAX_ENTRY_BYTES: usize = 1 << 20;
/// How often the cursor file is rewritten while entries keep settling.
const CURSOR_EVERY: Duration = Duration::from_secs(1);

/// Follows the journal entries that match `matches` (`FIELD=value`, ORed
/// for the same field) until shutdown. `to_event` makes the event of an
/// entry, or `None` to drop it; `from_end` starts at the end of the journal
/// when there is no cursor yet.
pub async fn follow(
    config: &JournalConfig,
    matches: &[String],
    from_end: bool,
    cx: &mut SourceContext,
    mut to_event: impl FnMut(&Entry) -> Option<Event>,
) -> anyhow::Result<()> {
    let cursor_path = cx
        .globals
        .data_dir
        .join("journal")
        .join(format!("{}.cursor", cx.name));
    let cursor = load_cursor(&cursor_path);
    let program = config
        .journalctl
        .clone()
        .unwrap_or_else(|| PathBuf::from("journalctl"));
    let mut command = tokio::process::Command::new(&program);
    command.args([
        "--follow",
        "--output=json",
        "--no-pager",
        "--all",
        "--quiet",
    ]);
    if let Some(dir) = &config.directory {
        command.arg("--directory").arg(dir);
    }
    for file in &config.files {
        command.arg("--file").arg(file);
    }
    match &cursor {
        Some(cursor) => {
            command.arg(format!("--after-cursor={cursor}"));
        }
        None if from_end => {
            command.arg("--lines=0");
        }
        None => {}
    }
    command
        .args(matches)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // journalctl follows forever: it must not outlive an agent that is
    // killed outright (kill_on_drop covers every other way out).
    #[cfg(target_os = "linux")]
    // SAFETY: only prctl, async-signal-safe, runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run {}", program.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let source = cx.name.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tracing::warn!(source = %source, message = %line, "journalctl");
        }
    });

    // Lines are read in their own task: a read cut short by another branch
    // of the loop below would lose the part already read.
    let (line_tx, mut line_rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(64);
    let name = cx.name.clone();
    let reading = tokio::spawn(async move {
        let mut reader = BufReader::new(stdout);
        loop {
            let mut line = Vec::new();
            let read = (&mut reader)
                .take(MAX_ENTRY_BYTES as u64 + 1)
                .read_until(b'\n', &mut line)
                .await;
            match read {
                Ok(0) => return,
                Ok(_) if !line.ends_with(b"\n") => {
                    tracing::warn!(source = %name, "journal entry over 1 MiB skipped");
                    let mut rest = Vec::new();
                    if reader.read_until(b'\n', &mut rest).await.is_err() {
                        return;
                    }
                }
                read => {
                    let failed = read.is_err();
                    if line_tx.send(read.map(|_| line)).await.is_err() || failed {
                        return;
                    }
                }
            }
        }
    });

    let (settled_tx, mut settled_rx) = mpsc::unbounded_channel::<u64>();
    let mut order = Settling::default();
    let mut last_write = Instant::now();
    loop {
        tokio::select! {
            () = cx.shutdown.cancelled() => break,
            Some(seq) = settled_rx.recv() => {
                order.settle(seq);
                if last_write.elapsed() >= CURSOR_EVERY {
                    order.save(&cursor_path);
                    last_write = Instant::now();
                }
            }
            line = line_rx.recv() => match line {
                None => {
                    let status = child.wait().await?;
                    while let Ok(seq) = settled_rx.try_recv() {
                        order.settle(seq);
                    }
                    order.save(&cursor_path);
                    anyhow::ensure!(status.success(), "{} ended: {status}", program.display());
                    return Ok(());
                }
                Some(Err(e)) => return Err(e).context("reading journalctl's output"),
                Some(Ok(line)) => {
                    let Ok(entry) = parse(&line) else {
                        tracing::warn!(source = %cx.name, "journalctl printed a line that is not a JSON entry; skipped");
                        continue;
                    };
                    let seq = order.push(entry.get("__CURSOR").cloned());
                    match to_event(&entry) {
                        Some(mut event) => {
                            let settled = settled_tx.clone();
                            event.ack = Some(AckRef::new(move |_: DeliveryStatus| {
                                let _ = settled.send(seq);
                            }));
                            cx.out.send(vec![event]).await?;
                        }
                        None => order.settle(seq),
                    }
                }
            },
        }
    }
    reading.abort();
    // Shutdown: record what has settled so far; what has not will be read
    // again at the next start.
    while let Ok(seq) = settled_rx.try_recv() {
        order.settle(seq);
    }
    order.save(&cursor_path);
    Ok(())
}

/// A JSON entry from `journalctl --output=json`: field values are strings,
/// or arrays of byte values for binary fields (skipped), or arrays of
/// either for repeated fields (the first string is kept).
fn parse(line: &[u8]) -> Result<Entry, serde_json::Error> {
    let raw: BTreeMap<String, serde_json::Value> = serde_json::from_slice(line)?;
    Ok(raw
        .into_iter()
        .filter_map(|(key, value)| match value {
            serde_json::Value::String(s) => Some((key, s)),
            serde_json::Value::Array(values) => values
                .into_iter()
                .find_map(|v| v.as_str().map(str::to_string))
                .map(|s| (key, s)),
            _ => None,
        })
        .collect())
}

/// Entries in journal order and whether each has settled; the cursor to
/// record is that of the last entry of the settled prefix.
#[derive(Default)]
struct Settling {
    next: u64,
    pending: VecDeque<(u64, Option<String>, bool)>,
    done: Option<String>,
    saved: Option<String>,
}

impl Settling {
    fn push(&mut self, cursor: Option<String>) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.pending.push_back((seq, cursor, false));
        seq
    }

    fn settle(&mut self, seq: u64) {
        if let Some(front) = self.pending.front().map(|p| p.0)
            && let Some(slot) = self.pending.get_mut((seq - front) as usize)
        {
            slot.2 = true;
        }
        while self.pending.front().is_some_and(|p| p.2) {
            let (_, cursor, _) = self.pending.pop_front().expect("non-empty");
            if cursor.is_some() {
                self.done = cursor;
            }
        }
    }

    fn save(&mut self, path: &Path) {
        let Some(cursor) = self
            .done
            .as_ref()
            .filter(|c| self.saved.as_ref() != Some(*c))
        else {
            return;
        };
        // Written like every other piece of state: temp file, fsync, rename.
        match crate::transforms::policy::state::write_atomically(path, cursor) {
            Ok(()) => self.saved = Some(cursor.clone()),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot record the journal cursor")
            }
        }
    }
}

/// The recorded cursor (a JSON string), if any; a damaged file means none.
fn load_cursor(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice::<String>(&bytes)
        .inspect_err(|e| {
            tracing::warn!(path = %path.display(), error = %e,
                "unreadable journal cursor; reading the journal from the start")
        })
        .ok()
        .filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_advances_only_over_a_settled_prefix() {
        let mut s = Settling::default();
        let a = s.push(Some("a".into()));
        let b = s.push(Some("b".into()));
        let c = s.push(Some("c".into()));
        s.settle(b);
        assert_eq!(s.done, None, "a is not settled yet");
        s.settle(a);
        assert_eq!(s.done.as_deref(), Some("b"));
        s.settle(c);
        assert_eq!(s.done.as_deref(), Some("c"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal").join("auth.cursor");
        s.save(&path);
        assert_eq!(load_cursor(&path).as_deref(), Some("c"));
    }

    #[test]
    fn entries_keep_text_fields_and_skip_binary_ones() {
        let entry = parse(
            br#"{"MESSAGE":"Accepted publickey for runner","_PID":"7","BLOB":[1,2,3],"TAG":["x","y"]}"#,
        )
        .unwrap();
        assert_eq!(entry["MESSAGE"], "Accepted publickey for runner");
        assert_eq!(entry["TAG"], "x");
        assert!(!entry.contains_key("BLOB"));
        assert!(parse(b"not json").is_err());
    }
}
