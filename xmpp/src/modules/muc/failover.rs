//! A member died: rooms it hosted move to the next member by the hash and
//! are rebuilt there from the survivors' records; occupants whose
//! sessions died with it leave with status 333.
//!
//! ```text
//!  member A (host) dies ─▶ every survivor, in peer_sessions:
//!    rooms it hosts itself:  remove A's occupants, broadcast 333
//!    rooms A hosted:         tell its own occupants A's occupants left (333),
//!                            send its occupants to the new host as a rejoin
//!  new host: load the room (store, or defaults), seat the rejoiners silently
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use starling_core::cluster::NodeId;
use starling_core::jid::{BareJid, FullJid, Jid};
use starling_core::xml::{Element, ns};

use super::affiliation::{Affiliation, Role};
use super::records::RoomRecord;
use super::room::Out;
use super::{MUC_USER, Muc, RELAY, hosting, relay};
use crate::server::Server;
use crate::util::time::now_ms;

pub(super) async fn sessions_lost(muc: &Muc, server: &Server, lost: &[FullJid]) {
    let lost: HashSet<FullJid> = lost.iter().cloned().collect();
    let hosted: Vec<_> = super::lock(&muc.rooms).values().cloned().collect();
    for cell in hosted {
        let mut room = cell.lock().await;
        let outs = room.remove_lost(&lost);
        if !outs.is_empty() {
            relay::send(muc, server, outs).await;
        }
    }
    let me = server.cluster.node_id();
    let up = muc.candidates(server);
    // Rooms hosted here told their occupants above (and the records here
    // saw it); what is left are rooms whose host died, and occupants a
    // room here never had back (its rebuild raced a stanza of theirs).
    let moving = muc.records.hosted_off(&up, me);
    tracing::info!(lost = lost.len(), up = ?up, rooms = moving.len(), "sessions of a member lost; rooms it hosted move");
    // Who was in each moving room, as this member's sessions saw it: the
    // remote occupants kept here are told from it who left.
    let seen: HashMap<BareJid, HashMap<String, FullJid>> = moving
        .iter()
        .map(|(room, record)| (room.clone(), record.occupants.clone()))
        .collect();
    for (room, record) in moving {
        let Some(host) = hosting::host_of(room.as_str(), &up) else {
            continue;
        };
        if record.host != Some(me) {
            tracing::info!(%room, new_host = %host, occupants = record.seats.len(), "room host lost; moving this member's occupants");
        }
        // The rejoin goes first: an occupant told of the move may speak at
        // once, and its message follows the rejoin on the same link.
        let rejoin = rejoin_of(&room, &record, me);
        if host == me {
            self::rejoin(muc, server, &rejoin).await;
        } else {
            let envelope = muc.member_envelope(rejoin);
            if let Err(error) = server
                .cluster
                .forward_waiting(host, envelope, std::time::Duration::from_secs(2))
                .await
            {
                tracing::error!(%room, %host, %error, "could not move occupants to the room's new host");
            }
        }
        let gone = tell_gone(muc, server, &room, &record, &lost, me);
        muc.records.moved(&room, host, &gone);
    }
    // Occupants of other servers in rooms the lost member hosted, which it
    // had this member keep (`backup.rs`).
    for (room, host, rejoin) in muc.backups.orphaned(&up, me) {
        tracing::info!(%room, new_host = %host, occupants = rejoin.children().count(), "room host lost; moving its remote occupants");
        if let Some(occupants) = seen.get(&room) {
            let remote: Vec<FullJid> = rejoin
                .children()
                .filter_map(|occupant| occupant.attr("jid"))
                .filter_map(|jid| FullJid::new(jid).ok())
                .collect();
            let outs = occupants
                .iter()
                .filter(|(_, real)| lost.contains(*real))
                .filter_map(|(nick, real)| Some((Jid::new(&format!("{room}/{nick}")).ok()?, real)))
                .flat_map(|(from, real)| {
                    remote.iter().map(move |to| Out {
                        to: to.clone().into(),
                        stanza: gone_presence(&from, to),
                        about: Some(real.clone()),
                    })
                })
                .collect();
            relay::send(muc, server, outs).await;
        }
        if host == me {
            self::rejoin(muc, server, &rejoin).await;
        } else if let Err(error) = server
            .cluster
            .forward_waiting(
                host,
                muc.member_envelope(rejoin),
                std::time::Duration::from_secs(2),
            )
            .await
        {
            tracing::error!(%room, %host, %error, "could not move remote occupants to the room's new host");
        }
    }
    // The member each hosted room would move to may have changed.
    super::backup::membership_changed(muc, server).await;
}

