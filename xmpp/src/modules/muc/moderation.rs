//! XEP-0425 message moderation: a moderator asks the room to retract a
//! message by its archive id; the archived copy becomes a tombstone (who
//! retracted it, when and why, the sender's from and occupant id kept, the
//! content gone) and every occupant is told. Version 1 is the XEP's
//! current form; version 0 (`apply-to` in `urn:xmpp:fasten:0`) is what
//! older clients send, answered in kind: both forms go in each notice.

use starling_core::jid::FullJid;
use starling_core::xml::{Element, ns};

use super::OCCUPANT_ID;
use super::archive::SID;
use super::room::{Out, Room};
use crate::server::Server;
use crate::stanza::{Condition, StanzaError};
use crate::storage::ArchiveQuery;
use crate::util::time::{now_ms, xep0082};

pub(super) const MODERATE: &str = "urn:xmpp:message-moderate:1";
pub(super) const MODERATE_0: &str = "urn:xmpp:message-moderate:0";
const RETRACT: &str = "urn:xmpp:message-retract:1";
const RETRACT_0: &str = "urn:xmpp:message-retract:0";
const FASTEN: &str = "urn:xmpp:fasten:0";

/// A retraction request: the archive id and the moderator's reason.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Request {
    pub id: String,
    pub reason: Option<String>,
}

/// Reads an iq payload: `Ok(None)` when it is no moderation request.
pub(super) fn parse(payload: &Element) -> Result<Option<Request>, StanzaError> {
    let (id, moderate, retract_ns) = if payload.is("moderate", MODERATE) {
        (payload.attr("id"), payload, RETRACT)
    } else if payload.is("apply-to", FASTEN) {
        match payload.child("moderate", MODERATE_0) {
            Some(moderate) => (payload.attr("id"), moderate, RETRACT_0),
            None => return Ok(None),
        }
    } else {
        return Ok(None);
    };
    let id = id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| bad_request("The request names no message id"))?;
    if moderate.child("retract", retract_ns).is_none() {
        return Err(StanzaError::new(Condition::FeatureNotImplemented)
            .with_text("Moderation here means retracting a message"));
    }
    let reason = moderate
        .children()
        .find(|c| c.name() == "reason")
        .map(Element::text)
        .filter(|text| !text.is_empty());
    Ok(Some(Request {
        id: id.to_owned(),
        reason,
    }))
}

fn bad_request(text: &str) -> StanzaError {
    StanzaError::new(Condition::BadRequest).with_text(text)
}

/// Carries out a request by `from`: the stanzas telling the occupants.
pub(super) async fn retract(
    server: &Server,
    room: &mut Room,
    from: &FullJid,
    request: &Request,
) -> Result<Vec<Out>, StanzaError> {
    let (nick, occupant_id) = room.moderator(from)?;
    if !room.config.logging {
        return Err(StanzaError::new(Condition::ItemNotFound)
            .with_text("This room keeps no archive to retract from"));
    }
    let query = ArchiveQuery {
        ids: vec![request.id.clone()],
        max: 1,
        ..ArchiveQuery::default()
    };
    let owner = room.jid.to_string();
    let original = server
        .store
        .query_archive(&owner, &query)
        .await
        .map_err(failed)?
        .and_then(|page| page.messages.into_iter().next())
        .ok_or_else(|| {
            StanzaError::new(Condition::ItemNotFound)
                .with_text("The room's archive holds no message with that id")
        })?;
    let original = crate::stream::parse_element(original.stanza.as_bytes()).map_err(|_| {
        tracing::error!(room = %room.jid, id = request.id, "an archived room message is unreadable");
        StanzaError::new(Condition::InternalServerError)
    })?;
    let by = room.occupant_jid(&nick);
    let stamp = xep0082(now_ms());
    let reason = request.reason.as_deref();
    let tombstone = tombstone(&original, &by, &occupant_id, &stamp, reason);
    let xml = String::from_utf8_lossy(&tombstone.to_bytes()).into_owned();
    let found = server
        .store
        .replace_archived_message(&owner, &request.id, &xml)
        .await
        .map_err(failed)?;
    if !found {
        // Expired between the read and the write.
        return Err(StanzaError::new(Condition::ItemNotFound)
            .with_text("The room's archive holds no message with that id"));
    }
    let notice = notice(room, &request.id, &by, &occupant_id, reason);
    Ok(room.retract(&request.id, &tombstone, &notice))
}

fn failed(error: crate::storage::StorageError) -> StanzaError {
    tracing::error!(%error, "a room archive access for a retraction failed");
    StanzaError::new(Condition::InternalServerError)
        .with_text("The room's archive could not be changed; try again")
}

/// Who retracted, in version 1's form.
fn moderated_by(by: &str, occupant_id: &str) -> Element {
    Element::new("moderated", MODERATE)
        .with_attr("by", by)
        .with_child(Element::new("occupant-id", OCCUPANT_ID).with_attr("id", occupant_id))
}

