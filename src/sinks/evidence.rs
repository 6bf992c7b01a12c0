//! `type = "evidence"`: an append-only journal of findings and actions,
//! each record hash-chained to the one before it, for incident review.
//!
//! Files `data_dir/evidence/<sink>/journal-<seq>.jsonl`, rotated by size.
//! One record per line:
//!
//! ```json
//! {"seq":12,"prev":"<hash of record 11>","event":{...the event as JSON...},"hash":"<hash of this record>"}
//! ```
//!
//! `hash` is BLAKE3 over `seq`, `prev` and the exact bytes of `event` as
//! written, and `prev` is the previous record's `hash` (the first record's
//! is 64 zeros), across file boundaries. So `tailguard evidence verify`
//! finds any edited record (its hash no longer matches), removed record
//! (a gap in `seq`, or `prev` not matching), or reordered records. The
//! chain proves integrity, not authorship: someone able to rewrite the
//! whole journal can rebuild the chain; ship the records (they are also
//! events) to the collector to hold a copy elsewhere.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

use crate::ack::DeliveryStatus;
use crate::event::settle_and_count;
use crate::sinks::json;
use crate::topology::component::{ComponentTask, SinkContext};

#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvidenceConfig {
    /// Which events to keep: `spans` (findings, actions, steps; the default)
    /// or `all` (every line too).
    #[serde(default)]
    pub events: Which,
    /// Start a new journal file past this size.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
    /// fsync each batch before acknowledging it.
    #[serde(default = "yes")]
    pub fsync: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Which {
    #[default]
    Spans,
    All,
}

fn default_max_file_bytes() -> u64 {
    64 * 1024 * 1024
}

fn yes() -> bool {
    true
}

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of a record: over its sequence number, its predecessor's hash
/// and its event's exact JSON bytes.
pub fn record_hash(seq: u64, prev: &str, event_json: &str) -> String {
    let mut hasher = blake3::Hasher::new_derive_key("tailguard 2026-11 evidence record v1");
    hasher.update(&seq.to_le_bytes());
    hasher.update(prev.as_bytes());
    hasher.update(event_json.as_bytes());
    hasher.finalize().to_hex().to_string()
}

/// The journal files of a directory, oldest first.
pub fn journal_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n = name
                .strip_prefix("journal-")?
                .strip_suffix(".jsonl")?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    files.sort();
    Ok(files.into_iter().map(|(_, p)| p).collect())
}

/// One record as read back.
#[derive(Debug, Deserialize)]
struct Record {
    seq: u64,
    prev: String,
    event: Box<serde_json::value::RawValue>,
    hash: String,
}

/// The first problem in a journal, naming the file and line.
#[derive(Debug, PartialEq, Eq)]
pub struct Broken {
    pub file: PathBuf,
    pub line: usize,
    pub reason: String,
}

/// What `verify` found: how many records are intact, and the first broken
/// one if any.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub last_hash: String,
    pub broken: Option<Broken>,
}

/// Checks the whole chain, calling `each` for every intact record.
pub fn verify(
    dir: &Path,
    mut each: impl FnMut(u64, &serde_json::Value),
) -> std::io::Result<Verified> {
    let mut expected_seq = 0u64;
    let mut prev = GENESIS.to_string();
    for file in journal_files(dir)? {
        let reader = std::io::BufReader::new(std::fs::File::open(&file)?);
        for (i, line) in reader.lines().enumerate() {
            let line = line?;
            let broken = |reason: String| Broken {
                file: file.clone(),
                line: i + 1,
                reason,
            };
            let record: Record = match serde_json::from_str(&line) {
                Ok(r) => r,
                Err(e) => {
                    return Ok(Verified {
                        records: expected_seq,
                        last_hash: prev,
                        broken: Some(broken(format!("not a journal record: {e}"))),
                    });
                }
            };
            let problem = if record.seq != expected_seq {
                Some(if record.seq > expected_seq {
                    format!(
                        "record {} follows record {}: records were removed",
                        record.seq,
                        expected_seq.wrapping_sub(1)
                    )
                } else {
                    format!(
                        "record {} comes after record {}: records were reordered or repeated",
                        record.seq,
                        expected_seq.wrapping_sub(1)
                    )
                })
            } else if record.prev != prev {
                Some(format!(
                    "record {} does not follow the record before it",
                    record.seq
                ))
            } else if record_hash(record.seq, &record.prev, record.event.get()) != record.hash {
                Some(format!(
                    "record {} was changed after it was written",
                    record.seq
                ))
            } else {
                None
            };
            if let Some(reason) = problem {
                return Ok(Verified {
                    records: expected_seq,
                    last_hash: prev,
                    broken: Some(broken(reason)),
                });
            }
            let event: serde_json::Value =
                serde_json::from_str(record.event.get()).unwrap_or_default();
            each(record.seq, &event);
            prev = record.hash;
            expected_seq += 1;
        }
    }
    Ok(Verified {
        records: expected_seq,
        last_hash: prev,
        broken: None,
    })
}

pub fn build(config: EvidenceConfig, mut cx: SinkContext) -> ComponentTask {
    let dir = cx.globals.data_dir.join("evidence").join(&*cx.name);
    let sink = format!("sinks.{}", cx.name);
    Box::pin(async move {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        // Continue the chain where it ended; a broken journal is not
        // extended (that would bless the damage): start a new chain file
        // after saying so loudly.
        let state = verify(&dir, |_, _| {})?;
        let (mut seq, mut prev) = match &state.broken {
            None => (state.records, state.last_hash.clone()),
            Some(b) => {
                tracing::error!(file = %b.file.display(), line = b.line, reason = %b.reason,
                    "the evidence journal is broken; starting a new chain after it");
                (0, GENESIS.to_string())
            }
        };
        let mut file_no = journal_files(&dir)?
            .last()
            .and_then(|p| {
                p.file_stem()?
                    .to_str()?
                    .strip_prefix("journal-")?
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |n| n + u64::from(state.broken.is_some()));
        let mut out = Vec::new();
        let mut json = Vec::new();
        while let Some(mut batch) = cx.input.recv().await {
            out.clear();
            for event in batch
                .iter()
                .filter(|e| config.events == Which::All || e.as_span().is_some())
            {
                json.clear();
                json::encode(event, true, &mut json);
                let event_json = std::str::from_utf8(json.strip_suffix(b"\n").unwrap_or(&json))
                    .expect("JSON is UTF-8");
                let hash = record_hash(seq, &prev, event_json);
                writeln!(
                    out,
                    "{{\"seq\":{seq},\"prev\":\"{prev}\",\"event\":{event_json},\"hash\":\"{hash}\"}}"
                )?;
                prev = hash;
                seq += 1;
            }
            if out.is_empty() {
                settle_and_count(&sink, &mut batch, DeliveryStatus::Delivered);
                continue;
            }
            let mut path = dir.join(format!("journal-{file_no:06}.jsonl"));
            if std::fs::metadata(&path)
                .is_ok_and(|m| m.len() + out.len() as u64 > config.max_file_bytes && m.len() > 0)
            {
                file_no += 1;
                path = dir.join(format!("journal-{file_no:06}.jsonl"));
            }
            let written = (|| {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?;
                file.write_all(&out)?;
                if config.fsync {
                    file.sync_data()?;
                }
                std::io::Result::Ok(())
            })();
            if let Err(e) = written {
                settle_and_count(&sink, &mut batch, DeliveryStatus::Errored);
                return Err(e).with_context(|| format!("cannot write {}", path.display()));
            }
            settle_and_count(&sink, &mut batch, DeliveryStatus::Delivered);
        }
        Ok(())
    })
}
