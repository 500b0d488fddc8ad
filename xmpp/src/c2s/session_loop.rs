//! The bound session: stanzas from the socket go to the router, stanzas
//! from the mailbox go to the socket, and timers keep idle and trickling
//! clients in check. On the way out, nothing queued is lost: messages are
//! routed again (another resource or offline storage), requests bounced.

use std::sync::Arc;
use std::time::Duration;

use starling_core::cluster::{SessionChange, StanzaKind};
use starling_core::jid::Jid;
use starling_core::xml::{Element, ns};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::conn::{Conn, ConnError};
use super::negotiate::Bound;
use crate::metrics::Outcome;
use crate::session::{LocalSession, Outbound};
use crate::stanza::{Condition, IqType, Stanza, StanzaError, StanzaParseError, error_reply};
use crate::stream::StreamEvent;
use crate::{presence, router};

/// Bytes of queued stanzas written in one go.
const WRITE_BATCH: usize = 64 * 1024;

/// Runs the session until it ends; returns why (None: closed cleanly).
pub(crate) async fn run(conn: &mut Conn, bound: Bound) -> Option<ConnError> {
    let server = conn.server.clone();
    let queue = server.config.limits.session_queue;
    let closing = server.shutdown.child_token();
    let (session, mut mailbox) =
        LocalSession::new(server.sessions.next_id(), bound.jid, queue, closing);
    if let Some(replaced) = server.sessions.bind(session.clone()) {
        replaced.close(crate::session::CloseReason::Conflict);
    }
    // The same full JID on another member: the older session gives way.
    if let Some(node) = server.cluster.locate(&session.jid) {
        server.cluster.kick(node, &session.jid);
    }
    server.cluster.announce(SessionChange::Bound {
        jid: session.jid.clone(),
    });
    // Everything but the idle loop is boxed: a future's size is that of its
    // largest state, and the idle state is what 20,000 sessions keep.
    let sending = Box::pin(conn.send(&bound.reply));
    let result = match sending.await {
        Ok(()) => serve(conn, &session, &mut mailbox).await,
        Err(error) => Err(error),
    };
    server.sessions.unbind(&session);
    let ending = Box::pin(presence::session_ended(&server, &session));
    ending.await;
    mailbox.close();
    while let Ok(Outbound::Stanza(element)) = mailbox.try_recv() {
        let rerouting = Box::pin(reroute_undelivered(conn, &session, *element));
        rerouting.await;
    }
    result.err()
}

enum Wake {
    Closing,
    Outbound(Option<Outbound>),
    Readable(std::io::Result<()>),
    Timer,
}

async fn serve(
    conn: &mut Conn,
    session: &Arc<LocalSession>,
    mailbox: &mut mpsc::Receiver<Outbound>,
) -> Result<(), ConnError> {
    let server = conn.server.clone();
    let limits = &server.config.limits;
    let idle = Duration::from_secs(limits.idle_timeout_secs);
    let stanza_limit = Duration::from_secs(limits.stanza_timeout_secs);
    let mut last_input = Instant::now();
    let mut partial_since: Option<Instant> = None;
    let mut pinged = false;
    // Whatever arrived with the bind request is already buffered.
    let processing = Box::pin(process_input(conn, session));
    processing.await?;
    loop {
        let idle_deadline = if pinged {
            last_input + idle
        } else {
            last_input + idle / 2
        };
        let deadline = match partial_since {
            Some(since) => idle_deadline.min(since + stanza_limit),
            None => idle_deadline,
        };
        let wake = tokio::select! {
            biased;
            () = session.closing().cancelled() => Wake::Closing,
            outbound = mailbox.recv() => Wake::Outbound(outbound),
            ready = conn.transport.readable() => Wake::Readable(ready),
            () = sleep_until(deadline) => Wake::Timer,
        };
        match wake {
            Wake::Closing => {
                let reason = session
                    .close_reason()
                    .unwrap_or(crate::session::CloseReason::Shutdown);
                if reason == crate::session::CloseReason::AccountRemoved {
                    // The removal's own result (XEP-0077 3.2) is queued and
                    // must precede the stream error; a deleted account's
                    // stanzas have nowhere else to go.
                    if let Ok(Outbound::Stanza(first)) = mailbox.try_recv() {
                        let writing = Box::pin(write_queued(conn, *first, mailbox));
                        writing.await?;
                    }
                }
                return Err(ConnError::stream(reason.condition(), reason.text()));
            }
            Wake::Outbound(Some(Outbound::Stanza(first))) => {
                let writing = Box::pin(write_queued(conn, *first, mailbox));
                writing.await?
            }
            Wake::Outbound(None) => return Ok(()),
            Wake::Readable(ready) => {
                ready?;
                if conn.read_available()? > 0 {
                    last_input = Instant::now();
                    pinged = false;
                }
                let processing = Box::pin(process_input(conn, session));
                let completed = processing.await?;
                if conn.peer_closed() {
                    return Err(ConnError::ClosedByPeer);
                }
                // A stanza completed: what is partial now is the next one,
                // and its clock starts now.
                partial_since = match (conn.parser.in_partial_stanza(), partial_since) {
                    (false, _) => None,
                    (true, Some(since)) if completed == 0 => Some(since),
                    (true, _) => Some(Instant::now()),
                };
            }
            Wake::Timer => {
                let now = Instant::now();
                if partial_since.is_some_and(|since| now >= since + stanza_limit) {
                    return Err(ConnError::Timeout("receiving a stanza"));
                }
                if now >= last_input + idle {
                    return Err(ConnError::Timeout("idle connection"));
                }
                if !pinged && now >= last_input + idle / 2 {
                    // XEP-0199: a dead client shows itself by not answering.
                    pinged = true;
                    let ping = keepalive_ping(&server.domain, &session.jid.to_string());
                    let sending = Box::pin(conn.send(&ping));
                    sending.await?;
                }
            }
        }
    }
}

