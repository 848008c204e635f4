//! Live sessions. hyper forgets a connection once it is upgraded, so wsgate counts
//! its relays itself: each running relay holds a `Live` guard.
//!
//! Owns: the process-wide count of live sessions, a way to wait until it is zero, and
//! the "going away" signal that asks every live session to close (1001 both ways) at
//! shutdown. Does not own: per-backend counts (balance.rs `Lease`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{Notify, watch};

#[derive(Debug)]
pub struct Sessions {
    inner: Arc<Inner>,
    going_away: watch::Sender<bool>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            inner: Arc::default(),
            going_away: watch::channel(false).0,
        }
    }
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

    /// Asks every live (and future) session to close with 1001.
    pub fn close_all(&self) {
        self.going_away.send_replace(true);
    }

    /// Resolves when `close_all` has been called.
    pub fn going_away(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.going_away.subscribe();
        async move {
            let _ = rx.wait_for(|g| *g).await;
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
