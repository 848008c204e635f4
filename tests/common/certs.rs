//! Test-time generation of certificates and keys (as PEM files) for exercising
//! wsgate's certificate and key validation.
//!
//! Every function generates fresh keys and certificates (ECDSA P-256 unless
//! stated otherwise) and writes them into the given directory under file names
//! prefixed with the scenario's name, so several scenarios can share one
//! directory. In the chain scenarios the CA file holds the root certificate and
//! the certificate file holds leaf-then-intermediate ("fullchain") unless the
//! scenario says otherwise. The leaf is valid for `localhost`, `127.0.0.1` and
//! `::1`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    PKCS_RSA_SHA256, date_time_ymd,
};

/// Paths of the files written for one scenario.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// Certificate file (PEM, one or more `CERTIFICATE` blocks).
    pub cert: PathBuf,
    /// Private key file (PEM, PKCS#8 `PRIVATE KEY`).
    pub key: PathBuf,
    /// Trust anchor for clients (PEM, the root CA certificate).
    pub ca: PathBuf,
}

/// Root -> intermediate -> leaf; `cert` is leaf + intermediate.
pub fn good_chain(dir: &Path) -> CertFiles {
    let pki = Pki::new();
    let (leaf, key) = pki.leaf(-1, 3650);
    pki.write(dir, "good", &[leaf.pem(), pki.intermediate.pem()], &key)
}

/// Like [`good_chain`], but the leaf expired yesterday (valid from 30 days ago).
pub fn expired_leaf(dir: &Path) -> CertFiles {
    let pki = Pki::new();
    let (leaf, key) = pki.leaf(-30, -1);
    pki.write(dir, "expired", &[leaf.pem(), pki.intermediate.pem()], &key)
}

/// Like [`good_chain`], but the leaf only becomes valid 30 days from now.
pub fn not_yet_valid_leaf(dir: &Path) -> CertFiles {
    let pki = Pki::new();
    let (leaf, key) = pki.leaf(30, 395);
    pki.write(
        dir,
        "not-yet-valid",
        &[leaf.pem(), pki.intermediate.pem()],
        &key,
    )
}

/// A valid chain written in the wrong order: intermediate first, then the leaf.
pub fn wrong_order_chain(dir: &Path) -> CertFiles {
    let pki = Pki::new();
    let (leaf, key) = pki.leaf(-1, 3650);
    pki.write(
        dir,
        "wrong-order",
        &[pki.intermediate.pem(), leaf.pem()],
        &key,
    )
}

/// A good fullchain, but `key` is an unrelated ECDSA P-256 key.
pub fn mismatched_key(dir: &Path) -> CertFiles {
    let pki = Pki::new();
    let (leaf, _leaf_key) = pki.leaf(-1, 3650);
    pki.write(
        dir,
        "mismatched-key",
        &[leaf.pem(), pki.intermediate.pem()],
        &new_key(),
    )
}

/// `cert` holds only the leaf, which is signed by the intermediate (missing).
pub fn lone_leaf_not_self_signed(dir: &Path) -> CertFiles {
    let pki = Pki::new();
    let (leaf, key) = pki.leaf(-1, 3650);
    pki.write(dir, "lone-leaf", &[leaf.pem()], &key)
}

/// A lone self-signed leaf for localhost; `ca` is a copy of the same certificate.
pub fn self_signed(dir: &Path) -> CertFiles {
    let key = new_key();
    let cert = leaf_params(-1, 3650)
        .self_signed(&key)
        .expect("self-sign leaf");
    let files = scenario_paths(dir, "self-signed");
    write_file(&files.cert, cert.pem());
    write_file(&files.key, key.serialize_pem());
    write_file(&files.ca, cert.pem());
    files
}

