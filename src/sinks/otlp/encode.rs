//! Events to OTLP protobuf messages, built with the official
//! `opentelemetry-proto` types.
//!
//! A batch carries each resource once: events that share a context (the
//! normal case: one per source) are grouped under one `ResourceLogs`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};

use crate::event::{Attributes, Context, Event, SpanData, SpanKind, SpanStatus, Value};

/// The instrumentation scope tailguard's records are reported under.
pub const SCOPE_NAME: &str = "tailguard";

/// Groups items by their event's resource, keeping first-seen order.
fn by_resource<'a, T>(
    events: impl Iterator<Item = &'a Event>,
    mut item: impl FnMut(&'a Event) -> T,
) -> Vec<(&'a Arc<Context>, Vec<T>)> {
    let mut groups: Vec<(&Arc<Context>, Vec<T>)> = Vec::new();
    for event in events {
        let value = item(event);
        let group = groups.iter_mut().find(|(context, _)| {
            Arc::ptr_eq(context, &event.context) || context.resource == event.context.resource
        });
        match group {
            Some((_, items)) => items.push(value),
            None => groups.push((&event.context, vec![value])),
        }
    }
    groups
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..InstrumentationScope::default()
    }
}

/// Builds one traces export request from the span events of a batch.
pub fn traces_request<'a>(events: impl Iterator<Item = &'a Event>) -> ExportTraceServiceRequest {
    let groups = by_resource(events.filter(|e| e.as_span().is_some()), |event| {
        span(event, event.as_span().expect("filtered to spans"))
    });
    ExportTraceServiceRequest {
        resource_spans: groups
            .into_iter()
            .map(|(context, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: key_values(&context.resource),
                    ..Resource::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(scope()),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

fn span(event: &Event, data: &SpanData) -> Span {
    let mut attributes = key_values(&event.attributes);
    attributes.extend(key_values(&event.context.identity));
    attributes.push(key_value(
        "tailguard.source",
        &Value::String(event.origin.source.clone()),
    ));
    let (code, message) = match &data.status {
        SpanStatus::Unset => (status::StatusCode::Unset, String::new()),
        SpanStatus::Ok => (status::StatusCode::Ok, String::new()),
        SpanStatus::Error(message) => (status::StatusCode::Error, message.clone()),
    };
    Span {
        trace_id: data.ids.trace_id.to_vec(),
        span_id: data.ids.span_id.to_vec(),
        parent_span_id: data.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        name: data.name.clone(),
        kind: match data.kind {
            SpanKind::Internal => span::SpanKind::Internal,
            SpanKind::Server => span::SpanKind::Server,
        } as i32,
        start_time_unix_nano: unix_nanos(data.start),
        end_time_unix_nano: unix_nanos(data.end),
        attributes,
        status: Some(Status {
            code: code as i32,
            message,
        }),
        ..Span::default()
    }
}

/// Builds one logs export request from the log events of a batch.
pub fn logs_request<'a>(events: impl Iterator<Item = &'a Event>) -> ExportLogsServiceRequest {
    let groups = by_resource(events.filter(|e| e.as_span().is_none()), log_record);
    ExportLogsServiceRequest {
        resource_logs: groups
            .into_iter()
            .map(|(context, log_records)| ResourceLogs {
                resource: Some(Resource {
                    attributes: key_values(&context.resource),
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    }
}

fn log_record(event: &Event) -> LogRecord {
    // Valid UTF-8 goes as a string; anything else as bytes, unchanged, so
    // the collector receives exactly what was in the file.
    let body = match std::str::from_utf8(&event.body) {
        Ok(text) => any_value::Value::StringValue(text.to_string()),
        Err(_) => any_value::Value::BytesValue(event.body.to_vec()),
    };
    let mut attributes = key_values(&event.attributes);
    attributes.extend(key_values(&event.context.identity));
    attributes.push(key_value(
        "tailguard.source",
        &Value::String(event.origin.source.clone()),
    ));
    let (trace_id, span_id) = match &event.trace {
        Some(t) => (t.trace_id.to_vec(), t.span_id.to_vec()),
        None => (Vec::new(), Vec::new()),
    };
    LogRecord {
        time_unix_nano: event.timestamp.map_or(0, unix_nanos),
        observed_time_unix_nano: unix_nanos(event.observed_at),
        body: Some(AnyValue { value: Some(body) }),
        attributes,
        trace_id,
        span_id,
        ..LogRecord::default()
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn key_values(attrs: &Attributes) -> Vec<KeyValue> {
    attrs.iter().map(|(k, v)| key_value(k, v)).collect()
}

fn key_value(key: &str, value: &Value) -> KeyValue {
    let value = match value {
        Value::String(s) => any_value::Value::StringValue(s.to_string()),
        Value::Int(i) => any_value::Value::IntValue(*i),
        Value::Float(f) => any_value::Value::DoubleValue(*f),
        Value::Bool(b) => any_value::Value::BoolValue(*b),
    };
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Origin, TraceIds};

    fn context(host: &str) -> Arc<Context> {
        let mut c = Context::default();
        c.resource.insert("host.name", host);
        c.identity.insert("cicd.pipeline.name", "build");
        Arc::new(c)
    }

    fn event(body: &[u8], context: &Arc<Context>) -> Event {
        let origin = Origin {
            source: Arc::from("in"),
            ..Origin::default()
        };
        Event::new(body.to_vec(), origin, context.clone())
    }

    #[test]
    fn groups_records_by_resource() {
        let a = context("a");
        let a_again = context("a");
        let b = context("b");
        let events = [event(b"1", &a), event(b"2", &b), event(b"3", &a_again)];
        let request = logs_request(events.iter());
        assert_eq!(request.resource_logs.len(), 2);
        let first = &request.resource_logs[0];
        assert_eq!(first.scope_logs[0].log_records.len(), 2);
        assert_eq!(
            first.scope_logs[0].scope.as_ref().unwrap().name,
            "tailguard"
        );
    }

    #[test]
    fn record_carries_body_attributes_identity_and_trace() {
        let c = context("a");
        let mut e = event(b"\xffraw", &c);
        e.attributes.insert("log.file.path", "/var/log/x.log");
        e.trace = Some(TraceIds {
            trace_id: [7; 16],
            span_id: [9; 8],
        });
        let request = logs_request(std::iter::once(&e));
        let record = &request.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(
            record.body.as_ref().unwrap().value,
            Some(any_value::Value::BytesValue(b"\xffraw".to_vec()))
        );
        let keys: Vec<&str> = record.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            keys,
            ["log.file.path", "cicd.pipeline.name", "tailguard.source"]
        );
        assert_eq!(record.trace_id, vec![7; 16]);
        assert_eq!(record.span_id, vec![9; 8]);
        assert_eq!(record.time_unix_nano, 0, "no parsed timestamp");
        assert!(record.observed_time_unix_nano > 0);
    }
}
