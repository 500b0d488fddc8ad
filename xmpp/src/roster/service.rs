//! RFC 6121 sections 2 and 3 applied: roster get/set/remove with pushes, and
//! subscription stanzas run through the state machine in `subscription`,
//! with the store and routing around it.
//!
//! Every read-modify-write of one user's roster holds that user's roster
//! lock; a handler never holds two users' locks at once (the contact's side
//! is processed when the routed stanza arrives there).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use starling_core::cache::{CacheKind, CacheRegistry, Lru};
use starling_core::cluster::{Cluster, StanzaKind};
use starling_core::jid::{BareJid, Jid};
use starling_core::xml::{Element, ns};

use super::cached::Roster;
use super::interned::JidPool;
use super::query::{
    ErrorCondition, RosterItem, RosterLimits, RosterSet, requested_version, roster_push,
    roster_query,
};
use super::subscription::{
    Change, ContactState, Disposition, InboundOutcome, ItemView, OutboundOutcome, PresenceNotice,
    SubscriptionKind, inbound, outbound, removal,
};
use crate::metrics::Outcome;
use crate::router::Routed;
use crate::router::iq::reply;
use crate::router::locks::DeliveryLocks;
use crate::router::resources::{self, send_to};
use crate::router::{bounce, count, message, route};
use crate::server::Server;
use crate::session::LocalSession;
use crate::stanza::{Condition, IqType, Stanza, StanzaError};
use crate::storage::{StorageError, Store, StoredRosterItem};

/// Name of the roster cache (also in cluster invalidations).
pub const ROSTER_CACHE: &str = "rosters";

/// Rosters: the store behind an LRU of parsed rosters, and per-user locks.
///
/// The cache is cluster-invalidated: after a write, every other member drops
/// its copy before the change is acknowledged to the client.
pub struct Rosters {
    store: Store,
    cluster: Arc<dyn Cluster>,
    cache: Arc<Lru<String, Arc<Roster>>>,
    /// The contact JIDs the cached rosters share.
    jids: JidPool,
    locks: DeliveryLocks,
    push_ids: AtomicU64,
    /// Invalidations so far (of any roster), so that a read racing one is
    /// not cached.
    invalidations: AtomicU64,
    limits: RosterLimits,
}

impl Rosters {
    pub fn new(
        store: Store,
        cluster: Arc<dyn Cluster>,
        entries: usize,
        registry: &CacheRegistry,
    ) -> Rosters {
        let cache = Arc::new(Lru::new(ROSTER_CACHE, CacheKind::Invalidated, entries));
        registry.register(cache.clone());
        Rosters {
            store,
            cluster,
            cache,
            jids: JidPool::default(),
            locks: DeliveryLocks::default(),
            push_ids: AtomicU64::new(1),
            invalidations: AtomicU64::new(0),
            limits: RosterLimits::default(),
        }
    }

    /// A user's roster (an empty one for users that have none).
    pub async fn get(&self, user: &BareJid) -> Result<Arc<Roster>, StorageError> {
        let Some(owner) = user.node().map(|node| node.to_string()) else {
            return Ok(Arc::new(Roster::default()));
        };
        if let Some(roster) = self.cache.get(&owner) {
            return Ok(roster);
        }
        let generation = self.invalidations.load(Ordering::Acquire);
        // The version first: a write between the two reads then makes the
        // version older than the items, never newer, and a client caching
        // this roster is sent it again rather than missing the write.
        let version = self.store.get_roster_version(&owner).await?;
        let roster = Arc::new(Roster::from_stored(
            &owner,
            self.store.get_roster(&owner).await?,
            version,
            &self.jids,
        ));
        // An invalidation that arrived while the store was read may be for
        // a write this read did not see: caching it would keep it stale.
        if self.invalidations.load(Ordering::Acquire) == generation {
            self.cache.insert(owner, roster.clone());
        }
        Ok(roster)
    }

