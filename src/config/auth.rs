//! `[route.auth]`: a token the upgrade request must carry (today one kind: `jwt`).
//!
//! Owns: the checks of that table (one key source; algorithms that fit it, never an
//! HMAC algorithm with a public key or the reverse; where the token is looked for;
//! which claims go to the backend in which header) and the checked `JwtConf` the
//! runtime gets. Does not own: the table as written and its value syntax
//! (schema/auth.rs), reading key files (auth/keys.rs) or validating tokens (auth/).

use super::finding::{Finding, KeyPath, resolve_path};
use super::schema::{AuthFile, SecretEncoding, TokenSource};
use hyper::header::HeaderName;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The longest `leeway` accepted: more would keep expired tokens working for long.
const MAX_LEEWAY: Duration = Duration::from_secs(600);

/// Where a route's keys come from (paths resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Secret { file: PathBuf, base64: bool },
    PublicKeys(Vec<PathBuf>),
    Jwks(PathBuf),
}

impl KeySource {
    /// The config key naming it, for locating a problem with its files.
    pub fn key(&self) -> &'static str {
        match self {
            KeySource::Secret { .. } => "secret_file",
            KeySource::PublicKeys(_) => "public_keys",
            KeySource::Jwks(_) => "jwks_file",
        }
    }
}

/// A route's checked `[route.auth]`.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtConf {
    pub keys: KeySource,
    /// `None`: every algorithm the keys can verify.
    pub algorithms: Option<Vec<Algorithm>>,
    /// Accepted `iss` values; empty: not checked.
    pub issuer: Vec<String>,
    /// Accepted `aud` values; empty: a token with an `aud` is refused.
    pub audience: Vec<String>,
    pub leeway: Duration,
    pub require_exp: bool,
    pub sources: Vec<TokenSource>,
    /// (claim, header), in claim-name order.
    pub forward_claims: Vec<(String, HeaderName)>,
    pub enforce_expiry: bool,
    /// `route[i].auth`, to locate problems found when the keys are loaded.
    pub at: KeyPath,
}

/// Checks route `i`'s `[route.auth]`.
pub(super) fn check(
    i: usize,
    a: &AuthFile,
    source: &Path,
    out: &mut Vec<Finding>,
) -> Option<JwtConf> {
    let base = KeyPath::root("route").index(i).key("auth");
    let before = out.len();
    let keys = key_source(a, &base, source, out);
    let algorithms = a
        .algorithms
        .as_ref()
        .map(|v| v.iter().map(|x| x.0).collect::<Vec<_>>());
    if let (Some(algs), Some(keys)) = (&algorithms, &keys) {
        check_algorithms(algs, keys, &base.clone().key("algorithms"), out);
    }
    check_claims_and_sources(a, &base, out);
    if out.len() > before {
        return None;
    }
    Some(JwtConf {
        keys: keys?,
        algorithms,
        issuer: a.issuer.clone().unwrap_or_default().0,
        audience: a.audience.clone().unwrap_or_default().0,
        leeway: a.leeway.get(),
        require_exp: a.require_exp,
        sources: a.token_from.clone(),
        forward_claims: a
            .forward_claims
            .iter()
            .map(|(c, h)| (c.clone(), h.0.clone()))
            .collect(),
        enforce_expiry: a.enforce_expiry,
        at: base,
    })
}

/// Where `[route.auth]`'s keys come from: exactly one of its three key sources.
fn key_source(
    a: &AuthFile,
    base: &KeyPath,
    source: &Path,
    out: &mut Vec<Finding>,
) -> Option<KeySource> {
    let at = |k: &str| base.clone().key(k);
    let keys = match (&a.secret_file, &a.public_keys, &a.jwks_file) {
        (Some(f), None, None) => Some(KeySource::Secret {
            file: resolve_path(source, f),
            base64: a.secret_encoding == Some(SecretEncoding::Base64),
        }),
        (None, Some(files), None) => {
            if files.is_empty() {
                out.push((at("public_keys"), "must name at least one PEM file".into()));
            }
            Some(KeySource::PublicKeys(
                files.iter().map(|f| resolve_path(source, f)).collect(),
            ))
        }
        (None, None, Some(f)) => Some(KeySource::Jwks(resolve_path(source, f))),
        (None, None, None) => {
            out.push((
                base.clone(),
                "needs its keys: secret_file (HS256/384/512), public_keys (PEM) or jwks_file"
                    .into(),
            ));
            None
        }
        _ => {
            out.push((
                base.clone(),
                "set only one of secret_file, public_keys and jwks_file".into(),
            ));
            None
        }
    };
    if a.secret_encoding.is_some() && a.secret_file.is_none() {
        out.push((
            at("secret_encoding"),
            "only meaningful with secret_file".into(),
        ));
    }
    keys
}

/// `algorithms`: not empty, and each one usable with the keys given.
fn check_algorithms(algs: &[Algorithm], keys: &KeySource, at: &KeyPath, out: &mut Vec<Finding>) {
    if algs.is_empty() {
        out.push((
            at.clone(),
            "must not be empty (leave it out for every algorithm the keys can verify)".into(),
        ));
    }
    let secret = matches!(keys, KeySource::Secret { .. });
    for alg in algs {
        let hmac = alg.family() == AlgorithmFamily::Hmac;
        if hmac != secret {
            let why = if secret {
                "needs a public key (public_keys or jwks_file), not secret_file"
            } else {
                "is an HMAC algorithm: it needs secret_file, and a public key is never used as an HMAC secret"
            };
            out.push((at.clone(), format!("{alg:?} {why}")));
        }
    }
}

/// The keys about the token's claims and where it is found, and `forward_claims`.
fn check_claims_and_sources(a: &AuthFile, base: &KeyPath, out: &mut Vec<Finding>) {
    let at = |k: &str| base.clone().key(k);
    for (k, v) in [("issuer", &a.issuer), ("audience", &a.audience)] {
        if let Some(list) = v
            && (list.0.is_empty() || list.0.iter().any(String::is_empty))
        {
            out.push((at(k), "must be a non-empty string (or list of them)".into()));
        }
    }
    if a.leeway.get() > MAX_LEEWAY {
        out.push((
            at("leeway"),
            format!("must be at most {MAX_LEEWAY:?}: a long leeway keeps expired tokens working"),
        ));
    }
    if a.enforce_expiry && !a.require_exp {
        out.push((
            at("enforce_expiry"),
            "needs require_exp = true (a token without exp has no expiry to enforce)".into(),
        ));
    }
    if a.token_from.is_empty() {
        out.push((at("token_from"), "must name at least one source".into()));
    }
    let mut seen = HashSet::new();
    for s in &a.token_from {
        if !seen.insert(s) {
            out.push((at("token_from"), format!("{s:?} is listed twice")));
        }
    }
    let mut headers = HashSet::new();
    for (claim, h) in &a.forward_claims {
        if claim.is_empty() {
            out.push((
                at("forward_claims"),
                "a claim name must not be empty".into(),
            ));
        }
        if !headers.insert(h.0.clone()) {
            out.push((
                at("forward_claims").key(claim),
                format!("header {} already carries another claim", h.0),
            ));
        }
    }
}
