//! Section markers in CI job logs: where a step / section starts and ends.
//!
//! Formats (see `docs/ci-context.md`):
//!
//! * GitHub Actions: `##[group]Name` / `##[endgroup]` as the runner writes
//!   them to its logs, and the workflow commands `::group::Name` /
//!   `::endgroup::` as they appear in raw step output. Runner log lines may
//!   start with a timestamp (`2024-01-01T00:00:00.0000000Z `), used as
//!   `at_unix`.
//! * GitLab CI: `section_start:<unix ts>:<name>[<options>]\r\x1b[0K<header>`
//!   and `section_end:<unix ts>:<name>\r\x1b[0K`, possibly preceded by
//!   `\x1b[0K`; the runner may put a `section_end` and the next
//!   `section_start` on one line (see [`parse_markers`]). `id` is the
//!   section name, `name` the header text (the section name when there is
//!   no header).
//! * Buildkite: `--- Name`, `+++ Name`, `~~~ Name` start a section and end
//!   the previous one (Buildkite groups do not nest: callers close the open
//!   section on each `Start`). `^^^ +++` (re-expand the previous group) is
//!   not a marker. A leading agent timestamp `\x1b_bk;t=<ms>\x07` gives
//!   `at_unix`.

use std::borrow::Cow;

use memchr::memchr;

use super::CiSystem;

/// A section boundary found in a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    Start {
        name: String,
        id: Option<String>,
        at_unix: Option<u64>,
    },
    End {
        id: Option<String>,
        at_unix: Option<u64>,
    },
}

#[derive(Clone, Copy)]
struct Formats {
    github: bool,
    gitlab: bool,
    buildkite: bool,
}

const ALL: Formats = Formats {
    github: true,
    gitlab: true,
    buildkite: true,
};

/// The first marker in `line`, trying every known format.
///
/// Note that Buildkite's `--- ` also matches lines such as Go's
/// `--- FAIL: TestX`, which Buildkite itself renders as a group; when the
/// log's CI system is known, prefer [`parse_marker_as`].
pub fn parse_marker(line: &[u8]) -> Option<Marker> {
    parse(line, ALL).into_iter().next()
}

/// The first marker in `line`, trying only the formats of `system`
/// (`Generic` tries every format).
pub fn parse_marker_as(system: CiSystem, line: &[u8]) -> Option<Marker> {
    parse_markers_as(system, line).into_iter().next()
}

/// Every marker in `line`, trying only the formats of `system`.
pub fn parse_markers_as(system: CiSystem, line: &[u8]) -> Vec<Marker> {
    let f = match system {
        CiSystem::GithubActions => Formats {
            github: true,
            gitlab: false,
            buildkite: false,
        },
        CiSystem::GitlabCi => Formats {
            github: false,
            gitlab: true,
            buildkite: false,
        },
        CiSystem::Buildkite => Formats {
            github: false,
            gitlab: false,
            buildkite: true,
        },
        CiSystem::Jenkins => Formats {
            github: false,
            gitlab: false,
            buildkite: false,
        },
        CiSystem::Generic => ALL,
    };
    parse(line, f)
}

/// Every marker in `line`, in order. Only GitLab puts more than one marker
/// on a line (`section_end:…\r\x1b[0Ksection_start:…\r\x1b[0KHeader`).
pub fn parse_markers(line: &[u8]) -> Vec<Marker> {
    parse(line, ALL)
}

fn parse(line: &[u8], f: Formats) -> Vec<Marker> {
    let mut out = Vec::new();
    let mut s = line;
    if let Some(r) = s.strip_suffix(b"\n") {
        s = r;
    }
    if let Some(r) = s.strip_suffix(b"\r") {
        s = r;
    }
    let mut line_ts = None;
    if let Some((ts, rest)) = github_timestamp(s) {
        line_ts = Some(ts);
        s = rest;
    }
    let (bk_ts, rest) = skip_escapes(s);
    s = rest;
    if line_ts.is_none() {
        line_ts = bk_ts;
    }

    if f.github
        && let Some(m) = github(s, line_ts)
    {
        out.push(m);
        return out;
    }
    if f.gitlab {
        gitlab(s, &mut out);
        if !out.is_empty() {
            return out;
        }
    }
    if f.buildkite {
        for p in [&b"--- "[..], b"+++ ", b"~~~ "] {
            if let Some(name) = s.strip_prefix(p) {
                out.push(Marker::Start {
                    name: text(name),
                    id: None,
                    at_unix: line_ts,
                });
                break;
            }
        }
    }
    out
}

fn github(s: &[u8], at_unix: Option<u64>) -> Option<Marker> {
    for p in [&b"##[group]"[..], b"::group::"] {
        if let Some(name) = s.strip_prefix(p) {
            return Some(Marker::Start {
                name: text(name),
                id: None,
                at_unix,
            });
        }
    }
    for p in [&b"##[endgroup]"[..], b"::endgroup::"] {
        if s.starts_with(p) {
            return Some(Marker::End { id: None, at_unix });
        }
    }
    None
}

