//! A durable queue on disk between a sink's input and its network exporter.
//!
//! Layout, in `DIR` (`data_dir/buffers/<sink>/`):
//!
//! - `segment-<20-digit seq>.tgq`: a 4-byte magic `TGQ1`, then records of
//!   `len: u32 LE | crc32: u32 LE | count: u32 LE | payload[len]`, where the
//!   CRC covers `count` and the payload. `count` is how many events the
//!   payload carries (for accounting).
//! - `cursor`: `{"version":1,"segment":S,"offset":O}`, the position after the
//!   last record the collector accepted, replaced atomically.
//!
//! The writer appends to the newest segment and starts a new one at each
//! start (a crash may leave a torn record at the tail of the old one, which
//! the reader then skips as corrupt) and whenever a segment reaches its size
//! limit. The reader streams records from the cursor onward, one at a time,
//! so the buffer is never loaded into memory. A segment is deleted once
//! every record in it was delivered. A record that fails its checksum, or a
//! torn tail, makes the reader skip the rest of that segment and count it:
//! never a crash, never a manual delete.
//!
//! Delivery is at least once: after a crash, records after the cursor are
//! sent again, including any that were in flight.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio::sync::Notify;
use tracing::{error, info, warn};

const MAGIC: &[u8; 4] = b"TGQ1";
/// The size of a buffer holding no records: one empty segment.
pub const EMPTY_SIZE: u64 = MAGIC.len() as u64;
const RECORD_HEADER: u64 = 12;
/// No record can be larger than this; a larger length means corruption.
const MAX_RECORD: u32 = 256 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Stop taking events until the exporter frees space: the pressure
    /// reaches the sources, which stop reading. Nothing is lost.
    Block,
    /// Delete the oldest segment to make room, counting what was dropped.
    DropOldest,
}

#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskBufferConfig {
    /// Upper bound on the buffer's files, e.g. `"1GiB"`, `"512MiB"`.
    pub max_size: ByteSize,
    #[serde(default = "default_when_full")]
    pub when_full: WhenFull,
    /// fsync every record before acknowledging it, so acknowledged events
    /// survive power loss, not only an agent crash.
    #[serde(default)]
    pub fsync: bool,
}

fn default_when_full() -> WhenFull {
    WhenFull::Block
}

/// A size written as `"1GiB"`, `"64 MiB"`, `"500MB"` or a number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl schemars::JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A size: bytes, or a string such as \"512MiB\", \"1GiB\", \"10MB\"",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*\\d+\\s*([kKmMgG]i?[bB]?|[bB])?\\s*$" }
            ]
        })
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(de)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(text) => parse_size(&text).map(ByteSize).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid size `{text}` (examples: \"512MiB\", \"1GiB\", 1048576)"
                ))
            }),
        }
    }
}

fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1 << 20,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// Counters the buffer keeps, for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufferStats {
    pub bytes_on_disk: u64,
    pub corrupt_segments_skipped: u64,
    pub segments_dropped: u64,
}

struct State {
    dir: PathBuf,
    max_size: u64,
    segment_limit: u64,
    bytes_on_disk: u64,
    /// The segment being written and how many of its bytes are complete
    /// records the reader may read.
    write_segment: u64,
    write_committed: u64,
    writer_closed: bool,
    /// Segments whose files were removed by `drop_oldest`.
    dropped: Vec<u64>,
    stats: BufferStats,
}

struct Shared {
    state: Mutex<State>,
    /// Woken when records are appended or the writer closes.
    data: Notify,
    /// Woken when space is freed.
    space: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("segment-{seq:020}.tgq"))
}

fn list_segments(dir: &Path) -> io::Result<Vec<(u64, u64)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix("segment-"))
            .and_then(|n| n.strip_suffix(".tgq"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((seq, entry.metadata()?.len()));
    }
    found.sort_unstable();
    Ok(found)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    segment: u64,
    offset: u64,
}

fn read_cursor(dir: &Path) -> Option<Position> {
    #[derive(Deserialize)]
    struct Cursor {
        version: u32,
        segment: u64,
        offset: u64,
    }
    let path = dir.join("cursor");
    let text = fs::read_to_string(&path).ok()?;
    match serde_json::from_str::<Cursor>(&text) {
        Ok(c) if c.version == 1 => Some(Position {
            segment: c.segment,
            offset: c.offset,
        }),
        _ => {
            warn!(path = %path.display(), "unreadable buffer cursor; resending from the oldest segment");
            None
        }
    }
}

