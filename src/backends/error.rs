//! Why a backend could not be used (`UpstreamError`), and what wsgate itself ran
//! out of on the way (`LocalReason`).
//!
//! Owns: the kinds of failure, their wording and causes (`source()`), the reason
//! label each gives `wsgate_backend_failures_total`, telling wsgate's own shortage
//! (no ephemeral port, descriptor, buffer or memory) from the backend's failure,
//! and whether another backend is worth trying after one (`local_retry`). Does not
//! own: connecting (connect.rs, socket.rs) or retrying (http/upgrade.rs, forward.rs).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Why a backend could not be used; each counts against it and may be retried
/// elsewhere, except `Local`: wsgate's own shortage, which is no fault of the backend.
/// `Display` names the backend and what failed; `source()` gives the io, TLS or HTTP
/// error beneath (log it with `errors::ErrorChain`).
#[derive(Debug)]
pub enum UpstreamError {
    Connect(SocketAddr, std::io::Error),
    /// socket, bind or connect failed for want of something on wsgate's own side: an
    /// ephemeral port toward this address (from `from`, when the pool binds one), a
    /// file descriptor, socket buffers or memory.
    Local {
        backend: SocketAddr,
        from: Option<IpAddr>,
        reason: LocalReason,
        error: std::io::Error,
    },
    ConnectTimeout(SocketAddr),
    /// The TLS handshake failed (certificate not verified, no common version...).
    Tls(SocketAddr, std::io::Error),
    Http(SocketAddr, hyper::Error),
    UpgradeTimeout(SocketAddr),
    NotWebSocket(SocketAddr),
    BadAccept(SocketAddr),
    BadProtocol(SocketAddr, String),
    BadExtension(SocketAddr, String),
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use UpstreamError::*;
        match self {
            Connect(a, _) => write!(f, "backend {a}: connect failed"),
            Local {
                backend,
                from,
                reason,
                ..
            } => {
                write!(f, "backend {backend}: ")?;
                if let Some(ip) = from {
                    write!(f, "from {ip}: ")?;
                }
                write!(f, "wsgate is out of local resources ({})", reason.label())
            }
            ConnectTimeout(a) => write!(f, "backend {a}: connect timed out"),
            Tls(a, _) => write!(f, "backend {a}: TLS handshake failed"),
            Http(a, _) => write!(f, "backend {a}: bad HTTP answer to the upgrade"),
            UpgradeTimeout(a) => write!(f, "backend {a}: no answer to the upgrade in time"),
            NotWebSocket(a) => write!(
                f,
                "backend {a}: 101 without Upgrade: websocket / Connection: upgrade"
            ),
            BadAccept(a) => write!(f, "backend {a}: wrong Sec-WebSocket-Accept"),
            BadProtocol(a, p) => write!(
                f,
                "backend {a}: chose subprotocol {p:?} the client did not offer"
            ),
            BadExtension(a, e) => write!(
                f,
                "backend {a}: chose extension {e:?} the client did not offer"
            ),
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        use UpstreamError::*;
        match self {
            Connect(_, e) | Tls(_, e) | Local { error: e, .. } => Some(e),
            Http(_, e) => Some(e),
            ConnectTimeout(_) | UpgradeTimeout(_) | NotWebSocket(_) | BadAccept(_)
            | BadProtocol(..) | BadExtension(..) => None,
        }
    }
}

impl UpstreamError {
    /// The `reason` label of `wsgate_backend_failures_total`.
    pub fn reason(&self) -> &'static str {
        use UpstreamError::*;
        match self {
            Connect(..) => "connect_failed",
            Local { reason, .. } => reason.label(),
            ConnectTimeout(_) => "connect_timeout",
            Http(..) => "bad_http",
            UpgradeTimeout(_) => "upgrade_timeout",
            NotWebSocket(_) => "not_websocket",
            BadAccept(_) => "bad_accept",
            BadProtocol(..) => "bad_subprotocol",
            BadExtension(..) => "bad_extension",
            Tls(..) => "tls_failed",
        }
    }

    /// What ran out on wsgate's side, when this is no fault of the backend.
    pub fn local(&self) -> Option<LocalReason> {
        match self {
            UpstreamError::Local { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}

/// What wsgate itself ran out of when it tried to open a backend connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalReason {
    /// EADDRNOTAVAIL: every ephemeral port toward this address (from this source
    /// address) is taken, or a `source_addresses` entry is not on this host.
    AddrNotAvail,
    /// EMFILE: the process's open-file limit.
    Mfile,
    /// ENFILE: the system's open-file limit.
    Nfile,
    /// ENOBUFS: no socket buffer space.
    Nobufs,
    /// ENOMEM: no kernel memory.
    Nomem,
}

impl LocalReason {
    pub const ALL: [LocalReason; 5] = [
        LocalReason::AddrNotAvail,
        LocalReason::Mfile,
        LocalReason::Nfile,
        LocalReason::Nobufs,
        LocalReason::Nomem,
    ];

    /// The local shortage `e` (from socket, bind or connect) reports, if it is one.
    pub fn of(e: &std::io::Error) -> Option<LocalReason> {
        use rustix::io::Errno;
        let errno = Errno::from_io_error(e)?;
        Some(match errno {
            Errno::ADDRNOTAVAIL => LocalReason::AddrNotAvail,
            Errno::MFILE => LocalReason::Mfile,
            Errno::NFILE => LocalReason::Nfile,
            Errno::NOBUFS => LocalReason::Nobufs,
            Errno::NOMEM => LocalReason::Nomem,
            _ => return None,
        })
    }

    /// The `reason` label of `wsgate_local_exhaustion_total` (one of
    /// `metrics::local::REASONS`).
    pub fn label(self) -> &'static str {
        match self {
            LocalReason::AddrNotAvail => "eaddrnotavail",
            LocalReason::Mfile => "emfile",
            LocalReason::Nfile => "enfile",
            LocalReason::Nobufs => "enobufs",
            LocalReason::Nomem => "enomem",
        }
    }

    /// Whether another backend address may still work: ephemeral ports run out per
    /// destination, so another address has ports of its own; descriptors, buffers
    /// and memory are the whole process's (or machine's), so trying elsewhere would
    /// only pile on.
    pub fn per_destination(self) -> bool {
        self == LocalReason::AddrNotAvail
    }
}

