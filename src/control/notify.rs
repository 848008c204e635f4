//! Telling systemd what state wsgate is in (`Type=notify` / `notify-reload`).
//!
//! Owns: `READY=1` (once every listener is bound), `RELOADING=1` with
//! `MONOTONIC_USEC=` around a reload, `STOPPING=1` when draining starts, `STATUS=`
//! lines, and `WATCHDOG=1` pings at half of `WATCHDOG_USEC`. Every call is a no-op
//! without `NOTIFY_SOCKET`; a failed send is logged, never fatal.
//! Does not own: deciding when those moments are (main.rs, server.rs).

use sd_notify::NotifyState;
use std::time::Duration;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("systemd notification failed: {e}");
    }
}

/// Startup (or a reload) is complete.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload begins; systemd >= 253 requires the monotonic timestamp with it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Shutdown (the drain) begins.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, if it is set for us.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

/// Pings the watchdog forever, every `every`; run it on the runtime so a stalled
/// runtime stops the pings and systemd restarts the service.
pub async fn watchdog(every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        send(&[NotifyState::Watchdog]);
    }
}
