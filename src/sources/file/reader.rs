//! Splitting a file's bytes into lines.
//!
//! A line ends at `\n`; the terminator and a `\r` before it are not part of
//! the body. Bytes are kept as they are (invalid UTF-8 included). A line
//! longer than `max_line_bytes` is emitted cut to that length, flagged
//! `truncated`, once its end is found; the rest of it is consumed and
//! dropped, so memory stays bounded and the file never stalls.
//!
//! A last line without a newline is held until the caller decides the file
//! has been quiet long enough ([`LineReader::flush_partial`]); it is then
//! emitted and the reader's position moves past it. What happens to bytes
//! that later extend that same physical line:
//!
//! * if only the newline follows, nothing more is emitted (the common case:
//!   a writer that was slow to finish its line);
//! * other bytes up to the newline are emitted as a line of their own
//!   (nothing is lost, nothing is sent twice);
//! * if the emitted part had been truncated, the rest is dropped with it.
//!
//! That state is recorded with the checkpoint ([`MidLine`]) so a restart
//! behaves the same.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Where a position lies relative to lines already emitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MidLine {
    /// At the start of a line.
    #[default]
    None,
    /// Inside a line whose first part was emitted: the rest is its own line
    /// unless it is empty.
    Continue,
    /// Inside a line whose first part was emitted truncated: drop the rest.
    Discard,
}

impl MidLine {
    pub(crate) fn is_none(&self) -> bool {
        *self == MidLine::None
    }
}

/// One line (or, after multi-line aggregation, one event) and the byte
/// range it covers in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub start: u64,
    /// Just past the line (its newline included when it had one).
    pub end: u64,
    pub body: Bytes,
    pub truncated: bool,
    /// The state at `end`, for the checkpoint.
    pub end_mid: MidLine,
}

pub struct LineReader {
    max: usize,
    /// Next byte to consume.
    offset: u64,
    line_start: u64,
    /// Up to `max + 1` bytes of the current line.
    buf: Vec<u8>,
    /// Bytes of the current line consumed so far (without the newline).
    total: u64,
    last_byte: Option<u8>,
    mid: MidLine,
}

impl LineReader {
    pub fn new(offset: u64, mid: MidLine, max_line_bytes: usize) -> Self {
        Self {
            max: max_line_bytes,
            offset,
            line_start: offset,
            buf: Vec::new(),
            total: 0,
            last_byte: None,
            mid,
        }
    }

    /// Bytes consumed so far: where the next read starts.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// There are held bytes of an unterminated line that would be emitted.
    pub(crate) fn has_partial(&self) -> bool {
        self.total > 0 && self.mid != MidLine::Discard
    }

