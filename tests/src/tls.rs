//! TLS for test and load clients: a rustls client that accepts any server certificate.
//!
//! Test servers use self-signed certificates, and what is under test is the XMPP exchange,
//! not the PKI. Handshake signatures are still checked against the certificate's key, so
//! the TLS session itself is real. Never use this outside tests.

use std::sync::{Arc, OnceLock};

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

/// The shared connector: one config for every connection (building one per connection
/// would cost more than the handshake's own allocations).
///
/// Session resumption is off so every login pays for a full handshake, as a fleet of
/// distinct real clients would.
pub fn insecure_connector() -> Result<TlsConnector, rustls::Error> {
    static CONNECTOR: OnceLock<Result<TlsConnector, rustls::Error>> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| insecure_config().map(|config| TlsConnector::from(Arc::new(config))))
        .clone()
}

/// The same, offering the ALPN protocol `xmpp-client` for XEP-0368 direct TLS.
pub fn insecure_direct_tls_connector() -> Result<TlsConnector, rustls::Error> {
    let mut config = insecure_config()?;
    config.alpn_protocols = vec![b"xmpp-client".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

fn insecure_config() -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AcceptAnyCertificate {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Ok(config)
}

#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
