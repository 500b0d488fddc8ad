//! A TLS client for the operator's own node: it trusts exactly the
//! certificate the node serves from its config (`[tls] cert`, or the
//! self-signed one generated in the data directory), whatever names it
//! carries and whoever signed it. The node is known, so its certificate is
//! the whole of the trust: no CA store is needed, a self-signed certificate
//! works, and `127.0.0.1` may be dialled although the certificate names the
//! XMPP domain.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use starling_core::tls_trust::{Trust, TrustVerifier};
use tokio_rustls::TlsConnector;

use crate::tls::{TlsError, load_certificates};

/// A connector that accepts only the first certificate of the PEM file at
/// `path` (the node's own; the rest of the file is its chain).
pub(crate) fn connector(path: &Path) -> Result<TlsConnector, TlsError> {
    let pinned = load_certificates(path)?.swap_remove(0);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // The handshake must still be signed by the pinned certificate's key.
    let verifier = Arc::new(TrustVerifier::new(Trust::Pinned(pinned), &provider));
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}
