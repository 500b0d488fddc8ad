//! A test certificate authority in a folder, issuing certificates for
//! names (cluster members, XMPP domains) valid for TLS servers and clients.
//!
//! Everything is valid from a day ago for 30 days: ejabberd 23.01 arms a
//! timer for the expiry of its certificates and crashes on one that ends
//! more than 49 days (2^32 ms) away, as rcgen's default (year 4096) does.
//! The CA and each certificate have names of their own (rcgen gives all
//! the same one): OpenSSL, under Prosody and ejabberd, takes a certificate
//! whose issuer is its own subject for a self-signed one and rejects it.

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
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("Starling test CA {label}"),
        );
        validity(&mut params);
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
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        validity(&mut params);
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

/// From a day ago for 30 days.
fn validity(params: &mut rcgen::CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(30);
}
