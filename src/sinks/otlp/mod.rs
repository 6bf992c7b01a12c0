//! `type = "otlp"`: events to an OpenTelemetry collector over OTLP/gRPC or
//! OTLP/HTTP (protobuf).
//!
//! Events are batched (by count, bytes and age), encoded once per batch and
//! sent with up to `concurrency` requests in flight. Retryable failures are
//! retried with exponential backoff and jitter, without limit, honouring the
//! server's requested delay, rotating through the failover endpoints. While
//! every slot waits on retries the sink reads no more input, so the pressure
//! reaches the sources, which stop reading; nothing is dropped. Events are
//! acknowledged only when the collector accepted their batch, so a file
//! source's checkpoint never passes a line the collector has not taken.
//! Permanent failures (the collector refuses the payload) are logged with
//! the reason and record count, never the payload, and acknowledged as
//! rejected.
//!
//! With `buffer = { type = "disk", ... }` batches are encoded and appended to
//! a durable queue (see [`crate::sinks::disk_buffer`]) and acknowledged as
//! soon as they are on disk; a separate exporter streams them to the
//! collector. At shutdown the exporter keeps sending while the collector
//! accepts, and leaves the rest on disk for the next start at the first
//! failure, so a stop never waits on an absent collector.

pub mod config;
pub mod encode;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::ack::{AckRef, DeliveryStatus};
use crate::event::Event;
use crate::sinks::disk_buffer::{self, DiskBufferConfig};
use crate::topology::component::{ComponentTask, SinkContext};
use config::{BufferConfig, OtlpSinkConfig, Settings};
use transport::{Client, Compressor, Failure, Payload, Prepared};

pub use config::OtlpSinkConfig as Config;

pub fn build(config: &OtlpSinkConfig, cx: SinkContext) -> anyhow::Result<ComponentTask> {
    let settings = config
        .resolve(&crate::config::process_env)
        .map_err(anyhow::Error::msg)?;
    let client = Client::new(&settings)?;
    info!(
        sink = %cx.name,
        protocol = ?settings.protocol,
        endpoints = ?settings.logs_endpoints,
        compression = ?settings.compression,
        "exporting logs over OTLP"
    );
    let (settings, client) = (Arc::new(settings), Arc::new(client));
    Ok(match settings.buffer.clone() {
        BufferConfig::Memory => Box::pin(run(settings, client, cx)),
        BufferConfig::Disk(buffer) => Box::pin(run_with_disk_buffer(settings, client, cx, buffer)),
    })
}

/// Events waiting for a request, kept in the batches they arrived in: a
/// request takes whole batches where it can, so most events are never moved
/// (an event is about 250 bytes; copying each into a queue and out again
/// cost about 5% of the pipeline's CPU in `bench/ab`).
struct Pending {
    /// Oldest first; the first may have lost its head to the last request.
    batches: std::collections::VecDeque<Vec<Event>>,
    len: usize,
    bytes: usize,
    since: Option<Instant>,
}

