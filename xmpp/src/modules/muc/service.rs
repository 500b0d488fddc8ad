//! Stanzas to the service and its rooms: where they are handled (here, or
//! forwarded to the room's host), and the glue between the router, the
//! room's rules, the store and the relays.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use starling_core::cluster::{Envelope, StanzaKind};
use starling_core::jid::{BareJid, FullJid};
use starling_core::xml::{Element, ns};

use super::affiliation::Affiliation;
use super::config_form::RoomConfig;
use super::room::{Out, Persistent, REGISTER, ROOMUSER_NODE, Registration, Room};
use super::{Creators, MUC, MUC_ADMIN, MUC_OWNER, MUC_USER, Muc, RELAY, failover, hosting, relay};
use crate::metrics::Outcome;
use crate::modules::Flow;
use crate::router::Routed;
use crate::router::iq::{answer, reply};
use crate::router::{bounce, count};
use crate::server::Server;
use crate::stanza::{Condition, IqType, MessageType, PresenceType, Stanza, StanzaError};
use crate::storage::StoredRoom;
use crate::util::time::now_ms;

/// A stored room brought back to life.
pub(super) fn restore(muc: &Muc, jid: BareJid, stored: StoredRoom) -> Room {
    let config: RoomConfig = serde_json::from_str(&stored.config).unwrap_or_else(|error| {
        tracing::error!(room = %jid, %error, "stored room configuration unreadable; using the defaults");
        muc.config.default_room.clone()
    });
    let affiliations = stored
        .affiliations
        .iter()
        .filter_map(|(jid, affiliation)| {
            Some((BareJid::new(jid).ok()?, Affiliation::parse(affiliation)?))
        })
        .collect();
    let nicks = stored
        .nicks
        .iter()
        .filter_map(|(jid, nick)| Some((BareJid::new(jid).ok()?, nick.clone())))
        .collect();
    Room::restore(
        jid,
        Persistent {
            config,
            subject: stored.subject,
            subject_by: stored.subject_by,
            affiliations,
            nicks,
        },
        muc.limits.history_size,
        &muc.salt,
    )
}

/// A stanza for the service or a room. `returned`: one this member had
/// forwarded, given back by a dying link (see [`returned`]); it counts as
/// this member's own, whatever its hop count.
pub(super) async fn handle(muc: &Muc, server: &Server, stanza: Stanza, returned: bool) -> Routed {
    let Some(to) = stanza.to.clone() else {
        return count(server, Outcome::Discarded);
    };
    // Crossed from another member (and not our own, given back).
    let from_peer = !returned && stanza.hops > 0;
    let mut stanza = stanza;
    if !from_peer {
        // Only a member marks a stanza as handed back, never a client.
        stanza.element.remove_children(HANDED_BACK, RELAY);
    }
    if to.node().is_none() {
        if from_peer {
            return member_traffic(muc, server, stanza).await;
        }
        return to_service(muc, server, stanza, returned).await;
    }
    let room_jid = to.to_bare();
    // An answer to an iq the room passed on may come from an account's
    // bare JID (its server answering a vCard request).
    let answering = matches!(stanza.iq_type(), Some(IqType::Result | IqType::Error));
    if sender(&stanza).is_none() && !answering {
        // A client may send from its bare JID; a room needs the session.
        let error = StanzaError::new(Condition::BadRequest)
            .with_text("Rooms take stanzas from a full JID (a session)");
        return bounce(server, &stanza, error).await;
    }
    if returned {
        return self::returned(muc, server, stanza).await;
    }
    // A member with an older view of the membership sent it here, and the
    // room is not here: it goes on to the host (at most one more hop).
    let misrouted = from_peer
        && muc.room(&room_jid).is_none()
        && stanza.hops < crate::router::cluster::MAX_HOPS
        && hosting::host_of(room_jid.as_str(), &muc.candidates(server))
            .is_some_and(|host| host != server.cluster.node_id());
    if !from_peer || misrouted {
        return match forward(muc, server, stanza, &room_jid).await {
            Flow::Continue(stanza) => at_host(muc, server, stanza, room_jid).await,
            Flow::Done(routed) => routed,
        };
    }
    at_host(muc, server, stanza, room_jid).await
}

