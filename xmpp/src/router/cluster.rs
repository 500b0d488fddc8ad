//! What arrives from other cluster members: stanzas for sessions here,
//! members going down, kicks, cache invalidations, offline-store hints.
//!
//! A stanza from another member is delivered to the session it was sent to
//! (the sender already chose it), never forwarded again, except when that
//! session is gone: then it takes [`super::vanished`], with its hop count
//! on the stanza, so stale directories cannot make it circle.
//!
//! That way can take long (the directory looked up again for the
//! miss-retry window, then a store write), and the member's link reader
//! must not wait for it: acknowledgements and heartbeats travel behind the
//! envelopes, and a reader stalled on a run of such stanzas after a crash
//! had a busy but healthy member declared down. So those stanzas go to a
//! lane per member, routed again in order beside the reader. A stanza for
//! a session that is here goes straight to it, so it can overtake one
//! in the lane only if the session came back meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use futures_util::StreamExt;
use starling_core::cluster::{
    BoxFuture, Envelope, KickReason, LocalDelivery, NodeId, PubSubEvent, Reached,
};
use starling_core::jid::{BareJid, FullJid, Jid};

use super::resources;
use super::{Routed, count};
use crate::metrics::Outcome;
use crate::modules::Flow;
use crate::server::Server;
use crate::session::CloseReason;
use crate::stanza::{PresenceType, Stanza};

/// Most times a stanza may cross between members.
pub const MAX_HOPS: u8 = 2;

/// Stanzas waiting in one member's lane; beyond, that member's reader
/// waits (backpressure, as for any slow delivery).
const LANE_DEPTH: usize = 4096;

/// The server's side of the cluster seam.
pub struct ServerDelivery {
    server: Weak<Server>,
    /// Per member: stanzas for sessions that left, routed again in order
    /// beside its link's reader.
    lanes: Mutex<HashMap<NodeId, tokio::sync::mpsc::Sender<Stanza>>>,
}

impl ServerDelivery {
    pub fn new(server: &Arc<Server>) -> ServerDelivery {
        ServerDelivery {
            server: Arc::downgrade(server),
            lanes: Mutex::default(),
        }
    }

    /// Routes `stanza`, whose session left, in `from`'s lane.
    async fn route_again_beside(&self, server: &Arc<Server>, from: NodeId, stanza: Stanza) {
        let lane = self
            .lanes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(from)
            .or_insert_with(|| start_lane(Arc::downgrade(server)))
            .clone();
        if let Err(tokio::sync::mpsc::error::SendError(stanza)) = lane.send(stanza).await {
            // The lane ended (the server is stopping): route it here.
            super::vanished::route_again(server, stanza).await;
        }
    }
}

fn start_lane(server: Weak<Server>) -> tokio::sync::mpsc::Sender<Stanza> {
    let (lane, mut stanzas) = tokio::sync::mpsc::channel(LANE_DEPTH);
    tokio::spawn(async move {
        while let Some(stanza) = stanzas.recv().await {
            let Some(server) = server.upgrade() else {
                return;
            };
            let _counted = super::vanished::route_again(&server, stanza).await;
        }
    });
    lane
}

