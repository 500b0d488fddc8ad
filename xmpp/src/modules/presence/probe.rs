//! RFC 6121 4.3: presence probes, sent when a user comes online and answered
//! from the stored state of the probed user's sessions.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use starling_core::cluster::{NodeId, StanzaKind};
use starling_core::jid::{BareJid, FullJid, Jid};
use starling_core::xml::{Element, ns};

use crate::metrics::Outcome;
use crate::modules::Delivery;
use crate::roster::cached::Roster;
use crate::router::Routed;
use crate::router::resources::{self, Target, send_to};
use crate::router::{count, route};
use crate::server::Server;
use crate::session::LocalSession;
use crate::stanza::Stanza;

/// Gets the current presence of every contact the user is subscribed to.
///
/// Contacts on this node are answered directly from their sessions (no
/// stanza round trip); for contacts with sessions on other nodes, one probe
/// goes to each such node, which answers for its sessions.
pub(super) async fn probe_contacts(server: &Server, session: &Arc<LocalSession>, roster: &Roster) {
    let prober = Jid::from(session.jid.clone());
    let mut unknown = Vec::new();
    for contact in roster.subscriptions() {
        if !server.serves_domain(contact.domain().as_str()) {
            // RFC 6121 4.3.1: a contact on another server is probed from
            // the user's bare JID; its server answers for its sessions.
            let probe = Element::new("presence", ns::CLIENT)
                .with_attr("from", prober.to_bare().as_str())
                .with_attr("to", contact.as_str())
                .with_attr("type", "probe");
            if let Ok(probe) = Stanza::from_server(probe) {
                route(server, probe).await;
            }
            continue;
        }
        let mut remote_nodes: HashMap<NodeId, FullJid> = HashMap::new();
        let candidates = resources::resources(server, contact);
        if candidates.is_empty() {
            unknown.push(contact.clone());
            continue;
        }
        let mut local_sessions = Vec::new();
        for candidate in candidates {
            match candidate.target {
                Target::Local(contact_session) => local_sessions.push(contact_session),
                Target::Remote { node, jid } => {
                    remote_nodes.entry(node).or_insert(jid);
                }
            }
        }
        // Only sessions here are answered here, so only then is the
        // contact's roster read: the owner node of a remote contact checks
        // its own roster when the probe arrives, and reading it here would
        // cache the rosters of other members' users on every member.
        let withheld =
            server.modules.outbound_presence(server, contact, &prober) == Delivery::Withhold;
        if !local_sessions.is_empty()
            && !withheld
            && contact_allows(server, contact, &session.jid.to_bare()).await == Some(true)
        {
            for contact_session in local_sessions {
                if let Some(mut last) = contact_session.presence().last.clone() {
                    last.set_attr("from", contact_session.jid.as_str());
                    last.set_attr("to", prober.as_str());
                    let _gone = resources::deliver_local(server, session, last);
                }
            }
        }
        for (node, jid) in remote_nodes {
            let probe = Element::new("presence", ns::CLIENT)
                .with_attr("from", prober.as_str())
                .with_attr("to", contact.as_str())
                .with_attr("type", "probe");
            // The owner node answers for its sessions there: the envelope
            // names one of them, the stanza keeps the contact's bare JID.
            let target = Target::Remote { jid, node };
            let _unreachable = send_to(server, &target, probe, StanzaKind::Presence);
        }
    }
    probe_late_arrivals(server, session, unknown);
}

/// A probe from another server arrived on this member: the members that
/// hold the user's other sessions answer for them (once each).
fn forward_remote_probe(server: &Server, probe: &Stanza, user: &BareJid) {
    let mut nodes = HashSet::new();
    for entry in server.cluster.remote_resources(user) {
        if !entry.available || !nodes.insert(entry.node) {
            continue;
        }
        let target = Target::Remote {
            jid: entry.jid,
            node: entry.node,
        };
        let _unreachable = send_to(server, &target, probe.element.clone(), StanzaKind::Presence);
    }
}

