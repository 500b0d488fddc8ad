//! Who hears of a PEP event, and the newest items a session gets when it
//! starts wanting a node.

use std::sync::Arc;

use starling_core::cluster::StanzaKind;
use starling_core::jid::{BareJid, FullJid};
use starling_core::xml::{Element, ns};

use super::remote::Remote;
use crate::pubsub::config::{AccessModel, Choice, NodeConfig, SendLast};
use crate::router::resources::{self, Target, deliver_local, send_to};
use crate::server::Server;
use crate::session::LocalSession;
use crate::util::time::xep0082;

/// What happened on a node, as its notification says.
pub(super) enum Event {
    Published { item_id: String, payload: Element },
    Retracted { item_id: String },
    Purged,
    Deleted,
}

/// The node a PEP event notification is about: a message from an
/// account's bare JID carrying a pub/sub event. `None` for anything else
/// (the pub/sub service's events come from `pubsub.<domain>`).
pub(super) fn event_node(stanza: &Element) -> Option<&str> {
    if stanza.name() != "message" {
        return None;
    }
    let from = stanza.attr("from")?;
    if !from.contains('@') || from.contains('/') {
        return None;
    }
    let event = stanza.child("event", ns::PUBSUB_EVENT)?;
    event.children().next()?.attr("node")
}

fn event_element(node: &str, event: &Event) -> Element {
    let child = match event {
        Event::Published { item_id, payload } => Element::new("items", ns::PUBSUB_EVENT)
            .with_attr("node", node)
            .with_child(
                Element::new("item", ns::PUBSUB_EVENT)
                    .with_attr("id", item_id.as_str())
                    .with_child(payload.clone()),
            ),
        Event::Retracted { item_id } => Element::new("items", ns::PUBSUB_EVENT)
            .with_attr("node", node)
            .with_child(
                Element::new("retract", ns::PUBSUB_EVENT).with_attr("id", item_id.as_str()),
            ),
        Event::Purged => Element::new("purge", ns::PUBSUB_EVENT).with_attr("node", node),
        Event::Deleted => Element::new("delete", ns::PUBSUB_EVENT).with_attr("node", node),
    };
    Element::new("event", ns::PUBSUB_EVENT).with_child(child)
}

fn message(owner: &BareJid, config: &NodeConfig, event: Element) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("from", owner.as_str())
        .with_attr("type", config.notification_type.name())
        .with_child(event)
}

/// The sessions that hear of the owner's events: the owner's own available
/// resources and, unless the node is whitelist-only, those of every contact
/// with a subscription to the owner's presence, on any member.
async fn recipients(server: &Server, owner: &BareJid, config: &NodeConfig) -> Vec<Target> {
    let mut people = vec![owner.clone()];
    if config.access_model != AccessModel::Whitelist {
        match server.rosters.get(owner).await {
            Ok(roster) => people.extend(roster.subscribers().cloned()),
            Err(error) => {
                tracing::error!(%owner, %error, "roster unavailable; PEP event sent to the owner only")
            }
        }
    }
    people
        .iter()
        .flat_map(|person| resources::resources(server, person))
        .filter(|candidate| candidate.available)
        .map(|candidate| candidate.target)
        .collect()
}

/// The resources of the owner's contacts on other servers (with a
/// subscription to the owner's presence) that want `node`.
async fn remote_recipients(
    server: &Server,
    contacts: &Remote,
    owner: &BareJid,
    node: &str,
) -> Vec<FullJid> {
    let roster = match server.rosters.get(owner).await {
        Ok(roster) => roster,
        Err(_) => return Vec::new(),
    };
    roster
        .subscribers()
        .filter(|contact| !server.serves_domain(contact.domain().as_str()))
        .flat_map(|contact| contacts.wanting(contact, node))
        .collect()
}

