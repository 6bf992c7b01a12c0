//! The one event type that flows from sources through transforms to sinks.
//!
//! An [`Event`] carries the raw line as [`Bytes`] (so redaction can replace the
//! body without copying the rest), when it was seen, where it came from, its
//! attributes, and an [`Arc`] to the resource and identity context it shares
//! with every other event of the same origin, so enrichment costs one pointer
//! copy per event rather than a copy of every attribute.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::ack::{AckRef, DeliveryStatus};

/// Events travel between components in batches: one channel message, one
/// allocation and one wake-up per batch rather than per line.
pub type EventBatch = Vec<Event>;

/// An attribute key. Semantic-convention names are `&'static str`; only keys
/// built at run time allocate.
pub type Key = Cow<'static, str>;

/// An attribute value, a subset of the OTLP `AnyValue`.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    String(Arc<str>),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(Arc::from(v))
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(Arc::from(v))
    }
}
impl From<Arc<str>> for Value {
    fn from(v: Arc<str>) -> Self {
        Value::String(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::String(s) => f.write_str(s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// One attribute.
pub type Attribute = (Key, Value);

/// An ordered list of attributes. A handful of keys per event makes a vector
/// faster than any map, and keeps the order they were added in for output.
///
/// Attributes that every event of a source shares (a file's path and name)
/// can be given once as a shared list: each event then holds one counted
/// reference to it instead of copies, and its own list stays inline while it
/// has one entry (a file line's offset), so a line costs no allocation here.
/// The shared list comes first; an event's own list never repeats a key of
/// it, since changing or removing a shared key makes the event's copy its
/// own.
#[derive(Clone, Debug, Default)]
pub struct Attributes {
    shared: Option<Arc<[Attribute]>>,
    own: SmallVec<[Attribute; 1]>,
}

impl Attributes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts from `shared`, which other events hold too.
    pub fn with_shared(shared: Arc<[Attribute]>) -> Self {
        Self {
            shared: Some(shared),
            own: SmallVec::new(),
        }
    }

    /// Sets `key`, replacing an earlier value under the same key.
    pub fn insert(&mut self, key: impl Into<Key>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        if self.shared_has(&key) {
            self.unshare();
        }
        match self.own.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.own.push((key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        if self.shared_has(key) {
            self.unshare();
        }
        let at = self.own.iter().position(|(k, _)| k == key)?;
        Some(self.own.remove(at).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        let shared = self.shared.as_deref().unwrap_or_default();
        shared
            .iter()
            .chain(self.own.iter())
            .map(|(k, v)| (k.as_ref(), v))
    }

    /// The shared list, if any, and this event's own attributes: what
    /// [`Self::iter`] yields, in that order. Lets a sink encode a shared
    /// list once for all the events that hold it.
    pub fn parts(&self) -> (Option<&Arc<[Attribute]>>, &[Attribute]) {
        (self.shared.as_ref(), &self.own)
    }

    pub fn len(&self) -> usize {
        self.shared.as_ref().map_or(0, |s| s.len()) + self.own.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shared_has(&self, key: &str) -> bool {
        self.shared
            .as_ref()
            .is_some_and(|s| s.iter().any(|(k, _)| k == key))
    }

    /// Copies the shared list in front of this event's own, to change it.
    fn unshare(&mut self) {
        if let Some(shared) = self.shared.take() {
            self.own.insert_many(0, shared.iter().cloned());
        }
    }
}

/// Equal when they list the same attributes in the same order, shared or not.
impl PartialEq for Attributes {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl<K: Into<Key>, V: Into<Value>> FromIterator<(K, V)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut attrs = Attributes::new();
        for (k, v) in iter {
            attrs.insert(k, v);
        }
        attrs
    }
}

/// What every event from one origin shares: the OpenTelemetry resource (host,
/// runner, service) and, once known, the CI job and identity behind it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Context {
    /// Resource attributes, exported once per batch as the OTLP `Resource`.
    pub resource: Attributes,
    /// Job and identity attributes added to every event of this context
    /// (`cicd.*`, `vcs.*`, `nhi.*`).
    pub identity: Attributes,
}

/// Where an event was read from: the same for every line of one file, so
/// events hold it shared ([`Event::origin`]). A line's place in its file is
/// its `tailguard.file.offset` attribute, unless the file source's
/// `file_attributes` leaves it out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Origin {
    /// The name of the source component in the configuration.
    pub source: Arc<str>,
    /// The file the line was read from, for file-like sources.
    pub path: Option<Arc<Path>>,
    /// The file's identity as the file source tracks it (survives renames),
    /// so a receiver can recognise a line sent twice after a crash.
    pub file_id: Option<Arc<str>>,
}

/// W3C trace context of the span an event belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceIds {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

impl TraceIds {
    /// Fresh random ids for a new trace.
    pub fn new_root() -> Self {
        Self {
            trace_id: nonzero_random(),
            span_id: nonzero_random(),
        }
    }

    /// A new span in the same trace.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: nonzero_random(),
        }
    }

    /// Parses a W3C `traceparent` header value
    /// (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`).
    pub fn from_traceparent(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || flags.len() != 2 {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let ids = Self {
            trace_id: parse_hex(trace)?,
            span_id: parse_hex(span)?,
        };
        let all_zero = |b: &[u8]| b.iter().all(|x| *x == 0);
        (!all_zero(&ids.trace_id) && !all_zero(&ids.span_id)).then_some(ids)
    }

    /// The `traceparent` value naming this span as the parent (sampled).
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", hex(&self.trace_id), hex(&self.span_id))
    }
}

fn nonzero_random<const N: usize>() -> [u8; N] {
    loop {
        let bytes: [u8; N] = std::array::from_fn(|_| rand::random());
        if bytes.iter().any(|b| *b != 0) {
            return bytes;
        }
    }
}

fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2
        || !text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// Lower-case hex, as trace ids are written.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// OpenTelemetry span kind, the subset tailguard emits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Internal,
    /// A pipeline run, as the CI/CD conventions ask.
    Server,
}

/// How a span ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpanStatus {
    Unset,
    Ok,
    Error(String),
}

