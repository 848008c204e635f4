//! A pool of backends and the four ways of picking one.
//!
//! Owns: `Pool` (its checked settings and its backends in config order, built per
//! generation with its backends carried over by identity), the pick (round robin,
//! ip_hash, least_conn, sticky cookie) and the `Lease` it returns, panic mode, and
//! the pool's bound on passive ejections (`Pool::record_failure`).
//! Does not own: connecting (connect.rs) or a backend's health state (backend.rs,
//! health.rs).

use crate::backends::backend::{Backend, BackendId};
use crate::backends::error::UpstreamError;
use crate::backends::hash::{fmix64, keyed_token};
use crate::config::{self, Balance};
use crate::tls::upstream::UpstreamTls;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// A picked backend; counts as one live session on it until dropped, so least_conn
/// also sees the sessions that are still connecting.
#[derive(Debug)]
pub struct Lease {
    backend: Arc<Backend>,
    index: usize,
    /// When it was picked: the attempt on it began then.
    picked: Instant,
}

/// How an attempt on a backend failed, as passive checks weigh it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Refused, reset, a bad answer: the backend's.
    Error,
    /// No answer in time: the backend's, unless wsgate itself was late (lag.rs).
    Timeout,
}

impl Failure {
    pub fn of(e: &UpstreamError) -> Failure {
        if matches!(
            e,
            UpstreamError::ConnectTimeout(_) | UpstreamError::UpgradeTimeout(_)
        ) {
            Failure::Timeout
        } else {
            Failure::Error
        }
    }
}

impl Lease {
    fn new(backend: Arc<Backend>, index: usize) -> Lease {
        backend.enter();
        Lease {
            backend,
            index,
            picked: Instant::now(),
        }
    }
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
    /// Position of the backend in its pool.
    pub fn index(&self) -> usize {
        self.index
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.backend.leave();
    }
}

/// A pool built for one generation. `Pool::build` carries its backends over from the
/// previous generation by identity (`reuse`), so their state survives a reload.
#[derive(Debug)]
pub struct Pool {
    pub name: String,
    /// The pool's checked settings; `conf.backends[i]` describes `backends[i]`.
    pub conf: config::Pool,
    pub backends: Vec<Arc<Backend>>,
    /// TLS to the backends (`tls = true`), loaded with the generation.
    pub tls: Option<Arc<UpstreamTls>>,
    picker: Picker,
    /// With `balance = "cookie"`: the cookie's name and each backend's value.
    sticky: Option<StickyTokens>,
    /// Whether the pool is in panic mode (for logging the change once).
    panic: AtomicBool,
    /// Held while an ejection is decided, so two at once cannot both pass the bound.
    ejecting: Mutex<()>,
}

#[derive(Debug)]
struct StickyTokens {
    cookie: String,
    /// `tokens[i]` names `backends[i]`.
    tokens: Vec<String>,
}

/// How a pool picks, by `balance`: smooth weighted round robin (nginx's algorithm),
/// weighted rendezvous hashing on the client IP (IPv6 keyed by /64), least
/// connections relative to weight, or the sticky cookie's backend.
#[derive(Debug)]
enum Picker {
    /// Current weights of the smooth weighted round robin, one per backend.
    RoundRobin(Mutex<Vec<i64>>),
    IpHash,
    /// Rotating start so that ties are spread instead of always hitting the first.
    LeastConn(AtomicUsize),
    /// The cookie's backend; round robin (these weights) for clients without one.
    Cookie(Mutex<Vec<i64>>),
}

