//! Admission control: decided right after accept, before any TLS work is spent.
//!
//! Owns: the global slots under `max_connections` (`Slots`: at the limit accepting
//! pauses instead of refusing), the per-IP concurrent count and connect-rate bucket
//! (governor; IPv6 keyed by a prefix), the exempt CIDRs, the refusal counters and the
//! rate-limited log line about refusals (`Admission`, which lives as long as the
//! process while its policy follows the config).
//! Does not own: the global connect rate and memory watermark (overload.rs).

use crate::config::{Cidr, Limits, types::prefix_mask};
use arc_swap::ArcSwap;
use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The slots under `max_connections`, resizable while connections hold them.
#[derive(Debug)]
pub struct Slots {
    sem: Arc<Semaphore>,
    limit: Mutex<usize>,
    /// Permits to retire as they come back (after the limit was lowered below use).
    debt: AtomicUsize,
}

/// One connection's slot; returns to `Slots` when dropped.
#[derive(Debug)]
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    slots: Arc<Slots>,
}

impl Slots {
    pub fn new(limit: usize) -> Arc<Slots> {
        Arc::new(Slots {
            sem: Arc::new(Semaphore::new(limit)),
            limit: Mutex::new(limit),
            debt: AtomicUsize::new(0),
        })
    }

    /// Waits for a free slot.
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        // The semaphore is never closed, so this cannot fail.
        let permit = self.sem.clone().acquire_owned().await.ok();
        Slot {
            permit,
            slots: self.clone(),
        }
    }

    /// A free slot, or, if there is none, one over the limit (for the connections
    /// already queued in the kernel when a listener closes: served, not reset).
    pub fn acquire_or_extra(self: &Arc<Self>) -> Slot {
        Slot {
            permit: self.sem.clone().try_acquire_owned().ok(),
            slots: self.clone(),
        }
    }

    /// Changes the limit; lowering it below the slots in use takes effect as they free.
    pub fn resize(&self, limit: usize) {
        let mut cur = self.limit.lock().unwrap_or_else(|e| e.into_inner());
        if limit > *cur {
            let mut add = limit - *cur;
            let paid = self
                .debt
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                    Some(d - d.min(add))
                })
                .map_or(0, |d| d.min(add));
            add -= paid;
            self.sem.add_permits(add);
        } else {
            let cut = *cur - limit;
            let forgot = self.sem.forget_permits(cut);
            self.debt.fetch_add(cut - forgot, Ordering::AcqRel);
        }
        *cur = limit;
    }

    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let owed = self
            .slots
            .debt
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1))
            .is_ok();
        if owed {
            permit.forget();
        }
    }
}

/// What an admitted client connection holds until it ends (its WebSocket session
/// included): a slot under `max_connections`, its place in the per-IP count, and
/// its place in the count of open connections.
#[derive(Debug)]
pub struct Admitted {
    _slot: Slot,
    _ticket: Ticket,
    _open: crate::census::Open,
}

impl Admitted {
    pub fn new(slot: Slot, ticket: Ticket, open: crate::census::Open) -> Admitted {
        Admitted {
            _slot: slot,
            _ticket: ticket,
            _open: open,
        }
    }
}

/// The key a client is counted under: its IPv4 address, or its IPv6 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u128, bool);

/// Why a connection was refused before TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    TooManyFromIp,
    ConnectRate,
    /// On a `proxy_protocol` listener: the peer is not in `trusted_proxies`.
    UntrustedProxy,
    /// On a `proxy_protocol` listener: no valid header within the deadline.
    ProxyHeader,
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Refused::TooManyFromIp => "max_connections_per_ip reached",
            Refused::ConnectRate => "connect_rate exceeded",
            Refused::UntrustedProxy => "PROXY protocol listener: peer not in trusted_proxies",
            Refused::ProxyHeader => "PROXY protocol listener: no valid header in time",
        }
    }
}

