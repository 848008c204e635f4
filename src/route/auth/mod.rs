//! JWT validation at the handshake (`[route.auth]`, `kind = "jwt"`), and the identity
//! headers a backend gets from what wsgate verified.
//!
//! Owns: checking a route's token (`Jwt::check`; found by `token.rs`, keys loaded by
//! `keys.rs` when the generation is built), the refusal reasons (`Failure`: fixed
//! lines, nothing of the token), the identity headers forwarded (`backend_headers`),
//! and the signal that ends a session when its token expires (`until_expiry`).
//! Does not own: the 401 answer itself (refusal.rs) or closing the session (relay/).

mod keys;
mod token;

pub(crate) use keys::KeyError;

use crate::census::StopReason;
use crate::config::{JwtConf, TokenSource};
use crate::refusal::Refusal;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// A route's JWT check, ready to use.
#[derive(Debug)]
pub struct Jwt {
    keys: Vec<keys::Key>,
    /// One validation per algorithm some key verifies.
    validations: Vec<(Algorithm, Validation)>,
    sources: Vec<TokenSource>,
    claims: Vec<(String, HeaderName)>,
    leeway: Duration,
    pub enforce_expiry: bool,
}

/// What a valid token grants the session.
#[derive(Debug, Default)]
pub struct Grant {
    /// When the token stops being valid (`exp` + leeway), if the route enforces it.
    pub expires: Option<SystemTime>,
    /// Claim headers for the backend.
    pub claims: Vec<(HeaderName, HeaderValue)>,
    /// The `Sec-WebSocket-Protocol` entry that carried the token (not forwarded).
    pub protocol_entry: Option<String>,
}

/// Why a token was refused: the one line the client gets (and the log). A fixed
/// reason: nothing of the token reaches a log or an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Missing,
    NotBearer,
    Malformed,
    Unsigned,
    AlgorithmNotAllowed,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    NoExpiry,
    BadClaim,
    ClaimNotHeader,
}

impl Failure {
    pub fn reason(self) -> &'static str {
        use Failure::*;
        match self {
            Missing => "missing token",
            NotBearer => "Authorization must be \"Bearer <token>\"",
            Malformed => "malformed token",
            Unsigned => "unsigned token (alg none) not accepted",
            AlgorithmNotAllowed => "token algorithm not accepted",
            UnknownKey => "token signed by an unknown key",
            BadSignature => "invalid token signature",
            Expired => "token expired",
            NotYetValid => "token not yet valid",
            WrongIssuer => "token issuer not accepted",
            WrongAudience => "token audience not accepted",
            NoExpiry => "token has no valid expiry (exp)",
            BadClaim => "token claim of the wrong type",
            ClaimNotHeader => "token claim cannot be forwarded as a header",
        }
    }

    /// The 401 this failure gets (RFC 6750: no error code when no token was sent).
    pub fn refusal(self) -> Refusal {
        Refusal::Unauthorized {
            reason: self.reason(),
            error: match self {
                Failure::Missing => None,
                Failure::NotBearer => Some("invalid_request"),
                _ => Some("invalid_token"),
            },
        }
    }
}

impl Jwt {
    /// Loads the route's keys; also returns warnings (keys that verify nothing allowed).
    pub fn load(c: &JwtConf) -> Result<(Jwt, Vec<String>), KeyError> {
        let (keys, warnings) = keys::load(&c.keys, c.algorithms.as_deref())?;
        let mut validations: Vec<(Algorithm, Validation)> = Vec::new();
        for alg in keys.iter().flat_map(|k| k.algs.iter().copied()) {
            if validations.iter().any(|(a, _)| *a == alg) {
                continue;
            }
            let mut v = Validation::new(alg);
            v.leeway = c.leeway.as_secs();
            v.validate_nbf = true;
            v.validate_exp = true;
            // A configured issuer or audience must also be present in the token.
            v.required_spec_claims = Default::default();
            if c.require_exp {
                v.required_spec_claims.insert("exp".into());
            }
            if !c.issuer.is_empty() {
                v.set_issuer(&c.issuer);
                v.required_spec_claims.insert("iss".into());
            }
            if !c.audience.is_empty() {
                v.set_audience(&c.audience);
                v.required_spec_claims.insert("aud".into());
            }
            validations.push((alg, v));
        }
        Ok((
            Jwt {
                keys,
                validations,
                sources: c.sources.clone(),
                claims: c.forward_claims.clone(),
                leeway: c.leeway,
                enforce_expiry: c.enforce_expiry,
            },
            warnings,
        ))
    }

