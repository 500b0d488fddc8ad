//! The room's rules, without sockets.

use std::collections::HashSet;

use starling_core::jid::{BareJid, FullJid};
use starling_core::xml::{Element, ns};

use super::super::{MUC, MUC_ADMIN, MUC_USER};
use super::*;
use crate::stanza::{Condition, ErrorType};

fn limits() -> Limits {
    Limits {
        max_occupants: 10,
        max_subject_chars: 20,
        history_size: 5,
        messages_per_second: 1.0,
        message_burst: 2.0,
    }
}

fn jid(s: &str) -> FullJid {
    FullJid::new(s).unwrap()
}

fn presence() -> Element {
    Element::new("presence", ns::CLIENT).with_child(Element::new("x", MUC))
}

fn codes(stanza: &Element) -> Vec<String> {
    stanza
        .child("x", MUC_USER)
        .map(|x| {
            x.children()
                .filter(|c| c.name() == "status")
                .filter_map(|c| c.attr("code").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn room() -> Room {
    let mut room = Room::new(
        BareJid::new("tea@conference.example.com").unwrap(),
        RoomConfig::default(),
        5,
        false,
        "salt",
    );
    room.set_owner(BareJid::new("owner@example.com").unwrap());
    room
}

fn message(body: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .with_attr("type", "groupchat")
        .with_child(Element::new("body", ns::CLIENT).with_text(body))
}

#[test]
fn the_creator_gets_110_and_201_then_the_subject() {
    let mut room = room();
    let owner = jid("owner@example.com/a");
    let out = room
        .join(&owner, "boss", &presence(), true, &limits(), 0)
        .unwrap();
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(codes(&out[0].stanza), ["110", "201"]);
    assert!(out[1].stanza.child("subject", ns::CLIENT).is_some());
}

#[test]
fn nick_conflicts_bans_and_passwords_are_refused() {
    let mut room = room();
    room.join(
        &jid("owner@example.com/a"),
        "boss",
        &presence(),
        false,
        &limits(),
        0,
    )
    .unwrap();
    let error = room
        .join(
            &jid("eve@example.com/x"),
            "boss",
            &presence(),
            false,
            &limits(),
            0,
        )
        .unwrap_err();
    assert_eq!(error.condition, Condition::Conflict);
    room.affiliations.insert(
        BareJid::new("eve@example.com").unwrap(),
        Affiliation::Outcast,
    );
    let error = room
        .join(
            &jid("eve@example.com/x"),
            "eve",
            &presence(),
            false,
            &limits(),
            0,
        )
        .unwrap_err();
    assert_eq!(error.condition, Condition::Forbidden);
    room.config.password = "pw".into();
    let error = room
        .join(
            &jid("bob@example.com/x"),
            "bob",
            &presence(),
            false,
            &limits(),
            0,
        )
        .unwrap_err();
    assert_eq!(error.condition, Condition::NotAuthorized);
}

#[test]
fn a_flooding_occupant_is_refused_once_its_burst_is_spent() {
    let mut room = room();
    let owner = jid("owner@example.com/a");
    room.join(&owner, "boss", &presence(), false, &limits(), 0)
        .unwrap();
    assert!(room.groupchat(&owner, &message("1"), &limits(), 0).is_ok());
    assert!(room.groupchat(&owner, &message("2"), &limits(), 0).is_ok());
    let error = room
        .groupchat(&owner, &message("3"), &limits(), 0)
        .unwrap_err();
    assert_eq!(error.condition, Condition::PolicyViolation);
    assert_eq!(error.kind, ErrorType::Wait);
    // A second later one token is back.
    assert!(
        room.groupchat(&owner, &message("4"), &limits(), 1000)
            .is_ok()
    );
}

#[test]
fn a_kick_tells_everyone_with_307_and_removes_the_occupant() {
    let mut room = room();
    let owner = jid("owner@example.com/a");
    let bob = jid("bob@example.com/b");
    room.join(&owner, "boss", &presence(), false, &limits(), 0)
        .unwrap();
    room.join(&bob, "bob", &presence(), false, &limits(), 0)
        .unwrap();
    let query = Element::new("query", MUC_ADMIN).with_child(
        Element::new("item", MUC_ADMIN)
            .with_attr("nick", "bob")
            .with_attr("role", "none"),
    );
    let (out, changed) = room.admin_set(&owner, &query).unwrap();
    assert!(!changed);
    assert_eq!(room.occupant_count(), 1);
    let to_bob = out.iter().find(|o| o.to == bob.clone()).unwrap();
    assert_eq!(codes(&to_bob.stanza), ["110", "307"]);
    // Bob cannot kick back: he is no moderator, and no occupant now.
    let error = room.admin_set(&bob, &query).unwrap_err();
    assert_eq!(error.condition, Condition::Forbidden);
}

#[test]
fn the_last_owner_stays() {
    let mut room = room();
    let owner = jid("owner@example.com/a");
    let query = Element::new("query", MUC_ADMIN).with_child(
        Element::new("item", MUC_ADMIN)
            .with_attr("jid", "owner@example.com")
            .with_attr("affiliation", "member"),
    );
    assert_eq!(
        room.admin_set(&owner, &query).unwrap_err().condition,
        Condition::Conflict
    );
}

#[test]
fn a_room_handed_over_keeps_its_occupants_history_and_affiliations() {
    let mut room = room();
    let owner = jid("owner@example.com/a");
    room.join(&owner, "boss", &presence(), false, &limits(), 0)
        .unwrap();
    room.groupchat(&owner, &message("kept"), &limits(), 0)
        .unwrap();
    let handover = room.hand_over();
    assert!(room.is_empty());
    let mut next = Room::new(room.jid.clone(), RoomConfig::default(), 5, false, "salt");
    next.take_over(&handover, &limits(), 0);
    assert_eq!(next.occupant_count(), 1);
    assert_eq!(
        next.affiliation(&BareJid::new("owner@example.com").unwrap()),
        Affiliation::Owner
    );
    assert_eq!(next.history.len(), 1);
    assert_eq!(
        next.occupant(&owner).unwrap().id,
        room.occupant_id(&owner.to_bare())
    );
}

#[test]
fn lost_occupants_leave_with_333() {
    let mut room = room();
    let owner = jid("owner@example.com/a");
    let bob = jid("bob@example.com/b");
    room.join(&owner, "boss", &presence(), false, &limits(), 0)
        .unwrap();
    room.join(&bob, "bob", &presence(), false, &limits(), 0)
        .unwrap();
    let out = room.remove_lost(&HashSet::from([bob.clone()]));
    assert_eq!(out.len(), 1);
    assert_eq!(codes(&out[0].stanza), ["333"]);
    assert_eq!(out[0].about.as_ref(), Some(&bob));
}
