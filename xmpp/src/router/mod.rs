//! The stanza router: every stanza a client sends, and every stanza the
//! server makes, goes through here to exactly one counted outcome. The
//! router only routes: what the server answers or does itself is a feature
//! module (`crate::modules`), called through the registry's hooks.
//!
//! ```text
//!  from_client ──▶ ClientStanza hooks ──▶ server/account iq ──▶ module
//!              └─▶ route
//!  route ──▶ a module's host (pubsub.<domain>) ──▶ that module
//!        ├──▶ our domain, user ──▶ Inbound hooks ──▶ message rules (message.rs)
//!        │                                      ──▶ directed presence
//!        │                                      ──▶ iq: full JID, or the account's module
//!        ├──▶ our domain, no user ──▶ server iq ──▶ module
//!        └──▶ any other domain ──▶ s2s: the outgoing stream to that domain
//! ```
//!
//! Sessions on other nodes are reached through `dyn Cluster`
//! (`resources::send_to`); a stanza from another node enters through
//! `cluster::ServerDelivery` and is delivered locally only, never forwarded.

pub mod cluster;
mod directed;
pub mod handback;
pub mod iq;
pub mod locks;
pub mod message;
pub mod resources;
pub mod vanished;

use std::sync::Arc;

use starling_core::cluster::StanzaKind;
use starling_core::jid::Jid;

use crate::metrics::Outcome;
use crate::modules::Flow;
use crate::server::Server;
use crate::session::LocalSession;
use crate::stanza::{Condition, IqType, Stanza, StanzaError};

/// How the routing of one stanza ended: the outcome counted for it, and
/// the stanza error condition when it bounced. Every routing path returns
/// one, so the compiler holds the router to "exactly one counted outcome";
/// a caller that needs to say how it went (`POST /api/messages`) reads it.
/// Work the routing hands to other tasks (a peer node, a later offline
/// flush) is not waited for: a stanza forwarded to its owner node is
/// `Delivered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    pub outcome: Outcome,
    pub condition: Option<Condition>,
}

/// Counts how the routing of one stanza ended, and says so.
pub fn count(server: &Server, outcome: Outcome) -> Routed {
    server.metrics.outcome(outcome);
    Routed {
        outcome,
        condition: None,
    }
}

/// Counts a bounce whose error reply the caller delivers itself.
pub fn bounced(server: &Server, condition: Condition) -> Routed {
    Routed {
        condition: Some(condition),
        ..count(server, Outcome::Bounced)
    }
}

/// A stanza from a bound client, `from` already stamped with its full JID.
pub async fn from_client(server: &Server, session: &Arc<LocalSession>, stanza: Stanza) -> Routed {
    // Older stanzas of this session that a dying link handed back go first.
    if server.handback.holds_any() {
        server.handback.wait(&Jid::from(session.jid.clone())).await;
    }
    let stanza = match server.modules.client_stanza(server, session, stanza).await {
        Flow::Continue(stanza) => stanza,
        Flow::Done(routed) => return routed,
    };
    match stanza.kind {
        StanzaKind::Iq if addressed_to_account_or_server(server, session, &stanza) => {
            iq::from_client(server, session, stanza).await
        }
        StanzaKind::Message if stanza.to.is_none() => {
            // RFC 6121 8.5.1: no 'to' means the sender's own bare JID.
            let mut stanza = stanza;
            stanza.set_to(Jid::from(session.jid.to_bare()));
            route(server, stanza).await
        }
        _ => route(server, stanza).await,
    }
}

/// An iq with no 'to', to the domain, or to the sender's own bare JID is
/// handled by the server on the account's behalf (RFC 6120 10.3.3).
fn addressed_to_account_or_server(
    server: &Server,
    session: &LocalSession,
    stanza: &Stanza,
) -> bool {
    match &stanza.to {
        None => true,
        Some(to) if to.node().is_none() && to.resource().is_none() => {
            to.domain().as_str() == server.domain
        }
        Some(to) => to.resource().is_none() && *to == Jid::from(session.jid.to_bare()),
    }
}

