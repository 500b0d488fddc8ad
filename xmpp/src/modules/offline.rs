//! XEP-0160 offline messages: stored when a user has no available resource,
//! delivered with XEP-0203 delay stamps, in order, at the next available
//! presence.
//!
//! Ordering between "store because nobody is online" and "come online and
//! flush" is kept by a per-user delivery lock: a message is only stored while
//! holding it (after checking again that nobody is available), and a session
//! only becomes available while holding it, after queueing what was stored.
//! So a message is either stored before the flush takes it, or delivered
//! live after the flushed ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use starling_core::cluster::NodeId;
use starling_core::jid::BareJid;
use starling_core::xml::{Element, ns};
use tokio::time::Instant;

use super::{Flow, Hook, Module, ModuleConfigError, Options, Registration};
use crate::BoxFuture;
use crate::metrics::{Outcome, incr};
use crate::router::Routed;
use crate::router::resources::{self, deliver_local, deliver_to, message_recipients};
use crate::router::{bounce, count};
use crate::server::Server;
use crate::session::LocalSession;
use crate::stanza::{Condition, MessageType, Stanza, StanzaError};
use crate::storage::OfflineStore;
use crate::util::time::{now_ms, xep0082};

/// How long after the last message stored for a user the members are
/// still looked at for a session of that user that should take it.
const WATCH: Duration = Duration::from_secs(30);
/// The longest pause between two looks.
const LONGEST_PAUSE: Duration = Duration::from_secs(8);

pub struct OfflineModule {
    /// Users whose stored messages may belong to a session the directory
    /// here does not know yet, and when the last one was stored (see
    /// [`watch`]).
    watched: Watched,
}

type Watched = Arc<Mutex<HashMap<BareJid, Instant>>>;

impl OfflineModule {
    pub fn new(options: Options) -> Result<OfflineModule, ModuleConfigError> {
        // The quota stays under `[offline]`, where it always was; stored
        // messages go with the account (`Store::delete_user`).
        options.none()?;
        Ok(OfflineModule {
            watched: Watched::default(),
        })
    }
}

impl Module for OfflineModule {
    fn name(&self) -> &'static str {
        "offline"
    }

    fn registration(&self) -> Registration {
        Registration {
            hooks: vec![Hook::Offline, Hook::ResourceAvailable],
            server_disco: vec![
                super::Disco::Feature(ns::OFFLINE),
                super::Disco::Feature(ns::DELAY),
            ],
            ..Registration::default()
        }
    }

    fn offline<'a>(
        &'a self,
        server: &'a Server,
        stanza: Stanza,
        user: &'a BareJid,
    ) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            match stanza.message_type() {
                Some(MessageType::Chat | MessageType::Normal) | None => {
                    Flow::Done(store(server, &self.watched, stanza, user).await)
                }
                _ => Flow::Continue(stanza),
            }
        })
    }

    fn resource_available<'a>(
        &'a self,
        server: &'a Server,
        session: &'a LocalSession,
    ) -> BoxFuture<'a, ()> {
        Box::pin(flush(server, session))
    }
}

/// Stores a chat/normal message for a user with no available resource, or
/// delivers it if one became available meanwhile.
async fn store(server: &Server, watched: &Watched, stanza: Stanza, user: &BareJid) -> Routed {
    let _guard = server.delivery_locks.lock(user).await;
    let ty = stanza.message_type().unwrap_or(MessageType::Normal);
    let mut element = stanza.element;
    for target in message_recipients(resources::resources(server, user), ty) {
        match deliver_to(server, &target, element, stanza.kind, stanza.hops).await {
            Ok(()) => return count(server, Outcome::Delivered),
            Err(returned) => element = returned,
        }
    }
    let stanza = Stanza { element, ..stanza };
    let Some(username) = user.node() else {
        return count(server, Outcome::Discarded);
    };
    let from = stanza
        .from
        .as_ref()
        .map(|jid| jid.to_string())
        .unwrap_or_default();
    let xml = String::from_utf8_lossy(&stanza.element.to_bytes()).into_owned();
    let quota = server.config.offline.max_per_user;
    match server
        .store
        .store_offline(username.as_str(), &from, &xml, now_ms(), quota)
        .await
    {
        Ok(OfflineStore::Stored) => {
            watch(server, watched, user);
            count(server, Outcome::StoredOffline)
        }
        Ok(OfflineStore::QuotaExceeded) => {
            let error = StanzaError::new(Condition::ServiceUnavailable)
                .with_text("The recipient is offline and its message store is full");
            bounce(server, &stanza, error).await
        }
        Err(storage) => {
            tracing::error!(%user, error = %storage, "storing an offline message failed");
            let error = StanzaError::new(Condition::InternalServerError)
                .with_text("The recipient is offline and the message could not be stored");
            bounce(server, &stanza, error).await
        }
    }
}

