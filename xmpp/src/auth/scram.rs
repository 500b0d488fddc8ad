//! Server side of SCRAM-SHA-1 (RFC 5802) and SCRAM-SHA-256 (RFC 7677), with or without
//! channel binding (the -PLUS variants), as a state machine that does no I/O and never sees
//! the store:
//!
//! ```text
//!  client-first ──► ScramServer::parse_client_first ──► ClientFirst { username, authzid }
//!                                                          │  connection looks the user up
//!                                                          ▼
//!  server-first ◄── ScramServer::new(client_first, Option<StoredCredential>)
//!  client-final ──► ScramServer::finish ──► ServerFinal { username, server-final } | SaslError
//! ```
//!
//! An unknown user gets a challenge of the same shape as a real one, with a salt that is
//! stable per username (so asking twice does not give it away), and fails only at `finish`
//! with `not-authorized`, after the same work as a wrong password.
//!
//! Channel binding (RFC 5802 section 6): a -PLUS exchange must name, with `p=`, a type the
//! stream offers, and `c=` must carry the GS2 header followed by that type's data from the
//! server's own side of the TLS connection; anything else fails like a wrong password. A
//! client sending `y` where -PLUS was offered is refused at once: someone removed the offer.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::channel_binding::ChannelBindings;
use super::credential::{DEFAULT_ITERATIONS, SALT_LEN, ScramHash, StoredCredential};
use super::crypto;
use super::error::{Malformed, SaslError};
use super::identity::prepare_username;
use super::scram_message::{Gs2Flag, parse_client_final, parse_client_first};

/// Random bytes in a server nonce (24 base64 characters).
const SERVER_NONCE_LEN: usize = 18;

/// A checked `client-first-message`, waiting for the user's credential to be looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    hash: ScramHash,
    /// What `c=` must decode to: the GS2 header, then the channel-binding data if any.
    expected_binding: Vec<u8>,
    authzid: Option<String>,
    username: String,
    client_nonce: String,
    bare: String,
}

impl ClientFirst {
    /// The hash of the mechanism the client chose.
    pub fn hash(&self) -> ScramHash {
        self.hash
    }

    /// The username to look up: saslname-decoded and SASLprep'd.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The authorization identity from the GS2 header, if the client gave one.
    pub fn authzid(&self) -> Option<&str> {
        self.authzid.as_deref()
    }
}

/// The outcome of a successful exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFinal {
    /// The authenticated username, as [`ClientFirst::username`] gave it.
    pub username: String,
    /// The authorization identity the client asked for, still to be checked with
    /// [`super::identity::authorize`].
    pub authzid: Option<String>,
    /// `v=<ServerSignature>`, sent as the `<success/>` payload.
    pub server_final_message: Vec<u8>,
}

/// A SCRAM exchange after the server-first message, waiting for the client-final message.
#[derive(Debug)]
pub struct ScramServer {
    hash: ScramHash,
    expected_binding: Vec<u8>,
    authzid: Option<String>,
    username: String,
    /// Client nonce followed by server nonce: what `r=` must repeat.
    nonce: String,
    /// `client-first-message-bare "," server-first-message ","`: the AuthMessage up to the
    /// client-final part.
    auth_message_prefix: String,
    credential: StoredCredential,
    /// False when `credential` is a stand-in for an unknown user.
    known_user: bool,
}

impl ScramServer {
    /// Checks the client-first message of a SCRAM mechanism using `hash`. Syntax errors
    /// are `malformed-request`; a username SASLprep refuses is `not-authorized`. Neither
    /// depends on whether the account exists.
    /// The stream has no channel binding to offer (no -PLUS mechanism was advertised).
    pub fn parse_client_first(hash: ScramHash, message: &[u8]) -> Result<ClientFirst, SaslError> {
        Self::parse_client_first_bound(hash, false, &ChannelBindings::default(), message)
    }

