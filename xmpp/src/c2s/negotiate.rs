//! RFC 6120 sections 4-7 on the server side: stream headers and features,
//! STARTTLS, SASL, resource binding — plus XEP-0078 legacy authentication
//! and XEP-0077 registration, which happen on an unauthenticated stream.
//!
//! Each stream restart (after TLS, after SASL) is one turn of the outer
//! loop; the negotiation as a whole must finish before
//! `limits.negotiation_timeout_secs`.

use std::time::Duration;

use starling_core::jid::{BareJid, FullJid};
use starling_core::xml::{Element, ns};
use tokio::time::Instant;

use super::conn::{Conn, ConnError};
use super::session_loop::Resumed;
use super::{legacy, sasl};
use crate::modules::register;
use crate::sm::{self, wire as sm_wire};
use crate::stanza::{Condition, IqType, Stanza, StanzaError, error_reply};
use crate::stream::{StreamEvent, StreamHeader};

/// A negotiated stream: the resource to bind and the reply to send once
/// the session is registered.
pub(crate) struct Bound {
    pub(crate) jid: FullJid,
    pub(crate) reply: Element,
}

/// How negotiation ended: a new resource, or a session resumed (XEP-0198).
pub(crate) enum Negotiated {
    Bound(Bound),
    Resumed(Resumed),
}

/// What the client has achieved so far on this connection.
#[derive(Default)]
struct Progress {
    /// Set after SASL success: the authenticated username.
    user: Option<String>,
    /// Failed authentication attempts on this connection.
    failures: u32,
}

pub(crate) async fn negotiate(conn: &mut Conn) -> Result<Negotiated, ConnError> {
    let timeout = Duration::from_secs(conn.server.limits().negotiation_timeout_secs);
    let deadline = Instant::now() + timeout;
    let mut progress = Progress::default();
    loop {
        let header = expect_header(conn, deadline).await?;
        conn.send_header(header.lang.as_deref(), header.version.is_some())
            .await?;
        // Streams without version 1.0 predate features (RFC 6120 4.7.5).
        if header.version.is_some() {
            let features = features(conn, &progress);
            conn.send_stream_element(&features).await?;
        }
        if let Some(bound) = stream_turn(conn, &mut progress, deadline).await? {
            return Ok(bound);
        }
    }
}

/// Reads the client's stream header and checks it (RFC 6120 4.7, 4.9.3).
async fn expect_header(conn: &mut Conn, deadline: Instant) -> Result<StreamHeader, ConnError> {
    let header = match conn.next_event(deadline, "stream negotiation").await? {
        StreamEvent::Header(header) => header,
        _ => {
            return Err(ConnError::stream(
                "not-well-formed",
                "Expected a stream header",
            ));
        }
    };
    if header.ns != ns::CLIENT {
        return Err(ConnError::stream(
            "invalid-namespace",
            format!("Client streams use jabber:client, not {:?}", header.ns),
        ));
    }
    if let Some(to) = &header.to {
        let ours = BareJid::new(to)
            .is_ok_and(|jid| jid.node().is_none() && jid.domain().as_str() == conn.server.domain);
        if !ours {
            return Err(ConnError::stream(
                "host-unknown",
                format!("This server does not serve {to:?}"),
            ));
        }
    }
    if let Some(version) = &header.version {
        let major = version
            .split('.')
            .next()
            .and_then(|major| major.parse::<u32>().ok());
        if major != Some(1) {
            return Err(ConnError::stream(
                "unsupported-version",
                format!("Version {version:?} is not supported; use 1.0"),
            ));
        }
    }
    Ok(header)
}

