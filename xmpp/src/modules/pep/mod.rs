//! XEP-0163 personal eventing: every account is a pub/sub service at its
//! bare JID. Avatars (XEP-0084), OMEMO device lists, bookmarks (XEP-0402),
//! vCard4 (XEP-0292) and private PEP (XEP-0223) are all PEP nodes.
//!
//! - `iq.rs`: publish (auto-create, publish-options), items, retract,
//!   create, configure, delete, purge, for the owner and for contacts as
//!   the node's access model says.
//! - `notify.rs`: notifications to the owner's resources and to contacts
//!   with a presence subscription; the newest items when a session first
//!   says what it wants.
//! - `caps.rs`: XEP-0115 capabilities, which say which nodes a client
//!   wants (`+notify`), cached per member and in the store.
//! - `remote.rs`: contacts on other servers, their available resources
//!   and what each wants, learnt from the presence delivered here.
//!
//! In a cluster: nodes and items live in the store (any member answers,
//! nothing is lost with a member); a notification is sent to each available
//! session of the recipients wherever it is, and the member holding the
//! session delivers it only if the session wants that node (`deliver`
//! hook), so a member without such a session gets nothing and a member with
//! one gets one copy per session.

mod bookmarks;
mod caps;
mod iq;
mod notify;
mod remote;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use starling_core::jid::BareJid;
use starling_core::xml::{Element, ns};

use self::caps::{Advertised, Caps};
use super::session_map::SessionMap;
use super::{
    Addressee, Delivery, Disco, Flow, Hook, IqRequest, IqRoute, Metric, Module, ModuleConfigError,
    Options, Registration, StanzaKinds,
};
use crate::BoxFuture;
use crate::metrics::Outcome;
use crate::router::Routed;
use crate::router::count;
use crate::server::Server;
use crate::session::LocalSession;
use crate::stanza::{IqType, PresenceType, Stanza};
use crate::storage::{StorageError, Store};
use starling_core::cluster::StanzaKind;

/// `[modules.pep]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PepConfig {
    /// Largest item payload, serialised (an avatar's data is the big one).
    pub max_item_bytes: usize,
    /// Nodes one account may have.
    pub max_nodes_per_user: u32,
    /// Capabilities hashes this member keeps in memory.
    pub caps_cache_entries: usize,
}

impl Default for PepConfig {
    fn default() -> Self {
        PepConfig {
            max_item_bytes: 128 * 1024,
            max_nodes_per_user: 256,
            caps_cache_entries: 10_000,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    notifications_local: AtomicU64,
    notifications_remote: AtomicU64,
    withheld: AtomicU64,
    last_items: AtomicU64,
    caps_queries: AtomicU64,
    caps_unverified: AtomicU64,
}

pub struct Pep {
    config: PepConfig,
    caps: Arc<Caps>,
    /// Contacts of other servers whose presence sessions here received.
    remote: Arc<remote::Remote>,
    /// The nodes each session here wants, from its capabilities.
    interests: SessionMap<caps::Interest>,
    counters: Counters,
}

impl Pep {
    pub fn new(options: Options) -> Result<Pep, ModuleConfigError> {
        let config: PepConfig = options.parse()?;
        Ok(Pep {
            caps: Arc::new(Caps::new(config.caps_cache_entries)),
            remote: Arc::default(),
            interests: SessionMap::default(),
            counters: Counters::default(),
            config,
        })
    }
}

/// The pub/sub features a PEP service has (XEP-0060 10).
const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/pubsub",
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#auto-create",
    "http://jabber.org/protocol/pubsub#config-node",
    "http://jabber.org/protocol/pubsub#create-and-configure",
    "http://jabber.org/protocol/pubsub#create-nodes",
    "http://jabber.org/protocol/pubsub#delete-items",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#filtered-notifications",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#purge-nodes",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-default",
    "http://jabber.org/protocol/pubsub#retrieve-items",
];

fn account_disco() -> Vec<Disco> {
    let identity = Disco::Identity {
        category: "pubsub",
        ty: "pep",
        name: None,
    };
    std::iter::once(identity)
        .chain(FEATURES.iter().map(|var| Disco::Feature(var)))
        .chain([Disco::Feature(bookmarks::COMPAT)])
        .collect()
}

impl Module for Pep {
    fn name(&self) -> &'static str {
        "pep"
    }

