//! Occupants from other servers, kept on a second member.
//!
//! When a room's host dies, the new host rebuilds the room's local
//! occupants from the members holding their sessions (`failover.rs`). An
//! occupant of another server has a session on no member, so the host
//! keeps one more member told of the room's remote occupants: the one the
//! room would move to (the next by the hash, without the host). When the
//! host dies, that member sends them to the new host as a rejoin, and the
//! room goes on sending to them over federation; their servers notice
//! nothing.
//!
//! ```text
//!  host H: after a presence or iq, and after the membership changed:
//!          remote occupants or successor changed ─▶ <backup/> to successor S
//!  S:      keeps the latest backup of each room
//!  H dies: S (sessions_lost) ─▶ for each backup whose host is gone:
//!          <rejoin/> with its occupants to the room's new host
//! ```

use std::collections::HashMap;
use std::sync::Mutex;

use starling_core::cluster::NodeId;
use starling_core::jid::BareJid;
use starling_core::xml::Element;

use super::room::Room;
use super::{Muc, RELAY, hosting};
use crate::server::Server;

#[derive(Default)]
pub(super) struct Backups {
    /// Rooms hosted elsewhere: their host and its latest backup.
    kept: Mutex<HashMap<BareJid, (NodeId, Element)>>,
    /// Rooms hosted here: the member last sent a backup, and what.
    sent: Mutex<HashMap<BareJid, (NodeId, Vec<u8>)>>,
}

/// The room's occupants from other servers, as a `<backup/>` from `host`.
pub(super) fn of(server: &Server, room: &Room, host: NodeId) -> Element {
    let mut remote: Vec<_> = room
        .occupants()
        .filter(|occupant| !server.serves_domain(occupant.jid.domain().as_str()))
        .collect();
    remote.sort_by(|a, b| a.jid.as_str().cmp(b.jid.as_str()));
    let mut backup = Element::new("backup", RELAY)
        .with_attr("room", room.jid.as_str())
        .with_attr("node", host.0.to_string());
    for occupant in remote {
        backup.push_child(
            Element::new("occupant", RELAY)
                .with_attr("jid", occupant.jid.as_str())
                .with_attr("nick", &occupant.nick)
                .with_attr("role", occupant.role.as_str())
                .with_attr(
                    "affiliation",
                    room.affiliation(&occupant.jid.to_bare()).as_str(),
                ),
        );
    }
    backup
}

/// Sends `backup` (of a room hosted here) to the room's successor, unless
/// it already has this one. A room with no remote occupant sends nothing
/// unless it sent some before (then the empty backup clears it there).
pub(super) async fn send(muc: &Muc, server: &Server, backup: Element) {
    let Some(room) = backup.attr("room").and_then(|r| BareJid::new(r).ok()) else {
        return;
    };
    let empty = backup.children().next().is_none();
    // Most rooms have no remote occupant and never had one: nothing to do.
    if empty && !super::lock(&muc.backups.sent).contains_key(&room) {
        return;
    }
    let me = server.cluster.node_id();
    let others: Vec<NodeId> = muc
        .candidates(server)
        .into_iter()
        .filter(|node| *node != me)
        .collect();
    let Some(successor) = hosting::host_of(room.as_str(), &others) else {
        super::lock(&muc.backups.sent).remove(&room);
        return;
    };
    let bytes = backup.to_bytes().to_vec();
    {
        let mut sent = super::lock(&muc.backups.sent);
        if sent
            .get(&room)
            .is_some_and(|(to, last)| *to == successor && *last == bytes)
        {
            return;
        }
        if empty {
            sent.remove(&room);
        } else {
            sent.insert(room.clone(), (successor, bytes));
        }
    }
    let envelope = muc.member_envelope(backup);
    if let Err(error) = server
        .cluster
        .forward_waiting(successor, envelope, std::time::Duration::from_secs(2))
        .await
    {
        // Sent again with the next change (or membership change).
        super::lock(&muc.backups.sent).remove(&room);
        tracing::warn!(%room, %successor, %error, "could not back up the room's remote occupants");
    }
}

/// Backs up a hosted room (after a stanza that may have changed its
/// occupants), or clears its backup when the room is gone from here.
pub(super) async fn room_changed(muc: &Muc, server: &Server, room: &BareJid) {
    let me = server.cluster.node_id();
    let backup = match muc.room(room) {
        Some(cell) => {
            let room = cell.lock().await;
            if room.moved {
                return;
            }
            of(server, &room, me)
        }
        None => Element::new("backup", RELAY)
            .with_attr("room", room.as_str())
            .with_attr("node", me.0.to_string()),
    };
    send(muc, server, backup).await;
}