    /// Checks the token of an upgrade request with these headers and target: the
    /// header's `alg` must be allowed and fit the key (an HMAC secret never verifies
    /// an RSA/EC/Ed algorithm, a public key never an HMAC one: keys carry their own
    /// algorithms), `kid` picks among JWKS keys, then signature, `exp` (required
    /// unless `require_exp = false`), `nbf`, `iss` and `aud` with `leeway`.
    pub fn check(&self, h: &HeaderMap, path_and_query: &str) -> Result<Grant, Failure> {
        let found = token::find(&self.sources, h, path_and_query).map_err(|m| match m {
            token::Missing::None => Failure::Missing,
            token::Missing::NotBearer => Failure::NotBearer,
        })?;
        let claims = self.verify(&found.token)?;
        let mut grant = Grant {
            protocol_entry: found.protocol_entry.map(str::to_string),
            ..Grant::default()
        };
        for (name, header) in &self.claims {
            let Some(v) = claims.get(name) else { continue };
            let text = claim_text(v);
            let value =
                HeaderValue::from_bytes(text.as_bytes()).map_err(|_| Failure::ClaimNotHeader)?;
            grant.claims.push((header.clone(), value));
        }
        if self.enforce_expiry
            && let Some(exp) = claims.get("exp").and_then(Value::as_u64)
        {
            grant.expires = Some(UNIX_EPOCH + Duration::from_secs(exp) + self.leeway);
        }
        Ok(grant)
    }

    /// Signature and claims; the claims on success.
    fn verify(&self, token: &str) -> Result<Map<String, Value>, Failure> {
        let head = match jsonwebtoken::decode_header(token) {
            Ok(h) => h,
            Err(_) if declares_none(token) => return Err(Failure::Unsigned),
            Err(_) => return Err(Failure::Malformed),
        };
        let Some((_, validation)) = self.validations.iter().find(|(a, _)| *a == head.alg) else {
            return Err(Failure::AlgorithmNotAllowed);
        };
        let fits = |k: &&keys::Key| k.algs.contains(&head.alg);
        let by_kid: Vec<&keys::Key> = match &head.kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(fits)
                .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                .collect(),
            None => Vec::new(),
        };
        let candidates: Vec<&keys::Key> = if by_kid.is_empty() {
            // No kid, or one no key has: keys without a kid (PEM, the secret) may
            // still verify it; a JWKS key is only used under its own kid if the token names one.
            self.keys
                .iter()
                .filter(fits)
                .filter(|k| head.kid.is_none() || k.kid.is_none())
                .collect()
        } else {
            by_kid
        };
        if candidates.is_empty() {
            return Err(Failure::UnknownKey);
        }
        let mut last = Failure::BadSignature;
        for k in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &k.key, validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    last = map_error(e.kind());
                    if last != Failure::BadSignature {
                        // The signature held: what failed is the claims.
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }
}

fn map_error(e: &ErrorKind) -> Failure {
    match e {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => Failure::BadSignature,
        ErrorKind::ExpiredSignature => Failure::Expired,
        ErrorKind::ImmatureSignature => Failure::NotYetValid,
        ErrorKind::InvalidIssuer => Failure::WrongIssuer,
        ErrorKind::InvalidAudience => Failure::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) if c == "exp" => Failure::NoExpiry,
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => Failure::WrongIssuer,
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => Failure::WrongAudience,
        ErrorKind::InvalidClaimFormat(_) | ErrorKind::MissingRequiredClaim(_) => Failure::BadClaim,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Failure::AlgorithmNotAllowed,
        _ => Failure::Malformed,
    }
}

/// Whether the token's header says `"alg": "none"` (which jsonwebtoken cannot parse).
fn declares_none(token: &str) -> bool {
    use base64::Engine;
    let Some(head) = token.split('.').next() else {
        return false;
    };
    let Ok(json) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(head) else {
        return false;
    };
    serde_json::from_slice::<Map<String, Value>>(&json)
        .ok()
        .and_then(|m| {
            m.get("alg")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
        })
        .is_some_and(|a| a == "none")
}

