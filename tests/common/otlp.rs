//! Independent OTLP receivers for the tests: a tonic gRPC server built from
//! opentelemetry-proto's generated service, and an HTTP server that can be
//! told to fail. They decode exactly what tailguard (or rotel) sent.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use prost::Message;

/// One log record as received, flattened for assertions.
#[derive(Clone, Debug)]
pub struct Received {
    pub body: Vec<u8>,
    pub attributes: Vec<(String, String)>,
    pub resource: Vec<(String, String)>,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
}

impl Received {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    pub fn resource(&self, key: &str) -> Option<&str> {
        self.resource
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => format!("bytes:{}", b.len()),
        other => format!("{other:?}"),
    }
}

pub fn flatten(request: &ExportLogsServiceRequest) -> Vec<Received> {
    let mut out = Vec::new();
    for rl in &request.resource_logs {
        let resource: Vec<(String, String)> = rl
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .map(|kv| (kv.key.clone(), text(&kv.value)))
            .collect();
        for sl in &rl.scope_logs {
            for record in &sl.log_records {
                let body = match record.body.as_ref().and_then(|b| b.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.as_bytes().to_vec(),
                    Some(any_value::Value::BytesValue(b)) => b.clone(),
                    other => panic!("unexpected body {other:?}"),
                };
                out.push(Received {
                    body,
                    attributes: record
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(&kv.value)))
                        .collect(),
                    resource: resource.clone(),
                    trace_id: record.trace_id.clone(),
                    span_id: record.span_id.clone(),
                });
            }
        }
    }
    out
}

/// One span as received.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    pub name: String,
    pub trace_id: Vec<u8>,
    pub span_id: Vec<u8>,
    pub parent_span_id: Vec<u8>,
    pub attributes: Vec<(String, String)>,
    pub status_code: i32,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What a receiver has seen so far.
#[derive(Default)]
pub struct Log {
    pub records: Vec<Received>,
    pub spans: Vec<ReceivedSpan>,
    /// Every request: when it arrived and the status answered.
    pub requests: Vec<(Instant, u16)>,
}

pub type Shared = Arc<Mutex<Log>>;

/// A receiver running on its own runtime in a background thread; dropping
/// it stops the server.
pub struct Receiver {
    pub addr: SocketAddr,
    pub log: Shared,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    pub fn records(&self) -> Vec<Received> {
        self.log.lock().unwrap().records.clone()
    }
    pub fn bodies(&self) -> Vec<String> {
        self.records().iter().map(Received::body_text).collect()
    }
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.log.lock().unwrap().spans.clone()
    }
    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

struct Service(Shared);

#[tonic::async_trait]
impl LogsService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let mut log = self.0.lock().unwrap();
        log.records.extend(flatten(request.get_ref()));
        log.requests.push((Instant::now(), 200));
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut log = self.0.lock().unwrap();
        for rs in &request.get_ref().resource_spans {
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    log.spans.push(ReceivedSpan {
                        name: span.name.clone(),
                        trace_id: span.trace_id.clone(),
                        span_id: span.span_id.clone(),
                        parent_span_id: span.parent_span_id.clone(),
                        attributes: span
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), text(&kv.value)))
                            .collect(),
                        status_code: span.status.as_ref().map_or(0, |s| s.code),
                    });
                }
            }
        }
        log.requests.push((Instant::now(), 200));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// A gRPC receiver on `addr` (use port 0 for a free port).
pub fn grpc_receiver_on(addr: SocketAddr) -> Receiver {
    let runtime = runtime();
    let log = Shared::default();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let service = LogsServiceServer::new(Service(log.clone()))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Zstd);
    let traces = TraceServiceServer::new(Service(log.clone()))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Zstd);
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .add_service(traces)
            .serve_with_incoming(tokio_stream_from(listener)),
    );
    Receiver {
        addr,
        log,
        _runtime: runtime,
    }
}

pub fn grpc_receiver() -> Receiver {
    grpc_receiver_on("127.0.0.1:0".parse().unwrap())
}

fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl futures_core::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    })
}

/// How the HTTP receiver answers request number `n` (1-based).
pub type Policy = Arc<dyn Fn(usize) -> Option<(u16, Option<&'static str>)> + Send + Sync>;

/// An OTLP/HTTP receiver; `policy` may make it fail some requests with a
/// status and optional `Retry-After`.
pub fn http_receiver(policy: Policy) -> Receiver {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    let runtime = runtime();
    let log = Shared::default();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let state = (log.clone(), policy);
    let app = axum::Router::new().route(
        "/v1/logs",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (log, policy) = state.clone();
            async move {
                let mut log = log.lock().unwrap();
                let n = log.requests.len() + 1;
                if let Some((status, retry_after)) = policy(n) {
                    log.requests.push((Instant::now(), status));
                    let mut response_headers = HeaderMap::new();
                    if let Some(after) = retry_after {
                        response_headers.insert("retry-after", after.parse().unwrap());
                    }
                    return (
                        StatusCode::from_u16(status).unwrap(),
                        response_headers,
                        Vec::new(),
                    );
                }
                let raw = match headers.get("content-encoding").map(|v| v.to_str().unwrap()) {
                    Some("gzip") => {
                        use std::io::Read;
                        let mut out = Vec::new();
                        flate2::read::GzDecoder::new(&body[..])
                            .read_to_end(&mut out)
                            .unwrap();
                        out
                    }
                    Some("zstd") => zstd::decode_all(&body[..]).unwrap(),
                    _ => body.to_vec(),
                };
                let request = ExportLogsServiceRequest::decode(&raw[..]).unwrap();
                log.records.extend(flatten(&request));
                log.requests.push((Instant::now(), 200));
                (
                    StatusCode::OK,
                    HeaderMap::new(),
                    ExportLogsServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    runtime.spawn(async move { axum::serve(listener, app).await });
    Receiver {
        addr,
        log,
        _runtime: runtime,
    }
}

/// Finds the rotel collector binary installed by `.ci/test` (pip package
/// `rotel`, in the venv under target/).
pub fn rotel_agent() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("TAILGUARD_ROTEL") {
        return path.into();
    }
    let venv = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/venv/lib");
    let found = std::fs::read_dir(&venv).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("site-packages/rotel/rotel-agent"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "the rotel collector is not installed: run `.ci/test` (or `.ci/setup-test-tools`) once, or set TAILGUARD_ROTEL"
        )
    })
}

/// A free loopback port: bind port 0, read it, release it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// PEM files of a test PKI: a CA, a server certificate for
/// `collector.test`, and a client certificate, all signed by the CA.
pub struct TestPki {
    pub ca: std::path::PathBuf,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: std::path::PathBuf,
    pub client_key: std::path::PathBuf,
    pub ca_pem: String,
}

pub fn test_pki(dir: &std::path::Path) -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["collector.test".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["runner-7".to_string()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    TestPki {
        ca: write("ca.pem", ca_cert.pem()),
        ca_pem: ca_cert.pem(),
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: write("client.pem", client.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
    }
}

/// A gRPC receiver that speaks TLS and requires a client certificate
/// signed by the test CA.
pub fn grpc_receiver_mtls(pki: &TestPki) -> Receiver {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let runtime = runtime();
    let log = Shared::default();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(&pki.server_cert, &pki.server_key))
        .client_ca_root(Certificate::from_pem(&pki.ca_pem));
    let server = tonic::transport::Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(LogsServiceServer::new(Service(log.clone())))
        .serve_with_incoming(tokio_stream_from(listener));
    runtime.spawn(server);
    Receiver {
        addr,
        log,
        _runtime: runtime,
    }
}
