//! Runner log sources read real files and turn section markers into step
//! spans.

mod common;

use std::process::Stdio;

use common::*;

#[test]
fn a_github_runner_log_becomes_lines_grouped_under_step_spans() {
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("actions-runner/_diag/pages");
    let out = dir.path().join("out.jsonl");
    let config = write(
        &dir.path().join("t.toml"),
        &format!(
            "[sources.runner]\ntype = \"github_runner_logs\"\ninclude = [\"{}/*.log\"]\npoll_interval = \"100ms\"\n\n[sinks.out]\ntype = \"file\"\ninputs = [\"runner\"]\npath = \"{}\"\n",
            pages.display(),
            out.display()
        ),
    );
    write(
        &pages.join("job_1.log"),
        "2024-01-01T00:00:00.0000000Z ##[group]Run actions/checkout@v4\n\
         2024-01-01T00:00:01.0000000Z Syncing repository\n\
         2024-01-01T00:00:02.0000000Z ##[endgroup]\n\
         2024-01-01T00:00:03.0000000Z ##[group]Run make test\n\
         2024-01-01T00:00:04.0000000Z ok 42 tests\n\
         2024-01-01T00:00:05.0000000Z ##[endgroup]\n",
    );
    let mut child = tailguard(dir.path())
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let read = || json_lines(&out);
    wait_for("both step spans", || {
        read().iter().filter(|e| e.get("span").is_some()).count() == 2
    });
    let _ = child.kill();
    let _ = child.wait();

    let events = read();
    let steps: Vec<&serde_json::Value> =
        events.iter().filter(|e| e.get("span").is_some()).collect();
    assert_eq!(steps[0]["span"]["name"], "Run actions/checkout@v4");
    assert_eq!(steps[1]["span"]["name"], "Run make test");
    assert_eq!(steps[0]["span"]["start"], "2024-01-01T00:00:00.000000000Z");
    assert_eq!(steps[1]["span"]["end"], "2024-01-01T00:00:05.000000000Z");
    let line = |needle: &str| {
        events
            .iter()
            .find(|e| e["body"].as_str().is_some_and(|b| b.ends_with(needle)))
            .unwrap()
    };
    assert_eq!(line("Syncing repository")["span_id"], steps[0]["span_id"]);
    assert_eq!(line("ok 42 tests")["span_id"], steps[1]["span_id"]);
    assert_eq!(
        line("ok 42 tests")["trace_id"],
        steps[0]["trace_id"],
        "one trace per job log"
    );
    assert_eq!(
        events.iter().filter(|e| e.get("body").is_some()).count(),
        6,
        "every line once"
    );
}

#[test]
fn runner_sources_default_to_the_runners_log_folders() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        &dir.path().join("t.toml"),
        "[sources.jenkins]\ntype = \"jenkins_logs\"\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"jenkins\"]\n",
    );
    let out = tailguard(dir.path())
        .args(["validate", "--config"])
        .arg(&config)
        .env("JENKINS_HOME", dir.path().join("jenkins"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("jenkins(jenkins_logs)"));
}