/// A stanza this member forwarded to a room's host whose link died after
/// writing it and before acknowledging it: the host may have handled it (a
/// join, an answered iq), so it is not handled twice. A groupchat message
/// goes to the room's new host marked as handed back, which looks for it
/// in the room's archive (see [`handed_back`]); the sender of another
/// message hears that it may be lost and can send it again; the rest is
/// counted and logged. (What the link never wrote comes back as the
/// member's own stanza, not here.)
async fn returned(muc: &Muc, server: &Server, mut stanza: Stanza) -> Routed {
    muc.returned.fetch_add(1, Ordering::Relaxed);
    if stanza.message_type() == Some(MessageType::Groupchat) && !stanza.is_error() {
        if let Some(room_jid) = stanza.to.as_ref().map(|to| to.to_bare()) {
            stanza.element.push_child(Element::new(HANDED_BACK, RELAY));
            // The crossing to the dead host does not count.
            stanza.hops = stanza.hops.saturating_sub(1);
            return match forward(muc, server, stanza, &room_jid).await {
                Flow::Continue(stanza) => at_host(muc, server, stanza, room_jid).await,
                Flow::Done(routed) => routed,
            };
        }
    }
    if stanza.kind == StanzaKind::Message && !stanza.is_error() {
        return bounce(server, &stanza, maybe_lost()).await;
    }
    tracing::info!(from = ?stanza.from, to = ?stanza.to, kind = ?stanza.kind, "a room stanza the dead host may have handled is not repeated");
    count(server, Outcome::Discarded)
}

/// A message whose first host went down may have been handled there.
const HANDED_BACK: &str = "handed-back";

fn maybe_lost() -> StanzaError {
    StanzaError::new(Condition::ServiceUnavailable)
        .with_type(crate::stanza::ErrorType::Wait)
        .with_text("The room's host went down; the message may not have reached the room")
}

/// How many of a room's latest archived messages are searched for a
/// handed-back one: more than a room says between two heartbeats.
const HANDED_BACK_SEARCH: u32 = 250;

/// Whether a groupchat message handed back by a dying host's link was
/// handled there before it died: its archived copy if it was. Only a
/// logged room can tell: its host archives each message before relaying
/// it, so a message not in the archive reached nobody. `None`: the room
/// keeps no archive.
async fn handled_before(
    server: &Server,
    room: &Room,
    from: &FullJid,
    message: &Element,
) -> Option<Option<Element>> {
    if !room.config.logging {
        return None;
    }
    let occupant = room.nick_jid(&room.occupant(from)?.nick);
    let query = crate::storage::ArchiveQuery {
        from_end: true,
        max: HANDED_BACK_SEARCH,
        ..Default::default()
    };
    let page = match server.store.query_archive(room.jid.as_str(), &query).await {
        Ok(page) => page?,
        Err(error) => {
            tracing::error!(room = %room.jid, %error, "cannot read the room's archive for a handed-back message");
            return None;
        }
    };
    let body = |e: &Element| e.child("body", ns::CLIENT).map(|b| b.text());
    Some(
        page.messages
            .iter()
            .rev()
            .filter_map(|archived| crate::stream::parse_element(archived.stanza.as_bytes()).ok())
            .find(|stored| {
                stored.attr("from") == Some(occupant.as_str())
                    && stored.attr("id") == message.attr("id")
                    && body(stored) == body(message)
            }),
    )
}

/// The room was handed to another member while this stanza waited for
/// it: the stanza follows it.
async fn relocate(muc: &Muc, server: &Server, stanza: Stanza, room_jid: BareJid) -> Routed {
    match forward(muc, server, stanza, &room_jid).await {
        // The hash says here again: handle it with the room as it is now.
        Flow::Continue(stanza) => Box::pin(at_host(muc, server, stanza, room_jid)).await,
        Flow::Done(routed) => routed,
    }
}

/// The room locked, unless it moved to another member while this stanza
/// waited for it (then the caller relocates the stanza).
async fn lock_here(
    cell: &Arc<tokio::sync::Mutex<Room>>,
) -> Option<tokio::sync::MutexGuard<'_, Room>> {
    let room = cell.lock().await;
    (!room.moved).then_some(room)
}

