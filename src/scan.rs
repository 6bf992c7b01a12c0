//! `tailguard scan [PATH...|-]`: a one-shot scan of files, directories and
//! standard input with the same engine and rules as `run`, for pipelines
//! and incident response.
//!
//! Output never contains a secret: each finding names the file, line,
//! column, rule and the secret's keyed fingerprint.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use crate::detect::{Detector, Finding, Scratch};

/// How findings are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `path:line:column: rule (confidence) fingerprint`, one per line.
    Human,
    /// A JSON array of findings.
    Json,
    /// SARIF 2.1.0, for code-scanning user interfaces.
    Sarif,
}

/// One finding with where it is.
#[derive(Clone, Debug)]
pub struct Located {
    pub path: String,
    pub line: u64,
    /// 1-based byte column of the secret's start.
    pub column: u64,
    pub end_column: u64,
    pub finding: Finding,
}

/// Totals of a scan.
#[derive(Debug, Default)]
pub struct Summary {
    pub files: u64,
    pub bytes: u64,
    pub skipped_binary: u64,
}

/// Reads at most this much at a time; a longer line is scanned in pieces.
const CHUNK: usize = 1 << 20;

/// Past this, `scan` drops the regex caches of the rules that ran longest ago
/// (the agent: 3 MiB). A one-shot scan is judged by throughput and ends soon:
/// on the 1 GiB bench corpus the agent's budget rebuilt busy rules' caches
/// often enough to cost 5% of the scan. It is a soft bound, like the agent's:
/// caches of the rules that ran in the current call are kept, and one rule's
/// cache holds a forward and a reverse lazy DFA of up to
/// [`SCAN_LAZY_DFA_CAPACITY`] each, so this is four such caches' worth.
const SCAN_REGEX_CACHE_BUDGET: usize = 4 * 2 * SCAN_LAZY_DFA_CAPACITY;

/// Each rule's lazy DFA may grow this large in `scan`, against the agent's 2 MiB. The
/// generic rules' DFAs (a 30-byte free prefix before a dozen key words, case-insensitive)
/// outgrow 2 MiB on a CI log and were cleared and rebuilt all along: determinization was 3%
/// of a 1 GiB scan. With 16 MiB it was 1.5% and the scan took 3-4% less CPU; 8 MiB does as
/// well (alternated runs: 0.87 and 0.86 CPU-s), and peak RSS is 39 MiB on that corpus.
pub const SCAN_LAZY_DFA_CAPACITY: usize = 8 << 20;

/// What a scan keeps from one input to the next: the read buffer and the
/// regex caches. Made afresh per file, they took two thirds of a scan of
/// 1,025 files of 64 KiB (zeroing a 1 MiB buffer and rebuilding the lazy
/// DFAs each time).
pub struct ScanState {
    scratch: Scratch,
    buf: Vec<u8>,
}

impl ScanState {
    pub fn new() -> Self {
        ScanState {
            scratch: Scratch::with_regex_cache_budget(SCAN_REGEX_CACHE_BUDGET),
            buf: vec![0u8; CHUNK],
        }
    }
}

impl Default for ScanState {
    fn default() -> Self {
        Self::new()
    }
}

/// Scans one reader, calling `found` for each finding.
pub fn scan_reader(
    detector: &Detector,
    state: &mut ScanState,
    name: &str,
    mut input: impl Read,
    progress: &dyn Fn(u64),
    found: &mut dyn FnMut(Located),
) -> std::io::Result<u64> {
    let ScanState { scratch, buf } = state;
    let mut filled = 0;
    let mut line_number: u64 = 1;
    let mut total: u64 = 0;
    let mut findings = Vec::new();
    let known = Some(detector.known_values());
    loop {
        let n = input.read(&mut buf[filled..])?;
        total += n as u64;
        progress(n as u64);
        let end = filled + n;
        let at_eof = n == 0;
        if end == 0 {
            break;
        }
        // Scan whole lines; keep a trailing partial line for the next read,
        // unless the buffer is full of one line or the input ended.
        let cut = if at_eof || end == buf.len() {
            end
        } else {
            match memchr::memrchr(b'\n', &buf[..end]) {
                Some(i) => i + 1,
                None => {
                    filled = end;
                    continue;
                }
            }
        };
        let block = &buf[..cut];
        findings.clear();
        detector.scan_in(scratch, block, known, &mut findings);
        line_number += locate(block, line_number, name, &mut findings, found);
        buf.copy_within(cut..end, 0);
        filled = end - cut;
        if at_eof && filled == 0 {
            break;
        }
    }
    Ok(total)
}

