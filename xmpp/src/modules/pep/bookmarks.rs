//! XEP-0411: the bookmarks a client keeps in private XML storage (XEP-0048
//! `storage:bookmarks`) and the XEP-0402 PEP bookmarks of another client are
//! one list. The PEP node `urn:xmpp:bookmarks:1` is where the list lives:
//! a private-storage get of `storage:bookmarks` is answered from it (plus
//! what else the client stored there, such as URLs), and a set is turned
//! into publishes and retracts on it before the private module stores the
//! request. So a Gajim-era client and Conversations see the same rooms.

use std::collections::BTreeMap;
use std::sync::Arc;

use starling_core::jid::{BareJid, Jid};
use starling_core::xml::Element;

use super::Pep;
use super::iq::{publish_as_owner, retract_as_owner};
use crate::modules::Flow;
use crate::pubsub::PubSubError;
use crate::pubsub::config::MAX_ITEMS_LIMIT;
use crate::pubsub::form::Submitted;
use crate::router::bounce;
use crate::router::iq::reply;
use crate::server::Server;
use crate::session::LocalSession;
use crate::stanza::{Condition, IqType, Stanza};

pub(super) const BOOKMARKS: &str = "urn:xmpp:bookmarks:1";
/// Advertised on the account: the conversion is done (XEP-0402 3.2).
pub(super) const COMPAT: &str = "urn:xmpp:bookmarks:1#compat";
const LEGACY: &str = "storage:bookmarks";
const PRIVATE: &str = "jabber:iq:private";
const PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";

/// A client's private-storage request about its own bookmarks: the iq type,
/// and the `<storage xmlns='storage:bookmarks'/>` it carries.
pub(super) fn legacy_request<'s>(
    stanza: &'s Stanza,
    session: &LocalSession,
) -> Option<(IqType, &'s Element)> {
    let query = stanza
        .payload()
        .filter(|query| query.is("query", PRIVATE))?;
    let own = match &stanza.to {
        None => true,
        Some(to) => *to == Jid::from(session.jid.to_bare()),
    };
    let storage = query.children().find(|child| child.is("storage", LEGACY))?;
    own.then_some((stanza.iq_type()?, storage))
}

/// Answers a get from the PEP node; `Continue` when the stanza goes on to
/// the private module (a set, after the PEP node follows it).
pub(super) async fn handle(
    pep: &Pep,
    server: &Server,
    session: &Arc<LocalSession>,
    stanza: Stanza,
    ty: IqType,
) -> Flow {
    let owner = session.jid.to_bare();
    let result = match ty {
        IqType::Get => {
            let answer = legacy_view(server, &owner).await;
            match answer {
                Ok(storage) => {
                    let query = Element::new("query", PRIVATE).with_child(storage);
                    return Flow::Done(reply(server, &stanza, Some(query)).await);
                }
                Err(error) => Err(error),
            }
        }
        IqType::Set => {
            let Some((_, storage)) = legacy_request(&stanza, session) else {
                return Flow::Continue(stanza);
            };
            follow_legacy(pep, server, &owner, storage).await
        }
        _ => return Flow::Continue(stanza),
    };
    match result {
        Ok(()) => Flow::Continue(stanza),
        Err(error) => Flow::Done(bounce(server, &stanza, error.to_stanza_error()).await),
    }
}

/// The legacy `<storage/>`: the PEP bookmarks as conferences, then what
/// else the client stored there (URLs), in the order it stored them.
async fn legacy_view(server: &Server, owner: &BareJid) -> Result<Element, PubSubError> {
    let username = owner
        .node()
        .map(|node| node.to_string())
        .unwrap_or_default();
    let failed = |error: crate::storage::StorageError| PubSubError::storage(&error);
    // Oldest first, as a list reads.
    let items = server
        .store
        .pep_items(&username, BOOKMARKS, MAX_ITEMS_LIMIT, &[])
        .await
        .map_err(failed)?;
    let mut storage = Element::new("storage", LEGACY);
    for item in items {
        match crate::stream::parse_element(item.payload.as_bytes()) {
            Ok(payload) => {
                if let Some(conference) = to_legacy(&item.item_id, &payload) {
                    storage.push_child(conference);
                }
            }
            Err(error) => {
                tracing::error!(%owner, id = item.item_id, %error, "a stored bookmark is unreadable")
            }
        }
    }
    let stored = server
        .store
        .get_private(&username, LEGACY)
        .await
        .map_err(failed)?;
    if let Some(xml) = stored {
        if let Ok(element) = crate::stream::parse_element(xml.as_bytes()) {
            for other in element.children().filter(|c| !c.is("conference", LEGACY)) {
                storage.push_child(other.clone());
            }
        }
    }
    Ok(storage)
}