    fn registration(&self) -> Registration {
        let mut iqs = Vec::new();
        for namespace in [ns::PUBSUB, ns::PUBSUB_OWNER] {
            iqs.push(IqRoute::get(namespace, Addressee::Account));
            iqs.push(IqRoute::set(namespace, Addressee::Account));
        }
        Registration {
            iqs,
            hooks: vec![
                Hook::ClientStanza,
                Hook::Deliver,
                Hook::SessionClosed,
                Hook::SessionMoved,
                Hook::UserDeleted,
                Hook::AccountItems,
            ],
            account_disco: account_disco(),
            stanza_kinds: StanzaKinds::only(&[StanzaKind::Presence, StanzaKind::Iq]),
            ..Registration::default()
        }
    }

    fn iq<'a>(&'a self, server: &'a Server, request: IqRequest) -> BoxFuture<'a, Routed> {
        Box::pin(iq::handle(self, server, request))
    }

    fn account_items<'a>(
        &'a self,
        server: &'a Server,
        account: &'a BareJid,
        requester: &'a BareJid,
    ) -> BoxFuture<'a, Result<Vec<Element>, StorageError>> {
        Box::pin(iq::readable_nodes(server, account, requester))
    }

    fn caches(&self) -> Vec<Arc<dyn starling_core::cache::StatsSource>> {
        // Verified hashes never change meaning: nothing to invalidate.
        vec![self.caps.cache.clone()]
    }

    fn client_stanza<'a>(
        &'a self,
        server: &'a Server,
        session: &'a Arc<LocalSession>,
        stanza: Stanza,
    ) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            match stanza.kind {
                StanzaKind::Presence
                    if stanza.to.is_none()
                        && stanza.presence_type() == Some(PresenceType::Available) =>
                {
                    match Advertised::of(&stanza.element) {
                        Some(advertised) => self.capabilities(server, session, advertised).await,
                        // No capabilities: the client wants no notifications.
                        None => {
                            self.interests.set(&session.jid, caps::interest([]));
                        }
                    }
                    Flow::Continue(stanza)
                }
                // Only with the private module: it stores and answers sets.
                StanzaKind::Iq
                    if bookmarks::legacy_request(&stanza, session).is_some()
                        && server.modules.names().contains(&"private") =>
                {
                    let ty = stanza.iq_type().unwrap_or(IqType::Get);
                    bookmarks::handle(self, server, session, stanza, ty).await
                }
                StanzaKind::Iq if self.is_caps_answer(&stanza) => {
                    let Some(pending) = stanza
                        .id()
                        .and_then(|id| self.caps.answered(id, &session.jid))
                    else {
                        return Flow::Continue(stanza);
                    };
                    let handled = count(server, Outcome::Handled);
                    self.caps_answered(server, session, pending, &stanza).await;
                    Flow::Done(handled)
                }
                _ => Flow::Continue(stanza),
            }
        })
    }

    fn deliver(&self, server: &Server, session: &LocalSession, stanza: &Element) -> Delivery {
        if let Some(delivery) = self.from_remote_contact(server, session, stanza) {
            return delivery;
        }
        let Some(node) = notify::event_node(stanza) else {
            return Delivery::Deliver;
        };
        if self
            .interests
            .check(&session.jid, |wanted| wanted.contains(node))
        {
            Delivery::Deliver
        } else {
            self.counters.withheld.fetch_add(1, Ordering::Relaxed);
            Delivery::Withhold
        }
    }

    /// The session's wanted nodes go along, one per line; its capabilities
    /// are learned again from its next presence. Closing the session
    /// forgets both the same way (the default `session_closed`).
    fn export_session(&self, _server: &Server, session: &LocalSession) -> Option<String> {
        self.caps.forget(&session.jid);
        let wanted = self.interests.remove(&session.jid)?;
        Some(wanted.iter().cloned().collect::<Vec<_>>().join("\n"))
    }

    fn restore_session(&self, _server: &Server, session: &Arc<LocalSession>, wanted: &str) {
        let nodes: std::collections::HashSet<String> = wanted
            .lines()
            .filter(|node| !node.is_empty())
            .map(str::to_owned)
            .collect();
        self.interests.set(&session.jid, Arc::new(nodes));
    }

    fn user_deleted<'a>(
        &'a self,
        store: &'a Store,
        user: &'a BareJid,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        crate::modules::delete_for_account(user, |owner| store.delete_pep_owner(owner))
    }

    fn metrics(&self) -> Vec<Metric> {
        let counter = Metric::counter;
        let c = &self.counters;
        vec![
            counter(
                "starling_pep_published_total",
                "Items published to PEP nodes through this member.",
                &c.published,
            ),
            counter(
                "starling_pep_notifications_local_total",
                "PEP notifications handed to sessions on the publishing member.",
                &c.notifications_local,
            ),
            counter(
                "starling_pep_notifications_remote_total",
                "PEP notifications sent to sessions on other members (one per session).",
                &c.notifications_remote,
            ),
            counter(
                "starling_pep_notifications_withheld_total",
                "PEP notifications not delivered: the session does not want that node.",
                &c.withheld,
            ),
            counter(
                "starling_pep_last_items_sent_total",
                "Newest items sent to sessions that started wanting a node.",
                &c.last_items,
            ),
            counter(
                "starling_caps_queries_total",
                "Capabilities asked of clients (hash known neither here nor in the store).",
                &c.caps_queries,
            ),
            counter(
                "starling_caps_unverified_total",
                "Capabilities answers whose hash did not match (used for that session only).",
                &c.caps_unverified,
            ),
            Metric::gauge(
                "starling_pep_remote_resources",
                "Available resources of contacts on other servers tracked on this member.",
                self.remote.tracked() as u64,
            ),
            Metric::gauge(
                "starling_pep_interested_sessions",
                "Sessions on this member whose wanted PEP nodes are known.",
                self.interests.len() as u64,
            ),
        ]
    }
}

