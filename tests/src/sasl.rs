//! Client side of SASL PLAIN (RFC 4616) and SCRAM-SHA-1 / SCRAM-SHA-256 (RFC 5802, RFC 7677)
//! as used in XMPP (RFC 6120 §6).
//!
//! This module only computes messages; sending them inside `<auth/>`, `<response/>` and
//! reading `<challenge/>` / `<success/>` is the client's job. SCRAM -PLUS binds to the
//! client's side of the TLS connection: `tls-exporter` (RFC 9266) or `tls-server-end-point`
//! (RFC 5929), computed here from what rustls gives the client. Usernames and passwords are used as given: test accounts are
//! ASCII, so SASLprep would not change them.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Iteration counts above this are refused: a server asking for more is either broken or
/// trying to burn the client's CPU.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// A SASL mechanism this client can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Mechanism {
    ScramSha256Plus,
    ScramSha1Plus,
    ScramSha256,
    ScramSha1,
    Plain,
}

impl Mechanism {
    /// Every mechanism, strongest first: the order used when the caller does not choose
    /// (a -PLUS one only where the client can bind to an advertised type).
    pub const PREFERENCE: [Mechanism; 5] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The IANA name, as it appears in `<mechanism/>`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    pub fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Some(ScramHash::Sha256),
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Some(ScramHash::Sha1),
            Mechanism::Plain => None,
        }
    }

    /// SCRAM with channel binding.
    pub fn is_plus(self) -> bool {
        matches!(self, Mechanism::ScramSha256Plus | Mechanism::ScramSha1Plus)
    }
}

/// XEP-0440: the stream feature listing the server's channel-binding types.
pub const SASL_CB: &str = "urn:xmpp:sasl-cb:0";

/// What the client binds a SCRAM exchange to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ChannelBinding {
    /// With a -PLUS mechanism, the first type the server advertises that the client can
    /// compute; otherwise `y` where the client could bind but no -PLUS is offered (RFC
    /// 5802 section 6), else `n`.
    #[default]
    Auto,
    /// This type (`tls-exporter`, `tls-server-end-point`), with the client's own data.
    Type(String),
    /// This type with these bytes: the data of another TLS connection is what a man in
    /// the middle would send; data found elsewhere (the certificate's hash for a BOSH
    /// client, which has no TLS connection of its own to read) binds like `Type`.
    Data(String, Vec<u8>),
    /// `y` whatever the server offered: a client whose view of the features was altered.
    ClaimUnsupported,
}

/// The channel-binding data of the client's side of a TLS connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientBindings {
    pub exporter: Option<Vec<u8>>,
    pub end_point: Option<Vec<u8>>,
}

impl ClientBindings {
    /// `tls-exporter` on TLS 1.3; `tls-server-end-point` from the server's certificate.
    pub fn from_tls(connection: &rustls::ClientConnection) -> ClientBindings {
        let exporter = (connection.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3))
            .then(|| {
                let mut data = vec![0u8; 32];
                let exported = connection.export_keying_material(
                    &mut data,
                    b"EXPORTER-Channel-Binding",
                    Some(&[]),
                );
                exported.is_ok().then_some(data)
            })
            .flatten();
        let end_point = connection
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| end_point_hash(cert));
        ClientBindings {
            exporter,
            end_point,
        }
    }

    pub fn data(&self, name: &str) -> Option<&[u8]> {
        match name {
            "tls-exporter" => self.exporter.as_deref(),
            "tls-server-end-point" => self.end_point.as_deref(),
            _ => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.exporter.is_none() && self.end_point.is_none()
    }
}

