//! RFC 6120 section 6 on the wire: drives a SASL exchange over the
//! connection with the mechanisms in `crate::auth`, looking credentials up
//! between the messages, and applies the per-IP failure limit.

use starling_core::jid::NodePart;
use starling_core::xml::{Element, ns};
use tokio::time::Instant;

use super::conn::{Conn, ConnError};
use crate::auth::{
    ChannelBindings, Mechanism, SaslError, ScramServer, authorize, decode_payload, encode_payload,
    parse_plain,
};
use crate::metrics::incr;
use crate::stream::StreamEvent;
use crate::users::UserDirectory;

/// `<mechanisms/>` in the order they are advertised (features are only
/// offered where PLAIN is allowed too: over TLS, or where configured), and
/// the XEP-0440 `<sasl-channel-binding/>` naming the types the -PLUS ones
/// can use (none when the stream has nothing to bind to).
pub(crate) fn mechanism_features(bindings: &ChannelBindings) -> Vec<Element> {
    let mut mechanisms = Element::new("mechanisms", ns::SASL);
    for mechanism in Mechanism::offered(true, !bindings.is_empty()) {
        mechanisms.push_child(Element::new("mechanism", ns::SASL).with_text(mechanism.name()));
    }
    let mut features = vec![mechanisms];
    if !bindings.is_empty() {
        let mut types = Element::new("sasl-channel-binding", SASL_CB);
        for kind in bindings.types() {
            types.push_child(
                Element::new("channel-binding", SASL_CB).with_attr("type", kind.name()),
            );
        }
        features.push(types);
    }
    features
}

/// XEP-0440 SASL channel-binding type capability.
const SASL_CB: &str = "urn:xmpp:sasl-cb:0";

/// `<failure><condition/><text/></failure>`.
pub(crate) fn failure(condition: &str, text: &str) -> Element {
    Element::new("failure", ns::SASL)
        .with_child(Element::new(condition.to_owned(), ns::SASL))
        .with_child(
            Element::new("text", ns::SASL)
                .with_attr("xml:lang", "en")
                .with_text(text),
        )
}

/// How one exchange ended (its `<success/>` or `<failure/>` is sent).
pub(crate) enum Outcome {
    Success(String),
    /// `counted`: the attempt counts towards the per-connection limit (all
    /// but a channel-binding mismatch, see [`SaslError::is_binding_mismatch`]).
    Failure {
        counted: bool,
    },
}

/// Runs one exchange started by `auth`; `Err` ends the connection.
pub(crate) async fn authenticate(
    conn: &mut Conn,
    auth: &Element,
    deadline: Instant,
) -> Result<Outcome, ConnError> {
    let ip = conn.peer.ip();
    let now = Instant::now().into_std();
    let outcome = if !conn.server.ip_limits.may_authenticate(ip, now) {
        Err(SaslError::TemporaryAuthFailure)
    } else if !conn.server.cluster.ready() {
        // A joining node waits for the session directory before logins.
        Err(SaslError::TemporaryAuthFailure)
    } else {
        exchange(conn, auth, deadline).await?
    };
    match outcome {
        Ok((username, additional)) => {
            let mut success = Element::new("success", ns::SASL);
            if let Some(data) = additional {
                success.push_text(encode_payload(&data));
            }
            conn.send(&success).await?;
            incr(&conn.server.metrics.logins);
            Ok(Outcome::Success(username))
        }
        Err(error) => {
            // Only a tried password counts towards the per-IP limit (a refused
            // downgrade or binding type is not a guess).
            if matches!(error, SaslError::NotAuthorized) {
                conn.server
                    .ip_limits
                    .record_auth_failure(ip, Instant::now().into_std());
            }
            incr(&conn.server.metrics.auth_failures);
            tracing::debug!(peer = %conn.peer, %error, "SASL failure");
            conn.send(&failure(error.condition(), &error.to_string()))
                .await?;
            Ok(Outcome::Failure {
                counted: !error.is_binding_mismatch(),
            })
        }
    }
}