/// Reports `findings` in `block` (whose first line is `first_line`) with
/// their line and columns; returns the number of lines the block ends.
///
/// Lines are counted with a SIMD byte count between findings rather than by
/// visiting each newline: on a CI log (a newline every 70 bytes or so) that
/// visit was about 7% of a scan.
fn locate(
    block: &[u8],
    first_line: u64,
    name: &str,
    findings: &mut Vec<Finding>,
    found: &mut dyn FnMut(Located),
) -> u64 {
    let newlines = |bytes: &[u8]| bytecount::count(bytes, b'\n') as u64;
    // The line of `counted_to` and where that line starts, moved finding by
    // finding; forward (the usual order) only the bytes in between are
    // looked at, so many findings on one long line stay linear.
    let (mut counted_to, mut line, mut line_start) = (0, first_line, 0);
    for finding in findings.drain(..) {
        let start = finding.range.start;
        if start >= counted_to {
            let between = &block[counted_to..start];
            line += newlines(between);
            if let Some(nl) = memchr::memrchr(b'\n', between) {
                line_start = counted_to + nl + 1;
            }
        } else {
            line -= newlines(&block[start..counted_to]);
            line_start = memchr::memrchr(b'\n', &block[..start]).map_or(0, |nl| nl + 1);
        }
        counted_to = start;
        found(Located {
            path: name.to_string(),
            line,
            column: (start - line_start + 1) as u64,
            end_column: (finding.range.end - line_start + 1) as u64,
            finding,
        });
    }
    line - first_line + newlines(&block[counted_to..])
}

/// Every regular file under `paths` (directories walked, `.git` skipped,
/// symlinks not followed), in a stable order.
fn files_of(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.is_file() {
            files.push(path.clone());
            continue;
        }
        let walker = walkdir::WalkDir::new(path)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.file_name() != ".git");
        for entry in walker {
            let entry = entry.map_err(|e| e.to_string())?;
            if entry.file_type().is_file() {
                files.push(entry.into_path());
            }
        }
    }
    Ok(files)
}

fn looks_binary(path: &Path) -> bool {
    let mut head = [0u8; 8192];
    std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map(|n| memchr::memchr(0, &head[..n]).is_some())
        .unwrap_or(false)
}

/// Runs the command; returns its exit code.
pub fn run(detector: Arc<Detector>, paths: &[PathBuf], format: Format, show_progress: bool) -> u8 {
    use crate::cli::exit;
    let stdin_only = paths.is_empty() || paths.iter().all(|p| p.as_os_str() == "-");
    let files = if stdin_only {
        Vec::new()
    } else {
        match files_of(paths) {
            Ok(files) => files,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::CONFIG;
            }
        }
    };
    let total_bytes: u64 = files
        .iter()
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum();
    let bar = if show_progress && std::io::stderr().is_terminal() && total_bytes > 8 << 20 {
        let bar = indicatif::ProgressBar::new(total_bytes);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta} {msg}",
            )
            .expect("a valid template"),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    // Human and JSON output stream as findings come, so memory stays flat
    // on large inputs; SARIF is one document and is assembled at the end.
    let mut located = Vec::new();
    let mut count = 0u64;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if format == Format::Json {
        let _ = out.write_all(b"[");
    }
    let mut emit = |l: Located| {
        count += 1;
        match format {
            Format::Human => {
                let _ = out.write_all(human(std::slice::from_ref(&l)).as_bytes());
            }
            Format::Json => {
                let item = json_findings(std::slice::from_ref(&l));
                let text = serde_json::to_string_pretty(&item[0]).unwrap_or_default();
                let _ = write!(
                    out,
                    "{}\n  {}",
                    if count == 1 { "" } else { "," },
                    text.replace('\n', "\n  ")
                );
            }
            Format::Sarif => located.push(l),
        }
    };
    let mut summary = Summary::default();
    let progress = |n: u64| bar.inc(n);
    let mut state = ScanState::new();
    if stdin_only {
        match scan_reader(
            &detector,
            &mut state,
            "-",
            std::io::stdin().lock(),
            &progress,
            &mut emit,
        ) {
            Ok(n) => summary.bytes += n,
            Err(e) => {
                eprintln!("error: reading standard input: {e}");
                return exit::RUNTIME;
            }
        }
    }
    for file in &files {
        if looks_binary(file) {
            summary.skipped_binary += 1;
            bar.inc(file.metadata().map_or(0, |m| m.len()));
            continue;
        }
        let name = file.display().to_string();
        let result = std::fs::File::open(file)
            .and_then(|f| scan_reader(&detector, &mut state, &name, f, &progress, &mut emit));
        match result {
            Ok(n) => {
                summary.files += 1;
                summary.bytes += n;
            }
            Err(e) => eprintln!("warning: {name}: {e}; skipped"),
        }
    }
    bar.finish_and_clear();
    match format {
        Format::Human => {}
        Format::Json => {
            let _ = out.write_all(if count == 0 { b"]\n" } else { b"\n]\n" });
        }
        Format::Sarif => {
            let doc = serde_json::to_string_pretty(&sarif(&detector, &located)).unwrap_or_default();
            let _ = writeln!(out, "{doc}");
        }
    }
    let _ = out.flush();
    drop(out);
    eprintln!(
        "scanned {} file{} ({} bytes, {} binary skipped): {} finding{}",
        summary.files.max(u64::from(stdin_only)),
        if summary.files == 1 || stdin_only {
            ""
        } else {
            "s"
        },
        summary.bytes,
        summary.skipped_binary,
        count,
        if count == 1 { "" } else { "s" }
    );
    if count == 0 { exit::OK } else { exit::FINDINGS }
}