/// RFC 5929 section 4.1: the certificate hashed with its signature's hash, SHA-256 for
/// MD5 and SHA-1. Only the algorithms test servers use are known (RSA and ECDSA).
pub fn end_point_hash(certificate: &[u8]) -> Option<Vec<u8>> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm SEQUENCE { OID .. }, .. }
    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let mut len = usize::from(first);
        if first >= 0x80 {
            let count = usize::from(first & 0x7f);
            let (bytes, after) = (rest.get(..count)?, rest.get(count..)?);
            len = bytes.iter().fold(0, |n, b| (n << 8) | usize::from(*b));
            rest = after;
        }
        Some((tag, rest.get(..len)?, rest.get(len..)?))
    }
    let (_, certificate_body, _) = element(certificate)?;
    let (_, _, after_tbs) = element(certificate_body)?;
    let (_, algorithm, _) = element(after_tbs)?;
    let (_, oid, _) = element(algorithm)?;
    let last = *oid.last()?;
    let rsa = oid.starts_with(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01]);
    let ecdsa = oid.starts_with(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04]);
    match (rsa, ecdsa, last) {
        (true, _, 0x04 | 0x05 | 0x0b) | (_, true, 0x01 | 0x02) => {
            Some(Sha256::digest(certificate).to_vec())
        }
        (true, _, 0x0c) | (_, true, 0x03) => Some(sha2::Sha384::digest(certificate).to_vec()),
        (true, _, 0x0d) | (_, true, 0x04) => Some(sha2::Sha512::digest(certificate).to_vec()),
        _ => None,
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mechanism {
    type Err = SaslError;

    /// Accepts the IANA name in any case, with `-` or `_` (`scram-sha-256`, `PLAIN`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = text.to_ascii_uppercase().replace('_', "-");
        Mechanism::PREFERENCE
            .into_iter()
            .find(|mechanism| mechanism.name() == wanted)
            .ok_or_else(|| SaslError::UnknownMechanism(text.to_owned()))
    }
}

