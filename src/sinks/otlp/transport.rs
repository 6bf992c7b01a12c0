//! Sending one export request, and deciding whether a failure may be retried.
//!
//! The classification is the OTLP specification's ("OTLP/gRPC Response",
//! "OTLP/HTTP Response"): for gRPC only UNAVAILABLE, DEADLINE_EXCEEDED,
//! ABORTED, CANCELLED, OUT_OF_RANGE and DATA_LOSS are retryable, and
//! RESOURCE_EXHAUSTED only when the server sent RetryInfo; for HTTP only 429,
//! 502, 503 and 504. A server's `Retry-After` / RetryInfo delay is honoured.
//! Everything else is permanent: counted, logged without payload, dropped.

use std::time::Duration;

use bytes::BufMut;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_types::StatusExt;

use super::config::{Compression, Protocol, Settings, Signal};

/// The longest server-requested delay we accept; a larger one is capped so
/// a misbehaving server cannot park the pipeline indefinitely.
const MAX_SERVER_DELAY: Duration = Duration::from_secs(600);

/// The collector took the request. Some records may still have been
/// rejected (partial success); those are not retried.
#[derive(Debug, Default)]
pub struct Accepted {
    pub rejected_records: i64,
    pub message: String,
}

#[derive(Debug)]
pub enum Failure {
    /// Try again, after `delay` if the server asked for one.
    Retryable {
        reason: String,
        delay: Option<Duration>,
    },
    /// The collector will never accept this request.
    Permanent { reason: String },
}

/// One export request of either signal, as the protobuf bytes of its
/// `Export*ServiceRequest`: encoded once, then sent as is by every attempt
/// over either transport, and stored as is by the disk buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Payload {
    pub signal: Signal,
    pub protobuf: Bytes,
}

impl Payload {
    pub fn logs(protobuf: Vec<u8>) -> Self {
        Payload {
            signal: Signal::Logs,
            protobuf: protobuf.into(),
        }
    }

    pub fn traces(request: &ExportTraceServiceRequest) -> Self {
        Payload {
            signal: Signal::Traces,
            protobuf: request.encode_to_vec().into(),
        }
    }

    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Protobuf bytes behind a one-byte signal tag: the disk buffer's
    /// record format.
    pub fn to_tagged_bytes(&self) -> Vec<u8> {
        let tag = match self.signal {
            Signal::Logs => 0u8,
            Signal::Traces => 1u8,
        };
        let mut tagged = Vec::with_capacity(self.protobuf.len() + 1);
        tagged.push(tag);
        tagged.extend_from_slice(&self.protobuf);
        tagged
    }

    /// The payload of a disk buffer record, checked to decode as its
    /// signal's request so a damaged record is reported, not sent.
    pub fn from_tagged_bytes(bytes: &[u8]) -> Result<Self, String> {
        let signal = match bytes.split_first() {
            Some((0, body)) => ExportLogsServiceRequest::decode(body)
                .map(|_| Signal::Logs)
                .map_err(|e| e.to_string())?,
            Some((1, body)) => ExportTraceServiceRequest::decode(body)
                .map(|_| Signal::Traces)
                .map_err(|e| e.to_string())?,
            _ => return Err("unknown signal tag".into()),
        };
        Ok(Payload {
            signal,
            protobuf: Bytes::copy_from_slice(&bytes[1..]),
        })
    }
}

/// A request encoded once and reused for every attempt.
pub struct Prepared {
    pub signal: Signal,
    /// What every attempt sends: for HTTP the protobuf compressed as
    /// configured; for gRPC the protobuf itself (tonic compresses messages).
    body: Bytes,
    pub records: usize,
}

pub enum Client {
    Http {
        client: reqwest::Client,
        compression: Compression,
    },
    Grpc {
        channels: GrpcChannels,
        compression: Compression,
    },
}

/// One lazily connected channel per endpoint and signal.
pub struct GrpcChannels {
    logs: Vec<Channel>,
    traces: Vec<Channel>,
}

