//! XEP-0220 server dialback with XEP-0185 keys.
//!
//! key = HEX(HMAC-SHA256(SHA256(secret), receiving ' ' originating ' ' stream id))
//!
//! Every member of a cluster derives the same secret (`[s2s] dialback_secret`,
//! else from `[cluster] secret`), so a key one member sent is verified by
//! whichever member the peer's verification reaches.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use starling_core::config::Config;
use starling_core::xml::{Element, ns};
use subtle::ConstantTimeEq;

pub(crate) const NS: &str = "jabber:server:dialback";
/// The stream feature that says a peer speaks dialback (XEP-0220 2.4).
pub(crate) const NS_FEATURE: &str = "urn:xmpp:features:dialback";

pub(crate) struct DialbackKeys {
    /// SHA256(secret): the HMAC key.
    key: [u8; 32],
}

impl DialbackKeys {
    pub(crate) fn from_config(config: &Config) -> DialbackKeys {
        let secret = if !config.s2s.dialback_secret.is_empty() {
            config.s2s.dialback_secret.clone()
        } else if !config.cluster.secret.is_empty() {
            // Not the cluster secret itself: a key leaked from here must not
            // be a proof towards the cluster's own handshake.
            format!("starling s2s dialback\0{}", config.cluster.secret)
        } else {
            use rand::RngExt;
            let bytes: [u8; 32] = rand::rng().random();
            hex(&bytes)
        };
        DialbackKeys {
            key: Sha256::digest(secret.as_bytes()).into(),
        }
    }

    pub(crate) fn key(&self, receiving: &str, originating: &str, stream_id: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(format!("{receiving} {originating} {stream_id}").as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    pub(crate) fn verify(
        &self,
        receiving: &str,
        originating: &str,
        stream_id: &str,
        key: &str,
    ) -> bool {
        let expected = self.key(receiving, originating, stream_id);
        expected.as_bytes().ct_eq(key.trim().as_bytes()).into()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `<db:result from to>key</db:result>` (XEP-0220 2.1.1).
pub(crate) fn result_request(from: &str, to: &str, key: &str) -> Element {
    Element::new("result", NS)
        .with_attr("from", from)
        .with_attr("to", to)
        .with_text(key)
}

/// `<db:result from to type/>`: the receiving server's verdict.
pub(crate) fn result_answer(from: &str, to: &str, valid: bool) -> Element {
    Element::new("result", NS)
        .with_attr("from", from)
        .with_attr("to", to)
        .with_attr("type", verdict(valid))
}

/// `<db:verify from to id>key</db:verify>` (XEP-0220 2.1.2).
pub(crate) fn verify_request(from: &str, to: &str, id: &str, key: &str) -> Element {
    Element::new("verify", NS)
        .with_attr("from", from)
        .with_attr("to", to)
        .with_attr("id", id)
        .with_text(key)
}

/// `<db:verify from to id type/>`: the authoritative server's verdict.
pub(crate) fn verify_answer(from: &str, to: &str, id: &str, valid: bool) -> Element {
    Element::new("verify", NS)
        .with_attr("from", from)
        .with_attr("to", to)
        .with_attr("id", id)
        .with_attr("type", verdict(valid))
}

fn verdict(valid: bool) -> &'static str {
    if valid { "valid" } else { "invalid" }
}

/// Writes a dialback element with the `db:` prefix the stream header
/// declares (`<db:result/>`, `<db:verify/>`), as XEP-0220 shows them.
/// The same element with `xmlns='jabber:server:dialback'` on it means the
/// same in XML, but ejabberd 23.01 matches the prefixed name and ignores
/// it otherwise, so its dialback never completes.
pub(crate) fn write(element: &Element, out: &mut Vec<u8>) {
    crate::stream::write_prefixed(element, "db", ns::SERVER, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(element: &Element) -> String {
        let mut out = Vec::new();
        write(element, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn dialback_elements_are_written_with_the_db_prefix() {
        assert_eq!(
            written(&result_request("a.test", "b.test", "k&1")),
            "<db:result from=\"a.test\" to=\"b.test\">k&amp;1</db:result>"
        );
        assert_eq!(
            written(&result_answer("b.test", "a.test", true)),
            "<db:result from=\"b.test\" to=\"a.test\" type=\"valid\"/>"
        );
        let verify = written(&verify_request("b.test", "a.test", "id1", "key"));
        assert!(verify.starts_with("<db:verify "), "{verify}");
        assert!(verify.ends_with(">key</db:verify>"), "{verify}");
        assert!(!verify.contains("xmlns"), "{verify}");
    }

    fn keys(secret: &str) -> DialbackKeys {
        let mut config = Config::defaults();
        config.s2s.dialback_secret = secret.into();
        DialbackKeys::from_config(&config)
    }

    #[test]
    fn keys_are_hex_hmacs_bound_to_every_input() {
        let ours = keys("s3cr3tf0rd14lb4ck");
        let key = ours.key("example.net", "example.com", "D60000229F");
        assert_eq!(key.len(), 64);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(key, ours.key("example.net", "example.com", "D60000229F"));
        assert_ne!(key, ours.key("example.com", "example.net", "D60000229F"));
        assert_ne!(
            key,
            keys("another secret").key("example.net", "example.com", "D60000229F")
        );
    }

    #[test]
    fn members_with_one_secret_verify_each_others_keys() {
        let mut config = Config::defaults();
        config.cluster.secret = "cluster".into();
        let a = DialbackKeys::from_config(&config);
        let b = DialbackKeys::from_config(&config);
        let key = a.key("remote.example", "here.example", "abc");
        assert!(b.verify("remote.example", "here.example", "abc", &key));
        assert!(!b.verify("remote.example", "here.example", "abd", &key));
        assert!(!b.verify("other.example", "here.example", "abc", &key));
    }
}
