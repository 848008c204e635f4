//! `TlsError`: why a certificate, key or CA bundle cannot be used, naming the file.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a certificate, key or CA bundle cannot be used. Every variant but
/// `NoSystemRoots` names the file.
#[derive(Debug)]
pub enum TlsError {
    Read {
        file: PathBuf,
        reason: String,
    },
    NoCertificate {
        file: PathBuf,
    },
    NoKey {
        file: PathBuf,
    },
    BadCertificate {
        file: PathBuf,
        index: usize,
        reason: String,
    },
    BadKey {
        file: PathBuf,
        reason: String,
    },
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
    },
    Expired {
        file: PathBuf,
        not_after: String,
    },
    NotYetValid {
        file: PathBuf,
        not_before: String,
    },
    OutOfOrder {
        file: PathBuf,
        index: usize,
        subject: String,
        issuer: String,
        next: String,
    },
    Rustls {
        file: PathBuf,
        reason: String,
    },
    /// A CA bundle (`client_ca`, `tls_ca`) with no certificate in it.
    NoCaCertificate {
        file: PathBuf,
    },
    /// A CA bundle rustls cannot use as trust anchors.
    BadCa {
        file: PathBuf,
        reason: String,
    },
    /// A pool verifies against the system's roots, and none could be loaded.
    NoSystemRoots {
        reason: String,
    },
    /// rustls refused the provider's settings (not expected with aws-lc-rs).
    Provider {
        reason: String,
    },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TlsError::*;
        match self {
            Read { file, reason } => write!(f, "{}: cannot read: {reason}", file.display()),
            NoCertificate { file } => write!(f, "{}: holds no PEM certificate", file.display()),
            NoKey { file } => write!(
                f,
                "{}: holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                file.display()
            ),
            BadCertificate {
                file,
                index,
                reason,
            } => {
                write!(
                    f,
                    "{}: certificate #{} cannot be parsed: {reason}",
                    file.display(),
                    index + 1
                )
            }
            BadKey { file, reason } => {
                write!(f, "{}: private key unusable: {reason}", file.display())
            }
            KeyMismatch { cert, key } => write!(
                f,
                "{}: private key does not match the first (leaf) certificate in {}",
                key.display(),
                cert.display()
            ),
            Expired { file, not_after } => write!(
                f,
                "{}: leaf certificate expired on {not_after}",
                file.display()
            ),
            NotYetValid { file, not_before } => {
                write!(
                    f,
                    "{}: leaf certificate is not valid before {not_before}",
                    file.display()
                )
            }
            OutOfOrder {
                file,
                index,
                subject,
                issuer,
                next,
            } => write!(
                f,
                "{}: chain out of order: certificate #{} ({subject}) is issued by {issuer:?} but is followed by {next:?}; \
                 put the leaf first, then each issuer in turn",
                file.display(),
                index + 1
            ),
            Rustls { file, reason } => write!(f, "{}: {reason}", file.display()),
            NoCaCertificate { file } => write!(
                f,
                "{}: holds no PEM certificate (expected the CA certificates to trust)",
                file.display()
            ),
            BadCa { file, reason } => {
                write!(f, "{}: unusable as trust anchors: {reason}", file.display())
            }
            NoSystemRoots { reason } => write!(
                f,
                "no system root certificates could be loaded ({reason}); install ca-certificates or set tls_ca"
            ),
            Provider { reason } => write!(f, "TLS provider: {reason}"),
        }
    }
}

impl std::error::Error for TlsError {}

impl TlsError {
    /// The file the problem is in (for a key that does not match: the key).
    pub fn file(&self) -> Option<&Path> {
        use TlsError::*;
        match self {
            Read { file, .. }
            | NoCertificate { file }
            | NoKey { file }
            | BadCertificate { file, .. }
            | BadKey { file, .. }
            | Expired { file, .. }
            | NotYetValid { file, .. }
            | OutOfOrder { file, .. }
            | Rustls { file, .. }
            | NoCaCertificate { file }
            | BadCa { file, .. } => Some(file),
            KeyMismatch { key, .. } => Some(key),
            NoSystemRoots { .. } | Provider { .. } => None,
        }
    }
}