fn keepalive_ping(domain: &str, to: &str) -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("from", domain)
        .with_attr("to", to)
        .with_attr("type", "get")
        .with_attr("id", "keepalive")
        .with_child(Element::new("ping", ns::PING))
}

/// Writes the first queued stanza and whatever else is queued, in one write.
async fn write_queued(
    conn: &mut Conn,
    first: Element,
    mailbox: &mut mpsc::Receiver<Outbound>,
) -> Result<(), ConnError> {
    let metrics = &conn.server.metrics;
    let mut out = Vec::with_capacity(512);
    let mut next = Some(first);
    while let Some(element) = next.take() {
        metrics.stanza_out(kind_of(&element));
        element.write_to(&mut out, ns::CLIENT);
        if out.len() < WRITE_BATCH {
            if let Ok(Outbound::Stanza(more)) = mailbox.try_recv() {
                next = Some(*more);
            }
        }
    }
    conn.write(&out).await
}

fn kind_of(element: &Element) -> StanzaKind {
    match element.name() {
        "message" => StanzaKind::Message,
        "presence" => StanzaKind::Presence,
        _ => StanzaKind::Iq,
    }
}

/// Handles every complete event the parser holds; returns how many.
async fn process_input(conn: &mut Conn, session: &Arc<LocalSession>) -> Result<usize, ConnError> {
    let mut handled = 0;
    while let Some(event) = conn.parser.next_event()? {
        handled += 1;
        match event {
            StreamEvent::Stanza(element) => handle_element(conn, session, element).await?,
            StreamEvent::End => return Err(ConnError::ClosedByPeer),
            StreamEvent::Header(_) => {
                return Err(ConnError::stream(
                    "not-well-formed",
                    "A second stream header",
                ));
            }
        }
    }
    Ok(handled)
}

async fn handle_element(
    conn: &mut Conn,
    session: &Arc<LocalSession>,
    element: Element,
) -> Result<(), ConnError> {
    let server = conn.server.clone();
    if element.ns() != ns::CLIENT {
        return Err(ConnError::stream(
            "unsupported-stanza-type",
            format!(
                "<{}/> in {} is not a stanza this server handles",
                element.name(),
                element.ns()
            ),
        ));
    }
    let mut stanza = match Stanza::parse(element) {
        Ok(stanza) => stanza,
        // Not message, presence or iq: a first-level element, not a bad
        // stanza, so there is no stanza to answer (RFC 6120 4.9.3.24).
        Err((element, StanzaParseError::NotAStanza(name))) => {
            return Err(ConnError::stream(
                "unsupported-stanza-type",
                format!(
                    "<{name}/> in {} is not a stanza this server handles",
                    element.ns()
                ),
            ));
        }
        Err((element, error)) => {
            if element.attr("type") != Some("error") {
                conn.send(&error_reply(&element, &error.to_stanza_error()))
                    .await?;
            }
            return Ok(());
        }
    };
    server.metrics.stanza_in(stanza.kind);
    match &stanza.from {
        None => stanza.stamp_from(&session.jid),
        Some(from) if *from == Jid::from(session.jid.clone()) => {}
        // A client may put its bare JID; anything else is spoofing (RFC 6120 8.1.2.1).
        Some(from) if *from == Jid::from(session.jid.to_bare()) => {}
        Some(from) => {
            return Err(ConnError::stream(
                "invalid-from",
                format!("'from' {from} is not this session's JID"),
            ));
        }
    }
    Box::pin(router::from_client(&server, session, stanza)).await;
    Ok(())
}

/// A stanza was queued for this session but never written: give it another
/// route so nothing is silently lost.
async fn reroute_undelivered(conn: &Conn, session: &LocalSession, element: Element) {
    let server = &conn.server;
    let Ok(stanza) = Stanza::from_server(element) else {
        return server.metrics.outcome(Outcome::Discarded);
    };
    match stanza.kind {
        // The session is unbound now: routing again finds another resource
        // or the offline store (RFC 6121 8.5.3.2.1).
        StanzaKind::Message => router::route(server, stanza).await,
        StanzaKind::Iq if matches!(stanza.iq_type(), Some(IqType::Get | IqType::Set)) => {
            let error = StanzaError::new(Condition::ServiceUnavailable)
                .with_text("The recipient disconnected");
            router::bounce(server, &stanza, error).await
        }
        _ => {
            tracing::trace!(jid = %session.jid, "queued presence or iq response dropped at close");
            server.metrics.outcome(Outcome::Discarded);
        }
    }
}
