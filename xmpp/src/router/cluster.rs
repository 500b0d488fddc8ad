//! What arrives from other cluster members: stanzas for sessions here,
//! members going down, kicks, cache invalidations, offline-store hints.
//!
//! A stanza from another member is delivered to the session it was sent to
//! (the sender already chose it), never forwarded again, except when that
//! session is gone: then it is routed once more by the usual rules, with
//! its hop count, so stale directories cannot make it circle.

use std::sync::{Arc, Weak};

use starling_core::cluster::{
    BoxFuture, Envelope, KickReason, LocalDelivery, NodeId, PubSubEvent, StanzaKind,
};
use starling_core::jid::{BareJid, FullJid};
use starling_core::xml::{Element, ns};

use super::resources::{self, send_to};
use super::{count, offline, route};
use crate::metrics::Outcome;
use crate::presence;
use crate::server::Server;
use crate::session::CloseReason;
use crate::stanza::{Condition, IqType, PresenceType, Stanza, StanzaError};

tokio::task_local! {
    /// Hops of the stanza being handled, when it came from another member.
    pub static HOPS: u8;
}

/// Most times a stanza may cross between members.
pub const MAX_HOPS: u8 = 2;

/// The hop count a stanza forwarded from the current task gets.
pub fn next_hop() -> u8 {
    HOPS.try_with(|hops| *hops).unwrap_or(0).saturating_add(1)
}

/// The server's side of the cluster seam.
pub struct ServerDelivery {
    server: Weak<Server>,
}

impl ServerDelivery {
    pub fn new(server: &Arc<Server>) -> ServerDelivery {
        ServerDelivery {
            server: Arc::downgrade(server),
        }
    }
}

impl LocalDelivery for ServerDelivery {
    fn deliver(&self, envelope: Envelope, from: NodeId) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(server) = self.server.upgrade() else {
                return;
            };
            let hops = envelope.hops;
            HOPS.scope(hops, deliver(&server, envelope, from)).await
        })
    }

    fn node_down(&self, node: NodeId, lost: Vec<FullJid>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(server) = self.server.upgrade() else {
                return;
            };
            tracing::info!(%node, sessions = lost.len(), "telling contacts here that a member's users are gone");
            for jid in lost {
                sessions_lost(&server, &jid).await;
            }
        })
    }

    fn sessions_regained(&self, node: NodeId, regained: Vec<FullJid>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(server) = self.server.upgrade() else {
                return;
            };
            tracing::info!(%node, sessions = regained.len(), "a member's users are back; asking for their presence");
            sessions_regained(&server, node, regained).await;
        })
    }

    fn kick(&self, jid: FullJid, reason: KickReason) {
        let Some(server) = self.server.upgrade() else {
            return;
        };
        if let Some(session) = server.sessions.get(&jid) {
            session.close(match reason {
                KickReason::Conflict => CloseReason::Conflict,
                KickReason::Admin => CloseReason::Kicked,
            });
        }
    }

    fn invalidate(&self, cache: &str, key: &str) {
        let Some(server) = self.server.upgrade() else {
            return;
        };
        match cache {
            crate::roster::service::ROSTER_CACHE => server.rosters.invalidate_owner(key),
            crate::users::USER_CACHE => {
                server.users.invalidate(key);
                close_if_removed(server, key.to_owned());
            }
            other => tracing::warn!(cache = other, "invalidation for an unknown cache"),
        }
    }

    fn offline_stored(&self, user: BareJid) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(server) = self.server.upgrade() else {
                return;
            };
            offline::flush_if_available(&server, &user).await;
        })
    }

    fn pubsub_event(&self, event: PubSubEvent, from: NodeId) {
        if let Some(server) = self.server.upgrade() {
            server.pubsub.receive(event, from);
        }
    }
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

