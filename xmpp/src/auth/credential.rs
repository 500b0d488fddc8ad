//! Salted SCRAM credentials (RFC 5802 section 3): what the store keeps instead of passwords,
//! how they are made, written to and read from a database column, and how a clear password
//! (SASL PLAIN, XEP-0078 legacy auth) is checked against them.
//!
//! Text format, one credential per string, fields separated by `:`:
//!
//! ```text
//! scram-sha-256:<iterations>:<salt>:<stored key>:<server key>
//! scram-sha-1:<iterations>:<salt>:<stored key>:<server key>
//! ```
//!
//! The first field names the format as well as the hash; a later format gets a new name, so
//! old rows stay readable. Iterations are decimal (at least 1); salt and keys are standard
//! base64 with padding; the keys are exactly as long as the hash output.

use std::fmt;
use std::num::ParseIntError;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::crypto;

/// The iteration count given to new credentials: RFC 5802 and RFC 7677 ask for at least 4096.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Length of the random salt of new credentials.
pub const SALT_LEN: usize = 16;

/// The hash a SCRAM mechanism is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramHash {
    /// SCRAM-SHA-1 (RFC 5802).
    Sha1,
    /// SCRAM-SHA-256 (RFC 7677).
    Sha256,
}

impl ScramHash {
    /// Size of `H()` and `HMAC()` outputs in bytes.
    pub const fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }

    /// The scheme name used in the stored text format.
    const fn scheme(self) -> &'static str {
        match self {
            Self::Sha1 => "scram-sha-1",
            Self::Sha256 => "scram-sha-256",
        }
    }

    fn from_scheme(scheme: &str) -> Option<Self> {
        [Self::Sha256, Self::Sha1]
            .into_iter()
            .find(|h| h.scheme() == scheme)
    }
}

/// One user's SCRAM secrets for one hash. Holds no password: `stored_key` lets the server
/// check a proof, `server_key` lets it prove itself.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredCredential {
    pub hash: ScramHash,
    /// Sent to the client in the server-first message.
    pub salt: Vec<u8>,
    /// PBKDF2 rounds, sent to the client with the salt.
    pub iterations: u32,
    /// `H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
}

impl StoredCredential {
    /// Derives the credential for `password` (SASLprep'd first, see RFC 5802 `Normalize`).
    /// An `iterations` of 0 is stored as 1, the count PBKDF2 actually runs.
    pub fn derive(hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> Self {
        let iterations = iterations.max(1);
        let password = crypto::normalize_password(password);
        let salted = crypto::salted_password(hash, password.as_bytes(), salt, iterations);
        let (stored_key, server_key) = crypto::keys(hash, &salted);
        Self {
            hash,
            salt: salt.to_vec(),
            iterations,
            stored_key,
            server_key,
        }
    }

    /// The text form for the database (see the module documentation).
    pub fn encode(&self) -> String {
        format!(
            "{}:{}:{}:{}:{}",
            self.hash.scheme(),
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(&self.stored_key),
            BASE64.encode(&self.server_key),
        )
    }

    /// Reads the text form written by [`StoredCredential::encode`].
    pub fn decode(text: &str) -> Result<Self, CredentialError> {
        let fields: Vec<&str> = text.split(':').collect();
        let [scheme, iterations, salt, stored_key, server_key] = fields[..] else {
            return Err(CredentialError::FieldCount(fields.len()));
        };
        let hash = ScramHash::from_scheme(scheme)
            .ok_or_else(|| CredentialError::UnknownScheme(scheme.to_owned()))?;
        let iterations: u32 = iterations.parse().map_err(CredentialError::Iterations)?;
        if iterations == 0 {
            return Err(CredentialError::ZeroIterations);
        }
        let salt = decode_field("salt", salt)?;
        if salt.is_empty() {
            return Err(CredentialError::EmptySalt);
        }
        let stored_key = decode_key(hash, "stored key", stored_key)?;
        let server_key = decode_key(hash, "server key", server_key)?;
        Ok(Self {
            hash,
            salt,
            iterations,
            stored_key,
            server_key,
        })
    }
}

fn decode_field(field: &'static str, text: &str) -> Result<Vec<u8>, CredentialError> {
    BASE64
        .decode(text)
        .map_err(|source| CredentialError::Base64 { field, source })
}

fn decode_key(
    hash: ScramHash,
    field: &'static str,
    text: &str,
) -> Result<Vec<u8>, CredentialError> {
    let key = decode_field(field, text)?;
    if key.len() != hash.output_len() {
        return Err(CredentialError::KeyLength {
            field,
            expected: hash.output_len(),
            found: key.len(),
        });
    }
    Ok(key)
}

// Keys stay out of logs: a stored key plus one observed exchange is enough to log in.
impl fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredCredential")
            .field("hash", &self.hash)
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .finish_non_exhaustive()
    }
}

