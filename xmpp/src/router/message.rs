//! RFC 6121 8.5: where a message to one of our users goes.

use starling_core::jid::{BareJid, Jid};

use super::resources::{self, deliver_to, message_recipients};
use super::{Routed, bounce, count};
use crate::metrics::Outcome;
use crate::modules::Flow;
use crate::server::Server;
use crate::stanza::{Condition, MessageType, Stanza, StanzaError};

/// Delivers a message addressed to a user of this domain.
pub async fn deliver(server: &Server, stanza: Stanza, to: Jid) -> Routed {
    let ty = stanza.message_type().unwrap_or(MessageType::Normal);
    let stanza = match to.try_as_full() {
        Ok(full) => {
            let Some(target) = resources::locate(server, full).await else {
                return no_such_resource(server, stanza, ty, full.to_bare()).await;
            };
            match deliver_to(server, &target, stanza.element, stanza.kind, stanza.hops).await {
                Ok(()) => return count(server, Outcome::Delivered),
                Err(element) => {
                    let stanza = Stanza { element, ..stanza };
                    return no_such_resource(server, stanza, ty, full.to_bare()).await;
                }
            }
        }
        Err(_) => stanza,
    };
    to_bare(server, stanza, ty, to.to_bare()).await
}

/// RFC 6121 8.5.3.2.1: the full JID has no session.
async fn no_such_resource(
    server: &Server,
    stanza: Stanza,
    ty: MessageType,
    bare: BareJid,
) -> Routed {
    match ty {
        MessageType::Normal | MessageType::Chat | MessageType::Headline => {
            to_bare(server, stanza, ty, bare).await
        }
        MessageType::Groupchat => {
            let error = StanzaError::new(Condition::ServiceUnavailable)
                .with_text("The recipient is not connected");
            bounce(server, &stanza, error).await
        }
        MessageType::Error => count(server, Outcome::Discarded),
    }
}

/// RFC 6121 8.5.2: a message to the bare JID.
async fn to_bare(server: &Server, stanza: Stanza, ty: MessageType, bare: BareJid) -> Routed {
    match ty {
        MessageType::Error => return count(server, Outcome::Discarded),
        MessageType::Groupchat => {
            let error = StanzaError::new(Condition::ServiceUnavailable)
                .with_text("Groupchat messages need a room, not a user");
            return bounce(server, &stanza, error).await;
        }
        MessageType::Normal | MessageType::Chat | MessageType::Headline => {}
    }
    let recipients = message_recipients(resources::resources(server, &bare), ty);
    let last = recipients.len().saturating_sub(1);
    let mut pending = Some(stanza.element);
    let mut delivered = false;
    for (index, target) in recipients.iter().enumerate() {
        let Some(element) = pending.take() else { break };
        // Several equal-priority resources each get a copy; the last takes the original.
        let copy = if index == last {
            element
        } else {
            let copy = element.clone();
            pending = Some(element);
            copy
        };
        match deliver_to(server, target, copy, stanza.kind, stanza.hops).await {
            Ok(()) => delivered = true,
            Err(returned) => {
                pending.get_or_insert(returned);
            }
        }
    }
    if delivered {
        return count(server, Outcome::Delivered);
    }
    let Some(element) = pending else {
        return count(server, Outcome::Discarded);
    };
    let stanza = Stanza { element, ..stanza };
    match account_exists(server, &bare).await {
        Err(()) => {
            let error = StanzaError::new(Condition::InternalServerError)
                .with_text("The account could not be looked up; try again");
            bounce(server, &stanza, error).await
        }
        Ok(false) => {
            let error = StanzaError::new(Condition::ServiceUnavailable).with_text("No such user");
            bounce(server, &stanza, error).await
        }
        // Headlines are for whoever is online now (RFC 6121 8.5.2.1.1).
        Ok(true) if ty == MessageType::Headline => count(server, Outcome::Discarded),
        Ok(true) => {
            let stanza = match server.modules.offline(server, stanza, &bare).await {
                Flow::Continue(stanza) => stanza,
                Flow::Done(routed) => return routed,
            };
            let error = StanzaError::new(Condition::ServiceUnavailable)
                .with_text("The recipient is offline and this server stores no messages");
            bounce(server, &stanza, error).await
        }
    }
}

/// Whether the bare JID is an account here; `Err` when the store failed.
pub async fn account_exists(server: &Server, bare: &BareJid) -> Result<bool, ()> {
    let Some(node) = bare.node() else {
        return Ok(false);
    };
    server.users.exists(node.as_str()).await.map_err(|error| {
        tracing::error!(user = %bare, %error, "account lookup failed");
    })
}
