//! RFC 6121 section 8.5 message routing on one node: full and bare JIDs,
//! priorities, the rules per message type, errors for unknown users and
//! other domains, and offline storage (XEP-0160) with XEP-0203 delay stamps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use starling_core::xml::Element;
use starling_tests::{Client, TestNode};

use crate::support::{
    WAIT, assert_error, assert_none, available, barrier, body, is_message_with_body, jid, login,
    online, roster_get, sync,
};

const DELAY: &str = "urn:xmpp:delay";

async fn send(client: &mut Client, xml: &str) {
    client.send(xml).await.unwrap();
}

async fn expect_body(client: &mut Client, text: &str) -> Element {
    client
        .expect(|e| is_message_with_body(e, text), WAIT)
        .await
        .unwrap_or_else(|error| panic!("{} did not get {text:?}: {error}", jid(client)))
}

/// Waits for the error reply to the message with `id`.
async fn expect_bounce(client: &mut Client, id: &str) -> Element {
    client
        .expect(
            |e| {
                e.name() == "message" && e.attr("id") == Some(id) && e.attr("type") == Some("error")
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|error| panic!("no error for message {id}: {error}"))
}

fn is_message(element: &Element) -> bool {
    element.name() == "message"
}

fn is_error_message(element: &Element) -> bool {
    is_message(element) && element.attr("type") == Some("error")
}

#[tokio::test]
async fn a_message_to_a_full_jid_reaches_that_resource_only() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let mut alice = online(&node, "alice", "pw", "a").await;
    let mut b1 = online(&node, "bob", "pw", "b1").await;
    let mut b2 = online(&node, "bob", "pw", "b2").await;
    send(
        &mut alice,
        "<message to='bob@localhost/b2' type='chat' id='m1'><body>for b2</body>\
         <thread>t-1</thread></message>",
    )
    .await;
    let message = expect_body(&mut b2, "for b2").await;
    assert_eq!(message.attr("from"), Some("alice@localhost/a"));
    assert_eq!(message.attr("to"), Some("bob@localhost/b2"));
    assert_eq!(message.attr("type"), Some("chat"));
    assert_eq!(message.attr("id"), Some("m1"));
    assert!(
        message
            .children()
            .any(|c| c.name() == "thread" && c.text() == "t-1"),
        "payload lost: {message}"
    );
    barrier(&mut alice, &mut b1).await;
    assert_none(&b1, "a full-JID message at another resource", |e| {
        is_message_with_body(e, "for b2")
    });
}

/// A client that puts its bare JID in `from` still sends from its full JID:
/// the server stamps the session's address (RFC 6120 8.1.2.1), so replies can
/// reach the resource that wrote.
#[tokio::test]
async fn a_bare_jid_from_is_stamped_with_the_full_jid() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let mut alice = online(&node, "alice", "pw", "a").await;
    let mut bob = online(&node, "bob", "pw", "b").await;
    send(
        &mut alice,
        "<message from='alice@localhost' to='bob@localhost/b' type='chat' id='m2'>\
         <body>stamped</body></message>",
    )
    .await;
    let message = expect_body(&mut bob, "stamped").await;
    assert_eq!(message.attr("from"), Some("alice@localhost/a"));
}

#[tokio::test]
async fn bare_jid_messages_go_to_the_highest_priority_resources() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let mut alice = online(&node, "alice", "pw", "a").await;
    let mut high = login(&node, "bob", "pw", "high").await;
    available(&mut high, "<presence><priority>5</priority></presence>").await;
    let mut low = login(&node, "bob", "pw", "low").await;
    available(&mut low, "<presence><priority>1</priority></presence>").await;
    let mut negative = login(&node, "bob", "pw", "negative").await;
    available(
        &mut negative,
        "<presence><priority>-1</priority></presence>",
    )
    .await;
    // Connected but never available.
    let mut idle = login(&node, "bob", "pw", "idle").await;

    // 8.5.2.1.1: chat goes to the highest priority only...
    send(
        &mut alice,
        "<message to='bob@localhost' type='chat'><body>c1</body></message>",
    )
    .await;
    let chat = expect_body(&mut high, "c1").await;
    assert_eq!(chat.attr("from"), Some("alice@localhost/a"));
    // ...a headline to every available resource with non-negative priority.
    send(
        &mut alice,
        "<message to='bob@localhost' type='headline'><body>h1</body></message>",
    )
    .await;
    expect_body(&mut high, "h1").await;
    expect_body(&mut low, "h1").await;

    // Equal top priorities: each of them gets chat and normal messages.
    available(&mut low, "<presence><priority>5</priority></presence>").await;
    send(
        &mut alice,
        "<message to='bob@localhost' type='chat'><body>c2</body></message>",
    )
    .await;
    send(
        &mut alice,
        "<message to='bob@localhost'><body>n1</body></message>",
    )
    .await;
    for resource in [&mut high, &mut low] {
        expect_body(resource, "c2").await;
        let normal = expect_body(resource, "n1").await;
        assert_eq!(normal.attr("to"), Some("bob@localhost"));
    }

    barrier(&mut alice, &mut low).await;
    assert_none(&low, "chat for a lower priority", |e| {
        is_message_with_body(e, "c1")
    });
    for resource in [&mut negative, &mut idle] {
        barrier(&mut alice, resource).await;
        assert_none(resource, "a bare-JID message", |e| {
            is_message(e) && !body(e).starts_with("barrier-")
        });
    }
}

