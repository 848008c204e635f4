//! The TLS keys of the file, both ways: a listener's certificates (several, chosen by
//! SNI; the first is the default), `strict_sni`, client certificates (`client_ca`,
//! `client_auth`, the header the verified subject is forwarded in), and a pool's TLS
//! to its backends (`tls`, `tls_ca`, `tls_server_name`).
//!
//! Owns: those keys' checks and the checked values the runtime gets (`ListenerTls`,
//! `ClientCerts`, `PoolTls`). Does not own: the keys as written (schema/), reading
//! the files (done when a generation is built: tls/), or the other listener and
//! pool keys (validate.rs).

use super::finding::{Finding, KeyPath, resolve_path};
use super::schema::{self, ClientAuth};
use super::types::{SuiteName, TlsVersion};
use hyper::header::HeaderName;
use rustls_pki_types::ServerName;
use std::path::{Path, PathBuf};

/// Header the verified client subject is forwarded in, unless `client_subject_header` says.
pub const DEFAULT_SUBJECT_HEADER: &str = "x-client-subject";

/// One certificate a listener serves, paths resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Where it is written (`listener[0]` for `cert`/`key`, or
    /// `listener[0].certificate[1]`), to locate a problem found when it is loaded.
    pub at: KeyPath,
}

/// Client certificates a listener asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientCerts {
    /// PEM file of the CA certificates a client certificate must chain to.
    pub ca: PathBuf,
    pub required: bool,
    /// The verified subject goes to the backend in this header (a client's own is removed).
    pub subject_header: HeaderName,
}

/// The TLS settings of a listener; paths are resolved against the file's folder.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerTls {
    /// Chosen by SNI; the first is served when no name matches (or none is sent).
    pub certificates: Vec<CertPair>,
    /// Refuse handshakes whose SNI names no configured certificate (or that send none).
    pub strict_sni: bool,
    pub client_certs: Option<ClientCerts>,
    pub min_version: TlsVersion,
    /// `None`: every suite the provider offers (all AEAD with forward secrecy).
    pub cipher_suites: Option<Vec<SuiteName>>,
    /// Stateless session tickets (keys kept across reloads); `false`: resumption from
    /// an in-memory session cache of this generation only.
    pub session_tickets: bool,
}

/// TLS from wsgate to a pool's backends.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolTls {
    /// PEM file of the CA certificates backends are verified against; `None`: the
    /// system's root store.
    pub ca: Option<PathBuf>,
    /// SNI and the name verified; `None`: each backend's host as written.
    pub server_name: Option<String>,
}

/// The TLS part of listener `i` (`l.tls` is true).
pub(super) fn listener(
    i: usize,
    l: &schema::Listener,
    source: &Path,
    out: &mut Vec<Finding>,
) -> Option<ListenerTls> {
    let at = |k: &str| KeyPath::root("listener").index(i).key(k);
    let mut certificates = Vec::new();
    match (&l.cert, &l.key) {
        (Some(cert), Some(key)) => certificates.push(CertPair {
            cert: resolve_path(source, cert),
            key: resolve_path(source, key),
            at: KeyPath::root("listener").index(i),
        }),
        (Some(_), None) => out.push((
            at("key"),
            "`cert` needs `key` (a PEM private key file)".into(),
        )),
        (None, Some(_)) => out.push((
            at("cert"),
            "`key` needs `cert` (a full chain PEM file)".into(),
        )),
        (None, None) => {}
    }
    for (j, c) in l.certificates.iter().enumerate() {
        certificates.push(CertPair {
            cert: resolve_path(source, &c.cert),
            key: resolve_path(source, &c.key),
            at: at("certificate").index(j),
        });
    }
    if certificates.is_empty() && l.cert.is_none() && l.key.is_none() {
        out.push((
            at("cert"),
            "a TLS listener needs `cert` and `key`, or [[listener.certificate]] entries".into(),
        ));
    }
    let min_version = l.min_version.unwrap_or_default();
    if let Some(suites) = &l.cipher_suites {
        if suites.is_empty() {
            out.push((
                at("cipher_suites"),
                "must not be empty (leave it out for the safe default)".into(),
            ));
        } else if min_version == TlsVersion::Tls13 && !suites.iter().any(|s| s.is_tls13()) {
            out.push((
                at("cipher_suites"),
                "min_version = \"1.3\" but no TLS13_* suite is listed".into(),
            ));
        }
    }
    let client_certs = match &l.client_ca {
        Some(ca) => Some(ClientCerts {
            ca: resolve_path(source, ca),
            required: l.client_auth.unwrap_or_default() == ClientAuth::Required,
            subject_header: l
                .client_subject_header
                .clone()
                .map_or_else(|| HeaderName::from_static(DEFAULT_SUBJECT_HEADER), |h| h.0),
        }),
        None => {
            for (k, set) in [
                ("client_auth", l.client_auth.is_some()),
                ("client_subject_header", l.client_subject_header.is_some()),
            ] {
                if set {
                    out.push((
                        at(k),
                        "needs `client_ca` (the CA client certificates must chain to)".into(),
                    ));
                }
            }
            None
        }
    };
    (!certificates.is_empty()).then_some(ListenerTls {
        certificates,
        strict_sni: l.strict_sni,
        client_certs,
        min_version,
        cipher_suites: l.cipher_suites.clone(),
        session_tickets: l.session_tickets.unwrap_or(true),
    })
}

