//! Fan-out from one component to every component that lists it as an input.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::event::EventBatch;

type Downstream = Vec<(Arc<str>, mpsc::Sender<EventBatch>)>;

type Counter = prometheus_client::metrics::counter::Counter;

/// A downstream channel and the counter of events sent into it, looked up
/// once when the output is wired, not on every batch.
#[derive(Clone)]
struct Link {
    name: Arc<str>,
    sender: mpsc::Sender<EventBatch>,
    received: Option<Counter>,
}

/// The owning component's counters.
#[derive(Clone)]
struct Counted {
    events: Counter,
    bytes: Counter,
}

/// A component's output. Sending waits while any downstream channel is full,
/// so a slow sink slows its sources instead of growing a queue: every channel
/// in the topology is bounded.
///
/// The list of downstream channels is shared by every clone and can be
/// replaced while the component runs ([`Output::rewire`]): that is how a
/// configuration reload re-points a running source at new transforms and
/// sinks without stopping it. Replacing the list drops the old senders at
/// once, even if the component is idle, so a removed sink's input closes and
/// it can drain and stop.
#[derive(Clone, Default)]
pub struct Output {
    downstream: Arc<Mutex<Vec<Link>>>,
    /// The owning component's counters, when the output is named.
    counted: Option<Counted>,
}

/// Every downstream component has stopped; nothing can receive events any
/// more. The topology reports why those components stopped.
#[derive(Debug, thiserror::Error)]
#[error("no downstream component is running (last tried: {0})")]
pub struct OutputClosed(pub Arc<str>);

impl Output {
    /// An output nobody counts (tests build outputs by hand).
    #[cfg(test)]
    #[allow(dead_code)]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// An output whose traffic is counted under `owner` (`sources.app`).
    pub(crate) fn named(owner: &str) -> Self {
        let m = crate::observe::metrics::metrics();
        let labels = crate::observe::metrics::component(owner);
        Self {
            downstream: Arc::default(),
            counted: Some(Counted {
                events: m.events_out.get_or_create(&labels).clone(),
                bytes: m.bytes_out.get_or_create(&labels).clone(),
            }),
        }
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Link>> {
        self.downstream.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn link(&self, name: Arc<str>, sender: mpsc::Sender<EventBatch>) -> Link {
        let received = self.counted.as_ref().map(|_| {
            crate::observe::metrics::metrics()
                .events_in
                .get_or_create(&crate::observe::metrics::component(&name))
                .clone()
        });
        Link {
            name,
            sender,
            received,
        }
    }

    /// Adds one downstream channel (tests build outputs by hand).
    #[cfg(test)]
    #[allow(dead_code)]
    pub(crate) fn connect(&mut self, name: Arc<str>, sender: mpsc::Sender<EventBatch>) {
        let link = self.link(name, sender);
        self.list().push(link);
    }

    /// Replaces the downstream channels; the next batch goes to the new ones.
    pub(crate) fn rewire(&self, downstream: Downstream) {
        let links = downstream
            .into_iter()
            .map(|(name, sender)| self.link(name, sender))
            .collect();
        *self.list() = links;
    }

    /// Number of components this output feeds.
    pub fn fan_out(&self) -> usize {
        self.list().len()
    }

    /// Sends a batch to every downstream component, cloning it for all but
    /// the last. Empty batches are not sent.
    pub async fn send(&mut self, batch: EventBatch) -> Result<(), OutputClosed> {
        if batch.is_empty() {
            return Ok(());
        }
        // Cloning a few senders is cheaper than holding the lock across an
        // await, and lets a reload rewire while this send waits.
        let downstream: Vec<Link> = self.list().clone();
        if let Some(counted) = &self.counted {
            let events = batch.len() as u64;
            let bytes: usize = batch.iter().map(|e| e.body.len()).sum();
            counted.events.inc_by(events);
            counted.bytes.inc_by(bytes as u64);
            for link in downstream.iter() {
                if let Some(received) = &link.received {
                    received.inc_by(events);
                }
            }
        }
        let Some((last, rest)) = downstream.split_last() else {
            // Validation rejects a component nothing reads, so this only
            // happens in tests that build a bare output; settle and move on.
            let mut batch = batch;
            crate::event::settle_all(&mut batch, crate::ack::DeliveryStatus::Delivered);
            return Ok(());
        };
        for link in rest {
            link.sender
                .send(batch.clone())
                .await
                .map_err(|_| OutputClosed(Arc::clone(&link.name)))?;
        }
        last.sender
            .send(batch)
            .await
            .map_err(|_| OutputClosed(Arc::clone(&last.name)))
    }
}
