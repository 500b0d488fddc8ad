//! This member's records of rooms its own sessions are in, wherever the
//! room is hosted: which local session sits under which nick with which
//! role and affiliation (from the self-presence, status 110), the room's
//! occupant list as the relayed presence showed it, and which member
//! hosted the room last. A new host rebuilds a room from these when the
//! old one dies (`failover.rs`).

use std::collections::HashMap;
use std::sync::Mutex;

use starling_core::cluster::NodeId;
use starling_core::jid::{BareJid, FullJid, Jid};
use starling_core::xml::Element;

use super::MUC_USER;
use super::affiliation::{Affiliation, Role};

/// A local session's place in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Seat {
    pub nick: String,
    pub role: Role,
    pub affiliation: Affiliation,
}

#[derive(Debug, Clone, Default)]
pub(super) struct RoomRecord {
    /// The member that sent the room's stanzas last.
    pub host: Option<NodeId>,
    /// Every occupant's nick and real JID, as far as presence showed them.
    pub occupants: HashMap<String, FullJid>,
    /// This member's sessions in the room.
    pub seats: HashMap<FullJid, Seat>,
}

#[derive(Debug, Default)]
pub(super) struct LocalRecords {
    rooms: Mutex<HashMap<BareJid, RoomRecord>>,
}

impl LocalRecords {
    /// Notes what a stanza from a room, delivered to the local session
    /// `recipient`, says about the room's occupants. `about` is the real
    /// JID of the occupant a presence is about; `host` the member that
    /// sent it.
    pub(super) fn observe(
        &self,
        recipient: &FullJid,
        stanza: &Element,
        about: Option<&FullJid>,
        host: NodeId,
    ) {
        if stanza.name() != "presence" {
            return;
        }
        let Some(from) = stanza.attr("from").and_then(|f| Jid::new(f).ok()) else {
            return;
        };
        let Some(nick) = from.resource().map(|r| r.to_string()) else {
            return;
        };
        let Some(x) = stanza.child("x", MUC_USER) else {
            return;
        };
        let room = from.to_bare();
        let unavailable = stanza.attr("type") == Some("unavailable");
        let is_self = x
            .children()
            .any(|c| c.name() == "status" && c.attr("code") == Some("110"));
        let mut rooms = super::lock(&self.rooms);
        tracing::debug!(%room, %nick, %host, is_self, unavailable, "room presence delivered here");
        let record = rooms.entry(room.clone()).or_default();
        record.host = Some(host);
        if unavailable {
            record.occupants.remove(&nick);
            if is_self {
                record.seats.remove(recipient);
            }
        } else {
            if let Some(about) = about {
                record.occupants.insert(nick.clone(), about.clone());
            }
            if is_self {
                let item = x.child("item", MUC_USER);
                let role = item
                    .and_then(|i| i.attr("role"))
                    .and_then(Role::parse)
                    .unwrap_or(Role::Participant);
                let affiliation = item
                    .and_then(|i| i.attr("affiliation"))
                    .and_then(Affiliation::parse)
                    .unwrap_or(Affiliation::None);
                record.seats.insert(
                    recipient.clone(),
                    Seat {
                        nick,
                        role,
                        affiliation,
                    },
                );
            }
        }
        // Presence of others comes before the self-presence on joining;
        // the record goes only when the last local session has left.
        if unavailable && is_self && record.seats.is_empty() {
            rooms.remove(&room);
        }
    }

    /// The rooms no live member but this one answers for: their last
    /// known host is not among `up`, or is this member (`me`).
    pub(super) fn hosted_off(&self, up: &[NodeId], me: NodeId) -> Vec<(BareJid, RoomRecord)> {
        super::lock(&self.rooms)
            .iter()
            .filter(|(_, record)| {
                record
                    .host
                    .is_some_and(|host| host == me || !up.contains(&host))
            })
            .map(|(room, record)| (room.clone(), record.clone()))
            .collect()
    }

    /// The room now has `host`; the occupants in `gone` left it.
    pub(super) fn moved(&self, room: &BareJid, host: NodeId, gone: &[String]) {
        if let Some(record) = super::lock(&self.rooms).get_mut(room) {
            record.host = Some(host);
            for nick in gone {
                record.occupants.remove(nick);
            }
        }
    }

    /// The rooms a local session sits in, and how.
    #[cfg(test)]
    pub(super) fn seats_of(&self, jid: &FullJid) -> Vec<(BareJid, Seat)> {
        super::lock(&self.rooms)
            .iter()
            .filter_map(|(room, record)| record.seats.get(jid).map(|s| (room.clone(), s.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_core::xml::ns;

    fn presence(from: &str, unavailable: bool, codes: &[&str], role: &str) -> Element {
        let mut x = Element::new("x", MUC_USER).with_child(
            Element::new("item", MUC_USER)
                .with_attr("affiliation", "member")
                .with_attr("role", role),
        );
        for code in codes {
            x.push_child(Element::new("status", MUC_USER).with_attr("code", *code));
        }
        let mut p = Element::new("presence", ns::CLIENT).with_attr("from", from);
        if unavailable {
            p.set_attr("type", "unavailable");
        }
        p.with_child(x)
    }

    #[test]
    fn self_presence_makes_a_seat_and_leaving_removes_the_room() {
        let records = LocalRecords::default();
        let me = FullJid::new("a@x/r").unwrap();
        let other = FullJid::new("b@x/r").unwrap();
        records.observe(
            &me,
            &presence("r@c/bob", false, &[], "participant"),
            Some(&other),
            NodeId(2),
        );
        assert!(
            records.seats_of(&me).is_empty(),
            "no seat before the self-presence"
        );
        records.observe(
            &me,
            &presence("r@c/al", false, &["110"], "moderator"),
            Some(&me),
            NodeId(2),
        );
        let seats = records.seats_of(&me);
        assert_eq!(seats.len(), 1);
        assert_eq!(seats[0].1.nick, "al");
        assert_eq!(seats[0].1.role, Role::Moderator);
        let off = records.hosted_off(&[NodeId(1), NodeId(3)], NodeId(1));
        assert_eq!(off.len(), 1);
        assert_eq!(off[0].1.occupants.len(), 2);
        assert!(records.hosted_off(&[NodeId(2)], NodeId(1)).is_empty());
        records.observe(
            &me,
            &presence("r@c/al", true, &["110"], "none"),
            Some(&me),
            NodeId(2),
        );
        assert!(records.seats_of(&me).is_empty());
        assert!(records.hosted_off(&[], NodeId(1)).is_empty());
    }
}
