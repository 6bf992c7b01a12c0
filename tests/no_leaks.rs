//! Nothing tailguard emits or logs contains a secret it detected: the whole
//! development corpus goes through the real pipeline (stdin -> redact ->
//! file sink and console), with tailguard's own log at debug level, and
//! every output is searched for every detected secret.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::corpus::{self, field};
use common::*;
use tailguard::detect::{Detector, DetectorConfig};

#[test]
fn no_detected_secret_reaches_any_output() {
    let Some(dir) = corpus::dir() else { return };
    let positives = corpus::read_jsonl_gz(dir.join("positives.jsonl.gz"));
    let negatives = corpus::read_jsonl_gz(dir.join("negatives.jsonl.gz"));

    // Which secrets the engine finds in their line, by position.
    let detector = Detector::new(&DetectorConfig {
        fingerprint_key: "leak-test".into(),
        ..DetectorConfig::default()
    })
    .unwrap();
    let mut must_not_leak = Vec::new();
    let mut findings = Vec::new();
    for p in &positives {
        let (line, secret) = (field(p, "line"), field(p, "secret"));
        let at = line.find(secret).expect("the secret is in its line");
        findings.clear();
        detector.scan(line.as_bytes(), &mut findings);
        if findings
            .iter()
            .any(|f| f.range.start < at + secret.len() && at < f.range.end)
        {
            must_not_leak.push(secret.to_string());
        }
    }
    assert!(
        must_not_leak.len() * 100 >= positives.len() * 95,
        "recall fell below 95%"
    );

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("events.jsonl");
    let config = write(
        &tmp.path().join("t.toml"),
        &format!(
            r#"
log_level = "debug"

[sources.in]
type = "stdin"

[transforms.redact]
type = "redact"
inputs = ["in"]
fingerprint_key = "leak-test"

[sinks.file]
type = "file"
inputs = ["redact"]
path = "{}"
include_resource = true

[sinks.console]
type = "console"
inputs = ["redact"]
"#,
            out.display()
        ),
    );
    let mut child = tailguard(tmp.path())
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let lines: Vec<String> = positives
        .iter()
        .chain(negatives.iter())
        .map(|v| field(v, "line").to_string())
        .collect();
    let writer = std::thread::spawn(move || {
        for line in lines {
            writeln!(stdin, "{line}").unwrap();
        }
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let sink = std::fs::read_to_string(&out).unwrap();
    let outputs = [
        ("file sink", sink.as_str()),
        ("stdout", &stdout(&output)),
        ("stderr (tailguard's own log)", &stderr(&output)),
    ];
    let mut leaks = Vec::new();
    for secret in &must_not_leak {
        for (name, text) in &outputs {
            if text.contains(secret.as_str()) {
                // Never print the secret itself, even in a failing test.
                leaks.push(format!("{name}: a secret of {} bytes", secret.len()));
            }
        }
    }
    assert!(leaks.is_empty(), "{} leaks: {leaks:?}", leaks.len());
    let finding_spans = sink.lines().filter(|l| l.contains("\"FINDING ")).count();
    assert!(
        finding_spans >= must_not_leak.len(),
        "{finding_spans} findings for {} secrets",
        must_not_leak.len()
    );
    println!(
        "{} detected secrets checked against {} output bytes: no leak",
        must_not_leak.len(),
        outputs.iter().map(|(_, t)| t.len()).sum::<usize>()
    );
}
