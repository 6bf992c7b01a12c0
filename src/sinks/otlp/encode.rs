//! Events to OTLP protobuf messages, built with the official
//! `opentelemetry-proto` types.
//!
//! A batch carries each resource once: events that share a context (the
//! normal case: one per source) are grouped under one `ResourceLogs`.
//!
//! Log records, the bulk of the traffic, are encoded by [`LogsEncoder`]
//! straight from the events into protobuf bytes (see [`record`]): lengths in
//! one pass, bytes in a second, each written once into the request buffer.
//! Only the resource and scope go through prost's types. The bytes are
//! exactly those of the equivalent `ExportLogsServiceRequest` (a test holds
//! the two together); building that request instead cost a dozen allocations
//! per line, a quarter of the agent's CPU when shipping.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

#[cfg(test)]
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
#[cfg(test)]
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

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

/// Encodes the log events of batches as `ExportLogsServiceRequest` bytes.
#[derive(Default)]
pub struct LogsEncoder {
    shared: record::SharedFields,
}

impl LogsEncoder {
    /// The protobuf bytes of the logs export request for the log events
    /// among `events` (spans are skipped).
    pub fn encode<'a>(&mut self, events: impl Iterator<Item = &'a Event>) -> Vec<u8> {
        const RESOURCE_LOGS: u32 = 1; // ExportLogsServiceRequest.resource_logs
        const RESOURCE: u32 = 1; // ResourceLogs.resource
        const SCOPE_LOGS: u32 = 2; // ResourceLogs.scope_logs
        const SCOPE: u32 = 1; // ScopeLogs.scope
        const LOG_RECORDS: u32 = 2; // ScopeLogs.log_records
        let groups = by_resource(events.filter(|e| e.as_span().is_none()), |event| event);
        let scope = scope();
        let scope_len = prost::encoding::message::encoded_len(SCOPE, &scope);
        let mut out = Vec::new();
        for (context, events) in groups {
            // Two passes: lengths first, so every byte is written once, in place.
            let shared = &mut self.shared;
            let sized: Vec<record::Measured> =
                events.iter().map(|e| record::size(e, shared)).collect();
            let records_len: usize = sized
                .iter()
                .map(|r| key_len(LOG_RECORDS) + encoded_len_varint(r.len as u64) + r.len)
                .sum();
            let resource = Resource {
                attributes: key_values(&context.resource),
                ..Resource::default()
            };
            let scope_logs_len = scope_len + records_len;
            let resource_logs_len = prost::encoding::message::encoded_len(RESOURCE, &resource)
                + key_len(SCOPE_LOGS)
                + encoded_len_varint(scope_logs_len as u64)
                + scope_logs_len;
            out.reserve(resource_logs_len + 16);
            encode_key(RESOURCE_LOGS, WireType::LengthDelimited, &mut out);
            encode_varint(resource_logs_len as u64, &mut out);
            prost::encoding::message::encode(RESOURCE, &resource, &mut out);
            encode_key(SCOPE_LOGS, WireType::LengthDelimited, &mut out);
            encode_varint(scope_logs_len as u64, &mut out);
            prost::encoding::message::encode(SCOPE, &scope, &mut out);
            for (event, sized) in events.iter().zip(&sized) {
                encode_key(LOG_RECORDS, WireType::LengthDelimited, &mut out);
                encode_varint(sized.len as u64, &mut out);
                record::write(event, sized, &mut self.shared, &mut out);
            }
        }
        out
    }
}

/// One `LogRecord` written straight from an [`Event`], field by field in tag
/// order as prost writes them (opentelemetry/proto/logs/v1/logs.proto and
/// common/v1/common.proto give the field numbers). Nothing is copied into an
/// intermediate message: that copy, and prost computing nested lengths again
/// at every level, were most of the sink's encoding time.
mod record {
    use std::sync::Arc;

    use prost::encoding::{WireType, encode_varint, encoded_len_varint};

    use super::unix_nanos;
    use crate::event::{Attribute, Context, Event, Value};

