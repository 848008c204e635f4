//! The metrics registry: every counter and histogram wsgate keeps, under the names
//! issue 10 fixed (README "Metrics" lists them), and the live sessions' counters.
//!
//! Owns: the event families (`Metrics`; local exhaustion in local.rs), their label
//! sets (labels.rs: bounded, never a client address or a request path), what a
//! session's end is counted in, and the text exposition of all this (`encode`).
//! Does not own: the registry of live sessions (live.rs), or values derived from the
//! runtime at scrape time (admin/scrape.rs builds those with `Samples`).

mod labels;
mod live;
pub(crate) mod local;
mod process;
pub(crate) mod samples;

pub(crate) use labels::*;
pub(crate) use live::{Ended, SessionKey};
pub(crate) use local::LocalExhaustion;
pub(crate) use process::Process;
pub(crate) use samples::{Kind, Samples};

use crate::relay::Outcome;
use crate::relay::stats::{CloseFrame, SessionStats, Side};
use live::Sessions;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

type Hist<L> = Family<L, Histogram, fn() -> Histogram>;

/// Buckets: session durations out to a day, handshakes and connects from 1 ms (0.5
/// ms) to 10 s (5 s), round trips from 5 ms to 6.4 s (800 ms is a bucket bound, for
/// the alert on the median).
pub(crate) const SESSION_BUCKETS: [f64; 15] = [
    0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
    86400.0,
];
pub(crate) const HANDSHAKE_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
pub(crate) const CONNECT_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
pub(crate) const RTT_BUCKETS: [f64; 11] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4];

fn session_hist() -> Histogram {
    Histogram::new(SESSION_BUCKETS)
}
fn handshake_hist() -> Histogram {
    Histogram::new(HANDSHAKE_BUCKETS)
}
fn connect_hist() -> Histogram {
    Histogram::new(CONNECT_BUCKETS)
}
fn rtt_hist() -> Histogram {
    Histogram::new(RTT_BUCKETS)
}

/// Every event metric, and the live sessions. Labels are bounded: listener, route and
/// pool names, backend addresses as configured, statuses, outcomes, and close codes
/// folded into a fixed set; never a client address or a request path.
pub struct Metrics {
    registry: Registry,
    pub accepted: Family<ListenerLabels, Counter>,
    pub tls_handshakes: Family<TlsLabels, Counter>,
    /// Successful handshakes that resumed a session (ticket or cache).
    pub tls_resumed: Family<ListenerLabels, Counter>,
    pub upgrades: Family<UpgradeLabels, Counter>,
    /// Plain requests on `http = "proxy"` routes, by answer status.
    pub http_requests: Family<UpgradeLabels, Counter>,
    pub sessions_total: Family<SessionLabels, Counter>,
    pub session_duration: Hist<RouteLabels>,
    pub handshake_duration: Hist<RouteLabels>,
    pub closes: Family<CloseLabels, Counter>,
    pub limit_hits: Family<LimitLabels, Counter>,
    pub client_rtt: Hist<RouteLabels>,
    pub backend_checks: Family<CheckLabels, Counter>,
    pub backend_connect: Hist<BackendLabels>,
    pub backend_failures: Family<FailureLabels, Counter>,
    pub dns_lookups: Family<DnsLabels, Counter>,
    /// Backend connections wsgate could not open for want of its own resources.
    pub local_exhaustion: LocalExhaustion,
    /// Plain totals for the status page (the families above cannot be read back).
    pub totals: Totals,
    sessions: Mutex<Sessions>,
}

/// Totals the status page turns into rates.
#[derive(Debug, Default)]
pub struct Totals {
    pub accepted: AtomicU64,
    pub sessions_ended: AtomicU64,
    /// Upgrade answers by status, 101 included.
    pub upgrades: Mutex<BTreeMap<u16, u64>>,
}

