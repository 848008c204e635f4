//! Reading a route's JWT keys when a generation is built: an HMAC secret, PEM public
//! keys (or certificates), or a JWKS file. A reload re-reads them; a bad one fails the
//! reload with the file named.
//!
//! Owns: what each key may verify (its algorithms: HMAC only for the secret; RSA keys
//! RS*/PS*, EC keys by curve, Ed25519 EdDSA; intersected with `algorithms`), the
//! refusals that keep keys safe (a secret shorter than its hash, an RSA key under
//! 2048 bits, a private key where a public one belongs, a symmetric key in a JWKS),
//! and `KeyError` (what failed, naming the file) with `KeyProblem` (what is wrong
//! with one key). Does not own: checking tokens (mod.rs).

use crate::config::KeySource;
use crate::tls::X509ParseError;
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use rustls_pki_types::pem::{PemObject, SectionKind};
use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

/// One key and the algorithms it verifies.
pub(super) struct Key {
    /// JWKS `kid`; PEM keys and the secret have none.
    pub kid: Option<String>,
    pub key: DecodingKey,
    /// Never empty.
    pub algs: Vec<Algorithm>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algs", &self.algs)
            .finish_non_exhaustive()
    }
}

/// Why a route's keys cannot be used. Every variant names the file; `source()`
/// gives the underlying error (a key's problem shows in the message, its cause, if
/// any, comes through `source()`).
#[derive(Debug)]
pub enum KeyError {
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    SecretTooShort {
        file: PathBuf,
        len: usize,
        need: usize,
    },
    BadBase64 {
        file: PathBuf,
    },
    PrivateKey {
        file: PathBuf,
    },
    NoPublicKey {
        file: PathBuf,
        hint: &'static str,
    },
    /// Key `index` (from 0) of a PEM file.
    BadPublicKey {
        file: PathBuf,
        index: usize,
        problem: KeyProblem,
    },
    /// A JWKS file that is not JSON.
    JwksNotJson {
        file: PathBuf,
        source: serde_json::Error,
    },
    /// A JWKS file without a `keys` array.
    NoJwksKeys {
        file: PathBuf,
    },
    /// Key `index` (from 0) of a JWKS file.
    BadJwk {
        file: PathBuf,
        index: usize,
        problem: KeyProblem,
    },
    /// `None` for a file that only held keys without any usable algorithm.
    NoUsableKey {
        file: PathBuf,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use KeyError::*;
        match self {
            Read { file, .. } => write!(f, "{}: cannot read", file.display()),
            SecretTooShort { file, len, need } => write!(
                f,
                "{}: the secret is {len} bytes; the allowed HMAC algorithms need at least {need} (RFC 7518 section 3.2)",
                file.display()
            ),
            BadBase64 { file } => write!(
                f,
                "{}: not standard base64 (secret_encoding = \"base64\")",
                file.display()
            ),
            PrivateKey { file } => write!(
                f,
                "{}: holds a private key; give wsgate only the public key (or certificate)",
                file.display()
            ),
            NoPublicKey { file, hint } => write!(
                f,
                "{}: holds no PEM \"PUBLIC KEY\" or \"CERTIFICATE\"{hint}",
                file.display()
            ),
            BadPublicKey {
                file,
                index,
                problem,
            }
            | BadJwk {
                file,
                index,
                problem,
            } => write!(f, "{}: key #{}: {problem}", file.display(), index + 1),
            JwksNotJson { file, .. } => write!(f, "{}: not JSON", file.display()),
            NoJwksKeys { file } => write!(
                f,
                "{}: a JWKS is an object with a \"keys\" array",
                file.display()
            ),
            NoUsableKey { file } => write!(
                f,
                "{}: no key in it can verify any of the allowed algorithms",
                file.display()
            ),
        }
    }
}

