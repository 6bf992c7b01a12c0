//! The `otlp` sink over TLS: a custom CA, a client certificate (mutual TLS)
//! and `server_name`, against a receiver that requires all three.

mod common;

use std::io::Write;

use common::otlp::*;
use common::*;

fn run_with(dir: &std::path::Path, sink: &str, lines: &[&str]) -> (Option<i32>, String) {
    let config = write(
        &dir.join("tls.toml"),
        &format!(
            "shutdown_timeout = \"3s\"\n[sources.in]\ntype = \"stdin\"\n\n[sinks.collector]\ntype = \"otlp\"\ninputs = [\"in\"]\n{sink}\n"
        ),
    );
    let mut child = spawn_run(dir, &config);
    let mut stdin = child.stdin.take().unwrap();
    for line in lines {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (out.status.code(), stderr(&out))
}

#[test]
fn mutual_tls_with_a_custom_ca_and_server_name_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = test_pki(dir.path());
    let receiver = grpc_receiver_mtls(&pki);
    // The certificate names collector.test, not 127.0.0.1: server_name
    // makes verification use the right name.
    let sink = format!(
        "protocol = \"grpc\"\nendpoint = \"https://127.0.0.1:{}\"\ntls = {{ ca_file = \"{}\", cert_file = \"{}\", key_file = \"{}\", server_name = \"collector.test\" }}",
        receiver.addr.port(),
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let (code, err) = run_with(dir.path(), &sink, &["over tls 1", "over tls 2"]);
    assert_eq!(code, Some(0), "{err}");
    let mut bodies = receiver.bodies();
    bodies.sort();
    assert_eq!(bodies, ["over tls 1", "over tls 2"]);
}

#[test]
fn without_the_client_certificate_nothing_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let pki = test_pki(dir.path());
    let receiver = grpc_receiver_mtls(&pki);
    let sink = format!(
        "protocol = \"grpc\"\nendpoint = \"https://127.0.0.1:{}\"\ntimeout = \"1s\"\nretry = {{ initial_backoff = \"100ms\", max_backoff = \"200ms\" }}\ntls = {{ ca_file = \"{}\", server_name = \"collector.test\" }}",
        receiver.addr.port(),
        pki.ca.display()
    );
    let (code, err) = run_with(dir.path(), &sink, &["refused"]);
    // The collector never accepts: the drain times out and says so.
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("will retry"), "{err}");
    assert!(receiver.records().is_empty());
}
