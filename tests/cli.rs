//! The command line, configuration checks and the stdin -> file pipeline,
//! driven through the real binary.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;

#[test]
fn validate_reports_a_key_typo_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        &dir.path().join("bad.toml"),
        "[sources.in]\ntype = \"stdin\"\nmax_line_byte = 10\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"in\"]\n",
    );
    let out = tailguard(dir.path())
        .arg("validate")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let expected = format!(
        "error: {}:3:1: sources.in: unknown field `max_line_byte`, expected `max_line_bytes`",
        config.display()
    );
    assert!(err.contains(&expected), "{err}");
    assert!(stdout(&out).is_empty());
}

#[test]
fn validate_reports_an_unknown_input_by_component_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        &dir.path().join("t.toml"),
        "[sources.in]\ntype = \"stdin\"\n[sinks.out]\ntype = \"console\"\ninputs = [\"in\", \"nowhere\"]\n",
    );
    let out = tailguard(dir.path())
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("sinks.out reads from `nowhere`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn validate_names_both_drop_ins_that_define_the_same_sink() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    write(
        &etc.join("tailguard.toml"),
        "[sources.in]\ntype = \"stdin\"\n",
    );
    let first = write(
        &etc.join("conf.d/10-console.toml"),
        "[sinks.out]\ntype = \"console\"\ninputs = [\"in\"]\n",
    );
    let second = write(
        &etc.join("conf.d/20-file.toml"),
        "[sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"/tmp/x\"\n",
    );
    let out = tailguard(dir.path())
        .arg("validate")
        .arg("--config-dir")
        .arg(&etc)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&first.display().to_string()), "{err}");
    assert!(err.contains(&second.display().to_string()), "{err}");
    assert!(err.contains("sink `out` is defined twice"), "{err}");
}

#[test]
fn validate_prints_every_error_then_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        &dir.path().join("t.toml"),
        "[sources.in]\ntype = \"stdn\"\n[sinks.out]\ntype = \"console\"\ninputs = [\"in\"]\ncolour = true\n",
    );
    let out = tailguard(dir.path())
        .args(["validate", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("unknown source type `stdn`"), "{err}");
    assert!(err.contains("unknown field `colour`"), "{err}");
    assert!(err.contains("2 configuration errors found"), "{err}");
}

#[test]
fn validate_ok_prints_a_one_line_summary() {
    let dir = tempfile::tempdir().unwrap();
    let config = pipeline_config(dir.path(), &dir.path().join("out.jsonl"));
    let out = tailguard(dir.path())
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "OK: 1 file; 1 source, 0 transforms, 1 sink: in(stdin) -> out(file)\n"
    );
    assert!(
        !dir.path().join("out.jsonl").exists(),
        "validate starts nothing"
    );
}

#[test]
fn missing_required_variable_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        &dir.path().join("t.toml"),
        "[sources.in]\ntype = \"stdin\"\n[sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"${TG_TEST_OUT:?where events go}\"\n",
    );
    let out = tailguard(dir.path())
        .args(["validate", "--config"])
        .arg(&config)
        .env_remove("TG_TEST_OUT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(":6:9: environment variable `TG_TEST_OUT`: where events go"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn stdin_to_file_writes_every_line_and_exits_zero_at_eof() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.jsonl");
    let config = pipeline_config(dir.path(), &out_path);
    let mut child = tailguard(dir.path())
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a\nb\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(bodies(&out_path), ["a", "b"]);
}