impl Pep {
    /// A presence from a contact of another server (its resources and
    /// capabilities are noted) or its client's answer to our capabilities
    /// question (taken: `Withhold`). `None` for anything else.
    fn from_remote_contact(
        &self,
        server: &Server,
        session: &LocalSession,
        stanza: &Element,
    ) -> Option<Delivery> {
        let name = stanza.name();
        if name != "presence" && name != "iq" {
            return None;
        }
        let from = stanza.attr("from")?;
        // Most deliveries are from our own users: decided without parsing.
        let domain = from.split('/').next()?.rsplit('@').next()?;
        if server.serves_domain(domain) {
            return None;
        }
        let from = starling_core::jid::FullJid::new(from).ok()?;
        if server.serves_domain(from.domain().as_str()) {
            return None;
        }
        let this = server.this()?;
        if name == "presence" {
            if let remote::Learnt::Resolve(advertised) =
                self.remote.observe(&self.caps, &from, stanza)
            {
                self.counters.caps_queries.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(remote::resolve(
                    this,
                    self.caps.clone(),
                    self.remote.clone(),
                    from,
                    session.jid.clone(),
                    advertised,
                ));
            }
            return Some(Delivery::Deliver);
        }
        let answer = matches!(stanza.attr("type"), Some("result" | "error"))
            && stanza
                .attr("id")
                .is_some_and(|id| id.starts_with(caps::ID_PREFIX));
        if !answer {
            return None;
        }
        let pending = self.caps.answered(stanza.attr("id")?, &from)?;
        let (caps, remote, asker) = (self.caps.clone(), self.remote.clone(), session.jid.clone());
        let answer = stanza.clone();
        tokio::spawn(async move {
            let verified = remote::answered(this, caps, remote, asker, pending, answer).await;
            if !verified {
                tracing::debug!(
                    "a remote contact's capabilities answer does not match its hash; used for that resource only"
                );
            }
        });
        Some(Delivery::Withhold)
    }

