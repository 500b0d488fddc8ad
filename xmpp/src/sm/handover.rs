//! Moving a resumable session between members (XEP-0198 resumption on
//! another member than the one that held it).
//!
//! ```text
//!   member B (client resumes)               member A (holds the session)
//!   request(previd, user) ── Handover ──▶  serve: take it from its task,
//!                                          shut its mailbox, unbind it,
//!                                          announce Unbound, modules export
//!   import: bind a new session,  ◀──────── Moved { presence, counters,
//!   queued stanzas first,                   unacked, queued, modules }
//!   announce Bound + Presence,
//!   modules import, register the id
//! ```
//!
//! Contacts see nothing: no unavailable presence on A, no initial
//! presence on B. A stanza that reaches A once the session is unbound
//! there is routed anew (to B once the directory says so, else offline,
//! whence B's available session gets it).

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use starling_core::cluster::{NodeId, SessionChange};
use starling_core::jid::{BareJid, FullJid, Jid};
use starling_core::xml::Element;

use super::registry::Lookup;
use super::resume::TAKEOVER_PATIENCE;
use super::{Counters, Resumption, SmState, Taken, token};
use crate::server::Server;
use crate::session::{CloseReason, LocalSession};

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    previd: String,
    user: String,
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Moved(Box<Moved>),
    /// Not here; `h` when the session ended here not long ago.
    NotFound {
        h: Option<u32>,
    },
}

/// A session in transit: everything the resuming member needs.
#[derive(Debug, Serialize, Deserialize)]
struct Moved {
    jid: String,
    available: bool,
    priority: i8,
    /// The last available presence broadcast (answers probes).
    last_presence: Option<String>,
    directed: Vec<String>,
    roster_interest: bool,
    inbound: u32,
    acked: u32,
    max_secs: u32,
    /// Written to the old socket and not acknowledged, oldest first.
    unacked: Vec<String>,
    /// Queued and never written, oldest first.
    queued: Vec<String>,
    /// What each module keeps for the session, by module name.
    modules: Vec<(String, String)>,
}

/// Asks `node` for the session `previd`. `Err` when it does not have it
/// (or cannot be reached), with the session's `h` if it ended there.
pub async fn request(
    server: &Server,
    node: NodeId,
    previd: &str,
    user: &BareJid,
) -> Result<Taken, Option<u32>> {
    let request = Request {
        previd: previd.to_owned(),
        user: user.to_string(),
    };
    let bytes = serde_json::to_vec(&request).map_err(|_| None)?;
    tracing::info!(%node, %user, "asking a member for a session to resume here");
    let reply = match server
        .cluster
        .handover(node, Bytes::from(bytes), TAKEOVER_PATIENCE)
        .await
    {
        Ok(reply) => reply,
        Err(error) => {
            tracing::debug!(%node, %error, "no session handover from this member");
            return Err(None);
        }
    };
    match serde_json::from_slice::<Reply>(&reply) {
        Ok(Reply::Moved(moved)) => import(server, previd, *moved).await.ok_or(None),
        Ok(Reply::NotFound { h }) => Err(h),
        Err(error) => {
            tracing::warn!(%node, %error, "unreadable session handover");
            Err(None)
        }
    }
}

/// A member asks for a session held here.
pub async fn serve(server: &Server, request: &[u8], from: NodeId) -> Bytes {
    let reply = match serde_json::from_slice::<Request>(request) {
        Ok(request) => match export(server, &request).await {
            Some(moved) => {
                tracing::info!(%from, jid = %moved.jid, "session handed over to the member where it resumed");
                Reply::Moved(Box::new(moved))
            }
            None => Reply::NotFound {
                h: ended_h(server, &request),
            },
        },
        Err(error) => {
            tracing::warn!(%from, %error, "unreadable session handover request");
            Reply::NotFound { h: None }
        }
    };
    serde_json::to_vec(&reply)
        .map(Bytes::from)
        .unwrap_or_default()
}

/// The `h` of the requested session if it ended here not long ago.
fn ended_h(server: &Server, request: &Request) -> Option<u32> {
    let (_, key) = token::decode(&request.previd)?;
    let user = BareJid::new(&request.user).ok()?;
    server.modules.sm()?.registry.ended_h(&key, &user)
}

async fn export(server: &Server, request: &Request) -> Option<Moved> {
    let service = server.modules.sm()?;
    let (_, key) = token::decode(&request.previd)?;
    let user = BareJid::new(&request.user).ok()?;
    let Lookup::Here(waiting) = service.registry.request_takeover(&key, &user) else {
        return None;
    };
    let Taken { session, mut sm } = tokio::time::timeout(TAKEOVER_PATIENCE, waiting)
        .await
        .ok()?
        .ok()?;
    // Unbound first: a delivery that already found the session still
    // lands in the mailbox and goes along; later ones look the JID up
    // again (retrying until the directory names the resuming member).
    server.sessions.unbind(&session);
    if server.sessions.get(&session.jid).is_none() {
        server.cluster.announce(SessionChange::Unbound {
            jid: session.jid.clone(),
        });
    }
    // Before the mailbox is shut: a module may queue what it held (CSI).
    let modules = server.modules.export_session(server, &session);
    let queued = session.shut_mailbox();
    service.registry.remove(&key, &session);
    Counters::incr(&service.counters.handed_over);
    let presence = session.presence();
    let text = |stanza: &Element| String::from_utf8(stanza.to_bytes()).unwrap_or_default();
    Some(Moved {
        jid: session.jid.to_string(),
        available: presence.available,
        priority: presence.priority,
        last_presence: presence.last.as_ref().map(text),
        directed: presence.directed.iter().map(Jid::to_string).collect(),
        roster_interest: presence.interested,
        inbound: sm.settle(),
        acked: sm.acked(),
        max_secs: sm.resumption.as_ref().map_or(0, |r| r.max_secs),
        unacked: sm
            .take_unacked()
            .iter()
            .map(|stanza| text(stanza))
            .collect(),
        queued: queued.iter().map(|stanza| text(stanza)).collect(),
        modules,
    })
}

