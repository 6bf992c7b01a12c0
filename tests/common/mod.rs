//! Helpers shared by the integration tests: they run the real binary.
#![allow(dead_code)]

pub mod agent;
pub mod corpus;
pub mod files;
pub mod otlp;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tailguard")
}

/// A command for the real binary, isolated from the machine's own
/// configuration and state: it reads no /etc/tailguard unless told, keeps
/// state in `state`, and logs JSON to stderr.
pub fn tailguard(state: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_remove("TAILGUARD_LOG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("TAILGUARD_DATA_DIR", state)
        .stdin(Stdio::null());
    cmd
}

/// `tailguard run --config CONFIG`, fed through a stdin pipe, with stdout
/// discarded and stderr piped: how most pipeline tests drive the agent.
pub fn spawn_run(state: &Path, config: &Path) -> std::process::Child {
    tailguard(state)
        .args(["run", "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A `stdin` source feeding a `file` sink at `out`: the smallest pipeline.
pub fn pipeline_config(dir: &Path, out: &Path) -> PathBuf {
    write(
        &dir.join("pipeline.toml"),
        &format!(
            "[sources.in]\ntype = \"stdin\"\n\n[sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"{}\"\n",
            out.display()
        ),
    )
}

/// The address of the `/metrics` listener, from the agent's log.
pub fn api_address(log: &std::sync::Mutex<String>) -> String {
    let mut address = String::new();
    wait_for("the metrics listener", || {
        let log = log.lock().unwrap();
        let Some(line) = log.lines().find(|l| l.contains("serving /metrics")) else {
            return false;
        };
        let json: serde_json::Value = serde_json::from_str(line).unwrap();
        address = json["address"].as_str().unwrap().to_string();
        true
    });
    address
}

pub fn write(path: &Path, text: &str) -> PathBuf {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every complete JSON line a file sink has written so far. A last line
/// without its newline is still being written by the agent and is left for
/// the next poll; every complete line must parse.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    complete
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:.300}"))
        })
        .collect()
}

/// The `body` of every complete JSON line in a file sink's output, in order.
pub fn bodies(path: &Path) -> Vec<String> {
    json_lines(path)
        .iter()
        .map(|json| json["body"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until `done` holds, failing the test after a generous deadline.
/// Tests wait on conditions, never on fixed sleeps.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a signal to a child process.
pub fn signal(child: &std::process::Child, signal: &str) {
    let status = Command::new("kill")
        .args(["-s", signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Collects a child's stderr on a thread, so a test can wait for a log line
/// while the process runs.
pub fn collect_stderr(child: &mut std::process::Child) -> std::sync::Arc<std::sync::Mutex<String>> {
    use std::io::BufRead;
    let stderr = child.stderr.take().expect("stderr piped");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    log
}