/// Why a stored credential string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("credential has {0} fields, expected 5")]
    FieldCount(usize),
    #[error("unknown credential scheme {0:?}")]
    UnknownScheme(String),
    #[error("credential iteration count is not a number")]
    Iterations(#[source] ParseIntError),
    #[error("credential iteration count is 0")]
    ZeroIterations,
    #[error("credential salt is empty")]
    EmptySalt,
    #[error("credential {field} is not valid base64")]
    Base64 {
        field: &'static str,
        #[source]
        source: base64::DecodeError,
    },
    #[error("credential {field} is {found} bytes long, expected {expected}")]
    KeyLength {
        field: &'static str,
        expected: usize,
        found: usize,
    },
}

/// A user's credentials for every SCRAM mechanism offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub sha1: StoredCredential,
    pub sha256: StoredCredential,
}

impl Credentials {
    /// Credentials with fresh random salts and [`DEFAULT_ITERATIONS`].
    pub fn new(password: &str) -> Self {
        Self::with_iterations(password, DEFAULT_ITERATIONS)
    }

    /// Credentials with fresh random salts and the given iteration count.
    pub fn with_iterations(password: &str, iterations: u32) -> Self {
        let derive = |hash| {
            let mut salt = [0u8; SALT_LEN];
            rand::fill(&mut salt[..]);
            StoredCredential::derive(hash, password, &salt, iterations)
        };
        Self {
            sha1: derive(ScramHash::Sha1),
            sha256: derive(ScramHash::Sha256),
        }
    }

    /// The credential a SCRAM exchange with `hash` is checked against.
    pub fn get(&self, hash: ScramHash) -> &StoredCredential {
        match hash {
            ScramHash::Sha1 => &self.sha1,
            ScramHash::Sha256 => &self.sha256,
        }
    }

    /// Checks a clear password against the SHA-256 credential.
    pub fn verify_password(&self, password: &str) -> bool {
        verify_password(&self.sha256, password)
    }
}

/// Checks a clear password against a stored credential, comparing keys in constant time.
/// Costs one PBKDF2 derivation at the credential's iteration count.
pub fn verify_password(credential: &StoredCredential, password: &str) -> bool {
    let candidate = StoredCredential::derive(
        credential.hash,
        password,
        &credential.salt,
        credential.iterations,
    );
    crypto::constant_time_eq(&candidate.stored_key, &credential.stored_key)
}

