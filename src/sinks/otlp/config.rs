//! Options of the `otlp` sink, and how they combine with the standard
//! `OTEL_EXPORTER_OTLP_*` environment variables.
//!
//! Precedence, highest first: a key in the configuration file, the
//! per-signal variable (`OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`), the generic
//! variable (`OTEL_EXPORTER_OTLP_ENDPOINT`), the specification's default.
//! Variable names and defaults follow the OpenTelemetry "OTLP Exporter
//! Configuration" specification.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{HumanDuration, SecretString};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum Protocol {
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpSinkConfig {
    /// `grpc` or `http/protobuf`. Default: `OTEL_EXPORTER_OTLP_PROTOCOL`,
    /// else `http/protobuf` as the specification recommends.
    pub protocol: Option<Protocol>,
    /// The collector's base URL (`http://collector:4318`); for HTTP the
    /// signal path `/v1/logs` is appended.
    pub endpoint: Option<String>,
    /// More collectors to fail over to, tried in order after `endpoint`.
    #[serde(default)]
    pub failover_endpoints: Vec<String>,
    pub compression: Option<Compression>,
    /// Extra request headers (authentication). Values are never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, SecretString>,
    /// A file of `Name: value` lines added as headers, read at start, so a
    /// token can live in a file only the agent can read.
    pub headers_file: Option<PathBuf>,
    /// Per-request timeout. Default `OTEL_EXPORTER_OTLP_TIMEOUT` (ms) or 10s.
    pub timeout: Option<HumanDuration>,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Where batches wait for the collector: in memory (the default; the
    /// pipeline blocks while the collector is away) or in a durable queue on
    /// disk.
    #[serde(default)]
    pub buffer: BufferConfig,
}

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum BufferConfig {
    #[default]
    Memory,
    Disk(crate::sinks::disk_buffer::DiskBufferConfig),
}

/// With 2, shipping 256 MiB with detection waited on the collector's round
/// trips (43 MiB/s at 0.55 of a core); 4 reached 51 MiB/s with no more CPU
/// and the same peak RSS. otelcol's exporters run 10 senders by default.
fn default_concurrency() -> usize {
    4
}

#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Send when this many events are waiting...
    pub max_events: usize,
    /// ...or when their bodies add up to this many bytes...
    pub max_bytes: usize,
    /// ...or when the oldest has waited this long.
    pub timeout: HumanDuration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: 2048,
            max_bytes: 2 * 1024 * 1024,
            timeout: HumanDuration(Duration::from_millis(500)),
        }
    }
}

#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub initial_backoff: HumanDuration,
    pub max_backoff: HumanDuration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_backoff: HumanDuration(Duration::from_millis(500)),
            max_backoff: HumanDuration(Duration::from_secs(30)),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of CA certificates to trust instead of the system's roots.
    /// Default: `OTEL_EXPORTER_OTLP_CERTIFICATE`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    pub key_file: Option<PathBuf>,
    /// Name to verify the server's certificate against (gRPC only), when it
    /// differs from the endpoint's host.
    pub server_name: Option<String>,
}