/// Self-signed localhost certificates with their keys in each PEM key format:
/// `(ecdsa cert, PKCS#8 ECDSA key, SEC1 "EC PRIVATE KEY", rsa cert,
/// PKCS#1 "RSA PRIVATE KEY")`. Both ECDSA key files hold the same key.
///
/// rcgen's default (ring) backend cannot generate RSA keys, so the RSA key is
/// the fixed [`TEST_RSA_PKCS8_PEM`]; the RSA certificate is generated fresh.
pub fn key_formats(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf, PathBuf) {
    let prefix = dir.join("key-formats");
    let path = |suffix: &str| PathBuf::from(format!("{}-{suffix}.pem", prefix.display()));

    let ec_key = new_key();
    let ec_cert = leaf_params(-1, 3650)
        .self_signed(&ec_key)
        .expect("self-sign ecdsa leaf");
    let ec_cert_path = path("ecdsa-cert");
    let ec_pkcs8_path = path("ecdsa-pkcs8");
    let ec_sec1_path = path("ecdsa-sec1");
    write_file(&ec_cert_path, ec_cert.pem());
    write_pem(&ec_pkcs8_path, "PRIVATE KEY", ec_key.serialized_der());
    write_pem(
        &ec_sec1_path,
        "EC PRIVATE KEY",
        &pkcs8_to_sec1(ec_key.serialized_der()),
    );

    let rsa_key = KeyPair::from_pkcs8_pem_and_sign_algo(TEST_RSA_PKCS8_PEM, &PKCS_RSA_SHA256)
        .expect("load test RSA key");
    let rsa_cert = leaf_params(-1, 3650)
        .self_signed(&rsa_key)
        .expect("self-sign rsa leaf");
    let rsa_cert_path = path("rsa-cert");
    let rsa_pkcs1_path = path("rsa-pkcs1");
    write_file(&rsa_cert_path, rsa_cert.pem());
    write_pem(
        &rsa_pkcs1_path,
        "RSA PRIVATE KEY",
        &pkcs8_to_pkcs1(rsa_key.serialized_der()),
    );

    (
        ec_cert_path,
        ec_pkcs8_path,
        ec_sec1_path,
        rsa_cert_path,
        rsa_pkcs1_path,
    )
}

/// Write `der` as a PEM block with the given label (e.g. `"CERTIFICATE"`).
pub fn write_pem(path: &Path, label: &str, der: &[u8]) {
    write_file(path, pem_encode(label, der));
}

/// Encode `der` as a PEM block with 64-column base64 lines.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Extract the PKCS#1 `RSAPrivateKey` from an RSA PKCS#8 `PrivateKeyInfo`.
pub fn pkcs8_to_pkcs1(pkcs8: &[u8]) -> Vec<u8> {
    let (algorithm, _params, private_key) = split_pkcs8(pkcs8);
    assert_eq!(algorithm, OID_RSA_ENCRYPTION, "not an RSA PKCS#8 key");
    private_key.to_vec()
}

/// Extract the SEC1 `ECPrivateKey` from an EC PKCS#8 `PrivateKeyInfo`, adding
/// the `[0] parameters` (named curve) field if the inner key omits it, as
/// ring's PKCS#8 output does.
pub fn pkcs8_to_sec1(pkcs8: &[u8]) -> Vec<u8> {
    let (algorithm, params, private_key) = split_pkcs8(pkcs8);
    assert_eq!(algorithm, OID_EC_PUBLIC_KEY, "not an EC PKCS#8 key");
    let curve = params.expect("EC PKCS#8 key without curve parameters");

    let (ec_key, rest) = der_split(private_key);
    assert!(ec_key.tag == 0x30 && rest.is_empty(), "bad ECPrivateKey");
    let fields = der_items(ec_key.contents);
    if fields.iter().any(|f| f.tag == 0xa0) {
        return private_key.to_vec();
    }
    // ECPrivateKey ::= SEQUENCE { version, privateKey, [0] parameters, [1] publicKey }
    assert!(fields.len() >= 2, "bad ECPrivateKey");
    let mut contents = Vec::new();
    contents.extend_from_slice(fields[0].raw);
    contents.extend_from_slice(fields[1].raw);
    contents.extend(der_encode(0xa0, curve.raw));
    for field in &fields[2..] {
        contents.extend_from_slice(field.raw);
    }
    der_encode(0x30, &contents)
}