impl Error for KeyError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            KeyError::Read { source, .. } => Some(source),
            KeyError::JwksNotJson { source, .. } => Some(source),
            // The problem is in the message: go on from its cause.
            KeyError::BadPublicKey { problem, .. } | KeyError::BadJwk { problem, .. } => {
                problem.source()
            }
            _ => None,
        }
    }
}

/// What is wrong with one key of a PEM or JWKS file.
#[derive(Debug)]
pub enum KeyProblem {
    /// A PEM section that cannot be read.
    Pem(rustls_pki_types::pem::Error),
    Certificate(X509ParseError),
    NotSpki(X509ParseError),
    RsaUnparsable,
    RsaTooSmall {
        bits: usize,
    },
    /// An EC key on a curve other than P-256 or P-384.
    EcCurve,
    /// An OKP key on a curve other than Ed25519.
    OkpCurve,
    /// A key type (its OID) JWT signatures do not use here.
    KeyType(String),
    /// A JWKS entry that is not a JWK.
    NotJwk(serde_json::Error),
    /// An RSA JWK whose `n` is not base64url.
    NotBase64Url(base64::DecodeError),
    /// An `oct` JWK.
    Symmetric,
    /// A JWK whose `alg` is not one of its key type's.
    AlgMismatch,
    /// A JWK jsonwebtoken cannot use.
    Unusable(jsonwebtoken::errors::Error),
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use KeyProblem::*;
        match self {
            Pem(_) => f.write_str("not valid PEM"),
            Certificate(_) => f.write_str("certificate cannot be parsed"),
            NotSpki(_) => f.write_str("not a SubjectPublicKeyInfo"),
            RsaUnparsable => f.write_str("RSA key cannot be parsed"),
            RsaTooSmall { bits } => write!(
                f,
                "RSA key of {bits} bits; at least {RSA_MIN_BITS} are required"
            ),
            EcCurve => f.write_str("EC key on a curve JWT cannot use (P-256 or P-384)"),
            OkpCurve => f.write_str("OKP curve other than Ed25519"),
            KeyType(oid) => write!(
                f,
                "key type {oid} is not one JWT signatures use here (RSA, EC P-256/P-384, Ed25519)"
            ),
            NotJwk(_) => f.write_str("not a JWK"),
            NotBase64Url(_) => f.write_str("\"n\" is not base64url"),
            Symmetric => f.write_str(
                "a symmetric (\"oct\") key: a JWKS holds public keys; put an HMAC secret in secret_file",
            ),
            AlgMismatch => f.write_str("its \"alg\" does not fit its key type"),
            Unusable(_) => f.write_str("unusable"),
        }
    }
}

impl Error for KeyProblem {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        use KeyProblem::*;
        match self {
            Pem(e) => Some(e),
            Certificate(e) | NotSpki(e) => Some(e),
            NotJwk(e) => Some(e),
            NotBase64Url(e) => Some(e),
            Unusable(e) => Some(e),
            RsaUnparsable
            | RsaTooSmall { .. }
            | EcCurve
            | OkpCurve
            | KeyType(_)
            | Symmetric
            | AlgMismatch => None,
        }
    }
}

const RSA_MIN_BITS: usize = 2048;

fn read(file: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(file).map_err(|source| KeyError::Read {
        file: file.to_path_buf(),
        source,
    })
}

