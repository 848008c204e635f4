//! The socket of a backend connection: its source address and wsgate's share of
//! the ephemeral ports.
//!
//! Owns: the pool's `source_addresses` (round robin, each socket bound with
//! `IP_BIND_ADDRESS_NO_PORT` so the kernel picks the port per destination, and a
//! source out of ports handing over to the next), reading `ip_local_port_range`,
//! and the start-up warning when `max_connections` exceeds what the range allows.
//! Does not own: TLS, the upgrade (connect.rs) or what a failure means (error.rs).

use crate::backends::error::{LocalReason, UpstreamError, connect_error};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::{TcpSocket, TcpStream};

/// Where the next backend connection of any pool starts among its source addresses
/// (round robin; when one is out of ports the next ones are tried).
static NEXT_SOURCE: AtomicUsize = AtomicUsize::new(0);

/// TCP to `addr`: from the kernel's choice of source address when `sources` has none
/// of `addr`'s family, else from one of them, round robin. A source address out of
/// ports toward `addr` (EADDRNOTAVAIL) hands over to the next one, so the pool can
/// hold as many connections to one address as all its source addresses together.
pub(crate) async fn tcp_connect(
    addr: SocketAddr,
    sources: &[IpAddr],
) -> Result<TcpStream, UpstreamError> {
    let same = |ip: &&IpAddr| ip.is_ipv4() == addr.is_ipv4();
    let n = sources.iter().filter(same).count();
    if n == 0 {
        return TcpStream::connect(addr)
            .await
            .map_err(|e| connect_error(addr, None, e));
    }
    let start = NEXT_SOURCE.fetch_add(1, Ordering::Relaxed);
    let mut last = None;
    for k in 0..n {
        let Some(&ip) = sources.iter().filter(same).nth((start + k) % n) else {
            break;
        };
        match connect_from(ip, addr).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => {
                let e = connect_error(addr, Some(ip), e);
                if e.local() != Some(LocalReason::AddrNotAvail) {
                    return Err(e);
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        connect_error(
            addr,
            None,
            std::io::Error::from(std::io::ErrorKind::AddrNotAvailable),
        )
    }))
}

/// A socket bound to `ip:0` with `IP_BIND_ADDRESS_NO_PORT` (the kernel picks the
/// port at connect time, per destination, instead of reserving one for every
/// destination at bind time), connected to `addr`.
async fn connect_from(ip: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    bind_address_no_port(&socket)?;
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

/// The ephemeral port range (`net.ipv4.ip_local_port_range`) of this network
/// namespace: where the kernel takes the port of every backend connection.
pub fn local_port_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(str::parse::<u16>);
    match (it.next(), it.next()) {
        (Some(Ok(lo)), Some(Ok(hi))) if lo <= hi => Some((lo, hi)),
        _ => None,
    }
}

/// The start-up warning for pool `pool` when `max_connections` sessions could not
/// all reach one of its `backends` addresses: from one source address the kernel
/// has `range` ports toward one address (IPv6 too), so one backend address holds
/// at most (ports × source addresses of its family) connections.
pub fn port_shortfall(
    pool: &str,
    backends: impl IntoIterator<Item = SocketAddr>,
    sources: &[IpAddr],
    max_connections: usize,
    (lo, hi): (u16, u16),
) -> Option<String> {
    let ports = usize::from(hi - lo) + 1;
    let (cap, addr, n) = backends
        .into_iter()
        .map(|b| {
            let n = sources
                .iter()
                .filter(|s| s.is_ipv4() == b.is_ipv4())
                .count()
                .max(1);
            (ports * n, b, n)
        })
        .min_by_key(|(cap, ..)| *cap)?;
    (max_connections > cap).then(|| {
        let plural = if n == 1 { "" } else { "es" };
        format!(
            "pool {pool:?}: max_connections = {max_connections} but backend {addr} can take only {cap} connections from this host (ip_local_port_range {lo}-{hi}: {ports} ports x {n} source address{plural}); sessions past that get 503 from wsgate: add source_addresses to the pool, or widen net.ipv4.ip_local_port_range"
        )
    })
}

/// Sets `IP_BIND_ADDRESS_NO_PORT` (Linux >= 4.2; it applies to IPv6 sockets too).
fn bind_address_no_port(socket: &TcpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on a socket this function borrows (open for the call), with
    // a pointer to a live c_int and its exact size.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            std::ptr::from_ref(&on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_source_address_is_bound_and_one_not_on_this_host_is_local() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let to = l.local_addr().unwrap();
        let from: IpAddr = "127.0.0.3".parse().unwrap();
        let tcp = tcp_connect(to, &[from]).await.unwrap();
        assert_eq!(tcp.local_addr().unwrap().ip(), from);
        // An IPv6 source is not used for an IPv4 backend: the kernel chooses.
        let tcp = tcp_connect(to, &["::1".parse().unwrap()]).await.unwrap();
        assert_eq!(tcp.local_addr().unwrap().ip(), IpAddr::from([127, 0, 0, 1]));
        // TEST-NET-1 is on no interface here: bind fails, and that is wsgate's side.
        let away: IpAddr = "192.0.2.1".parse().unwrap();
        let e = tcp_connect(to, &[away]).await.unwrap_err();
        assert_eq!(e.local(), Some(LocalReason::AddrNotAvail), "{e}");
        // With another source still usable, the one that fails hands over.
        for _ in 0..4 {
            let tcp = tcp_connect(to, &[away, from]).await.unwrap();
            assert_eq!(tcp.local_addr().unwrap().ip(), from);
        }
    }

    #[test]
    fn the_port_range_bounds_the_connections_to_one_backend_address() {
        let v4: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let v6: SocketAddr = "[fd00::1]:80".parse().unwrap();
        let two: Vec<IpAddr> = vec!["10.0.0.9".parse().unwrap(), "10.0.0.10".parse().unwrap()];
        let range = (32768, 60999);
        assert_eq!(port_shortfall("p", [v4], &[], 28_232, range), None);
        let w = port_shortfall("p", [v4], &[], 28_233, range).unwrap();
        assert!(
            w.starts_with("pool \"p\": max_connections = 28233 but backend 10.0.0.1:80 can take only 28232 connections")
                && w.contains("28232 ports x 1 source address)"),
            "{w}"
        );
        assert_eq!(port_shortfall("p", [v4], &two, 56_464, range), None);
        // The IPv6 backend has no IPv6 source address: it is the bound.
        let w = port_shortfall("p", [v4, v6], &two, 56_464, range).unwrap();
        assert!(
            w.contains("backend [fd00::1]:80 can take only 28232"),
            "{w}"
        );
        assert_eq!(port_shortfall("p", [], &two, 1_000_000, range), None);
    }
}
