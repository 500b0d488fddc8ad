//! A user's roster as the roster cache keeps it, read-only; changes go
//! through [`super::service::Rosters`], which drops the cached copy.
//!
//! Every online user's roster stays cached, so its size is per-session
//! memory: the items are one sorted slice (no hash table), each contact's
//! JID is the shared copy of [`super::interned`], and the name and groups,
//! absent from most items, take one pointer when absent.

use std::sync::Arc;

use starling_core::jid::BareJid;

use super::interned::JidPool;
use super::query::RosterItem;
use super::subscription::{ContactState, SubState};
use crate::storage::StoredRosterItem;

/// One contact as the user's server keeps it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub state: ContactState,
    details: Option<Box<Details>>,
}

/// What the user set on an item besides the subscription.
#[derive(Debug, Clone)]
struct Details {
    name: Option<String>,
    groups: Vec<String>,
}

impl Entry {
    fn new(state: ContactState, name: Option<String>, groups: Vec<String>) -> Entry {
        let details =
            (name.is_some() || !groups.is_empty()).then(|| Box::new(Details { name, groups }));
        Entry { state, details }
    }

    /// The item's name and groups, to write back with a changed subscription.
    pub fn name_and_groups(&self) -> (Option<String>, Vec<String>) {
        match &self.details {
            Some(details) => (details.name.clone(), details.groups.clone()),
            None => (None, Vec::new()),
        }
    }

    fn item(&self, jid: &BareJid) -> RosterItem {
        let (name, groups) = self.name_and_groups();
        RosterItem::from_view(jid.clone(), name, groups, self.state.view())
    }
}

/// A user's roster.
#[derive(Debug, Default)]
pub struct Roster {
    /// Sorted by JID, without duplicates.
    entries: Box<[(Arc<BareJid>, Entry)]>,
    /// The version these entries are (RFC 6121 2.6), or an older one when a
    /// write raced the read (a client is then sent the roster again).
    version: i64,
}

impl Roster {
    pub fn from_stored(
        owner: &str,
        items: Vec<StoredRosterItem>,
        version: i64,
        jids: &JidPool,
    ) -> Roster {
        let mut entries = Vec::with_capacity(items.len());
        let mut interner = jids.interner();
        for item in items {
            let jid = match interner.intern(&item.contact) {
                Ok(jid) => jid,
                Err(_) => {
                    tracing::warn!(%owner, contact = %item.contact, "stored roster contact is not a JID; skipped");
                    continue;
                }
            };
            let sub = SubState {
                to: item.sub_to,
                from: item.sub_from,
                pending_out: item.pending_out,
                pending_in: item.pending_in,
                preapproved: item.preapproved,
            };
            let state = ContactState {
                sub: sub.normalized(),
                in_roster: item.in_roster,
            };
            entries.push((jid, Entry::new(state, item.name, item.groups)));
        }
        drop(interner);
        entries.sort_by(|(a, _), (b, _)| a.as_str().cmp(b.as_str()));
        // Two stored spellings of one JID: the store's key is the string, so
        // keep one (the first), as a map would have.
        entries.dedup_by(|(a, _), (b, _)| a.as_str() == b.as_str());
        Roster {
            entries: entries.into_boxed_slice(),
            version,
        }
    }

    /// The `ver` of this roster (RFC 6121 2.6).
    pub fn version(&self) -> String {
        self.version.to_string()
    }

    pub fn version_number(&self) -> i64 {
        self.version
    }

    pub fn state(&self, contact: &BareJid) -> Option<ContactState> {
        self.entry(contact).map(|entry| entry.state)
    }

    /// Contacts that receive the user's presence ('from' or 'both').
    pub fn subscribers(&self) -> impl Iterator<Item = &BareJid> {
        self.contacts_where(|state| state.sub.from)
    }

    /// Contacts whose presence the user receives ('to' or 'both').
    pub fn subscriptions(&self) -> impl Iterator<Item = &BareJid> {
        self.contacts_where(|state| state.sub.to)
    }

    pub fn is_subscriber(&self, contact: &BareJid) -> bool {
        self.entry(contact)
            .is_some_and(|entry| entry.state.sub.from)
    }

    /// Contacts whose subscription request awaits the user's answer.
    pub fn pending_requests(&self) -> impl Iterator<Item = &BareJid> {
        self.contacts_where(|state| state.sub.pending_in)
    }

    /// The items clients see (hidden pending-only entries excluded), by JID.
    pub fn items(&self) -> Vec<RosterItem> {
        self.entries
            .iter()
            .filter(|(_, entry)| entry.state.in_roster)
            .map(|(jid, entry)| entry.item(jid))
            .collect()
    }

    pub fn entry(&self, contact: &BareJid) -> Option<&Entry> {
        self.entries
            .binary_search_by(|(jid, _)| jid.as_str().cmp(contact.as_str()))
            .ok()
            .map(|index| &self.entries[index].1)
    }

    fn contacts_where(
        &self,
        wanted: impl Fn(&ContactState) -> bool,
    ) -> impl Iterator<Item = &BareJid> {
        self.entries
            .iter()
            .filter(move |(_, entry)| wanted(&entry.state))
            .map(|(jid, _)| &**jid)
    }
}