    /// Writes one contact's entry (or deletes it) and drops the cached
    /// roster; returns the roster's new version, `None` when nothing changed.
    async fn save(
        &self,
        user: &BareJid,
        contact: &BareJid,
        change: Change,
        name: Option<String>,
        groups: Vec<String>,
    ) -> Result<Option<i64>, StorageError> {
        let Some(owner) = user.node().map(|node| node.to_string()) else {
            return Ok(None);
        };
        let result = match change {
            Change::Unchanged => return Ok(None),
            Change::Delete => {
                self.store
                    .delete_roster_item(&owner, contact.as_str())
                    .await
            }
            Change::Store(state) => {
                let item = StoredRosterItem {
                    contact: contact.to_string(),
                    name,
                    groups,
                    sub_to: state.sub.to,
                    sub_from: state.sub.from,
                    pending_out: state.sub.pending_out,
                    pending_in: state.sub.pending_in,
                    preapproved: state.sub.preapproved,
                    in_roster: state.in_roster,
                };
                self.store.put_roster_item(&owner, &item).await.map(Some)
            }
        };
        // Invalidate even after a failed write: the store may have changed.
        self.invalidate_owner(&owner);
        self.cluster.invalidate(ROSTER_CACHE, owner).await;
        result
    }

    /// Drops a user's cached roster that is no longer in use (no change
    /// happened: concurrent reads may still cache what they read).
    pub fn evict(&self, user: &BareJid) {
        if let Some(owner) = user.node() {
            self.cache.remove(&owner.to_string());
        }
    }

    /// Drops one user's cached roster (after a change here or elsewhere).
    pub fn invalidate_owner(&self, owner: &str) {
        self.invalidations.fetch_add(1, Ordering::AcqRel);
        self.cache.remove(&owner.to_owned());
    }

    fn next_push_id(&self) -> String {
        format!("push{}", self.push_ids.fetch_add(1, Ordering::Relaxed))
    }
}

fn roster_error(condition: ErrorCondition, text: String) -> StanzaError {
    let condition = match condition {
        ErrorCondition::BadRequest => Condition::BadRequest,
        ErrorCondition::NotAcceptable => Condition::NotAcceptable,
        ErrorCondition::JidMalformed => Condition::JidMalformed,
    };
    StanzaError::new(condition).with_text(text)
}

fn storage_error(error: StorageError) -> StanzaError {
    tracing::error!(%error, "roster storage failed");
    StanzaError::new(Condition::InternalServerError).with_text("The roster store failed; try again")
}

/// Roster get and set from a client (RFC 6121 2.1.3-2.5).
pub async fn handle_iq(server: &Server, session: &Arc<LocalSession>, stanza: Stanza) -> Routed {
    let user = session.jid.to_bare();
    let Some(query) = stanza.payload().cloned() else {
        return bounce(server, &stanza, StanzaError::new(Condition::BadRequest)).await;
    };
    match stanza.iq_type() {
        Some(IqType::Get) => match server.rosters.get(&user).await {
            Ok(roster) => {
                session.presence().interested = true;
                let version = roster.version();
                // RFC 6121 2.6.3: the client has this version cached, so an
                // empty result, and what changes from now on comes as pushes.
                if requested_version(&query) == Some(version.as_str()) {
                    return reply(server, &stanza, None).await;
                }
                let items = roster.items();
                let result = roster_query(&items, Some(version.as_str()));
                reply(server, &stanza, Some(result)).await
            }
            Err(error) => bounce(server, &stanza, storage_error(error)).await,
        },
        Some(IqType::Set) => {
            let set = match RosterSet::parse(&query, &server.rosters.limits) {
                Ok(set) => set,
                Err(error) => {
                    let stanza_error = roster_error(error.condition(), error.to_string());
                    return bounce(server, &stanza, stanza_error).await;
                }
            };
            let result = match set {
                RosterSet::Update(update) => {
                    set_item(server, &user, &update.jid, update.name, update.groups).await
                }
                RosterSet::Remove(contact) => remove_item(server, session, &user, &contact).await,
            };
            match result {
                Ok(()) => reply(server, &stanza, None).await,
                Err(error) => bounce(server, &stanza, error).await,
            }
        }
        _ => count(server, Outcome::Discarded),
    }
}

