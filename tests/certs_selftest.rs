//! Checks that the test-support certificate generator (`tests/common/certs.rs`)
//! produces what each scenario promises, using rustls/webpki as the judge, and
//! that the committed `certs-example/` files form a valid chain.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::certs::{self, CertFiles};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::crypto::aws_lc_rs::default_provider;
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, Error, InconsistentKeys, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wsgate-certs-selftest-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn load_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn load_key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).unwrap()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(default_provider())
}

/// Verify `files.cert` (end entity first) against `files.ca` for `name`.
fn verify(files: &CertFiles, name: &str) -> Result<(), Error> {
    let mut roots = RootCertStore::empty();
    for ca in load_certs(&files.ca) {
        roots.add(ca).unwrap();
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .unwrap();
    let chain = load_certs(&files.cert);
    let (end_entity, intermediates) = chain.split_first().unwrap();
    verifier
        .verify_server_cert(
            end_entity,
            intermediates,
            &ServerName::try_from(name.to_string()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
}

fn keys_match(cert: &Path, key: &Path) -> Result<(), Error> {
    CertifiedKey::from_der(load_certs(cert), load_key(key), &provider()).map(|_| ())
}

fn is_ca(der: &CertificateDer<'_>) -> bool {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.is_ca()
}

fn assert_good_chain(files: &CertFiles) {
    for name in ["localhost", "127.0.0.1", "::1"] {
        verify(files, name).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    keys_match(&files.cert, &files.key).unwrap();
    let chain = load_certs(&files.cert);
    assert_eq!(chain.len(), 2, "fullchain = leaf + intermediate");
    assert!(!is_ca(&chain[0]) && is_ca(&chain[1]));
    let roots = load_certs(&files.ca);
    assert_eq!(roots.len(), 1);
    assert!(!chain.contains(&roots[0]), "root must not be in fullchain");
    for der in chain.iter().chain(&roots) {
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        assert!(
            cert.get_extension_unique(
                &x509_parser::oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER
            )
            .unwrap()
            .is_some(),
            "missing SKI in {}",
            cert.subject()
        );
        assert!(
            cert.get_extension_unique(
                &x509_parser::oid_registry::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER
            )
            .unwrap()
            .is_some(),
            "missing AKI in {}",
            cert.subject()
        );
    }
}

#[test]
fn good_chain_verifies() {
    let files = certs::good_chain(&tempdir("good"));
    assert_good_chain(&files);
}

#[test]
fn certs_example_files_verify() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-example");
    let files = CertFiles {
        cert: dir.join("fullchain.pem"),
        key: dir.join("key.pem"),
        ca: dir.join("ca.pem"),
    };
    assert_good_chain(&files);
    assert!(matches!(load_key(&files.key), PrivateKeyDer::Pkcs8(_)));

    let chain = load_certs(&files.cert);
    let roots = load_certs(&files.ca);
    let parse = |der| x509_parser::parse_x509_certificate(der).unwrap().1;
    let (leaf, inter, root) = (parse(&chain[0]), parse(&chain[1]), parse(&roots[0]));
    let cn = |c: &x509_parser::certificate::X509Certificate<'_>| {
        let cn = c.subject().iter_common_name().next().unwrap();
        cn.as_str().unwrap().to_string()
    };
    assert_eq!(cn(&root), "wsgate example root CA");
    assert_eq!(cn(&inter), "wsgate example intermediate CA");
    assert_eq!(cn(&leaf), "localhost");
    let path_len = |c: &x509_parser::certificate::X509Certificate<'_>| {
        let bc = c.basic_constraints().unwrap().unwrap().value;
        (bc.ca, bc.path_len_constraint)
    };
    assert_eq!(path_len(&root), (true, None));
    assert_eq!(path_len(&inter), (true, Some(0)));
    assert_eq!(path_len(&leaf), (false, None));
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth);
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());
    let years = |c: &x509_parser::certificate::X509Certificate<'_>| {
        let v = c.validity();
        (v.not_after.timestamp() - v.not_before.timestamp()) / (365 * 86400)
    };
    assert_eq!((years(&root), years(&inter), years(&leaf)), (20, 15, 10));
}

