//! One rustls certificate verifier for the places that trust a peer by
//! other means than the web PKI: cluster links (any certificate, the
//! secret authenticates; or the operators' CA), the `starling` command
//! talking to its own node (the pinned certificate), the test clients
//! (any), and server-to-server streams (any certificate in the handshake,
//! in both roles; whether it is valid for the peer's domain is checked
//! afterwards). Whatever the trust, the handshake signatures are checked against
//! the certificate's key, so the session belongs to whoever holds that key.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    SignatureScheme,
};

/// Which server certificate is accepted.
#[derive(Debug)]
pub enum Trust {
    /// Any certificate.
    Any,
    /// Exactly this one.
    Pinned(CertificateDer<'static>),
    /// One whose chain leads to these roots (names are checked elsewhere).
    SignedBy(Arc<RootCertStore>),
}

#[derive(Debug)]
pub struct TrustVerifier {
    trust: Trust,
    algorithms: WebPkiSupportedAlgorithms,
    tls12: bool,
}

impl TrustVerifier {
    pub fn new(trust: Trust, provider: &CryptoProvider) -> TrustVerifier {
        TrustVerifier {
            trust,
            algorithms: provider.signature_verification_algorithms,
            tls12: true,
        }
    }

    /// Refuses TLS 1.2 handshakes outright.
    pub fn tls13_only(self) -> TrustVerifier {
        TrustVerifier {
            tls12: false,
            ..self
        }
    }
}

impl TrustVerifier {
    fn verify_certificate(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), Error> {
        match &self.trust {
            Trust::Any => {}
            Trust::Pinned(pinned) => {
                if end_entity.as_ref() != pinned.as_ref() {
                    return Err(Error::InvalidCertificate(
                        CertificateError::ApplicationVerificationFailure,
                    ));
                }
            }
            Trust::SignedBy(roots) => {
                let parsed = ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_cert_signed_by_trust_anchor(
                    &parsed,
                    roots,
                    intermediates,
                    now,
                    self.algorithms.all,
                )?;
            }
        }
        Ok(())
    }
}

/// The handshake-signature half of a verifier, the same in both roles:
/// rustls declares these methods on the server's and on the client's
/// verifier trait alike, so one body serves both impls.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            if !self.tls12 {
                return Err(Error::General("TLS 1.3 only".into()));
            }
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}

impl ServerCertVerifier for TrustVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.verify_certificate(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

/// As a server: asks for the client's certificate without requiring one,
/// and checks one that comes with the same trust.
impl ClientCertVerifier for TrustVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.verify_certificate(end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures!();
}