impl Client {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        // reqwest is built without a bundled crypto provider; use ring, the
        // one tonic uses, so the binary carries one TLS stack.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        };
        let tls = &settings.tls;
        match settings.protocol {
            Protocol::HttpProtobuf => {
                let mut builder = reqwest::Client::builder()
                    .timeout(settings.timeout)
                    .user_agent(concat!("tailguard/", env!("CARGO_PKG_VERSION")));
                let mut headers = reqwest::header::HeaderMap::new();
                for (name, value) in &settings.headers {
                    let mut value = reqwest::header::HeaderValue::from_str(&value.0)?;
                    value.set_sensitive(true);
                    headers.insert(
                        reqwest::header::HeaderName::from_bytes(name.as_bytes())?,
                        value,
                    );
                }
                builder = builder.default_headers(headers);
                if let Some(ca) = &tls.ca_file {
                    for cert in reqwest::Certificate::from_pem_bundle(&read(ca)?)? {
                        builder = builder.add_root_certificate(cert);
                    }
                }
                if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                    let mut pem = read(cert)?;
                    pem.push(b'\n');
                    pem.extend(read(key)?);
                    builder = builder.identity(reqwest::Identity::from_pem(&pem)?);
                }
                Ok(Client::Http {
                    client: builder.build()?,
                    compression: settings.compression,
                })
            }
            Protocol::Grpc => {
                let channel = |endpoint: &String| -> anyhow::Result<Channel> {
                    let mut ep = Channel::from_shared(endpoint.clone())?
                        .timeout(settings.timeout)
                        .connect_timeout(settings.timeout);
                    if endpoint.starts_with("https://") {
                        let mut tls_config = ClientTlsConfig::new();
                        tls_config = match &tls.ca_file {
                            Some(ca) => tls_config.ca_certificate(Certificate::from_pem(read(ca)?)),
                            None => tls_config.with_native_roots(),
                        };
                        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                            tls_config =
                                tls_config.identity(Identity::from_pem(read(cert)?, read(key)?));
                        }
                        if let Some(name) = &tls.server_name {
                            tls_config = tls_config.domain_name(name.clone());
                        }
                        ep = ep.tls_config(tls_config)?;
                    }
                    Ok(ep.connect_lazy())
                };
                Ok(Client::Grpc {
                    channels: GrpcChannels {
                        logs: settings
                            .logs_endpoints
                            .iter()
                            .map(channel)
                            .collect::<anyhow::Result<_>>()?,
                        traces: settings
                            .traces_endpoints
                            .iter()
                            .map(channel)
                            .collect::<anyhow::Result<_>>()?,
                    },
                    compression: settings.compression,
                })
            }
        }
    }

    /// Makes a request's body once for all its attempts.
    pub fn prepare(
        &self,
        payload: Payload,
        records: usize,
        compressor: &mut Compressor,
    ) -> Prepared {
        let body = match self {
            Client::Http { compression, .. } => compressor.compress(*compression, payload.protobuf),
            Client::Grpc { .. } => payload.protobuf,
        };
        Prepared {
            signal: payload.signal,
            body,
            records,
        }
    }

    /// One attempt against endpoint number `endpoint`.
    pub async fn export(
        &self,
        settings: &Settings,
        endpoint: usize,
        prepared: &Prepared,
    ) -> Result<Accepted, Failure> {
        match self {
            Client::Http {
                client,
                compression,
            } => {
                let url = match prepared.signal {
                    Signal::Logs => &settings.logs_endpoints[endpoint],
                    Signal::Traces => &settings.traces_endpoints[endpoint],
                };
                let mut request = client
                    .post(url)
                    .header("content-type", "application/x-protobuf")
                    .body(prepared.body.clone());
                if let Some(encoding) = content_encoding(*compression) {
                    request = request.header("content-encoding", encoding);
                }
                let response = request.send().await.map_err(|e| Failure::Retryable {
                    reason: format!("{url}: {}", describe(&e)),
                    delay: None,
                })?;
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let body = response.bytes().await.unwrap_or_default();
                classify_http(prepared.signal, status.as_u16(), retry_after, &body)
            }
            Client::Grpc {
                channels,
                compression,
            } => {
                let channel = match prepared.signal {
                    Signal::Logs => channels.logs[endpoint].clone(),
                    Signal::Traces => channels.traces[endpoint].clone(),
                };
                let encoding = match compression {
                    Compression::Gzip => Some(CompressionEncoding::Gzip),
                    Compression::Zstd => Some(CompressionEncoding::Zstd),
                    Compression::None => None,
                };
                let mut grpc =
                    tonic::client::Grpc::new(channel).max_decoding_message_size(16 * 1024 * 1024);
                if let Some(encoding) = encoding {
                    grpc = grpc.send_compressed(encoding).accept_compressed(encoding);
                }
                let request = with_headers(prepared.body.clone(), settings);
                let result = async {
                    grpc.ready().await.map_err(|e| {
                        tonic::Status::unavailable(format!("channel not ready: {e}"))
                    })?;
                    match prepared.signal {
                        Signal::Logs => grpc
                            .unary(
                                request,
                                PathAndQuery::from_static(LOGS_EXPORT),
                                PreEncoded::<ExportLogsServiceResponse>::default(),
                            )
                            .await
                            .map(|r| accepted(r.into_inner())),
                        Signal::Traces => grpc
                            .unary(
                                request,
                                PathAndQuery::from_static(TRACES_EXPORT),
                                PreEncoded::<ExportTraceServiceResponse>::default(),
                            )
                            .await
                            .map(|r| accepted_traces(r.into_inner())),
                    }
                }
                .await;
                result.map_err(|status| classify_grpc(&status))
            }
        }
    }
}

