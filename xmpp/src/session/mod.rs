//! The sessions bound on this node: full JID -> [`LocalSession`].
//!
//! Every transport (TCP c2s today, WebSocket and CometD later) ends in a
//! `LocalSession`: a bounded mailbox the connection task drains, a close
//! request, and the presence state the router reads. The manager is a
//! sharded map under short `std::sync::Mutex` sections, never held across
//! an `.await`.
//!
//! A session is what every idle client costs, so it is kept lean: the
//! mailbox is a `VecDeque` that allocates only while stanzas wait, and one
//! `Notify` wakes the connection for new stanzas and for close requests
//! alike.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use starling_core::jid::{BareJid, FullJid, Jid, bare_str};
use starling_core::xml::Element;
use tokio::sync::Notify;

/// Why a session was ended from outside its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Another login took the same full JID (RFC 6120 7.7.2.2).
    Conflict,
    /// Another login took the same full JID (RFC 6120 7.7.2.2), here or on
    /// another member; the new session told the contacts this one is gone,
    /// in order before its own presence.
    Replaced,
    /// The client does not read fast enough; its mailbox is full.
    SlowConsumer,
    /// An operator ended the session.
    Kicked,
    /// The account was deleted.
    AccountRemoved,
    /// The node is shutting down.
    Shutdown,
}

impl CloseReason {
    /// The stream error condition sent to the client.
    pub fn condition(self) -> &'static str {
        match self {
            CloseReason::Conflict | CloseReason::Replaced => "conflict",
            CloseReason::SlowConsumer => "policy-violation",
            CloseReason::Kicked => "policy-violation",
            CloseReason::AccountRemoved => "not-authorized",
            CloseReason::Shutdown => "system-shutdown",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            CloseReason::Conflict | CloseReason::Replaced => {
                "Replaced by a new connection for the same resource"
            }
            CloseReason::SlowConsumer => "Too many stanzas waiting: the client does not read them",
            CloseReason::Kicked => "Session ended by an administrator",
            CloseReason::AccountRemoved => "The account was removed",
            CloseReason::Shutdown => "The server is shutting down",
        }
    }

    fn code(self) -> u8 {
        self as u8 + 1
    }

    fn from_code(code: u8) -> Option<CloseReason> {
        [
            CloseReason::Conflict,
            CloseReason::Replaced,
            CloseReason::SlowConsumer,
            CloseReason::Kicked,
            CloseReason::AccountRemoved,
            CloseReason::Shutdown,
        ]
        .into_iter()
        .find(|reason| reason.code() == code)
    }
}

/// Presence facts the router and presence code need about a session.
#[derive(Debug, Default)]
pub struct PresenceState {
    /// Has sent available presence and not unavailable since.
    pub available: bool,
    pub priority: i8,
    /// The last available presence broadcast (answers probes).
    pub last: Option<Element>,
    /// Entities that got directed available presence from this session and
    /// must get unavailable presence when it goes offline (RFC 6121 4.6.3).
    pub directed: Vec<Jid>,
    /// Has requested the roster: roster pushes go to it (RFC 6121 2.1.6).
    pub interested: bool,
}

/// Why a stanza could not be queued for a session.
#[derive(Debug)]
pub enum SendError {
    /// The session is gone; the stanza comes back for another route.
    Closed(Box<Element>),
    /// The mailbox is full; the session is being closed as a slow consumer.
    Full(Box<Element>),
}

impl SendError {
    pub fn into_stanza(self) -> Box<Element> {
        match self {
            SendError::Closed(stanza) | SendError::Full(stanza) => stanza,
        }
    }
}

/// Slots an empty mailbox may keep: the first allocation's (32 bytes).
const IDLE_MAILBOX_SLOTS: usize = 4;

#[derive(Debug, Default)]
struct Mailbox {
    queue: VecDeque<Box<Element>>,
    /// The connection is gone: nothing more is accepted.
    shut: bool,
}

