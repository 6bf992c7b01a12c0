//! Whether the agent is doing its job: `/health` says `ready`, or
//! `degraded` with one reason per component that has a problem, or
//! `starting` before the topology runs.
//!
//! Components report a problem when it starts (the collector stopped
//! answering, the disk buffer filled) and clear it when it ends. Reasons
//! never contain event content.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static STARTED: AtomicBool = AtomicBool::new(false);
static PROBLEMS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

fn problems() -> std::sync::MutexGuard<'static, BTreeMap<String, String>> {
    PROBLEMS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The topology is running.
pub fn set_started(started: bool) {
    STARTED.store(started, Ordering::Release);
}

/// `component` has a problem, described by `reason`.
pub fn degrade(component: &str, reason: impl Into<String>) {
    problems().insert(component.to_string(), reason.into());
}

/// `component`'s problem is over.
pub fn recover(component: &str) {
    problems().remove(component);
}

/// The health report.
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub status: &'static str,
    pub reasons: BTreeMap<String, String>,
}

pub fn report() -> Report {
    let reasons = problems().clone();
    let status = if !STARTED.load(Ordering::Acquire) {
        "starting"
    } else if reasons.is_empty() {
        "ready"
    } else {
        "degraded"
    };
    Report { status, reasons }
}
