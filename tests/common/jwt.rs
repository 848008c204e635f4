//! JWT test material: signing keys of every family (HMAC secret, RSA, EC P-256 and
//! P-384, Ed25519) with their public halves written as the files wsgate reads (a
//! secret file, PEM public keys, a JWKS), and tokens minted with jsonwebtoken.

use super::certs::{TEST_RSA_PKCS8_PEM, pkcs8_to_pkcs1};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{
    KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const ISS: &str = "https://id.example.test";
pub const AUD: &str = "chat";
/// 40 bytes: long enough for HS256.
pub const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";

/// A signing key and the file(s) that hold its public half.
pub struct Signer {
    pub alg: Algorithm,
    pub key: EncodingKey,
    /// The secret file (HMAC) or the PEM public key.
    pub file: PathBuf,
    /// Raw public key bytes (EC point, Ed25519 key); empty for HMAC and RSA.
    pub raw: Vec<u8>,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

pub fn hmac(dir: &Path) -> Signer {
    Signer {
        alg: Algorithm::HS256,
        key: EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
        // A final line break (as `echo` writes) is not part of the secret.
        file: write(dir, "hs.secret", &format!("{SECRET}\n")),
        raw: Vec::new(),
    }
}

/// The fixed test RSA key; `alg` RS* or PS*.
pub fn rsa(dir: &Path, alg: Algorithm) -> Signer {
    let kp = KeyPair::from_pkcs8_pem_and_sign_algo(TEST_RSA_PKCS8_PEM, &PKCS_RSA_SHA256).unwrap();
    Signer {
        alg,
        key: EncodingKey::from_rsa_der(&pkcs8_to_pkcs1(kp.serialized_der())),
        file: write(dir, "rsa.pub.pem", &kp.public_key_pem()),
        raw: Vec::new(),
    }
}

/// A fresh key: ES256 (P-256), ES384 (P-384) or EdDSA (Ed25519); `name` tells files apart.
pub fn fresh(dir: &Path, alg: Algorithm, name: &str) -> Signer {
    let kp = match alg {
        Algorithm::ES256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        Algorithm::ES384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
        Algorithm::EdDSA => KeyPair::generate_for(&PKCS_ED25519),
        other => panic!("no fresh key for {other:?}"),
    }
    .unwrap();
    let key = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_der(kp.serialized_der()),
        _ => EncodingKey::from_ec_der(kp.serialized_der()),
    };
    Signer {
        alg,
        key,
        file: write(dir, &format!("{name}.pub.pem"), &kp.public_key_pem()),
        raw: kp.public_key_raw().to_vec(),
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A JWK for an EC or Ed25519 signer, with `kid`.
pub fn jwk(s: &Signer, kid: &str) -> Value {
    match s.alg {
        Algorithm::EdDSA => {
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&s.raw), "kid": kid, "use": "sig"})
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let (crv, n) = if s.alg == Algorithm::ES256 {
                ("P-256", 32)
            } else {
                ("P-384", 48)
            };
            json!({"kty": "EC", "crv": crv, "x": b64(&s.raw[1..1 + n]), "y": b64(&s.raw[1 + n..]), "kid": kid, "alg": format!("{:?}", s.alg)})
        }
        other => panic!("no JWK for {other:?}"),
    }
}

pub fn write_jwks(dir: &Path, keys: &[Value]) -> PathBuf {
    write(dir, "jwks.json", &json!({ "keys": keys }).to_string())
}

/// Claims that pass a route with `ISS` / `AUD`: sub alice, exp in 10 minutes.
pub fn claims() -> Value {
    json!({"sub": "alice", "iss": ISS, "aud": AUD, "exp": now() + 600, "iat": now()})
}

/// `claims` with `changes` merged in (a `null` removes the claim).
pub fn with(changes: Value) -> Value {
    let mut c = claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

pub fn token(s: &Signer, claims: &Value) -> String {
    token_kid(s, None, claims)
}

pub fn token_kid(s: &Signer, kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(s.alg);
    h.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&h, claims, &s.key).unwrap()
}

/// An unsigned token: `{"alg":"none"}`, the claims, an empty signature.
pub fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}

/// An HS256 token whose "secret" is the RSA public key file's bytes: the classic
/// algorithm-confusion forgery against verifiers that take the key as given.
pub fn hs256_with_public_key(rsa: &Signer, claims: &Value) -> String {
    let pem = std::fs::read(&rsa.file).unwrap();
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(&pem).unwrap(),
    )
    .unwrap()
}
