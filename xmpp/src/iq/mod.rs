//! IQs the server answers itself: for its clients (roster, session, ping,
//! disco, version, registration) and on behalf of accounts. Any request it
//! does not handle gets `<service-unavailable/>`, never silence.

pub mod disco;
pub mod register;
pub mod version;

use std::sync::Arc;

use starling_core::xml::{Element, ns};

use crate::metrics::Outcome;
use crate::roster;
use crate::router::{bounce, count, route};
use crate::server::Server;
use crate::session::LocalSession;
use crate::stanza::{Condition, IqType, Stanza, StanzaError};

/// An iq from a bound client to its server or its own account.
pub async fn from_client(server: &Server, session: &Arc<LocalSession>, stanza: Stanza) {
    if matches!(stanza.iq_type(), Some(IqType::Result | IqType::Error)) {
        // Answers to the server's own requests (keepalive pings).
        return count(server, Outcome::Handled);
    }
    let Some(payload) = stanza.payload() else {
        return count(server, Outcome::Discarded);
    };
    let (name, namespace) = (payload.name().to_owned(), payload.ns().to_owned());
    match (namespace.as_str(), name.as_str()) {
        (ns::ROSTER, "query") => roster::service::handle_iq(server, session, stanza).await,
        (ns::SESSION, "session") => reply(server, &stanza, None).await,
        (ns::REGISTER, "query") => register::from_client(server, session, stanza).await,
        (ns::BIND, "bind") => {
            let error = StanzaError::new(Condition::NotAllowed)
                .with_text("This stream already has a bound resource");
            bounce(server, &stanza, error).await
        }
        // To the user's own bare JID: answered for the account, not the server.
        _ if stanza.to.as_ref().is_some_and(|to| to.node().is_some()) => {
            handle_for_account(server, stanza).await
        }
        _ => handle_server(server, stanza).await,
    }
}

/// An iq to the domain (from a client or from another entity).
pub async fn handle_server(server: &Server, stanza: Stanza) {
    if matches!(stanza.iq_type(), Some(IqType::Result | IqType::Error)) {
        return count(server, Outcome::Handled);
    }
    let Some(payload) = stanza.payload() else {
        return count(server, Outcome::Discarded);
    };
    let get = stanza.iq_type() == Some(IqType::Get);
    let answer = match (payload.ns(), payload.name()) {
        (ns::PING, "ping") if get => Some(Ok(None)),
        (ns::DISCO_INFO, "query") if get => Some(disco::server_info(server, payload).map(Some)),
        (ns::DISCO_ITEMS, "query") if get => Some(disco::server_items(server, payload).map(Some)),
        (ns::VERSION, "query") if get => Some(Ok(Some(version::answer()))),
        _ => None,
    };
    match answer {
        Some(Ok(payload)) => reply(server, &stanza, payload).await,
        Some(Err(error)) => bounce(server, &stanza, error).await,
        None => unsupported(server, &stanza).await,
    }
}

/// An iq to a user's bare JID, answered by the server for the account
/// (RFC 6120 10.3.3).
pub async fn handle_for_account(server: &Server, stanza: Stanza) {
    if matches!(stanza.iq_type(), Some(IqType::Result | IqType::Error)) {
        return count(server, Outcome::Discarded);
    }
    let Some(payload) = stanza.payload() else {
        return count(server, Outcome::Discarded);
    };
    let get = stanza.iq_type() == Some(IqType::Get);
    let answer = match (payload.ns(), payload.name()) {
        (ns::DISCO_INFO, "query") if get => {
            Some(disco::account_info(server, &stanza).await.map(Some))
        }
        (ns::DISCO_ITEMS, "query") if get => {
            Some(disco::account_items(server, &stanza).await.map(Some))
        }
        (ns::PING, "ping") if get => {
            Some(disco::account_exists(server, &stanza).await.map(|_| None))
        }
        _ => None,
    };
    match answer {
        Some(Ok(payload)) => reply(server, &stanza, payload).await,
        Some(Err(error)) => bounce(server, &stanza, error).await,
        None => unsupported(server, &stanza).await,
    }
}

async fn unsupported(server: &Server, stanza: &Stanza) {
    let what = stanza
        .payload()
        .map(|payload| format!("{{{}}}{}", payload.ns(), payload.name()))
        .unwrap_or_default();
    let error = StanzaError::new(Condition::ServiceUnavailable)
        .with_text(format!("No service here answers {what}"));
    bounce(server, stanza, error).await
}

/// Sends the result of an iq, with an optional payload, back to its sender.
pub async fn reply(server: &Server, request: &Stanza, payload: Option<Element>) {
    count(server, Outcome::Handled);
    let mut result = request.iq_result();
    if let Some(payload) = payload {
        result.push_child(payload);
    }
    if let Ok(result) = Stanza::from_server(result) {
        route(server, result).await;
    }
}
