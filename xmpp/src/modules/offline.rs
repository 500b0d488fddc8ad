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

use starling_core::jid::BareJid;
use starling_core::xml::{Element, ns};

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

pub struct OfflineModule;

impl OfflineModule {
    pub fn new(options: Options) -> Result<OfflineModule, ModuleConfigError> {
        // The quota stays under `[offline]`, where it always was; stored
        // messages go with the account (`Store::delete_user`).
        options.none()?;
        Ok(OfflineModule)
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
                    Flow::Done(store(server, stanza, user).await)
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
async fn store(server: &Server, stanza: Stanza, user: &BareJid) -> Routed {
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
            hint_late_arrivals(server, user);
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

/// The user may have come online on another member a moment ago, before
/// this node's directory knew: once the directory has had time to catch up,
/// tell the members serving the user to deliver what is stored.
fn hint_late_arrivals(server: &Server, user: &BareJid) {
    let policy = server.cluster.miss_retry();
    if policy.attempts == 0 {
        return;
    }
    let Some(this) = server.this() else { return };
    let user = user.clone();
    tokio::spawn(async move {
        tokio::time::sleep(policy.window).await;
        let mut nodes = std::collections::HashSet::new();
        for entry in this.cluster.remote_resources(&user) {
            if entry.available && nodes.insert(entry.node) {
                this.cluster.offline_stored(entry.node, &user);
            }
        }
        let _guard = this.delivery_locks.lock(&user).await;
        let session = this.sessions.resources(&user).into_iter().find(|session| {
            let (available, priority) = session.availability();
            available && priority >= 0
        });
        if let Some(session) = session {
            flush(&this, &session).await;
        }
    });
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
