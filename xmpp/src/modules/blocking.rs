//! XEP-0191 blocking command: a user's list of blocked JIDs, kept in the
//! store, and its effect wherever the user's stanzas are delivered.
//!
//! Where each rule is enforced, and why there (see ARCHITECTURE.md,
//! "Blocking in a cluster"):
//! - stanzas from a blocked JID to the user: in the `Deliver` hook, on the
//!   node that holds the user's session, from this node's cache of the
//!   block lists of its local users. The sender's node does not have that
//!   list, so a sender on any member is stopped where the user is;
//! - subscription requests, probes and iqs to the user's bare JID never
//!   reach a session: the `Inbound` hook stops them where they are routed,
//!   and the `Offline` hook refuses messages that would be stored;
//! - stanzas from the user to a blocked JID: the `ClientStanza` hook, on
//!   the user's node, refuses them with `<not-acceptable/>` and
//!   `<blocked xmlns='urn:xmpp:blocking:errors'/>`;
//! - presence the server sends for the user (broadcasts, probe answers):
//!   the `OutboundPresence` hook, on the user's node. The contact's node
//!   cannot decide it: it holds the contact's list, not the user's.
//!
//! The cache holds the list of every user with a session here: loaded when
//! a session opens, dropped when the user's last session here closes. A
//! change reloads it here and, through a cluster invalidation, on every
//! member with a session of the user; the member answers the invalidation
//! only after its reload, so when the client gets the result of its block,
//! every member enforces it.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use starling_core::cache::{CacheKind, Lru, StatsSource};
use starling_core::cluster::StanzaKind;
use starling_core::jid::{BareJid, Jid, bare_str, same_bare};
use starling_core::xml::{Element, ns};

use super::{
    Addressee, Delivery, Disco, Flow, Hook, IqRequest, IqRoute, Module, ModuleConfigError, Options,
    Registration,
};
use crate::BoxFuture;
use crate::metrics::Outcome;
use crate::roster::PresenceNotice;
use crate::roster::service::presence_notice;
use crate::router::iq::reply;
use crate::router::resources::{self, send_to};
use crate::router::{self, Routed, bounce, count, route};
use crate::server::Server;
use crate::session::LocalSession;
use crate::stanza::{
    Condition, IqType, MessageType, PresenceType, Stanza, StanzaError, error_reply,
};
use crate::storage::{StorageError, Store};

/// The XEP-0191 namespace.
pub const NS_BLOCKING: &str = "urn:xmpp:blocking";
/// The namespace of the `<blocked/>` application error.
pub const NS_BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";

/// Name of the per-node cache of block lists (also in cluster invalidations).
pub const BLOCKLIST_CACHE: &str = "blocklists";

/// How often a load is read again when a change raced it.
const LOAD_ATTEMPTS: usize = 3;

/// `[modules.blocking]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    /// Block lists kept in memory per node (one per user with a session).
    cache_entries: usize,
    /// Most JIDs one user may block.
    max_items: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cache_entries: 100_000,
            max_items: 1_000,
        }
    }
}

/// One user's blocked JIDs, prepared, matched as XEP-0191 section 3 says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BlockList {
    jids: BTreeSet<String>,
}

impl BlockList {
    pub fn new(jids: impl IntoIterator<Item = String>) -> BlockList {
        BlockList {
            jids: jids.into_iter().collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.jids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.jids.is_empty()
    }

    pub fn contains(&self, jid: &str) -> bool {
        self.jids.contains(jid)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.jids.iter().map(String::as_str)
    }

    /// Whether stanzas from (or to) `jid` are blocked: an item equal to the
    /// full JID, the bare JID, `domain/resource`, the domain, or a domain
    /// the JID's domain is a subdomain of.
    pub fn blocks(&self, jid: &Jid) -> bool {
        if self.jids.is_empty() {
            return false;
        }
        if self.jids.contains(jid.as_str()) {
            return true;
        }
        let domain = jid.domain().as_str();
        if jid.node().is_some() && self.jids.contains(bare_str(jid)) {
            return true;
        }
        if let Some(resource) = jid.resource() {
            if self.jids.contains(&format!("{domain}/{resource}")) {
                return true;
            }
        }
        let mut suffix = domain;
        loop {
            if self.jids.contains(suffix) {
                return true;
            }
            match suffix.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => suffix = parent,
                _ => return false,
            }
        }
    }
}