/// A finished span: a pipeline run, job or step, a finding, an action.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanData {
    pub name: String,
    pub ids: TraceIds,
    pub parent_span_id: Option<[u8; 8]>,
    pub kind: SpanKind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub status: SpanStatus,
}

/// What an event is. Logs carry their line in `body`; spans carry their
/// timing and ids here and their attributes in `attributes`.
#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    Log,
    Span(Box<SpanData>),
}

/// One log line or span on its way to the sinks.
#[derive(Debug)]
pub struct Event {
    pub kind: EventKind,
    /// The raw bytes of the line without its line terminator. Not required to
    /// be UTF-8: invalid bytes are kept, never dropped.
    pub body: Bytes,
    /// When tailguard read the line.
    pub observed_at: SystemTime,
    /// When the line says it was written, if a parser found a timestamp.
    pub timestamp: Option<SystemTime>,
    /// Shared with the other events of its file or source: one counted
    /// reference a line, where the source name, path and file id each took
    /// one, and each was an atomic write the sink undid on another core.
    pub origin: Arc<Origin>,
    /// Per-event attributes (findings, flags such as truncation).
    pub attributes: Attributes,
    /// Shared resource and identity context.
    pub context: Arc<Context>,
    /// The span this event belongs to, when the source knows it.
    pub trace: Option<TraceIds>,
    /// The source's acknowledgement handle, if it asked for one.
    pub ack: Option<AckRef>,
}

impl Event {
    /// A new log event observed now, with no acknowledgement attached.
    pub fn new(
        body: impl Into<Bytes>,
        origin: impl Into<Arc<Origin>>,
        context: Arc<Context>,
    ) -> Self {
        Self::observed(body, origin, context, SystemTime::now())
    }

    /// A new log event observed at `observed_at` (a source that reads many
    /// lines at once reads the clock once).
    pub fn observed(
        body: impl Into<Bytes>,
        origin: impl Into<Arc<Origin>>,
        context: Arc<Context>,
        observed_at: SystemTime,
    ) -> Self {
        Self {
            kind: EventKind::Log,
            body: body.into(),
            observed_at,
            timestamp: None,
            origin: origin.into(),
            attributes: Attributes::new(),
            context,
            trace: None,
            ack: None,
        }
    }

    /// A finished span. Its `trace` is the span's own ids, so sinks that
    /// group by trace need no special case.
    pub fn span(span: SpanData, origin: impl Into<Arc<Origin>>, context: Arc<Context>) -> Self {
        let mut event = Self::new(Bytes::new(), origin, context);
        event.timestamp = Some(span.start);
        event.trace = Some(span.ids);
        event.kind = EventKind::Span(Box::new(span));
        event
    }

    /// The span data, if this event is a span.
    pub fn as_span(&self) -> Option<&SpanData> {
        match &self.kind {
            EventKind::Span(span) => Some(span),
            EventKind::Log => None,
        }
    }

