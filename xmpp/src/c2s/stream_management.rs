//! XEP-0198 on a bound connection: `<enable/>`, acknowledgements both ways
//! and the server's own ack requests (after `request_every` stanzas or
//! `request_after_ms`). The counting rules are in `crate::sm::state`.

use std::sync::Arc;

use starling_core::xml::{Element, ns};
use tokio::time::Instant;

use super::conn::{Conn, ConnError};
use crate::server::Server;
use crate::session::LocalSession;
use crate::sm::{Counters, Resumption, SmState, Taken, token, wire};

/// A connection's stream management: `None` until the client enables it.
pub(crate) type Sm = Option<Box<SmState>>;

/// A stanza from the client was handled.
pub(crate) fn received(sm: &mut Sm) {
    if let Some(sm) = sm {
        sm.received();
    }
}

/// A stanza was written: it is kept until the client acknowledges it.
pub(crate) fn wrote(sm: &mut Sm, stanza: Box<Element>) {
    if let Some(sm) = sm {
        sm.wrote(stanza);
    }
}

/// How many more stanzas may be written before the client acknowledges
/// some: the unacknowledged queue is bounded like the mailbox.
pub(crate) fn room(server: &Server, sm: &Sm) -> usize {
    match sm {
        None => usize::MAX,
        Some(sm) => server
            .config
            .limits
            .session_queue
            .saturating_sub(sm.unacked_len()),
    }
}

/// Appends an `<r/>` to `out` when enough stanzas went unacknowledged, and
/// arms the timer that asks later otherwise.
pub(crate) fn append_request(server: &Server, sm: &mut Sm, out: &mut Vec<u8>, now: Instant) {
    let (Some(state), Some(service)) = (sm.as_deref_mut(), server.modules.sm()) else {
        return;
    };
    if state.request_pending || state.unacked_len() == 0 {
        return;
    }
    let full = state.unacked_len() >= server.limits().session_queue;
    if state.since_request() >= service.config.request_every.max(1) || full {
        wire::request().write_to(out, ns::CLIENT);
        state.requested();
        state.request_due = None;
    } else if state.request_due.is_none() {
        state.request_due = Some(now + service.request_after());
    }
}

/// When the timer for the next `<r/>` fires, if one is armed.
pub(crate) fn request_due(sm: &Sm) -> Option<Instant> {
    sm.as_ref().and_then(|sm| sm.request_due)
}

/// When an unanswered `<r/>` means the connection is lost, if one is out.
pub(crate) fn ack_deadline(server: &Server, sm: &Sm) -> Option<Instant> {
    let timeout = server.modules.sm()?.ack_timeout()?;
    Some(sm.as_ref()?.requested_at? + timeout)
}

/// Whether an `<r/>` is to be sent now: the timer has fired or the window
/// is full. Marks it requested, so the caller must send it. Synchronous:
/// the session loop asks on every wake-up, and almost always the answer is
/// no, which must cost no future.
pub(crate) fn take_request_if_due(server: &Server, sm: &mut Sm, now: Instant) -> bool {
    let Some(state) = sm.as_deref_mut() else {
        return false;
    };
    let full = state.unacked_len() >= server.limits().session_queue;
    let due = state.request_due.is_some_and(|due| now >= due);
    if due {
        // Fired: it never fires twice (an armed past deadline would spin).
        state.request_due = None;
    }
    if state.request_pending || state.unacked_len() == 0 || !(due || full) {
        return false;
    }
    state.requested();
    true
}

/// The `<a/>`s owed for `<r/>`s that waited for confirmations now given,
/// if any (synchronous for the same reason as `take_request_if_due`).
pub(crate) fn take_confirmed_answers(sm: &mut Sm) -> Option<Vec<u8>> {
    let state = sm.as_deref_mut()?;
    let (due, h) = state.answerable();
    if due == 0 {
        return None;
    }
    let mut out = Vec::new();
    for _ in 0..due {
        wire::ack(h).write_to(&mut out, ns::CLIENT);
    }
    Some(out)
}

