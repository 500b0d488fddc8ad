//! `POST /api/messages`: an application sends a chat or headline message
//! to a JID. It is routed like any stanza (delivered on the recipient's
//! node, stored offline, or bounced) and the answer says which.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde::{Deserialize, Serialize};
use starling_core::jid::Jid;
use starling_core::xml::{Element, ns};

use crate::http::auth::AdminUser;
use crate::http::{HttpError, HttpState};
use crate::metrics::Outcome;
use crate::router;
use crate::stanza::Stanza;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    #[default]
    Chat,
    Headline,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Chat => "chat",
            Kind::Headline => "headline",
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Send {
    to: String,
    body: String,
    #[serde(default, rename = "type")]
    kind: Kind,
    /// A JID of this domain; the domain itself when absent.
    from: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Sent {
    /// `delivered`, `stored`, `bounced` or `discarded` (a headline nobody
    /// was online to read, RFC 6121 8.5.2.1.1).
    outcome: &'static str,
    /// The stanza error condition of a bounce.
    #[serde(skip_serializing_if = "Option::is_none")]
    condition: Option<&'static str>,
    /// The id the message was sent with.
    id: String,
}

/// A fresh stanza id, so replies and errors can be matched to this send.
fn message_id() -> String {
    use rand::RngExt;
    let bytes: [u8; 9] = rand::rng().random();
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("api-{hex}")
}

pub(crate) async fn send(
    State(state): State<HttpState>,
    admin: AdminUser,
    body: Result<Json<Send>, JsonRejection>,
) -> Result<Json<Sent>, HttpError> {
    let Json(request) = body?;
    let server = &state.server;
    let to = Jid::new(request.to.trim())
        .map_err(|error| HttpError::BadRequest(format!("bad \"to\" {:?}: {error}", request.to)))?;
    let from = match request.from.as_deref().map(str::trim) {
        None | Some("") => server.domain_jid.clone(),
        Some(from) => {
            let jid = Jid::new(from).map_err(|error| {
                HttpError::BadRequest(format!("bad \"from\" {from:?}: {error}"))
            })?;
            if jid.domain().as_str() != server.domain {
                return Err(HttpError::BadRequest(format!(
                    "\"from\" must be a JID of {}",
                    server.domain
                )));
            }
            jid
        }
    };
    if request.body.is_empty() {
        return Err(HttpError::BadRequest("the body must not be empty".into()));
    }
    let id = message_id();
    let message = Element::new("message", ns::CLIENT)
        .with_attr("from", from.as_str())
        .with_attr("to", to.as_str())
        .with_attr("type", request.kind.as_str())
        .with_attr("id", id.clone())
        .with_child(Element::new("body", ns::CLIENT).with_text(request.body));
    let stanza = Stanza::from_server(message)
        .map_err(|error| HttpError::BadRequest(format!("not a valid message: {error}")))?;
    let routed = router::route(server, stanza).await;
    state.counters.messages_sent.fetch_add(1, Ordering::Relaxed);
    let outcome = match routed.outcome {
        // The server answering for the recipient is a delivery too.
        Outcome::Delivered | Outcome::Handled => Outcome::Delivered,
        other => other,
    };
    tracing::info!(%to, outcome = outcome.name(), admin = %admin.name, "message sent over HTTP");
    Ok(Json(Sent {
        outcome: outcome.name(),
        condition: routed.condition.map(|condition| condition.name()),
        id,
    }))
}