#[tokio::test]
async fn messages_to_unknown_users_and_other_domains_bounce() {
    let node = TestNode::builder().user("alice", "pw").start();
    let mut alice = online(&node, "alice", "pw", "a").await;
    let cases = [
        ("nobody@localhost", "service-unavailable"),
        ("nobody@localhost/phone", "service-unavailable"),
        ("someone@example.org", "remote-server-not-found"),
        ("someone@example.org/r", "remote-server-not-found"),
        ("example.org", "remote-server-not-found"),
    ];
    for (index, (to, condition)) in cases.into_iter().enumerate() {
        let id = format!("m{index}");
        send(
            &mut alice,
            &format!("<message to='{to}' id='{id}' type='chat'><body>hi</body></message>"),
        )
        .await;
        let error = expect_bounce(&mut alice, &id).await;
        assert_error(&error, "cancel", condition);
        assert_eq!(error.attr("from"), Some(to), "{error}");
        assert_eq!(error.attr("to"), Some("alice@localhost/a"), "{error}");
    }
    // An error is never answered with an error (RFC 6120 8.3.1).
    send(
        &mut alice,
        "<message to='nobody@localhost' type='error' id='e1'><body>x</body></message>",
    )
    .await;
    send(
        &mut alice,
        "<message to='someone@example.org' type='error' id='e2'><body>x</body></message>",
    )
    .await;
    sync(&mut alice).await;
    assert_none(&alice, "an error answering an error", is_error_message);
}

#[tokio::test]
async fn groupchat_headline_and_error_follow_rfc6121_8_5() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let mut alice = online(&node, "alice", "pw", "a").await;
    let mut bob = online(&node, "bob", "pw", "b").await;

    // groupchat: to a bare JID refused (8.5.2.1.1), to a connected full JID
    // delivered (8.5.3.1), to an unconnected one refused (8.5.3.2.1).
    send(
        &mut alice,
        "<message to='bob@localhost' type='groupchat' id='g1'><body>g1</body></message>",
    )
    .await;
    let error = expect_bounce(&mut alice, "g1").await;
    assert_error(&error, "cancel", "service-unavailable");
    send(
        &mut alice,
        "<message to='bob@localhost/b' type='groupchat' id='g2'><body>g2</body></message>",
    )
    .await;
    let delivered = expect_body(&mut bob, "g2").await;
    assert_eq!(delivered.attr("type"), Some("groupchat"));
    send(
        &mut alice,
        "<message to='bob@localhost/gone' type='groupchat' id='g3'><body>g3</body></message>",
    )
    .await;
    let error = expect_bounce(&mut alice, "g3").await;
    assert_error(&error, "cancel", "service-unavailable");
    assert_eq!(error.attr("from"), Some("bob@localhost/gone"));

    // chat and headline to an unconnected full JID are handled as for the
    // bare JID (8.5.3.2.1).
    send(
        &mut alice,
        "<message to='bob@localhost/gone' type='chat'><body>c-gone</body></message>",
    )
    .await;
    let chat = expect_body(&mut bob, "c-gone").await;
    assert_eq!(chat.attr("to"), Some("bob@localhost/gone"));
    send(
        &mut alice,
        "<message to='bob@localhost/gone' type='headline'><body>h-gone</body></message>",
    )
    .await;
    expect_body(&mut bob, "h-gone").await;

    // error: delivered to a connected full JID, silently dropped otherwise.
    send(
        &mut alice,
        "<message to='bob@localhost/b' type='error'><body>e-full</body></message>",
    )
    .await;
    expect_body(&mut bob, "e-full").await;
    send(
        &mut alice,
        "<message to='bob@localhost' type='error'><body>e-bare</body></message>",
    )
    .await;
    send(
        &mut alice,
        "<message to='bob@localhost/gone' type='error'><body>e-gone</body></message>",
    )
    .await;
    barrier(&mut alice, &mut bob).await;
    assert_none(&bob, "an error message to a bare or unconnected JID", |e| {
        matches!(body(e).as_str(), "e-bare" | "e-gone" | "g1" | "g3")
    });
    sync(&mut alice).await;
    assert_none(
        &alice,
        "an error for a dropped error message",
        is_error_message,
    );
}