/// The user may have a session this member's directory does not know yet:
/// one that came online on another member a moment ago, or a resumed
/// session whose entry is still on its way (under a slow or lossy network,
/// for many seconds), or whose old member ended a copy of it and sent its
/// undelivered messages here to be stored. A resumed session fetches
/// nothing stored, so the members are looked at again, after the cluster's
/// miss-retry window and then at growing pauses until [`WATCH`] after the
/// last message stored for the user; each member known to serve the user
/// then delivers what is stored, and so does this one, once for what was
/// stored before it was asked. One watcher per user; a message stored
/// meanwhile extends its watch.
fn watch(server: &Server, watched: &Watched, user: &BareJid) {
    let policy = server.cluster.miss_retry();
    if policy.attempts == 0 {
        return;
    }
    let Some(this) = server.this() else { return };
    if lock(watched).insert(user.clone(), Instant::now()).is_some() {
        return;
    }
    let watched = watched.clone();
    let user = user.clone();
    tokio::spawn(async move {
        let mut pause = policy.window;
        let mut asked = HashMap::new();
        loop {
            tokio::time::sleep(pause).await;
            let Some(last_stored) = lock(&watched).get(&user).copied() else {
                return;
            };
            look_for_sessions(&this, &user, last_stored, &mut asked).await;
            let mut users = lock(&watched);
            let until = users
                .get(&user)
                .map_or(last_stored, |stored| *stored + policy.window + WATCH);
            if Instant::now() >= until {
                // Under the lock: a message stored from here on starts a
                // watcher of its own.
                users.remove(&user);
                return;
            }
            pause = (pause * 2).clamp(Duration::from_secs(1), LONGEST_PAUSE);
        }
    });
}

/// Asks every member the directory knows to serve `user` with an available
/// session to deliver what is stored, and delivers to a session here; a
/// place already asked since the last message was stored (`asked`: when,
/// by member, `None` for this one) is not asked again.
async fn look_for_sessions(
    server: &Server,
    user: &BareJid,
    last_stored: Instant,
    asked: &mut HashMap<Option<NodeId>, Instant>,
) {
    let mut due = |place: Option<NodeId>| {
        let due = asked.get(&place).is_none_or(|at| *at < last_stored);
        if due {
            asked.insert(place, Instant::now());
        }
        due
    };
    for entry in server.cluster.remote_resources(user) {
        if entry.available && due(Some(entry.node)) {
            server.cluster.offline_stored(entry.node, user);
        }
    }
    let _guard = server.delivery_locks.lock(user).await;
    let session = server.sessions.resources(user).into_iter().find(|session| {
        let (available, priority) = session.availability();
        available && priority >= 0
    });
    if let Some(session) = session {
        if due(None) {
            flush(server, &session).await;
        }
    }
}

fn lock(watched: &Watched) -> std::sync::MutexGuard<'_, HashMap<BareJid, Instant>> {
    watched
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Queues the user's stored messages to `session`, oldest first. The caller
/// holds the user's delivery lock and marks the session available after.
async fn flush(server: &Server, session: &LocalSession) {
    let Some(username) = session.jid.node() else {
        return;
    };
    let messages = match server.store.take_offline(username.as_str()).await {
        Ok(messages) => messages,
        Err(error) => {
            tracing::error!(jid = %session.jid, %error, "reading offline messages failed; they stay stored");
            return;
        }
    };
    for message in messages {
        let Some(mut element) = parse_stored(&message.xml) else {
            tracing::error!(
                id = message.id,
                "a stored offline message is unreadable; dropped"
            );
            count(server, Outcome::Discarded);
            continue;
        };
        element.set_attr("to", session.jid.as_str());
        element.push_child(
            Element::new("delay", ns::DELAY)
                .with_attr("from", server.domain.clone())
                .with_attr("stamp", xep0082(message.stamp_ms))
                .with_text("Offline storage"),
        );
        if let Err(element) = deliver_local(server, session, element) {
            // The session went away or cannot keep up: keep the rest stored.
            restore(server, session, &element, message.stamp_ms).await;
            continue;
        }
        incr(&server.metrics.offline_delivered);
    }
}

/// Puts a message back in the store when its delivery failed at flush time.
async fn restore(server: &Server, session: &LocalSession, element: &Element, stamp_ms: i64) {
    let Some(username) = session.jid.node() else {
        return;
    };
    let mut element = element.clone();
    element.remove_children("delay", ns::DELAY);
    let from = element.attr("from").unwrap_or_default().to_owned();
    let xml = String::from_utf8_lossy(&element.to_bytes()).into_owned();
    // The quota does not apply: the message was already accepted once.
    if let Err(error) = server
        .store
        .store_offline(username.as_str(), &from, &xml, stamp_ms, u32::MAX)
        .await
    {
        tracing::error!(jid = %session.jid, %error, "an offline message could not be put back; lost");
        count(server, Outcome::Discarded);
    }
}

fn parse_stored(xml: &str) -> Option<Element> {
    crate::stream::parse_element(xml.as_bytes()).ok()
}
