//! What one session counts while it runs: messages and payload bytes each way,
//! throttle waits, the Close frames each side sent and those wsgate sent itself,
//! and keepalive round trips.
//!
//! Owns: the per-session counters. Only the session's own task writes them (plain
//! loads and stores on atomics in the session's own allocation: no read-modify-write,
//! no cache line shared with another session), so counting costs the relay almost
//! nothing; a scrape reads them while the session runs and the metrics registry
//! folds them in when it ends. Rare events (closes, pongs) take a small lock.
//! Does not own: labels, totals or exposition (metrics/), or what gets logged (access.rs).

use prometheus_client::metrics::histogram::Histogram;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Who sent a Close (or left first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Backend,
    Wsgate,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Backend => "backend",
            Side::Wsgate => "wsgate",
        }
    }
}

/// One direction's counts: what one side sent.
#[derive(Debug, Default)]
pub struct Flow {
    messages: AtomicU64,
    bytes: AtomicU64,
}

/// Single writer: a load and a store, not an atomic read-modify-write.
fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl Flow {
    /// Data messages (counted at their first frame).
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// Payload bytes of data frames.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// A Close frame: its code (`None`: no code) and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    pub code: Option<u16>,
    pub reason: String,
}

impl CloseFrame {
    /// From an unmasked Close payload (already checked by the frame checker).
    pub fn from_payload(payload: &[u8]) -> CloseFrame {
        let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        let reason = payload.get(2..).unwrap_or_default();
        CloseFrame {
            code,
            reason: String::from_utf8_lossy(reason).into_owned(),
        }
    }
}

/// The closing of a session, as it happened.
#[derive(Debug, Clone, Default)]
pub struct Closing {
    /// The Close the client sent, and the one the backend sent.
    pub client: Option<CloseFrame>,
    pub backend: Option<CloseFrame>,
    /// Closes wsgate originated, to the client and to the backend.
    pub to_client: Option<CloseFrame>,
    pub to_backend: Option<CloseFrame>,
    /// Who sent the first Close.
    pub first: Option<Side>,
}

#[derive(Debug, Default)]
struct Rare {
    /// Allocated at the first Close: a live session carries only a pointer.
    closing: Option<Box<Closing>>,
    /// The last keepalive Ping wsgate sent: its sequence number and when.
    ping: Option<(u64, Instant)>,
}

/// Everything one session counts.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// What the client sent toward the backend.
    pub client: Flow,
    /// What the backend sent toward the client.
    pub backend: Flow,
    throttled: AtomicU64,
    rtt: Option<Histogram>,
    rare: Mutex<Rare>,
}

impl SessionStats {
    /// Keepalive round trips are observed into `rtt`.
    pub fn with_rtt(rtt: Histogram) -> SessionStats {
        SessionStats {
            rtt: Some(rtt),
            ..SessionStats::default()
        }
    }

    fn rare(&self) -> std::sync::MutexGuard<'_, Rare> {
        self.rare.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A data frame from `from` was approved; `first` if it starts a message.
    #[inline]
    pub(crate) fn data_frame(&self, from: Side, first: bool, payload: u64) {
        let f = if from == Side::Client {
            &self.client
        } else {
            &self.backend
        };
        if first {
            bump(&f.messages, 1);
        }
        bump(&f.bytes, payload);
    }

    /// The client's reads were paused for its message rate.
    pub(crate) fn throttle(&self) {
        bump(&self.throttled, 1);
    }

    /// Times the client was throttled.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// A side's Close passed (the first one of that side).
    pub(crate) fn close_from(&self, from: Side, payload: &[u8]) {
        let mut r = self.rare();
        let c = r.closing.get_or_insert_default();
        let slot = if from == Side::Client {
            &mut c.client
        } else {
            &mut c.backend
        };
        if slot.is_none() {
            *slot = Some(CloseFrame::from_payload(payload));
        }
        c.first.get_or_insert(from);
    }

    /// wsgate ends the session: what it sends each side (if anything).
    pub(crate) fn wsgate_close(&self, client: Option<(u16, &str)>, backend: Option<(u16, &str)>) {
        let mut r = self.rare();
        let c = r.closing.get_or_insert_default();
        let frame = |(code, reason): (u16, &str)| CloseFrame {
            code: Some(code),
            reason: reason.to_string(),
        };
        if c.to_client.is_none() {
            c.to_client = client.map(frame);
        }
        if c.to_backend.is_none() {
            c.to_backend = backend.map(frame);
        }
        if client.is_some() || backend.is_some() {
            c.first.get_or_insert(Side::Wsgate);
        }
    }

    pub(crate) fn ping_sent(&self, seq: u64, at: Instant) {
        self.rare().ping = Some((seq, at));
    }

    /// A Pong to a keepalive Ping arrived; `seq` is the number it carries.
    pub(crate) fn pong(&self, seq: &[u8]) {
        let Some(rtt) = &self.rtt else { return };
        let sent = self.rare().ping;
        if let Some((want, at)) = sent
            && std::str::from_utf8(seq).ok().and_then(|s| s.parse().ok()) == Some(want)
        {
            rtt.observe(at.elapsed().as_secs_f64());
        }
    }

    /// How the session closed (so far).
    pub fn closing(&self) -> Closing {
        self.rare().closing.as_deref().cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_messages_at_their_first_frame() {
        let s = SessionStats::default();
        s.data_frame(Side::Client, true, 10);
        s.data_frame(Side::Client, false, 5);
        s.data_frame(Side::Backend, true, 7);
        assert_eq!((s.client.messages(), s.client.bytes()), (1, 15));
        assert_eq!((s.backend.messages(), s.backend.bytes()), (1, 7));
    }

    #[test]
    fn the_first_close_is_remembered() {
        let s = SessionStats::default();
        s.close_from(Side::Backend, &[0x03, 0xE8, b'b', b'y', b'e']);
        s.wsgate_close(Some((1001, "x")), None);
        s.close_from(Side::Client, &[]);
        let c = s.closing();
        assert_eq!(c.first, Some(Side::Backend));
        assert_eq!(
            c.backend,
            Some(CloseFrame {
                code: Some(1000),
                reason: "bye".into()
            })
        );
        assert_eq!(c.client.unwrap().code, None);
        assert_eq!(c.to_client.unwrap().code, Some(1001));
    }

    #[test]
    fn a_pong_with_the_right_number_is_a_round_trip() {
        let h = Histogram::new([0.5, 1.0]);
        let s = SessionStats::with_rtt(h.clone());
        s.pong(b"1"); // no ping yet
        s.ping_sent(2, Instant::now());
        s.pong(b"1"); // an older ping's
        s.pong(b"2");
        let mut out = String::new();
        let mut reg = prometheus_client::registry::Registry::default();
        reg.register("rtt", "", h);
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(out.contains("rtt_count 1"), "{out}");
    }
}
