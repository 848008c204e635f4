//! `TlsError`: why a certificate, key or CA bundle cannot be used, naming the file.
//!
//! `Display` says what failed and names the file; `source()` gives the io, PEM,
//! x509 or rustls error beneath (`crate::errors::ErrorChain` prints both). Does not
//! own: loading or checking anything (chain.rs, mod.rs, upstream.rs).

use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};

/// An x509 certificate that cannot be parsed, as x509-parser reports it.
pub type X509ParseError = x509_parser::nom::Err<x509_parser::error::X509Error>;

/// Why a certificate, key or CA bundle cannot be used. Every variant but
/// `NoSystemRoots` and `Provider` names the file.
#[derive(Debug)]
pub enum TlsError {
    /// The file cannot be read.
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    /// The file is not well-formed PEM.
    Pem {
        file: PathBuf,
        source: rustls_pki_types::pem::Error,
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
        source: X509ParseError,
    },
    BadKey {
        file: PathBuf,
        source: rustls::Error,
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
    /// A CA bundle (`client_ca`, `tls_ca`) with no certificate in it.
    NoCaCertificate {
        file: PathBuf,
    },
    /// A certificate of a CA bundle rustls cannot use as a trust anchor.
    BadCa {
        file: PathBuf,
        index: usize,
        source: rustls::Error,
    },
    /// rustls cannot build a client-certificate verifier from a CA bundle.
    BadCaVerifier {
        file: PathBuf,
        source: rustls::server::VerifierBuilderError,
    },
    /// A pool verifies against the system's roots, and none could be loaded
    /// (`source`: the first error met, `None` when the store is just empty).
    NoSystemRoots {
        source: Option<rustls_native_certs::Error>,
    },
    /// rustls refused the provider's settings (not expected with aws-lc-rs); `what`
    /// says which.
    Provider {
        what: &'static str,
        source: rustls::Error,
    },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TlsError::*;
        match self {
            Read { file, .. } => write!(f, "{}: cannot read", file.display()),
            Pem { file, .. } => write!(f, "{}: cannot read as PEM", file.display()),
            NoCertificate { file } => write!(f, "{}: holds no PEM certificate", file.display()),
            NoKey { file } => write!(
                f,
                "{}: holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                file.display()
            ),
            BadCertificate { file, index, .. } => write!(
                f,
                "{}: certificate #{} cannot be parsed",
                file.display(),
                index + 1
            ),
            BadKey { file, .. } => write!(f, "{}: private key unusable", file.display()),
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
            NoCaCertificate { file } => write!(
                f,
                "{}: holds no PEM certificate (expected the CA certificates to trust)",
                file.display()
            ),
            BadCa { file, index, .. } => write!(
                f,
                "{}: unusable as trust anchors: certificate #{}",
                file.display(),
                index + 1
            ),
            BadCaVerifier { file, .. } => {
                write!(f, "{}: unusable as trust anchors", file.display())
            }
            NoSystemRoots { source } => write!(
                f,
                "no system root certificates could be loaded{}; install ca-certificates or set tls_ca",
                if source.is_none() {
                    " (the store is empty)"
                } else {
                    ""
                }
            ),
            Provider { what, .. } => write!(f, "TLS provider: {what}"),
        }
    }
}

impl Error for TlsError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        use TlsError::*;
        match self {
            Read { source, .. } => Some(source),
            Pem { source, .. } => Some(source),
            BadCertificate { source, .. } => Some(source),
            BadKey { source, .. } | BadCa { source, .. } | Provider { source, .. } => Some(source),
            BadCaVerifier { source, .. } => Some(source),
            NoSystemRoots { source } => source.as_ref().map(|e| e as &(dyn Error + 'static)),
            NoCertificate { .. }
            | NoKey { .. }
            | KeyMismatch { .. }
            | Expired { .. }
            | NotYetValid { .. }
            | OutOfOrder { .. }
            | NoCaCertificate { .. } => None,
        }
    }
}

impl TlsError {
    /// The file the problem is in (for a key that does not match: the key).
    pub fn file(&self) -> Option<&Path> {
        use TlsError::*;
        match self {
            Read { file, .. }
            | Pem { file, .. }
            | NoCertificate { file }
            | NoKey { file }
            | BadCertificate { file, .. }
            | BadKey { file, .. }
            | Expired { file, .. }
            | NotYetValid { file, .. }
            | OutOfOrder { file, .. }
            | NoCaCertificate { file }
            | BadCa { file, .. }
            | BadCaVerifier { file, .. } => Some(file),
            KeyMismatch { key, .. } => Some(key),
            NoSystemRoots { .. } | Provider { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::ErrorChain;

    #[test]
    fn each_cause_shows_once() {
        let e = TlsError::Read {
            file: PathBuf::from("/x/cert.pem"),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        };
        assert_eq!(e.to_string(), "/x/cert.pem: cannot read");
        assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("gone"));
        assert_eq!(ErrorChain(&e).to_string(), "/x/cert.pem: cannot read: gone");
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        #[derive(Debug)]
        struct Loud(std::io::Error);
        impl fmt::Display for Loud {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "IO error: {}", self.0)
            }
        }
        impl Error for Loud {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Loud(std::io::Error::other("reset"));
        assert_eq!(ErrorChain(&e).to_string(), "IO error: reset");
    }
}