/// `<stream:features/>` for the current state of the connection.
fn features(conn: &Conn, progress: &Progress) -> Element {
    let config = &conn.server.config.c2s;
    let tls = conn.transport.is_tls();
    let mut features = Element::new("features", ns::STREAM);
    if progress.user.is_some() {
        features.push_child(Element::new("bind", ns::BIND));
        features.push_child(
            Element::new("session", ns::SESSION).with_child(Element::new("optional", ns::SESSION)),
        );
        // What the modules offer (pre-approvals, roster versioning).
        for feature in conn.server.modules.stream_features() {
            features.push_child(Element::new(feature.name, feature.ns));
        }
        return features;
    }
    if conn.transport.can_start_tls() {
        let mut starttls = Element::new("starttls", ns::TLS);
        if !config.allow_plain_without_tls {
            starttls.push_child(Element::new("required", ns::TLS));
        }
        features.push_child(starttls);
    }
    if tls || config.allow_plain_without_tls {
        let bindings = conn.transport.channel_bindings(&conn.server);
        for feature in sasl::mechanism_features(&bindings) {
            features.push_child(feature);
        }
        if config.legacy_auth {
            features.push_child(Element::new("auth", ns::AUTH_FEATURE));
        }
        if config.registration {
            features.push_child(Element::new("register", ns::REGISTER_FEATURE));
        }
    }
    features
}

/// Handles the top-level elements of one stream until it restarts
/// (`Ok(None)`) or a resource is bound or a session resumed (`Ok(Some)`).
async fn stream_turn(
    conn: &mut Conn,
    progress: &mut Progress,
    deadline: Instant,
) -> Result<Option<Negotiated>, ConnError> {
    loop {
        let element = match conn.next_event(deadline, "stream negotiation").await? {
            StreamEvent::Stanza(element) => element,
            StreamEvent::End => return Err(ConnError::ClosedByPeer),
            StreamEvent::Header(_) => {
                return Err(ConnError::stream(
                    "not-well-formed",
                    "A second stream header",
                ));
            }
        };
        let tls_allowed = conn.transport.is_tls() || conn.server.config.c2s.allow_plain_without_tls;
        match (element.ns(), element.name()) {
            (ns::TLS, "starttls") if conn.transport.can_start_tls() && progress.user.is_none() => {
                start_tls(conn).await?;
                return Ok(None);
            }
            (ns::SASL, "auth") if progress.user.is_none() => {
                if !tls_allowed {
                    let failure = sasl::failure("encryption-required", "Negotiate TLS first");
                    conn.send(&failure).await?;
                    continue;
                }
                match sasl::authenticate(conn, &element, deadline).await? {
                    sasl::Outcome::Success(user) => {
                        conn.parser.reset();
                        progress.user = Some(user);
                        return Ok(None);
                    }
                    sasl::Outcome::Failure { counted: true } => count_failure(conn, progress)?,
                    sasl::Outcome::Failure { counted: false } => {}
                }
            }
            (ns::CLIENT, "iq") => {
                let stanza = match Stanza::parse(element) {
                    Ok(stanza) => stanza,
                    Err((element, error)) => {
                        conn.send(&error_reply(&element, &error.to_stanza_error()))
                            .await?;
                        continue;
                    }
                };
                if let Some(bound) = negotiation_iq(conn, progress, stanza, tls_allowed).await? {
                    return Ok(Some(Negotiated::Bound(bound)));
                }
            }
            (sm_wire::NS, "resume") if conn.server.modules.sm().is_some() => {
                let Some(user) = progress.user.clone() else {
                    return Err(ConnError::stream("not-authorized", "Authenticate first"));
                };
                let resuming = Box::pin(sm::resume::resume(&conn.server, &user, &element));
                match resuming.await {
                    Ok((taken, previd)) => {
                        return Ok(Some(Negotiated::Resumed(Resumed { taken, previd })));
                    }
                    // The client may bind a new resource instead.
                    Err(failed) => conn.send(&failed).await?,
                }
            }
            (sm_wire::NS, "enable")
                if conn.server.modules.sm().is_some() && progress.user.is_some() =>
            {
                let failed = sm_wire::failed(
                    "unexpected-request",
                    None,
                    Some("Bind a resource before enabling stream management"),
                );
                conn.send(&failed).await?;
            }
            (namespace, name) => {
                let text = format!("<{name} xmlns='{namespace}'/> before authentication");
                return Err(ConnError::stream("not-authorized", text));
            }
        }
    }
}

