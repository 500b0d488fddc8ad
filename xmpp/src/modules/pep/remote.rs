//! Contacts on other servers: which of their resources are available and
//! which PEP nodes each wants (XEP-0163 4.3 with XEP-0115), so that their
//! notifications go to the resources that asked for them, as local
//! contacts' do.
//!
//! Learnt on the member holding a local user's session, from the presence
//! delivered to it (the `deliver` hook): an available presence from a
//! remote full JID records the resource and its capabilities hash; an
//! unavailable one forgets it. A hash this member's cache or the store
//! knows gives the wanted nodes at once; otherwise the contact's client is
//! asked (disco#info) from the full JID of the local session that received
//! the presence, so the answer is routed back to that session's member,
//! where the `deliver` hook takes it. A verified answer is stored for the
//! cluster like a local client's.
//!
//! A member publishes for its users' sessions, so the member where the
//! owner publishes is one where the owner has a session and has seen the
//! contacts' presence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use starling_core::jid::{BareJid, FullJid};
use starling_core::xml::{Element, ns};

use super::caps::{self, Advertised, Caps, Interest};
use crate::server::Server;
use crate::stanza::Stanza;

/// Remote resources tracked per member at most; beyond, new ones are not
/// tracked (they get no PEP notifications until some leave).
const MAX_RESOURCES: usize = 100_000;

/// One available resource of a remote contact.
#[derive(Debug, Clone)]
struct Resource {
    /// The capabilities hash its presence named (`Advertised::key`).
    key: Option<String>,
    /// The nodes it wants, once known.
    interest: Option<Interest>,
}

#[derive(Default)]
pub(super) struct Remote {
    contacts: Mutex<HashMap<BareJid, HashMap<FullJid, Resource>>>,
}

/// What the `deliver` hook should do next about a remote presence.
pub(super) enum Learnt {
    /// Nothing more: known, unchanged, or gone.
    Nothing,
    /// The hash is new here: find out what it means.
    Resolve(Advertised),
}

impl Remote {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<BareJid, HashMap<FullJid, Resource>>> {
        self.contacts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn len(map: &HashMap<BareJid, HashMap<FullJid, Resource>>) -> usize {
        map.values().map(HashMap::len).sum()
    }

    /// A presence from a remote full JID was delivered to a session here.
    pub(super) fn observe(&self, caps: &Caps, from: &FullJid, presence: &Element) -> Learnt {
        let bare = from.to_bare();
        let mut contacts = self.lock();
        match presence.attr("type") {
            None => {}
            Some("unavailable") => {
                if let Some(resources) = contacts.get_mut(&bare) {
                    resources.remove(from);
                    if resources.is_empty() {
                        contacts.remove(&bare);
                    }
                }
                return Learnt::Nothing;
            }
            // Subscriptions, probes, errors: not about availability.
            Some(_) => return Learnt::Nothing,
        }
        let advertised = Advertised::of(presence);
        let key = advertised.as_ref().map(Advertised::key);
        let known = contacts
            .get(&bare)
            .and_then(|resources| resources.get(from));
        if known.is_some_and(|resource| resource.key == key) {
            return Learnt::Nothing;
        }
        if known.is_none() && Self::len(&contacts) >= MAX_RESOURCES {
            tracing::warn!(contact = %from, "too many remote resources tracked; this one gets no PEP notifications");
            return Learnt::Nothing;
        }
        let interest = match &key {
            // No capabilities: it wants no notifications.
            None => Some(caps::interest([])),
            Some(key) => caps.cache.get(key),
        };
        let resolve = interest.is_none();
        contacts
            .entry(bare)
            .or_default()
            .insert(from.clone(), Resource { key, interest });
        match advertised {
            Some(advertised) if resolve => Learnt::Resolve(advertised),
            _ => Learnt::Nothing,
        }
    }

    /// Records what a resource wants, if it is still available with the
    /// same hash; returns the nodes it did not want before.
    pub(super) fn learnt(&self, from: &FullJid, key: &str, interest: Interest) -> Vec<String> {
        let mut contacts = self.lock();
        let Some(resource) = contacts
            .get_mut(&from.to_bare())
            .and_then(|resources| resources.get_mut(from))
        else {
            return Vec::new();
        };
        if resource.key.as_deref() != Some(key) {
            return Vec::new();
        }
        let new = interest
            .iter()
            .filter(|node| {
                !resource
                    .interest
                    .as_ref()
                    .is_some_and(|old| old.contains(*node))
            })
            .cloned()
            .collect();
        resource.interest = Some(interest);
        new
    }

