//! The presence module, RFC 6121 section 4: presence broadcast, probes,
//! subscription requests (through the roster engine), directed presence
//! bookkeeping, unavailable presence when a session ends or its member dies.

mod peers;
mod probe;

use std::sync::Arc;

use futures_util::StreamExt;
use starling_core::cluster::{NodeId, SessionChange, StanzaKind};
use starling_core::jid::{BareJid, FullJid, Jid};
use starling_core::xml::{Element, ns};

use self::probe::answer_probe;
use super::{Delivery, Flow, Hook, Module, Options, Registration, StanzaKinds};
use crate::BoxFuture;
use crate::metrics::Outcome;
use crate::roster;
use crate::router::Routed;
use crate::router::resources::{self, Target, send_to};
use crate::router::{bounce, count};
use crate::server::Server;
use crate::session::{CloseReason, LocalSession};
use crate::stanza::{Condition, PresenceType, Stanza, StanzaError};

pub struct PresenceModule;

/// Lost sessions whose contacts are told at once.
const LOST_AT_ONCE: usize = 16;

impl PresenceModule {
    pub fn new(options: Options) -> Result<PresenceModule, super::ModuleConfigError> {
        options.none()?;
        Ok(PresenceModule)
    }
}

impl Module for PresenceModule {
    fn name(&self) -> &'static str {
        "presence"
    }

    fn registration(&self) -> Registration {
        Registration {
            hooks: vec![
                Hook::ClientStanza,
                Hook::Inbound,
                Hook::SessionOpened,
                Hook::SessionClosed,
                Hook::SessionMoved,
                Hook::PeerSessions,
            ],
            stanza_kinds: StanzaKinds::only(&[StanzaKind::Presence]),
            ..Registration::default()
        }
    }

    fn client_stanza<'a>(
        &'a self,
        server: &'a Server,
        session: &'a Arc<LocalSession>,
        stanza: Stanza,
    ) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            if stanza.kind != StanzaKind::Presence {
                return Flow::Continue(stanza);
            }
            Flow::Done(from_client(server, session, stanza).await)
        })
    }

    fn inbound<'a>(
        &'a self,
        server: &'a Server,
        stanza: Stanza,
        to: &'a Jid,
    ) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            let Some(ty) = stanza.presence_type() else {
                return Flow::Continue(stanza);
            };
            Flow::Done(match ty {
                PresenceType::Subscribe
                | PresenceType::Subscribed
                | PresenceType::Unsubscribe
                | PresenceType::Unsubscribed => {
                    roster::service::inbound_subscription(server, stanza, to.clone()).await
                }
                PresenceType::Probe => answer_probe(server, stanza, to.clone()).await,
                // Directed presence: the router delivers it.
                PresenceType::Available | PresenceType::Unavailable | PresenceType::Error => {
                    return Flow::Continue(stanza);
                }
            })
        })
    }

    fn session_opened<'a>(
        &'a self,
        server: &'a Server,
        session: &'a Arc<LocalSession>,
        replaced: Option<&'a Arc<LocalSession>>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(goodbye_for_replaced(server, session, replaced))
    }

    fn session_closed<'a>(
        &'a self,
        server: &'a Server,
        session: &'a Arc<LocalSession>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(session_ended(server, session))
    }

    /// The presence state moves with the session itself (`sm::handover`);
    /// what the session may have missed meanwhile is asked for again.
    fn import_session<'a>(
        &'a self,
        server: &'a Server,
        session: &'a Arc<LocalSession>,
        _state: Option<&'a str>,
    ) -> BoxFuture<'a, ()> {
        probe::probe_after_move(server, session);
        Box::pin(async {})
    }

    fn peer_sessions<'a>(
        &'a self,
        server: &'a Server,
        sessions: &'a [FullJid],
        regained_from: Option<NodeId>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            match regained_from {
                // Each lost user's roster may have to be read from the
                // store: a few at a time, or a member that held thousands
                // of sessions keeps the senders whose stanzas it handed
                // back waiting for many seconds (`router/handback.rs`).
                None => {
                    futures_util::stream::iter(sessions)
                        .for_each_concurrent(LOST_AT_ONCE, |jid| peers::sessions_lost(server, jid))
                        .await;
                }
                Some(node) => peers::sessions_regained(server, node, sessions).await,
            }
        })
    }
}

/// Presence sent by a bound client (`from` stamped).
async fn from_client(server: &Server, session: &Arc<LocalSession>, stanza: Stanza) -> Routed {
    let ty = stanza.presence_type().unwrap_or(PresenceType::Available);
    match (stanza.to.clone(), ty) {
        (None, PresenceType::Available | PresenceType::Unavailable) => {
            broadcast(server, session, stanza).await
        }
        (None, PresenceType::Error) => count(server, Outcome::Discarded),
        (None, _) => {
            let error = StanzaError::new(Condition::BadRequest)
                .with_text("This presence type needs a 'to' address");
            bounce(server, &stanza, error).await
        }
        (Some(to), ty) if ty.is_subscription() => {
            roster::service::outbound_subscription(server, session, stanza, to).await
        }
        (Some(to), PresenceType::Available | PresenceType::Unavailable) => {
            remember_directed(session, &to, ty == PresenceType::Available);
            crate::router::route(server, stanza).await
        }
        (Some(_), _) => crate::router::route(server, stanza).await,
    }
}

