//! The evidence journal: the real agent writes findings to it, `evidence
//! verify` passes on the untouched journal and names the first bad record
//! after an edit, a deletion and a reorder.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;

fn token(n: u32) -> String {
    format!("gh{}_{}{:04}", "p", "Zq8Rk2LmT7vXw4NbP9yHc3JdF6sGa1Ue", n)
}

/// Runs the agent over `n` lines with a secret each; returns the journal.
fn record_findings(state: &Path, n: u32, from: u32) -> PathBuf {
    let config = write(
        &state.join("t.toml"),
        "[sources.in]\ntype = \"stdin\"\n\n[transforms.redact]\ntype = \"redact\"\ninputs = [\"in\"]\nfingerprint_key = \"fleet\"\n\n[sinks.evidence]\ntype = \"evidence\"\ninputs = [\"redact\"]\n",
    );
    let mut child = spawn_run(state, &config);
    let mut stdin = child.stdin.take().unwrap();
    for i in from..from + n {
        writeln!(stdin, "step {i}: token {}", token(i)).unwrap();
    }
    drop(stdin);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    state.join("evidence/evidence")
}

fn verify(state: &Path) -> (Option<i32>, String) {
    let out = tailguard(state)
        .args(["evidence", "verify"])
        .output()
        .unwrap();
    (out.status.code(), stderr(&out))
}

fn journal_lines(dir: &Path) -> (PathBuf, Vec<String>) {
    let file = dir.join("journal-000000.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    (file, text.lines().map(str::to_string).collect())
}

#[test]
fn verify_passes_untouched_and_names_the_first_bad_record_after_tampering() {
    let state = tempfile::tempdir().unwrap();
    let dir = record_findings(state.path(), 5, 0);
    let (code, err) = verify(state.path());
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("OK: 5 records"), "{err}");
    let (file, original) = journal_lines(&dir);
    assert!(
        original.iter().all(|l| !l.contains(&token(0)[4..])),
        "no secret in evidence"
    );

    // An edit: change the rule name in record 2 (line 3).
    let mut edited = original.clone();
    edited[2] = edited[2].replacen("github-pat", "github-pAt", 1);
    std::fs::write(&file, edited.join("\n") + "\n").unwrap();
    let (code, err) = verify(state.path());
    assert_eq!(code, Some(1));
    assert!(
        err.contains("journal-000000.jsonl:3: record 2 was changed"),
        "{err}"
    );

    // A deletion: drop line 2.
    let mut removed = original.clone();
    removed.remove(1);
    std::fs::write(&file, removed.join("\n") + "\n").unwrap();
    let (_, err) = verify(state.path());
    assert!(
        err.contains(":2: record 2 follows record 0: records were removed"),
        "{err}"
    );

    // A reorder: swap lines 3 and 4.
    let mut reordered = original.clone();
    reordered.swap(2, 3);
    std::fs::write(&file, reordered.join("\n") + "\n").unwrap();
    let (_, err) = verify(state.path());
    assert!(
        err.contains(":3: record 3 follows record 1: records were removed"),
        "{err}"
    );

    std::fs::write(&file, original.join("\n") + "\n").unwrap();
    assert_eq!(verify(state.path()).0, Some(0));
}

#[test]
fn a_restart_continues_the_chain_and_export_selects_by_time() {
    let state = tempfile::tempdir().unwrap();
    record_findings(state.path(), 3, 0);
    record_findings(state.path(), 2, 3);
    let (code, err) = verify(state.path());
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("OK: 5 records"), "{err}");

    let export = tailguard(state.path())
        .args(["evidence", "export", "--since", "1h"])
        .output()
        .unwrap();
    assert_eq!(export.status.code(), Some(0));
    let records: Vec<serde_json::Value> = stdout(&export)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 5);
    assert!(
        records
            .iter()
            .all(|r| r["span"]["name"] == "FINDING github-pat")
    );
    let none = tailguard(state.path())
        .args(["evidence", "export", "--since", "2099-01-01T00:00:00Z"])
        .output()
        .unwrap();
    assert!(stdout(&none).is_empty());
}
