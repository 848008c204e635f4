//! Certificate and key checks at load time, with freshly generated files:
//! each unusable chain or key is refused with a message naming the file, a lone
//! leaf is accepted with a warning, and every supported key format serves.

mod common;
use common::certs::{self, CertFiles};
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use wsgate::config::Config;

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wsgate-certs-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A whole config whose one TLS listener uses `cert` and `key`.
fn config_for(cert: &Path, key: &Path) -> String {
    format!(
        r#"[[listener]]
address = "127.0.0.1:0"
cert = "{}"
key = "{}"

[[pool]]
name = "p"
[[pool.backend]]
address = "127.0.0.1:9"

[[route]]
pool = "p"
"#,
        cert.display(),
        key.display()
    )
}

/// `check_tls` on a listener with `cert` and `key`: the warnings, or the error text.
fn check(cert: &Path, key: &Path) -> Result<Vec<String>, String> {
    let cfg = Config::parse(&config_for(cert, key), Path::new("t.toml")).expect("config parses");
    wsgate::control::check::check_tls(&cfg).map_err(|e| e.to_string())
}

/// Asserts that `check` refuses, naming `file` and saying `says`.
fn assert_refused(cert: &Path, key: &Path, file: &Path, says: &str) {
    let err = match check(cert, key) {
        Ok(w) => panic!("accepted (warnings: {w:?}); expected a refusal naming {file:?}"),
        Err(e) => e,
    };
    assert!(
        err.contains(&file.display().to_string()),
        "error does not name {}: {err}",
        file.display()
    );
    assert!(err.contains(says), "error lacks {says:?}: {err}");
}

#[test]
fn missing_cert_file_is_refused() {
    let dir = tempdir("missing");
    let good = certs::good_chain(&dir);
    let missing = dir.join("no-such-cert.pem");
    assert_refused(&missing, &good.key, &missing, "cannot read");
}

#[test]
fn cert_file_without_a_certificate_is_refused() {
    let dir = tempdir("no-cert");
    let good = certs::good_chain(&dir);
    // A file that holds only a private key.
    assert_refused(&good.key, &good.key, &good.key, "no PEM certificate");
    // And a file that holds no PEM at all.
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    assert_refused(&junk, &good.key, &junk, "no PEM certificate");
}

#[test]
fn key_file_without_a_key_is_refused() {
    let dir = tempdir("no-key");
    let good = certs::good_chain(&dir);
    assert_refused(&good.cert, &good.cert, &good.cert, "no PEM private key");
}

#[test]
fn key_not_matching_the_leaf_is_refused() {
    let f = certs::mismatched_key(&tempdir("mismatch"));
    assert_refused(&f.cert, &f.key, &f.key, "does not match");
    assert_refused(&f.cert, &f.key, &f.cert, "does not match");
}

#[test]
fn expired_leaf_is_refused() {
    let f = certs::expired_leaf(&tempdir("expired"));
    assert_refused(&f.cert, &f.key, &f.cert, "expired");
}

#[test]
fn not_yet_valid_leaf_is_refused() {
    let f = certs::not_yet_valid_leaf(&tempdir("not-yet-valid"));
    assert_refused(&f.cert, &f.key, &f.cert, "not valid before");
}

#[test]
fn chain_out_of_order_is_refused() {
    let f = certs::wrong_order_chain(&tempdir("wrong-order"));
    assert_refused(&f.cert, &f.key, &f.cert, "out of order");
}

#[test]
fn good_chain_passes_without_warnings() {
    let f = certs::good_chain(&tempdir("good"));
    assert_eq!(check(&f.cert, &f.key), Ok(vec![]));
}

#[test]
fn lone_leaf_is_accepted_with_an_intermediate_warning() {
    let f = certs::lone_leaf_not_self_signed(&tempdir("lone-leaf"));
    let warnings = check(&f.cert, &f.key).expect("a lone leaf is accepted");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("intermediate"), "{warnings:?}");
    assert!(
        warnings[0].contains(&f.cert.display().to_string()),
        "{warnings:?}"
    );
}