/// Everything the sink needs, after defaults and the environment applied.
#[derive(Clone, Debug)]
pub struct Settings {
    pub protocol: Protocol,
    /// Full URLs: for HTTP including `/v1/logs`.
    pub logs_endpoints: Vec<String>,
    /// Full URLs: for HTTP including `/v1/traces`.
    pub traces_endpoints: Vec<String>,
    pub compression: Compression,
    pub headers: Vec<(String, SecretString)>,
    pub timeout: Duration,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    pub tls: TlsConfig,
    pub concurrency: usize,
    pub buffer: BufferConfig,
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn var(env: Env<'_>, signal_name: &str, generic_name: &str) -> Option<String> {
    env(signal_name)
        .or_else(|| env(generic_name))
        .filter(|v| !v.trim().is_empty())
}

impl OtlpSinkConfig {
    /// Applies the environment and defaults. Errors name the key or variable.
    pub fn resolve(&self, env: Env<'_>) -> Result<Settings, String> {
        let protocol = match self.protocol {
            Some(p) => p,
            None => match var(
                env,
                "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            )
            .as_deref()
            {
                None | Some("http/protobuf") => Protocol::HttpProtobuf,
                Some("grpc") => Protocol::Grpc,
                Some(other) => {
                    return Err(format!(
                        "OTEL_EXPORTER_OTLP_PROTOCOL=`{other}` is not supported; use grpc or http/protobuf"
                    ));
                }
            },
        };

        let logs_endpoints = self.endpoints(env, protocol, Signal::Logs)?;
        let traces_endpoints = self.endpoints(env, protocol, Signal::Traces)?;

        let compression = match self.compression {
            Some(c) => c,
            None => match var(
                env,
                "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
                "OTEL_EXPORTER_OTLP_COMPRESSION",
            )
            .as_deref()
            {
                None | Some("none") => Compression::None,
                Some("gzip") => Compression::Gzip,
                Some("zstd") => Compression::Zstd,
                Some(other) => {
                    return Err(format!(
                        "OTEL_EXPORTER_OTLP_COMPRESSION=`{other}` is not supported; use gzip, zstd or none"
                    ));
                }
            },
        };

        let timeout = match self.timeout {
            Some(t) => t.0,
            None => match var(
                env,
                "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ) {
                None => Duration::from_secs(10),
                Some(ms) => ms
                    .trim()
                    .parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|_| {
                        format!(
                            "OTEL_EXPORTER_OTLP_TIMEOUT=`{ms}` must be a number of milliseconds"
                        )
                    })?,
            },
        };

        // Environment headers first, so the configuration file can override
        // a name the fleet-wide environment also sets.
        let mut headers: Vec<(String, SecretString)> = Vec::new();
        let mut set = |name: &str, value: String, origin: &str| -> Result<(), String> {
            let name = name.trim().to_ascii_lowercase();
            check_header(&name, &value, origin)?;
            headers.retain(|(n, _)| *n != name);
            headers.push((name, SecretString(value)));
            Ok(())
        };
        if let Some(list) = var(
            env,
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ) {
            for pair in list.split(',').filter(|p| !p.trim().is_empty()) {
                let (name, value) = pair.split_once('=').ok_or_else(|| {
                    "OTEL_EXPORTER_OTLP_HEADERS must be a list of name=value pairs".to_string()
                })?;
                set(
                    name,
                    percent_decode(value.trim()),
                    "OTEL_EXPORTER_OTLP_HEADERS",
                )?;
            }
        }
        if let Some(path) = &self.headers_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("headers_file {}: {e}", path.display()))?;
            for (n, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let (name, value) = line.split_once(':').ok_or_else(|| {
                    format!(
                        "headers_file {}:{}: expected `Name: value`",
                        path.display(),
                        n + 1
                    )
                })?;
                set(
                    name,
                    value.trim().to_string(),
                    &format!("headers_file {}:{}", path.display(), n + 1),
                )?;
            }
        }
        for (name, value) in &self.headers {
            set(name, value.0.clone(), &format!("headers.{name}"))?;
        }

        let mut tls = self.tls.clone();
        let path_var = |signal: &str, generic: &str| var(env, signal, generic).map(PathBuf::from);
        tls.ca_file = tls.ca_file.or_else(|| {
            path_var(
                "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
            )
        });
        tls.cert_file = tls.cert_file.or_else(|| {
            path_var(
                "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            )
        });
        tls.key_file = tls.key_file.or_else(|| {
            path_var(
                "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
                "OTEL_EXPORTER_OTLP_CLIENT_KEY",
            )
        });
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(
                "tls.cert_file and tls.key_file must be set together for mutual TLS".into(),
            );
        }
        if self.concurrency == 0 {
            return Err("concurrency must be at least 1".into());
        }
        if self.batch.max_events == 0 || self.batch.max_bytes == 0 {
            return Err("batch.max_events and batch.max_bytes must be at least 1".into());
        }
        Ok(Settings {
            protocol,
            logs_endpoints,
            traces_endpoints,
            compression,
            headers,
            timeout,
            batch: self.batch.clone(),
            retry: self.retry.clone(),
            tls,
            concurrency: self.concurrency,
            buffer: self.buffer.clone(),
        })
    }
}

/// The two signals tailguard sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Logs,
    Traces,
}

impl Signal {
    fn path(self) -> &'static str {
        match self {
            Signal::Logs => "/v1/logs",
            Signal::Traces => "/v1/traces",
        }
    }

    fn env_name(self) -> &'static str {
        match self {
            Signal::Logs => "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            Signal::Traces => "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        }
    }
}