/// The room is hosted here.
async fn at_host(muc: &Muc, server: &Server, stanza: Stanza, room_jid: BareJid) -> Routed {
    let nick = stanza
        .to
        .as_ref()
        .and_then(|to| to.resource())
        .map(|r| r.to_string());
    match stanza.kind {
        // A join, a leave, a kick or a role change may change the room's
        // remote occupants, which the member it would move to keeps.
        StanzaKind::Presence => {
            let routed = presence(muc, server, stanza, room_jid.clone(), nick).await;
            super::backup::room_changed(muc, server, &room_jid).await;
            routed
        }
        StanzaKind::Message => message(muc, server, stanza, room_jid, nick).await,
        StanzaKind::Iq => {
            let routed = iq(muc, server, stanza, room_jid.clone(), nick).await;
            super::backup::room_changed(muc, server, &room_jid).await;
            routed
        }
    }
}

/// Sends the stanza to the member hosting the room, as it is (its `from`
/// is the sender's stamped JID); gives it back when that is this member,
/// and says how it was counted otherwise.
/// While the host is unreachable (it died and is not declared down yet)
/// the stanza is held and tried again, with the pauses of the cluster's
/// retry policy, for as long as declaring a member down takes; by then the
/// hash names a live member.
async fn forward(muc: &Muc, server: &Server, stanza: Stanza, room: &BareJid) -> Flow {
    let me = server.cluster.node_id();
    let policy = server.cluster.miss_retry();
    let hold =
        std::time::Duration::from_millis(server.config.cluster.down_after_ms) + policy.window;
    let deadline = std::time::Instant::now() + hold;
    let mut attempt = 0;
    loop {
        let up = muc.candidates(server);
        let host = hosting::host_of(room.as_str(), &up).unwrap_or(me);
        if host == me {
            return Flow::Continue(stanza);
        }
        let (Some(from), Some(to)) = (stanza.from.clone(), stanza.to.clone()) else {
            return Flow::Done(count(server, Outcome::Discarded));
        };
        let envelope = Envelope {
            from,
            to,
            kind: stanza.kind,
            xml: Bytes::from(stanza.element.to_bytes()),
            // One more crossing than the stanza has made so far.
            hops: stanza.hops.saturating_add(1),
        };
        let error = match server
            .cluster
            .forward_waiting(host, envelope, std::time::Duration::from_secs(2))
            .await
        {
            Ok(()) => {
                muc.forwarded.fetch_add(1, Ordering::Relaxed);
                return Flow::Done(count(server, Outcome::Delivered));
            }
            Err(error) => error,
        };
        if std::time::Instant::now() >= deadline {
            tracing::warn!(%host, %error, %room, "the member hosting a room stayed unreachable");
            let error = StanzaError::new(Condition::ServiceUnavailable)
                .with_type(crate::stanza::ErrorType::Wait)
                .with_text("The room's host is unreachable; try again");
            return Flow::Done(bounce(server, &stanza, error).await);
        }
        let step = attempt.min(policy.attempts.saturating_sub(1));
        let pause = policy.delay(step).max(std::time::Duration::from_millis(10));
        tokio::time::sleep(pause).await;
        attempt += 1;
    }
}

/// A relay or a rejoin from another member (each stanza a relay carries
/// is counted as it is delivered).
async fn member_traffic(muc: &Muc, server: &Server, stanza: Stanza) -> Routed {
    if let Some(relay) = stanza.element.child("relay", RELAY) {
        relay::receive(muc, server, relay);
    } else if let Some(rejoin) = stanza.element.child("rejoin", RELAY) {
        failover::rejoin(muc, server, rejoin).await;
    } else if let Some(handover) = stanza.element.child("handover", RELAY) {
        super::handover::take_over(muc, server, handover).await;
    } else if let Some(backup) = stanza.element.child("backup", RELAY) {
        muc.backups.keep(backup);
    } else {
        // An ordinary stanza to the service that crossed (it should not).
        return to_service(muc, server, stanza, false).await;
    }
    count(server, Outcome::Handled)
}

