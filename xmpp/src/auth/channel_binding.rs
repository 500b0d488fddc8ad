//! SCRAM channel binding (RFC 5056): the types Starling implements, the data a TLS
//! connection offers for them, and the certificate hash of `tls-server-end-point`.
//!
//! - `tls-exporter` (RFC 9266): 32 bytes of TLS 1.3 keying material exported with the label
//!   `EXPORTER-Channel-Binding` and an empty context. Unique per connection.
//! - `tls-server-end-point` (RFC 5929 section 4): a hash of the server's certificate. The
//!   same on every connection to this certificate, so it also binds transports whose
//!   exchange may cross several TLS connections (BOSH).
//!
//! `tls-unique` is not implemented: it is undefined on TLS 1.3 and rustls does not expose it.

use sha2::{Digest, Sha256, Sha384, Sha512};

/// The label of RFC 9266 section 2.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";
/// The length of `tls-exporter` data.
pub const EXPORTER_LEN: usize = 32;

/// A channel-binding type Starling implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelBindingType {
    TlsExporter,
    TlsServerEndPoint,
}

impl ChannelBindingType {
    /// The strongest first: the order advertised (XEP-0440).
    pub const ALL: [ChannelBindingType; 2] = [Self::TlsExporter, Self::TlsServerEndPoint];

    /// The registered name, as in `p=<name>` and `<channel-binding type='...'/>`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::TlsExporter => "tls-exporter",
            Self::TlsServerEndPoint => "tls-server-end-point",
        }
    }
}

/// What one client stream can bind to; empty when it is not TLS (or the TLS is not ours).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelBindings {
    exporter: Option<[u8; EXPORTER_LEN]>,
    end_point: Option<Vec<u8>>,
}

impl ChannelBindings {
    pub fn new(exporter: Option<[u8; EXPORTER_LEN]>, end_point: Option<Vec<u8>>) -> Self {
        Self {
            exporter,
            end_point,
        }
    }

    /// No binding is possible: the -PLUS mechanisms are not offered.
    pub fn is_empty(&self) -> bool {
        self.exporter.is_none() && self.end_point.is_none()
    }

    /// The types available, strongest first.
    pub fn types(&self) -> impl Iterator<Item = ChannelBindingType> + '_ {
        ChannelBindingType::ALL
            .into_iter()
            .filter(|kind| self.data(kind.name()).is_some())
    }

    /// The binding data of the type named `name`, if it is one this stream offers.
    pub fn data(&self, name: &str) -> Option<&[u8]> {
        match name {
            "tls-exporter" => self.exporter.as_ref().map(|data| &data[..]),
            "tls-server-end-point" => self.end_point.as_deref(),
            _ => None,
        }
    }

    /// The same bindings without `tls-exporter` (for transports spanning several connections).
    pub fn without_exporter(mut self) -> Self {
        self.exporter = None;
        self
    }
}

/// The `tls-server-end-point` data of a DER certificate (RFC 5929 section 4.1): its hash
/// with the hash function of its signature algorithm, SHA-256 in place of MD5 and SHA-1.
/// `None` for an algorithm without a single hash function (Ed25519, RSA-PSS) or a
/// certificate that does not parse: the type is then not offered.
pub fn end_point_hash(certificate: &[u8]) -> Option<Vec<u8>> {
    let oid = signature_algorithm(certificate)?;
    let hash = match oid {
        // md5WithRSAEncryption, sha1WithRSAEncryption, sha256WithRSAEncryption
        OID_MD5_RSA | OID_SHA1_RSA | OID_SHA256_RSA => EndPointHash::Sha256,
        // ecdsa-with-SHA1, ecdsa-with-SHA256
        OID_SHA1_ECDSA | OID_SHA256_ECDSA => EndPointHash::Sha256,
        OID_SHA384_RSA | OID_SHA384_ECDSA => EndPointHash::Sha384,
        OID_SHA512_RSA | OID_SHA512_ECDSA => EndPointHash::Sha512,
        _ => return None,
    };
    Some(match hash {
        EndPointHash::Sha256 => Sha256::digest(certificate).to_vec(),
        EndPointHash::Sha384 => Sha384::digest(certificate).to_vec(),
        EndPointHash::Sha512 => Sha512::digest(certificate).to_vec(),
    })
}

enum EndPointHash {
    Sha256,
    Sha384,
    Sha512,
}

// DER contents of the signature algorithm OIDs (RFC 8017, RFC 5758).
const OID_MD5_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04];
const OID_SHA1_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
const OID_SHA256_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const OID_SHA384_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const OID_SHA512_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
const OID_SHA1_ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
const OID_SHA256_ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_SHA384_ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const OID_SHA512_ECDSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];

const SEQUENCE: u8 = 0x30;
const OBJECT_IDENTIFIER: u8 = 0x06;

/// The OID of `Certificate.signatureAlgorithm` (RFC 5280 section 4.1):
/// `SEQUENCE { tbsCertificate, SEQUENCE { algorithm OID, ... }, signature }`.
fn signature_algorithm(certificate: &[u8]) -> Option<&[u8]> {
    let (tag, body, _) = der_element(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_, _, rest) = der_element(body)?; // tbsCertificate
    let (tag, algorithm, _) = der_element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, oid, _) = der_element(algorithm)?;
    (tag == OBJECT_IDENTIFIER).then_some(oid)
}

/// One DER element: (tag, contents, what follows). Single-byte tags and definite lengths
/// only, which is all a certificate's outer structure uses.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |len, byte| (len << 8) | usize::from(*byte));
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ecdsa_certificate_hashes_with_sha256() {
        let generated = rcgen::generate_simple_self_signed(vec!["example.org".into()]).unwrap();
        let der = generated.cert.der();
        assert_eq!(signature_algorithm(der), Some(OID_SHA256_ECDSA));
        assert_eq!(end_point_hash(der), Some(Sha256::digest(der).to_vec()));
    }

    #[test]
    fn unknown_or_broken_certificates_have_no_end_point() {
        assert_eq!(end_point_hash(b""), None);
        assert_eq!(end_point_hash(&[0x30, 0x82, 0xff]), None);
        // A SEQUENCE holding a tbs and an Ed25519 AlgorithmIdentifier (1.3.101.112).
        let ed25519 = [
            0x30, 0x09, 0x30, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70,
        ];
        assert_eq!(signature_algorithm(&ed25519), Some(&[0x2b, 0x65, 0x70][..]));
        assert_eq!(end_point_hash(&ed25519), None);
    }

    #[test]
    fn bindings_offer_what_they_hold() {
        let none = ChannelBindings::default();
        assert!(none.is_empty());
        assert_eq!(none.types().count(), 0);
        let both = ChannelBindings::new(Some([7; 32]), Some(vec![1, 2]));
        assert_eq!(
            both.types().collect::<Vec<_>>(),
            ChannelBindingType::ALL.to_vec()
        );
        assert_eq!(both.data("tls-exporter"), Some(&[7; 32][..]));
        assert_eq!(both.data("tls-server-end-point"), Some(&[1, 2][..]));
        assert_eq!(both.data("tls-unique"), None);
        let bosh = both.without_exporter();
        assert_eq!(
            bosh.types().collect::<Vec<_>>(),
            [ChannelBindingType::TlsServerEndPoint]
        );
        assert!(!bosh.is_empty());
    }
}