/// Adds a contact or changes its name and groups (RFC 6121 2.3, 2.4).
async fn set_item(
    server: &Server,
    user: &BareJid,
    contact: &BareJid,
    name: Option<String>,
    groups: Vec<String>,
) -> Result<(), StanzaError> {
    let rosters = &server.rosters;
    let _lock = rosters.locks.lock(user).await;
    let roster = rosters.get(user).await.map_err(storage_error)?;
    let state = ContactState::after_roster_set(roster.state(contact));
    let version = rosters
        .save(
            user,
            contact,
            Change::Store(state),
            name.clone(),
            groups.clone(),
        )
        .await
        .map_err(storage_error)?;
    let item = RosterItem::from_view(contact.clone(), name, groups, state.view());
    push(
        server,
        user,
        &item,
        version.unwrap_or(roster.version_number()),
    );
    Ok(())
}

/// Removes a contact (RFC 6121 2.5): cancels subscriptions both ways first.
async fn remove_item(
    server: &Server,
    session: &LocalSession,
    user: &BareJid,
    contact: &BareJid,
) -> Result<(), StanzaError> {
    let rosters = &server.rosters;
    let (sub, version) = {
        let _lock = rosters.locks.lock(user).await;
        let roster = rosters.get(user).await.map_err(storage_error)?;
        let Some(state) = roster.state(contact).filter(|state| state.in_roster) else {
            return Err(StanzaError::new(Condition::ItemNotFound).with_text("No such roster item"));
        };
        let sub = state.sub;
        let version = rosters
            .save(user, contact, Change::Delete, None, Vec::new())
            .await
            .map_err(storage_error)?;
        (sub, version.unwrap_or(roster.version_number()))
    };
    push(server, user, &RosterItem::removed(contact.clone()), version);
    let effects = removal(sub);
    if effects.send_unavailable {
        presence_notice(server, user, contact, PresenceNotice::Unavailable).await;
    }
    for (send, kind) in [
        (effects.send_unsubscribe, SubscriptionKind::Unsubscribe),
        (effects.send_unsubscribed, SubscriptionKind::Unsubscribed),
    ] {
        if send {
            route_subscription(server, user, contact, kind).await;
        }
    }
    let _ = session;
    Ok(())
}

/// Sends a roster push for `item`, carrying the roster's new `version`, to
/// every interested resource of the user.
pub fn push(server: &Server, user: &BareJid, item: &RosterItem, version: i64) {
    let version = version.to_string();
    for candidate in resources::resources(server, user) {
        if let resources::Target::Local(session) = &candidate.target {
            if !session.presence().interested {
                continue;
            }
        }
        let iq = roster_push(
            &server.rosters.next_push_id(),
            candidate.target.jid(),
            item,
            Some(version.as_str()),
        );
        let _gone = send_to(server, &candidate.target, iq, StanzaKind::Iq);
    }
}

/// `<presence type=kind from=user to=contact/>`, routed (the contact's side
/// is processed when it arrives there).
async fn route_subscription(
    server: &Server,
    user: &BareJid,
    contact: &BareJid,
    kind: SubscriptionKind,
) -> Routed {
    let element = Element::new("presence", ns::CLIENT)
        .with_attr("from", user.as_str())
        .with_attr("to", contact.as_str())
        .with_attr("type", kind.as_str());
    match Stanza::from_server(element) {
        Ok(stanza) => route(server, stanza).await,
        Err(_) => count(server, Outcome::Discarded),
    }
}