/// Every hosted room again: the membership changed, and with it maybe the
/// member each room would move to.
pub(super) async fn membership_changed(muc: &Muc, server: &Server) {
    let hosted: Vec<BareJid> = super::lock(&muc.rooms).keys().cloned().collect();
    for room in hosted {
        room_changed(muc, server, &room).await;
    }
}

impl Backups {
    /// A backup from a room's host.
    pub(super) fn keep(&self, backup: &Element) {
        let (Some(room), Some(host)) = (
            backup.attr("room").and_then(|r| BareJid::new(r).ok()),
            backup.attr("node").and_then(|n| n.parse().ok()).map(NodeId),
        ) else {
            tracing::warn!("a room backup without a room or host");
            return;
        };
        let mut kept = super::lock(&self.kept);
        if backup.children().next().is_none() {
            kept.remove(&room);
        } else {
            kept.insert(room, (host, backup.clone()));
        }
    }

    /// The backups whose host is no longer among `up`, as rejoins from
    /// `me`, each with the room's new host. They are forgotten here: the
    /// new host keeps its own successor told.
    pub(super) fn orphaned(&self, up: &[NodeId], me: NodeId) -> Vec<(BareJid, NodeId, Element)> {
        let mut kept = super::lock(&self.kept);
        let gone: Vec<BareJid> = kept
            .iter()
            .filter(|(_, (host, _))| !up.contains(host))
            .map(|(room, _)| room.clone())
            .collect();
        gone.into_iter()
            .filter_map(|room| {
                let (_, backup) = kept.remove(&room)?;
                let host = hosting::host_of(room.as_str(), up)?;
                let mut rejoin = Element::new("rejoin", RELAY)
                    .with_attr("room", room.as_str())
                    .with_attr("node", me.0.to_string());
                for occupant in backup.children() {
                    rejoin.push_child(occupant.clone());
                }
                Some((room, host, rejoin))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backup(room: &str, host: u64, occupants: &[&str]) -> Element {
        let mut backup = Element::new("backup", RELAY)
            .with_attr("room", room)
            .with_attr("node", host.to_string());
        for jid in occupants {
            backup.push_child(
                Element::new("occupant", RELAY)
                    .with_attr("jid", *jid)
                    .with_attr("nick", *jid),
            );
        }
        backup
    }

    #[test]
    fn a_backup_is_replaced_and_cleared_by_the_next() {
        let backups = Backups::default();
        backups.keep(&backup("r@c.x", 1, &["a@y/1"]));
        backups.keep(&backup("r@c.x", 1, &["a@y/1", "b@y/2"]));
        let rejoins = backups.orphaned(&[NodeId(2)], NodeId(2));
        assert_eq!(rejoins.len(), 1);
        let (room, host, rejoin) = &rejoins[0];
        assert_eq!(room.as_str(), "r@c.x");
        assert_eq!(*host, NodeId(2));
        assert!(rejoin.is("rejoin", RELAY));
        assert_eq!(rejoin.attr("node"), Some("2"));
        assert_eq!(rejoin.children().count(), 2, "the latest backup");
        // Handed on once only.
        assert!(backups.orphaned(&[NodeId(2)], NodeId(2)).is_empty());

        backups.keep(&backup("r@c.x", 1, &["a@y/1"]));
        backups.keep(&backup("r@c.x", 1, &[]));
        assert!(
            backups.orphaned(&[NodeId(2)], NodeId(2)).is_empty(),
            "cleared"
        );
    }

    #[test]
    fn only_backups_of_a_host_that_is_gone_are_handed_on() {
        let backups = Backups::default();
        backups.keep(&backup("alive@c.x", 1, &["a@y/1"]));
        backups.keep(&backup("dead@c.x", 3, &["b@y/1"]));
        let rejoins = backups.orphaned(&[NodeId(1), NodeId(2)], NodeId(2));
        let rooms: Vec<&str> = rejoins.iter().map(|(room, _, _)| room.as_str()).collect();
        assert_eq!(rooms, ["dead@c.x"]);
        let (_, host, _) = &rejoins[0];
        assert!(
            [NodeId(1), NodeId(2)].contains(host),
            "a live member hosts it"
        );
        assert_eq!(
            backups.orphaned(&[NodeId(1), NodeId(2)], NodeId(2)).len(),
            0
        );
    }
}