async fn import(server: &Server, previd: &str, moved: Moved) -> Option<Taken> {
    let service = server.modules.sm()?;
    let (_, key) = token::decode(previd)?;
    let jid = FullJid::new(&moved.jid).ok()?;
    // The client gave up waiting and logged in again here with the same
    // resource: that session is the one it uses. Binding this one over it
    // would end it (the client is kicked, contacts told it left).
    if server.sessions.get(&jid).is_some() {
        tracing::info!(%jid, "a session handed over after its client logged in again here; the new session stays");
        Counters::incr(&service.counters.abandoned);
        let_go(server, &jid, &moved).await;
        return None;
    }
    let (session, unacked) = rebuild(server, &jid, &moved);
    if let Some(replaced) = server.sessions.bind(session.clone()) {
        replaced.close(CloseReason::Conflict);
    }
    server
        .cluster
        .announce(SessionChange::Bound { jid: jid.clone() });
    if moved.available {
        server.cluster.announce(SessionChange::Presence {
            jid: jid.clone(),
            priority: moved.priority,
            available: true,
        });
    }
    server
        .modules
        .import_session(server, &session, &moved.modules)
        .await;
    service.registry.register(key, session.clone());
    Counters::incr(&service.counters.resumed_from_peer);
    deliver_stored(server, &session).await;
    let resumption = Resumption {
        key,
        id: previd.to_owned(),
        max_secs: moved.max_secs.max(1),
    };
    let sm = SmState::restored(moved.inbound, moved.acked, unacked, Some(resumption));
    Some(Taken {
        session,
        sm: Box::new(sm),
    })
}

/// A session as it was on the member that let it go, not bound here yet:
/// its presence, and its queued stanzas ahead of anything routed to it
/// once bound; with the stanzas written to the old socket and not
/// acknowledged.
fn rebuild(
    server: &Server,
    jid: &FullJid,
    moved: &Moved,
) -> (Arc<LocalSession>, Vec<Box<Element>>) {
    let parse = |texts: &[String]| -> Vec<Box<Element>> {
        texts
            .iter()
            .filter_map(|text| match crate::stream::parse_element(text.as_bytes()) {
                Ok(element) => Some(Box::new(element)),
                Err(error) => {
                    tracing::warn!(%jid, %error, "unreadable stanza in a session handover; dropped");
                    None
                }
            })
            .collect()
    };
    let session = LocalSession::new(
        server.sessions.next_id(),
        jid.clone(),
        server.limits().session_queue,
    );
    {
        let mut presence = session.presence();
        presence.available = moved.available;
        presence.priority = moved.priority;
        presence.last = moved
            .last_presence
            .as_deref()
            .and_then(|text| crate::stream::parse_element(text.as_bytes()).ok());
        presence.directed = moved
            .directed
            .iter()
            .filter_map(|jid| Jid::new(jid).ok())
            .collect();
        presence.interested = moved.roster_interest;
    }
    session.preload(parse(&moved.queued));
    (session, parse(&moved.unacked))
}

/// A handover reply that no member took (see
/// `LocalDelivery::handover_abandoned`): the session it carries is bound
/// nowhere, and ends here (`let_go`).
pub async fn abandoned(server: &Server, reply: &[u8]) {
    let moved = match serde_json::from_slice::<Reply>(reply) {
        Ok(Reply::Moved(moved)) => moved,
        Ok(Reply::NotFound { .. }) => return,
        Err(error) => {
            tracing::error!(%error, "unreadable session handover left over; its stanzas are lost");
            return;
        }
    };
    let Ok(jid) = FullJid::new(&moved.jid) else {
        tracing::error!(jid = %moved.jid, "session handover left over for an unreadable JID; its stanzas are lost");
        return;
    };
    if let Some(service) = server.modules.sm() {
        Counters::incr(&service.counters.abandoned);
    }
    tracing::warn!(%jid, "a session handed over between members reached none; it ends here");
    let_go(server, &jid, &moved).await;
}

/// A moved session that no connection takes ends here as a detached
/// session whose window closed: its stanzas are routed again (to another
/// resource, or stored), contacts hear it is gone. If the client has
/// meanwhile logged in again with the same resource, only the stanzas go
/// on: the new session is what contacts and rooms see.
async fn let_go(server: &Server, jid: &FullJid, moved: &Moved) {
    let (session, unacked) = rebuild(server, jid, moved);
    let mut sm = SmState::restored(moved.inbound, moved.acked, unacked, None);
    let bound_again = server.sessions.get(jid).is_some() || server.cluster.locate(jid).is_some();
    if bound_again {
        let mut undelivered = sm.take_unacked();
        undelivered.extend(session.shut_mailbox());
        for element in undelivered {
            crate::c2s::reroute_undelivered(server, *element).await;
        }
    } else {
        crate::c2s::end_session(server, &session, Some(Box::new(sm))).await;
    }
}

/// Messages stored offline while the session was between members (routed
/// when it was bound nowhere) are delivered as for a new available session.
async fn deliver_stored(server: &Server, session: &Arc<LocalSession>) {
    let (available, priority) = session.availability();
    if !available || priority < 0 {
        return;
    }
    let _guard = server.delivery_locks.lock(&session.jid.to_bare()).await;
    server.modules.resource_available(server, session).await;
}
