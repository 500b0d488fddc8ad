//! A test certificate authority in a folder, issuing certificates for
//! names (cluster members, XMPP domains) valid for TLS servers and clients.

use std::path::{Path, PathBuf};

pub struct Pki {
    dir: PathBuf,
    label: &'static str,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    /// A new CA whose certificate is written to `dir/LABEL-ca.pem`.
    pub fn new(dir: &Path, label: &'static str) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = common_name(&format!("{label} test CA"));
        let ca = params.self_signed(&key).expect("a self-signed CA");
        std::fs::write(dir.join(format!("{label}-ca.pem")), ca.pem()).expect("write the CA");
        Pki {
            dir: dir.to_owned(),
            label,
            issuer: Issuer::new(params, key),
        }
    }

    pub fn ca_path(&self) -> String {
        self.dir
            .join(format!("{}-ca.pem", self.label))
            .display()
            .to_string()
    }

    /// A certificate naming `name` for TLS both ways; (cert, key) paths.
    pub fn issue(&self, name: &str) -> (String, String) {
        use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair};
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(vec![name.to_owned()]).expect("parameters");
        // Not rcgen's default name, which the CA has too: OpenSSL (Prosody)
        // takes a certificate whose issuer is its subject for self-signed.
        params.distinguished_name = common_name(name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("a signed certificate");
        let path = |ext: &str| self.dir.join(format!("{}-{name}.{ext}", self.label));
        std::fs::write(path("pem"), cert.pem()).expect("write the certificate");
        std::fs::write(path("key"), key.serialize_pem()).expect("write the key");
        (
            path("pem").display().to_string(),
            path("key").display().to_string(),
        )
    }
}

fn common_name(name: &str) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, name);
    dn
}