/// Why a command was refused: the stanza error it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    condition: Condition,
    text: String,
}

impl Refusal {
    fn new(condition: Condition, text: impl Into<String>) -> Refusal {
        Refusal {
            condition,
            text: text.into(),
        }
    }

    fn to_error(&self) -> StanzaError {
        StanzaError::new(self.condition).with_text(self.text.clone())
    }
}

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    List,
    Block(Vec<String>),
    Unblock(Vec<String>),
    UnblockAll,
}

impl Command {
    /// Reads the payload of a `urn:xmpp:blocking` iq.
    fn parse(ty: IqType, payload: &Element) -> Result<Command, Refusal> {
        let bad_request = |text: &str| Refusal::new(Condition::BadRequest, text);
        match (ty, payload.name()) {
            (IqType::Get, "blocklist") => Ok(Command::List),
            (IqType::Set, "block") => {
                let jids = item_jids(payload)?;
                if jids.is_empty() {
                    return Err(bad_request("<block/> needs at least one <item/>"));
                }
                Ok(Command::Block(jids))
            }
            (IqType::Set, "unblock") => {
                let jids = item_jids(payload)?;
                Ok(if jids.is_empty() {
                    Command::UnblockAll
                } else {
                    Command::Unblock(jids)
                })
            }
            _ => Err(bad_request(
                "expected <blocklist/> in a get, <block/> or <unblock/> in a set",
            )),
        }
    }
}

/// The prepared JIDs of the `<item jid=''/>` children, in order, once each.
fn item_jids(payload: &Element) -> Result<Vec<String>, Refusal> {
    let mut jids = Vec::new();
    for item in payload
        .children()
        .filter(|child| child.is("item", NS_BLOCKING))
    {
        let Some(raw) = item.attr("jid") else {
            return Err(Refusal::new(
                Condition::BadRequest,
                "an <item/> has no 'jid' attribute",
            ));
        };
        let jid = Jid::new(raw).map_err(|error| {
            Refusal::new(
                Condition::JidMalformed,
                format!("the item JID {raw:?} is malformed: {error}"),
            )
        })?;
        let jid = jid.to_string();
        if !jids.contains(&jid) {
            jids.push(jid);
        }
    }
    Ok(jids)
}

/// `<block/>` or `<unblock/>` holding these items.
fn command_element(name: &'static str, jids: &[String]) -> Element {
    let mut element = Element::new(name, NS_BLOCKING);
    for jid in jids {
        element.push_child(Element::new("item", NS_BLOCKING).with_attr("jid", jid.as_str()));
    }
    element
}

fn storage_error(error: StorageError) -> StanzaError {
    tracing::error!(%error, "block list storage failed");
    StanzaError::new(Condition::InternalServerError)
        .with_text("The block list store failed; try again")
}

pub struct BlockingModule {
    /// Username -> block list, for the users with a session on this node.
    lists: Arc<Lru<String, Arc<BlockList>>>,
    /// Changes so far (of any list), so that a load racing one is redone.
    changes: AtomicU64,
    /// Sessions here that retrieved the block list: pushes go to them only.
    interested: Mutex<HashSet<u64>>,
    push_ids: AtomicU64,
    max_items: usize,
}

impl BlockingModule {
    pub fn new(options: Options) -> Result<BlockingModule, ModuleConfigError> {
        let settings: Settings = options.parse()?;
        Ok(BlockingModule {
            lists: Arc::new(Lru::new(
                BLOCKLIST_CACHE,
                CacheKind::Invalidated,
                settings.cache_entries,
            )),
            changes: AtomicU64::new(0),
            interested: Mutex::new(HashSet::new()),
            push_ids: AtomicU64::new(1),
            max_items: settings.max_items,
        })
    }