async fn deliver(server: &Server, envelope: Envelope, from: NodeId) {
    let element = match crate::stream::parse_element(&envelope.xml) {
        Ok(element) => element,
        Err(error) => {
            tracing::warn!(%from, %error, "unreadable stanza from a cluster member");
            return count(server, Outcome::Discarded);
        }
    };
    let stanza = match Stanza::from_server(element) {
        Ok(stanza) => stanza,
        Err(error) => {
            tracing::warn!(%from, %error, "invalid stanza from a cluster member");
            return count(server, Outcome::Discarded);
        }
    };
    server.metrics.stanza_in(stanza.kind);
    // A probe asks this node to answer for its sessions of the user.
    if stanza.presence_type() == Some(PresenceType::Probe) {
        if let Some(to) = stanza.to.clone() {
            return presence::answer_probe(server, stanza, to).await;
        }
    }
    let target = envelope
        .to
        .try_as_full()
        .ok()
        .and_then(|jid| server.sessions.get(jid));
    let Some(session) = target else {
        return session_gone(server, stanza).await;
    };
    // The member that made the push cannot know which resources here asked
    // for the roster; only those get pushes (RFC 6121 2.1.6).
    if is_roster_push(&stanza) && !session.presence().interested {
        return count(server, Outcome::Discarded);
    }
    match session.send(Box::new(stanza.element)) {
        Ok(()) => {
            crate::metrics::incr(&server.metrics.routed_local);
            count(server, Outcome::Delivered)
        }
        Err(error) => {
            let element = *error.into_stanza();
            let stanza = Stanza { element, ..stanza };
            session_gone(server, stanza).await
        }
    }
}

/// A roster push made by a member's server (a client's iq carries its `from`).
fn is_roster_push(stanza: &Stanza) -> bool {
    stanza.kind == StanzaKind::Iq
        && stanza.from.is_none()
        && stanza.iq_type() == Some(IqType::Set)
        && stanza.element.has_child("query", ns::ROSTER)
}

/// The session a member sent to is no longer here (RFC 6121 8.5.3.2.1 rules).
async fn session_gone(server: &Server, stanza: Stanza) {
    match stanza.kind {
        StanzaKind::Message => {
            // Another resource or the offline store; at most one more hop.
            let mut stanza = stanza;
            if let Some(to) = stanza.to.clone() {
                stanza.set_to(to.to_bare().into());
            }
            route(server, stanza).await
        }
        StanzaKind::Iq if matches!(stanza.iq_type(), Some(IqType::Get | IqType::Set)) => {
            let error = StanzaError::new(Condition::ServiceUnavailable)
                .with_text("The recipient is not connected");
            super::bounce(server, &stanza, error).await
        }
        _ => count(server, Outcome::Discarded),
    }
}

/// A user's session died with its node: contacts with sessions here, and
/// the user's own sessions here, get its unavailable presence.
async fn sessions_lost(server: &Server, jid: &FullJid) {
    let user = jid.to_bare();
    let unavailable = Element::new("presence", ns::CLIENT)
        .with_attr("from", jid.as_str())
        .with_attr("type", "unavailable");
    let roster = match server.rosters.get(&user).await {
        Ok(roster) => roster,
        Err(error) => {
            tracing::error!(%user, %error, "roster unavailable; contacts not told of a lost session");
            return;
        }
    };
    let mut watchers: Vec<BareJid> = roster.subscribers().cloned().collect();
    watchers.push(user);
    for watcher in watchers {
        for session in server.sessions.resources(&watcher) {
            if session.availability().0 {
                let mut copy = unavailable.clone();
                copy.set_attr("to", session.jid.as_str());
                let target = resources::Target::Local(session);
                let _gone = send_to(server, &target, copy, StanzaKind::Presence);
            }
        }
    }
}

/// Sessions on `node` that [`sessions_lost`] reported gone are still there
/// (the member was cut off, not down): each available session here of a
/// contact allowed to see the user probes it, and the owner node answers
/// with the user's current presence (RFC 6121 4.3.2), so nobody keeps
/// seeing an online user as offline. One probe per user and contact
/// session: the owner answers for all of the user's sessions there.
async fn sessions_regained(server: &Server, node: NodeId, regained: Vec<FullJid>) {
    let mut probed = std::collections::HashSet::new();
    for jid in regained {
        let user = jid.to_bare();
        if !probed.insert(user.clone()) {
            continue;
        }
        let roster = match server.rosters.get(&user).await {
            Ok(roster) => roster,
            Err(error) => {
                tracing::error!(%user, %error, "roster unavailable; contacts not told of a regained session");
                continue;
            }
        };
        for watcher in roster.subscribers() {
            for session in server.sessions.resources(watcher) {
                if !session.availability().0 {
                    continue;
                }
                let probe = Element::new("presence", ns::CLIENT)
                    .with_attr("from", session.jid.as_str())
                    .with_attr("to", user.as_str())
                    .with_attr("type", "probe");
                let target = resources::Target::Remote {
                    jid: jid.clone(),
                    node,
                };
                let _unreachable = send_to(server, &target, probe, StanzaKind::Presence);
            }
        }
    }
}