/// Why a SASL exchange could not go on, from the client's point of view.
#[derive(Debug, thiserror::Error)]
pub enum SaslError {
    #[error("unknown SASL mechanism `{0}`")]
    UnknownMechanism(String),
    #[error("server message is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("server message is not UTF-8")]
    NotUtf8,
    #[error("server-first-message lacks `{0}=`: {1:?}")]
    MissingField(char, String),
    #[error("server-first-message has a mandatory extension we do not know: {0:?}")]
    MandatoryExtension(String),
    #[error("server nonce does not extend ours: {0:?}")]
    NonceMismatch(String),
    #[error("bad iteration count {0:?}")]
    BadIterations(String),
    #[error("server reported a SCRAM error: {0}")]
    ServerError(String),
    #[error("server signature does not match: the server does not know the password")]
    BadServerSignature,
    #[error("SCRAM message out of order: {0}")]
    OutOfOrder(&'static str),
}

/// The hash function behind a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    pub fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => hmac_with::<Hmac<Sha1>>(key, data),
            ScramHash::Sha256 => hmac_with::<Hmac<Sha256>>(key, data),
        }
    }

    /// `Hi(password, salt, i)` of RFC 5802 §2.2, which is PBKDF2 with HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => {
                let mut out = vec![0; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out);
                out
            }
            ScramHash::Sha256 => {
                let mut out = vec![0; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

fn hmac_with<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    #[allow(clippy::expect_used)]
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// What a server stores for a SCRAM user (RFC 5802 §3): enough to verify a login and prove
/// itself, not enough to log in. Used to provision other servers' stores for benchmarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl ScramCredentials {
    pub fn derive(hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = hash.salted_password(password.as_bytes(), salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        ScramCredentials {
            stored_key: hash.hash(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
        }
    }
}

/// The PLAIN initial response: `authzid NUL authcid NUL password`, authzid left empty.
pub fn plain_initial_response(username: &str, password: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(username.len() + password.len() + 2);
    out.push(0);
    out.extend_from_slice(username.as_bytes());
    out.push(0);
    out.extend_from_slice(password.as_bytes());
    out
}

/// One SCRAM exchange: `client_first`, then `client_final` with the server's challenge,
/// then `verify_server_final` with the server's last message.
pub struct ScramClient {
    hash: ScramHash,
    /// `n,,`, `y,,` or `p=<type>,,`.
    gs2_header: String,
    /// Sent after the GS2 header in `c=` (channel binding only).
    binding_data: Vec<u8>,
    password: String,
    client_nonce: String,
    client_first_bare: String,
    /// Set by `client_final`: what the server must prove in its final message.
    expected_server_signature: Option<Vec<u8>>,
}

impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("hash", &self.hash)
            .field("client_first_bare", &self.client_first_bare)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// Starts an exchange with a fresh random nonce.
    pub fn new(hash: ScramHash, username: &str, password: &str) -> Self {
        let mut raw = [0u8; 18];
        rand::fill(&mut raw);
        Self::with_nonce(hash, username, password, &BASE64.encode(raw))
    }

    /// Starts an exchange with a given nonce (for the RFC test vectors).
    pub fn with_nonce(hash: ScramHash, username: &str, password: &str, nonce: &str) -> Self {
        let client_first_bare = format!("n={},r={nonce}", escape_username(username));
        ScramClient {
            hash,
            gs2_header: "n,,".to_owned(),
            binding_data: Vec::new(),
            password: password.to_owned(),
            client_nonce: nonce.to_owned(),
            client_first_bare,
            expected_server_signature: None,
        }
    }

    /// Sends the GS2 flag `y`: the client could bind but believes the server cannot.
    pub fn claim_binding_unsupported(&mut self) {
        "y,,".clone_into(&mut self.gs2_header);
    }

    /// Binds with `p=<name>`, sending `data` as the channel-binding data.
    pub fn bind(&mut self, name: &str, data: &[u8]) {
        self.gs2_header = format!("p={name},,");
        self.binding_data = data.to_vec();
    }

    /// The client-first-message, to send in `<auth/>`.
    pub fn client_first(&self) -> String {
        format!("{}{}", self.gs2_header, self.client_first_bare)
    }

    /// Takes the server-first-message and returns the client-final-message.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<String, SaslError> {
        let server_first = std::str::from_utf8(server_first).map_err(|_| SaslError::NotUtf8)?;
        let fields = parse_fields(server_first);
        if let Some(error) = field(&fields, 'e') {
            return Err(SaslError::ServerError(error.to_owned()));
        }
        if let Some(extension) = field(&fields, 'm') {
            return Err(SaslError::MandatoryExtension(extension.to_owned()));
        }
        let missing = |name| SaslError::MissingField(name, server_first.to_owned());
        let nonce = field(&fields, 'r').ok_or_else(|| missing('r'))?;
        let salt = field(&fields, 's').ok_or_else(|| missing('s'))?;
        let iterations = field(&fields, 'i').ok_or_else(|| missing('i'))?;
        if nonce.len() <= self.client_nonce.len() || !nonce.starts_with(&self.client_nonce) {
            return Err(SaslError::NonceMismatch(nonce.to_owned()));
        }
        let salt = BASE64.decode(salt)?;
        let iterations = iterations
            .parse::<u32>()
            .ok()
            .filter(|count| (1..=MAX_ITERATIONS).contains(count))
            .ok_or_else(|| SaslError::BadIterations(iterations.to_owned()))?;

        let hash = self.hash;
        let salted = hash.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = hash.hmac(&salted, b"Client Key");
        let stored_key = hash.hash(&client_key);
        let mut binding = self.gs2_header.clone().into_bytes();
        binding.extend_from_slice(&self.binding_data);
        let without_proof = format!("c={},r={nonce}", BASE64.encode(binding));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_signature = hash.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(key, signature)| key ^ signature)
            .collect();
        let server_key = hash.hmac(&salted, b"Server Key");
        self.expected_server_signature = Some(hash.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)))
    }

    /// Checks the server-final-message (`v=` signature or `e=` error).
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), SaslError> {
        let expected = self
            .expected_server_signature
            .as_ref()
            .ok_or(SaslError::OutOfOrder("server-final before client-final"))?;
        let server_final = std::str::from_utf8(server_final).map_err(|_| SaslError::NotUtf8)?;
        let fields = parse_fields(server_final);
        if let Some(error) = field(&fields, 'e') {
            return Err(SaslError::ServerError(error.to_owned()));
        }
        let signature = field(&fields, 'v')
            .ok_or_else(|| SaslError::MissingField('v', server_final.to_owned()))?;
        if BASE64.decode(signature)? != *expected {
            return Err(SaslError::BadServerSignature);
        }
        Ok(())
    }

    /// Whether `client_final` has run, i.e. the next server message is the final one.
    pub fn awaiting_server_final(&self) -> bool {
        self.expected_server_signature.is_some()
    }
}

/// RFC 5802 §5.1: `=` and `,` in a username are written `=3D` and `=2C`.
fn escape_username(username: &str) -> String {
    username.replace('=', "=3D").replace(',', "=2C")
}