    fn interested(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.interested
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached list of a user with a session here.
    fn cached(&self, user: &BareJid) -> Option<Arc<BlockList>> {
        self.lists.get(user.node()?.as_str())
    }

    /// The session's user's cached list if it blocks anyone. Loaded when the
    /// session opened; a miss is an eviction (more users online here than
    /// `cache_entries`), which lets stanzas pass.
    fn blocking_anyone(&self, session: &LocalSession) -> Option<Arc<BlockList>> {
        let node = session.jid.node()?;
        self.lists
            .get(node.as_str())
            .filter(|list| !list.is_empty())
    }

    /// Reads `owner`'s list from the store into the cache. A change that
    /// lands while the store is read makes it read again: the read may
    /// predate the write.
    async fn load(&self, store: &Store, owner: &str) -> Result<Arc<BlockList>, StorageError> {
        let mut attempt = 0;
        loop {
            let before = self.changes.load(Ordering::Acquire);
            let list = Arc::new(BlockList::new(store.get_blocklist(owner).await?));
            attempt += 1;
            if self.changes.load(Ordering::Acquire) == before || attempt == LOAD_ATTEMPTS {
                self.lists.insert(owner.to_owned(), list.clone());
                return Ok(list);
            }
        }
    }

    /// The list of any user: cached when they have a session here, else
    /// read from the store (for the rarer stanzas stopped before delivery).
    async fn list_of(&self, store: &Store, user: &BareJid) -> Result<Arc<BlockList>, StorageError> {
        if let Some(list) = self.cached(user) {
            return Ok(list);
        }
        match user.node() {
            Some(owner) => Ok(Arc::new(BlockList::new(
                store.get_blocklist(owner.as_str()).await?,
            ))),
            None => Ok(Arc::default()),
        }
    }

    /// The list changed in the store: reload it here, then on every member
    /// (each reloads before it acknowledges).
    async fn changed(&self, server: &Server, owner: &str) -> Result<Arc<BlockList>, StorageError> {
        self.changes.fetch_add(1, Ordering::AcqRel);
        let list = self.load(&server.store, owner).await;
        server
            .cluster
            .invalidate(BLOCKLIST_CACHE, owner.to_owned())
            .await;
        list
    }

    async fn handle(&self, server: &Server, session: &LocalSession, stanza: &Stanza) -> Routed {
        let user = session.jid.to_bare();
        let (Some(ty), Some(payload), Some(owner)) =
            (stanza.iq_type(), stanza.payload(), user.node())
        else {
            return count(server, Outcome::Discarded);
        };
        let owner = owner.to_string();
        let command = match Command::parse(ty, payload) {
            Ok(command) => command,
            Err(refusal) => return bounce(server, stanza, refusal.to_error()).await,
        };
        let before = match self.list_of(&server.store, &user).await {
            Ok(list) => list,
            Err(error) => return bounce(server, stanza, storage_error(error)).await,
        };
        let (written, push) = match &command {
            Command::List => {
                // XEP-0191 3.3: pushes go to the resources that asked.
                self.interested().insert(session.id);
                let jids: Vec<String> = before.iter().map(str::to_owned).collect();
                return reply(server, stanza, Some(command_element("blocklist", &jids))).await;
            }
            Command::Block(jids) => {
                let added = jids.iter().filter(|jid| !before.contains(jid)).count();
                if before.len() + added > self.max_items {
                    let error = StanzaError::new(Condition::NotAcceptable).with_text(format!(
                        "A block list holds at most {} JIDs",
                        self.max_items
                    ));
                    return bounce(server, stanza, error).await;
                }
                (
                    server.store.block_jids(&owner, jids).await,
                    command_element("block", jids),
                )
            }
            Command::Unblock(jids) => (
                server.store.unblock_jids(&owner, jids).await,
                command_element("unblock", jids),
            ),
            Command::UnblockAll => (
                server.store.clear_blocklist(&owner).await,
                command_element("unblock", &[]),
            ),
        };
        // Reloaded even after a failed write: the store may have changed.
        let after = self.changed(server, &owner).await;
        if let Err(error) = written {
            return bounce(server, stanza, storage_error(error)).await;
        }
        let after = match after {
            Ok(list) => list,
            Err(error) => return bounce(server, stanza, storage_error(error)).await,
        };
        tell_contacts(server, &user, &before, &after).await;
        self.push(server, &user, push);
        reply(server, stanza, None).await
    }

    /// Sends a block or unblock push to every resource of the user; each
    /// node withholds it from its sessions that never asked for the list.
    fn push(&self, server: &Server, user: &BareJid, command: Element) {
        for candidate in resources::resources(server, user) {
            let id = format!("block{}", self.push_ids.fetch_add(1, Ordering::Relaxed));
            let iq = Element::new("iq", ns::CLIENT)
                .with_attr("type", "set")
                .with_attr("id", id)
                .with_attr("to", candidate.target.jid().as_str())
                .with_child(command.clone());
            let _gone = send_to(server, &candidate.target, iq, StanzaKind::Iq);
        }
    }

    /// A stanza from a JID the recipient blocks: what XEP-0191 3.3 says to
    /// answer (service-unavailable for messages and requests, nothing for
    /// presence), sent from a task since delivery cannot wait.
    fn refuse_inbound(&self, server: &Server, session: &LocalSession, stanza: &Element) {
        let answers = match stanza.name() {
            "message" => stanza.attr("type") != Some("error"),
            "iq" => matches!(stanza.attr("type"), Some("get" | "set")),
            _ => false,
        };
        if !answers || !answers_for_the_account(server, session, stanza) {
            return;
        }
        let reply = error_reply(stanza, &StanzaError::new(Condition::ServiceUnavailable));
        let (Some(server), Ok(reply)) = (server.this(), Stanza::from_server(reply)) else {
            return;
        };
        tokio::spawn(async move { route(&server, reply).await });
    }
}

/// XEP-0191 3.3 and 3.4: a contact allowed to see the user's presence gets
/// unavailable presence when blocked, and the current presence again when
/// unblocked.
async fn tell_contacts(server: &Server, user: &BareJid, before: &BlockList, after: &BlockList) {
    let roster = match server.rosters.get(user).await {
        Ok(roster) => roster,
        Err(error) => {
            tracing::error!(%user, %error, "roster unavailable; blocked contacts not told");
            return;
        }
    };
    for contact in roster.subscribers() {
        let jid = Jid::from(contact.clone());
        let notice = match (before.blocks(&jid), after.blocks(&jid)) {
            (false, true) => PresenceNotice::Unavailable,
            (true, false) => PresenceNotice::Available,
            _ => continue,
        };
        presence_notice(server, user, contact, notice).await;
    }
}

/// A message to the bare JID arrives as a copy at each of the user's
/// top-priority resources, possibly on several members: only one of them,
/// the same on every member (the least full JID), answers for the account,
/// so the sender gets one error.
fn answers_for_the_account(server: &Server, session: &LocalSession, stanza: &Element) -> bool {
    let to_bare = stanza
        .attr("to")
        .and_then(|to| Jid::new(to).ok())
        .is_some_and(|to| to.resource().is_none());
    if !to_bare {
        return true;
    }
    let candidates: Vec<_> = resources::resources(server, &session.jid.to_bare())
        .into_iter()
        .filter(|candidate| candidate.available && candidate.priority >= 0)
        .collect();
    let Some(top) = candidates.iter().map(|candidate| candidate.priority).max() else {
        return true;
    };
    candidates
        .iter()
        .filter(|candidate| candidate.priority == top)
        .map(|candidate| candidate.target.jid().as_str())
        .min()
        .is_none_or(|first| first == session.jid.as_str())
}

/// A server push of this module (a client's iq carries its `from`).
fn is_push(stanza: &Element) -> bool {
    stanza.name() == "iq"
        && stanza.attr("from").is_none()
        && stanza.attr("type") == Some("set")
        && stanza
            .children()
            .any(|child| child.ns() == NS_BLOCKING && matches!(child.name(), "block" | "unblock"))
}

/// Addressed to the server itself or to the user's own account: never
/// blocked, or a user blocking their own domain could not unblock it.
/// `user`: any JID of the account.
fn is_own_or_server(server: &Server, user: &Jid, jid: &Jid) -> bool {
    same_bare(jid, user) || (jid.node().is_none() && jid.domain().as_str() == server.domain)
}

impl Module for BlockingModule {
    fn name(&self) -> &'static str {
        "blocking"
    }

