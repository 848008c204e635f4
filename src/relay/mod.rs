//! The relay: one upgraded client stream and one upgraded backend stream, spliced
//! frame by frame until the close handshake (or a failure) ends the session.
//!
//! Owns: the session future (both directions polled by one task, no locks), the
//! close logic (who gets which Close code when a side leaves or misbehaves), and the
//! close deadline. Does not own: frame parsing (frame.rs) or buffering (pump.rs).
//!
//! Close codes wsgate sends itself:
//! - backend left without a Close, or broke the protocol -> client gets 1014;
//! - client left without a Close -> backend gets 1001 (masked);
//! - a side broke the protocol -> that side gets 1002; the client, when blameless, 1014;
//!   the backend, when blameless, 1001.

pub mod frame;
mod pump;

use crate::config::SessionLimits;
use frame::{Extensions, Sender};
use pump::{Pump, PumpEvent};
use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Sleep, sleep};

/// Per-session settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Bytes of buffer per direction.
    pub buffer: usize,
    /// How long closing may take once it has begun.
    pub close_timeout: Duration,
    pub extensions: Extensions,
    /// Message, size and time limits (the route's `[limits]`).
    pub limits: SessionLimits,
}

/// How a session ended, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Both Close frames passed end to end.
    Closed {
        client_code: Option<u16>,
        backend_code: Option<u16>,
    },
    /// The backend left (or failed) without a close handshake; the client got 1014.
    BackendGone,
    /// The client left without a close handshake; the backend got 1001.
    ClientGone,
    ClientViolation(frame::Violation),
    BackendViolation(frame::Violation),
    /// The close handshake did not finish within the close timeout.
    CloseTimeout,
}

/// Runs a session to its end. `client_pre` / `backend_pre` are bytes already read
/// from each side past the HTTP head.
pub async fn run<C, B>(
    mut client: C,
    client_pre: &[u8],
    mut backend: B,
    backend_pre: &[u8],
    cfg: &RelayConfig,
) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut c2b = Pump::new(Sender::Client, cfg.extensions, cfg.buffer, client_pre);
    let mut b2c = Pump::new(Sender::Server, cfg.extensions, cfg.buffer, backend_pre);
    let mut outcome: Option<Outcome> = None;
    let mut deadline: Option<Pin<Box<Sleep>>> = None;

    poll_fn(|cx| {
        loop {
            let mut progressed = false;
            if let Poll::Ready(ev) = c2b.poll(cx, &mut client, &mut backend) {
                progressed = true;
                match ev {
                    PumpEvent::SrcEnded => {
                        // Client EOF: tell the backend unless the client said goodbye itself.
                        let goodbye = c2b
                            .close_seen()
                            .is_none()
                            .then(|| frame::close_frame(1001, "client went away", true));
                        if goodbye.is_some() {
                            outcome.get_or_insert(Outcome::ClientGone);
                        }
                        c2b.close_output(goodbye);
                        b2c.close_output(None);
                    }
                    PumpEvent::DstFailed => backend_gone(&mut c2b, &mut b2c, &mut outcome),
                    PumpEvent::Violation(v) => {
                        outcome.get_or_insert(Outcome::ClientViolation(v));
                        b2c.close_output(Some(frame::close_frame(1002, v.reason(), false)));
                        c2b.close_output(Some(frame::close_frame(
                            1001,
                            "client protocol error",
                            true,
                        )));
                    }
                }
            }
            if let Poll::Ready(ev) = b2c.poll(cx, &mut backend, &mut client) {
                progressed = true;
                match ev {
                    PumpEvent::SrcEnded => {
                        if b2c.close_seen().is_some() {
                            // The backend closed after its Close: the normal end.
                            b2c.close_output(None);
                            c2b.close_output(None);
                        } else {
                            backend_gone(&mut c2b, &mut b2c, &mut outcome);
                        }
                    }
                    PumpEvent::DstFailed => {
                        // The client is gone: say goodbye to the backend.
                        outcome.get_or_insert(Outcome::ClientGone);
                        c2b.close_output(Some(frame::close_frame(1001, "client went away", true)));
                    }
                    PumpEvent::Violation(v) => {
                        outcome.get_or_insert(Outcome::BackendViolation(v));
                        c2b.close_output(Some(frame::close_frame(1002, v.reason(), true)));
                        b2c.close_output(Some(frame::close_frame(
                            1014,
                            "backend protocol error",
                            false,
                        )));
                    }
                }
            }
            if c2b.is_done() && b2c.is_done() {
                return Poll::Ready(());
            }
            let closing =
                outcome.is_some() || c2b.close_seen().is_some() || b2c.close_seen().is_some();
            if closing && deadline.is_none() {
                deadline = Some(Box::pin(sleep(cfg.close_timeout)));
            }
            if let Some(d) = deadline.as_mut()
                && d.as_mut().poll(cx).is_ready()
            {
                outcome.get_or_insert(Outcome::CloseTimeout);
                return Poll::Ready(());
            }
            if !progressed {
                return Poll::Pending;
            }
        }
    })
    .await;

    outcome.unwrap_or(Outcome::Closed {
        client_code: c2b.close_seen().flatten(),
        backend_code: b2c.close_seen().flatten(),
    })
}

/// The backend left (EOF, reset, failed write) without a close handshake.
fn backend_gone(c2b: &mut Pump, b2c: &mut Pump, outcome: &mut Option<Outcome>) {
    outcome.get_or_insert(Outcome::BackendGone);
    b2c.close_output(Some(frame::close_frame(
        1014,
        "backend closed the connection",
        false,
    )));
    c2b.close_output(None);
}
