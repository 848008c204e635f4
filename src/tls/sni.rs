//! Choosing a listener's certificate by the name the client asks for (SNI).
//!
//! Owns: the lookup from a server name to the certificates valid for it (exact
//! names first, then a `*.` wildcard covering exactly one label, as RFC 6125 says),
//! the choice among several for one name (the first whose key the client can verify:
//! an ECDSA and an RSA certificate may serve the same name), the default (the first
//! certificate) and `strict_sni`, which refuses the handshake instead of serving the
//! default when no certificate has the name (or no name is sent).

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

/// The certificates of one listener and the names each is valid for.
#[derive(Debug)]
pub struct SniResolver {
    certs: Vec<Arc<CertifiedKey>>,
    /// name -> indexes into `certs`, in config order.
    exact: HashMap<String, Vec<usize>>,
    /// `example.com` for `*.example.com` -> indexes.
    wildcard: HashMap<String, Vec<usize>>,
    strict: bool,
}

impl SniResolver {
    /// `certs[i]` is valid for `names[i]` (lower case). The first is the default.
    pub fn new(certs: Vec<(Arc<CertifiedKey>, Vec<String>)>, strict: bool) -> SniResolver {
        let mut r = SniResolver {
            certs: Vec::with_capacity(certs.len()),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            strict,
        };
        for (i, (cert, names)) in certs.into_iter().enumerate() {
            r.certs.push(cert);
            for n in names {
                let (map, key) = match n.strip_prefix("*.") {
                    Some(rest) => (&mut r.wildcard, rest.to_string()),
                    None => (&mut r.exact, n),
                };
                let list = map.entry(key).or_default();
                if !list.contains(&i) {
                    list.push(i);
                }
            }
        }
        r
    }

    /// The certificates valid for `name`, best match first.
    fn lookup(&self, name: &str) -> Option<&[usize]> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(v) = self.exact.get(&name) {
            return Some(v);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).map(Vec::as_slice)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name();
        match name.and_then(|n| self.lookup(n)) {
            Some(candidates) => {
                let schemes = hello.signature_schemes();
                let fits = candidates
                    .iter()
                    .find(|&&i| self.certs[i].key.choose_scheme(schemes).is_some());
                let i = fits.or(candidates.first()).copied()?;
                Some(self.certs[i].clone())
            }
            None if self.strict => {
                tracing::debug!(
                    sni = name.unwrap_or("(none)"),
                    "TLS refused: strict_sni and no certificate for this name"
                );
                None
            }
            None => self.certs.first().cloned(),
        }
    }
}

/// Names listed by more than one certificate whose keys are of the same kind, so only
/// the first is ever served for them; for a warning.
pub fn shadowed(certs: &[(Arc<CertifiedKey>, Vec<String>)]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for (j, (cj, nj)) in certs.iter().enumerate() {
        for (i, (ci, ni)) in certs[..j].iter().enumerate() {
            if ci.key.algorithm() != cj.key.algorithm() {
                continue;
            }
            for n in nj.iter().filter(|n| ni.contains(n)) {
                if !out.iter().any(|(m, _, jj)| m == n && *jj == j) {
                    out.push((n.clone(), i, j));
                }
            }
        }
    }
    out
}
