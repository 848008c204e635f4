//! `[route.auth]` as written: its keys and defaults, and the syntax of the values
//! only it has (`algorithms`: JWT algorithm names, never `none`; `token_from`: where
//! the token is looked for; `issuer`/`audience`: a string or a list).
//!
//! Owns: what serde reads from that table; a bad value is reported at its line.
//! Does not own: the checks across its keys (one key source, algorithms that fit
//! the keys, ...) or the checked `JwtConf` (both ../auth.rs), or reading key files.

use crate::config::duration::Dur;
use crate::config::finding::InvalidValue;
use crate::config::types::{HeaderKey, from_string};
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

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

/// An allowed signature algorithm; `none` cannot be one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwtAlg(pub Algorithm);

const ALG_NAMES: &str =
    "HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";

impl FromStr for JwtAlg {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<JwtAlg, InvalidValue> {
        if s.eq_ignore_ascii_case("none") {
            return Err(InvalidValue::new(
                "\"none\" is never accepted: an unsigned token proves nothing about who made it",
            ));
        }
        Algorithm::from_str(s).map(JwtAlg).map_err(|_| {
            InvalidValue::new(format!("unknown JWT algorithm {s:?} (one of {ALG_NAMES})"))
        })
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
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<TokenSource, InvalidValue> {
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        let named = |what: &str, arg: Option<&str>, default: Option<&str>| {
            let name = arg.or(default).ok_or_else(|| {
                InvalidValue::new(format!(
                    "{s:?}: name the {what}, e.g. \"{kind}:access_token\""
                ))
            })?;
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"\"(),/:;<=>?@[\\]{}&".contains(&b));
            if ok {
                Ok(name.to_string())
            } else {
                Err(InvalidValue::new(format!(
                    "{s:?}: {name:?} is not a usable {what} name"
                )))
            }
        };
        match (kind, arg) {
            ("authorization", None) => Ok(TokenSource::Authorization),
            ("cookie", a) => named("cookie", a, None).map(TokenSource::Cookie),
            ("query", a) => named("query parameter", a, Some("token")).map(TokenSource::Query),
            ("protocol", a) => {
                named("protocol prefix", a, Some("bearer.")).map(TokenSource::Protocol)
            }
            _ => Err(InvalidValue::new(format!(
                "unknown token source {s:?} (\"authorization\", \"cookie:NAME\", \"query[:NAME]\" or \"protocol[:PREFIX]\")"
            ))),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_is_never_an_algorithm() {
        for s in ["none", "None", "NONE"] {
            assert!(
                s.parse::<JwtAlg>()
                    .unwrap_err()
                    .to_string()
                    .contains("never accepted")
            );
        }
        assert_eq!("ES256".parse::<JwtAlg>(), Ok(JwtAlg(Algorithm::ES256)));
        assert!(
            "HS1"
                .parse::<JwtAlg>()
                .unwrap_err()
                .to_string()
                .contains("unknown")
        );
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
