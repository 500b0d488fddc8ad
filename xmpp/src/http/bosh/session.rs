//! One BOSH session: the request window (XEP-0124 sections 11, 14), the
//! held requests and the output waiting for them, around an ordinary c2s
//! connection reached through a pipe.
//!
//! ```text
//!  request ──receive──> to_session ──forwarder task──> pipe ──> c2s session
//!  answer  <──deliver── queued     <──output task───── pipe <── c2s session
//!                        reaper task: no request for `inactivity` -> the pipe closes
//! ```
//!
//! Every field of [`State`] is under one short lock, never held across an
//! await. Memory is bounded: the window bounds the requests in flight, the
//! body limit their size, and `max_queued_bytes` the output (the output task
//! stops reading, so the session waits as it would on a slow socket).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use starling_core::xml::{Element, escape};
use tokio::sync::{Notify, oneshot};
use tokio::time::{Instant, sleep_until};

use super::body::{self, Kind, Request, XBOSH};
use crate::auth::ChannelBindings;
use crate::c2s::pipe::{self, channel};
use crate::server::Server;
use crate::stream::framing::{FrameSplitter, element_frame};
use crate::stream::{STREAM_CLOSE, StreamEvent};

/// The BOSH sessions of this node, by `sid`.
#[derive(Default)]
pub struct BoshSessions {
    sessions: Mutex<HashMap<String, Arc<BoshSession>>>,
}

impl BoshSessions {
    pub(super) fn get(&self, sid: &str) -> Option<Arc<BoshSession>> {
        self.lock().get(sid).cloned()
    }

    /// Sessions open now (for tests and the admin side).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<BoshSession>>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a session for a creation request and returns it; the request
    /// itself is then received as the first of the window.
    pub(super) fn create(
        self: &Arc<Self>,
        server: &Arc<Server>,
        peer: SocketAddr,
        secure: bool,
        (wait, hold): (Duration, usize),
        rid: u64,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Arc<BoshSession> {
        let config = &server.config.bosh;
        // The requests of one BOSH session may come over several TLS
        // connections, so only the certificate can be bound to, not one
        // connection's exporter.
        let bindings = if secure {
            ChannelBindings::new(None, server.tls_certificate.end_point())
        } else {
            ChannelBindings::default()
        };
        let (end, adapter) = pipe::pipe(secure, bindings);
        let sid = new_sid();
        let session = Arc::new(BoshSession {
            sid: sid.clone(),
            domain: server.domain.clone(),
            wait,
            hold,
            inactivity: Duration::from_secs(config.inactivity_secs),
            polling: config.polling_secs,
            max_queued_bytes: config.max_queued_bytes,
            state: Mutex::new(State {
                last_rid: rid.saturating_sub(1),
                early: BTreeMap::new(),
                held: VecDeque::new(),
                queued: Vec::new(),
                queued_bytes: 0,
                answered: VecDeque::new(),
                stream_id: None,
                creation_answered: false,
                to_session: VecDeque::new(),
                closing: false,
                ended: false,
                stream_error: false,
                last_activity: Instant::now(),
            }),
            to_session: Notify::new(),
            output_room: Notify::new(),
            ended: Notify::new(),
        });
        self.lock().insert(sid.clone(), session.clone());
        tokio::spawn(forward(session.clone(), adapter.inbound));
        tokio::spawn(collect_output(session.clone(), adapter.outbound));
        tokio::spawn(reap_when_idle(session.clone()));
        let sessions = self.clone();
        let server = server.clone();
        tokio::spawn(async move {
            crate::c2s::serve_pipe(end, peer, server).await;
            sessions.lock().remove(&sid);
            drop(permit);
        });
        session
    }
}

pub(super) struct BoshSession {
    pub(super) sid: String,
    domain: String,
    pub(super) wait: Duration,
    pub(super) hold: usize,
    inactivity: Duration,
    polling: u64,
    max_queued_bytes: usize,
    state: Mutex<State>,
    /// Wakes the forwarder: `to_session` has bytes or the session closes.
    to_session: Notify,
    /// Wakes the output task: a request took the queued output.
    output_room: Notify,
    /// Wakes the reaper: the session ended.
    ended: Notify,
}

struct State {
    /// The highest rid whose payload was passed on (rids are handled in order).
    last_rid: u64,
    /// Requests that came before a missing rid, waiting for it.
    early: BTreeMap<u64, (Request, oneshot::Sender<String>)>,
    /// Requests waiting for output, oldest first.
    held: VecDeque<(u64, oneshot::Sender<String>)>,
    /// Elements for the client, as frames, not yet sent.
    queued: Vec<Vec<u8>>,
    queued_bytes: usize,
    /// The last answers, for a client that sends a request again (XEP-0124 14.3).
    answered: VecDeque<(u64, String)>,
    /// The id of the session's current stream (`authid`).
    stream_id: Option<String>,
    creation_answered: bool,
    /// Bytes for the c2s session, in rid order.
    to_session: VecDeque<Bytes>,
    /// No more input for the session: the forwarder closes the pipe.
    closing: bool,
    /// The c2s session has ended its stream.
    ended: bool,
    /// ... with a stream error (XEP-0206 8: `remote-stream-error`).
    stream_error: bool,
    /// The last time the client had no request held: inactivity counts from here.
    last_activity: Instant,
}

/// What a request gets at once, or the answer to wait for.
pub(super) enum Receipt {
    Now(String),
    Later(u64, oneshot::Receiver<String>),
}

impl BoshSession {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes a request into the window (XEP-0124 14.1-14.3).
    pub(super) fn receive(&self, request: Request) -> Receipt {
        let mut guard = self.lock();
        let state = &mut *guard;
        state.last_activity = Instant::now();
        if state.ended && state.queued.is_empty() && state.held.is_empty() {
            return Receipt::Now(body::terminate(None, &[]));
        }
        let rid = request.rid;
        if rid <= state.last_rid {
            // A request sent again: the same answer, if we still have it.
            if let Some((_, answer)) = state.answered.iter().find(|(r, _)| *r == rid) {
                return Receipt::Now(answer.clone());
            }
            return self.fail(state, "item-not-found");
        }
        let window = self.hold as u64 + 1;
        if rid > state.last_rid + window || state.early.contains_key(&rid) {
            return self.fail(state, "item-not-found");
        }
        let (sender, receiver) = oneshot::channel();
        state.early.insert(rid, (request, sender));
        let mut woke = false;
        while let Some((request, sender)) = state.early.remove(&(state.last_rid + 1)) {
            let rid = state.last_rid + 1;
            state.last_rid += 1;
            let input = match request.kind {
                Kind::Create { to, lang, .. } => {
                    let mut header = body::stream_header(&to, lang.as_deref());
                    header.extend_from_slice(&request.payload);
                    header
                }
                Kind::Restart => {
                    let mut header = body::stream_header(&self.domain, None);
                    header.extend_from_slice(&request.payload);
                    header
                }
                Kind::Terminate => {
                    let mut input = request.payload;
                    input.extend_from_slice(STREAM_CLOSE);
                    input
                }
                Kind::Payload => request.payload,
            };
            if !input.is_empty() && !state.closing {
                state.to_session.push_back(input.into());
                woke = true;
            }
            state.held.push_back((rid, sender));
        }
        self.deliver(state);
        drop(guard);
        if woke {
            self.to_session.notify_one();
        }
        Receipt::Later(rid, receiver)
    }