    /// Settles this event's acknowledgement, if it carries one. Sinks call
    /// this after a write is flushed; transforms that drop an event on
    /// purpose call it with [`DeliveryStatus::Delivered`].
    pub fn settle(&mut self, status: DeliveryStatus) {
        if let Some(ack) = self.ack.take() {
            ack.settle(status);
        }
    }
}

impl Clone for Event {
    /// Cloning for fan-out gives the copy its own, unsettled acknowledgement
    /// share, so the source hears back only when every copy is settled.
    fn clone(&self) -> Self {
        Self {
            kind: self.kind.clone(),
            body: self.body.clone(),
            observed_at: self.observed_at,
            timestamp: self.timestamp,
            origin: Arc::clone(&self.origin),
            attributes: self.attributes.clone(),
            context: Arc::clone(&self.context),
            trace: self.trace,
            ack: self.ack.clone(),
        }
    }
}

/// Settles every event of a batch with the same status.
pub fn settle_all(batch: &mut [Event], status: DeliveryStatus) {
    for event in batch {
        event.settle(status);
    }
}

/// What a sink did with a batch, for its metrics: settles every event and
/// counts them under `sink` and the status.
pub fn settle_and_count(sink: &str, batch: &mut [Event], status: DeliveryStatus) {
    settle_all(batch, status);
    count_settled(sink, batch.len(), status);
}

/// Counts `n` events a sink settled with `status`.
pub fn count_settled(sink: &str, n: usize, status: DeliveryStatus) {
    let outcome = match status {
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Errored => "errored",
        DeliveryStatus::Rejected => "rejected",
    };
    crate::observe::metrics::metrics()
        .sink_events
        .get_or_create(&crate::observe::metrics::outcome(sink, outcome))
        .inc_by(n as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(attrs: &Attributes) -> Vec<(String, String)> {
        attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn shared_attributes_read_as_if_each_event_had_its_own() {
        let shared: Arc<[Attribute]> = Arc::new([
            ("log.file.path".into(), Value::from("/var/log/a.log")),
            ("log.file.name".into(), Value::from("a.log")),
        ]);
        let mut line = Attributes::with_shared(Arc::clone(&shared));
        line.insert("tailguard.file.offset", 7i64);
        let mut by_hand = Attributes::new();
        by_hand.insert("log.file.path", "/var/log/a.log");
        by_hand.insert("log.file.name", "a.log");
        by_hand.insert("tailguard.file.offset", 7i64);
        assert_eq!(line, by_hand);
        assert_eq!(line.len(), 3);
        assert_eq!(line.get("log.file.name"), Some(&Value::from("a.log")));

        // Changing or removing a shared key changes this event only, in place.
        let mut other = line.clone();
        other.insert("log.file.path", "/elsewhere");
        assert_eq!(
            listed(&other),
            [
                ("log.file.path".into(), "/elsewhere".into()),
                ("log.file.name".into(), "a.log".into()),
                ("tailguard.file.offset".into(), "7".into()),
            ]
        );
        assert_eq!(other.remove("log.file.name"), Some(Value::from("a.log")));
        assert_eq!(other.get("log.file.name"), None);
        assert_eq!(other.len(), 2);
        assert_eq!(line, by_hand, "the other events keep the shared list");
        assert_eq!(shared.len(), 2);
    }

    #[test]
    fn insert_replaces_existing_key_in_place() {
        let mut attrs = Attributes::new();
        attrs.insert("a", 1i64);
        attrs.insert("b", "x");
        attrs.insert("a", 2i64);
        let keys: Vec<_> = attrs.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(attrs.get("a"), Some(&Value::Int(2)));
    }

    #[test]
    fn traceparent_round_trips_and_rejects_invalid_values() {
        let ids = TraceIds::new_root();
        assert_eq!(TraceIds::from_traceparent(&ids.traceparent()), Some(ids));
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceIds::from_traceparent(valid).unwrap();
        assert_eq!(hex(&parsed.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        for invalid in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            assert_eq!(TraceIds::from_traceparent(invalid), None, "{invalid}");
        }
        assert_eq!(ids.child().trace_id, ids.trace_id);
        assert_ne!(ids.child().span_id, ids.span_id);
    }

    #[test]
    fn clone_shares_acknowledgement_until_all_settle() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut event = Event::new(&b"line"[..], Origin::default(), Arc::default());
        event.ack = Some(AckRef::new(move |s| tx.send(s).unwrap()));
        let mut copy = event.clone();
        event.settle(DeliveryStatus::Delivered);
        assert!(rx.try_recv().is_err());
        copy.settle(DeliveryStatus::Delivered);
        assert_eq!(rx.recv().unwrap(), DeliveryStatus::Delivered);
    }
}
