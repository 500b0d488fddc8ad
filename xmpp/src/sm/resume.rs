//! A client's `<resume previd h/>` (XEP-0198 5): find the session, here or
//! on the member that holds it, take it from whoever holds it, and drop
//! what the client says it received.
//!
//! The id names the member that created the session; the session may have
//! moved since (an earlier resumption elsewhere), so when that member does
//! not have it, the members the directory lists with a session of the user
//! are asked too. A session on a member that died is gone:
//! `<item-not-found/>`.

use std::time::Duration;

use starling_core::cluster::NodeId;
use starling_core::jid::BareJid;
use starling_core::xml::Element;

use super::registry::Lookup;
use super::{Counters, StreamManagement, Taken, handover, token, wire};
use crate::server::Server;

/// How long the holder of a session may take to let it go.
pub const TAKEOVER_PATIENCE: Duration = Duration::from_secs(10);

/// Why a resumption failed: the `<failed/>` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown, another user's, or lost with its member.
    NotFound,
    /// The session ended (its window closed) after handling `h` stanzas.
    Ended {
        h: u32,
    },
    BadRequest,
}

impl Refusal {
    pub fn condition(self) -> &'static str {
        match self {
            Refusal::NotFound | Refusal::Ended { .. } => "item-not-found",
            Refusal::BadRequest => "bad-request",
        }
    }
}

/// Takes the session `element` asks for on behalf of `username`, who
/// authenticated on this connection; `Err` is the `<failed/>` to send.
pub async fn resume(
    server: &Server,
    username: &str,
    element: &Element,
) -> Result<(Taken, String), Element> {
    let Some(service) = server.modules.sm() else {
        return Err(wire::failed("feature-not-implemented", None, None));
    };
    let result = take(server, service, username, element).await;
    match result {
        Ok((mut taken, previd, h)) => {
            if let Err(error) = taken.sm.acknowledge(h) {
                // Nothing to resend beyond what was sent: take the client's
                // word that it has everything.
                tracing::info!(jid = %taken.session.jid, %error, "resumption acknowledged too much");
                let sent = taken.sm.sent();
                let _all = taken.sm.acknowledge(sent);
            }
            Counters::incr(&service.counters.resumed);
            tracing::debug!(jid = %taken.session.jid, h, "session resumed");
            Ok((taken, previd))
        }
        Err(refusal) => {
            Counters::incr(&service.counters.failed);
            let (text, h) = match refusal {
                Refusal::NotFound => ("No such session to resume (unknown or lost)", None),
                Refusal::Ended { h } => ("The session ended: it was not resumed in time", Some(h)),
                Refusal::BadRequest => ("<resume/> needs 'previd' and 'h'", None),
            };
            Err(wire::failed(refusal.condition(), h, Some(text)))
        }
    }
}

async fn take(
    server: &Server,
    service: &StreamManagement,
    username: &str,
    element: &Element,
) -> Result<(Taken, String, u32), Refusal> {
    let (Some(previd), Some(h)) = (element.attr("previd"), wire::h_of(element)) else {
        return Err(Refusal::BadRequest);
    };
    let user =
        BareJid::new(&format!("{username}@{}", server.domain)).map_err(|_| Refusal::NotFound)?;
    let (origin, key) = token::decode(previd).ok_or(Refusal::NotFound)?;
    let taken = match service.registry.request_takeover(&key, &user) {
        Lookup::Here(waiting) => match tokio::time::timeout(TAKEOVER_PATIENCE, waiting).await {
            Ok(Ok(taken)) => taken,
            _ => return Err(Refusal::NotFound),
        },
        Lookup::Foreign => return Err(Refusal::NotFound),
        Lookup::Absent => match service.registry.ended_h(&key, &user) {
            Some(h) => return Err(Refusal::Ended { h }),
            None => from_members(server, origin, previd, &user).await?,
        },
    };
    Ok((taken, previd.to_owned(), h))
}

/// Asks the member that created the session, then the other members with a
/// session of the user, for the session.
async fn from_members(
    server: &Server,
    origin: NodeId,
    previd: &str,
    user: &BareJid,
) -> Result<Taken, Refusal> {
    let me = server.cluster.node_id();
    let mut candidates = vec![origin];
    for entry in server.cluster.remote_resources(user) {
        if !candidates.contains(&entry.node) {
            candidates.push(entry.node);
        }
    }
    let mut refusal = Refusal::NotFound;
    for node in candidates.into_iter().filter(|node| *node != me) {
        match handover::request(server, node, previd, user).await {
            Ok(taken) => return Ok(taken),
            Err(Some(h)) => refusal = Refusal::Ended { h },
            Err(None) => {}
        }
    }
    Err(refusal)
}
