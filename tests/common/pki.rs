//! More test PKI (rcgen), for SNI, client certificates and TLS backends: a chain for
//! given names, a CA that issues client certificates, client TLS configs that offer
//! one, and a TLS WebSocket echo backend that records the SNI it was asked for.

use super::certs::{CertFiles, Pki, base_params, leaf_params, new_key, set_validity, write_file};
use futures_util::{SinkExt, StreamExt};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Root -> intermediate -> a leaf valid for `names` only (DNS names; the first is its
/// CN). `cert` is leaf + intermediate, `ca` the root.
pub fn chain_for(dir: &Path, scenario: &str, names: &[&str]) -> CertFiles {
    let pki = Pki::new();
    let key = new_key();
    let mut params = leaf_params(-1, 3650);
    params.subject_alt_names =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("subject alt names")
            .subject_alt_names;
    params.distinguished_name = base_params(names[0]).distinguished_name;
    let leaf = params
        .signed_by(&key, &pki.intermediate)
        .expect("sign leaf");
    pki.write(dir, scenario, &[leaf.pem(), pki.intermediate.pem()], &key)
}

/// A CA that issues client certificates; `ca` is its certificate (PEM).
pub struct ClientCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub ca: PathBuf,
}

impl ClientCa {
    pub fn new(dir: &Path, name: &str) -> ClientCa {
        let mut p = base_params(&format!("{name} client CA"));
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut p, -1, 3650);
        let issuer = CertifiedIssuer::self_signed(p, new_key()).expect("client CA");
        let ca = dir.join(format!("{name}-client-ca.pem"));
        write_file(&ca, issuer.pem());
        ClientCa { issuer, ca }
    }

    /// A client certificate for `cn` (O = "wsgate tests", clientAuth) and its key.
    pub fn issue(&self, dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
        let key = new_key();
        let mut p = base_params(cn);
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "tests, and more");
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        set_validity(&mut p, -1, 365);
        let cert = p.signed_by(&key, &self.issuer).expect("client cert");
        let (c, k) = (
            dir.join(format!("client-{cn}-cert.pem")),
            dir.join(format!("client-{cn}-key.pem")),
        );
        write_file(&c, cert.pem());
        write_file(&k, key.serialize_pem());
        (c, k)
    }
}

/// A client config trusting `ca`, ALPN http/1.1, presenting `cert` + `key` if given.
pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> rustls::ClientConfig {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut cfg = match identity {
        None => b.with_no_client_auth(),
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            b.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
                .unwrap()
        }
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg
}

/// TLS to `addr` asking for `sni`.
pub async fn connect_sni(
    addr: SocketAddr,
    cfg: rustls::ClientConfig,
    sni: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
}

/// Request headers of one upgrade, as (name, value) pairs.
pub type Head = Vec<(String, String)>;

/// A WebSocket echo backend behind TLS (`cert`, `key`), recording the SNI of every
/// handshake and the request headers of every upgrade.
pub struct TlsEcho {
    pub addr: SocketAddr,
    pub sni: Arc<Mutex<Vec<Option<String>>>>,
    pub upgrades: Arc<Mutex<Vec<Head>>>,
    task: JoinHandle<()>,
}

impl Drop for TlsEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TLS acceptor serving `files`' chain and key (a test backend's side of TLS).
pub fn backend_acceptor(files: &CertFiles) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<_> = CertificateDer::pem_file_iter(&files.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

pub async fn tls_echo(files: &CertFiles) -> TlsEcho {
    let acceptor = backend_acceptor(files);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let sni = Arc::new(Mutex::new(Vec::new()));
    let upgrades = Arc::new(Mutex::new(Vec::new()));
    let (sni2, up2) = (sni.clone(), upgrades.clone());
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (acceptor, sni, ups) = (acceptor.clone(), sni2.clone(), up2.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                sni.lock()
                    .unwrap()
                    .push(tls.get_ref().1.server_name().map(str::to_string));
                #[allow(clippy::result_large_err)] // the callback signature is tungstenite's
                let cb = |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                          resp| {
                    let h = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect();
                    ups.lock().unwrap().push(h);
                    Ok(resp)
                };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tls, cb).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    TlsEcho {
        addr,
        sni,
        upgrades,
        task,
    }
}
