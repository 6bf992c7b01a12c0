//! tailguard's own log, on standard error.
//!
//! Human-readable on a terminal, JSON lines otherwise (systemd's journal,
//! log shippers). Nothing tailguard logs may contain a line it read: lines
//! can hold secrets. Components log paths, counts, offsets and fingerprints.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The level used when neither the command line, `TAILGUARD_LOG` nor the
/// configuration sets one.
pub const DEFAULT_LEVEL: &str = "info";

/// Checks a level or filter directive such as `debug` or
/// `info,tailguard::sources=debug`.
pub fn check_level(level: &str) -> Result<(), String> {
    EnvFilter::try_new(level).map(|_| ()).map_err(|e| {
        format!("invalid level `{level}`: {e} (use error, warn, info, debug or trace)")
    })
}

/// Installs the global subscriber. Call once, after configuration is known.
pub fn init(level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new(DEFAULT_LEVEL));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = if std::io::stderr().is_terminal() {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).try_init()
    };
    // A second call (tests running several commands in one process) keeps
    // the first subscriber, which is what we want.
    let _ = result;
}
