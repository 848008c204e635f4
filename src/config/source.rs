//! `source_addresses` of a `[[pool]]`: the local addresses its backend connections
//! are made from (nginx's `proxy_bind`, HAProxy's `source`).
//!
//! Owns: the checks on the list (specific unicast addresses, no repeats, a family
//! every backend with a fixed address can use, none that no backend can use). Does
//! not own: the IP syntax (serde reads `IpAddr`, so a bad literal is reported at its
//! line and column), or binding (backends/connect.rs).

use super::Backend;
use super::finding::{Finding, KeyPath};
use std::collections::HashSet;
use std::net::IpAddr;

fn family(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

/// Checks pool `i`'s `source_addresses` against its fixed `backends` (a pool with
/// `resolve` backends may meet either family, so an address no fixed backend uses
/// is accepted there); returns the list as checked.
pub(super) fn check(
    i: usize,
    sources: &[IpAddr],
    backends: &[Backend],
    discovers: bool,
    out: &mut Vec<Finding>,
) -> Vec<IpAddr> {
    let at = || KeyPath::root("pool").index(i).key("source_addresses");
    let mut seen = HashSet::new();
    for (j, ip) in sources.iter().enumerate() {
        let problem = if ip.is_unspecified() {
            Some(format!(
                "{ip} is not a source address: name a specific local address"
            ))
        } else if ip.is_multicast() || *ip == IpAddr::from([255, 255, 255, 255]) {
            Some(format!("{ip} is not a unicast address"))
        } else if !seen.insert(*ip) {
            Some(format!("{ip} is listed twice"))
        } else if !discovers
            && !backends.is_empty()
            && !backends.iter().any(|b| b.addr.is_ipv4() == ip.is_ipv4())
        {
            Some(format!(
                "{ip} is {} but no backend of this pool is (a backend connection is made from an address of its own family)",
                family(ip)
            ))
        } else {
            None
        };
        if let Some(m) = problem {
            out.push((at().index(j), m));
        }
    }
    if sources.is_empty() {
        return Vec::new();
    }
    if let Some(b) = backends
        .iter()
        .find(|b| !sources.iter().any(|s| s.is_ipv4() == b.addr.is_ipv4()))
    {
        out.push((
            at(),
            format!(
                "backend {} is {} but no source address is (list one of its family too)",
                b.address,
                family(&b.addr.ip())
            ),
        ));
    }
    sources.to_vec()
}