/// One bound resource on this node.
pub struct LocalSession {
    /// Unique on this node, so an old connection never unbinds its successor.
    pub id: u64,
    pub jid: FullJid,
    capacity: usize,
    mailbox: Mutex<Mailbox>,
    /// Wakes the connection: a stanza was queued or a close was requested.
    wake: Notify,
    close_reason: AtomicU8,
    presence: Mutex<PresenceState>,
}

impl std::fmt::Debug for LocalSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSession")
            .field("id", &self.id)
            .field("jid", &self.jid)
            .finish()
    }
}

impl LocalSession {
    /// A session whose mailbox holds at most `capacity` stanzas.
    pub fn new(id: u64, jid: FullJid, capacity: usize) -> Arc<LocalSession> {
        Arc::new(LocalSession {
            id,
            jid,
            capacity,
            mailbox: Mutex::new(Mailbox::default()),
            wake: Notify::new(),
            close_reason: AtomicU8::new(0),
            presence: Mutex::new(PresenceState::default()),
        })
    }

    fn mailbox(&self) -> MutexGuard<'_, Mailbox> {
        self.mailbox
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a stanza without waiting. A full mailbox ends the session: a
    /// client that does not read is cut off instead of growing memory.
    pub fn send(&self, stanza: Box<Element>) -> Result<(), SendError> {
        {
            let mut mailbox = self.mailbox();
            if mailbox.shut {
                return Err(SendError::Closed(stanza));
            }
            if mailbox.queue.len() >= self.capacity {
                drop(mailbox);
                self.close(CloseReason::SlowConsumer);
                return Err(SendError::Full(stanza));
            }
            mailbox.queue.push_back(stanza);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Queues stanzas a session brought from elsewhere (a resumption on
    /// another member) ahead of anything queued since, whatever the
    /// capacity: they were accepted once already.
    pub fn preload(&self, stanzas: Vec<Box<Element>>) {
        {
            let mut mailbox = self.mailbox();
            for stanza in stanzas.into_iter().rev() {
                mailbox.queue.push_front(stanza);
            }
        }
        self.wake.notify_one();
    }

    /// Wakes the connection without queueing anything (a takeover waits).
    pub fn nudge(&self) {
        self.wake.notify_one();
    }

    /// Takes up to `max` queued stanzas, oldest first.
    pub fn take_queued(&self, max: usize, into: &mut Vec<Box<Element>>) {
        let mut mailbox = self.mailbox();
        let count = mailbox.queue.len().min(max);
        into.extend(mailbox.queue.drain(..count));
        if mailbox.queue.is_empty() && mailbox.queue.capacity() > IDLE_MAILBOX_SLOTS {
            // A burst (a login's PEP items, a room's history) must not pin
            // its buffer for the session's life: an idle session is what
            // every client costs. Allocating again costs less than a write.
            mailbox.queue = VecDeque::new();
        }
    }

    pub fn has_queued(&self) -> bool {
        !self.mailbox().queue.is_empty()
    }

    /// Refuses further stanzas and returns those still queued.
    pub fn shut_mailbox(&self) -> Vec<Box<Element>> {
        let mut mailbox = self.mailbox();
        mailbox.shut = true;
        mailbox.queue.drain(..).collect()
    }

    /// Waits until a stanza is queued or a close is requested (a wake-up
    /// that came before the wait is not lost).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Asks the connection to end with `reason`; the first reason wins.
    pub fn close(&self, reason: CloseReason) {
        let _first = self.close_reason.compare_exchange(
            0,
            reason.code(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.wake.notify_one();
    }

    /// Why the session was closed from outside, if it was.
    pub fn close_reason(&self) -> Option<CloseReason> {
        CloseReason::from_code(self.close_reason.load(Ordering::Acquire))
    }

    pub fn is_closing(&self) -> bool {
        self.close_reason().is_some()
    }

    /// Locks the presence state for a short, non-async section.
    pub fn presence(&self) -> MutexGuard<'_, PresenceState> {
        self.presence
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `(available, priority)` in one lock.
    pub fn availability(&self) -> (bool, i8) {
        let presence = self.presence();
        (presence.available, presence.priority)
    }
}

const SHARDS: usize = 32;

/// Keyed by the bare JID's text, so that a lookup by a full JID borrows
/// its bare part instead of building a `BareJid` on every stanza.
type Shard = HashMap<Box<str>, Vec<Arc<LocalSession>>>;

/// Full JID -> session for every session bound on this node.
pub struct SessionManager {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    next_id: AtomicU64,
    count: AtomicUsize,
}

impl Default for SessionManager {
    fn default() -> Self {
        SessionManager {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
            hasher: RandomState::new(),
            next_id: AtomicU64::new(1),
            count: AtomicUsize::new(0),
        }
    }
}

impl SessionManager {
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn shard(&self, bare: &str) -> MutexGuard<'_, Shard> {
        let index = self.hasher.hash_one(bare) as usize % SHARDS;
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Binds a session; returns the session it replaced (same full JID), which
    /// the caller must close with a conflict.
    pub fn bind(&self, session: Arc<LocalSession>) -> Option<Arc<LocalSession>> {
        let bare = bare_str(&session.jid);
        let mut shard = self.shard(bare);
        let resources = shard.entry(bare.into()).or_default();
        let replaced = resources
            .iter()
            .position(|existing| existing.jid == session.jid)
            .map(|index| resources.swap_remove(index));
        resources.push(session);
        if replaced.is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        replaced
    }

    /// Removes this exact session (not a newer one with the same JID).
    pub fn unbind(&self, session: &LocalSession) -> bool {
        let bare = bare_str(&session.jid);
        let mut shard = self.shard(bare);
        let Some(resources) = shard.get_mut(bare) else {
            return false;
        };
        let Some(index) = resources.iter().position(|s| s.id == session.id) else {
            return false;
        };
        resources.swap_remove(index);
        if resources.is_empty() {
            shard.remove(bare);
        }
        self.count.fetch_sub(1, Ordering::Relaxed);
        true
    }

    pub fn get(&self, jid: &FullJid) -> Option<Arc<LocalSession>> {
        let bare = bare_str(jid);
        self.shard(bare)
            .get(bare)?
            .iter()
            .find(|s| s.jid == *jid)
            .cloned()
    }

    /// Every session of a user on this node.
    pub fn resources(&self, bare: &BareJid) -> Vec<Arc<LocalSession>> {
        let bare = bare.as_str();
        self.shard(bare).get(bare).cloned().unwrap_or_default()
    }

    /// Whether the session bound to `jid` is its user's only one here, told
    /// in one lookup without listing the sessions.
    pub fn is_only_resource(&self, jid: &FullJid) -> bool {
        let bare = bare_str(jid);
        self.shard(bare)
            .get(bare)
            .is_some_and(|sessions| matches!(sessions.as_slice(), [only] if only.jid == *jid))
    }

    pub fn has_resources(&self, bare: &BareJid) -> bool {
        let bare = bare.as_str();
        self.shard(bare).contains_key(bare)
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Asks every session to close (node shutdown).
    pub fn close_all(&self, reason: CloseReason) {
        for session in self.all() {
            session.close(reason);
        }
    }

    /// A snapshot of every session (admin pages, shutdown).
    pub fn all(&self) -> Vec<Arc<LocalSession>> {
        let mut all = Vec::with_capacity(self.count());
        for shard in self.shards.iter() {
            let shard = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            all.extend(shard.values().flatten().cloned());
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_core::xml::ns;

    fn session(manager: &SessionManager, jid: &str) -> Arc<LocalSession> {
        LocalSession::new(manager.next_id(), FullJid::new(jid).unwrap(), 2)
    }

    #[test]
    fn bind_replaces_same_full_jid_and_unbind_spares_the_successor() {
        let manager = SessionManager::default();
        let first = session(&manager, "a@example.com/r");
        let second = session(&manager, "a@example.com/r");
        let other = session(&manager, "a@example.com/s");
        assert!(manager.bind(first.clone()).is_none());
        assert!(manager.bind(other.clone()).is_none());
        let replaced = manager.bind(second.clone()).unwrap();
        assert_eq!(replaced.id, first.id);
        assert_eq!(manager.count(), 2);
        assert!(
            !manager.unbind(&first),
            "the replaced session is no longer bound"
        );
        assert_eq!(manager.get(&second.jid).unwrap().id, second.id);
        assert_eq!(manager.resources(&second.jid.to_bare()).len(), 2);
        assert!(manager.unbind(&second));
        assert!(manager.unbind(&other));
        assert_eq!(manager.count(), 0);
        assert!(!manager.has_resources(&second.jid.to_bare()));
    }

    #[test]
    fn only_resource_is_the_one_bound_session_of_its_user() {
        let manager = SessionManager::default();
        let phone = session(&manager, "a@example.com/phone");
        let laptop = session(&manager, "a@example.com/laptop");
        assert!(!manager.is_only_resource(&phone.jid), "not bound yet");
        manager.bind(phone.clone());
        manager.bind(session(&manager, "b@example.com/phone"));
        assert!(manager.is_only_resource(&phone.jid));
        assert!(!manager.is_only_resource(&laptop.jid), "another resource");
        manager.bind(laptop.clone());
        assert!(!manager.is_only_resource(&phone.jid));
        manager.unbind(&phone);
        assert!(manager.is_only_resource(&laptop.jid));
    }

    #[test]
    fn a_full_mailbox_closes_the_session_and_returns_the_stanza() {
        let manager = SessionManager::default();
        let session = session(&manager, "a@example.com/r");
        let stanza = || Box::new(Element::new("message", ns::CLIENT));
        session.send(stanza()).unwrap();
        session.send(stanza()).unwrap();
        assert!(matches!(session.send(stanza()), Err(SendError::Full(_))));
        assert!(session.is_closing());
        assert_eq!(session.close_reason(), Some(CloseReason::SlowConsumer));
        let mut taken = Vec::new();
        session.take_queued(usize::MAX, &mut taken);
        assert_eq!(taken.len(), 2, "what was accepted is still delivered");
    }

    #[test]
    fn a_drained_mailbox_gives_back_what_a_burst_grew() {
        let manager = SessionManager::default();
        let session = LocalSession::new(
            manager.next_id(),
            FullJid::new("a@example.com/r").unwrap(),
            1000,
        );
        for _ in 0..40 {
            session
                .send(Box::new(Element::new("message", ns::CLIENT)))
                .unwrap();
        }
        let mut taken = Vec::new();
        session.take_queued(30, &mut taken);
        assert!(session.mailbox().queue.capacity() >= 40, "not drained yet");
        session.take_queued(30, &mut taken);
        assert_eq!(taken.len(), 40);
        assert!(session.mailbox().queue.capacity() <= IDLE_MAILBOX_SLOTS);
    }

    #[test]
    fn a_shut_mailbox_returns_the_stanza_and_hands_back_the_queue() {
        let manager = SessionManager::default();
        let session = session(&manager, "a@example.com/r");
        session
            .send(Box::new(Element::new("message", ns::CLIENT)))
            .unwrap();
        assert_eq!(session.shut_mailbox().len(), 1);
        let result = session.send(Box::new(Element::new("message", ns::CLIENT)));
        assert!(matches!(result, Err(SendError::Closed(_))));
    }

    #[test]
    fn the_first_close_reason_wins() {
        let manager = SessionManager::default();
        let session = session(&manager, "a@example.com/r");
        session.close(CloseReason::Conflict);
        session.close(CloseReason::Shutdown);
        assert_eq!(session.close_reason(), Some(CloseReason::Conflict));
    }

    #[tokio::test]
    async fn a_wake_before_the_wait_is_not_lost() {
        let manager = SessionManager::default();
        let session = session(&manager, "a@example.com/r");
        session
            .send(Box::new(Element::new("message", ns::CLIENT)))
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), session.woken())
            .await
            .expect("the earlier send woke the session");
    }
}