fn parse_fields(message: &str) -> Vec<(char, &str)> {
    message
        .split(',')
        .filter_map(|part| {
            let mut chars = part.chars();
            let name = chars.next()?;
            let value = part.get(name.len_utf8()..)?.strip_prefix('=')?;
            Some((name, value))
        })
        .collect()
}

fn field<'a>(fields: &[(char, &'a str)], name: char) -> Option<&'a str> {
    fields
        .iter()
        .find(|(field_name, _)| *field_name == name)
        .map(|(_, value)| *value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5802_scram_sha1_example() {
        let mut client = ScramClient::with_nonce(
            ScramHash::Sha1,
            "user",
            "pencil",
            "fyko+d2lbbFgONRv9qkxdawL",
        );
        assert_eq!(
            client.client_first(),
            "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
        );
        let client_final = client
            .client_final(b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096")
            .unwrap();
        assert_eq!(
            client_final,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        client
            .verify_server_final(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")
            .unwrap();
        assert!(matches!(
            client.verify_server_final(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(SaslError::BadServerSignature)
        ));
    }

    #[test]
    fn rfc7677_scram_sha256_example() {
        let mut client =
            ScramClient::with_nonce(ScramHash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        let client_final = client
            .client_final(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            )
            .unwrap();
        assert_eq!(
            client_final,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        client
            .verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
    }

    #[test]
    fn credentials_match_what_the_exchange_proves() {
        // StoredKey = H(ClientKey) and ServerKey as in RFC 5802 §3, for the SHA-1 example.
        let salt = BASE64.decode("QSXCR+Q6sek8bf92").unwrap();
        let creds = ScramCredentials::derive(ScramHash::Sha1, "pencil", &salt, 4096);
        let salted = ScramHash::Sha1.salted_password(b"pencil", &salt, 4096);
        let client_key = ScramHash::Sha1.hmac(&salted, b"Client Key");
        assert_eq!(creds.stored_key, ScramHash::Sha1.hash(&client_key));
        assert_eq!(creds.server_key.len(), 20);
        assert_ne!(creds.stored_key, creds.server_key);
    }

    #[test]
    fn rejects_bad_server_first_messages() {
        let mut client = ScramClient::with_nonce(ScramHash::Sha1, "u", "p", "abc");
        assert!(matches!(
            client.client_final(b"r=xyz123,s=QSXCR+Q6sek8bf92,i=4096"),
            Err(SaslError::NonceMismatch(_))
        ));
        assert!(matches!(
            client.client_final(b"r=abc,s=QSXCR+Q6sek8bf92,i=4096"),
            Err(SaslError::NonceMismatch(_))
        ));
        assert!(matches!(
            client.client_final(b"r=abcd,s=QSXCR+Q6sek8bf92,i=0"),
            Err(SaslError::BadIterations(_))
        ));
        assert!(matches!(
            client.client_final(b"m=ext,r=abcd,s=QSXCR+Q6sek8bf92,i=1"),
            Err(SaslError::MandatoryExtension(_))
        ));
        assert!(matches!(
            client.client_final(b"r=abcd,i=1"),
            Err(SaslError::MissingField('s', _))
        ));
        assert!(matches!(
            client.verify_server_final(b"v=x"),
            Err(SaslError::OutOfOrder(_))
        ));
    }

    #[test]
    fn usernames_are_escaped_and_plain_is_nul_separated() {
        let client = ScramClient::with_nonce(ScramHash::Sha256, "a=b,c", "p", "n");
        assert_eq!(client.client_first(), "n,,n=a=3Db=2Cc,r=n");
        assert_eq!(
            plain_initial_response("juliet", "r0m30"),
            b"\0juliet\0r0m30"
        );
    }

    #[test]
    fn mechanism_names_parse_loosely() {
        assert_eq!(
            "scram-sha-256".parse::<Mechanism>().unwrap(),
            Mechanism::ScramSha256
        );
        assert_eq!(
            "SCRAM_SHA_1".parse::<Mechanism>().unwrap(),
            Mechanism::ScramSha1
        );
        assert_eq!("plain".parse::<Mechanism>().unwrap(), Mechanism::Plain);
        assert!("DIGEST-MD5".parse::<Mechanism>().is_err());
    }
}
