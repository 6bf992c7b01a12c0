//! Joining several lines into one event (stack traces, PEM blocks).
//!
//! A line matching `start_pattern` while no event is open opens one; other
//! lines outside an event pass through unchanged. What follows depends on
//! `mode` (see [`MultilineMode`]). An open event is emitted when `timeout`
//! passes without a new line. Lines are joined with `\n`; the joined body is
//! capped at `max_line_bytes` (and flagged truncated).

use std::time::{Duration, Instant};

use bytes::Bytes;
use regex::bytes::Regex;

use super::config::{MultilineConfig, MultilineMode};
use super::reader::Line;

#[derive(Clone, Debug)]
pub(crate) struct Rules {
    start: Regex,
    condition: Regex,
    mode: MultilineMode,
    pub(crate) timeout: Duration,
}

impl Rules {
    pub(crate) fn new(config: &MultilineConfig) -> Result<Self, regex::Error> {
        Ok(Self {
            start: Regex::new(&config.start_pattern)?,
            condition: Regex::new(&config.condition_pattern)?,
            mode: config.mode,
            timeout: config.timeout,
        })
    }
}

struct Group {
    first: Line,
    body: Vec<u8>,
    last_at: Instant,
}

pub(crate) struct Aggregator {
    rules: Rules,
    max: usize,
    group: Option<Group>,
}

impl Aggregator {
    pub(crate) fn new(rules: Rules, max_line_bytes: usize) -> Self {
        Self {
            rules,
            max: max_line_bytes,
            group: None,
        }
    }

    /// When the open event times out, if one is open.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.group.as_ref().map(|g| g.last_at + self.rules.timeout)
    }

    pub(crate) fn push(&mut self, line: Line, now: Instant, out: &mut Vec<Line>) {
        let Some(mut group) = self.group.take() else {
            return self.start_or_pass(line, now, out);
        };
        let matches = self.rules.condition.is_match(&line.body);
        match self.rules.mode {
            MultilineMode::ContinueThrough => {
                if matches {
                    self.append(&mut group, line, now);
                    self.group = Some(group);
                } else {
                    out.push(finish(group));
                    self.start_or_pass(line, now, out);
                }
            }
            MultilineMode::ContinuePast => {
                self.append(&mut group, line, now);
                if matches {
                    self.group = Some(group);
                } else {
                    out.push(finish(group));
                }
            }
            MultilineMode::HaltBefore => {
                if matches {
                    out.push(finish(group));
                    self.start_or_pass(line, now, out);
                } else {
                    self.append(&mut group, line, now);
                    self.group = Some(group);
                }
            }
            MultilineMode::HaltWith => {
                self.append(&mut group, line, now);
                if matches {
                    out.push(finish(group));
                } else {
                    self.group = Some(group);
                }
            }
        }
    }

    fn start_or_pass(&mut self, line: Line, now: Instant, out: &mut Vec<Line>) {
        if self.rules.start.is_match(&line.body) {
            self.group = Some(Group {
                body: line.body.to_vec(),
                first: line,
                last_at: now,
            });
        } else {
            out.push(line);
        }
    }

    fn append(&self, group: &mut Group, line: Line, now: Instant) {
        let room = self.max.saturating_sub(group.body.len());
        if room < 1 + line.body.len() {
            group.first.truncated = true;
        }
        if room > 0 {
            group.body.push(b'\n');
            let take = (room - 1).min(line.body.len());
            group.body.extend_from_slice(&line.body[..take]);
        }
        group.first.truncated |= line.truncated;
        group.first.end = line.end;
        group.first.end_mid = line.end_mid;
        group.last_at = now;
    }

    /// Emits the open event if it timed out.
    pub(crate) fn flush_idle(&mut self, now: Instant, out: &mut Vec<Line>) {
        if self.deadline().is_some_and(|d| d <= now) {
            self.flush(out);
        }
    }

    /// Emits the open event, if any.
    pub(crate) fn flush(&mut self, out: &mut Vec<Line>) {
        if let Some(group) = self.group.take() {
            out.push(finish(group));
        }
    }
}

fn finish(group: Group) -> Line {
    let mut line = group.first;
    line.body = Bytes::from(group.body);
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::file::reader::{LineReader, MidLine};

    fn run(mode: MultilineMode, start: &str, cond: &str, input: &[u8]) -> Vec<String> {
        let rules = Rules::new(&MultilineConfig {
            start_pattern: start.into(),
            condition_pattern: cond.into(),
            mode,
            timeout: Duration::from_secs(1),
        })
        .unwrap();
        let mut agg = Aggregator::new(rules, 1000);
        let mut reader = LineReader::new(0, MidLine::None, 1000);
        let mut lines = Vec::new();
        reader.feed(input, &mut lines);
        let now = Instant::now();
        let mut out = Vec::new();
        for l in lines {
            agg.push(l, now, &mut out);
        }
        agg.flush_idle(now + Duration::from_secs(2), &mut out);
        out.iter()
            .map(|l| String::from_utf8(l.body.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn stack_trace_continue_through() {
        let got = run(
            MultilineMode::ContinueThrough,
            r"^\S",
            r"^\s+at ",
            b"plain\nException: boom\n  at a()\n  at b()\nnext\n",
        );
        assert_eq!(
            got,
            ["plain", "Exception: boom\n  at a()\n  at b()", "next"]
        );
    }

    #[test]
    fn pem_halt_with() {
        let got = run(
            MultilineMode::HaltWith,
            "-----BEGIN",
            "-----END",
            b"x\n-----BEGIN KEY-----\nAAAA\nBBBB\n-----END KEY-----\ny\n",
        );
        assert_eq!(
            got,
            [
                "x",
                "-----BEGIN KEY-----\nAAAA\nBBBB\n-----END KEY-----",
                "y"
            ]
        );
    }

    #[test]
    fn halt_before_and_continue_past() {
        let got = run(
            MultilineMode::HaltBefore,
            r"^\[",
            r"^\[",
            b"[1] a\nb\n[2] c\n[3] d\ne\n",
        );
        assert_eq!(got, ["[1] a\nb", "[2] c", "[3] d\ne"]);
        let got = run(
            MultilineMode::ContinuePast,
            r"\\$",
            r"\\$",
            b"a \\\nb \\\nc\nd\n",
        );
        assert_eq!(got, ["a \\\nb \\\nc", "d"]);
    }

    #[test]
    fn offsets_cover_the_group() {
        let rules = Rules::new(&MultilineConfig {
            start_pattern: "^S".into(),
            condition_pattern: "^ ".into(),
            mode: MultilineMode::ContinueThrough,
            timeout: Duration::from_secs(1),
        })
        .unwrap();
        let mut agg = Aggregator::new(rules, 6);
        let mut reader = LineReader::new(0, MidLine::None, 100);
        let mut lines = Vec::new();
        reader.feed(b"S1\n a\n bbbbbb\nz\n", &mut lines);
        let now = Instant::now();
        let mut out = Vec::new();
        for l in lines {
            agg.push(l, now, &mut out);
        }
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].start, out[0].end), (0, 14));
        assert_eq!(out[0].body, &b"S1\n a\n "[..6]);
        assert!(out[0].truncated);
        assert_eq!((out[1].start, out[1].body.as_ref()), (14, &b"z"[..]));
    }
}