impl Pool {
    /// Builds the pool `conf` describes. `reuse` returns the live backend of an
    /// identity, if one exists (from an earlier generation): it keeps its state, and
    /// takes the new settings when the generation is published (`Backend::apply`).
    /// Other backends are new, and start healthy.
    pub fn build(
        conf: &config::Pool,
        mut reuse: impl FnMut(&BackendId) -> Option<Arc<Backend>>,
    ) -> Pool {
        let backends: Vec<Arc<Backend>> = conf
            .backends
            .iter()
            .map(|b| {
                let id = BackendId {
                    pool: conf.name.clone(),
                    address: b.address.clone(),
                    addr: b.addr,
                };
                reuse(&id).unwrap_or_else(|| Arc::new(Backend::new(conf, b)))
            })
            .collect();
        let picker = match conf.balance {
            Balance::RoundRobin => Picker::RoundRobin(Mutex::new(vec![0; backends.len()])),
            Balance::IpHash => Picker::IpHash,
            Balance::LeastConn => Picker::LeastConn(AtomicUsize::new(0)),
            Balance::Cookie => Picker::Cookie(Mutex::new(vec![0; backends.len()])),
        };
        // The value names the backend by its identity (pool, address as written),
        // never by anything a reload changes (weight, position).
        let sticky = conf.sticky.as_ref().map(|s| StickyTokens {
            cookie: s.cookie.clone(),
            tokens: conf
                .backends
                .iter()
                .map(|b| keyed_token(&s.key.0, &[&conf.name, &b.address]))
                .collect(),
        });
        crate::lag::ensure();
        Pool {
            name: conf.name.clone(),
            conf: conf.clone(),
            backends,
            tls: None,
            picker,
            sticky,
            panic: AtomicBool::new(false),
            ejecting: Mutex::new(()),
        }
    }

    /// This pool talking TLS to its backends.
    pub fn with_tls(mut self, tls: Option<Arc<UpstreamTls>>) -> Pool {
        self.tls = tls;
        self
    }

