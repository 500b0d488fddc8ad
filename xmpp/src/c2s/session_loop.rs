//! The bound session: stanzas from the socket go to the router, stanzas
//! from the mailbox go to the socket, and timers keep idle and trickling
//! clients in check. On the way out, nothing queued is lost: messages are
//! routed again (another resource or offline storage), requests bounced.
//!
//! With XEP-0198 enabled the loop counts stanzas both ways, keeps what it
//! wrote until the client acknowledges it (`stream_management`), and a
//! resumable session whose socket is lost is not ended but detached: the
//! connection task then waits for a resumption (`detached`).

use std::sync::Arc;
use std::time::Duration;

use starling_core::cluster::{KickReason, SessionChange, StanzaKind};
use starling_core::jid::Jid;
use starling_core::xml::{Element, ns};
use tokio::time::{Instant, sleep_until};

use super::conn::{Conn, ConnError};
use super::negotiate::Bound;
use super::stream_management::{self as sm_stream, Sm};
use crate::metrics::Outcome;
use crate::router;
use crate::server::Server;
use crate::session::{CloseReason, LocalSession};
use crate::sm::{SmState, Taken, wire};
use crate::stanza::{Stanza, StanzaParseError, error_reply};
use crate::stream::StreamEvent;

/// Stanzas taken from the mailbox for one write.
const WRITE_BATCH: usize = 256;

/// How a connection's session part ended.
pub(crate) struct Ended {
    /// Why (None: closed cleanly); sent to the client if it is a stream error.
    pub(crate) error: Option<ConnError>,
    /// The socket is gone but the session waits for its client to resume.
    pub(crate) detached: Option<Detached>,
}

/// A resumable session without a connection.
pub(crate) struct Detached {
    pub(crate) session: Arc<LocalSession>,
    pub(crate) sm: Box<SmState>,
}

/// A session taken over by a `<resume/>` on this connection.
pub(crate) struct Resumed {
    pub(crate) taken: Taken,
    pub(crate) previd: String,
}

/// Runs a newly bound session until the connection ends.
pub(crate) async fn run(conn: &mut Conn, bound: Bound) -> Ended {
    let Bound { jid, reply } = bound;
    let server = conn.server.clone();
    let queue = server.limits().session_queue;
    let session = LocalSession::new(server.sessions.next_id(), jid, queue);
    // The older session goes quietly: this one tells the contacts it is
    // gone (the `SessionOpened` hooks), before anything it says itself.
    let replaced = server.sessions.bind(session.clone());
    if let Some(replaced) = &replaced {
        replaced.close(CloseReason::Replaced);
    }
    // The same full JID on another member: the older session gives way.
    if let Some(node) = server.cluster.locate(&session.jid) {
        server
            .cluster
            .kick(node, &session.jid, KickReason::Conflict);
    }
    server.cluster.announce(SessionChange::Bound {
        jid: session.jid.clone(),
    });
    // Bound after the node began shutting down: the sweep missed it.
    if server.shutdown.is_cancelled() {
        session.close(CloseReason::Shutdown);
    }
    // Everything but the idle loop is boxed: a future's size is that of its
    // largest state, and the idle state is what 20,000 sessions keep.
    let opening = Box::pin(
        server
            .modules
            .session_opened(&server, &session, replaced.as_ref()),
    );
    opening.await;
    drop(replaced);
    let sending = Box::pin(conn.send(&reply));
    let sent = sending.await;
    // Not kept for the session's life (about 1 KiB of elements).
    drop(reply);
    match sent {
        Ok(()) => attend(conn, session, None).await,
        Err(error) => {
            end_session(&server, &session, None).await;
            Ended {
                error: Some(error),
                detached: None,
            }
        }
    }
}

/// Continues a session this connection resumed: `<resumed/>`, what the
/// client has not acknowledged again, then the usual loop.
pub(crate) async fn resumed(conn: &mut Conn, resumed: Resumed) -> Ended {
    let Resumed {
        taken: Taken { session, sm },
        previd,
    } = resumed;
    let mut sm = sm;
    let mut out = Vec::new();
    wire::resumed(&previd, sm.settle()).write_to(&mut out, ns::CLIENT);
    for stanza in sm.unacked() {
        stanza.write_to(&mut out, ns::CLIENT);
    }
    let writing = Box::pin(conn.write(&out));
    if let Err(error) = writing.await {
        // Lost again at once: the session waits again.
        return Ended {
            error: Some(error),
            detached: Some(Detached { session, sm }),
        };
    }
    attend(conn, session, Some(sm)).await
}

