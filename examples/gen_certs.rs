//! Generate a throwaway certificate chain for trying wsgate out.
//!
//! ```text
//! cargo run --example gen_certs -- <outdir>
//! ```
//!
//! Writes into `<outdir>`:
//! - `ca.pem`: a freshly generated root CA certificate (its private key is
//!   discarded, never written to disk),
//! - `fullchain.pem`: the `localhost` / `127.0.0.1` / `::1` leaf certificate
//!   followed by the intermediate CA certificate (not the root),
//! - `key.pem`: the leaf's PKCS#8 private key.
//!
//! These certificates are for local testing only. Never use them in production.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    date_time_ymd,
};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(outdir), None) = (args.next(), args.next()) else {
        eprintln!("usage: cargo run --example gen_certs -- <outdir>");
        return ExitCode::from(2);
    };
    match generate(Path::new(&outdir)) {
        Ok(written) => {
            for path in written {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("gen_certs: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Base parameters shared by all three certificates: subject CN, SHA-256 key
/// identifiers (SKI) and an authority key identifier (AKI) pointing at the issuer.
fn base_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "wsgate example");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.key_identifier_method = KeyIdMethod::Sha256;
    params.use_authority_key_identifier_extension = true;
    params
}

fn generate(outdir: &Path) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    fs::create_dir_all(outdir)?;

    // rcgen exposes `time::OffsetDateTime` without re-exporting the `time`
    // crate; build "now" from the Unix epoch plus a std Duration instead.
    let now = date_time_ymd(1970, 1, 1) + SystemTime::now().duration_since(UNIX_EPOCH)?;
    let not_before = now - DAY;
    let years_later = |years: i32| {
        not_before
            .replace_year(not_before.year() + years)
            // Only fails on 29 February landing in a non-leap year.
            .unwrap_or(not_before + DAY * (365 * years as u32 + years as u32 / 4))
    };

    // Root CA: self-signed, unconstrained path length. Its key stays in memory.
    let mut root_params = base_params("wsgate example root CA");
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    root_params.not_before = not_before;
    root_params.not_after = years_later(20);
    let root =
        CertifiedIssuer::self_signed(root_params, KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?)?;

    // Intermediate CA: signed by the root, may only sign end-entity certs.
    let mut inter_params = base_params("wsgate example intermediate CA");
    inter_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    inter_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    inter_params.not_before = not_before;
    inter_params.not_after = years_later(15);
    let intermediate = CertifiedIssuer::signed_by(
        inter_params,
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?,
        &root,
    )?;

    // Leaf: localhost, 127.0.0.1 and ::1, server authentication only.
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut leaf_params = base_params("localhost");
    leaf_params.subject_alt_names = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?
    .subject_alt_names;
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.not_before = not_before;
    leaf_params.not_after = years_later(10);
    let leaf = leaf_params.signed_by(&leaf_key, &intermediate)?;

    let ca_path = outdir.join("ca.pem");
    let chain_path = outdir.join("fullchain.pem");
    let key_path = outdir.join("key.pem");
    fs::write(&ca_path, root.pem())?;
    fs::write(&chain_path, format!("{}{}", leaf.pem(), intermediate.pem()))?;
    write_private(&key_path, leaf_key.serialize_pem().as_bytes())?;
    Ok(vec![ca_path, chain_path, key_path])
}

/// Write a private key, readable by the owner only where that is supported.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(contents)
    }
    #[cfg(not(unix))]
    {
        fs::write(path, contents)
    }
}
