//! TLS: what a listener serves (certificates chosen by SNI, client certificates) and
//! how wsgate talks TLS to backends.
//!
//! Owns: building a listener's rustls `ServerConfig` (`load_listener`) from `chain.rs`
//! (chains and keys, checked), `sni.rs` (the resolver), `client_auth.rs` (verifier and
//! subject) and `tickets.rs` (session-ticket keys); a pool's client side
//! (`upstream.rs`); and `TlsError` (error.rs), which keeps the error beneath as source.
//! Does not own: the handshake itself or its timeout (listen.rs).

mod chain;
pub mod client_auth;
mod error;
pub mod sni;
mod tickets;
pub mod upstream;

pub use chain::{check_chain, leaf_names, load_chain, load_key};
pub use error::{TlsError, X509ParseError};
pub use tickets::TicketKeys;

use crate::config::{CertPair, KeyPath, ListenerTls, TlsVersion};
use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::{self as provider, kx_group};
use rustls::server::ServerConfig;
use rustls::sign::CertifiedKey;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// A TLS problem and the config key it belongs to.
#[derive(Debug)]
pub struct Located {
    pub at: KeyPath,
    pub error: Box<TlsError>,
}

/// One certificate a listener serves.
#[derive(Debug, Clone)]
pub struct Served {
    /// Its full-chain file.
    pub cert: PathBuf,
    /// The names SNI picks it by (its leaf's DNS names).
    pub names: Vec<String>,
    /// When its leaf expires.
    pub not_after: SystemTime,
}

/// Everything a TLS listener serves, loaded and checked.
#[derive(Debug)]
pub struct Loaded {
    pub config: Arc<ServerConfig>,
    /// In config order; the first is the default.
    pub certs: Vec<Served>,
    /// Non-fatal findings (e.g. a likely missing intermediate); the caller logs them.
    pub warnings: Vec<String>,
}

/// The listener's cipher-suite policy (names checked in config/types.rs) and
/// key-exchange preference: hybrid post-quantum first.
fn crypto(l: &ListenerTls) -> CryptoProvider {
    let mut prov = provider::default_provider();
    if let Some(suites) = &l.cipher_suites {
        prov.cipher_suites = suites.iter().map(|s| s.0).collect();
    }
    prov.kx_groups = vec![
        kx_group::X25519MLKEM768,
        kx_group::X25519,
        kx_group::SECP256R1,
        kx_group::SECP384R1,
    ];
    prov
}

/// Loads and checks one certificate and its key.
fn load_pair(
    p: &CertPair,
    prov: &CryptoProvider,
) -> Result<(CertifiedKey, Served, Vec<String>), TlsError> {
    let chain = load_chain(&p.cert)?;
    let key = load_key(&p.key)?;
    let (warnings, not_after) = check_chain(&p.cert, &chain, SystemTime::now())?;
    let names = leaf_names(&chain[0]);
    let certified = CertifiedKey::from_der(chain, key, prov).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: p.cert.clone(),
            key: p.key.clone(),
        },
        source => TlsError::BadKey {
            file: p.key.clone(),
            source,
        },
    })?;
    let served = Served {
        cert: p.cert.clone(),
        names,
        not_after,
    };
    Ok((certified, served, warnings))
}

/// Loads and checks every certificate and CA of a listener (`at`: its key path) and
/// builds its rustls config (ALPN `http/1.1`). Every generation loads these files
/// afresh, so a reload serves a renewed certificate to new handshakes and re-reads
/// every CA bundle.
pub fn load_listener(
    l: &ListenerTls,
    at: &KeyPath,
    tickets: Option<Arc<dyn rustls::server::ProducesTickets>>,
) -> Result<Loaded, Located> {
    let prov = crypto(l);
    let mut keys = Vec::new();
    let mut certs = Vec::new();
    let mut warnings = Vec::new();
    for pair in &l.certificates {
        let (key, served, w) = load_pair(pair, &prov).map_err(|error| {
            let k = if error.file() == Some(pair.key.as_path()) {
                "key"
            } else {
                "cert"
            };
            Located {
                at: pair.at.clone().key(k),
                error: Box::new(error),
            }
        })?;
        warnings.extend(w);
        if l.strict_sni && served.names.is_empty() {
            warnings.push(format!(
                "{}: names no host (no DNS subjectAltName or CN): with strict_sni it is never served",
                pair.cert.display()
            ));
        }
        keys.push((Arc::new(key), served.names.clone()));
        certs.push(served);
    }
    for (name, first, later) in sni::shadowed(&keys) {
        warnings.push(format!(
            "{}: {name:?} is also in {}, listed earlier with the same key type: only that one is served for it",
            certs[later].cert.display(),
            certs[first].cert.display()
        ));
    }

    let versions: &[&rustls::SupportedProtocolVersion] = match l.min_version {
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
        _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let prov = Arc::new(prov);
    let builder = ServerConfig::builder_with_provider(prov.clone())
        .with_protocol_versions(versions)
        .map_err(|e| Located {
            at: at.clone().key("min_version"),
            error: Box::new(TlsError::Provider {
                what: "refused the protocol versions",
                source: e,
            }),
        })?;
    let builder = match &l.client_certs {
        None => builder.with_no_client_auth(),
        Some(c) => {
            let verifier = client_auth::verifier(c, prov).map_err(|error| Located {
                at: at.clone().key("client_ca"),
                error: Box::new(error),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config =
        builder.with_cert_resolver(Arc::new(sni::SniResolver::new(keys, l.strict_sni)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Without a ticketer, rustls resumes from its in-memory session cache (256
    // sessions, this generation only).
    if let Some(t) = tickets {
        config.ticketer = t;
    }
    Ok(Loaded {
        config: Arc::new(config),
        certs,
        warnings,
    })
}

/// The subject of the certificate the client presented (verified by the handshake),
/// as RFC 4514 text.
pub fn peer_subject(conn: &rustls::ServerConnection) -> Option<String> {
    conn.peer_certificates()
        .and_then(|c| c.first())
        .and_then(client_auth::subject)
}
