//! The local HTTP listener: `GET /metrics` (Prometheus text) and
//! `GET /health` (JSON; HTTP 200 when ready, 503 otherwise).
//!
//! It listens on 127.0.0.1 by default: metrics name files, rules and
//! components, which is not for the network unless an operator says so.

use std::net::SocketAddr;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use tracing::{info, warn};

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub enabled: bool,
    /// `host:port`; port 0 picks a free port (logged at start).
    pub address: String,
}

/// The default listen address.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:9747";

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            address: DEFAULT_ADDRESS.into(),
        }
    }
}

impl ApiConfig {
    pub fn check(&self) -> Result<(), String> {
        self.address.parse::<SocketAddr>().map(|_| ()).map_err(|_| {
            format!(
                "api.address `{}` is not host:port, like \"127.0.0.1:9747\"",
                self.address
            )
        })
    }
}

/// Serves until the process ends. Failing to bind is a warning, not a
/// reason to stop collecting logs.
pub async fn serve(config: ApiConfig) {
    if !config.enabled {
        return;
    }
    let Ok(address) = config.address.parse::<SocketAddr>() else {
        return;
    };
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(e) => {
            warn!(%address, "cannot serve /metrics and /health: {e}");
            return;
        }
    };
    let bound = listener.local_addr().map_or(address, |a| a);
    info!(address = %bound, "serving /metrics and /health");
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .route("/health", axum::routing::get(health));
    if let Err(e) = axum::serve(listener, app).await {
        warn!("the metrics listener stopped: {e}");
    }
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        super::metrics::encode(),
    )
}

async fn health() -> impl IntoResponse {
    let report = super::health::report();
    let status = if report.status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(&report).unwrap_or_default(),
    )
}