async fn start_tls(conn: &mut Conn) -> Result<(), ConnError> {
    conn.send(&Element::new("proceed", ns::TLS)).await?;
    if !conn.parser.buffered_is_whitespace() {
        // Bytes after <starttls/> would be read as plain text: refuse them.
        return Err(ConnError::stream(
            "not-authorized",
            "Data sent before the TLS handshake",
        ));
    }
    let handshake = conn.transport.start_tls(&conn.server.tls);
    let timeout = Duration::from_secs(conn.server.limits().negotiation_timeout_secs);
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(ConnError::Io(error)),
        Err(_) => return Err(ConnError::Timeout("TLS handshake")),
    }
    crate::metrics::incr(&conn.server.metrics.tls_handshakes);
    conn.parser.reset();
    Ok(())
}

fn count_failure(conn: &mut Conn, progress: &mut Progress) -> Result<(), ConnError> {
    progress.failures += 1;
    if progress.failures >= conn.server.limits().auth_failures_per_connection {
        return Err(ConnError::stream(
            "policy-violation",
            "Too many failed authentication attempts",
        ));
    }
    Ok(())
}

/// An iq before the session exists: bind (after SASL), legacy auth or
/// registration (before); anything else is refused.
async fn negotiation_iq(
    conn: &mut Conn,
    progress: &mut Progress,
    stanza: Stanza,
    tls_allowed: bool,
) -> Result<Option<Bound>, ConnError> {
    let payload = stanza
        .payload()
        .map(|p| (p.ns().to_owned(), p.name().to_owned()));
    let payload = payload
        .as_ref()
        .map(|(ns, name)| (ns.as_str(), name.as_str()));
    if let Some(user) = progress.user.clone() {
        return match payload {
            Some((ns::BIND, "bind")) if stanza.iq_type() == Some(IqType::Set) => {
                match bind_request(conn, &user, &stanza) {
                    Ok(bound) => Ok(Some(bound)),
                    Err(error) => {
                        conn.send(&error_reply(&stanza.element, &error)).await?;
                        Ok(None)
                    }
                }
            }
            _ => Err(ConnError::stream("not-authorized", "Bind a resource first")),
        };
    }
    let config = &conn.server.config.c2s;
    match payload {
        Some((ns::AUTH, "query")) if config.legacy_auth && tls_allowed => {
            let outcome = legacy::handle(conn, &stanza).await?;
            match outcome {
                legacy::Outcome::Bound(bound) => Ok(Some(bound)),
                legacy::Outcome::Answered => Ok(None),
                legacy::Outcome::Failed => {
                    count_failure(conn, progress)?;
                    Ok(None)
                }
            }
        }
        Some((ns::REGISTER, "query")) if tls_allowed => {
            let reply = register::before_auth(&conn.server, &stanza).await;
            conn.send(&reply).await?;
            Ok(None)
        }
        Some((ns::AUTH | ns::REGISTER, _)) => {
            let error =
                StanzaError::new(Condition::PolicyViolation).with_text("Negotiate TLS first");
            conn.send(&error_reply(&stanza.element, &error)).await?;
            Ok(None)
        }
        _ => Err(ConnError::stream("not-authorized", "Authenticate first")),
    }
}

/// RFC 6120 7.6: the resource the client asked for, or one we make up.
fn bind_request(conn: &Conn, user: &str, stanza: &Stanza) -> Result<Bound, StanzaError> {
    let requested = stanza
        .payload()
        .and_then(|bind| bind.child("resource", ns::BIND))
        .map(|resource| resource.text())
        .filter(|resource| !resource.is_empty());
    let resource = requested.unwrap_or_else(generated_resource);
    let jid = full_jid(user, &conn.server.domain, &resource).ok_or_else(|| {
        StanzaError::new(Condition::BadRequest)
            .with_text("The resource is not a valid JID resourcepart")
    })?;
    let mut reply = stanza.iq_result();
    reply.remove_attr("from");
    reply.push_child(
        Element::new("bind", ns::BIND)
            .with_child(Element::new("jid", ns::BIND).with_text(jid.as_str())),
    );
    Ok(Bound { jid, reply })
}

pub(crate) fn full_jid(user: &str, domain: &str, resource: &str) -> Option<FullJid> {
    BareJid::new(&format!("{user}@{domain}"))
        .ok()?
        .with_resource_str(resource)
        .ok()
}

pub(crate) fn generated_resource() -> String {
    format!("starling-{}", &super::conn::new_stream_id()[..12])
}