/// Refusal counters (they feed metrics).
#[derive(Debug, Default)]
pub struct Counters {
    pub too_many_from_ip: AtomicU64,
    pub connect_rate: AtomicU64,
    pub untrusted_proxy: AtomicU64,
    pub proxy_header: AtomicU64,
    pub accept_errors: AtomicU64,
}

type Limiter = RateLimiter<ClientKey, DefaultKeyedStateStore<ClientKey>, DefaultClock>;

/// The admission settings of one config.
struct Policy {
    max_per_ip: usize,
    ipv6_mask: u128,
    exempt: Vec<Cidr>,
    /// (rate, burst) the limiter was made with: unchanged on reload, it is kept.
    quota: (f64, u32),
    rate: Arc<Limiter>,
}

impl Policy {
    fn new(l: &Limits, keep: Option<&Policy>) -> Policy {
        let quota = (l.connect_rate, l.connect_burst);
        let rate = match keep {
            Some(p) if p.quota == quota => p.rate.clone(),
            _ => {
                let period = Duration::from_secs_f64(1.0 / l.connect_rate.max(1e-6));
                let burst = NonZeroU32::new(l.connect_burst).unwrap_or(NonZeroU32::MIN);
                let q = Quota::with_period(period)
                    .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                    .allow_burst(burst);
                Arc::new(RateLimiter::keyed(q))
            }
        };
        Policy {
            max_per_ip: l.max_connections_per_ip,
            ipv6_mask: prefix_mask(l.ipv6_prefix, 128),
            exempt: l.exempt.clone(),
            quota,
            rate,
        }
    }

    fn key(&self, ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey(u128::from(u32::from(v4)), false),
            IpAddr::V6(v6) => ClientKey(u128::from(v6) & self.ipv6_mask, true),
        }
    }
}

/// Per-IP admission. Memory stays bounded under a flood of distinct addresses: the
/// count map only holds IPs with live connections, and `prune` (run periodically)
/// drops bucket state that has refilled completely.
pub struct Admission {
    policy: ArcSwap<Policy>,
    live: Mutex<HashMap<ClientKey, usize>>,
    pub counters: Counters,
    log: Mutex<LogGate>,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("max_per_ip", &self.policy.load().max_per_ip)
            .finish_non_exhaustive()
    }
}

/// Holds one admitted connection's place in the per-IP count until dropped.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    key: Option<ClientKey>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut live = self
            .admission
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = live.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                live.remove(&key);
            }
        }
    }
}

impl Admission {
    pub fn new(l: &Limits) -> Admission {
        Admission {
            policy: ArcSwap::from_pointee(Policy::new(l, None)),
            live: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            log: Mutex::new(LogGate::default()),
        }
    }

    /// Takes a reloaded config's limits, in place: open connections keep their
    /// places, and bucket state survives when the rate is unchanged.
    pub fn configure(&self, l: &Limits) {
        let next = Policy::new(l, Some(&self.policy.load()));
        self.policy.store(Arc::new(next));
    }