    /// A held request reached `wait`: an empty answer (unless one is on its way).
    pub(super) fn expire(&self, rid: u64) -> Option<String> {
        let mut state = self.lock();
        let position = state.held.iter().position(|(r, _)| *r == rid);
        let answer = body::answer(&[], &[]);
        match position {
            Some(position) => {
                state.held.remove(position);
            }
            None if state.early.remove(&rid).is_some() => {}
            None => return None,
        }
        self.remember(&mut state, rid, &answer);
        state.last_activity = Instant::now();
        Some(answer)
    }

    /// Answers held requests, oldest first: with the queued output, with an
    /// empty body when more than `hold` wait, and with the end of the session.
    fn deliver(&self, state: &mut State) {
        loop {
            let Some((rid, _)) = state.held.front() else {
                return;
            };
            let rid = *rid;
            let answer = if !state.queued.is_empty() || state.ended {
                let children = std::mem::take(&mut state.queued);
                state.queued_bytes = 0;
                self.output_room.notify_one();
                if state.ended {
                    let condition = state.stream_error.then_some("remote-stream-error");
                    body::terminate(condition, &children)
                } else {
                    let attributes = self.attributes(state);
                    body::answer(&attributes, &children)
                }
            } else if state.held.len() > self.hold {
                body::answer(&[], &[])
            } else {
                return;
            };
            let Some((_, sender)) = state.held.pop_front() else {
                return;
            };
            self.remember(state, rid, &answer);
            // The client gave up on the request: the answer is in `answered`.
            let _gone = sender.send(answer);
            if state.held.is_empty() {
                state.last_activity = Instant::now();
            }
        }
    }