/// The keys only a TLS listener may have, for a `tls = false` one.
pub(super) fn plain_listener(i: usize, l: &schema::Listener, out: &mut Vec<Finding>) {
    for (k, set) in [
        ("cert", l.cert.is_some()),
        ("key", l.key.is_some()),
        ("certificate", !l.certificates.is_empty()),
        ("strict_sni", l.strict_sni),
        ("client_ca", l.client_ca.is_some()),
        ("client_auth", l.client_auth.is_some()),
        ("client_subject_header", l.client_subject_header.is_some()),
        ("min_version", l.min_version.is_some()),
        ("cipher_suites", l.cipher_suites.is_some()),
        ("session_tickets", l.session_tickets.is_some()),
    ] {
        if set {
            out.push((
                KeyPath::root("listener").index(i).key(k),
                "only allowed when tls = true".into(),
            ));
        }
    }
}

/// The TLS settings of pool `i`, with its backends' addresses as written.
pub(super) fn pool(
    i: usize,
    p: &schema::Pool,
    source: &Path,
    out: &mut Vec<Finding>,
) -> Option<PoolTls> {
    let at = |k: &str| KeyPath::root("pool").index(i).key(k);
    if !p.tls {
        for (k, set) in [
            ("tls_ca", p.tls_ca.is_some()),
            ("tls_server_name", p.tls_server_name.is_some()),
        ] {
            if set {
                out.push((at(k), "only allowed when tls = true".into()));
            }
        }
        return None;
    }
    match &p.tls_server_name {
        Some(n) => {
            if ServerName::try_from(n.as_str()).is_err() {
                out.push((
                    at("tls_server_name"),
                    format!("{n:?} is not a DNS name or IP address"),
                ));
            }
        }
        None => {
            for (j, b) in p.backends.iter().enumerate() {
                if server_name_of(&b.address).is_none() {
                    out.push((
                        KeyPath::root("pool")
                            .index(i)
                            .key("backend")
                            .index(j)
                            .key("address"),
                        format!(
                            "{:?}: its host is not a name TLS can verify; set the pool's tls_server_name",
                            b.address
                        ),
                    ));
                }
            }
        }
    }
    Some(PoolTls {
        ca: p.tls_ca.as_ref().map(|c| resolve_path(source, c)),
        server_name: p.tls_server_name.clone(),
    })
}

/// The name a backend written as `host:port` is verified as (a DNS name or an IP).
pub fn server_name_of(address: &str) -> Option<ServerName<'static>> {
    let host = match address.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => address,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_server_names() {
        assert_eq!(
            server_name_of("chat.internal:9000"),
            Some(ServerName::try_from("chat.internal").unwrap())
        );
        assert!(matches!(
            server_name_of("127.0.0.1:9000"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name_of("[::1]:9000"),
            Some(ServerName::IpAddress(_))
        ));
        assert_eq!(server_name_of("bad_name!:1"), None);
    }
}