/// Presence from each of the user's available resources to the contact:
/// their current presence, or unavailable.
pub async fn presence_notice(
    server: &Server,
    user: &BareJid,
    contact: &BareJid,
    notice: PresenceNotice,
) {
    for session in server.sessions.resources(user) {
        let last = session.presence().last.clone();
        let Some(last) = last else { continue };
        let mut element = match notice {
            PresenceNotice::Available => last,
            PresenceNotice::Unavailable => {
                Element::new("presence", ns::CLIENT).with_attr("type", "unavailable")
            }
        };
        element.set_attr("from", session.jid.as_str());
        element.set_attr("to", contact.as_str());
        if let Ok(stanza) = Stanza::from_server(element) {
            route(server, stanza).await;
        }
    }
    // The user's available resources on other members. Their presence is
    // only known there: a probe on the contact's behalf makes each such
    // member send it, now that the contact may see it. Leaving needs no
    // content, so it is sent from here.
    let mut probed = HashSet::new();
    for entry in server.cluster.remote_resources(user) {
        if !entry.available {
            continue;
        }
        match notice {
            PresenceNotice::Available => {
                if probed.insert(entry.node) {
                    let probe = Element::new("presence", ns::CLIENT)
                        .with_attr("from", contact.as_str())
                        .with_attr("to", user.as_str())
                        .with_attr("type", "probe");
                    let target = resources::Target::Remote {
                        jid: entry.jid,
                        node: entry.node,
                    };
                    let _unreachable = send_to(server, &target, probe, StanzaKind::Presence);
                }
            }
            PresenceNotice::Unavailable => {
                let element = Element::new("presence", ns::CLIENT)
                    .with_attr("from", entry.jid.as_str())
                    .with_attr("to", contact.as_str())
                    .with_attr("type", "unavailable");
                if let Ok(stanza) = Stanza::from_server(element) {
                    route(server, stanza).await;
                }
            }
        }
    }
}

fn subscription_kind(stanza: &Stanza) -> Option<SubscriptionKind> {
    stanza
        .presence_type()
        .and_then(|ty| ty.as_str())
        .and_then(SubscriptionKind::from_presence_type)
}

/// What a subscription stanza does to the user's roster, whichever way it
/// goes.
trait RosterEffect {
    fn change(&self) -> Change;
    /// The roster push due to the user's interested resources, if any.
    fn push(&self) -> Option<ItemView>;
}

impl RosterEffect for OutboundOutcome {
    fn change(&self) -> Change {
        self.change
    }
    fn push(&self) -> Option<ItemView> {
        self.push
    }
}

impl RosterEffect for InboundOutcome {
    fn change(&self) -> Change {
        self.change
    }
    fn push(&self) -> Option<ItemView> {
        self.push
    }
}

/// Under the user's roster lock: the state machine's verdict (`decide`) on
/// the contact's current state, stored (name and groups kept) and pushed
/// to the user's interested resources.
async fn apply<T: RosterEffect>(
    server: &Server,
    user: &BareJid,
    contact: &BareJid,
    decide: impl FnOnce(Option<ContactState>) -> T,
) -> Result<T, StorageError> {
    let rosters = &server.rosters;
    let _lock = rosters.locks.lock(user).await;
    let roster = rosters.get(user).await?;
    let outcome = decide(roster.state(contact));
    let (name, groups) = roster.name_and_groups(contact);
    let version = rosters
        .save(
            user,
            contact,
            outcome.change(),
            name.clone(),
            groups.clone(),
        )
        .await?
        .unwrap_or(roster.version_number());
    if let Some(view) = outcome.push() {
        let item = RosterItem::from_view(contact.clone(), name, groups, view);
        push(server, user, &item, version);
    }
    Ok(outcome)
}