/// Serves the session, then ends it, detaches it, or hands it to the
/// connection that resumed it.
async fn attend(conn: &mut Conn, session: Arc<LocalSession>, sm: Sm) -> Ended {
    let server = conn.server.clone();
    let mut sm = sm;
    let result = serve(conn, &session, &mut sm).await;
    let mut sm = match sm_stream::hand_over(&server, &session, sm) {
        Ok(()) => {
            return Ended {
                error: Some(ConnError::stream(
                    "conflict",
                    "The session was resumed on another connection",
                )),
                detached: None,
            };
        }
        Err(sm) => sm,
    };
    let detachable = matches!(
        result,
        Err(ConnError::Io(_) | ConnError::ClosedByPeer | ConnError::Timeout(_))
    );
    if detachable && !session.is_closing() {
        if let Some(state) = sm.take_if(|state| state.resumption.is_some()) {
            return Ended {
                error: result.err(),
                detached: Some(Detached { session, sm: state }),
            };
        }
    }
    end_session(&server, &session, sm).await;
    Ended {
        error: result.err(),
        detached: None,
    }
}

/// The session ends for good: unbound, contacts told, and what it had not
/// delivered routed again (what the client did not acknowledge first).
pub(crate) async fn end_session(server: &Server, session: &Arc<LocalSession>, sm: Sm) {
    server.sessions.unbind(session);
    let ending = Box::pin(session_ended(server, session));
    ending.await;
    let mut undelivered = Vec::new();
    if let Some(mut sm) = sm {
        if let (Some(service), Some(resumption)) = (server.modules.sm(), &sm.resumption) {
            service.registry.remove(&resumption.key, session);
            // A client resuming too late still learns what was handled.
            let keep = Duration::from_secs(resumption.max_secs.into());
            let user = session.jid.to_bare();
            service
                .registry
                .ended(resumption.key, user, sm.settle(), keep);
        }
        undelivered = sm.take_unacked();
    }
    undelivered.extend(session.shut_mailbox());
    for element in undelivered {
        let rerouting = Box::pin(reroute_undelivered(server, *element));
        rerouting.await;
    }
}

/// The session is unbound here: the cluster forgets it, then the modules'
/// `SessionClosed` hooks run (contacts hear it is gone).
///
/// Forgetting comes first so that a member whose user hears of the leaving
/// has the directory without the session. A newer session that took the
/// JID over on this node keeps its entry.
async fn session_ended(server: &Server, session: &Arc<LocalSession>) {
    if server.sessions.get(&session.jid).is_none() {
        server.cluster.announce(SessionChange::Unbound {
            jid: session.jid.clone(),
        });
    }
    server.modules.session_closed(server, session).await;
    // The cache is for rosters in use: the user's last session here is
    // gone, so theirs makes room (the next login reads it again).
    let user = session.jid.to_bare();
    if !server.sessions.has_resources(&user) {
        server.rosters.evict(&user);
    }
}

enum Wake {
    /// A stanza was queued or a close was requested.
    Session,
    Readable(std::io::Result<()>),
    Timer,
}

