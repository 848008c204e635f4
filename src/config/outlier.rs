//! A pool's passive-check keys: outlier detection (`consecutive_failures`,
//! `base_ejection_time`, `max_ejection_time`, Envoy's semantics), nginx's
//! `max_fails`/`fail_timeout`, and what bounds both (`max_ejection_percent`,
//! `panic_threshold`).
//!
//! Owns: which of the two ways a pool's passive checks work (nginx's keys, when
//! either is written, keep their meaning; writing both ways is an error), their
//! defaults and their problems. Does not own: the other pool keys (validate.rs) or
//! applying them (backends/backend.rs ejects, backends/balance.rs bounds and panics).

use super::finding::{Finding, KeyPath};
use super::schema;
use super::{Outlier, Passive};
use std::time::Duration;

/// Outlier detection's defaults, chosen so a reconnect storm onto slow but alive
/// backends ejects none (conf/wsgate.toml says why).
pub(super) const CONSECUTIVE_FAILURES: u32 = 5;
pub(super) const BASE_EJECTION_TIME: Duration = Duration::from_secs(30);
pub(super) const MAX_EJECTION_TIME: Duration = Duration::from_secs(300);

/// Pool `i`'s passive checks (`None`: off) and their bounds; problems go to `out`.
pub(super) fn passive(
    i: usize,
    p: &schema::Pool,
    out: &mut Vec<Finding>,
) -> (Option<Passive>, Outlier) {
    let at = |k: &str| KeyPath::root("pool").index(i).key(k);
    for (k, v) in [
        ("max_ejection_percent", p.max_ejection_percent),
        ("panic_threshold", p.panic_threshold),
    ] {
        if v > 100 {
            out.push((at(k), "must be a percentage, 0 to 100".into()));
        }
    }
    let outlier = Outlier {
        max_ejection_percent: p.max_ejection_percent.min(100),
        panic_threshold: p.panic_threshold.min(100),
    };
    let nginx = p.max_fails.is_some() || p.fail_timeout.is_some();
    if nginx {
        for (k, written) in [
            ("consecutive_failures", p.consecutive_failures.is_some()),
            ("base_ejection_time", p.base_ejection_time.is_some()),
            ("max_ejection_time", p.max_ejection_time.is_some()),
        ] {
            if written {
                out.push((
                    at(k),
                    "cannot be combined with max_fails/fail_timeout (nginx's passive checks): \
                     write one or the other"
                        .into(),
                ));
            }
        }
        let max_fails = p.max_fails.unwrap_or(1);
        let fail_timeout = p.fail_timeout.map_or(Duration::from_secs(10), |d| d.get());
        if max_fails > 0 && fail_timeout.is_zero() {
            out.push((
                at("fail_timeout"),
                "must be greater than zero when max_fails > 0".into(),
            ));
        }
        let passive = (max_fails > 0).then_some(Passive::Window {
            max_fails,
            fail_timeout,
        });
        return (passive, outlier);
    }
    let failures = p.consecutive_failures.unwrap_or(CONSECUTIVE_FAILURES);
    let base = p.base_ejection_time.map_or(BASE_EJECTION_TIME, |d| d.get());
    let max = p
        .max_ejection_time
        .map_or(MAX_EJECTION_TIME.max(base), |d| d.get());
    if failures > 0 {
        if base.is_zero() {
            out.push((
                at("base_ejection_time"),
                "must be greater than zero when consecutive_failures > 0".into(),
            ));
        }
        if max < base {
            out.push((
                at("max_ejection_time"),
                format!("must be at least base_ejection_time ({base:?})"),
            ));
        }
    }
    let passive = (failures > 0).then_some(Passive::Consecutive {
        failures,
        base,
        max: max.max(base),
    });
    (passive, outlier)
}