/// Checks a clear password for a user who may not exist. An unknown user costs the same
/// derivation as a known one, so the answer time does not tell which accounts exist.
pub fn check_password(credentials: Option<&Credentials>, password: &str) -> bool {
    match credentials {
        Some(credentials) => credentials.verify_password(password),
        None => {
            static DUMMY: OnceLock<StoredCredential> = OnceLock::new();
            let dummy = DUMMY.get_or_init(|| Credentials::new("").sha256);
            // The result is thrown away: only the time spent matters.
            std::hint::black_box(verify_password(dummy, password));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derive_matches_rfc5802_example_keys() {
        let salt = BASE64.decode("QSXCR+Q6sek8bf92").unwrap();
        let cred = StoredCredential::derive(ScramHash::Sha1, "pencil", &salt, 4096);
        // Keys implied by the RFC 5802 section 5 exchange (checked end to end in scram.rs).
        assert_eq!(
            BASE64.encode(&cred.stored_key),
            "6dlGYMOdZcOPutkcNY8U2g7vK9Y="
        );
        assert_eq!(
            BASE64.encode(&cred.server_key),
            "D+CSWLOshSulAsxiupA+qs2/fTE="
        );
    }

    #[test]
    fn encode_decode_round_trip() {
        let creds = Credentials::with_iterations("pencil", 64);
        for cred in [&creds.sha1, &creds.sha256] {
            let text = cred.encode();
            assert_eq!(StoredCredential::decode(&text).unwrap(), *cred);
        }
        assert!(creds.sha256.encode().starts_with("scram-sha-256:64:"));
        assert!(creds.sha1.encode().starts_with("scram-sha-1:64:"));
    }

    #[test]
    fn encode_is_the_documented_format() {
        let cred = StoredCredential {
            hash: ScramHash::Sha1,
            salt: b"salt".to_vec(),
            iterations: 4096,
            stored_key: vec![0; 20],
            server_key: vec![255; 20],
        };
        assert_eq!(
            cred.encode(),
            "scram-sha-1:4096:c2FsdA==:AAAAAAAAAAAAAAAAAAAAAAAAAAA=://////////////////////////8="
        );
    }

    #[test]
    fn decode_errors() {
        let good = Credentials::with_iterations("x", 2).sha256.encode();
        let fields: Vec<&str> = good.split(':').collect();
        let with = |i: usize, value: &str| {
            let mut f = fields.clone();
            f[i] = value;
            f.join(":")
        };
        assert_eq!(
            StoredCredential::decode(""),
            Err(CredentialError::FieldCount(1))
        );
        assert_eq!(
            StoredCredential::decode(&format!("{good}:extra")),
            Err(CredentialError::FieldCount(6))
        );
        assert_eq!(
            StoredCredential::decode(&with(0, "scram-md5")),
            Err(CredentialError::UnknownScheme("scram-md5".into()))
        );
        assert!(matches!(
            StoredCredential::decode(&with(1, "-1")),
            Err(CredentialError::Iterations(_))
        ));
        assert_eq!(
            StoredCredential::decode(&with(1, "0")),
            Err(CredentialError::ZeroIterations)
        );
        assert_eq!(
            StoredCredential::decode(&with(2, "")),
            Err(CredentialError::EmptySalt)
        );
        assert!(matches!(
            StoredCredential::decode(&with(2, "not base64!")),
            Err(CredentialError::Base64 { field: "salt", .. })
        ));
        assert!(matches!(
            StoredCredential::decode(&with(3, "c2FsdA")),
            Err(CredentialError::Base64 {
                field: "stored key",
                ..
            })
        ));
        // A SHA-1-sized key under the SHA-256 scheme.
        assert_eq!(
            StoredCredential::decode(&with(4, &BASE64.encode([0u8; 20]))),
            Err(CredentialError::KeyLength {
                field: "server key",
                expected: 32,
                found: 20
            })
        );
    }

    #[test]
    fn new_credentials_use_default_iterations_and_fresh_salts() {
        let a = Credentials::new("pencil");
        let b = Credentials::new("pencil");
        assert_eq!(a.sha1.iterations, DEFAULT_ITERATIONS);
        assert_eq!(a.sha256.iterations, DEFAULT_ITERATIONS);
        assert_eq!(a.sha256.salt.len(), SALT_LEN);
        assert_ne!(a.sha256.salt, b.sha256.salt);
        assert_ne!(a.sha1.salt, a.sha256.salt);
        assert_ne!(a.sha256.stored_key, b.sha256.stored_key);
        assert_eq!(a.get(ScramHash::Sha1), &a.sha1);
        assert_eq!(a.get(ScramHash::Sha256).stored_key.len(), 32);
    }

    #[test]
    fn verify_password_accepts_only_the_password() {
        let creds = Credentials::with_iterations("pencil", 16);
        assert!(verify_password(&creds.sha1, "pencil"));
        assert!(creds.verify_password("pencil"));
        assert!(!creds.verify_password("Pencil"));
        assert!(!creds.verify_password(""));
        assert!(!verify_password(&creds.sha1, "pencil "));
    }

    #[test]
    fn check_password_of_unknown_user_is_false() {
        let creds = Credentials::with_iterations("pencil", 16);
        assert!(check_password(Some(&creds), "pencil"));
        assert!(!check_password(Some(&creds), "pen"));
        assert!(!check_password(None, "pencil"));
        // The dummy is made from the empty password; it must not let that through either.
        assert!(!check_password(None, ""));
    }

    #[test]
    fn passwords_are_saslprepped_before_derivation() {
        // "I\u{00AD}X" (soft hyphen, mapped to nothing) and "\u{2168}" (ROMAN NUMERAL NINE,
        // NFKC "IX") prepare to the same string as "IX".
        let creds = Credentials::with_iterations("IX", 16);
        assert!(creds.verify_password("I\u{00AD}X"));
        assert!(creds.verify_password("\u{2168}"));
        let salt = b"salt".to_vec();
        let plain = StoredCredential::derive(ScramHash::Sha256, "IX", &salt, 16);
        let fancy = StoredCredential::derive(ScramHash::Sha256, "\u{2168}", &salt, 16);
        assert_eq!(plain, fancy);
    }

    #[test]
    fn zero_iterations_are_stored_as_one() {
        let cred = StoredCredential::derive(ScramHash::Sha1, "p", b"s", 0);
        assert_eq!(cred.iterations, 1);
        assert_eq!(
            cred,
            StoredCredential::derive(ScramHash::Sha1, "p", b"s", 1)
        );
    }

    #[test]
    fn debug_hides_keys() {
        let cred = StoredCredential::derive(ScramHash::Sha1, "p", b"s", 1);
        let text = format!("{cred:?}");
        assert!(!text.contains("stored_key"), "{text}");
        assert!(text.contains("iterations: 1"), "{text}");
    }
}
