//! The OpenTelemetry resource describing this agent and the host it runs on.
//!
//! Every event points at one shared [`Context`] holding these attributes, so
//! the OTLP sink can send them once per batch.

use crate::event::{Attributes, Context};

/// The resource for this host and process, using OpenTelemetry semantic
/// convention names (`service.*`, `host.*`, `os.*`).
pub fn host_context() -> Context {
    let mut resource = Attributes::new();
    resource.insert("service.name", "tailguard");
    resource.insert("service.version", env!("CARGO_PKG_VERSION"));
    if let Some(host) = hostname() {
        resource.insert("host.name", host);
    }
    resource.insert("os.type", std::env::consts::OS);
    Context {
        resource,
        identity: Attributes::new(),
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
}
