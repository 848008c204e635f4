//! Scrape-time family of the served certificates: each listener's leaf expiry.
//! Does not own: TLS handshake counters (metrics/) or loading certificates (tls/).

use super::unix;
use crate::metrics::{Kind, Samples};
use crate::runtime::Generation;

/// When each leaf certificate of each listener expires.
pub(super) fn expiry(s: &mut Samples, g: &Generation) {
    s.family(
        "wsgate_tls_certificate_expiry_timestamp_seconds",
        "When each leaf certificate served on the listener expires, Unix time \
         (certificate: its place in the listener's list from 1, name: its first DNS name)",
        Kind::Gauge,
        None,
    )
    .extend(g.listeners.iter().flat_map(|l| {
        l.certs.iter().enumerate().map(|(i, c)| {
            let labels = vec![
                ("listener", l.name.to_string()),
                ("certificate", (i + 1).to_string()),
                ("name", c.names.first().cloned().unwrap_or_default()),
            ];
            (labels, unix(c.not_after))
        })
    }));
}