#[test]
fn expired_leaf_is_expired() {
    let files = certs::expired_leaf(&tempdir("expired"));
    let err = verify(&files, "localhost").unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            )
        ),
        "{err:?}"
    );
    keys_match(&files.cert, &files.key).unwrap();
}

#[test]
fn not_yet_valid_leaf_is_not_yet_valid() {
    let files = certs::not_yet_valid_leaf(&tempdir("not-yet-valid"));
    let err = verify(&files, "localhost").unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }
            )
        ),
        "{err:?}"
    );
}

#[test]
fn wrong_order_chain_has_intermediate_first() {
    let files = certs::wrong_order_chain(&tempdir("wrong-order"));
    let chain = load_certs(&files.cert);
    assert_eq!(chain.len(), 2);
    assert!(is_ca(&chain[0]) && !is_ca(&chain[1]));
    assert!(verify(&files, "localhost").is_err());
    // The same certificates in the right order verify.
    let swapped = files.cert.with_file_name("wrong-order-swapped.pem");
    let pems = [&chain[1], &chain[0]].map(|der| certs::pem_encode("CERTIFICATE", der));
    std::fs::write(&swapped, pems.concat()).unwrap();
    verify(
        &CertFiles {
            cert: swapped,
            ..files
        },
        "localhost",
    )
    .unwrap();
}

#[test]
fn mismatched_key_does_not_match() {
    let files = certs::mismatched_key(&tempdir("mismatched"));
    verify(&files, "localhost").unwrap();
    let err = keys_match(&files.cert, &files.key).unwrap_err();
    assert_eq!(err, Error::InconsistentKeys(InconsistentKeys::KeyMismatch));
}

#[test]
fn lone_leaf_lacks_its_issuer() {
    let files = certs::lone_leaf_not_self_signed(&tempdir("lone-leaf"));
    let chain = load_certs(&files.cert);
    assert_eq!(chain.len(), 1);
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    assert_ne!(leaf.subject(), leaf.issuer());
    let err = verify(&files, "localhost").unwrap_err();
    assert_eq!(
        err,
        Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
    keys_match(&files.cert, &files.key).unwrap();
}

#[test]
fn self_signed_verifies_against_itself() {
    let files = certs::self_signed(&tempdir("self-signed"));
    let chain = load_certs(&files.cert);
    assert_eq!(chain.len(), 1);
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    assert_eq!(leaf.subject(), leaf.issuer());
    assert!(!leaf.is_ca());
    keys_match(&files.cert, &files.key).unwrap();
    verify(&files, "localhost").unwrap();
}

#[test]
fn key_formats_load_as_expected_variants() {
    let (ec_cert, pkcs8, sec1, rsa_cert, pkcs1) = certs::key_formats(&tempdir("key-formats"));
    assert!(matches!(load_key(&pkcs8), PrivateKeyDer::Pkcs8(_)));
    assert!(matches!(load_key(&sec1), PrivateKeyDer::Sec1(_)));
    assert!(matches!(load_key(&pkcs1), PrivateKeyDer::Pkcs1(_)));
    // rustls' aws-lc-rs provider parses each and finds it matches its certificate.
    keys_match(&ec_cert, &pkcs8).unwrap();
    keys_match(&ec_cert, &sec1).unwrap();
    keys_match(&rsa_cert, &pkcs1).unwrap();
    assert!(keys_match(&rsa_cert, &sec1).is_err());
}

#[test]
fn pem_encode_round_trips() {
    for len in 1..70 {
        let der: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
        let pem = certs::pem_encode("CERTIFICATE", &der);
        let parsed = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(parsed.as_ref(), &der[..]);
    }
}
