//! Event fan-out: who hears of an event on a node, and how it reaches them.
//!
//! The publishing member resolves subscriptions to sessions (its own and,
//! through the session directory, other members'), adds the members whose
//! interest sets say they have watchers, and sends each other member one
//! [`PubSubEvent`] carrying the notification and the sessions there to
//! notify. A member without subscribers' sessions or watchers gets nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use starling_core::cluster::{NodeId, PubSubEvent, PubSubEventKind};
use starling_core::jid::{BareJid, FullJid, Jid};
use starling_core::xml::{Element, ns};

use super::config::{NodeConfig, NotificationType};
use super::{NodeEvent, PubSub};
use crate::metrics::incr;
use crate::server::Server;
use crate::storage::StoredSubscription;

impl PubSub {
    /// Notifies everyone interested in `event` on `node`; the caller holds
    /// the node's order lock. `force_retract` is a retract's `notify`.
    pub(crate) async fn notify(
        &self,
        node: &str,
        config: &NodeConfig,
        event: Arc<NodeEvent>,
        force_retract: Option<bool>,
    ) {
        let subscriptions = match self.store.pubsub_node_subscriptions(node).await {
            Ok(subscriptions) => subscriptions,
            Err(error) => {
                tracing::error!(node, %error, "subscriptions unreadable; subscribers not notified");
                Vec::new()
            }
        };
        self.notify_to(node, config, event, force_retract, &subscriptions);
    }

    /// [`PubSub::notify`] with the subscriptions already read (a node being
    /// deleted loses them before its notification goes out).
    pub(crate) fn notify_to(
        &self,
        node: &str,
        config: &NodeConfig,
        event: Arc<NodeEvent>,
        force_retract: Option<bool>,
        subscriptions: &[StoredSubscription],
    ) {
        let to_xmpp = match &*event {
            NodeEvent::Published { .. } => config.deliver_notifications,
            NodeEvent::Retracted { .. } => force_retract.unwrap_or(config.notify_retract),
            NodeEvent::Deleted { .. } => config.notify_delete,
            NodeEvent::Purged { .. } => config.notify_retract,
        };
        let notification = to_xmpp.then(|| self.notification(config, &event));
        let kind = wire_kind(&event);
        self.fan_out(node, notification, Some(&event), kind, subscriptions);
    }

    /// XEP-0060 8.2.5: tells subscribers the configuration changed.
    pub(crate) async fn notify_config(&self, node: &str, config: &NodeConfig) {
        let subscriptions = match self.store.pubsub_node_subscriptions(node).await {
            Ok(subscriptions) => subscriptions,
            Err(error) => {
                tracing::error!(node, %error, "subscriptions unreadable; subscribers not notified");
                return;
            }
        };
        let mut configuration =
            Element::new("configuration", ns::PUBSUB_EVENT).with_attr("node", node);
        if config.deliver_payloads {
            configuration.push_child(config.to_form("result"));
        }
        let mut message = self.message(config);
        message.push_child(Element::new("event", ns::PUBSUB_EVENT).with_child(configuration));
        self.fan_out(
            node,
            Some(message),
            None,
            PubSubEventKind::Configured,
            &subscriptions,
        );
    }

    /// Sends `notification` to the subscribers' sessions and `event` to the
    /// watchers, here and once to each other member that has either.
    fn fan_out(
        &self,
        node: &str,
        notification: Option<Element>,
        event: Option<&Arc<NodeEvent>>,
        kind: PubSubEventKind,
        subscriptions: &[StoredSubscription],
    ) {
        let Some(server) = self.server.upgrade() else {
            return;
        };
        let mut remote: BTreeMap<NodeId, Vec<String>> = BTreeMap::new();
        if let Some(template) = &notification {
            let policy = self.cluster.miss_retry();
            // Held for this event; only holders of the node's order lock take it.
            let mut lanes = self.lanes_of(node);
            // Made only when a subscriber waits or is missed.
            let mut notice = None;
            let mut missed = Vec::new();
            for subscription in subscriptions {
                if subscription.state != "subscribed" || !subscription.deliver {
                    continue;
                }
                let Ok(jid) = Jid::new(&subscription.jid) else {
                    continue;
                };
                // A user of another server: its server finds the sessions.
                if !server.serves_domain(jid.domain().as_str()) {
                    self.send_remote(&server, template, &jid);
                    continue;
                }
                // An earlier event for this subscriber is still being retried.
                if let Some(lanes) = lanes.as_mut() {
                    if self.queue_behind(lanes, node, &subscription.jid, &mut notice, template) {
                        continue;
                    }
                }
                let sessions = sessions_of(&server, &jid);
                if sessions.is_empty() && policy.attempts > 0 {
                    missed.push((subscription.jid.clone(), jid));
                    continue;
                }
                for target in sessions {
                    match target {
                        Session::Here(jid) => self.send_local(&server, template, &jid),
                        Session::There(jid, member) => {
                            remote.entry(member).or_default().push(jid.to_string())
                        }
                    }
                }
            }
            drop(lanes);
            if !missed.is_empty() {
                let notice = notice.unwrap_or_else(|| self.late.notice(template));
                self.retry_missed(node, notice, missed, policy);
            }
        }
        if let Some(event) = event {
            let watchers = self.watchers.dispatch(node, event);
            self.counters
                .watcher_events
                .fetch_add(watchers as u64, Ordering::Relaxed);
            for member in self.cluster.pubsub_interested(node) {
                remote.entry(member).or_default();
            }
        }
        if remote.is_empty() {
            return;
        }
        let template = notification
            .map(|message| Bytes::from(message.to_bytes()))
            .unwrap_or_default();
        for (member, recipients) in remote {
            let event = PubSubEvent {
                node: node.to_owned(),
                kind: kind.clone(),
                notification: if recipients.is_empty() {
                    Bytes::new()
                } else {
                    template.clone()
                },
                recipients,
            };
            self.send_to_member(node, member, event);
        }
    }

