//! `[limits]`: admission control, per-session limits and the pace of proxied
//! request bodies, and `[route.limits]` overrides. Connection-level keys are decided
//! before TLS, when no route is known yet, so only session-level keys (a WebSocket
//! session's, or a proxied request's on the route) may be overridden per route.
//!
//! Owns: every limit, each written once in the `limits!` table below (key, type,
//! default, its value when unlimited, the check of its value), from which the
//! macro makes `Limits` (`[limits]`), `RouteLimits`, `SessionLimits` and their
//! defaults, merge and checks. Does not own: enforcing them (accept/, relay/).

use super::duration::Dur;
use super::types::{Cidr, MemoryLimit};
use serde::Deserialize;

/// Makes the limit types from one table. Each entry is
/// `key: Type = default[, unlimited value][, refuse |v| bad(v) => "message"];`:
/// a `connection` key is a field of `Limits`; a `session` key (with its value in
/// `SessionLimits::unlimited`) is also a field of `RouteLimits` (optional there) and
/// of `SessionLimits` (the route's value, else `[limits]`'s). Session values are
/// `Copy`. Keys are read and checked in table order; checks between two keys are
/// in `SessionLimits::problems`.
macro_rules! limits {
    (
        connection {$(
            $(#[$cmeta:meta])*
            $c:ident: $cty:ty = $cdefault:expr
            $(, refuse |$cv:ident| $cbad:expr => $cmsg:literal)?;
        )*}
        session {$(
            $(#[$smeta:meta])*
            $s:ident: $sty:ty = $sdefault:expr, unlimited $soff:expr
            $(, refuse |$sv:ident| $sbad:expr => $smsg:literal)?;
        )*}
    ) => {
        /// `[limits]`. A value of 0 (or "0s") turns a session limit off.
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Limits {
            $($(#[$cmeta])* pub $c: $cty,)*
            $($(#[$smeta])* pub $s: $sty,)*
        }

        impl Default for Limits {
            fn default() -> Self {
                Limits {
                    $($c: $cdefault,)*
                    $($s: $sdefault,)*
                }
            }
        }

        /// `[route.limits]`: the session keys of `[limits]`, each optional.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct RouteLimits {
            $($(#[$smeta])* pub $s: Option<$sty>,)*
        }

        /// The limits one session runs under: `[limits]` with its route's overrides applied.
        #[derive(Debug, Clone, PartialEq)]
        pub struct SessionLimits {
            $($(#[$smeta])* pub $s: $sty,)*
        }

        impl Limits {
            /// Semantic problems of `[limits]` as (key, message): the connection keys,
            /// then the session keys.
            pub fn problems(&self) -> Vec<(&'static str, String)> {
                let mut out = Vec::new();
                $($(
                    let $cv = &self.$c;
                    if $cbad {
                        out.push((stringify!($c), String::from($cmsg)));
                    }
                )?)*
                out.extend(SessionLimits::resolve(self, None).problems());
                out
            }
        }

        impl SessionLimits {
            pub fn resolve(d: &Limits, r: Option<&RouteLimits>) -> SessionLimits {
                let r = r.cloned().unwrap_or_default();
                SessionLimits {
                    $($s: r.$s.unwrap_or(d.$s),)*
                }
            }

            /// No limit at all (for tools and tests that want a bare relay); UTF-8 is
            /// still checked, as by default.
            pub fn unlimited() -> SessionLimits {
                SessionLimits {
                    $($s: $soff,)*
                }
            }

            /// Semantic problems as (key, message), checked for `[limits]` and each
            /// override: each key's own check, then those between keys.
            pub fn problems(&self) -> Vec<(&'static str, String)> {
                let mut out = Vec::new();
                $($(
                    let $sv = &self.$s;
                    if $sbad {
                        out.push((stringify!($s), String::from($smsg)));
                    }
                )?)*
                out.extend(self.between_keys());
                out
            }
        }
    };
}

limits! {
    connection {
        /// Concurrent client connections, all IPs together; at the limit accept pauses.
        /// Absent: derived from the open-file limit (two descriptors per session).
        max_connections: Option<usize> = None,
            refuse |n| *n == Some(0)
                => "must be at least 1 (leave it out to derive it from the open-file limit)";
        /// Concurrent connections from one client IP (IPv6: one prefix).
        max_connections_per_ip: usize = 256,
            refuse |n| *n == 0 => "must be at least 1";
        /// New connections per second per client IP (token bucket refill rate).
        connect_rate: f64 = 20.0,
            refuse |r| !r.is_finite() || *r <= 0.0 || *r > 1e6
                => "must be a number of connections per second, > 0";
        /// Token bucket size: new connections one IP may open at once.
        connect_burst: u32 = 100,
            refuse |n| *n == 0 => "must be at least 1";
        /// IPv6 clients are keyed by this prefix length.
        ipv6_prefix: u8 = 64,
            refuse |p| !(1..=128).contains(p) => "must be between 1 and 128";
        /// CIDRs exempt from the per-IP limits (not from max_connections).
        exempt: Vec<Cidr> = Vec::new();
        /// New connections per second, all clients together (a token bucket the accept
        /// loop waits on). Absent: 1000 per worker thread. 0 turns it off.
        max_connect_rate: Option<f64> = None,
            refuse |r| r.is_some_and(|r| !r.is_finite() || !(0.0..=1e7).contains(&r))
                => "must be a number of connections per second >= 0 (0 = off)";
        /// That bucket's size. Absent: one second's worth.
        max_connect_burst: Option<u32> = None,
            refuse |n| *n == Some(0) => "must be at least 1";
        /// Resident memory above which accepting pauses. Absent: 90 % of the cgroup's
        /// memory limit if there is one, else none.
        max_memory: Option<MemoryLimit> = None;
    }
    session {
        /// Data messages per second the client may send to the backend (0: no limit).
        message_rate: f64 = 100.0, unlimited 0.0,
            refuse |r| !r.is_finite() || *r < 0.0
                => "must be a number of messages per second >= 0 (0 = off)";
        /// The burst: messages the client may send at once.
        message_burst: u32 = 200, unlimited 1,
            refuse |n| *n == 0 => "must be at least 1";
        /// Over `message_rate`: throttle (stop reading from the client) or close (1008).
        on_exceed: OnExceed = OnExceed::Throttle, unlimited OnExceed::Throttle;
        /// Client -> backend: largest message, fragments summed (then 1009; 0: no limit).
        max_message_bytes: u64 = 16 << 20, unlimited 0;
        /// Client -> backend: largest frame (then 1009; 0: no limit).
        max_frame_bytes: u64 = 16 << 20, unlimited 0;
        /// Backend -> client: largest message (0: no limit, the default).
        backend_max_message_bytes: u64 = 0, unlimited 0;
        /// Backend -> client: largest frame (0: no limit, the default).
        backend_max_frame_bytes: u64 = 0, unlimited 0;
        /// Check that the client's text messages are UTF-8 (1007 if not).
        validate_utf8: bool = true, unlimited true;
        /// Check that the backend's text messages are UTF-8.
        backend_validate_utf8: bool = true, unlimited true;
        /// Silence from the client after which it is sent a Ping ("0s": never).
        ping_interval: Dur = Dur::secs(30), unlimited Dur::secs(0);
        /// Silence from the client after which the session ends ("0s": never).
        idle_timeout: Dur = Dur::secs(90), unlimited Dur::secs(0);
        /// Hard cap on a session's life, 1001 to both sides ("0s": none).
        max_session_duration: Dur = Dur::secs(0), unlimited Dur::secs(0);
        /// Proxied HTTP (`http = "proxy"`): this much of a request body is read from
        /// the client before a backend is chosen; a body that ends within it is sent
        /// whole (0: every body streams as it comes).
        request_buffer_bytes: u64 = 64 << 10, unlimited 0,
            refuse |n| *n > MAX_REQUEST_BUFFER
                => "must be at most 67108864 (64 MiB): it is held in memory per request";
        /// Proxied HTTP: the slowest a request body may arrive, bytes per second on
        /// average from its start, once `request_body_min_rate_grace` is used up
        /// (then 408; 0: off).
        request_body_min_rate: u64 = 1024, unlimited 0;
        /// How far behind `request_body_min_rate` a body may fall: the body must have
        /// arrived by its start + this + bytes received / rate.
        request_body_min_rate_grace: Dur = Dur::secs(10), unlimited Dur::secs(0);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExceed {
    /// Stop reading from the client until a token is available (TCP backpressure).
    #[default]
    Throttle,
    /// Close 1008 to the client, 1001 to the backend.
    Close,
}

/// Largest `request_buffer_bytes`.
const MAX_REQUEST_BUFFER: u64 = 64 << 20;

impl SessionLimits {
    /// The checks that involve two keys.
    fn between_keys(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let (p, i) = (self.ping_interval.get(), self.idle_timeout.get());
        if !p.is_zero() && !i.is_zero() && i <= p {
            out.push((
                "idle_timeout",
                format!("must be longer than ping_interval ({p:?}) so a ping can be answered"),
            ));
        }
        if self.request_body_min_rate > 0 && self.request_body_min_rate_grace.get().is_zero() {
            out.push((
                "request_body_min_rate_grace",
                "must be greater than zero while request_body_min_rate is on (0 would cut \
                 every body before its first byte)"
                    .into(),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(l: &Limits) -> Vec<&'static str> {
        l.problems().into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn request_body_keys_are_checked() {
        let ok = Limits::default();
        assert!(keys(&ok).is_empty(), "{:?}", ok.problems());
        let l = Limits {
            request_buffer_bytes: MAX_REQUEST_BUFFER + 1,
            request_body_min_rate_grace: Dur::secs(0),
            ..Limits::default()
        };
        assert_eq!(
            keys(&l),
            ["request_buffer_bytes", "request_body_min_rate_grace"]
        );
        // No grace is needed while the rate is off.
        let off = Limits {
            request_body_min_rate: 0,
            request_body_min_rate_grace: Dur::secs(0),
            ..Limits::default()
        };
        assert!(keys(&off).is_empty(), "{:?}", off.problems());
    }
}