/// Disco and ping on the service itself (XEP-0045 6.1-6.3). `returned`:
/// as for [`handle`].
async fn to_service(muc: &Muc, server: &Server, stanza: Stanza, returned: bool) -> Routed {
    if ["relay", "rejoin", "handover"]
        .iter()
        .any(|name| stanza.element.has_child(name, RELAY))
    {
        if returned {
            // Our own relay that a dying link gave back: its recipients
            // were on that member, and are gone with it.
            return count(server, Outcome::Discarded);
        }
        // A client posing as a member (a rejoin would seat it as any
        // occupant it names): refused, and nothing happens.
        let error = StanzaError::new(Condition::Forbidden)
            .with_text("Only members of the cluster send this");
        return bounce(server, &stanza, error).await;
    }
    let request = match stanza.iq_type() {
        Some(IqType::Get | IqType::Set) => stanza.payload().cloned(),
        Some(_) => return count(server, Outcome::Discarded),
        None if stanza.is_error() => return count(server, Outcome::Discarded),
        None => {
            let error = StanzaError::new(Condition::ServiceUnavailable)
                .with_text("The chat service takes requests only; join a room");
            return bounce(server, &stanza, error).await;
        }
    };
    let Some(payload) = request else {
        return count(server, Outcome::Discarded);
    };
    let get = stanza.iq_type() == Some(IqType::Get);
    if get && payload.is("query", ns::DISCO_INFO) {
        let mut query = Element::new("query", ns::DISCO_INFO).with_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "conference")
                .with_attr("type", "text")
                .with_attr("name", "Chatrooms"),
        );
        for feature in [
            MUC,
            ns::DISCO_INFO,
            ns::DISCO_ITEMS,
            "urn:xmpp:occupant-id:0",
        ] {
            query.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", feature));
        }
        return reply(server, &stanza, Some(query)).await;
    }
    if get && payload.is("query", ns::DISCO_ITEMS) {
        let result = public_rooms(muc, server).await;
        return answer(server, &stanza, result.map(Some)).await;
    }
    if get && payload.is("ping", ns::PING) {
        return reply(server, &stanza, None).await;
    }
    let error = StanzaError::new(Condition::ServiceUnavailable)
        .with_text("The chat service does not answer this request");
    bounce(server, &stanza, error).await
}

/// The public rooms: stored ones and those hosted here (XEP-0045 6.3).
async fn public_rooms(muc: &Muc, server: &Server) -> Result<Element, StanzaError> {
    let mut rooms: std::collections::BTreeMap<String, String> = server
        .store
        .muc_rooms()
        .await
        .map_err(internal)?
        .into_iter()
        .filter_map(|(room, config)| {
            let config: RoomConfig = serde_json::from_str(&config).ok()?;
            config.public.then_some((room, config.name))
        })
        .collect();
    let hosted: Vec<_> = super::lock(&muc.rooms).values().cloned().collect();
    for room in hosted {
        let room = room.lock().await;
        if room.config.public && !room.locked {
            rooms.insert(room.jid.to_string(), room.config.name.clone());
        }
    }
    let mut query = Element::new("query", ns::DISCO_ITEMS);
    for (jid, name) in rooms {
        let mut item = Element::new("item", ns::DISCO_ITEMS).with_attr("jid", jid);
        if !name.is_empty() {
            item.set_attr("name", name);
        }
        query.push_child(item);
    }
    Ok(query)
}

fn internal(error: crate::storage::StorageError) -> StanzaError {
    tracing::error!(%error, "group chat store access failed");
    StanzaError::new(Condition::InternalServerError).with_text("The room store failed")
}

/// The sender's full JID: every stanza to a room comes from a session.
fn sender(stanza: &Stanza) -> Option<FullJid> {
    stanza.from.as_ref()?.try_as_full().ok().cloned()
}

/// The nick rules (XEP-0045 7.2.1 leaves them to the service): not empty, no surrounding spaces, no
/// control or formatting characters, not too long.
fn check_nick(nick: &str, max_chars: usize) -> Result<(), StanzaError> {
    let refuse = |text: &str| Err(StanzaError::new(Condition::JidMalformed).with_text(text));
    if nick.trim().is_empty() {
        return refuse("A nickname cannot be empty");
    }
    if nick.trim() != nick {
        return refuse("A nickname cannot start or end with a space");
    }
    if nick.chars().count() > max_chars {
        return refuse("The nickname is too long");
    }
    let forbidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}')
    };
    if nick.chars().any(forbidden) {
        return refuse("The nickname has characters that are not allowed");
    }
    Ok(())
}