    fn append(&mut self, seg: &[u8]) {
        if seg.is_empty() {
            return;
        }
        self.total += seg.len() as u64;
        self.last_byte = seg.last().copied();
        if self.mid != MidLine::Discard {
            let room = (self.max + 1).saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&seg[..room.min(seg.len())]);
        }
    }

    fn reset_line(&mut self, mid: MidLine) {
        if self.buf.capacity() > 16 * 1024 {
            // Do not keep a long line's buffer for every idle file.
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        self.total = 0;
        self.last_byte = None;
        self.mid = mid;
        self.line_start = self.offset;
    }

    /// Consumes `data` (the bytes at [`Self::offset`]) and appends every
    /// completed line to `out`, each body a copy. The tests' way in; the
    /// file source uses [`Self::feed_shared`].
    #[cfg(test)]
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Line>) {
        self.feed_with(data, out, |line| Bytes::copy_from_slice(&data[line]));
    }

    /// Like [`Self::feed`], but the body of a line that lies whole in `data`
    /// is a slice of it, sharing its allocation: no allocation and no copy
    /// per line. Such a line keeps all of `data` alive, so `data` should be
    /// one read's worth, not a long-lived buffer.
    pub fn feed_shared(&mut self, data: &Bytes, out: &mut Vec<Line>) {
        self.feed_with(data, out, |line| data.slice(line));
    }

    fn feed_with(
        &mut self,
        data: &[u8],
        out: &mut Vec<Line>,
        body: impl Fn(std::ops::Range<usize>) -> Bytes,
    ) {
        let mut pos = 0;
        while pos < data.len() {
            match memchr::memchr(b'\n', &data[pos..]) {
                Some(i) => {
                    let seg = &data[pos..pos + i];
                    let seg_start = pos;
                    self.offset += i as u64 + 1;
                    pos += i + 1;
                    if self.total == 0 && self.mid == MidLine::None {
                        // Fast path: the whole line is in `data`.
                        let len = if seg.last() == Some(&b'\r') { i - 1 } else { i };
                        let take = len.min(self.max);
                        out.push(Line {
                            start: self.line_start,
                            end: self.offset,
                            body: body(seg_start..seg_start + take),
                            truncated: len > self.max,
                            end_mid: MidLine::None,
                        });
                        self.reset_line(MidLine::None);
                    } else {
                        self.append(seg);
                        self.finish_line(out);
                    }
                }
                None => {
                    self.append(&data[pos..]);
                    self.offset += (data.len() - pos) as u64;
                    break;
                }
            }
        }
    }

    fn finish_line(&mut self, out: &mut Vec<Line>) {
        match self.mid {
            MidLine::Discard => {}
            MidLine::Continue if self.total == 0 => {}
            _ => {
                let mut len = self.total;
                if self.last_byte == Some(b'\r') {
                    len -= 1;
                }
                let take = (len as usize).min(self.max);
                out.push(Line {
                    start: self.line_start,
                    end: self.offset,
                    body: Bytes::copy_from_slice(&self.buf[..take]),
                    truncated: len > self.max as u64,
                    end_mid: MidLine::None,
                });
            }
        }
        self.reset_line(MidLine::None);
    }

    /// Emits the held unterminated line (the caller decided it is final).
    pub(crate) fn flush_partial(&mut self, out: &mut Vec<Line>) {
        if !self.has_partial() {
            return;
        }
        let truncated = self.total > self.max as u64;
        let mut take = (self.total as usize).min(self.max);
        // A `\r` held at the end is the first half of a CRLF whose `\n` has
        // not come yet: drop it, as a `\r` before `\n` always is.
        if !truncated && take > 0 && self.buf[take - 1] == b'\r' {
            take -= 1;
        }
        let end_mid = if truncated {
            MidLine::Discard
        } else {
            MidLine::Continue
        };
        out.push(Line {
            start: self.line_start,
            end: self.offset,
            body: Bytes::copy_from_slice(&self.buf[..take]),
            truncated,
            end_mid,
        });
        self.reset_line(end_mid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lines(r: &mut LineReader, chunks: &[&[u8]]) -> Vec<(u64, Vec<u8>, bool)> {
        let mut out = Vec::new();
        for c in chunks {
            r.feed(c, &mut out);
        }
        out.into_iter()
            .map(|l| (l.start, l.body.to_vec(), l.truncated))
            .collect()
    }

    #[test]
    fn splits_strips_cr_and_keeps_bytes() {
        let mut r = LineReader::new(0, MidLine::None, 100);
        let got = lines(&mut r, &[b"a\r\nb", b"\xff\xfe\r", b"\n\n"]);
        assert_eq!(
            got,
            vec![
                (0, b"a".to_vec(), false),
                (3, b"b\xff\xfe".to_vec(), false),
                (8, b"".to_vec(), false)
            ]
        );
        assert_eq!(r.offset(), 9);
    }

    #[test]
    fn truncates_and_skips_rest() {
        let mut r = LineReader::new(0, MidLine::None, 4);
        let got = lines(&mut r, &[b"0123456789", b"abc\nok\n"]);
        assert_eq!(
            got,
            vec![(0, b"0123".to_vec(), true), (14, b"ok".to_vec(), false)]
        );
        let mut r = LineReader::new(0, MidLine::None, 4);
        assert_eq!(
            lines(&mut r, &[b"0123\r\n"]),
            vec![(0, b"0123".to_vec(), false)]
        );
    }

    #[test]
    fn partial_line_rules() {
        let mut r = LineReader::new(0, MidLine::None, 100);
        let mut out = Vec::new();
        r.feed(b"x\nhalf", &mut out);
        r.flush_partial(&mut out);
        assert_eq!(out[1].body, &b"half"[..]);
        assert_eq!((out[1].end, out[1].end_mid), (6, MidLine::Continue));
        // Only the newline follows: nothing more.
        r.feed(b"\nnext\n", &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].body, &b"next"[..]);
        // A real continuation becomes its own line.
        r.feed(b"part", &mut out);
        r.flush_partial(&mut out);
        r.feed(b"-rest\n", &mut out);
        let bodies: Vec<_> = out.iter().map(|l| l.body.to_vec()).collect();
        assert_eq!(bodies[3..], [b"part".to_vec(), b"-rest".to_vec()]);
        // Resuming mid-line from a checkpoint behaves the same.
        let mut r = LineReader::new(6, MidLine::Continue, 100);
        assert_eq!(lines(&mut r, &[b"\nz\n"]), vec![(7, b"z".to_vec(), false)]);
        let mut r = LineReader::new(6, MidLine::Discard, 100);
        assert_eq!(
            lines(&mut r, &[b"junk\nz\n"]),
            vec![(11, b"z".to_vec(), false)]
        );
    }

    proptest! {
        /// However the input is chunked, lines come out the same.
        #[test]
        fn chunking_does_not_matter(data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), any::<u8>()], 0..300), cuts in proptest::collection::vec(0usize..300, 0..10), max in 1usize..20) {
            let mut whole = LineReader::new(0, MidLine::None, max);
            let expect = lines(&mut whole, &[&data]);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut prev = 0;
            for c in cuts { chunks.push(&data[prev..c]); prev = c; }
            chunks.push(&data[prev..]);
            let mut split = LineReader::new(0, MidLine::None, max);
            prop_assert_eq!(lines(&mut split, &chunks), expect.clone());
            prop_assert_eq!(split.offset(), data.len() as u64);
            // Sliced bodies are the same as copied ones.
            let mut shared = LineReader::new(0, MidLine::None, max);
            let mut out = Vec::new();
            for c in &chunks {
                shared.feed_shared(&Bytes::copy_from_slice(c), &mut out);
            }
            let got: Vec<(u64, Vec<u8>, bool)> =
                out.into_iter().map(|l| (l.start, l.body.to_vec(), l.truncated)).collect();
            prop_assert_eq!(got, expect);
        }
    }
}
