//! The local HTTP listener: `/metrics` counters move while lines flow, and
//! `/health` reports ready.

mod common;

use std::io::{Read, Write};

use common::*;

fn get(address: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn counter(metrics: &str, name_and_labels: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn metrics_move_while_lines_flow_and_health_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let config = write(
        &dir.path().join("t.toml"),
        &format!(
            "api = {{ address = \"127.0.0.1:0\" }}\n\n[sources.in]\ntype = \"stdin\"\n\n[sinks.out]\ntype = \"file\"\ninputs = [\"in\"]\npath = \"{}\"\n",
            out.display()
        ),
    );
    let mut child = spawn_run(dir.path(), &config);
    let log = collect_stderr(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    let address = api_address(&log);
    wait_for("ready", || get(&address, "/health").0 == 200);
    let (_, health) = get(&address, "/health");
    assert!(health.contains("\"status\":\"ready\""), "{health}");

    let sent = "tailguard_component_sent_events_total{component=\"sources.in\"}";
    let delivered = "tailguard_sink_events_total{component=\"sinks.out\",outcome=\"delivered\"}";
    for round in 1..=3u64 {
        for i in 0..10 {
            writeln!(stdin, "round {round} line {i}").unwrap();
        }
        stdin.flush().unwrap();
        wait_for("the counters to move", || {
            let (_, metrics) = get(&address, "/metrics");
            counter(&metrics, sent) == round * 10 && counter(&metrics, delivered) == round * 10
        });
    }
    let (_, metrics) = get(&address, "/metrics");
    assert!(
        counter(
            &metrics,
            "tailguard_component_received_events_total{component=\"sinks.out\"}"
        ) == 30,
        "{metrics}"
    );
    drop(stdin);
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn health_is_degraded_with_a_reason_while_the_collector_is_away() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::otlp::free_port();
    let config = write(
        &dir.path().join("t.toml"),
        &format!(
            "api = {{ address = \"127.0.0.1:0\" }}\nshutdown_timeout = \"1s\"\n\n[sources.in]\ntype = \"stdin\"\n\n[sinks.collector]\ntype = \"otlp\"\ninputs = [\"in\"]\nprotocol = \"grpc\"\nendpoint = \"http://127.0.0.1:{port}\"\ntimeout = \"500ms\"\nretry = {{ initial_backoff = \"100ms\", max_backoff = \"200ms\" }}\nbatch = {{ timeout = \"10ms\" }}\n"
        ),
    );
    let mut child = spawn_run(dir.path(), &config);
    let log = collect_stderr(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "one line").unwrap();
    stdin.flush().unwrap();
    let address = api_address(&log);
    wait_for("degraded health", || get(&address, "/health").0 == 503);
    let (_, body) = get(&address, "/health");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "degraded");
    assert!(
        report["reasons"]["sinks.collector"]
            .as_str()
            .unwrap()
            .contains("collector not accepting")
    );
    let (_, metrics) = get(&address, "/metrics");
    assert!(
        counter(
            &metrics,
            "tailguard_export_retries_total{component=\"sinks.collector\"}"
        ) > 0
    );
    let _ = child.kill();
    let _ = child.wait();
}