/// A claim as header text: strings as they are, lists of scalars joined by ",",
/// anything else as JSON.
fn claim_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        Value::Array(items) if items.iter().all(|i| !i.is_array() && !i.is_object()) => Cow::Owned(
            items
                .iter()
                .map(|i| claim_text(i).into_owned())
                .collect::<Vec<_>>()
                .join(","),
        ),
        other => Cow::Owned(other.to_string()),
    }
}

/// The client's headers as the backend gets them: every header in `identity` (all
/// that wsgate sets anywhere from a claim or a certificate) removed, the grant's
/// claims and the client subject set, and the token's protocol entry taken out of
/// `Sec-WebSocket-Protocol`. Borrowed when there is nothing to change. The removal
/// applies on every route, so no identity header can be spoofed.
pub(crate) fn backend_headers<'a>(
    client: &'a HeaderMap,
    identity: &[HeaderName],
    grant: Option<&Grant>,
    subject: Option<(&HeaderName, &str)>,
) -> Cow<'a, HeaderMap> {
    let spoofed = identity.iter().any(|n| client.contains_key(n));
    let adds = grant.is_some_and(|g| !g.claims.is_empty() || g.protocol_entry.is_some())
        || subject.is_some();
    if !spoofed && !adds {
        return Cow::Borrowed(client);
    }
    let mut h = client.clone();
    for n in identity {
        h.remove(n);
    }
    if let Some(g) = grant {
        for (n, v) in &g.claims {
            h.insert(n.clone(), v.clone());
        }
        if let Some(entry) = &g.protocol_entry {
            let rest: Vec<&str> =
                crate::http::handshake::tokens(client, &header::SEC_WEBSOCKET_PROTOCOL)
                    .filter(|p| p != entry)
                    .collect();
            h.remove(header::SEC_WEBSOCKET_PROTOCOL);
            if let Ok(v) = HeaderValue::from_str(&rest.join(", "))
                && !rest.is_empty()
            {
                h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
            }
        }
    }
    if let Some((n, s)) = subject
        && let Ok(v) = HeaderValue::from_str(s)
    {
        h.insert(n.clone(), v);
    }
    Cow::Owned(h)
}

/// `end` (wsgate's own reasons to end a session), or the token's expiry at `expires`,
/// whichever comes first (for `enforce_expiry`).
pub(crate) fn until_expiry(
    end: impl Future<Output = (StopReason, Instant)> + Send + 'static,
    expires: SystemTime,
) -> impl Future<Output = (StopReason, Instant)> + Send + 'static {
    let left = expires
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    let at = Instant::now() + left;
    async move {
        tokio::select! {
            r = end => r,
            _ = tokio::time::sleep_until(at) => (StopReason::TokenExpired, at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_as_header_text() {
        assert_eq!(claim_text(&Value::from("alice")), "alice");
        assert_eq!(claim_text(&serde_json::json!(42)), "42");
        assert_eq!(claim_text(&serde_json::json!(["a", "b", 3])), "a,b,3");
        assert_eq!(claim_text(&serde_json::json!({"k": 1})), "{\"k\":1}");
    }

    #[test]
    fn alg_none_is_recognised() {
        // {"alg":"none","typ":"JWT"} . {"sub":"x"} .
        assert!(declares_none(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0."
        ));
        assert!(!declares_none("garbage"));
    }

    #[test]
    fn identity_headers_are_replaced_and_the_token_entry_dropped() {
        let mut h = HeaderMap::new();
        h.insert("x-user-id", HeaderValue::from_static("spoofed"));
        h.insert("x-client-subject", HeaderValue::from_static("spoofed"));
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("chat, bearer.a.b.c"),
        );
        let id = [
            HeaderName::from_static("x-user-id"),
            HeaderName::from_static("x-client-subject"),
        ];
        let g = Grant {
            claims: vec![(id[0].clone(), HeaderValue::from_static("alice"))],
            protocol_entry: Some("bearer.a.b.c".into()),
            expires: None,
        };
        let out = backend_headers(&h, &id, Some(&g), None);
        assert_eq!(out["x-user-id"], "alice");
        assert!(!out.contains_key("x-client-subject"));
        assert_eq!(out["sec-websocket-protocol"], "chat");
        let plain = HeaderMap::new();
        assert!(matches!(
            backend_headers(&plain, &id, None, None),
            Cow::Borrowed(_)
        ));
    }
}