    /// The session creation answer's attributes (XEP-0124 7.1, XEP-0206 4),
    /// on the first answer only.
    fn attributes(&self, state: &mut State) -> Vec<(&'static str, String)> {
        if state.creation_answered {
            return Vec::new();
        }
        state.creation_answered = true;
        vec![
            ("sid", escape(&self.sid)),
            ("wait", self.wait.as_secs().to_string()),
            ("requests", (self.hold + 1).to_string()),
            ("hold", self.hold.to_string()),
            ("inactivity", self.inactivity.as_secs().to_string()),
            ("polling", self.polling.to_string()),
            ("ver", "1.11".to_owned()),
            ("from", escape(&self.domain)),
            (
                "authid",
                escape(state.stream_id.as_deref().unwrap_or_default()),
            ),
            ("xmlns:xmpp", XBOSH.to_owned()),
            ("xmpp:version", "1.0".to_owned()),
            ("xmpp:restartlogic", "true".to_owned()),
            (
                "xmlns:stream",
                "http://etherx.jabber.org/streams".to_owned(),
            ),
        ]
    }

    fn remember(&self, state: &mut State, rid: u64, answer: &str) {
        state.answered.push_back((rid, answer.to_owned()));
        while state.answered.len() > self.hold + 1 {
            state.answered.pop_front();
        }
    }

    /// Ends the session for a broken rule: every held request and this one
    /// get `condition`; the c2s session sees its client gone.
    fn fail(&self, state: &mut State, condition: &str) -> Receipt {
        let answer = body::terminate(Some(condition), &[]);
        for (_, sender) in state.held.drain(..) {
            let _gone = sender.send(answer.clone());
        }
        for (_, (_, sender)) in std::mem::take(&mut state.early) {
            let _gone = sender.send(answer.clone());
        }
        state.closing = true;
        state.ended = true;
        self.to_session.notify_one();
        self.ended.notify_one();
        Receipt::Now(answer)
    }
}

/// Passes the client's bytes to the c2s session in order; closing the pipe
/// when the session is to end makes it end as on a dropped socket.
async fn forward(session: Arc<BoshSession>, inbound: channel::Sender<Bytes>) {
    loop {
        let woken = session.to_session.notified();
        let (input, closing) = {
            let mut state = session.lock();
            (std::mem::take(&mut state.to_session), state.closing)
        };
        for bytes in input {
            if inbound.send(bytes).await.is_err() {
                return;
            }
        }
        if closing {
            return;
        }
        woken.await;
    }
}

/// Reads what the c2s session writes into the queue of the next answer.
async fn collect_output(session: Arc<BoshSession>, mut outbound: channel::Receiver<Bytes>) {
    let mut splitter = FrameSplitter::new();
    loop {
        // Wait for room first: a client that does not poll slows the
        // session down instead of filling our memory.
        loop {
            let room = session.output_room.notified();
            if session.lock().queued_bytes < session.max_queued_bytes {
                break;
            }
            room.await;
        }
        let Some(chunk) = outbound.recv().await else {
            break;
        };
        let mut events = Vec::new();
        if let Err(error) = splitter.push_events(&chunk, |event| events.push(event)) {
            tracing::warn!(%error, "the session wrote something that is not XML");
            break;
        }
        let mut state = session.lock();
        for event in events {
            match event {
                StreamEvent::Header(header) => state.stream_id = header.id,
                StreamEvent::Stanza(element) => {
                    state.stream_error |= body::is_stream_error(&element);
                    queue(&mut state, &element);
                }
                StreamEvent::End => state.ended = true,
            }
        }
        session.deliver(&mut state);
    }
    let mut state = session.lock();
    state.ended = true;
    state.closing = true;
    session.deliver(&mut state);
    drop(state);
    session.to_session.notify_one();
    session.ended.notify_one();
}

fn queue(state: &mut State, element: &Element) {
    let frame = element_frame(element);
    state.queued_bytes += frame.len();
    state.queued.push(frame);
}

/// Ends a session whose client stopped sending requests for `inactivity`
/// (XEP-0124 7.1), as a dropped socket would end a TCP session.
async fn reap_when_idle(session: Arc<BoshSession>) {
    loop {
        let ended = session.ended.notified();
        let deadline = {
            let state = session.lock();
            if state.ended {
                return;
            }
            let idle = state.held.is_empty() && state.early.is_empty();
            if idle && Instant::now() >= state.last_activity + session.inactivity {
                drop(state);
                tracing::debug!(sid = %session.sid, "BOSH client inactive: session ends");
                let mut state = session.lock();
                state.closing = true;
                drop(state);
                session.to_session.notify_one();
                return;
            }
            if idle {
                state.last_activity + session.inactivity
            } else {
                Instant::now() + session.inactivity
            }
        };
        tokio::select! {
            () = sleep_until(deadline) => {}
            () = ended => return,
        }
    }
}

/// A session id: whoever knows it (and the next rid) speaks for the client,
/// so it is long and random.
fn new_sid() -> String {
    use rand::RngExt;
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