async fn presence(
    muc: &Muc,
    server: &Server,
    stanza: Stanza,
    room_jid: BareJid,
    nick: Option<String>,
) -> Routed {
    let Some(from) = sender(&stanza) else {
        return count(server, Outcome::Discarded);
    };
    let ty = stanza.presence_type().unwrap_or(PresenceType::Available);
    match ty {
        PresenceType::Unavailable => {
            let Ok(Some(cell)) = muc.load(server, &room_jid).await else {
                return count(server, Outcome::Discarded);
            };
            let Some(mut room) = lock_here(&cell).await else {
                return relocate(muc, server, stanza, room_jid).await;
            };
            let outs = room.leave(&from, &stanza.element);
            if outs.is_empty() {
                return count(server, Outcome::Discarded);
            }
            relay::send(muc, server, outs).await;
            if room.is_empty() && !room.config.persistent {
                muc.remove_room(&room_jid);
            }
            count(server, Outcome::Handled)
        }
        PresenceType::Available => {
            let Some(nick) = nick else {
                let error = StanzaError::new(Condition::JidMalformed)
                    .with_text("Join a room as room@service/nickname");
                return bounce(server, &stanza, error).await;
            };
            if let Err(error) = check_nick(&nick, muc.config.max_nick_chars) {
                return bounce(server, &stanza, error).await;
            }
            join_or_change(muc, server, stanza, room_jid, from, nick).await
        }
        // An occupant's client that bounced a room stanza, or a
        // subscription the room does not take.
        _ => count(server, Outcome::Discarded),
    }
}

async fn join_or_change(
    muc: &Muc,
    server: &Server,
    stanza: Stanza,
    room_jid: BareJid,
    from: FullJid,
    nick: String,
) -> Routed {
    let cell = match muc.load(server, &room_jid).await {
        Ok(cell) => cell,
        Err(error) => return bounce(server, &stanza, internal(error)).await,
    };
    let (cell, created) = match cell {
        Some(cell) => (cell, false),
        None => match create(muc, server, &room_jid, &from).await {
            Ok(cell) => (cell, true),
            Err(error) => return bounce(server, &stanza, error).await,
        },
    };
    let Some(mut room) = lock_here(&cell).await else {
        return relocate(muc, server, stanza, room_jid).await;
    };
    let result = if room.occupant(&from).is_some() {
        room.presence(&from, &nick, &stanza.element)
    } else {
        room.join(
            &from,
            &nick,
            &stanza.element,
            created,
            &muc.limits,
            now_ms(),
        )
    };
    match result {
        Ok(outs) => {
            relay::send(muc, server, outs).await;
            count(server, Outcome::Handled)
        }
        Err(error) => {
            if created {
                muc.remove_room(&room_jid);
            }
            drop(room);
            bounce(server, &stanza, error).await
        }
    }
}

/// A new room for `creator`, if the service lets them create one.
async fn create(
    muc: &Muc,
    server: &Server,
    room_jid: &BareJid,
    creator: &FullJid,
) -> Result<super::RoomCell, StanzaError> {
    let local = creator.domain().as_str() == server.domain;
    let allowed = match muc.config.room_creators {
        Creators::Users => local,
        Creators::Admins => {
            local
                && match creator.node() {
                    Some(user) => server
                        .users
                        .get(user.as_str())
                        .await
                        .map_err(internal)?
                        .is_some_and(|record| record.admin),
                    None => false,
                }
        }
    };
    if !allowed {
        return Err(StanzaError::new(Condition::NotAllowed)
            .with_text("You may not create rooms on this service"));
    }
    if muc.room_count() >= muc.config.max_rooms as usize {
        return Err(StanzaError::new(Condition::ResourceConstraint)
            .with_text("The service holds as many rooms as it may"));
    }
    let mut room = muc.new_room(room_jid.clone(), muc.config.lock_new_rooms);
    room.set_owner(creator.to_bare());
    let mut rooms = super::lock(&muc.rooms);
    if let Some(existing) = rooms.get(room_jid) {
        // Created by another join a moment ago: join that one.
        return Ok(existing.clone());
    }
    let cell = Arc::new(tokio::sync::Mutex::new(room));
    rooms.insert(room_jid.clone(), cell.clone());
    Ok(cell)
}

