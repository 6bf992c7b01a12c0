//! Fan-out from one component to every component that lists it as an input.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::event::EventBatch;

/// A component's output. Sending waits while any downstream channel is full,
/// so a slow sink slows its sources instead of growing a queue: every channel
/// in the topology is bounded.
#[derive(Clone, Default)]
pub struct Output {
    downstream: Vec<(Arc<str>, mpsc::Sender<EventBatch>)>,
}

/// Every downstream component has stopped; nothing can receive events any
/// more. The topology reports why those components stopped.
#[derive(Debug, thiserror::Error)]
#[error("no downstream component is running (last tried: {0})")]
pub struct OutputClosed(pub Arc<str>);

impl Output {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn connect(&mut self, name: Arc<str>, sender: mpsc::Sender<EventBatch>) {
        self.downstream.push((name, sender));
    }

    /// Number of components this output feeds.
    pub fn fan_out(&self) -> usize {
        self.downstream.len()
    }

    /// Sends a batch to every downstream component, cloning it for all but
    /// the last. Empty batches are not sent.
    pub async fn send(&mut self, batch: EventBatch) -> Result<(), OutputClosed> {
        if batch.is_empty() {
            return Ok(());
        }
        let Some(((last_name, last), rest)) = self.downstream.split_last() else {
            // Validation rejects a component nothing reads, so this only
            // happens in tests that build a bare output; settle and move on.
            let mut batch = batch;
            crate::event::settle_all(&mut batch, crate::ack::DeliveryStatus::Delivered);
            return Ok(());
        };
        for (name, sender) in rest {
            sender
                .send(batch.clone())
                .await
                .map_err(|_| OutputClosed(Arc::clone(name)))?;
        }
        last.send(batch)
            .await
            .map_err(|_| OutputClosed(Arc::clone(last_name)))
    }
}
