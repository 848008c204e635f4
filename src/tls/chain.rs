//! Reading and checking one certificate chain and its key, with
//! `rustls-pki-types`' `PemObject`: the chain must be in order (leaf first, each
//! certificate issued by the next), the leaf valid now; the key is PKCS#8, PKCS#1 or
//! SEC1. Also the names a leaf is valid for (what SNI picks it by) and CA bundles.

use super::TlsError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::X509Certificate;

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
    let file = path.to_path_buf();
    match e {
        rustls_pki_types::pem::Error::Io(source) => TlsError::Read { file, source },
        source => TlsError::Pem { file, source },
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
                .map_err(|source| TlsError::BadCertificate {
                    file: path.to_path_buf(),
                    index,
                    source,
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

/// The DNS names a leaf is valid for, lower-case: its subjectAltName DNS entries, or
/// its common name when it has none (old certificates). Wildcards stay `*.x.y`.
pub fn leaf_names(der: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return Vec::new();
    };
    let norm = |n: &str| n.trim_end_matches('.').to_ascii_lowercase();
    let mut names: Vec<String> = cert
        .extensions()
        .iter()
        .filter_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => Some(san),
            _ => None,
        })
        .flat_map(|san| san.general_names.iter())
        .filter_map(|g| match g {
            GeneralName::DNSName(n) => Some(norm(n)),
            _ => None,
        })
        .collect();
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(norm),
        );
    }
    names.dedup();
    names
}

/// Every certificate in a CA bundle (PEM); at least one.
pub(super) fn load_cas(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    load_chain(path).map_err(|e| match e {
        TlsError::NoCertificate { file } => TlsError::NoCaCertificate { file },
        other => other,
    })
}