/// A connect error, told apart: wsgate's own shortage (`Local`) or the backend's.
pub(crate) fn connect_error(
    backend: SocketAddr,
    from: Option<IpAddr>,
    error: std::io::Error,
) -> UpstreamError {
    match LocalReason::of(&error) {
        Some(reason) => UpstreamError::Local {
            backend,
            from,
            reason,
            error,
        },
        None => UpstreamError::Connect(backend, error),
    }
}

/// Whether to try another backend after an attempt that failed with `local` (what
/// wsgate itself ran out of; `None`: the backend failed, try the next as usual).
/// Out of ephemeral ports toward one address, one other address is tried (it has
/// ports of its own), once per request; out of descriptors or memory, nothing is
/// (every backend would fail the same way, and each attempt would pile on).
pub(crate) fn local_retry(local: Option<LocalReason>, retried: &mut bool) -> bool {
    match local {
        None => true,
        Some(r) if r.per_destination() && !*retried => {
            *retried = true;
            true
        }
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_shows_once() {
        let addr: SocketAddr = "192.0.2.1:443".parse().unwrap();
        let e = UpstreamError::Tls(addr, std::io::Error::other("UnknownIssuer"));
        assert_eq!(e.to_string(), "backend 192.0.2.1:443: TLS handshake failed");
        assert_eq!(
            crate::errors::ErrorChain(&e).to_string(),
            "backend 192.0.2.1:443: TLS handshake failed: UnknownIssuer"
        );
        assert_eq!(e.reason(), "tls_failed");
    }

    #[test]
    fn local_shortages_are_told_from_backend_failures() {
        use rustix::io::Errno;
        let addr: SocketAddr = "192.0.2.1:443".parse().unwrap();
        let os = |e: Errno| std::io::Error::from_raw_os_error(e.raw_os_error());
        for (errno, reason, label) in [
            (
                Errno::ADDRNOTAVAIL,
                LocalReason::AddrNotAvail,
                "eaddrnotavail",
            ),
            (Errno::MFILE, LocalReason::Mfile, "emfile"),
            (Errno::NFILE, LocalReason::Nfile, "enfile"),
            (Errno::NOBUFS, LocalReason::Nobufs, "enobufs"),
            (Errno::NOMEM, LocalReason::Nomem, "enomem"),
        ] {
            let e = connect_error(addr, None, os(errno));
            assert_eq!(e.local(), Some(reason));
            assert_eq!(e.reason(), label);
            assert!(crate::metrics::local::REASONS.contains(&label));
            assert!(std::error::Error::source(&e).is_some(), "{e:?}");
        }
        assert_eq!(LocalReason::ALL.len(), crate::metrics::local::REASONS.len());
        for errno in [
            Errno::CONNREFUSED,
            Errno::HOSTUNREACH,
            Errno::NETUNREACH,
            Errno::TIMEDOUT,
        ] {
            let e = connect_error(addr, None, os(errno));
            assert_eq!(e.local(), None, "{errno:?} is the backend's");
            assert_eq!(e.reason(), "connect_failed");
        }
        assert_eq!(LocalReason::of(&std::io::Error::other("x")), None);
        let from = Some("127.0.0.2".parse().unwrap());
        let e = connect_error(addr, from, os(Errno::ADDRNOTAVAIL));
        assert_eq!(
            crate::errors::ErrorChain(&e).to_string(),
            format!(
                "backend 192.0.2.1:443: from 127.0.0.2: wsgate is out of local resources (eaddrnotavail): {}",
                os(Errno::ADDRNOTAVAIL)
            )
        );
        assert!(LocalReason::AddrNotAvail.per_destination());
        assert!(!LocalReason::Mfile.per_destination());
    }

    #[test]
    fn a_local_shortage_is_retried_once_on_another_address_at_most() {
        let mut retried = false;
        assert!(local_retry(None, &mut retried));
        assert!(!local_retry(Some(LocalReason::Mfile), &mut retried));
        assert!(!retried);
        assert!(local_retry(Some(LocalReason::AddrNotAvail), &mut retried));
        assert!(!local_retry(Some(LocalReason::AddrNotAvail), &mut retried));
        assert!(local_retry(None, &mut retried));
    }
}
