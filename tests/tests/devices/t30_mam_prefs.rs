//! XEP-0313 5 archiving preferences: the default (always, never, roster)
//! and the per-JID lists decide what an archive keeps, on every member,
//! as soon as the owner's `<prefs/>` set is answered.

use starling_core::xml::Element;
use starling_tests::Client;

use crate::support::*;

const MAM: &str = "urn:xmpp:mam:2";

/// Sets the preferences and returns the `<prefs/>` the server answered.
async fn set_prefs(client: &mut Client, default: &str, always: &[&str], never: &[&str]) -> Element {
    let list =
        |jids: &[&str]| -> String { jids.iter().map(|jid| format!("<jid>{jid}</jid>")).collect() };
    let reply = iq(
        client,
        "set",
        None,
        &format!(
            "<prefs xmlns='{MAM}' default='{default}'><always>{}</always><never>{}</never></prefs>",
            list(always),
            list(never)
        ),
    )
    .await;
    assert_result(&reply)
        .child("prefs", MAM)
        .unwrap_or_else(|| panic!("no <prefs/> in {reply}"))
        .clone()
}

/// The JIDs of one list of a `<prefs/>`.
fn listed(prefs: &Element, list: &str) -> Vec<String> {
    prefs
        .child(list, MAM)
        .map(|list| list.children().map(Element::text).collect())
        .unwrap_or_default()
}

/// The bodies in the client's whole archive, barrier markers left out.
async fn archived_bodies(client: &mut Client) -> Vec<String> {
    let query_id = client.next_id();
    let reply = iq(
        client,
        "set",
        None,
        &format!("<query xmlns='{MAM}' queryid='{query_id}'/>"),
    )
    .await;
    assert_result(&reply);
    client
        .pending()
        .filter_map(|e| {
            let result = e.child("result", MAM)?;
            (result.attr("queryid") == Some(query_id.as_str())).then_some(())?;
            let forwarded = result.child("forwarded", "urn:xmpp:forward:0")?;
            forwarded
                .children()
                .find(|c| c.name() == "message")
                .map(body)
        })
        .filter(|b| !b.starts_with("barrier-"))
        .collect()
}

#[tokio::test]
async fn prefs_decide_what_each_member_archives() {
    let cluster = cluster(&["alice", "bob", "carol"]);
    let mut alice = online(node(&cluster, 1), "alice", PW, "a").await;
    let mut bob = online(node(&cluster, 2), "bob", PW, "b").await;
    let mut carol = online(node(&cluster, 3), "carol", PW, "c").await;

    // Unset: the server's default, every chat.
    let reply = iq(&mut alice, "get", None, &format!("<prefs xmlns='{MAM}'/>")).await;
    let prefs = assert_result(&reply).child("prefs", MAM).unwrap();
    assert_eq!(prefs.attr("default"), Some("always"), "{reply}");

    // Never, except carol: the answer shows what is now in force.
    let prefs = set_prefs(&mut alice, "never", &["carol@localhost/any"], &[]).await;
    assert_eq!(prefs.attr("default"), Some("never"), "{prefs}");
    assert_eq!(listed(&prefs, "always"), ["carol@localhost"]);
    assert!(listed(&prefs, "never").is_empty(), "{prefs}");
    chat(&mut bob, "alice@localhost/a", "bob while never").await;
    chat(&mut carol, "alice@localhost/a", "carol while never").await;
    expect_body(&mut alice, "bob while never").await;
    expect_body(&mut alice, "carol while never").await;
    chat(&mut alice, "bob@localhost/b", "to bob while never").await;
    expect_body(&mut bob, "to bob while never").await;

    // Roster, but never carol: bob counts once he is in alice's roster.
    set_prefs(&mut alice, "roster", &[], &["carol@localhost"]).await;
    chat(&mut bob, "alice@localhost/a", "bob not in the roster").await;
    expect_body(&mut alice, "bob not in the roster").await;
    let reply = iq(
        &mut alice,
        "set",
        None,
        "<query xmlns='jabber:iq:roster'><item jid='bob@localhost'/></query>",
    )
    .await;
    assert_result(&reply);
    chat(&mut bob, "alice@localhost/a", "bob in the roster").await;
    chat(&mut carol, "alice@localhost/a", "carol never").await;
    expect_body(&mut alice, "bob in the roster").await;
    expect_body(&mut alice, "carol never").await;

    // A second device sees the same preferences from another member.
    let mut tablet = online(node(&cluster, 3), "alice", PW, "tablet").await;
    let reply = iq(&mut tablet, "get", None, &format!("<prefs xmlns='{MAM}'/>")).await;
    let prefs = assert_result(&reply).child("prefs", MAM).unwrap();
    assert_eq!(prefs.attr("default"), Some("roster"), "{reply}");
    assert_eq!(listed(prefs, "never"), ["carol@localhost"]);

    assert_eq!(
        archived_bodies(&mut tablet).await,
        ["carol while never", "bob in the roster"]
    );
    // Bob's archive follows bob's preferences (the default), not alice's.
    assert_eq!(
        archived_bodies(&mut bob).await,
        [
            "bob while never",
            "to bob while never",
            "bob not in the roster",
            "bob in the roster"
        ]
    );
}

#[tokio::test]
async fn bad_prefs_are_refused_and_change_nothing() {
    let cluster = cluster(&["alice"]);
    let mut alice = online(node(&cluster, 1), "alice", PW, "a").await;
    set_prefs(&mut alice, "roster", &["bob@localhost"], &[]).await;
    for (payload, condition) in [
        (
            format!("<prefs xmlns='{MAM}' default='sometimes'/>"),
            "bad-request",
        ),
        (format!("<prefs xmlns='{MAM}'/>"), "bad-request"),
        (
            format!(
                "<prefs xmlns='{MAM}' default='always'><always><jid>x@localhost</jid></always>\
                 <never><jid>x@localhost</jid></never></prefs>"
            ),
            "bad-request",
        ),
    ] {
        let reply = iq(&mut alice, "set", None, &payload).await;
        assert_error(&reply, "modify", condition);
    }
    let reply = iq(&mut alice, "get", None, &format!("<prefs xmlns='{MAM}'/>")).await;
    let prefs = assert_result(&reply).child("prefs", MAM).unwrap();
    assert_eq!(prefs.attr("default"), Some("roster"), "{reply}");
    assert_eq!(listed(prefs, "always"), ["bob@localhost"]);
}
