//! A member came up and rooms now hash to it: their host hands each one
//! over whole (configuration, affiliations, subject, occupants, history),
//! and stanzas that waited for the room follow it.
//!
//! ```text
//!  member X up ─▶ host H: for each room where hash(room, up) = X:
//!                   lock, Room::hand_over, forget it, send <handover/> to X
//!  X: Room::take_over (merged into a room a racing join created there)
//! ```

use std::sync::Arc;

use starling_core::cluster::NodeId;
use starling_core::jid::BareJid;
use starling_core::xml::Element;

use super::{Muc, hosting};
use crate::server::Server;
use crate::util::time::now_ms;

/// This node is shutting down: rooms go to the members that hash next;
/// with none left, occupants hear the room shut down (status 332).
pub(super) async fn stopping(muc: &Muc, server: &Server) {
    if muc.candidates(server).is_empty() {
        let hosted: Vec<_> = super::lock(&muc.rooms).values().cloned().collect();
        for cell in hosted {
            let mut room = cell.lock().await;
            let outs = room.shut_down();
            super::relay::send(muc, server, outs).await;
        }
        // Sessions close right after this returns: let them write the
        // notices first (bounded, a stuck client does not hold the stop).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while server.sessions.all().iter().any(|s| s.has_queued())
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        return;
    }
    member_up(muc, server, server.cluster.node_id()).await
}

pub(super) async fn member_up(muc: &Muc, server: &Server, node: NodeId) {
    let me = server.cluster.node_id();
    let up = muc.candidates(server);
    let hosted: Vec<_> = super::lock(&muc.rooms)
        .iter()
        .map(|(jid, cell)| (jid.clone(), cell.clone()))
        .collect();
    for (jid, cell) in hosted {
        let Some(host) = hosting::host_of(jid.as_str(), &up) else {
            continue;
        };
        if host == me {
            continue;
        }
        let mut room = cell.lock().await;
        if room.moved {
            continue;
        }
        let handover = room.hand_over().with_attr("node", me.0.to_string());
        muc.remove_room(&jid);
        let envelope = muc.member_envelope(handover);
        match server
            .cluster
            .forward_waiting(host, envelope, std::time::Duration::from_secs(2))
            .await
        {
            Ok(()) => {
                tracing::info!(room = %jid, %host, joined = %node, "room handed over to the member it now hashes to")
            }
            Err(error) => {
                tracing::error!(room = %jid, %host, %error, "room handover not sent; its occupants must join again")
            }
        }
    }
    // The newcomer may be the member a room here would move to now.
    super::backup::membership_changed(muc, server).await;
}

/// A room handed over by its previous host.
pub(super) async fn take_over(muc: &Muc, server: &Server, handover: &Element) {
    let Some(room_jid) = handover.attr("room").and_then(|r| BareJid::new(r).ok()) else {
        tracing::warn!("a room handover without a room");
        return;
    };
    let cell = {
        let mut rooms = super::lock(&muc.rooms);
        rooms
            .entry(room_jid.clone())
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(
                    muc.new_room(room_jid.clone(), false),
                ))
            })
            .clone()
    };
    let mut room = cell.lock().await;
    room.take_over(handover, &muc.limits, now_ms());
    tracing::info!(room = %room_jid, from = %super::relay::sender(handover), occupants = room.occupant_count(), "room taken over");
    drop(room);
    super::backup::room_changed(muc, server, &room_jid).await;
}
