//! XEP-0160 offline messages across nodes: stored by whichever node the
//! sender is on, delivered in order with XEP-0203 delay stamps on whichever
//! node the recipient comes online, once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use starling_tests::{Client, TestCluster};

use crate::support::*;

const DELAY: &str = "urn:xmpp:delay";

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
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

#[test]
fn stamps_parse() {
    assert_eq!(parse_stamp("1970-01-01T00:00:00Z"), Some(0.0));
    assert_eq!(parse_stamp("2000-03-01T00:00:01.5Z"), Some(951_868_801.5));
    assert_eq!(parse_stamp("2000-03-01 00:00:01"), None);
}

/// A stored message as it is delivered: the original with `to` set to the
/// session that gets it and the server's delay stamp appended.
struct Stored<'a> {
    from: &'a str,
    id: String,
    ty: Option<&'a str>,
    body: String,
}

/// Takes the next message and checks that it is exactly `want`, stamped
/// within `window` (seconds since the epoch, rounded outwards) and not
/// earlier than `last_stamp`; returns its stamp.
async fn expect_stored(
    client: &mut Client,
    want: &Stored<'_>,
    window: (f64, f64),
    last_stamp: f64,
) -> f64 {
    let message = client
        .expect(is_message, WAIT)
        .await
        .unwrap_or_else(|error| panic!("{} did not get {:?}: {error}", jid(client), want.body));
    let stamp_text = message
        .child("delay", DELAY)
        .and_then(|delay| delay.attr("stamp"))
        .unwrap_or_else(|| panic!("no XEP-0203 delay: {message}"))
        .to_owned();
    let ty = want
        .ty
        .map(|ty| format!(" type='{ty}'"))
        .unwrap_or_default();
    assert_stanza(
        &message,
        &format!(
            "<message from='{}' to='{}' id='{}'{ty}><body>{}</body>\
             <delay xmlns='{DELAY}' from='localhost' stamp='{stamp_text}'>Offline storage</delay>\
             </message>",
            want.from,
            jid(client),
            want.id,
            want.body
        ),
    );
    let stamp = parse_stamp(&stamp_text).unwrap_or_else(|| panic!("bad stamp: {message}"));
    assert!(
        stamp >= window.0.floor() - 1.0 && stamp <= window.1.ceil() + 1.0,
        "stamp {stamp} outside {window:?}: {message}"
    );
    assert!(stamp >= last_stamp, "stamps go backwards: {message}");
    stamp
}

/// Bob has never logged in. Alice (node 1) and then Carol (node 2) write
/// to him, by bare JID and to a resource that is not connected; he logs in
/// on node 3 and gets everything at his initial presence, oldest first,
/// stamped, exactly as sent. Headlines were not stored, groupchat bounced,
/// and a second resource on node 1 finds nothing left.
#[tokio::test]
async fn messages_stored_on_any_node_are_delivered_on_another() {
    let cluster = cluster(&["alice", "bob", "carol"]);
    let mut alice = online(node(&cluster, 1), "alice", PW, "a").await;
    let mut carol = online(node(&cluster, 2), "carol", PW, "c").await;
    let before = now_secs();
    let mut expected = Vec::new();
    for n in 1..=20 {
        let to = if n % 5 == 0 {
            "bob@localhost/gone"
        } else {
            "bob@localhost"
        };
        let ty = if n % 2 == 0 { Some("chat") } else { None };
        let ty_attr = ty.map(|ty| format!(" type='{ty}'")).unwrap_or_default();
        send(
            &mut alice,
            &format!("<message to='{to}' id='a{n}'{ty_attr}><body>from alice {n}</body></message>"),
        )
        .await;
        expected.push(Stored {
            from: "alice@localhost/a",
            id: format!("a{n}"),
            ty,
            body: format!("from alice {n}"),
        });
    }
    send(
        &mut alice,
        "<message to='bob@localhost' type='headline'><body>headline</body></message>\
         <message to='bob@localhost' type='groupchat' id='gc'><body>gc</body></message>",
    )
    .await;
    let error = alice
        .expect(|e| e.attr("id") == Some("gc"), WAIT)
        .await
        .unwrap();
    assert_error(&error, "cancel", "service-unavailable");
    // Alice's messages are all stored once her node answers her ping.
    sync(&mut alice).await;
    assert_none(&alice, "an error for a stored message", |e| {
        is_message(e) && e.attr("type") == Some("error")
    });
    for n in 1..=5 {
        send(
            &mut carol,
            &format!(
                "<message to='bob@localhost' type='chat' id='c{n}'><body>from carol {n}</body>\
                 </message>"
            ),
        )
        .await;
        expected.push(Stored {
            from: "carol@localhost/c",
            id: format!("c{n}"),
            ty: Some("chat"),
            body: format!("from carol {n}"),
        });
    }
    sync(&mut carol).await;
    let after = now_secs();

    // Nothing before the initial presence...
    let mut bob = login(node(&cluster, 3), "bob", PW, "b").await;
    roster_get(&mut bob).await;
    sync(&mut bob).await;
    assert_none(&bob, "offline messages before initial presence", is_message);
    // ...then all of them, in the order they were stored.
    available(&mut bob, "<presence/>").await;
    let mut last_stamp = 0.0;
    for want in &expected {
        last_stamp = expect_stored(&mut bob, want, (before, after), last_stamp).await;
    }
    sync(&mut bob).await;
    assert_none(&bob, "a stored headline or a second copy", is_message);

    let mut again = online(node(&cluster, 1), "bob", PW, "again").await;
    sync(&mut again).await;
    assert_none(&again, "offline messages delivered twice", is_message);
}