/// The room, waiting for it (and for the sender in it) as the cluster's
/// retry policy says: while a room moves after its host died, occupants
/// are brought back by rejoins that may arrive after their next stanza.
/// `patient`: a message handed back by the dead host's link, which may
/// arrive before the rejoins have started; it waits as long as declaring a
/// member down takes.
async fn room_with(
    muc: &Muc,
    server: &Server,
    room_jid: &BareJid,
    from: &FullJid,
    patient: bool,
) -> Result<Option<super::RoomCell>, StanzaError> {
    let policy = server.cluster.miss_retry();
    let patience = if patient {
        std::time::Duration::from_millis(server.config.cluster.down_after_ms) + policy.window
    } else {
        policy.window
    };
    let deadline = std::time::Instant::now() + patience;
    let mut attempt = 0;
    loop {
        let cell = muc.load(server, room_jid).await.map_err(internal)?;
        let seated = match &cell {
            Some(cell) => cell.lock().await.occupant(from).is_some(),
            None => false,
        };
        let last = attempt >= policy.attempts;
        if seated || (last && std::time::Instant::now() >= deadline) {
            return Ok(cell);
        }
        let step = attempt.min(policy.attempts.saturating_sub(1));
        tokio::time::sleep(policy.delay(step).max(std::time::Duration::from_millis(10))).await;
        attempt += 1;
    }
}

fn no_room() -> StanzaError {
    StanzaError::new(Condition::ItemNotFound).with_text("There is no such room")
}

async fn message(
    muc: &Muc,
    server: &Server,
    stanza: Stanza,
    room_jid: BareJid,
    nick: Option<String>,
) -> Routed {
    if stanza.is_error() {
        return count(server, Outcome::Discarded);
    }
    let Some(from) = sender(&stanza) else {
        return count(server, Outcome::Discarded);
    };
    let handed_back = stanza.element.child(HANDED_BACK, RELAY).is_some();
    let cell = match room_with(muc, server, &room_jid, &from, handed_back).await {
        Ok(Some(cell)) => cell,
        Ok(None) => return bounce(server, &stanza, no_room()).await,
        Err(error) => return bounce(server, &stanza, error).await,
    };
    let Some(mut room) = lock_here(&cell).await else {
        return relocate(muc, server, stanza, room_jid).await;
    };
    let mut stanza = stanza;
    if handed_back {
        stanza.element.remove_children(HANDED_BACK, RELAY);
        match handled_before(server, &room, &from, &stanza.element).await {
            Some(None) => {
                tracing::info!(room = %room_jid, %from, "a handed-back message the old host never handled goes to the room");
            }
            Some(Some(archived)) => {
                // Not broadcast again; its sender, who may not have had its
                // reflection, gets the archived copy (same stanza id, so a
                // client that had it already sees one message).
                tracing::info!(room = %room_jid, %from, "a handed-back message the old host handled is not repeated");
                let reflection = Out {
                    to: from.clone().into(),
                    stanza: archived,
                    about: None,
                };
                drop(room);
                relay::send(muc, server, vec![reflection]).await;
                return count(server, Outcome::Handled);
            }
            None => {
                drop(room);
                return bounce(server, &stanza, maybe_lost()).await;
            }
        }
    }
    let result: Result<(Vec<Out>, bool), StanzaError> = match (&nick, stanza.message_type()) {
        (Some(nick), _) => room
            .private_message(&from, nick, &stanza.element)
            .map(|outs| (outs, false)),
        (None, Some(MessageType::Groupchat)) => {
            let result = room.groupchat(&from, &stanza.element, &muc.limits, now_ms());
            if matches!(&result, Ok((_, false))) {
                muc.messages.fetch_add(1, Ordering::Relaxed);
            }
            result
        }
        (None, _) => match (
            stanza.element.child("x", MUC_USER),
            stanza.element.child("x", ns::XDATA),
        ) {
            (Some(x), _) => room.invite(&from, x),
            (None, Some(form)) => room.voice_request(&from, form).map(|outs| (outs, false)),
            (None, None) => Err(StanzaError::new(Condition::BadRequest)
                .with_text("Messages to the room are of type groupchat")),
        },
    };
    match result {
        Ok((outs, changed)) => {
            if room.config.logging && !changed {
                if let Some(first) = outs.first() {
                    super::archive::store(server, &room, &first.stanza).await;
                }
            }
            relay::send(muc, server, outs).await;
            if changed {
                if let Err(error) = save(server, &room).await {
                    drop(room);
                    return bounce(server, &stanza, error).await;
                }
            }
            count(server, Outcome::Handled)
        }
        Err(error) => {
            drop(room);
            bounce(server, &stanza, error).await
        }
    }
}

