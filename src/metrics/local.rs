//! Local exhaustion: wsgate itself out of ephemeral ports, descriptors, socket
//! buffers or memory when it opens a backend connection.
//!
//! Owns: `wsgate_local_exhaustion_total{reason}` and the episode an operator reads
//! in the log: the first shortage warns, a new kind of shortage during the same
//! episode warns once more, and the first backend connection opened after it logs
//! the recovery with how many requests were refused meanwhile. Nothing per
//! connection. Does not own: telling a local error from a backend's
//! (backends/connect.rs) or the answer the client gets (refusal.rs).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    /// `eaddrnotavail`, `emfile`, `enfile`, `enobufs`, `enomem`.
    pub reason: String,
}

/// Every `reason` label, each exported from the start (at 0) so alerts see it.
pub(crate) const REASONS: [&str; 5] = ["eaddrnotavail", "emfile", "enfile", "enobufs", "enomem"];

/// The counter and the episode in progress, if any.
#[derive(Debug)]
pub struct LocalExhaustion {
    pub(crate) counts: Family<ReasonLabels, Counter>,
    /// Set while an episode lasts: the only thing a successful connect reads.
    active: AtomicBool,
    episode: Mutex<Episode>,
}

#[derive(Debug, Default)]
struct Episode {
    started: Option<Instant>,
    /// The reasons already warned about in this episode.
    reasons: Vec<&'static str>,
    /// Requests answered 503 in this episode.
    refused: u64,
    /// Backend connections that failed for a local reason in this episode.
    failed: u64,
}

impl Default for LocalExhaustion {
    fn default() -> Self {
        let counts = Family::<ReasonLabels, Counter>::default();
        for r in REASONS {
            let _ = counts.get_or_create(&ReasonLabels { reason: r.into() });
        }
        LocalExhaustion {
            counts,
            active: AtomicBool::new(false),
            episode: Mutex::new(Episode::default()),
        }
    }
}

impl LocalExhaustion {
    /// A backend connection of `pool` failed for want of `reason` (`what` says which
    /// backend and the error): counted, and warned about if this episode has not
    /// seen `reason` yet.
    pub fn hit(&self, reason: &'static str, pool: &str, what: &dyn std::fmt::Display) {
        self.counts
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
        let mut e = self.episode.lock().unwrap_or_else(|e| e.into_inner());
        e.failed += 1;
        if e.reasons.contains(&reason) {
            return;
        }
        e.reasons.push(reason);
        if e.started.is_none() {
            e.started = Some(Instant::now());
            self.active.store(true, Ordering::Release);
        }
        tracing::warn!(
            %pool,
            reason,
            "{what}; not held against the backend; clients get 503 until a backend connection opens again (warned once per episode and reason, counted in wsgate_local_exhaustion_total)"
        );
    }

    /// A request was answered 503 because of the shortage.
    pub fn refused(&self) {
        let mut e = self.episode.lock().unwrap_or_else(|e| e.into_inner());
        e.refused += 1;
    }

    /// A backend connection opened: ends the episode in progress, if any.
    pub fn connected(&self) {
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        let mut e = self.episode.lock().unwrap_or_else(|e| e.into_inner());
        let Some(started) = e.started.take() else {
            return;
        };
        self.active.store(false, Ordering::Release);
        let ended = std::mem::take(&mut *e);
        drop(e);
        tracing::info!(
            reasons = %ended.reasons.join(","),
            refused = ended.refused,
            failed_connects = ended.failed,
            "backend connections open again after local exhaustion: {} requests refused with 503 over {:.1?}",
            ended.refused,
            started.elapsed()
        );
    }

    /// Whether an episode is in progress.
    #[cfg(test)]
    fn in_episode(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_starts_at_the_first_hit_and_ends_at_the_first_connect() {
        let l = LocalExhaustion::default();
        l.connected(); // no episode: nothing happens
        assert!(!l.in_episode());
        l.hit("eaddrnotavail", "p", &"x");
        l.hit("eaddrnotavail", "p", &"x");
        l.refused();
        l.hit("emfile", "p", &"x");
        assert!(l.in_episode());
        {
            let e = l.episode.lock().unwrap();
            assert_eq!(e.reasons, ["eaddrnotavail", "emfile"]);
            assert_eq!((e.refused, e.failed), (1, 3));
        }
        let n = |r: &str| {
            l.counts
                .get_or_create(&ReasonLabels { reason: r.into() })
                .get()
        };
        assert_eq!((n("eaddrnotavail"), n("emfile")), (2, 1));
        l.connected();
        assert!(!l.in_episode());
        let e = l.episode.lock().unwrap();
        assert!(e.started.is_none() && e.reasons.is_empty() && e.refused == 0);
    }
}
