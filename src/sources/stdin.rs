//! `type = "stdin"`: lines from standard input, for pipelines and tests.
//!
//! The source ends at end of input, and with it the whole pipeline once
//! everything read has been delivered: `producer | tailguard run` exits by
//! itself.

use std::sync::Arc;

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
    let origin = Arc::new(Origin {
        source: cx.name.clone(),
        ..Origin::default()
    });
    loop {
        buf.reserve(READ_CHUNK);
        let read = tokio::select! {
            biased;
            () = cx.shutdown.cancelled() => break,
            read = input.read_buf(&mut buf) => read?,
        };
        let mut batch = EventBatch::new();
        if read == 0 {
            splitter.finish(&mut buf, &mut |line, truncated| {
                batch.push(event(&origin, &cx, line, truncated));
            });
            cx.out.send(batch).await?;
            break;
        }
        splitter.split(&mut buf, &mut |line, truncated| {
            batch.push(event(&origin, &cx, line, truncated));
        });
        cx.out.send(batch).await?;
    }
    Ok(())
}

fn event(origin: &Arc<Origin>, cx: &SourceContext, line: Bytes, truncated: bool) -> Event {
    let mut event = Event::new(line, Arc::clone(origin), cx.context.clone());
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
    /// Skipping the rest of a line that was already emitted truncated.
    discarding: bool,
}

impl LineSplitter {
    fn new(max_line_bytes: usize) -> Self {
        Self {
            max_line_bytes,
            discarding: false,
        }
    }

    fn split(&mut self, buf: &mut BytesMut, emit: &mut impl FnMut(Bytes, bool)) {
        while let Some(end) = memchr::memchr(b'\n', buf) {
            let line = buf.split_to(end + 1).freeze();
            if std::mem::take(&mut self.discarding) {
                continue;
            }
            let line = trim_terminator(line.slice(..end));
            if line.len() > self.max_line_bytes {
                emit(line.slice(..self.max_line_bytes), true);
            } else {
                emit(line, false);
            }
        }
        if !self.discarding && buf.len() > self.max_line_bytes {
            let taken = buf.split_to(buf.len()).freeze();
            emit(taken.slice(..self.max_line_bytes), true);
            self.discarding = true;
        } else if self.discarding {
            buf.clear();
        }
    }

    /// Emits a last line that has no newline.
    fn finish(&mut self, buf: &mut BytesMut, emit: &mut impl FnMut(Bytes, bool)) {
        self.split(buf, emit);
        if !buf.is_empty() && !self.discarding {
            let line = trim_terminator(buf.split().freeze());
            emit(line, false);
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

    fn split_all(chunks: &[&[u8]], max: usize) -> Vec<(Vec<u8>, bool)> {
        let mut splitter = LineSplitter::new(max);
        let mut buf = BytesMut::new();
        let mut lines = Vec::new();
        let mut emit = |l: Bytes, t| lines.push((l.to_vec(), t));
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            splitter.split(&mut buf, &mut emit);
        }
        splitter.finish(&mut buf, &mut emit);
        lines
    }

    #[test]
    fn splits_across_chunks() {
        let lines = split_all(&[b"ab", b"c\r\nde\n", b"f"], 100);
        assert_eq!(
            lines,
            vec![
                (b"abc".to_vec(), false),
                (b"de".to_vec(), false),
                (b"f".to_vec(), false)
            ]
        );
    }

    #[test]
    fn truncates_long_lines_and_resumes_at_the_next() {
        let lines = split_all(&[b"0123456789", b"abcdef\nok\n"], 4);
        assert_eq!(
            lines,
            vec![(b"0123".to_vec(), true), (b"ok".to_vec(), false)]
        );
    }

    #[test]
    fn keeps_invalid_utf8() {
        let lines = split_all(&[b"\xff\xfe ok\n"], 100);
        assert_eq!(lines[0].0, b"\xff\xfe ok");
    }
}
