//! XEP-0115 entity capabilities of the load client: the features it has, the
//! verification string's hash it advertises in presence, and its answer when a server
//! asks what that hash stands for (disco#info with `node='NODE#VER'`).

use base64::Engine as _;
use sha1::{Digest, Sha1};
use starling_core::xml::{Element, ns};

/// The `node` of our `<c/>`: who made the client.
pub const CAPS_NODE: &str = "https://starling.example/load";

/// The client's one identity: category, type and name (no language).
const IDENTITY: (&str, &str, &str) = ("client", "pc", "Starling load");

/// What a client advertises: its features and their XEP-0115 hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCaps {
    features: Vec<String>,
    ver: String,
}

impl ClientCaps {
    /// A client that wants notifications (`NODE+notify`) of `notify` nodes.
    pub fn wanting(notify: &[&str]) -> ClientCaps {
        let mut features = vec![ns::DISCO_INFO.to_owned(), ns::CAPS.to_owned()];
        features.extend(notify.iter().map(|node| format!("{node}+notify")));
        features.sort();
        features.dedup();
        let ver = verification_hash(IDENTITY, &features);
        ClientCaps { features, ver }
    }

    pub fn ver(&self) -> &str {
        &self.ver
    }

    /// Available presence carrying the capabilities.
    pub fn presence(&self) -> Element {
        Element::new("presence", ns::CLIENT).with_child(
            Element::new("c", ns::CAPS)
                .with_attr("hash", "sha-1")
                .with_attr("node", CAPS_NODE)
                .with_attr("ver", self.ver.as_str()),
        )
    }

    /// The answer to a disco#info `question` (any `iq type='get'` with a disco#info
    /// query); `None` for anything else. The query's `node` is echoed, as XEP-0115 5.2
    /// asks; a server may ask from its domain or from each contact's bare JID.
    pub fn answer(&self, question: &Element) -> Option<Element> {
        if !(question.is("iq", ns::CLIENT) && question.attr("type") == Some("get")) {
            return None;
        }
        let query = question.child("query", ns::DISCO_INFO)?;
        let mut answer_query = Element::new("query", ns::DISCO_INFO);
        if let Some(node) = query.attr("node") {
            answer_query.set_attr("node", node);
        }
        let (category, ty, name) = IDENTITY;
        answer_query.push_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", category)
                .with_attr("type", ty)
                .with_attr("name", name),
        );
        for feature in &self.features {
            answer_query
                .push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", feature));
        }
        let mut answer = Element::new("iq", ns::CLIENT)
            .with_attr("type", "result")
            .with_child(answer_query);
        if let Some(id) = question.attr("id") {
            answer.set_attr("id", id);
        }
        if let Some(from) = question.attr("from") {
            answer.set_attr("to", from);
        }
        Some(answer)
    }
}

/// XEP-0115 5.1 for one identity, no extended forms: `category/type/lang/name<` then each
/// feature (sorted) followed by `<`, SHA-1, base64.
fn verification_hash(identity: (&str, &str, &str), sorted_features: &[String]) -> String {
    let (category, ty, name) = identity;
    let mut s = format!("{category}/{ty}//{name}<");
    for feature in sorted_features {
        s.push_str(feature);
        s.push('<');
    }
    base64::engine::general_purpose::STANDARD.encode(Sha1::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_the_xep_0115_example() {
        // XEP-0115 5.2: Exodus 0.9.1.
        let mut features: Vec<String> = [
            "http://jabber.org/protocol/caps",
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items",
            "http://jabber.org/protocol/muc",
        ]
        .map(str::to_owned)
        .to_vec();
        features.sort();
        assert_eq!(
            verification_hash(("client", "pc", "Exodus 0.9.1"), &features),
            "QgayPKawpkPSDYmwT/WM94uAlu0="
        );
    }

    #[test]
    fn features_are_sorted_and_want_each_node() {
        let caps = ClientCaps::wanting(&["urn:xmpp:avatar:metadata", "a.devicelist"]);
        assert_eq!(
            caps.features,
            vec![
                "a.devicelist+notify",
                "http://jabber.org/protocol/caps",
                "http://jabber.org/protocol/disco#info",
                "urn:xmpp:avatar:metadata+notify",
            ]
        );
        // The order the nodes are named in does not change the hash.
        let same = ClientCaps::wanting(&["a.devicelist", "urn:xmpp:avatar:metadata"]);
        assert_eq!(caps.ver(), same.ver());
        assert_ne!(caps.ver(), ClientCaps::wanting(&[]).ver());
    }

    #[test]
    fn presence_carries_the_hash() {
        let caps = ClientCaps::wanting(&["n"]);
        let presence = caps.presence();
        let c = presence.child("c", ns::CAPS).unwrap();
        assert_eq!(c.attr("hash"), Some("sha-1"));
        assert_eq!(c.attr("node"), Some(CAPS_NODE));
        assert_eq!(c.attr("ver"), Some(caps.ver()));
        assert_eq!(presence.attr("type"), None);
    }

    #[test]
    fn answers_a_disco_question_with_what_the_hash_says() {
        let caps = ClientCaps::wanting(&["n"]);
        let node = format!("{CAPS_NODE}#{}", caps.ver());
        let question = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", "caps1")
            .with_attr("from", "friend@localhost")
            .with_child(Element::new("query", ns::DISCO_INFO).with_attr("node", node.as_str()));
        let answer = caps.answer(&question).unwrap();
        assert_eq!(answer.attr("type"), Some("result"));
        assert_eq!(answer.attr("id"), Some("caps1"));
        assert_eq!(answer.attr("to"), Some("friend@localhost"));
        let query = answer.child("query", ns::DISCO_INFO).unwrap();
        assert_eq!(query.attr("node"), Some(node.as_str()));
        // Hashing what the answer lists gives the advertised hash back.
        let identity = query.child("identity", ns::DISCO_INFO).unwrap();
        let mut features: Vec<String> = query
            .children()
            .filter(|child| child.name() == "feature")
            .map(|feature| feature.attr("var").unwrap().to_owned())
            .collect();
        features.sort();
        let ver = verification_hash(
            (
                identity.attr("category").unwrap(),
                identity.attr("type").unwrap(),
                identity.attr("name").unwrap(),
            ),
            &features,
        );
        assert_eq!(ver, caps.ver());
    }

    #[test]
    fn ignores_what_is_not_a_disco_info_get() {
        let caps = ClientCaps::wanting(&["n"]);
        let result = Element::new("iq", ns::CLIENT)
            .with_attr("type", "result")
            .with_child(Element::new("query", ns::DISCO_INFO));
        assert!(caps.answer(&result).is_none());
        let ping = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_child(Element::new("ping", ns::PING));
        assert!(caps.answer(&ping).is_none());
    }
}