    /// [`ScramServer::parse_client_first`] on a stream offering `bindings` (empty when
    /// -PLUS was not advertised); `plus` when the client chose a -PLUS mechanism. Besides
    /// the syntax errors: a -PLUS exchange without `p=`, or `p=` without -PLUS, is
    /// `malformed-request`, as is a type not offered; `y` where -PLUS was offered is
    /// [`SaslError::BindingDowngrade`].
    pub fn parse_client_first_bound(
        hash: ScramHash,
        plus: bool,
        bindings: &ChannelBindings,
        message: &[u8],
    ) -> Result<ClientFirst, SaslError> {
        let parts = parse_client_first(message)?;
        let mut expected_binding = parts.gs2_header.as_bytes().to_vec();
        match (parts.flag, plus) {
            (Gs2Flag::Binding(name), true) => {
                let data = bindings
                    .data(name)
                    .ok_or_else(|| Malformed::UnsupportedBindingType(name.to_owned()))?;
                expected_binding.extend_from_slice(data);
            }
            (Gs2Flag::Binding(_), false) => return Err(Malformed::BindingWithoutPlus.into()),
            (Gs2Flag::None | Gs2Flag::ClientOnly, true) => {
                return Err(Malformed::PlusWithoutBinding.into());
            }
            (Gs2Flag::ClientOnly, false) if !bindings.is_empty() => {
                return Err(SaslError::BindingDowngrade);
            }
            (Gs2Flag::None | Gs2Flag::ClientOnly, false) => {}
        }
        Ok(ClientFirst {
            hash,
            expected_binding,
            authzid: parts.authzid,
            username: prepare_username(&parts.username)?,
            client_nonce: parts.client_nonce.to_owned(),
            bare: parts.bare.to_owned(),
        })
    }

    /// Starts the exchange with a fresh random server nonce. `credential` is the user's
    /// credential for `client_first.hash()`, or `None` when there is no such user (a
    /// credential for another hash counts as none). Returns the server-first message.
    pub fn new(client_first: ClientFirst, credential: Option<StoredCredential>) -> (Self, Vec<u8>) {
        let mut random = [0u8; SERVER_NONCE_LEN];
        rand::fill(&mut random[..]);
        Self::with_nonce(client_first, credential, &BASE64.encode(random))
    }

    /// [`ScramServer::new`] with a chosen server nonce, so that tests can replay published
    /// exchanges. `server_nonce` must be printable ASCII without `,`.
    pub(crate) fn with_nonce(
        client_first: ClientFirst,
        credential: Option<StoredCredential>,
        server_nonce: &str,
    ) -> (Self, Vec<u8>) {
        debug_assert!(super::scram_message::is_nonce(server_nonce));
        let ClientFirst {
            hash,
            expected_binding,
            authzid,
            username,
            client_nonce,
            bare,
        } = client_first;
        let (credential, known_user) = match credential {
            Some(credential) if credential.hash == hash => (credential, true),
            _ => (unknown_user_credential(hash, &username), false),
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        let auth_message_prefix = format!("{bare},{server_first},");
        let server = Self {
            hash,
            expected_binding,
            authzid,
            username,
            nonce,
            auth_message_prefix,
            credential,
            known_user,
        };
        (server, server_first.into_bytes())
    }

    /// Checks the client-final message: the channel-binding echo, the nonce and the proof.
    /// Returns the server-final message on success; syntax errors are `malformed-request`,
    /// everything else (including an unknown user) is `not-authorized`.
    pub fn finish(self, client_final: &[u8]) -> Result<ServerFinal, SaslError> {
        let parts = parse_client_final(client_final)?;
        let expected = self.hash.output_len();
        if parts.proof.len() != expected {
            return Err(Malformed::ProofLength {
                expected,
                found: parts.proof.len(),
            }
            .into());
        }
        // c= carries the GS2 header (and the binding data): a different header means it was
        // tampered with (a "y" turned into "n" to hide a downgrade), different data that the
        // client's TLS connection is not ours (a man in the middle).
        let binding_ok = crypto::constant_time_eq(&parts.channel_binding, &self.expected_binding);
        if !binding_ok || parts.nonce != self.nonce {
            return Err(SaslError::NotAuthorized);
        }

        let auth_message = format!("{}{}", self.auth_message_prefix, parts.without_proof);
        let stored_key = &self.credential.stored_key;
        let client_signature = crypto::hmac(self.hash, stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = parts
            .proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let proof_ok = crypto::constant_time_eq(&crypto::hash(self.hash, &client_key), stored_key);
        let server_signature = crypto::hmac(
            self.hash,
            &self.credential.server_key,
            auth_message.as_bytes(),
        );
        // Both results are computed before either is looked at, so an unknown user costs the
        // same as a wrong password.
        if !(proof_ok & self.known_user) {
            return Err(SaslError::NotAuthorized);
        }
        Ok(ServerFinal {
            username: self.username,
            authzid: self.authzid,
            server_final_message: format!("v={}", BASE64.encode(server_signature)).into_bytes(),
        })
    }
}

/// A stand-in credential for a user who does not exist. The salt is a keyed hash of the
/// username, so it is the same on every attempt within this process yet unguessable; the
/// keys are random, so no proof can match them.
fn unknown_user_credential(hash: ScramHash, username: &str) -> StoredCredential {
    let mut input = Vec::with_capacity(username.len() + 16);
    input.extend_from_slice(match hash {
        ScramHash::Sha1 => b"scram-sha-1\0",
        ScramHash::Sha256 => b"scram-sha-256\0",
    });
    input.extend_from_slice(username.as_bytes());
    let mut salt = crypto::hmac(ScramHash::Sha256, unknown_user_secret(), &input);
    salt.truncate(SALT_LEN);
    let random_key = || {
        let mut key = vec![0; hash.output_len()];
        rand::fill(&mut key[..]);
        key
    };
    StoredCredential {
        hash,
        salt,
        iterations: DEFAULT_ITERATIONS,
        stored_key: random_key(),
        server_key: random_key(),
    }
}

fn unknown_user_secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut secret = [0; 32];
        rand::fill(&mut secret[..]);
        secret
    })
}

