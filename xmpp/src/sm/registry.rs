//! This member's resumable sessions, by the key of their resumption id,
//! and the takeovers waiting for them.
//!
//! A resumption takes the session from the task that holds it (the old
//! connection, still in its session loop when the socket is half-open, or
//! waiting detached): the resuming side leaves a one-shot sender in the
//! entry and wakes the session; the holder, at its next turn, finds the
//! sender and hands over its stream-management state through it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use starling_core::jid::BareJid;
use tokio::sync::oneshot;

use super::state::SmState;
use super::token::Key;
use crate::session::LocalSession;

/// A session handed to the connection that resumes it.
pub struct Taken {
    pub session: Arc<LocalSession>,
    pub sm: Box<SmState>,
}

struct Entry {
    session: Arc<LocalSession>,
    takeover: Option<oneshot::Sender<Taken>>,
}

/// What [`Registry::request_takeover`] found.
pub enum Lookup {
    /// The holder will send the session here.
    Here(oneshot::Receiver<Taken>),
    /// The session belongs to another user.
    Foreign,
    /// No such session on this member.
    Absent,
}

/// How many ended sessions' counts are kept for `<failed h/>`.
const MAX_ENDED: usize = 10_000;

/// What is left of a resumable session that ended: whose it was and the
/// `h` of what the server handled, told to a client resuming too late.
struct Ended {
    user: BareJid,
    h: u32,
    until: Instant,
}

#[derive(Default)]
pub struct Registry {
    entries: Mutex<HashMap<Key, Entry>>,
    ended: Mutex<HashMap<Key, Ended>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn register(&self, key: Key, session: Arc<LocalSession>) {
        self.lock().insert(
            key,
            Entry {
                session,
                takeover: None,
            },
        );
    }

    /// Asks for the session of `key` on behalf of `user`. The caller says
    /// item-not-found for another user's session as for a missing one, so
    /// ids cannot be probed. A takeover already waiting gives way: the
    /// newest resumption wins.
    pub fn request_takeover(&self, key: &Key, user: &BareJid) -> Lookup {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(key) else {
            return Lookup::Absent;
        };
        if entry.session.jid.to_bare() != *user {
            return Lookup::Foreign;
        }
        let (sender, receiver) = oneshot::channel();
        entry.takeover = Some(sender);
        entry.session.nudge();
        Lookup::Here(receiver)
    }

    /// For the holder: a takeover waiting for the session of `key`.
    pub fn takeover(&self, key: &Key) -> Option<oneshot::Sender<Taken>> {
        self.lock()
            .get_mut(key)
            .and_then(|entry| entry.takeover.take())
    }

    pub fn has_takeover(&self, key: &Key) -> bool {
        self.lock()
            .get(key)
            .is_some_and(|entry| entry.takeover.is_some())
    }

    /// Forgets the session (it ended or left this member); a takeover still
    /// waiting fails.
    pub fn remove(&self, key: &Key, session: &LocalSession) {
        let mut entries = self.lock();
        if entries
            .get(key)
            .is_some_and(|entry| entry.session.id == session.id)
        {
            entries.remove(key);
        }
    }

    /// Remembers for `keep` that the session of `key` ended having handled
    /// `h` stanzas from `user`.
    pub fn ended(&self, key: Key, user: BareJid, h: u32, keep: Duration) {
        let now = Instant::now();
        let mut ended = self
            .ended
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if ended.len() >= MAX_ENDED {
            ended.retain(|_, entry| entry.until > now);
        }
        if ended.len() < MAX_ENDED {
            let until = now + keep;
            ended.insert(key, Ended { user, h, until });
        }
    }

    /// The `h` of an ended session of `user`, if it is still remembered.
    pub fn ended_h(&self, key: &Key, user: &BareJid) -> Option<u32> {
        let ended = self
            .ended
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        ended
            .get(key)
            .filter(|entry| entry.user == *user && entry.until > Instant::now())
            .map(|entry| entry.h)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_core::jid::FullJid;

    fn session(jid: &str) -> Arc<LocalSession> {
        LocalSession::new(7, FullJid::new(jid).unwrap(), 4)
    }

    fn bare(jid: &str) -> BareJid {
        BareJid::new(jid).unwrap()
    }

    #[tokio::test]
    async fn a_takeover_reaches_the_holder_and_the_newest_one_wins() {
        let registry = Registry::default();
        let alice = session("alice@example.com/phone");
        registry.register([1; 16], alice.clone());
        assert!(matches!(
            registry.request_takeover(&[2; 16], &bare("alice@example.com")),
            Lookup::Absent
        ));
        assert!(matches!(
            registry.request_takeover(&[1; 16], &bare("bob@example.com")),
            Lookup::Foreign
        ));
        let Lookup::Here(first) = registry.request_takeover(&[1; 16], &bare("alice@example.com"))
        else {
            panic!("alice's own session is here");
        };
        let Lookup::Here(second) = registry.request_takeover(&[1; 16], &bare("alice@example.com"))
        else {
            panic!("alice's own session is here");
        };
        assert!(first.await.is_err(), "the earlier takeover gave way");
        assert!(registry.has_takeover(&[1; 16]));
        let sender = registry.takeover(&[1; 16]).unwrap();
        let taken = Taken {
            session: alice.clone(),
            sm: Box::default(),
        };
        assert!(sender.send(taken).is_ok());
        assert_eq!(second.await.unwrap().session.id, alice.id);
    }

    #[test]
    fn an_ended_session_leaves_its_h_for_its_user_only() {
        let registry = Registry::default();
        let alice = session("alice@example.com/phone");
        registry.register([3; 16], alice.clone());
        registry.remove(&[3; 16], &alice);
        assert!(registry.is_empty());
        registry.ended(
            [3; 16],
            bare("alice@example.com"),
            42,
            Duration::from_secs(60),
        );
        assert_eq!(
            registry.ended_h(&[3; 16], &bare("alice@example.com")),
            Some(42)
        );
        assert_eq!(registry.ended_h(&[3; 16], &bare("bob@example.com")), None);
        registry.ended([4; 16], bare("alice@example.com"), 1, Duration::ZERO);
        assert_eq!(registry.ended_h(&[4; 16], &bare("alice@example.com")), None);
    }
}
