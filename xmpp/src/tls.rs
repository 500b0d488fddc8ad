//! TLS out of the box: the configured certificate, or a self-signed one
//! generated on first start and kept in the data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use starling_core::config::Config;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {message}")]
    Read {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("certificate and key do not make a TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Builds the acceptor for STARTTLS from the config (generating a
/// certificate when none is configured).
pub fn acceptor(config: &Config) -> Result<TlsAcceptor, TlsError> {
    reloadable_acceptor(config).map(|(acceptor, _)| acceptor)
}

/// The acceptor, and the handle that swaps the certificate it serves
/// (SIGHUP): connections from then on get the new one, open ones keep theirs.
pub fn reloadable_acceptor(
    config: &Config,
) -> Result<(TlsAcceptor, Arc<ReloadableCertificate>), TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certificate = Arc::new(ReloadableCertificate {
        current: ArcSwap::from_pointee(Served::new(certified_key(config, &provider)?)),
        provider: provider.clone(),
    });
    let mut server_config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certificate.clone());
    // Session tickets would keep per-connection state we do not need; XMPP
    // clients reconnect rarely compared with HTTPS.
    server_config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok((TlsAcceptor::from(Arc::new(server_config)), certificate))
}

/// The node's certificate and key, read again on [`reload`](Self::reload).
#[derive(Debug)]
pub struct ReloadableCertificate {
    current: ArcSwap<Served>,
    provider: Arc<CryptoProvider>,
}

/// The pair being served, with its `tls-server-end-point` channel binding.
#[derive(Debug)]
struct Served {
    key: Arc<CertifiedKey>,
    end_point: Option<Vec<u8>>,
}

impl Served {
    fn new(key: CertifiedKey) -> Served {
        let end_point = key
            .cert
            .first()
            .and_then(|cert| crate::auth::end_point_hash(cert));
        Served {
            key: Arc::new(key),
            end_point,
        }
    }
}

impl ReloadableCertificate {
    /// Reads the certificate and key `config` names (or the generated pair)
    /// and serves them from the next handshake on; on error the old pair
    /// stays. Returns the certificate file read.
    pub fn reload(&self, config: &Config) -> Result<PathBuf, TlsError> {
        let key = certified_key(config, &self.provider)?;
        self.current.store(Arc::new(Served::new(key)));
        Ok(certificate_path(config))
    }
}

impl ReloadableCertificate {
    /// The `tls-server-end-point` data of the certificate served now (RFC 5929), `None`
    /// when its signature algorithm has no defined hash. A connection that shook hands
    /// just before a reload would fail this binding and log in again.
    pub fn end_point(&self) -> Option<Vec<u8>> {
        self.current.load().end_point.clone()
    }
}

impl ResolvesServerCert for ReloadableCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().key.clone())
    }
}

/// Outgoing server-to-server streams present the same certificate as
/// client certificate, for the peer's SASL EXTERNAL.
impl rustls::client::ResolvesClientCert for ReloadableCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The `tls-exporter` channel binding of a connection (RFC 9266): only on TLS 1.3, where
/// the exporter is bound to the whole handshake.
pub fn exporter(connection: &rustls::ServerConnection) -> Option<[u8; crate::auth::EXPORTER_LEN]> {
    if connection.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return None;
    }
    let mut data = [0u8; crate::auth::EXPORTER_LEN];
    connection
        .export_keying_material(&mut data, crate::auth::EXPORTER_LABEL, Some(&[]))
        .ok()?;
    Some(data)
}

/// The configured (or generated) certificate chain with its key, checked to
/// belong together.
fn certified_key(config: &Config, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let (cert_path, key_path) = if config.tls.cert.as_os_str().is_empty() {
        ensure_self_signed(&config.server.data_dir, &config.server.domain)?
    } else {
        (config.tls.cert.clone(), config.tls.key.clone())
    };
    let certs = load_certificates(&cert_path)?;
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|error| TlsError::Read {
        what: "private key",
        path: key_path.clone(),
        message: error.to_string(),
    })?;
    let key = CertifiedKey::from_der(certs, key, provider)?;
    Ok(key)
}

/// The certificate chain in the PEM file at `path`: at least one
/// certificate, the node's own first.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|error| TlsError::Read {
            what: "certificate",
            path: path.to_owned(),
            message: error.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Read {
            what: "certificate",
            path: path.to_owned(),
            message: "no PEM certificate found".into(),
        });
    }
    Ok(certs)
}

/// The certificate a node with this config serves: `[tls] cert`, else the
/// one generated in the data directory.
pub fn certificate_path(config: &Config) -> PathBuf {
    if config.tls.cert.as_os_str().is_empty() {
        generated_dir(&config.server.data_dir).join("cert.pem")
    } else {
        config.tls.cert.clone()
    }
}

fn generated_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

/// Paths of the generated certificate and key, creating them if missing.
fn ensure_self_signed(data_dir: &Path, domain: &str) -> Result<(PathBuf, PathBuf), TlsError> {
    let dir = generated_dir(data_dir);
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    std::fs::create_dir_all(&dir).map_err(|source| TlsError::Write {
        path: dir.clone(),
        source,
    })?;
    let names = vec![domain.to_owned(), format!("*.{domain}")];
    let generated = rcgen::generate_simple_self_signed(names)?;
    write_private(&key_path, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, generated.cert.pem()).map_err(|source| TlsError::Write {
        path: cert_path.clone(),
        source,
    })?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed TLS certificate");
    Ok((cert_path, key_path))
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let error = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(error)?;
    file.write_all(contents).map_err(error)
}

/// The acceptor for XEP-0368 direct TLS: the same certificate, and the
/// ALPN protocol `xmpp-client` (a client naming another protocol is refused).
pub fn direct_tls_acceptor(starttls: &TlsAcceptor) -> TlsAcceptor {
    let mut config = ServerConfig::clone(starttls.config());
    config.alpn_protocols = vec![b"xmpp-client".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_reuses() {
        let dir = std::env::temp_dir().join(format!("starling-tls-{}", std::process::id()));
        let mut config = Config::defaults();
        config.server.data_dir = dir.clone();
        acceptor(&config).expect("generated certificate loads");
        let cert = std::fs::read(dir.join("tls/cert.pem")).unwrap();
        acceptor(&config).expect("existing certificate loads");
        assert_eq!(cert, std::fs::read(dir.join("tls/cert.pem")).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