fn human(located: &[Located]) -> String {
    located
        .iter()
        .map(|l| {
            format!(
                "{}:{}:{}: {} ({}, {}) fingerprint {}\n",
                l.path,
                l.line,
                l.column,
                l.finding.rule_id,
                l.finding.rule_name,
                l.finding.confidence.as_str(),
                l.finding.fingerprint.short()
            )
        })
        .collect()
}

fn json_findings(located: &[Located]) -> serde_json::Value {
    serde_json::Value::Array(
        located
            .iter()
            .map(|l| {
                json!({
                    "path": l.path,
                    "line": l.line,
                    "column": l.column,
                    "end_column": l.end_column,
                    "rule_id": l.finding.rule_id.as_ref(),
                    "rule_name": l.finding.rule_name.as_ref(),
                    "family": l.finding.family.as_ref(),
                    "confidence": l.finding.confidence.as_str(),
                    "fingerprint": l.finding.fingerprint.short(),
                    "checksum_valid": l.finding.checksum_valid,
                    "method": crate::transforms::redact::method_name(&l.finding.method),
                })
            })
            .collect(),
    )
}

/// SARIF 2.1.0 with one result per finding; `partialFingerprints` lets a
/// code-scanning UI track the same secret across scans.
fn sarif(detector: &Detector, located: &[Located]) -> serde_json::Value {
    let mut rule_ids: Vec<&str> = located.iter().map(|l| l.finding.rule_id.as_ref()).collect();
    rule_ids.sort_unstable();
    rule_ids.dedup();
    let rules: Vec<serde_json::Value> = rule_ids
        .iter()
        .map(|id| {
            let rule = detector.rules().iter().find(|r| r.id.as_ref() == *id);
            let (name, family) = rule.map_or((*id, ""), |r| (r.name.as_ref(), r.family.as_ref()));
            json!({
                "id": id,
                "name": name,
                "shortDescription": { "text": format!("{name} detected") },
                "properties": { "family": family, "tags": ["security", "secret"] }
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = located
        .iter()
        .map(|l| {
            let level = match l.finding.confidence.as_str() {
                "high" => "error",
                "medium" => "warning",
                _ => "note",
            };
            json!({
                "ruleId": l.finding.rule_id.as_ref(),
                "level": level,
                "message": { "text": format!("{} (fingerprint {})", l.finding.rule_name, l.finding.fingerprint.short()) },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": l.path },
                        "region": { "startLine": l.line, "startColumn": l.column, "endColumn": l.end_column }
                    }
                }],
                "partialFingerprints": { "tailguardSecret/v1": l.finding.fingerprint.short() }
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "tailguard",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules
            }},
            "results": results
        }]
    })
}

#[cfg(test)]
mod locate_tests {
    use super::*;
    use crate::detect::{Confidence, Fingerprinter, Method};

    /// Lines and columns are right whatever order the findings come in,
    /// and the block's line count is every newline in it.
    #[test]
    fn findings_are_placed_on_their_lines_in_any_order() {
        let block = b"first\n  ab\nthird\nfourth xy and zw\nlast";
        let at = |needle: &[u8]| {
            let start = block.windows(2).position(|w| w == needle).unwrap();
            Finding {
                rule_id: "r".into(),
                rule_name: "r".into(),
                family: "r".into(),
                confidence: Confidence::High,
                range: start..start + 2,
                fingerprint: Fingerprinter::new("test").fingerprint(needle),
                checksum_valid: None,
                method: Method::Pattern,
            }
        };
        let mut findings = vec![at(b"zw"), at(b"ab"), at(b"xy")];
        let mut placed = Vec::new();
        let lines = locate(block, 10, "f", &mut findings, &mut |l| {
            placed.push((l.line, l.column, l.end_column));
        });
        assert_eq!(placed, [(13, 15, 17), (11, 3, 5), (13, 8, 10)]);
        assert_eq!(lines, 4);
        assert!(findings.is_empty());
    }
}