/// The archived message as it stays: its sender, type and ids, and the
/// retraction in both versions' forms; body and every other payload gone.
fn tombstone(
    original: &Element,
    by: &str,
    occupant_id: &str,
    stamp: &str,
    reason: Option<&str>,
) -> Element {
    let mut kept = Element::new("message", ns::CLIENT);
    for attr in ["from", "type", "id"] {
        if let Some(value) = original.attr(attr) {
            kept.set_attr(attr, value);
        }
    }
    let mut retracted = Element::new("retracted", RETRACT)
        .with_attr("stamp", stamp)
        .with_child(moderated_by(by, occupant_id));
    let mut legacy = Element::new("moderated", MODERATE_0)
        .with_attr("by", by)
        .with_attr("stamp", stamp)
        .with_child(Element::new("retracted", RETRACT_0).with_attr("stamp", stamp));
    if let Some(reason) = reason {
        retracted.push_child(Element::new("reason", RETRACT).with_text(reason));
        legacy.push_child(Element::new("reason", MODERATE_0).with_text(reason));
    }
    kept.push_child(retracted);
    kept.push_child(legacy);
    for child in original
        .children()
        .filter(|c| c.is("occupant-id", OCCUPANT_ID) || c.is("stanza-id", SID))
    {
        kept.push_child(child.clone());
    }
    kept
}

/// The message every occupant gets: from the room, naming the retracted
/// message in both versions' forms.
fn notice(room: &Room, id: &str, by: &str, occupant_id: &str, reason: Option<&str>) -> Element {
    let mut retract = Element::new("retract", RETRACT)
        .with_attr("id", id)
        .with_child(moderated_by(by, occupant_id));
    let mut legacy = Element::new("moderated", MODERATE_0)
        .with_attr("by", by)
        .with_child(Element::new("retract", RETRACT_0));
    if let Some(reason) = reason {
        retract.push_child(Element::new("reason", RETRACT).with_text(reason));
        legacy.push_child(Element::new("reason", MODERATE_0).with_text(reason));
    }
    Element::new("message", ns::CLIENT)
        .with_attr("from", room.jid.as_str())
        .with_attr("type", "groupchat")
        .with_attr("id", super::archive::new_id())
        .with_child(retract)
        .with_child(
            Element::new("apply-to", FASTEN)
                .with_attr("id", id)
                .with_child(legacy),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::parse_element;

    fn xml(s: &str) -> Element {
        parse_element(s.as_bytes()).unwrap()
    }

    #[test]
    fn both_versions_of_the_request_are_read() {
        let v1 = xml("<moderate xmlns='urn:xmpp:message-moderate:1' id='s1'>\
             <retract xmlns='urn:xmpp:message-retract:1'/><reason>spam</reason></moderate>");
        assert_eq!(
            parse(&v1).unwrap(),
            Some(Request {
                id: "s1".into(),
                reason: Some("spam".into())
            })
        );
        let v0 = xml("<apply-to xmlns='urn:xmpp:fasten:0' id='s2'>\
             <moderate xmlns='urn:xmpp:message-moderate:0'>\
             <retract xmlns='urn:xmpp:message-retract:0'/></moderate></apply-to>");
        assert_eq!(
            parse(&v0).unwrap(),
            Some(Request {
                id: "s2".into(),
                reason: None
            })
        );
        let no_id = xml("<moderate xmlns='urn:xmpp:message-moderate:1'>\
             <retract xmlns='urn:xmpp:message-retract:1'/></moderate>");
        assert_eq!(parse(&no_id).unwrap_err().condition, Condition::BadRequest);
        let no_retract = xml("<moderate xmlns='urn:xmpp:message-moderate:1' id='s1'/>");
        assert_eq!(
            parse(&no_retract).unwrap_err().condition,
            Condition::FeatureNotImplemented
        );
        assert_eq!(
            parse(&xml("<query xmlns='jabber:iq:version'/>")).unwrap(),
            None
        );
    }

    #[test]
    fn a_tombstone_keeps_the_sender_and_ids_and_drops_the_content() {
        let original = xml(
            "<message xmlns='jabber:client' from='r@c/bob' type='groupchat' id='m1'>\
             <body>rude</body><x xmlns='urn:example'/>\
             <occupant-id xmlns='urn:xmpp:occupant-id:0' id='o-bob'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' id='s1' by='r@c'/></message>",
        );
        let kept = tombstone(
            &original,
            "r@c/alice",
            "o-alice",
            "2026-01-01T00:00:00Z",
            Some("no"),
        );
        assert_eq!(kept.attr("from"), Some("r@c/bob"));
        assert!(kept.child("body", ns::CLIENT).is_none());
        assert!(kept.child("x", "urn:example").is_none());
        let retracted = kept.child("retracted", RETRACT).unwrap();
        assert_eq!(
            retracted.child("moderated", MODERATE).unwrap().attr("by"),
            Some("r@c/alice")
        );
        assert_eq!(retracted.child("reason", RETRACT).unwrap().text(), "no");
        assert!(kept.child("moderated", MODERATE_0).is_some());
        assert_eq!(
            kept.child("occupant-id", OCCUPANT_ID).unwrap().attr("id"),
            Some("o-bob")
        );
        assert_eq!(kept.child("stanza-id", SID).unwrap().attr("id"), Some("s1"));
    }
}