impl Totals {
    pub fn upgrades(&self) -> BTreeMap<u16, u64> {
        self.upgrades
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            accepted: Family::default(),
            tls_handshakes: Family::default(),
            tls_resumed: Family::default(),
            upgrades: Family::default(),
            http_requests: Family::default(),
            sessions_total: Family::default(),
            session_duration: Family::new_with_constructor(session_hist),
            handshake_duration: Family::new_with_constructor(handshake_hist),
            closes: Family::default(),
            limit_hits: Family::default(),
            client_rtt: Family::new_with_constructor(rtt_hist),
            backend_checks: Family::default(),
            backend_connect: Family::new_with_constructor(connect_hist),
            backend_failures: Family::default(),
            dns_lookups: Family::default(),
            local_exhaustion: LocalExhaustion::default(),
            totals: Totals::default(),
            sessions: Mutex::new(Sessions::default()),
        };
        let registry = m.registry_of_families();
        Metrics { registry, ..m }
    }

    /// The registry every event family is encoded from, under its name and help.
    fn registry_of_families(&self) -> Registry {
        let mut r = Registry::default();
        r.register(
            "wsgate_connections_accepted",
            "Client connections admitted, per listener",
            self.accepted.clone(),
        );
        r.register(
            "wsgate_tls_handshakes",
            "TLS handshakes by negotiated version and result (ok, failed, timeout)",
            self.tls_handshakes.clone(),
        );
        r.register(
        "wsgate_tls_resumed",
        "TLS handshakes that resumed a session instead of a full handshake (counted in result=ok too)",
        self.tls_resumed.clone(),
    );
        r.register(
            "wsgate_upgrades",
            "Upgrade requests by answer status (101, wsgate's refusals, backend answers)",
            self.upgrades.clone(),
        );
        r.register(
        "wsgate_http_requests",
        "Plain HTTP requests proxied (http = \"proxy\"), by answer status (the backend's or wsgate's)",
        self.http_requests.clone(),
    );
        r.register(
            "wsgate_sessions",
            "WebSocket sessions ended, by outcome",
            self.sessions_total.clone(),
        );
        r.register_with_unit(
            "wsgate_session_duration",
            "Session lifetime",
            Unit::Seconds,
            self.session_duration.clone(),
        );
        r.register_with_unit(
            "wsgate_handshake_duration",
            "From accept to the 101 sent to the client",
            Unit::Seconds,
            self.handshake_duration.clone(),
        );
        r.register(
            "wsgate_closes",
            "Close frames by who sent them (client, backend, wsgate) and code",
            self.closes.clone(),
        );
        r.register(
            "wsgate_limit_hits",
            "Session limits reached",
            self.limit_hits.clone(),
        );
        r.register_with_unit(
            "wsgate_client_rtt",
            "Round trip of wsgate's keepalive Ping to the client's Pong",
            Unit::Seconds,
            self.client_rtt.clone(),
        );
        r.register(
        "wsgate_backend_checks",
        "Active health checks by result (ok, or why the probe failed: connect_failed, timeout, not_101, ...)",
        self.backend_checks.clone(),
    );
        r.register_with_unit(
            "wsgate_backend_connect",
            "TCP connect time to a backend",
            Unit::Seconds,
            self.backend_connect.clone(),
        );
        r.register(
            "wsgate_backend_failures",
            "Failed attempts to open a session on a backend, by reason",
            self.backend_failures.clone(),
        );
        r.register(
            "wsgate_dns_lookups",
            "DNS lookups of resolve backends by result (ok, empty, failed)",
            self.dns_lookups.clone(),
        );
        r.register(
            "wsgate_local_exhaustion",
            "Backend connections wsgate could not open for want of its own resources (eaddrnotavail: no ephemeral port left toward that address; emfile, enfile, enobufs, enomem); not counted against the backend",
            self.local_exhaustion.counts.clone(),
        );
        r
    }

    /// The Prometheus text exposition of every event metric and the session flows,
    /// then `derived` (built from the runtime at scrape time).
    pub fn encode(&self, derived: &Samples) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        let mut s = Samples::default();
        let (active, flows) = self.live();
        let active_fam = s.family("wsgate_sessions_active", "Live sessions", Kind::Gauge, None);
        for ((route, backend), n) in active {
            active_fam.push(
                vec![
                    ("route", route.to_string()),
                    ("backend", backend.to_string()),
                ],
                n as f64,
            );
        }
        let mut msgs = Vec::new();
        let mut bytes = Vec::new();
        for ((route, dir), f) in flows {
            let l = vec![("route", route.to_string()), ("direction", dir.to_string())];
            msgs.push((l.clone(), f.messages as f64));
            bytes.push((l, f.bytes as f64));
        }
        s.family(
            "wsgate_messages",
            "Data messages relayed (direction: client_to_backend, backend_to_client)",
            Kind::Counter,
            None,
        )
        .extend(msgs);
        s.family(
            "wsgate_payload_bytes",
            "Payload bytes of data messages relayed",
            Kind::Counter,
            None,
        )
        .extend(bytes);
        s.encode_into(&mut out);
        derived.encode_into(&mut out);
        out
    }

    /// A client connection passed admission on `listener`.
    pub fn count_accepted(&self, listener: &str) {
        self.accepted
            .get_or_create(&ListenerLabels {
                listener: listener.to_string(),
            })
            .inc();
        self.totals.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// A plain HTTP request on `route` got `status` (the backend's, or wsgate's refusal).
    pub fn count_http(&self, route: &str, status: u16) {
        self.http_requests
            .get_or_create(&UpgradeLabels {
                route: route.to_string(),
                status: status.to_string(),
            })
            .inc();
    }

    /// An upgrade request got `status` (101, or a refusal); `route` if one was chosen.
    pub fn count_upgrade(&self, route: Option<&str>, status: u16) {
        self.upgrades
            .get_or_create(&UpgradeLabels {
                route: route.unwrap_or_default().to_string(),
                status: status.to_string(),
            })
            .inc();
        *self
            .totals
            .upgrades
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_insert(0) += 1;
    }

    /// Counts a session that ended: outcome, duration, closes by side, limit hits.
    fn session_end(&self, labels: &SessionKey, stats: &SessionStats, end: &Ended) {
        let route = &labels.route;
        self.totals.sessions_ended.fetch_add(1, Ordering::Relaxed);
        self.sessions_total
            .get_or_create(&SessionLabels {
                route: route.to_string(),
                backend: labels.backend.to_string(),
                outcome: outcome_label(&end.outcome).into(),
            })
            .inc();
        self.session_duration
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(end.duration.as_secs_f64());
        let c = stats.closing();
        let sides: [(Side, &Option<CloseFrame>); 4] = [
            (Side::Client, &c.client),
            (Side::Backend, &c.backend),
            (Side::Wsgate, &c.to_client),
            (Side::Wsgate, &c.to_backend),
        ];
        for (side, frame) in sides {
            if let Some(f) = frame {
                self.closes
                    .get_or_create(&CloseLabels {
                        route: route.to_string(),
                        side: side.as_str().into(),
                        code: code_label(f.code).into(),
                    })
                    .inc();
            }
        }
        let limit = |name: &str, n: u64| {
            if n > 0 {
                self.limit_hits
                    .get_or_create(&LimitLabels {
                        route: route.to_string(),
                        limit: name.into(),
                    })
                    .inc_by(n);
            }
        };
        limit("message_rate_throttle", stats.throttled());
        let hit = match end.outcome {
            Outcome::ClientRateExceeded => Some("message_rate_close"),
            Outcome::ClientTooBig => Some("max_message_bytes"),
            Outcome::BackendTooBig => Some("backend_max_message_bytes"),
            Outcome::ClientIdle => Some("idle_timeout"),
            Outcome::DurationLimit => Some("max_session_duration"),
            _ => None,
        };
        if let Some(h) = hit {
            limit(h, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn close_codes_fold_into_the_fixed_set() {
        assert_eq!(code_label(Some(1000)), "1000");
        assert_eq!(code_label(Some(1014)), "1014");
        assert_eq!(code_label(Some(4000)), "other");
        assert_eq!(code_label(Some(1005)), "other");
        assert_eq!(code_label(None), "none");
    }

    #[test]
    fn live_counts_are_seen_and_folded_once() {
        let m = Arc::new(Metrics::new());
        let g = m.session_start("r", "b");
        g.stats().data_frame(Side::Client, true, 3);
        let (active, flows) = m.live();
        assert_eq!(active[&("r".into(), "b".into())], 1);
        assert_eq!(flows[&("r".into(), "client_to_backend")].messages, 1);
        g.end(&Ended {
            outcome: Outcome::ClientIdle,
            duration: Duration::from_secs(2),
        });
        let (active, flows) = m.live();
        assert!(active.is_empty());
        assert_eq!(flows[&("r".into(), "client_to_backend")].bytes, 3);
        let text = m.encode(&Samples::default());
        assert!(
            text.contains("wsgate_messages_total{route=\"r\",direction=\"client_to_backend\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("wsgate_limit_hits_total{route=\"r\",limit=\"idle_timeout\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("wsgate_session_duration_seconds_count{route=\"r\"} 1"),
            "{text}"
        );
    }
}