/// Tells this member's occupants of `room` that the occupants whose
/// sessions were lost left (status 333); returns their nicks.
fn tell_gone(
    muc: &Muc,
    server: &Server,
    room: &BareJid,
    record: &RoomRecord,
    lost: &HashSet<FullJid>,
    me: NodeId,
) -> Vec<String> {
    let gone: Vec<(&String, &FullJid)> = record
        .occupants
        .iter()
        .filter(|(_, real)| lost.contains(*real))
        .collect();
    let mut outs = Vec::new();
    for (nick, real) in &gone {
        let Ok(from) = Jid::new(&format!("{room}/{nick}")) else {
            continue;
        };
        for to in record.seats.keys() {
            outs.push(Out {
                to: to.clone().into(),
                stanza: gone_presence(&from, to),
                about: Some((*real).clone()),
            });
        }
    }
    let nicks = gone.iter().map(|(nick, _)| (*nick).clone()).collect();
    for out in outs {
        if let Ok(to) = out.to.try_as_full() {
            if let Some(session) = server.sessions.get(to) {
                muc.records.observe(to, &out.stanza, out.about.as_ref(), me);
                let _delivered =
                    crate::router::resources::deliver_local(server, &session, out.stanza);
            }
        }
    }
    nicks
}

/// The occupant `from` left because its member died (status 333).
fn gone_presence(from: &Jid, to: &FullJid) -> Element {
    let x = Element::new("x", MUC_USER)
        .with_child(
            Element::new("item", MUC_USER)
                .with_attr("affiliation", "none")
                .with_attr("role", "none"),
        )
        .with_child(Element::new("status", MUC_USER).with_attr("code", "333"));
    Element::new("presence", ns::CLIENT)
        .with_attr("from", from.as_str())
        .with_attr("to", to.as_str())
        .with_attr("type", "unavailable")
        .with_child(x)
}

fn rejoin_of(room: &BareJid, record: &RoomRecord, me: NodeId) -> Element {
    let mut rejoin = Element::new("rejoin", RELAY)
        .with_attr("room", room.as_str())
        .with_attr("node", me.0.to_string());
    for (jid, seat) in &record.seats {
        rejoin.push_child(
            Element::new("occupant", RELAY)
                .with_attr("jid", jid.as_str())
                .with_attr("nick", &seat.nick)
                .with_attr("role", seat.role.as_str())
                .with_attr("affiliation", seat.affiliation.as_str()),
        );
    }
    rejoin
}

/// Occupants of a room whose host died, sent by the member holding their
/// sessions: seated here silently.
pub(super) async fn rejoin(muc: &Muc, server: &Server, rejoin: &Element) {
    let Some(room_jid) = rejoin.attr("room").and_then(|r| BareJid::new(r).ok()) else {
        tracing::warn!("a rejoin without a room");
        return;
    };
    let from = relay::sender(rejoin);
    let cell = match muc.load(server, &room_jid).await {
        Ok(Some(cell)) => cell,
        Ok(None) => {
            let cell = std::sync::Arc::new(tokio::sync::Mutex::new(
                muc.new_room(room_jid.clone(), false),
            ));
            super::lock(&muc.rooms)
                .entry(room_jid.clone())
                .or_insert(cell)
                .clone()
        }
        Err(error) => {
            tracing::error!(room = %room_jid, %error, "room store unreadable; occupants not moved");
            return;
        }
    };
    let mut room = cell.lock().await;
    for occupant in rejoin.children().filter(|c| c.is("occupant", RELAY)) {
        let (Some(jid), Some(nick)) = (
            occupant.attr("jid").and_then(|j| FullJid::new(j).ok()),
            occupant.attr("nick"),
        ) else {
            continue;
        };
        let role = occupant
            .attr("role")
            .and_then(Role::parse)
            .unwrap_or(Role::Participant);
        let affiliation = occupant
            .attr("affiliation")
            .and_then(Affiliation::parse)
            .unwrap_or(Affiliation::None);
        room.rejoin(jid, nick, role, affiliation, &muc.limits, now_ms());
        muc.rejoined.fetch_add(1, Ordering::Relaxed);
    }
    tracing::info!(room = %room_jid, %from, occupants = room.occupant_count(), "room rebuilt here");
    drop(room);
    super::backup::room_changed(muc, server, &room_jid).await;
}