impl Pending {
    fn new() -> Self {
        Self {
            batches: std::collections::VecDeque::new(),
            len: 0,
            bytes: 0,
            since: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        self.len += events.len();
        self.bytes += events.iter().map(|e| e.body.len()).sum::<usize>();
        self.batches.push_back(events);
        self.since.get_or_insert_with(Instant::now);
    }

    /// When the pending events must go: now if a batch is full, else when
    /// the oldest has waited `batch.timeout`.
    fn flush_at(&self, batch: &config::BatchConfig) -> Option<Instant> {
        if self.is_full(batch) {
            Some(Instant::now())
        } else {
            self.since.map(|t| t + batch.timeout.0)
        }
    }

    fn is_full(&self, batch: &config::BatchConfig) -> bool {
        self.len >= batch.max_events || self.bytes >= batch.max_bytes
    }

    /// Takes the oldest events, up to the batch limits (at least one), as
    /// the batches they arrived in.
    fn take_batch(&mut self, batch: &config::BatchConfig) -> Vec<Vec<Event>> {
        let mut taken = Vec::new();
        let (mut count, mut bytes) = (0, 0);
        while let Some(front) = self.batches.front_mut() {
            let mut fits = 0;
            for event in front.iter() {
                let size = event.body.len();
                if count + fits > 0
                    && (count + fits >= batch.max_events || bytes + size > batch.max_bytes)
                {
                    break;
                }
                bytes += size;
                fits += 1;
            }
            count += fits;
            if fits == front.len() {
                taken.extend(self.batches.pop_front());
                continue;
            }
            if fits > 0 {
                let rest = front.split_off(fits);
                taken.push(std::mem::replace(front, rest));
            }
            break;
        }
        self.len -= count;
        self.bytes -= bytes;
        self.since = if self.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
        taken
    }
}

async fn run(
    settings: Arc<Settings>,
    client: Arc<Client>,
    mut cx: SinkContext,
) -> anyhow::Result<()> {
    let mut pending = Pending::new();
    let mut encoding = Encoding::default();
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let batch = &settings.batch;
    let mut input_open = true;
    loop {
        let slot_free = in_flight.len() < settings.concurrency;
        let flush_at = pending.flush_at(batch);
        tokio::select! {
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Err(e) = joined {
                    anyhow::bail!("an export task failed: {e}");
                }
            }
            // Input is taken only while no full batch waits: a source batch
            // larger than the sink's would otherwise add more than each export
            // takes away, and a collector slower than the source would grow
            // `pending` without bound instead of pushing back.
            received = cx.input.recv(), if slot_free && input_open && !pending.is_full(batch) => match received {
                Some(events) => {
                    pending.push(events);
                    while pending.is_full(batch) && in_flight.len() < settings.concurrency {
                        send(&settings, &client, &mut pending, &mut in_flight, &cx.name, &mut encoding);
                    }
                }
                None => input_open = false,
            },
            () = sleep_until(flush_at), if slot_free && flush_at.is_some() => {
                send(&settings, &client, &mut pending, &mut in_flight, &cx.name, &mut encoding);
            }
        }
        if !input_open {
            // Drain: everything left goes out, within the concurrency limit.
            while !pending.is_empty() || !in_flight.is_empty() {
                if !pending.is_empty() && in_flight.len() < settings.concurrency {
                    send(
                        &settings,
                        &client,
                        &mut pending,
                        &mut in_flight,
                        &cx.name,
                        &mut encoding,
                    );
                } else if let Some(Err(e)) = in_flight.join_next().await {
                    anyhow::bail!("an export task failed: {e}");
                }
            }
            return Ok(());
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What the sink keeps from one request to the next.
#[derive(Default)]
struct Encoding {
    logs: encode::LogsEncoder,
    compressor: Compressor,
}

/// Encodes the pending events and starts exporting them. The events
/// themselves are released here; only their acknowledgements wait for the
/// collector's answer.
fn send(
    settings: &Arc<Settings>,
    client: &Arc<Client>,
    pending: &mut Pending,
    in_flight: &mut JoinSet<()>,
    sink: &Arc<str>,
    encoding: &mut Encoding,
) {
    let events = pending.take_batch(&settings.batch);
    for (payload, acks, records) in split_by_signal(events, &mut encoding.logs) {
        let prepared = client.prepare(payload, records, &mut encoding.compressor);
        let (settings, client, sink) = (Arc::clone(settings), Arc::clone(client), Arc::clone(sink));
        in_flight.spawn(async move {
            let status = export_until_settled(&settings, &client, &prepared, &sink, None)
                .await
                .unwrap_or(DeliveryStatus::Errored);
            crate::event::count_settled(&format!("sinks.{sink}"), prepared.records, status);
            for ack in acks {
                ack.settle(status);
            }
        });
    }
}

/// Encodes a batch (the pieces `Pending::take_batch` took) into one request
/// per signal present (logs, spans), each with the acknowledgements of its
/// events. The events themselves are released here; only their
/// acknowledgements wait for the collector.
fn split_by_signal(
    mut batches: Vec<Vec<Event>>,
    encoder: &mut encode::LogsEncoder,
) -> Vec<(Payload, Vec<AckRef>, usize)> {
    let events = || batches.iter().flatten();
    let spans = events().filter(|e| e.as_span().is_some()).count();
    let logs = events().count() - spans;
    let mut out = Vec::with_capacity(2);
    if logs > 0 {
        let protobuf = encoder.encode(events());
        let acks = batches
            .iter_mut()
            .flatten()
            .filter(|e| e.as_span().is_none())
            .filter_map(|e| e.ack.take())
            .collect();
        out.push((Payload::logs(protobuf), acks, logs));
    }
    if spans > 0 {
        let request = encode::traces_request(batches.iter().flatten());
        let acks = batches
            .iter_mut()
            .flatten()
            .filter_map(|e| e.ack.take())
            .collect();
        out.push((Payload::traces(&request), acks, spans));
    }
    out
}

/// The disk-buffered variant of [`run`]: intake writes to disk and
/// acknowledges; [`export_from_disk`] sends.
async fn run_with_disk_buffer(
    settings: Arc<Settings>,
    client: Arc<Client>,
    mut cx: SinkContext,
    buffer: DiskBufferConfig,
) -> anyhow::Result<()> {
    let dir = cx.globals.data_dir.join("buffers").join(&*cx.name);
    let (mut writer, reader) = disk_buffer::open(&dir, &buffer)
        .with_context(|| format!("cannot open the disk buffer in {}", dir.display()))?;
    let stop_retrying = CancellationToken::new();
    let mut exporter = tokio::spawn(export_from_disk(
        Arc::clone(&settings),
        client,
        reader,
        stop_retrying.clone(),
        Arc::clone(&cx.name),
    ));
    let batch = &settings.batch;
    let mut pending = Pending::new();
    let mut encoder = encode::LogsEncoder::default();
    let label = format!("sinks.{}", cx.name);
    let buffer_gauge = crate::observe::metrics::metrics()
        .buffer_bytes
        .get_or_create(&crate::observe::metrics::component(&format!(
            "sinks.{}",
            cx.name
        )))
        .clone();
    loop {
        let flush_at = pending.flush_at(batch);
        tokio::select! {
            received = cx.input.recv() => match received {
                Some(events) => pending.push(events),
                None => break,
            },
            () = sleep_until(flush_at), if flush_at.is_some() => {}
            exported = &mut exporter => {
                exported.context("the exporter stopped")??;
                anyhow::bail!("the exporter stopped unexpectedly");
            }
        }
        // Store full batches at once; a partial batch once it is due.
        while pending.is_full(batch) || pending.flush_at(batch).is_some_and(|t| t <= Instant::now())
        {
            store(&mut writer, pending.take_batch(batch), &label, &mut encoder).await?;
            buffer_gauge.set(i64::try_from(writer.stats().bytes_on_disk).unwrap_or(i64::MAX));
        }
    }
    while !pending.is_empty() {
        store(&mut writer, pending.take_batch(batch), &label, &mut encoder).await?;
    }
    let left = writer.stats().bytes_on_disk;
    drop(writer);
    stop_retrying.cancel();
    exporter.await.context("the exporter stopped")??;
    debug!(sink = %cx.name, bytes_on_disk = left, "disk buffer closed");
    Ok(())
}

/// Encodes a batch, appends it to the disk buffer and acknowledges it.
async fn store(
    writer: &mut disk_buffer::Writer,
    events: Vec<Vec<Event>>,
    sink: &str,
    encoder: &mut encode::LogsEncoder,
) -> anyhow::Result<()> {
    for (payload, acks, records) in split_by_signal(events, encoder) {
        let count = u32::try_from(records).unwrap_or(u32::MAX);
        let stored = writer.append(&payload.to_tagged_bytes(), count).await;
        let status = match stored {
            Ok(()) => DeliveryStatus::Delivered,
            Err(_) => DeliveryStatus::Errored,
        };
        // With a disk buffer, "delivered" means stored durably.
        crate::event::count_settled(sink, records, status);
        for ack in acks {
            ack.settle(status);
        }
        stored.context("cannot write to the disk buffer")?;
    }
    Ok(())
}

/// Streams records from the disk buffer to the collector, marking each
/// delivered once accepted. Ends when the buffer is closed and drained, or,
/// once `stop_retrying` is cancelled, at the first export that would retry.
async fn export_from_disk(
    settings: Arc<Settings>,
    client: Arc<Client>,
    mut reader: disk_buffer::Reader,
    stop_retrying: CancellationToken,
    sink: Arc<str>,
) -> anyhow::Result<()> {
    let mut in_flight: JoinSet<(u64, Option<DeliveryStatus>)> = JoinSet::new();
    let mut compressor = Compressor::default();
    let mut reading = true;
    loop {
        tokio::select! {
            entry = reader.next(), if reading && in_flight.len() < settings.concurrency => {
                let Some(entry) = entry? else {
                    reading = false;
                    continue;
                };
                let payload = match Payload::from_tagged_bytes(&entry.payload) {
                    Ok(payload) => payload,
                    Err(e) => {
                        error!(sink = %sink, error = %e, "undecodable record in the disk buffer; skipping it");
                        reader.delivered(entry.id)?;
                        continue;
                    }
                };
                let prepared = client.prepare(payload, entry.count as usize, &mut compressor);
                let (settings, client, sink, stop) =
                    (Arc::clone(&settings), Arc::clone(&client), Arc::clone(&sink), stop_retrying.clone());
                in_flight.spawn(async move {
                    let status = export_until_settled(&settings, &client, &prepared, &sink, Some(&stop)).await;
                    (entry.id, status)
                });
            }
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                match joined.context("an export task failed")? {
                    (id, Some(_)) => reader.delivered(id)?,
                    (_, None) => reading = false,
                }
            }
            else => break,
        }
    }
    let left = reader.stats().bytes_on_disk;
    if left > disk_buffer::EMPTY_SIZE {
        info!(sink = %sink, bytes = left, "events left in the disk buffer will be sent at the next start");
    }
    Ok(())
}

/// Retries a request until it is accepted or permanently refused. With a
/// `stop` token that is cancelled, gives up at the next retry and returns
/// `None` (the caller keeps the data for later).
async fn export_until_settled(
    settings: &Settings,
    client: &Client,
    prepared: &Prepared,
    sink: &str,
    stop: Option<&CancellationToken>,
) -> Option<DeliveryStatus> {
    let endpoints = settings.logs_endpoints.len();
    let mut endpoint = 0;
    let mut attempt: u32 = 0;
    let label = format!("sinks.{sink}");
    let m = crate::observe::metrics::metrics();
    let signal = match prepared.signal {
        config::Signal::Logs => "logs",
        config::Signal::Traces => "traces",
    };
    let count = |outcome: &str| {
        m.requests
            .get_or_create(&crate::observe::metrics::RequestLabels {
                component: label.clone(),
                signal: signal.into(),
                outcome: outcome.into(),
            })
            .inc();
    };
    loop {
        match client.export(settings, endpoint, prepared).await {
            Ok(accepted) => {
                count("accepted");
                crate::observe::health::recover(&label);
                if accepted.rejected_records > 0 {
                    m.dropped
                        .get_or_create(&crate::observe::metrics::ReasonLabels {
                            component: label.clone(),
                            reason: "partial_success_rejected".into(),
                        })
                        .inc_by(u64::try_from(accepted.rejected_records).unwrap_or(0));
                }
                if attempt > 0 {
                    info!(
                        sink,
                        attempts = attempt + 1,
                        "export succeeded after retrying"
                    );
                }
                if accepted.rejected_records > 0 {
                    warn!(
                        sink,
                        rejected = accepted.rejected_records,
                        reason = %accepted.message,
                        "collector rejected part of a batch; those records are not retried"
                    );
                }
                debug!(sink, records = prepared.records, "exported");
                return Some(DeliveryStatus::Delivered);
            }
            Err(Failure::Permanent { reason }) => {
                count("rejected");
                m.dropped
                    .get_or_create(&crate::observe::metrics::ReasonLabels {
                        component: label.clone(),
                        reason: "rejected_by_collector".into(),
                    })
                    .inc_by(prepared.records as u64);
                error!(
                    sink,
                    records = prepared.records,
                    %reason,
                    "collector refused a batch permanently; dropping it"
                );
                return Some(DeliveryStatus::Rejected);
            }
            Err(Failure::Retryable { reason, delay }) => {
                count("retryable");
                m.retries
                    .get_or_create(&crate::observe::metrics::component(&label))
                    .inc();
                crate::observe::health::degrade(
                    &label,
                    format!("collector not accepting: {reason}"),
                );
                if stop.is_some_and(CancellationToken::is_cancelled) {
                    return None;
                }
                let wait = delay.unwrap_or_else(|| backoff(settings, attempt));
                // One line for the first failure, then one every ten, so a
                // long outage does not flood the journal.
                if attempt.is_multiple_of(10) {
                    warn!(
                        sink,
                        attempt = attempt + 1,
                        retry_in = ?wait,
                        %reason,
                        "export failed; will retry"
                    );
                }
                match stop {
                    Some(stop) => tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = stop.cancelled() => return None,
                    },
                    None => tokio::time::sleep(wait).await,
                }
                attempt = attempt.saturating_add(1);
                endpoint = (endpoint + 1) % endpoints;
            }
        }
    }
}

/// Exponential backoff from `initial_backoff`, capped at `max_backoff`, with
/// ±50% jitter so a fleet of agents does not retry in lockstep.
fn backoff(settings: &Settings, attempt: u32) -> Duration {
    let initial = settings.retry.initial_backoff.0;
    let cap = settings.retry.max_backoff.0;
    let exponential = initial.saturating_mul(2u32.saturating_pow(attempt.min(20)));
    let base = exponential.min(cap);
    base.mul_f64(rand::random_range(0.5..1.5)).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_cut_at_count_and_bytes() {
        let batch = config::BatchConfig {
            max_events: 3,
            max_bytes: 10,
            ..config::BatchConfig::default()
        };
        let event = |body: &str| {
            Event::new(
                body.to_owned(),
                crate::event::Origin::default(),
                Default::default(),
            )
        };
        let mut pending = Pending::new();
        // Arriving in batches of 2, 4 and 1 events.
        pending.push(vec![event("aaaa"), event("bbbb")]);
        pending.push(vec![event("cc"), event("d"), event("e"), event("f")]);
        pending.push(vec![event("0123456789abc")]);
        let taken: Vec<Vec<String>> = std::iter::from_fn(|| {
            let taken = pending.take_batch(&batch);
            let bodies = taken.iter().flatten();
            let bodies = bodies.map(|e| String::from_utf8_lossy(&e.body).into_owned());
            (!taken.is_empty()).then(|| bodies.collect())
        })
        .collect();
        // 4+4+2 bytes fill the 10-byte limit exactly; then 3 events hit the
        // count limit; an event larger than the byte limit still goes, alone.
        assert_eq!(
            taken,
            [
                vec!["aaaa", "bbbb", "cc"],
                vec!["d", "e", "f"],
                vec!["0123456789abc"]
            ]
        );
        assert_eq!((pending.len, pending.bytes), (0, 0));
        assert!(pending.since.is_none());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let settings = OtlpSinkConfig {
            ..toml::from_str("retry = { initial_backoff = \"100ms\", max_backoff = \"2s\" }")
                .unwrap()
        }
        .resolve(&|_| None)
        .unwrap();
        let first = backoff(&settings, 0);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(150));
        for attempt in 0..40 {
            assert!(backoff(&settings, attempt) <= Duration::from_secs(2));
        }
        assert!(backoff(&settings, 10) >= Duration::from_secs(1));
    }
}
