//! `[route.auth]`: a token the upgrade request must carry (today one kind: `jwt`).
//!
//! Owns: the keys of that table, their checks (one key source; algorithms that fit
//! it, never `none`, never an HMAC algorithm with a public key or the reverse; where
//! the token is looked for; which claims go to the backend in which header) and the
//! checked `JwtConf` the runtime gets. Does not own: reading key files (done when a
//! generation is built: auth/keys.rs) or validating tokens (auth/).

use super::Dur;
use super::finding::{Finding, KeyPath, resolve_path};
use super::types::{HeaderKey, from_string};
use hyper::header::HeaderName;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::{Deserialize, Deserializer};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// `kind`: what the route checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// A JSON Web Token (RFC 7519), signed (JWS).
    Jwt,
}

/// How `secret_file` holds the HMAC secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretEncoding {
    /// The file's bytes, a final line break removed.
    #[default]
    Text,
    /// Standard base64 (for binary secrets), surrounding whitespace ignored.
    Base64,
}

/// `[route.auth]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    pub kind: AuthKind,
    /// HS256/384/512 secret.
    pub secret_file: Option<PathBuf>,
    pub secret_encoding: Option<SecretEncoding>,
    /// PEM files of public keys (or certificates): RSA, EC P-256/P-384, Ed25519.
    pub public_keys: Option<Vec<PathBuf>>,
    /// A JWKS (RFC 7517) file of public keys, chosen by `kid`.
    pub jwks_file: Option<PathBuf>,
    /// Default: every algorithm the keys can verify.
    pub algorithms: Option<Vec<JwtAlg>>,
    pub issuer: Option<StringOrList>,
    pub audience: Option<StringOrList>,
    #[serde(default = "default_leeway")]
    pub leeway: Dur,
    #[serde(default = "yes")]
    pub require_exp: bool,
    #[serde(default = "default_sources")]
    pub token_from: Vec<TokenSource>,
    /// claim name -> header the backend gets it in.
    #[serde(default)]
    pub forward_claims: BTreeMap<String, HeaderKey>,
    /// Close the session (1008) when the token's `exp` passes.
    #[serde(default)]
    pub enforce_expiry: bool,
}

fn default_leeway() -> Dur {
    Dur::secs(60)
}
fn yes() -> bool {
    true
}
fn default_sources() -> Vec<TokenSource> {
    vec![TokenSource::Authorization]
}

/// The longest `leeway` accepted: more would keep expired tokens working for long.
const MAX_LEEWAY: Duration = Duration::from_secs(600);

/// An allowed signature algorithm; `none` cannot be one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwtAlg(pub Algorithm);

const ALG_NAMES: &str =
    "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";

impl FromStr for JwtAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<JwtAlg, String> {
        if s.eq_ignore_ascii_case("none") {
            return Err(
                "\"none\" is never accepted: an unsigned token proves nothing about who made it"
                    .into(),
            );
        }
        Algorithm::from_str(s)
            .map(JwtAlg)
            .map_err(|_| format!("unknown JWT algorithm {s:?} (one of {ALG_NAMES})"))
    }
}

/// Where the token is looked for, in `token_from` order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    Authorization,
    /// The cookie of this name.
    Cookie(String),
    /// The query parameter of this name (`query` alone: `token`).
    Query(String),
    /// The `Sec-WebSocket-Protocol` entry with this prefix (`protocol` alone:
    /// `bearer.`); that entry is not forwarded.
    Protocol(String),
}

impl FromStr for TokenSource {
    type Err = String;
    fn from_str(s: &str) -> Result<TokenSource, String> {
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        let named = |what: &str, arg: Option<&str>, default: Option<&str>| {
            let name = arg
                .or(default)
                .ok_or_else(|| format!("{s:?}: name the {what}, e.g. \"{kind}:access_token\""))?;
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"\"(),/:;<=>?@[\\]{}&".contains(&b));
            if ok {
                Ok(name.to_string())
            } else {
                Err(format!("{s:?}: {name:?} is not a usable {what} name"))
            }
        };
        match (kind, arg) {
            ("authorization", None) => Ok(TokenSource::Authorization),
            ("cookie", a) => named("cookie", a, None).map(TokenSource::Cookie),
            ("query", a) => named("query parameter", a, Some("token")).map(TokenSource::Query),
            ("protocol", a) => {
                named("protocol prefix", a, Some("bearer.")).map(TokenSource::Protocol)
            }
            _ => Err(format!(
                "unknown token source {s:?} (\"authorization\", \"cookie:NAME\", \"query[:NAME]\" or \"protocol[:PREFIX]\")"
            )),
        }
    }
}

/// A string, or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StringOrList(pub Vec<String>);

impl<'de> Deserialize<'de> for StringOrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StringOrList, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StringOrList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StringOrList, E> {
                Ok(StringOrList(vec![v.to_string()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<StringOrList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(StringOrList(out))
            }
        }
        d.deserialize_any(V)
    }
}

from_string!(JwtAlg, "a JWT algorithm such as \"RS256\"");
from_string!(TokenSource, "a token source such as \"authorization\"");

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
    let at = |k: &str| base.clone().key(k);
    let before = out.len();
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
    let algorithms = a
        .algorithms
        .as_ref()
        .map(|v| v.iter().map(|x| x.0).collect::<Vec<_>>());
    if let (Some(algs), Some(keys)) = (&algorithms, &keys) {
        if algs.is_empty() {
            out.push((
                at("algorithms"),
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
                out.push((at("algorithms"), format!("{alg:?} {why}")));
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_is_never_an_algorithm() {
        for s in ["none", "None", "NONE"] {
            assert!(s.parse::<JwtAlg>().unwrap_err().contains("never accepted"));
        }
        assert_eq!("ES256".parse::<JwtAlg>(), Ok(JwtAlg(Algorithm::ES256)));
        assert!("HS1".parse::<JwtAlg>().unwrap_err().contains("unknown"));
    }

    #[test]
    fn token_sources() {
        assert_eq!(
            "query".parse::<TokenSource>(),
            Ok(TokenSource::Query("token".into()))
        );
        assert_eq!(
            "protocol".parse::<TokenSource>(),
            Ok(TokenSource::Protocol("bearer.".into()))
        );
        assert_eq!(
            "cookie:sess".parse::<TokenSource>(),
            Ok(TokenSource::Cookie("sess".into()))
        );
        for bad in [
            "cookie",
            "cookie:",
            "header",
            "query:a b",
            "authorization:x",
        ] {
            assert!(bad.parse::<TokenSource>().is_err(), "{bad}");
        }
    }
}
