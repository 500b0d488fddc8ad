//! Sessions of another member that were lost with it, or found alive after
//! all: the contacts here are told, or ask again.

use starling_core::cluster::{NodeId, PeerState, StanzaKind};
use starling_core::jid::{BareJid, FullJid, Jid};
use starling_core::xml::{Element, ns};

use crate::modules::Delivery;
use crate::router::resources::{self, send_to};
use crate::server::Server;
use crate::stanza::Stanza;

/// A user's session died with its node: contacts with sessions here, and
/// the user's own sessions here, get its unavailable presence; contacts on
/// other servers get it from one member, the one with the lowest id among
/// those up, as they would have at a logout.
pub(super) async fn sessions_lost(server: &Server, jid: &FullJid) {
    // The client came back faster than its member was declared down and
    // is available again under the same full JID, here or on another
    // member: contacts have seen that session's presence, and an
    // unavailable now would tell them it left.
    if super::available_again(server, jid, None) {
        return;
    }
    tracing::debug!(%jid, "session lost with its member; contacts told");
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
    if tells_other_servers(server) {
        for contact in roster.subscribers() {
            if server.serves_domain(contact.domain().as_str()) {
                continue;
            }
            let to = Jid::from(contact.clone());
            // A contact the user blocks (XEP-0191) hears nothing.
            if server.modules.outbound_presence(server, &user, &to) == Delivery::Withhold {
                continue;
            }
            let mut copy = unavailable.clone();
            copy.set_attr("to", contact.as_str());
            if let Ok(stanza) = Stanza::from_server(copy) {
                crate::router::route(server, stanza).await;
            }
        }
    }
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

/// Whether this member speaks for the cluster to other servers about lost
/// sessions: every survivor runs [`sessions_lost`], and only one must.
fn tells_other_servers(server: &Server) -> bool {
    let me = server.cluster.node_id();
    server
        .cluster
        .members_in(&[PeerState::Up, PeerState::Suspect])
        .into_iter()
        .chain(std::iter::once(me))
        .min()
        == Some(me)
}

/// Sessions on `node` that [`sessions_lost`] reported gone are still there
/// (the member was cut off, not down). Both directions are repaired here,
/// because the other member may not have lost (or regained) our sessions at
/// the same moment and a probe answered there can miss:
/// - each available session here of a contact allowed to see the user
///   probes it, and the owner node answers with the user's current presence
///   (RFC 6121 4.3.2), so nobody here keeps seeing an online user as
///   offline; one probe per user and contact session, the owner answers for
///   all of the user's sessions there;
/// - each regained session is sent the current presence of the contacts it
///   is subscribed to that have sessions here, so nobody there keeps seeing
///   our users as offline.
pub(super) async fn sessions_regained(server: &Server, node: NodeId, regained: &[FullJid]) {
    // No client here: nobody to tell, nobody to ask for (a node that just
    // joined meets every member's sessions at once).
    if server.sessions.count() == 0 {
        return;
    }
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
        let sessions_there: Vec<&FullJid> = regained
            .iter()
            .filter(|jid| jid.to_bare() == user)
            .collect();
        for contact in roster.subscriptions() {
            send_presence_of(server, contact, &user, node, &sessions_there).await;
        }
    }
}

/// Sends the last presence of each available session here of `contact` to
/// the user's sessions on `node`, if the contact's roster still lets the
/// user see it and no block withholds it.
async fn send_presence_of(
    server: &Server,
    contact: &BareJid,
    user: &BareJid,
    node: NodeId,
    sessions_there: &[&FullJid],
) {
    let contact_sessions = server.sessions.resources(contact);
    if contact_sessions.is_empty() {
        return;
    }
    let allowed = match server.rosters.get(contact).await {
        Ok(roster) => roster.is_subscriber(user),
        Err(error) => {
            tracing::error!(%contact, %error, "roster unavailable; presence not resent to a regained session");
            return;
        }
    };
    let viewer = starling_core::jid::Jid::from(user.clone());
    if !allowed || server.modules.outbound_presence(server, contact, &viewer) == Delivery::Withhold
    {
        return;
    }
    for contact_session in contact_sessions {
        let Some(last) = contact_session.presence().last.clone() else {
            continue;
        };
        for jid in sessions_there {
            let mut copy = last.clone();
            copy.set_attr("from", contact_session.jid.as_str());
            copy.set_attr("to", jid.as_str());
            let target = resources::Target::Remote {
                jid: (*jid).clone(),
                node,
            };
            let _unreachable = send_to(server, &target, copy, StanzaKind::Presence);
        }
    }
}
