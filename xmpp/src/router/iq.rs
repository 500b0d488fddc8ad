//! Iqs for the server or an account, handed to the module that registered
//! their (type, namespace, addressee). An iq no module answers gets
//! `<service-unavailable/>`, never silence.

use std::sync::Arc;

use starling_core::jid::{BareJid, FullJid};
use starling_core::xml::Element;

use super::{Routed, bounce, count, route};
use crate::metrics::Outcome;
use crate::modules::{Addressee, Flow, IqRequest};
use crate::server::Server;
use crate::session::LocalSession;
use crate::stanza::{Condition, IqType, Stanza, StanzaError};

/// An iq from a bound client with no `to`, to the domain, or to the
/// client's own bare JID (RFC 6120 10.3.3).
pub async fn from_client(server: &Server, session: &Arc<LocalSession>, stanza: Stanza) -> Routed {
    if matches!(stanza.iq_type(), Some(IqType::Result | IqType::Error)) {
        // Answers to the server's own requests (keepalive pings).
        return count(server, Outcome::Handled);
    }
    let own = session.jid.to_bare();
    let to_own_account = stanza.to.as_ref().is_some_and(|to| to.node().is_some());
    let order: &[Addressee] = if to_own_account {
        &[Addressee::Account, Addressee::Server]
    } else {
        &[Addressee::Server, Addressee::Account]
    };
    dispatch(server, stanza, order, Some(own), Some(session.clone())).await
}

/// An iq to the domain from anyone else (a server-made stanza, a member).
pub async fn to_server(server: &Server, stanza: Stanza) -> Routed {
    if matches!(stanza.iq_type(), Some(IqType::Result | IqType::Error)) {
        // Answers to the server's own requests: keepalive pings, and the
        // barriers that confirm what an outgoing stream wrote.
        crate::s2s::answered(server, &stanza);
        return count(server, Outcome::Handled);
    }
    dispatch(server, stanza, &[Addressee::Server], None, None).await
}

/// An iq to a user's bare JID, answered by the server for the account
/// (RFC 6120 10.3.3).
pub async fn to_account(server: &Server, stanza: Stanza, account: BareJid) -> Routed {
    if matches!(stanza.iq_type(), Some(IqType::Result | IqType::Error)) {
        return count(server, Outcome::Discarded);
    }
    dispatch(server, stanza, &[Addressee::Account], Some(account), None).await
}

/// An iq to a full JID that a module answers instead of the session;
/// given back when none does.
pub async fn to_resource(server: &Server, stanza: Stanza, to: &FullJid) -> Flow {
    if !matches!(stanza.iq_type(), Some(IqType::Get | IqType::Set)) {
        return Flow::Continue(stanza);
    }
    let Some((_, module)) = server.modules.iq_handler(&stanza, &[Addressee::Resource]) else {
        return Flow::Continue(stanza);
    };
    let module = module.clone();
    let request = IqRequest {
        stanza,
        account: Some(to.to_bare()),
        session: None,
    };
    Flow::Done(module.iq(server, request).await)
}

async fn dispatch(
    server: &Server,
    stanza: Stanza,
    order: &[Addressee],
    account: Option<BareJid>,
    session: Option<Arc<LocalSession>>,
) -> Routed {
    if stanza.payload().is_none() {
        return count(server, Outcome::Discarded);
    }
    let Some((to, module)) = server.modules.iq_handler(&stanza, order) else {
        return unsupported(server, &stanza).await;
    };
    let module = module.clone();
    let request = IqRequest {
        stanza,
        account: if to == Addressee::Server {
            None
        } else {
            account
        },
        session,
    };
    module.iq(server, request).await
}

async fn unsupported(server: &Server, stanza: &Stanza) -> Routed {
    let what = stanza
        .payload()
        .map(|payload| format!("{{{}}}{}", payload.ns(), payload.name()))
        .unwrap_or_default();
    let error = StanzaError::new(Condition::ServiceUnavailable)
        .with_text(format!("No service here answers {what}"));
    bounce(server, stanza, error).await
}

/// Sends the result of an iq, with an optional payload, back to its sender:
/// the request was handled; the result's own routing is counted apart.
pub async fn reply(server: &Server, request: &Stanza, payload: Option<Element>) -> Routed {
    let handled = count(server, Outcome::Handled);
    let mut result = request.iq_result();
    if let Some(payload) = payload {
        result.push_child(payload);
    }
    if let Ok(result) = Stanza::from_server(result) {
        let _result_routed = route(server, result).await;
    }
    handled
}

/// Replies with the payload or bounces with the error.
pub async fn answer(
    server: &Server,
    request: &Stanza,
    answer: Result<Option<Element>, StanzaError>,
) -> Routed {
    match answer {
        Ok(payload) => reply(server, request, payload).await,
        Err(error) => bounce(server, request, error).await,
    }
}