/// u1 and u2 are subscribed to each other. u2 leaves node 2; u1 (node 1)
/// sees it leave, then writes to the resource it had and to the bare JID:
/// both are stored. u2 comes back on node 3 with a negative priority: still
/// nothing (such a resource takes no bare-JID messages, 4.7.2.3), and what
/// u1 sends meanwhile is stored too; raising the priority delivers all of
/// it, in order.
#[tokio::test]
async fn a_user_who_leaves_one_node_gets_the_messages_on_another() {
    let cluster = cluster(&[]);
    provision(node(&cluster, 1), "u", 2, 1);
    let mut u1 = online(node(&cluster, 1), "u1", "pw1", "r").await;
    let u2 = online(node(&cluster, 2), "u2", "pw2", "r").await;
    expect_presence(&mut u1, "u2@localhost/r", None).await;
    let before = now_secs();
    u2.close().await.unwrap();
    expect_presence(&mut u1, "u2@localhost/r", Some("unavailable")).await;

    send(
        &mut u1,
        "<message to='u2@localhost/r' type='chat' id='m1'><body>one</body></message>\
         <message to='u2@localhost' type='chat' id='m2'><body>two</body></message>",
    )
    .await;
    sync(&mut u1).await;

    let mut back = login(node(&cluster, 3), "u2", "pw2", "back").await;
    roster_get(&mut back).await;
    available(&mut back, "<presence><priority>-1</priority></presence>").await;
    expect_presence(&mut u1, "u2@localhost/back", None).await;
    send(
        &mut u1,
        "<message to='u2@localhost' type='chat' id='m3'><body>three</body></message>",
    )
    .await;
    // u1's node routed m3 before this marker to the full JID.
    barrier(&mut u1, &mut back).await;
    assert_none(&back, "a bare-JID message at negative priority", |e| {
        is_payload_message(e)
    });
    let after = now_secs();

    available(&mut back, "<presence><priority>1</priority></presence>").await;
    let mut last_stamp = 0.0;
    for (id, text) in [("m1", "one"), ("m2", "two"), ("m3", "three")] {
        let want = Stored {
            from: "u1@localhost/r",
            id: id.to_owned(),
            ty: Some("chat"),
            body: text.to_owned(),
        };
        last_stamp = expect_stored(&mut back, &want, (before, after), last_stamp).await;
    }
    barrier(&mut u1, &mut back).await;
    assert_none(&back, "a second copy", is_payload_message);
}

/// The fault campaign's loss under 50 ms latency and 5 % loss: a message
/// for a session the sender's member does not know yet (its directory
/// entry still on a stalled link, as for a session resumed on another
/// member) is stored offline there after the miss-retry window, and a
/// session that is already available never asks for stored messages. The
/// storing member keeps looking at its directory and has the message
/// delivered once the entry arrives, seconds later.
#[tokio::test]
async fn a_message_stored_while_the_recipients_entry_was_delayed_still_reaches_it() {
    const STORED: &str = "starling_routing_outcomes_total{outcome=\"stored\"}";
    let cluster = TestCluster::builder(2)
        .link_latency(Duration::ZERO)
        // The links stall for seconds without a member given up.
        .set("cluster", "suspect_after_ms = 15000")
        .set("cluster", "down_after_ms = 30000")
        .user("alice", PW)
        .user("bob", PW)
        .start();
    let mut alice = online(node(&cluster, 1), "alice", PW, "a").await;

    cluster.hold_links();
    let mut bob = online(node(&cluster, 2), "bob", PW, "r").await;
    let before = node(&cluster, 1).metric(STORED).await;
    send(
        &mut alice,
        "<message to='bob@localhost/r' type='chat' id='late'><body>late entry</body></message>",
    )
    .await;
    // Node 1 looked bob up for its miss-retry window, found nobody and
    // stored the message; then a while longer, as a slow link takes.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while node(&cluster, 1).metric(STORED).await <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "node 1 never stored the message offline"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.release_links();

    let message = bob
        .expect(
            |e| is_message_with_body(e, "late entry"),
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|error| panic!("bob never got the stored message: {error}"));
    assert!(
        message.child("delay", DELAY).is_some(),
        "delivered from storage, with its delay stamp: {message}"
    );
}