const LOGS_EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
const TRACES_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A gRPC codec that sends a request already encoded as protobuf bytes (so
/// retries resend the same bytes instead of re-encoding a deep copy) and
/// decodes the response `R` with prost, as the generated clients do.
struct PreEncoded<R>(std::marker::PhantomData<R>);

impl<R> Default for PreEncoded<R> {
    fn default() -> Self {
        PreEncoded(std::marker::PhantomData)
    }
}

struct BytesEncoder;

struct ProstDecoder<R>(std::marker::PhantomData<R>);

impl<R: Message + Default + Send + 'static> Codec for PreEncoded<R> {
    type Encode = Bytes;
    type Decode = R;
    type Encoder = BytesEncoder;
    type Decoder = ProstDecoder<R>;

    fn encoder(&mut self) -> Self::Encoder {
        BytesEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder(std::marker::PhantomData)
    }
}

impl Encoder for BytesEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put(item);
        Ok(())
    }
}

impl<R: Message + Default> Decoder for ProstDecoder<R> {
    type Item = R;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, Self::Error> {
        R::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("undecodable response: {e}")))
    }
}

fn with_headers<T>(message: T, settings: &Settings) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    for (name, value) in &settings.headers {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(name.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.0.as_str()),
        ) {
            request.metadata_mut().insert(key, value);
        }
    }
    request
}

fn accepted_traces(response: ExportTraceServiceResponse) -> Accepted {
    match response.partial_success {
        Some(partial) => Accepted {
            rejected_records: partial.rejected_spans,
            message: partial.error_message,
        },
        None => Accepted::default(),
    }
}

fn accepted(response: ExportLogsServiceResponse) -> Accepted {
    match response.partial_success {
        Some(partial) => Accepted {
            rejected_records: partial.rejected_log_records,
            message: partial.error_message,
        },
        None => Accepted::default(),
    }
}

