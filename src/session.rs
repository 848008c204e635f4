//! Live sessions. hyper forgets a connection once it is upgraded, so wsgate counts
//! its relays itself: each running relay holds a `Live` guard.
//!
//! Owns: the process-wide count of live sessions and a way to wait until it is zero.
//! Does not own: per-backend counts (balance.rs `Lease`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Sessions {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    live: AtomicUsize,
    idle: Notify,
}

/// Counts as one live session until dropped.
#[derive(Debug)]
pub struct Live {
    inner: Arc<Inner>,
}

impl Sessions {
    pub fn enter(&self) -> Live {
        self.inner.live.fetch_add(1, Ordering::Relaxed);
        Live {
            inner: self.inner.clone(),
        }
    }

    pub fn live(&self) -> usize {
        self.inner.live.load(Ordering::Relaxed)
    }

    /// Resolves once no session is live.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            if self.live() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if self.inner.live.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}
