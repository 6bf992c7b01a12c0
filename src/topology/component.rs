//! What a running component is handed, and what it hands back.
//!
//! Every component (source, transform or sink) is built into one future, a
//! [`ComponentTask`], that the topology spawns as a tokio task. Sources learn
//! to stop from a cancellation token; transforms and sinks stop when their
//! input channel closes, which happens once every upstream component has
//! finished. That cascade is what lets a shutdown drain in-flight events
//! instead of dropping them.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::event::{Context, EventBatch};
use crate::topology::output::Output;

/// A failure that stops a component. The topology reports it with the
/// component's name and makes the agent exit non-zero.
pub type ComponentError = anyhow::Error;

/// The future a component runs as.
pub type ComponentTask = Pin<Box<dyn Future<Output = Result<(), ComponentError>> + Send>>;

/// The receiving end of a component's input: every upstream component holds
/// a clone of the matching sender.
pub type Input = mpsc::Receiver<EventBatch>;

/// Settings every component may need, taken from the global configuration.
#[derive(Clone, Debug, Default)]
pub struct Globals {
    /// Where components keep state (checkpoints, queues, journals).
    pub data_dir: PathBuf,
    /// The non-human identity inventory (`[identities.ID]`).
    pub inventory: Arc<crate::identity::inventory::Inventory>,
    /// The response policies (`[policies.NAME]`), in name order.
    pub policies: Arc<Vec<(String, crate::transforms::policy::config::PolicyConfig)>>,
}

/// Handed to a source when it is built.
pub struct SourceContext {
    /// The component's name (`NAME` in `[sources.NAME]`).
    pub name: Arc<str>,
    pub globals: Globals,
    /// Resource and identity context to attach to events.
    pub context: Arc<Context>,
    /// Cancelled when the agent begins shutting down. A source must then stop
    /// reading, send what it already read, and return.
    pub shutdown: CancellationToken,
    pub out: Output,
}

/// Handed to a transform when it is built.
pub struct TransformContext {
    pub name: Arc<str>,
    pub globals: Globals,
    pub input: Input,
    pub out: Output,
}

/// Handed to a sink when it is built.
pub struct SinkContext {
    pub name: Arc<str>,
    pub globals: Globals,
    /// Ends (returns `None`) once every upstream component has finished and
    /// the channel is drained; the sink then flushes and returns.
    pub input: Input,
}