/// Tracks entities that got directed presence so they hear when we leave
/// (RFC 6121 4.6.3). Subscribed contacts get that anyway and are not kept.
fn remember_directed(session: &LocalSession, to: &Jid, available: bool) {
    let mut presence = session.presence();
    presence.directed.retain(|jid| jid != to);
    if available {
        presence.directed.push(to.clone());
    }
}

/// The `<priority/>` of an available presence (RFC 6121 4.7.2.3), 0 when absent.
fn priority_of(element: &Element) -> Result<i8, StanzaError> {
    match element.child("priority", ns::CLIENT) {
        None => Ok(0),
        Some(priority) => priority.text().trim().parse::<i8>().map_err(|_| {
            StanzaError::new(Condition::BadRequest)
                .with_text("<priority/> must be an integer from -128 to 127")
        }),
    }
}

/// Initial, updated or unavailable presence from a session (RFC 6121 4.2-4.5).
async fn broadcast(server: &Server, session: &Arc<LocalSession>, stanza: Stanza) -> Routed {
    let available = stanza.presence_type() == Some(PresenceType::Available);
    let priority = if available {
        match priority_of(&stanza.element) {
            Ok(priority) => priority,
            Err(error) => return bounce(server, &stanza, error).await,
        }
    } else {
        0
    };
    let (was_available, was_priority) = session.availability();
    let user = session.jid.to_bare();
    // Stored messages wait for a resource that bare-JID messages reach
    // (non-negative priority), which may be an update from a negative one.
    let could_receive = was_available && was_priority >= 0;
    if available && priority >= 0 && !could_receive {
        // Stored messages first, then live ones (see router::locks).
        let _guard = server.delivery_locks.lock(&user).await;
        server.modules.resource_available(server, session).await;
        set_state(session, available, priority, &stanza.element);
    } else {
        set_state(session, available, priority, &stanza.element);
    }
    // A session that has ended was already announced gone (see session_ended).
    if is_bound(server, session) {
        server.cluster.announce(SessionChange::Presence {
            jid: session.jid.clone(),
            priority,
            available,
        });
    }
    let delivered = count(server, Outcome::Delivered);

    let roster = match server.rosters.get(&user).await {
        Ok(roster) => roster,
        Err(error) => {
            tracing::error!(jid = %session.jid, %error, "roster unavailable; presence not broadcast");
            return delivered;
        }
    };
    let element = stanza.element;
    send_to_subscribers(server, &user, &roster, &element).await;
    // The user's own resources, the sender included (RFC 6121 4.2.2); a
    // newer session that took this one's JID over is not told it left.
    for candidate in resources::resources(server, &user) {
        let this_session =
            matches!(&candidate.target, Target::Local(local) if Arc::ptr_eq(local, session));
        let replacement = !this_session && candidate.target.jid() == &session.jid;
        if this_session || (candidate.available && !replacement) {
            let mut copy = element.clone();
            copy.set_attr("to", candidate.target.jid().as_str());
            let _gone = send_to(server, &candidate.target, copy, StanzaKind::Presence);
        }
    }
    if !available {
        let directed = std::mem::take(&mut session.presence().directed);
        for to in directed {
            let mut copy = element.clone();
            copy.set_attr("to", to.as_str());
            if let Ok(stanza) = Stanza::from_server(copy) {
                crate::router::route(server, stanza).await;
            }
        }
        return delivered;
    }
    if !was_available {
        probe::probe_contacts(server, session, &roster).await;
        roster::service::deliver_pending_requests(server, session, &roster);
    }
    delivered
}

fn set_state(session: &LocalSession, available: bool, priority: i8, element: &Element) {
    let mut presence = session.presence();
    presence.available = available;
    presence.priority = priority;
    presence.last = available.then(|| {
        let mut last = element.clone();
        last.remove_attr("to");
        last
    });
}

/// Sends the user's presence `element` to every contact subscribed to it.
async fn send_to_subscribers(
    server: &Server,
    user: &BareJid,
    roster: &roster::cached::Roster,
    element: &Element,
) {
    for contact in roster.subscribers() {
        let to = Jid::from(contact.clone());
        // A contact the user blocks (XEP-0191) hears nothing.
        if server.modules.outbound_presence(server, user, &to) == Delivery::Withhold {
            continue;
        }
        if server.serves_domain(contact.domain().as_str()) {
            send_presence_to_bare(server, element, contact);
        } else {
            // A contact on another server: its server fans it out.
            let mut copy = element.clone();
            copy.set_attr("to", contact.as_str());
            if let Ok(stanza) = Stanza::from_server(copy) {
                crate::router::route(server, stanza).await;
            }
        }
    }
}

