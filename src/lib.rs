//! tailguard: a host agent for CI/CD build runners.
//!
//! It tails logs and CI job output, tags every event with the identity behind
//! it, detects and redacts secrets, and forwards events to a collector. The
//! code follows the data flow:
//!
//! - [`sources`] read events (files, standard input, CI jobs),
//! - [`transforms`] change or drop them,
//! - [`sinks`] deliver them and acknowledge delivery,
//!
//! wired together by [`topology`] from the [`config`]. An [`event::Event`]
//! is what travels between them, and [`ack`] carries delivery back to the
//! source.

pub mod ack;
pub mod cli;
pub mod config;
pub mod detect;
pub mod event;
pub mod exec;
pub mod identity;
pub mod logging;
pub mod observe;
pub mod resource;
pub mod respond;
pub mod scan;
pub mod service;
pub mod sinks;
pub mod sources;
pub mod topology;
pub mod transforms;