    // LogRecord
    const TIME_UNIX_NANO: u32 = 1;
    const BODY: u32 = 5;
    const ATTRIBUTES: u32 = 6;
    const TRACE_ID: u32 = 9;
    const SPAN_ID: u32 = 10;
    const OBSERVED_TIME_UNIX_NANO: u32 = 11;
    // KeyValue
    const KEY: u32 = 1;
    const VALUE: u32 = 2;
    // AnyValue (oneof value)
    const STRING_VALUE: u32 = 1;
    const BOOL_VALUE: u32 = 2;
    const INT_VALUE: u32 = 3;
    const DOUBLE_VALUE: u32 = 4;
    const BYTES_VALUE: u32 = 7;

    /// Every field number used here is below 16: one byte of key.
    const KEY_LEN: usize = 1;

    /// The one-byte key of field `tag`.
    const fn key(tag: u32, wire_type: WireType) -> u8 {
        assert!(tag < 16, "a field number of one key byte");
        ((tag << 3) | wire_type as u32) as u8
    }

    /// A varint length. Most lengths here are below 128; prost's encoder,
    /// generic over its buffer, is a call per varint.
    fn put_len(len: usize, out: &mut Vec<u8>) {
        match u8::try_from(len) {
            Ok(byte) if byte < 0x80 => out.push(byte),
            _ => encode_varint(len as u64, out),
        }
    }

    enum Any<'a> {
        Text(&'a str),
        Bytes(&'a [u8]),
        Value(&'a Value),
    }

    /// What the sizing pass learnt of a record, for the writing pass.
    pub(super) struct Measured<'a> {
        /// the record's encoded length, without its own key and length
        pub(super) len: usize,
        /// the body as it goes (UTF-8 is checked once, here)
        body: Any<'a>,
        /// `time_unix_nano`, 0 when the line had no timestamp
        time: u64,
        observed: u64,
    }

    /// Valid UTF-8 goes as a string; anything else as bytes, unchanged, so
    /// the collector receives exactly what was in the file.
    fn body(event: &Event) -> Any<'_> {
        match std::str::from_utf8(&event.body) {
            Ok(text) => Any::Text(text),
            Err(_) => Any::Bytes(&event.body),
        }
    }

    fn delimited_len(len: usize) -> usize {
        KEY_LEN + encoded_len_varint(len as u64) + len
    }

    fn any_len(value: &Any) -> usize {
        match value {
            Any::Text(s) => delimited_len(s.len()),
            Any::Bytes(b) => delimited_len(b.len()),
            Any::Value(Value::String(s)) => delimited_len(s.len()),
            Any::Value(Value::Int(i)) => KEY_LEN + encoded_len_varint(*i as u64),
            Any::Value(Value::Float(_)) => KEY_LEN + 8,
            Any::Value(Value::Bool(_)) => KEY_LEN + 1,
        }
    }

    fn key_value_len(key: &str, value: &Any) -> usize {
        let key = if key.is_empty() {
            0
        } else {
            delimited_len(key.len())
        };
        key + delimited_len(any_len(value))
    }

    /// The encoded `attributes` fields of what a run of records shares: the
    /// list a source gives every event of one file, the identity of one
    /// context, the source's name. Each is encoded when the record's differs
    /// from the last one's and copied otherwise, so a file line's shared
    /// attributes cost a pointer comparison and a copy.
    ///
    /// Each part keeps its last value alive until a different one comes: one
    /// list, one context and one source name per sink, which is what makes
    /// the pointer comparison sound.
    #[derive(Default)]
    pub(super) struct SharedFields {
        list: Encoded<[Attribute]>,
        identity: Encoded<Context>,
        source: Encoded<str>,
    }

    /// Fields encoded from one shared value. The value is held, so that the
    /// same pointer always means the same contents.
    struct Encoded<T: ?Sized> {
        from: Option<Arc<T>>,
        fields: Vec<u8>,
    }

    impl<T: ?Sized> Default for Encoded<T> {
        fn default() -> Self {
            Self {
                from: None,
                fields: Vec::new(),
            }
        }
    }

    impl<T: ?Sized> Encoded<T> {
        fn fields(&mut self, from: &Arc<T>, encode: impl FnOnce(&T, &mut Vec<u8>)) -> &[u8] {
            if !self
                .from
                .as_ref()
                .is_some_and(|held| Arc::ptr_eq(held, from))
            {
                self.fields.clear();
                encode(from, &mut self.fields);
                self.from = Some(Arc::clone(from));
            }
            &self.fields
        }
    }

    const SOURCE_KEY: &str = "tailguard.source";