#[test]
fn self_signed_leaf_passes_without_warnings() {
    let f = certs::self_signed(&tempdir("self-signed"));
    assert_eq!(check(&f.cert, &f.key), Ok(vec![]));
}

// ---------------------------------------------------------------------------
// The same checks through `wsgate check`.

fn wsgate_check(dir: &Path, f: &CertFiles) -> std::process::Output {
    let conf = dir.join("wsgate.toml");
    std::fs::write(&conf, config_for(&f.cert, &f.key)).unwrap();
    Command::new(env!("CARGO_BIN_EXE_wsgate"))
        // Not the config's folder, so relative paths only work if resolved against it.
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["check", "-c"])
        .arg(&conf)
        .output()
        .expect("run wsgate check")
}

#[test]
fn wsgate_check_refuses_an_expired_leaf() {
    let dir = tempdir("cli-expired");
    let f = certs::expired_leaf(&dir);
    let out = wsgate_check(&dir, &f);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains(&f.cert.display().to_string()) && stderr.contains("expired"),
        "{stderr}"
    );
}

#[test]
fn wsgate_check_warns_about_a_lone_leaf() {
    let dir = tempdir("cli-lone-leaf");
    let f = certs::lone_leaf_not_self_signed(&dir);
    let out = wsgate_check(&dir, &f);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(
        stderr.contains("warning:") && stderr.contains("intermediate"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));
}

#[test]
fn relative_cert_paths_resolve_against_the_config_file() {
    let dir = tempdir("cli-relative");
    let f = certs::good_chain(&dir);
    let rel = CertFiles {
        cert: PathBuf::from(f.cert.file_name().unwrap()),
        key: PathBuf::from(f.key.file_name().unwrap()),
        ca: f.ca.clone(),
    };
    let out = wsgate_check(&dir, &rel);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// Key formats: each loads and serves a real handshake.

/// Starts a proxy with `cert` and `key`, completes a TLS handshake and an upgrade
/// through it, and checks the certificate served is `cert`.
async fn serves(cert: &Path, key: &Path) {
    use tokio::io::AsyncWriteExt;
    assert_eq!(check(cert, key), Ok(vec![]));
    let e = echo("e").await;
    let text = config_for(cert, key).replace("127.0.0.1:9", &e.addr.to_string());
    let p = start_proxy_raw(&text).await;
    let mut tls = within(
        "TLS connect",
        tls_connect_with(p.addr, client_tls_trusting(cert), None),
    )
    .await
    .unwrap_or_else(|err| panic!("handshake with {}: {err}", key.display()));
    let served = tls.get_ref().1.peer_certificates().unwrap().to_vec();
    let expected = certs_in(cert);
    assert_eq!(
        served,
        expected,
        "served chain differs from {}",
        cert.display()
    );
    tls.write_all(upgrade_head("/", "").as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut tls).await;
    assert_eq!(r.status, 101, "{r:?}");
}

fn certs_in(path: &Path) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn pkcs8_ec_key_serves() {
    let (ec_cert, pkcs8, _, _, _) = certs::key_formats(&tempdir("pkcs8"));
    assert!(
        std::fs::read_to_string(&pkcs8)
            .unwrap()
            .contains("BEGIN PRIVATE KEY")
    );
    serves(&ec_cert, &pkcs8).await;
}

#[tokio::test]
async fn sec1_ec_key_serves() {
    let (ec_cert, _, sec1, _, _) = certs::key_formats(&tempdir("sec1"));
    assert!(
        std::fs::read_to_string(&sec1)
            .unwrap()
            .contains("BEGIN EC PRIVATE KEY")
    );
    serves(&ec_cert, &sec1).await;
}

#[tokio::test]
async fn pkcs1_rsa_key_serves() {
    let (_, _, _, rsa_cert, pkcs1) = certs::key_formats(&tempdir("pkcs1"));
    assert!(
        std::fs::read_to_string(&pkcs1)
            .unwrap()
            .contains("BEGIN RSA PRIVATE KEY")
    );
    serves(&rsa_cert, &pkcs1).await;
}
