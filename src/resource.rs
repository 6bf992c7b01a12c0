//! The OpenTelemetry resource describing this agent and the host it runs on.
//!
//! Every event points at one shared [`Context`] holding these attributes, so
//! the OTLP sink sends them once per batch. Names follow the semantic
//! conventions: `service.*`, `host.*`, `os.*`, and `cicd.worker.*` when this
//! host is a CI runner tailguard recognises.

use std::path::{Path, PathBuf};

use crate::event::{Attributes, Context};

/// The resource for this host and process, plus `extra` static attributes
/// from the configuration (`[resource]`), which win over detected ones.
pub fn host_context_with(extra: &[(String, String)]) -> Context {
    let mut resource = Attributes::new();
    resource.insert("service.name", "tailguard");
    resource.insert("service.version", env!("CARGO_PKG_VERSION"));
    resource.insert("service.instance.id", random_uuid());
    if let Some(host) =
        read_trimmed("/proc/sys/kernel/hostname").or_else(|| std::env::var("HOSTNAME").ok())
    {
        resource.insert("host.name", host);
    }
    if let Some(id) = read_trimmed("/etc/machine-id") {
        resource.insert("host.id", id);
    }
    resource.insert("host.arch", host_arch());
    resource.insert("os.type", std::env::consts::OS);
    if let Some(description) = os_description() {
        resource.insert("os.description", description);
    }
    for (key, value) in github_runner_worker() {
        resource.insert(key, value);
    }
    for (key, value) in extra {
        resource.insert(key.clone(), value.as_str());
    }
    Context {
        resource,
        identity: Attributes::new(),
    }
}

/// [`host_context_with`] and no static attributes.
pub fn host_context() -> Context {
    host_context_with(&[])
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// `host.arch` uses the conventions' names (`amd64`, `arm64`).
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        other => other,
    }
}

fn os_description() -> Option<String> {
    let release = std::fs::read_to_string("/etc/os-release").ok()?;
    release.lines().find_map(|line| {
        line.strip_prefix("PRETTY_NAME=")
            .map(|v| v.trim_matches('"').to_string())
    })
}

/// A random version-4 UUID: a new `service.instance.id` each start, as the
/// conventions recommend for a process that keeps no identity of its own.
fn random_uuid() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = crate::event::hex(&bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Worker attributes from a GitHub Actions self-hosted runner's `.runner`
/// file, when one is installed in a usual place.
fn github_runner_worker() -> Vec<(&'static str, String)> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Some(root) = std::env::var_os("RUNNER_ROOT") {
        roots.push(root.into());
    }
    use crate::identity::ci::{GITHUB_RUNNER_HOME_DIR, GITHUB_RUNNER_ROOTS};
    roots.extend(GITHUB_RUNNER_ROOTS.iter().map(PathBuf::from));
    if let Ok(homes) = std::fs::read_dir("/home") {
        roots.extend(
            homes
                .filter_map(Result::ok)
                .map(|e| e.path().join(GITHUB_RUNNER_HOME_DIR)),
        );
    }
    roots
        .iter()
        .find_map(|root| std::fs::read_to_string(root.join(".runner")).ok())
        .map(|json| crate::identity::ci::github_runner_worker(&json))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_has_the_conventional_keys_and_static_overrides() {
        let context = host_context_with(&[
            ("deployment.environment.name".into(), "prod".into()),
            ("host.name".into(), "runner-override".into()),
        ]);
        let r = &context.resource;
        assert_eq!(r.get("service.name").unwrap().to_string(), "tailguard");
        assert_eq!(
            r.get("deployment.environment.name").unwrap().to_string(),
            "prod"
        );
        assert_eq!(r.get("host.name").unwrap().to_string(), "runner-override");
        let id = r.get("service.instance.id").unwrap().to_string();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4", "version 4");
        assert_ne!(
            id,
            host_context()
                .resource
                .get("service.instance.id")
                .unwrap()
                .to_string()
        );
    }
}
