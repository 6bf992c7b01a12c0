//! What `tailguard exec` sends to the agent's `ci_exec` source: one JSON
//! object per line over a unix socket.
//!
//! A connection starts with one `job` message (the step's job and identity
//! attributes and the worker's resource attributes), then any number of
//! `log` and `span` messages. The format is versioned so an agent can refuse
//! a wrapper it does not understand instead of misreading it.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::event::{TraceIds, hex};

/// The version this build speaks.
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    Job {
        version: u32,
        /// Job and identity attributes (`cicd.*`, `vcs.*`, `nhi.*`).
        attributes: BTreeMap<String, String>,
        /// Worker attributes for the resource (`cicd.worker.*`).
        resource: BTreeMap<String, String>,
        /// Names (never values) of the job's environment variables, so the
        /// agent can tie the job to inventory identities by variable name.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        env_names: Vec<String>,
        /// The job span the step's span is a child of; the agent emits it
        /// once the job has gone quiet.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job_trace_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        job_span_id: Option<String>,
    },
    Log {
        observed_unix_nanos: u64,
        /// `stdout` or `stderr` (the `log.iostream` convention).
        stream: String,
        /// The line as text when it is valid UTF-8...
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        /// ...otherwise its exact bytes in base64.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body_base64: Option<String>,
        trace_id: String,
        span_id: String,
    },
    Span {
        name: String,
        trace_id: String,
        span_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent_span_id: Option<String>,
        start_unix_nanos: u64,
        end_unix_nanos: u64,
        /// `ok`, `error` or `unset`.
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status_message: Option<String>,
        attributes: BTreeMap<String, WireValue>,
    },
}

/// An attribute value on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WireValue {
    Bool(bool),
    Int(i64),
    String(String),
}

impl Message {
    pub fn log(line: &[u8], stream: &str, ids: &TraceIds, observed: SystemTime) -> Self {
        let (body, body_base64) = match std::str::from_utf8(line) {
            Ok(text) => (Some(text.to_string()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(line)),
            ),
        };
        Message::Log {
            observed_unix_nanos: unix_nanos(observed),
            stream: stream.to_string(),
            body,
            body_base64,
            trace_id: hex(&ids.trace_id),
            span_id: hex(&ids.span_id),
        }
    }

    /// The line's exact bytes, for a `log` message.
    pub fn log_body(&self) -> Option<Vec<u8>> {
        match self {
            Message::Log {
                body: Some(text), ..
            } => Some(text.as_bytes().to_vec()),
            Message::Log {
                body_base64: Some(b64),
                ..
            } => base64::engine::general_purpose::STANDARD.decode(b64).ok(),
            _ => None,
        }
    }
}

pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub fn from_unix_nanos(n: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(n)
}

/// Parses a lower-case hex id of `N` bytes.
pub fn parse_id<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_messages_keep_exact_bytes() {
        let ids = TraceIds::new_root();
        for line in [&b"plain text"[..], b"\xff\xfe binary"] {
            let message = Message::log(line, "stderr", &ids, SystemTime::now());
            let json = serde_json::to_string(&message).unwrap();
            let back: Message = serde_json::from_str(&json).unwrap();
            assert_eq!(back.log_body().unwrap(), line);
        }
    }

    #[test]
    fn unknown_fields_and_kinds_are_refused() {
        assert!(serde_json::from_str::<Message>(r#"{"kind":"nope"}"#).is_err());
        assert!(
            serde_json::from_str::<Message>(
                r#"{"kind":"job","version":1,"attributes":{},"resource":{},"x":1}"#
            )
            .is_err()
        );
    }
}