/// A subscription stanza the user sends (RFC 6121 3.1.2, 3.2.2, 3.3.2, 3.4).
pub async fn outbound_subscription(
    server: &Server,
    session: &Arc<LocalSession>,
    stanza: Stanza,
    to: Jid,
) -> Routed {
    let Some(kind) = subscription_kind(&stanza) else {
        return count(server, Outcome::Discarded);
    };
    let user = session.jid.to_bare();
    let contact = to.to_bare();
    if contact == user {
        let error = StanzaError::new(Condition::BadRequest).with_text("A subscription to yourself");
        return bounce(server, &stanza, error).await;
    }
    let outcome = match apply(server, &user, &contact, |state| outbound(state, kind)).await {
        Ok(outcome) => outcome,
        Err(error) => return bounce(server, &stanza, storage_error(error)).await,
    };
    if let Some(notice) = outcome.presence_to_contact {
        presence_notice(server, &user, &contact, notice).await;
    }
    match outcome.disposition {
        // RFC 6121 3.1.2: the server stamps the user's bare JID.
        Disposition::Forward => route_subscription(server, &user, &contact, kind).await,
        Disposition::Absorbed => count(server, Outcome::Handled),
        Disposition::Ignored(_) => count(server, Outcome::Discarded),
    }
}

/// A subscription stanza that arrived for one of our users (RFC 6121 3.1.3,
/// 3.1.6, 3.2.3, 3.3.3, 3.4).
pub async fn inbound_subscription(server: &Server, stanza: Stanza, to: Jid) -> Routed {
    let (Some(kind), Some(from)) = (subscription_kind(&stanza), stanza.from.clone()) else {
        return count(server, Outcome::Discarded);
    };
    let user = to.to_bare();
    let contact = from.to_bare();
    match message::account_exists(server, &user).await {
        Ok(true) => {}
        // RFC 6121 3.1.3: a request to an account that does not exist is
        // answered with 'unsubscribed'; the rest is ignored.
        Ok(false) if kind == SubscriptionKind::Subscribe => {
            let handled = count(server, Outcome::Handled);
            route_subscription(server, &user, &contact, SubscriptionKind::Unsubscribed).await;
            return handled;
        }
        _ => return count(server, Outcome::Discarded),
    }
    let outcome = match apply(server, &user, &contact, |state| inbound(state, kind)).await {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::error!(%user, %error, "roster unavailable; subscription stanza dropped");
            return count(server, Outcome::Discarded);
        }
    };
    let routed = match outcome.disposition {
        Disposition::Forward => {
            let mut element = stanza.element;
            element.set_attr("from", contact.as_str());
            let delivered = deliver_to_available(server, &user, &element);
            let outcome_kind = match (delivered, outcome.show_request) {
                (true, _) => Outcome::Delivered,
                // Kept as a pending request and shown at the next login.
                (false, true) => Outcome::StoredOffline,
                (false, false) => Outcome::Discarded,
            };
            count(server, outcome_kind)
        }
        Disposition::Absorbed => count(server, Outcome::Handled),
        Disposition::Ignored(_) => count(server, Outcome::Discarded),
    };
    if outcome.reply_subscribed {
        route_subscription(server, &user, &contact, SubscriptionKind::Subscribed).await;
    }
    if let Some(notice) = outcome.presence_to_contact {
        presence_notice(server, &user, &contact, notice).await;
    }
    routed
}

/// Sends `element` (to the user's bare JID) to each available resource.
fn deliver_to_available(server: &Server, user: &BareJid, element: &Element) -> bool {
    let mut delivered = false;
    for candidate in resources::resources(server, user) {
        if candidate.available {
            let mut copy = element.clone();
            copy.set_attr("to", user.as_str());
            delivered |= send_to(server, &candidate.target, copy, StanzaKind::Presence).is_ok();
        }
    }
    delivered
}

/// Shows unanswered subscription requests to a session that just became
/// available (RFC 6121 3.1.3).
pub fn deliver_pending_requests(server: &Server, session: &LocalSession, roster: &Roster) {
    let user = session.jid.to_bare();
    for contact in roster.pending_requests() {
        let request = Element::new("presence", ns::CLIENT)
            .with_attr("from", contact.as_str())
            .with_attr("to", user.as_str())
            .with_attr("type", "subscribe");
        let _gone = resources::deliver_local(server, session, request);
    }
}
