//! The JSON answers: `/backends` (per pool and backend) and `/status.json` (what
//! the status page shows). Times are RFC 3339 in UTC; absent facts are `null`.

use crate::backends::backend::Backend;
use crate::runtime::Runtime;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

/// `t` as RFC 3339 in UTC with millisecond precision, e.g. `2026-12-01T09:30:00.250Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

fn days_left(t: SystemTime, now: SystemTime) -> f64 {
    match t.duration_since(now) {
        Ok(d) => d.as_secs_f64() / 86_400.0,
        Err(e) => -(e.duration().as_secs_f64() / 86_400.0),
    }
}

fn time(t: Option<SystemTime>) -> Value {
    t.map_or(Value::Null, |t| Value::String(rfc3339(t)))
}

/// removed, down, draining, slow-start or up (in that precedence: a down backend is
/// down, drain flag or not; a backend a reload removed is only listed while it has
/// sessions).
pub(super) fn state(b: &Backend) -> (&'static str, crate::backends::backend::Snapshot) {
    let s = b.snapshot();
    let state = if b.is_removed() {
        "removed"
    } else if !s.up {
        "down"
    } else if s.draining {
        "draining"
    } else if s.slow_start {
        "slow-start"
    } else {
        "up"
    };
    (state, s)
}

fn backend(b: &Backend) -> Value {
    let (state, s) = state(b);
    let (check_time, check_result, check_error) = match &s.last_check {
        None => (None, Value::Null, Value::Null),
        Some((t, Ok(()))) => (Some(*t), json!("ok"), Value::Null),
        Some((t, Err(why))) => (
            Some(*t),
            json!("failed"),
            json!(crate::errors::ErrorChain(&**why).to_string()),
        ),
    };
    json!({
        "address": b.id.address,
        "resolved": b.addr.to_string(),
        "state": state,
        "drain": s.draining,
        "ejected": s.ejected,
        "weight": b.weight(),
        "effective_weight": b.effective_weight(),
        "sessions": s.sessions,
        "last_check": {
            "time": time(check_time),
            "result": check_result,
            "error": check_error,
        },
        "last_change": time(s.changed_at),
    })
}

fn balance(b: crate::config::Balance) -> &'static str {
    match b {
        crate::config::Balance::RoundRobin => "round_robin",
        crate::config::Balance::IpHash => "ip_hash",
        crate::config::Balance::LeastConn => "least_conn",
        crate::config::Balance::Cookie => "cookie",
    }
}

/// The current generation's pools with their backends, each followed by the
/// backends a reload removed from it that still have live sessions (state
/// `removed`); a pool a reload removed whole is listed after them, `removed: true`,
/// while any of its backends has sessions.
fn pools(rt: &Runtime) -> Value {
    let g = rt.current();
    let mut removed: Vec<Arc<Backend>> = rt
        .live_backends()
        .into_iter()
        .filter(|b| b.is_removed() && b.active() > 0)
        .collect();
    removed.sort_by(|a, b| (&a.id.pool, &a.id.address).cmp(&(&b.id.pool, &b.id.address)));
    let removed_of = |pool: &str| {
        removed
            .iter()
            .filter(|b| b.id.pool == pool)
            .map(|b| backend(b))
            .collect::<Vec<_>>()
    };
    let mut out: Vec<Value> = g
        .pools
        .iter()
        .map(|p| {
            let mut backends: Vec<Value> = p.backends.iter().map(|b| backend(b)).collect();
            backends.extend(removed_of(&p.name));
            json!({
                "name": p.name,
                "balance": balance(p.conf.balance),
                "active_checks": p.conf.active_checks,
                "removed": false,
                "backends": backends,
            })
        })
        .collect();
    let mut gone: Vec<&str> = removed
        .iter()
        .map(|b| b.id.pool.as_str())
        .filter(|name| g.pool(name).is_none())
        .collect();
    gone.dedup();
    for name in gone {
        out.push(json!({
            "name": name,
            "balance": null,
            "active_checks": false,
            "removed": true,
            "backends": removed_of(name),
        }));
    }
    Value::Array(out)
}