#[cfg(test)]
mod tests {
    use super::super::client::ScramClient;
    use super::super::credential::Credentials;
    use super::*;

    fn salt(b64: &str) -> Vec<u8> {
        BASE64.decode(b64).unwrap()
    }

    fn start(
        hash: ScramHash,
        client_first: &[u8],
        credential: Option<StoredCredential>,
    ) -> (ScramServer, Vec<u8>) {
        let first = ScramServer::parse_client_first(hash, client_first).unwrap();
        ScramServer::new(first, credential)
    }

    #[test]
    fn rfc5802_section5_example() {
        let credential =
            StoredCredential::derive(ScramHash::Sha1, "pencil", &salt("QSXCR+Q6sek8bf92"), 4096);
        let mut client = ScramClient::new(
            ScramHash::Sha1,
            "user",
            None,
            "pencil",
            "fyko+d2lbbFgONRv9qkxdawL",
        );
        assert_eq!(
            client.client_first(),
            b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
        );

        let first =
            ScramServer::parse_client_first(ScramHash::Sha1, &client.client_first()).unwrap();
        assert_eq!(first.username(), "user");
        assert_eq!(first.authzid(), None);
        let (server, server_first) =
            ScramServer::with_nonce(first, Some(credential), "3rfcNHYJY1ZVvWVs7j");
        assert_eq!(
            String::from_utf8(server_first.clone()).unwrap(),
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
        );

        let client_final = client.client_final(&server_first);
        assert_eq!(
            String::from_utf8(client_final.clone()).unwrap(),
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        let done = server.finish(&client_final).unwrap();
        assert_eq!(done.server_final_message, b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=");
        assert_eq!(done.username, "user");
        assert_eq!(done.authzid, None);
        assert!(client.verify_server_final(&done.server_final_message));
    }

    #[test]
    fn rfc7677_section3_example() {
        let credential = StoredCredential::derive(
            ScramHash::Sha256,
            "pencil",
            &salt("W22ZaJ0SNY7soEsUEjb6gQ=="),
            4096,
        );
        let first =
            ScramServer::parse_client_first(ScramHash::Sha256, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
                .unwrap();
        let (server, server_first) =
            ScramServer::with_nonce(first, Some(credential), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(
            server_first,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,\
              i=4096"
        );
        let done = server
            .finish(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(
            done.server_final_message,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    /// Runs a whole exchange; returns the server's verdict.
    fn exchange(
        hash: ScramHash,
        credentials: Option<&Credentials>,
        username: &str,
        authzid: Option<&str>,
        password: &str,
    ) -> Result<ServerFinal, SaslError> {
        let mut client = ScramClient::new(hash, username, authzid, password, "clientnonce123");
        let first = ScramServer::parse_client_first(hash, &client.client_first())?;
        let credential = credentials.map(|c| c.get(hash).clone());
        let (server, server_first) = ScramServer::new(first, credential);
        let done = server.finish(&client.client_final(&server_first))?;
        assert!(client.verify_server_final(&done.server_final_message));
        Ok(done)
    }

    #[test]
    fn round_trip_both_hashes() {
        let creds = Credentials::with_iterations("correct horse", 64);
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            let done = exchange(hash, Some(&creds), "alice", None, "correct horse").unwrap();
            assert_eq!(done.username, "alice");
            let done = exchange(
                hash,
                Some(&creds),
                "alice",
                Some("alice@x"),
                "correct horse",
            )
            .unwrap();
            assert_eq!(done.authzid.as_deref(), Some("alice@x"));
        }
    }

    #[test]
    fn wrong_password_is_not_authorized() {
        let creds = Credentials::with_iterations("correct horse", 64);
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            let result = exchange(hash, Some(&creds), "alice", None, "battery staple");
            assert_eq!(result, Err(SaslError::NotAuthorized));
        }
    }

    #[test]
    fn credential_for_the_other_hash_counts_as_unknown() {
        let creds = Credentials::with_iterations("pw", 64);
        let mut client = ScramClient::new(ScramHash::Sha256, "alice", None, "pw", "abc");
        let first =
            ScramServer::parse_client_first(ScramHash::Sha256, &client.client_first()).unwrap();
        let (server, server_first) = ScramServer::new(first, Some(creds.sha1.clone()));
        let result = server.finish(&client.client_final(&server_first));
        assert_eq!(result, Err(SaslError::NotAuthorized));
    }

    /// `r=...,s=...,i=...` split into (nonce, decoded salt, iterations).
    fn server_first_fields(message: &[u8]) -> (String, Vec<u8>, String) {
        let text = String::from_utf8(message.to_vec()).unwrap();
        let fields: Vec<&str> = text.split(',').collect();
        assert_eq!(fields.len(), 3, "{text}");
        let nonce = fields[0].strip_prefix("r=").unwrap().to_owned();
        let salt = salt(fields[1].strip_prefix("s=").unwrap());
        let iterations = fields[2].strip_prefix("i=").unwrap().to_owned();
        (nonce, salt, iterations)
    }

    #[test]
    fn unknown_user_gets_a_plausible_stable_challenge_then_fails() {
        let creds = Credentials::new("pencil");
        let message = b"n,,n=ghost,r=abcdef";
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            let (_, known) = start(hash, message, Some(creds.get(hash).clone()));
            let (_, unknown) = start(hash, message, None);
            let (_, unknown_again) = start(hash, message, None);
            let (_, other) = start(hash, b"n,,n=ghost2,r=abcdef", None);
            let (known_nonce, known_salt, known_i) = server_first_fields(&known);
            let (nonce, salt, i) = server_first_fields(&unknown);
            let (nonce_again, salt_again, _) = server_first_fields(&unknown_again);
            let (_, other_salt, _) = server_first_fields(&other);

            assert_eq!(nonce.len(), known_nonce.len());
            assert_eq!(salt.len(), known_salt.len());
            assert_eq!(i, known_i);
            assert_eq!(salt, salt_again, "the same name gets the same salt");
            assert_ne!(nonce, nonce_again, "nonces are fresh");
            assert_ne!(salt, other_salt);
            assert_ne!(salt, known_salt);
        }
        for password in ["pencil", ""] {
            assert_eq!(
                exchange(ScramHash::Sha256, None, "ghost", None, password),
                Err(SaslError::NotAuthorized)
            );
        }
    }

    #[test]
    fn server_nonce_is_random_and_extends_the_client_nonce() {
        let creds = Credentials::with_iterations("pw", 16);
        let (_, a) = start(ScramHash::Sha1, b"n,,n=u,r=cn", Some(creds.sha1.clone()));
        let (_, b) = start(ScramHash::Sha1, b"n,,n=u,r=cn", Some(creds.sha1.clone()));
        let (a, b) = (server_first_fields(&a).0, server_first_fields(&b).0);
        assert!(a.starts_with("cn") && b.starts_with("cn"));
        assert_eq!(a.len(), 2 + 24);
        assert_ne!(a, b);
    }

    /// Drives a correct exchange up to the client-final message, then lets `tamper` edit it.
    fn tampered(tamper: impl Fn(&str) -> String) -> Result<ServerFinal, SaslError> {
        let creds = Credentials::with_iterations("pw", 16);
        let mut client = ScramClient::new(ScramHash::Sha256, "bob", None, "pw", "nonce");
        let first =
            ScramServer::parse_client_first(ScramHash::Sha256, &client.client_first()).unwrap();
        let (server, server_first) = ScramServer::new(first, Some(creds.sha256));
        let client_final = String::from_utf8(client.client_final(&server_first)).unwrap();
        server.finish(tamper(&client_final).as_bytes())
    }

    #[test]
    fn untampered_exchange_succeeds() {
        assert!(tampered(|m| m.to_owned()).is_ok());
    }

    #[test]
    fn tampered_nonce_is_not_authorized() {
        let result = tampered(|m| m.replacen(",r=nonce", ",r=nonceX", 1));
        assert_eq!(result, Err(SaslError::NotAuthorized));
    }

    #[test]
    fn wrong_nonce_is_refused_even_with_a_matching_proof() {
        let creds = Credentials::with_iterations("pw", 16);
        for nonce in ["nonce", "nonceX", "other"] {
            let mut client = ScramClient::new(ScramHash::Sha256, "bob", None, "pw", "nonce");
            client.set_final_nonce(nonce);
            let first =
                ScramServer::parse_client_first(ScramHash::Sha256, &client.client_first()).unwrap();
            let (server, server_first) = ScramServer::new(first, Some(creds.sha256.clone()));
            let result = server.finish(&client.client_final(&server_first));
            assert_eq!(result, Err(SaslError::NotAuthorized), "{nonce}");
        }
    }

    #[test]
    fn wrong_channel_binding_echo_is_not_authorized() {
        // An attacker rewrote the client's "y" flag to "n" on the way in (hiding a downgrade
        // from -PLUS): the client's proof is valid for what it sent, c=eSws ("y,,"), and only
        // the echo check can notice.
        let creds = Credentials::with_iterations("pw", 16);
        let mut client = ScramClient::new(ScramHash::Sha1, "bob", None, "pw", "abc");
        client.set_gs2_flag("y");
        let first = ScramServer::parse_client_first(ScramHash::Sha1, b"n,,n=bob,r=abc").unwrap();
        let (server, server_first) = ScramServer::new(first, Some(creds.sha1));
        let client_final = client.client_final(&server_first);
        assert!(client_final.starts_with(b"c=eSws,"));
        assert_eq!(server.finish(&client_final), Err(SaslError::NotAuthorized));

        // Channel-binding data appended to the echo.
        let result = tampered(|m| m.replacen("c=biws", "c=biwsAAAA", 1));
        assert_eq!(result, Err(SaslError::NotAuthorized));
    }

    #[test]
    fn tampered_proof_is_not_authorized() {
        let result = tampered(|m| {
            let (head, proof) = m.rsplit_once(",p=").unwrap();
            let mut bytes = BASE64.decode(proof).unwrap();
            bytes[0] ^= 1;
            format!("{head},p={}", BASE64.encode(bytes))
        });
        assert_eq!(result, Err(SaslError::NotAuthorized));
    }

    #[test]
    fn extension_added_to_client_final_breaks_the_proof() {
        // Extensions are part of the AuthMessage; inserting one invalidates the signature.
        let result = tampered(|m| m.replacen(",p=", ",x=1,p=", 1));
        assert_eq!(result, Err(SaslError::NotAuthorized));
    }

    #[test]
    fn malformed_client_final_messages() {
        let malformed = |m: fn(&str) -> String| match tampered(m) {
            Err(SaslError::MalformedRequest(reason)) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            malformed(|m| m.rsplit_once(',').unwrap().0.to_owned()),
            Malformed::MissingAttribute('p')
        );
        assert!(matches!(
            malformed(|m| format!("{m}!")),
            Malformed::Base64 { attribute: 'p', .. }
        ));
        assert_eq!(
            malformed(|m| format!("{},p=AAAA", m.rsplit_once(',').unwrap().0)),
            Malformed::ProofLength {
                expected: 32,
                found: 3
            }
        );
        assert_eq!(
            malformed(|m| m.replacen("c=biws,", "", 1)),
            Malformed::MissingAttribute('c')
        );
        assert_eq!(
            malformed(|_| String::new()),
            Malformed::MissingAttribute('p')
        );
    }

    #[test]
    fn malformed_client_first_messages() {
        let reason = |m: &[u8]| match ScramServer::parse_client_first(ScramHash::Sha256, m) {
            Err(SaslError::MalformedRequest(reason)) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reason(b"n,,m=x,n=user,r=abc"),
            Malformed::MandatoryExtension
        );
        assert_eq!(
            reason(b"p=tls-unique,,n=user,r=abc"),
            Malformed::BindingWithoutPlus
        );
        assert_eq!(reason(b"n,,n=user"), Malformed::MissingAttribute('r'));
        assert_eq!(reason(b"n,,r=abc"), Malformed::MissingAttribute('n'));
        assert_eq!(reason(b"n=user,r=abc"), Malformed::Gs2Header);
        assert_eq!(reason(b"n,,n=u=x,r=abc"), Malformed::Saslname);
        // A username SASLprep refuses fails like an unknown one.
        assert_eq!(
            ScramServer::parse_client_first(ScramHash::Sha1, b"n,,n=a\x07b,r=abc"),
            Err(SaslError::NotAuthorized)
        );
    }

    #[test]
    fn gs2_y_flag_is_accepted_and_echoed() {
        let creds = Credentials::with_iterations("pw", 16);
        let first = ScramServer::parse_client_first(ScramHash::Sha1, b"y,,n=bob,r=abc").unwrap();
        let mut client = ScramClient::new(ScramHash::Sha1, "bob", None, "pw", "abc");
        client.set_gs2_flag("y");
        let (server, server_first) = ScramServer::new(first, Some(creds.sha1));
        let client_final = client.client_final(&server_first);
        assert!(client_final.starts_with(b"c=eSws,"));
        assert!(server.finish(&client_final).is_ok());
    }

    #[test]
    fn plus_exchanges_bind_to_the_offered_data() {
        let creds = Credentials::with_iterations("pw", 16);
        let bindings = ChannelBindings::new(Some([9; 32]), Some(vec![5; 32]));
        for (name, data) in [("tls-exporter", [9; 32]), ("tls-server-end-point", [5; 32])] {
            // The right data succeeds; data from another TLS connection fails.
            for (sent, ok) in [(data, true), ([1; 32], false)] {
                let mut client = ScramClient::new(ScramHash::Sha256, "bob", None, "pw", "abc");
                client.set_channel_binding(name, &sent);
                let first = ScramServer::parse_client_first_bound(
                    ScramHash::Sha256,
                    true,
                    &bindings,
                    &client.client_first(),
                )
                .unwrap();
                let (server, server_first) = ScramServer::new(first, Some(creds.sha256.clone()));
                let verdict = server.finish(&client.client_final(&server_first));
                assert_eq!(verdict.is_ok(), ok, "{name} {sent:?}");
                if !ok {
                    assert_eq!(verdict, Err(SaslError::NotAuthorized));
                }
            }
        }
    }

    #[test]
    fn gs2_flags_must_match_the_mechanism_and_the_offer() {
        let offered = ChannelBindings::new(None, Some(vec![5; 32]));
        let none = ChannelBindings::default();
        let parse = |plus, bindings: &ChannelBindings, message: &[u8]| {
            ScramServer::parse_client_first_bound(ScramHash::Sha1, plus, bindings, message)
                .map(|_| ())
        };
        // A downgrade: -PLUS was offered, the client says it believes it was not.
        assert_eq!(
            parse(false, &offered, b"y,,n=bob,r=abc"),
            Err(SaslError::BindingDowngrade)
        );
        assert_eq!(parse(false, &none, b"y,,n=bob,r=abc"), Ok(()));
        assert_eq!(parse(false, &offered, b"n,,n=bob,r=abc"), Ok(()));
        assert_eq!(
            parse(true, &offered, b"n,,n=bob,r=abc"),
            Err(Malformed::PlusWithoutBinding.into())
        );
        assert_eq!(
            parse(true, &offered, b"p=tls-exporter,,n=bob,r=abc"),
            Err(Malformed::UnsupportedBindingType("tls-exporter".into()).into())
        );
        assert_eq!(
            parse(true, &offered, b"p=tls-unique,,n=bob,r=abc"),
            Err(Malformed::UnsupportedBindingType("tls-unique".into()).into())
        );
        assert_eq!(
            parse(false, &offered, b"p=tls-server-end-point,,n=bob,r=abc"),
            Err(Malformed::BindingWithoutPlus.into())
        );
        assert_eq!(
            parse(true, &offered, b"p=tls-server-end-point,,n=bob,r=abc"),
            Ok(())
        );
    }

    #[test]
    fn a_gs2_header_changed_between_messages_is_refused() {
        // The client said "n" in client-first but signs "y" in c=: the header was altered.
        let creds = Credentials::with_iterations("pw", 16);
        let first = ScramServer::parse_client_first(ScramHash::Sha1, b"n,,n=bob,r=abc").unwrap();
        let mut client = ScramClient::new(ScramHash::Sha1, "bob", None, "pw", "abc");
        client.set_gs2_flag("y");
        let (server, server_first) = ScramServer::new(first, Some(creds.sha1));
        assert_eq!(
            server.finish(&client.client_final(&server_first)),
            Err(SaslError::NotAuthorized)
        );
    }

    #[test]
    fn saslname_escaped_usernames_and_authzids() {
        let creds = Credentials::with_iterations("pw", 16);
        let mut client = ScramClient::new(ScramHash::Sha256, "a,b=c", Some("x=y,z"), "pw", "n1");
        assert!(
            client
                .client_first()
                .starts_with(b"n,a=x=3Dy=2Cz,n=a=2Cb=3Dc,r=")
        );
        let first =
            ScramServer::parse_client_first(ScramHash::Sha256, &client.client_first()).unwrap();
        assert_eq!(first.username(), "a,b=c");
        assert_eq!(first.authzid(), Some("x=y,z"));
        let (server, server_first) = ScramServer::new(first, Some(creds.sha256));
        let done = server.finish(&client.client_final(&server_first)).unwrap();
        assert_eq!(done.username, "a,b=c");
        assert_eq!(done.authzid.as_deref(), Some("x=y,z"));
    }

    #[test]
    fn non_ascii_password_is_saslprepped() {
        // The account was made with a composed "ü" and a soft hyphen (mapped to nothing);
        // a client typing a decomposed "u\u{308}" derives the same key after SASLprep.
        let creds = Credentials::with_iterations("gr\u{00FC}n\u{00AD}e", 64);
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            assert!(exchange(hash, Some(&creds), "u", None, "gru\u{0308}ne").is_ok());
            assert_eq!(
                exchange(hash, Some(&creds), "u", None, "grune"),
                Err(SaslError::NotAuthorized)
            );
        }
    }

    #[test]
    fn non_ascii_username_is_saslprepped() {
        let first = ScramServer::parse_client_first(
            ScramHash::Sha1,
            "n,,n=jo\u{00AD}se\u{0301},r=a".as_bytes(),
        )
        .unwrap();
        assert_eq!(first.username(), "jos\u{00E9}");
    }
}
