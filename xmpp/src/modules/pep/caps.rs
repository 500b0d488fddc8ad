//! XEP-0115 entity capabilities, as far as PEP needs them: which nodes a
//! client wants notifications of (`<node>+notify` features).
//!
//! A client's presence carries a hash of its features. A hash is looked up
//! in this member's cache, then in the store (shared by the cluster); only
//! when both miss is the client asked (disco#info). An answer whose hash
//! checks out is stored for everyone; one that does not is used for that
//! session only, so a client cannot poison the cache for others.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use sha1::{Digest, Sha1};
use starling_core::cache::{CacheKind, Lru};
use starling_core::jid::FullJid;
use starling_core::xml::{Element, ns};

const NOTIFY_SUFFIX: &str = "+notify";

/// The ids of the server's disco#info questions to clients start so.
pub(super) const ID_PREFIX: &str = "caps-";

/// The nodes a client wants notifications of.
pub(super) type Interest = Arc<HashSet<String>>;

/// What a presence says about the client's capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Advertised {
    pub(super) hash: String,
    pub(super) node: String,
    pub(super) ver: String,
}

impl Advertised {
    /// The `<c/>` element of an available presence, if it has a usable one.
    pub(super) fn of(presence: &Element) -> Option<Advertised> {
        let c = presence.child("c", ns::CAPS)?;
        let (hash, node, ver) = (c.attr("hash")?, c.attr("node")?, c.attr("ver")?);
        if ver.is_empty() || ver.len() > 256 || node.len() > 1024 {
            return None;
        }
        Some(Advertised {
            hash: hash.to_owned(),
            node: node.to_owned(),
            ver: ver.to_owned(),
        })
    }

    /// The cache key: the algorithm and the hash.
    pub(super) fn key(&self) -> String {
        format!("{} {}", self.hash, self.ver)
    }
}

/// The features a disco#info answer lists.
pub(super) fn features(info: &Element) -> Vec<String> {
    info.children()
        .filter(|child| child.is("feature", ns::DISCO_INFO))
        .filter_map(|feature| feature.attr("var").map(str::to_owned))
        .collect()
}