fn write_cursor(dir: &Path, at: Position) -> io::Result<()> {
    let tmp = dir.join("cursor.tmp");
    fs::write(
        &tmp,
        format!(
            "{{\"version\":1,\"segment\":{},\"offset\":{}}}",
            at.segment, at.offset
        ),
    )?;
    fs::rename(tmp, dir.join("cursor"))
}

/// Opens (creating if needed) the buffer in `dir`.
pub fn open(dir: &Path, config: &DiskBufferConfig) -> io::Result<(Writer, Reader)> {
    fs::create_dir_all(dir)?;
    let segments = list_segments(dir)?;
    let cursor = read_cursor(dir);
    let mut bytes_on_disk = 0;
    for &(seq, len) in &segments {
        if cursor.is_some_and(|c| seq < c.segment) {
            // Fully delivered before the last stop; its deletion was lost.
            let _ = fs::remove_file(segment_path(dir, seq));
        } else {
            bytes_on_disk += len;
        }
    }
    let next_seq = segments.last().map_or(0, |(seq, _)| seq + 1);
    let first_unread = segments
        .iter()
        .map(|(seq, _)| *seq)
        .find(|seq| cursor.is_none_or(|c| *seq >= c.segment))
        .unwrap_or(next_seq);
    let start = match cursor {
        Some(c) if c.segment == first_unread => c,
        _ => Position {
            segment: first_unread,
            offset: MAGIC.len() as u64,
        },
    };
    let max_size = config.max_size.0.max(1);
    let segment_limit = (max_size / 8).clamp(64 * 1024, 64 * 1024 * 1024);
    if bytes_on_disk > 0 {
        info!(dir = %dir.display(), bytes = bytes_on_disk, "resuming a disk buffer left from the last run");
    }
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            dir: dir.to_path_buf(),
            max_size,
            segment_limit,
            bytes_on_disk,
            write_segment: next_seq,
            write_committed: 0,
            writer_closed: false,
            dropped: Vec::new(),
            stats: BufferStats::default(),
        }),
        data: Notify::new(),
        space: Notify::new(),
    });
    let mut writer = Writer {
        shared: Arc::clone(&shared),
        file: None,
        fsync: config.fsync,
        when_full: config.when_full,
        warned_full: false,
    };
    writer.start_segment(next_seq)?;
    let reader = Reader {
        shared,
        position: start,
        file: None,
        in_flight: VecDeque::new(),
        delivered_up_to: start,
        next_id: 0,
    };
    Ok((writer, reader))
}

/// Appends records; see the module docs.
pub struct Writer {
    shared: Arc<Shared>,
    file: Option<(u64, File, u64)>,
    fsync: bool,
    when_full: WhenFull,
    warned_full: bool,
}

impl Writer {
    fn start_segment(&mut self, seq: u64) -> io::Result<()> {
        let dir = self.shared.lock().dir.clone();
        let path = segment_path(&dir, seq);
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        file.write_all(MAGIC)?;
        let mut state = self.shared.lock();
        state.bytes_on_disk += MAGIC.len() as u64;
        state.write_segment = seq;
        state.write_committed = MAGIC.len() as u64;
        drop(state);
        self.file = Some((seq, file, MAGIC.len() as u64));
        self.shared.data.notify_one();
        Ok(())
    }

