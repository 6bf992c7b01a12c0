//! Talking to systemd's service manager: readiness, shutdown and the
//! watchdog (`sd_notify(3)`), for the packaged `Type=notify` unit.
//!
//! Every function here is a no-op unless systemd (or a test) started the
//! agent with `NOTIFY_SOCKET` set, so the same binary runs unchanged from a
//! shell, a container or CI. A notification that cannot be sent is logged
//! and otherwise ignored: the service manager, not the agent, decides what
//! a missing notification means (a start timeout, a watchdog restart).

use std::time::Duration;

use sd_notify::NotifyState;
use tracing::{debug, warn};

/// Whether a service manager asked for notifications.
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|socket| !socket.is_empty())
}

fn send(states: &[NotifyState<'_>]) {
    if !enabled() {
        return;
    }
    match sd_notify::notify(states) {
        Ok(()) => debug!(states = %describe(states), "notified the service manager"),
        Err(e) => warn!(
            states = %describe(states),
            "cannot notify the service manager: {e}"
        ),
    }
}

fn describe(states: &[NotifyState<'_>]) -> String {
    states
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Tells the service manager the agent is up (`READY=1`): the configuration
/// was accepted and the topology is starting. `systemctl start` returns
/// only after this.
pub fn notify_ready() {
    send(&[NotifyState::Ready, NotifyState::Status("running")]);
}

/// Tells the service manager the agent is shutting down (`STOPPING=1`),
/// e.g. when every source ended on its own rather than on `systemctl stop`.
pub fn notify_stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Tells the service manager a configuration reload has begun
/// (`RELOADING=1` with the `MONOTONIC_USEC` timestamp that
/// `Type=notify-reload` requires). Send [`notify_ready`] when it is done.
pub fn notify_reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading"),
        ]),
        Err(_) => send(&[NotifyState::Reloading, NotifyState::Status("reloading")]),
    }
}

/// Sets the free-form status line `systemctl status` shows.
pub fn notify_status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// How often to ping the watchdog: half the interval systemd asked for
/// (`WatchdogSec=`), as `sd_watchdog_enabled(3)` recommends, and never so
/// often that a tiny interval turns into a busy loop.
pub fn ping_period(watchdog: Duration) -> Duration {
    (watchdog / 2).max(Duration::from_millis(1))
}

/// The ping period when systemd enabled the watchdog for this process
/// (`WATCHDOG_USEC` set, and `WATCHDOG_PID` unset or this pid).
pub fn watchdog_period() -> Option<Duration> {
    if !enabled() {
        return None;
    }
    sd_notify::watchdog_enabled()
        .filter(|interval| !interval.is_zero())
        .map(ping_period)
}

/// Spawns a task on the current tokio runtime that sends `WATCHDOG=1` at
/// half the watchdog interval, for as long as the runtime runs. A wedged
/// runtime stops the pings, and systemd then restarts the agent.
///
/// Returns `None`, spawning nothing, when the watchdog is not enabled.
///
/// # Panics
///
/// When called outside a tokio runtime (use `Runtime::enter`).
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let period = watchdog_period()?;
    debug!(period = ?period, "pinging the systemd watchdog");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_at_half_the_interval() {
        assert_eq!(
            ping_period(Duration::from_secs(30)),
            Duration::from_secs(15)
        );
        assert_eq!(
            ping_period(Duration::from_micros(200_000)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn a_tiny_interval_does_not_spin() {
        assert_eq!(
            ping_period(Duration::from_micros(1)),
            Duration::from_millis(1)
        );
    }

    #[test]
    fn states_are_described_as_sent() {
        assert_eq!(
            describe(&[NotifyState::Ready, NotifyState::Status("running")]),
            "READY=1 STATUS=running"
        );
        assert_eq!(describe(&[NotifyState::Watchdog]), "WATCHDOG=1");
    }
}
