//! Where a user's sessions are: this node's session manager plus the
//! cluster's directory replica, merged into one list of [`Target`]s.

use std::sync::Arc;

use starling_core::cluster::{Envelope, NodeId, StanzaKind};
use starling_core::jid::{BareJid, FullJid, Jid};
use starling_core::xml::Element;

use crate::metrics::incr;
use crate::modules::Delivery;
use crate::server::Server;
use crate::session::LocalSession;
use crate::stanza::MessageType;

/// A session a stanza can be handed to.
#[derive(Debug, Clone)]
pub enum Target {
    Local(Arc<LocalSession>),
    Remote { jid: FullJid, node: NodeId },
}

impl Target {
    pub fn jid(&self) -> &FullJid {
        match self {
            Target::Local(session) => &session.jid,
            Target::Remote { jid, .. } => jid,
        }
    }
}

/// One of a user's sessions with what bare-JID routing needs to know.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub target: Target,
    pub available: bool,
    pub priority: i8,
}

/// Every session of `bare`, on this node and on the others.
pub fn resources(server: &Server, bare: &BareJid) -> Vec<Candidate> {
    let mut all: Vec<Candidate> = server
        .sessions
        .resources(bare)
        .into_iter()
        .map(|session| {
            let (available, priority) = session.availability();
            Candidate {
                target: Target::Local(session),
                available,
                priority,
            }
        })
        .collect();
    // While a resource conflict between members settles, the directory can
    // hold one full JID on two nodes: one session, so one candidate (the
    // one here, else the newest binding, which the directory lists last).
    for entry in server.cluster.remote_resources(bare).into_iter().rev() {
        if all
            .iter()
            .any(|candidate| candidate.target.jid() == &entry.jid)
        {
            continue;
        }
        all.push(Candidate {
            target: Target::Remote {
                jid: entry.jid,
                node: entry.node,
            },
            available: entry.available,
            priority: entry.priority,
        });
    }
    all
}

/// Sessions that should get a message sent to the bare JID
/// (RFC 6121 8.5.2.1): available, non-negative priority; for chat and normal
/// only those with the highest priority.
pub fn message_recipients(candidates: Vec<Candidate>, ty: MessageType) -> Vec<Target> {
    let eligible = candidates
        .into_iter()
        .filter(|candidate| candidate.available && candidate.priority >= 0);
    match ty {
        MessageType::Chat | MessageType::Normal => {
            let eligible: Vec<Candidate> = eligible.collect();
            let Some(top) = eligible.iter().map(|c| c.priority).max() else {
                return Vec::new();
            };
            eligible
                .into_iter()
                .filter(|candidate| candidate.priority == top)
                .map(|candidate| candidate.target)
                .collect()
        }
        _ => eligible.map(|candidate| candidate.target).collect(),
    }
}

/// The session bound to a full JID, here or on another node. A miss in the
/// cluster's directory is looked up again as the cluster's retry policy
/// says, for the race where a login has not reached this node's replica yet.
pub async fn locate(server: &Server, jid: &FullJid) -> Option<Target> {
    if let Some(target) = locate_now(server, jid) {
        return Some(target);
    }
    let policy = server.cluster.miss_retry();
    for attempt in 0..policy.attempts {
        tokio::time::sleep(policy.delay(attempt)).await;
        incr(&server.metrics.lookup_retries);
        if let Some(target) = locate_now(server, jid) {
            return Some(target);
        }
    }
    if policy.attempts > 0 {
        incr(&server.metrics.lookup_misses);
    }
    None
}

/// The session bound to a full JID as this node knows it right now.
fn locate_now(server: &Server, jid: &FullJid) -> Option<Target> {
    if let Some(session) = server.sessions.get(jid) {
        return Some(Target::Local(session));
    }
    let node = server.cluster.locate(jid)?;
    Some(Target::Remote {
        jid: jid.clone(),
        node,
    })
}

/// Hands a stanza made here to a session; gives it back when that session
/// cannot take it.
pub fn send_to(
    server: &Server,
    target: &Target,
    element: Element,
    kind: StanzaKind,
) -> Result<(), Element> {
    send_onward(server, target, element, kind, 0)
}