/// Makes the PEP node hold exactly the legacy list's conferences.
async fn follow_legacy(
    pep: &Pep,
    server: &Server,
    owner: &BareJid,
    storage: &Element,
) -> Result<(), PubSubError> {
    let username = owner
        .node()
        .map(|node| node.to_string())
        .unwrap_or_default();
    let mut wanted: BTreeMap<String, Element> = BTreeMap::new();
    for conference in storage.children().filter(|c| c.is("conference", LEGACY)) {
        let (jid, payload) = from_legacy(conference)
            .map_err(|why| PubSubError::new(Condition::BadRequest).with_text(why))?;
        wanted.insert(jid, payload);
    }
    let existing = server
        .store
        .pep_items(&username, BOOKMARKS, MAX_ITEMS_LIMIT, &[])
        .await
        .map_err(|error| PubSubError::storage(&error))?;
    let mut current: BTreeMap<String, Element> = BTreeMap::new();
    for item in existing {
        if let Ok(payload) = crate::stream::parse_element(item.payload.as_bytes()) {
            current.insert(item.item_id, payload);
        }
    }
    for (jid, mut payload) in wanted.clone() {
        let before = current.get(&jid);
        // XEP-0402 extensions have no legacy form: they stay.
        if let Some(extensions) = before.and_then(|b| b.child("extensions", BOOKMARKS)) {
            payload.push_child(extensions.clone());
        }
        if before.map(|b| b.to_bytes()) != Some(payload.to_bytes()) {
            publish_as_owner(pep, server, owner, BOOKMARKS, &jid, payload, node_options()).await?;
        }
    }
    for jid in current.keys().filter(|jid| !wanted.contains_key(*jid)) {
        retract_as_owner(pep, server, owner, BOOKMARKS, jid).await?;
    }
    Ok(())
}

/// XEP-0402 2.2: the node's required configuration.
fn node_options() -> Submitted {
    let mut form = Submitted {
        form_type: Some(PUBLISH_OPTIONS.to_owned()),
        ..Submitted::default()
    };
    for (var, value) in [
        ("pubsub#persist_items", "true"),
        ("pubsub#max_items", "max"),
        ("pubsub#send_last_published_item", "never"),
        ("pubsub#access_model", "whitelist"),
    ] {
        form.fields.insert(var.to_owned(), vec![value.to_owned()]);
    }
    form
}

/// A XEP-0048 `<conference/>` as a XEP-0402 item: its id (the room's bare
/// JID) and payload.
fn from_legacy(conference: &Element) -> Result<(String, Element), String> {
    let jid = conference
        .attr("jid")
        .ok_or("A bookmarked <conference/> needs a 'jid'")?;
    let room = Jid::new(jid)
        .map_err(|_| format!("'{jid}' in a bookmark is not a JID"))?
        .to_bare();
    let mut payload = Element::new("conference", BOOKMARKS);
    if let Some(name) = conference.attr("name") {
        payload.set_attr("name", name);
    }
    if matches!(conference.attr("autojoin"), Some("true" | "1")) {
        payload.set_attr("autojoin", "true");
    }
    for field in ["nick", "password"] {
        if let Some(value) = conference.child(field, LEGACY) {
            payload.push_child(Element::new(field, BOOKMARKS).with_text(value.text()));
        }
    }
    Ok((room.to_string(), payload))
}

/// A XEP-0402 item as a XEP-0048 `<conference/>`; `None` for a payload
/// that is not a conference.
fn to_legacy(item_id: &str, payload: &Element) -> Option<Element> {
    if !payload.is("conference", BOOKMARKS) {
        return None;
    }
    let mut conference = Element::new("conference", LEGACY).with_attr("jid", item_id);
    if let Some(name) = payload.attr("name") {
        conference.set_attr("name", name);
    }
    let autojoin = matches!(payload.attr("autojoin"), Some("true" | "1"));
    conference.set_attr("autojoin", if autojoin { "true" } else { "false" });
    for field in ["nick", "password"] {
        if let Some(value) = payload.child(field, BOOKMARKS) {
            conference.push_child(Element::new(field, LEGACY).with_text(value.text()));
        }
    }
    Some(conference)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Element {
        crate::stream::parse_element(xml.as_bytes()).unwrap()
    }

    #[test]
    fn a_conference_survives_the_round_trip() {
        let legacy = parse(
            "<conference xmlns='storage:bookmarks' jid='Room@conference.x' name='The room' autojoin='1'>\
               <nick>al</nick><password>secret</password></conference>",
        );
        let (id, payload) = from_legacy(&legacy).unwrap();
        assert_eq!(id, "room@conference.x");
        assert_eq!(payload.attr("autojoin"), Some("true"));
        assert_eq!(payload.child("nick", BOOKMARKS).unwrap().text(), "al");
        let back = to_legacy(&id, &payload).unwrap();
        assert_eq!(back.attr("jid"), Some("room@conference.x"));
        assert_eq!(back.attr("name"), Some("The room"));
        assert_eq!(back.attr("autojoin"), Some("true"));
        assert_eq!(back.child("password", LEGACY).unwrap().text(), "secret");
    }

    #[test]
    fn bad_bookmarks_and_foreign_payloads() {
        let no_jid = parse("<conference xmlns='storage:bookmarks' name='x'/>");
        assert!(from_legacy(&no_jid).unwrap_err().contains("needs a 'jid'"));
        let bad_jid = parse("<conference xmlns='storage:bookmarks' jid='@@'/>");
        assert!(from_legacy(&bad_jid).unwrap_err().contains("not a JID"));
        let other = parse("<note xmlns='urn:example'/>");
        assert_eq!(to_legacy("x@y", &other), None);
    }
}