impl LocalDelivery for ServerDelivery {
    fn deliver(&self, envelope: Envelope, from: NodeId) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(server) = self.server.upgrade() else {
                return;
            };
            if let Here::Vanished(stanza) = deliver(&server, envelope, from, false).await {
                self.route_again_beside(&server, from, stanza).await;
            }
        })
    }

    fn undelivered(&self, envelopes: Vec<(Envelope, Reached)>) -> BoxFuture<'static, ()> {
        let server = self.server.upgrade();
        if let Some(server) = &server {
            for (envelope, _) in &envelopes {
                server.handback.hold(&envelope.from);
            }
        }
        Box::pin(async move {
            let Some(server) = server else {
                return;
            };
            // Each sender's stanzas in order; senders side by side, since
            // many go to the store (a commit each) and every sender waits
            // at the gate until its own are through.
            let server = &server;
            futures_util::stream::iter(by_sender(envelopes))
                .for_each_concurrent(SENDERS_AT_ONCE, |(sender, stanzas)| async move {
                    let me = server.cluster.node_id();
                    for (mut envelope, reached) in stanzas {
                        let returned = match reached {
                            Reached::Maybe => true,
                            // The crossing never happened: route it as the
                            // stanza it was before it was forwarded.
                            Reached::Never => {
                                envelope.hops = envelope.hops.saturating_sub(1);
                                false
                            }
                        };
                        if let Here::Vanished(stanza) =
                            deliver(server, envelope, me, returned).await
                        {
                            let _counted = super::vanished::route_again(server, stanza).await;
                        }
                        server.handback.release(&sender);
                    }
                })
                .await;
        })
    }

    fn node_down(&self, node: NodeId, lost: Vec<FullJid>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(server) = self.server.upgrade() else {
                return;
            };
            tracing::info!(%node, sessions = lost.len(), "telling contacts here that a member's users are gone");
            server.modules.peer_sessions(&server, &lost, None).await;
        })
    }

    fn client_stanzas(&self) -> u64 {
        self.server
            .upgrade()
            .map_or(0, |server| server.metrics.client_stanzas())
    }

    fn sessions_regained(&self, node: NodeId, regained: Vec<FullJid>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(server) = self.server.upgrade() else {
                return;
            };
            tracing::info!(%node, sessions = regained.len(), "a member's users are back; asking for their presence");
            server
                .modules
                .peer_sessions(&server, &regained, Some(node))
                .await;
            // While the member was given up, messages for these users were
            // stored here (or on another member) as for users offline; their
            // sessions lived on and will not log in again to fetch them. Ask
            // the member to deliver what is stored for each of them now.
            let users: std::collections::HashSet<BareJid> =
                regained.iter().map(|jid| jid.to_bare()).collect();
            for user in users {
                server.cluster.offline_stored(node, &user);
            }
        })
    }

    fn member_up(&self, node: NodeId) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(server) = self.server.upgrade() else {
                return;
            };
            server.modules.member_up(&server, node).await;
        })
    }

    fn kick(&self, jid: FullJid, reason: KickReason) {
        let Some(server) = self.server.upgrade() else {
            return;
        };
        if let Some(session) = server.sessions.get(&jid) {
            session.close(match reason {
                KickReason::Conflict => CloseReason::Replaced,
                KickReason::Admin => CloseReason::Kicked,
            });
        }
    }

    fn invalidate<'a>(&'a self, cache: &'a str, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(server) = self.server.upgrade() else {
                return;
            };
            match cache {
                crate::roster::service::ROSTER_CACHE => server.rosters.invalidate_owner(key),
                crate::users::USER_CACHE => {
                    server.users.invalidate(key);
                    close_if_removed(server, key.to_owned());
                }
                // The caches of feature modules: the module that keeps the
                // cache handles it (it may reload before the member that
                // made the change hears back).
                other => {
                    if !server.modules.invalidate(&server, other, key).await {
                        tracing::warn!(cache = other, "invalidation for an unknown cache");
                    }
                }
            }
        })
    }

    fn offline_stored(&self, user: BareJid) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(server) = self.server.upgrade() else {
                return;
            };
            offline_stored(&server, &user).await;
        })
    }

    fn pubsub_event(&self, event: PubSubEvent, from: NodeId) {
        if let Some(server) = self.server.upgrade() {
            server.pubsub.receive(event, from);
        }
    }

    fn handover(&self, request: bytes::Bytes, from: NodeId) -> BoxFuture<'_, bytes::Bytes> {
        Box::pin(async move {
            match self.server.upgrade() {
                Some(server) => crate::sm::handover::serve(&server, &request, from).await,
                None => bytes::Bytes::new(),
            }
        })
    }

    fn handover_abandoned(&self, reply: bytes::Bytes) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(server) = self.server.upgrade() {
                crate::sm::handover::abandoned(&server, &reply).await;
            }
        })
    }
}

/// Senders whose handed-back stanzas are routed at once.
const SENDERS_AT_ONCE: usize = 32;

/// A handed-back batch split by sender, each sender's stanzas in their
/// order, senders in the order of their first stanza.
fn by_sender(envelopes: Vec<(Envelope, Reached)>) -> Vec<(Jid, Vec<(Envelope, Reached)>)> {
    let mut index: HashMap<Jid, usize> = HashMap::new();
    let mut groups: Vec<(Jid, Vec<(Envelope, Reached)>)> = Vec::new();
    for item in envelopes {
        let sender = item.0.from.clone();
        match index.get(&sender) {
            Some(&at) => groups[at].1.push(item),
            None => {
                index.insert(sender.clone(), groups.len());
                groups.push((sender, vec![item]));
            }
        }
    }
    groups
}

/// An account changed on another member: if it was removed, its sessions
/// here end as those on that member did (XEP-0077 3.2).
fn close_if_removed(server: Arc<Server>, username: String) {
    let Ok(user) = BareJid::new(&format!("{username}@{}", server.domain)) else {
        return;
    };
    if server.sessions.resources(&user).is_empty() {
        return;
    }
    tokio::spawn(async move {
        match server.users.get(&username).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                for session in server.sessions.resources(&user) {
                    session.close(CloseReason::AccountRemoved);
                }
            }
            Err(error) => {
                tracing::error!(%user, %error, "account lookup failed; sessions of a possibly removed account stay open");
            }
        }
    });
}