/// The keys of `src`, each limited to `allowed` (`None`: no limit). Warnings name
/// keys that can verify nothing allowed.
pub(super) fn load(
    src: &KeySource,
    allowed: Option<&[Algorithm]>,
) -> Result<(Vec<Key>, Vec<String>), KeyError> {
    let limit = |algs: &[Algorithm]| -> Vec<Algorithm> {
        algs.iter()
            .copied()
            .filter(|a| allowed.is_none_or(|l| l.contains(a)))
            .collect()
    };
    let (file, found) = match src {
        KeySource::Secret { file, base64 } => return secret(file, *base64, allowed),
        KeySource::PublicKeys(files) => {
            let mut keys = Vec::new();
            for f in files {
                keys.extend(pem_keys(f)?.into_iter().map(|k| (f.clone(), k)));
            }
            (files.first().cloned().unwrap_or_default(), keys)
        }
        KeySource::Jwks(f) => (
            f.clone(),
            jwks(f)?.into_iter().map(|k| (f.clone(), k)).collect(),
        ),
    };
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for (n, (f, mut k)) in found.into_iter().enumerate() {
        k.algs = limit(&k.algs);
        if k.algs.is_empty() {
            warnings.push(format!(
                "{}: key #{}{} can verify none of the allowed algorithms; it is not used",
                f.display(),
                n + 1,
                k.kid
                    .as_deref()
                    .map(|id| format!(" (kid {id:?})"))
                    .unwrap_or_default()
            ));
        } else {
            out.push(k);
        }
    }
    if out.is_empty() {
        return Err(KeyError::NoUsableKey { file });
    }
    Ok((out, warnings))
}

/// Digest size of an HMAC algorithm: its minimum key length.
fn hmac_len(a: Algorithm) -> usize {
    match a {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

fn secret(
    file: &Path,
    base64: bool,
    allowed: Option<&[Algorithm]>,
) -> Result<(Vec<Key>, Vec<String>), KeyError> {
    let raw = read(file)?;
    let bytes = if base64 {
        let text: Vec<u8> = raw
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| KeyError::BadBase64 {
                file: file.to_path_buf(),
            })?
    } else {
        let mut b = raw;
        if b.ends_with(b"\n") {
            b.pop();
            if b.ends_with(b"\r") {
                b.pop();
            }
        }
        b
    };
    let family = AlgorithmFamily::Hmac.algorithms();
    let algs: Vec<Algorithm> = match allowed {
        Some(list) => list.to_vec(),
        // Every HMAC algorithm this secret is long enough for.
        None => family
            .iter()
            .copied()
            .filter(|a| hmac_len(*a) <= bytes.len())
            .collect(),
    };
    let need = algs.iter().map(|a| hmac_len(*a)).max().unwrap_or(32);
    if bytes.len() < need || algs.is_empty() {
        return Err(KeyError::SecretTooShort {
            file: file.to_path_buf(),
            len: bytes.len(),
            need,
        });
    }
    let key = DecodingKey::from_secret(&bytes).map_err(|_| KeyError::SecretTooShort {
        file: file.to_path_buf(),
        len: 0,
        need,
    })?;
    Ok((
        vec![Key {
            kid: None,
            key,
            algs,
        }],
        Vec::new(),
    ))
}

/// Every public key (or certificate's key) in a PEM file.
fn pem_keys(file: &Path) -> Result<Vec<Key>, KeyError> {
    let raw = read(file)?;
    let bad = |index: usize, problem: KeyProblem| KeyError::BadPublicKey {
        file: file.to_path_buf(),
        index,
        problem,
    };
    let mut keys = Vec::new();
    for (index, section) in <(SectionKind, Vec<u8>)>::pem_slice_iter(&raw).enumerate() {
        let (kind, der) = section.map_err(|e| bad(index, KeyProblem::Pem(e)))?;
        let spki_der = match kind {
            SectionKind::PublicKey => der,
            SectionKind::Certificate => {
                let (_, cert) = x509_parser::parse_x509_certificate(&der)
                    .map_err(|e| bad(index, KeyProblem::Certificate(e)))?;
                cert.public_key().raw.to_vec()
            }
            SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey => {
                return Err(KeyError::PrivateKey {
                    file: file.to_path_buf(),
                });
            }
            _ => continue,
        };
        keys.push(spki(&spki_der).map_err(|r| bad(index, r))?);
    }
    if keys.is_empty() {
        let hint = if raw.windows(22).any(|w| w == b"BEGIN RSA PUBLIC KEY--") {
            " (PKCS#1 \"RSA PUBLIC KEY\" is not read: convert it with `openssl rsa -RSAPublicKey_in -pubout`)"
        } else {
            ""
        };
        return Err(KeyError::NoPublicKey {
            file: file.to_path_buf(),
            hint,
        });
    }
    Ok(keys)
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";

/// A key from its SubjectPublicKeyInfo.
fn spki(der: &[u8]) -> Result<Key, KeyProblem> {
    let (_, info) = SubjectPublicKeyInfo::from_der(der).map_err(KeyProblem::NotSpki)?;
    let bits = &info.subject_public_key.data;
    let (key, algs) = match info.algorithm.algorithm.to_id_string().as_str() {
        OID_RSA => {
            let modulus = match info.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(k)) => k.modulus.to_vec(),
                _ => return Err(KeyProblem::RsaUnparsable),
            };
            rsa_size_ok(&modulus)?;
            (
                DecodingKey::from_rsa_der(bits),
                AlgorithmFamily::Rsa.algorithms().to_vec(),
            )
        }
        OID_EC => {
            let curve = info
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            let alg = match curve.as_deref() {
                Some(OID_P256) => Algorithm::ES256,
                Some(OID_P384) => Algorithm::ES384,
                _ => return Err(KeyProblem::EcCurve),
            };
            (DecodingKey::from_ec_der(bits), vec![alg])
        }
        OID_ED25519 => (DecodingKey::from_ed_der(bits), vec![Algorithm::EdDSA]),
        other => return Err(KeyProblem::KeyType(other.to_string())),
    };
    Ok(Key {
        kid: None,
        key,
        algs,
    })
}