/// A fixed 2048-bit RSA test key (PKCS#8), used because rcgen's default ring
/// backend cannot generate RSA keys. Test use only.
pub const TEST_RSA_PKCS8_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDjDKnRs5pOKPsz
Dnucim01N2mNzfqHm/p8j7yj9Z226w720USNXFzxfJjwQSD280LNy6SRCxkgr5Py
z1kKJG1wP+4tCCSFOk/OVeTfUvvFuOv7+sxspQJGZKyzjSae4oUCE9y3f1RmBtt/
jOZlVzmHKlQR8kBohj0MGSAYT0lvG3KmAhlRiuN3VvvQdrrSXn0Bw4m+aFRZNN8F
r/IkOAtB/+w9P2tYbMv0lT3aUBYsEhxh8OcV1RsP5BcputkYxdVhHJ6fbZNsaZHt
dEKDKfKV8tErl+J51yg1KZYoDWz8gt75WZaDj759BFeqPA9Z0tb5ghJyfDVn8Xbl
p1+GBj0dAgMBAAECggEAM4LZekKBlQ72Iri78aF0MlkegPYEy0RneWAQ36/nNqsw
i22h3GJikcT/W66jAHPjKZZ0gRWf/0rmSXWiUUs/avKOIjhRNMqsdXcGRGZqyYpx
O4tEWre7AuZvShMReoWQwI5qClWAe989aDw6vy4hVpmTVjj8RNqDuh1vKyS9189Y
UsAaXSJtk2YdB0QvQpGYPM+I+DKDnrqsoU1UitTa5OsJrH1j4HeTo1iAUZ6sbFh+
PfcyPeZjqc+eHzDrFwHkNnRfNT7sukD/01hsruRSkRajH61JpMs8VJGoqf0siygF
QkzgOvRPy/U+jjYMgP/8/+zLlipvPPIDi5Gx/txfHwKBgQD90evIHvC2VuZkYWQE
qOGBnTt7Zfx/6QskeIckbYymnL/ZLAzkr/9GGJFUzNomtBCeqevO9apR5u0wnGRj
hr0S0kJrhwbM6f+rxT3TZ9Vde4A0UNRp46ZQl7DvJt9CqAP+96BRUUHW7j2X+q6V
ddwZQ3SGuVxcdNNElZHydVrwmwKBgQDk/+GlhE2qjSYF+RX05g7V7/sVAS4MLz9f
qPmhR94LIF/kGw2oI9gs8MBhTFtTKsB51A9RY8dGiQIPCuexjJxqFoaP8HIa5gFI
k1p+7J5yWeHpi4Mu/0oFVv/z8pLwf8D1KWHUhM90PyuIJHv2Tdf5I6NN6aBEQq9O
g4sBA9pYpwKBgQDc6GpMx1j7adClhvn08EMsevs9H/tOHDb9bAU62Dm0/PIggq1K
ED+d813xr0UisE9SuFMq0jeFhvXi/AqHcMp4ahUy3tc1W2eRSV7Q8ysJbKadYcgt
zNuAgzWUP4HK0s5/h2e5vn4OIVXsQ1rVbDm+py3w370aHveNVpwqqKcYhwKBgAWZ
A6kKHOPoY1+OAS1lWkN8hES1LKz7kq8B8Ggy24imF/H5f1H23lfq4qj+NtVHnEDe
ICm7KKneu4AmohdC+qfVOSDXndJugOWHRJUJr63X6J/O2zwQ3XxX7hXGfjUGym6z
vkJ1pKSQzr2bNrSEnpzmdB15coN4pdRjfshdkb7NAoGBAOq7U7EoXZg4LhoLf6G1
QmX7+hz5sZvI/T6iEtx/sVj0PqhhMiSUpBIzAcF8PmUh0jP7johFdD+yXTGqTT1s
9g7lEzC3skRIHwZY/6uoIKzY9yXU0YwL7nvyAC/PglyvDgK2zEnS2ucfuUiowYc5
T3D5BzCqGN+wG0udY9qtg5SA
-----END PRIVATE KEY-----
";

// ---------------------------------------------------------------------------
// Internals.

const DAY_SECS: u64 = 24 * 60 * 60;
/// DER of OID 1.2.840.113549.1.1.1 (rsaEncryption), tag and length included.
const OID_RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
/// DER of OID 1.2.840.10045.2.1 (id-ecPublicKey), tag and length included.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// A throwaway root and intermediate CA (keys kept in memory only).
pub(super) struct Pki {
    pub(super) root: CertifiedIssuer<'static, KeyPair>,
    pub(super) intermediate: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    pub(super) fn new() -> Self {
        let mut root_params = base_params("wsgate test root CA");
        root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut root_params, -1, 7300);
        let root = CertifiedIssuer::self_signed(root_params, new_key()).expect("root CA");

        let mut inter_params = base_params("wsgate test intermediate CA");
        inter_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        inter_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut inter_params, -1, 5475);
        let intermediate =
            CertifiedIssuer::signed_by(inter_params, new_key(), &root).expect("intermediate CA");

        Pki { root, intermediate }
    }

    /// A leaf signed by the intermediate, valid over the given days relative to now.
    fn leaf(&self, from_days: i64, to_days: i64) -> (Certificate, KeyPair) {
        let key = new_key();
        let cert = leaf_params(from_days, to_days)
            .signed_by(&key, &self.intermediate)
            .expect("sign leaf");
        (cert, key)
    }

    /// Write `cert_pems` concatenated, the key as PKCS#8, and the root as CA.
    pub(super) fn write(
        &self,
        dir: &Path,
        name: &str,
        cert_pems: &[String],
        key: &KeyPair,
    ) -> CertFiles {
        let files = scenario_paths(dir, name);
        write_file(&files.cert, cert_pems.concat());
        write_file(&files.key, key.serialize_pem());
        write_file(&files.ca, self.root.pem());
        files
    }
}

