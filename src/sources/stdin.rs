//! `type = "stdin"`: lines from standard input, for pipelines and tests.
//!
//! The source ends at end of input, and with it the whole pipeline once
//! everything read has been delivered: `producer | tailguard run` exits by
//! itself.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use crate::event::{Event, EventBatch, Origin};
use crate::topology::component::{ComponentTask, SourceContext};

const READ_CHUNK: usize = 64 * 1024;

#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    /// Longer lines are cut to this many bytes and flagged with
    /// `tailguard.truncated`; the rest of the line is skipped.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

fn default_max_line_bytes() -> usize {
    100 * 1024
}

pub fn build(config: StdinConfig, cx: SourceContext) -> ComponentTask {
    Box::pin(run(config, cx, tokio::io::stdin()))
}

/// Reads lines from `input` until it ends or shutdown is requested.
async fn run(
    config: StdinConfig,
    mut cx: SourceContext,
    mut input: impl tokio::io::AsyncRead + Unpin,
) -> anyhow::Result<()> {
    let mut splitter = LineSplitter::new(config.max_line_bytes.max(1));
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        buf.reserve(READ_CHUNK);
        let read = tokio::select! {
            biased;
            () = cx.shutdown.cancelled() => break,
            read = input.read_buf(&mut buf) => read?,
        };
        let mut batch = EventBatch::new();
        if read == 0 {
            splitter.finish(&mut buf, &mut |line, offset, truncated| {
                batch.push(event(&cx, line, offset, truncated));
            });
            cx.out.send(batch).await?;
            break;
        }
        splitter.split(&mut buf, &mut |line, offset, truncated| {
            batch.push(event(&cx, line, offset, truncated));
        });
        cx.out.send(batch).await?;
    }
    Ok(())
}

fn event(cx: &SourceContext, line: Bytes, offset: u64, truncated: bool) -> Event {
    let mut event = Event::new(
        line,
        Origin {
            source: cx.name.clone(),
            offset: Some(offset),
            ..Origin::default()
        },
        cx.context.clone(),
    );
    if truncated {
        event.attributes.insert("tailguard.truncated", true);
    }
    event
}

/// Cuts a byte stream into lines, without their `\n` or `\r\n`, capping each
/// at a maximum length. Bytes are passed through as they are: invalid UTF-8
/// is kept.
struct LineSplitter {
    max_line_bytes: usize,
    /// Stream offset of the first byte in the buffer.
    offset: u64,
    /// Skipping the rest of a line that was already emitted truncated.
    discarding: bool,
}

impl LineSplitter {
    fn new(max_line_bytes: usize) -> Self {
        Self {
            max_line_bytes,
            offset: 0,
            discarding: false,
        }
    }

    fn split(&mut self, buf: &mut BytesMut, emit: &mut impl FnMut(Bytes, u64, bool)) {
        while let Some(end) = memchr::memchr(b'\n', buf) {
            let line = buf.split_to(end + 1).freeze();
            let start = self.offset;
            self.offset += line.len() as u64;
            if std::mem::take(&mut self.discarding) {
                continue;
            }
            let line = trim_terminator(line.slice(..end));
            if line.len() > self.max_line_bytes {
                emit(line.slice(..self.max_line_bytes), start, true);
            } else {
                emit(line, start, false);
            }
        }
        if !self.discarding && buf.len() > self.max_line_bytes {
            let start = self.offset;
            let taken = buf.split_to(buf.len()).freeze();
            self.offset += taken.len() as u64;
            emit(taken.slice(..self.max_line_bytes), start, true);
            self.discarding = true;
        } else if self.discarding {
            self.offset += buf.len() as u64;
            buf.clear();
        }
    }

    /// Emits a last line that has no newline.
    fn finish(&mut self, buf: &mut BytesMut, emit: &mut impl FnMut(Bytes, u64, bool)) {
        self.split(buf, emit);
        if !buf.is_empty() && !self.discarding {
            let line = trim_terminator(buf.split().freeze());
            emit(line, self.offset, false);
        }
    }
}

fn trim_terminator(line: Bytes) -> Bytes {
    match line.last() {
        Some(b'\r') => line.slice(..line.len() - 1),
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]], max: usize) -> Vec<(Vec<u8>, u64, bool)> {
        let mut splitter = LineSplitter::new(max);
        let mut buf = BytesMut::new();
        let mut lines = Vec::new();
        let mut emit = |l: Bytes, o, t| lines.push((l.to_vec(), o, t));
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            splitter.split(&mut buf, &mut emit);
        }
        splitter.finish(&mut buf, &mut emit);
        lines
    }

    #[test]
    fn splits_across_chunks_and_keeps_offsets() {
        let lines = split_all(&[b"ab", b"c\r\nde\n", b"f"], 100);
        assert_eq!(
            lines,
            vec![
                (b"abc".to_vec(), 0, false),
                (b"de".to_vec(), 5, false),
                (b"f".to_vec(), 8, false)
            ]
        );
    }

    #[test]
    fn truncates_long_lines_and_resumes_at_the_next() {
        let lines = split_all(&[b"0123456789", b"abcdef\nok\n"], 4);
        assert_eq!(
            lines,
            vec![(b"0123".to_vec(), 0, true), (b"ok".to_vec(), 17, false)]
        );
    }

    #[test]
    fn keeps_invalid_utf8() {
        let lines = split_all(&[b"\xff\xfe ok\n"], 100);
        assert_eq!(lines[0].0, b"\xff\xfe ok");
    }
}
