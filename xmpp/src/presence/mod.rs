//! RFC 6121 section 4: presence broadcast, probes, directed presence and
//! unavailable presence when a session ends.

mod probe;

use std::sync::Arc;

use starling_core::cluster::{SessionChange, StanzaKind};
use starling_core::jid::{BareJid, Jid};
use starling_core::xml::{Element, ns};

pub use self::probe::answer_probe;
use crate::metrics::Outcome;
use crate::roster;
use crate::router::resources::{self, Target, send_to};
use crate::router::{bounce, count, offline};
use crate::server::Server;
use crate::session::LocalSession;
use crate::stanza::{Condition, PresenceType, Stanza, StanzaError};

/// Presence sent by a bound client (`from` stamped).
pub async fn from_client(server: &Server, session: &Arc<LocalSession>, stanza: Stanza) {
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
async fn broadcast(server: &Server, session: &Arc<LocalSession>, stanza: Stanza) {
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
        // Stored messages first, then live ones (see router::offline).
        let _guard = server.delivery_locks.lock(&user).await;
        offline::flush(server, session).await;
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
    count(server, Outcome::Delivered);

    let roster = match server.rosters.get(&user).await {
        Ok(roster) => roster,
        Err(error) => {
            tracing::error!(jid = %session.jid, %error, "roster unavailable; presence not broadcast");
            return;
        }
    };
    let element = stanza.element;
    for contact in roster.subscribers() {
        send_presence_to_bare(server, &element, contact);
    }
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
        return;
    }
    if !was_available {
        probe::probe_contacts(server, session, &roster).await;
        roster::service::deliver_pending_requests(server, session, &roster);
    }
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

/// Sends a presence to every available resource of a contact (the 'to' is
/// the contact's bare JID, as RFC 6121 4.2.2 shows).
pub fn send_presence_to_bare(server: &Server, element: &Element, contact: &BareJid) {
    for candidate in resources::resources(server, contact) {
        if candidate.available {
            let mut copy = element.clone();
            copy.set_attr("to", contact.as_str());
            let _gone = send_to(server, &candidate.target, copy, StanzaKind::Presence);
        }
    }
}

/// A presence stanza addressed to one of our users (from any sender).
pub async fn inbound(server: &Server, stanza: Stanza, to: Jid) {
    let ty = stanza.presence_type().unwrap_or(PresenceType::Available);
    match ty {
        PresenceType::Subscribe
        | PresenceType::Subscribed
        | PresenceType::Unsubscribe
        | PresenceType::Unsubscribed => {
            roster::service::inbound_subscription(server, stanza, to).await
        }
        PresenceType::Probe => answer_probe(server, stanza, to).await,
        PresenceType::Available | PresenceType::Unavailable | PresenceType::Error => {
            deliver_directed(server, stanza, to).await
        }
    }
}

/// RFC 6121 4.6.2 / 8.5: directed presence goes to the full JID if it is
/// connected, to every available resource for a bare JID, else nowhere.
async fn deliver_directed(server: &Server, stanza: Stanza, to: Jid) {
    let targets: Vec<Target> = match to.try_as_full() {
        Ok(full) => resources::locate(server, full).await.into_iter().collect(),
        Err(bare) => resources::resources(server, bare)
            .into_iter()
            .filter(|candidate| candidate.available)
            .map(|candidate| candidate.target)
            .collect(),
    };
    let mut delivered = false;
    for target in &targets {
        delivered |= send_to(server, target, stanza.element.clone(), StanzaKind::Presence).is_ok();
    }
    count(
        server,
        if delivered {
            Outcome::Delivered
        } else {
            Outcome::Discarded
        },
    );
}

/// A session is ending (already unbound here): the cluster forgets it, then
/// if it was available, everyone who saw it available hears that it is gone.
///
/// Forgetting comes first so that a member whose user hears of the leaving
/// has the directory without the session. A newer session that took the
/// JID over on this node keeps its entry.
pub async fn session_ended(server: &Server, session: &Arc<LocalSession>) {
    if server.sessions.get(&session.jid).is_none() {
        server.cluster.announce(SessionChange::Unbound {
            jid: session.jid.clone(),
        });
    }
    if session.availability().0 {
        let unavailable = Element::new("presence", ns::CLIENT)
            .with_attr("from", session.jid.as_str())
            .with_attr("type", "unavailable");
        if let Ok(stanza) = Stanza::from_server(unavailable) {
            broadcast(server, session, stanza).await;
        }
    }
    // The cache is for rosters in use: the user's last session here is
    // gone, so theirs makes room (the next login reads it again).
    let user = session.jid.to_bare();
    if !server.sessions.has_resources(&user) {
        server.rosters.evict(&user);
    }
}

/// Whether `session` is the one bound to its JID here (not ended, not
/// replaced by a newer one).
fn is_bound(server: &Server, session: &Arc<LocalSession>) -> bool {
    server
        .sessions
        .get(&session.jid)
        .is_some_and(|current| Arc::ptr_eq(&current, session))
}