/// Describes a transport error. reqwest's own message includes the URL,
/// which may carry credentials in its userinfo; the caller prints the
/// configured endpoint itself.
fn describe(e: &reqwest::Error) -> String {
    let mut message = String::from(if e.is_timeout() {
        "request timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    });
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    message
}

pub fn classify_http(
    signal: Signal,
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<Accepted, Failure> {
    match status {
        200..=299 => Ok(match signal {
            Signal::Logs => ExportLogsServiceResponse::decode(body).map(accepted),
            Signal::Traces => ExportTraceServiceResponse::decode(body).map(accepted_traces),
        }
        .unwrap_or_default()),
        429 | 502 | 503 | 504 => Err(Failure::Retryable {
            reason: format!("HTTP {status}"),
            delay: retry_after.map(|d| d.min(MAX_SERVER_DELAY)),
        }),
        _ => {
            let detail = tonic_types::pb::Status::decode(body)
                .map(|s| s.message)
                .unwrap_or_default();
            Err(Failure::Permanent {
                reason: if detail.is_empty() {
                    format!("HTTP {status}")
                } else {
                    format!("HTTP {status}: {}", truncate(&detail, 200))
                },
            })
        }
    }
}

pub fn classify_grpc(status: &tonic::Status) -> Failure {
    use tonic::Code;
    let retry_info = status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .map(|d| d.min(MAX_SERVER_DELAY));
    let reason = format!(
        "gRPC {:?}: {}",
        status.code(),
        truncate(status.message(), 200)
    );
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::Cancelled
        | Code::OutOfRange
        | Code::DataLoss => Failure::Retryable {
            reason,
            delay: retry_info,
        },
        Code::ResourceExhausted if retry_info.is_some() => Failure::Retryable {
            reason,
            delay: retry_info,
        },
        // tonic reports a failure to connect or to complete the TLS
        // handshake as UNKNOWN with the transport error as its source: the
        // request never reached the collector, which is the collector being
        // unavailable, not a refusal. (A server's own UNKNOWN has no source.)
        Code::Unknown if std::error::Error::source(status).is_some() => Failure::Retryable {
            reason: format!("{reason}: {}", error_chain(status)),
            delay: None,
        },
        _ => Failure::Permanent { reason },
    }
}

/// The sources of an error, joined, for a log line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut source = error.source();
    while let Some(inner) = source {
        parts.push(inner.to_string());
        source = inner.source();
    }
    parts.join(": ")
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// `Retry-After` is either delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

fn content_encoding(compression: Compression) -> Option<&'static str> {
    match compression {
        Compression::Gzip => Some("gzip"),
        Compression::Zstd => Some("zstd"),
        Compression::None => None,
    }
}

/// Compression state kept from one request to the next. A new deflate
/// stream allocates and clears about 300 KiB of tables; made afresh for each
/// of a few hundred requests a second, that was both CPU and, with glibc's
/// allocator, memory the sink never gave back. Resetting a stream keeps its
/// tables.
#[derive(Default)]
pub struct Compressor {
    gzip: Option<flate2::Compress>,
}

impl Compressor {
    pub fn compress(&mut self, compression: Compression, raw: Bytes) -> Bytes {
        match compression {
            Compression::None => raw,
            Compression::Gzip => Bytes::from(self.gzip(&raw)),
            Compression::Zstd => {
                Bytes::from(zstd::bulk::compress(&raw, 1).expect("zstd of an in-memory buffer"))
            }
        }
    }

    /// A whole gzip member (RFC 1952) holding `raw`, at the fastest level.
    fn gzip(&mut self, raw: &[u8]) -> Vec<u8> {
        let stream = self
            .gzip
            .get_or_insert_with(|| flate2::Compress::new_gzip(flate2::Compression::fast(), 15));
        stream.reset();
        let mut out = Vec::with_capacity(raw.len() / 4 + 64);
        loop {
            let consumed = usize::try_from(stream.total_in()).expect("fits: it was a slice");
            let status = stream
                .compress_vec(&raw[consumed..], &mut out, flate2::FlushCompress::Finish)
                .expect("deflate of an in-memory buffer");
            if status == flate2::Status::StreamEnd {
                return out;
            }
            out.reserve(out.capacity().max(4096));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_gzip_stream_makes_a_whole_member_per_request() {
        use std::io::Read;
        let mut compressor = Compressor::default();
        // The second body outgrows the first output buffer; the third
        // repeats the first, so state carried between requests would show.
        let first = Bytes::from(b"resource attributes ".repeat(50));
        let second: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i * 7919).to_le_bytes())
            .collect();
        for raw in [first.clone(), Bytes::from(second), first] {
            let gz = compressor.compress(Compression::Gzip, raw.clone());
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .expect("a valid gzip member");
            assert_eq!(back, raw);
        }
    }

    #[test]
    fn http_statuses_follow_the_specification() {
        for status in [429, 502, 503, 504] {
            assert!(matches!(
                classify_http(Signal::Logs, status, None, b""),
                Err(Failure::Retryable { .. })
            ));
        }
        for status in [400, 401, 403, 404, 413, 500, 501] {
            assert!(
                matches!(
                    classify_http(Signal::Logs, status, None, b""),
                    Err(Failure::Permanent { .. })
                ),
                "{status}"
            );
        }
        let Err(Failure::Retryable { delay, .. }) =
            classify_http(Signal::Logs, 503, Some(Duration::from_secs(7)), b"")
        else {
            panic!("retryable expected");
        };
        assert_eq!(delay, Some(Duration::from_secs(7)));
    }

    #[test]
    fn http_partial_success_is_reported() {
        let response = ExportLogsServiceResponse {
            partial_success: Some(
                opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess {
                    rejected_log_records: 3,
                    error_message: "too old".into(),
                },
            ),
        };
        let accepted = classify_http(Signal::Logs, 200, None, &response.encode_to_vec()).unwrap();
        assert_eq!(accepted.rejected_records, 3);
        assert_eq!(accepted.message, "too old");
    }

    #[test]
    fn grpc_codes_follow_the_specification() {
        use tonic::{Code, Status};
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::Cancelled,
            Code::OutOfRange,
            Code::DataLoss,
        ] {
            assert!(
                matches!(
                    classify_grpc(&Status::new(code, "x")),
                    Failure::Retryable { .. }
                ),
                "{code:?}"
            );
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Internal,
            Code::ResourceExhausted,
        ] {
            assert!(
                matches!(
                    classify_grpc(&Status::new(code, "x")),
                    Failure::Permanent { .. }
                ),
                "{code:?}"
            );
        }
        let with_retry_info = Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            tonic_types::ErrorDetails::with_retry_info(Some(Duration::from_secs(3))),
        );
        let Failure::Retryable { delay, .. } = classify_grpc(&with_retry_info) else {
            panic!("RESOURCE_EXHAUSTED with RetryInfo is retryable");
        };
        assert_eq!(delay, Some(Duration::from_secs(3)));
    }

    #[test]
    fn a_transport_failure_is_retried_but_a_servers_unknown_is_not() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "tls handshake eof");
        let local = tonic::Status::from_error(Box::new(io));
        assert_eq!(local.code(), tonic::Code::Unknown);
        assert!(matches!(classify_grpc(&local), Failure::Retryable { .. }));
        let remote = tonic::Status::unknown("the server said so");
        assert!(matches!(classify_grpc(&remote), Failure::Permanent { .. }));
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("12"), Some(Duration::from_secs(12)));
        let later = std::time::SystemTime::now() + Duration::from_secs(100);
        let parsed = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(parsed > Duration::from_secs(90) && parsed <= Duration::from_secs(100));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