/// Sends a presence to every available resource of a contact (the 'to' is
/// the contact's bare JID, as RFC 6121 4.2.2 shows).
fn send_presence_to_bare(server: &Server, element: &Element, contact: &BareJid) {
    for candidate in resources::resources(server, contact) {
        if candidate.available {
            let mut copy = element.clone();
            copy.set_attr("to", contact.as_str());
            let _gone = send_to(server, &candidate.target, copy, StanzaKind::Presence);
        }
    }
}

/// A session has ended (unbound here, and the cluster told): if it was
/// available, everyone who saw it available hears that it is gone.
async fn session_ended(server: &Server, session: &Arc<LocalSession>) {
    // Replaced by a login here or on another member: the new session's
    // member said goodbye for it (`goodbye_for_replaced`).
    if session.close_reason() == Some(CloseReason::Replaced) {
        return;
    }
    if session.availability().0 && !available_again(server, &session.jid, Some(session)) {
        tracing::debug!(jid = %session.jid, reason = ?session.close_reason(), "session ended; contacts told");
        let unavailable = Element::new("presence", ns::CLIENT)
            .with_attr("from", session.jid.as_str())
            .with_attr("type", "unavailable");
        if let Ok(stanza) = Stanza::from_server(unavailable) {
            broadcast(server, session, stanza).await;
        }
    }
}

/// A login here took a full JID that an available session held, here
/// (`replaced`) or on another member (it is being kicked). The contacts
/// hear that session is gone from here, before anything the new one says
/// and on the same links; the old session ends quietly
/// (`CloseReason::Replaced`). Its own goodbye could reach them after the
/// new session's presence (the old session's task or member is slow to
/// end it, or its roster read waits on the store) and tell them for good
/// that the client left.
async fn goodbye_for_replaced(
    server: &Server,
    session: &Arc<LocalSession>,
    replaced: Option<&Arc<LocalSession>>,
) {
    let user = session.jid.to_bare();
    let (here, directed) = match replaced {
        Some(old) => {
            let mut presence = old.presence();
            (presence.available, std::mem::take(&mut presence.directed))
        }
        None => (false, Vec::new()),
    };
    let elsewhere = server
        .cluster
        .remote_resources(&user)
        .iter()
        .any(|entry| entry.jid == session.jid && entry.available);
    if !here && !elsewhere {
        return;
    }
    tracing::debug!(jid = %session.jid, here, "session replaced; contacts told the old one is gone");
    let unavailable = Element::new("presence", ns::CLIENT)
        .with_attr("from", session.jid.as_str())
        .with_attr("type", "unavailable");
    let roster = match server.rosters.get(&user).await {
        Ok(roster) => roster,
        Err(error) => {
            tracing::error!(jid = %session.jid, %error, "roster unavailable; contacts not told of a replaced session");
            return;
        }
    };
    send_to_subscribers(server, &user, &roster, &unavailable).await;
    for candidate in resources::resources(server, &user) {
        if candidate.available && candidate.target.jid() != &session.jid {
            let mut copy = unavailable.clone();
            copy.set_attr("to", candidate.target.jid().as_str());
            let _gone = send_to(server, &candidate.target, copy, StanzaKind::Presence);
        }
    }
    // RFC 6121 4.6.3: who got directed presence from the old session.
    for to in directed {
        let mut copy = unavailable.clone();
        copy.set_attr("to", to.as_str());
        if let Ok(stanza) = Stanza::from_server(copy) {
            crate::router::route(server, stanza).await;
        }
    }
}

/// Whether another session holds `jid` and is available, here (other than
/// `ended`) or on another member: the client came back under the same full
/// JID (a login that replaced a session across members, faster than the
/// old member heard of it) and its available presence has gone out, so an
/// unavailable for the session that ended would contradict it for good.
fn available_again(server: &Server, jid: &FullJid, ended: Option<&Arc<LocalSession>>) -> bool {
    let here = server.sessions.get(jid).is_some_and(|current| {
        !ended.is_some_and(|ended| Arc::ptr_eq(&current, ended)) && current.availability().0
    });
    here || server
        .cluster
        .remote_resources(&jid.to_bare())
        .iter()
        .any(|entry| entry.jid == *jid && entry.available)
}

/// Whether `session` is the one bound to its JID here (not ended, not
/// replaced by a newer one).
fn is_bound(server: &Server, session: &Arc<LocalSession>) -> bool {
    server
        .sessions
        .get(&session.jid)
        .is_some_and(|current| Arc::ptr_eq(&current, session))
}