/// Routes a stanza that has a sender; boxed because error replies re-enter.
pub fn route<'a>(server: &'a Server, stanza: Stanza) -> crate::BoxFuture<'a, Routed> {
    Box::pin(async move {
        let Some(to) = stanza.to.clone() else {
            return iq_or_discard_for_server(server, stanza).await;
        };
        if let Some(module) = server.modules.host(to.domain().as_str()) {
            return module.clone().host_stanza(server, stanza, false).await;
        }
        if to.domain().as_str() != server.domain {
            return crate::s2s::send(server, stanza).await;
        }
        if to.node().is_none() {
            return iq_or_discard_for_server(server, stanza).await;
        }
        let stanza = match server.modules.inbound(server, stanza, &to).await {
            Flow::Continue(stanza) => stanza,
            Flow::Done(routed) => return routed,
        };
        match stanza.kind {
            StanzaKind::Message => message::deliver(server, stanza, to).await,
            StanzaKind::Presence => directed::deliver(server, stanza, to).await,
            StanzaKind::Iq => iq_to_user(server, stanza, to).await,
        }
    })
}

/// A stanza to the domain itself.
async fn iq_or_discard_for_server(server: &Server, stanza: Stanza) -> Routed {
    match stanza.kind {
        StanzaKind::Iq => iq::to_server(server, stanza).await,
        StanzaKind::Message if stanza.is_error() => count(server, Outcome::Discarded),
        StanzaKind::Message => {
            let error = StanzaError::new(Condition::ServiceUnavailable)
                .with_text("The server does not take messages");
            bounce(server, &stanza, error).await
        }
        // Directed presence to the server: nothing to do (RFC 6121 4.6).
        StanzaKind::Presence => count(server, Outcome::Discarded),
    }
}

/// RFC 6121 8.5.2.1.3 / 8.5.3.1: an iq to a user's full JID goes to that
/// session; to the bare JID the server answers for the account.
async fn iq_to_user(server: &Server, stanza: Stanza, to: Jid) -> Routed {
    match to.try_as_full() {
        Ok(full) => {
            let stanza = match iq::to_resource(server, stanza, full).await {
                Flow::Continue(stanza) => stanza,
                Flow::Done(routed) => return routed,
            };
            iq_to_session(server, stanza, full).await
        }
        Err(bare) => iq::to_account(server, stanza, bare.clone()).await,
    }
}

async fn iq_to_session(
    server: &Server,
    stanza: Stanza,
    full: &starling_core::jid::FullJid,
) -> Routed {
    match resources::locate(server, full).await {
        Some(target) => {
            match resources::deliver_to(server, &target, stanza.element, stanza.kind, stanza.hops)
                .await
            {
                Ok(()) => count(server, Outcome::Delivered),
                Err(element) => {
                    let stanza = Stanza { element, ..stanza };
                    unavailable_iq(server, stanza).await
                }
            }
        }
        None => unavailable_iq(server, stanza).await,
    }
}

async fn unavailable_iq(server: &Server, stanza: Stanza) -> Routed {
    match stanza.iq_type() {
        Some(IqType::Get | IqType::Set) => {
            let error = StanzaError::new(Condition::ServiceUnavailable)
                .with_text("The recipient is not connected");
            bounce(server, &stanza, error).await
        }
        // A response whose requester is gone has nobody to go to.
        _ => count(server, Outcome::Discarded),
    }
}

/// Answers `stanza` with a stanza error routed back to its sender; an error
/// stanza is never answered (RFC 6120 8.3.1) and is counted as discarded.
/// The reply's own routing is counted apart.
pub async fn bounce(server: &Server, stanza: &Stanza, error: StanzaError) -> Routed {
    let Some(reply) = stanza.error_reply(&error) else {
        return count(server, Outcome::Discarded);
    };
    let bounced = bounced(server, error.condition);
    match Stanza::from_server(reply) {
        // The reply travels as far as the stanza it answers.
        Ok(reply) if reply.to.is_some() => {
            let _reply_routed = route(
                server,
                Stanza {
                    hops: stanza.hops,
                    ..reply
                },
            )
            .await;
        }
        _ => {}
    }
    bounced
}
