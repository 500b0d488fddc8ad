//! A minimal SCRAM and PLAIN client, compiled for this module's unit tests only, so the
//! server side can be driven through whole exchanges. It trusts its input and unwraps.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::credential::ScramHash;
use super::crypto;
use super::scram_message::encode_saslname;

/// The PLAIN message `[authzid] NUL authcid NUL password`.
pub(super) fn plain_message(authzid: Option<&str>, authcid: &str, password: &str) -> Vec<u8> {
    format!("{}\0{authcid}\0{password}", authzid.unwrap_or_default()).into_bytes()
}

pub(super) struct ScramClient {
    hash: ScramHash,
    password: String,
    gs2_flag: String,
    /// Channel-binding data sent after the GS2 header in `c=`.
    binding_data: Vec<u8>,
    authzid: Option<String>,
    client_first_bare: String,
    client_nonce: String,
    /// Replaces the `r=` of the client-final message while still signing it correctly.
    final_nonce: Option<String>,
    expected_server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    pub(super) fn new(
        hash: ScramHash,
        username: &str,
        authzid: Option<&str>,
        password: &str,
        client_nonce: &str,
    ) -> Self {
        let username = stringprep::saslprep(username).unwrap().into_owned();
        Self {
            hash,
            password: password.to_owned(),
            gs2_flag: "n".to_owned(),
            binding_data: Vec::new(),
            authzid: authzid.map(str::to_owned),
            client_first_bare: format!("n={},r={client_nonce}", encode_saslname(&username)),
            client_nonce: client_nonce.to_owned(),
            final_nonce: None,
            expected_server_signature: None,
        }
    }

    /// Sends the GS2 flag `y` ("I could bind, I believe you cannot") instead of `n`.
    pub(super) fn set_gs2_flag(&mut self, flag: &'static str) {
        flag.clone_into(&mut self.gs2_flag);
    }

    /// Binds with `p=<name>`, sending `data` as the channel-binding data.
    pub(super) fn set_channel_binding(&mut self, name: &str, data: &[u8]) {
        self.gs2_flag = format!("p={name}");
        self.binding_data = data.to_vec();
    }

    /// Makes the client-final message carry `nonce`, with a proof valid for it.
    pub(super) fn set_final_nonce(&mut self, nonce: &str) {
        self.final_nonce = Some(nonce.to_owned());
    }

    fn gs2_header(&self) -> String {
        let authzid = self
            .authzid
            .as_deref()
            .map(|a| format!("a={}", encode_saslname(a)));
        format!("{},{},", self.gs2_flag, authzid.unwrap_or_default())
    }

    pub(super) fn client_first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2_header(), self.client_first_bare).into_bytes()
    }

    pub(super) fn client_final(&mut self, server_first: &[u8]) -> Vec<u8> {
        let server_first = std::str::from_utf8(server_first).unwrap();
        let mut nonce = "";
        let mut salt = Vec::new();
        let mut iterations = 0;
        for attribute in server_first.split(',') {
            let (name, value) = attribute.split_once('=').unwrap();
            match name {
                "r" => nonce = value,
                "s" => salt = BASE64.decode(value).unwrap(),
                "i" => iterations = value.parse().unwrap(),
                _ => {}
            }
        }
        assert!(
            nonce.starts_with(&self.client_nonce),
            "server changed the client nonce"
        );
        let nonce = self.final_nonce.as_deref().unwrap_or(nonce);

        let password = crypto::normalize_password(&self.password);
        let salted = crypto::salted_password(self.hash, password.as_bytes(), &salt, iterations);
        let client_key = crypto::hmac(self.hash, &salted, b"Client Key");
        let stored_key = crypto::hash(self.hash, &client_key);
        let server_key = crypto::hmac(self.hash, &salted, b"Server Key");

        let mut binding = self.gs2_header().into_bytes();
        binding.extend_from_slice(&self.binding_data);
        let without_proof = format!("c={},r={nonce}", BASE64.encode(binding));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = crypto::hmac(self.hash, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        self.expected_server_signature = Some(crypto::hmac(
            self.hash,
            &server_key,
            auth_message.as_bytes(),
        ));
        format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes()
    }

    pub(super) fn verify_server_final(&self, server_final: &[u8]) -> bool {
        let Some(expected) = &self.expected_server_signature else {
            return false;
        };
        let text = std::str::from_utf8(server_final).unwrap();
        text.strip_prefix("v=")
            .map(|v| BASE64.decode(v).unwrap())
            .as_ref()
            == Some(expected)
    }
}