#[test]
fn sigterm_drains_what_was_read_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.jsonl");
    let config = pipeline_config(dir.path(), &out_path);
    let mut child = tailguard(dir.path())
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Keep stdin open so only the signal can end the run.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"one\ntwo\n").unwrap();
    wait_for("both lines in the sink", || bodies(&out_path).len() == 2);
    signal(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(bodies(&out_path), ["one", "two"]);
    assert!(
        stderr(&out).contains("received SIGTERM"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_failing_sink_is_named_and_the_agent_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("no/such/dir/out.jsonl");
    let config = pipeline_config(dir.path(), &out_path);
    let mut child = tailguard(dir.path())
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Ignore the write error: the agent may already have stopped reading.
    let _ = child.stdin.take().unwrap().write_all(b"x\n");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("sinks.out"), "{err}");
    assert!(err.contains("cannot open"), "{err}");
}

#[test]
fn print_default_config_shows_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let out = tailguard(dir.path())
        .args(["run", "--print-default-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("[sinks.console]"));
}

#[test]
fn usage_errors_exit_two_and_help_documents_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = tailguard(dir.path()).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let help = tailguard(dir.path()).arg("--help").output().unwrap();
    assert!(stdout(&help).contains("Exit codes:"));
    assert!(stdout(&help).contains("validate"));
}

/// A drop-in as a fleet pipeline would check it: TOML converted to JSON,
/// validated against `tailguard config schema` by an independent validator.
fn drop_in_as_json(toml_text: &str) -> serde_json::Value {
    let value: toml::Value = toml::from_str(toml_text).unwrap();
    serde_json::to_value(value).unwrap()
}

#[test]
fn config_schema_accepts_good_drop_ins_and_rejects_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = tailguard(dir.path())
        .args(["config", "schema"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();

    let good = drop_in_as_json(
        r#"
[resource]
fleet = "blue"

[sinks.collector]
type = "otlp"
inputs = ["host_logs"]
protocol = "grpc"
endpoint = "https://otel.example.internal:4317"
headers = { authorization = "Bearer x" }
buffer = { type = "disk", max_size = "1GiB", when_full = "block" }
"#,
    );
    let errors: Vec<String> = validator
        .iter_errors(&good)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let file_source = "[sources.x]\ntype = \"file\"\ninclude = [\"/x/*.log\"]\n";
    let chosen = format!("{file_source}file_attributes = [\"log.file.name\"]\n");
    assert!(validator.is_valid(&drop_in_as_json(&chosen)), "{chosen}");

    for bad in [
        &format!("{file_source}file_attributes = [\"log.file.nme\"]\n"),
        "[sinks.collector]\ntype = \"otlp\"\ninputs = [\"a\"]\nendpoint_url = \"http://x\"\n",
        "[sinks.collector]\ntype = \"otlp\"\nendpoint = \"http://x\"\n",
        "[sinks.collector]\ntype = \"otlp\"\ninputs = [\"a\"]\nprotocol = \"carrier-pigeon\"\n",
        "[sources.x]\ntype = \"nope\"\n",
        "data_dirr = \"/x\"\n",
    ] {
        assert!(
            !validator.is_valid(&drop_in_as_json(bad)),
            "accepted: {bad}"
        );
    }
}

#[test]
fn run_with_no_config_starts_on_the_embedded_default_and_prints_redacted_events() {
    let dir = tempfile::tempdir().unwrap();
    let empty_etc = dir.path().join("etc");
    let logs = dir.path().join("var-log");
    std::fs::create_dir_all(&empty_etc).unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    let mut child = tailguard(dir.path())
        .args(["run", "--config-dir"])
        .arg(&empty_etc)
        .env("TAILGUARD_LOG_ROOT", &logs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = collect_stderr(&mut child);
    wait_for("the agent to start", || {
        log.lock().unwrap().contains("\"started\"")
    });
    assert!(log.lock().unwrap().contains("embedded default"));
    // A log file that appears after the start is read from its beginning.
    let token = format!("gh{}_{}", "p", "Zq8Rk2LmT7vXw4NbP9yHc3JdF6sGa1UeK0tQ");
    write(
        &logs.join("app.log"),
        &format!("service started\nusing token {token}\n"),
    );
    // Read on a thread so a missing line fails the test instead of hanging it.
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(stdout).map_while(Result::ok) {
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while lines.len() < 2 {
        let Ok(line) = line_rx.recv_timeout(std::time::Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!("no event for the new log file within 60 s; got {lines:?}");
        };
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(body) = event["body"].as_str() {
            lines.push(body.to_string());
        }
    }
    signal(&child, "TERM");
    assert_eq!(
        child.wait().unwrap().code(),
        Some(0),
        "{}",
        log.lock().unwrap()
    );
    assert_eq!(lines[0], "service started");
    assert!(
        lines[1].starts_with("using token [REDACTED:github-pat:"),
        "{}",
        lines[1]
    );
}