    /// Queues an event for another member, counted.
    pub(super) fn send_to_member(&self, node: &str, member: NodeId, event: PubSubEvent) {
        match self.cluster.pubsub_send(member, event) {
            Ok(()) => incr(&self.counters.cluster_events_sent),
            Err(error) => {
                incr(&self.counters.cluster_events_failed);
                tracing::warn!(node, %member, %error, "pub/sub event not sent to a member; its subscribers retrieve the items later");
            }
        }
    }

    /// An event another member sent: its sessions here and local watchers.
    pub fn receive(&self, event: PubSubEvent, from: NodeId) {
        incr(&self.counters.cluster_events_received);
        let Some(server) = self.server.upgrade() else {
            return;
        };
        if !event.recipients.is_empty() {
            match crate::stream::parse_element(&event.notification) {
                Ok(template) => {
                    for recipient in &event.recipients {
                        if let Ok(jid) = FullJid::new(recipient) {
                            self.send_local(&server, &template, &jid);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%from, node = event.node, %error, "unreadable pub/sub notification from a member")
                }
            }
        }
        // Watchers already had these (or never get them).
        if matches!(
            event.kind,
            PubSubEventKind::Configured | PubSubEventKind::Notification
        ) {
            return;
        }
        let Some(local) = local_event(&event) else {
            tracing::warn!(%from, node = event.node, "unreadable pub/sub payload from a member");
            return;
        };
        let watchers = self.watchers.dispatch(&event.node, &Arc::new(local));
        self.counters
            .watcher_events
            .fetch_add(watchers as u64, Ordering::Relaxed);
    }

    /// Hands a copy of the notification to a session here, if it still is.
    pub(super) fn send_local(&self, server: &Server, template: &Element, jid: &FullJid) {
        let Some(session) = server.sessions.get(jid) else {
            return;
        };
        let mut message = template.clone();
        message.set_attr("to", jid.as_str());
        match crate::router::resources::deliver_local(server, &session, message) {
            Ok(()) => incr(&self.counters.notifications_local),
            Err(_) => {
                tracing::debug!(%jid, "pub/sub notification for a closing session dropped")
            }
        }
    }

    /// Sends a copy of the notification to a subscriber of another server
    /// (its bare or full JID, as subscribed), over federation from the
    /// service's domain. Queued at once, so the node's events leave in
    /// order on the stream to that server.
    fn send_remote(&self, server: &Arc<Server>, template: &Element, jid: &Jid) {
        let mut message = template.clone();
        message.set_attr("to", jid.as_str());
        let stanza = match crate::stanza::Stanza::from_server(message) {
            Ok(stanza) => stanza,
            Err(error) => {
                tracing::error!(%jid, %error, "a pub/sub notification that does not parse");
                return;
            }
        };
        match crate::s2s::queue(server, stanza) {
            Ok(outcome) => {
                crate::router::count(server, outcome);
                incr(&self.counters.notifications_remote_servers);
            }
            Err((stanza, error)) => {
                let server = server.clone();
                tokio::spawn(async move {
                    crate::router::bounce(&server, &stanza, error).await;
                });
            }
        }
    }

    /// The `<message/>` that tells a subscriber of the event (no `to` yet).
    pub(crate) fn notification(&self, config: &NodeConfig, event: &NodeEvent) -> Element {
        let mut message = self.message(config);
        message.push_child(event_element(config, event));
        message
    }

    /// An empty notification message from the service.
    fn message(&self, config: &NodeConfig) -> Element {
        let mut message = Element::new("message", ns::CLIENT)
            .with_attr("from", self.service.as_str())
            .with_attr("id", super::new_id());
        if config.notification_type == NotificationType::Headline {
            message.set_attr("type", "headline");
        }
        message
    }
}

/// The `<event/>` child of a notification (XEP-0060 7.1.2.1, 7.2.2.1, 8.4.3.1, 8.5.3.1).
pub(crate) fn event_element(config: &NodeConfig, event: &NodeEvent) -> Element {
    let mut element = Element::new("event", ns::PUBSUB_EVENT);
    match event {
        NodeEvent::Published {
            node,
            item_id,
            publisher,
            payload,
        } => {
            let mut item = Element::new("item", ns::PUBSUB_EVENT).with_attr("id", item_id.as_str());
            if let Some(publisher) = publisher {
                item.set_attr("publisher", publisher.as_str());
            }
            if config.deliver_payloads {
                item.push_child(payload.clone());
            }
            element.push_child(
                Element::new("items", ns::PUBSUB_EVENT)
                    .with_attr("node", node.as_str())
                    .with_child(item),
            );
        }
        NodeEvent::Retracted { node, item_id } => element.push_child(
            Element::new("items", ns::PUBSUB_EVENT)
                .with_attr("node", node.as_str())
                .with_child(
                    Element::new("retract", ns::PUBSUB_EVENT).with_attr("id", item_id.as_str()),
                ),
        ),
        NodeEvent::Deleted { node } => element
            .push_child(Element::new("delete", ns::PUBSUB_EVENT).with_attr("node", node.as_str())),
        NodeEvent::Purged { node } => element
            .push_child(Element::new("purge", ns::PUBSUB_EVENT).with_attr("node", node.as_str())),
    }
    element
}

/// Where one of a subscriber's sessions is.
pub(super) enum Session {
    Here(FullJid),
    There(FullJid, NodeId),
}

/// The sessions a subscription reaches: the full JID's one session, or
/// every available session of a bare JID, here and on other members.
pub(super) fn sessions_of(server: &Server, jid: &Jid) -> Vec<Session> {
    match jid.try_as_full() {
        Ok(full) => {
            if server.sessions.get(full).is_some() {
                vec![Session::Here(full.clone())]
            } else if let Some(member) = server.cluster.locate(full) {
                vec![Session::There(full.clone(), member)]
            } else {
                Vec::new()
            }
        }
        Err(_) => {
            let bare: BareJid = jid.to_bare();
            let mut sessions: Vec<Session> = server
                .sessions
                .resources(&bare)
                .into_iter()
                .filter(|session| session.availability().0)
                .map(|session| Session::Here(session.jid.clone()))
                .collect();
            for entry in server.cluster.remote_resources(&bare) {
                if entry.available && server.sessions.get(&entry.jid).is_none() {
                    sessions.push(Session::There(entry.jid, entry.node));
                }
            }
            sessions
        }
    }
}

fn wire_kind(event: &NodeEvent) -> PubSubEventKind {
    match event {
        NodeEvent::Published {
            item_id,
            publisher,
            payload,
            ..
        } => PubSubEventKind::Published {
            item_id: item_id.clone(),
            publisher: publisher.clone(),
            payload: payload.to_standalone_string(),
        },
        NodeEvent::Retracted { item_id, .. } => PubSubEventKind::Retracted {
            item_id: item_id.clone(),
        },
        NodeEvent::Deleted { .. } => PubSubEventKind::Deleted,
        NodeEvent::Purged { .. } => PubSubEventKind::Purged,
    }
}

fn local_event(event: &PubSubEvent) -> Option<NodeEvent> {
    let node = event.node.clone();
    Some(match &event.kind {
        PubSubEventKind::Published {
            item_id,
            publisher,
            payload,
        } => NodeEvent::Published {
            node,
            item_id: item_id.clone(),
            publisher: publisher.clone(),
            payload: crate::stream::parse_element(payload.as_bytes()).ok()?,
        },
        PubSubEventKind::Retracted { item_id } => NodeEvent::Retracted {
            node,
            item_id: item_id.clone(),
        },
        PubSubEventKind::Deleted => NodeEvent::Deleted { node },
        PubSubEventKind::Purged => NodeEvent::Purged { node },
        PubSubEventKind::Configured | PubSubEventKind::Notification => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published() -> NodeEvent {
        NodeEvent::Published {
            node: "n".to_owned(),
            item_id: "i1".to_owned(),
            publisher: Some("a@example.com".to_owned()),
            payload: Element::new("entry", "urn:t").with_text("hello"),
        }
    }

    #[test]
    fn published_event_carries_the_payload_unless_configured_not_to() {
        let mut config = NodeConfig::default();
        let xml = event_element(&config, &published()).to_standalone_string();
        assert_eq!(
            xml,
            "<event xmlns=\"http://jabber.org/protocol/pubsub#event\"><items node=\"n\">\
             <item id=\"i1\" publisher=\"a@example.com\"><entry xmlns=\"urn:t\">hello</entry>\
             </item></items></event>"
        );
        config.deliver_payloads = false;
        let xml = event_element(&config, &published()).to_standalone_string();
        assert!(!xml.contains("entry"), "{xml}");
    }

    #[test]
    fn wire_kind_round_trips_to_a_local_event() {
        let event = published();
        let wire = PubSubEvent {
            node: "n".to_owned(),
            kind: wire_kind(&event),
            notification: Bytes::new(),
            recipients: Vec::new(),
        };
        assert_eq!(local_event(&wire), Some(event));
    }
}