/// The mechanism-specific part. The outer `Result` is the connection's; the
/// inner one is the exchange's (success data or the failure to send).
async fn exchange(
    conn: &mut Conn,
    auth: &Element,
    deadline: Instant,
) -> Result<Result<(String, Option<Vec<u8>>), SaslError>, ConnError> {
    // The same bindings the features advertised (they depend only on the connection).
    let bindings = conn.transport.channel_bindings(&conn.server);
    let name = auth.attr("mechanism").unwrap_or_default();
    let mechanism = match Mechanism::select(name, true, !bindings.is_empty()) {
        Ok(mechanism) => mechanism,
        Err(error) => return Ok(Err(error)),
    };
    let initial = match initial_response(conn, auth, deadline).await? {
        Ok(initial) => initial,
        Err(error) => return Ok(Err(error)),
    };
    let domain = conn.server.domain.clone();
    match mechanism.scram_hash() {
        None => Ok(plain(&conn.server.users, &initial, &domain).await),
        Some(hash) => {
            let plus = mechanism.is_plus();
            let parsed = ScramServer::parse_client_first_bound(hash, plus, &bindings, &initial);
            let client_first = match parsed {
                Ok(client_first) => client_first,
                Err(error) => return Ok(Err(error)),
            };
            let Ok(node) = NodePart::new(client_first.username()).map(|node| node.to_string())
            else {
                return Ok(Err(SaslError::NotAuthorized));
            };
            let credential = match conn.server.users.get(&node).await {
                Ok(record) => record.and_then(|record| UserDirectory::credential(&record, hash)),
                Err(error) => {
                    tracing::error!(%error, "credential lookup failed");
                    return Ok(Err(SaslError::TemporaryAuthFailure));
                }
            };
            let (scram, server_first) = ScramServer::new(client_first, credential);
            let challenge =
                Element::new("challenge", ns::SASL).with_text(encode_payload(&server_first));
            conn.send(&challenge).await?;
            let response = match next_response(conn, deadline).await? {
                Ok(response) => response,
                Err(error) => return Ok(Err(error)),
            };
            let finished = scram.finish(&response).and_then(|done| {
                let jid = authorize(&done.username, done.authzid.as_deref(), &domain)?;
                let username = jid.node().map(|node| node.to_string()).unwrap_or_default();
                Ok((username, Some(done.server_final_message)))
            });
            Ok(finished)
        }
    }
}

async fn plain(
    users: &UserDirectory,
    message: &[u8],
    domain: &str,
) -> Result<(String, Option<Vec<u8>>), SaslError> {
    let plain = parse_plain(message)?;
    let jid = authorize(&plain.authcid, plain.authzid.as_deref(), domain)?;
    let username = jid
        .node()
        .map(|node| node.to_string())
        .ok_or(SaslError::NotAuthorized)?;
    match users.check_password(&username, &plain.password).await {
        Ok(true) => Ok((username, None)),
        Ok(false) => Err(SaslError::NotAuthorized),
        Err(error) => {
            tracing::error!(%error, "password check failed");
            Err(SaslError::TemporaryAuthFailure)
        }
    }
}

/// The initial response in `<auth/>`, or (when absent) the answer to an
/// empty challenge (RFC 6120 6.4.2).
async fn initial_response(
    conn: &mut Conn,
    auth: &Element,
    deadline: Instant,
) -> Result<Result<Vec<u8>, SaslError>, ConnError> {
    let text = auth.text();
    if !text.trim().is_empty() {
        return Ok(decode_payload(text.trim()));
    }
    conn.send(&Element::new("challenge", ns::SASL)).await?;
    next_response(conn, deadline).await
}

/// Waits for `<response/>` (or `<abort/>`).
async fn next_response(
    conn: &mut Conn,
    deadline: Instant,
) -> Result<Result<Vec<u8>, SaslError>, ConnError> {
    match conn.next_event(deadline, "authentication").await? {
        StreamEvent::Stanza(element) if element.is("response", ns::SASL) => {
            let text = element.text();
            if text.trim().is_empty() {
                return Ok(Ok(Vec::new()));
            }
            Ok(decode_payload(text.trim()))
        }
        StreamEvent::Stanza(element) if element.is("abort", ns::SASL) => {
            Ok(Err(SaslError::Aborted))
        }
        StreamEvent::End => Err(ConnError::ClosedByPeer),
        _ => Err(ConnError::stream(
            "not-authorized",
            "Expected a SASL <response/>",
        )),
    }
}
