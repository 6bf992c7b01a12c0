//! OIDC workload identity of a CI job, from the claims of its ID token.
//!
//! The token is a bearer credential: whoever holds it can exchange it for
//! cloud access until it expires. tailguard only decodes the payload to
//! record *who* the job is (issuer, subject, audience, repository, ref,
//! environment); it never returns, logs or stores the token, its header or
//! its signature, and it does not verify the signature
//! (`tailguard.oidc.verified = false`): the claims are as the process saw
//! them, not proof.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD_INDIFFERENT as B64URL;
use serde_json::Value;

/// Claims read from a token, in output order. `project_path` is GitLab's
/// counterpart of GitHub's `repository`.
const CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "repository",
    "project_path",
    "ref",
    "environment",
    "job_workflow_ref",
    "exp",
];

const PREFIX: &str = "tailguard.oidc.claim.";
const VERIFIED: &str = "tailguard.oidc.verified";
const AVAILABLE: &str = "tailguard.oidc.available";
const TOKEN_VARS: &str = "tailguard.oidc.token.env";
const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
const BUILDKITE_ISSUER: &str = "https://agent.buildkite.com";
/// Larger values are not looked at (ID tokens are a few KiB).
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Decodes a JWT's payload without verifying it and returns
/// `tailguard.oidc.claim.<name>` attributes for `iss`, `sub`, `aud` (an
/// array is joined with `,`), `repository`, `project_path`, `ref`,
/// `environment`, `job_workflow_ref` and `exp` (integer seconds), followed
/// by `tailguard.oidc.verified = false`.
///
/// Returns `None` unless `token` is a three-part compact JWS whose header
/// and payload are base64url JSON objects. The token string and its
/// signature are never part of the output.
pub fn oidc_claims(token: &str) -> Option<Vec<(String, String)>> {
    decode_payload(token).map(|p| claims_of(&p))
}

/// Formats the claims of a decoded payload (see [`oidc_claims`]).
fn claims_of(payload: &serde_json::Map<String, Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for &name in CLAIMS {
        let v = match payload.get(name) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Array(a)) if name == "aud" => {
                let parts: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                if parts.is_empty() {
                    continue;
                }
                parts.join(",")
            }
            Some(Value::Number(n)) if name == "exp" => match n.as_i64() {
                Some(i) => i.to_string(),
                None => match n.as_f64() {
                    Some(f) if f.is_finite() => (f.trunc() as i64).to_string(),
                    _ => continue,
                },
            },
            _ => continue,
        };
        out.push((format!("{PREFIX}{name}"), v));
    }
    out.push((VERIFIED.to_string(), "false".to_string()));
    out
}

fn decode_payload(token: &str) -> Option<serde_json::Map<String, Value>> {
    let token = token.trim();
    if token.len() > MAX_TOKEN_LEN || !looks_like_jwt(token) {
        return None;
    }
    let mut parts = token.split('.');
    let (h, p, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&B64URL.decode(h).ok()?).ok()?;
    if !header.is_object() {
        return None;
    }
    match serde_json::from_slice(&B64URL.decode(p).ok()?).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Cheap shape test: `eyJ…` (base64url of `{"`), base64url characters and
/// exactly two dots.
fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ")
        && s.bytes().filter(|&b| b == b'.').count() == 2
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

/// OIDC workload identity observable in a process environment.
///
/// * GitLab CI (`GITLAB_CI=true`): `id_tokens` are exported as environment
///   variables with user-chosen names. Every value that looks like a JWT and
///   whose `iss` equals `CI_SERVER_URL` is decoded. All tokens of a job
///   share issuer, subject and ref and differ by audience, so the result is
///   the claims of the first token (by variable name) with `aud` replaced by
///   the sorted union of all audiences, plus `tailguard.oidc.token.env`
///   (the variable names, comma-joined; names are not secret).
/// * GitHub Actions: a job with `id-token: write` gets
///   `ACTIONS_ID_TOKEN_REQUEST_URL` / `ACTIONS_ID_TOKEN_REQUEST_TOKEN`, a
///   credential to *request* a token, not a token. Only
///   `tailguard.oidc.available = true` is recorded; neither value is read
///   into the output. A token the job exported itself (issuer
///   `https://token.actions.githubusercontent.com`) is decoded as above.
/// * Buildkite: no documented environment variable holds a token (jobs run
///   `buildkite-agent oidc request-token`, which prints it). A token the job
///   exported (issuer `https://agent.buildkite.com`) is decoded as above.
///
/// Returns `None` when nothing was found.
pub fn oidc_from_env<I, K, V>(env: I) -> Option<Vec<(String, String)>>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let vars: Vec<(K, V)> = env.into_iter().collect();
    let lookup = |name: &str| {
        vars.iter()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| v.as_ref())
            .filter(|v| !v.is_empty())
    };

    let mut issuers: Vec<String> = Vec::new();
    let mut available = false;
    if lookup("GITLAB_CI") == Some("true")
        && let Some(server) = lookup("CI_SERVER_URL")
    {
        issuers.push(server.trim_end_matches('/').to_string());
    }
    if lookup("GITHUB_ACTIONS") == Some("true") {
        issuers.push(GITHUB_ISSUER.to_string());
        available = lookup("ACTIONS_ID_TOKEN_REQUEST_URL").is_some();
    }
    if lookup("BUILDKITE") == Some("true") {
        issuers.push(BUILDKITE_ISSUER.to_string());
    }

    // (variable name, decoded payload) of every matching token.
    let mut found: Vec<(&str, serde_json::Map<String, Value>)> = vars
        .iter()
        .filter(|(k, _)| !k.as_ref().starts_with("ACTIONS_ID_TOKEN_REQUEST_"))
        .filter_map(|(k, v)| {
            let p = decode_payload(v.as_ref())?;
            let iss = p.get("iss")?.as_str()?.trim_end_matches('/');
            issuers.iter().any(|i| i == iss).then_some((k.as_ref(), p))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(b.0));

    let mut out = Vec::new();
    if let Some((_, first)) = found.first() {
        let mut auds: Vec<String> = Vec::new();
        for (_, p) in &found {
            match p.get("aud") {
                Some(Value::String(s)) => auds.push(s.clone()),
                Some(Value::Array(a)) => {
                    auds.extend(a.iter().filter_map(Value::as_str).map(str::to_string))
                }
                _ => {}
            }
        }
        auds.sort();
        auds.dedup();
        let mut merged = first.clone();
        if !auds.is_empty() {
            merged.insert(
                "aud".into(),
                Value::Array(auds.into_iter().map(Value::String).collect()),
            );
        }
        out.extend(claims_of(&merged));
        let names: Vec<&str> = found.iter().map(|(k, _)| *k).collect();
        out.push((TOKEN_VARS.to_string(), names.join(",")));
    }
    if available {
        out.push((AVAILABLE.to_string(), "true".to_string()));
    }
    (!out.is_empty()).then_some(out)
}
