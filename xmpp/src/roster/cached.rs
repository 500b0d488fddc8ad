//! A user's roster as the roster cache keeps it, read-only; changes go
//! through [`super::service::Rosters`], which drops the cached copy.
//!
//! Every online user's roster stays cached, so its size is per-session
//! memory: the items are one sorted slice (no hash table) of 16 bytes an
//! item, each contact's JID the shared copy of [`super::interned`]; the
//! name and groups, absent from most items, are kept apart for those that
//! have them.

use std::sync::Arc;

use starling_core::jid::BareJid;

use super::interned::JidPool;
use super::query::RosterItem;
use super::subscription::{ContactState, SubState};
use crate::storage::StoredRosterItem;

/// What the user set on an item besides the subscription.
#[derive(Debug, Clone)]
struct Details {
    name: Option<String>,
    groups: Vec<String>,
}

impl Details {
    fn new(name: Option<String>, groups: Vec<String>) -> Option<Details> {
        (name.is_some() || !groups.is_empty()).then_some(Details { name, groups })
    }
}

/// A user's roster.
#[derive(Debug, Default)]
pub struct Roster {
    /// Sorted by JID, without duplicates: 16 bytes an item.
    entries: Box<[(Arc<BareJid>, ContactState)]>,
    /// Name and groups of the entries that have any, by index in `entries`
    /// (ascending): most items have none, so they are kept apart.
    details: Box<[(u32, Details)]>,
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
            entries.push((jid, state, Details::new(item.name, item.groups)));
        }
        drop(interner);
        entries.sort_by(|(a, ..), (b, ..)| a.as_str().cmp(b.as_str()));
        // Two stored spellings of one JID: the store's key is the string, so
        // keep one (the first), as a map would have.
        entries.dedup_by(|(a, ..), (b, ..)| a.as_str() == b.as_str());
        let mut details = Vec::new();
        let entries = entries
            .into_iter()
            .enumerate()
            .map(|(index, (jid, state, extra))| {
                if let Some(extra) = extra {
                    // A roster is bounded far below u32::MAX items (`max_roster_items`).
                    details.push((index as u32, extra));
                }
                (jid, state)
            })
            .collect();
        Roster {
            entries,
            details: details.into_boxed_slice(),
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
        self.index(contact).map(|index| self.entries[index].1)
    }

    /// The item's name and groups, to write back with a changed subscription.
    pub fn name_and_groups(&self, contact: &BareJid) -> (Option<String>, Vec<String>) {
        self.index(contact)
            .map(|index| self.name_and_groups_at(index))
            .unwrap_or_default()
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
        self.state(contact).is_some_and(|state| state.sub.from)
    }

    /// Contacts whose subscription request awaits the user's answer.
    pub fn pending_requests(&self) -> impl Iterator<Item = &BareJid> {
        self.contacts_where(|state| state.sub.pending_in)
    }

    /// The items clients see (hidden pending-only entries excluded), by JID.
    pub fn items(&self) -> Vec<RosterItem> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, (_, state))| state.in_roster)
            .map(|(index, (jid, state))| {
                let (name, groups) = self.name_and_groups_at(index);
                RosterItem::from_view((**jid).clone(), name, groups, state.view())
            })
            .collect()
    }

    fn index(&self, contact: &BareJid) -> Option<usize> {
        self.entries
            .binary_search_by(|(jid, _)| jid.as_str().cmp(contact.as_str()))
            .ok()
    }

    /// The name and groups of the item at `index` in `entries`.
    fn name_and_groups_at(&self, index: usize) -> (Option<String>, Vec<String>) {
        let Ok(index) = u32::try_from(index) else {
            return (None, Vec::new());
        };
        match self.details.binary_search_by_key(&index, |(at, _)| *at) {
            Ok(found) => {
                let details = &self.details[found].1;
                (details.name.clone(), details.groups.clone())
            }
            Err(_) => (None, Vec::new()),
        }
    }

    fn contacts_where(
        &self,
        wanted: impl Fn(&ContactState) -> bool,
    ) -> impl Iterator<Item = &BareJid> {
        self.entries
            .iter()
            .filter(move |(_, state)| wanted(state))
            .map(|(jid, _)| &**jid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(contact: &str, name: Option<&str>, groups: &[&str]) -> StoredRosterItem {
        StoredRosterItem {
            contact: contact.into(),
            name: name.map(Into::into),
            groups: groups.iter().map(|group| (*group).into()).collect(),
            sub_to: true,
            sub_from: contact.starts_with('b'),
            pending_out: false,
            pending_in: false,
            preapproved: false,
            in_roster: true,
        }
    }

    #[test]
    fn an_item_is_sixteen_bytes_and_keeps_its_own_name_and_groups() {
        assert_eq!(std::mem::size_of::<(Arc<BareJid>, ContactState)>(), 16);
        let items = vec![
            stored("d@example.com", None, &[]),
            stored("b@example.com", Some("Bea"), &["Work"]),
            stored("c@example.com", None, &[]),
            stored("a@example.com", None, &["Family", "Friends"]),
        ];
        let roster = Roster::from_stored("owner", items, 7, &JidPool::default());
        let jid = |text: &str| BareJid::new(text).unwrap();
        let listed: Vec<_> = roster
            .items()
            .into_iter()
            .map(|item| (item.jid.to_string(), item.name, item.groups))
            .collect();
        assert_eq!(
            listed,
            [
                (
                    "a@example.com".into(),
                    None,
                    vec!["Family".into(), "Friends".into()]
                ),
                (
                    "b@example.com".into(),
                    Some("Bea".into()),
                    vec!["Work".into()]
                ),
                ("c@example.com".into(), None, vec![]),
                ("d@example.com".into(), None, vec![]),
            ]
        );
        assert_eq!(
            roster.name_and_groups(&jid("b@example.com")),
            (Some("Bea".into()), vec!["Work".into()])
        );
        assert_eq!(
            roster.name_and_groups(&jid("c@example.com")),
            (None, vec![])
        );
        assert_eq!(
            roster.name_and_groups(&jid("z@example.com")),
            (None, vec![])
        );
        assert!(roster.is_subscriber(&jid("b@example.com")));
        assert!(!roster.is_subscriber(&jid("a@example.com")));
        assert_eq!(roster.subscriptions().count(), 4);
    }
}
