//! TLS for test and load clients: a rustls client that accepts any server certificate.
//!
//! Test servers use self-signed certificates, and what is under test is the XMPP exchange,
//! not the PKI. Handshake signatures are still checked against the certificate's key, so
//! the TLS session itself is real. Never use this outside tests.

use std::sync::{Arc, OnceLock};

use rustls::ClientConfig;
use rustls::client::Resumption;
use starling_core::tls_trust::{Trust, TrustVerifier};
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
    let verifier = Arc::new(TrustVerifier::new(Trust::Any, &provider));
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Ok(config)
}