/// The `+notify` nodes among features.
pub(super) fn interest<'a>(features: impl IntoIterator<Item = &'a str>) -> Interest {
    Arc::new(
        features
            .into_iter()
            .filter_map(|var| var.strip_suffix(NOTIFY_SUFFIX))
            .filter(|node| !node.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

/// XEP-0115 5.1: the string whose SHA-1 is the `ver` of a disco#info answer.
pub(super) fn verification_string(info: &Element) -> String {
    let mut identities: Vec<String> = info
        .children()
        .filter(|child| child.is("identity", ns::DISCO_INFO))
        .map(|identity| {
            let attr = |name| identity.attr(name).unwrap_or_default();
            let lang = identity
                .attrs()
                .find(|(name, _)| *name == "xml:lang" || *name == "lang")
                .map(|(_, value)| value)
                .unwrap_or_default();
            format!(
                "{}/{}/{}/{}",
                attr("category"),
                attr("type"),
                lang,
                attr("name")
            )
        })
        .collect();
    identities.sort();
    let mut features = features(info);
    features.sort();
    let mut forms: Vec<(String, Vec<(String, Vec<String>)>)> = info
        .children()
        .filter(|child| child.is("x", ns::XDATA) && child.attr("type") == Some("result"))
        .filter_map(|form| {
            let mut form_type = None;
            let mut fields = Vec::new();
            for field in form.children().filter(|c| c.is("field", ns::XDATA)) {
                let var = field.attr("var").unwrap_or_default().to_owned();
                let mut values: Vec<String> = field
                    .children()
                    .filter(|c| c.is("value", ns::XDATA))
                    .map(Element::text)
                    .collect();
                if var == "FORM_TYPE" {
                    form_type = values.pop();
                } else {
                    values.sort();
                    fields.push((var, values));
                }
            }
            fields.sort();
            form_type.map(|form_type| (form_type, fields))
        })
        .collect();
    forms.sort();
    let mut s = String::new();
    for identity in identities {
        s.push_str(&identity);
        s.push('<');
    }
    for feature in features {
        s.push_str(&feature);
        s.push('<');
    }
    for (form_type, fields) in forms {
        s.push_str(&form_type);
        s.push('<');
        for (var, values) in fields {
            s.push_str(&var);
            s.push('<');
            for value in values {
                s.push_str(&value);
                s.push('<');
            }
        }
    }
    s
}

/// Whether `info` is what `advertised` claims (only SHA-1 is checked; other
/// algorithms are never trusted for the shared cache).
pub(super) fn verifies(advertised: &Advertised, info: &Element) -> bool {
    if advertised.hash != "sha-1" {
        return false;
    }
    let digest = Sha1::digest(verification_string(info).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest) == advertised.ver
}

/// A disco#info question sent to a client, waiting for its answer.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) jid: FullJid,
    pub(super) advertised: Advertised,
}

/// The member's capabilities cache and the questions in flight.
pub(super) struct Caps {
    pub(super) cache: Arc<Lru<String, Interest>>,
    pending: std::sync::Mutex<HashMap<String, Pending>>,
    next_id: AtomicU64,
}

/// Questions in flight at most; a client that never answers leaves one
/// behind until its session ends, and beyond this the oldest are dropped.
const MAX_PENDING: usize = 10_000;

impl Caps {
    pub(super) fn new(entries: usize) -> Caps {
        Caps {
            cache: Arc::new(Lru::new("caps", CacheKind::Local, entries)),
            pending: std::sync::Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    /// Remembers a question and returns its iq id.
    pub(super) fn ask(&self, pending: Pending) -> String {
        let id = format!(
            "{ID_PREFIX}{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_PENDING {
            map.clear();
        }
        map.insert(id.clone(), pending);
        id
    }

    /// The question an answer with this id and sender belongs to.
    pub(super) fn answered(&self, id: &str, from: &FullJid) -> Option<Pending> {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(id) {
            Some(pending) if pending.jid == *from => map.remove(id),
            _ => None,
        }
    }

    /// Forgets the questions to a session that ended.
    pub(super) fn forget(&self, jid: &FullJid) {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, pending| pending.jid != *jid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of XEP-0115 5.3 (complex generation), which includes an
    /// extended-information form.
    fn complex() -> Element {
        let identity = |lang: &str, name: &str| {
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "client")
                .with_attr("type", "pc")
                .with_attr("xml:lang", lang)
                .with_attr("name", name)
        };
        let feature = |var: &str| Element::new("feature", ns::DISCO_INFO).with_attr("var", var);
        let field = |var: &str, values: &[&str]| {
            let mut field = Element::new("field", ns::XDATA).with_attr("var", var);
            for value in values {
                field.push_child(Element::new("value", ns::XDATA).with_text(*value));
            }
            field
        };
        Element::new("query", ns::DISCO_INFO)
            .with_child(identity("en", "Psi 0.11"))
            .with_child(identity("el", "Ψ 0.11"))
            .with_child(feature("http://jabber.org/protocol/caps"))
            .with_child(feature("http://jabber.org/protocol/disco#info"))
            .with_child(feature("http://jabber.org/protocol/disco#items"))
            .with_child(feature("http://jabber.org/protocol/muc"))
            .with_child(
                Element::new("x", ns::XDATA)
                    .with_attr("type", "result")
                    .with_child(field("FORM_TYPE", &["urn:xmpp:dataforms:softwareinfo"]))
                    .with_child(field("ip_version", &["ipv4", "ipv6"]))
                    .with_child(field("os", &["Mac"]))
                    .with_child(field("os_version", &["10.5.1"]))
                    .with_child(field("software", &["Psi"]))
                    .with_child(field("software_version", &["0.11"])),
            )
    }

    #[test]
    fn the_xep_example_hash_verifies() {
        let advertised = Advertised {
            hash: "sha-1".into(),
            node: "http://psi-im.org".into(),
            ver: "q07IKJEyjvHSyhy//CH0CxmKi8w=".into(),
        };
        assert!(verifies(&advertised, &complex()));
        let forged = Advertised {
            ver: "AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
            ..advertised.clone()
        };
        assert!(!verifies(&forged, &complex()));
        let other_algorithm = Advertised {
            hash: "md5".into(),
            ..advertised
        };
        assert!(!verifies(&other_algorithm, &complex()));
    }

    #[test]
    fn interest_is_the_notify_features() {
        let interest = interest([
            "urn:xmpp:avatar:metadata+notify",
            "eu.siacs.conversations.axolotl.devicelist+notify",
            "urn:xmpp:avatar:metadata",
            "+notify",
        ]);
        let mut nodes: Vec<&str> = interest.iter().map(String::as_str).collect();
        nodes.sort();
        assert_eq!(
            nodes,
            [
                "eu.siacs.conversations.axolotl.devicelist",
                "urn:xmpp:avatar:metadata"
            ]
        );
    }

    #[test]
    fn answers_are_matched_to_their_question_and_sender() {
        let caps = Caps::new(10);
        let alice = FullJid::new("alice@example.com/phone").unwrap();
        let mallory = FullJid::new("mallory@example.com/x").unwrap();
        let pending = Pending {
            jid: alice.clone(),
            advertised: Advertised {
                hash: "sha-1".into(),
                node: "n".into(),
                ver: "v".into(),
            },
        };
        let id = caps.ask(pending);
        assert!(caps.answered(&id, &mallory).is_none());
        assert!(caps.answered(&id, &alice).is_some());
        assert!(caps.answered(&id, &alice).is_none());
    }
}