async fn serve(conn: &mut Conn, session: &Arc<LocalSession>, sm: &mut Sm) -> Result<(), ConnError> {
    let server = conn.server.clone();
    let limits = server.limits();
    let idle = Duration::from_secs(limits.idle_timeout_secs);
    let stanza_limit = Duration::from_secs(limits.stanza_timeout_secs);
    let mut last_input = Instant::now();
    let mut partial_since: Option<Instant> = None;
    let mut pinged = false;
    // Whatever arrived with the bind request is already buffered.
    let processing = Box::pin(process_input(conn, session, sm));
    processing.await?;
    // One timer for the session's life, moved only to an earlier deadline:
    // a later one is met by letting it fire early and checking again, so a
    // busy session does not touch the timer wheel on every wake-up.
    let timer = sleep_until(last_input + idle / 2);
    tokio::pin!(timer);
    loop {
        if sm_stream::takeover_waiting(&server, sm) {
            return Err(ConnError::stream(
                "conflict",
                "The session was resumed on another connection",
            ));
        }
        if let Some(reason) = session.close_reason() {
            if reason == CloseReason::AccountRemoved {
                // The removal's own result (XEP-0077 3.2) is queued and must
                // precede the stream error; a deleted account's stanzas have
                // nowhere else to go.
                let writing = Box::pin(write_queued(conn, session, sm));
                writing.await?;
            }
            return Err(ConnError::stream(reason.condition(), reason.text()));
        }
        // <r/>s that waited for confirmations of stanzas to other servers.
        if let Some(answers) = sm_stream::take_confirmed_answers(sm) {
            Box::pin(conn.write(&answers)).await?;
        }
        if session.has_queued() && sm_stream::room(&server, sm) > 0 {
            let writing = Box::pin(write_queued(conn, session, sm));
            writing.await?;
            continue;
        }
        // Unacknowledged stanzas fill the window: ask for an ack and wait.
        if sm_stream::take_request_if_due(&server, sm, Instant::now()) {
            Box::pin(conn.send(&wire::request())).await?;
        }
        let idle_deadline = if pinged {
            last_input + idle
        } else {
            last_input + idle / 2
        };
        let mut deadline = match partial_since {
            Some(since) => idle_deadline.min(since + stanza_limit),
            None => idle_deadline,
        };
        if let Some(due) = sm_stream::request_due(sm) {
            deadline = deadline.min(due);
        }
        let ack_deadline = sm_stream::ack_deadline(&server, sm);
        if let Some(due) = ack_deadline {
            deadline = deadline.min(due);
        }
        if timer.is_elapsed() || deadline < timer.deadline() {
            timer.as_mut().reset(deadline);
        }
        let wake = tokio::select! {
            biased;
            () = session.woken() => Wake::Session,
            ready = conn.transport.readable() => Wake::Readable(ready),
            () = &mut timer => Wake::Timer,
        };
        match wake {
            Wake::Session => {}
            Wake::Readable(ready) => {
                ready?;
                if conn.read_available()? > 0 {
                    last_input = Instant::now();
                    pinged = false;
                }
                let processing = Box::pin(process_input(conn, session, sm));
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
                // XEP-0198: an <r/> left unanswered; a resumable session detaches.
                if ack_deadline.is_some_and(|due| now >= due) {
                    return Err(ConnError::Timeout("an acknowledgement"));
                }
                if now >= last_input + idle {
                    return Err(ConnError::Timeout("idle connection"));
                }
                if !pinged && now >= last_input + idle / 2 {
                    // XEP-0199: a dead client shows itself by not answering.
                    pinged = true;
                    let ping = keepalive_ping(&server.domain, &session.jid.to_string());
                    let sending = Box::pin(send_stanza(conn, sm, ping));
                    sending.await?;
                }
                if sm_stream::take_request_if_due(&server, sm, now) {
                    Box::pin(conn.send(&wire::request())).await?;
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

/// Writes what is queued, in one write per batch (with stream management:
/// no more than the client may leave unacknowledged, and an `<r/>` when due).
async fn write_queued(
    conn: &mut Conn,
    session: &LocalSession,
    sm: &mut Sm,
) -> Result<(), ConnError> {
    let mut batch = Vec::new();
    let room = sm_stream::room(&conn.server, sm);
    session.take_queued(WRITE_BATCH.min(room), &mut batch);
    if batch.is_empty() {
        return Ok(());
    }
    let metrics = &conn.server.metrics;
    // On a WebSocket each stanza is a message of its own, so it declares
    // its namespace; on a stream the header declared it.
    let parent_ns = if conn.frames_stanzas() {
        ""
    } else {
        ns::CLIENT
    };
    let mut out = Vec::with_capacity(256 * batch.len());
    let mut ends = Vec::with_capacity(batch.len() + 1);
    for element in batch {
        metrics.stanza_out(kind_of(&element));
        element.write_to(&mut out, parent_ns);
        ends.push(out.len());
        sm_stream::wrote(sm, element);
    }
    sm_stream::append_request(&conn.server, sm, &mut out, Instant::now());
    if out.len() > ends[ends.len() - 1] {
        ends.push(out.len());
    }
    conn.write_stanzas(out, &ends).await
}

/// Writes one stanza the connection makes itself (an error reply, a ping),
/// counted like those from the mailbox.
async fn send_stanza(conn: &mut Conn, sm: &mut Sm, stanza: Element) -> Result<(), ConnError> {
    conn.server.metrics.stanza_out(kind_of(&stanza));
    let mut out = Vec::with_capacity(256);
    stanza.write_to(&mut out, ns::CLIENT);
    sm_stream::wrote(sm, Box::new(stanza));
    sm_stream::append_request(&conn.server, sm, &mut out, Instant::now());
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
async fn process_input(
    conn: &mut Conn,
    session: &Arc<LocalSession>,
    sm: &mut Sm,
) -> Result<usize, ConnError> {
    let mut handled = 0;
    while let Some(event) = conn.parser.next_event()? {
        handled += 1;
        match event {
            StreamEvent::Stanza(element) => handle_element(conn, session, sm, element).await?,
            StreamEvent::End => return Err(ConnError::StreamClosed),
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
    sm: &mut Sm,
    element: Element,
) -> Result<(), ConnError> {
    let server = conn.server.clone();
    if element.ns() == wire::NS && server.modules.sm().is_some() {
        let handling = Box::pin(sm_stream::element(conn, session, sm, element));
        return handling.await;
    }
    if let (crate::modules::csi::CSI, Some(csi)) = (element.ns(), server.modules.csi()) {
        // XEP-0352 elements are not stanzas: stream management counts none.
        let active = match element.name() {
            "active" => true,
            "inactive" => false,
            other => {
                return Err(ConnError::stream(
                    "unsupported-stanza-type",
                    format!(
                        "<{other}/> is not a client state ({})",
                        crate::modules::csi::CSI
                    ),
                ));
            }
        };
        csi.set_active(session, active);
        return Ok(());
    }
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
            sm_stream::received(sm);
            if element.attr("type") != Some("error") {
                let reply = error_reply(&element, &error.to_stanza_error());
                send_stanza(conn, sm, reply).await?;
            }
            return Ok(());
        }
    };
    // Counted before it is routed: the stanza is the server's from here
    // on, even if this connection is lost while it travels (one to another
    // server is reported handled only once confirmed, below).
    sm_stream::received(sm);
    server.metrics.stanza_in(stanza.kind);
    // The server stamps the session's full JID, also over a bare JID the
    // client put there (RFC 6120 8.1.2.1); any other JID is spoofing.
    match &stanza.from {
        None => stanza.stamp_from(&session.jid),
        Some(from) if *from == Jid::from(session.jid.clone()) => {}
        Some(from) if *from == Jid::from(session.jid.to_bare()) => stanza.stamp_from(&session.jid),
        Some(from) => {
            return Err(ConnError::stream(
                "invalid-from",
                format!("'from' {from} is not this session's JID"),
            ));
        }
    }
    // To another server: counted in `h` once that server confirmed it.
    if let Some(state) = sm.as_deref_mut() {
        if goes_to_another_server(&server, &stanza) {
            stanza.confirm = state.await_confirmation(Arc::downgrade(session));
        }
    }
    // Not boxed: this runs inside `process_input`'s box, and one allocation
    // per read costs less than one more per stanza.
    router::from_client(&server, session, stanza).await;
    Ok(())
}

/// Whether the router sends `stanza` to another server's stream.
fn goes_to_another_server(server: &Server, stanza: &Stanza) -> bool {
    stanza.to.as_ref().is_some_and(|to| {
        let domain = to.domain().as_str();
        domain != server.domain && server.modules.host(domain).is_none()
    })
}

/// A stanza was queued for this session but never written: give it another
/// route so nothing is silently lost.
pub(crate) async fn reroute_undelivered(server: &Server, element: Element) {
    match Stanza::from_server(element) {
        Ok(stanza) => {
            router::vanished::route_again(server, stanza).await;
        }
        Err(_) => server.metrics.outcome(Outcome::Discarded),
    }
}