    /// The available resources of `contact` that want `node`.
    pub(super) fn wanting(&self, contact: &BareJid, node: &str) -> Vec<FullJid> {
        self.lock()
            .get(contact)
            .map(|resources| {
                resources
                    .iter()
                    .filter(|(_, resource)| {
                        resource
                            .interest
                            .as_ref()
                            .is_some_and(|wanted| wanted.contains(node))
                    })
                    .map(|(jid, _)| jid.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Resources tracked on this member.
    pub(super) fn tracked(&self) -> usize {
        Self::len(&self.lock())
    }
}

/// Finds out what a remote resource's capabilities hash means: from the
/// store, else by asking its client from `asker` (a local session that
/// received its presence). Runs as its own task.
pub(super) async fn resolve(
    server: Arc<Server>,
    caps: Arc<Caps>,
    remote: Arc<Remote>,
    contact: FullJid,
    asker: FullJid,
    advertised: Advertised,
) {
    let key = advertised.key();
    match server.store.caps_features(&key).await {
        Ok(Some(features)) => {
            let interest = caps::interest(features.lines());
            caps.cache.insert(key.clone(), interest.clone());
            let new = remote.learnt(&contact, &key, interest);
            super::notify::last_items_to(&server, &asker.to_bare(), &contact, &new).await;
            return;
        }
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(%error, "reading the capabilities cache failed; asking the contact")
        }
    }
    let query_node = format!("{}#{}", advertised.node, advertised.ver);
    let id = caps.ask(caps::Pending {
        jid: contact.clone(),
        advertised,
    });
    let question = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("id", id)
        .with_attr("from", asker.as_str())
        .with_attr("to", contact.as_str())
        .with_child(Element::new("query", ns::DISCO_INFO).with_attr("node", query_node));
    match Stanza::from_server(question) {
        Ok(stanza) => {
            crate::router::route(&server, stanza).await;
        }
        Err(error) => tracing::error!(%error, "a capabilities question that does not parse"),
    }
}

/// The contact's client answered: a verified answer is kept for the
/// cluster; either way the resource gets what it wants, and the newest
/// items of `asker`'s nodes it did not want before. Returns whether the
/// hash verified.
pub(super) async fn answered(
    server: Arc<Server>,
    caps: Arc<Caps>,
    remote: Arc<Remote>,
    asker: FullJid,
    pending: caps::Pending,
    answer: Element,
) -> bool {
    let info = answer
        .child("query", ns::DISCO_INFO)
        .filter(|_| answer.attr("type") == Some("result"));
    let Some(info) = info else {
        // An error: the contact will not say; it gets no notifications.
        return false;
    };
    let features = caps::features(info);
    let interest = caps::interest(features.iter().map(String::as_str));
    let key = pending.advertised.key();
    let verified = caps::verifies(&pending.advertised, info);
    if verified {
        if let Err(error) = server
            .store
            .store_caps_features(&key, &features.join("\n"))
            .await
        {
            tracing::warn!(%error, "storing a capabilities hash failed; members will ask again");
        }
        caps.cache.insert(key.clone(), interest.clone());
    }
    let new = remote.learnt(&pending.jid, &key, interest);
    super::notify::last_items_to(&server, &asker.to_bare(), &pending.jid, &new).await;
    verified
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(ty: Option<&str>, ver: Option<&str>) -> Element {
        let mut presence = Element::new("presence", ns::CLIENT);
        if let Some(ty) = ty {
            presence.set_attr("type", ty);
        }
        if let Some(ver) = ver {
            presence.push_child(
                Element::new("c", ns::CAPS)
                    .with_attr("hash", "sha-1")
                    .with_attr("node", "https://client.example")
                    .with_attr("ver", ver),
            );
        }
        presence
    }

    #[test]
    fn resources_follow_presence_and_want_what_their_capabilities_say() {
        let caps = Caps::new(10);
        let remote = Remote::default();
        let desk = FullJid::new("pat@remote.example/desk").unwrap();
        let phone = FullJid::new("pat@remote.example/phone").unwrap();
        let pat = desk.to_bare();

        // An unknown hash is to be resolved; meanwhile nothing is wanted.
        let learnt = remote.observe(&caps, &desk, &presence(None, Some("v1")));
        assert!(matches!(learnt, Learnt::Resolve(ref a) if a.ver == "v1"));
        assert!(remote.wanting(&pat, "tune").is_empty());
        // The same presence again asks nothing more.
        let again = remote.observe(&caps, &desk, &presence(None, Some("v1")));
        assert!(matches!(again, Learnt::Nothing));
        // The answer: the new nodes are reported once.
        let new = remote.learnt(&desk, "sha-1 v1", caps::interest(["tune+notify"]));
        assert_eq!(new, ["tune"]);
        assert!(
            remote
                .learnt(&desk, "sha-1 v1", caps::interest(["tune+notify"]))
                .is_empty()
        );
        assert_eq!(remote.wanting(&pat, "tune"), [desk.clone()]);
        assert!(remote.wanting(&pat, "mood").is_empty());
        // An answer about a hash the resource no longer has is ignored.
        assert!(
            remote
                .learnt(&desk, "sha-1 old", caps::interest(["mood+notify"]))
                .is_empty()
        );
        assert!(remote.wanting(&pat, "mood").is_empty());

        // A hash the cache knows needs no question.
        caps.cache
            .insert("sha-1 v2".to_owned(), caps::interest(["mood+notify"]));
        let known = remote.observe(&caps, &phone, &presence(None, Some("v2")));
        assert!(matches!(known, Learnt::Nothing));
        assert_eq!(remote.wanting(&pat, "mood"), [phone.clone()]);
        assert_eq!(remote.tracked(), 2);

        // Subscriptions and probes change nothing; unavailable forgets.
        remote.observe(&caps, &desk, &presence(Some("subscribed"), None));
        assert_eq!(remote.wanting(&pat, "tune"), [desk.clone()]);
        remote.observe(&caps, &desk, &presence(Some("unavailable"), None));
        assert!(remote.wanting(&pat, "tune").is_empty());
        assert_eq!(remote.tracked(), 1);
        // No capabilities: available, wanting nothing.
        remote.observe(&caps, &phone, &presence(None, None));
        assert!(remote.wanting(&pat, "mood").is_empty());
        assert_eq!(remote.tracked(), 1);
    }
}