fn gitlab(mut s: &[u8], out: &mut Vec<Marker>) {
    loop {
        let (start, rest) = if let Some(r) = s.strip_prefix(b"section_start:") {
            (true, r)
        } else if let Some(r) = s.strip_prefix(b"section_end:") {
            (false, r)
        } else {
            return;
        };
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || rest.get(digits) != Some(&b':') {
            return;
        }
        let ts = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|d| d.parse::<u64>().ok());
        let rest = &rest[digits + 1..];
        let n = rest
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            .count();
        if n == 0 {
            return;
        }
        let id = String::from_utf8_lossy(&rest[..n]).into_owned();
        let mut rest = &rest[n..];
        // Options such as "[collapsed=true]".
        if rest.first() == Some(&b'[') {
            match memchr(b']', rest) {
                Some(i) => rest = &rest[i + 1..],
                None => return,
            }
        }
        if let Some(r) = rest.strip_prefix(b"\r") {
            rest = r;
        }
        let (_, after) = skip_escapes(rest);
        if start {
            let header = text(after);
            let name = if header.is_empty() {
                id.clone()
            } else {
                header
            };
            out.push(Marker::Start {
                name,
                id: Some(id),
                at_unix: ts,
            });
            return;
        }
        out.push(Marker::End {
            id: Some(id),
            at_unix: ts,
        });
        s = after;
    }
}

/// ANSI-stripped, trimmed, lossily decoded text.
fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(&strip_ansi(b)).trim().to_string()
}

/// Skips leading escape sequences (and `\r`); returns the Buildkite
/// timestamp (`\x1b_bk;t=<ms>\x07`) in seconds if one was among them.
fn skip_escapes(mut s: &[u8]) -> (Option<u64>, &[u8]) {
    let mut ts = None;
    loop {
        if let Some(r) = s.strip_prefix(b"\r") {
            s = r;
            continue;
        }
        if s.first() != Some(&0x1b) {
            return (ts, s);
        }
        let len = escape_len(s);
        if let Some(ms) = s[..len]
            .strip_prefix(b"\x1b_bk;t=")
            .map(|r| r.iter().take_while(|b| b.is_ascii_digit()).count())
            .filter(|&d| d > 0)
            .and_then(|d| std::str::from_utf8(&s[7..7 + d]).ok()?.parse::<u64>().ok())
        {
            ts = Some(ms / 1000);
        }
        s = &s[len..];
    }
}

/// Length of the escape sequence at the start of `s` (which starts with ESC).
fn escape_len(s: &[u8]) -> usize {
    match s.get(1) {
        None => 1,
        Some(b'[') => {
            // CSI: parameters 0x30-0x3F, intermediates 0x20-0x2F, final 0x40-0x7E.
            let mut i = 2;
            while i < s.len() && (0x20..=0x3f).contains(&s[i]) {
                i += 1;
            }
            if i < s.len() && (0x40..=0x7e).contains(&s[i]) {
                i + 1
            } else {
                i
            }
        }
        Some(b']' | b'_' | b'P' | b'^' | b'X') => {
            // String sequences: up to BEL or ST (ESC \).
            let mut i = 2;
            while i < s.len() {
                if s[i] == 0x07 {
                    return i + 1;
                }
                if s[i] == 0x1b {
                    return if s.get(i + 1) == Some(&b'\\') {
                        i + 2
                    } else {
                        i
                    };
                }
                i += 1;
            }
            i
        }
        Some(_) => {
            // nF escapes (e.g. ESC ( B): intermediates 0x20-0x2F, then a final byte.
            let mut i = 1;
            while i < s.len() && (0x20..=0x2f).contains(&s[i]) {
                i += 1;
            }
            (i + 1).min(s.len())
        }
    }
}

/// Removes ANSI escape sequences (CSI colours and cursor codes, OSC,
/// APC such as Buildkite's timestamps, and two-byte escapes). Borrows when
/// the line has none.
pub fn strip_ansi(line: &[u8]) -> Cow<'_, [u8]> {
    let Some(first) = memchr(0x1b, line) else {
        return Cow::Borrowed(line);
    };
    let mut out = Vec::with_capacity(line.len());
    out.extend_from_slice(&line[..first]);
    let mut rest = &line[first..];
    while !rest.is_empty() {
        let len = escape_len(rest);
        rest = &rest[len..];
        match memchr(0x1b, rest) {
            Some(i) => {
                out.extend_from_slice(&rest[..i]);
                rest = &rest[i..];
            }
            None => {
                out.extend_from_slice(rest);
                break;
            }
        }
    }
    Cow::Owned(out)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z ` at the start of a GitHub runner log
/// line → (unix seconds, rest of the line).
fn github_timestamp(s: &[u8]) -> Option<(u64, &[u8])> {
    if s.len() < 21 || s[4] != b'-' || s[7] != b'-' || s[10] != b'T' || s[13] != b':' {
        return None;
    }
    if s[16] != b':' {
        return None;
    }
    let num = |a: usize, b: usize| -> Option<u64> {
        let d = &s[a..b];
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| std::str::from_utf8(d).ok()?.parse().ok())?
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, se) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    if s.get(i) == Some(&b'.') {
        i += 1;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    if s.get(i) != Some(&b'Z') || s.get(i + 1) != Some(&b' ') {
        return None;
    }
    let days = days_from_civil(y as i64, mo as i64, d as i64);
    let secs = days * 86_400 + (h * 3600 + mi * 60 + se) as i64;
    Some((u64::try_from(secs).ok()?, &s[i + 2..]))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