    fn registration(&self) -> Registration {
        Registration {
            iqs: IqRoute::get_and_set(NS_BLOCKING, Addressee::Account),
            hooks: vec![
                Hook::ClientStanza,
                Hook::Inbound,
                Hook::Deliver,
                Hook::OutboundPresence,
                Hook::Offline,
                Hook::SessionOpened,
                Hook::SessionClosed,
                Hook::SessionMoved,
                Hook::UserDeleted,
            ],
            server_disco: vec![Disco::Feature(NS_BLOCKING)],
            ..Registration::default()
        }
    }

    fn caches(&self) -> Vec<Arc<dyn StatsSource>> {
        vec![self.lists.clone()]
    }

    fn invalidate<'a>(
        &'a self,
        server: &'a Server,
        _cache: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.changes.fetch_add(1, Ordering::AcqRel);
            let Ok(user) = BareJid::new(&format!("{key}@{}", server.domain)) else {
                self.lists.remove(&key.to_owned());
                return;
            };
            if !server.sessions.has_resources(&user) {
                self.lists.remove(&key.to_owned());
                return;
            }
            if let Err(error) = self.load(&server.store, key).await {
                // Better no list than a stale one: the sessions see a miss.
                self.lists.remove(&key.to_owned());
                tracing::error!(%user, %error, "reloading a changed block list failed");
            }
        })
    }

    fn iq<'a>(&'a self, server: &'a Server, request: IqRequest) -> BoxFuture<'a, Routed> {
        Box::pin(async move {
            match &request.session {
                Some(session) if request.is_own_account() => {
                    self.handle(server, session, &request.stanza).await
                }
                _ => {
                    let error = StanzaError::new(Condition::Forbidden)
                        .with_text("A block list is only for its owner");
                    bounce(server, &request.stanza, error).await
                }
            }
        })
    }

    fn client_stanza<'a>(
        &'a self,
        server: &'a Server,
        session: &'a Arc<LocalSession>,
        stanza: Stanza,
    ) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            let Some(to) = &stanza.to else {
                return Flow::Continue(stanza);
            };
            let Some(list) = self.blocking_anyone(session) else {
                return Flow::Continue(stanza);
            };
            if is_own_or_server(server, &session.jid, to) || !list.blocks(to) {
                return Flow::Continue(stanza);
            }
            let error = StanzaError::new(Condition::NotAcceptable)
                .with_extra(Element::new("blocked", NS_BLOCKING_ERRORS));
            // Queued to the session directly: routed, the error would come
            // from the blocked JID and be withheld.
            Flow::Done(match stanza.error_reply(&error) {
                Some(reply) => {
                    let _gone = session.send(Box::new(reply));
                    router::bounced(server, error.condition)
                }
                None => count(server, Outcome::Discarded),
            })
        })
    }

    /// What never reaches a session: subscription stanzas and probes (the
    /// roster engine would record a request), and iqs the server answers
    /// for the account.
    fn inbound<'a>(
        &'a self,
        server: &'a Server,
        stanza: Stanza,
        to: &'a Jid,
    ) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            let stopped_here = match stanza.kind {
                StanzaKind::Presence => stanza
                    .presence_type()
                    .is_some_and(|ty| ty.is_subscription() || ty == PresenceType::Probe),
                StanzaKind::Iq => to.resource().is_none(),
                StanzaKind::Message => false,
            };
            let Some(from) = stanza.from.as_ref().filter(|_| stopped_here).cloned() else {
                return Flow::Continue(stanza);
            };
            if same_bare(&from, to) {
                return Flow::Continue(stanza);
            }
            let user = to.to_bare();
            let list = match self.list_of(&server.store, &user).await {
                Ok(list) => list,
                Err(error) => {
                    // The block cannot be checked: the stanza goes on as if
                    // there were none, rather than every stanza failing.
                    tracing::error!(%user, %error, "block list unreadable; stanza not checked");
                    return Flow::Continue(stanza);
                }
            };
            if !list.blocks(&from) {
                return Flow::Continue(stanza);
            }
            Flow::Done(match stanza.iq_type() {
                Some(IqType::Get | IqType::Set) => {
                    bounce(server, &stanza, Condition::ServiceUnavailable.into()).await
                }
                _ => count(server, Outcome::Discarded),
            })
        })
    }

    fn deliver(&self, server: &Server, session: &LocalSession, stanza: &Element) -> Delivery {
        if is_push(stanza) {
            return if self.interested().contains(&session.id) {
                Delivery::Deliver
            } else {
                Delivery::Withhold
            };
        }
        // Most users block no one: their stanzas' senders are not parsed.
        let Some(list) = self.blocking_anyone(session) else {
            return Delivery::Deliver;
        };
        let Some(from) = stanza.attr("from").and_then(|from| Jid::new(from).ok()) else {
            return Delivery::Deliver;
        };
        if is_own_or_server(server, &session.jid, &from) || !list.blocks(&from) {
            return Delivery::Deliver;
        }
        self.refuse_inbound(server, session, stanza);
        Delivery::Withhold
    }

    fn outbound_presence(&self, _server: &Server, user: &BareJid, contact: &Jid) -> Delivery {
        match self.cached(user) {
            Some(list) if list.blocks(contact) => Delivery::Withhold,
            _ => Delivery::Deliver,
        }
    }

    /// A message that would be stored for later: refused now if the sender
    /// is blocked, instead of when the user comes online.
    fn offline<'a>(
        &'a self,
        server: &'a Server,
        stanza: Stanza,
        user: &'a BareJid,
    ) -> BoxFuture<'a, Flow> {
        Box::pin(async move {
            let Some(from) = stanza.from.clone() else {
                return Flow::Continue(stanza);
            };
            match self.list_of(&server.store, user).await {
                Ok(list) if list.blocks(&from) => {
                    Flow::Done(if stanza.message_type() == Some(MessageType::Error) {
                        count(server, Outcome::Discarded)
                    } else {
                        bounce(server, &stanza, Condition::ServiceUnavailable.into()).await
                    })
                }
                Ok(_) => Flow::Continue(stanza),
                Err(error) => {
                    tracing::error!(%user, %error, "block list unreadable; offline message not checked");
                    Flow::Continue(stanza)
                }
            }
        })
    }

    fn session_opened<'a>(
        &'a self,
        server: &'a Server,
        session: &'a Arc<LocalSession>,
        _replaced: Option<&'a Arc<LocalSession>>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(owner) = session.jid.node() else {
                return;
            };
            let owner = owner.to_string();
            if self.lists.get(&owner).is_some() {
                return;
            }
            if let Err(error) = self.load(&server.store, &owner).await {
                tracing::error!(jid = %session.jid, %error, "loading the block list failed; nothing is blocked for this session");
            }
        })
    }

    /// Also what closing the session does (the default `session_closed`):
    /// the last session of the user takes the cached list with it.
    fn export_session(&self, server: &Server, session: &LocalSession) -> Option<String> {
        let interested = self.interested().remove(&session.id);
        let user = session.jid.to_bare();
        if !server.sessions.has_resources(&user) {
            if let Some(owner) = user.node() {
                self.lists.remove(&owner.to_string());
            }
        }
        interested.then(|| "interested".to_owned())
    }

    fn import_session<'a>(
        &'a self,
        server: &'a Server,
        session: &'a Arc<LocalSession>,
        state: Option<&'a str>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if state == Some("interested") {
                self.interested().insert(session.id);
            }
            self.session_opened(server, session, None).await;
        })
    }

    fn user_deleted<'a>(
        &'a self,
        store: &'a Store,
        user: &'a BareJid,
    ) -> BoxFuture<'a, Result<(), StorageError>> {
        super::delete_for_account(user, |owner| store.clear_blocklist(owner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(text: &str) -> Jid {
        Jid::new(text).unwrap()
    }

    fn list(items: &[&str]) -> BlockList {
        BlockList::new(items.iter().map(|item| (*item).to_owned()))
    }

    #[test]
    fn matching_follows_xep_0191_section_3() {
        let full = list(&["romeo@montague.net/orchard"]);
        assert!(full.blocks(&jid("romeo@montague.net/orchard")));
        assert!(!full.blocks(&jid("romeo@montague.net/garden")));
        assert!(!full.blocks(&jid("romeo@montague.net")));

        let bare = list(&["romeo@montague.net"]);
        assert!(bare.blocks(&jid("romeo@montague.net")));
        assert!(bare.blocks(&jid("romeo@montague.net/any")));
        assert!(!bare.blocks(&jid("juliet@montague.net")));

        let domain_resource = list(&["montague.net/bot"]);
        assert!(domain_resource.blocks(&jid("montague.net/bot")));
        assert!(domain_resource.blocks(&jid("anyone@montague.net/bot")));
        assert!(!domain_resource.blocks(&jid("montague.net")));

        let domain = list(&["montague.net"]);
        for blocked in [
            "montague.net",
            "romeo@montague.net",
            "romeo@montague.net/orchard",
            "montague.net/bot",
            "pubsub.montague.net",
            "a@x.y.montague.net",
        ] {
            assert!(domain.blocks(&jid(blocked)), "{blocked}");
        }
        for allowed in ["capulet.net", "evilmontague.net", "montague.net.example"] {
            assert!(!domain.blocks(&jid(allowed)), "{allowed}");
        }
        assert!(!BlockList::default().blocks(&jid("anyone@anywhere")));
    }

    fn payload(xml: &str) -> Element {
        crate::stream::parse_element(xml.as_bytes()).unwrap()
    }

    #[test]
    fn commands_are_read_and_bad_ones_named() {
        let get = payload("<blocklist xmlns='urn:xmpp:blocking'/>");
        assert_eq!(Command::parse(IqType::Get, &get), Ok(Command::List));

        let block = payload(
            "<block xmlns='urn:xmpp:blocking'><item jid='Romeo@Montague.net'/>\
             <item jid='romeo@montague.net'/><item jid='example.org'/></block>",
        );
        assert_eq!(
            Command::parse(IqType::Set, &block),
            Ok(Command::Block(vec![
                "romeo@montague.net".to_owned(),
                "example.org".to_owned()
            ]))
        );

        let all = payload("<unblock xmlns='urn:xmpp:blocking'/>");
        assert_eq!(Command::parse(IqType::Set, &all), Ok(Command::UnblockAll));

        let empty = payload("<block xmlns='urn:xmpp:blocking'/>");
        let error = Command::parse(IqType::Set, &empty).unwrap_err();
        assert_eq!(error.condition, Condition::BadRequest);

        let malformed = payload("<block xmlns='urn:xmpp:blocking'><item jid='a@b@c'/></block>");
        let error = Command::parse(IqType::Set, &malformed).unwrap_err();
        assert_eq!(error.condition, Condition::JidMalformed);

        let no_jid = payload("<unblock xmlns='urn:xmpp:blocking'><item/></unblock>");
        let error = Command::parse(IqType::Set, &no_jid).unwrap_err();
        assert_eq!(error.condition, Condition::BadRequest);

        let wrong_type = payload("<block xmlns='urn:xmpp:blocking'><item jid='a@b'/></block>");
        let error = Command::parse(IqType::Get, &wrong_type).unwrap_err();
        assert_eq!(error.condition, Condition::BadRequest);
    }

    #[test]
    fn pushes_are_told_from_client_iqs() {
        let push = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_child(command_element("block", &["a@b".to_owned()]));
        assert!(is_push(&push));
        let from_client = push.clone().with_attr("from", "x@y/z");
        assert!(!is_push(&from_client));
    }
}
