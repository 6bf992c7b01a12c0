//! tailguard watching itself: Prometheus metrics, health, and the local
//! HTTP listener that serves them.

pub mod api;
pub mod health;
pub mod metrics;