    /// Appends one record of `count` events. Waits while the buffer is full
    /// (`block`) or drops the oldest segments (`drop_oldest`). When this
    /// returns `Ok`, the record is on disk (fsynced if configured) and the
    /// events may be acknowledged.
    pub async fn append(&mut self, payload: &[u8], count: u32) -> io::Result<()> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l <= MAX_RECORD)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "record too large"))?;
        let needed = RECORD_HEADER + u64::from(len);
        let shared = Arc::clone(&self.shared);
        loop {
            let space_freed = shared.space.notified();
            if self.make_room(needed) {
                break;
            }
            if !self.warned_full {
                warn!("disk buffer full; holding the pipeline until the collector catches up");
                self.warned_full = true;
            }
            space_freed.await;
        }
        if self.warned_full {
            info!("disk buffer has room again");
            self.warned_full = false;
        }
        let (seq, _, written) = self.file.as_ref().expect("a segment is open");
        if *written + needed > self.shared.lock().segment_limit && *written > MAGIC.len() as u64 {
            let next = seq + 1;
            self.start_segment(next)?;
        }
        let mut record = Vec::with_capacity(needed as usize);
        record.extend_from_slice(&len.to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&count.to_le_bytes());
        crc.update(payload);
        record.extend_from_slice(&crc.finalize().to_le_bytes());
        record.extend_from_slice(&count.to_le_bytes());
        record.extend_from_slice(payload);
        let (_, file, written) = self.file.as_mut().expect("a segment is open");
        file.write_all(&record)?;
        if self.fsync {
            let handle = file.try_clone()?;
            tokio::task::spawn_blocking(move || handle.sync_data())
                .await
                .map_err(io::Error::other)??;
        }
        *written += needed;
        let committed = *written;
        let mut state = self.shared.lock();
        state.bytes_on_disk += needed;
        state.write_committed = committed;
        drop(state);
        self.shared.data.notify_one();
        Ok(())
    }

    /// True when `needed` bytes fit, after dropping segments if allowed.
    fn make_room(&mut self, needed: u64) -> bool {
        let mut state = self.shared.lock();
        loop {
            if state.bytes_on_disk + needed <= state.max_size {
                return true;
            }
            if self.when_full == WhenFull::Block {
                return false;
            }
            // Drop the oldest segment that is not the one being written.
            let Ok(segments) = list_segments(&state.dir) else {
                return false;
            };
            let Some(&(oldest, len)) = segments
                .iter()
                .find(|(seq, _)| *seq != state.write_segment && !state.dropped.contains(seq))
            else {
                // Only the current segment is left: nothing to drop.
                return state.bytes_on_disk <= state.max_size;
            };
            let _ = fs::remove_file(segment_path(&state.dir, oldest));
            state.bytes_on_disk = state.bytes_on_disk.saturating_sub(len);
            state.dropped.push(oldest);
            state.stats.segments_dropped += 1;
            error!(
                segment = oldest,
                bytes = len,
                "disk buffer full: dropped the oldest segment (when_full = \"drop_oldest\")"
            );
        }
    }

    pub fn stats(&self) -> BufferStats {
        let state = self.shared.lock();
        BufferStats {
            bytes_on_disk: state.bytes_on_disk,
            ..state.stats
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.lock().writer_closed = true;
        self.shared.data.notify_one();
    }
}

/// One record read back, to be exported and then marked delivered.
pub struct Entry {
    pub id: u64,
    pub payload: Vec<u8>,
    pub count: u32,
}

/// Streams records in order and deletes what was delivered.
pub struct Reader {
    shared: Arc<Shared>,
    position: Position,
    file: Option<(u64, BufReader<File>)>,
    /// Records handed out and not yet delivered: (id, end position, done).
    in_flight: VecDeque<(u64, Position, bool)>,
    delivered_up_to: Position,
    next_id: u64,
}

enum ReadResult {
    Record(Vec<u8>, u32, u64),
    EndOfSegment,
    Corrupt(&'static str),
}

impl Reader {
    /// The next record, waiting for one to be written. `None` once the
    /// writer is gone and everything written has been handed out.
    pub async fn next(&mut self) -> io::Result<Option<Entry>> {
        let shared = Arc::clone(&self.shared);
        loop {
            let appended = shared.data.notified();
            let (write_segment, committed, closed, dir) = {
                let s = self.shared.lock();
                (
                    s.write_segment,
                    s.write_committed,
                    s.writer_closed,
                    s.dir.clone(),
                )
            };
            let here = self.position;
            let readable_end = if here.segment == write_segment {
                committed
            } else {
                u64::MAX
            };
            if here.segment > write_segment
                || (here.segment == write_segment && here.offset >= readable_end)
            {
                if closed {
                    return Ok(None);
                }
                appended.await;
                continue;
            }
            match self.read_at(&dir, here, readable_end)? {
                ReadResult::Record(payload, count, end) => {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.position.offset = end;
                    self.in_flight.push_back((id, self.position, false));
                    return Ok(Some(Entry { id, payload, count }));
                }
                ReadResult::EndOfSegment => self.advance_segment(),
                ReadResult::Corrupt(why) => {
                    error!(
                        segment = here.segment,
                        offset = here.offset,
                        reason = why,
                        "disk buffer segment is corrupt; skipping the rest of it"
                    );
                    self.shared.lock().stats.corrupt_segments_skipped += 1;
                    self.advance_segment();
                }
            }
        }
    }

