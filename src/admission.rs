//! Admission control: decided right after accept, before any TLS work is spent.
//!
//! Owns: the per-IP concurrent connection count, the per-IP token bucket on new
//! connections (governor, keyed by IP; IPv6 keyed by a prefix), the exempt CIDRs,
//! the refusal counters, and the rate-limited log line about refusals. The global
//! `max_connections` is a semaphore the accept loop waits on (listen.rs), so at the
//! limit accepting pauses instead of refusing.
//! Memory stays bounded under a flood of distinct addresses: the count map only holds
//! IPs with live connections, and `prune` (run periodically) drops bucket state that
//! has refilled completely.

use crate::config::Limits;
use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What an admitted client connection holds until it ends (its WebSocket session
/// included): a slot under `max_connections` and its place in the per-IP count.
#[derive(Debug)]
pub struct Admitted {
    _slot: tokio::sync::OwnedSemaphorePermit,
    _ticket: Ticket,
}

impl Admitted {
    pub fn new(slot: tokio::sync::OwnedSemaphorePermit, ticket: Ticket) -> Admitted {
        Admitted {
            _slot: slot,
            _ticket: ticket,
        }
    }
}

/// A network prefix, e.g. `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: u128,
    mask: u128,
    v6: bool,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let bad = || format!("{s:?} is not a CIDR such as \"10.0.0.0/8\" or \"2001:db8::/32\"");
        let (ip, len) = match s.split_once('/') {
            Some((ip, len)) => (
                ip.parse::<IpAddr>().map_err(|_| bad())?,
                Some(len.parse::<u8>().map_err(|_| bad())?),
            ),
            None => (s.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let (bits, max, v6) = match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32u8, false),
            IpAddr::V6(v6) => (u128::from(v6), 128u8, true),
        };
        let len = len.unwrap_or(max);
        if len > max {
            return Err(bad());
        }
        let mask = prefix_mask(len, max);
        Ok(Cidr {
            net: bits & mask,
            mask,
            v6,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(v4) => !self.v6 && u128::from(u32::from(v4)) & self.mask == self.net,
            IpAddr::V6(v6) => self.v6 && u128::from(v6) & self.mask == self.net,
        }
    }
}

fn prefix_mask(len: u8, max: u8) -> u128 {
    let all = if max == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    all & !all.checked_shr(u32::from(len)).unwrap_or(0)
}

/// The key a client is counted under: its IPv4 address, or its IPv6 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u128, bool);

/// Why a connection was refused before TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    TooManyFromIp,
    ConnectRate,
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Refused::TooManyFromIp => "max_connections_per_ip reached",
            Refused::ConnectRate => "connect_rate exceeded",
        }
    }
}

/// Refusal counters (they feed metrics).
#[derive(Debug, Default)]
pub struct Counters {
    pub too_many_from_ip: AtomicU64,
    pub connect_rate: AtomicU64,
    pub accept_errors: AtomicU64,
}

pub struct Admission {
    max_per_ip: usize,
    ipv6_mask: u128,
    exempt: Vec<Cidr>,
    live: Mutex<HashMap<ClientKey, usize>>,
    rate: RateLimiter<ClientKey, DefaultKeyedStateStore<ClientKey>, DefaultClock>,
    pub counters: Counters,
    log: Mutex<LogGate>,
    /// Admitted connections still open (their `Ticket`s alive).
    open: AtomicUsize,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("max_per_ip", &self.max_per_ip)
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
        self.admission.open.fetch_sub(1, Ordering::Relaxed);
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
        let period = Duration::from_secs_f64(1.0 / l.connect_rate.max(1e-6));
        let burst = NonZeroU32::new(l.connect_burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Admission {
            max_per_ip: l.max_connections_per_ip,
            ipv6_mask: prefix_mask(l.ipv6_prefix, 128),
            exempt: l
                .exempt
                .iter()
                .filter_map(|c| Cidr::parse(c).ok())
                .collect(),
            live: Mutex::new(HashMap::new()),
            rate: RateLimiter::keyed(quota),
            counters: Counters::default(),
            log: Mutex::new(LogGate::default()),
            open: AtomicUsize::new(0),
        }
    }

    pub fn key(&self, ip: IpAddr) -> ClientKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey(u128::from(u32::from(v4)), false),
            IpAddr::V6(v6) => ClientKey(u128::from(v6) & self.ipv6_mask, true),
        }
    }

    /// Admits or refuses a new connection from `ip`.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refused> {
        if self.exempt.iter().any(|c| c.contains(ip)) {
            return Ok(self.ticket(None));
        }
        let key = self.key(ip);
        let refused = {
            let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            let n = live.get(&key).copied().unwrap_or(0);
            if n >= self.max_per_ip {
                Some(Refused::TooManyFromIp)
            } else if self.rate.check_key(&key).is_err() {
                Some(Refused::ConnectRate)
            } else {
                *live.entry(key).or_insert(0) += 1;
                None
            }
        };
        match refused {
            None => Ok(self.ticket(Some(key))),
            Some(r) => {
                let c = match r {
                    Refused::TooManyFromIp => &self.counters.too_many_from_ip,
                    Refused::ConnectRate => &self.counters.connect_rate,
                };
                c.fetch_add(1, Ordering::Relaxed);
                self.log_refusal(ip, r);
                Err(r)
            }
        }
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
        self.open.fetch_add(1, Ordering::Relaxed);
        Ticket {
            admission: self.clone(),
            key,
        }
    }

    /// Admitted client connections still open (sessions included).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Drops rate-limit state for IPs whose bucket has refilled.
    pub fn prune(&self) {
        self.rate.retain_recent();
        self.rate.shrink_to_fit();
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shrink_to_fit();
    }

    /// (IPs with live connections, IPs with rate-limit state): for tests and metrics.
    pub fn tracked(&self) -> (usize, usize) {
        (
            self.live.lock().unwrap_or_else(|e| e.into_inner()).len(),
            self.rate.len(),
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
            l.exempt = vec!["10.0.0.0/8".into()];
        });
        let _t = a.admit("2001:db8:0:1::1".parse().unwrap()).unwrap();
        assert!(a.admit("2001:db8:0:1::2".parse().unwrap()).is_err());
        assert!(a.admit("2001:db8:0:2::1".parse().unwrap()).is_ok());
        let held: Vec<_> = (0..10)
            .map(|_| a.admit("10.1.2.3".parse().unwrap()).unwrap())
            .collect();
        assert_eq!(held.len(), 10);
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.255.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.1.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let c6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(c6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!c6.contains("2001:db9::1".parse().unwrap()));
        assert!(
            Cidr::parse("127.0.0.1")
                .unwrap()
                .contains("127.0.0.1".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