    /// After a publish: closes the idle plain-HTTP connections of this pool's backends
    /// unless `old` (the same pool in the generation before) has the very same TLS
    /// settings. A reload loads them again (a CA file may have changed), a DNS update
    /// keeps them; a kept-alive connection must not outlive the settings it was
    /// opened and verified with.
    pub fn drop_idle_opened_before(&self, old: Option<&Pool>) {
        let same = old.is_some_and(|o| match (&o.tls, &self.tls) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        });
        if !same {
            for b in &self.backends {
                b.idle.clear();
            }
        }
    }

    /// Picks a backend for `client`, never one of `exclude` (backends already tried
    /// for this request). `None` when no backend is eligible.
    pub fn pick(&self, client: IpAddr, exclude: &[usize]) -> Option<Lease> {
        self.pick_for(client, None, exclude)
    }

    /// The sticky cookie's name, with `balance = "cookie"`.
    pub fn sticky_cookie(&self) -> Option<&str> {
        self.sticky.as_ref().map(|s| s.cookie.as_str())
    }

    /// Like `pick`; with `balance = "cookie"`, `cookie` is the value of the sticky
    /// cookie the client sent (a keyed hash naming one backend, `hash::keyed_token`):
    /// its backend is taken while it is pickable; a client without a usable one gets
    /// round robin (and then a new cookie, `sticky_set_cookie`).
    ///
    /// Only `Backend::pickable` backends are picked (up, not ejected, not draining),
    /// unless the pool panics (`panicking`): then passive ejections stop counting
    /// and it balances over every backend not draining and not down by active
    /// checks (`Backend::panic_pickable`; Envoy's panic mode: some service beats
    /// none). With none left the caller answers 503 with Retry-After at once.
    pub fn pick_for(
        &self,
        client: IpAddr,
        cookie: Option<&str>,
        exclude: &[usize],
    ) -> Option<Lease> {
        let panic = self.panicking();
        let eligible = |i: usize| {
            let b = &self.backends[i];
            !exclude.contains(&i)
                && if panic {
                    b.panic_pickable()
                } else {
                    b.pickable()
                }
        };
        let i = match &self.picker {
            Picker::Cookie(current) => {
                let named = cookie.and_then(|c| self.sticky_index(c));
                match named.filter(|&i| eligible(i)) {
                    Some(i) => Some(i),
                    None => {
                        let mut current = current.lock().unwrap_or_else(|e| e.into_inner());
                        smooth_weighted(&self.backends, &mut current, eligible)
                    }
                }
            }
            Picker::RoundRobin(current) => {
                let mut current = current.lock().unwrap_or_else(|e| e.into_inner());
                smooth_weighted(&self.backends, &mut current, eligible)
            }
            Picker::IpHash => rendezvous(&self.backends, hash_key(client), eligible),
            Picker::LeastConn(rot) => least_conn(
                &self.backends,
                rot.fetch_add(1, Ordering::Relaxed),
                eligible,
            ),
        }?;
        Some(Lease::new(self.backends[i].clone(), i))
    }

    /// Whether the pool is in panic mode now: fewer than `panic_threshold` percent of
    /// its backends that are not draining are pickable. A change is logged once.
    pub fn panicking(&self) -> bool {
        let threshold = self.conf.outlier.panic_threshold as usize;
        if threshold == 0 {
            return false;
        }
        let (mut pickable, mut total) = (0usize, 0usize);
        for b in &self.backends {
            if !b.draining() && !b.is_removed() {
                total += 1;
                pickable += usize::from(b.pickable());
            }
        }
        let panic = total > 0 && pickable * 100 < threshold * total;
        if self.panic.swap(panic, Ordering::Relaxed) != panic {
            if panic {
                tracing::warn!(pool = %self.name, "pool in PANIC: {pickable} of {total} backends pickable, below panic_threshold {threshold}%: passive ejections ignored");
            } else {
                tracing::warn!(pool = %self.name, "pool out of panic: {pickable} of {total} backends pickable");
            }
        }
        panic
    }

    /// How many backends passive checks may hold ejected at once.
    fn ejections_allowed(&self) -> usize {
        let percent = self.conf.outlier.max_ejection_percent as usize;
        let n = self
            .backends
            .iter()
            .filter(|b| !b.draining() && !b.is_removed())
            .count();
        if percent == 0 {
            0
        } else {
            (n * percent / 100).max(1)
        }
    }

    /// The attempt on `lease`'s backend failed (passive checks). The pool bounds
    /// ejections here: passive checks may hold at most `max_ejection_percent` of the
    /// backends not draining ejected (at least one above 0 %: even a pool's only
    /// backend, which panic mode then still picks, while a route with other pools
    /// sends its clients there). A timeout while wsgate itself is late (`lag.rs`) does
    /// not count against the backend. Active checks are not bounded: a backend that
    /// fails them is down.
    pub fn record_failure(&self, lease: &Lease, why: Failure) {
        self.failed(lease.index, lease.picked, why);
    }

    /// The attempt on backend `index` was cut short by `upstream_deadline`: a timeout
    /// of an attempt that began at most that long ago.
    pub fn record_cut_short(&self, index: usize) {
        let began = Instant::now()
            .checked_sub(self.conf.upstream_deadline)
            .unwrap_or_else(Instant::now);
        self.failed(index, began, Failure::Timeout);
    }

    fn failed(&self, index: usize, began: Instant, why: Failure) {
        let Some(b) = self.backends.get(index) else {
            return;
        };
        if self.conf.passive.is_none() {
            return;
        }
        if why == Failure::Timeout && crate::lag::overloaded() {
            tracing::debug!(pool = %self.name, backend = %b.addr, lag = ?crate::lag::recent(), "timeout not counted against the backend: wsgate itself is running late");
            return;
        }
        let _one = self.ejecting.lock().unwrap_or_else(|e| e.into_inner());
        let ejected = self
            .backends
            .iter()
            .filter(|o| !Arc::ptr_eq(o, b) && !o.draining() && o.is_ejected())
            .count();
        b.record_failure(began, ejected < self.ejections_allowed());
    }

    /// The backend a sticky-cookie value names.
    fn sticky_index(&self, value: &str) -> Option<usize> {
        let s = self.sticky.as_ref()?;
        s.tokens.iter().position(|t| t == value)
    }

    /// The `Set-Cookie` a client needs after landing on backend `index`, having sent
    /// `sent` as the sticky cookie: `None` when it already names that backend (or
    /// the pool is not sticky).
    pub fn sticky_set_cookie(
        &self,
        index: usize,
        sent: Option<&str>,
        tls: bool,
    ) -> Option<hyper::header::HeaderValue> {
        let s = self.sticky.as_ref()?;
        let token = s.tokens.get(index)?;
        if sent == Some(token.as_str()) {
            return None;
        }
        crate::backends::cookie::set_cookie(&s.cookie, token, tls)
    }
}

fn smooth_weighted(
    backends: &[Arc<Backend>],
    current: &mut [i64],
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut total = 0i64;
    let mut best: Option<usize> = None;
    for (i, b) in backends.iter().enumerate() {
        if !eligible(i) {
            continue;
        }
        let w = i64::from(b.effective_weight());
        current[i] += w;
        total += w;
        if best.is_none_or(|j| current[i] > current[j]) {
            best = Some(i);
        }
    }
    let i = best?;
    current[i] -= total;
    Some(i)
}

