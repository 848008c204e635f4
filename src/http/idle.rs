//! Idle keep-alive connections to one backend, for proxied HTTP.
//!
//! Owns: the connections a backend keeps for reuse (most recently used first, at most
//! the pool's `keepalive`, none older than its `keepalive_timeout`), dropping the
//! closed and the expired. Each `Backend` (backend.rs) holds one, so a backend that
//! stays across a reload keeps its connections, and a removed one lets them go.
//! Does not own: opening connections or exchanging requests (forward.rs). A leaf:
//! it imports only `ReqBody`.

use super::body::ReqBody;
use hyper::client::conn::http1::SendRequest;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The sending side of one HTTP/1.1 connection to a backend.
pub type Sender = SendRequest<ReqBody>;

#[derive(Debug, Default)]
pub struct Idle {
    conns: Mutex<Vec<(Sender, Instant)>>,
    cap: AtomicUsize,
    max_idle_ms: AtomicU64,
}

impl Idle {
    /// Takes the pool's `keepalive` and `keepalive_timeout` (at start and reload).
    pub fn configure(&self, cap: usize, max_idle: Duration) {
        self.cap.store(cap, Ordering::Relaxed);
        self.max_idle_ms
            .store(max_idle.as_millis() as u64, Ordering::Relaxed);
        self.sweep();
    }

    /// The pool's `keepalive_timeout`.
    pub fn max_idle(&self) -> Duration {
        Duration::from_millis(self.max_idle_ms.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Sender, Instant)>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used connection that is still open and ready.
    pub fn take(&self) -> Option<Sender> {
        let max = self.max_idle();
        let mut v = self.lock();
        while let Some((s, since)) = v.pop() {
            if since.elapsed() < max && s.is_ready() {
                return Some(s);
            }
        }
        None
    }

    /// Keeps `s` for reuse, unless the pool keeps none; the oldest goes when full.
    pub fn put(&self, s: Sender) {
        let cap = self.cap.load(Ordering::Relaxed);
        if cap == 0 || !s.is_ready() {
            return;
        }
        let mut v = self.lock();
        v.retain(|(s, _)| !s.is_closed());
        if v.len() >= cap {
            v.remove(0);
        }
        v.push((s, Instant::now()));
    }

    /// Drops connections that closed or idled past `keepalive_timeout` (and any over
    /// a lowered `keepalive`).
    pub fn sweep(&self) {
        let (max, cap) = (self.max_idle(), self.cap.load(Ordering::Relaxed));
        let mut v = self.lock();
        v.retain(|(s, since)| !s.is_closed() && since.elapsed() < max);
        let over = v.len().saturating_sub(cap);
        v.drain(..over);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Idle connections kept now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
