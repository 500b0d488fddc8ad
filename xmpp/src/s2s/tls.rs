//! TLS for server-to-server streams: the node's certificate on both sides
//! (as server for incoming streams, as client certificate for outgoing
//! ones), and the check of a peer's certificate against the system roots
//! plus `[s2s] ca_files`, which decides SASL EXTERNAL over dialback.
//!
//! The handshake itself accepts any peer certificate: a peer without a
//! valid one may still authenticate with dialback, unless
//! `require_valid_certificates` forbids it, which is checked afterwards.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use starling_core::config::Config;
use starling_core::tls_trust::{Trust, TrustVerifier};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::tls::ReloadableCertificate;

/// ALPN of XEP-0368 direct TLS to a server.
const ALPN_XMPP_SERVER: &[u8] = b"xmpp-server";

/// Whether a peer's certificate is valid for the domain it claims.
#[derive(Debug)]
pub(crate) struct PeerTrust {
    verifier: Option<Arc<WebPkiServerVerifier>>,
}

impl PeerTrust {
    /// The system roots and the configured CA files. A CA file that cannot
    /// be read stops the start (the key is named); missing system roots
    /// only leave the configured ones.
    pub(crate) fn from_config(
        config: &Config,
        provider: &Arc<CryptoProvider>,
    ) -> anyhow::Result<PeerTrust> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::debug!(%error, "a system root certificate could not be read");
        }
        let (system, _) = roots.add_parsable_certificates(native.certs);
        for path in &config.s2s.ca_files {
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                .map_err(|error| {
                    anyhow::anyhow!("s2s.ca_files: cannot read {}: {error}", path.display())
                })?;
            if certificates.is_empty() {
                anyhow::bail!("s2s.ca_files: no PEM certificate in {}", path.display());
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|error| {
                    anyhow::anyhow!("s2s.ca_files: {}: {error}", path.display())
                })?;
            }
        }
        tracing::debug!(system, total = roots.len(), "s2s trust anchors loaded");
        if roots.is_empty() {
            return Ok(PeerTrust { verifier: None });
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()?;
        Ok(PeerTrust {
            verifier: Some(verifier),
        })
    }

    /// PKIX validation of `chain` (end entity first) for `domain` (RFC 6125).
    pub(crate) fn valid_for(&self, chain: &[CertificateDer<'static>], domain: &str) -> bool {
        let (Some(verifier), Some((end_entity, intermediates))) =
            (&self.verifier, chain.split_first())
        else {
            return false;
        };
        let Ok(name) = ServerName::try_from(domain.to_owned()) else {
            return false;
        };
        verifier
            .verify_server_cert(end_entity, intermediates, &name, &[], UnixTime::now())
            .is_ok()
    }
}

/// The acceptor for incoming streams: the node's certificate, and a request
/// for the peer's (not required).
pub(crate) fn acceptor(
    certificate: Arc<ReloadableCertificate>,
    provider: Arc<CryptoProvider>,
) -> Result<TlsAcceptor, rustls::Error> {
    let verifier = Arc::new(TrustVerifier::new(Trust::Any, &provider));
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certificate);
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The connector for outgoing streams: the node's certificate as client
/// certificate (for the peer's SASL EXTERNAL). `direct` adds the XEP-0368
/// ALPN protocol.
pub(crate) fn connector(
    certificate: Arc<ReloadableCertificate>,
    provider: Arc<CryptoProvider>,
    direct: bool,
) -> Result<TlsConnector, rustls::Error> {
    let verifier = Arc::new(TrustVerifier::new(Trust::Any, &provider));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(certificate);
    if direct {
        config.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
    }
    Ok(TlsConnector::from(Arc::new(config)))
}
