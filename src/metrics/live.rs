//! The registry of live sessions: each session's counters from its start, read by a
//! scrape while it runs and folded into the totals when it ends (in the same step that
//! removes it), so a long session shows up as it goes, every message is counted
//! exactly once, and the relay never writes a shared counter.
//!
//! Owns: start and end bookkeeping (`Metrics::session_start`, `LiveGuard`), the
//! interned label strings, the live view a scrape reads (`Metrics::live`), and the
//! configured pairs with a series at 0 (`Metrics::configure_sessions`).
//! Does not own: the event families or the text exposition (mod.rs `encode`).

use super::{Metrics, RouteLabels};
use crate::relay::Outcome;
use crate::relay::stats::SessionStats;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// What a session is counted under for its whole life (interned: sessions of one
/// route and backend share the strings).
#[derive(Debug, Clone)]
pub(crate) struct SessionKey {
    pub route: Arc<str>,
    pub backend: Arc<str>,
}

#[derive(Debug)]
struct LiveSession {
    labels: SessionKey,
    stats: Arc<SessionStats>,
}

/// Messages and payload bytes of one route, one direction.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flow {
    pub messages: u64,
    pub bytes: u64,
}

#[derive(Debug, Default)]
pub(super) struct Sessions {
    next: u64,
    live: HashMap<u64, LiveSession>,
    /// Label strings in use (bounded by the configurations run).
    names: HashSet<Arc<str>>,
    /// Totals of ended sessions per (route, direction).
    ended: Flows,
    /// Every (route, backend) the generation in effect can open sessions on: each
    /// has a live-session series, 0 while idle.
    configured: BTreeSet<(Arc<str>, Arc<str>)>,
    /// The generation `configured` was taken from (an older one is not applied).
    configured_by: u64,
}

impl Metrics {
    /// A session of `route` on `backend` starts: its counters are readable from now on.
    pub fn session_start(self: &Arc<Self>, route: &str, backend: &str) -> LiveGuard {
        let stats = Arc::new(SessionStats::with_rtt(self.client_rtt.get_or_create_owned(
            &RouteLabels {
                route: route.to_string(),
            },
        )));
        let mut s = self.lock();
        let labels = SessionKey {
            route: intern(&mut s.names, route),
            backend: intern(&mut s.names, backend),
        };
        let id = s.next;
        s.next += 1;
        s.live.insert(
            id,
            LiveSession {
                labels,
                stats: stats.clone(),
            },
        );
        LiveGuard {
            metrics: self.clone(),
            id,
            stats,
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The (route, backend) pairs of configuration `generation` (backend labels as
    /// `session_start` gets them): from now on each has a live-session series, 0
    /// while it has no session, and a pair it no longer lists keeps one only while
    /// sessions on it run. Called at start and at each publish; a generation older
    /// than the one applied last changes nothing.
    pub fn configure_sessions<'a>(
        &self,
        generation: u64,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        let mut s = self.lock();
        if generation < s.configured_by {
            return;
        }
        let s = &mut *s;
        s.configured_by = generation;
        s.configured = pairs
            .into_iter()
            .map(|(r, b)| (intern(&mut s.names, r), intern(&mut s.names, b)))
            .collect();
    }

    /// Live sessions per (route, backend), 0 for each configured pair without one;
    /// and messages and bytes per (route, direction), ended and live sessions
    /// together.
    pub fn live(&self) -> (ActiveSessions, Flows) {
        let s = self.lock();
        let mut active: ActiveSessions = s.configured.iter().map(|k| (k.clone(), 0)).collect();
        let mut flows = s.ended.clone();
        for l in s.live.values() {
            *active
                .entry((l.labels.route.clone(), l.labels.backend.clone()))
                .or_insert(0) += 1;
            add_flows(&mut flows, &l.labels.route, &l.stats);
        }
        (active, flows)
    }
}

fn intern(names: &mut HashSet<Arc<str>>, s: &str) -> Arc<str> {
    if let Some(n) = names.get(s) {
        return n.clone();
    }
    let n: Arc<str> = s.into();
    names.insert(n.clone());
    n
}

fn add_flows(flows: &mut Flows, route: &Arc<str>, s: &SessionStats) {
    for (dir, f) in [
        ("client_to_backend", &s.client),
        ("backend_to_client", &s.backend),
    ] {
        let e = flows.entry((route.clone(), dir)).or_default();
        e.messages += f.messages();
        e.bytes += f.bytes();
    }
}

/// Live sessions per (route, backend), configured pairs included (at 0).
pub(crate) type ActiveSessions = BTreeMap<(Arc<str>, Arc<str>), usize>;
/// Messages and bytes per (route, direction).
pub(crate) type Flows = BTreeMap<(Arc<str>, &'static str), Flow>;

/// How a session ended, for `LiveGuard::end`.
#[derive(Debug, Clone, Copy)]
pub struct Ended {
    pub outcome: Outcome,
    pub duration: Duration,
}

/// A live session's place in the registry. `end` (or dropping it) folds its counts
/// into the totals, in the same step that removes it, so a scrape counts every
/// message exactly once.
#[derive(Debug)]
pub struct LiveGuard {
    metrics: Arc<Metrics>,
    id: u64,
    stats: Arc<SessionStats>,
}

impl LiveGuard {
    pub fn stats(&self) -> &Arc<SessionStats> {
        &self.stats
    }

    /// The session ended: counts its outcome, closes and limits.
    pub fn end(self, end: &Ended) {
        let labels = self.fold();
        if let Some(l) = labels {
            self.metrics.session_end(&l, &self.stats, end);
        }
    }

    fn fold(&self) -> Option<SessionKey> {
        let mut s = self.metrics.lock();
        let live = s.live.remove(&self.id)?;
        add_flows(&mut s.ended, &live.labels.route, &live.stats);
        Some(live.labels)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.fold();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(m: &Metrics) -> Vec<(String, String, usize)> {
        let (a, _) = m.live();
        a.into_iter()
            .map(|((r, b), n)| (r.to_string(), b.to_string(), n))
            .collect()
    }

    fn row(r: &str, b: &str, n: usize) -> (String, String, usize) {
        (r.into(), b.into(), n)
    }

    #[test]
    fn configured_pairs_stay_at_zero_and_removed_ones_last_while_sessions_run() {
        let m = Arc::new(Metrics::new());
        m.configure_sessions(1, [("r", "a"), ("r", "b")]);
        assert_eq!(active(&m), [row("r", "a", 0), row("r", "b", 0)]);
        let g = m.session_start("r", "a");
        assert_eq!(active(&m), [row("r", "a", 1), row("r", "b", 0)]);
        m.configure_sessions(2, [("r", "b")]);
        assert_eq!(active(&m), [row("r", "a", 1), row("r", "b", 0)], "live");
        drop(g);
        assert_eq!(active(&m), [row("r", "b", 0)]);
        m.configure_sessions(1, [("old", "x")]);
        assert_eq!(active(&m), [row("r", "b", 0)], "an older generation");
    }
}
