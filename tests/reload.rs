//! SIGHUP reloads: an invalid configuration is refused and the old topology
//! keeps running; a valid one swaps components without losing or
//! duplicating lines.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin};

use common::*;

fn config(source_and_sink: &str) -> String {
    format!("[sources.in]\ntype = \"stdin\"\n\n{source_and_sink}")
}

fn file_sink(name: &str, path: &Path) -> String {
    format!(
        "[sinks.{name}]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"{}\"\n",
        path.display()
    )
}

fn start(
    dir: &Path,
    config_path: &Path,
) -> (Child, ChildStdin, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut child = spawn_run(dir, config_path);
    let log = collect_stderr(&mut child);
    let stdin = child.stdin.take().unwrap();
    wait_for("the agent to start", || {
        log.lock().unwrap().contains("\"started\"")
    });
    (child, stdin, log)
}

fn send(stdin: &mut ChildStdin, from: usize, to: usize) {
    for i in from..to {
        writeln!(stdin, "line {i}").unwrap();
    }
    stdin.flush().unwrap();
}

#[test]
fn an_invalid_configuration_is_refused_and_the_old_one_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let config_path = write(&dir.path().join("t.toml"), &config(&file_sink("out", &out)));
    let (mut child, mut stdin, log) = start(dir.path(), &config_path);
    send(&mut stdin, 0, 10);
    wait_for("the first lines", || bodies(&out).len() == 10);

    write(
        &config_path,
        &config("[sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npaht = \"/x\"\n"),
    );
    signal(&child, "HUP");
    wait_for("the refusal", || {
        log.lock().unwrap().contains("previous one keeps running")
    });
    assert!(log.lock().unwrap().contains("unknown field `paht`"));

    send(&mut stdin, 10, 20);
    wait_for("lines after the refused reload", || {
        bodies(&out).len() == 20
    });
    drop(stdin);
    assert_eq!(
        child.wait().unwrap().code(),
        Some(0),
        "{}",
        log.lock().unwrap()
    );
    let expected: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
    assert_eq!(bodies(&out), expected);
}

#[test]
fn a_valid_change_swaps_the_sink_without_losing_or_duplicating_lines() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.jsonl");
    let second = dir.path().join("second.jsonl");
    let config_path = write(
        &dir.path().join("t.toml"),
        &config(&file_sink("out", &first)),
    );
    let (mut child, mut stdin, log) = start(dir.path(), &config_path);
    send(&mut stdin, 0, 500);
    wait_for("lines in the first sink", || bodies(&first).len() == 500);

    // Same sink name, new options: the old one drains, the new one takes over.
    write(&config_path, &config(&file_sink("out", &second)));
    signal(&child, "HUP");
    wait_for("the reload", || {
        log.lock().unwrap().contains("configuration reloaded")
    });

    // Lines written while and after the swap.
    send(&mut stdin, 500, 1000);
    drop(stdin);
    assert_eq!(
        child.wait().unwrap().code(),
        Some(0),
        "{}",
        log.lock().unwrap()
    );

    let mut all = bodies(&first);
    let after = bodies(&second);
    assert!(!after.is_empty(), "the new sink received lines");
    all.extend(after);
    let expected: Vec<String> = (0..1000).map(|i| format!("line {i}")).collect();
    assert_eq!(all, expected, "every line once, in order, across the swap");
}

#[test]
fn an_added_sink_receives_while_the_unchanged_one_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("kept.jsonl");
    let added = dir.path().join("added.jsonl");
    let config_path = write(
        &dir.path().join("t.toml"),
        &config(&file_sink("kept", &kept)),
    );
    let (mut child, mut stdin, log) = start(dir.path(), &config_path);
    send(&mut stdin, 0, 100);
    wait_for("first lines", || bodies(&kept).len() == 100);

    let both = format!(
        "{}\n{}",
        file_sink("kept", &kept),
        file_sink("added", &added)
    );
    write(&config_path, &config(&both));
    signal(&child, "HUP");
    wait_for("the reload", || {
        log.lock().unwrap().contains("configuration reloaded")
    });
    send(&mut stdin, 100, 200);
    drop(stdin);
    assert_eq!(
        child.wait().unwrap().code(),
        Some(0),
        "{}",
        log.lock().unwrap()
    );

    let expected: Vec<String> = (0..200).map(|i| format!("line {i}")).collect();
    assert_eq!(
        bodies(&kept),
        expected,
        "the unchanged sink saw every line once"
    );
    let later: Vec<String> = (100..200).map(|i| format!("line {i}")).collect();
    assert_eq!(
        bodies(&added),
        later,
        "the added sink gets what came after the reload"
    );
}