pub(super) fn new_key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("generate ECDSA P-256 key")
}

pub(super) fn base_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "wsgate tests");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.key_identifier_method = KeyIdMethod::Sha256;
    params.use_authority_key_identifier_extension = true;
    params
}

pub(super) fn leaf_params(from_days: i64, to_days: i64) -> CertificateParams {
    let mut params = base_params("localhost");
    params.subject_alt_names = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .expect("subject alt names")
    .subject_alt_names;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut params, from_days, to_days);
    params
}

/// Set not_before/not_after to now plus the given (possibly negative) days.
///
/// rcgen 0.14 does not re-export `time`, so "now" is built from
/// `date_time_ymd` plus a `std::time::Duration`.
pub(super) fn set_validity(params: &mut CertificateParams, from_days: i64, to_days: i64) {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    let now = date_time_ymd(1970, 1, 1) + since_epoch;
    let shift = |days: i64| {
        let delta = Duration::from_secs(days.unsigned_abs() * DAY_SECS);
        if days < 0 { now - delta } else { now + delta }
    };
    params.not_before = shift(from_days);
    params.not_after = shift(to_days);
}

fn scenario_paths(dir: &Path, name: &str) -> CertFiles {
    CertFiles {
        cert: dir.join(format!("{name}-cert.pem")),
        key: dir.join(format!("{name}-key.pem")),
        ca: dir.join(format!("{name}-ca.pem")),
    }
}

pub(super) fn write_file(path: &Path, contents: impl AsRef<[u8]>) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// One DER element: its tag, the whole encoding, and its contents.
struct Tlv<'a> {
    tag: u8,
    raw: &'a [u8],
    contents: &'a [u8],
}

/// Split the first DER element (single-byte tag, definite length) off `input`.
fn der_split(input: &[u8]) -> (Tlv<'_>, &[u8]) {
    assert!(input.len() >= 2, "truncated DER");
    let (len, header) = match input[1] {
        short @ 0..=0x7f => (short as usize, 2),
        long => {
            let n = (long & 0x7f) as usize;
            assert!(
                (1..=4).contains(&n) && input.len() >= 2 + n,
                "bad DER length"
            );
            let len = input[2..2 + n]
                .iter()
                .fold(0usize, |len, &b| len << 8 | b as usize);
            (len, 2 + n)
        }
    };
    let end = header + len;
    assert!(input.len() >= end, "truncated DER");
    let tlv = Tlv {
        tag: input[0],
        raw: &input[..end],
        contents: &input[header..end],
    };
    (tlv, &input[end..])
}

/// All DER elements in `contents` (e.g. the contents of a SEQUENCE).
fn der_items(mut contents: &[u8]) -> Vec<Tlv<'_>> {
    let mut items = Vec::new();
    while !contents.is_empty() {
        let (item, rest) = der_split(contents);
        items.push(item);
        contents = rest;
    }
    items
}

fn der_encode(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

/// PrivateKeyInfo ::= SEQUENCE { version, AlgorithmIdentifier, OCTET STRING privateKey, ... }
/// Returns (algorithm OID element, optional parameters element, privateKey contents).
fn split_pkcs8(pkcs8: &[u8]) -> (&[u8], Option<Tlv<'_>>, &[u8]) {
    let (info, rest) = der_split(pkcs8);
    assert!(info.tag == 0x30 && rest.is_empty(), "bad PKCS#8");
    let mut fields = der_items(info.contents).into_iter();
    let (Some(version), Some(alg_id), Some(private_key)) =
        (fields.next(), fields.next(), fields.next())
    else {
        panic!("bad PKCS#8: too few fields");
    };
    assert!(version.tag == 0x02, "bad PKCS#8 version");
    assert!(alg_id.tag == 0x30, "bad PKCS#8 AlgorithmIdentifier");
    assert!(private_key.tag == 0x04, "bad PKCS#8 privateKey");
    let mut alg = der_items(alg_id.contents).into_iter();
    let algorithm = alg.next().expect("AlgorithmIdentifier without OID");
    (algorithm.raw, alg.next(), private_key.contents)
}