fn rsa_size_ok(modulus: &[u8]) -> Result<(), KeyProblem> {
    let m: &[u8] = {
        let skip = modulus.iter().take_while(|b| **b == 0).count();
        &modulus[skip..]
    };
    let bits = m
        .first()
        .map_or(0, |b| m.len() * 8 - b.leading_zeros() as usize);
    if bits < RSA_MIN_BITS {
        return Err(KeyProblem::RsaTooSmall { bits });
    }
    Ok(())
}

/// The signature keys of a JWKS file (`use = "enc"` keys are skipped).
fn jwks(file: &Path) -> Result<Vec<Key>, KeyError> {
    let raw = read(file)?;
    let doc: serde_json::Value =
        serde_json::from_slice(&raw).map_err(|source| KeyError::JwksNotJson {
            file: file.to_path_buf(),
            source,
        })?;
    let list = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or_else(|| KeyError::NoJwksKeys {
            file: file.to_path_buf(),
        })?;
    let mut keys = Vec::new();
    for (index, v) in list.iter().enumerate() {
        let at = |problem: KeyProblem| KeyError::BadJwk {
            file: file.to_path_buf(),
            index,
            problem,
        };
        let jwk: Jwk = serde_json::from_value(v.clone()).map_err(|e| at(KeyProblem::NotJwk(e)))?;
        if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
            continue;
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(p) => {
                let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p.n.trim_end_matches('='))
                    .map_err(|e| at(KeyProblem::NotBase64Url(e)))?;
                rsa_size_ok(&n).map_err(at)?;
                AlgorithmFamily::Rsa.algorithms().to_vec()
            }
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => return Err(at(KeyProblem::EcCurve)),
            },
            AlgorithmParameters::OctetKeyPair(p) => match p.curve {
                EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
                _ => return Err(at(KeyProblem::OkpCurve)),
            },
            AlgorithmParameters::OctetKey(_) => return Err(at(KeyProblem::Symmetric)),
            _ => continue, // a key type this version cannot use
        };
        let algs = match jwk.common.key_algorithm.map(Algorithm::try_from) {
            None => family,
            Some(Ok(a)) if family.contains(&a) => vec![a],
            Some(_) => return Err(at(KeyProblem::AlgMismatch)),
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| at(KeyProblem::Unusable(e)))?;
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            key,
            algs,
        });
    }
    Ok(keys)
}