/// Weighted rendezvous hashing (score = -weight / ln(u)): removing a backend moves
/// only the keys that were on it.
fn rendezvous(
    backends: &[Arc<Backend>],
    key: u64,
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, b) in backends.iter().enumerate() {
        if !eligible(i) {
            continue;
        }
        let score = rendezvous_score(key, b.seed, b.weight());
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

/// The weighted rendezvous score of `key` for a member with `seed` and `weight`: the
/// member with the highest score takes the key. Raising one member's weight only
/// moves keys to it; removing a member only moves the keys it had.
pub(crate) fn rendezvous_score(key: u64, seed: u64, weight: u32) -> f64 {
    let h = fmix64(key ^ seed);
    // u in (0, 1): 53 random bits, never 0.
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(weight) / u.ln()
}

fn least_conn(
    backends: &[Arc<Backend>],
    start: usize,
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let n = backends.len();
    let mut best: Option<(usize, u64, u64)> = None; // (index, active, weight)
    for k in 0..n {
        let i = (start + k) % n;
        if !eligible(i) {
            continue;
        }
        let (a, w) = (
            backends[i].active() as u64,
            u64::from(backends[i].effective_weight()),
        );
        // a/w < ba/bw  <=>  a*bw < ba*w
        if best.is_none_or(|(_, ba, bw)| a * bw < ba * w) {
            best = Some((i, a, w));
        }
    }
    best.map(|(i, _, _)| i)
}

/// The hashing key of a client: the whole IPv4 address, or the /64 of an IPv6 one.
pub(crate) fn hash_key(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => fmix64(u64::from(u32::from(v4)) | (4 << 56)),
        IpAddr::V6(v6) => fmix64((u128::from(v6) >> 64) as u64 ^ (6 << 56)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn pool(weights: &[u32], balance: Balance) -> Pool {
        let mut text = "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = false\n\
                        [[route]]\npool = \"t\"\n[[pool]]\nname = \"t\"\n"
            .to_string();
        for (i, w) in weights.iter().enumerate() {
            text += &format!(
                "[[pool.backend]]\naddress = \"127.0.0.1:{}\"\nweight = {w}\n",
                9000 + i
            );
        }
        if balance == Balance::Cookie {
            text = text.replace("name = \"t\"\n", "name = \"t\"\nbalance = \"cookie\"\n");
        }
        let mut conf = config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
        conf.pools[0].balance = balance;
        Pool::build(&conf.pools[0], |_| None)
    }

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn smooth_weights_interleave() {
        let p = pool(&[5, 1, 1], Balance::RoundRobin);
        let seq: String = (0..7)
            .map(|_| (b'a' + p.pick(LOCAL, &[]).unwrap().index() as u8) as char)
            .collect();
        assert_eq!(seq, "aabacaa");
    }

    #[test]
    fn round_robin_skips_excluded() {
        let p = pool(&[1, 1, 1], Balance::RoundRobin);
        for _ in 0..10 {
            assert_ne!(p.pick(LOCAL, &[1]).unwrap().index(), 1);
        }
        assert!(p.pick(LOCAL, &[0, 1, 2]).is_none());
    }

    #[test]
    fn rendezvous_moves_only_the_removed_backends_clients() {
        let p = pool(&[1, 2, 1, 1], Balance::IpHash);
        let ips: Vec<IpAddr> = (0..10_000u32)
            .map(|i| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i * 7)))
            .collect();
        let before: Vec<usize> = ips
            .iter()
            .map(|ip| p.pick(*ip, &[]).unwrap().index())
            .collect();
        let mut counts = [0usize; 4];
        for b in &before {
            counts[*b] += 1;
        }
        // weight 2 gets about 2/5 of 10000; the others about 1/5 each.
        assert!((3600..4400).contains(&counts[1]), "{counts:?}");
        for c in [counts[0], counts[2], counts[3]] {
            assert!((1600..2400).contains(&c), "{counts:?}");
        }
        for (ip, b) in ips.iter().zip(&before) {
            let after = p.pick(*ip, &[2]).unwrap().index();
            if *b != 2 {
                assert_eq!(after, *b, "a client of a surviving backend moved");
            }
        }
    }

    #[test]
    fn ipv6_is_keyed_by_slash_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(hash_key(a), hash_key(b));
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_ne!(hash_key(a), hash_key(c));
    }

    #[test]
    fn least_conn_relative_to_weight() {
        let p = pool(&[1, 2], Balance::LeastConn);
        let mut held = Vec::new();
        for _ in 0..30 {
            held.push(p.pick(LOCAL, &[]).unwrap());
        }
        assert_eq!(p.backends[0].active(), 10);
        assert_eq!(p.backends[1].active(), 20);
        held.retain(|l| l.index() != 0);
        assert_eq!(p.pick(LOCAL, &[]).unwrap().index(), 0);
        drop(held);
        assert_eq!(p.backends[1].active(), 0);
    }

    #[test]
    fn down_and_draining_backends_are_never_picked() {
        for balance in [
            Balance::RoundRobin,
            Balance::IpHash,
            Balance::LeastConn,
            Balance::Cookie,
        ] {
            let p = pool(&[5, 1, 1], balance);
            p.backends[0].record_check(
                Err(crate::backends::probe::ProbeError::Timeout(
                    std::time::Duration::from_secs(1),
                )),
                1,
                1,
            ); // down
            p.backends[2].set_drain(true);
            for i in 0..50u32 {
                let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
                assert_eq!(p.pick(ip, &[]).unwrap().index(), 1, "{balance:?}");
            }
            assert!(
                p.pick(LOCAL, &[1]).is_none(),
                "{balance:?}: only down/draining/excluded left"
            );
            p.backends[0].record_check(Ok(()), 1, 1);
            assert!(
                (0..20).any(|_| p.pick(LOCAL, &[]).unwrap().index() == 0),
                "{balance:?}: back up"
            );
        }
    }

    #[test]
    fn cookie_names_its_backend_while_pickable() {
        let p = pool(&[1, 1, 1], Balance::Cookie);
        let token = |i: usize| {
            let v = p.sticky_set_cookie(i, None, false).unwrap();
            let v = v.to_str().unwrap().to_string();
            v["wsgate_srv=".len()..v.find(';').unwrap()].to_string()
        };
        assert_ne!(token(0), token(1));
        assert!(!token(0).contains("9000"), "the value is not the address");
        for _ in 0..10 {
            let l = p.pick_for(LOCAL, Some(&token(2)), &[]).unwrap();
            assert_eq!(l.index(), 2);
            assert!(p.sticky_set_cookie(2, Some(&token(2)), false).is_none());
        }
        // Without a cookie (or with a bad one): round robin over all of them.
        let seq: Vec<usize> = (0..6)
            .map(|_| p.pick_for(LOCAL, Some("bogus"), &[]).unwrap().index())
            .collect();
        assert_eq!(seq, [0, 1, 2, 0, 1, 2]);
        // Its backend down: rebalanced, and the client needs a new cookie.
        p.backends[2].set_drain(true);
        let l = p.pick_for(LOCAL, Some(&token(2)), &[]).unwrap();
        assert_ne!(l.index(), 2);
        assert!(
            p.sticky_set_cookie(l.index(), Some(&token(2)), false)
                .is_some()
        );
        // Excluded (already tried for this request): the same.
        p.backends[2].set_drain(false);
        assert_ne!(p.pick_for(LOCAL, Some(&token(2)), &[2]).unwrap().index(), 2);
    }

    #[test]
    fn cookie_values_survive_a_rebuild_and_reorder() {
        let a = pool(&[1, 1], Balance::Cookie);
        let mut conf = a.conf.clone();
        conf.backends.reverse();
        conf.backends[0].weight = 7;
        let b = Pool::build(&conf, |_| None);
        let va = a.sticky_set_cookie(0, None, true).unwrap();
        let vb = b.sticky_set_cookie(1, None, true).unwrap();
        assert_eq!(
            va, vb,
            "the same backend has the same value in any position"
        );
    }

    fn with_keys(weights: &[u32], keys: &str) -> Pool {
        let p = pool(weights, Balance::RoundRobin);
        let mut text = "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = false\n\
                        [[route]]\npool = \"t\"\n[[pool]]\nname = \"t\"\n"
            .to_string();
        text += keys;
        text += "\n[[pool.backend]]\naddress = \"127.0.0.1:1\"\n";
        let conf = config::Config::parse(&text, std::path::Path::new("t.toml")).unwrap();
        let mut c = p.conf.clone();
        c.passive = conf.pools[0].passive;
        c.outlier = conf.pools[0].outlier;
        Pool::build(&c, |_| None)
    }

    fn down(b: &Backend) {
        b.record_check(
            Err(crate::backends::probe::ProbeError::Timeout(
                std::time::Duration::from_secs(1),
            )),
            1,
            1,
        );
    }

    #[test]
    fn passive_checks_eject_at_most_max_ejection_percent() {
        let fail = |p: &Pool, i: usize, n: usize| {
            for _ in 0..n {
                p.failed(i, Instant::now(), Failure::Error);
            }
        };
        // 10 % of 3 is 0 backends, but one may always go.
        let p = with_keys(&[1, 1, 1], "");
        fail(&p, 0, 4);
        assert!(p.backends[0].pickable(), "four in a row are not five");
        fail(&p, 0, 1);
        assert!(p.backends[0].is_ejected());
        fail(&p, 1, 20);
        assert!(
            p.backends[1].pickable(),
            "a second ejection exceeds the bound"
        );
        // Active checks are not bounded.
        down(&p.backends[2]);
        assert!(!p.backends[2].pickable());
        // Half of four may go.
        let p = with_keys(
            &[1, 1, 1, 1],
            "max_ejection_percent = 50\nconsecutive_failures = 1",
        );
        (0..4).for_each(|i| fail(&p, i, 1));
        let out = p.backends.iter().filter(|b| b.is_ejected()).count();
        assert_eq!(out, 2);
        // A pool's only backend may be ejected (a route with other pools then sends
        // its clients there), but panic mode keeps it in its own pool's service.
        let p = with_keys(&[1], "consecutive_failures = 1");
        fail(&p, 0, 1);
        assert!(p.backends[0].is_ejected() && !p.backends[0].pickable());
        assert!(p.panicking());
        assert_eq!(p.pick(LOCAL, &[]).unwrap().index(), 0);
        // 0 %: passive checks eject nothing.
        let p = with_keys(&[1, 1], "max_ejection_percent = 0\nmax_fails = 1");
        fail(&p, 0, 5);
        assert!(p.backends[0].pickable());
    }

    #[test]
    fn below_the_panic_threshold_passive_ejections_are_ignored() {
        let p = with_keys(
            &[1, 1, 1, 1],
            "consecutive_failures = 1\nmax_ejection_percent = 100",
        );
        let eject = |i: usize| p.failed(i, Instant::now(), Failure::Error);
        eject(0);
        eject(1);
        assert!(!p.panicking(), "2 of 4 is not below 50 %");
        assert!((0..20).all(|_| p.pick(LOCAL, &[]).unwrap().index() >= 2));
        eject(2);
        assert!(p.panicking(), "1 of 4 is");
        let mut seen = [false; 4];
        (0..20).for_each(|_| seen[p.pick(LOCAL, &[]).unwrap().index()] = true);
        assert_eq!(seen, [true; 4], "every backend in panic");
        // Draining and down by active checks: never, panic or not.
        p.backends[3].set_drain(true);
        down(&p.backends[2]);
        assert!(p.panicking());
        assert!((0..20).all(|_| p.pick(LOCAL, &[]).unwrap().index() < 2));
        assert!(p.pick(LOCAL, &[0, 1]).is_none(), "excluded stay excluded");
        p.backends[3].set_drain(false);
        assert!(p.panicking(), "1 of 4");
        p.backends[0].set_drain(true);
        p.backends[1].set_drain(true);
        assert!(!p.panicking(), "out of panic: 1 of 2 not draining");
        assert!((0..20).all(|_| p.pick(LOCAL, &[]).unwrap().index() == 3));
        // panic_threshold = 0: never.
        let p = with_keys(
            &[1, 1],
            "consecutive_failures = 1\nmax_ejection_percent = 100\npanic_threshold = 0",
        );
        p.failed(0, Instant::now(), Failure::Error);
        p.failed(1, Instant::now(), Failure::Error);
        assert!(!p.panicking());
        assert!(p.pick(LOCAL, &[]).is_none());
    }

    #[test]
    fn smooth_weights_hold_over_the_healthy_set() {
        let p = pool(&[5, 1, 1, 3], Balance::RoundRobin);
        p.backends[3].record_check(
            Err(crate::backends::probe::ProbeError::Timeout(
                std::time::Duration::from_secs(1),
            )),
            1,
            1,
        );
        let seq: String = (0..7)
            .map(|_| (b'a' + p.pick(LOCAL, &[]).unwrap().index() as u8) as char)
            .collect();
        assert_eq!(seq, "aabacaa");
    }
}