/// A member's stanza, or (`returned`) one of this member's own that a dying
/// link gave back.
async fn deliver(server: &Server, envelope: Envelope, from: NodeId, returned: bool) -> Here {
    let element = match crate::stream::parse_element(&envelope.xml) {
        Ok(element) => element,
        Err(error) => {
            tracing::warn!(%from, %error, "unreadable stanza from a cluster member");
            return done(count(server, Outcome::Discarded));
        }
    };
    let stanza = match Stanza::from_server(element) {
        Ok(stanza) => Stanza {
            hops: envelope.hops,
            ..stanza
        },
        Err(error) => {
            tracing::warn!(%from, %error, "invalid stanza from a cluster member");
            return done(count(server, Outcome::Discarded));
        }
    };
    server.metrics.stanza_in(stanza.kind);
    // A remote server's answer to a barrier of ours, which reached another
    // member: its outgoing stream is here.
    if crate::s2s::answered(server, &stanza) {
        return done(count(server, Outcome::Handled));
    }
    // A probe asks this node to answer for its sessions of the user: the
    // presence module does, in its inbound hook, here where they are.
    if stanza.presence_type() == Some(PresenceType::Probe) {
        if let Some(to) = stanza.to.clone() {
            return done(match server.modules.inbound(server, stanza, &to).await {
                Flow::Continue(_) => count(server, Outcome::Discarded),
                Flow::Done(routed) => routed,
            });
        }
    }
    // A stanza for a module's host (a group chat room on the member that
    // hosts it, or a room's relay): the module takes it, knowing from the
    // stanza's hop count that it came from a member, and from `returned`
    // that it is our own envelope that a dying link gave back (then it is
    // not a member's stanza, whatever its hop count).
    if let Some(module) = server.modules.host(envelope.to.domain().as_str()) {
        let module = module.clone();
        return done(module.host_stanza(server, stanza, returned).await);
    }
    let target = envelope
        .to
        .try_as_full()
        .ok()
        .and_then(|jid| server.sessions.get(jid));
    let Some(session) = target else {
        return Here::Vanished(stanza);
    };
    match resources::deliver_local(server, &session, stanza.element) {
        Ok(()) => done(count(server, Outcome::Delivered)),
        Err(element) => Here::Vanished(Stanza { element, ..stanza }),
    }
}

/// What became of a member's stanza here.
enum Here {
    /// Delivered, or handled otherwise (counted).
    Done,
    /// Its session is no longer here: it is to be routed again.
    Vanished(Stanza),
}

fn done(_counted: Routed) -> Here {
    Here::Done
}

/// Messages were stored for a user who may have come online here a moment
/// ago: the `ResourceAvailable` hooks run again for each available session
/// that takes bare-JID messages, under the user's delivery lock.
async fn offline_stored(server: &Server, user: &BareJid) {
    let _guard = server.delivery_locks.lock(user).await;
    let session = server.sessions.resources(user).into_iter().find(|session| {
        let (available, priority) = session.availability();
        available && priority >= 0
    });
    if let Some(session) = session {
        server.modules.resource_available(server, &session).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_core::cluster::StanzaKind;

    fn envelope(from: &str, text: &str) -> (Envelope, Reached) {
        let envelope = Envelope {
            from: Jid::new(from).unwrap(),
            to: Jid::new("x@localhost").unwrap(),
            kind: StanzaKind::Message,
            xml: bytes::Bytes::from(text.to_owned()),
            hops: 1,
        };
        (envelope, Reached::Never)
    }

    #[test]
    fn a_batch_is_split_by_sender_keeping_each_senders_order() {
        let batch = vec![
            envelope("a@localhost/1", "a1"),
            envelope("b@localhost/1", "b1"),
            envelope("a@localhost/1", "a2"),
            envelope("a@localhost/2", "c1"),
            envelope("b@localhost/1", "b2"),
        ];
        let groups: Vec<(String, Vec<String>)> = by_sender(batch)
            .into_iter()
            .map(|(sender, items)| {
                let texts = items
                    .iter()
                    .map(|(e, _)| String::from_utf8(e.xml.to_vec()).unwrap())
                    .collect();
                (sender.to_string(), texts)
            })
            .collect();
        assert_eq!(
            groups,
            vec![
                (
                    "a@localhost/1".to_owned(),
                    vec!["a1".to_owned(), "a2".to_owned()]
                ),
                (
                    "b@localhost/1".to_owned(),
                    vec!["b1".to_owned(), "b2".to_owned()]
                ),
                ("a@localhost/2".to_owned(), vec!["c1".to_owned()]),
            ]
        );
    }
}