/// Writes a persistent room's state to the store.
async fn save(server: &Server, room: &Room) -> Result<(), StanzaError> {
    if !room.config.persistent {
        return Ok(());
    }
    let stored = room.persistent();
    let config = serde_json::to_string(&stored.config).map_err(|error| {
        tracing::error!(%error, "room configuration not serialisable");
        StanzaError::new(Condition::InternalServerError)
    })?;
    server
        .store
        .muc_save_room(
            &StoredRoom {
                room: room.jid.to_string(),
                config,
                subject: stored.subject,
                subject_by: stored.subject_by,
                affiliations: stored
                    .affiliations
                    .iter()
                    .map(|(jid, a)| (jid.to_string(), a.as_str().to_owned()))
                    .collect(),
                nicks: stored
                    .nicks
                    .iter()
                    .map(|(jid, nick)| (jid.to_string(), nick.clone()))
                    .collect(),
            },
            now_ms(),
        )
        .await
        .map_err(internal)
}

async fn iq(
    muc: &Muc,
    server: &Server,
    stanza: Stanza,
    room_jid: BareJid,
    nick: Option<String>,
) -> Routed {
    if matches!(stanza.iq_type(), Some(IqType::Result | IqType::Error)) {
        return iq_answer(muc, server, stanza, room_jid, nick).await;
    }
    let (Some(ty @ (IqType::Get | IqType::Set)), Some(payload)) =
        (stanza.iq_type(), stanza.payload().cloned())
    else {
        return count(server, Outcome::Discarded);
    };
    let Some(from) = sender(&stanza) else {
        return count(server, Outcome::Discarded);
    };
    let cell = match muc.load(server, &room_jid).await {
        Ok(Some(cell)) => cell,
        Ok(None) => return bounce(server, &stanza, no_room()).await,
        Err(error) => return bounce(server, &stanza, internal(error)).await,
    };
    let Some(mut room) = lock_here(&cell).await else {
        return relocate(muc, server, stanza, room_jid).await;
    };
    if let Some(nick) = nick {
        // XEP-0410: a client checks it is still in the room.
        let self_ping =
            payload.is("ping", ns::PING) && room.occupant(&from).is_some_and(|o| o.nick == nick);
        if self_ping {
            drop(room);
            return answer(server, &stanza, Ok(None)).await;
        }
        let forwarded = room.forward_iq(&from, &nick, &stanza.element);
        // Unlocked first: the answer may come back at once (a vCard the
        // account's server answers) and needs the room.
        drop(room);
        return match forwarded {
            Ok(out) => {
                relay::send(muc, server, vec![out]).await;
                count(server, Outcome::Handled)
            }
            Err(error) => bounce(server, &stanza, error).await,
        };
    }
    let get = ty == IqType::Get;
    if !get {
        match super::moderation::parse(&payload) {
            Ok(None) => {}
            Ok(Some(request)) => {
                let result = super::moderation::retract(server, &mut room, &from, &request).await;
                let result = match result {
                    Ok(outs) => {
                        relay::send(muc, server, outs).await;
                        Ok(None)
                    }
                    Err(error) => Err(error),
                };
                drop(room);
                return answer(server, &stanza, result).await;
            }
            Err(error) => {
                drop(room);
                return bounce(server, &stanza, error).await;
            }
        }
    }
    let result: Result<Option<Element>, StanzaError> = match (get, payload.ns()) {
        (true, ns::DISCO_INFO) if payload.attr("node") == Some(ROOMUSER_NODE) => {
            Ok(Some(room.reserved_nick_info(&from)))
        }
        (true, ns::DISCO_INFO) => Ok(Some(room.disco_info())),
        (true, REGISTER) => room.registration_form(&from).map(Some),
        (false, REGISTER) => register(muc, server, &mut room, &from, &payload).await,
        (true, ns::DISCO_ITEMS) => Ok(Some(room.disco_items())),
        (true, MUC_ADMIN) => room.admin_get(&from, &payload).map(Some),
        (false, MUC_ADMIN) => match room.admin_set(&from, &payload) {
            Ok((outs, changed)) => {
                relay::send(muc, server, outs).await;
                if changed {
                    save(server, &room).await
                } else {
                    Ok(())
                }
                .map(|()| None)
            }
            Err(error) => Err(error),
        },
        (true, MUC_OWNER) => room.config_form(&from).map(Some),
        (_, super::archive::MAM) if payload.name() == "query" => {
            match super::archive::query(server, &room, &from, &payload).await {
                Ok((outs, fin)) => {
                    relay::send(muc, server, outs).await;
                    Ok(Some(fin))
                }
                Err(error) => Err(error),
            }
        }
        (false, MUC_OWNER) => owner_set(muc, server, &mut room, &from, &payload).await,
        _ => Err(StanzaError::new(Condition::ServiceUnavailable)
            .with_text("The room does not answer this request")),
    };
    drop(room);
    answer(server, &stanza, result).await
}