/// Seconds since the Unix epoch of an XEP-0082 UTC DateTime
/// (`2026-11-22T08:15:00.123Z`).
fn parse_stamp(stamp: &str) -> Option<f64> {
    let (date, time) = stamp.strip_suffix('Z')?.split_once('T')?;
    let mut date = date.split('-').map(str::parse::<i64>);
    let (year, month, day) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let mut time = time.split(':');
    let hours: i64 = time.next()?.parse().ok()?;
    let minutes: i64 = time.next()?.parse().ok()?;
    let seconds: f64 = time.next()?.parse().ok()?;
    // Days from the civil date (proleptic Gregorian).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hours * 3600 + minutes * 60) as f64 + seconds)
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

#[test]
fn stamps_parse() {
    assert_eq!(parse_stamp("1970-01-01T00:00:00Z"), Some(0.0));
    assert_eq!(parse_stamp("2000-03-01T00:00:01.5Z"), Some(951_868_801.5));
    assert_eq!(parse_stamp("2000-03-01 00:00:01"), None);
}

#[tokio::test]
async fn offline_messages_are_stored_and_delivered_in_order_with_delay_stamps() {
    let node = TestNode::builder()
        .user("alice", "pw")
        .user("bob", "pw")
        .start();
    let mut alice = online(&node, "alice", "pw", "a").await;
    let before = now_secs();
    for n in 1..=20 {
        // Some to the bare JID, some to a resource that is not connected;
        // chat and normal messages are both stored.
        let to = if n % 5 == 0 {
            "bob@localhost/gone"
        } else {
            "bob@localhost"
        };
        let ty = if n % 2 == 0 { "chat" } else { "normal" };
        send(
            &mut alice,
            &format!("<message to='{to}' type='{ty}' id='o{n}'><body>offline {n}</body></message>"),
        )
        .await;
    }
    // Headlines are not stored (8.5.2.2.1); groupchat to a bare JID bounces.
    send(
        &mut alice,
        "<message to='bob@localhost' type='headline'><body>headline</body></message>",
    )
    .await;
    send(
        &mut alice,
        "<message to='bob@localhost' type='groupchat' id='gc'><body>gc</body></message>",
    )
    .await;
    let error = expect_bounce(&mut alice, "gc").await;
    assert_error(&error, "cancel", "service-unavailable");
    sync(&mut alice).await;
    assert_none(&alice, "an error for a stored message", is_error_message);
    let after = now_secs();

    // Nothing before bob's initial presence...
    let mut bob = login(&node, "bob", "pw", "b").await;
    roster_get(&mut bob).await;
    sync(&mut bob).await;
    assert_none(&bob, "offline messages before initial presence", is_message);
    // ...then all of them, oldest first, stamped by the server.
    available(&mut bob, "<presence/>").await;
    let mut last_stamp = 0.0;
    for n in 1..=20 {
        let message = bob.expect(is_message, WAIT).await.unwrap();
        assert_eq!(
            body(&message),
            format!("offline {n}"),
            "out of order: {message}"
        );
        assert_eq!(message.attr("from"), Some("alice@localhost/a"));
        assert_eq!(message.attr("id"), Some(format!("o{n}").as_str()));
        let ty = if n % 2 == 0 {
            Some("chat")
        } else {
            Some("normal")
        };
        assert_eq!(message.attr("type"), ty);
        let delay = message
            .child("delay", DELAY)
            .unwrap_or_else(|| panic!("no XEP-0203 delay: {message}"));
        assert_eq!(delay.attr("from"), Some("localhost"));
        let stamp = delay.attr("stamp").and_then(parse_stamp);
        let stamp = stamp.unwrap_or_else(|| panic!("bad stamp: {delay}"));
        assert!(
            stamp >= before.floor() - 1.0 && stamp <= after.ceil() + 1.0,
            "stamp {stamp} outside {before}..{after}"
        );
        assert!(stamp >= last_stamp, "stamps go backwards");
        last_stamp = stamp;
    }
    sync(&mut bob).await;
    assert_none(&bob, "a stored headline or groupchat", is_message);

    // Delivered once: another resource finds nothing stored.
    let mut again = online(&node, "bob", "pw", "again").await;
    sync(&mut again).await;
    assert_none(&again, "offline messages delivered twice", is_message);
}