    fn write_list(list: &[Attribute], out: &mut Vec<u8>) {
        for (key, value) in list {
            write_key_value(key, &Any::Value(value), out);
        }
    }

    fn write_identity(context: &Context, out: &mut Vec<u8>) {
        for (key, value) in context.identity.iter() {
            write_key_value(key, &Any::Value(value), out);
        }
    }

    fn write_source(source: &str, out: &mut Vec<u8>) {
        write_key_value(SOURCE_KEY, &Any::Text(source), out);
    }

    /// One `attributes` field of a record, or a run of them.
    enum Field<'a> {
        /// The fields of a shared part, already encoded.
        Encoded(&'a [u8]),
        /// One of the event's own attributes.
        Own(&'a str, &'a Value),
    }

    /// Calls `each` with `event`'s attributes in the order they go out: the
    /// shared list, the event's own, the context's identity,
    /// `tailguard.source`.
    fn attributes(event: &Event, fields: &mut SharedFields, mut each: impl FnMut(Field)) {
        let (list, own) = event.attributes.parts();
        if let Some(list) = list {
            each(Field::Encoded(fields.list.fields(list, write_list)));
        }
        for (key, value) in own {
            each(Field::Own(key, value));
        }
        each(Field::Encoded(
            fields.identity.fields(&event.context, write_identity),
        ));
        each(Field::Encoded(
            fields.source.fields(&event.origin.source, write_source),
        ));
    }

    /// Sizes `event`'s record.
    pub(super) fn size<'a>(event: &'a Event, fields: &mut SharedFields) -> Measured<'a> {
        let body = body(event);
        let time = event.timestamp.map_or(0, unix_nanos);
        let observed = unix_nanos(event.observed_at);
        let mut len = 0;
        if time != 0 {
            len += KEY_LEN + 8;
        }
        len += delimited_len(any_len(&body));
        attributes(event, fields, |field| {
            len += match field {
                Field::Encoded(encoded) => encoded.len(),
                Field::Own(key, value) => delimited_len(key_value_len(key, &Any::Value(value))),
            }
        });
        if event.trace.is_some() {
            len += delimited_len(16) + delimited_len(8);
        }
        if observed != 0 {
            len += KEY_LEN + 8;
        }
        Measured {
            len,
            body,
            time,
            observed,
        }
    }

    fn write_any(value: &Any, out: &mut Vec<u8>) {
        match value {
            Any::Text(s) => write_bytes(STRING_VALUE, s.as_bytes(), out),
            Any::Value(Value::String(s)) => write_bytes(STRING_VALUE, s.as_bytes(), out),
            Any::Bytes(b) => write_bytes(BYTES_VALUE, b, out),
            Any::Value(Value::Int(i)) => {
                out.push(key(INT_VALUE, WireType::Varint));
                encode_varint(*i as u64, out);
            }
            Any::Value(Value::Float(f)) => {
                out.push(key(DOUBLE_VALUE, WireType::SixtyFourBit));
                out.extend_from_slice(&f.to_le_bytes());
            }
            Any::Value(Value::Bool(b)) => {
                out.push(key(BOOL_VALUE, WireType::Varint));
                out.push(u8::from(*b));
            }
        }
    }

    fn write_bytes(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
        out.push(key(tag, WireType::LengthDelimited));
        put_len(bytes.len(), out);
        out.extend_from_slice(bytes);
    }

    fn write_key_value(key_text: &str, value: &Any, out: &mut Vec<u8>) {
        out.push(key(ATTRIBUTES, WireType::LengthDelimited));
        put_len(key_value_len(key_text, value), out);
        if !key_text.is_empty() {
            write_bytes(KEY, key_text.as_bytes(), out);
        }
        out.push(key(VALUE, WireType::LengthDelimited));
        put_len(any_len(value), out);
        write_any(value, out);
    }

    fn write_fixed64(tag: u32, value: u64, out: &mut Vec<u8>) {
        out.push(key(tag, WireType::SixtyFourBit));
        out.extend_from_slice(&value.to_le_bytes());
    }

    /// Writes `event`'s record, `sized.len` bytes.
    pub(super) fn write(
        event: &Event,
        sized: &Measured,
        fields: &mut SharedFields,
        out: &mut Vec<u8>,
    ) {
        if sized.time != 0 {
            write_fixed64(TIME_UNIX_NANO, sized.time, out);
        }
        out.push(key(BODY, WireType::LengthDelimited));
        put_len(any_len(&sized.body), out);
        write_any(&sized.body, out);
        attributes(event, fields, |field| match field {
            Field::Encoded(encoded) => out.extend_from_slice(encoded),
            Field::Own(key, value) => write_key_value(key, &Any::Value(value), out),
        });
        if let Some(t) = &event.trace {
            write_bytes(TRACE_ID, &t.trace_id, out);
            write_bytes(SPAN_ID, &t.span_id, out);
        }
        if sized.observed != 0 {
            write_fixed64(OBSERVED_TIME_UNIX_NANO, sized.observed, out);
        }
    }
}