/// Like [`send_to`], for a stanza that crossed between members `hops`
/// times already.
pub fn send_onward(
    server: &Server,
    target: &Target,
    element: Element,
    kind: StanzaKind,
    hops: u8,
) -> Result<(), Element> {
    match target {
        Target::Local(session) => deliver_local(server, session, element),
        Target::Remote { jid, node } => {
            let envelope =
                envelope_for(server, jid, &element, kind, hops).ok_or_else(|| element.clone())?;
            forwarded(
                server,
                jid,
                server.cluster.forward(*node, envelope),
                element,
            )
        }
    }
}

/// Queues a stanza to a session on this node after the `Deliver` hooks;
/// gives it back when the session cannot take it. A stanza a hook withholds
/// was handled on the recipient's behalf and counts as delivered.
pub fn deliver_local(
    server: &Server,
    session: &LocalSession,
    element: Element,
) -> Result<(), Element> {
    if server.modules.deliver(server, session, &element) == Delivery::Withhold {
        return Ok(());
    }
    session
        .send(Box::new(element))
        .map_err(|error| *error.into_stanza())?;
    incr(&server.metrics.routed_local);
    Ok(())
}

/// How long a message waits for room in a busy member's send queue before
/// it is handled as undeliverable.
const FORWARD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Like [`send_to`], but waits for room when another member's send queue is
/// full, so a burst keeps its order instead of spilling into offline
/// storage. For messages and requests; presence uses `send_to`. `hops`:
/// the times the stanza crossed between members already.
pub async fn deliver_to(
    server: &Server,
    target: &Target,
    element: Element,
    kind: StanzaKind,
    hops: u8,
) -> Result<(), Element> {
    let Target::Remote { jid, node } = target else {
        return send_onward(server, target, element, kind, hops);
    };
    let Some(envelope) = envelope_for(server, jid, &element, kind, hops) else {
        return Err(element);
    };
    let result = server
        .cluster
        .forward_waiting(*node, envelope, FORWARD_PATIENCE)
        .await;
    forwarded(server, jid, result, element)
}

/// The envelope for another member, or `None` when the stanza has crossed
/// between members too often already.
fn envelope_for(
    server: &Server,
    jid: &FullJid,
    element: &Element,
    kind: StanzaKind,
    hops: u8,
) -> Option<Envelope> {
    let hops = hops.saturating_add(1);
    if hops > super::cluster::MAX_HOPS {
        return None;
    }
    let from = element
        .attr("from")
        .and_then(|from| Jid::new(from).ok())
        .unwrap_or_else(|| server.domain_jid.clone());
    Some(Envelope {
        from,
        to: Jid::from(jid.clone()),
        kind,
        xml: element.to_bytes().into(),
        hops,
    })
}

fn forwarded(
    server: &Server,
    jid: &FullJid,
    result: Result<(), starling_core::cluster::ForwardError>,
    element: Element,
) -> Result<(), Element> {
    match result {
        Ok(()) => {
            incr(&server.metrics.routed_remote);
            Ok(())
        }
        Err(error) => {
            tracing::debug!(%jid, %error, "forward to the owner node failed");
            Err(element)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(resource: &str, available: bool, priority: i8) -> Candidate {
        let jid = FullJid::new(&format!("a@example.com/{resource}")).unwrap();
        let session = LocalSession::new(1, jid, 1);
        Candidate {
            target: Target::Local(session),
            available,
            priority,
        }
    }

    fn names(targets: Vec<Target>) -> Vec<String> {
        let mut names: Vec<String> = targets
            .iter()
            .map(|t| t.jid().resource().to_string())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn chat_goes_to_the_highest_priority_available_resources() {
        let candidates = vec![
            candidate("low", true, 1),
            candidate("high1", true, 5),
            candidate("high2", true, 5),
            candidate("away", false, 9),
            candidate("negative", true, -1),
        ];
        assert_eq!(
            names(message_recipients(candidates.clone(), MessageType::Chat)),
            ["high1", "high2"]
        );
        assert_eq!(
            names(message_recipients(candidates, MessageType::Headline)),
            ["high1", "high2", "low"]
        );
    }

    #[test]
    fn negative_priority_only_means_nobody() {
        let candidates = vec![candidate("negative", true, -1), candidate("off", false, 0)];
        assert!(message_recipients(candidates, MessageType::Chat).is_empty());
    }
}
