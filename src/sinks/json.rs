//! The JSON-lines encoding shared by the `console` and `file` sinks.
//!
//! One object per event:
//!
//! ```json
//! {"timestamp":"2026-11-22T16:40:00.123456789Z","observed_timestamp":"…",
//!  "source":"app_logs","body":"…","attributes":{"log.file.path":"/var/log/app.log"},
//!  "trace_id":"…","span_id":"…","resource":{"host.name":"runner-7"}}
//! ```
//!
//! `body` is the line as UTF-8; a line that is not valid UTF-8 also gets
//! `body_base64` with its exact bytes, so nothing is lost. `attributes` holds
//! the event's own attributes followed by its job and identity attributes.
//! `trace_id`/`span_id` appear when the event belongs to a span, `resource`
//! when the sink asks for it.

use std::io::Write;
use std::time::SystemTime;

use base64::Engine;

use crate::event::{Attributes, Event, SpanData, SpanKind, SpanStatus, Value};

/// Appends one event as a JSON object and a newline to `out`.
pub fn encode(event: &Event, include_resource: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"timestamp\":");
    write_time(event.timestamp.unwrap_or(event.observed_at), out);
    out.extend_from_slice(b",\"observed_timestamp\":");
    write_time(event.observed_at, out);
    out.extend_from_slice(b",\"source\":");
    write_str(&event.origin.source, out);
    match event.as_span() {
        Some(span) => write_span(span, out),
        None => write_body(&event.body, out),
    }
    out.extend_from_slice(b",\"attributes\":{");
    let mut first = true;
    write_attributes(&event.attributes, &mut first, out);
    write_attributes(&event.context.identity, &mut first, out);
    out.push(b'}');
    if let Some(trace) = &event.trace {
        out.extend_from_slice(b",\"trace_id\":\"");
        write_hex(&trace.trace_id, out);
        out.extend_from_slice(b"\",\"span_id\":\"");
        write_hex(&trace.span_id, out);
        out.push(b'"');
    }
    if include_resource {
        out.extend_from_slice(b",\"resource\":{");
        let mut first = true;
        write_attributes(&event.context.resource, &mut first, out);
        out.push(b'}');
    }
    out.extend_from_slice(b"}\n");
}

fn write_body(body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"body\":");
    match std::str::from_utf8(body) {
        Ok(text) => write_str(text, out),
        Err(_) => {
            write_str(&String::from_utf8_lossy(body), out);
            out.extend_from_slice(b",\"body_base64\":\"");
            let exact = base64::engine::general_purpose::STANDARD.encode(body);
            out.extend_from_slice(exact.as_bytes());
            out.push(b'"');
        }
    }
}

fn write_span(span: &SpanData, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"span\":{\"name\":");
    write_str(&span.name, out);
    out.extend_from_slice(b",\"kind\":");
    write_str(
        match span.kind {
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
        },
        out,
    );
    if let Some(parent) = &span.parent_span_id {
        out.extend_from_slice(b",\"parent_span_id\":\"");
        write_hex(parent, out);
        out.push(b'"');
    }
    out.extend_from_slice(b",\"start\":");
    write_time(span.start, out);
    out.extend_from_slice(b",\"end\":");
    write_time(span.end, out);
    out.extend_from_slice(b",\"status\":");
    match &span.status {
        SpanStatus::Unset => write_str("unset", out),
        SpanStatus::Ok => write_str("ok", out),
        SpanStatus::Error(message) => {
            write_str("error", out);
            out.extend_from_slice(b",\"status_message\":");
            write_str(message, out);
        }
    }
    out.push(b'}');
}

fn write_attributes(attrs: &Attributes, first: &mut bool, out: &mut Vec<u8>) {
    for (key, value) in attrs.iter() {
        if !std::mem::take(first) {
            out.push(b',');
        }
        write_str(key, out);
        out.push(b':');
        match value {
            Value::String(s) => write_str(s, out),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Float(f) if f.is_finite() => {
                let _ = write!(out, "{f}");
            }
            Value::Float(f) => write_str(&f.to_string(), out),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        }
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

fn write_time(t: SystemTime, out: &mut Vec<u8>) {
    let _ = write!(out, "\"{}\"", humantime::format_rfc3339_nanos(t));
}

fn write_hex(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Context, Origin, TraceIds};
    use std::sync::Arc;

    fn decode(event: &Event, resource: bool) -> serde_json::Value {
        let mut out = Vec::new();
        encode(event, resource, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn encodes_fields_identity_and_trace() {
        let mut context = Context::default();
        context.resource.insert("host.name", "runner-7");
        context.identity.insert("cicd.pipeline.name", "build");
        let mut event = Event::new(
            &b"say \"hi\""[..],
            Origin {
                source: Arc::from("in"),
                ..Origin::default()
            },
            Arc::new(context),
        );
        event.attributes.insert("n", 3i64);
        event.trace = Some(TraceIds {
            trace_id: [1; 16],
            span_id: [2; 8],
        });
        let json = decode(&event, true);
        assert_eq!(json["body"], "say \"hi\"");
        assert_eq!(json["source"], "in");
        assert_eq!(json["attributes"]["n"], 3);
        assert_eq!(json["attributes"]["cicd.pipeline.name"], "build");
        assert_eq!(json["trace_id"], "01".repeat(16));
        assert_eq!(json["resource"]["host.name"], "runner-7");
        assert!(json.get("body_base64").is_none());
        assert!(decode(&event, false).get("resource").is_none());
    }

    #[test]
    fn invalid_utf8_is_kept_exactly_in_base64() {
        let event = Event::new(&b"\xffok"[..], Origin::default(), Arc::default());
        let json = decode(&event, false);
        let exact = base64::engine::general_purpose::STANDARD
            .decode(json["body_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(exact, b"\xffok");
    }
}