/// Builds one logs export request from the log events of a batch (the
/// reference [`LogsEncoder`] is held to).
#[cfg(test)]
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

#[cfg(test)]
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
    KeyValue {
        key: key.to_string(),
        value: Some(any_value(value)),
        ..KeyValue::default()
    }
}

fn any_value(value: &Value) -> AnyValue {
    let value = match value {
        Value::String(s) => any_value::Value::StringValue(s.to_string()),
        Value::Int(i) => any_value::Value::IntValue(*i),
        Value::Float(f) => any_value::Value::DoubleValue(*f),
        Value::Bool(b) => any_value::Value::BoolValue(*b),
    };
    AnyValue { value: Some(value) }
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
    fn the_streaming_encoder_writes_exactly_the_request_bytes() {
        use prost::Message;
        let a = context("a");
        let b = context("b");
        let mut events = [
            event(b"first line", &a),
            event(b"\xffnot utf-8", &b),
            event(b"third", &a),
            event(b"", &a),
            event(b"fifth", &a),
            event(b"sixth", &a),
        ];
        events[0]
            .attributes
            .insert("log.file.path", "/var/log/x.log");
        events[0].attributes.insert("tailguard.file.offset", 17i64);
        events[1].attributes.insert("flag", true);
        events[1].attributes.insert("ratio", 0.5f64);
        events[1].attributes.insert("delta", -3i64);
        events[1].attributes.insert("", "empty key");
        events[2].trace = Some(TraceIds {
            trace_id: [7; 16],
            span_id: [9; 8],
        });
        events[3].timestamp = Some(UNIX_EPOCH + std::time::Duration::from_secs(5));
        // The same string attribute in a row, then another value in its
        // place: repeated fields are copied, changed ones encoded anew.
        events[4]
            .attributes
            .insert("log.file.path", "/var/log/x.log");
        events[5]
            .attributes
            .insert("log.file.path", "/var/log/y.log");
        let mut encoder = LogsEncoder::default();
        // Twice, in different orders, so reused buffers carry over between
        // records of different shapes.
        for _ in 0..2 {
            let expected = logs_request(events.iter()).encode_to_vec();
            assert_eq!(encoder.encode(events.iter()), expected);
            events.reverse();
        }
        assert!(encoder.encode(std::iter::empty()).is_empty());
    }

    /// Events shaped as the sources make them: a file's attributes in a
    /// list its lines share, the line's own offset, contexts with identity,
    /// several sources, bodies past 127 bytes, in any order, through one
    /// encoder whose cached fields carry over from request to request.
    mod shared_parts {
        use super::*;
        use crate::event::{Attribute, Key};
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = Value> {
            prop_oneof![
                "[a-z/._-]{0,150}".prop_map(|s| Value::String(Arc::from(s))),
                any::<i64>().prop_map(Value::Int),
                any::<f64>().prop_map(Value::Float),
                any::<bool>().prop_map(Value::Bool),
            ]
        }

        /// Short keys, and keys whose length takes a two-byte varint.
        fn key() -> impl Strategy<Value = String> {
            prop_oneof!["[a-z.]{0,20}", "[a-z.]{128,140}"]
        }

        fn attribute_list() -> impl Strategy<Value = Vec<(String, Value)>> {
            proptest::collection::vec((key(), value()), 0..4)
        }

        /// Raw bytes go out as a bytes value and text as a string value, so
        /// both are drawn past 127 bytes.
        fn body() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..300),
                "[ -~\u{e9}\u{2603}]{0,200}".prop_map(String::into_bytes),
            ]
        }

        /// What one event is made of, by index into the pools of shared parts.
        #[derive(Debug, Clone)]
        struct Shape {
            body: Vec<u8>,
            list: Option<usize>,
            own: Vec<(String, Value)>,
            context: usize,
            source: usize,
            trace: bool,
            timestamp: Option<u64>,
        }

        fn shape() -> impl Strategy<Value = Shape> {
            (
                body(),
                proptest::option::of(0..3usize),
                attribute_list(),
                0..3usize,
                0..3usize,
                any::<bool>(),
                proptest::option::of(0..u64::MAX / 2),
            )
                .prop_map(|(body, list, own, context, source, trace, timestamp)| {
                    Shape {
                        body,
                        list,
                        own,
                        context,
                        source,
                        trace,
                        timestamp,
                    }
                })
        }

        fn shared_list(attrs: &[(String, Value)]) -> Arc<[Attribute]> {
            attrs
                .iter()
                .map(|(k, v)| (Key::from(k.clone()), v.clone()))
                .collect::<Vec<_>>()
                .into()
        }

        proptest! {
            #[test]
            fn the_encoder_writes_exactly_the_request_bytes(
                lists in proptest::collection::vec(attribute_list(), 3),
                identities in proptest::collection::vec(attribute_list(), 3),
                requests in proptest::collection::vec(proptest::collection::vec(shape(), 0..12), 1..4),
            ) {
                let lists: Vec<Arc<[Attribute]>> = lists.iter().map(|l| shared_list(l)).collect();
                let contexts: Vec<Arc<Context>> = identities
                    .iter()
                    .enumerate()
                    .map(|(i, identity)| {
                        let mut c = Context::default();
                        c.resource.insert("host.name", format!("host-{}", i % 2));
                        for (k, v) in identity {
                            c.identity.insert(k.clone(), v.clone());
                        }
                        Arc::new(c)
                    })
                    .collect();
                // Two names of one length, so a cached field of the wrong
                // name would still fit the record's size.
                let sources = [
                    Arc::<str>::from("in"),
                    Arc::<str>::from("runner_logs"),
                    Arc::<str>::from("up"),
                ];
                let mut encoder = LogsEncoder::default();
                for shapes in requests {
                    let events: Vec<Event> = shapes
                        .iter()
                        .map(|s| {
                            let origin = Origin {
                                source: Arc::clone(&sources[s.source]),
                                ..Origin::default()
                            };
                            let mut e = Event::new(s.body.clone(), origin, Arc::clone(&contexts[s.context]));
                            if let Some(list) = s.list {
                                e.attributes = Attributes::with_shared(Arc::clone(&lists[list]));
                            }
                            for (k, v) in &s.own {
                                e.attributes.insert(k.clone(), v.clone());
                            }
                            e.trace = s.trace.then_some(TraceIds { trace_id: [3; 16], span_id: [4; 8] });
                            e.timestamp = s.timestamp.map(|n| UNIX_EPOCH + std::time::Duration::from_nanos(n));
                            e
                        })
                        .collect();
                    let expected = prost::Message::encode_to_vec(&logs_request(events.iter()));
                    prop_assert_eq!(encoder.encode(events.iter()), expected);
                }
            }
        }

        /// A shared list freed after a request and a new one made in its
        /// place: the encoder holds the list it encoded, so the new one
        /// cannot take its address and be mistaken for it.
        #[test]
        fn a_new_list_is_never_taken_for_a_freed_one() {
            let c = context("a");
            let mut encoder = LogsEncoder::default();
            for path in ["/var/log/a.log", "/var/log/b.log", "/var/log/c.log"] {
                let list = shared_list(&[("log.file.path".into(), Value::from(path))]);
                let held = Arc::downgrade(&list);
                let mut e = event(b"line", &c);
                e.attributes = Attributes::with_shared(list);
                let source = Arc::downgrade(&e.origin.source);
                let expected = prost::Message::encode_to_vec(&logs_request(std::iter::once(&e)));
                assert_eq!(encoder.encode(std::iter::once(&e)), expected);
                drop(e);
                assert!(held.upgrade().is_some(), "the encoder holds the list");
                assert!(source.upgrade().is_some(), "the encoder holds the source");
            }
            let weak_context = Arc::downgrade(&c);
            drop(c);
            assert!(
                weak_context.upgrade().is_some(),
                "the encoder holds the context"
            );
        }
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