/// A contact who comes online on another member at the same moment as this
/// session can be missed both ways: its member did not know this session
/// yet when it broadcast, and this member did not know the contact yet when
/// it probed. Once the directory has had time to catch up (the window the
/// cluster gives a lookup that misses), the contacts that were not online
/// then and are online elsewhere now are probed again. Whoever already sent
/// its presence sends it once more, which presence allows.
fn probe_late_arrivals(server: &Server, session: &Arc<LocalSession>, contacts: Vec<BareJid>) {
    let policy = server.cluster.miss_retry();
    if policy.attempts == 0 || contacts.is_empty() {
        return;
    }
    after_miss_window(server, session, move |this, session| async move {
        let prober = session.jid.as_str();
        for contact in contacts {
            let mut nodes = HashSet::new();
            for entry in this.cluster.remote_resources(&contact) {
                if !entry.available || !nodes.insert(entry.node) {
                    continue;
                }
                let probe = Element::new("presence", ns::CLIENT)
                    .with_attr("from", prober)
                    .with_attr("to", contact.as_str())
                    .with_attr("type", "probe");
                let target = Target::Remote {
                    jid: entry.jid,
                    node: entry.node,
                };
                let _unreachable = send_to(&this, &target, probe, StanzaKind::Presence);
            }
        }
    });
}

/// A session that moved here from another member was bound nowhere for a
/// while: a presence sent to it then was dropped (RFC 6121 4.6.2: nobody
/// has that full JID), and a contact's goodbye could reach it after the
/// presence of the contact's next session. Once the directory has had time
/// to catch up (the window the cluster gives a lookup that misses), its
/// contacts are probed again and each available one answers with its
/// current presence, which presence allows.
pub(super) fn probe_after_move(server: &Server, session: &Arc<LocalSession>) {
    after_miss_window(server, session, |this, session| async move {
        match this.rosters.get(&session.jid.to_bare()).await {
            Ok(roster) => probe_contacts(&this, &session, &roster).await,
            Err(error) => {
                tracing::error!(jid = %session.jid, %error, "roster unavailable; contacts not probed after a resumption here");
            }
        }
    });
}

/// Runs `then` in a task of its own once the directory has had time to
/// catch up (the cluster's miss-retry window), if `session` is still the
/// one bound to its JID here and still available.
fn after_miss_window<F, Done>(server: &Server, session: &Arc<LocalSession>, then: F)
where
    F: FnOnce(Arc<Server>, Arc<LocalSession>) -> Done + Send + 'static,
    Done: Future<Output = ()> + Send,
{
    let window = server.cluster.miss_retry().window;
    let Some(this) = server.this() else { return };
    let session = session.clone();
    tokio::spawn(async move {
        tokio::time::sleep(window).await;
        let still_here = this
            .sessions
            .get(&session.jid)
            .is_some_and(|current| Arc::ptr_eq(&current, &session));
        if still_here && session.availability().0 {
            then(this, session).await;
        }
    });
}

/// Whether `contact` lets `user` see its presence (the contact's roster has
/// the user with a 'from' subscription). `None` when the roster is unreadable.
async fn contact_allows(server: &Server, contact: &BareJid, user: &BareJid) -> Option<bool> {
    match server.rosters.get(contact).await {
        Ok(roster) => Some(roster.is_subscriber(user)),
        Err(error) => {
            tracing::error!(%contact, %error, "roster unavailable; probe not answered");
            None
        }
    }
}

/// A probe addressed to one of our users: every available session of the
/// user on this node answers with its last presence, if the prober is a
/// subscriber (RFC 6121 4.3.2). Unauthorised probes get no answer, which
/// reveals nothing.
pub(super) async fn answer_probe(server: &Server, stanza: Stanza, to: Jid) -> Routed {
    let Some(prober) = stanza.from.clone() else {
        return count(server, Outcome::Discarded);
    };
    let user = to.to_bare();
    if server.modules.outbound_presence(server, &user, &prober) == Delivery::Withhold {
        return count(server, Outcome::Discarded);
    }
    match contact_allows(server, &user, &prober.to_bare()).await {
        Some(true) => {}
        _ => return count(server, Outcome::Discarded),
    }
    let handled = count(server, Outcome::Handled);
    if !server.serves_domain(prober.domain().as_str()) && stanza.hops == 0 {
        forward_remote_probe(server, &stanza, &user);
    }
    for session in server.sessions.resources(&user) {
        let last = session.presence().last.clone();
        let Some(mut last) = last else { continue };
        last.set_attr("from", session.jid.as_str());
        last.set_attr("to", prober.as_str());
        if let Ok(reply) = Stanza::from_server(last) {
            route(server, reply).await;
        }
    }
    handled
}
