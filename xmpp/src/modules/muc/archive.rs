//! XEP-0313 archives of rooms with logging on (`muc#roomconfig_enablelogging`):
//! each groupchat message with a body is stored under the room's JID with
//! the room's XEP-0359 stanza id, and occupants query it at the room's JID.
//! The store and the query form are the user archives' (`modules/mam.rs`,
//! `mam_messages`); a room's rows are owned by its bare JID, which no
//! username can be.

use starling_core::jid::FullJid;
use starling_core::xml::{Element, ns};

use super::room::{Out, Room};
use crate::modules::mam::parse_query;
use crate::server::Server;
use crate::stanza::{Condition, StanzaError};
use crate::util::time::{now_ms, xep0082};

pub(super) const MAM: &str = "urn:xmpp:mam:2";
pub(super) const SID: &str = "urn:xmpp:sid:0";
const RSM: &str = "http://jabber.org/protocol/rsm";
const FORWARD: &str = "urn:xmpp:forward:0";

/// Messages in a page when the client does not say, and at most.
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 250;

pub(super) fn new_id() -> String {
    let mut bytes = [0u8; 12];
    rand::fill(&mut bytes[..]);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Stores a broadcast message that carries the room's stanza id.
pub(super) async fn store(server: &Server, room: &Room, broadcast: &Element) {
    let Some(id) = broadcast
        .child("stanza-id", SID)
        .filter(|sid| sid.attr("by") == Some(room.jid.as_str()))
        .and_then(|sid| sid.attr("id"))
    else {
        return;
    };
    let mut stanza = broadcast.clone();
    stanza.remove_attr("to");
    let with = stanza.attr("from").unwrap_or_default().to_owned();
    let xml = String::from_utf8_lossy(&stanza.to_bytes()).into_owned();
    if let Err(error) = server
        .store
        .archive_message(room.jid.as_str(), id, &with, now_ms(), &xml)
        .await
    {
        // The room heard the message; only its archive misses it.
        tracing::error!(room = %room.jid, %error, "archiving a room message failed");
    }
}

/// A query at the room's JID by one of its occupants: the results, then
/// the `<fin/>` for the iq result.
pub(super) async fn query(
    server: &Server,
    room: &Room,
    from: &FullJid,
    request: &Element,
) -> Result<(Vec<Out>, Element), StanzaError> {
    if !room.config.logging {
        return Err(StanzaError::new(Condition::FeatureNotImplemented)
            .with_text("This room keeps no archive"));
    }
    if room.occupant(from).is_none() {
        return Err(StanzaError::new(Condition::Forbidden)
            .with_text("Only occupants read the room's archive"));
    }
    let query = parse_query(request, DEFAULT_PAGE, MAX_PAGE)?;
    let page = match server.store.query_archive(room.jid.as_str(), &query).await {
        Ok(Some(page)) => page,
        Ok(None) => {
            return Err(StanzaError::new(Condition::ItemNotFound)
                .with_text("The archive holds no message with that id"));
        }
        Err(error) => {
            tracing::error!(room = %room.jid, %error, "a room archive query failed");
            return Err(StanzaError::new(Condition::InternalServerError)
                .with_text("The archive could not be read; try again"));
        }
    };
    let query_id = request.attr("queryid").map(str::to_owned);
    let mut outs = Vec::new();
    for archived in &page.messages {
        let Ok(original) = crate::stream::parse_element(archived.stanza.as_bytes()) else {
            tracing::error!(room = %room.jid, id = archived.stanza_id, "an archived room message is unreadable");
            continue;
        };
        let mut result = Element::new("result", MAM).with_attr("id", archived.stanza_id.clone());
        if let Some(query_id) = &query_id {
            result.set_attr("queryid", query_id.clone());
        }
        result.push_child(
            Element::new("forwarded", FORWARD)
                .with_child(
                    Element::new("delay", ns::DELAY).with_attr("stamp", xep0082(archived.stamp_ms)),
                )
                .with_child(original),
        );
        outs.push(Out {
            to: from.clone().into(),
            stanza: Element::new("message", ns::CLIENT)
                .with_attr("from", room.jid.as_str())
                .with_attr("to", from.as_str())
                .with_child(result),
            about: None,
        });
    }
    let mut set = Element::new("set", RSM);
    if let (Some(first), Some(last)) = (page.messages.first(), page.messages.last()) {
        set.push_child(Element::new("first", RSM).with_text(first.stanza_id.clone()));
        set.push_child(Element::new("last", RSM).with_text(last.stanza_id.clone()));
    }
    let fin = Element::new("fin", MAM)
        .with_attr("complete", if page.complete { "true" } else { "false" })
        .with_child(set);
    Ok((outs, fin))
}
