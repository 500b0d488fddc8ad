//! A resumable session whose socket is gone (XEP-0198): it stays bound,
//! the directory keeps pointing at it and stanzas for it wait in its
//! mailbox (bounded: a full mailbox ends it like a slow client), while its
//! contacts see nothing. It ends when the window closes, or goes to the
//! connection that resumes it, here or on another member.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use super::session_loop::{Detached, end_session};
use crate::server::Server;
use crate::sm::{Counters, Taken};

pub(super) async fn wait(server: Arc<Server>, detached: Detached) {
    let Detached { session, mut sm } = detached;
    let (Some(service), Some(resumption)) = (server.modules.sm().cloned(), sm.resumption.clone())
    else {
        return end_session(&server, &session, Some(sm)).await;
    };
    tracing::debug!(jid = %session.jid, secs = resumption.max_secs, "session detached; waiting for a resumption");
    let counters = &service.counters;
    counters
        .detached
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(resumption.max_secs.into());
    let expired = loop {
        if let Some(takeover) = service.registry.takeover(&resumption.key) {
            let taken = Taken {
                session: session.clone(),
                sm,
            };
            match takeover.send(taken) {
                Ok(()) => {
                    counters
                        .detached
                        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                // The resuming side gave up; wait on.
                Err(taken) => sm = taken.sm,
            }
        }
        if session.is_closing() {
            break false;
        }
        tokio::select! {
            () = session.woken() => {}
            () = sleep_until(deadline) => break true,
        }
    };
    counters
        .detached
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    if expired {
        Counters::incr(&counters.expired);
        tracing::debug!(jid = %session.jid, "resumption window closed; the session ends");
    }
    end_session(&server, &session, Some(sm)).await;
}