    fn is_caps_answer(&self, stanza: &Stanza) -> bool {
        matches!(stanza.iq_type(), Some(IqType::Result | IqType::Error))
            && stanza
                .id()
                .is_some_and(|id| id.starts_with(caps::ID_PREFIX))
    }

    /// A session's available presence named its capabilities: find out what
    /// it wants, from the cache, the store, or the client itself.
    async fn capabilities(
        &self,
        server: &Server,
        session: &Arc<LocalSession>,
        advertised: Advertised,
    ) {
        let key = advertised.key();
        if let Some(interest) = self.caps.cache.get(&key) {
            return self.wants(server, session, interest).await;
        }
        match server.store.caps_features(&key).await {
            Ok(Some(features)) => {
                let interest = caps::interest(features.lines());
                self.caps.cache.insert(key, interest.clone());
                return self.wants(server, session, interest).await;
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "reading the capabilities cache failed; asking the client")
            }
        }
        if self.interests.get(&session.jid).is_none() {
            // Until the client answers, it wants nothing.
            self.interests.set(&session.jid, caps::interest([]));
        }
        self.counters.caps_queries.fetch_add(1, Ordering::Relaxed);
        let query_node = format!("{}#{}", advertised.node, advertised.ver);
        let id = self.caps.ask(caps::Pending {
            jid: session.jid.clone(),
            advertised,
        });
        let question = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", id)
            .with_attr("from", server.domain.clone())
            .with_attr("to", session.jid.as_str())
            .with_child(Element::new("query", ns::DISCO_INFO).with_attr("node", query_node));
        let _closing = crate::router::resources::deliver_local(server, session, question);
    }

    async fn caps_answered(
        &self,
        server: &Server,
        session: &Arc<LocalSession>,
        pending: caps::Pending,
        answer: &Stanza,
    ) {
        let info = answer.payload().filter(|query| {
            query.is("query", ns::DISCO_INFO) && answer.iq_type() == Some(IqType::Result)
        });
        let Some(info) = info else {
            // An error: the client will not say; it gets no notifications.
            return;
        };
        let features = caps::features(info);
        let interest = caps::interest(features.iter().map(String::as_str));
        if caps::verifies(&pending.advertised, info) {
            let key = pending.advertised.key();
            if let Err(error) = server
                .store
                .store_caps_features(&key, &features.join("\n"))
                .await
            {
                tracing::warn!(%error, "storing a capabilities hash failed; members will ask again");
            }
            self.caps.cache.insert(key, interest.clone());
        } else {
            self.counters
                .caps_unverified
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(jid = %session.jid, "capabilities answer does not match its hash; used for this session only");
        }
        self.wants(server, session, interest).await
    }

    /// Records what a session wants; nodes it did not want before get their
    /// newest items.
    async fn wants(&self, server: &Server, session: &Arc<LocalSession>, interest: caps::Interest) {
        let before = self.interests.set(&session.jid, interest.clone());
        let new_nodes: Vec<String> = interest
            .iter()
            .filter(|node| !before.as_ref().is_some_and(|old| old.contains(*node)))
            .cloned()
            .collect();
        if new_nodes.is_empty() {
            return;
        }
        let sent = notify::last_items(server, session, &new_nodes).await;
        self.counters.last_items.fetch_add(sent, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::PepConfig;

    #[test]
    fn the_default_config_file_shows_the_defaults() {
        let documented: PepConfig = crate::modules::registry::documented("pep");
        assert_eq!(documented, PepConfig::default());
    }
}
