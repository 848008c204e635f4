//! TLS termination settings: certificates, keys and the rustls `ServerConfig`.
//!
//! Owns: loading a full-chain PEM and a private key (PKCS#8, PKCS#1 or SEC1) with
//! `rustls-pki-types`' `PemObject`; refusing a chain that cannot work (no cert, key
//! not matching the leaf, leaf expired or not yet valid, chain out of order); the
//! cipher-suite policy (names checked in config/types.rs); key-exchange preference
//! (hybrid post-quantum first); ALPN. Every generation loads its listeners' files
//! afresh, so a reload serves a renewed certificate to new handshakes.
//! Does not own: the handshake itself or its timeout (listen.rs).

use crate::config::{ListenerTls, TlsVersion};
use rustls::crypto::aws_lc_rs::{self as provider, kx_group};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::X509Certificate;

/// Why a listener's certificate or key cannot be served. Every variant names the file.
#[derive(Debug)]
pub enum TlsError {
    Read {
        file: PathBuf,
        reason: String,
    },
    NoCertificate {
        file: PathBuf,
    },
    NoKey {
        file: PathBuf,
    },
    BadCertificate {
        file: PathBuf,
        index: usize,
        reason: String,
    },
    BadKey {
        file: PathBuf,
        reason: String,
    },
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
    },
    Expired {
        file: PathBuf,
        not_after: String,
    },
    NotYetValid {
        file: PathBuf,
        not_before: String,
    },
    OutOfOrder {
        file: PathBuf,
        index: usize,
        subject: String,
        issuer: String,
        next: String,
    },
    Rustls {
        file: PathBuf,
        reason: String,
    },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TlsError::*;
        match self {
            Read { file, reason } => write!(f, "{}: cannot read: {reason}", file.display()),
            NoCertificate { file } => write!(f, "{}: holds no PEM certificate", file.display()),
            NoKey { file } => write!(
                f,
                "{}: holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                file.display()
            ),
            BadCertificate {
                file,
                index,
                reason,
            } => {
                write!(
                    f,
                    "{}: certificate #{} cannot be parsed: {reason}",
                    file.display(),
                    index + 1
                )
            }
            BadKey { file, reason } => {
                write!(f, "{}: private key unusable: {reason}", file.display())
            }
            KeyMismatch { cert, key } => write!(
                f,
                "{}: private key does not match the first (leaf) certificate in {}",
                key.display(),
                cert.display()
            ),
            Expired { file, not_after } => write!(
                f,
                "{}: leaf certificate expired on {not_after}",
                file.display()
            ),
            NotYetValid { file, not_before } => {
                write!(
                    f,
                    "{}: leaf certificate is not valid before {not_before}",
                    file.display()
                )
            }
            OutOfOrder {
                file,
                index,
                subject,
                issuer,
                next,
            } => write!(
                f,
                "{}: chain out of order: certificate #{} ({subject}) is issued by {issuer:?} but is followed by {next:?}; \
                 put the leaf first, then each issuer in turn",
                file.display(),
                index + 1
            ),
            Rustls { file, reason } => write!(f, "{}: {reason}", file.display()),
        }
    }
}

impl std::error::Error for TlsError {}

/// Everything a TLS listener serves, loaded and checked.
#[derive(Debug)]
pub struct Loaded {
    pub config: Arc<ServerConfig>,
    /// When the leaf certificate expires.
    pub not_after: SystemTime,
    /// Non-fatal findings (e.g. a likely missing intermediate); the caller logs them.
    pub warnings: Vec<String>,
}

impl TlsError {
    /// The file the problem is in (for a key that does not match: the key).
    pub fn file(&self) -> &Path {
        use TlsError::*;
        match self {
            Read { file, .. }
            | NoCertificate { file }
            | NoKey { file }
            | BadCertificate { file, .. }
            | BadKey { file, .. }
            | Expired { file, .. }
            | NotYetValid { file, .. }
            | OutOfOrder { file, .. }
            | Rustls { file, .. } => file,
            KeyMismatch { key, .. } => key,
        }
    }
}