    fn advance_segment(&mut self) {
        self.file = None;
        self.position = Position {
            segment: self.position.segment + 1,
            offset: MAGIC.len() as u64,
        };
        self.release_finished();
    }

    fn read_at(&mut self, dir: &Path, at: Position, readable_end: u64) -> io::Result<ReadResult> {
        if self.file.as_ref().is_none_or(|(seq, _)| *seq != at.segment) {
            let path = segment_path(dir, at.segment);
            let mut file = match File::open(&path) {
                Ok(f) => f,
                // Dropped to make room, or never written (a start that
                // crashed before its first record).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(ReadResult::EndOfSegment);
                }
                Err(e) => return Err(e),
            };
            let mut magic = [0u8; 4];
            if file.read_exact(&mut magic).is_err() || &magic != MAGIC {
                return Ok(ReadResult::Corrupt("bad segment header"));
            }
            file.seek(SeekFrom::Start(at.offset))?;
            self.file = Some((at.segment, BufReader::new(file)));
        }
        let (_, file) = self.file.as_mut().expect("opened above");
        let mut header = [0u8; RECORD_HEADER as usize];
        match read_full(file, &mut header)? {
            0 => return Ok(ReadResult::EndOfSegment),
            n if n < header.len() => return Ok(ReadResult::Corrupt("torn record header")),
            _ => {}
        }
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let count = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        let end = at.offset + RECORD_HEADER + u64::from(len);
        if len > MAX_RECORD || end > readable_end {
            return Ok(ReadResult::Corrupt(
                "record length past the end of the segment",
            ));
        }
        let mut payload = vec![0u8; len as usize];
        if read_full(file, &mut payload)? < payload.len() {
            return Ok(ReadResult::Corrupt("torn record"));
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&count.to_le_bytes());
        hasher.update(&payload);
        if hasher.finalize() != crc {
            return Ok(ReadResult::Corrupt("checksum mismatch"));
        }
        Ok(ReadResult::Record(payload, count, end))
    }

    /// Marks a record delivered (or permanently refused: either way it is
    /// done). Advances the cursor over the delivered prefix and deletes
    /// segments left behind.
    pub fn delivered(&mut self, id: u64) -> io::Result<()> {
        if let Some(slot) = self.in_flight.iter_mut().find(|(i, _, _)| *i == id) {
            slot.2 = true;
        }
        while let Some(&(_, end, true)) = self.in_flight.front() {
            self.delivered_up_to = end;
            self.in_flight.pop_front();
        }
        self.release_finished();
        let dir = self.shared.lock().dir.clone();
        write_cursor(&dir, self.delivered_up_to)
    }

    /// Deletes every segment before the oldest one still needed.
    fn release_finished(&mut self) {
        let oldest_needed = self
            .in_flight
            .front()
            .map_or(self.position.segment, |(_, end, _)| end.segment);
        if self.in_flight.is_empty() {
            self.delivered_up_to = self.delivered_up_to.max(self.position);
        }
        let mut state = self.shared.lock();
        let Ok(segments) = list_segments(&state.dir) else {
            return;
        };
        let mut freed = false;
        for (seq, len) in segments {
            if seq >= oldest_needed || seq == state.write_segment {
                break;
            }
            if fs::remove_file(segment_path(&state.dir, seq)).is_ok()
                && !state.dropped.contains(&seq)
            {
                state.bytes_on_disk = state.bytes_on_disk.saturating_sub(len);
                freed = true;
            }
            state.dropped.retain(|d| *d != seq);
        }
        drop(state);
        if freed {
            self.shared.space.notify_one();
        }
    }

    pub fn stats(&self) -> BufferStats {
        let state = self.shared.lock();
        BufferStats {
            bytes_on_disk: state.bytes_on_disk,
            ..state.stats
        }
    }
}

/// Reads until `buf` is full or the file ends; returns how much was read.
fn read_full(file: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests;
