//! Sending what a room says: to local sessions directly, to each other
//! member holding recipients in ONE relay, whatever the number of
//! recipients there; and receiving such relays.
//!
//! A relay is a message from the service to the service with one
//! `<relay xmlns='urn:xmpp:starling:muc:relay'/>` child holding groups
//! `<deliver to='jid jid ...' about='jid'>stanza</deliver>`: stanzas that
//! are the same for several recipients travel once.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use starling_core::cluster::NodeId;
use starling_core::jid::FullJid;
use starling_core::xml::Element;

use super::room::Out;
use super::{Muc, RELAY};
use crate::metrics::Outcome;
use crate::router::resources::deliver_local;
use crate::router::{count, route};
use crate::server::Server;
use crate::stanza::Stanza;

/// How long a relay waits for room in a busy member's send queue.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Sends a room's stanzas. Called with the room locked, so the room's
/// broadcasts keep their order on every member.
pub(super) async fn send(muc: &Muc, server: &Server, outs: Vec<Out>) {
    let me = server.cluster.node_id();
    let mut remote: BTreeMap<NodeId, Vec<Out>> = BTreeMap::new();
    for out in outs {
        let full = out.to.try_as_full().ok().cloned();
        match full {
            Some(full) => {
                if server.sessions.get(&full).is_some() {
                    deliver_here(muc, server, &full, out.stanza, out.about.as_ref(), me);
                } else if let Some(node) = server.cluster.locate(&full) {
                    remote.entry(node).or_default().push(out);
                } else {
                    // Gone (most often: a local session that just closed,
                    // whose leave this is): its seat here is cleared. An
                    // occupant of another server is on no member: its
                    // stanzas go out over federation, and it has no seat
                    // in this member's records (which are of local
                    // sessions, for rebuilding rooms).
                    if server.serves_domain(full.domain().as_str()) {
                        muc.records
                            .observe(&full, &out.stanza, out.about.as_ref(), me);
                    }
                    route_one(server, out.stanza).await;
                }
            }
            // A bare JID (an invitation): the router picks the resources.
            None => route_one(server, out.stanza).await,
        }
    }
    for (node, outs) in remote {
        // Straight from the room's host to the members with occupants,
        // which only deliver it to their sessions.
        let envelope = muc.member_envelope(relay_of(&outs, me));
        match server
            .cluster
            .forward_waiting(node, envelope, PATIENCE)
            .await
        {
            Ok(()) => {
                muc.relays_sent.fetch_add(1, Ordering::Relaxed);
                for _ in &outs {
                    count(server, Outcome::Delivered);
                }
            }
            Err(error) => {
                // The member is going or gone: each stanza takes the
                // router's way (its retry, or the session's absence).
                tracing::warn!(%node, %error, "room relay not sent; routing its stanzas one by one");
                for out in outs {
                    route_one(server, out.stanza).await;
                }
            }
        }
    }
}

async fn route_one(server: &Server, stanza: Element) {
    match Stanza::from_server(stanza) {
        Ok(stanza) => {
            route(server, stanza).await;
        }
        Err(error) => {
            tracing::error!(%error, "a room made a stanza that does not parse");
            count(server, Outcome::Discarded);
        }
    }
}

/// Hands a room's stanza to a session on this member.
fn deliver_here(
    muc: &Muc,
    server: &Server,
    to: &FullJid,
    stanza: Element,
    about: Option<&FullJid>,
    host: NodeId,
) {
    // Noted even when the session is gone: the leave it caused must still
    // clear its seat.
    muc.records.observe(to, &stanza, about, host);
    let Some(session) = server.sessions.get(to) else {
        // The session ended meanwhile; its unavailable presence takes it
        // out of the room.
        count(server, Outcome::Discarded);
        return;
    };
    let outcome = match deliver_local(server, &session, stanza) {
        Ok(()) => Outcome::Delivered,
        Err(_) => Outcome::Discarded,
    };
    count(server, outcome);
}

/// One relay for the stanzas to one member, identical stanzas grouped.
fn relay_of(outs: &[Out], me: NodeId) -> Element {
    // Serialised without `to`, a stanza is the same for every recipient
    // of a groupchat message; presence differs by recipient and status.
    // (serialised stanza, stanza, about, recipients)
    type Group = (Vec<u8>, Element, Option<String>, Vec<String>);
    let mut groups: Vec<Group> = Vec::new();
    for out in outs {
        let mut bare = out.stanza.clone();
        bare.remove_attr("to");
        let key = bare.to_bytes();
        let about = out.about.as_ref().map(|a| a.to_string());
        match groups
            .iter_mut()
            .find(|(k, _, a, _)| *k == key && *a == about)
        {
            Some(group) => group.3.push(out.to.to_string()),
            None => groups.push((key, bare, about, vec![out.to.to_string()])),
        }
    }
    let mut relay = Element::new("relay", RELAY).with_attr("node", me.0.to_string());
    for (_, stanza, about, to) in groups {
        let mut deliver = Element::new("deliver", RELAY).with_attr("to", to.join(" "));
        if let Some(about) = about {
            deliver.set_attr("about", about);
        }
        deliver.push_child(stanza);
        relay.push_child(deliver);
    }
    relay
}

/// The member a relay or rejoin says it comes from.
pub(super) fn sender(element: &Element) -> NodeId {
    NodeId(
        element
            .attr("node")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    )
}

/// A relay from the member hosting a room: deliver to the sessions here.
pub(super) fn receive(muc: &Muc, server: &Server, relay: &Element) {
    let from = sender(relay);
    muc.relays_received.fetch_add(1, Ordering::Relaxed);
    for deliver in relay.children().filter(|c| c.is("deliver", RELAY)) {
        let Some(stanza) = deliver.children().next() else {
            continue;
        };
        let about = deliver.attr("about").and_then(|a| FullJid::new(a).ok());
        for to in deliver.attr("to").unwrap_or("").split(' ') {
            let Ok(to) = FullJid::new(to) else {
                tracing::warn!(%from, to, "room relay names a recipient that is no full JID");
                count(server, Outcome::Discarded);
                continue;
            };
            let mut copy = stanza.clone();
            copy.set_attr("to", to.as_str());
            deliver_here(muc, server, &to, copy, about.as_ref(), from);
        }
    }
}

#[cfg(test)]
mod tests {
    use starling_core::jid::Jid;
    use starling_core::xml::ns;

    use super::*;

    fn out(to: &str, body: &str) -> Out {
        let stanza = Element::new("message", ns::CLIENT)
            .with_attr("to", to)
            .with_child(Element::new("body", ns::CLIENT).with_text(body));
        Out {
            to: Jid::new(to).unwrap(),
            stanza,
            about: None,
        }
    }

    #[test]
    fn identical_stanzas_travel_once_for_all_their_recipients() {
        let relay = relay_of(
            &[
                out("a@x/1", "hi"),
                out("b@x/2", "hi"),
                out("c@x/3", "other"),
            ],
            NodeId(1),
        );
        assert!(relay.is("relay", RELAY), "{relay}");
        let groups: Vec<&Element> = relay.children().collect();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].attr("to"), Some("a@x/1 b@x/2"));
        assert_eq!(groups[1].attr("to"), Some("c@x/3"));
        assert!(groups[0].children().next().unwrap().attr("to").is_none());
    }
}