/// Sends a contact's resource on another server the newest item of each of
/// `nodes` of `owner` (a local account) it may read: what a resource that
/// starts wanting a node gets (XEP-0163 4.3.2). Returns how many were sent.
pub(super) async fn last_items_to(
    server: &Server,
    owner: &BareJid,
    to: &FullJid,
    nodes: &[String],
) -> u64 {
    if nodes.is_empty() || !server.is_local_user(&owner.clone().into()) {
        return 0;
    }
    let Some(username) = owner.node().map(|node| node.to_string()) else {
        return 0;
    };
    match server.rosters.get(owner).await {
        Ok(roster) if roster.subscribers().any(|contact| *contact == to.to_bare()) => {}
        Ok(_) => return 0,
        Err(error) => {
            tracing::error!(%owner, %error, "roster unavailable; no last PEP items sent");
            return 0;
        }
    }
    let items = match server.store.last_pep_items(&[username], nodes).await {
        Ok(items) => items,
        Err(error) => {
            tracing::error!(%owner, %error, "reading last PEP items failed");
            return 0;
        }
    };
    let mut sent = 0;
    for last in items {
        let Some(config) = NodeConfig::from_json(&last.config) else {
            continue;
        };
        if config.send_last_published_item == SendLast::Never
            || config.access_model == AccessModel::Whitelist
        {
            continue;
        }
        let Ok(payload) = crate::stream::parse_element(last.item.payload.as_bytes()) else {
            continue;
        };
        let event = Event::Published {
            item_id: last.item.item_id,
            payload,
        };
        let mut notification = message(owner, &config, event_element(&last.node, &event));
        notification.set_attr("to", to.as_str());
        notification.push_child(
            Element::new("delay", ns::DELAY)
                .with_attr("from", owner.as_str())
                .with_attr("stamp", xep0082(last.item.stamp_ms)),
        );
        if let Ok(stanza) = crate::stanza::Stanza::from_server(notification) {
            crate::router::route(server, stanza).await;
            sent += 1;
        }
    }
    sent
}

/// Sends an event to every recipient; the member holding each session
/// delivers it only if the session wants the node. Contacts of other
/// servers get it at each available resource whose capabilities want the
/// node (`remote.rs`), over federation. Returns (local, remote) sends,
/// remote counting sessions on other members.
pub(super) async fn event(
    server: &Server,
    contacts: &Remote,
    owner: &BareJid,
    node: &str,
    config: &NodeConfig,
    event: &Event,
) -> (u64, u64) {
    if !config.deliver_notifications {
        return (0, 0);
    }
    let template = message(owner, config, event_element(node, event));
    let (mut local, mut remote) = (0, 0);
    if config.access_model != AccessModel::Whitelist {
        for to in remote_recipients(server, contacts, owner, node).await {
            let mut copy = template.clone();
            copy.set_attr("to", to.as_str());
            if let Ok(stanza) = crate::stanza::Stanza::from_server(copy) {
                crate::router::route(server, stanza).await;
            }
        }
    }
    for target in recipients(server, owner, config).await {
        let mut copy = template.clone();
        copy.set_attr("to", target.jid().as_str());
        let is_local = matches!(target, Target::Local(_));
        if send_to(server, &target, copy, StanzaKind::Message).is_ok() {
            if is_local {
                local += 1;
            } else {
                remote += 1;
            }
        }
    }
    (local, remote)
}

/// Sends `session` the newest item of each of `nodes` of its own account and
/// of every contact whose presence it receives (XEP-0163 4.3.2), where the
/// access model lets it read them. One store query for all contacts.
/// Returns how many were sent.
pub(super) async fn last_items(
    server: &Server,
    session: &Arc<LocalSession>,
    nodes: &[String],
) -> u64 {
    let user = session.jid.to_bare();
    let roster = match server.rosters.get(&user).await {
        Ok(roster) => roster,
        Err(error) => {
            tracing::error!(jid = %session.jid, %error, "roster unavailable; no last PEP items sent");
            return 0;
        }
    };
    let owners: Vec<BareJid> = std::iter::once(user.clone())
        .chain(roster.subscriptions().cloned())
        .filter(|owner| server.is_local_user(&owner.clone().into()))
        .collect();
    let usernames: Vec<String> = owners
        .iter()
        .filter_map(|owner| owner.node().map(|node| node.to_string()))
        .collect();
    let items = match server.store.last_pep_items(&usernames, nodes).await {
        Ok(items) => items,
        Err(error) => {
            tracing::error!(jid = %session.jid, %error, "reading last PEP items failed");
            return 0;
        }
    };
    let mut sent = 0;
    for last in items {
        let Some(config) = NodeConfig::from_json(&last.config) else {
            continue;
        };
        let Some(owner) = owners
            .iter()
            .find(|owner| owner.node().is_some_and(|node| node.as_str() == last.owner))
        else {
            continue;
        };
        let own = *owner == user;
        if config.send_last_published_item == SendLast::Never
            || (!own && config.access_model == AccessModel::Whitelist)
        {
            continue;
        }
        let Ok(payload) = crate::stream::parse_element(last.item.payload.as_bytes()) else {
            tracing::error!(
                owner = last.owner,
                node = last.node,
                "a stored PEP item is unreadable"
            );
            continue;
        };
        let event = Event::Published {
            item_id: last.item.item_id,
            payload,
        };
        let mut notification = message(owner, &config, event_element(&last.node, &event));
        notification.set_attr("to", session.jid.as_str());
        notification.push_child(
            Element::new("delay", ns::DELAY)
                .with_attr("from", owner.as_str())
                .with_attr("stamp", xep0082(last.item.stamp_ms)),
        );
        if deliver_local(server, session, notification).is_ok() {
            sent += 1;
        }
    }
    sent
}