/// `/backends`.
pub(super) fn backends(rt: &Runtime) -> Value {
    json!({ "pools": pools(rt) })
}

/// `/status.json`.
pub(super) fn status(rt: &Runtime) -> Value {
    let g = rt.current();
    let now = SystemTime::now();
    let listeners: Vec<Value> = g
        .listeners
        .iter()
        .map(|l| {
            json!({
                "name": l.name.as_ref(),
                "address": l.address.to_string(),
                "tls": l.tls.is_some(),
                // The soonest expiry of the listener's certificates, then each one.
                "cert_expiry": time(l.cert_expiry().min()),
                "cert_days_left": l.cert_expiry().min().map(|t| days_left(t, now)),
                "certificates": l.certs.iter().map(|c| json!({
                    "names": c.names,
                    "expiry": time(Some(c.not_after)),
                    "days_left": days_left(c.not_after, now),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let routes: Vec<Value> = g
        .config
        .routes
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "host": r.host.as_ref().map(|h| match h {
                    crate::config::HostMatch::Exact(h) => h.clone(),
                    crate::config::HostMatch::Suffix(s) => format!("*{s}"),
                }),
                "path_prefix": r.path_prefix,
                // The first (for a single-pool route, the only) pool; `pools` has them all.
                "pool": r.targets.first().map(|t| g.config.pools[t.pool].name.as_str()),
                "pools": r.targets.iter().map(|t| json!({
                    "pool": g.config.pools[t.pool].name,
                    "weight": t.weight,
                })).collect::<Vec<_>>(),
                "http": match r.http {
                    crate::config::HttpMode::Refuse => "refuse",
                    crate::config::HttpMode::Proxy => "proxy",
                },
            })
        })
        .collect();
    let m = &rt.metrics;
    let (_, flows) = m.live();
    let (mut messages, mut bytes) = (0u64, 0u64);
    for f in flows.values() {
        messages += f.messages;
        bytes += f.bytes;
    }
    let upgrades = m.totals.upgrades();
    let c = &rt.admission.counters;
    let r = &rt.reloads;
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "now": rfc3339(now),
        "ready": rt.is_ready(),
        "refresh_seconds": 2,
        "generation": {
            "id": g.id,
            "loaded_at": rfc3339(g.loaded_at),
            "reloads_succeeded": r.succeeded.load(Ordering::Relaxed),
            "reloads_failed": r.failed.load(Ordering::Relaxed),
        },
        "listeners": listeners,
        "routes": routes,
        "pools": pools(rt),
        "sessions": {
            "live": rt.census.live(),
            "open_connections": rt.census.open_connections(),
            "draining": rt.draining_sessions(),
        },
        "totals": {
            "accepted": m.totals.accepted.load(Ordering::Relaxed),
            "sessions_started": upgrades.get(&101).copied().unwrap_or(0),
            "sessions_ended": m.totals.sessions_ended.load(Ordering::Relaxed),
            "messages": messages,
            "payload_bytes": bytes,
        },
        "refusals": {
            "max_connections_per_ip": c.too_many_from_ip.load(Ordering::Relaxed),
            "connect_rate": c.connect_rate.load(Ordering::Relaxed),
            "untrusted_proxy": c.untrusted_proxy.load(Ordering::Relaxed),
            "proxy_header": c.proxy_header.load(Ordering::Relaxed),
            "handshakes_by_status": upgrades
                .iter()
                .filter(|(s, _)| **s != 101)
                .map(|(s, n)| (s.to_string(), json!(n)))
                .collect::<serde_json::Map<_, _>>(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_dates() {
        let at = |s: u64| rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_796_083_200 + 3661), "2026-12-01T01:01:01.000Z");
    }
}