/// Loads and checks a listener's certificate and key and builds its rustls config.
pub fn load_listener(l: &ListenerTls) -> Result<Loaded, TlsError> {
    let cert_path = l.cert.clone();
    let key_path = l.key.clone();
    let chain = load_chain(&cert_path)?;
    let key = load_key(&key_path)?;
    let (warnings, not_after) = check_chain(&cert_path, &chain, SystemTime::now())?;

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
    let certified = CertifiedKey::from_der(chain, key, &prov).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: cert_path.clone(),
            key: key_path.clone(),
        },
        other => TlsError::BadKey {
            file: key_path.clone(),
            reason: other.to_string(),
        },
    })?;

    let versions: &[&rustls::SupportedProtocolVersion] = match l.min_version {
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
        _ => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = ServerConfig::builder_with_provider(Arc::new(prov))
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Rustls {
            file: cert_path.clone(),
            reason: e.to_string(),
        })?
        .with_no_client_auth();
    let mut config = builder.with_cert_resolver(Arc::new(OneCert(Arc::new(certified))));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        not_after,
        warnings,
    })
}

/// A listener serves one certificate chain, whatever the SNI.
#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

pub fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| read_err(path, e))?;
    let chain: Vec<_> = iter
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(path, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            file: path.to_path_buf(),
        });
    }
    Ok(chain)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            file: path.to_path_buf(),
        },
        other => read_err(path, other),
    })
}

fn read_err(path: &Path, e: rustls_pki_types::pem::Error) -> TlsError {
    let reason = match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("{other:?}"),
    };
    TlsError::Read {
        file: path.to_path_buf(),
        reason,
    }
}

/// Validity of the leaf and the order of the chain. Returns warnings and the leaf's
/// expiry.
pub fn check_chain(
    path: &Path,
    chain: &[CertificateDer<'_>],
    now: SystemTime,
) -> Result<(Vec<String>, SystemTime), TlsError> {
    let parsed: Vec<X509Certificate<'_>> = chain
        .iter()
        .enumerate()
        .map(|(index, der)| {
            x509_parser::parse_x509_certificate(der.as_ref())
                .map(|(_, c)| c)
                .map_err(|e| TlsError::BadCertificate {
                    file: path.to_path_buf(),
                    index,
                    reason: e.to_string(),
                })
        })
        .collect::<Result<_, _>>()?;
    let now = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let leaf = &parsed[0];
    let validity = leaf.validity();
    if now > validity.not_after.timestamp() {
        return Err(TlsError::Expired {
            file: path.to_path_buf(),
            not_after: validity.not_after.to_string(),
        });
    }
    if now < validity.not_before.timestamp() {
        return Err(TlsError::NotYetValid {
            file: path.to_path_buf(),
            not_before: validity.not_before.to_string(),
        });
    }
    for (index, pair) in parsed.windows(2).enumerate() {
        let (cert, next) = (&pair[0], &pair[1]);
        let names_chain = cert.issuer().as_raw() == next.subject().as_raw();
        let ids_chain = match (authority_key_id(cert), subject_key_id(next)) {
            (Some(a), Some(s)) => a == s,
            _ => true,
        };
        if !(names_chain && ids_chain) {
            return Err(TlsError::OutOfOrder {
                file: path.to_path_buf(),
                index,
                subject: cert.subject().to_string(),
                issuer: cert.issuer().to_string(),
                next: next.subject().to_string(),
            });
        }
    }
    let mut warnings = Vec::new();
    if parsed.len() == 1 && leaf.subject().as_raw() != leaf.issuer().as_raw() {
        warnings.push(format!(
            "{}: holds only the leaf certificate, issued by {:?}; clients that do not already have that \
             intermediate will fail to verify (append the intermediate(s) after the leaf)",
            path.display(),
            leaf.issuer().to_string()
        ));
    }
    let not_after =
        UNIX_EPOCH + std::time::Duration::from_secs(validity.not_after.timestamp().max(0) as u64);
    Ok((warnings, not_after))
}

fn subject_key_id<'a>(c: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    c.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
            _ => None,
        })
}

fn authority_key_id<'a>(c: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    c.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0),
            _ => None,
        })
}
