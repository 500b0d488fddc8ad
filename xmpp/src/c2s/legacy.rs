//! XEP-0078 non-SASL authentication, kept because Tsung's default scenarios
//! use it. Only the plaintext password form is offered: the digest form
//! needs the clear password on the server, which Starling never stores.

use starling_core::jid::NodePart;
use starling_core::xml::{Element, ns};
use tokio::time::Instant;

use super::conn::{Conn, ConnError};
use super::negotiate::{Bound, full_jid, generated_resource};
use crate::metrics::incr;
use crate::stanza::{Condition, IqType, Stanza, StanzaError, error_reply};

pub(crate) enum Outcome {
    /// Authenticated, and the resource is to be bound.
    Bound(Bound),
    /// A field query was answered, or a malformed request refused.
    Answered,
    /// Wrong credentials (counted against the connection's limit).
    Failed,
}

pub(crate) async fn handle(conn: &mut Conn, stanza: &Stanza) -> Result<Outcome, ConnError> {
    let Some(query) = stanza.payload() else {
        return Ok(Outcome::Answered);
    };
    if stanza.iq_type() == Some(IqType::Get) {
        let mut fields = Element::new("query", ns::AUTH);
        let username = query
            .child("username", ns::AUTH)
            .map(Element::text)
            .unwrap_or_default();
        fields.push_child(Element::new("username", ns::AUTH).with_text(username));
        fields.push_child(Element::new("password", ns::AUTH));
        fields.push_child(Element::new("resource", ns::AUTH));
        let mut result = stanza.iq_result();
        result.push_child(fields);
        conn.send(&result).await?;
        return Ok(Outcome::Answered);
    }
    if stanza.iq_type() != Some(IqType::Set) {
        return Ok(Outcome::Answered);
    }
    let field = |name: &str| {
        query
            .child(name, ns::AUTH)
            .map(Element::text)
            .filter(|v| !v.is_empty())
    };
    let (Some(username), Some(password)) = (field("username"), field("password")) else {
        // XEP-0078 section 3: missing fields (or only a digest) are not acceptable.
        let error = StanzaError::new(Condition::NotAcceptable)
            .with_text("Username and plaintext password are required");
        conn.send(&error_reply(&stanza.element, &error)).await?;
        return Ok(Outcome::Answered);
    };
    let resource = field("resource").unwrap_or_else(generated_resource);
    let ip = conn.peer.ip();
    let server = conn.server.clone();
    if !server
        .ip_limits
        .may_authenticate(ip, Instant::now().into_std())
        || !server.cluster.ready()
    {
        let error = StanzaError::new(Condition::ResourceConstraint).with_text("Try again later");
        conn.send(&error_reply(&stanza.element, &error)).await?;
        return Ok(Outcome::Answered);
    }
    let node = NodePart::new(&username).map(|node| node.to_string());
    let verified = match &node {
        Ok(node) => server.users.check_password(node, &password).await,
        Err(_) => Ok(false),
    };
    let jid = node
        .ok()
        .and_then(|node| full_jid(&node, &server.domain, &resource));
    match (verified, jid) {
        (Ok(true), Some(jid)) => {
            incr(&server.metrics.logins);
            let mut reply = stanza.iq_result();
            reply.remove_attr("from");
            Ok(Outcome::Bound(Bound { jid, reply }))
        }
        (Ok(true), None) => {
            let error = StanzaError::new(Condition::BadRequest).with_text("Invalid resource");
            conn.send(&error_reply(&stanza.element, &error)).await?;
            Ok(Outcome::Answered)
        }
        (Ok(false), _) => {
            incr(&server.metrics.auth_failures);
            server
                .ip_limits
                .record_auth_failure(ip, Instant::now().into_std());
            let error =
                StanzaError::new(Condition::NotAuthorized).with_text("Authentication failed");
            conn.send(&error_reply(&stanza.element, &error)).await?;
            Ok(Outcome::Failed)
        }
        (Err(storage), _) => {
            tracing::error!(error = %storage, "password check failed");
            let error =
                StanzaError::new(Condition::InternalServerError).with_text("Try again later");
            conn.send(&error_reply(&stanza.element, &error)).await?;
            Ok(Outcome::Answered)
        }
    }
}
