//! The running graph of components: checking it, wiring it, and stopping it.
//!
//! Events flow `sources -> transforms -> sinks` over bounded channels. Each
//! component is one tokio task. Shutdown is a cascade: sources are told to
//! stop, each finished component drops its senders, and a downstream
//! component's input ends only once every upstream component has finished
//! and the channel is drained. So a graceful stop delivers everything that
//! was read, and a timeout bounds how long that may take.

pub mod component;
pub mod graph;
pub mod output;
mod runtime;

pub use runtime::{Control, RunError, function_transform, run};
