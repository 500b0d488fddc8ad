//! TLS 1.3 on peer links, and what binds the handshake to it.
//!
//! By default each node makes a self-signed certificate at start and a
//! dialer accepts any certificate: what authenticates a peer is the shared
//! secret, proved over the TLS exporter value of the very session it runs
//! on (see `handshake`). A man in the middle that terminates TLS on both
//! sides holds two sessions with two exporter values, and cannot turn the
//! proof made for one into a proof for the other without the secret.
//!
//! With `[cluster] tls_ca`, `tls_cert` and `tls_key`, both sides present
//! certificates signed by that CA, and each checks that the peer's
//! certificate names the node the peer says it is in its hello.

use std::path::Path;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{NoServerSessionStorage, ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use starling_core::cluster::LinkSecurity;
use starling_core::config::ClusterConfig;
use starling_core::tls_trust::{Trust, TrustVerifier};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

/// The RFC 9266 `tls-exporter` label.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";
/// Bytes of exporter value the handshake proof covers.
pub const EXPORTER_LEN: usize = 32;
/// The name a dialer asks for: peers are dialed by address, and in CA mode
/// their name is checked against their hello instead.
const SELF_SIGNED_NAME: &str = "starling-cluster-peer";

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {what} {path}: {message}")]
    Read {
        what: &'static str,
        path: String,
        message: String,
    },
    #[error("cannot generate the link certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the link certificates do not make a TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cluster.tls_ca: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// How this node protects its peer links.
pub enum LinkProtection {
    Tls(TlsLinks),
    /// `[cluster] insecure_plaintext = true`.
    Plaintext,
}

impl LinkProtection {
    /// From the cluster config: TLS unless clear text was asked for.
    pub fn from_config(config: &ClusterConfig) -> Result<LinkProtection, TlsSetupError> {
        if config.insecure_plaintext {
            return Ok(LinkProtection::Plaintext);
        }
        if config.tls_ca.as_os_str().is_empty() {
            TlsLinks::self_signed().map(LinkProtection::Tls)
        } else {
            TlsLinks::with_ca(&config.tls_ca, &config.tls_cert, &config.tls_key)
                .map(LinkProtection::Tls)
        }
    }

    /// What the admin page shows.
    pub fn kind(&self) -> LinkSecurity {
        match self {
            LinkProtection::Tls(links) if links.verify_names => LinkSecurity::TlsCa,
            LinkProtection::Tls(_) => LinkSecurity::Tls,
            LinkProtection::Plaintext => LinkSecurity::Plaintext,
        }
    }
}

/// The TLS side of every link of this node.
pub struct TlsLinks {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    /// Certificates come from the operators' CA: the peer's must name it.
    verify_names: bool,
}

impl TlsLinks {
    /// A certificate made now, for this run only; peers accept any.
    pub fn self_signed() -> Result<TlsLinks, TlsSetupError> {
        let generated = rcgen::generate_simple_self_signed(vec![SELF_SIGNED_NAME.to_owned()])?;
        let chain = vec![generated.cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
        let provider = provider();
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        // Any certificate will do (the secret bound to the session
        // authenticates), but the handshake signatures are still checked.
        let verifier = Arc::new(TrustVerifier::new(Trust::Any, &provider).tls13_only());
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(TlsLinks::from_configs(server, client, false))
    }

    /// Certificates of the operators' CA, checked both ways.
    pub fn with_ca(ca: &Path, cert: &Path, key: &Path) -> Result<TlsLinks, TlsSetupError> {
        let mut roots = RootCertStore::empty();
        for root in read_certificates("CA certificate", ca)? {
            roots.add(root)?;
        }
        let roots = Arc::new(roots);
        let chain = read_certificates("certificate", cert)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|error| TlsSetupError::Read {
            what: "private key",
            path: key.display().to_string(),
            message: error.to_string(),
        })?;
        let provider = provider();
        let clients =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).build()?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(clients)
            .with_single_cert(chain.clone(), key.clone_key())?;
        // The chain must lead to the CA; the name is checked after the
        // hello, against the node the peer says it is.
        let verifier = Arc::new(TrustVerifier::new(Trust::SignedBy(roots), &provider).tls13_only());
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(chain, key)?;
        Ok(TlsLinks::from_configs(server, client, true))
    }

    fn from_configs(mut server: ServerConfig, mut client: ClientConfig, verify: bool) -> TlsLinks {
        // Links are long-lived: a full handshake each time, no tickets kept.
        server.session_storage = Arc::new(NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
        client.resumption = Resumption::disabled();
        TlsLinks {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            verify_names: verify,
        }
    }

    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.acceptor.accept(stream).await.map(TlsStream::Server)
    }

    pub async fn connect(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let name = ServerName::try_from(SELF_SIGNED_NAME).expect("a valid DNS name");
        self.connector
            .connect(name, stream)
            .await
            .map(TlsStream::Client)
    }

    /// What the handshake proof is bound to on this TLS session, and whose
    /// name the peer's certificate must carry.
    pub fn binding(&self, stream: &TlsStream<TcpStream>) -> Result<SessionBinding, String> {
        let exported =
            match stream {
                TlsStream::Client(client) => client.get_ref().1.export_keying_material(
                    [0u8; EXPORTER_LEN],
                    EXPORTER_LABEL,
                    None,
                ),
                TlsStream::Server(server) => server.get_ref().1.export_keying_material(
                    [0u8; EXPORTER_LEN],
                    EXPORTER_LABEL,
                    None,
                ),
            };
        let exporter = exported.map_err(|error| format!("no TLS exporter value: {error}"))?;
        let connection = stream.get_ref().1;
        let certificate = if self.verify_names {
            let leaf = connection
                .peer_certificates()
                .and_then(|chain| chain.first())
                .ok_or("the peer presented no certificate")?;
            Some(PeerCertificate(leaf.clone().into_owned()))
        } else {
            None
        };
        Ok(SessionBinding {
            exporter: exporter.to_vec(),
            certificate,
        })
    }
}

