//! Client certificates on a listener (`client_ca`, `client_auth`): the rustls
//! verifier built from the CA bundle, and the verified subject as the backend gets it.
//!
//! Owns: building the verifier (required or optional), and writing a certificate's
//! subject as an RFC 4514 string (`CN=alice,O=Example`, most specific first, as
//! nginx's `$ssl_client_s_dn` does). Does not own: which header carries it, or
//! removing a client's own copy (http/conn.rs `identity_headers`,
//! route/auth/ `backend_headers`).

use super::{TlsError, chain};
use crate::config::ClientCerts;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::CertificateDer;
use std::fmt::Write;
use std::sync::Arc;

/// The verifier for a listener's client certificates.
pub fn verifier(
    c: &ClientCerts,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let cas = chain::load_cas(&c.ca)?;
    let mut roots = rustls::RootCertStore::empty();
    for (i, ca) in cas.into_iter().enumerate() {
        roots.add(ca).map_err(|source| TlsError::BadCa {
            file: c.ca.clone(),
            index: i,
            source,
        })?;
    }
    let mut b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if !c.required {
        b = b.allow_unauthenticated();
    }
    b.build().map_err(|source| TlsError::BadCaVerifier {
        file: c.ca.clone(),
        source,
    })
}

/// The subject of a (verified) certificate as RFC 4514 text; `None` if it cannot be
/// parsed.
pub fn subject(der: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let mut out = String::new();
    for rdn in cert.subject().iter().collect::<Vec<_>>().into_iter().rev() {
        if !out.is_empty() {
            out.push(',');
        }
        for (k, atv) in rdn.iter().enumerate() {
            if k > 0 {
                out.push('+');
            }
            let oid = atv.attr_type();
            match x509_parser::objects::oid2abbrev(oid, registry) {
                Ok(name) => out.push_str(name),
                Err(_) => out.push_str(&oid.to_id_string()),
            }
            out.push('=');
            match atv.as_str() {
                Ok(v) => escape_into(&mut out, v),
                Err(_) => {
                    // Not a string type: RFC 4514's #hex form of the DER value.
                    out.push('#');
                    for b in atv.as_slice() {
                        let _ = write!(out, "{b:02x}");
                    }
                }
            }
        }
    }
    Some(out)
}

/// RFC 4514 section 2.4 escaping, plus control and non-ASCII bytes as `\XX`, so the
/// result is always a valid header value.
fn escape_into(out: &mut String, v: &str) {
    let n = v.chars().count();
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == n && c == ' ');
        if special {
            out.push('\\');
            out.push(c);
        } else if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\{b:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        let mut s = String::new();
        escape_into(&mut s, " a,b+c\"é\n ");
        assert_eq!(s, "\\ a\\,b\\+c\\\"\\C3\\A9\\0A\\ ");
    }
}