/// A result or error from an occupant (or its account) answering an iq
/// the room passed on: back to the asker, from the answerer's room JID.
async fn iq_answer(
    muc: &Muc,
    server: &Server,
    stanza: Stanza,
    room_jid: BareJid,
    nick: Option<String>,
) -> Routed {
    let (Some(nick), Some(from)) = (nick, stanza.from.clone()) else {
        return count(server, Outcome::Discarded);
    };
    let Ok(Some(cell)) = muc.load(server, &room_jid).await else {
        return count(server, Outcome::Discarded);
    };
    let Some(mut room) = lock_here(&cell).await else {
        return relocate(muc, server, stanza, room_jid).await;
    };
    let out = room.answer_iq(&from, &nick, &stanza.element);
    drop(room);
    match out {
        Some(out) => {
            relay::send(muc, server, vec![out]).await;
            count(server, Outcome::Handled)
        }
        // Nothing asked for it (or the request was forgotten): dropped.
        None => count(server, Outcome::Discarded),
    }
}

/// Registration set (XEP-0045 7.12): reserving a nick, cancelling, or
/// giving the reservation up.
async fn register(
    muc: &Muc,
    server: &Server,
    room: &mut Room,
    from: &FullJid,
    payload: &Element,
) -> Result<Option<Element>, StanzaError> {
    let request = Registration::parse(payload)?;
    if let Registration::Nick(nick) = &request {
        check_nick(nick, muc.config.max_nick_chars)?;
    }
    if room.register(from, &request)? {
        save(server, room).await?;
    }
    Ok(None)
}

/// `muc#owner` set: a configuration form or the room's destruction.
async fn owner_set(
    muc: &Muc,
    server: &Server,
    room: &mut Room,
    from: &FullJid,
    payload: &Element,
) -> Result<Option<Element>, StanzaError> {
    if let Some(destroy) = payload.child("destroy", MUC_OWNER) {
        let outs = room.destroy(from, destroy)?;
        muc.remove_room(&room.jid);
        relay::send(muc, server, outs).await;
        server
            .store
            .muc_delete_room(room.jid.as_str())
            .await
            .map_err(internal)?;
        // A room of the same name later starts with an empty archive.
        server
            .store
            .delete_archive(room.jid.as_str())
            .await
            .map_err(internal)?;
        return Ok(None);
    }
    let Some(x) = payload.child("x", ns::XDATA) else {
        return Err(StanzaError::new(Condition::BadRequest)
            .with_text("Expected a configuration form or <destroy/>"));
    };
    if x.attr("type") == Some("cancel") {
        // XEP-0045 10.1.3: cancelling a new room's configuration destroys it.
        if room.locked && room.affiliation(&from.to_bare()) == Affiliation::Owner {
            let outs = room.destroy(from, &Element::new("destroy", MUC_OWNER))?;
            muc.remove_room(&room.jid);
            relay::send(muc, server, outs).await;
        }
        return Ok(None);
    }
    let was_persistent = room.config.persistent;
    let outs = room.configure(from, x)?;
    relay::send(muc, server, outs).await;
    if room.config.persistent {
        save(server, room).await?;
    } else if was_persistent {
        server
            .store
            .muc_delete_room(room.jid.as_str())
            .await
            .map_err(internal)?;
        if room.is_empty() {
            muc.remove_room(&room.jid);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicks_with_forbidden_characters_are_malformed() {
        assert!(check_nick("alice", 10).is_ok());
        assert!(check_nick("Ærøskøbing ☕", 20).is_ok());
        for bad in [
            "",
            "  ",
            " alice",
            "alice ",
            "al\u{202E}ice",
            "a\u{200B}b",
            "a\u{7}b",
        ] {
            let error = check_nick(bad, 10).unwrap_err();
            assert_eq!(error.condition, Condition::JidMalformed, "{bad:?}");
        }
        assert!(check_nick("abcdefghijk", 10).is_err());
    }
}