/// Ties a link handshake to its connection.
#[derive(Default)]
pub struct SessionBinding {
    /// The TLS exporter value (RFC 5705, the RFC 9266 label); empty on a
    /// clear-text link.
    pub exporter: Vec<u8>,
    /// The peer's certificate, when it must name the node the peer claims.
    pub certificate: Option<PeerCertificate>,
}

/// A peer's end-entity certificate, already verified against the CA.
pub struct PeerCertificate(CertificateDer<'static>);

impl PeerCertificate {
    /// Whether the certificate names `node_name` (a DNS subject alternative name).
    pub fn check_name(&self, node_name: &str) -> Result<(), String> {
        let name = ServerName::try_from(node_name)
            .map_err(|_| format!("the node name {node_name:?} is not a DNS name"))?;
        let parsed = ParsedCertificate::try_from(&self.0)
            .map_err(|error| format!("unreadable certificate: {error}"))?;
        rustls::client::verify_server_name(&parsed, &name)
            .map_err(|error| format!("its certificate is not for {node_name:?}: {error}"))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let error = |message: String| TlsSetupError::Read {
        what,
        path: path.display().to_string(),
        message,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| error(e.to_string()))?;
    if certificates.is_empty() {
        return Err(error("no PEM certificate found".into()));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    use tokio::net::TcpListener;

    use super::*;

    /// A folder with `ca.pem` and `<name>.pem` / `<name>.key` per node.
    fn pki(label: &str, names: &[&str]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("starling-link-pki-{label}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        let issuer = Issuer::new(params, ca_key);
        for name in names {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec![(*name).to_owned()]).unwrap();
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = params.signed_by(&key, &issuer).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        dir
    }

    fn node(dir: &Path, name: &str) -> TlsLinks {
        TlsLinks::with_ca(
            &dir.join("ca.pem"),
            &dir.join(format!("{name}.pem")),
            &dir.join(format!("{name}.key")),
        )
        .unwrap()
    }

    /// One TLS connection over loopback TCP: (dialer's end, acceptor's end).
    async fn connect(
        dialer: &TlsLinks,
        acceptor: &TlsLinks,
    ) -> (
        std::io::Result<TlsStream<TcpStream>>,
        std::io::Result<TlsStream<TcpStream>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = async {
            let (stream, _) = listener.accept().await.unwrap();
            acceptor.accept(stream).await
        };
        let dialed = async {
            dialer
                .connect(TcpStream::connect(addr).await.unwrap())
                .await
        };
        tokio::join!(dialed, accepted)
    }

    #[tokio::test]
    async fn both_ends_of_a_session_see_one_exporter_value_and_no_other_does() {
        let (a, b) = (
            TlsLinks::self_signed().unwrap(),
            TlsLinks::self_signed().unwrap(),
        );
        let (dialed, accepted) = connect(&a, &b).await;
        let (dialed, accepted) = (dialed.unwrap(), accepted.unwrap());
        let (ours, theirs) = (a.binding(&dialed).unwrap(), b.binding(&accepted).unwrap());
        assert_eq!(ours.exporter.len(), EXPORTER_LEN);
        assert_eq!(ours.exporter, theirs.exporter);
        assert!(ours.certificate.is_none(), "self-signed: no name check");
        let (again, _) = connect(&a, &b).await;
        assert_ne!(a.binding(&again.unwrap()).unwrap().exporter, ours.exporter);
    }

    #[tokio::test]
    async fn ca_certificates_are_checked_by_chain_and_by_name() {
        let dir = pki("names", &["node1", "node2"]);
        let (node1, node2) = (node(&dir, "node1"), node(&dir, "node2"));
        let (dialed, accepted) = connect(&node1, &node2).await;
        let dialer_view = node1.binding(&dialed.unwrap()).unwrap();
        let acceptor_view = node2.binding(&accepted.unwrap()).unwrap();
        let (of_node2, of_node1) = (
            dialer_view.certificate.unwrap(),
            acceptor_view.certificate.unwrap(),
        );
        of_node2.check_name("node2").unwrap();
        of_node1.check_name("node1").unwrap();
        let error = of_node2.check_name("node1").unwrap_err();
        assert!(error.contains("node1"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_certificate_of_another_ca_is_refused_both_ways() {
        let ours = pki("ours", &["node1"]);
        let theirs = pki("theirs", &["node2"]);
        let (node1, stranger) = (node(&ours, "node1"), node(&theirs, "node2"));
        let (_, accepted) = connect(&stranger, &node1).await;
        assert!(accepted.is_err(), "node1 accepted a client of another CA");
        let (dialed, _) = connect(&node1, &stranger).await;
        assert!(dialed.is_err(), "node1 dialed a server of another CA");
        for dir in [ours, theirs] {
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
