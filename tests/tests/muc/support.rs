//! Group chat helpers: joining, creating (the instant room), speaking,
//! status codes and predicates. Login, iq and barrier helpers are the c2s
//! suite's (through the cluster suite's support).

#[path = "../cluster/support.rs"]
#[allow(dead_code)]
mod cluster;

use starling_core::xml::Element;
use starling_tests::Client;

#[allow(unused_imports)]
pub(crate) use cluster::*;

pub(crate) const SERVICE: &str = "conference.localhost";
pub(crate) const MUC: &str = "http://jabber.org/protocol/muc";
pub(crate) const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub(crate) const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
pub(crate) const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";

/// `room@conference.localhost`.
pub(crate) fn room(name: &str) -> String {
    format!("{name}@{SERVICE}")
}

/// `room@conference.localhost/nick`.
pub(crate) fn occupant(name: &str, nick: &str) -> String {
    format!("{}/{nick}", room(name))
}

/// The status codes of a room stanza's `<x xmlns='muc#user'/>`, sorted.
pub(crate) fn codes(stanza: &Element) -> Vec<u16> {
    let mut codes: Vec<u16> = stanza
        .child("x", MUC_USER)
        .map(|x| {
            x.children()
                .filter(|c| c.name() == "status")
                .filter_map(|c| c.attr("code")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    codes.sort_unstable();
    codes
}

/// The `<item/>` of a room presence.
pub(crate) fn item(stanza: &Element) -> Element {
    stanza
        .child("x", MUC_USER)
        .and_then(|x| x.child("item", MUC_USER))
        .cloned()
        .unwrap_or_else(|| panic!("no muc#user item in {stanza}"))
}

/// A presence from the room that carries status 110 (about oneself).
pub(crate) fn is_self_presence(element: &Element, from: &str) -> bool {
    element.name() == "presence"
        && element.attr("from") == Some(from)
        && codes(element).contains(&110)
}

/// Sends a join with `extra` inside `<x xmlns='muc'/>` (history, password).
pub(crate) async fn send_join(client: &mut Client, name: &str, nick: &str, extra: &str) {
    send(
        client,
        &format!(
            "<presence to='{}'><x xmlns='{MUC}'>{extra}</x></presence>",
            occupant(name, nick)
        ),
    )
    .await;
}

/// Joins and returns the self-presence, after the subject arrived (the
/// last thing a join sends).
pub(crate) async fn join(client: &mut Client, name: &str, nick: &str) -> Element {
    join_with(client, name, nick, "").await
}

pub(crate) async fn join_with(client: &mut Client, name: &str, nick: &str, extra: &str) -> Element {
    send_join(client, name, nick, extra).await;
    let me = occupant(name, nick);
    let presence = client
        .expect(|e| is_self_presence(e, &me), WAIT)
        .await
        .unwrap_or_else(|error| panic!("{} did not join {me}: {error}", jid(client)));
    expect_subject(client, name).await;
    presence
}

/// Waits for the subject message a join ends with.
pub(crate) async fn expect_subject(client: &mut Client, name: &str) -> Element {
    let room = room(name);
    client
        .expect(
            |e| {
                e.name() == "message"
                    && e.child("subject", e.ns()).is_some()
                    && e.child("body", e.ns()).is_none()
                    && e.attr("from").is_some_and(|f| f.starts_with(&room))
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|error| panic!("no subject from {room}: {error}"))
}

/// Creates a room as its owner and opens it as an instant room.
pub(crate) async fn create(client: &mut Client, name: &str, nick: &str) -> Element {
    let presence = join(client, name, nick).await;
    assert_eq!(codes(&presence), [110, 201], "{presence}");
    let reply = iq(
        client,
        "set",
        Some(&room(name)),
        &format!("<query xmlns='{MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'/></query>"),
    )
    .await;
    assert_result(&reply);
    presence
}

/// Submits configuration fields (var, value) as the owner; returns the reply.
pub(crate) async fn configure(client: &mut Client, name: &str, fields: &[(&str, &str)]) -> Element {
    let mut form = String::from(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>\
         <value>http://jabber.org/protocol/muc#roomconfig</value></field>",
    );
    for (var, value) in fields {
        form.push_str(&format!(
            "<field var='{var}'><value>{value}</value></field>"
        ));
    }
    form.push_str("</x>");
    iq(
        client,
        "set",
        Some(&room(name)),
        &format!("<query xmlns='{MUC_OWNER}'>{form}</query>"),
    )
    .await
}

/// Sends a groupchat message to the room.
pub(crate) async fn say(client: &mut Client, name: &str, text: &str) {
    let id = client.next_id();
    send(
        client,
        &format!(
            "<message to='{}' type='groupchat' id='{id}'><body>{text}</body></message>",
            room(name)
        ),
    )
    .await;
}

/// A groupchat message from `from` (room/nick) with this body.
pub(crate) fn is_groupchat(element: &Element, from: &str, text: &str) -> bool {
    element.name() == "message"
        && element.attr("type") == Some("groupchat")
        && element.attr("from") == Some(from)
        && body(element) == text
}

pub(crate) async fn expect_groupchat(client: &mut Client, from: &str, text: &str) -> Element {
    client
        .expect(|e| is_groupchat(e, from, text), WAIT)
        .await
        .unwrap_or_else(|error| panic!("{} did not get {text:?} from {from}: {error}", jid(client)))
}

/// Waits for a presence from `from` carrying every code in `wanted`.
pub(crate) async fn expect_codes(client: &mut Client, from: &str, wanted: &[u16]) -> Element {
    client
        .expect(
            |e| {
                e.name() == "presence"
                    && e.attr("from") == Some(from)
                    && wanted.iter().all(|code| codes(e).contains(code))
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|error| {
            panic!(
                "{} got no presence from {from} with {wanted:?}: {error}",
                jid(client)
            )
        })
}

/// Waits for an error stanza of this kind (`message`, `presence`) from `from`.
pub(crate) async fn expect_error_from(client: &mut Client, kind: &str, from: &str) -> Element {
    client
        .expect(
            |e| e.name() == kind && e.attr("type") == Some("error") && e.attr("from") == Some(from),
            WAIT,
        )
        .await
        .unwrap_or_else(|error| panic!("no {kind} error from {from}: {error}"))
}

/// A `muc#admin` set with one item; returns the reply.
pub(crate) async fn admin(client: &mut Client, name: &str, item: &str) -> Element {
    iq(
        client,
        "set",
        Some(&room(name)),
        &format!("<query xmlns='{MUC_ADMIN}'>{item}</query>"),
    )
    .await
}