    /// Admits or refuses a new connection from `ip`.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refused> {
        let policy = self.policy.load();
        if policy.exempt.iter().any(|c| c.contains(ip)) {
            return Ok(self.ticket(None));
        }
        let key = policy.key(ip);
        let refused = {
            let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            let n = live.get(&key).copied().unwrap_or(0);
            if n >= policy.max_per_ip {
                Some(Refused::TooManyFromIp)
            } else if policy.rate.check_key(&key).is_err() {
                Some(Refused::ConnectRate)
            } else {
                *live.entry(key).or_insert(0) += 1;
                None
            }
        };
        match refused {
            None => Ok(self.ticket(Some(key))),
            Some(r) => {
                self.refuse(ip, r);
                Err(r)
            }
        }
    }

    /// Counts a refusal and logs it (at most one line a second).
    pub fn refuse(&self, ip: IpAddr, r: Refused) {
        let c = match r {
            Refused::TooManyFromIp => &self.counters.too_many_from_ip,
            Refused::ConnectRate => &self.counters.connect_rate,
            Refused::UntrustedProxy => &self.counters.untrusted_proxy,
            Refused::ProxyHeader => &self.counters.proxy_header,
        };
        c.fetch_add(1, Ordering::Relaxed);
        self.log_refusal(ip, r);
    }

    /// At most one line a second; the lines in between are counted into the next.
    fn log_refusal(&self, ip: IpAddr, r: Refused) {
        let mut gate = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        if gate
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            gate.suppressed += 1;
            return;
        }
        let more = std::mem::take(&mut gate.suppressed);
        gate.last = Some(now);
        drop(gate);
        tracing::warn!(client = %ip, "refused before TLS: {} ({more} more refusals not logged)", r.reason());
    }

    fn ticket(self: &Arc<Self>, key: Option<ClientKey>) -> Ticket {
        Ticket {
            admission: self.clone(),
            key,
        }
    }

    /// Drops rate-limit state for IPs whose bucket has refilled.
    pub fn prune(&self) {
        let policy = self.policy.load();
        policy.rate.retain_recent();
        policy.rate.shrink_to_fit();
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shrink_to_fit();
    }

    /// (IPs with live connections, IPs with rate-limit state): for tests and metrics.
    pub fn tracked(&self) -> (usize, usize) {
        (
            self.live.lock().unwrap_or_else(|e| e.into_inner()).len(),
            self.policy.load().rate.len(),
        )
    }
}

#[derive(Debug, Default)]
struct LogGate {
    last: Option<std::time::Instant>,
    suppressed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adm(f: impl FnOnce(&mut Limits)) -> Arc<Admission> {
        let mut l = Limits::default();
        f(&mut l);
        Arc::new(Admission::new(&l))
    }

    #[test]
    fn configure_changes_the_policy_and_keeps_the_counts() {
        let a = adm(|l| l.max_connections_per_ip = 1);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t = a.admit(ip).unwrap();
        assert!(a.admit(ip).is_err());
        a.configure(&Limits {
            max_connections_per_ip: 2,
            ..Limits::default()
        });
        let _t2 = a.admit(ip).expect("the new limit applies");
        assert!(a.admit(ip).is_err(), "the open connection still counts");
        drop(t);
        assert_eq!(a.tracked().0, 1);
    }

    #[tokio::test]
    async fn slots_resize_up_and_down() {
        let s = Slots::new(2);
        let a = s.acquire().await;
        let b = s.acquire().await;
        s.resize(1);
        drop(a); // retired, not returned: the limit is 1 and b holds it
        assert_eq!(s.available(), 0);
        drop(b);
        assert_eq!(s.available(), 1);
        s.resize(3);
        assert_eq!(s.available(), 3);
        let _c = s.acquire().await;
        s.resize(1);
        assert_eq!(s.available(), 0);
        s.resize(2);
        assert_eq!(s.available(), 1);
    }

    #[test]
    fn per_ip_limit_and_release() {
        let a = adm(|l| l.max_connections_per_ip = 2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t1 = a.admit(ip).unwrap();
        let _t2 = a.admit(ip).unwrap();
        assert_eq!(a.admit(ip).unwrap_err(), Refused::TooManyFromIp);
        assert!(a.admit("192.0.2.2".parse().unwrap()).is_ok());
        drop(t1);
        assert!(a.admit(ip).is_ok());
        assert_eq!(a.counters.too_many_from_ip.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn ipv6_shares_a_prefix_and_exempt_skips_limits() {
        let a = adm(|l| {
            l.max_connections_per_ip = 1;
            l.exempt = vec!["10.0.0.0/8".parse().unwrap()];
        });
        let _t = a.admit("2001:db8:0:1::1".parse().unwrap()).unwrap();
        assert!(a.admit("2001:db8:0:1::2".parse().unwrap()).is_err());
        assert!(a.admit("2001:db8:0:2::1".parse().unwrap()).is_ok());
        let held: Vec<_> = (0..10)
            .map(|_| a.admit("10.1.2.3".parse().unwrap()).unwrap())
            .collect();
        assert_eq!(held.len(), 10);
    }
}