/// Whether a resumption elsewhere waits for this session.
pub(crate) fn takeover_waiting(server: &Server, sm: &Sm) -> bool {
    match (
        server.modules.sm(),
        sm.as_ref().and_then(|sm| sm.resumption.as_ref()),
    ) {
        (Some(service), Some(resumption)) => service.registry.has_takeover(&resumption.key),
        _ => false,
    }
}

/// Gives the session to a resumption waiting for it; `Err` gives the state
/// back when there is none (or it gave up).
pub(crate) fn hand_over(server: &Server, session: &Arc<LocalSession>, sm: Sm) -> Result<(), Sm> {
    let Some(service) = server.modules.sm() else {
        return Err(sm);
    };
    let Some(state) = sm else {
        return Err(None);
    };
    let Some(resumption) = &state.resumption else {
        return Err(Some(state));
    };
    let Some(takeover) = service.registry.takeover(&resumption.key) else {
        return Err(Some(state));
    };
    let taken = Taken {
        session: session.clone(),
        sm: state,
    };
    takeover.send(taken).map_err(|taken| Some(taken.sm))
}

/// An element of the stream-management namespace from a bound client.
pub(crate) async fn element(
    conn: &mut Conn,
    session: &Arc<LocalSession>,
    sm: &mut Sm,
    element: Element,
) -> Result<(), ConnError> {
    let server = conn.server.clone();
    let Some(service) = server.modules.sm() else {
        return Ok(());
    };
    match element.name() {
        "enable" => {
            if sm.is_some() {
                let failed = wire::failed(
                    "unexpected-request",
                    None,
                    Some("Stream management is already enabled"),
                );
                return conn.send(&failed).await;
            }
            let resume = matches!(element.attr("resume"), Some("true" | "1"));
            let resumption = resume.then(|| {
                let key = token::new_key();
                let wanted = element.attr("max").and_then(|max| max.parse().ok());
                service.registry.register(key, session.clone());
                Resumption {
                    key,
                    id: token::encode(server.cluster.node_id(), &key),
                    max_secs: service.max_secs(wanted),
                }
            });
            let enabled = wire::enabled(
                resumption
                    .as_ref()
                    .map(|resumption| (resumption.id.as_str(), resumption.max_secs)),
            );
            *sm = Some(Box::new(SmState::new(resumption)));
            Counters::incr(&service.counters.enabled);
            conn.send(&enabled).await
        }
        "r" => match sm {
            // Answered now, or once the stanzas to other servers it covers
            // are confirmed (`answer_confirmed`).
            Some(state) => match state.ack_request() {
                Some(h) => conn.send(&wire::ack(h)).await,
                None => Ok(()),
            },
            None => {
                let failed = wire::failed(
                    "unexpected-request",
                    None,
                    Some("Enable stream management first"),
                );
                conn.send(&failed).await
            }
        },
        "a" => {
            let Some(state) = sm.as_deref_mut() else {
                return Ok(());
            };
            let Some(h) = wire::h_of(&element) else {
                return Err(ConnError::stream(
                    "bad-format",
                    "<a/> needs an 'h' between 0 and 4294967295",
                ));
            };
            match state.acknowledge(h) {
                Ok(_) => {
                    // What was written after our <r/> still waits: ask later.
                    state.request_due =
                        (state.unacked_len() > 0).then(|| Instant::now() + service.request_after());
                    Ok(())
                }
                // XEP-0198 4: handled-count-too-high.
                Err(error) => Err(ConnError::stream(
                    "undefined-condition",
                    format!("handled-count-too-high: {error}"),
                )),
            }
        }
        "resume" => {
            let failed = wire::failed(
                "unexpected-request",
                None,
                Some("A session is resumed instead of binding a resource, not after"),
            );
            conn.send(&failed).await
        }
        other => Err(ConnError::stream(
            "unsupported-stanza-type",
            format!(
                "<{other} xmlns='{}'/> is not a stream management element",
                wire::NS
            ),
        )),
    }
}
