//! End-to-end acknowledgements: how a sink tells a source that events are safe.
//!
//! A source that must not lose data (the file source) attaches an [`AckRef`] to
//! every event of a read batch. The reference is cloned when fan-out copies the
//! event to several sinks, and each sink settles its copy once the event is
//! delivered or durably stored. When the last reference of a batch goes away,
//! the batch's callback runs exactly once with the *worst* status any copy
//! reported, so a checkpoint only advances when every sink succeeded.
//!
//! A reference dropped without being settled (a transform that panicked, a
//! sink that was aborted at shutdown) counts as [`DeliveryStatus::Errored`]:
//! forgetting to acknowledge must never look like success.

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

/// Outcome of delivering an event, ordered from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeliveryStatus {
    /// Accepted by the destination or written to a durable queue.
    Delivered = 0,
    /// Failed for a reason that may go away; the source should send it again.
    Errored = 1,
    /// The destination refused the data permanently (bad payload); sending
    /// again would not help.
    Rejected = 2,
}

impl DeliveryStatus {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Delivered,
            1 => Self::Errored,
            _ => Self::Rejected,
        }
    }
}

type Callback = Box<dyn FnOnce(DeliveryStatus) + Send>;

struct Shared {
    worst: AtomicU8,
    callback: Mutex<Option<Callback>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let status = DeliveryStatus::from_u8(self.worst.load(Ordering::Acquire));
        let callback = self
            .callback
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(callback) = callback {
            callback(status);
        }
    }
}

/// One holder's share of a batch acknowledgement. See the module docs.
pub struct AckRef {
    shared: Arc<Shared>,
    settled: bool,
}

impl AckRef {
    /// Creates the first reference of a new batch. `on_complete` runs once,
    /// on whichever thread drops the last reference.
    pub fn new(on_complete: impl FnOnce(DeliveryStatus) + Send + 'static) -> Self {
        Self {
            shared: Arc::new(Shared {
                worst: AtomicU8::new(DeliveryStatus::Delivered as u8),
                callback: Mutex::new(Some(Box::new(on_complete))),
            }),
            settled: false,
        }
    }

    /// Records this holder's outcome and gives up the reference.
    pub fn settle(mut self, status: DeliveryStatus) {
        self.shared.worst.fetch_max(status as u8, Ordering::AcqRel);
        self.settled = true;
    }
}

impl Clone for AckRef {
    /// The clone is a new, unsettled share: fan-out gives each sink its own.
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            settled: false,
        }
    }
}

impl Drop for AckRef {
    fn drop(&mut self) {
        if !self.settled {
            self.shared
                .worst
                .fetch_max(DeliveryStatus::Errored as u8, Ordering::AcqRel);
        }
    }
}

impl fmt::Debug for AckRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckRef")
            .field("settled", &self.settled)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn tracked() -> (AckRef, mpsc::Receiver<DeliveryStatus>) {
        let (tx, rx) = mpsc::channel();
        let ack = AckRef::new(move |status| tx.send(status).unwrap());
        (ack, rx)
    }

    #[test]
    fn completes_once_when_every_clone_settles() {
        let (ack, rx) = tracked();
        let copy = ack.clone();
        ack.settle(DeliveryStatus::Delivered);
        assert!(rx.try_recv().is_err(), "one copy is still in flight");
        copy.settle(DeliveryStatus::Delivered);
        assert_eq!(rx.try_recv().unwrap(), DeliveryStatus::Delivered);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn worst_status_wins() {
        let (ack, rx) = tracked();
        let copy = ack.clone();
        copy.settle(DeliveryStatus::Rejected);
        ack.settle(DeliveryStatus::Delivered);
        assert_eq!(rx.recv().unwrap(), DeliveryStatus::Rejected);
    }

    #[test]
    fn dropping_without_settling_is_an_error() {
        let (ack, rx) = tracked();
        drop(ack);
        assert_eq!(rx.recv().unwrap(), DeliveryStatus::Errored);
    }
}
