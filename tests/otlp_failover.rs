//! `failover_endpoints`: when the first collector does not answer, a retry
//! moves on to the next one, and nothing is lost or sent twice.

mod common;

use std::io::Write;

use common::otlp::*;
use common::*;

#[test]
fn a_dead_first_collector_fails_over_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let dead = free_port();
    let receiver = grpc_receiver();
    let config = write(
        &dir.path().join("t.toml"),
        &format!(
            "[sources.in]\ntype = \"stdin\"\n\n[sinks.collector]\ntype = \"otlp\"\ninputs = [\"in\"]\nprotocol = \"grpc\"\nendpoint = \"http://127.0.0.1:{dead}\"\nfailover_endpoints = [\"{}\"]\ntimeout = \"1s\"\nretry = {{ initial_backoff = \"50ms\", max_backoff = \"200ms\" }}\nbatch = {{ max_events = 25, timeout = \"20ms\" }}\n",
            receiver.grpc_url()
        ),
    );
    let mut child = spawn_run(dir.path(), &config);
    let sent: Vec<String> = (0..200).map(|i| format!("failover line {i}")).collect();
    let mut stdin = child.stdin.take().unwrap();
    for line in &sent {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut got = receiver.bodies();
    got.sort();
    let mut expected = sent;
    expected.sort();
    assert_eq!(
        got, expected,
        "every line once, through the failover collector"
    );
    assert!(
        stderr(&out).contains("will retry"),
        "the first collector was tried"
    );
}
