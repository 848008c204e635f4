//! TLS from wsgate to a pool's backends (`tls = true` on a pool), for sessions and
//! their health checks alike.
//!
//! Owns: the rustls `ClientConfig` of a pool (verified against `tls_ca`, or the
//! system's root store through rustls-native-certs, which honours SSL_CERT_FILE and
//! SSL_CERT_DIR; ALPN http/1.1), the name each backend is verified as and sent in SNI
//! (`tls_server_name`, else the backend's host as written: an IP is verified against
//! the certificate's IP addresses and sends no SNI), and the handshake itself.
//! Built when a generation is built, so a reload re-reads the CA bundle.

use super::{TlsError, chain};
use crate::config::PoolTls;
use crate::config::tls::server_name_of;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::fmt;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A pool's TLS client side.
#[derive(Clone)]
pub struct UpstreamTls {
    connector: TlsConnector,
    /// `tls_server_name`, when set.
    server_name: Option<ServerName<'static>>,
    /// How many roots it trusts and where from, for logs.
    pub roots: String,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// Loads the trust anchors and builds the client config.
    pub fn load(t: &PoolTls) -> Result<UpstreamTls, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        let from = match &t.ca {
            Some(file) => {
                for (i, ca) in chain::load_cas(file)?.into_iter().enumerate() {
                    roots.add(ca).map_err(|source| TlsError::BadCa {
                        file: file.clone(),
                        index: i,
                        source,
                    })?;
                }
                file.display().to_string()
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(TlsError::NoSystemRoots {
                        source: found.errors.into_iter().next(),
                    });
                }
                "the system store".to_string()
            }
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Provider {
                what: "refused the protocol versions",
                source,
            })?
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(UpstreamTls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name: t
                .server_name
                .as_deref()
                .and_then(|n| ServerName::try_from(n.to_string()).ok()),
            roots: format!("{} roots from {from}", roots.len()),
        })
    }

    /// The name a backend written as `address` is verified as.
    pub fn name_for(&self, address: &str) -> Option<ServerName<'static>> {
        self.server_name.clone().or_else(|| server_name_of(address))
    }

    /// The TLS handshake with a backend over `tcp`.
    pub async fn connect(
        &self,
        address: &str,
        tcp: TcpStream,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let name = self.name_for(address).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{address:?} has no name to verify"),
            )
        })?;
        self.connector.connect(name, tcp).await
    }
}