impl OtlpSinkConfig {
    /// The signal's endpoints: the configured base (plus failovers), else
    /// the per-signal variable as is, else the generic variable, else the
    /// specification's default.
    fn endpoints(
        &self,
        env: Env<'_>,
        protocol: Protocol,
        signal: Signal,
    ) -> Result<Vec<String>, String> {
        let mut endpoints = Vec::new();
        match &self.endpoint {
            Some(base) => endpoints.push(signal_url(protocol, signal, base, "endpoint")?),
            None => {
                if let Some(full) = env(signal.env_name()).filter(|v| !v.is_empty()) {
                    check_url(&full, signal.env_name())?;
                    endpoints.push(full);
                } else if let Some(base) =
                    env("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|v| !v.is_empty())
                {
                    endpoints.push(signal_url(
                        protocol,
                        signal,
                        &base,
                        "OTEL_EXPORTER_OTLP_ENDPOINT",
                    )?);
                } else {
                    let default = match protocol {
                        Protocol::Grpc => "http://localhost:4317",
                        Protocol::HttpProtobuf => "http://localhost:4318",
                    };
                    endpoints.push(signal_url(protocol, signal, default, "endpoint")?);
                }
            }
        }
        for (i, base) in self.failover_endpoints.iter().enumerate() {
            endpoints.push(signal_url(
                protocol,
                signal,
                base,
                &format!("failover_endpoints[{i}]"),
            )?);
        }
        Ok(endpoints)
    }
}

fn check_url(url: &str, origin: &str) -> Result<(), String> {
    let parsed: reqwest::Url = url
        .parse()
        .map_err(|e| format!("{origin}: `{url}` is not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "{origin}: `{url}` must start with http:// or https://"
        ));
    }
    Ok(())
}

/// For HTTP, the base URL plus the signal's path; for gRPC the URL itself.
fn signal_url(
    protocol: Protocol,
    signal: Signal,
    base: &str,
    origin: &str,
) -> Result<String, String> {
    check_url(base, origin)?;
    Ok(match protocol {
        Protocol::Grpc => base.to_string(),
        Protocol::HttpProtobuf => format!("{}{}", base.trim_end_matches('/'), signal.path()),
    })
}

fn check_header(name: &str, value: &str, origin: &str) -> Result<(), String> {
    reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{origin}: `{name}` is not a valid header name"))?;
    // The value may be a token: say what is wrong, never what it is.
    reqwest::header::HeaderValue::from_str(value).map_err(|_| {
        format!("{origin}: the value of header `{name}` has characters not allowed in a header")
    })?;
    Ok(())
}

/// Decodes `%XX` escapes, as the specification requires for header values.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit()
        {
            let hex = [bytes[i + 1], bytes[i + 2]];
            let hex = std::str::from_utf8(&hex).expect("ASCII hex digits");
            out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> OtlpSinkConfig {
        toml::from_str(toml_text).unwrap()
    }

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_follow_the_specification() {
        let s = config("").resolve(&env_of(&[])).unwrap();
        assert_eq!(s.protocol, Protocol::HttpProtobuf);
        assert_eq!(s.logs_endpoints, ["http://localhost:4318/v1/logs"]);
        assert_eq!(s.traces_endpoints, ["http://localhost:4318/v1/traces"]);
        assert_eq!(s.compression, Compression::None);
        assert_eq!(s.timeout, Duration::from_secs(10));
    }

    #[test]
    fn environment_fills_what_the_file_leaves_out() {
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20abc,x-tenant=ci",
            ),
            ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "x-tenant=logs"),
        ]);
        let s = config("").resolve(&env).unwrap();
        assert_eq!(s.protocol, Protocol::Grpc);
        assert_eq!(s.logs_endpoints, ["http://collector:4317"]);
        assert_eq!(s.compression, Compression::Gzip);
        assert_eq!(s.timeout, Duration::from_millis(2500));
        // The per-signal variable replaces the generic one as a whole.
        assert_eq!(
            s.headers,
            [("x-tenant".to_string(), SecretString("logs".into()))]
        );

        let s = config("protocol = \"http/protobuf\"\nendpoint = \"https://c:4318/\"\n[headers]\nX-Tenant = \"file\"")
            .resolve(&env)
            .unwrap();
        assert_eq!(s.logs_endpoints, ["https://c:4318/v1/logs"]);
        assert_eq!(
            s.headers,
            [("x-tenant".to_string(), SecretString("file".into()))]
        );
    }

    #[test]
    fn per_signal_endpoint_is_used_as_is() {
        let env = env_of(&[(
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
            "http://c:9999/custom/logs",
        )]);
        let s = config("").resolve(&env).unwrap();
        assert_eq!(s.logs_endpoints, ["http://c:9999/custom/logs"]);
    }

    #[test]
    fn errors_name_the_origin_and_never_the_header_value() {
        let err = config("[headers]\nauthorization = \"Bearer tok\\nen\"")
            .resolve(&env_of(&[]))
            .unwrap_err();
        assert!(err.contains("headers.authorization"), "{err}");
        assert!(!err.contains("tok"), "{err}");
        let err = config("endpoint = \"collector:4317\"")
            .resolve(&env_of(&[]))
            .unwrap_err();
        assert!(err.starts_with("endpoint:"), "{err}");
        let debug = format!("{:?}", config("[headers]\nauthorization = \"Bearer abc\""));
        assert!(!debug.contains("abc"), "{debug}");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2Cc%"), "a b,c%");
    }
}
